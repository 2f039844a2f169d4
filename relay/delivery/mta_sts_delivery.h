/*
 * mta_sts_delivery - MTA-STS (RFC 8461) applied to a domain's deliveries:
 * the per-domain state on its owner, the lookups that feed it and the
 * answers the engine asks of it. The policy itself (parse, match, cache
 * format, decide) is pure code in relay/mail/mta_sts.h; the per-host rule
 * is relay/delivery/mta_sts_enforce.h; the fetch and the cache files are
 * relay/daemon/mta_sts_fetch.h and mta_sts_store.h, which block and run on
 * a helper thread here.
 *
 *   domain_kick:      if (mta_sts_delivery_gate(dl, d)) return;   mail waits
 *   domain_dispatch:  if (mta_sts_delivery_route_refused(dl, d, route)) return;
 *   mta_connect:      skip hosts !mta_sts_delivery_host_allowed(d, mx)
 *   mta_policy_of:    mta_sts_delivery_tls(d, configured)
 *   the log:          mta_sts_delivery_policy_name(dl, d)
 *
 * The check of a domain, a state machine per qdomain (enum sts_state):
 *
 *   UNKNOWN -> [QUEUED]   at most half of dns.max_in_flight TXT lookups
 *                         per worker; the rest wait their turn in a FIFO
 *   -> TXT                _mta-sts.DOMAIN TXT on the worker's resolver
 *   TXT -> ADDRESS        a fetch may be due: A/AAAA of mta-sts.DOMAIN on
 *                         the same resolver (libcurl gets them through
 *                         CURLOPT_RESOLVE and never calls getaddrinfo)
 *   TXT|ADDRESS -> JOB    a helper thread loads the cache file (first
 *                         time), decides (mta_sts_decide), fetches and
 *                         stores when due
 *   TXT|JOB -> KNOWN      the answer is in d->sts; KNOWN -> TXT again after
 *                         mta_sts.recheck_interval while mail flows
 *
 * Each state is bounded by what it waits for: QUEUED by the lookups ahead
 * of it, TXT and ADDRESS by the
 * resolver's dns.timeout x dns.tries, JOB by mta_sts.fetch_timeout (the
 * transfer's whole deadline in libcurl) plus a local file read. The first
 * check of a domain holds its mail (it may not go before its policy is
 * known); later checks run while the mail goes under the policy known.
 *
 * Applies only to mail that goes to the domain's own MX hosts: not to a
 * relayhost, a domains[].route or a sender route, and not when the
 * domain's own domains[].tls is set (the operator's override), nor with
 * mta_sts.enabled false.
 *
 * Ownership: d->sts belongs to d; mta_sts_domain_free() at d's end (a job
 * in flight is detached and freed when it comes back).
 */
#ifndef RINGMAIL_MTA_STS_DELIVERY_H
#define RINGMAIL_MTA_STS_DELIVERY_H

#include <stdbool.h>

#include "config.h"
#include "dns.h"
#include "mta_sts.h"

struct delivery;
struct qdomain;
struct mta_sts_domain;

/* Which outbound TLS policy applied to an attempt (the delivery log's
 * tls_policy and ringmail_delivery_tls_policy_total's label). */
enum tls_applied {
	TLS_APPLIED_NONE,          /* delivery.tls none */
	TLS_APPLIED_OPPORTUNISTIC, /* may */
	TLS_APPLIED_ENCRYPT,
	TLS_APPLIED_VERIFY,
	TLS_APPLIED_IMPLICIT,
	TLS_APPLIED_MTA_STS,       /* an MTA-STS policy in mode enforce */
	TLS_APPLIED_MTA_STS_TESTING,   /* mode testing: delivered as configured, reported */
	TLS_APPLIED_REQUIRE_TLS,   /* the message has REQUIRETLS (RFC 8689): see tls_policy_authenticated */
	TLS_APPLIED_DANE,          /* the MX host's usable TLSA records (dane_delivery.h) */
	TLS_APPLIED_COUNT
};

const char *tls_applied_name(enum tls_applied p);

/* mta_sts_delivery_gate - in domain_kick, before the route: starts the
 * domain's check when one is due; true while its mail must wait for it
 * (domain_kick runs again when it is done). */
bool mta_sts_delivery_gate(struct delivery *dl, struct qdomain *d);

/* mta_sts_delivery_policy - the policy that applies to d now (unexpired,
 * mode testing or enforce), or NULL. */
const struct mta_sts_policy *mta_sts_delivery_policy(const struct delivery *dl, const struct qdomain *d);

/* mta_sts_delivery_tls - the TLS policy d's sessions use: "verify" under
 * an enforce policy, else configured. */
enum config_tls_policy mta_sts_delivery_tls(const struct delivery *dl, const struct qdomain *d,
					    enum config_tls_policy configured);

/* mta_sts_delivery_host_allowed - may d's mail go to MX host mx? (false
 * only under enforce, for a host the policy does not list) */
bool mta_sts_delivery_host_allowed(const struct delivery *dl, const struct qdomain *d, const char *mx);

/* mta_sts_delivery_route_refused - after the route: under enforce with no
 * host of route in the policy, every ready item is deferred (4.7.5, the
 * reason named) and true is returned; under testing the hosts outside the
 * policy are reported (once per route). */
bool mta_sts_delivery_route_refused(struct delivery *dl, struct qdomain *d, const struct dns_route *route);

/* mta_sts_delivery_applied - the policy kind of d's attempts now. */
enum tls_applied mta_sts_delivery_applied(const struct delivery *dl, const struct qdomain *d,
					  enum config_tls_policy configured);

/* mta_sts_delivery_busy - a lookup or job for d is in flight (d stays). */
bool mta_sts_delivery_busy(const struct qdomain *d);

/* mta_sts_domain_free - accepts NULL; returns NULL. */
struct mta_sts_domain *mta_sts_domain_free(struct mta_sts_domain *st);

/* mta_sts_delivery_exit - the worker's helper queue, at drain (kept, not
 * freed, while a job is still out: its thread will write to it). */
void mta_sts_delivery_exit(struct delivery *dl);

#endif
