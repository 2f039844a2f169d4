/*
 * dane_delivery - DANE applied to deliveries; see dane_delivery.h.
 */
#include "dane_delivery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "queue.h"

enum dane_host_state {
	DANE_HOST_PENDING,         /* the TLSA lookup is out */
	DANE_HOST_NONE,            /* no DANE: insecure, or no records (secure denial) */
	DANE_HOST_USABLE,          /* secure records, some usable */
	DANE_HOST_UNUSABLE,        /* secure records, none usable: encrypt */
	DANE_HOST_BOGUS,           /* the lookup failed in a secure zone: not used */
};

static const char *const dane_host_state_names[] = {
	"pending", "none", "usable", "unusable", "bogus",
};

struct dane_host {
	struct dane_domain *st;    /* the lookup's callback argument is the host */
	char *name;
	enum dane_host_state state;
	struct dane_tlsa *records; /* one block with their data; USABLE/UNUSABLE */
	size_t count;
};

struct dane_domain {
	struct qdomain *d;
	struct dns_route *route;   /* the route the answers are for (a reference) */
	struct dane_host *hosts;
	size_t host_count;
	unsigned pending;          /* lookups out */
	bool in_gate;              /* inside the gate's own call: no kick from there */
	bool refused_logged;       /* every host bogus: said once per route */
};

/* dane_applies - does DANE govern d's mail? Its own MX hosts only, with
 * dane.enabled or its own tls "dane"; another explicit tls wins. Mail with
 * "TLS-Required: No" (RFC 8689 5, d->tls_optional) is exempt, as it is
 * from MTA-STS. */
static bool dane_applies(const struct delivery *dl, const struct qdomain *d)
{
	const struct config *cfg = dl->w->cfg;
	const struct config_domain *p = config_domain_policy(cfg, d->name);

	if (d->hop != NULL || d->tls_optional || dl->w->role == WORKER_ROLE_LOCAL ||
	    config_is_local_domain(cfg, d->name))
		return false;
	if ((p->route != NULL && p->route[0] != '\0') || cfg->relayhost[0] != '\0')
		return false;
	if (p->tls_set)
		return p->tls == CONFIG_TLS_DANE;
	return cfg->dane_enabled || p->tls == CONFIG_TLS_DANE;
}

bool dane_delivery_busy(const struct qdomain *d)
{
	return d->dane != NULL && d->dane->pending > 0;
}

static void hosts_free(struct dane_domain *st)
{
	for (size_t i = 0; i < st->host_count; i++) {
		free(st->hosts[i].name);
		free(st->hosts[i].records);
	}
	free(st->hosts);
	st->hosts = NULL;
	st->host_count = 0;
	st->route = dns_route_unref(st->route);
}

struct dane_domain *dane_domain_free(struct dane_domain *st)
{
	if (st == NULL)
		return NULL;
	hosts_free(st);
	free(st);
	return NULL;
}

/* host_of - d's answer for MX host mx (for the route known), or NULL. */
static const struct dane_host *host_of(const struct delivery *dl, const struct qdomain *d, const char *mx)
{
	const struct dane_domain *st = d != NULL ? d->dane : NULL;

	if (st == NULL || mx == NULL || st->pending > 0 || !dane_applies(dl, d))
		return NULL;
	for (size_t i = 0; i < st->host_count; i++)
		if (strcasecmp(st->hosts[i].name, mx) == 0)
			return &st->hosts[i];
	return NULL;
}

/* ---- the answers ----------------------------------------------------- */

enum config_tls_policy dane_delivery_tls(const struct delivery *dl, const struct qdomain *d, const char *mx,
					 enum config_tls_policy policy)
{
	const struct dane_host *h = host_of(dl, d, mx);
	enum config_tls_policy other = policy == CONFIG_TLS_DANE ? CONFIG_TLS_MAY : policy;

