/* Concurrency tests: eight threads doing random malloc, free, record_stream, empty_cache,
 * vms_check, stats reads and stream holds at once, on one allocator and on several
 * allocators (several devices: sharing one backend, or each with its own, host and sim mixed).
 * Each thread owns its live blocks and stamps each one (live_check.h) at malloc, verifying the
 * stamps and vms_allocation_size at free, so a block handed to two threads, or one that moved,
 * is seen by the thread that owns it. At the end vms_check is clean everywhere, nothing is
 * allocated, empty_cache gives every chunk back, and the fault wrapper's ledger (used here
 * unarmed, as a leak counter) shows that the backends hold nothing after destroy.
 *
 * Bounded run time: the main thread joins with a deadline (VMS_THREADS_TIMEOUT_S, default 600)
 * and aborts the process with a message if a thread has not finished, which is how a deadlock
 * shows up in CI instead of as a hung job. VMS_STRESS_OPS scales the operation count (total
 * over the eight threads; 200000 by default, less under the sanitizers).
 *
 * Every test name contains "threads": `make test-tsan` runs exactly those under TSan. Failures
 * are counted per thread and reported from the main thread (the harness is not thread-safe).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fault_backend.h"
#include "live_check.h"
#include "test.h"
#include "test_config.h"
#include "vmstitch.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define S(k) ((vms_stream)(uintptr_t)(k))

#define NTHREADS 8
#define NLIVE 64
#define MAX_DEVS 4
#define HELD_STREAM 7 /* thread 0 holds and releases it */

typedef struct dev {
    vms_backend *be; /* a fault wrapper, never armed: its ledger counts what the backend holds */
    vms_allocator *a;
    bool host;
    size_t g;
    bool shared_backend; /* another device uses the same backend */
} dev;

typedef struct entry {
    void *p;
    size_t n;
    uint64_t id;
    int dev;
} entry;

typedef struct job {
    int id;
    dev *devs;
    int ndev;
    long ops;
    bool wrong_allocator_frees; /* devices share an address space: a foreign free must miss */
    /* results */
    long failures;
    char first[200];
    long mallocs, frees, records, empties, checks, foreign;
} job;

static void job_fail(job *j, const char *what, const void *p) {
    if (j->failures++ == 0)
        snprintf(j->first, sizeof j->first, "thread %d: %s (%p)", j->id, what, p);
}

/* Sizes: mostly small, some medium, a few multi-chunk (scaled by the granularity). */
static size_t pick_size(uint64_t r, size_t g) {
    size_t unit = g / 64;
    switch (r % 20) {
    case 0:
        return 1 + (size_t)((r >> 8) % (32 * g)); /* up to 32 granules */
    case 1:
    case 2:
    case 3:
    case 4:
        return 1 + (size_t)((r >> 8) % (4 * g));
    default:
        return 1 + (size_t)((r >> 8) % (4 * unit));
    }
}

static void entry_free(job *j, entry *e) {
    dev *d = &j->devs[e->dev];
    if (d->host && live_stamp_bad(e->p, e->n, e->id)) job_fail(j, "stamps broken at free", e->p);
    size_t n = vms_allocation_size(d->a, e->p);
    if (n != e->n) job_fail(j, "allocation_size differs", e->p);
    vms_status s = vms_free(d->a, e->p);
    if (s != VMS_OK) job_fail(j, "free failed", e->p);
    e->p = NULL;
    j->frees++;
}

