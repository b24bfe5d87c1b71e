/* The fault-injecting wrapper backend (fault_backend.h): a vms_backend_ops table whose every
 * entry counts the call, decides under the wrapper's mutex whether this call is the one to
 * fail, and otherwise forwards to the inner backend and updates the ledger of what the inner
 * backend holds. An injected failure never reaches the inner backend, so it is exactly a driver
 * that refused: nothing was created, mapped or freed. Locking: one mutex per wrapper. */
#include "fault_backend.h"

#include <pthread.h>
#include <stdlib.h>

#include "backend/backend.h"

typedef struct fault_backend {
    vms_backend base;
    vms_backend_ops ops;
    vms_backend *inner;
    pthread_mutex_t mu;
    uint64_t calls[FAULT_KINDS];
    uint64_t injected;
    fault_kind first_kind, last_kind; /* first since fault_arm, and last */
    /* armed fault: calls of the kinds in mask are numbered from 1 since fault_arm (seen);
     * those numbered in [first, first + count) fail */
    unsigned mask;
    uint64_t seen, first, count;
    vms_status status;
    fault_ledger ledger;
} fault_backend;

static const char *const kind_names[FAULT_KINDS] = {
    "granularity", "mem_info",   "create",      "release",      "reserve",
    "va_free",     "map",        "unmap",       "set_access",   "event_record",
    "event_query", "event_sync", "device_sync", "stream_check",
};

const char *fault_kind_name(fault_kind k) {
    return (unsigned)k < FAULT_KINDS ? kind_names[k] : "none";
}

static fault_backend *fb_of(const vms_backend *b) {
    return (fault_backend *)b;
}

/* Counts a call of kind k; returns VMS_OK to forward it, or the status to fail it with. */
static vms_status gate(fault_backend *f, fault_kind k) {
    vms_status s = VMS_OK;
    pthread_mutex_lock(&f->mu);
    f->calls[k]++;
    if (f->mask & FAULT_BIT(k)) {
        uint64_t n = ++f->seen;
        if (n >= f->first && n - f->first < f->count) {
            s = f->status;
            f->injected++;
            if (f->first_kind == FAULT_KINDS) f->first_kind = k;
            f->last_kind = k;
        }
    }
    pthread_mutex_unlock(&f->mu);
    if (s != VMS_OK) backend_set_error("fault: injected failure of %s", kind_names[k]);
    return s;
}

static void ledger_add(fault_backend *f, int64_t *field, int64_t d) {
    pthread_mutex_lock(&f->mu);
    *field += d;
    pthread_mutex_unlock(&f->mu);
}

static vms_status f_granularity(vms_backend *b, size_t *bytes) {
    fault_backend *f = fb_of(b);
    vms_status s = gate(f, FAULT_GRANULARITY);
    return s != VMS_OK ? s : f->inner->ops->granularity(f->inner, bytes);
}

static vms_status f_mem_info(vms_backend *b, size_t *free_bytes, size_t *total_bytes) {
    fault_backend *f = fb_of(b);
    vms_status s = gate(f, FAULT_MEM_INFO);
    return s != VMS_OK ? s : f->inner->ops->mem_info(f->inner, free_bytes, total_bytes);
}

static vms_status f_chunk_create(vms_backend *b, size_t bytes, vms_handle *out) {
    fault_backend *f = fb_of(b);
    vms_status s = gate(f, FAULT_CREATE);
    if (s == VMS_OK) s = f->inner->ops->chunk_create(f->inner, bytes, out);
    if (s == VMS_OK) ledger_add(f, &f->ledger.chunks, 1);
    return s;
}

static vms_status f_chunk_release(vms_backend *b, vms_handle h) {
    fault_backend *f = fb_of(b);
    vms_status s = gate(f, FAULT_RELEASE);
    if (s == VMS_OK) s = f->inner->ops->chunk_release(f->inner, h);
    if (s == VMS_OK) ledger_add(f, &f->ledger.chunks, -1);
    return s;
}

