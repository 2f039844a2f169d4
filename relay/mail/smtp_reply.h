/*
 * smtp_reply - incremental parser for SMTP replies (RFC 5321 4.2).
 *
 *   struct smtp_reply_parser p;
 *   smtp_reply_parser_init(&p, 0, 0);          // defaults for the limits
 *   while (len > 0) {
 *       size_t used;
 *       const struct smtp_reply *r;
 *       int rc = smtp_reply_parse(&p, in, len, &used, &r);
 *       in += used; len -= used;
 *       if (rc < 0) ... protocol error, give up the connection
 *       if (rc == 0) break;                     // need more bytes
 *       ... use r (valid until the next call on p) ...
 *   }
 *
 * Input may arrive in fragments of any size. A reply is one or more lines
 * "ddd-text" ending with a line "ddd text" or "ddd"; all lines must carry the
 * same code. Lines end with CRLF; a bare LF is accepted too (lenient, as most
 * clients are). The RFC 3463 enhanced status code ("5.1.1") at the start of
 * the first line's text is extracted when its class matches the reply's
 * first digit; it is removed from the text of every line that repeats it.
 * The text of the lines is joined with "\n"; it is truncated (not an error)
 * at SMTP_REPLY_TEXT_MAX bytes.
 *
 * Errors (the parser stays failed; re-init to reuse):
 *   -EPROTO   a line that is not a reply line, or a code change mid-reply
 *   -EMSGSIZE a line longer than max_line, or more than max_lines lines
 * The parser owns its storage; no allocation, no logging: safe to fuzz.
 */
#ifndef RINGMAIL_SMTP_REPLY_H
#define RINGMAIL_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_REPLY_LINE_MAX 2048	/* hard bound for max_line */
#define SMTP_REPLY_LINE_DEFAULT 2048	/* RFC says 512; real servers exceed it */
#define SMTP_REPLY_LINES_DEFAULT 100
#define SMTP_REPLY_TEXT_MAX 4096
#define SMTP_REPLY_ENHANCED_MAX 12	/* "5.123.123" plus NUL, rounded */

struct smtp_reply {
	int code;				/* 200..599 */
	char enhanced[SMTP_REPLY_ENHANCED_MAX];	/* "" when absent */
	unsigned lines;				/* lines in this reply */
	size_t text_len;
	char text[SMTP_REPLY_TEXT_MAX + 1];	/* NUL-terminated, lines joined by \n */
};

struct smtp_reply_parser {
	size_t max_line;	/* bytes per line, excluding CRLF */
	unsigned max_lines;
	int error;		/* sticky: 0 or -errno */
	size_t line_len;
	bool done;		/* last call returned a reply: start afresh */
	struct smtp_reply reply;
	char line[SMTP_REPLY_LINE_MAX + 2];
};

/* smtp_reply_parser_init - reset; 0 for a limit means its default. */
void smtp_reply_parser_init(struct smtp_reply_parser *p, size_t max_line,
			    unsigned max_lines);

/* smtp_reply_parse - consume bytes up to the end of the next reply.
 * Sets *used to the bytes consumed. Returns 1 with *reply set when a reply
 * is complete (bytes after it are left unconsumed), 0 when all input was
 * consumed without completing one, or a negative error (see above). */
int smtp_reply_parse(struct smtp_reply_parser *p, const char *in, size_t len,
		     size_t *used, const struct smtp_reply **reply);

/* smtp_reply_pending - true when part of a reply has been received. */
bool smtp_reply_pending(const struct smtp_reply_parser *p);

/* smtp_reply_class - 2, 3, 4 or 5: the first digit of the code. */
static inline int smtp_reply_class(const struct smtp_reply *r)
{
	return r->code / 100;
}

/* smtp_enhanced_parse - length of an RFC 3463 code "c.s.d" at the start of
 * s (followed by a space or the end of s), or 0 if there is none. */
size_t smtp_enhanced_parse(const char *s, size_t len);

#endif
