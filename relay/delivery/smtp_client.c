/*
 * smtp_client - outbound SMTP client state machine; see smtp_client.h.
 *
 * Every command we send pushes the kind of reply it expects onto a FIFO;
 * every reply pops one. That single rule covers both the plain dialog (one
 * command, one reply) and PIPELINING (RFC 2920: many commands, replies in
 * the same order). When the FIFO runs empty inside a transaction,
 * txn_advance() decides what to send next from the transaction's progress.
 *
 * Recipient state: OPEN (no answer yet), ACCEPTED (2xx to RCPT, waiting for
 * the end of data), FINAL (its rcpt event has fired). Exactly one rcpt
 * event per recipient follows from only ever firing it on the way to FINAL.
 */
#include "smtp_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/base64.h>

#include "buf.h"
#include "log.h"
#include "mime_downgrade.h"
#include "xalloc.h"

enum pending_kind {
	PENDING_EHLO,
	PENDING_HELO,
	PENDING_STARTTLS,
	PENDING_MAIL,
	PENDING_RCPT,
	PENDING_DATA,		/* wants 354 */
	PENDING_DATA_END,	/* final reply after the body (DATA or BDAT) */
	PENDING_DOT_ABORT,	/* "." sent after an unwanted 354 */
	PENDING_RSET,
	PENDING_QUIT,
	PENDING_AUTH,		/* index: enum auth_step */
};

/* Where an AUTH dialog is; the pending entry's index. */
enum auth_step {
	AUTH_STEP_PLAIN,	/* "AUTH PLAIN <initial response>" sent: want 235 */
	AUTH_STEP_LOGIN,	/* "AUTH LOGIN" sent: want 334 (user name) */
	AUTH_STEP_USER,		/* user name sent: want 334 (password) */
	AUTH_STEP_PASSWORD,	/* password sent: want 235 */
	AUTH_STEP_CANCEL,	/* "*" sent after an unexpected 334: any reply fails */
};

struct pending {
	enum pending_kind kind;
	size_t index;		/* recipient index for PENDING_RCPT */
};

enum rcpt_state { RCPT_OPEN, RCPT_ACCEPTED, RCPT_FINAL };

struct smtp_client {
	struct smtp_client_config config;
	char *helo_name;
	enum smtp_client_state state;
	struct smtp_reply_parser parser;
	struct buf out;			/* commands and staged body, capped */
	unsigned ext;
	unsigned auth_mechs;		/* enum smtp_client_auth_mech */
	char *auth_user, *auth_password;	/* during AUTH only */
	uint64_t size_limit;
	struct pending *pending;	/* FIFO: [pending_head, pending_tail) */
	size_t pending_head, pending_tail, pending_cap;

	/* The current transaction; txn is NULL outside one. */
	const struct smtp_client_txn *txn;
	unsigned char *rcpt_state;
	size_t rcpt_state_cap;
	size_t rcpt_sent, accepted;
	bool mail_ok, mail_failed, data_sent, bdat;
	bool in_body;			/* body bytes still to stage */
	bool at_line_start;		/* dot-stuffing state across chunks */
	size_t body_off;
	/* The body as it goes out: the txn's, or its 7-bit form in converted
	 * when the server lacks 8BITMIME (RFC 6152 3; mime_downgrade.h). */
	const char *body;
	size_t body_len;
	struct buf converted;
};

static const char *const state_names[] = {
	"greeting", "ehlo", "helo", "starttls", "tls", "ready", "mail", "rcpt",
	"data", "body", "rset", "quit", "closed", "failed", "auth",
};

const char *smtp_client_state_name(enum smtp_client_state state)
{
	if ((size_t)state >= sizeof(state_names) / sizeof(state_names[0]))
		return "unknown";
	return state_names[state];
}

/* Reply timeouts in ms per state (RFC 5321 4.5.3.2); 0: not waiting. */
static const int64_t state_timeouts[] = {
	[SMTP_CLIENT_GREETING] = 300000, [SMTP_CLIENT_EHLO] = 300000,
	[SMTP_CLIENT_HELO] = 300000, [SMTP_CLIENT_STARTTLS] = 300000,
	[SMTP_CLIENT_MAIL] = 300000, [SMTP_CLIENT_RCPT] = 300000,
	[SMTP_CLIENT_DATA] = 120000, [SMTP_CLIENT_BODY] = 600000,
	[SMTP_CLIENT_RSET] = 300000, [SMTP_CLIENT_QUIT] = 60000,
	[SMTP_CLIENT_AUTH] = 300000,
};

int64_t smtp_client_timeout_ms(const struct smtp_client *c)
{
	return state_timeouts[c->state];
}

/* enter_state - the one place a state changes, so it can be traced. */
static void enter_state(struct smtp_client *c, enum smtp_client_state s)
{
	log_debug("smtp_client_state", "from=%s to=%s",
		  smtp_client_state_name(c->state), smtp_client_state_name(s));
	c->state = s;
}

struct smtp_client *smtp_client_new(const struct smtp_client_config *config)
{
	struct smtp_client *c = xcalloc(1, sizeof(*c));

	c->config = *config;
	c->helo_name = xstrdup(config->helo_name != NULL ? config->helo_name : "localhost");
	c->config.helo_name = c->helo_name;
	if (c->config.max_output == 0)
		c->config.max_output = 4u << 20;
	if (c->config.max_output < 64u << 10)
		c->config.max_output = 64u << 10;
	if (c->config.body_chunk == 0)
		c->config.body_chunk = 64u << 10;
	if (c->config.body_chunk > c->config.max_output / 4)
		c->config.body_chunk = c->config.max_output / 4;
	buf_init(&c->out, c->config.max_output);
	smtp_reply_parser_init(&c->parser, config->max_reply_line, config->max_reply_lines);
	c->state = SMTP_CLIENT_GREETING;
	return c;
}

