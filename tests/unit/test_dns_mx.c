/*
 * test_dns_mx - route composition: MX ordering, equal-preference shuffle,
 * failure mapping, IP literals, static routes, the address family modes.
 */
#include <criterion/criterion.h>

#include "dns_fake.h"

/* host_names - "a,b,c" of a route's hosts, for one-line comparisons. */
static const char *host_names(const struct dns_route *route, char *buf, size_t size)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < route->host_count && off < size; i++)
		off += (size_t)snprintf(buf + off, size - off, "%s%s", i ? "," : "",
			route->hosts[i].name);
	return buf;
}

Test(dns_mx, ordering_by_preference)
{
	static const struct dns_mx_record mx[] = {
		{ 30, "c.test" }, { 10, "a.test" }, { 20, "b.test" },
	};
	struct dns_mx_answer a = { DNS_ANSWER_OK, 300, 3, mx };
	uint64_t rng = 1;
	int implicit;
	char buf[128];
	struct dns_route *route = dns_route_from_mx("d.test", &a, 25, &rng, &implicit);

	cr_assert_eq(route->status, DNS_ROUTE_OK);
	cr_expect_str_eq(host_names(route, buf, sizeof(buf)), "a.test,b.test,c.test");
	cr_expect_eq(route->hosts[0].preference, 10);
	cr_expect_eq(implicit, 0);
	dns_route_unref(route);
}

Test(dns_mx, equal_preferences_shuffled_deterministically)
{
	static const struct dns_mx_record mx[] = {
		{ 5, "e1" }, { 5, "e2" }, { 5, "e3" }, { 5, "e4" }, { 1, "first" }, { 9, "last" },
	};
	struct dns_mx_answer a = { DNS_ANSWER_OK, 300, 6, mx };
	char buf[128], again[128];
	int seen_orders = 0, implicit;
	char orders[20][128];

	for (uint64_t seed = 1; seed <= 20; seed++) {
		uint64_t rng = seed, rng2 = seed;
		struct dns_route *r1 = dns_route_from_mx("d", &a, 25, &rng, &implicit);
		struct dns_route *r2 = dns_route_from_mx("d", &a, 25, &rng2, &implicit);
		int known = 0;

		host_names(r1, buf, sizeof(buf));
		cr_expect_str_eq(host_names(r2, again, sizeof(again)), buf,
			"seed %llu not repeatable", (unsigned long long)seed);
		cr_expect_str_eq(r1->hosts[0].name, "first", "got %s first, want first", buf);
		cr_expect_str_eq(r1->hosts[5].name, "last", "got %s, want last at the end", buf);
		for (int k = 0; k < seen_orders; k++)
			known |= strcmp(orders[k], buf) == 0;
		if (!known)
			snprintf(orders[seen_orders++], sizeof(orders[0]), "%s", buf);
		dns_route_unref(r1);
		dns_route_unref(r2);
	}
	cr_expect_gt(seen_orders, 3, "got %d distinct orders in 20 seeds, want > 3",
		seen_orders);
}

Test(dns_mx, host_count_capped)
{
	struct dns_mx_record mx[40];
	char names[40][24];
	struct dns_mx_answer a = { DNS_ANSWER_OK, 300, 40, mx };
	uint64_t rng = 3;
	int implicit;
	struct dns_route *route;

	for (int i = 0; i < 40; i++) {
		snprintf(names[i], sizeof(names[i]), "m%d.test", i);
		mx[i].preference = 40 - i;
		mx[i].name = names[i];
	}
	route = dns_route_from_mx("cap.test", &a, 25, &rng, &implicit);
	cr_expect_eq(route->host_count, DNS_MAX_MX_HOSTS, "got %zu hosts, want %d",
		route->host_count, DNS_MAX_MX_HOSTS);
	cr_expect_eq(route->hosts[0].preference, 1, "lowest preference must survive the cap");
	dns_route_unref(route);
}

struct failure_case {
	const char *what;
	enum dns_answer_kind kind;
	size_t count;
	const struct dns_mx_record *mx;
	enum dns_route_status want_status;
	int want_code;
	const char *want_enhanced;
};

