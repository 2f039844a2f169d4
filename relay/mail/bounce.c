/*
 * bounce - DSN builder; see bounce.h.
 *
 * Everything we write ourselves is 7-bit; text that came from a remote
 * server goes through append_text(), which replaces controls and 8-bit
 * bytes and folds long lines, so that a hostile reply cannot forge headers
 * or MIME boundaries. The boundary is checked against the original, the
 * only other text in the message.
 */
#include "bounce.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define BOUNCE_MAX_ORIGINAL_DEFAULT (10u << 20)
#define FOLD_AT 76

bool bounce_wanted(const char *sender, unsigned notify, enum bounce_action action)
{
	if (sender == NULL || sender[0] == '\0')
		return false;
	if (notify & SMTP_NOTIFY_NEVER)
		return false;
	if (notify == 0)	/* RFC 3461 4.1: FAILURE, and DELAY at our discretion */
		return action == BOUNCE_FAILED || action == BOUNCE_DELAYED;
	switch (action) {
	case BOUNCE_FAILED:
		return (notify & SMTP_NOTIFY_FAILURE) != 0;
	case BOUNCE_DELAYED:
		return (notify & SMTP_NOTIFY_DELAY) != 0;
	default:
		return (notify & SMTP_NOTIFY_SUCCESS) != 0;
	}
}

void bounce_date(int64_t ms, char *dst, size_t size)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(dst, size, "%s, %d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7],
		 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour,
		 tm.tm_min, tm.tm_sec);
}

/* append_text - untrusted text as 7-bit: controls and 8-bit bytes become
 * '?', "\n" (a multi-line reply) and every FOLD_AT-ish columns break the
 * line with `fold` (CRLF and a space for a header, CRLF and indent in the
 * prose). Breaks prefer a space. */
static int append_text(struct buf *out, const char *s, size_t col, const char *fold)
{
	int err = 0;

	for (; s != NULL && *s != '\0' && err == 0; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '\n' || (ch == ' ' && col >= FOLD_AT)) {
			err = buf_append_str(out, fold);
			col = 1;
			continue;
		}
		if (col >= 900) {	/* no space for too long: force a break */
			if ((err = buf_append_str(out, fold)) < 0)
				break;
			col = 1;
		}
		char c = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch;
		err = buf_append(out, &c, 1);
		col++;
	}
	return err;
}

/* utf8_seq_len - the length of the valid UTF-8 sequence at s (RFC 3629),
 * 0 when it is not one. */
static size_t utf8_seq_len(const unsigned char *s)
{
	size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;

	if (s[0] >= 0xf5)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((n == 3 && s[0] == 0xe0 && s[1] < 0xa0) || (n == 3 && s[0] == 0xed && s[1] >= 0xa0) ||
	    (n == 4 && s[0] == 0xf0 && s[1] < 0x90) || (n == 4 && s[0] == 0xf4 && s[1] >= 0x90))
		return 0;
	return n;
}

/* append_utf8_address - RFC 6533 3: an address as utf-8-addr-unitext:
 * UTF-8 and printable ASCII as they are, '+', '=', '\\', blanks and
 * controls as \x{HEX} (EmbeddedUnicodeChar), invalid bytes as '?'. */
static int append_utf8_address(struct buf *out, const char *addr)
{
	const unsigned char *s = (const unsigned char *)addr;
	int err = 0;

	while (s != NULL && *s != '\0' && err == 0) {
		size_t n = *s >= 0x80 ? utf8_seq_len(s) : 1;
		if (*s >= 0x80 && n > 0) {
			err = buf_append(out, s, n);
			s += n;
			continue;
		}
		if (*s >= 0x80)
			err = buf_append(out, "?", 1);
		else if (*s <= 0x20 || *s == 0x7f || *s == '+' || *s == '=' || *s == '\\')
			err = buf_append_printf(out, "\\x{%02X}", *s);
		else
			err = buf_append(out, s, 1);
		s++;
	}
	return err;
}

