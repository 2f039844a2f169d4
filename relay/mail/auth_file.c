/*
 * auth_file - the next hops' SMTP AUTH credentials; see auth_file.h.
 */
#include "auth_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errmsg.h"
#include "xalloc.h"

/* The file is small (one line per provider); a cap keeps a wrong path
 * (a log, a device) from being read whole. */
#define AUTH_FILE_MAX (1u << 20)
#define AUTH_FIELD_MAX 1024

struct auth_file {
	struct auth_cred *creds;
	size_t count;
};

/* field_ok - no controls (tabs and spaces are separators, not content). */
static int field_ok(const char *s, size_t n)
{
	if (n == 0 || n > AUTH_FIELD_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] == 0x7f)
			return 0;
	return 1;
}

/* parse_line - one non-comment line of n bytes (no LF) into *c. */
static int parse_line(const char *s, size_t n, int line, struct auth_cred *c, char *err, size_t errlen)
{
	size_t hop_end = 0, cred_start, colon;

	while (hop_end < n && s[hop_end] != ' ' && s[hop_end] != '\t')
		hop_end++;
	cred_start = hop_end;
	while (cred_start < n && (s[cred_start] == ' ' || s[cred_start] == '\t'))
		cred_start++;
	if (cred_start == hop_end || cred_start == n)
		return errmsg_set(err, errlen, -EINVAL, "line %d: want \"NEXTHOP USER:PASSWORD\"", line);
	if (!field_ok(s, hop_end))
		return errmsg_set(err, errlen, -EINVAL, "line %d: bad next hop", line);
	for (colon = cred_start; colon < n && s[colon] != ':'; colon++)
		;
	if (colon == n)
		return errmsg_set(err, errlen, -EINVAL, "line %d: want USER:PASSWORD after the next hop", line);
	if (!field_ok(s + cred_start, colon - cred_start))
		return errmsg_set(err, errlen, -EINVAL, "line %d: bad or empty user name", line);
	if (!field_ok(s + colon + 1, n - colon - 1))
		return errmsg_set(err, errlen, -EINVAL, "line %d: bad or empty password (no spaces or control characters)", line);
	c->next_hop = xstrndup(s, hop_end);
	c->user = xstrndup(s + cred_start, colon - cred_start);
	c->password = xstrndup(s + colon + 1, n - colon - 1);
	return 0;
}

int auth_file_parse(const char *text, size_t len, struct auth_file **out, char *err, size_t errlen)
{
	struct auth_file *af = xcalloc(1, sizeof(*af));
	size_t cap = 0, off = 0;
	int line = 0, rc = 0;

	*out = NULL;
	while (off < len && rc == 0) {
		const char *s = text + off, *nl = memchr(s, '\n', len - off);
		size_t n = nl != NULL ? (size_t)(nl - s) : len - off;

		off += n + (nl != NULL);
		line++;
		if (n > 0 && s[n - 1] == '\r')
			n--;
		while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
			n--;
		size_t lead = 0;
		while (lead < n && (s[lead] == ' ' || s[lead] == '\t'))
			lead++;
		if (lead == n || s[lead] == '#')
			continue;
		if (memchr(s, '\0', n) != NULL) {
			rc = errmsg_set(err, errlen, -EINVAL, "line %d: NUL byte", line);
			break;
		}
		if (af->count == cap) {
			cap = cap ? cap * 2 : 8;
			af->creds = xreallocarray(af->creds, cap, sizeof(*af->creds));
		}
		struct auth_cred c = { 0 };
		rc = parse_line(s + lead, n - lead, line, &c, err, errlen);
		if (rc < 0)
			break;
		if (auth_file_find(af, c.next_hop) != NULL)
			rc = errmsg_set(err, errlen, -EINVAL, "line %d: next hop %s appears twice", line, c.next_hop);
		af->creds[af->count++] = c;
	}
	if (rc < 0) {
		auth_file_free(af);
		return rc;
	}
	*out = af;
	return 0;
}

int auth_file_load(const char *path, struct auth_file **out, char *err, size_t errlen)
{
	struct stat st;
	char *text;
	ssize_t n;
	int fd, rc;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		errmsg_set(err, errlen, -EINVAL, "%s: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		errmsg_set(err, errlen, -EINVAL, "%s: not a regular file", path);
		return -EINVAL;
	}
	if (st.st_mode & (S_IRGRP | S_IROTH)) {
		close(fd);
		errmsg_set(err, errlen, -EINVAL, "%s: readable by group or others (mode %04o); it holds passwords: chmod 600",
			  path, (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	if (st.st_size > AUTH_FILE_MAX) {
		close(fd);
		errmsg_set(err, errlen, -EINVAL, "%s: larger than %u bytes", path, AUTH_FILE_MAX);
		return -EFBIG;
	}
	text = xmalloc((size_t)st.st_size + 1);
	n = read(fd, text, (size_t)st.st_size);
	rc = n < 0 ? -errno : 0;
	close(fd);
	if (rc == 0) {
		char why[256];
		rc = auth_file_parse(text, (size_t)n, out, why, sizeof(why));
		if (rc < 0)
			errmsg_set(err, errlen, -EINVAL, "%s: %s", path, why);
	} else {
		errmsg_set(err, errlen, -EINVAL, "%s: %s", path, strerror(-rc));
	}
	explicit_bzero(text, (size_t)st.st_size + 1);
	free(text);
	return rc;
}

const struct auth_cred *auth_file_find(const struct auth_file *af, const char *next_hop)
{
	if (af == NULL || next_hop == NULL)
		return NULL;
	for (size_t i = 0; i < af->count; i++)
		if (strcmp(af->creds[i].next_hop, next_hop) == 0)
			return &af->creds[i];
	return NULL;
}

size_t auth_file_count(const struct auth_file *af)
{
	return af != NULL ? af->count : 0;
}

struct auth_file *auth_file_free(struct auth_file *af)
{
	if (af == NULL)
		return NULL;
	for (size_t i = 0; i < af->count; i++) {
		free(af->creds[i].next_hop);
		free(af->creds[i].user);
		explicit_bzero(af->creds[i].password, strlen(af->creds[i].password));
		free(af->creds[i].password);
	}
	free(af->creds);
	free(af);
	return NULL;
}
