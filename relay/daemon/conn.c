/*
 * conn - connection I/O over the worker's ring, for accepted (inbound) and
 * connected (outbound) sockets alike; see conn.h.
 */
#include "conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "netaddr.h"
#include "proxy_protocol.h"
#include "tls.h"
#include "vg.h"
#include "xalloc.h"

static void conn_recv_complete(struct worker *w, struct ring_op *op, const struct io_uring_cqe *cqe);
static void conn_send_complete(struct worker *w, struct ring_op *op, const struct io_uring_cqe *cqe);
static void conn_feed(struct conn *c);
static void conn_finish_if_done(struct conn *c);
static void conn_proxy_input(struct conn *c);
static void conn_proxy_fail(struct conn *c, enum worker_proxy_result result, const char *reason);

/* No struct buf cap for a connection's buffers (see struct conn), and the
 * most an empty one keeps: idle connections hold at most a few hundred
 * bytes each. */
#define CONN_BUF_MAX SIZE_MAX
#define CONN_BUF_KEEP 1024

/* bytes_append - append to one of c's buffers; they have no cap of their
 * own, so an append cannot fail (out of memory is fatal in buf). */
static void bytes_append(struct buf *b, const void *data, size_t len)
{
	if (buf_append(b, data, len) < 0)
		log_panic("conn: append of %zu bytes to an uncapped buffer failed", len);
}

/* bytes_trim - release an empty buffer's memory unless it is small. */
static void bytes_trim(struct buf *b)
{
	if (buf_len(b) == 0)
		buf_clear(b, CONN_BUF_KEEP);
}

static void conn_unref(struct conn *c)
{
	if (--c->refs > 0)
		return;
	struct worker *w = c->w;
	struct io_uring_sqe *sqe = worker_sqe(w);
	io_uring_prep_close(sqe, c->fd);
	io_uring_sqe_set_data(sqe, NULL);
	buf_free(&c->in);
	buf_free(&c->out[0]);
	buf_free(&c->out[1]);
	buf_free(&c->tls_plain);
	buf_free(&c->tls_backlog);
	c->tls = tls_session_free(c->tls);
	c->cfg = config_release(c->cfg);
	w->conn_objects--;
	free(c);
}

/* conn_input_cap - the handler's cap on input kept while paused. */
static size_t conn_input_cap(const struct conn *c)
{
	if (c->handler->input_cap == NULL)
		return CONN_INPUT_CAP_DEFAULT;
	return c->handler->input_cap(c->w);
}

/* conn_arm_recv - a multishot receive from the worker's buffer group. */
static void conn_arm_recv(struct conn *c)
{
	if (c->recv_armed || c->closing)
		return;
	struct io_uring_sqe *sqe = worker_sqe(c->w);
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	io_uring_sqe_set_data(sqe, &c->recv_op);
	c->recv_armed = true;
	c->refs++;
}

/* conn_finish_if_done - after the peer's EOF, close once its input is
 * handled (not waiting for a commit) and every reply is written. */
static void conn_finish_if_done(struct conn *c)
{
	if (c->peer_eof && !c->input_paused && !c->send_inflight &&
	    conn_output_queued(c) == 0)
		conn_close(c);
}

/* conn_send_next - start a send if output waits and none is in flight. */
static void conn_send_next(struct conn *c)
{
	if (c->send_inflight || c->closing || c->proxy_pending)
		return;
	struct buf *cur = &c->out[c->sending];
	if (c->sent == buf_len(cur)) {
		buf_reset(cur);
		c->sent = 0;
		c->sending ^= 1;
		cur = &c->out[c->sending];
		if (buf_len(cur) == 0) {
			/* Nothing left: large buffers go back while idle. */
			bytes_trim(&c->out[0]);
			bytes_trim(&c->out[1]);
			if (c->close_when_drained)
				conn_close(c);
			else if (c->handler->drained != NULL)
				c->handler->drained(c);
			if (!c->closing)
				conn_finish_if_done(c);
			return;
		}
	}
	struct io_uring_sqe *sqe = worker_sqe(c->w);
	vg_kernel_reads(buf_data(cur) + c->sent, buf_len(cur) - c->sent);
	io_uring_prep_send(sqe, c->fd, buf_data(cur) + c->sent, buf_len(cur) - c->sent, MSG_NOSIGNAL);
	io_uring_sqe_set_data(sqe, &c->send_op);
	c->send_inflight = true;
	c->refs++;
}

