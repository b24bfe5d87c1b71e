/* Internal types of the core, shared by its files; nothing here is public.
 *
 * The model. Physical memory is a set of chunks (backend handles, sizes multiples of the
 * granularity G). Virtual memory is a set of ranges: two arenas (small pool, large pool), each a
 * large reservation where every chunk has its home slot, and stitched ranges, each a fresh
 * reservation onto which several chunks are mapped side by side. A chunk may be mapped in its
 * home and in any number of stitched ranges at once, but at any moment exactly one range owns
 * it: only there may its bytes be handed out. Elsewhere its slot is a LENT block.
 *
 * Each range is covered by an address-ordered list of blocks: FREE (in the pool's best-fit
 * index), ALLOC (live, in the pointer map), PENDING (freed, waiting for other streams' events),
 * LENT (the chunk is owned elsewhere) and HOLE (arena only: nothing mapped). Blocks never span a
 * HOLE/LENT boundary, and FREE neighbours are always merged unless their stream tags forbid it.
 *
 * Locking: one mutex per allocator guards everything below; every public entry takes it once.
 */
#ifndef VMS_INTERNAL_H
#define VMS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "vmstitch.h"

#define VMS_ALIGN_BYTES 512u
#define VMS_MAX_STREAMS 64
#define VMS_DEFERRED_VA_MAX 64
#define VMS_ORPHANS_MAX 64

typedef enum block_state {
    BLOCK_FREE = 0,
    BLOCK_ALLOC,
    BLOCK_PENDING,
    BLOCK_LENT,
    BLOCK_HOLE,
} block_state;

typedef enum pool_kind { POOL_SMALL = 0, POOL_LARGE = 1, POOL_COUNT = 2 } pool_kind;

typedef enum range_kind { RANGE_ARENA = 0, RANGE_STITCHED = 1 } range_kind;

struct range;
struct chunk;

typedef struct block {
    uintptr_t addr;
    size_t size_bytes;
    struct range *range;
    struct block *prev, *next; /* address order within the range */
    /* best-fit index (FREE only): treap keyed by (size_bytes, addr) */
    struct block *left, *right;
    uint32_t prio;
    size_t sub_max_bytes; /* address index only: largest size in the subtree */
    uint8_t state;
    uint8_t multi_stream; /* FREE: freed on several streams; usable once all have settled */
    uint16_t stream;      /* ALLOC: allocation stream; FREE: stream it was freed on */
    uint64_t freed_seq;   /* FREE: global free sequence number at the free */
    size_t requested_bytes;   /* ALLOC/PENDING */
    uint64_t extra_streams;   /* ALLOC: bit mask of other streams it was used on */
    struct pending_event *events; /* PENDING: events still to complete */
    struct block *pending_next;   /* PENDING: list of pending blocks */
    uint8_t needs_sync;           /* PENDING: an event could not be recorded; wait for a sync */
    uint8_t quarantine;           /* HOLE: an orphan may still be mapped here: do not use */
} block;

typedef struct pending_event {
    vms_event ev;
    struct pending_event *next;
} pending_event;

/* One physical chunk. */
typedef struct chunk {
    vms_handle handle;
    size_t size_bytes;
    struct range *home;      /* arena (its pool is the chunk's) */
    uintptr_t home_addr;
    struct range *owner;     /* range where its bytes may be handed out */
    uintptr_t owner_addr;
    size_t busy_bytes;       /* bytes of non-FREE blocks over it, in its owner */
    uint16_t stream;         /* stream tags of its last frees, as for FREE blocks */
    uint8_t multi_stream;
    uint64_t freed_seq;
    uint32_t stitch_refs;    /* stitched ranges that map it */
    struct chunk *all_next, *all_prev;
} chunk;

typedef struct range {
    range_kind kind;
    pool_kind pool;
    uintptr_t base;
    size_t size_bytes;
    chunk **pages;           /* size_bytes / G entries: chunk mapped at that page, or NULL */
    block *first;
    block *hint;             /* last block range_block_at found (may be stale: check ->range) */
    /* stitched ranges only */
    chunk **slots;           /* chunks in address order; NULL once unmapped (teardown) */
    size_t *slot_bytes;      /* size of each slot, kept after its chunk is unmapped */
    size_t nslots;
    size_t live_blocks;      /* ALLOC + PENDING blocks in it */
    uint64_t stream_mask;    /* streams that used it since it was last settled */
    uint64_t idle_seq;       /* global free seq when it last became idle */
    struct range *lru_prev, *lru_next; /* idle cached stitched ranges, oldest first */
    bool in_lru;
    struct range *all_next, *all_prev; /* every stitched range */
} range;

