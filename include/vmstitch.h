/* vmstitch — a GPU caching allocator that defragments by virtual memory stitching.
 *
 * This is the only public header. Memory is held as physical chunks (CUDA driver handles, or
 * their host/simulated equivalents); a request that no cached free block can satisfy is served
 * by mapping free chunks, wherever they are, into one new contiguous virtual range.
 *
 * Every entry point is thread-safe: one allocator may be used from any number of threads, and
 * several allocators (one per device) may live in one process. No entry point prints anything
 * except one-line warnings about bad configuration (see log_level), and none ever exits or
 * aborts the process: errors are returned as vms_status codes.
 */
#ifndef VMSTITCH_H
#define VMSTITCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMS_VERSION_MAJOR 0
#define VMS_VERSION_MINOR 1
#define VMS_VERSION_PATCH 0

#if defined(__GNUC__)
#define VMS_API __attribute__((visibility("default")))
#else
#define VMS_API
#endif

/* ---------------------------------------------------------------- status codes */

typedef enum vms_status {
    VMS_OK = 0,
    VMS_EINVAL = 1,       /* bad argument (NULL handle, bad config value, size overflow) */
    VMS_ENOMEM = 2,       /* out of device memory or over the memory limit: see vms_oom_report */
    VMS_ENOTFOUND = 3,    /* pointer not allocated by this allocator (or interior pointer) */
    VMS_EDOUBLEFREE = 4,  /* pointer was allocated here but is already free */
    VMS_EBACKEND = 5,     /* the backend (driver) refused a call: see vms_last_error */
    VMS_EUNSUPPORTED = 6, /* operation not available on this backend or build */
    VMS_ECAPTURE = 7,     /* allocation attempted while the stream is being captured */
    VMS_ENOMEM_HOST = 8,  /* host memory for bookkeeping could not be allocated */
} vms_status;

/* A short, static, human-readable name for a status ("ok", "out of memory", ...). */
VMS_API const char *vms_status_str(vms_status s);

/* "MAJOR.MINOR.PATCH" */
VMS_API const char *vms_version(void);

/* ---------------------------------------------------------------- opaque types */

typedef struct vms_allocator vms_allocator;
typedef struct vms_backend vms_backend;

/* A stream: for the cuda backend a CUstream / cudaStream_t; for host and sim, any small
 * integer cast to a pointer. NULL is the default stream. */
typedef void *vms_stream;

/* ---------------------------------------------------------------- backends */

/* host: real memory (memfd_create + mmap MAP_FIXED into a PROT_NONE reservation). One chunk
 * can be visible at two addresses at once, so stitching runs for real on the CPU. Events
 * complete at once unless a stream is held (vms_backend_stream_hold). granularity_bytes 0
 * means the default (2 MiB); capacity_bytes 0 means unlimited (bounded by the machine). */
VMS_API vms_status vms_backend_host_create(size_t granularity_bytes, size_t capacity_bytes,
                                           vms_backend **out);

/* sim: no memory at all, only address arithmetic, call counts and the cost model of DESIGN.md.
 * Addresses it hands out must never be dereferenced. capacity_bytes 0 means 80 GiB. */
VMS_API vms_status vms_backend_sim_create(size_t granularity_bytes, size_t capacity_bytes,
                                          vms_backend **out);

/* cuda: the CUDA driver API loaded at run time (dlopen libcuda.so.1). Fails with
 * VMS_EUNSUPPORTED and a message in vms_last_error where there is no driver or no GPU. */
VMS_API vms_status vms_backend_cuda_create(int device, vms_backend **out);

/* cuda only (VMS_EUNSUPPORTED elsewhere): one flat JSON object describing the device (name,
 * compute capability, driver version, granularity, total and free bytes), written into buf
 * (NUL-terminated, truncated to cap); *len_out gets the full length. */
VMS_API vms_status vms_backend_cuda_describe(vms_backend *b, char *buf, size_t cap,
                                             size_t *len_out);

/* Destroys a backend. Every allocator using it must have been destroyed first. */
VMS_API void vms_backend_destroy(vms_backend *b);

VMS_API const char *vms_backend_name(const vms_backend *b);

/* host and sim only (VMS_EUNSUPPORTED elsewhere): while a stream is held, events recorded on
 * it stay pending; releasing the hold completes them. Lets tests exercise event-gated unmapping
 * and cross-stream reuse on the CPU. */
