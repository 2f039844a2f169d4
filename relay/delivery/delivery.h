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

/* The outbound TLS policies an attempt is counted under (enum tls_applied
 * in mta_sts_delivery.h: none, opportunistic, encrypt, verify, implicit,
 * mta-sts, mta-sts-testing, require-tls, dane). */
#define DELIVERY_TLS_POLICIES 9

/* delivery_submit - queue a message that is durable in w's shard. msg is
 * copied; state (per recipient, may be NULL) skips final recipients. */
void delivery_submit(struct worker *w, const struct spool_message *msg,
		     const struct spool_rcpt_state *state);

/* delivery_submit_recovered - queue a message found in w's shard at
 * start: as delivery_submit with r's states, and each item resumes its
 * backoff (not tried before its recipients' next attempt, attempts and
 * last reply as they were). */
void delivery_submit_recovered(struct worker *w, const struct spool_recovered *r);

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
	uint64_t body_loads;       /* bodies read back from the spool */
	uint64_t bounced_by_category[BOUNCE_CAT_COUNT];    /* enum bounce_category */
	uint64_t deferred_by_category[BOUNCE_CAT_COUNT];
	uint64_t suppressed_added;         /* recipients put on the suppression list by bounces */
	uint64_t suppressed_bounced;       /* recipients bounced at delivery as suppressed */
	uint64_t shaping_actions[4];       /* enum shaping_action: rules that acted */
	uint64_t shaping_waits;            /* a domain waited for a shaping limit (token or slot) */
	uint64_t shaping_parked;           /* items parked while their site or domain was suspended */
	uint64_t mta_sts_fetches;          /* MTA-STS policy fetches tried */
	uint64_t mta_sts_fetch_failures;   /* of them failed (the cached policy, if any, stays) */
	uint64_t mta_sts_refused;          /* recipients deferred: no MX host in an enforce policy */
	uint64_t mta_sts_reports;          /* mode testing: what enforce would have refused */
	uint64_t tls_policy[DELIVERY_TLS_POLICIES];   /* attempts (per recipient) by enum tls_applied */
	uint64_t requiretls_delivered;     /* REQUIRETLS recipients delivered (RFC 8689) */
	uint64_t requiretls_refused;       /* REQUIRETLS recipients bounced: TLS not authenticated
					    * (5.7.10) or the server without REQUIRETLS (5.7.30) */
	uint64_t tls_full;                 /* outbound TLS handshakes, full */
	uint64_t tls_resumed;              /* outbound TLS handshakes, abbreviated (resumed) */
	uint64_t shaping_source_suspensions;   /* egress sources suspended (scope = "source") */
	uint64_t dane_lookups;             /* TLSA lookups sent (dane_delivery.c) */
	uint64_t dane_verified;            /* TLS handshakes whose chain matched the TLSA records */
	uint64_t dane_failures;            /* hosts refused by DANE: mismatch, no TLS, bogus TLSA */
	struct dns_stats dns;
};

/* shaping_resume - on w's thread, after shaping_state_resume(slot): every
 * worker puts the items it parked for the site back in their domains now. */
void shaping_resume(struct worker *w, unsigned slot);
/* shaping_resume_posted - the same from a thread that is no worker (the
 * cluster thread, when a resume comes from another node): a post to each
 * of the count + 1 workers of all. */
void shaping_resume_posted(struct worker *all, unsigned count, unsigned slot);

void delivery_get_stats(const struct worker *w, struct delivery_stats *out);

/* delivery_next_hop - where w's delivery would send mail for domain from
 * sender ("" or NULL: any), under w's running configuration: returns the
 * rule that chose it ("local", "sender route", "route", "relayhost" or
 * "mx") and sets *hop to the next hop as configured (NULL for mx, local). */
const char *delivery_next_hop(struct worker *w, const char *domain, const char *sender, const char **hop);
/* delivery_resolve - look that route up in w's resolver (its cache, or a
 * lookup): cb gets it, maybe at once, maybe later (arg must live until
 * then). false (cb never called): local delivery, or no resolver. */
bool delivery_resolve(struct worker *w, const char *domain, const char *sender,
		      dns_route_cb cb, void *arg);

/* delivery_resolve_cancel - the arg of a delivery_resolve is going away
 * before its answer: cb will not be called with it. true when it was
 * still waiting. */
bool delivery_resolve_cancel(struct worker *w, dns_route_cb cb, void *arg);

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
