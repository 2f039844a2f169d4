/*
 * pop3_session - POP3 server state machine (interface in pop3_session.h).
 *
 * The session is an enum pop3_state and one enter_state(). Command lines are
 * collected in a fixed buffer (line_max octets, or sasl_line_max for an AUTH
 * continuation); commands come from a table whose rows say in which states
 * they are allowed and whether they take arguments. Responses use the
 * RFC 2449 codes [AUTH], [IN-USE] and [SYS/TEMP], and Dovecot's wording where
 * clients or people know it.
 *
 * Multi-line responses that can be large (RETR, TOP, LIST and UIDL of a big
 * mailbox) are a "transfer": a cursor that transfer_pump() advances while the
 * output backlog is below output_max. While a transfer runs, no input is
 * consumed, so pipelined commands are answered strictly in order.
 *
 * Errors: unknown commands, commands in the wrong state, bad arguments and
 * over-long lines count towards errors_max; failed logins count towards
 * auth_failures_max. Reaching either closes the connection; closing any way
 * but QUIT in TRANSACTION releases the mailbox without deleting anything.
 */
#include "pop3_session.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "log.h"
#include "sasl.h"
#include "xalloc.h"

enum pop3_state {
	POP3_STATE_INIT,		/* before pop3_session_start */
	POP3_STATE_AUTHORIZATION,	/* greeted, not logged in */
	POP3_STATE_AUTH_PLAIN,		/* AUTH PLAIN sent "+ ": the response line */
	POP3_STATE_TRANSACTION,		/* logged in, mailbox open */
	POP3_STATE_UPDATE,		/* QUIT: deleting (transient) */
	POP3_STATE_STARTTLS,		/* STLS answered: waiting for the handshake */
	POP3_STATE_CLOSING,		/* last response queued; nothing more is read */
};

static const char *const state_names[] = {
	"init", "authorization", "auth-plain", "transaction", "update", "starttls",
	"closing",
};

static const enum pop3_timeout_class state_timeouts[] = {
	[POP3_STATE_INIT] = POP3_TIMEOUT_AUTHORIZATION,
	[POP3_STATE_AUTHORIZATION] = POP3_TIMEOUT_AUTHORIZATION,
	[POP3_STATE_AUTH_PLAIN] = POP3_TIMEOUT_AUTHORIZATION,
	[POP3_STATE_TRANSACTION] = POP3_TIMEOUT_TRANSACTION,
	[POP3_STATE_UPDATE] = POP3_TIMEOUT_NONE,
	[POP3_STATE_STARTTLS] = POP3_TIMEOUT_NONE,
	[POP3_STATE_CLOSING] = POP3_TIMEOUT_NONE,
};

/* Raw message bytes read per step; each can double (LF to CRLF, stuffing). */
#define CHUNK_SIZE 16384
/* Room kept above output_max, so one step of a transfer always fits. */
#define OUTPUT_SLACK (2 * CHUNK_SIZE + 4096)
#define MSG_NUMBER_DIGITS 10

#define PLAINTEXT_DENIED \
	"-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."

enum transfer_kind {
	TRANSFER_NONE,
	TRANSFER_MESSAGE,	/* RETR or TOP */
	TRANSFER_LIST,		/* LIST without argument */
	TRANSFER_UIDL,		/* UIDL without argument */
};

/* The cursor of a multi-line response being produced. */
struct transfer {
	enum transfer_kind kind;
	size_t index;		/* message being sent, or next listing line */
	uint64_t offset;	/* raw octets of the message read so far */
	bool top;		/* TOP: stop after the header and lines_left lines */
	bool top_done;
	uint64_t lines_left;
	bool in_header;		/* no empty line seen yet */
	bool line_start;	/* the next octet starts a line */
	bool line_empty;	/* the line so far holds only CR */
	char prev;		/* the previous raw octet (for bare LF) */
};

struct pop3_session {
	enum pop3_state state;
	struct pop3_session_config cfg;	/* defaults filled in */
	char *hostname;
	bool tls_active;
	char *user;			/* USER given, waiting for PASS */
	char *login;			/* logged in as */
	unsigned errors;
	unsigned auth_failures;

	struct buf out;			/* responses not yet sent */
	char *line;			/* the partial command line */
	size_t line_cap;		/* max(line_max, sasl_line_max) */
	size_t line_len;
	bool line_overflow;		/* discarding up to the next LF */

