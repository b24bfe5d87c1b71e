/* Growth and release of physical chunks in the arenas. Growth places new chunks in a hole of
 * the pool's arena right after the largest usable free block that borders one, so that the
 * request is served from that free tail plus only the missing bytes (the idea of expandable
 * segments, with physical chunks that stitching can later reuse anywhere). Release gives back
 * every chunk that holds nothing and is mapped only at home. Callers hold the allocator lock. */
#include <stdlib.h>

#include "internal.h"

typedef struct grow_plan {
    block *hole;        /* the new chunks go at its start */
    uintptr_t take_at;  /* where the request starts: the usable free tail, or the hole */
    size_t need_bytes;
} grow_plan;

static size_t chunk_bytes_for(vms_allocator *a, pool_kind pool, size_t need) {
    if (pool == POOL_SMALL) return round_up(need, a->cfg.small_chunk_bytes);
    need = round_up(need, a->gran_bytes);
    return need < a->cfg.large_chunk_min_bytes ? a->cfg.large_chunk_min_bytes : need;
}

/* Bytes that growth would add for a request of size_bytes (0 if the arena has no room). */
static size_t grow_plan_make(vms_allocator *a, pool_kind pool, size_t size_bytes, int stream,
                             grow_plan *p) {
    range *r = a->arena[pool];
    p->hole = NULL;
    p->need_bytes = 0;
    for (block *b = r->first; b; b = b->next) {
        if (b->state != BLOCK_HOLE || b->quarantine) continue;
        block *t = b->prev;
        size_t tail = (t && t->state == BLOCK_FREE && block_usable(a, t, stream)) ? t->size_bytes : 0;
        if (tail >= size_bytes) tail = 0;
        size_t need = chunk_bytes_for(a, pool, size_bytes - tail);
        if (need > b->size_bytes) continue;
        if (!p->hole || need < p->need_bytes) {
            p->hole = b;
            p->take_at = tail ? t->addr : b->addr;
            p->need_bytes = need;
        }
    }
    return p->need_bytes;
}

size_t grow_estimate(vms_allocator *a, pool_kind pool, size_t size_bytes, int stream) {
    grow_plan p;
    return grow_plan_make(a, pool, size_bytes, stream, &p);
}

static vms_status over_limit(vms_allocator *a, size_t more_bytes) {
    size_t lim = a->cfg.memory_limit_bytes;
    if (lim && a->st.reserved_bytes_current + more_bytes > lim) return VMS_ENOMEM;
    return VMS_OK;
}

/* Largest single chunk a growth of `pool` creates. */
static size_t piece_max_bytes(vms_allocator *a, pool_kind pool) {
    return pool == POOL_SMALL ? a->cfg.small_chunk_bytes : a->cfg.large_chunk_max_bytes;
}

static void reserved_add(vms_allocator *a, pool_kind pool, int64_t bytes) {
    STAT_ADD(a, reserved_bytes, bytes);
    stats_cached_sync(a);
    if (pool == POOL_SMALL) STAT_ADD(a, small_reserved_bytes, bytes);
    else STAT_ADD(a, large_reserved_bytes, bytes);
}

/* Records what an undo could not undo (see struct orphan). Returns whether it is still mapped. */
static bool orphan_add(vms_allocator *a, pool_kind pool, uintptr_t mapped_at, size_t bytes,
                       vms_handle handle) {
    if (a->n_orphans == VMS_ORPHANS_MAX) return mapped_at != 0; /* lost: counted in errors */
    struct orphan *o = &a->orphans[a->n_orphans++];
    o->addr = mapped_at;
    o->bytes = bytes;
    o->handle = handle;
    o->pool = pool;
    o->hole = NULL;
    if (handle) {
        a->orphan_bytes += bytes;
        reserved_add(a, pool, (int64_t)bytes);
    }
    return mapped_at != 0;
}

void orphan_note_mapping(vms_allocator *a, uintptr_t addr, size_t bytes) {
    orphan_add(a, POOL_LARGE, addr, bytes, 0);
}

/* Undoes one chunk made by grow_map: unmap (if mapped), release; what fails becomes an orphan.
 * Returns whether an orphan is left mapped at addr. */
static bool chunk_undo(vms_allocator *a, pool_kind pool, uintptr_t mapped_at, size_t bytes,
                       vms_handle h) {
    if (mapped_at && bk_undo_unmap(a, mapped_at, bytes) != VMS_OK)
        return orphan_add(a, pool, mapped_at, bytes, h);
    if (bk_undo_release(a, h, bytes) != VMS_OK) orphan_add(a, pool, 0, bytes, h);
    return false;
}

