/* Blocks inside ranges, and chunk ownership. A range (arena or stitched) is covered by an
 * address-ordered list of blocks; FREE blocks sit in their pool's best-fit index and are merged
 * with FREE neighbours at once. Each chunk counts the bytes of non-FREE blocks over it in the
 * range that owns it (busy_bytes): a chunk with none is wholly free and may be lent to a
 * stitched range. Moving a chunk between two ranges that both map it costs no
 * backend call: only block states change. Callers hold the allocator lock. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static block *block_alloc(vms_allocator *a) {
    block *b = a->spare_blocks;
    if (b) a->spare_blocks = b->next;
    else b = malloc(sizeof *b);
    if (b) memset(b, 0, sizeof *b);
    return b;
}

static void block_release(vms_allocator *a, block *b) {
    b->range = NULL; /* a stale lookup hint (range->hint) must not take it for a live block */
    b->next = a->spare_blocks;
    a->spare_blocks = b;
}

block *block_new(vms_allocator *a, range *r, uintptr_t addr, size_t size, block_state st) {
    block *b = block_alloc(a);
    if (!b) return NULL;
    b->addr = addr;
    b->size_bytes = size;
    b->range = r;
    b->state = (uint8_t)st;
    return b;
}

static void link_after(range *r, block *at, block *b) {
    b->prev = at;
    b->next = at ? at->next : r->first;
    if (b->next) b->next->prev = b;
    if (at) at->next = b;
    else r->first = b;
}

static void unlink_block(range *r, block *b) {
    if (b->prev) b->prev->next = b->next;
    else r->first = b->next;
    if (b->next) b->next->prev = b->prev;
}

/* Combined stream tags of two sets of frees. */
static void tags_merge(uint16_t *stream, uint8_t *multi, uint64_t *seq, uint16_t s2, uint8_t m2,
                       uint64_t q2) {
    if (q2 == 0) return; /* the other side was never freed: nothing to wait for */
    if (*seq == 0) {
        *stream = s2;
        *multi = m2;
        *seq = q2;
        return;
    }
    if (*stream != s2 || *multi || m2) *multi = 1;
    if (q2 > *seq) *seq = q2;
}

/* Absorbs FREE neighbour n (after b) into b; n must already be out of the index. */
static void absorb_next(vms_allocator *a, range *r, block *b) {
    block *n = b->next;
    b->size_bytes += n->size_bytes;
    tags_merge(&b->stream, &b->multi_stream, &b->freed_seq, n->stream, n->multi_stream,
               n->freed_seq);
    unlink_block(r, n);
    block_release(a, n);
}

void block_set_free(vms_allocator *a, block *b) {
    range *r = b->range;
    b->state = BLOCK_FREE;
    if (b->prev && b->prev->state == BLOCK_FREE) {
        /* keep the lower block, so its address stays the key */
        b = b->prev;
        pool_index_remove(a, r->pool, b);
        absorb_next(a, r, b);
    }
    if (b->next && b->next->state == BLOCK_FREE) {
        pool_index_remove(a, r->pool, b->next);
        absorb_next(a, r, b);
    }
    pool_index_insert(a, r->pool, b);
}

/* Splits [addr, addr+len) out of block b (which must contain it) and returns that piece, out
 * of the index, in b's state; the remnants on either side keep b's state (and stay indexed if
 * FREE). NULL, with nothing changed, if host memory runs out. */
