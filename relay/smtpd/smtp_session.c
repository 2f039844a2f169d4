/*
 * smtp_session - inbound SMTP server state machine (interface in
 * smtp_session.h).
 *
 * The session is an enum smtp_state and one enter_state(). Input is either
 * command lines (collected in a fixed buffer of line_max octets) or message
 * content (handed to smtp_data). Commands come from a table whose rows say in
 * which states they are allowed and carry RFC flags; a command refused by the
 * table gets 503 without reaching its handler. Each command produces exactly
 * one reply, so pipelined batches get their replies in order.
 *
 * Errors: bad syntax, bad sequence, unknown commands, over-long lines, relay
 * denials and refused messages count towards errors_max; 452 replies (too
 * many recipients, spool failure) do not, as they are not the client's fault.
 * Every refusal, counted towards errors_max or not, also adds one to
 * cfg.reject_counts[enum smtp_reject] where it is decided, so the operator
 * sees why clients are refused without anyone parsing reply text.
 */
#include "smtp_session.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "buf.h"
#include "header_fields.h"
#include "sasl.h"
#include "smtp_data.h"
#include "xalloc.h"

enum smtp_state {
	SMTP_STATE_INIT,	/* before smtp_session_start */
	SMTP_STATE_CONNECTED,	/* greeted; waiting for HELO/EHLO */
	SMTP_STATE_READY,	/* no transaction */
	SMTP_STATE_MAIL,	/* MAIL accepted, no recipient yet */
	SMTP_STATE_RCPT,	/* at least one recipient accepted */
	SMTP_STATE_DATA,	/* reading DATA content */
	SMTP_STATE_BDAT_CHUNK,	/* reading a BDAT chunk */
	SMTP_STATE_BDAT,	/* between BDAT chunks of one message */
	SMTP_STATE_COMMIT,	/* message complete, waiting for the spool */
	SMTP_STATE_CLOSING,	/* 221 or 421 sent; nothing more is read */
	SMTP_STATE_STARTTLS,	/* 220 to STARTTLS sent; nothing more is read */
	SMTP_STATE_AUTH,	/* 334 sent: the next line is a SASL response */
	SMTP_STATE_AUTH_VERIFY,	/* credentials being checked; nothing is read */
};

static const char *const state_names[] = {
	"init", "connected", "ready", "mail", "rcpt", "data", "bdat-chunk",
	"bdat", "commit", "closing", "starttls",
	"auth", "auth-verify",
};

/* The metric labels of enum smtp_reject (documented in OPERATIONS.md). */
static const char *const reject_names[SMTP_REJECT_COUNT] = {
	[SMTP_REJECT_RELAY_DENIED] = "relay_denied",
	[SMTP_REJECT_UNKNOWN_USER] = "unknown_user",
	[SMTP_REJECT_TOO_MANY_RECIPIENTS] = "too_many_recipients",
	[SMTP_REJECT_MESSAGE_TOO_LARGE] = "message_too_large",
	[SMTP_REJECT_SYNTAX] = "syntax",
	[SMTP_REJECT_PROTOCOL] = "protocol",
	[SMTP_REJECT_AUTH_FAILED] = "auth_failed",
	[SMTP_REJECT_AUTH_REQUIRED] = "auth_required",
	[SMTP_REJECT_TLS_REQUIRED] = "tls_required",
	[SMTP_REJECT_RATE_LIMITED] = "rate_limited",
	[SMTP_REJECT_AUTH_UNAVAILABLE] = "auth_unavailable",
	[SMTP_REJECT_SMUGGLING] = "smuggling",
	[SMTP_REJECT_BAD_CONTENT] = "bad_content",
	[SMTP_REJECT_SPOOL_FAILED] = "spool_failed",
	[SMTP_REJECT_TOO_MANY_ERRORS] = "too_many_errors",
	[SMTP_REJECT_COMMAND_TIMEOUT] = "command_timeout",
	[SMTP_REJECT_DATA_TIMEOUT] = "data_timeout",
	[SMTP_REJECT_BUSY] = "busy",
	[SMTP_REJECT_SUPPRESSED] = "suppressed",
	[SMTP_REJECT_UNKNOWN_POOL] = "unknown_pool",
};

/* Which client timeout runs in each state (RFC 5321 4.5.3.2). */
static const enum smtp_timeout_class state_timeouts[] = {
	[SMTP_STATE_INIT] = SMTP_TIMEOUT_COMMAND,
	[SMTP_STATE_CONNECTED] = SMTP_TIMEOUT_COMMAND,
	[SMTP_STATE_READY] = SMTP_TIMEOUT_COMMAND,
	[SMTP_STATE_MAIL] = SMTP_TIMEOUT_COMMAND,
	[SMTP_STATE_RCPT] = SMTP_TIMEOUT_COMMAND,
	[SMTP_STATE_DATA] = SMTP_TIMEOUT_DATA,
	[SMTP_STATE_BDAT_CHUNK] = SMTP_TIMEOUT_DATA,
	[SMTP_STATE_BDAT] = SMTP_TIMEOUT_COMMAND,
	[SMTP_STATE_COMMIT] = SMTP_TIMEOUT_NONE,
	[SMTP_STATE_CLOSING] = SMTP_TIMEOUT_NONE,
	[SMTP_STATE_STARTTLS] = SMTP_TIMEOUT_COMMAND,	/* bounds the handshake */
	[SMTP_STATE_AUTH] = SMTP_TIMEOUT_COMMAND,
	[SMTP_STATE_AUTH_VERIFY] = SMTP_TIMEOUT_NONE,	/* our own work */
};

/* The Received header is short: bounded by line_max sized fields. */
#define RECEIVED_HEADER_MAX 4096
/* Body storage kept between messages (larger buffers are freed). */
#define BODY_KEEP (64 * 1024)

struct smtp_session {
	enum smtp_state state;
	struct smtp_session_config cfg;	/* defaults filled in */
	char *hostname;
	char *peer_address;
	char *peer_hostname;
	char *pool_header;		/* cfg.pool_header, owned; NULL: off */
	unsigned peer_port;
	bool peer_trusted;
	bool esmtp;			/* EHLO (not HELO) */
	bool tls_active;		/* for STARTTLS: set by the TLS glue */
	char *authenticated_user;	/* for AUTH: NULL when not */
	struct sasl_session sasl;	/* the AUTH exchange in progress */
	struct sasl_result sasl_result;	/* SASL_DONE: what to verify */
	char *helo;
	unsigned errors;
	unsigned long queue_counter;	/* fallback queue ids */