/* auth_wipe - forget the credentials, and any command bytes still
 * holding them. */
static void auth_wipe(struct smtp_client *c)
{
	if (c->auth_user != NULL) {
		explicit_bzero(c->auth_user, strlen(c->auth_user));
		free(c->auth_user);
		c->auth_user = NULL;
	}
	if (c->auth_password != NULL) {
		explicit_bzero(c->auth_password, strlen(c->auth_password));
		free(c->auth_password);
		c->auth_password = NULL;
	}
}

struct smtp_client *smtp_client_free(struct smtp_client *c)
{
	if (c == NULL)
		return NULL;
	auth_wipe(c);
	buf_free(&c->out);
	buf_free(&c->converted);
	free(c->pending);
	free(c->rcpt_state);
	free(c->helo_name);
	free(c);
	return NULL;
}

enum smtp_client_state smtp_client_state(const struct smtp_client *c)
{
	return c->state;
}

bool smtp_client_has_ext(const struct smtp_client *c, unsigned mask)
{
	return (c->ext & mask) == mask;
}

uint64_t smtp_client_size_limit(const struct smtp_client *c)
{
	return c->size_limit;
}

/* pending_push - expect one more reply. */
static void pending_push(struct smtp_client *c, enum pending_kind kind, size_t index)
{
	if (c->pending_head == c->pending_tail)
		c->pending_head = c->pending_tail = 0;
	if (c->pending_tail == c->pending_cap) {
		size_t cap = c->pending_cap ? c->pending_cap * 2 : 16;
		c->pending = xreallocarray(c->pending, cap, sizeof(*c->pending));
		c->pending_cap = cap;
	}
	c->pending[c->pending_tail++] = (struct pending){ kind, index };
}

static bool pending_empty(const struct smtp_client *c)
{
	return c->pending_head == c->pending_tail;
}

/* send_cmd - stage one command line. The commands we build are bounded by
 * validated strings; only a txn far over the cap fails, and begin() checks
 * for that before anything is staged. */
