/* test_smtp_session - the SMTP server state machine, driven without I/O. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_session.h"

struct test_ctx {
	unsigned next_id;
};

static bool test_is_local(void *ctx, const char *domain)
{
	(void)ctx;
	return strcmp(domain, "local.org") == 0;
}

static void test_queue_id(void *ctx, char out[32])
{
	struct test_ctx *t = ctx;

	snprintf(out, 32, "QID%u", ++t->next_id);
}

static time_t test_now(void *ctx)
{
	(void)ctx;
	return 1795444341;	/* Mon, 23 Nov 2026 14:32:21 +0000 */
}

static struct test_ctx ctx;

static struct smtp_session_config test_config(void)
{
	struct smtp_session_config cfg = {
		.hostname = "mx.test",
		.ctx = &ctx,
		.is_local_domain = test_is_local,
		.new_queue_id = test_queue_id,
		.now = test_now,
	};
	ctx.next_id = 0;
	return cfg;
}

static const struct smtp_peer untrusted = { .address = "192.0.2.1", .port = 40000 };
static const struct smtp_peer trusted = { .address = "2001:db8::1", .port = 40000, .trusted = true };

/* What a drive produced: all output and the messages committed. */
struct transcript {
	char out[1 << 16];
	size_t out_len;
	unsigned commits;
	char body[1 << 14];	/* last committed body */
	size_t body_len;
	size_t header_len;
	size_t recipients;
	char sender[300];
	char orcpt[600];
	unsigned notify;
	bool requiretls;	/* the last committed message's REQUIRETLS */
	bool tls_required_no;	/* and its "TLS-Required: No" */
	bool closed;
	bool starttls;		/* stopped at SMTP_WANT_STARTTLS */
	char auth[300];		/* last credentials asked for: "user:password" */
	char pool[64];		/* last committed message's pool */
};

static void collect(struct smtp_session *s, struct transcript *t)
{
	size_t n;
	const char *p = smtp_session_output(s, &n);

	cr_assert_lt(t->out_len + n, sizeof(t->out), "transcript overflow");
	memcpy(t->out + t->out_len, p, n);
	t->out_len += n;
	t->out[t->out_len] = 0;
	smtp_session_output_consumed(s, n);
}

/* drive - feed in in pieces of at most chunk octets, answering commits with
 * commit_err; returns the octets consumed */
static size_t drive(struct smtp_session *s, const char *in, size_t len, size_t chunk,
		    int commit_err, struct transcript *t)
{
	size_t pos = 0;

	for (;;) {
		enum smtp_session_want want;

		collect(s, t);
		want = smtp_session_want(s);
		if (want == SMTP_WANT_CLOSE) {
			t->closed = true;
			break;
		}
		if (want == SMTP_WANT_STARTTLS) {
			t->starttls = true;
			break;
		}
		if (want == SMTP_WANT_AUTH) {
			const char *user, *password;

			cr_assert(smtp_session_auth_credentials(s, &user, &password));
			snprintf(t->auth, sizeof(t->auth), "%s:%s", user, password);
			smtp_session_auth_done(s, strcmp(password, "secret") == 0 ? 0 : -EACCES);
			continue;
		}
		if (want == SMTP_WANT_COMMIT) {
			const struct smtp_message *m = smtp_session_message(s);

			cr_assert_not_null(m);
			cr_assert_lt(m->body_len, sizeof(t->body));
			memcpy(t->body, m->body, m->body_len);
			t->body_len = m->body_len;
			t->header_len = m->header_len;
			t->recipients = m->recipient_count;
			snprintf(t->sender, sizeof(t->sender), "%s", m->sender);
			snprintf(t->pool, sizeof(t->pool), "%s", m->pool);
			snprintf(t->orcpt, sizeof(t->orcpt), "%s;%s",
				 m->recipients[0].orcpt_type ? m->recipients[0].orcpt_type : "-",
				 m->recipients[0].orcpt ? m->recipients[0].orcpt : "-");
			t->notify = m->recipients[0].notify;
			t->requiretls = m->params.requiretls;
			t->tls_required_no = m->tls_required_no;
			t->commits++;
			smtp_session_commit_done(s, commit_err);
			continue;
		}
		if (pos == len)
			break;
		size_t n = len - pos < chunk ? len - pos : chunk;
		size_t used = smtp_session_feed(s, in + pos, n);
		pos += used;
		if (used == 0)
			cr_assert_neq(smtp_session_want(s), SMTP_WANT_READ, "feed stalled");
	}
	return pos;
}

/* reply_codes - the codes of final reply lines ("250 ", not "250-") */
static void reply_codes(const char *out, char *codes, size_t size)
{
	size_t n = 0;
	const char *p = out;

	codes[0] = 0;
	while (*p) {
		const char *eol = strstr(p, "\r\n");
		cr_assert_not_null(eol, "reply without CRLF: %s", p);
		if (eol - p >= 4 && p[3] == ' ')
			n += (size_t)snprintf(codes + n, size - n, "%s%.3s", n ? " " : "", p);
		p = eol + 2;
	}
}

static struct smtp_session *session(const struct smtp_session_config *cfg,
				    const struct smtp_peer *peer, struct transcript *t)
{
	struct smtp_session *s = smtp_session_new(cfg, peer);

	memset(t, 0, sizeof(*t));
	smtp_session_start(s);
	collect(s, t);
	return s;
}

#define RUN(s, str, chunk, err, t) drive(s, str, strlen(str), chunk, err, t)

Test(smtp_session, greeting_and_ehlo)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	struct smtp_session *s = session(&cfg, &untrusted, &t);

	RUN(s, "EHLO client.example\r\n", 100, 0, &t);
	cr_expect_str_eq(t.out, "220 mx.test ESMTP ringmail\r\n"
			 "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
			 "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 DSN\r\n",
			 "got %s", t.out);
	cr_expect_null(smtp_session_free(s));
	cr_expect_null(smtp_session_free(NULL));
}

static const char *transaction =
	"EHLO client.example\r\n"
	"MAIL FROM:<sender@example.com> SIZE=100\r\n"
	"RCPT TO:<user@local.org>\r\n"
	"DATA\r\n"
	"Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\n"
	"QUIT\r\n";

Test(smtp_session, full_transaction_and_received_header)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	struct smtp_session *s = session(&cfg, &untrusted, &t);
	char codes[256];
	const char *want_header =
		"Received: from client.example (unknown [192.0.2.1])\r\n"
		"\tby mx.test (ringmail) with ESMTP id QID1\r\n"
		"\tfor <user@local.org>; Mon, 23 Nov 2026 14:32:21 +0000\r\n";
	const char *want_content = "Subject: hi\r\n\r\n.dot\r\nbody\r\n";

	RUN(s, transaction, 4096, 0, &t);
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "220 250 250 250 354 250 221", "got %s", codes);
	cr_expect(strstr(t.out, "250 2.0.0 Ok: queued as QID1\r\n") != NULL, "got %s", t.out);
	cr_expect_eq(t.commits, 1);
	cr_expect(t.closed);
	cr_expect_str_eq(t.sender, "sender@example.com");
	cr_expect_eq(t.recipients, 1);
	cr_expect_eq(t.header_len, strlen(want_header), "got header %.*s", (int)t.header_len, t.body);
	cr_expect(memcmp(t.body, want_header, strlen(want_header)) == 0, "got header %.*s",
		  (int)t.header_len, t.body);
	cr_expect(t.body_len - t.header_len == strlen(want_content)
		  && memcmp(t.body + t.header_len, want_content, strlen(want_content)) == 0,
		  "got content %.*s", (int)(t.body_len - t.header_len), t.body + t.header_len);
	smtp_session_free(s);
}

