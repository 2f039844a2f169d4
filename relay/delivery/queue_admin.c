/*
 * queue_admin - the operator's queries and commands on the queue
 * (queue_query.h): list, show, summary, domains, flush, delete, bounce,
 * hold and release, one bounded step at a time on each worker.
 */
#include "queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commit.h"
#include "log.h"
#include "queue_query.h"

#define QUERY_STEP_UNITS 1024          /* items or domains visited per step */
#define QUERY_STEP_BYTES (16 * 1024)   /* rows per step, about */

static const char *const qstate_names[QSTATE_COUNT] = { "new", "ready", "deferred", "active", "held" };

/* item_next_wall_ms - when it is due, in wall-clock time; 0 when not in the
 * retry heap. */
static int64_t item_next_wall_ms(const struct delivery *dl, const struct queue_query *q,
				 const struct qitem *it)
{
	return it->state == QSTATE_RETRY ? q->now_wall_ms + (it->due_ms - dl->w->now_ms) : 0;
}

static bool query_matches(const struct queue_query *q, const struct qitem *it)
{
	if (q->queue_id[0] != '\0' && strcmp(it->msg->queue_id, q->queue_id) != 0)
		return false;
	if (q->deferred_only && it->state != QSTATE_RETRY)
		return false;
	return !q->held_only || it->state == QSTATE_HELD;
}

/* query_list_row - queue list: a row for the item. */
static void query_list_row(const struct delivery *dl, struct queue_query *q, const struct qitem *it)
{
	const char **rcpts = xmalloc(it->count * sizeof(*rcpts));

	for (uint32_t i = 0; i < it->count; i++)
		rcpts[i] = it->msg->rcpts[it->idx[i]].addr;
	queue_format_item(&q->out, q->json, &(struct queue_item_view){
		.queue_id = it->msg->queue_id, .sender = it->msg->sender, .domain = it->d->name,
		.sender_route = it->d->hop,
		.state = qstate_names[it->state], .arrival_ms = it->msg->arrival_ms,
		.size = it->msg->body_len, .rcpts = rcpts, .rcpt_count = it->count,
		.attempts = it->attempts, .next_ms = item_next_wall_ms(dl, q, it),
		.last_error = it->last_error,
	});
	free(rcpts);
}

/* query_show_item - queue show: the envelope (first time) and the item's
 * recipients into the message view. */
static void query_show_item(const struct delivery *dl, struct queue_query *q, const struct qitem *it)
{
	struct queue_message_view *m = &q->show;
	const struct qmsg *msg = it->msg;

	if (!m->found) {
		m->found = true;
		snprintf(m->queue_id, sizeof(m->queue_id), "%s", msg->queue_id);
		m->sender = xstrdup(msg->sender);
		m->envid = msg->envid ? xstrdup(msg->envid) : NULL;
		m->arrival_ms = msg->arrival_ms;
		m->size = msg->body_len;
		m->rcpt_count = msg->rcpt_count;
		m->rcpts = xcalloc(msg->rcpt_count, sizeof(*m->rcpts));
		for (size_t i = 0; i < msg->rcpt_count; i++)
			m->rcpts[i].addr = xstrdup(msg->rcpts[i].addr);
	}
	for (uint32_t i = 0; i < it->count && it->idx[i] < m->rcpt_count; i++) {
		struct queue_rcpt_view *r = &m->rcpts[it->idx[i]];
		r->state = qstate_names[it->state];
		r->attempts = it->attempts;
		r->next_ms = item_next_wall_ms(dl, q, it);
		free(r->last_error);
		r->last_error = it->last_error ? xstrdup(it->last_error) : NULL;
	}
}

/* query_show_spool - queue show on the message's home worker: the spool's
 * states, which say what happened to the recipients no longer queued. */
static void query_show_spool(struct worker *w, struct queue_query *q)
{
	size_t n;
	const struct spool_rcpt_state *st;

	if (w->role != WORKER_ROLE_SMTP || q->spool_states != NULL)
		return;
	st = spool_shard_states(commit_shard(w), q->queue_id, &n);
	if (st == NULL || n == 0)
		return;
	q->spool_states = xmalloc(n * sizeof(*st));
	memcpy(q->spool_states, st, n * sizeof(*st));
	q->spool_state_count = n;
}

/* query_summary_add - queue summary: count the item in the row being made
 * for its domain (the last row). */
static void query_summary_add(struct queue_query *q, const struct qitem *it)
{
	struct queue_summary_row *row = &q->rows[q->row_count - 1];
	int64_t age = q->now_wall_ms - it->msg->arrival_ms;

	row->total++;
	row->age[queue_age_bucket(age > 0 ? age : 0)]++;
}

/* query_summary_begin - a row for d; query_summary_end keeps it if any
 * item counted. */