static int send_cmd(struct smtp_client *c, enum pending_kind kind, size_t index,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int send_cmd(struct smtp_client *c, enum pending_kind kind, size_t index,
		    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int err = buf_append_vprintf(&c->out, fmt, ap);
	va_end(ap);
	if (err < 0)
		return err;
	pending_push(c, kind, index);
	return 0;
}

/* result_from_reply - an event result for reply r; derive a status
 * "c.0.0" when the server gave no enhanced code. */
static struct smtp_client_result result_from_reply(const struct smtp_reply *r,
						   char status[SMTP_REPLY_ENHANCED_MAX])
{
	if (r->enhanced[0] != '\0')
		snprintf(status, SMTP_REPLY_ENHANCED_MAX, "%s", r->enhanced);
	else
		snprintf(status, SMTP_REPLY_ENHANCED_MAX, "%d.0.0",
			 r->code / 100 == 2 || r->code / 100 == 5 ? r->code / 100 : 4);
	return (struct smtp_client_result){ r->code, status, r->text, false };
}

/* outcome_of - 2xx delivered, 5xx bounced, anything else deferred. */
static enum smtp_outcome outcome_of(int code)
{
	if (code / 100 == 2)
		return SMTP_OUTCOME_DELIVERED;
	if (code / 100 == 5)
		return SMTP_OUTCOME_BOUNCED;
	return SMTP_OUTCOME_DEFERRED;
}

/* rcpt_final - fire recipient i's one and only rcpt event. */
static void rcpt_final(struct smtp_client *c, size_t i, enum smtp_outcome outcome,
		       const struct smtp_client_result *res)
{
	if (c->rcpt_state[i] == RCPT_FINAL)
		return;
	c->rcpt_state[i] = RCPT_FINAL;
	if (c->config.events.rcpt != NULL)
		c->config.events.rcpt(c->config.events.arg, i, outcome, res);
}

/* rcpts_final - give every recipient in state `which` (or every unfinished
 * one when which is RCPT_FINAL) the same outcome. */
static void rcpts_final(struct smtp_client *c, enum rcpt_state which,
			enum smtp_outcome outcome, const struct smtp_client_result *res)
{
	if (c->txn == NULL)
		return;
	for (size_t i = 0; i < c->txn->nrcpts; i++) {
		if (c->rcpt_state[i] == RCPT_FINAL)
			continue;
		if (which == RCPT_FINAL || c->rcpt_state[i] == which)
			rcpt_final(c, i, outcome, res);
	}
}

/* rcpts_by_reply - outcome for every recipient in `which` from reply r. */
static void rcpts_by_reply(struct smtp_client *c, enum rcpt_state which,
			   const struct smtp_reply *r)
{
	char status[SMTP_REPLY_ENHANCED_MAX];
	struct smtp_client_result res = result_from_reply(r, status);

	rcpts_final(c, which, outcome_of(r->code), &res);
}

static void fire_ready(struct smtp_client *c)
{
	if (c->state == SMTP_CLIENT_READY && c->config.events.ready != NULL)
		c->config.events.ready(c->config.events.arg);
}

/* txn_finish - close the transaction: anything still open is deferred
 * (cannot happen unless a path above is wrong, so say so), RSET when the
 * server may still hold transaction state, then txn_done and ready. */
static void txn_finish(struct smtp_client *c, bool rset, bool announce_ready)
{
	const struct smtp_client_txn *txn = c->txn;
	struct smtp_client_result internal = { 0, "4.3.0", "internal: no reply", true };

	rcpts_final(c, RCPT_FINAL, SMTP_OUTCOME_DEFERRED, &internal);
	c->txn = NULL;
	c->in_body = false;
	c->body = NULL;
	c->body_len = 0;
	buf_free(&c->converted);
	if (rset && send_cmd(c, PENDING_RSET, 0, "RSET\r\n") == 0)
		enter_state(c, SMTP_CLIENT_RSET);
	else
		enter_state(c, SMTP_CLIENT_READY);
	if (txn != NULL && c->config.events.txn_done != NULL)
		c->config.events.txn_done(c->config.events.arg, txn);
	if (announce_ready)
		fire_ready(c);
}

/* conn_close - end the connection: defer what is open, finish the txn,
 * fire closed. courtesy_quit stages a QUIT the engine may flush. */
static void conn_close(struct smtp_client *c, bool failed,
		       const struct smtp_client_result *res, bool courtesy_quit)
{
	const struct smtp_client_txn *txn = c->txn;

	rcpts_final(c, RCPT_FINAL, SMTP_OUTCOME_DEFERRED, res);
	auth_wipe(c);
	c->txn = NULL;
	c->in_body = false;
	c->pending_head = c->pending_tail = 0;
	if (courtesy_quit) {
		buf_reset(&c->out);
		(void)buf_append_str(&c->out, "QUIT\r\n");
	}
	enter_state(c, failed ? SMTP_CLIENT_FAILED : SMTP_CLIENT_CLOSED);
	if (txn != NULL && c->config.events.txn_done != NULL)
		c->config.events.txn_done(c->config.events.arg, txn);
	if (c->config.events.closed != NULL)
		c->config.events.closed(c->config.events.arg, failed, res);
}

/* conn_fail_reply - a connection-level failure said by the server. */
static void conn_fail_reply(struct smtp_client *c, const struct smtp_reply *r,
			    bool courtesy_quit)
{
	char status[SMTP_REPLY_ENHANCED_MAX];
	struct smtp_client_result res = result_from_reply(r, status);

	conn_close(c, true, &res, courtesy_quit);
}

/* protocol_fail - the server broke the protocol; we cannot trust the
 * dialog's sync any more, so no QUIT either. */
static void protocol_fail(struct smtp_client *c, const char *why)
{
	struct smtp_client_result res = { 0, "4.5.0", why, true };

	log_warn("smtp_client_protocol", "state=%s reason=\"%s\"",
		 smtp_client_state_name(c->state), why);
	conn_close(c, true, &res, false);
}

/* ext_parse_auth - "AUTH PLAIN LOGIN ..." (or the old "AUTH=LOGIN"):
 * the mechanisms we speak. */
static void ext_parse_auth(struct smtp_client *c, const char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		while (i < n && (s[i] == ' ' || s[i] == '='))
			i++;
		size_t start = i;
		while (i < n && s[i] != ' ')
			i++;
		if (i - start == 5 && strncasecmp(s + start, "PLAIN", 5) == 0)
			c->auth_mechs |= SMTP_AUTH_PLAIN;
		else if (i - start == 5 && strncasecmp(s + start, "LOGIN", 5) == 0)
			c->auth_mechs |= SMTP_AUTH_LOGIN;
	}
	if (c->auth_mechs != 0)
		c->ext |= SMTP_EXT_AUTH;
}

/* ext_parse_line - one "KEYWORD params" line of the EHLO reply. */
static void ext_parse_line(struct smtp_client *c, const char *s, size_t n)
{
	static const struct { const char *name; unsigned bit; } table[] = {
		{ "PIPELINING", SMTP_EXT_PIPELINING }, { "SIZE", SMTP_EXT_SIZE },
		{ "8BITMIME", SMTP_EXT_8BITMIME }, { "SMTPUTF8", SMTP_EXT_SMTPUTF8 },
		{ "CHUNKING", SMTP_EXT_CHUNKING }, { "DSN", SMTP_EXT_DSN },
		{ "STARTTLS", SMTP_EXT_STARTTLS },
		{ "ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCEDSTATUSCODES },
		{ "REQUIRETLS", SMTP_EXT_REQUIRETLS },
	};
	size_t kw = 0;

	while (kw < n && s[kw] != ' ' && s[kw] != '=')
		kw++;
	if (kw == 4 && strncasecmp(s, "AUTH", 4) == 0) {
		ext_parse_auth(c, s + kw, n - kw);
		return;
	}
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if (strlen(table[i].name) != kw || strncasecmp(s, table[i].name, kw) != 0)
			continue;
		c->ext |= table[i].bit;
		if (table[i].bit != SMTP_EXT_SIZE)
			return;
		/* "SIZE 10240000"; absent or 0 means no fixed limit. */
		uint64_t v = 0;
		for (size_t j = kw + 1; j < n && s[j] >= '0' && s[j] <= '9'; j++) {
			if (v > (UINT64_MAX - 9) / 10) {
				v = 0;
				break;
			}
			v = v * 10 + (uint64_t)(s[j] - '0');
		}
		c->size_limit = v;
		return;
	}
}

