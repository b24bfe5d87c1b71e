/* libFuzzer target: the allocator driven by arbitrary bytes. The first bytes choose the
 * backend (sim, or host with real memory and stamps), its granularity and every configuration
 * value (including garbage); the rest is a sequence of operations: malloc, free, record_stream,
 * empty_cache, memory limits, held streams, bad frees, stats, and injected backend faults
 * (through tests/fault_backend.c; FUZZ_NO_FAULTS=1 in the environment turns them into no-ops;
 * FUZZ_VERBOSE=1 prints one line per operation, to read a crash).
 *
 * After every operation: vms_check is clean; no live block overlaps another (span set); on host
 * every live block keeps its stamps; a bad free changes no statistic; statuses are among those
 * the operation may return; reserved bytes never pass a memory limit that was set while they
 * were under it. At the end everything is freed, the cache emptied (nothing may stay reserved),
 * the allocator destroyed, and the backend must hold no chunk, reservation, mapping or event.
 * Any violation prints one line and traps, which libFuzzer reports as a crash with the input.
 *
 * Built with -DFUZZ_PLANT_BUG=1 it also understands an operation that plants a block handed out
 * twice (test_plant_overlap); the fuzz self-test in tests/fuzz/run.sh expects that build to
 * crash on the seed corpus, which shows the checks above catch the bug.
 * Single-threaded; one allocator per input.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_backend.h"
#include "internal.h"
#include "live_check.h"
#include "vmstitch.h"

#define NSLOTS 32
#define NFREED 8
#define MAX_OPS 2000

#define S(k) ((vms_stream)(uintptr_t)(k))

#define DIE(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, "fuzz_alloc: ");                                                           \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        __builtin_trap();                                                                          \
    } while (0)

typedef struct input {
    const uint8_t *p;
    size_t n;
} input;

static bool verbose;

static uint8_t next8(input *in) {
    if (!in->n) return 0;
    in->n--;
    return *in->p++;
}

static uint32_t next16(input *in) {
    uint32_t lo = next8(in);
    return lo | (uint32_t)next8(in) << 8;
}

typedef struct slot {
    void *p;
    size_t n;
    uint64_t id;
} slot;

typedef struct world {
    bool host, faults;
    size_t g;
    vms_backend *be;
    vms_allocator *a;
    slot s[NSLOTS];
    void *freed[NFREED];
    size_t nfreed;
    live_spans spans;
    uint64_t next_id;
    size_t limit;       /* memory limit in force (0: none) */
    bool limit_binding; /* reserved was under it when it was set */
    bool armed;
    bool held[4];
} world;

/* Values a configuration field may take, relative to the granularity where that matters. */
static int64_t config_value(uint8_t b, size_t g) {
    static const int64_t fixed[] = {VMS_UNSET, 0,       1,        2,         3,  512,
                                    4096,      1 << 20, 12 << 20, INT64_MAX, -5, (int64_t)1 << 40};
    if (b < 128) return VMS_UNSET;
    b -= 128;
    if (b < sizeof fixed / sizeof fixed[0]) return fixed[b];
    return (int64_t)g * (b % 16) / 2; /* 0, g/2, g, ... 7.5 g */
}

static size_t pick_size(world *w, uint8_t cls, uint32_t bits) {
    switch (cls % 8) {
    case 0:
        return 1 + bits % 512;
    case 1:
        return 1 + bits % (w->g / 8);
    case 2:
        return w->g;
    case 3:
        return w->g * (1 + bits % 4);
    case 4:
        return 1 + bits % (4 * w->g);
    case 5:
        return 1 + (size_t)bits * 97 % (16 * w->g);
    case 6:
        return w->g / 2 + bits % 1024;
    default:
        return 512 * (1 + bits % 64);
    }
}

