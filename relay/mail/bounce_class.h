/*
 * bounce_class - the category of a bounced or deferred recipient, from
 * its reply code, enhanced status code and text.
 *
 *   struct bounce_classifier *c = bounce_classifier_new();
 *   bounce_classifier_load(c, bounce_patterns_builtin, bounce_patterns_builtin_len,
 *                          "built-in", err, sizeof(err));
 *   enum bounce_category k = bounce_classify(c, 550, "5.1.1", "user unknown");
 *   c = bounce_classifier_free(c);
 *
 * Rules come from a table, one per line: "CATEGORY REPLY STATUS [TEXT]"
 * (share/bounce-patterns.txt describes the format and is the table built
 * into the daemon, bounce_patterns_builtin). Rules are tried in the order
 * they were loaded; the first that matches decides; none gives
 * BOUNCE_CAT_OTHER. Text patterns are case-insensitive substrings, not
 * regular expressions: glibc's regexec takes a mutex per pattern, and the
 * workers share one classifier (the config's) without locks. A loaded
 * classifier is immutable and may be read by any number of threads.
 *
 * Ownership: the classifier copies what it loads; the caller frees it.
 */
#ifndef RINGMAIL_BOUNCE_CLASS_H
#define RINGMAIL_BOUNCE_CLASS_H

#include <stdbool.h>
#include <stddef.h>

enum bounce_category {
	BOUNCE_CAT_INVALID_RECIPIENT,
	BOUNCE_CAT_MAILBOX_FULL,
	BOUNCE_CAT_POLICY,              /* spam or policy block, blocklists */
	BOUNCE_CAT_AUTHENTICATION,      /* DMARC, SPF, DKIM */
	BOUNCE_CAT_RATE_LIMIT,
	BOUNCE_CAT_DNS,
	BOUNCE_CAT_TLS,
	BOUNCE_CAT_CONNECTION,
	BOUNCE_CAT_MESSAGE_TOO_LARGE,
	BOUNCE_CAT_OTHER,
	BOUNCE_CAT_COUNT
};

/* The table that ships with ringmail (share/bounce-patterns.txt, built in). */
extern const char bounce_patterns_builtin[];
extern const size_t bounce_patterns_builtin_len;

/* bounce_category_name - "invalid_recipient", "mailbox_full", "policy",
 * "authentication", "rate_limit", "dns", "tls", "connection",
 * "message_too_large" or "other". */
const char *bounce_category_name(enum bounce_category category);

/* bounce_category_parse - the category named name; -1 when none is. */
int bounce_category_parse(const char *name);

struct bounce_classifier;

/* bounce_classifier_new - a classifier with no rules. */
struct bounce_classifier *bounce_classifier_new(void);

/* bounce_classifier_load - append the rules of text (len bytes, lines in
 * the table's format) after those already loaded. 0, or -EINVAL with
 * "ORIGIN line N: ..." in err (nothing of text is kept then). */
int bounce_classifier_load(struct bounce_classifier *c, const char *text, size_t len,
			   const char *origin, char *err, size_t errlen);

/* bounce_classifier_default - a new classifier holding the built-in table
 * (aborts if the built-in table does not parse: a build defect). */
struct bounce_classifier *bounce_classifier_default(void);

/* bounce_classifier_rules - how many rules are loaded. */
size_t bounce_classifier_rules(const struct bounce_classifier *c);

/* bounce_classify - the category of a reply: code (0 for a decision of
 * ours), enhanced status ("5.1.1"; NULL or "" for none), text (NULL ok). */
enum bounce_category bounce_classify(const struct bounce_classifier *c, int code,
				     const char *enhanced, const char *text);

/* bounce_classifier_free - accepts NULL, returns NULL. */
struct bounce_classifier *bounce_classifier_free(struct bounce_classifier *c);

#endif
