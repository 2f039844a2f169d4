/*
 * config_shaping - load the shaping file; see config_shaping.h.
 */
#include "config_shaping.h"

#include <errno.h>
#include <stddef.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shaping_state.h"
#include "xalloc.h"

static int fail(char *err, size_t errlen, const char *path, int line, const char *what, const char *detail)
{
	snprintf(err, errlen, "%s line %d: %s%s", path, line, what, detail);
	return -EINVAL;
}

/* duration_ms - "250ms", "30s", "5m", "2h", "1d" or plain seconds. */
static bool duration_ms(const char *text, int64_t *out)
{
	static const struct { const char *unit; int64_t ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 }, { "", 1000 },
	};
	char *end;
	long long v = strtoll(text, &end, 10);

	if (end == text || v <= 0 || v > 100LL * 365 * 86400)
		return false;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) == 0) {
			*out = v * units[i].ms;
			return true;
		}
	}
	return false;
}

/* string_of - the group's string key, "" when absent; NULL when present
 * but not a string. */
static const char *string_of(config_setting_t *g, const char *key)
{
	config_setting_t *s = config_setting_get_member(g, key);

	if (s == NULL)
		return "";
	return config_setting_type(s) == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;
}

/* check_keys - every member of g is one of keys. */
static const char *check_keys(config_setting_t *g, const char *const *keys, size_t n)
{
	for (int i = 0; i < config_setting_length(g); i++) {
		const char *name = config_setting_name(config_setting_get_elem(g, (unsigned)i));
		size_t k;
		for (k = 0; k < n && strcmp(keys[k], name) != 0; k++)
			;
		if (k == n)
			return name;
	}
	return NULL;
}

/* load_limits - a site's or domain entry's limit keys (absent: none). */
static int load_limits(config_setting_t *g, struct shaping_limits *out, const char *path, char *err, size_t errlen)
{
	static const struct { const char *key; size_t off; int max; } counts[] = {
		{ "max_connections", offsetof(struct shaping_limits, max_connections), 100000 },
		{ "max_messages_per_connection", offsetof(struct shaping_limits, max_messages_per_connection), 1000000 },
		{ "max_recipients", offsetof(struct shaping_limits, max_recipients), 100000 },
		{ "connection_burst", offsetof(struct shaping_limits, connection_rate.burst), 100000 },
		{ "message_burst", offsetof(struct shaping_limits, message_rate.burst), 100000 },
	};
	static const struct { const char *key; size_t off; } rates[] = {
		{ "connection_rate", offsetof(struct shaping_limits, connection_rate) },
		{ "message_rate", offsetof(struct shaping_limits, message_rate) },
	};
	int line = config_setting_source_line(g);

	for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		const char *text = string_of(g, rates[i].key);
		struct shaping_rate *r = (struct shaping_rate *)((char *)out + rates[i].off);
		if (text == NULL || !shaping_rate_parse(text, r))
			return fail(err, errlen, path, line, rates[i].key,
				    " is a rate like \"100/min\", \"5/s\" or \"20/hour\" (at most 1000000, and 1 per microsecond)");
	}
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		config_setting_t *v = config_setting_get_member(g, counts[i].key);
		if (v == NULL)
			continue;
		if (config_setting_type(v) != CONFIG_TYPE_INT || config_setting_get_int(v) < 1 ||
		    config_setting_get_int(v) > counts[i].max)
			return fail(err, errlen, path, config_setting_source_line(v), counts[i].key,
				    " is a whole number from 1 up");
		*(uint32_t *)((char *)out + counts[i].off) = (uint32_t)config_setting_get_int(v);
	}
	return 0;
}

/* strings_of - an array of strings (NULL-terminated, owned by the file),
 * or NULL with *n -1 when the key is not one; absent: n 0. */
static const char **strings_of(config_setting_t *g, const char *key, int *n)
{
	config_setting_t *a = config_setting_get_member(g, key);

	*n = 0;
	if (a == NULL)
		return xcalloc(1, sizeof(char *));
	if (!config_setting_is_aggregate(a)) {
		*n = -1;
		return NULL;
	}
	*n = config_setting_length(a);
	const char **v = xcalloc((size_t)*n + 1, sizeof(char *));
	for (int i = 0; i < *n; i++) {
		v[i] = config_setting_get_string_elem(a, (unsigned)i);
		if (v[i] == NULL) {
			free(v);
			*n = -1;
			return NULL;
		}
	}
	return v;
}