static void verify(world *w, const char *after) {
    size_t v = vms_check(w->a);
    if (v) DIE("vms_check reports %zu violations after %s", v, after);
    vms_stats st;
    if (vms_stats_get(w->a, &st) != VMS_OK) DIE("stats_get failed");
    if (st.allocated_bytes_current > st.reserved_bytes_current)
        DIE("allocated %llu > reserved %llu after %s",
            (unsigned long long)st.allocated_bytes_current,
            (unsigned long long)st.reserved_bytes_current, after);
    if (st.requested_bytes_current > st.allocated_bytes_current)
        DIE("requested > allocated after %s", after);
    if (w->limit && w->limit_binding && st.reserved_bytes_current > w->limit)
        DIE("reserved %llu passed the limit %zu after %s",
            (unsigned long long)st.reserved_bytes_current, w->limit, after);
}

static void verify_data(world *w) {
    for (int i = 0; i < NSLOTS; i++) {
        slot *s = &w->s[i];
        if (!s->p) continue;
        if (vms_allocation_size(w->a, s->p) != s->n) DIE("slot %d lost its size", i);
        if (w->host && live_stamp_bad(s->p, s->n, s->id)) DIE("slot %d (%p) corrupted", i, s->p);
    }
}

static bool plausible_failure(vms_status s) {
    return s == VMS_ENOMEM || s == VMS_EBACKEND || s == VMS_ENOMEM_HOST;
}

static void keep(world *w, int i, void *p, size_t n) {
    if (!p || (uintptr_t)p % 512) DIE("malloc gave %p", p);
    if (live_span_add(&w->spans, p, n) == -1)
        DIE("malloc gave %p (%zu bytes), overlapping a live block", p, n);
    w->s[i] = (slot){p, n, ++w->next_id};
    if (w->host) live_stamp_fill(p, n, w->s[i].id);
}

static void release(world *w, int i) {
    slot *s = &w->s[i];
    if (w->host && live_stamp_bad(s->p, s->n, s->id)) DIE("slot %d corrupted at free", i);
    vms_status st = vms_free(w->a, s->p);
    if (st != VMS_OK) DIE("free of a live block returned %d", (int)st);
    live_span_del(&w->spans, s->p);
    w->freed[w->nfreed++ % NFREED] = s->p;
    s->p = NULL;
}

static void op_malloc(world *w, input *in) {
    int i = next8(in) % NSLOTS;
    uint8_t cls = next8(in);
    uint32_t bits = next16(in);
    int stream = cls >> 5;
    if (w->s[i].p) release(w, i);
    size_t n = pick_size(w, cls, bits);
    void *p = (void *)&w;
    vms_status st = vms_malloc(w->a, n, S(stream), &p);
    if (st == VMS_OK) {
        keep(w, i, p, n);
        return;
    }
    if (p) DIE("failed malloc left *ptr set");
    if (!plausible_failure(st)) DIE("malloc(%zu) returned %d", n, (int)st);
    if (st == VMS_EBACKEND && !w->armed) DIE("malloc returned VMS_EBACKEND with no fault armed");
    if (st == VMS_ENOMEM && !vms_oom_report()[0]) DIE("VMS_ENOMEM without a report");
}

static void op_bad_free(world *w, input *in) {
    int i = next8(in) % NSLOTS;
    uint32_t off = next16(in);
    void *p;
    if (w->s[i].p && w->s[i].n > 1) {
        p = (char *)w->s[i].p + 1 + off % (w->s[i].n - 1); /* interior */
    } else if (w->nfreed) {
        p = w->freed[off % (w->nfreed < NFREED ? w->nfreed : NFREED)]; /* freed (or reused) */
        for (int k = 0; k < NSLOTS; k++)
            if (w->s[k].p == p) return; /* handed out again: a valid pointer now */
    } else {
        p = (void *)(uintptr_t)(off * 4096 + 512);
    }
    vms_stats a, b;
    vms_stats_get(w->a, &a);
    vms_status st = off & 1 ? vms_free(w->a, p) : vms_record_stream(w->a, p, S(1));
    vms_stats_get(w->a, &b);
    if (st != VMS_ENOTFOUND && st != VMS_EDOUBLEFREE) DIE("bad free of %p returned %d", p, (int)st);
    if (memcmp(&a, &b, sizeof a) != 0) DIE("bad free of %p changed the statistics", p);
}

