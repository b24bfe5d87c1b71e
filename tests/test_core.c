/* Unit tests of the core's internals, through src/internal.h: the best-fit treap (index_*) and
 * the address-ordered first-fit index (addr_index_*) against plain reference models, the
 * pointer map, option parsing and resolution (VMSTITCH_* variables, GMLake's aliases
 * vmmDefragment/fragLimit/reuseLimit/defragLevel/autoGC, bad values falling back to the default
 * with exactly one warning line, explicit fields winning over the environment), and the block
 * model of a live allocator on the sim backend: splitting and merging, the small pool's first
 * fit, chunk ownership while stitched, the LRU order of cached stitched ranges, and vms_check
 * noticing corruption (so that its zero elsewhere means something).
 *
 * Every test saves and restores the option variables it touches, and creates and destroys its
 * own allocators. Single-threaded.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "option_env.h"
#include "test.h"
#include "test_config.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)

/* ---------------------------------------------------------------- index reference helpers */

static block *blocks_new(size_t n) {
    return calloc(n, sizeof(block));
}

/* In-order walk of the best-fit treap: keys strictly increasing by (size, addr), heap order
 * on prio. Returns the number of nodes, or (size_t)-1 on a violation. */
static size_t treap_walk(const block *t, const block **prev, size_t *bad) {
    if (!t) return 0;
    size_t n = treap_walk(t->left, prev, bad);
    if (*prev && ((*prev)->size_bytes > t->size_bytes ||
                  ((*prev)->size_bytes == t->size_bytes && (*prev)->addr >= t->addr)))
        (*bad)++;
    if ((t->left && t->left->prio > t->prio) || (t->right && t->right->prio > t->prio)) (*bad)++;
    *prev = t;
    return n + 1 + treap_walk(t->right, prev, bad);
}

/* In-order walk of the address index: strictly increasing addresses, correct sub_max. */
static size_t atree_walk(const block *t, uintptr_t *prev_addr, size_t *bad) {
    if (!t) return 0;
    size_t n = atree_walk(t->left, prev_addr, bad);
    if (*prev_addr && *prev_addr >= t->addr) (*bad)++;
    *prev_addr = t->addr;
    size_t m = t->size_bytes;
    if (t->left && t->left->sub_max_bytes > m) m = t->left->sub_max_bytes;
    if (t->right && t->right->sub_max_bytes > m) m = t->right->sub_max_bytes;
    if (m != t->sub_max_bytes) (*bad)++;
    if ((t->left && t->left->prio > t->prio) || (t->right && t->right->prio > t->prio)) (*bad)++;
    return n + 1 + atree_walk(t->right, prev_addr, bad);
}

/* Reference lower bound: the smallest (size, addr) >= (size_bytes, addr_after) among members. */
static const block *ref_lower_bound(const block *bs, const bool *in, size_t n, size_t size_bytes,
                                    uintptr_t addr_after) {
    const block *best = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!in[i]) continue;
        const block *b = &bs[i];
        if (b->size_bytes < size_bytes || (b->size_bytes == size_bytes && b->addr < addr_after))
            continue;
        if (!best || b->size_bytes < best->size_bytes ||
            (b->size_bytes == best->size_bytes && b->addr < best->addr))
            best = b;
    }
    return best;
}

TEST(core_index_best_fit_random) {
    enum { N = 1500 };
    block *bs = blocks_new(N);
    bool in[N] = {false};
    REQUIRE(bs);
    uint64_t rng = 11;
    for (size_t i = 0; i < N; i++) {
        bs[i].addr = (uintptr_t)(0x100000 + i * 0x10000);
        /* few distinct sizes, so ties by address are common */
        bs[i].size_bytes = (size_t)(1 + test_rand(&rng) % 40) * 512;
        bs[i].state = BLOCK_FREE;
    }
    block *root = NULL;
    size_t members = 0;
    for (int step = 0; step < 20000; step++) {
        size_t i = (size_t)(test_rand(&rng) % N);
        if (!in[i]) {
            index_insert(&root, &bs[i]);
            in[i] = true;
            members++;
        } else if (test_rand(&rng) % 2) {
            index_remove(&root, &bs[i]);
            in[i] = false;
            members--;
        }
        size_t want = (size_t)(test_rand(&rng) % 42) * 512;
        uintptr_t after =
            test_rand(&rng) % 3 ? 0 : (uintptr_t)(0x100000 + (test_rand(&rng) % N) * 0x10000);
        const block *got = index_lower_bound(root, want, after);
        const block *ref = ref_lower_bound(bs, in, N, want, after);
        if (got != ref) {
            CHECK(got == ref);
            break;
        }
        if (step % 1000 == 0) {
            size_t bad = 0;
            const block *prev = NULL;
            CHECK_EQ(treap_walk(root, &prev, &bad), members);
            CHECK_EQ(bad, 0);
            CHECK_EQ(index_count(root), members);
        }
    }
    /* Empty it in random order; the tree must stay valid throughout. */
    for (size_t i = 0; i < N; i++) {
        size_t j = (i * 7919) % N;
        if (in[j]) {
            index_remove(&root, &bs[j]);
            in[j] = false;
            members--;
        }
    }
    CHECK(root == NULL);
    CHECK_EQ(members, 0);
    free(bs);
}

TEST(core_index_best_fit_ties_and_scan) {
    block bs[6];
    memset(bs, 0, sizeof bs);
    size_t sizes[6] = {4096, 1024, 4096, 2048, 1024, 8192};
    uintptr_t addrs[6] = {0x5000, 0x9000, 0x1000, 0x3000, 0x2000, 0x7000};
    block *root = NULL;
    for (int i = 0; i < 6; i++) {
        bs[i].size_bytes = sizes[i];
        bs[i].addr = addrs[i];
        bs[i].state = BLOCK_FREE;
        index_insert(&root, &bs[i]);
    }
    /* Smallest that fits; among equal sizes the lowest address. */
    CHECK(index_lower_bound(root, 1000, 0) == &bs[4]);
    CHECK(index_lower_bound(root, 1024, 0) == &bs[4]);
    CHECK(index_lower_bound(root, 1025, 0) == &bs[3]);
    CHECK(index_lower_bound(root, 3000, 0) == &bs[2]);
    CHECK(index_lower_bound(root, 8192, 0) == &bs[5]);
    CHECK(index_lower_bound(root, 8193, 0) == NULL);
    /* The scan the allocator does when a candidate is unusable: (size, addr + 1) is next. */
    const block *b = index_lower_bound(root, 4096, 0);
    CHECK(b == &bs[2]);
    b = index_lower_bound(root, b->size_bytes, b->addr + 1);
    CHECK(b == &bs[0]);
    b = index_lower_bound(root, b->size_bytes, b->addr + 1);
    CHECK(b == &bs[5]);
    CHECK_EQ(index_count(root), 6);
    index_remove(&root, &bs[2]);
    CHECK(index_lower_bound(root, 3000, 0) == &bs[0]);
    /* Removing a block that is not in the tree changes nothing. */
    index_remove(&root, &bs[2]);
    CHECK_EQ(index_count(root), 5);
}

