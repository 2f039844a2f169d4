/*
 * shaping_delivery - the outbound engine's side of traffic shaping: the
 * response rules applied to each recipient's reply (relay/mail/shaping.h),
 * suspensions of sites (process-wide, relay/daemon/shaping_state.h) and
 * domains (on their owner), and parking a suspended domain's items.
 *
 * A suspended domain's ready items go to the worker's retry heap until the
 * suspension ends, marked parked (no attempt counted, no log line per
 * item), so nothing connects to the site meanwhile; sessions that are
 * open finish their transaction and quit rather than start another
 * (mta_next asks shaping_domain_parked). When the operator resumes a site
 * every worker takes the items it parked for it out of the heap at once.
 */
#include "queue.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "shaping.h"
#include "shaping_state.h"
#include "suppress.h"
#include "token_bucket.h"

#define SITE_MX_MAX 32

/* matcher - this worker's compiled response rules for its config. */
static const struct shaping_matcher *matcher(struct delivery *dl)
{
	const struct config *cfg = dl->w->cfg;

	if (dl->shaping_serial != cfg->serial) {
		dl->shaping_matcher = shaping_matcher_free(dl->shaping_matcher);
		if (cfg->shaping != NULL)
			dl->shaping_matcher = shaping_matcher_new(cfg->shaping);
		dl->shaping_serial = cfg->serial;
	}
	return dl->shaping_matcher;
}

void shaping_delivery_free(struct delivery *dl)
{
	dl->shaping_matcher = shaping_matcher_free(dl->shaping_matcher);
	dl->shaping_serial = 0;
	dl->shaping_waiters = NULL;
}

static void shaping_domain_entries(struct delivery *dl, struct qdomain *d);

/* domain_site - the state slot of d's site (listed, or by its route's MX
 * host names), or -1 when it has none (or no route yet). */
static int domain_site(struct delivery *dl, struct qdomain *d, const char **name)
{
	const struct shaping_rules *rules = dl->w->cfg->shaping;

	if (rules == NULL || d == NULL || shaping_site_count(rules) == 0)
		return -1;
	shaping_domain_entries(dl, d);
	if (d->shaping_site < 0)
		return -1;
	const struct shaping_site *site = shaping_site_at(rules, (size_t)d->shaping_site);
	if (name != NULL)
		*name = site->name;
	return (int)site->slot;
}

/* ---- limits ------------------------------------------------------------ */

/* How soon a domain that waits for a connection slot looks again: slots
 * free on other workers, which do not tell this one. */
#define SLOT_RECHECK_MS 50

/* shaping_domain_entries - d's site and own entry in the config's shaping
 * rules, found again when the config (its serial) or d's route changed. */
static void shaping_domain_entries(struct delivery *dl, struct qdomain *d)
{
	const struct config *cfg = dl->w->cfg;
	const char *names[SITE_MX_MAX];
	size_t n = 0;

	if (d->shaping_serial == cfg->serial && d->shaping_route == d->route)
		return;
	d->shaping_serial = cfg->serial;
	d->shaping_route = d->route;
	d->shaping_site = d->shaping_entry = -1;
	if (cfg->shaping == NULL || shaping_site_count(cfg->shaping) == 0)
		return;
	if (d->route != NULL) {
		n = d->route->host_count < SITE_MX_MAX ? d->route->host_count : SITE_MX_MAX;
		for (size_t i = 0; i < n; i++)
			names[i] = d->route->hosts[i].name;
	}
	d->shaping_site = shaping_site_of_domain(cfg->shaping, d->name, names, n);
	d->shaping_entry = shaping_domain_find(cfg->shaping, d->name);
}

/* entry_at - the site (or entry) at idx, or NULL. */
static const struct shaping_site *entry_at(const struct delivery *dl, int idx)
{
	return idx >= 0 ? shaping_site_at(dl->w->cfg->shaping, (size_t)idx) : NULL;
}


/* shaping_wait - d waits until due_ms (the earlier of two waits wins). */
static void shaping_wait(struct delivery *dl, struct qdomain *d, int64_t due_ms)
{
	if (d->shaping_due_ms != 0) {
		if (due_ms < d->shaping_due_ms)
			d->shaping_due_ms = due_ms;
		return;
	}
	d->shaping_due_ms = due_ms > 0 ? due_ms : 1;
	d->shaping_next = dl->shaping_waiters;
	dl->shaping_waiters = d;
	dl->stats.shaping_waits++;
}

bool shaping_waiting(struct delivery *dl, struct qdomain *d)
{
	return d->shaping_due_ms > dl->w->now_ms;
}

