/* The sim backend, and the bookkeeping engine that the host backend is built on.
 *
 * The engine keeps what the CUDA driver keeps — chunks (handles), reserved address ranges and
 * the mappings inside them — and refuses every call the driver refuses (the rules at the top
 * of backend.h), counts calls per handle, and, for sim, adds the modeled cost of each call.
 * With no physical hooks it is the sim backend: addresses come from a counter in a fake 48-bit
 * address space and nothing is ever dereferenced. host.c passes hooks (memfd, mmap, mprotect)
 * that the engine calls once a call has passed the rules, so both backends refuse exactly the
 * same things.
 *
 * Traces of a million events replay through sim, so every lookup is hashed or logarithmic:
 * chunks sit in an open-addressing hash keyed by handle; reservations and mappings in two
 * treaps keyed by start address, which answer "which reservation holds this address" and "does
 * anything overlap" as well as exact lookups.
 *
 * Locking: one pthread mutex per backend guards all of its state, including counters and
 * streams; the physical hooks run with it held, so a check and the action it permits are one
 * atomic step for other threads. Event objects are owned by the caller; only their stream's
 * state is shared.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"

/* ---------------------------------------------------------------- engine interface */

#include "backend/engine.h"

/* ---------------------------------------------------------------- state */

#define SIM_DEFAULT_GRANULARITY_BYTES ((size_t)2 << 20)
#define SIM_DEFAULT_CAPACITY_BYTES ((size_t)80 << 30)
/* Fake addresses start well above zero (so that no small integer looks like a pointer) and
 * stay below 2^48, like a real user-space address. */
#define SIM_VA_BASE ((uintptr_t)1 << 44)
#define SIM_VA_LIMIT ((uintptr_t)1 << 48)

typedef struct range_node {
    uintptr_t addr;
    size_t bytes;
    vms_handle handle; /* mappings: the chunk mapped here; reservations: 0 */
    uint64_t prio;
    struct range_node *left, *right;
} range_node;

typedef struct chunk_slot {
    vms_handle handle; /* 0: empty slot */
    size_t bytes;
    uint64_t payload;
    uint64_t map_count;
} chunk_slot;

typedef struct stream_state {
    vms_stream stream;
    uint64_t recorded, completed;
    bool held;
} stream_state;

/* An event remembers its stream by index: streams are never removed, so the index stays valid
 * while the array grows. */
typedef struct sim_event {
    size_t stream_index;
    uint64_t sequence;
} sim_event;

typedef struct sim_engine {
    vms_backend base;
    vms_backend_ops ops; /* per instance: one implementation serves "host" and "sim" by name */
    pthread_mutex_t mu;
    size_t granularity_bytes;
    size_t capacity_bytes; /* 0: unlimited */
    size_t unlimited_total_bytes;
    size_t used_bytes;
    bool model_costs;
    sim_phys phys;

    chunk_slot *chunks; /* power-of-two capacity, at most half full */
    size_t chunk_cap, chunk_count;
    vms_handle next_handle;

    range_node *reservations, *mappings;
    uint64_t prio_state;
    uintptr_t next_va;

    stream_state *streams;
    size_t stream_count, stream_cap;

    vms_backend_counters counters;
} sim_engine;

