/* Tests of the replay tool (tools/): the trace parser's errors (each with its line number, in
 * plain and gzip files), header keys that are absent, the fidelity of the PyTorch emulations
 * against the GPU-measured peaks in the bundled traces' headers (pytorch within 3%,
 * expandable within 5%), the vmstitch policy reserving less than PyTorch on every trace, the
 * bounded memory of the reader and the bounded series, and the data structures underneath.
 * Timing is never asserted. Run from the repository root (the traces are data/traces/).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "../tools/idmap.h"
#include "../tools/idset.h"
#include "../tools/ordset.h"
#include "../tools/policy.h"
#include "../tools/replay.h"
#include "../tools/report.h"
#include "../tools/trace.h"
#include "test.h"

static const char *const bundled[] = {
    "data/traces/gpt2m-full.trace.gz",
    "data/traces/opt13-lora-rc-tok.trace.gz",
    "data/traces/opt350-gen.trace.gz",
    "data/traces/opt350-lora-rc.trace.gz",
};
#define NBUNDLED (sizeof bundled / sizeof bundled[0])

/* Writes text to a new temporary file (gzip-compressed if gz); returns its path (static). */
static const char *temp_trace(const char *text, bool gz) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/vms_replay_testXXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    if (gz) {
        close(fd);
        gzFile g = gzopen(path, "wb");
        if (!g) return NULL;
        gzwrite(g, text, (unsigned)strlen(text));
        gzclose(g);
    } else {
        size_t n = strlen(text);
        if (write(fd, text, n) != (ssize_t)n) {
            close(fd);
            return NULL;
        }
        close(fd);
    }
    return path;
}

static replay_status replay_one(const char *path, const policy_ops *ops, replay_result *r,
                                char *err, size_t cap) {
    const policy_ops *pols[1] = {ops};
    return replay_trace(path, pols, 1, NULL, r, err, cap);
}

/* ---------------------------------------------------------------- parser errors */

typedef struct bad_case {
    const char *text;
    int line;
    const char *message; /* a substring of the expected message */
} bad_case;

static const bad_case bad_cases[] = {
    {"# vmstitch-trace v1\na 1 100 0\nx 2\n", 3, "unknown op 'x'"},
    {"# vmstitch-trace v1\na 1 100 0\nalloc 2 5 0\n", 3, "unknown op 'alloc'"},
    {"# vmstitch-trace v1\na 1 100 0\nf 2\n", 3, "free of unknown ID 2"},
    {"# vmstitch-trace v1\na 1 100 0\nf 1\nf 1\n", 4, "already freed"},
    {"# vmstitch-trace v1\na 1 100 0\na 1 5 0\n", 3, "duplicate ID 1"},
    {"# vmstitch-trace v1\na 1 100 0\nf 1\n# c\na 1 5 0\n", 5, "duplicate ID 1"},
    {"# vmstitch-trace v1\n# workload w\na 7 0 0\n", 3, "size 0"},
    {"# vmstitch-trace v1\n\na 1 12x 0\n", 3, "not a number"},
    {"# vmstitch-trace v1\na 1 -5 0\n", 2, "not a number"},
    {"# vmstitch-trace v1\na 1 99999999999999999999999 0\n", 2, "out of range"},
    {"# vmstitch-trace v1\na 1 4611686018427387904 0\n", 2, "too large"},
    {"# vmstitch-trace v1\na 1 5\n", 2, "without a stream"},
    {"# vmstitch-trace v1\na 1\n", 2, "without a size"},
    {"# vmstitch-trace v1\na\n", 2, "without an ID"},
    {"# vmstitch-trace v1\na 1 5 0 9\n", 2, "unexpected '9'"},
    {"# vmstitch-trace v1\na 1 5 0\nf 1 2\n", 3, "unexpected '2'"},
    {"# vmstitch-trace v1\na 1 5 x\n", 2, "stream 'x'"},
    {"# vmstitch-trace v1\na x 5 0\n", 2, "ID 'x'"},
    {"not a trace\na 1 5 0\n", 1, "not a vmstitch trace"},
    {"# vmstitch-trace v9\n", 1, "unsupported trace version"},
    {"", 1, "empty input"},
};

