/* Bad input: every misuse a caller can make of the public API gets a clear status and leaves
 * the allocator exactly as it was. "As it was" is checked, not assumed: a snapshot of every
 * statistic and of the backend's call counters is taken before each bad call and compared
 * after it (only the ooms counter may move, for an impossible size), vms_check must stay
 * clean, and the live blocks keep their stamps (host backend).
 *
 * Covered: foreign pointers (stack, heap, small integers, another allocator's live block on the
 * same backend, addresses inside the arena's unmapped holes), double frees in every state a
 * freed block can be in (just freed, merged with neighbours, pending on another stream, inside
 * an idle cached stitched range, after its chunk was released), interior pointers at many
 * offsets, sizes near SIZE_MAX, NULL handles and outputs everywhere, record_stream on freed,
 * interior and foreign pointers, more streams than the allocator tracks, size 0, garbage in
 * every configuration field and in every VMSTITCH_* variable (the allocator must still come up
 * with documented values and run a workload), and garbage arguments to the backend
 * constructors. Single-threaded; the garbage cases run at log level 0 (except those that put
 * garbage in the log level itself), so the library's warnings do not flood the output.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault_backend.h"
#include "live_check.h"
#include "option_env.h"
#include "test.h"
#include "test_config.h"
#include "vmstitch.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define S(k) ((vms_stream)(uintptr_t)(k))

typedef struct fixture {
    bool host;
    size_t g;
    vms_backend *be;
    vms_allocator *a;
    struct {
        void *p;
        size_t n;
        uint64_t id;
    } live[8];
    int nlive;
} fixture;

static vms_config bi_config(size_t g) {
    vms_config c = test_chunk_config(g, g, g / 16);
    c.gc_threshold_bytes = 0;
    c.gc_threshold_count = 64;
    return c;
}

static vms_backend *bi_backend(bool host, size_t g) {
    vms_backend *inner = NULL, *be = NULL;
    if ((host ? vms_backend_host_create(g, 256 * MIB, &inner)
              : vms_backend_sim_create(g, 0, &inner)) != VMS_OK)
        return NULL;
    if (fault_backend_create(inner, &be) != VMS_OK) {
        vms_backend_destroy(inner);
        return NULL;
    }
    return be;
}

static bool fx_keep(fixture *f, void *p, size_t n) {
    if (f->nlive == 8) return false;
    f->live[f->nlive].p = p;
    f->live[f->nlive].n = n;
    f->live[f->nlive].id = 1000 + (uint64_t)f->nlive;
    if (f->host) live_stamp_fill(p, n, f->live[f->nlive].id);
    f->nlive++;
    return true;
}

static int fx_open_empty(fixture *f, bool host) {
    memset(f, 0, sizeof *f);
    f->host = host;
    f->g = host ? 64 * KIB : 2 * MIB;
    f->be = bi_backend(host, f->g);
    if (!f->be) return -1;
    vms_config cfg = bi_config(f->g);
    return vms_allocator_create(&cfg, f->be, 0, &f->a) == VMS_OK ? 0 : -1;
}

static int fx_open(fixture *f, bool host) {
    if (fx_open_empty(f, host) != 0) return -1;
    /* a few live blocks in both pools, one spanning several chunks */
    size_t sizes[] = {100, f->g / 32, f->g, 3 * f->g + 1000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = NULL;
        if (vms_malloc(f->a, sizes[i], S(0), &p) != VMS_OK) return -1;
        fx_keep(f, p, sizes[i]);
    }
    return 0;
}

static void fx_close(fixture *f) {
    for (int i = 0; i < f->nlive; i++) {
        if (f->host) CHECK_EQ(live_stamp_bad(f->live[i].p, f->live[i].n, f->live[i].id), 0);
        CHECK_EQ(vms_free(f->a, f->live[i].p), VMS_OK);
    }
    CHECK_EQ(vms_check(f->a), 0);
    vms_allocator_destroy(f->a);
    CHECK(fault_ledger_empty(f->be));
    vms_backend_destroy(f->be);
}

/* ---------------------------------------------------------------- "nothing changed" */