int64_t shaping_delivery_hook(struct delivery *dl)
{
	struct qdomain *due = NULL, **p = &dl->shaping_waiters;
	int64_t now = dl->w->now_ms, next = 0;

	while (*p != NULL) {
		struct qdomain *d = *p;
		if (d->shaping_due_ms <= now) {
			*p = d->shaping_next;
			d->shaping_due_ms = 0;
			d->shaping_next = due;
			due = d;
			continue;
		}
		if (next == 0 || d->shaping_due_ms < next)
			next = d->shaping_due_ms;
		p = &d->shaping_next;
	}
	while (due != NULL) {
		struct qdomain *d = due;
		due = d->shaping_next;
		d->shaping_next = NULL;
		if (d->ready_head != NULL && !dl->stopping)
			domain_kick(dl, d);
	}
	for (struct qdomain *d = dl->shaping_waiters; d != NULL; d = d->shaping_next)
		if (next == 0 || d->shaping_due_ms < next)
			next = d->shaping_due_ms;
	return next;
}

/* take_rate - a token of kind from each of the entries (refunded from the
 * first when the second has none); 0, or the wait in ms. */
static int64_t take_rate(const struct shaping_site *const *e, enum shaping_limit_kind kind,
			 enum shaping_bucket bucket, int64_t now_ms)
{
	struct token_bucket_rate rates[2];
	int64_t wait_us = 0;

	for (int i = 0; i < 2; i++) {
		if (e[i] == NULL)
			continue;
		rates[i] = shaping_state_rate(e[i], kind, now_ms);
		if (!shaping_state_take(e[i]->slot, bucket, &rates[i], now_ms * 1000, &wait_us)) {
			if (i == 1 && e[0] != NULL)
				shaping_state_refund(e[0]->slot, bucket, &rates[0]);
			return (wait_us + 999) / 1000;
		}
	}
	return 0;
}

/* How soon a domain whose pool's sources all reached their warm-up day's
 * share looks again (the day may turn, or a reload change the schedule). */
#define SOURCE_RECHECK_MS 60000

/* utc_day - days since the epoch, UTC (warm-up days). */
static int64_t utc_day(void)
{
	return wall_ms() / 86400000;
}

/* How soon a domain whose pool's sources are all suspended looks again at
 * most (an operator's resume is then seen within it). */
#define SUSPEND_RECHECK_MS 1000

/* pair_rate - the per_source rate of kind of entry e as a bucket rate. */
static struct token_bucket_rate pair_rate(const struct shaping_site *e, enum shaping_limit_kind kind)
{
	const struct shaping_rate *r = kind == SHAPING_LIMIT_MESSAGE_RATE ? &e->per_source.message_rate
									  : &e->per_source.connection_rate;
	struct token_bucket_rate tb;

	if (token_bucket_rate_set(&tb, r->count, r->period_ms * 1000, r->burst) < 0)
		tb = (struct token_bucket_rate){ 0, 1 };
	return tb;
}

/* source_view - what keeps source k (its index in the rules) from a new
 * connection for a domain of entries e now: its suspension, its warm-up
 * day, and each entry's per_source slots and connection_rate. */
static struct shaping_source_view source_view(struct delivery *dl, const struct shaping_site *const *e, unsigned k,
					      int64_t day)
{
	const struct shaping_source *src = shaping_source_at(dl->w->cfg->shaping, k);
	int64_t now = dl->w->now_ms, until = shaping_state_until(src->suspend_slot);
	struct shaping_source_view v = { 0, 0, 0, 0 };

	if (until > now)
		v.suspended_ms = until - now < SUSPEND_RECHECK_MS ? until - now : SUSPEND_RECHECK_MS;
	if (shaping_state_source_full(src->slot, day, shaping_source_daily_limit(src, day)))
		v.day_ms = SOURCE_RECHECK_MS;
	for (int i = 0; i < 2; i++) {
		if (e[i] == NULL || !e[i]->has_pairs)
			continue;
		unsigned pair = e[i]->pair_slots[k];
		int64_t pair_until = shaping_state_until(pair);     /* a source_site suspension */
		if (pair_until > now && v.suspended_ms < SUSPEND_RECHECK_MS)
			v.suspended_ms = pair_until - now < SUSPEND_RECHECK_MS ? pair_until - now : SUSPEND_RECHECK_MS;
		uint32_t max = e[i]->per_source.max_connections;
		if (max != 0 && shaping_state_connections(pair) >= max)
			v.slot_ms = SLOT_RECHECK_MS;
		struct token_bucket_rate r = pair_rate(e[i], SHAPING_LIMIT_CONNECTION_RATE);
		int64_t w = token_bucket_wait(atomic_load_explicit(shaping_state_bucket(pair, SHAPING_BUCKET_CONNECTION),
								   memory_order_relaxed), &r, now * 1000);
		if ((w + 999) / 1000 > v.rate_ms)
			v.rate_ms = (w + 999) / 1000;
	}
	return v;
}

/* pick_source - a weighted choice among the pool's sources free for a new
 * connection (shaping_pool_choose); -1 with *wait_ms when none is. A
 * (source, site) pair at its max_connections is marked wanted, so that an
 * idle session holding it quits rather than pools. */
