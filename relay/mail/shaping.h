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
#include <sys/socket.h>

#define SHAPING_MAX_SITES 256
#define SHAPING_NAME_MAX 64
#define SHAPING_MAX_SOURCES 64

enum shaping_action {
	SHAPING_SUSPEND,                   /* no connection to the site or domain for duration */
	SHAPING_BOUNCE,                    /* a temporary failure bounces now */
	SHAPING_SUPPRESS,                  /* the recipient goes on the suppression list */
	SHAPING_LOWER,                     /* a limit of the site or domain is lowered for duration */
	SHAPING_ACTION_COUNT
};

/* A rate: count per period_ms with a burst (count 0: no limit). */
struct shaping_rate {
	uint32_t count;
	int64_t period_ms;
	uint32_t burst;                    /* 0: 1 */
};

/* The limits a site or a domain entry may set; 0 = none. */
struct shaping_limits {
	uint32_t max_connections;          /* at once, on every worker together */
	uint32_t max_messages_per_connection;
	uint32_t max_recipients;           /* per transaction */
	struct shaping_rate connection_rate;   /* new connections */
	struct shaping_rate message_rate;      /* transactions begun */
};

/* What a "lower" rule lowers. */
enum shaping_limit_kind {
	SHAPING_LIMIT_MESSAGE_RATE,
	SHAPING_LIMIT_CONNECTION_RATE,
	SHAPING_LIMIT_MAX_CONNECTIONS,
	SHAPING_LIMIT_COUNT
};

enum shaping_scope {
	SHAPING_SCOPE_SITE,                /* the domain's site (its domain when it has none) */
	SHAPING_SCOPE_DOMAIN,
	SHAPING_SCOPE_SOURCE,              /* the egress source the reply came to, for every site */
	SHAPING_SCOPE_SOURCE_SITE,         /* that source for the domain's site (or entry) only */
};

struct shaping_response {
	char reply[4];                     /* "421", "4xx", "*" */
	char status[16];                   /* "4.7.28", "x.7.*", "*" */
	const char *text;                  /* regex, or NULL/"" for any */
	enum shaping_action action;
	enum shaping_scope scope;
	int64_t duration_ms;               /* SUSPEND, LOWER */
	enum shaping_limit_kind limit;     /* LOWER: which one */
	struct shaping_rate lower_rate;    /* LOWER of a rate: to this */
	uint32_t lower_count;              /* LOWER of max_connections: to this */
	int line;                          /* in the shaping file, for the log */
};

struct shaping_site {
	char name[SHAPING_NAME_MAX];
	char **suffixes;                   /* lower case, no trailing dot */
	size_t suffix_count;
	char **domains;                    /* listed explicitly: lower case, no trailing dot */
	size_t domain_count;
	bool domain_entry;                 /* a "domains" entry: exactly one domain, its name */
	struct shaping_limits limits;      /* the caller fills them in */
	int pool;                          /* the caller's: the egress pool, -1 none */
	unsigned slot;                     /* the caller's: e.g. its state's index */
	/* Limits for each (egress source, site) pair apart ("per_source",
	 * KumoMTA's egress path): max_connections, max_messages_per_connection,
	 * connection_rate, message_rate; the caller fills them in. */
	bool has_per_source;
	struct shaping_limits per_source;
	bool has_pairs;                    /* pair_slots are made (per_source, or a source_site rule) */
	unsigned pair_slots[SHAPING_MAX_SOURCES];           /* the caller's: per source index, the pair's state */
};

#define SHAPING_MAX_POOLS 64

/* An egress source: a local address outbound connections bind to, with
 * the name it says in EHLO. */
struct shaping_source {
	char name[SHAPING_NAME_MAX];
	char address[64];                  /* as written: "192.0.2.10", "2001:db8::10" */
	struct sockaddr_storage addr;      /* port 0 */
	socklen_t addr_len;
	char ehlo[256];                    /* "" = the relay's hostname */
	/* warm-up: on day k after warmup_start_day (UTC days since the epoch)
	 * at most warmup_daily[k] messages; before it the first, after the
	 * list no limit. warmup_days 0: no warm-up. */
	int64_t warmup_start_day;
	uint32_t *warmup_daily;
	size_t warmup_days;
	unsigned slot;                     /* the caller's: its state's index */
	unsigned suspend_slot;             /* the caller's: its suspension's state ("source:NAME") */
};

/* A pool: sources with weights; each new connection picks one. */
struct shaping_pool {
	char name[SHAPING_NAME_MAX];
	unsigned sources[SHAPING_MAX_SOURCES];   /* indexes of shaping_source_at */
	unsigned weights[SHAPING_MAX_SOURCES];
	size_t count;
	uint64_t total;
};

struct shaping_rules;
struct shaping_matcher;

struct shaping_rules *shaping_rules_new(void);
struct shaping_rules *shaping_rules_free(struct shaping_rules *r);

/* shaping_site_add - a site; -EINVAL for a bad or repeated name (letters,
 * digits, '-', '_', '.'), an empty suffix list or a bad suffix, -ENOSPC
 * past SHAPING_MAX_SITES. */
int shaping_site_add(struct shaping_rules *r, const char *name, const char *const *suffixes, size_t n);

/* shaping_site_set_domains - the site also holds these domains, whatever
 * their MX hosts; -EINVAL for a bad name. A site may then have no mx. */
