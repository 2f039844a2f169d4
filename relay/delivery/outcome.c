/*
 * outcome - the end of an attempt at an item: one log line per recipient,
 * final outcomes posted to the message's home worker and journaled there
 * (a DSN for the bounced ones spooled in the same batch), deferred
 * recipients parked in the retry heap; see queue.h.
 */
#include "queue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounce.h"
#include "buf.h"
#include "commit.h"
#include "delivery_log.h"
#include "log.h"
#include "dane_delivery.h"
#include "mta_sts_delivery.h"
#include "mime_downgrade.h"
#include "scheduler.h"
#include "suppress.h"

struct outcome_entry {
	uint32_t idx;
	uint8_t status;            /* enum spool_status */
	uint32_t attempts;
	int64_t next_attempt;      /* unix s, for DEFERRED */
};

/* Outcomes of an item (final ones, or deferrals with their retry state),
 * posted home to be journaled. */
struct qoutcome {
	struct worker_post post;
	struct qmsg *msg;          /* holds one reference */
	char *dsn;                 /* a DSN to spool and send, or NULL */
	size_t dsn_len;
	bool dsn_smtputf8;         /* it has UTF-8 headers (RFC 6533) */
	char *reply;               /* a deferral's last reply, or NULL */
	struct worker *ack_to;     /* the local worker, told when these are durable; or NULL */
	struct commit_waiter waiter;       /* at home, for ack_to */
	uint32_t count;
	struct outcome_entry e[];
};

/* A DSN waiting for its batch; then it is delivered like any message. */
struct dsn_commit {
	struct commit_waiter waiter;
	struct worker *w;
	char queue_id[32];
	char *recipient;
	char *body;
	size_t body_len;
	bool smtputf8;
};

static void dsn_spool_message(struct dsn_commit *dc, struct spool_message *msg, struct spool_rcpt *rcpt)
{
	memset(msg, 0, sizeof(*msg));
	memset(rcpt, 0, sizeof(*rcpt));
	rcpt->address = dc->recipient;
	rcpt->notify = SPOOL_NOTIFY_NEVER;
	rcpt->orcpt = "";
	msg->queue_id = dc->queue_id;
	msg->arrival_usec = wall_ms() * 1000;
	msg->client_addr = "local";
	msg->helo = "";
	msg->auth_user = "";
	msg->sender = "";
	msg->envid = "";
	msg->rcpt_count = 1;
	msg->rcpts = rcpt;
	msg->body = (const uint8_t *)dc->body;
	msg->body_len = dc->body_len;
	/* An 8-bit original makes an 8-bit DSN; a global one needs SMTPUTF8. */
	msg->smtputf8 = dc->smtputf8;
	if (dc->smtputf8 || mime_has_8bit(dc->body, dc->body_len))
		msg->body_type = SPOOL_BODY_8BITMIME;
}

static void dsn_commit_done(struct commit_waiter *waiter, int result)
{
	struct dsn_commit *dc = container_of(waiter, struct dsn_commit, waiter);
	struct spool_message msg;
	struct spool_rcpt rcpt;

	dsn_spool_message(dc, &msg, &rcpt);
	if (result < 0) {
		/* Not durable: try again in the next batch rather than lose it. */
		if (commit_message(dc->w, &msg, &dc->waiter) == 0)
			return;
		log_error("dsn_lost", "id=%s to=<%s> error=\"%s\"", dc->queue_id, dc->recipient,
			  strerror(-result));
	} else {
		log_info("dsn_queued", "id=%s to=<%s> size=%zu", dc->queue_id, dc->recipient, dc->body_len);
		delivery_submit(dc->w, &msg, NULL);
	}
	free(dc->recipient);
	free(dc->body);
	free(dc);
}

static void outcome_discard(struct worker_post *p)
{
	struct qoutcome *o = (struct qoutcome *)p;

	qmsg_unref(o->msg);
	free(o->dsn);
	free(o->reply);
	free(o);
}

/* outcome_acked - on the local worker: a delivered item's outcomes are
 * durable, one more may go (local_run). */
