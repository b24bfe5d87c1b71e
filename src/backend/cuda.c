/* The cuda backend: the backend interface translated one to one into the CUDA driver's virtual
 * memory management calls (cuMemCreate, cuMemAddressReserve, cuMemMap, cuMemSetAccess, ...).
 *
 * The driver is loaded at run time: dlopen("libcuda.so.1"), then every entry point through
 * cuGetProcAddress at the CUDA 12.0 ABI. Nothing here needs CUDA headers or links against CUDA,
 * so the library builds and its CPU tests run on machines without a GPU; there,
 * vms_backend_cuda_create fails with VMS_EUNSUPPORTED and says why. The few driver types and
 * constants used are declared below with the values of cuda.h.
 *
 * Contexts: the backend retains the device's primary context (the one the CUDA runtime, and so
 * PyTorch, uses). PyTorch calls free from whatever thread drops the last reference, often one
 * with no context current, so every entry that calls the driver makes the primary context
 * current for the duration of the call and then restores the thread's previous context, so that
 * the runtime on that thread sees no change.
 *
 * Errors: every driver error becomes a status with the driver's own message
 * (cuGetErrorName/cuGetErrorString) stored through backend_set_error. Out-of-memory becomes
 * VMS_ENOMEM so that the core's out-of-memory ladder can react; a capturing stream becomes
 * VMS_ECAPTURE. Once the driver reports that it is shutting down (CUDA_ERROR_DEINITIALIZED,
 * at process exit), the backend makes no further driver call at all.
 *
 * Counting: calls are counted per handle, and modeled_seconds uses vms_cost_seconds (DESIGN.md's
 * cost table), the same model as the sim backend, so a GPU run and a replay can be compared call
 * for call. To count a set_access per handle, the backend keeps a table of its live mappings;
 * to cost a release, a table of its chunks and their sizes.
 *
 * Locking: the driver's entry points are loaded once per process (pthread_once) and only read
 * afterwards. Each backend has one mutex guarding its chunk table, mapping table, idle-event
 * pool and counters; it is never held across a driver call. The driver itself is thread-safe.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"

/* ---------------------------------------------------------------- driver declarations */

/* Types and values as in cuda.h (CUDA 12/13); enums are int-sized there. */
typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUevent_st *CUevent;
typedef struct CUstream_st *CUstream;
typedef unsigned long long CUdeviceptr; /* CUdeviceptr_v2 on 64-bit platforms */
typedef unsigned long long CUmemGenericAllocationHandle;
typedef uint64_t cuuint64_t;

enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_DEINITIALIZED = 4,
    CUDA_ERROR_NO_DEVICE = 100,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_NOT_READY = 600,
    CUDA_ERROR_NOT_SUPPORTED = 801,
    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900,
    CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD = 908,
};

enum { CU_MEM_ALLOCATION_TYPE_PINNED = 1 };
enum { CU_MEM_HANDLE_TYPE_NONE = 0 };
enum { CU_MEM_LOCATION_TYPE_DEVICE = 1 };
enum { CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 3 };
enum { CU_MEM_ALLOC_GRANULARITY_MINIMUM = 0, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED = 1 };
enum { CU_EVENT_DISABLE_TIMING = 2 };
enum { CU_STREAM_CAPTURE_STATUS_NONE = 0 };
enum { CU_GET_PROC_ADDRESS_LEGACY_STREAM = 1 };
enum { CU_GET_PROC_ADDRESS_SUCCESS = 0 };
enum {
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
    CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED = 102,
};

typedef struct cu_mem_location {
    int type; /* CUmemLocationType */
    int id;
} cu_mem_location;

typedef struct cu_mem_allocation_prop { /* CUmemAllocationProp */
    int type;                           /* CUmemAllocationType */
    int requested_handle_types;         /* CUmemAllocationHandleType */
    cu_mem_location location;
    void *win32_handle_meta_data;
    struct {
        unsigned char compression_type;
        unsigned char gpu_direct_rdma_capable;
        unsigned short usage;
        unsigned char reserved[4];
    } alloc_flags;
} cu_mem_allocation_prop;

typedef struct cu_mem_access_desc { /* CUmemAccessDesc */
    cu_mem_location location;
    int flags; /* CUmemAccess_flags */
} cu_mem_access_desc;

_Static_assert(sizeof(cu_mem_allocation_prop) == 32, "CUmemAllocationProp layout");
_Static_assert(sizeof(cu_mem_access_desc) == 12, "CUmemAccessDesc layout");

/* The CUDA version whose ABI we ask cuGetProcAddress for: base names then resolve to the
 * versions current in 12.0 (cuMemGetInfo_v2, cuEventDestroy_v2, cuDevicePrimaryCtxRelease_v2,
 * cuDeviceTotalMem_v2, ...), which later drivers keep. */
#define VMS_CU_ABI_VERSION 12000

static struct cu_api {
    CUresult (*GetErrorString)(CUresult, const char **);
    CUresult (*GetErrorName)(CUresult, const char **);
    CUresult (*Init)(unsigned int);
    CUresult (*DriverGetVersion)(int *);
    CUresult (*DeviceGetCount)(int *);
    CUresult (*DeviceGet)(CUdevice *, int);
    CUresult (*DeviceGetName)(char *, int, CUdevice);
    CUresult (*DeviceGetAttribute)(int *, int, CUdevice);
    CUresult (*DeviceTotalMem)(size_t *, CUdevice);
    CUresult (*DevicePrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*DevicePrimaryCtxRelease)(CUdevice);
    CUresult (*DevicePrimaryCtxGetState)(CUdevice, unsigned int *, int *);
    CUresult (*CtxGetCurrent)(CUcontext *);
    CUresult (*CtxSetCurrent)(CUcontext);
    CUresult (*MemGetInfo)(size_t *, size_t *);
    CUresult (*MemGetAllocationGranularity)(size_t *, const cu_mem_allocation_prop *, int);
    CUresult (*MemCreate)(CUmemGenericAllocationHandle *, size_t, const cu_mem_allocation_prop *,
                          unsigned long long);
    CUresult (*MemRelease)(CUmemGenericAllocationHandle);
    CUresult (*MemAddressReserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
    CUresult (*MemAddressFree)(CUdeviceptr, size_t);
    CUresult (*MemMap)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle,
                       unsigned long long);
    CUresult (*MemUnmap)(CUdeviceptr, size_t);
    CUresult (*MemSetAccess)(CUdeviceptr, size_t, const cu_mem_access_desc *, size_t);
    CUresult (*EventCreate)(CUevent *, unsigned int);
    CUresult (*EventRecord)(CUevent, CUstream);
    CUresult (*EventQuery)(CUevent);
    CUresult (*EventSynchronize)(CUevent);
    CUresult (*CtxSynchronize)(void);
    CUresult (*EventDestroy)(CUevent);
    CUresult (*StreamIsCapturing)(CUstream, int *);
} cu;