/* ext_parse - the EHLO reply's lines after the first name extensions. */
static void ext_parse(struct smtp_client *c, const struct smtp_reply *r)
{
	const char *s = r->text, *end = r->text + r->text_len;
	const char *nl = memchr(s, '\n', (size_t)(end - s));

	c->ext = 0;
	c->auth_mechs = 0;
	c->size_limit = 0;
	while (nl != NULL) {
		s = nl + 1;
		nl = memchr(s, '\n', (size_t)(end - s));
		ext_parse_line(c, s, (size_t)((nl != NULL ? nl : end) - s));
	}
}

/* send_ehlo - also the start after STARTTLS. */
static void send_ehlo(struct smtp_client *c)
{
	(void)send_cmd(c, PENDING_EHLO, 0, "EHLO %s\r\n", c->helo_name);
	enter_state(c, SMTP_CLIENT_EHLO);
}

/* on_handshake - replies to the greeting, EHLO, HELO and STARTTLS. */
static void on_handshake(struct smtp_client *c, enum pending_kind kind,
			 const struct smtp_reply *r)
{
	int cls = smtp_reply_class(r);

	switch (kind) {
	case PENDING_EHLO:
		if (cls == 2) {
			ext_parse(c, r);
			enter_state(c, SMTP_CLIENT_READY);
			fire_ready(c);
		} else if (cls == 5) {
			/* RFC 5321 3.2: an old server; fall back to HELO. */
			(void)send_cmd(c, PENDING_HELO, 0, "HELO %s\r\n", c->helo_name);
			enter_state(c, SMTP_CLIENT_HELO);
		} else {
			conn_fail_reply(c, r, true);
		}
		return;
	case PENDING_HELO:
		if (cls != 2) {
			conn_fail_reply(c, r, true);
			return;
		}
		c->ext = 0;
		c->auth_mechs = 0;
		c->size_limit = 0;
		enter_state(c, SMTP_CLIENT_READY);
		fire_ready(c);
		return;
	default: {	/* PENDING_STARTTLS */
		char status[SMTP_REPLY_ENHANCED_MAX];
		struct smtp_client_result res = result_from_reply(r, status);
		bool ok = cls == 2;

		enter_state(c, ok ? SMTP_CLIENT_TLS : SMTP_CLIENT_READY);
		if (c->config.events.starttls != NULL)
			c->config.events.starttls(c->config.events.arg, ok, &res);
		if (!ok)
			fire_ready(c);
		return;
	}
	}
}

/* body_start - begin staging the body; DATA bodies are dot-stuffed. */
static void body_start(struct smtp_client *c)
{
	c->in_body = true;
	c->body_off = 0;
	c->at_line_start = true;
	enter_state(c, SMTP_CLIENT_BODY);
}

static bool body_ends_crlf(const struct smtp_client *c)
{
	return c->body_len == 0 || (c->body_len >= 2 &&
		c->body[c->body_len - 2] == '\r' && c->body[c->body_len - 1] == '\n');
}

/* wire_size - the message's size on the wire (without dot-stuffing). */
static uint64_t wire_size(const struct smtp_client *c)
{
	return (uint64_t)c->body_len + (body_ends_crlf(c) ? 0 : 2);
}

/* txn_advance - the FIFO ran empty inside a transaction: send the next
 * command (the non-pipelined path, or BDAT after pipelined RCPTs). */
static void txn_advance(struct smtp_client *c)
{
	const struct smtp_client_txn *t = c->txn;

	if (c->mail_failed) {
		txn_finish(c, false, true);
		return;
	}
	if (c->rcpt_sent < t->nrcpts)
		return;	/* cannot happen: RCPTs go out as MAIL's reply comes */
	if (c->data_sent)
		return;
	if (c->accepted == 0) {
		txn_finish(c, true, true);
		return;
	}
	c->data_sent = true;
	if (c->bdat) {
		(void)send_cmd(c, PENDING_DATA_END, 0, "BDAT %llu LAST\r\n",
			       (unsigned long long)wire_size(c));
		body_start(c);
	} else {
		(void)send_cmd(c, PENDING_DATA, 0, "DATA\r\n");
		enter_state(c, SMTP_CLIENT_DATA);
	}
}

/* send_rcpt - "RCPT TO:<addr>" with DSN parameters when offered. */
static int send_rcpt(struct smtp_client *c, size_t i)
{
	const struct smtp_client_rcpt *r = &c->txn->rcpts[i];
	char notify[40] = "";
	bool dsn = smtp_client_has_ext(c, SMTP_EXT_DSN);

	if (dsn && r->notify != 0) {
		if (r->notify & SMTP_NOTIFY_NEVER) {
			strcpy(notify, " NOTIFY=NEVER");
		} else {
			snprintf(notify, sizeof(notify), " NOTIFY=%s%s%s",
				 r->notify & SMTP_NOTIFY_SUCCESS ? "SUCCESS," : "",
				 r->notify & SMTP_NOTIFY_FAILURE ? "FAILURE," : "",
				 r->notify & SMTP_NOTIFY_DELAY ? "DELAY," : "");
			notify[strlen(notify) - 1] = '\0';	/* the last comma */
		}
	}
	c->rcpt_sent = i + 1;
	return send_cmd(c, PENDING_RCPT, i, "RCPT TO:<%s>%s%s%s\r\n", r->addr, notify,
			dsn && r->orcpt != NULL ? " ORCPT=" : "",
			dsn && r->orcpt != NULL ? r->orcpt : "");
}

