#!/bin/sh
# run_groups.sh BINARY [FILTER...]: runs the test binary once per test file (tests/test_X.c
# holds the tests named X_*), each group in its own process, so that a sanitizer report or a
# crash in one group does not hide the results of the others. With FILTERs, runs the binary
# once per FILTER (a substring of test names) instead of once per file. The environment
# (ASAN_OPTIONS, VMS_STRESS_OPS, ...) is passed through. Prints a summary line per group and
# exits nonzero if any group failed or died.
bin=${1:?usage: run_groups.sh BINARY [FILTER...]}
shift
if [ $# -gt 0 ]; then
    groups="$*"
else
    groups=""
    for f in tests/test_*.c; do
        g=$(basename "$f" .c)
        g=${g#test_}
        [ "$g" = main ] && continue
        groups="$groups ${g}_"
    done
fi
tmp=$(mktemp "${TMPDIR:-/tmp}/vms_groups.XXXXXX") || exit 1
trap 'rm -f "$tmp"' EXIT
trap 'exit 130' INT TERM
rc=0
summary=""
for g in $groups; do
    start=$(date +%s)
    $bin "$g" >"$tmp" 2>&1 # unquoted: BINARY may be a command line (valgrind ...)
    status=$?
    cat "$tmp"
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$tmp" | tail -1)
    if [ -z "$line" ]; then
        line="died (exit status $status) before its summary: see the report above"
        rc=1
    elif [ $status -ne 0 ]; then
        rc=1
        case "$line" in *" 0 failed") line="$line, exit status $status (sanitizer or leak report above)" ;; esac
    fi
    summary="$summary
  $g: $line ($(( $(date +%s) - start )) s)"
done
echo "groups of $bin:$summary"
exit $rc
