/*
 * ringmail-sink - an SMTP receiver for tests and benchmarks.
 *
 *   ringmail-sink --listen 127.0.0.1:2526 [--listen ...] [--listen-range A-B:PORT]
 *                 [--stats-file PATH] [--expect N [--timeout S]]
 *                 [--store DIR [--store-max N]]
 *                 [--chunking] [--domain-stats] [--seed N] [fault flags] [-v]
 *                 [--tls-cert PEM --tls-key PEM [--starttls-every N]]
 *
 * It accepts everything (unless told to fail), counts sessions, transactions,
 * messages, recipients and bytes, and measures the latency from the
 * X-Ringmail-Stamp header (wall clock microseconds at send time) to the
 * final dot. The stats file is a JSON object rewritten every 200 ms.
 * "dkim_signed" counts the accepted messages with a DKIM-Signature field in
 * their header, so a benchmark can tell that a relay signed what it sent;
 * --store --store-max N keeps only the first N messages, enough to verify a
 * sample of signatures without writing every message of a benchmark.
 *
 * One thread, one ring. Each connection has at most one request in the ring
 * (recv, send or a delay timeout): read a batch, answer every complete
 * command in it, send the answers in one write, then read again. That keeps
 * pipelining correct and makes freeing a connection trivial. Receives use a
 * provided buffer ring when the kernel has one, else the connection's own
 * input buffer. The protocol code (sink_command_*, sink_data_*) only appends
 * replies to the output buffer; the loop does all I/O.
 *
 * STARTTLS (RFC 3207), with --tls-cert and --tls-key: offered on every
 * listener, or on every Nth one (--starttls-every N, in the order the
 * addresses were given: 2 makes half of a --listen-range speak TLS). After
 * "220 Ready" is written the session's bytes go through relay/daemon/tls.h:
 * received ciphertext is fed in and the plaintext read out into the line
 * buffer; replies are encrypted whole into `wire`, which the ring sends.
 */
#include "bench_common.h"
#include "log.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define SINK_INPUT_CAP (64 * 1024)
#define SINK_LINE_MAX 4096		/* command lines; data lines longer are split */
#define SINK_RECV_BUFFERS 512
#define SINK_RECV_BUFFER_SIZE (16 * 1024)
#define SINK_MAX_LISTENERS 1024
#define SINK_PEER_SLOTS 4096
#define SINK_STATS_INTERVAL_MS 200
#define SINK_MESSAGE_MAX 104857600	/* what EHLO announces as SIZE */
#define SINK_DOMAIN_SLOTS 4096		/* --domain-stats: beyond it, "other" */
#define SINK_DOMAIN_MAX 64

enum sink_op { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_DELAY, OP_TIMER, OP_SIGNAL };
#define OP_MASK 7u
#define USER_DATA(ptr, op) ((uint64_t)(uintptr_t)(ptr) | (uint64_t)(op))

struct sink_options {
	const char *stats_file;
	const char *store_dir;
	uint64_t store_max;		/* --store keeps messages 1..N; 0 = all */
	uint64_t expect;
	uint64_t timeout_s;
	double fail_rcpt_4xx, fail_rcpt_5xx, fail_data_4xx, fail_mail_4xx, disconnect;
	uint64_t after_421;
	uint64_t delay_ms;
	uint64_t max_conn_per_client;
	uint64_t seed;
	int chunking;
	int domain_stats;
	int stall;
	int verbose;
	const char *tls_cert, *tls_key;
	uint64_t starttls_every;	/* offer STARTTLS on listener i when i % N == 0 */
};

struct sink_stats {
	uint64_t sessions, active, max_active, transactions, messages, recipients, bytes;
	uint64_t rejected_mail, rejected_rcpt_4xx, rejected_rcpt_5xx, rejected_data;
	uint64_t rejected_connections, disconnects, closed_421;
	uint64_t tls_sessions, tls_failures;
	uint64_t dkim_signed;		/* messages with a DKIM-Signature header field */
	struct bench_hist latency;
};

/* STATE_BDAT: inside a chunked transaction, where commands are still read. */
enum sink_state { STATE_GREETED, STATE_READY, STATE_MAIL, STATE_RCPT, STATE_DATA, STATE_BDAT };

struct sink_listener {
	int fd;
	int multishot;
	int starttls;		/* offer STARTTLS to its sessions */
	char name[64];
} __attribute__((aligned(16)));

/* One session. Invariants: out[sent..len) not yet written; at most one ring
 * request refers to the connection (so it can be freed on any completion). */
struct sink_conn {
	struct sink_conn *prev, *next;	/* every live session, to free at exit */
	int fd;
	enum sink_state state;
	struct bench_lines in;
	char *out;
	size_t out_len, out_sent, out_cap;
	int closing;		/* close after the output is written */
	int dropped;		/* injected disconnect: close now, say nothing */
	int delayed;		/* the delay timeout for this output has fired */
	uint32_t peer_slot;
	uint64_t session_messages;
	uint64_t rcpts;
	int data_headers;	/* still in the header part of DATA */
	int dkim_signed;	/* the header so far has a DKIM-Signature field */
	int data_midline;	/* the last data piece did not end with LF */
	uint64_t data_bytes;
	uint64_t stamp_us;
	uint64_t bdat_remaining;
	int bdat_last;
	int bdat_refuse;	/* consume the chunk, then answer with an error */
	char *message;		/* --store: the unstuffed message */
	size_t message_len, message_cap;
	uint32_t *rcpt_domains;	/* --domain-stats: slots of accepted RCPTs */
	size_t rcpt_domains_cap;
	char envelope[2048];	/* --store: X-Sink-Envelope-* header lines */
	size_t envelope_len;
	struct __kernel_timespec delay;
	/* STARTTLS: offered here; due once "220" is out; then the session, the
	 * raw input (when not from the buffer ring) and the ciphertext being
	 * written (wire). */
	int starttls_offered;
	int tls_due;
	int tls_up;		/* handshake done: plaintext flows through tls */
	struct tls_session *tls;
	char *raw;
	struct bench_wire wire;
} __attribute__((aligned(16)));

struct sink_domain_slot {
	char name[SINK_DOMAIN_MAX];
	uint64_t messages;		/* accepted messages with a recipient there */
};

struct sink_peer_slot {
	uint64_t key;
	uint64_t count;
};

