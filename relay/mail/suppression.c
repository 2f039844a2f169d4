/*
 * suppression - the suppression list's data structures and CSV; see
 * suppression.h. Pure: no I/O, no locks (a snapshot's reference count is
 * the one atomic).
 */
#include "suppression.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

struct suppression_list {
	struct suppression_entry *e;       /* sorted by address; strings owned */
	size_t count, cap;
};

struct suppression_snapshot {
	_Atomic unsigned refs;
	uint64_t version;
	size_t count;
	struct suppression_entry *e;       /* sorted, strings in the same allocation */
};

/* address_normalise - lower case into out; false when it is no address. */
static bool address_normalise(const char *in, char *out, size_t size)
{
	size_t n = 0;
	bool at = false;

	for (const unsigned char *p = (const unsigned char *)in; *p != '\0'; p++) {
		if (n + 1 >= size || *p <= ' ' || *p == 0x7f || *p == ',' || *p == '"')
			return false;
		at |= *p == '@';
		out[n++] = (char)tolower(*p);
	}
	out[n] = '\0';
	return n > 0 && at && out[0] != '@' && out[n - 1] != '@';
}

void suppression_reason_clean(const char *reason, char *out, size_t size)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)(reason ? reason : "");
	     *p != '\0' && n + 1 < size && n < SUPPRESSION_REASON_MAX; p++)
		out[n++] = *p >= ' ' && *p < 0x7f ? (char)*p : '?';
	out[n] = '\0';
}

struct suppression_list *suppression_list_new(void)
{
	return xcalloc(1, sizeof(struct suppression_list));
}

struct suppression_list *suppression_list_free(struct suppression_list *l)
{
	if (l == NULL)
		return NULL;
	for (size_t i = 0; i < l->count; i++) {
		free((char *)l->e[i].address);
		free((char *)l->e[i].reason);
	}
	free(l->e);
	free(l);
	return NULL;
}

