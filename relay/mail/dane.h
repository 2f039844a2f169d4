/*
 * dane - DANE for SMTP (RFC 7672) over TLSA records (RFC 6698, RFC 7671):
 * which records a client may use, and which certificates of a presented
 * chain they match. Pure: no I/O, no allocation; the digests are SHA-256
 * and SHA-512 from mbedcrypto.
 *
 *   struct dane_tlsa recs[n];            from the TLSA lookup (dns.h)
 *   switch (dane_usability(recs, n)) {
 *   case DANE_USABLE:   DANE: TLS required, the chain must match;
 *   case DANE_UNUSABLE: TLS required, no authentication (RFC 7672 2.2);
 *   case DANE_NONE:     no TLSA: the domain's other policy. }
 *
 *   struct dane_cert chain[k];           leaf first, as the server sent it
 *   struct dane_match m = dane_match_chain(recs, n, chain, k);
 *   m.kind == DANE_MATCH_EE:  the leaf matches a DANE-EE(3) record: done
 *           (no name check, no expiry, no chain: RFC 7672 3.1.1);
 *   m.kind == DANE_MATCH_TA:  chain[m.index] matches a DANE-TA(2) record:
 *           the caller must still verify the leaf's path to that trust
 *           anchor, its validity dates and the MX host name (RFC 7672
 *           3.1.2, 3.2.3); the TLS module does that with the X.509 code;
 *   m.kind == DANE_MATCH_NONE: no record matches (certificate-not-trusted).
 *
 * Usable records: usage DANE-TA(2) or DANE-EE(3), selector Cert(0) or
 * SPKI(1), matching type Full(0), SHA2-256(1) or SHA2-512(2) with data of
 * the digest's length (a full match: any non-empty length). PKIX-TA(0) and
 * PKIX-EE(1) are "unusable" for SMTP (RFC 7672 3.1.3), as are unknown
 * values and digests of the wrong length.
 *
 * RFC 8460 result types (TLS-RPT) for DANE failures: dane_result_name().
 */
#ifndef RINGMAIL_DANE_H
#define RINGMAIL_DANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	DANE_USAGE_PKIX_TA = 0,
	DANE_USAGE_PKIX_EE = 1,
	DANE_USAGE_DANE_TA = 2,
	DANE_USAGE_DANE_EE = 3,
	DANE_SELECTOR_CERT = 0,
	DANE_SELECTOR_SPKI = 1,
	DANE_MTYPE_FULL = 0,
	DANE_MTYPE_SHA256 = 1,
	DANE_MTYPE_SHA512 = 2,
};

/* The largest association data kept: a full certificate of 4 KiB; a
 * longer full-match record is unusable (certificates that large do not
 * appear in SMTP). */
#define DANE_DATA_MAX 4096

struct dane_tlsa {
	uint8_t usage, selector, mtype;
	size_t len;
	const uint8_t *data;       /* borrowed: len bytes */
};

struct dane_cert {
	const uint8_t *der;        /* the whole certificate (DER) */
	size_t der_len;
	const uint8_t *spki;       /* its SubjectPublicKeyInfo (DER) */
	size_t spki_len;
};

enum dane_usability {
	DANE_NONE,                 /* no records */
	DANE_UNUSABLE,             /* records, none usable: encrypt only */
	DANE_USABLE,               /* at least one usable record */
};

enum dane_match_kind {
	DANE_MATCH_NONE,
	DANE_MATCH_EE,             /* the leaf matches a DANE-EE record */
	DANE_MATCH_TA,             /* chain[index] matches a DANE-TA record */
};

struct dane_match {
	enum dane_match_kind kind;
	size_t index;              /* the chain element that matched */
};

/* Why DANE refused, as RFC 8460's result types (the tokens TLS-RPT reports). */
enum dane_result {
	DANE_RESULT_OK,
	DANE_RESULT_TLSA_INVALID,          /* "tlsa-invalid": no usable record */
	DANE_RESULT_DNSSEC_INVALID,        /* "dnssec-invalid": bogus or failed secure lookup */
	DANE_RESULT_NOT_TRUSTED,           /* "certificate-not-trusted": no record matches */
	DANE_RESULT_HOST_MISMATCH,         /* "certificate-host-mismatch": DANE-TA, wrong name */
	DANE_RESULT_EXPIRED,               /* "certificate-expired": DANE-TA, out of its dates */
	DANE_RESULT_STARTTLS_NOT_SUPPORTED,/* "starttls-not-supported" */
	DANE_RESULT_VALIDATION_FAILURE,    /* "validation-failure": the handshake failed */
	DANE_RESULT_COUNT
};

/* dane_result_name - the RFC 8460 token ("tlsa-invalid" ...); "ok" for OK. */
const char *dane_result_name(enum dane_result r);

/* dane_record_usable - may an SMTP client use this record? */
bool dane_record_usable(const struct dane_tlsa *r);

/* dane_usability - what the record set means for the host. */
enum dane_usability dane_usability(const struct dane_tlsa *recs, size_t n);

/* dane_record_matches - does cert match r's selector and matching type
 * (usage not considered)? */
bool dane_record_matches(const struct dane_tlsa *r, const struct dane_cert *cert);

/* dane_match_chain - the first match: DANE-EE against the leaf (chain[0])
 * first, then DANE-TA against every certificate of the chain, leaf last
 * (a self-issued leaf may be its own trust anchor). chain_len 0: NONE. */
struct dane_match dane_match_chain(const struct dane_tlsa *recs, size_t n, const struct dane_cert *chain,
				   size_t chain_len);

#endif
