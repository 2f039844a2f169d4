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
 *
 * STARTTLS: the session queues 220 and wants STARTTLS; the 220 goes out in
 * clear, conn_start_tls discards the buffered input (CVE-2011-0411) and
 * runs the handshake under the command timer (a client that stops
 * mid-handshake is closed when it fires); tls_ready then puts the session
 * back before EHLO. Each worker has its own tls_config (mbedTLS ECC
 * contexts are not thread-safe), all sharing one resumption state through
 * a root config; after a reload the first connection on each worker
 * builds a new one, and live sessions keep the old one by reference.
 *
 * DKIM: a message from a trusted client (relay_networks or AUTH) is
 * signed before its commit when dkim.sign has keys for its From domain:
 * the session is paused at end of data anyway, so the message goes to
 * the "dkim" helper pool (smtp_dkim.c) and the signed copy is what is
 * committed and handed to delivery. The worker never signs on its loop.
 *
 * Roles: smtps_server_handler (implicit TLS, RFC 8314) starts the handshake
 * at accept and queues the greeting only once it succeeds;
 * submission_server_handler sets auth_required (530 5.7.0 before AUTH).
 */
#include "smtp_server.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <unistd.h>
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
#include "ratelimit_shared.h"
#include "server_tls.h"
#include "shaping.h"
#include "smtp_auth.h"
#include "smtp_dkim.h"
#include "smtp_session.h"
#include "delivery_log.h"
#include "suppress.h"
#include "tls.h"
#include "xalloc.h"

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
	bool authenticating;               /* a password check is out */
	bool signing;                      /* the message is with the DKIM helpers */
	bool trusted;                      /* relay_networks: its mail is signed */
	struct smtp_dkim_job *dkim;        /* the signed message, until committed */
	bool implicit_tls;                 /* smtps: handshake before the greeting */
	bool started;                      /* the greeting is queued */
	enum smtp_timeout_class timer_class;
};

struct smtp_server_worker {
	struct spool_rcpt *rcpts;          /* scratch for building records */
	size_t rcpt_cap;
	char (*orcpts)[SMTP_ORCPT_TYPE_MAX + 2 + 3 * SMTP_ORCPT_MAX + 1];   /* "type;xtext" */
	uint64_t messages, rejected_commits;
	struct helper_worker *helpers;     /* made on the first AUTH or signature */
	uint64_t auth_ok, auth_failed;
	uint64_t dkim_signed[DKIM_ALGORITHM_COUNT];   /* signatures made, per algorithm */
	uint64_t dkim_failures;            /* signatures that could not be made */
	uint64_t rejected[SMTP_REJECT_COUNT];   /* every session's refusals (reject_counts) */
};

/* smtp_helpers - the worker's end of the helper pools, made on first use;
 * NULL (logged) without an eventfd. */
static struct helper_worker *smtp_helpers(struct worker *w)
{
	if (w->smtp->helpers == NULL)
		w->smtp->helpers = helper_worker_new(w);
	return w->smtp->helpers;
}

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

/* smtp_pool_known - the pool header names a pool of the shaping file. */
static bool smtp_pool_known(void *ctx, const char *pool)
{
	struct worker *w = ctx;
	return shaping_pool_find(w->cfg->shaping, pool) >= 0;
}

/* smtp_rcpt_suppressed - the reason of the recipient's suppression entry
 * in this worker's snapshot, or NULL. */
