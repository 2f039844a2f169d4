/*
 * dns - asynchronous caching MX resolver on udns, driven by the caller's loop.
 *
 *   r = dns_resolver_new(&opts, err, sizeof err);
 *   poll dns_resolver_fd(r) for POLLIN -> dns_resolver_on_readable(r, now_ms)
 *   arm a timer at dns_resolver_next_timeout_ms(r, now_ms) -> dns_resolver_on_timer(r, now_ms)
 *   dns_resolve_route(r, "example.com", cb, arg, now_ms);
 *   r = dns_resolver_free(r);
 *
 * The resolver never blocks and never calls getaddrinfo. All times are
 * milliseconds on a clock the caller chooses (CLOCK_MONOTONIC in the
 * daemon, a fake clock in tests); the same clock must be used throughout.
 * One resolver per worker thread: nothing here is thread-safe.
 *
 * A route says where mail for a domain goes: hosts in the order to try
 * (MX preference; equal preferences shuffled once per cache fill), each
 * with its addresses (port filled in), or a failure with an SMTP reply.
 * The cache holds composed routes (MX order + addresses), not single
 * records: key = lowercased domain without trailing dot, or "=host:port"
 * for a static route / relayhost target (so every domain routed to one
 * relay shares one lookup). IP literals are never cached. A route lives
 * min(TTL of MX and A/AAAA answers) clamped to [ttl_min_s, ttl_max_s];
 * permanent failures live negative_ttl_s (udns does not expose the SOA
 * minimum); temporary failures are not cached. Eviction: LRU at
 * cache_max_entries. Concurrent requests for one key share one lookup.
 *
 * Driving it: after dns_resolve_route() (and after every callback into
 * the resolver) re-read dns_resolver_next_timeout_ms(): new queries ask
 * for a timer of 0 and are sent by dns_resolver_on_timer().
 *
 * Ownership: a struct dns_route passed to a callback is borrowed for the
 * duration of the callback; call dns_route_ref() to keep it and
 * dns_route_unref() when done. Routes are immutable once delivered.
 * The callback may run synchronously inside dns_resolve_route() (cache
 * hit, IP literal, static route to an IP, syntax error) and must not
 * free the resolver. All strings in dns_options are copied.
 */
#ifndef RINGMAIL_DNS_H
#define RINGMAIL_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

enum dns_family_mode {
	DNS_FAMILY_IPV4,	/* A only */
	DNS_FAMILY_IPV6,	/* AAAA only */
	DNS_FAMILY_BOTH,	/* A and AAAA; IPv6 addresses listed first */
};

/* A static route: mail for domain goes to target, "host", "host:port",
 * "[ip]" or "[ip]:port"; no MX lookup (a host name gets A/AAAA lookups). */
struct dns_static_route {
	const char *domain;
	const char *target;
};

struct dns_options {
	const char *const *nameservers;	/* "addr" or "addr:port" / "[v6]:port"; */
	size_t nameserver_count;	/* 0 = /etc/resolv.conf (udns defaults) */
	size_t cache_max_entries;	/* 0 = 10000 */
	uint32_t ttl_min_s;		/* positive TTL clamp; defaults 60 */
	uint32_t ttl_max_s;		/* and 86400 (0 = default) */
	uint32_t negative_ttl_s;	/* NXDOMAIN/NODATA cache time; 0 = 300 */
	size_t max_in_flight;		/* domains resolving at once; 0 = 64 */
	enum dns_family_mode family;	/* default DNS_FAMILY_IPV4 (0) */
	uint16_t port;			/* SMTP port of routes; 0 = 25 */
	int timeout_s;			/* udns DNS_OPT_TIMEOUT; 0 = udns default (4) */
	int tries;			/* udns DNS_OPT_NTRIES; 0 = udns default (3) */
	const struct dns_static_route *static_routes;
	size_t static_route_count;
	const char *relayhost;		/* default route for every domain, or NULL */
	uint64_t shuffle_seed;		/* 0 = seeded from the clock */
	int dnssec;			/* DO bit in queries; routes and TLSA answers
					 * say whether the resolver validated them (AD) */
};

enum dns_route_status {
	DNS_ROUTE_OK,
	DNS_ROUTE_TEMPFAIL,			/* try again later (4xx) */
	DNS_ROUTE_PERMFAIL,			/* bounce (5xx) */
};

