/* Witnesses of "no two live allocations share a byte", shared by the reliability tests
 * (test_faults.c, test_threads.c, test_badinput.c) and the fuzz targets:
 *  - a pattern unique to each allocation, written over all of it (or stamped at every 512-byte
 *    boundary) at malloc and compared at free (host backend only: sim addresses must never be
 * dereferenced); two blocks that share a byte, even through two virtual addresses of one chunk,
 * break one pattern;
 *  - a span set of live [addr, addr + size) intervals that refuses an overlapping insert, so a
 *    block handed out twice within one virtual range is seen at the malloc that hands it out,
 *    on any backend.
 * Neither locks: each thread or allocator keeps its own.
 */
#ifndef VMS_TEST_LIVE_CHECK_H
#define VMS_TEST_LIVE_CHECK_H

#include <stddef.h>
#include <stdint.h>

/* Stamps: one word at every 512-byte boundary of p[0..n) (every block starts on one, and
 * chunks are mapped at granule-aligned offsets, so two live blocks that share any byte share a
 * stamped word, even through two virtual addresses). 1/64 of the cost of a full pattern. */
void live_stamp_fill(void *p, size_t n, uint64_t id);
size_t live_stamp_bad(const void *p, size_t n, uint64_t id);

/* Writes the pattern of id over p[0..n). */
void live_pat_fill(void *p, size_t n, uint64_t id);
/* Number of 8-byte words (and tail bytes) of p[0..n) that differ from the pattern of id. */
size_t live_pat_bad(const void *p, size_t n, uint64_t id);

typedef struct live_spans {
    uintptr_t *lo, *hi; /* sorted by lo; spans never overlap */
    size_t n, cap;
} live_spans;

void live_span_init(live_spans *s);
void live_span_destroy(live_spans *s);
/* Adds [p, p + n) (n 0 counts as 1). Returns 0, or -1 if it overlaps a span already there (the
 * set is left unchanged), or -2 if host memory ran out. */
int live_span_add(live_spans *s, const void *p, size_t n);
/* Removes the span starting at p. Returns 0, or -1 if there is none. */
int live_span_del(live_spans *s, const void *p);

#endif