static sim_engine *engine_of(vms_backend *b) {
    return (sim_engine *)b;
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void cost_add(sim_engine *e, vms_cost_kind kind, size_t bytes) {
    if (e->model_costs) e->counters.modeled_seconds += vms_cost_seconds(kind, bytes);
}

/* ---------------------------------------------------------------- treap of ranges */

/* Priorities are pseudo-random, so the expected depth is logarithmic whatever order addresses
 * arrive in (the sim's counter hands them out in increasing order, the worst case for a plain
 * binary tree). */

static void tree_split(range_node *t, uintptr_t key, range_node **lt, range_node **ge) {
    if (!t) {
        *lt = *ge = NULL;
    } else if (t->addr < key) {
        tree_split(t->right, key, &t->right, ge);
        *lt = t;
    } else {
        tree_split(t->left, key, lt, &t->left);
        *ge = t;
    }
}

static range_node *tree_merge(range_node *l, range_node *r) {
    if (!l) return r;
    if (!r) return l;
    if (l->prio > r->prio) {
        l->right = tree_merge(l->right, r);
        return l;
    }
    r->left = tree_merge(l, r->left);
    return r;
}

static range_node *tree_insert(range_node *t, range_node *n) {
    if (!t) return n;
    if (n->prio > t->prio) {
        tree_split(t, n->addr, &n->left, &n->right);
        return n;
    }
    if (n->addr < t->addr)
        t->left = tree_insert(t->left, n);
    else
        t->right = tree_insert(t->right, n);
    return t;
}

static range_node *tree_remove(range_node **root, uintptr_t key) {
    range_node **link = root;
    while (*link && (*link)->addr != key)
        link = key < (*link)->addr ? &(*link)->left : &(*link)->right;
    range_node *n = *link;
    if (n) *link = tree_merge(n->left, n->right);
    return n;
}

static range_node *tree_find(range_node *t, uintptr_t key) {
    while (t && t->addr != key)
        t = key < t->addr ? t->left : t->right;
    return t;
}

/* The node with the greatest start <= key. */
static range_node *tree_floor(range_node *t, uintptr_t key) {
    range_node *best = NULL;
    while (t) {
        if (t->addr <= key) {
            best = t;
            t = t->right;
        } else {
            t = t->left;
        }
    }
    return best;
}

/* The node with the smallest start >= key. */
static range_node *tree_ceil(range_node *t, uintptr_t key) {
    range_node *best = NULL;
    while (t) {
        if (t->addr >= key) {
            best = t;
            t = t->left;
        } else {
            t = t->right;
        }
    }
    return best;
}

static range_node *node_new(sim_engine *e, uintptr_t addr, size_t bytes, vms_handle h) {
    range_node *n = malloc(sizeof *n);
    if (!n) return NULL;
    n->addr = addr;
    n->bytes = bytes;
    n->handle = h;
    n->prio = mix64(++e->prio_state);
    n->left = n->right = NULL;
    return n;
}

/* ---------------------------------------------------------------- chunk hash */

static size_t chunk_home(const sim_engine *e, vms_handle h) {
    return (size_t)mix64(h) & (e->chunk_cap - 1);
}

static chunk_slot *chunk_find(sim_engine *e, vms_handle h) {
    if (h == 0) return NULL;
    size_t mask = e->chunk_cap - 1;
    for (size_t i = chunk_home(e, h);; i = (i + 1) & mask) {
        if (e->chunks[i].handle == h) return &e->chunks[i];
        if (e->chunks[i].handle == 0) return NULL;
    }
}

static void chunk_place(sim_engine *e, const chunk_slot *s) {
    size_t mask = e->chunk_cap - 1, i = chunk_home(e, s->handle);
    while (e->chunks[i].handle)
        i = (i + 1) & mask;
    e->chunks[i] = *s;
}

/* Keeps the table at most half full so that probes stay short. */
static bool chunk_reserve_slot(sim_engine *e) {
    if ((e->chunk_count + 1) * 2 <= e->chunk_cap) return true;
    size_t old_cap = e->chunk_cap;
    chunk_slot *old = e->chunks;
    chunk_slot *fresh = calloc(old_cap * 2, sizeof *fresh);
    if (!fresh) return false;
    e->chunks = fresh;
    e->chunk_cap = old_cap * 2;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].handle) chunk_place(e, &old[i]);
    free(old);
    return true;
}

