/* The allocator object and the public entry points: create/destroy, malloc/free, record_stream,
 * empty_cache, the memory limit, and the out-of-memory ladder. Each entry takes the allocator
 * mutex once and calls the other core files with it held; nothing here blocks on the device
 * except empty_cache, the OOM ladder and destroy, which wait for stream events so that they
 * never unmap memory a queued kernel may still use.
 *
 * The path of a request: round to 512 B; best fit among the pool's free blocks usable on the
 * stream (no backend call); on a miss, finish pending frees and settled streams and look again;
 * then, for large requests, reuse an idle stitched range or stitch free chunks if they cover
 * the request; else grow the arena by the missing bytes; and if even that fails, collect every
 * idle stitched range and free chunk and try once more before reporting VMS_ENOMEM. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define GiB_D (1024.0 * 1024.0 * 1024.0)

static void checked(vms_allocator *a, const char *where) {
    if (a->cfg.check_level < 1) return;
    size_t v = check_locked(a);
    if (v) log_msg(1, a->cfg.log_level, "invariant check after %s: %zu violations", where, v);
}

vms_status vms_allocator_create(const vms_config *cfg, vms_backend *be, int device,
                                vms_allocator **out) {
    if (!be || !out || !be->ops) return VMS_EINVAL;
    *out = NULL;
    size_t gran = 0, free_b = 0, total_b = 0;
    vms_status s = be->ops->granularity(be, &gran);
    if (s != VMS_OK) return s;
    if (gran == 0 || (gran & (gran - 1))) return VMS_EINVAL;
    s = be->ops->mem_info(be, &free_b, &total_b);
    if (s != VMS_OK) return s;
    vms_allocator *a = calloc(1, sizeof *a);
    if (!a) return VMS_ENOMEM_HOST;
    a->be = be;
    a->device = device;
    a->gran_bytes = gran;
    config_resolve_into(cfg, gran, &a->cfg);
    if (pthread_mutex_init(&a->lock, NULL) != 0 || ptr_map_init(&a->live) != 0) {
        free(a);
        return VMS_ENOMEM_HOST;
    }
    /* Each arena spans twice the device so that holes left by released chunks never block
     * growth; addresses are free, only the page table (8 B per granule) costs host memory. */
    size_t arena_bytes = round_up(total_b * 2 < total_b ? total_b : total_b * 2, gran);
    for (int p = 0; p < POOL_COUNT && s == VMS_OK; p++) {
        uintptr_t base;
        s = bk_reserve(a, arena_bytes, &base);
        if (s != VMS_OK) break;
        a->arena[p] = range_new(a, RANGE_ARENA, (pool_kind)p, base, arena_bytes);
        if (!a->arena[p]) {
            bk_va_free(a, base, arena_bytes);
            s = VMS_ENOMEM_HOST;
        }
    }
    if (s == VMS_OK && stream_index(a, NULL) < 0) s = VMS_ENOMEM_HOST;
    if (s != VMS_OK) {
        vms_allocator_destroy(a);
        return s;
    }
    *out = a;
    return VMS_OK;
}

