/*
 * http_inject - POST /api/inject/v1 to durable records; see http_inject.h.
 *
 * The path of an injected message is the SMTP path with another front:
 * the request is the envelope and the content is the DATA; a token is an
 * authenticated client, so the relay check is the one smtpd applies to
 * AUTH (any domain; a local domain only to an existing mailbox; no
 * recipient on the suppression list when suppression.check is injection
 * or both), and the
 * message is DKIM-signed like a trusted client's. Each message gets a
 * queue id from the worker's shard and goes into the worker's next
 * commit batch; the job answers when the last of its messages is
 * durable or failed, so a 200 means what SMTP's 250 means.
 */
#include "http_inject.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "commit.h"
#include "config.h"
#include "delivery.h"
#include "delivery_log.h"
#include "header_fields.h"
#include "http_worker.h"
#include "inject_message.h"
#include "header_fields.h"
#include "inject_request.h"
#include "log.h"
#include "mailbox.h"
#include "mime_build.h"
#include "shaping.h"
#include "smtp_address.h"
#include "smtp_dkim.h"
#include "suppress.h"
#include "xalloc.h"

/* Room for the Received header in front of the content. */
#define RECEIVED_MAX 1024

struct inject_msg {
	struct http_inject *job;
	char queue_id[32];
	struct buf body;                   /* Received + content */
	struct spool_rcpt *rcpts;
	size_t rcpt_count;
	struct smtp_dkim_job *dkim;        /* the signed copy, when signed */
	struct commit_waiter waiter;
	int result;
	char pool[64];                     /* shaping.pool_header's pool, "" none */
};

struct http_inject {
	struct worker *w;
	struct inject_request *q;
	char sender[SMTP_ADDRESS_PATH_MAX + 1];
	char (*addrs)[SMTP_ADDRESS_PATH_MAX + 1];   /* checked form, per recipient */
	bool *accepted;
	size_t accepted_count;
	char client[64], ip[64], token[80];
	int64_t arrival_usec;
	struct inject_msg *msgs;
	size_t msg_count;
	size_t pending;                    /* messages signing or committing */
	bool starting;                     /* inside http_inject_start */
	json_t *failed, *errors;
	int status;
	char *reply;
	void (*done)(struct http_inject *j, void *ctx);
	void *ctx;
};

/* inject_answer - the answer is {"error": why} with status. */
static void inject_answer_error(struct http_inject *j, int status, const char *why)
{
	json_t *o = json_pack("{s:s}", "error", why);

	j->status = status;
	free(j->reply);
	j->reply = json_dumps(o, JSON_COMPACT);
	json_decref(o);
}

/* fail_recipient - one recipient refused: named in the answer. */
static void fail_recipient(struct http_inject *j, const char *email, const char *why)
{
	char text[600];

	snprintf(text, sizeof(text), "%s: %s", email, why);
	json_array_append_new(j->failed, json_string(email));
	json_array_append_new(j->errors, json_string(text));
	j->w->http->stats.failed_recipients++;
}

/* check_recipient - RCPT TO's checks for an authenticated client. */
static bool check_recipient(struct http_inject *j, size_t i)
{
	const char *email = j->q->recipients[i].email;
	char path[SMTP_ADDRESS_PATH_MAX + 3];
	struct smtp_address a;

	if (strlen(email) > SMTP_ADDRESS_PATH_MAX) {
		fail_recipient(j, email, "address too long");
		return false;
	}
	snprintf(path, sizeof(path), "<%s>", email);
	if (smtp_address_parse(path, strlen(path), SMTP_ADDRESS_RCPT, &a) != 0 || a.is_null) {
		fail_recipient(j, email, "not a valid address");
		return false;
	}
	if (a.domain[0] != '\0' && config_is_local_domain(j->w->cfg, a.domain) &&
	    !mailbox_exists(j->w->cfg->users, a.mailbox)) {
		fail_recipient(j, email, "no such mailbox here");
		return false;
	}
	/* suppression.check "injection" (or "both"): as smtpd at RCPT. */
	const struct suppression_entry *hit = (j->w->cfg->suppression_check & CONFIG_SUPPRESS_INJECTION) != 0 ?
					      suppress_find(j->w, a.mailbox) : NULL;
	if (hit != NULL) {
		char why[SUPPRESSION_REASON_MAX + 64];
		snprintf(why, sizeof(why), "recipient address suppressed: %s",
			 hit->reason[0] != '\0' ? hit->reason : "on the suppression list");
		fail_recipient(j, email, why);
		delivery_log_suppressed(j->sender, a.mailbox, a.domain, hit->reason);
		log_info("suppressed", "rcpt=<%s> client=%s http_token=%s", a.mailbox, j->client, j->token);
		return false;
	}
	memcpy(j->addrs[i], a.mailbox, sizeof(a.mailbox));
	return true;
}

