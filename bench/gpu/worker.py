"""One GPU benchmark run in this process: a workload, with whatever allocator the process was
started with. It knows nothing of vmstitch: run_all.py starts it plainly (native allocator),
with PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True, or as `python -m vmstitch worker.py ...`;
in all three cases it reads memory through torch.cuda.memory_stats() and friends, which
vmstitch answers when enabled. That it runs unchanged under vmstitch is part of the test.

Modes:
  train / gen  the workloads of data/traces/README.md, as the shared tools/record_trace.py
               records them (random-init models from transformers configs, random tokens,
               seed 1234, bf16, AdamW; LoRA through peft; activation recomputation):
               opt13-lora-rc-tok, opt350-lora-rc, gpt2m-full, opt350-gen.
               Reports peak reserved / allocated / requested / active from the allocator's
               stats, the driver's peak device memory in use over the run minus the baseline
               taken once the CUDA context exists (NVML, polled every 2 ms in a thread; or
               cudaMemGetInfo if NVML is missing), step times and per-step losses (token
               checksums for generation).
  bisect       the largest batch (fixed sequence length) that trains 2 steps without OOM under
               a memory cap set with torch.cuda.set_per_process_memory_fraction (which vmstitch
               maps to its memory limit): doubling, then bisection, in one process, with
               empty_cache between probes.
  micro        torch.empty + release round trip, 4 KiB, 8 MiB and 256 MiB, microseconds.

  timing       train's steps alone in the process (no driver polling), for step times.
  serve        the steps lockstep.py gives out, one per line on stdin (see run_serve).
  record       an allocation trace of --steps steps at (--batch, --seq) after the model is
               built, for offline replay under a cap (--trace OUT.trace.gz).
  trace        a recorded trace (--trace) replayed --passes times through
               torch.cuda.caching_allocator_alloc/_delete: allocator overhead, ns per event.
  --deterministic (train/timing): deterministic kernels and eager attention, so two runs'
               losses may differ only through the allocator.

usage: worker.py MODE --workload NAME --json OUT [--steps N] [--cap-gib G] [--seq L]
                 [--deterministic] [--batch B --trace FILE]
"""
import argparse
import gc
import json
import os
import random
import statistics
import sys
import threading
import time

if "--deterministic" in sys.argv:  # cuBLAS reads it when its first handle is made
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lockstep  # noqa: E402  (the recipe's shapes; no torch there)

MiB = 1 << 20
GiB = 1 << 30


def enabled_vmstitch():
    """The vmstitch module when it serves this process's allocations (python -m vmstitch),
    else None."""
    vm = sys.modules.get("vmstitch")
    return vm if vm is not None and vm.is_enabled() else None


# ---------------------------------------------------------------- driver-side memory


class DriverMemory(threading.Thread):
    """Device memory in use as the driver sees it, polled in a thread; peak minus baseline."""

    def __init__(self, period_s=0.002):
        super().__init__(daemon=True)
        self.period_s = period_s
        self.source = None
        self._read = None
        self.peak = 0
        self.baseline = 0
        self.samples = 0
        self._halt = threading.Event()
        try:
            import pynvml
            pynvml.nvmlInit()
            h = None
            try:
                u = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
                if not u.startswith("GPU-"):
                    u = "GPU-" + u
                h = pynvml.nvmlDeviceGetHandleByUUID(u.encode())
            except Exception:  # noqa: BLE001 - fall back to the first device
                h = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._read = lambda: pynvml.nvmlDeviceGetMemoryInfo(h).used
            self.source = "nvml"
        except Exception:  # noqa: BLE001 - no NVML: the runtime's view of the same thing
            def read():
                free, total = torch.cuda.mem_get_info()
                return total - free
            self._read = read
            self.source = "cudaMemGetInfo"

    def take_baseline(self):
        torch.cuda.synchronize()
        self.baseline = self._read()
        self.peak = self.baseline

    def run(self):
        while not self._halt.is_set():
            v = self._read()
            self.samples += 1
            if v > self.peak:
                self.peak = v
            time.sleep(self.period_s)

    def finish(self):
        torch.cuda.synchronize()
        v = self._read()
        self.peak = max(self.peak, v)
        self._halt.set()
        self.join(timeout=1)
        return self.peak - self.baseline


