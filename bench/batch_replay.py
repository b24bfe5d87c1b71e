"""Largest batch under a memory cap, predicted offline: the traces of the largest-batch
search's probes (data/traces/batch/WORKLOAD-bB-sS.trace.gz, one per batch size B at sequence
length S, recorded on the GPU by bench/gpu/record_batches.sh: model built, then 2 training
steps) replayed through every policy with `vmstitch replay --capacity-gib CAP`. A policy fits
batch B under CAP when the replay serves every request. `ideal` is the largest B whose peak
live bytes fit under CAP: no allocator can do better. On the H200 the fresh-process search of
bench/gpu/run_all.py measured the same numbers (bench/results/h200-run5.md).

    python3 bench/batch_replay.py [--cli build/vmstitch] [--caps 15.75,16,...] [--json]
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLICIES = ["pytorch", "expandable", "vmstitch"]
GiB = float(1 << 30)


def traces_by_workload(folder):
    out = {}
    for path in glob.glob(os.path.join(folder, "*-b*-s*.trace.gz")):
        m = re.match(r"(.*)-b(\d+)-s(\d+)\.trace\.gz$", os.path.basename(path))
        if m:
            out.setdefault((m.group(1), int(m.group(3))), []).append((int(m.group(2)), path))
    return {k: sorted(v) for k, v in sorted(out.items())}


def replay(cli, path, cap, policies=POLICIES, env=None):
    """`vmstitch replay --json` of path under a cap: {policy: its JSON object}. env: the
    replay's environment (default: this process's)."""
    p = subprocess.run([cli, "replay", "--json", "--capacity-gib", repr(cap)] +
                       sum((["--policy", x] for x in policies), []) + [path],
                       capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit("replay of %s failed: %s" % (path, p.stderr.strip()))
    return {d["policy"]: d for d in map(json.loads, p.stdout.splitlines())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "vmstitch"))
    ap.add_argument("--traces", default=os.path.join(ROOT, "data", "traces", "batch"))
    ap.add_argument("--caps", default="15.75,15.875,16,16.125,16.25,16.375,16.5,16.625,16.75")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    caps = [float(c) for c in a.caps.split(",")]
    results = []
    for (wl, seq), batches in traces_by_workload(a.traces).items():
        print("%s, seq %d, batches %d-%d:\n" % (wl, seq, batches[0][0], batches[-1][0]))
        print("| cap GiB | ideal | " + " | ".join(POLICIES) + " |")
        print("|---|---|" + "---|" * len(POLICIES))
        rows = {}
        for cap in caps:
            best = {p: None for p in POLICIES + ["ideal"]}
            for b, path in batches:
                r = replay(a.cli, path, cap)
                if r["vmstitch"]["peak_live_bytes"] <= cap * GiB:
                    best["ideal"] = b
                for p in POLICIES:
                    if r[p].get("ooms", 0) == 0:
                        best[p] = b
            rows[cap] = best
            cell = (lambda x: "<%d" % batches[0][0] if x is None else "%d" % x)
            print("| %g | %s | " % (cap, cell(best["ideal"])) +
                  " | ".join(cell(best[p]) for p in POLICIES) + " |")
            results.append({"workload": wl, "seq": seq, "cap_gib": cap, **best})
        above = sum(1 for v in rows.values() if v["vmstitch"] is not None and all(
            v["vmstitch"] > (v[p] or 0) for p in ("pytorch", "expandable")))
        at_ideal = sum(1 for v in rows.values() if v["vmstitch"] == v["ideal"])
        print("\nvmstitch: above both baselines at %d of %d caps, at the ideal at %d.\n" % (
            above, len(rows), at_ideal))
    if a.json:
        json.dump(results, sys.stdout)
        print()


if __name__ == "__main__":
    main()
