#!/bin/sh
# Bounded fuzzing run for CI: run.sh BUILD_FUZZ_DIR ALLOC_SECONDS TRACE_SECONDS
#
#  1. self-test: fuzz_alloc_planted (built with a block handed out twice) must crash on the seed
#     corpus, or the checks in fuzz_alloc.c would not catch the bug they exist for;
#  2. fuzz_alloc without fault injection (FUZZ_NO_FAULTS=1) for 2/3 of ALLOC_SECONDS, then with
#     fault injection for the rest; fuzz_trace for TRACE_SECONDS.
# Each fuzzer starts from the committed seeds (tests/fuzz/corpus/*, read only) plus a working
# corpus under the build directory that persists between local runs. A crash leaves its input
# as BUILD_FUZZ_DIR/crash-* (replay it: BUILD_FUZZ_DIR/fuzz_alloc FILE). Prints one summary line
# per run with the executions done; exits nonzero if any fuzzer failed.
set -u
dir=${1:-build/fuzz}
alloc_s=${2:-45}
trace_s=${3:-20}
seeds=tests/fuzz/corpus
rc=0

# A fixed seed (FUZZ_SEED, default 1) makes a CI run repeatable: the same mutations in the same
# order, cut only by the time limit. FUZZ_SEED=0 lets libFuzzer pick one (for longer local runs).
common="-timeout=20 -rss_limit_mb=4096 -print_final_stats=1 -seed=${FUZZ_SEED:-1}"
opts="$common -artifact_prefix=$dir/"

execs() { # the number of runs libFuzzer reports in its final stats
    sed -n 's/^stat::number_of_executed_units: *//p' "$1" | tail -1
}

run() { # run NAME LOG FUZZER ARGS...: a bounded run, summarised
    name=$1
    log=$2
    shift 2
    start=$(date +%s)
    "$@" >"$log" 2>&1
    status=$?
    n=$(execs "$log")
    echo "fuzz $name: ${n:-?} executions in $(( $(date +%s) - start )) s, exit status $status"
    if [ $status -ne 0 ]; then
        grep -E "^fuzz_|ERROR|SUMMARY|Test unit written" "$log" | head -20
        rc=1
    fi
}

mkdir -p "$dir/work_alloc" "$dir/work_trace"

# 1. self-test: the planted bug must be caught
"$dir/fuzz_alloc_planted" -runs=0 $common -artifact_prefix="$dir/planted-" "$seeds/alloc" \
    >"$dir/planted.log" 2>&1
if [ $? -ne 0 ] && grep -q "^fuzz_alloc: .*overlapping a live block\|^fuzz_alloc: vms_check" "$dir/planted.log"; then
    echo "fuzz self-test: the planted overlap is caught: $(grep -m1 '^fuzz_alloc: ' "$dir/planted.log")"
else
    echo "FAIL fuzz self-test: fuzz_alloc_planted did not catch the planted overlap (see $dir/planted.log)"
    rc=1
fi
rm -f "$dir"/planted-*

# 2. bounded fuzzing
plain_s=$(( alloc_s * 2 / 3 ))
faults_s=$(( alloc_s - plain_s ))
FUZZ_NO_FAULTS=1 run alloc "$dir/alloc.log" "$dir/fuzz_alloc" $opts -max_total_time="$plain_s" \
    "$dir/work_alloc" "$seeds/alloc"
run alloc+faults "$dir/alloc_faults.log" "$dir/fuzz_alloc" $opts -max_total_time="$faults_s" \
    "$dir/work_alloc" "$seeds/alloc"
run trace "$dir/trace.log" "$dir/fuzz_trace" $opts -max_total_time="$trace_s" -max_len=100000 \
    "$dir/work_trace" "$seeds/trace"
exit $rc
