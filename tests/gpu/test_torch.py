"""PyTorch tests of vmstitch on a GPU. Each test runs in its own fresh interpreter, because the
allocator can be chosen only before CUDA is first used in a process.

    python3 tests/gpu/test_torch.py [--json OUT.json] [NAME...]   runs all (or those named)
    python3 tests/gpu/test_torch.py --one NAME                       runs one, in this process

Needs: torch with CUDA, a GPU, and the vmstitch package importable (run.sh sets PYTHONPATH to
python/ and VMSTITCH_LIBRARY to the built library).
"""
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

# enable_basic checks the call-time counters, which are on only with this set before the
# library loads.
os.environ.setdefault("VMSTITCH_TIME_CALLS", "1")

TESTS = {}
MiB = 1 << 20
GiB = 1 << 30


def test(fn):
    TESTS[fn.__name__] = fn
    return fn


def _enable():
    import torch
    import vmstitch
    assert not torch.cuda.is_initialized()
    vmstitch.enable()
    return torch, vmstitch


def _expect_oom(fn):
    try:
        fn()
    except RuntimeError as e:
        msg = str(e)
        assert msg.startswith("CUDA out of memory."), "OOM message: " + msg[:500]
        return msg
    raise AssertionError("expected an out-of-memory RuntimeError")


@test
def enable_basic():
    torch, vmstitch = _enable()
    assert vmstitch.is_enabled()
    x = torch.randn(1024, 1024, device="cuda")
    y = x @ x
    ref = x.cpu().double() @ x.cpu().double()
    assert torch.allclose(y.cpu().double(), ref, rtol=1e-2, atol=1e-2), "matmul result wrong"
    st = vmstitch.stats()
    assert st["allocated_bytes.all.current"] >= 2 * 4 * MiB, st
    assert st["requested_bytes.all.current"] >= 2 * 4 * MiB
    assert torch.cuda.memory_allocated() == st["allocated_bytes.all.current"]
    assert torch.cuda.memory_reserved() == st["reserved_bytes.all.current"]
    ms = torch.cuda.memory_stats()
    for k in ("allocated_bytes.all.peak", "reserved_bytes.all.peak", "active_bytes.all.peak",
              "requested_bytes.all.current", "num_alloc_retries", "num_ooms",
              "vmstitch.stitches"):
        assert k in ms, k
    summary = torch.cuda.memory_summary()
    assert "vmstitch" in summary
    print(summary)
    info = vmstitch.info()
    print("INFO", json.dumps(info))
    assert info["granularity_bytes"] > 0 and info["name"]
    before = torch.cuda.memory_allocated()
    del x, y
    assert torch.cuda.memory_allocated() <= before - 8 * MiB
    assert vmstitch.check() == 0
    st = vmstitch.stats()
    assert st["vmstitch.free_errors"] == 0
    # The time inside alloc/free is counted: at least the 2 allocations and 2 frees above.
    assert st["vmstitch.calls"] >= 4 and st["vmstitch.call_ns"] > 0, st


@test
def enable_too_late():
    import torch
    import vmstitch
    torch.zeros(1, device="cuda")
    try:
        vmstitch.enable()
    except RuntimeError as e:
        msg = str(e)
        assert "too late" in msg and "before" in msg, msg
        print("message:", msg)
    else:
        raise AssertionError("enable() after CUDA init did not fail")
    assert not vmstitch.is_enabled()


