/*
 * ratelimit - failed-login limiter per client address; see ratelimit.h.
 *
 * Entries live in one array allocated at create. An entry is in a bucket
 * chain (singly linked by index) and in the LRU list (doubly linked by
 * index, head = failed most recently), or on the free list. Chains stay
 * short: there are at least as many buckets as entries and the hash is
 * seeded, so a client cannot pick addresses that collide on purpose.
 */
#include "ratelimit.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xalloc.h"

#define NONE UINT32_MAX
#define BURST_MAX 10000u
#define WINDOW_MAX_MS (30LL * 24 * 3600 * 1000)
#define CAPACITY_MAX (16u << 20)

struct ratelimit_key {
	unsigned char family;       /* 4 or 6 */
	unsigned char addr[16];     /* IPv6 bits past the prefix cleared */
};

struct ratelimit_entry {
	struct ratelimit_key key;
	int64_t tat;                /* theoretical arrival time, ms * burst */
	uint32_t chain;             /* next in bucket, or next free */
	uint32_t lru_prev, lru_next;
};

struct ratelimit {
	struct ratelimit_config cfg;
	struct ratelimit_entry *entries;
	uint32_t *buckets;
	uint32_t bucket_mask;
	uint32_t free_head;
	uint32_t lru_head, lru_tail;
	size_t count;
};

int ratelimit_create(const struct ratelimit_config *cfg, struct ratelimit **out)
{
	*out = NULL;
	if (cfg->burst < 1 || cfg->burst > BURST_MAX || cfg->window_ms < 1 ||
	    cfg->window_ms > WINDOW_MAX_MS || cfg->capacity < 1 || cfg->capacity > CAPACITY_MAX ||
	    cfg->ipv6_prefix > 128)
		return -EINVAL;
	struct ratelimit *rl = xcalloc(1, sizeof(*rl));
	uint32_t buckets = 1;
	while (buckets < cfg->capacity)
		buckets <<= 1;
	rl->entries = xcalloc(cfg->capacity, sizeof(rl->entries[0]));
	rl->buckets = xreallocarray(NULL, buckets, sizeof(rl->buckets[0]));
	rl->cfg = *cfg;
	if (rl->cfg.ipv6_prefix == 0)
		rl->cfg.ipv6_prefix = 64;
	rl->bucket_mask = buckets - 1;
	for (uint32_t i = 0; i < buckets; i++)
		rl->buckets[i] = NONE;
	for (uint32_t i = 0; i < cfg->capacity; i++)
		rl->entries[i].chain = i + 1 < cfg->capacity ? i + 1 : NONE;
	rl->free_head = 0;
	rl->lru_head = rl->lru_tail = NONE;
	*out = rl;
	return 0;
}

struct ratelimit *ratelimit_free(struct ratelimit *rl)
{
	if (rl != NULL) {
		free(rl->entries);
		free(rl->buckets);
		free(rl);
	}
	return NULL;
}

size_t ratelimit_count(const struct ratelimit *rl)
{
	return rl->count;
}

/* make_key - the counted identity of addr; false for families we do not
 * count. */
static bool make_key(const struct ratelimit *rl, const struct sockaddr *addr, struct ratelimit_key *key)
{
	static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(key, 0, sizeof(*key));
	if (addr->sa_family == AF_INET) {
		key->family = 4;
		memcpy(key->addr, &((const struct sockaddr_in *)addr)->sin_addr, 4);
		return true;
	}
	if (addr->sa_family != AF_INET6)
		return false;
	const unsigned char *a = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
	if (memcmp(a, v4mapped, sizeof(v4mapped)) == 0) {
		key->family = 4;
		memcpy(key->addr, a + 12, 4);
		return true;
	}
	key->family = 6;
	unsigned prefix = rl->cfg.ipv6_prefix;
	memcpy(key->addr, a, prefix / 8);
	if (prefix % 8 != 0)
		key->addr[prefix / 8] = a[prefix / 8] & (unsigned char)(0xff << (8 - prefix % 8));
	return true;
}

/* key_hash - FNV-1a over the key, seeded, then a 64-bit finaliser so the
 * low bits used for the bucket depend on every input bit. */
static uint32_t key_hash(const struct ratelimit *rl, const struct ratelimit_key *key)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ rl->cfg.seed;
	const unsigned char *p = (const unsigned char *)key;

	for (size_t i = 0; i < sizeof(*key); i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (uint32_t)h & rl->bucket_mask;
}