/* conn_tls_take_output - move the session's ciphertext to the output
 * buffer at once (the pointer dies with the next session call). */
static void conn_tls_take_output(struct conn *c)
{
	size_t n;
	const void *p = tls_pending_ciphertext(c->tls, &n);

	if (n > 0) {
		bytes_append(&c->out[c->sending ^ 1], p, n);
		tls_ciphertext_consumed(c->tls, n);
	}
}

/* conn_tls_died - the session failed: log once; the receive path closes
 * (not here: callers may still hold the handler's state). */
static void conn_tls_died(struct conn *c, int err)
{
	if (!c->tls_failed)
		log_info("tls_error", "peer=%s error=\"%s\" reason=\"%s\"", c->peer_text,
			 strerror(-err), c->tls_step_out ? "more ciphertext than a handshake needs"
							 : tls_strerror(c->tls));
	c->tls_failed = true;
	buf_reset(&c->tls_plain);
}

/* conn_tls_encrypt - hand queued plaintext to the session. The bytes
 * stay in tls_plain until accepted, so a TLS_WANT_WRITE retry passes the
 * same bytes again, as tls.h requires. */
static void conn_tls_encrypt(struct conn *c)
{
	while (buf_len(&c->tls_plain) > 0 && !c->tls_failed) {
		ssize_t n = tls_write(c->tls, buf_data(&c->tls_plain), buf_len(&c->tls_plain));
		conn_tls_take_output(c);
		if (n > 0)
			buf_consume(&c->tls_plain, (size_t)n);
		else if (n == TLS_WANT_READ)
			return;     /* handshake not done yet */
		else if (n != TLS_WANT_WRITE)
			conn_tls_died(c, (int)n);
	}
	bytes_trim(&c->tls_plain);
}

void conn_write(struct conn *c, const void *data, size_t len)
{
	if (c->closing || len == 0)
		return;
	if (c->tls != NULL) {
		if (c->tls_failed || c->tls_close_queued)
			return;     /* nothing may follow close_notify */
		bytes_append(&c->tls_plain, data, len);
		if (!c->tls_handshaking)
			conn_tls_encrypt(c);
	} else {
		bytes_append(&c->out[c->sending ^ 1], data, len);
	}
	if (!c->in_input)
		conn_send_next(c);
}

bool conn_start_server_tls(struct conn *c, struct tls_config *cfg, enum worker_timer_class timer)
{
	struct tls_session *ts = cfg != NULL ? tls_session_new(cfg, TLS_VERIFY_NONE, NULL) : NULL;

	if (ts == NULL) {
		log_warn("tls_failed", "client=%s error=\"no TLS session\"", c->peer_text);
		return false;
	}
	conn_start_tls(c, ts);
	conn_set_phase_timer(c, timer);
	return true;
}

void conn_start_tls(struct conn *c, struct tls_session *session)
{
	c->tls = session;
	c->tls_handshaking = true;
	/* CVE-2011-0411: bytes the client sent in clear after STARTTLS are
	 * never executed, nor fed to the handshake. At open (implicit TLS)
	 * c->in is empty: nothing to discard, and a flag left set would
	 * drop what follows the first request after the handshake. */
	if (c->in_input && buf_len(&c->in) > 0)
		c->tls_discard_input = true;
	else
		buf_reset(&c->in);
	if (c->outbound) {
		/* The client speaks first: queue the ClientHello now (the
		 * receive path drives the rest). A session that cannot even
		 * start is marked failed; the handler checks c->tls_failed. */
		int rc;
		do {
			rc = tls_handshake(c->tls);
			conn_tls_take_output(c);
		} while (rc == TLS_WANT_WRITE);
		if (rc != TLS_WANT_READ && rc < 0) {
			c->tls_handshaking = false;
			conn_tls_died(c, rc);
		}
		if (!c->in_input)
			conn_send_next(c);
	}
}

/* conn_tls_decrypt - every whole record into c->in (plaintext is no
 * larger than the ciphertext the receive backlog already bounds). */
