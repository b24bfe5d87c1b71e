/* `vmstitch info`: the GPU, driver and allocation granularity, as the cuda backend sees them.
 * The backend loads the driver at run time, so on a machine without one this prints why (the
 * backend's last error) and fails with status 1 instead of crashing.
 */
#include "info.h"

#include <stdio.h>
#include <string.h>

#include "vmstitch.h"

/* Copies the value of "key" in a flat JSON object (string without quotes, or a bare token). */
static bool json_field(const char *json, const char *key, char *out, size_t cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p || cap == 0) return false;
    p += strlen(pat);
    size_t n = 0;
    if (*p == '"') {
        for (p++; *p && *p != '"' && n + 1 < cap; p++) {
            if (*p == '\\' && p[1]) p++;
            out[n++] = *p;
        }
    } else {
        while (*p && *p != ',' && *p != '}' && n + 1 < cap)
            out[n++] = *p++;
    }
    out[n] = '\0';
    return true;
}

int info_run(bool json) {
    vms_backend *b = NULL;
    vms_status st = vms_backend_cuda_create(0, &b);
    if (st != VMS_OK) {
        fprintf(stderr, "vmstitch info: no usable CUDA device: %s (%s)\n", vms_last_error(),
                vms_status_str(st));
        return 1;
    }
    char desc[2048];
    size_t len = 0;
    st = vms_backend_cuda_describe(b, desc, sizeof desc, &len);
    if (st != VMS_OK) {
        fprintf(stderr, "vmstitch info: %s (%s)\n", vms_last_error(), vms_status_str(st));
        vms_backend_destroy(b);
        return 1;
    }
    if (json) {
        printf("%s\n", desc);
    } else {
        static const struct {
            const char *key, *label;
        } rows[] = {
            {"name", "GPU"},
            {"compute_capability", "compute capability"},
            {"driver_release", "driver"},
            {"cuda_driver_version", "CUDA driver API"},
            {"vmm_supported", "virtual memory management"},
            {"granularity_bytes", "granularity (minimum), bytes"},
            {"recommended_granularity_bytes", "granularity (recommended), bytes"},
            {"total_bytes", "memory total, bytes"},
            {"free_bytes", "memory free, bytes"},
        };
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
            char v[256];
            if (json_field(desc, rows[i].key, v, sizeof v)) printf("%-34s %s\n", rows[i].label, v);
        }
    }
    vms_backend_destroy(b);
    return 0;
}
