/*
 * smtp_server - the SMTP server on a worker: the glue between a
 * connection's bytes (conn), the pure session (smtp_session) and the
 * worker's group commit (commit).
 *
 * A session that completes a message is paused; the message goes into the
 * worker's current spool batch, and the session hears the batch's result
 * (250, or 452 4.3.1) when the linked write + fdatasync completes. Only
 * then is its remaining pipelined input fed again, so replies stay in
 * order. Accepted messages are handed to the delivery engine before the
 * 250 goes out.
 *
 * Timers: the idle timer (conn) restarts on every byte; the phase timer
 * restarts when the session answers something (a command completed), with
 * the command or data duration, so a client trickling bytes cannot hold a
 * command open for longer than smtp.command_timeout.
 */
#include "smtp_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commit.h"
#include "delivery.h"
#include "log.h"
#include "mailbox.h"
#include "netaddr.h"
#include "smtp_session.h"

/* Output queued in the connection beyond which input pauses until the
 * client reads its replies (a client that never reads cannot grow us). */
#define SMTP_OUTPUT_BACKLOG_MAX (256 * 1024)

struct smtp_conn {
	struct conn *conn;
	struct smtp_session *session;
	struct commit_waiter waiter;
	bool committing;
	bool closed;                       /* conn gone while committing */
	bool paused_for_output;
	enum smtp_timeout_class timer_class;
};

struct smtp_server_worker {
	struct spool_rcpt *rcpts;          /* scratch for building records */
	size_t rcpt_cap;
	char (*orcpts)[SMTP_ORCPT_TYPE_MAX + 2 + 3 * SMTP_ORCPT_MAX + 1];   /* "type;xtext" */
	uint64_t messages, rejected_commits;
};

static bool smtp_is_local_domain(void *ctx, const char *domain)
{
	struct worker *w = ctx;
	return config_is_local_domain(w->cfg, domain);
}

/* smtp_local_rcpt_exists - a local recipient has a mailbox; <postmaster>
 * without a domain is always accepted (RFC 5321 4.5.1). */
static bool smtp_local_rcpt_exists(void *ctx, const char *mailbox)
{
	struct worker *w = ctx;
	return strchr(mailbox, '@') == NULL || mailbox_exists(w->cfg->users, mailbox);
}

static void smtp_new_queue_id(void *ctx, char out[32])
{
	struct worker *w = ctx;
	spool_shard_new_queue_id(commit_shard(w), out);
}

static void smtp_arm_phase_timer(struct smtp_conn *sc)
{
	enum smtp_timeout_class cls = smtp_session_timeout_class(sc->session);

	sc->timer_class = cls;
	if (cls == SMTP_TIMEOUT_NONE)
		worker_timer_disarm(&sc->conn->phase_timer);
	else
		conn_set_phase_timer(sc->conn, cls == SMTP_TIMEOUT_DATA ? WORKER_TIMER_SMTP_DATA
								  : WORKER_TIMER_SMTP_COMMAND);
}

static void smtp_commit_start(struct smtp_conn *sc);
static void smtp_shutdown(struct conn *c);

/* smtp_pump - move replies to the connection and act on what the session
 * wants next. */
static void smtp_pump(struct smtp_conn *sc)
{
	struct conn *c = sc->conn;
	size_t len;
	const char *out = smtp_session_output(sc->session, &len);

	if (len > 0) {
		conn_write(c, out, len);
		smtp_session_output_consumed(sc->session, len);
		smtp_arm_phase_timer(sc);
	}
	switch (smtp_session_want(sc->session)) {
	case SMTP_WANT_COMMIT:
		if (!sc->committing)
			smtp_commit_start(sc);
		break;
	case SMTP_WANT_CLOSE:
		/* CLOSING has no phase timer of its own: this one bounds the
		 * flush of the goodbye (see smtp_timeout). Armed first: the
		 * close may be at once (and disarms it). */
		conn_set_phase_timer(c, WORKER_TIMER_SMTP_COMMAND);
		conn_close_after_flush(c);
		break;
	case SMTP_WANT_READ:
	case SMTP_WANT_FLUSH:
		break;
	}
	if (!c->closing && !sc->committing &&
	    c->out[0].len + c->out[1].len > SMTP_OUTPUT_BACKLOG_MAX) {
		sc->paused_for_output = true;
		conn_pause_input(c);
	}
}

/* smtp_spool_message - the session's message as a spool record. */
static void smtp_spool_message(struct worker *w, const struct smtp_message *m,
			       struct spool_message *msg)
{
	struct smtp_server_worker *sw = w->smtp;
	struct timespec now;

