/* The replay engine of replay.h. Batches end at bucket edges and at the halfway event, so the
 * per-bucket reserved peaks and the halfway sample of modeled seconds are read between
 * batches, outside the timed loops. The clock is CLOCK_MONOTONIC (a vDSO call, ~20 ns) read
 * twice per batch per policy: the replay is single-threaded, so it measures the allocator's
 * CPU time without the cost of a per-thread CPU clock.
 */
#include "replay.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH_EVENTS 4096

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The event index where bucket k (1-based) ends. */
static uint64_t bucket_end(uint64_t events, uint32_t points, uint32_t k) {
    return (uint64_t)(((unsigned __int128)events * k) / points);
}

void replay_result_free(replay_result *r) {
    if (!r) return;
    free(r->path);
    free(r->live_series);
    for (int i = 0; i < r->npolicies; i++)
        free(r->policy[i].reserved_series);
    memset(r, 0, sizeof *r);
}

/* Pass 1: validate, count, find the live peak. */
static replay_status scan(const char *path, replay_result *out, char *err, size_t err_cap) {
    trace_reader *r = trace_open(path, true, err, err_cap);
    if (!r) return REPLAY_BAD_INPUT;
    trace_event ev;
    trace_status st;
    while ((st = trace_next(r, &ev)) == TRACE_EVENT) {
        out->events++;
        if (ev.size_bytes) {
            out->allocs++;
            uint64_t live = trace_live_bytes(r);
            if (live > out->peak_live_bytes) out->peak_live_bytes = live;
        } else {
            out->frees++;
        }
    }
    if (st == TRACE_ERROR) {
        snprintf(err, err_cap, "%s", trace_error(r));
        trace_close(r);
        return REPLAY_BAD_INPUT;
    }
    out->header = *trace_header_get(r);
    out->live_at_end = trace_live_count(r);
    trace_close(r);
    return REPLAY_OK;
}

typedef struct lane {
    const policy_ops *ops;
    policy *p;
    uint64_t *tokens;
    size_t tokens_cap;
} lane;

static bool lane_reserve(lane *l, size_t need) {
    if (need <= l->tokens_cap) return true;
    size_t cap = l->tokens_cap ? l->tokens_cap : 1024;
    while (cap < need)
        cap *= 2;
    uint64_t *t = realloc(l->tokens, cap * sizeof *t);
    if (!t) return false;
    memset(t + l->tokens_cap, 0, (cap - l->tokens_cap) * sizeof *t);
    l->tokens = t;
    l->tokens_cap = cap;
    return true;
}

/* Replays one batch through one policy; returns the nanoseconds it took. */
static uint64_t lane_run(lane *l, const trace_event *batch, size_t n, uint64_t *ooms) {
    const policy_ops *ops = l->ops;
    policy *p = l->p;
    uint64_t *tokens = l->tokens;
    uint64_t failed = 0;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        const trace_event *ev = &batch[i];
        if (ev->size_bytes) {
            uint64_t tok = ops->alloc(p, ev->size_bytes, ev->stream);
            tokens[ev->slot] = tok;
            failed += tok == 0;
        } else {
            uint64_t tok = tokens[ev->slot];
            if (tok) ops->free(p, tok);
        }
    }
    uint64_t t1 = now_ns();
    *ooms += failed;
    return t1 - t0;
}

