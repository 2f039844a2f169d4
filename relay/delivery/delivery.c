/*
 * delivery - the outbound engine as a worker module; see delivery.h.
 *
 * This file is the engine's loop: the hook run before each sleep (due
 * retries back to their domains, resolver timers, reaping idle domains),
 * the resolver's socket in the ring, and domain_kick, which applies the
 * scheduler's decision for a domain: give ready items to idle sessions,
 * park them while the domain backs off, or resolve its route and open
 * sessions (route_ready). One message's path through relay/delivery:
 *
 *   delivery_submit (queue.c)        items per domain, posted to owners
 *   item_enqueue (queue.c)           the domain's ready list; domain_kick
 *   domain_kick, route_ready (here)  sessions for the domain
 *   mta_session.c                    connect, EHLO, STARTTLS, transactions
 *   item_complete (outcome.c)        log, outcomes home, DSN, retry heap
 *   delivery_hook (here)             due retries back to item_enqueue
 */
#include "queue.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commit.h"
#include "config.h"
#include "shaping.h"
#include "dns.h"
#include "log.h"
#include "dane_delivery.h"
#include "mta_sts_delivery.h"

static void route_ready(const struct dns_route *route, void *arg);
static void domain_dispatch(struct delivery *dl, struct qdomain *d, unsigned want);

/* ---- scheduling ------------------------------------------------------- */

/* domain_defer_ready - every ready item of d is deferred with status
 * (NULL: 4.4.1, no answer from host) and text. */
void domain_defer_ready(struct delivery *dl, struct qdomain *d, const char *status, const char *text)
{
	struct qitem *it;

	while ((it = domain_pop_ready(d)) != NULL)
		item_fail_all(dl, it, SMTP_OUTCOME_DEFERRED, 0, status ? status : "4.4.1", text);
}

/* route_ready - where the domain's mail goes is known (or it failed). */
static void route_ready(const struct dns_route *route, void *arg)
{
	struct qdomain *d = arg;
	struct delivery *dl = d->dl;
	unsigned want = d->want;
	struct qitem *it;

	d->resolving = false;
	d->want = 0;
	if (dl->stopping)
		return;     /* a final outcome now might not reach its home: the spool keeps the items */
	if (route->status != DNS_ROUTE_OK) {
		enum smtp_outcome outcome = route->status == DNS_ROUTE_TEMPFAIL ? SMTP_OUTCOME_DEFERRED
										 : SMTP_OUTCOME_BOUNCED;
		log_info("route_failed", "domain=%s status=%s code=%d dsn=%s text=\"%s\"", d->name,
			 dns_route_status_name(route->status), route->smtp_code, route->enhanced, route->text);
		while ((it = domain_pop_ready(d)) != NULL)
			item_fail_all(dl, it, outcome, route->smtp_code, route->enhanced, route->text);
		return;
	}
	if (d->route != route) {
		dns_route_unref(d->route);
		d->route = dns_route_ref(route);
	}
	domain_dispatch(dl, d, want);
}

/* first_usable_dest - the entry of the first address of route that does
 * not rest, where an idle session may wait; NULL when that address was
 * never used (no pool) or every one rests. Looking makes no entry. */
static struct qdest *first_usable_dest(const struct delivery *dl, const struct dns_route *route)
{
	for (size_t h = 0; h < route->host_count; h++) {
		for (size_t a = 0; a < route->hosts[h].addr_count; a++) {
			struct qdest *dest = dest_find(dl, &route->hosts[h].addrs[a]);
			if (dest == NULL || !dest_backed_off(dl, dest))
				return dest;
		}
	}
	return NULL;
}

/* domain_dispatch - up to want more sessions for d: a pooled one at its
 * first usable address (any domain's: connection reuse), else a new one
 * within the address's window and the worker's cap; when the address is
 * full, d waits in its round robin. */