# ---------------------------------------------------------------- workloads (record_trace.py)


def build(name):
    from transformers import GPT2Config, GPT2LMHeadModel, OPTConfig, OPTForCausalLM
    if name.startswith("opt13"):
        cfg = OPTConfig(hidden_size=2048, num_hidden_layers=24, ffn_dim=8192,
                        num_attention_heads=32, max_position_embeddings=2048, vocab_size=50272,
                        word_embed_proj_dim=2048)
        return OPTForCausalLM, cfg, ["q_proj", "v_proj"]
    if name.startswith("opt350"):
        cfg = OPTConfig(hidden_size=1024, num_hidden_layers=24, ffn_dim=4096,
                        num_attention_heads=16, max_position_embeddings=2048, vocab_size=50272,
                        word_embed_proj_dim=512)
        return OPTForCausalLM, cfg, ["q_proj", "v_proj"]
    if name.startswith("gpt2m"):
        cfg = GPT2Config(n_layer=24, n_embd=1024, n_head=16, n_positions=2048)
        return GPT2LMHeadModel, cfg, ["c_attn"]
    raise SystemExit("unknown workload " + name)


def make_model(name, eager_attention=False):
    """The model in bf16 on the GPU. Built directly there (fast; a 1.3B model initialised on
    the CPU takes many seconds), in bf16 so that no fp32 copy ever sits on the GPU; then the
    recipe's .to(cuda, bf16), a no-op for what is already there."""
    cls, cfg, targets = build(name)
    if eager_attention:  # deterministic runs: fused attention backward kernels use atomics
        cfg._attn_implementation = "eager"
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.bfloat16)
        with torch.device("cuda"):
            model = cls(cfg)
        where = "gpu"
    except Exception as e:  # noqa: BLE001 - the recipe's own way, slower
        print("building on the GPU failed (%r); building on the CPU" % (e,), file=sys.stderr)
        torch.set_default_dtype(old)
        model = cls(cfg)
        where = "cpu"
    finally:
        torch.set_default_dtype(old)
    model = model.to(device="cuda", dtype=torch.bfloat16)
    return model, targets, where


def prepare_training(name, model, targets):
    lora = "lora" in name
    if lora:
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets,
                                                 lora_dropout=0.05))
    if "rc" in name:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if lora:
            model.enable_input_require_grads()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    return model, opt


def recipe_shape(name):
    """The recipe's next (batch, seq): a random sequence length (lockstep.py plans the same)."""
    L = random.choice(lockstep.SEQS)
    return lockstep.recipe_batch(name, L), L


def train_step(model, opt, bs, L):
    """One training step at (bs, L): wall seconds, GPU seconds (CUDA events), loss."""
    ids = torch.randint(0, 30000, (bs, L), device="cuda")
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t0 = time.perf_counter()
    e0.record()
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    e1.record()
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    loss = out.loss.item()
    del out, ids
    # The stream's time from the step's first kernel to its last: the same as wall time when
    # the GPU is the bottleneck, and free of the host's scheduling noise then.
    return wall, e0.elapsed_time(e1) * 1e-3, loss


def train(name, model, opt, steps, fixed=None):
    """fixed=(batch, seq): every step that shape (record mode); else the recipe's mix."""
    times, losses, shapes, gpu_times = [], [], [], []
    vm = enabled_vmstitch()
    alloc_ns, last_ns = [], vm.stats()["vmstitch.call_ns"] if vm else 0
    for _ in range(steps):
        bs, L = fixed if fixed else recipe_shape(name)
        wall, gpu, loss = train_step(model, opt, bs, L)
        times.append(wall)
        gpu_times.append(gpu)
        losses.append(loss)
        shapes.append([bs, L])
        if vm:  # outside the timed part; the step's frees count for this step
            ns = vm.stats()["vmstitch.call_ns"]
            alloc_ns.append(ns - last_ns)
            last_ns = ns
    return times, losses, shapes, alloc_ns, gpu_times


