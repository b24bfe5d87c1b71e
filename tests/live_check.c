/* Patterns and span sets (live_check.h). The pattern mixes the allocation's id with the word's
 * index, so a block that shares bytes with another, or that moved, or that holds another
 * allocation's leftovers, reads wrong. No locks: callers keep one set per thread. */
#include "live_check.h"

#include <stdlib.h>
#include <string.h>

static uint64_t live_pat_word(uint64_t id, size_t i) {
    uint64_t z = (id * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)i * 0xbf58476d1ce4e5b9ull);
    return z ^ (z >> 29);
}

void live_pat_fill(void *p, size_t n, uint64_t id) {
    uint64_t *w = p;
    size_t nw = n / 8;
    for (size_t i = 0; i < nw; i++)
        w[i] = live_pat_word(id, i);
    uint64_t last = live_pat_word(id, nw);
    memcpy((char *)p + nw * 8, &last, n % 8);
}

size_t live_pat_bad(const void *p, size_t n, uint64_t id) {
    const uint64_t *w = p;
    size_t nw = n / 8, bad = 0;
    for (size_t i = 0; i < nw; i++)
        bad += w[i] != live_pat_word(id, i);
    uint64_t last = live_pat_word(id, nw), got = 0;
    memcpy(&got, (const char *)p + nw * 8, n % 8);
    if (n % 8 && memcmp(&got, &last, n % 8) != 0) bad++;
    return bad;
}

void live_stamp_fill(void *p, size_t n, uint64_t id) {
    for (size_t off = 0; off < n; off += 512) {
        uint64_t w = live_pat_word(id, off);
        memcpy((char *)p + off, &w, n - off < 8 ? n - off : 8);
    }
}

size_t live_stamp_bad(const void *p, size_t n, uint64_t id) {
    size_t bad = 0;
    for (size_t off = 0; off < n; off += 512) {
        uint64_t w = live_pat_word(id, off);
        bad += memcmp((const char *)p + off, &w, n - off < 8 ? n - off : 8) != 0;
    }
    return bad;
}

void live_span_init(live_spans *s) {
    memset(s, 0, sizeof *s);
}

void live_span_destroy(live_spans *s) {
    free(s->lo);
    free(s->hi);
    memset(s, 0, sizeof *s);
}

/* Index of the first span with lo >= key. */
static size_t lower(const live_spans *s, uintptr_t key) {
    size_t l = 0, h = s->n;
    while (l < h) {
        size_t m = l + (h - l) / 2;
        if (s->lo[m] < key)
            l = m + 1;
        else
            h = m;
    }
    return l;
}

int live_span_add(live_spans *s, const void *p, size_t n) {
    uintptr_t lo = (uintptr_t)p, hi = lo + (n ? n : 1);
    size_t i = lower(s, lo);
    if (i < s->n && s->lo[i] < hi) return -1;
    if (i > 0 && s->hi[i - 1] > lo) return -1;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        uintptr_t *nl = realloc(s->lo, cap * sizeof *nl);
        if (!nl) return -2;
        s->lo = nl;
        uintptr_t *nh = realloc(s->hi, cap * sizeof *nh);
        if (!nh) return -2;
        s->hi = nh;
        s->cap = cap;
    }
    memmove(&s->lo[i + 1], &s->lo[i], (s->n - i) * sizeof *s->lo);
    memmove(&s->hi[i + 1], &s->hi[i], (s->n - i) * sizeof *s->hi);
    s->lo[i] = lo;
    s->hi[i] = hi;
    s->n++;
    return 0;
}

int live_span_del(live_spans *s, const void *p) {
    uintptr_t lo = (uintptr_t)p;
    size_t i = lower(s, lo);
    if (i == s->n || s->lo[i] != lo) return -1;
    memmove(&s->lo[i], &s->lo[i + 1], (s->n - i - 1) * sizeof *s->lo);
    memmove(&s->hi[i], &s->hi[i + 1], (s->n - i - 1) * sizeof *s->hi);
    s->n--;
    return 0;
}