/* Backward-shift deletion: no tombstones, so lookups never slow down after many releases. */
static void chunk_remove(sim_engine *e, chunk_slot *s) {
    size_t mask = e->chunk_cap - 1, hole = (size_t)(s - e->chunks), j = hole;
    for (;;) {
        j = (j + 1) & mask;
        if (!e->chunks[j].handle) break;
        size_t home = chunk_home(e, e->chunks[j].handle);
        /* The entry at j may fill the hole unless its home lies cyclically in (hole, j]. */
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            e->chunks[hole] = e->chunks[j];
            hole = j;
        }
    }
    e->chunks[hole].handle = 0;
    e->chunk_count--;
}

/* ---------------------------------------------------------------- checks shared by calls */

static bool aligned(const sim_engine *e, uintptr_t v) {
    return (v & (e->granularity_bytes - 1)) == 0;
}

/* A chunk or reservation must be a positive multiple of the granularity. If not, says so for
 * the call op and returns false. */
static bool size_ok(const sim_engine *e, const char *op, size_t bytes) {
    if (bytes != 0 && aligned(e, bytes)) return true;
    backend_set_error("%s: %s of %zu bytes: not a positive multiple of the granularity (%zu)",
                      e->ops.name, op, bytes, e->granularity_bytes);
    return false;
}

/* A range must be non-empty, granularity-aligned at both ends, and not wrap around. If not,
 * says so for the call op and returns false. */
static bool range_ok(const sim_engine *e, const char *op, uintptr_t addr, size_t bytes) {
    if (bytes != 0 && aligned(e, addr) && aligned(e, bytes) && addr + bytes > addr) return true;
    backend_set_error("%s: %s at %#" PRIxPTR " of %zu bytes: not aligned to the granularity (%zu)",
                      e->ops.name, op, addr, bytes, e->granularity_bytes);
    return false;
}

/* ---------------------------------------------------------------- operations */

static vms_status sim_granularity(vms_backend *b, size_t *bytes) {
    if (!bytes) return VMS_EINVAL;
    *bytes = engine_of(b)->granularity_bytes; /* constant after create: no lock */
    return VMS_OK;
}

static vms_status sim_mem_info(vms_backend *b, size_t *free_bytes, size_t *total_bytes) {
    sim_engine *e = engine_of(b);
    pthread_mutex_lock(&e->mu);
    size_t total = e->capacity_bytes ? e->capacity_bytes : e->unlimited_total_bytes;
    size_t free_ = total > e->used_bytes ? total - e->used_bytes : 0;
    pthread_mutex_unlock(&e->mu);
    if (free_bytes) *free_bytes = free_;
    if (total_bytes) *total_bytes = total;
    return VMS_OK;
}

static vms_status sim_chunk_create(vms_backend *b, size_t bytes, vms_handle *out) {
    sim_engine *e = engine_of(b);
    if (!out) return VMS_EINVAL;
    if (!size_ok(e, "chunk_create", bytes)) return VMS_EINVAL;
    vms_status st = VMS_OK;
    pthread_mutex_lock(&e->mu);
    if (e->capacity_bytes &&
        (bytes > e->capacity_bytes || e->used_bytes > e->capacity_bytes - bytes)) {
        backend_set_error("%s: chunk_create of %zu bytes: out of memory (%zu of %zu bytes in use)",
                          e->ops.name, bytes, e->used_bytes, e->capacity_bytes);
        st = VMS_ENOMEM;
        goto done;
    }
    if (!chunk_reserve_slot(e)) {
        backend_set_error("%s: chunk_create: no host memory for bookkeeping", e->ops.name);
        st = VMS_ENOMEM_HOST;
        goto done;
    }
    chunk_slot s = {.handle = e->next_handle, .bytes = bytes};
    if (e->phys.chunk_create &&
        (st = e->phys.chunk_create(e->phys.ctx, bytes, &s.payload)) != VMS_OK)
        goto done;
    e->next_handle++;
    chunk_place(e, &s);
    e->chunk_count++;
    e->used_bytes += bytes;
    e->counters.create++;
    cost_add(e, VMS_COST_CREATE, bytes);
    *out = s.handle;
done:
    pthread_mutex_unlock(&e->mu);
    return st;
}

