/*
 * test_token_bucket - GCRA buckets on a fake clock: rate setting, a table
 * of decisions, bursts, long-run rates, refunds, the status count, and
 * several threads sharing one bucket never taking more than it allows.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>

#include "token_bucket.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

Test(token_bucket, rate_set)
{
	struct token_bucket_rate r;

	cr_assert_eq(token_bucket_rate_set(&r, 100, 60000000, 10), 0);
	cr_assert_eq(r.interval_us, 600000);
	cr_assert_eq(r.burst, 10);
	cr_assert_eq(token_bucket_rate_set(&r, 5, 1000000, 0), 0);
	cr_assert_eq(r.interval_us, 200000, "got %lld", (long long)r.interval_us);
	cr_assert_eq(r.burst, 1, "burst 0 means 1");
	cr_assert_eq(token_bucket_rate_set(&r, 0, 1000000, 3), 0);
	cr_assert_eq(r.interval_us, 0, "count 0: no limit");
	cr_assert_eq(token_bucket_rate_set(&r, 2000000, 1000000, 1), -EINVAL, "under a microsecond");
	cr_assert_eq(token_bucket_rate_set(&r, 1, 0, 1), -EINVAL);
}

Test(token_bucket, decide_table)
{
	static const struct {
		int64_t tat, interval; uint32_t burst; int64_t now;
		bool ok; int64_t want;      /* next tat when ok, else the wait */
	} cases[] = {
		{ 0, 100, 1, 1000, true, 1100 },        /* full: from now */
		{ 1100, 100, 1, 1000, false, 100 },     /* one in flight, burst 1 */
		{ 1100, 100, 1, 1100, true, 1200 },     /* its interval passed */
		{ 1100, 100, 2, 1000, true, 1200 },     /* burst 2: a second at once */
		{ 1200, 100, 2, 1000, false, 100 },
		{ 1250, 100, 2, 1000, false, 150 },
		{ 900, 100, 3, 1000, true, 1100 },      /* stale tat counts as now */
		{ 1300, 100, 3, 1000, false, 100 },
	};
	for (size_t i = 0; i < N(cases); i++) {
		struct token_bucket_rate r = { cases[i].interval, cases[i].burst };
		int64_t next = -1, wait = -1;
		bool ok = token_bucket_decide(cases[i].tat, &r, cases[i].now, &next, &wait);
		cr_assert_eq(ok, cases[i].ok, "case %zu: got %d, want %d", i, ok, cases[i].ok);
		cr_assert_eq(ok ? next : wait, cases[i].want, "case %zu: got %lld, want %lld", i,
			     (long long)(ok ? next : wait), (long long)cases[i].want);
		cr_assert_eq(token_bucket_wait(cases[i].tat, &r, cases[i].now), ok ? 0 : cases[i].want, "case %zu", i);
	}
}

Test(token_bucket, burst_then_rate)
{
	struct token_bucket_rate r;
	_Atomic int64_t tat = 0;
	int64_t wait, now = 5000000;
	unsigned taken = 0;

	token_bucket_rate_set(&r, 10, 1000000, 5);      /* 10/s, burst 5 */
	cr_assert_eq(token_bucket_available(tat, &r, now), 5);
	while (token_bucket_take(&tat, &r, now, &wait))
		taken++;
	cr_assert_eq(taken, 5, "the burst at once: got %u", taken);
	cr_assert_eq(wait, 100000, "then one per 100 ms: got %lld", (long long)wait);
	cr_assert_eq(token_bucket_available(tat, &r, now), 0);
	/* Ten seconds of takers asking every millisecond: 100 more, no more. */
	for (int64_t t = now; t < now + 10000000; t += 1000)
		if (token_bucket_take(&tat, &r, t, &wait))
			taken++;
	cr_assert(taken >= 104 && taken <= 105, "got %u in the burst and 10 s, want 5 + 100", taken);
	/* Idle for long: full again, not more. */
	cr_assert_eq(token_bucket_available(tat, &r, now + 60000000), 5);
}

Test(token_bucket, refund)
{
	struct token_bucket_rate r;
	_Atomic int64_t tat = 0;
	int64_t wait;

	token_bucket_rate_set(&r, 1, 1000000, 1);
	cr_assert(token_bucket_take(&tat, &r, 1000, &wait));
	cr_assert_not(token_bucket_take(&tat, &r, 1000, &wait));
	token_bucket_refund(&tat, &r);
	cr_assert(token_bucket_take(&tat, &r, 1000, &wait), "the refunded token is there again");
}

Test(token_bucket, unlimited)
{
	struct token_bucket_rate r;
	_Atomic int64_t tat = 77;
	int64_t wait;

	token_bucket_rate_set(&r, 0, 1000000, 1);
	for (int i = 0; i < 1000; i++)
		cr_assert(token_bucket_take(&tat, &r, 0, &wait));
	token_bucket_refund(&tat, &r);
	cr_assert_eq(tat, 77, "an unlimited bucket is never written");
}

struct racer {
	_Atomic int64_t *tat;
	const struct token_bucket_rate *r;
	unsigned taken;
};

static void *race(void *arg)
{
	struct racer *x = arg;
	int64_t wait;

	for (int64_t t = 0; t < 1000000; t += 10)       /* one second of a fake clock */
		if (token_bucket_take(x->tat, x->r, t, &wait))
			x->taken++;
	return NULL;
}

Test(token_bucket, shared_by_threads)
{
	struct token_bucket_rate r;
	_Atomic int64_t tat = 0;
	struct racer racers[4];
	pthread_t th[4];
	unsigned total = 0;

	token_bucket_rate_set(&r, 1000, 1000000, 10);    /* 1000/s, burst 10 */
	for (int i = 0; i < 4; i++) {
		racers[i] = (struct racer){ &tat, &r, 0 };
		pthread_create(&th[i], NULL, race, &racers[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		total += racers[i].taken;
	}
	/* The threads' clocks are not in step: a lagging one sees a tat in
	 * its future and is refused, never paid twice. */
	cr_assert(total <= 1010, "got %u, at most 1000 + burst 10", total);
	cr_assert(total >= 900, "got %u: the bucket starved its takers", total);
}
