/* Unit tests of the host and sim backends and of what all backends share (errors, cost model,
 * public wrappers). Every driver rule is checked on both backends, since the core relies on
 * host and sim refusing exactly what CUDA refuses; a randomized run compares both against a
 * plain reference model of those rules. Host tests use 64 KiB granules to keep memory low.
 *
 * Single-threaded except the thread tests, which share one backend among threads, as one
 * backend may serve several allocators.
 */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "test.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)
#define TIB ((size_t)1 << 40)
#define HOST_GRAN (64 * KIB)

static bool near(double a, double b) {
    return fabs(a - b) <= 1e-12 + 1e-9 * fabs(b);
}

static vms_backend *backend_new(bool host, size_t gran, size_t cap) {
    vms_backend *b = NULL;
    vms_status st =
        host ? vms_backend_host_create(gran, cap, &b) : vms_backend_sim_create(gran, cap, &b);
    return st == VMS_OK ? b : NULL;
}

static size_t gran_of(vms_backend *b) {
    size_t g = 0;
    b->ops->granularity(b, &g);
    return g;
}

static vms_backend_counters counters_of(vms_backend *b) {
    vms_backend_counters c;
    memset(&c, 0, sizeof c);
    vms_backend_counters_get(b, &c);
    return c;
}

/* A refusal must be VMS_EINVAL and leave a message for the caller. */
static void clear_error(void) {
    backend_set_error("%s", "");
}
#define CHECK_REFUSED(call)                                                                        \
    do {                                                                                           \
        clear_error();                                                                             \
        CHECK_EQ((call), VMS_EINVAL);                                                              \
        CHECK(vms_last_error()[0] != '\0');                                                        \
    } while (0)

/* ---------------------------------------------------------------- common.c */

TEST(backend_cost_interpolation) {
    /* The table's own points. */
    CHECK(near(vms_cost_seconds(VMS_COST_CREATE, 2 * MIB), 9e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_CREATE, 20 * MIB), 10e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_CREATE, 512 * MIB), 21e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_MAP, 20 * MIB), 0.7e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_SET_ACCESS, 2 * MIB), 27e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_SET_ACCESS, 20 * MIB), 25e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_SET_ACCESS, 512 * MIB), 50e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_UNMAP, 512 * MIB), 24e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_RELEASE, 20 * MIB), 23e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_RELEASE, 512 * MIB), 179e-6));
    /* Linear in between. */
    CHECK(near(vms_cost_seconds(VMS_COST_CREATE, 11 * MIB), 9.5e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_CREATE, 266 * MIB), 15.5e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_RELEASE, 266 * MIB), 101e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_SET_ACCESS, 5 * MIB), (27.0 - 2.0 * 3.0 / 18.0) * 1e-6));
    /* Clamped outside [2, 512] MiB. */
    CHECK(near(vms_cost_seconds(VMS_COST_CREATE, 64 * KIB), 9e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_CREATE, 0), 9e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_RELEASE, 4 * GIB), 179e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_SET_ACCESS, 1 * TIB), 50e-6));
    /* Flat. */
    CHECK(near(vms_cost_seconds(VMS_COST_RESERVE, 2 * MIB), 6e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_RESERVE, 1 * TIB), 6e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_ADDRESS_FREE, 64 * GIB), 2e-6));
    /* cudaMalloc/cudaFree: a straight line from 2 to 512 MiB, 20 MiB included. */
    CHECK(near(vms_cost_seconds(VMS_COST_CUDA_MALLOC, 2 * MIB), 57e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_CUDA_MALLOC, 512 * MIB), 91e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_CUDA_MALLOC, 257 * MIB), 74e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_CUDA_MALLOC, 20 * MIB),
               (57.0 + 34.0 * 18.0 / 510.0) * 1e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_CUDA_FREE, 257 * MIB), 149.5e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_CUDA_FREE, 100 * MIB),
               (42.0 + 215.0 * 98.0 / 510.0) * 1e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_CUDA_FREE, 1 * MIB), 42e-6));
    CHECK(near(vms_cost_seconds(VMS_COST_CUDA_FREE, 1 * GIB), 257e-6));
    /* An unknown kind costs nothing rather than reading past the table. */
    CHECK(vms_cost_seconds((vms_cost_kind)1000, 2 * MIB) == 0.0);
}

static void *read_error_thread(void *arg) {
    const char **seen = arg;
    *seen = vms_last_error();
    return NULL;
}

TEST(backend_error_message_per_thread) {
    backend_set_error("first %d\nsecond", 1);
    CHECK(strcmp(vms_last_error(), "first 1 second") == 0); /* kept on one line */
    const char *other = NULL;
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, read_error_thread, &other) == 0);
    pthread_join(t, NULL);
    REQUIRE(other != NULL);
    CHECK(other[0] == '\0'); /* a fresh thread has had no error */
    char longmsg[1000];
    memset(longmsg, 'x', sizeof longmsg - 1);
    longmsg[sizeof longmsg - 1] = '\0';
    backend_set_error("%s", longmsg); /* truncated, never overflowing */
    CHECK(strlen(vms_last_error()) > 0 && strlen(vms_last_error()) < sizeof longmsg);
}

static int fake_destroyed;
static void fake_destroy(vms_backend *b) {
    (void)b;
    fake_destroyed = 1;
}

TEST(backend_public_wrappers) {
    vms_backend_destroy(NULL); /* NULL-safe */
    CHECK(strcmp(vms_backend_name(NULL), "none") == 0);
    vms_backend_counters c;
    CHECK_EQ(vms_backend_counters_get(NULL, &c), VMS_EINVAL);
    CHECK_EQ(vms_backend_stream_hold(NULL, NULL, 1), VMS_EINVAL);

    /* A backend without stream_hold or counters (as cuda will be). */
    static const vms_backend_ops fake_ops = {.name = "fake", .destroy = fake_destroy};
    vms_backend fake = {.ops = &fake_ops};
    CHECK(strcmp(vms_backend_name(&fake), "fake") == 0);
    CHECK_EQ(vms_backend_stream_hold(&fake, NULL, 1), VMS_EUNSUPPORTED);
    memset(&c, 0xff, sizeof c);
    CHECK_EQ(vms_backend_counters_get(&fake, &c), VMS_OK);
    CHECK_EQ(c.create, 0);
    CHECK(c.modeled_seconds == 0.0);
    fake_destroyed = 0;
    vms_backend_destroy(&fake);
    CHECK_EQ(fake_destroyed, 1);

    vms_backend *h = backend_new(true, HOST_GRAN, 0), *s = backend_new(false, 0, 0);
    REQUIRE(h && s);
    CHECK(strcmp(vms_backend_name(h), "host") == 0);
    CHECK(strcmp(vms_backend_name(s), "sim") == 0);
    CHECK_EQ(vms_backend_counters_get(s, NULL), VMS_EINVAL);
    CHECK_EQ(gran_of(h), HOST_GRAN);
    CHECK_EQ(gran_of(s), 2 * MIB); /* the default */
    size_t free_bytes = 0, total_bytes = 0;
    CHECK_EQ(s->ops->mem_info(s, &free_bytes, &total_bytes), VMS_OK);
    CHECK_EQ(total_bytes, 80 * GIB);
    CHECK_EQ(free_bytes, 80 * GIB);
    CHECK_EQ(h->ops->mem_info(h, &free_bytes, &total_bytes), VMS_OK);
    CHECK(total_bytes > 0 && free_bytes == total_bytes);
    CHECK_EQ(s->ops->stream_check(s, NULL), VMS_OK);
    CHECK_EQ(h->ops->stream_check(h, (vms_stream)7), VMS_OK);
    vms_backend_destroy(h);
    vms_backend_destroy(s);
}

