/*
 * test_smtp_client - scripted dialogs against the client state machine.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "smtp_client.h"

struct rec_rcpt {
	size_t index;
	enum smtp_outcome outcome;
	int code;
	char status[16];
	char text[256];
	bool local;
};

struct rec {
	struct rec_rcpt rcpts[32];
	size_t nrcpts;
	int txn_done, ready, starttls_ok, closed;
	bool closed_failed;
	int closed_code;
};

static void on_rcpt(void *arg, size_t index, enum smtp_outcome outcome,
		    const struct smtp_client_result *res)
{
	struct rec *r = arg;
	cr_assert_lt(r->nrcpts, 32);
	struct rec_rcpt *e = &r->rcpts[r->nrcpts++];
	e->index = index;
	e->outcome = outcome;
	e->code = res->code;
	snprintf(e->status, sizeof(e->status), "%s", res->status);
	snprintf(e->text, sizeof(e->text), "%s", res->text);
	e->local = res->local;
}

static void on_txn_done(void *arg, const struct smtp_client_txn *txn) { ((struct rec *)arg)->txn_done++; }
static void on_ready(void *arg) { ((struct rec *)arg)->ready++; }
static void on_starttls(void *arg, bool ok, const struct smtp_client_result *res)
{
	if (ok)
		((struct rec *)arg)->starttls_ok++;
}
static void on_closed(void *arg, bool failed, const struct smtp_client_result *res)
{
	struct rec *r = arg;
	r->closed++;
	r->closed_failed = failed;
	r->closed_code = res->code;
}

static struct rec rec;
static struct smtp_client *c;
static char outbuf[1 << 16];
static size_t body_chunk;

static struct smtp_client *make_client(void)
{
	struct smtp_client_config cfg = {
		.helo_name = "relay.test",
		.body_chunk = body_chunk,
		.max_output = body_chunk ? body_chunk * 64 : 0,
		.events = { &rec, on_rcpt, on_txn_done, on_ready, on_starttls, on_closed },
	};
	memset(&rec, 0, sizeof(rec));
	return smtp_client_new(&cfg);
}

static void teardown(void)
{
	c = smtp_client_free(c);
	body_chunk = 0;
}

/* drain - everything the client wants to send, as a string. */
static const char *drain(void)
{
	size_t total = 0, len;
	const char *p;

	while ((p = smtp_client_output(c, &len)), len > 0) {
		cr_assert_lt(total + len, sizeof(outbuf));
		memcpy(outbuf + total, p, len);
		total += len;
		smtp_client_output_consumed(c, len);
	}
	outbuf[total] = '\0';
	return outbuf;
}

static void feed(const char *s)
{
	cr_assert_eq(smtp_client_feed(c, s, strlen(s)), 0, "feed of \"%s\" failed", s);
}

static void expect_out(const char *want)
{
	const char *got = drain();
	cr_assert_str_eq(got, want, "output: got \"%s\", want \"%s\"", got, want);
}

static void expect_state(enum smtp_client_state want)
{
	cr_assert_eq(smtp_client_state(c), want, "state: got %s, want %s",
		     smtp_client_state_name(smtp_client_state(c)), smtp_client_state_name(want));
}

static void expect_rcpt(size_t n, size_t index, enum smtp_outcome outcome, int code,
			const char *status)
{
	cr_assert_gt(rec.nrcpts, n, "got %zu rcpt events, want more than %zu", rec.nrcpts, n);
	struct rec_rcpt *e = &rec.rcpts[n];
	cr_assert_eq(e->index, index, "event %zu index: got %zu, want %zu", n, e->index, index);
	cr_assert_eq(e->outcome, outcome, "event %zu outcome: got %d, want %d", n, e->outcome, outcome);
	cr_assert_eq(e->code, code, "event %zu code: got %d, want %d", n, e->code, code);
	cr_assert_str_eq(e->status, status, "event %zu status: got %s, want %s", n, e->status, status);
}

#define EHLO_FULL "250-mx.test hello\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n" \
	"250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n"
#define EHLO_PLAIN "250-mx.test hello\r\n250 8BITMIME\r\n"

static void connect_with(const char *ehlo_reply)
{
	c = make_client();
	expect_state(SMTP_CLIENT_GREETING);
	feed("220 mx.test ESMTP\r\n");
	expect_out("EHLO relay.test\r\n");
	feed(ehlo_reply);
	expect_state(SMTP_CLIENT_READY);
	cr_assert_eq(rec.ready, 1, "ready events: got %d, want 1", rec.ready);
}

static const char body[] = "Subject: hi\r\n\r\nhello\r\n";
static const struct smtp_client_rcpt three[] = {
	{ "r1@d.test", 0, NULL }, { "r2@d.test", 0, NULL }, { "r3@d.test", 0, NULL },
};

