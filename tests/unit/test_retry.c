/*
 * test_retry - retry schedule and domain backoff.
 */
#include <criterion/criterion.h>

#include "retry.h"

Test(retry, growth_and_cap_without_jitter)
{
	struct retry_policy p = { 300000, 4000000, 0, 5LL * 86400000 };
	static const int64_t want[] = { 300000, 600000, 1200000, 2400000, 4000000, 4000000 };

	for (unsigned a = 0; a < sizeof(want) / sizeof(want[0]); a++) {
		int64_t got = retry_next_delay_ms(&p, a, 12345);
		cr_expect_eq(got, want[a], "attempt %u: got %lld, want %lld", a,
			     (long long)got, (long long)want[a]);
	}
	int64_t huge = retry_next_delay_ms(&p, 100000, 0);
	cr_expect_eq(huge, 4000000, "attempt 100000: got %lld", (long long)huge);
}

Test(retry, jitter_bounds)
{
	struct retry_policy p = RETRY_POLICY_DEFAULT;
	int64_t lo = INT64_MAX, hi = 0;

	for (uint64_t r = 0; r < 20000; r++) {
		uint64_t rnd = r * 0x9e3779b97f4a7c15ULL;
		int64_t d = retry_next_delay_ms(&p, 1, rnd);
		cr_assert(d >= 540000 && d <= 660000, "attempt 1: got %lld, want 600000 +-10%%",
			  (long long)d);
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
		int64_t capped = retry_next_delay_ms(&p, 20, rnd);
		cr_assert(capped >= 3600000 && capped <= 4000000, "capped: got %lld",
			  (long long)capped);
	}
	/* The jitter really spreads: both ends of the range get used. */
	cr_expect(lo < 560000 && hi > 640000, "spread: got [%lld, %lld]", (long long)lo,
		  (long long)hi);
}

Test(retry, default_policy_values)
{
	struct retry_policy p = RETRY_POLICY_DEFAULT;

	cr_expect_eq(p.base_ms, 300000);
	cr_expect_eq(p.max_ms, 4000000);
	cr_expect_eq(p.lifetime_ms, 5LL * 24 * 3600 * 1000);
}

Test(retry, expiry)
{
	struct retry_policy p = RETRY_POLICY_DEFAULT;
	int64_t arrival = 1000000;

	cr_expect_not(retry_expired(&p, arrival, arrival));
	cr_expect_not(retry_expired(&p, arrival, arrival + p.lifetime_ms - 1));
	cr_expect(retry_expired(&p, arrival, arrival + p.lifetime_ms));
	cr_expect(retry_expired(&p, arrival, arrival + 10 * p.lifetime_ms));
}

Test(retry, domain_backoff_and_probe)
{
	struct retry_policy p = { 1000, 8000, 0, 86400000 };
	struct retry_domain_state s = { 0, 0 };
	int64_t now = 50000;

	cr_expect_not(retry_domain_blocked(&s, now));
	cr_expect_not(retry_domain_probing(&s, now));
	retry_domain_failed(&p, &s, now, 0);
	cr_expect_eq(s.until_ms, now + 1000, "got %lld", (long long)s.until_ms);
	cr_expect(retry_domain_blocked(&s, now + 999));
	cr_expect(retry_domain_probing(&s, now + 1000));
	/* The probe failed too: back off twice as long. */
	retry_domain_failed(&p, &s, now + 1000, 0);
	cr_expect_eq(s.until_ms, now + 3000, "got %lld", (long long)s.until_ms);
	for (int i = 0; i < 10; i++)
		retry_domain_failed(&p, &s, now, 0);
	cr_expect_eq(s.until_ms, now + 8000, "capped: got %lld", (long long)s.until_ms);
	retry_domain_succeeded(&s);
	cr_expect_not(retry_domain_blocked(&s, now));
	cr_expect_not(retry_domain_probing(&s, now));
}