static const char *const limit_keys[] = {
	"max_connections", "max_messages_per_connection", "max_recipients", "connection_rate",
	"connection_burst", "message_rate", "message_burst", "pool", "per_source",
};
#define LIMIT_KEYS (sizeof(limit_keys) / sizeof(limit_keys[0]))

/* check_site_keys - every member of g is one of keys or a limit key. */
static const char *check_site_keys(config_setting_t *g, const char *const *keys, size_t n)
{
	for (int i = 0; i < config_setting_length(g); i++) {
		const char *name = config_setting_name(config_setting_get_elem(g, (unsigned)i));
		bool ok = false;
		for (size_t k = 0; k < n && !ok; k++)
			ok = strcmp(keys[k], name) == 0;
		for (size_t k = 0; k < LIMIT_KEYS && !ok; k++)
			ok = strcmp(limit_keys[k], name) == 0;
		if (!ok)
			return name;
	}
	return NULL;
}

/* make_pairs - a state slot ("site/source") per source of the file for
 * the site: sources load before sites. */
static int make_pairs(struct shaping_rules *r, struct shaping_site *site, const char *path, int line, char *err,
		      size_t errlen)
{
	for (size_t k = 0; k < shaping_source_count(r); k++) {
		char name[2 * SHAPING_NAME_MAX + 2];
		snprintf(name, sizeof(name), "%s/%s", site->name, shaping_source_at(r, k)->name);
		int slot = shaping_state_slot(name);
		if (slot < 0)
			return fail(err, errlen, path, line, "too many site x source pairs in this run at ", site->name);
		site->pair_slots[k] = (unsigned)slot;
	}
	site->has_pairs = true;
	return 0;
}

/* load_per_source - the entry's per_source = { ... } limits, which apply
 * to each (source, site) pair apart, and a state slot ("site/source") per
 * source of the file: sources load before sites. */
static int load_per_source(struct shaping_rules *r, struct shaping_site *site, config_setting_t *g,
			   const char *path, char *err, size_t errlen)
{
	static const char *const keys[] = {
		"max_connections", "max_messages_per_connection", "connection_rate", "connection_burst",
		"message_rate", "message_burst",
	};
	config_setting_t *ps = config_setting_get_member(g, "per_source");

	if (ps == NULL)
		return 0;
	int line = config_setting_source_line(ps);
	const char *bad = config_setting_is_group(ps) ? check_keys(ps, keys, sizeof(keys) / sizeof(keys[0])) : "";
	if (bad != NULL)
		return fail(err, errlen, path, line,
			    "per_source is { max_connections; max_messages_per_connection; connection_rate; message_rate; "
			    "(and their bursts) }; unknown key or not a group: ", bad);
	int rc = load_limits(ps, &site->per_source, path, err, errlen);
	if (rc < 0)
		return rc;
	site->has_per_source = true;
	return make_pairs(r, site, path, line, err, errlen);
}

/* site_finish - limits, pool and state slot of the entry just added. */
static int site_finish(struct shaping_rules *r, config_setting_t *g, const char *path, char *err, size_t errlen)
{
	struct shaping_site *site = shaping_site_at(r, shaping_site_count(r) - 1);
	int line = config_setting_source_line(g);
	int rc = load_limits(g, &site->limits, path, err, errlen);

	if (rc < 0)
		return rc;
	const char *pool = string_of(g, "pool");
	if (pool == NULL)
		return fail(err, errlen, path, line, "pool is the name of a pool", "");
	if (pool[0] != '\0') {
		site->pool = shaping_pool_find(r, pool);
		if (site->pool < 0)
			return fail(err, errlen, path, line, "no pool named ", pool);
	}
	int slot = shaping_state_slot(site->name);
	if (slot < 0)
		return fail(err, errlen, path, line, "too many site and domain names in this run: ", site->name);
	site->slot = (unsigned)slot;
	return load_per_source(r, site, g, path, err, errlen);
}

