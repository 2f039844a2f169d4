/*
 * http_server - the HTTP API's sessions on a worker; see http_server.h.
 *
 * A session is an enum and one enter_state(); each state has its
 * deadline in http_states[]:
 *   HANDSHAKE   http.tls_listen only: the TLS handshake (tls.cert_file,
 *               re-read on SIGHUP) must end within http.request_timeout;
 *               a failed one closes the connection without a word
 *   IDLE        between requests: the connection's idle timer
 *               (http.idle_timeout), restarted by every byte
 *   READING     a request has begun: its head and body must arrive within
 *               http.request_timeout, however slowly the bytes trickle
 *   INJECTING   the request is being signed and committed: no deadline,
 *               the wait is our own disk's or CPU's, not the client's
 *   CLOSING     the last answer is queued: it must be read within
 *               http.request_timeout, then the connection closes
 * Input is paused while INJECTING, so a pipelined request waits for the
 * answer to the one before it and answers leave in order.
 *
 * Authentication comes before the body is looked at: a request without
 * a token, or with one the file does not list, gets 401 (and a
 * WWW-Authenticate challenge, RFC 6750 3); a token without the "inject"
 * permission gets 403. Tokens are the config's, so a SIGHUP that
 * re-reads http.token_file applies to the next request.
 */
#include "http_server.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "helper.h"
#include "http_inject.h"
#include "http_request.h"
#include "http_tokens.h"
#include "http_worker.h"
#include "log.h"
#include "netaddr.h"
#include "server_tls.h"
#include "tls.h"
#include "xalloc.h"

#define INJECT_PATH "/api/inject/v1"

/* Output queued beyond which input pauses until the client reads. */
#define HTTP_OUTPUT_BACKLOG_MAX (256 * 1024)

enum http_session_state {
	HTTP_STATE_HANDSHAKE,
	HTTP_STATE_IDLE,
	HTTP_STATE_READING,
	HTTP_STATE_INJECTING,
	HTTP_STATE_CLOSING,
	HTTP_STATE_COUNT
};

/* Each state's name (for the log) and phase deadline (-1: none). */
static const struct {
	const char *name;
	int timer;
} http_states[HTTP_STATE_COUNT] = {
	[HTTP_STATE_HANDSHAKE] = { "handshake", WORKER_TIMER_HTTP_REQUEST },
	[HTTP_STATE_IDLE] = { "idle", -1 },
	[HTTP_STATE_READING] = { "reading", WORKER_TIMER_HTTP_REQUEST },
	[HTTP_STATE_INJECTING] = { "injecting", -1 },
	[HTTP_STATE_CLOSING] = { "closing", WORKER_TIMER_HTTP_REQUEST },
};

struct http_conn {
	struct conn *conn;
	enum http_session_state state;
	struct http_request *request;
	struct http_inject *inject;        /* while INJECTING */
	bool keep_alive;                   /* of the request being answered */
	bool closed;                       /* conn gone while INJECTING */
	bool paused_for_output;
	char ip[64];
};

static const char *status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 431: return "Request Header Fields Too Large";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Error";
	}
}

static struct http_request_limits http_limits(const struct config *cfg)
{
	return (struct http_request_limits){ (size_t)cfg->http_max_header_size,
					     (size_t)cfg->http_max_body_size };
}

/* enter_state - the one place a session changes state: log it and arm
 * the state's deadline. */
static void enter_state(struct http_conn *hc, enum http_session_state next)
{
	struct conn *c = hc->conn;

	log_debug("http_state", "client=%s from=%s to=%s", c->peer_text, http_states[hc->state].name,
		  http_states[next].name);
	hc->state = next;
	if (http_states[next].timer < 0)
		worker_timer_disarm(&c->phase_timer);
	else
		conn_set_phase_timer(c, (enum worker_timer_class)http_states[next].timer);
}

/* http_respond - queue an answer; extra holds more header lines. After
 * it the session is IDLE again, or CLOSING when the connection may not
 * carry another request. */