static void *worker(void *arg) {
    job *j = arg;
    entry live[NLIVE];
    memset(live, 0, sizeof live);
    uint64_t rng = 0x1234567ull * (uint64_t)(j->id + 1);
    uint64_t next_id = (uint64_t)j->id << 40;
    bool holding = false;
    for (long n = 0; n < j->ops; n++) {
        uint64_t r = test_rand(&rng);
        entry *e = &live[r % NLIVE];
        unsigned what = (unsigned)(r >> 56) % 100;
        if (what < 80) {
            if (e->p) {
                entry_free(j, e);
                continue;
            }
            int di = (int)((r >> 40) % (uint64_t)j->ndev);
            dev *d = &j->devs[di];
            size_t sz = pick_size(test_rand(&rng), d->g);
            int stream = (int)((r >> 32) % 8);
            void *p = NULL;
            vms_status s = vms_malloc(d->a, sz, S(stream), &p);
            if (s != VMS_OK || !p || (uintptr_t)p % 512) {
                job_fail(j, "malloc failed", p);
                continue;
            }
            *e = (entry){p, sz, ++next_id, di};
            if (d->host) live_stamp_fill(p, sz, e->id);
            j->mallocs++;
        } else if (what < 90) {
            if (!e->p) continue;
            if (vms_record_stream(j->devs[e->dev].a, e->p, S((r >> 20) % 8)) != VMS_OK)
                job_fail(j, "record_stream failed", e->p);
            j->records++;
        } else if (what < 93) {
            if (!e->p || !j->wrong_allocator_frees || j->ndev < 2) continue;
            int other = (e->dev + 1 + (int)((r >> 12) % (uint64_t)(j->ndev - 1))) % j->ndev;
            if (vms_free(j->devs[other].a, e->p) != VMS_ENOTFOUND)
                job_fail(j, "free through another allocator did not say ENOTFOUND", e->p);
            j->foreign++;
        } else if (what < 94) {
            if ((r >> 8) % 8 == 0) {
                if (vms_empty_cache(j->devs[(r >> 20) % (uint64_t)j->ndev].a) != VMS_OK)
                    job_fail(j, "empty_cache failed", NULL);
                j->empties++;
            }
        } else if (what < 95) {
            if ((r >> 8) % 4 == 0) {
                dev *d = &j->devs[(r >> 20) % (uint64_t)j->ndev];
                size_t v = vms_check(d->a);
                if (v) job_fail(j, "vms_check reported violations", d->a);
                j->checks++;
            }
        } else if (what < 98) {
            dev *d = &j->devs[(r >> 20) % (uint64_t)j->ndev];
            vms_stats st;
            if (vms_stats_get(d->a, &st) != VMS_OK)
                job_fail(j, "stats_get failed", d->a);
            else if (st.allocated_bytes_current > st.reserved_bytes_current ||
                     st.requested_bytes_current > st.allocated_bytes_current ||
                     st.reserved_bytes_current > st.reserved_bytes_peak)
                job_fail(j, "inconsistent stats snapshot", d->a);
        } else if (j->id == 0) {
            /* kernels queued on stream 7 for a while: its frees stay pending */
            holding = !holding;
            for (int k = 0; k < j->ndev; k++)
                if (!j->devs[k].shared_backend || k == 0)
                    vms_backend_stream_hold(j->devs[k].be, S(HELD_STREAM), holding);
        }
    }
    if (holding)
        for (int k = 0; k < j->ndev; k++)
            vms_backend_stream_hold(j->devs[k].be, S(HELD_STREAM), 0);
    for (int i = 0; i < NLIVE; i++)
        if (live[i].p) entry_free(j, &live[i]);
    return NULL;
}

static vms_config thread_config(size_t g) {
    vms_config c = test_chunk_config(g, 4 * g, g / 16);
    c.reuse_limit = 4;
    c.gc_threshold_bytes = 0;
    c.gc_threshold_count = 8;
    return c;
}

static vms_backend *wrapped(bool host, size_t g) {
    vms_backend *inner = NULL, *be = NULL;
    if ((host ? vms_backend_host_create(g, (size_t)2 << 30, &inner)
              : vms_backend_sim_create(g, 0, &inner)) != VMS_OK)
        return NULL;
    if (fault_backend_create(inner, &be) != VMS_OK) {
        vms_backend_destroy(inner);
        return NULL;
    }
    return be;
}