static int pick_source(struct delivery *dl, const struct shaping_pool *p, const struct shaping_site *const *e,
		       int64_t *wait_ms)
{
	struct shaping_source_view view[SHAPING_MAX_SOURCES];
	int64_t day = utc_day();

	for (size_t i = 0; i < p->count; i++)
		view[i] = source_view(dl, e, p->sources[i], day);
	int k = shaping_pool_choose(p, view, delivery_rng_next(dl), wait_ms);
	for (size_t i = 0; k < 0 && i < p->count; i++)
		for (int j = 0; j < 2 && view[i].slot_ms > 0; j++)
			if (e[j] != NULL && e[j]->has_pairs)
				shaping_state_denied(e[j]->pair_slots[p->sources[i]], dl->w->now_ms);
	return k;
}

/* take_buckets - a token from each of n buckets, all or none (those taken
 * are refunded when a later one has none); 0, or the wait in ms. */
static int64_t take_buckets(_Atomic int64_t *const *b, const struct token_bucket_rate *r, int n, int64_t now_ms)
{
	int64_t wait_us = 0;

	for (int i = 0; i < n; i++) {
		if (!token_bucket_take(b[i], &r[i], now_ms * 1000, &wait_us)) {
			while (i-- > 0)
				token_bucket_refund(b[i], &r[i]);
			return (wait_us + 999) / 1000;
		}
	}
	return 0;
}

/* pair_acquire - source k's (source, site) slots and connection_rate
 * tokens of the entries' per_source limits into *hold; false (nothing
 * held) when another worker took the last meanwhile. */
static bool pair_acquire(struct delivery *dl, const struct shaping_site *const *e, unsigned k,
			 struct shaping_hold *hold)
{
	_Atomic int64_t *b[2];
	struct token_bucket_rate r[2];
	int n = 0;

	for (int i = 0; i < 2; i++) {
		if (e[i] == NULL || !e[i]->has_pairs)
			continue;
		unsigned pair = e[i]->pair_slots[k];
		if (!shaping_state_connection_acquire(pair, e[i]->per_source.max_connections)) {
			shaping_state_denied(pair, dl->w->now_ms);
			return false;
		}
		hold->pair_plus1[i] = pair + 1;
		b[n] = shaping_state_bucket(pair, SHAPING_BUCKET_CONNECTION);
		r[n++] = pair_rate(e[i], SHAPING_LIMIT_CONNECTION_RATE);
	}
	if (take_buckets(b, r, n, dl->w->now_ms) > 0)
		return false;
	hold->pair_rate_taken = n > 0;
	return true;
}

/* domain_pool - the egress pool of d's mail: the one its sender chose
 * (the shaping file's senders; d->pool), else its domain entry's, else
 * its site's, else delivery.pool; -1 for none. */
static int domain_pool(const struct config *cfg, const struct qdomain *d, const struct shaping_site *entry,
		       const struct shaping_site *site)
{
	int pool = d->pool != NULL ? shaping_pool_find(cfg->shaping, d->pool) : -1;

	if (pool < 0)
		pool = entry != NULL && entry->pool >= 0 ? entry->pool : site != NULL ? site->pool : -1;
	if (pool < 0 && cfg->delivery_pool[0] != '\0')
		pool = shaping_pool_find(cfg->shaping, cfg->delivery_pool);
	return pool;
}

bool shaping_connection_admit(struct delivery *dl, struct qdomain *d, struct shaping_hold *hold)
{
	const struct config *cfg = dl->w->cfg;
	int64_t now = dl->w->now_ms;

	*hold = (struct shaping_hold){ -1, -1, -1, cfg->serial, false };
	if (cfg->shaping == NULL)
		return true;
	shaping_domain_entries(dl, d);
	const struct shaping_site *e[2] = { entry_at(dl, d->shaping_entry), entry_at(dl, d->shaping_site) };
	for (int i = 0; i < 2; i++) {
		if (e[i] == NULL)
			continue;
		if (!shaping_state_connection_acquire(e[i]->slot, shaping_state_max_connections(e[i], now))) {
			shaping_state_denied(e[i]->slot, now);
			shaping_connection_release(dl, hold);
			shaping_wait(dl, d, now + SLOT_RECHECK_MS);
			return false;
		}
		*(i == 0 ? &hold->entry_slot : &hold->site_slot) = (int)e[i]->slot;
	}
	int64_t wait = take_rate(e, SHAPING_LIMIT_CONNECTION_RATE, SHAPING_BUCKET_CONNECTION, now);
	if (wait > 0) {
		shaping_connection_release(dl, hold);
		shaping_wait(dl, d, now + wait);
		return false;
	}
	hold->rate_taken = true;
	int pool = domain_pool(cfg, d, e[0], e[1]);
	if (pool >= 0) {
		int64_t wait_ms = 0;
		hold->source = pick_source(dl, shaping_pool_at(cfg->shaping, (size_t)pool), e, &wait_ms);
		if (hold->source >= 0)
			hold->source_slot = shaping_source_at(cfg->shaping, (size_t)hold->source)->slot;
		if (hold->source >= 0 && !pair_acquire(dl, e, (unsigned)hold->source, hold))
			wait_ms = SLOT_RECHECK_MS;     /* lost a race for the pair's slot or token */
		if (hold->source < 0 || wait_ms > 0) {
			/* Every source of the pool is suspended, sent its warm-up
			 * day's share or is at a per_source limit. */
			shaping_connection_release(dl, hold);
			shaping_wait(dl, d, now + wait_ms);
			return false;
		}
	}
	return true;
}