/* Backend calls that change something (queries such as stream_check or event_query do not). */
#define MUTATING                                                                                   \
    (FAULT_BIT(FAULT_CREATE) | FAULT_BIT(FAULT_RELEASE) | FAULT_BIT(FAULT_RESERVE) |               \
     FAULT_BIT(FAULT_VA_FREE) | FAULT_BIT(FAULT_MAP) | FAULT_BIT(FAULT_UNMAP) |                    \
     FAULT_BIT(FAULT_SET_ACCESS) | FAULT_BIT(FAULT_EVENT_RECORD))

typedef struct snap {
    vms_stats st;
    uint64_t calls;
} snap;

static snap snap_take(fixture *f) {
    snap s;
    memset(&s, 0, sizeof s);
    vms_stats_get(f->a, &s.st);
    s.calls = fault_calls(f->be, MUTATING);
    return s;
}

/* The allocator is as it was at `before` (ooms may grow by allowed_ooms). */
static void same_as(fixture *f, const snap *before, uint64_t allowed_ooms, const char *what,
                    int line) {
    snap now = snap_take(f);
    vms_stats a = before->st, b = now.st;
    bool ooms_ok = b.ooms >= a.ooms && b.ooms - a.ooms <= allowed_ooms;
    a.ooms = b.ooms = 0;
    char msg[200];
    if (memcmp(&a, &b, sizeof a) != 0 || !ooms_ok) {
        snprintf(msg, sizeof msg, "%s changed the statistics", what);
        test_fail(__FILE__, line, msg);
    }
    if (now.calls != before->calls) {
        snprintf(msg, sizeof msg, "%s made %llu backend calls", what,
                 (unsigned long long)(now.calls - before->calls));
        test_fail(__FILE__, line, msg);
    }
    if (vms_check(f->a)) {
        snprintf(msg, sizeof msg, "%s: vms_check not clean", what);
        test_fail(__FILE__, line, msg);
    }
    for (int i = 0; i < f->nlive; i++) {
        if (vms_allocation_size(f->a, f->live[i].p) != f->live[i].n ||
            (f->host && live_stamp_bad(f->live[i].p, f->live[i].n, f->live[i].id))) {
            snprintf(msg, sizeof msg, "%s: live block %d changed", what, i);
            test_fail(__FILE__, line, msg);
        }
    }
}