/* append_address - an address in the report: 7-bit text, or under RFC
 * 6533 its UTF-8 form. */
static int append_address(const struct bounce_input *in, struct buf *out, const char *addr,
			  size_t col, const char *fold)
{
	return in->smtputf8 ? append_utf8_address(out, addr) : append_text(out, addr, col, fold);
}

static const char *action_name(enum bounce_action a)
{
	return a == BOUNCE_FAILED ? "failed" : a == BOUNCE_DELAYED ? "delayed" :
	       a == BOUNCE_RELAYED ? "relayed" : "delivered";
}

static const char *default_status(enum bounce_action a)
{
	return a == BOUNCE_FAILED ? "5.0.0" : a == BOUNCE_DELAYED ? "4.0.0" : "2.0.0";
}

/* worst_action - the report is about failures if any, else delays. */
static enum bounce_action worst_action(const struct bounce_input *in)
{
	enum bounce_action w = BOUNCE_DELIVERED;

	for (size_t i = 0; i < in->nrcpts; i++) {
		if (in->rcpts[i].action == BOUNCE_FAILED)
			return BOUNCE_FAILED;
		if (in->rcpts[i].action == BOUNCE_DELAYED)
			w = BOUNCE_DELAYED;
	}
	return w;
}

/* headers_len - the original's header section, with its blank line. */
static size_t headers_len(const char *m, size_t len)
{
	const char *p;

	if (len == 0)
		return 0;
	p = memmem(m, len, "\r\n\r\n", 4);

	if (p != NULL)
		return (size_t)(p - m) + 4;
	p = memmem(m, len, "\n\n", 2);
	return p != NULL ? (size_t)(p - m) + 2 : len;
}

/* append_header_block - the top-level header. */
static int append_header_block(const struct bounce_input *in, struct buf *out,
			       const char *boundary, enum bounce_action worst)
{
	char date[64];
	static const char *const subjects[] = {
		"Undelivered Mail Returned to Sender",
		"Delayed Mail (still being retried)",
		"Successful Mail Delivery Report",
	};

	bounce_date(in->now_ms, date, sizeof(date));
	int err = buf_append_printf(out,
		"From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
		"To: <", in->hostname);
	if (err == 0)
		err = append_address(in, out, in->sender, 6, " ");
	if (err == 0)
		err = buf_append_printf(out, ">\r\n"
		"Subject: %s\r\n"
		"Date: %s\r\n"
		"Message-ID: <%lld.%016llx@%s>\r\n"
		"Auto-Submitted: auto-generated\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/report; report-type=%s;\r\n"
		"\tboundary=\"%s\"\r\n"
		"Content-Transfer-Encoding: 8bit\r\n"
		"\r\n"
		"This is a MIME-encapsulated message.\r\n"
		"\r\n",
		subjects[worst], date, (long long)(in->now_ms / 1000),
		(unsigned long long)in->unique, in->hostname,
		in->smtputf8 ? "global-delivery-status" : "delivery-status", boundary);
	return err;
}

