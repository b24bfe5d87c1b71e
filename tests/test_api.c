/* Integration tests of the public API, each run on both the host backend (real memory, real
 * aliasing) and the sim backend (address arithmetic only): size 0 and NULL, alignment,
 * stitching (a request that only fits by stitching succeeds without growing the pool, and on
 * host the stitched range really aliases the freed chunks), per-stream reuse and event-gated
 * cross-stream reuse with held streams, record_stream, the LRU garbage collection of cached
 * stitched ranges, the out-of-memory ladder and its report, bad input, the statistics and their
 * JSON, packing of small requests, several allocators at once, empty_cache and the memory limit.
 *
 * On host every live allocation is filled with a pattern unique to it and checked completely at
 * free, so two live blocks that share a byte are caught. vms_check must report zero after every
 * step. Tests create and destroy their own backends and allocators. Single-threaded except
 * api_separate_backends_in_threads.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "test_config.h"
#include "vmstitch.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)

#define S(k) ((vms_stream)(uintptr_t)(k))

/* Runs one body on both backends, as api_NAME_sim and api_NAME_host. */
#define BOTH(name)                                                                                 \
    static void name##_on(bool host);                                                              \
    TEST(api_##name##_sim) {                                                                       \
        name##_on(false);                                                                          \
    }                                                                                              \
    TEST(api_##name##_host) {                                                                      \
        name##_on(true);                                                                           \
    }                                                                                              \
    static void name##_on(bool host)

typedef struct env {
    vms_backend *be;
    vms_allocator *a;
    bool host;
    size_t g;
} env;

static vms_status env_new(env *e, bool host, size_t g, size_t cap, const vms_config *cfg_in) {
    /* Chunk sizes left unset get fixed values here, not the environment's. */
    vms_config cfg_v = *cfg_in, *cfg = &cfg_v;
    if (cfg->small_chunk_bytes == VMS_UNSET) cfg->small_chunk_bytes = (int64_t)g;
    if (cfg->large_chunk_min_bytes == VMS_UNSET) cfg->large_chunk_min_bytes = (int64_t)g;
    if (cfg->large_chunk_max_bytes == VMS_UNSET)
        cfg->large_chunk_max_bytes = (int64_t)(g > 8 * MIB ? g : 8 * MIB);
    e->host = host;
    e->g = g;
    e->be = NULL;
    e->a = NULL;
    vms_status s =
        host ? vms_backend_host_create(g, cap, &e->be) : vms_backend_sim_create(g, cap, &e->be);
    if (s != VMS_OK) return s;
    s = vms_allocator_create(cfg, e->be, 0, &e->a);
    if (s != VMS_OK) {
        vms_backend_destroy(e->be);
        e->be = NULL;
    }
    return s;
}

static void env_free(env *e) {
    vms_allocator_destroy(e->a);
    vms_backend_destroy(e->be);
    e->a = NULL;
    e->be = NULL;
}

/* Every chunk is one granule, and one-granule requests go to the large pool. */
static vms_config granule_config(size_t g) {
    return test_chunk_config(g, g, 4096);
}

static vms_stats stats_of(vms_allocator *a) {
    vms_stats s;
    memset(&s, 0, sizeof s);
    vms_stats_get(a, &s);
    return s;
}

static vms_backend_counters counters_of(vms_backend *b) {
    vms_backend_counters c;
    memset(&c, 0, sizeof c);
    vms_backend_counters_get(b, &c);
    return c;
}

static size_t round512(size_t n) {
    return (n + 511) / 512 * 512;
}

/* ---------------------------------------------------------------- patterns (host only) */

static uint64_t pat_word(uint64_t id, size_t i) {
    return (id << 32) ^ (uint64_t)i ^ 0x5bd1e995ull;
}

static void pat_fill(void *p, size_t n, uint64_t id) {
    uint64_t *w = p;
    size_t nw = n / 8;
    for (size_t i = 0; i < nw; i++)
        w[i] = pat_word(id, i);
    uint64_t last = pat_word(id, nw);
    memcpy((char *)p + nw * 8, &last, n % 8);
}

/* Words (and the tail, as one) of p[0..n) that differ from the pattern of id. */
static size_t pat_bad(const void *p, size_t n, uint64_t id) {
    const uint64_t *w = p;
    size_t nw = n / 8, bad = 0;
    for (size_t i = 0; i < nw; i++)
        bad += w[i] != pat_word(id, i);
    uint64_t last = pat_word(id, nw);
    bad += memcmp((const char *)p + nw * 8, &last, n % 8) != 0;
    return bad;
}

/* The pattern of `id` over bytes [off, off+n) of its allocation (off a multiple of 8). */
static size_t pat_bad_at(const void *p, size_t n, uint64_t id, size_t off) {
    const uint64_t *w = p;
    size_t bad = 0;
    for (size_t i = 0; i < n / 8; i++)
        bad += w[i] != pat_word(id, off / 8 + i);
    return bad;
}

/* A live allocation, tracked by the test. */
typedef struct live {
    void *p;
    size_t n;
    uint64_t id;
} live;

static uint64_t next_id = 1;

static vms_status live_malloc(env *e, live *l, size_t n, vms_stream s) {
    l->n = n;
    l->id = next_id++;
    vms_status st = vms_malloc(e->a, n, s, &l->p);
    if (st == VMS_OK && e->host && l->p) pat_fill(l->p, n, l->id);
    CHECK_EQ(vms_check(e->a), 0);
    return st;
}

/* Checks the pattern, then frees. Both helpers run vms_check after the step. */
static void live_free(env *e, live *l) {
    if (e->host && l->p) {
        size_t bad = pat_bad(l->p, l->n, l->id);
        if (bad)
            fprintf(stderr, "    allocation %p (%zu B, id %llu) overwritten: %zu words\n", l->p,
                    l->n, (unsigned long long)l->id, bad);
        CHECK_EQ(bad, 0);
    }
    CHECK_EQ(vms_free(e->a, l->p), VMS_OK);
    CHECK_EQ(vms_check(e->a), 0);
    l->p = NULL;
}

#define CHECK_HEALTHY(a) CHECK_EQ(vms_check(a), 0)

/* n one-granule blocks on stream s, every odd one then freed: free chunks scattered between
 * live blocks, which only stitching can join. 0, or -1 if a malloc failed. */
static int live_fragment(env *e, live *l, int n, vms_stream s) {
    for (int i = 0; i < n; i++)
        if (live_malloc(e, &l[i], e->g, s) != VMS_OK) return -1;
    for (int i = 1; i < n; i += 2)
        live_free(e, &l[i]);
    return 0;
}

/* ---------------------------------------------------------------- basics */

BOTH(size_zero_and_null) {
    env e;
    vms_config cfg = test_base_config();
    REQUIRE(env_new(&e, host, 2 * MIB, 0, &cfg) == VMS_OK);
    vms_stats before = stats_of(e.a);
    void *p = (void *)&e;
    CHECK_EQ(vms_malloc(e.a, 0, NULL, &p), VMS_OK);
    CHECK(p == NULL);
    CHECK_EQ(vms_free(e.a, NULL), VMS_OK);
    CHECK_EQ(vms_allocation_size(e.a, NULL), 0);
    vms_stats after = stats_of(e.a);
    CHECK_EQ(after.reserved_bytes_current, before.reserved_bytes_current);
    CHECK_EQ(after.allocated_bytes_current, 0);
    CHECK_EQ(after.frees, before.frees);
    CHECK_HEALTHY(e.a);
    env_free(&e);
}

