/*
 * scheduler - the outbound engine's decisions, pure; see scheduler.h.
 */
#include "scheduler.h"

#include <string.h>

struct sched_kick sched_domain_kick(const struct sched_domain_view *v)
{
	if (v->ready == 0)
		return (struct sched_kick){ SCHED_KICK_NOTHING, 0 };
	if (v->blocked)
		return (struct sched_kick){ SCHED_KICK_PARK, 0 };
	unsigned limit = v->window < v->max_connections ? v->window : v->max_connections;
	if (v->probing)
		limit = 1;
	/* One connection per ready item at most: the rest would idle. */
	if (v->active >= limit || v->ready <= v->active)
		return (struct sched_kick){ SCHED_KICK_NOTHING, 0 };
	size_t want = limit - v->active;
	if (want > v->ready - v->active)
		want = v->ready - v->active;
	return (struct sched_kick){ SCHED_KICK_OPEN, (unsigned)want };
}

unsigned sched_window_grow(unsigned window, unsigned max_connections)
{
	return window < max_connections ? window + 1 : window;
}

enum sched_ready_action sched_on_ready(bool stopping, unsigned transactions,
				       unsigned max_per_connection, bool work)
{
	if (stopping || transactions >= max_per_connection)
		return SCHED_READY_QUIT;
	return work ? SCHED_READY_BEGIN : SCHED_READY_IDLE;
}

bool sched_first_address(struct sched_cursor *c, const struct dns_route *route)
{
	while (c->host < route->host_count) {
		if (c->addr < route->hosts[c->host].addr_count)
			return true;
		c->host++;
		c->addr = 0;
		c->clear_only = false;
	}
	return false;
}

bool sched_next_address(struct sched_cursor *c, const struct dns_route *route, bool retry_clear)
{
	if (c->host >= route->host_count)
		return false;
	if (retry_clear) {
		c->clear_only = true;
		return true;
	}
	if (++c->addr >= route->hosts[c->host].addr_count) {
		c->host++;
		c->addr = 0;
		c->clear_only = false;
	}
	return sched_first_address(c, route);
}

enum sched_rcpt_rule sched_rcpt_rule(enum smtp_outcome outcome, enum qdoom doom, bool expired)
{
	if (outcome != SMTP_OUTCOME_DEFERRED)
		return SCHED_RCPT_AS_IS;
	if (doom == QDOOM_DELETE || doom == QDOOM_BOUNCE)
		return SCHED_RCPT_ADMIN;
	return expired ? SCHED_RCPT_EXPIRE : SCHED_RCPT_AS_IS;
}

enum spool_status sched_final_status(enum smtp_outcome outcome, bool deleted, bool local,
				     const char *status)
{
	if (outcome == SMTP_OUTCOME_DELIVERED)
		return SPOOL_STATUS_DELIVERED;
	if (deleted)
		return SPOOL_STATUS_DELETED;
	if (local && strcmp(status, "4.4.7") == 0)
		return SPOOL_STATUS_EXPIRED;
	return SPOOL_STATUS_BOUNCED;
}

enum sched_after sched_after_attempt(unsigned deferred, enum qdoom doom)
{
	if (deferred == 0)
		return SCHED_AFTER_DONE;
	return doom == QDOOM_HOLD ? SCHED_AFTER_HOLD : SCHED_AFTER_RETRY;
}

unsigned sched_share(unsigned limit, unsigned workers)
{
	unsigned share = workers > 0 ? limit / workers : limit;

	return share > 0 ? share : 1;
}

enum sched_dest_action sched_dest_admit(const struct sched_dest_view *v)
{
	if (v->backed_off)
		return SCHED_DEST_SKIP;
	unsigned limit = v->window < v->max_per_address ? v->window : v->max_per_address;
	if (v->active >= limit)
		return SCHED_DEST_WAIT;
	if (v->worker_active >= v->max_total)
		return SCHED_DEST_WAIT_ANY;
	return SCHED_DEST_OPEN;
}

enum sched_work sched_next_work(bool own, bool waiting)
{
	/* Others first: a domain with a thousand items must not keep the
	 * connection while one with a single item waits for it. */
	if (waiting)
		return SCHED_WORK_NEXT;
	return own ? SCHED_WORK_OWN : SCHED_WORK_NONE;
}

struct sched_dest_failure sched_dest_failed(unsigned window, unsigned failures, int64_t base_ms,
					    int64_t max_ms)
{
	struct sched_dest_failure f = { window / 2 > 0 ? window / 2 : 1, base_ms };

	for (unsigned i = 1; i < failures && f.backoff_ms < max_ms; i++)
		f.backoff_ms *= 2;
	if (f.backoff_ms > max_ms)
		f.backoff_ms = max_ms;
	return f;
}
