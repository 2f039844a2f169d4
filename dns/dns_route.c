/*
 * dns_route - compose routes from parsed answers; pure code, no I/O.
 *
 * Failure replies (RFC 3463 enhanced codes):
 *   NXDOMAIN for the domain        550 5.1.2 permanent
 *   null MX (RFC 7505)             556 5.1.10 permanent
 *   no MX and no address           550 5.1.2 permanent
 *   MX hosts without any address   554 5.4.4 permanent
 *   SERVFAIL/timeout anywhere that leaves no usable host  451 4.4.3 temporary
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns_internal.h"
#include "log.h"
#include "nexthop.h"
#include "xalloc.h"

/* dns_rng_next - xorshift64*; tests seed it to make shuffles repeatable. */
uint64_t dns_rng_next(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 2685821657736338717ULL;
}

/* dns_route_new - an empty OK route with one reference. */
struct dns_route *dns_route_new(void)
{
	struct dns_route *route = xcalloc(1, sizeof(*route));

	route->refs = 1;
	route->status = DNS_ROUTE_OK;
	route->ttl_s = UINT32_MAX;
	return route;
}

/* route_set_failure - turn route into a failure with an SMTP reply. */
static void route_set_failure(struct dns_route *route, enum dns_route_status status,
	int code, const char *enhanced, const char *fmt, va_list ap)
{
	route->status = status;
	route->smtp_code = code;
	snprintf(route->enhanced, sizeof(route->enhanced), "%s", enhanced);
	vsnprintf(route->text, sizeof(route->text), fmt, ap);
}

/* dns_route_failure - a new failure route. */
struct dns_route *dns_route_failure(enum dns_route_status status, int code,
	const char *enhanced, const char *fmt, ...)
{
	struct dns_route *route = dns_route_new();
	va_list ap;

	va_start(ap, fmt);
	route_set_failure(route, status, code, enhanced, fmt, ap);
	va_end(ap);
	return route;
}

