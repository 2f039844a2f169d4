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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "shaping.h"
#include "shaping_state.h"
#include "suppress.h"

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
}

/* domain_site - the state slot of d's site (by its route's MX host names),
 * or -1 when it has none (or no route yet). */
static int domain_site(const struct delivery *dl, const struct qdomain *d, const char **name)
{
	const struct shaping_rules *rules = dl->w->cfg->shaping;
	const char *names[SITE_MX_MAX];

	if (rules == NULL || d == NULL || d->route == NULL || shaping_site_count(rules) == 0)
		return -1;
	size_t n = d->route->host_count < SITE_MX_MAX ? d->route->host_count : SITE_MX_MAX;
	for (size_t i = 0; i < n; i++)
		names[i] = d->route->hosts[i].name;
	int idx = shaping_site_of(rules, names, n);
	if (idx < 0)
		return -1;
	const struct shaping_site *site = shaping_site_at(rules, (size_t)idx);
	if (name != NULL)
		*name = site->name;
	return (int)site->slot;
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

/* suspend - the rule's suspension of the site (or the domain), unless one
 * is already running: a storm of replies suspends once. */
static void suspend(struct delivery *dl, struct qdomain *d, const struct shaping_response *hit,
		    const struct rcpt_result *r)
{
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
