/*
 * bounce_class - classify bounces and deferrals by a table; see
 * bounce_class.h. Pure: no I/O, no locks, no allocation while classifying.
 */
#include "bounce_class.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

#define RULE_ANY (-1)
#define TEXT_MAX 512               /* of a reply text, looked at */
#define LINE_MAX_LEN 4096

struct bounce_rule {
	enum bounce_category category;
	char reply[3];                 /* digits or 'x'; reply_any: not looked at */
	bool reply_any;
	bool status_any;               /* also matches no status */
	int status[3];                 /* RULE_ANY or the number */
	char *text;                    /* alternatives, lower case, '\0'-separated; NULL: any */
	size_t text_count;
};

struct bounce_classifier {
	struct bounce_rule *rules;
	size_t count, cap;
};

static const char *const category_names[BOUNCE_CAT_COUNT] = {
	[BOUNCE_CAT_INVALID_RECIPIENT] = "invalid_recipient",
	[BOUNCE_CAT_MAILBOX_FULL] = "mailbox_full",
	[BOUNCE_CAT_POLICY] = "policy",
	[BOUNCE_CAT_AUTHENTICATION] = "authentication",
	[BOUNCE_CAT_RATE_LIMIT] = "rate_limit",
	[BOUNCE_CAT_DNS] = "dns",
	[BOUNCE_CAT_TLS] = "tls",
	[BOUNCE_CAT_CONNECTION] = "connection",
	[BOUNCE_CAT_MESSAGE_TOO_LARGE] = "message_too_large",
	[BOUNCE_CAT_OTHER] = "other",
};

const char *bounce_category_name(enum bounce_category category)
{
	return (unsigned)category < BOUNCE_CAT_COUNT ? category_names[category] : "other";
}

int bounce_category_parse(const char *name)
{
	for (int i = 0; i < BOUNCE_CAT_COUNT; i++)
		if (strcmp(name, category_names[i]) == 0)
			return i;
	return -1;
}

struct bounce_classifier *bounce_classifier_new(void)
{
	return xcalloc(1, sizeof(struct bounce_classifier));
}

static void rule_clear(struct bounce_rule *r)
{
	free(r->text);
	r->text = NULL;
}

struct bounce_classifier *bounce_classifier_free(struct bounce_classifier *c)
{
	if (c == NULL)
		return NULL;
	for (size_t i = 0; i < c->count; i++)
		rule_clear(&c->rules[i]);
	free(c->rules);
	free(c);
	return NULL;
}

size_t bounce_classifier_rules(const struct bounce_classifier *c)
{
	return c->count;
}

/* parse_reply - "550", "5xx", "*". */
static bool parse_reply(const char *w, struct bounce_rule *r)
{
	if (strcmp(w, "*") == 0) {
		r->reply_any = true;
		return true;
	}
	if (strlen(w) != 3 || (w[0] != '2' && w[0] != '4' && w[0] != '5' && w[0] != 'x'))
		return false;
	for (int i = 0; i < 3; i++) {
		char ch = (char)tolower((unsigned char)w[i]);
		if (ch != 'x' && !isdigit((unsigned char)ch))
			return false;
		r->reply[i] = ch;
	}
	return true;
}

/* parse_status_part - one part of an enhanced code: 1-3 digits, or "x"
 * or "*" for any. */
static bool parse_status_part(const char *p, size_t len, int *out)
{
	if (len == 1 && (*p == 'x' || *p == 'X' || *p == '*')) {
		*out = RULE_ANY;
		return true;
	}
	if (len == 0 || len > 3)
		return false;
	int v = 0;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)p[i]))
			return false;
		v = v * 10 + (p[i] - '0');
	}
	*out = v;
	return true;
}

/* parse_status - "5.1.1", "x.7.26", "5.7.*", or "*". */
static bool parse_status(const char *w, int status[3], bool *any)
{
	if (strcmp(w, "*") == 0) {
		*any = true;
		return true;
	}
	const char *p = w;
	for (int i = 0; i < 3; i++) {
		const char *end = i < 2 ? strchr(p, '.') : p + strlen(p);
		if (end == NULL || !parse_status_part(p, (size_t)(end - p), &status[i]))
			return false;
		p = end + 1;
	}
	return status[0] == RULE_ANY || status[0] == 2 || status[0] == 4 || status[0] == 5;
}

/* parse_text - "a|b c|d" into lower-case '\0'-separated alternatives. */
static bool parse_text(const char *text, struct bounce_rule *r)
{
	size_t len = strlen(text);

	while (len > 0 && isspace((unsigned char)text[len - 1]))
		len--;
	if (len == 0)
		return true;
	r->text = xmalloc(len + 1);
	r->text_count = 1;
	for (size_t i = 0; i < len; i++) {
		char ch = text[i];
		if (ch == '|') {
			r->text[i] = '\0';
			r->text_count++;
		} else {
			r->text[i] = (char)tolower((unsigned char)ch);
		}
	}
	r->text[len] = '\0';
	/* An empty alternative would match everything: refuse it. */
	const char *p = r->text;
	for (size_t k = 0; k < r->text_count; k++, p += strlen(p) + 1)
		if (*p == '\0')
			return false;
	return true;
}

