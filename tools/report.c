/* JSON lines and text tables for replay results (report.h). The JSON field names are a stable
 * interface: scripts (bench/replay_bench.sh, tests/cli_test.sh, the lead's reports) read them.
 */
#include "report.h"

#include <math.h>
#include <string.h>

#define GIB (1024.0 * 1024.0 * 1024.0)

static void json_string(FILE *out, const char *s) {
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

static void json_real(FILE *out, double v) {
    if (isfinite(v))
        fprintf(out, "%.9g", v);
    else
        fputs("null", out);
}

/* Header seconds: negative means absent. */
static void json_seconds_or_null(FILE *out, double v) {
    json_real(out, v >= 0 ? v : NAN);
}

static void json_int_or_null(FILE *out, int64_t v) {
    if (v >= 0)
        fprintf(out, "%lld", (long long)v);
    else
        fputs("null", out);
}

static void json_text_or_null(FILE *out, const char *s) {
    if (*s)
        json_string(out, s);
    else
        fputs("null", out);
}

void report_json(FILE *out, const replay_result *r, const replay_policy_result *p) {
    const policy_counters *c = &p->counters;
    const trace_header *h = &r->header;
    fputs("{\"trace\":", out);
    json_string(out, r->path);
    fputs(",\"workload\":", out);
    json_text_or_null(out, h->workload);
    fputs(",\"policy\":", out);
    json_string(out, p->ops->name);
    fprintf(out, ",\"events\":%llu,\"allocs\":%llu,\"frees\":%llu,\"live_at_end\":%llu",
            (unsigned long long)r->events, (unsigned long long)r->allocs,
            (unsigned long long)r->frees, (unsigned long long)r->live_at_end);
    fprintf(out, ",\"peak_live_bytes\":%llu,\"peak_reserved_bytes\":%llu,\"efficiency\":",
            (unsigned long long)r->peak_live_bytes, (unsigned long long)p->peak_reserved_bytes);
    json_real(out, replay_efficiency(r, p));
    fprintf(out,
            ",\"vmm_calls\":{\"create\":%llu,\"release\":%llu,\"reserve\":%llu,"
            "\"address_free\":%llu,\"map\":%llu,\"unmap\":%llu,\"set_access\":%llu,"
            "\"cuda_malloc\":%llu,\"cuda_free\":%llu}",
            (unsigned long long)c->create, (unsigned long long)c->release,
            (unsigned long long)c->reserve, (unsigned long long)c->address_free,
            (unsigned long long)c->map, (unsigned long long)c->unmap,
            (unsigned long long)c->set_access, (unsigned long long)c->cuda_malloc,
            (unsigned long long)c->cuda_free);
    fputs(",\"modeled_vmm_seconds\":", out);
    json_real(out, c->modeled_seconds);
    fputs(",\"modeled_vmm_seconds_second_half\":", out);
    json_real(out, replay_modeled_second_half(p));
    fputs(",\"run_seconds\":", out);
    json_seconds_or_null(out, h->pytorch_run_seconds);
    fputs(",\"modeled_vmm_share_of_run\":", out);
    json_real(out, replay_share_of_run(r, p));
    fputs(",\"modeled_vmm_share_of_second_half\":", out);
    json_real(out, replay_share_of_second_half(r, p));
    fputs(",\"gpu_peak_reserved_bytes\":", out);
    json_int_or_null(out, replay_header_peak_reserved(r, p));
    fputs(",\"replay_seconds\":", out);
    json_real(out, (double)p->replay_ns / 1e9);
    fputs(",\"ns_per_event\":", out);
    json_real(out, replay_ns_per_event(r, p));
    fprintf(out, ",\"ooms\":%llu,\"errors\":%llu", (unsigned long long)p->ooms,
            (unsigned long long)c->errors);
    fputs(",\"header\":{\"device\":", out);
    json_text_or_null(out, h->device);
    fputs(",\"torch\":", out);
    json_text_or_null(out, h->torch);
    fputs(",\"pytorch_peak_allocated\":", out);
    json_int_or_null(out, h->pytorch_peak_allocated);
    fputs(",\"pytorch_peak_reserved\":", out);
    json_int_or_null(out, h->pytorch_peak_reserved);
    fputs(",\"expandable_segments_peak_reserved\":", out);
    json_int_or_null(out, h->expandable_segments_peak_reserved);
    fputs(",\"events\":", out);
    json_int_or_null(out, h->events);
    fputs(",\"pytorch_steps\":", out);
    json_int_or_null(out, h->pytorch_steps);
    fputs(",\"pytorch_step_median_s\":", out);
    json_seconds_or_null(out, h->pytorch_step_median_s);
    fputs(",\"pytorch_run_seconds\":", out);
    json_seconds_or_null(out, h->pytorch_run_seconds);
    fputs("}}\n", out);
}

/* ---------------------------------------------------------------- table */

static const char *percent(char *buf, size_t cap, double v, const char *fmt) {
    if (!isfinite(v))
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, fmt, 100.0 * v);
    return buf;
}