Test(smtp_session, any_split_gives_same_transcript)
{
	struct smtp_session_config cfg = test_config();
	struct transcript whole, piece;
	struct smtp_session *s = session(&cfg, &untrusted, &whole);

	RUN(s, transaction, 1 << 20, 0, &whole);
	smtp_session_free(s);
	for (size_t chunk = 1; chunk <= 13; chunk++) {
		cfg = test_config();
		s = session(&cfg, &untrusted, &piece);
		RUN(s, transaction, chunk, 0, &piece);
		cr_expect_str_eq(piece.out, whole.out, "chunk %zu: got %s, want %s", chunk, piece.out, whole.out);
		cr_expect(piece.body_len == whole.body_len && memcmp(piece.body, whole.body, whole.body_len) == 0,
			  "chunk %zu: body differs", chunk);
		smtp_session_free(s);
	}
}

Test(smtp_session, pipelined_batch_with_mixed_errors)
{
	const char *batch =
		"EHLO c\r\n"
		"MAIL FROM:<a@b.c>\r\n"
		"RCPT TO:<bad\r\n"
		"RCPT TO:<x@remote.net>\r\n"
		"RCPT TO:<u@local.org> FOO=BAR\r\n"
		"RCPT TO:<u@local.org>\r\n"
		"FROB\r\n"
		"EXPN list\r\n"
		"VRFY u\r\n"
		"MAIL FROM:<a@b.c>\r\n"
		"NOOP\r\n"
		"HELP\r\n"
		"DATA\r\n"
		"x\r\n.\r\n"
		"RSET\r\n";
	const char *want = "220 250 250 501 554 555 250 500 502 252 503 250 214 354 250 250";

	for (size_t chunk = 1; chunk < 40; chunk += 3) {
		struct smtp_session_config cfg = test_config();
		struct transcript t;
		struct smtp_session *s = session(&cfg, &untrusted, &t);
		char codes[256];

		RUN(s, batch, chunk, 0, &t);
		reply_codes(t.out, codes, sizeof(codes));
		cr_expect_str_eq(codes, want, "chunk %zu: got %s, want %s", chunk, codes, want);
		smtp_session_free(s);
	}
}

Test(smtp_session, commit_pause_and_resume)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	struct smtp_session *s = session(&cfg, &untrusted, &t);
	const char *in = "HELO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<u@local.org>\r\nDATA\r\nhi\r\n.\r\n"
			 "MAIL FROM:<a@b.c>\r\nQUIT\r\n";
	size_t end = strstr(in, ".\r\n") - in + 3;
	size_t used = smtp_session_feed(s, in, strlen(in));

	cr_expect_eq(used, end, "got consumed %zu, want %zu (stop at end of data)", used, end);
	cr_expect_eq(smtp_session_want(s), SMTP_WANT_COMMIT);
	cr_expect_not_null(smtp_session_message(s));
	cr_expect_eq(smtp_session_feed(s, in + used, strlen(in) - used), 0, "paused: consumes nothing");
	cr_expect_eq(smtp_session_timeout_class(s), SMTP_TIMEOUT_NONE);
	collect(s, &t);
	cr_expect(strstr(t.out, "354 ") != NULL && strstr(t.out, "queued") == NULL,
		  "no 250 before the commit: %s", t.out);
	smtp_session_commit_done(s, -ENOSPC);
	cr_expect_null(smtp_session_message(s));
	cr_expect_eq(smtp_session_want(s), SMTP_WANT_READ);
	RUN(s, in + used, 100, 0, &t);
	char codes[256];
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "220 250 250 250 354 452 250 221", "got %s", codes);
	cr_expect(strstr(t.out, "452 4.3.1 ") != NULL);
	cr_expect(t.closed);
	smtp_session_free(s);
}

Test(smtp_session, relay_rules)
{
	static const struct {
		const struct smtp_peer *peer;
		const char *user;
		const char *rcpt;
		const char *want;
	} cases[] = {
		{ &untrusted, NULL, "<u@local.org>", "250 2.1.5" },
		{ &untrusted, NULL, "<u@remote.net>", "554 5.7.1" },
		{ &untrusted, NULL, "<u%remote.net@local.org>", "250 2.1.5" },
		{ &untrusted, NULL, "<u%local.org@remote.net>", "554 5.7.1" },
		{ &untrusted, NULL, "<remote.net!u@local.org>", "250 2.1.5" },
		{ &untrusted, NULL, "<local.org!u@remote.net>", "554 5.7.1" },
		{ &untrusted, NULL, "<\"u@remote.net\"@local.org>", "250 2.1.5" },
		{ &untrusted, NULL, "<\"u@local.org\"@remote.net>", "554 5.7.1" },
		{ &untrusted, NULL, "<@local.org:u@remote.net>", "554 5.7.1" },
		{ &untrusted, NULL, "<u@remote.net.>", "554 5.7.1" },
		{ &untrusted, NULL, "<u@LOCAL.ORG.>", "250 2.1.5" },
		{ &untrusted, NULL, "<postmaster>", "250 2.1.5" },
		{ &trusted, NULL, "<u@remote.net>", "250 2.1.5" },
		{ &untrusted, "alice", "<u@remote.net>", "250 2.1.5" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_session_config cfg = test_config();
		struct transcript t;
		struct smtp_session *s = session(&cfg, cases[i].peer, &t);
		char in[512];
		const char *last;

		if (cases[i].user)
			smtp_session_set_authenticated(s, cases[i].user);
		snprintf(in, sizeof(in), "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:%s\r\n", cases[i].rcpt);
		RUN(s, in, 1000, 0, &t);
		last = t.out + t.out_len - 2;
		while (last > t.out && last[-1] != '\n')
			last--;
		cr_expect(strncmp(last, cases[i].want, strlen(cases[i].want)) == 0,
			  "RCPT %s: got %s, want %s", cases[i].rcpt, last, cases[i].want);
		smtp_session_free(s);
	}
}

Test(smtp_session, error_limit_disconnects)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	struct smtp_session *s;
	const char *in = "FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n";
	size_t used;

	cfg.errors_max = 3;
	s = session(&cfg, &untrusted, &t);
	used = RUN(s, in, 1000, 0, &t);
	cr_expect_eq(used, 15, "got consumed %zu, want 15 (nothing after the limit)", used);
	cr_expect(strstr(t.out, "421 4.7.0 ") != NULL, "got %s", t.out);
	cr_expect(t.closed);
	char codes[64];
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "220 500 500 500 421", "got %s", codes);
	smtp_session_free(s);
}

