/* Options: the config struct, its VMSTITCH_* environment variables, GMLake's aliases, and the
 * resolution order explicit field > environment > default. Pure functions over their arguments
 * plus getenv; no lock needed. A bad value gives one warning line and the default. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MiB (1024ull * 1024ull)
#define GiB (1024ull * MiB)

typedef enum opt_kind { OPT_BYTES, OPT_BOOL, OPT_INT, OPT_WHEN } opt_kind;

typedef struct opt_desc {
    const char *field;
    const char *env;
    const char *alias; /* GMLake's name, or NULL */
    size_t offset;
    opt_kind kind;
    int64_t min_value, max_value;
} opt_desc;

#define OPT(field, env, alias, kind, lo, hi) {#field, env, alias, offsetof(vms_config, field), kind, lo, hi}
/* Sizes are bounded far above any device (1 TiB) so that rounding them cannot overflow. */
#define TiB_I ((int64_t)1 << 40)
static const opt_desc opts[] = {
    OPT(small_chunk_bytes, "VMSTITCH_SMALL_CHUNK", NULL, OPT_BYTES, 1, TiB_I),
    OPT(large_chunk_min_bytes, "VMSTITCH_LARGE_CHUNK_MIN", NULL, OPT_BYTES, 1, TiB_I),
    OPT(large_chunk_max_bytes, "VMSTITCH_LARGE_CHUNK_MAX", NULL, OPT_BYTES, 1, TiB_I),
    OPT(small_request_bytes, "VMSTITCH_SMALL_REQUEST", NULL, OPT_BYTES, 0, 64 * (int64_t)MiB),
    OPT(stitch_enable, "VMSTITCH_STITCH", "vmmDefragment", OPT_BOOL, 0, 1),
    OPT(stitch_min_bytes, "VMSTITCH_STITCH_MIN", "fragLimit", OPT_BYTES, 0, INT64_MAX),
    OPT(reuse_limit, "VMSTITCH_REUSE_LIMIT", "reuseLimit", OPT_INT, 1, 1000000),
    OPT(stitch_when, "VMSTITCH_STITCH_WHEN", "defragLevel", OPT_WHEN, 0, 1),
    OPT(gc_threshold_bytes, "VMSTITCH_GC_THRESHOLD", NULL, OPT_BYTES, 0, INT64_MAX),
    OPT(gc_threshold_count, "VMSTITCH_GC_COUNT", "autoGC", OPT_INT, 0, INT64_MAX),
    OPT(memory_limit_bytes, "VMSTITCH_MEMORY_LIMIT", NULL, OPT_BYTES, 0, INT64_MAX),
    OPT(log_level, "VMSTITCH_LOG_LEVEL", NULL, OPT_INT, 0, 3),
    OPT(check_level, "VMSTITCH_CHECK", NULL, OPT_INT, 0, 1),
};
#define NOPTS (sizeof opts / sizeof opts[0])

void vms_config_init(vms_config *cfg) {
    if (!cfg) return;
    for (size_t i = 0; i < NOPTS; i++) *(int64_t *)((char *)cfg + opts[i].offset) = VMS_UNSET;
}

/* "123", "4K", "2MiB", "1.5G", "512mb". Returns 0 on success. */
static int parse_bytes(const char *s, int64_t *out) {
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0) || v > 9.2e18) return -1; /* NaN and inf too */
    while (isspace((unsigned char)*end)) end++;
    double mul = 1;
    switch (tolower((unsigned char)*end)) {
    case 'k': mul = 1024.0; end++; break;
    case 'm': mul = 1024.0 * 1024; end++; break;
    case 'g': mul = 1024.0 * 1024 * 1024; end++; break;
    case 't': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (mul > 1) {
        if (tolower((unsigned char)*end) == 'i') end++;
        if (tolower((unsigned char)*end) == 'b') end++;
    } else if (tolower((unsigned char)*end) == 'b') {
        end++;
    }
    if (*end) return -1;
    v *= mul;
    if (v > 9.2e18) return -1;
    *out = (int64_t)v;
    return 0;
}

static int parse_value(const opt_desc *o, const char *s, int64_t *out) {
    if (o->kind == OPT_BYTES) return parse_bytes(s, out);
    if (o->kind == OPT_BOOL) {
        if (!strcmp(s, "1") || !strcasecmp(s, "true") || !strcasecmp(s, "on") || !strcasecmp(s, "yes")) {
            *out = 1;
            return 0;
        }
        if (!strcmp(s, "0") || !strcasecmp(s, "false") || !strcasecmp(s, "off") || !strcasecmp(s, "no")) {
            *out = 0;
            return 0;
        }
        return -1;
    }
    if (o->kind == OPT_WHEN) {
        if (!strcasecmp(s, "before_grow") || !strcmp(s, "0")) {
            *out = VMS_STITCH_BEFORE_GROW;
            return 0;
        }
        if (!strcasecmp(s, "on_grow_fail") || !strcmp(s, "1")) {
            *out = VMS_STITCH_ON_GROW_FAIL;
            return 0;
        }
        return -1;
    }
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno) return -1;
    *out = v;
    return 0;
}