static int load_site(struct shaping_rules *r, config_setting_t *g, const char *path, char *err, size_t errlen)
{
	static const char *const keys[] = { "name", "mx", "domains" };
	int line = config_setting_source_line(g);
	const char *bad = config_setting_is_group(g) ? check_site_keys(g, keys, 3) : "";
	int n, nd;

	if (bad != NULL)
		return fail(err, errlen, path, line, "sites: unknown key or not a group: ", bad);
	const char *name = string_of(g, "name");
	const char **suffixes = strings_of(g, "mx", &n);
	const char **domains = strings_of(g, "domains", &nd);
	if (name == NULL || name[0] == '\0' || n < 0 || nd < 0 || n + nd == 0) {
		free(suffixes);
		free(domains);
		return fail(err, errlen, path, line,
			    "sites: each needs name = \"...\" and mx = [ \".suffix\", ... ] or domains = [ \"domain\", ... ]", "");
	}
	int rc = shaping_site_add(r, name, suffixes, (size_t)n);
	if (rc == 0 && nd > 0)
		rc = shaping_site_set_domains(r, shaping_site_count(r) - 1, domains, (size_t)nd);
	free(suffixes);
	free(domains);
	if (rc == -ENOSPC)
		return fail(err, errlen, path, line, "sites: too many sites at ", name);
	if (rc < 0)
		return fail(err, errlen, path, line, "sites: bad or repeated name, or bad mx suffix or domain: ", name);
	return site_finish(r, g, path, err, errlen);
}

/* load_domain - an entry of "domains": one destination domain's limits. */
static int load_domain(struct shaping_rules *r, config_setting_t *g, const char *path, char *err, size_t errlen)
{
	static const char *const keys[] = { "name" };
	int line = config_setting_source_line(g);
	const char *bad = config_setting_is_group(g) ? check_site_keys(g, keys, 1) : "";

	if (bad != NULL)
		return fail(err, errlen, path, line, "domains: unknown key or not a group: ", bad);
	const char *name = string_of(g, "name");
	if (name == NULL || name[0] == '\0')
		return fail(err, errlen, path, line, "domains: each needs name = \"example.com\"", "");
	int rc = shaping_domain_add(r, name);
	if (rc == -ENOSPC)
		return fail(err, errlen, path, line, "domains: too many sites and domains at ", name);
	if (rc < 0)
		return fail(err, errlen, path, line,
			    "domains: a bad domain name (at most 63 characters), or one named twice or like a site: ", name);
	return site_finish(r, g, path, err, errlen);
}