Test(smtp_session, long_line_then_resync)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	struct smtp_session *s = session(&cfg, &untrusted, &t);
	char in[2048];
	char codes[64];

	memcpy(in, "NOOP ", 5);
	memset(in + 5, 'x', 700);
	strcpy(in + 705, "\r\nNOOP\r\n");
	RUN(s, in, 64, 0, &t);
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "220 500 250", "got %s", codes);
	cr_expect(strstr(t.out, "500 5.5.6 ") != NULL);
	/* exactly 512 octets with CRLF is fine */
	memset(t.out, 0, sizeof(t.out));
	t.out_len = 0;
	memcpy(in, "NOOP ", 5);
	memset(in + 5, 'y', 505);
	strcpy(in + 510, "\r\n");
	RUN(s, in, 100, 0, &t);
	cr_expect(strncmp(t.out, "250 ", 4) == 0, "512-octet line: got %s", t.out);
	smtp_session_free(s);
}

Test(smtp_session, recipient_limit_and_size)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	struct smtp_session *s;
	char codes[128];

	cfg.recipients_max = 2;
	cfg.message_size_max = 1000;
	s = session(&cfg, &untrusted, &t);
	RUN(s, "EHLO c\r\nMAIL FROM:<a@b.c> SIZE=1001\r\nMAIL FROM:<a@b.c> SIZE=1000\r\n"
	       "RCPT TO:<a@local.org>\r\nRCPT TO:<b@local.org>\r\nRCPT TO:<c@local.org>\r\n", 1000, 0, &t);
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "220 250 552 250 250 250 452", "got %s", codes);
	cr_expect(strstr(t.out, "452 4.5.3 ") != NULL);
	cr_expect(strstr(t.out, "552 5.3.4 ") != NULL);
	smtp_session_free(s);
}

Test(smtp_session, sequence_errors)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	struct smtp_session *s = session(&cfg, &untrusted, &t);
	char codes[128];

	RUN(s, "MAIL FROM:<a@b.c>\r\nHELO c\r\nRCPT TO:<u@local.org>\r\nDATA\r\n"
	       "MAIL FROM:<a@b.c>\r\nMAIL FROM:<a@b.c>\r\nDATA\r\nRSET x\r\nQUIT\r\n", 1000, 0, &t);
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "220 503 250 503 503 250 503 554 501 221", "got %s", codes);
	smtp_session_free(s);
}

Test(smtp_session, smuggling_refused_in_session)
{
	static const char *vectors[] = {
		"a\n.\nMAIL FROM:<evil@x>\r\n",
		"a\r.\rMAIL FROM:<evil@x>\r\n",
		"a\r\n.\rMAIL FROM:<evil@x>\r\n",
		"a\n.\r\nMAIL FROM:<evil@x>\r\n",
		"a\r.\r\nMAIL FROM:<evil@x>\r\n",
		"a\r\n.\nMAIL FROM:<evil@x>\r\n",
	};
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		struct smtp_session_config cfg = test_config();
		struct transcript t;
		struct smtp_session *s = session(&cfg, &untrusted, &t);
		char in[512], codes[128];

		snprintf(in, sizeof(in), "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<u@local.org>\r\n"
			 "DATA\r\n%s.\r\nNOOP\r\n", vectors[i]);
		RUN(s, in, 3, 0, &t);
		reply_codes(t.out, codes, sizeof(codes));
		cr_expect_str_eq(codes, "220 250 250 250 354 550 250", "vector %zu: got %s", i, codes);
		cr_expect_eq(t.commits, 0, "vector %zu: smuggled message committed", i);
		smtp_session_free(s);
	}
}

Test(smtp_session, empty_message_and_bare_lf_commands)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	struct smtp_session *s = session(&cfg, &trusted, &t);
	char codes[128];

	RUN(s, "HELO c\nMAIL FROM:<>\nRCPT TO:<a@remote.net>\r\nRCPT TO:<b@remote.net>\r\nDATA\r\n.\r\n",
	    1000, 0, &t);
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "220 250 250 250 250 354 250", "got %s", codes);
	cr_expect_eq(t.commits, 1);
	cr_expect_eq(t.recipients, 2);
	cr_expect_eq(t.body_len, t.header_len, "empty content");
	cr_expect(strstr(t.body, "[IPv6:2001:db8::1]") != NULL, "got %s", t.body);
	cr_expect(strstr(t.body, "with SMTP id QID1;\r\n\tMon, 23 Nov 2026") != NULL, "got %s", t.body);
	cr_expect(strstr(t.body, "for <") == NULL, "no 'for' with two recipients");
	smtp_session_free(s);
}

Test(smtp_session, helo_forbids_parameters)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	struct smtp_session *s = session(&cfg, &untrusted, &t);
	char codes[128];

	RUN(s, "HELO c\r\nMAIL FROM:<a@b.c> SIZE=10\r\nEHLO\r\nHELO bad\x01name\r\n", 1000, 0, &t);
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "220 250 555 501 501", "got %s", codes);
	smtp_session_free(s);
}

Test(smtp_session, bdat_chunks_random_splits)
{
	const char *in = "EHLO c\r\nMAIL FROM:<a@b.c> BODY=BINARYMIME\r\nRCPT TO:<u@local.org>\r\n"
			 "BDAT 7\r\nhel\nlo\0BDAT 0\r\nBDAT 5 LAST\r\nworld" "NOOP\r\n";
	size_t len = strlen("EHLO c\r\nMAIL FROM:<a@b.c> BODY=BINARYMIME\r\nRCPT TO:<u@local.org>\r\n"
			    "BDAT 7\r\nhel\nlo") + 1 + strlen("BDAT 0\r\nBDAT 5 LAST\r\nworldNOOP\r\n");
	unsigned seed = 7;

	for (int round = 0; round < 30; round++) {
		struct smtp_session_config cfg = test_config();
		struct transcript t;
		struct smtp_session *s = session(&cfg, &untrusted, &t);
		char codes[128];
		size_t chunk = 1 + (size_t)rand_r(&seed) % 20;

		cr_expect_eq(drive(s, in, len, chunk, 0, &t), len);
		reply_codes(t.out, codes, sizeof(codes));
		cr_expect_str_eq(codes, "220 250 250 250 250 250 250 250", "chunk %zu: got %s", chunk, codes);
		cr_expect_eq(t.commits, 1);
		cr_expect(t.body_len - t.header_len == 12
			  && memcmp(t.body + t.header_len, "hel\nlo\0world", 12) == 0,
			  "chunk %zu: got content %.*s", chunk, (int)(t.body_len - t.header_len),
			  t.body + t.header_len);
		smtp_session_free(s);
	}
}

