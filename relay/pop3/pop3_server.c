/*
 * pop3_server - the POP3 endpoint on the local worker; see pop3_server.h.
 *
 * Output: the session's output is moved into the connection while less
 * than POP3_OUTPUT_QUEUE_MAX is queued there; a RETR or TOP streams, so the
 * rest of the message is read from the mailbox as the client takes it
 * (drained). Input is paused while the session wants its output flushed,
 * and the bytes it did not take are fed again once it wants to read.
 *
 * Timers: the connection's idle timer (POP3_IDLE, pop3.idle_timeout)
 * restarts on every byte; before login the phase timer (POP3_COMMAND,
 * pop3.command_timeout) restarts with every response, so an
 * unauthenticated client cannot sit on a connection.
 *
 * TLS: STLS (RFC 2595) is offered when a certificate is configured. Its
 * +OK goes out in clear, conn_start_tls discards the input buffered after
 * it (like SMTP STARTTLS, CVE-2011-0411), the handshake runs under the
 * command timer, and tls_ready restarts the session's AUTHORIZATION state
 * under TLS. pop3s_server_handler (pop3s.listen, RFC 8314) starts the
 * handshake at accept and greets only once it has succeeded. The TLS
 * config is the worker's own (server_tls_config), the certificate SMTP uses too.
 */
#include "pop3_server.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "mailbox.h"
#include "pop3_maildir.h"
#include "pop3_session.h"
#include "ratelimit.h"
#include "server_tls.h"
#include "tls.h"
#include "users.h"
#include "xalloc.h"

#define POP3_OUTPUT_QUEUE_MAX (256 * 1024)

/* Failed logins per client address: 10 back to back, then one more every
 * 30 s (all ten again five minutes after the last failure). */
#define POP3_AUTH_BURST 10
#define POP3_AUTH_WINDOW_MS (5 * 60 * 1000)
#define POP3_AUTH_CAPACITY 65536

struct pop3_conn {
	struct conn *conn;
	struct pop3_session *session;
	bool paused;                       /* input paused until the output drains */
	bool started;                      /* the greeting is queued */
};

struct pop3_server_worker {
	struct ratelimit *limiter;
	uint64_t sessions, logins, login_failures;
};

/* pop3_authenticate - check a login; slow (users_verify), inline: see top. */
static int pop3_authenticate(void *ctx, const char *user, const char *password)
{
	struct pop3_conn *pc = ctx;
	struct conn *c = pc->conn;
	struct worker *w = c->w;
	const struct sockaddr *peer = (const struct sockaddr *)&c->peer;

	if (!ratelimit_allowed(w->pop3->limiter, peer, w->now_ms)) {
		log_info("pop3_login", "client=%s user=%s result=rate_limited", c->peer_text, user);
		return POP3_AUTH_RATE_LIMITED;
	}
	const struct users_db *db = w->cfg->users;
	bool ok = db != NULL && users_verify(db, user, password);
	if (ok) {
		ratelimit_succeeded(w->pop3->limiter, peer);
		w->pop3->logins++;
	} else {
		ratelimit_failed(w->pop3->limiter, peer, w->now_ms);
		w->pop3->login_failures++;
	}
	log_info("pop3_login", "client=%s user=%s result=%s", c->peer_text, user, ok ? "ok" : "failed");
	return ok ? POP3_AUTH_OK : POP3_AUTH_BAD;
}

/* pop3_open_mailbox - the user's Maildir, named as deliveries name it. */
static int pop3_open_mailbox(void *ctx, const char *user, const struct pop3_mailbox_ops **ops,
			     void **box)
{
	struct pop3_conn *pc = ctx;
	char name[MAILBOX_NAME_MAX + 1];

	if (mailbox_name(user, name, sizeof(name)) < 0)
		return POP3_OPEN_ERROR;
	return pop3_maildir_open(pc->conn->w->cfg->mailbox_root, name, ops, box);
}

/* pop3_arm_phase_timer - before login each command has a deadline; after
 * it, only the idle timer applies (RFC 1939 autologout). */
static void pop3_arm_phase_timer(struct pop3_conn *pc)
{
	if (pop3_session_timeout_class(pc->session) == POP3_TIMEOUT_AUTHORIZATION)
		conn_set_phase_timer(pc->conn, WORKER_TIMER_POP3_COMMAND);
	else
		worker_timer_disarm(&pc->conn->phase_timer);
}

static void pop3_pump(struct pop3_conn *pc);