@test
def stats_and_peaks():
    torch, vmstitch = _enable()
    a = torch.empty(100 * MiB, dtype=torch.uint8, device="cuda")
    peak = torch.cuda.max_memory_allocated()
    assert peak >= 100 * MiB
    del a
    assert torch.cuda.memory_allocated() < 100 * MiB
    assert torch.cuda.max_memory_allocated() == peak
    assert torch.cuda.max_memory_reserved() >= 100 * MiB
    torch.cuda.reset_peak_memory_stats()
    assert torch.cuda.max_memory_allocated() == torch.cuda.memory_allocated()
    assert torch.cuda.max_memory_reserved() == torch.cuda.memory_reserved()
    r0 = vmstitch.stats()["requested_bytes.all.current"]
    b = torch.empty(1000, dtype=torch.uint8, device="cuda")
    assert vmstitch.stats()["requested_bytes.all.current"] == r0 + 1000
    del b
    assert vmstitch.stats()["requested_bytes.all.current"] == r0
    nested = torch.cuda.memory_stats_as_nested_dict()
    assert nested["allocated_bytes"]["all"]["current"] == torch.cuda.memory_allocated()
    st = vmstitch.stats()
    assert st["num_ooms"] == 0 and st["num_alloc_retries"] == 0
    vmstitch.reset_peak_stats()
    st = vmstitch.stats()
    assert st["reserved_bytes.all.peak"] == st["reserved_bytes.all.current"]


@test
def stats_agree_with_driver():
    torch, vmstitch = _enable()
    import random
    torch.cuda.init()
    free0, total = torch.cuda.mem_get_info()  # creates the context before the baseline
    random.seed(3)
    sizes = [random.choice([4096, 300_000, 3 * MiB, 17 * MiB, 150 * MiB]) + random.randrange(999)
             for _ in range(60)]
    ts = [torch.empty(s, dtype=torch.uint8, device="cuda") for s in sizes]
    torch.cuda.synchronize()
    free1, _ = torch.cuda.mem_get_info()
    used = free0 - free1
    reserved = vmstitch.stats()["reserved_bytes.all.current"]
    print("driver used %.1f MiB, vmstitch reserved %.1f MiB, requested %.1f MiB"
          % (used / MiB, reserved / MiB, sum(sizes) / MiB))
    assert abs(used - reserved) <= 0.02 * reserved + 32 * MiB, (used, reserved)
    del ts


@test
def empty_cache_returns_memory():
    torch, vmstitch = _enable()
    xs = [torch.ones(64 * MiB, dtype=torch.uint8, device="cuda") for _ in range(16)]
    torch.cuda.synchronize()
    r1 = torch.cuda.memory_reserved()
    free1, _ = torch.cuda.mem_get_info()
    del xs
    torch.cuda.empty_cache()
    r2 = torch.cuda.memory_reserved()
    free2, _ = torch.cuda.mem_get_info()
    print("reserved %.0f -> %.0f MiB; driver free +%.0f MiB" % (r1 / MiB, r2 / MiB,
                                                                 (free2 - free1) / MiB))
    assert r2 <= r1 - GiB + 64 * MiB
    assert free2 - free1 >= 0.9 * GiB
    assert vmstitch.stats()["vmstitch.empty_cache_calls"] >= 1
    y = torch.ones(10, device="cuda")  # and allocation goes on
    assert y.sum().item() == 10
    assert vmstitch.check() == 0


@test
def oom_then_continue():
    torch, vmstitch = _enable()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction((3 * GiB) / total)
    keep = torch.empty(GiB, dtype=torch.uint8, device="cuda")
    msg = _expect_oom(lambda: torch.empty(3 * GiB, dtype=torch.uint8, device="cuda"))
    print("OOM message:", msg[:400])
    assert "vmstitch" in msg
    model = torch.nn.Sequential(torch.nn.Linear(4096, 4096), torch.nn.ReLU(),
                                torch.nn.Linear(4096, 4096)).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def too_big():
        x = torch.randn(100_000, 4096, device="cuda")  # 1.6 GB input, then activations
        model(x).sum().backward()
    _expect_oom(too_big)
    model.zero_grad(set_to_none=True)
    del keep
    losses = []
    for _ in range(5):  # training goes on after the OOMs
        x = torch.randn(256, 4096, device="cuda")
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert all(l == l for l in losses), losses
    torch.cuda.set_per_process_memory_fraction(1.0)
    _expect_oom(lambda: torch.empty(2 * total, dtype=torch.uint8, device="cuda"))  # the card's own
    y = torch.ones(10, device="cuda")
    assert y.sum().item() == 10
    st = vmstitch.stats()
    assert st["num_ooms"] >= 3, st["num_ooms"]
    assert vmstitch.check() == 0