	if (h == NULL)
		return other;
	if (h->state == DANE_HOST_USABLE)
		return CONFIG_TLS_DANE;
	if (h->state == DANE_HOST_UNUSABLE && (other == CONFIG_TLS_NONE || other == CONFIG_TLS_MAY))
		return CONFIG_TLS_ENCRYPT;
	return other;
}

bool dane_delivery_host_allowed(const struct delivery *dl, const struct qdomain *d, const char *mx)
{
	const struct dane_host *h = host_of(dl, d, mx);

	return h == NULL || h->state != DANE_HOST_BOGUS;
}

bool dane_delivery_host_usable(const struct delivery *dl, const struct qdomain *d, const char *mx)
{
	const struct dane_host *h = host_of(dl, d, mx);

	return h != NULL && h->state == DANE_HOST_USABLE;
}

bool dane_delivery_any_usable(const struct delivery *dl, const struct qdomain *d, const struct dns_route *route)
{
	for (size_t i = 0; i < route->host_count; i++)
		if (dane_delivery_host_usable(dl, d, route->hosts[i].name))
			return true;
	return false;
}

const struct dane_tlsa *dane_delivery_records(const struct delivery *dl, const struct qdomain *d, const char *mx,
					      size_t *n)
{
	const struct dane_host *h = host_of(dl, d, mx);

	*n = 0;
	if (h == NULL || h->state != DANE_HOST_USABLE)
		return NULL;
	*n = h->count;
	return h->records;
}

enum tls_applied dane_delivery_applied(const struct delivery *dl, const struct qdomain *d, const char *mx,
				       enum tls_applied other)
{
	const struct dane_domain *st = d != NULL ? d->dane : NULL;

	if (mx == NULL && st != NULL && st->pending == 0 && dane_applies(dl, d)) {
		/* A deferral of the route (no host left): DANE's when it
		 * refused every host, or some host had records. */
		if (st->refused_logged)
			return TLS_APPLIED_DANE;
		for (size_t i = 0; i < st->host_count; i++)
			if (st->hosts[i].state == DANE_HOST_USABLE)
				return TLS_APPLIED_DANE;
	}
	return dane_delivery_host_usable(dl, d, mx) ? TLS_APPLIED_DANE : other;
}

/* ---- the lookups ----------------------------------------------------- */

/* host_records - keep the first max records of a secure answer. */
static void host_records(struct dane_host *h, const struct dns_tlsa_record *recs, size_t n, size_t max)
{
	size_t bytes = 0;

	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++)
		bytes += recs[i].len;
	h->records = xmalloc(n * sizeof(*h->records) + bytes + 1);
	uint8_t *data = (uint8_t *)(h->records + n);
	for (size_t i = 0; i < n; i++) {
		h->records[i] = (struct dane_tlsa){ recs[i].usage, recs[i].selector, recs[i].mtype, recs[i].len, data };
		memcpy(data, recs[i].data, recs[i].len);
		data += recs[i].len;
	}
	h->count = n;
	h->state = dane_usability(h->records, n) == DANE_USABLE ? DANE_HOST_USABLE : DANE_HOST_UNUSABLE;
}

static void tlsa_done(enum dns_route_status status, int secure, const struct dns_tlsa_record *recs, size_t n,
		      void *arg)
{
	struct dane_host *h = arg;
	struct dane_domain *st = h->st;
	struct qdomain *d = st->d;
	struct delivery *dl = d->dl;

	if (status == DNS_ROUTE_OK && secure)
		host_records(h, recs, n, (size_t)dl->w->cfg->dane_max_tlsa_records);
	else if (status == DNS_ROUTE_TEMPFAIL)
		h->state = DANE_HOST_BOGUS;    /* the host's zone is signed: SERVFAIL is bogus or broken */
	else
		h->state = DANE_HOST_NONE;     /* no records, or an insecure answer */
	log_info("dane_tlsa", "domain=%s mx=%s result=%s records=%zu secure=%d", d->name, h->name,
		 dane_host_state_names[h->state], h->count, status == DNS_ROUTE_OK ? secure : -1);
	if (h->state == DANE_HOST_BOGUS)
		log_warn("dane_refused", "domain=%s mx=%s reason=\"TLSA lookup failed in a signed zone\" "
			 "result_type=%s action=skip_host", d->name, h->name, dane_result_name(DANE_RESULT_DNSSEC_INVALID));
	if (--st->pending == 0 && !dl->stopping && !st->in_gate)
		domain_kick(dl, d);
}