replay_status replay_trace(const char *path, const policy_ops *const *policies, int npolicies,
                           const policy_options *opt, replay_result *out, char *err,
                           size_t err_cap) {
    memset(out, 0, sizeof *out);
    if (npolicies < 0 || npolicies > REPLAY_MAX_POLICIES) {
        snprintf(err, err_cap, "too many policies");
        return REPLAY_FAILED;
    }
    out->path = strdup(path);
    if (!out->path) {
        snprintf(err, err_cap, "out of host memory");
        return REPLAY_FAILED;
    }
    replay_status status = scan(path, out, err, err_cap);
    if (status != REPLAY_OK) return status;

    const uint64_t events = out->events, half = events / 2;
    out->points = events < REPLAY_MAX_POINTS ? (uint32_t)events : REPLAY_MAX_POINTS;
    out->npolicies = npolicies;
    lane lanes[REPLAY_MAX_POLICIES];
    memset(lanes, 0, sizeof lanes);
    trace_event *batch = malloc(BATCH_EVENTS * sizeof *batch);
    out->live_series = calloc(out->points ? out->points : 1, sizeof *out->live_series);
    bool ok = batch && out->live_series;
    for (int j = 0; j < npolicies; j++) {
        out->policy[j].ops = policies[j];
        out->policy[j].reserved_series = calloc(out->points ? out->points : 1, sizeof(uint64_t));
        ok = ok && out->policy[j].reserved_series;
    }
    if (!ok) {
        snprintf(err, err_cap, "out of host memory");
        status = REPLAY_FAILED;
        goto done;
    }
    for (int j = 0; j < npolicies; j++) {
        char perr[256] = "";
        lanes[j].ops = policies[j];
        lanes[j].p = policies[j]->open(opt, perr, sizeof perr);
        if (!lanes[j].p) {
            snprintf(err, err_cap, "policy %s could not start: %s", policies[j]->name, perr);
            status = REPLAY_FAILED;
            goto done;
        }
    }

    trace_reader *r = trace_open(path, false, err, err_cap);
    if (!r) {
        status = REPLAY_BAD_INPUT;
        goto done;
    }
    uint64_t idx = 0, live_max = 0;
    uint32_t bucket = 0;
    uint64_t next_edge = out->points ? bucket_end(events, out->points, 1) : 0;
    while (idx < events) {
        uint64_t limit = idx + BATCH_EVENTS;
        if (limit > next_edge) limit = next_edge;
        if (idx < half && limit > half) limit = half;
        size_t n = (size_t)(limit - idx);
        for (size_t i = 0; i < n; i++) {
            if (trace_next(r, &batch[i]) != TRACE_EVENT) {
                snprintf(err, err_cap, "%s: the trace changed while it was replayed", path);
                status = REPLAY_BAD_INPUT;
                trace_close(r);
                goto done;
            }
            uint64_t live = trace_live_bytes(r);
            if (live > live_max) live_max = live;
        }
        size_t slots = trace_slot_limit(r);
        for (int j = 0; j < npolicies; j++) {
            if (!lane_reserve(&lanes[j], slots)) {
                snprintf(err, err_cap, "out of host memory");
                status = REPLAY_FAILED;
                trace_close(r);
                goto done;
            }
            out->policy[j].replay_ns += lane_run(&lanes[j], batch, n, &out->policy[j].ooms);
        }
        idx = limit;
        if (idx == half) {
            for (int j = 0; j < npolicies; j++) {
                policy_counters c;
                lanes[j].ops->counters(lanes[j].p, &c);
                out->policy[j].modeled_seconds_first_half = c.modeled_seconds;
            }
        }
        if (idx == next_edge) {
            for (int j = 0; j < npolicies; j++) {
                uint64_t peak = lanes[j].ops->reserved_window_peak(lanes[j].p);
                out->policy[j].reserved_series[bucket] = peak;
                if (peak > out->policy[j].peak_reserved_bytes)
                    out->policy[j].peak_reserved_bytes = peak;
            }
            out->live_series[bucket] = live_max;
            live_max = trace_live_bytes(r);
            bucket++;
            next_edge = bucket < out->points ? bucket_end(events, out->points, bucket + 1) : events;
        }
    }
    trace_close(r);
    for (int j = 0; j < npolicies; j++) {
        lanes[j].ops->counters(lanes[j].p, &out->policy[j].counters);
        /* reserved at open, for an empty trace */
        uint64_t peak = lanes[j].ops->reserved_window_peak(lanes[j].p);
        if (peak > out->policy[j].peak_reserved_bytes) out->policy[j].peak_reserved_bytes = peak;
    }

done:
    for (int j = 0; j < npolicies; j++) {
        if (lanes[j].p) lanes[j].ops->close(lanes[j].p);
        free(lanes[j].tokens);
    }
    free(batch);
    return status;
}

/* ---------------------------------------------------------------- derived numbers */

double replay_efficiency(const replay_result *r, const replay_policy_result *p) {
    /* A policy that failed allocations did not hold the trace's live bytes: no efficiency. */
    if (!p->peak_reserved_bytes || p->ooms) return NAN;
    return (double)r->peak_live_bytes / (double)p->peak_reserved_bytes;
}

double replay_modeled_second_half(const replay_policy_result *p) {
    double v = p->counters.modeled_seconds - p->modeled_seconds_first_half;
    return v < 0 ? 0 : v;
}

double replay_share_of_run(const replay_result *r, const replay_policy_result *p) {
    double run = r->header.pytorch_run_seconds;
    if (!(run > 0)) return NAN;
    return p->counters.modeled_seconds / run;
}

double replay_share_of_second_half(const replay_result *r, const replay_policy_result *p) {
    double run = r->header.pytorch_run_seconds;
    if (!(run > 0)) return NAN;
    return replay_modeled_second_half(p) / (run / 2);
}

double replay_ns_per_event(const replay_result *r, const replay_policy_result *p) {
    if (!r->events) return NAN;
    return (double)p->replay_ns / (double)r->events;
}

int64_t replay_header_peak_reserved(const replay_result *r, const replay_policy_result *p) {
    if (p->ops == &policy_pytorch_ops) return r->header.pytorch_peak_reserved;
    if (p->ops == &policy_expandable_ops) return r->header.expandable_segments_peak_reserved;
    return -1;
}
