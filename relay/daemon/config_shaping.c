/*
 * config_shaping - load the shaping file; see config_shaping.h.
 */
#include "config_shaping.h"

#include <errno.h>
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

static int load_site(struct shaping_rules *r, config_setting_t *g, const char *path, char *err, size_t errlen)
{
	static const char *const keys[] = { "name", "mx" };
	int line = config_setting_source_line(g);
	const char *bad = config_setting_is_group(g) ? check_keys(g, keys, 2) : "";

	if (bad != NULL)
		return fail(err, errlen, path, line, "sites: unknown key or not a group: ", bad);
	const char *name = string_of(g, "name");
	config_setting_t *mx = config_setting_get_member(g, "mx");
	if (name == NULL || name[0] == '\0' || mx == NULL || !config_setting_is_aggregate(mx))
		return fail(err, errlen, path, line, "sites: each needs name = \"...\" and mx = [ \".suffix\", ... ]", "");
	int n = config_setting_length(mx);
	const char **suffixes = xcalloc((size_t)n + 1, sizeof(char *));
	for (int i = 0; i < n; i++) {
		suffixes[i] = config_setting_get_string_elem(mx, (unsigned)i);
		if (suffixes[i] == NULL) {
			free(suffixes);
			return fail(err, errlen, path, line, "sites: mx entries are strings: ", name);
		}
	}
	int rc = shaping_site_add(r, name, suffixes, (size_t)n);
	free(suffixes);
	if (rc == -ENOSPC)
		return fail(err, errlen, path, line, "sites: too many sites at ", name);
	if (rc < 0)
		return fail(err, errlen, path, line, "sites: bad or repeated name, or bad mx suffix: ", name);
	int slot = shaping_state_slot(name);
	if (slot < 0)
		return fail(err, errlen, path, line, "sites: too many site names in this run: ", name);
	shaping_site_at(r, shaping_site_count(r) - 1)->slot = (unsigned)slot;
	return 0;
}

static int load_response(struct shaping_rules *r, config_setting_t *g, const char *path, char *err, size_t errlen)
{
	static const char *const keys[] = { "code", "enhanced", "text", "action", "scope", "duration" };
	int line = config_setting_source_line(g);
	const char *bad = config_setting_is_group(g) ? check_keys(g, keys, 6) : "";
	struct shaping_response rule = { .scope = SHAPING_SCOPE_SITE, .line = line };
	char why[300];

	if (bad != NULL)
		return fail(err, errlen, path, line, "responses: unknown key or not a group: ", bad);
	const char *code = string_of(g, "code"), *enh = string_of(g, "enhanced"), *text = string_of(g, "text");
	const char *action = string_of(g, "action"), *scope = string_of(g, "scope");
	const char *duration = string_of(g, "duration");
	if (code == NULL || enh == NULL || text == NULL || action == NULL || scope == NULL || duration == NULL)
		return fail(err, errlen, path, line, "responses: every value is a string", "");
	int a = shaping_action_parse(action);
	if (a < 0)
		return fail(err, errlen, path, line, "responses: action is suspend, bounce or suppress, not ", action);
	rule.action = (enum shaping_action)a;
	if (strcmp(scope, "domain") == 0)
		rule.scope = SHAPING_SCOPE_DOMAIN;
	else if (scope[0] != '\0' && strcmp(scope, "site") != 0)
		return fail(err, errlen, path, line, "responses: scope is site or domain, not ", scope);
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
		bool sites = strcmp(name, "sites") == 0;
		if (!sites && strcmp(name, "responses") != 0) {
			rc = fail(err, errlen, path, config_setting_source_line(s), "unknown key ", name);
			break;
		}
		if (!config_setting_is_list(s)) {
			rc = fail(err, errlen, path, config_setting_source_line(s), name, " is a list of groups: ( { ... }, ... )");
			break;
		}
		for (int k = 0; k < config_setting_length(s) && rc == 0; k++) {
			config_setting_t *g = config_setting_get_elem(s, (unsigned)k);
			rc = sites ? load_site(r, g, path, err, errlen) : load_response(r, g, path, err, errlen);
		}
	}
	config_destroy(&file);
	if (rc < 0) {
		shaping_rules_free(r);
		return rc;
	}
	*out = r;
	return 0;
}