/* received_header - the trace field, as smtpd writes one. */
static void received_header(struct http_inject *j, struct inject_msg *m)
{
	char date[64];
	time_t now = (time_t)(j->arrival_usec / 1000000);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	buf_append_printf(&m->body, "Received: from [%s] (token %s)\r\n\tby %s (ringmail) with HTTP id %s;\r\n\t%s\r\n",
			  j->ip, j->token, j->w->cfg->hostname, m->queue_id, date);
}

/* format_to - the To: of a built message: its one recipient, or none. */
static void format_to(const struct http_inject *j, const struct inject_msg *m, struct buf *to)
{
	if (m->rcpt_count != 1) {
		buf_append_str(to, "undisclosed-recipients:;");
		return;
	}
	for (size_t i = 0; i < j->q->recipient_count; i++) {
		if (j->accepted[i] && strcmp(j->addrs[i], m->rcpts[0].address) == 0) {
			mime_format_address(j->q->recipients[i].name, j->addrs[i], to);
			return;
		}
	}
	buf_append_str(to, m->rcpts[0].address);
}

/* build_content - the message after its Received header: the raw content
 * (substituted, line ends made CRLF) or one built from the fields.
 * Returns 0 or an HTTP status (answer set). */
/* take_pool_header - shaping.pool_header out of the content; its pool
 * into m->pool (the API's clients are trusted, as relay_networks are).
 * -EINVAL, answered, when it names no pool. */
static int take_pool_header(struct http_inject *j, struct inject_msg *m, struct buf *content)
{
	const struct config *cfg = j->w->cfg;
	char value[256];
	int found = 0;

	m->pool[0] = '\0';
	if (cfg->shaping_pool_header[0] == '\0' || content->len == 0)
		return 0;
	content->len = header_fields_take(content->data + content->head, content->len, cfg->shaping_pool_header, value,
					  sizeof(value), &found);
	if (found == 0)
		return 0;
	if (found > 0 && strlen(value) < sizeof(m->pool) && shaping_pool_find(cfg->shaping, value) >= 0) {
		memcpy(m->pool, value, strlen(value) + 1);	/* fits: checked above */
		return 0;
	}
	char why[200];
	snprintf(why, sizeof(why), "%s: no egress pool named \"%.64s\"", cfg->shaping_pool_header,
		 found > 0 ? value : "(too long)");
	inject_answer_error(j, 400, why);
	return -EINVAL;
}