static int load_response(struct shaping_rules *r, config_setting_t *g, const char *path, char *err, size_t errlen)
{
	static const char *const keys[] = { "code", "enhanced", "text", "action", "scope", "duration", "limit", "value" };
	int line = config_setting_source_line(g);
	const char *bad = config_setting_is_group(g) ? check_keys(g, keys, 8) : "";
	struct shaping_response rule = { .scope = SHAPING_SCOPE_SITE, .line = line };
	char why[300];

	if (bad != NULL)
		return fail(err, errlen, path, line, "responses: unknown key or not a group: ", bad);
	const char *code = string_of(g, "code"), *enh = string_of(g, "enhanced"), *text = string_of(g, "text");
	const char *action = string_of(g, "action"), *scope = string_of(g, "scope");
	const char *duration = string_of(g, "duration"), *limit = string_of(g, "limit"), *value = string_of(g, "value");
	if (code == NULL || enh == NULL || text == NULL || action == NULL || scope == NULL || duration == NULL ||
	    limit == NULL || value == NULL)
		return fail(err, errlen, path, line, "responses: every value is a string", "");
	int a = shaping_action_parse(action);
	if (a < 0)
		return fail(err, errlen, path, line, "responses: action is suspend, bounce, suppress or lower, not ", action);
	rule.action = (enum shaping_action)a;
	if (rule.action == SHAPING_LOWER) {
		int k = shaping_limit_parse(limit);
		if (k < 0)
			return fail(err, errlen, path, line,
				    "responses: lower needs limit = \"message_rate\", \"connection_rate\" or \"max_connections\", not ", limit);
		rule.limit = (enum shaping_limit_kind)k;
		char *end;
		unsigned long count = strtoul(value, &end, 10);
		bool ok = k == SHAPING_LIMIT_MAX_CONNECTIONS
			? value[0] >= '1' && value[0] <= '9' && *end == '\0' && count <= 100000
			: shaping_rate_parse(value, &rule.lower_rate) && rule.lower_rate.count > 0;
		if (!ok)
			return fail(err, errlen, path, line,
				    "responses: lower's value is a rate (\"10/min\") or, for max_connections, a number (\"2\"), not ", value);
		rule.lower_count = (uint32_t)count;
	} else if (limit[0] != '\0' || value[0] != '\0') {
		return fail(err, errlen, path, line, "responses: limit and value belong to action = \"lower\"", "");
	}
	if (strcmp(scope, "domain") == 0)
		rule.scope = SHAPING_SCOPE_DOMAIN;
	else if (strcmp(scope, "source") == 0)
		rule.scope = SHAPING_SCOPE_SOURCE;
	else if (strcmp(scope, "source_site") == 0)
		rule.scope = SHAPING_SCOPE_SOURCE_SITE;
	else if (scope[0] != '\0' && strcmp(scope, "site") != 0)
		return fail(err, errlen, path, line, "responses: scope is site, domain, source or source_site, not ", scope);
	if ((rule.scope == SHAPING_SCOPE_SOURCE || rule.scope == SHAPING_SCOPE_SOURCE_SITE) &&
	    rule.action != SHAPING_SUSPEND)
		return fail(err, errlen, path, line, "responses: scope = source or source_site is for action = suspend, not ",
			    action);
	if (duration[0] != '\0' && !duration_ms(duration, &rule.duration_ms))
		return fail(err, errlen, path, line, "responses: duration is e.g. \"30s\", \"10m\", \"1h\", not ", duration);
	snprintf(rule.reply, sizeof(rule.reply), "%s", code[0] ? code : "*");
	if (strlen(code) >= sizeof(rule.reply) || strlen(enh) >= sizeof(rule.status))
		return fail(err, errlen, path, line, "responses: bad code or enhanced", "");
	snprintf(rule.status, sizeof(rule.status), "%s", enh[0] ? enh : "*");
	rule.text = text;
	if (shaping_response_add(r, &rule, why, sizeof(why)) < 0)
		return fail(err, errlen, path, line, "responses: ", why);
	return 0;
}

/* load_warmup - a source's warmup_start ("2026-12-01") and warmup_daily
 * ([ 50, 100, 200 ]): both or neither. */
static int load_warmup(struct shaping_rules *r, size_t idx, config_setting_t *g, const char *path, char *err,
		       size_t errlen)
{
	const char *start = string_of(g, "warmup_start");
	config_setting_t *daily = config_setting_get_member(g, "warmup_daily");
	int line = config_setting_source_line(g);
	int64_t day;

	if (start != NULL && start[0] == '\0' && daily == NULL)
		return 0;
	if (start == NULL || !shaping_day_parse(start, &day) || daily == NULL || !config_setting_is_array(daily) ||
	    config_setting_length(daily) == 0 || config_setting_length(daily) > 3650)
		return fail(err, errlen, path, line,
			    "sources: warm-up needs warmup_start = \"YYYY-MM-DD\" and warmup_daily = [ 50, 100, ... ] (messages per day)", "");
	int n = config_setting_length(daily);
	uint32_t *v = xcalloc((size_t)n, sizeof(uint32_t));
	for (int i = 0; i < n; i++) {
		config_setting_t *e = config_setting_get_elem(daily, (unsigned)i);
		long long x = config_setting_type(e) == CONFIG_TYPE_INT ? config_setting_get_int(e) : 0;
		if (x < 1 || x > 100000000) {
			free(v);
			return fail(err, errlen, path, line, "sources: warmup_daily values are 1..100000000", "");
		}
		v[i] = (uint32_t)x;
	}
	int rc = shaping_source_set_warmup(r, idx, day, v, (size_t)n);
	free(v);
	return rc < 0 ? fail(err, errlen, path, line, "sources: bad warm-up", "") : 0;
}

