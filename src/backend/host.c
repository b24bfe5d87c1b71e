/* The host backend: real memory with real aliasing, so that stitching runs for real on the CPU.
 *
 * Chunks live in one memfd (a sparse tmpfs file); a chunk is a range of file offsets, and a
 * mapping is mmap(MAP_SHARED | MAP_FIXED) of that range into a PROT_NONE reservation, so a chunk
 * mapped at two addresses shows the same bytes at both, as on the GPU. A fresh mapping stays
 * PROT_NONE until set_access, so touching memory that was mapped but not made accessible
 * faults, as it does on the GPU. Unmapping puts a PROT_NONE anonymous mapping back over the
 * range, so the reservation stays intact until va_free.
 *
 * One file rather than a memfd per chunk: a process often may open only 1024 descriptors, and an
 * allocator holds thousands of chunks. Offsets are handed out by a bump pointer and never
 * reused; a released chunk's pages go back to the kernel by punching a hole, so the file only
 * grows in size, never in memory. Pages are committed when first touched, so capacity_bytes,
 * not the machine, is what makes chunk_create fail with VMS_ENOMEM.
 *
 * Everything else — the driver's rules, bookkeeping, counters, events and streams — is the
 * engine in sim.c, which calls the hooks below only for calls it has accepted.
 *
 * Locking: the hooks run under the engine's per-backend mutex, which also guards host_ctx.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/backend.h"

#include "backend/engine.h"

#define HOST_DEFAULT_GRANULARITY_BYTES ((size_t)2 << 20)
/* The file is extended in steps this large: the size of a sparse file costs nothing, and
 * fewer ftruncate calls keep chunk_create cheap. */
#define HOST_FILE_STEP_BYTES ((uint64_t)1 << 30)

typedef struct host_ctx {
    int fd;
    uint64_t file_bytes;  /* current size of the memfd */
    uint64_t next_offset; /* bump pointer for chunk offsets */
    size_t page_bytes;
} host_ctx;

/* Formats errno into the thread's error message; returns the status to hand back. */
static vms_status host_fail(vms_status st, const char *what, int err) {
    char buf[128];
    const char *msg = strerror_r(err, buf, sizeof buf); /* GNU variant: thread-safe */
    backend_set_error("host: %s: %s", what, msg);
    return st;
}

static vms_status host_chunk_create(void *ctx, size_t bytes, uint64_t *payload) {
    host_ctx *h = ctx;
    uint64_t off = h->next_offset;
    /* Offsets must stay within off_t even after rounding the file size up. */
    if (bytes > (uint64_t)INT64_MAX - HOST_FILE_STEP_BYTES - off)
        return host_fail(VMS_ENOMEM, "chunk_create", EFBIG);
    if (off + bytes > h->file_bytes) {
        uint64_t want =
            (off + bytes + HOST_FILE_STEP_BYTES - 1) / HOST_FILE_STEP_BYTES * HOST_FILE_STEP_BYTES;
        if (ftruncate(h->fd, (off_t)want) != 0) {
            int err = errno;
            return host_fail(err == ENOMEM || err == ENOSPC ? VMS_ENOMEM : VMS_EBACKEND,
                             "chunk_create: ftruncate", err);
        }
        h->file_bytes = want;
    }
    h->next_offset = off + bytes;
    *payload = off;
    return VMS_OK;
}

static vms_status host_chunk_release(void *ctx, uint64_t payload, size_t bytes) {
    host_ctx *h = ctx;
    if (fallocate(h->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)payload,
                  (off_t)bytes) != 0)
        return host_fail(VMS_EBACKEND, "chunk_release: fallocate(PUNCH_HOLE)", errno);
    return VMS_OK;
}