Test(dns_mx, failure_mapping)
{
	static const struct dns_mx_record null_mx[] = { { 0, "" } };
	static const struct dns_mx_record dot_mx[] = { { 0, "." } };
	static const struct failure_case cases[] = {
		{ "nxdomain", DNS_ANSWER_NXDOMAIN, 0, NULL, DNS_ROUTE_PERMFAIL, 550, "5.1.2" },
		{ "servfail", DNS_ANSWER_TEMPFAIL, 0, NULL, DNS_ROUTE_TEMPFAIL, 451, "4.4.3" },
		{ "null mx", DNS_ANSWER_OK, 1, null_mx, DNS_ROUTE_PERMFAIL, 556, "5.1.10" },
		{ "null mx dot", DNS_ANSWER_OK, 1, dot_mx, DNS_ROUTE_PERMFAIL, 556, "5.1.10" },
		{ "nodata", DNS_ANSWER_NODATA, 0, NULL, DNS_ROUTE_OK, 0, "" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct failure_case *c = &cases[i];
		struct dns_mx_answer a = { c->kind, 60, c->count, c->mx };
		uint64_t rng = 7;
		int implicit;
		struct dns_route *route = dns_route_from_mx("x.test", &a, 25, &rng, &implicit);

		cr_expect_eq(route->status, c->want_status, "%s: got status %s, want %s", c->what,
			dns_route_status_name(route->status), dns_route_status_name(c->want_status));
		cr_expect_eq(route->smtp_code, c->want_code, "%s: got %d, want %d", c->what,
			route->smtp_code, c->want_code);
		cr_expect_str_eq(route->enhanced, c->want_enhanced, "%s: got %s, want %s",
			c->what, route->enhanced, c->want_enhanced);
		dns_route_unref(route);
	}
}

struct flow_case {
	const char *what;
	enum dns_answer_kind mx_kind;
	enum dns_answer_kind a_kind;	/* for every host */
	enum dns_route_status want_status;
	int want_code;
};

/* A full lookup through the resolver: MX answer, then the A answers. */
Test(dns_mx, resolver_failure_mapping)
{
	static const struct dns_mx_record mx[] = { { 10, "m1.f.test" }, { 20, "m2.f.test" } };
	static const struct flow_case cases[] = {
		{ "all ok", DNS_ANSWER_OK, DNS_ANSWER_OK, DNS_ROUTE_OK, 0 },
		{ "mx hosts nxdomain", DNS_ANSWER_OK, DNS_ANSWER_NXDOMAIN, DNS_ROUTE_PERMFAIL, 554 },
		{ "mx hosts servfail", DNS_ANSWER_OK, DNS_ANSWER_TEMPFAIL, DNS_ROUTE_TEMPFAIL, 451 },
		{ "implicit no A", DNS_ANSWER_NODATA, DNS_ANSWER_NODATA, DNS_ROUTE_PERMFAIL, 550 },
		{ "implicit A ok", DNS_ANSWER_NODATA, DNS_ANSWER_OK, DNS_ROUTE_OK, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct flow_case *c = &cases[i];
		struct dns_options o = { 0 };
		struct fake_dns f;
		struct dns_resolver *r = fake_resolver(&f, &o);
		struct fake_result res = { 0 };
		const char *ip = c->a_kind == DNS_ANSWER_OK ? "192.0.2.5" : NULL;

		cr_assert_not_null(r);
		dns_resolve_route(r, "f.test", fake_done, &res, 0);
		fake_answer_mx(&f, "f.test", c->mx_kind, 60, mx, 2, 0);
		if (c->mx_kind == DNS_ANSWER_NODATA) {
			fake_answer_a(&f, "f.test", c->a_kind, 60, ip, 0);
		} else {
			fake_answer_a(&f, "m2.f.test", c->a_kind, 60, ip, 0);
			cr_expect_eq(res.calls, 0, "%s: called back before all answers", c->what);
			fake_answer_a(&f, "m1.f.test", c->a_kind, 60, ip, 0);
		}
		cr_assert_eq(res.calls, 1, "%s: got %d calls, want 1", c->what, res.calls);
		cr_expect_eq(res.route->status, c->want_status, "%s: got %s (%s), want %s",
			c->what, dns_route_status_name(res.route->status), res.route->text,
			dns_route_status_name(c->want_status));
		cr_expect_eq(res.route->smtp_code, c->want_code, "%s: got code %d, want %d",
			c->what, res.route->smtp_code, c->want_code);
		if (c->want_status == DNS_ROUTE_OK)
			cr_expect_eq(ntohs(res.route->hosts[0].addrs[0].sin.sin_port), 25);
		dns_route_unref(res.route);
		dns_resolver_free(r);
	}
}

Test(dns_mx, partial_host_failure_keeps_good_hosts)
{
	static const struct dns_mx_record mx[] = { { 10, "bad.p.test" }, { 20, "good.p.test" } };
	struct dns_options o = { .port = 2526 };
	struct fake_dns f;
	struct dns_resolver *r = fake_resolver(&f, &o);
	struct fake_result res = { 0 };
	char buf[64];

	cr_assert_not_null(r);
	dns_resolve_route(r, "p.test", fake_done, &res, 0);
	fake_answer_mx(&f, "p.test", DNS_ANSWER_OK, 60, mx, 2, 0);
	fake_answer_a(&f, "bad.p.test", DNS_ANSWER_TEMPFAIL, 0, NULL, 0);
	fake_answer_a(&f, "good.p.test", DNS_ANSWER_OK, 60, "192.0.2.7", 0);
	cr_assert_eq(res.route->status, DNS_ROUTE_OK);
	cr_expect_eq(res.route->host_count, 1, "got %zu hosts, want 1", res.route->host_count);
	cr_expect_str_eq(res.route->hosts[0].name, "good.p.test");
	cr_expect_str_eq(dns_addr_format(&res.route->hosts[0].addrs[0], buf, sizeof(buf)),
		"192.0.2.7");
	cr_expect_eq(ntohs(res.route->hosts[0].addrs[0].sin.sin_port), 2526);
	dns_route_unref(res.route);
	dns_resolver_free(r);
}

Test(dns_mx, family_both_puts_ipv6_first)
{
	struct dns_options o = { .family = DNS_FAMILY_BOTH };
	struct fake_dns f;
	struct dns_resolver *r = fake_resolver(&f, &o);
	struct fake_result res = { 0 };
	struct in6_addr v6;
	struct dns_addr_answer a6 = { DNS_ANSWER_OK, 60, AF_INET6, 1, &v6 };
	struct fake_query *fq;
	char buf[64];

	cr_assert_not_null(r);
	inet_pton(AF_INET6, "2001:db8::1", &v6);
	dns_resolve_route(r, "[IPv6:::1]", fake_done, &res, 0);	/* literal: no query */
	cr_expect_eq(f.count, 0);
	dns_resolve_route(r, "v.test", fake_done, &res, 0);
	fake_answer_mx(&f, "v.test", DNS_ANSWER_NODATA, 0, NULL, 0, 0);
	fake_answer_a(&f, "v.test", DNS_ANSWER_OK, 60, "192.0.2.8", 0);	/* A first */
	fq = fake_find(&f, DNS_QUERY_AAAA, "v.test");
	cr_assert_not_null(fq, "no AAAA query in mode both");
	fq->answered = 1;
	dns_query_answer_addr(fq->q, &a6, 0);
	cr_assert_eq(res.route->hosts[0].addr_count, 2);
	cr_expect_str_eq(dns_addr_format(&res.route->hosts[0].addrs[0], buf, sizeof(buf)),
		"2001:db8::1");
	cr_expect_str_eq(dns_addr_format(&res.route->hosts[0].addrs[1], buf, sizeof(buf)),
		"192.0.2.8");
	dns_route_unref(res.route);
	dns_resolver_free(r);
}

struct literal_case {
	const char *text;
	const char *want_addr;	/* NULL = permanent failure */
};

Test(dns_mx, ip_literals)
{
	static const struct literal_case cases[] = {
		{ "[192.0.2.1]", "192.0.2.1" }, { "[IPv6:2001:db8::2]", "2001:db8::2" },
		{ "[ipv6:::1]", "::1" }, { "[300.1.1.1]", NULL }, { "[192.0.2.1]:26", NULL },
		{ "[]", NULL }, { "[IPv6:zz]", NULL },
	};
	struct dns_options o = { .port = 2526 };
	struct fake_dns f;
	struct dns_resolver *r = fake_resolver(&f, &o);

	cr_assert_not_null(r);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake_result res = { 0 };
		char buf[64];

		dns_resolve_route(r, cases[i].text, fake_done, &res, 0);
		cr_assert_eq(res.calls, 1, "%s: literal must answer synchronously", cases[i].text);
		if (cases[i].want_addr == NULL) {
			cr_expect_eq(res.route->status, DNS_ROUTE_PERMFAIL, "%s: got %s, want permfail",
				cases[i].text, dns_route_status_name(res.route->status));
		} else {
			cr_assert_eq(res.route->status, DNS_ROUTE_OK, "%s", cases[i].text);
			cr_expect_str_eq(dns_addr_format(&res.route->hosts[0].addrs[0], buf,
				sizeof(buf)), cases[i].want_addr);
			cr_expect_eq(res.route->hosts[0].port, 2526);
		}
		dns_route_unref(res.route);
	}
	cr_expect_eq(f.count, 0, "literals sent %zu queries", f.count);
	dns_resolver_free(r);
}

Test(dns_mx, static_routes_and_relayhost)
{
	static const struct dns_static_route routes[] = {
		{ "lit.test", "[192.0.2.50]:2600" },
		{ "host.test", "[relay.example]:2700" },
		{ ".sub.test", "[relay.example]:2700" },
	};
	struct dns_options o = { .static_routes = routes, .static_route_count = 3,
		.relayhost = "smart.example" };
	struct fake_dns f;
	struct dns_resolver *r = fake_resolver(&f, &o);
	struct fake_result lit = { 0 }, h1 = { 0 }, h2 = { 0 }, other = { 0 };

	cr_assert_not_null(r);
	dns_resolve_route(r, "lit.test", fake_done, &lit, 0);
	cr_assert_eq(lit.calls, 1);
	cr_expect_eq(lit.route->hosts[0].port, 2600);
	cr_expect_eq(f.count, 0);
	dns_resolve_route(r, "host.test", fake_done, &h1, 0);
	dns_resolve_route(r, "a.sub.test", fake_done, &h2, 0);
	cr_expect_eq(f.count, 1, "two domains to one relay: got %zu queries, want 1", f.count);
	cr_expect_eq(fake_count_kind(&f, DNS_QUERY_MX), 0, "static route must skip MX");
	fake_answer_a(&f, "relay.example", DNS_ANSWER_OK, 60, "192.0.2.60", 0);
	cr_assert_eq(h1.calls + h2.calls, 2);
	cr_expect_eq(h2.route->hosts[0].port, 2700);
	dns_resolve_route(r, "elsewhere.test", fake_done, &other, 0);
	/* An unbracketed next hop is looked up as Postfix does: MX first. */
	cr_expect_not_null(fake_find(&f, DNS_QUERY_MX, "smart.example"),
		"relayhost should be looked up (MX) for unrouted domains");
	fake_answer_mx(&f, "smart.example", DNS_ANSWER_NODATA, 0, NULL, 0, 0);
	fake_answer_a(&f, "smart.example", DNS_ANSWER_OK, 60, "192.0.2.70", 0);
	cr_expect_eq(other.route->hosts[0].port, 25);
	dns_route_unref(lit.route);
	dns_route_unref(h1.route);
	dns_route_unref(h2.route);
	dns_route_unref(other.route);
	dns_resolver_free(r);
}

/* issue 17: next hops written every way; an IP is never looked up, and
 * a next hop that does not resolve defers (4.4.4) instead of bouncing. */
Test(dns_mx, next_hop_forms_and_failures)
{
	static const struct dns_static_route routes[] = {
		{ "ip.test", "10.0.0.5:2525" },
		{ "ip6.test", "[::1]:2526" },
		{ "mx.test", "relay.example:587" },
		{ "nx.test", "[nowhere.example]:25" },
		{ "nxmx.test", "nowhere.example" },
	};
	struct dns_options o = { .static_routes = routes, .static_route_count = 5,
		.relayhost = "192.0.2.9" };
	struct fake_dns f;
	struct dns_resolver *r = fake_resolver(&f, &o);
	struct fake_result ip = { 0 }, ip6 = { 0 }, mx = { 0 }, nx = { 0 }, nxmx = { 0 }, rh = { 0 };
	static const struct dns_mx_record mxr[] = { { 10, "mx1.relay.example" } };
	char buf[64];

	cr_assert_not_null(r);
	dns_resolve_route(r, "ip.test", fake_done, &ip, 0);
	dns_resolve_route(r, "ip6.test", fake_done, &ip6, 0);
	dns_resolve_route(r, "any.where", fake_done, &rh, 0);
	cr_expect_eq(f.count, 0, "IP next hops sent %zu queries", f.count);
	cr_assert_eq(ip.calls + ip6.calls + rh.calls, 3);
	cr_expect_str_eq(ip.route->hosts[0].name, "[10.0.0.5]");
	cr_expect_str_eq(dns_addr_format(&ip.route->hosts[0].addrs[0], buf, sizeof(buf)), "10.0.0.5");
	cr_expect_eq(ntohs(ip.route->hosts[0].addrs[0].sin.sin_port), 2525);
	cr_expect_str_eq(dns_addr_format(&ip6.route->hosts[0].addrs[0], buf, sizeof(buf)), "::1");
	cr_expect_eq(ip6.route->hosts[0].port, 2526);
	cr_expect_str_eq(dns_addr_format(&rh.route->hosts[0].addrs[0], buf, sizeof(buf)), "192.0.2.9");
	cr_expect_eq(rh.route->hosts[0].port, 25);

	dns_resolve_route(r, "mx.test", fake_done, &mx, 0);
	cr_assert_eq(fake_answer_mx(&f, "relay.example", DNS_ANSWER_OK, 60, mxr, 1, 0), 0);
	cr_assert_eq(fake_answer_a(&f, "mx1.relay.example", DNS_ANSWER_OK, 60, "192.0.2.61", 0), 0);
	cr_assert_eq(mx.calls, 1);
	cr_expect_str_eq(mx.route->hosts[0].name, "mx1.relay.example");
	cr_expect_eq(mx.route->hosts[0].port, 587);

	dns_resolve_route(r, "nx.test", fake_done, &nx, 0);
	cr_expect_eq(fake_count_kind(&f, DNS_QUERY_MX), 1, "[host] must skip MX");
	cr_assert_eq(fake_answer_a(&f, "nowhere.example", DNS_ANSWER_NXDOMAIN, 0, NULL, 0), 0);
	cr_assert_eq(nx.calls, 1);
	cr_expect_eq(nx.route->status, DNS_ROUTE_TEMPFAIL, "got %s, want tempfail",
		     dns_route_status_name(nx.route->status));
	cr_expect_str_eq(nx.route->enhanced, "4.4.4");
	dns_resolve_route(r, "nxmx.test", fake_done, &nxmx, 0);
	cr_assert_eq(fake_answer_mx(&f, "nowhere.example", DNS_ANSWER_NXDOMAIN, 0, NULL, 0, 0), 0);
	cr_assert_eq(nxmx.calls, 1);
	cr_expect_eq(nxmx.route->status, DNS_ROUTE_TEMPFAIL);
	cr_expect_eq(nxmx.route->smtp_code, 451);
	cr_expect_str_eq(nxmx.route->enhanced, "4.4.4");
	cr_expect(strstr(nxmx.route->text, "next hop nowhere.example") != NULL, "%s", nxmx.route->text);
	/* Temporary: not cached, the next message asks again. */
	struct fake_result again = { 0 };
	dns_resolve_route(r, "nxmx.test", fake_done, &again, 0);
	cr_expect_eq(again.calls, 0, "a failed next hop must not be cached");
	cr_expect_not_null(fake_find(&f, DNS_QUERY_MX, "nowhere.example"));
	dns_route_unref(ip.route);
	dns_route_unref(ip6.route);
	dns_route_unref(rh.route);
	dns_route_unref(mx.route);
	dns_route_unref(nx.route);
	dns_route_unref(nxmx.route);
	dns_resolver_free(r);
}

/* Thousands of static routes: each found by binary search, the most
 * specific winning whatever the order they were given in (transport(5)). */
Test(dns_mx, static_routes_many_and_most_specific)
{
	enum { N = 5000 };
	struct dns_static_route *routes = calloc(N + 2, sizeof(*routes));
	static char names[N][32], targets[N][32];

	cr_assert_not_null(routes);
	routes[0] = (struct dns_static_route){ ".EXAMPLE.test", "[192.0.2.1]:2001" };
	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "d%d.example.test", N - i);
		snprintf(targets[i], sizeof(targets[i]), "[192.0.2.2]:%d", 10000 + N - i);
		routes[i + 1] = (struct dns_static_route){ names[i], targets[i] };
	}
	routes[N + 1] = (struct dns_static_route){ ".test", "[192.0.2.3]:2003" };
	struct dns_options o = { .static_routes = routes, .static_route_count = N + 2 };
	struct fake_dns f;
	struct dns_resolver *r = fake_resolver(&f, &o);
	static const struct { const char *domain; int port; } cases[] = {
		{ "d1.example.test", 10001 },          /* exact beats ".example.test" */
		{ "D4999.Example.Test.", 14999 },      /* any case, a trailing dot */
		{ "d5000.example.test", 15000 },
		{ "x.d7.example.test", 2001 },         /* no ".d7...": the parent's */
		{ "d5001.example.test", 2001 },        /* not listed: ".example.test" */
		{ "example.test", 2003 },              /* ".example.test" is for subdomains only */
		{ "other.test", 2003 },
	};

	cr_assert_not_null(r);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake_result res = { 0 };
		dns_resolve_route(r, cases[i].domain, fake_done, &res, 0);
		cr_assert_eq(res.calls, 1, "%s: no route at once", cases[i].domain);
		cr_expect_eq(res.route->hosts[0].port, cases[i].port, "%s: got port %u, want %d",
			     cases[i].domain, res.route->hosts[0].port, cases[i].port);
		dns_route_unref(res.route);
	}
	cr_expect_eq(f.count, 0, "literal routes sent %zu queries", f.count);
	dns_resolver_free(r);
	free(routes);
}

