/* test_pop3_session - the POP3 state machine, driven without I/O over a
 * mailbox held in memory. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3_session.h"

/* The fake mailbox: three messages, one with LF line ends, dot lines and no
 * final line end. */
#define FAKE_MAX 4

struct fake_box {
	const char *data[FAKE_MAX];
	size_t len[FAKE_MAX];
	const char *uidl[FAKE_MAX];
	size_t count;
	bool marked[FAKE_MAX];
	unsigned commits;
	unsigned closes;
	unsigned opens;
	size_t read_max;	/* short reads: at most this many octets */
	int read_error;		/* -errno returned by read, or 0 */
	bool in_use;
};

static struct fake_box box;

static const char msg1[] = "Subject: one\r\n\r\nbody one\r\n";
static const char msg2[] = "Subject: two\n\n.dot line\nsecond\n..two dots\nlast";
static const char msg3[] = "Subject: three\r\nX: y\r\n\r\nl1\r\nl2\r\n.l3\r\n";
/* Their sizes with CRLF line ends (checked by hand): 26 + 53 + 37. */
#define SIZE1 26
#define SIZE2 53
#define SIZE3 37
#define TOTAL (SIZE1 + SIZE2 + SIZE3)

/* crlf_size - the same rule as the session's output (an independent count) */
static uint64_t crlf_size(const char *p, size_t n)
{
	uint64_t size = 0;
	size_t i;

	for (i = 0; i < n; i++)
		size += (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) ? 2 : 1;
	if (n > 0 && p[n - 1] != '\n')
		size += 2;
	return size;
}

static size_t fake_count(void *b)
{
	return ((struct fake_box *)b)->count;
}

static uint64_t fake_size(void *b, size_t i)
{
	struct fake_box *f = b;

	cr_assert_lt(i, f->count, "size of message %zu of %zu", i, f->count);
	return crlf_size(f->data[i], f->len[i]);
}

static const char *fake_uidl(void *b, size_t i)
{
	return ((struct fake_box *)b)->uidl[i];
}

static ssize_t fake_read(void *b, size_t i, uint64_t offset, char *buf, size_t len)
{
	struct fake_box *f = b;
	size_t n;

	if (f->read_error)
		return f->read_error;
	if (offset >= f->len[i])
		return 0;
	n = f->len[i] - (size_t)offset;
	if (n > len)
		n = len;
	if (f->read_max && n > f->read_max)
		n = f->read_max;
	memcpy(buf, f->data[i] + offset, n);
	return (ssize_t)n;
}

static int fake_mark(void *b, size_t i)
{
	((struct fake_box *)b)->marked[i] = true;
	return 0;
}

static int fake_commit(void *b)
{
	((struct fake_box *)b)->commits++;
	return 0;
}

static void fake_close(void *b)
{
	((struct fake_box *)b)->closes++;
}

static const struct pop3_mailbox_ops fake_ops = {
	.count = fake_count, .size = fake_size, .uidl = fake_uidl, .read = fake_read,
	.mark_deleted = fake_mark, .commit = fake_commit, .close = fake_close,
};

static int fake_auth(void *ctx, const char *user, const char *password)
{
	if (strcmp(user, "slow") == 0)
		return POP3_AUTH_RATE_LIMITED;
	if (strcmp(user, "down") == 0)
		return POP3_AUTH_TEMPFAIL;
	if ((strcmp(user, "alice") == 0 || strcmp(user, "locked") == 0)
	    && strcmp(password, "secret") == 0)
		return POP3_AUTH_OK;
	if (strcmp(user, "spaces") == 0 && strcmp(password, "a b  c") == 0)
		return POP3_AUTH_OK;
	return POP3_AUTH_BAD;
}

static int fake_open(void *ctx, const char *user, const struct pop3_mailbox_ops **ops,
		     void **b)
{
	if (strcmp(user, "locked") == 0 || box.in_use)
		return POP3_OPEN_IN_USE;
	box.opens++;
	*ops = &fake_ops;
	*b = &box;
	return POP3_OPEN_OK;
}

static void box_reset(void)
{
	memset(&box, 0, sizeof(box));
	box.data[0] = msg1;
	box.data[1] = msg2;
	box.data[2] = msg3;
	box.len[0] = sizeof(msg1) - 1;
	box.len[1] = sizeof(msg2) - 1;
	box.len[2] = sizeof(msg3) - 1;
	box.uidl[0] = "uid-one";
	box.uidl[1] = "uid-two";
	box.uidl[2] = "uid-three";
	box.count = 3;
}

static struct pop3_session_config config(bool plaintext, bool tls)
{
	struct pop3_session_config cfg = {
		.hostname = "pop.test",
		.plaintext_allowed = plaintext,
		.tls_available = tls,
		.authenticate = fake_auth,
		.open_mailbox = fake_open,
	};
	box_reset();
	return cfg;
}