static void domain_dispatch(struct delivery *dl, struct qdomain *d, unsigned want)
{
	const struct dns_route *route = d->route;

	/* DANE first: an MX host with usable TLSA records is DANE's, whatever
	 * MTA-STS says of it (RFC 8461 section 2). */
	if (shaping_domain_parked(dl, d) || shaping_waiting(dl, d) || domain_park_resting(dl, d, route) ||
	    dane_delivery_gate(dl, d, route) ||
	    (!dane_delivery_any_usable(dl, d, route) && mta_sts_delivery_route_refused(dl, d, route)))
		return;
	for (unsigned i = 0; i < want && d->ready_head != NULL && !dl->stopping && !shaping_waiting(dl, d); i++) {
		struct qdest *dest = first_usable_dest(dl, route), *full = NULL;
		if (dest != NULL && mta_session_reuse(dest, d))
			continue;
		switch (mta_session_open(dl, d, route, &full)) {
		case MTA_OPENED:
			continue;
		case MTA_WAIT:
			dest_wait(full, d);
			return;
		case MTA_LIMITED:
			return;
		case MTA_NO_ADDRESS:
			if (d->active == 0)
				domain_defer_ready(dl, d, NULL, "no MX host address could be connected to");
			return;
		}
	}
}

/* How many timeouts in a row an address may have before they count as the
 * host's failure rather than a blip (or our own pile-up). */
#define DEST_BLIP_FAILURES 3

bool domain_park_resting(struct delivery *dl, struct qdomain *d, const struct dns_route *route)
{
	int64_t until = 0;
	struct qitem *it;

	for (size_t h = 0; h < route->host_count; h++) {
		for (size_t a = 0; a < route->hosts[h].addr_count; a++) {
			const struct qdest *dest = dest_find(dl, &route->hosts[h].addrs[a]);
			if (dest == NULL || !dest_backed_off(dl, dest) || dest->failures >= DEST_BLIP_FAILURES)
				return false;
			if (until == 0 || dest->until_ms < until)
				until = dest->until_ms;
		}
	}
	if (until == 0 || d->ready_head == NULL)
		return false;
	log_info("domain_waits", "domain=%s reason=addresses_resting for_ms=%lld", d->name,
		 (long long)(until - dl->w->now_ms));
	while ((it = domain_pop_ready(d)) != NULL)
		item_retry_at(dl, it, until);
	return true;
}

/* domain_kick - more sessions for d's ready items, within its window
 * (sched_domain_kick): its route first (a cache hit answers at once), then
 * domain_dispatch. */
void domain_kick(struct delivery *dl, struct qdomain *d)
{
	struct worker *w = dl->w;
	struct qitem *it;

	if (dl->stopping)
		return;
	delivery_routes_sync(dl);
	struct sched_domain_view v = {
		.ready = d->ready_count, .active = d->active, .window = d->window,
		.max_connections = (unsigned)config_domain_policy(w->cfg, d->name)->max_connections,
	};
	if (v.ready > 0) {
		v.blocked = retry_domain_blocked(&d->backoff, w->now_ms);
		v.probing = retry_domain_probing(&d->backoff, w->now_ms);
	}
	struct sched_kick k = sched_domain_kick(&v);
	switch (k.action) {
	case SCHED_KICK_NOTHING:
		return;
	case SCHED_KICK_PARK:
		while ((it = domain_pop_ready(d)) != NULL)
			item_retry_at(dl, it, d->backoff.until_ms);
		return;
	case SCHED_KICK_OPEN:
		break;
	}
	if (d->resolving) {
		if (k.open > d->want)
			d->want = k.open;   /* route_ready opens them */
		return;
	}
	if (mta_sts_delivery_gate(dl, d))
		return;             /* its first MTA-STS check: kicked again when done */
	d->resolving = true;
	d->want = k.open;
	if (d->hop != NULL)
		dns_resolve_next_hop(dl->resolver, d->hop, route_ready, d, w->now_ms);
	else
		dns_resolve_route(dl->resolver, d->name, route_ready, d, w->now_ms);
}

/* ---- next hops after a reload ------------------------------------------ */

