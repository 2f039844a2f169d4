/*
 * test_ratelimit - the failed-login limiter on a fake clock: burst, decay,
 * address grouping, success, eviction at capacity, and a comparison with a
 * naive model under a random workload.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "ratelimit.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* addr - a sockaddr for a numeric IPv4 or IPv6 address. */
static const struct sockaddr *addr(const char *ip)
{
	static struct sockaddr_storage ss[8];
	static unsigned next;
	struct sockaddr_storage *s = &ss[next++ % N(ss)];

	memset(s, 0, sizeof(*s));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)s;
		sin6->sin6_family = AF_INET6;
		cr_assert_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1, "bad address %s", ip);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)s;
		sin->sin_family = AF_INET;
		cr_assert_eq(inet_pton(AF_INET, ip, &sin->sin_addr), 1, "bad address %s", ip);
	}
	return (const struct sockaddr *)s;
}

static struct ratelimit *make(unsigned burst, int64_t window_ms, unsigned capacity, unsigned prefix)
{
	struct ratelimit_config cfg = {
		.burst = burst, .window_ms = window_ms, .capacity = capacity,
		.ipv6_prefix = prefix, .seed = 42,
	};
	struct ratelimit *rl;

	cr_assert_eq(ratelimit_create(&cfg, &rl), 0);
	return rl;
}

Test(ratelimit, config_checked)
{
	static const struct ratelimit_config bad[] = {
		{ .burst = 0, .window_ms = 1000, .capacity = 10 },
		{ .burst = 10001, .window_ms = 1000, .capacity = 10 },
		{ .burst = 3, .window_ms = 0, .capacity = 10 },
		{ .burst = 3, .window_ms = 1000, .capacity = 0 },
		{ .burst = 3, .window_ms = 1000, .capacity = 10, .ipv6_prefix = 129 },
	};
	struct ratelimit *rl;

	for (size_t i = 0; i < N(bad); i++) {
		cr_expect_eq(ratelimit_create(&bad[i], &rl), -EINVAL, "case %zu accepted", i);
		cr_expect_null(rl);
	}
	cr_expect_null(ratelimit_free(NULL));
}

Test(ratelimit, burst_then_one_per_interval)
{
	struct ratelimit *rl = make(3, 3000, 16, 0);
	const struct sockaddr *a = addr("192.0.2.1");

	/* three failures back to back are allowed, the fourth attempt is not */
	for (int i = 0; i < 3; i++) {
		cr_expect(ratelimit_allowed(rl, a, 0), "attempt %d refused", i + 1);
		ratelimit_failed(rl, a, 0);
	}
	cr_expect_not(ratelimit_allowed(rl, a, 0), "fourth attempt allowed");
	cr_expect_eq(ratelimit_retry_after(rl, a, 0), 1000, "retry_after got %lld, want 1000",
		     (long long)ratelimit_retry_after(rl, a, 0));
	cr_expect_not(ratelimit_allowed(rl, a, 999));
	cr_expect_eq(ratelimit_retry_after(rl, a, 999), 1);
	/* one attempt regained per window/burst */
	cr_expect(ratelimit_allowed(rl, a, 1000));
	ratelimit_failed(rl, a, 1000);
	cr_expect_not(ratelimit_allowed(rl, a, 1000));
	cr_expect(ratelimit_allowed(rl, a, 2000));
	/* other addresses are not affected */
	cr_expect(ratelimit_allowed(rl, addr("192.0.2.2"), 0));
	ratelimit_free(rl);
}

Test(ratelimit, full_decay_after_window)
{
	struct ratelimit *rl = make(3, 3000, 16, 0);
	const struct sockaddr *a = addr("192.0.2.1");

	for (int i = 0; i < 3; i++)
		ratelimit_failed(rl, a, 100);
	/* failures while refused do not push recovery past a window */
	for (int i = 0; i < 20; i++)
		ratelimit_failed(rl, a, 200);
	cr_expect_not(ratelimit_allowed(rl, a, 1199));
	cr_expect_eq(ratelimit_retry_after(rl, a, 200), 1000, "got %lld, want 1000",
		     (long long)ratelimit_retry_after(rl, a, 200));
	/* window after the last failure: the whole burst again */
	for (int i = 0; i < 3; i++) {
		cr_expect(ratelimit_allowed(rl, a, 3200), "attempt %d after decay refused", i + 1);
		ratelimit_failed(rl, a, 3200);
	}
	cr_expect_not(ratelimit_allowed(rl, a, 3200));
	ratelimit_free(rl);
}

Test(ratelimit, slow_failures_never_blocked)
{
	struct ratelimit *rl = make(2, 1000, 16, 0);
	const struct sockaddr *a = addr("198.51.100.7");

	/* one failure per window/burst is exactly the refill rate */
	for (int64_t t = 0; t < 10000; t += 500) {
		cr_expect(ratelimit_allowed(rl, a, t), "refused at %lld", (long long)t);
		ratelimit_failed(rl, a, t);
	}
	ratelimit_free(rl);
}

Test(ratelimit, success_forgets)
{
	struct ratelimit *rl = make(1, 60000, 16, 0);
	const struct sockaddr *a = addr("192.0.2.9");

	ratelimit_failed(rl, a, 0);
	cr_expect_not(ratelimit_allowed(rl, a, 1));
	cr_expect_eq(ratelimit_count(rl), 1);
	ratelimit_succeeded(rl, a);
	cr_expect(ratelimit_allowed(rl, a, 1));
	cr_expect_eq(ratelimit_count(rl), 0);
	ratelimit_succeeded(rl, addr("192.0.2.10"));    /* unknown: harmless */
	ratelimit_free(rl);
}

