/*
 * dest - destination addresses on a worker: one entry per MX address (IP
 * and port) that any of the worker's domains routes to; see queue.h.
 *
 * Ten thousand domains hosted by one provider share its few MX addresses.
 * Counting connections per domain alone opened thousands at once to the
 * same four addresses (greeting timeouts, then every domain backed off);
 * so each address has its own window and limit (sched_dest_admit), a
 * domain that finds its address full waits in the address's round robin,
 * and the address's sessions serve the waiting domains in turn.
 */
#include "queue.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xalloc.h"

/* dest_hash - FNV-1a of the address bytes and port. */
static uint64_t dest_hash(const union dns_addr *a)
{
	const unsigned char *p;
	size_t n;
	uint64_t h = 1469598103934665603ULL;

	if (a->sa.sa_family == AF_INET6) {
		p = (const unsigned char *)&a->sin6.sin6_addr;
		n = sizeof(a->sin6.sin6_addr);
	} else {
		p = (const unsigned char *)&a->sin.sin_addr;
		n = sizeof(a->sin.sin_addr);
	}
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	h = (h ^ a->sin.sin_port) * 1099511628211ULL;   /* same offset in sin6 */
	return (h ^ (uint64_t)a->sa.sa_family) * 1099511628211ULL;
}

static bool dest_same(const union dns_addr *a, const union dns_addr *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return false;
	if (a->sa.sa_family == AF_INET6)
		return a->sin6.sin6_port == b->sin6.sin6_port &&
		       memcmp(&a->sin6.sin6_addr, &b->sin6.sin6_addr, sizeof(a->sin6.sin6_addr)) == 0;
	return a->sin.sin_port == b->sin.sin_port && a->sin.sin_addr.s_addr == b->sin.sin_addr.s_addr;
}

/* dests_grow - a bigger table when it holds two entries a bucket. */
static void dests_grow(struct delivery *dl)
{
	size_t nb = dl->dest_buckets ? dl->dest_buckets * 4 : 64;
	struct qdest **nt = xcalloc(nb, sizeof(*nt));

	for (size_t i = 0; i < dl->dest_buckets; i++) {
		struct qdest *e = dl->dests[i];
		while (e != NULL) {
			struct qdest *next = e->hash_next;
			e->hash_next = nt[e->hash % nb];
			nt[e->hash % nb] = e;
			e = next;
		}
	}
	free(dl->dests);
	dl->dests = nt;
	dl->dest_buckets = nb;
}

/* dest_lookup - the entry of addr, whose hash is h, or NULL. */
static struct qdest *dest_lookup(const struct delivery *dl, const union dns_addr *addr, uint64_t h)
{
	if (dl->dest_buckets > 0)
		for (struct qdest *e = dl->dests[h % dl->dest_buckets]; e; e = e->hash_next)
			if (e->hash == h && dest_same(&e->addr, addr))
				return e;
	return NULL;
}

struct qdest *dest_find(const struct delivery *dl, const union dns_addr *addr)
{
	return dest_lookup(dl, addr, dest_hash(addr));
}

struct qdest *dest_get(struct delivery *dl, const union dns_addr *addr)
{
	uint64_t h = dest_hash(addr);
	struct qdest *found = dest_lookup(dl, addr, h);

	if (found != NULL)
		return found;
	if (dl->dest_count >= dl->dest_buckets * 2)
		dests_grow(dl);
	struct qdest *e = xcalloc(1, sizeof(*e));
	e->hash = h;
	e->addr = *addr;
	e->window = INITIAL_WINDOW;
	char ip[INET6_ADDRSTRLEN];
	dns_addr_format(addr, ip, sizeof(ip));
	snprintf(e->text, sizeof(e->text), addr->sa.sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip,
		 (unsigned)ntohs(addr->sin.sin_port));
	e->hash_next = dl->dests[h % dl->dest_buckets];
	dl->dests[h % dl->dest_buckets] = e;
	dl->dest_count++;
	return e;
}

bool dest_backed_off(const struct delivery *dl, const struct qdest *dest)
{
	return dest->until_ms > dl->w->now_ms;
}

void dest_wait(struct qdest *dest, struct qdomain *d)
{
	if (d->wait_on != NULL)
		return;
	d->wait_on = dest;
	d->wait_next = NULL;
	d->wait_prev = dest->wait_tail;
	if (dest->wait_tail)
		dest->wait_tail->wait_next = d;
	else
		dest->wait_head = d;
	dest->wait_tail = d;
	dest->waiting++;
	d->dl->domains_waiting++;
}

