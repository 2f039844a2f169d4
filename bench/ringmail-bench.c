/*
 * ringmail-bench - an SMTP load generator.
 *
 *   ringmail-bench --target 127.0.0.1:2525 --connections 50 --messages 100000
 *                  [--size 2048 | --size-dist 2000:0.8,100000:0.2] [--rcpts 1]
 *                  [--domains K] [--domain-pattern 'd%d.test'] [--zipf S]
 *                  [--pipelining on|off] [--rate R] [--duration S] [--json]
 *                  [--messages-per-connection N] [--timeout S] [--seed N]
 *                  [--allow-rejects] [--tls [--tls-reuse] [--handshake-only]]
 *                  [--auth USER:PASSWORD] [--percentiles FILE]
 *
 * --tls: STARTTLS after EHLO (the server must offer it), then EHLO again and
 * mail as usual over TLS 1.2 (relay/daemon/tls.h, certificates not checked).
 * --tls-reuse offers the first session's parameters again on every new
 * connection (resumption). --handshake-only: every connection does EHLO
 * (STARTTLS, handshake, EHLO) and QUIT, no mail; each such session counts
 * as one "message", so --messages N makes N connections.
 *
 * TLS sits between the ring and the SMTP line logic: received ciphertext is
 * fed to the session and the plaintext read out into the reply buffer; the
 * plaintext output is encrypted whole into a ciphertext buffer, which the
 * ring sends. SMTP code never sees the difference.
 * --auth: AUTH PLAIN after the (last) EHLO; the server must offer it.
 *
 * Closed loop by default: every connection sends its next message as soon as
 * the previous one is answered, and latency runs from the moment the final
 * dot was written to the socket to the reply to it.
 *
 * With --rate R, open loop (as wrk2 does it): message n is due at
 * start + (n-1)/R whatever the server does; a timer wakes the loop at the
 * next due time and due messages go to idle connections, or wait for one.
 * Latency then runs from the message's due time, not from when it could be
 * sent, so a server that stalls is charged for every message that queued
 * behind the stall (no coordinated omission). service_latency is the
 * dot-to-reply figure in both modes. With too few connections the achieved
 * rate falls below R and the latency says so.
 *
 * --percentiles FILE writes the latency distribution in HdrHistogram's
 * percentile text form (milliseconds), for plotting. The histogram keeps
 * 128 sub-buckets per power of two (within 0.8%).
 *
 * Each message carries X-Ringmail-Stamp (wall clock microseconds) for the
 * sink's end-to-end latency.
 *
 * One thread, one ring; each connection has at most one request in flight
 * (connect, send, recv or a retry timer), plus the recv's linked timeout
 * whose completion carries no pointer.
 */
#include "bench_common.h"
#include "log.h"
#include "tls.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <mbedtls/base64.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BENCH_INPUT_CAP (16 * 1024)
#define BENCH_MAX_SIZES 16
#define BENCH_MAX_RCPTS 1000
#define BENCH_LINE 76
#define BENCH_CONNECT_TRIES 5

enum bench_op { OP_CONNECT = 1, OP_SEND, OP_RECV, OP_RETRY, OP_TICK, OP_IGNORE };
#define OP_MASK 7u
#define USER_DATA(ptr, op) ((uint64_t)(uintptr_t)(ptr) | (uint64_t)(op))

/* What the connection waits for. */
enum bench_phase {
	PHASE_CONNECT, PHASE_GREETING, PHASE_EHLO, PHASE_STARTTLS, PHASE_HANDSHAKE,
	PHASE_AUTH, PHASE_ENVELOPE, PHASE_BODY, PHASE_RSET, PHASE_IDLE, PHASE_QUIT, PHASE_RETRY,
	PHASE_DONE
};

struct bench_options {
	struct sockaddr_storage target;
	socklen_t target_len;
	const char *target_text;
	uint64_t connections, messages, duration_s, rcpts, domains, rate;
	uint64_t per_connection, timeout_s, seed;
	uint64_t sizes[BENCH_MAX_SIZES];
	double size_cdf[BENCH_MAX_SIZES];
	int size_count;
	const char *domain_pattern;
	double zipf;
	int pipelining, json, allow_rejects;
	int tls, tls_reuse, handshake_only;
	const char *auth;		/* USER:PASSWORD, or NULL */
	const char *percentiles;	/* file for the distribution, or NULL */
};

struct bench_results {
	uint64_t attempted, sent, accepted, rejected_4xx, rejected_5xx, lost, bytes;
	uint64_t rcpt_accepted, rcpt_4xx, rcpt_5xx;
	uint64_t connections_opened, connection_errors, timeouts;
	uint64_t tls_handshakes, tls_resumed;
	struct bench_hist latency;	/* from the due time (--rate) or the dot */
	struct bench_hist service;	/* from the dot */
};

/* One client session. Invariant: out[out_sent..out_len) is being written;
 * at most one request of ours is in the ring. */
struct bench_conn {
	int fd;
	int index;
	enum bench_phase phase;
	struct bench_lines in;
	char *out;
	size_t out_len, out_sent, out_cap;
	/* TLS: the session (NULL in cleartext), received ciphertext, and the
	 * ciphertext being written (wire). */
	struct tls_session *tls;
	int tls_up;			/* handshake done: out and in go through tls */
	char *raw;
	struct bench_wire wire;
	uint64_t connect_us;
	int pipelining;			/* we pipeline and the server offered it */
	int connect_failures;		/* in a row; give up after BENCH_CONNECT_TRIES */
	uint64_t conn_messages;
	/* the message in flight */
	uint64_t number, size;
	unsigned replies_seen;		/* envelope replies so far: MAIL, RCPTs, DATA */
	unsigned rcpt_ok;
	int fail_class;			/* 4 or 5 once the message is lost to a reply */
	unsigned rset_due;		/* replies still due in PHASE_RSET */
	int offers_pipelining;		/* seen in the EHLO reply */
	int offers_starttls;
	int busy;			/* a request of ours is in the ring */
	char first_rcpt[256];
	char commands[BENCH_MAX_RCPTS * 64 + 256];	/* the envelope commands */
	size_t command_offsets[BENCH_MAX_RCPTS + 3];	/* line starts in commands */
	uint64_t dot_us;
	uint64_t due_us;		/* --rate: when the message was due */
	struct __kernel_timespec retry;
} __attribute__((aligned(16)));