static vms_status sim_chunk_release(vms_backend *b, vms_handle h) {
    sim_engine *e = engine_of(b);
    vms_status st = VMS_OK;
    pthread_mutex_lock(&e->mu);
    chunk_slot *s = chunk_find(e, h);
    if (!s) {
        backend_set_error("%s: chunk_release of handle %" PRIu64 ": unknown or already released",
                          e->ops.name, h);
        st = VMS_EINVAL;
        goto done;
    }
    if (s->map_count) {
        backend_set_error("%s: chunk_release of handle %" PRIu64 ": still mapped at %" PRIu64
                          " address(es)",
                          e->ops.name, h, s->map_count);
        st = VMS_EINVAL;
        goto done;
    }
    if (e->phys.chunk_release &&
        (st = e->phys.chunk_release(e->phys.ctx, s->payload, s->bytes)) != VMS_OK)
        goto done;
    size_t bytes = s->bytes;
    chunk_remove(e, s);
    e->used_bytes -= bytes;
    e->counters.release++;
    cost_add(e, VMS_COST_RELEASE, bytes);
done:
    pthread_mutex_unlock(&e->mu);
    return st;
}

static uintptr_t align_up(uintptr_t v, size_t align) {
    return (v + align - 1) & ~(uintptr_t)(align - 1);
}

/* Fake addresses: a bump pointer, with one granule left unreserved after each range so that
 * no two reservations are ever contiguous (a core that strays past a range's end then lands in
 * no reservation and is refused). When the bump pointer reaches the top, the lowest gap that
 * fits is taken instead. Called with the mutex held. */
static bool fake_va_take(sim_engine *e, size_t bytes, size_t align, uintptr_t *out) {
    size_t guard = e->granularity_bytes;
    if (bytes > SIM_VA_LIMIT - SIM_VA_BASE) return false;
    uintptr_t a = align_up(e->next_va, align);
    if (a < SIM_VA_LIMIT && bytes <= SIM_VA_LIMIT - a) {
        e->next_va = a + bytes + guard;
        *out = a;
        return true;
    }
    a = align_up(SIM_VA_BASE, align);
    for (range_node *r = tree_ceil(e->reservations, SIM_VA_BASE); r;
         r = tree_ceil(e->reservations, r->addr + 1)) {
        if (a < r->addr && bytes + guard <= r->addr - a) break;
        a = align_up(r->addr + r->bytes + guard, align);
        if (a >= SIM_VA_LIMIT) return false;
    }
    if (a >= SIM_VA_LIMIT || bytes > SIM_VA_LIMIT - a) return false;
    *out = a;
    return true;
}

static vms_status sim_va_reserve(vms_backend *b, size_t bytes, size_t align_bytes, uintptr_t *out) {
    sim_engine *e = engine_of(b);
    if (!out) return VMS_EINVAL;
    if (!size_ok(e, "va_reserve", bytes)) return VMS_EINVAL;
    if (align_bytes & (align_bytes - 1)) {
        backend_set_error("%s: va_reserve: alignment %zu is not a power of two", e->ops.name,
                          align_bytes);
        return VMS_EINVAL;
    }
    /* Like the driver: 0 means the default, and nothing is aligned below the granularity. */
    if (align_bytes < e->granularity_bytes) align_bytes = e->granularity_bytes;
    vms_status st = VMS_OK;
    pthread_mutex_lock(&e->mu);
    range_node *n = node_new(e, 0, bytes, 0);
    if (!n) {
        backend_set_error("%s: va_reserve: no host memory for bookkeeping", e->ops.name);
        st = VMS_ENOMEM_HOST;
        goto done;
    }
    if (e->phys.va_reserve) {
        st = e->phys.va_reserve(e->phys.ctx, bytes, align_bytes, &n->addr);
    } else if (!fake_va_take(e, bytes, align_bytes, &n->addr)) {
        backend_set_error("%s: va_reserve of %zu bytes: address space exhausted", e->ops.name,
                          bytes);
        st = VMS_ENOMEM;
    }
    if (st != VMS_OK) {
        free(n);
        goto done;
    }
    e->reservations = tree_insert(e->reservations, n);
    e->counters.reserve++;
    cost_add(e, VMS_COST_RESERVE, bytes);
    *out = n->addr;
done:
    pthread_mutex_unlock(&e->mu);
    return st;
}

