/*
 * bounce - build delivery status notifications (RFC 3464, RFC 3461).
 *
 *   if (bounce_wanted(sender, rcpt_notify, BOUNCE_FAILED)) {
 *       struct buf out; buf_init(&out, 16 << 20);
 *       if (bounce_build(&input, &out) == 0) ... queue it with sender <>
 *   }
 *
 * The result is a complete RFC 5322 message with CRLF line endings:
 * From: MAILER-DAEMON@<hostname>, To: <sender>, Subject, Date, Message-ID,
 * Auto-Submitted: auto-replied, MIME-Version and a multipart/report
 * (report-type=delivery-status) of three parts: a text/plain explanation,
 * the message/delivery-status, and the original: message/rfc822 (RET=FULL
 * or unspecified, when it is at most max_original bytes) or
 * text/rfc822-headers (RET=HDRS, or a larger original). Server texts are
 * made 7-bit and folded; the original is included as stored.
 * The DSN must be sent with the null sender, so that it never bounces back.
 *
 * Ownership: bounce_build() only reads the input and appends to out.
 */
#ifndef RINGMAIL_BOUNCE_H
#define RINGMAIL_BOUNCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "smtp_dsn.h"

enum bounce_action {
	BOUNCE_FAILED,
	BOUNCE_DELAYED,
	BOUNCE_DELIVERED,
};

struct bounce_rcpt {
	const char *addr;		/* final recipient */
	const char *orcpt;		/* ORCPT "rfc822;addr" as received, or NULL */
	enum bounce_action action;
	const char *status;		/* "5.1.1"; NULL: derived from action */
	const char *remote_mta;		/* host that answered, or NULL */
	int code;			/* SMTP reply code; 0: a local decision */
	const char *diagnostic;		/* reply text or local reason, or NULL */
	int64_t last_attempt_ms;	/* 0: omit */
	int64_t retry_until_ms;		/* for delayed: Will-Retry-Until; 0: omit */
};

struct bounce_input {
	const char *hostname;		/* Reporting-MTA and From: domain */
	const char *sender;		/* original envelope sender, not "" */
	const char *envid;		/* ENVID, or NULL */
	enum smtp_dsn_ret ret;
	int64_t arrival_ms;
	int64_t now_ms;			/* Date: */
	uint64_t unique;		/* random: boundary and Message-ID */
	const struct bounce_rcpt *rcpts;
	size_t nrcpts;
	const char *message;		/* the original as stored (CRLF) */
	size_t message_len;
	size_t max_original;		/* 0: 10 MiB */
};

/* bounce_wanted - should a DSN for action go to sender, given the
 * recipient's NOTIFY (enum smtp_notify bits, 0 = unspecified: failures and
 * delays)? Never for the null sender. */
bool bounce_wanted(const char *sender, unsigned notify, enum bounce_action action);

/* bounce_build - append the DSN to out. 0, -EINVAL (no recipients, no
 * sender or hostname) or -ENOBUFS (out's cap; out is left as it was). */
int bounce_build(const struct bounce_input *in, struct buf *out);

/* bounce_date - RFC 5322 date-time for ms since the epoch, in UTC. */
void bounce_date(int64_t ms, char *dst, size_t size);

#endif