bool shaping_source_suspended(struct delivery *dl, const struct shaping_hold *hold)
{
	const struct shaping_source *src = shaping_source_of(dl, hold);
	int64_t now = dl->w->now_ms;

	if (src == NULL)
		return false;
	/* For every site, or for the session's site (its pair). */
	return shaping_state_until(src->suspend_slot) > now ||
	       (hold->pair_plus1[0] != 0 && shaping_state_until(hold->pair_plus1[0] - 1) > now) ||
	       (hold->pair_plus1[1] != 0 && shaping_state_until(hold->pair_plus1[1] - 1) > now);
}

bool shaping_source_spent(struct delivery *dl, const struct shaping_hold *hold)
{
	const struct shaping_source *src = shaping_source_of(dl, hold);

	return src != NULL &&
	       (shaping_state_source_full(src->slot, utc_day(), shaping_source_daily_limit(src, utc_day())) ||
		shaping_source_suspended(dl, hold));
}

void shaping_source_sent(struct delivery *dl, const struct shaping_hold *hold)
{
	const struct shaping_source *src = shaping_source_of(dl, hold);

	/* Counted after the check (shaping_source_spent): workers racing at
	 * the limit may pass it by a message each. */
	if (src != NULL)
		shaping_state_source_take(src->slot, utc_day(), 0);
}

void shaping_connection_connected(struct shaping_hold *hold)
{
	hold->rate_taken = hold->pair_rate_taken = false;
}

/* pair_release - the hold's per_source slots go back, and its pair
 * connection_rate tokens when it never connected (under the config it
 * took them from: the pairs' rates are found by their slots). */
static void pair_release(struct delivery *dl, struct shaping_hold *hold)
{
	const struct shaping_rules *rules = dl->w->cfg->shaping;

	for (int i = 0; i < 2; i++) {
		if (hold->pair_plus1[i] == 0)
			continue;
		unsigned pair = hold->pair_plus1[i] - 1;
		shaping_state_connection_release(pair);
		if (!hold->pair_rate_taken || dl->w->cfg->serial != hold->serial || rules == NULL || hold->source < 0)
			continue;
		for (size_t k = 0; k < shaping_site_count(rules); k++) {
			const struct shaping_site *site = shaping_site_at(rules, k);
			if (site->has_pairs && site->pair_slots[hold->source] == pair) {
				struct token_bucket_rate tb = pair_rate(site, SHAPING_LIMIT_CONNECTION_RATE);
				token_bucket_refund(shaping_state_bucket(pair, SHAPING_BUCKET_CONNECTION), &tb);
				break;
			}
		}
	}
	hold->pair_plus1[0] = hold->pair_plus1[1] = 0;
	hold->pair_rate_taken = false;
}

void shaping_connection_release(struct delivery *dl, struct shaping_hold *hold)
{
	pair_release(dl, hold);
	if (hold->site_slot >= 0)
		shaping_state_connection_release((unsigned)hold->site_slot);
	if (hold->entry_slot >= 0)
		shaping_state_connection_release((unsigned)hold->entry_slot);
	if (hold->rate_taken && dl->w->cfg->serial == hold->serial && dl->w->cfg->shaping != NULL) {
		/* Never connected: the connection_rate token goes back. */
		const struct shaping_rules *rules = dl->w->cfg->shaping;
		for (size_t i = 0; i < shaping_site_count(rules); i++) {
			const struct shaping_site *site = shaping_site_at(rules, i);
			if ((int)site->slot == hold->site_slot || (int)site->slot == hold->entry_slot) {
				struct token_bucket_rate tb = shaping_state_rate(site, SHAPING_LIMIT_CONNECTION_RATE, dl->w->now_ms);
				token_bucket_refund(shaping_state_bucket(site->slot, SHAPING_BUCKET_CONNECTION), &tb);
			}
		}
	}
	hold->site_slot = hold->entry_slot = -1;
	hold->rate_taken = false;
}

static int64_t pair_message_wait(struct delivery *dl, const struct shaping_site *const *e, int k);

