/*
 * local - delivery into local mailboxes, on the local worker only (it owns
 * every mailbox): each recipient's Maildir (mailbox.root) is written with
 * blocking file I/O, which only that thread may do, and the item completes
 * like any other (logged with mx=local, outcomes home, DSNs, retries in
 * the local worker's own heap).
 *
 * A crash between a Maildir write and the commit of its DELIVERED outcome
 * at home delivers the message again. local_run bounds that window: at
 * most mailbox.delivery_window delivered items wait for their outcomes to
 * be durable (the home acknowledges each after its batch commits,
 * outcome.c), and ready items wait in their domain's list meanwhile.
 */
#include "queue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "mailbox.h"
#include "maildir.h"

/* local_result - fill one recipient's result of a local delivery. */
static void local_result(struct rcpt_result *r, enum smtp_outcome outcome, int code,
			 const char *status, const char *text)
{
	rcpt_result_set(r, outcome, code, true, status, text);
}

/* local_deliver_one - write the message into the recipient's Maildir, with
 * Return-Path and Delivered-To prepended (RFC 5321 4.4). Blocks. */
static void local_deliver_one(struct delivery *dl, const struct qmsg *m, const char *body,
			      const struct qrcpt *rc, struct rcpt_result *res)
{
	const struct config *cfg = dl->w->cfg;
	char name[MAILBOX_NAME_MAX + 1];

	if (!mailbox_exists(cfg->users, rc->addr) || mailbox_name(rc->addr, name, sizeof(name)) < 0) {
		local_result(res, SMTP_OUTCOME_BOUNCED, 550, "5.1.1", "user unknown");
		return;
	}
	struct buf b;
	struct maildir_deliver_options opt = {
		.quota = (uint64_t)cfg->mailbox_quota, .hostname = cfg->hostname,
	};
	int err;
	buf_init(&b, m->body_len + 1024);     /* both paths are at most 256 octets */
	if (buf_append_printf(&b, "Return-Path: <%s>\r\nDelivered-To: %s\r\n", m->sender, rc->addr) < 0 ||
	    buf_append(&b, body, m->body_len) < 0)
		err = -ENOMEM;
	else
		err = maildir_deliver(cfg->mailbox_root, name, buf_data(&b), buf_len(&b), &opt, NULL, 0);
	buf_free(&b);
	if (err == 0) {
		local_result(res, SMTP_OUTCOME_DELIVERED, 250, "2.0.0", "delivered to maildir");
	} else if (err == -EDQUOT) {
		local_result(res, SMTP_OUTCOME_DEFERRED, 452, "4.2.2", "mailbox full");
	} else if (err == -EINVAL) {
		local_result(res, SMTP_OUTCOME_BOUNCED, 550, "5.1.1", "user unknown");
	} else {
		char text[REPLY_TEXT_MAX];
		snprintf(text, sizeof(text), "local delivery failed: %s", strerror(-err));
		log_error("local_delivery_failed", "id=%s mailbox=%s root=%s error=\"%s\"", m->queue_id,
			  name, cfg->mailbox_root, strerror(-err));
		local_result(res, SMTP_OUTCOME_DEFERRED, 451, "4.3.0", text);
	}
}

/* local_deliver_item - every recipient of the item, then the usual
 * completion (log lines, outcomes home, DSN, retries). */
void local_deliver_item(struct delivery *dl, struct qitem *it)
{
	struct rcpt_result *res = xmalloc(it->count * sizeof(*res));

	item_set_state(it, QSTATE_ACTIVE);
	for (uint32_t i = 0; i < it->count; i++)
		local_deliver_one(dl, it->msg, item_body(it), &it->msg->rcpts[it->idx[i]], &res[i]);
	item_complete(dl, it, res, "local", NULL, NULL);
	free(res);
}

void local_run(struct delivery *dl)
{
	struct worker *w = dl->w;
	unsigned window = (unsigned)w->cfg->mailbox_delivery_window;

	if (dl->stopping || w->stopping)
		return;    /* an outcome might not reach a home that has left: the spool keeps the item */
	while (dl->ready_total > 0 && dl->local_unjournaled < window && dl->domain_count > 0) {
		struct qdomain *d = dl->domain_list[dl->local_turn++ % dl->domain_count];
		struct qitem *it = domain_pop_ready(d);
		if (it != NULL)
			local_deliver_item(dl, it);
	}
	if (dl->ready_total > 0 && dl->local_unjournaled < window)
		w->wake_at_ms = w->now_ms;
}