static vms_status sim_va_free(vms_backend *b, uintptr_t addr, size_t bytes) {
    sim_engine *e = engine_of(b);
    vms_status st = VMS_EINVAL;
    pthread_mutex_lock(&e->mu);
    range_node *r = tree_find(e->reservations, addr);
    if (!r || r->bytes != bytes) {
        backend_set_error("%s: va_free at %#" PRIxPTR " of %zu bytes: not a reserved range",
                          e->ops.name, addr, bytes);
        goto done;
    }
    range_node *m = tree_ceil(e->mappings, addr);
    if (m && m->addr - addr < bytes) {
        backend_set_error("%s: va_free at %#" PRIxPTR ": still mapped at %#" PRIxPTR, e->ops.name,
                          addr, m->addr);
        goto done;
    }
    if (e->phys.va_free && (st = e->phys.va_free(e->phys.ctx, addr, bytes)) != VMS_OK) goto done;
    free(tree_remove(&e->reservations, addr));
    e->counters.address_free++;
    cost_add(e, VMS_COST_ADDRESS_FREE, bytes);
    st = VMS_OK;
done:
    pthread_mutex_unlock(&e->mu);
    return st;
}

static vms_status sim_map(vms_backend *b, uintptr_t addr, size_t bytes, vms_handle h) {
    sim_engine *e = engine_of(b);
    if (!range_ok(e, "map", addr, bytes)) return VMS_EINVAL;
    vms_status st = VMS_EINVAL;
    pthread_mutex_lock(&e->mu);
    chunk_slot *s = chunk_find(e, h);
    if (!s) {
        backend_set_error("%s: map of handle %" PRIu64 ": unknown or released", e->ops.name, h);
        goto done;
    }
    if (s->bytes != bytes) {
        backend_set_error("%s: map of handle %" PRIu64 " (%zu bytes) with %zu bytes: a chunk is "
                          "mapped whole or not at all",
                          e->ops.name, h, s->bytes, bytes);
        goto done;
    }
    range_node *r = tree_floor(e->reservations, addr);
    if (!r || addr - r->addr >= r->bytes || bytes > r->bytes - (addr - r->addr)) {
        backend_set_error("%s: map at %#" PRIxPTR " of %zu bytes: not inside one reserved range",
                          e->ops.name, addr, bytes);
        goto done;
    }
    /* Mappings are disjoint, so only the last one starting inside the new range can reach it. */
    range_node *m = tree_floor(e->mappings, addr + bytes - 1);
    if (m && m->addr + m->bytes > addr) {
        backend_set_error("%s: map at %#" PRIxPTR
                          " of %zu bytes: overlaps the mapping at %#" PRIxPTR,
                          e->ops.name, addr, bytes, m->addr);
        goto done;
    }
    range_node *n = node_new(e, addr, bytes, h);
    if (!n) {
        backend_set_error("%s: map: no host memory for bookkeeping", e->ops.name);
        st = VMS_ENOMEM_HOST;
        goto done;
    }
    if (e->phys.map && (st = e->phys.map(e->phys.ctx, addr, bytes, s->payload)) != VMS_OK) {
        free(n);
        goto done;
    }
    e->mappings = tree_insert(e->mappings, n);
    s->map_count++;
    e->counters.map++;
    cost_add(e, VMS_COST_MAP, bytes);
    st = VMS_OK;
done:
    pthread_mutex_unlock(&e->mu);
    return st;
}