/* Runs a bad call and checks its status and that nothing changed. */
#define BAD(f, call, want)                                                                         \
    do {                                                                                           \
        snap s0_ = snap_take(f);                                                                   \
        vms_status got_ = (call);                                                                  \
        if (got_ != (want)) {                                                                      \
            char m_[200];                                                                          \
            snprintf(m_, sizeof m_, "%s returned %s, want %s", #call, vms_status_str(got_),        \
                     vms_status_str(want));                                                        \
            test_fail(__FILE__, __LINE__, m_);                                                     \
        }                                                                                          \
        same_as(f, &s0_, 0, #call, __LINE__);                                                      \
    } while (0)

/* Either of two statuses is acceptable (a freed pointer whose memory moved on, ...). */
#define BAD2(f, call, want1, want2)                                                                \
    do {                                                                                           \
        snap s0_ = snap_take(f);                                                                   \
        vms_status got_ = (call);                                                                  \
        if (got_ != (want1) && got_ != (want2)) {                                                  \
            char m_[200];                                                                          \
            snprintf(m_, sizeof m_, "%s returned %s", #call, vms_status_str(got_));                \
            test_fail(__FILE__, __LINE__, m_);                                                     \
        }                                                                                          \
        same_as(f, &s0_, 0, #call, __LINE__);                                                      \
    } while (0)

#define BOTH(name)                                                                                 \
    static void name##_on(bool host);                                                              \
    TEST(badinput_##name##_sim) {                                                                  \
        name##_on(false);                                                                          \
    }                                                                                              \
    TEST(badinput_##name##_host) {                                                                 \
        name##_on(true);                                                                           \
    }                                                                                              \
    static void name##_on(bool host)

/* ---------------------------------------------------------------- foreign pointers */

BOTH(foreign_pointers) {
    fixture f, other;
    REQUIRE(fx_open(&f, host) == 0);
    /* another allocator (device 1) on the same backend: same address space, its own blocks */
    memset(&other, 0, sizeof other);
    other.host = host;
    other.g = f.g;
    other.be = f.be;
    vms_config cfg = bi_config(f.g);
    REQUIRE(vms_allocator_create(&cfg, f.be, 1, &other.a) == VMS_OK);
    void *theirs = NULL;
    REQUIRE(vms_malloc(other.a, 5000, S(0), &theirs) == VMS_OK);
    int local = 0;
    void *heap = malloc(4096);
    REQUIRE(heap);
    char *mine = f.live[2].p;
    BAD(&f, vms_free(f.a, &local), VMS_ENOTFOUND);
    BAD(&f, vms_free(f.a, heap), VMS_ENOTFOUND);
    BAD(&f, vms_free(f.a, (void *)(uintptr_t)1), VMS_ENOTFOUND);
    BAD(&f, vms_free(f.a, (void *)(uintptr_t)4096), VMS_ENOTFOUND);
    BAD(&f, vms_free(f.a, (void *)UINTPTR_MAX), VMS_ENOTFOUND);
    BAD(&f, vms_free(f.a, (void *)(UINTPTR_MAX - 511)), VMS_ENOTFOUND);
    BAD(&f, vms_free(f.a, theirs), VMS_ENOTFOUND);
    /* far inside this allocator's arena, where nothing is mapped */
    BAD(&f, vms_free(f.a, mine + 64 * MIB), VMS_ENOTFOUND);
    BAD(&f, vms_free(f.a, mine - 64 * MIB), VMS_ENOTFOUND);
    BAD(&f, vms_record_stream(f.a, &local, S(1)), VMS_ENOTFOUND);
    BAD(&f, vms_record_stream(f.a, theirs, S(1)), VMS_ENOTFOUND);
    CHECK_EQ(vms_allocation_size(f.a, theirs), 0);
    CHECK_EQ(vms_allocation_size(f.a, heap), 0);
    /* theirs is still theirs */
    CHECK_EQ(vms_allocation_size(other.a, theirs), 5000);
    CHECK_EQ(vms_free(other.a, theirs), VMS_OK);
    CHECK_EQ(vms_check(other.a), 0);
    vms_allocator_destroy(other.a);
    free(heap);
    fx_close(&f);
}

/* ---------------------------------------------------------------- double frees */

BOTH(double_free_in_every_state) {
    fixture f;
    REQUIRE(fx_open(&f, host) == 0);
    size_t g = f.g;
    /* just freed, with a live neighbour on each side */
    void *a = NULL, *b = NULL, *c = NULL;
    REQUIRE(vms_malloc(f.a, 2 * g, S(0), &a) == VMS_OK);
    REQUIRE(vms_malloc(f.a, 2 * g, S(0), &b) == VMS_OK);
    REQUIRE(vms_malloc(f.a, 2 * g, S(0), &c) == VMS_OK);
    CHECK_EQ(vms_free(f.a, b), VMS_OK);
    BAD(&f, vms_free(f.a, b), VMS_EDOUBLEFREE);
    /* merged with a freed neighbour: b's address is now inside a larger free block, or its start */
    CHECK_EQ(vms_free(f.a, a), VMS_OK);
    BAD(&f, vms_free(f.a, a), VMS_EDOUBLEFREE);
    BAD2(&f, vms_free(f.a, b), VMS_EDOUBLEFREE, VMS_ENOTFOUND);
    CHECK_EQ(vms_free(f.a, c), VMS_OK);
    BAD2(&f, vms_free(f.a, c), VMS_EDOUBLEFREE, VMS_ENOTFOUND);
    /* small pool */
    void *s1 = NULL;
    REQUIRE(vms_malloc(f.a, 64, S(0), &s1) == VMS_OK);
    CHECK_EQ(vms_free(f.a, s1), VMS_OK);
    BAD2(&f, vms_free(f.a, s1), VMS_EDOUBLEFREE, VMS_ENOTFOUND);
    /* pending: used on a held stream, freed, then freed again */
    void *p = NULL;
    REQUIRE(vms_malloc(f.a, g, S(0), &p) == VMS_OK);
    CHECK_EQ(vms_backend_stream_hold(f.be, S(3), 1), VMS_OK);
    CHECK_EQ(vms_record_stream(f.a, p, S(3)), VMS_OK);
    CHECK_EQ(vms_free(f.a, p), VMS_OK);
    BAD2(&f, vms_free(f.a, p), VMS_EDOUBLEFREE, VMS_ENOTFOUND);
    BAD2(&f, vms_record_stream(f.a, p, S(1)), VMS_EDOUBLEFREE, VMS_ENOTFOUND);
    CHECK_EQ(vms_backend_stream_hold(f.be, S(3), 0), VMS_OK);
    /* the chunks it lived in have been given back to the backend */
    CHECK_EQ(vms_empty_cache(f.a), VMS_OK);
    BAD2(&f, vms_free(f.a, b), VMS_EDOUBLEFREE, VMS_ENOTFOUND);
    BAD2(&f, vms_free(f.a, p), VMS_EDOUBLEFREE, VMS_ENOTFOUND);
    /* the memory went to a new block that starts below it: the old pointer is interior */
    void *n0 = NULL, *n1 = NULL, *n2 = NULL;
    REQUIRE(vms_malloc(f.a, 512, S(0), &n0) == VMS_OK);
    REQUIRE(vms_malloc(f.a, 512, S(0), &n1) == VMS_OK);
    CHECK_EQ(vms_free(f.a, n0), VMS_OK);
    CHECK_EQ(vms_free(f.a, n1), VMS_OK);
    /* first fit by address: the new block starts at n0 and covers n1 */
    REQUIRE(vms_malloc(f.a, 4096, S(0), &n2) == VMS_OK);
    CHECK((char *)n2 < (char *)n1 && (char *)n1 < (char *)n2 + 4096);
    BAD2(&f, vms_free(f.a, n1), VMS_ENOTFOUND, VMS_EDOUBLEFREE);
    CHECK_EQ(vms_free(f.a, n2), VMS_OK);
    fx_close(&f);
}

/* A stitched block freed twice, while its range is an idle cache entry and after GC. */
BOTH(double_free_stitched) {
    fixture f;
    REQUIRE(fx_open_empty(&f, host) == 0);
    size_t g = f.g;
    /* eight one-chunk blocks; the odd ones stay live, the even ones leave free chunks between */
    void *blk[8];
    for (int i = 0; i < 8; i++)
        REQUIRE(vms_malloc(f.a, g, S(0), &blk[i]) == VMS_OK);
    for (int i = 0; i < 8; i += 2)
        CHECK_EQ(vms_free(f.a, blk[i]), VMS_OK);
    for (int i = 1; i < 8; i += 2)
        fx_keep(&f, blk[i], g);
    /* no growth allowed: only stitching the freed chunks can serve 3 granules */
    vms_stats st0;
    vms_stats_get(f.a, &st0);
    CHECK_EQ(vms_set_memory_limit(f.a, st0.reserved_bytes_current), VMS_OK);
    void *q = NULL;
    REQUIRE(vms_malloc(f.a, 3 * g, S(0), &q) == VMS_OK);
    CHECK_EQ(vms_set_memory_limit(f.a, 0), VMS_OK);
    vms_stats st1;
    vms_stats_get(f.a, &st1);
    CHECK(st1.stitches + st1.stitch_reuses > st0.stitches + st0.stitch_reuses);
    CHECK_EQ(vms_free(f.a, q), VMS_OK);
    BAD2(&f, vms_free(f.a, q), VMS_EDOUBLEFREE, VMS_ENOTFOUND);
    BAD2(&f, vms_free(f.a, (char *)q + g), VMS_ENOTFOUND, VMS_EDOUBLEFREE);
    BAD2(&f, vms_record_stream(f.a, q, S(2)), VMS_EDOUBLEFREE, VMS_ENOTFOUND);
    CHECK_EQ(vms_empty_cache(f.a), VMS_OK);
    BAD2(&f, vms_free(f.a, q), VMS_EDOUBLEFREE, VMS_ENOTFOUND);
    fx_close(&f);
}

/* ---------------------------------------------------------------- interior pointers */

BOTH(interior_pointers) {
    fixture f;
    REQUIRE(fx_open(&f, host) == 0);
    for (int i = 0; i < f.nlive; i++) {
        char *p = f.live[i].p;
        size_t n = f.live[i].n;
        size_t offs[] = {1, 8, 511, 512, 4096, n / 2, n - 1};
        for (size_t k = 0; k < sizeof offs / sizeof offs[0]; k++) {
            if (offs[k] == 0 || offs[k] >= n) continue;
            BAD(&f, vms_free(f.a, p + offs[k]), VMS_ENOTFOUND);
            BAD(&f, vms_record_stream(f.a, p + offs[k], S(1)), VMS_ENOTFOUND);
            CHECK_EQ(vms_allocation_size(f.a, p + offs[k]), 0);
        }
        BAD2(&f, vms_free(f.a, p - 1), VMS_ENOTFOUND, VMS_EDOUBLEFREE);
    }
    fx_close(&f);
}

/* ---------------------------------------------------------------- sizes */

BOTH(sizes_near_size_max) {
    fixture f;
    REQUIRE(fx_open(&f, host) == 0);
    const size_t huge[] = {SIZE_MAX,        SIZE_MAX - 1,       SIZE_MAX - 511,
                           SIZE_MAX - 4096, SIZE_MAX - f.g + 1, SIZE_MAX / 2 + 1,
                           SIZE_MAX / 2,    (size_t)1 << 63,    ((size_t)1 << 62) + 1};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        snap s0 = snap_take(&f);
        void *p = (void *)&f;
        vms_status st = vms_malloc(f.a, huge[i], S(0), &p);
        CHECK(st == VMS_ENOMEM || st == VMS_EINVAL);
        CHECK(p == NULL);
        if (st == VMS_ENOMEM) CHECK(strlen(vms_oom_report()) > 0);
        same_as(&f, &s0, 1, "malloc of a size near SIZE_MAX", __LINE__);
    }
    /* larger than the device: VMS_ENOMEM with a report, live blocks intact, and the
     * allocator still serves normal requests (the OOM ladder may empty the cache) */
    void *p = (void *)&f;
    CHECK_EQ(vms_malloc(f.a, host ? 512 * MIB : (size_t)200 << 30, S(0), &p), VMS_ENOMEM);
    CHECK(p == NULL);
    CHECK(strstr(vms_oom_report(), "could not allocate") != NULL);
    CHECK_EQ(vms_check(f.a), 0);
    REQUIRE(vms_malloc(f.a, 3 * f.g, S(0), &p) == VMS_OK);
    CHECK_EQ(vms_free(f.a, p), VMS_OK);
    /* size 0: VMS_OK and NULL, nothing else */
    snap s0 = snap_take(&f);
    p = (void *)&f;
    CHECK_EQ(vms_malloc(f.a, 0, S(0), &p), VMS_OK);
    CHECK(p == NULL);
    CHECK_EQ(vms_free(f.a, NULL), VMS_OK);
    CHECK_EQ(vms_allocation_size(f.a, NULL), 0);
    same_as(&f, &s0, 0, "size 0", __LINE__);
    /* an allocation of exactly 1 byte and of one byte over a pool boundary */
    void *one = NULL, *edge = NULL;
    CHECK_EQ(vms_malloc(f.a, 1, S(0), &one), VMS_OK);
    CHECK_EQ(vms_malloc(f.a, f.g / 16 + 1, S(0), &edge), VMS_OK);
    CHECK_EQ(vms_allocation_size(f.a, one), 1);
    CHECK_EQ(vms_allocation_size(f.a, edge), f.g / 16 + 1);
    CHECK_EQ(vms_free(f.a, one), VMS_OK);
    CHECK_EQ(vms_free(f.a, edge), VMS_OK);
    fx_close(&f);
}

/* ---------------------------------------------------------------- NULL handles */

BOTH(null_handles) {
    fixture f;
    REQUIRE(fx_open(&f, host) == 0);
    void *p = NULL;
    vms_stats st;
    char buf[32] = "x";
    BAD(&f, vms_malloc(NULL, 16, S(0), &p), VMS_EINVAL);
    BAD(&f, vms_malloc(f.a, 16, S(0), NULL), VMS_EINVAL);
    BAD(&f, vms_malloc(f.a, 0, S(0), NULL), VMS_EINVAL);
    BAD(&f, vms_free(NULL, f.live[0].p), VMS_EINVAL);
    BAD(&f, vms_free(NULL, NULL), VMS_EINVAL);
    BAD(&f, vms_record_stream(NULL, f.live[0].p, S(1)), VMS_EINVAL);
    BAD(&f, vms_record_stream(f.a, NULL, S(1)), VMS_EINVAL);
    BAD(&f, vms_empty_cache(NULL), VMS_EINVAL);
    BAD(&f, vms_set_memory_limit(NULL, 1), VMS_EINVAL);
    BAD(&f, vms_stats_get(NULL, &st), VMS_EINVAL);
    BAD(&f, vms_stats_get(f.a, NULL), VMS_EINVAL);
    BAD(&f, vms_stats_reset_peak(NULL), VMS_EINVAL);
    CHECK_EQ(vms_stats_json(NULL, buf, sizeof buf), 0);
    CHECK_EQ(buf[0], '\0');
    CHECK_EQ(vms_stats_json(NULL, NULL, 0), 0);
    /* json with no buffer: the length only */
    size_t need = vms_stats_json(f.a, NULL, 0);
    CHECK(need > 10);
    CHECK_EQ(vms_stats_json(f.a, buf, 0), need);
    CHECK_EQ(vms_allocation_size(NULL, f.live[0].p), 0);
    CHECK(vms_check(NULL) != 0);
    vms_allocator *a2 = (vms_allocator *)&p;
    CHECK_EQ(vms_allocator_create(NULL, NULL, 0, &a2), VMS_EINVAL);
    CHECK_EQ(vms_allocator_create(NULL, f.be, 0, NULL), VMS_EINVAL);
    vms_allocator_destroy(NULL);
    vms_backend_destroy(NULL);
    vms_config_init(NULL);
    vms_config_resolve(NULL, 0);
    vms_backend_counters bc;
    CHECK_EQ(vms_backend_counters_get(NULL, &bc), VMS_EINVAL);
    CHECK_EQ(vms_backend_counters_get(f.be, NULL), VMS_EINVAL);
    CHECK_EQ(vms_backend_stream_hold(NULL, S(1), 1), VMS_EINVAL);
    CHECK(strcmp(vms_backend_name(NULL), "none") == 0);
    CHECK_EQ(vms_backend_host_create(0, 0, NULL), VMS_EINVAL);
    CHECK_EQ(vms_backend_sim_create(0, 0, NULL), VMS_EINVAL);
    CHECK(vms_backend_cuda_create(0, NULL) != VMS_OK);
    CHECK(vms_backend_cuda_describe(NULL, buf, sizeof buf, NULL) != VMS_OK);
    CHECK(vms_backend_cuda_describe(f.be, buf, sizeof buf, NULL) != VMS_OK);
    fx_close(&f);
}

/* ---------------------------------------------------------------- streams */

BOTH(too_many_streams) {
    fixture f;
    REQUIRE(fx_open(&f, host) == 0);
    /* streams 0.. are tracked until the table (64) is full; then a clear refusal */
    int ok = 0;
    void *p[80] = {0};
    vms_status last = VMS_OK;
    for (int s = 1; s < 80; s++) {
        last = vms_malloc(f.a, 1000, S(s), &p[s]);
        if (last != VMS_OK) break;
        ok++;
    }
    CHECK(ok >= 60 && ok < 79);
    CHECK_EQ(last, VMS_EUNSUPPORTED);
    void *q = NULL;
    BAD(&f, vms_malloc(f.a, 1000, S(1000), &q), VMS_EUNSUPPORTED);
    BAD(&f, vms_record_stream(f.a, f.live[0].p, S(1001)), VMS_EUNSUPPORTED);
    /* known streams still work */
    CHECK_EQ(vms_malloc(f.a, 1000, S(3), &q), VMS_OK);
    CHECK_EQ(vms_free(f.a, q), VMS_OK);
    for (int s = 1; s < 80; s++)
        if (p[s]) CHECK_EQ(vms_free(f.a, p[s]), VMS_OK);
    fx_close(&f);
}

/* ---------------------------------------------------------------- configuration */

/* The documented domain of every resolved field. */
static void check_resolved(const vms_config *c, size_t g, const char *what) {
    char m[160];
    bool ok =
        c->small_chunk_bytes >= (int64_t)g && c->small_chunk_bytes % (int64_t)g == 0 &&
        c->large_chunk_min_bytes >= (int64_t)g && c->large_chunk_min_bytes % (int64_t)g == 0 &&
        c->large_chunk_max_bytes >= c->large_chunk_min_bytes &&
        c->large_chunk_max_bytes % (int64_t)g == 0 && c->small_request_bytes >= 0 &&
        (c->stitch_enable == 0 || c->stitch_enable == 1) && c->stitch_min_bytes >= 0 &&
        c->reuse_limit >= 1 && (c->stitch_when == 0 || c->stitch_when == 1) &&
        c->gc_threshold_bytes >= 0 && c->gc_threshold_count >= 0 && c->memory_limit_bytes >= 0 &&
        c->log_level >= 0 && c->log_level <= 3 && c->check_level >= 0 && c->check_level <= 1;
    if (!ok) {
        snprintf(m, sizeof m, "%s resolves outside the documented domain", what);
        test_fail(__FILE__, __LINE__, m);
    }
}

/* A short workload that must run on any accepted configuration: every call OK or, where the
 * configuration makes memory unobtainable (a chunk size larger than the device), VMS_ENOMEM. */
static void survive(vms_backend *be, const vms_config *cfg, size_t g, const char *what) {
    vms_allocator *a = NULL;
    vms_status s = vms_allocator_create(cfg, be, 0, &a);
    char m[200];
    if (s != VMS_OK && s != VMS_EINVAL) {
        snprintf(m, sizeof m, "%s: allocator_create returned %s", what, vms_status_str(s));
        test_fail(__FILE__, __LINE__, m);
    }
    if (s != VMS_OK) return;
    void *p[12] = {0};
    size_t sizes[12] = {1, 511, 513, 4096, g / 2, g, g + 1, 3 * g, 10 * g, 700, 64 * 1024, 2 * g};
    for (int i = 0; i < 12; i++) {
        s = vms_malloc(a, sizes[i], S(i % 3), &p[i]);
        if (s != VMS_OK && s != VMS_ENOMEM) {
            snprintf(m, sizeof m, "%s: malloc(%zu) returned %s", what, sizes[i], vms_status_str(s));
            test_fail(__FILE__, __LINE__, m);
        }
        if (i % 3 == 2 && p[i - 1]) {
            vms_free(a, p[i - 1]);
            p[i - 1] = NULL;
        }
    }
    if (vms_check(a)) {
        snprintf(m, sizeof m, "%s: vms_check not clean", what);
        test_fail(__FILE__, __LINE__, m);
    }
    for (int i = 0; i < 12; i++)
        if (p[i] && vms_free(a, p[i]) != VMS_OK) {
            snprintf(m, sizeof m, "%s: free failed", what);
            test_fail(__FILE__, __LINE__, m);
        }
    vms_empty_cache(a);
    if (vms_check(a)) {
        snprintf(m, sizeof m, "%s: vms_check not clean at the end", what);
        test_fail(__FILE__, __LINE__, m);
    }
    vms_allocator_destroy(a);
    if (!fault_ledger_empty(be)) {
        snprintf(m, sizeof m, "%s: the backend holds something after destroy", what);
        test_fail(__FILE__, __LINE__, m);
    }
}

TEST(badinput_garbage_config_fields) {
    size_t g = 2 * MIB;
    vms_backend *be = bi_backend(false, g);
    REQUIRE(be);
    const int64_t garbage[] = {
        INT64_MIN,        -1000,         -2,       0, 1, 3, 511, 4097, (int64_t)1 << 40,
        (int64_t)1 << 62, INT64_MAX - 1, INT64_MAX};
    vms_config probe;
    vms_config_init(&probe);
    const size_t nfields = sizeof probe / sizeof(int64_t);
    long cases = 0;
    for (size_t fld = 0; fld < nfields; fld++) {
        for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
            vms_config cfg;
            vms_config_init(&cfg);
            cfg.log_level = 0; /* silent, unless the log level itself is the garbage */
            ((int64_t *)&cfg)[fld] = garbage[i];
            vms_config r = cfg;
            vms_config_resolve(&r, g);
            char what[96];
            snprintf(what, sizeof what, "config field %zu = %lld", fld, (long long)garbage[i]);
            check_resolved(&r, g, what);
            survive(be, &cfg, g, what);
            cases++;
        }
    }
    /* everything garbage at once */
    vms_config all;
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        for (size_t fld = 0; fld < nfields; fld++)
            ((int64_t *)&all)[fld] = garbage[(i + fld) % 12];
        all.log_level = 0;
        vms_config r = all;
        vms_config_resolve(&r, g);
        check_resolved(&r, g, "all fields garbage");
        survive(be, &all, g, "all fields garbage");
        cases++;
    }
    vms_backend_destroy(be);
    printf("     %ld garbage configurations resolved and exercised\n", cases);
}