static void query_summary_begin(struct queue_query *q, const struct qdomain *d)
{
	if (q->row_count == q->row_cap) {
		q->row_cap = q->row_cap ? q->row_cap * 2 : 64;
		q->rows = xreallocarray(q->rows, q->row_cap, sizeof(*q->rows));
	}
	memset(&q->rows[q->row_count], 0, sizeof(q->rows[0]));
	if (d->hop != NULL || d->pool != NULL) {
		/* A sender route's or a sender's pool's queue for the domain:
		 * a row of its own. */
		size_t n = strlen(d->name) + strlen(" via ") + (d->hop != NULL ? strlen(d->hop) : 0) +
			   strlen(" pool ") + (d->pool != NULL ? strlen(d->pool) : 0) + 1;
		q->rows[q->row_count].domain = xmalloc(n);
		snprintf(q->rows[q->row_count].domain, n, "%s%s%s%s%s", d->name, d->hop != NULL ? " via " : "",
			 d->hop != NULL ? d->hop : "", d->pool != NULL ? " pool " : "", d->pool != NULL ? d->pool : "");
	} else {
		q->rows[q->row_count].domain = xstrdup(d->name);
	}
	q->row_count++;
}

static void query_summary_end(struct queue_query *q)
{
	if (q->row_count > 0 && q->rows[q->row_count - 1].total == 0)
		free(q->rows[--q->row_count].domain);
	/* d's row is final (d lives on this worker alone): with --top the
	 * summary keeps at most 2 x top rows, whatever the domain count. */
	if (q->top > 0 && q->row_count >= 2 * (size_t)q->top)
		queue_summary_keep_top(q->rows, &q->row_count, q->top, &q->others);
}

/* query_domain_row - domains: d's line, when it has anything to say. */
static void query_domain_row(const struct delivery *dl, struct queue_query *q, const struct qdomain *d)
{
	bool blocked = retry_domain_blocked(&d->backoff, dl->w->now_ms);

	if (d->items.next == &d->items && d->active == 0 && d->backoff.failures == 0)
		return;
	q->matched++;
	queue_format_domain(&q->out, q->json, &(struct queue_domain_view){
		.domain = d->name, .sender_route = d->hop,
		.ready = d->by_state[QSTATE_READY], .deferred = d->by_state[QSTATE_RETRY],
		.active = d->by_state[QSTATE_ACTIVE], .held = d->by_state[QSTATE_HELD],
		.connections = d->active, .window = d->window, .failures = d->backoff.failures,
		.backoff_until_ms = blocked ? q->now_wall_ms + (d->backoff.until_ms - dl->w->now_ms) : 0,
	});
}

/* query_address_rows - addresses: a row per MX address this worker holds. */
static void query_address_rows(const struct delivery *dl, struct queue_query *q)
{
	for (size_t i = 0; i < dl->dest_buckets; i++) {
		for (const struct qdest *e = dl->dests[i]; e != NULL; e = e->hash_next) {
			unsigned idle = mta_session_count_idle(e);
			bool resting = dest_backed_off(dl, e);
			q->matched++;
			queue_format_address(&q->out, q->json, &(struct queue_address_view){
				.address = e->text, .worker = dl->w->id, .connections = e->active,
				.idle = idle, .window = e->window, .limit = dl->max_per_address,
				.waiting = e->waiting, .failures = e->failures,
				.backoff_until_ms = resting ? q->now_wall_ms + (e->until_ms - dl->w->now_ms) : 0,
			});
		}
	}
}

/* item_unschedule - take a waiting item out of the ready list or the
 * retry heap; false for one that is not waiting (active, held). */
static bool item_unschedule(struct delivery *dl, struct qitem *it)
{
	if (it->state == QSTATE_READY)
		domain_remove_ready(it->d, it);
	else if (it->state == QSTATE_RETRY)
		heap_remove(dl, it);
	else
		return false;
	return true;
}

/* query_change - flush, delete, bounce, hold or release one item; true
 * when something changed. The item may be gone on return. */
