"""vmstitch for PyTorch: a GPU caching allocator that defragments by virtual memory stitching.

    import vmstitch
    vmstitch.enable()          # before CUDA is first used in this process
    ... train as usual ...
    print(vmstitch.memory_summary())

or, with no change to a script:  python -m vmstitch train.py --its --own --args

enable() makes PyTorch allocate through vmstitch (torch.cuda.memory.CUDAPluggableAllocator over
libvmstitch_torch.so) and makes torch.cuda's memory statistics (memory_allocated,
max_memory_reserved, memory_stats, memory_summary, reset_peak_memory_stats, ...) answer from
vmstitch, since a pluggable allocator leaves PyTorch's own statistics unavailable.

Pure Python over the shared library (ctypes). Configuration: the VMSTITCH_* environment
variables (and GMLake's names), read when the allocator of a device is created, at its first
allocation.
"""
import atexit
import ctypes
import json
import threading
import types

from . import _lib

__all__ = [
    "enable", "is_enabled", "stats", "memory_summary", "reset_peak_stats", "empty_cache",
    "info", "check", "oom_report", "library_path", "version",
]

_state_lock = threading.Lock()
_enabled = False
_allocator = None  # the CUDAPluggableAllocator, kept alive for the life of the process
_originals = {}    # (module, name) -> the torch function enable() replaced

# Our statistic -> torch.cuda.memory_stats() key prefix, where the meaning is the same.
_CUR_PEAK_KEYS = {
    "allocated_bytes": "allocated_bytes.all",
    "requested_bytes": "requested_bytes.all",
    "active_bytes": "active_bytes.all",
    "reserved_bytes": "reserved_bytes.all",
    "small_allocated_bytes": "allocated_bytes.small_pool",
    "small_requested_bytes": "requested_bytes.small_pool",
    "small_reserved_bytes": "reserved_bytes.small_pool",
    "large_allocated_bytes": "allocated_bytes.large_pool",
    "large_requested_bytes": "requested_bytes.large_pool",
    "large_reserved_bytes": "reserved_bytes.large_pool",
    "chunks": "segment.all",  # physical chunks play the part of cudaMalloc segments
}
_COUNT_KEYS = {
    "ooms": "num_ooms",
    "oom_retries": "num_alloc_retries",
    "backend_create": "num_device_alloc",
    "backend_release": "num_device_free",
}


def version():
    return _lib.text(_lib.load().vms_version())


def library_path():
    return _lib.library_path()


def is_enabled():
    return _enabled


def _torch():
    import torch
    return torch


def enable():
    """Makes PyTorch allocate CUDA memory through vmstitch, in this process, from now on.

    Must run before CUDA is first used (the first tensor on the GPU, torch.cuda.init(), ...):
    PyTorch cannot swap allocators afterwards. Calling it again is harmless.
    """
    global _enabled, _allocator
    with _state_lock:
        if _enabled:
            return
        torch = _torch()
        if not torch.cuda.is_available():
            raise RuntimeError("vmstitch.enable(): PyTorch sees no CUDA device (torch.cuda."
                               "is_available() is False); vmstitch serves GPU memory only.")
        if torch.cuda.is_initialized():
            raise RuntimeError(
                "vmstitch.enable() was called too late: CUDA is already initialized in this "
                "process (something already used the GPU), and PyTorch cannot change its "
                "allocator after that. Call vmstitch.enable() first thing, before any tensor "
                "touches the GPU, or run the script with `python -m vmstitch SCRIPT ARGS`.")
        lib = _lib.load()
        path = _lib.library_path()
        alloc = torch.cuda.memory.CUDAPluggableAllocator(path, "vms_torch_alloc",
                                                         "vms_torch_free")
        native = alloc.allocator() if hasattr(alloc, "allocator") else alloc._allocator
        native.set_init_fn(_lib.function_address("vms_torch_init"))
        native.set_reset_fn(_lib.function_address("vms_torch_reset"))
        native.set_memory_fraction_fn(_lib.function_address("vms_torch_memory_fraction"))
        native.set_record_stream_fn(_lib.function_address("vms_torch_record_stream"))
        torch.cuda.memory.change_current_allocator(alloc)
        _allocator = alloc
        lib.vms_torch_set_shutdown(0)
        _patch_torch(torch)
        # Frees that arrive after this (module teardown at exit) become no-ops, so that no
        # driver call is made once the CUDA runtime starts tearing itself down.
        atexit.register(_on_exit)
        _enabled = True