Test(ratelimit, address_grouping)
{
	struct ratelimit *rl = make(1, 60000, 16, 0);       /* IPv6 by /64 */
	struct ratelimit *exact = make(1, 60000, 16, 128);

	ratelimit_failed(rl, addr("2001:db8:1:2::1"), 0);
	ratelimit_failed(exact, addr("2001:db8:1:2::1"), 0);
	cr_expect_not(ratelimit_allowed(rl, addr("2001:db8:1:2:ffff::9"), 0), "same /64 allowed");
	cr_expect(ratelimit_allowed(rl, addr("2001:db8:1:3::1"), 0), "other /64 refused");
	cr_expect(ratelimit_allowed(exact, addr("2001:db8:1:2::2"), 0), "/128: neighbour refused");
	cr_expect_not(ratelimit_allowed(exact, addr("2001:db8:1:2::1"), 0));

	/* IPv4-mapped IPv6 is the IPv4 address */
	ratelimit_failed(rl, addr("::ffff:192.0.2.1"), 0);
	cr_expect_not(ratelimit_allowed(rl, addr("192.0.2.1"), 0), "mapped and plain differ");
	cr_expect(ratelimit_allowed(rl, addr("192.0.2.2"), 0));

	/* unix sockets are not counted */
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	ratelimit_failed(rl, (struct sockaddr *)&sun, 0);
	cr_expect(ratelimit_allowed(rl, (struct sockaddr *)&sun, 0));
	cr_expect_eq(ratelimit_count(rl), 2, "count got %zu, want 2", ratelimit_count(rl));
	ratelimit_free(rl);
	ratelimit_free(exact);
}

Test(ratelimit, eviction_at_capacity_forgets_least_recent)
{
	struct ratelimit *rl = make(1, 60000, 4, 0);
	const char *ips[] = { "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6" };

	for (int i = 0; i < 4; i++)
		ratelimit_failed(rl, addr(ips[i]), i);
	cr_expect_eq(ratelimit_count(rl), 4);
	/* touch .1 again: now .2 is the least recent */
	ratelimit_failed(rl, addr(ips[0]), 10);
	ratelimit_failed(rl, addr(ips[4]), 11);
	cr_expect_eq(ratelimit_count(rl), 4, "count got %zu, want the capacity", ratelimit_count(rl));
	cr_expect(ratelimit_allowed(rl, addr(ips[1]), 12), ".2 should have been evicted");
	for (int i = 0; i < 5; i++)
		if (i != 1)
			cr_expect_not(ratelimit_allowed(rl, addr(ips[i]), 12), "%s evicted", ips[i]);
	ratelimit_failed(rl, addr(ips[5]), 13);
	cr_expect(ratelimit_allowed(rl, addr(ips[2]), 14), ".3 should have been evicted next");
	cr_expect_not(ratelimit_allowed(rl, addr(ips[5]), 14));
	ratelimit_free(rl);
}

/* The model: the same GCRA with a plain array and exact LRU by a counter. */
struct model_entry {
	int key;
	int64_t tat;
	uint64_t touched;
};

static int64_t model_debt(const struct model_entry *m, size_t n, int key, int64_t now, int64_t burst)
{
	for (size_t i = 0; i < n; i++)
		if (m[i].key == key)
			return m[i].tat > now * burst ? m[i].tat - now * burst : 0;
	return 0;
}

Test(ratelimit, matches_model_under_random_load)
{
	enum { CAP = 32, KEYS = 100, OPS = 20000 };
	const int64_t burst = 4, window = 4000;
	struct ratelimit *rl = make((unsigned)burst, window, CAP, 0);
	struct model_entry model[CAP];
	size_t used = 0;
	uint64_t clock_tick = 0, rng = 12345;
	int64_t now = 0;

	for (int op = 0; op < OPS; op++) {
		rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
		int key = (int)((rng >> 33) % KEYS);
		unsigned kind = (unsigned)(rng >> 20) % 16;
		now += (int64_t)((rng >> 40) % 50);
		char ip[32];
		snprintf(ip, sizeof(ip), "10.1.%d.%d", key / 7, key % 7 * 30);
		const struct sockaddr *a = addr(ip);

		bool want = model_debt(model, used, key, now, burst) + window <= burst * window;
		cr_assert_eq(ratelimit_allowed(rl, a, now), want, "op %d key %d: allowed got %d, want %d",
			     op, key, !want, want);
		size_t i = 0;
		while (i < used && model[i].key != key)
			i++;
		if (kind == 0) {                                 /* success */
			if (i < used)
				model[i] = model[--used];
			ratelimit_succeeded(rl, a);
		} else if (kind < 10) {                          /* failure */
			if (i == used && used == CAP) {          /* evict least recent */
				size_t old = 0;
				for (size_t j = 1; j < used; j++)
					if (model[j].touched < model[old].touched)
						old = j;
				model[old] = model[--used];
				i = used;
			}
			if (i == used)
				model[used++] = (struct model_entry){ .key = key, .tat = INT64_MIN };
			int64_t t = model[i].tat > now * burst ? model[i].tat : now * burst;
			model[i].tat = t + window < now * burst + burst * window ? t + window
										  : now * burst + burst * window;
			model[i].touched = ++clock_tick;
			ratelimit_failed(rl, a, now);
		}
		cr_assert_eq(ratelimit_count(rl), used, "op %d: count got %zu, want %zu", op,
			     ratelimit_count(rl), used);
	}
	ratelimit_free(rl);
}
