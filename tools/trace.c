/* The trace reader of trace.h: a gzread-fed line buffer, a strict line parser and the
 * bookkeeping that turns trace IDs into dense slots. zlib reads plain text transparently, so
 * one path serves both; truncated gzip is detected from gzerror() at end of input, and
 * reported at the line that was cut off.
 */
#include "trace.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "idmap.h"
#include "idset.h"

#define TRACE_BUF_BYTES (64 * 1024)

struct trace_reader {
    gzFile gz;
    char *path;
    bool warnings;
    char *buf;
    size_t start, end; /* unread bytes are buf[start, end) */
    bool eof;
    bool discard_line; /* the rest of an over-long comment line is being skipped */
    uint64_t line;
    idmap live;
    idset seen;
    uint64_t live_bytes;
    size_t peak_live_count;
    bool saturation_warned;
    trace_header header;
    char err[512];
};

void trace_header_clear(trace_header *h) {
    memset(h, 0, sizeof *h);
    h->pytorch_peak_allocated = h->pytorch_peak_reserved = -1;
    h->expandable_segments_peak_reserved = -1;
    h->events = h->allocs = h->live_at_end = h->pytorch_steps = -1;
    h->pytorch_step_median_s = h->pytorch_run_seconds = -1.0;
}

static void set_error(trace_reader *r, uint64_t line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void set_error(trace_reader *r, uint64_t line, const char *fmt, ...) {
    int n = snprintf(r->err, sizeof r->err, "%s:%llu: ", r->path, (unsigned long long)line);
    if (n < 0 || (size_t)n >= sizeof r->err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err + n, sizeof r->err - (size_t)n, fmt, ap);
    va_end(ap);
}

static void warn(trace_reader *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void warn(trace_reader *r, const char *fmt, ...) {
    if (!r->warnings) return;
    fprintf(stderr, "%s:%llu: warning: ", r->path, (unsigned long long)r->line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

trace_reader *trace_open(const char *path, bool warnings, char *err, size_t err_cap) {
    trace_reader *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, err_cap, "%s: out of host memory", path);
        return NULL;
    }
    r->path = strdup(path);
    r->buf = malloc(TRACE_BUF_BYTES);
    bool maps = idmap_init(&r->live);
    idset_init(&r->seen);
    if (!r->path || !r->buf || !maps) {
        snprintf(err, err_cap, "%s: out of host memory", path);
        trace_close(r);
        return NULL;
    }
    errno = 0;
    r->gz = gzopen(path, "rb");
    if (!r->gz) {
        snprintf(err, err_cap, "%s: cannot open: %s", path,
                 errno ? strerror(errno) : "out of memory");
        trace_close(r);
        return NULL;
    }
    /* zlib's default buffer: on corrupt data gzread drops what its internal buffer held
     * (up to 16 KiB of text), so a small buffer keeps the reported line close. */
    r->warnings = warnings;
    trace_header_clear(&r->header);
    return r;
}

void trace_close(trace_reader *r) {
    if (!r) return;
    if (r->gz) gzclose(r->gz);
    idmap_destroy(&r->live);
    idset_destroy(&r->seen);
    free(r->buf);
    free(r->path);
    free(r);
}

const char *trace_error(const trace_reader *r) {
    return r->err;
}
const trace_header *trace_header_get(const trace_reader *r) {
    return &r->header;
}
uint64_t trace_line(const trace_reader *r) {
    return r->line;
}
uint64_t trace_live_bytes(const trace_reader *r) {
    return r->live_bytes;
}
uint64_t trace_live_count(const trace_reader *r) {
    return r->live.count;
}
uint32_t trace_slot_limit(const trace_reader *r) {
    return r->live.next_slot;
}

size_t trace_memory_bytes(const trace_reader *r) {
    return sizeof *r + TRACE_BUF_BYTES + idmap_memory_bytes(&r->live) +
           r->seen.tree.count * (sizeof(ordset_node) + sizeof(uint64_t));
}

/* ---------------------------------------------------------------- lines */

/* zlib's message without the "PATH: " it puts in front. */
static const char *zlib_message(const trace_reader *r, const char *msg) {
    if (!msg || !*msg) return "read error";
    size_t n = strlen(r->path);
    if (strncmp(msg, r->path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') return msg + n + 2;
    return msg;
}

/* 1: *line and *len hold the next line (without '\n'); 0: end of input; -1: error. */
static int read_line(trace_reader *r, char **line, size_t *len) {
    for (;;) {
        char *nl = memchr(r->buf + r->start, '\n', r->end - r->start);
        if (r->discard_line) {
            if (nl) {
                r->start = (size_t)(nl + 1 - r->buf);
                r->discard_line = false;
                continue;
            }
            r->start = r->end;
        } else if (nl) {
            *line = r->buf + r->start;
            *len = (size_t)(nl - *line);
            r->start += *len + 1;
            r->line++;
            return 1;
        }
        if (r->eof) {
            int errnum = Z_OK;
            const char *msg = gzerror(r->gz, &errnum);
            if (errnum != Z_OK) {
                set_error(r, r->line + 1, "%s (%s)",
                          errnum == Z_BUF_ERROR ? "truncated gzip data"
                                                : "corrupt gzip data at or shortly after this line",
                          zlib_message(r, msg));
                return -1;
            }
            if (r->end > r->start && !r->discard_line) { /* last line, no final newline */
                *line = r->buf + r->start;
                *len = r->end - r->start;
                r->start = r->end;
                r->line++;
                return 1;
            }
            return 0;
        }
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        }
        if (r->end == TRACE_BUF_BYTES) {
            if (r->buf[0] != '#') {
                set_error(r, r->line + 1, "line longer than %d bytes", TRACE_BUF_BYTES);
                return -1;
            }
            /* An over-long comment: hand out its beginning and skip the rest. */
            *line = r->buf;
            *len = r->end;
            r->start = r->end;
            r->discard_line = true;
            r->line++;
            return 1;
        }
        int n = gzread(r->gz, r->buf + r->end, (unsigned)(TRACE_BUF_BYTES - r->end));
        if (n < 0) {
            int errnum = Z_OK;
            const char *msg = gzerror(r->gz, &errnum);
            set_error(r, r->line + 1, "%s (%s)",
                      errnum == Z_DATA_ERROR ? "corrupt gzip data at or shortly after this line"
                                             : "unreadable input",
                      errnum == Z_ERRNO ? strerror(errno) : zlib_message(r, msg));
            return -1;
        }
        if (n == 0) r->eof = true;
        r->end += (size_t)n;
    }
}

/* ---------------------------------------------------------------- fields */

typedef struct cursor {
    const char *p, *end;
} cursor;

static bool is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static void skip_blanks(cursor *c) {
    while (c->p < c->end && is_blank(*c->p))
        c->p++;
}

/* The next token (possibly empty) without consuming it. */
static size_t token_len(const cursor *c) {
    const char *q = c->p;
    while (q < c->end && !is_blank(*q))
        q++;
    return (size_t)(q - c->p);
}

/* A printable copy of the next token for error messages. */
static const char *token_show(const cursor *c, char *out, size_t cap) {
    size_t n = token_len(c), i;
    for (i = 0; i < n && i + 4 < cap; i++) {
        unsigned char ch = (unsigned char)c->p[i];
        out[i] = isprint(ch) ? (char)ch : '?';
    }
    if (i < n && cap >= 4) {
        out[i++] = '.', out[i++] = '.', out[i++] = '.';
    }
    out[i] = '\0';
    return out;
}

typedef enum num_status { NUM_OK, NUM_MISSING, NUM_BAD, NUM_RANGE } num_status;

static num_status parse_u64(cursor *c, uint64_t *v) {
    skip_blanks(c);
    size_t n = token_len(c);
    if (n == 0) return NUM_MISSING;
    uint64_t x = 0;
    bool overflow = false;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)c->p[i] - '0';
        if (d > 9) return NUM_BAD;
        if (x > (UINT64_MAX - d) / 10) overflow = true;
        x = x * 10 + d;
    }
    if (overflow) return NUM_RANGE; /* nothing consumed on error: the caller shows the token */
    c->p += n;
    *v = x;
    return NUM_OK;
}

static void copy_text(char *dst, const cursor *c) {
    const char *b = c->p, *e = c->end;
    while (e > b && is_blank(e[-1]))
        e--;
    size_t n = (size_t)(e - b);
    if (n >= TRACE_TEXT_MAX) n = TRACE_TEXT_MAX - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)b[i];
        dst[i] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
    }
    dst[n] = '\0';
}