VMS_API vms_status vms_backend_stream_hold(vms_backend *b, vms_stream stream, int held);

/* Calls made to a backend, counted per handle (a set_access over a range of N handles counts N),
 * and the modeled seconds of those calls (DESIGN.md's cost table; 0 on backends without a
 * model). */
typedef struct vms_backend_counters {
    uint64_t create, release, reserve, address_free, map, unmap, set_access;
    uint64_t event_record, event_query, event_sync;
    double modeled_seconds;
} vms_backend_counters;

VMS_API vms_status vms_backend_counters_get(const vms_backend *b, vms_backend_counters *out);

/* The backend's last error message for the calling thread ("" if none). */
VMS_API const char *vms_last_error(void);

/* ---------------------------------------------------------------- configuration */

/* Every field starts as VMS_UNSET (vms_config_init). At vms_allocator_create each unset field
 * is taken from its VMSTITCH_* environment variable (or GMLake's alias), else the default.
 * Explicitly set fields win over the environment. */
#define VMS_UNSET (-1)

typedef enum vms_stitch_when {
    VMS_STITCH_BEFORE_GROW = 0, /* stitch free chunks before creating new ones (default) */
    VMS_STITCH_ON_GROW_FAIL = 1 /* create new chunks first; stitch only when that fails */
} vms_stitch_when;

typedef struct vms_config {
    int64_t small_chunk_bytes;       /* chunk size of the small pool (default: granularity) */
    int64_t large_chunk_min_bytes;   /* smallest chunk created for the large pool (granularity) */
    int64_t large_chunk_max_bytes;   /* largest chunk created for the large pool (12 MiB) */
    int64_t small_request_bytes;     /* requests up to this go to the small pool (1 MiB) */
    int64_t stitch_enable;           /* 0/1 (default 1); GMLake: vmmDefragment */
    int64_t stitch_min_bytes;        /* smallest request that may be stitched (0); fragLimit */
    int64_t reuse_limit;             /* reuse a cached stitched range of <= this x request (10) */
    int64_t stitch_when;             /* vms_stitch_when (default BEFORE_GROW); defragLevel */
    int64_t gc_threshold_bytes;      /* GC idle stitched ranges above this many virtual bytes (0: no
                                        limit, the default) */
    int64_t gc_threshold_count;      /* ... or above this many idle ranges (256; 0: no limit); autoGC */
    int64_t memory_limit_bytes;      /* 0 = no limit (default) */
    int64_t log_level;               /* 0 silent, 1 warnings (default), 2 info, 3 debug */
    int64_t check_level;             /* 0 none (default), 1 vms_check after every mutation */
} vms_config;

VMS_API void vms_config_init(vms_config *cfg);

/* Fills every unset field from the environment and defaults, exactly as vms_allocator_create
 * will; bad values give a one-line warning on stderr (at log_level >= 1) and the default. */
VMS_API void vms_config_resolve(vms_config *cfg, size_t granularity_bytes);

/* ---------------------------------------------------------------- allocator */

/* cfg may be NULL (all defaults/environment). The backend is borrowed, not owned. */
VMS_API vms_status vms_allocator_create(const vms_config *cfg, vms_backend *backend, int device,
                                        vms_allocator **out);

/* Releases every chunk and range. Live allocations are released with the allocator. */
VMS_API void vms_allocator_destroy(vms_allocator *a);

/* Allocates size bytes for use on stream. Pointers are aligned to at least 512 bytes.
 * size 0 succeeds with *ptr = NULL. On VMS_ENOMEM, vms_oom_report() says why. */
VMS_API vms_status vms_malloc(vms_allocator *a, size_t size, vms_stream stream, void **ptr);

/* Frees a pointer from vms_malloc. NULL does nothing (VMS_OK). The memory becomes reusable on
 * its allocation stream at once, and on other streams once the events of every stream it was
 * used on have completed. */
VMS_API vms_status vms_free(vms_allocator *a, void *ptr);

/* Marks ptr as used on another stream: when it is freed, reuse waits for that stream too. */
VMS_API vms_status vms_record_stream(vms_allocator *a, void *ptr, vms_stream stream);

/* Releases every chunk that holds no live allocation, and every cached stitched range. */
VMS_API vms_status vms_empty_cache(vms_allocator *a);

