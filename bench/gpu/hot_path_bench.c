/* Where the time of one vms_malloc + vms_free goes on the GPU machine: the round trip of a
 * cached 1 MiB block on the sim backend (core only) and on the cuda backend (core plus the
 * capture check every allocation makes), the two driver calls of that check timed alone
 * (cuCtxGetCurrent, cuStreamIsCapturing on the NULL stream and on a created stream), and, for
 * each trace named, the trace replayed PASSES times through vms_malloc/vms_free on each backend
 * (ns per event per pass; passes 2+ are the steady state, memory cached). The primary context
 * is made current first, as it is on a PyTorch thread. Prints one JSON object. Where no GPU is
 * usable it prints the sim figures and says why.
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude bench/gpu/hot_path_bench.c build/libvmstitch.a \
 *      -lz -ldl -lpthread -lm -o build/hot_path_bench && build/hot_path_bench [TRACE.gz ...]
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "vmstitch.h"

#define N 200000

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* ns per malloc+free of a cached block, best of 5 runs of N */
static double round_trip_ns(vms_allocator *a, vms_stream s) {
    void *p = NULL;
    if (vms_malloc(a, 1 << 20, s, &p) != VMS_OK) return -1;
    vms_free(a, p);
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_ns();
        for (int i = 0; i < N; i++) {
            if (vms_malloc(a, 1 << 20, s, &p) != VMS_OK) return -1;
            vms_free(a, p);
        }
        double dt = (now_ns() - t0) / N;
        if (dt < best) best = dt;
    }
    return best;
}

/* A trace's events: alloc ids[i] of sizes[i] bytes, or free ids[i] when sizes[i] < 0. */
typedef struct {
    int32_t *ids;
    int64_t *sizes;
    long n, nids;
} events;

static int load_trace(const char *path, events *e) {
    gzFile f = gzopen(path, "rb");
    if (!f) return -1;
    long cap = 1 << 16;
    e->ids = malloc(cap * sizeof *e->ids);
    e->sizes = malloc(cap * sizeof *e->sizes);
    e->n = e->nids = 0;
    char line[256];
    while (e->ids && e->sizes && gzgets(f, line, sizeof line)) {
        long id;
        long long size;
        int stream;
        if (line[0] == 'a' && sscanf(line + 1, "%ld %lld %d", &id, &size, &stream) == 3) {
        } else if (line[0] == 'f' && sscanf(line + 1, "%ld", &id) == 1) {
            size = -1;
        } else {
            continue;
        }
        if (e->n == cap) {
            cap *= 2;
            int32_t *ni = realloc(e->ids, cap * sizeof *ni);
            if (ni) e->ids = ni;
            int64_t *ns = realloc(e->sizes, cap * sizeof *ns);
            if (ns) e->sizes = ns;
            if (!ni || !ns) break;
        }
        e->ids[e->n] = (int32_t)id;
        e->sizes[e->n] = size;
        e->n++;
        if (id + 1 > e->nids) e->nids = id + 1;
    }
    gzclose(f);
    return e->n > 0 ? 0 : -1;
}

/* ns per event of each pass; what is live after a pass is freed untimed. -1 on failure. */
static int replay(vms_allocator *a, const events *e, vms_stream s, int passes, double *ns) {
    void **live = calloc((size_t)e->nids, sizeof *live);
    if (!live) return -1;
    int rc = 0;
    for (int p = 0; p < passes && rc == 0; p++) {
        double t0 = now_ns();
        for (long i = 0; i < e->n; i++) {
            void **slot = &live[e->ids[i]];
            if (e->sizes[i] >= 0) {
                if (vms_malloc(a, (size_t)e->sizes[i], s, slot) != VMS_OK) {
                    rc = -1;
                    break;
                }
            } else if (*slot) {
                vms_free(a, *slot);
                *slot = NULL;
            }
        }
        ns[p] = (now_ns() - t0) / (double)e->n;
        for (long i = 0; i < e->nids; i++)
            if (live[i]) {
                vms_free(a, live[i]);
                live[i] = NULL;
            }
    }
    free(live);
    return rc;
}

#define PASSES 4

static void print_passes(const char *name, const double *ns, int ok, int last) {
    printf("\"%s\":", name);
    if (!ok) {
        printf("null%s", last ? "" : ",");
        return;
    }
    printf("[");
    for (int p = 0; p < PASSES; p++) printf("%.1f%s", ns[p], p + 1 < PASSES ? "," : "");
    printf("]%s", last ? "" : ",");
}

typedef int (*ctx_get_fn)(void **);
typedef int (*ctx_set_fn)(void *);
typedef int (*capturing_fn)(void *, int *);
typedef int (*stream_create_fn)(void **, unsigned);
typedef int (*init_fn)(unsigned);
typedef int (*device_get_fn)(int *, int);
typedef int (*retain_fn)(void **, int);