	const struct pop3_mailbox_ops *ops;	/* NULL unless TRANSACTION */
	void *box;
	size_t count;			/* messages in the snapshot */
	bool *deleted;			/* DELE marks, count entries */
	struct transfer tx;
	char *chunk;			/* CHUNK_SIZE octets, for RETR/TOP */
};

enum pop3_command_flag {
	POP3_CMD_NO_ARGS = 1 << 0,	/* takes no arguments */
	POP3_CMD_COUNTS = 1 << 1,	/* a refusal counts towards errors_max */
};

struct pop3_command {
	const char *verb;
	unsigned states;	/* bit (1 << enum pop3_state) where allowed */
	unsigned flags;		/* enum pop3_command_flag */
	void (*run)(struct pop3_session *s, char *args);
};

#define ST(x) (1u << POP3_STATE_##x)

static void mailbox_release(struct pop3_session *s);

/* enter_state - the one place where the state changes. Leaving for CLOSING
 * releases the mailbox: unless QUIT committed, nothing is deleted. */
static void enter_state(struct pop3_session *s, enum pop3_state state)
{
	log_debug("pop3_state", "user=%s from=%s to=%s", s->login ? s->login : "-",
		  state_names[s->state], state_names[state]);
	s->state = state;
	if (state == POP3_STATE_CLOSING) {
		s->tx.kind = TRANSFER_NONE;
		mailbox_release(s);
	}
}

/* reply - queue one response line (CR LF added) */
static void __attribute__((format(printf, 2, 3)))
reply(struct pop3_session *s, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = buf_append_vprintf(&s->out, fmt, ap);
	va_end(ap);
	if (rc < 0 || buf_append(&s->out, "\r\n", 2) < 0)
		log_panic("pop3 reply: output backlog over its cap");
}

/* reply_error - a response to the client's mistake: counts towards errors_max */
static void reply_error(struct pop3_session *s, const char *line)
{
	s->errors++;
	reply(s, "%s", line);
}

/* plaintext_ok - RFC 2595 4: passwords in the clear only under TLS, unless
 * the listener allows it (a trusted network, a test) */
static bool plaintext_ok(const struct pop3_session *s)
{
	return s->tls_active || s->cfg.plaintext_allowed;
}

/* mailbox_release - close the mailbox without commit (idempotent) */
static void mailbox_release(struct pop3_session *s)
{
	if (s->ops != NULL)
		s->ops->close(s->box);
	s->ops = NULL;
	s->box = NULL;
	free(s->deleted);
	s->deleted = NULL;
	s->count = 0;
}

/* args_split - cut args into at most max space-separated words in place;
 * returns the number of words, or -1 when there are more */
static int args_split(char *args, char **words, int max)
{
	int n = 0;
	char *p = args;

	while (*p) {
		while (*p == ' ')
			*p++ = 0;
		if (!*p)
			break;
		if (n == max)
			return -1;
		words[n++] = p;
		while (*p && *p != ' ')
			p++;
	}
	return n;
}

/* number_parse - a decimal without sign; false for anything else */
static bool number_parse(const char *w, uint64_t *v)
{
	size_t len = strlen(w), i;

	if (len == 0 || len > MSG_NUMBER_DIGITS)
		return false;
	*v = 0;
	for (i = 0; i < len; i++) {
		if (w[i] < '0' || w[i] > '9')
			return false;
		*v = *v * 10 + (uint64_t)(w[i] - '0');
	}
	return true;
}

/* message_find - the 0-based index of message word, or false after replying */
static bool message_find(struct pop3_session *s, const char *w, size_t *i)
{
	uint64_t n;

	if (!number_parse(w, &n)) {
		reply_error(s, "-ERR Invalid message number.");
		return false;
	}
	if (n == 0 || n > s->count) {
		reply_error(s, "-ERR There's no message with that number.");
		return false;
	}
	if (s->deleted[n - 1]) {
		reply_error(s, "-ERR Message is deleted.");
		return false;
	}
	*i = (size_t)(n - 1);
	return true;
}

/* maildrop_totals - messages not marked and their octets (STAT, LIST) */
static void maildrop_totals(const struct pop3_session *s, size_t *n, uint64_t *octets)
{
	size_t i;

	*n = 0;
	*octets = 0;
	for (i = 0; i < s->count; i++)
		if (!s->deleted[i]) {
			(*n)++;
			*octets += s->ops->size(s->box, i);
		}
}

