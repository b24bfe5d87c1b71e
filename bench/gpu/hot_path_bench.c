/* Where the time of one vms_malloc + vms_free goes on the GPU machine: the round trip of a
 * cached 1 MiB block on the sim backend (core only) and on the cuda backend (core plus the
 * capture check every allocation makes), and the two driver calls of that check timed alone
 * (cuCtxGetCurrent, cuStreamIsCapturing on the NULL stream and on a created stream). Prints one
 * JSON object. Where no GPU is usable it prints the sim figure and says why.
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude bench/gpu/hot_path_bench.c build/libvmstitch.a \
 *      -ldl -lpthread -lm -o build/hot_path_bench && build/hot_path_bench
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

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

typedef int (*ctx_get_fn)(void **);
typedef int (*capturing_fn)(void *, int *);
typedef int (*stream_create_fn)(void **, unsigned);

int main(void) {
    vms_backend *sb = NULL, *cbk = NULL;
    vms_allocator *sa = NULL, *ca = NULL;
    double sim = -1, cuda_null = -1, cuda_stream = -1, get_ns = -1, cap_null = -1,
           cap_stream = -1;
    const char *why = "";
    if (vms_backend_sim_create(0, (size_t)1 << 34, &sb) == VMS_OK &&
        vms_allocator_create(NULL, sb, 0, &sa) == VMS_OK)
        sim = round_trip_ns(sa, NULL);
    if (vms_backend_cuda_create(0, &cbk) != VMS_OK || vms_allocator_create(NULL, cbk, 0, &ca) != VMS_OK) {
        why = vms_last_error();
    } else {
        cuda_null = round_trip_ns(ca, NULL); /* opens the primary context on this thread */
        void *lib = dlopen("libcuda.so.1", RTLD_NOW);
        ctx_get_fn get = lib ? (ctx_get_fn)dlsym(lib, "cuCtxGetCurrent") : NULL;
        capturing_fn cap = lib ? (capturing_fn)dlsym(lib, "cuStreamIsCapturing") : NULL;
        stream_create_fn mk = lib ? (stream_create_fn)dlsym(lib, "cuStreamCreate") : NULL;
        void *st = NULL;
        if (get && cap && mk && mk(&st, 1 /* non-blocking */) == 0) {
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
        } else {
            why = "driver symbols or cuStreamCreate unavailable";
        }
    }
    printf("{\"round_trip_ns\":{\"sim\":%.1f,\"cuda_null_stream\":%.1f,\"cuda_stream\":%.1f},"
           "\"driver_call_ns\":{\"cuCtxGetCurrent\":%.1f,\"cuStreamIsCapturing_null\":%.1f,"
           "\"cuStreamIsCapturing_stream\":%.1f},\"note\":\"%s\"}\n",
           sim, cuda_null, cuda_stream, get_ns, cap_null, cap_stream, why);
    if (sa) vms_allocator_destroy(sa);
    if (sb) vms_backend_destroy(sb);
    if (ca) vms_allocator_destroy(ca);
    if (cbk) vms_backend_destroy(cbk);
    return 0;
}
