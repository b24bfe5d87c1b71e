/* The command line of build/vmstitch: argument parsing, the help text, and the loops of the
 * replay and compare commands over their traces. Each trace is replayed on its own: a bad
 * trace is reported ("vmstitch: FILE:LINE: message") and the others still run; the exit
 * status is then 2. Nothing here exits the process: cli_main returns the status to main().
 */
#include "cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "info.h"
#include "policy.h"
#include "replay.h"
#include "report.h"
#include "vmstitch.h"

static void usage(FILE *f) {
    fputs("usage: vmstitch replay [--policy NAME]... [--json] [--capacity-gib N] TRACE...\n"
          "       vmstitch compare [--svg FILE] [--json] [--capacity-gib N] TRACE...\n"
          "       vmstitch info [--json]\n"
          "       vmstitch help | --version\n",
          f);
}

static void help(void) {
    usage(stdout);
    fputs("\n"
          "replay   replays allocation traces (data/traces/README.md: 'a ID SIZE STREAM' and\n"
          "         'f ID' lines, gzip or plain text) through a policy (default vmstitch; repeat\n"
          "         --policy, or --policy all, for several). --json: one JSON object per trace\n"
          "         and policy per line (trace, policy, events, peak_live_bytes,\n"
          "         peak_reserved_bytes, efficiency, vmm_calls{...}, modeled_vmm_seconds,\n"
          "         modeled_vmm_seconds_second_half, run_seconds, replay_seconds, ns_per_event,\n"
          "         ...); header keys a trace lacks are null.\n"
          "compare  every policy side by side, a table per trace; --svg FILE plots reserved\n"
          "         memory of each policy over the trace with live memory underneath.\n"
          "info     the GPU, driver and allocation granularity (cuda backend).\n"
          "\n"
          "policies:\n",
          stdout);
    for (size_t i = 0; policy_all[i]; i++)
        printf("  %-11s %s\n", policy_all[i]->name, policy_all[i]->summary);
    printf("  %s\n              %s\n", policy_vmstitch_cuda_ops.name,
           policy_vmstitch_cuda_ops.summary);
    fputs("\n"
          "pytorch and expandable follow c10/cuda/CUDACachingAllocator.cpp (PyTorch 2.x defaults:\n"
          "512 B rounding, 2 MiB small segments, 20 MiB / 2 MiB-rounded large segments, best fit\n"
          "per stream, split thresholds, merge on free, release of free segments and retry on\n"
          "out-of-memory; expandable: one segment per pool and stream mapped in 2 / 20 MiB pages\n"
          "at the lowest address that fits, unmapped only on out-of-memory). On the bundled\n"
          "traces both reproduce the GPU-measured peaks in the trace headers.\n"
          "gmlake is the real core configured as GMLake's defaults: 2 MiB handles for every\n"
          "chunk, stitching only requests >= 512 MiB (fragLimit), reuse of a cached stitched\n"
          "range only if <= 10x the request (reuseLimit), stitching before growing. Not\n"
          "reproduced: GMLake's largest-first choice of blocks (the core's choice stands in),\n"
          "its cudaMalloc small pool (here 2 MiB chunks), a failed stitch leaking its blocks,\n"
          "no synchronisation before unmap, exit() on errors.\n"
          "\n"
          "numbers: efficiency = peak live / peak reserved (physical bytes held). Modeled VMM\n"
          "seconds: DESIGN.md's per-handle cost of every driver call (cudaMalloc/cudaFree for\n"
          "pytorch), as a share of the header's pytorch_run_seconds; the second-half share is\n"
          "the cost of the trace's second half of events over half the run (the steady state).\n"
          "replay_seconds: time inside the policy's alloc/free calls (sim backend, parsing\n"
          "excluded); ns_per_event: the same per trace line. --capacity-gib: device memory of\n"
          "every policy (default 80); allocations a policy cannot serve are counted (ooms).\n"
          "\n"
          "exit status: 0 ok; 1 failure (no GPU for info, a policy that cannot start);\n"
          "2 bad input or usage (errors read 'FILE:LINE: message').\n",
          stdout);
}

typedef struct options {
    const policy_ops *policies[REPLAY_MAX_POLICIES];
    int npolicies;
    bool json;
    const char *svg;
    policy_options popt;
    char **traces;
    int ntraces;
} options;

static bool add_policy(options *o, const policy_ops *ops) {
    for (int i = 0; i < o->npolicies; i++)
        if (o->policies[i] == ops) return true;
    if (o->npolicies == REPLAY_MAX_POLICIES) return false;
    o->policies[o->npolicies++] = ops;
    return true;
}

