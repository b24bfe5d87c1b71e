/* Fault injection and out-of-memory tests. A fixed workload (growth, splitting, stitching,
 * reuse of cached stitched ranges, GC of idle ranges, held streams and pending frees,
 * cross-stream reuse, empty_cache, a memory limit, small and large pools, then a seeded random
 * mix) runs over the fault wrapper (fault_backend.h) on the host backend (real bytes, patterns
 * checked) and on sim. The sweeps make the k-th backend call fail, for every k the workload
 * reaches (one-shot), the k-th and the next (a call and its rollback), for each kind of call
 * an outage that lasts to the end of the public call it hits, and the k-th call inside
 * vms_allocator_destroy. After every injected failure:
 * the public call returns a documented status (or absorbs the failure), vms_check is clean,
 * every live pattern is intact, a failed call changed nothing visible, and the same call
 * succeeds once the fault is gone. At destroy the wrapper's ledger must show that the inner
 * backend holds no chunk, reservation, mapping or event: nothing leaked.
 *
 * Each sweep runs in a child process, so a crash at one k is reported with that k (and its
 * ASan report) and the sweep carries on from k+1, and a child that stops making progress is
 * killed (VMS_FAULT_HANG_S); VMS_TEST_NOFORK=1 runs it inline (gdb). The targeted tests at the
 * end reduce each failure the sweeps found to a few calls.
 * The planted-bug test shows that a block handed out twice (test_plant_overlap) is seen by
 * three independent witnesses: vms_check, the span set and the byte patterns.
 * Single-threaded.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fault_backend.h"
#include "internal.h"
#include "live_check.h"
#include "test.h"
#include "test_config.h"
#include "vmstitch.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define S(k) ((vms_stream)(uintptr_t)(k))

/* ---------------------------------------------------------------- results that survive a child */

typedef struct fx_shared {
    uint64_t k;        /* the run in progress */
    uint64_t runs;     /* workload runs completed */
    uint64_t ops;      /* public calls made */
    uint64_t injected; /* failures injected */
    uint64_t surfaced; /* ... that a public call returned as a status */
    uint64_t absorbed; /* ... that the core recovered from (the call still succeeded) */
    uint64_t failures;
    int done;
} fx_shared;

static fx_shared *fx;
static fx_shared fx_inline; /* when no sweep is running */
static const char *fx_what = "";

static void fx_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fx_fail(const char *fmt, ...) {
    fx_shared *sh = fx ? fx : &fx_inline;
    if (sh->failures++ < (uint64_t)test_param("VMS_FAULT_REPORTS", 6)) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        fprintf(stderr, "    FAIL %s k=%llu: %s\n", fx_what, (unsigned long long)sh->k, msg);
    }
}

typedef void (*sweep_fn)(void *arg, uint64_t k);

/* Waits for the child; false if it made no progress (sh->ops, sh->k) for VMS_FAULT_HANG_S
 * seconds (default 120), in which case it has been killed. Under valgrind, some corruptions
 * turn into endless loops rather than crashes. */
static bool wait_child(pid_t pid, fx_shared *sh, int *status) {
    long hang_s = test_param("VMS_FAULT_HANG_S", 120);
    uint64_t last_ops = sh->ops, last_k = sh->k;
    struct timespec tick = {0, 20 * 1000 * 1000}, since, now;
    clock_gettime(CLOCK_MONOTONIC, &since);
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) return true;
        if (r < 0 && errno != EINTR) return true;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (sh->ops != last_ops || sh->k != last_k) {
            last_ops = sh->ops;
            last_k = sh->k;
            since = now;
        } else if (now.tv_sec - since.tv_sec > hang_s) {
            kill(pid, SIGKILL);
            while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
            }
            return false;
        }
        nanosleep(&tick, NULL);
    }
}

/* Runs fn(arg, k) for k = first..last (every VMS_FAULT_SWEEP_STRIDE-th, default every one) in
 * a child process; a child that dies is reported with the k it was running and a new child
 * carries on after it. A child whose runs all passed exits through exit(), so that
 * LeakSanitizer checks it; one that already failed leaves through _exit(), so that the leaks of
 * the runs it abandoned do not bury the first report. */
static void sweep(const char *what, uint64_t first, uint64_t last, sweep_fn fn, void *arg,
                  fx_shared *total) {
    fx_shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(sh != MAP_FAILED);
    memset(sh, 0, sizeof *sh);
    fx_what = what;
    uint64_t stride = (uint64_t)test_param("VMS_FAULT_SWEEP_STRIDE", 1);
    bool inline_run = test_param("VMS_TEST_NOFORK", 0) != 0;
    int deaths = 0;
    uint64_t k = first;
    while (k <= last) {
        if (inline_run) {
            fx = sh;
            for (; k <= last; k += stride) {
                sh->k = k;
                fn(arg, k);
            }
            fx = NULL;
            break;
        }
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            fx = sh;
            for (; k <= last; k += stride) {
                sh->k = k;
                fn(arg, k);
            }
            sh->done = 1;
            if (sh->failures) _exit(0);
            exit(0);
        }
        int st = 0;
        if (!wait_child(pid, sh, &st)) {
            fprintf(stderr,
                    "    FAIL %s: no progress for %ld s while running k=%llu: killed (hang)\n",
                    what, test_param("VMS_FAULT_HANG_S", 120), (unsigned long long)sh->k);
            sh->failures++;
            if (++deaths >= 3) break;
            k = sh->k + stride;
            continue;
        }
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && sh->done) break;
        if (deaths++ < 3) {
            if (WIFSIGNALED(st))
                fprintf(stderr, "    FAIL %s: child killed by signal %d while running k=%llu\n",
                        what, WTERMSIG(st), (unsigned long long)sh->k);
            else
                fprintf(stderr,
                        "    FAIL %s: child exited with status %d %s k=%llu (sanitizer "
                        "report above)\n",
                        what, WEXITSTATUS(st), sh->done ? "after the last run," : "while running",
                        (unsigned long long)sh->k);
        }
        sh->failures++;
        if (sh->done) break;
        if (deaths == 3) {
            fprintf(stderr, "    FAIL %s: giving up after 3 crashes (k up to %llu of %llu run)\n",
                    what, (unsigned long long)sh->k, (unsigned long long)last);
            break;
        }
        k = sh->k + stride;
    }
    if (sh->failures) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s: %llu failures, %d crashes (first reports above)", what,
                 (unsigned long long)sh->failures, deaths);
        test_fail(__FILE__, __LINE__, msg);
    }
    if (total) {
        total->runs += sh->runs;
        total->ops += sh->ops;
        total->injected += sh->injected;
        total->surfaced += sh->surfaced;
        total->absorbed += sh->absorbed;
        total->failures += sh->failures;
    }
    munmap(sh, sizeof *sh);
}

static void fx_report(const char *name, const fx_shared *t) {
    printf(
        "     %s: %llu runs, %llu public calls, %llu faults injected (%llu returned as a status, "
        "%llu absorbed), %llu failures\n",
        name, (unsigned long long)t->runs, (unsigned long long)t->ops,
        (unsigned long long)t->injected, (unsigned long long)t->surfaced,
        (unsigned long long)t->absorbed, (unsigned long long)t->failures);
}