/* mailbox_open - the password was right: lock and snapshot the mailbox */
static void mailbox_open(struct pop3_session *s, const char *user)
{
	int rc = s->cfg.open_mailbox
		? s->cfg.open_mailbox(s->cfg.ctx, user, &s->ops, &s->box) : POP3_OPEN_ERROR;

	if (rc == POP3_OPEN_IN_USE) {
		s->ops = NULL;
		reply(s, "-ERR [IN-USE] Mailbox is locked by another POP3 session.");
		return;
	}
	if (rc != POP3_OPEN_OK || s->ops == NULL) {
		s->ops = NULL;
		reply(s, "-ERR [SYS/TEMP] Unable to open the mailbox.");
		return;
	}
	s->count = s->ops->count(s->box);
	s->deleted = xcalloc(s->count + 1, sizeof(bool));
	s->login = xstrdup(user);
	log_info("pop3_login", "user=%s messages=%zu tls=%s", user, s->count,
		 s->tls_active ? "yes" : "no");
	enter_state(s, POP3_STATE_TRANSACTION);
	reply(s, "+OK Logged in.");
}

/* auth_failed - a failed login; too many close the connection */
static void auth_failed(struct pop3_session *s, const char *line)
{
	s->auth_failures++;
	reply(s, "%s", line);
	if (s->auth_failures >= s->cfg.auth_failures_max)
		enter_state(s, POP3_STATE_CLOSING);
}

/* login - check user and password, then open the mailbox */
static void login(struct pop3_session *s, const char *user, const char *password)
{
	int rc = s->cfg.authenticate
		? s->cfg.authenticate(s->cfg.ctx, user, password) : POP3_AUTH_BAD;

	switch (rc) {
	case POP3_AUTH_OK:
		mailbox_open(s, user);
		break;
	case POP3_AUTH_RATE_LIMITED:
		auth_failed(s, "-ERR [SYS/TEMP] Too many failed logins, try again later.");
		break;
	case POP3_AUTH_TEMPFAIL:
		reply(s, "-ERR [SYS/TEMP] Temporary authentication failure.");
		break;
	default:
		auth_failed(s, "-ERR [AUTH] Authentication failed.");
		break;
	}
}

/* cmd_user - USER name: kept until PASS */
static void cmd_user(struct pop3_session *s, char *args)
{
	if (!plaintext_ok(s)) {
		reply_error(s, PLAINTEXT_DENIED);
		return;
	}
	free(s->user);
	s->user = NULL;
	if (*args == 0 || strchr(args, ' ') != NULL) {
		reply_error(s, "-ERR Invalid user name.");
		return;
	}
	s->user = xstrdup(args);
	reply(s, "+OK");
}

/* cmd_pass - PASS: the whole rest of the line, spaces included (RFC 1939) */
static void cmd_pass(struct pop3_session *s, char *args)
{
	char *user = s->user;

	if (!plaintext_ok(s)) {
		reply_error(s, PLAINTEXT_DENIED);
		return;
	}
	if (user == NULL) {
		reply_error(s, "-ERR No username given.");
		return;
	}
	s->user = NULL;
	login(s, user, args);
	free(user);
}

static void cmd_apop(struct pop3_session *s, char *args)
{
	reply(s, "-ERR APOP is not supported.");
}

/* auth_plain_response - an RFC 4616 message, decoded by sasl.c. "*"
 * cancels, also as an initial response (sasl would call it bad base64);
 * "=" is an empty response (RFC 5034 4), which sasl finds malformed. An
 * authzid other than the user would be proxy authorization: refused. Only
 * bad base64 and a cancel are not counted as failed attempts. */
static void auth_plain_response(struct pop3_session *s, const char *b64)
{
	struct sasl_session sasl;
	struct sasl_result r;

	if (strcmp(b64, "*") == 0) {
		reply_error(s, "-ERR [AUTH] Authentication aborted by client.");
		return;
	}
	r = sasl_start(&sasl, "PLAIN", b64);
	switch (r.status == SASL_DONE ? SASL_ERR_NONE : r.error) {
	case SASL_ERR_NONE:
		login(s, r.user, r.password);
		break;
	case SASL_ERR_BASE64:
		reply_error(s, "-ERR [AUTH] Invalid base64 data in response.");
		break;
	case SASL_ERR_AUTHZID:
	case SASL_ERR_TOO_LONG:   /* longer than any user or password we keep */
		auth_failed(s, "-ERR [AUTH] Authentication failed.");
		break;
	default:
		auth_failed(s, "-ERR [AUTH] Invalid AUTH PLAIN response.");
		break;
	}
	sasl_reset(&sasl);     /* wipes the password */
}