bool shaping_session_fits(struct delivery *dl, struct qdomain *d, const struct shaping_hold *hold)
{
	const struct config *cfg = dl->w->cfg;

	if (cfg->shaping == NULL)
		return hold->site_slot < 0 && hold->entry_slot < 0 && hold->source < 0;
	shaping_domain_entries(dl, d);
	const struct shaping_site *site = entry_at(dl, d->shaping_site), *entry = entry_at(dl, d->shaping_entry);
	if ((site != NULL ? (int)site->slot : -1) != hold->site_slot ||
	    (entry != NULL ? (int)entry->slot : -1) != hold->entry_slot)
		return false;
	if (hold->source < 0)
		return domain_pool(cfg, d, entry, site) < 0;   /* unbound: not for a pool's mail */
	/* A bound session carries mail of domains whose pool holds its source. */
	if (hold->serial != cfg->serial)
		return false;
	int pool = domain_pool(cfg, d, entry, site);
	if (pool < 0)
		return false;
	const struct shaping_pool *p = shaping_pool_at(cfg->shaping, (size_t)pool);
	const struct shaping_site *e[2] = { entry, site };
	if (shaping_source_suspended(dl, hold))
		return false;     /* it quits before its next transaction anyway */
	for (size_t i = 0; i < p->count; i++)
		if ((int)p->sources[i] == hold->source)   /* and its pairs have a message token */
			return pair_message_wait(dl, e, hold->source) == 0;
	return false;
}

bool shaping_session_wanted(struct delivery *dl, const struct shaping_hold *hold)
{
	int64_t now = dl->w->now_ms;

	return (hold->site_slot >= 0 && shaping_state_wanted((unsigned)hold->site_slot, now)) ||
	       (hold->entry_slot >= 0 && shaping_state_wanted((unsigned)hold->entry_slot, now)) ||
	       (hold->pair_plus1[0] != 0 && shaping_state_wanted(hold->pair_plus1[0] - 1, now)) ||
	       (hold->pair_plus1[1] != 0 && shaping_state_wanted(hold->pair_plus1[1] - 1, now));
}

/* source_index - the index in the running config of the source hold is
 * bound to, or -1. */
static int source_index(struct delivery *dl, const struct shaping_hold *hold)
{
	const struct shaping_source *src = shaping_source_of(dl, hold);

	return src != NULL ? (int)(src - shaping_source_at(dl->w->cfg->shaping, 0)) : -1;
}

/* pair_message_wait - would the per_source message_rate of the session's
 * (source, site) pairs give a token now? 0, or the wait in ms. */
static int64_t pair_message_wait(struct delivery *dl, const struct shaping_site *const *e, int k)
{
	int64_t wait = 0;

	for (int i = 0; k >= 0 && i < 2; i++) {
		if (e[i] == NULL || !e[i]->has_per_source || e[i]->per_source.message_rate.count == 0)
			continue;
		struct token_bucket_rate r = pair_rate(e[i], SHAPING_LIMIT_MESSAGE_RATE);
		int64_t w = token_bucket_wait(atomic_load_explicit(shaping_state_bucket(e[i]->pair_slots[k],
				SHAPING_BUCKET_MESSAGE), memory_order_relaxed), &r, dl->w->now_ms * 1000);
		if ((w + 999) / 1000 > wait)
			wait = (w + 999) / 1000;
	}
	return wait;
}

bool shaping_message_admit(struct delivery *dl, struct qdomain *d, const struct shaping_hold *hold)
{
	if (dl->w->cfg->shaping == NULL)
		return true;
	shaping_domain_entries(dl, d);
	const struct shaping_site *e[2] = { entry_at(dl, d->shaping_entry), entry_at(dl, d->shaping_site) };
	if (e[0] == NULL && e[1] == NULL)
		return true;
	/* A message token from the entry and the site (take_rate: in a
	 * cluster these also need a credit from Redis), then from each of
	 * their (source, site) pairs of the session's source (this node's
	 * own): all or none. */
	_Atomic int64_t *b[2];
	struct token_bucket_rate r[2];
	int n = 0, k = source_index(dl, hold);
	int64_t now = dl->w->now_ms;
	int64_t wait = take_rate(e, SHAPING_LIMIT_MESSAGE_RATE, SHAPING_BUCKET_MESSAGE, now);
	if (wait > 0) {
		shaping_wait(dl, d, now + wait);
		return false;
	}
	for (int i = 0; i < 2 && k >= 0; i++) {
		if (e[i] == NULL || !e[i]->has_per_source)
			continue;
		b[n] = shaping_state_bucket(e[i]->pair_slots[k], SHAPING_BUCKET_MESSAGE);
		r[n++] = pair_rate(e[i], SHAPING_LIMIT_MESSAGE_RATE);
	}
	wait = take_buckets(b, r, n, now);
	if (wait == 0)
		return true;
	for (int i = 0; i < 2; i++) {
		if (e[i] == NULL)
			continue;
		struct token_bucket_rate site_rate = shaping_state_rate(e[i], SHAPING_LIMIT_MESSAGE_RATE, now);
		shaping_state_refund(e[i]->slot, SHAPING_BUCKET_MESSAGE, &site_rate);
	}
	shaping_wait(dl, d, now + wait);
	return false;
}

/* smaller - the least of policy and the entries' nonzero limits. */
static unsigned smaller(unsigned policy, const struct shaping_site *a, const struct shaping_site *b, size_t off)
{
	const struct shaping_site *e[2] = { a, b };

	for (int i = 0; i < 2; i++) {
		if (e[i] == NULL)
			continue;
		uint32_t v = *(const uint32_t *)((const char *)&e[i]->limits + off);
		if (v != 0 && v < policy)
			policy = v;
	}
	return policy;
}