static vms_status f_va_reserve(vms_backend *b, size_t bytes, size_t align_bytes, uintptr_t *out) {
    fault_backend *f = fb_of(b);
    vms_status s = gate(f, FAULT_RESERVE);
    if (s == VMS_OK) s = f->inner->ops->va_reserve(f->inner, bytes, align_bytes, out);
    if (s == VMS_OK) ledger_add(f, &f->ledger.reservations, 1);
    return s;
}

static vms_status f_va_free(vms_backend *b, uintptr_t addr, size_t bytes) {
    fault_backend *f = fb_of(b);
    vms_status s = gate(f, FAULT_VA_FREE);
    if (s == VMS_OK) s = f->inner->ops->va_free(f->inner, addr, bytes);
    if (s == VMS_OK) ledger_add(f, &f->ledger.reservations, -1);
    return s;
}

static vms_status f_map(vms_backend *b, uintptr_t addr, size_t bytes, vms_handle h) {
    fault_backend *f = fb_of(b);
    vms_status s = gate(f, FAULT_MAP);
    if (s == VMS_OK) s = f->inner->ops->map(f->inner, addr, bytes, h);
    if (s == VMS_OK) ledger_add(f, &f->ledger.mappings, 1);
    return s;
}

static vms_status f_unmap(vms_backend *b, uintptr_t addr, size_t bytes) {
    fault_backend *f = fb_of(b);
    vms_status s = gate(f, FAULT_UNMAP);
    if (s == VMS_OK) s = f->inner->ops->unmap(f->inner, addr, bytes);
    if (s == VMS_OK) ledger_add(f, &f->ledger.mappings, -1);
    return s;
}

static vms_status f_set_access(vms_backend *b, uintptr_t addr, size_t bytes) {
    fault_backend *f = fb_of(b);
    vms_status s = gate(f, FAULT_SET_ACCESS);
    return s != VMS_OK ? s : f->inner->ops->set_access(f->inner, addr, bytes);
}

static vms_status f_event_record(vms_backend *b, vms_stream stream, vms_event *out) {
    fault_backend *f = fb_of(b);
    vms_status s = gate(f, FAULT_EVENT_RECORD);
    if (s == VMS_OK) s = f->inner->ops->event_record(f->inner, stream, out);
    if (s == VMS_OK) ledger_add(f, &f->ledger.events, 1);
    return s;
}

static vms_status f_event_query(vms_backend *b, vms_event ev, bool *done) {
    fault_backend *f = fb_of(b);
    vms_status s = gate(f, FAULT_EVENT_QUERY);
    return s != VMS_OK ? s : f->inner->ops->event_query(f->inner, ev, done);
}

static vms_status f_event_sync(vms_backend *b, vms_event ev) {
    fault_backend *f = fb_of(b);
    vms_status s = gate(f, FAULT_EVENT_SYNC);
    return s != VMS_OK ? s : f->inner->ops->event_sync(f->inner, ev);
}

static vms_status f_device_sync(vms_backend *b) {
    fault_backend *f = fb_of(b);
    vms_status s = gate(f, FAULT_DEVICE_SYNC);
    return s != VMS_OK ? s : f->inner->ops->device_sync(f->inner);
}

static void f_event_destroy(vms_backend *b, vms_event ev) {
    fault_backend *f = fb_of(b);
    if (ev) ledger_add(f, &f->ledger.events, -1);
    f->inner->ops->event_destroy(f->inner, ev);
}

static vms_status f_stream_check(vms_backend *b, vms_stream stream) {
    fault_backend *f = fb_of(b);
    vms_status s = gate(f, FAULT_STREAM_CHECK);
    return s != VMS_OK ? s : f->inner->ops->stream_check(f->inner, stream);
}

static vms_status f_stream_hold(vms_backend *b, vms_stream stream, int held) {
    fault_backend *f = fb_of(b);
    if (!f->inner->ops->stream_hold) return VMS_EUNSUPPORTED;
    return f->inner->ops->stream_hold(f->inner, stream, held);
}