/* cmd_auth - AUTH alone lists the mechanisms (clients from before CAPA ask
 * so); AUTH PLAIN with or without an initial response */
static void cmd_auth(struct pop3_session *s, char *args)
{
	char *w[2];
	int n = args_split(args, w, 2);

	if (n == 0) {
		reply(s, "+OK");
		reply(s, "PLAIN");
		reply(s, ".");
		return;
	}
	if (n < 0 || strcasecmp(w[0], "PLAIN") != 0) {
		reply_error(s, "-ERR [AUTH] Unsupported authentication mechanism.");
		return;
	}
	if (!plaintext_ok(s)) {
		reply_error(s, PLAINTEXT_DENIED);
		return;
	}
	if (n == 2) {
		auth_plain_response(s, w[1]);
		return;
	}
	enter_state(s, POP3_STATE_AUTH_PLAIN);
	reply(s, "+ ");
}

/* cmd_capa - RFC 2449 5. USER and SASL PLAIN only where a password may be
 * sent (Dovecot does the same); STLS only before TLS and login. */
static void cmd_capa(struct pop3_session *s, char *args)
{
	bool authorization = s->state == POP3_STATE_AUTHORIZATION;

	reply(s, "+OK Capability list follows");
	reply(s, "TOP");
	reply(s, "UIDL");
	reply(s, "RESP-CODES");
	reply(s, "AUTH-RESP-CODE");	/* RFC 3206: [AUTH] and [SYS/...] */
	reply(s, "PIPELINING");
	if (authorization && plaintext_ok(s)) {
		reply(s, "USER");
		reply(s, "SASL PLAIN");
	}
	if (authorization && s->cfg.tls_available && !s->tls_active)
		reply(s, "STLS");
	reply(s, "IMPLEMENTATION ringmail");
	reply(s, ".");
}

/* cmd_stls - RFC 2595 4: after "+OK" the client starts the handshake */
static void cmd_stls(struct pop3_session *s, char *args)
{
	if (s->tls_active) {
		reply_error(s, "-ERR TLS is already active.");
		return;
	}
	if (!s->cfg.tls_available) {
		reply_error(s, "-ERR STLS is not available.");
		return;
	}
	reply(s, "+OK Begin TLS negotiation now.");
	enter_state(s, POP3_STATE_STARTTLS);
}

/* update - RFC 1939 6: the UPDATE state; hand the marks over and commit */
static void update(struct pop3_session *s)
{
	size_t i, marked = 0;
	int err = 0, e;

	enter_state(s, POP3_STATE_UPDATE);
	for (i = 0; i < s->count; i++)
		if (s->deleted[i]) {
			marked++;
			if ((e = s->ops->mark_deleted(s->box, i)) < 0 && err == 0)
				err = e;
		}
	if (marked > 0 && (e = s->ops->commit(s->box)) < 0 && err == 0)
		err = e;
	if (err < 0) {
		log_warn("pop3_update_failed", "user=%s error=%s", s->login, strerror(-err));
		reply(s, "-ERR [SYS/TEMP] Some deleted messages were not removed.");
	} else if (marked > 0) {
		reply(s, "+OK Logging out, messages deleted.");
	} else {
		reply(s, "+OK Logging out.");
	}
	log_info("pop3_logout", "user=%s deleted=%zu", s->login, err < 0 ? 0 : marked);
}

static void cmd_quit(struct pop3_session *s, char *args)
{
	if (s->state == POP3_STATE_TRANSACTION)
		update(s);
	else
		reply(s, "+OK Logging out.");
	enter_state(s, POP3_STATE_CLOSING);
}

static void cmd_stat(struct pop3_session *s, char *args)
{
	size_t n;
	uint64_t octets;

	maildrop_totals(s, &n, &octets);
	reply(s, "+OK %zu %llu", n, (unsigned long long)octets);
}