/* on_txn_reply - replies to MAIL and RCPT. */
static void on_mail_rcpt(struct smtp_client *c, struct pending p,
			 const struct smtp_reply *r)
{
	bool ok = smtp_reply_class(r) == 2;

	if (p.kind == PENDING_MAIL) {
		c->mail_ok = ok;
		c->mail_failed = !ok;
		if (!ok)
			rcpts_by_reply(c, RCPT_FINAL, r);
		else
			enter_state(c, SMTP_CLIENT_RCPT);
		if (ok && !smtp_client_has_ext(c, SMTP_EXT_PIPELINING))
			(void)send_rcpt(c, 0);
	} else if (p.index < c->txn->nrcpts && c->rcpt_state[p.index] == RCPT_OPEN) {
		if (ok) {
			c->rcpt_state[p.index] = RCPT_ACCEPTED;
			c->accepted++;
		} else {
			char status[SMTP_REPLY_ENHANCED_MAX];
			struct smtp_client_result res = result_from_reply(r, status);
			rcpt_final(c, p.index, outcome_of(r->code), &res);
		}
		if (!smtp_client_has_ext(c, SMTP_EXT_PIPELINING) && !c->mail_failed &&
		    c->rcpt_sent < c->txn->nrcpts)
			(void)send_rcpt(c, c->rcpt_sent);
	}
	if (pending_empty(c))
		txn_advance(c);
}

/* on_data_reply - the reply to DATA: 354 starts the body. */
static void on_data_reply(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code / 100 == 3) {
		if (c->accepted > 0 && c->mail_ok) {
			pending_push(c, PENDING_DATA_END, 0);
			body_start(c);
		} else {
			/* RFC 2920 3.1: 354 with nobody accepted: send "." alone. */
			(void)buf_append_str(&c->out, ".\r\n");
			pending_push(c, PENDING_DOT_ABORT, 0);
			enter_state(c, SMTP_CLIENT_BODY);
		}
		return;
	}
	if (smtp_reply_class(r) == 2) {
		/* 2xx to DATA is nonsense: the body was never sent. */
		struct smtp_client_result res = { r->code, "4.5.0", r->text, false };
		rcpts_final(c, RCPT_ACCEPTED, SMTP_OUTCOME_DEFERRED, &res);
	} else {
		rcpts_by_reply(c, RCPT_ACCEPTED, r);
	}
	txn_finish(c, c->mail_ok, true);
}

/* on_data_end - the final reply: the accepted recipients' fate. */
static void on_data_end(struct smtp_client *c, const struct smtp_reply *r)
{
	bool ok = smtp_reply_class(r) == 2;

	rcpts_by_reply(c, RCPT_ACCEPTED, r);
	/* After a refused BDAT the server may still hold the transaction. */
	txn_finish(c, c->bdat && !ok, true);
}

/* on_early_reply - a reply while the body is not yet all written. Either
 * the server gave up on us (4xx/5xx: take its word, then close) or it is
 * confused; the dialog is out of sync in both cases. */
static void on_early_reply(struct smtp_client *c, const struct smtp_reply *r)
{
	char status[SMTP_REPLY_ENHANCED_MAX];
	struct smtp_client_result res = result_from_reply(r, status);

	if (smtp_reply_class(r) == 4 || smtp_reply_class(r) == 5) {
		rcpts_by_reply(c, RCPT_ACCEPTED, r);
		conn_close(c, true, &res, false);
		return;
	}
	protocol_fail(c, "reply before end of data");
}

/* send_base64 - one line of base64 of len bytes of data (an AUTH
 * argument or response), after prefix. */
static int send_base64(struct smtp_client *c, enum auth_step step, const char *prefix,
		       const unsigned char *data, size_t len)
{
	unsigned char b64[4 * (SMTP_CLIENT_PARAM_MAX * 2 + 2) / 3 + 8];
	size_t olen = 0;

	if (mbedtls_base64_encode(b64, sizeof(b64), &olen, data, len) != 0)
		return -ENOBUFS;
	int rc = send_cmd(c, PENDING_AUTH, step, "%s%s\r\n", prefix, (const char *)b64);
	explicit_bzero(b64, sizeof(b64));
	return rc;
}

/* auth_done - the dialog is over: wipe, READY, and tell the engine. */
static void auth_done(struct smtp_client *c, bool ok, const struct smtp_reply *r)
{
	char status[SMTP_REPLY_ENHANCED_MAX];
	struct smtp_client_result res = result_from_reply(r, status);

	auth_wipe(c);
	enter_state(c, SMTP_CLIENT_READY);
	if (c->config.events.auth != NULL)
		c->config.events.auth(c->config.events.arg, ok, &res);
	if (ok)
		fire_ready(c);
}

/* on_auth_reply - RFC 4954: 235 is success, 334 asks for the next
 * response (LOGIN: the user name, then the password), anything else
 * (535, 454, 5xx) fails. A 334 where none is due is answered with "*",
 * which cancels the exchange (RFC 4954 4). */
static void on_auth_reply(struct smtp_client *c, enum auth_step step, const struct smtp_reply *r)
{
	bool more = r->code == 334;

	if (step == AUTH_STEP_LOGIN && more) {
		send_base64(c, AUTH_STEP_USER, "", (const unsigned char *)c->auth_user, strlen(c->auth_user));
		return;
	}
	if (step == AUTH_STEP_USER && more) {
		send_base64(c, AUTH_STEP_PASSWORD, "", (const unsigned char *)c->auth_password,
			    strlen(c->auth_password));
		return;
	}
	if (more && step != AUTH_STEP_CANCEL) {
		(void)send_cmd(c, PENDING_AUTH, AUTH_STEP_CANCEL, "*\r\n");
		return;
	}
	auth_done(c, r->code == 235 && step != AUTH_STEP_CANCEL, r);
}

