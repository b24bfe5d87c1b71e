/* The replay policies that run the real vmstitch core, through the public API only, on a sim
 * backend of its own (so its call counters and modeled seconds belong to this replay alone).
 *
 *   vmstitch  the core with its defaults (and any VMSTITCH_* environment variables: replay is
 *             how options are tried out).
 *   gmlake    the core configured as GMLake's published defaults (Guo et al., ASPLOS 2024,
 *             and its PyTorch 2.0 patch): every chunk a 2 MiB handle (small_chunk_bytes =
 *             large_chunk_min_bytes = large_chunk_max_bytes = 2 MiB), stitching only for
 *             requests >= 512 MiB (fragLimit), a cached stitched range reused only for a
 *             request at least 1/10 of its size (reuseLimit 10), stitching free chunks before
 *             creating new ones (defragLevel), VMSTITCH_* variables ignored for those fields.
 *             What this does not reproduce: GMLake's own choice of blocks to stitch
 *             (largest-first) is approximated by the core's choice; GMLake's small pool is
 *             PyTorch's cudaMalloc pool (here 2 MiB chunks of the core, counted as VMM calls);
 *             its failure modes (a failed stitch leaking its blocks, no synchronisation
 *             before unmap, exit() on internal errors) are not reproduced, so its replayed
 *             peak is, if anything, optimistic.
 *
 * Tokens are the device pointers vms_malloc returns (never NULL for size > 0). Reserved bytes
 * come from vms_stats (reserved_bytes_peak, reset per window); calls and modeled seconds from
 * vms_backend_counters_get. Single-threaded use of a thread-safe API.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "policy.h"
#include "vmstitch.h"

#define MIB (1ll << 20)

struct policy {
    vms_backend *backend;
    vms_allocator *alloc;
    uint64_t errors;
    bool on_cuda;
};

static void core_close(policy *p) {
    if (!p) return;
    if (p->alloc) vms_allocator_destroy(p->alloc);
    if (p->backend) vms_backend_destroy(p->backend);
    free(p);
}

static policy *core_open(const policy_options *opt, const vms_config *cfg, bool on_cuda,
                         char *err, size_t cap) {
    policy *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, cap, "out of host memory");
        return NULL;
    }
    uint64_t capacity =
        opt && opt->capacity_bytes ? opt->capacity_bytes : POLICY_DEFAULT_CAPACITY_BYTES;
    vms_status st = on_cuda ? vms_backend_cuda_create(0, &p->backend)
                            : vms_backend_sim_create(0, (size_t)capacity, &p->backend);
    if (st != VMS_OK) {
        snprintf(err, cap, "%s backend: %s: %s", on_cuda ? "cuda" : "sim", vms_status_str(st),
                 vms_last_error());
        core_close(p);
        return NULL;
    }
    p->on_cuda = on_cuda;
    vms_config c = *cfg;
    if (on_cuda && opt && opt->capacity_bytes) c.memory_limit_bytes = opt->capacity_bytes;
    st = vms_allocator_create(&c, p->backend, 0, &p->alloc);
    if (st != VMS_OK) {
        snprintf(err, cap, "allocator: %s: %s", vms_status_str(st), vms_last_error());
        core_close(p);
        return NULL;
    }
    return p;
}

static policy *vmstitch_open(const policy_options *opt, char *err, size_t cap) {
    vms_config cfg;
    vms_config_init(&cfg);
    return core_open(opt, &cfg, false, err, cap);
}

/* The same core on the real driver (device 0; every trace stream is the NULL stream, as in the
 * bundled traces): replay_seconds then include the driver's real VMM calls and the cuda
 * backend's per-call work (the capture check), against the sim backend's modeled ones. */
static policy *vmstitch_cuda_open(const policy_options *opt, char *err, size_t cap) {
    vms_config cfg;
    vms_config_init(&cfg);
    return core_open(opt, &cfg, true, err, cap);
}

static policy *gmlake_open(const policy_options *opt, char *err, size_t cap) {
    vms_config cfg;
    vms_config_init(&cfg);
    cfg.small_chunk_bytes = 2 * MIB;
    cfg.large_chunk_min_bytes = 2 * MIB;
    cfg.large_chunk_max_bytes = 2 * MIB;
    cfg.stitch_enable = 1;
    cfg.stitch_min_bytes = 512 * MIB;
    cfg.reuse_limit = 10;
    cfg.stitch_when = VMS_STITCH_BEFORE_GROW;
    return core_open(opt, &cfg, false, err, cap);
}

static uint64_t core_alloc(policy *p, uint64_t size_bytes, uint32_t stream) {
    void *ptr = NULL;
    if (p->on_cuda) stream = 0; /* only the NULL stream is a valid handle there */
    vms_status st = vms_malloc(p->alloc, (size_t)size_bytes, (vms_stream)(uintptr_t)stream, &ptr);
    if (st == VMS_OK && ptr) return (uint64_t)(uintptr_t)ptr;
    if (st != VMS_ENOMEM) p->errors++;
    return 0;
}

static void core_free(policy *p, uint64_t token) {
    if (vms_free(p->alloc, (void *)(uintptr_t)token) != VMS_OK) p->errors++;
}

static uint64_t core_window_peak(policy *p) {
    vms_stats s;
    if (vms_stats_get(p->alloc, &s) != VMS_OK) {
        p->errors++;
        return 0;
    }
    vms_stats_reset_peak(p->alloc);
    return s.reserved_bytes_peak;
}

static void core_counters(policy *p, policy_counters *out) {
    vms_backend_counters c = {0};
    if (vms_backend_counters_get(p->backend, &c) != VMS_OK) p->errors++;
    *out = (policy_counters){
        .create = c.create,
        .release = c.release,
        .reserve = c.reserve,
        .address_free = c.address_free,
        .map = c.map,
        .unmap = c.unmap,
        .set_access = c.set_access,
        .errors = p->errors,
        .modeled_seconds = c.modeled_seconds,
    };
}

const policy_ops policy_vmstitch_ops = {
    .name = "vmstitch",
    .summary = "the vmstitch core on the sim backend (defaults + VMSTITCH_* variables)",
    .open = vmstitch_open,
    .alloc = core_alloc,
    .free = core_free,
    .reserved_window_peak = core_window_peak,
    .counters = core_counters,
    .close = core_close,
};

const policy_ops policy_gmlake_ops = {
    .name = "gmlake",
    .summary = "the core configured as GMLake's defaults (2 MiB chunks, stitch >= 512 MiB)",
    .open = gmlake_open,
    .alloc = core_alloc,
    .free = core_free,
    .reserved_window_peak = core_window_peak,
    .counters = core_counters,
    .close = core_close,
};

const policy_ops policy_vmstitch_cuda_ops = {
    .name = "vmstitch-cuda",
    .summary = "the vmstitch core on the real GPU (cuda backend, device 0; only when named)",
    .open = vmstitch_cuda_open,
    .alloc = core_alloc,
    .free = core_free,
    .reserved_window_peak = core_window_peak,
    .counters = core_counters,
    .close = core_close,
};
