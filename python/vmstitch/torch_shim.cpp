// The PyTorch entry points: the functions torch.cuda.memory.CUDAPluggableAllocator calls
// (alloc, free, and the init / reset (empty_cache) / memory_fraction / record_stream hooks), over
// the C core. This is the project's only C++ file, because PyTorch turns a C++ exception thrown
// by the alloc function into a Python RuntimeError and carries on, whereas a NULL return makes
// it use address 0 and lose the CUDA context; so out-of-memory must be thrown, not returned.
//
// It includes no PyTorch or CUDA header: cudaStream_t is passed as void * (the same thing at the
// ABI level), and the signatures are those of PyTorch 2.11's CUDAPluggableAllocator.h:
//   alloc  void*(size_t size, int device, cudaStream_t stream)
//   free   void(void* ptr, size_t size, int device, cudaStream_t stream)
//   init   void(int device_count)            reset  void()
//   memory_fraction void(double fraction, int device)
//   record_stream   void(void* ptr, cudaStream_t stream)
// The CUDA-graph pool hooks (begin/end/release) take C++ types (MempoolId_t, std::function) and
// come with graph support in a later issue; until then an allocation during capture fails with
// a clear error (the backend's stream_check).
//
// One vms_allocator per device, on the cuda backend, created on first use. Locking: creation
// takes g_create_mu; afterwards each device's allocator pointer is read lock-free (an atomic,
// published with release order after the allocator is fully built). The allocators themselves
// are thread-safe. Nothing here runs at process exit: no static object has a destructor that
// calls the driver, and allocators are never destroyed (the process's end releases the memory).
// Python's atexit sets the shutting-down flag, after which frees are no-ops, so no driver call
// follows the CUDA runtime's own teardown.
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "vmstitch.h"
extern "C" {
// The backend's operation table, for the device's total memory (memory_fraction). Reached by a
// relative path because the shim is built with -Iinclude only.
#include "../../src/backend/backend.h"
}

namespace {

constexpr int kMaxDevices = 64;

struct Device {
    std::atomic<vms_allocator *> alloc{nullptr};
    std::atomic<vms_backend *> backend{nullptr};
    std::atomic<double> fraction{-1.0}; // last memory_fraction set; -1 = never
};

Device g_dev[kMaxDevices];
std::mutex g_create_mu;
std::atomic<int> g_shutdown{0};
std::atomic<int> g_device_count{-1};
std::atomic<uint64_t> g_free_errors{0};
// Wall time spent inside alloc and free, and their number, for benchmarks: what vmstitch adds
// to a training step is at most this. Off unless VMSTITCH_TIME_CALLS=1, so that the two clock
// reads and two shared atomic adds per call stay off everyone else's hot path. Read once, when
// the library is loaded.
bool time_calls_from_env() {
    const char *v = std::getenv("VMSTITCH_TIME_CALLS");
    if (!v || !*v || std::strcmp(v, "0") == 0) return false;
    if (std::strcmp(v, "1") == 0) return true;
    std::fprintf(stderr, "vmstitch: warning: VMSTITCH_TIME_CALLS=%s is not 0 or 1; call timing "
                         "stays off\n", v);
    return false;
}
const bool g_time_calls = time_calls_from_env();
std::atomic<uint64_t> g_call_ns{0};
std::atomic<uint64_t> g_calls{0};

struct CallTimer {
    std::chrono::steady_clock::time_point t0;
    CallTimer() {
        if (g_time_calls) t0 = std::chrono::steady_clock::now();
    }
    ~CallTimer() {
        if (!g_time_calls) return;
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now() - t0)
                      .count();
        g_call_ns.fetch_add((uint64_t)ns, std::memory_order_relaxed);
        g_calls.fetch_add(1, std::memory_order_relaxed);
    }
};
std::atomic<int> g_free_error_reported{0};
char g_first_free_error[512]; // written once, by the thread that wins g_free_error_reported
thread_local char t_error[1024];

void set_error(const std::string &msg) {
    std::snprintf(t_error, sizeof t_error, "%s", msg.c_str());
}

std::string human_bytes(size_t n) {
    char buf[64];
    const char *units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        std::snprintf(buf, sizeof buf, "%zu bytes", n);
    else
        std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
    return buf;
}