unsigned shaping_max_messages(struct delivery *dl, struct qdomain *d, const struct shaping_hold *hold,
			      unsigned policy)
{
	if (dl->w->cfg->shaping == NULL)
		return policy;
	shaping_domain_entries(dl, d);
	const struct shaping_site *e[2] = { entry_at(dl, d->shaping_entry), entry_at(dl, d->shaping_site) };
	policy = smaller(policy, e[0], e[1], offsetof(struct shaping_limits, max_messages_per_connection));
	/* A connection bound to a source: its pairs' per_source limit too. */
	for (int i = 0; hold != NULL && hold->source >= 0 && i < 2; i++) {
		uint32_t v = e[i] != NULL && e[i]->has_per_source ? e[i]->per_source.max_messages_per_connection : 0;
		if (v != 0 && v < policy)
			policy = v;
	}
	return policy;
}

unsigned shaping_max_recipients(struct delivery *dl, struct qdomain *d, unsigned policy)
{
	if (dl->w->cfg->shaping == NULL)
		return policy;
	shaping_domain_entries(dl, d);
	return smaller(policy, entry_at(dl, d->shaping_entry), entry_at(dl, d->shaping_site),
		       offsetof(struct shaping_limits, max_recipients));
}

const struct shaping_source *shaping_source_of(struct delivery *dl, const struct shaping_hold *hold)
{
	const struct config *cfg = dl->w->cfg;

	if (hold->source < 0 || cfg->shaping == NULL)
		return NULL;
	if (hold->serial == cfg->serial)
		return (size_t)hold->source < shaping_source_count(cfg->shaping) ?
			       shaping_source_at(cfg->shaping, (size_t)hold->source) : NULL;
	/* Chosen under an older config (freed by now, its indexes mean
	 * nothing): the source of the same name in this one, if it is still
	 * there. Without this a session's next address after a reload went
	 * out from the default address with the relay's EHLO, and its mail
	 * no longer counted against (or stopped at) the source's warm-up. */
	for (size_t i = 0; i < shaping_source_count(cfg->shaping); i++) {
		const struct shaping_source *src = shaping_source_at(cfg->shaping, i);
		if (src->slot == hold->source_slot)
			return src;
	}
	return NULL;
}

bool shaping_domain_parked(struct delivery *dl, struct qdomain *d)
{
	int64_t now = dl->w->now_ms, until = d->suspended_until_ms > now ? d->suspended_until_ms : 0;
	const char *site_name = "-";
	int slot = domain_site(dl, d, &site_name);
	struct qitem *it;
	size_t n = 0;

	if (slot >= 0) {
		int64_t s = shaping_state_until((unsigned)slot);
		if (s > now && s > until)
			until = s;
	}
	if (until == 0)
		return false;
	while ((it = domain_pop_ready(d)) != NULL) {
		it->parked = true;
		item_retry_at(dl, it, until);
		n++;
	}
	if (n > 0) {
		dl->stats.shaping_parked += n;
		log_info("shaping_parked", "domain=%s site=%s items=%zu for_ms=%lld", d->name, site_name, n,
			 (long long)(until - now));
	}
	return true;
}

/* suspend_source - the rule's suspension of the egress source hold is
 * bound to, for every site, unless one runs already. New connections
 * pick the pool's other sources (or wait); sessions bound to it quit
 * before their next transaction (shaping_source_spent). */
static void suspend_source(struct delivery *dl, struct qdomain *d, const struct shaping_hold *hold,
			   const struct shaping_response *hit, int code, const char *status, const char *text)
{
	const struct shaping_source *src = hold != NULL ? shaping_source_of(dl, hold) : NULL;
	int64_t now = dl->w->now_ms;

	if (src == NULL) {
		log_info("shaping_action", "action=suspend scope=source result=no_source domain=%s rule_line=%d code=%d",
			 d != NULL ? d->name : "-", hit->line, code);
		return;
	}
	if (shaping_state_until(src->suspend_slot) > now ||
	    !shaping_state_suspend(src->suspend_slot, now + hit->duration_ms))
		return;
	dl->stats.shaping_actions[SHAPING_SUSPEND]++;
	dl->stats.shaping_source_suspensions++;
	log_warn("shaping_action", "action=suspend scope=source source=%s address=%s domain=%s for_ms=%lld rule_line=%d reply=\"%d %s %.120s\"",
		 src->name, src->address, d != NULL ? d->name : "-", (long long)hit->duration_ms, hit->line, code,
		 status != NULL && status[0] ? status : "-", text != NULL ? text : "");
}

/* suspend_source_site - the rule's suspension of the (source, site) pair
 * of the source hold is bound to and d's site (its entry when it has no
 * site), unless one runs already: the source goes on for other sites. */