TEST(replay_parse_errors_have_line_numbers) {
    for (int gz = 0; gz < 2; gz++) {
        for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
            const bad_case *bc = &bad_cases[i];
            const char *path = temp_trace(bc->text, gz);
            REQUIRE(path);
            replay_result r;
            char err[512] = "", want[128];
            replay_status st = replay_one(path, &policy_pytorch_ops, &r, err, sizeof err);
            snprintf(want, sizeof want, "%s:%d: ", path, bc->line);
            CHECK_EQ(st, REPLAY_BAD_INPUT);
            if (!strstr(err, want) || !strstr(err, bc->message)) {
                char m[768];
                snprintf(m, sizeof m, "case %zu (gz %d): got '%s', want '%s...%s'", i, gz, err,
                         want, bc->message);
                test_fail(__FILE__, __LINE__, m);
            }
            replay_result_free(&r);
            unlink(path);
        }
    }
}

TEST(replay_truncated_gzip_reports_the_cut_line) {
    /* A valid trace of 30000 lines, gzip, cut in the middle. */
    size_t cap = 30000 * 32, n = 0;
    char *text = malloc(cap);
    REQUIRE(text);
    n += (size_t)snprintf(text + n, cap - n, "# vmstitch-trace v1\n");
    for (int i = 0; i < 15000; i++) {
        n += (size_t)snprintf(text + n, cap - n, "a %d %d 0\n", i, 1000 + (i * 7919) % 100000);
        n += (size_t)snprintf(text + n, cap - n, "f %d\n", i);
    }
    const char *path = temp_trace(text, true);
    free(text);
    REQUIRE(path);
    char p[64];
    snprintf(p, sizeof p, "%s", path);
    FILE *f = fopen(p, "r+");
    REQUIRE(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    REQUIRE(truncate(p, size / 2) == 0);
    /* The complete lines that survive: what zlib can still decompress. */
    gzFile g = gzopen(p, "rb");
    REQUIRE(g);
    char buf[4096];
    int got;
    long lines = 0;
    while ((got = gzread(g, buf, sizeof buf)) > 0)
        for (int i = 0; i < got; i++)
            lines += buf[i] == '\n';
    gzclose(g);

    replay_result r;
    char err[512] = "", want[160];
    CHECK_EQ(replay_one(p, &policy_pytorch_ops, &r, err, sizeof err), REPLAY_BAD_INPUT);
    snprintf(want, sizeof want, "%s:%ld: truncated gzip", p, lines + 1);
    if (!strstr(err, want)) {
        char m[768];
        snprintf(m, sizeof m, "got '%s', want '%s'", err, want);
        test_fail(__FILE__, __LINE__, m);
    }
    replay_result_free(&r);
    unlink(p);
}

TEST(replay_missing_file_is_bad_input) {
    replay_result r;
    char err[512] = "";
    CHECK_EQ(replay_one("/nonexistent/x.trace.gz", &policy_pytorch_ops, &r, err, sizeof err),
             REPLAY_BAD_INPUT);
    CHECK(strstr(err, "cannot open") != NULL);
    replay_result_free(&r);
}

/* ---------------------------------------------------------------- headers */

static char *json_of(const replay_result *r, const replay_policy_result *p) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    report_json(f, r, p);
    fclose(f);
    return buf;
}

TEST(replay_missing_header_keys_are_null) {
    /* No header keys at all, a comment that is no key, a CRLF line, no final newline. */
    const char *path = temp_trace("# vmstitch-trace v1\n# just a comment\na 1 100 0\r\n"
                                  "a 2 3000000 3\nf 1",
                                  false);
    REQUIRE(path);
    replay_result r;
    char err[512] = "";
    REQUIRE(replay_one(path, &policy_pytorch_ops, &r, err, sizeof err) == REPLAY_OK);
    CHECK_EQ(r.events, 3);
    CHECK_EQ(r.live_at_end, 1);
    CHECK_EQ(r.peak_live_bytes, 3000100);
    CHECK_EQ(r.header.pytorch_peak_reserved, -1);
    CHECK(r.header.pytorch_run_seconds < 0);
    char *js = json_of(&r, &r.policy[0]);
    REQUIRE(js);
    const char *want[] = {"\"run_seconds\":null",
                          "\"workload\":null",
                          "\"gpu_peak_reserved_bytes\":null",
                          "\"modeled_vmm_share_of_run\":null",
                          "\"pytorch_peak_reserved\":null",
                          "\"efficiency\":0."};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(js, want[i])) {
            char m[256];
            snprintf(m, sizeof m, "JSON lacks %s", want[i]);
            test_fail(__FILE__, __LINE__, m);
        }
    }
    free(js);
    replay_result_free(&r);
    unlink(path);
}

