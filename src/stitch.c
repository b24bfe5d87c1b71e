/* Stitching: serving a request that no free block can hold from free chunks scattered over
 * the arenas, by mapping them side by side into a new virtual range; the cache of stitched
 * ranges; and their garbage collection.
 *
 * A stitched range owns its chunks while any block in it is live. When its last block is freed
 * the chunks go back to their home arenas (no backend call) and the range stays mapped as an
 * idle cache entry: a later request of a similar size reuses it, again without a backend call,
 * if all its chunks are still free. Idle ranges are unmapped oldest first when the cache passes
 * its thresholds, and only once the streams that used them have finished (events), because
 * unmapping memory that a queued kernel still reads kills the CUDA context.
 * Callers hold the allocator lock. */
#include <stdlib.h>

#include "internal.h"

static bool chunk_usable(const vms_allocator *a, const chunk *c, int stream) {
    return tags_usable(a, c->stream, c->multi_stream, c->freed_seq, stream);
}

static void lru_remove(vms_allocator *a, range *r) {
    if (!r->in_lru) return;
    if (r->lru_prev) r->lru_prev->lru_next = r->lru_next;
    else a->lru_head = r->lru_next;
    if (r->lru_next) r->lru_next->lru_prev = r->lru_prev;
    else a->lru_tail = r->lru_prev;
    r->lru_prev = r->lru_next = NULL;
    r->in_lru = false;
    a->lru_count--;
    a->lru_bytes -= r->size_bytes;
    STAT_ADD(a, stitched_cached_bytes, -(int64_t)r->size_bytes);
}

static void lru_push(vms_allocator *a, range *r) {
    r->lru_prev = a->lru_tail;
    r->lru_next = NULL;
    if (a->lru_tail) a->lru_tail->lru_next = r;
    else a->lru_head = r;
    a->lru_tail = r;
    r->in_lru = true;
    a->lru_count++;
    a->lru_bytes += r->size_bytes;
    STAT_ADD(a, stitched_cached_bytes, (int64_t)r->size_bytes);
}

void stitched_on_busy(vms_allocator *a, range *r) {
    lru_remove(a, r);
}

/* How many slots of r from i on form a run that chunks_transfer can move at once: chunks side
 * by side in r (consecutive slots) and in the range on the other side, which is their home
 * arena (home: r owns them and they go home) or the range that owns them now. */
static size_t run_len(const range *r, size_t i, bool home) {
    const chunk *c = r->slots[i];
    size_t n = 1;
    for (; i + n < r->nslots; n++) {
        const chunk *p = r->slots[i + n - 1], *q = r->slots[i + n];
        bool next = home ? q->owner == r && q->home == c->home &&
                               q->home_addr == p->home_addr + p->size_bytes
                         : q->owner == c->owner && q->owner_addr == p->owner_addr + p->size_bytes;
        if (!next) break;
    }
    return n;
}

/* The last live block of r was freed: its chunks go home, r becomes an idle cache entry. */
void stitched_on_idle(vms_allocator *a, range *r) {
    /* Out of host memory, a transfer fails: that chunk simply stays owned here, still free
     * and usable. */
    for (size_t i = 0, n; i < r->nslots; i += n) {
        chunk *c = r->slots[i];
        n = 1;
        if (c->owner != r) continue;
        n = run_len(r, i, true); /* the same home arena: two arenas' reservations may adjoin */
        (void)chunks_transfer(a, r->slots + i, n, c->home, c->home_addr);
    }
    r->idle_seq = a->free_seq;
    lru_push(a, r);
    gc_run(a, false);
}

static void range_link(vms_allocator *a, range *r) {
    r->all_prev = NULL;
    r->all_next = a->stitched;
    if (a->stitched) a->stitched->all_prev = r;
    a->stitched = r;
    STAT_ADD(a, stitched_ranges, 1);
}