typedef struct reject_ctx {
    uintptr_t reject_below; /* blocks below this address are "unusable" */
    int calls;
} reject_ctx;

static bool reject_ok(const void *ctx, const block *b) {
    reject_ctx *r = (reject_ctx *)ctx;
    r->calls++;
    return b->addr >= r->reject_below;
}

static bool all_ok(const void *ctx, const block *b) {
    (void)ctx;
    (void)b;
    return true;
}

TEST(core_addr_index_first_fit_random) {
    enum { N = 1200 };
    block *bs = blocks_new(N);
    bool in[N] = {false};
    REQUIRE(bs);
    uint64_t rng = 5;
    for (size_t i = 0; i < N; i++) {
        bs[i].addr = (uintptr_t)(0x200000 + i * 0x8000);
        bs[i].size_bytes = (size_t)(1 + test_rand(&rng) % 64) * 512;
        bs[i].state = BLOCK_FREE;
    }
    block *root = NULL;
    size_t members = 0;
    for (int step = 0; step < 20000; step++) {
        size_t i = (size_t)(test_rand(&rng) % N);
        if (!in[i]) {
            addr_index_insert(&root, &bs[i]);
            in[i] = true;
            members++;
        } else if (test_rand(&rng) % 2) {
            addr_index_remove(&root, &bs[i]);
            in[i] = false;
            members--;
        }
        size_t want = (size_t)(test_rand(&rng) % 66) * 512;
        const block *ref = NULL;
        for (size_t k = 0; k < N && !ref; k++)
            if (in[k] && bs[k].size_bytes >= want) ref = &bs[k];
        const block *got = addr_index_first_fit(root, want, all_ok, NULL);
        if (got != ref) {
            CHECK(got == ref);
            break;
        }
        if (step % 1000 == 0) {
            size_t bad = 0;
            uintptr_t prev = 0;
            CHECK_EQ(atree_walk(root, &prev, &bad), members);
            CHECK_EQ(bad, 0);
            if (root) {
                size_t mx = 0;
                for (size_t k = 0; k < N; k++)
                    if (in[k] && bs[k].size_bytes > mx) mx = bs[k].size_bytes;
                CHECK_EQ(root->sub_max_bytes, mx);
            }
        }
    }
    for (size_t i = 0; i < N; i++)
        if (in[i]) addr_index_remove(&root, &bs[i]);
    CHECK(root == NULL);
    free(bs);
}

TEST(core_addr_index_first_fit_skips_unusable) {
    enum { N = 40 };
    block bs[N];
    memset(bs, 0, sizeof bs);
    block *root = NULL;
    for (int i = 0; i < N; i++) {
        bs[i].addr = (uintptr_t)(0x10000 * (i + 1));
        bs[i].size_bytes = (i % 4 == 3) ? 8192 : 1024;
        bs[i].state = BLOCK_FREE;
        addr_index_insert(&root, &bs[i]);
    }
    reject_ctx rc = {0, 0};
    /* lowest address that fits */
    CHECK(addr_index_first_fit(root, 512, reject_ok, &rc) == &bs[0]);
    CHECK(addr_index_first_fit(root, 2048, reject_ok, &rc) == &bs[3]);
    /* unusable blocks are skipped, in address order */
    rc.reject_below = bs[10].addr;
    CHECK(addr_index_first_fit(root, 512, reject_ok, &rc) == &bs[10]);
    CHECK(addr_index_first_fit(root, 2048, reject_ok, &rc) == &bs[11]);
    rc.reject_below = UINTPTR_MAX;
    rc.calls = 0;
    CHECK(addr_index_first_fit(root, 512, reject_ok, &rc) == NULL);
    CHECK(rc.calls <= N);
    CHECK(addr_index_first_fit(root, 8193, all_ok, NULL) == NULL);
    /* Removing the big blocks lowers the root's sub_max. */
    for (int i = 3; i < N; i += 4)
        addr_index_remove(&root, &bs[i]);
    CHECK_EQ(root->sub_max_bytes, 1024);
    CHECK(addr_index_first_fit(root, 2048, all_ok, NULL) == NULL);
}

/* ---------------------------------------------------------------- ptr_map */

TEST(core_ptr_map_random) {
    enum { N = 6000 };
    ptr_map m;
    REQUIRE(ptr_map_init(&m) == 0);
    uintptr_t *keys = calloc(N, sizeof *keys);
    bool *in = calloc(N, sizeof *in);
    REQUIRE(keys && in);
    uint64_t rng = 3;
    for (size_t i = 0; i < N; i++) {
        /* 512-aligned like real pointers, clustered like real arenas, all distinct */
        keys[i] = (uintptr_t)0x7f0000000000ull + (uintptr_t)i * 512 * (1 + (i % 3));
        keys[i] += (uintptr_t)(i % 3) * ((uintptr_t)1 << 36);
    }
    size_t count = 0;
    for (int step = 0; step < 60000; step++) {
        size_t i = (size_t)(test_rand(&rng) % N);
        block *val = (block *)(uintptr_t)(0x1000 + i * 16);
        int op = (int)(test_rand(&rng) % 3);
        if (op == 0) {
            REQUIRE(ptr_map_put(&m, keys[i], val) == 0);
            if (!in[i]) count++;
            in[i] = true;
        } else if (op == 1) {
            block *got = ptr_map_del(&m, keys[i]);
            CHECK(got == (in[i] ? val : NULL));
            if (in[i]) count--;
            in[i] = false;
        } else {
            block *got = ptr_map_get(&m, keys[i]);
            if (got != (in[i] ? val : NULL)) {
                CHECK(got == (in[i] ? val : NULL));
                break;
            }
        }
        if (m.count != count) {
            CHECK_EQ(m.count, count);
            break;
        }
    }
    /* every member still reachable after all the backward shifts */
    for (size_t i = 0; i < N; i++)
        CHECK(ptr_map_get(&m, keys[i]) == (in[i] ? (block *)(uintptr_t)(0x1000 + i * 16) : NULL));
    CHECK(m.cap >= 2 * m.count);
    /* 0 is the empty marker, never a key */
    CHECK(ptr_map_get(&m, 0) == NULL);
    CHECK(ptr_map_del(&m, 0) == NULL);
    /* overwriting keeps the count */
    size_t before = m.count;
    REQUIRE(ptr_map_put(&m, keys[0], (block *)(uintptr_t)0x42) == 0);
    REQUIRE(ptr_map_put(&m, keys[0], (block *)(uintptr_t)0x43) == 0);
    CHECK(ptr_map_get(&m, keys[0]) == (block *)(uintptr_t)0x43);
    CHECK_EQ(m.count, before + (in[0] ? 0 : 1));
    ptr_map_free(&m);
    free(keys);
    free(in);
}

