/* Emulation of PyTorch's native CUDACachingAllocator (c10/cuda/CUDACachingAllocator.cpp, the
 * DeviceCachingAllocator of PyTorch 2.x with default settings), with and without
 * expandable_segments:True. It follows the C++ function by function (names kept: round_size,
 * get_allocation_size, get_free_block, alloc_block, should_split, alloc_found_block,
 * free_block, try_merge_blocks, find_expandable_block, map_block, unmap_block,
 * release_cached_blocks), so that replaying a trace reproduces the reserved memory the real
 * allocator reached on the GPU; the tests hold it to the trace headers (3% native, 5%
 * expandable).
 *
 * Native: requests are rounded to 512 B; <= 1 MiB go to the small pool (2 MiB cudaMalloc
 * segments), larger ones to the large pool (20 MiB segments below 10 MiB, else the request
 * rounded to 2 MiB). A request takes the best-fitting free block of its pool and stream
 * (smallest size, then lowest address), split when the remainder is >= 512 B (small pool) or
 * > 1 MiB (large pool); frees merge with free neighbours. With no block, one cudaMalloc; if
 * that fails (over capacity), every free unsplit segment is cudaFree'd and it is tried again.
 * max_split_size is unlimited (the default), so release_available_cached_blocks does nothing
 * and the oversize-block rules never apply; garbage_collection_threshold is off.
 *
 * Expandable: one segment per pool and stream, a virtual range of 9/8 of the device memory
 * mapped page by page on demand (2 MiB pages in the small pool, 20 MiB in the large pool), at
 * the lowest address where free and unmapped space together fit the request; blocks split
 * whenever the remainder is >= 512 B; best fit prefers blocks that do not border unmapped
 * space. Pages are never unmapped on free: only the out-of-memory retry (as empty_cache)
 * unmaps the whole free pages, which is what PyTorch 2.x does.
 *
 * cudaMalloc places each new segment below the previous one here: addresses only break ties
 * between equal-size free blocks, and top-down placement reproduces the GPU's peaks to the
 * byte on all four bundled traces (bottom-up misses opt350-gen by 52 MiB).
 *
 * Not modeled: events and record_stream (traces are single-stream and frees are immediate),
 * CUDA graph private pools, memory fraction and garbage collection, IPC, roundup_power2
 * divisions and max_split_size (both off by default).
 *
 * Counts: one cuda_malloc/cuda_free per segment (native); one create, map and set_access per
 * page mapped, one unmap and release per page unmapped and one reserve per segment
 * (expandable), each with DESIGN.md's per-call cost (vms_cost_seconds).
 * Single-threaded.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "ordset.h"
#include "policy.h"

#define K_MIN_BLOCK_SIZE 512ull
#define K_SMALL_SIZE (1ull << 20)
#define K_SMALL_BUFFER (2ull << 20)
#define K_MIN_LARGE_ALLOC (10ull << 20)
#define K_ROUND_LARGE (2ull << 20)
#define K_LARGE_BUFFER (20ull << 20)

typedef struct pt_segment {
    uint64_t base, size_bytes, page_bytes;
    struct pt_segment *next_segment;
} pt_segment;

typedef struct pt_pool {
    ordset blocks;   /* free mapped blocks by (stream, size, addr) */
    ordset unmapped; /* unmapped ranges of expandable segments by (stream, addr) */
    bool is_small;
} pt_pool;

typedef struct pt_block {
    ordset_node node; /* in pool->blocks or pool->unmapped, never both */
    struct pt_block *prev, *next;
    uint64_t addr, size;
    pt_segment *seg; /* NULL for cudaMalloc segments */
    pt_pool *pool;
    uint32_t stream;
    bool allocated, mapped;
} pt_block;

#define SLAB_BLOCKS 512
typedef struct pt_slab {
    struct pt_slab *next;
    pt_block blocks[SLAB_BLOCKS];
} pt_slab;

struct policy {
    bool expandable;
    uint64_t capacity_bytes;
    pt_pool small, large;
    uint64_t reserved_bytes, window_peak_bytes;
    uint64_t cuda_malloc_top; /* native: the next segment ends here (segments grow down) */
    uint64_t next_segment_va; /* expandable: the next virtual range starts here */
    policy_counters counters;
    pt_slab *slabs;
    pt_block *free_blocks;
    pt_segment *segments;
};

#define BLOCK(n) ORDSET_CONTAINER(n, pt_block, node)

/* ---------------------------------------------------------------- block bookkeeping */

