/* Best-fit index of FREE blocks: a treap ordered by (size, address), so the smallest block that
 * fits is found in O(log n), ties broken by the lowest address (which keeps the heap compact).
 * Callers hold the allocator lock. Priorities come from a hash of the address, so the shape of
 * the tree does not depend on the order of operations beyond the keys. */
#include "internal.h"

static int key_less(const block *x, size_t size, uintptr_t addr) {
    return x->size_bytes < size || (x->size_bytes == size && x->addr < addr);
}

/* Readies b to enter either index as a leaf: its priority hashes its address. */
static void node_init(block *b) {
    uint64_t h = (uint64_t)b->addr * 0x9e3779b97f4a7c15ull;
    b->prio = (uint32_t)(h >> 32);
    b->left = b->right = NULL;
}

static block *rotate_right(block *t) {
    block *l = t->left;
    t->left = l->right;
    l->right = t;
    return l;
}

static block *rotate_left(block *t) {
    block *r = t->right;
    t->right = r->left;
    r->left = t;
    return r;
}

static block *insert_rec(block *t, block *b) {
    if (!t) return b;
    if (key_less(b, t->size_bytes, t->addr)) {
        t->left = insert_rec(t->left, b);
        if (t->left->prio > t->prio) t = rotate_right(t);
    } else {
        t->right = insert_rec(t->right, b);
        if (t->right->prio > t->prio) t = rotate_left(t);
    }
    return t;
}

void index_insert(block **root, block *b) {
    node_init(b);
    *root = insert_rec(*root, b);
}

static block *merge(block *l, block *r) {
    if (!l) return r;
    if (!r) return l;
    if (l->prio > r->prio) {
        l->right = merge(l->right, r);
        return l;
    }
    r->left = merge(l, r->left);
    return r;
}

void index_remove(block **root, block *b) {
    block **p = root;
    while (*p && *p != b) p = key_less(b, (*p)->size_bytes, (*p)->addr) ? &(*p)->left : &(*p)->right;
    if (*p) *p = merge(b->left, b->right);
    b->left = b->right = NULL;
}

/* Smallest block with (size, addr) >= (size_bytes, addr_after). */
block *index_lower_bound(block *t, size_t size_bytes, uintptr_t addr_after) {
    block *best = NULL;
    while (t) {
        if (key_less(t, size_bytes, addr_after)) {
            t = t->right;
        } else {
            best = t;
            t = t->left;
        }
    }
    return best;
}

static size_t count_rec(const block *t) { return t ? 1 + count_rec(t->left) + count_rec(t->right) : 0; }

size_t index_count(block *root) { return count_rec(root); }

/* Address-ordered index with the largest size of each subtree, for first fit by address: the
 * small pool uses it so that small blocks crowd into the lowest chunks and the chunks above
 * them fall wholly free, ready to be stitched or released. The `left`/`right`/`prio` fields
 * are shared with the best-fit treap: a block is in one index at a time. */
static size_t sub_max(const block *t) { return t ? t->sub_max_bytes : 0; }

static void fix(block *t) {
    size_t m = t->size_bytes, l = sub_max(t->left), r = sub_max(t->right);
    if (l > m) m = l;
    if (r > m) m = r;
    t->sub_max_bytes = m;
}

static block *arot_right(block *t) {
    block *l = t->left;
    t->left = l->right;
    l->right = t;
    fix(t);
    fix(l);
    return l;
}

static block *arot_left(block *t) {
    block *r = t->right;
    t->right = r->left;
    r->left = t;
    fix(t);
    fix(r);
    return r;
}

static block *ainsert_rec(block *t, block *b) {
    if (!t) {
        fix(b);
        return b;
    }
    if (b->addr < t->addr) {
        t->left = ainsert_rec(t->left, b);
        if (t->left->prio > t->prio) return arot_right(t);
    } else {
        t->right = ainsert_rec(t->right, b);
        if (t->right->prio > t->prio) return arot_left(t);
    }
    fix(t);
    return t;
}

void addr_index_insert(block **root, block *b) {
    node_init(b);
    *root = ainsert_rec(*root, b);
}

static block *amerge(block *l, block *r) {
    if (!l) return r;
    if (!r) return l;
    if (l->prio > r->prio) {
        l->right = amerge(l->right, r);
        fix(l);
        return l;
    }
    r->left = amerge(l, r->left);
    fix(r);
    return r;
}

static block *aremove_rec(block *t, block *b) {
    if (!t) return NULL;
    if (t == b) return amerge(t->left, t->right);
    if (b->addr < t->addr) t->left = aremove_rec(t->left, b);
    else t->right = aremove_rec(t->right, b);
    fix(t);
    return t;
}

void addr_index_remove(block **root, block *b) {
    *root = aremove_rec(*root, b);
    b->left = b->right = NULL;
}

/* Lowest-addressed block with size >= size_bytes for which ok(b) holds; blocks failing ok are
 * skipped (at most `budget` of them are looked at). */
static block *afirst_rec(block *t, size_t size_bytes, bool (*ok)(const void *, const block *),
                         const void *ctx, int *budget) {
    if (!t || t->sub_max_bytes < size_bytes || *budget <= 0) return NULL;
    block *r = afirst_rec(t->left, size_bytes, ok, ctx, budget);
    if (r) return r;
    if (t->size_bytes >= size_bytes) {
        if (ok(ctx, t)) return t;
        (*budget)--;
    }
    return afirst_rec(t->right, size_bytes, ok, ctx, budget);
}

block *addr_index_first_fit(block *root, size_t size_bytes,
                            bool (*ok)(const void *, const block *), const void *ctx) {
    int budget = 64;
    return afirst_rec(root, size_bytes, ok, ctx, &budget);
}

void pool_index_insert(vms_allocator *a, pool_kind pool, block *b) {
    if (pool == POOL_SMALL) addr_index_insert(&a->index_root[pool], b);
    else index_insert(&a->index_root[pool], b);
}

void pool_index_remove(vms_allocator *a, pool_kind pool, block *b) {
    if (pool == POOL_SMALL) addr_index_remove(&a->index_root[pool], b);
    else index_remove(&a->index_root[pool], b);
}
