/*
 * retry - when to try a deferred message or a failing domain again.
 *
 *   struct retry_policy p = RETRY_POLICY_DEFAULT;
 *   int64_t delay = retry_next_delay_ms(&p, attempt, random64());
 *   if (retry_expired(&p, arrival_ms, now_ms)) ... bounce instead
 *
 * The delay doubles per attempt from base_ms, is capped at max_ms, and is
 * spread by +-jitter_percent so that messages deferred together do not come
 * back together (Postfix: minimal_backoff_time 300s, maximal 4000s,
 * maximal_queue_lifetime 5d). The caller supplies the randomness, which
 * keeps this module pure and its tests exact.
 *
 * A domain whose hosts all fail is backed off as a whole (the same
 * schedule, counted in consecutive failures); when its time comes, one
 * probe connection is let through: success clears the state, failure backs
 * off further.
 */
#ifndef RINGMAIL_RETRY_H
#define RINGMAIL_RETRY_H

#include <stdbool.h>
#include <stdint.h>

struct retry_policy {
	int64_t base_ms;		/* first delay */
	int64_t max_ms;			/* cap on any delay */
	unsigned jitter_percent;	/* 0..100 */
	int64_t lifetime_ms;		/* give up this long after arrival */
};

#define RETRY_POLICY_DEFAULT { 300000, 4000000, 10, 5LL * 24 * 3600 * 1000 }

/* retry_next_delay_ms - the delay before retry number attempt (0 = the
 * first retry): min(base * 2^attempt, max), jittered, in [1, max]. */
int64_t retry_next_delay_ms(const struct retry_policy *p, unsigned attempt,
			    uint64_t random);

/* retry_expired - has the message outlived the queue lifetime? */
bool retry_expired(const struct retry_policy *p, int64_t arrival_ms, int64_t now_ms);

struct retry_domain_state {
	unsigned failures;	/* consecutive failures of the whole domain */
	int64_t until_ms;	/* no new connections before this time */
};

/* retry_domain_failed - every host failed at now_ms: back off further. */
void retry_domain_failed(const struct retry_policy *p, struct retry_domain_state *s,
			 int64_t now_ms, uint64_t random);
/* retry_domain_succeeded - a delivery worked: the domain is healthy. */
void retry_domain_succeeded(struct retry_domain_state *s);
/* retry_domain_blocked - still backing off at now_ms? */
bool retry_domain_blocked(const struct retry_domain_state *s, int64_t now_ms);
/* retry_domain_probing - backed off before and now due: open one probe
 * connection only, not the domain's full concurrency. */
bool retry_domain_probing(const struct retry_domain_state *s, int64_t now_ms);

#endif
