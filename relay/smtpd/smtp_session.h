/*
 * smtp_session - the inbound SMTP server protocol as a pure state machine:
 * bytes in, reply bytes and actions out. No sockets, no files, no clocks
 * except through the config callbacks.
 *
 *   s = smtp_session_new(&cfg, &peer);
 *   smtp_session_start(s);                              queues the 220 greeting
 *   loop:
 *     write out smtp_session_output(s, &n); smtp_session_output_consumed(s, n);
 *     switch (smtp_session_want(s)):
 *     READ:   n = smtp_session_feed(s, in, len); keep in[n..len) for later
 *     FLUSH:  write the output first, then feed again
 *     COMMIT: spool smtp_session_message(s); later smtp_session_commit_done(s, err)
 *             and feed the kept input again
 *     CLOSE:  output is flushed; close the connection
 *     AUTH:   verify smtp_session_auth_credentials (slow: off the loop),
 *             then smtp_session_auth_done(s, result) and feed again
 *     STARTTLS: send the output, drop all unread input, handshake, then
 *             smtp_session_set_tls(s, true) (or close on failure)
 *   on a timer: smtp_session_timeout(s) (421 4.4.2, then CLOSE)
 *   s = smtp_session_free(s);
 *
 * Output is always worth sending when non-empty, whatever want says.
 * Every command gets exactly one reply, in order, however input is split or
 * batched (RFC 2920 pipelining); replies carry RFC 3463 enhanced codes.
 * The session never closes by itself except after QUIT (221), after too many
 * errors (421 4.7.0) or on timeout (421 4.4.2).
 *
 * Ownership: the session copies cfg->hostname and the peer strings; cfg
 * callbacks, ctx and reject_counts must outlive the session. smtp_session_message() points
 * into the session and is valid until smtp_session_commit_done().
 */
#ifndef RINGMAIL_SMTP_SESSION_H
#define RINGMAIL_SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "smtp_cmd.h"

/* Why the inbound server refused something: one count per refusing reply
 * (or disconnect), for the operator's metrics (ringmail_rejected_total).
 * The session counts all but BUSY (the worker refuses the connection). */
enum smtp_reject {
	SMTP_REJECT_RELAY_DENIED,	/* 554 5.7.1 RCPT elsewhere, untrusted */
	SMTP_REJECT_UNKNOWN_USER,	/* 550 5.1.1 no such local mailbox */
	SMTP_REJECT_TOO_MANY_RECIPIENTS, /* 452 4.5.3 over recipients_max */
	SMTP_REJECT_MESSAGE_TOO_LARGE,	/* 552 5.3.4 SIZE=, DATA or BDAT */
	SMTP_REJECT_SYNTAX,		/* 500/501/504/553/555: bad command,
					 * address, parameter, over-long line */
	SMTP_REJECT_PROTOCOL,		/* 502/503/554 5.5.1, 454 STARTTLS: a
					 * command out of sequence or not offered */
	SMTP_REJECT_AUTH_FAILED,	/* 535 5.7.8 credentials invalid */
	SMTP_REJECT_AUTH_REQUIRED,	/* 530 5.7.0 MAIL before AUTH (submission) */
	SMTP_REJECT_TLS_REQUIRED,	/* 538 5.7.11 AUTH in clear */
	SMTP_REJECT_RATE_LIMITED,	/* 454 4.7.0 AUTH: too many failures */
	SMTP_REJECT_AUTH_UNAVAILABLE,	/* 454 4.7.0 AUTH: the check could not run */
	SMTP_REJECT_SMUGGLING,		/* 550 5.6.11 bare CR or LF in content */
	SMTP_REJECT_BAD_CONTENT,	/* 554 5.6.0 NUL or over-long content line,
					 * or an empty BDAT message */
	SMTP_REJECT_SPOOL_FAILED,	/* 452 4.3.1 the spool commit failed */
	SMTP_REJECT_TOO_MANY_ERRORS,	/* 421 4.7.0 disconnect at errors_max */
	SMTP_REJECT_COMMAND_TIMEOUT,	/* 421 4.4.2 disconnect waiting for a command */
	SMTP_REJECT_DATA_TIMEOUT,	/* 421 4.4.2 disconnect inside DATA/BDAT */
	SMTP_REJECT_BUSY,		/* 421 4.3.2 connection at max_connections */
	SMTP_REJECT_SUPPRESSED,		/* 550 5.7.1 RCPT on the suppression list */
	SMTP_REJECT_UNKNOWN_POOL,	/* 550 5.7.0 the pool header names no pool */
	SMTP_REJECT_COUNT
};

