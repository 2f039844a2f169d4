/*
 * smtp_cmd - command line and ESMTP parameter parsing (see smtp_cmd.h).
 *
 * Parameters are looked up in one table per command. Each entry has a small
 * parse function; duplicates are refused (501) because a client that sends
 * SIZE twice is broken and guessing which one it meant helps nobody, unknown
 * keywords get 555 5.5.4 as RFC 5321 4.1.1.11 asks.
 */
#include "smtp_cmd.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#define REPLY_MAIL_SYNTAX "501 5.5.4 Syntax: MAIL FROM:<address>"
#define REPLY_RCPT_SYNTAX "501 5.5.4 Syntax: RCPT TO:<address>"
#define REPLY_PARAM_SYNTAX "501 5.5.4 Bad parameter syntax"
#define REPLY_PARAM_DUP "501 5.5.4 Duplicate parameter"
#define REPLY_PARAM_UNKNOWN "555 5.5.4 Unsupported parameter"
#define REPLY_PARAM_NO_ESMTP "555 5.5.4 Parameters need EHLO"
#define REPLY_UTF8_NEEDED "553 5.6.7 Non-ASCII address requires SMTPUTF8"

/* smtp_cmd_split - verb and arguments */
void smtp_cmd_split(const char *line, size_t len, struct smtp_cmd_line *out)
{
	size_t i = 0;

	while (i < len && line[i] != ' ')
		i++;
	out->verb = line;
	out->verb_len = i;
	while (i < len && line[i] == ' ')
		i++;
	out->args = line + i;
	out->args_len = len - i;
	while (out->args_len > 0 && out->args[out->args_len - 1] == ' ')
		out->args_len--;
}

/* smtp_cmd_verb_is - case-insensitive verb match */
bool smtp_cmd_verb_is(const struct smtp_cmd_line *l, const char *verb)
{
	size_t n = strlen(verb);

	return l->verb_len == n && strncasecmp(l->verb, verb, n) == 0;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')	/* RFC says upper case; be liberal */
		return c - 'a' + 10;
	return -1;
}

/* smtp_xtext_decode - xtext = *( xchar / "+" 2HEXCHAR ) */
int smtp_xtext_decode(const char *in, size_t len, char *out, size_t out_size)
{
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		int hi, lo;

		if (c == '+') {
			if (i + 2 >= len)
				return -EINVAL;
			hi = hex_value(in[i + 1]);
			lo = hex_value(in[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -EINVAL;
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return -EINVAL;
		}
		if (n + 1 >= out_size)
			return -E2BIG;
		out[n++] = (char)c;
	}
	if (out_size == 0)
		return -E2BIG;
	out[n] = 0;
	return (int)n;
}

/* smtp_xtext_encode - "+", "=", and octets outside 33..126 become +XX */
int smtp_xtext_encode(const char *in, size_t len, char *out, size_t out_size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c < 33 || c > 126 || c == '+' || c == '=') {
			if (n + 3 >= out_size)
				return -E2BIG;
			out[n++] = '+';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		} else {
			if (n + 1 >= out_size)
				return -E2BIG;
			out[n++] = (char)c;
		}
	}
	if (out_size == 0)
		return -E2BIG;
	out[n] = 0;
	return (int)n;
}

/* One parsed "KEYWORD[=value]". */
struct param {
	const char *key;
	size_t key_len;
	const char *value;	/* NULL when there is no "=" */
	size_t value_len;
};

static bool value_is(const struct param *p, const char *word)
{
	size_t n = strlen(word);

	return p->value_len == n && strncasecmp(p->value, word, n) == 0;
}

/* param_syntax_ok - esmtp-keyword and esmtp-value of RFC 5321 4.1.2 */
static bool param_syntax_ok(const struct param *p)
{
	size_t i;

	if (p->key_len == 0)
		return false;
	for (i = 0; i < p->key_len; i++) {
		char c = p->key[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || c != '-'))
			return false;
	}
	if (p->value == NULL)
		return true;
	if (p->value_len == 0)
		return false;
	for (i = 0; i < p->value_len; i++) {
		unsigned char c = (unsigned char)p->value[i];
		if (c < 33 || c > 126 || c == '=')
			return false;
	}
	return true;
}

typedef const char *(*param_fn)(const struct param *p, void *params);

struct param_rule {
	const char *keyword;
	param_fn parse;
};

static const char *param_size(const struct param *p, void *arg)
{
	struct smtp_mail_params *mp = arg;
	uint64_t v = 0;
	size_t i;

	if (p->value == NULL)
		return REPLY_PARAM_SYNTAX;
	for (i = 0; i < p->value_len; i++) {
		if (p->value[i] < '0' || p->value[i] > '9')
			return "501 5.5.4 Bad SIZE parameter";
		v = v > (UINT64_MAX - 9) / 10 ? UINT64_MAX : v * 10 + (uint64_t)(p->value[i] - '0');
	}
	mp->has_size = true;
	mp->size = v;
	return NULL;
}

