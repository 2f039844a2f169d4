/*
 * http_tokens - hashed bearer tokens; see http_tokens.h.
 *
 * Tokens are long random strings, so a plain SHA-256 is enough to keep
 * the file from being a list of working credentials (no salt or slow
 * hash is needed against guessing a 128-bit secret), and it is cheap
 * enough to run on the worker's loop for every request.
 */
#include "http_tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <mbedtls/sha256.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "xalloc.h"

#define TOKEN_FILE_MAX (4 << 20)

struct http_tokens {
	struct http_token *entries;
	size_t count;
};

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool name_ok(const char *s, size_t n)
{
	if (n == 0 || n > HTTP_TOKEN_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

/* parse_permissions - "inject,..." into bits; false on an unknown word. */
static bool parse_permissions(const char *s, size_t n, unsigned *out)
{
	*out = 0;
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && s[j] != ',')
			j++;
		size_t w = j - i;
		if (w == 6 && strncasecmp(s + i, "inject", 6) == 0)
			*out |= HTTP_TOKEN_INJECT;
		else if (w != 0)
			return false;
		i = j + 1;
	}
	return true;
}

/* parse_line - one "name:hex:permissions" line into e. */
static int parse_line(const char *s, size_t n, struct http_token *e, const char **why)
{
	const char *c1 = memchr(s, ':', n);
	const char *c2 = c1 != NULL ? memchr(c1 + 1, ':', n - (size_t)(c1 + 1 - s)) : NULL;

	if (c2 == NULL) {
		*why = "expects NAME:SHA256-HEX:PERMISSIONS";
		return -EINVAL;
	}
	size_t name_len = (size_t)(c1 - s), hex_len = (size_t)(c2 - c1 - 1);
	if (!name_ok(s, name_len)) {
		*why = "the name must be 1 to 64 letters, digits, '-', '_' or '.'";
		return -EINVAL;
	}
	if (hex_len != 2 * HTTP_TOKEN_DIGEST) {
		*why = "the digest must be 64 hex digits (SHA-256 of the token)";
		return -EINVAL;
	}
	for (size_t i = 0; i < HTTP_TOKEN_DIGEST; i++) {
		int hi = hex_value(c1[1 + 2 * i]), lo = hex_value(c1[2 + 2 * i]);
		if (hi < 0 || lo < 0) {
			*why = "the digest must be 64 hex digits (SHA-256 of the token)";
			return -EINVAL;
		}
		e->digest[i] = (uint8_t)(hi << 4 | lo);
	}
	if (!parse_permissions(c2 + 1, n - (size_t)(c2 + 1 - s), &e->permissions)) {
		*why = "unknown permission (known: inject)";
		return -EINVAL;
	}
	memcpy(e->name, s, name_len);
	e->name[name_len] = '\0';
	return 0;
}

int http_tokens_parse(const char *text, size_t len, struct http_tokens **out, char *why, size_t whylen)
{
	struct http_tokens *t = xcalloc(1, sizeof(*t));
	size_t cap = 0;
	int line = 0;

	*out = NULL;
	for (size_t i = 0; i < len;) {
		size_t j = i;
		while (j < len && text[j] != '\n')
			j++;
		size_t n = j - i;
		const char *s = text + i;
		line++;
		i = j + 1;
		while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
			n--;
		while (n > 0 && (*s == ' ' || *s == '\t')) {
			s++;
			n--;
		}
		if (n == 0 || *s == '#')
			continue;
		if (t->count == cap) {
			cap = cap ? 2 * cap : 8;
			t->entries = xreallocarray(t->entries, cap, sizeof(*t->entries));
		}
		const char *reason = NULL;
		struct http_token *e = &t->entries[t->count];
		memset(e, 0, sizeof(*e));
		if (parse_line(s, n, e, &reason) < 0) {
			snprintf(why, whylen, "line %d: %s", line, reason);
			http_tokens_free(t);
			return -EINVAL;
		}
		for (size_t k = 0; k < t->count; k++) {
			if (strcmp(t->entries[k].name, e->name) == 0) {
				snprintf(why, whylen, "line %d: the name %s appears twice", line, e->name);
				http_tokens_free(t);
				return -EINVAL;
			}
		}
		t->count++;
	}
	*out = t;
	return 0;
}

int http_tokens_load(const char *path, struct http_tokens **out, char *why, size_t whylen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	*out = NULL;
	if (fd < 0) {
		int err = errno;
		snprintf(why, whylen, "%s: %s", path, strerror(err));
		return -err;
	}
	if (fstat(fd, &st) < 0 || st.st_size > TOKEN_FILE_MAX) {
		snprintf(why, whylen, "%s: not a readable file of at most 4 MB", path);
		close(fd);
		return -EINVAL;
	}
	char *text = xmalloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, text + got, (size_t)st.st_size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	char inner[200];
	int rc = http_tokens_parse(text, got, out, inner, sizeof(inner));
	free(text);
	if (rc < 0)
		snprintf(why, whylen, "%s: %s", path, inner);
	return rc;
}

struct http_tokens *http_tokens_free(struct http_tokens *t)
{
	if (t == NULL)
		return NULL;
	free(t->entries);
	free(t);
	return NULL;
}

size_t http_tokens_count(const struct http_tokens *t)
{
	return t != NULL ? t->count : 0;
}

const struct http_token *http_tokens_find(const struct http_tokens *t, const char *token, size_t len)
{
	uint8_t digest[HTTP_TOKEN_DIGEST];
	const struct http_token *found = NULL;

	if (t == NULL || len == 0)
		return NULL;
	mbedtls_sha256_ret((const unsigned char *)token, len, digest, 0);
	/* Every entry is compared in full: the time says nothing of which
	 * digest, or how much of one, matched. */
	for (size_t i = 0; i < t->count; i++) {
		uint8_t diff = 0;
		for (size_t k = 0; k < HTTP_TOKEN_DIGEST; k++)
			diff |= (uint8_t)(digest[k] ^ t->entries[i].digest[k]);
		if (diff == 0 && found == NULL)
			found = &t->entries[i];
	}
	return found;
}

const char *http_bearer_token(const char *authorization, size_t *len)
{
	if (strncasecmp(authorization, "Bearer ", 7) != 0)
		return NULL;
	const char *s = authorization + 7;
	while (*s == ' ')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n == 0)
		return NULL;
	*len = n;
	return s;
}