	if (m->recipient_count > sw->rcpt_cap) {
		sw->rcpt_cap = m->recipient_count;
		sw->rcpts = realloc(sw->rcpts, sw->rcpt_cap * sizeof(*sw->rcpts));
		sw->orcpts = realloc(sw->orcpts, sw->rcpt_cap * sizeof(*sw->orcpts));
		if (sw->rcpts == NULL || sw->orcpts == NULL)
			log_fatal("out of memory");
	}
	for (size_t i = 0; i < m->recipient_count; i++) {
		const struct smtp_recipient *r = &m->recipients[i];
		char *orcpt = sw->orcpts[i];
		orcpt[0] = '\0';
		if (r->orcpt != NULL && r->orcpt_type != NULL) {
			/* Stored as received: "type;xtext" (RFC 3461 4.2). */
			size_t n = (size_t)snprintf(orcpt, sizeof(sw->orcpts[i]), "%s;", r->orcpt_type);
			if (smtp_xtext_encode(r->orcpt, strlen(r->orcpt), orcpt + n,
					      sizeof(sw->orcpts[i]) - n) < 0)
				orcpt[0] = '\0';
		}
		sw->rcpts[i] = (struct spool_rcpt){ r->address, (uint8_t)r->notify, orcpt };
	}
	clock_gettime(CLOCK_REALTIME, &now);
	memset(msg, 0, sizeof(*msg));
	msg->queue_id = m->queue_id;
	msg->arrival_usec = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
	msg->client_addr = m->peer_address;
	msg->helo = m->helo;
	msg->auth_user = "";
	msg->sender = m->sender;
	msg->size_param = m->params.has_size ? m->params.size : 0;
	msg->body_type = m->params.body == SMTP_BODY_8BITMIME ? SPOOL_BODY_8BITMIME :
			 m->params.body == SMTP_BODY_BINARYMIME ? SPOOL_BODY_BINARYMIME :
			 m->params.body == SMTP_BODY_7BIT ? SPOOL_BODY_7BIT : SPOOL_BODY_NONE;
	msg->smtputf8 = m->params.smtputf8;
	msg->ret = m->params.ret == SMTP_RET_FULL ? SPOOL_RET_FULL :
		   m->params.ret == SMTP_RET_HDRS ? SPOOL_RET_HDRS : SPOOL_RET_NONE;
	msg->envid = m->params.has_envid ? m->params.envid : "";
	msg->rcpt_count = m->recipient_count;
	msg->rcpts = sw->rcpts;
	msg->body = (const uint8_t *)m->body;
	msg->body_len = m->body_len;
}

/* smtp_commit_finish - the batch holding our message is durable (0) or
 * failed; answer the client and read on. */
static void smtp_commit_finish(struct smtp_conn *sc, int result)
{
	struct conn *c = sc->conn;
	struct worker *w = c->w;
	const struct smtp_message *m = smtp_session_message(sc->session);

	sc->committing = false;
	if (result == 0) {
		w->smtp->messages++;
		struct spool_message msg;
		log_info("queued", "id=%s from=<%s> nrcpt=%zu size=%zu client=%s", m->queue_id,
			 m->sender, m->recipient_count, m->body_len, c->peer_text);
		smtp_spool_message(w, m, &msg);
		delivery_submit(w, &msg, NULL);
	} else {
		w->smtp->rejected_commits++;
		log_warn("queue_failed", "id=%s client=%s error=\"%s\"", m->queue_id, c->peer_text,
			 strerror(-result));
	}
	smtp_session_commit_done(sc->session, result);
	smtp_pump(sc);
	if (w->stopping)
		smtp_shutdown(c);   /* the transaction it was allowed to finish is done */
	else
		conn_resume_input(c);
}

static void smtp_commit_done(struct commit_waiter *waiter, int result)
{
	struct smtp_conn *sc = (struct smtp_conn *)((char *)waiter - offsetof(struct smtp_conn, waiter));
	struct conn *c = sc->conn;

	if (sc->closed) {
		/* The client went away meanwhile: nobody hears the reply, but
		 * a durable message is still ours to deliver. */
		if (result == 0) {
			struct spool_message msg;
			c->w->smtp->messages++;
			smtp_spool_message(c->w, smtp_session_message(sc->session), &msg);
			log_info("queued", "id=%s from=<%s> nrcpt=%zu size=%zu client=%s client_gone=1",
				 msg.queue_id, msg.sender, msg.rcpt_count, msg.body_len, c->peer_text);
			delivery_submit(c->w, &msg, NULL);
		}
		smtp_session_free(sc->session);
		free(sc);
		conn_release(c);
		return;
	}
	smtp_commit_finish(sc, result);
	/* The reference taken in smtp_commit_start; may free the conn. */
	conn_release(c);
}

/* smtp_commit_start - put the finished message into the next batch. */
static void smtp_commit_start(struct smtp_conn *sc)
{
	struct conn *c = sc->conn;
	struct spool_message msg;

	smtp_spool_message(c->w, smtp_session_message(sc->session), &msg);
	sc->committing = true;
	conn_pause_input(c);
	sc->waiter.done = smtp_commit_done;
	int rc = commit_message(c->w, &msg, &sc->waiter);
	if (rc < 0) {
		smtp_commit_finish(sc, rc);
		return;
	}
	conn_hold(c);
}