Test(smtp_session, bdat_without_transaction_is_read_and_refused)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	struct smtp_session *s = session(&cfg, &untrusted, &t);
	char codes[128];

	RUN(s, "EHLO c\r\nBDAT 6\r\nQUIT\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<u@remote.net>\r\n"
	       "BDAT 4 LAST\r\nxxxxRSET\r\nDATA\r\nBDAT x\r\nNOOP\r\n", 5, 0, &t);
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "220 250 503 250 554 554 250 503 501 250", "got %s", codes);
	cr_expect(!t.closed, "QUIT inside a chunk must not be obeyed");
	smtp_session_free(s);
}

Test(smtp_session, bdat_empty_message_refused)
{
	struct smtp_session_config cfg = test_config();
	uint64_t counts[SMTP_REJECT_COUNT] = { 0 };
	struct transcript t;
	struct smtp_session *s;
	char codes[128];

	cfg.reject_counts = counts;
	s = session(&cfg, &untrusted, &t);

	/* BDAT 0 LAST with nothing before it (and a 0-octet chunk before it)
	 * is a zero-length message: refused, and the session goes on with a new
	 * transaction; a last empty chunk after data still ends the message */
	RUN(s, "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<u@local.org>\r\nBDAT 0 LAST\r\n"
	       "RCPT TO:<u@local.org>\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<u@local.org>\r\n"
	       "BDAT 0\r\nBDAT 0 LAST\r\n"
	       "MAIL FROM:<a@b.c>\r\nRCPT TO:<u@local.org>\r\nBDAT 5\r\nhelloBDAT 0 LAST\r\n",
	    1000, 0, &t);
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "220 250 250 250 554 503 250 250 250 554 250 250 250 250",
			 "got %s", codes);
	cr_expect(strstr(t.out, "554 5.6.0 Error: empty message\r\n") != NULL, "got %s", t.out);
	cr_expect_eq(t.commits, 1);
	cr_expect(t.body_len - t.header_len == 5
		  && memcmp(t.body + t.header_len, "hello", 5) == 0,
		  "got content %.*s", (int)(t.body_len - t.header_len), t.body + t.header_len);
	cr_expect_eq(counts[SMTP_REJECT_BAD_CONTENT], 2, "got %llu", (unsigned long long)counts[SMTP_REJECT_BAD_CONTENT]);
	smtp_session_free(s);
}

Test(smtp_session, bdat_too_big)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	struct smtp_session *s;
	char codes[128];

	cfg.message_size_max = 8;
	s = session(&cfg, &untrusted, &t);
	RUN(s, "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<u@local.org>\r\nBDAT 5\r\n12345BDAT 5 LAST\r\n"
	       "67890NOOP\r\n", 1000, 0, &t);
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "220 250 250 250 250 552 250", "got %s", codes);
	cr_expect_eq(t.commits, 0);
	smtp_session_free(s);
}

Test(smtp_session, data_rejections_keep_session)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	struct smtp_session *s;
	char codes[128];

	cfg.message_size_max = 10;
	s = session(&cfg, &untrusted, &t);
	RUN(s, "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<u@local.org>\r\nDATA\r\n"
	       "0123456789012345\r\n.\r\nMAIL FROM:<a@b.c>\r\n", 4, 0, &t);
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "220 250 250 250 354 552 250", "got %s", codes);
	smtp_session_free(s);
}

Test(smtp_session, timeout)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	struct smtp_session *s = session(&cfg, &untrusted, &t);

	cr_expect_eq(smtp_session_timeout_class(s), SMTP_TIMEOUT_COMMAND);
	RUN(s, "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<u@local.org>\r\nDATA\r\npartial", 1000, 0, &t);
	cr_expect_eq(smtp_session_timeout_class(s), SMTP_TIMEOUT_DATA);
	smtp_session_timeout(s);
	cr_expect_eq(smtp_session_want(s), SMTP_WANT_FLUSH);
	collect(s, &t);
	cr_expect(strstr(t.out, "421 4.4.2 ") != NULL, "got %s", t.out);
	cr_expect_eq(smtp_session_want(s), SMTP_WANT_CLOSE);
	cr_expect_eq(smtp_session_feed(s, "NOOP\r\n", 6), 0);
	smtp_session_free(s);
}

Test(smtp_session, output_backlog_pauses_input)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	struct smtp_session *s;
	static char in[6 * 4000];
	size_t used, n;

	cfg.output_max = 1024;
	s = session(&cfg, &untrusted, &t);
	for (size_t i = 0; i < 4000; i++)
		memcpy(in + i * 6, "NOOP\r\n", 6);
	used = smtp_session_feed(s, in, sizeof(in));
	cr_expect_lt(used, sizeof(in), "a client that never reads must be paused");
	cr_expect_eq(smtp_session_want(s), SMTP_WANT_FLUSH);
	smtp_session_output(s, &n);
	cr_expect_lt(n, 1024 + 100, "backlog bounded: %zu", n);
	smtp_session_free(s);
}

Test(smtp_session, dsn_parameters_reach_the_message)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	struct smtp_session *s = session(&cfg, &untrusted, &t);

	RUN(s, "EHLO c\r\nMAIL FROM:<a@b.c> RET=HDRS ENVID=e+2B1\r\n"
	       "RCPT TO:<x@local.org> ORCPT=rfc822;old+40local.org NOTIFY=FAILURE,DELAY\r\n"
	       "RSET\r\nMAIL FROM:<a@b.c>\r\n"
	       "RCPT TO:<u@local.org> ORCPT=RFC822;u+40local.org NOTIFY=FAILURE,DELAY\r\n"
	       "RCPT TO:<v@local.org>\r\nDATA\r\nx\r\n.\r\n", 1000, 0, &t);
	cr_expect_eq(t.commits, 1);
	cr_expect_str_eq(t.orcpt, "rfc822;u@local.org", "got %s", t.orcpt);
	cr_expect_eq(t.notify, SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY);
	cr_expect_eq(t.recipients, 2);
	smtp_session_free(s);
}

/* STARTTLS (RFC 3207) */

Test(smtp_session, starttls_not_configured)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	struct smtp_session *s = session(&cfg, &untrusted, &t);
	char codes[64];

	RUN(s, "EHLO c\r\nSTARTTLS\r\nNOOP\r\n", 100, 0, &t);
	cr_expect_null(strstr(t.out, "STARTTLS"), "EHLO offered STARTTLS without TLS: %s", t.out);
	cr_expect_not_null(strstr(t.out, "454 4.7.0"), "got %s, want 454 4.7.0", t.out);
	cr_expect(!t.starttls, "the session asked for a handshake without TLS");
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "220 250 454 250", "got %s, want 220 250 454 250", codes);
	smtp_session_free(s);
}