static int64_t default_of(size_t offset, size_t gran_bytes) {
#define IS(f) (offset == offsetof(vms_config, f))
    if (IS(small_chunk_bytes)) return (int64_t)gran_bytes;
    if (IS(large_chunk_min_bytes)) return (int64_t)gran_bytes;
    if (IS(large_chunk_max_bytes)) return (int64_t)(12 * MiB);
    if (IS(small_request_bytes)) return (int64_t)MiB;
    if (IS(stitch_enable)) return 1;
    if (IS(stitch_min_bytes)) return 0;
    if (IS(reuse_limit)) return 10;
    if (IS(stitch_when)) return VMS_STITCH_BEFORE_GROW;
    if (IS(gc_threshold_bytes)) return 0;
    if (IS(gc_threshold_count)) return 256;
    if (IS(memory_limit_bytes)) return 0;
    if (IS(log_level)) return 1;
    if (IS(check_level)) return 0;
#undef IS
    return 0;
}

/* The log level decides whether warnings about other options are printed, so it is resolved
 * first, silently. */
static int64_t resolve_one(const opt_desc *o, const vms_config *in, size_t gran, int log_level) {
    int64_t v = *(const int64_t *)((const char *)in + o->offset);
    int64_t def = default_of(o->offset, gran);
    const char *src = o->field;
    if (v == VMS_UNSET) {
        const char *name = o->env;
        const char *s = getenv(o->env);
        if ((!s || !*s) && o->alias) {
            s = getenv(o->alias);
            name = o->alias;
        }
        if (!s || !*s) return def;
        if (parse_value(o, s, &v) != 0) {
            log_msg(1, log_level, "ignoring %s=%s (not a valid value); using the default", name, s);
            return def;
        }
        src = name;
    }
    if (v < o->min_value || v > o->max_value) {
        log_msg(1, log_level, "ignoring %s=%lld (out of range); using the default",
                src, (long long)v);
        return def;
    }
    return v;
}

void config_resolve_into(const vms_config *in, size_t gran, config_resolved *out) {
    vms_config unset;
    if (!in) {
        vms_config_init(&unset);
        in = &unset;
    }
    int64_t ll = 1;
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].offset == offsetof(vms_config, log_level)) ll = resolve_one(&opts[i], in, gran, 0);
    int64_t v[NOPTS];
    for (size_t i = 0; i < NOPTS; i++) v[i] = resolve_one(&opts[i], in, gran, (int)ll);
    vms_config r;
    for (size_t i = 0; i < NOPTS; i++) *(int64_t *)((char *)&r + opts[i].offset) = v[i];
    /* Chunk sizes must be multiples of the granularity: round up, and say so. */
    int64_t *chunk_fields[] = {&r.small_chunk_bytes, &r.large_chunk_min_bytes, &r.large_chunk_max_bytes};
    for (size_t i = 0; i < 3; i++) {
        int64_t rounded = (int64_t)round_up((size_t)*chunk_fields[i], gran);
        if (rounded != *chunk_fields[i])
            log_msg(1, (int)ll, "chunk size %lld is not a multiple of the granularity %zu; using %lld",
                    (long long)*chunk_fields[i], gran, (long long)rounded);
        *chunk_fields[i] = rounded;
    }
    if (r.large_chunk_max_bytes < r.large_chunk_min_bytes) {
        log_msg(1, (int)ll, "large chunk max %lld < min %lld; using max = min",
                (long long)r.large_chunk_max_bytes, (long long)r.large_chunk_min_bytes);
        r.large_chunk_max_bytes = r.large_chunk_min_bytes;
    }
    out->small_chunk_bytes = (size_t)r.small_chunk_bytes;
    out->large_chunk_min_bytes = (size_t)r.large_chunk_min_bytes;
    out->large_chunk_max_bytes = (size_t)r.large_chunk_max_bytes;
    out->small_request_bytes = (size_t)r.small_request_bytes;
    out->stitch_enable = r.stitch_enable != 0;
    out->stitch_min_bytes = (size_t)r.stitch_min_bytes;
    out->reuse_limit = (double)r.reuse_limit;
    out->stitch_when = (int)r.stitch_when;
    out->gc_threshold_bytes = (size_t)r.gc_threshold_bytes;
    out->gc_threshold_count = (size_t)r.gc_threshold_count;
    out->memory_limit_bytes = (size_t)r.memory_limit_bytes;
    out->log_level = (int)r.log_level;
    out->check_level = (int)r.check_level;
}

void vms_config_resolve(vms_config *cfg, size_t gran_bytes) {
    if (!cfg) return;
    if (gran_bytes == 0) gran_bytes = 2 * MiB;
    config_resolved r;
    config_resolve_into(cfg, gran_bytes, &r);
    cfg->small_chunk_bytes = (int64_t)r.small_chunk_bytes;
    cfg->large_chunk_min_bytes = (int64_t)r.large_chunk_min_bytes;
    cfg->large_chunk_max_bytes = (int64_t)r.large_chunk_max_bytes;
    cfg->small_request_bytes = (int64_t)r.small_request_bytes;
    cfg->stitch_enable = r.stitch_enable;
    cfg->stitch_min_bytes = (int64_t)r.stitch_min_bytes;
    cfg->reuse_limit = (int64_t)r.reuse_limit;
    cfg->stitch_when = r.stitch_when;
    cfg->gc_threshold_bytes = (int64_t)r.gc_threshold_bytes;
    cfg->gc_threshold_count = (int64_t)r.gc_threshold_count;
    cfg->memory_limit_bytes = (int64_t)r.memory_limit_bytes;
    cfg->log_level = r.log_level;
    cfg->check_level = r.check_level;
}