TEST(badinput_garbage_environment) {
    static const char *const values[] = {"abc",
                                         "-5",
                                         "1e400",
                                         "99999999999999999999999",
                                         "",
                                         " ",
                                         "0x10",
                                         "12Q",
                                         "nan",
                                         "inf",
                                         "-0",
                                         "1.5GiB",
                                         "3kb",
                                         "1e-9",
                                         "18446744073709551615",
                                         "9223372036854775807",
                                         "2 MiB",
                                         "\t7",
                                         "yes",
                                         "ON",
                                         "on_grow_fail",
                                         "before_grow ",
                                         "-1",
                                         "1K1"};
    size_t g = 2 * MIB;
    vms_backend *be = bi_backend(false, g);
    REQUIRE(be);
    env_saved saved;
    env_save_clear(&saved);
    long cases = 0;
    for (size_t v = 0; v < N_OPT_ENV; v++) {
        /* silent, unless the log level itself is the garbage */
        if (strcmp(opt_env_names[v], "VMSTITCH_LOG_LEVEL") != 0)
            setenv("VMSTITCH_LOG_LEVEL", "0", 1);
        else
            unsetenv("VMSTITCH_LOG_LEVEL");
        for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
            setenv(opt_env_names[v], values[i], 1);
            vms_config r;
            vms_config_init(&r);
            vms_config_resolve(&r, g);
            char what[96];
            snprintf(what, sizeof what, "%s=\"%s\"", opt_env_names[v], values[i]);
            check_resolved(&r, g, what);
            survive(be, NULL, g, what);
            cases++;
        }
        unsetenv(opt_env_names[v]);
    }
    env_restore(&saved);
    vms_backend_destroy(be);
    printf("     %ld garbage environment values resolved and exercised\n", cases);
}