static bool key_is(const char *k, size_t klen, const char *name) {
    return strlen(name) == klen && memcmp(k, name, klen) == 0;
}

static void header_int(trace_reader *r, cursor *c, const char *name, int64_t *dst) {
    uint64_t v;
    char tok[40];
    skip_blanks(c);
    token_show(c, tok, sizeof tok);
    if (parse_u64(c, &v) != NUM_OK || v > INT64_MAX) {
        warn(r, "header '%s' has value '%s', not a count; treated as absent", name, tok);
        return;
    }
    *dst = (int64_t)v;
}

static void header_real(trace_reader *r, cursor *c, const char *name, double *dst) {
    char tok[64];
    skip_blanks(c);
    size_t n = token_len(c);
    token_show(c, tok, sizeof tok);
    char *end = NULL;
    double v = n < sizeof tok ? strtod(tok, &end) : NAN;
    if (n == 0 || n >= sizeof tok || !end || *end || !isfinite(v) || v < 0) {
        warn(r, "header '%s' has value '%s', not a number of seconds; treated as absent", name,
             tok);
        return;
    }
    c->p += n;
    *dst = v;
}

static void parse_header(trace_reader *r, cursor *c) {
    skip_blanks(c);
    const char *key = c->p;
    size_t klen = token_len(c);
    c->p += klen;
    skip_blanks(c);
    trace_header *h = &r->header;
    if (key_is(key, klen, "workload"))
        copy_text(h->workload, c);
    else if (key_is(key, klen, "device"))
        copy_text(h->device, c);
    else if (key_is(key, klen, "torch"))
        copy_text(h->torch, c);
    else if (key_is(key, klen, "recorded_by"))
        copy_text(h->recorded_by, c);
    else if (key_is(key, klen, "pytorch_peak_allocated"))
        header_int(r, c, "pytorch_peak_allocated", &h->pytorch_peak_allocated);
    else if (key_is(key, klen, "pytorch_peak_reserved"))
        header_int(r, c, "pytorch_peak_reserved", &h->pytorch_peak_reserved);
    else if (key_is(key, klen, "expandable_segments_peak_reserved"))
        header_int(r, c, "expandable_segments_peak_reserved",
                   &h->expandable_segments_peak_reserved);
    else if (key_is(key, klen, "pytorch_steps"))
        header_int(r, c, "pytorch_steps", &h->pytorch_steps);
    else if (key_is(key, klen, "pytorch_step_median_s"))
        header_real(r, c, "pytorch_step_median_s", &h->pytorch_step_median_s);
    else if (key_is(key, klen, "pytorch_run_seconds"))
        header_real(r, c, "pytorch_run_seconds", &h->pytorch_run_seconds);
    else if (key_is(key, klen, "events")) {
        /* "# events N allocs N live_at_end N": the first value, then key/value pairs. */
        header_int(r, c, "events", &h->events);
        for (;;) {
            skip_blanks(c);
            const char *k2 = c->p;
            size_t k2len = token_len(c);
            if (k2len == 0) break;
            c->p += k2len;
            if (key_is(k2, k2len, "allocs"))
                header_int(r, c, "allocs", &h->allocs);
            else if (key_is(k2, k2len, "live_at_end"))
                header_int(r, c, "live_at_end", &h->live_at_end);
            else {
                skip_blanks(c);
                c->p += token_len(c);
            }
        }
    }
    /* Unknown keys are ignored, as the format says. */
}

