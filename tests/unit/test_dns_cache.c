/*
 * test_dns_cache - the route cache with a fake clock: TTL expiry and
 * clamps, negative caching, coalescing, eviction, the in-flight FIFO.
 */
#include <criterion/criterion.h>

#include "dns_fake.h"

static const struct dns_mx_record one_mx[] = { { 10, "mx.a.test" } };

/* resolve_a_test - a.test -> MX mx.a.test (mx_ttl) -> A 192.0.2.1 (a_ttl). */
static void resolve_a_test(struct dns_resolver *r, struct fake_dns *f,
	struct fake_result *res, uint32_t mx_ttl, uint32_t a_ttl, int64_t now)
{
	dns_resolve_route(r, "a.test", fake_done, res, now);
	cr_assert_eq(fake_answer_mx(f, "a.test", DNS_ANSWER_OK, mx_ttl, one_mx, 1, now), 0,
		"got no MX query for a.test");
	cr_assert_eq(fake_answer_a(f, "mx.a.test", DNS_ANSWER_OK, a_ttl, "192.0.2.1", now), 0,
		"got no A query for mx.a.test");
}

Test(dns_cache, unit_lru_eviction_and_expiry)
{
	struct dns_cache *c = dns_cache_new(2);
	struct dns_route *route = dns_route_new();
	const char *keys[] = { "a", "b", "c" };
	int dummy;

	for (int i = 0; i < 3; i++) {
		struct dns_cache_entry *e = dns_cache_add_pending(c, keys[i], &dummy);

		dns_cache_fill(c, e, route, 1000);
		if (i == 1)	/* touch "a" so "b" is the least recently used */
			cr_assert_not_null(dns_cache_find(c, "a", 0));
	}
	cr_expect_eq(dns_cache_ready_count(c), 2, "got %zu entries, want 2",
		dns_cache_ready_count(c));
	cr_expect_eq(dns_cache_evictions(c), 1);
	cr_expect_null(dns_cache_find(c, "b", 0), "b should have been evicted");
	cr_expect_not_null(dns_cache_find(c, "a", 999));
	cr_expect_null(dns_cache_find(c, "a", 1000), "a should expire at 1000");
	cr_expect_eq(dns_cache_ready_count(c), 1);
	cr_expect_eq(route->refs, 2, "got refs %d, want 2 (ours + c)", route->refs);
	dns_cache_free(c);
	cr_expect_eq(route->refs, 1);
	dns_route_unref(route);
}

Test(dns_cache, unit_many_keys_grow)
{
	struct dns_cache *c = dns_cache_new(5000);
	struct dns_route *route = dns_route_new();
	char key[32];
	int dummy;

	for (int i = 0; i < 3000; i++) {
		snprintf(key, sizeof(key), "d%d.test", i);
		dns_cache_fill(c, dns_cache_add_pending(c, key, &dummy), route, 10);
	}
	for (int i = 0; i < 3000; i++) {
		snprintf(key, sizeof(key), "d%d.test", i);
		cr_assert_not_null(dns_cache_find(c, key, 0), "lost %s", key);
	}
	dns_cache_free(c);
	dns_route_unref(route);
}

struct ttl_case {
	uint32_t mx_ttl, a_ttl;
	uint32_t want_s;
};