/* Runs NTHREADS workers over devs with a deadline, then checks and tears everything down. */
static void run_threads(const char *name, dev *devs, int ndev, bool wrong_allocator_frees) {
    long total_ops = test_param("VMS_STRESS_OPS", 200000);
    long timeout_s = test_param("VMS_THREADS_TIMEOUT_S", 600);
    job jobs[NTHREADS];
    pthread_t t[NTHREADS];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < NTHREADS; i++) {
        jobs[i].id = i;
        jobs[i].devs = devs;
        jobs[i].ndev = ndev;
        jobs[i].ops = total_ops / NTHREADS;
        jobs[i].wrong_allocator_frees = wrong_allocator_frees;
        REQUIRE(pthread_create(&t[i], NULL, worker, &jobs[i]) == 0);
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_s;
    for (int i = 0; i < NTHREADS; i++) {
        if (pthread_timedjoin_np(t[i], NULL, &deadline) != 0) {
            fprintf(stderr, "    FAIL %s: thread %d still running after %ld s: deadlock?\n", name,
                    i, timeout_s);
            fflush(stderr);
            abort(); /* a test binary: the only way out of a deadlock */
        }
    }
    long failures = 0, mallocs = 0, frees = 0, records = 0, empties = 0, checks = 0, foreign = 0;
    for (int i = 0; i < NTHREADS; i++) {
        if (jobs[i].failures)
            fprintf(stderr, "    FAIL %s: %s, %ld failures\n", name, jobs[i].first,
                    jobs[i].failures);
        failures += jobs[i].failures;
        mallocs += jobs[i].mallocs;
        frees += jobs[i].frees;
        records += jobs[i].records;
        empties += jobs[i].empties;
        checks += jobs[i].checks;
        foreign += jobs[i].foreign;
    }
    CHECK_EQ(failures, 0);
    CHECK_EQ(mallocs, frees);
    for (int k = 0; k < ndev; k++) {
        CHECK_EQ(vms_check(devs[k].a), 0);
        vms_stats st;
        REQUIRE(vms_stats_get(devs[k].a, &st) == VMS_OK);
        CHECK_EQ(st.allocated_bytes_current, 0);
        CHECK_EQ(vms_empty_cache(devs[k].a), VMS_OK);
        REQUIRE(vms_stats_get(devs[k].a, &st) == VMS_OK);
        CHECK_EQ(st.active_bytes_current, 0);
        CHECK_EQ(st.reserved_bytes_current, 0);
        CHECK_EQ(st.stitched_ranges_current, 0);
        CHECK_EQ(vms_check(devs[k].a), 0);
    }
    for (int k = 0; k < ndev; k++)
        vms_allocator_destroy(devs[k].a);
    for (int k = 0; k < ndev; k++) {
        if (devs[k].shared_backend && k > 0) continue;
        fault_ledger l = fault_ledger_get(devs[k].be);
        CHECK_EQ(l.chunks, 0);
        CHECK_EQ(l.reservations, 0);
        CHECK_EQ(l.mappings, 0);
        CHECK_EQ(l.events, 0);
        vms_backend_destroy(devs[k].be);
    }
    printf("     %d threads, %d allocators: %ld mallocs, %ld frees, %ld record_stream, %ld "
           "empty_cache, %ld vms_check, %ld foreign frees\n",
           NTHREADS, ndev, mallocs, frees, records, empties, checks, foreign);
}

static void one_allocator(bool host) {
    dev d = {0};
    d.host = host;
    d.g = host ? 64 * KIB : 2 * MIB;
    d.be = wrapped(host, d.g);
    REQUIRE(d.be);
    vms_config cfg = thread_config(d.g);
    REQUIRE(vms_allocator_create(&cfg, d.be, 0, &d.a) == VMS_OK);
    run_threads(host ? "threads_one_allocator_host" : "threads_one_allocator_sim", &d, 1, false);
}

TEST(threads_one_allocator_host) {
    one_allocator(true);
}
TEST(threads_one_allocator_sim) {
    one_allocator(false);
}

/* Four devices on one backend: the allocators share the backend's lock and address space, so
 * a pointer freed through the wrong allocator must be refused. */
static void shared_backend(bool host) {
    dev d[MAX_DEVS];
    memset(d, 0, sizeof d);
    size_t g = host ? 64 * KIB : 2 * MIB;
    vms_backend *be = wrapped(host, g);
    REQUIRE(be);
    vms_config cfg = thread_config(g);
    for (int k = 0; k < MAX_DEVS; k++) {
        d[k] = (dev){be, NULL, host, g, true};
        REQUIRE(vms_allocator_create(&cfg, be, k, &d[k].a) == VMS_OK);
    }
    run_threads(host ? "threads_four_allocators_one_backend_host"
                     : "threads_four_allocators_one_backend_sim",
                d, MAX_DEVS, true);
}

TEST(threads_four_allocators_one_backend_host) {
    shared_backend(true);
}
TEST(threads_four_allocators_one_backend_sim) {
    shared_backend(false);
}

/* Four devices, each with its own backend, two host and two sim. */
TEST(threads_four_devices_own_backends) {
    dev d[MAX_DEVS];
    memset(d, 0, sizeof d);
    for (int k = 0; k < MAX_DEVS; k++) {
        bool host = k % 2 == 0;
        size_t g = host ? 64 * KIB : 2 * MIB;
        d[k].host = host;
        d[k].g = g;
        d[k].be = wrapped(host, g);
        REQUIRE(d[k].be);
        vms_config cfg = thread_config(g);
        REQUIRE(vms_allocator_create(&cfg, d[k].be, k, &d[k].a) == VMS_OK);
    }
    run_threads("threads_four_devices_own_backends", d, MAX_DEVS, false);
}