/* routes_of - the resolver's routes and relayhost from cfg. */
static struct dns_routes *routes_of(const struct config *cfg)
{
	struct dns_static_route *routes = xcalloc(cfg->domain_count + 1, sizeof(*routes));
	size_t n = 0;
	char err[128];

	for (size_t i = 0; i < cfg->domain_count; i++)
		if (cfg->domains[i].route != NULL && cfg->domains[i].route[0] != '\0')
			routes[n++] = (struct dns_static_route){ cfg->domains[i].name, cfg->domains[i].route };
	struct dns_routes *t = dns_routes_new(routes, n, cfg->relayhost, err, sizeof(err));
	free(routes);
	return t;
}

/* sender_routes_hash - a fingerprint of delivery.sender_routes (with
 * their tls): a reload that leaves them alone moves no item. */
static uint64_t sender_routes_hash(const struct config *cfg)
{
	uint64_t h = 1469598103934665603ULL;   /* FNV-1a */

	for (size_t i = 0; i < cfg->sender_route_count; i++) {
		const struct config_sender_route *r = &cfg->sender_routes[i];
		const char *parts[2] = { r->sender, r->route };
		for (size_t k = 0; k < 2; k++)
			for (const char *p = parts[k]; ; p++) {
				h = (h ^ (unsigned char)*p) * 1099511628211ULL;
				if (*p == '\0')
					break;
			}
		h = (h ^ (r->tls_set ? 1u + (unsigned)r->tls : 0u)) * 1099511628211ULL;
	}
	/* The shaping file's senders (pool choice) queue mail apart too. */
	for (size_t i = 0; i < shaping_sender_count(cfg->shaping); i++) {
		int k = shaping_sender_pool_at(cfg->shaping, i);
		const char *parts[2] = { shaping_sender_at(cfg->shaping, i), shaping_pool_at(cfg->shaping, (size_t)k)->name };
		for (size_t j = 0; j < 2; j++)
			for (const char *p = parts[j]; ; p++) {
				h = (h ^ (unsigned char)*p) * 1099511628211ULL;
				if (*p == '\0')
					break;
			}
	}
	return h;
}

/* domain_rerouting - for dns_resolve_cancel_if: route_ready's arg is a
 * qdomain; is it one whose next hop a reload changed? */
static int domain_rerouting(void *arg)
{
	return ((const struct qdomain *)arg)->rerouting;
}

/* domain_reroute - d's next hop changed (its route, a parent's, or the
 * relayhost): whatever was learnt about the old one goes. A lookup of the
 * old hop in progress is cancelled (its answer must not send mail there),
 * d stops waiting for the old hop's address, its backoff is forgotten and
 * its deferred items are due now; sessions still on the old hop carry no
 * more of its mail (mta_next). The caller kicks d. */
static void domain_reroute(struct delivery *dl, struct qdomain *d)
{
	size_t due = 0;

	if (d->resolving) {
		/* Its waiter went in delivery_routes_sync's one cancel pass. */
		d->resolving = false;
		d->want = 0;             /* the kick decides again */
	}
	d->rerouting = false;
	dest_unwait(d);
	retry_domain_succeeded(&d->backoff);
	d->route = dns_route_unref(d->route);
	for (struct qlink *l = d->items.next; l != &d->items; l = l->next) {
		if (l->marker)
			continue;
		struct qitem *it = container_of(l, struct qitem, link);
		if (it->state != QSTATE_RETRY || it->parked || it->due_ms <= dl->w->now_ms)
			continue;
		heap_remove(dl, it);
		item_retry_at(dl, it, dl->w->now_ms);
		due++;
	}
	log_info("domain_rerouted", "worker=%u domain=%s deferred_now_due=%zu", dl->w->id, d->name, due);
}

/* domain_rehome_items - the waiting items of d whose sender has another
 * next hop under the running config move to that hop's queue. */