/* smtp_reject_name - the metric label ("relay_denied"); "" out of range */
const char *smtp_reject_name(enum smtp_reject why);

struct smtp_session_config {
	const char *hostname;		/* for 220, EHLO and Received */
	size_t line_max;		/* command line incl. CR LF; 0 = 512 */
	size_t data_line_max;		/* DATA line incl. CR LF; 0 = 1000 */
	uint64_t message_size_max;	/* content octets; 0 = 10 MB */
	size_t recipients_max;		/* per message; 0 = 1000 */
	unsigned errors_max;		/* error replies before 421; 0 = 20 */
	size_t output_max;		/* reply backlog that pauses input; 0 = 64 KiB */
	void *ctx;			/* passed to the callbacks */
	/* is_local_domain - whether mail for domain (lower case, no trailing
	 * dot, "[1.2.3.4]" for literals) is delivered here. NULL: none is. */
	bool (*is_local_domain)(void *ctx, const char *domain);
	/* local_rcpt_exists - whether a recipient at a local domain (mailbox
	 * as parsed: "local@domain") has a mailbox; no: 550 5.1.1 at RCPT.
	 * NULL: every one has. */
	bool (*local_rcpt_exists)(void *ctx, const char *mailbox);
	/* rcpt_suppressed - why the recipient (mailbox as parsed) is on the
	 * suppression list (one line of printable text; 550 5.7.1 at RCPT),
	 * or NULL when it is not. NULL: no list is checked. */
	const char *(*rcpt_suppressed)(void *ctx, const char *mailbox);
	/* new_queue_id - a fresh queue id (NUL-terminated) for a message whose
	 * data phase starts. NULL: a per-session counter is used. */
	void (*new_queue_id)(void *ctx, char out[32]);
	/* now - the time for the Received header. NULL: time(NULL). */
	time_t (*now)(void *ctx);
	bool tls_available;		/* offer STARTTLS (a certificate is configured) */
	bool auth_available;		/* offer AUTH PLAIN LOGIN (users are configured) */
	bool auth_plaintext;		/* ... also without TLS (else 538 5.7.11) */
	bool auth_required;		/* submission (RFC 6409): MAIL before AUTH
					 * gets 530 5.7.0, even from trusted peers */
	bool add_missing_headers;	/* a trusted or authenticated client's message
					 * without Message-ID or Date gets them, right
					 * below the Received header */
	/* pool_header - the header field that chooses the egress pool
	 * (shaping.pool_header; copied), or NULL/"": off. The field is removed
	 * from every message; a relay_networks or authenticated client's
	 * value becomes smtp_message.pool when pool_known(ctx, value) says it
	 * is a pool, else the message gets 550 5.7.0 at the end of DATA. */
	const char *pool_header;
	bool (*pool_known)(void *ctx, const char *pool);
	/* reject_counts - SMTP_REJECT_COUNT counters the session adds its
	 * refusals to (indexed by enum smtp_reject), or NULL. Not owned; must
	 * outlive the session; written only from the session's calls. */
	uint64_t *reject_counts;
};

struct smtp_peer {
	const char *address;	/* "192.0.2.1" or "2001:db8::1" */
	const char *hostname;	/* verified reverse name, or NULL ("unknown") */
	unsigned port;
	bool trusted;		/* in relay_networks: may relay anywhere */
};

enum smtp_session_want {
	SMTP_WANT_READ,		/* feed more input */
	SMTP_WANT_FLUSH,	/* send the output before feeding more */
	SMTP_WANT_COMMIT,	/* a message waits to be made durable */
	SMTP_WANT_CLOSE,	/* close: nothing more to send or read */
	SMTP_WANT_AUTH,		/* check smtp_session_auth_credentials(), then
				 * smtp_session_auth_done() */
	SMTP_WANT_STARTTLS,	/* 220 to STARTTLS is queued: send it in clear,
				 * DISCARD all buffered input, run the TLS
				 * handshake, then smtp_session_set_tls(s, true) */
};