struct name_case {
	const char *in;
	const char *want;	/* NULL = -EINVAL */
};

Test(dns_mx, domain_normalize)
{
	static const struct name_case cases[] = {
		{ "Example.COM.", "example.com" }, { "a-b.test", "a-b.test" }, { "", NULL },
		{ ".", NULL }, { "a..b", NULL }, { "bad domain", NULL }, { ".lead", NULL },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.test",
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.test" },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.test", NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[256];
		int rc = dns_domain_normalize(cases[i].in, out, sizeof(out));

		if (cases[i].want == NULL)
			cr_expect_lt(rc, 0, "%s: got %d, want -EINVAL", cases[i].in, rc);
		else
			cr_expect(rc == 0 && strcmp(out, cases[i].want) == 0,
				"%s: got %d %s, want %s", cases[i].in, rc, out, cases[i].want);
	}
}

/* A waiter cancelled before the answer is never called (its arg may be
 * freed); the other waiters of the same lookup still are, and the answer
 * still fills the cache. */
Test(dns_mx, cancel_before_the_answer)
{
	struct dns_options o = { .relayhost = "[relay.example]:2525" };
	struct fake_dns f;
	struct dns_resolver *r = fake_resolver(&f, &o);
	struct fake_result gone = { 0 }, kept = { 0 }, later = { 0 };

	cr_assert_not_null(r);
	dns_resolve_route(r, "a.test", fake_done, &gone, 0);
	dns_resolve_route(r, "b.test", fake_done, &kept, 0);
	cr_expect_eq(f.count, 1, "one lookup for one relay: got %zu", f.count);
	cr_expect_eq(dns_resolve_cancel(r, fake_done, &gone), 1);
	cr_expect_eq(dns_resolve_cancel(r, fake_done, &gone), 0, "cancelled twice");
	fake_answer_a(&f, "relay.example", DNS_ANSWER_OK, 60, "192.0.2.80", 0);
	cr_expect_eq(gone.calls, 0, "a cancelled waiter was called back");
	cr_assert_eq(kept.calls, 1);
	dns_resolve_route(r, "c.test", fake_done, &later, 0);
	cr_expect_eq(later.calls, 1, "the answer should be cached");
	cr_expect_eq(f.count, 1);
	cr_expect_eq(dns_resolve_cancel(r, fake_done, &kept), 0, "answered: nothing to cancel");
	dns_route_unref(kept.route);
	dns_route_unref(later.route);
	dns_resolver_free(r);
}