static size_t domain_rehome_items(struct delivery *dl, struct qdomain *d)
{
	size_t moved = 0;
	struct qlink *l = d->items.next;

	while (l != &d->items) {
		struct qlink *next = l->next;
		if (!l->marker) {
			struct qitem *it = container_of(l, struct qitem, link);
			const char *hop = item_sender_hop(dl, it);
			if ((it->state == QSTATE_READY || it->state == QSTATE_RETRY || it->state == QSTATE_HELD) &&
			    (!same_text(hop, d->hop) || !same_text(item_sender_pool(dl, it), d->pool))) {
				item_rehome(dl, it, hop);
				moved++;
			}
		}
		l = next;
	}
	return moved;
}

void delivery_routes_sync(struct delivery *dl)
{
	const struct config *cfg = dl->w->cfg;
	size_t rerouted = 0, moved = 0;

	if (dl->routes_serial == cfg->serial || dl->resolver == NULL)
		return;
	dl->routes_serial = cfg->serial;
	struct dns_routes *fresh = routes_of(cfg), *old;
	if (fresh == NULL)
		return;     /* cannot happen: the config was checked */
	old = dns_resolver_swap_routes(dl->resolver, fresh);
	uint64_t h = sender_routes_hash(cfg);
	bool senders = h != dl->sender_routes_hash;
	dl->sender_routes_hash = h;
	if (dl->w->role == WORKER_ROLE_LOCAL) {
		dns_routes_free(old);
		return;     /* local domains have no next hop */
	}
	/* Indexes, not pointers: moving items may make domains (and grow
	 * the list); those are new and need no visit. */
	for (size_t i = 0; i < dl->domain_count; i++) {
		struct qdomain *d = dl->domain_list[i];
		d->rerouting = d->hop == NULL &&
			!same_text(dns_routes_target(old, d->name), dns_routes_target(fresh, d->name));
		rerouted += d->rerouting;
	}
	dns_routes_free(old);
	if (rerouted > 0)
		dns_resolve_cancel_if(dl->resolver, route_ready, domain_rerouting);
	for (size_t i = 0, n = dl->domain_count; i < n; i++) {
		struct qdomain *d = dl->domain_list[i];
		if (d->rerouting)
			domain_reroute(dl, d);
		if (senders)
			moved += domain_rehome_items(dl, d);
	}
	if (rerouted == 0 && moved == 0)
		return;
	log_info("delivery_routes", "worker=%u domains_rerouted=%zu items_moved=%zu", dl->w->id, rerouted, moved);
	for (size_t i = 0; i < dl->domain_count && !dl->stopping; i++)
		if (dl->domain_list[i]->ready_head != NULL)
			domain_kick(dl, dl->domain_list[i]);
}

/* ---- the resolver in the ring ---------------------------------------- */

static void dns_poll_arm(struct delivery *dl)
{
	struct io_uring_sqe *sqe = worker_sqe(dl->w);

	io_uring_prep_poll_multishot(sqe, dns_resolver_fd(dl->resolver), POLLIN);
	io_uring_sqe_set_data(sqe, &dl->dns_poll_op);
	dl->dns_poll_armed = true;
}

static void dns_poll_complete(struct worker *w, struct ring_op *op, const struct io_uring_cqe *cqe)
{
	struct delivery *dl = container_of(op, struct delivery, dns_poll_op);

	if (!(cqe->flags & IORING_CQE_F_MORE))
		dl->dns_poll_armed = false;
	if (cqe->res > 0)
		dns_resolver_on_readable(dl->resolver, w->now_ms);
	if (!dl->dns_poll_armed && dl->resolver != NULL && cqe->res != -ECANCELED)
		dns_poll_arm(dl);
}

static void wake_at(struct worker *w, int64_t at)
{
	if (at < w->wake_at_ms)
		w->wake_at_ms = at;
}