typedef struct stream_state {
    vms_stream stream;
    uint64_t completed_seq;  /* every free on it with seq <= this has finished on the device */
    uint64_t last_free_seq;
    vms_event inflight;      /* event recorded to advance completed_seq, or NULL */
    uint64_t inflight_seq;
} stream_state;

typedef struct ptr_map {
    uintptr_t *keys; /* 0 = empty */
    block **vals;
    size_t cap;      /* power of two */
    size_t count;
} ptr_map;

typedef struct config_resolved {
    size_t small_chunk_bytes, large_chunk_min_bytes, large_chunk_max_bytes;
    size_t small_request_bytes, stitch_min_bytes, gc_threshold_bytes, memory_limit_bytes;
    double reuse_limit;
    bool stitch_enable;
    int stitch_when, log_level, check_level;
    size_t gc_threshold_count;
} config_resolved;

struct vms_allocator {
    pthread_mutex_t lock;
    vms_backend *be;
    int device;
    size_t gran_bytes;
    config_resolved cfg;
    range *arena[POOL_COUNT];
    block *index_root[POOL_COUNT];   /* FREE blocks of each pool (arena + stitched ranges) */
    ptr_map live;
    block *pending;                 /* PENDING blocks */
    chunk *all_chunks;
    range *stitched;                /* all stitched ranges */
    range *lru_head, *lru_tail;     /* idle stitched ranges */
    size_t lru_count, lru_bytes;
    stream_state streams[VMS_MAX_STREAMS];
    int nstreams;
    uint64_t free_seq;
    uint32_t prio_state;
    vms_stats st;
    struct {
        uintptr_t addr;
        size_t bytes;
    } deferred_va[VMS_DEFERRED_VA_MAX]; /* releases that failed, to retry */
    size_t deferred_n;
    /* Chunks whose undo failed (a rollback's own driver call failed twice): still mapped at
     * addr (0: not mapped) and/or still held (handle != 0). Their bytes stay counted as
     * reserved and their arena range stays quarantined until a retry (GC, destroy) succeeds. */
    struct orphan {
        uintptr_t addr;
        size_t bytes;
        vms_handle handle;
        pool_kind pool;
        block *hole; /* the quarantined arena block holding addr, or NULL */
    } orphans[VMS_ORPHANS_MAX];
    size_t n_orphans;
    uint64_t orphan_bytes;
    block *spare_blocks;            /* recycled block structs */
};

/* config.c */
void config_resolve_into(const vms_config *in, size_t gran_bytes, config_resolved *out);

/* block_index.c: best-fit treap of FREE blocks */
void index_insert(block **root, block *b);
void index_remove(block **root, block *b);
block *index_lower_bound(block *root, size_t size_bytes, uintptr_t addr_after);
size_t index_count(block *root);
void addr_index_insert(block **root, block *b);
void addr_index_remove(block **root, block *b);
block *addr_index_first_fit(block *root, size_t size_bytes,
                            bool (*ok)(const void *, const block *), const void *ctx);
/* The pool's index: first fit by address for the small pool, best fit for the large one. */
void pool_index_insert(vms_allocator *a, pool_kind pool, block *b);
void pool_index_remove(vms_allocator *a, pool_kind pool, block *b);

/* ptr_map.c */
int ptr_map_init(ptr_map *m);
void ptr_map_free(ptr_map *m);
int ptr_map_put(ptr_map *m, uintptr_t key, block *val);
block *ptr_map_get(const ptr_map *m, uintptr_t key);
block *ptr_map_del(ptr_map *m, uintptr_t key);

/* streams.c */
int stream_index(vms_allocator *a, vms_stream s); /* -1 if the table is full */
void streams_refresh(vms_allocator *a);           /* record/query events, never blocks */
vms_status streams_sync_all(vms_allocator *a);    /* block until every free has finished */
bool tags_usable(const vms_allocator *a, int tag_stream, bool multi, uint64_t seq, int stream);
bool block_usable(const vms_allocator *a, const block *b, int stream);
void pending_poll(vms_allocator *a);              /* finish PENDING blocks whose events are done */
bool range_settled(const vms_allocator *a, const range *r);
bool chunk_settled(const vms_allocator *a, const chunk *c);