/* cancel_other - a callback that cancels another waiter of the same
 * lookup, which must then not be called. */
struct cancel_pair {
	struct dns_resolver *r;
	struct fake_result *other;
	int calls;
};

static void cancel_other(const struct dns_route *route, void *arg)
{
	struct cancel_pair *p = arg;

	(void)route;
	p->calls++;
	dns_resolve_cancel(p->r, fake_done, p->other);
}

Test(dns_mx, cancel_from_a_callback_of_the_same_lookup)
{
	struct dns_options o = { .relayhost = "[relay.example]:2525" };
	struct fake_dns f;
	struct dns_resolver *r = fake_resolver(&f, &o);
	struct fake_result other = { 0 };
	struct cancel_pair first = { r, &other, 0 };

	cr_assert_not_null(r);
	dns_resolve_route(r, "a.test", cancel_other, &first, 0);
	dns_resolve_route(r, "b.test", fake_done, &other, 0);
	fake_answer_a(&f, "relay.example", DNS_ANSWER_OK, 60, "192.0.2.80", 0);
	cr_expect_eq(first.calls, 1);
	cr_expect_eq(other.calls, 0, "cancelled by an earlier callback, but called");
	dns_resolver_free(r);
}

/* A reload's routes: lookups from then on use them; dns_routes_target
 * says which next hop a domain had under each set. */