static void http_respond(struct http_conn *hc, int status, const char *extra, const char *body, size_t len,
			 bool keep_alive)
{
	struct conn *c = hc->conn;
	struct http_server_stats *st = &c->w->http->stats;
	char head[512];

	st->responses[status < 300 ? HTTP_STATUS_2XX : status < 500 ? HTTP_STATUS_4XX : HTTP_STATUS_5XX]++;
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s%s\r\n",
			 /* keep-alive said out loud: HTTP/1.0 clients (ab) need it */
			 status, status_text(status), len, keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n",
			 extra != NULL ? extra : "");
	conn_write(c, head, (size_t)n);
	conn_write(c, body, len);
	struct http_request_limits limits = http_limits(c->w->cfg);
	http_request_set_limits(hc->request, &limits);    /* a reload applies here */
	http_request_reset(hc->request);
	if (keep_alive && !c->w->stopping) {
		enter_state(hc, HTTP_STATE_IDLE);
		if (conn_output_queued(c) > HTTP_OUTPUT_BACKLOG_MAX) {
			hc->paused_for_output = true;
			conn_pause_input(c);
		}
		return;
	}
	enter_state(hc, HTTP_STATE_CLOSING);
	conn_close_after_flush(c);
}

/* http_respond_error - {"error": text} with status. */
static void http_respond_error(struct http_conn *hc, int status, const char *extra, const char *text,
			       bool keep_alive)
{
	struct buf b;

	buf_init(&b, 4096);
	buf_append_str(&b, "{\"error\":");
	buf_append_json(&b, text);
	buf_append_str(&b, "}");
	http_respond(hc, status, extra, buf_data(&b), buf_len(&b), keep_alive);
	buf_free(&b);
}

static void http_inject_done(struct http_inject *j, void *ctx);

/* http_inject_answer - the job's answer goes out; the session reads on. */
static void http_inject_answer(struct http_conn *hc)
{
	size_t len;
	const char *reply = http_inject_reply(hc->inject, &len);
	int status = http_inject_status(hc->inject);

	http_respond(hc, status, status == 503 ? "Retry-After: 5\r\n" : NULL, reply, len, hc->keep_alive);
	hc->inject = http_inject_free(hc->inject);
}

/* http_authorize - the bearer token's verdict: 0 when it may inject,
 * else the status already answered. */
static int http_authorize(struct http_conn *hc, const char **token_name)
{
	const struct config *cfg = hc->conn->w->cfg;
	struct http_server_stats *st = &hc->conn->w->http->stats;
	size_t len;
	const char *token = http_bearer_token(http_request_authorization(hc->request), &len);
	bool keep = http_request_keep_alive(hc->request);

	if (token == NULL) {
		st->unauthorized++;
		http_respond_error(hc, 401, "WWW-Authenticate: Bearer realm=\"ringmail\"\r\n",
				   "a bearer token is required (Authorization: Bearer ...)", keep);
		return 401;
	}
	const struct http_token *t = http_tokens_find(cfg->http_tokens, token, len);
	if (t == NULL) {
		st->unauthorized++;
		log_info("http_auth", "client=%s result=failed", hc->conn->peer_text);
		http_respond_error(hc, 401, "WWW-Authenticate: Bearer realm=\"ringmail\", error=\"invalid_token\"\r\n",
				   "the bearer token is not valid", keep);
		return 401;
	}
	if (!(t->permissions & HTTP_TOKEN_INJECT)) {
		st->forbidden++;
		log_info("http_auth", "client=%s token=%s result=forbidden", hc->conn->peer_text, t->name);
		http_respond_error(hc, 403, NULL, "this token may not inject messages", keep);
		return 403;
	}
	*token_name = t->name;
	return 0;
}

/* http_content_type_ok - JSON, or nothing said. */
static bool http_content_type_ok(const char *type)
{
	return type[0] == '\0' || strncasecmp(type, "application/json", 16) == 0;
}