	struct buf out;		/* replies not yet sent */
	char *line;			/* line_max octets: the partial command line */
	size_t line_len;
	bool line_overflow;		/* discarding up to the next LF */

	/* The transaction. */
	struct smtp_address sender;
	struct smtp_mail_params mail;
	struct smtp_recipient *recipients;
	size_t recipient_count, recipient_cap;
	char queue_id[32];
	struct buf body;		/* Received header + content */
	size_t header_len;
	struct smtp_data data;
	bool bdat_last;			/* the chunk being read is the last */
	uint64_t discard_left;		/* BDAT chunk read without a transaction */
	const char *discard_reply;	/* its reply, sent when it is read */
	enum smtp_reject discard_why;	/* and the reason it counts as */
	enum smtp_state discard_return;
	struct smtp_message message;	/* valid in SMTP_STATE_COMMIT */
};

/* Command table flags: the RFC rules a command carries. */
enum smtp_command_flag {
	SMTP_CMD_ENDS_GROUP = 1 << 0,	/* RFC 2920 3.1: last in a pipelined group */
	SMTP_CMD_BEFORE_TLS = 1 << 1,	/* allowed before STARTTLS when TLS is required */
	SMTP_CMD_BEFORE_AUTH = 1 << 2,	/* allowed before AUTH when AUTH is required */
	SMTP_CMD_NO_ARGS = 1 << 3,	/* takes no arguments */
};

struct smtp_command {
	const char *verb;
	unsigned states;	/* bit (1 << enum smtp_state) where allowed */
	unsigned flags;		/* enum smtp_command_flag */
	void (*run)(struct smtp_session *s, const struct smtp_cmd_line *l);	/* NULL: 502 */
	const char *out_of_sequence;	/* the 503 reply */
};

#define ST(x) (1u << SMTP_STATE_##x)
#define ST_COMMANDS (ST(CONNECTED) | ST(READY) | ST(MAIL) | ST(RCPT) | ST(BDAT))
#define ST_GREETED (ST(READY) | ST(MAIL) | ST(RCPT) | ST(BDAT))

/* enter_state - the one place where the state changes */
static void enter_state(struct smtp_session *s, enum smtp_state state)
{
	log_debug("smtp_state", "peer=%s from=%s to=%s", s->peer_address,
		  state_names[s->state], state_names[state]);
	s->state = state;
}

/* reply - queue one reply line (CR LF added). The output cap is only a
 * backstop: smtp_session_feed stops reading when the backlog is large. */
static void __attribute__((format(printf, 2, 3)))
reply(struct smtp_session *s, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		log_panic("smtp reply: format error");
	if ((size_t)n > sizeof(tmp) - 3)
		n = (int)sizeof(tmp) - 3;
	memcpy(tmp + n, "\r\n", 2);
	if (buf_append(&s->out, tmp, (size_t)n + 2) < 0)
		log_panic("smtp reply: output backlog over its cap");
}

/* reject_count - one refusal for the operator's metrics (an array
 * increment: this is on the path of every refused command) */
static void reject_count(struct smtp_session *s, enum smtp_reject why)
{
	if (s->cfg.reject_counts != NULL)
		s->cfg.reject_counts[why]++;
}

/* reply_error - a refusal that counts towards errors_max */
static void reply_error(struct smtp_session *s, enum smtp_reject why, const char *line)
{
	s->errors++;
	reject_count(s, why);
	reply(s, "%s", line);
}

static void recipients_clear(struct smtp_session *s);

/* transaction_reset - forget MAIL, RCPT and content (RSET, HELO, the end) */
static void transaction_reset(struct smtp_session *s)
{
	memset(&s->sender, 0, sizeof(s->sender));
	memset(&s->mail, 0, sizeof(s->mail));
	memset(&s->message, 0, sizeof(s->message));
	recipients_clear(s);
	s->queue_id[0] = 0;
	s->header_len = 0;
	s->bdat_last = false;
	buf_clear(&s->body, BODY_KEEP);
}

/* state_after_transaction - READY, or CONNECTED when no HELO was seen */
static enum smtp_state state_after_transaction(const struct smtp_session *s)
{
	return s->helo ? SMTP_STATE_READY : SMTP_STATE_CONNECTED;
}

/* client_trusted - may relay: relay network or authenticated */
static bool client_trusted(const struct smtp_session *s)
{
	return s->peer_trusted || s->authenticated_user != NULL;
}

/* helo_valid - any printable token: strict checks of HELO names reject
 * real clients and stop nobody, but the name goes into a header, so no
 * spaces or control octets. */
static bool helo_valid(const struct smtp_cmd_line *l)
{
	size_t i;

	if (l->args_len == 0 || l->args_len > 255)
		return false;
	for (i = 0; i < l->args_len; i++)
		if ((unsigned char)l->args[i] < 33 || (unsigned char)l->args[i] > 126)
			return false;
	return true;
}

/* helo_store - HELO/EHLO common part; returns false after replying */
static bool helo_store(struct smtp_session *s, const struct smtp_cmd_line *l, bool esmtp)
{
	if (!helo_valid(l)) {
		reply_error(s, SMTP_REJECT_SYNTAX, esmtp ? "501 5.5.4 Syntax: EHLO hostname"
			    : "501 5.5.4 Syntax: HELO hostname");
		return false;
	}
	free(s->helo);
	s->helo = xstrndup(l->args, l->args_len);
	s->esmtp = esmtp;
	transaction_reset(s);
	enter_state(s, SMTP_STATE_READY);
	return true;
}

/* cmd_ehlo - EHLO: the extensions we offer. STARTTLS only while it can
 * still be used (configured, not yet active). */
static void cmd_ehlo(struct smtp_session *s, const struct smtp_cmd_line *l)
{
	if (!helo_store(s, l, true))
		return;
	reply(s, "250-%s", s->hostname);
	reply(s, "250-PIPELINING");
	reply(s, "250-SIZE %llu", (unsigned long long)s->cfg.message_size_max);
	reply(s, "250-8BITMIME");
	reply(s, "250-ENHANCEDSTATUSCODES");
	reply(s, "250-SMTPUTF8");
	reply(s, "250-CHUNKING");
	if (s->cfg.tls_available && !s->tls_active)
		reply(s, "250-STARTTLS");
	if (s->cfg.auth_available && (s->tls_active || s->cfg.auth_plaintext) &&
	    s->authenticated_user == NULL)
		reply(s, "250-AUTH PLAIN LOGIN");
	if (s->tls_active)
		reply(s, "250-REQUIRETLS");	/* RFC 8689: only a TLS session may ask */
	reply(s, "250 DSN");
}

