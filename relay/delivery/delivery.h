/*
 * delivery - the outbound engine: per-domain queues, connection pools,
 * MX resolution, retries, bounces.
 *
 * Every destination domain is owned by one worker (hash of the domain), so
 * its queue, connections, limits and timers need no lock. A message lives in
 * the spool shard of the worker that accepted it (its home); its recipients
 * are grouped by domain into items and posted to the owners. Owners deliver
 * and post each recipient's final outcome back home, where it is appended to
 * the home shard's journal (and a bounce, if one is due, is spooled in the
 * same batch). Deferred recipients wait in the owner's retry heap.
 *
 *   delivery_module            the worker module: init (resolver, hook),
 *                              start (requeue the spool), exit, drain
 *   delivery_submit(w, msg, state)  a committed message (state NULL: all new)
 */
#ifndef RINGMAIL_DELIVERY_H
#define RINGMAIL_DELIVERY_H

#include "bounce_class.h"
#include "dns.h"
#include "spool_record.h"
#include "spool_shard.h"
#include "worker.h"

extern const struct worker_module delivery_module;

/* delivery_submit - queue a message that is durable in w's shard. msg is
 * copied; state (per recipient, may be NULL) skips final recipients. */
void delivery_submit(struct worker *w, const struct spool_message *msg,
		     const struct spool_rcpt_state *state);

struct delivery_stats {
	uint64_t delivered, deferred, bounced, deleted, dsn_sent;
	uint64_t connections, connect_failures;
	uint64_t reused;           /* idle sessions that took another domain's mail */
	uint64_t addresses_now;    /* destination addresses held now */
	uint64_t domains_waiting_now;   /* domains waiting for a connection (address full or cap) */
	uint64_t connections_cap;  /* this worker's share of delivery.max_connections_total */
	uint64_t queued_items;
	uint64_t queue_now;        /* ready + waiting for a retry, now */
	uint64_t sessions_now;     /* outbound sessions open now */
	uint64_t domains_now;      /* destination domains held now */
	uint64_t domains_reaped;   /* forgotten while idle */
	uint64_t bounced_by_category[BOUNCE_CAT_COUNT];    /* enum bounce_category */
	uint64_t deferred_by_category[BOUNCE_CAT_COUNT];
	uint64_t suppressed_added;         /* recipients put on the suppression list by bounces */
	uint64_t suppressed_bounced;       /* recipients bounced at delivery as suppressed */
	uint64_t shaping_actions[3];       /* enum shaping_action: rules that acted */
	uint64_t shaping_parked;           /* items parked while their site or domain was suspended */
	struct dns_stats dns;
};

/* shaping_resume - on w's thread, after shaping_state_resume(slot): every
 * worker puts the items it parked for the site back in their domains now. */
void shaping_resume(struct worker *w, unsigned slot);

void delivery_get_stats(const struct worker *w, struct delivery_stats *out);

struct delivery_domain_count {
	const char *name;          /* the worker's; valid until its next pass */
	uint64_t items;
};

/* delivery_queue_shape - on w's thread: up to n of w's domains with the
 * most queue items, largest first (returns how many), and the arrival time
 * (wall ms) of w's oldest item, 0 for none. Walks every domain of w. */
size_t delivery_queue_shape(struct worker *w, struct delivery_domain_count *top, size_t n,
			    int64_t *oldest_ms);

#endif
