/* An emulated CUDA driver (libcuda.so.1) for machines without a GPU: the driver calls the cuda
 * backend and the GPU tests use, over host memory. Physical handles are memfd files, reserved
 * ranges are PROT_NONE mappings, cuMemMap maps the file there (MAP_FIXED), and cuMemSetAccess
 * makes it readable and writable; so one handle can be seen at two addresses, as on the GPU.
 *
 * It enforces the driver's rules strictly, to catch misuse before it reaches a GPU: a context
 * must be current for memory, event and stream calls; a map places a whole handle at offset 0 on
 * granularity-aligned addresses inside a reservation, over unmapped addresses; an unmap and a
 * set_access cover whole mappings; an address range is freed only when nothing is mapped in it;
 * a released handle lives on while mapped (as the driver does); and during a global-mode stream
 * capture, calls the driver forbids then (cuMemCreate, cuMemMap, cuEventQuery,
 * cuEventSynchronize, synchronous copies, ...) invalidate the capture, so cuStreamEndCapture
 * then fails, as it would on a GPU. Streams are synchronous: events complete at once.
 *
 * Environment: FAKE_CUDA_TOTAL_MB (device memory, default 1024), FAKE_CUDA_NO_DEVICE=1 (cuInit
 * reports no device). Built and used only by tests/gpu/run.sh (LD_LIBRARY_PATH). Locking: one
 * global mutex around all state; the current context is thread-local.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef unsigned long long CUhandle;

enum {
    OK = 0,
    INVALID_VALUE = 1,
    OUT_OF_MEMORY = 2,
    NOT_INITIALIZED = 3,
    NO_DEVICE = 100,
    INVALID_DEVICE = 101,
    INVALID_CONTEXT = 201,
    INVALID_HANDLE = 400,
    NOT_FOUND = 500,
    NOT_SUPPORTED = 801,
    CAPTURE_UNSUPPORTED = 900,
    CAPTURE_INVALIDATED = 901,
    CAPTURE_UNMATCHED = 903,
};

#define GRAN (2ull << 20)

typedef struct loc {
    int type, id;
} loc;
typedef struct prop {
    int type, handle_types;
    loc location;
    void *win32;
    unsigned char flags[8];
} prop;
typedef struct access_desc {
    loc location;
    int flags;
} access_desc;

typedef struct ctx {
    int primary;
} ctx;
typedef struct stream {
    int capturing, invalidated;
} stream;

typedef struct handle_rec {
    int fd;
    size_t size;
    int refs, maps;
} handle_rec;
typedef struct range_rec {
    uintptr_t base;
    size_t size;
} range_rec;
typedef struct map_rec {
    uintptr_t addr;
    size_t size;
    CUhandle h;
    int rw;
} map_rec;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int inited;
static ctx primary_ctx = {1};
static int primary_refs;
static __thread ctx *current;
static size_t total_bytes, used_bytes;
static handle_rec *handles;
static size_t nhandles, caphandles;
static range_rec *ranges;
static size_t nranges, capranges;
static map_rec *maps;
static size_t nmaps, capmaps;
static stream *global_capture; /* the stream in a global-mode capture, if any */

static void *grow(void *p, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return p;
    size_t nc = *cap ? *cap * 2 : 64;
    void *q = realloc(p, nc * elem);
    if (!q) abort(); /* a test tool: running out of host memory here ends the test */
    *cap = nc;
    return q;
}

static CUresult need_ctx(void) {
    if (!inited) return NOT_INITIALIZED;
    if (!current) return INVALID_CONTEXT;
    return OK;
}

/* A call the driver forbids during a global capture: invalidates it. */
static CUresult capture_unsafe(void) {
    if (global_capture) {
        global_capture->invalidated = 1;
        return CAPTURE_UNSUPPORTED;
    }
    return OK;
}

EXPORT CUresult cuDriverGetVersion(int *v) {
    *v = 13000;
    return OK;
}

/* What the real driver says for the codes this emulation returns; other codes get a generic
 * entry, as an unknown code does from the real one. */
static const struct {
    CUresult code;
    const char *name, *text;
} errors[] = {
    {OK, "CUDA_SUCCESS", "no error"},
    {INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CAPTURE_UNSUPPORTED, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
     "operation not permitted when stream is capturing"},
    {CAPTURE_INVALIDATED, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
     "operation failed due to a previous error during capture"},
};

