/* The set of every ID a trace has allocated so far, kept as disjoint intervals.
 *
 * IDs are never reused, so telling "free of an already freed ID" from "free of an unknown ID",
 * and catching an allocation that reuses a freed ID, needs the IDs seen before, not only the
 * live ones. Traces number their allocations 0, 1, 2, ... so the set is one interval however
 * long the trace; each gap in the numbering costs one node (~56 bytes). The owner caps the
 * nodes (max_nodes: the reader allows 4 per peak live allocation, at least 4096), so memory
 * stays proportional to the live allocations whatever the numbering; past the cap the set
 * stops growing and reports itself saturated: the parser then still catches duplicates of
 * live IDs and frees of non-live IDs, but can no longer say which non-live IDs were seen.
 * Single-threaded.
 */
#ifndef VMS_TOOLS_IDSET_H
#define VMS_TOOLS_IDSET_H

#include <stdbool.h>
#include <stdint.h>

#include "ordset.h"

#include <stddef.h>

typedef struct idset {
    ordset tree;             /* interval nodes keyed by their lowest ID */
    struct idset_node *last; /* the interval with the highest IDs: sequential IDs extend it */
    size_t max_nodes;        /* set by the owner; 0 = unlimited */
    bool saturated;
} idset;

void idset_init(idset *s);
void idset_destroy(idset *s);
bool idset_contains(const idset *s, uint64_t id);
/* Adds id (which must not be in the set). Returns false if it could not be recorded (host
 * out of memory, or max_nodes reached: saturated); the set stays exact for what it holds. */
bool idset_add(idset *s, uint64_t id);

#endif
