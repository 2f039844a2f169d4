/*
 * token_bucket - GCRA rates shared without locks; see token_bucket.h.
 *
 * The bucket's state is the time at which it would be empty of debt
 * ("theoretical arrival time", tat). It is full when tat <= now; taking a
 * token moves tat one interval later (from now at the earliest); a take is
 * refused when tat would pass now by more than burst intervals.
 */
#include "token_bucket.h"

#include <errno.h>

int token_bucket_rate_set(struct token_bucket_rate *r, uint64_t count, int64_t period_us, uint32_t burst)
{
	if (count == 0) {
		*r = (struct token_bucket_rate){ 0, burst ? burst : 1 };
		return 0;
	}
	if (period_us <= 0 || count > (uint64_t)period_us || burst > 1000000)
		return -EINVAL;
	*r = (struct token_bucket_rate){ period_us / (int64_t)count, burst ? burst : 1 };
	return 0;
}

bool token_bucket_decide(int64_t tat, const struct token_bucket_rate *r, int64_t now_us, int64_t *next,
			 int64_t *wait_us)
{
	int64_t start = tat > now_us ? tat : now_us;
	int64_t limit = now_us + (int64_t)r->burst * r->interval_us;

	if (start + r->interval_us > limit) {
		*wait_us = start + r->interval_us - limit;
		return false;
	}
	*next = start + r->interval_us;
	return true;
}

bool token_bucket_take(_Atomic int64_t *tat, const struct token_bucket_rate *r, int64_t now_us, int64_t *wait_us)
{
	int64_t old = atomic_load_explicit(tat, memory_order_relaxed), next;

	if (r->interval_us == 0)
		return true;
	for (;;) {
		if (!token_bucket_decide(old, r, now_us, &next, wait_us))
			return false;
		if (atomic_compare_exchange_weak_explicit(tat, &old, next, memory_order_relaxed, memory_order_relaxed))
			return true;
	}
}

int64_t token_bucket_wait(int64_t tat, const struct token_bucket_rate *r, int64_t now_us)
{
	int64_t next, wait;

	if (r->interval_us == 0 || token_bucket_decide(tat, r, now_us, &next, &wait))
		return 0;
	return wait;
}

void token_bucket_refund(_Atomic int64_t *tat, const struct token_bucket_rate *r)
{
	if (r->interval_us != 0)
		atomic_fetch_sub_explicit(tat, r->interval_us, memory_order_relaxed);
}

uint32_t token_bucket_available(int64_t tat, const struct token_bucket_rate *r, int64_t now_us)
{
	if (r->interval_us == 0)
		return r->burst;
	int64_t debt = tat > now_us ? tat - now_us : 0;
	int64_t room = (int64_t)r->burst * r->interval_us - debt;

	return room <= 0 ? 0 : (uint32_t)(room / r->interval_us);
}
