#!/bin/sh
# Tests of the command line build/vmstitch (path as $1), run from the repository root:
# replay --json has the fields DESIGN.md promises, one line per trace and policy; compare
# prints a table and writes a bounded SVG; bad input exits 2 with FILE:LINE; header keys a
# trace lacks are null; usage errors exit 2; info never crashes. Timing is never asserted.
# Prints "N passed, N failed" and exits nonzero on any failure.

V=${1:-build/vmstitch}
T=data/traces/gpt2m-full.trace.gz
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vms_cli_test.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
check() { # check NAME COMMAND...: passes when the command succeeds
    name=$1
    shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}

if [ ! -x "$V" ]; then
    echo "FAIL $V is not an executable"
    echo "0 passed, 1 failed"
    exit 1
fi

# --- replay --json: every promised key -------------------------------------------------------
"$V" replay --json --policy pytorch "$T" >"$tmp/one.json" 2>"$tmp/one.err"
rc=$?
check "replay --json exits 0" [ "$rc" -eq 0 ]
missing=""
for k in trace policy events peak_live_bytes peak_reserved_bytes efficiency vmm_calls create \
    release reserve address_free map unmap set_access cuda_malloc cuda_free modeled_vmm_seconds \
    modeled_vmm_seconds_second_half run_seconds replay_seconds ns_per_event; do
    grep -q "\"$k\":" "$tmp/one.json" || missing="$missing $k"
done
check "replay --json has every key${missing:+ (missing:$missing)}" [ -z "$missing" ]
check "replay --json is one line" [ "$(wc -l <"$tmp/one.json")" -eq 1 ]
check "replay --json names trace and policy" \
    grep -q "\"trace\":\"$T\",.*\"policy\":\"pytorch\"" "$tmp/one.json"
check "replay --json reports run_seconds from the header" \
    grep -q '"run_seconds":2.7[,}]' "$tmp/one.json"

# --- one object per trace per policy ---------------------------------------------------------
"$V" replay --json --policy pytorch --policy expandable "$T" \
    data/traces/opt350-lora-rc.trace.gz >"$tmp/four.json" 2>/dev/null
check "replay --json: one line per trace and policy" [ "$(wc -l <"$tmp/four.json")" -eq 4 ]

# --- the default policy (vmstitch, the real core) --------------------------------------------
"$V" replay --json "$T" >"$tmp/vms.json" 2>"$tmp/vms.err"
rc=$?
check "replay default policy is vmstitch and exits 0" \
    sh -c "[ $rc -eq 0 ] && grep -q '\"policy\":\"vmstitch\"' '$tmp/vms.json'"

# --- compare: table and SVG ------------------------------------------------------------------
"$V" compare --svg "$tmp/plot.svg" "$T" data/traces/opt350-gen.trace.gz \
    >"$tmp/cmp.txt" 2>"$tmp/cmp.err"
rc=$?
check "compare exits 0" [ "$rc" -eq 0 ]
for p in pytorch expandable vmstitch gmlake; do
    check "compare table has $p twice" [ "$(grep -c "^ *$p " "$tmp/cmp.txt")" -eq 2 ]
done
check "compare writes an SVG" \
    sh -c "head -c 200 '$tmp/plot.svg' | grep -q '<svg' && tail -1 '$tmp/plot.svg' | grep -q '</svg>'"
check "SVG has 2 panels x (4 policies + live)" [ "$(grep -c '<path' "$tmp/plot.svg")" -eq 10 ]
maxpts=$(awk '/<path/ { n = gsub(/ L/, "&"); if (n > m) m = n } END { print m + 0 }' "$tmp/plot.svg")
check "SVG series have at most ~2000 points (max $maxpts)" [ "$maxpts" -le 2003 ]

# --- bad input: exit 2 and FILE:LINE ---------------------------------------------------------
printf '# vmstitch-trace v1\na 1 100 0\nf 7\n' >"$tmp/bad.txt"
"$V" replay "$tmp/bad.txt" >/dev/null 2>"$tmp/bad.err"
rc=$?
check "free of unknown ID exits 2" [ "$rc" -eq 2 ]
check "free of unknown ID names FILE:LINE" grep -q "bad.txt:3: free of unknown ID 7" "$tmp/bad.err"

printf '# vmstitch-trace v1\na 1 100 0\nq 1\n' | gzip >"$tmp/badop.gz"
"$V" replay "$tmp/badop.gz" >/dev/null 2>"$tmp/badop.err"
rc=$?
check "unknown op in gzip exits 2 with line" \
    sh -c "[ $rc -eq 2 ] && grep -q 'badop.gz:3: unknown op' '$tmp/badop.err'"

printf '# vmstitch-trace v1\na 1 abc 0\n' >"$tmp/nan.txt"
"$V" compare "$tmp/nan.txt" >/dev/null 2>"$tmp/nan.err"
rc=$?
check "compare: size not a number exits 2 with line" \
    sh -c "[ $rc -eq 2 ] && grep -q 'nan.txt:2: size' '$tmp/nan.err'"

head -c 100000 "$T" >"$tmp/trunc.gz"
"$V" replay --policy pytorch "$tmp/trunc.gz" >/dev/null 2>"$tmp/trunc.err"
rc=$?
check "truncated gzip exits 2 with line" \
    sh -c "[ $rc -eq 2 ] && grep -Eq 'trunc.gz:[0-9]+: truncated gzip' '$tmp/trunc.err'"