void report_table(FILE *out, const replay_result *r) {
    const trace_header *h = &r->header;
    fprintf(out, "== %s  (%s)\n", h->workload[0] ? h->workload : "trace", r->path);
    fprintf(out, "   %llu events, %llu allocations, peak live %.3f GiB",
            (unsigned long long)r->events, (unsigned long long)r->allocs,
            (double)r->peak_live_bytes / GIB);
    if (h->pytorch_run_seconds >= 0)
        fprintf(out, ", run %.2f s (native PyTorch, measured)\n", h->pytorch_run_seconds);
    else
        fprintf(out, ", run time unknown (no pytorch_run_seconds header)\n");
    fprintf(out, "   %-11s %14s %7s %8s %10s %10s %9s %10s %9s\n", "policy", "peak reserved",
            "effic.", "vs GPU", "VMM calls", "modeled s", "% of run", "2nd half%", "ns/event");
    bool cuda_note = false;
    for (int i = 0; i < r->npolicies; i++) {
        const replay_policy_result *p = &r->policy[i];
        char eff[16], vs[16], share[16], share2[16], nsev[16];
        int64_t gpu = replay_header_peak_reserved(r, p);
        double dev = gpu > 0 ? (double)p->peak_reserved_bytes / (double)gpu - 1.0 : NAN;
        double ns = replay_ns_per_event(r, p);
        if (isfinite(ns))
            snprintf(nsev, sizeof nsev, "%.0f", ns);
        else
            snprintf(nsev, sizeof nsev, "-");
        bool cuda = p->counters.cuda_malloc || p->counters.cuda_free;
        cuda_note = cuda_note || cuda;
        fprintf(out, "   %-11s %10.3f GiB %7s %8s %9llu%s %10.4f %9s %10s %9s\n", p->ops->name,
                (double)p->peak_reserved_bytes / GIB,
                percent(eff, sizeof eff, replay_efficiency(r, p), "%.1f%%"),
                percent(vs, sizeof vs, dev, "%+.2f%%"),
                (unsigned long long)policy_counters_total(&p->counters), cuda ? "*" : " ",
                p->counters.modeled_seconds,
                percent(share, sizeof share, replay_share_of_run(r, p), "%.3f%%"),
                percent(share2, sizeof share2, replay_share_of_second_half(r, p), "%.3f%%"), nsev);
    }
    if (cuda_note)
        fprintf(out, "   * cudaMalloc/cudaFree calls (PyTorch's segments), modeled the same way\n");
    for (int i = 0; i < r->npolicies; i++) {
        const replay_policy_result *p = &r->policy[i];
        if (p->ooms)
            fprintf(out, "   %s: %llu allocations failed (out of memory; no efficiency)\n",
                    p->ops->name, (unsigned long long)p->ooms);
        if (p->counters.errors)
            fprintf(out, "   %s: %llu allocator calls failed (not out of memory)\n", p->ops->name,
                    (unsigned long long)p->counters.errors);
    }
    fputc('\n', out);
}
