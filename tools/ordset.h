/* An intrusive ordered set (a treap) keyed by three 64-bit integers compared in order.
 *
 * The replay tool's emulations of PyTorch's allocator need what std::set gives PyTorch:
 * lower_bound, in-order successor, insert and erase in O(log n), with the same tie-breaking
 * (the full key is unique, so the order is total). The node lives inside the caller's struct,
 * so the set allocates nothing. Single-threaded: callers own their sets.
 */
#ifndef VMS_TOOLS_ORDSET_H
#define VMS_TOOLS_ORDSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct ordset_node {
    struct ordset_node *left, *right;
    uint64_t prio;
    uint64_t key[3]; /* set by the caller before insert; must not change while inserted */
} ordset_node;

typedef struct ordset {
    ordset_node *root;
    uint64_t rng;
    size_t count;
} ordset;

void ordset_init(ordset *s, uint64_t seed);
/* The node's key must not already be in the set. */
void ordset_insert(ordset *s, ordset_node *n);
/* The node must be in the set. */
void ordset_erase(ordset *s, ordset_node *n);
/* The first node whose key is >= (k0, k1, k2), or NULL. */
ordset_node *ordset_lower_bound(const ordset *s, uint64_t k0, uint64_t k1, uint64_t k2);
/* The last node whose key is <= (k0, k1, k2), or NULL. */
ordset_node *ordset_floor(const ordset *s, uint64_t k0, uint64_t k1, uint64_t k2);
/* The node after n in key order, or NULL. n need not be in the set (its key is used). */
ordset_node *ordset_next(const ordset *s, const ordset_node *n);
ordset_node *ordset_first(const ordset *s);

#define ORDSET_CONTAINER(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