TEST(core_ptr_map_dense_run_delete) {
    /* Consecutive 512 B keys land in long probe runs at high load: delete from the middle of
     * the runs and everything else must stay reachable. */
    ptr_map m;
    REQUIRE(ptr_map_init(&m) == 0);
    enum { N = 4000 };
    uintptr_t base = 0x10000000;
    for (size_t i = 0; i < N; i++)
        REQUIRE(ptr_map_put(&m, base + i * 512, (block *)(base + i)) == 0);
    for (size_t i = 0; i < N; i += 3)
        CHECK(ptr_map_del(&m, base + i * 512) == (block *)(base + i));
    for (size_t i = 0; i < N; i++) {
        block *want = i % 3 == 0 ? NULL : (block *)(base + i);
        if (ptr_map_get(&m, base + i * 512) != want) {
            CHECK(ptr_map_get(&m, base + i * 512) == want);
            break;
        }
    }
    ptr_map_free(&m);
}

/* ---------------------------------------------------------------- options */

/* stderr capture, to count warning lines */
typedef struct capture {
    int saved_fd;
    FILE *f;
} capture;

static int capture_begin(capture *c) {
    fflush(stderr);
    c->f = tmpfile();
    if (!c->f) return -1;
    c->saved_fd = dup(2);
    if (c->saved_fd < 0 || dup2(fileno(c->f), 2) < 0) {
        fclose(c->f);
        return -1;
    }
    return 0;
}

/* Restores stderr; returns the number of lines written, and the text in buf. */
static int capture_end(capture *c, char *buf, size_t cap) {
    fflush(stderr);
    dup2(c->saved_fd, 2);
    close(c->saved_fd);
    rewind(c->f);
    size_t n = fread(buf, 1, cap - 1, c->f);
    buf[n] = 0;
    fclose(c->f);
    int lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += buf[i] == '\n';
    return lines;
}

/* Resolves cfg (or all-unset) at granularity gran; returns warning lines; text in msg. */
static int resolve_counting(vms_config *cfg, size_t gran, char *msg, size_t cap) {
    capture c;
    if (capture_begin(&c) != 0) return -1;
    vms_config_resolve(cfg, gran);
    return capture_end(&c, msg, cap);
}

static vms_config unset_config(void) {
    vms_config c;
    vms_config_init(&c);
    return c;
}

TEST(core_config_init_and_defaults) {
    env_saved saved;
    env_save_clear(&saved);
    vms_config c;
    memset(&c, 0x5a, sizeof c);
    vms_config_init(&c);
    const int64_t *f = (const int64_t *)&c;
    for (size_t i = 0; i < sizeof c / sizeof(int64_t); i++)
        CHECK_EQ(f[i], VMS_UNSET);
    vms_config_init(NULL); /* no crash */
    vms_config_resolve(NULL, 0);

    char msg[512];
    CHECK_EQ(resolve_counting(&c, 2 * MIB, msg, sizeof msg), 0);
    for (size_t i = 0; i < sizeof c / sizeof(int64_t); i++)
        CHECK(f[i] != VMS_UNSET);
    /* The defaults the design fixes. */
    CHECK_EQ(c.small_chunk_bytes, 2 * MIB);
    CHECK_EQ(c.large_chunk_min_bytes, 2 * MIB);
    CHECK(c.large_chunk_max_bytes >= c.large_chunk_min_bytes);
    CHECK_EQ(c.large_chunk_max_bytes % (2 * MIB), 0);
    CHECK_EQ(c.small_request_bytes, 1 * MIB);
    CHECK_EQ(c.stitch_enable, 1);
    CHECK_EQ(c.reuse_limit, 10);
    CHECK_EQ(c.stitch_when, VMS_STITCH_BEFORE_GROW);
    CHECK(c.gc_threshold_bytes >= 0); /* 0: no limit */
    CHECK(c.gc_threshold_count >= 0);
    CHECK(c.stitch_min_bytes >= 0);
    CHECK_EQ(c.memory_limit_bytes, 0);
    CHECK_EQ(c.log_level, 1);
    CHECK_EQ(c.check_level, 0);
    /* Granularity-dependent defaults follow the granularity; 0 means 2 MiB. */
    vms_config c64 = unset_config();
    vms_config_resolve(&c64, 64 * KIB);
    CHECK_EQ(c64.small_chunk_bytes, 64 * KIB);
    CHECK_EQ(c64.large_chunk_min_bytes, 64 * KIB);
    vms_config c0 = unset_config();
    vms_config_resolve(&c0, 0);
    CHECK_EQ(c0.small_chunk_bytes, 2 * MIB);
    /* Resolving twice is a fixed point: resolved values are explicit fields. */
    vms_config again = c;
    CHECK_EQ(resolve_counting(&again, 2 * MIB, msg, sizeof msg), 0);
    CHECK(memcmp(&again, &c, sizeof c) == 0);
    env_restore(&saved);
}