Test(dns_mx, swap_routes)
{
	static const struct dns_static_route before[] = { { ".sub.test", "[old.example]:25" } };
	static const struct dns_static_route after[] = { { "x.sub.test", "192.0.2.91:2600" } };
	struct dns_options o = { .static_routes = before, .static_route_count = 1, .relayhost = "192.0.2.90:25" };
	struct fake_dns f;
	struct dns_resolver *r = fake_resolver(&f, &o);
	char err[64];
	struct fake_result res = { 0 };

	cr_assert_not_null(r);
	struct dns_routes *fresh = dns_routes_new(after, 1, NULL, err, sizeof(err));
	cr_assert_not_null(fresh, "%s", err);
	struct dns_routes *old = dns_resolver_swap_routes(r, fresh);
	cr_expect_str_eq(dns_routes_target(old, "X.sub.test."), "[old.example]:25");
	cr_expect_str_eq(dns_routes_target(old, "other.test"), "192.0.2.90:25");
	cr_expect_str_eq(dns_routes_target(fresh, "x.sub.test"), "192.0.2.91:2600");
	cr_expect_null(dns_routes_target(fresh, "y.sub.test"), "no route, no relayhost: MX");
	cr_expect_null(dns_routes_target(fresh, "[192.0.2.1]"));
	dns_routes_free(old);
	dns_resolve_route(r, "x.sub.test", fake_done, &res, 0);
	cr_assert_eq(res.calls, 1, "an IP next hop answers at once");
	cr_expect_eq(res.route->hosts[0].port, 2600);
	cr_expect_eq(f.count, 0);
	dns_route_unref(res.route);
	dns_resolver_free(r);
}