static int build_content(struct http_inject *j, struct inject_msg *m, const struct inject_recipient *r)
{
	const struct config *cfg = j->w->cfg;
	const struct inject_request *q = j->q;
	size_t own_count = r != NULL ? r->sub_count : 0;
	const struct inject_substitution *own = r != NULL ? r->subs : NULL;
	struct buf content;              /* capped at exactly the message limit */
	int rc;

	buf_init(&content, (size_t)cfg->smtp_max_message_size);
	if (q->raw) {
		struct buf text;
		buf_init(&text, (size_t)cfg->smtp_max_message_size);
		rc = inject_substitute(q->raw_content, q->raw_len, own, own_count, q->subs, q->sub_count, &text);
		if (rc == 0)
			rc = inject_message_normalize(buf_data(&text), buf_len(&text), (size_t)cfg->smtp_max_line, &content);
		buf_free(&text);
	} else {
		struct buf to;
		buf_init(&to, 64 * 1024);
		format_to(j, m, &to);
		buf_append(&to, "", 1);      /* a C string for mime_build */
		struct mime_build_params p = { cfg->hostname, j->arrival_usec / 1000000, m->queue_id, buf_data(&to) };
		rc = mime_build(&q->content, &p, own, own_count, q->subs, q->sub_count, &content);
		buf_free(&to);
	}
	if (rc == 0 && take_pool_header(j, m, &content) < 0) {
		buf_free(&content);
		return 400;
	}
	if (rc == 0 && buf_append(&m->body, buf_data(&content), buf_len(&content)) < 0)
		rc = -ENOBUFS;
	buf_free(&content);
	if (rc == -ENOBUFS)
		inject_answer_error(j, 413, "the message exceeds smtp.max_message_size");
	else if (rc == -E2BIG)
		inject_answer_error(j, 400, "content: a line is longer than smtp.max_line");
	else if (rc == -EBADMSG)
		inject_answer_error(j, 400, "content: not an RFC 5322 message (it must start with a header field)");
	else if (rc < 0)
		inject_answer_error(j, 400, "content: a substituted subject or header holds CR or LF");
	return rc == -ENOBUFS ? 413 : rc < 0 ? 400 : 0;
}

/* make_messages - the spool messages of the job: one for every accepted
 * recipient, or one per recipient when there are substitutions.
 * Returns 0 or an HTTP status (answer set). */
static int make_messages(struct http_inject *j)
{
	bool per_rcpt = inject_request_has_substitutions(j->q);
	size_t n = per_rcpt ? j->accepted_count : 1;
	size_t max = RECEIVED_MAX + (size_t)j->w->cfg->smtp_max_message_size;

	j->msgs = xcalloc(n, sizeof(*j->msgs));
	j->msg_count = n;
	size_t k = 0;
	for (size_t i = 0; i < j->q->recipient_count && k < n; i++) {
		if (!j->accepted[i])
			continue;
		struct inject_msg *m = &j->msgs[k];
		if (m->rcpts == NULL) {
			m->job = j;
			m->rcpts = xcalloc(per_rcpt ? 1 : j->accepted_count, sizeof(*m->rcpts));
			buf_init(&m->body, max);
			spool_shard_new_queue_id(commit_shard(j->w), m->queue_id);
		}
		m->rcpts[m->rcpt_count++] = (struct spool_rcpt){ j->addrs[i], 0, "" };
		if (per_rcpt)
			k++;
	}
	for (k = 0; k < n; k++) {
		struct inject_msg *m = &j->msgs[k];
		const struct inject_recipient *r = NULL;
		if (per_rcpt)
			for (size_t i = 0; i < j->q->recipient_count && r == NULL; i++)
				if (j->accepted[i] && j->addrs[i] == m->rcpts[0].address)
					r = &j->q->recipients[i];
		received_header(j, m);
		int status = build_content(j, m, r);
		if (status != 0)
			return status;
	}
	return 0;
}

/* spool_message_of - m as a record; the signed copy when there is one. */
static void spool_message_of(const struct http_inject *j, const struct inject_msg *m, struct spool_message *msg)
{
	memset(msg, 0, sizeof(*msg));
	msg->queue_id = m->queue_id;
	msg->arrival_usec = j->arrival_usec;
	msg->client_addr = j->client;
	msg->helo = "";
	msg->auth_user = j->token;
	msg->sender = j->sender;
	msg->body_type = SPOOL_BODY_NONE;
	msg->envid = "";
	msg->pool = m->pool;
	msg->rcpt_count = m->rcpt_count;
	msg->rcpts = m->rcpts;
	msg->body = (const uint8_t *)buf_data(&m->body);
	msg->body_len = buf_len(&m->body);
	if (m->dkim != NULL) {
		msg->body = (const uint8_t *)buf_data(&m->dkim->message);
		msg->body_len = buf_len(&m->dkim->message);
	}
	/* RFC 8689, as MAIL FROM ... REQUIRETLS and the header over SMTP */
	msg->requiretls = j->q->require_tls;
	msg->tls_required_no = !msg->requiretls &&
			       header_fields_tls_required_no((const char *)msg->body, msg->body_len);
}

