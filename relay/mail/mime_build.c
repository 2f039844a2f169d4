/*
 * mime_build - MIME messages from structured content; see mime_build.h.
 *
 * Every append goes to one struct buf whose cap is the message size
 * limit, so a huge request fails with -ENOBUFS instead of growing us;
 * the appends' results are gathered in a sticky error (struct out) so
 * the building code reads as the message it writes.
 */
#include "mime_build.h"

#include <errno.h>
#include <inttypes.h>
#include <mbedtls/base64.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "inject_message.h"

#define LINE_MAX_COLS 78            /* RFC 5322 2.1.1: should */
#define QP_COLS 76                  /* RFC 2045 6.7 (5) */
#define B64_LINE_BYTES 57           /* 76 base64 columns */
#define WORD_BYTES 45               /* 60 base64 chars + 12 = 72 <= 75 */

struct out {
	struct buf *b;
	int err;
};

static void put(struct out *o, const void *p, size_t n)
{
	if (o->err == 0 && buf_append(o->b, p, n) < 0)
		o->err = -ENOBUFS;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static bool is_printable_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 32 || (unsigned char)*s > 126)
			return false;
	return true;
}

/* utf8_back - the largest n' <= n such that s[0..n') ends on a UTF-8
 * character boundary. */
static size_t utf8_back(const char *s, size_t n, size_t len)
{
	while (n > 0 && n < len && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return n;
}

/* has_long_word - a run of more than 70 octets without a space: folding
 * could not keep its line within 78 (or even 998) octets. */
static bool has_long_word(const char *s)
{
	size_t run = 0;
	for (; *s; s++) {
		run = *s == ' ' ? 0 : run + 1;
		if (run > 70)
			return true;
	}
	return false;
}

int mime_encode_word(const char *value, struct buf *out)
{
	struct out o = { out, 0 };
	size_t len = strlen(value);

	if (is_printable_ascii(value) && !has_long_word(value))
		return buf_append(out, value, len) < 0 ? -ENOBUFS : 0;
	for (size_t i = 0; i < len;) {
		size_t n = len - i < WORD_BYTES ? len - i : WORD_BYTES;
		size_t cut = utf8_back(value + i, n, len - i);
		if (cut == 0)
			cut = n;        /* not UTF-8: cut anywhere */
		unsigned char enc[WORD_BYTES / 3 * 4 + 8];
		size_t elen = 0;
		mbedtls_base64_encode(enc, sizeof(enc), &elen, (const unsigned char *)value + i, cut);
		if (i > 0)
			puts_(&o, " ");
		puts_(&o, "=?utf-8?B?");
		put(&o, enc, elen);
		puts_(&o, "?=");
		i += cut;
	}
	return o.err;
}

/* needs_quoting - an ASCII display name with RFC 5322 specials. */
static bool needs_quoting(const char *s)
{
	return strpbrk(s, "()<>[]:;@\\,.\"") != NULL;
}

int mime_format_address(const char *name, const char *email, struct buf *out)
{
	struct out o = { out, 0 };

	if (name == NULL || name[0] == '\0') {
		puts_(&o, email);
		return o.err;
	}
	if (!is_printable_ascii(name) || has_long_word(name)) {
		if (mime_encode_word(name, out) < 0)
			return -ENOBUFS;
	} else if (needs_quoting(name)) {
		puts_(&o, "\"");
		for (const char *p = name; *p; p++) {
			if (*p == '"' || *p == '\\')
				puts_(&o, "\\");
			put(&o, p, 1);
		}
		puts_(&o, "\"");
	} else {
		puts_(&o, name);
	}
	puts_(&o, " <");
	puts_(&o, email);
	puts_(&o, ">");
	return o.err;
}

/* put_header - "Name: value" folded at spaces to keep lines within 78
 * columns where the value allows (a longer word stays whole). */
static void put_header(struct out *o, const char *name, const char *value)
{
	size_t col = strlen(name) + 2;
	const char *p = value;

	puts_(o, name);
	puts_(o, ": ");
	while (*p) {
		const char *sp = strchr(p + 1, ' ');
		size_t word = sp != NULL ? (size_t)(sp - p) : strlen(p);
		if (col + word > LINE_MAX_COLS && p != value && *p == ' ') {
			puts_(o, "\r\n");
			col = 0;
		}
		put(o, p, word);
		col += word;
		p += word;
	}
	puts_(o, "\r\n");
}

/* put_encoded_header - put_header with the value as encoded words when
 * it is not plain ASCII. */
static void put_encoded_header(struct out *o, const char *name, const char *value)
{
	struct buf v;

	buf_init(&v, 1 << 20);
	if (mime_encode_word(value, &v) < 0 || buf_append(&v, "", 1) < 0)
		o->err = -ENOBUFS;
	else
		put_header(o, name, buf_data(&v));
	buf_free(&v);
}

static void put_address_header(struct out *o, const char *name, const struct inject_address *a)
{
	struct buf v;

	buf_init(&v, 1 << 20);
	if (mime_format_address(a->name, a->email, &v) < 0 || buf_append(&v, "", 1) < 0)
		o->err = -ENOBUFS;
	else
		put_header(o, name, buf_data(&v));
	buf_free(&v);
}

/* text_is_7bit - may the text go as it is: ASCII, lines <= 78 octets,
 * no bare CR, nothing that looks like our boundaries? */
static bool text_is_7bit(const char *s, size_t len)
{
	size_t col = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 128 || ch == 0 || (ch == '\r' && (i + 1 >= len || s[i + 1] != '\n')))
			return false;
		if (ch == '\n') {
			col = 0;
			continue;
		}
		if (ch != '\r' && ++col > LINE_MAX_COLS)
			return false;
	}
	return memmem(s, len, "=_rm_", 5) == NULL;
}