static vms_status sim_unmap(vms_backend *b, uintptr_t addr, size_t bytes) {
    sim_engine *e = engine_of(b);
    vms_status st = VMS_EINVAL;
    pthread_mutex_lock(&e->mu);
    range_node *m = tree_find(e->mappings, addr);
    if (!m || m->bytes != bytes) {
        backend_set_error("%s: unmap at %#" PRIxPTR " of %zu bytes: not exactly one mapping",
                          e->ops.name, addr, bytes);
        goto done;
    }
    if (e->phys.unmap && (st = e->phys.unmap(e->phys.ctx, addr, bytes)) != VMS_OK) goto done;
    chunk_slot *s = chunk_find(e, m->handle);
    if (s) s->map_count--; /* always found: release refuses mapped chunks */
    free(tree_remove(&e->mappings, addr));
    e->counters.unmap++;
    cost_add(e, VMS_COST_UNMAP, bytes);
    st = VMS_OK;
done:
    pthread_mutex_unlock(&e->mu);
    return st;
}

static vms_status sim_set_access(vms_backend *b, uintptr_t addr, size_t bytes) {
    sim_engine *e = engine_of(b);
    if (!range_ok(e, "set_access", addr, bytes)) return VMS_EINVAL;
    vms_status st = VMS_EINVAL;
    pthread_mutex_lock(&e->mu);
    /* Check the whole range before touching anything, then count per mapping: the driver's
     * cost is per mapped handle, not per call. */
    uintptr_t end = addr + bytes;
    uint64_t calls = 0;
    double seconds = 0.0;
    for (uintptr_t cur = addr; cur < end;) {
        range_node *m = tree_find(e->mappings, cur);
        if (!m || m->bytes > end - cur) {
            backend_set_error("%s: set_access at %#" PRIxPTR " of %zu bytes: %s at %#" PRIxPTR,
                              e->ops.name, addr, bytes,
                              m ? "the range ends inside a mapping" : "no mapping starts", cur);
            goto done;
        }
        calls++;
        if (e->model_costs) seconds += vms_cost_seconds(VMS_COST_SET_ACCESS, m->bytes);
        cur += m->bytes;
    }
    if (e->phys.set_access && (st = e->phys.set_access(e->phys.ctx, addr, bytes)) != VMS_OK)
        goto done;
    e->counters.set_access += calls;
    e->counters.modeled_seconds += seconds;
    st = VMS_OK;
done:
    pthread_mutex_unlock(&e->mu);
    return st;
}

/* ---------------------------------------------------------------- streams and events */

/* Streams are few (a handful per process), so a linear search beats a hash here. Called with
 * the mutex held; returns the index or SIZE_MAX when out of host memory. */
static size_t stream_index(sim_engine *e, vms_stream stream) {
    for (size_t i = 0; i < e->stream_count; i++)
        if (e->streams[i].stream == stream) return i;
    if (e->stream_count == e->stream_cap) {
        size_t cap = e->stream_cap ? e->stream_cap * 2 : 8;
        stream_state *fresh = realloc(e->streams, cap * sizeof *fresh);
        if (!fresh) return SIZE_MAX;
        e->streams = fresh;
        e->stream_cap = cap;
    }
    e->streams[e->stream_count] = (stream_state){.stream = stream};
    return e->stream_count++;
}