/* listing_start - LIST or UIDL: one line, or a transfer for all of them */
static void listing_start(struct pop3_session *s, char *args, enum transfer_kind kind)
{
	char *w[1];
	int n = args_split(args, w, 1);
	size_t i, count;
	uint64_t octets;

	if (n < 0) {
		reply_error(s, "-ERR Invalid arguments.");
	} else if (n == 1) {
		if (!message_find(s, w[0], &i))
			return;
		if (kind == TRANSFER_LIST)
			reply(s, "+OK %zu %llu", i + 1,
			      (unsigned long long)s->ops->size(s->box, i));
		else
			reply(s, "+OK %zu %s", i + 1, s->ops->uidl(s->box, i));
	} else {
		maildrop_totals(s, &count, &octets);
		if (kind == TRANSFER_LIST)
			reply(s, "+OK %zu messages (%llu octets)", count,
			      (unsigned long long)octets);
		else
			reply(s, "+OK");
		memset(&s->tx, 0, sizeof(s->tx));
		s->tx.kind = kind;
	}
}

static void cmd_list(struct pop3_session *s, char *args)
{
	listing_start(s, args, TRANSFER_LIST);
}

static void cmd_uidl(struct pop3_session *s, char *args)
{
	listing_start(s, args, TRANSFER_UIDL);
}

/* message_start - the cursor for RETR or TOP */
static void message_start(struct pop3_session *s, size_t i, bool top, uint64_t lines)
{
	memset(&s->tx, 0, sizeof(s->tx));
	s->tx.kind = TRANSFER_MESSAGE;
	s->tx.index = i;
	s->tx.top = top;
	s->tx.lines_left = lines;
	s->tx.in_header = true;
	s->tx.line_start = true;
}

static void cmd_retr(struct pop3_session *s, char *args)
{
	char *w[1];
	size_t i;

	if (args_split(args, w, 1) != 1) {
		reply_error(s, "-ERR Invalid arguments.");
		return;
	}
	if (!message_find(s, w[0], &i))
		return;
	reply(s, "+OK %llu octets", (unsigned long long)s->ops->size(s->box, i));
	message_start(s, i, false, 0);
}

/* cmd_top - TOP msg n: the header, the empty line and n body lines */
static void cmd_top(struct pop3_session *s, char *args)
{
	char *w[2];
	uint64_t lines;
	size_t i;

	if (args_split(args, w, 2) != 2 || !number_parse(w[1], &lines)) {
		reply_error(s, "-ERR Invalid arguments.");
		return;
	}
	if (!message_find(s, w[0], &i))
		return;
	reply(s, "+OK");
	message_start(s, i, true, lines);
}

static void cmd_dele(struct pop3_session *s, char *args)
{
	char *w[1];
	size_t i;

	if (args_split(args, w, 1) != 1) {
		reply_error(s, "-ERR Invalid arguments.");
		return;
	}
	if (!message_find(s, w[0], &i))
		return;
	s->deleted[i] = true;
	reply(s, "+OK Marked to be deleted.");
}

static void cmd_noop(struct pop3_session *s, char *args)
{
	reply(s, "+OK");
}

/* cmd_rset - unmark everything (the marks are only ours until UPDATE) */
static void cmd_rset(struct pop3_session *s, char *args)
{
	size_t n;
	uint64_t octets;

	memset(s->deleted, 0, s->count * sizeof(bool));
	maildrop_totals(s, &n, &octets);
	reply(s, "+OK maildrop has %zu messages (%llu octets)", n, (unsigned long long)octets);
}

#define ST_AUTH ST(AUTHORIZATION)
#define ST_TRANS ST(TRANSACTION)