int main(int argc, char **argv) {
    vms_backend *sb = NULL, *cbk = NULL;
    vms_allocator *sa = NULL, *ca = NULL;
    double sim = -1, cuda_null = -1, cuda_stream = -1, get_ns = -1, cap_null = -1,
           cap_stream = -1;
    const char *why = "";
    if (vms_backend_sim_create(0, (size_t)1 << 36, &sb) == VMS_OK &&
        vms_allocator_create(NULL, sb, 0, &sa) == VMS_OK)
        sim = round_trip_ns(sa, NULL);
    /* As on a PyTorch thread: the device's primary context current before any allocation. */
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    ctx_get_fn get = lib ? (ctx_get_fn)dlsym(lib, "cuCtxGetCurrent") : NULL;
    ctx_set_fn set = lib ? (ctx_set_fn)dlsym(lib, "cuCtxSetCurrent") : NULL;
    capturing_fn cap = lib ? (capturing_fn)dlsym(lib, "cuStreamIsCapturing") : NULL;
    stream_create_fn mk = lib ? (stream_create_fn)dlsym(lib, "cuStreamCreate") : NULL;
    init_fn init = lib ? (init_fn)dlsym(lib, "cuInit") : NULL;
    device_get_fn dev_get = lib ? (device_get_fn)dlsym(lib, "cuDeviceGet") : NULL;
    retain_fn retain = lib ? (retain_fn)dlsym(lib, "cuDevicePrimaryCtxRetain") : NULL;
    void *ctx = NULL, *st = NULL;
    int dev = 0;
    if (!(get && set && cap && mk && init && dev_get && retain)) {
        why = "libcuda.so.1 or one of its symbols is missing";
    } else if (init(0) != 0 || dev_get(&dev, 0) != 0 || retain(&ctx, dev) != 0 ||
               set(ctx) != 0 || mk(&st, 1 /* non-blocking */) != 0) {
        why = "could not make the primary context current or create a stream";
    } else if (vms_backend_cuda_create(0, &cbk) != VMS_OK ||
               vms_allocator_create(NULL, cbk, 0, &ca) != VMS_OK) {
        why = vms_last_error();
    } else {
        cuda_null = round_trip_ns(ca, NULL);
        cuda_stream = round_trip_ns(ca, st);
        void *cur;
        int status;
        double t0 = now_ns();
        for (int i = 0; i < N; i++) get(&cur);
        get_ns = (now_ns() - t0) / N;
        t0 = now_ns();
        for (int i = 0; i < N; i++) cap(NULL, &status);
        cap_null = (now_ns() - t0) / N;
        t0 = now_ns();
        for (int i = 0; i < N; i++) cap(st, &status);
        cap_stream = (now_ns() - t0) / N;
    }
    printf("{\"round_trip_ns\":{\"sim\":%.1f,\"cuda_null_stream\":%.1f,\"cuda_stream\":%.1f},"
           "\"driver_call_ns\":{\"cuCtxGetCurrent\":%.1f,\"cuStreamIsCapturing_null\":%.1f,"
           "\"cuStreamIsCapturing_stream\":%.1f},\"note\":\"%s\",\"replay_ns_per_event\":{",
           sim, cuda_null, cuda_stream, get_ns, cap_null, cap_stream, why);
    for (int t = 1; t < argc; t++) {
        events e = {0};
        const char *base = strrchr(argv[t], '/') ? strrchr(argv[t], '/') + 1 : argv[t];
        printf("\"%s\":{", base);
        if (load_trace(argv[t], &e) != 0) {
            printf("\"error\":\"cannot read\"}%s", t + 1 < argc ? "," : "");
            continue;
        }
        /* A fresh allocator per trace and backend: the first pass is first touch. */
        double ns[PASSES];
        vms_allocator *a = NULL;
        int ok = sb && vms_allocator_create(NULL, sb, 0, &a) == VMS_OK &&
                 replay(a, &e, NULL, PASSES, ns) == 0;
        print_passes("sim", ns, ok, !cbk);
        if (a) vms_allocator_destroy(a);
        if (cbk) {
            a = NULL;
            ok = vms_allocator_create(NULL, cbk, 0, &a) == VMS_OK &&
                 replay(a, &e, NULL, PASSES, ns) == 0;
            print_passes("cuda", ns, ok, 1);
            if (a) vms_allocator_destroy(a);
        }
        printf("}%s", t + 1 < argc ? "," : "");
        free(e.ids);
        free(e.sizes);
    }
    printf("}}\n");
    if (sa) vms_allocator_destroy(sa);
    if (sb) vms_backend_destroy(sb);
    if (ca) vms_allocator_destroy(ca);
    if (cbk) vms_backend_destroy(cbk);
    return 0;
}