/* delivery_policies - retry policies from the config (again after a reload). */
static void delivery_policies(struct delivery *dl, const struct config *cfg)
{
	dl->retry = (struct retry_policy){
		.base_ms = cfg->min_backoff_ms, .max_ms = cfg->max_backoff_ms,
		.jitter_percent = (unsigned)cfg->backoff_jitter_percent, .lifetime_ms = cfg->queue_lifetime_ms,
	};
	dl->domain_retry = dl->retry;
	dl->domain_retry.base_ms = cfg->domain_backoff_ms;
	if (dl->domain_retry.max_ms < dl->domain_retry.base_ms)
		dl->domain_retry.max_ms = dl->domain_retry.base_ms;
	/* Each worker owns its domains' connections: the relay's limits are
	 * split, so the sum over workers stays within them. */
	dl->max_per_address = sched_share((unsigned)cfg->max_connections_per_address, dl->w->count);
	dl->max_total = sched_share((unsigned)cfg->max_connections_total, dl->w->count);
	dl->policy_serial = cfg->serial;
}

/* delivery_hook - before each sleep: due retries back to their domains,
 * resolver timers (new queries are sent from here), and the next wake-up. */
static void delivery_hook(struct worker *w, void *arg)
{
	struct delivery *dl = arg;

	if (w->stopping)
		dl->stopping = true;
	if (dl->policy_serial != w->cfg->serial)
		delivery_policies(dl, w->cfg);
	delivery_routes_sync(dl);
	if (w->now_ms >= dl->next_reap_ms) {
		if (dl->walks == 0 && !dl->stopping) {
			domains_reap(dl);
			dests_reap(dl);
		}
		dl->next_reap_ms = w->now_ms + w->cfg->domain_reap_interval_ms;
	}
	if (dl->domain_count > 0 && !dl->stopping)
		wake_at(w, dl->next_reap_ms);     /* an idle worker reaps too */
	if (dl->domains_waiting > 0 && !dl->stopping) {
		if (w->now_ms >= dl->next_rewake_ms) {
			dests_rewake(dl);
			dl->next_rewake_ms = w->now_ms + 1000;
		}
		wake_at(w, dl->next_rewake_ms);
	}
	/* Due retries go while there is room for their bodies; the rest
	 * wait in the heap until bodies are dropped (a completion wakes us). */
	while (dl->heap_len > 0 && dl->heap[0]->due_ms <= w->now_ms && !dl->stopping && body_room(dl))
		item_enqueue(dl, heap_pop(dl));
	if (w->role == WORKER_ROLE_LOCAL)
		local_run(dl);
	int64_t t = dl->shaping_waiters != NULL ? shaping_delivery_hook(dl) : 0;
	if (t > 0)
		wake_at(w, t);
	while ((t = dns_resolver_next_timeout_ms(dl->resolver, w->now_ms)) == 0)
		dns_resolver_on_timer(dl->resolver, w->now_ms);
	if (t > 0)
		wake_at(w, w->now_ms + t);
	/* Last: resolver callbacks above may have parked items (a DNS
	 * failure defers them), and their retry must wake us. */
	if (dl->heap_len > 0 && !dl->stopping && (dl->heap[0]->due_ms > w->now_ms || body_room(dl)))
		wake_at(w, dl->heap[0]->due_ms);
}

/* ---- life cycle ------------------------------------------------------- */