/* cmd_helo - HELO: plain SMTP, no parameters afterwards */
static void cmd_helo(struct smtp_session *s, const struct smtp_cmd_line *l)
{
	if (helo_store(s, l, false))
		reply(s, "250 %s", s->hostname);
}

/* cmd_mail - MAIL FROM: starts a transaction */
static void cmd_mail(struct smtp_session *s, const struct smtp_cmd_line *l)
{
	const char *err;

	if (s->cfg.auth_required && s->authenticated_user == NULL) {
		reply_error(s, SMTP_REJECT_AUTH_REQUIRED, "530 5.7.0 Authentication required");
		return;
	}
	err = smtp_cmd_parse_mail(l->args, l->args_len, s->esmtp, &s->sender, &s->mail);
	if (err != NULL) {
		reply_error(s, SMTP_REJECT_SYNTAX, err);
		return;
	}
	if (s->mail.requiretls && !s->tls_active) {
		/* RFC 8689 section 2: REQUIRETLS only on a TLS-protected
		 * session; we do not offer it before TLS either. */
		reply_error(s, SMTP_REJECT_TLS_REQUIRED,
			    "530 5.7.10 REQUIRETLS needs a TLS-protected session (STARTTLS first)");
		return;
	}
	if (s->mail.has_size && s->mail.size > s->cfg.message_size_max) {
		reply_error(s, SMTP_REJECT_MESSAGE_TOO_LARGE, "552 5.3.4 Message size exceeds fixed limit");
		return;
	}
	recipients_clear(s);
	enter_state(s, SMTP_STATE_MAIL);
	reply(s, "250 2.1.0 Ok");
}

/* recipient_add - append to the recipient array (geometric growth) */
static void recipient_add(struct smtp_session *s, const struct smtp_address *a,
			  const struct smtp_rcpt_params *p)
{
	struct smtp_recipient *r;

	if (s->recipient_count == s->recipient_cap) {
		size_t cap = s->recipient_cap ? s->recipient_cap * 2 : 4;

		s->recipients = xreallocarray(s->recipients, cap, sizeof(*r));
		s->recipient_cap = cap;
	}
	r = &s->recipients[s->recipient_count++];
	memcpy(r->address, a->mailbox, sizeof(r->address));
	r->notify = p->notify;
	r->orcpt_type = r->orcpt = NULL;
	if (p->has_orcpt) {
		r->orcpt_type = xstrdup(p->orcpt_type);
		r->orcpt = xstrdup(p->orcpt);
	}
}

/* recipients_clear - forget the recipients (ORCPT strings are owned) */
static void recipients_clear(struct smtp_session *s)
{
	size_t i;

	for (i = 0; i < s->recipient_count; i++) {
		free(s->recipients[i].orcpt_type);
		free(s->recipients[i].orcpt);
	}
	s->recipient_count = 0;
}

/* cmd_rcpt - RCPT TO: syntax, limit, then the relay rule */
static void cmd_rcpt(struct smtp_session *s, const struct smtp_cmd_line *l)
{
	struct smtp_address to;
	struct smtp_rcpt_params params;
	const char *err;

	if (s->recipient_count >= s->cfg.recipients_max) {
		reject_count(s, SMTP_REJECT_TOO_MANY_RECIPIENTS);
		reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	err = smtp_cmd_parse_rcpt(l->args, l->args_len, s->esmtp, s->mail.smtputf8, &to, &params);
	if (err != NULL) {
		reply_error(s, SMTP_REJECT_SYNTAX, err);
		return;
	}
	if (!smtp_address_relay_allowed(&to, client_trusted(s), s->cfg.is_local_domain,
					s->cfg.ctx)) {
		s->errors++;
		reject_count(s, SMTP_REJECT_RELAY_DENIED);
		reply(s, "554 5.7.1 <%s>: Relay access denied", to.mailbox);
		return;
	}
	if (s->cfg.local_rcpt_exists != NULL &&
	    smtp_address_is_local(&to, s->cfg.is_local_domain, s->cfg.ctx) &&
	    !s->cfg.local_rcpt_exists(s->cfg.ctx, to.mailbox)) {
		s->errors++;
		reject_count(s, SMTP_REJECT_UNKNOWN_USER);
		reply(s, "550 5.1.1 <%s>: Recipient address rejected: User unknown", to.mailbox);
		return;
	}
	const char *why = s->cfg.rcpt_suppressed != NULL ? s->cfg.rcpt_suppressed(s->cfg.ctx, to.mailbox) : NULL;
	if (why != NULL) {
		s->errors++;
		reject_count(s, SMTP_REJECT_SUPPRESSED);
		reply(s, "550 5.7.1 <%s>: Recipient address suppressed: %.200s", to.mailbox,
		      why[0] != '\0' ? why : "on the suppression list");
		return;
	}
	recipient_add(s, &to, &params);
	enter_state(s, SMTP_STATE_RCPT);
	reply(s, "250 2.1.5 Ok");
}

/* received_protocol - the "with" keyword (RFC 3848, RFC 6531 for UTF8) */
static const char *received_protocol(const struct smtp_session *s)
{
	static const char *const names[2][4] = {
		{ "ESMTP", "ESMTPS", "ESMTPA", "ESMTPSA" },
		{ "UTF8SMTP", "UTF8SMTPS", "UTF8SMTPA", "UTF8SMTPSA" },
	};
	int i = (s->tls_active ? 1 : 0) + (s->authenticated_user ? 2 : 0);

	if (!s->esmtp)
		return "SMTP";
	return names[s->mail.smtputf8 ? 1 : 0][i];
}

/* format_date - RFC 5322 date-time in UTC, independent of the locale */
static void format_date(time_t t, char *out, size_t size)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(out, size, "%s, %d %s %d %02d:%02d:%02d +0000", days[tm.tm_wday % 7],
		 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour,
		 tm.tm_min, tm.tm_sec);
}

