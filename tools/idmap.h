/* The table of live allocation IDs of a trace being read: ID -> (requested size, slot).
 *
 * A slot is a small dense integer (reused after a free) that the replay engine uses to index
 * its per-policy arrays of allocator tokens, so those arrays are as long as the peak number of
 * live allocations, not the number of IDs in the file. Open addressing with linear probing and
 * backward-shift deletion (no tombstones); the table grows at 1/2 load and shrinks at 1/8, so
 * memory follows the live count (about 48-96 bytes per live allocation). Single-threaded.
 */
#ifndef VMS_TOOLS_IDMAP_H
#define VMS_TOOLS_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct idmap_entry {
    uint64_t key; /* ID + 1; 0 marks an empty bucket */
    uint64_t size_bytes;
    uint32_t slot;
} idmap_entry;

typedef struct idmap {
    idmap_entry *buckets;
    size_t cap; /* power of two */
    size_t count;
    uint32_t *free_slots; /* stack of released slots */
    size_t free_count, free_cap;
    uint32_t next_slot; /* slots ever handed out: every slot is < next_slot */
} idmap;

/* IDs must be < IDMAP_MAX_ID (the parser rejects larger ones). */
#define IDMAP_MAX_ID (UINT64_MAX - 1)

bool idmap_init(idmap *m);
void idmap_destroy(idmap *m);
/* Adds a live ID with a new slot. Returns false on host out-of-memory. The ID must not be live. */
bool idmap_add(idmap *m, uint64_t id, uint64_t size_bytes, uint32_t *slot);
/* Finds a live ID; NULL if not live. */
const idmap_entry *idmap_find(const idmap *m, uint64_t id);
/* Removes a live ID, releasing its slot; returns false if it was not live. */
bool idmap_remove(idmap *m, uint64_t id, uint64_t *size_bytes, uint32_t *slot);
/* Host bytes held by the table. */
size_t idmap_memory_bytes(const idmap *m);

#endif
