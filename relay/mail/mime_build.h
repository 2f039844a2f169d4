/*
 * mime_build - a complete RFC 5322 / MIME message from the structured
 * "content" of an HTTP injection (inject_request.h). Pure: the caller
 * passes the time, host name and a unique part for Message-ID.
 *
 *   struct mime_build_params p = { .hostname = "relay.example", .now = time(NULL),
 *                                  .unique = queue_id, .to = "Ann <a@example.net>" };
 *   rc = mime_build(&q->content, &p, own_subs, n, common_subs, m, &out);
 *
 * Structure, as mail clients expect it:
 *   text only or html only        a single part
 *   text and html                 multipart/alternative
 *   with attachments              multipart/mixed: the body (one of the
 *                                 above) first, then each attachment
 * Encodings: a text part that is 7-bit with short lines goes as it is;
 * otherwise quoted-printable (RFC 2045 6.7), charset utf-8. Attachments
 * are base64 (RFC 2045 6.8) in 76-column lines. Header values with
 * non-ASCII (Subject, display names, file names) become RFC 2047 encoded
 * words (B encoding, utf-8), folded so that no line exceeds 78 columns;
 * file names are also given as RFC 2231 filename*=utf-8''... .
 * Message-ID (<unique.now@hostname>), Date, MIME-Version are added unless
 * content.headers names them; From, To, Reply-To, Subject come from the
 * content (To from params). Substitutions apply to the subject and both
 * bodies (inject_message.h). Lines end in CRLF.
 *
 * Returns 0, -ENOBUFS when out's cap is reached, -EINVAL when a
 * substituted subject holds CR or LF.
 */
#ifndef RINGMAIL_MIME_BUILD_H
#define RINGMAIL_MIME_BUILD_H

#include <stdint.h>

#include "buf.h"
#include "inject_request.h"

struct mime_build_params {
	const char *hostname;              /* right side of Message-ID */
	int64_t now;                       /* unix seconds: Date, Message-ID */
	const char *unique;                /* unique per message (a queue id) */
	const char *to;                    /* To: value, already formatted; NULL: none */
};

int mime_build(const struct inject_content *c, const struct mime_build_params *p,
	       const struct inject_substitution *own, size_t own_count,
	       const struct inject_substitution *common, size_t common_count, struct buf *out);

/* mime_encode_word - value as a header value: as it is when printable
 * ASCII without a run of over 70 octets free of spaces, else RFC 2047
 * encoded words of at most 75 octets separated by
 * CRLF SP. Appends to out. */
int mime_encode_word(const char *value, struct buf *out);

/* mime_format_address - "name <email>" for a header: the name quoted
 * (RFC 5322 quoted-string) or encoded when needed; just "email" without
 * a name. */
int mime_format_address(const char *name, const char *email, struct buf *out);

#endif
