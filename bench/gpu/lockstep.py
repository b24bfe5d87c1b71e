"""Step time, allocators in lockstep: one worker process per allocator (native, vmstitch,
expandable segments and a second native run as the noise floor), all built first, then the
steps given out in turn: step i runs on every allocator, one process at a time, the order
rotated from step to step, before step i+1 starts anywhere. Each worker times its own step
(wall clock and CUDA events, synchronized at the end) and nothing else runs on the card
meanwhile, since the others wait on their pipes.

Why: run one after the other, whole runs drift. On the H200, native's own median step moved by
up to 42% between runs minutes apart, far more than the 2% to resolve. In lockstep, step i of
every allocator runs within a second of the others, at the same shape and on the same data, so
the drift cancels in the per-step ratio; the median over steps of that ratio is the figure, and
native2 against native says how far noise alone moves it.

    python3 bench/gpu/lockstep.py --out DIR [--workloads opt350-lora-rc,gpt2m-full]
        [--steps 120] [--shape mix|BATCH,SEQ] [--warmup-passes 2] [--build build]

Writes DIR/lockstep.json and DIR/lockstep.md and prints the table. --worker-cmd replaces the
worker (tests use a stand-in that speaks the same protocol: see worker.py run_serve).
"""
import argparse
import json
import os
import queue
import random
import shlex
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_all  # noqa: E402  (alloc_env, median)

ALLOCS = ["native", "vmstitch", "expandable", "native2"]
SEQS = [128, 256, 384, 512, 768, 1024, 1536, 2048]  # the recipe's sequence lengths
TARGET = run_all.STEP_TIME_TARGET


def recipe_batch(workload, L):
    """The recipe's batch at sequence length L: 4, or a budget of 4096 tokens for *-tok."""
    return max(1, 8 * 512 // L) if "tok" in workload else 4


def plan_shapes(workload, shape, steps, seed=1234):
    """The measured steps' shapes: the recipe's random lengths (batch 4, or a token budget for
    *-tok workloads), or one fixed BATCH,SEQ."""
    if shape != "mix":
        b, L = (int(x) for x in shape.split(","))
        return [(b, L)] * steps
    rng = random.Random(seed)
    out = []
    for _ in range(steps):
        L = rng.choice(SEQS)
        out.append((recipe_batch(workload, L), L))
    return out


def warmup_shapes(shapes, passes):
    """Every distinct shape of the plan, `passes` times: kernels tuned and memory first touched
    before any step is measured."""
    return sorted(set(shapes)) * passes


def rotation(names, i):
    k = i % len(names)
    return names[k:] + names[:k]


class Worker:
    """One allocator's process; replies ("@@ {json}" lines on its stdout) are queued by a
    reader thread, so that a hung worker costs a timeout rather than the whole run."""

    def __init__(self, name, cmd, env, log, cpus=None):
        self.name = name
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None  # before exec: all
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE,  # threads inherit it
                                     stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
                                     preexec_fn=pin)
        self.replies = queue.Queue()
        self.other = []  # the worker's other stdout lines, for the log
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("@@ "):
                self.replies.put(json.loads(line[3:]))
            else:
                self.other.append(line)
        self.replies.put(None)  # end of output

    def ask(self, command, timeout_s):
        if command:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        try:
            r = self.replies.get(timeout=timeout_s)
        except queue.Empty:
            raise RuntimeError("%s: no reply to %r in %.0f s" % (self.name, command, timeout_s))
        if r is None:
            raise RuntimeError("%s: worker ended (rc %s) before replying to %r" % (
                self.name, self.proc.poll(), command))
        if "error" in r:
            raise RuntimeError("%s: %s" % (self.name, r["error"]))
        return r

    def close(self, timeout_s):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=timeout_s)
        except Exception:  # noqa: BLE001 - already gone or stuck: make sure it is gone
            self.proc.kill()
            self.proc.wait()


def worker_cmd(args, alloc, workload, json_out):
    if args.worker_cmd:
        cmd = shlex.split(args.worker_cmd) + [alloc]
    else:
        cmd = [sys.executable] + (["-m", "vmstitch"] if alloc == "vmstitch" else []) + [
            run_all.WORKER, "serve"]
    return cmd + ["--workload", workload, "--json", json_out] + (["--spin"] if args.spin else [])


def physical_cores(allowed):
    """The allowed logical CPUs grouped by physical core (SMT siblings together), in order."""
    cores = {}
    for cpu in sorted(allowed):
        try:
            with open("/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list" % cpu) as f:
                key = f.read().strip()
        except OSError:
            key = str(cpu)
        cores.setdefault(key, []).append(cpu)
    return list(cores.values())


def cpu_sets(nworkers, per_worker, cores):
    """Each worker's own CPUs: per_worker physical cores, one logical CPU of each, no two
    workers on one core (nor on the first core, where the system's own work tends to run).
    None when there are not enough cores: then nothing is pinned."""
    cores = cores[1:]
    if len(cores) < nworkers * per_worker:
        return None
    return [[cores[w * per_worker + k][0] for k in range(per_worker)] for w in range(nworkers)]