@test
def record_stream_side_stream():
    torch, vmstitch = _enable()
    n = 16 * MiB  # float32 elements: 64 MiB
    x = torch.ones(n, device="cuda")
    x_ptr = x.data_ptr()
    side = torch.cuda.Stream()
    # Load the kernels first: lazy module loading at the first launch can take longer than the
    # sleep, and then the side stream is rightly done before the free (and reuse is correct).
    with torch.cuda.stream(side):
        torch.cuda._sleep(1000)
        x.sum()
    torch.cuda.synchronize()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(4_000_000_000)  # ~2 s of GPU time, then read x
        total = x.sum()
    x.record_stream(side)
    st0 = vmstitch.stats()
    del x  # freed while the side stream has yet to read it
    st1 = vmstitch.stats()
    print("before free: active %d events %s; after free: active %d events %s" % (
        st0.get("active_bytes.all.current"), st0.get("vmstitch.backend.event_record"),
        st1.get("active_bytes.all.current"), st1.get("vmstitch.backend.event_record")))
    w = torch.empty(n, device="cuda")
    side_busy = not side.query()
    w.fill_(7.0)  # on the default stream: runs long before the side stream's read
    assert side_busy, "the side stream finished too early for this test to mean anything"
    assert w.data_ptr() != x_ptr, "memory reused before the side stream finished"
    t0 = time.perf_counter()
    torch.cuda.empty_cache()  # must not unmap x while the side stream still reads it
    dt = time.perf_counter() - t0
    side.synchronize()
    torch.cuda.synchronize()
    print("empty_cache took %.0f ms; sum %.0f" % (dt * 1e3, total.item()))
    assert total.item() == float(n), "side stream read corrupted data: %r" % total.item()
    st = vmstitch.stats()
    print("event waits", st.get("vmstitch.event_waits"),
          "events recorded", st.get("vmstitch.backend.event_record"))
    assert vmstitch.check() == 0


@test
def capture_fails_clearly():
    torch, vmstitch = _enable()
    s = torch.zeros(1000, device="cuda")
    (s * 2).sum().item()  # warm up kernels outside capture
    g = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(g):
            s * 2
    except RuntimeError as e:
        msg = str(e)
        print("message:", msg[:300])
        assert "vmstitch" in msg and "captur" in msg.lower(), msg
    else:
        raise AssertionError("allocation during graph capture did not fail")
    torch.cuda.synchronize()
    z = s + 1
    assert z.sum().item() == 1000
    assert vmstitch.check() == 0


@test
def free_and_alloc_from_threads():
    torch, vmstitch = _enable()
    xs = [torch.ones(MiB, device="cuda") for _ in range(64)]
    torch.cuda.synchronize()
    errors = []

    def free_all(lst):
        try:
            while lst:
                lst.pop()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    def alloc_some(out):
        try:
            z = torch.ones(50 * MiB, device="cuda")
            out.append(z.sum().item())
            del z
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    t = threading.Thread(target=free_all, args=(xs,))
    t.start()
    t.join()
    out = []
    ts = [threading.Thread(target=alloc_some, args=(out,)) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    assert out == [float(50 * MiB)] * 4, out
    assert vmstitch.stats()["vmstitch.free_errors"] == 0
    assert vmstitch.check() == 0


_SCRIPT = textwrap.dedent("""
    import sys, torch
    print("ARGV", sys.argv[1:])
    assert sys.argv[1:] == ["--flag", "value"], sys.argv
    x = torch.randn(1000, 1000, device="cuda")
    y = x @ x
    print("ALLOC", torch.cuda.memory_allocated(), torch.cuda.max_memory_reserved())
    assert torch.cuda.memory_allocated() > 0
    import vmstitch
    assert vmstitch.is_enabled()
    print(torch.cuda.memory_summary(abbreviated=True))
    keep_at_exit = [torch.ones(1 << 20, device="cuda") for _ in range(10)]
    cycle = [torch.ones(10, device="cuda")]
    cycle.append(cycle)
    if __name__ == "__main__":
        print("MAIN OK")
""")


@test
def python_m_runs_script_unchanged():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "train.py")
        with open(path, "w") as f:
            f.write(_SCRIPT)
        r = subprocess.run([sys.executable, "-m", "vmstitch", "--summary", path, "--flag",
                            "value"], capture_output=True, text=True, timeout=120)
    print(r.stdout[-2000:])
    print(r.stderr[-2000:], file=sys.stderr)
    assert r.returncode == 0, r.returncode
    assert "MAIN OK" in r.stdout and "ALLOC" in r.stdout
    assert "vmstitch memory summary" in r.stderr
    assert "free of" not in r.stderr and "Traceback" not in r.stderr