static size_t error_index(CUresult r) {
    size_t n = sizeof errors / sizeof errors[0];
    for (size_t i = 0; i < n; i++)
        if (errors[i].code == r) return i;
    return n;
}

EXPORT CUresult cuGetErrorString(CUresult r, const char **s) {
    size_t i = error_index(r);
    *s = i < sizeof errors / sizeof errors[0] ? errors[i].text : "emulated driver error";
    return OK;
}

EXPORT CUresult cuGetErrorName(CUresult r, const char **s) {
    size_t i = error_index(r);
    *s = i < sizeof errors / sizeof errors[0] ? errors[i].name : "CUDA_ERROR_UNKNOWN";
    return OK;
}

static CUresult fake_init(unsigned flags) {
    (void)flags;
    const char *nd = getenv("FAKE_CUDA_NO_DEVICE");
    if (nd && atoi(nd) == 1) return NO_DEVICE;
    pthread_mutex_lock(&mu);
    if (!inited) {
        const char *t = getenv("FAKE_CUDA_TOTAL_MB");
        total_bytes = (size_t)(t ? atol(t) : 1024) << 20;
        inited = 1;
    }
    pthread_mutex_unlock(&mu);
    return OK;
}

static CUresult fake_device_get_count(int *n) {
    if (!inited) return NOT_INITIALIZED;
    *n = 1;
    return OK;
}

static CUresult fake_device_get(int *dev, int ordinal) {
    if (!inited) return NOT_INITIALIZED;
    if (ordinal != 0) return INVALID_DEVICE;
    *dev = 0;
    return OK;
}

static CUresult fake_device_get_name(char *name, int len, int dev) {
    if (dev != 0) return INVALID_DEVICE;
    snprintf(name, (size_t)len, "vmstitch emulated GPU");
    return OK;
}

static CUresult fake_device_get_attribute(int *v, int attr, int dev) {
    if (dev != 0) return INVALID_DEVICE;
    *v = attr == 102 ? 1 : attr == 75 ? 9 : 0;
    return OK;
}

static CUresult fake_device_total_mem(size_t *b, int dev) {
    if (dev != 0) return INVALID_DEVICE;
    *b = total_bytes;
    return OK;
}

static CUresult fake_primary_retain(ctx **c, int dev) {
    if (!inited) return NOT_INITIALIZED;
    if (dev != 0) return INVALID_DEVICE;
    pthread_mutex_lock(&mu);
    primary_refs++;
    pthread_mutex_unlock(&mu);
    *c = &primary_ctx;
    return OK;
}

static CUresult fake_primary_release(int dev) {
    if (dev != 0) return INVALID_DEVICE;
    pthread_mutex_lock(&mu);
    CUresult r = primary_refs > 0 ? OK : INVALID_CONTEXT;
    if (primary_refs > 0) primary_refs--;
    pthread_mutex_unlock(&mu);
    return r;
}

static CUresult fake_primary_state(int dev, unsigned *flags, int *active) {
    if (dev != 0) return INVALID_DEVICE;
    *flags = 0;
    *active = primary_refs > 0;
    return OK;
}

static CUresult fake_ctx_get_current(ctx **c) {
    if (!inited) return NOT_INITIALIZED;
    *c = current;
    return OK;
}

static CUresult fake_ctx_set_current(ctx *c) {
    if (!inited) return NOT_INITIALIZED;
    current = c;
    return OK;
}

static CUresult fake_ctx_create(ctx **c, unsigned flags, int dev) {
    (void)flags;
    if (!inited) return NOT_INITIALIZED;
    if (dev != 0) return INVALID_DEVICE;
    *c = calloc(1, sizeof **c);
    current = *c;
    return OK;
}

static CUresult fake_ctx_destroy(ctx *c) {
    if (!c || c->primary) return INVALID_CONTEXT;
    if (current == c) current = NULL;
    free(c);
    return OK;
}

static CUresult fake_ctx_synchronize(void) {
    CUresult r = need_ctx();
    if (r) return r;
    pthread_mutex_lock(&mu);
    r = capture_unsafe();
    pthread_mutex_unlock(&mu);
    return r;
}

static CUresult fake_mem_get_info(size_t *f, size_t *t) {
    CUresult r = need_ctx();
    if (r) return r;
    pthread_mutex_lock(&mu);
    *f = total_bytes - used_bytes;
    *t = total_bytes;
    pthread_mutex_unlock(&mu);
    return OK;
}