/* handle_reply - dispatch one complete reply. */
static void handle_reply(struct smtp_client *c, const struct smtp_reply *r)
{
	if (r->code == 421 && c->state != SMTP_CLIENT_QUIT) {
		/* RFC 5321 3.8: the server is closing; anything open waits. */
		conn_fail_reply(c, r, false);
		return;
	}
	if (pending_empty(c)) {
		if (c->state != SMTP_CLIENT_GREETING) {
			protocol_fail(c, "unexpected reply");
		} else if (smtp_reply_class(r) == 2) {
			send_ehlo(c);
		} else {
			/* RFC 5321 3.1: after a 554 greeting the client says QUIT. */
			conn_fail_reply(c, r, true);
		}
		return;
	}
	struct pending p = c->pending[c->pending_head];
	if (p.kind == PENDING_DATA_END && (c->in_body || buf_len(&c->out) > 0)) {
		on_early_reply(c, r);
		return;
	}
	c->pending_head++;
	switch (p.kind) {
	case PENDING_EHLO:
	case PENDING_HELO:
	case PENDING_STARTTLS:
		on_handshake(c, p.kind, r);
		break;
	case PENDING_MAIL:
	case PENDING_RCPT:
		on_mail_rcpt(c, p, r);
		break;
	case PENDING_DATA:
		on_data_reply(c, r);
		break;
	case PENDING_DATA_END:
		on_data_end(c, r);
		break;
	case PENDING_DOT_ABORT:
		txn_finish(c, c->mail_ok, true);
		break;
	case PENDING_RSET:
		if (smtp_reply_class(r) == 2) {
			enter_state(c, SMTP_CLIENT_READY);
			fire_ready(c);
		} else {
			(void)send_cmd(c, PENDING_QUIT, 0, "QUIT\r\n");
			enter_state(c, SMTP_CLIENT_QUIT);
		}
		break;
	case PENDING_QUIT: {
		char status[SMTP_REPLY_ENHANCED_MAX];
		struct smtp_client_result res = result_from_reply(r, status);
		conn_close(c, false, &res, false);
		break;
	}
	case PENDING_AUTH:
		on_auth_reply(c, (enum auth_step)p.index, r);
		break;
	}
}

static bool is_over(const struct smtp_client *c)
{
	return c->state == SMTP_CLIENT_CLOSED || c->state == SMTP_CLIENT_FAILED;
}

int smtp_client_feed(struct smtp_client *c, const char *in, size_t len)
{
	if (is_over(c))
		return -EPIPE;
	while (len > 0) {
		const struct smtp_reply *r;
		size_t used;

		if (c->state == SMTP_CLIENT_TLS) {
			/* Plaintext after the 220 to STARTTLS would be taken as
			 * if it came over TLS: the command injection attack. */
			protocol_fail(c, "data after STARTTLS reply");
			return -EPROTO;
		}
		int rc = smtp_reply_parse(&c->parser, in, len, &used, &r);
		in += used;
		len -= used;
		if (rc < 0) {
			protocol_fail(c, rc == -EMSGSIZE ? "reply too long" : "malformed reply");
			return rc;
		}
		if (rc == 0)
			break;
		handle_reply(c, r);
		if (is_over(c))
			return 0;
	}
	return 0;
}

/* body_stage_data - copy up to budget body bytes, doubling a "." at the
 * start of a line (RFC 5321 4.5.2); then the terminator. */
static int body_stage_data(struct smtp_client *c, size_t budget)
{
	size_t end = c->body_len - c->body_off > budget ? c->body_off + budget : c->body_len;
	int err;

	while (c->body_off < end) {
		const char *p = c->body + c->body_off;
		if (c->at_line_start && *p == '.' && (err = buf_append(&c->out, ".", 1)) < 0)
			return err;
		const char *nl = memchr(p, '\n', end - c->body_off);
		size_t seg = nl != NULL ? (size_t)(nl - p) + 1 : end - c->body_off;
		if ((err = buf_append(&c->out, p, seg)) < 0)
			return err;
		c->body_off += seg;
		c->at_line_start = nl != NULL;
	}
	if (c->body_off < c->body_len)
		return 0;
	if (!body_ends_crlf(c) && (err = buf_append(&c->out, "\r\n", 2)) < 0)
		return err;
	if ((err = buf_append(&c->out, ".\r\n", 3)) < 0)
		return err;
	c->in_body = false;
	return 0;
}

/* body_stage_bdat - the body as is; BDAT's length already counts the CRLF
 * we add to a body that lacks one. */
static int body_stage_bdat(struct smtp_client *c, size_t budget)
{
	size_t n = c->body_len - c->body_off;
	int err;

	if (n > budget)
		n = budget;
	if ((err = buf_append(&c->out, c->body + c->body_off, n)) < 0)
		return err;
	c->body_off += n;
	if (c->body_off < c->body_len)
		return 0;
	if (!body_ends_crlf(c) && (err = buf_append(&c->out, "\r\n", 2)) < 0)
		return err;
	c->in_body = false;
	return 0;
}

/* smtp_client_output - top the output up with body bytes so that at most
 * about one chunk is staged: the body is never copied whole. */
