/*
 * mta_sts - MTA-STS policy text, TXT record and MX matching; see mta_sts.h.
 * Pure: no I/O, no allocation, no locale (ASCII case folding by hand).
 */
#include "mta_sts.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* fail - set *why and return -EINVAL, so an error path is one line. */
static int fail(const char **why, const char *reason)
{
	if (why != NULL)
		*why = reason;
	return -EINVAL;
}

const char *mta_sts_mode_name(enum mta_sts_mode mode)
{
	switch (mode) {
	case MTA_STS_MODE_TESTING:
		return "testing";
	case MTA_STS_MODE_ENFORCE:
		return "enforce";
	case MTA_STS_MODE_NONE:
		break;
	}
	return "none";
}

/* mta_sts_domain_valid - RFC 5321 Domain: sub-domains of Let-dig [Ldh-str]. */
bool mta_sts_domain_valid(const char *name, size_t len)
{
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > MTA_STS_NAME_MAX)
		return false;
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '.') {
			if (label == 0 || name[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!is_alpha(c) && !is_digit(c) && !(c == '-' && label > 0))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && name[len - 1] != '-';   /* "a.." is no name */
}

/* ext_name_valid - (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / "."),
 * the grammar of unknown keys in both the policy and the TXT record. */
static bool ext_name_valid(const char *s, size_t len)
{
	if (len == 0 || len > 32 || !(is_alpha((unsigned char)s[0]) || is_digit((unsigned char)s[0])))
		return false;
	for (size_t i = 1; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!is_alpha(c) && !is_digit(c) && c != '_' && c != '-' && c != '.')
			return false;
	}
	return true;
}

static bool key_is(const char *key, size_t len, const char *want)
{
	return strlen(want) == len && memcmp(key, want, len) == 0;
}

/* parse_max_age - 1*10DIGIT, capped at a year. */
static int parse_max_age(const char *v, size_t len, uint32_t *out, const char **why)
{
	if (len == 0 || len > 10)
		return fail(why, "max_age is not 1 to 10 digits");
	uint64_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (!is_digit((unsigned char)v[i]))
			return fail(why, "max_age is not a number");
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	*out = n > MTA_STS_MAX_AGE_MAX ? MTA_STS_MAX_AGE_MAX : (uint32_t)n;
	return 0;
}

/* add_mx - one mx value: ["*."] Domain, stored lower case without a
 * trailing dot. */
static int add_mx(struct mta_sts_policy *p, const char *v, size_t len, const char **why)
{
	size_t skip = len >= 2 && v[0] == '*' && v[1] == '.' ? 2 : 0;
	if (!mta_sts_domain_valid(v + skip, len - skip))
		return fail(why, "mx is not a host name or *.domain pattern");
	if (p->mx_count == MTA_STS_MX_MAX)
		return fail(why, "too many mx lines");
	if (v[len - 1] == '.')
		len--;
	char *dst = p->mx[p->mx_count++];
	for (size_t i = 0; i < len; i++)
		dst[i] = (char)lower((unsigned char)v[i]);
	dst[len] = '\0';
	return 0;
}

enum { SEEN_VERSION = 1, SEEN_MODE = 2, SEEN_MAX_AGE = 4 };

/* policy_field - apply one "key: value" line (value already trimmed). */
static int policy_field(struct mta_sts_policy *p, unsigned *seen, const char *key, size_t klen,
			const char *v, size_t vlen, const char **why)
{
	if (key_is(key, klen, "mx"))
		return add_mx(p, v, vlen, why);
	if (key_is(key, klen, "version")) {
		if (*seen & SEEN_VERSION)
			return fail(why, "version appears twice");
		*seen |= SEEN_VERSION;
		return key_is(v, vlen, "STSv1") ? 0 : fail(why, "version is not STSv1");
	}
	if (key_is(key, klen, "mode")) {
		if (*seen & SEEN_MODE)
			return fail(why, "mode appears twice");
		*seen |= SEEN_MODE;
		if (key_is(v, vlen, "enforce"))
			p->mode = MTA_STS_MODE_ENFORCE;
		else if (key_is(v, vlen, "testing"))
			p->mode = MTA_STS_MODE_TESTING;
		else if (key_is(v, vlen, "none"))
			p->mode = MTA_STS_MODE_NONE;
		else
			return fail(why, "mode is not enforce, testing or none");
		return 0;
	}
	if (key_is(key, klen, "max_age")) {
		if (*seen & SEEN_MAX_AGE)
			return fail(why, "max_age appears twice");
		*seen |= SEEN_MAX_AGE;
		return parse_max_age(v, vlen, &p->max_age_s, why);
	}
	if (!ext_name_valid(key, klen))
		return fail(why, "a key is not a valid field name");
	return 0;                          /* an extension: ignored, RFC 8461 3.2 */
}