static int delivery_resolver_new(struct delivery *dl, const struct config *cfg)
{
	struct dns_static_route *routes = xcalloc(cfg->domain_count + 1, sizeof(*routes));
	size_t nroutes = 0;
	char err[256];

	for (size_t i = 0; i < cfg->domain_count; i++)
		if (cfg->domains[i].route != NULL && cfg->domains[i].route[0] != '\0')
			routes[nroutes++] = (struct dns_static_route){ cfg->domains[i].name, cfg->domains[i].route };
	struct dns_options opt = {
		.nameservers = (const char *const *)cfg->dns_nameservers,
		.nameserver_count = cfg->dns_nameserver_count,
		.cache_max_entries = (size_t)cfg->dns_cache_size,
		.ttl_min_s = (uint32_t)(cfg->dns_min_ttl_ms / 1000),
		.ttl_max_s = (uint32_t)(cfg->dns_max_ttl_ms / 1000),
		.negative_ttl_s = (uint32_t)(cfg->dns_negative_ttl_ms / 1000),
		.max_in_flight = (size_t)cfg->dns_max_in_flight,
		.family = strcmp(cfg->dns_ip_mode, "ipv6") == 0 ? DNS_FAMILY_IPV6 :
			  strcmp(cfg->dns_ip_mode, "both") == 0 ? DNS_FAMILY_BOTH : DNS_FAMILY_IPV4,
		.port = (uint16_t)cfg->delivery_port,
		.timeout_s = (int)(cfg->dns_timeout_ms / 1000),
		.tries = (int)cfg->dns_tries,
		.static_routes = routes,
		.static_route_count = nroutes,
		.relayhost = cfg->relayhost[0] ? cfg->relayhost : NULL,
		.dnssec = config_dane_wanted(cfg),
	};
	dl->resolver = dns_resolver_new(&opt, err, sizeof(err));
	free(routes);
	dl->routes_serial = cfg->serial;
	dl->sender_routes_hash = sender_routes_hash(cfg);
	if (dl->resolver == NULL) {
		log_error("dns_init", "worker=%u error=\"%s\"", dl->w->id, err);
		return -EINVAL;
	}
	return 0;
}

static int delivery_worker_init(struct worker *w)
{
	struct delivery *dl = xcalloc(1, sizeof(*dl));
	const struct config *cfg = w->cfg;

	dl->w = w;
	dl->rng = (uint64_t)wall_ms() * 2654435761u + w->id + 1;
	delivery_policies(dl, cfg);
	dl->dns_poll_op.complete = dns_poll_complete;
	w->delivery = dl;
	int rc = delivery_resolver_new(dl, cfg);
	if (rc < 0)
		return rc;
	worker_add_hook(w, delivery_hook, dl);
	dns_poll_arm(dl);
	return 0;
}

static int requeue_live(void *ctx, const struct spool_recovered *r)
{
	struct worker *w = ctx;
	delivery_submit_recovered(w, r);
	return 0;
}

static void delivery_worker_start(struct worker *w)
{
	struct spool_shard_stats st;

	if (w->role == WORKER_ROLE_LOCAL)
		return;    /* no shard: its items come from the SMTP workers */
	spool_shard_stats(commit_shard(w), &st);
	if (st.live_messages == 0)
		return;
	int rc = spool_shard_foreach_live(commit_shard(w), requeue_live, w);
	log_info("spool_requeue", "worker=%u messages=%zu result=%d", w->id, st.live_messages, rc);
}

static void delivery_worker_exit(struct worker *w)
{
	struct delivery *dl = delivery_of(w);

	if (dl == NULL)
		return;
	dl->stopping = true;
	domains_free(dl);
	dests_free(dl);
	log_info("delivery_stats", "worker=%u delivered=%llu deferred=%llu bounced=%llu dsn=%llu connections=%llu connect_failures=%llu",
		 w->id, (unsigned long long)dl->stats.delivered, (unsigned long long)dl->stats.deferred,
		 (unsigned long long)dl->stats.bounced, (unsigned long long)dl->stats.dsn_sent,
		 (unsigned long long)dl->stats.connections, (unsigned long long)dl->stats.connect_failures);
	dl->resolver = dns_resolver_free(dl->resolver);
	mta_session_tls_free(dl);
	shaping_delivery_free(dl);
}

static void delivery_worker_drain(struct worker *w)
{
	struct delivery *dl = delivery_of(w);

	if (dl == NULL)
		return;
	dns_resolver_free(dl->resolver);
	mta_session_tls_free(dl);
	mta_sts_delivery_exit(dl);
	free(dl);
	w->delivery = NULL;
}

