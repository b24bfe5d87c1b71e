"""Tests of the benchmark tools' own logic, which decides what the GPU tables say: the
largest-batch bisection, the per-cap verdicts, the paired step-time ratios and their rounds,
the deterministic-loss verdict, the targets, the probe-trace composition of
bench/batch_inprocess.py and the trace grouping of bench/batch_replay.py. No GPU and no torch:
worker processes are replaced by functions. Standard library only.

    python3 tests/bench/test_bench_tools.py
"""
import gzip
import json
import os
import sys
import tempfile
import types
import unittest
from unittest import mock

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "gpu"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import run_all  # noqa: E402
import lockstep  # noqa: E402
import batch_inprocess  # noqa: E402
import batch_replay  # noqa: E402


def fake_args(**kw):
    a = types.SimpleNamespace(seq=512, timing_workloads="w", timing_rounds=2, long_seq=1024,
                              det_workloads="w", bisect_workload="", batch_grid="")
    a.__dict__.update(kw)
    return a


class FreshSearch(unittest.TestCase):
    def search(self, limit, b1=40, b2=45):
        probes = []

        def fake_run_one(job, args, tmp, deadline, log, extra=()):
            b = int(extra[extra.index("--start-batch") + 1])
            probes.append(b)
            return {"largest_batch": b if b <= limit else 0}
        with mock.patch.object(run_all, "run_one", fake_run_one):
            r = run_all.fresh_search("w", b1, b2, 16.0, "vmstitch", fake_args(), None, 0, None, {})
        return r, probes

    def test_finds_the_boundary_inside_the_range(self):
        for limit in range(40, 45):
            r, probes = self.search(limit)
            self.assertEqual(r["largest_batch"], limit)
            self.assertFalse(r["at_least"])
            self.assertFalse(r["below_range"])
            self.assertLessEqual(len(probes), 3)  # bisection over 6 values, not a scan

    def test_all_pass_is_a_lower_bound(self):
        r, _ = self.search(99)
        self.assertEqual(r["largest_batch"], 45)
        self.assertTrue(r["at_least"])

    def test_none_pass_is_below_the_range(self):
        r, _ = self.search(10)
        self.assertEqual(r["largest_batch"], 39)
        self.assertTrue(r["below_range"])

    def test_a_probe_that_did_not_run_is_an_error_not_a_failure(self):
        def broken(job, args, tmp, deadline, log, extra=()):
            return {"error": "rc=1"}
        with mock.patch.object(run_all, "run_one", broken):
            r = run_all.fresh_search("w", 40, 45, 16.0, "native", fake_args(), None, 0, None, {})
        self.assertIn("error", r)
        self.assertNotIn("largest_batch", r)


class GridVerdicts(unittest.TestCase):
    def test_counts_above_equal_below(self):
        grid = {}
        for cap, (n, e, v) in {15.75: (40, 41, 41), 16.25: (41, 42, 43), 16.5: (42, 44, 43)}.items():
            for a, b in zip(run_all.ALLOCS, (n, e, v)):
                grid[("w", 40, 45, cap, a)] = {"largest_batch": b}
        d = run_all.grid_summary(grid)["w"]
        self.assertEqual((d["caps_vmstitch_above_both"], d["caps_equal_best"], d["caps_below"]),
                         (1, 1, 1))

    def test_parse_grid(self):
        self.assertEqual(run_all.parse_grid("a:1-3@1,2.5;b:4-5@3"),
                         [("a", 1, 3, [1.0, 2.5]), ("b", 4, 5, [3.0])])
        self.assertEqual(run_all.parse_grid(""), [])


def run(steps, gpu=None, shapes=None, ns=None):
    return {"step_seconds": steps, "gpu_step_seconds": gpu, "median_step_s": run_all.median(steps),
            "shapes": shapes or [[4, 128]] * len(steps), "allocator_ns_per_step": ns}