static const char *smtp_rcpt_suppressed(void *ctx, const char *mailbox)
{
	const struct suppression_entry *e = suppress_find(ctx, mailbox);
	const char *at = strrchr(mailbox, '@');

	/* The delivery log records the refusal: a "suppressed" webhook event. */
	if (e != NULL)
		delivery_log_suppressed(NULL, mailbox, at != NULL ? at + 1 : "", e->reason);
	return e != NULL ? e->reason : NULL;
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
static void smtp_sign_start(struct smtp_conn *sc);
static void smtp_shutdown(struct conn *c);
static void smtp_pump(struct smtp_conn *sc);
static void smtp_auth_start(struct smtp_conn *sc);

/* smtp_starttls - the 220 is queued in clear: switch the connection. */
static void smtp_starttls(struct smtp_conn *sc)
{
	struct conn *c = sc->conn;

	/* Without a session: the 220 is out already, nothing else can be
	 * said in clear. */
	if (!conn_start_server_tls(c, server_tls_config(c->w), WORKER_TIMER_SMTP_COMMAND))
		conn_close_after_flush(c);
}

static void smtp_auth_done(struct smtp_auth_request *r);

/* smtp_auth_refuse - answer an AUTH without asking the helper. */
static void smtp_auth_refuse(struct smtp_conn *sc, const char *user, const char *why, int result)
{
	char quser[300];

	log_info("auth", "client=%s user=%s result=failed reason=%s", sc->conn->peer_text,
		 log_quote(quser, sizeof(quser), user, strlen(user)), why);
	smtp_session_auth_done(sc->session, result);
	smtp_pump(sc);
}

/* The AUTH failure budgets of client addresses, one table for every
 * worker (smtp.auth_max_failures holds per address, not per worker):
 * lock-free slots, set up once; static, so never freed while a worker
 * might still read it. */
#define AUTH_LIMITER_SLOTS (1u << 16)
static _Atomic int64_t auth_limiter_slots[AUTH_LIMITER_SLOTS];
static struct ratelimit_shared auth_limiter_table;
static pthread_once_t auth_limiter_once = PTHREAD_ONCE_INIT;

static void auth_limiter_init(void)
{
	uint64_t seed;

	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
		seed = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
	ratelimit_shared_init(&auth_limiter_table, auth_limiter_slots, AUTH_LIMITER_SLOTS, seed, 64);
}

/* auth_limiter - the shared table (pthread_once costs one load once set). */
static struct ratelimit_shared *auth_limiter(void)
{
	pthread_once(&auth_limiter_once, auth_limiter_init);
	return &auth_limiter_table;
}

/* smtp_auth_start - the session has credentials: check the address's
 * failure budget, then hand them to the helper thread. Input waits. */
static void smtp_auth_start(struct smtp_conn *sc)
{
	struct conn *c = sc->conn;
	struct worker *w = c->w;
	struct smtp_server_worker *sw = w->smtp;
	const char *user, *password;

	if (!smtp_session_auth_credentials(sc->session, &user, &password))
		return;
	if (w->cfg->users == NULL || smtp_helpers(w) == NULL) {
		smtp_auth_refuse(sc, user, "unavailable", -EIO);
		return;
	}
	if (!ratelimit_shared_take(auth_limiter(), (const struct sockaddr *)&c->peer,
				   (unsigned)w->cfg->smtp_auth_max_failures,
				   w->cfg->smtp_auth_failure_window_ms, w->now_ms)) {
		smtp_auth_refuse(sc, user, "rate_limited", -EAGAIN);
		return;
	}
	struct smtp_auth_request *r = xcalloc(1, sizeof(*r));
	r->cfg = config_hold(w->cfg);
	r->db = r->cfg->users;
	snprintf(r->user, sizeof(r->user), "%s", user);
	snprintf(r->password, sizeof(r->password), "%s", password);
	r->done = smtp_auth_done;
	r->ctx = sc;
	sc->authenticating = true;
	conn_pause_input(c);
	conn_hold(c);
	smtp_auth_submit(sw->helpers, r);
}

/* smtp_auth_done - the helper's verdict, back on the worker. */
static void smtp_auth_done(struct smtp_auth_request *r)
{
	struct smtp_conn *sc = r->ctx;
	struct conn *c = sc->conn;
	struct worker *w = c->w;
	char quser[300];

	sc->authenticating = false;
	log_quote(quser, sizeof(quser), r->user, strlen(r->user));
	explicit_bzero(r->password, sizeof(r->password));
	bool ok = r->ok;
	config_release(r->cfg);
	free(r);
	if (ok) {
		w->smtp->auth_ok++;
		ratelimit_shared_forgive(auth_limiter(), (const struct sockaddr *)&c->peer);
	} else {
		w->smtp->auth_failed++;   /* the try was paid for in smtp_auth_start */
	}
	log_info("auth", "client=%s user=%s result=%s", c->peer_text, quser, ok ? "ok" : "failed");
	if (sc->closed) {
		smtp_session_free(sc->session);
		free(sc);
		conn_release(c);
		return;
	}
	smtp_session_auth_done(sc->session, ok ? 0 : -EACCES);
	smtp_pump(sc);
	if (w->stopping)
		smtp_shutdown(c);
	else
		conn_resume_input(c);
	conn_release(c);
}

/* smtp_tls_ready - the handshake is over: log it, and the session starts
 * again before EHLO (RFC 3207 4.2), or, on an implicit-TLS listener,
 * starts with its greeting (RFC 8314 3.3). */
static void smtp_tls_ready(struct conn *c, bool ok)
{
	struct smtp_conn *sc = c->proto;
	struct tls_info info;

	if (!ok) {
		log_info("tls_failed", "client=%s reason=\"%s\"", c->peer_text, tls_strerror(c->tls));
		conn_close(c);
		return;
	}
	tls_session_info(c->tls, &info);
	log_info("tls", "client=%s protocol=%s cipher=%s resumed=%d implicit=%d", c->peer_text,
		 info.protocol, info.cipher, info.resumed, sc->implicit_tls);
	smtp_session_set_tls(sc->session, true);
	if (!sc->started) {
		sc->started = true;
		smtp_session_start(sc->session);
	}
	smtp_arm_phase_timer(sc);
	smtp_pump(sc);
}

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
		if (!sc->committing && !sc->signing)
			smtp_sign_start(sc);
		break;
	case SMTP_WANT_CLOSE:
		/* CLOSING has no phase timer of its own: this one bounds the
		 * flush of the goodbye (see smtp_timeout). Armed first: the
		 * close may be at once (and disarms it). */
		conn_set_phase_timer(c, WORKER_TIMER_SMTP_COMMAND);
		conn_close_after_flush(c);
		break;
	case SMTP_WANT_STARTTLS:
		if (c->tls == NULL)
			smtp_starttls(sc);
		break;
	case SMTP_WANT_AUTH:
		if (!sc->authenticating)
			smtp_auth_start(sc);
		break;
	case SMTP_WANT_READ:
	case SMTP_WANT_FLUSH:
		break;
	}
	if (!c->closing && !sc->committing &&
	    conn_output_queued(c) > SMTP_OUTPUT_BACKLOG_MAX) {
		sc->paused_for_output = true;
		conn_pause_input(c);
	}
}

