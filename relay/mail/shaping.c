/*
 * shaping - sites and response rules; see shaping.h. Pure.
 */
#include "shaping.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
	struct shaping_source sources[SHAPING_MAX_SOURCES];
	size_t source_count;
	struct shaping_pool pools[SHAPING_MAX_POOLS];
	size_t pool_count;
	struct sender_pool { char *sender; unsigned pool; } *senders;   /* senders = ( ... ) */
	size_t sender_count;
};

struct shaping_matcher {
	regex_t *re;                       /* per rule; valid where has[i] */
	bool *has;
	size_t count;
};

static const char *const action_names[SHAPING_ACTION_COUNT] = { "suspend", "bounce", "suppress", "lower" };
static const char *const limit_names[SHAPING_LIMIT_COUNT] = { "message_rate", "connection_rate", "max_connections" };

const char *shaping_limit_name(enum shaping_limit_kind k)
{
	return (unsigned)k < SHAPING_LIMIT_COUNT ? limit_names[k] : "?";
}

int shaping_limit_parse(const char *name)
{
	for (int i = 0; i < SHAPING_LIMIT_COUNT; i++)
		if (strcmp(name, limit_names[i]) == 0)
			return i;
	return -1;
}

bool shaping_rate_parse(const char *text, struct shaping_rate *out)
{
	static const struct { const char *unit; int64_t ms; } units[] = {
		{ "s", 1000 }, { "sec", 1000 }, { "second", 1000 }, { "m", 60000 }, { "min", 60000 },
		{ "minute", 60000 }, { "h", 3600000 }, { "hour", 3600000 }, { "d", 86400000 }, { "day", 86400000 },
	};
	char *end;

	*out = (struct shaping_rate){ 0, 0, 0 };
	if (text[0] == '\0' || strcmp(text, "0") == 0)
		return true;
	if (!isdigit((unsigned char)text[0]))
		return false;
	unsigned long long count = strtoull(text, &end, 10);
	if (count == 0 || count > 1000000 || *end != '/')
		return false;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end + 1, units[i].unit) == 0) {
			/* At least a microsecond per token (token_bucket). */
			if ((int64_t)count > units[i].ms * 1000)
				return false;
			*out = (struct shaping_rate){ (uint32_t)count, units[i].ms, 0 };
			return true;
		}
	}
	return false;
}

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
		for (size_t k = 0; k < r->sites[i].domain_count; k++)
			free(r->sites[i].domains[k]);
		free(r->sites[i].domains);
	}
	for (size_t i = 0; i < r->source_count; i++)
		free(r->sources[i].warmup_daily);
	for (size_t i = 0; i < r->rule_count; i++)
		free(r->rules[i].text_copy);
	free(r->rules);
	for (size_t i = 0; i < r->sender_count; i++)
		free(r->senders[i].sender);
	free(r->senders);
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
	if (!name_ok(name) || shaping_site_find(r, name) >= 0)
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
	s->pool = -1;
	s->slot = (unsigned)r->site_count;
	r->site_count++;
	return 0;
}

int shaping_site_set_domains(struct shaping_rules *r, size_t site, const char *const *domains, size_t n)
{
	struct shaping_site *s = &r->sites[site];
	char buf[256];

	for (size_t i = 0; i < n; i++)
		if (domains[i][0] == '.' || !suffix_normalise(domains[i], buf, sizeof(buf)))
			return -EINVAL;
	s->domains = xreallocarray(s->domains, s->domain_count + n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		suffix_normalise(domains[i], buf, sizeof(buf));
		s->domains[s->domain_count++] = xstrdup(buf);
	}
	return 0;
}