// The device's allocator, created on first use. On failure returns the status and leaves the
// reason in *why (and in the thread's error for Python).
vms_status device_allocator(int device, bool create, vms_allocator **out, std::string *why) {
    *out = nullptr;
    if (device < 0 || device >= kMaxDevices) {
        *why = "device " + std::to_string(device) + " is out of range (vmstitch handles " +
               std::to_string(kMaxDevices) + ")";
        return VMS_EINVAL;
    }
    vms_allocator *a = g_dev[device].alloc.load(std::memory_order_acquire);
    if (a || !create) {
        *out = a;
        if (!a) *why = "no allocator for device " + std::to_string(device) + " yet";
        return a ? VMS_OK : VMS_ENOTFOUND;
    }
    std::lock_guard<std::mutex> lock(g_create_mu);
    a = g_dev[device].alloc.load(std::memory_order_acquire);
    if (a) {
        *out = a;
        return VMS_OK;
    }
    vms_backend *b = nullptr;
    vms_status st = vms_backend_cuda_create(device, &b);
    if (st != VMS_OK) {
        *why = std::string("cannot open the cuda backend for device ") + std::to_string(device) +
               ": " + vms_status_str(st) + ": " + vms_last_error();
        return st;
    }
    st = vms_allocator_create(nullptr, b, device, &a);
    if (st != VMS_OK) {
        *why = std::string("cannot create the allocator for device ") + std::to_string(device) +
               ": " + vms_status_str(st) + ": " + vms_last_error();
        vms_backend_destroy(b);
        return st;
    }
    g_dev[device].backend.store(b, std::memory_order_release);
    g_dev[device].alloc.store(a, std::memory_order_release);
    *out = a;
    return VMS_OK;
}

std::string alloc_error(vms_status st, size_t size, int device, void *stream) {
    char head[256];
    if (st == VMS_ENOMEM) {
        // The prefix is what PyTorch's own message starts with; tools that look for it (batch
        // size finders, OOM handlers) then work unchanged.
        std::snprintf(head, sizeof head,
                      "CUDA out of memory. Tried to allocate %s on device %d (vmstitch). ",
                      human_bytes(size).c_str(), device);
        std::string report = vms_oom_report();
        if (report.empty()) report = vms_last_error();
        return head + report;
    }
    if (st == VMS_ECAPTURE) {
        std::snprintf(head, sizeof head,
                      "vmstitch: cannot allocate %s on device %d during CUDA graph capture "
                      "(stream %p): CUDA graphs are not supported by vmstitch yet; run without "
                      "vmstitch for graph capture. ",
                      human_bytes(size).c_str(), device, stream);
        return head + std::string(vms_last_error());
    }
    std::snprintf(head, sizeof head,
                  "vmstitch: allocation of %s on device %d failed: %s: ", human_bytes(size).c_str(),
                  device, vms_status_str(st));
    return head + std::string(vms_last_error());
}

void note_free_error(const char *what, void *ptr, int device, vms_status st) noexcept {
    g_free_errors.fetch_add(1, std::memory_order_relaxed);
    int expected = 0;
    if (g_free_error_reported.compare_exchange_strong(expected, 1)) {
        const char *detail = vms_last_error();
        std::snprintf(g_first_free_error, sizeof g_first_free_error,
                      "vmstitch: free of %p on device %d failed: %s: %s%s%s", ptr, device, what,
                      vms_status_str(st), detail[0] ? ": " : "", detail);
        // A free cannot throw (PyTorch calls it from destructors), and a failed one means a
        // bookkeeping bug or a dead driver: say so once, loudly, rather than not at all.
        std::fprintf(stderr, "%s\n", g_first_free_error);
        g_free_error_reported.store(2, std::memory_order_release);
    }
}

} // namespace

