/*
 * conn - a connection on a worker: ring I/O for a protocol handler.
 *
 * Inbound connections come from the worker's accept (conn_accept), outbound
 * ones from conn_connect (the delivery engine); both then run the same code.
 *
 * The connection owns the socket, the ring requests on it, its unconsumed
 * input and its output. A handler (SMTP server, POP3) owns the protocol
 * state in c->proto and sees only bytes:
 *   open     after accept or connect: create the session / greet
 *   connect_failed  (outbound) the connect failed with -errno; close follows
 *   input    bytes arrived: consume what it can, return how many; the
 *            rest is kept and offered again after conn_resume_input()
 *   timeout  the idle or phase timer fired
 *   drained  all output written (e.g. to close after 221)
 *   shutdown the worker is stopping: finish or say goodbye
 *   close    the connection is gone: free c->proto
 *   tls_ready  (optional) the handshake begun by conn_start_tls ended:
 *            ok, or failed (the handler closes)
 *
 * TLS: after conn_start_tls(c, session) every received byte is ciphertext
 * for the session (the handshake is driven from the receive path), input
 * is the decrypted plaintext, and conn_write takes plaintext, which waits
 * in c->tls_plain until the session accepts it (after the handshake).
 * Input buffered in clear when TLS starts is discarded (CVE-2011-0411).
 * With tls.offload_handshakes each handshake step (tls_handshake after
 * new ciphertext) runs on a helper thread, always the same one for a
 * worker (helper_submit_to: a worker's TLS configs hold state one thread
 * at a time may use, see tls.h); meanwhile c->tls is the helper's
 * (conn_tls_idle says NULL), ciphertext that arrives waits in
 * c->tls_backlog, and the step's job holds a reference to c.
 *
 * PROXY protocol: conn_accept_proxied first reads a PROXY protocol header
 * (relay/core/proxy_protocol.h) through the same receive path, under the
 * phase timer of class WORKER_TIMER_PROXY_HEADER, before the handler hears
 * of the connection at all; then c->peer is the client the header names
 * and handler->open runs as after conn_accept. The bytes after the header
 * are the client's (ciphertext if open started TLS). A bad, missing,
 * oversized or late header closes the connection, logged and counted in
 * w->proxy_headers; the handler never sees it (no open, no close).
 *
 * Lifetime: every request in the ring holds a reference; conn_close()
 * cancels them and the memory goes when the last completion arrives, so the
 * ring never writes into freed memory (STYLE rule 8). The conn holds a
 * reference to the config it opened under (c->cfg) until then.
 *
 * Handler settings: idle_timer (inbound: the idle timer's class, e.g.
 * SMTP_IDLE or POP3_IDLE) and input_cap (below).
 *
 * Buffers: input kept while the handler is paused is capped by the
 * handler's input_cap (SMTP: smtp.max_input_backlog), beyond which
 * reading stops until it drains.
 * Output is double-buffered: the kernel reads one buffer while the handler
 * appends to the other, so appending never moves bytes under a send.
 */
#ifndef RINGMAIL_CONN_H
#define RINGMAIL_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "buf.h"
#include "helper.h"
#include "worker.h"

struct tls_session;

struct conn_handler {
	const char *name;
	void (*open)(struct conn *c);
	void (*connect_failed)(struct conn *c, int err);
	size_t (*input)(struct conn *c, const char *data, size_t len);
	void (*timeout)(struct conn *c, enum worker_timer_class cls);
	void (*drained)(struct conn *c);
	void (*shutdown)(struct conn *c);
	void (*close)(struct conn *c);
	void (*tls_ready)(struct conn *c, bool ok);
	/* idle_timer - the class of an accepted connection's idle timer,
	 * restarted by every byte received; its expiry reaches timeout()
	 * with this class. Unused on outbound conns (they have none). */
	enum worker_timer_class idle_timer;
	/* input_cap - how many bytes of unconsumed input to keep while the
	 * handler has paused input; past that, reading stops until
	 * conn_resume_input(). Asked at each receive while paused, so a
	 * reloaded config applies. NULL: CONN_INPUT_CAP_DEFAULT. */
	size_t (*input_cap)(const struct worker *w);
};

/* The input cap of a handler without input_cap: ample for line protocols
 * whose commands are short (POP3, control, metrics requests). */
#define CONN_INPUT_CAP_DEFAULT ((size_t)64 << 10)

struct conn {
	struct worker *w;
	struct conn *prev, *next;
	int fd;
	int refs;
	bool closing;
	bool close_when_drained;
	bool recv_armed;
	bool input_paused;
	bool send_inflight;
	bool in_input;                 /* handler input is on the stack */
	bool peer_eof;                 /* the peer sent FIN: read no more */
	bool outbound;                 /* we connected; no inbound idle timer */
	bool proxy_pending;            /* waiting for the PROXY header: no handler yet */
	bool connecting;
	bool tls_handshaking;          /* conn_start_tls ran, handshake not over */
	bool tls_discard_input;        /* drop c->in once the handler returns */
	bool tls_failed;               /* the session died: close on next input */
	bool tls_close_queued;         /* close_notify queued: no more output */
	bool tls_step_out;             /* a helper thread holds c->tls (a handshake step) */
	struct sockaddr_storage peer;
	char peer_text[64];            /* "ip:port" for logs */
	const struct conn_handler *handler;
	void *proto;
	/* The worker's config when the connection was made, held until the
	 * conn is freed: whatever the session keeps from the config it
	 * started under (strings, keys, the users db) outlives a reload.
	 * Settings are still read from c->w->cfg, the current one. */
	const struct config *cfg;