/* received_header - the trace header that starts the stored body */
static void received_header(struct smtp_session *s)
{
	char date[64];
	bool v6 = strchr(s->peer_address, ':') != NULL;
	time_t now = s->cfg.now ? s->cfg.now(s->cfg.ctx) : time(NULL);
	int rc;

	format_date(now, date, sizeof(date));
	rc = buf_append_printf(&s->body, "Received: from %s (%s [%s%s])\r\n",
			     s->helo ? s->helo : "unknown", s->peer_hostname, v6 ? "IPv6:" : "",
			     s->peer_address);
	/* A verified user name: no spaces or control octets (users.h). */
	if (rc == 0 && s->authenticated_user != NULL)
		rc = buf_append_printf(&s->body, "\t(Authenticated sender: %s)\r\n",
				     s->authenticated_user);
	if (rc == 0)
		rc = buf_append_printf(&s->body, "\tby %s (ringmail) with %s id %s",
				     s->hostname, received_protocol(s), s->queue_id);
	if (rc == 0 && s->recipient_count == 1)
		rc = buf_append_printf(&s->body, "\r\n\tfor <%s>; %s\r\n",
				     s->recipients[0].address, date);
	else if (rc == 0)
		rc = buf_append_printf(&s->body, ";\r\n\t%s\r\n", date);
	if (rc < 0)
		log_panic("smtp_session: Received header over its cap");
	s->header_len = s->body.len;
}

/* message_begin - the data phase starts: queue id and trace header */
static void message_begin(struct smtp_session *s)
{
	if (s->cfg.new_queue_id) {
		s->cfg.new_queue_id(s->cfg.ctx, s->queue_id);
		s->queue_id[sizeof(s->queue_id) - 1] = 0;
	} else {
		snprintf(s->queue_id, sizeof(s->queue_id), "Q%06lu", ++s->queue_counter);
	}
	buf_clear(&s->body, BODY_KEEP);
	s->body.max = RECEIVED_HEADER_MAX + s->cfg.message_size_max;
	received_header(s);
}

/* data_limits - the decoder's limits from the configuration */
static struct smtp_data_limits data_limits(const struct smtp_session *s)
{
	struct smtp_data_limits limits = {
		.line_max = s->cfg.data_line_max,
		.size_max = s->cfg.message_size_max,
	};
	return limits;
}

