/* Randomized stress of the public API: seeded sequences of about 10^6 operations on the sim
 * backend (VMS_STRESS_OPS scales them; VMS_STRESS_SEED picks the sequence) and a tenth of that
 * on the host backend with 64 KiB granules (where page faults, not the allocator, dominate). Sizes
 * mix small, medium, large and multi-chunk requests over several streams, with record_stream, held
 * streams, empty_cache and memory limits that force out-of-memory (which must be VMS_ENOMEM with a
 * report, leaving the allocator consistent). vms_check must report zero every 1000 operations and
 * after every failure, and the stats must match what the test holds. On host every live allocation
 * carries a stamp unique to it at every 512-byte boundary (every block starts on one, so two live
 * blocks that share bytes share a stamped word); stamps are verified at every free and spot
 * checked at random. A threaded run shares one host allocator among four threads and a checker.
 *
 * Each test creates its own backend and allocator; the threaded one counts failures per thread
 * and reports them from the main thread (the harness is not thread-safe).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "live_check.h"
#include "test.h"
#include "vmstitch.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)

#define NSTREAMS 4
#define STREAM(k) ((vms_stream)(uintptr_t)(k))

/* ---------------------------------------------------------------- stamps */

/* A stamp names its allocation and its slot: the writer of any stamped word can be decoded. */
#define STAMP_SALT 0xa5a5000000000000ull
#define SLOT_BITS 22
static uint64_t stamp_word(uint64_t id, size_t k) {
    return (id << SLOT_BITS) ^ (uint64_t)k ^ STAMP_SALT;
}
static uint64_t stamp_id(uint64_t w) {
    return (w ^ STAMP_SALT) >> SLOT_BITS;
}

/* One word at every 512-byte slot of the block's extent, which is the request rounded up to
 * 512 bytes: the allocator hands out whole 512-byte units (allocated_bytes counts them), and
 * every block starts on one, so two blocks that share a byte share a slot. */
static void stamp_fill(void *p, size_t n, uint64_t id) {
    char *c = p;
    for (size_t k = 0; k * 512 < n; k++)
        *(uint64_t *)(c + k * 512) = stamp_word(id, k);
}

static bool stamp_ok(const void *p, size_t n, uint64_t id) {
    const char *c = p;
    for (size_t k = 0; k * 512 < n; k++)
        if (*(const uint64_t *)(c + k * 512) != stamp_word(id, k)) return false;
    return true;
}

/* ---------------------------------------------------------------- one run */

typedef struct item {
    void *p;
    size_t n;
    uint64_t id;
    int stream;
    uint8_t recorded; /* other streams it was used on (record_stream) */
} item;

/* Memory freed while a stream that used it was held (a kernel still running): until that
 * stream is released, no other stream may get it; while a recorded stream is held, no stream
 * at all. The stamps of the freed block stay there to tell who wrote over them. */
typedef struct quarantined {
    const char *p;
    size_t n; /* rounded extent */
    uint64_t id;
    int stream;
    uint8_t recorded_held; /* recorded streams still held */
    bool stream_held;      /* its own stream still held */
} quarantined;

typedef struct run_params {
    bool host;
    size_t g;
    size_t capacity_bytes;
    long ops;
    uint64_t seed;
    size_t live_budget_bytes; /* frees are favoured above this */
    size_t max_bytes;         /* largest request */
    int hold_permille;        /* per-op chance (x 1/10000) of holding a stream */
    bool quarantine;          /* host: check stream safety of freed memory */
    vms_config cfg;
} run_params;

typedef struct run_state {
    const run_params *rp;
    vms_backend *be;
    vms_allocator *a;
    item *items;
    size_t nitems, cap_items;
    quarantined *quar;
    size_t nquar, cap_quar;
    live_spans spans;   /* live extents: a block handed out twice is seen at its malloc */
    uint8_t *id_stream; /* allocation stream of every id, to judge writers */
    size_t cap_ids;
    size_t live_req, live_alloc; /* what the test holds: requested and 512-rounded bytes */
    uint64_t next_id, rng;
    long op;
    int held[NSTREAMS]; /* ops left while held; 0 = not held */
    size_t limit;
    long failures;
    /* outcomes, for the report */
    long mallocs, frees, ooms, checks, empty_caches, holds, limits, records, quarantined_total;
} run_state;

static size_t round512(size_t n) {
    return (n + 511) / 512 * 512;
}