def generate(model, steps):
    model = model.eval()
    times, sums, shapes = [], [], []
    with torch.no_grad():
        for _ in range(steps):
            L = random.choice([64, 128, 256, 512, 1024])
            bs = random.choice([1, 2, 4, 8, 16])
            new = random.choice([16, 32, 64, 128])
            ids = torch.randint(0, 30000, (bs, L), device="cuda")
            t0 = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 max_new_tokens=new, min_new_tokens=new, do_sample=False)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            sums.append(float(out[:, L:].sum().item()))  # a checksum of the generated tokens
            shapes.append([bs, L, new])
            del out, ids
    return times, sums, shapes


# ---------------------------------------------------------------- reporting


def allocator_name():
    if enabled_vmstitch():
        return "vmstitch"
    conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")
    return "expandable" if "expandable_segments:True" in conf else "native"


KEEP = ("allocated_bytes.all.peak", "reserved_bytes.all.peak", "active_bytes.all.peak",
        "requested_bytes.all.peak", "allocated_bytes.all.current", "reserved_bytes.all.current",
        "num_alloc_retries", "num_ooms", "num_device_alloc", "num_device_free")


def memory_report(stats):
    out = {k: stats.get(k) for k in KEEP}
    out.update({k: v for k, v in stats.items() if k.startswith("vmstitch.")})
    res = stats.get("reserved_bytes.all.peak", 0)
    out["efficiency"] = (stats.get("requested_bytes.all.peak", 0) / res) if res else None
    return out


