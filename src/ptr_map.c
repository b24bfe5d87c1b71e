/* Pointer -> live block map: open addressing with linear probing and backward-shift deletion,
 * so lookups on free stay O(1) without tombstones. Callers hold the allocator lock. */
#include <stdlib.h>

#include "internal.h"

static size_t slot_of(uintptr_t key, size_t cap) {
    uint64_t h = (uint64_t)key * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 20) & (cap - 1);
}

int ptr_map_init(ptr_map *m) {
    m->cap = 1024;
    m->count = 0;
    m->keys = calloc(m->cap, sizeof *m->keys);
    m->vals = calloc(m->cap, sizeof *m->vals);
    if (!m->keys || !m->vals) {
        free(m->keys);
        free(m->vals);
        return -1;
    }
    return 0;
}

void ptr_map_free(ptr_map *m) {
    free(m->keys);
    free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->count = 0;
}

static int grow(ptr_map *m) {
    size_t ncap = m->cap * 2;
    uintptr_t *nk = calloc(ncap, sizeof *nk);
    block **nv = calloc(ncap, sizeof *nv);
    if (!nk || !nv) {
        free(nk);
        free(nv);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = slot_of(m->keys[i], ncap);
        while (nk[j]) j = (j + 1) & (ncap - 1);
        nk[j] = m->keys[i];
        nv[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = nk;
    m->vals = nv;
    m->cap = ncap;
    return 0;
}

int ptr_map_put(ptr_map *m, uintptr_t key, block *val) {
    if ((m->count + 1) * 2 > m->cap && grow(m) != 0) return -1;
    size_t i = slot_of(key, m->cap);
    while (m->keys[i] && m->keys[i] != key) i = (i + 1) & (m->cap - 1);
    if (!m->keys[i]) m->count++;
    m->keys[i] = key;
    m->vals[i] = val;
    return 0;
}

block *ptr_map_get(const ptr_map *m, uintptr_t key) {
    if (!key) return NULL;
    size_t i = slot_of(key, m->cap);
    while (m->keys[i]) {
        if (m->keys[i] == key) return m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return NULL;
}

block *ptr_map_del(ptr_map *m, uintptr_t key) {
    if (!key) return NULL;
    size_t mask = m->cap - 1, i = slot_of(key, m->cap);
    while (m->keys[i] && m->keys[i] != key) i = (i + 1) & mask;
    if (!m->keys[i]) return NULL;
    block *v = m->vals[i];
    /* backward shift: move later members of the probe run into the hole */
    size_t hole = i, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!m->keys[j]) break;
        size_t home = slot_of(m->keys[j], m->cap);
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            m->keys[hole] = m->keys[j];
            m->vals[hole] = m->vals[j];
            hole = j;
        }
    }
    m->keys[hole] = 0;
    m->vals[hole] = NULL;
    m->count--;
    return v;
}