/* smtp_spool_message - the session's message as a spool record; the
 * signed copy instead of the received body when there is one. */
static void smtp_spool_message(struct worker *w, const struct smtp_message *m,
			       const struct smtp_dkim_job *dkim, struct spool_message *msg)
{
	struct smtp_server_worker *sw = w->smtp;
	struct timespec now;

	if (m->recipient_count > sw->rcpt_cap) {
		sw->rcpt_cap = m->recipient_count;
		sw->rcpts = xreallocarray(sw->rcpts, sw->rcpt_cap, sizeof(*sw->rcpts));
		sw->orcpts = xreallocarray(sw->orcpts, sw->rcpt_cap, sizeof(*sw->orcpts));
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
	msg->auth_user = m->auth_user;
	msg->sender = m->sender;
	msg->size_param = m->params.has_size ? m->params.size : 0;
	msg->body_type = m->params.body == SMTP_BODY_8BITMIME ? SPOOL_BODY_8BITMIME :
			 m->params.body == SMTP_BODY_BINARYMIME ? SPOOL_BODY_BINARYMIME :
			 m->params.body == SMTP_BODY_7BIT ? SPOOL_BODY_7BIT : SPOOL_BODY_NONE;
	msg->smtputf8 = m->params.smtputf8;
	msg->requiretls = m->params.requiretls;
	msg->tls_required_no = m->tls_required_no;
	msg->ret = m->params.ret == SMTP_RET_FULL ? SPOOL_RET_FULL :
		   m->params.ret == SMTP_RET_HDRS ? SPOOL_RET_HDRS : SPOOL_RET_NONE;
	msg->envid = m->params.has_envid ? m->params.envid : "";
	msg->pool = m->pool;
	msg->rcpt_count = m->recipient_count;
	msg->rcpts = sw->rcpts;
	msg->body = (const uint8_t *)m->body;
	msg->body_len = m->body_len;
	if (dkim != NULL) {
		msg->body = (const uint8_t *)buf_data(&dkim->message);
		msg->body_len = buf_len(&dkim->message);
	}
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
		smtp_spool_message(w, m, sc->dkim, &msg);
		log_info("queued", "id=%s from=<%s> nrcpt=%zu size=%zu client=%s%s%s%s%s", m->queue_id,
			 m->sender, m->recipient_count, msg.body_len, c->peer_text,
			 m->auth_user[0] ? " auth=" : "", m->auth_user,
			 sc->dkim != NULL ? " dkim=" : "", sc->dkim != NULL ? sc->dkim->signed_text : "");
		delivery_submit(w, &msg, NULL);
	} else {
		w->smtp->rejected_commits++;
		log_warn("queue_failed", "id=%s client=%s error=\"%s\"", m->queue_id, c->peer_text,
			 strerror(-result));
	}
	sc->dkim = smtp_dkim_job_free(sc->dkim);
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
			smtp_spool_message(c->w, smtp_session_message(sc->session), sc->dkim, &msg);
			log_info("queued", "id=%s from=<%s> nrcpt=%zu size=%zu client=%s client_gone=1%s%s",
				 msg.queue_id, msg.sender, msg.rcpt_count, msg.body_len, c->peer_text,
				 sc->dkim != NULL ? " dkim=" : "", sc->dkim != NULL ? sc->dkim->signed_text : "");
			delivery_submit(c->w, &msg, NULL);
		}
		smtp_dkim_job_free(sc->dkim);
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

	smtp_spool_message(c->w, smtp_session_message(sc->session), sc->dkim, &msg);
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

