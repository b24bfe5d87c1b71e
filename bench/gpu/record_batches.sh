#!/bin/sh
# Records allocation traces of the largest-batch search's probes on the GPU (native allocator,
# PyTorch's memory history): for each WORKLOAD:B1-B2 argument, one trace per batch size B1..B2
# at sequence length SEQ (default 512), each in a fresh process (model built, then 2 steps).
# Replayed offline with `vmstitch compare --capacity-gib CAP`, they show which allocator fits
# which batch under a cap, and let the policy be tuned without a GPU (data/traces/README.md).
#
# usage: sh bench/gpu/record_batches.sh OUTDIR WORKLOAD:B1-B2 ...   (JOBS=4 processes at once)
set -u
out=$1
shift
mkdir -p "$out" || exit 1
here=$(cd "$(dirname "$0")" && pwd)
seq=${SEQ:-512}
for spec in "$@"; do
    wl=${spec%%:*}
    r=${spec#*:}
    b=${r%-*}
    while [ "$b" -le "${r#*-}" ]; do
        echo "$wl $b"
        b=$((b + 1))
    done
done | xargs -P "${JOBS:-4}" -L 1 sh -c '
    here=$0 seq=$1 out=$2 wl=$3 b=$4
    name="$wl-b$b-s$seq"
    python3 "$here/worker.py" record --workload "$wl" --batch "$b" --seq "$seq" --steps 2 \
        --trace "$out/$name.trace.gz" --json "$out/$name.json" >"$out/$name.log" 2>&1 ||
        echo "record $wl batch $b failed (see $name.log)"' "$here" "$seq" "$out"