static void conn_tls_decrypt(struct conn *c)
{
	char buf[16384];

	while (!c->tls_failed) {
		ssize_t n = tls_read(c->tls, buf, sizeof(buf));
		conn_tls_take_output(c);
		if (n > 0) {
			bytes_append(&c->in, buf, (size_t)n);
		} else if (n == 0) {
			c->peer_eof = true;   /* close_notify: end of data */
			return;
		} else if (n == TLS_WANT_READ) {
			return;
		} else if (n != TLS_WANT_WRITE) {
			conn_tls_died(c, (int)n);
		}
	}
}

/* Handshake steps run here when tls.offload_handshakes is set: one
 * thread per CPU, and each worker's steps always on the same one. */
static struct helper_pool tls_pool = HELPER_POOL_INIT("tls", 0);

static void conn_tls_input(struct conn *c, const void *data, size_t len);
static void conn_after_input(struct conn *c);

/* conn_tls_stepped - a handshake step returned rc (its output taken). */
static void conn_tls_stepped(struct conn *c, int rc);

/* conn_tls_step_run - on the worker's helper thread: one step. */
static void conn_tls_step_run(struct helper_job *job)
{
	struct conn *c = container_of(job, struct conn, tls_job);

	c->tls_step_rc = tls_handshake(c->tls);
}

/* conn_tls_step_done - back on the worker: take the step's records, go
 * on, then feed the session what arrived meanwhile. */
static void conn_tls_step_done(struct helper_job *job)
{
	struct conn *c = container_of(job, struct conn, tls_job);

	c->tls_step_out = false;
	c->w->tls_steps_out--;
	if (!c->closing) {
		conn_tls_take_output(c);
		conn_tls_stepped(c, c->tls_step_rc);
		if (!c->closing && !c->tls_step_out && !c->tls_failed && buf_len(&c->tls_backlog) > 0) {
			struct buf backlog = c->tls_backlog;
			buf_init(&c->tls_backlog, CONN_BUF_MAX);
			conn_tls_input(c, buf_data(&backlog), buf_len(&backlog));
			buf_free(&backlog);
		}
		conn_after_input(c);
	}
	conn_unref(c);    /* the job's */
}

/* conn_tls_offload - can c's handshake steps go to a helper thread? After
 * a reload that turns the offload off, not before the steps already out are
 * back: the worker's TLS configs must never serve two threads at once. */
static bool conn_tls_offload(struct conn *c)
{
	struct worker *w = c->w;

	if (!w->cfg->tls_offload_handshakes && w->tls_steps_out == 0)
		return false;
	if (w->tls_helpers == NULL)
		w->tls_helpers = helper_worker_new(w);    /* NULL (logged): on the worker */
	return w->tls_helpers != NULL;
}

/* conn_tls_step - drive the handshake with what the session was fed:
 * on the worker's helper thread, or here. */
static void conn_tls_step(struct conn *c)
{
	if (conn_tls_offload(c)) {
		c->tls_step_out = true;
		c->w->tls_steps_out++;
		c->refs++;    /* the job's */
		c->tls_job.run = conn_tls_step_run;
		c->tls_job.done = conn_tls_step_done;
		helper_submit_to(&tls_pool, c->w->tls_helpers, &c->tls_job, c->w->id);
		return;
	}
	int rc;
	do {
		rc = tls_handshake(c->tls);
		conn_tls_take_output(c);
	} while (rc == TLS_WANT_WRITE);
	conn_tls_stepped(c, rc);
}

static void conn_tls_stepped(struct conn *c, int rc)
{
	if (rc == TLS_WANT_WRITE) {
		conn_tls_step(c);    /* output taken: again (only after a helper's step) */
		return;
	}
	if (rc == TLS_WANT_READ)
		return;
	c->tls_handshaking = false;
	if (rc < 0)
		conn_tls_died(c, rc);
	if (c->handler->tls_ready != NULL)
		c->handler->tls_ready(c, rc == 0);
	if (rc < 0 || c->closing)
		return;
	conn_tls_encrypt(c);
	conn_tls_decrypt(c);
}