/* append_human - part 1: the explanation for a person. */
static int append_human(const struct bounce_input *in, struct buf *out,
			const char *boundary, enum bounce_action worst)
{
	static const char *const intros[] = {
		"I'm sorry to have to inform you that your message could not\r\n"
		"be delivered to one or more recipients. It's attached below.\r\n",
		"Your message could not be delivered yet to one or more recipients.\r\n"
		"It will be retried; you do not need to send it again.\r\n",
		"Your message was successfully delivered to the recipients below\r\n"
		"(\"relayed\": handed to a mail system that sends no further notices).\r\n",
	};
	int err = buf_append_printf(out, "--%s\r\n"
		"Content-Description: Notification\r\n"
		"Content-Type: text/plain; charset=%s\r\n"
		"\r\n"
		"This is the mail system at host %s.\r\n\r\n%s\r\n",
		boundary, in->smtputf8 ? "utf-8" : "us-ascii", in->hostname, intros[worst]);

	for (size_t i = 0; i < in->nrcpts && err == 0; i++) {
		const struct bounce_rcpt *r = &in->rcpts[i];
		err = buf_append_str(out, "<");
		if (err == 0)
			err = append_address(in, out, r->addr, 1, "\r\n    ");
		if (err == 0)
			err = buf_append_printf(out, ">: %s", action_name(r->action));
		if (err == 0 && r->remote_mta != NULL) {
			err = buf_append_str(out, ", host ");
			if (err == 0)
				err = append_text(out, r->remote_mta, 20, "\r\n    ");
			if (err == 0 && r->code > 0)
				err = buf_append_str(out, " said");
		}
		if (err == 0 && r->diagnostic != NULL) {
			err = r->code > 0 ? buf_append_printf(out, ":\r\n    %d %s ", r->code,
				r->status != NULL ? r->status : default_status(r->action))
				: buf_append_str(out, ":\r\n    ");
			if (err == 0)
				err = append_text(out, r->diagnostic, 14, "\r\n    ");
		}
		if (err == 0 && r->category != NULL)
			err = buf_append_printf(out, "\r\n    (category: %s)", r->category);
		if (err == 0)
			err = buf_append_str(out, "\r\n\r\n");
	}
	return err;
}

/* append_field_text - "Name: prefix" then folded untrusted text. */
static int append_field_text(struct buf *out, const char *name, const char *prefix,
			     const char *text)
{
	int err = buf_append_printf(out, "%s: %s", name, prefix);

	if (err == 0)
		err = append_text(out, text, strlen(name) + 2 + strlen(prefix), "\r\n ");
	if (err == 0)
		err = buf_append_str(out, "\r\n");
	return err;
}

/* append_rcpt_fields - one per-recipient block of the delivery-status. */
static int append_rcpt_fields(const struct bounce_input *in, struct buf *out,
			      const struct bounce_rcpt *r)
{
	char date[64];
	int err = buf_append_str(out, "\r\n");

	if (err == 0 && r->orcpt != NULL)
		err = append_field_text(out, "Original-Recipient", "", r->orcpt);
	if (err == 0 && in->smtputf8) {
		err = buf_append_str(out, "Final-Recipient: utf-8; ");
		if (err == 0)
			err = append_utf8_address(out, r->addr);
		if (err == 0)
			err = buf_append_str(out, "\r\n");
	} else if (err == 0) {
		err = append_field_text(out, "Final-Recipient", "rfc822; ", r->addr);
	}
	if (err == 0)
		err = buf_append_printf(out, "Action: %s\r\nStatus: ", action_name(r->action));
	if (err == 0)
		err = append_text(out, r->status != NULL ? r->status : default_status(r->action),
				  8, " ");
	if (err == 0)
		err = buf_append_str(out, "\r\n");
	if (err == 0 && r->remote_mta != NULL)
		err = append_field_text(out, "Remote-MTA", "dns; ", r->remote_mta);
	if (err == 0 && r->diagnostic != NULL) {
		char prefix[48];
		if (r->code > 0)
			snprintf(prefix, sizeof(prefix), "smtp; %d %s ", r->code,
				 r->status != NULL ? r->status : default_status(r->action));
		else
			snprintf(prefix, sizeof(prefix), "X-ringmail; ");
		err = append_field_text(out, "Diagnostic-Code", prefix, r->diagnostic);
	}
	if (err == 0 && r->category != NULL)
		err = buf_append_printf(out, "X-Ringmail-Bounce-Category: %s\r\n", r->category);
	if (err == 0 && r->last_attempt_ms > 0) {
		bounce_date(r->last_attempt_ms, date, sizeof(date));
		err = buf_append_printf(out, "Last-Attempt-Date: %s\r\n", date);
	}
	if (err == 0 && r->action == BOUNCE_DELAYED && r->retry_until_ms > 0) {
		bounce_date(r->retry_until_ms, date, sizeof(date));
		err = buf_append_printf(out, "Will-Retry-Until: %s\r\n", date);
	}
	return err;
}