TEST(backend_create_arguments) {
    vms_backend *b = NULL;
    CHECK_EQ(vms_backend_host_create(HOST_GRAN, 0, NULL), VMS_EINVAL);
    CHECK_EQ(vms_backend_sim_create(0, 0, NULL), VMS_EINVAL);
    CHECK_REFUSED(vms_backend_host_create(3 * HOST_GRAN, 0, &b)); /* not a power of two */
    CHECK_REFUSED(vms_backend_host_create(512, 0, &b));           /* below the page size */
    CHECK_REFUSED(vms_backend_sim_create(3 * MIB, 0, &b));
    CHECK_EQ(vms_backend_host_create(0, 0, &b), VMS_OK);
    CHECK_EQ(gran_of(b), 2 * MIB);
    vms_backend_destroy(b);
}

/* ---------------------------------------------------------------- host: real memory */

static void *map_new(vms_backend *b, vms_handle h, size_t bytes, uintptr_t *res_out) {
    uintptr_t va = 0;
    if (b->ops->va_reserve(b, bytes, 0, &va) != VMS_OK) return NULL;
    if (b->ops->map(b, va, bytes, h) != VMS_OK) return NULL;
    if (b->ops->set_access(b, va, bytes) != VMS_OK) return NULL;
    if (res_out) *res_out = va;
    return (void *)va;
}

TEST(backend_host_chunk_aliased_at_two_addresses) {
    vms_backend *b = backend_new(true, HOST_GRAN, 0);
    REQUIRE(b);
    size_t bytes = 2 * HOST_GRAN;
    vms_handle h = 0;
    REQUIRE(b->ops->chunk_create(b, bytes, &h) == VMS_OK);
    CHECK(h != 0);
    uintptr_t ra = 0, rb = 0;
    unsigned char *pa = map_new(b, h, bytes, &ra), *pb = map_new(b, h, bytes, &rb);
    REQUIRE(pa && pb && pa != pb);
    for (size_t i = 0; i < bytes; i += 4096)
        pa[i] = (unsigned char)(i / 4096 + 1);
    pa[bytes - 1] = 0xab;
    bool same = true;
    for (size_t i = 0; i < bytes; i += 4096)
        same = same && pb[i] == (unsigned char)(i / 4096 + 1);
    CHECK(same);
    CHECK_EQ(pb[bytes - 1], 0xab);
    pb[17] = 0x5a; /* and the other way round */
    CHECK_EQ(pa[17], 0x5a);

    /* The bytes belong to the chunk, not to a mapping: they survive unmapping one address and
     * show up again at a third. */
    REQUIRE(b->ops->unmap(b, ra, bytes) == VMS_OK);
    REQUIRE(b->ops->va_free(b, ra, bytes) == VMS_OK);
    unsigned char *pc = map_new(b, h, bytes, NULL);
    REQUIRE(pc);
    CHECK_EQ(pc[17], 0x5a);
    CHECK_EQ(pc[bytes - 1], 0xab);
    vms_backend_counters c = counters_of(b);
    CHECK_EQ(c.create, 1);
    CHECK_EQ(c.map, 3);
    CHECK_EQ(c.set_access, 3);
    CHECK_EQ(c.unmap, 1);
    CHECK_EQ(c.address_free, 1);
    CHECK(c.modeled_seconds == 0.0); /* only sim models costs */
    vms_backend_destroy(b);          /* releases what is left, mapped or not */
}

TEST(backend_host_stitch_scattered_chunks) {
    /* What stitching does: chunks that live in separate ranges are mapped side by side into a
     * new range and used as one contiguous buffer. */
    vms_backend *b = backend_new(true, HOST_GRAN, 0);
    REQUIRE(b);
    enum { N = 5 };
    size_t sizes[N] = {HOST_GRAN, 3 * HOST_GRAN, HOST_GRAN, 2 * HOST_GRAN, HOST_GRAN};
    vms_handle h[N];
    unsigned char *own[N];
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        REQUIRE(b->ops->chunk_create(b, sizes[i], &h[i]) == VMS_OK);
        own[i] = map_new(b, h[i], sizes[i], NULL);
        REQUIRE(own[i]);
        total += sizes[i];
    }
    uintptr_t va = 0;
    REQUIRE(b->ops->va_reserve(b, total, 4 * MIB, &va) == VMS_OK);
    CHECK_EQ(va % (4 * MIB), 0); /* alignment honoured */
    uintptr_t at = va;
    for (int i = N - 1; i >= 0; i--) { /* any order: mapped backwards here */
        size_t off = 0;
        for (int j = 0; j < i; j++)
            off += sizes[j];
        REQUIRE(b->ops->map(b, va + off, sizes[i], h[i]) == VMS_OK);
    }
    REQUIRE(b->ops->set_access(b, va, total) == VMS_OK); /* one call over N mappings */
    CHECK_EQ(counters_of(b).set_access, N + N);
    unsigned char *p = (unsigned char *)va;
    for (size_t i = 0; i < total; i += 512)
        p[i] = (unsigned char)(i / 512 * 7 + 3);
    bool same = true;
    for (int i = 0; i < N; i++) {
        size_t off = (size_t)(at - va);
        for (size_t k = 0; k < sizes[i]; k += 512)
            same = same && own[i][k] == (unsigned char)((off + k) / 512 * 7 + 3);
        at += sizes[i];
    }
    CHECK(same);
    vms_backend_destroy(b);
}