static void route_fail(struct dns_route *route, enum dns_route_status status,
	int code, const char *enhanced, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void route_fail(struct dns_route *route, enum dns_route_status status,
	int code, const char *enhanced, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	route_set_failure(route, status, code, enhanced, fmt, ap);
	va_end(ap);
}

/* route_free_hosts - release hosts[] and everything under it. */
static void route_free_hosts(struct dns_route *route)
{
	for (size_t i = 0; i < route->host_count; i++) {
		free(route->hosts[i].name);
		free(route->hosts[i].addrs);
	}
	free(route->hosts);
	route->hosts = NULL;
	route->host_count = 0;
}

struct dns_route *dns_route_ref(const struct dns_route *route)
{
	struct dns_route *r = (struct dns_route *)route;

	r->refs++;
	return r;
}

/* dns_route_unref - drop a reference; the last one frees the route. */
struct dns_route *dns_route_unref(struct dns_route *route)
{
	if (route == NULL)
		return NULL;
	if (route->refs <= 0)
		log_panic("dns_route_unref: refs=%d", route->refs);
	if (--route->refs == 0) {
		route_free_hosts(route);
		free(route);
	}
	return NULL;
}

/* dns_route_add_host - hosts grow one at a time: MX sets are small. */
size_t dns_route_add_host(struct dns_route *route, const char *name,
	int preference, uint16_t port)
{
	struct dns_host *h;

	route->hosts = xreallocarray(route->hosts, route->host_count + 1, sizeof(*h));
	h = &route->hosts[route->host_count];
	memset(h, 0, sizeof(*h));
	h->name = xstrdup(name);
	h->preference = preference;
	h->port = port;
	return route->host_count++;
}

static int mx_is_null(const struct dns_mx_record *mx)
{
	return mx->name == NULL || mx->name[0] == '\0' || strcmp(mx->name, ".") == 0;
}

static int mx_compare(const void *a, const void *b)
{
	const struct dns_mx_record *x = a, *y = b;

	return (x->preference > y->preference) - (x->preference < y->preference);
}

/* mx_shuffle_equal - Fisher-Yates within each run of equal preference,
 * so equal MX hosts share the load (RFC 5321 5.1). */
static void mx_shuffle_equal(struct dns_mx_record *mx, size_t count, uint64_t *rng)
{
	size_t start = 0;

	while (start < count) {
		size_t end = start + 1;

		while (end < count && mx[end].preference == mx[start].preference)
			end++;
		for (size_t i = end - 1; i > start; i--) {
			size_t j = start + dns_rng_next(rng) % (i - start + 1);
			struct dns_mx_record tmp = mx[i];

			mx[i] = mx[j];
			mx[j] = tmp;
		}
		start = end;
	}
}

/* dns_route_from_mx - hosts to look up, or the failure the MX answer means. */
struct dns_route *dns_route_from_mx(const char *domain,
	const struct dns_mx_answer *answer, uint16_t port, uint64_t *rng,
	int *implicit)
{
	struct dns_route *route;
	struct dns_mx_record *mx;
	size_t n = 0;

	*implicit = 0;
	switch (answer->kind) {
	case DNS_ANSWER_NXDOMAIN:
		return dns_route_failure(DNS_ROUTE_PERMFAIL, 550, "5.1.2",
			"domain %s does not exist", domain);
	case DNS_ANSWER_TEMPFAIL:
		return dns_route_failure(DNS_ROUTE_TEMPFAIL, 451, "4.4.3",
			"MX lookup for %s failed temporarily", domain);
	case DNS_ANSWER_NODATA:
		break;
	case DNS_ANSWER_OK:
		if (answer->count == 1 && mx_is_null(&answer->records[0]))
			return dns_route_failure(DNS_ROUTE_PERMFAIL, 556, "5.1.10",
				"domain %s does not accept mail (null MX)", domain);
		break;
	}
	route = dns_route_new();
	if (answer->kind == DNS_ANSWER_NODATA || answer->count == 0) {
		*implicit = 1;
		dns_route_add_host(route, domain, 0, port);
		return route;
	}
	route->ttl_s = answer->ttl_s;
	route->mx_secure = answer->ad != 0;
	mx = xcalloc(answer->count, sizeof(*mx));
	for (size_t i = 0; i < answer->count; i++)
		if (!mx_is_null(&answer->records[i]))	/* "." among real MX: skip it */
			mx[n++] = answer->records[i];
	qsort(mx, n, sizeof(*mx), mx_compare);
	mx_shuffle_equal(mx, n, rng);
	if (n > DNS_MAX_MX_HOSTS)	/* a hostile zone must not cost 100 lookups */
		n = DNS_MAX_MX_HOSTS;
	for (size_t i = 0; i < n; i++)
		dns_route_add_host(route, mx[i].name, mx[i].preference, port);
	free(mx);
	return route;
}

/* addr_make - one sockaddr from a raw address and port. */
static void addr_make(union dns_addr *out, int family, const void *raw, size_t i,
	uint16_t port)
{
	memset(out, 0, sizeof(*out));
	if (family == AF_INET6) {
		out->sin6.sin6_family = AF_INET6;
		out->sin6.sin6_port = htons(port);
		out->sin6.sin6_addr = ((const struct in6_addr *)raw)[i];
	} else {
		out->sin.sin_family = AF_INET;
		out->sin.sin_port = htons(port);
		out->sin.sin_addr = ((const struct in_addr *)raw)[i];
	}
}

/* dns_route_add_addrs - merge one A or AAAA answer into a host. IPv6
 * addresses go before IPv4 whatever order the answers arrive in. */
int dns_route_add_addrs(struct dns_route *route, size_t host,
	const struct dns_addr_answer *answer)
{
	struct dns_host *h = &route->hosts[host];
	union dns_addr *addrs;
	size_t at;

	if (answer->kind == DNS_ANSWER_TEMPFAIL)
		return 1;
	if (answer->kind != DNS_ANSWER_OK || answer->count == 0)
		return 0;
	if (answer->ad)
		h->secure_answers = 1;
	else
		h->insecure_answers = 1;
	addrs = xreallocarray(h->addrs, h->addr_count + answer->count, sizeof(*addrs));
	at = h->addr_count;
	if (answer->family == AF_INET6) {
		memmove(addrs + answer->count, addrs, h->addr_count * sizeof(*addrs));
		at = 0;
	}
	for (size_t i = 0; i < answer->count; i++)
		addr_make(&addrs[at + i], answer->family, answer->addrs, i, h->port);
	h->addrs = addrs;
	h->addr_count += answer->count;
	if (answer->ttl_s < route->ttl_s)
		route->ttl_s = answer->ttl_s;
	return 0;
}

/* dns_route_finish - keep hosts with addresses; an empty route fails. */
void dns_route_finish(struct dns_route *route, const char *domain,
	int implicit, int any_tempfail)
{
	size_t kept = 0;

	if (route->status != DNS_ROUTE_OK)
		return;
	for (size_t i = 0; i < route->host_count; i++) {
		if (route->hosts[i].addr_count == 0) {
			free(route->hosts[i].name);
			free(route->hosts[i].addrs);
			continue;
		}
		route->hosts[kept++] = route->hosts[i];
	}
	route->host_count = kept;
	if (kept > 0)
		return;
	if (any_tempfail)
		route_fail(route, DNS_ROUTE_TEMPFAIL, 451, "4.4.3",
			"address lookup for %s failed temporarily", domain);
	else if (implicit)
		route_fail(route, DNS_ROUTE_PERMFAIL, 550, "5.1.2",
			"domain %s has no MX and no address records", domain);
	else
		route_fail(route, DNS_ROUTE_PERMFAIL, 554, "5.4.4",
			"no MX host of %s has an address", domain);
}

/* literal_parse - "[1.2.3.4]" or "[IPv6:...]" into addr; returns the
 * position after ']' or NULL. */
static const char *literal_parse(const char *text, union dns_addr *addr)
{
	char buf[64];
	const char *close;
	size_t len;

	if (text[0] != '[' || (close = strchr(text, ']')) == NULL)
		return NULL;
	len = (size_t)(close - text - 1);
	if (len == 0 || len >= sizeof(buf))
		return NULL;
	memcpy(buf, text + 1, len);
	buf[len] = '\0';
	memset(addr, 0, sizeof(*addr));
	if (strncasecmp(buf, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, buf + 5, &addr->sin6.sin6_addr) != 1)
			return NULL;
		addr->sin6.sin6_family = AF_INET6;
	} else if (inet_pton(AF_INET, buf, &addr->sin.sin_addr) == 1) {
		addr->sin.sin_family = AF_INET;
	} else if (inet_pton(AF_INET6, buf, &addr->sin6.sin6_addr) == 1) {
		addr->sin6.sin6_family = AF_INET6;	/* "[::1]" in static routes */
	} else {
		return NULL;
	}
	return close + 1;
}