TEST(core_config_env_values) {
    env_saved saved;
    env_save_clear(&saved);
    struct {
        const char *text;
        int64_t bytes;
    } forms[] = {
        {"123", 123},
        {"4K", 4 * 1024},
        {"4k", 4 * 1024},
        {"2MiB", 2 * 1048576},
        {"512mb", 512 * 1048576},
        {"1.5G", 3 * 512 * 1048576},
        {"3 MiB", 3 * 1048576},
        {"1T", (int64_t)1 << 40},
        {"4096B", 4096},
        {"0", 0},
    };
    char msg[512];
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        setenv("VMSTITCH_MEMORY_LIMIT", forms[i].text, 1);
        vms_config c = unset_config();
        CHECK_EQ(resolve_counting(&c, 2 * MIB, msg, sizeof msg), 0);
        if (c.memory_limit_bytes != forms[i].bytes) {
            fprintf(stderr, "    VMSTITCH_MEMORY_LIMIT=%s\n", forms[i].text);
            CHECK_EQ(c.memory_limit_bytes, forms[i].bytes);
        }
    }
    unsetenv("VMSTITCH_MEMORY_LIMIT");
    /* booleans and the stitch_when names */
    const char *yes[] = {"1", "true", "ON", "yes"}, *no[] = {"0", "false", "off", "No"};
    for (int i = 0; i < 4; i++) {
        vms_config c = unset_config();
        setenv("VMSTITCH_STITCH", yes[i], 1);
        vms_config_resolve(&c, 2 * MIB);
        CHECK_EQ(c.stitch_enable, 1);
        c = unset_config();
        setenv("VMSTITCH_STITCH", no[i], 1);
        vms_config_resolve(&c, 2 * MIB);
        CHECK_EQ(c.stitch_enable, 0);
    }
    unsetenv("VMSTITCH_STITCH");
    const char *when[][2] = {
        {"on_grow_fail", "1"}, {"ON_GROW_FAIL", "1"}, {"1", "1"}, {"before_grow", "0"}, {"0", "0"}};
    for (size_t i = 0; i < 5; i++) {
        vms_config c = unset_config();
        setenv("VMSTITCH_STITCH_WHEN", when[i][0], 1);
        vms_config_resolve(&c, 2 * MIB);
        CHECK_EQ(c.stitch_when, atoi(when[i][1]));
    }
    unsetenv("VMSTITCH_STITCH_WHEN");
    /* every variable reaches its field */
    setenv("VMSTITCH_SMALL_CHUNK", "4MiB", 1);
    setenv("VMSTITCH_LARGE_CHUNK_MIN", "4MiB", 1);
    setenv("VMSTITCH_LARGE_CHUNK_MAX", "32MiB", 1);
    setenv("VMSTITCH_SMALL_REQUEST", "256K", 1);
    setenv("VMSTITCH_STITCH_MIN", "64MiB", 1);
    setenv("VMSTITCH_REUSE_LIMIT", "3", 1);
    setenv("VMSTITCH_GC_THRESHOLD", "2G", 1);
    setenv("VMSTITCH_GC_COUNT", "17", 1);
    setenv("VMSTITCH_LOG_LEVEL", "2", 1);
    setenv("VMSTITCH_CHECK", "1", 1);
    vms_config c = unset_config();
    CHECK_EQ(resolve_counting(&c, 2 * MIB, msg, sizeof msg), 0);
    CHECK_EQ(c.small_chunk_bytes, 4 * MIB);
    CHECK_EQ(c.large_chunk_min_bytes, 4 * MIB);
    CHECK_EQ(c.large_chunk_max_bytes, 32 * MIB);
    CHECK_EQ(c.small_request_bytes, 256 * KIB);
    CHECK_EQ(c.stitch_min_bytes, 64 * MIB);
    CHECK_EQ(c.reuse_limit, 3);
    CHECK_EQ(c.gc_threshold_bytes, 2 * GIB);
    CHECK_EQ(c.gc_threshold_count, 17);
    CHECK_EQ(c.log_level, 2);
    CHECK_EQ(c.check_level, 1);
    env_restore(&saved);
}

TEST(core_config_gmlake_aliases) {
    env_saved saved;
    env_save_clear(&saved);
    setenv("vmmDefragment", "0", 1);
    setenv("fragLimit", "536870912", 1);
    setenv("reuseLimit", "7", 1);
    setenv("defragLevel", "1", 1);
    setenv("autoGC", "80", 1);
    char msg[512];
    vms_config c = unset_config();
    CHECK_EQ(resolve_counting(&c, 2 * MIB, msg, sizeof msg), 0);
    CHECK_EQ(c.stitch_enable, 0);
    CHECK_EQ(c.stitch_min_bytes, 512 * MIB);
    CHECK_EQ(c.reuse_limit, 7);
    CHECK_EQ(c.stitch_when, VMS_STITCH_ON_GROW_FAIL);
    CHECK_EQ(c.gc_threshold_count, 80);
    /* Our own names win over the aliases. */
    setenv("VMSTITCH_STITCH", "1", 1);
    setenv("VMSTITCH_STITCH_MIN", "1MiB", 1);
    setenv("VMSTITCH_REUSE_LIMIT", "2", 1);
    setenv("VMSTITCH_STITCH_WHEN", "before_grow", 1);
    setenv("VMSTITCH_GC_COUNT", "5", 1);
    c = unset_config();
    vms_config_resolve(&c, 2 * MIB);
    CHECK_EQ(c.stitch_enable, 1);
    CHECK_EQ(c.stitch_min_bytes, 1 * MIB);
    CHECK_EQ(c.reuse_limit, 2);
    CHECK_EQ(c.stitch_when, VMS_STITCH_BEFORE_GROW);
    CHECK_EQ(c.gc_threshold_count, 5);
    /* An empty variable counts as unset, so the alias applies. */
    setenv("VMSTITCH_STITCH", "", 1);
    c = unset_config();
    vms_config_resolve(&c, 2 * MIB);
    CHECK_EQ(c.stitch_enable, 0);
    env_restore(&saved);
}

TEST(core_config_explicit_fields_win) {
    env_saved saved;
    env_save_clear(&saved);
    setenv("VMSTITCH_STITCH", "0", 1);
    setenv("vmmDefragment", "0", 1);
    setenv("VMSTITCH_MEMORY_LIMIT", "1G", 1);
    setenv("VMSTITCH_SMALL_REQUEST", "64K", 1);
    setenv("autoGC", "3", 1);
    vms_config c = unset_config();
    c.stitch_enable = 1;
    c.memory_limit_bytes = 0; /* explicit 0 is a value, not "unset" */
    c.gc_threshold_count = 9;
    vms_config_resolve(&c, 2 * MIB);
    CHECK_EQ(c.stitch_enable, 1);
    CHECK_EQ(c.memory_limit_bytes, 0);
    CHECK_EQ(c.gc_threshold_count, 9);
    CHECK_EQ(c.small_request_bytes, 64 * KIB); /* unset field still from the environment */
    /* The allocator resolves the same way. */
    vms_backend *be = NULL;
    REQUIRE(vms_backend_sim_create(2 * MIB, 0, &be) == VMS_OK);
    vms_config c2 = unset_config();
    c2.stitch_enable = 1;
    vms_allocator *a = NULL;
    REQUIRE(vms_allocator_create(&c2, be, 0, &a) == VMS_OK);
    CHECK(a->cfg.stitch_enable);
    CHECK_EQ(a->cfg.memory_limit_bytes, 1 * GIB);
    CHECK_EQ(a->cfg.small_request_bytes, 64 * KIB);
    CHECK_EQ(a->cfg.gc_threshold_count, 3);
    vms_allocator_destroy(a);
    /* cfg NULL: everything from the environment */
    REQUIRE(vms_allocator_create(NULL, be, 0, &a) == VMS_OK);
    CHECK(!a->cfg.stitch_enable);
    CHECK_EQ(a->cfg.memory_limit_bytes, 1 * GIB);
    vms_allocator_destroy(a);
    vms_backend_destroy(be);
    env_restore(&saved);
}