def run_workload(args, workload, log):
    """All allocators' workers for one workload, in lockstep; per allocator the list of step
    replies (measured steps only), and each worker's ready reply (its environment)."""
    shapes = plan_shapes(workload, args.shape, args.steps)
    warm = warmup_shapes(shapes, args.warmup_passes)
    workers = {}
    # Pinned, each to cores of its own (the main thread and autograd's device thread), so that
    # no allocator's steps share a core with another's or move between cores of other speeds.
    sets = cpu_sets(len(args.allocs), 2, physical_cores(os.sched_getaffinity(0))) \
        if args.pin else None
    try:
        for i, a in enumerate(args.allocs):
            base = "native" if a.startswith("native") else a
            out = os.path.join(args.out, "serve-%s-%s.json" % (workload, a))
            workers[a] = Worker(a, worker_cmd(args, a, workload, out),
                                run_all.alloc_env(base, args.build), log,
                                cpus=sets[i] if sets else None)
        ready = {a: w.ask(None, args.build_timeout_s)  # built concurrently
                 for a, w in workers.items()}
        for i, (b, L) in enumerate(warm):
            for a in rotation(args.allocs, i):
                workers[a].ask("step %d %d" % (b, L), args.step_timeout_s)
        steps = {a: [] for a in args.allocs}
        for i, (b, L) in enumerate(shapes):
            for a in rotation(args.allocs, i):
                r = workers[a].ask("step %d %d" % (b, L), args.step_timeout_s)
                r["shape"] = [b, L]
                steps[a].append(r)
    finally:
        for w in workers.values():
            w.close(args.build_timeout_s)
            if w.other:
                log.write("--- %s %s stdout\n%s" % (workload, w.name, "".join(w.other[-50:])))
        log.flush()
    return steps, ready