/* ---------------------------------------------------------------- the workload */

typedef enum op_kind {
    OP_MALLOC,
    OP_FREE,
    OP_RECORD,
    OP_EMPTY,
    OP_HOLD,
    OP_UNHOLD,
    OP_LIMIT, /* memory limit = allocated + size units */
    OP_NOLIMIT,
} op_kind;

typedef struct op {
    uint8_t kind;
    uint8_t stream;
    uint16_t slot;
    uint32_t units; /* size in units of g/64 (MALLOC), headroom (LIMIT) */
    bool expect_oom;
} op;

#define NSLOTS 48
#define MAX_OPS 512

typedef struct work {
    op ops[MAX_OPS];
    size_t nops;
    size_t nops_before_teardown; /* the final "free everything" starts here */
} work;

static void add(work *w, op_kind kind, int slot, uint32_t units, int stream) {
    if (w->nops == MAX_OPS) return;
    w->ops[w->nops++] = (op){(uint8_t)kind, (uint8_t)stream, (uint16_t)slot, units, false};
}

/* The fixed sequence; sizes in units of g/64 (1 KiB on host with 64 KiB granules). */
static void work_build(work *w) {
    memset(w, 0, sizeof *w);
    /* A: sixteen one-granule blocks side by side; B: every other one freed, so the free
     * chunks are scattered between live blocks */
    for (int i = 0; i < 16; i++)
        add(w, OP_MALLOC, i, 64, 0);
    for (int i = 1; i < 16; i += 2)
        add(w, OP_FREE, i, 0, 0);
    /* C: stitch 3 granules; free it (cached); reuse it; two more stitches push the cache of
     * idle ranges past its count threshold (2): GC unmaps the oldest */
    add(w, OP_MALLOC, 16, 192, 0);
    add(w, OP_FREE, 16, 0, 0);
    add(w, OP_MALLOC, 16, 190, 0);
    add(w, OP_MALLOC, 17, 128, 0);
    add(w, OP_FREE, 16, 0, 0);
    add(w, OP_FREE, 17, 0, 0);
    add(w, OP_MALLOC, 18, 250, 0);
    add(w, OP_FREE, 18, 0, 0);
    add(w, OP_MALLOC, 19, 300, 0);
    add(w, OP_FREE, 19, 0, 0);
    /* D: a block used on a held stream is freed: pending until the stream is released */
    add(w, OP_HOLD, 0, 0, 1);
    add(w, OP_MALLOC, 20, 64, 0);
    add(w, OP_RECORD, 20, 0, 1);
    add(w, OP_FREE, 20, 0, 0);
    add(w, OP_MALLOC, 21, 64, 0);
    add(w, OP_UNHOLD, 0, 0, 1);
    add(w, OP_MALLOC, 22, 64, 0);
    /* E: memory freed on stream 2 reused on stream 0 (an event decides) */
    add(w, OP_MALLOC, 23, 100, 2);
    add(w, OP_MALLOC, 24, 100, 2);
    add(w, OP_FREE, 23, 0, 2);
    add(w, OP_FREE, 24, 0, 2);
    add(w, OP_MALLOC, 25, 200, 0);
    /* F */
    add(w, OP_EMPTY, 0, 0, 0);
    /* G: both pools, several streams, growth in several chunks at once */
    static const uint32_t mixed[] = {3, 1, 130, 700, 2, 90, 500, 4};
    for (int i = 0; i < 8; i++)
        add(w, OP_MALLOC, 26 + i, mixed[i], i % 2);
    for (int i = 27; i < 34; i += 2)
        add(w, OP_FREE, i, 0, 0);
    /* H: over a memory limit: VMS_ENOMEM, whatever faults happen on the way */
    add(w, OP_LIMIT, 0, 128, 0);
    add(w, OP_MALLOC, 34, 64 * 64, 0);
    w->ops[w->nops - 1].expect_oom = true;
    add(w, OP_NOLIMIT, 0, 0, 0);
    /* I: a seeded random mix */
    static const uint32_t sizes[] = {1, 3, 4, 5, 60, 64, 65, 128, 190, 256, 400, 700};
    uint64_t rng = 12345;
    for (int n = 0; n < 140; n++) {
        uint64_t r = test_rand(&rng);
        int slot = (int)(r % NSLOTS);
        int stream = (int)(r >> 8) % 3;
        switch ((r >> 16) % 16) {
        case 0:
            add(w, OP_EMPTY, 0, 0, 0);
            break;
        case 1:
        case 2:
            add(w, OP_RECORD, slot, 0, stream);
            break;
        case 3:
        case 4:
        case 5:
        case 6:
        case 7:
            add(w, OP_FREE, slot, 0, 0);
            break;
        default:
            add(w, OP_MALLOC, slot, sizes[(r >> 24) % 12], stream);
            break;
        }
    }
    /* J: teardown */
    w->nops_before_teardown = w->nops;
    for (int i = 0; i < NSLOTS; i++)
        add(w, OP_FREE, i, 0, 0);
    add(w, OP_EMPTY, 0, 0, 0);
}

typedef struct slot {
    void *p;
    size_t n;
    uint64_t id;
} slot;

typedef struct run {
    bool host;
    size_t g, u;
    vms_config cfg;
    vms_backend *be; /* the fault wrapper */
    vms_allocator *a;
    slot s[NSLOTS];
    live_spans spans;
    uint64_t next_id;
    bool outage; /* disarm at the end of the call that first fails */
    unsigned mask;
    uint64_t k, count;
    vms_status inject;
    bool broken; /* vms_check failed: the rest of the run is skipped, the allocator abandoned */
} run;

static vms_config work_config(size_t g) {
    vms_config c = test_chunk_config(g, 2 * g, g / 16);
    c.reuse_limit = 4;
    c.gc_threshold_bytes = 0;
    c.gc_threshold_count = 2;
    c.log_level = 0;
    return c;
}

static void run_init(run *r, bool host) {
    memset(r, 0, sizeof *r);
    r->host = host;
    r->g = host ? 64 * KIB : 2 * MIB;
    r->u = r->g / 64;
    r->cfg = work_config(r->g);
    r->next_id = 1;
    r->inject = VMS_EBACKEND;
}

/* A fault wrapper (unarmed) over a host backend of capacity cap (0: the default) or a sim
 * backend of that capacity. */
static vms_backend *plain_backend(bool host, size_t g, size_t cap) {
    vms_backend *inner = NULL, *be = NULL;
    if ((host ? vms_backend_host_create(g, cap, &inner) : vms_backend_sim_create(g, cap, &inner)) !=
        VMS_OK)
        return NULL;
    if (fault_backend_create(inner, &be) != VMS_OK) {
        vms_backend_destroy(inner);
        return NULL;
    }
    return be;
}