def _on_exit():
    lib = _lib._lib
    if lib is not None:
        lib.vms_torch_set_shutdown(1)


# ---------------------------------------------------------------- statistics


def _device_index(device):
    torch = _torch()
    if device is None:
        return torch.cuda.current_device()
    return torch.cuda._get_device_index(device, optional=True)


def _allocator_ptr(device):
    """The device's allocator if it has one yet (never creates one), else None."""
    lib = _lib.load()
    return lib.vms_torch_allocator(int(device), 0)


def _existing_allocator(device):
    """As _allocator_ptr, and None before CUDA is initialized in this process."""
    if not _torch().cuda.is_initialized():
        return None
    return _allocator_ptr(_device_index(device))


def _raw_stats(a):
    lib = _lib.load()
    n = lib.vms_stats_json(a, None, 0)
    buf = ctypes_buffer(n + 1)
    lib.vms_stats_json(a, buf, n + 1)
    return json.loads(buf.value.decode())


def ctypes_buffer(n):
    return ctypes.create_string_buffer(int(n))


def stats(device=None):
    """vmstitch's statistics for a device as a flat dict.

    Keys shared with torch.cuda.memory_stats() where the meaning is the same
    ('allocated_bytes.all.current', 'reserved_bytes.all.peak', 'active_bytes.all.peak',
    'requested_bytes.all.current', 'num_alloc_retries', 'num_ooms', ...), and every vmstitch
    statistic under 'vmstitch.NAME' (e.g. 'vmstitch.stitches', 'vmstitch.reserved_bytes_peak',
    'vmstitch.backend.set_access'). Empty before the device's first allocation, like
    torch.cuda.memory_stats() before CUDA is initialized.
    """
    lib = _lib.load()
    a = _existing_allocator(device)
    if not a:
        return {}
    dev = _device_index(device)
    raw = _raw_stats(a)
    out = {}
    for ours, theirs in _CUR_PEAK_KEYS.items():
        if ours + "_current" in raw:
            out[theirs + ".current"] = raw[ours + "_current"]
            out[theirs + ".peak"] = raw[ours + "_peak"]
    for ours, theirs in _COUNT_KEYS.items():
        if ours in raw:
            out[theirs] = raw[ours]
    if "mallocs" in raw and "frees" in raw:
        out["allocation.all.allocated"] = raw["mallocs"]
        out["allocation.all.freed"] = raw["frees"]
        out["allocation.all.current"] = raw["mallocs"] - raw["frees"]
    for k, v in raw.items():
        out["vmstitch." + k] = v
    b = lib.vms_torch_backend(dev)
    if b:
        c = _lib.BackendCounters()
        if lib.vms_backend_counters_get(b, c) == 0:
            for name, _ in c._fields_:
                out["vmstitch.backend." + name] = getattr(c, name)
    out["vmstitch.free_errors"] = int(lib.vms_torch_free_errors())
    calls = ctypes.c_uint64(0)
    out["vmstitch.call_ns"] = int(lib.vms_torch_call_ns(ctypes.byref(calls)))  # all devices
    out["vmstitch.calls"] = int(calls.value)
    frac = lib.vms_torch_memory_fraction_get(dev)
    if frac >= 0:
        out["vmstitch.memory_fraction"] = frac
    return dict(sorted(out.items()))