static pt_block *block_new(policy *p, pt_pool *pool, uint32_t stream, uint64_t addr,
                           uint64_t size) {
    if (!p->free_blocks) {
        pt_slab *s = malloc(sizeof *s);
        if (!s) return NULL;
        s->next = p->slabs;
        p->slabs = s;
        for (int i = SLAB_BLOCKS - 1; i >= 0; i--) {
            s->blocks[i].next = p->free_blocks;
            p->free_blocks = &s->blocks[i];
        }
    }
    pt_block *b = p->free_blocks;
    p->free_blocks = b->next;
    memset(b, 0, sizeof *b);
    b->pool = pool;
    b->stream = stream;
    b->addr = addr;
    b->size = size;
    b->mapped = true;
    return b;
}

static void block_delete(policy *p, pt_block *b) {
    b->next = p->free_blocks;
    p->free_blocks = b;
}

static void blocks_insert(pt_block *b) {
    b->node.key[0] = b->stream;
    b->node.key[1] = b->size;
    b->node.key[2] = b->addr;
    ordset_insert(&b->pool->blocks, &b->node);
}

static void blocks_erase(pt_block *b) {
    ordset_erase(&b->pool->blocks, &b->node);
}

static void unmapped_insert(pt_block *b) {
    b->node.key[0] = b->stream;
    b->node.key[1] = b->addr;
    b->node.key[2] = 0;
    ordset_insert(&b->pool->unmapped, &b->node);
}

static void unmapped_erase(pt_block *b) {
    ordset_erase(&b->pool->unmapped, &b->node);
}

/* Links x between before and after (either may be NULL). */
static void splice(pt_block *x, pt_block *before, pt_block *after) {
    x->prev = before;
    if (before) before->next = x;
    x->next = after;
    if (after) after->prev = x;
}

static void reserved_add(policy *p, uint64_t bytes) {
    p->reserved_bytes += bytes;
    if (p->reserved_bytes > p->window_peak_bytes) p->window_peak_bytes = p->reserved_bytes;
}

static double cost(vms_cost_kind kind, uint64_t bytes) {
    return vms_cost_seconds(kind, (size_t)bytes);
}

/* ---------------------------------------------------------------- sizes */

static uint64_t round_up(uint64_t x, uint64_t unit) {
    return unit * ((x + unit - 1) / unit);
}

static uint64_t round_size(uint64_t size) {
    if (size < K_MIN_BLOCK_SIZE) return K_MIN_BLOCK_SIZE;
    return round_up(size, K_MIN_BLOCK_SIZE);
}

static uint64_t get_allocation_size(uint64_t size) {
    if (size <= K_SMALL_SIZE) return K_SMALL_BUFFER;
    if (size < K_MIN_LARGE_ALLOC) return K_LARGE_BUFFER;
    return round_up(size, K_ROUND_LARGE);
}

static bool should_split(const policy *p, const pt_block *b, uint64_t size) {
    uint64_t remaining = b->size - size;
    if (b->pool->is_small || p->expandable) return remaining >= K_MIN_BLOCK_SIZE;
    return remaining > K_SMALL_SIZE;
}

/* ---------------------------------------------------------------- merging */

/* Merges src into dst if src is free with the same mapped state. */
static void try_merge_blocks(policy *p, pt_block *dst, pt_block *src) {
    if (!src || src->allocated || dst->mapped != src->mapped) return;
    if (dst->prev == src) { /* [src dst] */
        dst->addr = src->addr;
        dst->prev = src->prev;
        if (dst->prev) dst->prev->next = dst;
    } else { /* [dst src] */
        dst->next = src->next;
        if (dst->next) dst->next->prev = dst;
    }
    dst->size += src->size;
    if (src->mapped)
        blocks_erase(src);
    else
        unmapped_erase(src);
    block_delete(p, src);
}

static void free_block(policy *p, pt_block *b) {
    try_merge_blocks(p, b, b->prev);
    try_merge_blocks(p, b, b->next);
    blocks_insert(b);
}

/* ---------------------------------------------------------------- finding a free block */

static uint64_t expandable_size(const pt_block *b) {
    return b->size + (b->next && !b->next->mapped ? b->next->size : 0);
}