static vms_status f_counters(const vms_backend *b, vms_backend_counters *out) {
    const fault_backend *f = fb_of(b);
    return vms_backend_counters_get(f->inner, out);
}

static void f_destroy(vms_backend *b) {
    fault_backend *f = fb_of(b);
    vms_backend_destroy(f->inner);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

vms_status fault_backend_create(vms_backend *inner, vms_backend **out) {
    if (!inner || !out) return VMS_EINVAL;
    fault_backend *f = calloc(1, sizeof *f);
    if (!f) return VMS_ENOMEM_HOST;
    if (pthread_mutex_init(&f->mu, NULL) != 0) {
        free(f);
        return VMS_ENOMEM_HOST;
    }
    f->inner = inner;
    f->first_kind = f->last_kind = FAULT_KINDS;
    f->ops = (vms_backend_ops){
        .name = inner->ops->name, /* the core may look at the name: keep the inner one */
        .granularity = f_granularity,
        .mem_info = f_mem_info,
        .chunk_create = f_chunk_create,
        .chunk_release = f_chunk_release,
        .va_reserve = f_va_reserve,
        .va_free = f_va_free,
        .map = f_map,
        .unmap = f_unmap,
        .set_access = f_set_access,
        .event_record = f_event_record,
        .event_query = f_event_query,
        .event_sync = f_event_sync,
        .event_destroy = f_event_destroy,
        /* absent where the inner backend has none, so the core takes the same path */
        .device_sync = inner->ops->device_sync ? f_device_sync : NULL,
        .stream_check = f_stream_check,
        .stream_hold = f_stream_hold,
        .counters = f_counters,
        .destroy = f_destroy,
    };
    f->base.ops = &f->ops;
    *out = &f->base;
    return VMS_OK;
}

void fault_arm(vms_backend *fb, unsigned mask, uint64_t k, uint64_t count, vms_status status) {
    fault_backend *f = fb_of(fb);
    pthread_mutex_lock(&f->mu);
    f->mask = mask;
    f->seen = 0;
    f->first = k;
    f->count = count;
    f->status = status;
    f->first_kind = FAULT_KINDS;
    pthread_mutex_unlock(&f->mu);
}

void fault_disarm(vms_backend *fb) {
    fault_backend *f = fb_of(fb);
    pthread_mutex_lock(&f->mu);
    f->mask = 0;
    f->count = 0;
    pthread_mutex_unlock(&f->mu);
}

uint64_t fault_calls(vms_backend *fb, unsigned mask) {
    fault_backend *f = fb_of(fb);
    uint64_t n = 0;
    pthread_mutex_lock(&f->mu);
    for (int k = 0; k < FAULT_KINDS; k++)
        if (mask & FAULT_BIT(k)) n += f->calls[k];
    pthread_mutex_unlock(&f->mu);
    return n;
}

uint64_t fault_injected(vms_backend *fb) {
    fault_backend *f = fb_of(fb);
    pthread_mutex_lock(&f->mu);
    uint64_t n = f->injected;
    pthread_mutex_unlock(&f->mu);
    return n;
}

fault_kind fault_last_kind(vms_backend *fb) {
    fault_backend *f = fb_of(fb);
    pthread_mutex_lock(&f->mu);
    fault_kind k = f->last_kind;
    pthread_mutex_unlock(&f->mu);
    return k;
}

fault_kind fault_first_kind(vms_backend *fb) {
    fault_backend *f = fb_of(fb);
    pthread_mutex_lock(&f->mu);
    fault_kind k = f->first_kind;
    pthread_mutex_unlock(&f->mu);
    return k;
}

fault_ledger fault_ledger_get(vms_backend *fb) {
    fault_backend *f = fb_of(fb);
    pthread_mutex_lock(&f->mu);
    fault_ledger l = f->ledger;
    pthread_mutex_unlock(&f->mu);
    return l;
}

int fault_ledger_empty(vms_backend *fb) {
    fault_ledger l = fault_ledger_get(fb);
    return l.chunks == 0 && l.reservations == 0 && l.mappings == 0 && l.events == 0;
}
