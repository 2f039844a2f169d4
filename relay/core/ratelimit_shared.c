/*
 * ratelimit_shared - lock-free failed-login budgets; see ratelimit_shared.h.
 */
#include "ratelimit_shared.h"

#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>

void ratelimit_shared_init(struct ratelimit_shared *rl, _Atomic int64_t *slots, size_t nslots,
			   uint64_t seed, unsigned ipv6_prefix)
{
	rl->slots = slots;
	rl->mask = nslots - 1;
	rl->seed = seed;
	rl->ipv6_prefix = ipv6_prefix >= 1 && ipv6_prefix <= 128 ? ipv6_prefix : 64;
}

/* mix - splitmix64's finaliser: every input bit moves every output bit. */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* slot_of - the slot of addr, or NULL for a family that is not limited. */
static _Atomic int64_t *slot_of(const struct ratelimit_shared *rl, const struct sockaddr *addr)
{
	static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	unsigned char key[16] = { 0 };
	uint64_t h = rl->seed;

	if (addr->sa_family == AF_INET) {
		memcpy(key, &((const struct sockaddr_in *)addr)->sin_addr, 4);
		h ^= 4;
	} else if (addr->sa_family == AF_INET6) {
		const unsigned char *a = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
		if (memcmp(a, v4mapped, 12) == 0) {
			memcpy(key, a + 12, 4);
			h ^= 4;
		} else {
			unsigned bits = rl->ipv6_prefix;
			memcpy(key, a, (bits + 7) / 8);
			if (bits % 8)
				key[bits / 8] &= (unsigned char)(0xff << (8 - bits % 8));
			h ^= 6;
		}
	} else {
		return NULL;
	}
	uint64_t lo, hi;
	memcpy(&lo, key, 8);
	memcpy(&hi, key + 8, 8);
	h = mix(mix(h ^ lo) ^ hi);
	return &rl->slots[h & rl->mask];
}

bool ratelimit_shared_take(struct ratelimit_shared *rl, const struct sockaddr *addr,
			   unsigned burst, int64_t window_ms, int64_t now_ms)
{
	_Atomic int64_t *slot = slot_of(rl, addr);
	int64_t b = burst, now = now_ms * b;

	if (slot == NULL)
		return true;
	int64_t old = atomic_load_explicit(slot, memory_order_relaxed);
	for (;;) {
		int64_t next = (old > now ? old : now) + window_ms;
		/* debt + window <= burst * window: one more try fits. */
		if (next - now > b * window_ms)
			return false;
		if (atomic_compare_exchange_weak_explicit(slot, &old, next, memory_order_relaxed,
							  memory_order_relaxed))
			return true;
	}
}

void ratelimit_shared_forgive(struct ratelimit_shared *rl, const struct sockaddr *addr)
{
	_Atomic int64_t *slot = slot_of(rl, addr);

	if (slot != NULL)
		atomic_store_explicit(slot, 0, memory_order_relaxed);
}