extern "C" {

VMS_API void *vms_torch_alloc(size_t size, int device, void *stream) {
    if (size == 0) return nullptr;
    CallTimer timer;
    vms_allocator *a = nullptr;
    std::string why;
    vms_status st = device_allocator(device, true, &a, &why);
    if (st != VMS_OK) throw std::runtime_error("vmstitch: " + why);
    void *p = nullptr;
    st = vms_malloc(a, size, stream, &p);
    if (st == VMS_OK && p) return p;
    if (st == VMS_OK) // never hand PyTorch a NULL for a real request
        throw std::runtime_error("vmstitch: internal error: allocation of " + human_bytes(size) +
                                 " returned no pointer");
    throw std::runtime_error(alloc_error(st, size, device, stream));
}

VMS_API void vms_torch_free(void *ptr, size_t size, int device, void *stream) noexcept {
    (void)size;
    (void)stream;
    if (!ptr || g_shutdown.load(std::memory_order_relaxed)) return;
    CallTimer timer;
    vms_allocator *a = nullptr;
    if (device >= 0 && device < kMaxDevices)
        a = g_dev[device].alloc.load(std::memory_order_acquire);
    if (!a) {
        note_free_error("no allocator for this device", ptr, device, VMS_ENOTFOUND);
        return;
    }
    vms_status st = vms_free(a, ptr);
    if (st != VMS_OK) note_free_error("vms_free", ptr, device, st);
}

VMS_API void vms_torch_init(int device_count) {
    // Allocators are created lazily, on the device each first allocation names.
    g_device_count.store(device_count, std::memory_order_relaxed);
}

VMS_API void vms_torch_reset(void) {
    std::string errors;
    for (int d = 0; d < kMaxDevices; d++) {
        vms_allocator *a = g_dev[d].alloc.load(std::memory_order_acquire);
        if (!a) continue;
        vms_status st = vms_empty_cache(a);
        if (st != VMS_OK)
            errors += "device " + std::to_string(d) + ": " + vms_status_str(st) + ": " +
                      vms_last_error() + "; ";
    }
    if (!errors.empty()) throw std::runtime_error("vmstitch: empty_cache failed: " + errors);
}

VMS_API void vms_torch_memory_fraction(double fraction, int device) {
    if (!(fraction >= 0.0 && fraction <= 1.0))
        throw std::runtime_error("vmstitch: memory fraction must be in [0, 1], got " +
                                 std::to_string(fraction));
    vms_allocator *a = nullptr;
    std::string why;
    vms_status st = device_allocator(device, true, &a, &why);
    if (st != VMS_OK) throw std::runtime_error("vmstitch: " + why);
    vms_backend *b = g_dev[device].backend.load(std::memory_order_acquire);
    size_t free_bytes = 0, total_bytes = 0;
    st = b->ops->mem_info(b, &free_bytes, &total_bytes);
    if (st != VMS_OK)
        throw std::runtime_error(std::string("vmstitch: memory_fraction: ") + vms_status_str(st) +
                                 ": " + vms_last_error());
    // PyTorch's meaning: the allocator may hold at most fraction x total device memory. The C
    // API's 0 means "no cap", so a fraction of 0 becomes one byte (nothing can be allocated).
    size_t limit = (size_t)(fraction * (double)total_bytes);
    if (fraction >= 1.0)
        limit = 0;
    else if (limit == 0)
        limit = 1;
    st = vms_set_memory_limit(a, limit);
    if (st != VMS_OK)
        throw std::runtime_error(std::string("vmstitch: set_memory_limit: ") + vms_status_str(st) +
                                 ": " + vms_last_error());
    g_dev[device].fraction.store(fraction, std::memory_order_relaxed);
}

VMS_API void vms_torch_record_stream(void *ptr, void *stream) {
    if (!ptr || g_shutdown.load(std::memory_order_relaxed)) return;
    // PyTorch passes no device: find the allocator that owns ptr (one per process, usually).
    for (int d = 0; d < kMaxDevices; d++) {
        vms_allocator *a = g_dev[d].alloc.load(std::memory_order_acquire);
        if (!a) continue;
        vms_status st = vms_record_stream(a, ptr, stream);
        if (st == VMS_OK) return;
        if (st != VMS_ENOTFOUND)
            throw std::runtime_error(std::string("vmstitch: record_stream: ") + vms_status_str(st) +
                                     ": " + vms_last_error());
    }
    char buf[128];
    std::snprintf(buf, sizeof buf, "vmstitch: record_stream: %p was not allocated by vmstitch",
                  ptr);
    throw std::runtime_error(buf);
}

// ---------------------------------------------------------------- for the Python package

// The device's allocator, or NULL (then vms_torch_error says why). create=0 never creates one.
VMS_API vms_allocator *vms_torch_allocator(int device, int create) {
    vms_allocator *a = nullptr;
    std::string why;
    try {
        if (device_allocator(device, create != 0, &a, &why) != VMS_OK) set_error(why);
    } catch (const std::exception &e) { // std::string can throw bad_alloc; ctypes cannot catch
        set_error(e.what());
        a = nullptr;
    }
    return a;
}

VMS_API vms_backend *vms_torch_backend(int device) {
    if (device < 0 || device >= kMaxDevices) return nullptr;
    return g_dev[device].backend.load(std::memory_order_acquire);
}

// The calling thread's last error from vms_torch_allocator.
VMS_API const char *vms_torch_error(void) {
    return t_error;
}

VMS_API void vms_torch_set_shutdown(int on) {
    g_shutdown.store(on ? 1 : 0);
}

VMS_API int vms_torch_shutting_down(void) {
    return g_shutdown.load();
}

VMS_API int vms_torch_device_count(void) {
    return g_device_count.load();
}

VMS_API double vms_torch_memory_fraction_get(int device) {
    if (device < 0 || device >= kMaxDevices) return -1.0;
    return g_dev[device].fraction.load(std::memory_order_relaxed);
}

VMS_API uint64_t vms_torch_free_errors(void) {
    return g_free_errors.load();
}

// Nanoseconds spent inside vms_torch_alloc and vms_torch_free so far, and how many calls
// (both 0 unless VMSTITCH_TIME_CALLS=1).
VMS_API uint64_t vms_torch_call_ns(uint64_t *calls) {
    if (calls) *calls = g_calls.load(std::memory_order_relaxed);
    return g_call_ns.load(std::memory_order_relaxed);
}

VMS_API const char *vms_torch_first_free_error(void) {
    return g_free_error_reported.load(std::memory_order_acquire) == 2 ? g_first_free_error : "";
}

// Describes the device's backend as JSON (see vms_backend_cuda_describe); opens the device's
// allocator if needed. Returns the full length, or 0 on failure (vms_torch_error says why).
VMS_API size_t vms_torch_describe(int device, char *buf, size_t cap) {
    if (!vms_torch_allocator(device, 1)) return 0;
    size_t len = 0;
    vms_status st = vms_backend_cuda_describe(vms_torch_backend(device), buf, cap, &len);
    if (st != VMS_OK) {
        std::snprintf(t_error, sizeof t_error, "describe: %s: %s", vms_status_str(st),
                      vms_last_error());
        return 0;
    }
    return len;
}

} // extern "C"