TEST(core_config_bad_values_warn_once) {
    env_saved saved;
    env_save_clear(&saved);
    vms_config def = unset_config();
    vms_config_resolve(&def, 2 * MIB);
    struct {
        const char *name, *value;
        size_t offset;
    } bad[] = {
        {"VMSTITCH_MEMORY_LIMIT", "lots", offsetof(vms_config, memory_limit_bytes)},
        {"VMSTITCH_MEMORY_LIMIT", "12Q", offsetof(vms_config, memory_limit_bytes)},
        {"VMSTITCH_MEMORY_LIMIT", "-5", offsetof(vms_config, memory_limit_bytes)},
        {"VMSTITCH_MEMORY_LIMIT", "1e30", offsetof(vms_config, memory_limit_bytes)},
        {"VMSTITCH_SMALL_REQUEST", "128MiB", offsetof(vms_config, small_request_bytes)},
        {"VMSTITCH_STITCH", "maybe", offsetof(vms_config, stitch_enable)},
        {"VMSTITCH_STITCH", "2", offsetof(vms_config, stitch_enable)},
        {"VMSTITCH_STITCH_WHEN", "sometimes", offsetof(vms_config, stitch_when)},
        {"VMSTITCH_REUSE_LIMIT", "0", offsetof(vms_config, reuse_limit)},
        {"VMSTITCH_REUSE_LIMIT", "3x", offsetof(vms_config, reuse_limit)},
        {"VMSTITCH_GC_COUNT", "99999999999999999999999", offsetof(vms_config, gc_threshold_count)},
        {"VMSTITCH_SMALL_CHUNK", "0", offsetof(vms_config, small_chunk_bytes)},
        {"VMSTITCH_CHECK", "5", offsetof(vms_config, check_level)},
        {"VMSTITCH_LOG_LEVEL", "9", offsetof(vms_config, log_level)},
        {"vmmDefragment", "perhaps", offsetof(vms_config, stitch_enable)},
        {"fragLimit", "big", offsetof(vms_config, stitch_min_bytes)},
        {"reuseLimit", "-1", offsetof(vms_config, reuse_limit)},
        {"defragLevel", "7", offsetof(vms_config, stitch_when)},
        {"autoGC", "x", offsetof(vms_config, gc_threshold_count)},
    };
    char msg[1024];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv(bad[i].name, bad[i].value, 1);
        vms_config c = unset_config();
        int lines = resolve_counting(&c, 2 * MIB, msg, sizeof msg);
        int64_t got = *(int64_t *)((char *)&c + bad[i].offset);
        int64_t want = *(int64_t *)((char *)&def + bad[i].offset);
        if (lines != 1 || got != want || !strstr(msg, bad[i].name)) {
            fprintf(stderr, "    %s=%s: %d warning lines, value %lld (default %lld): %s\n",
                    bad[i].name, bad[i].value, lines, (long long)got, (long long)want, msg);
            CHECK_EQ(lines, 1);
            CHECK_EQ(got, want);
            CHECK(strstr(msg, bad[i].name) != NULL);
        }
        unsetenv(bad[i].name);
    }
    /* A bad explicit field: default and one warning too. */
    vms_config c = unset_config();
    c.reuse_limit = 0;
    CHECK_EQ(resolve_counting(&c, 2 * MIB, msg, sizeof msg), 1);
    CHECK_EQ(c.reuse_limit, def.reuse_limit);
    c = unset_config();
    c.small_request_bytes = -7;
    CHECK_EQ(resolve_counting(&c, 2 * MIB, msg, sizeof msg), 1);
    CHECK_EQ(c.small_request_bytes, def.small_request_bytes);
    /* An allocator made under a bad environment still works. */
    setenv("VMSTITCH_SMALL_REQUEST", "huge", 1);
    vms_backend *be = NULL;
    REQUIRE(vms_backend_sim_create(2 * MIB, 0, &be) == VMS_OK);
    vms_allocator *a = NULL;
    capture cap;
    REQUIRE(capture_begin(&cap) == 0);
    vms_status s = vms_allocator_create(NULL, be, 0, &a);
    int lines = capture_end(&cap, msg, sizeof msg);
    CHECK_EQ(s, VMS_OK);
    CHECK_EQ(lines, 1);
    if (a) {
        CHECK_EQ(a->cfg.small_request_bytes, 1 * MIB);
        void *p = NULL;
        CHECK_EQ(vms_malloc(a, 1000, NULL, &p), VMS_OK);
        CHECK_EQ(vms_free(a, p), VMS_OK);
        CHECK_EQ(vms_check(a), 0);
        vms_allocator_destroy(a);
    }
    vms_backend_destroy(be);
    env_restore(&saved);
}

TEST(core_config_log_level_silences_warnings) {
    env_saved saved;
    env_save_clear(&saved);
    char msg[512];
    setenv("VMSTITCH_MEMORY_LIMIT", "nonsense", 1);
    vms_config c = unset_config();
    c.log_level = 0;
    CHECK_EQ(resolve_counting(&c, 2 * MIB, msg, sizeof msg), 0);
    CHECK_EQ(c.memory_limit_bytes, 0);
    setenv("VMSTITCH_LOG_LEVEL", "0", 1);
    c = unset_config();
    CHECK_EQ(resolve_counting(&c, 2 * MIB, msg, sizeof msg), 0);
    CHECK_EQ(c.log_level, 0);
    env_restore(&saved);
}

TEST(core_config_chunk_sizes_rounded) {
    env_saved saved;
    env_save_clear(&saved);
    char msg[512];
    vms_config c = unset_config();
    c.small_chunk_bytes = (int64_t)(3 * MIB);
    CHECK_EQ(resolve_counting(&c, 2 * MIB, msg, sizeof msg), 1);
    CHECK_EQ(c.small_chunk_bytes, 4 * MIB);
    c = unset_config();
    c.large_chunk_min_bytes = (int64_t)(16 * MIB);
    c.large_chunk_max_bytes = (int64_t)(4 * MIB);
    CHECK_EQ(resolve_counting(&c, 2 * MIB, msg, sizeof msg), 1);
    CHECK_EQ(c.large_chunk_min_bytes, 16 * MIB);
    CHECK_EQ(c.large_chunk_max_bytes, 16 * MIB);
    c = unset_config();
    c.small_chunk_bytes = (int64_t)(2 * MIB);
    CHECK_EQ(resolve_counting(&c, 2 * MIB, msg, sizeof msg), 0);
    env_restore(&saved);
}

/* ---------------------------------------------------------------- block model on sim */

typedef struct core_env {
    vms_backend *be;
    vms_allocator *a;
    size_t g;
} core_env;

