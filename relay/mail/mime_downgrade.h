/*
 * mime_downgrade - make an 8-bit message 7-bit for a next hop that does not
 * offer 8BITMIME (RFC 6152 section 3), the way Postfix does by default:
 * every leaf MIME part whose body has 8-bit bytes is re-encoded as
 * quoted-printable (RFC 2045 6.7) and its Content-Transfer-Encoding header
 * says so. Pure: bytes in, bytes out.
 *
 *   struct buf out;
 *   buf_init(&out, limit);
 *   const char *why;
 *   if (mime_has_8bit(body, len)) {
 *       int rc = mime_downgrade(body, len, &out, &why);
 *       if (rc < 0) ... refuse the message: why says what could not be done
 *   }
 *
 * The rules:
 * - Headers stay exactly as they are, at every level (a header with 8-bit
 *   bytes is only legal under SMTPUTF8, and a next hop that takes SMTPUTF8
 *   also takes 8BITMIME). Only the Content-Transfer-Encoding field of a
 *   converted part changes; one is added when the part had none, and a
 *   top-level "MIME-Version: 1.0" is added when a converted message lacked it.
 * - multipart/x: each part is handled on its own, nested to
 *   MIME_DOWNGRADE_MAX_DEPTH levels; delimiters, preamble and epilogue are
 *   copied (8-bit bytes in a preamble or epilogue cannot be encoded: error).
 *   The default type inside multipart/digest is message/rfc822.
 * - A leaf part whose body is 7-bit is copied byte for byte. One with 8-bit
 *   bytes and no encoding, 7bit or 8bit is encoded; one declared base64,
 *   quoted-printable or binary cannot be (error: the declaration is a lie,
 *   or binary data needs base64 and BINARYMIME is out of scope).
 * - message/x (rfc822, global, ...) with 8-bit bytes anywhere inside: error.
 *   RFC 2046 5.2.1 forbids any encoding but 7bit/8bit/binary for it, and
 *   converting the inner message's parts would leave 8-bit inner headers
 *   behind; the sender gets a bounce (5.6.3) instead.
 * Lines end in CRLF in the output (a bare LF in an encoded part becomes
 * CRLF); encoded lines are at most 76 characters, soft breaks as "=".
 *
 * Ownership: out is the caller's; on error its content is unspecified.
 */
#ifndef RINGMAIL_MIME_DOWNGRADE_H
#define RINGMAIL_MIME_DOWNGRADE_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

#define MIME_DOWNGRADE_MAX_DEPTH 32

enum mime_downgrade_error {
	MIME_DOWNGRADE_OK = 0,
	MIME_DOWNGRADE_MESSAGE_PART = -1,	/* 8-bit inside message/x */
	MIME_DOWNGRADE_ENCODED_PART = -2,	/* 8-bit in base64/QP/binary part */
	MIME_DOWNGRADE_STRUCTURE = -3,		/* 8-bit preamble/epilogue, too deep */
	MIME_DOWNGRADE_NOSPACE = -4,		/* output over out's cap */
};

/* mime_has_8bit - does p hold a byte above 127? */
bool mime_has_8bit(const char *p, size_t len);

/* mime_downgrade - append the 7-bit form of msg (a whole message, headers
 * and body) to out. 0, or an enum mime_downgrade_error with *why set to a
 * static sentence for a bounce. */
int mime_downgrade(const char *msg, size_t len, struct buf *out, const char **why);

#endif