/* append_status - part 2: the machine-readable report. */
static int append_status(const struct bounce_input *in, struct buf *out,
			 const char *boundary)
{
	char date[64];
	int err = buf_append_printf(out, "--%s\r\n"
		"Content-Description: Delivery report\r\n"
		"Content-Type: message/%sdelivery-status\r\n"
		"\r\n"
		"Reporting-MTA: dns; %s\r\n", boundary, in->smtputf8 ? "global-" : "", in->hostname);

	if (err == 0 && in->envid != NULL)
		err = append_field_text(out, "Original-Envelope-Id", "", in->envid);
	if (err == 0 && in->arrival_ms > 0) {
		bounce_date(in->arrival_ms, date, sizeof(date));
		err = buf_append_printf(out, "Arrival-Date: %s\r\n", date);
	}
	for (size_t i = 0; i < in->nrcpts && err == 0; i++)
		err = append_rcpt_fields(in, out, &in->rcpts[i]);
	if (err == 0)
		err = buf_append_str(out, "\r\n");
	return err;
}

/* append_original - part 3: the message, or only its header. */
static int append_original(const struct bounce_input *in, struct buf *out,
			   const char *boundary, enum bounce_action worst)
{
	size_t max = in->max_original > 0 ? in->max_original : BOUNCE_MAX_ORIGINAL_DEFAULT;
	bool failed = worst == BOUNCE_FAILED;
	bool full = (failed ? in->ret != SMTP_RET_HDRS : in->ret == SMTP_RET_FULL) &&
		    in->message_len <= max;
	size_t len = full ? in->message_len : headers_len(in->message, in->message_len);
	const char *type = full ? (in->smtputf8 ? "message/global" : "message/rfc822")
				: (in->smtputf8 ? "message/global-headers" : "text/rfc822-headers");
	int err = buf_append_printf(out, "--%s\r\n"
		"Content-Description: %s%s\r\n"
		"Content-Type: %s\r\n"
		"%s"
		"\r\n", boundary,
		failed ? "Undelivered Message" : "Message", full ? "" : " Headers", type,
		full ? "Content-Transfer-Encoding: 8bit\r\n" : "");

	if (err == 0)
		err = buf_append(out, in->message, len);
	if (err == 0 && (len < 2 || memcmp(in->message + len - 2, "\r\n", 2) != 0))
		err = buf_append_str(out, "\r\n");
	if (err == 0)
		err = buf_append_printf(out, "\r\n--%s--\r\n", boundary);
	return err;
}

int bounce_build(const struct bounce_input *in, struct buf *out)
{
	char boundary[64];
	uint64_t u = in->unique;

	if (in->nrcpts == 0 || in->rcpts == NULL || in->sender == NULL ||
	    in->sender[0] == '\0' || in->hostname == NULL ||
	    (in->message == NULL && in->message_len > 0))
		return -EINVAL;
	/* A boundary must not occur in the body: pick another if it does. */
	do {
		snprintf(boundary, sizeof(boundary), "=_ringmail_%016llx",
			 (unsigned long long)u++);
	} while (in->message_len > 0 &&
		 memmem(in->message, in->message_len, boundary, strlen(boundary)) != NULL);

	enum bounce_action worst = worst_action(in);
	size_t saved_len = out->len;
	int err = append_header_block(in, out, boundary, worst);
	if (err == 0)
		err = append_human(in, out, boundary, worst);
	if (err == 0)
		err = append_status(in, out, boundary);
	if (err == 0 && in->redacted)
		err = buf_append_printf(out, "--%s--\r\n", boundary);
	else if (err == 0)
		err = append_original(in, out, boundary, worst);
	if (err < 0)
		out->len = saved_len;
	return err;
}