TEST(badinput_backend_constructors_and_status_names) {
    vms_backend *be = (vms_backend *)&be;
    size_t bad_g[] = {3, 1000, 4097, (size_t)1 << 63 | 1, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad_g / sizeof bad_g[0]; i++) {
        CHECK_EQ(vms_backend_sim_create(bad_g[i], 0, &be), VMS_EINVAL);
        CHECK_EQ(vms_backend_host_create(bad_g[i], 0, &be), VMS_EINVAL);
    }
    CHECK(vms_last_error()[0] != '\0');
    /* a granularity the host cannot map (smaller than a page) */
    CHECK_EQ(vms_backend_host_create(512, 0, &be), VMS_EINVAL);
    const int codes[] = {-1, 9, 100, 1 << 30};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = vms_status_str((vms_status)codes[i]);
        CHECK(s != NULL && s[0] != '\0');
    }
    for (int c = 0; c <= 8; c++)
        CHECK(vms_status_str((vms_status)c)[0] != '\0');
    CHECK(vms_version() != NULL);
}

/* A memory limit of any value is accepted: 0 (none), tiny (every growth refused, with a
 * report), SIZE_MAX (no practical limit); lowering it below what is held frees what it can. */
BOTH(memory_limit_values) {
    fixture f;
    REQUIRE(fx_open(&f, host) == 0);
    void *p = NULL;
    CHECK_EQ(vms_set_memory_limit(f.a, 1), VMS_OK);
    vms_status s = vms_malloc(f.a, 16 * f.g, S(0), &p);
    CHECK_EQ(s, VMS_ENOMEM);
    CHECK(strstr(vms_oom_report(), "limit") != NULL);
    CHECK_EQ(vms_check(f.a), 0);
    CHECK_EQ(vms_set_memory_limit(f.a, SIZE_MAX), VMS_OK);
    CHECK_EQ(vms_malloc(f.a, 16 * f.g, S(0), &p), VMS_OK);
    CHECK_EQ(vms_free(f.a, p), VMS_OK);
    CHECK_EQ(vms_set_memory_limit(f.a, 0), VMS_OK);
    CHECK_EQ(vms_malloc(f.a, 16 * f.g, S(0), &p), VMS_OK);
    CHECK_EQ(vms_free(f.a, p), VMS_OK);
    CHECK_EQ(vms_check(f.a), 0);
    fx_close(&f);
}
