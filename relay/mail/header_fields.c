/*
 * header_fields - header section questions; see header_fields.h.
 */
#include "header_fields.h"

#include <string.h>
#include <strings.h>

/* field_name_len - the length of the field name at the start of the line
 * p (n bytes, no EOL), 0 when the line is not a field. */
static size_t field_name_len(const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && (unsigned char)p[i] > ' ' && (unsigned char)p[i] < 127 && p[i] != ':')
		i++;
	size_t name = i;
	while (i < n && (p[i] == ' ' || p[i] == '\t'))	/* obs-optional (RFC 5322 4.5) */
		i++;
	return name > 0 && i < n && p[i] == ':' ? name : 0;
}

bool header_fields_has(const char *msg, size_t len, const char *name)
{
	size_t want = strlen(name), off = 0;

	while (off < len) {
		const char *p = msg + off, *nl = memchr(p, '\n', len - off);
		size_t n = nl != NULL ? (size_t)(nl - p) : len - off;
		size_t content = n > 0 && p[n - 1] == '\r' ? n - 1 : n;
		if (content == 0)
			return false;			/* the empty line */
		if (p[0] != ' ' && p[0] != '\t') {
			size_t k = field_name_len(p, content);
			if (k == 0)
				return false;		/* not a header line: body */
			if (k == want && strncasecmp(p, name, k) == 0)
				return true;
		}
		off += n + (nl != NULL ? 1 : 0);
	}
	return false;
}