/* cmd_data - DATA: needs recipients; BINARYMIME content must come by BDAT */
static void cmd_data(struct smtp_session *s, const struct smtp_cmd_line *l)
{
	struct smtp_data_limits limits = data_limits(s);

	if (s->state == SMTP_STATE_MAIL) {
		reply_error(s, SMTP_REJECT_PROTOCOL, "554 5.5.1 Error: no valid recipients");
		return;
	}
	if (s->mail.body == SMTP_BODY_BINARYMIME) {
		reply_error(s, SMTP_REJECT_PROTOCOL, "503 5.5.1 Error: BODY=BINARYMIME requires BDAT");
		return;
	}
	message_begin(s);
	smtp_data_begin_dot(&s->data, &limits, &s->body);
	enter_state(s, SMTP_STATE_DATA);
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

/* verdict_reject - the reason a refused message counts as */
static enum smtp_reject verdict_reject(const struct smtp_data *d)
{
	switch (smtp_data_verdict_anomaly(d)) {
	case SMTP_DATA_TOO_BIG:
		return SMTP_REJECT_MESSAGE_TOO_LARGE;
	case SMTP_DATA_BARE_LF:
		return SMTP_REJECT_SMUGGLING;
	default:
		return SMTP_REJECT_BAD_CONTENT;
	}
}

/* add_missing_headers - submission hygiene (RFC 5322 3.6: Date and
 * Message-ID are expected; RFC 6409 8.3 lets a submission server add
 * them): for a relay_networks or authenticated client's message, the ones
 * it lacks go right below our Received header (a message at the size cap
 * gets them too: they are ours, not the client's). */
static void add_missing_headers(struct smtp_session *s)
{
	const char *client = buf_data(&s->body) + s->header_len;
	size_t client_len = s->body.len - s->header_len;
	char fields[RECEIVED_HEADER_MAX], date[64];
	size_t n = 0;

	if (!s->cfg.add_missing_headers || !client_trusted(s))
		return;
	time_t now = s->cfg.now ? s->cfg.now(s->cfg.ctx) : time(NULL);
	if (!header_fields_has(client, client_len, "Message-ID"))
		n += (size_t)snprintf(fields + n, sizeof(fields) - n, "Message-ID: <%lld.%s@%s>\r\n",
				      (long long)now, s->queue_id, s->hostname);
	if (!header_fields_has(client, client_len, "Date")) {
		format_date(now, date, sizeof(date));
		n += (size_t)snprintf(fields + n, sizeof(fields) - n, "Date: %s\r\n", date);
	}
	if (n == 0 || n >= sizeof(fields))
		return;
	size_t old_len = s->body.len;
	s->body.max += n;	/* room beyond the size cap; message_begin resets it */
	if (buf_append(&s->body, fields, n) < 0)
		log_panic("smtp_session: no room for the added header fields");
	char *d = s->body.data + s->body.head;
	memmove(d + s->header_len + n, d + s->header_len, old_len - s->header_len);
	memcpy(d + s->header_len, fields, n);
}

/* take_pool_header - the pool header out of the client's header section
 * (below our Received header) whoever sent it; a trusted client's value
 * into pool. false when the message is refused for it (replied). */
static bool take_pool_header(struct smtp_session *s, char *pool, size_t cap)
{
	char value[256];
	int found = 0;

	pool[0] = '\0';
	if (s->pool_header == NULL)
		return true;
	char *d = s->body.data + s->body.head;
	size_t client_len = header_fields_take(d + s->header_len, s->body.len - s->header_len, s->pool_header, value,
					       sizeof(value), &found);
	s->body.len = s->header_len + client_len;
	if (found == 0 || !client_trusted(s))
		return true;
	bool ok = found > 0 && value[0] != '\0' && strlen(value) < cap;
	for (const char *c = value; ok && *c; c++)
		ok = (unsigned char)*c > ' ' && (unsigned char)*c < 127 && *c != '"';
	if (ok && s->cfg.pool_known != NULL && s->cfg.pool_known(s->cfg.ctx, value)) {
		memcpy(pool, value, strlen(value) + 1);	/* fits: checked above */
		return true;
	}
	reject_count(s, SMTP_REJECT_UNKNOWN_POOL);
	reply(s, "550 5.7.0 %s: no egress pool named \"%.64s\"", s->pool_header, ok ? value : "(invalid)");
	return false;
}

/* message_finish - content complete: refuse it, or wait for the commit */
static void message_finish(struct smtp_session *s)
{
	const char *verdict = smtp_data_verdict(&s->data);
	struct smtp_message *m = &s->message;

	if (verdict != NULL) {
		reply_error(s, verdict_reject(&s->data), verdict);
		transaction_reset(s);
		enter_state(s, state_after_transaction(s));
		return;
	}
	char pool[sizeof(m->pool)];
	if (!take_pool_header(s, pool, sizeof(pool))) {
		transaction_reset(s);
		enter_state(s, state_after_transaction(s));
		return;
	}
	add_missing_headers(s);
	memcpy(m->pool, pool, sizeof(m->pool));
	memcpy(m->queue_id, s->queue_id, sizeof(m->queue_id));
	m->peer_address = s->peer_address;
	m->peer_hostname = s->peer_hostname;
	m->helo = s->helo ? s->helo : "";
	m->auth_user = s->authenticated_user ? s->authenticated_user : "";
	memcpy(m->sender, s->sender.mailbox, sizeof(m->sender));
	m->params = s->mail;
	/* RFC 8689 4.1: with REQUIRETLS the header field is ignored. */
	m->tls_required_no = !s->mail.requiretls &&
			     header_fields_tls_required_no(buf_data(&s->body), s->body.len);
	m->recipients = s->recipients;
	m->recipient_count = s->recipient_count;
	m->body = buf_data(&s->body);
	m->body_len = s->body.len;
	m->header_len = s->header_len;
	enter_state(s, SMTP_STATE_COMMIT);
}

/* bdat_parse - "octets [LAST]"; false on bad syntax */
static bool bdat_parse(const struct smtp_cmd_line *l, uint64_t *octets, bool *last)
{
	size_t i = 0, digits;
	uint64_t v = 0;

	for (; i < l->args_len && l->args[i] >= '0' && l->args[i] <= '9'; i++) {
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(l->args[i] - '0');
	}
	digits = i;
	if (digits == 0)
		return false;
	while (i < l->args_len && l->args[i] == ' ')
		i++;
	*last = false;
	if (i < l->args_len) {
		if (i == digits || l->args_len - i != 4 || strncasecmp(l->args + i, "LAST", 4) != 0)
			return false;
		*last = true;
	}
	*octets = v;
	return true;
}

/* bdat_discard - a chunk arrived outside a usable transaction: its octets
 * must still be read (they are not commands), then it gets its error */
static void bdat_discard(struct smtp_session *s, uint64_t octets, enum smtp_reject why,
			 const char *line)
{
	s->discard_left = octets;
	s->discard_reply = line;
	s->discard_why = why;
	s->discard_return = s->state;
	enter_state(s, SMTP_STATE_BDAT_CHUNK);
}

/* cmd_bdat - BDAT octets [LAST] (RFC 3030) */
static void cmd_bdat(struct smtp_session *s, const struct smtp_cmd_line *l)
{
	struct smtp_data_limits limits = data_limits(s);
	uint64_t octets;
	bool last;

	if (!bdat_parse(l, &octets, &last)) {
		reply_error(s, SMTP_REJECT_SYNTAX, "501 5.5.4 Syntax: BDAT octets [LAST]");
		return;
	}
	if (s->state == SMTP_STATE_MAIL) {
		bdat_discard(s, octets, SMTP_REJECT_PROTOCOL, "554 5.5.1 Error: no valid recipients");
		return;
	}
	if (s->state != SMTP_STATE_RCPT && s->state != SMTP_STATE_BDAT) {
		bdat_discard(s, octets, SMTP_REJECT_PROTOCOL, "503 5.5.1 Error: need MAIL and RCPT first");
		return;
	}
	if (s->state == SMTP_STATE_RCPT) {
		message_begin(s);
		smtp_data_begin_bdat(&s->data, &limits, &s->body,
				     s->mail.body == SMTP_BODY_BINARYMIME);
	}
	s->discard_reply = NULL;
	s->bdat_last = last;
	smtp_data_chunk(&s->data, octets);
	enter_state(s, SMTP_STATE_BDAT_CHUNK);
}

/* bdat_chunk_end - the chunk has been read: reply for it */
static void bdat_chunk_end(struct smtp_session *s)
{
	if (s->discard_reply != NULL) {
		reply_error(s, s->discard_why, s->discard_reply);
		s->discard_reply = NULL;
		enter_state(s, s->discard_return);
		return;
	}
	if (s->bdat_last && s->data.size == 0) {
		/* BDAT 0 LAST with no content before it: RFC 3030 allows the
		 * command, but a zero-length message has not even the header
		 * RFC 5322 requires, so it is refused rather than queued */
		reply_error(s, SMTP_REJECT_BAD_CONTENT, "554 5.6.0 Error: empty message");
		transaction_reset(s);
		enter_state(s, state_after_transaction(s));
		return;
	}
	if (s->bdat_last) {
		message_finish(s);
		return;
	}
	if (s->data.anomalies & SMTP_DATA_TOO_BIG) {
		reply_error(s, SMTP_REJECT_MESSAGE_TOO_LARGE, "552 5.3.4 Error: message exceeds fixed maximum message size");
		transaction_reset(s);
		enter_state(s, state_after_transaction(s));
		return;
	}
	reply(s, "250 2.0.0 %llu octets received", (unsigned long long)s->data.size);
	enter_state(s, SMTP_STATE_BDAT);
}

/* cmd_rset - RSET: drop the transaction */
static void cmd_rset(struct smtp_session *s, const struct smtp_cmd_line *l)
{
	transaction_reset(s);
	enter_state(s, state_after_transaction(s));
	reply(s, "250 2.0.0 Ok");
}

static void cmd_noop(struct smtp_session *s, const struct smtp_cmd_line *l)
{
	reply(s, "250 2.0.0 Ok");
}

static void cmd_quit(struct smtp_session *s, const struct smtp_cmd_line *l)
{
	reply(s, "221 2.0.0 Bye");
	enter_state(s, SMTP_STATE_CLOSING);
}

/* cmd_vrfy - never reveal whether a user exists (RFC 5321 3.5.3) */
static void cmd_vrfy(struct smtp_session *s, const struct smtp_cmd_line *l)
{
	if (l->args_len == 0)
		reply_error(s, SMTP_REJECT_SYNTAX, "501 5.5.4 Syntax: VRFY address");
	else
		reply(s, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_help(struct smtp_session *s, const struct smtp_cmd_line *l)
{
	reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP");
}

/* cmd_starttls - RFC 3207: 220, then the glue discards every buffered
 * input byte (CVE-2011-0411) and runs the handshake; nothing is read in
 * between. A transaction in progress is forgotten (RFC 3207 4.2). */
static void cmd_starttls(struct smtp_session *s, const struct smtp_cmd_line *l)
{
	if (s->tls_active) {
		reply_error(s, SMTP_REJECT_PROTOCOL, "503 5.5.1 Error: TLS already active");
		return;
	}
	if (!s->cfg.tls_available) {
		reply_error(s, SMTP_REJECT_PROTOCOL, "454 4.7.0 TLS not available");
		return;
	}
	reply(s, "220 2.0.0 Ready to start TLS");
	transaction_reset(s);
	enter_state(s, SMTP_STATE_STARTTLS);
}

/* auth_result - act on a SASL step: challenge, verify, or the error */
static void auth_result(struct smtp_session *s, struct sasl_result r)
{
	switch (r.status) {
	case SASL_NEED_MORE:
		reply(s, "334 %s", r.challenge);
		enter_state(s, SMTP_STATE_AUTH);
		return;
	case SASL_DONE:
		s->sasl_result = r;
		enter_state(s, SMTP_STATE_AUTH_VERIFY);
		return;
	case SASL_ERROR:
		break;
	}
	sasl_reset(&s->sasl);
	enter_state(s, SMTP_STATE_READY);
	switch (r.error) {
	case SASL_ERR_MECHANISM:
		reply_error(s, SMTP_REJECT_SYNTAX, "504 5.5.4 Unrecognized authentication type");
		break;
	case SASL_ERR_TOO_LONG:
		reply_error(s, SMTP_REJECT_SYNTAX, "500 5.5.6 Authentication exchange line is too long");
		break;
	case SASL_ERR_CANCELLED:
		reply_error(s, SMTP_REJECT_PROTOCOL, "501 5.0.0 Authentication cancelled");
		break;
	case SASL_ERR_AUTHZID:
		reply_error(s, SMTP_REJECT_AUTH_FAILED, "535 5.7.8 Authentication credentials invalid");
		break;
	default:
		reply_error(s, SMTP_REJECT_SYNTAX, "501 5.5.2 Cannot decode response");
		break;
	}
}

/* cmd_auth - RFC 4954: AUTH mechanism [initial-response]. Offered only
 * under TLS unless auth_plaintext; never inside a transaction (the table
 * allows READY only); once per session. */
static void cmd_auth(struct smtp_session *s, const struct smtp_cmd_line *l)
{
	char mech[32], initial[SASL_LINE_MAX + 1];
	const char *sp, *end = l->args + l->args_len;
	size_t mlen;

	if (!s->cfg.auth_available) {
		reply_error(s, SMTP_REJECT_PROTOCOL, "502 5.5.1 Error: command not implemented");
		return;
	}
	if (s->authenticated_user != NULL) {
		reply_error(s, SMTP_REJECT_PROTOCOL, "503 5.5.1 Error: already authenticated");
		return;
	}
	if (!s->tls_active && !s->cfg.auth_plaintext) {
		reply_error(s, SMTP_REJECT_TLS_REQUIRED, "538 5.7.11 Encryption required for requested authentication mechanism");
		return;
	}
	sp = memchr(l->args, ' ', l->args_len);
	mlen = sp ? (size_t)(sp - l->args) : l->args_len;
	if (mlen == 0 || mlen >= sizeof(mech)) {
		reply_error(s, SMTP_REJECT_SYNTAX, "501 5.5.4 Syntax: AUTH mechanism");
		return;
	}
	memcpy(mech, l->args, mlen);
	mech[mlen] = 0;
	if (sp != NULL) {
		while (sp < end && *sp == ' ')
			sp++;
		size_t ilen = (size_t)(end - sp);
		if (ilen > SASL_LINE_MAX) {
			reply_error(s, SMTP_REJECT_SYNTAX, "500 5.5.6 Authentication exchange line is too long");
			return;
		}
		memcpy(initial, sp, ilen);
		initial[ilen] = 0;
	}
	auth_result(s, sasl_start(&s->sasl, mech, sp != NULL ? initial : NULL));
}

/* The command table. AUTH has a row without a handler (502)
 * so that adding them is a matter of writing the handler. */
static const struct smtp_command commands[] = {
	{ "EHLO", ST_COMMANDS, SMTP_CMD_ENDS_GROUP | SMTP_CMD_BEFORE_TLS | SMTP_CMD_BEFORE_AUTH,
	  cmd_ehlo, NULL },
	{ "HELO", ST_COMMANDS, SMTP_CMD_ENDS_GROUP | SMTP_CMD_BEFORE_TLS | SMTP_CMD_BEFORE_AUTH,
	  cmd_helo, NULL },
	{ "MAIL", ST(READY), 0, cmd_mail, NULL },
	{ "RCPT", ST(MAIL) | ST(RCPT), 0, cmd_rcpt, "503 5.5.1 Error: need MAIL command" },
	{ "DATA", ST(MAIL) | ST(RCPT), SMTP_CMD_ENDS_GROUP | SMTP_CMD_NO_ARGS, cmd_data,
	  "503 5.5.1 Error: need RCPT command" },
	{ "BDAT", ST_COMMANDS, 0, cmd_bdat, NULL },
	{ "RSET", ST_COMMANDS, SMTP_CMD_NO_ARGS | SMTP_CMD_BEFORE_TLS | SMTP_CMD_BEFORE_AUTH,
	  cmd_rset, NULL },
	{ "NOOP", ST_COMMANDS, SMTP_CMD_ENDS_GROUP | SMTP_CMD_BEFORE_TLS | SMTP_CMD_BEFORE_AUTH,
	  cmd_noop, NULL },
	{ "QUIT", ST_COMMANDS, SMTP_CMD_ENDS_GROUP | SMTP_CMD_NO_ARGS | SMTP_CMD_BEFORE_TLS
	  | SMTP_CMD_BEFORE_AUTH, cmd_quit, NULL },
	{ "VRFY", ST_COMMANDS, SMTP_CMD_ENDS_GROUP, cmd_vrfy, NULL },
	{ "HELP", ST_COMMANDS, SMTP_CMD_BEFORE_TLS, cmd_help, NULL },
	{ "STARTTLS", ST_COMMANDS, SMTP_CMD_ENDS_GROUP | SMTP_CMD_NO_ARGS | SMTP_CMD_BEFORE_TLS,
	  cmd_starttls, NULL },
	{ "AUTH", ST(READY), SMTP_CMD_ENDS_GROUP | SMTP_CMD_BEFORE_AUTH, cmd_auth,
	  "503 5.5.1 Error: MAIL transaction in progress" },
	{ "EXPN", ST_COMMANDS, SMTP_CMD_ENDS_GROUP, NULL, NULL },
	{ "TURN", ST_COMMANDS, SMTP_CMD_ENDS_GROUP, NULL, NULL },
	{ "ETRN", ST_COMMANDS, SMTP_CMD_ENDS_GROUP, NULL, NULL },
	{ NULL, 0, 0, NULL, NULL },
};

/* sequence_reply - the 503 for a command used in the wrong state */
static const char *sequence_reply(const struct smtp_session *s, const struct smtp_command *c)
{
	if (s->state == SMTP_STATE_CONNECTED)
		return "503 5.5.1 Error: send HELO/EHLO first";
	if (s->state == SMTP_STATE_BDAT)
		return "503 5.5.1 Error: BDAT transaction in progress";
	if (strcmp(c->verb, "MAIL") == 0)
		return "503 5.5.1 Error: nested MAIL command";
	return c->out_of_sequence ? c->out_of_sequence : "503 5.5.1 Error: bad sequence of commands";
}

/* command_run - look up and run one command line (CR LF removed) */
static void command_run(struct smtp_session *s, const char *line, size_t len)
{
	const struct smtp_command *c;
	struct smtp_cmd_line l;

	if (memchr(line, '\0', len) != NULL || memchr(line, '\r', len) != NULL) {
		reply_error(s, SMTP_REJECT_SYNTAX, "500 5.5.2 Error: invalid character in command");
		return;
	}
	smtp_cmd_split(line, len, &l);
	for (c = commands; c->verb != NULL; c++)
		if (smtp_cmd_verb_is(&l, c->verb))
			break;
	if (c->verb == NULL)
		reply_error(s, SMTP_REJECT_SYNTAX, "500 5.5.2 Error: command not recognized");
	else if (c->run == NULL)
		reply_error(s, SMTP_REJECT_PROTOCOL, "502 5.5.1 Error: command not implemented");
	else if (!(c->states & (1u << s->state)))
		reply_error(s, SMTP_REJECT_PROTOCOL, sequence_reply(s, c));
	else if ((c->flags & SMTP_CMD_NO_ARGS) && l.args_len > 0)
		reply_error(s, SMTP_REJECT_SYNTAX, "501 5.5.4 Syntax error: no arguments allowed");
	else
		c->run(s, &l);
}

/* errors_check - too many errors: 421 and close (Postfix's hard limit) */
static void errors_check(struct smtp_session *s)
{
	if (s->errors < s->cfg.errors_max || s->state == SMTP_STATE_CLOSING)
		return;
	reject_count(s, SMTP_REJECT_TOO_MANY_ERRORS);
	reply(s, "421 4.7.0 %s Error: too many errors", s->hostname);
	enter_state(s, SMTP_STATE_CLOSING);
}

/* line_feed - collect one command line; run it when its LF arrives. A line
 * over line_max is thrown away up to its LF and answered with one 500, so the
 * session stays in step with a pipelining client. Commands end at LF; a CR
 * before it is removed (bare LF is tolerated in commands, never in content). */
static size_t line_feed(struct smtp_session *s, const char *in, size_t len)
{
	const char *nl = memchr(in, '\n', len);
	size_t take = nl ? (size_t)(nl - in) + 1 : len, n;

	if (!s->line_overflow && s->line_len + take > s->cfg.line_max)
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
		if (s->state == SMTP_STATE_AUTH) {
			sasl_reset(&s->sasl);
			enter_state(s, SMTP_STATE_READY);
		}
		reply_error(s, SMTP_REJECT_SYNTAX, "500 5.5.6 Error: line too long");
	} else if (s->state == SMTP_STATE_AUTH) {
		n--;				/* LF */
		if (n > 0 && s->line[n - 1] == '\r')
			n--;
		auth_result(s, sasl_step(&s->sasl, s->line, n));
	} else {
		n--;				/* LF */
		if (n > 0 && s->line[n - 1] == '\r')
			n--;
		command_run(s, s->line, n);
	}
	errors_check(s);
	return take;
}

/* content_feed - DATA content or a BDAT chunk */
static size_t content_feed(struct smtp_session *s, const char *in, size_t len)
{
	size_t n;

	if (s->state == SMTP_STATE_BDAT_CHUNK && s->discard_reply != NULL) {
		n = s->discard_left < len ? (size_t)s->discard_left : len;
		s->discard_left -= n;
		if (s->discard_left == 0) {
			bdat_chunk_end(s);
			errors_check(s);
		}
		return n;
	}
	n = smtp_data_feed(&s->data, in, len);
	if (smtp_data_done(&s->data)) {
		if (s->state == SMTP_STATE_DATA)
			message_finish(s);
		else
			bdat_chunk_end(s);
		errors_check(s);
	}
	return n;
}

/* chunk_start_check - a BDAT chunk of 0 octets is complete at once */
static void chunk_start_check(struct smtp_session *s)
{
	if (s->state != SMTP_STATE_BDAT_CHUNK)
		return;
	if (s->discard_reply != NULL ? s->discard_left == 0 : smtp_data_done(&s->data)) {
		if (s->discard_reply != NULL)
			s->discard_left = 0;
		bdat_chunk_end(s);
		errors_check(s);
	}
}

/* smtp_session_feed - consume input until done, paused or closing */
size_t smtp_session_feed(struct smtp_session *s, const char *in, size_t len)
{
	size_t used = 0;

	if (s->state == SMTP_STATE_INIT)
		smtp_session_start(s);
	while (used < len && s->out.len < s->cfg.output_max) {
		switch (s->state) {
		case SMTP_STATE_COMMIT:
		case SMTP_STATE_CLOSING:
		case SMTP_STATE_STARTTLS:
		case SMTP_STATE_AUTH_VERIFY:
			return used;
		case SMTP_STATE_DATA:
		case SMTP_STATE_BDAT_CHUNK:
			used += content_feed(s, in + used, len - used);
			break;
		default:
			used += line_feed(s, in + used, len - used);
			chunk_start_check(s);
			break;
		}
	}
	return used;
}

/* smtp_session_new - allocate; fill in defaults for zero limits */
struct smtp_session *smtp_session_new(const struct smtp_session_config *cfg,
				      const struct smtp_peer *peer)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));

	s->cfg = *cfg;
	if (!s->cfg.line_max)
		s->cfg.line_max = 512;
	if (s->cfg.line_max < 16)
		s->cfg.line_max = 16;
	if (!s->cfg.data_line_max)
		s->cfg.data_line_max = 1000;
	if (!s->cfg.message_size_max)
		s->cfg.message_size_max = 10240000;
	if (!s->cfg.recipients_max)
		s->cfg.recipients_max = 1000;
	if (!s->cfg.errors_max)
		s->cfg.errors_max = 20;
	if (!s->cfg.output_max)
		s->cfg.output_max = 64 * 1024;
	s->hostname = xstrdup(cfg->hostname ? cfg->hostname : "localhost");
	s->peer_address = xstrdup(peer->address ? peer->address : "unknown");
	s->peer_hostname = xstrdup(peer->hostname ? peer->hostname : "unknown");
	s->pool_header = cfg->pool_header != NULL && cfg->pool_header[0] != '\0' ? xstrdup(cfg->pool_header) : NULL;
	s->cfg.pool_header = s->pool_header;
	s->line = xmalloc(s->cfg.line_max);
	s->cfg.hostname = s->hostname;
	s->peer_port = peer->port;
	s->peer_trusted = peer->trusted;
	buf_init(&s->out, s->cfg.output_max + 16 * 1024);
	buf_init(&s->body, RECEIVED_HEADER_MAX + s->cfg.message_size_max);
	return s;
}