static struct bench_options opt = {
	.connections = 10, .rcpts = 1, .domains = 1, .timeout_s = 30, .seed = 1,
	.pipelining = 1, .domain_pattern = "d%d.test",
};
static struct bench_results res;
static struct io_uring ring;
static struct bench_rng rng;
static struct bench_conn **conns;
static struct tls_config *tls_cfg;
static struct tls_saved_session *tls_saved;
static uint64_t conns_done;
static double *domain_cdf;
static char *filler;
static size_t filler_len;
static uint64_t start_us, end_us, released;
static struct __kernel_timespec reply_timeout;
static struct __kernel_timespec tick_at;
static volatile sig_atomic_t interrupted;
static char *auth_line;			/* "AUTH PLAIN base64\r\n" */

static void conn_next(struct bench_conn *conn);
static void conn_fail(struct bench_conn *conn, const char *why);
static void conn_connect(struct bench_conn *conn);
static void conn_finish(struct bench_conn *conn);
static void conn_recv(struct bench_conn *conn);
static void conn_close(struct bench_conn *conn);

/* usage - the flags, then exit 2. */
static _Noreturn void usage(void)
{
	fprintf(stderr,
		"usage: ringmail-bench --target HOST:PORT [--connections N]\n"
		"  [--messages N | --duration S] [--size BYTES | --size-dist B:P,B:P...]\n"
		"  [--rcpts N] [--domains K] [--domain-pattern 'd%%d.test'] [--zipf S]\n"
		"  [--pipelining on|off] [--rate MSGS_PER_S] [--messages-per-connection N]\n"
		"  [--auth USER:PASSWORD] [--percentiles FILE]\n"
		"  [--timeout S] [--seed N] [--json] [--allow-rejects]\n"
		"  [--tls [--tls-reuse] [--handshake-only]]\n");
	exit(2);
}

/* budget_left - may another message be started? */
static int budget_left(void)
{
	if (interrupted)
		return 0;
	if (opt.messages != 0 && res.attempted >= opt.messages)
		return 0;
	if (opt.duration_s != 0 && bench_mono_us() - start_us >= opt.duration_s * 1000000)
		return 0;
	return 1;
}

/* pick_size - the next message size from --size or --size-dist. */
static uint64_t pick_size(void)
{
	double u = bench_rng_unit(&rng);

	for (int i = 0; i < opt.size_count - 1; i++)
		if (u < opt.size_cdf[i])
			return opt.sizes[i];
	return opt.sizes[opt.size_count - 1];
}

