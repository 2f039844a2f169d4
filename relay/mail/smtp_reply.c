/*
 * smtp_reply - incremental SMTP reply parser; see smtp_reply.h.
 *
 * Bytes are collected into one line at a time (bounded by max_line); each
 * complete line is checked and appended to the reply under construction.
 * Nothing is allocated, so a hostile server can cost us at most the fixed
 * struct and the CPU to read its bytes.
 */
#include "smtp_reply.h"

#include <errno.h>
#include <string.h>

void smtp_reply_parser_init(struct smtp_reply_parser *p, size_t max_line,
			    unsigned max_lines)
{
	if (max_line == 0 || max_line > SMTP_REPLY_LINE_MAX)
		max_line = max_line == 0 ? SMTP_REPLY_LINE_DEFAULT : SMTP_REPLY_LINE_MAX;
	p->max_line = max_line;
	p->max_lines = max_lines != 0 ? max_lines : SMTP_REPLY_LINES_DEFAULT;
	p->error = 0;
	p->line_len = 0;
	p->done = false;
	p->reply.code = 0;
	p->reply.enhanced[0] = '\0';
	p->reply.lines = 0;
	p->reply.text_len = 0;
	p->reply.text[0] = '\0';
}

bool smtp_reply_pending(const struct smtp_reply_parser *p)
{
	return !p->done && (p->line_len > 0 || p->reply.lines > 0);
}

/* digits - count 1..max decimal digits at s[i]; 0 if none or too many. */
static size_t digits(const char *s, size_t len, size_t i, size_t max)
{
	size_t n = 0;

	while (i + n < len && s[i + n] >= '0' && s[i + n] <= '9')
		n++;
	return n >= 1 && n <= max ? n : 0;
}

/* smtp_enhanced_parse - RFC 3463: class "." 1*3digit "." 1*3digit, where
 * class is 2, 4 or 5. */
size_t smtp_enhanced_parse(const char *s, size_t len)
{
	size_t i = 0, n;

	if (len < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	i = 2;
	if ((n = digits(s, len, i, 3)) == 0)
		return 0;
	i += n;
	if (i >= len || s[i] != '.')
		return 0;
	i++;
	if ((n = digits(s, len, i, 3)) == 0)
		return 0;
	i += n;
	if (i < len && s[i] != ' ')
		return 0;
	return i;
}

/* reply_add_text - append one line's text, joined with "\n", truncating
 * silently at the text cap: the text is for humans and logs. */
static void reply_add_text(struct smtp_reply *r, const char *t, size_t n)
{
	size_t room;

	if (r->lines > 1 && r->text_len < SMTP_REPLY_TEXT_MAX)
		r->text[r->text_len++] = '\n';
	room = SMTP_REPLY_TEXT_MAX - r->text_len;
	if (n > room)
		n = room;
	memcpy(r->text + r->text_len, t, n);
	r->text_len += n;
	r->text[r->text_len] = '\0';
}

/* reply_enhanced - on the first line, take the enhanced code if its class
 * matches the reply code (RFC 3463 section 2); on every line, strip the same
 * code so the text reads as prose. Returns how many bytes of t to skip. */
static size_t reply_enhanced(struct smtp_reply *r, const char *t, size_t n)
{
	size_t elen = smtp_enhanced_parse(t, n);

	if (elen == 0)
		return 0;
	if (r->lines == 1) {
		if (t[0] - '0' != r->code / 100 || elen >= SMTP_REPLY_ENHANCED_MAX)
			return 0;
		memcpy(r->enhanced, t, elen);
		r->enhanced[elen] = '\0';
	} else if (strlen(r->enhanced) != elen || memcmp(r->enhanced, t, elen) != 0) {
		return 0;
	}
	return elen < n ? elen + 1 : elen;
}

/* parse_line - check one complete line (without its line ending) and add
 * it to the reply. Returns 1 if it was the last line, 0 if more follow. */
static int parse_line(struct smtp_reply_parser *p, const char *s, size_t n)
{
	struct smtp_reply *r = &p->reply;

	if (n < 3 || s[0] < '2' || s[0] > '5' || s[1] < '0' || s[1] > '5' ||
	    s[2] < '0' || s[2] > '9' || (n > 3 && s[3] != ' ' && s[3] != '-'))
		return -EPROTO;
	int code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
	if (r->lines > 0 && code != r->code)
		return -EPROTO;
	if (r->lines >= p->max_lines)
		return -EMSGSIZE;
	r->code = code;
	r->lines++;
	bool last = n == 3 || s[3] == ' ';
	const char *t = n > 4 ? s + 4 : s + n;
	size_t tlen = n > 4 ? n - 4 : 0;
	size_t skip = reply_enhanced(r, t, tlen);
	reply_add_text(r, t + skip, tlen - skip);
	return last ? 1 : 0;
}

/* start_reply - forget the previous reply once the caller has seen it. */
static void start_reply(struct smtp_reply_parser *p)
{
	if (!p->done)
		return;
	p->done = false;
	p->reply.code = 0;
	p->reply.enhanced[0] = '\0';
	p->reply.lines = 0;
	p->reply.text_len = 0;
	p->reply.text[0] = '\0';
}

int smtp_reply_parse(struct smtp_reply_parser *p, const char *in, size_t len,
		     size_t *used, const struct smtp_reply **reply)
{
	size_t i = 0;

	*used = 0;
	*reply = NULL;
	if (p->error < 0)
		return p->error;
	start_reply(p);
	while (i < len) {
		char c = in[i++];
		if (c != '\n') {
			/* Room for max_line bytes plus a CR that we strip later. */
			if (p->line_len >= p->max_line + 1) {
				*used = i;
				return p->error = -EMSGSIZE;
			}
			p->line[p->line_len++] = c;
			continue;
		}
		size_t n = p->line_len;
		if (n > 0 && p->line[n - 1] == '\r')
			n--;
		p->line_len = 0;
		if (n > p->max_line) {
			*used = i;
			return p->error = -EMSGSIZE;
		}
		int rc = parse_line(p, p->line, n);
		if (rc < 0) {
			*used = i;
			return p->error = rc;
		}
		if (rc == 1) {
			*used = i;
			p->done = true;
			*reply = &p->reply;
			return 1;
		}
	}
	*used = i;
	return 0;
}