static struct sink_options opt = { .seed = 1 };
static struct sink_stats stats;
static struct io_uring ring;
static struct bench_buf_ring recv_buffers;
static int have_buffer_ring;
static struct bench_rng rng;
static struct sink_listener *listeners[SINK_MAX_LISTENERS];
static int listener_count;
static struct sink_peer_slot peers[SINK_PEER_SLOTS];
static struct sink_domain_slot domains[SINK_DOMAIN_SLOTS + 1] = {
	[SINK_DOMAIN_SLOTS] = { .name = "other" },
};
static uint64_t domain_count;
static struct __kernel_timespec timer_interval = { 0, SINK_STATS_INTERVAL_MS * 1000000LL };
static struct signalfd_siginfo signal_info;
static int signal_fd = -1;
static int stopping;
static int expect_met;
static int exit_status;
static uint64_t start_us;
static struct sink_conn *conn_list;
static struct tls_config *tls_cfg;

static void conn_flush(struct sink_conn *conn);

/* usage - the flags, on stderr, then exit 2. */
static _Noreturn void usage(void)
{
	fprintf(stderr,
		"usage: ringmail-sink --listen IP:PORT [--listen ...] [--listen-range A-B:PORT]\n"
		"  [--stats-file PATH] [--expect N] [--timeout S] [--store DIR [--store-max N]]\n"
		"  [--chunking] [--domain-stats]\n"
		"  [--fail-rcpt-4xx PCT] [--fail-rcpt-5xx PCT] [--fail-data-4xx PCT]\n"
		"  [--fail-mail-4xx PCT] [--421-after N] [--disconnect PCT] [--delay-ms N]\n"
		"  [--max-conn-per-client N] [--stall] [--seed N] [-v]\n"
		"  [--tls-cert PEM --tls-key PEM [--starttls-every N]]\n"
		"recipients tempfail*@ get 451 4.7.1, permfail*@ get 550 5.1.1\n"
		"stats: dkim_signed counts messages with a DKIM-Signature header field\n");
	exit(2);
}

/* domains_json - "domains":{"d1.test":N,...}, for --domain-stats. */
static size_t domains_json(char *buf, size_t size)
{
	size_t len = (size_t)snprintf(buf, size, ",\"domains\":{");
	const char *sep = "";

	for (size_t i = 0; i <= SINK_DOMAIN_SLOTS && len < size; i++) {
		if (domains[i].messages == 0)
			continue;
		len += (size_t)snprintf(buf + len, size - len, "%s\"%s\":%llu", sep,
					domains[i].name, (unsigned long long)domains[i].messages);
		sep = ",";
	}
	if (len < size)
		len += (size_t)snprintf(buf + len, size - len, "}");
	return len;
}

/* stats_write - the stats JSON, atomically, if a stats file was asked for. */
static void stats_write(void)
{
	static char *json;
	static size_t json_size;
	char latency[256];

	if (opt.stats_file == NULL)
		return;
	size_t need = 2048 + (opt.domain_stats ? (domain_count + 1) * (SINK_DOMAIN_MAX + 32) : 0);

	if (json_size < need) {
		free(json);
		json = malloc(need);
		if (json == NULL)
			log_fatal("out of memory");
		json_size = need;
	}
	bench_hist_json(&stats.latency, latency, sizeof(latency));
	size_t n = (size_t)snprintf(json, json_size,
		"{\"sessions\":%llu,\"active_sessions\":%llu,\"max_active_sessions\":%llu,"
		"\"transactions\":%llu,"
		"\"messages\":%llu,\"recipients\":%llu,\"bytes\":%llu,"
		"\"rejected_mail\":%llu,\"rejected_rcpt_4xx\":%llu,\"rejected_rcpt_5xx\":%llu,"
		"\"rejected_data\":%llu,\"rejected_connections\":%llu,"
		"\"disconnects_injected\":%llu,\"closed_421\":%llu,"
		"\"tls_sessions\":%llu,\"tls_failures\":%llu,\"dkim_signed\":%llu,"
		"\"uptime_ms\":%llu,\"latency_us\":%s",
		(unsigned long long)stats.sessions, (unsigned long long)stats.active,
		(unsigned long long)stats.max_active, (unsigned long long)stats.transactions, (unsigned long long)stats.messages,
		(unsigned long long)stats.recipients, (unsigned long long)stats.bytes,
		(unsigned long long)stats.rejected_mail,
		(unsigned long long)stats.rejected_rcpt_4xx,
		(unsigned long long)stats.rejected_rcpt_5xx,
		(unsigned long long)stats.rejected_data,
		(unsigned long long)stats.rejected_connections,
		(unsigned long long)stats.disconnects, (unsigned long long)stats.closed_421,
		(unsigned long long)stats.tls_sessions, (unsigned long long)stats.tls_failures,
		(unsigned long long)stats.dkim_signed,
		(unsigned long long)((bench_mono_us() - start_us) / 1000), latency);
	if (opt.domain_stats)
		n += domains_json(json + n, json_size - n - 4);
	n += (size_t)snprintf(json + n, json_size - n, "}\n");
	int ret = bench_file_replace(opt.stats_file, json, n);

	if (ret < 0)
		log_warn("stats_write", "path=%s error=%s", opt.stats_file, strerror(-ret));
}

/* domain_slot_find - the counter of a recipient domain (lower-cased); names
 * that do not fit, or a full table, count as "other". */
