/* The treap behind ordset.h: a binary search tree on the key that is also a heap on a random
 * priority, which keeps its expected depth logarithmic whatever the insertion order (PyTorch's
 * pools see sizes in adversarial orders: sorted runs, repeated sizes). Insert and erase are
 * split/merge; searches are iterative. Recursion depth is the tree depth, O(log n) expected.
 */
#include "ordset.h"

static int key_cmp(const uint64_t *a, const uint64_t *b) {
    for (int i = 0; i < 3; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

static uint64_t rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void ordset_init(ordset *s, uint64_t seed) {
    s->root = NULL;
    s->rng = seed;
    s->count = 0;
}

/* Splits t into keys < key (*l) and keys >= key (*r). */
static void split(ordset_node *t, const uint64_t *key, ordset_node **l, ordset_node **r) {
    if (!t) {
        *l = *r = NULL;
    } else if (key_cmp(t->key, key) < 0) {
        split(t->right, key, &t->right, r);
        *l = t;
    } else {
        split(t->left, key, l, &t->left);
        *r = t;
    }
}

/* Every key of a is below every key of b. */
static ordset_node *merge(ordset_node *a, ordset_node *b) {
    if (!a) return b;
    if (!b) return a;
    if (a->prio > b->prio) {
        a->right = merge(a->right, b);
        return a;
    }
    b->left = merge(a, b->left);
    return b;
}

void ordset_insert(ordset *s, ordset_node *n) {
    n->prio = rng_next(&s->rng);
    n->left = n->right = NULL;
    /* Walk down while the existing nodes outrank n, then split the subtree under n. */
    ordset_node **link = &s->root;
    while (*link && (*link)->prio > n->prio)
        link = key_cmp(n->key, (*link)->key) < 0 ? &(*link)->left : &(*link)->right;
    split(*link, n->key, &n->left, &n->right);
    *link = n;
    s->count++;
}

void ordset_erase(ordset *s, ordset_node *n) {
    ordset_node **link = &s->root;
    while (*link && *link != n)
        link = key_cmp(n->key, (*link)->key) < 0 ? &(*link)->left : &(*link)->right;
    if (!*link) return; /* not in the set: callers treat erase as idempotent */
    *link = merge(n->left, n->right);
    n->left = n->right = NULL;
    s->count--;
}

ordset_node *ordset_lower_bound(const ordset *s, uint64_t k0, uint64_t k1, uint64_t k2) {
    const uint64_t key[3] = {k0, k1, k2};
    ordset_node *t = s->root, *best = NULL;
    while (t) {
        if (key_cmp(t->key, key) >= 0) {
            best = t;
            t = t->left;
        } else {
            t = t->right;
        }
    }
    return best;
}

ordset_node *ordset_floor(const ordset *s, uint64_t k0, uint64_t k1, uint64_t k2) {
    const uint64_t key[3] = {k0, k1, k2};
    ordset_node *t = s->root, *best = NULL;
    while (t) {
        if (key_cmp(t->key, key) <= 0) {
            best = t;
            t = t->right;
        } else {
            t = t->left;
        }
    }
    return best;
}

ordset_node *ordset_next(const ordset *s, const ordset_node *n) {
    ordset_node *t = s->root, *best = NULL;
    while (t) {
        if (key_cmp(t->key, n->key) > 0) {
            best = t;
            t = t->left;
        } else {
            t = t->right;
        }
    }
    return best;
}

ordset_node *ordset_first(const ordset *s) {
    ordset_node *t = s->root;
    while (t && t->left)
        t = t->left;
    return t;
}