	struct ring_op recv_op, send_op;
	struct worker_timer idle_timer, phase_timer;

	/* Buffers (no struct buf cap of their own, CONN_BUF_MAX: input stops
	 * being read past the handler's input cap, output is bounded by the
	 * handlers, see conn_output_queued). out[sending] is in the kernel's
	 * hands: only appended to once it is the other one again. */
	struct buf in;                 /* unconsumed input */
	struct buf out[2];
	unsigned sending;
	size_t sent;                   /* bytes of out[sending] already written */

	struct tls_session *tls;       /* owned; NULL = cleartext */
	struct buf tls_plain;          /* plaintext not yet taken by tls_write */
	/* A handshake step on a helper thread (tls.offload_handshakes): the
	 * job, the step's result, and ciphertext that arrived meanwhile. */
	struct helper_job tls_job;
	int tls_step_rc;
	struct buf tls_backlog;
};

/* conn_tls_idle - c's session when this thread may look at it: NULL
 * while a handshake step runs on a helper thread (or without TLS). */
static inline struct tls_session *conn_tls_idle(const struct conn *c)
{
	return c->tls_step_out ? NULL : c->tls;
}

/* conn_output_queued - bytes queued for output and not yet known to be
 * written (the buffer being sent counts whole until it is done): what a
 * handler checks against its output cap before producing more. */
static inline size_t conn_output_queued(const struct conn *c)
{
	return buf_len(&c->out[0]) + buf_len(&c->out[1]);
}

/* conn_accept - wrap an accepted socket and call handler->open. */
void conn_accept(struct worker *w, int fd, const struct conn_handler *handler);

/* conn_accept_proxied - conn_accept on a listener of
 * proxy_protocol.listeners: read the PROXY header first (see above). */
void conn_accept_proxied(struct worker *w, int fd, const struct conn_handler *handler);

/* conn_connect - start connecting to addr through the ring, with the
 * phase timer of class connect_timer as the deadline. handler->open runs
 * once connected; on failure connect_failed, then close. proto is set
 * before any callback. Returns NULL if no socket could be made. */
struct conn *conn_connect(struct worker *w, const struct sockaddr *addr, socklen_t len,
			  const struct conn_handler *handler, void *proto,
			  enum worker_timer_class connect_timer);

/* conn_connect_from - conn_connect from a local address (port 0: the
 * kernel picks the port at connect, IP_BIND_ADDRESS_NO_PORT); source NULL
 * or of another family than addr: the system's choice. NULL with errno
 * when no socket could be made or the bind failed (EADDRNOTAVAIL: the
 * address is not this host's). */
struct conn *conn_connect_from(struct worker *w, const struct sockaddr *addr, socklen_t len,
			       const struct sockaddr *source, socklen_t source_len,
			       const struct conn_handler *handler, void *proto,
			       enum worker_timer_class connect_timer);

/* conn_write - queue output; it is sent from the loop. */
void conn_write(struct conn *c, const void *data, size_t len);

/* conn_start_tls - from now on the connection speaks TLS through session
 * (owned by c from here). Output queued so far still goes out in clear,
 * before the handshake; every input byte received so far and not yet
 * consumed by the handler is discarded. handler->tls_ready follows. On
 * an outbound conn (a client session) the ClientHello is queued at once;
 * if the session fails even that, c->tls_failed is set on return. */
void conn_start_tls(struct conn *c, struct tls_session *session);

struct tls_config;

/* conn_start_server_tls - the server side of conn_start_tls with a new
 * session from cfg (no client certificate asked), and the phase timer of
 * class timer to bound the handshake. false (logged) when no session could
 * be made: the caller closes. */
bool conn_start_server_tls(struct conn *c, struct tls_config *cfg, enum worker_timer_class timer);

/* conn_close_after_flush - close once every queued byte is written. On a
 * TLS connection past its handshake, a close_notify alert is queued last
 * (RFC 5246 7.2.1); conn_write is ignored from then on. */
void conn_close_after_flush(struct conn *c);

/* conn_close - close now; queued output is dropped. */
void conn_close(struct conn *c);

/* conn_pause_input / conn_resume_input - stop and restart handing input
 * to the handler (e.g. while a message is being made durable). Resume
 * feeds what is buffered at once. */
void conn_pause_input(struct conn *c);
void conn_resume_input(struct conn *c);

/* conn_set_phase_timer - start the per-command (or data) deadline. */
void conn_set_phase_timer(struct conn *c, enum worker_timer_class cls);

/* conn_hold / conn_release - keep c allocated across an asynchronous step
 * of the handler's own (e.g. a commit); release may free it. */
void conn_hold(struct conn *c);
void conn_release(struct conn *c);

/* conn_shutdown_all - the worker is stopping: tell every handler. */
void conn_shutdown_all(struct worker *w);

#endif
