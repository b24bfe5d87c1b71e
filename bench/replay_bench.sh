#!/bin/sh
# Replay benchmark (`make bench`): the CPU time per trace event of each policy on the bundled
# traces, sim backend, parsing excluded. The vmstitch column is the number to watch; the others
# are for reference. Each cell is the best of REPEAT runs (default 3), each in its own process
# with only that policy, so policies do not share caches. Timing is reported, never asserted.
#
# usage: sh bench/replay_bench.sh [build/vmstitch] [TRACE...]

V=${1:-build/vmstitch}
[ $# -gt 0 ] && shift
REPEAT=${REPEAT:-3}
if [ $# -eq 0 ]; then
    set -- data/traces/*.trace.gz
fi

field() { # field NAME < json line
    sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p"
}

best_ns() { # best_ns POLICY TRACE: the smallest ns_per_event of REPEAT runs
    best=""
    i=0
    while [ "$i" -lt "$REPEAT" ]; do
        ns=$("$V" replay --json --policy "$1" "$2" | field ns_per_event)
        if [ -z "$ns" ] || [ "$ns" = null ]; then
            echo "-"
            return 1
        fi
        if [ -z "$best" ] || awk "BEGIN { exit !($ns < $best) }"; then best=$ns; fi
        i=$((i + 1))
    done
    printf '%.0f' "$best"
}

echo "ns per event (best of $REPEAT), replay on the sim backend:"
printf '%-20s %9s %10s %10s %10s %10s\n' trace events vmstitch pytorch expandable gmlake
status=0
for t in "$@"; do
    events=$("$V" replay --json --policy pytorch "$t" | field events)
    if [ -z "$events" ]; then
        echo "$t: replay failed" >&2
        status=1
        continue
    fi
    name=$(basename "$t" .trace.gz)
    row=""
    for p in vmstitch pytorch expandable gmlake; do
        ns=$(best_ns "$p" "$t") || status=1
        row="$row $(printf '%10s' "$ns")"
    done
    printf '%-20s %9s%s\n' "$name" "$events" "$row"
done
exit $status
