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

/* append_unfolded - the value part of one line of a field (after the
 * colon on its first line) to value[*n], runs of blanks and folds as one
 * space; false when it does not fit. */
static bool append_unfolded(const char *p, size_t n, char *value, size_t cap, size_t *at)
{
	for (size_t i = 0; i < n; i++) {
		char c = p[i] == '\t' ? ' ' : p[i];
		if (c == ' ' && (*at == 0 || value[*at - 1] == ' '))
			continue;
		if (*at + 1 >= cap)
			return false;
		value[(*at)++] = c;
	}
	if (*at > 0 && value[*at - 1] != ' ' && *at + 1 < cap)
		value[(*at)++] = ' ';     /* a fold between lines */
	return true;
}

size_t header_fields_take(char *msg, size_t len, const char *name, char *value, size_t cap, int *found)
{
	size_t want = strlen(name), off = 0, at = 0;
	bool in_field = false, first = true, fits = true;

	*found = 0;
	if (cap > 0)
		value[0] = '\0';
	while (off < len) {
		char *p = msg + off, *nl = memchr(p, '\n', len - off);
		size_t n = nl != NULL ? (size_t)(nl - p) + 1 : len - off;
		size_t content = n;
		while (content > 0 && (p[content - 1] == '\n' || p[content - 1] == '\r'))
			content--;
		if (content == 0)
			break;				/* the empty line */
		if (p[0] != ' ' && p[0] != '\t') {
			size_t k = field_name_len(p, content);
			if (k == 0)
				break;			/* not a header line: body */
			in_field = k == want && strncasecmp(p, name, k) == 0;
			if (in_field && *found == 0) {
				const char *colon = memchr(p, ':', content);
				fits = append_unfolded(colon + 1, content - (size_t)(colon + 1 - p), value, cap, &at);
			} else if (in_field) {
				first = false;
			}
			if (in_field)
				(*found)++;
		} else if (in_field && first && *found == 1) {
			fits = fits && append_unfolded(p, content, value, cap, &at);
		}
		if (in_field) {
			memmove(p, p + n, len - off - n);
			len -= n;
			continue;
		}
		off += n;
	}
	while (at > 0 && value[at - 1] == ' ')
		at--;
	if (cap > 0)
		value[at] = '\0';
	if (*found > 0 && !fits)
		*found = -*found;
	return len;
}
