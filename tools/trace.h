/* Streaming reader of allocation traces (data/traces/README.md, version 1), gzip or plain text.
 *
 * The reader returns one event at a time and holds only the live allocations (idmap.h), the
 * IDs seen so far as intervals (idset.h) and a 64 KiB line buffer, so a trace of any length is
 * read in memory proportional to its peak live allocation count. Every malformed input is an
 * error "FILE:LINE: message" (unknown op, free of an unknown or freed ID, duplicate ID, size 0
 * or not a number, truncated or corrupt gzip, ...); nothing in a trace can crash the reader.
 * Header lines ('# key value') fill trace_header; keys a trace lacks stay absent (never an
 * error), and a header value that does not parse is a warning, and absent.
 * Single-threaded: one reader per thread.
 */
#ifndef VMS_TOOLS_TRACE_H
#define VMS_TOOLS_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRACE_TEXT_MAX 128

/* Integers are -1 when absent, reals are negative when absent, strings are "" when absent. */
typedef struct trace_header {
    char workload[TRACE_TEXT_MAX];
    char device[TRACE_TEXT_MAX];
    char torch[TRACE_TEXT_MAX];
    char recorded_by[TRACE_TEXT_MAX];
    int64_t pytorch_peak_allocated;
    int64_t pytorch_peak_reserved;
    int64_t expandable_segments_peak_reserved;
    int64_t events, allocs, live_at_end; /* the '# events N allocs N live_at_end N' line */
    int64_t pytorch_steps;
    double pytorch_step_median_s;
    double pytorch_run_seconds;
} trace_header;

/* One event. size_bytes > 0: allocation into slot; size_bytes == 0: free of slot. */
typedef struct trace_event {
    uint64_t size_bytes;
    uint32_t slot;
    uint32_t stream;
} trace_event;

/* Sizes above this are rejected as malformed (no device holds 1 PiB). */
#define TRACE_MAX_SIZE_BYTES (1ull << 50)
#define TRACE_MAX_STREAM 0xffffffffull

typedef struct trace_reader trace_reader;

/* Opens path. warnings: print header warnings on stderr. On failure returns NULL and writes
 * the reason into err. */
trace_reader *trace_open(const char *path, bool warnings, char *err, size_t err_cap);
void trace_close(trace_reader *r);

typedef enum trace_status {
    TRACE_EVENT = 1, /* *ev holds the next event */
    TRACE_END = 0,   /* clean end of the trace */
    TRACE_ERROR = -1 /* bad input: trace_error() says "FILE:LINE: message" */
} trace_status;

trace_status trace_next(trace_reader *r, trace_event *ev);
const char *trace_error(const trace_reader *r);
/* Header keys seen so far (all of them once trace_next has returned TRACE_END). */
const trace_header *trace_header_get(const trace_reader *r);
uint64_t trace_line(const trace_reader *r);       /* lines read so far */
uint64_t trace_live_bytes(const trace_reader *r); /* sum of live requested sizes */
uint64_t trace_live_count(const trace_reader *r);
uint32_t trace_slot_limit(const trace_reader *r); /* every slot handed out so far is below */
size_t trace_memory_bytes(const trace_reader *r); /* host bytes the reader holds */

/* Fills h with "absent" everywhere. */
void trace_header_clear(trace_header *h);

#endif
