/*
 * dns_internal - the resolver's pure parts, exposed for unit tests.
 *
 * dns_cache: a hash table of entries keyed by lowercased domain. An entry
 * is either pending (a lookup runs; its job collects waiters, which is how
 * N requests become one query) or ready (a route and an expiry time).
 * Ready entries sit on an LRU list; when more than max_entries are ready,
 * the least recently used is dropped. Pending entries never count and are
 * never evicted. Expired entries are dropped when looked up.
 *
 * dns_route_*: composition of a route from parsed answers (our own answer
 * structs, converted from udns results, so tests need no network).
 *
 * Query hook: with dns_resolver_set_query_hook() the resolver hands each
 * query to the hook instead of udns; the test answers it later with
 * dns_query_answer_mx() / dns_query_answer_addr().
 */
#ifndef RINGMAIL_DNS_INTERNAL_H
#define RINGMAIL_DNS_INTERNAL_H

#include "dns.h"

/* ---- cache ---- */
struct dns_cache;
struct dns_cache_entry {
	char *key;
	uint32_t hash;
	struct dns_cache_entry *hash_next;
	struct dns_cache_entry *lru_prev, *lru_next;
	struct dns_route *route;	/* ready: a reference held by the cache */
	int64_t expires_ms;
	void *job;			/* pending: the lookup, owned by the resolver */
};

struct dns_cache *dns_cache_new(size_t max_entries);
struct dns_cache *dns_cache_free(struct dns_cache *cache);
/* A pending entry, or a fresh ready entry (made most recently used), or
 * NULL. A ready entry past its expiry is removed and NULL returned. */
struct dns_cache_entry *dns_cache_find(struct dns_cache *cache, const char *key,
	int64_t now_ms);
struct dns_cache_entry *dns_cache_add_pending(struct dns_cache *cache,
	const char *key, void *job);
/* dns_cache_fill - pending -> ready; takes a new reference to route. */
void dns_cache_fill(struct dns_cache *cache, struct dns_cache_entry *entry,
	struct dns_route *route, int64_t expires_ms);
void dns_cache_remove(struct dns_cache *cache, struct dns_cache_entry *entry);
size_t dns_cache_ready_count(const struct dns_cache *cache);
uint64_t dns_cache_evictions(const struct dns_cache *cache);

/* ---- answers and route composition ---- */
enum dns_answer_kind {
	DNS_ANSWER_OK,
	DNS_ANSWER_NXDOMAIN,
	DNS_ANSWER_NODATA,
	DNS_ANSWER_TEMPFAIL,		/* SERVFAIL, timeout, garbled reply */
};

struct dns_mx_record {
	int preference;
	const char *name;		/* "" or "." for a null MX */
};

struct dns_mx_answer {
	enum dns_answer_kind kind;
	uint32_t ttl_s;
	size_t count;
	const struct dns_mx_record *records;
	int ad;				/* validated by the resolver (AD) */
};

struct dns_addr_answer {
	enum dns_answer_kind kind;
	uint32_t ttl_s;
	int family;			/* AF_INET or AF_INET6 */
	size_t count;
	const void *addrs;		/* struct in_addr[] or struct in6_addr[] */
	int ad;				/* validated by the resolver (AD) */
};

/* dns_rng_next - xorshift64*: a cheap PRNG; *state must be non-zero. */
uint64_t dns_rng_next(uint64_t *state);
struct dns_route *dns_route_new(void);
struct dns_route *dns_route_failure(enum dns_route_status status, int code,
	const char *enhanced, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* MX hosts kept per domain after sorting (Postfix uses 5 addresses). */
#define DNS_MAX_MX_HOSTS 10

/* dns_route_from_mx - a failure route, or one host per MX (sorted, equal
 * preferences shuffled with rng) without addresses yet; *implicit set
 * when there was no MX and the domain itself is the host. */
struct dns_route *dns_route_from_mx(const char *domain,
	const struct dns_mx_answer *answer, uint16_t port, uint64_t *rng,
	int *implicit);
/* dns_route_add_host - append a host without addresses; returns its index. */
size_t dns_route_add_host(struct dns_route *route, const char *name,
	int preference, uint16_t port);
/* dns_route_add_addrs - add addresses to host (IPv6 before IPv4).
 * Returns 1 if the answer was a temporary failure, else 0. */
int dns_route_add_addrs(struct dns_route *route, size_t host,
	const struct dns_addr_answer *answer);
/* dns_route_finish - drop hosts without addresses; turn an empty route
 * into the right failure. */
void dns_route_finish(struct dns_route *route, const char *domain,
	int implicit, int any_tempfail);
/* dns_route_literal - "[1.2.3.4]" or "[IPv6:::1]" (optionally ":port"
 * after the bracket when allow_port) to a route; NULL if not a literal. */
struct dns_route *dns_route_literal(const char *text, uint16_t port, int allow_port);
/* dns_route_address - a one-host route "[ip]" to a next hop that is an
 * IP literal (nexthop.h), at port. */
struct nexthop;
struct dns_route *dns_route_address(const struct nexthop *hop, uint16_t port);
/* dns_route_next_hop_failure - turn a permanent failure of a next hop's
 * lookup into a temporary one (451 4.4.4). */
void dns_route_next_hop_failure(struct dns_route *route, const char *host);
/* dns_route_target_parse - split "host[:port]" into host and port.
 * Returns 0 or -EINVAL. */
int dns_route_target_parse(const char *target, char *host, size_t hostlen,
	uint16_t *port, uint16_t default_port);
/* dns_domain_normalize - lowercase, drop one trailing dot, check length
 * and characters. Returns 0 or -EINVAL. */
int dns_domain_normalize(const char *in, char *out, size_t outlen);

/* ---- query hook for tests ---- */
struct dns_pending_query;
enum dns_query_kind { DNS_QUERY_MX, DNS_QUERY_A, DNS_QUERY_AAAA };
typedef void (*dns_query_hook)(void *arg, struct dns_pending_query *query,
	enum dns_query_kind kind, const char *name);
void dns_resolver_set_query_hook(struct dns_resolver *r, dns_query_hook hook,
	void *arg);
void dns_query_answer_mx(struct dns_pending_query *query,
	const struct dns_mx_answer *answer, int64_t now_ms);
void dns_query_answer_addr(struct dns_pending_query *query,
	const struct dns_addr_answer *answer, int64_t now_ms);

#endif
