/* The interval set of idset.h. Adding an ID either extends a neighbouring interval, joins two
 * intervals it separates, or starts a new one; the highest interval is cached because
 * recorded traces allocate IDs in increasing order, so almost every add is O(1).
 */
#include "idset.h"

#include <stdlib.h>

typedef struct idset_node {
    ordset_node node; /* key[0] = lowest ID of the interval */
    uint64_t hi;      /* highest ID of the interval (inclusive) */
} idset_node;

#define NODE(n) ORDSET_CONTAINER(n, idset_node, node)

void idset_init(idset *s) {
    ordset_init(&s->tree, 0x1d5e7ull);
    s->last = NULL;
    s->max_nodes = 0;
    s->saturated = false;
}

void idset_destroy(idset *s) {
    ordset_node *n;
    while ((n = s->tree.root) != NULL) {
        ordset_erase(&s->tree, n);
        free(NODE(n));
    }
    s->last = NULL;
}

bool idset_contains(const idset *s, uint64_t id) {
    ordset_node *n = ordset_floor(&s->tree, id, 0, 0);
    return n && id <= NODE(n)->hi;
}

static bool new_interval(idset *s, uint64_t id) {
    if (s->max_nodes && s->tree.count >= s->max_nodes) {
        s->saturated = true;
        return false;
    }
    idset_node *in = malloc(sizeof *in);
    if (!in) return false;
    in->node.key[0] = id;
    in->node.key[1] = in->node.key[2] = 0;
    in->hi = id;
    ordset_insert(&s->tree, &in->node);
    if (!s->last || id > s->last->hi) s->last = in;
    return true;
}

bool idset_add(idset *s, uint64_t id) {
    idset_node *last = s->last;
    if (last && id > last->hi) {
        if (id == last->hi + 1) {
            last->hi = id;
            return true;
        }
        return new_interval(s, id);
    }
    ordset_node *ln = ordset_floor(&s->tree, id, 0, 0);
    idset_node *left = ln ? NODE(ln) : NULL;
    ordset_node *rn = id < UINT64_MAX ? ordset_lower_bound(&s->tree, id + 1, 0, 0) : NULL;
    idset_node *right = rn && rn->key[0] == id + 1 ? NODE(rn) : NULL;
    bool joins_left = left && left->hi + 1 == id;
    if (joins_left && right) {
        left->hi = right->hi;
        ordset_erase(&s->tree, &right->node);
        if (s->last == right) s->last = left;
        free(right);
    } else if (joins_left) {
        left->hi = id;
    } else if (right) {
        /* The key changes: take the node out and put it back. */
        ordset_erase(&s->tree, &right->node);
        right->node.key[0] = id;
        ordset_insert(&s->tree, &right->node);
    } else {
        return new_interval(s, id);
    }
    return true;
}