TEST(backend_host_release_returns_pages) {
    /* Released chunks are gone for good; a new chunk never shows an old chunk's bytes. */
    vms_backend *b = backend_new(true, HOST_GRAN, 0);
    REQUIRE(b);
    vms_handle h = 0;
    uintptr_t va = 0;
    REQUIRE(b->ops->chunk_create(b, HOST_GRAN, &h) == VMS_OK);
    unsigned char *p = map_new(b, h, HOST_GRAN, &va);
    REQUIRE(p);
    memset(p, 0xee, HOST_GRAN);
    REQUIRE(b->ops->unmap(b, va, HOST_GRAN) == VMS_OK);
    REQUIRE(b->ops->chunk_release(b, h) == VMS_OK);
    vms_handle h2 = 0;
    REQUIRE(b->ops->chunk_create(b, HOST_GRAN, &h2) == VMS_OK);
    CHECK(h2 != h);
    REQUIRE(b->ops->map(b, va, HOST_GRAN, h2) == VMS_OK); /* the reservation was kept */
    REQUIRE(b->ops->set_access(b, va, HOST_GRAN) == VMS_OK);
    CHECK_EQ(p[0], 0);
    CHECK_EQ(p[HOST_GRAN - 1], 0);
    vms_backend_destroy(b);
}

/* ---------------------------------------------------------------- the driver's rules */

static void check_refusals(vms_backend *b) {
    size_t g = gran_of(b);
    REQUIRE(g >= 4096);
    /* chunk size */
    vms_handle junk = 0;
    CHECK_REFUSED(b->ops->chunk_create(b, 0, &junk));
    CHECK_REFUSED(b->ops->chunk_create(b, g / 2, &junk));
    CHECK_REFUSED(b->ops->chunk_create(b, g + 4096, &junk));
    /* reservation size and alignment */
    uintptr_t va = 0;
    CHECK_REFUSED(b->ops->va_reserve(b, g + 4096, 0, &va));
    CHECK_REFUSED(b->ops->va_reserve(b, 0, 0, &va));
    CHECK_REFUSED(b->ops->va_reserve(b, g, 3 * g, &va));

    REQUIRE(b->ops->va_reserve(b, 8 * g, 0, &va) == VMS_OK);
    CHECK_EQ(va % g, 0);
    vms_handle h1 = 0, h2 = 0, h3 = 0, gone = 0;
    REQUIRE(b->ops->chunk_create(b, g, &h1) == VMS_OK);
    REQUIRE(b->ops->chunk_create(b, g, &h2) == VMS_OK);
    REQUIRE(b->ops->chunk_create(b, 2 * g, &h3) == VMS_OK);
    REQUIRE(b->ops->chunk_create(b, g, &gone) == VMS_OK);
    REQUIRE(b->ops->chunk_release(b, gone) == VMS_OK);
    REQUIRE(b->ops->map(b, va + 2 * g, g, h1) == VMS_OK); /* h1 at [2g, 3g) */
    vms_backend_counters before = counters_of(b);

    /* map: misaligned address or size */
    CHECK_REFUSED(b->ops->map(b, va + g / 2, g, h2));
    CHECK_REFUSED(b->ops->map(b, va + 4096, g, h2));
    CHECK_REFUSED(b->ops->map(b, va, g / 2, h2));
    /* map: outside a reservation, or running past its end */
    CHECK_REFUSED(b->ops->map(b, va - 4 * g, g, h2));
    CHECK_REFUSED(b->ops->map(b, va + 8 * g, g, h2));
    CHECK_REFUSED(b->ops->map(b, va + 7 * g, 2 * g, h3));
    CHECK_REFUSED(b->ops->map(b, g, g, h2));
    /* map: over an existing mapping (same start, tail overlap, head overlap) */
    CHECK_REFUSED(b->ops->map(b, va + 2 * g, g, h2));
    CHECK_REFUSED(b->ops->map(b, va + g, 2 * g, h3));
    CHECK_REFUSED(b->ops->map(b, va + 2 * g, 2 * g, h3));
    /* map: unknown, null and released handles */
    CHECK_REFUSED(b->ops->map(b, va, g, 0));
    CHECK_REFUSED(b->ops->map(b, va, g, 987654321));
    CHECK_REFUSED(b->ops->map(b, va, g, gone));
    /* map: a chunk is mapped whole or not at all */
    CHECK_REFUSED(b->ops->map(b, va + 4 * g, g, h3));
    CHECK_REFUSED(b->ops->map(b, va + 4 * g, 2 * g, h2));
    vms_backend_counters after = counters_of(b);
    CHECK_EQ(after.map, before.map); /* refusals are not counted */

    REQUIRE(b->ops->map(b, va + 3 * g, 2 * g, h3) == VMS_OK); /* h3 at [3g, 5g) */
    REQUIRE(b->ops->map(b, va + 7 * g, g, h2) == VMS_OK);     /* h2 at [7g, 8g) */

    /* unmap: exactly one earlier mapping */
    CHECK_REFUSED(b->ops->unmap(b, va + 3 * g, g));     /* part of h3 */
    CHECK_REFUSED(b->ops->unmap(b, va + 4 * g, g));     /* the other part */
    CHECK_REFUSED(b->ops->unmap(b, va + 2 * g, 3 * g)); /* h1 and h3 together */
    CHECK_REFUSED(b->ops->unmap(b, va + 5 * g, g));     /* nothing there */
    CHECK_REFUSED(b->ops->unmap(b, va, 8 * g));         /* the whole reservation */

    /* set_access: whole mappings only, with no hole */
    CHECK_REFUSED(b->ops->set_access(b, va + 2 * g, 2 * g)); /* ends inside h3 */
    CHECK_REFUSED(b->ops->set_access(b, va + 4 * g, g));     /* starts inside h3 */
    CHECK_REFUSED(b->ops->set_access(b, va + g, 2 * g));     /* starts in a hole */
    CHECK_REFUSED(b->ops->set_access(b, va + 2 * g, 4 * g)); /* runs into a hole */
    CHECK_REFUSED(b->ops->set_access(b, va + 2 * g, 6 * g)); /* hole between h3 and h2 */
    CHECK_REFUSED(b->ops->set_access(b, va + 2 * g + 4096, g));
    CHECK_REFUSED(b->ops->set_access(b, va + 2 * g, 0));
    CHECK_EQ(counters_of(b).set_access, before.set_access);
    CHECK_EQ(b->ops->set_access(b, va + 2 * g, 3 * g), VMS_OK); /* h1 + h3 */
    CHECK_EQ(b->ops->set_access(b, va + 7 * g, g), VMS_OK);
    CHECK_EQ(counters_of(b).set_access, before.set_access + 3);

    /* release: not while mapped anywhere; not twice */
    CHECK_REFUSED(b->ops->chunk_release(b, h1));
    CHECK_REFUSED(b->ops->chunk_release(b, h3));
    CHECK_REFUSED(b->ops->chunk_release(b, gone));
    CHECK_REFUSED(b->ops->chunk_release(b, 0));

    /* va_free: not with mappings inside, not of an unknown range or a part of one */
    CHECK_REFUSED(b->ops->va_free(b, va, 8 * g));
    CHECK_REFUSED(b->ops->va_free(b, va + g, 7 * g));
    CHECK_REFUSED(b->ops->va_free(b, va, 4 * g));
    CHECK_REFUSED(b->ops->va_free(b, 12345 * g, g));

    /* Refusals changed nothing: the valid sequence still works and everything is clean. */
    CHECK_EQ(b->ops->unmap(b, va + 2 * g, g), VMS_OK);
    CHECK_EQ(b->ops->chunk_release(b, h1), VMS_OK);
    CHECK_REFUSED(b->ops->unmap(b, va + 2 * g, g)); /* not twice */
    CHECK_REFUSED(b->ops->va_free(b, va, 8 * g));   /* h3 and h2 are still there */
    CHECK_EQ(b->ops->unmap(b, va + 3 * g, 2 * g), VMS_OK);
    CHECK_REFUSED(b->ops->va_free(b, va, 8 * g)); /* h2, the last granule */
    CHECK_EQ(b->ops->unmap(b, va + 7 * g, g), VMS_OK);
    CHECK_EQ(b->ops->va_free(b, va, 8 * g), VMS_OK);
    CHECK_REFUSED(b->ops->va_free(b, va, 8 * g)); /* not twice */
    CHECK_REFUSED(b->ops->map(b, va, g, h2));     /* the range is gone */
    CHECK_EQ(b->ops->chunk_release(b, h2), VMS_OK);
    CHECK_EQ(b->ops->chunk_release(b, h3), VMS_OK);
    vms_backend_counters end = counters_of(b);
    CHECK_EQ(end.create, 4);
    CHECK_EQ(end.release, 4);
    CHECK_EQ(end.map, 3);
    CHECK_EQ(end.unmap, 3);
    CHECK_EQ(end.reserve, 1);
    CHECK_EQ(end.address_free, 1);
    size_t free_bytes = 0, total_bytes = 0;
    b->ops->mem_info(b, &free_bytes, &total_bytes);
    CHECK_EQ(free_bytes, total_bytes);
}