/* port_parse - decimal 1..65535. */
static int port_parse(const char *text, uint16_t *port)
{
	char *end;
	long v;

	if (!isdigit((unsigned char)*text))
		return -EINVAL;
	v = strtol(text, &end, 10);
	if (*end != '\0' || v < 1 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

/* dns_route_literal - an address literal needs no DNS at all. */
struct dns_route *dns_route_literal(const char *text, uint16_t port, int allow_port)
{
	union dns_addr addr;
	const char *rest = literal_parse(text, &addr);
	struct dns_route *route;
	char name[80];
	size_t h;

	if (rest == NULL)
		return NULL;
	if (*rest == ':' && allow_port) {
		if (port_parse(rest + 1, &port) < 0)
			return NULL;
	} else if (*rest != '\0') {
		return NULL;
	}
	snprintf(name, sizeof(name), "%.*s", (int)(rest - text), text);
	route = dns_route_new();
	route->ttl_s = 0;
	h = dns_route_add_host(route, name, 0, port);
	if (addr.sa.sa_family == AF_INET6)
		addr.sin6.sin6_port = htons(port);
	else
		addr.sin.sin_port = htons(port);
	route->hosts[h].addrs = xmalloc(sizeof(addr));
	route->hosts[h].addrs[0] = addr;
	route->hosts[h].addr_count = 1;
	return route;
}

/* dns_route_target_parse - "host" or "host:port" (not for literals). */
int dns_route_target_parse(const char *target, char *host, size_t hostlen,
	uint16_t *port, uint16_t default_port)
{
	const char *colon = strrchr(target, ':');
	size_t len = colon ? (size_t)(colon - target) : strlen(target);
	char buf[256];

	*port = default_port;
	if (colon && port_parse(colon + 1, port) < 0)
		return -EINVAL;
	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, target, len);
	buf[len] = '\0';
	return dns_domain_normalize(buf, host, hostlen);
}

/* dns_domain_normalize - the cache key form of a domain name. */
int dns_domain_normalize(const char *in, char *out, size_t outlen)
{
	size_t len = strlen(in);

	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0 || len > 253 || len >= outlen)
		return -EINVAL;
	for (size_t i = 0, label = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (!(isalnum(c) || c == '-' || c == '.' || c == '_'))
			return -EINVAL;
		if (c == '.' && (i == 0 || in[i - 1] == '.'))
			return -EINVAL;
		/* udns rejects a label over 63 bytes as a bad query: refuse it here,
		 * or it would come back as a temporary failure forever. */
		label = c == '.' ? 0 : label + 1;
		if (label > 63)
			return -EINVAL;
		out[i] = (char)tolower(c);
	}
	out[len] = '\0';
	return 0;
}