class StepTimes(unittest.TestCase):
    def test_paired_ratio_uses_the_second_half_and_pairs_steps(self):
        base = run([1, 1, 1, 2.0, 4.0, 8.0])
        # 10% slower at every steady step; 9x slower in the first half, which must not count
        # (over all six steps the median ratio would be 9).
        other = run([9, 9, 9, 2.2, 4.4, 8.8])
        self.assertAlmostEqual(run_all.paired_ratio(other, base), 1.1)
        # The same steady times in another order: step i is paired with step i, so the ratios
        # are 4.4, 0.55, 0.55 (a ratio of medians, or of sorted times, would say 1.1).
        shuffled = run([9, 9, 9, 8.8, 2.2, 4.4])
        self.assertAlmostEqual(run_all.paired_ratio(shuffled, base), 0.55)

    def test_min_seq_keeps_only_long_steps(self):
        shapes = [[4, 128], [4, 2048]] * 4
        base = run([1.0] * 8, shapes=shapes)
        other = run([2.0, 1.0] * 4, shapes=shapes)  # slower only on the short steps
        self.assertAlmostEqual(run_all.paired_ratio(other, base, min_seq=1024), 1.0)
        self.assertIsNone(run_all.paired_ratio(run([1.0] * 4), run([1.0] * 4),
                                               key="gpu_step_seconds"))

    def test_allocator_share(self):
        r = run([0.1] * 4, ns=[0, 0, 1_000_000, 3_000_000])
        self.assertAlmostEqual(run_all.allocator_share(r), 0.02)
        self.assertIsNone(run_all.allocator_share(run([0.1] * 4, ns=[])))

    def test_timing_rounds_take_the_median_over_rounds(self):
        results = {}
        for r, (vm, nat) in enumerate(((1.05, 1.0), (1.01, 1.2), (1.00, 1.0)), start=1):
            results[("timing", "w", "native", "r%d" % r)] = run([nat] * 4, gpu=[nat] * 4)
            results[("timing", "w", "vmstitch", "r%d" % r)] = run([vm * nat] * 4, gpu=[nat] * 4)
            results[("timing", "w", "expandable", "r%d" % r)] = run([nat] * 4, gpu=[nat] * 4)
        t = run_all.timing_summary(results, fake_args(timing_rounds=3))["w"]
        self.assertEqual(t["rounds"], 3)
        self.assertAlmostEqual(t["vmstitch_ratio"], 1.01)
        self.assertAlmostEqual(t["vmstitch_ratio_gpu_time"], 1.0)
        self.assertAlmostEqual(t["native_vs_native"][0], 1.2)  # round 2 native / round 1 native

    def test_a_round_with_a_missing_run_is_left_out(self):
        results = {("timing", "w", a, "r1"): run([1.0] * 4) for a in run_all.ALLOCS}
        results[("timing", "w", "native", "r2")] = run([1.0] * 4)
        t = run_all.timing_summary(results, fake_args())["w"]
        self.assertEqual(t["rounds"], 1)


