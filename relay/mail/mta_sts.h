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

#endif