static uint32_t domain_slot_find(const char *domain, size_t len)
{
	char name[SINK_DOMAIN_MAX];
	uint64_t hash = 1469598103934665603ULL;

	if (len == 0 || len >= SINK_DOMAIN_MAX)
		return SINK_DOMAIN_SLOTS;
	for (size_t i = 0; i < len; i++) {
		char c = domain[i];

		if (c == '"' || c == '\\' || (unsigned char)c < 0x20)
			return SINK_DOMAIN_SLOTS;	/* keep the JSON simple */
		name[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
		hash = (hash ^ (unsigned char)name[i]) * 1099511628211ULL;
	}
	name[len] = '\0';
	for (uint32_t i = 0, slot = (uint32_t)(hash % SINK_DOMAIN_SLOTS); i < SINK_DOMAIN_SLOTS;
	     i++, slot = (slot + 1) % SINK_DOMAIN_SLOTS) {
		if (domains[slot].name[0] == '\0') {
			memcpy(domains[slot].name, name, len + 1);
			domain_count++;
			return slot;
		}
		if (strcmp(domains[slot].name, name) == 0)
			return slot;
	}
	return SINK_DOMAIN_SLOTS;
}

/* domain_note - remember the accepted recipient's domain until the message ends. */
static void domain_note(struct sink_conn *conn, const char *arg, size_t len)
{
	const char *at = memrchr(arg, '@', len);
	size_t domain_len = at == NULL ? 0 : (size_t)(arg + len - 1 - (at + 1));

	if (conn->rcpts >= conn->rcpt_domains_cap) {
		conn->rcpt_domains_cap = conn->rcpt_domains_cap ? conn->rcpt_domains_cap * 2 : 8;
		conn->rcpt_domains = realloc(conn->rcpt_domains,
					     conn->rcpt_domains_cap * sizeof(uint32_t));
		if (conn->rcpt_domains == NULL)
			log_fatal("out of memory");
	}
	conn->rcpt_domains[conn->rcpts] = domain_slot_find(at == NULL ? "" : at + 1, domain_len);
}

/* peer_slot_find - the per-client connection counter for ss (open addressing). */
static uint32_t peer_slot_find(const struct sockaddr_storage *ss)
{
	uint64_t key = 1469598103934665603ULL;
	const unsigned char *bytes;
	size_t len;

	if (ss->ss_family == AF_INET6) {
		bytes = (const unsigned char *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
		len = 16;
	} else {
		bytes = (const unsigned char *)&((const struct sockaddr_in *)ss)->sin_addr;
		len = 4;
	}
	for (size_t i = 0; i < len; i++)
		key = (key ^ bytes[i]) * 1099511628211ULL;
	key |= 1;	/* 0 marks a free slot */
	for (uint32_t i = 0, slot = (uint32_t)key % SINK_PEER_SLOTS; i < SINK_PEER_SLOTS;
	     i++, slot = (slot + 1) % SINK_PEER_SLOTS) {
		if (peers[slot].key == key || peers[slot].key == 0 || peers[slot].count == 0) {
			if (peers[slot].key != key)
				peers[slot].count = 0;
			peers[slot].key = key;
			return slot;
		}
	}
	return (uint32_t)key % SINK_PEER_SLOTS;	/* table full: share a counter */
}

/* reply - append one reply line (CRLF added) to the output buffer. */
static __attribute__((format(printf, 2, 3))) void reply(struct sink_conn *conn,
							 const char *fmt, ...)
{
	va_list ap;

	for (;;) {
		size_t room = conn->out_cap - conn->out_len;

		va_start(ap, fmt);
		int n = vsnprintf(conn->out + conn->out_len, room, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n + 2 < room) {
			memcpy(conn->out + conn->out_len + n, "\r\n", 2);
			conn->out_len += (size_t)n + 2;
			return;
		}
		conn->out_cap *= 2;
		conn->out = realloc(conn->out, conn->out_cap);
		if (conn->out == NULL)
			log_fatal("out of memory");
	}
}

/* transaction_reset - forget the envelope and any partial message. */
static void transaction_reset(struct sink_conn *conn)
{
	if (conn->state > STATE_READY)
		conn->state = STATE_READY;
	conn->rcpts = 0;
	conn->data_bytes = 0;
	conn->stamp_us = 0;
	conn->dkim_signed = 0;
	conn->message_len = 0;
	conn->envelope_len = 0;
	conn->bdat_refuse = 0;
}

/* envelope_add - remember an envelope address as a header line for --store. */
static void envelope_add(struct sink_conn *conn, const char *name, const char *arg, size_t len)
{
	size_t room = sizeof(conn->envelope) - conn->envelope_len;
	int n = snprintf(conn->envelope + conn->envelope_len, room, "%s: %.*s\r\n",
			 name, (int)len, arg);

	if (n > 0 && (size_t)n < room)
		conn->envelope_len += (size_t)n;
}

/* message_append - keep message bytes for --store. Once --store-max messages
 * are counted no later message can be among them: skip the copy. */
static void message_append(struct sink_conn *conn, const char *data, size_t len)
{
	if (opt.store_dir == NULL || (opt.store_max != 0 && stats.messages >= opt.store_max))
		return;
	if (conn->message_len + len > conn->message_cap) {
		size_t cap = conn->message_cap ? conn->message_cap : 65536;

		while (cap < conn->message_len + len)
			cap *= 2;
		conn->message = realloc(conn->message, cap);
		if (conn->message == NULL)
			log_fatal("out of memory");
		conn->message_cap = cap;
	}
	memcpy(conn->message + conn->message_len, data, len);
	conn->message_len += len;
}

/* message_store - write <n>.eml: envelope header lines, then the message.
 * Blocking writes: --store is a test mode, not a benchmark mode. */
static void message_store(struct sink_conn *conn, uint64_t number)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%llu.eml", opt.store_dir, (unsigned long long)number);
	FILE *fp = fopen(path, "wb");

	if (fp == NULL) {
		log_warn("store", "path=%s error=%s", path, strerror(errno));
		return;
	}
	fwrite(conn->envelope, 1, conn->envelope_len, fp);
	fwrite(conn->message, 1, conn->message_len, fp);
	if (fclose(fp) != 0)
		log_warn("store", "path=%s error=%s", path, strerror(errno));
}

/* message_finish - the end of DATA or of the last BDAT chunk. */
static void message_finish(struct sink_conn *conn)
{
	if (bench_rng_percent(&rng, opt.fail_data_4xx)) {
		stats.rejected_data++;
		reply(conn, "451 4.3.0 Injected failure after data");
		transaction_reset(conn);
		return;
	}
	stats.messages++;
	stats.recipients += conn->rcpts;
	if (conn->dkim_signed)
		stats.dkim_signed++;
	if (opt.domain_stats) {
		/* A message counts once per domain, however many recipients it has there. */
		for (uint64_t i = 0; i < conn->rcpts; i++) {
			uint64_t j = 0;

			while (j < i && conn->rcpt_domains[j] != conn->rcpt_domains[i])
				j++;
			if (j == i)
				domains[conn->rcpt_domains[i]].messages++;
		}
	}
	stats.bytes += conn->data_bytes;
	conn->session_messages++;
	uint64_t now = bench_wall_us();

	/* A stamp from another clock era (or a test's "1") is no measurement. */
	if (conn->stamp_us + 86400000000ULL > now && conn->stamp_us < now + 60000000ULL)
		bench_hist_add(&stats.latency, now > conn->stamp_us ? now - conn->stamp_us : 0);
	if (opt.store_dir != NULL && (opt.store_max == 0 || stats.messages <= opt.store_max))
		message_store(conn, stats.messages);
	reply(conn, "250 2.0.0 Ok: queued as %llu", (unsigned long long)stats.messages);
	transaction_reset(conn);
	if (opt.expect != 0 && stats.messages >= opt.expect)
		expect_met = 1;	/* stop once this reply is out (or at the next timer) */
}

/* data_header - look for the stamp and a signature while in the message
 * header. A folded field's later lines start with white space and the body
 * is not looked at, so only a real field named DKIM-Signature counts. */
static void data_header(struct sink_conn *conn, const char *line, size_t len)
{
	static const char name[] = "X-Ringmail-Stamp:";
	static const char signature[] = "DKIM-Signature:";

	if (len <= 2 && (line[0] == '\n' || (line[0] == '\r' && len == 2))) {
		conn->data_headers = 0;
		return;
	}
	if (len > sizeof(name) && strncasecmp(line, name, sizeof(name) - 1) == 0) {
		const char *p = line + sizeof(name) - 1, *end = line + len;
		uint64_t v = 0;

		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		while (p < end && *p >= '0' && *p <= '9')
			v = v * 10 + (uint64_t)(*p++ - '0');
		conn->stamp_us = v;
	} else if (len >= sizeof(signature) - 1 &&
		   strncasecmp(line, signature, sizeof(signature) - 1) == 0) {
		conn->dkim_signed = 1;
	}
}

/* sink_data_line - one line (or a piece of a long one) of DATA content. */
static void sink_data_line(struct sink_conn *conn, const char *line, size_t len, int complete)
{
	int at_start = !conn->data_midline;

	conn->data_midline = !complete;
	if (at_start && line[0] == '.') {
		if (complete && (len == 2 || (len == 3 && line[1] == '\r'))) {
			conn->state = STATE_READY;
			message_finish(conn);
			return;
		}
		line++;		/* dot-stuffing */
		len--;
	}
	if (at_start && conn->data_headers)
		data_header(conn, line, len);
	conn->data_bytes += len;
	message_append(conn, line, len);
}

/* bdat_chunk - raw bytes of a BDAT chunk; answer when it is complete. */
static void bdat_chunk(struct sink_conn *conn, const char *data, size_t len)
{
	if (!conn->bdat_refuse) {
		if (conn->data_headers) {
			/* The stamp is looked for only in the first chunk's lines. */
			const char *p = data, *end = data + len;

			while (p < end && conn->data_headers) {
				const char *lf = memchr(p, '\n', (size_t)(end - p));

				if (lf == NULL)
					break;
				data_header(conn, p, (size_t)(lf - p) + 1);
				p = lf + 1;
			}
		}
		conn->data_bytes += len;
		message_append(conn, data, len);
	}
	conn->bdat_remaining -= len;
	if (conn->bdat_remaining != 0)
		return;
	if (conn->bdat_refuse) {
		reply(conn, "503 5.5.1 No valid recipients");
		transaction_reset(conn);
	} else if (conn->bdat_last) {
		message_finish(conn);
	} else {
		reply(conn, "250 2.0.0 Chunk accepted");
	}
}

/* address_arg - the <...> of "MAIL FROM:<a> ..." into *arg; returns its length
 * or -1 when the syntax is wrong. */
static int address_arg(const char *line, size_t prefix, const char **arg)
{
	const char *open = line + prefix;

	while (*open == ' ')
		open++;
	if (*open != '<')
		return -1;
	const char *close = strchr(open, '>');

	if (close == NULL)
		return -1;
	*arg = open;
	return (int)(close - open + 1);
}

/* command_ehlo - EHLO/HELO: a fresh session state and our extensions. */
static void command_ehlo(struct sink_conn *conn, const char *line, int extended)
{
	transaction_reset(conn);
	conn->state = STATE_READY;
	if (!extended) {
		reply(conn, "250 ringmail-sink");
		return;
	}
	reply(conn, "250-ringmail-sink");
	reply(conn, "250-PIPELINING");
	reply(conn, "250-SIZE %d", SINK_MESSAGE_MAX);
	reply(conn, "250-8BITMIME");
	reply(conn, "250-SMTPUTF8");
	if (opt.chunking)
		reply(conn, "250-CHUNKING");
	if (conn->starttls_offered && conn->tls == NULL)
		reply(conn, "250-STARTTLS");
	reply(conn, "250 ENHANCEDSTATUSCODES");
}

/* command_mail - MAIL FROM, with the injected tempfail. */
static void command_mail(struct sink_conn *conn, const char *line)
{
	const char *arg;
	int len = address_arg(line, 10, &arg);

	if (conn->state == STATE_GREETED) {
		reply(conn, "503 5.5.1 Send EHLO first");
		return;
	}
	if (conn->state != STATE_READY) {
		reply(conn, "503 5.5.1 Nested MAIL command");
		return;
	}
	if (len < 0) {
		reply(conn, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	const char *size = strcasestr(line, " SIZE=");

	if (size != NULL && strtoull(size + 6, NULL, 10) > SINK_MESSAGE_MAX) {
		reply(conn, "552 5.3.4 Message size exceeds fixed limit");
		return;
	}
	if (bench_rng_percent(&rng, opt.fail_mail_4xx)) {
		stats.rejected_mail++;
		reply(conn, "451 4.3.0 Injected MAIL failure");
		return;
	}
	transaction_reset(conn);
	envelope_add(conn, "X-Sink-Envelope-From", arg, (size_t)len);
	conn->state = STATE_MAIL;
	stats.transactions++;
	reply(conn, "250 2.1.0 Ok");
}

/* command_rcpt - RCPT TO: local-part patterns first, then random faults. */
static void command_rcpt(struct sink_conn *conn, const char *line)
{
	const char *arg;
	int len = address_arg(line, 8, &arg);

	if (conn->state != STATE_MAIL && conn->state != STATE_RCPT) {
		reply(conn, "503 5.5.1 Need MAIL command");
		return;
	}
	if (len < 0) {
		reply(conn, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (strncasecmp(arg + 1, "tempfail", 8) == 0) {
		stats.rejected_rcpt_4xx++;
		reply(conn, "451 4.7.1 Recipient temporarily refused");
	} else if (strncasecmp(arg + 1, "permfail", 8) == 0) {
		stats.rejected_rcpt_5xx++;
		reply(conn, "550 5.1.1 Recipient refused");
	} else if (bench_rng_percent(&rng, opt.fail_rcpt_5xx)) {
		stats.rejected_rcpt_5xx++;
		reply(conn, "550 5.1.1 Injected recipient failure");
	} else if (bench_rng_percent(&rng, opt.fail_rcpt_4xx)) {
		stats.rejected_rcpt_4xx++;
		reply(conn, "451 4.3.0 Injected recipient tempfail");
	} else {
		envelope_add(conn, "X-Sink-Envelope-To", arg, (size_t)len);
		if (opt.domain_stats)
			domain_note(conn, arg, (size_t)len);
		conn->rcpts++;
		conn->state = STATE_RCPT;
		reply(conn, "250 2.1.5 Ok");
	}
}

/* command_data - DATA: switch to content mode if there is a recipient. */
static void command_data(struct sink_conn *conn)
{
	if (conn->state == STATE_MAIL) {
		reply(conn, "554 5.5.1 No valid recipients");
		transaction_reset(conn);
		return;
	}
	if (conn->state != STATE_RCPT) {
		reply(conn, "503 5.5.1 Need RCPT command");
		return;
	}
	conn->state = STATE_DATA;
	conn->data_headers = 1;
	conn->data_midline = 0;
	reply(conn, "354 End data with <CR><LF>.<CR><LF>");
}

/* command_bdat - BDAT size [LAST]: the chunk is read even when refused. */
static void command_bdat(struct sink_conn *conn, const char *line)
{
	char *end;
	unsigned long long size = strtoull(line + 5, &end, 10);

	if (!opt.chunking) {
		reply(conn, "502 5.5.1 CHUNKING not offered");
		return;
	}
	if (end == line + 5) {
		reply(conn, "501 5.5.4 Syntax: BDAT size [LAST]");
		return;
	}
	while (*end == ' ')
		end++;
	conn->bdat_last = strncasecmp(end, "LAST", 4) == 0;
	conn->bdat_refuse = conn->state != STATE_RCPT && conn->state != STATE_BDAT;
	if (conn->state == STATE_RCPT) {
		conn->state = STATE_BDAT;
		conn->data_headers = 1;
	}
	conn->bdat_remaining = size;
	if (size == 0)
		bdat_chunk(conn, "", 0);
}

/* sink_command - one command line (with its line end). */
static void sink_command(struct sink_conn *conn, const char *line, size_t len)
{
	if (opt.after_421 != 0 && conn->session_messages >= opt.after_421) {
		stats.closed_421++;
		reply(conn, "421 4.7.0 Closing after %llu messages",
		      (unsigned long long)opt.after_421);
		conn->closing = 1;
		return;
	}
	if (strncasecmp(line, "EHLO", 4) == 0)
		command_ehlo(conn, line, 1);
	else if (strncasecmp(line, "HELO", 4) == 0)
		command_ehlo(conn, line, 0);
	else if (strncasecmp(line, "MAIL FROM:", 10) == 0)
		command_mail(conn, line);
	else if (strncasecmp(line, "RCPT TO:", 8) == 0)
		command_rcpt(conn, line);
	else if (strncasecmp(line, "DATA", 4) == 0 && len <= 6)
		command_data(conn);
	else if (strncasecmp(line, "BDAT ", 5) == 0)
		command_bdat(conn, line);
	else if (strncasecmp(line, "STARTTLS", 8) == 0 && len <= 10 &&
		 conn->starttls_offered && conn->tls == NULL) {
		/* RFC 3207: nothing pipelined after it is read; EHLO again after */
		transaction_reset(conn);
		conn->state = STATE_GREETED;
		reply(conn, "220 2.0.0 Ready to start TLS");
		conn->tls_due = 1;
		return;
	} else if (strncasecmp(line, "RSET", 4) == 0) {
		transaction_reset(conn);
		reply(conn, "250 2.0.0 Ok");
	} else if (strncasecmp(line, "NOOP", 4) == 0)
		reply(conn, "250 2.0.0 Ok");
	else if (strncasecmp(line, "VRFY", 4) == 0)
		reply(conn, "252 2.0.0 Cannot VRFY");
	else if (strncasecmp(line, "QUIT", 4) == 0) {
		reply(conn, "221 2.0.0 Bye");
		conn->closing = 1;
		return;
	} else
		reply(conn, "500 5.5.2 Command not recognized");
	if (bench_rng_percent(&rng, opt.disconnect)) {
		stats.disconnects++;
		conn->dropped = 1;
	}
}

/* sink_input - answer every complete command and consume data in the input.
 * Must stop at a command that closes the session: the rest is never read. */
static void sink_input(struct sink_conn *conn)
{
	const char *line;
	size_t len;

	while (!conn->closing && !conn->dropped && !conn->tls_due) {
		if (conn->bdat_remaining != 0) {
			len = bench_lines_take(&conn->in, conn->bdat_remaining, &line);
			if (len == 0)
				break;
			bdat_chunk(conn, line, len);
			continue;
		}
		len = bench_lines_next(&conn->in, &line);
		if (len == 0)
			break;
		if (conn->state == STATE_DATA)
			sink_data_line(conn, line, len, 1);
		else
			sink_command(conn, line, len);
	}
	size_t pending = bench_lines_pending(&conn->in);

	if (conn->tls_due) {
		conn->in.start = conn->in.len = 0;	/* cleartext after STARTTLS */
		return;
	}
	if (pending >= SINK_LINE_MAX && conn->bdat_remaining == 0) {
		/* A long line: content is passed on in pieces, a command is refused. */
		len = bench_lines_take(&conn->in, pending, &line);
		if (conn->state == STATE_DATA) {
			sink_data_line(conn, line, len, 0);
		} else {
			reply(conn, "500 5.5.2 Line too long");
			conn->closing = 1;
		}
	}
	bench_lines_compact(&conn->in);
}

/* conn_close - close and free; nothing of ours is in the ring by then. */
static void conn_close(struct sink_conn *conn)
{
	close(conn->fd);
	if (conn->prev != NULL)
		conn->prev->next = conn->next;
	else
		conn_list = conn->next;
	if (conn->next != NULL)
		conn->next->prev = conn->prev;
	if (peers[conn->peer_slot].count > 0)
		peers[conn->peer_slot].count--;
	stats.active--;
	bench_lines_free(&conn->in);
	tls_session_free(conn->tls);
	free(conn->raw);
	free(conn->wire.buf);
	free(conn->out);
	free(conn->message);
	free(conn->rcpt_domains);
	free(conn);
}

/* conn_recv - ask for more input: from the buffer ring when we have one. */
static void conn_recv(struct sink_conn *conn)
{
	struct io_uring_sqe *sqe = bench_ring_sqe(&ring);

	if (have_buffer_ring && !opt.stall) {
		io_uring_prep_recv(sqe, conn->fd, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = (uint16_t)recv_buffers.group;
	} else if (conn->tls != NULL) {
		io_uring_prep_recv(sqe, conn->fd, conn->raw, SINK_RECV_BUFFER_SIZE, 0);
	} else {
		bench_lines_compact(&conn->in);
		io_uring_prep_recv(sqe, conn->fd, conn->in.buf + conn->in.len,
				   conn->in.cap - conn->in.len, 0);
	}
	io_uring_sqe_set_data64(sqe, USER_DATA(conn, OP_RECV));
}

/* tls_begin - "220 Ready" is out: the next bytes are the ClientHello. */
static void tls_begin(struct sink_conn *conn)
{
	conn->tls_due = 0;
	conn->tls = tls_session_new(tls_cfg, TLS_VERIFY_NONE, NULL);
	conn->raw = malloc(SINK_RECV_BUFFER_SIZE);
	if (conn->tls == NULL || conn->raw == NULL)
		log_fatal("out of memory");
}

/* conn_flush - write the pending replies (after --delay-ms; under TLS,
 * encrypted first) and handshake records, or read on. */
static void conn_flush(struct sink_conn *conn)
{
	if (conn->dropped) {
		conn_close(conn);
		return;
	}
	int replies = conn->out_sent < conn->out_len;
	struct io_uring_sqe *sqe;

	if (replies && opt.delay_ms != 0 && !conn->delayed) {
		sqe = bench_ring_sqe(&ring);
		conn->delay.tv_sec = (long long)(opt.delay_ms / 1000);
		conn->delay.tv_nsec = (long long)(opt.delay_ms % 1000) * 1000000;
		io_uring_prep_timeout(sqe, &conn->delay, 0, 0);
		io_uring_sqe_set_data64(sqe, USER_DATA(conn, OP_DELAY));
		return;
	}
	if (replies && conn->tls_up &&
	    bench_wire_encrypt(&conn->wire, conn->tls, conn->out, &conn->out_sent, conn->out_len) != 0) {
		stats.tls_failures++;
		conn_close(conn);
		return;
	}
	if (conn->out_sent == conn->out_len && conn->wire.sent == conn->wire.len) {
		conn->out_len = conn->out_sent = 0;
		conn->wire.len = conn->wire.sent = 0;
		conn->delayed = 0;
		if (conn->tls_due)
			tls_begin(conn);
		if (conn->closing)
			conn_close(conn);
		else
			conn_recv(conn);
		return;
	}
	sqe = bench_ring_sqe(&ring);
	if (conn->wire.sent < conn->wire.len)
		io_uring_prep_send(sqe, conn->fd, conn->wire.buf + conn->wire.sent,
				   conn->wire.len - conn->wire.sent, MSG_NOSIGNAL);
	else
		io_uring_prep_send(sqe, conn->fd, conn->out + conn->out_sent,
				   conn->out_len - conn->out_sent, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, USER_DATA(conn, OP_SEND));
}

/* tls_input - len bytes of ciphertext: drive the handshake, or decrypt into
 * the line buffer. Returns 0 when replies may be made, -1 when the session
 * was closed. */
static int tls_input(struct sink_conn *conn, const void *data, size_t len)
{
	if (tls_feed_ciphertext(conn->tls, data, len) != 0) {
		stats.tls_failures++;
		conn_close(conn);
		return -1;
	}
	if (!conn->tls_up) {
		int r;

		while ((r = tls_handshake(conn->tls)) == TLS_WANT_WRITE)
			bench_wire_take(&conn->wire, conn->tls);
		bench_wire_take(&conn->wire, conn->tls);
		if (r == TLS_WANT_READ)
			return 0;
		if (r != 0) {
			stats.tls_failures++;
			log_debug("tls_handshake", "why=%s", tls_strerror(conn->tls));
			conn_close(conn);
			return -1;
		}
		conn->tls_up = 1;
		stats.tls_sessions++;
	}
	for (;;) {
		bench_lines_compact(&conn->in);
		ssize_t got = tls_read(conn->tls, conn->in.buf + conn->in.len,
				       conn->in.cap - conn->in.len);

		bench_wire_take(&conn->wire, conn->tls);
		if (got == TLS_WANT_READ || got == 0)
			return 0;
		if (got == TLS_WANT_WRITE)
			continue;
		if (got < 0) {
			stats.tls_failures++;
			conn_close(conn);
			return -1;
		}
		conn->in.len += (size_t)got;
		if (conn->in.len == conn->in.cap)
			return 0;	/* the rest after these lines are answered */
	}
}

/* conn_open - a new session: greet, refuse, or (--stall) stay silent. */
static void conn_open(int fd, const struct sink_listener *l)
{
	struct sockaddr_storage peer;
	socklen_t peer_len = sizeof(peer);
	struct sink_conn *conn = calloc(1, sizeof(*conn));

	if (conn == NULL || bench_lines_init(&conn->in, SINK_INPUT_CAP) != 0)
		log_fatal("out of memory");
	conn->fd = fd;
	conn->starttls_offered = l->starttls;
	conn->next = conn_list;
	if (conn_list != NULL)
		conn_list->prev = conn;
	conn_list = conn;
	conn->out_cap = 4096;
	conn->out = malloc(conn->out_cap);
	if (conn->out == NULL)
		log_fatal("out of memory");
	memset(&peer, 0, sizeof(peer));
	getpeername(fd, (struct sockaddr *)&peer, &peer_len);
	conn->peer_slot = peer_slot_find(&peer);
	peers[conn->peer_slot].count++;
	stats.sessions++;
	stats.active++;
	if (stats.active > stats.max_active)
		stats.max_active = stats.active;
	if (opt.stall) {
		conn_recv(conn);
		return;
	}
	if (opt.max_conn_per_client != 0 &&
	    peers[conn->peer_slot].count > opt.max_conn_per_client) {
		stats.rejected_connections++;
		reply(conn, "421 4.7.0 Too many connections from your address");
		conn->closing = 1;
	} else {
		reply(conn, "220 ringmail-sink ESMTP");
	}
	conn_flush(conn);
}

/* on_recv - input arrived (or the peer left). */
static void on_recv(struct sink_conn *conn, const struct io_uring_cqe *cqe)
{
	if (cqe->res == -ENOBUFS) {
		/* Every provided buffer is in use: read into our own this time. */
		struct io_uring_sqe *sqe = bench_ring_sqe(&ring);

		bench_lines_compact(&conn->in);
		io_uring_prep_recv(sqe, conn->fd, conn->in.buf + conn->in.len,
				   conn->in.cap - conn->in.len, 0);
		io_uring_sqe_set_data64(sqe, USER_DATA(conn, OP_RECV));
		return;
	}
	if (cqe->res <= 0) {
		conn_close(conn);
		return;
	}
	if (conn->tls != NULL) {
		const void *data = conn->raw;
		unsigned id = 0;

		if (cqe->flags & IORING_CQE_F_BUFFER) {
			id = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
			data = bench_buf_ring_data(&recv_buffers, id);
		}
		int ret = tls_input(conn, data, (size_t)cqe->res);

		if (cqe->flags & IORING_CQE_F_BUFFER)
			bench_buf_ring_recycle(&recv_buffers, id);
		if (ret != 0)
			return;
	} else if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned id = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		int ret = bench_lines_append(&conn->in, bench_buf_ring_data(&recv_buffers, id),
					     (size_t)cqe->res);

		bench_buf_ring_recycle(&recv_buffers, id);
		if (ret != 0)
			log_panic("input buffer overflow: pending=%zu", bench_lines_pending(&conn->in));
	} else {
		conn->in.len += (size_t)cqe->res;
	}
	if (opt.stall) {
		conn->in.start = conn->in.len = 0;
		conn_recv(conn);
		return;
	}
	sink_input(conn);
	conn_flush(conn);
}

/* on_send - part or all of the output went out. */
static void on_send(struct sink_conn *conn, const struct io_uring_cqe *cqe)
{
	if (cqe->res < 0) {
		conn_close(conn);
		return;
	}
	if (conn->wire.sent < conn->wire.len)
		conn->wire.sent += (size_t)cqe->res;
	else
		conn->out_sent += (size_t)cqe->res;
	if (expect_met && conn->out_sent == conn->out_len && conn->wire.sent == conn->wire.len)
		stopping = 1;
	conn_flush(conn);
}

/* listener_arm - accept on l: multishot when the kernel has it. */
static void listener_arm(struct sink_listener *l)
{
	struct io_uring_sqe *sqe = bench_ring_sqe(&ring);

	if (l->multishot)
		io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	else
		io_uring_prep_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, USER_DATA(l, OP_ACCEPT));
}

/* on_accept - a connection, or an accept that needs arming again. */
static void on_accept(struct sink_listener *l, const struct io_uring_cqe *cqe)
{
	if (cqe->res >= 0)
		conn_open(cqe->res, l);
	else if (cqe->res == -EINVAL && l->multishot)
		l->multishot = 0;	/* old kernel: fall back to one-shot accept */
	else if (cqe->res != -EAGAIN && cqe->res != -ECONNABORTED && cqe->res != -EINTR)
		log_warn("accept", "listener=%s error=%s", l->name, strerror(-cqe->res));
	if (!(cqe->flags & IORING_CQE_F_MORE))
		listener_arm(l);
}

/* timer_arm - the periodic stats write and deadline check. */
static void timer_arm(void)
{
	struct io_uring_sqe *sqe = bench_ring_sqe(&ring);

	io_uring_prep_timeout(sqe, &timer_interval, 0, 0);
	io_uring_sqe_set_data64(sqe, USER_DATA(NULL, OP_TIMER));
}

/* signal_arm - read the next SIGTERM/SIGINT from the signalfd. */
static void signal_arm(void)
{
	struct io_uring_sqe *sqe = bench_ring_sqe(&ring);

	io_uring_prep_read(sqe, signal_fd, &signal_info, sizeof(signal_info), 0);
	io_uring_sqe_set_data64(sqe, USER_DATA(NULL, OP_SIGNAL));
}

/* on_timer - stats out; give up when --timeout passes before --expect. */
static void on_timer(void)
{
	stats_write();
	if (expect_met)
		stopping = 1;
	if (opt.timeout_s != 0 && bench_mono_us() - start_us >= opt.timeout_s * 1000000) {
		log_warn("timeout", "messages=%llu expect=%llu",
			 (unsigned long long)stats.messages, (unsigned long long)opt.expect);
		exit_status = 1;
		stopping = 1;
	}
	timer_arm();
}

/* completion - dispatch one CQE by the op packed into its user data. */
static void completion(const struct io_uring_cqe *cqe)
{
	uint64_t data = io_uring_cqe_get_data64(cqe);
	void *ptr = (void *)(uintptr_t)(data & ~(uint64_t)OP_MASK);

	switch (data & OP_MASK) {
	case OP_ACCEPT:
		on_accept(ptr, cqe);
		break;
	case OP_RECV:
		on_recv(ptr, cqe);
		break;
	case OP_SEND:
		on_send(ptr, cqe);
		break;
	case OP_DELAY:
		((struct sink_conn *)ptr)->delayed = 1;
		conn_flush(ptr);
		break;
	case OP_TIMER:
		on_timer();
		break;
	case OP_SIGNAL:
		stopping = 1;
		break;
	default:
		log_panic("unknown completion user_data=%llx", (unsigned long long)data);
	}
}

/* listener_open - bind and listen on one address. */
static void listener_open(const struct sockaddr_storage *ss, socklen_t len)
{
	struct sink_listener *l = calloc(1, sizeof(*l));
	int one = 1;

	if (l == NULL)
		log_fatal("out of memory");
	if (listener_count == SINK_MAX_LISTENERS)
		log_fatal("too many listen addresses (max %d)", SINK_MAX_LISTENERS);
	bench_addr_format(ss, l->name, sizeof(l->name));
	l->fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l->fd < 0)
		log_fatal("socket: %s", strerror(errno));
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l->fd, (const struct sockaddr *)ss, len) != 0)
		log_fatal("bind %s: %s", l->name, strerror(errno));
	if (listen(l->fd, 4096) != 0)
		log_fatal("listen %s: %s", l->name, strerror(errno));
	l->multishot = 1;
	listeners[listener_count++] = l;
	if (opt.verbose)
		log_info("listen", "address=%s", l->name);
}

/* listen_range - "127.0.1.1-127.0.1.100:2526": every IPv4 address between. */
static void listen_range(const char *text)
{
	char first[64];
	const char *dash = strchr(text, '-');
	struct sockaddr_storage ss, last;
	socklen_t len;

	if (dash == NULL || (size_t)(dash - text) >= sizeof(first))
		usage();
	memcpy(first, text, (size_t)(dash - text));
	first[dash - text] = '\0';
	if (bench_addr_parse(dash + 1, &last, &len) != 0 || last.ss_family != AF_INET)
		usage();
	ss = last;
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;

	if (inet_pton(AF_INET, first, &in->sin_addr) != 1)
		usage();
	uint32_t from = ntohl(in->sin_addr.s_addr);
	uint32_t to = ntohl(((struct sockaddr_in *)&last)->sin_addr.s_addr);

	for (uint32_t a = from; a <= to && a >= from; a++) {
		in->sin_addr.s_addr = htonl(a);
		listener_open(&ss, len);
	}
}

/* percent_arg - a percentage flag value. */
static double percent_arg(const char *text)
{
	char *end;
	double v = strtod(text, &end);

	if (*end != '\0' || v < 0 || v > 100)
		usage();
	return v;
}

/* uint_arg - an unsigned flag value. */
static uint64_t uint_arg(const char *text)
{
	uint64_t v;

	if (bench_parse_uint(text, &v) != 0)
		usage();
	return v;
}

/* options_parse - flags into opt; listeners are opened as they come. */
static void options_parse(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "listen-range", required_argument, NULL, 'L' },
		{ "stats-file", required_argument, NULL, 's' },
		{ "expect", required_argument, NULL, 'e' },
		{ "timeout", required_argument, NULL, 't' },
		{ "store", required_argument, NULL, 'S' },
		{ "chunking", no_argument, NULL, 'c' },
		{ "domain-stats", no_argument, NULL, 'D' },
		{ "fail-rcpt-4xx", required_argument, NULL, 1 },
		{ "fail-rcpt-5xx", required_argument, NULL, 2 },
		{ "fail-data-4xx", required_argument, NULL, 3 },
		{ "fail-mail-4xx", required_argument, NULL, 4 },
		{ "421-after", required_argument, NULL, 5 },
		{ "disconnect", required_argument, NULL, 6 },
		{ "delay-ms", required_argument, NULL, 7 },
		{ "max-conn-per-client", required_argument, NULL, 8 },
		{ "stall", no_argument, NULL, 9 },
		{ "seed", required_argument, NULL, 10 },
		{ "tls-cert", required_argument, NULL, 11 },
		{ "tls-key", required_argument, NULL, 12 },
		{ "starttls-every", required_argument, NULL, 13 },
		{ "store-max", required_argument, NULL, 14 },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct sockaddr_storage ss;
	socklen_t len;
	int c;

	while ((c = getopt_long(argc, argv, "l:s:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (bench_addr_parse(optarg, &ss, &len) != 0)
				usage();
			listener_open(&ss, len);
			break;
		case 'L': listen_range(optarg); break;
		case 's': opt.stats_file = optarg; break;
		case 'e': opt.expect = uint_arg(optarg); break;
		case 't': opt.timeout_s = uint_arg(optarg); break;
		case 'S': opt.store_dir = optarg; break;
		case 'c': opt.chunking = 1; break;
		case 'D': opt.domain_stats = 1; break;
		case 1: opt.fail_rcpt_4xx = percent_arg(optarg); break;
		case 2: opt.fail_rcpt_5xx = percent_arg(optarg); break;
		case 3: opt.fail_data_4xx = percent_arg(optarg); break;
		case 4: opt.fail_mail_4xx = percent_arg(optarg); break;
		case 5: opt.after_421 = uint_arg(optarg); break;
		case 6: opt.disconnect = percent_arg(optarg); break;
		case 7: opt.delay_ms = uint_arg(optarg); break;
		case 8: opt.max_conn_per_client = uint_arg(optarg); break;
		case 9: opt.stall = 1; break;
		case 10: opt.seed = uint_arg(optarg); break;
		case 11: opt.tls_cert = optarg; break;
		case 12: opt.tls_key = optarg; break;
		case 13: opt.starttls_every = uint_arg(optarg); break;
		case 14: opt.store_max = uint_arg(optarg); break;
		case 'v': opt.verbose = 1; break;
		default: usage();
		}
	}
	if (optind != argc || listener_count == 0 || (opt.store_max != 0 && opt.store_dir == NULL))
		usage();
	if ((opt.tls_cert == NULL) != (opt.tls_key == NULL) ||
	    (opt.starttls_every != 0 && opt.tls_cert == NULL))
		usage();
	if (opt.tls_cert != NULL) {
		char err[256];

		tls_cfg = tls_config_new_server(opt.tls_cert, opt.tls_key, NULL, err, sizeof(err));
		if (tls_cfg == NULL)
			log_fatal("tls: %s", err);
		uint64_t every = opt.starttls_every != 0 ? opt.starttls_every : 1;

		for (int i = 0; i < listener_count; i++)
			listeners[i]->starttls = (uint64_t)i % every == 0;
	}
}

/* signals_setup - SIGTERM/SIGINT arrive through a signalfd read in the ring. */
static void signals_setup(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	signal_fd = signalfd(-1, &set, SFD_CLOEXEC);
	if (signal_fd < 0)
		log_fatal("signalfd: %s", strerror(errno));
}

/* ring_setup - the ring, its buffer ring, and the first requests. */
static void ring_setup(void)
{
	unsigned flags = 0;
	int ret = bench_ring_init(&ring, 4096, &flags);

	if (ret < 0)
		log_fatal("io_uring_queue_init: %s", strerror(-ret));
	ret = bench_buf_ring_setup(&ring, &recv_buffers, SINK_RECV_BUFFERS,
				   SINK_RECV_BUFFER_SIZE, 0);
	have_buffer_ring = ret == 0;
	if (opt.verbose)
		log_info("ring", "setup_flags=0x%x buffer_ring=%d", flags, have_buffer_ring);
	for (int i = 0; i < listener_count; i++)
		listener_arm(listeners[i]);
	timer_arm();
	signal_arm();
}

int main(int argc, char **argv)
{
	log_open("-", LOG_LEVEL_INFO);
	options_parse(argc, argv);
	if (opt.store_dir != NULL && mkdir(opt.store_dir, 0755) != 0 && errno != EEXIST)
		log_fatal("mkdir %s: %s", opt.store_dir, strerror(errno));
	bench_rng_seed(&rng, opt.seed);
	start_us = bench_mono_us();
	signals_setup();
	ring_setup();
	stats_write();
	while (!stopping) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		int ret = io_uring_submit_and_wait(&ring, 1);

		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
			log_fatal("io_uring_submit_and_wait: %s", strerror(-ret));
		io_uring_for_each_cqe(&ring, head, cqe) {
			completion(cqe);
			seen++;
		}
		io_uring_cq_advance(&ring, seen);
	}
	stats_write();
	if (opt.verbose)
		log_info("exit", "sessions=%llu messages=%llu recipients=%llu bytes=%llu",
			 (unsigned long long)stats.sessions, (unsigned long long)stats.messages,
			 (unsigned long long)stats.recipients, (unsigned long long)stats.bytes);
	/* The ring goes first so that no request still points at a session. */
	io_uring_queue_exit(&ring);
	while (conn_list != NULL)
		conn_close(conn_list);
	for (int i = 0; i < listener_count; i++) {
		close(listeners[i]->fd);
		free(listeners[i]);
	}
	tls_config_free(tls_cfg);
	free(recv_buffers.memory);
	free(recv_buffers.ring);
	return exit_status;
}