static const char *param_body(const struct param *p, void *arg)
{
	struct smtp_mail_params *mp = arg;

	if (p->value == NULL)
		return REPLY_PARAM_SYNTAX;
	if (value_is(p, "7BIT"))
		mp->body = SMTP_BODY_7BIT;
	else if (value_is(p, "8BITMIME"))
		mp->body = SMTP_BODY_8BITMIME;
	else if (value_is(p, "BINARYMIME"))
		mp->body = SMTP_BODY_BINARYMIME;
	else
		return "501 5.5.4 Bad BODY parameter";
	return NULL;
}

static const char *param_smtputf8(const struct param *p, void *arg)
{
	struct smtp_mail_params *mp = arg;

	if (p->value != NULL)
		return REPLY_PARAM_SYNTAX;
	mp->smtputf8 = true;
	return NULL;
}

/* param_requiretls - RFC 8689 section 2: a keyword without a value */
static const char *param_requiretls(const struct param *p, void *arg)
{
	struct smtp_mail_params *mp = arg;

	if (p->value != NULL)
		return REPLY_PARAM_SYNTAX;
	mp->requiretls = true;
	return NULL;
}

static const char *param_ret(const struct param *p, void *arg)
{
	struct smtp_mail_params *mp = arg;

	if (p->value != NULL && value_is(p, "FULL"))
		mp->ret = SMTP_RET_FULL;
	else if (p->value != NULL && value_is(p, "HDRS"))
		mp->ret = SMTP_RET_HDRS;
	else
		return "501 5.5.4 Bad RET parameter";
	return NULL;
}

static const char *param_envid(const struct param *p, void *arg)
{
	struct smtp_mail_params *mp = arg;

	if (p->value == NULL
	    || smtp_xtext_decode(p->value, p->value_len, mp->envid, sizeof(mp->envid)) < 0)
		return "501 5.5.4 Bad ENVID parameter";
	mp->has_envid = true;
	return NULL;
}

/* param_notify - "NEVER" alone, or a list of SUCCESS, FAILURE, DELAY */
static const char *param_notify(const struct param *p, void *arg)
{
	struct smtp_rcpt_params *rp = arg;
	const char *s = p->value, *end, *comma;
	unsigned bits = 0, bit;

	if (p->value == NULL)
		return "501 5.5.4 Bad NOTIFY parameter";
	end = p->value + p->value_len;
	for (;;) {
		struct param word = { .value = s };

		comma = memchr(s, ',', (size_t)(end - s));
		if (comma == NULL)
			comma = end;
		word.value_len = (size_t)(comma - s);
		if (value_is(&word, "NEVER"))
			bit = SMTP_NOTIFY_NEVER;
		else if (value_is(&word, "SUCCESS"))
			bit = SMTP_NOTIFY_SUCCESS;
		else if (value_is(&word, "FAILURE"))
			bit = SMTP_NOTIFY_FAILURE;
		else if (value_is(&word, "DELAY"))
			bit = SMTP_NOTIFY_DELAY;
		else
			return "501 5.5.4 Bad NOTIFY parameter";
		if (bits & bit)
			return "501 5.5.4 Bad NOTIFY parameter";
		bits |= bit;
		if (comma == end)
			break;
		s = comma + 1;
	}
	if ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER)
		return "501 5.5.4 Bad NOTIFY parameter";
	rp->notify = bits;
	return NULL;
}