/* Every entry point we load, and where it goes. Stored as void * and copied into the typed
 * field with memcpy, because ISO C has no conversion between object and function pointers. */
static const struct cu_sym {
    const char *name;
    size_t offset;
} cu_syms[] = {
#define CU_SYM(field, name)                                                                        \
    { name, offsetof(struct cu_api, field) }
    CU_SYM(GetErrorString, "cuGetErrorString"),
    CU_SYM(GetErrorName, "cuGetErrorName"),
    CU_SYM(Init, "cuInit"),
    CU_SYM(DriverGetVersion, "cuDriverGetVersion"),
    CU_SYM(DeviceGetCount, "cuDeviceGetCount"),
    CU_SYM(DeviceGet, "cuDeviceGet"),
    CU_SYM(DeviceGetName, "cuDeviceGetName"),
    CU_SYM(DeviceGetAttribute, "cuDeviceGetAttribute"),
    CU_SYM(DeviceTotalMem, "cuDeviceTotalMem"),
    CU_SYM(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"),
    CU_SYM(DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease"),
    CU_SYM(DevicePrimaryCtxGetState, "cuDevicePrimaryCtxGetState"),
    CU_SYM(CtxGetCurrent, "cuCtxGetCurrent"),
    CU_SYM(CtxSetCurrent, "cuCtxSetCurrent"),
    CU_SYM(MemGetInfo, "cuMemGetInfo"),
    CU_SYM(MemGetAllocationGranularity, "cuMemGetAllocationGranularity"),
    CU_SYM(MemCreate, "cuMemCreate"),
    CU_SYM(MemRelease, "cuMemRelease"),
    CU_SYM(MemAddressReserve, "cuMemAddressReserve"),
    CU_SYM(MemAddressFree, "cuMemAddressFree"),
    CU_SYM(MemMap, "cuMemMap"),
    CU_SYM(MemUnmap, "cuMemUnmap"),
    CU_SYM(MemSetAccess, "cuMemSetAccess"),
    CU_SYM(EventCreate, "cuEventCreate"),
    CU_SYM(EventRecord, "cuEventRecord"),
    CU_SYM(EventQuery, "cuEventQuery"),
    CU_SYM(EventSynchronize, "cuEventSynchronize"),
    CU_SYM(CtxSynchronize, "cuCtxSynchronize"),
    CU_SYM(EventDestroy, "cuEventDestroy"),
    CU_SYM(StreamIsCapturing, "cuStreamIsCapturing"),
#undef CU_SYM
};

typedef CUresult (*cu_get_proc_v2_fn)(const char *, void **, int, cuuint64_t, int *);
typedef CUresult (*cu_get_proc_v1_fn)(const char *, void **, int, cuuint64_t);

static pthread_once_t cu_once = PTHREAD_ONCE_INIT;
static vms_status cu_load_status = VMS_EUNSUPPORTED;
static char cu_load_error[512];
static int cu_driver_version; /* e.g. 13000 */

static void cu_store(size_t offset, void *fn) {
    memcpy((char *)&cu + offset, &fn, sizeof fn);
}

static void cu_load(void) {
    /* Never dlclose'd: other code in the process (the CUDA runtime) shares the library, and
     * frees may arrive during process exit. */
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *e = dlerror();
        snprintf(cu_load_error, sizeof cu_load_error,
                 "cuda backend: no CUDA driver: dlopen(libcuda.so.1) failed: %s", e ? e : "?");
        return;
    }
    void *p2 = dlsym(lib, "cuGetProcAddress_v2");
    void *p1 = p2 ? NULL : dlsym(lib, "cuGetProcAddress");
    void *pver = dlsym(lib, "cuDriverGetVersion");
    if (!p2 && !p1) {
        snprintf(cu_load_error, sizeof cu_load_error,
                 "cuda backend: libcuda.so.1 has no cuGetProcAddress (driver older than CUDA "
                 "11.3)");
        return;
    }
    int version = 0;
    if (pver) {
        CUresult (*get_version)(int *);
        memcpy(&get_version, &pver, sizeof pver);
        if (get_version(&version) != CUDA_SUCCESS) version = 0;
    }
    cu_driver_version = version;
    int abi = VMS_CU_ABI_VERSION;
    if (version > 0 && version < abi) abi = version; /* an 11.x driver: ask for what it has */
    for (size_t i = 0; i < sizeof cu_syms / sizeof cu_syms[0]; i++) {
        void *fn = NULL;
        CUresult r;
        int found = CU_GET_PROC_ADDRESS_SUCCESS;
        if (p2) {
            cu_get_proc_v2_fn get;
            memcpy(&get, &p2, sizeof p2);
            r = get(cu_syms[i].name, &fn, abi, CU_GET_PROC_ADDRESS_LEGACY_STREAM, &found);
        } else {
            cu_get_proc_v1_fn get;
            memcpy(&get, &p1, sizeof p1);
            r = get(cu_syms[i].name, &fn, abi, CU_GET_PROC_ADDRESS_LEGACY_STREAM);
        }
        if (r != CUDA_SUCCESS || found != CU_GET_PROC_ADDRESS_SUCCESS || !fn) {
            /* Last resort: the exported symbol. The _v2 one first, because for calls that have
             * one the plain export is the old ABI (32-bit sizes in cuMemGetInfo, say). */
            char v2[96];
            snprintf(v2, sizeof v2, "%s_v2", cu_syms[i].name);
            fn = dlsym(lib, v2);
            if (!fn) fn = dlsym(lib, cu_syms[i].name);
        }
        if (!fn) {
            snprintf(cu_load_error, sizeof cu_load_error,
                     "cuda backend: the CUDA driver (version %d) lacks %s (cuGetProcAddress "
                     "returned %d, status %d)",
                     version, cu_syms[i].name, (int)r, found);
            return;
        }
        cu_store(cu_syms[i].offset, fn);
    }
    cu_load_status = VMS_OK;
}

/* "CUDA_ERROR_OUT_OF_MEMORY (2): out of memory" */
static void cu_describe_error(CUresult r, char *buf, size_t cap) {
    const char *name = NULL, *str = NULL;
    if (!cu.GetErrorName || cu.GetErrorName(r, &name) != CUDA_SUCCESS) name = NULL;
    if (!cu.GetErrorString || cu.GetErrorString(r, &str) != CUDA_SUCCESS) str = NULL;
    snprintf(buf, cap, "%s (%d): %s", name ? name : "CUDA error", (int)r,
             str ? str : "unknown error");
}

/* ---------------------------------------------------------------- sorted tables */

/* A vector of fixed-size records kept sorted by their first field, a uint64_t key. Lookups are
 * binary searches; inserts and erases move the tail. The tables hold one record per chunk or
 * mapping (thousands at most), so the moves cost far less than the driver call beside them. */
typedef struct sorted_vec {
    unsigned char *data;
    size_t n, cap, elem;
} sorted_vec;

static uint64_t sv_key(const sorted_vec *v, size_t i) {
    uint64_t k;
    memcpy(&k, v->data + i * v->elem, sizeof k);
    return k;
}

/* First index whose key is >= key. */
static size_t sv_lower(const sorted_vec *v, uint64_t key) {
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sv_key(v, mid) < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int sv_find(const sorted_vec *v, uint64_t key, size_t *at) {
    size_t i = sv_lower(v, key);
    if (i < v->n && sv_key(v, i) == key) {
        *at = i;
        return 1;
    }
    return 0;
}

/* 0 on success, -1 when host memory runs out. The key must not be present. */
static int sv_insert(sorted_vec *v, const void *rec) {
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 64;
        unsigned char *nd = realloc(v->data, ncap * v->elem);
        if (!nd) return -1;
        v->data = nd;
        v->cap = ncap;
    }
    uint64_t key;
    memcpy(&key, rec, sizeof key);
    size_t i = sv_lower(v, key);
    memmove(v->data + (i + 1) * v->elem, v->data + i * v->elem, (v->n - i) * v->elem);
    memcpy(v->data + i * v->elem, rec, v->elem);
    v->n++;
    return 0;
}

static void sv_erase(sorted_vec *v, size_t i) {
    memmove(v->data + i * v->elem, v->data + (i + 1) * v->elem, (v->n - i - 1) * v->elem);
    v->n--;
}

static void *sv_at(const sorted_vec *v, size_t i) {
    return v->data + i * v->elem;
}

/* ---------------------------------------------------------------- the backend */

typedef struct cu_chunk_rec { /* key: the handle */
    uint64_t handle;
    uint64_t bytes;
} cu_chunk_rec;

typedef struct cu_map_rec { /* key: the mapped address */
    uint64_t addr;
    uint64_t bytes;
    uint64_t handle;
} cu_map_rec;

typedef struct cuda_backend {
    vms_backend base; /* first: the core sees only this */
    int ordinal;
    CUdevice dev;
    CUcontext ctx; /* the retained primary context */
    size_t granularity_bytes;
    size_t recommended_granularity_bytes;
    cu_mem_allocation_prop prop;
    cu_mem_access_desc access; /* read-write for this device (peers: a later issue) */
    atomic_int dead;           /* the driver said it is shutting down: call it no more */

    pthread_mutex_t mu; /* guards everything below */
    sorted_vec chunks;  /* cu_chunk_rec */
    sorted_vec maps;    /* cu_map_rec */
    CUevent *idle_events;
    size_t idle_n, idle_cap;
    vms_backend_counters counters;
} cuda_backend;

/* Idle events kept for reuse: creating one costs a driver call, and the core records one per
 * free that crossed streams. */
#define CU_IDLE_EVENTS_MAX 4096

static cuda_backend *cb(vms_backend *b) {
    return (cuda_backend *)b;
}

/* Stores the message "what: CUDA_ERROR_x (n): text" and returns the status the core sees. */
static vms_status cu_fail(cuda_backend *b, CUresult r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static vms_status cu_fail(cuda_backend *b, CUresult r, const char *fmt, ...) {
    char what[256], err[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    cu_describe_error(r, err, sizeof err);
    backend_set_error("cuda device %d: %s: %s", b ? b->ordinal : -1, what, err);
    if (r == CUDA_ERROR_DEINITIALIZED && b) atomic_store(&b->dead, 1);
    if (r == CUDA_ERROR_OUT_OF_MEMORY) return VMS_ENOMEM;
    return VMS_EBACKEND;
}

static vms_status cu_dead(cuda_backend *b) {
    backend_set_error("cuda device %d: the CUDA driver is shutting down; no further driver "
                      "calls are made",
                      b->ordinal);
    return VMS_EBACKEND;
}

/* Makes the primary context current on this thread; ctx_leave restores what was there. */
typedef struct ctx_scope {
    CUcontext prev;
    int switched;
} ctx_scope;

static vms_status ctx_enter(cuda_backend *b, ctx_scope *s) {
    s->prev = NULL;
    s->switched = 0;
    if (atomic_load_explicit(&b->dead, memory_order_relaxed)) return cu_dead(b);
    CUcontext cur = NULL;
    CUresult r = cu.CtxGetCurrent(&cur);
    if (r != CUDA_SUCCESS) return cu_fail(b, r, "cuCtxGetCurrent");
    if (cur == b->ctx) return VMS_OK;
    r = cu.CtxSetCurrent(b->ctx);
    if (r != CUDA_SUCCESS) return cu_fail(b, r, "cuCtxSetCurrent(primary context)");
    s->prev = cur;
    s->switched = 1;
    return VMS_OK;
}

/* A second driver error while handling a first: the first stays the status, and the second
 * is appended to the message so that neither is lost. */
static void cu_also(cuda_backend *b, CUresult r, const char *what) {
    char prev[512], err[256];
    snprintf(prev, sizeof prev, "%s", vms_last_error());
    cu_describe_error(r, err, sizeof err);
    backend_set_error("%s; then %s failed too: %s", prev, what, err);
    if (r == CUDA_ERROR_DEINITIALIZED) atomic_store(&b->dead, 1);
}

/* Returns st, or the restore's error if st was VMS_OK and the restore failed. */
static vms_status ctx_leave(cuda_backend *b, ctx_scope *s, vms_status st) {
    if (!s->switched) return st;
    CUresult r = cu.CtxSetCurrent(s->prev);
    if (r != CUDA_SUCCESS) {
        if (st == VMS_OK) return cu_fail(b, r, "cuCtxSetCurrent(restore previous context)");
        cu_also(b, r, "cuCtxSetCurrent(restore previous context)");
    }
    return st;
}

/* Counts one successful call (per handle) and adds its modeled cost; b->mu held. */
static void cu_count_locked(cuda_backend *b, uint64_t *counter, double seconds) {
    (*counter)++;
    b->counters.modeled_seconds += seconds;
}

static void cu_count(cuda_backend *b, uint64_t *counter, double seconds) {
    pthread_mutex_lock(&b->mu);
    cu_count_locked(b, counter, seconds);
    pthread_mutex_unlock(&b->mu);
}

/* Lists a new chunk or mapping in its table and counts its call; -1 (nothing counted) when
 * host memory runs out, and the caller must then undo the driver call: see cu_untracked. */
static int cu_track(cuda_backend *b, sorted_vec *table, const void *rec, uint64_t *counter,
                    double seconds) {
    pthread_mutex_lock(&b->mu);
    int ins = sv_insert(table, rec);
    if (ins == 0) cu_count_locked(b, counter, seconds);
    pthread_mutex_unlock(&b->mu);
    return ins;
}

/* Drops a released chunk or an unmapped mapping from its table and counts its call. */
static void cu_untrack(cuda_backend *b, sorted_vec *table, uint64_t key, uint64_t *counter,
                       double seconds) {
    pthread_mutex_lock(&b->mu);
    size_t at;
    if (sv_find(table, key, &at)) sv_erase(table, at);
    cu_count_locked(b, counter, seconds);
    pthread_mutex_unlock(&b->mu);
}

/* The status after a chunk or mapping that could not be tracked was undone by the driver call
 * undo (result r): we cannot track it, so we must not keep it. */
static vms_status cu_untracked(cuda_backend *b, CUresult r, const char *undo, const char *what) {
    if (r != CUDA_SUCCESS) return cu_fail(b, r, "%s (undoing an untracked %s)", undo, what);
    backend_set_error("cuda device %d: no host memory to track a %s", b->ordinal, what);
    return VMS_ENOMEM_HOST;
}

static vms_status cuda_granularity(vms_backend *vb, size_t *bytes) {
    *bytes = cb(vb)->granularity_bytes;
    return VMS_OK;
}

static vms_status cuda_mem_info(vms_backend *vb, size_t *free_bytes, size_t *total_bytes) {
    cuda_backend *b = cb(vb);
    ctx_scope s;
    vms_status st = ctx_enter(b, &s);
    if (st != VMS_OK) return st;
    size_t f = 0, t = 0;
    CUresult r = cu.MemGetInfo(&f, &t);
    if (r != CUDA_SUCCESS) st = cu_fail(b, r, "cuMemGetInfo");
    st = ctx_leave(b, &s, st);
    if (st == VMS_OK) {
        if (free_bytes) *free_bytes = f;
        if (total_bytes) *total_bytes = t;
    }
    return st;
}

static vms_status cuda_chunk_create(vms_backend *vb, size_t bytes, vms_handle *out) {
    cuda_backend *b = cb(vb);
    if (bytes == 0 || bytes % b->granularity_bytes) {
        backend_set_error("cuda device %d: chunk of %zu bytes is not a multiple of the "
                          "granularity (%zu)",
                          b->ordinal, bytes, b->granularity_bytes);
        return VMS_EINVAL;
    }
    ctx_scope s;
    vms_status st = ctx_enter(b, &s);
    if (st != VMS_OK) return st;
    CUmemGenericAllocationHandle h = 0;
    CUresult r = cu.MemCreate(&h, bytes, &b->prop, 0);
    if (r != CUDA_SUCCESS) {
        st = cu_fail(b, r, "cuMemCreate(%zu bytes)", bytes);
    } else if (h == 0) {
        /* 0 means "no chunk" to the core; the driver has never returned it, but be sure. */
        backend_set_error("cuda device %d: cuMemCreate returned handle 0", b->ordinal);
        st = VMS_EBACKEND;
    } else {
        cu_chunk_rec rec = {h, bytes};
        if (cu_track(b, &b->chunks, &rec, &b->counters.create,
                     vms_cost_seconds(VMS_COST_CREATE, bytes)) != 0)
            st = cu_untracked(b, cu.MemRelease(h), "cuMemRelease", "chunk");
        else
            *out = (vms_handle)h;
    }
    return ctx_leave(b, &s, st);
}

static vms_status cuda_chunk_release(vms_backend *vb, vms_handle h) {
    cuda_backend *b = cb(vb);
    pthread_mutex_lock(&b->mu);
    size_t at;
    uint64_t bytes = 0;
    int known = sv_find(&b->chunks, h, &at);
    if (known) bytes = ((cu_chunk_rec *)sv_at(&b->chunks, at))->bytes;
    pthread_mutex_unlock(&b->mu);
    if (!known) {
        backend_set_error("cuda device %d: release of unknown chunk handle 0x%llx", b->ordinal,
                          (unsigned long long)h);
        return VMS_EINVAL;
    }
    ctx_scope s;
    vms_status st = ctx_enter(b, &s);
    if (st != VMS_OK) return st;
    CUresult r = cu.MemRelease((CUmemGenericAllocationHandle)h);
    if (r != CUDA_SUCCESS) {
        st = cu_fail(b, r, "cuMemRelease(handle of %llu bytes)", (unsigned long long)bytes);
    } else {
        cu_untrack(b, &b->chunks, h, &b->counters.release,
                   vms_cost_seconds(VMS_COST_RELEASE, (size_t)bytes));
    }
    return ctx_leave(b, &s, st);
}

static vms_status cuda_va_reserve(vms_backend *vb, size_t bytes, size_t align_bytes,
                                  uintptr_t *out) {
    cuda_backend *b = cb(vb);
    ctx_scope s;
    vms_status st = ctx_enter(b, &s);
    if (st != VMS_OK) return st;
    CUdeviceptr p = 0;
    CUresult r = cu.MemAddressReserve(&p, bytes, align_bytes, 0, 0);
    if (r != CUDA_SUCCESS) {
        st = cu_fail(b, r, "cuMemAddressReserve(%zu bytes, alignment %zu)", bytes, align_bytes);
    } else {
        *out = (uintptr_t)p;
        cu_count(b, &b->counters.reserve, vms_cost_seconds(VMS_COST_RESERVE, bytes));
    }
    return ctx_leave(b, &s, st);
}

static vms_status cuda_va_free(vms_backend *vb, uintptr_t addr, size_t bytes) {
    cuda_backend *b = cb(vb);
    ctx_scope s;
    vms_status st = ctx_enter(b, &s);
    if (st != VMS_OK) return st;
    CUresult r = cu.MemAddressFree((CUdeviceptr)addr, bytes);
    if (r != CUDA_SUCCESS) {
        st = cu_fail(b, r, "cuMemAddressFree(0x%llx, %zu bytes)", (unsigned long long)addr, bytes);
    } else {
        cu_count(b, &b->counters.address_free, vms_cost_seconds(VMS_COST_ADDRESS_FREE, bytes));
    }
    return ctx_leave(b, &s, st);
}

static vms_status cuda_map(vms_backend *vb, uintptr_t addr, size_t bytes, vms_handle h) {
    cuda_backend *b = cb(vb);
    ctx_scope s;
    vms_status st = ctx_enter(b, &s);
    if (st != VMS_OK) return st;
    CUresult r = cu.MemMap((CUdeviceptr)addr, bytes, 0, (CUmemGenericAllocationHandle)h, 0);
    if (r != CUDA_SUCCESS) {
        st = cu_fail(b, r, "cuMemMap(0x%llx, %zu bytes, handle 0x%llx)", (unsigned long long)addr,
                     bytes, (unsigned long long)h);
        return ctx_leave(b, &s, st);
    }
    cu_map_rec rec = {addr, bytes, h};
    if (cu_track(b, &b->maps, &rec, &b->counters.map, vms_cost_seconds(VMS_COST_MAP, bytes)) != 0)
        st = cu_untracked(b, cu.MemUnmap((CUdeviceptr)addr, bytes), "cuMemUnmap", "mapping");
    return ctx_leave(b, &s, st);
}

static vms_status cuda_unmap(vms_backend *vb, uintptr_t addr, size_t bytes) {
    cuda_backend *b = cb(vb);
    ctx_scope s;
    vms_status st = ctx_enter(b, &s);
    if (st != VMS_OK) return st;
    CUresult r = cu.MemUnmap((CUdeviceptr)addr, bytes);
    if (r != CUDA_SUCCESS) {
        st = cu_fail(b, r, "cuMemUnmap(0x%llx, %zu bytes)", (unsigned long long)addr, bytes);
    } else {
        cu_untrack(b, &b->maps, addr, &b->counters.unmap, vms_cost_seconds(VMS_COST_UNMAP, bytes));
    }
    return ctx_leave(b, &s, st);
}

static vms_status cuda_set_access(vms_backend *vb, uintptr_t addr, size_t bytes) {
    cuda_backend *b = cb(vb);
    ctx_scope s;
    vms_status st = ctx_enter(b, &s);
    if (st != VMS_OK) return st;
    /* One call over the whole range: the driver's cost is per mapped handle either way. */
    CUresult r = cu.MemSetAccess((CUdeviceptr)addr, bytes, &b->access, 1);
    if (r != CUDA_SUCCESS) {
        st = cu_fail(b, r, "cuMemSetAccess(0x%llx, %zu bytes)", (unsigned long long)addr, bytes);
    } else {
        pthread_mutex_lock(&b->mu);
        uint64_t n = 0;
        double cost = 0;
        for (size_t i = sv_lower(&b->maps, addr); i < b->maps.n; i++) {
            const cu_map_rec *m = sv_at(&b->maps, i);
            if (m->addr >= (uint64_t)addr + bytes) break;
            n++;
            cost += vms_cost_seconds(VMS_COST_SET_ACCESS, (size_t)m->bytes);
        }
        if (n == 0) { /* not through our map(): count the call as one handle */
            n = 1;
            cost = vms_cost_seconds(VMS_COST_SET_ACCESS, bytes);
        }
        b->counters.set_access += n;
        b->counters.modeled_seconds += cost;
        pthread_mutex_unlock(&b->mu);
    }
    return ctx_leave(b, &s, st);
}

static vms_status cuda_event_record(vms_backend *vb, vms_stream stream, vms_event *out) {
    cuda_backend *b = cb(vb);
    ctx_scope s;
    vms_status st = ctx_enter(b, &s);
    if (st != VMS_OK) return st;
    CUevent ev = NULL;
    pthread_mutex_lock(&b->mu);
    if (b->idle_n) ev = b->idle_events[--b->idle_n];
    pthread_mutex_unlock(&b->mu);
    CUresult r;
    if (!ev) {
        r = cu.EventCreate(&ev, CU_EVENT_DISABLE_TIMING);
        if (r != CUDA_SUCCESS) return ctx_leave(b, &s, cu_fail(b, r, "cuEventCreate"));
    }
    r = cu.EventRecord(ev, (CUstream)stream);
    if (r != CUDA_SUCCESS) {
        st = cu_fail(b, r, "cuEventRecord(stream %p)", stream);
        CUresult r2 = cu.EventDestroy(ev); /* its state is unknown now: do not reuse it */
        if (r2 != CUDA_SUCCESS) cu_also(b, r2, "cuEventDestroy");
        return ctx_leave(b, &s, st);
    }
    cu_count(b, &b->counters.event_record, 0.0); /* events have no modeled cost */
    *out = (vms_event)ev;
    return ctx_leave(b, &s, VMS_OK);
}

static vms_status cuda_event_query(vms_backend *vb, vms_event ev, bool *done) {
    cuda_backend *b = cb(vb);
    ctx_scope s;
    vms_status st = ctx_enter(b, &s);
    if (st != VMS_OK) return st;
    CUresult r = cu.EventQuery((CUevent)ev);
    if (r == CUDA_SUCCESS)
        *done = true;
    else if (r == CUDA_ERROR_NOT_READY)
        *done = false;
    else
        st = cu_fail(b, r, "cuEventQuery");
    if (st == VMS_OK) cu_count(b, &b->counters.event_query, 0.0);
    return ctx_leave(b, &s, st);
}

static vms_status cuda_event_sync(vms_backend *vb, vms_event ev) {
    cuda_backend *b = cb(vb);
    ctx_scope s;
    vms_status st = ctx_enter(b, &s);
    if (st != VMS_OK) return st;
    CUresult r = cu.EventSynchronize((CUevent)ev);
    if (r != CUDA_SUCCESS)
        st = cu_fail(b, r, "cuEventSynchronize");
    else
        cu_count(b, &b->counters.event_sync, 0.0);
    return ctx_leave(b, &s, st);
}

/* Waits for every stream of the device's primary context: no stream handle is needed, so a
 * stream the application has destroyed since is never touched. */
static vms_status cuda_device_sync(vms_backend *vb) {
    cuda_backend *b = cb(vb);
    ctx_scope s;
    vms_status st = ctx_enter(b, &s);
    if (st != VMS_OK) return st;
    CUresult r = cu.CtxSynchronize();
    if (r != CUDA_SUCCESS)
        st = cu_fail(b, r, "cuCtxSynchronize");
    else
        cu_count(b, &b->counters.event_sync, 0.0);
    return ctx_leave(b, &s, st);
}

static void cuda_event_destroy(vms_backend *vb, vms_event ev) {
    cuda_backend *b = cb(vb);
    if (!ev) return;
    pthread_mutex_lock(&b->mu);
    int kept = 0;
    if (b->idle_n < CU_IDLE_EVENTS_MAX) {
        if (b->idle_n == b->idle_cap) {
            size_t ncap = b->idle_cap ? b->idle_cap * 2 : 64;
            CUevent *n = realloc(b->idle_events, ncap * sizeof *n);
            if (n) {
                b->idle_events = n;
                b->idle_cap = ncap;
            }
        }
        if (b->idle_n < b->idle_cap) {
            b->idle_events[b->idle_n++] = (CUevent)ev;
            kept = 1;
        }
    }
    pthread_mutex_unlock(&b->mu);
    if (kept) return;
    ctx_scope s;
    vms_status st = ctx_enter(b, &s);
    if (st != VMS_OK) return; /* the driver is gone, or the message is stored: nothing to free */
    CUresult r = cu.EventDestroy((CUevent)ev);
    if (r != CUDA_SUCCESS) st = cu_fail(b, r, "cuEventDestroy");
    (void)ctx_leave(b, &s, st); /* no status to return here; the message stays readable */
}

static vms_status cuda_stream_check(vms_backend *vb, vms_stream stream) {
    cuda_backend *b = cb(vb);
    /* This sits on every allocation. The calling thread almost always has the primary context
     * current already (cuStreamIsCapturing of the NULL stream needs one), and then ctx_enter
     * costs one cuCtxGetCurrent and switches nothing. */
    ctx_scope s;
    vms_status st = ctx_enter(b, &s);
    if (st != VMS_OK) return st;
    int status = CU_STREAM_CAPTURE_STATUS_NONE;
    CUresult r = cu.StreamIsCapturing((CUstream)stream, &status);
    if (r >= CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED && r <= CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD) {
        /* e.g. CUDA_ERROR_STREAM_CAPTURE_IMPLICIT: the legacy stream while another is captured */
        char err[256];
        cu_describe_error(r, err, sizeof err);
        backend_set_error("cuda device %d: stream %p is part of a CUDA graph capture (%s); "
                          "vmstitch cannot allocate during capture yet",
                          b->ordinal, stream, err);
        st = VMS_ECAPTURE;
    } else if (r != CUDA_SUCCESS) {
        st = cu_fail(b, r, "cuStreamIsCapturing(stream %p)", stream);
    } else if (status != CU_STREAM_CAPTURE_STATUS_NONE) {
        backend_set_error("cuda device %d: stream %p is being captured into a CUDA graph "
                          "(capture status %d); vmstitch cannot allocate during capture yet",
                          b->ordinal, stream, status);
        st = VMS_ECAPTURE;
    }
    return ctx_leave(b, &s, st);
}

static vms_status cuda_counters(const vms_backend *vb, vms_backend_counters *out) {
    cuda_backend *b = (cuda_backend *)vb;
    pthread_mutex_lock(&b->mu);
    *out = b->counters;
    pthread_mutex_unlock(&b->mu);
    return VMS_OK;
}

/* Is the primary context still alive? At process exit the driver may already be torn down;
 * then no driver call may be made (they would fail at best). */
static int cuda_alive(cuda_backend *b) {
    if (atomic_load(&b->dead)) return 0;
    unsigned int flags = 0;
    int active = 0;
    CUresult r = cu.DevicePrimaryCtxGetState(b->dev, &flags, &active);
    if (r != CUDA_SUCCESS) {
        if (r == CUDA_ERROR_DEINITIALIZED) atomic_store(&b->dead, 1);
        return 0;
    }
    return active;
}

static void cuda_destroy(vms_backend *vb) {
    cuda_backend *b = cb(vb);
    if (!b) return;
    if (cuda_alive(b)) {
        ctx_scope s;
        if (ctx_enter(b, &s) == VMS_OK) {
            vms_status st = VMS_OK;
            for (size_t i = 0; i < b->idle_n; i++) {
                CUresult r = cu.EventDestroy(b->idle_events[i]);
                if (r != CUDA_SUCCESS && st == VMS_OK) st = cu_fail(b, r, "cuEventDestroy");
            }
            (void)ctx_leave(b, &s, st);
        }
        /* Chunks or mappings still listed were leaked by the caller (the interface says every
         * allocator must be gone first); they may still be in use, so they are left alone. */
        CUresult r = cu.DevicePrimaryCtxRelease(b->dev);
        if (r != CUDA_SUCCESS) (void)cu_fail(b, r, "cuDevicePrimaryCtxRelease");
    }
    pthread_mutex_destroy(&b->mu);
    free(b->chunks.data);
    free(b->maps.data);
    free(b->idle_events);
    free(b);
}

static const vms_backend_ops cuda_ops = {
    .name = "cuda",
    .granularity = cuda_granularity,
    .mem_info = cuda_mem_info,
    .chunk_create = cuda_chunk_create,
    .chunk_release = cuda_chunk_release,
    .va_reserve = cuda_va_reserve,
    .va_free = cuda_va_free,
    .map = cuda_map,
    .unmap = cuda_unmap,
    .set_access = cuda_set_access,
    .event_record = cuda_event_record,
    .event_query = cuda_event_query,
    .event_sync = cuda_event_sync,
    .event_destroy = cuda_event_destroy,
    .device_sync = cuda_device_sync,
    .stream_check = cuda_stream_check,
    .stream_hold = NULL,
    .counters = cuda_counters,
    .destroy = cuda_destroy,
};

VMS_API vms_status vms_backend_cuda_create(int device, vms_backend **out) {
    if (!out) {
        backend_set_error("vms_backend_cuda_create: out is NULL");
        return VMS_EINVAL;
    }
    *out = NULL;
    pthread_once(&cu_once, cu_load);
    if (cu_load_status != VMS_OK) {
        backend_set_error("%s", cu_load_error);
        return cu_load_status;
    }
    CUresult r = cu.Init(0);
    if (r != CUDA_SUCCESS) {
        char err[256];
        cu_describe_error(r, err, sizeof err);
        backend_set_error("cuda backend: cuInit failed: %s", err);
        /* No device, no usable driver: "not available here", like a missing libcuda. */
        return VMS_EUNSUPPORTED;
    }
    int count = 0;
    r = cu.DeviceGetCount(&count);
    if (r != CUDA_SUCCESS) return cu_fail(NULL, r, "cuDeviceGetCount");
    if (count <= 0) {
        backend_set_error("cuda backend: the driver sees no GPU");
        return VMS_EUNSUPPORTED;
    }
    if (device < 0 || device >= count) {
        backend_set_error("cuda backend: device %d does not exist (%d visible)", device, count);
        return VMS_EINVAL;
    }
    CUdevice dev = 0;
    r = cu.DeviceGet(&dev, device);
    if (r != CUDA_SUCCESS) return cu_fail(NULL, r, "cuDeviceGet(%d)", device);
    int vmm = 0;
    r = cu.DeviceGetAttribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, dev);
    if (r != CUDA_SUCCESS)
        return cu_fail(NULL, r, "cuDeviceGetAttribute(VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED)");
    if (!vmm) {
        backend_set_error("cuda backend: device %d does not support virtual memory management "
                          "(cuMemCreate/cuMemMap)",
                          device);
        return VMS_EUNSUPPORTED;
    }

    cuda_backend *b = calloc(1, sizeof *b);
    if (!b) {
        backend_set_error("cuda backend: out of host memory");
        return VMS_ENOMEM_HOST;
    }
    b->base.ops = &cuda_ops;
    b->ordinal = device;
    b->dev = dev;
    b->chunks.elem = sizeof(cu_chunk_rec);
    b->maps.elem = sizeof(cu_map_rec);
    atomic_init(&b->dead, 0);
    b->prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    b->prop.requested_handle_types = CU_MEM_HANDLE_TYPE_NONE;
    b->prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    b->prop.location.id = device;
    b->access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    b->access.location.id = device;
    b->access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;

    vms_status st = VMS_OK;
    r = cu.MemGetAllocationGranularity(&b->granularity_bytes, &b->prop,
                                       CU_MEM_ALLOC_GRANULARITY_MINIMUM);
    if (r != CUDA_SUCCESS) {
        st = cu_fail(b, r, "cuMemGetAllocationGranularity(minimum)");
    } else if (b->granularity_bytes == 0) {
        backend_set_error("cuda device %d: the driver reported granularity 0", device);
        st = VMS_EBACKEND;
    }
    if (st == VMS_OK) {
        r = cu.MemGetAllocationGranularity(&b->recommended_granularity_bytes, &b->prop,
                                           CU_MEM_ALLOC_GRANULARITY_RECOMMENDED);
        if (r != CUDA_SUCCESS) st = cu_fail(b, r, "cuMemGetAllocationGranularity(recommended)");
    }
    if (st != VMS_OK) {
        free(b);
        return st;
    }
    r = cu.DevicePrimaryCtxRetain(&b->ctx, dev);
    if (r != CUDA_SUCCESS) {
        st = cu_fail(b, r, "cuDevicePrimaryCtxRetain");
        free(b);
        return st;
    }
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        r = cu.DevicePrimaryCtxRelease(dev);
        if (r != CUDA_SUCCESS)
            st = cu_fail(b, r, "cuDevicePrimaryCtxRelease");
        else {
            backend_set_error("cuda backend: pthread_mutex_init failed");
            st = VMS_ENOMEM_HOST;
        }
        free(b);
        return st;
    }
    *out = &b->base;
    return VMS_OK;
}

/* ---------------------------------------------------------------- description */

/* The kernel driver's version ("580.159.03"): /proc first, then NVML, loaded like libcuda. */
static void driver_release_string(char *buf, size_t cap) {
    buf[0] = 0;
    FILE *f = fopen("/proc/driver/nvidia/version", "r");
    if (f) {
        char line[512];
        if (fgets(line, sizeof line, f)) {
            const char *k = strstr(line, "Kernel Module");
            if (k) {
                /* "... Kernel Module for x86_64  580.159.03  Release Build ...": the version is
                 * the first word that starts with a digit (after "x86_64", which does not). */
                k += strlen("Kernel Module");
                while (*k && !(k[-1] == ' ' && *k >= '0' && *k <= '9'))
                    k++;
                size_t n = strcspn(k, " \t\n");
                if (n && n < cap) {
                    memcpy(buf, k, n);
                    buf[n] = 0;
                }
            }
        }
        fclose(f);
        if (buf[0]) return;
    }
    void *nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!nvml) return;
    void *pi = dlsym(nvml, "nvmlInit_v2"), *pv = dlsym(nvml, "nvmlSystemGetDriverVersion");
    void *ps = dlsym(nvml, "nvmlShutdown");
    if (pi && pv && ps) {
        int (*init)(void), (*shutdown)(void);
        int (*version)(char *, unsigned int);
        memcpy(&init, &pi, sizeof pi);
        memcpy(&version, &pv, sizeof pv);
        memcpy(&shutdown, &ps, sizeof ps);
        if (init() == 0) {
            if (version(buf, (unsigned int)cap) != 0) buf[0] = 0;
            (void)shutdown(); /* nothing to do about a failed NVML shutdown */
        }
    }
    dlclose(nvml);
}