static void outcome_acked(struct worker *w, struct worker_post *p)
{
	struct delivery *dl = delivery_of(w);

	if (dl != NULL && dl->local_unjournaled > 0)
		dl->local_unjournaled--;
	outcome_discard(p);
}

/* outcome_ack - at home: the batch holding o's outcomes ended (a failed
 * one puts them in the next batch: they are on their way all the same);
 * the object itself goes back to the local worker as the news. */
static void outcome_ack(struct commit_waiter *waiter, int result)
{
	struct qoutcome *o = container_of(waiter, struct qoutcome, waiter);
	struct worker *home = &o->ack_to->all[o->msg->home];

	(void)result;
	o->post.handle = outcome_acked;
	worker_post(home, o->ack_to, &o->post);
}

/* outcome_journal - at home: the bounce (if any) then the outcomes go into
 * the next batch, so a DSN is never lost to a crash between the two. */
static void outcome_journal(struct worker *w, struct qoutcome *o)
{
	if (o->dsn != NULL) {
		struct dsn_commit *dc = xmalloc(sizeof(*dc));
		struct spool_message msg;
		struct spool_rcpt rcpt;

		memset(dc, 0, sizeof(*dc));
		dc->w = w;
		dc->waiter.done = dsn_commit_done;
		spool_shard_new_queue_id(commit_shard(w), dc->queue_id);
		dc->recipient = xstrdup(o->msg->sender);
		dc->body = o->dsn;
		dc->body_len = o->dsn_len;
		dc->smtputf8 = o->dsn_smtputf8;
		o->dsn = NULL;
		dsn_spool_message(dc, &msg, &rcpt);
		int rc = commit_message(w, &msg, &dc->waiter);
		if (rc < 0) {
			log_error("dsn_lost", "id=%s to=<%s> error=\"%s\"", dc->queue_id, dc->recipient,
				  strerror(-rc));
			free(dc->recipient);
			free(dc->body);
			free(dc);
		}
	}
	bool waiting = false;
	for (uint32_t i = 0; i < o->count; i++) {
		struct spool_outcome out = {
			.queue_id = o->msg->queue_id,
			.rcpt_index = o->e[i].idx,
			.status = o->e[i].status,
			.attempts = o->e[i].attempts,
			.next_attempt = o->e[i].next_attempt,
			.reply = o->reply,
		};
		bool last = i + 1 == o->count && o->ack_to != NULL;
		if (last)
			o->waiter.done = outcome_ack;
		int rc = commit_outcome(w, &out, last ? &o->waiter : NULL);
		if (rc < 0)
			log_error("outcome_lost", "id=%s rcpt=%u error=\"%s\"", out.queue_id, out.rcpt_index,
				  strerror(-rc));
		else if (last)
			waiting = true;
	}
	if (waiting)
		return;       /* outcome_ack has it */
	if (o->ack_to != NULL)
		outcome_ack(&o->waiter, 0);
	else
		outcome_discard(&o->post);
}

static void outcome_arrived(struct worker *w, struct worker_post *p)
{
	outcome_journal(w, (struct qoutcome *)p);
}


/* outcome_new - room for count recipients' outcomes of it's message. */
static struct qoutcome *outcome_new(const struct qitem *it, uint32_t count)
{
	struct qoutcome *o = xmalloc(sizeof(*o) + count * sizeof(o->e[0]));

	memset(o, 0, sizeof(*o));
	o->post.handle = outcome_arrived;
	o->post.discard = outcome_discard;
	o->msg = it->msg;
	qmsg_ref(it->msg);
	return o;
}

/* outcome_send - hand outcomes to the message's home worker. */
static void outcome_send(struct delivery *dl, struct qoutcome *o)
{
	struct worker *w = dl->w;
	struct worker *home = &w->all[o->msg->home];

	if (home == w)
		outcome_journal(w, o);
	else
		worker_post(w, home, &o->post);
}

/* ---- outcomes of an attempt ------------------------------------------ */

/* item_journal_state - record a non-final state (held, or deferred again
 * after a release) of every recipient of it at home, so it survives a
 * restart. */