TEST(replay_header_values_are_parsed) {
    const char *path = temp_trace("# vmstitch-trace v1\n# workload demo run\n"
                                  "# pytorch_peak_reserved 2097152\n"
                                  "# events 2 allocs 1 live_at_end 1\n"
                                  "# pytorch_run_seconds 2.50\n# some_future_key 1 2 3\n"
                                  "a 0 100 0\nf 0\n",
                                  true);
    REQUIRE(path);
    replay_result r;
    char err[512] = "";
    REQUIRE(replay_one(path, &policy_pytorch_ops, &r, err, sizeof err) == REPLAY_OK);
    CHECK(strcmp(r.header.workload, "demo run") == 0);
    CHECK_EQ(r.header.pytorch_peak_reserved, 2097152);
    CHECK_EQ(r.header.events, 2);
    CHECK_EQ(r.header.allocs, 1);
    CHECK_EQ(r.header.live_at_end, 1);
    CHECK(fabs(r.header.pytorch_run_seconds - 2.5) < 1e-12);
    CHECK_EQ(r.policy[0].peak_reserved_bytes, 2097152);
    char *js = json_of(&r, &r.policy[0]);
    REQUIRE(js);
    CHECK(strstr(js, "\"run_seconds\":2.5") != NULL);
    CHECK(strstr(js, "\"gpu_peak_reserved_bytes\":2097152") != NULL);
    CHECK(strstr(js, "\"workload\":\"demo run\"") != NULL);
    free(js);
    replay_result_free(&r);
    unlink(path);
}

/* ---------------------------------------------------------------- emulation rules */

static uint64_t peak_of(const char *text, const policy_ops *ops, policy_counters *c) {
    const char *path = temp_trace(text, false);
    if (!path) return 0;
    replay_result r;
    char err[512] = "";
    uint64_t peak = 0;
    if (replay_one(path, ops, &r, err, sizeof err) == REPLAY_OK) {
        peak = r.policy[0].peak_reserved_bytes;
        if (c) *c = r.policy[0].counters;
    } else {
        test_fail(__FILE__, __LINE__, err);
    }
    replay_result_free(&r);
    unlink(path);
    return peak;
}

#define MIB (1ull << 20)

TEST(replay_pytorch_segment_sizes) {
    const policy_ops *pt = &policy_pytorch_ops;
    /* <= 1 MiB: a 2 MiB small segment; > 1 MiB and < 10 MiB: 20 MiB; else rounded to 2 MiB */
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 1 0\n", pt, NULL), 2 * MIB);
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 1048576 0\n", pt, NULL), 2 * MIB);
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 1048577 0\n", pt, NULL), 20 * MIB);
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 10485248 0\n", pt, NULL), 20 * MIB);
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 10485760 0\n", pt, NULL), 10 * MIB);
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 10485761 0\n", pt, NULL), 12 * MIB);
    /* small blocks split down to 512 B: four 512 KiB requests share one 2 MiB segment */
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 524288 0\na 1 524288 0\na 2 524288 0\n"
                     "a 3 524288 0\n",
                     pt, NULL),
             2 * MIB);
    /* a large block is split only when more than 1 MiB remains: 19 MiB + 1 MiB need two */
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 19922944 0\na 1 1048577 0\n", pt, NULL), 40 * MIB);
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 19923456 0\na 1 1048577 0\n", pt, NULL), 40 * MIB);
    /* ... and split when more remains: two 3 MiB requests share one 20 MiB segment */
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 3145728 0\na 1 3145728 0\n", pt, NULL), 20 * MIB);
    /* merge on free: after both 3 MiB blocks are freed, 19 MiB fits in the same segment */
    policy_counters c;
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 3145728 0\na 1 3145728 0\nf 0\nf 1\n"
                     "a 2 19922944 0\n",
                     pt, &c),
             20 * MIB);
    CHECK_EQ(c.cuda_malloc, 1);
    /* streams do not share blocks */
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 100 0\nf 0\na 1 100 1\n", pt, NULL), 4 * MIB);
}