BOTH(alignment_and_sizes) {
    env e;
    vms_config cfg = test_base_config();
    REQUIRE(env_new(&e, host, host ? 64 * KIB : 2 * MIB, 0, &cfg) == VMS_OK);
    const size_t sizes[] = {1,    7,       8,           511,     512,         513,
                            1000, 4097,    65535,       65536,   65537,       MIB - 1,
                            MIB,  MIB + 1, 3 * MIB + 5, 9 * MIB, 17 * MIB + 3};
    enum { N = sizeof sizes / sizeof sizes[0] };
    live l[2 * N];
    vms_stream streams[2] = {NULL, S(1)};
    for (int i = 0; i < 2 * N; i++) {
        REQUIRE(live_malloc(&e, &l[i], sizes[i % N], streams[i / N]) == VMS_OK);
        REQUIRE(l[i].p != NULL);
        CHECK_EQ((uintptr_t)l[i].p % 512, 0);
        CHECK_EQ(vms_allocation_size(e.a, l[i].p), sizes[i % N]);
        CHECK_HEALTHY(e.a);
    }
    /* no two live blocks overlap (by address; on host, by bytes too) */
    for (int i = 0; i < 2 * N; i++)
        for (int j = i + 1; j < 2 * N; j++) {
            uintptr_t a0 = (uintptr_t)l[i].p, a1 = a0 + l[i].n, b0 = (uintptr_t)l[j].p,
                      b1 = b0 + l[j].n;
            CHECK(a1 <= b0 || b1 <= a0);
        }
    for (int i = 0; i < 2 * N; i++) {
        live_free(&e, &l[i]);
        CHECK_HEALTHY(e.a);
    }
    vms_stats st = stats_of(e.a);
    CHECK_EQ(st.allocated_bytes_current, 0);
    CHECK_EQ(st.requested_bytes_current, 0);
    env_free(&e);
}

/* ---------------------------------------------------------------- stitching */

/* n one-granule blocks on stream 0 under a limit of n granules; every odd one freed (after its
 * pattern is written), then a request of `want` granules. */
typedef struct stitch_setup {
    env e;
    live blk[8];
    void *freed_at[8];
    int n;
} stitch_setup;

static int stitch_prepare(stitch_setup *t, bool host, size_t g, bool stitch_on) {
    vms_config cfg = granule_config(g);
    t->n = 8;
    cfg.memory_limit_bytes = (int64_t)(t->n * g);
    cfg.stitch_enable = stitch_on;
    if (env_new(&t->e, host, g, 0, &cfg) != VMS_OK) return -1;
    for (int i = 0; i < t->n; i++)
        if (live_malloc(&t->e, &t->blk[i], g, NULL) != VMS_OK) return -1;
    for (int i = 1; i < t->n; i += 2) {
        t->freed_at[i] = t->blk[i].p;
        live_free(&t->e, &t->blk[i]);
    }
    return vms_check(t->e.a) == 0 ? 0 : -1;
}

static void stitch_case(bool host, size_t g) {
    stitch_setup t;
    REQUIRE(stitch_prepare(&t, host, g, true) == 0);
    vms_allocator *a = t.e.a;
    vms_stats st0 = stats_of(a);
    vms_backend_counters bc0 = counters_of(t.e.be);
    CHECK_EQ(st0.reserved_bytes_current, 8 * g);
    /* No free block holds 3 granules, and the limit forbids growth: only stitching serves it. */
    void *q = NULL;
    REQUIRE(vms_malloc(a, 3 * g, NULL, &q) == VMS_OK);
    CHECK_HEALTHY(a);
    vms_stats st1 = stats_of(a);
    vms_backend_counters bc1 = counters_of(t.e.be);
    CHECK_EQ(st1.stitches, st0.stitches + 1);
    CHECK_EQ(st1.reserved_bytes_current, st0.reserved_bytes_current);
    CHECK_EQ(st1.chunks_current, st0.chunks_current);
    CHECK_EQ(st1.grows, st0.grows);
    CHECK_EQ(st1.oom_retries, st0.oom_retries);
    CHECK_EQ(bc1.create, bc0.create);
    CHECK_EQ(bc1.map, bc0.map + 3); /* three chunks mapped side by side */
    CHECK_EQ(st1.stitched_ranges_current, 1);
    int stitched_from[3] = {-1, -1, -1};
    if (host) {
        /* Each granule of the stitched block is the physical memory of one freed block: it
         * still holds that block's pattern, and no two granules share a chunk. */
        for (int k = 0; k < 3; k++) {
            const char *gk = (const char *)q + (size_t)k * g;
            for (int i = 1; i < t.n; i += 2)
                if (pat_bad(gk, g, t.blk[i].id) == 0) stitched_from[k] = i;
            CHECK(stitched_from[k] >= 0);
        }
        CHECK(stitched_from[0] != stitched_from[1] && stitched_from[1] != stitched_from[2] &&
              stitched_from[0] != stitched_from[2]);
        /* the live blocks are untouched */
        for (int i = 0; i < t.n; i += 2)
            CHECK_EQ(pat_bad(t.blk[i].p, g, t.blk[i].id), 0);
        /* write through the stitched range */
        pat_fill(q, 3 * g, 1000);
    }
    CHECK_EQ(vms_free(a, q), VMS_OK);
    CHECK_HEALTHY(a);
    vms_stats st2 = stats_of(a);
    CHECK_EQ(st2.stitched_ranges_current, 1); /* cached, not unmapped */
    CHECK_EQ(st2.stitched_cached_bytes_current, 3 * g);
    /* One-granule requests land back in the chunks at their home addresses, and see there what
     * was written through the stitched range. */
    live again[4];
    for (int k = 0; k < 4; k++) {
        again[k].n = g;
        again[k].id = next_id++;
        REQUIRE(vms_malloc(a, g, NULL, &again[k].p) == VMS_OK);
        bool at_home = false;
        for (int i = 1; i < t.n; i += 2)
            at_home |= again[k].p == t.freed_at[i];
        CHECK(at_home);
        for (int j = 0; j < k; j++)
            CHECK(again[j].p != again[k].p);
    }
    vms_stats st3 = stats_of(a);
    CHECK_EQ(st3.reserved_bytes_current, 8 * g);
    CHECK_EQ(st3.grows, st0.grows);
    CHECK_HEALTHY(a);
    if (host) {
        int seen_new = 0;
        for (int k = 0; k < 4; k++) {
            int found = 0;
            for (int j = 0; j < 3; j++)
                if (pat_bad_at(again[k].p, g, 1000, (size_t)j * g) == 0) {
                    found = 1;
                    seen_new++;
                }
            if (!found) {
                /* the granule that was not stitched keeps the pattern of the block freed there */
                int old = 0;
                for (int i = 1; i < t.n; i += 2)
                    old |= pat_bad(again[k].p, g, t.blk[i].id) == 0;
                CHECK(old);
            }
        }
        CHECK_EQ(seen_new, 3);
        for (int k = 0; k < 4; k++)
            pat_fill(again[k].p, g, again[k].id);
    }
    for (int k = 0; k < 4; k++)
        live_free(&t.e, &again[k]);
    for (int i = 0; i < t.n; i += 2)
        live_free(&t.e, &t.blk[i]);
    CHECK_HEALTHY(a);
    env_free(&t.e);
}

TEST(api_stitch_host_64k_real_bytes) {
    stitch_case(true, 64 * KIB);
}
TEST(api_stitch_host_2m_real_bytes) {
    stitch_case(true, 2 * MIB);
}
TEST(api_stitch_sim) {
    stitch_case(false, 2 * MIB);
}

/* With stitching switched off the same request cannot be served from the pool as it is: it
 * fails, or succeeds only by releasing free chunks and creating new ones (the OOM ladder). */
BOTH(stitch_off_needs_new_chunks) {
    size_t g = host ? 64 * KIB : 2 * MIB;
    stitch_setup t;
    REQUIRE(stitch_prepare(&t, host, g, false) == 0);
    vms_allocator *a = t.e.a;
    vms_stats st0 = stats_of(a);
    vms_backend_counters bc0 = counters_of(t.e.be);
    void *q = NULL;
    vms_status s = vms_malloc(a, 3 * g, NULL, &q);
    vms_stats st1 = stats_of(a);
    vms_backend_counters bc1 = counters_of(t.e.be);
    CHECK_EQ(st1.stitches, 0);
    CHECK(s == VMS_ENOMEM ||
          (s == VMS_OK && bc1.create > bc0.create && st1.oom_retries > st0.oom_retries));
    CHECK(st1.reserved_bytes_peak <= 8 * g);
    CHECK_HEALTHY(a);
    if (s == VMS_OK) CHECK_EQ(vms_free(a, q), VMS_OK);
    for (int i = 0; i < t.n; i += 2)
        live_free(&t.e, &t.blk[i]);
    env_free(&t.e);
}

