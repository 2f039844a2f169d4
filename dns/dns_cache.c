/*
 * dns_cache - bounded LRU of composed routes plus pending lookups.
 *
 * See dns_internal.h for the contract. A chained hash table (power of two
 * buckets, doubled when entries outnumber buckets) finds entries by key;
 * ready entries are also on a doubly linked LRU list, head = most recent.
 */
#include <stdlib.h>
#include <string.h>

#include "dns_internal.h"
#include "log.h"
#include "xalloc.h"

struct dns_cache {
	struct dns_cache_entry **buckets;
	size_t bucket_count;		/* power of two */
	size_t entry_count;		/* pending + ready */
	size_t ready_count;
	size_t max_entries;
	uint64_t evictions;
	struct dns_cache_entry *lru_head, *lru_tail;
};

/* cache_hash - FNV-1a: keys are short domain names. */
static uint32_t cache_hash(const char *key)
{
	uint32_t h = 2166136261u;

	while (*key) {
		h ^= (unsigned char)*key++;
		h *= 16777619u;
	}
	return h;
}

/* dns_cache_new - an empty cache holding at most max_entries routes. */
struct dns_cache *dns_cache_new(size_t max_entries)
{
	struct dns_cache *cache = xcalloc(1, sizeof(*cache));

	cache->bucket_count = 64;
	cache->buckets = xcalloc(cache->bucket_count, sizeof(*cache->buckets));
	cache->max_entries = max_entries ? max_entries : 1;
	return cache;
}

/* cache_entry_destroy - free an entry already unlinked from everything. */
static void cache_entry_destroy(struct dns_cache_entry *entry)
{
	dns_route_unref(entry->route);
	free(entry->key);
	free(entry);
}

/* dns_cache_free - drop every entry; pending jobs belong to the caller. */
struct dns_cache *dns_cache_free(struct dns_cache *cache)
{
	if (cache == NULL)
		return NULL;
	for (size_t i = 0; i < cache->bucket_count; i++) {
		struct dns_cache_entry *e = cache->buckets[i], *next;

		for (; e != NULL; e = next) {
			next = e->hash_next;
			cache_entry_destroy(e);
		}
	}
	free(cache->buckets);
	free(cache);
	return NULL;
}

static void lru_unlink(struct dns_cache *cache, struct dns_cache_entry *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		cache->lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		cache->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(struct dns_cache *cache, struct dns_cache_entry *e)
{
	e->lru_prev = NULL;
	e->lru_next = cache->lru_head;
	if (cache->lru_head)
		cache->lru_head->lru_prev = e;
	else
		cache->lru_tail = e;
	cache->lru_head = e;
}

/* cache_grow - double the buckets so chains stay about one entry long. */
static void cache_grow(struct dns_cache *cache)
{
	size_t count = cache->bucket_count * 2;
	struct dns_cache_entry **buckets = xcalloc(count, sizeof(*buckets));

	for (size_t i = 0; i < cache->bucket_count; i++) {
		struct dns_cache_entry *e = cache->buckets[i], *next;

		for (; e != NULL; e = next) {
			next = e->hash_next;
			e->hash_next = buckets[e->hash & (count - 1)];
			buckets[e->hash & (count - 1)] = e;
		}
	}
	free(cache->buckets);
	cache->buckets = buckets;
	cache->bucket_count = count;
}

/* dns_cache_remove - unlink and free one entry (pending or ready). */
void dns_cache_remove(struct dns_cache *cache, struct dns_cache_entry *entry)
{
	struct dns_cache_entry **pp = &cache->buckets[entry->hash & (cache->bucket_count - 1)];

	while (*pp != entry) {
		if (*pp == NULL)
			log_panic("dns_cache_remove: entry not in table");
		pp = &(*pp)->hash_next;
	}
	*pp = entry->hash_next;
	if (entry->job == NULL) {
		lru_unlink(cache, entry);
		cache->ready_count--;
	}
	cache->entry_count--;
	cache_entry_destroy(entry);
}

/* dns_cache_find - look key up; expired routes are dropped on the way. */
struct dns_cache_entry *dns_cache_find(struct dns_cache *cache, const char *key,
	int64_t now_ms)
{
	uint32_t hash = cache_hash(key);
	struct dns_cache_entry *e = cache->buckets[hash & (cache->bucket_count - 1)];

	for (; e != NULL; e = e->hash_next)
		if (e->hash == hash && strcmp(e->key, key) == 0)
			break;
	if (e == NULL || e->job != NULL)
		return e;
	if (now_ms >= e->expires_ms) {
		dns_cache_remove(cache, e);
		return NULL;
	}
	lru_unlink(cache, e);
	lru_push_front(cache, e);
	return e;
}

/* dns_cache_add_pending - register a lookup for key (must be absent). */
struct dns_cache_entry *dns_cache_add_pending(struct dns_cache *cache,
	const char *key, void *job)
{
	struct dns_cache_entry *e = xcalloc(1, sizeof(*e));

	e->key = xstrdup(key);
	if (job == NULL)
		log_panic("dns_cache_add_pending: no job");
	e->hash = cache_hash(key);
	e->job = job;
	if (cache->entry_count >= cache->bucket_count)
		cache_grow(cache);
	e->hash_next = cache->buckets[e->hash & (cache->bucket_count - 1)];
	cache->buckets[e->hash & (cache->bucket_count - 1)] = e;
	cache->entry_count++;
	return e;
}

/* dns_cache_fill - the lookup ended: keep its route, evict beyond capacity. */
void dns_cache_fill(struct dns_cache *cache, struct dns_cache_entry *entry,
	struct dns_route *route, int64_t expires_ms)
{
	if (entry->job == NULL)
		log_panic("dns_cache_fill: entry not pending");
	entry->job = NULL;
	entry->route = dns_route_ref(route);
	entry->expires_ms = expires_ms;
	lru_push_front(cache, entry);
	cache->ready_count++;
	while (cache->ready_count > cache->max_entries) {
		dns_cache_remove(cache, cache->lru_tail);
		cache->evictions++;
	}
}

size_t dns_cache_ready_count(const struct dns_cache *cache)
{
	return cache->ready_count;
}

uint64_t dns_cache_evictions(const struct dns_cache *cache)
{
	return cache->evictions;
}