Test(dns_cache, ttl_clamps)
{
	/* ttl_min 60, ttl_max 3600: the route lives min(MX, A) clamped. */
	static const struct ttl_case cases[] = {
		{ 300, 600, 300 }, { 600, 120, 120 }, { 5, 600, 60 }, { 0, 0, 60 },
		{ 86400, 99999, 3600 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dns_options o = { .ttl_min_s = 60, .ttl_max_s = 3600 };
		struct fake_dns f;
		struct dns_resolver *r = fake_resolver(&f, &o);
		struct fake_result res = { 0 };
		int64_t t0 = 1000000, want_ms = (int64_t)cases[i].want_s * 1000;

		cr_assert_not_null(r);
		resolve_a_test(r, &f, &res, cases[i].mx_ttl, cases[i].a_ttl, t0);
		cr_assert_eq(res.calls, 1);
		cr_expect_eq(res.route->ttl_s, cases[i].want_s, "case %zu: got ttl %u, want %u",
			i, res.route->ttl_s, cases[i].want_s);
		dns_resolve_route(r, "a.test", fake_done, &res, t0 + want_ms - 1);
		cr_expect_eq(f.count, 2, "case %zu: got %zu queries before expiry, want 2",
			i, f.count);
		dns_resolve_route(r, "A.TEST.", fake_done, &res, t0 + want_ms);
		cr_expect_eq(f.count, 3, "case %zu: got %zu queries after expiry, want 3",
			i, f.count);
		cr_expect_eq(res.calls, 2, "case %zu: got %d calls, want 2", i, res.calls);
		dns_route_unref(res.route);
		dns_resolver_free(r);
	}
}

Test(dns_cache, negative_caching)
{
	struct dns_options o = { .negative_ttl_s = 30 };
	struct fake_dns f;
	struct dns_resolver *r = fake_resolver(&f, &o);
	struct fake_result res = { 0 };
	struct dns_stats st;

	cr_assert_not_null(r);
	dns_resolve_route(r, "nx.test", fake_done, &res, 0);
	fake_answer_mx(&f, "nx.test", DNS_ANSWER_NXDOMAIN, 0, NULL, 0, 0);
	cr_assert_eq(res.route->status, DNS_ROUTE_PERMFAIL);
	dns_resolve_route(r, "nx.test", fake_done, &res, 29999);
	cr_expect_eq(f.count, 1, "NXDOMAIN not cached: got %zu queries, want 1", f.count);
	dns_resolve_route(r, "nx.test", fake_done, &res, 30000);
	cr_expect_eq(f.count, 2, "NXDOMAIN cached too long: got %zu queries", f.count);
	fake_answer_mx(&f, "nx.test", DNS_ANSWER_TEMPFAIL, 0, NULL, 0, 30000);
	cr_expect_eq(res.route->status, DNS_ROUTE_TEMPFAIL);
	dns_resolve_route(r, "nx.test", fake_done, &res, 30001);
	cr_expect_eq(f.count, 3, "SERVFAIL must not be cached: got %zu queries", f.count);
	dns_resolver_stats(r, &st);
	cr_expect_eq(st.hits, 1, "got %llu hits, want 1", (unsigned long long)st.hits);
	cr_expect_eq(st.failures, 2, "got %llu failures, want 2",
		(unsigned long long)st.failures);
	dns_route_unref(res.route);
	dns_resolver_free(r);
}

Test(dns_cache, coalescing)
{
	struct dns_options o = { 0 };
	struct fake_dns f;
	struct dns_resolver *r = fake_resolver(&f, &o);
	struct fake_result res[50] = { 0 };
	struct dns_stats st;

	cr_assert_not_null(r);
	for (int i = 0; i < 50; i++)
		dns_resolve_route(r, i % 2 ? "a.test" : "A.test.", fake_done, &res[i], 0);
	cr_expect_eq(f.count, 1, "got %zu queries for 50 waiters, want 1", f.count);
	fake_answer_mx(&f, "a.test", DNS_ANSWER_OK, 300, one_mx, 1, 0);
	cr_expect_eq(res[0].calls, 0, "callback before the A answer");
	fake_answer_a(&f, "mx.a.test", DNS_ANSWER_OK, 300, "192.0.2.1", 0);
	for (int i = 0; i < 50; i++) {
		cr_expect_eq(res[i].calls, 1, "waiter %d: got %d calls, want 1", i, res[i].calls);
		cr_expect_eq(res[i].route, res[0].route, "waiters got different routes");
	}
	dns_resolver_stats(r, &st);
	cr_expect_eq(st.misses, 1);
	cr_expect_eq(st.coalesced, 49);
	cr_expect_eq(st.queries, 2, "got %llu queries, want 2 (MX + A)",
		(unsigned long long)st.queries);
	for (int i = 0; i < 50; i++)
		dns_route_unref(res[i].route);
	dns_resolver_free(r);
}

Test(dns_cache, eviction_at_capacity)
{
	struct dns_options o = { .cache_max_entries = 3 };
	struct fake_dns f;
	struct dns_resolver *r = fake_resolver(&f, &o);
	struct fake_result res = { 0 };
	struct dns_stats st;
	char name[32];

	cr_assert_not_null(r);
	for (int i = 0; i < 5; i++) {	/* implicit MX: NODATA, then A */
		snprintf(name, sizeof(name), "d%d.test", i);
		dns_resolve_route(r, name, fake_done, &res, 0);
		fake_answer_mx(&f, name, DNS_ANSWER_NODATA, 0, NULL, 0, 0);
		fake_answer_a(&f, name, DNS_ANSWER_OK, 300, "192.0.2.9", 0);
		cr_assert_eq(res.route->status, DNS_ROUTE_OK, "%s: %s", name, res.route->text);
	}
	dns_resolver_stats(r, &st);
	cr_expect_eq(st.cache_entries, 3, "got %llu entries, want 3",
		(unsigned long long)st.cache_entries);
	cr_expect_eq(st.evictions, 2);
	dns_resolve_route(r, "d4.test", fake_done, &res, 1);
	dns_resolve_route(r, "d0.test", fake_done, &res, 1);
	dns_resolver_stats(r, &st);
	cr_expect_eq(st.hits, 1, "d4 should hit and d0 miss: got %llu hits",
		(unsigned long long)st.hits);
	dns_route_unref(res.route);
	dns_resolver_free(r);
}

Test(dns_cache, in_flight_limit_fifo)
{
	struct dns_options o = { .max_in_flight = 2 };
	struct fake_dns f;
	struct dns_resolver *r = fake_resolver(&f, &o);
	struct fake_result res[4] = { 0 };
	const char *names[] = { "q0.test", "q1.test", "q2.test", "q3.test" };
	struct dns_stats st;

	cr_assert_not_null(r);
	for (int i = 0; i < 4; i++)
		dns_resolve_route(r, names[i], fake_done, &res[i], 0);
	cr_expect_eq(f.count, 2, "got %zu queries with limit 2", f.count);
	dns_resolver_stats(r, &st);
	cr_expect_eq(st.in_flight, 2);
	cr_expect_eq(st.waiting, 2);
	fake_answer_mx(&f, "q1.test", DNS_ANSWER_NXDOMAIN, 0, NULL, 0, 0);
	cr_expect_eq(res[1].calls, 1);
	cr_expect_not_null(fake_find(&f, DNS_QUERY_MX, "q2.test"),
		"q2 should start when q1 ends (FIFO)");
	cr_expect_null(fake_find(&f, DNS_QUERY_MX, "q3.test"));
	fake_answer_mx(&f, "q0.test", DNS_ANSWER_NXDOMAIN, 0, NULL, 0, 0);
	fake_answer_mx(&f, "q2.test", DNS_ANSWER_NXDOMAIN, 0, NULL, 0, 0);
	fake_answer_mx(&f, "q3.test", DNS_ANSWER_NXDOMAIN, 0, NULL, 0, 0);
	for (int i = 0; i < 4; i++) {
		cr_expect_eq(res[i].calls, 1, "%s: got %d calls", names[i], res[i].calls);
		dns_route_unref(res[i].route);
	}
	dns_resolver_free(r);
}

Test(dns_cache, free_with_lookups_pending)
{
	struct dns_options o = { .max_in_flight = 1 };
	struct fake_dns f;
	struct dns_resolver *r = fake_resolver(&f, &o);
	struct fake_result res[2] = { 0 };

	cr_assert_not_null(r);
	dns_resolve_route(r, "p0.test", fake_done, &res[0], 0);
	dns_resolve_route(r, "p1.test", fake_done, &res[1], 0);
	cr_expect_null(dns_resolver_free(r));
	cr_expect_eq(res[0].calls + res[1].calls, 0, "free must not call back");
}

struct reenter {
	struct dns_resolver *r;
	struct fake_result inner;
	int calls;
};

/* reenter_cb - a waiter that asks again from inside its callback. */
static void reenter_cb(const struct dns_route *route, void *arg)
{
	struct reenter *re = arg;

	re->calls++;
	dns_resolve_route(re->r, "a.test", fake_done, &re->inner, 0);
}

Test(dns_cache, callback_may_resolve_again)
{
	struct dns_options o = { 0 };
	struct fake_dns f;
	struct dns_resolver *r = fake_resolver(&f, &o);
	struct reenter re = { .r = r };

	cr_assert_not_null(r);
	dns_resolve_route(r, "a.test", reenter_cb, &re, 0);
	fake_answer_mx(&f, "a.test", DNS_ANSWER_TEMPFAIL, 0, NULL, 0, 0);
	cr_expect_eq(re.calls, 1);
	cr_expect_eq(re.inner.calls, 0, "tempfail is not cached: the inner call must wait");
	cr_expect_eq(f.count, 2, "got %zu queries, want a second MX query", f.count);
	fake_answer_mx(&f, "a.test", DNS_ANSWER_OK, 300, one_mx, 1, 0);
	fake_answer_a(&f, "mx.a.test", DNS_ANSWER_OK, 300, "192.0.2.1", 0);
	cr_expect_eq(re.inner.calls, 1);
	cr_expect_eq(re.inner.route->status, DNS_ROUTE_OK);
	dns_route_unref(re.inner.route);
	dns_resolver_free(r);
}