void item_journal_state(struct delivery *dl, struct qitem *it, enum spool_status status)
{
	struct qoutcome *o = outcome_new(it, it->count);

	for (uint32_t i = 0; i < it->count; i++)
		o->e[o->count++] = (struct outcome_entry){ .idx = it->idx[i], .status = (uint8_t)status,
							    .attempts = it->attempts };
	outcome_send(dl, o);
}

/* item_hold - the operator holds it: out of scheduling until released. */
void item_hold(struct delivery *dl, struct qitem *it)
{
	item_drop_body(it);
	item_set_state(it, QSTATE_HELD);
	item_journal_state(dl, it, SPOOL_STATUS_HELD);
}

/* rcpt_result_set - fill one recipient's result. */
void rcpt_result_set(struct rcpt_result *r, enum smtp_outcome outcome, int code, bool local,
		     const char *status, const char *text)
{
	*r = (struct rcpt_result){ .outcome = outcome, .code = code, .local = local };
	snprintf(r->status, sizeof(r->status), "%s", status);
	snprintf(r->text, sizeof(r->text), "%s", text);
}

static const char *outcome_name(const struct rcpt_result *r)
{
	return r->deleted ? "deleted" : r->outcome == SMTP_OUTCOME_DELIVERED ? "delivered" :
	       r->outcome == SMTP_OUTCOME_DEFERRED ? "deferred" : "bounced";
}

/* admin_result - what the operator's delete or bounce makes of a recipient. */
static void admin_result(struct rcpt_result *r, enum qdoom doom)
{
	bool del = doom == QDOOM_DELETE;

	*r = (struct rcpt_result){ .outcome = SMTP_OUTCOME_BOUNCED, .local = true, .deleted = del };
	snprintf(r->status, sizeof(r->status), "5.0.0");
	snprintf(r->text, sizeof(r->text), del ? "deleted by the operator" : "bounced by the operator");
}

/* result_category - the bounce category's name for the logs and DSNs;
 * NULL for a delivered recipient or one the operator deleted. */
static const char *result_category(const struct rcpt_result *r)
{
	if (r->outcome == SMTP_OUTCOME_DELIVERED || r->deleted)
		return NULL;
	return bounce_category_name((enum bounce_category)r->category);
}

/* result_classify - the category of a bounced or deferred result, from
 * the config's table (relay/mail/bounce_class.h), counted in the stats. */
static void result_classify(struct delivery *dl, struct rcpt_result *r)
{
	if (r->outcome == SMTP_OUTCOME_DELIVERED || r->deleted)
		return;
	enum bounce_category k = bounce_classify(dl->w->cfg->bounce_classifier, r->code, r->status, r->text);
	r->category = (uint8_t)k;
	if (r->outcome == SMTP_OUTCOME_BOUNCED)
		dl->stats.bounced_by_category[k]++;
	else
		dl->stats.deferred_by_category[k]++;
}

/* suppress_feed - a hard bounce from the receiver in one of
 * suppression.categories puts the recipient on the suppression list. */
static void suppress_feed(struct delivery *dl, const struct qitem *it, uint32_t idx,
			  const struct rcpt_result *r, struct suppress_batch **batch)
{
	const struct config *cfg = dl->w->cfg;

	if (r->outcome != SMTP_OUTCOME_BOUNCED || r->deleted || r->local || r->code < 500 ||
	    r->code > 599 || (cfg->suppression_categories & (1u << r->category)) == 0)
		return;
	char reason[2 * REPLY_TEXT_MAX];
	int64_t now = wall_ms() / 1000;
	const char *addr = it->msg->rcpts[idx].addr;

	snprintf(reason, sizeof(reason), "%d %s %s", r->code, r->status[0] ? r->status : "-", r->text);
	if (*batch == NULL)
		*batch = suppress_batch_new();
	suppress_batch_add(*batch, addr, now,
			   cfg->suppression_expire_ms > 0 ? now + cfg->suppression_expire_ms / 1000 : 0, reason);
	dl->stats.suppressed_added++;
	log_info("suppression_add", "id=%s rcpt=<%s> category=%s source=bounce", it->msg->queue_id, addr,
		 bounce_category_name((enum bounce_category)r->category));
}