/* Caps the physical bytes held (0 = no cap). Lowering it below what is held releases free
 * chunks where it can; the cap applies to later growth. */
VMS_API vms_status vms_set_memory_limit(vms_allocator *a, size_t bytes);

/* The size originally requested for a live pointer, or 0 if ptr is not live here. */
VMS_API size_t vms_allocation_size(vms_allocator *a, const void *ptr);

/* One paragraph explaining the calling thread's last VMS_ENOMEM (requested, reserved, live,
 * largest free block, cached); "" if this thread has had none. */
VMS_API const char *vms_oom_report(void);

/* Walks every structure and returns the number of invariant violations (0 = healthy). */
VMS_API size_t vms_check(vms_allocator *a);

/* ---------------------------------------------------------------- statistics */

/* Every statistic, defined once. X(name, kind) — kind is CUR_PEAK for a current value with its
 * peak (fields name_current and name_peak), or COUNT for a monotonic counter. */
#define VMS_STATS_FIELDS(X)                                                                      \
    X(allocated_bytes, CUR_PEAK)       /* bytes of live blocks, rounded sizes */                 \
    X(requested_bytes, CUR_PEAK)       /* bytes of live blocks, as requested */                  \
    X(active_bytes, CUR_PEAK)          /* live blocks + freed blocks awaiting stream events */   \
    X(reserved_bytes, CUR_PEAK)        /* physical chunk bytes held */                           \
    X(cached_bytes, CUR_PEAK)          /* reserved bytes not allocated */                        \
    X(stitched_cached_bytes, CUR_PEAK) /* virtual bytes of idle cached stitched ranges */        \
    X(small_allocated_bytes, CUR_PEAK)                                                           \
    X(small_requested_bytes, CUR_PEAK)                                                           \
    X(small_reserved_bytes, CUR_PEAK)                                                            \
    X(large_allocated_bytes, CUR_PEAK)                                                           \
    X(large_requested_bytes, CUR_PEAK)                                                           \
    X(large_reserved_bytes, CUR_PEAK)                                                            \
    X(chunks, CUR_PEAK)                /* physical chunks held */                                \
    X(stitched_ranges, CUR_PEAK)       /* stitched virtual ranges mapped (in use or cached) */   \
    X(mallocs, COUNT)                                                                            \
    X(frees, COUNT)                                                                              \
    X(stitches, COUNT)                 /* new stitched ranges built */                           \
    X(stitch_reuses, COUNT)            /* cached stitched ranges reused */                       \
    X(grows, COUNT)                    /* times new chunks were created */                       \
    X(gc_runs, COUNT)                                                                            \
    X(gc_ranges_freed, COUNT)                                                                    \
    X(ooms, COUNT)                                                                               \
    X(oom_retries, COUNT)              /* times the OOM ladder collected and retried */          \
    X(event_waits, COUNT)              /* unmaps deferred because an event was pending */        \
    X(empty_cache_calls, COUNT)                                                                  \
    X(backend_create, COUNT)                                                                     \
    X(backend_release, COUNT)                                                                    \
    X(backend_reserve, COUNT)                                                                    \
    X(backend_address_free, COUNT)                                                               \
    X(backend_map, COUNT)                                                                        \
    X(backend_unmap, COUNT)                                                                      \
    X(backend_set_access, COUNT)                                                                 \
    X(backend_errors, COUNT)

typedef struct vms_stats {
#define VMS_STATS_X_CUR_PEAK(n) uint64_t n##_current, n##_peak;
#define VMS_STATS_X_COUNT(n) uint64_t n;
#define VMS_STATS_X(n, kind) VMS_STATS_X_##kind(n)
    VMS_STATS_FIELDS(VMS_STATS_X)
#undef VMS_STATS_X
#undef VMS_STATS_X_COUNT
#undef VMS_STATS_X_CUR_PEAK
} vms_stats;

VMS_API vms_status vms_stats_get(vms_allocator *a, vms_stats *out);

/* Sets every _peak to its _current. Counters are left alone. */
VMS_API vms_status vms_stats_reset_peak(vms_allocator *a);

/* Writes the stats as one JSON object into buf (NUL-terminated, truncated to cap). Returns the
 * length the full object needs (excluding the NUL), like snprintf. */
VMS_API size_t vms_stats_json(vms_allocator *a, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* VMSTITCH_H */
