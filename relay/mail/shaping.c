/*
 * shaping - sites and response rules; see shaping.h. Pure.
 */
#include "shaping.h"

#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

#define ANY (-1)

struct rule {
	struct shaping_response r;         /* text points at text_copy */
	char *text_copy;
	bool reply_any, status_any;
	char reply[3];                     /* digits or 'x' */
	int status[3];                     /* ANY or the number */
};

struct shaping_rules {
	struct shaping_site sites[SHAPING_MAX_SITES];
	size_t site_count;
	struct rule *rules;
	size_t rule_count, rule_cap;
};

struct shaping_matcher {
	regex_t *re;                       /* per rule; valid where has[i] */
	bool *has;
	size_t count;
};

static const char *const action_names[SHAPING_ACTION_COUNT] = { "suspend", "bounce", "suppress" };

const char *shaping_action_name(enum shaping_action a)
{
	return (unsigned)a < SHAPING_ACTION_COUNT ? action_names[a] : "?";
}

int shaping_action_parse(const char *name)
{
	for (int i = 0; i < SHAPING_ACTION_COUNT; i++)
		if (strcmp(name, action_names[i]) == 0)
			return i;
	return -1;
}

struct shaping_rules *shaping_rules_new(void)
{
	return xcalloc(1, sizeof(struct shaping_rules));
}

struct shaping_rules *shaping_rules_free(struct shaping_rules *r)
{
	if (r == NULL)
		return NULL;
	for (size_t i = 0; i < r->site_count; i++) {
		for (size_t k = 0; k < r->sites[i].suffix_count; k++)
			free(r->sites[i].suffixes[k]);
		free(r->sites[i].suffixes);
	}
	for (size_t i = 0; i < r->rule_count; i++)
		free(r->rules[i].text_copy);
	free(r->rules);
	free(r);
	return NULL;
}

static bool name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n >= SHAPING_NAME_MAX)
		return false;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
			return false;
	return true;
}

/* suffix_normalise - lower case, no trailing dot; false for an empty or
 * odd one. */
static bool suffix_normalise(const char *in, char *out, size_t size)
{
	size_t n = 0;

	for (const char *p = in; *p; p++) {
		if (n + 1 >= size || !(isalnum((unsigned char)*p) || *p == '-' || *p == '.'))
			return false;
		out[n++] = (char)tolower((unsigned char)*p);
	}
	while (n > 0 && out[n - 1] == '.')
		n--;
	out[n] = '\0';
	return n > 0 && strcmp(out, ".") != 0;
}

int shaping_site_add(struct shaping_rules *r, const char *name, const char *const *suffixes, size_t n)
{
	if (r->site_count == SHAPING_MAX_SITES)
		return -ENOSPC;
	if (!name_ok(name) || shaping_site_find(r, name) >= 0 || n == 0)
		return -EINVAL;
	char buf[256];
	for (size_t i = 0; i < n; i++)
		if (!suffix_normalise(suffixes[i], buf, sizeof(buf)))
			return -EINVAL;
	struct shaping_site *s = &r->sites[r->site_count];
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->suffixes = xcalloc(n, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		suffix_normalise(suffixes[i], buf, sizeof(buf));
		s->suffixes[i] = xstrdup(buf);
	}
	s->suffix_count = n;
	s->slot = (unsigned)r->site_count;
	r->site_count++;
	return 0;
}

size_t shaping_site_count(const struct shaping_rules *r)
{
	return r != NULL ? r->site_count : 0;
}

struct shaping_site *shaping_site_at(const struct shaping_rules *r, size_t i)
{
	return (struct shaping_site *)&r->sites[i];
}

int shaping_site_find(const struct shaping_rules *r, const char *name)
{
	for (size_t i = 0; r != NULL && i < r->site_count; i++)
		if (strcmp(r->sites[i].name, name) == 0)
			return (int)i;
	return -1;
}

size_t shaping_response_count(const struct shaping_rules *r)
{
	return r != NULL ? r->rule_count : 0;
}

const struct shaping_response *shaping_response_at(const struct shaping_rules *r, size_t i)
{
	return &r->rules[i].r;
}

/* suffix_matches - host (lower case, no trailing dot) is under suffix. */
static bool suffix_matches(const char *host, const char *suffix)
{
	size_t h = strlen(host), s = strlen(suffix);

	if (suffix[0] == '.')
		return h > s && strcmp(host + h - s, suffix) == 0;
	if (h == s)
		return strcmp(host, suffix) == 0;
	return h > s && host[h - s - 1] == '.' && strcmp(host + h - s, suffix) == 0;
}

int shaping_site_of(const struct shaping_rules *r, const char *const *mx_names, size_t count)
{
	char host[256];

	if (r == NULL || r->site_count == 0)
		return -1;
	for (size_t i = 0; i < r->site_count; i++) {
		for (size_t h = 0; h < count; h++) {
			size_t n = 0;
			for (const char *p = mx_names[h]; *p && n + 1 < sizeof(host); p++)
				host[n++] = (char)tolower((unsigned char)*p);
			while (n > 0 && host[n - 1] == '.')
				n--;
			host[n] = '\0';
			for (size_t k = 0; k < r->sites[i].suffix_count; k++)
				if (suffix_matches(host, r->sites[i].suffixes[k]))
					return (int)i;
		}
	}
	return -1;
}

/* parse_reply - "421", "4xx", "*". */
static bool parse_reply(const char *w, struct rule *x)
{
	if (strcmp(w, "*") == 0 || w[0] == '\0') {
		x->reply_any = true;
		return true;
	}
	if (strlen(w) != 3 || !(w[0] == '2' || w[0] == '4' || w[0] == '5'))
		return false;
	for (int i = 0; i < 3; i++) {
		char c = (char)tolower((unsigned char)w[i]);
		if (c != 'x' && !isdigit((unsigned char)c))
			return false;
		x->reply[i] = c;
	}
	return true;
}

