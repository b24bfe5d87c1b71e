"""A stand-in for `worker.py serve` (bench/gpu/lockstep.py's protocol) without a GPU or torch,
for tests/bench/test_bench_tools.py: replies to "step B L" with made-up times, B*L microseconds
times the allocator's factor (FAKE_FACTORS="vmstitch=1.05,..."; 1 when not listed), and
appends "ALLOC B L" to FAKE_ORDER_LOG, so a test can check the order the steps were given out.

    fake_serve_worker.py ALLOC --workload W --json OUT
"""
import json
import os
import sys


def main():
    alloc, args = sys.argv[1], sys.argv[2:]
    out = args[args.index("--json") + 1]
    factors = dict(kv.split("=") for kv in filter(None, os.environ.get("FAKE_FACTORS", "").split(",")))
    factor = float(factors.get(alloc, 1.0))
    if os.environ.get("FAKE_FAIL") == alloc:
        sys.exit(3)  # dies before it is ready
    print("a line that is not a reply", flush=True)
    print("@@ " + json.dumps({"ready": True, "env": {"device": "fake", "driver": "0",
                                                     "torch": "none", "allocator": alloc}}),
          flush=True)
    steps = 0
    for line in sys.stdin:
        cmd = line.split()
        if cmd and cmd[0] == "quit":
            break
        b, L = int(cmd[1]), int(cmd[2])
        with open(os.environ["FAKE_ORDER_LOG"], "a") as f:
            f.write("%s %d %d\n" % (alloc, b, L))
        steps += 1
        t = b * L * 1e-6 * factor
        print("@@ " + json.dumps({"wall": t, "gpu": 0.5 * t, "loss": 1.0 + steps * 1e-3,
                                  "alloc_ns": 1000 if alloc == "vmstitch" else None,
                                  "alloc_calls": 4 if alloc == "vmstitch" else None}), flush=True)
    with open(out, "w") as f:
        json.dump({"mode": "serve", "steps": steps}, f)


if __name__ == "__main__":
    main()
