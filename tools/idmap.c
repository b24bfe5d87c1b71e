/* The live-ID hash table of idmap.h. Keys are stored as ID + 1 so that zero can mark an empty
 * bucket; the hash is a 64-bit mixer, so sequential IDs (the common case) spread evenly.
 */
#include "idmap.h"

#include <stdlib.h>
#include <string.h>

#define IDMAP_MIN_CAP 64

static size_t hash_id(uint64_t key, size_t mask) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    key *= 0xc4ceb9fe1a85ec53ull;
    key ^= key >> 33;
    return (size_t)key & mask;
}

bool idmap_init(idmap *m) {
    memset(m, 0, sizeof *m);
    m->buckets = calloc(IDMAP_MIN_CAP, sizeof *m->buckets);
    if (!m->buckets) return false;
    m->cap = IDMAP_MIN_CAP;
    return true;
}

void idmap_destroy(idmap *m) {
    free(m->buckets);
    free(m->free_slots);
    memset(m, 0, sizeof *m);
}

static bool rehash(idmap *m, size_t new_cap) {
    idmap_entry *nb = calloc(new_cap, sizeof *nb);
    if (!nb) return false;
    size_t mask = new_cap - 1;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->buckets[i].key) continue;
        size_t j = hash_id(m->buckets[i].key, mask);
        while (nb[j].key)
            j = (j + 1) & mask;
        nb[j] = m->buckets[i];
    }
    free(m->buckets);
    m->buckets = nb;
    m->cap = new_cap;
    return true;
}

bool idmap_add(idmap *m, uint64_t id, uint64_t size_bytes, uint32_t *slot) {
    if ((m->count + 1) * 2 > m->cap && !rehash(m, m->cap * 2)) return false;
    uint32_t s;
    if (m->free_count) {
        s = m->free_slots[--m->free_count];
    } else {
        if (m->next_slot == UINT32_MAX) return false;
        s = m->next_slot++;
    }
    uint64_t key = id + 1;
    size_t mask = m->cap - 1, j = hash_id(key, mask);
    while (m->buckets[j].key)
        j = (j + 1) & mask;
    m->buckets[j].key = key;
    m->buckets[j].size_bytes = size_bytes;
    m->buckets[j].slot = s;
    m->count++;
    *slot = s;
    return true;
}

static size_t find_index(const idmap *m, uint64_t key) {
    size_t mask = m->cap - 1, j = hash_id(key, mask);
    while (m->buckets[j].key) {
        if (m->buckets[j].key == key) return j;
        j = (j + 1) & mask;
    }
    return SIZE_MAX;
}

const idmap_entry *idmap_find(const idmap *m, uint64_t id) {
    size_t j = find_index(m, id + 1);
    return j == SIZE_MAX ? NULL : &m->buckets[j];
}

bool idmap_remove(idmap *m, uint64_t id, uint64_t *size_bytes, uint32_t *slot) {
    size_t j = find_index(m, id + 1);
    if (j == SIZE_MAX) return false;
    *size_bytes = m->buckets[j].size_bytes;
    *slot = m->buckets[j].slot;
    if (m->free_count == m->free_cap) {
        size_t nc = m->free_cap ? m->free_cap * 2 : 64;
        uint32_t *ns = realloc(m->free_slots, nc * sizeof *ns);
        if (!ns) return false;
        m->free_slots = ns;
        m->free_cap = nc;
    }
    m->free_slots[m->free_count++] = *slot;
    /* Backward-shift deletion: pull later members of the probe run into the hole. */
    size_t mask = m->cap - 1, hole = j, k = j;
    for (;;) {
        k = (k + 1) & mask;
        if (!m->buckets[k].key) break;
        size_t home = hash_id(m->buckets[k].key, mask);
        /* k may move to hole unless its home lies cyclically in (hole, k]. */
        bool stays = hole <= k ? (home > hole && home <= k) : (home > hole || home <= k);
        if (!stays) {
            m->buckets[hole] = m->buckets[k];
            hole = k;
        }
    }
    m->buckets[hole].key = 0;
    m->count--;
    /* Shrinking failure is harmless: the table just stays larger. */
    if (m->cap > IDMAP_MIN_CAP && m->count * 8 < m->cap) (void)rehash(m, m->cap / 2);
    return true;
}

size_t idmap_memory_bytes(const idmap *m) {
    return m->cap * sizeof *m->buckets + m->free_cap * sizeof *m->free_slots;
}