/* cancel_if: the waiters whose arg the predicate picks, in one pass. */
static int picked(void *arg)
{
	return arg != NULL && ((struct fake_result *)arg)->calls == -1;
}

Test(dns_mx, cancel_if_picks_by_predicate)
{
	struct dns_options o = { .relayhost = "[relay.example]:2525" };
	struct fake_dns f;
	struct dns_resolver *r = fake_resolver(&f, &o);
	struct fake_result res[6] = { { 0 } };
	char name[32];

	cr_assert_not_null(r);
	for (int i = 0; i < 6; i++) {
		snprintf(name, sizeof(name), "d%d.test", i);
		dns_resolve_route(r, name, fake_done, &res[i], 0);
	}
	for (int i = 0; i < 6; i += 2)
		res[i].calls = -1;       /* picked: the even ones */
	cr_expect_eq(dns_resolve_cancel_if(r, fake_done, picked), 3);
	for (int i = 0; i < 6; i += 2)
		res[i].calls = 0;
	fake_answer_a(&f, "relay.example", DNS_ANSWER_OK, 60, "192.0.2.80", 0);
	for (int i = 0; i < 6; i++) {
		cr_expect_eq(res[i].calls, i % 2, "waiter %d: got %d calls, want %d", i, res[i].calls, i % 2);
		dns_route_unref(res[i].route);
	}
	dns_resolver_free(r);
}