static void smtp_sign_done(struct smtp_dkim_job *j);

/* smtp_sign_start - end of data: a trusted client's message goes to the
 * DKIM helpers first when the config signs anything; every other message
 * straight into the next commit batch. Input stays paused meanwhile. */
static void smtp_sign_start(struct smtp_conn *sc)
{
	struct conn *c = sc->conn;
	struct worker *w = c->w;
	const struct smtp_message *m = smtp_session_message(sc->session);

	if (!smtp_dkim_enabled(w->cfg) || !(sc->trusted || m->auth_user[0] != '\0')) {
		smtp_commit_start(sc);
		return;
	}
	struct helper_worker *hw = smtp_helpers(w);
	if (hw == NULL) {
		w->smtp->dkim_failures++;
		log_warn("dkim_failed", "id=%s client=%s error=\"no helper queue\"", m->queue_id, c->peer_text);
		smtp_commit_start(sc);
		return;
	}
	sc->signing = true;
	conn_pause_input(c);
	conn_hold(c);
	smtp_dkim_submit(hw, smtp_dkim_job_new(w->cfg, m->body, m->body_len, smtp_sign_done, sc));
}

/* smtp_sign_done - the helper is done with the message: commit the
 * signed copy (or, when nothing could be signed, the message as it is). */