const char *smtp_client_output(struct smtp_client *c, size_t *len)
{
	size_t chunk = c->config.body_chunk;

	if (c->in_body && c->txn != NULL && buf_len(&c->out) < chunk) {
		size_t budget = chunk - buf_len(&c->out);
		/* Dot-stuffing at most doubles a chunk; keep that under the cap. */
		if ((c->bdat ? body_stage_bdat(c, budget) : body_stage_data(c, budget)) < 0)
			log_panic("smtp_client_output: output cap too small for body chunk");
	}
	*len = buf_len(&c->out);
	return buf_data(&c->out);
}

void smtp_client_output_consumed(struct smtp_client *c, size_t n)
{
	buf_consume(&c->out, n);
}

/* safe_string - no controls, no CR/LF; no '<', '>' in addresses and no
 * space in xtext parameters: nothing that could end or forge a command. */
static bool safe_string(const char *s, bool address)
{
	const char *start = s;

	if (s == NULL)
		return false;
	for (; *s != '\0'; s++) {
		/* RFC 5321 4.5.3.1: paths are at most 256 octets; allow slack,
		 * but keep every command far below the output cap. */
		if (s - start >= SMTP_CLIENT_PARAM_MAX)
			return false;
		unsigned char ch = (unsigned char)*s;
		if (ch < 0x20 || ch == 0x7f || (address && (ch == '<' || ch == '>')) ||
		    (!address && ch == ' '))
			return false;
	}
	return true;
}

static bool txn_valid(const struct smtp_client_txn *t)
{
	if (t->nrcpts == 0 || t->rcpts == NULL || !safe_string(t->sender, true) ||
	    (t->body == NULL && t->body_len > 0) ||
	    (t->envid != NULL && !safe_string(t->envid, false)))
		return false;
	for (size_t i = 0; i < t->nrcpts; i++) {
		if (!safe_string(t->rcpts[i].addr, true) || t->rcpts[i].addr[0] == '\0' ||
		    (t->rcpts[i].orcpt != NULL && !safe_string(t->rcpts[i].orcpt, false)))
			return false;
	}
	return true;
}

/* txn_reset - per-transaction state for txn. */
static void txn_reset(struct smtp_client *c, const struct smtp_client_txn *t)
{
	if (c->rcpt_state_cap < t->nrcpts) {
		c->rcpt_state = xrealloc(c->rcpt_state, t->nrcpts);
		c->rcpt_state_cap = t->nrcpts;
	}
	memset(c->rcpt_state, RCPT_OPEN, t->nrcpts);
	c->txn = t;
	c->rcpt_sent = c->accepted = 0;
	c->mail_ok = c->mail_failed = c->data_sent = c->in_body = false;
	c->bdat = smtp_client_has_ext(c, SMTP_EXT_CHUNKING);
	c->body_off = 0;
	c->body = t->body;
	c->body_len = t->body_len;
	buf_free(&c->converted);
}

/* txn_downgrade - RFC 6152 3: the server lacks 8BITMIME and the body has
 * 8-bit bytes: send its 7-bit form (8bit parts as quoted-printable), as
 * Postfix does. Returns false with *why set when it cannot be converted. */
static bool txn_downgrade(struct smtp_client *c, const char **why)
{
	if (smtp_client_has_ext(c, SMTP_EXT_8BITMIME) || !mime_has_8bit(c->body, c->body_len))
		return true;
	/* Quoted-printable at most triples a byte, plus soft breaks. */
	buf_init(&c->converted, 4 * c->body_len + 4096);
	if (mime_downgrade(c->body, c->body_len, &c->converted, why) < 0) {
		buf_free(&c->converted);
		return false;
	}
	c->body = buf_data(&c->converted);
	c->body_len = buf_len(&c->converted);
	log_debug("smtp_client_downgrade", "from=%zu to=%zu", c->txn->body_len, c->body_len);
	return true;
}

/* txn_refuse_local - end the transaction before sending anything. */
static void txn_refuse_local(struct smtp_client *c, int code, const char *status,
			     const char *text)
{
	struct smtp_client_result res = { code, status, text, true };

	rcpts_final(c, RCPT_FINAL, SMTP_OUTCOME_BOUNCED, &res);
	txn_finish(c, false, false);
}

/* send_mail - "MAIL FROM:<sender>" and the parameters the server takes. */
static int send_mail(struct smtp_client *c, const struct smtp_client_txn *t)
{
	bool dsn = smtp_client_has_ext(c, SMTP_EXT_DSN);
	char size[32] = "";

	if (smtp_client_has_ext(c, SMTP_EXT_SIZE))
		snprintf(size, sizeof(size), " SIZE=%llu", (unsigned long long)wire_size(c));
	return send_cmd(c, PENDING_MAIL, 0, "MAIL FROM:<%s>%s%s%s%s%s%s%s%s\r\n", t->sender, size,
			(t->flags & SMTP_TXN_8BIT) && smtp_client_has_ext(c, SMTP_EXT_8BITMIME)
				? " BODY=8BITMIME" : "",
			(t->flags & SMTP_TXN_SMTPUTF8) ? " SMTPUTF8" : "",
			dsn && t->ret == SMTP_RET_FULL ? " RET=FULL" : "",
			dsn && t->ret == SMTP_RET_HDRS ? " RET=HDRS" : "",
			dsn && t->envid != NULL ? " ENVID=" : "",
			dsn && t->envid != NULL ? t->envid : "",
			(t->flags & SMTP_TXN_REQUIRETLS) ? " REQUIRETLS" : "");
}