TEST(replay_pytorch_releases_free_segments_on_out_of_memory) {
    /* 60 GiB, freed, then 70 GiB on an 80 GiB device: the first segment is cudaFree'd. */
    policy_counters c;
    uint64_t peak = peak_of("# vmstitch-trace v1\na 0 64424509440 0\nf 0\na 1 75161927680 0\n",
                            &policy_pytorch_ops, &c);
    CHECK_EQ(peak, 75161927680ull);
    CHECK_EQ(c.cuda_malloc, 2);
    CHECK_EQ(c.cuda_free, 1);
}

TEST(replay_expandable_pages) {
    const policy_ops *ex = &policy_expandable_ops;
    policy_counters c;
    /* small pool: 2 MiB pages */
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 100 0\n", ex, &c), 2 * MIB);
    CHECK_EQ(c.create, 1);
    CHECK_EQ(c.map, 1);
    CHECK_EQ(c.set_access, 1);
    CHECK_EQ(c.reserve, 1);
    /* large pool: 20 MiB pages, and a request maps only what it needs */
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 2097152 0\n", ex, NULL), 20 * MIB);
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 41943040 0\n", ex, NULL), 40 * MIB);
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 41943041 0\n", ex, NULL), 60 * MIB);
    /* the free tail grows instead of a new segment: 15 + 15 MiB fit in 40 MiB */
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 15728640 0\na 1 15728640 0\n", ex, &c), 40 * MIB);
    CHECK_EQ(c.reserve, 1);
    /* freed pages stay mapped: a larger request after a free grows from the free tail */
    CHECK_EQ(peak_of("# vmstitch-trace v1\na 0 15728640 0\nf 0\na 1 31457280 0\n", ex, NULL),
             40 * MIB);
}

TEST(replay_halfway_splits_modeled_cost) {
    /* 2 events: the first (first half) creates a segment, the second reuses it. */
    const char *path = temp_trace("# vmstitch-trace v1\n# pytorch_run_seconds 1\n"
                                  "a 0 100 0\na 1 100 0\n",
                                  false);
    REQUIRE(path);
    replay_result r;
    char err[512] = "";
    REQUIRE(replay_one(path, &policy_pytorch_ops, &r, err, sizeof err) == REPLAY_OK);
    const replay_policy_result *p = &r.policy[0];
    CHECK(p->counters.modeled_seconds > 0);
    CHECK(fabs(p->modeled_seconds_first_half - p->counters.modeled_seconds) < 1e-15);
    CHECK(replay_modeled_second_half(p) == 0.0);
    CHECK(fabs(replay_share_of_run(&r, p) - p->counters.modeled_seconds) < 1e-15);
    replay_result_free(&r);
    unlink(path);
    /* Now the second event needs a second segment: half the cost is in the second half. */
    path = temp_trace("# vmstitch-trace v1\na 0 100 0\na 1 2097152 1\n", false);
    REQUIRE(path);
    REQUIRE(replay_one(path, &policy_pytorch_ops, &r, err, sizeof err) == REPLAY_OK);
    p = &r.policy[0];
    CHECK(replay_modeled_second_half(p) > 0);
    CHECK(p->modeled_seconds_first_half > 0);
    CHECK(isnan(replay_share_of_run(&r, p)));
    replay_result_free(&r);
    unlink(path);
}

/* ---------------------------------------------------------------- the bundled traces */

