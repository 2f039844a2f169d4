/*
 * header_fields - questions about a message's header section (RFC 5322
 * 2.2), without parsing the rest: pure, bytes in.
 *
 *   if (!header_fields_has(msg, len, "Message-ID")) ... add one
 *
 * The header section is the lines before the first empty line; it also ends
 * at a line that is neither a field ("name:", name of printable ASCII
 * without ':' or blanks) nor a continuation (starting with a blank), as a
 * reader would take the rest for body. Names compare case-insensitively.
 */
#ifndef RINGMAIL_HEADER_FIELDS_H
#define RINGMAIL_HEADER_FIELDS_H

#include <stdbool.h>
#include <stddef.h>

/* header_fields_has - is there a field called name in msg's header? */
bool header_fields_has(const char *msg, size_t len, const char *name);

/* header_fields_take - remove every field called name (with its
 * continuation lines) from msg's header section, in place; the first
 * one's value, unfolded (folds and runs of blanks as one space, trimmed),
 * into value (cap bytes, NUL-terminated). *found: how many fields were
 * removed, negated when the first's value did not fit in cap. Returns the
 * new length. */
size_t header_fields_take(char *msg, size_t len, const char *name, char *value, size_t cap, int *found);
/* header_fields_value - the first field called name: its value unfolded
 * (CRLF before a continuation dropped), leading and trailing blanks cut,
 * into out (NUL-terminated, cut to out_size - 1 bytes). Returns the
 * value's full length, or -1 when there is no such field. */
long header_fields_value(const char *msg, size_t len, const char *name, char *out, size_t out_size);

/* header_fields_tls_required_no - RFC 8689 section 3: the header has
 * "TLS-Required: No" (the only value defined; case-insensitive). */
bool header_fields_tls_required_no(const char *msg, size_t len);

#endif