/* Unmaps every chunk of stitched range r, frees its addresses and deletes it. The chunks must
 * not be owned by r, and the device must be done with r. If an unmap fails, the slots already
 * unmapped stay so (their pages cleared, the chunk no longer referenced) and r stays in the
 * cache, to be finished by a later GC. */
vms_status range_unmap_all(vms_allocator *a, range *r) {
    for (size_t i = 0; i < r->nslots; i++)
        if (r->slots[i] && r->slots[i]->owner == r) return VMS_EINVAL;
    uintptr_t at = r->base;
    for (size_t i = 0; i < r->nslots; i++) {
        chunk *c = r->slots[i];
        size_t sz = r->slot_bytes[i];
        if (c) {
            vms_status s = bk_unmap(a, at, sz);
            if (s != VMS_OK) return s;
            range_pages_set(a, r, at, sz, NULL);
            r->slots[i] = NULL;
            c->stitch_refs--;
        }
        at += sz;
    }
    bk_va_free(a, r->base, r->size_bytes); /* a failure is retried later: nothing leaks */
    stitched_forget(a, r);
    return VMS_OK;
}

/* Drops the record of stitched range r, whatever became of its mappings: out of the cache
 * and of the list of stitched ranges, then deleted. */
void stitched_forget(vms_allocator *a, range *r) {
    lru_remove(a, r);
    if (r->all_prev) r->all_prev->all_next = r->all_next;
    else a->stitched = r->all_next;
    if (r->all_next) r->all_next->all_prev = r->all_prev;
    STAT_ADD(a, stitched_ranges, -1);
    range_delete(a, r);
}

/* Thresholds of 0 mean "no limit". */
static bool gc_over(const vms_allocator *a) {
    return (a->cfg.gc_threshold_count && a->lru_count > a->cfg.gc_threshold_count) ||
           (a->cfg.gc_threshold_bytes && a->lru_bytes > a->cfg.gc_threshold_bytes);
}

/* Unmaps idle ranges, oldest first, while the cache is over its thresholds (or all of them if
 * force). A range whose streams may still be using it is never unmapped: without force it stops
 * the sweep (its event is checked again at the next call); with force it is skipped. */
vms_status gc_run(vms_allocator *a, bool force) {
    if (a->n_orphans) orphans_retry(a); /* first: a reservation cannot go while mapped */
    if (a->deferred_n) bk_va_free_retry(a);
    if (!force && !gc_over(a)) return VMS_OK;
    a->st.gc_runs++;
    bool refreshed = false;
    range *next;
    for (range *r = a->lru_head; r; r = next) {
        next = r->lru_next;
        if (!force && !gc_over(a)) break;
        if (!range_settled(a, r)) {
            if (!refreshed) {
                streams_refresh(a);
                refreshed = true;
            }
            if (!range_settled(a, r)) {
                a->st.event_waits++;
                if (!force) break;
                continue;
            }
        }
        vms_status s = range_unmap_all(a, r);
        if (s != VMS_OK) return s;
        a->st.gc_ranges_freed++;
    }
    return VMS_OK;
}

/* An idle cached range of size in [size, size * reuse_limit] whose chunks are all free and
 * usable on stream; the smallest such. */
static range *reuse_find(vms_allocator *a, pool_kind pool, size_t size_bytes, int stream) {
    range *best = NULL;
    double lim = (double)size_bytes * a->cfg.reuse_limit;
    for (range *r = a->lru_head; r; r = r->lru_next) {
        if (r->pool != pool || r->size_bytes < size_bytes || (double)r->size_bytes > lim) continue;
        if (best && r->size_bytes >= best->size_bytes) continue;
        bool ok = true;
        for (size_t i = 0; i < r->nslots && ok; i++) {
            chunk *c = r->slots[i];
            ok = c && c->busy_bytes == 0 && chunk_usable(a, c, stream);
        }
        if (ok) best = r;
    }
    return best;
}