/* What a drive produced. */
struct transcript {
	char *out;
	size_t len;
	size_t consumed;	/* input octets the session took */
	size_t max_backlog;	/* the largest output seen at once */
	enum pop3_session_want want;
};

static void transcript_free(struct transcript *t)
{
	free(t->out);
	memset(t, 0, sizeof(*t));
}

/* collect - send all output (consuming it may queue more of a transfer) */
static void collect(struct pop3_session *s, struct transcript *t)
{
	const char *p;
	size_t n;

	while ((p = pop3_session_output(s, &n)), n > 0) {
		if (n > t->max_backlog)
			t->max_backlog = n;
		t->out = realloc(t->out, t->len + n + 1);
		cr_assert_not_null(t->out);
		memcpy(t->out + t->len, p, n);
		t->len += n;
		t->out[t->len] = 0;
		pop3_session_output_consumed(s, n);
	}
}

/* drive_n - feed in[0..len) in pieces of at most step octets, as a worker
 * would: output first, then input, until all is consumed or the session
 * closes or waits for TLS */
static void drive_n(struct pop3_session *s, const char *in, size_t len, size_t step,
		    struct transcript *t)
{
	size_t used = 0, n;
	unsigned guard = 0;

	t->consumed = 0;
	for (;;) {
		collect(s, t);
		t->want = pop3_session_want(s);
		if (t->want == POP3_WANT_CLOSE || t->want == POP3_WANT_STARTTLS || used >= len)
			break;
		n = len - used < step ? len - used : step;
		used += pop3_session_feed(s, in + used, n);
		cr_assert_lt(++guard, 1000000, "no progress");
	}
	t->consumed = used;
}

static void drive(struct pop3_session *s, const char *in, struct transcript *t)
{
	drive_n(s, in, strlen(in), (size_t)-1, t);
}

/* run - a new session, the greeting dropped, then in */
static struct pop3_session *run(const struct pop3_session_config *cfg, const char *in,
				struct transcript *t)
{
	struct pop3_session *s = pop3_session_new(cfg);

	pop3_session_start(s);
	collect(s, t);
	transcript_free(t);
	drive(s, in, t);
	return s;
}

#define LOGIN "USER alice\r\nPASS secret\r\n"
#define LOGGED_IN "+OK\r\n+OK Logged in.\r\n"

static void expect_out(const struct transcript *t, const char *want)
{
	cr_assert_str_eq(t->out ? t->out : "", want, "got\n%s\nwant\n%s", t->out, want);
}

Test(pop3_session, greeting)
{
	struct pop3_session_config cfg = config(false, false);
	struct pop3_session *s = pop3_session_new(&cfg);
	struct transcript t = { 0 };

	pop3_session_start(s);
	collect(s, &t);
	expect_out(&t, "+OK pop.test ringmail POP3 ready.\r\n");
	cr_assert_eq(pop3_session_timeout_class(s), POP3_TIMEOUT_AUTHORIZATION);
	pop3_session_free(s);
	transcript_free(&t);
}

Test(pop3_session, capa_without_tls)
{
	struct pop3_session_config cfg = config(false, true);
	struct transcript t = { 0 };
	struct pop3_session *s = run(&cfg, "CAPA\r\n", &t);

	expect_out(&t, "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
		   "PIPELINING\r\nSTLS\r\nIMPLEMENTATION ringmail\r\n.\r\n");
	pop3_session_free(s);
	transcript_free(&t);
}

Test(pop3_session, capa_plaintext_allowed_and_logged_in)
{
	struct pop3_session_config cfg = config(true, false);
	struct transcript t = { 0 };
	struct pop3_session *s = run(&cfg, "CAPA\r\n" LOGIN "CAPA\r\n", &t);

	expect_out(&t, "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
		   "PIPELINING\r\nUSER\r\nSASL PLAIN\r\nIMPLEMENTATION ringmail\r\n.\r\n"
		   LOGGED_IN
		   "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
		   "PIPELINING\r\nIMPLEMENTATION ringmail\r\n.\r\n");
	pop3_session_free(s);
	transcript_free(&t);
}

/* Every command in every state: the first response line. */
struct state_case {
	const char *prefix;	/* input that reaches the state */
	const char *line;	/* the command */
	const char *want;	/* the whole response */
};