TEST(backend_host_refusals) {
    vms_backend *b = backend_new(true, HOST_GRAN, 0);
    REQUIRE(b);
    check_refusals(b);
    vms_backend_destroy(b);
}

TEST(backend_sim_refusals) {
    vms_backend *b = backend_new(false, 0, 0);
    REQUIRE(b);
    check_refusals(b);
    vms_backend_destroy(b);
    REQUIRE((b = backend_new(false, 64 * KIB, 0)) != NULL);
    check_refusals(b);
    vms_backend_destroy(b);
}

static void check_capacity(vms_backend *b, size_t g) {
    vms_handle h[4], extra = 0;
    for (int i = 0; i < 4; i++)
        REQUIRE(b->ops->chunk_create(b, g, &h[i]) == VMS_OK);
    size_t free_bytes = 1, total_bytes = 0;
    CHECK_EQ(b->ops->mem_info(b, &free_bytes, &total_bytes), VMS_OK);
    CHECK_EQ(total_bytes, 4 * g);
    CHECK_EQ(free_bytes, 0);
    clear_error();
    CHECK_EQ(b->ops->chunk_create(b, g, &extra), VMS_ENOMEM);
    CHECK(strstr(vms_last_error(), "out of memory") != NULL);
    REQUIRE(b->ops->chunk_release(b, h[1]) == VMS_OK);
    CHECK_EQ(b->ops->chunk_create(b, 2 * g, &extra), VMS_ENOMEM); /* only g is free */
    CHECK_EQ(b->ops->chunk_create(b, g, &h[1]), VMS_OK);
    CHECK_EQ(b->ops->chunk_create(b, g, &extra), VMS_ENOMEM);
    REQUIRE(b->ops->chunk_release(b, h[0]) == VMS_OK);
    REQUIRE(b->ops->chunk_release(b, h[2]) == VMS_OK);
    CHECK_EQ(b->ops->chunk_create(b, 2 * g, &extra), VMS_OK);
    CHECK_EQ(b->ops->mem_info(b, &free_bytes, &total_bytes), VMS_OK);
    CHECK_EQ(free_bytes, 0);
    CHECK_EQ(counters_of(b).create, 6); /* failed creates are not counted */
}

TEST(backend_host_capacity) {
    vms_backend *b = backend_new(true, HOST_GRAN, 4 * HOST_GRAN);
    REQUIRE(b);
    check_capacity(b, HOST_GRAN);
    vms_backend_destroy(b);
}

TEST(backend_sim_capacity) {
    vms_backend *b = backend_new(false, 0, 8 * MIB);
    REQUIRE(b);
    check_capacity(b, 2 * MIB);
    vms_backend_destroy(b);
    /* A chunk larger than the whole capacity. */
    REQUIRE((b = backend_new(false, 0, 8 * MIB)) != NULL);
    vms_handle h = 0;
    CHECK_EQ(b->ops->chunk_create(b, 10 * MIB, &h), VMS_ENOMEM);
    vms_backend_destroy(b);
}

/* ---------------------------------------------------------------- sim: counts and costs */

TEST(backend_sim_costs) {
    vms_backend *b = backend_new(false, 0, 0);
    REQUIRE(b);
    vms_handle h = 0, big = 0;
    REQUIRE(b->ops->chunk_create(b, 2 * MIB, &h) == VMS_OK);
    vms_backend_counters c = counters_of(b);
    CHECK_EQ(c.create, 1);
    CHECK(near(c.modeled_seconds, 9e-6));
    REQUIRE(b->ops->chunk_create(b, 12 * MIB, &big) == VMS_OK);
    c = counters_of(b);
    CHECK(near(c.modeled_seconds, 9e-6 + (9.0 + 10.0 / 18.0) * 1e-6)); /* 12 MiB */
    REQUIRE(b->ops->chunk_release(b, big) == VMS_OK);
    REQUIRE(b->ops->chunk_release(b, h) == VMS_OK);

    vms_backend *s = backend_new(false, MIB, 0); /* 1 MiB granules to allow 11 MiB */
    REQUIRE(s);
    REQUIRE(s->ops->chunk_create(s, 11 * MIB, &h) == VMS_OK);
    CHECK(near(counters_of(s).modeled_seconds, 9.5e-6));
    vms_backend_destroy(s);

    /* Three 2 MiB handles side by side: one set_access call counts 3 and costs 3 x 27 us. */
    REQUIRE((s = backend_new(false, 0, 0)) != NULL);
    vms_handle hs[3];
    uintptr_t va = 0;
    REQUIRE(s->ops->va_reserve(s, 6 * MIB, 0, &va) == VMS_OK);
    for (int i = 0; i < 3; i++) {
        REQUIRE(s->ops->chunk_create(s, 2 * MIB, &hs[i]) == VMS_OK);
        REQUIRE(s->ops->map(s, va + (size_t)i * 2 * MIB, 2 * MIB, hs[i]) == VMS_OK);
    }
    vms_backend_counters before = counters_of(s);
    CHECK(near(before.modeled_seconds, 6e-6 + 3 * 9e-6 + 3 * 1.1e-6));
    REQUIRE(s->ops->set_access(s, va, 6 * MIB) == VMS_OK);
    c = counters_of(s);
    CHECK_EQ(c.set_access - before.set_access, 3);
    CHECK(near(c.modeled_seconds - before.modeled_seconds, 81e-6));
    for (int i = 0; i < 3; i++) {
        REQUIRE(s->ops->unmap(s, va + (size_t)i * 2 * MIB, 2 * MIB) == VMS_OK);
        REQUIRE(s->ops->chunk_release(s, hs[i]) == VMS_OK);
    }
    REQUIRE(s->ops->va_free(s, va, 6 * MIB) == VMS_OK);
    c = counters_of(s);
    CHECK(near(c.modeled_seconds,
               6e-6 + 3 * 9e-6 + 3 * 1.1e-6 + 81e-6 + 3 * 16e-6 + 3 * 10e-6 + 2e-6));
    CHECK_EQ(c.create, 3);
    CHECK_EQ(c.map, 3);
    CHECK_EQ(c.unmap, 3);
    CHECK_EQ(c.release, 3);
    CHECK_EQ(c.reserve, 1);
    CHECK_EQ(c.address_free, 1);

    /* Mixed sizes in one set_access: each mapping at its own handle's size. */
    vms_handle small = 0, large = 0;
    REQUIRE(s->ops->va_reserve(s, 532 * MIB, 0, &va) == VMS_OK);
    REQUIRE(s->ops->chunk_create(s, 20 * MIB, &small) == VMS_OK);
    REQUIRE(s->ops->chunk_create(s, 512 * MIB, &large) == VMS_OK);
    REQUIRE(s->ops->map(s, va, 512 * MIB, large) == VMS_OK);
    REQUIRE(s->ops->map(s, va + 512 * MIB, 20 * MIB, small) == VMS_OK);
    before = counters_of(s);
    REQUIRE(s->ops->set_access(s, va, 532 * MIB) == VMS_OK);
    c = counters_of(s);
    CHECK_EQ(c.set_access - before.set_access, 2);
    CHECK(near(c.modeled_seconds - before.modeled_seconds, 75e-6));
    vms_backend_destroy(s);
    vms_backend_destroy(b);
}