/* log_delivery - one line per recipient per attempt; tls is what the
 * connection used ("TLSv1.2/<cipher>", "none"), NULL without one. */
static void log_delivery(struct delivery *dl, const struct qitem *it, uint32_t idx,
			 const struct rcpt_result *r, const char *mx, const char *ip, const char *tls)
{
	char reply[2 * REPLY_TEXT_MAX + 3];
	const struct qmsg *m = it->msg;
	const char *policy = NULL;

	if (dl->w->role != WORKER_ROLE_LOCAL) {     /* mailboxes: no TLS to speak of */
		const struct config *cfg = dl->w->cfg;
		enum config_tls_policy configured = config_domain_policy(cfg, m->rcpts[idx].domain)->tls;
		enum tls_applied applied = dane_delivery_applied(dl, it->d, mx,
			mta_sts_delivery_applied(dl, it->d, configured));
		if (m->requiretls) {
			/* RFC 8689: the message's own demand wins over any policy */
			applied = TLS_APPLIED_REQUIRE_TLS;
			if (r->outcome == SMTP_OUTCOME_DELIVERED)
				dl->stats.requiretls_delivered++;
			else if (r->outcome == SMTP_OUTCOME_BOUNCED &&
				 (strcmp(r->status, "5.7.10") == 0 || strcmp(r->status, "5.7.30") == 0))
				dl->stats.requiretls_refused++;
		}
		policy = tls_applied_name(applied);
		dl->stats.tls_policy[applied]++;
		if (m->tls_required_no)
			log_info("tls_required_no", "id=%s rcpt=<%s> domain=%s tls_policy=%s "
				 "note=\"TLS-Required: No (RFC 8689 5): MTA-STS and DANE not applied\"",
				 m->queue_id, m->rcpts[idx].addr, m->rcpts[idx].domain, policy);
		if (applied == TLS_APPLIED_MTA_STS && r->outcome == SMTP_OUTCOME_DEFERRED &&
		    strncmp(r->status, "4.7.", 4) == 0)
			dl->stats.mta_sts_refused++;
	}

	if (delivery_log_enabled()) {
		char msgid[256], dkim[512];
		/* An operator's verdict on a waiting item has no body at hand. */
		const char *body = item_body(it);
		size_t body_len = body != NULL ? m->body_len : 0;
		msgid[0] = dkim[0] = '\0';
		if (body != NULL) {
			delivery_log_message_id(body, body_len, msgid, sizeof(msgid));
			delivery_log_dkim(body, body_len, dkim, sizeof(dkim));
		}
		delivery_log_write(&(struct delivery_log_entry){
			.ts_ms = wall_ms(), .queue_id = m->queue_id, .message_id = msgid[0] ? msgid : NULL,
			.sender = m->sender,
			.recipient = m->rcpts[idx].addr, .domain = m->rcpts[idx].domain, .mx = mx, .ip = ip,
			.tls = tls, .tls_policy = policy, .status = outcome_name(r), .code = r->code, .enhanced_code = r->status[0] ? r->status : NULL,
			.reply = r->text, .delay_s = (double)(wall_ms() - m->arrival_ms) / 1000.0,
			.attempt = it->attempts + 1, .dkim = dkim[0] ? dkim : NULL,
			.category = result_category(r),
		});
		return;
	}
	log_quote(reply, sizeof(reply), r->text, strlen(r->text));
	log_info("delivery", "id=%s rcpt=<%s> domain=%s mx=%s ip=%s tls=%s tls_policy=%s status=%s code=%d dsn=%s category=%s delay=%.3f attempt=%u reply=%s",
		 m->queue_id, m->rcpts[idx].addr, m->rcpts[idx].domain, mx ? mx : "-", ip ? ip : "-",
		 tls ? tls : "-", policy ? policy : "-",
		 outcome_name(r), r->code, r->status[0] ? r->status : "-",
		 result_category(r) ? result_category(r) : "-",
		 (double)(wall_ms() - m->arrival_ms) / 1000.0, it->attempts + 1, reply);
}