int shaping_domain_add(struct shaping_rules *r, const char *domain)
{
	char buf[SHAPING_NAME_MAX];
	int rc;

	if (domain[0] == '.' || !suffix_normalise(domain, buf, sizeof(buf)))
		return -EINVAL;
	rc = shaping_site_add(r, buf, NULL, 0);
	if (rc < 0)
		return rc;
	struct shaping_site *s = &r->sites[r->site_count - 1];
	s->domain_entry = true;
	const char *one = buf;
	return shaping_site_set_domains(r, r->site_count - 1, &one, 1);
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

int shaping_source_add(struct shaping_rules *r, const char *name, const char *address, const char *ehlo)
{
	struct shaping_source src;

	if (r->source_count == SHAPING_MAX_SOURCES)
		return -ENOSPC;
	if (!name_ok(name) || shaping_source_find(r, name) >= 0 || strlen(address) >= sizeof(src.address) ||
	    strlen(ehlo) >= sizeof(src.ehlo))
		return -EINVAL;
	memset(&src, 0, sizeof(src));
	struct sockaddr_in *sin = (struct sockaddr_in *)&src.addr;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&src.addr;
	if (inet_pton(AF_INET, address, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		src.addr_len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, address, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		src.addr_len = sizeof(*sin6);
	} else {
		return -EINVAL;
	}
	for (const char *p = ehlo; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
			return -EINVAL;
	snprintf(src.name, sizeof(src.name), "%s", name);
	snprintf(src.address, sizeof(src.address), "%s", address);
	snprintf(src.ehlo, sizeof(src.ehlo), "%s", ehlo);
	r->sources[r->source_count++] = src;
	return 0;
}

int shaping_pool_add(struct shaping_rules *r, const char *name, const char *const *sources, const unsigned *weights,
		     size_t n)
{
	struct shaping_pool pool;

	if (r->pool_count == SHAPING_MAX_POOLS)
		return -ENOSPC;
	if (!name_ok(name) || shaping_pool_find(r, name) >= 0 || n == 0 || n > SHAPING_MAX_SOURCES)
		return -EINVAL;
	memset(&pool, 0, sizeof(pool));
	for (size_t i = 0; i < n; i++) {
		int k = shaping_source_find(r, sources[i]);
		if (k < 0 || weights[i] == 0 || weights[i] > 1000000)
			return -EINVAL;
		pool.sources[i] = (unsigned)k;
		pool.weights[i] = weights[i];
		pool.total += weights[i];
	}
	pool.count = n;
	snprintf(pool.name, sizeof(pool.name), "%s", name);
	r->pools[r->pool_count++] = pool;
	return 0;
}

int shaping_source_find(const struct shaping_rules *r, const char *name)
{
	for (size_t i = 0; r != NULL && i < r->source_count; i++)
		if (strcmp(r->sources[i].name, name) == 0)
			return (int)i;
	return -1;
}

int shaping_pool_find(const struct shaping_rules *r, const char *name)
{
	for (size_t i = 0; r != NULL && i < r->pool_count; i++)
		if (strcmp(r->pools[i].name, name) == 0)
			return (int)i;
	return -1;
}

size_t shaping_source_count(const struct shaping_rules *r)
{
	return r != NULL ? r->source_count : 0;
}

size_t shaping_pool_count(const struct shaping_rules *r)
{
	return r != NULL ? r->pool_count : 0;
}

const struct shaping_source *shaping_source_at(const struct shaping_rules *r, size_t i)
{
	return &r->sources[i];
}

const struct shaping_pool *shaping_pool_at(const struct shaping_rules *r, size_t i)
{
	return &r->pools[i];
}

unsigned shaping_pool_pick(const struct shaping_pool *p, uint64_t random)
{
	uint64_t x = random % p->total;

	for (size_t i = 0; i < p->count; i++) {
		if (x < p->weights[i])
			return p->sources[i];
		x -= p->weights[i];
	}
	return p->sources[p->count - 1];
}

int shaping_source_set_warmup(struct shaping_rules *r, size_t i, int64_t start_day, const uint32_t *daily, size_t n)
{
	struct shaping_source *src = &r->sources[i];

	if (n == 0)
		return -EINVAL;
	for (size_t k = 0; k < n; k++)
		if (daily[k] == 0)
			return -EINVAL;
	free(src->warmup_daily);
	src->warmup_daily = xcalloc(n, sizeof(uint32_t));
	memcpy(src->warmup_daily, daily, n * sizeof(uint32_t));
	src->warmup_days = n;
	src->warmup_start_day = start_day;
	return 0;
}

uint32_t shaping_source_daily_limit(const struct shaping_source *src, int64_t day)
{
	if (src->warmup_days == 0)
		return 0;
	if (day < src->warmup_start_day)
		return src->warmup_daily[0];
	int64_t k = day - src->warmup_start_day;
	return k < (int64_t)src->warmup_days ? src->warmup_daily[k] : 0;
}

bool shaping_day_parse(const char *text, int64_t *day)
{
	int y, m, d, n = 0;
	static const int month_days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	if (sscanf(text, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || text[n] != '\0' || n != 10 || y < 1970 ||
	    m < 1 || m > 12 || d < 1)
		return false;
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (d > month_days[m - 1] + (m == 2 && leap))
		return false;
	/* Days from civil (Howard Hinnant's algorithm), March-based years. */
	int yy = m <= 2 ? y - 1 : y;
	int era = yy / 400, yoe = yy - era * 400;
	int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	*day = (int64_t)era * 146097 + doe - 719468;
	return true;
}

int shaping_pool_pick_among(const struct shaping_pool *p, const bool *usable, uint64_t random)
{
	uint64_t total = 0;

	for (size_t i = 0; i < p->count; i++)
		total += usable[i] ? p->weights[i] : 0;
	if (total == 0)
		return -1;
	uint64_t x = random % total;
	for (size_t i = 0; i < p->count; i++) {
		if (!usable[i])
			continue;
		if (x < p->weights[i])
			return (int)p->sources[i];
		x -= p->weights[i];
	}
	return -1;
}

/* same_domain - a (any case, maybe a trailing dot) equals b (normalised). */
static bool same_domain(const char *a, const char *b)
{
	size_t n = strlen(a), m = strlen(b);

	if (n == m + 1 && a[m] == '.')
		n--;
	return n == m && strncasecmp(a, b, n) == 0;
}

int shaping_site_of_domain(const struct shaping_rules *r, const char *domain, const char *const *mx_names,
			   size_t count)
{
	for (size_t i = 0; r != NULL && i < r->site_count; i++) {
		if (r->sites[i].domain_entry)
			continue;
		for (size_t k = 0; k < r->sites[i].domain_count; k++)
			if (same_domain(domain, r->sites[i].domains[k]))
				return (int)i;
	}
	return count > 0 ? shaping_site_of(r, mx_names, count) : -1;
}

int shaping_domain_find(const struct shaping_rules *r, const char *domain)
{
	for (size_t i = 0; r != NULL && i < r->site_count; i++)
		if (r->sites[i].domain_entry && same_domain(domain, r->sites[i].domains[0]))
			return (int)i;
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
	if ((rule->action == SHAPING_SUSPEND || rule->action == SHAPING_LOWER) && rule->duration_ms <= 0) {
		snprintf(err, errlen, "%s needs a duration", shaping_action_name(rule->action));
		return -EINVAL;
	}
	if (rule->action == SHAPING_LOWER &&
	    (rule->limit == SHAPING_LIMIT_MAX_CONNECTIONS ? rule->lower_count == 0 : rule->lower_rate.count == 0)) {
		snprintf(err, errlen, "lower needs limit and value (e.g. limit = \"message_rate\"; value = \"10/min\")");
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

int shaping_sender_add(struct shaping_rules *r, const char *sender, const char *pool)
{
	int k = shaping_pool_find(r, pool);
	const char *at = strchr(sender, '@');
	size_t n = strlen(sender);

	if (k < 0 || n == 0 || n > 320 || (at != NULL && (at == sender || at[1] == '\0')) ||
	    (sender[0] == '.' && n < 2) || strpbrk(sender, " \t<>,;\"") != NULL)
		return -EINVAL;
	for (size_t i = 0; i < r->sender_count; i++)
		if (strcasecmp(r->senders[i].sender, sender) == 0)
			return -EEXIST;
	r->senders = xreallocarray(r->senders, r->sender_count + 1, sizeof(*r->senders));
	r->senders[r->sender_count].sender = xstrdup(sender);
	r->senders[r->sender_count].pool = (unsigned)k;
	r->sender_count++;
	return 0;
}

int shaping_sender_pool(const struct shaping_rules *r, const char *sender)
{
	const char *at = sender != NULL ? strrchr(sender, '@') : NULL;
	int best = -1;
	size_t best_rank = 0;

	if (r == NULL || at == NULL)
		return -1;
	/* As delivery.sender_routes: the address, the domain, then the
	 * longest ".parent"; a few entries, so a scan. */
	for (size_t i = 0; i < r->sender_count; i++) {
		const char *s = r->senders[i].sender;
		size_t n = strlen(s), rank;
		if (strchr(s, '@') != NULL) {
			if (strcasecmp(s, sender) != 0)
				continue;
			rank = SIZE_MAX;
		} else if (s[0] == '.') {
			size_t dl = strlen(at + 1);
			if (dl <= n || strcasecmp(at + 1 + dl - n, s) != 0)
				continue;
			rank = n;
		} else {
			if (strcasecmp(at + 1, s) != 0)
				continue;
			rank = SIZE_MAX - 1;
		}
		if (best < 0 || rank > best_rank) {
			best = (int)r->senders[i].pool;
			best_rank = rank;
		}
	}
	return best;
}

size_t shaping_sender_count(const struct shaping_rules *r)
{
	return r != NULL ? r->sender_count : 0;
}

const char *shaping_sender_at(const struct shaping_rules *r, size_t i)
{
	return r->senders[i].sender;
}

int shaping_sender_pool_at(const struct shaping_rules *r, size_t i)
{
	return (int)r->senders[i].pool;
}

int shaping_pool_choose(const struct shaping_pool *p, const struct shaping_source_view *view, uint64_t random,
			int64_t *wait_ms)
{
	bool usable[SHAPING_MAX_SOURCES];
	int64_t soonest = -1;

	for (size_t i = 0; i < p->count; i++) {
		const struct shaping_source_view *v = &view[i];
		int64_t w = v->suspended_ms;
		w = v->slot_ms > w ? v->slot_ms : w;
		w = v->rate_ms > w ? v->rate_ms : w;
		w = v->day_ms > w ? v->day_ms : w;
		usable[i] = w <= 0;
		if (w > 0 && (soonest < 0 || w < soonest))
			soonest = w;
	}
	int k = shaping_pool_pick_among(p, usable, random);
	*wait_ms = k >= 0 ? 0 : soonest > 0 ? soonest : 1;
	return k;
}
