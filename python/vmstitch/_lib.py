"""Loading libvmstitch_torch.so with ctypes, and the C functions Python calls in it.

The same file is what torch.cuda.memory.CUDAPluggableAllocator loads (by path); dlopen returns
the one already-loaded copy, so Python and PyTorch share one set of allocators.

Where the library is looked for, in order: $VMSTITCH_LIBRARY; next to this file (an installed
package ships it there); ../../build/ relative to this file (running from a source checkout
after `make`).
"""
import ctypes
import os
import threading

_LIB_NAME = "libvmstitch_torch.so"
_lock = threading.Lock()
_lib = None
_path = None


class BackendCounters(ctypes.Structure):
    """vms_backend_counters (include/vmstitch.h)."""
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "create", "release", "reserve", "address_free", "map", "unmap", "set_access",
        "event_record", "event_query", "event_sync")] + [("modeled_seconds", ctypes.c_double)]


def candidates():
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    env = os.environ.get("VMSTITCH_LIBRARY")
    if env:
        out.append(env)
    out.append(os.path.join(here, _LIB_NAME))
    out.append(os.path.join(here, "..", "..", "build", _LIB_NAME))
    return out


def library_path():
    """The path of the shared library that will be (or was) loaded."""
    if _path:
        return _path
    tried = []
    for p in candidates():
        p = os.path.realpath(p)
        if os.path.isfile(p):
            return p
        tried.append(p)
    raise FileNotFoundError(
        "vmstitch: %s not found (looked at: %s). Build it with `make` at the repository root, "
        "install the package with `pip install .`, or set VMSTITCH_LIBRARY."
        % (_LIB_NAME, ", ".join(tried)))


def _declare(lib):
    c = ctypes
    P = c.c_void_p
    sig = {
        "vms_version": (c.c_char_p, []),
        "vms_status_str": (c.c_char_p, [c.c_int]),
        "vms_last_error": (c.c_char_p, []),
        "vms_oom_report": (c.c_char_p, []),
        "vms_stats_json": (c.c_size_t, [P, c.c_char_p, c.c_size_t]),
        "vms_stats_reset_peak": (c.c_int, [P]),
        "vms_empty_cache": (c.c_int, [P]),
        "vms_check": (c.c_size_t, [P]),
        "vms_allocation_size": (c.c_size_t, [P, P]),
        "vms_backend_counters_get": (c.c_int, [P, c.POINTER(BackendCounters)]),
        "vms_torch_allocator": (P, [c.c_int, c.c_int]),
        "vms_torch_backend": (P, [c.c_int]),
        "vms_torch_error": (c.c_char_p, []),
        "vms_torch_set_shutdown": (None, [c.c_int]),
        "vms_torch_shutting_down": (c.c_int, []),
        "vms_torch_device_count": (c.c_int, []),
        "vms_torch_memory_fraction_get": (c.c_double, [c.c_int]),
        "vms_torch_free_errors": (c.c_uint64, []),
        "vms_torch_call_ns": (c.c_uint64, [c.POINTER(c.c_uint64)]),
        "vms_torch_first_free_error": (c.c_char_p, []),
        "vms_torch_describe": (c.c_size_t, [c.c_int, c.c_char_p, c.c_size_t]),
    }
    for name, (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args


def load():
    """Loads the library once per process and returns the ctypes handle."""
    global _lib, _path
    with _lock:
        if _lib is None:
            path = library_path()
            lib = ctypes.CDLL(path)
            _declare(lib)
            _lib, _path = lib, path
    return _lib


def function_address(name):
    """The address of an exported function, as PyTorch's set_*_fn setters take it."""
    return ctypes.cast(getattr(load(), name), ctypes.c_void_p).value


def text(b):
    return b.decode("utf-8", "replace") if b else ""