static const char *st_name(vms_status s) {
    static const char *const n[] = {"OK",           "EINVAL",      "ENOMEM",
                                    "ENOTFOUND",    "EDOUBLEFREE", "EBACKEND",
                                    "EUNSUPPORTED", "ECAPTURE",    "ENOMEM_HOST"};
    return (unsigned)s < sizeof n / sizeof n[0] ? n[s] : "?";
}

static const char *op_name(const op *o) {
    static const char *const n[] = {"malloc", "free",   "record_stream", "empty_cache",
                                    "hold",   "unhold", "limit",         "nolimit"};
    return n[o->kind];
}

/* Everything a user could see: every live block intact and known, the structures sound. */
static void verify(run *r, const char *when, size_t at) {
    size_t v = vms_check(r->a);
    if (v) {
        fx_fail("%s op %zu: vms_check reports %zu violations", when, at, v);
        r->broken = true;
    }
    for (int i = 0; i < NSLOTS; i++) {
        slot *s = &r->s[i];
        if (!s->p) continue;
        if (vms_allocation_size(r->a, s->p) != s->n)
            fx_fail("%s op %zu: slot %d (%p) no longer live", when, at, i, s->p);
        if (r->host && live_pat_bad(s->p, s->n, s->id))
            fx_fail("%s op %zu: slot %d (%p, %zu B) corrupted", when, at, i, s->p, s->n);
    }
}

static vms_status op_do(run *r, const op *o, size_t at) {
    slot *s = &r->s[o->slot];
    vms_status st = VMS_OK;
    switch ((op_kind)o->kind) {
    case OP_MALLOC: {
        if (s->p) return o->expect_oom ? VMS_ENOMEM : VMS_OK; /* the script meets a full slot */
        size_t n = o->units * r->u;
        void *p = (void *)1;
        st = vms_malloc(r->a, n, S(o->stream), &p);
        if (st != VMS_OK) {
            if (p) fx_fail("op %zu: failed malloc left *ptr = %p", at, p);
            return st;
        }
        if (!p || (uintptr_t)p % 512) fx_fail("op %zu: malloc gave %p", at, p);
        if (live_span_add(&r->spans, p, n) != 0)
            fx_fail("op %zu: malloc gave %p (%zu B), overlapping a live block", at, p, n);
        s->p = p;
        s->n = n;
        s->id = r->next_id++;
        if (r->host) live_pat_fill(p, n, s->id);
        return VMS_OK;
    }
    case OP_FREE:
        if (!s->p) return VMS_OK;
        if (r->host && live_pat_bad(s->p, s->n, s->id))
            fx_fail("op %zu: slot %d corrupted at free", at, o->slot);
        st = vms_free(r->a, s->p);
        if (st == VMS_OK) {
            live_span_del(&r->spans, s->p);
            s->p = NULL;
        }
        return st;
    case OP_RECORD:
        if (!s->p) return VMS_OK;
        return vms_record_stream(r->a, s->p, S(o->stream));
    case OP_EMPTY:
        return vms_empty_cache(r->a);
    case OP_HOLD:
        return vms_backend_stream_hold(r->be, S(o->stream), 1);
    case OP_UNHOLD:
        return vms_backend_stream_hold(r->be, S(o->stream), 0);
    case OP_LIMIT: {
        vms_stats stt;
        vms_stats_get(r->a, &stt);
        return vms_set_memory_limit(r->a, stt.allocated_bytes_current + o->units * r->u);
    }
    case OP_NOLIMIT:
        return vms_set_memory_limit(r->a, 0);
    }
    return VMS_EINVAL;
}

static bool plausible(vms_status s) {
    return s == VMS_EBACKEND || s == VMS_ENOMEM || s == VMS_ENOMEM_HOST;
}

/* One public call, with the checks that follow an injected failure. */
static void step(run *r, const op *o, size_t at) {
    if (r->broken) return;
    uint64_t inj0 = fault_injected(r->be);
    vms_status want = o->expect_oom ? VMS_ENOMEM : VMS_OK;
    bool was_live = o->kind == OP_FREE && r->s[o->slot].p;
    vms_status s = op_do(r, o, at);
    uint64_t inj = fault_injected(r->be) - inj0;
    fx->ops++;
    if (inj) {
        fault_kind fk = fault_last_kind(r->be);
        char fks[48]; /* "map", or "map+release" when two calls failed */
        if (fault_first_kind(r->be) != fk)
            snprintf(fks, sizeof fks, "%s+%s", fault_kind_name(fault_first_kind(r->be)),
                     fault_kind_name(fk));
        else
            snprintf(fks, sizeof fks, "%s", fault_kind_name(fk));
        fault_disarm(r->be); /* one-shot faults are gone already; an outage ends here */
        fx->injected += inj;
        if (s == want)
            fx->absorbed += inj;
        else
            fx->surfaced += inj;
        if (s != want && !plausible(s))
            fx_fail("op %zu (%s): injected %s failure returned %s", at, op_name(o), fks,
                    st_name(s));
        if (s == VMS_EBACKEND && !vms_last_error()[0])
            fx_fail("op %zu (%s): VMS_EBACKEND without a message", at, op_name(o));
        if (was_live && s != VMS_OK && !r->s[o->slot].p)
            fx_fail("op %zu: failed free lost the block", at);
        verify(r, fks, at);
        if (s != want) {
            vms_status again = op_do(r, o, at);
            fx->ops++;
            if (again != want) {
                fx_fail("op %zu (%s): after a %s fault, the retry returned %s (want %s)", at,
                        op_name(o), fks, st_name(again), st_name(want));
                r->broken = true;
            }
        }
    } else if (s != want) {
        fx_fail("op %zu (%s slot %u): returned %s (want %s) with no fault injected", at, op_name(o),
                o->slot, st_name(s), st_name(want));
        r->broken = true;
    }
    if (o->expect_oom && s == VMS_ENOMEM && !strstr(vms_oom_report(), "limit"))
        fx_fail("op %zu: the OOM report does not mention the limit: %s", at, vms_oom_report());
    if (!r->broken && vms_check(r->a)) {
        fx_fail("op %zu (%s slot %u): vms_check not clean (last fault: %s)", at, op_name(o),
                o->slot, fault_kind_name(fault_last_kind(r->be)));
        r->broken = true;
    }
}

/* The inner backend must hold nothing: called after vms_allocator_destroy. */
static void leak_check(vms_backend *be, const char *when) {
    fault_ledger l = fault_ledger_get(be);
    if (l.chunks || l.reservations || l.mappings || l.events)
        fx_fail("%s: the backend still holds %lld chunks, %lld reservations, %lld mappings, "
                "%lld events",
                when, (long long)l.chunks, (long long)l.reservations, (long long)l.mappings,
                (long long)l.events);
}

/* Creates the allocator (faults may hit it), runs ops [0, upto), and returns with the fault
 * disarmed. False if the run could not start. */
