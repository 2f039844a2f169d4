/*
 * smtp_dsn - DSN (RFC 3461) values and recipient outcomes shared by the
 * SMTP server, the SMTP client, the spool and bounces. The NOTIFY bits are the same numbers as
 * the spool's SPOOL_NOTIFY_* so they pass through unchanged.
 */
#ifndef RINGMAIL_SMTP_DSN_H
#define RINGMAIL_SMTP_DSN_H

/* NOTIFY= flags of one recipient; 0 means "not specified". */
enum smtp_notify {
	SMTP_NOTIFY_NEVER = 1u << 0,
	SMTP_NOTIFY_SUCCESS = 1u << 1,
	SMTP_NOTIFY_FAILURE = 1u << 2,
	SMTP_NOTIFY_DELAY = 1u << 3,
};

/* RET= of MAIL FROM: how much of the message a failure DSN returns. */
enum smtp_dsn_ret {
	SMTP_RET_NONE,	/* not specified */
	SMTP_RET_FULL,
	SMTP_RET_HDRS,
};

/* What became of one recipient in one attempt. */
enum smtp_outcome {
	SMTP_OUTCOME_DELIVERED,
	SMTP_OUTCOME_DEFERRED,
	SMTP_OUTCOME_BOUNCED,
};

#endif