/* parse_status - "4.7.28", "x.7.*", "*". */
static bool parse_status(const char *w, struct rule *x)
{
	if (strcmp(w, "*") == 0 || w[0] == '\0') {
		x->status_any = true;
		return true;
	}
	const char *p = w;
	for (int i = 0; i < 3; i++) {
		const char *end = i < 2 ? strchr(p, '.') : p + strlen(p);
		if (end == NULL || end == p || end - p > 3)
			return false;
		if (end - p == 1 && (*p == 'x' || *p == 'X' || *p == '*')) {
			x->status[i] = ANY;
		} else {
			x->status[i] = 0;
			for (const char *q = p; q < end; q++) {
				if (!isdigit((unsigned char)*q))
					return false;
				x->status[i] = x->status[i] * 10 + (*q - '0');
			}
		}
		p = end + 1;
	}
	return x->status[0] == ANY || x->status[0] == 2 || x->status[0] == 4 || x->status[0] == 5;
}

int shaping_response_add(struct shaping_rules *r, const struct shaping_response *rule, char *err, size_t errlen)
{
	struct rule x;

	memset(&x, 0, sizeof(x));
	x.r = *rule;
	if (!parse_reply(rule->reply, &x)) {
		snprintf(err, errlen, "code \"%s\" is not a reply code pattern (421, 4xx or *)", rule->reply);
		return -EINVAL;
	}
	if (!parse_status(rule->status, &x)) {
		snprintf(err, errlen, "enhanced \"%s\" is not a status pattern (4.7.28, x.7.* or *)", rule->status);
		return -EINVAL;
	}
	if ((unsigned)rule->action >= SHAPING_ACTION_COUNT) {
		snprintf(err, errlen, "unknown action");
		return -EINVAL;
	}
	if (rule->action == SHAPING_SUSPEND && rule->duration_ms <= 0) {
		snprintf(err, errlen, "suspend needs a duration");
		return -EINVAL;
	}
	if (rule->text != NULL && rule->text[0] != '\0') {
		regex_t re;
		int rc = regcomp(&re, rule->text, REG_EXTENDED | REG_ICASE | REG_NOSUB);
		if (rc != 0) {
			char why[128];
			regerror(rc, &re, why, sizeof(why));
			snprintf(err, errlen, "text \"%s\": %s", rule->text, why);
			return -EINVAL;
		}
		regfree(&re);
		x.text_copy = xstrdup(rule->text);
	}
	x.r.text = x.text_copy;
	if (r->rule_count == r->rule_cap) {
		r->rule_cap = r->rule_cap ? r->rule_cap * 2 : 8;
		r->rules = xreallocarray(r->rules, r->rule_cap, sizeof(*r->rules));
	}
	r->rules[r->rule_count++] = x;
	return 0;
}

struct shaping_matcher *shaping_matcher_new(const struct shaping_rules *r)
{
	struct shaping_matcher *m = xcalloc(1, sizeof(*m));

	m->count = shaping_response_count(r);
	m->re = xcalloc(m->count ? m->count : 1, sizeof(regex_t));
	m->has = xcalloc(m->count ? m->count : 1, sizeof(bool));
	for (size_t i = 0; i < m->count; i++)
		if (r->rules[i].text_copy != NULL)
			m->has[i] = regcomp(&m->re[i], r->rules[i].text_copy, REG_EXTENDED | REG_ICASE | REG_NOSUB) == 0;
	return m;
}

struct shaping_matcher *shaping_matcher_free(struct shaping_matcher *m)
{
	if (m == NULL)
		return NULL;
	for (size_t i = 0; i < m->count; i++)
		if (m->has[i])
			regfree(&m->re[i]);
	free(m->re);
	free(m->has);
	free(m);
	return NULL;
}

/* status_numbers - "4.7.28" into three numbers; false when not one. */
static bool status_numbers(const char *s, int out[3])
{
	for (int i = 0; i < 3; i++) {
		int v = 0, digits = 0;
		while (isdigit((unsigned char)*s) && digits < 4) {
			v = v * 10 + (*s++ - '0');
			digits++;
		}
		if (digits == 0)
			return false;
		out[i] = v;
		if (i < 2 && *s++ != '.')
			return false;
	}
	return *s == '\0' || *s == ' ';
}

const struct shaping_response *shaping_match(const struct shaping_rules *r, const struct shaping_matcher *m,
					     int code, const char *enhanced, const char *text)
{
	int st[3];
	bool has_status = enhanced != NULL && status_numbers(enhanced, st);

	for (size_t i = 0; r != NULL && i < r->rule_count; i++) {
		const struct rule *x = &r->rules[i];
		if (!x->reply_any) {
			if (code < 200 || code > 599)
				continue;
			char d[3] = { (char)('0' + code / 100), (char)('0' + code / 10 % 10), (char)('0' + code % 10) };
			if ((x->reply[0] != 'x' && x->reply[0] != d[0]) || (x->reply[1] != 'x' && x->reply[1] != d[1]) ||
			    (x->reply[2] != 'x' && x->reply[2] != d[2]))
				continue;
		}
		if (!x->status_any) {
			if (!has_status)
				continue;
			if ((x->status[0] != ANY && x->status[0] != st[0]) || (x->status[1] != ANY && x->status[1] != st[1]) ||
			    (x->status[2] != ANY && x->status[2] != st[2]))
				continue;
		}
		if (x->text_copy != NULL) {
			if (m == NULL || i >= m->count || !m->has[i] || regexec(&m->re[i], text ? text : "", 0, NULL, 0) != 0)
				continue;
		}
		return &x->r;
	}
	return NULL;
}