Test(smtp_session, starttls_discards_pipelined_input_and_resets)
{
	static const char in[] = "EHLO c\r\nMAIL FROM:<a@b.c>\r\nSTARTTLS\r\nRSET\r\nMAIL FROM:<x@y.z>\r\n";
	size_t head = strlen("EHLO c\r\nMAIL FROM:<a@b.c>\r\nSTARTTLS\r\n");

	for (size_t chunk = 1; chunk <= sizeof(in); chunk += 7) {
		struct smtp_session_config cfg = test_config();
		struct transcript t;
		char codes[64];

		cfg.tls_available = true;
		struct smtp_session *s = session(&cfg, &untrusted, &t);
		size_t used = RUN(s, in, chunk, 0, &t);
		cr_expect_eq(used, head, "chunk %zu: consumed %zu, want %zu (nothing after STARTTLS)",
			     chunk, used, head);
		cr_expect(t.starttls, "chunk %zu: no SMTP_WANT_STARTTLS", chunk);
		cr_expect_not_null(strstr(t.out, "250-STARTTLS\r\n"), "EHLO without STARTTLS: %s", t.out);
		reply_codes(t.out, codes, sizeof(codes));
		cr_expect_str_eq(codes, "220 250 250 220", "chunk %zu: got %s, want 220 250 250 220",
				 chunk, codes);
		cr_expect_eq(smtp_session_feed(s, "RSET\r\n", 6), 0, "read input before the handshake");

		/* Handshake done: the session is back before EHLO. */
		smtp_session_set_tls(s, true);
		cr_expect_eq(smtp_session_want(s), SMTP_WANT_READ);
		t.out_len = 0;
		t.starttls = false;
		RUN(s, "MAIL FROM:<a@b.c>\r\nEHLO c\r\nSTARTTLS\r\nMAIL FROM:<a@b.c>\r\n"
		    "RCPT TO:<u@local.org>\r\nDATA\r\nhi\r\n.\r\n", 100, 0, &t);
		cr_expect(!t.starttls, "STARTTLS accepted twice");
		cr_expect_null(strstr(t.out, "STARTTLS"), "EHLO offered STARTTLS under TLS: %s", t.out);
		reply_codes(t.out, codes, sizeof(codes));
		cr_expect_str_eq(codes, "503 250 503 250 250 354 250",
				 "chunk %zu: got %s, want 503 250 503 250 250 354 250", chunk, codes);
		cr_expect_not_null(strstr(t.body, "with ESMTPS id"), "Received without ESMTPS: %.300s",
				   t.body);
		smtp_session_free(s);
	}
}

Test(smtp_session, starttls_timeout_during_handshake)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;

	cfg.tls_available = true;
	struct smtp_session *s = session(&cfg, &untrusted, &t);
	RUN(s, "EHLO c\r\nSTARTTLS\r\n", 100, 0, &t);
	cr_expect_eq(smtp_session_timeout_class(s), SMTP_TIMEOUT_COMMAND,
		     "the handshake must run under the command timer");
	smtp_session_timeout(s);
	collect(s, &t);
	cr_expect_eq(smtp_session_want(s), SMTP_WANT_CLOSE);
	smtp_session_free(s);
}

/* AUTH (RFC 4954) */

static struct smtp_session *auth_session(struct transcript *t, bool tls, bool plaintext)
{
	struct smtp_session_config cfg = test_config();

	cfg.tls_available = true;
	cfg.auth_available = true;
	cfg.auth_plaintext = plaintext;
	struct smtp_session *s = session(&cfg, &untrusted, t);
	if (tls) {
		RUN(s, "STARTTLS\r\n", 100, 0, t);
		smtp_session_set_tls(s, true);
		t->out_len = 0;
		t->out[0] = 0;
	}
	return s;
}

Test(smtp_session, auth_requires_tls)
{
	struct transcript t;
	struct smtp_session *s = auth_session(&t, false, false);
	char codes[64];

	/* AGFsaWNlAHNlY3JldA== is PLAIN for alice/secret */
	RUN(s, "EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<a@b.c>\r\n"
	    "RCPT TO:<x@remote.net>\r\n", 100, 0, &t);
	cr_expect_null(strstr(t.out, "AUTH PLAIN"), "AUTH offered in clear: %s", t.out);
	cr_expect_str_eq(t.auth, "", "credentials checked in clear");
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "220 250 538 250 554", "got %s, want 220 250 538 250 554", codes);
	smtp_session_free(s);
}

Test(smtp_session, auth_plain_and_login)
{
	static const struct {
		const char *in;
		const char *codes;
		const char *auth;
		bool relays;
	} cases[] = {
		{ "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "250 235 250 250", "alice:secret", true },
		{ "AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n", "250 334 235 250 250", "alice:secret", true },
		{ "AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n", "250 334 334 235 250 250",
		  "alice:secret", true },
		{ "AUTH login YWxpY2U=\r\nc2VjcmV0\r\n", "250 334 235 250 250", "alice:secret", true },
		{ "AUTH PLAIN AGFsaWNlAHdyb25n\r\n", "250 535 250 554", "alice:wrong", false },
		{ "AUTH PLAIN\r\n*\r\n", "250 334 501 250 554", "", false },
		{ "AUTH PLAIN !!!!\r\n", "250 501 250 554", "", false },
		{ "AUTH CRAM-MD5\r\n", "250 504 250 554", "", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct transcript t;
		struct smtp_session *s = auth_session(&t, true, false);
		char in[512], codes[64];

		snprintf(in, sizeof(in), "EHLO c\r\n%sMAIL FROM:<a@b.c>\r\nRCPT TO:<x@remote.net>\r\n",
			 cases[i].in);
		RUN(s, in, 7, 0, &t);
		cr_expect_not_null(strstr(t.out, "250-AUTH PLAIN LOGIN\r\n"), "case %zu: no AUTH in EHLO", i);
		reply_codes(t.out, codes, sizeof(codes));
		cr_expect_str_eq(codes, cases[i].codes, "case %zu: got %s, want %s", i, codes, cases[i].codes);
		cr_expect_str_eq(t.auth, cases[i].auth, "case %zu: got %s, want %s", i, t.auth, cases[i].auth);
		smtp_session_free(s);
	}
}

Test(smtp_session, auth_received_and_twice)
{
	struct transcript t;
	struct smtp_session *s = auth_session(&t, true, false);
	char codes[64];

	RUN(s, "EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nEHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"
	    "MAIL FROM:<a@b.c>\r\nRCPT TO:<x@remote.net>\r\nDATA\r\nhi\r\n.\r\n", 100, 0, &t);
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "250 235 250 503 250 250 354 250", "got %s", codes);
	cr_expect_null(strstr(strstr(t.out, "235 "), "AUTH PLAIN"), "AUTH offered after AUTH");
	cr_expect_not_null(strstr(t.body, "(Authenticated sender: alice)\r\n"), "got %.300s", t.body);
	cr_expect_not_null(strstr(t.body, "with ESMTPSA id"), "got %.300s", t.body);
	smtp_session_free(s);
}

Test(smtp_session, auth_plaintext_allowed)
{
	struct transcript t;
	struct smtp_session *s = auth_session(&t, false, true);
	char codes[64];

	RUN(s, "EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<a@b.c>\r\n"
	    "RCPT TO:<x@remote.net>\r\nDATA\r\nhi\r\n.\r\n", 100, 0, &t);
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "220 250 235 250 250 354 250", "got %s", codes);
	cr_expect_not_null(strstr(t.body, "with ESMTPA id"), "got %.300s", t.body);
	smtp_session_free(s);
}