static bool query_change(struct delivery *dl, struct queue_query *q, struct qitem *it)
{
	enum qdoom doom = q->action == QUEUE_DELETE ? QDOOM_DELETE :
			  q->action == QUEUE_BOUNCE ? QDOOM_BOUNCE : QDOOM_HOLD;

	switch (q->action) {
	case QUEUE_FLUSH:
		if (it->state != QSTATE_RETRY)
			return false;
		heap_remove(dl, it);
		retry_domain_succeeded(&it->d->backoff);
		item_enqueue(dl, it);
		return true;
	case QUEUE_DELETE:
	case QUEUE_BOUNCE:
		if (it->state == QSTATE_ACTIVE) {
			it->doom = (uint8_t)doom;     /* after this attempt */
			return true;
		}
		if (it->state != QSTATE_HELD && !item_unschedule(dl, it))
			return false;
		item_admin_finish(dl, it, doom);
		return true;
	case QUEUE_HOLD:
		if (it->state == QSTATE_ACTIVE) {
			it->doom = QDOOM_HOLD;
			return true;
		}
		if (!item_unschedule(dl, it))
			return false;
		item_hold(dl, it);
		return true;
	case QUEUE_RELEASE:
		if (it->state == QSTATE_ACTIVE && it->doom == QDOOM_HOLD) {
			it->doom = QDOOM_NONE;
			return true;
		}
		if (it->state != QSTATE_HELD)
			return false;
		item_set_state(it, QSTATE_NEW);
		item_journal_state(dl, it, SPOOL_STATUS_DEFERRED);
		item_enqueue(dl, it);
		return true;
	default:
		return false;
	}
}

/* query_item - one matching item. */
static void query_item(struct delivery *dl, struct queue_query *q, struct qitem *it)
{
	q->matched++;
	switch (q->action) {
	case QUEUE_LIST:
		query_list_row(dl, q, it);
		break;
	case QUEUE_SHOW:
		query_show_item(dl, q, it);
		break;
	case QUEUE_SUMMARY:
		query_summary_add(q, it);
		break;
	default:
		q->changed += query_change(dl, q, it);
		break;
	}
}

/* query_walk_domain - walk d's items from the marker, within the budget;
 * true when d is done (the marker is gone). */
static bool query_walk_domain(struct delivery *dl, struct queue_query *q, struct qdomain *d, size_t *units)
{
	struct qlink *marker = q->marker;

	if (marker == NULL) {
		marker = xmalloc(sizeof(*marker));
		marker->marker = true;
		link_insert_after(&d->items, marker);
		q->marker = marker;
		if (q->action == QUEUE_SUMMARY)
			query_summary_begin(q, d);
	}
	while (marker->next != &d->items) {
		if (*units >= QUERY_STEP_UNITS || buf_len(&q->out) >= QUERY_STEP_BYTES)
			return false;
		struct qlink *l = marker->next;
		/* The marker steps past l first: whatever happens to l (freed,
		 * requeued), the walk goes on from the marker. */
		link_remove(marker);
		link_insert_after(l, marker);
		if (l->marker)
			continue;           /* another query's cursor */
		(*units)++;
		struct qitem *it = container_of(l, struct qitem, link);
		if (query_matches(q, it))
			query_item(dl, q, it);
	}
	link_remove(marker);
	free(marker);
	q->marker = NULL;
	if (q->action == QUEUE_SUMMARY)
		query_summary_end(q);
	return true;
}

/* query_domain_from - the index of the next domain the query walks, from
 * index from on: every one, or with domain=D each queue of D (its own and
 * one per sender route's hop); dl->domain_count when none is left. */
static size_t query_domain_from(const struct delivery *dl, const struct queue_query *q, size_t from)
{
	if (q->domain[0] == '\0')
		return from < dl->domain_count ? from : dl->domain_count;
	return domain_index_named(dl, q->domain, from);
}

void delivery_query_step(struct worker *w, struct queue_query *q)
{
	struct delivery *dl = delivery_of(w);
	size_t units = 0;

	if (q->cancel || dl == NULL || dl->stopping) {
		if (q->marker != NULL) {
			link_remove(q->marker);
			free(q->marker);
			q->marker = NULL;
		}
		if (dl != NULL && q->at_started)
			dl->walks--;
		q->at_done = true;
		return;
	}
	if (!q->at_started) {
		q->at_started = true;
		dl->walks++;
		q->domain_index = 0;
		if (q->action == QUEUE_SHOW)
			query_show_spool(w, q);
		q->domain_index = query_domain_from(dl, q, 0);
		if (q->action == QUEUE_ADDRESSES) {
			/* A worker holds a few MX addresses, not millions of
			 * items: one step lists them all. */
			query_address_rows(dl, q);
			q->domain_index = dl->domain_count;
		}
	}
	while (q->domain_index < dl->domain_count && units < QUERY_STEP_UNITS &&
	       buf_len(&q->out) < QUERY_STEP_BYTES) {
		struct qdomain *d = dl->domain_list[q->domain_index];
		units++;
		if (q->action != QUEUE_DOMAINS && !query_walk_domain(dl, q, d, &units))
			return;             /* budget spent inside d */
		if (q->action == QUEUE_DOMAINS)
			query_domain_row(dl, q, d);
		q->domain_index = query_domain_from(dl, q, q->domain_index + 1);
	}
	q->at_done = q->domain_index >= dl->domain_count;
	if (q->at_done)
		dl->walks--;
}