/* test_api's granule_config, with the allocator's own check after every operation */
static vms_config one_granule_config(size_t g) {
    vms_config c = test_chunk_config(g, g, 4096);
    c.check_level = 1;
    return c;
}

static int core_env_new(core_env *e, size_t g, const vms_config *cfg) {
    e->g = g;
    e->be = NULL;
    e->a = NULL;
    if (vms_backend_sim_create(g, 0, &e->be) != VMS_OK) return -1;
    if (vms_allocator_create(cfg, e->be, 0, &e->a) != VMS_OK) {
        vms_backend_destroy(e->be);
        return -1;
    }
    return 0;
}

static void core_env_free(core_env *e) {
    vms_allocator_destroy(e->a);
    vms_backend_destroy(e->be);
}

/* The range's blocks as "A2 F6 L1 H" (state letter, size in units), HOLE sizes omitted. */
static void range_desc(const range *r, size_t unit, char *buf, size_t cap) {
    static const char letter[] = {'F', 'A', 'P', 'L', 'H'};
    size_t len = 0;
    buf[0] = 0;
    for (const block *b = r->first; b && len + 24 < cap; b = b->next) {
        if (b->state == BLOCK_HOLE)
            len += (size_t)snprintf(buf + len, cap - len, "%sH", len ? " " : "");
        else
            len += (size_t)snprintf(buf + len, cap - len, "%s%c%zu", len ? " " : "",
                                    letter[b->state], b->size_bytes / unit);
    }
}

#define CHECK_DESC(r, unit, want)                                                                  \
    do {                                                                                           \
        char d_[512];                                                                              \
        range_desc((r), (unit), d_, sizeof d_);                                                    \
        if (strcmp(d_, (want)) != 0) {                                                             \
            fprintf(stderr, "    blocks: \"%s\", want \"%s\"\n", d_, (want));                      \
            CHECK(strcmp(d_, (want)) == 0);                                                        \
        }                                                                                          \
    } while (0)

TEST(core_split_and_merge) {
    const size_t g = 2 * MIB;
    vms_config cfg = one_granule_config(g);
    cfg.large_chunk_max_bytes = (int64_t)(8 * g);
    core_env e;
    REQUIRE(core_env_new(&e, g, &cfg) == 0);
    vms_allocator *a = e.a;
    range *ar = a->arena[POOL_LARGE];
    void *big, *p1, *p2, *p3;
    REQUIRE(vms_malloc(a, 8 * g, NULL, &big) == VMS_OK);
    CHECK_DESC(ar, g, "A8 H");
    CHECK_EQ(vms_free(a, big), VMS_OK);
    CHECK_DESC(ar, g, "F8 H");
    /* splits take the front of the free block */
    REQUIRE(vms_malloc(a, 2 * g, NULL, &p1) == VMS_OK);
    REQUIRE(vms_malloc(a, 2 * g, NULL, &p2) == VMS_OK);
    REQUIRE(vms_malloc(a, 2 * g - 512, NULL, &p3) == VMS_OK);
    CHECK(p1 == big);
    CHECK((char *)p2 == (char *)big + 2 * g);
    CHECK((char *)p3 == (char *)big + 4 * g);
    CHECK_DESC(ar, 512, "A8192 A8192 A8191 F8193 H");
    CHECK_EQ(index_count(a->index_root[POOL_LARGE]), 1);
    CHECK_EQ(vms_check(a), 0);
    /* a free between two live blocks stays alone */
    CHECK_EQ(vms_free(a, p2), VMS_OK);
    CHECK_DESC(ar, 512, "A8192 F8192 A8191 F8193 H");
    CHECK_EQ(index_count(a->index_root[POOL_LARGE]), 2);
    /* a free between two free blocks merges all three, keeping the lowest address */
    CHECK_EQ(vms_free(a, p3), VMS_OK);
    CHECK_DESC(ar, g, "A2 F6 H");
    CHECK_EQ(index_count(a->index_root[POOL_LARGE]), 1);
    CHECK(a->index_root[POOL_LARGE]->addr == (uintptr_t)p2);
    CHECK_EQ(vms_free(a, p1), VMS_OK);
    CHECK_DESC(ar, g, "F8 H");
    /* best fit: of free blocks 2g and 3g, a 2g request takes the 2g one even at a higher
     * address */
    void *q[4];
    REQUIRE(vms_malloc(a, 3 * g, NULL, &q[0]) == VMS_OK);
    REQUIRE(vms_malloc(a, 1 * g, NULL, &q[1]) == VMS_OK);
    REQUIRE(vms_malloc(a, 2 * g, NULL, &q[2]) == VMS_OK);
    REQUIRE(vms_malloc(a, 2 * g, NULL, &q[3]) == VMS_OK);
    CHECK_DESC(ar, g, "A3 A1 A2 A2 H");
    CHECK_EQ(vms_free(a, q[0]), VMS_OK);
    CHECK_EQ(vms_free(a, q[2]), VMS_OK);
    void *r;
    REQUIRE(vms_malloc(a, 2 * g, NULL, &r) == VMS_OK);
    CHECK(r == q[2]);
    CHECK_EQ(vms_check(a), 0);
    vms_stats st;
    vms_stats_get(a, &st);
    CHECK_EQ(st.reserved_bytes_current, 8 * g); /* all of it from the first chunk */
    core_env_free(&e);
}

TEST(core_small_pool_first_fit_by_address) {
    const size_t g = 2 * MIB;
    core_env e;
    vms_config cfg = one_granule_config(g);
    cfg.small_request_bytes = (int64_t)MIB;
    REQUIRE(core_env_new(&e, g, &cfg) == 0);
    vms_allocator *a = e.a;
    enum { N = 64 };
    void *p[N];
    for (int i = 0; i < N; i++)
        REQUIRE(vms_malloc(a, 64 * KIB, NULL, &p[i]) == VMS_OK);
    /* 64 x 64 KiB fill exactly two 2 MiB chunks of the small pool */
    vms_stats st;
    vms_stats_get(a, &st);
    CHECK_EQ(st.small_reserved_bytes_current, 2 * g);
    CHECK_EQ(st.large_reserved_bytes_current, 0);
    /* Free a high one and a low one: the next small request takes the lowest address, not
     * the most recently freed block. */
    CHECK_EQ(vms_free(a, p[50]), VMS_OK);
    CHECK_EQ(vms_free(a, p[3]), VMS_OK);
    void *q;
    REQUIRE(vms_malloc(a, 64 * KIB, NULL, &q) == VMS_OK);
    CHECK(q == p[3]);
    REQUIRE(vms_malloc(a, 1 * KIB, NULL, &q) == VMS_OK);
    CHECK(q == p[50]);
    CHECK_EQ(vms_check(a), 0);
    core_env_free(&e);
}