/* http_route - a complete request: answer it, or start its injection. */
static void http_route(struct http_conn *hc)
{
	struct conn *c = hc->conn;
	const char *target = http_request_target(hc->request);
	bool keep = http_request_keep_alive(hc->request);
	const char *token_name = NULL;

	c->w->http->stats.requests++;
	if (strcmp(target, INJECT_PATH) != 0) {
		http_respond_error(hc, 404, NULL, "no such endpoint (POST /api/inject/v1)", keep);
		return;
	}
	if (http_request_method(hc->request) != HTTP_METHOD_POST) {
		http_respond_error(hc, 405, "Allow: POST\r\n", "use POST for /api/inject/v1", keep);
		return;
	}
	if (http_authorize(hc, &token_name) != 0)
		return;
	if (!http_content_type_ok(http_request_content_type(hc->request))) {
		http_respond_error(hc, 415, NULL, "the body must be application/json", keep);
		return;
	}
	size_t len;
	const char *body = http_request_body(hc->request, &len);
	struct http_inject_client who = { c->peer_text, hc->ip, token_name };
	hc->keep_alive = keep;
	enter_state(hc, HTTP_STATE_INJECTING);
	hc->inject = http_inject_start(c->w, &who, body, len, http_inject_done, hc);
	if (http_inject_pending(hc->inject)) {
		conn_pause_input(c);
		conn_hold(c);
		return;
	}
	http_inject_answer(hc);
}

/* http_inject_done - the job's messages are durable or failed. */
static void http_inject_done(struct http_inject *j, void *ctx)
{
	struct http_conn *hc = ctx;
	struct conn *c = hc->conn;

	if (hc->closed) {
		/* Gone before its answer: what is durable is delivered all
		 * the same; the client will find out by retrying (and may
		 * send the message twice, as with SMTP). */
		http_inject_free(j);
		http_request_free(hc->request);
		free(hc);
		conn_release(c);
		return;
	}
	http_inject_answer(hc);
	if (hc->state == HTTP_STATE_IDLE)
		conn_resume_input(c);
	conn_release(c);
}

/* http_open_tls - open a session, in HANDSHAKE first when tls. */
static void http_open_tls(struct conn *c, bool tls)
{
	struct http_conn *hc = xcalloc(1, sizeof(*hc));
	struct http_request_limits limits = http_limits(c->w->cfg);

	hc->conn = c;
	hc->request = http_request_new(&limits);
	netaddr_format_ip((const struct sockaddr *)&c->peer, hc->ip, sizeof(hc->ip));
	c->proto = hc;
	c->w->http->stats.connections++;
	log_debug("http_connect", "worker=%u client=%s tls=%d", c->w->id, c->peer_text, tls);
	if (!tls) {
		enter_state(hc, HTTP_STATE_IDLE);
		return;
	}
	hc->state = HTTP_STATE_HANDSHAKE;
	if (!conn_start_server_tls(c, server_tls_config(c->w), WORKER_TIMER_HTTP_REQUEST)) {
		conn_close(c);      /* no certificate loaded: nothing to say in clear */
		return;
	}
	enter_state(hc, HTTP_STATE_HANDSHAKE);
}

static void http_open(struct conn *c)
{
	http_open_tls(c, false);
}

static void https_open(struct conn *c)
{
	http_open_tls(c, true);
}

/* https_tls_ready - the handshake is over: requests may come. */
static void https_tls_ready(struct conn *c, bool ok)
{
	struct http_conn *hc = c->proto;
	struct tls_info info;

	if (!ok) {
		log_info("tls_failed", "client=%s protocol=http reason=\"%s\"", c->peer_text, tls_strerror(c->tls));
		conn_close(c);
		return;
	}
	tls_session_info(c->tls, &info);
	log_debug("http_tls", "client=%s protocol=%s cipher=%s resumed=%d", c->peer_text, info.protocol,
		  info.cipher, info.resumed);
	enter_state(hc, HTTP_STATE_IDLE);
}

/* http_input - feed the parser; act on each complete request in turn. */
static size_t http_input(struct conn *c, const char *data, size_t len)
{
	struct http_conn *hc = c->proto;
	size_t used = 0;

	while (used < len && (hc->state == HTTP_STATE_IDLE || hc->state == HTTP_STATE_READING) &&
	       !hc->paused_for_output) {
		used += http_request_feed(hc->request, data + used, len - used);
		enum http_request_state rs = http_request_state(hc->request);
		if (hc->state == HTTP_STATE_IDLE && rs != HTTP_REQUEST_IDLE)
			enter_state(hc, HTTP_STATE_READING);
		if (rs == HTTP_REQUEST_ERROR) {
			int status = http_request_error_status(hc->request);
			http_respond_error(hc, status, NULL, http_request_error_text(hc->request), false);
			return len;
		}
		if (rs == HTTP_REQUEST_COMPLETE) {
			http_route(hc);
			continue;
		}
		if (http_request_wants_continue(hc->request)) {
			static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
			conn_write(c, cont, sizeof(cont) - 1);
			http_request_continue_sent(hc->request);
		}
		break;       /* the parser took all it was given */
	}
	return hc->state == HTTP_STATE_CLOSING ? len : used;
}