static bool run_start(run *r, const work *w, size_t upto) {
    r->be = plain_backend(r->host, r->g, r->host ? 64 * MIB : 0);
    if (!r->be) {
        fx_fail("no backend");
        return false;
    }
    live_span_init(&r->spans);
    if (r->mask) fault_arm(r->be, r->mask, r->k, r->count, r->inject);
    vms_status s = vms_allocator_create(&r->cfg, r->be, 0, &r->a);
    fx->ops++;
    if (s != VMS_OK) {
        if (!fault_injected(r->be))
            fx_fail("allocator_create returned %s with no fault", st_name(s));
        else if (!plausible(s))
            fx_fail("allocator_create: injected failure returned %s", st_name(s));
        if (r->a) fx_fail("failed allocator_create left *out set");
        leak_check(r->be, "after a failed allocator_create");
        fx->injected++;
        fx->surfaced++;
        fault_disarm(r->be);
        s = vms_allocator_create(&r->cfg, r->be, 0, &r->a);
        if (s != VMS_OK) {
            fx_fail("allocator_create retry returned %s", st_name(s));
            vms_backend_destroy(r->be);
            live_span_destroy(&r->spans);
            return false;
        }
    } else if (fault_injected(r->be)) {
        fx->injected++;
        fx->absorbed++;
        fault_disarm(r->be);
    }
    for (size_t i = 0; i < upto; i++)
        step(r, &w->ops[i], i);
    fault_disarm(r->be);
    return true;
}

static void run_end(run *r, const char *when) {
    fx->runs++;
    if (r->broken) return; /* abandoned: tearing down a corrupt allocator proves nothing */
    vms_allocator_destroy(r->a);
    r->a = NULL;
    leak_check(r->be, when);
    vms_backend_destroy(r->be);
    live_span_destroy(&r->spans);
}

/* The whole workload with the armed fault; teardown and destroy without one. */
static void run_full(run *r, const work *w) {
    if (!run_start(r, w, w->nops)) return;
    if (!r->broken) {
        verify(r, "end", w->nops);
        vms_stats st;
        vms_stats_get(r->a, &st);
        if (st.allocated_bytes_current) fx_fail("allocated bytes left after freeing everything");
    }
    run_end(r, "at destroy");
}

/* ---------------------------------------------------------------- sweeps */

typedef struct sweep_arg {
    bool host;
    const work *w;
    unsigned mask;
    vms_status inject;
    bool outage;
    bool pair; /* two consecutive calls fail */
} sweep_arg;

static void sweep_one(void *arg, uint64_t k) {
    const sweep_arg *sa = arg;
    run r;
    run_init(&r, sa->host);
    r.mask = sa->mask;
    r.k = k;
    r.count = sa->outage ? UINT64_MAX : sa->pair ? 2 : 1;
    r.inject = sa->inject;
    run_full(&r, sa->w);
}

/* Calls of the kinds in mask that the whole workload makes with no fault; and checks that the
 * baseline exercises what the sweeps are meant to. */
static uint64_t baseline(bool host, const work *w, unsigned mask) {
    fx_shared sh;
    memset(&sh, 0, sizeof sh);
    fx = &sh;
    run r;
    run_init(&r, host);
    uint64_t n = 0;
    if (run_start(&r, w, w->nops)) {
        vms_stats st;
        vms_stats_get(r.a, &st);
        /* the sweep is only as good as what the workload reaches */
        CHECK(st.grows > 0);
        CHECK(st.stitches >= 3);
        CHECK(st.stitch_reuses > 0);
        CHECK(st.gc_ranges_freed > 0);
        CHECK(st.ooms > 0);
        CHECK(st.backend_release > 0);
        CHECK(fault_calls(r.be, FAULT_BIT(FAULT_EVENT_QUERY)) > 0);
        CHECK(fault_calls(r.be, FAULT_BIT(FAULT_EVENT_SYNC) | FAULT_BIT(FAULT_DEVICE_SYNC)) > 0);
        n = fault_calls(r.be, mask);
        vms_allocator_destroy(r.a);
        r.a = NULL;
        leak_check(r.be, "baseline");
        vms_backend_destroy(r.be);
        live_span_destroy(&r.spans);
    }
    CHECK_EQ(sh.failures, 0);
    fx = NULL;
    return n;
}

static void sweep_every_call(bool host) {
    static work w;
    work_build(&w);
    uint64_t n = baseline(host, &w, FAULT_ALL);
    REQUIRE(n > 0);
    n = (uint64_t)test_param("VMS_FAULT_MAX_K", (long)n) < n
            ? (uint64_t)test_param("VMS_FAULT_MAX_K", (long)n)
            : n;
    fx_shared total;
    memset(&total, 0, sizeof total);
    sweep_arg sa = {host, &w, FAULT_ALL, VMS_EBACKEND, false, false};
    sweep(host ? "every call, host" : "every call, sim", 1, n, sweep_one, &sa, &total);
    CHECK(total.injected >=
          total.runs); /* every k is reached: the calls before it are the baseline's */
    fx_report("one-shot fault at every call", &total);
}

TEST(faults_every_call_host) {
    sweep_every_call(true);
}
TEST(faults_every_call_sim) {
    sweep_every_call(false);
}

/* Two calls in a row fail (any kinds): the failure of a call and of the call that undoes it,
 * e.g. a map that fails and the release that rolls its chunk back. */
static void sweep_pairs(bool host) {
    static work w;
    work_build(&w);
    uint64_t n = baseline(host, &w, FAULT_ALL);
    REQUIRE(n > 0);
    fx_shared total;
    memset(&total, 0, sizeof total);
    sweep_arg sa = {host, &w, FAULT_ALL, VMS_EBACKEND, false, true};
    sweep(host ? "two in a row, host" : "two in a row, sim", 1, n, sweep_one, &sa, &total);
    fx_report("two consecutive faults at every call", &total);
}

TEST(faults_two_in_a_row_host) {
    sweep_pairs(true);
}
TEST(faults_two_in_a_row_sim) {
    sweep_pairs(false);
}

/* For each kind: every call of that kind made to fail, and all later ones of that kind until
 * the public call it hit returns (an outage). Covers the retries inside one public call. */
static void sweep_outages(bool host) {
    static work w;
    work_build(&w);
    static const fault_kind kinds[] = {FAULT_CREATE,     FAULT_RELEASE,      FAULT_RESERVE,
                                       FAULT_VA_FREE,    FAULT_MAP,          FAULT_UNMAP,
                                       FAULT_SET_ACCESS, FAULT_EVENT_RECORD, FAULT_EVENT_QUERY,
                                       FAULT_EVENT_SYNC, FAULT_DEVICE_SYNC,  FAULT_STREAM_CHECK};
    fx_shared total;
    memset(&total, 0, sizeof total);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        uint64_t n = baseline(host, &w, FAULT_BIT(kinds[i]));
        if (n == 0) continue;
        char what[64];
        snprintf(what, sizeof what, "%s outage, %s", fault_kind_name(kinds[i]),
                 host ? "host" : "sim");
        sweep_arg sa = {host, &w, FAULT_BIT(kinds[i]), VMS_EBACKEND, true, false};
        sweep(what, 1, n, sweep_one, &sa, &total);
    }
    fx_report("outage of each kind at every call", &total);
}

