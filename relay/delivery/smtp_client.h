/*
 * smtp_client - the client side of one outbound SMTP connection, as a pure
 * state machine: reply bytes in, command bytes and events out. No sockets.
 *
 *   struct smtp_client *c = smtp_client_new(&config);   // events in config
 *   loop:
 *     smtp_client_feed(c, bytes_read, n);      // may fire event callbacks
 *     out = smtp_client_output(c, &len);       // write these bytes ...
 *     smtp_client_output_consumed(c, written); // ... and say how many went
 *   on the ready event:   smtp_client_begin(c, &txn) or smtp_client_quit(c)
 *   on the closed event:  flush what output remains if you like, then close
 *   c = smtp_client_free(c);
 *
 * Dialog: wait for the 220 greeting, EHLO (HELO when EHLO gets a 5xx),
 * then READY. A transaction sends MAIL, RCPTs and DATA (all in one output
 * chunk when the server offers PIPELINING, RFC 2920; replies are matched in
 * order), then the body (dot-stuffed, CRLF.CRLF), or, when CHUNKING is
 * offered, MAIL and RCPTs pipelined and then one "BDAT <n> LAST" with the
 * body as stored. After the final reply the connection is READY again; after
 * a transaction that ended early (no recipient accepted, DATA refused, BDAT
 * refused) an RSET is sent first. The engine decides when to QUIT.
 *
 * Parameters: SIZE=<n> when SIZE is offered (and a message larger than the
 * server's announced limit fails at once with 552 5.3.4, nothing is sent);
 * BODY=8BITMIME when the message needs it and 8BITMIME is offered. If it is
 * not offered and the body has 8-bit bytes, the body goes out in its 7-bit
 * form, as Postfix does (RFC 6152 3: 8bit MIME parts re-encoded as
 * quoted-printable, mime_downgrade.h; SIZE and BDAT count the converted
 * bytes); a body that cannot be converted (8-bit inside a message/rfc822
 * part, say) fails every recipient at once with 554 5.6.3. SMTPUTF8
 * when the message needs it (if the server does not offer SMTPUTF8 every
 * recipient fails at once with 553 5.6.7, RFC 6531 section 3.2, nothing is
 * sent); RET, ENVID, NOTIFY and ORCPT only when DSN is offered.
 * REQUIRETLS (RFC 8689) when the message has it: if the server did not
 * offer REQUIRETLS (in the EHLO after STARTTLS: extensions are forgotten
 * at the handshake) every recipient fails at once with 550 5.7.30 and
 * nothing is sent. Whether the TLS itself is good enough is the engine's
 * question (tls_policy_authenticated), asked before begin.
 *
 * Outcomes: each recipient gets exactly one rcpt event: a 2xx to RCPT and a
 * 2xx to the end of data is DELIVERED; a 4xx is DEFERRED; a 5xx BOUNCED.
 * A refused MAIL gives every recipient that reply. A 421 at any point
 * defers every recipient still open and closes the connection (closed
 * event, failed = true: the engine may try the next MX). A bad greeting,
 * a failed EHLO/HELO or a protocol error also end in a closed event with
 * failed = true.
 *
 * Callbacks run inside smtp_client_feed(), smtp_client_begin() and
 * smtp_client_abort(). From the ready callback the engine may call
 * smtp_client_begin() or smtp_client_quit(); from no callback may it call
 * smtp_client_feed() or smtp_client_free(). Pointers in an event (result
 * text, the txn) are valid during the callback only.
 *
 * Ownership: the config is copied (helo_name too). The txn passed to
 * smtp_client_begin() - including its recipients, strings and body - is
 * borrowed: keep it alive and unchanged until its txn_done event.
 */
#ifndef RINGMAIL_SMTP_CLIENT_H
#define RINGMAIL_SMTP_CLIENT_H

#include <stdbool.h>

#include "smtp_dsn.h"
#include <stddef.h>
#include <stdint.h>

#include "smtp_reply.h"