int smtp_client_begin(struct smtp_client *c, const struct smtp_client_txn *t)
{
	if (c->state != SMTP_CLIENT_READY)
		return -EBUSY;
	if (!txn_valid(t))
		return -EINVAL;
	txn_reset(c, t);
	if ((t->flags & SMTP_TXN_SMTPUTF8) && !smtp_client_has_ext(c, SMTP_EXT_SMTPUTF8)) {
		txn_refuse_local(c, 553, "5.6.7",
				 "remote server does not support SMTPUTF8, message needs it");
		return 1;
	}
	if ((t->flags & SMTP_TXN_REQUIRETLS) && !smtp_client_has_ext(c, SMTP_EXT_REQUIRETLS)) {
		/* RFC 8689 4.2.1: the server must offer it after STARTTLS. */
		txn_refuse_local(c, 550, "5.7.30", "REQUIRETLS not supported by the remote server (RFC 8689)");
		return 1;
	}
	const char *why = NULL;
	if (!txn_downgrade(c, &why)) {
		txn_refuse_local(c, 554, "5.6.3", why);
		return 1;
	}
	if (c->size_limit > 0 && wire_size(c) > c->size_limit) {
		txn_refuse_local(c, 552, "5.3.4",
				 "message size exceeds the remote server's SIZE limit");
		return 1;
	}
	size_t saved_len = c->out.len, saved_tail = c->pending_tail;
	bool pipelining = smtp_client_has_ext(c, SMTP_EXT_PIPELINING);
	int err = send_mail(c, t);
	for (size_t i = 0; err == 0 && pipelining && i < t->nrcpts; i++)
		err = send_rcpt(c, i);
	if (err == 0 && pipelining && !c->bdat) {
		c->data_sent = true;
		err = send_cmd(c, PENDING_DATA, 0, "DATA\r\n");
	}
	if (err < 0) {
		c->out.len = saved_len;
		c->pending_tail = saved_tail;
		c->txn = NULL;
		return err;
	}
	enter_state(c, SMTP_CLIENT_MAIL);
	return 0;
}

int smtp_client_quit(struct smtp_client *c)
{
	if (c->state != SMTP_CLIENT_READY)
		return -EBUSY;
	int err = send_cmd(c, PENDING_QUIT, 0, "QUIT\r\n");
	if (err < 0)
		return err;
	enter_state(c, SMTP_CLIENT_QUIT);
	return 0;
}

int smtp_client_starttls(struct smtp_client *c)
{
	if (c->state != SMTP_CLIENT_READY)
		return -EBUSY;
	if (!smtp_client_has_ext(c, SMTP_EXT_STARTTLS))
		return -ENOTSUP;
	int err = send_cmd(c, PENDING_STARTTLS, 0, "STARTTLS\r\n");
	if (err < 0)
		return err;
	enter_state(c, SMTP_CLIENT_STARTTLS);
	return 0;
}

/* smtp_client_restart_ehlo - RFC 3207 4.2: forget everything learned
 * before TLS, the extensions in particular, and start over with EHLO. */
int smtp_client_restart_ehlo(struct smtp_client *c)
{
	if (c->state != SMTP_CLIENT_TLS)
		return -EBUSY;
	buf_reset(&c->out);
	c->pending_head = c->pending_tail = 0;
	c->ext = 0;
	c->auth_mechs = 0;
	c->size_limit = 0;
	smtp_reply_parser_init(&c->parser, c->config.max_reply_line,
			       c->config.max_reply_lines);
	send_ehlo(c);
	return 0;
}

static bool credential_ok(const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	return n > 0 && n <= SMTP_CLIENT_PARAM_MAX && strpbrk(s, "\r\n") == NULL;
}

int smtp_client_auth(struct smtp_client *c, const char *user, const char *password)
{
	unsigned char plain[2 * SMTP_CLIENT_PARAM_MAX + 2];
	size_t ulen, plen;
	int rc;

	if (c->state != SMTP_CLIENT_READY)
		return -EBUSY;
	if (!credential_ok(user) || !credential_ok(password))
		return -EINVAL;
	if (!(c->auth_mechs & (SMTP_AUTH_PLAIN | SMTP_AUTH_LOGIN)))
		return -ENOTSUP;
	c->auth_user = xstrdup(user);
	c->auth_password = xstrdup(password);
	if (c->auth_mechs & SMTP_AUTH_PLAIN) {
		/* authzid (empty) NUL authcid NUL passwd (RFC 4616) */
		ulen = strlen(user);
		plen = strlen(password);
		plain[0] = '\0';
		memcpy(plain + 1, user, ulen);
		plain[1 + ulen] = '\0';
		memcpy(plain + 2 + ulen, password, plen);
		rc = send_base64(c, AUTH_STEP_PLAIN, "AUTH PLAIN ", plain, ulen + plen + 2);
		explicit_bzero(plain, sizeof(plain));
	} else {
		rc = send_cmd(c, PENDING_AUTH, AUTH_STEP_LOGIN, "AUTH LOGIN\r\n");
	}
	if (rc < 0) {
		auth_wipe(c);
		return rc;
	}
	enter_state(c, SMTP_CLIENT_AUTH);
	return 0;
}

unsigned smtp_client_auth_mechs(const struct smtp_client *c)
{
	return c->auth_mechs;
}

void smtp_client_abort(struct smtp_client *c, const char *reason)
{
	struct smtp_client_result res = { 0, "4.4.2", reason != NULL ? reason : "aborted", true };

	if (is_over(c))
		return;
	conn_close(c, true, &res, false);
}