/* ---------------------------------------------------------------- events */

static const char *num_problem(num_status s) {
    return s == NUM_RANGE ? "is out of range" : "is not a number";
}

/* Anything after the last field is an error; `after` names that field (for the message). */
static bool finish_line(trace_reader *r, cursor *c, const char *after, uint64_t id) {
    skip_blanks(c);
    if (c->p == c->end) return true;
    char tok[40];
    set_error(r, r->line, "unexpected '%s' after %s %llu", token_show(c, tok, sizeof tok), after,
              (unsigned long long)id);
    return false;
}

/* Messages are formatted only on error: parse_u64 leaves the cursor on a bad token.
 * parse_id reads the ID of an event; its messages name the event ("allocation" or "free") and
 * the ID ("allocation ID" or "freed ID"). */
static bool parse_id(trace_reader *r, cursor *c, const char *event, const char *id_name,
                     uint64_t *id) {
    char tok[40];
    num_status s = parse_u64(c, id);
    if (s == NUM_OK && *id < IDMAP_MAX_ID) return true;
    if (s == NUM_MISSING)
        set_error(r, r->line, "%s without an ID", event);
    else if (s == NUM_OK)
        set_error(r, r->line, "%s %llu is out of range", id_name, (unsigned long long)*id);
    else
        set_error(r, r->line, "%s '%s' %s", id_name, token_show(c, tok, sizeof tok),
                  num_problem(s));
    return false;
}

