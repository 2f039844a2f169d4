/*
 * mta_sts - MTA-STS (RFC 8461) policy text, the _mta-sts TXT record and the
 * MX-matching rule. Pure: no I/O, no allocation.
 *
 *   struct mta_sts_policy p;
 *   const char *why = NULL;
 *   if (mta_sts_policy_parse(body, body_len, &p, &why) < 0)
 *           log("bad policy: %s", why);
 *   else if (p.mode != MTA_STS_MODE_NONE && !mta_sts_policy_mx_allowed(&p, "mx1.example.com"))
 *           refuse (enforce) or log (testing);
 *
 *   char id[MTA_STS_ID_MAX + 1];
 *   int rc = mta_sts_record_select(txts, n, id, &why);   1 = one STS record, 0 = none
 *
 * Strictness: the policy is the RFC 8461 section 3.2 grammar. Lines end in
 * LF or CRLF; a line is "key:" *WSP value *WSP with no leading blanks;
 * blank lines are allowed only at the end. version, mode and max_age must
 * each appear exactly once (a repeat is an error: two answers to one
 * question are no answer), mx one or more times unless mode is none (at
 * most MTA_STS_MX_MAX). Unknown keys are ignored as the RFC requires, but
 * their name and value must still follow its grammar. max_age is 1 to 10
 * digits, capped at MTA_STS_MAX_AGE_MAX (the RFC's one-year limit). A
 * policy over MTA_STS_POLICY_MAX bytes, or holding a NUL or a control
 * character, is refused. Any error means "no usable policy": the caller
 * keeps a cached one or treats the domain as having none.
 *
 * MX patterns are stored lower case without a trailing dot; matching is
 * case-insensitive and ignores a trailing dot on the host. "*.example.com"
 * matches exactly one extra leftmost label ("mx.example.com", not
 * "example.com" nor "a.b.example.com"), RFC 8461 section 4.1.
 *
 * Errors: -EINVAL with *why set to a static one-line reason (never NULL on
 * error), -E2BIG for an oversized input.
 */
#ifndef RINGMAIL_MTA_STS_H
#define RINGMAIL_MTA_STS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MTA_STS_POLICY_MAX 65536        /* bytes of policy text (RFC 8461 3.3: 64 KiB) */
#define MTA_STS_MX_MAX 64               /* mx patterns in one policy */
#define MTA_STS_NAME_MAX 253            /* a domain name, without a trailing dot */
#define MTA_STS_ID_MAX 32               /* the TXT record's id */
#define MTA_STS_MAX_AGE_MAX 31557600u   /* one year, RFC 8461 3.2 */
#define MTA_STS_TXT_MAX 1024            /* one TXT record we look at */

enum mta_sts_mode {
	MTA_STS_MODE_NONE,
	MTA_STS_MODE_TESTING,
	MTA_STS_MODE_ENFORCE,
};

struct mta_sts_policy {
	enum mta_sts_mode mode;
	uint32_t max_age_s;
	size_t mx_count;
	char mx[MTA_STS_MX_MAX][MTA_STS_NAME_MAX + 3];   /* "*." + name, lower case */
};

/* mta_sts_policy_parse - parse len bytes of policy text into *out. */
int mta_sts_policy_parse(const char *text, size_t len, struct mta_sts_policy *out, const char **why);

/* mta_sts_mode_name - "none", "testing" or "enforce". */
const char *mta_sts_mode_name(enum mta_sts_mode mode);

/* mta_sts_mx_match - does host (an MX name) match pattern (a policy mx)? */
bool mta_sts_mx_match(const char *pattern, const char *host);

/* mta_sts_policy_mx_allowed - does host match any of the policy's mx? */
bool mta_sts_policy_mx_allowed(const struct mta_sts_policy *p, const char *host);

/* mta_sts_record_parse - one TXT record. 1: an STS record, its id copied to
 * id (MTA_STS_ID_MAX + 1 bytes); 0: not an STS record (does not begin with
 * "v=STSv1;" and must be discarded); -EINVAL: begins so but is malformed. */
int mta_sts_record_parse(const char *txt, size_t len, char *id, const char **why);

/* mta_sts_record_select - the TXT records at _mta-sts.DOMAIN (txts[i] of
 * lens[i] bytes). 1 with id set when exactly one is an STS record and it is
 * well formed; 0 when there is none; -EINVAL when there are several or the
 * one is malformed (RFC 8461 3.1: the domain then has no usable policy). */
int mta_sts_record_select(const char *const *txts, const size_t *lens, size_t n, char *id,
			  const char **why);

/* mta_sts_domain_valid - is name an RFC 5321 Domain (LDH labels of 1-63
 * bytes, at most MTA_STS_NAME_MAX, an optional trailing dot)? Used for the
 * policy's mx names and to vet a recipient domain before it becomes a URL. */
bool mta_sts_domain_valid(const char *name, size_t len);

/*
 * The cache. A policy is kept, durably (one file per domain under the
 * spool directory, written by the daemon), as its id from the TXT record,
 * the time it was fetched and its text; it is valid until fetched_s +
 * max_age. RFC 8461 section 5: a cached, unexpired policy applies even
 * when DNS or HTTPS fail (that is what defeats a stripping attacker); a
 * new id in the TXT record means fetch again (keeping the old policy if
 * that fails); a policy near its end is refreshed in the background.
 *
 * The file: "ringmail-mta-sts 1\nid: ID\nfetched: SECONDS\n\n" + policy.
 */
struct mta_sts_cached {
	char id[MTA_STS_ID_MAX + 1];
	int64_t fetched_s;                 /* seconds since the epoch */
	struct mta_sts_policy policy;
};

#define MTA_STS_CACHE_HEADER_MAX 96

/* mta_sts_cache_format - the file's header into out (size at least
 * MTA_STS_CACHE_HEADER_MAX); its length. The policy text follows it. */
size_t mta_sts_cache_header(char *out, size_t size, const char *id, int64_t fetched_s);

/* mta_sts_cache_parse - a whole cache file into *out; -EINVAL with why. */
int mta_sts_cache_parse(const char *text, size_t len, struct mta_sts_cached *out, const char **why);

/* mta_sts_cache_valid - is the cached policy unexpired at now_s? */
bool mta_sts_cache_valid(const struct mta_sts_cached *c, int64_t now_s);

enum mta_sts_txt_state {
	MTA_STS_TXT_NONE,                  /* no STS record (NXDOMAIN, none, or not exactly one valid) */
	MTA_STS_TXT_ID,                    /* one, with an id */
	MTA_STS_TXT_TEMPFAIL,              /* DNS failed: we do not know */
};

enum mta_sts_action {
	MTA_STS_NO_POLICY,                 /* deliver as if the domain had none */
	MTA_STS_USE_CACHED,                /* apply the cached policy */
	MTA_STS_FETCH,                     /* fetch; on failure use the cached one if valid, else none */
};

/* mta_sts_decide - what to do for a delivery to a domain. c: its cached
 * policy or NULL; txt/id: the TXT lookup; refresh_before_s: refresh a
 * policy that expires within this many seconds. *refresh (may be NULL) is
 * set when a USE_CACHED should also start a background fetch. */
enum mta_sts_action mta_sts_decide(const struct mta_sts_cached *c, enum mta_sts_txt_state txt,
				   const char *id, int64_t now_s, int64_t refresh_before_s, bool *refresh);

#endif