TEST(faults_outage_each_kind_host) {
    sweep_outages(true);
}
TEST(faults_outage_each_kind_sim) {
    sweep_outages(false);
}

/* The device is full at the k-th chunk creation (VMS_ENOMEM from the driver, not our limit):
 * once, and as an outage through the public call. */
TEST(faults_create_out_of_device_memory_host) {
    static work w;
    work_build(&w);
    uint64_t n = baseline(true, &w, FAULT_BIT(FAULT_CREATE));
    REQUIRE(n > 0);
    fx_shared total;
    memset(&total, 0, sizeof total);
    sweep_arg once = {true, &w, FAULT_BIT(FAULT_CREATE), VMS_ENOMEM, false, false};
    sweep("create ENOMEM once", 1, n, sweep_one, &once, &total);
    sweep_arg outage = {true, &w, FAULT_BIT(FAULT_CREATE), VMS_ENOMEM, true, false};
    sweep("create ENOMEM outage", 1, n, sweep_one, &outage, &total);
    fx_report("device out of memory at every create", &total);
}

/* A transient failure inside vms_allocator_destroy, with live blocks and cached stitched
 * ranges still there: destroy cannot return a status, so it must not leak either. */
static void destroy_one(void *arg, uint64_t k) {
    const sweep_arg *sa = arg;
    run r;
    run_init(&r, sa->host);
    if (!run_start(&r, sa->w, sa->w->nops_before_teardown)) return;
    if (r.broken) {
        fx->runs++;
        return;
    }
    fault_arm(r.be, FAULT_ALL, k, 1, VMS_EBACKEND);
    uint64_t inj0 = fault_injected(r.be);
    vms_allocator_destroy(r.a);
    fx->ops++;
    uint64_t inj = fault_injected(r.be) - inj0;
    fx->injected += inj;
    fx->absorbed += inj;
    r.a = NULL;
    char when[96];
    snprintf(when, sizeof when, "after a %s failure in destroy",
             fault_kind_name(fault_last_kind(r.be)));
    leak_check(r.be, when);
    vms_backend_destroy(r.be);
    live_span_destroy(&r.spans);
    fx->runs++;
}

static void sweep_destroy(bool host) {
    static work w;
    work_build(&w);
    /* calls inside destroy, when it meets live blocks and cached ranges */
    fx_shared sh;
    memset(&sh, 0, sizeof sh);
    fx = &sh;
    run r;
    run_init(&r, host);
    REQUIRE(run_start(&r, &w, w.nops_before_teardown));
    uint64_t before = fault_calls(r.be, FAULT_ALL);
    vms_allocator_destroy(r.a);
    uint64_t n = fault_calls(r.be, FAULT_ALL) - before;
    leak_check(r.be, "destroy baseline");
    vms_backend_destroy(r.be);
    live_span_destroy(&r.spans);
    fx = NULL;
    CHECK_EQ(sh.failures, 0);
    REQUIRE(n > 0);
    fx_shared total;
    memset(&total, 0, sizeof total);
    sweep_arg sa = {host, &w, FAULT_ALL, VMS_EBACKEND, false, false};
    sweep(host ? "destroy, host" : "destroy, sim", 1, n, destroy_one, &sa, &total);
    fx_report("one-shot fault at every call of destroy", &total);
}

TEST(faults_during_destroy_host) {
    sweep_destroy(true);
}
TEST(faults_during_destroy_sim) {
    sweep_destroy(false);
}

/* ---------------------------------------------------------------- held streams */

/* empty_cache waits for the streams so that it never unmaps memory a queued kernel may still
 * use (allocator.c). When that wait cannot complete (a held stream: its event never
 * completes, and event_sync says so), memory last used on that stream must stay. */
static void held_stream_case(bool host) {
    size_t g = host ? 64 * KIB : 2 * MIB;
    vms_backend *be = plain_backend(host, g, host ? 64 * MIB : 0);
    REQUIRE(be);
    vms_config cfg = work_config(g);
    vms_allocator *a = NULL;
    REQUIRE(vms_allocator_create(&cfg, be, 0, &a) == VMS_OK);
    void *p = NULL, *q = NULL;
    REQUIRE(vms_malloc(a, 2 * g, S(1), &p) == VMS_OK);
    REQUIRE(vms_malloc(a, 2 * g, S(2), &q) == VMS_OK);
    /* stream 1's kernels are still queued when both blocks are freed */
    REQUIRE(vms_backend_stream_hold(be, S(1), 1) == VMS_OK);
    CHECK_EQ(vms_free(a, p), VMS_OK);
    CHECK_EQ(vms_free(a, q), VMS_OK);
    vms_empty_cache(a);
    CHECK_EQ(vms_check(a), 0);
    vms_stats st;
    vms_stats_get(a, &st);
    /* q's chunks may go (stream 2 has finished), p's must not */
    CHECK(st.reserved_bytes_current >= 2 * g);
    REQUIRE(vms_backend_stream_hold(be, S(1), 0) == VMS_OK);
    vms_empty_cache(a);
    vms_stats_get(a, &st);
    CHECK_EQ(st.reserved_bytes_current, 0);
    CHECK_EQ(vms_check(a), 0);
    vms_allocator_destroy(a);
    CHECK(fault_ledger_empty(be));
    vms_backend_destroy(be);
}

TEST(faults_empty_cache_keeps_memory_of_a_held_stream_host) {
    held_stream_case(true);
}
TEST(faults_empty_cache_keeps_memory_of_a_held_stream_sim) {
    held_stream_case(false);
}

/* ---------------------------------------------------------------- out of memory */

/* With a memory limit: a workload that exceeds it gets VMS_ENOMEM with a report that names
 * the limit; after freeing, the same request succeeds; reserved never passes the limit; the
 * whole limit is usable by one request. */
