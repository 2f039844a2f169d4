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

/* field_find - the offset of the line holding the first field called
 * name, or -1; *line_len gets that line's length without its EOL. */
static long field_find(const char *msg, size_t len, const char *name, size_t *line_len)
{
	size_t want = strlen(name), off = 0;

	while (off < len) {
		const char *p = msg + off, *nl = memchr(p, '\n', len - off);
		size_t n = nl != NULL ? (size_t)(nl - p) : len - off;
		size_t content = n > 0 && p[n - 1] == '\r' ? n - 1 : n;
		if (content == 0)
			return -1;			/* the empty line */
		if (p[0] != ' ' && p[0] != '\t') {
			size_t k = field_name_len(p, content);
			if (k == 0)
				return -1;		/* not a header line: body */
			if (k == want && strncasecmp(p, name, k) == 0) {
				*line_len = content;
				return (long)off;
			}
		}
		off += n + (nl != NULL ? 1 : 0);
	}
	return -1;
}

bool header_fields_has(const char *msg, size_t len, const char *name)
{
	size_t line_len;

	return field_find(msg, len, name, &line_len) >= 0;
}

/* value_put - append one byte of the value, counting what does not fit */
static void value_put(char *out, size_t out_size, size_t *n, char c)
{
	if (*n + 1 < out_size)
		out[*n] = c;
	(*n)++;
}

long header_fields_value(const char *msg, size_t len, const char *name, char *out, size_t out_size)
{
	size_t line_len, n = 0, last = 0;
	long at = field_find(msg, len, name, &line_len);

	if (out_size > 0)
		out[0] = '\0';
	if (at < 0)
		return -1;
	const char *colon = memchr(msg + at, ':', line_len);
	size_t off = (size_t)(colon - msg) + 1;
	for (;;) {
		const char *p = msg + off, *nl = memchr(p, '\n', len - off);
		size_t end = nl != NULL ? (size_t)(nl - msg) : len;
		if (end > off && msg[end - 1] == '\r')
			end--;
		for (size_t i = off; i < end; i++) {
			if (n == 0 && (msg[i] == ' ' || msg[i] == '\t'))
				continue;
			value_put(out, out_size, &n, msg[i]);
			if (msg[i] != ' ' && msg[i] != '\t')
				last = n;
		}
		if (nl == NULL || (size_t)(nl - msg) + 1 >= len)
			break;
		off = (size_t)(nl - msg) + 1;
		if (msg[off] != ' ' && msg[off] != '\t')
			break;			/* the next field */
	}
	if (out_size > 0)
		out[last < out_size ? last : out_size - 1] = '\0';
	return (long)last;
}

bool header_fields_tls_required_no(const char *msg, size_t len)
{
	char value[8];

	return header_fields_value(msg, len, "TLS-Required", value, sizeof(value)) == 2 &&
	       strcasecmp(value, "No") == 0;
}