block *block_isolate(vms_allocator *a, block *b, uintptr_t addr, size_t len) {
    range *r = b->range;
    /* Allocate both remnants first, so a failure changes nothing. */
    block *lo = NULL, *hi = NULL;
    if (addr > b->addr && !(lo = block_alloc(a))) return NULL;
    if (b->addr + b->size_bytes > addr + len && !(hi = block_alloc(a))) {
        if (lo) block_release(a, lo);
        return NULL;
    }
    bool indexed = b->state == BLOCK_FREE;
    if (indexed) pool_index_remove(a, r->pool, b);
    if (lo) {
        *lo = *b;
        lo->size_bytes = addr - b->addr;
        link_after(r, b->prev, lo);
        b->size_bytes -= lo->size_bytes;
        b->addr = addr;
        if (indexed) pool_index_insert(a, r->pool, lo);
    }
    if (hi) {
        *hi = *b;
        hi->addr = addr + len;
        hi->size_bytes = b->size_bytes - len;
        link_after(r, b, hi);
        b->size_bytes = len;
        if (indexed) pool_index_insert(a, r->pool, hi);
    }
    return b;
}

/* Takes [addr, addr+size_bytes) of FREE block b for a live allocation. */
block *block_take(vms_allocator *a, block *b, uintptr_t addr, size_t size_bytes) {
    range *r = b->range;
    block *got = block_isolate(a, b, addr, size_bytes);
    if (!got) return NULL;
    got->state = BLOCK_ALLOC;
    got->extra_streams = 0;
    chunk_busy_add(a, r, got->addr, got->size_bytes, NULL);
    if (r->kind == RANGE_STITCHED && r->live_blocks++ == 0) stitched_on_busy(a, r);
    return got;
}

/* Marks arena block b as HOLE and merges it with HOLE neighbours. */
void block_set_hole(vms_allocator *a, block *b) {
    range *r = b->range;
    b->state = BLOCK_HOLE;
    if (b->quarantine) return;
    if (b->prev && b->prev->state == BLOCK_HOLE && !b->prev->quarantine) {
        block *p = b->prev;
        p->size_bytes += b->size_bytes;
        unlink_block(r, b);
        block_release(a, b);
        b = p;
    }
    if (b->next && b->next->state == BLOCK_HOLE && !b->next->quarantine) {
        block *n = b->next;
        b->size_bytes += n->size_bytes;
        unlink_block(r, n);
        block_release(a, n);
    }
}

/* Walks from the last block found in r (lookups cluster: a stitch moves neighbouring chunks),
 * or from the first. Block structs are recycled, never freed, while the allocator lives, and a
 * recycled one has range NULL, so the hint is safe to test. */
block *range_block_at(range *r, uintptr_t addr) {
    block *b = r->hint && r->hint->range == r ? r->hint : r->first;
    if (b && addr < b->addr) {
        while (b && addr < b->addr) b = b->prev;
    } else {
        while (b && addr >= b->addr + b->size_bytes) b = b->next;
    }
    if (b) r->hint = b;
    return b;
}

/* Points the page entries of [addr, addr+bytes) of r at chunk c (NULL: nothing mapped there). */
void range_pages_set(vms_allocator *a, range *r, uintptr_t addr, size_t bytes, chunk *c) {
    size_t first = (addr - r->base) / a->gran_bytes;
    for (size_t pg = 0; pg < bytes / a->gran_bytes; pg++) r->pages[first + pg] = c;
}

/* Adds the bytes [addr, addr+len) of range r to the busy count of the chunks under them
 * (freed == NULL), or removes them for the free of block `freed`, whose stream tags the chunks
 * then take. The range must own those chunks. */
void chunk_busy_add(vms_allocator *a, range *r, uintptr_t addr, size_t len, const block *freed) {
    uintptr_t end = addr + len;
    while (addr < end) {
        chunk *c = r->pages[(addr - r->base) / a->gran_bytes];
        uintptr_t cend = c->owner_addr + c->size_bytes;
        size_t n = (cend < end ? cend : end) - addr;
        if (!freed) {
            if (c->busy_bytes == 0) {
                /* Earlier frees on it are settled or in this allocation's stream order. */
                c->stream = 0;
                c->multi_stream = 0;
                c->freed_seq = 0;
            }
            c->busy_bytes += n;
        } else {
            /* a chunk with no tags yet simply takes the free's (a free is stamped >= 1) */
            tags_merge(&c->stream, &c->multi_stream, &c->freed_seq, freed->stream,
                       freed->multi_stream, freed->freed_seq);
            c->busy_bytes -= n;
        }
        addr = cend;
    }
}