static int load_source(struct shaping_rules *r, config_setting_t *g, const char *path, char *err, size_t errlen)
{
	static const char *const keys[] = { "name", "address", "ehlo", "warmup_start", "warmup_daily" };
	int line = config_setting_source_line(g);
	const char *bad = config_setting_is_group(g) ? check_keys(g, keys, 5) : "";

	if (bad != NULL)
		return fail(err, errlen, path, line, "sources: unknown key or not a group: ", bad);
	const char *name = string_of(g, "name"), *address = string_of(g, "address"), *ehlo = string_of(g, "ehlo");
	if (name == NULL || address == NULL || ehlo == NULL || name[0] == '\0' || address[0] == '\0')
		return fail(err, errlen, path, line, "sources: each needs name = \"...\" and address = \"192.0.2.10\" (ehlo optional)", "");
	int rc = shaping_source_add(r, name, address, ehlo);
	if (rc == -ENOSPC)
		return fail(err, errlen, path, line, "sources: too many at ", name);
	if (rc < 0)
		return fail(err, errlen, path, line,
			    "sources: a bad or repeated name, an address that is not numeric IPv4/IPv6, or a bad ehlo name: ", name);
	size_t idx = shaping_source_count(r) - 1;
	int slot = shaping_state_source_slot(name);
	if (slot < 0)
		return fail(err, errlen, path, line, "sources: too many source names in this run: ", name);
	((struct shaping_source *)shaping_source_at(r, idx))->slot = (unsigned)slot;
	char suspend_name[SHAPING_NAME_MAX + 8];
	snprintf(suspend_name, sizeof(suspend_name), "source:%s", name);
	slot = shaping_state_slot(suspend_name);
	if (slot < 0)
		return fail(err, errlen, path, line, "sources: too many names in this run: ", name);
	((struct shaping_source *)shaping_source_at(r, idx))->suspend_slot = (unsigned)slot;
	return load_warmup(r, idx, g, path, err, errlen);
}

static int load_pool(struct shaping_rules *r, config_setting_t *g, const char *path, char *err, size_t errlen)
{
	static const char *const keys[] = { "name", "sources" };
	int line = config_setting_source_line(g);
	const char *bad = config_setting_is_group(g) ? check_keys(g, keys, 2) : "";
	const char *names[SHAPING_MAX_SOURCES];
	unsigned weights[SHAPING_MAX_SOURCES];

	if (bad != NULL)
		return fail(err, errlen, path, line, "pools: unknown key or not a group: ", bad);
	const char *name = string_of(g, "name");
	config_setting_t *list = config_setting_get_member(g, "sources");
	if (name == NULL || name[0] == '\0' || list == NULL || !config_setting_is_list(list) ||
	    config_setting_length(list) == 0 || config_setting_length(list) > SHAPING_MAX_SOURCES)
		return fail(err, errlen, path, line,
			    "pools: each needs name = \"...\" and sources = ( { source = \"...\"; weight = 1; }, ... )", "");
	int n = config_setting_length(list);
	for (int i = 0; i < n; i++) {
		config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
		static const char *const ekeys[] = { "source", "weight" };
		int weight = 1;
		names[i] = config_setting_is_group(e) && check_keys(e, ekeys, 2) == NULL ? string_of(e, "source") : NULL;
		config_setting_t *w = names[i] != NULL ? config_setting_get_member(e, "weight") : NULL;
		if (w != NULL)
			weight = config_setting_type(w) == CONFIG_TYPE_INT ? config_setting_get_int(w) : 0;
		if (names[i] == NULL || names[i][0] == '\0' || weight < 1 || weight > 1000000)
			return fail(err, errlen, path, config_setting_source_line(e),
				    "pools: a member is { source = \"name\"; weight = 1..1000000; } in ", name);
		weights[i] = (unsigned)weight;
	}
	int rc = shaping_pool_add(r, name, names, weights, (size_t)n);
	if (rc == -ENOSPC)
		return fail(err, errlen, path, line, "pools: too many at ", name);
	if (rc < 0)
		return fail(err, errlen, path, line, "pools: a bad or repeated name, or a source not in sources: ", name);
	return 0;
}