/* dsn_action - the report a recipient's result calls for, if any: a
 * failure; a success (RFC 3461 5.2: "delivered" here, "relayed" to a next
 * hop without DSN, none when the next hop took NOTIFY along); with delay
 * set, a deferral. */
static bool dsn_action(const struct rcpt_result *res, bool delay, enum bounce_action *action)
{
	if (res->deleted)
		return false;
	if (delay) {
		*action = BOUNCE_DELAYED;
		return res->outcome == SMTP_OUTCOME_DEFERRED;
	}
	if (res->outcome == SMTP_OUTCOME_BOUNCED) {
		*action = BOUNCE_FAILED;
		return true;
	}
	if (res->outcome != SMTP_OUTCOME_DELIVERED || res->success == RCPT_SUCCESS_PASSED_ON)
		return false;
	*action = res->success == RCPT_SUCCESS_RELAYED ? BOUNCE_RELAYED : BOUNCE_DELIVERED;
	return true;
}

/* dsn_build - an RFC 3464 report for the recipients whose result and
 * NOTIFY want one (failures and successes in one report; with delay set,
 * the deferred ones as "delayed"); NULL when none does (or the sender is
 * <>). */
static char *dsn_build(struct delivery *dl, const struct qitem *it, const struct rcpt_result *res,
		       const char *mx, bool delay, size_t *len)
{
	const struct qmsg *m = it->msg;
	struct bounce_rcpt *br = xmalloc(it->count * sizeof(*br));
	size_t n = 0;
	int64_t now = wall_ms();
	enum bounce_action action;

	for (uint32_t i = 0; i < it->count; i++) {
		const struct qrcpt *r = &m->rcpts[it->idx[i]];
		if (!dsn_action(&res[i], delay, &action) || !bounce_wanted(m->sender, r->notify, action))
			continue;
		br[n++] = (struct bounce_rcpt){
			.addr = r->addr, .orcpt = r->orcpt, .action = action,
			.status = res[i].status[0] ? res[i].status : NULL,
			.remote_mta = res[i].local ? NULL : mx, .code = res[i].local ? 0 : res[i].code,
			.diagnostic = res[i].text, .last_attempt_ms = now,
			.retry_until_ms = delay && dl->w->cfg->queue_lifetime_ms > 0
				? m->arrival_ms + dl->w->cfg->queue_lifetime_ms : 0,
			.category = result_category(&res[i]),
		};
	}
	char *out = NULL;
	if (n > 0) {
		struct buf b;
		buf_init(&b, (size_t)dl->w->cfg->bounce_max_original_size + (1 << 20));
		struct bounce_input in = {
			.hostname = dl->w->cfg->hostname, .sender = m->sender, .envid = m->envid,
			.ret = m->ret == SPOOL_RET_HDRS ? SMTP_RET_HDRS : m->ret == SPOOL_RET_FULL ? SMTP_RET_FULL : SMTP_RET_NONE,
			.arrival_ms = m->arrival_ms, .now_ms = now, .unique = delivery_rng_next(dl),
			.rcpts = br, .nrcpts = n, .message = item_body(it) ? item_body(it) : "",
			.message_len = item_body(it) ? m->body_len : 0,
			.max_original = (size_t)dl->w->cfg->bounce_max_original_size,
			.smtputf8 = m->smtputf8,
			/* RFC 8689 5: redacted, so it needs no REQUIRETLS itself */
			.redacted = m->requiretls,
		};
		if (bounce_build(&in, &b) == 0) {
			*len = buf_len(&b);
			out = xmalloc(*len);
			memcpy(out, buf_data(&b), *len);
			dl->stats.dsn_sent++;
		}
		buf_free(&b);
	}
	free(br);
	return out;
}

/* expire_result - a deferral past the queue lifetime becomes a bounce. */
static void expire_result(struct rcpt_result *r)
{
	char text[REPLY_TEXT_MAX];

	/* 35 bytes of prefix + at most 164 of the old text fit. */
	snprintf(text, sizeof(text), "delivery time expired; last error: %.164s", r->text);
	memcpy(r->text, text, sizeof(text));
	snprintf(r->status, sizeof(r->status), "4.4.7");
	r->outcome = SMTP_OUTCOME_BOUNCED;
	r->local = true;
}