static pt_block *get_free_block(pt_pool *pool, uint64_t size, uint32_t stream) {
    ordset_node *it = ordset_lower_bound(&pool->blocks, stream, size, 0);
    if (!it || it->key[0] != stream) return NULL;
    pt_block *b = BLOCK(it);
    if (b->seg) {
        /* A block bordering unmapped space counts as the size it could grow to, so best fit
         * prefers blocks that do not border it. */
        ordset_node *next = ordset_next(&pool->blocks, it);
        while (b->seg && next && next->key[0] == stream &&
               expandable_size(BLOCK(next)) < expandable_size(b)) {
            it = next;
            b = BLOCK(it);
            next = ordset_next(&pool->blocks, it);
        }
    }
    blocks_erase(b);
    return b;
}

/* ---------------------------------------------------------------- cudaMalloc segments */

static pt_block *alloc_block_native(policy *p, pt_pool *pool, uint64_t alloc_size,
                                    uint32_t stream) {
    if (p->reserved_bytes + alloc_size > p->capacity_bytes) return NULL;
    /* Each segment lies below the previous one: the order of addresses breaks ties between
     * equal-size free blocks, and top-down placement is what reproduces the GPU's peaks to
     * the byte on all four bundled traces (bottom-up misses opt350-gen by 52 MiB). */
    uint64_t addr = p->cuda_malloc_top - round_up(alloc_size, K_ROUND_LARGE);
    pt_block *b = block_new(p, pool, stream, addr, alloc_size);
    if (!b) return NULL;
    p->cuda_malloc_top = addr;
    reserved_add(p, alloc_size);
    p->counters.cuda_malloc++;
    p->counters.modeled_seconds += cost(VMS_COST_CUDA_MALLOC, alloc_size);
    return b;
}

static void release_block(policy *p, pt_block *b) {
    p->counters.cuda_free++;
    p->counters.modeled_seconds += cost(VMS_COST_CUDA_FREE, b->size);
    p->reserved_bytes -= b->size;
    blocks_erase(b);
    block_delete(p, b);
}

/* ---------------------------------------------------------------- expandable segments */

static bool allocatable(const pt_block *b) {
    return b && !b->allocated;
}

static bool has_available_address_space(const pt_block *b, uint64_t size) {
    uint64_t bytes = 0;
    while (bytes < size && allocatable(b)) {
        bytes += b->size;
        b = b->next;
    }
    return bytes >= size;
}

static pt_block *find_expandable_block(policy *p, pt_pool *pool, uint32_t stream, uint64_t size) {
    for (ordset_node *it = ordset_lower_bound(&pool->unmapped, stream, 0, 0);
         it && it->key[0] == stream; it = ordset_next(&pool->unmapped, it)) {
        pt_block *c = BLOCK(it);
        /* the lowest unmapped range, or the free block just before it */
        if (allocatable(c->prev)) c = c->prev;
        if (has_available_address_space(c, size)) return c;
    }
    uint64_t page = pool->is_small ? K_SMALL_BUFFER : K_LARGE_BUFFER;
    uint64_t address_space = p->capacity_bytes + p->capacity_bytes / 8;
    pt_segment *seg = malloc(sizeof *seg);
    if (!seg) return NULL;
    seg->page_bytes = page;
    seg->size_bytes = round_up(address_space, page);
    seg->base = round_up(p->next_segment_va, K_LARGE_BUFFER);
    p->next_segment_va = seg->base + seg->size_bytes;
    pt_block *c = block_new(p, pool, stream, seg->base, seg->size_bytes);
    if (!c) {
        free(seg);
        return NULL;
    }
    seg->next_segment = p->segments;
    p->segments = seg;
    c->seg = seg;
    c->mapped = false;
    unmapped_insert(c);
    p->counters.reserve++;
    p->counters.modeled_seconds += cost(VMS_COST_RESERVE, seg->size_bytes);
    return c;
}

static bool map_block(policy *p, pt_block *to_map, uint64_t size) {
    pt_segment *seg = to_map->seg;
    uint64_t page = seg->page_bytes;
    uint64_t begin = (to_map->addr - seg->base) / page;
    uint64_t end = (to_map->addr + size - seg->base + page - 1) / page;
    if (begin == end) return false;
    uint64_t n = end - begin, bytes = n * page;
    if (p->reserved_bytes + bytes > p->capacity_bytes) {
        /* cuMemCreate fails part way: the handles already created are released again. */
        uint64_t created = (p->capacity_bytes - p->reserved_bytes) / page;
        p->counters.create += created + 1;
        p->counters.release += created;
        p->counters.modeled_seconds +=
            (double)created * (cost(VMS_COST_CREATE, page) + cost(VMS_COST_RELEASE, page));
        return false;
    }
    pt_block *remaining = NULL;
    if (bytes < to_map->size) {
        remaining =
            block_new(p, to_map->pool, to_map->stream, to_map->addr + bytes, to_map->size - bytes);
        if (!remaining) return false; /* host OOM: the caller reports the request as failed */
    }
    p->counters.create += n;
    p->counters.map += n;
    p->counters.set_access += n;
    p->counters.modeled_seconds +=
        (double)n *
        (cost(VMS_COST_CREATE, page) + cost(VMS_COST_MAP, page) + cost(VMS_COST_SET_ACCESS, page));
    reserved_add(p, bytes);

    unmapped_erase(to_map);
    to_map->mapped = true;
    if (remaining) {
        remaining->mapped = false;
        remaining->seg = seg;
        splice(remaining, to_map, to_map->next);
        unmapped_insert(remaining);
        to_map->size = bytes;
    }
    try_merge_blocks(p, to_map, to_map->prev);
    try_merge_blocks(p, to_map, to_map->next);
    blocks_insert(to_map);
    return true;
}