enum smtp_timeout_class {
	SMTP_TIMEOUT_COMMAND,	/* waiting for a command (RFC 5321: 5 min) */
	SMTP_TIMEOUT_DATA,	/* inside DATA or a BDAT chunk (3 min/block) */
	SMTP_TIMEOUT_NONE,	/* committing or closing: no client timer */
};

struct smtp_recipient {
	char address[SMTP_ADDRESS_PATH_MAX + 1];	/* mailbox, no <> */
	unsigned notify;				/* enum smtp_notify */
	char *orcpt_type;	/* ORCPT addr-type ("rfc822"), or NULL */
	char *orcpt;		/* ORCPT address (xtext-decoded), or NULL */
};

struct smtp_message {
	char queue_id[32];
	const char *peer_address;
	const char *peer_hostname;	/* "unknown" when not known */
	const char *helo;		/* HELO/EHLO argument */
	const char *auth_user;		/* AUTH user, "" when none */
	char sender[SMTP_ADDRESS_PATH_MAX + 1];	/* "" for <> */
	struct smtp_mail_params params;		/* SIZE, BODY, SMTPUTF8, RET, ENVID, REQUIRETLS */
	bool tls_required_no;		/* "TLS-Required: No" and no REQUIRETLS (RFC 8689 4.1) */
	const struct smtp_recipient *recipients;
	size_t recipient_count;
	const char *body;		/* Received header + content as received */
	size_t body_len;
	size_t header_len;		/* octets of the Received header in body */
	char pool[64];			/* the pool header's pool, "" none */
};

/* smtp_session_new - a session for one connection; never NULL (OOM is fatal) */
struct smtp_session *smtp_session_new(const struct smtp_session_config *cfg,
				      const struct smtp_peer *peer);

/* smtp_session_free - free a session; accepts NULL; returns NULL */
struct smtp_session *smtp_session_free(struct smtp_session *s);

/* smtp_session_start - queue the 220 greeting */
void smtp_session_start(struct smtp_session *s);

/* smtp_session_feed - consume input, queue replies. Returns the octets
 * consumed; fewer than len when the session waits for a commit, for the
 * output to drain, or is closing. The caller feeds the rest again later. */
size_t smtp_session_feed(struct smtp_session *s, const char *in, size_t len);

/* smtp_session_output - pending reply bytes (len may be 0) */
const char *smtp_session_output(const struct smtp_session *s, size_t *len);

/* smtp_session_output_consumed - n bytes of the output were sent */
void smtp_session_output_consumed(struct smtp_session *s, size_t n);

/* smtp_session_want - what the session needs next (see top) */
enum smtp_session_want smtp_session_want(const struct smtp_session *s);

/* smtp_session_message - the message waiting for commit, or NULL */
const struct smtp_message *smtp_session_message(const struct smtp_session *s);

/* smtp_session_commit_done - the spool's answer: 0 (250 queued) or -errno
 * (452 4.3.1). Either way the transaction ends and the session reads on. */
void smtp_session_commit_done(struct smtp_session *s, int err);

/* smtp_session_timeout - the client was idle too long: 421 4.4.2, CLOSE */
void smtp_session_timeout(struct smtp_session *s);

/* smtp_session_timeout_class - which client timeout applies now */
enum smtp_timeout_class smtp_session_timeout_class(const struct smtp_session *s);

/* Flags the worker or a future TLS/AUTH module sets on the session. */
/* smtp_session_set_tls - TLS is now active (after the STARTTLS handshake):
 * the session forgets HELO/EHLO and any transaction (RFC 3207 4.2) and
 * waits for a new EHLO; STARTTLS is no longer offered. */
void smtp_session_set_tls(struct smtp_session *s, bool active);

/* smtp_session_auth_credentials - in SMTP_WANT_AUTH: the user and
 * password to check (valid until smtp_session_auth_done). false otherwise. */
bool smtp_session_auth_credentials(const struct smtp_session *s, const char **user,
				   const char **password);

/* smtp_session_auth_done - the verdict: 0 (235, authenticated), -EACCES
 * (535 5.7.8) or any other -errno (454 4.7.0): -EAGAIN when the client
 * failed too often (counted as rate_limited), any other when the check
 * could not run (auth_unavailable). The password is wiped either way. */
void smtp_session_auth_done(struct smtp_session *s, int result);

/* smtp_session_set_authenticated - user authenticated (NULL: none); an
 * authenticated client may relay */
void smtp_session_set_authenticated(struct smtp_session *s, const char *user);

#endif