/* outcomes_home - the final results of res: journaled at the message's
 * home, with a DSN for those that bounced. */
static void outcomes_home(struct delivery *dl, const struct qitem *it, const struct rcpt_result *res,
			  uint32_t final, const char *mx)
{
	struct qoutcome *o = outcome_new(it, final);

	o->dsn = dsn_build(dl, it, res, mx, false, &o->dsn_len);
	o->dsn_smtputf8 = it->msg->smtputf8;
	if (dl->w->role == WORKER_ROLE_LOCAL) {
		/* Delivered into a mailbox: counts against the window until
		 * the outcomes are durable (local_run). */
		o->ack_to = dl->w;
		dl->local_unjournaled++;
	}
	for (uint32_t i = 0; i < it->count; i++) {
		if (res[i].outcome == SMTP_OUTCOME_DEFERRED)
			continue;
		o->e[o->count++] = (struct outcome_entry){
			.idx = it->idx[i],
			.status = (uint8_t)sched_final_status(res[i].outcome, res[i].deleted, res[i].local,
							      res[i].status),
			.attempts = it->attempts + 1,
		};
	}
	outcome_send(dl, o);
}

/* delay_notice - NOTIFY=DELAY (RFC 3461 4.1): once an item has waited
 * delivery.delay_warning_time since arrival, one "delayed" report for its
 * deferred recipients that want it, spooled at home like a bounce. The
 * mark is in memory: a restart may send one more. */
static void delay_notice(struct delivery *dl, struct qitem *it, const struct rcpt_result *res,
			 const char *mx)
{
	int64_t after = dl->w->cfg->delay_warning_time_ms;

	if (after <= 0 || it->delay_warned || wall_ms() - it->msg->arrival_ms < after)
		return;
	it->delay_warned = true;
	size_t len = 0;
	char *dsn = dsn_build(dl, it, res, mx, true, &len);
	if (dsn == NULL)
		return;
	struct qoutcome *o = outcome_new(it, 0);
	o->dsn = dsn;
	o->dsn_len = len;
	o->dsn_smtputf8 = it->msg->smtputf8;
	log_info("delay_notice", "id=%s after=%.0fs", it->msg->queue_id,
		 (double)(wall_ms() - it->msg->arrival_ms) / 1000.0);
	outcome_send(dl, o);
}

/* item_journal_deferral - the item is parked until due_ms (monotonic):
 * its recipients' attempts, next attempt and last reply go home too, so a
 * restart resumes the backoff instead of trying everything at once. The
 * next attempt is rounded up to the second: never earlier than planned. */
static void item_journal_deferral(struct delivery *dl, struct qitem *it, int64_t due_ms)
{
	struct qoutcome *o = outcome_new(it, it->count);
	int64_t at_ms = wall_ms() + (due_ms - dl->w->now_ms);
	int64_t next = (at_ms + 999) / 1000;

	if (it->last_error != NULL)
		o->reply = xstrndup(it->last_error, SPOOL_REPLY_MAX);
	for (uint32_t i = 0; i < it->count; i++)
		o->e[o->count++] = (struct outcome_entry){
			.idx = it->idx[i], .status = SPOOL_STATUS_DEFERRED,
			.attempts = it->attempts, .next_attempt = next,
		};
	outcome_send(dl, o);
}

/* item_keep_deferred - only the deferred recipients stay in the item, with
 * the last deferral's reply for the operator. */
static void item_keep_deferred(struct delivery *dl, struct qitem *it, const struct rcpt_result *res,
			       const struct rcpt_result *last_deferral)
{
	char reason[REPLY_TEXT_MAX + 32];
	uint32_t n = 0;

	snprintf(reason, sizeof(reason), "%d %s %s", last_deferral->code,
		 last_deferral->status[0] ? last_deferral->status : "-", last_deferral->text);
	reply_release(dl, it->last_error);
	it->last_error = reply_intern(dl, reason);
	for (uint32_t i = 0; i < it->count; i++)
		if (res[i].outcome == SMTP_OUTCOME_DEFERRED)
			it->idx[n++] = it->idx[i];
	it->count = n;
	it->attempts++;
}