static trace_status parse_alloc(trace_reader *r, cursor *c, trace_event *ev) {
    char tok[40];
    uint64_t id, size, stream;
    num_status s;
    if (!parse_id(r, c, "allocation", "allocation ID", &id)) return TRACE_ERROR;
    if ((s = parse_u64(c, &size)) != NUM_OK) {
        if (s == NUM_MISSING)
            set_error(r, r->line, "allocation of ID %llu without a size", (unsigned long long)id);
        else
            set_error(r, r->line, "size '%s' of ID %llu %s", token_show(c, tok, sizeof tok),
                      (unsigned long long)id, num_problem(s));
        return TRACE_ERROR;
    }
    if (size == 0) {
        set_error(r, r->line, "size 0 for ID %llu (sizes must be > 0)", (unsigned long long)id);
        return TRACE_ERROR;
    }
    if (size > TRACE_MAX_SIZE_BYTES) {
        set_error(r, r->line, "size %llu of ID %llu is too large (over 1 PiB)",
                  (unsigned long long)size, (unsigned long long)id);
        return TRACE_ERROR;
    }
    if ((s = parse_u64(c, &stream)) != NUM_OK || stream > TRACE_MAX_STREAM) {
        if (s == NUM_MISSING)
            set_error(r, r->line, "allocation of ID %llu without a stream", (unsigned long long)id);
        else if (s == NUM_OK)
            set_error(r, r->line, "stream %llu of ID %llu is out of range",
                      (unsigned long long)stream, (unsigned long long)id);
        else
            set_error(r, r->line, "stream '%s' of ID %llu %s", token_show(c, tok, sizeof tok),
                      (unsigned long long)id, num_problem(s));
        return TRACE_ERROR;
    }
    if (!finish_line(r, c, "the stream of ID", id)) return TRACE_ERROR;

    if (idmap_find(&r->live, id)) {
        set_error(r, r->line, "duplicate ID %llu (it is still live)", (unsigned long long)id);
        return TRACE_ERROR;
    }
    if (idset_contains(&r->seen, id)) {
        set_error(r, r->line,
                  "duplicate ID %llu (allocated and freed earlier; IDs are never reused)",
                  (unsigned long long)id);
        return TRACE_ERROR;
    }
    uint64_t live;
    if (__builtin_add_overflow(r->live_bytes, size, &live)) {
        set_error(r, r->line, "live bytes exceed 2^64");
        return TRACE_ERROR;
    }
    uint32_t slot;
    if (!idmap_add(&r->live, id, size, &slot)) {
        set_error(r, r->line, "out of host memory for the live-ID table");
        return TRACE_ERROR;
    }
    if (r->live.count > r->peak_live_count) r->peak_live_count = r->live.count;
    size_t cap = 4 * r->peak_live_count;
    r->seen.max_nodes = cap > 4096 ? cap : 4096;
    if (!idset_add(&r->seen, id) && r->seen.saturated && !r->saturation_warned) {
        r->saturation_warned = true;
        warn(r, "IDs are far from sequential: from here on, reuse of a freed ID is not detected");
    }
    r->live_bytes = live;
    ev->size_bytes = size;
    ev->slot = slot;
    ev->stream = (uint32_t)stream;
    return TRACE_EVENT;
}