void dest_unwait(struct qdomain *d)
{
	struct qdest *dest = d->wait_on;

	if (dest == NULL)
		return;
	if (d->wait_prev)
		d->wait_prev->wait_next = d->wait_next;
	else
		dest->wait_head = d->wait_next;
	if (d->wait_next)
		d->wait_next->wait_prev = d->wait_prev;
	else
		dest->wait_tail = d->wait_prev;
	d->wait_prev = d->wait_next = NULL;
	d->wait_on = NULL;
	dest->waiting--;
	d->dl->domains_waiting--;
}

struct qdomain *dest_pop_waiter(struct qdest *dest)
{
	struct qdomain *d = dest->wait_head;

	if (d != NULL)
		dest_unwait(d);
	return d;
}

void dest_wake(struct delivery *dl, struct qdest *dest)
{
	struct qdomain *d = dest != NULL ? dest_pop_waiter(dest) : NULL;

	if (d == NULL)
		d = dest_pop_waiter(&dl->anywhere);
	if (d != NULL)
		domain_kick(dl, d);
}

/* dest_free_slots - sessions dest could open now by its window and the
 * per-address share (the worker's cap is counted apart). */
static unsigned dest_free_slots(const struct delivery *dl, const struct qdest *dest)
{
	unsigned limit = dest->window < dl->max_per_address ? dest->window : dl->max_per_address;

	return dest_backed_off(dl, dest) || dest->active >= limit ? 0 : limit - dest->active;
}

/* kick_waiters - up to n domains waiting at dest, each kicked once (a
 * kick may put one back at the tail: n is counted before). */
static void kick_waiters(struct delivery *dl, struct qdest *dest, size_t n)
{
	struct qdomain *d;

	if (n > dest->waiting)
		n = dest->waiting;
	while (n-- > 0 && !dl->stopping && (d = dest_pop_waiter(dest)) != NULL)
		domain_kick(dl, d);
}

void dests_rewake(struct delivery *dl)
{
	struct qdest **due = NULL;
	size_t n = 0, cap = 0;

	/* Collected first: a kick may add an address and grow the table. */
	for (size_t i = 0; i < dl->dest_buckets; i++) {
		for (struct qdest *e = dl->dests[i]; e != NULL; e = e->hash_next) {
			if (e->wait_head == NULL || dest_free_slots(dl, e) == 0)
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 16;
				due = xreallocarray(due, cap, sizeof(*due));
			}
			due[n++] = e;
		}
	}
	for (size_t i = 0; i < n; i++)
		kick_waiters(dl, due[i], dest_free_slots(dl, due[i]));
	free(due);
	if (dl->sessions_active < dl->max_total)
		kick_waiters(dl, &dl->anywhere, dl->max_total - dl->sessions_active);
}

void dest_succeeded(struct delivery *dl, struct qdest *dest)
{
	dest->failures = 0;
	dest->until_ms = 0;
	dest->window = sched_window_grow(dest->window, dl->max_per_address);
}

void dest_failed(struct delivery *dl, struct qdest *dest)
{
	struct sched_dest_failure f = sched_dest_failed(dest->window, ++dest->failures,
							dl->w->cfg->address_backoff_ms,
							dl->w->cfg->domain_backoff_ms);

	dest->window = f.window;
	dest->until_ms = dl->w->now_ms + f.backoff_ms;
	log_info("address_backoff", "address=%s failures=%u window=%u for_ms=%lld", dest->text,
		 dest->failures, dest->window, (long long)f.backoff_ms);
}

/* dest_idle - nothing refers to it and it has nothing to remember. */
static bool dest_idle(const struct delivery *dl, const struct qdest *dest)
{
	return dest->active == 0 && dest->idle_head == NULL && dest->wait_head == NULL &&
	       (dest->failures == 0 || !dest_backed_off(dl, dest));
}

void dests_reap(struct delivery *dl)
{
	for (size_t i = 0; i < dl->dest_buckets; i++) {
		struct qdest **p = &dl->dests[i];
		while (*p != NULL) {
			struct qdest *e = *p;
			if (dest_idle(dl, e)) {
				*p = e->hash_next;
				free(e);
				dl->dest_count--;
			} else {
				p = &e->hash_next;
			}
		}
	}
}

void dests_free(struct delivery *dl)
{
	for (size_t i = 0; i < dl->dest_buckets; i++) {
		struct qdest *e = dl->dests[i];
		while (e != NULL) {
			struct qdest *next = e->hash_next;
			free(e);
			e = next;
		}
	}
	free(dl->dests);
	dl->dests = NULL;
	dl->dest_buckets = dl->dest_count = 0;
}

const char *dest_mx_name(const struct qdest *dest, const struct dns_route *route)
{
	for (size_t h = 0; route != NULL && h < route->host_count; h++)
		for (size_t a = 0; a < route->hosts[h].addr_count; a++)
			if (dest_same(&dest->addr, &route->hosts[h].addrs[a]))
				return route->hosts[h].name;
	return NULL;
}
