/*
 * session_cache - bounded string-keyed map with expiry; see session_cache.h.
 */
#include "session_cache.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

struct session_entry {
	char *key;
	void *value;
	int64_t expires_ms;
	uint64_t used;		/* recency stamp: higher = used later */
};

struct session_cache {
	struct session_entry *e;
	size_t len, cap;
	int64_t lifetime_ms;
	uint64_t clock;
	void (*free_value)(void *);
};

struct session_cache *session_cache_new(size_t cap, int64_t lifetime_ms,
					void (*free_value)(void *))
{
	struct session_cache *c = xcalloc(1, sizeof(*c));

	c->cap = cap > 0 ? cap : 1;
	c->e = xcalloc(c->cap, sizeof(*c->e));
	c->lifetime_ms = lifetime_ms;
	c->free_value = free_value;
	return c;
}

/* drop - free entry i and move the last entry into its place. */
static void drop(struct session_cache *c, size_t i)
{
	free(c->e[i].key);
	if (c->free_value != NULL)
		c->free_value(c->e[i].value);
	c->e[i] = c->e[--c->len];
}

struct session_cache *session_cache_free(struct session_cache *c)
{
	if (c == NULL)
		return NULL;
	while (c->len > 0)
		drop(c, c->len - 1);
	free(c->e);
	free(c);
	return NULL;
}

static size_t find(const struct session_cache *c, const char *key)
{
	for (size_t i = 0; i < c->len; i++)
		if (strcmp(c->e[i].key, key) == 0)
			return i;
	return c->len;
}

void *session_cache_get(struct session_cache *c, const char *key, int64_t now_ms)
{
	size_t i = find(c, key);

	if (i == c->len)
		return NULL;
	if (now_ms >= c->e[i].expires_ms) {
		drop(c, i);
		return NULL;
	}
	c->e[i].used = ++c->clock;
	return c->e[i].value;
}

void session_cache_put(struct session_cache *c, const char *key, void *value, int64_t now_ms)
{
	size_t i = find(c, key);

	if (i < c->len) {
		if (c->free_value != NULL && c->e[i].value != value)
			c->free_value(c->e[i].value);
	} else {
		if (c->len == c->cap) {
			size_t victim = 0;
			for (size_t k = 0; k < c->len; k++) {
				if (now_ms >= c->e[k].expires_ms) {
					victim = k;
					break;
				}
				if (c->e[k].used < c->e[victim].used)
					victim = k;
			}
			drop(c, victim);
		}
		i = c->len++;
		c->e[i].key = xstrdup(key);
	}
	c->e[i].value = value;
	c->e[i].expires_ms = now_ms + c->lifetime_ms;
	c->e[i].used = ++c->clock;
}

void session_cache_remove(struct session_cache *c, const char *key)
{
	size_t i = find(c, key);

	if (i < c->len)
		drop(c, i);
}

size_t session_cache_len(const struct session_cache *c)
{
	return c->len;
}

size_t session_cache_cap(const struct session_cache *c)
{
	return c->cap;
}

int64_t session_cache_lifetime(const struct session_cache *c)
{
	return c->lifetime_ms;
}