/* stitch_min_bytes: smaller requests are never stitched (they grow instead). */
BOTH(stitch_min_respected) {
    size_t g = host ? 64 * KIB : 2 * MIB;
    vms_config cfg = granule_config(g);
    cfg.stitch_min_bytes = (int64_t)(4 * g);
    env e;
    REQUIRE(env_new(&e, host, g, 0, &cfg) == VMS_OK);
    live l[8];
    REQUIRE(live_fragment(&e, l, 8, NULL) == 0);
    live q;
    REQUIRE(live_malloc(&e, &q, 3 * g, NULL) == VMS_OK);
    vms_stats st = stats_of(e.a);
    CHECK_EQ(st.stitches, 0);
    live r;
    REQUIRE(live_malloc(&e, &r, 4 * g, NULL) == VMS_OK);
    st = stats_of(e.a);
    CHECK_EQ(st.stitches, 1);
    CHECK_HEALTHY(e.a);
    live_free(&e, &q);
    live_free(&e, &r);
    for (int i = 0; i < 8; i += 2)
        live_free(&e, &l[i]);
    env_free(&e);
}

/* VMS_STITCH_ON_GROW_FAIL: with room to grow it grows; at the limit it stitches. */
BOTH(stitch_when_on_grow_fail) {
    size_t g = host ? 64 * KIB : 2 * MIB;
    vms_config cfg = granule_config(g);
    cfg.stitch_when = VMS_STITCH_ON_GROW_FAIL;
    env e;
    REQUIRE(env_new(&e, host, g, 0, &cfg) == VMS_OK);
    live l[8], q, r;
    REQUIRE(live_fragment(&e, l, 8, NULL) == 0);
    REQUIRE(live_malloc(&e, &q, 3 * g, NULL) == VMS_OK);
    vms_stats st = stats_of(e.a);
    CHECK_EQ(st.stitches, 0);
    uint64_t grown = st.reserved_bytes_current;
    CHECK(grown > 8 * g);
    CHECK_EQ(vms_set_memory_limit(e.a, grown), VMS_OK);
    REQUIRE(live_malloc(&e, &r, 3 * g, NULL) == VMS_OK);
    st = stats_of(e.a);
    CHECK_EQ(st.stitches, 1);
    CHECK_EQ(st.reserved_bytes_current, grown);
    live_free(&e, &q);
    live_free(&e, &r);
    for (int i = 0; i < 8; i += 2)
        live_free(&e, &l[i]);
    env_free(&e);
}

/* A stitched range that is live keeps its chunks: one-granule requests meanwhile grow. */
BOTH(stitched_chunks_not_handed_out_twice) {
    size_t g = host ? 64 * KIB : 2 * MIB;
    vms_config cfg = granule_config(g);
    env e;
    REQUIRE(env_new(&e, host, g, 0, &cfg) == VMS_OK);
    live l[10];
    REQUIRE(live_fragment(&e, l, 10, NULL) == 0);
    live s[2];
    REQUIRE(live_malloc(&e, &s[0], 2 * g + 512, NULL) == VMS_OK); /* 3 chunks, part of last free */
    live small[6];
    for (int i = 0; i < 6; i++) {
        REQUIRE(live_malloc(&e, &small[i], g / 2, NULL) == VMS_OK);
        CHECK_HEALTHY(e.a);
    }
    REQUIRE(live_malloc(&e, &s[1], 2 * g, NULL) == VMS_OK);
    CHECK_HEALTHY(e.a);
    for (int i = 0; i < 6; i++)
        live_free(&e, &small[i]);
    live_free(&e, &s[0]);
    live_free(&e, &s[1]);
    for (int i = 0; i < 10; i += 2)
        live_free(&e, &l[i]);
    CHECK_HEALTHY(e.a);
    env_free(&e);
}

/* ---------------------------------------------------------------- streams */

/* The smallest reproduction: memory freed on a stream that is still running must not go to
 * another stream, even when the arena grows next to it. */
BOTH(no_cross_stream_reuse_while_busy) {
    env e;
    vms_config cfg = test_base_config();
    REQUIRE(env_new(&e, host, 2 * MIB, 0, &cfg) == VMS_OK);
    void *p, *q;
    REQUIRE(vms_malloc(e.a, 4 * MIB, S(1), &p) == VMS_OK);
    REQUIRE(vms_backend_stream_hold(e.be, S(1), 1) == VMS_OK);
    REQUIRE(vms_free(e.a, p) == VMS_OK);
    REQUIRE(vms_malloc(e.a, 4 * MIB, S(2), &q) == VMS_OK);
    CHECK((char *)q >= (char *)p + 4 * MIB || (char *)q + 4 * MIB <= (char *)p);
    CHECK_HEALTHY(e.a);
    REQUIRE(vms_backend_stream_hold(e.be, S(1), 0) == VMS_OK);
    CHECK_EQ(vms_free(e.a, q), VMS_OK);
    env_free(&e);
}

static void stream_reuse_case(bool host, size_t n) {
    env e;
    vms_config cfg = test_base_config();
    REQUIRE(env_new(&e, host, 2 * MIB, 0, &cfg) == VMS_OK);
    live p;
    REQUIRE(live_malloc(&e, &p, n, S(1)) == VMS_OK);
    void *p_addr = p.p;
    REQUIRE(vms_backend_stream_hold(e.be, S(1), 1) == VMS_OK);
    live_free(&e, &p);
    /* The same stream reuses it at once, with no event and no wait. */
    vms_backend_counters bc0 = counters_of(e.be);
    live q;
    REQUIRE(live_malloc(&e, &q, n, S(1)) == VMS_OK);
    vms_backend_counters bc1 = counters_of(e.be);
    CHECK(q.p == p_addr);
    CHECK_EQ(bc1.event_record, bc0.event_record);
    CHECK_EQ(bc1.event_sync, bc0.event_sync);
    live_free(&e, &q);
    /* Another stream must not get it while stream 1 may still be using it. */
    live r;
    REQUIRE(live_malloc(&e, &r, n, S(2)) == VMS_OK);
    CHECK((uintptr_t)r.p + n <= (uintptr_t)p_addr || (uintptr_t)p_addr + n <= (uintptr_t)r.p);
    CHECK_HEALTHY(e.a);
    vms_stats st0 = stats_of(e.a);
    /* Once the stream is done, the other stream may reuse it without growing. */
    REQUIRE(vms_backend_stream_hold(e.be, S(1), 0) == VMS_OK);
    live t;
    REQUIRE(live_malloc(&e, &t, n, S(2)) == VMS_OK);
    if (n > MIB)
        CHECK(t.p == p_addr); /* the only free block that fits (small: first fit may
                                 take another) */
    vms_stats st1 = stats_of(e.a);
    CHECK_EQ(st1.reserved_bytes_current, st0.reserved_bytes_current);
    CHECK_HEALTHY(e.a);
    live_free(&e, &r);
    live_free(&e, &t);
    env_free(&e);
}

BOTH(stream_reuse_small) {
    stream_reuse_case(host, 4 * KIB);
}
BOTH(stream_reuse_large) {
    stream_reuse_case(host, 3 * MIB);
}