/* item_complete - the results of one attempt at an item: journal the final
 * ones at home (with a DSN for bounces), park the deferred ones for a retry,
 * or bounce them when the queue lifetime is over. An operator's delete,
 * bounce or hold that waited for the attempt applies to what is left. */
void item_complete(struct delivery *dl, struct qitem *it, const struct rcpt_result *res_in,
		   const char *mx, const char *ip, const char *tls)
{
	struct rcpt_result *res = xmalloc(it->count * sizeof(*res));
	uint32_t deferred = 0;
	bool expired = retry_expired(&dl->retry, it->msg->arrival_ms, wall_ms());
	const struct rcpt_result *last_deferral = NULL;
	struct suppress_batch *suppress = NULL;

	memcpy(res, res_in, it->count * sizeof(*res));
	for (uint32_t i = 0; i < it->count; i++) {
		switch (sched_rcpt_rule(res[i].outcome, (enum qdoom)it->doom, expired)) {
		case SCHED_RCPT_ADMIN:
			admin_result(&res[i], (enum qdoom)it->doom);
			break;
		case SCHED_RCPT_EXPIRE:
			expire_result(&res[i]);
			break;
		case SCHED_RCPT_AS_IS:
			break;
		}
		shaping_on_result(dl, it, it->idx[i], &res[i], &suppress);
		result_classify(dl, &res[i]);
		suppress_feed(dl, it, it->idx[i], &res[i], &suppress);
		log_delivery(dl, it, it->idx[i], &res[i], mx, ip, tls);
		if (res[i].outcome == SMTP_OUTCOME_DEFERRED) {
			deferred++;
			last_deferral = &res[i];
		}
		dl->stats.delivered += res[i].outcome == SMTP_OUTCOME_DELIVERED;
		dl->stats.deferred += res[i].outcome == SMTP_OUTCOME_DEFERRED;
		dl->stats.bounced += res[i].outcome == SMTP_OUTCOME_BOUNCED && !res[i].deleted;
		dl->stats.deleted += res[i].deleted;
	}
	if (suppress != NULL)
		suppress_submit(dl->w, suppress, NULL, NULL);
	if (deferred < it->count)
		outcomes_home(dl, it, res, it->count - deferred, mx);
	if (deferred > 0 && sched_after_attempt(deferred, (enum qdoom)it->doom) == SCHED_AFTER_RETRY)
		delay_notice(dl, it, res, mx);
	if (deferred > 0)
		item_keep_deferred(dl, it, res, last_deferral);
	free(res);
	switch (sched_after_attempt(deferred, (enum qdoom)it->doom)) {
	case SCHED_AFTER_DONE:
		qitem_free(it);
		break;
	case SCHED_AFTER_HOLD:
		it->doom = QDOOM_NONE;
		item_hold(dl, it);
		break;
	case SCHED_AFTER_RETRY: {
		int64_t due = dl->w->now_ms +
			      retry_next_delay_ms(&dl->retry, it->attempts - 1, delivery_rng_next(dl));
		item_journal_deferral(dl, it, due);
		item_retry_at(dl, it, due);
		break;
	}
	}
}

/* item_fail_all - every recipient of the item gets the same result. */
void item_fail_all(struct delivery *dl, struct qitem *it, enum smtp_outcome outcome, int code,
		   const char *status, const char *text)
{
	struct rcpt_result *res = xmalloc(it->count * sizeof(*res));

	for (uint32_t i = 0; i < it->count; i++)
		rcpt_result_set(&res[i], outcome, code, true, status, text);
	item_complete(dl, it, res, NULL, NULL, NULL);
	free(res);
}

/* item_admin_finish - delete or bounce every recipient of a waiting or
 * held item now: logged, journaled at home, a DSN for a bounce. */
void item_admin_finish(struct delivery *dl, struct qitem *it, enum qdoom doom)
{
	struct rcpt_result *res = xmalloc(it->count * sizeof(*res));

	for (uint32_t i = 0; i < it->count; i++)
		admin_result(&res[i], doom);
	item_complete(dl, it, res, NULL, NULL, NULL);
	free(res);
}
