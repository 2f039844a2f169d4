/*
 * pop3_session - the POP3 server protocol (RFC 1939, CAPA and response codes
 * RFC 2449, AUTH PLAIN RFC 5034, STLS RFC 2595) as a pure state machine:
 * bytes in, reply bytes and actions out. Passwords and mailboxes are reached
 * only through the config callbacks, so the session has no I/O of its own.
 *
 *   s = pop3_session_new(&cfg);
 *   pop3_session_start(s);                         queues the +OK greeting
 *   loop:
 *     write out pop3_session_output(s, &n); pop3_session_output_consumed(s, n);
 *     switch (pop3_session_want(s)):
 *     READ:     n = pop3_session_feed(s, in, len); keep in[n..len) for later
 *     FLUSH:    write the output (consuming it refills it while RETR or TOP
 *               streams a message), then feed the kept input again
 *     STARTTLS: flush the output, discard every input byte not consumed (it
 *               came before the handshake), run the TLS handshake, then
 *               pop3_session_tls_started(s), or close on failure
 *     CLOSE:    output is flushed; close the connection
 *   on a timer: pop3_session_timeout(s) (-ERR, then CLOSE; deletes nothing)
 *   s = pop3_session_free(s);       closes an open mailbox without commit
 *
 * Output is always worth sending when non-empty, whatever want says. Every
 * command gets exactly one response, in order, however input is split or
 * batched (RFC 2449 PIPELINING). RETR and TOP stream the message: the session
 * reads it through the mailbox ops a chunk at a time while the output
 * drains, so memory use does not depend on the message or mailbox size. The
 * message body is sent with every bare LF turned into CRLF, lines starting
 * with "." stuffed, a CRLF added when the last line has none, then ".".
 *
 * Deletion happens only at QUIT in the TRANSACTION state (UPDATE): marks are
 * handed to mark_deleted, then commit. A dropped connection, a timeout or
 * too many errors close the mailbox without commit: nothing is deleted.
 *
 * Ownership: the session copies cfg->hostname; cfg callbacks, ctx, the
 * mailbox ops and box must outlive the session (the session calls ops->close
 * exactly once for a box it opened). Strings passed to the callbacks are
 * valid only during the call.
 */
#ifndef RINGMAIL_POP3_SESSION_H
#define RINGMAIL_POP3_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Mailbox access; i is 0-based (POP3 message number - 1). */
struct pop3_mailbox_ops {
	/* count - the messages in the snapshot taken at open */
	size_t (*count)(void *box);
	/* size - octets of message i as sent (CRLF line ends, before stuffing,
	 * including the CRLF added to a last line without one) */
	uint64_t (*size)(void *box, size_t i);
	/* uidl - the unique id: 1 to 70 octets 0x21..0x7E, stable across
	 * sessions; valid until close */
	const char *(*uidl)(void *box, size_t i);
	/* read - up to len bytes of message i from offset, in any line end
	 * convention; returns the bytes read, 0 at the end, or -errno */
	ssize_t (*read)(void *box, size_t i, uint64_t offset, char *buf, size_t len);
	/* mark_deleted - at UPDATE, for each message DELE marked; 0 or -errno */
	int (*mark_deleted)(void *box, size_t i);
	/* commit - remove the marked messages; 0 or -errno */
	int (*commit)(void *box);
	/* close - release the mailbox (and its lock) without removing more */
	void (*close)(void *box);
};

enum pop3_auth_result {
	POP3_AUTH_OK,
	POP3_AUTH_BAD,			/* wrong user or password */
	POP3_AUTH_RATE_LIMITED,		/* too many failures from this client */
	POP3_AUTH_TEMPFAIL,		/* the password database is unavailable */
};

enum pop3_open_result {
	POP3_OPEN_OK,
	POP3_OPEN_IN_USE,		/* another session holds the mailbox */
	POP3_OPEN_ERROR,
};

struct pop3_session_config {
	const char *hostname;		/* for the greeting */
	size_t line_max;		/* command line incl. CR LF; 0 = 255 (RFC 2449) */
	size_t sasl_line_max;		/* AUTH continuation line; 0 = 2048 */
	unsigned errors_max;		/* bad commands before closing; 0 = 20 */
	unsigned auth_failures_max;	/* failed logins before closing; 0 = 3 */
	size_t output_max;		/* backlog that pauses input; 0 = 64 KiB */
	bool tls_available;		/* offer STLS (a certificate is loaded) */
	bool plaintext_allowed;		/* USER/PASS and PLAIN without TLS */
	void *ctx;			/* passed to the callbacks */
	/* authenticate - check a password: enum pop3_auth_result. Rate limiting
	 * per client address is the callback's job (ctx knows the client). */
	int (*authenticate)(void *ctx, const char *user, const char *password);
	/* open_mailbox - lock and snapshot user's mailbox: enum
	 * pop3_open_result; *ops and *box are set on POP3_OPEN_OK. */
	int (*open_mailbox)(void *ctx, const char *user,
			    const struct pop3_mailbox_ops **ops, void **box);
};

enum pop3_session_want {
	POP3_WANT_READ,		/* feed more input */
	POP3_WANT_FLUSH,	/* send the output before feeding more */
	POP3_WANT_STARTTLS,	/* flush, then the TLS handshake (see top) */
	POP3_WANT_CLOSE,	/* close: nothing more to send or read */
};

enum pop3_timeout_class {
	POP3_TIMEOUT_AUTHORIZATION,	/* not logged in yet: short (Dovecot: ~1 min) */
	POP3_TIMEOUT_TRANSACTION,	/* logged in: RFC 1939 autologout >= 10 min */
	POP3_TIMEOUT_NONE,		/* handshake or closing: no client timer */
};

/* pop3_session_new - a session for one connection; never NULL (OOM is fatal) */
struct pop3_session *pop3_session_new(const struct pop3_session_config *cfg);

/* pop3_session_free - close the mailbox without commit, free; accepts NULL,
 * returns NULL */
struct pop3_session *pop3_session_free(struct pop3_session *s);

/* pop3_session_start - queue the greeting */
void pop3_session_start(struct pop3_session *s);

/* pop3_session_feed - consume input, queue responses. Returns the octets
 * consumed; fewer than len while a message streams, the output backlog is
 * full, STLS waits for the handshake, or the session is closing. */
size_t pop3_session_feed(struct pop3_session *s, const char *in, size_t len);

/* pop3_session_output - pending bytes (len may be 0) */
const char *pop3_session_output(const struct pop3_session *s, size_t *len);

/* pop3_session_output_consumed - n bytes were sent; a streaming RETR or TOP
 * queues its next chunk */
void pop3_session_output_consumed(struct pop3_session *s, size_t n);

/* pop3_session_want - what the session needs next (see top) */
enum pop3_session_want pop3_session_want(const struct pop3_session *s);

/* pop3_session_tls_started - the STLS handshake succeeded: every buffer and
 * the AUTHORIZATION state start afresh, now under TLS */
void pop3_session_tls_started(struct pop3_session *s);

/* pop3_session_set_tls - the connection is under TLS from the start (the
 * implicit-TLS listener, port 995): STLS is not offered, plaintext allowed */
void pop3_session_set_tls(struct pop3_session *s, bool active);

/* pop3_session_timeout - the client was idle too long: -ERR, CLOSE */
void pop3_session_timeout(struct pop3_session *s);

/* pop3_session_timeout_class - which client timeout applies now */
enum pop3_timeout_class pop3_session_timeout_class(const struct pop3_session *s);

/* pop3_session_user - the logged-in user, or NULL (for logs) */
const char *pop3_session_user(const struct pop3_session *s);

#endif