static const struct pop3_command commands[] = {
	{ "USER", ST_AUTH, POP3_CMD_COUNTS, cmd_user },
	{ "PASS", ST_AUTH, POP3_CMD_COUNTS, cmd_pass },
	{ "APOP", ST_AUTH, POP3_CMD_COUNTS, cmd_apop },
	{ "AUTH", ST_AUTH, POP3_CMD_COUNTS, cmd_auth },
	{ "STLS", ST_AUTH, POP3_CMD_NO_ARGS | POP3_CMD_COUNTS, cmd_stls },
	{ "CAPA", ST_AUTH | ST_TRANS, POP3_CMD_NO_ARGS, cmd_capa },
	{ "QUIT", ST_AUTH | ST_TRANS, POP3_CMD_NO_ARGS, cmd_quit },
	{ "STAT", ST_TRANS, POP3_CMD_NO_ARGS | POP3_CMD_COUNTS, cmd_stat },
	{ "LIST", ST_TRANS, POP3_CMD_COUNTS, cmd_list },
	{ "UIDL", ST_TRANS, POP3_CMD_COUNTS, cmd_uidl },
	{ "RETR", ST_TRANS, POP3_CMD_COUNTS, cmd_retr },
	{ "TOP", ST_TRANS, POP3_CMD_COUNTS, cmd_top },
	{ "DELE", ST_TRANS, POP3_CMD_COUNTS, cmd_dele },
	{ "NOOP", ST_TRANS, POP3_CMD_NO_ARGS | POP3_CMD_COUNTS, cmd_noop },
	{ "RSET", ST_TRANS, POP3_CMD_NO_ARGS | POP3_CMD_COUNTS, cmd_rset },
	{ NULL, 0, 0, NULL },
};

/* command_run - split verb and arguments, check the table, run */
static void command_run(struct pop3_session *s, char *line, size_t len)
{
	const struct pop3_command *c;
	size_t verb_len = strcspn(line, " ");
	char *args = line + verb_len;

	if (memchr(line, '\0', len) != NULL || memchr(line, '\r', len) != NULL) {
		reply_error(s, "-ERR Invalid character in command.");
		return;
	}
	if (*args == ' ')
		*args++ = 0;
	for (c = commands; c->verb != NULL; c++)
		if (strlen(c->verb) == verb_len && strncasecmp(line, c->verb, verb_len) == 0)
			break;
	if (c->verb == NULL)
		reply_error(s, "-ERR Unknown command.");
	else if (!(c->states & (1u << s->state)))
		reply_error(s, s->state == POP3_STATE_TRANSACTION
			    ? "-ERR Already logged in." : "-ERR Not logged in.");
	else if ((c->flags & POP3_CMD_NO_ARGS) && *args != 0)
		reply_error(s, "-ERR No arguments allowed.");
	else
		c->run(s, args);
}

/* listing_pump - the next lines of LIST or UIDL, skipping marked ones */
static void listing_pump(struct pop3_session *s)
{
	struct transfer *t = &s->tx;

	for (; t->index < s->count && s->out.len < s->cfg.output_max; t->index++) {
		if (s->deleted[t->index])
			continue;
		if (t->kind == TRANSFER_LIST)
			reply(s, "%zu %llu", t->index + 1,
			      (unsigned long long)s->ops->size(s->box, t->index));
		else
			reply(s, "%zu %s", t->index + 1, s->ops->uidl(s->box, t->index));
	}
	if (t->index >= s->count) {
		reply(s, ".");
		t->kind = TRANSFER_NONE;
	}
}

/* message_convert - raw octets to the wire: bare LF to CRLF, a "." at the
 * start of a line doubled (RFC 1939 3), TOP cut after its lines. Writes
 * into out (room for 2 * n); returns the raw octets used. */
static size_t message_convert(struct transfer *t, const char *in, size_t n,
			      char *out, size_t *out_len)
{
	size_t i, o = 0;
	char c;

	for (i = 0; i < n; i++) {
		c = in[i];
		if (t->line_start) {
			if (t->top && !t->in_header && t->lines_left == 0) {
				t->top_done = true;
				break;
			}
			if (c == '.')
				out[o++] = '.';
			t->line_start = false;
			t->line_empty = true;
		}
		if (c == '\n') {
			if (t->prev != '\r')
				out[o++] = '\r';
			out[o++] = '\n';
			t->line_start = true;
			if (t->in_header)
				t->in_header = !t->line_empty;
			else if (t->lines_left > 0)
				t->lines_left--;
		} else {
			out[o++] = c;
			if (c != '\r')
				t->line_empty = false;
		}
		t->prev = c;
	}
	*out_len = o;
	return i;
}

/* message_end - a last line without line end gets one; then "." */
static void message_end(struct pop3_session *s)
{
	if (!s->tx.line_start)
		reply(s, "%s", "");
	reply(s, ".");
	s->tx.kind = TRANSFER_NONE;
}

/* message_pump - read one chunk and queue it converted. A read error after
 * "+OK" cannot be reported in-band, so the connection is closed (without
 * deleting anything) and the client sees a truncated response. */