TEST(backend_sim_fake_addresses) {
    vms_backend *b = backend_new(false, 0, 0);
    REQUIRE(b);
    uintptr_t a = 0, c = 0, d = 0, e = 0;
    REQUIRE(b->ops->va_reserve(b, 2 * MIB, 0, &a) == VMS_OK);
    REQUIRE(b->ops->va_reserve(b, 2 * MIB, 1 * GIB, &c) == VMS_OK);
    CHECK(a != 0 && a % (2 * MIB) == 0);
    CHECK_EQ(c % GIB, 0);
    CHECK(c >= a + 2 * MIB);
    CHECK(c < ((uintptr_t)1 << 48));
    REQUIRE(b->ops->va_reserve(b, 2 * MIB, 0, &d) == VMS_OK);
    CHECK(d > c + 2 * MIB); /* ranges never touch: a guard granule lies between */
    REQUIRE(b->ops->va_free(b, a, 2 * MIB) == VMS_OK);
    REQUIRE(b->ops->va_free(b, c, 2 * MIB) == VMS_OK);
    REQUIRE(b->ops->va_free(b, d, 2 * MIB) == VMS_OK);

    /* Exhaust the 48-bit space with huge ranges, then reuse a freed gap. */
    uintptr_t big[8];
    int n = 0;
    while (n < 8 && b->ops->va_reserve(b, 64 * TIB, 0, &big[n]) == VMS_OK) {
        CHECK(big[n] + 64 * TIB <= ((uintptr_t)1 << 48));
        n++;
    }
    CHECK(n >= 2 && n < 8);
    clear_error();
    CHECK_EQ(b->ops->va_reserve(b, 64 * TIB, 0, &e), VMS_ENOMEM);
    CHECK(vms_last_error()[0] != '\0');
    REQUIRE(b->ops->va_free(b, big[0], 64 * TIB) == VMS_OK);
    CHECK_EQ(b->ops->va_reserve(b, 64 * TIB, 0, &e), VMS_OK);
    CHECK(e + 64 * TIB <= big[1]);
    CHECK_EQ(b->ops->va_reserve(b, 2 * MIB, 0, &e), VMS_OK); /* small ones still fit in gaps */
    vms_backend_destroy(b);
}

/* ---------------------------------------------------------------- events */

static void check_events(vms_backend *b) {
    vms_stream s1 = (vms_stream)1, s2 = (vms_stream)2;
    vms_event e0 = NULL, e1 = NULL, e2 = NULL, e3 = NULL, ed = NULL;
    bool done = false;
    REQUIRE(b->ops->event_record(b, s1, &e0) == VMS_OK);
    REQUIRE(e0 != NULL);
    CHECK_EQ(b->ops->event_query(b, e0, &done), VMS_OK);
    CHECK(done); /* unheld streams complete at once */
    CHECK_EQ(b->ops->event_sync(b, e0), VMS_OK);

    CHECK_EQ(vms_backend_stream_hold(b, s1, 1), VMS_OK);
    REQUIRE(b->ops->event_record(b, s1, &e1) == VMS_OK);
    REQUIRE(b->ops->event_record(b, s1, &e2) == VMS_OK);
    REQUIRE(b->ops->event_record(b, s2, &e3) == VMS_OK);
    REQUIRE(b->ops->event_record(b, NULL, &ed) == VMS_OK); /* the default stream is a stream */
    CHECK_EQ(b->ops->event_query(b, e1, &done), VMS_OK);
    CHECK(!done);
    CHECK_EQ(b->ops->event_query(b, e2, &done), VMS_OK);
    CHECK(!done);
    CHECK_EQ(b->ops->event_query(b, e0, &done), VMS_OK);
    CHECK(done); /* recorded before the hold */
    CHECK_EQ(b->ops->event_query(b, e3, &done), VMS_OK);
    CHECK(done); /* other streams are not held */
    CHECK_EQ(b->ops->event_query(b, ed, &done), VMS_OK);
    CHECK(done);
    clear_error();
    CHECK_EQ(b->ops->event_sync(b, e1), VMS_EBACKEND);
    CHECK(strstr(vms_last_error(), "held stream") != NULL);

    CHECK_EQ(vms_backend_stream_hold(b, s1, 0), VMS_OK);
    CHECK_EQ(b->ops->event_query(b, e1, &done), VMS_OK);
    CHECK(done);
    CHECK_EQ(b->ops->event_query(b, e2, &done), VMS_OK);
    CHECK(done);
    CHECK_EQ(b->ops->event_sync(b, e2), VMS_OK);

    /* Holding a stream that has never been seen works too, and leaves older events alone. */
    vms_stream s3 = (vms_stream)3;
    vms_event e4 = NULL;
    CHECK_EQ(vms_backend_stream_hold(b, s3, 1), VMS_OK);
    REQUIRE(b->ops->event_record(b, s3, &e4) == VMS_OK);
    CHECK_EQ(b->ops->event_query(b, e4, &done), VMS_OK);
    CHECK(!done);
    CHECK_EQ(vms_backend_stream_hold(b, s3, 1), VMS_OK); /* holding twice is one hold */
    CHECK_EQ(vms_backend_stream_hold(b, s3, 0), VMS_OK);
    CHECK_EQ(b->ops->event_query(b, e4, &done), VMS_OK);
    CHECK(done);

    CHECK_EQ(b->ops->event_query(b, NULL, &done), VMS_EINVAL);
    CHECK_EQ(b->ops->event_sync(b, NULL), VMS_EINVAL);
    vms_backend_counters c = counters_of(b);
    CHECK_EQ(c.event_record, 6);
    CHECK_EQ(c.event_query, 10);
    CHECK_EQ(c.event_sync, 3);
    vms_event all[] = {e0, e1, e2, e3, ed, e4};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        b->ops->event_destroy(b, all[i]);
}