/* conn_tls_input - ciphertext arrived: drive the handshake, then decrypt.
 * The handler hears the end of the handshake through tls_ready. While a
 * helper thread holds the session the bytes wait in c->tls_backlog (at
 * most what the session itself would take). */
static void conn_tls_input(struct conn *c, const void *data, size_t len)
{
	if (c->tls_step_out) {
		if (buf_len(&c->tls_backlog) + len > TLS_INPUT_MAX)
			conn_tls_died(c, -ENOBUFS);
		else
			bytes_append(&c->tls_backlog, data, len);
		return;
	}
	int rc = tls_feed_ciphertext(c->tls, data, len);

	if (rc == -ENOBUFS) {
		conn_tls_decrypt(c);
		rc = tls_feed_ciphertext(c->tls, data, len);
	}
	if (rc < 0) {
		conn_tls_died(c, rc);
		return;
	}
	if (c->tls_handshaking)
		conn_tls_step(c);
	else
		conn_tls_decrypt(c);
}

/* conn_tls_close_notify - queue the close_notify alert (RFC 5246 7.2.1)
 * behind every record already queued, so that the peer can tell the end of
 * the session from a truncation. Not inside a handshake or after a
 * failure (nothing to protect), nor while plaintext still waits for the
 * session (the alert must come last). We do not wait for the peer's own
 * close_notify: the RFC lets the closing side close at once. */
static void conn_tls_close_notify(struct conn *c)
{
	int rc;

	if (c->tls == NULL || c->tls_failed || c->tls_handshaking || c->tls_close_queued ||
	    buf_len(&c->tls_plain) > 0)
		return;
	c->tls_close_queued = true;
	do {
		rc = tls_close_notify(c->tls);
		conn_tls_take_output(c);
	} while (rc == TLS_WANT_WRITE);
	if (rc < 0)
		log_info("tls_close_notify", "peer=%s error=\"%s\" reason=\"%s\"", c->peer_text,
			 strerror(-rc), tls_strerror(c->tls));
}

void conn_close_after_flush(struct conn *c)
{
	if (c->closing)
		return;
	c->close_when_drained = true;
	conn_tls_close_notify(c);
	conn_pause_input(c);
	if (!c->send_inflight && !c->in_input)
		conn_send_next(c);
}

void conn_close(struct conn *c)
{
	struct worker *w = c->w;

	if (c->closing)
		return;
	c->closing = true;
	worker_timer_disarm(&c->idle_timer);
	worker_timer_disarm(&c->phase_timer);
	if (c->recv_armed || c->send_inflight || c->connecting) {
		struct io_uring_sqe *sqe = worker_sqe(w);
		io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data(sqe, NULL);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->conn_count--;
	if (c->handler->close != NULL && !c->proxy_pending)
		c->handler->close(c);
	c->proto = NULL;
	conn_unref(c);
}

void conn_pause_input(struct conn *c)
{
	c->input_paused = true;
}

void conn_resume_input(struct conn *c)
{
	if (c->closing || c->close_when_drained)
		return;
	c->input_paused = false;
	c->refs++;    /* the handler may close c while it is fed */
	if (buf_len(&c->in) > 0 && !c->in_input)
		conn_feed(c);
	if (!c->peer_eof)
		conn_arm_recv(c);
	else if (!c->closing)
		conn_finish_if_done(c);
	conn_unref(c);
}

void conn_set_phase_timer(struct conn *c, enum worker_timer_class cls)
{
	if (c->closing)
		return;    /* a timer armed now would outlive the conn */
	worker_timer_arm(c->w, &c->phase_timer, cls);
}

/* conn_feed - hand buffered input to the handler until it stops taking. */
static void conn_feed(struct conn *c)
{
	if (c->proxy_pending) {
		conn_proxy_input(c);
		return;
	}
	c->in_input = true;
	while (buf_len(&c->in) > 0 && !c->input_paused && !c->closing) {
		size_t n = c->handler->input(c, buf_data(&c->in), buf_len(&c->in));
		if (c->tls_discard_input) {
			c->tls_discard_input = false;
			buf_reset(&c->in);    /* see conn_start_tls */
			break;
		}
		if (n == 0)
			break;
		buf_consume(&c->in, n);
	}
	c->in_input = false;
	bytes_trim(&c->in);
	if (!c->closing)
		conn_send_next(c);
	if (!c->closing)
		conn_finish_if_done(c);
}

static void conn_idle_fire(struct worker *w, struct worker_timer *t)
{
	struct conn *c = container_of(t, struct conn, idle_timer);
	if (c->proxy_pending)
		conn_proxy_fail(c, WORKER_PROXY_TIMEOUT, "idle before the end of the header");
	else
		c->handler->timeout(c, c->handler->idle_timer);
}

static void conn_phase_fire(struct worker *w, struct worker_timer *t)
{
	struct conn *c = container_of(t, struct conn, phase_timer);
	if (c->proxy_pending) {
		conn_proxy_fail(c, WORKER_PROXY_TIMEOUT, "no complete header within proxy_protocol.timeout");
		return;
	}
	/* Not from t->node.list: popping the timer has cleared it. */
	c->handler->timeout(c, (enum worker_timer_class)t->cls);
}

/* conn_new - a connection on fd, linked into the worker's list. */
static struct conn *conn_new(struct worker *w, int fd, const struct conn_handler *handler, void *proto)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	int one = 1;

	buf_init(&c->in, CONN_BUF_MAX);
	buf_init(&c->out[0], CONN_BUF_MAX);
	buf_init(&c->out[1], CONN_BUF_MAX);
	buf_init(&c->tls_plain, CONN_BUF_MAX);
	buf_init(&c->tls_backlog, CONN_BUF_MAX);
	c->w = w;
	c->cfg = config_hold(w->cfg);
	c->fd = fd;
	c->refs = 2;  /* the open connection, and the caller while it runs */
	c->handler = handler;
	c->proto = proto;
	c->recv_op.complete = conn_recv_complete;
	c->send_op.complete = conn_send_complete;
	c->idle_timer.fire = conn_idle_fire;
	c->phase_timer.fire = conn_phase_fire;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->conn_count++;
	w->conn_objects++;
	return c;
}