/* pop3_start_tls - switch the connection to TLS (after STLS's +OK went
 * to the connection, or at accept on pop3s); the command timer bounds
 * the handshake. false: no session could be made. */
static bool pop3_start_tls(struct pop3_conn *pc)
{
	struct conn *c = pc->conn;

	return conn_start_server_tls(c, server_tls_config(c->w), WORKER_TIMER_POP3_COMMAND);
}

/* pop3_tls_ready - the handshake is over: after STLS the session starts
 * AUTHORIZATION afresh (RFC 2595 4); on pop3s it greets now. */
static void pop3_tls_ready(struct conn *c, bool ok)
{
	struct pop3_conn *pc = c->proto;
	struct tls_info info;

	if (!ok) {
		log_info("tls_failed", "client=%s reason=\"%s\"", c->peer_text, tls_strerror(c->tls));
		conn_close(c);
		return;
	}
	tls_session_info(c->tls, &info);
	log_info("pop3_tls", "client=%s protocol=%s cipher=%s resumed=%d implicit=%d", c->peer_text,
		 info.protocol, info.cipher, info.resumed, !pc->started);
	if (pc->started) {
		pop3_session_tls_started(pc->session);
	} else {
		pc->started = true;
		pop3_session_start(pc->session);
	}
	pop3_arm_phase_timer(pc);
	pop3_pump(pc);
}

/* pop3_pump - move output to the connection and act on what the session
 * wants next. */
static void pop3_pump(struct pop3_conn *pc)
{
	struct conn *c = pc->conn;
	bool wrote = false;
	size_t len;
	const char *out;

	while ((out = pop3_session_output(pc->session, &len), len > 0) &&
	       conn_output_queued(c) < POP3_OUTPUT_QUEUE_MAX) {
		conn_write(c, out, len);
		pop3_session_output_consumed(pc->session, len);
		wrote = true;
	}
	if (wrote)
		pop3_arm_phase_timer(pc);
	enum pop3_session_want want = pop3_session_want(pc->session);
	if (want == POP3_WANT_STARTTLS) {
		/* The +OK is in the connection once len is 0; it goes out
		 * in clear ahead of the handshake. */
		if (len == 0 && c->tls == NULL && !pop3_start_tls(pc))
			conn_close_after_flush(c);
		return;
	}
	if (want == POP3_WANT_CLOSE) {
		if (len == 0) {
			conn_set_phase_timer(c, WORKER_TIMER_POP3_COMMAND);   /* bounds the flush */
			conn_close_after_flush(c);
		}
		return;
	}
	if ((want == POP3_WANT_FLUSH || len > 0) && !pc->paused) {
		pc->paused = true;
		conn_pause_input(c);
	}
}

/* pop3_open_role - a new client: greet at once (pop3.listen), or after
 * the implicit-TLS handshake (pop3s.listen). */
static void pop3_open_role(struct conn *c, bool implicit_tls)
{
	struct worker *w = c->w;
	const struct config *cfg = w->cfg;
	struct pop3_conn *pc = xcalloc(1, sizeof(*pc));

	struct pop3_session_config scfg = {
		.hostname = cfg->hostname,
		.tls_available = server_tls_config(w) != NULL,
		.plaintext_allowed = cfg->pop3_allow_plaintext,
		.ctx = pc,
		.authenticate = pop3_authenticate,
		.open_mailbox = pop3_open_mailbox,
	};
	pc->conn = c;
	pc->session = pop3_session_new(&scfg);
	c->proto = pc;
	w->pop3->sessions++;
	log_debug("pop3_connect", "worker=%u client=%s implicit_tls=%d", w->id, c->peer_text,
		  implicit_tls);
	if (implicit_tls) {
		pop3_session_set_tls(pc->session, true);
		if (!pop3_start_tls(pc))
			conn_close(c);
		return;
	}
	pc->started = true;
	pop3_session_start(pc->session);
	pop3_pump(pc);
}

static void pop3_open(struct conn *c)
{
	pop3_open_role(c, false);
}

static void pop3s_open(struct conn *c)
{
	pop3_open_role(c, true);
}

static size_t pop3_input(struct conn *c, const char *data, size_t len)
{
	struct pop3_conn *pc = c->proto;
	size_t n = pop3_session_feed(pc->session, data, len);

	pop3_pump(pc);
	return n;
}

