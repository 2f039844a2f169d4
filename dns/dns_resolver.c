/*
 * dns_resolver - udns glue: lookups, coalescing, the in-flight limit.
 *
 * A lookup ("job") resolves one cache key: a domain (MX, then A/AAAA of
 * each MX host) or, for static routes, "=host:port" (A/AAAA only), so all
 * domains routed to one relay host share one lookup and one cache entry.
 * At most max_in_flight jobs run; the rest wait in a FIFO. A job's waiters
 * all get the same route. udns results are converted to our answer structs
 * (dns_internal.h) so the composition is tested without a network.
 *
 * udns keeps time in seconds: we give it now_ms / 1000 + 1 (never 0, which
 * udns takes as "call time()"). Its timer callback tells us when it wants
 * dns_timeouts(); new queries ask for a timer of 0 and are sent from
 * dns_resolver_on_timer(), so the loop must re-read next_timeout after
 * every dns_resolve_route().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <udns.h>

#include "dns_internal.h"
#include "log.h"
#include "nexthop.h"
#include "xalloc.h"

/* udns 0.4 names no TLSA type (RFC 6698). */
#define DNS_T_TLSA_NUMBER 52

struct dns_waiter {
	dns_route_cb cb;
	void *arg;
	struct dns_waiter *next;
};

struct dns_job {
	struct dns_resolver *r;
	struct dns_cache_entry *entry;
	char name[256];			/* domain, or static host */
	int host_only;			/* static route: no MX query */
	int next_hop;			/* a relayhost or route: never bounces */
	uint16_t port;
	struct dns_waiter *waiters, **waiters_tail;
	struct dns_route *route;
	int pending;			/* queries outstanding */
	int submitting;
	int implicit, any_tempfail;
	struct dns_job *queue_next;
	struct dns_job *all_prev, *all_next;	/* every live job, for free */
	struct dns_pending_query *queries;
};

struct dns_pending_query {
	struct dns_job *job;
	enum dns_query_kind kind;
	size_t host;
	struct dns_query *udns;
	struct dns_pending_query *next;
};

/* The static routes and relayhost: copies, domains in lower case and
 * sorted, so that a lookup is a binary search even with tens of thousands
 * of routes. Swapped whole on a reload (dns_resolver_swap_routes). */
struct dns_routes {
	struct dns_static_route *routes;
	size_t count;
	char *relayhost;			/* NULL: none */
};

struct dns_resolver {
	struct dns_ctx *ctx;
	struct dns_cache *cache;
	struct dns_options opts;		/* static_routes, relayhost: see routing */
	struct dns_routes *routing;
	uint64_t rng;
	int64_t now_ms;
	int64_t timer_at_ms;			/* -1 = none */
	size_t running, waiting;
	struct dns_job *queue_head, *queue_tail;
	struct dns_job *jobs;
	struct dns_stats stats;
	dns_query_hook hook;
	void *hook_arg;
	struct dns_txt_lookup *txt_lookups;	/* running, for free */
	struct dns_tlsa_lookup *tlsa_lookups;	/* running, for free */
};

static pthread_once_t udns_once = PTHREAD_ONCE_INIT;
static int udns_init_status;

/* udns_init_once - dns_new() copies the default context, which must be
 * initialised once per process (it reads /etc/resolv.conf). */
static void udns_init_once(void)
{
	udns_init_status = dns_init(NULL, 0);
}

static time_t udns_time(int64_t now_ms)
{
	return (time_t)(now_ms / 1000 + 1);
}

/* resolver_timer - udns wants dns_timeouts() after timeout seconds. */
static void resolver_timer(struct dns_ctx *ctx, int timeout, void *data)
{
	struct dns_resolver *r = data;

	if (ctx == NULL || timeout < 0)
		r->timer_at_ms = -1;
	else
		r->timer_at_ms = r->now_ms + (int64_t)timeout * 1000;
}

/* nameserver_parse - "1.2.3.4", "1.2.3.4:53", "[::1]:53" or "::1". */
static int nameserver_parse(const char *text, union dns_addr *addr)
{
	char buf[80];
	const char *port = NULL;
	char *colon;
	long p = DNS_PORT;

	memset(addr, 0, sizeof(*addr));
	if (text[0] == '[') {
		snprintf(buf, sizeof(buf), "%s", text + 1);
		if ((colon = strchr(buf, ']')) == NULL)
			return -EINVAL;
		*colon = '\0';
		if (colon[1] == ':')
			port = colon + 2;
		else if (colon[1] != '\0')
			return -EINVAL;
	} else {
		snprintf(buf, sizeof(buf), "%s", text);
		colon = strchr(buf, ':');
		if (colon && strchr(colon + 1, ':') == NULL) {
			*colon = '\0';
			port = colon + 1;
		}
	}
	if (port) {
		char *end;

		p = strtol(port, &end, 10);
		if (*end != '\0' || p < 1 || p > 65535)
			return -EINVAL;
	}
	if (inet_pton(AF_INET, buf, &addr->sin.sin_addr) == 1) {
		addr->sin.sin_family = AF_INET;
		addr->sin.sin_port = htons((uint16_t)p);
	} else if (inet_pton(AF_INET6, buf, &addr->sin6.sin6_addr) == 1) {
		addr->sin6.sin6_family = AF_INET6;
		addr->sin6.sin6_port = htons((uint16_t)p);
	} else {
		return -EINVAL;
	}
	return 0;
}