static void json_escape(char *dst, size_t cap, const char *src) {
    size_t j = 0;
    for (size_t i = 0; src[i] && j + 2 < cap; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '"' || c == '\\') {
            dst[j++] = '\\';
            dst[j++] = (char)c;
        } else if (c >= 0x20) {
            dst[j++] = (char)c;
        }
    }
    dst[j] = 0;
}

/* cuda only (VMS_EUNSUPPORTED elsewhere): one JSON object describing the device, for
 * `vmstitch info` and vmstitch.info() in Python:
 *   {"backend":"cuda","device":0,"name":"NVIDIA H200","compute_capability":"9.0",
 *    "cuda_driver_version":13000,"driver_release":"580.159.03","vmm_supported":true,
 *    "granularity_bytes":2097152,"recommended_granularity_bytes":2097152,
 *    "total_bytes":...,"free_bytes":...}
 * Written into buf (NUL-terminated, truncated to cap); *len_out gets the full length. */
VMS_API vms_status vms_backend_cuda_describe(vms_backend *vb, char *buf, size_t cap,
                                             size_t *len_out) {
    if (!vb || vb->ops != &cuda_ops) {
        backend_set_error("vms_backend_cuda_describe: not a cuda backend");
        return VMS_EUNSUPPORTED;
    }
    cuda_backend *b = cb(vb);
    ctx_scope s;
    vms_status st = ctx_enter(b, &s);
    if (st != VMS_OK) return st;
    char name[256] = "", ename[512];
    int major = 0, minor = 0;
    size_t free_b = 0, total_b = 0;
    CUresult r = cu.DeviceGetName(name, (int)sizeof name, b->dev);
    if (r != CUDA_SUCCESS) st = cu_fail(b, r, "cuDeviceGetName");
    if (st == VMS_OK) {
        r = cu.DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, b->dev);
        if (r == CUDA_SUCCESS)
            r = cu.DeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, b->dev);
        if (r != CUDA_SUCCESS) st = cu_fail(b, r, "cuDeviceGetAttribute(compute capability)");
    }
    if (st == VMS_OK) {
        r = cu.MemGetInfo(&free_b, &total_b);
        if (r != CUDA_SUCCESS) st = cu_fail(b, r, "cuMemGetInfo");
    }
    st = ctx_leave(b, &s, st);
    if (st != VMS_OK) return st;
    char release[128], erel[160];
    driver_release_string(release, sizeof release);
    json_escape(ename, sizeof ename, name);
    json_escape(erel, sizeof erel, release);
    char relfield[192];
    if (erel[0])
        snprintf(relfield, sizeof relfield, "\"%s\"", erel);
    else
        snprintf(relfield, sizeof relfield, "null");
    int n = snprintf(buf, buf ? cap : 0,
                     "{\"backend\":\"cuda\",\"device\":%d,\"name\":\"%s\","
                     "\"compute_capability\":\"%d.%d\",\"cuda_driver_version\":%d,"
                     "\"driver_release\":%s,\"vmm_supported\":true,\"granularity_bytes\":%zu,"
                     "\"recommended_granularity_bytes\":%zu,\"total_bytes\":%zu,"
                     "\"free_bytes\":%zu}",
                     b->ordinal, ename, major, minor, cu_driver_version, relfield,
                     b->granularity_bytes, b->recommended_granularity_bytes, total_b, free_b);
    if (len_out) *len_out = n < 0 ? 0 : (size_t)n;
    return VMS_OK;
}