union dns_addr {
	struct sockaddr sa;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
};

struct dns_host {
	char *name;			/* MX host or static host; "[ip]" for literals */
	int preference;
	uint16_t port;
	size_t addr_count;
	union dns_addr *addrs;		/* port filled in, network order */
	/* DNSSEC (dns_options.dnssec): address answers that came with AD,
	 * and whether any came without; see dns_host_secure(). */
	unsigned char secure_answers, insecure_answers;
};

struct dns_route {
	int refs;
	enum dns_route_status status;
	int smtp_code;			/* 0 when OK; else e.g. 450, 550, 556 */
	char enhanced[16];		/* "5.1.2"; "" when OK */
	char text[160];			/* human text for the reply/DSN */
	uint32_t ttl_s;			/* what the cache keeps it for */
	size_t host_count;
	struct dns_host *hosts;
	int mx_secure;			/* the MX answer came with AD (dnssec only;
					 * 0 for an implicit MX, a static route) */
};

/* dns_host_secure - every address answer of h was validated (AD) by the
 * resolver, and there was at least one (RFC 7672 2.2.2: TLSA lookups are
 * for hosts whose address records are secure). */
static inline int dns_host_secure(const struct dns_host *h)
{
	return h->secure_answers > 0 && h->insecure_answers == 0;
}

struct dns_stats {
	uint64_t hits;			/* answered from the cache */
	uint64_t misses;		/* started a lookup */
	uint64_t coalesced;		/* joined a lookup already running */
	uint64_t queries;		/* udns queries submitted (MX, A, AAAA) */
	uint64_t failures;		/* routes that ended TEMPFAIL or PERMFAIL */
	uint64_t evictions;		/* cache entries dropped for capacity */
	uint64_t cache_entries;		/* entries now in the cache */
	uint64_t in_flight;		/* domains resolving now */
	uint64_t waiting;		/* domains queued behind max_in_flight */
};

struct dns_resolver;

/* The route is borrowed; arg is the caller's. */
typedef void (*dns_route_cb)(const struct dns_route *route, void *arg);

/* dns_resolver_new - create a resolver and open its UDP socket.
 * Returns NULL with a message in err on bad options or socket failure. */
struct dns_resolver *dns_resolver_new(const struct dns_options *opts,
	char *err, size_t errlen);
/* dns_resolver_free - cancel lookups (their callbacks are NOT called),
 * drop the cache. Accepts NULL; returns NULL. */
struct dns_resolver *dns_resolver_free(struct dns_resolver *r);

int dns_resolver_fd(const struct dns_resolver *r);
void dns_resolver_on_readable(struct dns_resolver *r, int64_t now_ms);
/* Milliseconds until dns_resolver_on_timer() is due; -1 = no timer. */
int64_t dns_resolver_next_timeout_ms(const struct dns_resolver *r, int64_t now_ms);
void dns_resolver_on_timer(struct dns_resolver *r, int64_t now_ms);

/* dns_resolve_route - find where mail for domain goes and call cb once. */
void dns_resolve_route(struct dns_resolver *r, const char *domain,
	dns_route_cb cb, void *arg, int64_t now_ms);

/* dns_resolve_next_hop - where mail for a next hop goes ("host[:port]",
 * "[host]:port", "ip:port", "[ipv6]:port"; a sender route): as for a
 * domain with that static route. */
void dns_resolve_next_hop(struct dns_resolver *r, const char *target,
	dns_route_cb cb, void *arg, int64_t now_ms);

/* dns_resolve_cancel - the caller no longer wants the answers it asked
 * for with (cb, arg): every such waiter is taken out of the lookups in
 * progress, so cb is not called with arg afterwards (and arg may be freed).
 * The lookups themselves go on and fill the cache. Returns how many
 * waiters were taken out (0: none was waiting, e.g. it was answered). */
size_t dns_resolve_cancel(struct dns_resolver *r, dns_route_cb cb, void *arg);
/* dns_resolve_cancel_if - the same for every waiter of cb whose arg
 * pred(arg) (non-zero) gives up: one pass over the waiters, for many at
 * once (a reload that moves thousands of domains). */