TEST(backend_host_events_held_stream) {
    vms_backend *b = backend_new(true, HOST_GRAN, 0);
    REQUIRE(b);
    check_events(b);
    vms_backend_destroy(b);
}

TEST(backend_sim_events_held_stream) {
    vms_backend *b = backend_new(false, 0, 0);
    REQUIRE(b);
    check_events(b);
    vms_backend_destroy(b);
}

/* ---------------------------------------------------------------- scale */

static void shuffle(size_t *v, size_t n, uint64_t *rng) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(test_rand(rng) % i), t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* Thousands of chunks, each mapped twice (a home range each, and one big stitched range), in
 * random order; returns early on the first failure. */
static void check_many(vms_backend *b, size_t n, bool touch) {
    size_t g = gran_of(b);
    vms_handle *h = calloc(n, sizeof *h);
    uintptr_t *home = calloc(n, sizeof *home);
    size_t *order = calloc(n, sizeof *order);
    REQUIRE(h && home && order);
    uint64_t rng = 42;
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = 0; i < n; i++) {
        REQUIRE(b->ops->chunk_create(b, g, &h[i]) == VMS_OK);
        REQUIRE(b->ops->va_reserve(b, g, 0, &home[i]) == VMS_OK);
        REQUIRE(b->ops->map(b, home[i], g, h[i]) == VMS_OK);
        REQUIRE(b->ops->set_access(b, home[i], g) == VMS_OK);
        if (touch) *(size_t *)home[i] = i;
    }
    uintptr_t va = 0;
    REQUIRE(b->ops->va_reserve(b, n * g, 0, &va) == VMS_OK);
    shuffle(order, n, &rng);
    for (size_t k = 0; k < n; k++) {
        size_t i = order[k];
        REQUIRE(b->ops->map(b, va + i * g, g, h[i]) == VMS_OK);
    }
    vms_backend_counters before = counters_of(b);
    REQUIRE(b->ops->set_access(b, va, n * g) == VMS_OK);
    CHECK_EQ(counters_of(b).set_access - before.set_access, n);
    if (touch) {
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += *(size_t *)(va + i * g) != i;
        CHECK_EQ(bad, 0);
    }
    shuffle(order, n, &rng);
    for (size_t k = 0; k < n; k++) {
        size_t i = order[k];
        CHECK_EQ(b->ops->chunk_release(b, h[i]), VMS_EINVAL); /* mapped twice */
        REQUIRE(b->ops->unmap(b, va + i * g, g) == VMS_OK);
        if (k % 2) {
            REQUIRE(b->ops->unmap(b, home[i], g) == VMS_OK);
            REQUIRE(b->ops->va_free(b, home[i], g) == VMS_OK);
            REQUIRE(b->ops->chunk_release(b, h[i]) == VMS_OK);
        }
    }
    REQUIRE(b->ops->va_free(b, va, n * g) == VMS_OK);
    /* Half are still mapped at home: lookups after many removals still find them. */
    size_t alive = 0;
    for (size_t k = 0; k < n; k += 2) {
        size_t i = order[k];
        if (touch) CHECK_EQ(*(size_t *)home[i], i);
        REQUIRE(b->ops->unmap(b, home[i], g) == VMS_OK);
        REQUIRE(b->ops->chunk_release(b, h[i]) == VMS_OK);
        alive++;
    }
    vms_backend_counters c = counters_of(b);
    CHECK_EQ(c.create, n);
    CHECK_EQ(c.release, n);
    CHECK_EQ(c.map, 2 * n);
    CHECK_EQ(c.unmap, 2 * n);
    CHECK_EQ(alive, (n + 1) / 2);
    free(h);
    free(home);
    free(order);
}

TEST(backend_sim_many_chunks) {
    size_t n = (size_t)test_param("VMS_STRESS_OPS", 20000);
    vms_backend *b = backend_new(false, 0, n * 2 * MIB); /* 80 GiB holds only 40960 chunks */
    REQUIRE(b);
    check_many(b, n, false);
    vms_backend_destroy(b);
}

TEST(backend_host_many_chunks) {
    vms_backend *b = backend_new(true, HOST_GRAN, 0);
    REQUIRE(b);
    check_many(b, 3000, true); /* more than the usual 1024 descriptors */
    vms_backend_destroy(b);
}

/* ---------------------------------------------------------------- randomized vs. a model */

/* A plain model of the driver's rules (linear scans, obviously right) that the engine's hash
 * and trees must agree with, call by call, on valid and invalid arguments alike. */
typedef struct {
    vms_handle h;
    size_t bytes;
    int maps;
    bool live;
    unsigned char stamp; /* host: the last byte written to the chunk's first byte */
} model_chunk;
typedef struct {
    uintptr_t addr;
    size_t bytes;
    bool live;
} model_res;
typedef struct {
    uintptr_t addr;
    size_t bytes;
    int chunk; /* index into chunks */
    bool live, access;
} model_map;

enum { MODEL_MAX = 4096 };
typedef struct {
    model_chunk chunks[MODEL_MAX];
    model_res res[MODEL_MAX];
    model_map maps[MODEL_MAX];
    int nchunks, nres, nmaps;
    size_t g, used, cap;
    vms_backend_counters want;
} model;

static int model_chunk_find(const model *m, vms_handle h) {
    for (int i = 0; i < m->nchunks; i++)
        if (m->chunks[i].live && m->chunks[i].h == h) return i;
    return -1;
}

static int model_map_at(const model *m, uintptr_t addr) {
    for (int i = 0; i < m->nmaps; i++)
        if (m->maps[i].live && m->maps[i].addr == addr) return i;
    return -1;
}