class Lockstep(unittest.TestCase):
    """bench/gpu/lockstep.py end to end over stand-in workers (tests/bench/fake_serve_worker.py):
    the step order, the warm-up, the ratios and the verdict."""

    def run_lockstep(self, factors, fail=""):
        cmd = "%s %s" % (sys.executable, os.path.join(ROOT, "tests", "bench",
                                                      "fake_serve_worker.py"))
        with tempfile.TemporaryDirectory() as tmp:
            order = os.path.join(tmp, "order.log")
            open(order, "w").close()
            with mock.patch.dict(os.environ, FAKE_FACTORS=factors, FAKE_ORDER_LOG=order,
                                 FAKE_FAIL=fail):
                rc = lockstep.main(["--out", tmp, "--workloads", "w", "--steps", "12",
                                    "--worker-cmd", cmd, "--build-timeout-s", "30"])
            with open(os.path.join(tmp, "lockstep.json")) as f:
                res = json.load(f)["results"]["w"]
            with open(order) as f:
                lines = [ln.split() for ln in f]
        return rc, res, lines

    def test_every_allocator_runs_step_i_before_any_runs_the_next(self):
        rc, res, lines = self.run_lockstep("vmstitch=1.05,expandable=0.9")
        self.assertEqual(rc, 0)
        n = len(lockstep.ALLOCS)
        warm = len(lockstep.warmup_shapes(lockstep.plan_shapes("w", "mix", 12), 2))
        self.assertEqual(len(lines), n * (warm + 12))
        measured = lines[n * warm:]
        shapes = lockstep.plan_shapes("w", "mix", 12)
        for i in range(12):
            group = measured[n * i:n * (i + 1)]
            self.assertEqual(sorted(g[0] for g in group), sorted(lockstep.ALLOCS))
            self.assertTrue(all((int(g[1]), int(g[2])) == shapes[i] for g in group))
            self.assertEqual(group[0][0], lockstep.ALLOCS[i % n])  # the order rotates
        # Every distinct shape ran on every allocator before the first measured step.
        for a in lockstep.ALLOCS:
            seen = {(int(g[1]), int(g[2])) for g in lines[:n * warm] if g[0] == a}
            self.assertEqual(seen, set(shapes))

    def test_ratios_and_verdict(self):
        _, res, _ = self.run_lockstep("vmstitch=1.05,expandable=0.9")
        s = res["summary"]
        self.assertAlmostEqual(s["vmstitch"]["ratio"], 1.05)
        self.assertAlmostEqual(s["vmstitch"]["ratio_gpu"], 1.05)
        self.assertAlmostEqual(s["expandable"]["ratio"], 0.9)
        self.assertAlmostEqual(s["native2"]["ratio"], 1.0)
        self.assertAlmostEqual(s["vmstitch"]["loss_max_abs_diff"], 0.0)
        self.assertIsNotNone(s["vmstitch"]["allocator_share"])
        self.assertAlmostEqual(s["vmstitch"]["alloc_ns_per_call"], 250.0)
        self.assertIsNone(s["native"].get("allocator_share"))
        self.assertFalse(res["verdict"]["met"])
        self.assertTrue(res["verdict"]["resolvable"])
        _, res, _ = self.run_lockstep("vmstitch=1.01")
        self.assertTrue(res["verdict"]["met"])

    def test_pairs_steps_not_sorted_times(self):
        steps = {"native": [{"wall": w, "gpu": w, "loss": 0} for w in (1.0, 2.0, 4.0)],
                 "vmstitch": [{"wall": w, "gpu": w, "loss": 0} for w in (4.0, 1.0, 2.0)]}
        s = lockstep.summarize(steps)
        self.assertAlmostEqual(s["vmstitch"]["ratio"], 0.5)  # ratios 4, 0.5, 0.5
        self.assertAlmostEqual(s["vmstitch"]["ratio_of_medians"], 1.0)

    def test_median_interval(self):
        xs = [1.0 + 0.01 * (i % 21 - 10) for i in range(200)]  # median 1.0, spread +-10%
        lo, hi = lockstep.median_interval(xs)
        self.assertLessEqual(lo, 1.0)
        self.assertGreaterEqual(hi, 1.0)
        self.assertLess(hi - lo, 0.05)
        self.assertEqual((lo, hi), lockstep.median_interval(xs))  # fixed seed
        wide = lockstep.median_interval(xs[:10])
        self.assertGreater(wide[1] - wide[0], hi - lo)  # fewer steps, wider
        self.assertEqual(lockstep.median_interval([1.0]), (None, None))

    def test_noisy_floor_is_not_resolvable(self):
        v = lockstep.verdict({"vmstitch": {"ratio": 1.0}, "native2": {"ratio": 1.03}})
        self.assertTrue(v["met"])
        self.assertFalse(v["resolvable"])

    def test_a_worker_that_dies_is_an_error_not_a_hang(self):
        rc, res, lines = self.run_lockstep("", fail="expandable")
        self.assertEqual(rc, 1)
        self.assertIn("expandable: worker ended", res["error"])
        self.assertEqual(lines, [])

    def test_cpu_sets_keep_workers_off_each_others_cores(self):
        cores = [[0, 8], [1, 9], [2, 10], [3, 11], [4, 12], [5, 13], [6, 14], [7, 15]]
        sets = lockstep.cpu_sets(3, 2, cores)
        self.assertEqual(sets, [[1, 2], [3, 4], [5, 6]])  # core 0 left to the system
        self.assertIsNone(lockstep.cpu_sets(4, 2, cores))  # 7 cores for 8: nothing pinned

    def test_run_all_takes_the_step_time_target_from_lockstep(self):
        def ls(vm, n2):
            summ = {"native": {}, "vmstitch": {"ratio": vm}, "native2": {"ratio": n2}}
            return {"shape": "mix", "summary": summ, "verdict": lockstep.verdict(summ)}
        args = fake_args(timing_rounds=0, bisect_workload="", det_workloads="",
                         lockstep_results={"a": ls(1.01, 1.0), "b": ls(0.99, 1.001)})
        self.assertTrue(run_all.summarize({}, args)["targets"]["step_time"])
        args.lockstep_results["b"] = ls(1.03, 1.0)  # one workload over: the target fails
        self.assertFalse(run_all.summarize({}, args)["targets"]["step_time"])
        args.lockstep_results["b"] = ls(1.0, 1.05)  # noise as large as the margin: unproven
        self.assertFalse(run_all.summarize({}, args)["targets"]["step_time"])
        args.lockstep_results["b"] = {"error": "worker ended"}
        self.assertFalse(run_all.summarize({}, args)["targets"]["step_time"])

    def test_fixed_shape(self):
        self.assertEqual(lockstep.plan_shapes("w", "4,2048", 3), [(4, 2048)] * 3)
        tok = lockstep.plan_shapes("x-tok", "mix", 50)
        self.assertTrue(all(b == max(1, 4096 // L) for b, L in tok))
        self.assertTrue(all(b == 4 for b, _ in lockstep.plan_shapes("w", "mix", 50)))


class Losses(unittest.TestCase):
    def det(self, vm, n2):
        results = {("train", "w", "native", "det1"): {"losses": [1.0, 2.0]},
                   ("train", "w", "native", "det2"): {"losses": n2},
                   ("train", "w", "vmstitch", "det1"): {"losses": vm},
                   ("train", "w", "expandable", "det1"): {"losses": [1.0, 2.0]}}
        return run_all.det_summary(results, fake_args())["w"]

    def test_equal_losses_pass(self):
        self.assertTrue(self.det([1.0, 2.0], [1.0, 2.0])["vmstitch_equal"])

    def test_any_difference_beyond_native_spread_fails(self):
        self.assertFalse(self.det([1.0, 2.0 + 1e-6], [1.0, 2.0])["vmstitch_equal"])
        self.assertTrue(self.det([1.0, 2.0 + 1e-6], [1.0, 2.0 + 2e-6])["vmstitch_equal"])

    def test_no_memory_runs_means_no_verdict(self):
        s = run_all.summarize({}, fake_args())
        self.assertIsNone(s["targets"]["efficiency"])
        self.assertIsNone(s["targets"]["largest_batch"])


def write_trace(path, lines):
    with gzip.open(path, "wt") as f:
        f.write("# vmstitch-trace v1\n" + "\n".join(lines) + "\n")


class Composition(unittest.TestCase):
    def test_later_probes_skip_the_build_and_the_kept_state(self):
        with tempfile.TemporaryDirectory() as d:
            for bs in (1, 2):
                ids = bs * 8 * 8  # the first step's input ids: int64, batch x seq (seq 8)
                write_trace(os.path.join(d, "w-b%d-s8.trace.gz" % bs), [
                    "a 0 1000 0",            # build: a parameter, kept
                    "a 4 300 0", "f 4",      # build: a temporary
                    "a 1 %d 0" % ids,        # step: input ids
                    "a 2 5000 0",            # optimizer state, kept
                    "a 3 7000 0", "f 3",     # an activation
                    "f 1"])
            out = os.path.join(d, "c.trace.gz")
            batch_inprocess.compose(d, "w", [1, 2], 8, out)
            with gzip.open(out, "rt") as f:
                ev = [line.split() for line in f if line[:1] in "af"]
        sizes = [int(e[2]) for e in ev if e[0] == "a"]
        self.assertEqual(sizes, [1000, 300, 64, 5000, 7000, 128, 7000])
        ids = [e[1] for e in ev if e[0] == "a"]
        self.assertEqual(len(set(ids)), len(ids))  # renumbered, never reused
        freed = [e[1] for e in ev if e[0] == "f"]
        self.assertTrue(set(freed) <= set(ids))
        self.assertEqual(len(freed), 5)

    def test_batch_replay_groups_traces_by_workload(self):
        with tempfile.TemporaryDirectory() as d:
            for name in ("w-b3-s8", "w-b10-s8", "v-b1-s16", "other"):
                write_trace(os.path.join(d, name + ".trace.gz"), [])
            g = batch_replay.traces_by_workload(d)
        self.assertEqual(sorted(g), [("v", 16), ("w", 8)])
        self.assertEqual([b for b, _ in g[("w", 8)]], [3, 10])  # numeric order


if __name__ == "__main__":
    unittest.main(verbosity=1)
