/* The invariant checker behind vms_check: walks every range, block, chunk and index and counts
 * what is inconsistent. It is the test suite's main witness that no two live blocks share a
 * byte: every live block must lie in chunks owned by its own range, each chunk has one owner,
 * and blocks within a range never overlap. Runs with the allocator lock held; O(everything). */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

/* Counts one violation; with VMSTITCH_CHECK_VERBOSE set, also says which rule broke. */
static int verbose = -1;
static size_t violation(int line) {
    if (verbose < 0) verbose = getenv("VMSTITCH_CHECK_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "vmstitch: check.c:%d: invariant violated\n", line);
    return 1;
}
#define V() violation(__LINE__)

static size_t tree_check(const block *t, size_t *count) {
    if (!t) return 0;
    size_t v = 0;
    (*count)++;
    if (t->state != BLOCK_FREE) v += V();
    if (t->left && (t->left->prio > t->prio || t->left->size_bytes > t->size_bytes ||
                    (t->left->size_bytes == t->size_bytes && t->left->addr >= t->addr)))
        v += V();
    if (t->right && (t->right->prio > t->prio || t->right->size_bytes < t->size_bytes ||
                     (t->right->size_bytes == t->size_bytes && t->right->addr <= t->addr)))
        v += V();
    return v + tree_check(t->left, count) + tree_check(t->right, count);
}

static size_t addr_tree_check(const block *t, size_t *count, uintptr_t lo, uintptr_t hi) {
    if (!t) return 0;
    size_t v = 0;
    (*count)++;
    if (t->state != BLOCK_FREE || t->addr < lo || t->addr >= hi) v += V();
    size_t m = t->size_bytes;
    if (t->left && t->left->sub_max_bytes > m) m = t->left->sub_max_bytes;
    if (t->right && t->right->sub_max_bytes > m) m = t->right->sub_max_bytes;
    if (m != t->sub_max_bytes) v += V();
    if ((t->left && t->left->prio > t->prio) || (t->right && t->right->prio > t->prio)) v += V();
    return v + addr_tree_check(t->left, count, lo, t->addr) +
           addr_tree_check(t->right, count, t->addr + 1, hi);
}

static size_t range_check(vms_allocator *a, range *r, size_t *nfree, size_t *nalloc,
                          uint64_t *alloc_bytes) {
    size_t v = 0;
    uintptr_t at = r->base;
    const block *prev = NULL;
    size_t live = 0;
    for (const block *b = r->first; b; b = b->next) {
        if (b->range != r || b->addr != at || b->size_bytes == 0 || b->prev != prev) v += V();
        if (b->addr % VMS_ALIGN_BYTES || b->size_bytes % VMS_ALIGN_BYTES) v += V();
        if (prev && prev->state == BLOCK_FREE && b->state == BLOCK_FREE) v += V(); /* unmerged */
        if (prev && prev->state == BLOCK_HOLE && b->state == BLOCK_HOLE && !prev->quarantine &&
            !b->quarantine)
            v += V();
        if (b->state == BLOCK_HOLE && r->kind != RANGE_ARENA) v += V();
        /* Every page under a non-HOLE block is mapped; under FREE/ALLOC/PENDING the range owns
         * the chunk; under LENT it does not. */
        if (b->state != BLOCK_HOLE) {
            for (uintptr_t p = b->addr; p < b->addr + b->size_bytes;) {
                size_t pg = (p - r->base) / a->gran_bytes;
                chunk *c = r->pages[pg];
                if (!c) {
                    /* only a stitched range's LENT slot may be unmapped (torn down) */
                    if (!(r->kind == RANGE_STITCHED && b->state == BLOCK_LENT)) v += V();
                    break;
                }
                bool owned = c->owner == r;
                if ((b->state == BLOCK_LENT) == owned) v += V();
                /* where the chunk starts in this range, where that is known from the chunk */
                uintptr_t cstart = owned ? c->owner_addr : r->kind == RANGE_ARENA ? c->home_addr : 0;
                if (cstart && (cstart > p || cstart + c->size_bytes <= p)) v += V();
                p = (p / a->gran_bytes + 1) * a->gran_bytes;
            }
        }
        if (b->state == BLOCK_LENT) {
            /* a LENT block is exactly one chunk (or one unmapped stitched slot) */
            chunk *c = r->pages[(b->addr - r->base) / a->gran_bytes];
            if (c ? c->size_bytes != b->size_bytes : r->kind != RANGE_STITCHED) v += V();
        }
        if (b->state == BLOCK_FREE) (*nfree)++;
        if (b->state == BLOCK_ALLOC) {
            (*nalloc)++;
            *alloc_bytes += b->size_bytes;
            if (ptr_map_get(&a->live, b->addr) != b) v += V();
            if (b->requested_bytes > b->size_bytes) v += V();
        }
        if (b->state == BLOCK_ALLOC || b->state == BLOCK_PENDING) live++;
        at += b->size_bytes;
        prev = b;
    }
    if (at != r->base + r->size_bytes) v += V();
    if (r->kind == RANGE_STITCHED) {
        if (live != r->live_blocks) v += V();
        if ((live == 0) != r->in_lru) v += V();
        uintptr_t s = r->base;
        for (size_t i = 0; i < r->nslots; i++) {
            chunk *c = r->slots[i];
            for (size_t pg = 0; pg < r->slot_bytes[i] / a->gran_bytes; pg++)
                if (r->pages[(s - r->base) / a->gran_bytes + pg] != c) v += V();
            if (c && c->size_bytes != r->slot_bytes[i]) v += V();
            if (c && c->owner == r && c->owner_addr != s) v += V();
            s += r->slot_bytes[i];
        }
    }
    return v;
}

/* busy_bytes of each chunk, recomputed from the blocks of its owner. */
static size_t chunk_check(vms_allocator *a, chunk *c) {
    size_t v = 0, busy = 0;
    range *r = c->owner;
    if (!r) return V();
    uintptr_t lo = c->owner_addr, hi = lo + c->size_bytes;
    for (const block *b = r->first; b; b = b->next) {
        uintptr_t bl = b->addr, bh = b->addr + b->size_bytes;
        if (bh <= lo || bl >= hi) continue;
        if (b->state == BLOCK_ALLOC || b->state == BLOCK_PENDING)
            busy += (bh < hi ? bh : hi) - (bl > lo ? bl : lo);
        if (b->state == BLOCK_LENT || b->state == BLOCK_HOLE) v += V();
    }
    if (busy != c->busy_bytes) v += V();
    if (c->size_bytes == 0 || c->size_bytes % a->gran_bytes) v += V();
    if (c->home->pages[(c->home_addr - c->home->base) / a->gran_bytes] != c) v += V();
    return v;
}

size_t check_locked(vms_allocator *a) {
    size_t v = 0, nfree = 0, nalloc = 0;
    uint64_t alloc_bytes = 0;
    for (int p = 0; p < POOL_COUNT; p++)
        if (a->arena[p]) v += range_check(a, a->arena[p], &nfree, &nalloc, &alloc_bytes);
    size_t nranges = 0, lru = 0;
    for (range *r = a->stitched; r; r = r->all_next) {
        v += range_check(a, r, &nfree, &nalloc, &alloc_bytes);
        nranges++;
    }
    for (range *r = a->lru_head; r; r = r->lru_next) lru++;
    if (lru != a->lru_count || nranges != a->st.stitched_ranges_current) v += V();
    size_t indexed = 0;
    v += addr_tree_check(a->index_root[POOL_SMALL], &indexed, 0, UINTPTR_MAX);
    v += tree_check(a->index_root[POOL_LARGE], &indexed);
    if (indexed != nfree) v += V();
    if (nalloc != a->live.count) v += V();
    if (alloc_bytes != a->st.allocated_bytes_current) v += V();
    uint64_t reserved = 0, nchunks = 0;
    for (chunk *c = a->all_chunks; c; c = c->all_next) {
        v += chunk_check(a, c);
        reserved += c->size_bytes;
        nchunks++;
    }
    if (reserved + a->orphan_bytes != a->st.reserved_bytes_current ||
        nchunks != a->st.chunks_current)
        v += V();
    if (a->cfg.memory_limit_bytes == 0 && a->st.cached_bytes_current !=
                                              a->st.reserved_bytes_current - a->st.allocated_bytes_current)
        v += V();
    return v;
}