/* smtp_session_free - release everything; NULL in, NULL out */
struct smtp_session *smtp_session_free(struct smtp_session *s)
{
	if (s == NULL)
		return NULL;
	buf_free(&s->out);
	buf_free(&s->body);
	recipients_clear(s);
	free(s->recipients);
	free(s->line);
	free(s->helo);
	free(s->authenticated_user);
	sasl_reset(&s->sasl);
	free(s->hostname);
	free(s->peer_address);
	free(s->peer_hostname);
	free(s->pool_header);
	free(s);
	return NULL;
}

/* smtp_session_start - the greeting */
void smtp_session_start(struct smtp_session *s)
{
	if (s->state != SMTP_STATE_INIT)
		return;
	reply(s, "220 %s ESMTP ringmail", s->hostname);
	enter_state(s, SMTP_STATE_CONNECTED);
}

const char *smtp_session_output(const struct smtp_session *s, size_t *len)
{
	*len = s->out.len;
	return buf_data(&s->out);
}

void smtp_session_output_consumed(struct smtp_session *s, size_t n)
{
	buf_consume(&s->out, n);
}

/* smtp_session_want - see header */
enum smtp_session_want smtp_session_want(const struct smtp_session *s)
{
	if (s->state == SMTP_STATE_CLOSING)
		return s->out.len ? SMTP_WANT_FLUSH : SMTP_WANT_CLOSE;
	if (s->state == SMTP_STATE_COMMIT)
		return SMTP_WANT_COMMIT;
	if (s->state == SMTP_STATE_STARTTLS)
		return SMTP_WANT_STARTTLS;
	if (s->state == SMTP_STATE_AUTH_VERIFY)
		return SMTP_WANT_AUTH;
	if (s->out.len >= s->cfg.output_max)
		return SMTP_WANT_FLUSH;
	return SMTP_WANT_READ;
}