static void suspend_source_site(struct delivery *dl, struct qdomain *d, const struct shaping_hold *hold,
				const struct shaping_response *hit, int code, const char *status, const char *text)
{
	int k = hold != NULL ? source_index(dl, hold) : -1;
	const struct shaping_site *site = NULL;
	int64_t now = dl->w->now_ms;

	if (d != NULL && dl->w->cfg->shaping != NULL) {
		shaping_domain_entries(dl, d);
		site = entry_at(dl, d->shaping_site >= 0 ? d->shaping_site : d->shaping_entry);
	}
	if (k < 0 || site == NULL || !site->has_pairs) {
		log_info("shaping_action", "action=suspend scope=source_site result=%s domain=%s rule_line=%d code=%d",
			 k < 0 ? "no_source" : "no_site", d != NULL ? d->name : "-", hit->line, code);
		return;
	}
	unsigned pair = site->pair_slots[k];
	if (shaping_state_until(pair) > now || !shaping_state_suspend(pair, now + hit->duration_ms))
		return;
	const struct shaping_source *src = shaping_source_at(dl->w->cfg->shaping, (size_t)k);
	dl->stats.shaping_actions[SHAPING_SUSPEND]++;
	dl->stats.shaping_source_suspensions++;
	log_warn("shaping_action", "action=suspend scope=source_site source=%s address=%s site=%s domain=%s for_ms=%lld rule_line=%d reply=\"%d %s %.120s\"",
		 src->name, src->address, site->name, d->name, (long long)hit->duration_ms, hit->line, code,
		 status != NULL && status[0] ? status : "-", text != NULL ? text : "");
}

void shaping_on_connection_reply(struct delivery *dl, struct qdomain *d, const struct shaping_hold *hold, int code,
				 const char *status, const char *text)
{
	const struct shaping_rules *rules = dl->w->cfg->shaping;

	if (rules == NULL || hold == NULL || hold->source < 0 || code < 400 || shaping_response_count(rules) == 0)
		return;
	const struct shaping_response *hit = shaping_match(rules, matcher(dl), code, status, text);
	if (hit != NULL && hit->action == SHAPING_SUSPEND && hit->scope == SHAPING_SCOPE_SOURCE)
		suspend_source(dl, d, hold, hit, code, status, text);
	else if (hit != NULL && hit->action == SHAPING_SUSPEND && hit->scope == SHAPING_SCOPE_SOURCE_SITE)
		suspend_source_site(dl, d, hold, hit, code, status, text);
}

/* suspend - the rule's suspension of the site (or the domain), unless one
 * is already running: a storm of replies suspends once. */
static void suspend(struct delivery *dl, struct qdomain *d, const struct shaping_response *hit,
		    const struct rcpt_result *r)
{
	if (hit->scope == SHAPING_SCOPE_SOURCE) {
		suspend_source(dl, d, dl->shaping_reply_hold, hit, r->code, r->status, r->text);
		return;
	}
	if (hit->scope == SHAPING_SCOPE_SOURCE_SITE) {
		suspend_source_site(dl, d, dl->shaping_reply_hold, hit, r->code, r->status, r->text);
		return;
	}
	int64_t now = dl->w->now_ms, until = now + hit->duration_ms;
	const char *site_name = NULL;
	int slot = hit->scope == SHAPING_SCOPE_SITE ? domain_site(dl, d, &site_name) : -1;
	bool started;

	if (slot >= 0) {
		started = shaping_state_until((unsigned)slot) <= now && shaping_state_suspend((unsigned)slot, until);
	} else {
		started = d->suspended_until_ms <= now;
		if (started)
			d->suspended_until_ms = until;
	}
	if (started) {
		dl->stats.shaping_actions[SHAPING_SUSPEND]++;
		log_warn("shaping_action", "action=suspend scope=%s site=%s domain=%s for_ms=%lld rule_line=%d reply=\"%d %s %.120s\"",
			 slot >= 0 ? "site" : "domain", site_name ? site_name : "-", d->name,
			 (long long)hit->duration_ms, hit->line, r->code, r->status[0] ? r->status : "-", r->text);
	}
	shaping_domain_parked(dl, d);
}

/* lower - the rule's lowering of a limit of the site (or the domain's own
 * entry), unless one of the same limit runs: a storm lowers once. */
static void lower(struct delivery *dl, struct qdomain *d, const struct shaping_response *hit,
		  const struct rcpt_result *r)
{
	const struct shaping_rules *rules = dl->w->cfg->shaping;
	int idx = -1;

	shaping_domain_entries(dl, d);
	if (hit->scope == SHAPING_SCOPE_SITE)
		idx = d->shaping_site >= 0 ? d->shaping_site : d->shaping_entry;
	else
		idx = d->shaping_entry;
	if (idx < 0) {
		log_info("shaping_action", "action=lower result=no_%s domain=%s rule_line=%d",
			 hit->scope == SHAPING_SCOPE_SITE ? "site" : "domain_entry", d->name, hit->line);
		return;
	}
	const struct shaping_site *site = shaping_site_at(rules, (size_t)idx);
	struct token_bucket_rate tb;
	int64_t value = hit->lower_count;
	if (hit->limit != SHAPING_LIMIT_MAX_CONNECTIONS) {
		token_bucket_rate_set(&tb, hit->lower_rate.count, hit->lower_rate.period_ms * 1000, 1);
		value = tb.interval_us;
	}
	int64_t now = dl->w->now_ms;
	if (shaping_state_lower(site->slot, hit->limit, value, now + hit->duration_ms, now)) {
		dl->stats.shaping_actions[SHAPING_LOWER]++;
		log_warn("shaping_action", "action=lower site=%s domain=%s limit=%s value=%lld for_ms=%lld rule_line=%d reply=\"%d %s %.120s\"",
			 site->name, d->name, shaping_limit_name(hit->limit), (long long)value,
			 (long long)hit->duration_ms, hit->line, r->code, r->status[0] ? r->status : "-", r->text);
	}
}