static void fail_at(run_state *s, const char *what) {
    if (s->failures < 8)
        fprintf(stderr, "    stress (%s, seed %llu) op %ld: %s\n", s->rp->host ? "host" : "sim",
                (unsigned long long)s->rp->seed, s->op, what);
    s->failures++;
}

static size_t pick_size(run_state *s) {
    uint64_t r = test_rand(&s->rng) % 100;
    size_t mx = s->rp->max_bytes;
    if (r < 50) { /* small, log-uniform up to 1 MiB */
        unsigned bits = (unsigned)(test_rand(&s->rng) % 21);
        return 1 + (size_t)(test_rand(&s->rng) % ((size_t)1 << bits));
    }
    if (r < 75) return MIB + 1 + (size_t)(test_rand(&s->rng) % (mx / 32)); /* medium */
    if (r < 93) return mx / 32 + (size_t)(test_rand(&s->rng) % (mx / 4));  /* large */
    return mx / 4 + (size_t)(test_rand(&s->rng) % (mx - mx / 4 + 1));      /* multi-chunk */
}

/* Whether [p, p + n) can be read: memory is mapped and unmapped in whole granules, so one
 * probe per granule, made without faulting, tells. */
static bool readable(const char *p, size_t n, size_t g) {
    static char sink[1024];
    struct iovec local = {sink, 0}, remote[1024];
    uintptr_t at = (uintptr_t)p & ~(uintptr_t)(g - 1), end = (uintptr_t)p + n;
    while (at < end) {
        size_t m = 0;
        for (; m < 1024 && at < end; m++, at += g) {
            remote[m].iov_base = (void *)(at < (uintptr_t)p ? (uintptr_t)p : at);
            remote[m].iov_len = 1;
        }
        local.iov_len = m;
        if (process_vm_readv(getpid(), &local, 1, remote, m, 0) != (ssize_t)m) return false;
    }
    return true;
}

/* Every quarantined block: each slot still holds its stamp, or a stamp of a block allocated on
 * a stream that was allowed to reuse it. Offenders are reported and dropped. */
static void quarantine_verify(run_state *s) {
    for (size_t qi = 0; qi < s->nquar;) {
        quarantined *q = &s->quar[qi];
        const char *why = NULL;
        if (!readable(q->p, q->n, s->rp->g)) why = "memory freed on a busy stream was unmapped";
        for (size_t k = 0; k < q->n / 512 && !why; k++) {
            uint64_t word = *(const uint64_t *)(q->p + k * 512);
            if (word == stamp_word(q->id, k)) continue;
            uint64_t w = stamp_id(word);
            if (w <= q->id || w >= s->next_id)
                why = "memory freed on a busy stream was replaced";
            else if (q->recorded_held)
                why = "memory reused while a stream recorded on it was busy";
            else if (q->stream_held && s->id_stream[w] != q->stream)
                why = "memory reused on another stream while its stream was busy";
        }
        if (why) {
            char m[160];
            snprintf(m, sizeof m, "%s (block %p, %zu B, stream %d)", why, (const void *)q->p, q->n,
                     q->stream);
            fail_at(s, m);
            s->quar[qi] = s->quar[--s->nquar];
            continue;
        }
        qi++;
    }
}

static void stream_release(run_state *s, int k) {
    if (s->rp->quarantine) {
        quarantine_verify(s);
        for (size_t qi = 0; qi < s->nquar;) {
            quarantined *q = &s->quar[qi];
            q->recorded_held &= (uint8_t) ~(1u << k);
            if (q->stream == k) q->stream_held = false;
            if (!q->recorded_held && !q->stream_held)
                s->quar[qi] = s->quar[--s->nquar];
            else
                qi++;
        }
    }
    s->held[k] = 0;
    vms_backend_stream_hold(s->be, STREAM(k), 0);
}

static void quarantine_add(run_state *s, const item *it) {
    uint8_t rec = 0;
    for (int k = 0; k < NSTREAMS; k++)
        if ((it->recorded >> k & 1) && s->held[k]) rec |= (uint8_t)(1u << k);
    bool own = s->held[it->stream] != 0;
    if (!rec && !own) return;
    if (s->nquar == s->cap_quar) {
        size_t nc = s->cap_quar ? 2 * s->cap_quar : 256;
        quarantined *nq = realloc(s->quar, nc * sizeof *nq);
        if (!nq) return;
        s->quar = nq;
        s->cap_quar = nc;
    }
    s->quar[s->nquar++] = (quarantined){it->p, round512(it->n), it->id, it->stream, rec, own};
    s->quarantined_total++;
}