size_t dns_resolve_cancel_if(struct dns_resolver *r, dns_route_cb cb, int (*pred)(void *arg));

/* A set of static routes and a relayhost (see dns_options), copied:
 * what dns_resolve_route consults before MX. dns_routes_new returns NULL
 * with a message in err on an incomplete route; dns_routes_free accepts
 * NULL and returns NULL. */
struct dns_routes;
struct dns_routes *dns_routes_new(const struct dns_static_route *routes, size_t n,
	const char *relayhost, char *err, size_t errlen);
struct dns_routes *dns_routes_free(struct dns_routes *t);
/* dns_routes_target - the next hop t gives domain (its route, a parent
 * domain's, else the relayhost), or NULL: its own MX (also for an address
 * literal or a bad name). Borrowed from t. */
const char *dns_routes_target(const struct dns_routes *t, const char *domain);
/* dns_resolver_swap_routes - r uses routes (owned by r from now on) for
 * the lookups that start from now; returns the set it used before, which
 * the caller frees. Lookups in progress and cached answers keyed by a next
 * hop are unaffected: a domain that must move cancels its waiter. */
struct dns_routes *dns_resolver_swap_routes(struct dns_resolver *r, struct dns_routes *routes);

void dns_resolver_stats(const struct dns_resolver *r, struct dns_stats *out);

struct dns_route *dns_route_ref(const struct dns_route *route);
/* Accepts NULL; returns NULL. */
struct dns_route *dns_route_unref(struct dns_route *route);
const char *dns_route_status_name(enum dns_route_status status);
/* dns_addr_format - "1.2.3.4" or "::1" (no port) into buf; returns buf. */
char *dns_addr_format(const union dns_addr *addr, char *buf, size_t size);

/* dns_lookup_txt - the TXT records at name (for MTA-STS: _mta-sts.DOMAIN),
 * not cached (the caller caches what it derives from them). cb is called
 * once: DNS_ROUTE_OK with n records (each record's strings joined, as RFC
 * 8461 3.1 and udns do; txts[i] is lens[i] bytes and NUL-terminated, and
 * borrowed for the call), DNS_ROUTE_PERMFAIL with n = 0 for NXDOMAIN or no
 * TXT record, DNS_ROUTE_TEMPFAIL when DNS failed. Never synchronous for a
 * valid name; a name that is not one gets PERMFAIL at once. Cancelled
 * without a call by dns_resolver_free(). */
typedef void (*dns_txt_cb)(enum dns_route_status status, const char *const *txts,
	const size_t *lens, size_t n, void *arg);
void dns_lookup_txt(struct dns_resolver *r, const char *name, dns_txt_cb cb, void *arg,
	int64_t now_ms);

/* dns_lookup_tlsa - the TLSA records at name ("_25._tcp.mx.example"),
 * not cached, with the AD bit of the answer (dnssec). cb is called once:
 * DNS_ROUTE_OK with n records (borrowed for the call; data points into
 * the answer; records with fewer than 3 bytes of RDATA are skipped),
 * DNS_ROUTE_PERMFAIL with n = 0 for NXDOMAIN or no TLSA record,
 * DNS_ROUTE_TEMPFAIL when DNS failed (for a validating resolver, SERVFAIL
 * is also what a bogus answer looks like). secure: the answer came with
 * AD (OK only). Never synchronous for a valid name; a name that is not
 * one gets PERMFAIL at once. At most DNS_TLSA_MAX_RECORDS are passed. */
#define DNS_TLSA_MAX_RECORDS 64
struct dns_tlsa_record {
	uint8_t usage, selector, mtype;
	size_t len;
	const uint8_t *data;
};
typedef void (*dns_tlsa_cb)(enum dns_route_status status, int secure,
	const struct dns_tlsa_record *records, size_t n, void *arg);
void dns_lookup_tlsa(struct dns_resolver *r, const char *name, dns_tlsa_cb cb, void *arg,
	int64_t now_ms);
/* dns_lookup_tlsa_cancel - cb will not be called for arg (it may go). */
void dns_lookup_tlsa_cancel(struct dns_resolver *r, dns_tlsa_cb cb, void *arg);

/* The CLI, see dns_cli.c. */
int dns_resolve_main(int argc, char **argv);

#endif