Test(smtp_session, auth_required_before_mail)
{
	static const struct {
		bool tls;
		const char *in;
		const char *codes;
	} cases[] = {
		/* trusted peer, but the submission role still wants AUTH */
		{ false, "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@remote.net>\r\n", "220 250 530 503" },
		{ true, "EHLO c\r\nMAIL FROM:<a@b.c>\r\n", "250 530" },
		{ true, "EHLO c\r\nAUTH PLAIN AGFsaWNlAHdyb25n\r\nMAIL FROM:<a@b.c>\r\n", "250 535 530" },
		{ true, "EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<a@b.c>\r\n"
		  "RCPT TO:<x@remote.net>\r\n", "250 235 250 250" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_session_config cfg = test_config();
		struct transcript t;
		char codes[64];

		cfg.tls_available = true;
		cfg.auth_available = true;
		cfg.auth_required = true;
		struct smtp_session *s = session(&cfg, &trusted, &t);
		if (cases[i].tls) {
			RUN(s, "STARTTLS\r\n", 100, 0, &t);
			smtp_session_set_tls(s, true);
			t.out_len = 0;
			t.out[0] = 0;
		}
		RUN(s, cases[i].in, 5, 0, &t);
		reply_codes(t.out, codes, sizeof(codes));
		cr_expect_str_eq(codes, cases[i].codes, "case %zu: got %s, want %s", i, codes, cases[i].codes);
		if (strcmp(cases[i].codes, "250 530") == 0)
			cr_expect_not_null(strstr(t.out, "530 5.7.0 Authentication required\r\n"),
					   "case %zu: got %s", i, t.out);
		smtp_session_free(s);
	}
}

static bool test_rcpt_exists(void *c, const char *mailbox)
{
	(void)c;
	return strncmp(mailbox, "known@", 6) == 0;
}

Test(smtp_session, unknown_local_user_rejected_at_rcpt)
{
	static const struct {
		const struct smtp_peer *peer;
		const char *rcpt;
		const char *want;
	} cases[] = {
		{ &untrusted, "<known@local.org>", "250 2.1.5" },
		{ &untrusted, "<nobody@local.org>", "550 5.1.1" },
		{ &trusted, "<nobody@LOCAL.org.>", "550 5.1.1" },
		{ &trusted, "<nobody@remote.net>", "250 2.1.5" },    /* not local: not asked */
		{ &untrusted, "<nobody@remote.net>", "554 5.7.1" },  /* the relay rule first */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_session_config cfg = test_config();
		struct transcript t;
		cfg.local_rcpt_exists = test_rcpt_exists;
		struct smtp_session *s = session(&cfg, cases[i].peer, &t);
		char in[512];
		const char *last;

		snprintf(in, sizeof(in), "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:%s\r\n", cases[i].rcpt);
		RUN(s, in, 1000, 0, &t);
		last = t.out + t.out_len - 2;
		while (last > t.out && last[-1] != '\n')
			last--;
		cr_expect(strncmp(last, cases[i].want, strlen(cases[i].want)) == 0,
			  "RCPT %s: got %s, want %s", cases[i].rcpt, last, cases[i].want);
		smtp_session_free(s);
	}
}

/* reject_string - the non-zero reasons as "name=count ..." in enum order */
static void reject_string(const uint64_t *counts, char *out, size_t size)
{
	size_t n = 0;

	out[0] = 0;
	for (int i = 0; i < SMTP_REJECT_COUNT; i++)
		if (counts[i] != 0)
			n += (size_t)snprintf(out + n, size - n, "%s%s=%llu", n ? " " : "",
					      smtp_reject_name((enum smtp_reject)i),
					      (unsigned long long)counts[i]);
}

static const char *test_rcpt_suppressed(void *arg, const char *mailbox)
{
	(void)arg;
	if (strcmp(mailbox, "gone@remote.net") == 0)
		return "550 5.1.1 user unknown (bounce 2026-12-04)";
	if (strcmp(mailbox, "quiet@remote.net") == 0)
		return "";
	return NULL;
}

/* A suppressed recipient gets 550 5.7.1 with the reason; the others of
 * the same transaction go on; the refusal is counted as "suppressed". */
Test(smtp_session, suppressed_rcpt_refused_with_reason)
{
	static const struct {
		const char *rcpt;
		const char *want;
	} cases[] = {
		{ "<gone@remote.net>", "550 5.7.1 <gone@remote.net>: Recipient address suppressed: 550 5.1.1 user unknown (bounce 2026-12-04)\r\n" },
		{ "<quiet@remote.net>", "550 5.7.1 <quiet@remote.net>: Recipient address suppressed: on the suppression list\r\n" },
		{ "<other@remote.net>", "250 2.1.5 Ok\r\n" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_session_config cfg = test_config();
		uint64_t counts[SMTP_REJECT_COUNT] = { 0 };
		struct transcript t;
		char in[512], got[256];

		cfg.rcpt_suppressed = test_rcpt_suppressed;
		cfg.reject_counts = counts;
		struct smtp_session *s = session(&cfg, &trusted, &t);
		snprintf(in, sizeof(in), "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:%s\r\n", cases[i].rcpt);
		RUN(s, in, 1000, 0, &t);
		const char *last = t.out + t.out_len - 2;
		while (last > t.out && last[-1] != '\n')
			last--;
		cr_expect_str_eq(last, cases[i].want, "RCPT %s: got %s, want %s", cases[i].rcpt, last, cases[i].want);
		reject_string(counts, got, sizeof(got));
		cr_expect_str_eq(got, i < 2 ? "suppressed=1" : "", "RCPT %s: counted %s", cases[i].rcpt, got);
		smtp_session_free(s);
	}
}


#define IN(str) str, sizeof(str) - 1

Test(smtp_session, reject_reasons_counted)
{
	enum { TRUSTED = 1, AUTH = 2, AUTH_CLEAR = 4, SUBMISSION = 8, SMALL = 16, STRICT = 32 };
	static const struct {
		unsigned flags;
		const char *in;
		size_t len;                    /* of in: the content may hold a NUL */
		int commit_err;
		const char *want;
	} cases[] = {
		{ 0, IN("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@remote.net>\r\n"), 0, "relay_denied=1" },
		{ 0, IN("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<nobody@local.org>\r\n"
		  "RCPT TO:<known@local.org>\r\n"), 0, "unknown_user=1" },
		{ TRUSTED | SMALL, IN("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@remote.net>\r\n"
		  "RCPT TO:<y@remote.net>\r\nRCPT TO:<z@remote.net>\r\n"), 0, "too_many_recipients=1" },
		{ TRUSTED | SMALL, IN("EHLO c\r\nMAIL FROM:<a@b.c> SIZE=100000\r\n"), 0, "message_too_large=1" },
		{ TRUSTED | SMALL, IN("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@remote.net>\r\nDATA\r\n"
		  "0123456789012345678901234567890123456789\r\n.\r\n"), 0, "message_too_large=1" },
		{ TRUSTED | SMALL, IN("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@remote.net>\r\n"
		  "BDAT 40\r\n0123456789012345678901234567890123456789"), 0, "message_too_large=1" },
		{ 0, IN("FOO\r\nEHLO c\r\nMAIL FROM:bad\r\nVRFY\r\nHELO\r\n"), 0, "syntax=4" },
		{ 0, IN("EHLO c\r\nRCPT TO:<x@local.org>\r\nEXPN x\r\nBDAT 3\r\nabc"), 0, "protocol=3" },
		{ TRUSTED, IN("EHLO c\r\nMAIL FROM:<a@b.c>\r\nDATA\r\nQUIT\r\n"), 0, "protocol=1" },
		{ AUTH | AUTH_CLEAR, IN("EHLO c\r\nAUTH PLAIN AGFsaWNlAHdyb25n\r\n"), 0, "auth_failed=1" },
		{ AUTH | AUTH_CLEAR, IN("EHLO c\r\nAUTH CRAM-MD5\r\nAUTH PLAIN\r\n*\r\n"), 0,
		  "syntax=1 protocol=1" },
		{ AUTH | AUTH_CLEAR | SUBMISSION, IN("EHLO c\r\nMAIL FROM:<a@b.c>\r\n"), 0, "auth_required=1" },
		{ AUTH, IN("EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"), 0, "tls_required=1" },
		{ TRUSTED, IN("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@remote.net>\r\nDATA\r\n"
		  "a\nb\r\n.\r\n"), 0, "smuggling=1" },
		{ TRUSTED, IN("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@remote.net>\r\nDATA\r\n"
		  "a\0b\r\n.\r\n"), 0, "bad_content=1" },
		{ TRUSTED, IN("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@remote.net>\r\nDATA\r\n"
		  "hi\r\n.\r\n"), -EIO, "spool_failed=1" },
		{ STRICT, IN("FOO\r\nBAR\r\nBAZ\r\n"), 0, "syntax=2 too_many_errors=1" },
		{ TRUSTED, IN("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@remote.net>\r\nDATA\r\n"
		  "hi\r\n.\r\nQUIT\r\n"), 0, "" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_session_config cfg = test_config();
		uint64_t counts[SMTP_REJECT_COUNT] = { 0 };
		unsigned f = cases[i].flags;
		struct transcript t;
		char got[256];

		cfg.local_rcpt_exists = test_rcpt_exists;
		cfg.reject_counts = counts;
		cfg.auth_available = (f & AUTH) != 0;
		cfg.auth_plaintext = (f & AUTH_CLEAR) != 0;
		cfg.auth_required = (f & SUBMISSION) != 0;
		if (f & SMALL) {
			cfg.recipients_max = 2;
			cfg.message_size_max = 20;
		}
		if (f & STRICT)
			cfg.errors_max = 2;
		struct smtp_session *s = session(&cfg, (f & TRUSTED) ? &trusted : &untrusted, &t);
		drive(s, cases[i].in, cases[i].len, 7, cases[i].commit_err, &t);
		reject_string(counts, got, sizeof(got));
		cr_expect_str_eq(got, cases[i].want, "case %zu: got \"%s\", want \"%s\"; transcript %s",
				 i, got, cases[i].want, t.out);
		smtp_session_free(s);
	}
}

Test(smtp_session, reject_reasons_auth_verdicts_and_timeouts)
{
	static const struct {
		int auth_result;               /* 1: no AUTH, time out instead */
		const char *after;             /* input before the timeout, or NULL */
		const char *want;
	} cases[] = {
		{ -EACCES, NULL, "auth_failed=1" },
		{ -EAGAIN, NULL, "rate_limited=1" },
		{ -EIO, NULL, "auth_unavailable=1" },
		{ 0, NULL, "" },
		{ 1, "EHLO c\r\n", "command_timeout=1" },
		{ 1, "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@remote.net>\r\nDATA\r\nhalf", "data_timeout=1" },
		{ 1, "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@remote.net>\r\nBDAT 10\r\nhalf",
		  "data_timeout=1" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_session_config cfg = test_config();
		uint64_t counts[SMTP_REJECT_COUNT] = { 0 };
		struct transcript t;
		const char *user, *password;
		char got[256];

		cfg.reject_counts = counts;
		cfg.auth_available = true;
		cfg.auth_plaintext = true;
		struct smtp_session *s = session(&cfg, &trusted, &t);
		if (cases[i].auth_result != 1) {
			static const char auth[] = "EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n";
			smtp_session_feed(s, auth, sizeof(auth) - 1);
			cr_assert_eq(smtp_session_want(s), SMTP_WANT_AUTH, "case %zu: not verifying", i);
			cr_assert(smtp_session_auth_credentials(s, &user, &password));
			smtp_session_auth_done(s, cases[i].auth_result);
		} else {
			RUN(s, cases[i].after, 1000, 0, &t);
			smtp_session_timeout(s);
			smtp_session_timeout(s);       /* already closing: not counted twice */
		}
		reject_string(counts, got, sizeof(got));
		cr_expect_str_eq(got, cases[i].want, "case %zu: got \"%s\", want \"%s\"", i, got,
				 cases[i].want);
		smtp_session_free(s);
	}
}

Test(smtp_session, reject_names_are_distinct_labels)
{
	for (int i = 0; i < SMTP_REJECT_COUNT; i++) {
		const char *a = smtp_reject_name((enum smtp_reject)i);
		cr_expect(a[0] != 0, "reason %d has no name", i);
		for (const char *p = a; *p; p++)
			cr_expect((*p >= 'a' && *p <= 'z') || *p == '_', "reason %d: bad label %s", i, a);
		for (int k = 0; k < i; k++)
			cr_expect_str_neq(a, smtp_reject_name((enum smtp_reject)k), "reasons %d and %d", k, i);
	}
	cr_expect_str_eq(smtp_reject_name(SMTP_REJECT_COUNT), "", "out of range: got %s",
			 smtp_reject_name(SMTP_REJECT_COUNT));
	cr_expect_str_eq(smtp_reject_name(SMTP_REJECT_RELAY_DENIED), "relay_denied", "got %s",
			 smtp_reject_name(SMTP_REJECT_RELAY_DENIED));
}

/* Submission hygiene: a trusted client's message without Message-ID and
 * Date gets both below the Received header; one that has them, an
 * untrusted client's, or the key off: nothing added. */
static void hygiene_case(bool add, const struct smtp_peer *peer, const char *content,
			 const char *want_added)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	char in[1024];

	cfg.add_missing_headers = add;
	struct smtp_session *s = session(&cfg, peer, &t);
	snprintf(in, sizeof(in), "EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<user@local.org>\r\n"
		 "DATA\r\n%s.\r\nQUIT\r\n", content);
	RUN(s, in, 4096, 0, &t);
	cr_assert_eq(t.commits, 1);
	size_t added = strlen(want_added);
	cr_expect(t.body_len - t.header_len == added + strlen(content) &&
		  memcmp(t.body + t.header_len, want_added, added) == 0 &&
		  memcmp(t.body + t.header_len + added, content, strlen(content)) == 0,
		  "got content %.*s, want %s%s", (int)(t.body_len - t.header_len),
		  t.body + t.header_len, want_added, content);
	smtp_session_free(s);
}

Test(smtp_session, missing_message_id_and_date_added_for_trusted_clients)
{
	hygiene_case(true, &trusted, "Subject: bare\r\n\r\nhi\r\n",
		     "Message-ID: <1795444341.QID1@mx.test>\r\nDate: Mon, 23 Nov 2026 14:32:21 +0000\r\n");
	hygiene_case(true, &trusted, "Subject: x\r\nDate: Sun, 1 Nov 2026 00:00:00 +0000\r\n\r\nhi\r\n",
		     "Message-ID: <1795444341.QID1@mx.test>\r\n");
	hygiene_case(true, &trusted, "Message-Id: <m@x>\r\nDATE: Sun, 1 Nov 2026 00:00:00 +0000\r\n\r\nhi\r\n", "");
	hygiene_case(true, &untrusted, "Subject: bare\r\n\r\nhi\r\n", "");
	hygiene_case(false, &trusted, "Subject: bare\r\n\r\nhi\r\n", "");
	/* The fields in the body are not the header's. */
	hygiene_case(true, &trusted, "Subject: x\r\n\r\nMessage-ID: <no@x>\r\n",
		     "Message-ID: <1795444341.QID1@mx.test>\r\nDate: Mon, 23 Nov 2026 14:32:21 +0000\r\n");
}

static bool test_pool_known(void *c, const char *pool)
{
	(void)c;
	return strcmp(pool, "bulk") == 0 || strcmp(pool, "tx") == 0;
}

/* The pool header (shaping.pool_header): removed from every message; a
 * trusted client's known pool is the message's; an unknown one gets 550
 * 5.7.0 naming it, and nothing is committed; an untrusted client's is
 * dropped and ignored. */
static void pool_case(const struct smtp_peer *peer, const char *content, int want_commits, const char *want_pool,
		      const char *want_reply)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	char in[1024];

	cfg.pool_header = "X-Virtual-MTA";
	cfg.pool_known = test_pool_known;
	struct smtp_session *s = session(&cfg, peer, &t);
	snprintf(in, sizeof(in), "EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<user@local.org>\r\n"
		 "DATA\r\n%s.\r\nQUIT\r\n", content);
	RUN(s, in, 4096, 0, &t);
	cr_assert_eq(t.commits, (unsigned)want_commits, "%s", t.out);
	if (want_commits > 0) {
		cr_expect_str_eq(t.pool, want_pool);
		cr_expect(memmem(t.body, t.body_len, "Virtual-MTA", 11) == NULL, "the field stayed: %.*s",
			  (int)t.body_len, t.body);
		cr_expect(memmem(t.body, t.body_len, "Subject: s", 10) != NULL);
	}
	cr_expect(strstr(t.out, want_reply) != NULL, "got %s, want %s", t.out, want_reply);
	smtp_session_free(s);
}

Test(smtp_session, pool_header_chooses_the_pool)
{
	pool_case(&trusted, "Subject: s\r\nX-Virtual-MTA: bulk\r\n\r\nhi\r\n", 1, "bulk", "250 2.0.0");
	pool_case(&trusted, "x-virtual-mta: tx\r\nSubject: s\r\n\r\nhi\r\n", 1, "tx", "250 2.0.0");
	pool_case(&trusted, "Subject: s\r\n\r\nhi\r\n", 1, "", "250 2.0.0");
	pool_case(&untrusted, "Subject: s\r\nX-Virtual-MTA: bulk\r\n\r\nhi\r\n", 1, "", "250 2.0.0");
	pool_case(&trusted, "Subject: s\r\nX-Virtual-MTA: nosuch\r\n\r\nhi\r\n", 0, "",
		  "550 5.7.0 X-Virtual-MTA: no egress pool named \"nosuch\"");
	pool_case(&trusted, "Subject: s\r\nX-Virtual-MTA: two words\r\n\r\nhi\r\n", 0, "",
		  "550 5.7.0 X-Virtual-MTA: no egress pool named \"(invalid)\"");
}

/* REQUIRETLS (RFC 8689): offered and accepted only over TLS; the
 * "TLS-Required: No" header is noted, except under REQUIRETLS. */
Test(smtp_session, requiretls_only_over_tls)
{
	struct smtp_session_config cfg = test_config();
	struct transcript t;
	char codes[64];

	cfg.tls_available = true;
	struct smtp_session *s = session(&cfg, &untrusted, &t);
	RUN(s, "EHLO c\r\nMAIL FROM:<a@b.c> REQUIRETLS\r\nSTARTTLS\r\n", 100, 0, &t);
	cr_expect_null(strstr(t.out, "250-REQUIRETLS"), "REQUIRETLS offered in clear: %s", t.out);
	cr_expect_not_null(strstr(t.out, "530 5.7.10 "), "got %s, want 530 5.7.10", t.out);
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "220 250 530 220", "got %s, want 220 250 530 220", codes);
	smtp_session_set_tls(s, true);
	t.out_len = 0;
	RUN(s, "EHLO c\r\nMAIL FROM:<a@b.c> REQUIRETLS\r\nRCPT TO:<u@local.org>\r\nDATA\r\n"
	    "TLS-Required: No\r\n\r\nhi\r\n.\r\n"
	    "MAIL FROM:<a@b.c>\r\nRCPT TO:<u@local.org>\r\nDATA\r\n"
	    "TLS-Required: No\r\n\r\nhi\r\n.\r\n", 100, 0, &t);
	cr_expect_not_null(strstr(t.out, "250-REQUIRETLS\r\n"), "no REQUIRETLS over TLS: %s", t.out);
	reply_codes(t.out, codes, sizeof(codes));
	cr_expect_str_eq(codes, "250 250 250 354 250 250 250 354 250", "got %s", codes);
	cr_expect_eq(t.commits, 2);
	/* the last one: no REQUIRETLS, so the header counts */
	cr_expect(!t.requiretls);
	cr_expect(t.tls_required_no, "TLS-Required: No not noted");
	smtp_session_free(s);

	/* With REQUIRETLS the header is ignored (RFC 8689 4.1). */
	s = session(&cfg, &untrusted, &t);
	smtp_session_set_tls(s, true);
	t.out_len = 0;
	RUN(s, "EHLO c\r\nMAIL FROM:<a@b.c> REQUIRETLS\r\nRCPT TO:<u@local.org>\r\nDATA\r\n"
	    "TLS-Required: No\r\n\r\nhi\r\n.\r\n", 100, 0, &t);
	cr_expect(t.requiretls, "REQUIRETLS not passed on");
	cr_expect(!t.tls_required_no, "TLS-Required: No counted under REQUIRETLS");
	smtp_session_free(s);
}