static vms_status sim_event_record(vms_backend *b, vms_stream stream, vms_event *out) {
    sim_engine *e = engine_of(b);
    if (!out) return VMS_EINVAL;
    sim_event *ev = malloc(sizeof *ev);
    if (!ev) {
        backend_set_error("%s: event_record: no host memory", e->ops.name);
        return VMS_ENOMEM_HOST;
    }
    pthread_mutex_lock(&e->mu);
    size_t i = stream_index(e, stream);
    if (i == SIZE_MAX) {
        pthread_mutex_unlock(&e->mu);
        free(ev);
        backend_set_error("%s: event_record: no host memory", e->ops.name);
        return VMS_ENOMEM_HOST;
    }
    stream_state *s = &e->streams[i];
    ev->stream_index = i;
    ev->sequence = ++s->recorded;
    /* An unheld stream has no queued work: what was recorded is already done. */
    if (!s->held) s->completed = s->recorded;
    e->counters.event_record++;
    pthread_mutex_unlock(&e->mu);
    *out = ev;
    return VMS_OK;
}

static vms_status sim_event_query(vms_backend *b, vms_event ev, bool *done) {
    sim_engine *e = engine_of(b);
    if (!ev || !done) return VMS_EINVAL;
    const sim_event *se = ev;
    pthread_mutex_lock(&e->mu);
    *done = e->streams[se->stream_index].completed >= se->sequence;
    e->counters.event_query++;
    pthread_mutex_unlock(&e->mu);
    return VMS_OK;
}

static vms_status sim_event_sync(vms_backend *b, vms_event ev) {
    sim_engine *e = engine_of(b);
    if (!ev) return VMS_EINVAL;
    const sim_event *se = ev;
    pthread_mutex_lock(&e->mu);
    bool done = e->streams[se->stream_index].completed >= se->sequence;
    e->counters.event_sync++;
    pthread_mutex_unlock(&e->mu);
    if (done) return VMS_OK;
    /* Nothing but the test that holds the stream can complete it; waiting would deadlock. */
    backend_set_error("%s: event on held stream cannot complete", e->ops.name);
    return VMS_EBACKEND;
}

static vms_status sim_device_sync(vms_backend *b) {
    sim_engine *e = engine_of(b);
    vms_status st = VMS_OK;
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->stream_count; i++) {
        /* A held stream stands for work still running: the device is not idle. */
        if (e->streams[i].held) {
            st = VMS_EBACKEND;
            continue;
        }
        e->streams[i].completed = e->streams[i].recorded;
    }
    e->counters.event_sync++;
    pthread_mutex_unlock(&e->mu);
    if (st != VMS_OK)
        backend_set_error("%s: device_sync: a held stream cannot complete", e->ops.name);
    return st;
}

static void sim_event_destroy(vms_backend *b, vms_event ev) {
    (void)b;
    free(ev);
}

static vms_status sim_stream_check(vms_backend *b, vms_stream stream) {
    (void)b;
    (void)stream;
    return VMS_OK;
}

static vms_status sim_stream_hold(vms_backend *b, vms_stream stream, int held) {
    sim_engine *e = engine_of(b);
    pthread_mutex_lock(&e->mu);
    size_t i = stream_index(e, stream);
    if (i == SIZE_MAX) {
        pthread_mutex_unlock(&e->mu);
        backend_set_error("%s: stream_hold: no host memory", e->ops.name);
        return VMS_ENOMEM_HOST;
    }
    e->streams[i].held = held != 0;
    if (!held) e->streams[i].completed = e->streams[i].recorded;
    pthread_mutex_unlock(&e->mu);
    return VMS_OK;
}

static vms_status sim_counters(const vms_backend *b, vms_backend_counters *out) {
    /* The backend is never const underneath (it was allocated by create); the lock must be
     * taken so that a reader never sees a half-updated set. */
    sim_engine *e = engine_of((vms_backend *)b);
    if (!out) return VMS_EINVAL;
    pthread_mutex_lock(&e->mu);
    *out = e->counters;
    pthread_mutex_unlock(&e->mu);
    return VMS_OK;
}

/* ---------------------------------------------------------------- lifetime */