/* mmap only promises page alignment: reserve align_bytes more and trim both ends. */
static vms_status host_va_reserve(void *ctx, size_t bytes, size_t align_bytes, uintptr_t *out) {
    host_ctx *h = ctx;
    if (align_bytes < h->page_bytes) align_bytes = h->page_bytes;
    size_t slack = align_bytes - h->page_bytes;
    if (bytes > SIZE_MAX - slack) return host_fail(VMS_ENOMEM, "va_reserve", ENOMEM);
    size_t total = bytes + slack;
    void *p = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return host_fail(VMS_ENOMEM, "va_reserve: mmap", errno);
    uintptr_t start = (uintptr_t)p;
    uintptr_t addr = (start + align_bytes - 1) & ~(uintptr_t)(align_bytes - 1);
    if (addr > start) munmap(p, addr - start);
    uintptr_t tail = addr + bytes, end = start + total;
    if (end > tail) munmap((void *)tail, end - tail);
    *out = addr;
    return VMS_OK;
}

static vms_status host_va_free(void *ctx, uintptr_t addr, size_t bytes) {
    (void)ctx;
    if (munmap((void *)addr, bytes) != 0) return host_fail(VMS_EBACKEND, "va_free: munmap", errno);
    return VMS_OK;
}

static vms_status host_map(void *ctx, uintptr_t addr, size_t bytes, uint64_t payload) {
    host_ctx *h = ctx;
    /* PROT_NONE until set_access, like a fresh cuMemMap. */
    void *p = mmap((void *)addr, bytes, PROT_NONE, MAP_SHARED | MAP_FIXED, h->fd, (off_t)payload);
    if (p == MAP_FAILED) return host_fail(VMS_EBACKEND, "map: mmap", errno);
    return VMS_OK;
}

static vms_status host_unmap(void *ctx, uintptr_t addr, size_t bytes) {
    (void)ctx;
    /* munmap would leave a hole in the reservation that another mmap could take; replacing the
     * mapping keeps the address range ours. */
    void *p = mmap((void *)addr, bytes, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    if (p == MAP_FAILED) return host_fail(VMS_EBACKEND, "unmap: mmap", errno);
    return VMS_OK;
}

static vms_status host_set_access(void *ctx, uintptr_t addr, size_t bytes) {
    (void)ctx;
    if (mprotect((void *)addr, bytes, PROT_READ | PROT_WRITE) != 0)
        return host_fail(VMS_EBACKEND, "set_access: mprotect", errno);
    return VMS_OK;
}

static void host_destroy(void *ctx) {
    host_ctx *h = ctx;
    close(h->fd);
    free(h);
}

VMS_API vms_status vms_backend_host_create(size_t granularity_bytes, size_t capacity_bytes,
                                           vms_backend **out) {
    if (!out) {
        backend_set_error("host: no output");
        return VMS_EINVAL;
    }
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) page = 4096;
    if (granularity_bytes == 0) granularity_bytes = HOST_DEFAULT_GRANULARITY_BYTES;
    if ((granularity_bytes & (granularity_bytes - 1)) || granularity_bytes < (size_t)page) {
        backend_set_error(
            "host: granularity %zu is not a power-of-two multiple of the page size (%ld)",
            granularity_bytes, page);
        return VMS_EINVAL;
    }
    host_ctx *h = calloc(1, sizeof *h);
    if (!h) {
        backend_set_error("host: no host memory for the backend");
        return VMS_ENOMEM_HOST;
    }
    h->page_bytes = (size_t)page;
    h->fd = memfd_create("vmstitch-host-chunks", MFD_CLOEXEC);
    if (h->fd < 0) {
        vms_status st = host_fail(VMS_EBACKEND, "memfd_create", errno);
        free(h);
        return st;
    }
    /* Without a capacity, mem_info reports the machine's memory: the most that could ever be
     * touched, though chunk_create will not stop there. */
    long pages = sysconf(_SC_PHYS_PAGES);
    size_t machine_bytes = pages > 0 ? (size_t)pages * (size_t)page : (size_t)1 << 40;
    const sim_phys phys = {
        .ctx = h,
        .chunk_create = host_chunk_create,
        .chunk_release = host_chunk_release,
        .va_reserve = host_va_reserve,
        .va_free = host_va_free,
        .map = host_map,
        .unmap = host_unmap,
        .set_access = host_set_access,
        .destroy = host_destroy,
    };
    vms_status st = sim_engine_create("host", granularity_bytes, capacity_bytes, machine_bytes,
                                      false, &phys, out);
    if (st != VMS_OK) host_destroy(h);
    return st;
}