static int load_sender(struct shaping_rules *r, config_setting_t *g, const char *path, char *err, size_t errlen)
{
	static const char *const keys[] = { "sender", "pool" };
	int line = config_setting_source_line(g);
	const char *bad = config_setting_is_group(g) ? check_keys(g, keys, 2) : "";

	if (bad != NULL)
		return fail(err, errlen, path, line, "senders: unknown key or not a group: ", bad);
	const char *sender = string_of(g, "sender"), *pool = string_of(g, "pool");
	if (sender == NULL || pool == NULL || sender[0] == '\0' || pool[0] == '\0')
		return fail(err, errlen, path, line,
			    "senders: each needs sender = \"news.example.com\" (an address, a domain or .parent) and pool = \"...\"", "");
	if (shaping_pool_find(r, pool) < 0)
		return fail(err, errlen, path, line, "senders: no pool named ", pool);
	int rc = shaping_sender_add(r, sender, pool);
	if (rc == -EEXIST)
		return fail(err, errlen, path, line, "senders: appears twice: ", sender);
	if (rc < 0)
		return fail(err, errlen, path, line, "senders: not an address, a domain or a .parent: ", sender);
	return 0;
}

/* load_section - one top-level list; kinds in load order. */
static const char *const section_names[] = { "sources", "pools", "sites", "domains", "responses", "senders" };

static int load_entry(struct shaping_rules *r, int kind, config_setting_t *g, const char *path, char *err,
		      size_t errlen)
{
	switch (kind) {
	case 0: return load_source(r, g, path, err, errlen);
	case 1: return load_pool(r, g, path, err, errlen);
	case 2: return load_site(r, g, path, err, errlen);
	case 3: return load_domain(r, g, path, err, errlen);
	case 4: return load_response(r, g, path, err, errlen);
	default: return load_sender(r, g, path, err, errlen);
	}
}

int config_shaping_load(const char *path, struct shaping_rules **out, char *err, size_t errlen)
{
	config_t file;
	int rc = 0;

	*out = NULL;
	config_init(&file);
	if (config_read_file(&file, path) != CONFIG_TRUE) {
		if (config_error_type(&file) == CONFIG_ERR_FILE_IO)
			snprintf(err, errlen, "%s: cannot read the file", path);
		else
			snprintf(err, errlen, "%s line %d: %s", path, config_error_line(&file), config_error_text(&file));
		config_destroy(&file);
		return -EINVAL;
	}
	struct shaping_rules *r = shaping_rules_new();
	config_setting_t *root = config_root_setting(&file);
	for (int i = 0; i < config_setting_length(root) && rc == 0; i++) {
		config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
		const char *name = config_setting_name(s);
		size_t k;
		for (k = 0; k < 6 && strcmp(name, section_names[k]) != 0; k++)
			;
		if (k == 6)
			rc = fail(err, errlen, path, config_setting_source_line(s), "unknown key ", name);
		else if (!config_setting_is_list(s))
			rc = fail(err, errlen, path, config_setting_source_line(s), name, " is a list of groups: ( { ... }, ... )");
	}
	/* Sources before the pools naming them, pools before the sites. */
	for (int kind = 0; kind < 6 && rc == 0; kind++) {
		config_setting_t *s = config_setting_get_member(root, section_names[kind]);
		for (int k = 0; s != NULL && k < config_setting_length(s) && rc == 0; k++)
			rc = load_entry(r, kind, config_setting_get_elem(s, (unsigned)k), path, err, errlen);
	}
	/* A source_site rule suspends (source, site) pairs: every site and
	 * domain entry needs its pair slots. */
	for (size_t i = 0; rc == 0 && i < shaping_response_count(r); i++) {
		if (shaping_response_at(r, i)->scope != SHAPING_SCOPE_SOURCE_SITE)
			continue;
		for (size_t k = 0; rc == 0 && k < shaping_site_count(r); k++)
			if (!shaping_site_at(r, k)->has_pairs)
				rc = make_pairs(r, shaping_site_at(r, k), path, shaping_response_at(r, i)->line, err, errlen);
		break;
	}
	config_destroy(&file);
	if (rc < 0) {
		shaping_rules_free(r);
		return rc;
	}
	*out = r;
	return 0;
}