static void do_free(run_state *s, size_t i) {
    item it = s->items[i];
    if (s->rp->host && !stamp_ok(it.p, round512(it.n), it.id))
        fail_at(s, "stamp overwritten before free");
    if (test_rand(&s->rng) % 64 == 0 && vms_allocation_size(s->a, it.p) != it.n)
        fail_at(s, "vms_allocation_size disagrees");
    vms_status st = vms_free(s->a, it.p);
    if (st != VMS_OK) fail_at(s, "vms_free of a live pointer failed");
    if (test_rand(&s->rng) % 512 == 0 && vms_free(s->a, it.p) == VMS_OK)
        fail_at(s, "second vms_free succeeded");
    if (s->rp->quarantine) quarantine_add(s, &it);
    live_span_del(&s->spans, it.p);
    s->items[i] = s->items[--s->nitems];
    s->live_req -= it.n;
    s->live_alloc -= round512(it.n);
    s->frees++;
}

static void do_malloc(run_state *s) {
    size_t n = pick_size(s);
    int stream = test_rand(&s->rng) % 2 ? 0 : 1 + (int)(test_rand(&s->rng) % (NSTREAMS - 1));
    void *p = NULL;
    vms_status st = vms_malloc(s->a, n, STREAM(stream), &p);
    if (st == VMS_ENOMEM) {
        s->ooms++;
        if (p != NULL) fail_at(s, "VMS_ENOMEM with a pointer");
        if (vms_oom_report()[0] == '\0') fail_at(s, "VMS_ENOMEM without a report");
        if (vms_check(s->a) != 0) fail_at(s, "vms_check after VMS_ENOMEM");
        /* make room, as a framework would after an OOM */
        for (int k = 0; k < 4 && s->nitems; k++)
            do_free(s, (size_t)(test_rand(&s->rng) % s->nitems));
        return;
    }
    if (st != VMS_OK) {
        fail_at(s, vms_status_str(st));
        return;
    }
    if (!p || (uintptr_t)p % 512) fail_at(s, "NULL or misaligned pointer");
    bool room = true;
    if (s->nitems == s->cap_items) {
        item *ni = realloc(s->items, 2 * s->cap_items * sizeof *ni);
        if (ni) {
            s->items = ni;
            s->cap_items *= 2;
        }
        room = ni != NULL;
    }
    if (room && s->next_id >= s->cap_ids) {
        uint8_t *ns = realloc(s->id_stream, 2 * s->cap_ids);
        if (ns) {
            s->id_stream = ns;
            s->cap_ids *= 2;
        }
        room = ns != NULL;
    }
    if (!room) {
        fail_at(s, "test out of host memory");
        vms_free(s->a, p);
        return;
    }
    int sp = live_span_add(&s->spans, p, round512(n));
    if (sp != 0) {
        fail_at(s, sp == -1 ? "a live block handed out again (virtual overlap)"
                            : "test out of host memory");
        return; /* not tracked: never freed by the test */
    }
    item it = {p, n, s->next_id++, stream, 0};
    s->id_stream[it.id] = (uint8_t)stream;
    if (s->rp->host) stamp_fill(p, round512(n), it.id);
    s->items[s->nitems++] = it;
    s->live_req += n;
    s->live_alloc += round512(n);
    s->mallocs++;
}

static void check_point(run_state *s) {
    s->checks++;
    size_t v = vms_check(s->a);
    if (v) {
        char m[64];
        snprintf(m, sizeof m, "vms_check: %zu violations", v);
        fail_at(s, m);
    }
    vms_stats st;
    vms_stats_get(s->a, &st);
    if (st.allocated_bytes_current != s->live_alloc) fail_at(s, "allocated_bytes_current");
    if (st.requested_bytes_current != s->live_req) fail_at(s, "requested_bytes_current");
    if (st.active_bytes_current < st.allocated_bytes_current) fail_at(s, "active < allocated");
    if (st.reserved_bytes_current < st.allocated_bytes_current) fail_at(s, "reserved < allocated");
    if (st.reserved_bytes_current !=
        st.small_reserved_bytes_current + st.large_reserved_bytes_current)
        fail_at(s, "reserved != small + large");
    if (st.allocated_bytes_current !=
        st.small_allocated_bytes_current + st.large_allocated_bytes_current)
        fail_at(s, "allocated != small + large");
    if (st.reserved_bytes_current % s->rp->g) fail_at(s, "reserved not whole granules");
    if (st.cached_bytes_current != st.reserved_bytes_current - st.allocated_bytes_current)
        fail_at(s, "cached_bytes_current != reserved - allocated");
    if (st.mallocs != (uint64_t)s->mallocs || st.frees != (uint64_t)s->frees)
        fail_at(s, "malloc/free counters");
    if (s->rp->capacity_bytes && st.reserved_bytes_peak > s->rp->capacity_bytes)
        fail_at(s, "reserved above the backend's capacity");
    if (s->rp->quarantine) quarantine_verify(s);
}