static void oom_limit_case(bool host) {
    size_t g = host ? 64 * KIB : 2 * MIB;
    size_t limit = 40 * g;
    vms_backend *be = plain_backend(host, g, 0);
    REQUIRE(be);
    vms_config cfg = work_config(g);
    cfg.memory_limit_bytes = (int64_t)limit;
    vms_allocator *a = NULL;
    REQUIRE(vms_allocator_create(&cfg, be, 0, &a) == VMS_OK);
    enum { N = 64 };
    slot s[N];
    memset(s, 0, sizeof s);
    uint64_t rng = 7, id = 1;
    long ooms = 0, ops = test_param("VMS_STRESS_OPS", 20000) / 4;
    for (long n = 0; n < ops; n++) {
        int i = (int)(test_rand(&rng) % N);
        if (s[i].p) {
            if (host) CHECK_EQ(live_pat_bad(s[i].p, s[i].n, s[i].id), 0);
            CHECK_EQ(vms_free(a, s[i].p), VMS_OK);
            s[i].p = NULL;
        } else {
            size_t sz = 1 + (size_t)(test_rand(&rng) % (6 * g));
            void *p = NULL;
            vms_status st = vms_malloc(a, sz, S(test_rand(&rng) % 2), &p);
            if (st == VMS_ENOMEM) {
                ooms++;
                CHECK(p == NULL);
                CHECK(strstr(vms_oom_report(), "limit") != NULL);
                CHECK(strstr(vms_oom_report(), "could not allocate") != NULL);
                /* free everything, and the same request fits */
                for (int j = 0; j < N; j++)
                    if (s[j].p) {
                        if (host) CHECK_EQ(live_pat_bad(s[j].p, s[j].n, s[j].id), 0);
                        CHECK_EQ(vms_free(a, s[j].p), VMS_OK);
                        s[j].p = NULL;
                    }
                st = vms_malloc(a, sz, S(0), &p);
                CHECK_EQ(st, VMS_OK);
            } else {
                CHECK_EQ(st, VMS_OK);
            }
            if (st == VMS_OK) {
                s[i] = (slot){p, sz, id++};
                if (host) live_pat_fill(p, sz, s[i].id);
            }
        }
        vms_stats st;
        vms_stats_get(a, &st);
        if (st.reserved_bytes_current > limit) {
            CHECK(st.reserved_bytes_current <= limit);
            break;
        }
        if (n % 256 == 0) CHECK_EQ(vms_check(a), 0);
    }
    CHECK(ooms > 0);
    for (int j = 0; j < N; j++)
        if (s[j].p) CHECK_EQ(vms_free(a, s[j].p), VMS_OK);
    vms_stats st;
    vms_stats_get(a, &st);
    CHECK(st.reserved_bytes_peak <= limit);
    CHECK(st.ooms >= (uint64_t)ooms);
    /* the whole limit in one request, then one byte more than the limit */
    void *p = NULL;
    CHECK_EQ(vms_malloc(a, limit, NULL, &p), VMS_OK);
    void *q = NULL;
    CHECK_EQ(vms_malloc(a, 1, NULL, &q), VMS_ENOMEM);
    CHECK_EQ(vms_free(a, p), VMS_OK);
    CHECK_EQ(vms_malloc(a, limit + 1, NULL, &q), VMS_ENOMEM);
    CHECK(q == NULL);
    vms_stats_get(a, &st);
    CHECK(st.reserved_bytes_peak <= limit);
    CHECK_EQ(vms_check(a), 0);
    vms_allocator_destroy(a);
    CHECK(fault_ledger_empty(be));
    vms_backend_destroy(be);
    printf("     %ld ops under a %zu-granule limit, %ld out-of-memory answers\n", ops, limit / g,
           ooms);
}

TEST(faults_oom_memory_limit_host) {
    oom_limit_case(true);
}
TEST(faults_oom_memory_limit_sim) {
    oom_limit_case(false);
}

/* The device itself is full (backend capacity, no limit): VMS_ENOMEM, a report, and recovery. */
static void oom_device_case(bool host) {
    size_t g = host ? 64 * KIB : 2 * MIB;
    vms_backend *be = plain_backend(host, g, 32 * g);
    REQUIRE(be);
    vms_config cfg = work_config(g);
    vms_allocator *a = NULL;
    REQUIRE(vms_allocator_create(&cfg, be, 0, &a) == VMS_OK);
    void *p[64] = {0};
    int n = 0;
    vms_status st = VMS_OK;
    while (n < 64 && (st = vms_malloc(a, 3 * g, NULL, &p[n])) == VMS_OK)
        n++;
    CHECK_EQ(st, VMS_ENOMEM);
    CHECK(n >= 8 && n <= 11);
    CHECK(strlen(vms_oom_report()) > 0);
    CHECK_EQ(vms_check(a), 0);
    /* free every other one: 3-granule holes, and a 6-granule request still fits by stitching */
    for (int i = 0; i < n; i += 2)
        CHECK_EQ(vms_free(a, p[i]), VMS_OK);
    void *big = NULL;
    CHECK_EQ(vms_malloc(a, 6 * g, NULL, &big), VMS_OK);
    CHECK_EQ(vms_check(a), 0);
    CHECK_EQ(vms_free(a, big), VMS_OK);
    for (int i = 1; i < n; i += 2)
        CHECK_EQ(vms_free(a, p[i]), VMS_OK);
    CHECK_EQ(vms_malloc(a, 32 * g, NULL, &big), VMS_OK);
    CHECK_EQ(vms_free(a, big), VMS_OK);
    CHECK_EQ(vms_check(a), 0);
    vms_allocator_destroy(a);
    CHECK(fault_ledger_empty(be));
    vms_backend_destroy(be);
}

TEST(faults_oom_device_full_host) {
    oom_device_case(true);
}
TEST(faults_oom_device_full_sim) {
    oom_device_case(false);
}

/* ---------------------------------------------------------------- the planted bug */

/* test_plant_overlap hands out the tail of a live block a second time. Three witnesses see
 * it: vms_check, the span set (at the malloc that hands it out), and the patterns. */
TEST(faults_planted_overlap_is_caught) {
    size_t g = 64 * KIB;
    vms_backend *be = plain_backend(true, g, 64 * MIB);
    REQUIRE(be);
    vms_config cfg = work_config(g);
    vms_allocator *a = NULL;
    REQUIRE(vms_allocator_create(&cfg, be, 0, &a) == VMS_OK);
    live_spans spans;
    live_span_init(&spans);
    void *p1 = NULL, *p2 = NULL;
    REQUIRE(vms_malloc(a, 4 * g, NULL, &p1) == VMS_OK);
    REQUIRE(vms_malloc(a, g, NULL, &p2) == VMS_OK);
    CHECK_EQ(live_span_add(&spans, p1, 4 * g), 0);
    CHECK_EQ(live_span_add(&spans, p2, g), 0);
    live_pat_fill(p1, 4 * g, 1);
    live_pat_fill(p2, g, 2);
    CHECK_EQ(vms_check(a), 0);

    void *q = NULL;
    REQUIRE(test_plant_overlap(a, g, &q) == VMS_OK);
    REQUIRE(q != NULL);
    /* witness 1: the invariant checker */
    size_t violations = vms_check(a);
    CHECK(violations > 0);
    /* witness 2: the span set refuses the overlapping block */
    int overlap = live_span_add(&spans, q, g);
    CHECK_EQ(overlap, -1);
    /* witness 3: the user writes its block; the other block's pattern breaks */
    live_pat_fill(q, g, 3);
    size_t bad = live_pat_bad(p1, 4 * g, 1) + live_pat_bad(p2, g, 2);
    CHECK(bad > 0);
    printf("     planted overlap: vms_check %zu violations, span set %s, %zu corrupted words\n",
           violations, overlap == -1 ? "refused it" : "missed it", bad);

    /* remove the planted block by hand so that the allocator can be torn down cleanly */
    pthread_mutex_lock(&a->lock);
    block *fake = ptr_map_del(&a->live, (uintptr_t)q);
    pthread_mutex_unlock(&a->lock);
    free(fake);
    CHECK_EQ(vms_check(a), 0);
    CHECK_EQ(vms_free(a, p1), VMS_OK);
    CHECK_EQ(vms_free(a, p2), VMS_OK);
    CHECK_EQ(vms_check(a), 0);
    live_span_destroy(&spans);
    vms_allocator_destroy(a);
    CHECK(fault_ledger_empty(be));
    vms_backend_destroy(be);
}