/* lookups_start - a fresh answer set for route: a TLSA lookup for each
 * host whose addresses are secure (with a secure MX answer); the others
 * have none. */
static void lookups_start(struct delivery *dl, struct dane_domain *st, const struct dns_route *route)
{
	char name[300];

	hosts_free(st);
	st->route = dns_route_ref(route);
	st->refused_logged = false;
	st->hosts = xcalloc(route->host_count ? route->host_count : 1, sizeof(*st->hosts));
	st->host_count = route->host_count;
	for (size_t i = 0; i < route->host_count; i++) {
		st->hosts[i].st = st;
		st->hosts[i].name = xstrdup(route->hosts[i].name);
		st->hosts[i].state = route->mx_secure && dns_host_secure(&route->hosts[i]) ? DANE_HOST_PENDING
											  : DANE_HOST_NONE;
	}
	/* pending counts them all first: an answer inside the loop (a name
	 * the resolver refuses at once) must not look like the last one. */
	for (size_t i = 0; i < st->host_count; i++)
		st->pending += st->hosts[i].state == DANE_HOST_PENDING;
	for (size_t i = 0; i < st->host_count; i++) {
		if (st->hosts[i].state != DANE_HOST_PENDING)
			continue;
		snprintf(name, sizeof(name), "_%u._tcp.%s", (unsigned)route->hosts[i].port, route->hosts[i].name);
		dl->stats.dane_lookups++;
		dns_lookup_tlsa(dl->resolver, name, tlsa_done, &st->hosts[i], dl->w->now_ms);
	}
}

/* all_refused - every host of the route is bogus: the ready mail is
 * deferred with the reason, and true returned. */
static bool all_refused(struct delivery *dl, struct qdomain *d)
{
	struct dane_domain *st = d->dane;
	char text[REPLY_TEXT_MAX];

	if (st->host_count == 0)
		return false;
	for (size_t i = 0; i < st->host_count; i++)
		if (st->hosts[i].state != DANE_HOST_BOGUS)
			return false;
	if (d->ready_head == NULL)
		return true;
	snprintf(text, sizeof(text), "DANE: the TLSA lookup of %s%s failed in a DNSSEC-signed zone "
		 "(result-type=%s)", st->hosts[0].name, st->host_count > 1 ? " and every other MX host" : "",
		 dane_result_name(DANE_RESULT_DNSSEC_INVALID));
	if (!st->refused_logged)
		log_warn("dane_refused", "domain=%s mx=%s reason=\"no MX host with a valid TLSA answer\" "
			 "result_type=%s action=defer", d->name, st->hosts[0].name,
			 dane_result_name(DANE_RESULT_DNSSEC_INVALID));
	st->refused_logged = true;
	dl->stats.dane_failures++;
	domain_defer_ready(dl, d, DANE_DEFER_STATUS, text);
	return true;
}

bool dane_delivery_gate(struct delivery *dl, struct qdomain *d, const struct dns_route *route)
{
	if (!dane_applies(dl, d)) {
		d->dane = dane_domain_free(d->dane);
		return false;
	}
	if (d->dane == NULL) {
		d->dane = xcalloc(1, sizeof(*d->dane));
		d->dane->d = d;
	}
	struct dane_domain *st = d->dane;
	if (st->pending > 0)
		return true;       /* kicked again when they are in (for the new route too) */
	if (st->route != route) {
		st->in_gate = true;
		lookups_start(dl, st, route);
		st->in_gate = false;
		if (st->pending > 0)
			return true;
	}
	return all_refused(dl, d);
}