static vms_status model_map_check(const model *m, uintptr_t addr, size_t bytes, vms_handle h) {
    if (!bytes || addr % m->g || bytes % m->g) return VMS_EINVAL;
    int c = model_chunk_find(m, h);
    if (c < 0 || m->chunks[c].bytes != bytes) return VMS_EINVAL;
    bool inside = false;
    for (int i = 0; i < m->nres; i++)
        if (m->res[i].live && addr >= m->res[i].addr &&
            addr + bytes <= m->res[i].addr + m->res[i].bytes)
            inside = true;
    if (!inside) return VMS_EINVAL;
    for (int i = 0; i < m->nmaps; i++)
        if (m->maps[i].live && addr < m->maps[i].addr + m->maps[i].bytes &&
            m->maps[i].addr < addr + bytes)
            return VMS_EINVAL;
    return VMS_OK;
}

static int model_set_access_check(const model *m, uintptr_t addr, size_t bytes) {
    if (!bytes || addr % m->g || bytes % m->g) return -1;
    int n = 0;
    for (uintptr_t cur = addr; cur < addr + bytes; n++) {
        int i = model_map_at(m, cur);
        if (i < 0 || m->maps[i].bytes > addr + bytes - cur) return -1;
        cur += m->maps[i].bytes;
    }
    return n;
}

/* Picks an index in [0, n) or -1 when n is 0; a few tries favour live entries (dead ones
 * pile up and would make almost every call a refusal). */
static int pick(uint64_t *rng, int n, const bool *live, size_t stride) {
    if (!n) return -1;
    int i = 0;
    for (int tries = 0; tries < 4; tries++) {
        i = (int)(test_rand(rng) % (uint64_t)n);
        if (*(const bool *)((const char *)live + (size_t)i * stride)) break;
    }
    return i;
}
#define PICK(rng, arr, n) pick(rng, n, &(arr)[0].live, sizeof(arr)[0])

static void check_against_model(vms_backend *b, bool host, long ops, uint64_t seed) {
    model *m = calloc(1, sizeof *m);
    REQUIRE(m);
    m->g = gran_of(b);
    size_t g = m->g;
    b->ops->mem_info(b, NULL, &m->cap);
    uint64_t rng = seed;
    long mismatches = 0, accepted = 0;
    for (long op = 0; op < ops && mismatches < 5; op++) {
        unsigned kind = (unsigned)(test_rand(&rng) % 10);
        vms_status got = VMS_OK, want = VMS_OK;
        if (kind == 0 && m->nchunks < MODEL_MAX) { /* create, sometimes a bad size */
            size_t bytes = (size_t)(1 + test_rand(&rng) % 4) * g;
            if (test_rand(&rng) % 8 == 0) bytes += 4096;
            want = bytes % g ? VMS_EINVAL : m->used + bytes > m->cap ? VMS_ENOMEM : VMS_OK;
            vms_handle h = 0;
            got = b->ops->chunk_create(b, bytes, &h);
            if (got == VMS_OK) {
                m->chunks[m->nchunks++] = (model_chunk){.h = h, .bytes = bytes, .live = true};
                m->used += bytes;
                m->want.create++;
            }
        } else if (kind == 1) { /* release a random chunk, live or not */
            int i = PICK(&rng, m->chunks, m->nchunks);
            vms_handle h = i < 0 ? 77 : m->chunks[i].h;
            want = i >= 0 && m->chunks[i].live && m->chunks[i].maps == 0 ? VMS_OK : VMS_EINVAL;
            got = b->ops->chunk_release(b, h);
            if (got == VMS_OK) {
                m->chunks[i].live = false;
                m->used -= m->chunks[i].bytes;
                m->want.release++;
            }
        } else if (kind == 2 && m->nres < MODEL_MAX) { /* reserve */
            size_t bytes = (size_t)(1 + test_rand(&rng) % 12) * g;
            uintptr_t va = 0;
            got = b->ops->va_reserve(b, bytes, 0, &va);
            if (got == VMS_OK) {
                m->res[m->nres++] = (model_res){.addr = va, .bytes = bytes, .live = true};
                m->want.reserve++;
            }
        } else if (kind == 3) { /* va_free, sometimes with the wrong size */
            int i = PICK(&rng, m->res, m->nres);
            if (i < 0) continue;
            size_t bytes = m->res[i].bytes + (test_rand(&rng) % 6 == 0 ? g : 0);
            uintptr_t addr = m->res[i].addr;
            int live = -1; /* host: mmap may hand a freed range's address out again */
            for (int k = 0; k < m->nres; k++)
                if (m->res[k].live && m->res[k].addr == addr) live = k;
            want = live >= 0 && bytes == m->res[live].bytes ? VMS_OK : VMS_EINVAL;
            for (int k = 0; k < m->nmaps && want == VMS_OK; k++)
                if (m->maps[k].live && m->maps[k].addr >= addr && m->maps[k].addr < addr + bytes)
                    want = VMS_EINVAL;
            got = b->ops->va_free(b, addr, bytes);
            if (got == VMS_OK) {
                m->res[live].live = false;
                m->want.address_free++;
            }
        } else if (kind >= 4 && kind <= 6 && m->nmaps < MODEL_MAX) { /* map, often refused */
            int r = PICK(&rng, m->res, m->nres), c = PICK(&rng, m->chunks, m->nchunks);
            int after = PICK(&rng, m->maps, m->nmaps);
            if (r < 0 || c < 0) continue;
            uintptr_t addr = m->res[r].addr + (test_rand(&rng) % (m->res[r].bytes / g + 2)) * g;
            if (after >= 0 && test_rand(&rng) % 2) /* right after a mapping: builds runs */
                addr = m->maps[after].addr + m->maps[after].bytes;
            if (test_rand(&rng) % 10 == 0) addr -= 4096;
            size_t bytes = m->chunks[c].bytes;
            if (test_rand(&rng) % 10 == 0) bytes = g;
            want = model_map_check(m, addr, bytes, m->chunks[c].h);
            got = b->ops->map(b, addr, bytes, m->chunks[c].h);
            if (got == VMS_OK) {
                m->maps[m->nmaps++] =
                    (model_map){.addr = addr, .bytes = bytes, .chunk = c, .live = true};
                m->chunks[c].maps++;
                m->want.map++;
            }
        } else if (kind == 7) { /* unmap a known mapping, sometimes with the wrong size */
            int i = PICK(&rng, m->maps, m->nmaps);
            if (i < 0) continue;
            size_t bytes = m->maps[i].bytes + (test_rand(&rng) % 6 == 0 ? g : 0);
            uintptr_t addr = m->maps[i].addr;
            int live = model_map_at(m, addr); /* a later mapping may sit at a dead one's address */
            want = live >= 0 && m->maps[live].bytes == bytes ? VMS_OK : VMS_EINVAL;
            got = b->ops->unmap(b, addr, bytes);
            if (got == VMS_OK) {
                m->maps[live].live = false;
                m->chunks[m->maps[live].chunk].maps--;
                m->want.unmap++;
            }
        } else if (kind >= 8) { /* set_access from a mapping over a random length */
            int i = PICK(&rng, m->maps, m->nmaps);
            if (i < 0) continue;
            uintptr_t addr = m->maps[i].addr;
            size_t bytes = (size_t)(1 + test_rand(&rng) % 6) * g;
            int n = model_set_access_check(m, addr, bytes);
            want = n >= 0 ? VMS_OK : VMS_EINVAL;
            got = b->ops->set_access(b, addr, bytes);
            if (got == VMS_OK) {
                m->want.set_access += (uint64_t)n;
                for (uintptr_t cur = addr; cur < addr + bytes;) {
                    int k = model_map_at(m, cur);
                    m->maps[k].access = true;
                    cur += m->maps[k].bytes;
                }
            }
        } else {
            continue;
        }
        if (got != want) {
            char msg[200];
            snprintf(msg, sizeof msg, "op %ld kind %u: got %d want %d (%s)", op, kind, (int)got,
                     (int)want, vms_last_error());
            test_fail(__FILE__, __LINE__, msg);
            mismatches++;
        }
        if (got == VMS_OK) accepted++;
        /* Host: every accessible mapping of a chunk shows what was last written through any. */
        if (host && got == VMS_OK && kind >= 7) {
            for (int k = 0; k < m->nmaps; k++) {
                model_map *mm = &m->maps[k];
                if (!mm->live || !mm->access) continue;
                model_chunk *ch = &m->chunks[mm->chunk];
                if (*(volatile unsigned char *)mm->addr != ch->stamp) {
                    test_fail(__FILE__, __LINE__, "a mapping does not show its chunk's last write");
                    mismatches++;
                }
                ch->stamp = (unsigned char)(ch->stamp * 31 + 7);
                *(volatile unsigned char *)mm->addr = ch->stamp;
            }
        }
    }
    vms_backend_counters c = counters_of(b);
    CHECK_EQ(c.create, m->want.create);
    CHECK_EQ(c.release, m->want.release);
    CHECK_EQ(c.reserve, m->want.reserve);
    CHECK_EQ(c.address_free, m->want.address_free);
    CHECK_EQ(c.map, m->want.map);
    CHECK_EQ(c.unmap, m->want.unmap);
    CHECK_EQ(c.set_access, m->want.set_access);
    CHECK(accepted > ops / 10); /* the run did real work, not only refusals */
    if (getenv("VMS_TEST_VERBOSE"))
        fprintf(stderr,
                "    %ld ops, %ld accepted; create %" PRIu64 " map %" PRIu64 " set_access %" PRIu64
                " unmap %" PRIu64 " release %" PRIu64 " free %" PRIu64 "\n",
                ops, accepted, c.create, c.map, c.set_access, c.unmap, c.release, c.address_free);
    CHECK(m->want.set_access > 0 && m->want.unmap > 0 && m->want.address_free > 0);
    free(m);
}

