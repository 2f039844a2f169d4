/*
 * dane_delivery - DANE for SMTP (RFC 7672) applied to a domain's
 * deliveries: the TLSA records of each MX host of its route, looked up on
 * the worker's resolver, and the per-host answers the engine asks of
 * them. The matching is pure code (relay/mail/dane.h); the check of a
 * server's chain runs in the TLS module's verify callback
 * (TLS_VERIFY_DANE in relay/daemon/tls.h).
 *
 *   domain_dispatch:  if (dane_delivery_gate(dl, d, route)) return;  mail waits
 *   mta_connect:      skip hosts !dane_delivery_host_allowed(dl, d, mx)
 *   mta_policy_of:    dane_delivery_tls(dl, d, mx, policy)
 *   mta_tls_begin:    dane_delivery_records(dl, d, mx, &n)
 *   the log:          dane_delivery_applied(dl, d, mx, applied)
 *
 * Trust: the AD bit of the configured resolver (dns.nameservers), which
 * must validate DNSSEC and be reached over loopback or another trusted
 * path (Postfix's model; docs/TLS.md says why not libunbound). DANE
 * applies to a host only when the domain's MX answer was secure (AD) and
 * the host's address answers were too; then its TLSA answer
 * (_PORT._tcp.HOST, DO set) decides, host by host:
 *
 *   secure records, some usable   -> DANE: TLS whose chain matches, else
 *                                    the host fails (4.7.5, the RFC 8460
 *                                    result type in the reason)
 *   secure records, none usable   -> "encrypt" (RFC 7672 2.2)
 *   NXDOMAIN/NODATA, or insecure  -> the domain's other policy (MTA-STS,
 *                                    domains[].tls, delivery.tls)
 *   SERVFAIL (bogus) or timeout   -> the host is not used; when no host
 *                                    is left, the ready mail is deferred
 *                                    with 4.7.5 (result-type=dnssec-invalid)
 *
 * The answers live as long as the route they were found for (the
 * resolver's route cache and its TTLs): a new route object means new
 * lookups. The first lookups of a route hold the domain's mail (it may
 * not go before its hosts' TLSA are known); at most one lookup per MX
 * host (DNS_MAX_MX_HOSTS), on the resolver, never blocking.
 *
 * Applies to mail that goes to the domain's own MX hosts only (not a
 * relayhost, a route or a sender route), with dane.enabled, unless the
 * domain's own domains[].tls is set to something other than "dane".
 *
 * Ownership: d->dane belongs to d; dane_domain_free() at d's end (d is
 * not reaped while a lookup is out: dane_delivery_busy()).
 */
#ifndef RINGMAIL_DANE_DELIVERY_H
#define RINGMAIL_DANE_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "dane.h"
#include "dns.h"
#include "mta_sts_delivery.h"

struct delivery;
struct qdomain;
struct dane_domain;

/* The enhanced status of a DANE refusal. */
#define DANE_DEFER_STATUS "4.7.5"

/* dane_delivery_gate - in domain_dispatch: starts the TLSA lookups of
 * route's secure hosts when they are not known; true while d's mail must
 * wait for them (domain_kick runs again when they are in), or when DANE
 * refused every host (the ready mail was deferred, 4.7.5). */
bool dane_delivery_gate(struct delivery *dl, struct qdomain *d, const struct dns_route *route);

/* dane_delivery_tls - the TLS policy of d's mail to MX host mx: DANE for
 * usable records, at least "encrypt" for unusable ones, else policy (and
 * "dane" without records is "may"). */
enum config_tls_policy dane_delivery_tls(const struct delivery *dl, const struct qdomain *d, const char *mx,
					 enum config_tls_policy policy);

/* dane_delivery_host_allowed - false for a host whose TLSA lookup failed
 * in a secure zone (bogus, SERVFAIL): it is not used. */
bool dane_delivery_host_allowed(const struct delivery *dl, const struct qdomain *d, const char *mx);

/* dane_delivery_host_usable - mx has usable secure TLSA records (DANE
 * wins over MTA-STS for it). */
bool dane_delivery_host_usable(const struct delivery *dl, const struct qdomain *d, const char *mx);

/* dane_delivery_any_usable - some host of route has usable records. */
bool dane_delivery_any_usable(const struct delivery *dl, const struct qdomain *d, const struct dns_route *route);

/* dane_delivery_records - mx's TLSA records (borrowed from d until its
 * route changes), *n of them; NULL when it has none usable. */
const struct dane_tlsa *dane_delivery_records(const struct delivery *dl, const struct qdomain *d, const char *mx,
					      size_t *n);

/* dane_delivery_applied - TLS_APPLIED_DANE for an MX host with usable
 * records, else other: the delivery log's tls_policy. */
enum tls_applied dane_delivery_applied(const struct delivery *dl, const struct qdomain *d, const char *mx,
				       enum tls_applied other);

/* dane_delivery_busy - a lookup for d is in flight (d stays). */
bool dane_delivery_busy(const struct qdomain *d);

/* dane_domain_free - accepts NULL; returns NULL. */
struct dane_domain *dane_domain_free(struct dane_domain *st);

#endif