def environment():
    env = {"torch": torch.__version__, "device": torch.cuda.get_device_name(),
           "allocator": allocator_name(),
           "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "default")}
    try:
        import pynvml
        pynvml.nvmlInit()
        v = pynvml.nvmlSystemGetDriverVersion()
        env["driver"] = v.decode() if isinstance(v, bytes) else v
    except Exception:  # noqa: BLE001
        env["driver"] = None
    vm = enabled_vmstitch()
    if vm:
        try:
            env["vmstitch"] = vm.info()
        except Exception as e:  # noqa: BLE001
            env["vmstitch"] = {"error": repr(e)}
    return env


def median_step(times):
    # The steady state: the second half of the steps. The first steps pay for autotuning and
    # for every allocator's first touch of memory (cudaMalloc, cuMemCreate) at each new shape.
    t = times[len(times) // 2:] if len(times) > 4 else times
    return statistics.median(t) if t else None


# ---------------------------------------------------------------- modes


def seed_all():
    random.seed(1234)
    torch.manual_seed(1234)


def run_workload(args):
    """train / gen: memory, driver view, steps and losses. timing: the same steps with nothing
    else in the process (no driver polling thread, which takes the GIL every 2 ms and slows
    launch-bound steps). --deterministic: deterministic kernels and eager attention, so that
    any difference in losses between two runs can only come from the allocator."""
    seed_all()
    alloc_ns = gpu_times = None
    if args.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.cuda.init()
    torch.cuda.mem_get_info()  # the CUDA context exists from here: the driver baseline
    drv = None
    if args.mode != "timing":
        drv = DriverMemory()
        drv.take_baseline()
        drv.start()
    t0 = time.perf_counter()
    model, targets, where = make_model(args.workload, eager_attention=args.deterministic)
    build_s = time.perf_counter() - t0
    if "gen" in args.workload:
        times, losses, shapes = generate(model, args.steps)
    else:
        model, opt = prepare_training(args.workload, model, targets)
        fixed = tuple(int(x) for x in args.fixed_shape.split(",")) if args.fixed_shape else None
        times, losses, shapes, alloc_ns, gpu_times = train(args.workload, model, opt,
                                                           args.steps, fixed=fixed)
    driver_delta = drv.finish() if drv else None
    stats = torch.cuda.memory_stats()
    return {
        "mode": args.mode, "workload": args.workload, "env": environment(),
        "deterministic": args.deterministic,
        "built_on": where, "build_seconds": build_s, "steps": len(times),
        "step_seconds": times, "median_step_s": median_step(times), "losses": losses,
        "shapes": shapes, "memory": memory_report(stats), "allocator_ns_per_step": alloc_ns,
        "gpu_step_seconds": gpu_times,
        "driver": {"source": drv.source, "baseline_bytes": drv.baseline,
                   "peak_delta_bytes": driver_delta, "samples": drv.samples} if drv else None,
        "max_memory_reserved": torch.cuda.max_memory_reserved(),
        "max_memory_allocated": torch.cuda.max_memory_allocated(),
    }


def commands(spin):
    """stdin's lines. spin: polled without blocking, so that the process never sleeps between
    its steps; a waiting process would start each step on a core just woken from idle, at a
    clock of its own, and its steps would be slower than another process's for that alone."""
    if not spin:
        yield from sys.stdin
        return
    import select
    fd, buf = sys.stdin.fileno(), b""
    while True:
        while b"\n" not in buf:
            if select.select([fd], [], [], 0)[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    return
                buf += chunk
        line, buf = buf.split(b"\n", 1)
        yield line.decode()


def run_serve(args):
    """Lockstep steps for bench/gpu/lockstep.py: the model built, then one training step per
    command read from stdin ("step BATCH SEQ"), each answered on stdout by a line "@@ {json}"
    (wall and GPU seconds, loss, vmstitch's time inside alloc/free); "quit" writes the --json
    report and ends. The coordinator runs one process per allocator and gives the steps out
    in turn, so that every allocator's step i runs within a second of the others' and the
    host's slow drift (which moved native's own median by up to 42% between runs) cancels."""
    seed_all()
    if args.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.cuda.init()
    model, targets, where = make_model(args.workload, eager_attention=args.deterministic)
    model, opt = prepare_training(args.workload, model, targets)
    vm = enabled_vmstitch()

    def reply(obj):
        sys.stdout.write("@@ " + json.dumps(obj) + "\n")
        sys.stdout.flush()
    reply({"ready": True, "built_on": where, "env": environment(),
           "cpus": sorted(os.sched_getaffinity(0))})
    steps = 0
    for line in commands(args.spin):
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "quit":
            break
        if cmd[0] != "step" or len(cmd) != 3:
            reply({"error": "bad command %r" % line.strip()})
            continue
        st0 = vm.stats() if vm else None
        wall, gpu, loss = train_step(model, opt, int(cmd[1]), int(cmd[2]))
        st1 = vm.stats() if vm else None
        steps += 1
        reply({"wall": wall, "gpu": gpu, "loss": loss,
               "alloc_ns": st1["vmstitch.call_ns"] - st0["vmstitch.call_ns"] if vm else None,
               "alloc_calls": st1["vmstitch.calls"] - st0["vmstitch.calls"] if vm else None})
    stats = torch.cuda.memory_stats()
    return {"mode": "serve", "workload": args.workload, "env": environment(), "steps": steps,
            "memory": memory_report(stats)}


def run_record(args):
    """An allocation trace (data/traces/README.md format) of the bisect's probe at one batch
    size: the model built, then --steps steps at (batch, seq), with whatever allocator this
    process has (recorded through PyTorch's memory history, so native or expandable). Replayed
    with `vmstitch replay --capacity-gib CAP`, it says which allocator fits that batch under the
    cap without a GPU, and lets the policy be tuned offline."""
    import gzip
    seed_all()
    torch.cuda.init()
    torch.cuda.memory._record_memory_history(enabled="all", context=None, stacks="python")
    model, targets, _ = make_model(args.workload)
    model, opt = prepare_training(args.workload, model, targets)
    torch.cuda.reset_peak_memory_stats()
    times = train(args.workload, model, opt, args.steps, fixed=(args.batch, args.seq))[0]
    st = torch.cuda.memory_stats()
    snap = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    ids, streams, lines, nalloc = {}, {}, [], 0
    for e in snap["device_traces"][0]:
        if e["action"] == "alloc":
            s = streams.setdefault(e["stream"], len(streams))
            ids[e["addr"]] = nalloc
            lines.append("a %d %d %d" % (nalloc, e["size"], s))
            nalloc += 1
        elif e["action"] == "free_requested":
            i = ids.pop(e["addr"], None)
            if i is not None:
                lines.append("f %d" % i)
    name = "%s-b%d-s%d" % (args.workload, args.batch, args.seq)
    conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "default")
    med = statistics.median(times)
    with gzip.open(args.trace, "wt") as f:
        f.write("# vmstitch-trace v1\n# workload %s\n# device %s\n# torch %s\n"
                "# recorded_by caching allocator, %s\n# pytorch_peak_allocated %d\n"
                "# pytorch_peak_reserved %d\n# events %d allocs %d live_at_end %d\n"
                "# pytorch_steps %d\n# pytorch_step_median_s %.4f\n"
                "# pytorch_run_seconds %.2f\n" % (
                    name, torch.cuda.get_device_name(), torch.__version__, conf,
                    st.get("allocated_bytes.all.peak", 0), st.get("reserved_bytes.all.peak", 0),
                    len(lines), nalloc, len(ids), len(times), med, sum(times)))
        f.write("\n".join(lines) + "\n")
    return {"mode": "record", "workload": args.workload, "batch": args.batch, "seq": args.seq,
            "trace": name, "events": len(lines), "env": environment(),
            "peak_allocated": st.get("allocated_bytes.all.peak", 0),
            "peak_reserved": st.get("reserved_bytes.all.peak", 0),
            "peak_requested": st.get("requested_bytes.all.peak", 0), "step_seconds": times}


def is_oom(e):
    return "out of memory" in str(e).lower()


def run_bisect(args):
    seed_all()
    torch.cuda.init()
    total = torch.cuda.get_device_properties(0).total_memory
    cap = int(args.cap_gib * GiB)
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total))
    model, targets, _ = make_model(args.workload)
    model, opt = prepare_training(args.workload, model, targets)
    seq = args.seq
    probes = []

    def two_steps(bs):  # its own frame: everything it held dies with it, even on OOM
        for _ in range(2):
            ids = torch.randint(0, 30000, (bs, seq), device="cuda")
            out = model(input_ids=ids, labels=ids)
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            del out, ids
        torch.cuda.synchronize()

    def probe(bs):
        ok, err = True, None
        t0 = time.perf_counter()
        try:
            two_steps(bs)
        except RuntimeError as e:
            if not is_oom(e):
                raise
            ok, err = False, str(e).splitlines()[0][:200]
        opt.zero_grad(set_to_none=True)
        gc.collect()
        peak = torch.cuda.max_memory_reserved()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        probes.append({"batch": bs, "ok": ok, "seconds": time.perf_counter() - t0,
                       "peak_reserved": peak, "error": err})
        return ok

    lo, hi, bs = 0, None, args.start_batch
    while hi is None and bs <= args.max_batch:
        if probe(bs):
            lo, bs = bs, bs * 2
        else:
            hi = bs
    if hi is None:
        hi = args.max_batch + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(mid):
            lo = mid
        else:
            hi = mid
    stats = torch.cuda.memory_stats()
    return {"mode": "bisect", "workload": args.workload, "env": environment(), "seq": seq,
            "cap_bytes": cap, "largest_batch": lo, "probes": probes,
            "num_ooms": stats.get("num_ooms")}