static void record_stream_case(bool host, size_t n) {
    env e;
    vms_config cfg = test_base_config();
    REQUIRE(env_new(&e, host, 2 * MIB, 0, &cfg) == VMS_OK);
    live p;
    REQUIRE(live_malloc(&e, &p, n, S(1)) == VMS_OK);
    void *p_addr = p.p;
    CHECK_EQ(vms_record_stream(e.a, p.p, S(2)), VMS_OK);
    CHECK_EQ(vms_record_stream(e.a, p.p, S(1)), VMS_OK); /* its own stream: no effect */
    REQUIRE(vms_backend_stream_hold(e.be, S(2), 1) == VMS_OK);
    live_free(&e, &p);
    vms_stats st = stats_of(e.a);
    CHECK_EQ(st.allocated_bytes_current, 0);
    CHECK_EQ(st.active_bytes_current, round512(n)); /* freed, awaiting stream 2 */
    CHECK_HEALTHY(e.a);
    /* Not even its own stream may reuse it before stream 2 is done. */
    live q[3];
    vms_stream qs[3] = {S(1), S(3), S(1)};
    for (int i = 0; i < 3; i++) {
        REQUIRE(live_malloc(&e, &q[i], n, qs[i]) == VMS_OK);
        uintptr_t a0 = (uintptr_t)q[i].p;
        CHECK(a0 + n <= (uintptr_t)p_addr || (uintptr_t)p_addr + n <= a0);
        CHECK_HEALTHY(e.a);
    }
    REQUIRE(vms_backend_stream_hold(e.be, S(2), 0) == VMS_OK);
    if (n > MIB) {
        /* No free block fits but the one awaiting stream 2: it comes back, without growing. */
        vms_stats st0 = stats_of(e.a);
        live t;
        REQUIRE(live_malloc(&e, &t, n, S(1)) == VMS_OK);
        CHECK(t.p == p_addr);
        vms_stats st1 = stats_of(e.a);
        CHECK_EQ(st1.reserved_bytes_current, st0.reserved_bytes_current);
        live_free(&e, &t);
    }
    for (int i = 0; i < 3; i++)
        live_free(&e, &q[i]);
    CHECK_EQ(vms_empty_cache(e.a), VMS_OK);
    st = stats_of(e.a);
    CHECK_EQ(st.active_bytes_current, 0);
    CHECK_EQ(st.reserved_bytes_current, 0);
    CHECK_HEALTHY(e.a);
    env_free(&e);
}

BOTH(record_stream_small) {
    record_stream_case(host, 4 * KIB);
}
BOTH(record_stream_large) {
    record_stream_case(host, 3 * MIB);
}

/* ---------------------------------------------------------------- GC of stitched ranges */

BOTH(gc_oldest_first_not_while_held) {
    size_t g = host ? 64 * KIB : 2 * MIB;
    vms_config cfg = granule_config(g);
    cfg.reuse_limit = 1; /* only an exact size reuses a cached range */
    cfg.gc_threshold_count = 2;
    env e;
    REQUIRE(env_new(&e, host, g, 0, &cfg) == VMS_OK);
    live l[16];
    REQUIRE(live_fragment(&e, l, 16, S(1)) == 0);
    REQUIRE(vms_backend_stream_hold(e.be, S(1), 1) == VMS_OK);
    /* Ranges A (2 granules), B (3), C (4), each used on stream 1 and freed while it runs. */
    void *base[3];
    for (int k = 0; k < 3; k++) {
        live x;
        REQUIRE(live_malloc(&e, &x, (size_t)(k + 2) * g, S(1)) == VMS_OK);
        base[k] = x.p;
        live_free(&e, &x);
        CHECK_HEALTHY(e.a);
    }
    vms_stats st = stats_of(e.a);
    CHECK_EQ(st.stitches, 3);
    /* Over the count threshold, but the oldest's stream is busy: nothing is unmapped. */
    CHECK_EQ(st.gc_ranges_freed, 0);
    CHECK_EQ(st.stitched_ranges_current, 3);
    CHECK_EQ(st.stitched_cached_bytes_current, 9 * g);
    CHECK(st.event_waits >= 1);
    uint64_t unmaps_held = st.backend_unmap;
    REQUIRE(vms_backend_stream_hold(e.be, S(1), 0) == VMS_OK);
    /* Reusing B and freeing it again runs the GC: now A, the oldest, goes. */
    live b;
    REQUIRE(live_malloc(&e, &b, 3 * g, S(1)) == VMS_OK);
    CHECK(b.p == base[1]);
    live_free(&e, &b);
    st = stats_of(e.a);
    CHECK_EQ(st.stitch_reuses, 1);
    CHECK_EQ(st.gc_ranges_freed, 1);
    CHECK_EQ(st.stitched_ranges_current, 2);
    CHECK_EQ(st.stitched_cached_bytes_current, 7 * g);
    CHECK_EQ(st.backend_unmap, unmaps_held + 2); /* A's two chunks */
    /* C is still cached (exact size: reused at its address); A is not (a new range). */
    live c, d;
    REQUIRE(live_malloc(&e, &c, 4 * g, S(1)) == VMS_OK);
    CHECK(c.p == base[2]);
    REQUIRE(live_malloc(&e, &d, 2 * g, S(1)) == VMS_OK);
    st = stats_of(e.a);
    CHECK_EQ(st.stitch_reuses, 2);
    CHECK_EQ(st.stitches, 4);
    CHECK_HEALTHY(e.a);
    live_free(&e, &c);
    live_free(&e, &d);
    for (int i = 0; i < 16; i += 2)
        live_free(&e, &l[i]);
    CHECK_HEALTHY(e.a);
    env_free(&e);
}

/* empty_cache must not unmap or release what a stream that cannot be waited for may still use
 * (the held stream stands for a kernel still running). */
BOTH(empty_cache_respects_busy_stream) {
    size_t g = host ? 64 * KIB : 2 * MIB;
    vms_config cfg = granule_config(g);
    env e;
    REQUIRE(env_new(&e, host, g, 0, &cfg) == VMS_OK);
    live l[8];
    REQUIRE(live_fragment(&e, l, 8, S(1)) == 0);
    CHECK_EQ(vms_empty_cache(e.a), VMS_OK); /* nothing busy: the 4 free chunks go */
    vms_stats st = stats_of(e.a);
    CHECK_EQ(st.reserved_bytes_current, 4 * g);
    live s;
    REQUIRE(live_malloc(&e, &s, 3 * g, S(1)) == VMS_OK); /* grows 3 chunks */
    for (int i = 0; i < 8; i += 2)
        live_free(&e, &l[i]);
    REQUIRE(vms_backend_stream_hold(e.be, S(1), 1) == VMS_OK);
    live_free(&e, &s);
    vms_stats st0 = stats_of(e.a);
    CHECK_EQ(vms_empty_cache(e.a), VMS_OK);
    vms_stats st1 = stats_of(e.a);
    CHECK_EQ(st1.reserved_bytes_current, st0.reserved_bytes_current);
    CHECK_EQ(st1.backend_release, st0.backend_release);
    CHECK_HEALTHY(e.a);
    REQUIRE(vms_backend_stream_hold(e.be, S(1), 0) == VMS_OK);
    CHECK_EQ(vms_empty_cache(e.a), VMS_OK);
    st = stats_of(e.a);
    CHECK_EQ(st.reserved_bytes_current, 0);
    CHECK_HEALTHY(e.a);
    env_free(&e);
}

BOTH(empty_cache_keeps_stitched_range_of_busy_stream) {
    size_t g = host ? 64 * KIB : 2 * MIB;
    vms_config cfg = granule_config(g);
    env e;
    REQUIRE(env_new(&e, host, g, 0, &cfg) == VMS_OK);
    live l[6];
    REQUIRE(live_fragment(&e, l, 6, S(1)) == 0);
    live s;
    REQUIRE(live_malloc(&e, &s, 3 * g, S(1)) == VMS_OK); /* all three free chunks */
    vms_stats st = stats_of(e.a);
    REQUIRE(st.stitches == 1);
    REQUIRE(vms_backend_stream_hold(e.be, S(1), 1) == VMS_OK);
    live_free(&e, &s);
    vms_stats st0 = stats_of(e.a);
    CHECK_EQ(vms_empty_cache(e.a), VMS_OK);
    vms_stats st1 = stats_of(e.a);
    CHECK_EQ(st1.stitched_ranges_current, 1);
    CHECK_EQ(st1.backend_unmap, st0.backend_unmap);
    CHECK_EQ(st1.reserved_bytes_current, st0.reserved_bytes_current);
    CHECK_HEALTHY(e.a);
    REQUIRE(vms_backend_stream_hold(e.be, S(1), 0) == VMS_OK);
    CHECK_EQ(vms_empty_cache(e.a), VMS_OK);
    st = stats_of(e.a);
    CHECK_EQ(st.stitched_ranges_current, 0);
    CHECK_EQ(st.reserved_bytes_current, 3 * g);
    for (int i = 0; i < 6; i += 2)
        live_free(&e, &l[i]);
    CHECK_HEALTHY(e.a);
    env_free(&e);
}

/* ---------------------------------------------------------------- out of memory */