/* pop3_drained - the client took everything: stream on, or read again. */
static void pop3_drained(struct conn *c)
{
	struct pop3_conn *pc = c->proto;
	size_t len;

	pop3_pump(pc);
	if (c->closing || c->close_when_drained)
		return;
	pop3_session_output(pc->session, &len);
	if (pc->paused && len == 0 && pop3_session_want(pc->session) == POP3_WANT_READ) {
		pc->paused = false;
		conn_resume_input(c);
	}
}

static void pop3_timeout(struct conn *c, enum worker_timer_class cls)
{
	struct pop3_conn *pc = c->proto;

	if (c->tls_handshaking) {
		/* Nothing can be said inside a handshake. */
		log_info("pop3_timeout", "client=%s phase=tls_handshake", c->peer_text);
		conn_close(c);
		return;
	}
	if (c->close_when_drained) {
		conn_close(c);     /* the goodbye did not go out: the client does not read */
		return;
	}
	log_info("pop3_timeout", "client=%s user=%s phase=%s", c->peer_text,
		 pop3_session_user(pc->session) ? pop3_session_user(pc->session) : "-",
		 cls == WORKER_TIMER_POP3_IDLE ? "idle" : "command");
	pop3_session_timeout(pc->session);   /* deletes nothing */
	pop3_pump(pc);
	conn_close_after_flush(c);
}

/* pop3_shutdown - the worker is stopping: say so and close; nothing marked
 * for deletion is removed (no UPDATE state). */
static void pop3_shutdown(struct conn *c)
{
	static const char bye[] = "-ERR [SYS/TEMP] Server shutting down.\r\n";
	struct pop3_conn *pc = c->proto;
	size_t len;

	if (c->tls_handshaking) {
		conn_close(c);     /* no text inside a handshake */
		return;
	}
	pop3_session_output(pc->session, &len);
	if (len == 0 && conn_output_queued(c) == 0)
		conn_write(c, bye, sizeof(bye) - 1);
	conn_close_after_flush(c);
}

static void pop3_close(struct conn *c)
{
	struct pop3_conn *pc = c->proto;

	if (pc == NULL)
		return;
	pop3_session_free(pc->session);   /* closes the mailbox without commit */
	free(pc);
}

const struct conn_handler pop3_server_handler = {
	.name = "pop3",
	.open = pop3_open,
	.input = pop3_input,
	.timeout = pop3_timeout,
	.drained = pop3_drained,
	.shutdown = pop3_shutdown,
	.close = pop3_close,
	.tls_ready = pop3_tls_ready,
	.idle_timer = WORKER_TIMER_POP3_IDLE,
	.input_cap = NULL,          /* CONN_INPUT_CAP_DEFAULT: commands are short */
};

/* Implicit TLS (pop3s.listen): the handshake, then the greeting. */
const struct conn_handler pop3s_server_handler = {
	.name = "pop3s",
	.open = pop3s_open,
	.input = pop3_input,
	.timeout = pop3_timeout,
	.drained = pop3_drained,
	.shutdown = pop3_shutdown,
	.close = pop3_close,
	.tls_ready = pop3_tls_ready,
	.idle_timer = WORKER_TIMER_POP3_IDLE,
	.input_cap = NULL,          /* CONN_INPUT_CAP_DEFAULT: commands are short */
};

static int pop3_server_worker_init(struct worker *w)
{
	struct ratelimit_config rc = {
		.burst = POP3_AUTH_BURST,
		.window_ms = POP3_AUTH_WINDOW_MS,
		.capacity = POP3_AUTH_CAPACITY,
	};
	struct timespec ts;

	if (w->role != WORKER_ROLE_LOCAL)
		return 0;          /* POP3 runs where the mailboxes are */
	clock_gettime(CLOCK_REALTIME, &ts);
	rc.seed = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^ (uint64_t)ts.tv_sec;
	w->pop3 = xcalloc(1, sizeof(*w->pop3));
	if (ratelimit_create(&rc, &w->pop3->limiter) < 0)
		log_fatal("pop3: cannot create the login limiter");
	return 0;
}

static void pop3_server_worker_exit(struct worker *w)
{
	if (w->pop3 == NULL)
		return;
	log_info("pop3_stats", "worker=%u sessions=%llu logins=%llu login_failures=%llu", w->id,
		 (unsigned long long)w->pop3->sessions, (unsigned long long)w->pop3->logins,
		 (unsigned long long)w->pop3->login_failures);
	ratelimit_free(w->pop3->limiter);
	free(w->pop3);
	w->pop3 = NULL;
}

const struct worker_module pop3_server_module = {
	.name = "pop3",
	.init = pop3_server_worker_init,
	.exit = pop3_server_worker_exit,
};