static void message_pump(struct pop3_session *s)
{
	struct transfer *t = &s->tx;
	ssize_t n = s->ops->read(s->box, t->index, t->offset, s->chunk, CHUNK_SIZE);
	size_t used, produced;

	if (n < 0) {
		log_warn("pop3_read_failed", "user=%s message=%zu error=%s", s->login,
			 t->index + 1, strerror((int)-n));
		enter_state(s, POP3_STATE_CLOSING);
		return;
	}
	if (n == 0) {
		message_end(s);
		return;
	}
	if (buf_reserve(&s->out, 2 * (size_t)n) < 0)
		log_panic("pop3 message: output backlog over its cap");
	used = message_convert(t, s->chunk, (size_t)n,
			       s->out.data + s->out.head + s->out.len, &produced);
	s->out.len += produced;
	t->offset += used;
	if (t->top_done)
		message_end(s);
}

/* transfer_pump - advance the multi-line response while the output has room */
static void transfer_pump(struct pop3_session *s)
{
	while (s->tx.kind != TRANSFER_NONE && s->out.len < s->cfg.output_max) {
		if (s->tx.kind == TRANSFER_MESSAGE)
			message_pump(s);
		else
			listing_pump(s);
	}
}

/* errors_check - too many errors: a last -ERR and close */
static void errors_check(struct pop3_session *s)
{
	if (s->errors < s->cfg.errors_max || s->state == POP3_STATE_CLOSING)
		return;
	reply(s, "-ERR Too many invalid commands.");
	enter_state(s, POP3_STATE_CLOSING);
}

/* line_done - a complete line without its line end: a command, or the
 * AUTH PLAIN response; the line buffer is wiped (it may hold a password) */
static void line_done(struct pop3_session *s, char *line, size_t len)
{
	line[len] = 0;
	if (s->state == POP3_STATE_AUTH_PLAIN) {
		enter_state(s, POP3_STATE_AUTHORIZATION);
		if (memchr(line, '\0', len) != NULL || memchr(line, '\r', len) != NULL)
			reply_error(s, "-ERR [AUTH] Invalid base64 data in response.");
		else
			auth_plain_response(s, line);
	} else {
		command_run(s, line, len);
	}
	explicit_bzero(line, len);
}

/* line_feed - collect one line; handle it when its LF arrives. An over-long
 * line is dropped up to its LF and answered with one -ERR, so the session
 * stays in step with a pipelining client. A CR before the LF is removed. */
static size_t line_feed(struct pop3_session *s, const char *in, size_t len)
{
	const char *nl = memchr(in, '\n', len);
	size_t take = nl ? (size_t)(nl - in) + 1 : len, n;
	size_t max = s->state == POP3_STATE_AUTH_PLAIN ? s->cfg.sasl_line_max : s->cfg.line_max;

	if (!s->line_overflow && s->line_len + take > max)
		s->line_overflow = true;
	if (!s->line_overflow) {
		memcpy(s->line + s->line_len, in, take);
		s->line_len += take;
	}
	if (nl == NULL)
		return take;
	n = s->line_len;
	s->line_len = 0;
	if (s->line_overflow) {
		s->line_overflow = false;
		if (s->state == POP3_STATE_AUTH_PLAIN)
			enter_state(s, POP3_STATE_AUTHORIZATION);
		reply_error(s, "-ERR Command line too long.");
	} else {
		n--;				/* LF */
		if (n > 0 && s->line[n - 1] == '\r')
			n--;
		line_done(s, s->line, n);
	}
	errors_check(s);
	return take;
}

/* input_paused - no input is read while a response streams, the backlog is
 * full, or the state reads nothing */
static bool input_paused(const struct pop3_session *s)
{
	return s->tx.kind != TRANSFER_NONE || s->out.len >= s->cfg.output_max
	       || s->state == POP3_STATE_STARTTLS || s->state == POP3_STATE_CLOSING;
}

/* pop3_session_feed - consume input until done or paused */
size_t pop3_session_feed(struct pop3_session *s, const char *in, size_t len)
{
	size_t used = 0;

	if (s->state == POP3_STATE_INIT)
		pop3_session_start(s);
	transfer_pump(s);
	while (used < len && !input_paused(s)) {
		used += line_feed(s, in + used, len - used);
		transfer_pump(s);
	}
	return used;
}