/* Post-order, so children are read before their parent is freed; depth is logarithmic. */
static void tree_destroy(sim_engine *e, range_node *t, bool reservations) {
    if (!t) return;
    tree_destroy(e, t->left, reservations);
    tree_destroy(e, t->right, reservations);
    /* Freeing a reservation takes its mappings with it (host: munmap), so mappings need no
     * hook of their own. */
    if (reservations && e->phys.va_free) e->phys.va_free(e->phys.ctx, t->addr, t->bytes);
    free(t);
}

static void sim_destroy(vms_backend *b) {
    sim_engine *e = engine_of(b);
    tree_destroy(e, e->mappings, false);
    tree_destroy(e, e->reservations, true);
    for (size_t i = 0; i < e->chunk_cap; i++)
        if (e->chunks[i].handle && e->phys.chunk_release)
            e->phys.chunk_release(e->phys.ctx, e->chunks[i].payload, e->chunks[i].bytes);
    if (e->phys.destroy) e->phys.destroy(e->phys.ctx);
    free(e->chunks);
    free(e->streams);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

static const vms_backend_ops sim_ops_template = {
    .name = "sim",
    .granularity = sim_granularity,
    .mem_info = sim_mem_info,
    .chunk_create = sim_chunk_create,
    .chunk_release = sim_chunk_release,
    .va_reserve = sim_va_reserve,
    .va_free = sim_va_free,
    .map = sim_map,
    .unmap = sim_unmap,
    .set_access = sim_set_access,
    .event_record = sim_event_record,
    .event_query = sim_event_query,
    .event_sync = sim_event_sync,
    .event_destroy = sim_event_destroy,
    .device_sync = sim_device_sync,
    .stream_check = sim_stream_check,
    .stream_hold = sim_stream_hold,
    .counters = sim_counters,
    .destroy = sim_destroy,
};

/* On failure the caller keeps ownership of phys->ctx (nothing was built on it). */
vms_status sim_engine_create(const char *name, size_t granularity_bytes, size_t capacity_bytes,
                             size_t unlimited_total_bytes, bool model_costs, const sim_phys *phys,
                             vms_backend **out) {
    if (!out || granularity_bytes == 0 || (granularity_bytes & (granularity_bytes - 1))) {
        backend_set_error("%s: granularity %zu is not a power of two", name, granularity_bytes);
        return VMS_EINVAL;
    }
    sim_engine *e = calloc(1, sizeof *e);
    if (!e || !(e->chunks = calloc(64, sizeof *e->chunks))) {
        free(e);
        backend_set_error("%s: no host memory for the backend", name);
        return VMS_ENOMEM_HOST;
    }
    if (pthread_mutex_init(&e->mu, NULL) != 0) {
        free(e->chunks);
        free(e);
        backend_set_error("%s: pthread_mutex_init failed", name);
        return VMS_EBACKEND;
    }
    e->ops = sim_ops_template;
    e->ops.name = name;
    e->base.ops = &e->ops;
    e->chunk_cap = 64;
    e->next_handle = 1;
    e->granularity_bytes = granularity_bytes;
    e->capacity_bytes = capacity_bytes;
    e->unlimited_total_bytes = unlimited_total_bytes;
    e->model_costs = model_costs;
    e->next_va = SIM_VA_BASE;
    if (phys) e->phys = *phys;
    *out = &e->base;
    return VMS_OK;
}

VMS_API vms_status vms_backend_sim_create(size_t granularity_bytes, size_t capacity_bytes,
                                          vms_backend **out) {
    if (!out) {
        backend_set_error("sim: no output");
        return VMS_EINVAL;
    }
    if (granularity_bytes == 0) granularity_bytes = SIM_DEFAULT_GRANULARITY_BYTES;
    if (capacity_bytes == 0) capacity_bytes = SIM_DEFAULT_CAPACITY_BYTES;
    return sim_engine_create("sim", granularity_bytes, capacity_bytes, capacity_bytes, true, NULL,
                             out);
}
