/* Streams and events. A free is stamped with a global sequence number; each stream keeps the
 * highest sequence known to have finished on the device (completed_seq), advanced by one event
 * at a time recorded on that stream. A block freed on stream s is reusable on s at once (stream
 * order) and on any other stream once completed_seq[s] >= its stamp. This costs no event on
 * the single-stream fast path: events are recorded only when a miss wants another stream's
 * memory, when a stitched range must be unmapped, or for record_stream. Callers hold the
 * allocator lock. */
#include <stdlib.h>

#include "internal.h"

int stream_index(vms_allocator *a, vms_stream s) {
    for (int i = 0; i < a->nstreams; i++)
        if (a->streams[i].stream == s) return i;
    if (a->nstreams == VMS_MAX_STREAMS) return -1;
    stream_state *st = &a->streams[a->nstreams];
    st->stream = s;
    st->completed_seq = 0;
    st->last_free_seq = 0;
    st->inflight = NULL;
    return a->nstreams++;
}

static bool stream_settled(const vms_allocator *a, int stream, uint64_t seq) {
    return a->streams[stream].completed_seq >= seq;
}

/* Every free stamped <= seq that the streams in `mask` other than `except` made has finished.
 * Only frees stamped <= seq can be involved, so a stream's later frees do not hold it up. */
static bool frees_settled(const vms_allocator *a, uint64_t mask, int except, uint64_t seq) {
    for (int i = 0; i < a->nstreams; i++) {
        if (!(mask >> i & 1) || i == except) continue;
        const stream_state *st = &a->streams[i];
        uint64_t need = st->last_free_seq < seq ? st->last_free_seq : seq;
        if (st->completed_seq < need) return false;
    }
    return true;
}

/* The rule for every stream tag (free blocks, chunks): memory freed at seq on tag_stream (or on
 * several streams, multi) may be used on `stream` (-1: by the device at large, e.g. unmapped). */
bool tags_usable(const vms_allocator *a, int tag_stream, bool multi, uint64_t seq, int stream) {
    if (multi) return frees_settled(a, UINT64_MAX, stream, seq);
    return tag_stream == stream || stream_settled(a, tag_stream, seq);
}

bool block_usable(const vms_allocator *a, const block *b, int stream) {
    return tags_usable(a, b->stream, b->multi_stream, b->freed_seq, stream);
}

bool chunk_settled(const vms_allocator *a, const chunk *c) {
    return tags_usable(a, c->stream, c->multi_stream, c->freed_seq, -1);
}

bool range_settled(const vms_allocator *a, const range *r) {
    return frees_settled(a, r->stream_mask, -1, r->idle_seq);
}

void streams_refresh(vms_allocator *a) {
    for (int i = 0; i < a->nstreams; i++) {
        stream_state *st = &a->streams[i];
        if (st->inflight) {
            bool done = false;
            if (a->be->ops->event_query(a->be, st->inflight, &done) != VMS_OK) done = false;
            if (!done) continue;
            a->be->ops->event_destroy(a->be, st->inflight);
            st->inflight = NULL;
            if (st->inflight_seq > st->completed_seq) st->completed_seq = st->inflight_seq;
        }
        if (st->completed_seq < st->last_free_seq) {
            vms_event ev;
            if (a->be->ops->event_record(a->be, st->stream, &ev) != VMS_OK) continue;
            st->inflight = ev;
            st->inflight_seq = a->free_seq;
            bool done = false;
            if (a->be->ops->event_query(a->be, ev, &done) == VMS_OK && done) {
                a->be->ops->event_destroy(a->be, ev);
                st->inflight = NULL;
                st->completed_seq = st->inflight_seq;
            }
        }
    }
}

/* Per-stream fallback: an event on each stream with unsettled frees, waited for. */
static vms_status sync_by_events(vms_allocator *a, uint64_t seq) {
    vms_status rc = VMS_OK;
    for (int i = 0; i < a->nstreams; i++) {
        stream_state *st = &a->streams[i];
        if (st->completed_seq >= st->last_free_seq) continue;
        vms_event ev;
        vms_status s = a->be->ops->event_record(a->be, st->stream, &ev);
        if (s == VMS_OK) {
            s = a->be->ops->event_sync(a->be, ev);
            a->be->ops->event_destroy(a->be, ev);
        }
        if (s == VMS_OK) st->completed_seq = seq;
        else rc = s;
    }
    return rc;
}

/* Waits until every free so far has finished on the device. A device-wide sync first, so that
 * a stream the application destroyed after using it is never touched; if that fails (a held
 * host stream, a driver error), an event per stream settles what it can. On failure the
 * streams that could not be settled stay unsettled, and callers must leave their memory be. */
vms_status streams_sync_all(vms_allocator *a) {
    uint64_t seq = a->free_seq;
    for (int i = 0; i < a->nstreams; i++) {
        stream_state *st = &a->streams[i];
        if (st->inflight) {
            a->be->ops->event_destroy(a->be, st->inflight);
            st->inflight = NULL;
        }
    }
    vms_status rc = a->be->ops->device_sync ? a->be->ops->device_sync(a->be) : VMS_EUNSUPPORTED;
    if (rc != VMS_OK) rc = sync_by_events(a, seq);
    if (rc != VMS_OK) return rc;
    /* The device is idle: pending frees complete now, and every free so far (theirs too,
     * stamped just now) is settled. */
    for (block *b = a->pending; b; b = b->pending_next) b->needs_sync = 0;
    if (a->pending) pending_poll(a);
    for (int i = 0; i < a->nstreams; i++) a->streams[i].completed_seq = a->free_seq;
    return VMS_OK;
}

/* PENDING blocks: freed while other streams (record_stream) may still use them. */
void pending_poll(vms_allocator *a) {
    block **pp = &a->pending;
    while (*pp) {
        block *b = *pp;
        pending_event **ep = &b->events;
        while (*ep) {
            bool done = false;
            if (a->be->ops->event_query(a->be, (*ep)->ev, &done) != VMS_OK || !done) {
                ep = &(*ep)->next;
                continue;
            }
            pending_event *e = *ep;
            *ep = e->next;
            a->be->ops->event_destroy(a->be, e->ev);
            free(e);
        }
        if (b->events || b->needs_sync) {
            pp = &b->pending_next;
            continue;
        }
        *pp = b->pending_next;
        b->pending_next = NULL;
        free_finish(a, b);
    }
}