static void http_timeout(struct conn *c, enum worker_timer_class cls)
{
	struct http_conn *hc = c->proto;

	if (hc->state == HTTP_STATE_INJECTING)
		return;       /* our own disk or CPU is slow, not the client */
	if (hc->state == HTTP_STATE_CLOSING || c->close_when_drained) {
		conn_close(c);          /* the client does not read its answer */
		return;
	}
	if (hc->state == HTTP_STATE_HANDSHAKE) {
		c->w->http->stats.timeouts++;
		log_info("timeout", "client=%s protocol=http phase=handshake", c->peer_text);
		conn_close(c);          /* no text inside a handshake */
		return;
	}
	c->w->http->stats.timeouts++;
	log_info("timeout", "client=%s protocol=http phase=%s", c->peer_text,
		 hc->state == HTTP_STATE_READING ? "request" : "idle");
	if (hc->state == HTTP_STATE_READING)
		http_respond_error(hc, 408, NULL, "the request did not arrive within http.request_timeout", false);
	else
		conn_close(c);          /* idle: RFC 9112 9.5 allows a silent close */
}

static void http_drained(struct conn *c)
{
	struct http_conn *hc = c->proto;

	if (hc->paused_for_output) {
		hc->paused_for_output = false;
		conn_resume_input(c);
	}
}

/* http_shutdown - the worker is stopping: an idle session closes; one
 * inside a request finishes it (answered with Connection: close). */
static void http_shutdown(struct conn *c)
{
	struct http_conn *hc = c->proto;

	if (hc->state == HTTP_STATE_IDLE || hc->state == HTTP_STATE_HANDSHAKE)
		conn_close(c);
}

static void http_close(struct conn *c)
{
	struct http_conn *hc = c->proto;

	if (hc == NULL)
		return;
	if (hc->state == HTTP_STATE_INJECTING) {
		hc->closed = true;      /* freed by http_inject_done */
		return;
	}
	http_request_free(hc->request);
	free(hc);
	c->proto = NULL;
}

/* http_input_cap - a request's head and body may wait in the connection
 * while the one before it is being injected. */
static size_t http_input_cap(const struct worker *w)
{
	return (size_t)(w->cfg->http_max_header_size + w->cfg->http_max_body_size);
}

const struct conn_handler http_server_handler = {
	.name = "http",
	.open = http_open,
	.input = http_input,
	.timeout = http_timeout,
	.drained = http_drained,
	.shutdown = http_shutdown,
	.close = http_close,
	.idle_timer = WORKER_TIMER_HTTP_IDLE,
	.input_cap = http_input_cap,
};

/* The same API on http.tls_listen: the TLS handshake, then HTTP. */
const struct conn_handler https_server_handler = {
	.name = "https",
	.open = https_open,
	.input = http_input,
	.timeout = http_timeout,
	.drained = http_drained,
	.shutdown = http_shutdown,
	.close = http_close,
	.tls_ready = https_tls_ready,
	.idle_timer = WORKER_TIMER_HTTP_IDLE,
	.input_cap = http_input_cap,
};

struct helper_worker *http_worker_helpers(struct worker *w)
{
	if (w->http->helpers == NULL)
		w->http->helpers = helper_worker_new(w);
	return w->http->helpers;
}

void http_server_get_stats(const struct worker *w, struct http_server_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (w->http != NULL)
		*out = w->http->stats;
}

static int http_server_worker_init(struct worker *w)
{
	w->http = xcalloc(1, sizeof(*w->http));
	return 0;
}

static void http_server_worker_exit(struct worker *w)
{
	if (w->http == NULL)
		return;
	helper_worker_free(w->http->helpers);
	free(w->http);
	w->http = NULL;
}

const struct worker_module http_server_module = {
	.name = "http",
	.init = http_server_worker_init,
	.exit = http_server_worker_exit,
};