/* inject_finish - every message is durable or failed: the answer. */
static void inject_finish(struct http_inject *j)
{
	size_t ok = 0, failed_msgs = 0;
	json_t *ids = json_array();

	for (size_t k = 0; k < j->msg_count; k++) {
		struct inject_msg *m = &j->msgs[k];
		if (m->result == 0) {
			ok += m->rcpt_count;
			json_array_append_new(ids, json_string(m->queue_id));
			continue;
		}
		failed_msgs++;
		for (size_t i = 0; i < m->rcpt_count; i++)
			fail_recipient(j, m->rcpts[i].address, "the spool could not store the message; try again");
	}
	j->status = ok > 0 ? 200 : failed_msgs > 0 ? 503 : 422;
	json_t *o = json_pack("{s:I,s:I,s:O,s:O,s:o}", "success_count", (json_int_t)ok,
			      "fail_count", (json_int_t)json_array_size(j->failed),
			      "failed_recipients", j->failed, "errors", j->errors, "queue_ids", ids);
	free(j->reply);
	j->reply = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!j->starting && j->done != NULL)
		j->done(j, j->ctx);
}

/* message_settled - one message is durable (0) or failed. */
static void message_settled(struct inject_msg *m, int result)
{
	struct http_inject *j = m->job;
	struct worker *w = j->w;

	m->result = result;
	if (result == 0) {
		struct spool_message msg;
		spool_message_of(j, m, &msg);
		w->http->stats.injected_messages++;
		w->http->stats.injected_recipients += m->rcpt_count;
		log_info("queued", "id=%s from=<%s> nrcpt=%zu size=%zu client=%s http_token=%s%s%s", m->queue_id,
			 j->sender, m->rcpt_count, msg.body_len, j->client, j->token,
			 m->dkim != NULL ? " dkim=" : "", m->dkim != NULL ? m->dkim->signed_text : "");
		delivery_submit(w, &msg, NULL);
	} else {
		w->http->stats.commit_failures++;
		log_warn("queue_failed", "id=%s client=%s error=\"%s\"", m->queue_id, j->client, strerror(-result));
	}
	m->dkim = smtp_dkim_job_free(m->dkim);
	buf_free(&m->body);
	if (--j->pending == 0)
		inject_finish(j);
}

static void message_committed(struct commit_waiter *waiter, int result)
{
	message_settled(container_of(waiter, struct inject_msg, waiter), result);
}

/* message_commit - into the worker's next batch. */
static void message_commit(struct inject_msg *m)
{
	struct spool_message msg;

	spool_message_of(m->job, m, &msg);
	m->waiter.done = message_committed;
	int rc = commit_message(m->job->w, &msg, &m->waiter);
	if (rc < 0)
		message_settled(m, rc);
}

/* message_signed - back from the DKIM helpers: commit the signed copy,
 * or the message as it is when nothing could be signed. */
static void message_signed(struct smtp_dkim_job *d)
{
	struct inject_msg *m = d->ctx;

	if (d->failures > 0)
		log_warn("dkim_failed", "id=%s client=%s failures=%u", m->queue_id, m->job->client, d->failures);
	if (d->result == 0)
		m->dkim = d;
	else
		smtp_dkim_job_free(d);
	message_commit(m);
}

/* message_start - sign (when dkim.sign has keys) then commit. */
static void message_start(struct http_inject *j, struct inject_msg *m)
{
	struct worker *w = j->w;
	struct helper_worker *helpers;

	j->pending++;
	if (!smtp_dkim_enabled(w->cfg) || (helpers = http_worker_helpers(w)) == NULL) {
		message_commit(m);
		return;
	}
	smtp_dkim_submit(helpers, smtp_dkim_job_new(w->cfg, buf_data(&m->body), buf_len(&m->body),
						    message_signed, m));
}