static void fidelity(const policy_ops *ops, double tolerance) {
    for (size_t i = 0; i < NBUNDLED; i++) {
        replay_result r;
        char err[512] = "";
        replay_status st = replay_one(bundled[i], ops, &r, err, sizeof err);
        if (st != REPLAY_OK) {
            test_fail(__FILE__, __LINE__, err);
            replay_result_free(&r);
            continue;
        }
        const replay_policy_result *p = &r.policy[0];
        int64_t gpu = replay_header_peak_reserved(&r, p);
        CHECK(gpu > 0);
        double dev = gpu > 0 ? (double)p->peak_reserved_bytes / (double)gpu - 1.0 : 1.0;
        if (!(fabs(dev) <= tolerance)) {
            char m[256];
            snprintf(m, sizeof m, "%s %s: replayed %llu vs GPU %lld (%+.2f%%)", bundled[i],
                     ops->name, (unsigned long long)p->peak_reserved_bytes, (long long)gpu,
                     100 * dev);
            test_fail(__FILE__, __LINE__, m);
        }
        CHECK_EQ(p->ooms, 0);
        replay_result_free(&r);
    }
}

TEST(replay_pytorch_matches_gpu_within_3pct) {
    fidelity(&policy_pytorch_ops, 0.03);
}

TEST(replay_expandable_matches_gpu_within_5pct) {
    fidelity(&policy_expandable_ops, 0.05);
}

TEST(replay_vmstitch_reserves_less_than_pytorch) {
    const policy_ops *pols[2] = {&policy_pytorch_ops, &policy_vmstitch_ops};
    for (size_t i = 0; i < NBUNDLED; i++) {
        replay_result r;
        char err[512] = "";
        if (replay_trace(bundled[i], pols, 2, NULL, &r, err, sizeof err) != REPLAY_OK) {
            test_fail(__FILE__, __LINE__, err);
            replay_result_free(&r);
            continue;
        }
        if (!(r.policy[1].peak_reserved_bytes < r.policy[0].peak_reserved_bytes)) {
            char m[256];
            snprintf(m, sizeof m, "%s: vmstitch %llu >= pytorch %llu", bundled[i],
                     (unsigned long long)r.policy[1].peak_reserved_bytes,
                     (unsigned long long)r.policy[0].peak_reserved_bytes);
            test_fail(__FILE__, __LINE__, m);
        }
        CHECK(r.policy[1].peak_reserved_bytes >= r.peak_live_bytes);
        CHECK_EQ(r.policy[1].ooms, 0);
        CHECK_EQ(r.policy[1].counters.errors, 0);
        replay_result_free(&r);
    }
}

TEST(replay_series_is_bounded_and_keeps_peaks) {
    replay_result r;
    char err[512] = "";
    REQUIRE(replay_one("data/traces/opt350-gen.trace.gz", &policy_expandable_ops, &r, err,
                       sizeof err) == REPLAY_OK);
    CHECK_EQ(r.points, REPLAY_MAX_POINTS);
    uint64_t live_max = 0, reserved_max = 0;
    for (uint32_t k = 0; k < r.points; k++) {
        if (r.live_series[k] > live_max) live_max = r.live_series[k];
        if (r.policy[0].reserved_series[k] > reserved_max)
            reserved_max = r.policy[0].reserved_series[k];
    }
    CHECK_EQ(live_max, r.peak_live_bytes);
    CHECK_EQ(reserved_max, r.policy[0].peak_reserved_bytes);
    CHECK_EQ(r.events, r.allocs + r.frees);
    replay_result_free(&r);
}