def run_trace(args):
    """A recorded trace replayed through PyTorch's allocator entry points
    (torch.cuda.caching_allocator_alloc / _delete, which reach the native allocator or the
    pluggable one alike), --passes times; ns per event of each pass. The same Python loop with
    stand-in functions gives the loop's own cost, so the difference between allocators is the
    allocators' (plus, for vmstitch, PyTorch's pluggable-allocator wrapper)."""
    import gzip
    torch.cuda.init()
    torch.empty(1, device="cuda")
    ev = []
    with gzip.open(args.trace, "rt") as f:
        for line in f:
            if line.startswith("a "):
                _, i, size, _ = line.split()
                ev.append((int(i), int(size)))
            elif line.startswith("f "):
                ev.append((int(line.split()[1]), -1))
    dev = torch.cuda.current_device()
    stream = torch.cuda.current_stream().cuda_stream

    def one_pass(alloc, delete):
        live = {}
        t0 = time.perf_counter()
        for i, size in ev:
            if size >= 0:
                live[i] = alloc(size, dev, stream)
            else:
                ptr = live.pop(i, 0)
                if ptr:
                    delete(ptr)
        dt = time.perf_counter() - t0
        for ptr in live.values():
            if ptr:
                delete(ptr)
        return dt / len(ev) * 1e9
    vm = enabled_vmstitch()
    st0 = vm.stats() if vm else None
    if args.cxx:  # the same events from C++ (torch_replay.cpp): no Python between the calls
        import ctypes
        lib = ctypes.CDLL(args.cxx)
        n = len(ev)
        ids = (ctypes.c_int32 * n)(*[i for i, _ in ev])
        sizes = (ctypes.c_int64 * n)(*[sz for _, sz in ev])
        out = (ctypes.c_double * args.passes)()
        rc = lib.vms_bench_torch_replay(ids, sizes, ctypes.c_long(n),
                                        ctypes.c_long(max(i for i, _ in ev) + 1),
                                        ctypes.c_int(args.passes), ctypes.c_void_p(stream), out)
        if rc != 0:
            raise SystemExit("torch_replay: an allocation failed")
        passes = list(out)
    else:
        passes = [one_pass(torch.cuda.caching_allocator_alloc,
                           torch.cuda.caching_allocator_delete) for _ in range(args.passes)]
    inside = None
    if vm:
        st = vm.stats()
        inside = (st["vmstitch.call_ns"] - st0["vmstitch.call_ns"]) / max(
            1, st["vmstitch.calls"] - st0["vmstitch.calls"])
    counter = iter(range(1, 1 << 62))
    loop = [one_pass(lambda s, d, st: next(counter), lambda p: None) for _ in range(3)]
    torch.cuda.synchronize()
    return {"mode": "trace", "trace": os.path.basename(args.trace), "events": len(ev),
            "via": "c++" if args.cxx else "python",
            "env": environment(), "ns_per_event_passes": passes,
            "ns_per_event_steady": statistics.median(passes[1:]) if len(passes) > 1 else passes[0],
            "loop_ns_per_event": statistics.median(loop),
            "vmstitch_ns_per_call_inside": inside,
            "reserved_peak": torch.cuda.max_memory_reserved()}