/* put_text_7bit - the text with line ends made CRLF, then one CRLF more:
 * the one a following boundary delimiter takes as its own (RFC 2046
 * 5.1.1), so that a text ending in a line break keeps it. */
static void put_text_7bit(struct out *o, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r')
			continue;
		if (s[i] == '\n')
			puts_(o, "\r\n");
		else
			put(o, &s[i], 1);
	}
	puts_(o, "\r\n");
}

/* put_text_qp - quoted-printable (RFC 2045 6.7): line breaks of the text
 * (LF, CRLF) are hard breaks, soft breaks keep lines within 76; the
 * final CRLF is the delimiter's, as in put_text_7bit. */
static void put_text_qp(struct out *o, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t col = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '\r' && i + 1 < len && s[i + 1] == '\n')
			continue;
		if (ch == '\n') {
			puts_(o, "\r\n");
			col = 0;
			continue;
		}
		bool at_eol = i + 1 == len || s[i + 1] == '\n' || (s[i + 1] == '\r' && i + 2 < len && s[i + 2] == '\n');
		char enc[3];
		size_t n = 1;
		if ((ch >= 33 && ch <= 126 && ch != '=') || ((ch == ' ' || ch == '\t') && !at_eol)) {
			enc[0] = (char)ch;
		} else {
			enc[0] = '=';
			enc[1] = hex[ch >> 4];
			enc[2] = hex[ch & 15];
			n = 3;
		}
		if (col + n > QP_COLS - 1) {       /* room for the soft break's '=' */
			puts_(o, "=\r\n");
			col = 0;
		}
		put(o, enc, n);
		col += n;
	}
	puts_(o, "\r\n");
}

static void put_base64(struct out *o, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i += B64_LINE_BYTES) {
		size_t n = len - i < B64_LINE_BYTES ? len - i : B64_LINE_BYTES;
		unsigned char enc[B64_LINE_BYTES / 3 * 4 + 4];
		size_t elen = 0;
		mbedtls_base64_encode(enc, sizeof(enc), &elen, (const unsigned char *)data + i, n);
		put(o, enc, elen);
		puts_(o, "\r\n");
	}
}

/* put_text_part - one text/plain or text/html part, headers and body. */
static void put_text_part(struct out *o, const char *subtype, const char *text, size_t len)
{
	bool plain = text_is_7bit(text, len);

	puts_(o, "Content-Type: text/");
	puts_(o, subtype);
	puts_(o, plain ? "; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
		       : "; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
	if (plain)
		put_text_7bit(o, text, len);
	else
		put_text_qp(o, text, len);
}

/* put_param - a MIME parameter: quoted when ASCII, RFC 2231 otherwise
 * (name*=utf-8''percent-encoded). */
static void put_param(struct out *o, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";

	if (is_printable_ascii(value) && strpbrk(value, "\"\\") == NULL) {
		char line[64];
		snprintf(line, sizeof(line), ";\r\n %s=\"", name);
		puts_(o, line);
		puts_(o, value);
		puts_(o, "\"");
		return;
	}
	puts_(o, ";\r\n ");
	puts_(o, name);
	puts_(o, "*=utf-8''");
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~", *p) != NULL) {
			put(o, p, 1);
		} else {
			char enc[3] = { '%', hex[*p >> 4], hex[*p & 15] };
			put(o, enc, 3);
		}
	}
}

static void put_attachment(struct out *o, const struct inject_attachment *a)
{
	puts_(o, "Content-Type: ");
	puts_(o, a->content_type);
	if (a->file_name != NULL)
		put_param(o, "name", a->file_name);
	puts_(o, "\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: ");
	puts_(o, a->content_id != NULL ? "inline" : "attachment");
	if (a->file_name != NULL)
		put_param(o, "filename", a->file_name);
	puts_(o, "\r\n");
	if (a->content_id != NULL) {
		puts_(o, "Content-ID: <");
		puts_(o, a->content_id);
		puts_(o, ">\r\n");
	}
	puts_(o, "\r\n");
	put_base64(o, a->data, a->len);
}

