/* The backend interface: the few operations the core needs from a device, shaped exactly like
 * the CUDA driver's virtual memory management calls, so that the cuda backend is only a
 * translation and the host and sim backends refuse what the driver refuses.
 *
 * Rules every backend enforces (the driver's):
 *  - a chunk (handle) is created with a size that is a multiple of the granularity;
 *  - map places a whole chunk at offset 0 at an address aligned to the granularity, inside a
 *    reserved range, over addresses not already mapped;
 *  - unmap removes exactly one earlier mapping (addr and size equal to a map call);
 *  - set_access covers whole mappings only (a range that starts and ends at mapping edges);
 *  - a chunk may be mapped at several addresses at once (all see the same bytes);
 *  - release of a chunk that is still mapped anywhere fails;
 *  - va_free of a range that still has mappings fails.
 *
 * Counting: each backend counts its calls per handle (a set_access spanning N mappings counts
 * N), and the sim backend adds the modeled cost of each. Counters are updated under the
 * backend's own mutex, so one backend may serve several allocators and threads.
 *
 * Events: event_record captures "everything queued on this stream so far"; event_query says
 * whether that has completed. The host and sim backends complete events at once unless the
 * stream is held (vms_backend_stream_hold).
 *
 * Errors: every failing call returns a status and stores a one-line message for the calling
 * thread (backend_set_error), readable through vms_last_error().
 */
#ifndef VMS_BACKEND_H
#define VMS_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmstitch.h"

typedef uint64_t vms_handle; /* a physical chunk; 0 is never a valid handle */
typedef void *vms_event;     /* an event; NULL is never a valid event */

typedef struct vms_backend_ops {
    const char *name;
    vms_status (*granularity)(vms_backend *b, size_t *bytes);
    vms_status (*mem_info)(vms_backend *b, size_t *free_bytes, size_t *total_bytes);
    vms_status (*chunk_create)(vms_backend *b, size_t bytes, vms_handle *out);
    vms_status (*chunk_release)(vms_backend *b, vms_handle h);
    vms_status (*va_reserve)(vms_backend *b, size_t bytes, size_t align_bytes, uintptr_t *out);
    vms_status (*va_free)(vms_backend *b, uintptr_t addr, size_t bytes);
    vms_status (*map)(vms_backend *b, uintptr_t addr, size_t bytes, vms_handle h);
    vms_status (*unmap)(vms_backend *b, uintptr_t addr, size_t bytes);
    vms_status (*set_access)(vms_backend *b, uintptr_t addr, size_t bytes);
    vms_status (*event_record)(vms_backend *b, vms_stream stream, vms_event *out);
    vms_status (*event_query)(vms_backend *b, vms_event ev, bool *done);
    vms_status (*event_sync)(vms_backend *b, vms_event ev);
    void (*event_destroy)(vms_backend *b, vms_event ev);
    /* Waits for all work queued on the device, on every stream. Used by empty_cache, the OOM
     * ladder and destroy, so that they never need a stream handle, which the user may have
     * destroyed since. host/sim: fails if a stream is held. */
    vms_status (*device_sync)(vms_backend *b);
    /* cuda: VMS_ECAPTURE if the stream is capturing a graph; others: VMS_OK */
    vms_status (*stream_check)(vms_backend *b, vms_stream stream);
    vms_status (*stream_hold)(vms_backend *b, vms_stream stream, int held); /* may be NULL */
    vms_status (*counters)(const vms_backend *b, vms_backend_counters *out);
    void (*destroy)(vms_backend *b);
} vms_backend_ops;

/* Every backend's state begins with this header. */
struct vms_backend {
    const vms_backend_ops *ops;
};

/* Stores the calling thread's last error message (printf-style, one line). */
void backend_set_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Modeled cost in seconds of one call on a handle of size bytes (DESIGN.md's table, linear
 * interpolation between 2, 20 and 512 MiB, clamped outside). */
typedef enum vms_cost_kind {
    VMS_COST_CREATE,
    VMS_COST_MAP,
    VMS_COST_SET_ACCESS,
    VMS_COST_UNMAP,
    VMS_COST_RELEASE,
    VMS_COST_RESERVE,
    VMS_COST_ADDRESS_FREE,
    VMS_COST_CUDA_MALLOC,
    VMS_COST_CUDA_FREE,
} vms_cost_kind;

double vms_cost_seconds(vms_cost_kind kind, size_t bytes);

#endif /* VMS_BACKEND_H */