/* param_orcpt - addr-type ";" xtext */
static const char *param_orcpt(const struct param *p, void *arg)
{
	struct smtp_rcpt_params *rp = arg;
	const char *semi;
	size_t type_len, i;

	if (p->value == NULL || (semi = memchr(p->value, ';', p->value_len)) == NULL)
		return "501 5.5.4 Bad ORCPT parameter";
	type_len = (size_t)(semi - p->value);
	if (type_len == 0 || type_len > SMTP_ORCPT_TYPE_MAX)
		return "501 5.5.4 Bad ORCPT parameter";
	for (i = 0; i < type_len; i++) {
		char c = p->value[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
			return "501 5.5.4 Bad ORCPT parameter";
		rp->orcpt_type[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	rp->orcpt_type[type_len] = 0;
	if (smtp_xtext_decode(semi + 1, p->value_len - type_len - 1, rp->orcpt,
			      sizeof(rp->orcpt)) <= 0)
		return "501 5.5.4 Bad ORCPT parameter";
	rp->has_orcpt = true;
	return NULL;
}

static const struct param_rule mail_rules[] = {
	{ "SIZE", param_size },
	{ "BODY", param_body },
	{ "SMTPUTF8", param_smtputf8 },
	{ "RET", param_ret },
	{ "ENVID", param_envid },
	{ "REQUIRETLS", param_requiretls },
	{ NULL, NULL },
};

static const struct param_rule rcpt_rules[] = {
	{ "NOTIFY", param_notify },
	{ "ORCPT", param_orcpt },
	{ NULL, NULL },
};

/* parse_params - walk space-separated parameters; seen guards duplicates */
static const char *parse_params(const char *s, size_t len, bool esmtp,
				const struct param_rule *rules, void *params)
{
	const char *end = s + len;
	unsigned seen = 0;

	while (s < end) {
		struct param p = { .key = s };
		const char *tok_end, *eq, *err;
		size_t r;

		if (*s == ' ') {
			s++;
			continue;
		}
		if (!esmtp)
			return REPLY_PARAM_NO_ESMTP;
		tok_end = memchr(s, ' ', (size_t)(end - s));
		if (tok_end == NULL)
			tok_end = end;
		eq = memchr(s, '=', (size_t)(tok_end - s));
		p.key_len = (size_t)((eq ? eq : tok_end) - s);
		if (eq) {
			p.value = eq + 1;
			p.value_len = (size_t)(tok_end - eq - 1);
		}
		if (!param_syntax_ok(&p))
			return REPLY_PARAM_SYNTAX;
		for (r = 0; rules[r].keyword; r++)
			if (strlen(rules[r].keyword) == p.key_len
			    && strncasecmp(rules[r].keyword, p.key, p.key_len) == 0)
				break;
		if (rules[r].keyword == NULL)
			return REPLY_PARAM_UNKNOWN;
		if (seen & (1u << r))
			return REPLY_PARAM_DUP;
		seen |= 1u << r;
		if ((err = rules[r].parse(&p, params)) != NULL)
			return err;
		s = tok_end;
	}
	return NULL;
}

/* split_path - after "FROM:"/"TO:" (spaces tolerated after the colon, as
 * many clients send them), find the <path> and where parameters begin. */
static bool split_path(const char *args, size_t len, const char *prefix,
		       const char **path, size_t *path_len, const char **rest, size_t *rest_len)
{
	size_t n = strlen(prefix), i, end;

	if (len < n || strncasecmp(args, prefix, n) != 0)
		return false;
	for (i = n; i < len && args[i] == ' '; i++)
		;
	end = smtp_address_path_end(args + i, len - i);
	if (end == 0)
		return false;
	*path = args + i;
	*path_len = end;
	*rest = args + i + end;
	*rest_len = len - i - end;
	return *rest_len == 0 || **rest == ' ';
}

/* smtp_cmd_parse_mail - MAIL FROM:<path> [params] */
const char *smtp_cmd_parse_mail(const char *args, size_t len, bool esmtp,
				struct smtp_address *from, struct smtp_mail_params *params)
{
	const char *path, *rest, *err;
	size_t path_len, rest_len;
	int rc;

	memset(params, 0, sizeof(*params));
	if (!split_path(args, len, "FROM:", &path, &path_len, &rest, &rest_len))
		return REPLY_MAIL_SYNTAX;
	if ((err = parse_params(rest, rest_len, esmtp, mail_rules, params)) != NULL)
		return err;
	rc = smtp_address_parse(path, path_len,
				SMTP_ADDRESS_MAIL | (params->smtputf8 ? SMTP_ADDRESS_UTF8 : 0), from);
	switch (rc) {
	case 0:
		return NULL;
	case SMTP_ADDRESS_ETOOLONG:
		return "501 5.1.7 Sender address too long";
	case SMTP_ADDRESS_EUTF8:
		return REPLY_UTF8_NEEDED;
	default:
		return "501 5.1.7 Bad sender address syntax";
	}
}

/* smtp_cmd_parse_rcpt - RCPT TO:<path> [params] */
const char *smtp_cmd_parse_rcpt(const char *args, size_t len, bool esmtp, bool utf8,
				struct smtp_address *to, struct smtp_rcpt_params *params)
{
	const char *path, *rest, *err;
	size_t path_len, rest_len;
	int rc;

	memset(params, 0, sizeof(*params));
	if (!split_path(args, len, "TO:", &path, &path_len, &rest, &rest_len))
		return REPLY_RCPT_SYNTAX;
	if ((err = parse_params(rest, rest_len, esmtp, rcpt_rules, params)) != NULL)
		return err;
	rc = smtp_address_parse(path, path_len,
				SMTP_ADDRESS_RCPT | (utf8 ? SMTP_ADDRESS_UTF8 : 0), to);
	switch (rc) {
	case 0:
		return NULL;
	case SMTP_ADDRESS_ETOOLONG:
		return "501 5.1.3 Recipient address too long";
	case SMTP_ADDRESS_EUTF8:
		return REPLY_UTF8_NEEDED;
	default:
		return "501 5.1.3 Bad recipient address syntax";
	}
}