const struct smtp_message *smtp_session_message(const struct smtp_session *s)
{
	return s->state == SMTP_STATE_COMMIT ? &s->message : NULL;
}

/* smtp_session_commit_done - the 250 only now, after the spool's sync */
void smtp_session_commit_done(struct smtp_session *s, int err)
{
	if (s->state == SMTP_STATE_CLOSING) {	/* timed out meanwhile */
		transaction_reset(s);
		return;
	}
	if (s->state != SMTP_STATE_COMMIT)
		log_panic("smtp_session_commit_done: not committing (state %s)",
			  state_names[s->state]);
	if (err == 0)
		reply(s, "250 2.0.0 Ok: queued as %s", s->queue_id);
	else {
		reject_count(s, SMTP_REJECT_SPOOL_FAILED);
		reply(s, "452 4.3.1 Error: insufficient system storage");
	}
	transaction_reset(s);
	enter_state(s, state_after_transaction(s));
}

/* smtp_session_timeout - idle client */
void smtp_session_timeout(struct smtp_session *s)
{
	if (s->state == SMTP_STATE_CLOSING)
		return;
	reject_count(s, state_timeouts[s->state] == SMTP_TIMEOUT_DATA ? SMTP_REJECT_DATA_TIMEOUT
		     : SMTP_REJECT_COMMAND_TIMEOUT);
	reply(s, "421 4.4.2 %s Error: timeout exceeded", s->hostname);
	enter_state(s, SMTP_STATE_CLOSING);
}