static void smtp_sign_done(struct smtp_dkim_job *j)
{
	struct smtp_conn *sc = j->ctx;
	struct conn *c = sc->conn;
	struct worker *w = c->w;

	sc->signing = false;
	for (int a = 0; a < DKIM_ALGORITHM_COUNT; a++)
		w->smtp->dkim_signed[a] += j->signed_count[a];
	w->smtp->dkim_failures += j->failures;
	if (j->failures > 0)
		log_warn("dkim_failed", "id=%s client=%s failures=%u signed=%s error=\"%s\"",
			 smtp_session_message(sc->session)->queue_id, c->peer_text, j->failures,
			 j->signed_text[0] ? j->signed_text : "none",
			 j->result < 0 ? strerror(-j->result) : "a key did not sign");
	if (sc->closed) {
		/* Gone before its 250: nothing was promised, nothing is kept. */
		smtp_dkim_job_free(j);
		smtp_session_free(sc->session);
		free(sc);
		conn_release(c);
		return;
	}
	if (j->result == 0)
		sc->dkim = j;
	else
		smtp_dkim_job_free(j);
	smtp_commit_start(sc);
	conn_release(c);
}

/* smtp_open_role - a new client on a listener of the given role: plain
 * SMTP greets at once; smtps first runs the handshake (under the command
 * timer), submission wants AUTH before MAIL. */
static void smtp_open_role(struct conn *c, enum config_listen_role role)
{
	struct smtp_conn *sc = xcalloc(1, sizeof(*sc));
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	char ip[64];

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
		.pool_header = cfg->shaping_pool_header,
		.pool_known = smtp_pool_known,
		.rcpt_suppressed = cfg->suppression_check & CONFIG_SUPPRESS_INJECTION ? smtp_rcpt_suppressed : NULL,
		.new_queue_id = smtp_new_queue_id,
		.reject_counts = w->smtp->rejected,
	};
	scfg.tls_available = server_tls_config(w) != NULL;
	scfg.auth_available = cfg->users != NULL;
	scfg.auth_plaintext = cfg->smtp_auth_plaintext;
	scfg.auth_required = role == CONFIG_ROLE_SUBMISSION;
	scfg.add_missing_headers = cfg->smtp_add_missing_headers;
	netaddr_format_ip((const struct sockaddr *)&c->peer, ip, sizeof(ip));
	struct smtp_peer peer = {
		.address = ip,
		.port = c->peer.ss_family == AF_INET6
			? ntohs(((struct sockaddr_in6 *)&c->peer)->sin6_port)
			: ntohs(((struct sockaddr_in *)&c->peer)->sin_port),
		.trusted = config_is_relay_client(cfg, (const struct sockaddr *)&c->peer),
	};
	sc->conn = c;
	sc->trusted = peer.trusted;
	sc->session = smtp_session_new(&scfg, &peer);
	c->proto = sc;
	log_debug("connect", "worker=%u client=%s trusted=%d role=%d", w->id, c->peer_text,
		  peer.trusted, (int)role);
	if (role == CONFIG_ROLE_SMTPS) {
		sc->implicit_tls = true;
		if (!conn_start_server_tls(c, server_tls_config(w), WORKER_TIMER_SMTP_COMMAND))
			conn_close(c);
		return;
	}
	sc->started = true;
	smtp_session_start(sc->session);
	smtp_pump(sc);
}

static void smtp_open(struct conn *c)
{
	smtp_open_role(c, CONFIG_ROLE_SMTP);
}

static void smtps_open(struct conn *c)
{
	smtp_open_role(c, CONFIG_ROLE_SMTPS);
}

static void submission_open(struct conn *c)
{
	smtp_open_role(c, CONFIG_ROLE_SUBMISSION);
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

	if (sc->committing || sc->authenticating || sc->signing)
		return;      /* our own disk or CPU is slow, not the client */
	if (c->tls_handshaking) {
		/* Nothing can be said: no 421 in clear inside a handshake. */
		log_info("timeout", "client=%s phase=tls_handshake", c->peer_text);
		c->w->smtp->rejected[SMTP_REJECT_COMMAND_TIMEOUT]++;
		conn_close(c);
		return;
	}
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

	if (sc->committing || sc->authenticating || sc->signing || sc->timer_class == SMTP_TIMEOUT_DATA)
		return;
	if (!sc->started) {
		conn_close(c);     /* inside the implicit-TLS handshake: nothing to say */
		return;
	}
	conn_write(c, bye, sizeof(bye) - 1);
	conn_close_after_flush(c);
}

