/*
 * token_bucket - rates with bursts ("100/min, burst 10"), as a GCRA
 * (generic cell rate algorithm): one 64-bit "theoretical arrival time" per
 * bucket, so a bucket shared by every worker is one atomic word updated by
 * compare-and-swap, no lock.
 *
 *   struct token_bucket_rate r;
 *   token_bucket_rate_set(&r, 100, 60 * 1000000, 10);     100 per minute, burst 10
 *   _Atomic int64_t tat = 0;                               a bucket, full
 *   int64_t wait_us;
 *   if (token_bucket_take(&tat, &r, now_us, &wait_us))     go
 *   else                                                   try again in wait_us
 *   token_bucket_refund(&tat, &r);                         took one it did not use
 *   unsigned n = token_bucket_available(tat, &r, now_us);  for the status
 *
 * A bucket holds at most burst tokens and regains one every interval_us
 * (period / count). A rate with interval_us 0 is no limit: every take
 * succeeds and the bucket is never written. Times are microseconds of any
 * monotonic origin, the same for every caller of one bucket. Decisions are
 * pure (token_bucket_decide) and tested as a table; the atomic wrappers
 * only retry them.
 */
#ifndef RINGMAIL_TOKEN_BUCKET_H
#define RINGMAIL_TOKEN_BUCKET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct token_bucket_rate {
	int64_t interval_us;       /* one token per interval; 0 = no limit */
	uint32_t burst;            /* tokens when full, at least 1 */
};

/* token_bucket_rate_set - count tokens per period_us with burst (0: 1);
 * count 0 is no limit. -EINVAL when the interval would round to 0 us or
 * an argument is out of range. */
int token_bucket_rate_set(struct token_bucket_rate *r, uint64_t count, int64_t period_us, uint32_t burst);

/* token_bucket_decide - take one token at now from a bucket at tat: true
 * with the bucket's new tat in *next, or false with the wait until one is
 * there in *wait_us (> 0). Pure. */
bool token_bucket_decide(int64_t tat, const struct token_bucket_rate *r, int64_t now_us, int64_t *next,
			 int64_t *wait_us);

/* token_bucket_take - token_bucket_decide on a shared bucket. */
bool token_bucket_take(_Atomic int64_t *tat, const struct token_bucket_rate *r, int64_t now_us, int64_t *wait_us);

/* token_bucket_wait - how long until a take would succeed (0: now); no
 * change to the bucket. */
int64_t token_bucket_wait(int64_t tat, const struct token_bucket_rate *r, int64_t now_us);

/* token_bucket_refund - give back one token taken and not used. */
void token_bucket_refund(_Atomic int64_t *tat, const struct token_bucket_rate *r);

/* token_bucket_available - tokens in the bucket at now (0..burst). */
uint32_t token_bucket_available(int64_t tat, const struct token_bucket_rate *r, int64_t now_us);

#endif