static pt_block *try_allocate_expandable_block(policy *p, pt_pool *pool, uint32_t stream,
                                               uint64_t size) {
    pt_block *candidate = find_expandable_block(p, pool, stream, size);
    if (!candidate) return NULL;
    /* candidate is: unmapped -> null | unmapped -> free -> * | free -> unmapped -> * */
    if (!candidate->mapped &&
        !map_block(p, candidate, candidate->size < size ? candidate->size : size))
        return NULL;
    while (candidate->size < size) {
        /* free -> unmapped: map some of the unmapped part, which merges into candidate */
        uint64_t remaining = size - candidate->size;
        pt_block *next = candidate->next;
        if (!map_block(p, next, remaining < next->size ? remaining : next->size)) return NULL;
        candidate = next;
    }
    blocks_erase(candidate);
    return candidate;
}

static void unmap_block(policy *p, pt_block *b) {
    pt_segment *seg = b->seg;
    uint64_t page = seg->page_bytes;
    uint64_t begin = (b->addr - seg->base + page - 1) / page;
    uint64_t end = (b->addr + b->size - seg->base) / page;
    if (begin >= end) return;
    uint64_t n = end - begin, ua = seg->base + begin * page, ub = n * page;
    uint64_t before = ua - b->addr, after = b->size - before - ub;
    pt_block *bf = before ? block_new(p, b->pool, b->stream, b->addr, before) : NULL;
    pt_block *af = after ? block_new(p, b->pool, b->stream, ua + ub, after) : NULL;
    if ((before && !bf) || (after && !af)) { /* host OOM: leave the block mapped */
        if (bf) block_delete(p, bf);
        if (af) block_delete(p, af);
        return;
    }
    blocks_erase(b);
    if (bf) {
        bf->seg = seg;
        splice(bf, b->prev, b);
        blocks_insert(bf);
    }
    if (af) {
        af->seg = seg;
        splice(af, b, b->next);
        blocks_insert(af);
    }
    b->addr = ua;
    b->size = ub;
    b->mapped = false;
    try_merge_blocks(p, b, b->prev);
    try_merge_blocks(p, b, b->next);
    unmapped_insert(b);
    p->reserved_bytes -= ub;
    p->counters.unmap += n;
    p->counters.release += n;
    p->counters.modeled_seconds +=
        (double)n * (cost(VMS_COST_UNMAP, page) + cost(VMS_COST_RELEASE, page));
}

static void release_expandable_segment(policy *p, pt_block *b) {
    pt_segment *seg = b->seg;
    unmapped_erase(b);
    block_delete(p, b);
    p->counters.address_free++;
    p->counters.modeled_seconds += cost(VMS_COST_ADDRESS_FREE, seg->size_bytes);
    for (pt_segment **link = &p->segments; *link; link = &(*link)->next_segment) {
        if (*link == seg) {
            *link = seg->next_segment;
            break;
        }
    }
    free(seg);
}

/* ---------------------------------------------------------------- out of memory */

static size_t collect(ordset_node *t, pt_block **out, size_t n) {
    if (!t) return n;
    n = collect(t->left, out, n);
    out[n++] = BLOCK(t);
    return collect(t->right, out, n);
}

static void release_blocks(policy *p, pt_pool *pool) {
    size_t count = pool->blocks.count;
    if (count == 0) return;
    pt_block **all = malloc(count * sizeof *all);
    if (!all) return;
    collect(pool->blocks.root, all, 0);
    size_t nunmap = 0;
    for (size_t i = 0; i < count; i++) {
        pt_block *b = all[i];
        if (b->seg)
            all[nunmap++] = b; /* unmapping mutates the pool: gather first */
        else if (!b->prev && !b->next)
            release_block(p, b);
    }
    for (size_t i = 0; i < nunmap; i++) {
        pt_block *b = all[i];
        unmap_block(p, b);
        if (!b->mapped && !b->prev && !b->next) release_expandable_segment(p, b);
    }
    free(all);
}