static void run_stress(const run_params *rp, run_state *s) {
    memset(s, 0, sizeof *s);
    s->rp = rp;
    s->rng = rp->seed;
    s->next_id = 1;
    s->cap_items = 1024;
    s->items = malloc(s->cap_items * sizeof *s->items);
    s->cap_ids = 1 << 16;
    s->id_stream = malloc(s->cap_ids);
    vms_status st = rp->host ? vms_backend_host_create(rp->g, rp->capacity_bytes, &s->be)
                             : vms_backend_sim_create(rp->g, rp->capacity_bytes, &s->be);
    if (!s->items || !s->id_stream || st != VMS_OK) {
        s->failures++;
        free(s->items);
        free(s->id_stream);
        return;
    }
    if (vms_allocator_create(&rp->cfg, s->be, 0, &s->a) != VMS_OK) {
        s->failures++;
        vms_backend_destroy(s->be);
        free(s->items);
        free(s->id_stream);
        return;
    }
    int hold_at = 9700 + rp->hold_permille;
    for (s->op = 0; s->op < rp->ops && s->failures == 0; s->op++) {
        uint64_t r = test_rand(&s->rng) % 10000;
        bool over = s->live_req > rp->live_budget_bytes;
        if (s->nitems == 0 || (!over && r < 4800)) {
            do_malloc(s);
        } else if (r < 9300 || over) {
            do_free(s, (size_t)(test_rand(&s->rng) % s->nitems));
        } else if (r < 9700) {
            item *it = &s->items[test_rand(&s->rng) % s->nitems];
            int other = (int)(test_rand(&s->rng) % NSTREAMS);
            if (vms_record_stream(s->a, it->p, STREAM(other)) != VMS_OK)
                fail_at(s, "record_stream");
            if (other != it->stream) it->recorded |= (uint8_t)(1u << other);
            s->records++;
        } else if (r < (uint64_t)hold_at) {
            int k = 1 + (int)(test_rand(&s->rng) % (NSTREAMS - 1));
            if (!s->held[k]) {
                s->held[k] = 50 + (int)(test_rand(&s->rng) % 3000);
                vms_backend_stream_hold(s->be, STREAM(k), 1);
                s->holds++;
            }
        } else if (r < (uint64_t)hold_at + 2) {
            if (vms_empty_cache(s->a) != VMS_OK) fail_at(s, "empty_cache");
            s->empty_caches++;
            if (vms_check(s->a) != 0) fail_at(s, "vms_check after empty_cache");
        } else if (r < (uint64_t)hold_at + 4) {
            /* a memory limit phase: none, or a little above the live budget */
            uint64_t q = test_rand(&s->rng) % 4;
            s->limit = q == 0 ? 0 : rp->live_budget_bytes / 4 * (4 + q);
            if (vms_set_memory_limit(s->a, s->limit) != VMS_OK) fail_at(s, "set_memory_limit");
            s->limits++;
        } else if (rp->host) {
            item *it = &s->items[test_rand(&s->rng) % s->nitems];
            if (!stamp_ok(it->p, round512(it->n), it->id))
                fail_at(s, "stamp overwritten (spot check)");
        }
        for (int k = 1; k < NSTREAMS; k++)
            if (s->held[k] && --s->held[k] == 0) stream_release(s, k);
        if (s->op % 1000 == 999) check_point(s);
    }
    for (int k = 1; k < NSTREAMS; k++)
        if (s->held[k]) stream_release(s, k);
    check_point(s);
    while (s->nitems && s->failures == 0)
        do_free(s, s->nitems - 1);
    if (vms_empty_cache(s->a) != VMS_OK) fail_at(s, "final empty_cache");
    vms_stats fin;
    vms_stats_get(s->a, &fin);
    if (s->failures == 0 && (fin.reserved_bytes_current || fin.stitched_ranges_current))
        fail_at(s, "memory left after freeing everything and empty_cache");
    check_point(s);
    vms_allocator_destroy(s->a);
    vms_backend_destroy(s->be);
    free(s->items);
    free(s->id_stream);
    free(s->quar);
    live_span_destroy(&s->spans);
}