static trace_status parse_free(trace_reader *r, cursor *c, trace_event *ev) {
    uint64_t id, size;
    uint32_t slot;
    if (!parse_id(r, c, "free", "freed ID", &id)) return TRACE_ERROR;
    if (!finish_line(r, c, "the ID of free", id)) return TRACE_ERROR;
    if (!idmap_remove(&r->live, id, &size, &slot)) {
        if (idset_contains(&r->seen, id))
            set_error(r, r->line, "free of ID %llu, which was already freed",
                      (unsigned long long)id);
        else if (r->seen.saturated)
            set_error(r, r->line, "free of unknown or already freed ID %llu",
                      (unsigned long long)id);
        else
            set_error(r, r->line, "free of unknown ID %llu (never allocated)",
                      (unsigned long long)id);
        return TRACE_ERROR;
    }
    r->live_bytes -= size;
    ev->size_bytes = 0;
    ev->slot = slot;
    ev->stream = 0;
    return TRACE_EVENT;
}

trace_status trace_next(trace_reader *r, trace_event *ev) {
    char *line;
    size_t len;
    int got;
    while ((got = read_line(r, &line, &len)) == 1) {
        cursor c = {line, line + len};
        if (r->line == 1) {
            static const char magic[] = "# vmstitch-trace";
            size_t mlen = sizeof magic - 1;
            if (len < mlen || memcmp(line, magic, mlen) != 0 ||
                (len > mlen && !is_blank(line[mlen]))) {
                set_error(r, 1,
                          "not a vmstitch trace (the first line must be '# vmstitch-trace v1')");
                return TRACE_ERROR;
            }
            c.p += mlen;
            skip_blanks(&c);
            char tok[40];
            if (token_len(&c) != 2 || memcmp(c.p, "v1", 2) != 0) {
                set_error(r, 1, "unsupported trace version '%s' (this tool reads v1)",
                          token_show(&c, tok, sizeof tok));
                return TRACE_ERROR;
            }
            continue;
        }
        skip_blanks(&c);
        if (c.p == c.end) continue; /* blank line */
        char op = *c.p;
        size_t oplen = token_len(&c);
        if (op == '#') {
            c.p++;
            parse_header(r, &c);
            continue;
        }
        if (oplen == 1 && op == 'a') {
            c.p++;
            return parse_alloc(r, &c, ev);
        }
        if (oplen == 1 && op == 'f') {
            c.p++;
            return parse_free(r, &c, ev);
        }
        char tok[40];
        set_error(r, r->line, "unknown op '%s' (expected 'a', 'f' or a '#' comment)",
                  token_show(&c, tok, sizeof tok));
        return TRACE_ERROR;
    }
    if (got == 0 && r->line == 0) {
        set_error(r, 1, "empty input: not a vmstitch trace");
        return TRACE_ERROR;
    }
    return got == 0 ? TRACE_END : TRACE_ERROR;
}