static void smtp_open(struct conn *c)
{
	struct smtp_conn *sc = calloc(1, sizeof(*sc));
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	char ip[64];

	if (sc == NULL)
		log_fatal("out of memory");
	struct smtp_session_config scfg = {
		.hostname = cfg->hostname,
		.line_max = (size_t)cfg->smtp_max_command_line,
		.data_line_max = (size_t)cfg->smtp_max_line,
		.message_size_max = (uint64_t)cfg->smtp_max_message_size,
		.recipients_max = (size_t)cfg->smtp_max_recipients,
		.errors_max = (unsigned)cfg->smtp_max_errors,
		.ctx = w,
		.is_local_domain = smtp_is_local_domain,
		.local_rcpt_exists = smtp_local_rcpt_exists,
		.new_queue_id = smtp_new_queue_id,
	};
	netaddr_format_ip((const struct sockaddr *)&c->peer, ip, sizeof(ip));
	struct smtp_peer peer = {
		.address = ip,
		.port = c->peer.ss_family == AF_INET6
			? ntohs(((struct sockaddr_in6 *)&c->peer)->sin6_port)
			: ntohs(((struct sockaddr_in *)&c->peer)->sin_port),
		.trusted = config_is_relay_client(cfg, (const struct sockaddr *)&c->peer),
	};
	sc->conn = c;
	sc->session = smtp_session_new(&scfg, &peer);
	c->proto = sc;
	log_debug("connect", "worker=%u client=%s trusted=%d", w->id, c->peer_text, peer.trusted);
	smtp_session_start(sc->session);
	smtp_pump(sc);
}

static size_t smtp_input(struct conn *c, const char *data, size_t len)
{
	struct smtp_conn *sc = c->proto;
	size_t n = smtp_session_feed(sc->session, data, len);

	smtp_pump(sc);
	return n;
}

static void smtp_drained(struct conn *c)
{
	struct smtp_conn *sc = c->proto;

	if (sc->paused_for_output) {
		sc->paused_for_output = false;
		conn_resume_input(c);
	}
}

static void smtp_timeout(struct conn *c, enum worker_timer_class cls)
{
	struct smtp_conn *sc = c->proto;

	if (sc->committing)
		return;      /* our own disk is slow, not the client */
	if (c->close_when_drained) {
		/* Our last reply has not gone out for a whole timeout: the
		 * client does not read. */
		conn_close(c);
		return;
	}
	log_info("timeout", "client=%s phase=%s", c->peer_text,
		 cls == WORKER_TIMER_SMTP_IDLE ? "idle" : cls == WORKER_TIMER_SMTP_DATA ? "data" : "command");
	smtp_session_timeout(sc->session);
	smtp_pump(sc);
	conn_close_after_flush(c);
}

/* smtp_shutdown - the worker is stopping: a session between transactions
 * is told so and closed; one inside DATA or waiting for its commit may
 * finish until the shutdown deadline. */
static void smtp_shutdown(struct conn *c)
{
	struct smtp_conn *sc = c->proto;
	static const char bye[] = "421 4.3.2 Service shutting down\r\n";

	if (sc->committing || sc->timer_class == SMTP_TIMEOUT_DATA)
		return;
	conn_write(c, bye, sizeof(bye) - 1);
	conn_close_after_flush(c);
}

static void smtp_close(struct conn *c)
{
	struct smtp_conn *sc = c->proto;

	if (sc == NULL)
		return;
	if (sc->committing) {
		/* The waiter is queued in the batch and holds c: free both in
		 * smtp_commit_done. */
		sc->closed = true;
		return;
	}
	smtp_session_free(sc->session);
	free(sc);
}

const struct conn_handler smtp_server_handler = {
	.name = "smtp",
	.open = smtp_open,
	.input = smtp_input,
	.timeout = smtp_timeout,
	.drained = smtp_drained,
	.shutdown = smtp_shutdown,
	.close = smtp_close,
};

void smtp_server_worker_init(struct worker *w)
{
	w->smtp = calloc(1, sizeof(*w->smtp));
	if (w->smtp == NULL)
		log_fatal("out of memory");
}

void smtp_server_worker_exit(struct worker *w)
{
	if (w->smtp == NULL)
		return;
	log_info("smtp_stats", "worker=%u messages=%llu commit_failures=%llu", w->id,
		 (unsigned long long)w->smtp->messages, (unsigned long long)w->smtp->rejected_commits);
	free(w->smtp->rcpts);
	free(w->smtp->orcpts);
	free(w->smtp);
	w->smtp = NULL;
}