static vms_config stress_config(void) {
    vms_config c;
    vms_config_init(&c);
    c.log_level = 1;
    c.check_level = 0;
    c.memory_limit_bytes = 0;
    return c;
}

static void report(const char *name, const run_state *s, double secs) {
    printf("     %s: %ld ops, %ld mallocs, %ld frees, %ld ooms, %ld checks, %ld empty_cache, "
           "%ld holds, %ld limits, %ld quarantined, %.2f s\n",
           name, s->op, s->mallocs, s->frees, s->ooms, s->checks, s->empty_caches, s->holds,
           s->limits, s->quarantined_total, secs);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void stress_case(const char *name, run_params *rp) {
    double t0 = now_s();
    run_state s;
    run_stress(rp, &s);
    report(name, &s, now_s() - t0);
    CHECK_EQ(s.failures, 0);
    /* the run must have exercised what it is for */
    if (s.failures == 0) CHECK(s.mallocs > rp->ops / 4);
}

static long stress_ops(void) {
    return test_param("VMS_STRESS_OPS", 1000000);
}
static uint64_t stress_seed(void) {
    return (uint64_t)test_param("VMS_STRESS_SEED", 1);
}

TEST(stress_sim_default_policy) {
    run_params rp = {0};
    rp.host = false;
    rp.g = 2 * MIB;
    rp.capacity_bytes = 8 * GIB;
    rp.ops = stress_ops();
    rp.seed = stress_seed();
    rp.live_budget_bytes = 4 * GIB;
    rp.max_bytes = 512 * MIB;
    rp.hold_permille = 60;
    rp.cfg = stress_config();
    stress_case("sim, default policy", &rp);
}

/* One-granule chunks, aggressive GC and reuse limits, stitching only when growth fails. */
TEST(stress_sim_small_chunks_gc) {
    run_params rp = {0};
    rp.host = false;
    rp.g = 2 * MIB;
    rp.capacity_bytes = 4 * GIB;
    rp.ops = stress_ops() / 4;
    rp.seed = stress_seed() + 1000;
    rp.live_budget_bytes = 2 * GIB;
    rp.max_bytes = 256 * MIB;
    rp.hold_permille = 60;
    rp.cfg = stress_config();
    rp.cfg.large_chunk_max_bytes = (int64_t)(2 * MIB);
    rp.cfg.gc_threshold_count = 3;
    rp.cfg.gc_threshold_bytes = (int64_t)(256 * MIB);
    rp.cfg.reuse_limit = 2;
    rp.cfg.stitch_when = VMS_STITCH_ON_GROW_FAIL;
    stress_case("sim, small chunks, eager GC, stitch on grow fail", &rp);
}

TEST(stress_host_patterns) {
    run_params rp = {0};
    rp.host = true;
    rp.g = 64 * KIB;
    rp.capacity_bytes = 128 * MIB;
    rp.ops = stress_ops() / 10;
    rp.seed = stress_seed() + 2000;
    rp.live_budget_bytes = 32 * MIB;
    rp.max_bytes = 4 * MIB;
    rp.hold_permille = 60;
    rp.cfg = stress_config();
    rp.cfg.large_chunk_max_bytes = (int64_t)(1 * MIB);
    rp.cfg.gc_threshold_count = 16;
    stress_case("host, 64 KiB granules, stamps", &rp);
}

/* Streams held often and long, many record_stream calls: memory freed while a stream that used
 * it is busy must not reach another stream (nor be unmapped) until that stream is done. */
TEST(stress_host_stream_safety) {
    run_params rp = {0};
    rp.host = true;
    rp.g = 64 * KIB;
    rp.capacity_bytes = 128 * MIB;
    rp.ops = stress_ops() / 50;
    rp.seed = stress_seed() + 3000;
    rp.live_budget_bytes = 32 * MIB;
    rp.max_bytes = 4 * MIB;
    rp.hold_permille = 200;
    rp.quarantine = true;
    rp.cfg = stress_config();
    rp.cfg.large_chunk_max_bytes = (int64_t)(512 * KIB);
    rp.cfg.gc_threshold_count = 8;
    stress_case("host, stream safety", &rp);
}

/* ---------------------------------------------------------------- threads */

typedef struct thread_arg {
    vms_allocator *a;
    int stream;
    uint64_t seed;
    long ops;
    long failures;
    long ooms;
} thread_arg;

static void *worker(void *p) {
    thread_arg *t = p;
    enum { N = 96 };
    item l[N];
    memset(l, 0, sizeof l);
    uint64_t rng = t->seed;
    for (long op = 0; op < t->ops; op++) {
        size_t i = (size_t)(test_rand(&rng) % N);
        if (l[i].p) {
            if (!stamp_ok(l[i].p, round512(l[i].n), l[i].id)) t->failures++;
            if (vms_free(t->a, l[i].p) != VMS_OK) t->failures++;
            l[i].p = NULL;
        } else {
            uint64_t r = test_rand(&rng) % 10;
            l[i].n = 1 + (size_t)(test_rand(&rng) % (r < 7 ? 256 * KIB : 3 * MIB));
            l[i].id = ((uint64_t)t->stream << 36) + (uint64_t)op;
            vms_status st = vms_malloc(t->a, l[i].n, STREAM(t->stream), &l[i].p);
            if (st == VMS_ENOMEM) {
                t->ooms++;
                if (vms_oom_report()[0] == '\0') t->failures++;
                l[i].p = NULL;
            } else if (st != VMS_OK) {
                t->failures++;
                l[i].p = NULL;
            } else {
                stamp_fill(l[i].p, round512(l[i].n), l[i].id);
                if (test_rand(&rng) % 16 == 0)
                    vms_record_stream(t->a, l[i].p, STREAM((t->stream + 1) % NSTREAMS));
            }
        }
        if (op % 4096 == 0) vms_empty_cache(t->a);
    }
    for (int i = 0; i < N; i++) {
        if (!l[i].p) continue;
        if (!stamp_ok(l[i].p, round512(l[i].n), l[i].id)) t->failures++;
        if (vms_free(t->a, l[i].p) != VMS_OK) t->failures++;
    }
    return NULL;
}

typedef struct checker_arg {
    vms_allocator *a;
    atomic_int *stop;
    long failures, runs;
} checker_arg;

static void *checker(void *p) {
    checker_arg *c = p;
    char buf[4096];
    while (!atomic_load(c->stop)) {
        if (vms_check(c->a) != 0) c->failures++;
        vms_stats st;
        if (vms_stats_get(c->a, &st) != VMS_OK) c->failures++;
        if (st.reserved_bytes_current < st.allocated_bytes_current) c->failures++;
        vms_stats_json(c->a, buf, sizeof buf);
        c->runs++;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

TEST(stress_host_threads) {
    vms_backend *be = NULL;
    REQUIRE(vms_backend_host_create(64 * KIB, 512 * MIB, &be) == VMS_OK);
    vms_config cfg = stress_config();
    cfg.large_chunk_max_bytes = (int64_t)(1 * MIB);
    cfg.memory_limit_bytes = (int64_t)(192 * MIB);
    vms_allocator *a = NULL;
    REQUIRE(vms_allocator_create(&cfg, be, 0, &a) == VMS_OK);
    atomic_int stop = 0;
    enum { T = 4 };
    thread_arg args[T];
    pthread_t th[T], ch;
    long ops = stress_ops() / 40;
    for (int i = 0; i < T; i++) {
        args[i] = (thread_arg){a, i, stress_seed() * 100 + (uint64_t)i, ops, 0, 0};
        REQUIRE(pthread_create(&th[i], NULL, worker, &args[i]) == 0);
    }
    checker_arg ca = {a, &stop, 0, 0};
    REQUIRE(pthread_create(&ch, NULL, checker, &ca) == 0);
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    atomic_store(&stop, 1);
    pthread_join(ch, NULL);
    long ooms = 0;
    for (int i = 0; i < T; i++) {
        CHECK_EQ(args[i].failures, 0);
        ooms += args[i].ooms;
    }
    CHECK_EQ(ca.failures, 0);
    printf("     host threads: %d x %ld ops, %ld ooms, %ld concurrent checks\n", T, ops, ooms,
           ca.runs);
    CHECK_EQ(vms_check(a), 0);
    vms_stats st;
    vms_stats_get(a, &st);
    CHECK_EQ(st.allocated_bytes_current, 0);
    CHECK_EQ(st.mallocs, st.frees);
    CHECK(st.reserved_bytes_peak <= 192 * MIB);
    vms_allocator_destroy(a);
    vms_backend_destroy(be);
}