BOTH(oom_ladder) {
    const size_t g = 2 * MIB;
    vms_config cfg = test_base_config();
    cfg.small_chunk_bytes = (int64_t)g;
    cfg.large_chunk_min_bytes = (int64_t)g;
    cfg.large_chunk_max_bytes = (int64_t)(4 * g);
    cfg.memory_limit_bytes = (int64_t)(4 * g);
    env e;
    REQUIRE(env_new(&e, host, g, 0, &cfg) == VMS_OK);
    live a1, a2;
    REQUIRE(live_malloc(&e, &a1, 2 * g, NULL) == VMS_OK);
    REQUIRE(live_malloc(&e, &a2, 2 * g, NULL) == VMS_OK);
    live_free(&e, &a1);
    vms_stats st0 = stats_of(e.a);
    CHECK_EQ(st0.reserved_bytes_current, 4 * g);
    /* A small request needs a small chunk: over the limit until the ladder releases a1's. */
    live s;
    REQUIRE(live_malloc(&e, &s, 4 * KIB, NULL) == VMS_OK);
    vms_stats st1 = stats_of(e.a);
    CHECK_EQ(st1.oom_retries, st0.oom_retries + 1);
    CHECK_EQ(st1.ooms, st0.ooms);
    CHECK_EQ(st1.reserved_bytes_current, 3 * g);
    CHECK_EQ(st1.small_reserved_bytes_current, g);
    CHECK_HEALTHY(e.a);
    /* Beyond the limit: a status and a report naming the request. */
    void *big = (void *)&e;
    const size_t want = 2 * g + 100;
    CHECK_EQ(vms_malloc(e.a, want, NULL, &big), VMS_ENOMEM);
    CHECK(big == NULL);
    const char *rep = vms_oom_report();
    char num[32];
    snprintf(num, sizeof num, "%zu", want);
    CHECK(rep && strlen(rep) > 40);
    CHECK(rep && strstr(rep, num) != NULL);
    CHECK(rep && strchr(rep, '\n') == NULL); /* one paragraph */
    vms_stats st2 = stats_of(e.a);
    CHECK_EQ(st2.ooms, st1.ooms + 1);
    CHECK_EQ(st2.allocated_bytes_current, st1.allocated_bytes_current);
    CHECK_HEALTHY(e.a);
    /* Smaller requests still work afterwards. */
    live m;
    REQUIRE(live_malloc(&e, &m, g - 512, NULL) == VMS_OK);
    CHECK_HEALTHY(e.a);
    vms_stats st3 = stats_of(e.a);
    CHECK(st3.reserved_bytes_peak <= 4 * g);
    live_free(&e, &m);
    live_free(&e, &s);
    live_free(&e, &a2);
    CHECK_HEALTHY(e.a);
    env_free(&e);
}

/* The ladder also unmaps idle stitched ranges: they pin the chunks they map. */
BOTH(oom_ladder_collects_stitched_ranges) {
    size_t g = host ? 64 * KIB : 2 * MIB;
    vms_config cfg = granule_config(g);
    cfg.memory_limit_bytes = (int64_t)(8 * g);
    env e;
    REQUIRE(env_new(&e, host, g, 0, &cfg) == VMS_OK);
    live l[8];
    REQUIRE(live_fragment(&e, l, 8, NULL) == 0);
    live q;
    REQUIRE(live_malloc(&e, &q, 4 * g, NULL) == VMS_OK);
    live_free(&e, &q);
    vms_stats st0 = stats_of(e.a);
    CHECK_EQ(st0.stitched_ranges_current, 1);
    /* A small-pool request needs a new chunk; only unmapping the range frees one. */
    live s;
    REQUIRE(live_malloc(&e, &s, 1000, NULL) == VMS_OK);
    vms_stats st1 = stats_of(e.a);
    CHECK_EQ(st1.oom_retries, st0.oom_retries + 1);
    CHECK_EQ(st1.gc_ranges_freed, st0.gc_ranges_freed + 1);
    CHECK_EQ(st1.stitched_ranges_current, 0);
    CHECK_EQ(st1.reserved_bytes_current, 5 * g);
    CHECK(st1.reserved_bytes_peak <= 8 * g);
    CHECK_HEALTHY(e.a);
    live_free(&e, &s);
    for (int i = 0; i < 8; i += 2)
        live_free(&e, &l[i]);
    env_free(&e);
}

/* Backend capacity (not a configured limit) running out is an OOM too. */
BOTH(oom_backend_capacity) {
    const size_t g = 2 * MIB;
    vms_config cfg = test_base_config();
    env e;
    REQUIRE(env_new(&e, host, g, 8 * g, &cfg) == VMS_OK);
    live l[8];
    int n = 0;
    while (n < 8 && live_malloc(&e, &l[n], 2 * g, NULL) == VMS_OK)
        n++;
    CHECK_EQ(n, 4);
    CHECK(strlen(vms_oom_report()) > 0);
    CHECK_HEALTHY(e.a);
    live_free(&e, &l[1]);
    live x;
    REQUIRE(live_malloc(&e, &x, g, NULL) == VMS_OK);
    live_free(&e, &x);
    for (int i = 0; i < n; i++)
        if (i != 1) live_free(&e, &l[i]);
    CHECK_HEALTHY(e.a);
    env_free(&e);
}

static void *oom_report_thread(void *arg) {
    const char **out = arg;
    *out = vms_oom_report();
    return NULL;
}

TEST(api_oom_report_per_thread) {
    env e;
    vms_config cfg = test_base_config();
    cfg.memory_limit_bytes = (int64_t)(4 * MIB);
    REQUIRE(env_new(&e, false, 2 * MIB, 0, &cfg) == VMS_OK);
    void *p;
    CHECK_EQ(vms_malloc(e.a, 64 * MIB, NULL, &p), VMS_ENOMEM);
    CHECK(strlen(vms_oom_report()) > 0);
    const char *other = NULL;
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, oom_report_thread, &other) == 0);
    pthread_join(t, NULL);
    CHECK(other && other[0] == '\0');
    env_free(&e);
}

/* ---------------------------------------------------------------- bad input */