/* Creates the chunks for [at, at+need) and maps them there; all or nothing. On failure
 * *dirty says whether an orphan is still mapped inside the range (it must not be reused). */
static vms_status grow_map(vms_allocator *a, pool_kind pool, uintptr_t at, size_t need,
                           chunk **made, size_t *nmade, bool *dirty) {
    *dirty = false;
    size_t piece_max = piece_max_bytes(a, pool);
    size_t n = 0, off = 0;
    vms_status s = VMS_OK;
    while (off < need) {
        size_t sz = need - off < piece_max ? need - off : piece_max;
        chunk *c = calloc(1, sizeof *c);
        if (!c) {
            s = VMS_ENOMEM_HOST;
            break;
        }
        s = bk_create(a, sz, &c->handle);
        if (s != VMS_OK) {
            free(c);
            break;
        }
        s = bk_map(a, at + off, sz, c->handle);
        if (s != VMS_OK) {
            chunk_undo(a, pool, 0, sz, c->handle);
            free(c);
            break;
        }
        c->size_bytes = sz;
        c->home_addr = at + off;
        made[n++] = c;
        off += sz;
    }
    if (s == VMS_OK) s = bk_set_access(a, at, need, n);
    if (s != VMS_OK) {
        for (size_t i = 0; i < n; i++) {
            if (chunk_undo(a, pool, made[i]->home_addr, made[i]->size_bytes, made[i]->handle))
                *dirty = true;
            free(made[i]);
        }
        n = 0;
    }
    *nmade = n;
    return s;
}

static void chunk_link(vms_allocator *a, chunk *c) {
    c->all_prev = NULL;
    c->all_next = a->all_chunks;
    if (a->all_chunks) a->all_chunks->all_prev = c;
    a->all_chunks = c;
}

static void chunk_unlink(vms_allocator *a, chunk *c) {
    if (c->all_prev) c->all_prev->all_next = c->all_next;
    else a->all_chunks = c->all_next;
    if (c->all_next) c->all_next->all_prev = c->all_prev;
}

/* Creates chunks for need_bytes at the start of the hole block `hole` and maps them there.
 * They become FREE (fresh) blocks of the arena, merged with a free neighbour. */
static vms_status grow_place(vms_allocator *a, pool_kind pool, block *hole, size_t need_bytes,
                             int stream) {
    uintptr_t at = hole->addr;
    vms_status s = over_limit(a, need_bytes);
    if (s != VMS_OK) return s;
    size_t n = 0;
    /* every chunk is at least one granule, which bounds their count */
    chunk **made = malloc((need_bytes / a->gran_bytes + 2) * sizeof *made);
    if (!made) return VMS_ENOMEM_HOST;
    block *piece = block_isolate(a, hole, at, need_bytes);
    if (!piece) {
        free(made);
        return VMS_ENOMEM_HOST;
    }
    bool dirty;
    s = grow_map(a, pool, at, need_bytes, made, &n, &dirty);
    if (s != VMS_OK) {
        if (dirty) {
            /* Orphans are still mapped here: keep the range out of use until they are gone. */
            piece->quarantine = 1;
            for (size_t i = 0; i < a->n_orphans; i++)
                if (a->orphans[i].addr >= at && a->orphans[i].addr < at + need_bytes)
                    a->orphans[i].hole = piece;
        }
        block_set_hole(a, piece);
        free(made);
        return s;
    }
    range *r = a->arena[pool];
    for (size_t i = 0; i < n; i++) {
        chunk *c = made[i];
        c->home = c->owner = r;
        c->owner_addr = c->home_addr;
        range_pages_set(a, r, c->home_addr, c->size_bytes, c);
        chunk_link(a, c);
        STAT_ADD(a, chunks, 1);
    }
    free(made);
    reserved_add(a, pool, (int64_t)need_bytes);
    a->st.grows++;
    piece->stream = (uint16_t)stream;
    piece->multi_stream = 0;
    piece->freed_seq = 0;
    block_set_free(a, piece);
    return VMS_OK;
}

/* Grows the arena of `pool` so that size_bytes usable on stream start at *take_at, inside the
 * FREE block *out. The new chunks merge with the free block before them whatever its stream
 * (free neighbours are always merged), so the request starts after that block unless the plan
 * found it usable: memory freed on a busy stream is never handed to another. */
