/* libFuzzer target: the trace reader of the replay tool (tools/trace.h) on arbitrary bytes.
 * The input becomes a file (a memfd opened by path, since trace_open takes a path): as is when
 * the first byte is even, gzip-compressed first when it is odd, so that both the plain-text
 * path and zlib's path get well-formed streams as well as corrupt ones.
 *
 * The reader's contract is checked against an independent model of the events it returns: an
 * allocation names a slot that is free, with a size in (0, TRACE_MAX_SIZE_BYTES]; a free names
 * a live slot; every slot is below trace_slot_limit; trace_live_count and trace_live_bytes
 * equal the model's; the line count never goes backwards; an error comes with a message of the
 * form FILE:LINE: ...; after TRACE_END the reader keeps returning it (and after TRACE_ERROR
 * another call does not crash).
 * Any violation prints one line and traps. Single-threaded.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "trace.h"

#define DIE(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, "fuzz_trace: ");                                                           \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        __builtin_trap();                                                                          \
    } while (0)

#define MAX_EVENTS 200000

static int fd = -1;
static char path[64];

static int write_all(const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes data (gzip-compressed if gz) as the whole content of the memfd. */
static int put_file(const uint8_t *data, size_t size, bool gz) {
    if (fd < 0) {
        fd = memfd_create("fuzz_trace", 0);
        if (fd < 0) return -1;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) return -1;
    if (!gz) return write_all(data, size);
    uLong cap = compressBound((uLong)size) + 32;
    unsigned char *out = malloc(cap);
    if (!out) return -1;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    int rc = deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY); /* gzip wrapper */
    if (rc == Z_OK) {
        zs.next_in = (Bytef *)data;
        zs.avail_in = (uInt)size;
        zs.next_out = out;
        zs.avail_out = (uInt)cap;
        rc = deflate(&zs, Z_FINISH);
        deflateEnd(&zs);
    }
    int ok = rc == Z_STREAM_END ? write_all(out, cap - zs.avail_out) : -1;
    free(out);
    return ok;
}

typedef struct model {
    uint64_t *size; /* per slot; 0 = free */
    size_t cap;
    uint64_t live_count, live_bytes;
} model;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    if (put_file(data + 1, size - 1, data[0] & 1) != 0) return 0;
    char err[256] = "";
    trace_reader *r = trace_open(path, false, err, sizeof err);
    if (!r) {
        if (!err[0]) DIE("trace_open failed without a message");
        return 0;
    }
    model m = {0};
    trace_event ev;
    trace_status st = TRACE_EVENT;
    uint64_t last_line = 0;
    for (int n = 0; n < MAX_EVENTS; n++) {
        st = trace_next(r, &ev);
        if (trace_line(r) < last_line) DIE("line count went backwards");
        last_line = trace_line(r);
        if (st != TRACE_EVENT) break;
        if (ev.slot >= trace_slot_limit(r))
            DIE("slot %u >= slot limit %u", ev.slot, trace_slot_limit(r));
        if (ev.slot >= m.cap) {
            size_t cap = m.cap ? m.cap : 64;
            while (cap <= ev.slot)
                cap *= 2;
            uint64_t *ns = realloc(m.size, cap * sizeof *ns);
            if (!ns) DIE("out of memory in the model");
            memset(ns + m.cap, 0, (cap - m.cap) * sizeof *ns);
            m.size = ns;
            m.cap = cap;
        }
        if (ev.size_bytes) {
            if (ev.size_bytes > TRACE_MAX_SIZE_BYTES)
                DIE("size %llu over the maximum", (unsigned long long)ev.size_bytes);
            if (m.size[ev.slot]) DIE("allocation into live slot %u", ev.slot);
            m.size[ev.slot] = ev.size_bytes;
            m.live_count++;
            m.live_bytes += ev.size_bytes;
        } else {
            if (!m.size[ev.slot]) DIE("free of free slot %u", ev.slot);
            m.live_bytes -= m.size[ev.slot];
            m.size[ev.slot] = 0;
            m.live_count--;
        }
        if (trace_live_count(r) != m.live_count)
            DIE("live count %llu, model %llu", (unsigned long long)trace_live_count(r),
                (unsigned long long)m.live_count);
        if (trace_live_bytes(r) != m.live_bytes) DIE("live bytes differ from the model");
    }
    if (st == TRACE_ERROR) {
        const char *e = trace_error(r);
        if (!e || !e[0]) DIE("TRACE_ERROR without a message");
        if (!strstr(e, path) || !strchr(e + strlen(path), ':'))
            DIE("error not in FILE:LINE form: %s", e);
    }
    if (st != TRACE_EVENT) {
        /* the end is sticky; after an error another call is allowed (any answer, no crash) */
        trace_status again = trace_next(r, &ev);
        if (st == TRACE_END && again != TRACE_END)
            DIE("trace_next returned %d after the end", (int)again);
        const trace_header *h = trace_header_get(r);
        if (h->workload[TRACE_TEXT_MAX - 1] != '\0' || h->device[TRACE_TEXT_MAX - 1] != '\0')
            DIE("header text not terminated");
    }
    (void)trace_memory_bytes(r);
    trace_close(r);
    free(m.size);
    return 0;
}
