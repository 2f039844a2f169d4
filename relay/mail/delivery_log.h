/*
 * delivery_log - the delivery log as JSON lines (log.delivery_file).
 *
 * One object per recipient per attempt, one write(2) per line, so lines
 * from different workers never interleave:
 *   {"ts":"2026-11-23T14:00:00.123Z","queue_id":"...","message_id":"x@y",
 *    "sender":"a@b","recipient":"c@d","domain":"d","mx":"mx.d",
 *    "ip":"192.0.2.1","tls":"unknown","tls_policy":"opportunistic","status":"delivered",
 *    "enhanced_code":"2.0.0","reply":"ok","dkim":null,"category":null,
 *    "code":250,"delay":0.123,"attempt":1}
 * category is the bounce class (relay/mail/bounce_class.h) of a bounced or
 * deferred recipient, null for a delivered one. status is delivered,
 * deferred, bounced, deleted (by the operator) or suppressed (refused at
 * injection for being on the suppression list; queue_id null).
 * Absent values (no MX host yet, no enhanced code, no Message-ID header)
 * are JSON null. tls is the connection's "TLSv1.2/<cipher>", "none", or "unknown";
 * tls_policy the outbound TLS policy that applied to the attempt (docs/TLS.md).
 *
 *   delivery_log_open(path)   at start, on SIGHUP and SIGUSR1 (reopen)
 *   delivery_log_enabled()    a file is configured
 *   delivery_log_write(&e)    from any worker thread
 *   delivery_log_format(...)  the pure part: one entry to one line
 */
#ifndef RINGMAIL_DELIVERY_LOG_H
#define RINGMAIL_DELIVERY_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every pointer is borrowed; NULL means absent (null in JSON), except
 * tls: NULL there is "unknown". The null sender <> is "". */
struct delivery_log_entry {
	int64_t ts_ms;                     /* wall clock, ms since the epoch */
	const char *queue_id;
	const char *message_id;            /* without <>; NULL = none */
	const char *sender;
	const char *recipient;
	const char *domain;
	const char *mx;
	const char *ip;
	const char *tls;                   /* "none", "TLSv1.3" ...; NULL = unknown */
	const char *tls_policy;            /* the outbound TLS policy that applied: none,
					    * opportunistic, encrypt, verify, implicit,
					    * mta-sts, mta-sts-testing, require-tls; NULL (local) = null */
	const char *status;                /* delivered, deferred, bounced */
	int code;                          /* SMTP reply code; 0 = none */
	const char *enhanced_code;
	const char *reply;
	double delay_s;                    /* since arrival */
	unsigned attempt;                  /* 1 for the first */
	const char *dkim;                  /* "d/s,d/s": its DKIM signatures; NULL = none */
	const char *category;              /* bounce_category_name() of a bounce or
					    * deferral; NULL (delivered) = none */
};

/* delivery_log_open - write to path from now on; "" closes (then the
 * caller logs delivery lines to the main log). Reopening swaps the file
 * under concurrent writers without losing or mixing lines. 0 or -errno
 * (the old file stays in use). */
int delivery_log_open(const char *path);
bool delivery_log_enabled(void);

/* delivery_log_identity - the device and inode of the file the writers
 * write to now: a reader following the log (relay/http/webhook.c) knows
 * a rotated file is finished once the writers have moved off it. 0, or
 * -ENOENT without a file, or -errno. */
int delivery_log_identity(uint64_t *dev, uint64_t *ino);
void delivery_log_write(const struct delivery_log_entry *e);

/* delivery_log_suppressed - the line of a recipient refused at injection
 * (SMTP RCPT, HTTP) because it is on the suppression list: status
 * "suppressed", no queue id, 550 5.7.1 "Recipient address suppressed:
 * reason". Webhooks read it as a "suppressed" event. No-op without a file. */
void delivery_log_suppressed(const char *sender, const char *recipient, const char *domain,
			     const char *reason);

/* delivery_log_message_id - the Message-ID of the message (header section
 * of msg, len bytes) into out without the angle brackets; "" when there is
 * none (or it does not fit out). Only the header section is read. */
void delivery_log_message_id(const char *msg, size_t len, char *out, size_t size);

/* delivery_log_dkim - the signing domain and selector of every
 * DKIM-Signature field of the message's header, "d/s,d/s" in their order,
 * into out (size >= 1; cut at a whole pair); "" when there is none. */
void delivery_log_dkim(const char *msg, size_t len, char *out, size_t size);

/* delivery_log_format - e as one JSON line ending in '\n' into dst;
 * strings are escaped and cut so that the line always fits (size >= 512).
 * Returns the length. */
size_t delivery_log_format(char *dst, size_t size, const struct delivery_log_entry *e);

#endif
