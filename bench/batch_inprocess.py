"""Largest-batch probes one after the other in one process, offline: the traces of
data/traces/batch/ composed as a batch-size search that keeps its process would run them (the
model built once; each later probe skips the build and the optimizer state, which the first
probe's step already created and which stays where it was placed), then, per policy, the
smallest memory cap under which the composed run needs no allocation to fail, as MiB above the
run's peak live bytes (bisection on --capacity-gib, 1/128 GiB steps). Only probes that succeed
can be composed: a probe that runs out of memory on the GPU stops part-way, which a trace
recorded without a cap cannot show.

    python3 bench/batch_inprocess.py [--cli build/vmstitch] WORKLOAD:B1,B2,... ...
    e.g. gpt2m-full:11,12,13 opt350-lora-rc:40,42,43

VMSTITCH_* variables apply to the vmstitch policy as usual; --vmstitch-env NAME=VALUE adds a
second vmstitch column with it set (e.g. VMSTITCH_LARGE_CHUNK_MAX=8M).
"""
import argparse
import gzip
import os
import tempfile

import batch_replay  # bench/, beside this script: its `vmstitch replay --json` runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GiB = float(1 << 30)


def load(path):
    with gzip.open(path, "rt") as f:
        return [line.split() for line in f if line[:1] in ("a", "f")]


def compose(folder, workload, batches, seq, out):
    lines, nid = [], 0
    for j, bs in enumerate(batches):
        ev = load(os.path.join(folder, "%s-b%d-s%d.trace.gz" % (workload, bs, seq)))
        # The build ends where the first step's input ids (int64, batch x seq) are allocated.
        k = next(i for i, e in enumerate(ev) if e[0] == "a" and int(e[2]) == bs * seq * 8)
        freed = {e[1] for e in ev if e[0] == "f"}
        kept = {e[1] for e in ev if e[0] == "a" and e[1] not in freed}  # params, optimizer state
        ids = {}
        for i, e in enumerate(ev):
            if j > 0 and (i < k or (e[0] == "a" and e[1] in kept)):
                continue
            if e[0] == "a":
                ids[e[1]] = nid
                lines.append("a %d %s %s" % (nid, e[2], e[3]))
                nid += 1
            elif e[1] in ids:
                lines.append("f %d" % ids[e[1]])
    with gzip.open(out, "wt") as f:
        f.write("# vmstitch-trace v1\n# workload %s-in-process-%s\n" % (
            workload, "-".join(map(str, batches))))
        f.write("\n".join(lines) + "\n")


def fits(cli, path, policy, cap, env):
    d = batch_replay.replay(cli, path, cap, [policy], dict(os.environ, **env))[policy]
    return d.get("ooms", 0) == 0, d["peak_live_bytes"] / GiB


def min_cap_over_live_mib(cli, path, policy, env):
    _, live = fits(cli, path, policy, 1e4, env)
    lo, hi = live - 1.0 / 128, live + 4.0  # lo cannot fit (below live); hi must fit:
    if not fits(cli, path, policy, hi, env)[0]:  # no answer if 4 GiB above live does not
        return None, live
    while hi - lo > 1.0 / 128:
        mid = (lo + hi) / 2
        if fits(cli, path, policy, mid, env)[0]:
            hi = mid
        else:
            lo = mid
    return (hi - live) * 1024, live


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "vmstitch"))
    ap.add_argument("--traces", default=os.path.join(ROOT, "data", "traces", "batch"))
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--vmstitch-env", action="append", default=[])
    ap.add_argument("runs", nargs="+", help="WORKLOAD:B1,B2,...")
    a = ap.parse_args()
    cols = [("expandable", "expandable", {}), ("vmstitch", "vmstitch", {})]
    for kv in a.vmstitch_env:
        k, v = kv.split("=", 1)
        cols.append(("vmstitch %s" % kv, "vmstitch", {k: v}))
    print("Smallest cap that serves the whole run, MiB above its peak live bytes:\n")
    print("| probes in one process | peak live GiB | " + " | ".join(c[0] for c in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    with tempfile.TemporaryDirectory() as tmp:
        for run in a.runs:
            wl, bs = run.split(":")
            batches = [int(x) for x in bs.split(",")]
            path = os.path.join(tmp, "composed.trace.gz")
            compose(a.traces, wl, batches, a.seq, path)
            res = [min_cap_over_live_mib(a.cli, path, pol, env) for _, pol, env in cols]
            print("| %s %s | %.3f | " % (wl, bs, res[0][1]) + " | ".join(
                "-" if r[0] is None else "%.0f" % r[0] for r in res) + " |", flush=True)


if __name__ == "__main__":
    main()
