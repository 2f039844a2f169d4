/*
 * shaping - traffic shaping rules, pure: sites (groups of destination
 * domains recognised by their MX host names) and response rules (patterns
 * on a receiver's reply that trigger an action).
 *
 *   struct shaping_rules *r = shaping_rules_new();
 *   shaping_site_add(r, "gmail", suffixes, n);          from the shaping file
 *   shaping_response_add(r, &(struct shaping_response){...}, err, n);
 *   struct shaping_matcher *m = shaping_matcher_new(r);  one per thread
 *   int site = shaping_site_of(r, mx_names, count);      -1: none
 *   const struct shaping_response *hit = shaping_match(r, m, 421, "4.7.28", text);
 *
 * A site matches a domain when one of its MX host names ends with one of
 * the site's suffixes (".google.com" matches "aspmx.l.google.com";
 * "google.com" also matches "google.com" itself), without regard to case
 * and a trailing dot; the first site in the file's order wins.
 *
 * Response rules are tried in order; the first whose reply code pattern
 * ("421", "4xx", "*"), enhanced status pattern ("4.7.28", "x.7.*", "*")
 * and text (a POSIX extended regular expression, case-insensitive; none
 * = any) all match decides. Regular expressions are compiled per thread
 * (shaping_matcher): glibc's regexec takes a mutex inside each compiled
 * pattern, and workers never lock.
 *
 * Ownership: rules copy what they are given and are immutable once built
 * (shared by every worker through the config); a matcher belongs to one
 * thread and must be freed before its rules.
 */
#ifndef RINGMAIL_SHAPING_H
#define RINGMAIL_SHAPING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHAPING_MAX_SITES 256
#define SHAPING_NAME_MAX 64

enum shaping_action {
	SHAPING_SUSPEND,                   /* no connection to the site or domain for duration */
	SHAPING_BOUNCE,                    /* a temporary failure bounces now */
	SHAPING_SUPPRESS,                  /* the recipient goes on the suppression list */
	SHAPING_ACTION_COUNT
};

enum shaping_scope {
	SHAPING_SCOPE_SITE,                /* the domain's site (its domain when it has none) */
	SHAPING_SCOPE_DOMAIN,
};

struct shaping_response {
	char reply[4];                     /* "421", "4xx", "*" */
	char status[16];                   /* "4.7.28", "x.7.*", "*" */
	const char *text;                  /* regex, or NULL/"" for any */
	enum shaping_action action;
	enum shaping_scope scope;
	int64_t duration_ms;               /* SUSPEND */
	int line;                          /* in the shaping file, for the log */
};

struct shaping_site {
	char name[SHAPING_NAME_MAX];
	char **suffixes;                   /* lower case, no trailing dot */
	size_t suffix_count;
	unsigned slot;                     /* the caller's: e.g. its state's index */
};

struct shaping_rules;
struct shaping_matcher;

struct shaping_rules *shaping_rules_new(void);
struct shaping_rules *shaping_rules_free(struct shaping_rules *r);

/* shaping_site_add - a site; -EINVAL for a bad or repeated name (letters,
 * digits, '-', '_', '.'), an empty suffix list or a bad suffix, -ENOSPC
 * past SHAPING_MAX_SITES. */
int shaping_site_add(struct shaping_rules *r, const char *name, const char *const *suffixes, size_t n);

/* shaping_response_add - a rule (copied); -EINVAL with why in err for a bad
 * pattern or regular expression. */
int shaping_response_add(struct shaping_rules *r, const struct shaping_response *rule, char *err, size_t errlen);

size_t shaping_site_count(const struct shaping_rules *r);
struct shaping_site *shaping_site_at(const struct shaping_rules *r, size_t i);
/* shaping_site_find - the index of the site named name, or -1. */
int shaping_site_find(const struct shaping_rules *r, const char *name);
size_t shaping_response_count(const struct shaping_rules *r);
const struct shaping_response *shaping_response_at(const struct shaping_rules *r, size_t i);

/* shaping_site_of - the index of the first site that one of the MX names
 * belongs to, or -1. */
int shaping_site_of(const struct shaping_rules *r, const char *const *mx_names, size_t count);

/* shaping_matcher_new - the rules' regular expressions compiled for one
 * thread (they compiled once already in shaping_response_add). */
struct shaping_matcher *shaping_matcher_new(const struct shaping_rules *r);
struct shaping_matcher *shaping_matcher_free(struct shaping_matcher *m);

/* shaping_match - the first rule matching the reply (code 0 matches only
 * "*"; enhanced NULL or "" matches only "*"), or NULL. */
const struct shaping_response *shaping_match(const struct shaping_rules *r, const struct shaping_matcher *m,
					     int code, const char *enhanced, const char *text);

const char *shaping_action_name(enum shaping_action a);
/* shaping_action_parse - the action named name ("suspend", "bounce",
 * "suppress"), or -1. */
int shaping_action_parse(const char *name);

#endif