static const struct state_case state_cases[] = {
	/* AUTHORIZATION (plaintext allowed, no TLS offered) */
	{ "", "STAT", "-ERR Not logged in.\r\n" },
	{ "", "LIST", "-ERR Not logged in.\r\n" },
	{ "", "LIST 1", "-ERR Not logged in.\r\n" },
	{ "", "UIDL", "-ERR Not logged in.\r\n" },
	{ "", "RETR 1", "-ERR Not logged in.\r\n" },
	{ "", "TOP 1 1", "-ERR Not logged in.\r\n" },
	{ "", "DELE 1", "-ERR Not logged in.\r\n" },
	{ "", "NOOP", "-ERR Not logged in.\r\n" },
	{ "", "RSET", "-ERR Not logged in.\r\n" },
	{ "", "APOP alice 0123456789abcdef", "-ERR APOP is not supported.\r\n" },
	{ "", "PASS secret", "-ERR No username given.\r\n" },
	{ "", "USER alice", "+OK\r\n" },
	{ "", "USER", "-ERR Invalid user name.\r\n" },
	{ "", "user alice", "+OK\r\n" },
	{ "USER alice\r\n", "PASS wrong", "-ERR [AUTH] Authentication failed.\r\n" },
	{ "USER alice\r\n", "PASS secret", "+OK Logged in.\r\n" },
	{ "USER spaces\r\n", "PASS a b  c", "+OK Logged in.\r\n" },
	{ "USER slow\r\n", "PASS x", "-ERR [SYS/TEMP] Too many failed logins, try again later.\r\n" },
	{ "USER down\r\n", "PASS x", "-ERR [SYS/TEMP] Temporary authentication failure.\r\n" },
	{ "USER locked\r\n", "PASS secret",
	  "-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n" },
	{ "", "AUTH", "+OK\r\nPLAIN\r\n.\r\n" },
	{ "", "AUTH CRAM-MD5", "-ERR [AUTH] Unsupported authentication mechanism.\r\n" },
	{ "", "AUTH PLAIN", "+ \r\n" },
	{ "", "AUTH plain AGFsaWNlAHNlY3JldA==", "+OK Logged in.\r\n" },
	{ "", "STLS", "-ERR STLS is not available.\r\n" },
	{ "", "CAPA extra", "-ERR No arguments allowed.\r\n" },
	{ "", "FOO", "-ERR Unknown command.\r\n" },
	{ "", "", "-ERR Unknown command.\r\n" },
	{ "", "QUIT", "+OK Logging out.\r\n" },
	/* TRANSACTION */
	{ LOGIN, "STAT", "+OK 3 116\r\n" },
	{ LOGIN, "stat", "+OK 3 116\r\n" },
	{ LOGIN, "STAT 1", "-ERR No arguments allowed.\r\n" },
	{ LOGIN, "LIST 2", "+OK 2 53\r\n" },
	{ LOGIN, "LIST 4", "-ERR There's no message with that number.\r\n" },
	{ LOGIN, "LIST 0", "-ERR There's no message with that number.\r\n" },
	{ LOGIN, "LIST x", "-ERR Invalid message number.\r\n" },
	{ LOGIN, "LIST -1", "-ERR Invalid message number.\r\n" },
	{ LOGIN, "LIST 1 2", "-ERR Invalid arguments.\r\n" },
	{ LOGIN, "LIST 99999999999", "-ERR Invalid message number.\r\n" },
	{ LOGIN, "UIDL 3", "+OK 3 uid-three\r\n" },
	{ LOGIN, "RETR", "-ERR Invalid arguments.\r\n" },
	{ LOGIN, "RETR 1", "+OK 26 octets\r\nSubject: one\r\n\r\nbody one\r\n.\r\n" },
	{ LOGIN, "TOP 1", "-ERR Invalid arguments.\r\n" },
	{ LOGIN, "TOP 1 x", "-ERR Invalid arguments.\r\n" },
	{ LOGIN, "TOP 1 0", "+OK\r\nSubject: one\r\n\r\n.\r\n" },
	{ LOGIN, "DELE 1", "+OK Marked to be deleted.\r\n" },
	{ LOGIN "DELE 1\r\n", "DELE 1", "-ERR Message is deleted.\r\n" },
	{ LOGIN "DELE 1\r\n", "RETR 1", "-ERR Message is deleted.\r\n" },
	{ LOGIN "DELE 1\r\n", "LIST 1", "-ERR Message is deleted.\r\n" },
	{ LOGIN "DELE 1\r\n", "STAT", "+OK 2 90\r\n" },
	{ LOGIN "DELE 1\r\n", "RSET", "+OK maildrop has 3 messages (116 octets)\r\n" },
	{ LOGIN, "NOOP", "+OK\r\n" },
	{ LOGIN, "RSET", "+OK maildrop has 3 messages (116 octets)\r\n" },
	{ LOGIN, "USER alice", "-ERR Already logged in.\r\n" },
	{ LOGIN, "PASS secret", "-ERR Already logged in.\r\n" },
	{ LOGIN, "AUTH PLAIN AGFsaWNlAHNlY3JldA==", "-ERR Already logged in.\r\n" },
	{ LOGIN, "APOP alice x", "-ERR Already logged in.\r\n" },
	{ LOGIN, "STLS", "-ERR Already logged in.\r\n" },
	{ LOGIN, "FOO", "-ERR Unknown command.\r\n" },
	{ LOGIN, "QUIT", "+OK Logging out.\r\n" },
	{ LOGIN "DELE 2\r\n", "QUIT", "+OK Logging out, messages deleted.\r\n" },
};

