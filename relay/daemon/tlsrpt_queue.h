/*
 * tlsrpt_queue - how the delivery workers hand TLS-RPT (RFC 8460) session
 * results to the reporter thread (relay/tlsrpt_reporter.c), its one owner.
 *
 *   if (tlsrpt_queue_enabled())                     on a worker, any thread
 *           tlsrpt_queue_record(&event);            copied; never blocks
 *   struct tlsrpt_queued *list = tlsrpt_queue_take_all();    the owner only
 *   for (q = list; q; q = next) { next = tlsrpt_queued_next(q); use q->e; tlsrpt_queued_free(q); }
 *
 * A record is one allocation (the event and its strings) pushed with one
 * compare-and-swap onto a lock-free stack (core/mpsc.h); the owner takes
 * the whole stack in one exchange when it wakes (every
 * TLSRPT_QUEUE_POLL_MS), so a worker never locks, blocks, makes a system
 * call or wakes anyone. When more than the limit set with
 * tlsrpt_queue_enable are waiting (the owner is stuck on a slow report),
 * a record is dropped and counted (tlsrpt_queue_dropped): memory stays
 * bounded and the workers never wait.
 *
 * Ownership: record copies the event; take_all gives the owner the
 * records, freed with tlsrpt_queued_free.
 */
#ifndef RINGMAIL_TLSRPT_QUEUE_H
#define RINGMAIL_TLSRPT_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mpsc.h"
#include "tlsrpt.h"

#define TLSRPT_QUEUE_POLL_MS 250

struct tlsrpt_queued {
	struct mpsc_node node;             /* first */
	struct tlsrpt_event e;             /* its strings live after the struct */
};

/* tlsrpt_queue_enable - start (limit > 0: records at most this many
 * waiting) or stop (0) taking records. */
void tlsrpt_queue_enable(size_t limit);

/* tlsrpt_queue_enabled - are records wanted now? */
bool tlsrpt_queue_enabled(void);

/* tlsrpt_queue_record - copy e for the owner; false when dropped (off,
 * or the limit reached). e->time_s 0 means now. */
bool tlsrpt_queue_record(const struct tlsrpt_event *e);

/* tlsrpt_queue_take_all - every record so far, oldest first, or NULL. */
struct tlsrpt_queued *tlsrpt_queue_take_all(void);

static inline struct tlsrpt_queued *tlsrpt_queued_next(const struct tlsrpt_queued *q)
{
	return (struct tlsrpt_queued *)q->node.next;
}

/* tlsrpt_queued_free - accepts NULL, returns NULL. */
struct tlsrpt_queued *tlsrpt_queued_free(struct tlsrpt_queued *q);

/* tlsrpt_queue_dropped - records dropped since the start. */
uint64_t tlsrpt_queue_dropped(void);

#endif