static vms_status take_ownership(vms_allocator *a, range *r) {
    uintptr_t at = r->base;
    for (size_t i = 0, n; i < r->nslots; i += n) {
        n = run_len(r, i, false);
        vms_status s = chunks_transfer(a, r->slots + i, n, r, at);
        if (s != VMS_OK) return s;
        at = r->slots[i + n - 1]->owner_addr + r->slots[i + n - 1]->size_bytes; /* now in r */
    }
    return VMS_OK;
}

static int cmp_chunk_desc(const void *x, const void *y) {
    const chunk *c1 = *(chunk *const *)x, *c2 = *(chunk *const *)y;
    if (c1->size_bytes != c2->size_bytes) return c1->size_bytes < c2->size_bytes ? 1 : -1;
    return c1->home_addr < c2->home_addr ? -1 : c1->home_addr > c2->home_addr;
}

/* Chooses free chunks covering size_bytes with little overshoot and few handles: repeatedly the
 * smallest chunk that covers what is left, else the largest one. Returns the count chosen (0 if
 * the free chunks cannot cover the request). */
static size_t choose_chunks(vms_allocator *a, size_t size_bytes, int stream, chunk ***out,
                            size_t *free_total) {
    size_t n = 0, cap = 64;
    chunk **cand = malloc(cap * sizeof *cand);
    *out = NULL;
    *free_total = 0;
    if (!cand) return 0;
    /* A scan of every chunk: stitching is rare, and the hot path then keeps no list. */
    for (chunk *c = a->all_chunks; c; c = c->all_next) {
        if (c->busy_bytes || !chunk_usable(a, c, stream)) continue;
        if (n == cap) {
            chunk **nc = realloc(cand, 2 * cap * sizeof *cand);
            if (!nc) break;
            cand = nc;
            cap *= 2;
        }
        cand[n++] = c;
        *free_total += c->size_bytes;
    }
    if (*free_total < size_bytes) {
        free(cand);
        return 0;
    }
    qsort(cand, n, sizeof *cand, cmp_chunk_desc);
    /* The chosen ones end up at the front of cand. Every pick but the last is the largest left
     * (cand[chosen], as sizes descend); the smallest chunk that covers the rest ends it. */
    size_t chosen = 0, left = size_bytes;
    while (left > 0) {
        size_t pick = chosen;
        for (size_t i = n; i-- > chosen;) {
            if (cand[i]->size_bytes >= left) {
                pick = i;
                break;
            }
        }
        chunk *c = cand[pick];
        cand[pick] = cand[chosen];
        cand[chosen++] = c;
        left = c->size_bytes >= left ? 0 : left - c->size_bytes;
    }
    *out = cand;
    return chosen;
}

/* Builds the bookkeeping of a stitched range at base: one LENT block per slot, so ownership
 * can move chunk by chunk. Host memory only; NULL if it runs out. */
static range *stitch_range_new(vms_allocator *a, pool_kind pool, chunk **chosen, size_t n, uintptr_t base,
                               size_t total) {
    range *r = range_new(a, RANGE_STITCHED, pool, base, total);
    if (!r) return NULL;
    r->slots = malloc(n * sizeof *r->slots);
    r->slot_bytes = malloc(n * sizeof *r->slot_bytes);
    if (!r->slots || !r->slot_bytes) {
        range_delete(a, r);
        return NULL;
    }
    r->nslots = n;
    r->first->size_bytes = chosen[0]->size_bytes;
    block *prev = r->first;
    uintptr_t at = base + chosen[0]->size_bytes;
    for (size_t i = 1; i < n; i++) {
        block *b = block_new(a, r, at, chosen[i]->size_bytes, BLOCK_LENT);
        if (!b) {
            range_delete(a, r);
            return NULL;
        }
        prev->next = b;
        b->prev = prev;
        prev = b;
        at += chosen[i]->size_bytes;
    }
    at = base;
    for (size_t i = 0; i < n; i++) {
        chunk *c = chosen[i];
        r->slots[i] = c;
        r->slot_bytes[i] = c->size_bytes;
        range_pages_set(a, r, at, c->size_bytes, c);
        at += c->size_bytes;
    }
    return r;
}