static void smtp_close(struct conn *c)
{
	struct smtp_conn *sc = c->proto;

	if (sc == NULL)
		return;
	if (sc->committing || sc->authenticating || sc->signing) {
		/* The waiter is queued in the batch (or the request is with
		 * a helper) and holds c: free both in smtp_commit_done
		 * (smtp_auth_done, smtp_sign_done). */
		sc->closed = true;
		return;
	}
	smtp_session_free(sc->session);
	free(sc);
}

/* smtp_input_cap - what a client may pipeline while its message is being
 * committed (smtp.max_input_backlog). */
static size_t smtp_input_cap(const struct worker *w)
{
	return (size_t)w->cfg->smtp_max_input_backlog;
}

const struct conn_handler smtp_server_handler = {
	.name = "smtp",
	.open = smtp_open,
	.input = smtp_input,
	.timeout = smtp_timeout,
	.drained = smtp_drained,
	.shutdown = smtp_shutdown,
	.close = smtp_close,
	.tls_ready = smtp_tls_ready,
	.idle_timer = WORKER_TIMER_SMTP_IDLE,
	.input_cap = smtp_input_cap,
};

/* Implicit TLS (smtps.listen): the handshake, then the greeting. */
const struct conn_handler smtps_server_handler = {
	.name = "smtps",
	.open = smtps_open,
	.input = smtp_input,
	.timeout = smtp_timeout,
	.drained = smtp_drained,
	.shutdown = smtp_shutdown,
	.close = smtp_close,
	.tls_ready = smtp_tls_ready,
	.idle_timer = WORKER_TIMER_SMTP_IDLE,
	.input_cap = smtp_input_cap,
};

/* Submission (submission.listen): AUTH before MAIL. */
const struct conn_handler submission_server_handler = {
	.name = "submission",
	.open = submission_open,
	.input = smtp_input,
	.timeout = smtp_timeout,
	.drained = smtp_drained,
	.shutdown = smtp_shutdown,
	.close = smtp_close,
	.tls_ready = smtp_tls_ready,
	.idle_timer = WORKER_TIMER_SMTP_IDLE,
	.input_cap = smtp_input_cap,
};

static int smtp_server_worker_init(struct worker *w)
{
	w->smtp = xcalloc(1, sizeof(*w->smtp));
	return 0;
}

void smtp_server_get_stats(const struct worker *w, struct smtp_server_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (w->smtp == NULL)
		return;
	out->messages = w->smtp->messages;
	out->rejected_commits = w->smtp->rejected_commits;
	out->auth_ok = w->smtp->auth_ok;
	out->auth_failed = w->smtp->auth_failed;
	memcpy(out->dkim_signed, w->smtp->dkim_signed, sizeof(out->dkim_signed));
	out->dkim_failures = w->smtp->dkim_failures;
	memcpy(out->rejected, w->smtp->rejected, sizeof(out->rejected));
}

static void smtp_server_worker_exit(struct worker *w)
{
	if (w->smtp == NULL)
		return;
	log_info("smtp_stats", "worker=%u messages=%llu commit_failures=%llu auth_ok=%llu auth_failed=%llu",
		 w->id, (unsigned long long)w->smtp->messages,
		 (unsigned long long)w->smtp->rejected_commits,
		 (unsigned long long)w->smtp->auth_ok, (unsigned long long)w->smtp->auth_failed);
	free(w->smtp->rcpts);
	free(w->smtp->orcpts);
	helper_worker_free(w->smtp->helpers);
	free(w->smtp);
	w->smtp = NULL;
}

const struct worker_module smtp_server_module = {
	.name = "smtpd",
	.init = smtp_server_worker_init,
	.exit = smtp_server_worker_exit,
};