/* pop3_session_new - allocate; fill in defaults for zero limits */
struct pop3_session *pop3_session_new(const struct pop3_session_config *cfg)
{
	struct pop3_session *s = xcalloc(1, sizeof(*s));

	s->cfg = *cfg;
	if (!s->cfg.line_max)
		s->cfg.line_max = 255;
	if (s->cfg.line_max < 16)
		s->cfg.line_max = 16;
	if (!s->cfg.sasl_line_max)
		s->cfg.sasl_line_max = 2048;
	if (!s->cfg.errors_max)
		s->cfg.errors_max = 20;
	if (!s->cfg.auth_failures_max)
		s->cfg.auth_failures_max = 3;
	if (!s->cfg.output_max)
		s->cfg.output_max = 64 * 1024;
	s->line_cap = s->cfg.line_max > s->cfg.sasl_line_max ? s->cfg.line_max
							     : s->cfg.sasl_line_max;
	s->hostname = xstrdup(cfg->hostname ? cfg->hostname : "localhost");
	s->line = xmalloc(s->line_cap + 1);
	s->chunk = xmalloc(CHUNK_SIZE);
	s->cfg.hostname = s->hostname;
	buf_init(&s->out, s->cfg.output_max + OUTPUT_SLACK);
	return s;
}

/* pop3_session_free - a dropped connection: the mailbox closes, no commit */
struct pop3_session *pop3_session_free(struct pop3_session *s)
{
	if (s == NULL)
		return NULL;
	mailbox_release(s);
	buf_free(&s->out);
	explicit_bzero(s->line, s->line_cap + 1);
	free(s->line);
	free(s->chunk);
	free(s->user);
	free(s->login);
	free(s->hostname);
	free(s);
	return NULL;
}

/* pop3_session_start - the greeting */
void pop3_session_start(struct pop3_session *s)
{
	if (s->state != POP3_STATE_INIT)
		return;
	reply(s, "+OK %s ringmail POP3 ready.", s->hostname);
	enter_state(s, POP3_STATE_AUTHORIZATION);
}

const char *pop3_session_output(const struct pop3_session *s, size_t *len)
{
	*len = s->out.len;
	return buf_data(&s->out);
}

/* pop3_session_output_consumed - sent bytes go; a transfer refills */
void pop3_session_output_consumed(struct pop3_session *s, size_t n)
{
	buf_consume(&s->out, n);
	transfer_pump(s);
}

/* pop3_session_want - see header */
enum pop3_session_want pop3_session_want(const struct pop3_session *s)
{
	if (s->state == POP3_STATE_CLOSING)
		return s->out.len ? POP3_WANT_FLUSH : POP3_WANT_CLOSE;
	if (s->state == POP3_STATE_STARTTLS)
		return s->out.len ? POP3_WANT_FLUSH : POP3_WANT_STARTTLS;
	if (s->tx.kind != TRANSFER_NONE || s->out.len >= s->cfg.output_max)
		return POP3_WANT_FLUSH;
	return POP3_WANT_READ;
}

/* pop3_session_tls_started - RFC 2595 4: forget everything from before TLS */
void pop3_session_tls_started(struct pop3_session *s)
{
	if (s->state != POP3_STATE_STARTTLS)
		log_panic("pop3_session_tls_started: state %s", state_names[s->state]);
	buf_reset(&s->out);
	explicit_bzero(s->line, s->line_cap + 1);
	s->line_len = 0;
	s->line_overflow = false;
	free(s->user);
	s->user = NULL;
	s->tls_active = true;
	enter_state(s, POP3_STATE_AUTHORIZATION);
}

void pop3_session_set_tls(struct pop3_session *s, bool active)
{
	s->tls_active = active;
}

/* pop3_session_timeout - RFC 1939 3: the autologout timer closes without
 * entering UPDATE, so nothing is deleted */
void pop3_session_timeout(struct pop3_session *s)
{
	if (s->state == POP3_STATE_CLOSING)
		return;
	reply(s, "-ERR Disconnected for inactivity.");
	enter_state(s, POP3_STATE_CLOSING);
}

enum pop3_timeout_class pop3_session_timeout_class(const struct pop3_session *s)
{
	return state_timeouts[s->state];
}

const char *pop3_session_user(const struct pop3_session *s)
{
	return s->login;
}