BOTH(bad_input) {
    env e;
    vms_config cfg = test_base_config();
    REQUIRE(env_new(&e, host, 2 * MIB, 0, &cfg) == VMS_OK);
    live sm, lg, gone;
    REQUIRE(live_malloc(&e, &sm, 4 * KIB, NULL) == VMS_OK);
    REQUIRE(live_malloc(&e, &lg, 3 * MIB, NULL) == VMS_OK);
    REQUIRE(live_malloc(&e, &gone, 8 * KIB, NULL) == VMS_OK);
    void *gone_p = gone.p;
    live_free(&e, &gone);
    vms_stats st0 = stats_of(e.a);
    int local = 0;
    void *heap = malloc(64);
    REQUIRE(heap);
    CHECK_EQ(vms_free(e.a, &local), VMS_ENOTFOUND);
    CHECK_EQ(vms_free(e.a, heap), VMS_ENOTFOUND);
    CHECK_EQ(vms_free(e.a, (void *)(uintptr_t)512), VMS_ENOTFOUND);
    CHECK_EQ(vms_free(e.a, (char *)lg.p + 512), VMS_ENOTFOUND);
    CHECK_EQ(vms_free(e.a, (char *)lg.p + 1), VMS_ENOTFOUND);
    CHECK_EQ(vms_free(e.a, (char *)sm.p + 512), VMS_ENOTFOUND);
    CHECK_EQ(vms_free(e.a, gone_p), VMS_EDOUBLEFREE);
    CHECK(vms_record_stream(e.a, gone_p, S(2)) != VMS_OK);
    CHECK_EQ(vms_record_stream(e.a, &local, S(2)), VMS_ENOTFOUND);
    CHECK_EQ(vms_record_stream(e.a, (char *)lg.p + 512, S(2)), VMS_ENOTFOUND);
    CHECK_EQ(vms_record_stream(e.a, NULL, S(2)), VMS_EINVAL);
    CHECK_EQ(vms_allocation_size(e.a, gone_p), 0);
    CHECK_EQ(vms_allocation_size(e.a, &local), 0);
    CHECK_EQ(vms_allocation_size(e.a, (char *)lg.p + 512), 0);
    vms_stats st1 = stats_of(e.a);
    CHECK(memcmp(&st0, &st1, sizeof st0) == 0);
    CHECK_HEALTHY(e.a);
    free(heap);
    /* NULL arguments */
    void *p = NULL;
    vms_stats st;
    char buf[16] = "x";
    CHECK_EQ(vms_malloc(NULL, 16, NULL, &p), VMS_EINVAL);
    CHECK_EQ(vms_malloc(e.a, 16, NULL, NULL), VMS_EINVAL);
    CHECK_EQ(vms_free(NULL, sm.p), VMS_EINVAL);
    CHECK_EQ(vms_record_stream(NULL, sm.p, S(1)), VMS_EINVAL);
    CHECK_EQ(vms_empty_cache(NULL), VMS_EINVAL);
    CHECK_EQ(vms_set_memory_limit(NULL, 0), VMS_EINVAL);
    CHECK_EQ(vms_stats_get(NULL, &st), VMS_EINVAL);
    CHECK_EQ(vms_stats_get(e.a, NULL), VMS_EINVAL);
    CHECK_EQ(vms_stats_reset_peak(NULL), VMS_EINVAL);
    CHECK_EQ(vms_stats_json(NULL, buf, sizeof buf), 0);
    CHECK_EQ(buf[0], '\0');
    CHECK_EQ(vms_allocation_size(NULL, sm.p), 0);
    CHECK(vms_check(NULL) != 0);
    vms_allocator *a2 = (vms_allocator *)&local;
    CHECK_EQ(vms_allocator_create(NULL, NULL, 0, &a2), VMS_EINVAL);
    CHECK_EQ(vms_allocator_create(NULL, e.be, 0, NULL), VMS_EINVAL);
    vms_allocator_destroy(NULL);
    st1 = stats_of(e.a);
    CHECK(memcmp(&st0, &st1, sizeof st0) == 0);
    /* Sizes no device has: VMS_ENOMEM with a report, never an overflow. */
    const size_t huge[] = {SIZE_MAX,         SIZE_MAX - 1,          SIZE_MAX - 511,
                           SIZE_MAX / 2 + 1, ((size_t)1 << 62) + 1, (size_t)1 << 50};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        p = (void *)&local;
        CHECK_EQ(vms_malloc(e.a, huge[i], NULL, &p), VMS_ENOMEM);
        CHECK(p == NULL);
        CHECK(strlen(vms_oom_report()) > 0);
    }
    st1 = stats_of(e.a);
    CHECK_EQ(st1.ooms, st0.ooms + sizeof huge / sizeof huge[0]);
    CHECK_EQ(st1.allocated_bytes_current, st0.allocated_bytes_current);
    CHECK_EQ(st1.requested_bytes_current, st0.requested_bytes_current);
    CHECK_EQ(st1.reserved_bytes_current, st0.reserved_bytes_current);
    CHECK_EQ(st1.mallocs, st0.mallocs);
    CHECK_HEALTHY(e.a);
    live_free(&e, &sm);
    live_free(&e, &lg);
    CHECK_HEALTHY(e.a);
    env_free(&e);
}

/* A stitched allocation freed twice is a double free too, while its range is cached. */
BOTH(double_free_stitched) {
    size_t g = host ? 64 * KIB : 2 * MIB;
    vms_config cfg = granule_config(g);
    env e;
    REQUIRE(env_new(&e, host, g, 0, &cfg) == VMS_OK);
    live l[6];
    REQUIRE(live_fragment(&e, l, 6, NULL) == 0);
    live s;
    REQUIRE(live_malloc(&e, &s, 2 * g, NULL) == VMS_OK);
    REQUIRE(stats_of(e.a).stitches == 1);
    void *sp = s.p;
    live_free(&e, &s);
    vms_stats st0 = stats_of(e.a);
    CHECK_EQ(st0.stitched_ranges_current, 1);
    CHECK_EQ(vms_free(e.a, sp), VMS_EDOUBLEFREE);
    CHECK_EQ(vms_free(e.a, (char *)sp + g / 2 + 1), VMS_ENOTFOUND);
    vms_stats st1 = stats_of(e.a);
    CHECK(memcmp(&st0, &st1, sizeof st0) == 0);
    CHECK_HEALTHY(e.a);
    for (int i = 0; i < 6; i += 2)
        live_free(&e, &l[i]);
    env_free(&e);
}

/* ---------------------------------------------------------------- statistics */

#define STAT_NAME_CUR_PEAK(n) #n "_current", #n "_peak",
#define STAT_NAME_COUNT(n) #n,
#define STAT_NAME(n, kind) STAT_NAME_##kind(n)
static const char *const stat_names[] = {VMS_STATS_FIELDS(STAT_NAME)};
#define N_STATS (sizeof stat_names / sizeof stat_names[0])

/* The value of the i-th field in VMS_STATS_FIELDS order (the struct has exactly those). */
static uint64_t stat_value(const vms_stats *s, size_t i) {
    return ((const uint64_t *)s)[i];
}

