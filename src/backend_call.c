/* The core's only door to the backend: each wrapper makes one backend call, counts it per
 * handle in the allocator's stats and turns a failure into a status (the backend has already
 * stored its message for vms_last_error). Callers hold the allocator lock. */
#include "internal.h"

static vms_status counted(vms_allocator *a, vms_status s, uint64_t *counter, uint64_t n) {
    if (s == VMS_OK) *counter += n;
    else a->st.backend_errors++;
    return s;
}

vms_status bk_create(vms_allocator *a, size_t bytes, vms_handle *h) {
    return counted(a, a->be->ops->chunk_create(a->be, bytes, h), &a->st.backend_create, 1);
}

vms_status bk_release(vms_allocator *a, vms_handle h, size_t bytes) {
    (void)bytes;
    return counted(a, a->be->ops->chunk_release(a->be, h), &a->st.backend_release, 1);
}

vms_status bk_reserve(vms_allocator *a, size_t bytes, uintptr_t *addr) {
    return counted(a, a->be->ops->va_reserve(a->be, bytes, a->gran_bytes, addr),
                   &a->st.backend_reserve, 1);
}

/* Undo steps of a failed operation: a rollback that fails too would leave the books wrong
 * (a mapping we think is gone, a handle we think is released), so each is tried twice, which
 * rides out a transient error. A second failure is counted in backend_errors. */
vms_status bk_undo_unmap(vms_allocator *a, uintptr_t addr, size_t bytes) {
    vms_status s = bk_unmap(a, addr, bytes);
    return s == VMS_OK ? s : bk_unmap(a, addr, bytes);
}

vms_status bk_undo_release(vms_allocator *a, vms_handle h, size_t bytes) {
    vms_status s = bk_release(a, h, bytes);
    return s == VMS_OK ? s : bk_release(a, h, bytes);
}

vms_status bk_undo_map(vms_allocator *a, uintptr_t addr, size_t bytes, vms_handle h) {
    vms_status s = bk_map(a, addr, bytes, h);
    if (s != VMS_OK) s = bk_map(a, addr, bytes, h);
    if (s == VMS_OK) s = bk_set_access(a, addr, bytes, 1);
    if (s != VMS_OK) s = bk_set_access(a, addr, bytes, 1);
    return s;
}

/* An address range whose release failed is not forgotten: it is kept and retried by
 * bk_va_free_retry (at each GC and at destroy), so a transient driver error leaks nothing. */
vms_status bk_va_free(vms_allocator *a, uintptr_t addr, size_t bytes) {
    vms_status s =
        counted(a, a->be->ops->va_free(a->be, addr, bytes), &a->st.backend_address_free, 1);
    if (s != VMS_OK && a->deferred_n < VMS_DEFERRED_VA_MAX) {
        a->deferred_va[a->deferred_n].addr = addr;
        a->deferred_va[a->deferred_n].bytes = bytes;
        a->deferred_n++;
    }
    return s;
}

void bk_va_free_retry(vms_allocator *a) {
    size_t keep = 0;
    for (size_t i = 0; i < a->deferred_n; i++) {
        vms_status s = a->be->ops->va_free(a->be, a->deferred_va[i].addr, a->deferred_va[i].bytes);
        if (s == VMS_OK) a->st.backend_address_free++;
        else a->deferred_va[keep++] = a->deferred_va[i];
    }
    a->deferred_n = keep;
}

vms_status bk_map(vms_allocator *a, uintptr_t addr, size_t bytes, vms_handle h) {
    return counted(a, a->be->ops->map(a->be, addr, bytes, h), &a->st.backend_map, 1);
}

vms_status bk_unmap(vms_allocator *a, uintptr_t addr, size_t bytes) {
    return counted(a, a->be->ops->unmap(a->be, addr, bytes), &a->st.backend_unmap, 1);
}

vms_status bk_set_access(vms_allocator *a, uintptr_t addr, size_t bytes, size_t handles) {
    return counted(a, a->be->ops->set_access(a->be, addr, bytes), &a->st.backend_set_access,
                   handles);
}
