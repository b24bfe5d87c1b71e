/* The replay engine: runs one trace through one or more policies in lock step.
 *
 * Two passes over the file. The first validates every line (so bad input is reported before
 * any policy runs) and counts the events, which fixes the halfway point (for the steady-state
 * share of modeled VMM time) and the buckets of the plotted series. The second parses the
 * events into a small batch buffer and feeds each batch to every policy in turn, timing only
 * the policies' alloc/free calls: parsing and gunzip are never inside the timed region. Memory
 * stays proportional to the peak number of live allocations (the reader's tables and one
 * token per live allocation per policy), however long the trace.
 *
 * Series: the trace is cut into at most REPLAY_MAX_POINTS buckets of consecutive events; for
 * each bucket the engine keeps the peak live bytes and each policy's peak reserved bytes, so a
 * plot of a trace of any length has a bounded number of points and still shows every peak.
 * Single-threaded.
 */
#ifndef VMS_TOOLS_REPLAY_H
#define VMS_TOOLS_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "trace.h"

#define REPLAY_MAX_POINTS 2000
#define REPLAY_MAX_POLICIES 8

typedef struct replay_policy_result {
    const policy_ops *ops;
    uint64_t peak_reserved_bytes;
    policy_counters counters;          /* at the end of the trace */
    double modeled_seconds_first_half; /* modeled seconds when half the events ran */
    uint64_t replay_ns;                /* time inside the policy's alloc/free calls */
    uint64_t ooms;                     /* allocations the policy could not serve */
    uint64_t *reserved_series;         /* points entries: peak reserved per bucket */
} replay_policy_result;

typedef struct replay_result {
    char *path;
    trace_header header;
    uint64_t events, allocs, frees;
    uint64_t peak_live_bytes;
    uint64_t live_at_end;
    uint32_t points;       /* buckets in the series (0 for an empty trace) */
    uint64_t *live_series; /* points entries: peak live bytes per bucket */
    int npolicies;
    replay_policy_result policy[REPLAY_MAX_POLICIES];
} replay_result;

typedef enum replay_status {
    REPLAY_OK = 0,
    REPLAY_FAILED = 1,    /* not the input's fault: host memory, a policy that cannot start */
    REPLAY_BAD_INPUT = 2, /* the trace is unreadable or malformed */
} replay_status;

/* Replays path through the npolicies policies. On failure err holds one line (for bad input:
 * "FILE:LINE: message"). out must be released with replay_result_free whatever the outcome. */
replay_status replay_trace(const char *path, const policy_ops *const *policies, int npolicies,
                           const policy_options *opt, replay_result *out, char *err,
                           size_t err_cap);
void replay_result_free(replay_result *r);

/* Derived numbers, the same in every report. NAN where undefined: no run time in the header,
 * nothing reserved, or (efficiency) a policy that failed allocations. */
double replay_efficiency(const replay_result *r, const replay_policy_result *p);
double replay_modeled_second_half(const replay_policy_result *p);
double replay_share_of_run(const replay_result *r, const replay_policy_result *p);
double replay_share_of_second_half(const replay_result *r, const replay_policy_result *p);
double replay_ns_per_event(const replay_result *r, const replay_policy_result *p);
/* The GPU-measured peak reserved for this policy from the header (-1 if none). */
int64_t replay_header_peak_reserved(const replay_result *r, const replay_policy_result *p);

#endif