BOTH(stats_track_usage) {
    const size_t g = 2 * MIB;
    vms_config cfg = test_base_config();
    env e;
    REQUIRE(env_new(&e, host, g, 0, &cfg) == VMS_OK);
    CHECK_EQ(sizeof(vms_stats), N_STATS * sizeof(uint64_t));
    vms_stats s = stats_of(e.a);
#define ZERO_CUR_PEAK(n)                                                                           \
    CHECK_EQ(s.n##_current, 0);                                                                    \
    CHECK_EQ(s.n##_peak, 0);
#define ZERO_COUNT(n)
#define ZERO(n, kind) ZERO_##kind(n)
    VMS_STATS_FIELDS(ZERO)
#undef ZERO
#undef ZERO_COUNT
#undef ZERO_CUR_PEAK
    CHECK_EQ(s.mallocs, 0);
    const size_t sizes[4] = {1000, 100000, 3 * MIB + 1, 5 * MIB};
    live l[4];
    for (int i = 0; i < 4; i++)
        REQUIRE(live_malloc(&e, &l[i], sizes[i], NULL) == VMS_OK);
    s = stats_of(e.a);
    size_t small_alloc = round512(sizes[0]) + round512(sizes[1]);
    size_t large_alloc = round512(sizes[2]) + round512(sizes[3]);
    CHECK_EQ(s.allocated_bytes_current, small_alloc + large_alloc);
    CHECK_EQ(s.requested_bytes_current, sizes[0] + sizes[1] + sizes[2] + sizes[3]);
    CHECK_EQ(s.small_allocated_bytes_current, small_alloc);
    CHECK_EQ(s.small_requested_bytes_current, sizes[0] + sizes[1]);
    CHECK_EQ(s.large_allocated_bytes_current, large_alloc);
    CHECK_EQ(s.large_requested_bytes_current, sizes[2] + sizes[3]);
    CHECK_EQ(s.active_bytes_current, s.allocated_bytes_current);
    CHECK_EQ(s.reserved_bytes_current,
             s.small_reserved_bytes_current + s.large_reserved_bytes_current);
    CHECK_EQ(s.small_reserved_bytes_current, g); /* both small ones share one chunk */
    CHECK(s.large_reserved_bytes_current >= large_alloc);
    CHECK(s.large_reserved_bytes_current <= large_alloc + 2 * g);
    CHECK_EQ(s.reserved_bytes_current % g, 0);
    CHECK_EQ(s.cached_bytes_current, s.reserved_bytes_current - s.allocated_bytes_current);
    CHECK(s.chunks_current >= 2);
    CHECK_EQ(s.mallocs, 4);
    CHECK_EQ(s.frees, 0);
    CHECK(s.grows >= 2);
    /* The allocator's backend counts match the backend's own (one allocator per backend). */
    vms_backend_counters bc = counters_of(e.be);
    CHECK_EQ(s.backend_create, bc.create);
    CHECK_EQ(s.backend_release, bc.release);
    CHECK_EQ(s.backend_reserve, bc.reserve);
    CHECK_EQ(s.backend_address_free, bc.address_free);
    CHECK_EQ(s.backend_map, bc.map);
    CHECK_EQ(s.backend_unmap, bc.unmap);
    CHECK_EQ(s.backend_set_access, bc.set_access);
    CHECK_EQ(s.backend_errors, 0);
    for (size_t i = 0; i < N_STATS; i++) {
        if (strstr(stat_names[i], "_peak")) CHECK(stat_value(&s, i) >= stat_value(&s, i - 1));
    }
    vms_stats s1 = s;
    live_free(&e, &l[3]);
    s = stats_of(e.a);
    CHECK_EQ(s.allocated_bytes_current, s1.allocated_bytes_current - round512(sizes[3]));
    CHECK_EQ(s.allocated_bytes_peak, s1.allocated_bytes_current);
    CHECK_EQ(s.requested_bytes_peak, s1.requested_bytes_current);
    CHECK_EQ(s.frees, 1);
    vms_stats s2 = s;
    CHECK_EQ(vms_stats_reset_peak(e.a), VMS_OK);
    s = stats_of(e.a);
#define RESET_CUR_PEAK(n)                                                                          \
    CHECK_EQ(s.n##_peak, s.n##_current);                                                           \
    CHECK_EQ(s.n##_current, s2.n##_current);
#define RESET_COUNT(n) CHECK_EQ(s.n, s2.n);
#define RESET(n, kind) RESET_##kind(n)
    VMS_STATS_FIELDS(RESET)
#undef RESET
#undef RESET_COUNT
#undef RESET_CUR_PEAK
    live x;
    REQUIRE(live_malloc(&e, &x, 512, NULL) == VMS_OK);
    s = stats_of(e.a);
    CHECK_EQ(s.allocated_bytes_peak, s2.allocated_bytes_current + 512);
    live_free(&e, &x);
    for (int i = 0; i < 3; i++)
        live_free(&e, &l[i]);
    s = stats_of(e.a);
    CHECK_EQ(s.allocated_bytes_current, 0);
    CHECK_EQ(s.requested_bytes_current, 0);
    CHECK_EQ(s.active_bytes_current, 0);
    CHECK_EQ(s.small_allocated_bytes_current + s.large_allocated_bytes_current, 0);
    CHECK_EQ(s.cached_bytes_current, s.reserved_bytes_current);
    CHECK_HEALTHY(e.a);
    env_free(&e);
}

/* Parses a flat JSON object of unsigned integers. Returns the member count or -1. */
static int json_parse_flat(const char *s, char keys[][64], unsigned long long *vals, int max) {
    int n = 0;
    while (*s == ' ' || *s == '\n')
        s++;
    if (*s++ != '{') return -1;
    while (*s == ' ' || *s == '\n')
        s++;
    if (*s == '}') {
        s++;
    } else {
        for (;;) {
            while (*s == ' ' || *s == '\n')
                s++;
            if (*s++ != '"') return -1;
            const char *k = s;
            while (*s && *s != '"' && *s != '\\')
                s++;
            if (*s != '"' || s - k >= 64 || n >= max) return -1;
            memcpy(keys[n], k, (size_t)(s - k));
            keys[n][s - k] = 0;
            s++;
            while (*s == ' ' || *s == '\n')
                s++;
            if (*s++ != ':') return -1;
            while (*s == ' ' || *s == '\n')
                s++;
            if (*s < '0' || *s > '9') return -1;
            char *end;
            vals[n++] = strtoull(s, &end, 10);
            s = end;
            while (*s == ' ' || *s == '\n')
                s++;
            if (*s == ',') {
                s++;
                continue;
            }
            if (*s++ != '}') return -1;
            break;
        }
    }
    while (*s == ' ' || *s == '\n')
        s++;
    return *s ? -1 : n;
}

BOTH(stats_json) {
    env e;
    vms_config cfg = test_base_config();
    REQUIRE(env_new(&e, host, 2 * MIB, 0, &cfg) == VMS_OK);
    live l[3];
    REQUIRE(live_malloc(&e, &l[0], 100, NULL) == VMS_OK);
    REQUIRE(live_malloc(&e, &l[1], 5 * MIB, NULL) == VMS_OK);
    REQUIRE(live_malloc(&e, &l[2], 77777, S(1)) == VMS_OK);
    live_free(&e, &l[2]);
    vms_stats s = stats_of(e.a);
    size_t need = vms_stats_json(e.a, NULL, 0);
    REQUIRE(need > 0 && need < 100000);
    char *buf = malloc(need + 1);
    REQUIRE(buf);
    CHECK_EQ(vms_stats_json(e.a, buf, need + 1), need);
    CHECK_EQ(strlen(buf), need);
    static char keys[256][64];
    static unsigned long long vals[256];
    int n = json_parse_flat(buf, keys, vals, 256);
    if (n < 0) fprintf(stderr, "    not a flat JSON object: %s\n", buf);
    CHECK_EQ(n, N_STATS);
    for (size_t i = 0; i < N_STATS && n > 0; i++) {
        int found = 0;
        for (int k = 0; k < n; k++)
            if (strcmp(keys[k], stat_names[i]) == 0) {
                found++;
                if (vals[k] != stat_value(&s, i)) {
                    fprintf(stderr, "    %s: json %llu, struct %llu\n", stat_names[i], vals[k],
                            (unsigned long long)stat_value(&s, i));
                    CHECK(vals[k] == stat_value(&s, i));
                }
            }
        if (found != 1) fprintf(stderr, "    %s appears %d times\n", stat_names[i], found);
        CHECK_EQ(found, 1);
    }
    /* Truncation: like snprintf. */
    char small[16];
    memset(small, 'z', sizeof small);
    CHECK_EQ(vms_stats_json(e.a, small, sizeof small), need);
    CHECK_EQ(strlen(small), sizeof small - 1);
    CHECK(strncmp(small, buf, sizeof small - 1) == 0);
    free(buf);
    live_free(&e, &l[0]);
    live_free(&e, &l[1]);
    env_free(&e);
}

/* ---------------------------------------------------------------- small requests */

static int cmp_ptr(const void *x, const void *y) {
    uintptr_t a = (uintptr_t)((const live *)x)->p, b = (uintptr_t)((const live *)y)->p;
    return a < b ? -1 : a > b;
}

BOTH(small_requests_packed) {
    const size_t g = 2 * MIB;
    vms_config cfg = test_base_config();
    env e;
    REQUIRE(env_new(&e, host, g, 0, &cfg) == VMS_OK);
    enum { N = 1000 };
    live *l = calloc(N, sizeof *l);
    REQUIRE(l);
    for (int i = 0; i < N; i++)
        REQUIRE(live_malloc(&e, &l[i], KIB, i % 2 ? S(1) : NULL) == VMS_OK);
    vms_stats s = stats_of(e.a);
    CHECK(s.reserved_bytes_current <= 2 * g);
    CHECK_EQ(s.large_reserved_bytes_current, 0);
    CHECK(s.chunks_current <= 2);
    qsort(l, N, sizeof *l, cmp_ptr);
    for (int i = 1; i < N; i++)
        CHECK((uintptr_t)l[i].p - (uintptr_t)l[i - 1].p >= KIB);
    CHECK_HEALTHY(e.a);
    /* Exactly the small limit stays small; one byte more is large. */
    live at, over;
    REQUIRE(live_malloc(&e, &at, MIB, NULL) == VMS_OK);
    REQUIRE(live_malloc(&e, &over, MIB + 1, NULL) == VMS_OK);
    s = stats_of(e.a);
    CHECK_EQ(s.small_requested_bytes_current, N * KIB + MIB);
    CHECK_EQ(s.large_requested_bytes_current, MIB + 1);
    live_free(&e, &at);
    live_free(&e, &over);
    for (int i = 0; i < N; i++)
        live_free(&e, &l[i]);
    CHECK_HEALTHY(e.a);
    free(l);
    env_free(&e);
}

/* ---------------------------------------------------------------- several allocators */

BOTH(two_allocators_one_backend) {
    size_t g = host ? 64 * KIB : 2 * MIB;
    vms_backend *be = NULL;
    REQUIRE((host ? vms_backend_host_create(g, 0, &be) : vms_backend_sim_create(g, 0, &be)) ==
            VMS_OK);
    vms_config cfg = granule_config(g);
    env e[2];
    for (int k = 0; k < 2; k++) {
        e[k].be = be;
        e[k].host = host;
        e[k].g = g;
        REQUIRE(vms_allocator_create(&cfg, be, k, &e[k].a) == VMS_OK);
    }
    enum { N = 64 };
    live l[2][N];
    memset(l, 0, sizeof l);
    uint64_t rng = 99;
    for (int step = 0; step < 3000; step++) {
        int k = (int)(test_rand(&rng) % 2);
        int i = (int)(test_rand(&rng) % N);
        if (l[k][i].p) {
            if (step % 7 == 0) {
                /* the other allocator does not know this pointer */
                CHECK_EQ(vms_free(e[1 - k].a, l[k][i].p), VMS_ENOTFOUND);
            }
            live_free(&e[k], &l[k][i]);
        } else {
            size_t n = 1 + (size_t)(test_rand(&rng) % (4 * g));
            REQUIRE(live_malloc(&e[k], &l[k][i], n, S(test_rand(&rng) % 2)) == VMS_OK);
        }
        if (step % 100 == 0) {
            CHECK_HEALTHY(e[0].a);
            CHECK_HEALTHY(e[1].a);
        }
    }
    vms_stats s0 = stats_of(e[0].a), s1 = stats_of(e[1].a);
    CHECK(s0.stitches + s1.stitches > 0);
    vms_backend_counters bc = counters_of(be);
    CHECK_EQ(bc.create, s0.backend_create + s1.backend_create);
    CHECK_EQ(bc.map, s0.backend_map + s1.backend_map);
    /* Destroying one with live allocations leaves the other whole. */
    vms_allocator_destroy(e[0].a);
    for (int i = 0; i < N; i++)
        if (l[1][i].p) live_free(&e[1], &l[1][i]);
    CHECK_HEALTHY(e[1].a);
    vms_allocator_destroy(e[1].a);
    vms_backend_destroy(be);
}

typedef struct thread_job {
    bool host;
    uint64_t seed;
    long failures;
} thread_job;

static void *separate_backend_thread(void *arg) {
    thread_job *j = arg;
    env e;
    vms_config cfg = granule_config(64 * KIB);
    if (env_new(&e, j->host, 64 * KIB, 64 * MIB, &cfg) != VMS_OK) {
        j->failures++;
        return NULL;
    }
    enum { N = 48 };
    live l[N];
    memset(l, 0, sizeof l);
    uint64_t rng = j->seed;
    for (int step = 0; step < 4000; step++) {
        int i = (int)(test_rand(&rng) % N);
        if (l[i].p) {
            if (j->host && pat_bad(l[i].p, l[i].n, l[i].id)) j->failures++;
            if (vms_free(e.a, l[i].p) != VMS_OK) j->failures++;
            l[i].p = NULL;
        } else {
            l[i].n = 1 + (size_t)(test_rand(&rng) % (512 * KIB));
            l[i].id = (j->seed << 20) + (uint64_t)step;
            if (vms_malloc(e.a, l[i].n, NULL, &l[i].p) != VMS_OK)
                j->failures++;
            else if (j->host)
                pat_fill(l[i].p, l[i].n, l[i].id);
        }
        if (step % 500 == 0 && vms_check(e.a)) j->failures++;
    }
    for (int i = 0; i < N; i++) {
        if (!l[i].p) continue;
        if (j->host && pat_bad(l[i].p, l[i].n, l[i].id)) j->failures++;
        if (vms_free(e.a, l[i].p) != VMS_OK) j->failures++;
    }
    if (vms_check(e.a)) j->failures++;
    env_free(&e);
    return NULL;
}

TEST(api_separate_backends_in_threads) {
    thread_job jobs[4] = {{true, 1, 0}, {true, 2, 0}, {false, 3, 0}, {false, 4, 0}};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&t[i], NULL, separate_backend_thread, &jobs[i]) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(jobs[i].failures, 0);
}

/* ---------------------------------------------------------------- empty_cache, memory limit */

BOTH(empty_cache_releases_free_chunks) {
    size_t g = host ? 64 * KIB : 2 * MIB;
    vms_config cfg = granule_config(g);
    env e;
    REQUIRE(env_new(&e, host, g, 0, &cfg) == VMS_OK);
    live l[12], sm[20];
    for (int i = 0; i < 12; i++)
        REQUIRE(live_malloc(&e, &l[i], g, NULL) == VMS_OK);
    for (int i = 0; i < 20; i++)
        REQUIRE(live_malloc(&e, &sm[i], 1000, NULL) == VMS_OK);
    for (int i = 1; i < 12; i += 2)
        live_free(&e, &l[i]);
    for (int i = 0; i < 20; i++)
        live_free(&e, &sm[i]);
    live q;
    REQUIRE(live_malloc(&e, &q, 3 * g, NULL) == VMS_OK);
    live_free(&e, &q);
    vms_stats s = stats_of(e.a);
    CHECK_EQ(s.stitched_ranges_current, 1);
    CHECK(s.reserved_bytes_current > 6 * g);
    CHECK_EQ(vms_empty_cache(e.a), VMS_OK);
    s = stats_of(e.a);
    CHECK_EQ(s.empty_cache_calls, 1);
    CHECK_EQ(s.reserved_bytes_current, 6 * g); /* exactly the chunks under live blocks */
    CHECK_EQ(s.chunks_current, 6);
    CHECK_EQ(s.small_reserved_bytes_current, 0);
    CHECK_EQ(s.stitched_ranges_current, 0);
    CHECK_EQ(s.stitched_cached_bytes_current, 0);
    CHECK_EQ(s.cached_bytes_current, 0);
    CHECK_HEALTHY(e.a);
    for (int i = 0; i < 12; i += 2)
        live_free(&e, &l[i]); /* patterns survived */
    CHECK_EQ(vms_empty_cache(e.a), VMS_OK);
    s = stats_of(e.a);
    CHECK_EQ(s.reserved_bytes_current, 0);
    CHECK_EQ(s.chunks_current, 0);
    CHECK_HEALTHY(e.a);
    /* and it still allocates afterwards */
    live again;
    REQUIRE(live_malloc(&e, &again, 5 * g + 3, NULL) == VMS_OK);
    live_free(&e, &again);
    CHECK_HEALTHY(e.a);
    env_free(&e);
}

BOTH(memory_limit_lowered) {
    const size_t g = 2 * MIB;
    vms_config cfg = test_base_config();
    cfg.large_chunk_max_bytes = (int64_t)g;
    env e;
    REQUIRE(env_new(&e, host, g, 0, &cfg) == VMS_OK);
    live l[4];
    for (int i = 0; i < 4; i++)
        REQUIRE(live_malloc(&e, &l[i], g, NULL) == VMS_OK);
    live_free(&e, &l[1]);
    live_free(&e, &l[3]);
    CHECK_EQ(stats_of(e.a).reserved_bytes_current, 4 * g);
    CHECK_EQ(vms_set_memory_limit(e.a, 3 * g), VMS_OK);
    CHECK_EQ(stats_of(e.a).reserved_bytes_current, 2 * g);
    CHECK_HEALTHY(e.a);
    live x, y;
    REQUIRE(live_malloc(&e, &x, g, NULL) == VMS_OK);
    void *p = NULL;
    CHECK_EQ(vms_malloc(e.a, g, NULL, &p), VMS_ENOMEM);
    CHECK(strlen(vms_oom_report()) > 0);
    CHECK(stats_of(e.a).reserved_bytes_current <= 3 * g);
    CHECK_EQ(vms_set_memory_limit(e.a, 0), VMS_OK);
    REQUIRE(live_malloc(&e, &y, g, NULL) == VMS_OK);
    CHECK_HEALTHY(e.a);
    live_free(&e, &x);
    live_free(&e, &y);
    live_free(&e, &l[0]);
    live_free(&e, &l[2]);
    env_free(&e);
}

TEST(api_version_and_status_strings) {
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", VMS_VERSION_MAJOR, VMS_VERSION_MINOR,
             VMS_VERSION_PATCH);
    CHECK(strcmp(vms_version(), want) == 0);
    for (int s = VMS_OK; s <= VMS_ENOMEM_HOST; s++) {
        const char *str = vms_status_str((vms_status)s);
        CHECK(str && *str && strcmp(str, "unknown status") != 0);
    }
    CHECK(vms_status_str((vms_status)999) != NULL);
}