void vms_allocator_destroy(vms_allocator *a) {
    if (!a) return;
    pthread_mutex_lock(&a->lock);
    if (a->all_chunks || a->stitched) streams_sync_all(a);
    for (int i = 0; i < a->nstreams; i++)
        if (a->streams[i].inflight) a->be->ops->event_destroy(a->be, a->streams[i].inflight);
    for (block *b = a->pending, *n; b; b = n) {
        n = b->pending_next;
        for (pending_event *e = b->events, *en; e; e = en) {
            en = e->next;
            a->be->ops->event_destroy(a->be, e->ev);
            free(e);
        }
        b->events = NULL;
    }
    /* Everything goes, live or not: chunks are handed home without block bookkeeping. */
    while (a->stitched) {
        range *r = a->stitched;
        for (size_t i = 0; i < r->nslots; i++) {
            chunk *c = r->slots[i];
            if (c && c->owner == r) {
                c->owner = c->home;
                c->owner_addr = c->home_addr;
            }
        }
        /* A failed call is tried once more (a transient error leaks nothing); if the backend
         * still refuses, the record is dropped: the allocator is going away. */
        if (range_unmap_all(a, r) != VMS_OK && range_unmap_all(a, r) != VMS_OK)
            stitched_forget(a, r);
    }
    for (chunk *c = a->all_chunks, *n; c; c = n) {
        n = c->all_next;
        bk_undo_unmap(a, c->home_addr, c->size_bytes); /* tried twice, as an undo step */
        bk_undo_release(a, c->handle, c->size_bytes);
        free(c);
    }
    orphans_retry(a);
    orphans_retry(a);
    bk_va_free_retry(a);
    for (int p = 0; p < POOL_COUNT; p++) {
        if (!a->arena[p]) continue;
        bk_va_free(a, a->arena[p]->base, a->arena[p]->size_bytes);
        range_delete(a, a->arena[p]);
    }
    bk_va_free_retry(a);
    for (block *b = a->spare_blocks, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    ptr_map_free(&a->live);
    pthread_mutex_unlock(&a->lock);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

/* Smallest usable FREE block of the pool with at least size_bytes. */
typedef struct fit_ctx {
    const vms_allocator *a;
    int stream;
} fit_ctx;

static bool fit_ok(const void *ctx, const block *b) {
    const fit_ctx *f = ctx;
    return block_usable(f->a, b, f->stream);
}

static block *best_fit(vms_allocator *a, pool_kind pool, size_t size_bytes, int stream) {
    block *root = a->index_root[pool];
    if (pool == POOL_SMALL) {
        fit_ctx f = {a, stream};
        return addr_index_first_fit(root, size_bytes, fit_ok, &f);
    }
    block *b = index_lower_bound(root, size_bytes, 0);
    for (int tries = 0; b && tries < 64; tries++) {
        if (block_usable(a, b, stream)) return b;
        b = index_lower_bound(root, b->size_bytes, b->addr + 1);
    }
    return NULL;
}

static vms_status miss(vms_allocator *a, pool_kind pool, size_t size_bytes, int stream, block **out,
                       uintptr_t *take_at) {
    bool can_stitch = pool != POOL_SMALL && a->cfg.stitch_enable && size_bytes >= a->cfg.stitch_min_bytes;
    vms_status s;
    if (can_stitch && a->cfg.stitch_when == VMS_STITCH_BEFORE_GROW) {
        s = stitch_for(a, pool, size_bytes, stream, true, out);
        if (s == VMS_OK) *take_at = (*out)->addr;
        if (s != VMS_ENOMEM) return s;
    }
    s = grow_for(a, pool, size_bytes, stream, out, take_at);
    if (s == VMS_ENOMEM && can_stitch && a->cfg.stitch_when == VMS_STITCH_ON_GROW_FAIL) {
        s = stitch_for(a, pool, size_bytes, stream, false, out);
        if (s == VMS_OK) *take_at = (*out)->addr;
    }
    return s;
}

static vms_status alloc_locked(vms_allocator *a, size_t rounded, int stream, block **out) {
    pool_kind pool = rounded <= a->cfg.small_request_bytes ? POOL_SMALL : POOL_LARGE;
    block *b = best_fit(a, pool, rounded, stream);
    if (!b && (a->pending || a->nstreams > 1)) {
        if (a->pending) pending_poll(a);
        if (a->nstreams > 1) streams_refresh(a);
        b = best_fit(a, pool, rounded, stream);
    }
    uintptr_t at = b ? b->addr : 0;
    if (!b) {
        vms_status s = miss(a, pool, rounded, stream, &b, &at);
        if (s != VMS_OK) return s;
    }
    block *got = block_take(a, b, at, rounded);
    if (!got) return VMS_ENOMEM_HOST;
    *out = got;
    return VMS_OK;
}

static size_t largest_free(vms_allocator *a) {
    size_t best = 0;
    for (int p = 0; p < POOL_COUNT; p++) {
        block *t = a->index_root[p];
        if (p == POOL_SMALL) {
            if (t && t->sub_max_bytes > best) best = t->sub_max_bytes;
            continue;
        }
        while (t && t->right) t = t->right;
        if (t && t->size_bytes > best) best = t->size_bytes;
    }
    return best;
}

static void oom_report_make(vms_allocator *a, size_t size, size_t rounded, vms_status s) {
    const vms_stats *st = &a->st;
    char limit[64] = "none";
    if (a->cfg.memory_limit_bytes)
        snprintf(limit, sizeof limit, "%.3f GiB", a->cfg.memory_limit_bytes / GiB_D);
    const char *why = s == VMS_ENOMEM_HOST ? "host memory for bookkeeping ran out"
                      : a->cfg.memory_limit_bytes &&
                              st->reserved_bytes_current + rounded > a->cfg.memory_limit_bytes
                          ? "the memory limit would be exceeded"
                          : "the device has no more free memory";
    oom_report_set("vmstitch could not allocate %zu bytes (%.3f GiB, rounded %zu) on device %d: %s. "
                   "Reserved %.3f GiB (limit %s), live allocated %.3f GiB, requested %.3f GiB, "
                   "largest free block %.3f GiB, cached (reserved but free) %.3f GiB, idle stitched "
                   "ranges %zu (%.3f GiB virtual), chunks %llu. Backend: %s",
                   size, size / GiB_D, rounded, a->device, why, st->reserved_bytes_current / GiB_D,
                   limit, st->allocated_bytes_current / GiB_D, st->requested_bytes_current / GiB_D,
                   largest_free(a) / GiB_D, st->cached_bytes_current / GiB_D, a->lru_count,
                   a->lru_bytes / GiB_D, (unsigned long long)st->chunks_current,
                   vms_last_error()[0] ? vms_last_error() : "no error");
}

/* Collects everything that can be given back: pending frees, idle stitched ranges, free
 * chunks. Waits for the streams first, so nothing a kernel still uses is unmapped. */
static void collect_all(vms_allocator *a) {
    streams_sync_all(a); /* on failure, what stays unsettled is skipped below */
    if (a->pending) pending_poll(a);
    gc_run(a, true);
    chunk_release_free(a);
}

vms_status vms_malloc(vms_allocator *a, size_t size, vms_stream stream, void **ptr) {
    if (!a || !ptr) return VMS_EINVAL;
    *ptr = NULL;
    if (size == 0) return VMS_OK;
    if (size > ((size_t)1 << 62)) {
        oom_report_set("vmstitch could not allocate %zu bytes on device %d: the request is larger "
                       "than any device memory.", size, a->device);
        pthread_mutex_lock(&a->lock);
        a->st.ooms++;
        pthread_mutex_unlock(&a->lock);
        return VMS_ENOMEM;
    }
    vms_status s = a->be->ops->stream_check(a->be, stream);
    if (s != VMS_OK) return s;
    size_t rounded = round_up(size, VMS_ALIGN_BYTES);
    pthread_mutex_lock(&a->lock);
    int si = stream_index(a, stream);
    if (si < 0) {
        pthread_mutex_unlock(&a->lock);
        return VMS_EUNSUPPORTED;
    }
    block *b = NULL;
    s = alloc_locked(a, rounded, si, &b);
    if (s == VMS_ENOMEM || s == VMS_ENOMEM_HOST) {
        a->st.oom_retries++;
        collect_all(a);
        s = alloc_locked(a, rounded, si, &b);
    }
    if (s != VMS_OK) {
        if (s == VMS_ENOMEM || s == VMS_ENOMEM_HOST) {
            a->st.ooms++;
            oom_report_make(a, size, rounded, s);
        }
        checked(a, "failed malloc");
        pthread_mutex_unlock(&a->lock);
        return s;
    }
    b->stream = (uint16_t)si;
    b->requested_bytes = size;
    if (ptr_map_put(&a->live, b->addr, b) != 0) {
        /* cannot track it: give it back the way a free would (busy bytes, merge, a stitched
         * range's live count) */
        STAT_ADD(a, active_bytes, b->size_bytes);
        free_finish(a, b);
        pthread_mutex_unlock(&a->lock);
        return VMS_ENOMEM_HOST;
    }
    if (b->range->kind == RANGE_STITCHED) b->range->stream_mask |= 1ull << si;
    STAT_ADD(a, active_bytes, b->size_bytes);
    stats_live(a, b, +1);
    a->st.mallocs++;
    *ptr = (void *)b->addr;
    checked(a, "malloc");
    pthread_mutex_unlock(&a->lock);
    return VMS_OK;
}

/* Turns a freed (ALLOC or PENDING) block into a FREE one: stamps the free, updates the chunks
 * under it, merges, and retires a stitched range whose last block this was. */
void free_finish(vms_allocator *a, block *b) {
    range *r = b->range;
    b->freed_seq = ++a->free_seq;
    b->multi_stream = 0;
    a->streams[b->stream].last_free_seq = b->freed_seq;
    STAT_ADD(a, active_bytes, -(int64_t)b->size_bytes);
    chunk_busy_add(a, r, b->addr, b->size_bytes, b);
    block_set_free(a, b);
    if (r->kind == RANGE_STITCHED && --r->live_blocks == 0) stitched_on_idle(a, r);
}

static range *range_containing(vms_allocator *a, uintptr_t p) {
    for (int i = 0; i < POOL_COUNT; i++)
        if (a->arena[i] && p >= a->arena[i]->base && p < a->arena[i]->base + a->arena[i]->size_bytes)
            return a->arena[i];
    for (range *r = a->stitched; r; r = r->all_next)
        if (p >= r->base && p < r->base + r->size_bytes) return r;
    return NULL;
}

/* Why a pointer is not live: double free, interior pointer, or foreign. */
static vms_status not_live_status(vms_allocator *a, uintptr_t p) {
    range *r = range_containing(a, p);
    if (!r) return VMS_ENOTFOUND;
    block *b = range_block_at(r, p);
    /* Freed memory of a stitched range may have been handed back (LENT) since. */
    bool was_freed = b && (b->state == BLOCK_FREE || b->state == BLOCK_PENDING ||
                           (b->state == BLOCK_LENT && r->kind == RANGE_STITCHED));
    if (was_freed && p % VMS_ALIGN_BYTES == 0) return VMS_EDOUBLEFREE;
    return VMS_ENOTFOUND;
}

vms_status vms_free(vms_allocator *a, void *ptr) {
    if (!a) return VMS_EINVAL;
    if (!ptr) return VMS_OK;
    pthread_mutex_lock(&a->lock);
    block *b = ptr_map_del(&a->live, (uintptr_t)ptr);
    if (!b) {
        vms_status s = not_live_status(a, (uintptr_t)ptr);
        pthread_mutex_unlock(&a->lock);
        return s;
    }
    stats_live(a, b, -1);
    a->st.frees++;
    if (b->extra_streams) {
        /* Used on other streams too: reusable once an event on each of them has completed. */
        b->state = BLOCK_PENDING;
        for (int i = 0; i < a->nstreams; i++) {
            if (!(b->extra_streams >> i & 1)) continue;
            pending_event *e = malloc(sizeof *e);
            vms_event ev;
            if (!e || a->be->ops->event_record(a->be, a->streams[i].stream, &ev) != VMS_OK) {
                /* Cannot track this stream: the block waits for the next full sync. */
                free(e);
                b->needs_sync = 1;
                continue;
            }
            e->ev = ev;
            e->next = b->events;
            b->events = e;
        }
        b->pending_next = a->pending;
        a->pending = b;
        if (b->needs_sync) streams_sync_all(a);
    } else {
        free_finish(a, b);
    }
    checked(a, "free");
    pthread_mutex_unlock(&a->lock);
    return VMS_OK;
}

vms_status vms_record_stream(vms_allocator *a, void *ptr, vms_stream stream) {
    if (!a || !ptr) return VMS_EINVAL;
    pthread_mutex_lock(&a->lock);
    block *b = ptr_map_get(&a->live, (uintptr_t)ptr);
    vms_status s = VMS_OK;
    if (!b) {
        s = not_live_status(a, (uintptr_t)ptr);
    } else {
        int si = stream_index(a, stream);
        if (si < 0) {
            s = VMS_EUNSUPPORTED;
        } else if (si != b->stream) {
            b->extra_streams |= 1ull << si;
            if (b->range->kind == RANGE_STITCHED) b->range->stream_mask |= 1ull << si;
        }
    }
    pthread_mutex_unlock(&a->lock);
    return s;
}

vms_status vms_empty_cache(vms_allocator *a) {
    if (!a) return VMS_EINVAL;
    pthread_mutex_lock(&a->lock);
    a->st.empty_cache_calls++;
    collect_all(a);
    checked(a, "empty_cache");
    pthread_mutex_unlock(&a->lock);
    return VMS_OK;
}

vms_status vms_set_memory_limit(vms_allocator *a, size_t bytes) {
    if (!a) return VMS_EINVAL;
    pthread_mutex_lock(&a->lock);
    a->cfg.memory_limit_bytes = bytes;
    if (bytes && a->st.reserved_bytes_current > bytes) collect_all(a);
    pthread_mutex_unlock(&a->lock);
    return VMS_OK;
}

size_t vms_allocation_size(vms_allocator *a, const void *ptr) {
    if (!a || !ptr) return 0;
    pthread_mutex_lock(&a->lock);
    block *b = ptr_map_get(&a->live, (uintptr_t)ptr);
    size_t n = b ? b->requested_bytes : 0;
    pthread_mutex_unlock(&a->lock);
    return n;
}

size_t vms_check(vms_allocator *a) {
    if (!a) return 1;
    pthread_mutex_lock(&a->lock);
    size_t v = check_locked(a);
    pthread_mutex_unlock(&a->lock);
    return v;
}

/* Test hook (internal, never exported): plants the bug that every check must catch, a live
 * block sharing bytes with another live block. It hands out the last size_bytes of an existing
 * live block as a second "allocation" tracked only in the pointer map. */
vms_status test_plant_overlap(vms_allocator *a, size_t size_bytes, void **ptr) {
    size_t rounded = round_up(size_bytes, VMS_ALIGN_BYTES);
    pthread_mutex_lock(&a->lock);
    block *victim = NULL;
    for (size_t i = 0; i < a->live.cap && !victim; i++) {
        block *b = a->live.vals[i];
        if (a->live.keys[i] && b->size_bytes >= rounded + VMS_ALIGN_BYTES) victim = b;
    }
    block *fake = victim ? block_new(a, victim->range, victim->addr + victim->size_bytes - rounded,
                                     rounded, BLOCK_ALLOC)
                         : NULL;
    vms_status s = VMS_ENOMEM;
    if (fake && ptr_map_put(&a->live, fake->addr, fake) == 0) {
        fake->requested_bytes = size_bytes;
        *ptr = (void *)fake->addr;
        s = VMS_OK;
    }
    pthread_mutex_unlock(&a->lock);
    return s;
}