_TRAIN = textwrap.dedent("""
    import json, sys, torch
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    model = torch.nn.Sequential(torch.nn.Embedding(1000, 256), torch.nn.Linear(256, 1024),
                                torch.nn.GELU(), torch.nn.Linear(1024, 1000)).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(20):
        ids = torch.randint(0, 1000, (8, 64 + 16 * (step % 5)), device="cuda")
        logits = model(ids)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 1000),
                                                 ids[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    print("LOSSES " + json.dumps(losses))
""")


@test
def training_matches_native():
    outs = {}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "train.py")
        with open(path, "w") as f:
            f.write(_TRAIN)
        for name, cmd in (("native", [sys.executable, path]),
                          ("vmstitch", [sys.executable, "-m", "vmstitch", path])):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, (name, r.stderr[-2000:])
            line = [l for l in r.stdout.splitlines() if l.startswith("LOSSES ")][0]
            outs[name] = json.loads(line[len("LOSSES "):])
    a, b = outs["native"], outs["vmstitch"]
    diff = max(abs(x - y) for x, y in zip(a, b))
    print("native  ", ["%.5f" % x for x in a[:5]], "...")
    print("vmstitch", ["%.5f" % x for x in b[:5]], "...", "max |diff| %.3g" % diff)
    assert diff <= 1e-4 * max(1.0, max(abs(x) for x in a)), diff


def _run_one(name):
    TESTS[name]()
    print("PASS", name)


def main(argv):
    if len(argv) >= 2 and argv[0] == "--one":
        _run_one(argv[1])
        return 0
    json_out = None
    if len(argv) >= 2 and argv[0] == "--json":
        json_out = argv[1]
        argv = argv[2:]
    names = [n for n in TESTS if not argv or any(a in n for a in argv)]
    results, failed = [], 0
    for n in names:
        t0 = time.perf_counter()
        try:
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", n],
                               capture_output=True, text=True, timeout=240)
            ok, out, err = r.returncode == 0, r.stdout, r.stderr
        except subprocess.TimeoutExpired as e:
            ok, out, err = False, str(e.stdout or ""), "timed out"
        dt = time.perf_counter() - t0
        print("%-4s %-40s %7.1fs" % ("ok" if ok else "FAIL", n, dt), flush=True)
        if not ok:
            failed += 1
            print(textwrap.indent((out[-3000:] + "\n" + err[-4000:]).strip(), "    "),
                  flush=True)
        elif os.environ.get("VMS_TEST_VERBOSE"):
            print(textwrap.indent(out[-1500:].strip(), "    "), flush=True)
        results.append({"test": n, "ok": ok, "seconds": round(dt, 2),
                        "stdout_tail": out[-1500:], "stderr_tail": err[-1500:]})
    print("%d passed, %d failed" % (len(names) - failed, failed))
    if json_out:
        with open(json_out, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