/* DNSSEC: the AD bits of the MX and address answers reach the route
 * (RFC 7672: DANE only for a secure MX RRset and secure host addresses). */
Test(dns_mx, dnssec_ad_bits)
{
	static const struct dns_mx_record mx[] = { { 10, "a.test" }, { 20, "b.test" } };
	struct in_addr ip = { htonl(0x7f000001) };
	struct in6_addr ip6 = IN6ADDR_LOOPBACK_INIT;
	uint64_t rng = 1;
	int implicit;
	const struct { int mx_ad, a_ad, b_ad, b6_ad; int want_mx, want_a, want_b; } cases[] = {
		{ 1, 1, 1, 1, 1, 1, 1 },
		{ 0, 1, 1, 1, 0, 1, 1 },
		{ 1, 0, 1, 1, 1, 0, 1 },
		{ 1, 1, 1, 0, 1, 1, 0 },   /* one insecure answer of two: insecure */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dns_mx_answer a = { DNS_ANSWER_OK, 300, 2, mx, cases[i].mx_ad };
		struct dns_route *route = dns_route_from_mx("d.test", &a, 25, &rng, &implicit);
		cr_assert_eq(route->status, DNS_ROUTE_OK);
		size_t ia = strcmp(route->hosts[0].name, "a.test") == 0 ? 0 : 1;
		struct dns_addr_answer a4 = { DNS_ANSWER_OK, 300, AF_INET, 1, &ip, cases[i].a_ad };
		struct dns_addr_answer b4 = { DNS_ANSWER_OK, 300, AF_INET, 1, &ip, cases[i].b_ad };
		struct dns_addr_answer b6 = { DNS_ANSWER_OK, 300, AF_INET6, 1, &ip6, cases[i].b6_ad };
		dns_route_add_addrs(route, ia, &a4);
		dns_route_add_addrs(route, 1 - ia, &b4);
		dns_route_add_addrs(route, 1 - ia, &b6);
		dns_route_finish(route, "d.test", implicit, 0);
		cr_expect_eq(route->mx_secure, cases[i].want_mx, "case %zu: mx_secure got %d", i, route->mx_secure);
		cr_expect_eq(dns_host_secure(&route->hosts[ia]), cases[i].want_a, "case %zu: a.test", i);
		cr_expect_eq(dns_host_secure(&route->hosts[1 - ia]), cases[i].want_b, "case %zu: b.test", i);
		dns_route_unref(route);
	}
}