def run_micro(args):
    torch.cuda.init()
    torch.empty(1, device="cuda")
    out = {}
    for size in (4096, 8 * MiB, 256 * MiB):
        for _ in range(300):
            t = torch.empty(size, dtype=torch.uint8, device="cuda")
            del t
        reps = []
        n = args.micro_iters
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                t = torch.empty(size, dtype=torch.uint8, device="cuda")
                del t
            reps.append((time.perf_counter() - t0) / n * 1e6)
        out[str(size)] = {"us_median": statistics.median(reps), "us_reps": reps}
    return {"mode": "micro", "env": environment(), "round_trip_us": out}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["train", "gen", "timing", "bisect", "micro", "record",
                                     "trace", "serve"])
    ap.add_argument("--workload", default="opt350-lora-rc")
    ap.add_argument("--json", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cap-gib", type=float, default=16.0)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--start-batch", type=int, default=16)
    ap.add_argument("--max-batch", type=int, default=1024)
    ap.add_argument("--micro-iters", type=int, default=3000)
    ap.add_argument("--deterministic", action="store_true")
    ap.add_argument("--fixed-shape", default="", help="train/timing: BATCH,SEQ for every step")
    ap.add_argument("--batch", type=int, default=8, help="record: batch size")
    ap.add_argument("--trace", help="record: output trace; trace: the trace to replay")
    ap.add_argument("--passes", type=int, default=4, help="trace: passes over the trace")
    ap.add_argument("--spin", action="store_true", help="serve: poll stdin, never sleep")
    ap.add_argument("--cxx", default="", help="trace: replay from C++ with this torch_replay.so")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.mode in ("train", "gen", "timing"):
        res = run_workload(args)
    elif args.mode == "record":
        res = run_record(args)
    elif args.mode == "trace":
        res = run_trace(args)
    elif args.mode == "bisect":
        res = run_bisect(args)
    elif args.mode == "serve":
        res = run_serve(args)
    else:
        res = run_micro(args)
    res["wall_seconds"] = time.perf_counter() - t0
    with open(args.json, "w") as f:
        json.dump(res, f)
    print("RESULT " + json.dumps({k: res[k] for k in res if k not in
                                  ("step_seconds", "losses", "shapes", "probes")}), flush=True)


if __name__ == "__main__":
    main()