/* pick_domain - 1..K, uniform or Zipf by a binary search of the CDF. */
static uint64_t pick_domain(void)
{
	if (opt.domains <= 1)
		return 1;
	if (domain_cdf == NULL)
		return 1 + bench_rng_next(&rng) % opt.domains;
	double u = bench_rng_unit(&rng);
	uint64_t lo = 0, hi = opt.domains - 1;

	while (lo < hi) {
		uint64_t mid = (lo + hi) / 2;

		if (domain_cdf[mid] > u)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo + 1;
}

/* domain_format - the pattern with its %d replaced by n (no printf format
 * from the command line). */
static void domain_format(char *buf, size_t size, uint64_t n)
{
	const char *mark = strstr(opt.domain_pattern, "%d");

	if (mark == NULL) {
		snprintf(buf, size, "%s", opt.domain_pattern);
		return;
	}
	snprintf(buf, size, "%.*s%llu%s", (int)(mark - opt.domain_pattern),
		 opt.domain_pattern, (unsigned long long)n, mark + 2);
}

/* out_reserve - room for len more output bytes. */
static void out_reserve(struct bench_conn *conn, size_t len)
{
	if (conn->out_len + len <= conn->out_cap)
		return;
	while (conn->out_len + len > conn->out_cap)
		conn->out_cap *= 2;
	conn->out = realloc(conn->out, conn->out_cap);
	if (conn->out == NULL)
		log_fatal("out of memory");
}

/* out_add - queue bytes for the next send. */
static void out_add(struct bench_conn *conn, const char *data, size_t len)
{
	out_reserve(conn, len);
	memcpy(conn->out + conn->out_len, data, len);
	conn->out_len += len;
}

/* conn_send - write the queued output (encrypted first under TLS); the
 * completion decides what next. */
static void conn_send(struct bench_conn *conn)
{
	const char *data = conn->out + conn->out_sent;
	size_t len = conn->out_len - conn->out_sent;

	if (conn->tls != NULL) {
		if (conn->tls_up && bench_wire_encrypt(&conn->wire, conn->tls, conn->out,
						       &conn->out_sent, conn->out_len) != 0) {
			log_warn("tls_write", "conn=%d why=%s", conn->index,
				 tls_strerror(conn->tls));
			conn_fail(conn, "tls write");
			return;
		}
		data = conn->wire.buf + conn->wire.sent;
		len = conn->wire.len - conn->wire.sent;
	}
	struct io_uring_sqe *sqe = bench_ring_sqe(&ring);

	conn->busy = 1;
	io_uring_prep_send(sqe, conn->fd, data, len, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, USER_DATA(conn, OP_SEND));
}

/* conn_recv - read replies, with a linked timeout as the reply deadline. */
static void conn_recv(struct bench_conn *conn)
{
	struct io_uring_sqe *sqe;

	/* The recv and its timeout must go to the kernel in one submission. */
	if (io_uring_sq_space_left(&ring) < 2)
		io_uring_submit(&ring);
	sqe = bench_ring_sqe(&ring);
	conn->busy = 1;
	bench_lines_compact(&conn->in);
	if (conn->tls != NULL)
		io_uring_prep_recv(sqe, conn->fd, conn->raw, BENCH_INPUT_CAP, 0);
	else
		io_uring_prep_recv(sqe, conn->fd, conn->in.buf + conn->in.len,
				   conn->in.cap - conn->in.len, 0);
	io_uring_sqe_set_data64(sqe, USER_DATA(conn, OP_RECV));
	sqe->flags |= IOSQE_IO_LINK;
	sqe = bench_ring_sqe(&ring);
	io_uring_prep_link_timeout(sqe, &reply_timeout, 0);
	io_uring_sqe_set_data64(sqe, USER_DATA(NULL, OP_IGNORE));
}

/* envelope_build - MAIL, RCPTs and DATA for a new message, as lines in
 * conn->commands, so they can go out together or one at a time. */
static void envelope_build(struct bench_conn *conn)
{
	size_t len = 0;
	unsigned line = 0;
	char domain[200];

	conn->command_offsets[line++] = len;
	len += (size_t)snprintf(conn->commands + len, sizeof(conn->commands) - len,
				"MAIL FROM:<bench@ringmail.test> SIZE=%llu\r\n",
				(unsigned long long)conn->size);
	for (uint64_t i = 0; i < opt.rcpts; i++) {
		domain_format(domain, sizeof(domain), pick_domain());
		conn->command_offsets[line++] = len;
		int n = snprintf(conn->commands + len, sizeof(conn->commands) - len,
				 "RCPT TO:<u%llu@%s>\r\n",
				 (unsigned long long)(bench_rng_next(&rng) % 100000), domain);

		if (i == 0)
			snprintf(conn->first_rcpt, sizeof(conn->first_rcpt), "%.*s",
				 n - 12, conn->commands + len + 9);
		len += (size_t)n;
	}
	conn->command_offsets[line++] = len;
	len += (size_t)snprintf(conn->commands + len, sizeof(conn->commands) - len, "DATA\r\n");
	conn->command_offsets[line] = len;
}

/* envelope_send - queue envelope command index i (all of them if pipelining). */
static void envelope_send(struct bench_conn *conn, unsigned i)
{
	unsigned last = conn->pipelining ? (unsigned)opt.rcpts + 2 : i + 1;
	size_t from = conn->command_offsets[i], to = conn->command_offsets[last];

	conn->out_len = conn->out_sent = 0;
	out_add(conn, conn->commands + from, to - from);
	conn_send(conn);
}

/* message_start - a new transaction on an idle, greeted connection. */
static void message_start(struct bench_conn *conn)
{
	conn->number = ++res.attempted;
	if (opt.rate != 0)
		conn->due_us = start_us + (conn->number - 1) * 1000000 / opt.rate;
	conn->conn_messages++;
	conn->size = pick_size();
	conn->replies_seen = 0;
	conn->rcpt_ok = 0;
	conn->fail_class = 0;
	envelope_build(conn);
	conn->phase = PHASE_ENVELOPE;
	envelope_send(conn, 0);
}

/* body_build - headers, 76-character filler lines up to the size, and the
 * final dot. The stamp is taken now, as the message goes out. */
static void body_build(struct bench_conn *conn)
{
	char header[1024], date[64];
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	int n = snprintf(header, sizeof(header),
			 "From: <bench@ringmail.test>\r\nTo: <%s>\r\n"
			 "Subject: ringmail-bench message %llu\r\nDate: %s\r\n"
			 "Message-ID: <%llu.%d.%d@ringmail-bench>\r\n"
			 "X-Ringmail-Stamp: %llu\r\n\r\n",
			 conn->first_rcpt, (unsigned long long)conn->number, date,
			 (unsigned long long)conn->number, conn->index, (int)getpid(),
			 (unsigned long long)bench_wall_us());
	size_t remaining = conn->size > (uint64_t)n ? conn->size - (uint64_t)n : 0;
	size_t whole = remaining / (BENCH_LINE + 2) * (BENCH_LINE + 2);
	size_t rest = remaining - whole;

	conn->out_len = conn->out_sent = 0;
	out_reserve(conn, (size_t)n + remaining + 8);
	out_add(conn, header, (size_t)n);
	out_add(conn, filler, whole);
	if (rest >= 3) {
		out_add(conn, filler, rest - 2);
		out_add(conn, "\r\n", 2);
	}
	out_add(conn, ".\r\n", 3);
}

/* message_done - count the outcome and go on with the next message. */
static void message_done(struct bench_conn *conn, int code)
{
	if (code / 100 == 2) {
		res.accepted++;
		res.bytes += conn->size;
		end_us = bench_mono_us();
		bench_hist_add(&res.service, end_us - conn->dot_us);
		bench_hist_add(&res.latency, end_us - (opt.rate != 0 ? conn->due_us : conn->dot_us));
	} else if (code / 100 == 4) {
		res.rejected_4xx++;
	} else {
		res.rejected_5xx++;
	}
	conn->phase = PHASE_IDLE;
}

/* message_refused - the envelope failed: count it and reset the session. */
static void message_refused(struct bench_conn *conn, int code)
{
	message_done(conn, conn->fail_class ? conn->fail_class * 100 : code);
	conn->phase = PHASE_RSET;
	conn->rset_due = 1;
	conn->out_len = conn->out_sent = 0;
	out_add(conn, "RSET\r\n", 6);
	conn_send(conn);
}

/* envelope_reply - the reply to MAIL (index 0), a RCPT, or DATA (last). */
static void envelope_reply(struct bench_conn *conn, int code)
{
	unsigned i = conn->replies_seen++;
	unsigned data_index = (unsigned)opt.rcpts + 1;

	if (i == 0) {
		if (code / 100 != 2)
			conn->fail_class = code / 100;
	} else if (i < data_index) {
		if (code / 100 == 2) {
			res.rcpt_accepted++;
			conn->rcpt_ok++;
		} else if (code / 100 == 4) {
			res.rcpt_4xx++;
		} else {
			res.rcpt_5xx++;
		}
		if (i == data_index - 1 && conn->rcpt_ok == 0 && conn->fail_class == 0)
			conn->fail_class = code / 100 == 4 ? 4 : 5;
	} else if (code == 354 && conn->fail_class == 0) {
		body_build(conn);
		conn->phase = PHASE_BODY;
		conn_send(conn);
		return;
	} else if (code == 354) {
		/* RFC 2920: DATA accepted though no recipient was; end it empty. */
		message_done(conn, conn->fail_class * 100);
		conn->phase = PHASE_RSET;
		conn->out_len = conn->out_sent = 0;
		out_add(conn, ".\r\nRSET\r\n", 9);
		conn->rset_due = 2;
		conn_send(conn);
		return;
	} else {
		message_refused(conn, code);
		return;
	}
	if (conn->pipelining)
		return;		/* the rest of the replies are on their way */
	if (conn->fail_class != 0)
		message_refused(conn, code);
	else
		envelope_send(conn, conn->replies_seen);
}

/* tls_start - "220 Ready to start TLS": drop every cleartext byte still
 * buffered (the header's STARTTLS rule) and send the ClientHello. */
static int tls_start(struct bench_conn *conn)
{
	int r;

	conn->in.start = conn->in.len = 0;
	conn->tls = tls_session_new(tls_cfg, TLS_VERIFY_NONE, NULL);
	if (conn->tls == NULL)
		log_fatal("tls_session_new failed");
	if (tls_saved != NULL && tls_session_resume(conn->tls, tls_saved) != 0)
		log_warn("tls_resume", "conn=%d saved session refused", conn->index);
	conn->wire.len = conn->wire.sent = 0;
	conn->phase = PHASE_HANDSHAKE;
	while ((r = tls_handshake(conn->tls)) == TLS_WANT_WRITE)
		bench_wire_take(&conn->wire, conn->tls);
	bench_wire_take(&conn->wire, conn->tls);
	if (r != TLS_WANT_READ || conn->wire.len == 0) {
		conn_fail(conn, "tls handshake start");
		return -1;
	}
	conn_send(conn);
	return 0;
}

/* tls_handshake_step - ciphertext arrived during the handshake: drive it,
 * send what it says, and once done say EHLO again over TLS. */
static void tls_handshake_step(struct bench_conn *conn)
{
	struct tls_info info;
	int r;

	while ((r = tls_handshake(conn->tls)) == TLS_WANT_WRITE)
		bench_wire_take(&conn->wire, conn->tls);
	bench_wire_take(&conn->wire, conn->tls);
	if (r == TLS_WANT_READ) {
		if (conn->wire.len > conn->wire.sent)
			conn_send(conn);
		else
			conn_recv(conn);
		return;
	}
	if (r != 0) {
		log_warn("tls_handshake", "conn=%d why=%s", conn->index,
			 tls_strerror(conn->tls));
		conn_fail(conn, "tls handshake");
		return;
	}
	conn->tls_up = 1;
	res.tls_handshakes++;
	tls_session_info(conn->tls, &info);
	if (info.resumed)
		res.tls_resumed++;
	if (opt.tls_reuse && tls_saved == NULL)
		tls_saved = tls_session_save(conn->tls);
	/* RFC 3207: forget what the server said in cleartext; ask again. */
	conn->offers_pipelining = 0;
	conn->phase = PHASE_EHLO;
	conn->out_len = conn->out_sent = 0;
	out_add(conn, "EHLO ringmail-bench.test\r\n", 26);
	conn_send(conn);	/* the client Finished may go out with it */
}

/* tls_input - n bytes of ciphertext arrived in raw: feed them and read the
 * plaintext out into the reply buffer, until TLS_WANT_READ. Returns 0 when
 * replies may be parsed, -1 when the connection was taken care of. */
static int tls_input(struct bench_conn *conn, size_t n)
{
	if (tls_feed_ciphertext(conn->tls, conn->raw, n) != 0) {
		conn_fail(conn, "tls input full");
		return -1;
	}
	if (!conn->tls_up) {
		tls_handshake_step(conn);
		return -1;
	}
	bench_lines_compact(&conn->in);
	for (;;) {
		ssize_t got = tls_read(conn->tls, conn->in.buf + conn->in.len,
				       conn->in.cap - conn->in.len);

		bench_wire_take(&conn->wire, conn->tls);
		if (got == TLS_WANT_READ || got == 0)
			return 0;	/* 0: close_notify (after 221, say); the
					 * replies decide, the socket's EOF follows */
		if (got == TLS_WANT_WRITE)
			continue;
		if (got < 0) {
			conn_fail(conn, "tls read");
			return -1;
		}
		conn->in.len += (size_t)got;
		if (conn->in.len == conn->in.cap) {
			conn_fail(conn, "reply line too long");
			return -1;
		}
	}
}

/* session_ready - EHLO (and AUTH) done: mail may flow. */
static void session_ready(struct bench_conn *conn)
{
	conn->connect_failures = 0;
	conn->pipelining = opt.pipelining && conn->offers_pipelining;
	conn->phase = PHASE_IDLE;
}

/* session_reply - one complete reply (its last line's code) in any phase.
 * Returns 0, or -1 when the connection was failed. */
static int session_reply(struct bench_conn *conn, int code)
{
	if (code == 421) {
		conn_fail(conn, "421");
		return -1;
	}
	switch (conn->phase) {
	case PHASE_GREETING:
		if (code != 220) {
			conn_fail(conn, "greeting");
			return -1;
		}
		conn->phase = PHASE_EHLO;
		conn->out_len = conn->out_sent = 0;
		out_add(conn, "EHLO ringmail-bench.test\r\n", 26);
		conn_send(conn);
		return 0;
	case PHASE_EHLO:
		if (code != 250) {
			conn_fail(conn, "ehlo");
			return -1;
		}
		if (opt.tls && conn->tls == NULL) {
			if (!conn->offers_starttls) {
				conn_fail(conn, "STARTTLS not offered");
				return -1;
			}
			conn->phase = PHASE_STARTTLS;
			conn->out_len = conn->out_sent = 0;
			out_add(conn, "STARTTLS\r\n", 10);
			conn_send(conn);
			return 0;
		}
		if (auth_line != NULL) {
			conn->phase = PHASE_AUTH;
			conn->out_len = conn->out_sent = 0;
			out_add(conn, auth_line, strlen(auth_line));
			conn_send(conn);
			return 0;
		}
		session_ready(conn);
		return 0;
	case PHASE_AUTH:
		if (code != 235) {
			conn_fail(conn, "auth");
			return -1;
		}
		session_ready(conn);
		return 0;
	case PHASE_STARTTLS:
		if (code != 220) {
			conn_fail(conn, "starttls");
			return -1;
		}
		return tls_start(conn);
	case PHASE_ENVELOPE:
		envelope_reply(conn, code);
		return 0;
	case PHASE_BODY:
		message_done(conn, code);
		return 0;
	case PHASE_RSET:
		if (--conn->rset_due == 0)
			conn->phase = PHASE_IDLE;
		return 0;
	case PHASE_QUIT:
		/* Reconnect only when --messages-per-connection sent us away. */
		conn_close(conn);
		if (budget_left())
			conn_connect(conn);
		else
			conn_finish(conn);
		return -1;
	default:
		conn_fail(conn, "unexpected reply");
		return -1;
	}
}

/* replies_read - parse every complete reply line in the input. */
static int replies_read(struct bench_conn *conn)
{
	const char *line;
	size_t len;

	while ((len = bench_lines_next(&conn->in, &line)) != 0) {
		if (len < 4 || line[0] < '2' || line[0] > '5') {
			conn_fail(conn, "bad reply");
			return -1;
		}
		int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');

		if (conn->phase == PHASE_EHLO && len >= 14 &&
		    strncasecmp(line + 4, "PIPELINING", 10) == 0)
			conn->offers_pipelining = 1;
		if (conn->phase == PHASE_EHLO && len >= 12 &&
		    strncasecmp(line + 4, "STARTTLS", 8) == 0)
			conn->offers_starttls = 1;
		if (line[3] == '-')
			continue;
		if (session_reply(conn, code) != 0)
			return -1;
		if (conn->busy)
			break;	/* we sent something: anything more is out of turn */
		if (conn->phase == PHASE_DONE)
			return -1;	/* failed inside (a TLS write error) */
	}
	if (bench_lines_pending(&conn->in) > conn->in.cap / 2) {
		conn_fail(conn, "reply line too long");
		return -1;
	}
	return 0;
}

/* conn_close - close the socket and drop the TLS session. */
static void conn_close(struct bench_conn *conn)
{
	if (conn->fd >= 0)
		close(conn->fd);
	conn->fd = -1;
	conn->tls = tls_session_free(conn->tls);
	conn->tls_up = 0;
	conn->wire.len = conn->wire.sent = 0;
}

/* conn_connect - open a socket and connect it through the ring. */
static void conn_connect(struct bench_conn *conn)
{
	int one = 1;

	conn->fd = socket(opt.target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (conn->fd < 0)
		log_fatal("socket: %s", strerror(errno));
	setsockopt(conn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	conn->phase = PHASE_CONNECT;
	conn->in.start = conn->in.len = 0;
	conn->offers_pipelining = 0;
	conn->offers_starttls = 0;
	conn->conn_messages = 0;
	conn->connect_us = bench_mono_us();
	res.connections_opened++;
	struct io_uring_sqe *sqe = bench_ring_sqe(&ring);

	conn->busy = 1;
	io_uring_prep_connect(sqe, conn->fd, (struct sockaddr *)&opt.target, opt.target_len);
	io_uring_sqe_set_data64(sqe, USER_DATA(conn, OP_CONNECT));
}

/* conn_finish - this connection has nothing more to do. */
static void conn_finish(struct bench_conn *conn)
{
	conn_close(conn);
	conn->phase = PHASE_DONE;
	conns_done++;
}

/* conn_fail - a connection error: count it, lose the message in flight, and
 * reconnect after 50 ms while there is work left. */
static void conn_fail(struct bench_conn *conn, const char *why)
{
	res.connection_errors++;
	if (conn->phase == PHASE_ENVELOPE || conn->phase == PHASE_BODY)
		res.lost++;
	if (conn->phase == PHASE_CONNECT || conn->phase == PHASE_GREETING ||
	    conn->phase == PHASE_EHLO || conn->phase == PHASE_STARTTLS ||
	    conn->phase == PHASE_HANDSHAKE || conn->phase == PHASE_AUTH)
		conn->connect_failures++;
	log_debug("connection_error", "conn=%d why=%s", conn->index, why);
	conn_close(conn);
	if (conn->connect_failures >= BENCH_CONNECT_TRIES)
		log_warn("connection_gave_up", "conn=%d tries=%d why=%s", conn->index,
			 conn->connect_failures, why);
	if (!budget_left() || conn->connect_failures >= BENCH_CONNECT_TRIES) {
		conn->phase = PHASE_DONE;
		conns_done++;
		return;
	}
	conn->phase = PHASE_RETRY;
	conn->retry.tv_sec = 0;
	conn->retry.tv_nsec = 50 * 1000000;
	struct io_uring_sqe *sqe = bench_ring_sqe(&ring);

	conn->busy = 1;
	io_uring_prep_timeout(sqe, &conn->retry, 0, 0);
	io_uring_sqe_set_data64(sqe, USER_DATA(conn, OP_RETRY));
}

/* conn_next - the connection is idle: start a message, wait, or quit. */
static void conn_next(struct bench_conn *conn)
{
	if (opt.handshake_only && conn->conn_messages == 0) {
		/* the session is the "message": connect to EHLO after TLS */
		conn->conn_messages = 1;
		res.attempted++;
		res.accepted++;
		end_us = bench_mono_us();
		bench_hist_add(&res.latency, end_us - conn->connect_us);
	}
	if (opt.per_connection != 0 && conn->conn_messages >= opt.per_connection &&
	    budget_left()) {
		conn->phase = PHASE_QUIT;	/* QUIT, then reconnect */
	} else if (!budget_left()) {
		conn->phase = PHASE_QUIT;
	} else if (opt.rate != 0 && released <= res.attempted) {
		return;				/* the ticker will start it */
	} else {
		message_start(conn);
		return;
	}
	conn->out_len = conn->out_sent = 0;
	out_add(conn, "QUIT\r\n", 6);
	conn_send(conn);
}

/* on_send - output written, perhaps only partly. */
static void on_send(struct bench_conn *conn, int result)
{
	if (result < 0) {
		conn_fail(conn, "send");
		return;
	}
	if (conn->tls != NULL) {
		conn->wire.sent += (size_t)result;
		if (conn->wire.sent < conn->wire.len) {
			conn_send(conn);
			return;
		}
		conn->wire.len = conn->wire.sent = 0;
	} else {
		conn->out_sent += (size_t)result;
		if (conn->out_sent < conn->out_len) {
			conn_send(conn);
			return;
		}
	}
	if (conn->phase == PHASE_BODY) {
		conn->dot_us = bench_mono_us();
		res.sent++;
	}
	conn_recv(conn);
}

/* on_recv - replies arrived; answer them, then read on or move on. */
static void on_recv(struct bench_conn *conn, int result)
{
	if (result == -ECANCELED) {
		res.timeouts++;
		conn_fail(conn, "timeout");
		return;
	}
	if (result <= 0) {
		conn_fail(conn, result == 0 ? "closed" : "recv");
		return;
	}
	if (conn->tls != NULL) {
		if (tls_input(conn, (size_t)result) != 0)
			return;
	} else {
		conn->in.len += (size_t)result;
	}
	if (replies_read(conn) != 0 || conn->busy)
		return;
	if (conn->phase == PHASE_IDLE)
		conn_next(conn);
	else
		conn_recv(conn);
}

/* tick_arm - wake at the next message's due time (--rate; an absolute
 * CLOCK_MONOTONIC timeout, so the wake-up does not drift), else 100 ms
 * from now for --duration and Ctrl-C. */
static void tick_arm(void)
{
	struct io_uring_sqe *sqe = bench_ring_sqe(&ring);
	uint64_t now = bench_mono_us(), at = now + 100000;

	if (opt.rate != 0) {
		uint64_t next_due = start_us + released * 1000000 / opt.rate;

		if (next_due < at)
			at = next_due > now ? next_due : now;
	}
	tick_at.tv_sec = (long long)(at / 1000000);
	tick_at.tv_nsec = (long long)(at % 1000000) * 1000;
	io_uring_prep_timeout(sqe, &tick_at, 0, IORING_TIMEOUT_ABS);
	io_uring_sqe_set_data64(sqe, USER_DATA(NULL, OP_TICK));
}

/* on_tick - open-loop releases and the end of --duration. */
static void on_tick(void)
{
	if (opt.rate != 0) {
		uint64_t due = (bench_mono_us() - start_us) * opt.rate / 1000000 + 1;

		released = opt.messages != 0 && due > opt.messages ? opt.messages : due;
	}
	for (uint64_t i = 0; i < opt.connections; i++) {
		struct bench_conn *conn = conns[i];

		if (conn->phase != PHASE_IDLE || conn->busy)
			continue;
		if (budget_left() && opt.rate != 0 && released <= res.attempted)
			break;
		conn_next(conn);
	}
	if (conns_done < opt.connections)
		tick_arm();
}

/* completion - dispatch one CQE. */
static void completion(const struct io_uring_cqe *cqe)
{
	uint64_t data = io_uring_cqe_get_data64(cqe);
	struct bench_conn *conn = (void *)(uintptr_t)(data & ~(uint64_t)OP_MASK);

	if (conn != NULL)
		conn->busy = 0;
	switch (data & OP_MASK) {
	case OP_CONNECT:
		if (cqe->res < 0) {
			conn_fail(conn, "connect");
			return;
		}
		conn->phase = PHASE_GREETING;
		conn_recv(conn);
		break;
	case OP_SEND:
		on_send(conn, cqe->res);
		break;
	case OP_RECV:
		on_recv(conn, cqe->res);
		break;
	case OP_RETRY:
		conn_connect(conn);
		break;
	case OP_TICK:
		on_tick();
		break;
	case OP_IGNORE:
		break;
	default:
		log_panic("unknown completion user_data=%llx", (unsigned long long)data);
	}
}

/* results_print - the report, as text or one JSON object, on stdout. */
static void results_print(void)
{
	double elapsed = (double)((end_us > start_us ? end_us : bench_mono_us()) - start_us) / 1e6;
	double rate = elapsed > 0 ? (double)res.accepted / elapsed : 0;
	double mbps = elapsed > 0 ? (double)res.bytes / elapsed / 1e6 : 0;
	char latency[256], service[256];

	bench_hist_json(&res.latency, latency, sizeof(latency));
	bench_hist_json(&res.service, service, sizeof(service));
	if (opt.json) {
		printf("{\"target\":\"%s\",\"connections\":%llu,\"pipelining\":%s,"
		       "\"elapsed_s\":%.3f,\"messages\":{\"attempted\":%llu,\"sent\":%llu,"
		       "\"accepted\":%llu,\"rejected_4xx\":%llu,\"rejected_5xx\":%llu,"
		       "\"lost\":%llu},\"recipients\":{\"accepted\":%llu,\"rejected_4xx\":%llu,"
		       "\"rejected_5xx\":%llu},\"connections_opened\":%llu,"
		       "\"connection_errors\":%llu,\"timeouts\":%llu,\"bytes\":%llu,"
		       "\"tls_handshakes\":%llu,\"tls_resumed\":%llu,\"msgs_per_s\":%.1f,\"mb_per_s\":%.2f,\"rate_target\":%llu,"
		       "\"latency_from\":\"%s\",\"latency_us\":%s,\"service_latency_us\":%s}\n",
		       opt.target_text, (unsigned long long)opt.connections,
		       opt.pipelining ? "true" : "false", elapsed,
		       (unsigned long long)res.attempted, (unsigned long long)res.sent,
		       (unsigned long long)res.accepted, (unsigned long long)res.rejected_4xx,
		       (unsigned long long)res.rejected_5xx, (unsigned long long)res.lost,
		       (unsigned long long)res.rcpt_accepted, (unsigned long long)res.rcpt_4xx,
		       (unsigned long long)res.rcpt_5xx,
		       (unsigned long long)res.connections_opened,
		       (unsigned long long)res.connection_errors,
		       (unsigned long long)res.timeouts, (unsigned long long)res.bytes,
		       (unsigned long long)res.tls_handshakes,
		       (unsigned long long)res.tls_resumed, rate, mbps,
		       (unsigned long long)opt.rate, opt.rate != 0 ? "due" : "dot", latency, service);
		return;
	}
	printf("target %s, %llu connections, pipelining %s\n", opt.target_text,
	       (unsigned long long)opt.connections, opt.pipelining ? "on" : "off");
	printf("messages:   attempted %llu sent %llu accepted %llu rejected 4xx %llu "
	       "5xx %llu lost %llu\n",
	       (unsigned long long)res.attempted, (unsigned long long)res.sent,
	       (unsigned long long)res.accepted, (unsigned long long)res.rejected_4xx,
	       (unsigned long long)res.rejected_5xx, (unsigned long long)res.lost);
	printf("recipients: accepted %llu rejected 4xx %llu 5xx %llu\n",
	       (unsigned long long)res.rcpt_accepted, (unsigned long long)res.rcpt_4xx,
	       (unsigned long long)res.rcpt_5xx);
	printf("connections: opened %llu errors %llu timeouts %llu\n",
	       (unsigned long long)res.connections_opened,
	       (unsigned long long)res.connection_errors, (unsigned long long)res.timeouts);
	if (opt.tls)
		printf("tls: handshakes %llu resumed %llu\n",
		       (unsigned long long)res.tls_handshakes,
		       (unsigned long long)res.tls_resumed);
	printf("elapsed %.3f s: %.1f msgs/s, %.2f MB/s\n", elapsed, rate, mbps);
	if (opt.rate != 0)
		printf("open loop: target %llu msgs/s\n", (unsigned long long)opt.rate);
	printf("latency (%s to reply, us): p50 %llu p90 %llu p99 %llu p99.9 %llu max %llu\n",
	       opt.rate != 0 ? "due time" : "dot",
	       (unsigned long long)bench_hist_quantile(&res.latency, 0.5),
	       (unsigned long long)bench_hist_quantile(&res.latency, 0.9),
	       (unsigned long long)bench_hist_quantile(&res.latency, 0.99),
	       (unsigned long long)bench_hist_quantile(&res.latency, 0.999),
	       (unsigned long long)res.latency.max);
	if (opt.rate != 0)
		printf("service latency (dot to reply, us): p50 %llu p99 %llu p99.9 %llu\n",
		       (unsigned long long)bench_hist_quantile(&res.service, 0.5),
		       (unsigned long long)bench_hist_quantile(&res.service, 0.99),
		       (unsigned long long)bench_hist_quantile(&res.service, 0.999));
}

/* percentiles_write - --percentiles FILE: the distribution, in ms. */
static void percentiles_write(void)
{
	FILE *f = fopen(opt.percentiles, "w");

	if (f == NULL) {
		log_warn("percentiles", "file=%s why=%s", opt.percentiles, strerror(errno));
		return;
	}
	bench_hist_percentiles(&res.latency, f, 5, 1000.0);
	if (fclose(f) != 0)
		log_warn("percentiles", "file=%s why=%s", opt.percentiles, strerror(errno));
}

/* auth_setup - --auth USER:PASSWORD into the AUTH PLAIN line (RFC 4616:
 * authzid empty, NUL, user, NUL, password). */
static void auth_setup(void)
{
	const char *colon = strchr(opt.auth, ':');

	if (colon == NULL || colon == opt.auth)
		usage();
	size_t user_len = (size_t)(colon - opt.auth), pass_len = strlen(colon + 1);
	size_t raw_len = user_len + pass_len + 2;
	unsigned char *raw = malloc(raw_len);
	size_t b64_cap = (raw_len + 2) / 3 * 4 + 1, b64_len = 0;
	unsigned char *b64 = malloc(b64_cap);

	if (raw == NULL || b64 == NULL)
		log_fatal("out of memory");
	raw[0] = '\0';
	memcpy(raw + 1, opt.auth, user_len);
	raw[1 + user_len] = '\0';
	memcpy(raw + 2 + user_len, colon + 1, pass_len);
	if (mbedtls_base64_encode(b64, b64_cap, &b64_len, raw, raw_len) != 0)
		log_fatal("base64 failed");
	if (asprintf(&auth_line, "AUTH PLAIN %s\r\n", (const char *)b64) < 0)
		log_fatal("out of memory");
	free(raw);
	free(b64);
}

/* size_dist_parse - "2000:0.8,100000:0.2" into sizes and a normalized CDF. */
static void size_dist_parse(const char *text)
{
	double total = 0;
	const char *p = text;

	opt.size_count = 0;
	while (*p != '\0') {
		char *end;

		if (opt.size_count == BENCH_MAX_SIZES)
			usage();
		unsigned long long size = strtoull(p, &end, 10);

		if (end == p || *end != ':')
			usage();
		p = end + 1;
		double weight = strtod(p, &end);

		if (end == p || weight < 0 || (*end != ',' && *end != '\0'))
			usage();
		total += weight;
		opt.sizes[opt.size_count] = size;
		opt.size_cdf[opt.size_count++] = total;
		p = *end == ',' ? end + 1 : end;
	}
	if (opt.size_count == 0 || total <= 0)
		usage();
	for (int i = 0; i < opt.size_count; i++)
		opt.size_cdf[i] /= total;
}

/* uint_arg - an unsigned flag value. */
static uint64_t uint_arg(const char *text)
{
	uint64_t v;

	if (bench_parse_uint(text, &v) != 0)
		usage();
	return v;
}

/* options_parse - flags into opt. */
static void options_parse(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "target", required_argument, NULL, 't' },
		{ "connections", required_argument, NULL, 'c' },
		{ "messages", required_argument, NULL, 'm' },
		{ "duration", required_argument, NULL, 'd' },
		{ "size", required_argument, NULL, 's' },
		{ "size-dist", required_argument, NULL, 'S' },
		{ "rcpts", required_argument, NULL, 'r' },
		{ "domains", required_argument, NULL, 'k' },
		{ "domain-pattern", required_argument, NULL, 'p' },
		{ "zipf", required_argument, NULL, 'z' },
		{ "pipelining", required_argument, NULL, 'P' },
		{ "rate", required_argument, NULL, 'R' },
		{ "tls", no_argument, NULL, 'T' },
		{ "tls-reuse", no_argument, NULL, 'U' },
		{ "handshake-only", no_argument, NULL, 'H' },
		{ "json", no_argument, NULL, 'j' },
		{ "messages-per-connection", required_argument, NULL, 'M' },
		{ "timeout", required_argument, NULL, 'o' },
		{ "seed", required_argument, NULL, 'e' },
		{ "allow-rejects", no_argument, NULL, 'a' },
		{ "auth", required_argument, NULL, 'A' },
		{ "percentiles", required_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	opt.sizes[0] = 2048;
	opt.size_count = 1;
	while ((c = getopt_long(argc, argv, "t:c:m:d:s:r:jh", longopts, NULL)) != -1) {
		switch (c) {
		case 't': opt.target_text = optarg; break;
		case 'c': opt.connections = uint_arg(optarg); break;
		case 'm': opt.messages = uint_arg(optarg); break;
		case 'd': opt.duration_s = uint_arg(optarg); break;
		case 's': opt.sizes[0] = uint_arg(optarg); opt.size_count = 1; break;
		case 'S': size_dist_parse(optarg); break;
		case 'r': opt.rcpts = uint_arg(optarg); break;
		case 'k': opt.domains = uint_arg(optarg); break;
		case 'p': opt.domain_pattern = optarg; break;
		case 'z': opt.zipf = strtod(optarg, NULL); break;
		case 'P':
			if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0)
				usage();
			opt.pipelining = strcmp(optarg, "on") == 0;
			break;
		case 'R': opt.rate = uint_arg(optarg); break;
		case 'T': opt.tls = 1; break;
		case 'U': opt.tls_reuse = 1; break;
		case 'H': opt.handshake_only = 1; break;
		case 'j': opt.json = 1; break;
		case 'M': opt.per_connection = uint_arg(optarg); break;
		case 'o': opt.timeout_s = uint_arg(optarg); break;
		case 'e': opt.seed = uint_arg(optarg); break;
		case 'a': opt.allow_rejects = 1; break;
		case 'A': opt.auth = optarg; break;
		case 'F': opt.percentiles = optarg; break;
		default: usage();
		}
	}
	if (optind != argc || opt.target_text == NULL || opt.connections == 0 ||
	    opt.rcpts == 0 || opt.rcpts > BENCH_MAX_RCPTS || opt.domains == 0 ||
	    opt.timeout_s == 0 || (opt.messages == 0 && opt.duration_s == 0))
		usage();
	if (bench_addr_parse(opt.target_text, &opt.target, &opt.target_len) != 0)
		usage();
	if (opt.tls_reuse && !opt.tls)
		usage();
	if (opt.handshake_only)
		opt.per_connection = 1;
	if (opt.auth != NULL)
		auth_setup();
}

/* tables_setup - the filler text and the Zipf CDF. */
static void tables_setup(void)
{
	uint64_t largest = 0;

	for (int i = 0; i < opt.size_count; i++)
		if (opt.sizes[i] > largest)
			largest = opt.sizes[i];
	filler_len = (size_t)largest + BENCH_LINE + 2;
	filler = malloc(filler_len);
	if (filler == NULL)
		log_fatal("out of memory");
	for (size_t i = 0; i < filler_len; i++) {
		size_t column = i % (BENCH_LINE + 2);

		filler[i] = column == BENCH_LINE ? '\r' : column == BENCH_LINE + 1 ? '\n' :
			    (char)('a' + (i / (BENCH_LINE + 2) + column) % 26);
	}
	if (opt.zipf > 0 && opt.domains > 1) {
		double total = 0;

		domain_cdf = malloc(opt.domains * sizeof(*domain_cdf));
		if (domain_cdf == NULL)
			log_fatal("out of memory");
		for (uint64_t k = 0; k < opt.domains; k++) {
			total += 1.0 / pow((double)(k + 1), opt.zipf);
			domain_cdf[k] = total;
		}
		for (uint64_t k = 0; k < opt.domains; k++)
			domain_cdf[k] /= total;
	}
}

/* on_interrupt - SIGINT/SIGTERM: finish the messages in flight, then report. */
static void on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* conns_free - the connections, the TLS state and the tables, at exit. */
static void conns_free(void)
{
	for (uint64_t i = 0; i < opt.connections; i++) {
		bench_lines_free(&conns[i]->in);
		tls_session_free(conns[i]->tls);
		free(conns[i]->raw);
		free(conns[i]->wire.buf);
		free(conns[i]->out);
		free(conns[i]);
	}
	free(conns);
	tls_saved_session_free(tls_saved);
	tls_config_free(tls_cfg);
	free(filler);
	free(domain_cdf);
	free(auth_line);
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	int ret;

	log_open("-", LOG_LEVEL_WARN);
	options_parse(argc, argv);
	tables_setup();
	bench_rng_seed(&rng, opt.seed);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_interrupt;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	reply_timeout.tv_sec = (long long)opt.timeout_s;
	ret = bench_ring_init(&ring, 4096, NULL);
	if (ret < 0)
		log_fatal("io_uring_queue_init: %s", strerror(-ret));
	if (opt.tls) {
		char err[256];

		tls_cfg = tls_config_new_client(NULL, err, sizeof(err));
		if (tls_cfg == NULL)
			log_fatal("tls: %s", err);
	}
	conns = calloc(opt.connections, sizeof(*conns));
	if (conns == NULL)
		log_fatal("out of memory");
	start_us = bench_mono_us();
	for (uint64_t i = 0; i < opt.connections; i++) {
		struct bench_conn *conn = aligned_alloc(16, sizeof(*conn));

		if (conn == NULL)
			log_fatal("out of memory");
		memset(conn, 0, sizeof(*conn));
		conn->index = (int)i;
		conn->out_cap = 4096;
		conn->out = malloc(conn->out_cap);
		conn->raw = opt.tls ? malloc(BENCH_INPUT_CAP) : NULL;
		if (conn->out == NULL || (opt.tls && conn->raw == NULL) || bench_lines_init(&conn->in, BENCH_INPUT_CAP) != 0)
			log_fatal("out of memory");
		conns[i] = conn;
		conn_connect(conn);
	}
	on_tick();
	while (conns_done < opt.connections) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		ret = io_uring_submit_and_wait(&ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
			log_fatal("io_uring_submit_and_wait: %s", strerror(-ret));
		io_uring_for_each_cqe(&ring, head, cqe) {
			completion(cqe);
			seen++;
		}
		io_uring_cq_advance(&ring, seen);
	}
	results_print();
	if (opt.percentiles != NULL)
		percentiles_write();
	io_uring_queue_exit(&ring);
	conns_free();
	if (res.connection_errors != 0 || res.lost != 0)
		return 1;
	if (!opt.allow_rejects && (res.rejected_4xx != 0 || res.rejected_5xx != 0 ||
				   res.rcpt_4xx != 0 || res.rcpt_5xx != 0))
		return 1;
	return 0;
}