void delivery_get_stats(const struct worker *w, struct delivery_stats *out)
{
	const struct delivery *dl = w->delivery;

	*out = dl->stats;
	out->queue_now = dl->ready_total + dl->heap_len;
	out->domains_now = dl->domain_count;
	out->sessions_now = dl->sessions_active;
	out->addresses_now = dl->dest_count;
	out->domains_waiting_now = dl->domains_waiting;
	out->connections_cap = dl->w->role == WORKER_ROLE_SMTP ? dl->max_total : 0;
	if (dl->resolver != NULL)
		dns_resolver_stats(dl->resolver, &out->dns);
	else
		memset(&out->dns, 0, sizeof(out->dns));
}

size_t delivery_queue_shape(struct worker *w, struct delivery_domain_count *top, size_t n,
			    int64_t *oldest_ms)
{
	struct delivery *dl = delivery_of(w);
	size_t count = 0;

	*oldest_ms = 0;
	for (size_t i = 0; dl != NULL && i < dl->domain_count; i++) {
		const struct qdomain *d = dl->domain_list[i];
		uint64_t items = 0;
		/* Items join the list as they arrive: the first is the oldest
		 * here, bar a spool's requeue order at start. */
		for (const struct qlink *l = d->items.next; l != &d->items; l = l->next) {
			if (l->marker)
				continue;
			const struct qitem *it = container_of(l, struct qitem, link);
			if (*oldest_ms == 0 || it->msg->arrival_ms < *oldest_ms)
				*oldest_ms = it->msg->arrival_ms;
			break;
		}
		for (size_t k = 0; k < QSTATE_COUNT; k++)
			items += d->by_state[k];
		if (items == 0 || (count == n && items <= top[n - 1].items))
			continue;
		size_t j = count < n ? count++ : n - 1;     /* insertion, largest first */
		while (j > 0 && top[j - 1].items < items) {
			top[j] = top[j - 1];
			j--;
		}
		top[j] = (struct delivery_domain_count){ d->name, items };
	}
	return count;
}

/* delivery_worker_busy - a body read is in the ring: its buffer must
 * outlive it. */
static bool delivery_worker_busy(const struct worker *w)
{
	const struct delivery *dl = w->delivery;

	return dl != NULL && dl->reads_in_flight > 0;
}

const struct worker_module delivery_module = {
	.name = "delivery",
	.init = delivery_worker_init,
	.start = delivery_worker_start,
	.busy = delivery_worker_busy,
	.exit = delivery_worker_exit,
	.drain = delivery_worker_drain,
};


const char *delivery_next_hop(struct worker *w, const char *domain, const char *sender, const char **hop)
{
	const struct config *cfg = w->cfg;
	const char *route = config_domain_policy(cfg, domain)->route;

	*hop = NULL;
	if (config_is_local_domain(cfg, domain))
		return "local";
	if ((*hop = config_sender_next_hop(cfg, sender)) != NULL)
		return "sender route";
	if (route != NULL && route[0] != '\0') {
		*hop = route;
		return "route";
	}
	if (cfg->relayhost[0] != '\0') {
		*hop = cfg->relayhost;
		return "relayhost";
	}
	return "mx";
}

bool delivery_resolve(struct worker *w, const char *domain, const char *sender,
		      dns_route_cb cb, void *arg)
{
	const char *hop, *via = delivery_next_hop(w, domain, sender, &hop);

	if (strcmp(via, "local") == 0 || w->delivery == NULL || w->delivery->resolver == NULL)
		return false;
	delivery_routes_sync(w->delivery);
	/* A sender route is resolved by itself; everything else as the
	 * delivery does (the resolver knows the routes and relayhost). */
	if (strcmp(via, "sender route") == 0)
		dns_resolve_next_hop(w->delivery->resolver, hop, cb, arg, w->now_ms);
	else
		dns_resolve_route(w->delivery->resolver, domain, cb, arg, w->now_ms);
	return true;
}

bool delivery_resolve_cancel(struct worker *w, dns_route_cb cb, void *arg)
{
	return w->delivery != NULL && dns_resolve_cancel(w->delivery->resolver, cb, arg) > 0;
}