def reset_peak_stats(device=None):
    """Sets every peak to its current value (torch.cuda.reset_peak_memory_stats)."""
    a = _existing_allocator(device)
    if a:
        _check_status(_lib.load().vms_stats_reset_peak(a), "reset_peak_stats")


def empty_cache(device=None):
    """Releases every chunk that holds no live allocation (torch.cuda.empty_cache)."""
    a = _existing_allocator(device)
    if a:
        _check_status(_lib.load().vms_empty_cache(a), "empty_cache")


def check(device=None):
    """Walks every allocator structure; returns the number of invariant violations (0)."""
    a = _existing_allocator(device)
    return int(_lib.load().vms_check(a)) if a else 0


def oom_report():
    """The calling thread's last out-of-memory report ('' if none)."""
    return _lib.text(_lib.load().vms_oom_report())


def info(device=0):
    """The GPU, driver and granularity, as the cuda backend sees them (a dict)."""
    lib = _lib.load()
    n = lib.vms_torch_describe(int(device), None, 0)
    if n == 0:
        raise RuntimeError("vmstitch.info(): " + _lib.text(lib.vms_torch_error()))
    buf = ctypes_buffer(n + 1)
    lib.vms_torch_describe(int(device), buf, n + 1)
    return json.loads(buf.value.decode())


def _check_status(st, what):
    if st != 0:
        lib = _lib.load()
        raise RuntimeError("vmstitch.%s: %s: %s" % (what, _lib.text(lib.vms_status_str(st)),
                                                    _lib.text(lib.vms_last_error())))


