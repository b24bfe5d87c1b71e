/* What every backend shares: the calling thread's last error message, the cost model of
 * DESIGN.md ("Metrics"), and the public entry points that dispatch through a backend's table
 * of operations.
 *
 * Locking: the error message lives in thread-local storage, so it needs no lock; the cost
 * model is a pure function of constant tables; the wrappers take no lock themselves, since
 * every backend serialises its own operations under its own mutex.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "backend/backend.h"

/* ---------------------------------------------------------------- errors */

/* One line per thread, so that a message read right after a failing call is that call's own,
 * whatever other threads are doing with the same backend. */
static _Thread_local char tls_error[256];

void backend_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_error, sizeof tls_error, fmt, ap);
    va_end(ap);
    /* Callers may format driver strings that end in a newline; the message must stay one line
     * so that it can be embedded in reports and logs. */
    for (char *p = tls_error; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

VMS_API const char *vms_last_error(void) {
    return tls_error;
}

/* ---------------------------------------------------------------- cost model */

#define MIB (1024.0 * 1024.0)

/* Microseconds per call at 2, 20 and 512 MiB handles, measured on the H100 (DESIGN.md).
 * cudaMalloc/cudaFree were measured at 2 and 512 MiB only: their 20 MiB point is put on the
 * straight line between those two, so the piecewise interpolation below is that line. */
#define ON_LINE_20(at2, at512) ((at2) + ((at512) - (at2)) * (20.0 - 2.0) / (512.0 - 2.0))

static const struct {
    double at2_us, at20_us, at512_us;
} cost_table[] = {
    [VMS_COST_CREATE] = {9.0, 10.0, 21.0},
    [VMS_COST_MAP] = {1.1, 0.7, 0.9},
    [VMS_COST_SET_ACCESS] = {27.0, 25.0, 50.0},
    [VMS_COST_UNMAP] = {16.0, 16.0, 24.0},
    [VMS_COST_RELEASE] = {10.0, 23.0, 179.0},
    /* Address reserve and free cost the same for any size that an allocator would use. */
    [VMS_COST_RESERVE] = {6.0, 6.0, 6.0},
    [VMS_COST_ADDRESS_FREE] = {2.0, 2.0, 2.0},
    [VMS_COST_CUDA_MALLOC] = {57.0, ON_LINE_20(57.0, 91.0), 91.0},
    [VMS_COST_CUDA_FREE] = {42.0, ON_LINE_20(42.0, 257.0), 257.0},
};

double vms_cost_seconds(vms_cost_kind kind, size_t bytes) {
    if ((size_t)kind >= sizeof cost_table / sizeof cost_table[0]) return 0.0;
    double a = cost_table[kind].at2_us, b = cost_table[kind].at20_us, c = cost_table[kind].at512_us;
    double mib = (double)bytes / MIB;
    double us;
    if (mib <= 2.0)
        us = a; /* clamped: below the smallest measured handle */
    else if (mib <= 20.0)
        us = a + (b - a) * (mib - 2.0) / (20.0 - 2.0);
    else if (mib <= 512.0)
        us = b + (c - b) * (mib - 20.0) / (512.0 - 20.0);
    else
        us = c; /* clamped: above the largest measured handle */
    return us * 1e-6;
}

/* ---------------------------------------------------------------- public wrappers */

VMS_API void vms_backend_destroy(vms_backend *b) {
    if (b && b->ops && b->ops->destroy) b->ops->destroy(b);
}

VMS_API const char *vms_backend_name(const vms_backend *b) {
    if (!b || !b->ops || !b->ops->name) return "none";
    return b->ops->name;
}

VMS_API vms_status vms_backend_stream_hold(vms_backend *b, vms_stream stream, int held) {
    if (!b || !b->ops) {
        backend_set_error("stream_hold: no backend");
        return VMS_EINVAL;
    }
    if (!b->ops->stream_hold) {
        backend_set_error("%s: stream_hold is only available on the host and sim backends",
                          vms_backend_name(b));
        return VMS_EUNSUPPORTED;
    }
    return b->ops->stream_hold(b, stream, held);
}

VMS_API vms_status vms_backend_counters_get(const vms_backend *b, vms_backend_counters *out) {
    if (!b || !b->ops || !out) {
        backend_set_error("counters_get: no backend or no output");
        return VMS_EINVAL;
    }
    if (!b->ops->counters) {
        memset(out, 0, sizeof *out);
        return VMS_OK;
    }
    return b->ops->counters(b, out);
}