TEST(backend_sim_random_vs_model) {
    vms_backend *b = backend_new(false, 0, 256 * MIB);
    REQUIRE(b);
    check_against_model(b, false, test_param("VMS_STRESS_OPS", 20000), 1);
    vms_backend_destroy(b);
}

TEST(backend_host_random_vs_model) {
    vms_backend *b = backend_new(true, HOST_GRAN, 128 * HOST_GRAN);
    REQUIRE(b);
    check_against_model(b, true, test_param("VMS_STRESS_OPS", 20000) / 2, 2);
    vms_backend_destroy(b);
}

/* ---------------------------------------------------------------- threads */

typedef struct {
    vms_backend *b;
    int rounds;
    int id;
    int failures;
} worker_arg;

/* Each thread runs whole create/map/use/unmap/release cycles on its own chunks and streams. */
static void *worker(void *p) {
    worker_arg *w = p;
    vms_backend *b = w->b;
    size_t g = gran_of(b);
    bool host = strcmp(vms_backend_name(b), "host") == 0;
    vms_stream stream = (vms_stream)(uintptr_t)(100 + w->id);
    for (int r = 0; r < w->rounds; r++) {
        vms_handle h1 = 0, h2 = 0;
        uintptr_t va = 0;
        vms_event ev = NULL;
        bool done = false;
        if (b->ops->chunk_create(b, g, &h1) || b->ops->chunk_create(b, 2 * g, &h2) ||
            b->ops->va_reserve(b, 3 * g, 0, &va) || b->ops->map(b, va + g, 2 * g, h2) ||
            b->ops->map(b, va, g, h1) || b->ops->set_access(b, va, 3 * g)) {
            w->failures++;
            return NULL;
        }
        if (host) {
            ((volatile int *)va)[0] = r;
            ((volatile int *)(va + 3 * g))[-1] = r;
            if (((volatile int *)va)[0] != r) w->failures++;
        }
        if (b->ops->event_record(b, stream, &ev) || b->ops->event_query(b, ev, &done) || !done)
            w->failures++;
        b->ops->event_destroy(b, ev);
        if (b->ops->unmap(b, va, g) || b->ops->unmap(b, va + g, 2 * g) ||
            b->ops->va_free(b, va, 3 * g) || b->ops->chunk_release(b, h1) ||
            b->ops->chunk_release(b, h2)) {
            w->failures++;
            return NULL;
        }
    }
    return NULL;
}

static void check_threads(vms_backend *b, int rounds) {
    enum { T = 4 };
    pthread_t t[T];
    worker_arg w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (worker_arg){.b = b, .rounds = rounds, .id = i};
        REQUIRE(pthread_create(&t[i], NULL, worker, &w[i]) == 0);
    }
    for (int i = 0; i < T; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < T; i++)
        CHECK_EQ(w[i].failures, 0);
    vms_backend_counters c = counters_of(b);
    CHECK_EQ(c.create, 2 * T * rounds);
    CHECK_EQ(c.release, 2 * T * rounds);
    CHECK_EQ(c.map, 2 * T * rounds);
    CHECK_EQ(c.unmap, 2 * T * rounds);
    CHECK_EQ(c.set_access, 2 * T * rounds);
    CHECK_EQ(c.reserve, T * rounds);
    CHECK_EQ(c.address_free, T * rounds);
    CHECK_EQ(c.event_record, T * rounds);
    size_t free_bytes = 0, total_bytes = 0;
    b->ops->mem_info(b, &free_bytes, &total_bytes);
    CHECK_EQ(free_bytes, total_bytes);
}

TEST(backend_sim_threads) {
    vms_backend *b = backend_new(false, 0, 0);
    REQUIRE(b);
    check_threads(b, (int)test_param("VMS_STRESS_OPS", 20000) / 4);
    vms_backend_destroy(b);
}

TEST(backend_host_threads) {
    vms_backend *b = backend_new(true, HOST_GRAN, 64 * HOST_GRAN);
    REQUIRE(b);
    check_threads(b, 500);
    vms_backend_destroy(b);
}