Test(pop3_session, every_command_in_every_state)
{
	size_t i;

	for (i = 0; i < sizeof(state_cases) / sizeof(state_cases[0]); i++) {
		const struct state_case *c = &state_cases[i];
		struct pop3_session_config cfg = config(true, false);
		struct transcript t = { 0 };
		struct pop3_session *s = run(&cfg, c->prefix, &t);
		char line[512];

		transcript_free(&t);
		snprintf(line, sizeof(line), "%s\r\n", c->line);
		drive(s, line, &t);
		cr_expect_str_eq(t.out ? t.out : "", c->want,
				 "case %zu [%s] after [%s]: got [%s], want [%s]", i, c->line,
				 c->prefix, t.out, c->want);
		pop3_session_free(s);
		transcript_free(&t);
	}
}

Test(pop3_session, plaintext_refused_without_tls)
{
	struct pop3_session_config cfg = config(false, true);
	struct transcript t = { 0 };
	struct pop3_session *s = run(&cfg, "USER alice\r\nPASS secret\r\n"
				     "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nSTAT\r\n", &t);
	const char *denied = "-ERR [AUTH] Plaintext authentication disallowed on "
			     "non-secure (SSL/TLS) connections.\r\n";
	char want[1024];

	snprintf(want, sizeof(want), "%s%s%s-ERR Not logged in.\r\n", denied, denied, denied);
	expect_out(&t, want);
	cr_assert_eq(box.opens, 0, "got %u opens, want 0", box.opens);
	pop3_session_free(s);
	transcript_free(&t);
}

Test(pop3_session, stls_then_login)
{
	struct pop3_session_config cfg = config(false, true);
	struct transcript t = { 0 };
	const char *in = "STLS\r\nUSER injected\r\n";
	struct pop3_session *s = run(&cfg, in, &t);

	expect_out(&t, "+OK Begin TLS negotiation now.\r\n");
	cr_assert_eq(t.want, POP3_WANT_STARTTLS, "got want %d", t.want);
	cr_assert_eq(t.consumed, 6, "got %zu consumed, want 6 (input after STLS is kept)",
		     t.consumed);
	cr_assert_eq(pop3_session_timeout_class(s), POP3_TIMEOUT_NONE);
	pop3_session_tls_started(s);
	transcript_free(&t);
	drive(s, "PASS secret\r\nCAPA\r\n" LOGIN "STLS\r\n", &t);
	expect_out(&t, "-ERR No username given.\r\n"
		   "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
		   "PIPELINING\r\nUSER\r\nSASL PLAIN\r\nIMPLEMENTATION ringmail\r\n.\r\n"
		   LOGGED_IN "-ERR Already logged in.\r\n");
	pop3_session_free(s);
	transcript_free(&t);
}

Test(pop3_session, stls_already_active)
{
	struct pop3_session_config cfg = config(false, true);
	struct pop3_session *s = pop3_session_new(&cfg);
	struct transcript t = { 0 };

	pop3_session_set_tls(s, true);
	pop3_session_start(s);
	collect(s, &t);
	transcript_free(&t);
	drive(s, "STLS\r\n" LOGIN, &t);
	expect_out(&t, "-ERR TLS is already active.\r\n" LOGGED_IN);
	pop3_session_free(s);
	transcript_free(&t);
}

/* AUTH PLAIN: initial response and continuation, good and bad. */
struct auth_case {
	const char *in;
	const char *want;
};