/* A large arena fragmented into one-granule chunks: `n` blocks of one granule, every odd one
 * freed, so the free chunks are not adjacent. */
static int fragment(vms_allocator *a, size_t g, void **p, int n) {
    for (int i = 0; i < n; i++)
        if (vms_malloc(a, g, NULL, &p[i]) != VMS_OK) return -1;
    for (int i = 1; i < n; i += 2)
        if (vms_free(a, p[i]) != VMS_OK) return -1;
    return 0;
}

TEST(core_stitch_moves_chunk_ownership) {
    const size_t g = 2 * MIB;
    vms_config cfg = one_granule_config(g);
    core_env e;
    REQUIRE(core_env_new(&e, g, &cfg) == 0);
    vms_allocator *a = e.a;
    void *p[8];
    REQUIRE(fragment(a, g, p, 8) == 0);
    range *ar = a->arena[POOL_LARGE];
    CHECK_DESC(ar, g, "A1 F1 A1 F1 A1 F1 A1 F1 H");
    void *s;
    REQUIRE(vms_malloc(a, 3 * g, NULL, &s) == VMS_OK);
    range *r = a->stitched;
    REQUIRE(r != NULL);
    CHECK(r->all_next == NULL);
    CHECK(r->kind == RANGE_STITCHED && r->pool == POOL_LARGE);
    CHECK_EQ(r->nslots, 3);
    CHECK(s == (void *)r->base);
    CHECK_DESC(r, g, "A3");
    /* three of the four free granules are now LENT in the arena; the fourth stays FREE */
    int lent = 0, freeb = 0;
    for (const block *b = ar->first; b; b = b->next) {
        lent += b->state == BLOCK_LENT;
        freeb += b->state == BLOCK_FREE;
    }
    CHECK_EQ(lent, 3);
    CHECK_EQ(freeb, 1);
    for (size_t i = 0; i < r->nslots; i++) {
        chunk *c = r->slots[i];
        CHECK(c->owner == r);
        CHECK_EQ(c->owner_addr, r->base + i * g);
        CHECK(c->home == ar);
        CHECK_EQ(c->stitch_refs, 1);
        CHECK_EQ(c->busy_bytes, g);
        CHECK(c->busy_bytes != 0);
        block *hb = range_block_at(ar, c->home_addr);
        CHECK(hb && hb->state == BLOCK_LENT);
    }
    CHECK(!r->in_lru);
    CHECK_EQ(vms_check(a), 0);
    /* freeing the stitched block sends the chunks home and caches the range */
    CHECK_EQ(vms_free(a, s), VMS_OK);
    CHECK(r->in_lru);
    CHECK(a->lru_head == r);
    CHECK_DESC(r, g, "L1 L1 L1");
    CHECK_DESC(ar, g, "A1 F1 A1 F1 A1 F1 A1 F1 H");
    for (size_t i = 0; i < r->nslots; i++) {
        CHECK(r->slots[i]->owner == ar);
        CHECK_EQ(r->slots[i]->stitch_refs, 1); /* still mapped there, lazily */
        CHECK_EQ(r->slots[i]->busy_bytes, 0);
    }
    CHECK_EQ(vms_check(a), 0);
    /* a request of the same size reuses the cached range at the same address */
    vms_stats st0, st1;
    vms_stats_get(a, &st0);
    void *s2;
    REQUIRE(vms_malloc(a, 3 * g, NULL, &s2) == VMS_OK);
    vms_stats_get(a, &st1);
    CHECK(s2 == s);
    CHECK_EQ(st1.stitch_reuses, st0.stitch_reuses + 1);
    CHECK_EQ(st1.backend_map, st0.backend_map);
    CHECK_EQ(st1.backend_set_access, st0.backend_set_access);
    CHECK(!r->in_lru);
    CHECK_EQ(vms_free(a, s2), VMS_OK);
    /* empty_cache unmaps it and releases the free chunks */
    CHECK_EQ(vms_empty_cache(a), VMS_OK);
    CHECK(a->stitched == NULL);
    CHECK_EQ(a->lru_count, 0);
    CHECK_DESC(ar, g, "A1 H A1 H A1 H A1 H");
    CHECK_EQ(vms_check(a), 0);
    for (int i = 0; i < 8; i += 2)
        CHECK_EQ(vms_free(a, p[i]), VMS_OK);
    CHECK_EQ(vms_check(a), 0);
    core_env_free(&e);
}

/* Chunks that lie side by side in the range that owns them move as one run (one isolation and
 * one merge), yet each stays a LENT block of its own where it is lent; chunks that do not
 * (granules 1 and 3) move in separate runs. */
TEST(core_stitch_moves_runs_of_chunks) {
    const size_t g = 2 * MIB;
    vms_config cfg = one_granule_config(g);
    core_env e;
    REQUIRE(core_env_new(&e, g, &cfg) == 0);
    vms_allocator *a = e.a;
    void *p[8];
    for (int i = 0; i < 8; i++)
        REQUIRE(vms_malloc(a, g, NULL, &p[i]) == VMS_OK);
    for (int i = 1; i <= 5; i++)
        if (i != 2) CHECK_EQ(vms_free(a, p[i]), VMS_OK);
    range *ar = a->arena[POOL_LARGE];
    CHECK_DESC(ar, g, "A1 F1 A1 F3 A1 A1 H");
    void *s;
    REQUIRE(vms_malloc(a, 4 * g, NULL, &s) == VMS_OK); /* no free block holds 4: a stitch */
    range *r = a->stitched;
    REQUIRE(r != NULL && r->nslots == 4);
    CHECK_DESC(r, g, "A4");
    /* a run of one (granule 1) and a run of three (granules 3-5): each lent chunk is its own
     * LENT block at home */
    CHECK_DESC(ar, g, "A1 L1 A1 L1 L1 L1 A1 A1 H");
    for (size_t i = 0; i < r->nslots; i++) {
        CHECK(r->slots[i]->owner == r);
        CHECK_EQ(r->slots[i]->owner_addr, r->base + i * g);
        CHECK_EQ(r->slots[i]->busy_bytes, g);
    }
    CHECK_EQ(r->slots[1]->home_addr + g, r->slots[2]->home_addr);
    CHECK_EQ(r->slots[2]->home_addr + g, r->slots[3]->home_addr);
    CHECK_EQ(vms_check(a), 0);
    /* home again: one FREE block per run at home, merged with what was free there */
    CHECK_EQ(vms_free(a, s), VMS_OK);
    CHECK_DESC(r, g, "L1 L1 L1 L1");
    CHECK_DESC(ar, g, "A1 F1 A1 F3 A1 A1 H");
    for (size_t i = 0; i < r->nslots; i++) {
        CHECK(r->slots[i]->owner == ar);
        CHECK_EQ(r->slots[i]->owner_addr, r->slots[i]->home_addr);
        CHECK_EQ(r->slots[i]->busy_bytes, 0);
    }
    CHECK_EQ(vms_check(a), 0);
    /* reused: the same runs move back */
    void *s2;
    REQUIRE(vms_malloc(a, 4 * g, NULL, &s2) == VMS_OK);
    CHECK(s2 == s);
    CHECK_DESC(ar, g, "A1 L1 A1 L1 L1 L1 A1 A1 H");
    CHECK_EQ(vms_free(a, s2), VMS_OK);
    for (int i = 0; i < 8; i++)
        if (i == 0 || i == 2 || i == 6 || i == 7) CHECK_EQ(vms_free(a, p[i]), VMS_OK);
    CHECK_DESC(ar, g, "F8 H");
    CHECK_EQ(vms_check(a), 0);
    CHECK_EQ(vms_empty_cache(a), VMS_OK);
    CHECK_EQ(vms_check(a), 0);
    core_env_free(&e);
}

