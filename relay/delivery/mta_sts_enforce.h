/*
 * mta_sts_enforce - what an MTA-STS policy (RFC 8461 section 5) means for
 * one MX host of a domain, as a pure decision (table tests:
 * tests/unit/test_mta_sts_enforce.c). The delivery engine asks it for each
 * host of a route before connecting:
 *
 *   struct mta_sts_host_decision h =
 *           mta_sts_enforce_host(configured, explicit_tls, policy, "mx1.example.com");
 *   if (!h.allowed) skip the host (deferral 4.7.5 when none is left);
 *   if (h.report) log h.why (mode testing: the delivery goes on);
 *   connect with h.tls.
 *
 * Precedence: a domain's own domains[].tls in the config (explicit_tls)
 * wins over MTA-STS, so an operator can always override a broken policy;
 * with no policy, or mode none, the configured policy applies.
 * enforce: only hosts matching one of the policy's mx patterns, and only
 * with TLS and a certificate that verifies for the MX name ("verify");
 * anything else refuses the host. testing: the configured policy, and a
 * host outside the policy is reported, not refused.
 */
#ifndef RINGMAIL_MTA_STS_ENFORCE_H
#define RINGMAIL_MTA_STS_ENFORCE_H

#include <stdbool.h>

#include "config.h"
#include "mta_sts.h"

struct mta_sts_host_decision {
	enum config_tls_policy tls;        /* the policy to connect with */
	bool allowed;                      /* false: do not use this host */
	bool report;                       /* log why (testing mode mismatch) */
	bool sts;                          /* MTA-STS decided (for the delivery log) */
	const char *why;                   /* static, one line; "" when nothing to say */
};

/* The enhanced status of a deferral because no MX host may be used. */
#define MTA_STS_DEFER_STATUS "4.7.5"

/* mta_sts_enforce_host - policy may be NULL (none known for the domain). */
struct mta_sts_host_decision mta_sts_enforce_host(enum config_tls_policy configured, bool explicit_tls,
						  const struct mta_sts_policy *policy, const char *mx_host);

#endif
