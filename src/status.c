/* Status names, the version string, the per-thread out-of-memory report and the logger.
 * The OOM report lives in thread-local storage, so no lock is needed: the thread that got
 * VMS_ENOMEM reads its own report. The logger writes one line to stderr and nothing else. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static _Thread_local char oom_report_buf[1024];

const char *vms_status_str(vms_status s) {
    switch (s) {
    case VMS_OK: return "ok";
    case VMS_EINVAL: return "invalid argument";
    case VMS_ENOMEM: return "out of memory";
    case VMS_ENOTFOUND: return "pointer not allocated by this allocator";
    case VMS_EDOUBLEFREE: return "pointer already freed";
    case VMS_EBACKEND: return "backend call failed";
    case VMS_EUNSUPPORTED: return "not supported";
    case VMS_ECAPTURE: return "stream is capturing a graph";
    case VMS_ENOMEM_HOST: return "out of host memory";
    }
    return "unknown status";
}

const char *vms_version(void) { return "0.1.0"; }

const char *vms_oom_report(void) { return oom_report_buf; }

void oom_report_set(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(oom_report_buf, sizeof oom_report_buf, fmt, ap);
    va_end(ap);
}

void log_msg(int level, int cfg_level, const char *fmt, ...) {
    if (level > cfg_level) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "vmstitch: %s\n", line);
}
