/*
 * retry - retry schedule and domain backoff; see retry.h.
 */
#include "retry.h"

int64_t retry_next_delay_ms(const struct retry_policy *p, unsigned attempt,
			    uint64_t random)
{
	int64_t base = p->base_ms > 0 ? p->base_ms : 1;
	int64_t max = p->max_ms >= base ? p->max_ms : base;
	int64_t delay = base;

	/* Double without overflowing: stop as soon as the cap is reached. */
	for (unsigned i = 0; i < attempt && delay < max; i++)
		delay = delay > max / 2 ? max : delay * 2;
	if (delay > max)
		delay = max;
	unsigned pct = p->jitter_percent > 100 ? 100 : p->jitter_percent;
	int64_t span = delay / 100 * pct + delay % 100 * pct / 100;
	if (span > 0) {
		int64_t offset = (int64_t)(random % (uint64_t)(2 * span + 1)) - span;
		delay += offset;
	}
	if (delay > max)
		delay = max;
	return delay < 1 ? 1 : delay;
}

bool retry_expired(const struct retry_policy *p, int64_t arrival_ms, int64_t now_ms)
{
	return now_ms - arrival_ms >= p->lifetime_ms;
}

void retry_domain_failed(const struct retry_policy *p, struct retry_domain_state *s,
			 int64_t now_ms, uint64_t random)
{
	s->until_ms = now_ms + retry_next_delay_ms(p, s->failures, random);
	if (s->failures < 64)
		s->failures++;
}

void retry_domain_succeeded(struct retry_domain_state *s)
{
	s->failures = 0;
	s->until_ms = 0;
}

bool retry_domain_blocked(const struct retry_domain_state *s, int64_t now_ms)
{
	return s->failures > 0 && now_ms < s->until_ms;
}

bool retry_domain_probing(const struct retry_domain_state *s, int64_t now_ms)
{
	return s->failures > 0 && now_ms >= s->until_ms;
}