/* range.c: blocks within ranges and chunk ownership */
block *block_new(vms_allocator *a, range *r, uintptr_t addr, size_t size, block_state st);
void block_set_free(vms_allocator *a, block *b); /* state -> FREE, index insert, merge */
block *block_take(vms_allocator *a, block *b, uintptr_t addr, size_t size_bytes);
void chunk_busy_add(vms_allocator *a, range *r, uintptr_t addr, size_t len, const block *freed);
range *range_new(vms_allocator *a, range_kind kind, pool_kind pool, uintptr_t base, size_t size);
void range_delete(vms_allocator *a, range *r);
vms_status chunks_transfer(vms_allocator *a, chunk *const *cs, size_t n, range *to,
                           uintptr_t to_addr);
block *range_block_at(range *r, uintptr_t addr); /* block containing addr */
void range_pages_set(vms_allocator *a, range *r, uintptr_t addr, size_t bytes, chunk *c);
void block_set_hole(vms_allocator *a, block *b);
block *block_isolate(vms_allocator *a, block *b, uintptr_t addr, size_t len);

/* grow.c: new chunks in an arena */
vms_status grow_for(vms_allocator *a, pool_kind pool, size_t size_bytes, int stream, block **out,
                    uintptr_t *take_at);
vms_status chunk_release_free(vms_allocator *a);
size_t grow_estimate(vms_allocator *a, pool_kind pool, size_t size_bytes, int stream);
vms_status grow_loose(vms_allocator *a, pool_kind pool, size_t need_bytes, int stream);
void orphans_retry(vms_allocator *a);
void orphan_note_mapping(vms_allocator *a, uintptr_t addr, size_t bytes);

/* stitch.c */
vms_status stitch_for(vms_allocator *a, pool_kind pool, size_t size_bytes, int stream, bool allow_grow,
                      block **out); /* *out: take from its front */
void stitched_on_idle(vms_allocator *a, range *r);
void stitched_on_busy(vms_allocator *a, range *r);
vms_status gc_run(vms_allocator *a, bool force);
vms_status range_unmap_all(vms_allocator *a, range *r);
void stitched_forget(vms_allocator *a, range *r);

/* allocator.c */
void free_finish(vms_allocator *a, block *b);
vms_status test_plant_overlap(vms_allocator *a, size_t size_bytes, void **ptr);

/* stats.c. stats_add is inline: the malloc/free path makes several of these per call. */
static inline void stats_add(uint64_t *cur, uint64_t *peak, int64_t delta) {
    *cur = (uint64_t)((int64_t)*cur + delta);
    if (*cur > *peak) *peak = *cur;
}
void stats_cached_sync(vms_allocator *a);
void stats_live(vms_allocator *a, const block *b, int sign);
#define STAT_ADD(a, name, delta)                                                                 \
    stats_add(&(a)->st.name##_current, &(a)->st.name##_peak, (int64_t)(delta))

/* backend_call.c: counted, error-checked calls */
vms_status bk_create(vms_allocator *a, size_t bytes, vms_handle *h);
vms_status bk_release(vms_allocator *a, vms_handle h, size_t bytes);
vms_status bk_reserve(vms_allocator *a, size_t bytes, uintptr_t *addr);
vms_status bk_va_free(vms_allocator *a, uintptr_t addr, size_t bytes);
void bk_va_free_retry(vms_allocator *a);
vms_status bk_undo_unmap(vms_allocator *a, uintptr_t addr, size_t bytes);
vms_status bk_undo_release(vms_allocator *a, vms_handle h, size_t bytes);
vms_status bk_undo_map(vms_allocator *a, uintptr_t addr, size_t bytes, vms_handle h);
vms_status bk_map(vms_allocator *a, uintptr_t addr, size_t bytes, vms_handle h);
vms_status bk_unmap(vms_allocator *a, uintptr_t addr, size_t bytes);
vms_status bk_set_access(vms_allocator *a, uintptr_t addr, size_t bytes, size_t handles);

/* check.c */
size_t check_locked(vms_allocator *a);

/* status.c */
void oom_report_set(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
void log_msg(int level, int cfg_level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static inline size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }

#endif