range *range_new(vms_allocator *a, range_kind kind, pool_kind pool, uintptr_t base, size_t size) {
    range *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->kind = kind;
    r->pool = pool;
    r->base = base;
    r->size_bytes = size;
    r->pages = calloc(size / a->gran_bytes, sizeof *r->pages);
    r->first = block_new(a, r, base, size, kind == RANGE_ARENA ? BLOCK_HOLE : BLOCK_LENT);
    if (!r->pages || !r->first) {
        free(r->pages);
        if (r->first) block_release(a, r->first);
        free(r);
        return NULL;
    }
    return r;
}

void range_delete(vms_allocator *a, range *r) {
    for (block *b = r->first, *n; b; b = n) {
        n = b->next;
        if (b->state == BLOCK_FREE) pool_index_remove(a, r->pool, b);
        block_release(a, b);
    }
    free(r->pages);
    free(r->slots);
    free(r->slot_bytes);
    free(r);
}

/* Returns a list of unused block structs (linked by next) to the spares. */
static void blocks_release(vms_allocator *a, block *list) {
    while (list) {
        block *nx = list->next;
        block_release(a, list);
        list = nx;
    }
}

/* Moves ownership of the n free chunks cs[] to range `to`, where they are mapped side by side
 * from to_addr. They must share an owner other than `to` and lie side by side there too (a
 * run). In the old owner each becomes a LENT block of its own; in the new one the run becomes
 * one FREE block, merged with its neighbours. One isolation and one merge for the whole run,
 * where a chunk at a time cost a best-fit index update on both sides per chunk (a 256 MiB
 * stitched range moved 23 chunks each way on every reuse). VMS_ENOMEM_HOST, with nothing
 * changed, if host memory runs out. */
vms_status chunks_transfer(vms_allocator *a, chunk *const *cs, size_t n, range *to,
                           uintptr_t to_addr) {
    range *from = cs[0]->owner;
    if (from == to) return VMS_OK;
    uintptr_t start = cs[0]->owner_addr;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += cs[i]->size_bytes;
    /* The LENT blocks that split the old owner's piece per chunk: allocated first, so that
     * nothing can fail once anything has changed. */
    block *spare = NULL;
    for (size_t i = 1; i < n; i++) {
        block *b = block_alloc(a);
        if (!b) {
            blocks_release(a, spare);
            return VMS_ENOMEM_HOST;
        }
        b->next = spare;
        spare = b;
    }
    block *piece = block_isolate(a, range_block_at(from, start), start, total);
    if (!piece) {
        blocks_release(a, spare);
        return VMS_ENOMEM_HOST;
    }
    piece->state = BLOCK_LENT;
    piece->size_bytes = cs[0]->size_bytes;
    for (size_t i = 1; i < n; i++) {
        block *b = spare;
        spare = b->next;
        *b = *piece;
        b->addr = piece->addr + piece->size_bytes;
        b->size_bytes = cs[i]->size_bytes;
        link_after(from, piece, b);
        piece = b;
    }
    /* In `to`, each chunk of the run is a LENT block of its own (not indexed): one block for
     * the run, whose tags are then the chunks'. */
    block *dst = range_block_at(to, to_addr);
    while (dst->size_bytes < total) absorb_next(a, to, dst);
    dst->stream = 0;
    dst->multi_stream = 0;
    dst->freed_seq = 0;
    for (size_t i = 0; i < n; i++) {
        chunk *c = cs[i];
        tags_merge(&dst->stream, &dst->multi_stream, &dst->freed_seq, c->stream, c->multi_stream,
                   c->freed_seq);
        c->owner = to;
        c->owner_addr = to_addr;
        to_addr += c->size_bytes;
    }
    block_set_free(a, dst);
    return VMS_OK;
}