/* Returns 0, or 2 after printing a usage error. */
static int parse_args(const char *cmd, int argc, char **argv, options *o, bool allow_policy,
                      bool allow_svg) {
    memset(o, 0, sizeof *o);
    o->traces = argv;
    bool options_done = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || strcmp(a, "-") == 0) {
            o->traces[o->ntraces++] = argv[i];
        } else if (strcmp(a, "--") == 0) {
            options_done = true;
        } else if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else if (allow_policy && strcmp(a, "--policy") == 0 && i + 1 < argc) {
            const char *name = argv[++i];
            if (strcmp(name, "all") == 0) {
                for (size_t k = 0; policy_all[k]; k++)
                    add_policy(o, policy_all[k]);
                continue;
            }
            const policy_ops *ops = policy_find(name);
            if (!ops) {
                fprintf(stderr,
                        "vmstitch %s: unknown policy '%s' (pytorch, expandable, "
                        "vmstitch, gmlake or all)\n",
                        cmd, name);
                return 2;
            }
            add_policy(o, ops);
        } else if (allow_svg && strcmp(a, "--svg") == 0 && i + 1 < argc) {
            o->svg = argv[++i];
        } else if (strcmp(a, "--capacity-gib") == 0 && i + 1 < argc) {
            char *end = NULL;
            double gib = strtod(argv[++i], &end);
            if (!end || *end || !(gib > 0 && gib <= 1048576)) {
                fprintf(stderr, "vmstitch %s: --capacity-gib wants a number of GiB, not '%s'\n",
                        cmd, argv[i]);
                return 2;
            }
            o->popt.capacity_bytes = (uint64_t)(gib * 1073741824.0);
        } else {
            fprintf(stderr, "vmstitch %s: unknown option or missing value: %s\n", cmd, a);
            usage(stderr);
            return 2;
        }
    }
    if (o->ntraces == 0) {
        fprintf(stderr, "vmstitch %s: no trace given\n", cmd);
        usage(stderr);
        return 2;
    }
    return 0;
}

static int worse(int a, int b) {
    return a == 2 || b == 2 ? 2 : (a > b ? a : b);
}

/* Replays every trace, printing JSON lines or a table per trace; keeps the results when keep
 * is set (for the SVG). */
static int run_traces(const char *cmd, const options *o, replay_result *keep, int *nkept) {
    int status = 0;
    for (int t = 0; t < o->ntraces; t++) {
        replay_result r;
        char err[768];
        replay_status st =
            replay_trace(o->traces[t], o->policies, o->npolicies, &o->popt, &r, err, sizeof err);
        if (st != REPLAY_OK) {
            fprintf(stderr, "vmstitch %s: %s\n", cmd, err);
            status = worse(status, st == REPLAY_BAD_INPUT ? 2 : 1);
            replay_result_free(&r);
            continue;
        }
        if (o->json) {
            for (int i = 0; i < r.npolicies; i++)
                report_json(stdout, &r, &r.policy[i]);
        } else {
            report_table(stdout, &r);
        }
        fflush(stdout);
        if (keep)
            keep[(*nkept)++] = r;
        else
            replay_result_free(&r);
    }
    return status;
}

static int cmd_replay(int argc, char **argv) {
    options o;
    int rc = parse_args("replay", argc, argv, &o, true, false);
    if (rc) return rc;
    if (o.npolicies == 0) add_policy(&o, &policy_vmstitch_ops);
    return run_traces("replay", &o, NULL, NULL);
}

static int cmd_compare(int argc, char **argv) {
    options o;
    int rc = parse_args("compare", argc, argv, &o, false, true);
    if (rc) return rc;
    for (size_t k = 0; policy_all[k]; k++)
        add_policy(&o, policy_all[k]);
    replay_result *kept = NULL;
    int nkept = 0;
    if (o.svg) {
        kept = calloc((size_t)o.ntraces, sizeof *kept);
        if (!kept) {
            fprintf(stderr, "vmstitch compare: out of host memory\n");
            return 1;
        }
    }
    int status = run_traces("compare", &o, kept, &nkept);
    if (o.svg) {
        char err[512];
        if (!report_svg(o.svg, kept, nkept, err, sizeof err)) {
            fprintf(stderr, "vmstitch compare: %s\n", err);
            status = worse(status, 1);
        } else if (!o.json) {
            printf("plot written to %s (%d trace%s)\n", o.svg, nkept, nkept == 1 ? "" : "s");
        }
        for (int i = 0; i < nkept; i++)
            replay_result_free(&kept[i]);
        free(kept);
    }
    return status;
}

static int cmd_info(int argc, char **argv) {
    bool json = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else {
            fprintf(stderr, "vmstitch info: unknown argument: %s\n", argv[i]);
            return 2;
        }
    }
    return info_run(json);
}

int cli_main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "replay") == 0) return cmd_replay(argc - 2, argv + 2);
    if (strcmp(cmd, "compare") == 0) return cmd_compare(argc - 2, argv + 2);
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 2, argv + 2);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        help();
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("vmstitch %s\n", vms_version());
        return 0;
    }
    fprintf(stderr, "vmstitch: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