static void op_fault(world *w, input *in) {
    uint8_t kind = next8(in);
    uint8_t k = next8(in);
    if (!w->faults) return;
    unsigned mask = kind < 16 ? FAULT_ALL : FAULT_BIT(kind % FAULT_KINDS);
    uint64_t count = k & 0x80 ? UINT64_MAX : 1 + (k >> 5 & 3);
    fault_arm(w->be, mask, 1 + (k & 31), count, kind & 0x40 ? VMS_ENOMEM : VMS_EBACKEND);
    if (verbose)
        fprintf(stderr, "fault armed: %s, call %d from now, %s\n",
                kind < 16 ? "any kind" : fault_kind_name((fault_kind)(kind % FAULT_KINDS)),
                1 + (k & 31),
                count == UINT64_MAX ? "until disarmed"
                : count == 1        ? "once"
                                    : "a burst");
    w->armed = true;
}

static void op_limit(world *w, input *in) {
    uint8_t v = next8(in);
    vms_stats st;
    vms_stats_get(w->a, &st);
    size_t lim = v < 64 ? 0 : (size_t)(v - 63) * w->g;
    if (vms_set_memory_limit(w->a, lim) != VMS_OK) DIE("set_memory_limit failed");
    vms_stats_get(w->a, &st);
    w->limit = lim;
    w->limit_binding = lim && st.reserved_bytes_current <= lim;
}