/* next_word - the next blank-separated word of *p into w (cap size). */
static bool next_word(const char **p, char *w, size_t size)
{
	const char *s = *p;
	size_t n = 0;

	while (*s == ' ' || *s == '\t')
		s++;
	while (*s != '\0' && *s != ' ' && *s != '\t') {
		if (n + 1 >= size)
			return false;
		w[n++] = *s++;
	}
	w[n] = '\0';
	*p = s;
	return n > 0;
}

/* parse_line - one rule; "" on success, else what is wrong. */
static const char *parse_line(const char *line, struct bounce_rule *r)
{
	char word[64];
	const char *p = line;

	memset(r, 0, sizeof(*r));
	if (!next_word(&p, word, sizeof(word)))
		return "expected CATEGORY REPLY STATUS [TEXT]";
	int cat = bounce_category_parse(word);
	if (cat < 0)
		return "unknown category";
	r->category = (enum bounce_category)cat;
	if (!next_word(&p, word, sizeof(word)) || !parse_reply(word, r))
		return "bad reply code pattern (want e.g. 550, 5xx or *)";
	if (!next_word(&p, word, sizeof(word)) || !parse_status(word, r->status, &r->status_any))
		return "bad status pattern (want e.g. 5.1.1, x.7.26, 5.7.* or *)";
	while (*p == ' ' || *p == '\t')
		p++;
	if (!parse_text(p, r)) {
		rule_clear(r);
		return "empty text alternative";
	}
	return "";
}

int bounce_classifier_load(struct bounce_classifier *c, const char *text, size_t len,
			   const char *origin, char *err, size_t errlen)
{
	size_t first = c->count;
	size_t pos = 0;
	int lineno = 0;

	while (pos < len) {
		char line[LINE_MAX_LEN];
		size_t n = 0;
		lineno++;
		while (pos < len && text[pos] != '\n') {
			if (n + 1 >= sizeof(line) || text[pos] == '\0')
				goto bad_length;
			line[n++] = text[pos++];
		}
		pos++;
		while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
			n--;
		line[n] = '\0';
		const char *s = line;
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0' || *s == '#')
			continue;
		struct bounce_rule r;
		const char *why = parse_line(s, &r);
		if (*why != '\0') {
			snprintf(err, errlen, "%s line %d: %s", origin, lineno, why);
			goto fail;
		}
		if (c->count == c->cap) {
			c->cap = c->cap ? c->cap * 2 : 64;
			c->rules = xrealloc(c->rules, c->cap * sizeof(*c->rules));
		}
		c->rules[c->count++] = r;
	}
	return 0;
bad_length:
	snprintf(err, errlen, "%s line %d: line too long or contains NUL", origin, lineno);
fail:
	while (c->count > first)
		rule_clear(&c->rules[--c->count]);
	return -EINVAL;
}

struct bounce_classifier *bounce_classifier_default(void)
{
	struct bounce_classifier *c = bounce_classifier_new();
	char err[256];

	if (bounce_classifier_load(c, bounce_patterns_builtin, bounce_patterns_builtin_len,
				   "bounce-patterns.txt", err, sizeof(err)) < 0) {
		fprintf(stderr, "built-in bounce table: %s\n", err);
		abort();
	}
	return c;
}

/* reply_matches - the rule's reply pattern against code (0: ours). */
static bool reply_matches(const struct bounce_rule *r, int code)
{
	if (r->reply_any)
		return true;
	if (code < 200 || code > 599)
		return false;
	char digits[3] = { (char)('0' + code / 100), (char)('0' + code / 10 % 10), (char)('0' + code % 10) };
	for (int i = 0; i < 3; i++)
		if (r->reply[i] != 'x' && r->reply[i] != digits[i])
			return false;
	return true;
}

/* status_parse - "5.1.1" into three numbers; false when it is not one. */
static bool status_parse(const char *s, int out[3])
{
	for (int i = 0; i < 3; i++) {
		if (!isdigit((unsigned char)*s))
			return false;
		int v = 0;
		int digits = 0;
		while (isdigit((unsigned char)*s) && digits < 4) {
			v = v * 10 + (*s++ - '0');
			digits++;
		}
		out[i] = v;
		if (i < 2 && *s++ != '.')
			return false;
	}
	return *s == '\0' || *s == ' ';
}

static bool text_matches(const struct bounce_rule *r, const char *lower)
{
	if (r->text == NULL)
		return true;
	const char *p = r->text;
	for (size_t k = 0; k < r->text_count; k++, p += strlen(p) + 1)
		if (strstr(lower, p) != NULL)
			return true;
	return false;
}

enum bounce_category bounce_classify(const struct bounce_classifier *c, int code,
				     const char *enhanced, const char *text)
{
	char lower[TEXT_MAX];
	int status[3];
	bool has_status = enhanced != NULL && status_parse(enhanced, status);
	size_t n = 0;

	for (const char *p = text ? text : ""; *p != '\0' && n + 1 < sizeof(lower); p++)
		lower[n++] = (char)tolower((unsigned char)*p);
	lower[n] = '\0';
	for (size_t i = 0; c != NULL && i < c->count; i++) {
		const struct bounce_rule *r = &c->rules[i];
		if (!reply_matches(r, code))
			continue;
		if (!r->status_any) {
			if (!has_status)
				continue;
			bool ok = true;
			for (int k = 0; k < 3 && ok; k++)
				ok = r->status[k] == RULE_ANY || r->status[k] == status[k];
			if (!ok)
				continue;
		}
		if (text_matches(r, lower))
			return r->category;
	}
	return BOUNCE_CAT_OTHER;
}