/* list_search - index of address, or where it would go (*found false). */
static size_t list_search(const struct suppression_entry *e, size_t count, const char *address, bool *found)
{
	size_t lo = 0, hi = count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(e[mid].address, address);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

int suppression_list_add(struct suppression_list *l, const char *address, int64_t created_s,
			 int64_t expires_s, const char *reason)
{
	char addr[SUPPRESSION_ADDRESS_MAX + 1], why[SUPPRESSION_REASON_MAX + 1];
	bool found;

	if (!address_normalise(address, addr, sizeof(addr)) || expires_s < 0 || created_s < 0)
		return -EINVAL;
	suppression_reason_clean(reason, why, sizeof(why));
	size_t i = list_search(l->e, l->count, addr, &found);
	if (found) {
		free((char *)l->e[i].reason);
	} else {
		if (l->count == l->cap) {
			l->cap = l->cap ? l->cap * 2 : 64;
			l->e = xreallocarray(l->e, l->cap, sizeof(*l->e));
		}
		memmove(&l->e[i + 1], &l->e[i], (l->count - i) * sizeof(*l->e));
		l->count++;
		l->e[i].address = xstrdup(addr);
	}
	l->e[i].created_s = created_s;
	l->e[i].expires_s = expires_s;
	l->e[i].reason = xstrdup(why);
	return 0;
}

bool suppression_list_remove(struct suppression_list *l, const char *address)
{
	char addr[SUPPRESSION_ADDRESS_MAX + 1];
	bool found;

	if (!address_normalise(address, addr, sizeof(addr)))
		return false;
	size_t i = list_search(l->e, l->count, addr, &found);
	if (!found)
		return false;
	free((char *)l->e[i].address);
	free((char *)l->e[i].reason);
	memmove(&l->e[i], &l->e[i + 1], (l->count - i - 1) * sizeof(*l->e));
	l->count--;
	return true;
}

size_t suppression_list_purge(struct suppression_list *l, int64_t now_s)
{
	size_t kept = 0, n = l->count;

	for (size_t i = 0; i < n; i++) {
		if (l->e[i].expires_s != 0 && l->e[i].expires_s <= now_s) {
			free((char *)l->e[i].address);
			free((char *)l->e[i].reason);
			continue;
		}
		l->e[kept++] = l->e[i];
	}
	l->count = kept;
	return n - kept;
}

size_t suppression_list_count(const struct suppression_list *l)
{
	return l->count;
}

struct suppression_snapshot *suppression_snapshot_build(const struct suppression_list *l, uint64_t version)
{
	size_t strings = 0;

	for (size_t i = 0; i < l->count; i++)
		strings += strlen(l->e[i].address) + strlen(l->e[i].reason) + 2;
	size_t head = sizeof(struct suppression_snapshot) + l->count * sizeof(struct suppression_entry);
	struct suppression_snapshot *s = xmalloc(head + strings);
	char *p = (char *)s + head;

	atomic_init(&s->refs, 1);
	s->version = version;
	s->count = l->count;
	s->e = (struct suppression_entry *)(s + 1);
	for (size_t i = 0; i < l->count; i++) {
		s->e[i] = l->e[i];
		size_t a = strlen(l->e[i].address) + 1, r = strlen(l->e[i].reason) + 1;
		memcpy(p, l->e[i].address, a);
		s->e[i].address = p;
		p += a;
		memcpy(p, l->e[i].reason, r);
		s->e[i].reason = p;
		p += r;
	}
	return s;
}

struct suppression_snapshot *suppression_snapshot_ref(struct suppression_snapshot *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

struct suppression_snapshot *suppression_snapshot_unref(struct suppression_snapshot *s)
{
	if (s != NULL && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
		free(s);
	return NULL;
}

uint64_t suppression_snapshot_version(const struct suppression_snapshot *s)
{
	return s->version;
}

size_t suppression_snapshot_count(const struct suppression_snapshot *s)
{
	return s != NULL ? s->count : 0;
}

const struct suppression_entry *suppression_snapshot_at(const struct suppression_snapshot *s, size_t i)
{
	return &s->e[i];
}

const struct suppression_entry *suppression_snapshot_find(const struct suppression_snapshot *s,
							  const char *address, int64_t now_s)
{
	char addr[SUPPRESSION_ADDRESS_MAX + 1];
	bool found;

	if (s == NULL || s->count == 0 || !address_normalise(address, addr, sizeof(addr)))
		return NULL;
	size_t i = list_search(s->e, s->count, addr, &found);
	if (!found || (s->e[i].expires_s != 0 && s->e[i].expires_s <= now_s))
		return NULL;
	return &s->e[i];
}

/* csv_field - text as one CSV field at dst + *n, quoted when it must be. */
static void csv_field(char *dst, size_t size, size_t *n, const char *text)
{
	size_t len = strlen(text);
	bool quote = strpbrk(text, ",\"") != NULL || text[0] == ' ' || (len > 0 && text[len - 1] == ' ');

	if (quote && *n + 1 < size)
		dst[(*n)++] = '"';
	for (const char *p = text; *p != '\0' && *n + 3 < size; p++) {
		if (*p == '"')
			dst[(*n)++] = '"';
		dst[(*n)++] = *p;
	}
	if (quote && *n + 1 < size)
		dst[(*n)++] = '"';
}

size_t suppression_csv_format(char *dst, size_t size, const struct suppression_entry *e)
{
	size_t n = 0;

	csv_field(dst, size - 48, &n, e->address);
	n += (size_t)snprintf(dst + n, size - n, ",%" PRId64 ",", e->created_s);
	if (e->expires_s != 0)
		n += (size_t)snprintf(dst + n, size - n, "%" PRId64, e->expires_s);
	dst[n++] = ',';
	csv_field(dst, size - 2, &n, e->reason);
	dst[n++] = '\n';
	dst[n] = '\0';
	return n;
}

/* csv_split - the next field of *p, unquoted in place; NULL when a quote
 * does not close. */
static char *csv_split(char **p, bool *last)
{
	char *s = *p, *out = s, *start = s;

	if (*s == '"') {
		s++;
		for (;;) {
			if (*s == '\0')
				return NULL;
			if (*s == '"') {
				if (s[1] != '"')
					break;
				s++;
			}
			*out++ = *s++;
		}
		s++;                        /* the closing quote */
		if (*s != ',' && *s != '\0')
			return NULL;
	} else {
		while (*s != ',' && *s != '\0')
			*out++ = *s++;
	}
	*last = *s == '\0';
	*p = *last ? s : s + 1;
	*out = '\0';
	return start;
}

/* parse_seconds - "" (0) or digits. */
static bool parse_seconds(const char *text, int64_t *out)
{
	int64_t v = 0;

	for (const char *p = text; *p != '\0'; p++) {
		if (!isdigit((unsigned char)*p) || v > INT64_MAX / 10 - 10)
			return false;
		v = v * 10 + (*p - '0');
	}
	*out = v;
	return true;
}

int suppression_csv_parse(char *line, struct suppression_entry *e, const char **why)
{
	char *fields[4] = { NULL, NULL, NULL, NULL };
	char *p = line;
	bool last = false;
	size_t n = 0;
	char probe[SUPPRESSION_ADDRESS_MAX + 1];

	size_t len = strlen(line);
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
		line[--len] = '\0';
	if (len == 0)
		return 1;
	while (!last && n < 4) {
		fields[n] = csv_split(&p, &last);
		if (fields[n] == NULL) {
			*why = "unterminated quote";
			return -EINVAL;
		}
		n++;
	}
	if (!last) {
		*why = "more than 4 fields (address,created,expires,reason)";
		return -EINVAL;
	}
	if (strcmp(fields[0], "address") == 0)
		return 1;
	memset(e, 0, sizeof(*e));
	e->address = fields[0];
	e->reason = fields[3] != NULL ? fields[3] : "";
	if (!address_normalise(fields[0], probe, sizeof(probe))) {
		*why = "not an address";
		return -EINVAL;
	}
	if ((fields[1] != NULL && !parse_seconds(fields[1], &e->created_s)) ||
	    (fields[2] != NULL && !parse_seconds(fields[2], &e->expires_s))) {
		*why = "created and expires are seconds since the epoch";
		return -EINVAL;
	}
	return 0;
}
