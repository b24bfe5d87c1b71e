/* The registry of replay policies: the display order and lookup by name. */
#include "policy.h"

#include <string.h>

const policy_ops *const policy_all[] = {
    &policy_pytorch_ops, &policy_expandable_ops, &policy_vmstitch_ops, &policy_gmlake_ops, NULL,
};

const policy_ops *policy_find(const char *name) {
    for (size_t i = 0; policy_all[i]; i++)
        if (strcmp(policy_all[i]->name, name) == 0) return policy_all[i];
    /* Not in "all": it needs a GPU. */
    if (strcmp(policy_vmstitch_cuda_ops.name, name) == 0) return &policy_vmstitch_cuda_ops;
    return NULL;
}

uint64_t policy_counters_total(const policy_counters *c) {
    return c->create + c->release + c->reserve + c->address_free + c->map + c->unmap +
           c->set_access + c->cuda_malloc + c->cuda_free;
}
