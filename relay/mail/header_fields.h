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

#endif