/* conn_start - the connection is up: greet or wait for the greeting. */
static void conn_start(struct conn *c)
{
	c->in_input = true;
	c->handler->open(c);
	c->in_input = false;
	if (!c->closing) {
		conn_arm_recv(c);
		conn_send_next(c);
	}
}

/* conn_get_peer - the accepted socket's peer address into c. */
static void conn_get_peer(struct conn *c)
{
	socklen_t len = sizeof(c->peer);

	/* Answered from the socket without blocking; multishot accept has no
	 * per-connection address buffer. */
	if (getpeername(c->fd, (struct sockaddr *)&c->peer, &len) < 0)
		c->peer.ss_family = AF_UNSPEC;
	else
		netaddr_format((struct sockaddr *)&c->peer, c->peer_text, sizeof(c->peer_text));
}

void conn_accept(struct worker *w, int fd, const struct conn_handler *handler)
{
	struct conn *c = conn_new(w, fd, handler, NULL);

	conn_get_peer(c);
	worker_timer_arm(w, &c->idle_timer, c->handler->idle_timer);
	conn_start(c);
	conn_unref(c);
}

void conn_accept_proxied(struct worker *w, int fd, const struct conn_handler *handler)
{
	struct conn *c = conn_new(w, fd, handler, NULL);

	conn_get_peer(c);
	c->proxy_pending = true;
	worker_timer_arm(w, &c->phase_timer, WORKER_TIMER_PROXY_HEADER);
	conn_arm_recv(c);
	conn_unref(c);
}

/* conn_proxy_fail - no usable PROXY header: the balancer (or whoever
 * connected) is logged, the result counted, the connection closed without
 * a word; the handler never heard of it. */
static void conn_proxy_fail(struct conn *c, enum worker_proxy_result result, const char *reason)
{
	log_info("proxy_header", "peer=%s result=%s reason=\"%s\" received=%zu", c->peer_text,
		 result == WORKER_PROXY_TIMEOUT ? "timeout" : "bad", reason, buf_len(&c->in));
	c->w->proxy_headers[result]++;
	conn_close(c);
}

/* conn_proxy_start - the header is consumed: open the handler as
 * conn_accept does, then give it what followed the header. Those bytes
 * are kept aside across open, which may start TLS (implicit-TLS
 * listeners) and so discard c->in; they are then the ClientHello. */