/* ---------------------------------------------------------------- targeted regressions */

/* Each case below is one failure the sweeps found, reduced to a few calls so that its name
 * says what is wrong. They run in a child process (the sweep helper with one k), because some
 * of them crash today. */

typedef struct small_world {
    vms_backend *be;
    vms_allocator *a;
    size_t g;
    void *blk[8];
} small_world;

/* Eight one-granule blocks, the even ones freed: four free chunks between live blocks. */
static bool small_world_open(small_world *sw, bool host) {
    memset(sw, 0, sizeof *sw);
    sw->g = host ? 64 * KIB : 2 * MIB;
    sw->be = plain_backend(host, sw->g, 64 * sw->g);
    if (!sw->be) return false;
    vms_config cfg = work_config(sw->g);
    cfg.large_chunk_max_bytes = (int64_t)sw->g;
    cfg.gc_threshold_count = 16;
    if (vms_allocator_create(&cfg, sw->be, 0, &sw->a) != VMS_OK) return false;
    for (int i = 0; i < 8; i++)
        if (vms_malloc(sw->a, sw->g, S(0), &sw->blk[i]) != VMS_OK) return false;
    for (int i = 0; i < 8; i += 2) {
        vms_free(sw->a, sw->blk[i]);
        sw->blk[i] = NULL;
    }
    return vms_check(sw->a) == 0;
}

/* A stitched range of three chunks, freed: an idle cache entry. */
static bool small_world_idle_range(small_world *sw) {
    void *q = NULL;
    vms_stats st0, st1;
    vms_stats_get(sw->a, &st0);
    if (vms_malloc(sw->a, 3 * sw->g, S(0), &q) != VMS_OK) return false;
    vms_stats_get(sw->a, &st1);
    if (st1.stitches != st0.stitches + 1) return false;
    vms_free(sw->a, q);
    vms_stats_get(sw->a, &st1);
    return st1.stitched_ranges_current == 1;
}

/* Frees what is left and destroys; the ledger must be empty. */
static void small_world_close(small_world *sw, const char *when) {
    for (int i = 0; i < 8; i++)
        if (sw->blk[i]) vms_free(sw->a, sw->blk[i]);
    vms_empty_cache(sw->a);
    vms_stats st;
    vms_stats_get(sw->a, &st);
    if (st.reserved_bytes_current || st.stitched_ranges_current)
        fx_fail("%s: empty_cache left %llu bytes reserved and %llu stitched ranges", when,
                (unsigned long long)st.reserved_bytes_current,
                (unsigned long long)st.stitched_ranges_current);
    vms_allocator_destroy(sw->a);
    leak_check(sw->be, when);
    vms_backend_destroy(sw->be);
}

/* GC unmaps an idle stitched range chunk by chunk; the second unmap fails. The range is left
 * half unmapped: vms_check must stay clean, a later empty_cache must finish the job, and
 * destroy must not touch the unmapped slots. */
static void gc_unmap_midway(void *arg, uint64_t k) {
    (void)k;
    small_world sw;
    if (!small_world_open(&sw, *(bool *)arg) || !small_world_idle_range(&sw)) {
        fx_fail("setup failed");
        return;
    }
    fault_arm(sw.be, FAULT_BIT(FAULT_UNMAP), 2, 1, VMS_EBACKEND);
    vms_empty_cache(sw.a);
    fault_disarm(sw.be);
    if (fault_injected(sw.be) != 1) fx_fail("the fault did not fire");
    size_t v = vms_check(sw.a);
    if (v)
        fx_fail("after an unmap failure in the middle of GC: vms_check reports %zu violations", v);
    small_world_close(&sw, "after an unmap failure in the middle of GC");
}

TEST(faults_gc_unmap_failure_midway_host) {
    bool host = true;
    sweep("gc unmap failure midway, host", 1, 1, gc_unmap_midway, &host, NULL);
}
TEST(faults_gc_unmap_failure_midway_sim) {
    bool host = false;
    sweep("gc unmap failure midway, sim", 1, 1, gc_unmap_midway, &host, NULL);
}

/* GC has unmapped every chunk of an idle range, and freeing its addresses fails: the
 * reservation must not be forgotten (a later empty_cache or destroy frees it). */
static void gc_va_free_fails(void *arg, uint64_t k) {
    (void)k;
    small_world sw;
    if (!small_world_open(&sw, *(bool *)arg) || !small_world_idle_range(&sw)) {
        fx_fail("setup failed");
        return;
    }
    fault_arm(sw.be, FAULT_BIT(FAULT_VA_FREE), 1, 1, VMS_EBACKEND);
    vms_empty_cache(sw.a);
    fault_disarm(sw.be);
    if (fault_injected(sw.be) != 1) fx_fail("the fault did not fire");
    size_t v = vms_check(sw.a);
    if (v) fx_fail("after a va_free failure in GC: vms_check reports %zu violations", v);
    small_world_close(&sw, "after a va_free failure in GC");
}

TEST(faults_gc_va_free_failure_keeps_the_reservation_host) {
    bool host = true;
    sweep("gc va_free failure, host", 1, 1, gc_va_free_fails, &host, NULL);
}
TEST(faults_gc_va_free_failure_keeps_the_reservation_sim) {
    bool host = false;
    sweep("gc va_free failure, sim", 1, 1, gc_va_free_fails, &host, NULL);
}

/* A request that the free chunks cover only in part: stitching creates the shortfall, then
 * reserving the stitched range fails. The malloc fails with the status, and the statistics
 * must still agree with the chunks (cached = reserved - allocated). */
static void stitch_reserve_fails(void *arg, uint64_t k) {
    (void)k;
    small_world sw;
    if (!small_world_open(&sw, *(bool *)arg)) {
        fx_fail("setup failed");
        return;
    }
    vms_stats st0;
    vms_stats_get(sw.a, &st0);
    fault_arm(sw.be, FAULT_BIT(FAULT_RESERVE), 1, 1, VMS_EBACKEND);
    void *q = NULL;
    vms_status s = vms_malloc(sw.a, 6 * sw.g, S(0), &q);
    fault_disarm(sw.be);
    if (fault_injected(sw.be) != 1) fx_fail("the fault did not fire");
    if (s != VMS_EBACKEND) fx_fail("malloc returned %s, want EBACKEND", st_name(s));
    vms_stats st;
    vms_stats_get(sw.a, &st);
    if (st.cached_bytes_current != st.reserved_bytes_current - st.allocated_bytes_current)
        fx_fail("after a failed malloc: cached %llu != reserved %llu - allocated %llu",
                (unsigned long long)st.cached_bytes_current,
                (unsigned long long)st.reserved_bytes_current,
                (unsigned long long)st.allocated_bytes_current);
    size_t v = vms_check(sw.a);
    if (v) fx_fail("after a failed stitch: vms_check reports %zu violations", v);
    if (vms_malloc(sw.a, 6 * sw.g, S(0), &q) != VMS_OK)
        fx_fail("the retry failed");
    else
        vms_free(sw.a, q);
    small_world_close(&sw, "after a failed stitch");
}