int shaping_site_set_domains(struct shaping_rules *r, size_t site, const char *const *domains, size_t n);

/* shaping_domain_add - an entry for one destination domain (its limits
 * apply as well as those of its site); -EINVAL for a bad or repeated
 * name (it shares the site names' space and length), -ENOSPC when full. */
int shaping_domain_add(struct shaping_rules *r, const char *domain);

/* shaping_source_add - a source; -EINVAL for a bad or repeated name, an
 * address that is not a numeric IPv4 or IPv6 one, or an EHLO name too
 * long; -ENOSPC past SHAPING_MAX_SOURCES. */
int shaping_source_add(struct shaping_rules *r, const char *name, const char *address, const char *ehlo);
/* shaping_source_set_warmup - source i's schedule (copied): from
 * start_day (UTC days since 1970-01-01) daily[k] messages on day k; -EINVAL
 * for none or a zero. */
int shaping_source_set_warmup(struct shaping_rules *r, size_t i, int64_t start_day, const uint32_t *daily, size_t n);
/* shaping_source_daily_limit - the source's message limit on day (UTC
 * days since the epoch): 0 = none. */
uint32_t shaping_source_daily_limit(const struct shaping_source *src, int64_t day);
/* shaping_day_parse - "2026-12-01" into UTC days since the epoch; false
 * when not a date. */
bool shaping_day_parse(const char *text, int64_t *day);

/* shaping_pool_add - a pool of sources (by name) with weights (1..1000000);
 * -EINVAL for a bad or repeated name, an unknown source, a bad weight or
 * none; -ENOSPC past SHAPING_MAX_POOLS. */
int shaping_pool_add(struct shaping_rules *r, const char *name, const char *const *sources, const unsigned *weights,
		     size_t n);
/* shaping_sender_add - mail from sender (an address, a domain or a
 * ".parent" suffix) goes out through the named pool; -EINVAL for a bad
 * sender or an unknown pool, -EEXIST for a repeated sender. */
int shaping_sender_add(struct shaping_rules *r, const char *sender, const char *pool);
/* shaping_sender_pool - the pool (its index) chosen for the envelope
 * sender, the most specific entry winning (address, domain, longest
 * parent), or -1. */
int shaping_sender_pool(const struct shaping_rules *r, const char *sender);
size_t shaping_sender_count(const struct shaping_rules *r);
/* shaping_sender_at, shaping_sender_pool_at - entry i (< the count). */
const char *shaping_sender_at(const struct shaping_rules *r, size_t i);
int shaping_sender_pool_at(const struct shaping_rules *r, size_t i);
int shaping_source_find(const struct shaping_rules *r, const char *name);
int shaping_pool_find(const struct shaping_rules *r, const char *name);
size_t shaping_source_count(const struct shaping_rules *r);
size_t shaping_pool_count(const struct shaping_rules *r);
const struct shaping_source *shaping_source_at(const struct shaping_rules *r, size_t i);
const struct shaping_pool *shaping_pool_at(const struct shaping_rules *r, size_t i);
/* shaping_pool_pick - the source (its index) a weighted choice with the
 * random number gives: source k for a share weight_k / total of numbers. */
unsigned shaping_pool_pick(const struct shaping_pool *p, uint64_t random);
/* shaping_pool_pick_among - the same among the pool's members k with
 * usable[k] true; -1 when none is. */
int shaping_pool_pick_among(const struct shaping_pool *p, const bool *usable, uint64_t random);

/* What stops one source of a pool from taking a new connection now
 * (shaping_pool_choose): each field a wait in ms, 0 = nothing. */
struct shaping_source_view {
	int64_t suspended_ms;              /* a "source" suspension runs this long yet */
	int64_t slot_ms;                   /* a per_source max_connections is reached: look again then */
	int64_t rate_ms;                   /* a per_source connection_rate's next token */
	int64_t day_ms;                    /* its warm-up share of the day is sent: look again then */
};

/* shaping_pool_choose - a weighted choice (as shaping_pool_pick_among)
 * among the pool's members k whose view[k] has no wait; -1 when none is
 * free, with *wait_ms the soonest one may be (over members, the longest of
 * a member's waits). Pure. */
int shaping_pool_choose(const struct shaping_pool *p, const struct shaping_source_view *view, uint64_t random,
			int64_t *wait_ms);

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

/* shaping_site_of_domain - the first site that lists domain explicitly,
 * else shaping_site_of the MX names (count may be 0), or -1. */
int shaping_site_of_domain(const struct shaping_rules *r, const char *domain, const char *const *mx_names,
			   size_t count);

/* shaping_domain_find - the index of domain's own entry, or -1. */
int shaping_domain_find(const struct shaping_rules *r, const char *domain);

/* shaping_rate_parse - "100/min", "5/s", "20/hour" (units s, sec,
 * second, m, min, minute, h, hour, d, day); "0" or "" is no limit. */
bool shaping_rate_parse(const char *text, struct shaping_rate *out);

/* shaping_limit_parse - "message_rate", "connection_rate",
 * "max_connections", or -1; shaping_limit_name - the reverse. */
int shaping_limit_parse(const char *name);
const char *shaping_limit_name(enum shaping_limit_kind k);

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
 * "suppress", "lower"), or -1. */
int shaping_action_parse(const char *name);

#endif
