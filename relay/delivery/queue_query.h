/*
 * queue_query - an operator's question or command about the queue, walked
 * one worker at a time.
 *
 * The queue is spread over the workers: each item (a message's recipients
 * for one domain) lives on its domain's owner. A query travels: the control
 * worker (control.c) posts it to worker `at`, which walks a bounded step of
 * its domains and items (delivery_query_step), acts on the ones that match,
 * writes rows into out and goes back home; the control worker sends out to
 * the client and, once the socket has drained, sends the next step. So a
 * listing of a million items is a stream of small steps between which
 * every worker goes on delivering.
 *
 * The cursor between two steps on a worker is a domain index plus a marker
 * link inside that domain's item list, owned by that worker. A listing is
 * not a snapshot: an item that arrives during the walk may be listed or not;
 * one present throughout is listed exactly once.
 *
 * Ownership: whoever holds the query (the worker it was posted to) may touch
 * everything in it but the request fields, which nobody changes after the
 * control worker filled them.
 */
#ifndef RINGMAIL_QUEUE_QUERY_H
#define RINGMAIL_QUEUE_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "queue_format.h"
#include "spool_shard.h"
#include "worker.h"

enum queue_action {
	QUEUE_LIST,          /* a row per item */
	QUEUE_SHOW,          /* one message: envelope and every recipient */
	QUEUE_SUMMARY,       /* items per domain and age (qshape) */
	QUEUE_DOMAINS,       /* per domain: items, connections, backoff */
	QUEUE_ADDRESSES,     /* per MX address and worker: sessions, window, waiting domains */
	QUEUE_FLUSH,         /* items waiting for a retry: now; backoff off */
	QUEUE_DELETE,        /* recipients deleted, no DSN */
	QUEUE_BOUNCE,        /* recipients bounced with a DSN */
	QUEUE_HOLD,          /* out of scheduling until released */
	QUEUE_RELEASE,       /* held items back to their domain's queue */
};

struct queue_query {
	struct worker_post post;

	/* The request: set by the control worker before the first step. */
	enum queue_action action;
	char queue_id[32];           /* "" = every message */
	char domain[256];            /* "" = every domain; lower case */
	bool deferred_only;          /* items waiting for a retry */
	bool held_only;
	bool json;
	unsigned home;               /* the control worker */
	void *owner;                 /* the control worker's session */

	/* The walk. */
	unsigned at;                 /* the worker walked now */
	bool at_started, at_done;
	bool cancel;                 /* the client left: drop the cursor */
	size_t domain_index;         /* cursor: the worker's domain list */
	void *marker;                /* cursor: a link owned by worker `at` */
	int64_t now_wall_ms;         /* for ages and next attempts */

	/* Results. */
	struct buf out;              /* rows of the last step, for the client */
	uint64_t matched;            /* items that matched */
	uint64_t changed;            /* items acted on */
	uint64_t steps, max_step_us; /* for the log: how the walk went */
	int64_t started_us;
	struct queue_message_view show;      /* QUEUE_SHOW: filled as found */
	struct spool_rcpt_state *spool_states;   /* QUEUE_SHOW: from the home shard */
	size_t spool_state_count;
	struct queue_summary_row *rows;      /* QUEUE_SUMMARY: one per domain */
	size_t row_count, row_cap;           /* with top: at most 2 x top */
	unsigned top;                        /* QUEUE_SUMMARY: the largest top domains; 0 = all */
	struct queue_summary_others others;  /* what top left out */
};

/* delivery_query_step - on worker w (== all[q->at]): walk and act on a
 * bounded number of w's items from the cursor; sets q->at_done at the end
 * of w's queue (or when q->cancel asked to drop the cursor). */
void delivery_query_step(struct worker *w, struct queue_query *q);

#endif