TEST(faults_failed_stitch_keeps_stats_consistent_host) {
    bool host = true;
    sweep("failed stitch, host", 1, 1, stitch_reserve_fails, &host, NULL);
}
TEST(faults_failed_stitch_keeps_stats_consistent_sim) {
    bool host = false;
    sweep("failed stitch, sim", 1, 1, stitch_reserve_fails, &host, NULL);
}

/* The first call of `kind` inside vms_allocator_destroy fails once (with an idle stitched
 * range in the small world if idle_range): the fault must fire, and nothing may leak. */
static void destroy_with_one_failure(bool host, bool idle_range, fault_kind kind,
                                     const char *when) {
    small_world sw;
    if (!small_world_open(&sw, host) || (idle_range && !small_world_idle_range(&sw))) {
        fx_fail("setup failed");
        return;
    }
    fault_arm(sw.be, FAULT_BIT(kind), 1, 1, VMS_EBACKEND);
    vms_allocator_destroy(sw.a);
    fault_disarm(sw.be);
    if (fault_injected(sw.be) != 1) fx_fail("%s: the fault did not fire", when);
    leak_check(sw.be, when);
    vms_backend_destroy(sw.be);
}

/* destroy meets an idle stitched range and freeing its addresses fails once: no crash (the
 * range must not be used after it was deleted), and nothing leaks. */
static void destroy_va_free_fails(void *arg, uint64_t k) {
    (void)k;
    destroy_with_one_failure(*(bool *)arg, true, FAULT_VA_FREE,
                             "after a va_free failure in destroy");
}

TEST(faults_destroy_va_free_failure_host) {
    bool host = true;
    sweep("destroy va_free failure, host", 1, 1, destroy_va_free_fails, &host, NULL);
}
TEST(faults_destroy_va_free_failure_sim) {
    bool host = false;
    sweep("destroy va_free failure, sim", 1, 1, destroy_va_free_fails, &host, NULL);
}

/* destroy unmaps each chunk at home, then releases it, then frees the arenas; the first unmap
 * fails once. One transient failure must not leak the chunk, its mapping and the arena. */
static void destroy_unmap_fails(void *arg, uint64_t k) {
    (void)k;
    destroy_with_one_failure(*(bool *)arg, false, FAULT_UNMAP, "after an unmap failure in destroy");
}

TEST(faults_destroy_unmap_failure_host) {
    bool host = true;
    sweep("destroy unmap failure, host", 1, 1, destroy_unmap_fails, &host, NULL);
}
TEST(faults_destroy_unmap_failure_sim) {
    bool host = false;
    sweep("destroy unmap failure, sim", 1, 1, destroy_unmap_fails, &host, NULL);
}

/* empty_cache releases a free chunk: unmap, then release, which fails; putting the mapping
 * back fails too. The chunk is now unmapped: it must never be handed out again (on a GPU the
 * first kernel to touch it would hit an illegal address; on host the test would fault), and
 * it must still be released in the end. */
static void release_then_remap_fail(void *arg, uint64_t k) {
    (void)k;
    bool host = *(bool *)arg;
    small_world sw;
    if (!small_world_open(&sw, host)) {
        fx_fail("setup failed");
        return;
    }
    fault_arm(sw.be, FAULT_BIT(FAULT_RELEASE) | FAULT_BIT(FAULT_MAP), 1, 2, VMS_EBACKEND);
    vms_empty_cache(sw.a);
    fault_disarm(sw.be);
    if (fault_injected(sw.be) != 2)
        fx_fail("the faults did not fire (%llu)", (unsigned long long)fault_injected(sw.be));
    size_t v = vms_check(sw.a);
    if (v) fx_fail("after release and re-map failed: vms_check reports %zu violations", v);
    /* take every granule the allocator will give without growing, and write all of it */
    void *p[16] = {0};
    vms_stats st;
    vms_stats_get(sw.a, &st);
    vms_set_memory_limit(sw.a, st.reserved_bytes_current);
    for (int i = 0; i < 16; i++) {
        if (vms_malloc(sw.a, sw.g, S(0), &p[i]) != VMS_OK) break;
        if (host) live_pat_fill(p[i], sw.g, (uint64_t)i + 1);
    }
    vms_set_memory_limit(sw.a, 0);
    for (int i = 0; i < 16; i++)
        if (p[i]) vms_free(sw.a, p[i]);
    small_world_close(&sw, "after release and re-map failed");
}

TEST(faults_release_and_remap_failure_host) {
    bool host = true;
    sweep("release and re-map failure, host", 1, 1, release_then_remap_fail, &host, NULL);
}
TEST(faults_release_and_remap_failure_sim) {
    bool host = false;
    sweep("release and re-map failure, sim", 1, 1, release_then_remap_fail, &host, NULL);
}

/* Growth maps two new chunks, set_access fails, and the rollback's first unmap fails too.
 * The request fails with a status; afterwards the same request must succeed (the arena must
 * not keep a mapping it believes is a hole) and destroy must leave nothing behind. */
static void grow_rollback_unmap_fail(void *arg, uint64_t k) {
    (void)k;
    small_world sw;
    if (!small_world_open(&sw, *(bool *)arg)) {
        fx_fail("setup failed");
        return;
    }
    fault_arm(sw.be, FAULT_BIT(FAULT_SET_ACCESS) | FAULT_BIT(FAULT_UNMAP), 1, 2, VMS_EBACKEND);
    void *q = NULL;
    /* more than the free chunks hold, with stitching unable to help: growth */
    vms_status s = vms_malloc(sw.a, 20 * sw.g, S(0), &q);
    fault_disarm(sw.be);
    if (fault_injected(sw.be) != 2)
        fx_fail("the faults did not fire (%llu)", (unsigned long long)fault_injected(sw.be));
    if (s == VMS_OK) vms_free(sw.a, q);
    size_t v = vms_check(sw.a);
    if (v) fx_fail("after set_access and its rollback failed: vms_check reports %zu violations", v);
    s = vms_malloc(sw.a, 20 * sw.g, S(0), &q);
    if (s != VMS_OK)
        fx_fail("the same request once the faults are gone returned %s", st_name(s));
    else
        vms_free(sw.a, q);
    small_world_close(&sw, "after set_access and its rollback failed");
}

TEST(faults_grow_rollback_failure_host) {
    bool host = true;
    sweep("grow rollback failure, host", 1, 1, grow_rollback_unmap_fail, &host, NULL);
}
TEST(faults_grow_rollback_failure_sim) {
    bool host = false;
    sweep("grow rollback failure, sim", 1, 1, grow_rollback_unmap_fail, &host, NULL);
}
