/* A fault-injecting backend for tests: it wraps an inner backend (host or sim), forwards every
 * call, and makes chosen calls fail as a driver would, before they reach the inner backend.
 * Calls are counted per kind; fault_arm picks "the k-th call from now among the kinds in a
 * mask" (and optionally the count-1 calls of those kinds after it) and gives them a status
 * (VMS_EBACKEND with a message in vms_last_error, or VMS_ENOMEM for an out-of-memory create).
 *
 * It also keeps its own ledger of what the inner backend holds on the core's behalf: chunks
 * created and not released, address ranges reserved and not freed, mappings not unmapped and
 * events recorded and not destroyed. After vms_allocator_destroy every one of them must be
 * zero: that is the test suite's definition of "nothing leaks".
 *
 * Locking: one mutex guards the counters, the ledger and the armed fault, so one wrapper may
 * serve several allocators and threads; the inner backend does its own locking.
 */
#ifndef VMS_TEST_FAULT_BACKEND_H
#define VMS_TEST_FAULT_BACKEND_H

#include <stdint.h>

#include "vmstitch.h"

typedef enum fault_kind {
    FAULT_GRANULARITY = 0,
    FAULT_MEM_INFO,
    FAULT_CREATE,
    FAULT_RELEASE,
    FAULT_RESERVE,
    FAULT_VA_FREE,
    FAULT_MAP,
    FAULT_UNMAP,
    FAULT_SET_ACCESS,
    FAULT_EVENT_RECORD,
    FAULT_EVENT_QUERY,
    FAULT_EVENT_SYNC,
    FAULT_DEVICE_SYNC,
    FAULT_STREAM_CHECK,
    FAULT_KINDS
} fault_kind;

#define FAULT_BIT(k) (1u << (k))
#define FAULT_ALL ((1u << FAULT_KINDS) - 1u)

/* What the inner backend holds right now, as seen through the wrapper. */
typedef struct fault_ledger {
    int64_t chunks, reservations, mappings, events;
} fault_ledger;

/* Wraps inner, which the wrapper then owns (vms_backend_destroy destroys both). */
vms_status fault_backend_create(vms_backend *inner, vms_backend **out);

/* Fails the k-th call (k >= 1, counted from now) among the kinds in mask, and the count-1
 * calls of those kinds after it (count UINT64_MAX: every one until fault_disarm). */
void fault_arm(vms_backend *fb, unsigned mask, uint64_t k, uint64_t count, vms_status status);
void fault_disarm(vms_backend *fb);

/* Calls seen of the kinds in mask since creation (failed ones included). */
uint64_t fault_calls(vms_backend *fb, unsigned mask);
/* Failures injected since creation. */
uint64_t fault_injected(vms_backend *fb);
/* The kind of the last injected failure, and of the first since fault_arm (FAULT_KINDS if
 * none). */
fault_kind fault_last_kind(vms_backend *fb);
fault_kind fault_first_kind(vms_backend *fb);

fault_ledger fault_ledger_get(vms_backend *fb);
int fault_ledger_empty(vms_backend *fb);

const char *fault_kind_name(fault_kind k);

#endif