def quartiles(xs):
    xs = sorted(xs)
    if not xs:
        return None, None, None
    n = len(xs)
    return xs[n // 4], run_all.median(xs), xs[(3 * n) // 4]


def median_interval(xs, resamples=1000, seed=1):
    """A 95% bootstrap interval of the median of xs (fixed seed: the same data, the same
    interval). On a launch-bound step the host's jitter makes one step's ratio vary by +-10%
    or more; this says how far the median over the steps taken can be trusted."""
    if len(xs) < 2:
        return None, None
    rng = random.Random(seed)
    ms = sorted(run_all.median(rng.choices(xs, k=len(xs))) for _ in range(resamples))
    return ms[int(0.025 * resamples)], ms[int(0.975 * resamples) - 1]


def summarize(steps, base="native"):
    """Per allocator: the median over steps of its step time / native's same step (wall and
    GPU time), the quartiles of that ratio, the ratio of the median steps, and the largest
    loss difference from native; vmstitch's share of wall time inside alloc/free."""
    out = {}
    ref = steps[base]
    base_median = run_all.median([b["wall"] for b in ref])
    for a, rs in steps.items():
        d = {"steps": len(rs),
             "median_step_s": run_all.median([r["wall"] for r in rs]),
             "median_gpu_s": run_all.median([r["gpu"] for r in rs])}
        if a != base:
            for key, name in (("wall", "ratio"), ("gpu", "ratio_gpu")):
                xs = [r[key] / b[key] for r, b in zip(rs, ref) if b[key] > 0]
                q1, m, q3 = quartiles(xs)
                d[name], d[name + "_q1"], d[name + "_q3"] = m, q1, q3
                d[name + "_ci95"] = median_interval(xs)
            d["ratio_of_medians"] = d["median_step_s"] / base_median if base_median else None
            d["loss_max_abs_diff"] = run_all.max_abs_diff([r["loss"] for r in rs],
                                                          [b["loss"] for b in ref])
        ns = [r.get("alloc_ns") for r in rs]
        if ns and all(x is not None for x in ns):
            wall = sum(r["wall"] for r in rs)
            d["allocator_share"] = sum(ns) * 1e-9 / wall if wall > 0 else None
            calls = sum(r.get("alloc_calls") or 0 for r in rs)
            d["alloc_ns_per_call"] = sum(ns) / calls if calls else None
            d["alloc_calls_per_step"] = calls / len(rs)
        out[a] = d
    return out


def verdict(summary, target=TARGET):
    """Met when vmstitch's median ratio is within the target, on wall time; the noise floor
    (native2) says whether the figure can be trusted to that precision."""
    v = summary.get("vmstitch", {}).get("ratio")
    n2 = summary.get("native2", {}).get("ratio")
    return {"vmstitch_ratio": v, "noise_floor": n2,
            "met": v is not None and v <= target,
            "resolvable": n2 is not None and abs(n2 - 1.0) < (target - 1.0)}


def table(results, meta):
    lines = ["# Step time in lockstep (%s)" % meta.get("device", "?"), "",
             "Per workload, every allocator's worker runs step i before any runs step i+1, in "
             "rotated order; ratio = median over %s measured steps of step time / native's same "
             "step (quartiles in brackets; 95%% bootstrap interval of the median in its own "
             "column). native2 is a second native run: the noise floor."
             % meta.get("steps"), "",
             "| workload | shape | allocator | median step s | x native (wall) | 95% interval "
             "| x native (GPU) | median/median | time in alloc/free | max loss diff |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for wl, res in results.items():
        if "error" in res:
            lines.append("| %s | | ERROR: %s | | | | | | | |" % (wl, res["error"][:120]))
            continue
        for a, d in res["summary"].items():
            def r(k):
                if d.get(k) is None:
                    return "-"
                return "%.3f [%.3f-%.3f]" % (d[k], d[k + "_q1"], d[k + "_q3"])
            ci = d.get("ratio_ci95") or (None, None)
            lines.append("| %s | %s | %s | %.4f | %s | %s | %s | %s | %s | %s |" % (
                wl, res["shape"], a, d["median_step_s"], r("ratio"),
                "-" if ci[0] is None else "%.3f-%.3f" % tuple(ci), r("ratio_gpu"),
                "-" if d.get("ratio_of_medians") is None else "%.3f" % d["ratio_of_medians"],
                "-" if d.get("allocator_share") is None else "%.2f%% (%.0f ns x %.0f calls)" % (
                    100 * d["allocator_share"], d.get("alloc_ns_per_call") or 0,
                    d.get("alloc_calls_per_step") or 0),
                "-" if d.get("loss_max_abs_diff") is None else "%.1e" % d["loss_max_abs_diff"]))
    lines.append("")
    for wl, res in results.items():
        if "verdict" in res:
            v = res["verdict"]
            lines.append("%s: vmstitch %.3fx native (target <= %.2f: %s); native2 %.3fx (%s)." % (
                wl, v["vmstitch_ratio"], TARGET, "met" if v["met"] else "NOT met",
                v["noise_floor"] if v["noise_floor"] is not None else float("nan"),
                "noise below the target's margin" if v["resolvable"] else
                "noise as large as the margin: not resolvable"))
    return "\n".join(lines) + "\n"


def parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--workloads", default="opt350-lora-rc,gpt2m-full")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--shape", default="mix", help="'mix' (the recipe's) or BATCH,SEQ")
    ap.add_argument("--warmup-passes", type=int, default=2)
    ap.add_argument("--allocs", default=",".join(ALLOCS))
    ap.add_argument("--build", default=os.path.join(run_all.ROOT, "build"))
    ap.add_argument("--build-timeout-s", type=float, default=240)
    ap.add_argument("--step-timeout-s", type=float, default=120)
    ap.add_argument("--worker-cmd", default="", help="stand-in worker (tests)")
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="do not pin each worker to cores of its own")
    ap.add_argument("--no-spin", dest="spin", action="store_false",
                    help="workers wait for commands asleep instead of polling")
    ap.add_argument("--device", default="", help="the card, if the workers do not say")
    return ap


def parse_args(argv):
    """The options, checked and normalized (run_all.py builds its lockstep runs from them)."""
    ap = parser()
    args = ap.parse_args(argv)
    args.allocs = args.allocs.split(",")
    if "native" not in args.allocs:
        ap.error("--allocs needs native: it is the reference")
    args.build = os.path.abspath(args.build)
    return args


def measure(args, workload, log):
    """One workload in lockstep: its summary, verdict and steps, or an error."""
    t0 = time.time()
    try:
        steps, ready = run_workload(args, workload, log)
    except RuntimeError as e:
        return {"error": str(e), "seconds": time.time() - t0}
    summ = summarize(steps)
    return {"shape": args.shape, "summary": summ, "verdict": verdict(summ),
            "env": ready["native"].get("env") or {},
            "envs": {a: r.get("env") for a, r in ready.items()},
            "cpus": {a: r.get("cpus") for a, r in ready.items()},
            "steps": steps, "seconds": time.time() - t0}


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results, device = {}, args.device
    with open(os.path.join(args.out, "lockstep.log"), "w") as log:
        for wl in filter(None, args.workloads.split(",")):
            r = results[wl] = measure(args, wl, log)
            if "env" in r and not device:
                device = "%s (driver %s, torch %s)" % (
                    r["env"].get("device"), r["env"].get("driver"), r["env"].get("torch"))
            print("%s: %.0f s%s" % (wl, r["seconds"], (" ERROR " + r["error"])
                                    if "error" in r else ""), flush=True)
    meta = {"device": device or "?", "pin": args.pin, "spin": args.spin,
            "steps": args.steps, "allocs": args.allocs, "warmup_passes": args.warmup_passes}
    with open(os.path.join(args.out, "lockstep.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f)
    md = table(results, meta)
    with open(os.path.join(args.out, "lockstep.md"), "w") as f:
        f.write(md)
    print(md)
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