static const struct auth_case auth_cases[] = {
	{ "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "+OK Logged in.\r\n" },
	{ "AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n", "+ \r\n+OK Logged in.\r\n" },
	{ "AUTH PLAIN YWxpY2UAYWxpY2UAc2VjcmV0\r\n", "+OK Logged in.\r\n" },
	{ "AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\n", "-ERR [AUTH] Authentication failed.\r\n" },
	{ "AUTH PLAIN AGFsaWNlAHdyb25n\r\n", "-ERR [AUTH] Authentication failed.\r\n" },
	{ "AUTH PLAIN\r\nAGFsaWNlAHdyb25n\r\n", "+ \r\n-ERR [AUTH] Authentication failed.\r\n" },
	{ "AUTH PLAIN AGFsaWNl\r\n", "-ERR [AUTH] Invalid AUTH PLAIN response.\r\n" },
	{ "AUTH PLAIN =\r\n", "-ERR [AUTH] Invalid AUTH PLAIN response.\r\n" },
	/* An empty password is malformed (RFC 4616: passwd = 1*SAFE). */
	{ "AUTH PLAIN AGFsaWNlAA==\r\n", "-ERR [AUTH] Invalid AUTH PLAIN response.\r\n" },
	{ "AUTH PLAIN *\r\n", "-ERR [AUTH] Authentication aborted by client.\r\n" },
	{ "AUTH PLAIN AGFsaWNlAHNlY3JldA=\r\n", "-ERR [AUTH] Invalid base64 data in response.\r\n" },
	{ "AUTH PLAIN A!FsaWNlAHNlY3JldA==\r\n", "-ERR [AUTH] Invalid base64 data in response.\r\n" },
	{ "AUTH PLAIN\r\n*\r\nSTAT\r\n",
	  "+ \r\n-ERR [AUTH] Authentication aborted by client.\r\n-ERR Not logged in.\r\n" },
	{ "AUTH PLAIN AGxvY2tlZABzZWNyZXQ=\r\n",
	  "-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n" },
	{ "AUTH PLAIN a b\r\n", "-ERR [AUTH] Unsupported authentication mechanism.\r\n" },
};

Test(pop3_session, auth_plain)
{
	size_t i;

	for (i = 0; i < sizeof(auth_cases) / sizeof(auth_cases[0]); i++) {
		struct pop3_session_config cfg = config(false, false);
		struct pop3_session *s = pop3_session_new(&cfg);
		struct transcript t = { 0 };

		pop3_session_set_tls(s, true);
		pop3_session_start(s);
		collect(s, &t);
		transcript_free(&t);
		drive(s, auth_cases[i].in, &t);
		cr_expect_str_eq(t.out ? t.out : "", auth_cases[i].want,
				 "case %zu: got [%s], want [%s]", i, t.out, auth_cases[i].want);
		pop3_session_free(s);
		transcript_free(&t);
	}
}

/* A NUL in the continuation line must not cut it short into a valid one. */
Test(pop3_session, auth_plain_continuation_with_nul)
{
	static const char in[] = "AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\0x\r\n";
	struct pop3_session_config cfg = config(true, false);
	struct pop3_session *s = pop3_session_new(&cfg);
	struct transcript t = { 0 };

	pop3_session_start(s);
	collect(s, &t);
	transcript_free(&t);
	drive_n(s, in, sizeof(in) - 1, sizeof(in), &t);
	expect_out(&t, "+ \r\n-ERR [AUTH] Invalid base64 data in response.\r\n");
	cr_assert_eq(box.opens, 0);
	pop3_session_free(s);
	transcript_free(&t);
}

Test(pop3_session, retr_stuffs_dots_and_makes_crlf)
{
	struct pop3_session_config cfg = config(true, false);
	struct transcript t = { 0 };
	struct pop3_session *s = run(&cfg, LOGIN "RETR 2\r\nRETR 3\r\nLIST 2\r\n", &t);

	expect_out(&t, LOGGED_IN "+OK 53 octets\r\n"
		   "Subject: two\r\n\r\n..dot line\r\nsecond\r\n...two dots\r\nlast\r\n.\r\n"
		   "+OK 37 octets\r\n"
		   "Subject: three\r\nX: y\r\n\r\nl1\r\nl2\r\n..l3\r\n.\r\n"
		   "+OK 2 53\r\n");
	pop3_session_free(s);
	transcript_free(&t);
}

/* The size LIST reports is the octet count of what RETR sends, without the
 * stuffing and the final "." line. */
Test(pop3_session, sizes_match_retr_output)
{
	static const char *const cases[] = {
		"a\nb\n", "a\r\nb\r\n", "a\nb", "\n\n\n", "x", "", "mixed\r\nlf\ncr\rend\r\n",
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pop3_session_config cfg = config(true, false);
		struct transcript t = { 0 };
		struct pop3_session *s;
		const char *body;
		uint64_t size = crlf_size(cases[i], strlen(cases[i]));

		box.count = 1;
		box.data[0] = cases[i];
		box.len[0] = strlen(cases[i]);
		s = run(&cfg, LOGIN "RETR 1\r\n", &t);
		body = strstr(t.out, "octets\r\n");
		cr_assert_not_null(body, "case %zu: got [%s]", i, t.out);
		body += 8;
		cr_expect_eq(strlen(body) - 3, size, "case %zu: got %zu octets sent, want %llu",
			     i, strlen(body) - 3, (unsigned long long)size);
		cr_expect_str_eq(body + strlen(body) - 3, ".\r\n", "case %zu", i);
		pop3_session_free(s);
		transcript_free(&t);
	}
}

struct top_case {
	const char *cmd;
	const char *want;
};

static const struct top_case top_cases[] = {
	{ "TOP 3 0", "+OK\r\nSubject: three\r\nX: y\r\n\r\n.\r\n" },
	{ "TOP 3 1", "+OK\r\nSubject: three\r\nX: y\r\n\r\nl1\r\n.\r\n" },
	{ "TOP 3 3", "+OK\r\nSubject: three\r\nX: y\r\n\r\nl1\r\nl2\r\n..l3\r\n.\r\n" },
	{ "TOP 3 100", "+OK\r\nSubject: three\r\nX: y\r\n\r\nl1\r\nl2\r\n..l3\r\n.\r\n" },
	{ "TOP 2 1", "+OK\r\nSubject: two\r\n\r\n..dot line\r\n.\r\n" },
	{ "TOP 2 4", "+OK\r\nSubject: two\r\n\r\n..dot line\r\nsecond\r\n...two dots\r\nlast\r\n.\r\n" },
	{ "TOP 4 1", "-ERR There's no message with that number.\r\n" },
};

Test(pop3_session, top)
{
	size_t i;

	for (i = 0; i < sizeof(top_cases) / sizeof(top_cases[0]); i++) {
		struct pop3_session_config cfg = config(true, false);
		struct transcript t = { 0 };
		struct pop3_session *s = run(&cfg, LOGIN, &t);
		char line[64];

		transcript_free(&t);
		snprintf(line, sizeof(line), "%s\r\n", top_cases[i].cmd);
		box.read_max = 3;	/* the cut must work across short reads */
		drive(s, line, &t);
		cr_expect_str_eq(t.out, top_cases[i].want, "%s: got [%s], want [%s]",
				 top_cases[i].cmd, t.out, top_cases[i].want);
		pop3_session_free(s);
		transcript_free(&t);
	}
}

Test(pop3_session, list_and_uidl_skip_deleted)
{
	struct pop3_session_config cfg = config(true, false);
	struct transcript t = { 0 };
	struct pop3_session *s = run(&cfg, LOGIN "LIST\r\nUIDL\r\nDELE 2\r\nLIST\r\nUIDL\r\n", &t);

	expect_out(&t, LOGGED_IN
		   "+OK 3 messages (116 octets)\r\n1 26\r\n2 53\r\n3 37\r\n.\r\n"
		   "+OK\r\n1 uid-one\r\n2 uid-two\r\n3 uid-three\r\n.\r\n"
		   "+OK Marked to be deleted.\r\n"
		   "+OK 2 messages (63 octets)\r\n1 26\r\n3 37\r\n.\r\n"
		   "+OK\r\n1 uid-one\r\n3 uid-three\r\n.\r\n");
	pop3_session_free(s);
	transcript_free(&t);
}

Test(pop3_session, pipelined_in_order_and_byte_by_byte)
{
	const char *in = "CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nRETR 1\r\nTOP 3 1\r\n"
			 "LIST 1\r\nUIDL 2\r\nNOOP\r\nQUIT\r\n";
	const char *want = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
			   "PIPELINING\r\nUSER\r\nSASL PLAIN\r\nIMPLEMENTATION ringmail\r\n.\r\n"
			   LOGGED_IN "+OK 3 116\r\n"
			   "+OK 26 octets\r\nSubject: one\r\n\r\nbody one\r\n.\r\n"
			   "+OK\r\nSubject: three\r\nX: y\r\n\r\nl1\r\n.\r\n"
			   "+OK 1 26\r\n+OK 2 uid-two\r\n+OK\r\n+OK Logging out.\r\n";
	size_t steps[] = { (size_t)-1, 1, 7 };
	size_t i;

	for (i = 0; i < 3; i++) {
		struct pop3_session_config cfg = config(true, false);
		struct pop3_session *s = pop3_session_new(&cfg);
		struct transcript t = { 0 };

		pop3_session_start(s);
		collect(s, &t);
		transcript_free(&t);
		drive_n(s, in, strlen(in), steps[i], &t);
		cr_expect_str_eq(t.out, want, "step %zu: got [%s], want [%s]", steps[i], t.out, want);
		cr_expect_eq(t.want, POP3_WANT_CLOSE, "step %zu: got want %d", steps[i], t.want);
		pop3_session_free(s);
		transcript_free(&t);
	}
}

Test(pop3_session, dele_then_quit_deletes)
{
	struct pop3_session_config cfg = config(true, false);
	struct transcript t = { 0 };
	struct pop3_session *s = run(&cfg, LOGIN "DELE 1\r\nDELE 3\r\nQUIT\r\nSTAT\r\n", &t);

	expect_out(&t, LOGGED_IN "+OK Marked to be deleted.\r\n+OK Marked to be deleted.\r\n"
		   "+OK Logging out, messages deleted.\r\n");
	cr_assert_eq(t.want, POP3_WANT_CLOSE);
	cr_assert(box.marked[0] && !box.marked[1] && box.marked[2],
		  "got marks %d %d %d, want 1 0 1", box.marked[0], box.marked[1], box.marked[2]);
	cr_assert_eq(box.commits, 1, "got %u commits, want 1", box.commits);
	cr_assert_eq(box.closes, 1, "got %u closes, want 1", box.closes);
	pop3_session_free(s);
	cr_assert_eq(box.closes, 1, "got %u closes after free, want 1", box.closes);
	transcript_free(&t);
}

Test(pop3_session, dele_then_drop_deletes_nothing)
{
	struct pop3_session_config cfg = config(true, false);
	struct transcript t = { 0 };
	struct pop3_session *s = run(&cfg, LOGIN "DELE 1\r\nDELE 2\r\n", &t);

	pop3_session_free(s);
	cr_assert(!box.marked[0] && !box.marked[1], "got marks after a drop");
	cr_assert_eq(box.commits, 0, "got %u commits, want 0", box.commits);
	cr_assert_eq(box.closes, 1, "got %u closes, want 1", box.closes);
	transcript_free(&t);
}

Test(pop3_session, dele_rset_quit_deletes_nothing)
{
	struct pop3_session_config cfg = config(true, false);
	struct transcript t = { 0 };
	struct pop3_session *s = run(&cfg, LOGIN "DELE 1\r\nRSET\r\nQUIT\r\n", &t);

	expect_out(&t, LOGGED_IN "+OK Marked to be deleted.\r\n"
		   "+OK maildrop has 3 messages (116 octets)\r\n+OK Logging out.\r\n");
	cr_assert(!box.marked[0], "got message 1 marked after RSET");
	cr_assert_eq(box.commits, 0, "got %u commits, want 0", box.commits);
	cr_assert_eq(box.closes, 1);
	pop3_session_free(s);
	transcript_free(&t);
}

Test(pop3_session, timeout_deletes_nothing)
{
	struct pop3_session_config cfg = config(true, false);
	struct transcript t = { 0 };
	struct pop3_session *s = run(&cfg, LOGIN "DELE 1\r\n", &t);

	cr_assert_eq(pop3_session_timeout_class(s), POP3_TIMEOUT_TRANSACTION);
	transcript_free(&t);
	pop3_session_timeout(s);
	drive(s, "QUIT\r\n", &t);
	expect_out(&t, "-ERR Disconnected for inactivity.\r\n");
	cr_assert_eq(t.want, POP3_WANT_CLOSE);
	cr_assert_eq(t.consumed, 0, "got %zu consumed after timeout", t.consumed);
	cr_assert_eq(box.commits, 0);
	cr_assert(!box.marked[0]);
	cr_assert_eq(box.closes, 1, "the lock is released at once: got %u closes", box.closes);
	pop3_session_free(s);
	cr_assert_eq(box.closes, 1);
	transcript_free(&t);
}

Test(pop3_session, line_too_long)
{
	struct pop3_session_config cfg = config(true, false);
	struct transcript t = { 0 };
	char in[1024];
	struct pop3_session *s;

	memset(in, 0, sizeof(in));
	memcpy(in, "USER ", 5);
	memset(in + 5, 'a', 300);
	strcat(in, "\r\nNOOP\r\nUSER ");
	memset(in + strlen(in), 'b', 250 - 5);	/* 250 + CRLF = 252 <= 255 */
	strcat(in, "\r\n");
	s = run(&cfg, in, &t);
	expect_out(&t, "-ERR Command line too long.\r\n-ERR Not logged in.\r\n+OK\r\n");
	pop3_session_free(s);
	transcript_free(&t);
}

Test(pop3_session, line_max_is_config)
{
	struct pop3_session_config cfg = config(true, false);
	struct transcript t = { 0 };
	struct pop3_session *s;

	cfg.line_max = 20;
	s = run(&cfg, "USER 0123456789abcd\r\nUSER 0123456789abc\r\n", &t);
	expect_out(&t, "-ERR Command line too long.\r\n+OK\r\n");
	pop3_session_free(s);
	transcript_free(&t);
}

Test(pop3_session, too_many_errors_close)
{
	struct pop3_session_config cfg = config(true, false);
	struct transcript t = { 0 };
	struct pop3_session *s;

	cfg.errors_max = 3;
	s = run(&cfg, LOGIN "DELE 1\r\nFOO\r\nBAR\r\nBAZ\r\nQUIT\r\n", &t);
	expect_out(&t, LOGGED_IN "+OK Marked to be deleted.\r\n-ERR Unknown command.\r\n"
		   "-ERR Unknown command.\r\n-ERR Unknown command.\r\n"
		   "-ERR Too many invalid commands.\r\n");
	cr_assert_eq(t.want, POP3_WANT_CLOSE);
	cr_assert_eq(box.commits, 0, "got %u commits, want 0", box.commits);
	pop3_session_free(s);
	transcript_free(&t);
}

Test(pop3_session, too_many_auth_failures_close)
{
	struct pop3_session_config cfg = config(true, false);
	struct transcript t = { 0 };
	struct pop3_session *s = run(&cfg, "USER alice\r\nPASS a\r\nUSER alice\r\nPASS b\r\n"
				     "USER alice\r\nPASS c\r\nUSER alice\r\n", &t);

	expect_out(&t, "+OK\r\n-ERR [AUTH] Authentication failed.\r\n"
		   "+OK\r\n-ERR [AUTH] Authentication failed.\r\n"
		   "+OK\r\n-ERR [AUTH] Authentication failed.\r\n");
	cr_assert_eq(t.want, POP3_WANT_CLOSE);
	pop3_session_free(s);
	transcript_free(&t);
}

Test(pop3_session, in_use_stays_in_authorization)
{
	struct pop3_session_config cfg = config(true, false);
	struct transcript t = { 0 };
	struct pop3_session *s;

	box_reset();
	box.in_use = true;
	cfg.open_mailbox = fake_open;
	s = pop3_session_new(&cfg);
	box.in_use = true;
	pop3_session_start(s);
	drive(s, LOGIN "STAT\r\nQUIT\r\n", &t);
	expect_out(&t, "+OK pop.test ringmail POP3 ready.\r\n+OK\r\n"
		   "-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"
		   "-ERR Not logged in.\r\n+OK Logging out.\r\n");
	cr_assert_eq(box.closes, 0);
	pop3_session_free(s);
	transcript_free(&t);
}

/* A big message streams: output never grows beyond output_max plus one
 * chunk, input after RETR waits until the message is out, and the bytes are
 * the converted message. */
Test(pop3_session, big_message_streams_in_chunks)
{
	struct pop3_session_config cfg = config(true, false);
	const size_t lines = 40000;
	size_t line_len = 27, i, want_len;
	char *msg = malloc(lines * line_len + 1), *want;
	struct transcript t = { 0 };
	struct pop3_session *s;
	const char *in = LOGIN "RETR 1\r\nQUIT\r\n";

	for (i = 0; i < lines; i++)
		memcpy(msg + i * line_len, i % 2 ? ".starts with a dot here...\n"
						 : "an ordinary line of text..\n", line_len);
	msg[lines * line_len] = 0;
	box_reset();
	box.data[0] = msg;
	box.len[0] = lines * line_len;
	box.read_max = 5000;
	cfg.output_max = 4096;
	s = pop3_session_new(&cfg);
	pop3_session_start(s);
	collect(s, &t);
	transcript_free(&t);

	/* After RETR the session takes no input until the message is out. */
	i = pop3_session_feed(s, in, strlen(in));
	cr_assert_eq(i, strlen(LOGIN "RETR 1\r\n"), "got %zu consumed, want up to RETR", i);
	cr_assert_eq(pop3_session_want(s), POP3_WANT_FLUSH);
	drive_n(s, in + i, strlen(in) - i, 3, &t);
	cr_assert_leq(t.max_backlog, 4096 + 2 * 16384 + 4096, "got backlog %zu", t.max_backlog);

	want = malloc(lines * (line_len + 3) + 256);
	want_len = (size_t)sprintf(want, LOGGED_IN "+OK %zu octets\r\n", lines * (line_len + 1));
	for (i = 0; i < lines; i++) {
		const char *l = i % 2 ? "..starts with a dot here...\r\n"
				      : "an ordinary line of text..\r\n";

		memcpy(want + want_len, l, strlen(l));
		want_len += strlen(l);
	}
	want_len += (size_t)sprintf(want + want_len, ".\r\n+OK Logging out.\r\n");
	cr_assert_eq(t.len, want_len, "got %zu octets, want %zu", t.len, want_len);
	cr_assert(memcmp(t.out, want, want_len) == 0, "streamed bytes differ");
	free(want);
	free(msg);
	pop3_session_free(s);
	transcript_free(&t);
}

Test(pop3_session, read_error_mid_message_closes_without_delete)
{
	struct pop3_session_config cfg = config(true, false);
	struct transcript t = { 0 };
	struct pop3_session *s = run(&cfg, LOGIN "DELE 2\r\n", &t);

	transcript_free(&t);
	box.read_error = -EIO;
	drive(s, "RETR 1\r\nQUIT\r\n", &t);
	expect_out(&t, "+OK 26 octets\r\n");
	cr_assert_eq(t.want, POP3_WANT_CLOSE);
	cr_assert_eq(box.commits, 0);
	cr_assert_eq(box.closes, 1);
	pop3_session_free(s);
	transcript_free(&t);
}

Test(pop3_session, free_accepts_null)
{
	cr_assert_null(pop3_session_free(NULL));
}
