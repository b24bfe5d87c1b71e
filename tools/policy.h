/* The allocator policies a trace can be replayed through, behind one small interface.
 *
 * A policy serves alloc(size, stream) with an opaque non-zero token (0 = out of memory) and
 * takes the token back in free. It reports the peak of its reserved bytes (physical memory
 * held: chunks for VMM policies, segments for cudaMalloc ones) per window, so the replay
 * engine can both find the overall peak and draw reserved memory over the trace without
 * asking after every event, and its backend calls as DESIGN.md counts them (per handle) with
 * their modeled seconds.
 *
 *   pytorch     PyTorch's native CUDACachingAllocator, emulated (policy_pytorch.c)
 *   expandable  the same with expandable_segments:True, emulated (policy_pytorch.c)
 *   vmstitch    the real vmstitch core on the sim backend (policy_core.c)
 *   gmlake      the real core configured as GMLake's defaults (policy_core.c)
 *
 * Single-threaded: a policy instance belongs to one replay.
 */
#ifndef VMS_TOOLS_POLICY_H
#define VMS_TOOLS_POLICY_H

#include <stddef.h>
#include <stdint.h>

typedef struct policy_counters {
    uint64_t create, release, reserve, address_free, map, unmap, set_access;
    uint64_t cuda_malloc, cuda_free;
    uint64_t errors; /* calls the allocator refused for a reason other than out-of-memory */
    double modeled_seconds;
} policy_counters;

typedef struct policy_options {
    uint64_t capacity_bytes; /* device memory the policy may hold (the sim backend's default) */
} policy_options;

#define POLICY_DEFAULT_CAPACITY_BYTES (80ull << 30)

typedef struct policy policy;

typedef struct policy_ops {
    const char *name;
    const char *summary; /* one line for the help text */
    /* Returns NULL with a message in err on failure. */
    policy *(*open)(const policy_options *opt, char *err, size_t err_cap);
    uint64_t (*alloc)(policy *p, uint64_t size_bytes, uint32_t stream);
    void (*free)(policy *p, uint64_t token);
    /* The peak of reserved bytes since the previous call (or since open); starts a new window
     * at the current value. */
    uint64_t (*reserved_window_peak)(policy *p);
    void (*counters)(policy *p, policy_counters *out);
    void (*close)(policy *p);
} policy_ops;

extern const policy_ops policy_pytorch_ops;
extern const policy_ops policy_expandable_ops;
extern const policy_ops policy_vmstitch_cuda_ops;
extern const policy_ops policy_vmstitch_ops;
extern const policy_ops policy_gmlake_ops;

/* Every policy, in the order tables and plots show them; NULL-terminated. */
extern const policy_ops *const policy_all[];

/* The policy with that name, or NULL. */
const policy_ops *policy_find(const char *name);

/* Sum of every VMM and cudaMalloc/cudaFree call. */
uint64_t policy_counters_total(const policy_counters *c);

#endif