def _fmt(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.2f %s" % (n, unit))
        n /= 1024.0


def memory_summary(device=None, abbreviated=False):
    """A human-readable table of the device's vmstitch statistics."""
    st = stats(device)
    dev = "?" if not st else _device_index(device)
    lines = ["=" * 78, " vmstitch memory summary, device %s (library %s)" % (dev, version()),
             "-" * 78]
    if not st:
        lines += [" no allocation on this device yet", "=" * 78]
        return "\n".join(lines)
    lines.append(" %-32s %20s %20s" % ("metric", "current", "peak"))
    rows = [("allocated (rounded)", "allocated_bytes.all"),
            ("requested", "requested_bytes.all"),
            ("active (incl. awaiting streams)", "active_bytes.all"),
            ("reserved (physical chunks)", "reserved_bytes.all")]
    if not abbreviated:
        rows += [("  small pool allocated", "allocated_bytes.small_pool"),
                 ("  small pool reserved", "reserved_bytes.small_pool"),
                 ("  large pool allocated", "allocated_bytes.large_pool"),
                 ("  large pool reserved", "reserved_bytes.large_pool")]
    for label, key in rows:
        if key + ".current" in st:
            lines.append(" %-32s %20s %20s" % (label, _fmt(st[key + ".current"]),
                                                _fmt(st[key + ".peak"])))
    for label, key in (("cached (reserved, not allocated)", "vmstitch.cached_bytes"),
                       ("stitched ranges cached (virtual)", "vmstitch.stitched_cached_bytes")):
        if key + "_current" in st:
            lines.append(" %-32s %20s %20s" % (label, _fmt(st[key + "_current"]),
                                                _fmt(st[key + "_peak"])))
    for label, key in (("chunks", "vmstitch.chunks"),
                       ("stitched ranges", "vmstitch.stitched_ranges")):
        if key + "_current" in st:
            lines.append(" %-32s %20d %20d" % (label, st[key + "_current"], st[key + "_peak"]))
    peak_res = st.get("reserved_bytes.all.peak", 0)
    if peak_res:
        lines.append(" efficiency = peak requested / peak reserved = %.4f"
                     % (st.get("requested_bytes.all.peak", 0) / peak_res))
    lines.append("-" * 78)
    # Counters; the core's own backend_* tallies are left to stats(): the backend's counts
    # (vmstitch.backend.*, per handle, with the modeled time) say the same and more.
    counters = [k for k in st if k.startswith("vmstitch.")
                and not k.endswith(("_current", "_peak"))
                and not k.startswith("vmstitch.backend_")]
    items = ["%s=%s" % (k[len("vmstitch."):], (("%.6f" % st[k]) if isinstance(st[k], float)
                                               else st[k])) for k in counters]
    if abbreviated:
        keep = ("mallocs", "frees", "stitches", "stitch_reuses", "grows", "ooms", "oom_retries")
        items = [i for i in items if i.split("=")[0] in keep]
    line = ""
    for it in items:
        if len(line) + len(it) + 2 > 77:
            lines.append(" " + line)
            line = ""
        line += it + "  "
    if line:
        lines.append(" " + line)
    lines.append("=" * 78)
    return "\n".join(lines)


# ---------------------------------------------------------------- torch.cuda answers from us


def _nested(flat):
    """{'a.b.c': 1} -> {'a': {'b': {'c': 1}}}, as torch.cuda.memory_stats_as_nested_dict."""
    out = {}
    for k, v in flat.items():
        node = out
        parts = k.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


def _patch_torch(torch):
    import collections
    import warnings

    def memory_stats(device=None):
        return collections.OrderedDict(stats(device))

    def memory_stats_as_nested_dict(device=None):
        return _nested(stats(device))

    def memory_allocated(device=None):
        return stats(device).get("allocated_bytes.all.current", 0)

    def max_memory_allocated(device=None):
        return stats(device).get("allocated_bytes.all.peak", 0)

    def memory_reserved(device=None):
        return stats(device).get("reserved_bytes.all.current", 0)

    def max_memory_reserved(device=None):
        return stats(device).get("reserved_bytes.all.peak", 0)

    def reset_peak_memory_stats(device=None):
        reset_peak_stats(device)

    def reset_max_memory_allocated(device=None):
        reset_peak_stats(device)

    def reset_max_memory_cached(device=None):
        reset_peak_stats(device)

    def reset_accumulated_memory_stats(device=None):
        warnings.warn("vmstitch: counters are cumulative and cannot be reset; "
                      "reset_accumulated_memory_stats() does nothing", stacklevel=2)

    def memory_summary_(device=None, abbreviated=False):
        return memory_summary(device, abbreviated)

    patches = {
        "memory_stats": memory_stats,
        "memory_stats_as_nested_dict": memory_stats_as_nested_dict,
        "memory_allocated": memory_allocated,
        "max_memory_allocated": max_memory_allocated,
        "memory_reserved": memory_reserved,
        "max_memory_reserved": max_memory_reserved,
        "memory_cached": lambda device=None: memory_reserved(device),
        "max_memory_cached": lambda device=None: max_memory_reserved(device),
        "reset_peak_memory_stats": reset_peak_memory_stats,
        "reset_max_memory_allocated": reset_max_memory_allocated,
        "reset_max_memory_cached": reset_max_memory_cached,
        "reset_accumulated_memory_stats": reset_accumulated_memory_stats,
        "memory_summary": memory_summary_,
    }
    # torch.accelerator (newer PyTorch) has the same functions over the same device stats, which
    # a pluggable allocator leaves unavailable too.
    modules = [torch.cuda, torch.cuda.memory]
    acc = getattr(torch, "accelerator", None)
    if acc is not None:
        modules.append(acc)
        if isinstance(getattr(acc, "memory", None), types.ModuleType):
            modules.append(acc.memory)
    for mod in modules:
        for name, fn in patches.items():
            if hasattr(mod, name):
                _originals[(mod.__name__, name)] = getattr(mod, name)
                fn.__name__ = name
                fn.__qualname__ = name
                fn.__doc__ = "vmstitch: answers from vmstitch.stats() (see vmstitch.stats)."
                setattr(mod, name, fn)