TEST(replay_reader_memory_follows_live_allocations) {
    /* 400k events, never more than 4 live, IDs with gaps (each gap would be one interval of
     * the seen-ID set if it were not capped by the live count): the reader stays small. */
    size_t cap = 400000 * 24 + 64, n = 0;
    char *text = malloc(cap);
    REQUIRE(text);
    n += (size_t)snprintf(text + n, cap - n, "# vmstitch-trace v1\n");
    for (long i = 0; i < 200000; i++) {
        long id = i * 3;
        n += (size_t)snprintf(text + n, cap - n, "a %ld %ld 0\n", id, 512 + (i % 4096));
        if (i >= 3) n += (size_t)snprintf(text + n, cap - n, "f %ld\n", id - 9);
    }
    const char *path = temp_trace(text, false);
    free(text);
    REQUIRE(path);
    char err[512] = "";
    trace_reader *tr = trace_open(path, false, err, sizeof err);
    REQUIRE(tr);
    trace_event ev;
    size_t max_mem = 0;
    long events = 0;
    trace_status st;
    while ((st = trace_next(tr, &ev)) == TRACE_EVENT) {
        events++;
        if ((events & 1023) == 0 && trace_memory_bytes(tr) > max_mem)
            max_mem = trace_memory_bytes(tr);
        CHECK(ev.slot < 8);
    }
    CHECK_EQ(st, TRACE_END);
    CHECK(trace_slot_limit(tr) <= 4);
    CHECK(max_mem < 512 * 1024); /* the 64 KiB line buffer, <= 4096 interval nodes, tables */
    trace_close(tr);
    unlink(path);
}

/* ---------------------------------------------------------------- data structures */

TEST(replay_ordset_matches_a_sorted_array) {
    enum { N = 3000 };
    static ordset_node nodes[N];
    static bool in[N];
    ordset s;
    ordset_init(&s, 42);
    uint64_t rng = 7;
    memset(in, 0, sizeof in);
    for (int i = 0; i < N; i++) {
        nodes[i].key[0] = i % 3;
        nodes[i].key[1] = test_rand(&rng) % 500;
        nodes[i].key[2] = (uint64_t)i;
    }
    for (int step = 0; step < 40000; step++) {
        int i = (int)(test_rand(&rng) % N);
        if (in[i])
            ordset_erase(&s, &nodes[i]);
        else
            ordset_insert(&s, &nodes[i]);
        in[i] = !in[i];
        if (step % 97 == 0) {
            uint64_t k0 = test_rand(&rng) % 3, k1 = test_rand(&rng) % 520;
            /* brute-force lower bound */
            ordset_node *best = NULL;
            for (int j = 0; j < N; j++) {
                if (!in[j]) continue;
                ordset_node *n = &nodes[j];
                bool ge = n->key[0] != k0 ? n->key[0] > k0 : n->key[1] >= k1;
                if (!ge) continue;
                if (!best || n->key[0] < best->key[0] ||
                    (n->key[0] == best->key[0] &&
                     (n->key[1] < best->key[1] ||
                      (n->key[1] == best->key[1] && n->key[2] < best->key[2]))))
                    best = n;
            }
            CHECK(ordset_lower_bound(&s, k0, k1, 0) == best);
        }
    }
    size_t count = 0;
    uint64_t prev[3] = {0, 0, 0};
    for (ordset_node *n = ordset_first(&s); n; n = ordset_next(&s, n)) {
        if (count) CHECK(memcmp(prev, n->key, sizeof prev) != 0);
        memcpy(prev, n->key, sizeof prev);
        count++;
    }
    CHECK_EQ(count, s.count);
}

TEST(replay_idmap_and_idset) {
    idmap m;
    REQUIRE(idmap_init(&m));
    idset seen;
    idset_init(&seen);
    uint64_t rng = 99;
    enum { N = 20000 };
    static bool live[N], ever[N];
    memset(live, 0, sizeof live);
    memset(ever, 0, sizeof ever);
    for (int step = 0; step < 100000; step++) {
        uint64_t id = test_rand(&rng) % N;
        if (live[id]) {
            uint64_t size;
            uint32_t slot;
            CHECK(idmap_remove(&m, id, &size, &slot));
            CHECK_EQ(size, id * 2 + 1);
            live[id] = false;
        } else if (!ever[id]) {
            uint32_t slot;
            CHECK(idmap_add(&m, id, id * 2 + 1, &slot));
            CHECK(idset_add(&seen, id));
            live[id] = ever[id] = true;
        }
        if (step % 1000 == 0) {
            for (uint64_t j = 0; j < N; j += 37) {
                CHECK((idmap_find(&m, j) != NULL) == live[j]);
                CHECK(idset_contains(&seen, j) == ever[j]);
            }
        }
    }
    idset_destroy(&seen);
    idmap_destroy(&m);
}