enum smtp_client_state {
	SMTP_CLIENT_GREETING,	/* waiting for 220 */
	SMTP_CLIENT_EHLO,	/* EHLO sent */
	SMTP_CLIENT_HELO,	/* HELO sent after EHLO got a 5xx */
	SMTP_CLIENT_STARTTLS,	/* STARTTLS sent, waiting for 220 */
	SMTP_CLIENT_TLS,	/* 220 to STARTTLS: engine does the handshake */
	SMTP_CLIENT_READY,	/* idle, may begin a transaction or quit */
	SMTP_CLIENT_MAIL,	/* MAIL sent (with PIPELINING: RCPTs, DATA too) */
	SMTP_CLIENT_RCPT,	/* RCPTs sent, waiting for their replies */
	SMTP_CLIENT_DATA,	/* DATA sent, waiting for 354 */
	SMTP_CLIENT_BODY,	/* body going out, waiting for the final reply */
	SMTP_CLIENT_RSET,	/* RSET after a transaction that ended early */
	SMTP_CLIENT_QUIT,	/* QUIT sent */
	SMTP_CLIENT_CLOSED,	/* QUIT answered or 421: done, close the socket */
	SMTP_CLIENT_FAILED,	/* connection-level failure: close, next MX */
	SMTP_CLIENT_AUTH,	/* AUTH sent (RFC 4954), waiting for 235 or 334 */
};

/* SASL mechanisms the server lists in its AUTH extension. */
enum smtp_client_auth_mech {
	SMTP_AUTH_PLAIN = 1u << 0,
	SMTP_AUTH_LOGIN = 1u << 1,
};

/* Extensions from the EHLO reply. */
enum smtp_client_ext {
	SMTP_EXT_PIPELINING = 1u << 0,
	SMTP_EXT_SIZE = 1u << 1,
	SMTP_EXT_8BITMIME = 1u << 2,
	SMTP_EXT_SMTPUTF8 = 1u << 3,
	SMTP_EXT_CHUNKING = 1u << 4,
	SMTP_EXT_DSN = 1u << 5,
	SMTP_EXT_STARTTLS = 1u << 6,
	SMTP_EXT_ENHANCEDSTATUSCODES = 1u << 7,
	SMTP_EXT_AUTH = 1u << 8,	/* with at least one mechanism we speak */
	SMTP_EXT_REQUIRETLS = 1u << 9,	/* RFC 8689 */
};

enum smtp_txn_flags {
	SMTP_TXN_8BIT = 1u << 0,	/* body has 8-bit bytes */
	SMTP_TXN_SMTPUTF8 = 1u << 1,	/* envelope/headers need SMTPUTF8 */
	SMTP_TXN_REQUIRETLS = 1u << 2,	/* RFC 8689: MAIL FROM ... REQUIRETLS */
};

/* Longest address or DSN parameter value begin() accepts. */
#define SMTP_CLIENT_PARAM_MAX 1000

struct smtp_client_rcpt {
	const char *addr;	/* without angle brackets */
	unsigned notify;	/* enum smtp_notify bits, 0 = unspecified */
	const char *orcpt;	/* "rfc822;xtext" as received, or NULL */
};

struct smtp_client_txn {
	const char *sender;	/* "" for the null sender <> */
	const struct smtp_client_rcpt *rcpts;
	size_t nrcpts;		/* >= 1 */
	unsigned flags;		/* enum smtp_txn_flags */
	const char *envid;	/* xtext as received, or NULL */
	enum smtp_dsn_ret ret;
	const char *body;	/* the message as stored: CRLF lines, no dot-stuffing */
	size_t body_len;
};

/* The reply (or local decision) behind an event. */
struct smtp_client_result {
	int code;		/* reply code; 0 for an engine abort */
	const char *status;	/* enhanced code: the server's or derived ("4.0.0") */
	const char *text;	/* reply text, lines joined by \n */
	bool local;		/* decided here, not said by the server */
};

struct smtp_client_events {
	void *arg;
	/* A recipient's final outcome in this transaction (index into rcpts). */
	void (*rcpt)(void *arg, size_t index, enum smtp_outcome outcome,
		     const struct smtp_client_result *result);
	/* Every recipient of txn has had its rcpt event. */
	void (*txn_done)(void *arg, const struct smtp_client_txn *txn);
	/* The connection is READY: begin a transaction or quit. */
	void (*ready)(void *arg);
	/* 220 to STARTTLS (ok) or a refusal (client is READY again). */
	void (*starttls)(void *arg, bool ok, const struct smtp_client_result *result);
	/* The connection is over: failed = connection-level failure. */
	void (*closed)(void *arg, bool failed, const struct smtp_client_result *result);
	/* The answer to AUTH: ok (235, the client is READY again and the ready
	 * event follows) or not (the client is READY, no ready event: the
	 * engine decides, e.g. smtp_client_quit). */
	void (*auth)(void *arg, bool ok, const struct smtp_client_result *result);
};

