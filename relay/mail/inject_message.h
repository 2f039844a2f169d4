/*
 * inject_message - turn the content of an HTTP injection into message
 * bytes as the spool keeps them (what an SMTP client would have sent
 * after DATA, unstuffed): pure functions over struct buf.
 *
 *   inject_substitute(text, len, subs..., &out)      "{{ name }}" -> value
 *   inject_message_normalize(raw, len, line_max, &out)  CRLF everywhere
 *
 * Substitutions: "{{name}}" or "{{ name }}" (spaces optional) becomes the
 * value of the first list that names it: the recipient's own, then the
 * request's. A placeholder that no list names stays as written, so a
 * typo is visible in the mail rather than silently blank.
 */
#ifndef RINGMAIL_INJECT_MESSAGE_H
#define RINGMAIL_INJECT_MESSAGE_H

#include <stddef.h>

#include "buf.h"
#include "inject_request.h"

/* inject_substitute - append text with its placeholders replaced to out.
 * 0, or -ENOBUFS when out's cap is reached. */
int inject_substitute(const char *text, size_t len, const struct inject_substitution *own,
		      size_t own_count, const struct inject_substitution *common, size_t common_count,
		      struct buf *out);

/* inject_message_normalize - append raw to out with every line ending
 * (LF, CR or CRLF) made CRLF and a final CRLF added when missing.
 * Returns 0, -E2BIG when a line (CRLF included) is longer than line_max
 * (RFC 5321 4.5.3.1.6: 1000), -EBADMSG when its first line is not a
 * header field ("Name: value"), or -ENOBUFS when out's cap is reached
 * (the message is too large). */
int inject_message_normalize(const char *raw, size_t len, size_t line_max, struct buf *out);

#endif
