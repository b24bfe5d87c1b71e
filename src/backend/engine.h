/* The checking engine shared by the sim and host backends: it enforces the driver's rules
 * (backend.h), counts calls, models costs and keeps events; a backend built on it supplies only
 * the physical side as hooks. Each hook is optional and runs under the engine's mutex after the
 * engine has accepted the call; a failing hook sets the error message and the engine records
 * nothing. payload is the hook's own name for a chunk (host: its offset in the backing file). */
#ifndef VMS_BACKEND_ENGINE_H
#define VMS_BACKEND_ENGINE_H

#include "backend/backend.h"

typedef struct sim_phys {
    void *ctx;
    vms_status (*chunk_create)(void *ctx, size_t bytes, uint64_t *payload);
    vms_status (*chunk_release)(void *ctx, uint64_t payload, size_t bytes);
    vms_status (*va_reserve)(void *ctx, size_t bytes, size_t align_bytes, uintptr_t *out);
    vms_status (*va_free)(void *ctx, uintptr_t addr, size_t bytes);
    vms_status (*map)(void *ctx, uintptr_t addr, size_t bytes, uint64_t payload);
    vms_status (*unmap)(void *ctx, uintptr_t addr, size_t bytes);
    vms_status (*set_access)(void *ctx, uintptr_t addr, size_t bytes);
    void (*destroy)(void *ctx);
} sim_phys;

vms_status sim_engine_create(const char *name, size_t granularity_bytes, size_t capacity_bytes,
                             size_t unlimited_total_bytes, bool model_costs, const sim_phys *phys,
                             vms_backend **out);

#endif