struct smtp_client_config {
	const char *helo_name;		/* copied */
	size_t max_reply_line;		/* 0: SMTP_REPLY_LINE_DEFAULT */
	unsigned max_reply_lines;	/* 0: SMTP_REPLY_LINES_DEFAULT */
	size_t max_output;		/* output cap; 0: 4 MiB; at least 64 KiB */
	size_t body_chunk;		/* body bytes staged per refill; 0: 64 KiB */
	struct smtp_client_events events;
};

struct smtp_client;

/* smtp_client_new - a client waiting for the greeting. Never NULL. */
struct smtp_client *smtp_client_new(const struct smtp_client_config *config);
/* smtp_client_free - release; accepts NULL; returns NULL. */
struct smtp_client *smtp_client_free(struct smtp_client *c);

/* smtp_client_feed - process bytes from the server. Returns 0, or -EPROTO /
 * -EMSGSIZE after a protocol error (closed event already fired), or
 * -EPIPE when the client is already CLOSED/FAILED (bytes ignored). */
int smtp_client_feed(struct smtp_client *c, const char *in, size_t len);

/* smtp_client_output - bytes to send now (may stage more body bytes).
 * Valid until the next call on c. */
const char *smtp_client_output(struct smtp_client *c, size_t *len);
/* smtp_client_output_consumed - n of those bytes were written. */
void smtp_client_output_consumed(struct smtp_client *c, size_t n);

/* smtp_client_begin - start a transaction; only in READY. Returns 0 when
 * commands were queued, 1 when the transaction ended at once (SMTPUTF8 not
 * offered, over the SIZE limit: rcpt and txn_done events fired, still
 * READY), -EBUSY when not READY, -EINVAL for a bad txn (no recipients, CR,
 * LF, controls, '<' or '>' in an address, a space in ENVID/ORCPT, any of
 * them longer than SMTP_CLIENT_PARAM_MAX), -ENOBUFS when the pipelined
 * commands exceed max_output (split the recipients; nothing was queued). */
int smtp_client_begin(struct smtp_client *c, const struct smtp_client_txn *txn);

/* smtp_client_quit - send QUIT; only in READY (-EBUSY otherwise). */
int smtp_client_quit(struct smtp_client *c);

/* smtp_client_starttls - send STARTTLS; only in READY with the extension
 * offered (-EBUSY, -ENOTSUP). On 220 the state is TLS and the starttls event
 * fires: do the handshake, then call smtp_client_restart_ehlo(). */
int smtp_client_starttls(struct smtp_client *c);
/* smtp_client_restart_ehlo - after the TLS handshake: forget extensions,
 * pending input and output, and send EHLO again (RFC 3207 4.2). */
int smtp_client_restart_ehlo(struct smtp_client *c);

/* smtp_client_auth - log in (RFC 4954) with PLAIN (an initial response)
 * when offered, else LOGIN; only in READY (-EBUSY), -ENOTSUP when the
 * server offers neither, -EINVAL for a user or password with a NUL, CR or
 * LF or over SMTP_CLIENT_PARAM_MAX. The credentials are copied and wiped
 * once the dialog is over; the auth event gives the outcome. Only the
 * engine knows whether the connection is encrypted: it must not call this
 * in clear. */
int smtp_client_auth(struct smtp_client *c, const char *user, const char *password);
/* smtp_client_auth_mechs - enum smtp_client_auth_mech bits offered. */
unsigned smtp_client_auth_mechs(const struct smtp_client *c);

/* smtp_client_abort - the engine lost the connection or timed out: defer
 * every open recipient with reason (code 0, status 4.4.2), fire txn_done
 * and closed(failed = true). No-op when already CLOSED/FAILED. */
void smtp_client_abort(struct smtp_client *c, const char *reason);

enum smtp_client_state smtp_client_state(const struct smtp_client *c);
const char *smtp_client_state_name(enum smtp_client_state state);
/* smtp_client_has_ext - is every extension in mask offered? */
bool smtp_client_has_ext(const struct smtp_client *c, unsigned mask);
/* smtp_client_size_limit - the server's SIZE value (0: none announced). */
uint64_t smtp_client_size_limit(const struct smtp_client *c);
/* smtp_client_timeout_ms - how long to wait for the server in the current
 * state (RFC 5321 4.5.3.2), 0 when not waiting. */
int64_t smtp_client_timeout_ms(const struct smtp_client *c);

#endif
