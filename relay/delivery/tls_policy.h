/*
 * tls_policy - outbound STARTTLS (RFC 3207) under a domain's delivery.tls
 * policy, as pure decisions (table tests: tests/unit/test_tls_policy.c):
 *
 *   none     never STARTTLS.
 *   may      STARTTLS when offered; go on in clear when it is not offered
 *            or refused; after a failed handshake, the same address once
 *            more in clear (RFC 7435's fallback; once per host).
 *   encrypt  TLS or nothing, any certificate: not offered, refused or
 *            failed is a failed host (QUIT, next MX, then deferral with
 *            4.7.4 / 4.7.5): nothing is sent in clear.
 *   verify   as encrypt, and the certificate must verify for the MX name.
 *   implicit RFC 8314: the handshake right after the connect, before the
 *            greeting (port 465); never STARTTLS; a failed handshake is a
 *            failed host, as under encrypt. mta_session starts it; at
 *            READY the connection is already TLS.
 *   dane     (a session's policy only for an MX host with usable TLSA
 *            records, dane_delivery.h): as encrypt, and the chain must
 *            match the records (tls.h, TLS_VERIFY_DANE).
 */
#ifndef RINGMAIL_TLS_POLICY_H
#define RINGMAIL_TLS_POLICY_H

#include <stdbool.h>

#include "config.h"

enum tls_step {
	TLS_STEP_START,            /* send STARTTLS */
	TLS_STEP_CLEAR,            /* go on without TLS */
	TLS_STEP_REFUSE,           /* QUIT: this host cannot be used (4.7.4) */
};

/* tls_policy_at_ready - a connection is READY before its first
 * transaction. offered: the server lists STARTTLS; tried: STARTTLS was
 * already sent on this connection (and refused); clear_only: this address
 * is being retried in clear after a TLS failure. */
enum tls_step tls_policy_at_ready(enum config_tls_policy policy, bool offered, bool tried,
				  bool clear_only);

/* tls_policy_retry_clear - STARTTLS or its handshake failed on an address:
 * try the same address again in clear? */
bool tls_policy_retry_clear(enum config_tls_policy policy, bool clear_only);

/* tls_policy_required - does the policy forbid mail in clear? */
bool tls_policy_required(enum config_tls_policy policy);

/* What is known of a connection when a REQUIRETLS message (RFC 8689)
 * is about to go on it. The lead adds "dane" here at merge: a connection
 * whose MX host's TLSA records (DNSSEC-validated) matched is authenticated
 * as well. */
struct tls_auth_facts {
	enum config_tls_policy policy;     /* the connection's policy */
	bool tls_on;                       /* the handshake completed on it */
	bool mta_sts_enforce;              /* policy came from MTA-STS mode enforce (host listed) */
	bool next_hop;                     /* a configured next hop (relayhost, domains[].route,
					    * sender route), not the domain's MX hosts */
};

/* tls_policy_authenticated - is the server's TLS authenticated as RFC 8689
 * 4.2.1 asks: a handshake under "dane" (the chain matched the MX host's
 * DNSSEC-secure TLSA records), or one with the certificate verified for
 * the host's name ("verify"), that name being trustworthy: an MX host from
 * an MTA-STS policy in mode enforce, or a next hop the operator configured
 * by name with tls "verify" (docs/TLS.md, REQUIRETLS: the smart-host
 * reading). A domain's own domains[].tls "verify" for its
 * MX hosts is not: the MX names came from DNS without DNSSEC. */
bool tls_policy_authenticated(const struct tls_auth_facts *f);

#endif
