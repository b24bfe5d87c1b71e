/* Allocator configurations for the tests: every policy field set, so that the environment of
 * the test run (VMSTITCH_* variables) cannot change an outcome. Each test file starts from one
 * of these and changes only what its tests are about. */
#ifndef VMS_TEST_CONFIG_H
#define VMS_TEST_CONFIG_H

#include <stddef.h>

#include "vmstitch.h"

/* Stitching on before growth, a large cache of stitched ranges, no limit, no self-checks;
 * chunk sizes left to the defaults (or to the caller). */
static inline vms_config test_base_config(void) {
    vms_config c;
    vms_config_init(&c);
    c.small_request_bytes = (int64_t)1 << 20;
    c.stitch_enable = 1;
    c.stitch_min_bytes = 0;
    c.reuse_limit = 10;
    c.stitch_when = VMS_STITCH_BEFORE_GROW;
    c.gc_threshold_bytes = (int64_t)64 << 30;
    c.gc_threshold_count = 1024;
    c.memory_limit_bytes = 0;
    c.log_level = 1;
    c.check_level = 0;
    return c;
}

/* The base with chunks of g bytes (small pool) and g to max_chunk_bytes (large pool), and
 * requests up to small_request_bytes in the small pool. */
static inline vms_config test_chunk_config(size_t g, size_t max_chunk_bytes,
                                           size_t small_request_bytes) {
    vms_config c = test_base_config();
    c.small_chunk_bytes = (int64_t)g;
    c.large_chunk_min_bytes = (int64_t)g;
    c.large_chunk_max_bytes = (int64_t)max_chunk_bytes;
    c.small_request_bytes = (int64_t)small_request_bytes;
    return c;
}

#endif