/* find - the entry of key, or NONE. */
static uint32_t find(const struct ratelimit *rl, const struct ratelimit_key *key)
{
	for (uint32_t i = rl->buckets[key_hash(rl, key)]; i != NONE; i = rl->entries[i].chain)
		if (memcmp(&rl->entries[i].key, key, sizeof(*key)) == 0)
			return i;
	return NONE;
}

/* lru_unlink - take entry i out of the LRU list. */
static void lru_unlink(struct ratelimit *rl, uint32_t i)
{
	struct ratelimit_entry *e = &rl->entries[i];

	if (e->lru_prev != NONE)
		rl->entries[e->lru_prev].lru_next = e->lru_next;
	else
		rl->lru_head = e->lru_next;
	if (e->lru_next != NONE)
		rl->entries[e->lru_next].lru_prev = e->lru_prev;
	else
		rl->lru_tail = e->lru_prev;
}

/* lru_push_head - entry i becomes the most recently failed. */
static void lru_push_head(struct ratelimit *rl, uint32_t i)
{
	struct ratelimit_entry *e = &rl->entries[i];

	e->lru_prev = NONE;
	e->lru_next = rl->lru_head;
	if (rl->lru_head != NONE)
		rl->entries[rl->lru_head].lru_prev = i;
	rl->lru_head = i;
	if (rl->lru_tail == NONE)
		rl->lru_tail = i;
}

/* remove_entry - out of its bucket and the LRU list, onto the free list. */
static void remove_entry(struct ratelimit *rl, uint32_t i)
{
	uint32_t *link = &rl->buckets[key_hash(rl, &rl->entries[i].key)];

	while (*link != i)
		link = &rl->entries[*link].chain;
	*link = rl->entries[i].chain;
	lru_unlink(rl, i);
	rl->entries[i].chain = rl->free_head;
	rl->free_head = i;
	rl->count--;
}

/* insert_entry - a new entry for key, evicting the least recently failed
 * address when the table is full. */
static uint32_t insert_entry(struct ratelimit *rl, const struct ratelimit_key *key)
{
	if (rl->free_head == NONE)
		remove_entry(rl, rl->lru_tail);
	uint32_t i = rl->free_head;
	struct ratelimit_entry *e = &rl->entries[i];
	rl->free_head = e->chain;
	e->key = *key;
	e->tat = INT64_MIN;
	uint32_t *bucket = &rl->buckets[key_hash(rl, key)];
	e->chain = *bucket;
	*bucket = i;
	lru_push_head(rl, i);
	rl->count++;
	return i;
}

/* debt - how far addr's arrival time is ahead of now (scaled), >= 0. */
static int64_t debt(const struct ratelimit *rl, const struct sockaddr *addr, int64_t now_ms)
{
	struct ratelimit_key key;
	uint32_t i;

	if (!make_key(rl, addr, &key) || (i = find(rl, &key)) == NONE)
		return 0;
	int64_t d = rl->entries[i].tat - now_ms * (int64_t)rl->cfg.burst;
	return d > 0 ? d : 0;
}

bool ratelimit_allowed(const struct ratelimit *rl, const struct sockaddr *addr, int64_t now_ms)
{
	return ratelimit_retry_after(rl, addr, now_ms) == 0;
}

int64_t ratelimit_retry_after(const struct ratelimit *rl, const struct sockaddr *addr, int64_t now_ms)
{
	int64_t burst = rl->cfg.burst, window = rl->cfg.window_ms;
	/* One more failure is allowed while debt + window <= burst * window. */
	int64_t excess = debt(rl, addr, now_ms) - (burst - 1) * window;

	return excess > 0 ? (excess + burst - 1) / burst : 0;
}

void ratelimit_failed(struct ratelimit *rl, const struct sockaddr *addr, int64_t now_ms)
{
	struct ratelimit_key key;

	if (!make_key(rl, addr, &key))
		return;
	uint32_t i = find(rl, &key);
	if (i == NONE)
		i = insert_entry(rl, &key);
	else {
		lru_unlink(rl, i);
		lru_push_head(rl, i);
	}
	int64_t burst = rl->cfg.burst, window = rl->cfg.window_ms;
	int64_t now = now_ms * burst;
	struct ratelimit_entry *e = &rl->entries[i];
	e->tat = (e->tat > now ? e->tat : now) + window;
	/* Failures counted while refused do not push the end further than one
	 * window from now. */
	if (e->tat > now + burst * window)
		e->tat = now + burst * window;
}

void ratelimit_succeeded(struct ratelimit *rl, const struct sockaddr *addr)
{
	struct ratelimit_key key;
	uint32_t i;

	if (make_key(rl, addr, &key) && (i = find(rl, &key)) != NONE)
		remove_entry(rl, i);
}