/* policy_line - split one line (no terminator) into key and value. */
static int policy_line(struct mta_sts_policy *p, unsigned *seen, const char *s, size_t len,
		       const char **why)
{
	const char *colon = memchr(s, ':', len);
	if (colon == NULL)
		return fail(why, "a line has no ':'");
	size_t klen = (size_t)(colon - s);
	const char *v = colon + 1, *end = s + len;
	while (v < end && is_wsp((unsigned char)*v))
		v++;
	while (end > v && is_wsp((unsigned char)end[-1]))
		end--;
	if (v == end)
		return fail(why, "a field has an empty value");
	for (const char *c = v; c < end; c++) {
		unsigned char u = (unsigned char)*c;
		if ((u < 0x21 && !is_wsp(u)) || u == 0x7f)
			return fail(why, "a value holds a control character");
	}
	return policy_field(p, seen, s, klen, v, (size_t)(end - v), why);
}

int mta_sts_policy_parse(const char *text, size_t len, struct mta_sts_policy *out, const char **why)
{
	if (len > MTA_STS_POLICY_MAX) {
		fail(why, "policy is larger than 64 KiB");
		return -E2BIG;
	}
	memset(out, 0, sizeof(*out));
	unsigned seen = 0;
	size_t pos = 0;
	bool blank_seen = false;

	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - text) : len;
		size_t line_len = end - pos;
		if (line_len > 0 && text[pos + line_len - 1] == '\r')
			line_len--;
		if (memchr(text + pos, '\0', line_len) != NULL || memchr(text + pos, '\r', line_len) != NULL)
			return fail(why, "a line holds a NUL or a bare CR");
		if (line_len == 0) {
			blank_seen = true;
		} else {
			if (blank_seen)
				return fail(why, "a blank line before the end");
			if (is_wsp((unsigned char)text[pos]))
				return fail(why, "a line begins with a blank");
			int rc = policy_line(out, &seen, text + pos, line_len, why);
			if (rc < 0)
				return rc;
		}
		pos = end + 1;
	}
	if (!(seen & SEEN_VERSION))
		return fail(why, "no version");
	if (!(seen & SEEN_MODE))
		return fail(why, "no mode");
	if (!(seen & SEEN_MAX_AGE))
		return fail(why, "no max_age");
	if (out->mode != MTA_STS_MODE_NONE && out->mx_count == 0)
		return fail(why, "no mx");
	return 0;
}

/* mta_sts_mx_match - RFC 8461 4.1: exact, or "*." covering one label. */
bool mta_sts_mx_match(const char *pattern, const char *host)
{
	size_t hlen = strlen(host);
	if (hlen > 0 && host[hlen - 1] == '.')
		hlen--;
	if (hlen == 0)
		return false;
	if (pattern[0] == '*' && pattern[1] == '.') {
		const char *dot = memchr(host, '.', hlen);
		if (dot == NULL || dot == host)
			return false;
		hlen -= (size_t)(dot + 1 - host);
		host = dot + 1;
		pattern += 2;
	}
	size_t plen = strlen(pattern);
	if (plen != hlen)
		return false;
	for (size_t i = 0; i < hlen; i++)
		if (lower((unsigned char)host[i]) != (unsigned char)pattern[i])
			return false;
	return true;
}

bool mta_sts_policy_mx_allowed(const struct mta_sts_policy *p, const char *host)
{
	for (size_t i = 0; i < p->mx_count; i++)
		if (mta_sts_mx_match(p->mx[i], host))
			return true;
	return false;
}

/* record_field - one "name=value" of the TXT record after v=STSv1. */
static int record_field(const char *s, size_t len, char *id, bool *have_id, const char **why)
{
	const char *eq = memchr(s, '=', len);
	if (eq == NULL)
		return fail(why, "a record field has no '='");
	size_t nlen = (size_t)(eq - s), vlen = len - nlen - 1;
	const char *v = eq + 1;
	if (key_is(s, nlen, "id")) {
		if (*have_id)
			return fail(why, "the record has two ids");
		if (vlen == 0 || vlen > MTA_STS_ID_MAX)
			return fail(why, "the record's id is not 1 to 32 characters");
		for (size_t i = 0; i < vlen; i++)
			if (!is_alpha((unsigned char)v[i]) && !is_digit((unsigned char)v[i]))
				return fail(why, "the record's id is not letters and digits");
		memcpy(id, v, vlen);
		id[vlen] = '\0';
		*have_id = true;
		return 0;
	}
	if (!ext_name_valid(s, nlen))
		return fail(why, "a record field name is not valid");
	if (vlen == 0)
		return fail(why, "a record field has an empty value");
	for (size_t i = 0; i < vlen; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c < 0x21 || c > 0x7e || c == '=')
			return fail(why, "a record field value is not valid");
	}
	return 0;
}