const char *dns_route_status_name(enum dns_route_status status)
{
	switch (status) {
	case DNS_ROUTE_OK: return "ok";
	case DNS_ROUTE_TEMPFAIL: return "tempfail";
	case DNS_ROUTE_PERMFAIL: return "permfail";
	}
	return "unknown";
}

/* dns_addr_format - the address without its port. */
char *dns_addr_format(const union dns_addr *addr, char *buf, size_t size)
{
	const void *raw = addr->sa.sa_family == AF_INET6
		? (const void *)&addr->sin6.sin6_addr : (const void *)&addr->sin.sin_addr;

	if (inet_ntop(addr->sa.sa_family, raw, buf, (socklen_t)size) == NULL)
		snprintf(buf, size, "?");
	return buf;
}

/* dns_route_address - the route to a next hop that is an IP literal: one
 * host "[ip]" with the address, no DNS (issue 17: "10.0.0.5:25" used to
 * be looked up as a host name and bounced). */
struct dns_route *dns_route_address(const struct nexthop *hop, uint16_t port)
{
	struct dns_route *route = dns_route_new();
	union dns_addr addr;
	char name[NEXTHOP_NAME_MAX + 2];
	size_t h;

	memset(&addr, 0, sizeof(addr));
	if (hop->family == AF_INET6) {
		addr.sin6.sin6_family = AF_INET6;
		addr.sin6.sin6_port = htons(port);
		addr.sin6.sin6_addr = hop->addr.v6;
	} else {
		addr.sin.sin_family = AF_INET;
		addr.sin.sin_port = htons(port);
		addr.sin.sin_addr = hop->addr.v4;
	}
	snprintf(name, sizeof(name), "[%s]", hop->host);
	route->ttl_s = 0;
	h = dns_route_add_host(route, name, 0, port);
	route->hosts[h].addrs = xmalloc(sizeof(addr));
	route->hosts[h].addrs[0] = addr;
	route->hosts[h].addr_count = 1;
	return route;
}

/* dns_route_next_hop_failure - a relayhost or route that does not resolve
 * is our configuration or the DNS, never the recipient's fault: defer
 * (4.4.4) and retry, as Postfix does, instead of bouncing. */
void dns_route_next_hop_failure(struct dns_route *route, const char *host)
{
	char text[sizeof(route->text)];

	if (route->status != DNS_ROUTE_PERMFAIL)
		return;
	snprintf(text, sizeof(text), "%s", route->text);
	route_fail(route, DNS_ROUTE_TEMPFAIL, 451, "4.4.4", "next hop %s cannot be resolved: %s",
		   host, text);
}