static void conn_proxy_start(struct conn *c)
{
	size_t rest = buf_len(&c->in);
	char *early = NULL;

	if (rest > 0) {
		early = xmalloc(rest);
		memcpy(early, buf_data(&c->in), rest);
		buf_reset(&c->in);
	}
	c->refs++;    /* open or the early bytes may close c */
	worker_timer_arm(c->w, &c->idle_timer, c->handler->idle_timer);
	conn_start(c);
	if (early != NULL && !c->closing) {
		if (c->tls != NULL) {
			conn_tls_input(c, early, rest);
			if (c->tls_failed && !c->closing)
				conn_close(c);
		} else {
			bytes_append(&c->in, early, rest);
		}
		if (!c->closing && !c->input_paused)
			conn_feed(c);
		else if (!c->closing)
			conn_send_next(c);
	}
	free(early);
	conn_unref(c);
}

/* conn_proxy_input - bytes arrived while the PROXY header is awaited:
 * parse what is buffered (the header is small: parsing again from the
 * start is cheaper than keeping state). */
static void conn_proxy_input(struct conn *c)
{
	struct proxy_protocol_header h;
	const char *reason = "";
	int n = proxy_protocol_parse(buf_data(&c->in), buf_len(&c->in),
				     (size_t)c->w->cfg->proxy_protocol_max_header_size, &h, &reason);

	if (n == 0) {
		if (c->peer_eof)
			conn_proxy_fail(c, WORKER_PROXY_BAD, "closed before the end of the header");
		return;
	}
	if (n < 0) {
		conn_proxy_fail(c, WORKER_PROXY_BAD, reason);
		return;
	}
	char balancer[sizeof(c->peer_text)];
	memcpy(balancer, c->peer_text, sizeof(balancer));
	if (h.has_source) {
		memset(&c->peer, 0, sizeof(c->peer));
		memcpy(&c->peer, &h.source, h.address_len);
		netaddr_format((struct sockaddr *)&c->peer, c->peer_text, sizeof(c->peer_text));
	}
	c->w->proxy_headers[h.has_source ? WORKER_PROXY_OK : WORKER_PROXY_KEPT_PEER]++;
	log_debug("proxy_header", "peer=%s client=%s result=ok version=%d command=%s tlvs=%u", balancer,
		  c->peer_text, h.version, proxy_protocol_command_name(h.command), h.tlv_count);
	buf_consume(&c->in, (size_t)n);
	c->proxy_pending = false;
	worker_timer_disarm(&c->phase_timer);
	conn_proxy_start(c);
}

static void conn_connect_complete(struct worker *w, struct ring_op *op, const struct io_uring_cqe *cqe)
{
	struct conn *c = container_of(op, struct conn, recv_op);

	c->recv_op.complete = conn_recv_complete;
	c->connecting = false;
	if (!c->closing) {
		if (cqe->res < 0) {
			c->handler->connect_failed(c, cqe->res);
			conn_close(c);
		} else {
			conn_start(c);
		}
	}
	conn_unref(c);
}

struct conn *conn_connect(struct worker *w, const struct sockaddr *addr, socklen_t len,
			  const struct conn_handler *handler, void *proto,
			  enum worker_timer_class connect_timer)
{
	return conn_connect_from(w, addr, len, NULL, 0, handler, proto, connect_timer);
}

struct conn *conn_connect_from(struct worker *w, const struct sockaddr *addr, socklen_t len,
			       const struct sockaddr *source, socklen_t source_len,
			       const struct conn_handler *handler, void *proto,
			       enum worker_timer_class connect_timer)
{
	int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return NULL;
	if (source != NULL && source->sa_family == addr->sa_family) {
		int one = 1;
		/* bind is not blocking; without NO_PORT it would reserve an
		 * ephemeral port per source, whatever the destination. */
		(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, source, source_len) < 0) {
			int err = errno;
			close(fd);
			errno = err;
			return NULL;
		}
	}
	struct conn *c = conn_new(w, fd, handler, proto);
	c->outbound = true;
	c->connecting = true;
	memcpy(&c->peer, addr, len);
	netaddr_format(addr, c->peer_text, sizeof(c->peer_text));
	/* The connect borrows recv_op: no receive runs before it completes. */
	c->recv_op.complete = conn_connect_complete;
	struct io_uring_sqe *sqe = worker_sqe(w);
	io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&c->peer, len);
	io_uring_sqe_set_data(sqe, &c->recv_op);
	worker_timer_arm(w, &c->phase_timer, connect_timer);
	/* The caller's reference becomes the connect request's. */
	return c;
}