static int run(const uint8_t *data, size_t size) {
    input in = {data, size};
    world w;
    memset(&w, 0, sizeof w);
    uint8_t sel = next8(&in);
    w.host = sel & 1;
    const char *nf = getenv("FUZZ_NO_FAULTS");
    w.faults = !(nf && nf[0] == '1');
    const char *vb = getenv("FUZZ_VERBOSE"); /* one line per operation, to read a crash */
    verbose = vb && vb[0] == '1';
    static const size_t host_g[] = {64 << 10, 128 << 10, 4096 * 4, 2 << 20};
    static const size_t sim_g[] = {2 << 20, 64 << 10, 4096, 16 << 20};
    w.g = w.host ? host_g[sel >> 1 & 3] : sim_g[sel >> 1 & 3];
    vms_backend *inner = NULL;
    /* a bounded device keeps the arenas' page tables small (8 bytes per granule) */
    size_t cap = w.host ? 256 * w.g : (sel & 8 ? 256 * w.g : 2048 * w.g);
    if ((w.host ? vms_backend_host_create(w.g, cap, &inner)
                : vms_backend_sim_create(w.g, cap, &inner)) != VMS_OK)
        DIE("backend_create failed");
    if (fault_backend_create(inner, &w.be) != VMS_OK) DIE("fault_backend_create failed");
    vms_config cfg;
    vms_config_init(&cfg);
    int64_t *f = (int64_t *)&cfg;
    for (size_t i = 0; i < sizeof cfg / sizeof(int64_t); i++)
        f[i] = config_value(next8(&in), w.g);
    cfg.log_level = 0; /* garbage values warn on stderr; libFuzzer's output stays readable */
    if (cfg.check_level != 1) cfg.check_level = 0;
    vms_config resolved = cfg;
    vms_config_resolve(&resolved, w.g);
    w.limit = (size_t)resolved.memory_limit_bytes;
    w.limit_binding = true;
    vms_status st = vms_allocator_create(&cfg, w.be, 0, &w.a);
    if (st != VMS_OK) DIE("allocator_create returned %d", (int)st);
    live_span_init(&w.spans);

    for (int n = 0; n < MAX_OPS && in.n; n++) {
        uint8_t op = next8(&in);
        const char *name = "?";
        switch (op % 16) {
        case 0:
        case 1:
        case 2:
        case 3:
            name = "malloc";
            op_malloc(&w, &in);
            break;
        case 4:
        case 5:
        case 6: {
            name = "free";
            int i = next8(&in) % NSLOTS;
            if (w.s[i].p) release(&w, i);
            break;
        }
        case 7: {
            name = "record_stream";
            int i = next8(&in) % NSLOTS;
            int stream = next8(&in) % 4;
            if (w.s[i].p && vms_record_stream(w.a, w.s[i].p, S(stream)) != VMS_OK)
                DIE("record_stream of a live block failed");
            break;
        }
        case 8:
            name = "empty_cache";
            if (vms_empty_cache(w.a) != VMS_OK) DIE("empty_cache failed");
            break;
        case 9:
            name = "limit";
            op_limit(&w, &in);
            break;
        case 10: {
            name = "hold";
            int s = next8(&in) % 4;
            w.held[s] = !w.held[s];
            vms_backend_stream_hold(w.be, S(s), w.held[s]);
            break;
        }
        case 11:
            name = "bad free";
            op_bad_free(&w, &in);
            break;
        case 12:
            name = "fault";
            op_fault(&w, &in);
            break;
        case 13:
            name = "disarm";
            fault_disarm(w.be);
            w.armed = false;
            break;
        case 14: {
            name = "stats";
            char buf[64];
            if (vms_stats_json(w.a, buf, sizeof buf) < sizeof buf) DIE("stats json too short");
            if (next8(&in) & 1) vms_stats_reset_peak(w.a);
            verify_data(&w);
            break;
        }
        case 15: {
#if FUZZ_PLANT_BUG
            name = "plant";
            int i = next8(&in) % NSLOTS;
            void *q = NULL;
            if (!w.s[i].p && test_plant_overlap(w.a, 512, &q) == VMS_OK) keep(&w, i, q, 512);
#else
            name = "huge malloc";
            void *p = (void *)&w;
            st = vms_malloc(w.a, SIZE_MAX - next8(&in), S(0), &p);
            if (st != VMS_ENOMEM && st != VMS_EINVAL) DIE("malloc(SIZE_MAX) returned %d", (int)st);
            if (p) DIE("malloc(SIZE_MAX) set *ptr");
#endif
            break;
        }
        }
        if (verbose) {
            vms_stats vs;
            vms_stats_get(w.a, &vs);
            fprintf(stderr, "op %d: %s (byte %u): reserved %llu, allocated %llu, faults %llu\n", n,
                    name, op, (unsigned long long)vs.reserved_bytes_current,
                    (unsigned long long)vs.allocated_bytes_current,
                    (unsigned long long)fault_injected(w.be));
        }
        verify(&w, name);
    }

    /* teardown: with the fault gone and the streams released, everything comes back */
    fault_disarm(w.be);
    w.armed = false;
    for (int s = 0; s < 4; s++)
        if (w.held[s]) vms_backend_stream_hold(w.be, S(s), 0);
    verify_data(&w);
    for (int i = 0; i < NSLOTS; i++)
        if (w.s[i].p) release(&w, i);
    if (vms_empty_cache(w.a) != VMS_OK) DIE("final empty_cache failed");
    verify(&w, "teardown");
    vms_stats stt;
    vms_stats_get(w.a, &stt);
    if (stt.allocated_bytes_current || stt.active_bytes_current)
        DIE("%llu bytes still allocated after freeing everything",
            (unsigned long long)stt.allocated_bytes_current);
    if (stt.reserved_bytes_current)
        DIE("%llu bytes still reserved after empty_cache",
            (unsigned long long)stt.reserved_bytes_current);
    vms_allocator_destroy(w.a);
    fault_ledger l = fault_ledger_get(w.be);
    if (l.chunks || l.reservations || l.mappings || l.events)
        DIE("leak: the backend still holds %lld chunks, %lld reservations, %lld mappings, %lld "
            "events",
            (long long)l.chunks, (long long)l.reservations, (long long)l.mappings,
            (long long)l.events);
    vms_backend_destroy(w.be);
    live_span_destroy(&w.spans);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return run(data, size);
}