static CUresult fake_granularity(size_t *g, const prop *p, int option) {
    if (!inited) return NOT_INITIALIZED;
    if (!p || p->type != 1 || p->location.type != 1 || p->location.id != 0 || option < 0 ||
        option > 1)
        return INVALID_VALUE;
    *g = GRAN;
    return OK;
}

static handle_rec *handle_get(CUhandle h) {
    if (h == 0 || h > nhandles || handles[h - 1].refs + handles[h - 1].maps == 0) return NULL;
    return &handles[h - 1];
}

static void handle_maybe_free(handle_rec *hr) {
    if (hr->refs == 0 && hr->maps == 0 && hr->fd >= 0) {
        close(hr->fd);
        hr->fd = -1;
        used_bytes -= hr->size;
    }
}

static CUresult fake_mem_create(CUhandle *out, size_t size, const prop *p, unsigned long long fl) {
    CUresult r = need_ctx();
    if (r) return r;
    if (fl || !p || p->type != 1 || p->location.type != 1 || p->location.id != 0 || size == 0 ||
        size % GRAN)
        return INVALID_VALUE;
    pthread_mutex_lock(&mu);
    if ((r = capture_unsafe()) != OK) goto out;
    if (used_bytes + size > total_bytes) {
        r = OUT_OF_MEMORY;
        goto out;
    }
    int fd = memfd_create("fake-cuda-chunk", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
        if (fd >= 0) close(fd);
        r = OUT_OF_MEMORY;
        goto out;
    }
    handles = grow(handles, &caphandles, nhandles, sizeof *handles);
    handles[nhandles] = (handle_rec){fd, size, 1, 0};
    *out = ++nhandles;
    used_bytes += size;
out:
    pthread_mutex_unlock(&mu);
    return r;
}

static CUresult fake_mem_release(CUhandle h) {
    CUresult r = need_ctx();
    if (r) return r;
    pthread_mutex_lock(&mu);
    handle_rec *hr = handle_get(h);
    if (!hr || hr->refs == 0)
        r = INVALID_VALUE;
    else {
        hr->refs--;
        handle_maybe_free(hr);
    }
    pthread_mutex_unlock(&mu);
    return r;
}