/* smtp_session_timeout_class - from the per-state table */
enum smtp_timeout_class smtp_session_timeout_class(const struct smtp_session *s)
{
	return state_timeouts[s->state];
}

/* smtp_session_set_tls - the handshake is done: back to "before EHLO"
 * (RFC 3207 4.2: forget everything learnt from the client in clear) */
void smtp_session_set_tls(struct smtp_session *s, bool active)
{
	s->tls_active = active;
	if (!active || s->state == SMTP_STATE_CLOSING)
		return;
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
	smtp_session_set_authenticated(s, NULL);
	transaction_reset(s);
	if (s->state != SMTP_STATE_INIT)
		enter_state(s, SMTP_STATE_CONNECTED);
}

bool smtp_session_auth_credentials(const struct smtp_session *s, const char **user,
				   const char **password)
{
	if (s->state != SMTP_STATE_AUTH_VERIFY)
		return false;
	*user = s->sasl_result.user;
	*password = s->sasl_result.password;
	return true;
}

/* smtp_session_auth_done - 235, 535 or 454; the password is wiped */
void smtp_session_auth_done(struct smtp_session *s, int result)
{
	if (s->state != SMTP_STATE_AUTH_VERIFY) {	/* timed out meanwhile */
		sasl_reset(&s->sasl);
		return;
	}
	if (result == 0) {
		smtp_session_set_authenticated(s, s->sasl_result.user);
		reply(s, "235 2.7.0 Authentication successful");
	} else if (result == -EACCES) {
		reply_error(s, SMTP_REJECT_AUTH_FAILED, "535 5.7.8 Authentication credentials invalid");
	} else {
		reject_count(s, result == -EAGAIN ? SMTP_REJECT_RATE_LIMITED
			     : SMTP_REJECT_AUTH_UNAVAILABLE);
		reply(s, "454 4.7.0 Temporary authentication failure");
	}
	memset(&s->sasl_result, 0, sizeof(s->sasl_result));
	sasl_reset(&s->sasl);
	enter_state(s, SMTP_STATE_READY);
	errors_check(s);
}

void smtp_session_set_authenticated(struct smtp_session *s, const char *user)
{
	free(s->authenticated_user);
	s->authenticated_user = NULL;
	if (user != NULL)
		s->authenticated_user = xstrdup(user);
}

/* smtp_reject_name - from the table; "" for a value outside the enum */
const char *smtp_reject_name(enum smtp_reject why)
{
	if ((unsigned)why >= SMTP_REJECT_COUNT || reject_names[why] == NULL)
		return "";
	return reject_names[why];
}