vms_status grow_for(vms_allocator *a, pool_kind pool, size_t size_bytes, int stream, block **out,
                    uintptr_t *take_at) {
    grow_plan p;
    if (!grow_plan_make(a, pool, size_bytes, stream, &p)) return VMS_ENOMEM;
    vms_status s = grow_place(a, pool, p.hole, p.need_bytes, stream);
    if (s != VMS_OK) return s;
    *out = range_block_at(a->arena[pool], p.take_at);
    *take_at = p.take_at;
    return VMS_OK;
}

/* Creates need_bytes of new chunks of `pool` anywhere in the arena (first hole that fits),
 * free and ready to be stitched. */
vms_status grow_loose(vms_allocator *a, pool_kind pool, size_t need_bytes, int stream) {
    need_bytes = chunk_bytes_for(a, pool, need_bytes);
    for (block *b = a->arena[pool]->first; b; b = b->next)
        if (b->state == BLOCK_HOLE && !b->quarantine && b->size_bytes >= need_bytes)
            return grow_place(a, pool, b, need_bytes, stream);
    return VMS_ENOMEM;
}

/* Releases every chunk that is free, owned at home, mapped nowhere else and settled (the
 * device is done with it: callers sync the streams first, and what stays unsettled stays). */
vms_status chunk_release_free(vms_allocator *a) {
    vms_status rc = VMS_OK;
    for (chunk *c = a->all_chunks, *next; c; c = next) {
        next = c->all_next;
        if (c->busy_bytes || c->owner != c->home || c->stitch_refs) continue;
        if (!chunk_settled(a, c)) continue;
        range *r = c->home;
        block *piece = block_isolate(a, range_block_at(r, c->home_addr), c->home_addr, c->size_bytes);
        if (!piece) {
            rc = VMS_ENOMEM_HOST;
            break;
        }
        vms_status s = bk_unmap(a, c->home_addr, c->size_bytes);
        bool orphaned = false;
        if (s == VMS_OK) {
            s = bk_release(a, c->handle, c->size_bytes);
            /* Keep the chunk usable rather than lose track of it; if even that fails, it is
             * unmapped but still held: an orphan, released by a later retry. */
            if (s != VMS_OK && bk_undo_map(a, c->home_addr, c->size_bytes, c->handle) != VMS_OK) {
                bk_undo_unmap(a, c->home_addr, c->size_bytes); /* a half-restored mapping */
                orphan_add(a, r->pool, 0, c->size_bytes, c->handle);
                orphaned = true;
            }
        }
        if (s != VMS_OK && !orphaned) {
            block_set_free(a, piece);
            rc = s;
            continue;
        }
        range_pages_set(a, r, c->home_addr, c->size_bytes, NULL);
        block_set_hole(a, piece);
        chunk_unlink(a, c);
        reserved_add(a, r->pool, -(int64_t)c->size_bytes);
        STAT_ADD(a, chunks, -1);
        free(c);
    }
    return rc;
}

/* Retries what orphans still hold: unmap, then release. A quarantined arena range whose
 * orphans are all unmapped becomes an ordinary hole again. */
void orphans_retry(vms_allocator *a) {
    size_t keep = 0;
    for (size_t i = 0; i < a->n_orphans; i++) {
        struct orphan *o = &a->orphans[i];
        if (o->addr && bk_unmap(a, o->addr, o->bytes) == VMS_OK) o->addr = 0;
        if (!o->addr && o->handle && bk_release(a, o->handle, o->bytes) == VMS_OK) {
            a->orphan_bytes -= o->bytes;
            reserved_add(a, o->pool, -(int64_t)o->bytes);
            o->handle = 0;
        }
        if (o->addr || o->handle) a->orphans[keep++] = *o;
    }
    size_t n_before = a->n_orphans;
    a->n_orphans = keep;
    if (keep == n_before) return;
    /* Lift quarantines that no mapped orphan needs any more. */
    for (int p = 0; p < POOL_COUNT; p++) {
        if (!a->arena[p]) continue;
        for (block *b = a->arena[p]->first; b;) {
            block *next = b->next;
            if (b->state == BLOCK_HOLE && b->quarantine) {
                bool needed = false;
                for (size_t i = 0; i < a->n_orphans; i++)
                    if (a->orphans[i].addr && a->orphans[i].hole == b) needed = true;
                if (!needed) {
                    b->quarantine = 0;
                    block_set_hole(a, b);
                }
            }
            b = next;
        }
    }
}