static CUresult fake_address_reserve(CUdeviceptr *out, size_t size, size_t align, CUdeviceptr hint,
                                     unsigned long long fl) {
    (void)hint;
    CUresult r = need_ctx();
    if (r) return r;
    if (fl || size == 0 || size % GRAN || (align && (align & (align - 1)))) return INVALID_VALUE;
    if (align < GRAN) align = GRAN;
    void *p =
        mmap(NULL, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return OUT_OF_MEMORY;
    uintptr_t base = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
    if (base > (uintptr_t)p) munmap(p, base - (uintptr_t)p);
    uintptr_t end = (uintptr_t)p + size + align;
    if (end > base + size) munmap((void *)(base + size), end - (base + size));
    pthread_mutex_lock(&mu);
    ranges = grow(ranges, &capranges, nranges, sizeof *ranges);
    ranges[nranges++] = (range_rec){base, size};
    pthread_mutex_unlock(&mu);
    *out = base;
    return OK;
}

static CUresult fake_address_free(CUdeviceptr addr, size_t size) {
    CUresult r = need_ctx();
    if (r) return r;
    pthread_mutex_lock(&mu);
    size_t i;
    for (i = 0; i < nranges; i++)
        if (ranges[i].base == addr && ranges[i].size == size) break;
    if (i == nranges) r = INVALID_VALUE;
    for (size_t m = 0; r == OK && m < nmaps; m++)
        if (maps[m].addr >= addr && maps[m].addr < addr + size)
            r = INVALID_VALUE; /* still mapped */
    if (r == OK) {
        munmap((void *)(uintptr_t)addr, size);
        ranges[i] = ranges[--nranges];
    }
    pthread_mutex_unlock(&mu);
    return r;
}

static int in_reservation(uintptr_t a, size_t size) {
    for (size_t i = 0; i < nranges; i++)
        if (a >= ranges[i].base && a + size <= ranges[i].base + ranges[i].size) return 1;
    return 0;
}

static CUresult fake_mem_map(CUdeviceptr addr, size_t size, size_t offset, CUhandle h,
                             unsigned long long fl) {
    CUresult r = need_ctx();
    if (r) return r;
    pthread_mutex_lock(&mu);
    handle_rec *hr = handle_get(h);
    if ((r = capture_unsafe()) != OK) goto out;
    if (fl || offset || !hr || hr->refs == 0 || size != hr->size || addr % GRAN ||
        !in_reservation((uintptr_t)addr, size)) {
        r = INVALID_VALUE;
        goto out;
    }
    for (size_t m = 0; m < nmaps; m++)
        if (maps[m].addr < addr + size && addr < maps[m].addr + maps[m].size) {
            r = INVALID_VALUE; /* already mapped */
            goto out;
        }
    if (mmap((void *)(uintptr_t)addr, size, PROT_NONE, MAP_SHARED | MAP_FIXED, hr->fd, 0) ==
        MAP_FAILED) {
        r = OUT_OF_MEMORY;
        goto out;
    }
    maps = grow(maps, &capmaps, nmaps, sizeof *maps);
    maps[nmaps++] = (map_rec){(uintptr_t)addr, size, h, 0};
    hr->maps++;
out:
    pthread_mutex_unlock(&mu);
    return r;
}

/* Indices of the mappings that exactly tile [addr, addr+size), in address order; 0 if none do. */
static size_t tile(uintptr_t addr, size_t size, size_t *idx, size_t cap) {
    size_t n = 0;
    uintptr_t at = addr;
    while (at < addr + size) {
        size_t m;
        for (m = 0; m < nmaps; m++)
            if (maps[m].addr == at) break;
        if (m == nmaps || n == cap || maps[m].addr + maps[m].size > addr + size) return 0;
        idx[n++] = m;
        at += maps[m].size;
    }
    return n;
}

static CUresult fake_mem_unmap(CUdeviceptr addr, size_t size) {
    CUresult r = need_ctx();
    if (r) return r;
    pthread_mutex_lock(&mu);
    size_t idx[4096];
    size_t n = tile((uintptr_t)addr, size, idx, 4096);
    if (n == 0)
        r = INVALID_VALUE;
    else {
        mmap((void *)(uintptr_t)addr, size, PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
        /* remove from the highest index down so the swaps do not move pending ones */
        for (size_t k = 0; k < n; k++)
            for (size_t j = k + 1; j < n; j++)
                if (idx[j] > idx[k]) {
                    size_t t = idx[j];
                    idx[j] = idx[k];
                    idx[k] = t;
                }
        for (size_t k = 0; k < n; k++) {
            handle_rec *hr = &handles[maps[idx[k]].h - 1];
            hr->maps--;
            handle_maybe_free(hr);
            maps[idx[k]] = maps[--nmaps];
        }
    }
    pthread_mutex_unlock(&mu);
    return r;
}

static CUresult fake_set_access(CUdeviceptr addr, size_t size, const access_desc *d, size_t count) {
    CUresult r = need_ctx();
    if (r) return r;
    if (count != 1 || !d || d->location.type != 1 || d->location.id != 0 || d->flags != 3)
        return INVALID_VALUE;
    pthread_mutex_lock(&mu);
    size_t idx[4096];
    size_t n = tile((uintptr_t)addr, size, idx, 4096);
    if (n == 0)
        r = INVALID_VALUE;
    else if (mprotect((void *)(uintptr_t)addr, size, PROT_READ | PROT_WRITE) != 0)
        r = OUT_OF_MEMORY;
    else
        for (size_t k = 0; k < n; k++)
            maps[idx[k]].rw = 1;
    pthread_mutex_unlock(&mu);
    return r;
}

static CUresult fake_retain_handle(CUhandle *h, void *addr) {
    CUresult r = need_ctx();
    if (r) return r;
    pthread_mutex_lock(&mu);
    r = INVALID_VALUE;
    for (size_t m = 0; m < nmaps; m++)
        if ((uintptr_t)addr >= maps[m].addr && (uintptr_t)addr < maps[m].addr + maps[m].size) {
            *h = maps[m].h;
            handles[maps[m].h - 1].refs++;
            r = OK;
            break;
        }
    pthread_mutex_unlock(&mu);
    return r;
}

/* Is [a, a+n) device memory we may touch (mapped, with access)? Host-alloc'd memory passes. */
static int accessible(uintptr_t a, size_t n) {
    uintptr_t at = a;
    while (at < a + n) {
        size_t m;
        for (m = 0; m < nmaps; m++)
            if (at >= maps[m].addr && at < maps[m].addr + maps[m].size) break;
        if (m == nmaps) return in_reservation(a, n) ? 0 : 1; /* not ours: host memory */
        if (!maps[m].rw) return 0;
        at = maps[m].addr + maps[m].size;
    }
    return 1;
}

static CUresult copy_checked(void *dst, const void *src, size_t n, uintptr_t dev) {
    CUresult r = need_ctx();
    if (r) return r;
    pthread_mutex_lock(&mu);
    r = capture_unsafe();
    if (r == OK && !accessible(dev, n)) r = INVALID_VALUE; /* the GPU would fault */
    pthread_mutex_unlock(&mu);
    if (r == OK) memmove(dst, src, n);
    return r;
}

static CUresult fake_htod(CUdeviceptr d, const void *s, size_t n) {
    return copy_checked((void *)(uintptr_t)d, s, n, (uintptr_t)d);
}

static CUresult fake_dtoh(void *d, CUdeviceptr s, size_t n) {
    return copy_checked(d, (const void *)(uintptr_t)s, n, (uintptr_t)s);
}

static CUresult fake_memset_d32(CUdeviceptr d, unsigned v, size_t n) {
    CUresult r = need_ctx();
    if (r) return r;
    pthread_mutex_lock(&mu);
    if (!accessible((uintptr_t)d, n * 4)) r = INVALID_VALUE;
    pthread_mutex_unlock(&mu);
    if (r) return r;
    uint32_t *p = (uint32_t *)(uintptr_t)d;
    for (size_t i = 0; i < n; i++)
        p[i] = v;
    return OK;
}

static CUresult fake_memset_d32_async(CUdeviceptr d, unsigned v, size_t n, void *s) {
    (void)s;
    return fake_memset_d32(d, v, n);
}

static CUresult fake_memset_d8(CUdeviceptr d, unsigned char v, size_t n) {
    CUresult r = need_ctx();
    if (r) return r;
    pthread_mutex_lock(&mu);
    if (!accessible((uintptr_t)d, n)) r = INVALID_VALUE;
    pthread_mutex_unlock(&mu);
    if (r) return r;
    memset((void *)(uintptr_t)d, v, n);
    return OK;
}

static CUresult fake_event_create(void **e, unsigned flags) {
    (void)flags;
    CUresult r = need_ctx();
    if (r) return r;
    *e = malloc(8);
    return OK;
}

static CUresult fake_event_record(void *e, stream *s) {
    (void)s;
    CUresult r = need_ctx();
    if (r) return r;
    return e ? OK : INVALID_HANDLE;
}

static CUresult fake_event_query_or_sync(void *e) {
    CUresult r = need_ctx();
    if (r) return r;
    if (!e) return INVALID_HANDLE;
    pthread_mutex_lock(&mu);
    r = capture_unsafe();
    pthread_mutex_unlock(&mu);
    return r;
}

static CUresult fake_event_destroy(void *e) {
    CUresult r = need_ctx();
    if (r) return r;
    free(e);
    return OK;
}

static CUresult fake_stream_create(stream **s, unsigned flags) {
    (void)flags;
    CUresult r = need_ctx();
    if (r) return r;
    *s = calloc(1, sizeof **s);
    return OK;
}

static CUresult fake_stream_destroy(stream *s) {
    free(s);
    return OK;
}

static CUresult fake_stream_sync(stream *s) {
    (void)s;
    CUresult r = need_ctx();
    if (r) return r;
    pthread_mutex_lock(&mu);
    r = capture_unsafe();
    pthread_mutex_unlock(&mu);
    return r;
}

static CUresult fake_is_capturing(stream *s, int *status) {
    CUresult r = need_ctx();
    if (r) return r;
    *status = s && s->capturing ? (s->invalidated ? 2 : 1) : 0;
    return OK;
}

static CUresult fake_begin_capture(stream *s, int mode) {
    CUresult r = need_ctx();
    if (r) return r;
    if (!s || s->capturing) return INVALID_VALUE;
    pthread_mutex_lock(&mu);
    s->capturing = 1;
    s->invalidated = 0;
    if (mode == 0) global_capture = s;
    pthread_mutex_unlock(&mu);
    return OK;
}

static CUresult fake_end_capture(stream *s, void **graph) {
    CUresult r = need_ctx();
    if (r) return r;
    if (!s || !s->capturing) return CAPTURE_UNMATCHED;
    pthread_mutex_lock(&mu);
    s->capturing = 0;
    if (global_capture == s) global_capture = NULL;
    r = s->invalidated ? CAPTURE_INVALIDATED : OK;
    pthread_mutex_unlock(&mu);
    *graph = r == OK ? malloc(8) : NULL;
    return r;
}

static CUresult fake_graph_destroy(void *g) {
    free(g);
    return OK;
}

static CUresult fake_host_alloc(void **p, size_t n, unsigned flags) {
    (void)flags;
    *p = calloc(1, n);
    return *p ? OK : OUT_OF_MEMORY;
}

static CUresult fake_host_get_device_pointer(CUdeviceptr *d, void *p, unsigned flags) {
    (void)flags;
    *d = (uintptr_t)p;
    return OK;
}

static CUresult fake_free_host(void *p) {
    free(p);
    return OK;
}

static CUresult fake_wait_value(void *s, CUdeviceptr a, unsigned v, unsigned flags) {
    (void)s, (void)a, (void)v, (void)flags;
    return NOT_SUPPORTED;
}

static const struct {
    const char *name;
    void *fn;
} table[] = {
    {"cuGetErrorString", (void *)cuGetErrorString},
    {"cuGetErrorName", (void *)cuGetErrorName},
    {"cuDriverGetVersion", (void *)cuDriverGetVersion},
    {"cuInit", (void *)fake_init},
    {"cuDeviceGetCount", (void *)fake_device_get_count},
    {"cuDeviceGet", (void *)fake_device_get},
    {"cuDeviceGetName", (void *)fake_device_get_name},
    {"cuDeviceGetAttribute", (void *)fake_device_get_attribute},
    {"cuDeviceTotalMem", (void *)fake_device_total_mem},
    {"cuDevicePrimaryCtxRetain", (void *)fake_primary_retain},
    {"cuDevicePrimaryCtxRelease", (void *)fake_primary_release},
    {"cuDevicePrimaryCtxGetState", (void *)fake_primary_state},
    {"cuCtxGetCurrent", (void *)fake_ctx_get_current},
    {"cuCtxSetCurrent", (void *)fake_ctx_set_current},
    {"cuCtxCreate", (void *)fake_ctx_create},
    {"cuCtxDestroy", (void *)fake_ctx_destroy},
    {"cuCtxSynchronize", (void *)fake_ctx_synchronize},
    {"cuMemGetInfo", (void *)fake_mem_get_info},
    {"cuMemGetAllocationGranularity", (void *)fake_granularity},
    {"cuMemCreate", (void *)fake_mem_create},
    {"cuMemRelease", (void *)fake_mem_release},
    {"cuMemAddressReserve", (void *)fake_address_reserve},
    {"cuMemAddressFree", (void *)fake_address_free},
    {"cuMemMap", (void *)fake_mem_map},
    {"cuMemUnmap", (void *)fake_mem_unmap},
    {"cuMemSetAccess", (void *)fake_set_access},
    {"cuMemRetainAllocationHandle", (void *)fake_retain_handle},
    {"cuMemcpyHtoD", (void *)fake_htod},
    {"cuMemcpyDtoH", (void *)fake_dtoh},
    {"cuMemsetD32", (void *)fake_memset_d32},
    {"cuMemsetD8", (void *)fake_memset_d8},
    {"cuMemsetD32Async", (void *)fake_memset_d32_async},
    {"cuEventCreate", (void *)fake_event_create},
    {"cuEventRecord", (void *)fake_event_record},
    {"cuEventQuery", (void *)fake_event_query_or_sync},
    {"cuEventSynchronize", (void *)fake_event_query_or_sync},
    {"cuEventDestroy", (void *)fake_event_destroy},
    {"cuStreamCreate", (void *)fake_stream_create},
    {"cuStreamDestroy", (void *)fake_stream_destroy},
    {"cuStreamSynchronize", (void *)fake_stream_sync},
    {"cuStreamIsCapturing", (void *)fake_is_capturing},
    {"cuStreamBeginCapture", (void *)fake_begin_capture},
    {"cuStreamEndCapture", (void *)fake_end_capture},
    {"cuGraphDestroy", (void *)fake_graph_destroy},
    {"cuMemHostAlloc", (void *)fake_host_alloc},
    {"cuMemHostGetDevicePointer", (void *)fake_host_get_device_pointer},
    {"cuMemFreeHost", (void *)fake_free_host},
    {"cuStreamWaitValue32", (void *)fake_wait_value},
};

EXPORT CUresult cuGetProcAddress_v2(const char *name, void **fn, int version,
                                    unsigned long long flags, int *status) {
    (void)version, (void)flags;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i].name, name) == 0) {
            *fn = table[i].fn;
            if (status) *status = 0;
            return OK;
        }
    *fn = NULL;
    if (status) *status = 1; /* CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND */
    return NOT_FOUND;
}