/* resolver_setup_udns - a private udns context with our servers and options. */
static int resolver_setup_udns(struct dns_resolver *r, const struct dns_options *o,
	char *err, size_t errlen)
{
	pthread_once(&udns_once, udns_init_once);
	if (udns_init_status < 0 && o->nameserver_count == 0) {
		snprintf(err, errlen, "udns: cannot read /etc/resolv.conf");
		return -EINVAL;
	}
	if ((r->ctx = dns_new(NULL)) == NULL) {
		snprintf(err, errlen, "udns: out of memory");
		return -ENOMEM;
	}
	if (o->nameserver_count > 0) {
		dns_add_serv(r->ctx, NULL);
		for (size_t i = 0; i < o->nameserver_count; i++) {
			union dns_addr addr;

			if (nameserver_parse(o->nameservers[i], &addr) < 0 ||
			    dns_add_serv_s(r->ctx, &addr.sa) < 0) {
				snprintf(err, errlen, "bad nameserver %s", o->nameservers[i]);
				return -EINVAL;
			}
			/* udns 0.4 may apply one port to all servers: use the first. */
			if (i == 0)
				dns_set_opt(r->ctx, DNS_OPT_PORT, ntohs(addr.sa.sa_family == AF_INET6
					? addr.sin6.sin6_port : addr.sin.sin_port));
		}
	}
	if ((o->timeout_s > 0 && dns_set_opt(r->ctx, DNS_OPT_TIMEOUT, o->timeout_s) < 0) ||
	    (o->tries > 0 && dns_set_opt(r->ctx, DNS_OPT_NTRIES, o->tries) < 0)) {
		snprintf(err, errlen, "bad DNS timeout or tries");
		return -EINVAL;
	}
	dns_set_tmcbck(r->ctx, resolver_timer, r);
	if (dns_open(r->ctx) < 0) {
		snprintf(err, errlen, "udns: cannot open socket: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

static int route_cmp(const void *a, const void *b)
{
	return strcmp(((const struct dns_static_route *)a)->domain,
		      ((const struct dns_static_route *)b)->domain);
}

struct dns_routes *dns_routes_free(struct dns_routes *t)
{
	if (t == NULL)
		return NULL;
	for (size_t i = 0; t->routes != NULL && i < t->count; i++) {
		free((char *)t->routes[i].domain);
		free((char *)t->routes[i].target);
	}
	free(t->routes);
	free(t->relayhost);
	free(t);
	return NULL;
}

/* dns_routes_new - the caller's strings are copied, domains in lower
 * case, sorted. */
struct dns_routes *dns_routes_new(const struct dns_static_route *routes, size_t n,
	const char *relayhost, char *err, size_t errlen)
{
	struct dns_routes *t = xcalloc(1, sizeof(*t));

	t->routes = xcalloc(n + 1, sizeof(*t->routes));
	for (size_t i = 0; i < n; i++) {
		const struct dns_static_route *s = &routes[i];

		if (s->domain == NULL || s->target == NULL) {
			snprintf(err, errlen, "static route %zu incomplete", i);
			return dns_routes_free(t);
		}
		char *d = xstrdup(s->domain);
		for (char *c = d; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		t->routes[i].domain = d;
		t->routes[i].target = xstrdup(s->target);
		t->count = i + 1;
	}
	qsort(t->routes, t->count, sizeof(*t->routes), route_cmp);
	if (relayhost != NULL && relayhost[0] != '\0')
		t->relayhost = xstrdup(relayhost);
	return t;
}

/* routes_find - the route for exactly key (lower case), or NULL. */
static const char *routes_find(const struct dns_routes *t, const char *key)
{
	struct dns_static_route k = { key, NULL };
	const struct dns_static_route *hit = bsearch(&k, t->routes, t->count,
						     sizeof(*t->routes), route_cmp);

	return hit != NULL ? hit->target : NULL;
}

/* routes_target - the static route or relayhost for domain (a
 * normalised, lower-case name). As in transport(5), the most specific
 * wins: "a.example.com" itself, then ".example.com", then ".com". */
static const char *routes_target(const struct dns_routes *t, const char *domain)
{
	const char *target = routes_find(t, domain);

	for (const char *p = strchr(domain, '.'); target == NULL && p != NULL; p = strchr(p + 1, '.'))
		target = routes_find(t, p);
	return target != NULL ? target : t->relayhost;
}

const char *dns_routes_target(const struct dns_routes *t, const char *domain)
{
	char name[256];

	if (t == NULL || domain[0] == '[' || dns_domain_normalize(domain, name, sizeof(name)) < 0)
		return NULL;
	return routes_target(t, name);
}

struct dns_routes *dns_resolver_swap_routes(struct dns_resolver *r, struct dns_routes *routes)
{
	struct dns_routes *old = r->routing;

	r->routing = routes;
	return old;
}

/* dns_resolver_new - options with defaults filled in, then udns. */
struct dns_resolver *dns_resolver_new(const struct dns_options *opts,
	char *err, size_t errlen)
{
	struct dns_resolver *r = xcalloc(1, sizeof(*r));
	struct timespec ts;

	r->opts = *opts;
	r->timer_at_ms = -1;
	if (r->opts.cache_max_entries == 0) r->opts.cache_max_entries = 10000;
	if (r->opts.ttl_min_s == 0) r->opts.ttl_min_s = 60;
	if (r->opts.ttl_max_s == 0) r->opts.ttl_max_s = 86400;
	if (r->opts.negative_ttl_s == 0) r->opts.negative_ttl_s = 300;
	if (r->opts.max_in_flight == 0) r->opts.max_in_flight = 64;
	if (r->opts.port == 0) r->opts.port = 25;
	if (r->opts.ttl_min_s > r->opts.ttl_max_s) {
		snprintf(err, errlen, "ttl_min %u > ttl_max %u", r->opts.ttl_min_s,
			r->opts.ttl_max_s);
		return dns_resolver_free(r);
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	r->rng = opts->shuffle_seed ? opts->shuffle_seed
		: ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ 0x9e3779b97f4a7c15ULL;
	r->cache = dns_cache_new(r->opts.cache_max_entries);
	r->routing = dns_routes_new(opts->static_routes, opts->static_route_count, opts->relayhost,
		err, errlen);
	/* The options' strings are the caller's: routing has the copies. */
	r->opts.static_routes = NULL;
	r->opts.static_route_count = 0;
	r->opts.relayhost = NULL;
	r->opts.nameservers = NULL;
	r->opts.nameserver_count = 0;
	if (r->routing == NULL || resolver_setup_udns(r, opts, err, errlen) < 0)
		return dns_resolver_free(r);
	return r;
}

/* job_free - the job's queries must already be answered or cancelled. */
static void job_free(struct dns_job *job)
{
	struct dns_waiter *w, *next;
	struct dns_pending_query *q, *qnext;

	for (w = job->waiters; w != NULL; w = next) {
		next = w->next;
		free(w);
	}
	for (q = job->queries; q != NULL; q = qnext) {
		qnext = q->next;
		free(q);
	}
	dns_route_unref(job->route);
	free(job);
}

/* dns_resolver_free - dns_free() drops udns queries without callbacks;
 * jobs (running or queued) are freed without calling their waiters. */
static void dns_txt_lookups_free(struct dns_resolver *r);
static void dns_tlsa_lookups_free(struct dns_resolver *r);

struct dns_resolver *dns_resolver_free(struct dns_resolver *r)
{
	if (r == NULL)
		return NULL;
	if (r->ctx)
		dns_free(r->ctx);
	dns_txt_lookups_free(r);
	dns_tlsa_lookups_free(r);
	while (r->jobs != NULL) {
		struct dns_job *job = r->jobs;

		r->jobs = job->all_next;
		job_free(job);
	}
	r->routing = dns_routes_free(r->routing);
	r->cache = dns_cache_free(r->cache);
	free(r);
	return NULL;
}

int dns_resolver_fd(const struct dns_resolver *r)
{
	return dns_sock(r->ctx);
}

/* dns_resolver_on_readable - udns reads every queued datagram. */
void dns_resolver_on_readable(struct dns_resolver *r, int64_t now_ms)
{
	r->now_ms = now_ms;
	dns_ioevent(r->ctx, udns_time(now_ms));
}

int64_t dns_resolver_next_timeout_ms(const struct dns_resolver *r, int64_t now_ms)
{
	if (r->timer_at_ms < 0)
		return -1;
	return r->timer_at_ms > now_ms ? r->timer_at_ms - now_ms : 0;
}

/* dns_resolver_on_timer - udns sends new queries, retries, times out. */
void dns_resolver_on_timer(struct dns_resolver *r, int64_t now_ms)
{
	r->now_ms = now_ms;
	dns_timeouts(r->ctx, -1, udns_time(now_ms));
}

void dns_resolver_set_query_hook(struct dns_resolver *r, dns_query_hook hook,
	void *arg)
{
	r->hook = hook;
	r->hook_arg = arg;
}

void dns_resolver_stats(const struct dns_resolver *r, struct dns_stats *out)
{
	*out = r->stats;
	out->cache_entries = dns_cache_ready_count(r->cache);
	out->evictions = dns_cache_evictions(r->cache);
	out->in_flight = r->running;
	out->waiting = r->waiting;
}

static void job_start(struct dns_job *job);

/* resolver_start_queued - fill the in-flight window from the FIFO. */
static void resolver_start_queued(struct dns_resolver *r)
{
	while (r->running < r->opts.max_in_flight && r->queue_head != NULL) {
		struct dns_job *job = r->queue_head;

		r->queue_head = job->queue_next;
		if (r->queue_head == NULL)
			r->queue_tail = NULL;
		r->waiting--;
		job_start(job);
	}
}

/* route_cache_ms - how long to keep a finished route; 0 = not at all. */
static int64_t route_cache_ms(const struct dns_resolver *r, struct dns_route *route)
{
	uint32_t ttl = route->ttl_s;

	if (route->status == DNS_ROUTE_TEMPFAIL)
		ttl = 0;		/* the next message should ask again */
	else if (route->status == DNS_ROUTE_PERMFAIL)
		ttl = r->opts.negative_ttl_s;	/* udns hides the SOA minimum */
	else if (ttl < r->opts.ttl_min_s)
		ttl = r->opts.ttl_min_s;
	else if (ttl > r->opts.ttl_max_s)
		ttl = r->opts.ttl_max_s;
	route->ttl_s = ttl;
	return (int64_t)ttl * 1000;
}

/* job_finish - compose, cache, then call every waiter with the route.
 * The job stays on the resolver's list until every waiter was called: a
 * callback may cancel a waiter of this very job (dns_resolve_cancel), and
 * must find it there to take it out. */
static void job_finish(struct dns_job *job)
{
	struct dns_resolver *r = job->r;
	struct dns_route *route = job->route;
	struct dns_waiter *w;
	int64_t keep_ms;

	dns_route_finish(route, job->name, job->implicit, job->any_tempfail);
	if (job->next_hop)
		dns_route_next_hop_failure(route, job->name);
	keep_ms = route_cache_ms(r, route);
	if (route->status != DNS_ROUTE_OK)
		r->stats.failures++;
	if (keep_ms > 0)
		dns_cache_fill(r->cache, job->entry, route, r->now_ms + keep_ms);
	else
		dns_cache_remove(r->cache, job->entry);
	job->entry = NULL;
	r->running--;
	while ((w = job->waiters) != NULL) {
		job->waiters = w->next;
		if (job->waiters == NULL)
			job->waiters_tail = &job->waiters;
		w->cb(route, w->arg);
		free(w);
	}
	if (job->all_prev)
		job->all_prev->all_next = job->all_next;
	else
		r->jobs = job->all_next;
	if (job->all_next)
		job->all_next->all_prev = job->all_prev;
	job_free(job);
	resolver_start_queued(r);
}

/* cancel_waiters - take out of every lookup in progress the waiters of
 * cb whose arg is arg (pred NULL) or pleases pred: one pass over the
 * waiters however many are taken. */
static size_t cancel_waiters(struct dns_resolver *r, dns_route_cb cb, void *arg, int (*pred)(void *arg))
{
	size_t n = 0;

	if (r == NULL)
		return 0;
	for (struct dns_job *job = r->jobs; job != NULL; job = job->all_next) {
		struct dns_waiter **p = &job->waiters;
		while (*p != NULL) {
			struct dns_waiter *w = *p;
			if (w->cb != cb || (pred != NULL ? !pred(w->arg) : w->arg != arg)) {
				p = &w->next;
				continue;
			}
			*p = w->next;
			free(w);
			n++;
		}
		job->waiters_tail = p;
	}
	return n;
}

/* dns_resolve_cancel - the lookups themselves go on (their answer fills
 * the cache). */
size_t dns_resolve_cancel(struct dns_resolver *r, dns_route_cb cb, void *arg)
{
	return cancel_waiters(r, cb, arg, NULL);
}

size_t dns_resolve_cancel_if(struct dns_resolver *r, dns_route_cb cb, int (*pred)(void *arg))
{
	return cancel_waiters(r, cb, NULL, pred);
}

static void job_query_done(struct dns_job *job)
{
	if (--job->pending == 0 && !job->submitting)
		job_finish(job);
}

static void udns_mx_cb(struct dns_ctx *ctx, void *result, void *data);
static void udns_a4_cb(struct dns_ctx *ctx, void *result, void *data);
static void udns_a6_cb(struct dns_ctx *ctx, void *result, void *data);

/* DNSSEC: udns's parsed results carry no header bits, so the parse step
 * is wrapped: udns's own parser runs, and the packet's AD bit travels
 * beside its result to the callback. */
struct ad_result {
	int ad;
	void *result;			/* udns's, malloc'd by its parser */
};

static int parse_with_ad(dns_parse_fn *parse, dnscc_t *qdn, dnscc_t *pkt, dnscc_t *cur, dnscc_t *end,
	void **res)
{
	void *inner = NULL;
	int rc = parse(qdn, pkt, cur, end, &inner);

	if (rc < 0)
		return rc;
	struct ad_result *w = malloc(sizeof(*w));
	if (w == NULL) {
		free(inner);
		return DNS_E_NOMEM;
	}
	w->ad = dns_ad(pkt) != 0;
	w->result = inner;
	*res = w;
	return rc;
}

static int parse_mx_ad(dnscc_t *qdn, dnscc_t *pkt, dnscc_t *cur, dnscc_t *end, void **res)
{
	return parse_with_ad(dns_parse_mx, qdn, pkt, cur, end, res);
}

static int parse_a4_ad(dnscc_t *qdn, dnscc_t *pkt, dnscc_t *cur, dnscc_t *end, void **res)
{
	return parse_with_ad(dns_parse_a4, qdn, pkt, cur, end, res);
}

static int parse_a6_ad(dnscc_t *qdn, dnscc_t *pkt, dnscc_t *cur, dnscc_t *end, void **res)
{
	return parse_with_ad(dns_parse_a6, qdn, pkt, cur, end, res);
}

/* ad_unwrap - udns's result (NULL on failure) and the AD bit; frees the
 * wrapper. */
static void *ad_unwrap(void *wrapped, int *ad)
{
	struct ad_result *w = wrapped;
	void *inner = w != NULL ? w->result : NULL;

	*ad = w != NULL && w->ad;
	free(w);
	return inner;
}

/* job_submit - one query, to udns or to the test hook. A failed submit
 * is answered at once as a temporary failure. */
static void job_submit(struct dns_job *job, enum dns_query_kind kind,
	const char *name, size_t host)
{
	struct dns_resolver *r = job->r;
	struct dns_pending_query *q = xcalloc(1, sizeof(*q));

	q->job = job;
	q->kind = kind;
	q->host = host;
	q->next = job->queries;
	job->queries = q;
	job->pending++;
	r->stats.queries++;
	if (r->hook) {
		r->hook(r->hook_arg, q, kind, name);
		return;
	}
	int flags = DNS_NOSRCH | (r->opts.dnssec ? DNS_SET_DO : 0);
	if (kind == DNS_QUERY_MX)
		q->udns = dns_submit_p(r->ctx, name, DNS_C_IN, DNS_T_MX, flags, parse_mx_ad, udns_mx_cb, q);
	else if (kind == DNS_QUERY_A)
		q->udns = dns_submit_p(r->ctx, name, DNS_C_IN, DNS_T_A, flags, parse_a4_ad, udns_a4_cb, q);
	else
		q->udns = dns_submit_p(r->ctx, name, DNS_C_IN, DNS_T_AAAA, flags, parse_a6_ad, udns_a6_cb, q);
	if (q->udns == NULL) {
		struct dns_addr_answer a = { .kind = DNS_ANSWER_TEMPFAIL };
		struct dns_mx_answer m = { .kind = DNS_ANSWER_TEMPFAIL };

		if (kind == DNS_QUERY_MX)
			dns_query_answer_mx(q, &m, r->now_ms);
		else
			dns_query_answer_addr(q, &a, r->now_ms);
	}
}

/* job_submit_addrs - A and/or AAAA for every host of the route. */
static void job_submit_addrs(struct dns_job *job)
{
	enum dns_family_mode family = job->r->opts.family;

	job->submitting = 1;
	for (size_t i = 0; i < job->route->host_count; i++) {
		if (family != DNS_FAMILY_IPV4)
			job_submit(job, DNS_QUERY_AAAA, job->route->hosts[i].name, i);
		if (family != DNS_FAMILY_IPV6)
			job_submit(job, DNS_QUERY_A, job->route->hosts[i].name, i);
	}
	job->submitting = 0;
}

/* job_start - count the job as running and send its first queries. */
static void job_start(struct dns_job *job)
{
	job->r->running++;
	job->pending = 1;		/* held until the submits are out */
	if (job->host_only) {
		job->route = dns_route_new();
		dns_route_add_host(job->route, job->name, 0, job->port);
		job_submit_addrs(job);
	} else {
		job_submit(job, DNS_QUERY_MX, job->name, 0);
	}
	job_query_done(job);
}

/* dns_query_answer_mx - the MX answer decides the hosts to look up. */
void dns_query_answer_mx(struct dns_pending_query *q,
	const struct dns_mx_answer *answer, int64_t now_ms)
{
	struct dns_job *job = q->job;

	job->r->now_ms = now_ms;
	q->udns = NULL;
	job->route = dns_route_from_mx(job->name, answer, job->port, &job->r->rng,
		&job->implicit);
	if (job->route->status == DNS_ROUTE_OK) {
		job->pending++;
		job_submit_addrs(job);
		job->pending--;
	}
	job_query_done(job);
}

/* dns_query_answer_addr - merge one host's addresses. */
void dns_query_answer_addr(struct dns_pending_query *q,
	const struct dns_addr_answer *answer, int64_t now_ms)
{
	struct dns_job *job = q->job;

	job->r->now_ms = now_ms;
	q->udns = NULL;
	if (dns_route_add_addrs(job->route, q->host, answer))
		job->any_tempfail = 1;
	job_query_done(job);
}

/* udns_kind - map a udns status to our answer kinds. */
static enum dns_answer_kind udns_kind(struct dns_ctx *ctx, const void *result)
{
	switch (dns_status(ctx)) {
	case DNS_E_NXDOMAIN: return DNS_ANSWER_NXDOMAIN;
	case DNS_E_NODATA: return DNS_ANSWER_NODATA;
	default: return result ? DNS_ANSWER_OK : DNS_ANSWER_TEMPFAIL;
	}
}

static void udns_mx_cb(struct dns_ctx *ctx, void *wrapped, void *data)
{
	struct dns_pending_query *q = data;
	int ad;
	struct dns_rr_mx *result = ad_unwrap(wrapped, &ad);
	struct dns_mx_answer a = { .kind = udns_kind(ctx, result), .ad = ad };
	struct dns_mx_record *records = NULL;

	if (result && a.kind == DNS_ANSWER_OK) {
		records = xcalloc((size_t)result->dnsmx_nrr + 1, sizeof(*records));
		for (int i = 0; i < result->dnsmx_nrr; i++) {
			records[i].preference = result->dnsmx_mx[i].priority;
			records[i].name = result->dnsmx_mx[i].name;
		}
		a.ttl_s = result->dnsmx_ttl;
		a.count = (size_t)result->dnsmx_nrr;
		a.records = records;
	}
	dns_query_answer_mx(q, &a, q->job->r->now_ms);
	free(records);
	free(result);
}

static void udns_a4_cb(struct dns_ctx *ctx, void *wrapped, void *data)
{
	struct dns_pending_query *q = data;
	int ad;
	struct dns_rr_a4 *result = ad_unwrap(wrapped, &ad);
	struct dns_addr_answer a = { .kind = udns_kind(ctx, result), .family = AF_INET, .ad = ad };

	if (result && a.kind == DNS_ANSWER_OK) {
		a.ttl_s = result->dnsa4_ttl;
		a.count = (size_t)result->dnsa4_nrr;
		a.addrs = result->dnsa4_addr;
	}
	dns_query_answer_addr(q, &a, q->job->r->now_ms);
	free(result);
}

static void udns_a6_cb(struct dns_ctx *ctx, void *wrapped, void *data)
{
	struct dns_pending_query *q = data;
	int ad;
	struct dns_rr_a6 *result = ad_unwrap(wrapped, &ad);
	struct dns_addr_answer a = { .kind = udns_kind(ctx, result), .family = AF_INET6, .ad = ad };

	if (result && a.kind == DNS_ANSWER_OK) {
		a.ttl_s = result->dnsa6_ttl;
		a.count = (size_t)result->dnsa6_nrr;
		a.addrs = result->dnsa6_addr;
	}
	dns_query_answer_addr(q, &a, q->job->r->now_ms);
	free(result);
}

/* resolver_join - add a waiter to the job of key, creating it if needed. */
static void resolver_join(struct dns_resolver *r, const char *key, const char *name,
	int host_only, uint16_t port, dns_route_cb cb, void *arg)
{
	struct dns_cache_entry *e = dns_cache_find(r->cache, key, r->now_ms);
	struct dns_waiter *w;
	struct dns_job *job;

	if (e != NULL && e->job == NULL) {
		r->stats.hits++;
		cb(e->route, arg);
		return;
	}
	w = xcalloc(1, sizeof(*w));
	w->cb = cb;
	w->arg = arg;
	if (e != NULL) {
		r->stats.coalesced++;
		job = e->job;
		*job->waiters_tail = w;
		job->waiters_tail = &w->next;
		return;
	}
	r->stats.misses++;
	job = xcalloc(1, sizeof(*job));
	job->r = r;
	snprintf(job->name, sizeof(job->name), "%s", name);
	job->host_only = host_only;
	job->next_hop = key[0] == '=' || key[0] == '~';
	job->port = port;
	job->waiters = w;
	job->waiters_tail = &w->next;
	job->entry = dns_cache_add_pending(r->cache, key, job);
	job->all_next = r->jobs;
	if (r->jobs)
		r->jobs->all_prev = job;
	r->jobs = job;
	if (r->running < r->opts.max_in_flight) {
		job_start(job);
		return;
	}
	if (r->queue_tail)
		r->queue_tail->queue_next = job;
	else
		r->queue_head = job;
	r->queue_tail = job;
	r->waiting++;
}

/* resolve_failure - answer at once with a route made for this call. */
static void resolve_now(struct dns_route *route, dns_route_cb cb, void *arg)
{
	cb(route, arg);
	dns_route_unref(route);
}

/* resolve_target - a next hop (relayhost, route, sender route): an IP
 * is answered at once, a name is looked up (MX first unless bracketed). */
static void resolve_target(struct dns_resolver *r, const char *target, dns_route_cb cb, void *arg)
{
	char key[300];
	struct nexthop hop;
	uint16_t port;

	if (nexthop_parse(target, &hop, NULL, 0) < 0) {
		/* --check-config refuses these; only a caller of the library
		 * that skipped the check gets here. */
		resolve_now(dns_route_failure(DNS_ROUTE_TEMPFAIL, 451, "4.3.5",
			"bad static route %s", target), cb, arg);
		return;
	}
	port = hop.port != 0 ? hop.port : r->opts.port;
	if (hop.kind == NEXTHOP_ADDR) {
		resolve_now(dns_route_address(&hop, port), cb, arg);
		return;
	}
	/* "=host:port" looks up addresses only, "~host:port" MX first: two
	 * keys, since the same host may be written both ways. */
	snprintf(key, sizeof(key), "%c%s:%u", hop.kind == NEXTHOP_HOST ? '=' : '~', hop.host, port);
	resolver_join(r, key, hop.host, hop.kind == NEXTHOP_HOST ? 1 : 0, port, cb, arg);
}

void dns_resolve_next_hop(struct dns_resolver *r, const char *target,
	dns_route_cb cb, void *arg, int64_t now_ms)
{
	r->now_ms = now_ms;
	resolve_target(r, target, cb, arg);
}

/* dns_resolve_route - literal, static route, or MX; see dns.h. */
void dns_resolve_route(struct dns_resolver *r, const char *domain,
	dns_route_cb cb, void *arg, int64_t now_ms)
{
	char name[256];
	const char *target;
	struct dns_route *route;

	r->now_ms = now_ms;
	if (domain[0] == '[') {
		route = dns_route_literal(domain, r->opts.port, 0);
		if (route == NULL)
			route = dns_route_failure(DNS_ROUTE_PERMFAIL, 550, "5.1.2",
				"bad address literal");
		resolve_now(route, cb, arg);
		return;
	}
	if (dns_domain_normalize(domain, name, sizeof(name)) < 0) {
		resolve_now(dns_route_failure(DNS_ROUTE_PERMFAIL, 550, "5.1.2",
			"bad domain name"), cb, arg);
		return;
	}
	target = routes_target(r->routing, name);
	if (target == NULL) {
		resolver_join(r, name, name, 0, r->opts.port, cb, arg);
		return;
	}
	resolve_target(r, target, cb, arg);
}

/* ---- TXT lookups (MTA-STS discovery) ---- */

struct dns_txt_lookup {
	struct dns_resolver *r;
	dns_txt_cb cb;
	void *arg;
	struct dns_txt_lookup *prev, *next;
};

static void txt_unlink(struct dns_txt_lookup *t)
{
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		t->r->txt_lookups = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
}

/* dns_txt_lookups_free - dns_free() dropped their udns queries silently. */
static void dns_txt_lookups_free(struct dns_resolver *r)
{
	while (r->txt_lookups != NULL) {
		struct dns_txt_lookup *t = r->txt_lookups;
		r->txt_lookups = t->next;
		free(t);
	}
}

#define DNS_TXT_MAX_RECORDS 32

static void udns_txt_cb(struct dns_ctx *ctx, struct dns_rr_txt *result, void *data)
{
	struct dns_txt_lookup *t = data;
	enum dns_answer_kind kind = udns_kind(ctx, result);
	const char *txts[DNS_TXT_MAX_RECORDS];
	size_t lens[DNS_TXT_MAX_RECORDS], n = 0;
	enum dns_route_status status = DNS_ROUTE_OK;

	txt_unlink(t);
	if (kind == DNS_ANSWER_TEMPFAIL)
		status = DNS_ROUTE_TEMPFAIL;
	else if (kind != DNS_ANSWER_OK)
		status = DNS_ROUTE_PERMFAIL;
	for (int i = 0; result != NULL && kind == DNS_ANSWER_OK && i < result->dnstxt_nrr &&
	     n < DNS_TXT_MAX_RECORDS; i++) {
		txts[n] = (const char *)result->dnstxt_txt[i].txt;   /* udns NUL-terminates */
		lens[n++] = (size_t)result->dnstxt_txt[i].len;
	}
	t->cb(status, txts, lens, n, t->arg);
	free(result);
	free(t);
}

void dns_lookup_txt(struct dns_resolver *r, const char *name, dns_txt_cb cb, void *arg,
	int64_t now_ms)
{
	char norm[256];

	r->now_ms = now_ms;
	if (dns_domain_normalize(name, norm, sizeof(norm)) != 0) {
		cb(DNS_ROUTE_PERMFAIL, NULL, NULL, 0, arg);
		return;
	}
	struct dns_txt_lookup *t = xcalloc(1, sizeof(*t));
	t->r = r;
	t->cb = cb;
	t->arg = arg;
	t->next = r->txt_lookups;
	if (t->next != NULL)
		t->next->prev = t;
	r->txt_lookups = t;
	r->stats.queries++;
	if (dns_submit_txt(r->ctx, norm, DNS_C_IN, DNS_NOSRCH, udns_txt_cb, t) == NULL) {
		txt_unlink(t);
		free(t);
		cb(DNS_ROUTE_TEMPFAIL, NULL, NULL, 0, arg);
	}
}

/* ---- TLSA lookups (DANE) ---- */

struct dns_tlsa_lookup {
	struct dns_resolver *r;
	dns_tlsa_cb cb;			/* NULL: cancelled, only freed */
	void *arg;
	struct dns_tlsa_lookup *prev, *next;
};

/* The parsed answer: records, then their data, in one block. */
struct tlsa_answer {
	int ad;
	size_t n;
	struct dns_tlsa_record records[];
};

static void tlsa_unlink(struct dns_tlsa_lookup *t)
{
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		t->r->tlsa_lookups = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
}

static void dns_tlsa_lookups_free(struct dns_resolver *r)
{
	while (r->tlsa_lookups != NULL) {
		struct dns_tlsa_lookup *t = r->tlsa_lookups;
		r->tlsa_lookups = t->next;
		free(t);
	}
}

/* parse_tlsa - RFC 6698 2.1: usage, selector, matching type, data. The
 * RRSIGs a DO query brings along are passed over (dns_nextrr keeps to
 * the question's type). */
static int parse_tlsa(dnscc_t *qdn, dnscc_t *pkt, dnscc_t *cur, dnscc_t *end, void **res)
{
	struct dns_parse p;
	struct dns_rr rr;
	size_t n = 0, bytes = 0;
	int rc;

	dns_initparse(&p, qdn, pkt, cur, end);
	while ((rc = dns_nextrr(&p, &rr)) > 0) {
		if (rr.dnsrr_dsz >= 3 && n < DNS_TLSA_MAX_RECORDS) {
			n++;
			bytes += rr.dnsrr_dsz - 3;
		}
	}
	if (rc < 0)
		return DNS_E_PROTOCOL;
	if (n == 0)
		return DNS_E_NODATA;
	struct tlsa_answer *a = malloc(sizeof(*a) + n * sizeof(a->records[0]) + bytes);
	if (a == NULL)
		return DNS_E_NOMEM;
	uint8_t *data = (uint8_t *)&a->records[n];
	a->ad = dns_ad(pkt) != 0;
	a->n = 0;
	dns_rewind(&p, qdn);
	while (dns_nextrr(&p, &rr) > 0 && a->n < n) {
		if (rr.dnsrr_dsz < 3)
			continue;
		struct dns_tlsa_record *t = &a->records[a->n++];
		t->usage = rr.dnsrr_dptr[0];
		t->selector = rr.dnsrr_dptr[1];
		t->mtype = rr.dnsrr_dptr[2];
		t->len = rr.dnsrr_dsz - 3;
		memcpy(data, rr.dnsrr_dptr + 3, t->len);
		t->data = data;
		data += t->len;
	}
	*res = a;
	return 0;
}

static void udns_tlsa_cb(struct dns_ctx *ctx, void *result, void *data)
{
	struct dns_tlsa_lookup *t = data;
	struct tlsa_answer *a = result;
	enum dns_answer_kind kind = udns_kind(ctx, result);
	enum dns_route_status status = DNS_ROUTE_OK;

	tlsa_unlink(t);
	if (kind == DNS_ANSWER_TEMPFAIL)
		status = DNS_ROUTE_TEMPFAIL;
	else if (kind != DNS_ANSWER_OK)
		status = DNS_ROUTE_PERMFAIL;
	if (t->cb != NULL) {
		if (status == DNS_ROUTE_OK)
			t->cb(status, a->ad, a->records, a->n, t->arg);
		else
			t->cb(status, 0, NULL, 0, t->arg);
	}
	free(result);
	free(t);
}

void dns_lookup_tlsa(struct dns_resolver *r, const char *name, dns_tlsa_cb cb, void *arg,
	int64_t now_ms)
{
	char norm[256];

	r->now_ms = now_ms;
	if (dns_domain_normalize(name, norm, sizeof(norm)) != 0) {
		cb(DNS_ROUTE_PERMFAIL, 0, NULL, 0, arg);
		return;
	}
	struct dns_tlsa_lookup *t = xcalloc(1, sizeof(*t));
	t->r = r;
	t->cb = cb;
	t->arg = arg;
	t->next = r->tlsa_lookups;
	if (t->next != NULL)
		t->next->prev = t;
	r->tlsa_lookups = t;
	r->stats.queries++;
	if (dns_submit_p(r->ctx, norm, DNS_C_IN, DNS_T_TLSA_NUMBER, DNS_NOSRCH | DNS_SET_DO, parse_tlsa,
			 udns_tlsa_cb, t) == NULL) {
		tlsa_unlink(t);
		free(t);
		cb(DNS_ROUTE_TEMPFAIL, 0, NULL, 0, arg);
	}
}

void dns_lookup_tlsa_cancel(struct dns_resolver *r, dns_tlsa_cb cb, void *arg)
{
	for (struct dns_tlsa_lookup *t = r->tlsa_lookups; t != NULL; t = t->next)
		if (t->cb == cb && t->arg == arg)
			t->cb = NULL;
}