/* put_body - text, html, or both as multipart/alternative. */
static void put_body(struct out *o, const struct buf *text, const struct buf *html, const char *boundary)
{
	if (text == NULL || html == NULL) {
		const struct buf *only = text != NULL ? text : html;
		put_text_part(o, text != NULL ? "plain" : "html", buf_data(only), buf_len(only));
		return;
	}
	puts_(o, "Content-Type: multipart/alternative;\r\n boundary=\"");
	puts_(o, boundary);
	puts_(o, "\"\r\n\r\n--");
	puts_(o, boundary);
	puts_(o, "\r\n");
	put_text_part(o, "plain", buf_data(text), buf_len(text));
	puts_(o, "--");
	puts_(o, boundary);
	puts_(o, "\r\n");
	put_text_part(o, "html", buf_data(html), buf_len(html));
	puts_(o, "--");
	puts_(o, boundary);
	puts_(o, "--\r\n");
}

/* custom_header - does content.headers name this field? */
static bool custom_header(const struct inject_content *c, const char *name)
{
	for (size_t i = 0; i < c->header_count; i++)
		if (strcasecmp(c->headers[i].name, name) == 0)
			return true;
	return false;
}

/* put_headers - the message's header section, before the MIME fields. */
static void put_headers(struct out *o, const struct inject_content *c, const struct mime_build_params *p,
			const struct buf *subject)
{
	char line[512];
	time_t now = (time_t)p->now;
	struct tm tm;

	if (!custom_header(c, "Date")) {
		gmtime_r(&now, &tm);
		strftime(line, sizeof(line), "Date: %a, %d %b %Y %H:%M:%S +0000\r\n", &tm);
		puts_(o, line);
	}
	if (!custom_header(c, "Message-ID")) {
		snprintf(line, sizeof(line), "Message-ID: <%s.%" PRId64 "@%s>\r\n", p->unique, p->now, p->hostname);
		puts_(o, line);
	}
	if (!custom_header(c, "From"))
		put_address_header(o, "From", &c->from);
	if (p->to != NULL && !custom_header(c, "To"))
		put_header(o, "To", p->to);
	if (c->reply_to.email != NULL && !custom_header(c, "Reply-To"))
		put_address_header(o, "Reply-To", &c->reply_to);
	if (subject != NULL && !custom_header(c, "Subject"))
		put_encoded_header(o, "Subject", buf_data(subject));
	for (size_t i = 0; i < c->header_count; i++)
		put_encoded_header(o, c->headers[i].name, c->headers[i].value);
	if (!custom_header(c, "MIME-Version"))
		puts_(o, "MIME-Version: 1.0\r\n");
}

/* substitute - s with placeholders replaced, NUL-terminated, into b. */
static int substitute(const char *s, const struct inject_substitution *own, size_t own_count,
		      const struct inject_substitution *common, size_t common_count, struct buf *b)
{
	if (inject_substitute(s, strlen(s), own, own_count, common, common_count, b) < 0 ||
	    buf_append(b, "", 1) < 0)
		return -ENOBUFS;
	buf_truncate(b, buf_len(b) - 1);       /* keep the NUL past the end */
	return 0;
}

int mime_build(const struct inject_content *c, const struct mime_build_params *p,
	       const struct inject_substitution *own, size_t own_count,
	       const struct inject_substitution *common, size_t common_count, struct buf *out)
{
	struct out o = { out, 0 };
	struct buf subject, text, html;
	char mixed[96], alternative[96];

	buf_init(&subject, out->max);
	buf_init(&text, out->max);
	buf_init(&html, out->max);
	if ((c->subject != NULL && substitute(c->subject, own, own_count, common, common_count, &subject) < 0) ||
	    (c->text_body != NULL && substitute(c->text_body, own, own_count, common, common_count, &text) < 0) ||
	    (c->html_body != NULL && substitute(c->html_body, own, own_count, common, common_count, &html) < 0))
		o.err = -ENOBUFS;
	else if (c->subject != NULL && strpbrk(buf_data(&subject), "\r\n") != NULL)
		o.err = -EINVAL;
	snprintf(mixed, sizeof(mixed), "=_rm_%s_m", p->unique);
	snprintf(alternative, sizeof(alternative), "=_rm_%s_a", p->unique);
	if (o.err == 0) {
		put_headers(&o, c, p, c->subject != NULL ? &subject : NULL);
		const struct buf *t = c->text_body != NULL ? &text : NULL;
		const struct buf *h = c->html_body != NULL ? &html : NULL;
		if (c->attachment_count == 0) {
			put_body(&o, t, h, alternative);
		} else {
			puts_(&o, "Content-Type: multipart/mixed;\r\n boundary=\"");
			puts_(&o, mixed);
			puts_(&o, "\"\r\n\r\nThis is a multi-part message in MIME format.\r\n");
			puts_(&o, "--");
			puts_(&o, mixed);
			puts_(&o, "\r\n");
			put_body(&o, t, h, alternative);
			for (size_t i = 0; i < c->attachment_count; i++) {
				puts_(&o, "--");
				puts_(&o, mixed);
				puts_(&o, "\r\n");
				put_attachment(&o, &c->attachments[i]);
			}
			puts_(&o, "--");
			puts_(&o, mixed);
			puts_(&o, "--\r\n");
		}
	}
	buf_free(&subject);
	buf_free(&text);
	buf_free(&html);
	return o.err;
}