void shaping_on_result(struct delivery *dl, const struct qitem *it, uint32_t idx, struct rcpt_result *r,
		       struct suppress_batch **suppress)
{
	const struct shaping_rules *rules = dl->w->cfg->shaping;

	if (rules == NULL || shaping_response_count(rules) == 0 || r->local || r->code == 0 || r->deleted ||
	    r->outcome == SMTP_OUTCOME_DELIVERED)
		return;
	const struct shaping_response *hit = shaping_match(rules, matcher(dl), r->code, r->status, r->text);
	if (hit == NULL)
		return;
	switch (hit->action) {
	case SHAPING_SUSPEND:
		if (it->d != NULL)
			suspend(dl, it->d, hit, r);
		break;
	case SHAPING_BOUNCE:
		if (r->outcome == SMTP_OUTCOME_DEFERRED) {
			r->outcome = SMTP_OUTCOME_BOUNCED;
			dl->stats.shaping_actions[SHAPING_BOUNCE]++;
			log_info("shaping_action", "action=bounce id=%s domain=%s rule_line=%d code=%d",
				 it->msg->queue_id, it->d != NULL ? it->d->name : "-", hit->line, r->code);
		}
		break;
	case SHAPING_SUPPRESS: {
		char reason[2 * REPLY_TEXT_MAX];
		int64_t now = wall_ms() / 1000;
		snprintf(reason, sizeof(reason), "%d %s %s", r->code, r->status[0] ? r->status : "-", r->text);
		if (*suppress == NULL)
			*suppress = suppress_batch_new();
		dl->stats.shaping_actions[SHAPING_SUPPRESS]++;
		suppress_batch_add(*suppress, it->msg->rcpts[idx].addr, now, 0, reason);
		log_info("shaping_action", "action=suppress rcpt=<%s> rule_line=%d code=%d", it->msg->rcpts[idx].addr,
			 hit->line, r->code);
		break;
	}
	case SHAPING_LOWER:
		if (it->d != NULL)
			lower(dl, it->d, hit, r);
		break;
	case SHAPING_ACTION_COUNT:
		break;
	}
}

/* ---- resume ------------------------------------------------------------ */

struct resume_post {
	struct worker_post post;
	unsigned slot;
};

/* resume_here - the items this worker parked for slot, back to their
 * domains now. */
static void resume_here(struct worker *w, unsigned slot)
{
	struct delivery *dl = delivery_of(w);
	size_t n = 0, back = 0;

	if (dl == NULL)
		return;
	struct qitem **take = xcalloc(dl->heap_len + 1, sizeof(*take));
	for (size_t i = 0; i < dl->heap_len; i++) {
		struct qitem *it = dl->heap[i];
		if (it->parked && it->d != NULL && it->d->suspended_until_ms <= w->now_ms &&
		    domain_site(dl, it->d, NULL) == (int)slot)
			take[n++] = it;
	}
	for (size_t i = 0; i < n; i++) {
		heap_remove(dl, take[i]);
		item_enqueue(dl, take[i]);
		back++;
	}
	free(take);
	if (back > 0)
		log_info("shaping_resumed", "site=%s items=%zu", shaping_state_name(slot), back);
}

static void resume_arrived(struct worker *w, struct worker_post *p)
{
	struct resume_post *rp = (struct resume_post *)p;

	resume_here(w, rp->slot);
	free(rp);
}

static void resume_discard(struct worker_post *p)
{
	free(p);
}

void shaping_resume(struct worker *w, unsigned slot)
{
	for (unsigned i = 0; i <= w->count; i++) {
		if (&w->all[i] == w) {
			resume_here(w, slot);
			continue;
		}
		struct resume_post *rp = xcalloc(1, sizeof(*rp));
		rp->post.handle = resume_arrived;
		rp->post.discard = resume_discard;
		rp->slot = slot;
		worker_post(w, &w->all[i], &rp->post);
	}
}

void shaping_resume_posted(struct worker *all, unsigned count, unsigned slot)
{
	for (unsigned i = 0; i <= count; i++) {
		struct resume_post *rp = xcalloc(1, sizeof(*rp));
		rp->post.handle = resume_arrived;
		rp->post.discard = resume_discard;
		rp->slot = slot;
		worker_post(NULL, &all[i], &rp->post);
	}
}
