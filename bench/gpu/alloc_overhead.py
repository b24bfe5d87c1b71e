"""What each allocator costs per allocation event on the GPU machine, without the noise of
training steps: recorded traces replayed through PyTorch's allocator entry points
(torch.cuda.caching_allocator_alloc / _delete) with the native allocator, expandable segments
and vmstitch, each in its own process (worker.py trace); and, below PyTorch, the C core
replayed by the CLI on the sim backend and on the real driver (`vmstitch replay --policy
vmstitch --policy vmstitch-cuda`), which separates the core's own time from the cuda
backend's and the driver's; and hot_path_bench.c, which times one cached malloc + free on each
backend and the capture check's two driver calls alone. Writes OUT/alloc_overhead.json and OUT/alloc_overhead.md.

    python3 bench/gpu/alloc_overhead.py --out DIR [--build build] [TRACE ...]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_all  # noqa: E402  (its process launcher and allocator environments)

ROOT = run_all.ROOT
DEFAULT_TRACES = [os.path.join(ROOT, "data", "traces", t)
                  for t in ("gpt2m-full.trace.gz", "opt350-lora-rc.trace.gz")]


def build_torch_replay(tmp):
    """torch_replay.cpp built against the installed torch: (path, None), or (None, why)."""
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError as e:
        return None, "no torch: %s" % e
    tdir = os.path.dirname(torch.__file__)
    inc = [os.path.join(tdir, "include")] + [os.path.join(p, "include") for p in (
        os.environ.get("CUDA_HOME") or cpp_extension.CUDA_HOME or "/usr/local/cuda",)]
    so = os.path.join(tmp, "torch_replay.so")
    cmd = ["g++", "-O2", "-std=c++17", "-shared", "-fPIC",
           "-D_GLIBCXX_USE_CXX11_ABI=%d" % int(torch._C._GLIBCXX_USE_CXX11_ABI)] + [
        "-I" + i for i in inc] + [os.path.join(HERE, "torch_replay.cpp"),
                                  "-L" + os.path.join(tdir, "lib"), "-lc10", "-lc10_cuda",
                                  "-Wl,-rpath," + os.path.join(tdir, "lib"), "-o", so]
    c = subprocess.run(cmd, capture_output=True, text=True)
    if c.returncode != 0:
        return None, (" ".join(cmd) + "\n" + c.stderr)[-1500:]
    return so, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--passes", type=int, default=4)
    ap.add_argument("traces", nargs="*", default=DEFAULT_TRACES)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    args = types.SimpleNamespace(build=os.path.abspath(a.build), estimate={}, run_timeout_s=150)
    doc = {"python": {}, "cxx": {}, "cli": []}
    with tempfile.TemporaryDirectory() as tmp, open(os.path.join(a.out, "overhead_runs.log"),
                                                    "w") as log:
        cxx, doc["cxx_build"] = build_torch_replay(tmp)
        for t in a.traces:
            name = os.path.basename(t).replace(".trace.gz", "")
            for via in (["python", "cxx"] if cxx else ["python"]):
                for alloc in run_all.ALLOCS:
                    extra = ["--trace", os.path.abspath(t), "--passes", str(a.passes)]
                    if via == "cxx":
                        extra += ["--cxx", cxx]
                    r = run_all.run_one(("trace", name, alloc, via), args, tmp, 1e18, log,
                                        extra=extra)
                    doc[via].setdefault(name, {})[alloc] = r
                    print(via, name, alloc, {k: r.get(k) for k in (
                        "ns_per_event_steady", "ns_per_event_passes", "loop_ns_per_event",
                        "vmstitch_ns_per_call_inside", "error")}, flush=True)
        cli = os.path.join(a.build, "vmstitch")
        doc["cli_stderr"] = ""
        for policy in ("vmstitch", "vmstitch-cuda"):  # apart: one failing keeps the other
            p = subprocess.run([cli, "replay", "--json", "--policy", policy] + a.traces,
                               capture_output=True, text=True)
            doc["cli_stderr"] += p.stderr[-1000:]
            for line in p.stdout.splitlines():
                try:
                    r = json.loads(line)
                    if isinstance(r.get("trace"), str):  # no machine's paths in the results
                        r["trace"] = os.path.relpath(r["trace"], ROOT)
                    doc["cli"].append(r)
                except ValueError:
                    pass
        # The hot path's parts in C: the core alone, the cuda backend, the capture check's calls.
        exe = os.path.join(tmp, "hot_path_bench")
        c = subprocess.run(["cc", "-O2", "-std=c11", "-D_GNU_SOURCE", "-I" + os.path.join(
            ROOT, "include"), os.path.join(HERE, "hot_path_bench.c"),
            os.path.join(a.build, "libvmstitch.a"), "-lz", "-ldl", "-lpthread", "-lm", "-o", exe],
            capture_output=True, text=True)
        if c.returncode == 0:
            h = subprocess.run([exe] + a.traces, capture_output=True, text=True, timeout=240)
            try:
                doc["hot_path"] = json.loads(h.stdout)
            except ValueError:
                doc["hot_path"] = {"error": (h.stdout + h.stderr)[-500:]}
        else:
            doc["hot_path"] = {"error": c.stderr[-500:]}
    with open(os.path.join(a.out, "alloc_overhead.json"), "w") as f:
        json.dump(doc, f, indent=1)
    L = ["# Allocator cost per event (%s)\n" % next(
        (r.get("env", {}).get("device") for d in doc["python"].values() for r in d.values()
         if r.get("env")), "?"),
         "Through PyTorch (torch.cuda.caching_allocator_alloc/_delete from Python; passes 2+ "
         "over the trace, memory cached). loop = the same Python loop with stand-in functions. "
         "inside = vmstitch's own time per call, measured in its shim:\n",
         "| trace | native ns/event | expandable | vmstitch | loop | vmstitch - native | "
         "vmstitch inside, ns/call |", "|---|---|---|---|---|---|---|"]
    for name, d in doc["python"].items():
        g = (lambda al, k="ns_per_event_steady": d.get(al, {}).get(k))
        f0 = (lambda x: "-" if x is None else "%.0f" % x)
        diff = (g("vmstitch") - g("native")) if g("vmstitch") and g("native") else None
        L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            name, f0(g("native")), f0(g("expandable")), f0(g("vmstitch")),
            f0(g("native", "loop_ns_per_event")), f0(diff),
            f0(g("vmstitch", "vmstitch_ns_per_call_inside"))))
    if doc["cxx"]:
        L += ["", "The same events from C++ (torch_replay.cpp: raw_alloc_with_stream / raw_delete "
              "in a loop, no Python between the calls), ns per event, passes 2+ (each pass):\n",
              "| trace | native | expandable | vmstitch | vmstitch - native |", "|---|---|---|---|---|"]
        for name, d in doc["cxx"].items():
            def cell(al):
                r = d.get(al, {})
                if r.get("ns_per_event_steady") is None:
                    return "-"
                return "%.0f (%s)" % (r["ns_per_event_steady"], " ".join(
                    "%.0f" % x for x in r.get("ns_per_event_passes", [])))
            nv, vv = (d.get(al, {}).get("ns_per_event_steady") for al in ("native", "vmstitch"))
            L.append("| %s | %s | %s | %s | %s |" % (name, cell("native"), cell("expandable"),
                                                     cell("vmstitch"),
                                                     "-" if not (nv and vv) else "%.0f" % (vv - nv)))
    elif doc.get("cxx_build"):
        L += ["", "C++ replay not built: " + doc["cxx_build"][-300:]]
    L += ["", "The C core alone (CLI replay; time inside vms_malloc/vms_free; on the real driver "
          "it includes the driver's VMM calls and the capture check):\n",
          "| trace | policy | ns/event | VMM calls | modeled VMM s | real replay s | "
          "peak reserved GiB |", "|---|---|---|---|---|---|---|"]
    for r in doc["cli"]:
        calls = sum(r.get("vmm_calls", {}).values())
        L.append("| %s | %s | %.0f | %d | %.4f | %.4f | %.3f |" % (
            r.get("workload"), r.get("policy"), r.get("ns_per_event") or 0, calls,
            r.get("modeled_vmm_seconds") or 0, r.get("replay_seconds") or 0,
            (r.get("peak_reserved_bytes") or 0) / float(1 << 30)))
    L += ["", "Hot path in C (bench/gpu/hot_path_bench.c), ns: " +
          json.dumps(doc.get("hot_path"))]
    if doc["cli_stderr"]:
        L += ["", "CLI stderr: " + doc["cli_stderr"][-500:]]
    text = "\n".join(L) + "\n"
    with open(os.path.join(a.out, "alloc_overhead.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