int mta_sts_record_parse(const char *txt, size_t len, char *id, const char **why)
{
	static const char version[] = "v=STSv1";
	size_t vl = sizeof(version) - 1;
	if (len < vl || memcmp(txt, version, vl) != 0 ||
	    (len > vl && txt[vl] != ';' && !is_wsp((unsigned char)txt[vl])))
		return 0;
	if (len > MTA_STS_TXT_MAX)
		return fail(why, "the record is too long");
	bool have_id = false;
	size_t pos = vl;
	for (;;) {
		while (pos < len && is_wsp((unsigned char)txt[pos]))
			pos++;
		if (pos == len)
			break;
		if (txt[pos] != ';')
			return fail(why, "record fields are not separated by ';'");
		pos++;
		while (pos < len && is_wsp((unsigned char)txt[pos]))
			pos++;
		if (pos == len)
			break;                 /* a trailing ';' is allowed */
		size_t start = pos;
		while (pos < len && txt[pos] != ';' && !is_wsp((unsigned char)txt[pos]))
			pos++;
		int rc = record_field(txt + start, pos - start, id, &have_id, why);
		if (rc < 0)
			return rc;
	}
	return have_id ? 1 : fail(why, "the record has no id");
}

int mta_sts_record_select(const char *const *txts, const size_t *lens, size_t n, char *id,
			  const char **why)
{
	int found = 0, rc = 0;
	char one[MTA_STS_ID_MAX + 1];
	for (size_t i = 0; i < n; i++) {
		int r = mta_sts_record_parse(txts[i], lens[i], one, why);
		if (r == 0)
			continue;
		if (++found > 1)
			return fail(why, "several v=STSv1 records");
		rc = r;
		if (r > 0)
			memcpy(id, one, sizeof(one));
	}
	return found == 0 ? 0 : rc;
}

static const char cache_magic[] = "ringmail-mta-sts 1\n";

size_t mta_sts_cache_header(char *out, size_t size, const char *id, int64_t fetched_s)
{
	int n = snprintf(out, size, "%sid: %s\nfetched: %" PRId64 "\n\n", cache_magic, id, fetched_s);
	return n < 0 || (size_t)n >= size ? 0 : (size_t)n;
}

/* cache_line - "KEY: value\n" at *pos; the value's span. */
static bool cache_line(const char *text, size_t len, size_t *pos, const char *key, const char **v,
		       size_t *vlen)
{
	size_t klen = strlen(key);
	const char *nl = memchr(text + *pos, '\n', len - *pos);
	if (nl == NULL || len - *pos < klen || memcmp(text + *pos, key, klen) != 0)
		return false;
	*v = text + *pos + klen;
	*vlen = (size_t)(nl - *v);
	*pos = (size_t)(nl - text) + 1;
	return true;
}

int mta_sts_cache_parse(const char *text, size_t len, struct mta_sts_cached *out, const char **why)
{
	size_t mlen = sizeof(cache_magic) - 1, pos = mlen, vlen;
	const char *v;
	memset(out, 0, sizeof(*out));
	if (len < mlen || memcmp(text, cache_magic, mlen) != 0)
		return fail(why, "not a ringmail MTA-STS cache file");
	if (!cache_line(text, len, &pos, "id: ", &v, &vlen) || vlen == 0 || vlen > MTA_STS_ID_MAX)
		return fail(why, "cache file: bad id line");
	for (size_t i = 0; i < vlen; i++)
		if (!is_alpha((unsigned char)v[i]) && !is_digit((unsigned char)v[i]))
			return fail(why, "cache file: bad id line");
	memcpy(out->id, v, vlen);
	if (!cache_line(text, len, &pos, "fetched: ", &v, &vlen) || vlen == 0 || vlen > 18)
		return fail(why, "cache file: bad fetched line");
	for (size_t i = 0; i < vlen; i++) {
		if (!is_digit((unsigned char)v[i]))
			return fail(why, "cache file: bad fetched line");
		out->fetched_s = out->fetched_s * 10 + (v[i] - '0');
	}
	if (pos >= len || text[pos] != '\n')
		return fail(why, "cache file: no blank line after the header");
	pos++;
	return mta_sts_policy_parse(text + pos, len - pos, &out->policy, why);
}

bool mta_sts_cache_valid(const struct mta_sts_cached *c, int64_t now_s)
{
	return c != NULL && now_s < c->fetched_s + (int64_t)c->policy.max_age_s;
}

enum mta_sts_action mta_sts_decide(const struct mta_sts_cached *c, enum mta_sts_txt_state txt,
				   const char *id, int64_t now_s, int64_t refresh_before_s, bool *refresh)
{
	bool valid = mta_sts_cache_valid(c, now_s);
	if (refresh != NULL)
		*refresh = false;
	if (txt == MTA_STS_TXT_ID && (!valid || strcmp(c->id, id) != 0))
		return MTA_STS_FETCH;      /* new or changed policy (RFC 8461 5.1) */
	if (!valid)
		return MTA_STS_NO_POLICY;
	/* Still valid: a TXT record gone or unreachable does not remove it,
	 * else an attacker who strips DNS answers strips the policy. */
	if (refresh != NULL)
		*refresh = c->fetched_s + (int64_t)c->policy.max_age_s - now_s <= refresh_before_s;
	return MTA_STS_USE_CACHED;
}