/* conn_after_input - input was taken (received bytes, or a handshake
 * step's end): close a dead session, hand plaintext to the handler, send
 * what is queued (handshake records included). */
static void conn_after_input(struct conn *c)
{
	if (c->tls_failed && !c->closing)
		conn_close(c);
	if (!c->input_paused && !c->in_input && !c->closing)
		conn_feed(c);
	if (c->tls != NULL && !c->closing && !c->in_input)
		conn_send_next(c);
}

/* conn_recv_complete - bytes, end of stream, or an error from the
 * multishot receive. A completion without F_MORE ends the request, and
 * its reference is dropped last, after every use of c here. */
static void conn_recv_complete(struct worker *w, struct ring_op *op, const struct io_uring_cqe *cqe)
{
	struct conn *c = container_of(op, struct conn, recv_op);
	bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;

	if (!more)
		c->recv_armed = false;
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		/* A buffer the kernel took is returned even when res <= 0. */
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		if (cqe->res > 0 && !c->closing) {
			vg_kernel_wrote(worker_buffer(w, bid), (size_t)cqe->res);
			if (c->tls != NULL)
				conn_tls_input(c, worker_buffer(w, bid), (size_t)cqe->res);
			else
				bytes_append(&c->in, worker_buffer(w, bid), (size_t)cqe->res);
			if (!c->outbound && !c->closing)
				worker_timer_arm(w, &c->idle_timer, c->handler->idle_timer);
			conn_after_input(c);
		}
		worker_recycle_buffer(w, bid);
	}
	if (!c->closing) {
		if (cqe->res == 0) {
			/* Half-closed: what was sent before still gets its replies. */
			c->peer_eof = true;
			if (c->proxy_pending)
				conn_proxy_fail(c, WORKER_PROXY_BAD, "closed before the end of the header");
			else
				conn_finish_if_done(c);
		} else if (cqe->res < 0 && cqe->res != -ENOBUFS && cqe->res != -ECANCELED) {
			log_debug("recv_error", "peer=%s error=%d", c->peer_text, -cqe->res);
			conn_close(c);
		} else if (c->input_paused && buf_len(&c->in) >= conn_input_cap(c)) {
			/* Paused with a full backlog: reading waits until
			 * conn_resume_input(). A multishot receive would go on
			 * filling c->in, so end it; its last completion
			 * (-ECANCELED, no F_MORE) then does not re-arm. */
			if (more) {
				struct io_uring_sqe *sqe = worker_sqe(w);
				io_uring_prep_cancel(sqe, &c->recv_op, 0);
				io_uring_sqe_set_data(sqe, NULL);
			}
		} else if (!more) {
			conn_arm_recv(c);
		}
	}
	if (!more)
		conn_unref(c);
}

static void conn_send_complete(struct worker *w, struct ring_op *op, const struct io_uring_cqe *cqe)
{
	struct conn *c = container_of(op, struct conn, send_op);

	c->send_inflight = false;
	if (!c->closing) {
		if (cqe->res < 0) {
			log_debug("send_error", "peer=%s error=%d", c->peer_text, -cqe->res);
			conn_close(c);
		} else {
			c->sent += (size_t)cqe->res;
			conn_send_next(c);
		}
	}
	conn_unref(c);
}

void conn_hold(struct conn *c)
{
	c->refs++;
}

void conn_release(struct conn *c)
{
	conn_unref(c);
}

void conn_shutdown_all(struct worker *w)
{
	struct conn *c = w->conns;

	while (c != NULL) {
		struct conn *next = c->next;
		if (c->proxy_pending)
			conn_close(c);     /* no session to wind down yet */
		else
			c->handler->shutdown(c);
		c = next;
	}
}
