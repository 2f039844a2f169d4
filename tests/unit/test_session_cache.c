/*
 * test_session_cache - the per-worker cache of outbound TLS sessions:
 * bounded (the least recently used goes, expired ones first), expiry,
 * key separation, and every value freed exactly once.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>

#include "session_cache.h"

static int freed;

static void count_free(void *v)
{
	freed++;
	free(v);
}

static int *val(int x)
{
	int *p = malloc(sizeof(*p));
	*p = x;
	return p;
}

static int get(struct session_cache *c, const char *key, int64_t now)
{
	int *p = session_cache_get(c, key, now);
	return p != NULL ? *p : -1;
}

Test(session_cache, keys_are_separate)
{
	struct session_cache *c = session_cache_new(8, 1000, count_free);

	freed = 0;
	session_cache_put(c, "mx.a.test|25|may", val(1), 0);
	session_cache_put(c, "mx.a.test|25|verify", val(2), 0);
	session_cache_put(c, "mx.b.test|25|may", val(3), 0);
	session_cache_put(c, "mx.a.test|465|implicit", val(4), 0);
	cr_assert_eq(get(c, "mx.a.test|25|may", 1), 1);
	cr_assert_eq(get(c, "mx.a.test|25|verify", 1), 2);
	cr_assert_eq(get(c, "mx.b.test|25|may", 1), 3);
	cr_assert_eq(get(c, "mx.a.test|465|implicit", 1), 4);
	cr_assert_eq(get(c, "mx.a.test|25|encrypt", 1), -1);
	cr_assert_eq(get(c, "mx.c.test|25|may", 1), -1);
	cr_assert_eq(session_cache_len(c), 4);
	/* Replacing frees the old value. */
	session_cache_put(c, "mx.a.test|25|may", val(5), 2);
	cr_assert_eq(freed, 1);
	cr_assert_eq(get(c, "mx.a.test|25|may", 3), 5);
	session_cache_remove(c, "mx.b.test|25|may");
	cr_assert_eq(freed, 2);
	cr_assert_eq(get(c, "mx.b.test|25|may", 3), -1);
	session_cache_remove(c, "nothing");
	cr_assert_eq(session_cache_len(c), 3);
	c = session_cache_free(c);
	cr_assert_null(c);
	cr_assert_eq(freed, 5);
}

Test(session_cache, expiry_counts_from_put)
{
	struct session_cache *c = session_cache_new(4, 1000, count_free);

	freed = 0;
	session_cache_put(c, "k", val(1), 100);
	cr_assert_eq(get(c, "k", 600), 1);
	cr_assert_eq(get(c, "k", 1099), 1);     /* a get does not extend it */
	cr_assert_eq(get(c, "k", 1100), -1);
	cr_assert_eq(freed, 1);
	cr_assert_eq(session_cache_len(c), 0);
	session_cache_free(c);
}

Test(session_cache, bounded_lru_and_expired_first)
{
	struct session_cache *c = session_cache_new(3, 1000, count_free);
	char key[16];

	freed = 0;
	session_cache_put(c, "a", val(1), 0);
	session_cache_put(c, "b", val(2), 0);
	session_cache_put(c, "c", val(3), 0);
	cr_assert_eq(get(c, "a", 1), 1);        /* b is now the least recently used */
	session_cache_put(c, "d", val(4), 2);
	cr_assert_eq(session_cache_len(c), 3);
	cr_assert_eq(freed, 1);
	cr_assert_eq(get(c, "b", 3), -1);
	cr_assert_eq(get(c, "a", 3), 1);
	cr_assert_eq(get(c, "c", 3), 3);
	cr_assert_eq(get(c, "d", 3), 4);
	/* c expires first, though it was used after d's put. */
	session_cache_put(c, "c", val(5), 500);   /* c: until 1500, a: 1000, d: 1002 */
	cr_assert_eq(get(c, "a", 999), 1);         /* a most recently used */
	session_cache_put(c, "e", val(6), 1001);  /* a expired: it goes, not d */
	cr_assert_eq(get(c, "a", 1001), -1);
	cr_assert_eq(get(c, "d", 1001), 4);
	cr_assert_eq(get(c, "e", 1001), 6);
	/* Many more keys than room: never over the cap. */
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		session_cache_put(c, key, val(i), 1001 + i);
		cr_assert_leq(session_cache_len(c), 3);
	}
	cr_assert_eq(get(c, "k999", 2000), 999);
	cr_assert_eq(get(c, "k996", 2000), -1);
	session_cache_free(c);
	cr_assert_eq(freed, 6 + 1000);
}
