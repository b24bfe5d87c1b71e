/* Statistics: the fields come from VMS_STATS_FIELDS in the public header, once, and are
 * generated here into the JSON writer and the peak reset. Readers take the allocator lock for
 * a consistent snapshot; writers already hold it. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* cached = reserved - allocated, with its peak: called wherever either changes. */
void stats_cached_sync(vms_allocator *a) {
    a->st.cached_bytes_current = a->st.reserved_bytes_current - a->st.allocated_bytes_current;
    if (a->st.cached_bytes_current > a->st.cached_bytes_peak)
        a->st.cached_bytes_peak = a->st.cached_bytes_current;
}

/* A block turns live (sign +1) or stops being live (-1): allocated and requested bytes, in
 * total and per pool, and cached. */
void stats_live(vms_allocator *a, const block *b, int sign) {
    int64_t n = sign * (int64_t)b->size_bytes, req = sign * (int64_t)b->requested_bytes;
    STAT_ADD(a, allocated_bytes, n);
    STAT_ADD(a, requested_bytes, req);
    if (b->range->pool == POOL_SMALL) {
        STAT_ADD(a, small_allocated_bytes, n);
        STAT_ADD(a, small_requested_bytes, req);
    } else {
        STAT_ADD(a, large_allocated_bytes, n);
        STAT_ADD(a, large_requested_bytes, req);
    }
    stats_cached_sync(a);
}

vms_status vms_stats_get(vms_allocator *a, vms_stats *out) {
    if (!a || !out) return VMS_EINVAL;
    pthread_mutex_lock(&a->lock);
    *out = a->st;
    pthread_mutex_unlock(&a->lock);
    return VMS_OK;
}

vms_status vms_stats_reset_peak(vms_allocator *a) {
    if (!a) return VMS_EINVAL;
    pthread_mutex_lock(&a->lock);
#define RESET_CUR_PEAK(n) a->st.n##_peak = a->st.n##_current;
#define RESET_COUNT(n)
#define RESET(n, kind) RESET_##kind(n)
    VMS_STATS_FIELDS(RESET)
#undef RESET
#undef RESET_COUNT
#undef RESET_CUR_PEAK
    pthread_mutex_unlock(&a->lock);
    return VMS_OK;
}

size_t vms_stats_json(vms_allocator *a, char *buf, size_t cap) {
    vms_stats s;
    if (!a || vms_stats_get(a, &s) != VMS_OK) {
        if (buf && cap) buf[0] = 0;
        return 0;
    }
    size_t len = 0;
    char tmp[128];
#define APPEND(...)                                                                              \
    do {                                                                                         \
        int n_ = snprintf(tmp, sizeof tmp, __VA_ARGS__);                                         \
        if (n_ > 0) {                                                                            \
            if (buf && len < cap) {                                                              \
                size_t room = cap - len;                                                         \
                memcpy(buf + len, tmp, (size_t)n_ < room ? (size_t)n_ : room);                   \
            }                                                                                    \
            len += (size_t)n_;                                                                   \
        }                                                                                        \
    } while (0)
    const char *sep = "{";
#define JSON_CUR_PEAK(n)                                                                         \
    APPEND("%s\"" #n "_current\":%llu,\"" #n "_peak\":%llu", sep,                                \
           (unsigned long long)s.n##_current, (unsigned long long)s.n##_peak);                   \
    sep = ",";
#define JSON_COUNT(n)                                                                            \
    APPEND("%s\"" #n "\":%llu", sep, (unsigned long long)s.n);                                    \
    sep = ",";
#define JSON(n, kind) JSON_##kind(n)
    VMS_STATS_FIELDS(JSON)
#undef JSON
#undef JSON_COUNT
#undef JSON_CUR_PEAK
    APPEND("}");
#undef APPEND
    if (buf && cap) buf[len < cap ? len : cap - 1] = 0;
    return len;
}