/* inject_check - the request as a whole: JSON, sender, recipients.
 * Returns 0 or an HTTP status (answer set). */
static int inject_check(struct http_inject *j, const char *body, size_t len)
{
	char why[512];
	char path[SMTP_ADDRESS_PATH_MAX + 3];
	struct smtp_address a;

	if (inject_request_parse(body, len, (size_t)j->w->cfg->smtp_max_recipients, &j->q, why, sizeof(why)) < 0) {
		inject_answer_error(j, 400, why);
		return 400;
	}
	if (strlen(j->q->envelope_sender) > SMTP_ADDRESS_PATH_MAX) {
		inject_answer_error(j, 400, "envelope_sender: address too long");
		return 400;
	}
	snprintf(path, sizeof(path), "<%s>", j->q->envelope_sender);
	if (smtp_address_parse(path, strlen(path), SMTP_ADDRESS_MAIL, &a) != 0) {
		inject_answer_error(j, 400, "envelope_sender: not a valid address");
		return 400;
	}
	memcpy(j->sender, a.mailbox, sizeof(j->sender));
	j->addrs = xcalloc(j->q->recipient_count, sizeof(*j->addrs));
	j->accepted = xcalloc(j->q->recipient_count, sizeof(*j->accepted));
	for (size_t i = 0; i < j->q->recipient_count; i++) {
		j->accepted[i] = check_recipient(j, i);
		j->accepted_count += j->accepted[i];
	}
	return 0;
}

/* inject_queue_all - every message on its way. The guard reference
 * keeps a message that fails at once from finishing the job while
 * others are still to start. */
static void inject_queue_all(struct http_inject *j)
{
	j->pending++;
	for (size_t k = 0; k < j->msg_count; k++)
		message_start(j, &j->msgs[k]);
	if (--j->pending == 0)
		inject_finish(j);
}

struct http_inject *http_inject_start(struct worker *w, const struct http_inject_client *who,
				      const char *body, size_t len,
				      void (*done)(struct http_inject *j, void *ctx), void *ctx)
{
	struct http_inject *j = xcalloc(1, sizeof(*j));
	struct timespec now;

	j->w = w;
	j->done = done;
	j->ctx = ctx;
	j->failed = json_array();
	j->errors = json_array();
	snprintf(j->client, sizeof(j->client), "%s", who->address);
	snprintf(j->ip, sizeof(j->ip), "%s", who->ip);
	snprintf(j->token, sizeof(j->token), "%s", who->token_name);
	clock_gettime(CLOCK_REALTIME, &now);
	j->arrival_usec = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
	/* Whatever finishes before we return answers through the return
	 * value, never through done. */
	j->starting = true;
	if (inject_check(j, body, len) == 0) {
		if (j->accepted_count == 0)
			inject_finish(j);      /* 422, with every recipient's reason */
		else if (make_messages(j) == 0)
			inject_queue_all(j);
	}
	j->starting = false;
	return j;
}

bool http_inject_pending(const struct http_inject *j)
{
	return j->pending > 0;
}

int http_inject_status(const struct http_inject *j)
{
	return j->status;
}

const char *http_inject_reply(const struct http_inject *j, size_t *len)
{
	*len = j->reply != NULL ? strlen(j->reply) : 0;
	return j->reply != NULL ? j->reply : "";
}

struct http_inject *http_inject_free(struct http_inject *j)
{
	if (j == NULL)
		return NULL;
	if (j->pending > 0)
		log_panic("http_inject_free: %zu messages still in flight", j->pending);
	for (size_t k = 0; k < j->msg_count; k++) {
		buf_free(&j->msgs[k].body);
		free(j->msgs[k].rcpts);
		smtp_dkim_job_free(j->msgs[k].dkim);
	}
	free(j->msgs);
	free(j->addrs);
	free(j->accepted);
	inject_request_free(j->q);
	json_decref(j->failed);
	json_decref(j->errors);
	free(j->reply);
	free(j);
	return NULL;
}
