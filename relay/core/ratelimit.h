/*
 * ratelimit - how many failed logins a client address may make.
 *
 *   if (!ratelimit_allowed(rl, peer, now_ms))   refuse before hashing anything
 *           reply 454 4.7.0 / -ERR [AUTH] and log
 *   ... users_verify ...
 *   ok ? ratelimit_succeeded(rl, peer) : ratelimit_failed(rl, peer, now_ms)
 *
 * A token bucket per address in the shape of GCRA: an address may fail
 * `burst` times back to back; after that it regains one attempt every
 * window_ms / burst milliseconds, and all of them window_ms after its last
 * failure. One 64-bit "theoretical arrival time" per address, exact integer
 * arithmetic (times are kept scaled by burst, so nothing is rounded).
 *
 * Addresses: IPv4, IPv6 grouped by ipv6_prefix bits (a host on IPv6 holds a
 * whole /64, so per-address counting would not slow it down), and IPv4-mapped
 * IPv6 counted as IPv4. Other families (unix sockets) are always allowed.
 *
 * Memory is fixed at create: capacity entries in a chained hash table with
 * an LRU list; when full, the address that failed least recently is
 * forgotten (it is the one closest to being allowed anyway). A success
 * forgets the address, as Dovecot's auth penalty does: a user who mistyped
 * is not slowed down once in (the price: a client holding one valid account
 * can reset its own counter).
 *
 * Pure and single-threaded: one table per worker, clock passed in (ms, any
 * monotonic origin). Reads of ratelimit_allowed do not change the table.
 */
#ifndef RINGMAIL_RATELIMIT_H
#define RINGMAIL_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct ratelimit_config {
	unsigned burst;             /* failures allowed back to back, 1..10000 */
	int64_t window_ms;          /* time to regain all of them, 1 ms..30 days */
	unsigned capacity;          /* addresses remembered, 1..16M */
	unsigned ipv6_prefix;       /* 1..128; 0 means the default, 64 */
	uint64_t seed;              /* hash seed: random in the daemon, fixed in tests */
};

struct ratelimit;                   /* opaque */

/* ratelimit_create - a new table; *out owned by the caller (ratelimit_free).
 * Returns 0 or -EINVAL for a config out of range. */
int ratelimit_create(const struct ratelimit_config *cfg, struct ratelimit **out);

/* ratelimit_free - accepts NULL, returns NULL. */
struct ratelimit *ratelimit_free(struct ratelimit *rl);

/* ratelimit_allowed - may addr try to authenticate at now? */
bool ratelimit_allowed(const struct ratelimit *rl, const struct sockaddr *addr, int64_t now_ms);

/* ratelimit_retry_after - ms until addr is allowed again (0 if it is). */
int64_t ratelimit_retry_after(const struct ratelimit *rl, const struct sockaddr *addr, int64_t now_ms);

/* ratelimit_failed - count one failed attempt of addr at now. */
void ratelimit_failed(struct ratelimit *rl, const struct sockaddr *addr, int64_t now_ms);

/* ratelimit_succeeded - addr authenticated: forget its failures. */
void ratelimit_succeeded(struct ratelimit *rl, const struct sockaddr *addr);

/* ratelimit_count - addresses currently remembered (for tests, metrics). */
size_t ratelimit_count(const struct ratelimit *rl);

#endif
