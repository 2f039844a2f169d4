/*
 * inject_message - message bytes from injected content; see
 * inject_message.h.
 */
#include "inject_message.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

/* find_sub - the value list entry named name[0..n), or NULL. */
static const struct inject_substitution *find_sub(const struct inject_substitution *subs, size_t count,
						  const char *name, size_t n)
{
	for (size_t i = 0; i < count; i++)
		if (strlen(subs[i].name) == n && memcmp(subs[i].name, name, n) == 0)
			return &subs[i];
	return NULL;
}

/* placeholder - at text[i] "{{ name }}"? Sets the name's span and the
 * placeholder's length. */
static bool placeholder(const char *text, size_t len, size_t i, size_t *name_at, size_t *name_len,
			size_t *total)
{
	if (i + 4 > len || text[i] != '{' || text[i + 1] != '{')
		return false;
	size_t j = i + 2;
	while (j < len && text[j] == ' ')
		j++;
	size_t start = j;
	while (j < len && text[j] != '}' && text[j] != ' ' && text[j] != '{' && text[j] != '\n' &&
	       j - start < 128)
		j++;
	size_t end = j;
	while (j < len && text[j] == ' ')
		j++;
	if (end == start || j + 2 > len || text[j] != '}' || text[j + 1] != '}')
		return false;
	*name_at = start;
	*name_len = end - start;
	*total = j + 2 - i;
	return true;
}

int inject_substitute(const char *text, size_t len, const struct inject_substitution *own,
		      size_t own_count, const struct inject_substitution *common, size_t common_count,
		      struct buf *out)
{
	size_t copied = 0;

	for (size_t i = 0; i + 1 < len; i++) {
		size_t at, n, total;
		if (text[i] != '{' || !placeholder(text, len, i, &at, &n, &total))
			continue;
		const struct inject_substitution *s = find_sub(own, own_count, text + at, n);
		if (s == NULL)
			s = find_sub(common, common_count, text + at, n);
		if (s == NULL)
			continue;
		if (buf_append(out, text + copied, i - copied) < 0 || buf_append_str(out, s->value) < 0)
			return -ENOBUFS;
		i += total - 1;
		copied = i + 1;
	}
	return buf_append(out, text + copied, len - copied) < 0 ? -ENOBUFS : 0;
}

/* first_line_is_header - "name:" with a field name of printable ASCII. */
static bool first_line_is_header(const char *raw, size_t len)
{
	size_t i = 0;
	while (i < len && raw[i] > 32 && raw[i] < 127 && raw[i] != ':')
		i++;
	return i > 0 && i < len && raw[i] == ':';
}

int inject_message_normalize(const char *raw, size_t len, size_t line_max, struct buf *out)
{
	size_t line_start = 0;

	if (!first_line_is_header(raw, len))
		return -EBADMSG;
	for (size_t i = 0; i < len;) {
		size_t j = i;
		while (j < len && raw[j] != '\r' && raw[j] != '\n')
			j++;
		if (j - line_start + 2 > line_max)
			return -E2BIG;
		if (buf_append(out, raw + i, j - i) < 0 || buf_append(out, "\r\n", 2) < 0)
			return -ENOBUFS;
		if (j < len && raw[j] == '\r' && j + 1 < len && raw[j + 1] == '\n')
			j++;
		i = j + 1;
		line_start = i;
	}
	return 0;
}
