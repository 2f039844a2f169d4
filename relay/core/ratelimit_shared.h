/*
 * ratelimit_shared - the failed-login budget of a client address, shared by
 * every worker thread without a lock: one atomic 64-bit word per slot of a
 * fixed table, updated with compare-and-swap.
 *
 *   static _Atomic int64_t slots[1 << 16];           // zero: nobody owes
 *   static struct ratelimit_shared rl;
 *   ratelimit_shared_init(&rl, slots, 1 << 16, seed, 64);   // once
 *   if (!ratelimit_shared_take(&rl, peer, burst, window_ms, now_ms))
 *       refuse (454 4.7.0) without checking the password
 *   ... check it (on a helper) ...
 *   ok ? ratelimit_shared_forgive(&rl, peer) : nothing (the try was paid)
 *
 * The same GCRA as ratelimit.h (burst failures back to back, one regained
 * every window_ms / burst, all of them window_ms after the last), but an
 * attempt is paid for when it starts, not when it fails: two workers
 * checking the same address at once cannot both use the last try, so the
 * documented limit holds however the address's connections are spread. A
 * success gives the address its whole budget back.
 *
 * Slots are chosen by a seeded hash of the address (IPv4; IPv6 by its
 * ipv6_prefix bits; IPv4-mapped IPv6 as IPv4) and hold no key: two
 * addresses in one slot share a budget. With 65536 slots and a random seed
 * an innocent address meets an attacker's slot with a chance of about
 * attackers/65536; the cost of a collision is a shared (never a larger)
 * budget. Other families (unix sockets) are always allowed.
 *
 * Times are ms of one monotonic clock, the same for every caller (workers
 * read CLOCK_MONOTONIC). burst and window_ms are passed on each call so a
 * reload applies at once; 1 <= burst <= 10000, 1 <= window_ms <= 30 days.
 */
#ifndef RINGMAIL_RATELIMIT_SHARED_H
#define RINGMAIL_RATELIMIT_SHARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct ratelimit_shared {
	_Atomic int64_t *slots;     /* theoretical arrival time, ms * burst */
	size_t mask;                /* slot count - 1 (a power of two) */
	uint64_t seed;
	unsigned ipv6_prefix;       /* 1..128 */
};

/* ratelimit_shared_init - over nslots (a power of two) zeroed slots, owned
 * by the caller and outliving every user. */
void ratelimit_shared_init(struct ratelimit_shared *rl, _Atomic int64_t *slots, size_t nslots,
			   uint64_t seed, unsigned ipv6_prefix);

/* ratelimit_shared_take - may addr try a login at now? If so the try is
 * counted as a failure already. Thread-safe, lock-free. */
bool ratelimit_shared_take(struct ratelimit_shared *rl, const struct sockaddr *addr,
			   unsigned burst, int64_t window_ms, int64_t now_ms);

/* ratelimit_shared_forgive - addr logged in: its whole budget back. */
void ratelimit_shared_forgive(struct ratelimit_shared *rl, const struct sockaddr *addr);

#endif