head -c 3000 /dev/urandom >"$tmp/random.bin"
"$V" replay "$tmp/random.bin" >/dev/null 2>&1
check "random bytes exit 2" [ $? -eq 2 ]

"$V" replay "$tmp/does-not-exist.gz" >/dev/null 2>&1
check "missing file exits 2" [ $? -eq 2 ]

# --- header keys a trace lacks are null ------------------------------------------------------
printf '# vmstitch-trace v1\na 1 100 0\na 2 5000000 0\nf 1\n' >"$tmp/bare.txt"
"$V" replay --json --policy all "$tmp/bare.txt" >"$tmp/bare.json" 2>"$tmp/bare.err"
rc=$?
check "bare trace replays (exit 0)" [ "$rc" -eq 0 ]
check "bare trace: run_seconds is null" grep -q '"run_seconds":null' "$tmp/bare.json"
check "bare trace: workload is null" grep -q '"workload":null' "$tmp/bare.json"
check "bare trace: no warnings" [ ! -s "$tmp/bare.err" ]

# --- usage -----------------------------------------------------------------------------------
"$V" >/dev/null 2>&1
check "no arguments exits 2" [ $? -eq 2 ]
"$V" replay --policy nosuch "$T" >/dev/null 2>&1
check "unknown policy exits 2" [ $? -eq 2 ]
"$V" replay >/dev/null 2>&1
check "replay without a trace exits 2" [ $? -eq 2 ]
"$V" frobnicate >/dev/null 2>&1
check "unknown command exits 2" [ $? -eq 2 ]
"$V" help >"$tmp/help.txt" 2>&1
check "help exits 0 and documents gmlake" \
    sh -c "[ $? -eq 0 ] && grep -q 'fragLimit' '$tmp/help.txt'"

# --- info: 0 with a GPU, 1 without, never a crash --------------------------------------------
"$V" info >"$tmp/info.out" 2>"$tmp/info.err"
rc=$?
check "info exits 0 or 1 (got $rc)" [ "$rc" -le 1 ]
if [ "$rc" -eq 1 ]; then
    check "info explains the failure" [ -s "$tmp/info.err" ]
fi

# --- capacity: the largest-batch traces (data/traces/batch) -----------------------------------
# opt350-lora-rc at batch 43 lives 16.20 GiB at its peak. Under a 16.25 GiB cap vmstitch serves
# every request; expandable segments and the native allocator run out of memory
# (bench/batch_replay.py; the H200 measured the same).
B=data/traces/batch/opt350-lora-rc-b43-s512.trace.gz
"$V" replay --json --capacity-gib 16.25 --policy vmstitch --policy expandable --policy pytorch \
    "$B" >"$tmp/cap.json" 2>"$tmp/cap.err"
check "replay --capacity-gib exits 0" [ $? -eq 0 ]
ooms() { sed -n "/\"policy\":\"$1\"/s/.*\"ooms\":\([0-9]*\).*/\1/p" "$tmp/cap.json"; }
check "batch 43 under 16.25 GiB: vmstitch serves every request (ooms $(ooms vmstitch))" \
    [ "$(ooms vmstitch)" = 0 ]
check "batch 43 under 16.25 GiB: expandable and pytorch run out ($(ooms expandable), $(ooms pytorch))" \
    [ "$(ooms expandable)" -gt 0 -a "$(ooms pytorch)" -gt 0 ]

# --- vmstitch-cuda: the core on the cuda backend, here over the emulated driver ---------------
# (tests/gpu/fake_libcuda.c: handles are sparse memfd files, so a 19 GiB trace costs no RAM).
# It must make the same decisions as the sim policy: the same peak and the same driver calls.
fake="$tmp/fake"
mkdir -p "$fake"
if ${CC:-cc} -shared -fPIC -O1 -o "$fake/libcuda.so.1" tests/gpu/fake_libcuda.c -lpthread \
    2>"$tmp/fake.err"; then
    LD_LIBRARY_PATH="$fake${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" VMS_FAKE_CUDA=1 \
        FAKE_CUDA_TOTAL_MB=81920 "$V" replay --json --policy vmstitch --policy vmstitch-cuda \
        "$T" >"$tmp/cuda.json" 2>"$tmp/cuda.err"
    check "replay --policy vmstitch-cuda on the emulated driver exits 0" [ $? -eq 0 ]
    field() { sed -n "/\"policy\":\"$1\"/s/.*\"$2\":\([0-9]*\).*/\1/p" "$tmp/cuda.json"; }
    a=$(field vmstitch peak_reserved_bytes)
    b=$(field vmstitch-cuda peak_reserved_bytes)
    check "vmstitch-cuda: the same peak reserved as on the sim backend ($a, $b)" \
        [ -n "$a" -a "$a" = "$b" ]
    a=$(field vmstitch map)
    b=$(field vmstitch-cuda map)
    check "vmstitch-cuda: the same number of maps as on the sim backend ($a, $b)" \
        [ -n "$a" -a "$a" = "$b" ]
else
    bad "cannot build the emulated driver: $(head -c 300 "$tmp/fake.err")"
fi
"$V" replay --policy vmstitch-cuda "$T" >/dev/null 2>"$tmp/nocuda.err"
rc=$?
check "vmstitch-cuda without a driver: exit 1 with a message, or 0 on a GPU (got $rc)" \
    sh -c "[ $rc -eq 0 ] || { [ $rc -eq 1 ] && [ -s '$tmp/nocuda.err' ]; }"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
