#!/bin/sh
# GPU tests (make gpu-test): the public C API on the cuda backend, then PyTorch through the
# vmstitch package, then an offline `pip install` of the package. Where there is no GPU (no
# driver, or the driver sees no device) the GPU tests are skipped with a message and the script
# succeeds; the C API tests then run instead against tests/gpu/fake_libcuda.c, an emulated
# driver over host memory, so the cuda backend's code is exercised everywhere
# (VMS_GPU_EMULATE=0 turns that off).
#
# usage: sh tests/gpu/run.sh [BUILD_DIR]      (BUILD_DIR as made by `make`, default build)
# Environment: VMS_GPU_TESTS_OUT=DIR also writes logs and JSON results there;
#              VMS_GPU_SKIP_PIP=1 skips the pip install check.
set -u
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
CC=${CC:-cc}
PY=${PYTHON:-python3}
OUT=${VMS_GPU_TESTS_OUT:-}
WORK="$BUILD/gpu-tests"
mkdir -p "$WORK" || exit 1
[ -n "$OUT" ] && mkdir -p "$OUT"
failed=0

say() { printf '%s\n' "$*"; }
fail() { say "FAIL: $*"; failed=$((failed + 1)); }

for f in "$BUILD/libvmstitch.a" "$BUILD/libvmstitch_torch.so"; do
    [ -f "$f" ] || { say "FAIL: $f missing: run make first"; exit 1; }
done

CFLAGS="-std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -Wno-unused-parameter -Iinclude -pthread"
LIBS="$BUILD/libvmstitch.a -ldl -lpthread -lm" # the library itself needs no zlib
$CC $CFLAGS -o "$WORK/gpu_probe" tests/gpu/gpu_probe.c $LIBS || exit 1
$CC $CFLAGS -o "$WORK/gpu_api_tests" tests/gpu/cuda_api_test.c tests/test_main.c $LIBS || exit 1

probe=$("$WORK/gpu_probe")
rc=$?
if [ $rc -eq 77 ]; then
    say "SKIP: GPU tests: no usable GPU here ($probe)"
    if [ "${VMS_GPU_EMULATE:-1}" = "1" ]; then
        say "== C API tests on the cuda backend over the emulated driver (tests/gpu/fake_libcuda.c)"
        mkdir -p "$WORK/fake"
        $CC -shared -fPIC -O1 -g -Wall -Wextra -Werror -o "$WORK/fake/libcuda.so.1" \
            tests/gpu/fake_libcuda.c -lpthread || exit 1
        LD_LIBRARY_PATH="$WORK/fake${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" VMS_FAKE_CUDA=1 \
            FAKE_CUDA_TOTAL_MB=1024 "$WORK/gpu_api_tests" || exit 1
    fi
    exit 0
elif [ $rc -ne 0 ]; then
    say "FAIL: the cuda backend did not open: $probe"
    exit 1
fi
say "GPU: $probe"
[ -n "$OUT" ] && printf '%s\n' "$probe" > "$OUT/gpu-device.json"

run_logged() { # name, command...
    name=$1
    shift
    if [ -n "$OUT" ]; then
        "$@" > "$OUT/$name.log" 2>&1
        r=$?
        cat "$OUT/$name.log"
        return $r
    fi
    "$@"
}

say "== C API tests on the cuda backend"
run_logged gpu-c-tests "$WORK/gpu_api_tests" || fail "C API tests on the cuda backend"

if [ -x "$BUILD/vmstitch" ]; then
    say "== vmstitch info"
    run_logged gpu-info "$BUILD/vmstitch" info || fail "vmstitch info"
fi

if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)" 2>/dev/null; then
    say "SKIP: PyTorch tests: python3 has no torch with CUDA"
else
    say "== PyTorch tests"
    json_arg=""
    [ -n "$OUT" ] && json_arg="--json $OUT/gpu-torch-tests.json"
    PYTHONPATH="$ROOT/python${PYTHONPATH:+:$PYTHONPATH}" \
        VMSTITCH_LIBRARY="$BUILD/libvmstitch_torch.so" \
        $PY tests/gpu/test_torch.py $json_arg || fail "PyTorch tests"

    if [ "${VMS_GPU_SKIP_PIP:-0}" != "1" ]; then
        say "== pip install --no-build-isolation . (offline), then python -m vmstitch from it"
        target="$WORK/pip-target"
        rm -rf "$target"
        if VMSTITCH_BUILD="$BUILD" $PY -m pip install -q --no-build-isolation --no-deps \
            --no-index --disable-pip-version-check --target "$target" . > "$WORK/pip.log" 2>&1; then
            # the installed copy must carry its own library: no VMSTITCH_LIBRARY, no source tree
            (cd "$WORK" && env -u VMSTITCH_LIBRARY PYTHONPATH="$target" $PY -c '
import os, sys, vmstitch
p = vmstitch.library_path()
assert p.startswith(sys.argv[1]), p
print("installed library:", p)
' "$(cd "$target" && pwd -P)") || fail "installed package does not carry its library"
            printf 'import torch\nx = torch.ones(1 << 20, device="cuda")\nprint("installed ok", torch.cuda.memory_allocated() > 0)\n' > "$WORK/pip_smoke.py"
            (cd "$WORK" && env -u VMSTITCH_LIBRARY PYTHONPATH="$target" $PY -m vmstitch pip_smoke.py) \
                | grep -q "installed ok True" || fail "python -m vmstitch from the installed package"
            rm -rf "$target"
        else
            cat "$WORK/pip.log"
            fail "pip install --no-build-isolation ."
        fi
    fi
fi

if [ $failed -ne 0 ]; then
    say "GPU tests: $failed group(s) failed"
    exit 1
fi
say "GPU tests: all passed"
exit 0