TEST(core_gc_lru_oldest_first) {
    const size_t g = 2 * MIB;
    vms_config cfg = one_granule_config(g);
    cfg.reuse_limit = 1; /* only an exact size reuses a cached range */
    cfg.gc_threshold_count = 2;
    core_env e;
    REQUIRE(core_env_new(&e, g, &cfg) == 0);
    vms_allocator *a = e.a;
    void *p[16];
    REQUIRE(fragment(a, g, p, 16) == 0);
    /* three stitched ranges of 2, 3 and 4 granules, each freed at once */
    range *made[3];
    for (int k = 0; k < 3; k++) {
        void *s;
        REQUIRE(vms_malloc(a, (size_t)(k + 2) * g, NULL, &s) == VMS_OK);
        made[k] = a->stitched; /* newest is linked first */
        REQUIRE(made[k] && made[k]->base == (uintptr_t)s);
        CHECK_EQ(vms_free(a, s), VMS_OK);
        if (k < 2) CHECK(a->lru_tail == made[k]);
    }
    /* the third idle range passed the count threshold: the oldest (2 granules) went */
    CHECK_EQ(a->lru_count, 2);
    CHECK(a->lru_head == made[1]);
    CHECK(a->lru_tail == made[2]);
    vms_stats st;
    vms_stats_get(a, &st);
    CHECK_EQ(st.gc_ranges_freed, 1);
    CHECK_EQ(st.stitched_ranges_current, 2);
    CHECK_EQ(st.stitched_cached_bytes_current, 7 * g);
    /* reusing the older one makes it the newest */
    void *s;
    REQUIRE(vms_malloc(a, 3 * g, NULL, &s) == VMS_OK);
    CHECK((uintptr_t)s == made[1]->base);
    CHECK_EQ(vms_free(a, s), VMS_OK);
    CHECK(a->lru_head == made[2]);
    CHECK(a->lru_tail == made[1]);
    CHECK_EQ(vms_check(a), 0);
    core_env_free(&e);
}

TEST(core_check_detects_corruption) {
    const size_t g = 2 * MIB;
    vms_config cfg = one_granule_config(g);
    cfg.check_level = 0; /* no automatic checks: we corrupt on purpose */
    core_env e;
    REQUIRE(core_env_new(&e, g, &cfg) == 0);
    vms_allocator *a = e.a;
    void *p[6];
    REQUIRE(fragment(a, g, p, 6) == 0);
    void *s;
    REQUIRE(vms_malloc(a, 2 * g, NULL, &s) == VMS_OK);
    CHECK_EQ(vms_check(a), 0);
    CHECK(vms_check(NULL) > 0);
    /* a stat off by one block */
    a->st.allocated_bytes_current += 512;
    CHECK(vms_check(a) > 0);
    a->st.allocated_bytes_current -= 512;
    /* a chunk's busy count */
    chunk *c = a->all_chunks;
    c->busy_bytes ^= 512;
    CHECK(vms_check(a) > 0);
    c->busy_bytes ^= 512;
    /* a LENT arena block claimed FREE: two ranges would hand out the same bytes */
    block *lent = range_block_at(a->arena[POOL_LARGE], a->stitched->slots[0]->home_addr);
    REQUIRE(lent && lent->state == BLOCK_LENT);
    lent->state = BLOCK_ALLOC;
    CHECK(vms_check(a) > 0);
    lent->state = BLOCK_LENT;
    /* a live block missing from the pointer map */
    block *b = ptr_map_del(&a->live, (uintptr_t)p[0]);
    REQUIRE(b);
    CHECK(vms_check(a) > 0);
    REQUIRE(ptr_map_put(&a->live, (uintptr_t)p[0], b) == 0);
    CHECK_EQ(vms_check(a), 0);
    core_env_free(&e);
}

/* The witnesses themselves must be able to fail: a planted overlap (test hook) is seen both by
 * the byte patterns on host and by vms_check. */
TEST(core_planted_overlap_is_caught) {
    const size_t g = 64 * KIB;
    vms_backend *be = NULL;
    REQUIRE(vms_backend_host_create(g, 0, &be) == VMS_OK);
    vms_config cfg;
    vms_config_init(&cfg);
    vms_allocator *a = NULL;
    REQUIRE(vms_allocator_create(&cfg, be, 0, &a) == VMS_OK);
    void *victim;
    REQUIRE(vms_malloc(a, g, NULL, &victim) == VMS_OK);
    uint64_t *w = victim;
    for (size_t i = 0; i < g / 8; i++)
        w[i] = 0x1111000000000000ull + i;
    void *planted = NULL;
    REQUIRE(test_plant_overlap(a, 4 * KIB, &planted) == VMS_OK);
    CHECK((char *)planted >= (char *)victim && (char *)planted < (char *)victim + g);
    CHECK(vms_check(a) > 0);
    memset(planted, 0x22, 4 * KIB);
    size_t bad = 0;
    for (size_t i = 0; i < g / 8; i++)
        bad += w[i] != 0x1111000000000000ull + i;
    CHECK_EQ(bad, 4 * KIB / 8);
    /* remove the plant: the allocator is whole again */
    block *fake = ptr_map_del(&a->live, (uintptr_t)planted);
    REQUIRE(fake != NULL);
    free(fake);
    CHECK_EQ(vms_check(a), 0);
    CHECK_EQ(vms_free(a, victim), VMS_OK);
    CHECK_EQ(vms_check(a), 0);
    vms_allocator_destroy(a);
    vms_backend_destroy(be);
}