static struct smtp_client_txn txn_of(size_t nrcpts)
{
	return (struct smtp_client_txn){ .sender = "s@o.test", .rcpts = three,
		.nrcpts = nrcpts, .body = body, .body_len = sizeof(body) - 1 };
}

TestSuite(smtp_client, .fini = teardown);

Test(smtp_client, multiline_ehlo_extensions)
{
	connect_with(EHLO_FULL);
	cr_assert(smtp_client_has_ext(c, SMTP_EXT_PIPELINING | SMTP_EXT_SIZE |
		  SMTP_EXT_8BITMIME | SMTP_EXT_DSN | SMTP_EXT_SMTPUTF8 | SMTP_EXT_ENHANCEDSTATUSCODES));
	cr_assert_not(smtp_client_has_ext(c, SMTP_EXT_CHUNKING));
	cr_assert_not(smtp_client_has_ext(c, SMTP_EXT_STARTTLS));
	cr_assert_eq(smtp_client_size_limit(c), 1000000, "size: got %llu",
		     (unsigned long long)smtp_client_size_limit(c));
}

/* The pipelined happy path with one refused recipient, then reuse. */
static void pipelined_dialog(bool bytewise)
{
	struct smtp_client_txn t = txn_of(3);

	connect_with(EHLO_FULL);
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	expect_out("MAIL FROM:<s@o.test> SIZE=22\r\nRCPT TO:<r1@d.test>\r\n"
		   "RCPT TO:<r2@d.test>\r\nRCPT TO:<r3@d.test>\r\nDATA\r\n");
	const char *replies = "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550-5.1.1 no such\r\n"
			      "550 5.1.1 user\r\n250 2.1.5 ok\r\n354 go ahead\r\n";
	if (bytewise) {
		for (const char *p = replies; *p; p++)
			cr_assert_eq(smtp_client_feed(c, p, 1), 0);
	} else {
		feed(replies);
	}
	cr_assert_eq(rec.nrcpts, 1);
	expect_rcpt(0, 1, SMTP_OUTCOME_BOUNCED, 550, "5.1.1");
	cr_assert_str_eq(rec.rcpts[0].text, "no such\nuser");
	expect_state(SMTP_CLIENT_BODY);
	expect_out("Subject: hi\r\n\r\nhello\r\n.\r\n");
	const char *final = "250 2.0.0 queued as X\r\n";
	if (bytewise) {
		for (const char *p = final; *p; p++)
			cr_assert_eq(smtp_client_feed(c, p, 1), 0);
	} else {
		feed(final);
	}
	cr_assert_eq(rec.nrcpts, 3);
	expect_rcpt(1, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
	expect_rcpt(2, 2, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
	cr_assert_eq(rec.txn_done, 1);
	cr_assert_eq(rec.ready, 2);
	expect_state(SMTP_CLIENT_READY);
	expect_out("");

	/* The connection is reused for a second transaction. */
	t = txn_of(1);
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	expect_out("MAIL FROM:<s@o.test> SIZE=22\r\nRCPT TO:<r1@d.test>\r\nDATA\r\n");
	feed("250 ok\r\n250 ok\r\n354 go\r\n");
	drain();
	feed("250 ok\r\n");
	cr_assert_eq(rec.txn_done, 2);
	expect_rcpt(3, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
	cr_assert_eq(smtp_client_quit(c), 0);
	expect_out("QUIT\r\n");
	feed("221 bye\r\n");
	expect_state(SMTP_CLIENT_CLOSED);
	cr_assert_eq(rec.closed, 1);
	cr_assert_not(rec.closed_failed);
}

Test(smtp_client, pipelined_partial_failure_and_reuse) { pipelined_dialog(false); }
Test(smtp_client, replies_one_byte_at_a_time) { pipelined_dialog(true); }

Test(smtp_client, all_rcpts_rejected_pipelined)
{
	struct smtp_client_txn t = txn_of(2);

	connect_with(EHLO_FULL);
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	drain();
	feed("250 ok\r\n550 5.1.1 no\r\n450 4.2.0 later\r\n554 5.5.1 no valid recipients\r\n");
	cr_assert_eq(rec.nrcpts, 2);
	expect_rcpt(0, 0, SMTP_OUTCOME_BOUNCED, 550, "5.1.1");
	expect_rcpt(1, 1, SMTP_OUTCOME_DEFERRED, 450, "4.2.0");
	cr_assert_eq(rec.txn_done, 1);
	expect_state(SMTP_CLIENT_RSET);
	expect_out("RSET\r\n");
	feed("250 2.0.0 ok\r\n");
	expect_state(SMTP_CLIENT_READY);
	cr_assert_eq(rec.ready, 2);
}

Test(smtp_client, pipelined_354_without_recipients_sends_lone_dot)
{
	struct smtp_client_txn t = txn_of(1);

	connect_with(EHLO_FULL);
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	drain();
	feed("250 ok\r\n550 no\r\n354 go\r\n");
	expect_out(".\r\n");
	feed("554 no valid recipients\r\n");
	expect_out("RSET\r\n");
	feed("250 ok\r\n");
	expect_state(SMTP_CLIENT_READY);
	expect_rcpt(0, 0, SMTP_OUTCOME_BOUNCED, 550, "5.0.0");
	cr_assert_eq(rec.nrcpts, 1);
}

Test(smtp_client, helo_fallback_and_one_at_a_time)
{
	struct smtp_client_txn t = txn_of(2);

	c = make_client();
	feed("220 old.test\r\n");
	expect_out("EHLO relay.test\r\n");
	feed("502 command not implemented\r\n");
	expect_state(SMTP_CLIENT_HELO);
	expect_out("HELO relay.test\r\n");
	feed("250 old.test\r\n");
	expect_state(SMTP_CLIENT_READY);
	cr_assert_not(smtp_client_has_ext(c, SMTP_EXT_PIPELINING));
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	expect_out("MAIL FROM:<s@o.test>\r\n");
	feed("250 ok\r\n");
	expect_out("RCPT TO:<r1@d.test>\r\n");
	feed("250 ok\r\n");
	expect_out("RCPT TO:<r2@d.test>\r\n");
	feed("450 mailbox busy\r\n");
	expect_rcpt(0, 1, SMTP_OUTCOME_DEFERRED, 450, "4.0.0");
	expect_out("DATA\r\n");
	expect_state(SMTP_CLIENT_DATA);
	feed("354 go\r\n");
	expect_out("Subject: hi\r\n\r\nhello\r\n.\r\n");
	feed("250 ok\r\n");
	expect_rcpt(1, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
	expect_state(SMTP_CLIENT_READY);
}

Test(smtp_client, closing_421_mid_session)
{
	struct smtp_client_txn t = txn_of(2);

	connect_with(EHLO_FULL);
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	drain();
	feed("250 ok\r\n250 ok\r\n421 4.7.0 shutting down\r\n");
	cr_assert_eq(rec.nrcpts, 2);
	expect_rcpt(0, 0, SMTP_OUTCOME_DEFERRED, 421, "4.7.0");
	expect_rcpt(1, 1, SMTP_OUTCOME_DEFERRED, 421, "4.7.0");
	cr_assert_eq(rec.txn_done, 1);
	cr_assert_eq(rec.closed, 1);
	cr_assert(rec.closed_failed);
	cr_assert_eq(rec.closed_code, 421);
	expect_state(SMTP_CLIENT_FAILED);
	cr_assert_eq(smtp_client_feed(c, "250 ok\r\n", 8), -EPIPE);
}

Test(smtp_client, temporary_failure_at_mail)
{
	struct smtp_client_txn t = txn_of(2);

	connect_with(EHLO_PLAIN);
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	expect_out("MAIL FROM:<s@o.test>\r\n");
	feed("451 4.3.0 try later\r\n");
	cr_assert_eq(rec.nrcpts, 2);
	expect_rcpt(0, 0, SMTP_OUTCOME_DEFERRED, 451, "4.3.0");
	expect_rcpt(1, 1, SMTP_OUTCOME_DEFERRED, 451, "4.3.0");
	expect_state(SMTP_CLIENT_READY);
	expect_out("");
	cr_assert_eq(rec.ready, 2);
}

Test(smtp_client, permanent_failure_at_mail_pipelined)
{
	struct smtp_client_txn t = txn_of(2);

	connect_with(EHLO_FULL);
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	drain();
	feed("553 5.7.1 sender rejected\r\n503 5.5.1 no mail\r\n503 5.5.1 no mail\r\n"
	     "503 5.5.1 no rcpt\r\n");
	cr_assert_eq(rec.nrcpts, 2, "got %zu events", rec.nrcpts);
	expect_rcpt(0, 0, SMTP_OUTCOME_BOUNCED, 553, "5.7.1");
	expect_rcpt(1, 1, SMTP_OUTCOME_BOUNCED, 553, "5.7.1");
	expect_state(SMTP_CLIENT_READY);
	expect_out("");
}

Test(smtp_client, final_reply_5xx)
{
	struct smtp_client_txn t = txn_of(2);

	connect_with(EHLO_FULL);
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	drain();
	feed("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	drain();
	feed("554 5.7.1 looks like spam\r\n");
	expect_rcpt(0, 0, SMTP_OUTCOME_BOUNCED, 554, "5.7.1");
	expect_rcpt(1, 1, SMTP_OUTCOME_BOUNCED, 554, "5.7.1");
	cr_assert_str_eq(rec.rcpts[0].text, "looks like spam");
	expect_state(SMTP_CLIENT_READY);
	expect_out("");
}

Test(smtp_client, bdat_when_chunking)
{
	static const char dotty[] = "Subject: x\r\n\r\n.dot\r\n";
	struct smtp_client_txn t = txn_of(1);

	t.body = dotty;
	t.body_len = sizeof(dotty) - 1;
	connect_with("250-mx.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	expect_out("MAIL FROM:<s@o.test>\r\nRCPT TO:<r1@d.test>\r\n");
	feed("250 ok\r\n250 ok\r\n");
	expect_out("BDAT 20 LAST\r\nSubject: x\r\n\r\n.dot\r\n");
	feed("250 2.0.0 ok\r\n");
	expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
	expect_state(SMTP_CLIENT_READY);
}

Test(smtp_client, bdat_refused_sends_rset)
{
	struct smtp_client_txn t = txn_of(1);

	connect_with("250-mx.test\r\n250 CHUNKING\r\n");
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	expect_out("MAIL FROM:<s@o.test>\r\n");
	feed("250 ok\r\n");
	expect_out("RCPT TO:<r1@d.test>\r\n");
	feed("250 ok\r\n");
	drain();
	feed("452 4.3.1 out of space\r\n");
	expect_rcpt(0, 0, SMTP_OUTCOME_DEFERRED, 452, "4.3.1");
	expect_out("RSET\r\n");
}

static void dot_stuffing(size_t chunk)
{
	static const char dotty[] = "Subject: x\r\n\r\n.hidden\r\n..two\r\n.\r\nend";
	struct smtp_client_txn t = txn_of(1);

	body_chunk = chunk;
	t.body = dotty;
	t.body_len = sizeof(dotty) - 1;
	connect_with(EHLO_FULL);
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	drain();
	feed("250 ok\r\n250 ok\r\n354 go\r\n");
	expect_out("Subject: x\r\n\r\n..hidden\r\n...two\r\n..\r\nend\r\n.\r\n");
	feed("250 ok\r\n");
	expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
}

Test(smtp_client, dot_stuffing_one_chunk) { dot_stuffing(0); }
Test(smtp_client, dot_stuffing_small_chunks) { dot_stuffing(3); }

Test(smtp_client, smtputf8_needed_but_not_offered)
{
	struct smtp_client_txn t = txn_of(2);

	t.flags = SMTP_TXN_SMTPUTF8;
	connect_with(EHLO_PLAIN);
	cr_assert_eq(smtp_client_begin(c, &t), 1);
	cr_assert_eq(rec.nrcpts, 2);
	expect_rcpt(0, 0, SMTP_OUTCOME_BOUNCED, 553, "5.6.7");
	cr_assert(rec.rcpts[1].local);
	cr_assert_eq(rec.txn_done, 1);
	expect_state(SMTP_CLIENT_READY);
	expect_out("");
}

Test(smtp_client, mail_parameters)
{
	static const struct smtp_client_rcpt r[] = {
		{ "r1@d.test", SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE, "rfc822;r1@d.test" },
		{ "r2@d.test", SMTP_NOTIFY_NEVER, NULL },
	};
	struct smtp_client_txn t = txn_of(2);

	t.rcpts = r;
	t.flags = SMTP_TXN_8BIT | SMTP_TXN_SMTPUTF8;
	t.ret = SMTP_RET_HDRS;
	t.envid = "ID+2B1";
	connect_with(EHLO_FULL);
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	expect_out("MAIL FROM:<s@o.test> SIZE=22 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=ID+2B1\r\n"
		   "RCPT TO:<r1@d.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r1@d.test\r\n"
		   "RCPT TO:<r2@d.test> NOTIFY=NEVER\r\nDATA\r\n");
}

Test(smtp_client, no_8bitmime_sends_as_is_and_no_dsn_params)
{
	static const struct smtp_client_rcpt r[] = { { "r1@d.test", SMTP_NOTIFY_NEVER, "rfc822;x" } };
	struct smtp_client_txn t = txn_of(1);

	t.rcpts = r;
	t.flags = SMTP_TXN_8BIT;
	t.ret = SMTP_RET_FULL;
	connect_with("250-mx.test\r\n250 PIPELINING\r\n");
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	expect_out("MAIL FROM:<s@o.test>\r\nRCPT TO:<r1@d.test>\r\nDATA\r\n");
}

/* RFC 6152 3: no 8BITMIME, 8-bit body: the 7-bit form goes out, and SIZE
 * and BDAT count its bytes. */
Test(smtp_client, no_8bitmime_converts_8bit_body_to_quoted_printable)
{
	static const char eight[] = "Subject: x\r\n\r\n.caf\xc3\xa9\r\n";
	struct smtp_client_txn t = txn_of(1);

	t.body = eight;
	t.body_len = sizeof(eight) - 1;
	t.flags = SMTP_TXN_8BIT;
	connect_with("250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n");
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	expect_out("MAIL FROM:<s@o.test> SIZE=90\r\nRCPT TO:<r1@d.test>\r\nDATA\r\n");
	feed("250 ok\r\n250 ok\r\n354 go\r\n");
	expect_out("Subject: x\r\nContent-Transfer-Encoding: quoted-printable\r\n"
		   "MIME-Version: 1.0\r\n\r\n..caf=C3=A9\r\n.\r\n");
	feed("250 2.0.0 ok\r\n");
	expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
	/* The next transaction, 7-bit, goes as it is. */
	struct smtp_client_txn t2 = txn_of(1);
	cr_assert_eq(smtp_client_begin(c, &t2), 0);
	feed("250 ok\r\n250 ok\r\n354 go\r\n");
	expect_out("MAIL FROM:<s@o.test> SIZE=22\r\nRCPT TO:<r1@d.test>\r\nDATA\r\n"
		   "Subject: hi\r\n\r\nhello\r\n.\r\n");
}

Test(smtp_client, no_8bitmime_converted_body_over_bdat)
{
	static const char eight[] = "Subject: x\r\n\r\n\xe9\r\n";
	struct smtp_client_txn t = txn_of(1);

	t.body = eight;
	t.body_len = sizeof(eight) - 1;
	connect_with("250-mx.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	expect_out("MAIL FROM:<s@o.test>\r\nRCPT TO:<r1@d.test>\r\n");
	feed("250 ok\r\n250 ok\r\n");
	expect_out("BDAT 83 LAST\r\nSubject: x\r\nContent-Transfer-Encoding: quoted-printable\r\n"
		   "MIME-Version: 1.0\r\n\r\n=E9\r\n");
}

Test(smtp_client, no_8bitmime_unconvertible_body_bounces)
{
	static const char eight[] = "Content-Type: message/rfc822\r\n\r\nSubject: y\r\n\r\n\xe9\r\n";
	struct smtp_client_txn t = txn_of(1);

	t.body = eight;
	t.body_len = sizeof(eight) - 1;
	t.flags = SMTP_TXN_8BIT;
	connect_with("250-mx.test\r\n250 PIPELINING\r\n");
	cr_assert_eq(smtp_client_begin(c, &t), 1);
	expect_rcpt(0, 0, SMTP_OUTCOME_BOUNCED, 554, "5.6.3");
	expect_out("");
	expect_state(SMTP_CLIENT_READY);
}

Test(smtp_client, with_8bitmime_body_goes_as_is)
{
	static const char eight[] = "Subject: x\r\n\r\n\xe9\r\n";
	struct smtp_client_txn t = txn_of(1);

	t.body = eight;
	t.body_len = sizeof(eight) - 1;
	t.flags = SMTP_TXN_8BIT;
	connect_with("250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	feed("250 ok\r\n250 ok\r\n354 go\r\n");
	expect_out("MAIL FROM:<s@o.test> BODY=8BITMIME\r\nRCPT TO:<r1@d.test>\r\nDATA\r\n"
		   "Subject: x\r\n\r\n\xe9\r\n.\r\n");
}

Test(smtp_client, size_limit_exceeded)
{
	struct smtp_client_txn t = txn_of(1);

	connect_with("250-mx.test\r\n250 SIZE 10\r\n");
	cr_assert_eq(smtp_client_begin(c, &t), 1);
	expect_rcpt(0, 0, SMTP_OUTCOME_BOUNCED, 552, "5.3.4");
	expect_out("");
}

Test(smtp_client, bad_greeting_is_connection_failure)
{
	c = make_client();
	feed("554-5.7.1 go away\r\n554 really\r\n");
	expect_state(SMTP_CLIENT_FAILED);
	cr_assert_eq(rec.closed, 1);
	cr_assert(rec.closed_failed);
	cr_assert_eq(rec.closed_code, 554);
	expect_out("QUIT\r\n");
}

Test(smtp_client, ehlo_4xx_is_connection_failure)
{
	c = make_client();
	feed("220 hi\r\n");
	drain();
	feed("454 try later\r\n");
	expect_state(SMTP_CLIENT_FAILED);
	cr_assert(rec.closed_failed);
}

Test(smtp_client, garbage_reply_is_protocol_error)
{
	c = make_client();
	cr_assert_eq(smtp_client_feed(c, "HTTP/1.1 400 Bad\r\n", 18), -EPROTO);
	expect_state(SMTP_CLIENT_FAILED);
	cr_assert(rec.closed_failed);
}

Test(smtp_client, unexpected_reply_when_idle)
{
	connect_with(EHLO_FULL);
	feed("250 what\r\n");
	expect_state(SMTP_CLIENT_FAILED);
}

Test(smtp_client, early_reply_during_body)
{
	struct smtp_client_txn t = txn_of(1);

	connect_with(EHLO_FULL);
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	drain();
	feed("250 ok\r\n250 ok\r\n354 go\r\n");
	/* The body is staged but not written when the server speaks. */
	feed("552 5.3.4 too big\r\n");
	expect_rcpt(0, 0, SMTP_OUTCOME_BOUNCED, 552, "5.3.4");
	expect_state(SMTP_CLIENT_FAILED);
}

Test(smtp_client, starttls_and_restart)
{
	connect_with("250-mx.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n");
	cr_assert_eq(smtp_client_starttls(c), 0);
	expect_out("STARTTLS\r\n");
	feed("220 2.0.0 ready\r\n");
	expect_state(SMTP_CLIENT_TLS);
	cr_assert_eq(rec.starttls_ok, 1);
	cr_assert_eq(smtp_client_restart_ehlo(c), 0);
	cr_assert_not(smtp_client_has_ext(c, SMTP_EXT_PIPELINING));
	expect_out("EHLO relay.test\r\n");
	feed("250-mx.test\r\n250 CHUNKING\r\n");
	expect_state(SMTP_CLIENT_READY);
	cr_assert(smtp_client_has_ext(c, SMTP_EXT_CHUNKING));
	cr_assert_not(smtp_client_has_ext(c, SMTP_EXT_STARTTLS));
}

Test(smtp_client, starttls_injection_rejected)
{
	connect_with("250-mx.test\r\n250 STARTTLS\r\n");
	cr_assert_eq(smtp_client_starttls(c), 0);
	drain();
	cr_assert_eq(smtp_client_feed(c, "220 go\r\n250 injected\r\n", 22), -EPROTO);
	expect_state(SMTP_CLIENT_FAILED);
}

Test(smtp_client, abort_defers_open_recipients)
{
	struct smtp_client_txn t = txn_of(2);

	connect_with(EHLO_FULL);
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	drain();
	feed("250 ok\r\n550 no\r\n");
	smtp_client_abort(c, "timeout");
	cr_assert_eq(rec.nrcpts, 2);
	expect_rcpt(1, 1, SMTP_OUTCOME_DEFERRED, 0, "4.4.2");
	cr_assert_eq(rec.txn_done, 1);
	expect_state(SMTP_CLIENT_FAILED);
}

Test(smtp_client, begin_rejects_injection_and_busy)
{
	static const struct smtp_client_rcpt bad[] = { { "x@y\r\nDATA", 0, NULL } };
	struct smtp_client_txn t = txn_of(1);

	c = make_client();
	cr_assert_eq(smtp_client_begin(c, &t), -EBUSY);
	smtp_client_free(c);
	connect_with(EHLO_FULL);
	t.rcpts = bad;
	cr_assert_eq(smtp_client_begin(c, &t), -EINVAL);
	t = txn_of(1);
	t.sender = "a>b";
	cr_assert_eq(smtp_client_begin(c, &t), -EINVAL);
	t = txn_of(1);
	t.envid = "has space";
	cr_assert_eq(smtp_client_begin(c, &t), -EINVAL);
	expect_state(SMTP_CLIENT_READY);
	cr_assert_eq(smtp_client_quit(c), 0);
	cr_assert_eq(smtp_client_begin(c, &t), -EBUSY);
}

Test(smtp_client, timeouts_per_state)
{
	c = make_client();
	cr_assert_eq(smtp_client_timeout_ms(c), 300000);
	feed("220 hi\r\n250 x\r\n");
	cr_assert_eq(smtp_client_timeout_ms(c), 0, "ready: got %lld",
		     (long long)smtp_client_timeout_ms(c));
}

Test(smtp_client, oversized_commands_refused)
{
	static char longaddr[SMTP_CLIENT_PARAM_MAX + 10];
	static struct smtp_client_rcpt many[100];
	static char addrs[100][SMTP_CLIENT_PARAM_MAX - 10];
	struct smtp_client_txn t = txn_of(1);

	memset(longaddr, 'a', sizeof(longaddr) - 1);
	connect_with(EHLO_FULL);
	t.sender = longaddr;
	cr_assert_eq(smtp_client_begin(c, &t), -EINVAL);
	/* 100 pipelined RCPTs of ~1000 bytes exceed the 64 KiB minimum cap. */
	smtp_client_free(c);
	body_chunk = 1024;	/* max_output = 64 KiB */
	connect_with(EHLO_FULL);
	for (size_t i = 0; i < 100; i++) {
		memset(addrs[i], 'b', sizeof(addrs[i]) - 1);
		many[i].addr = addrs[i];
	}
	t = txn_of(1);
	t.rcpts = many;
	t.nrcpts = 100;
	cr_assert_eq(smtp_client_begin(c, &t), -ENOBUFS);
	expect_state(SMTP_CLIENT_READY);
	expect_out("");
	t.nrcpts = 10;
	cr_assert_eq(smtp_client_begin(c, &t), 0);
}

/* A large body goes out in bounded pieces and arrives intact, stuffed. */
Test(smtp_client, large_body_streams_in_chunks)
{
	static char big[300000];
	static char want[sizeof(big) * 2];
	static char got[sizeof(big) * 2];
	struct smtp_client_txn t = txn_of(1);
	size_t w = 0, g = 0, len, max_seen = 0;
	const char *p;

	for (size_t i = 0; i < sizeof(big); i += 10)
		memcpy(big + i, i % 30 == 0 ? ".23456789\r\n" : "abcdefgh\r\n", 10);
	for (size_t i = 0; i < sizeof(big); i++) {
		if (big[i] == '.' && (i == 0 || big[i - 1] == '\n'))
			want[w++] = '.';
		want[w++] = big[i];
	}
	memcpy(want + w, ".\r\n", 3);
	w += 3;
	body_chunk = 4096;
	t.body = big;
	t.body_len = sizeof(big);
	connect_with(EHLO_FULL);
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	drain();
	feed("250 ok\r\n250 ok\r\n354 go\r\n");
	while ((p = smtp_client_output(c, &len)), len > 0) {
		max_seen = len > max_seen ? len : max_seen;
		size_t n = len > 1000 ? 1000 : len;	/* a slow socket */
		memcpy(got + g, p, n);
		g += n;
		smtp_client_output_consumed(c, n);
	}
	cr_assert_eq(g, w, "got %zu bytes, want %zu", g, w);
	cr_assert(memcmp(got, want, w) == 0, "stuffed body differs");
	cr_assert(max_seen <= 2 * 4096 + 8, "output held %zu bytes at once", max_seen);
	feed("250 ok\r\n");
	expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
}

/* ---- AUTH (RFC 4954) ---------------------------------------------------- */

static int auth_ok, auth_failed, auth_code;

static void on_auth(void *arg, bool ok, const struct smtp_client_result *res)
{
	if (ok)
		auth_ok++;
	else
		auth_failed++;
	auth_code = res->code;
}

static void connect_auth(const char *ehlo_reply)
{
	struct smtp_client_config cfg = {
		.helo_name = "relay.test",
		.events = { &rec, on_rcpt, on_txn_done, on_ready, on_starttls, on_closed, on_auth },
	};
	memset(&rec, 0, sizeof(rec));
	auth_ok = auth_failed = auth_code = 0;
	c = smtp_client_new(&cfg);
	feed("220 mx.test ESMTP\r\n");
	expect_out("EHLO relay.test\r\n");
	feed(ehlo_reply);
	expect_state(SMTP_CLIENT_READY);
}

Test(smtp_client, auth_plain_with_initial_response, .fini = teardown)
{
	connect_auth("250-mx.test\r\n250-AUTH LOGIN PLAIN CRAM-MD5\r\n250 PIPELINING\r\n");
	cr_assert(smtp_client_has_ext(c, SMTP_EXT_AUTH));
	cr_assert_eq(smtp_client_auth_mechs(c), SMTP_AUTH_PLAIN | SMTP_AUTH_LOGIN);
	cr_assert_eq(smtp_client_auth(c, "alice", "s3cr3t"), 0);
	expect_state(SMTP_CLIENT_AUTH);
	/* base64("\0alice\0s3cr3t") */
	expect_out("AUTH PLAIN AGFsaWNlAHMzY3IzdA==\r\n");
	int ready = rec.ready;
	feed("235 2.7.0 Authentication successful\r\n");
	expect_state(SMTP_CLIENT_READY);
	cr_assert_eq(auth_ok, 1);
	cr_assert_eq(rec.ready, ready + 1, "ready after 235");
}

Test(smtp_client, auth_login_when_plain_is_not_offered, .fini = teardown)
{
	connect_auth("250-mx.test\r\n250 AUTH=LOGIN\r\n");
	cr_assert_eq(smtp_client_auth_mechs(c), SMTP_AUTH_LOGIN);
	cr_assert_eq(smtp_client_auth(c, "alice", "s3cr3t"), 0);
	expect_out("AUTH LOGIN\r\n");
	feed("334 VXNlcm5hbWU6\r\n");
	expect_out("YWxpY2U=\r\n");
	feed("334 UGFzc3dvcmQ6\r\n");
	expect_out("czNjcjN0\r\n");
	feed("235 2.7.0 ok\r\n");
	cr_assert_eq(auth_ok, 1);
	expect_state(SMTP_CLIENT_READY);
}

Test(smtp_client, auth_535_fails_without_ready, .fini = teardown)
{
	connect_auth("250-mx.test\r\n250 AUTH PLAIN\r\n");
	int ready = rec.ready;
	cr_assert_eq(smtp_client_auth(c, "alice", "wrong"), 0);
	drain();
	feed("535 5.7.8 Authentication credentials invalid\r\n");
	cr_assert_eq(auth_failed, 1);
	cr_assert_eq(auth_code, 535);
	cr_assert_eq(rec.ready, ready, "no ready event after a failed AUTH");
	expect_state(SMTP_CLIENT_READY);
	cr_assert_eq(smtp_client_quit(c), 0);
	expect_out("QUIT\r\n");
}

Test(smtp_client, auth_unexpected_334_is_cancelled, .fini = teardown)
{
	connect_auth("250-mx.test\r\n250 AUTH PLAIN\r\n");
	cr_assert_eq(smtp_client_auth(c, "alice", "x"), 0);
	drain();
	feed("334 \r\n");
	expect_out("*\r\n");
	feed("501 5.7.0 cancelled\r\n");
	cr_assert_eq(auth_failed, 1);
	expect_state(SMTP_CLIENT_READY);
}

Test(smtp_client, auth_refused_before_sending, .fini = teardown)
{
	connect_auth("250-mx.test\r\n250 AUTH CRAM-MD5\r\n");
	cr_assert_not(smtp_client_has_ext(c, SMTP_EXT_AUTH));
	cr_assert_eq(smtp_client_auth(c, "alice", "x"), -ENOTSUP);
	c = smtp_client_free(c);
	connect_auth("250-mx.test\r\n250 AUTH PLAIN\r\n");
	cr_assert_eq(smtp_client_auth(c, "ali\r\nce", "x"), -EINVAL);
	cr_assert_eq(smtp_client_auth(c, "alice", ""), -EINVAL);
	expect_out("");
	expect_state(SMTP_CLIENT_READY);
}

Test(smtp_client, auth_421_closes, .fini = teardown)
{
	connect_auth("250-mx.test\r\n250 AUTH PLAIN\r\n");
	cr_assert_eq(smtp_client_auth(c, "alice", "x"), 0);
	drain();
	feed("421 4.3.2 bye\r\n");
	cr_assert_eq(rec.closed, 1);
	cr_assert(rec.closed_failed);
	expect_state(SMTP_CLIENT_FAILED);
}

/* RFC 8689: REQUIRETLS on MAIL FROM when the server offers it; else every
 * recipient fails at once with 5.7.30 and nothing is sent. */
Test(smtp_client, requiretls_offered_or_refused)
{
	struct smtp_client_txn t = txn_of(2);

	t.flags = SMTP_TXN_REQUIRETLS;
	connect_with(EHLO_PLAIN);
	cr_assert(!smtp_client_has_ext(c, SMTP_EXT_REQUIRETLS));
	cr_assert_eq(smtp_client_begin(c, &t), 1);
	cr_assert_eq(rec.nrcpts, 2);
	expect_rcpt(0, 0, SMTP_OUTCOME_BOUNCED, 550, "5.7.30");
	cr_assert(rec.rcpts[1].local);
	cr_assert_eq(rec.txn_done, 1);
	expect_state(SMTP_CLIENT_READY);
	expect_out("");
}

Test(smtp_client, requiretls_on_mail_from)
{
	struct smtp_client_txn t = txn_of(1);

	t.flags = SMTP_TXN_REQUIRETLS;
	connect_with("250-mx.test\r\n250-PIPELINING\r\n250 REQUIRETLS\r\n");
	cr_assert(smtp_client_has_ext(c, SMTP_EXT_REQUIRETLS));
	cr_assert_eq(smtp_client_begin(c, &t), 0);
	expect_out("MAIL FROM:<s@o.test> REQUIRETLS\r\nRCPT TO:<r1@d.test>\r\nDATA\r\n");
}