static void release_cached_blocks(policy *p) {
    release_blocks(p, &p->large);
    release_blocks(p, &p->small);
}

/* ---------------------------------------------------------------- the policy */

static pt_block *alloc_block(policy *p, pt_pool *pool, uint64_t size, uint64_t alloc_size,
                             uint32_t stream) {
    if (p->expandable) return try_allocate_expandable_block(p, pool, stream, size);
    return alloc_block_native(p, pool, alloc_size, stream);
}

static uint64_t pt_alloc(policy *p, uint64_t orig_size, uint32_t stream) {
    uint64_t size = round_size(orig_size);
    pt_pool *pool = size <= K_SMALL_SIZE ? &p->small : &p->large;
    uint64_t alloc_size = get_allocation_size(size);
    pt_block *b = get_free_block(pool, size, stream);
    if (!b) {
        b = alloc_block(p, pool, size, alloc_size, stream);
        if (!b) {
            release_cached_blocks(p);
            b = alloc_block(p, pool, size, alloc_size, stream);
        }
        if (!b) return 0;
    }
    if (should_split(p, b, size)) {
        pt_block *nb = block_new(p, pool, stream, b->addr, size);
        if (!nb) { /* host OOM: hand out the whole block */
            b->allocated = true;
            p->counters.errors++;
            return (uint64_t)(uintptr_t)b;
        }
        nb->seg = b->seg;
        splice(nb, b->prev, b);
        b->addr += size;
        b->size -= size;
        blocks_insert(b);
        b = nb;
    }
    b->allocated = true;
    return (uint64_t)(uintptr_t)b;
}

static void pt_free(policy *p, uint64_t token) {
    pt_block *b = (pt_block *)(uintptr_t)token;
    b->allocated = false;
    free_block(p, b);
}

static uint64_t pt_window_peak(policy *p) {
    uint64_t v = p->window_peak_bytes;
    p->window_peak_bytes = p->reserved_bytes;
    return v;
}

static void pt_counters(policy *p, policy_counters *out) {
    *out = p->counters;
}

static void pt_close(policy *p) {
    if (!p) return;
    while (p->slabs) {
        pt_slab *s = p->slabs;
        p->slabs = s->next;
        free(s);
    }
    while (p->segments) {
        pt_segment *s = p->segments;
        p->segments = s->next_segment;
        free(s);
    }
    free(p);
}

static policy *pt_open_mode(const policy_options *opt, bool expandable, char *err, size_t cap) {
    policy *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, cap, "out of host memory");
        return NULL;
    }
    p->expandable = expandable;
    p->capacity_bytes =
        opt && opt->capacity_bytes ? opt->capacity_bytes : POLICY_DEFAULT_CAPACITY_BYTES;
    ordset_init(&p->small.blocks, 1);
    ordset_init(&p->small.unmapped, 2);
    ordset_init(&p->large.blocks, 3);
    ordset_init(&p->large.unmapped, 4);
    p->small.is_small = true;
    p->cuda_malloc_top = 1ull << 56; /* far above any capacity: never reaches 0 */
    p->next_segment_va = 1ull << 40;
    return p;
}

static policy *pt_open_native(const policy_options *opt, char *err, size_t cap) {
    return pt_open_mode(opt, false, err, cap);
}

static policy *pt_open_expandable(const policy_options *opt, char *err, size_t cap) {
    return pt_open_mode(opt, true, err, cap);
}

const policy_ops policy_pytorch_ops = {
    .name = "pytorch",
    .summary = "PyTorch's native caching allocator (cudaMalloc segments), emulated",
    .open = pt_open_native,
    .alloc = pt_alloc,
    .free = pt_free,
    .reserved_window_peak = pt_window_peak,
    .counters = pt_counters,
    .close = pt_close,
};

const policy_ops policy_expandable_ops = {
    .name = "expandable",
    .summary = "PyTorch with expandable_segments:True (2/20 MiB pages), emulated",
    .open = pt_open_expandable,
    .alloc = pt_alloc,
    .free = pt_free,
    .reserved_window_peak = pt_window_peak,
    .counters = pt_counters,
    .close = pt_close,
};
