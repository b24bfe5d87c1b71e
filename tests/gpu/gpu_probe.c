/* Decides whether the GPU tests can run here: opens the cuda backend on device 0 through the
 * public API. Exit 0 and one JSON line describing the device where it opens; 77 and the
 * backend's reason where there is no driver or no GPU (VMS_EUNSUPPORTED); 1 on any other error,
 * which is a failure, not a reason to skip. */
#include <stdio.h>

#include "vmstitch.h"

vms_status vms_backend_cuda_describe(vms_backend *b, char *buf, size_t cap, size_t *len_out);

int main(void) {
    vms_backend *b = NULL;
    vms_status st = vms_backend_cuda_create(0, &b);
    if (st == VMS_EUNSUPPORTED) {
        printf("%s\n", vms_last_error());
        return 77;
    }
    if (st != VMS_OK) {
        printf("cuda backend failed to open: %s: %s\n", vms_status_str(st), vms_last_error());
        return 1;
    }
    char buf[1024];
    size_t len = 0;
    st = vms_backend_cuda_describe(b, buf, sizeof buf, &len);
    if (st != VMS_OK) {
        printf("describe failed: %s: %s\n", vms_status_str(st), vms_last_error());
        vms_backend_destroy(b);
        return 1;
    }
    printf("%s\n", buf);
    vms_backend_destroy(b);
    return 0;
}