/* Maps the chosen chunks side by side into a new range; all or nothing. */
static vms_status stitch_build(vms_allocator *a, pool_kind pool, chunk **chosen, size_t n, range **out) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += chosen[i]->size_bytes;
    uintptr_t base;
    vms_status s = bk_reserve(a, total, &base);
    if (s != VMS_OK) return s;
    range *r = stitch_range_new(a, pool, chosen, n, base, total);
    if (!r) {
        bk_va_free(a, base, total);
        return VMS_ENOMEM_HOST;
    }
    size_t mapped = 0;
    uintptr_t at = base;
    for (; mapped < n; mapped++) {
        s = bk_map(a, at, chosen[mapped]->size_bytes, chosen[mapped]->handle);
        if (s != VMS_OK) break;
        at += chosen[mapped]->size_bytes;
    }
    if (s == VMS_OK) s = bk_set_access(a, base, total, n);
    if (s != VMS_OK) {
        at = base;
        for (size_t i = 0; i < mapped; i++) {
            /* An alias that will not go away is remembered and retried (as an orphan that
             * holds no handle): the chunk cannot be released while it is mapped. */
            if (bk_undo_unmap(a, at, chosen[i]->size_bytes) != VMS_OK)
                orphan_note_mapping(a, at, chosen[i]->size_bytes);
            at += chosen[i]->size_bytes;
        }
        bk_va_free(a, base, total);
        range_delete(a, r);
        return s;
    }
    for (size_t i = 0; i < n; i++) chosen[i]->stitch_refs++;
    range_link(a, r);
    *out = r;
    return VMS_OK;
}

/* Serves size_bytes by stitching: reuse of an idle cached range first, else a new range from
 * free chunks. *out is a FREE block of at least size_bytes, usable on stream. VMS_ENOMEM if the
 * free chunks cannot cover the request. */
vms_status stitch_for(vms_allocator *a, pool_kind pool, size_t size_bytes, int stream, bool allow_grow,
                      block **out) {
    range *r = reuse_find(a, pool, size_bytes, stream);
    if (r) {
        lru_remove(a, r);
        vms_status s = take_ownership(a, r);
        if (s != VMS_OK) return s;
        r->stream_mask |= 1ull << stream;
        a->st.stitch_reuses++;
        *out = r->first;
        return VMS_OK;
    }
    chunk **chosen;
    size_t free_total;
    size_t n = choose_chunks(a, size_bytes, stream, &chosen, &free_total);
    if (n == 0 && allow_grow && free_total > 0) {
        /* The free chunks fall short: if adding new chunks to them reserves less than growing
         * the arena after its best free tail would, create just the shortfall and stitch. */
        size_t short_bytes = round_up(size_bytes - free_total, a->gran_bytes);
        size_t grow_bytes = grow_estimate(a, pool, size_bytes, stream);
        if (grow_bytes && short_bytes >= grow_bytes) return VMS_ENOMEM;
        vms_status s = grow_loose(a, pool, short_bytes, stream);
        if (s != VMS_OK) return s;
        n = choose_chunks(a, size_bytes, stream, &chosen, &free_total);
    }
    if (n == 0) {
        free(chosen);
        return VMS_ENOMEM;
    }
    vms_status s = stitch_build(a, pool, chosen, n, &r);
    free(chosen);
    if (s != VMS_OK) return s;
    s = take_ownership(a, r);
    if (s != VMS_OK) return s;
    r->stream_mask = 1ull << stream;
    a->st.stitches++;
    *out = r->first;
    gc_run(a, false);
    return VMS_OK;
}

