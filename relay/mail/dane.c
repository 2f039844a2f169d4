/*
 * dane - TLSA usability and matching (RFC 7671, RFC 7672); see dane.h.
 */
#include "dane.h"

#include <string.h>

#include <mbedtls/sha256.h>
#include <mbedtls/sha512.h>

const char *dane_result_name(enum dane_result r)
{
	static const char *const names[DANE_RESULT_COUNT] = {
		"ok", "tlsa-invalid", "dnssec-invalid", "certificate-not-trusted", "certificate-host-mismatch",
		"certificate-expired", "starttls-not-supported", "validation-failure",
	};
	return (unsigned)r < DANE_RESULT_COUNT ? names[r] : "validation-failure";
}

bool dane_record_usable(const struct dane_tlsa *r)
{
	if (r->usage != DANE_USAGE_DANE_TA && r->usage != DANE_USAGE_DANE_EE)
		return false;
	if (r->selector != DANE_SELECTOR_CERT && r->selector != DANE_SELECTOR_SPKI)
		return false;
	switch (r->mtype) {
	case DANE_MTYPE_FULL:
		return r->len > 0 && r->len <= DANE_DATA_MAX;
	case DANE_MTYPE_SHA256:
		return r->len == 32;
	case DANE_MTYPE_SHA512:
		return r->len == 64;
	default:
		return false;
	}
}

enum dane_usability dane_usability(const struct dane_tlsa *recs, size_t n)
{
	if (n == 0)
		return DANE_NONE;
	for (size_t i = 0; i < n; i++)
		if (dane_record_usable(&recs[i]))
			return DANE_USABLE;
	return DANE_UNUSABLE;
}

bool dane_record_matches(const struct dane_tlsa *r, const struct dane_cert *cert)
{
	const uint8_t *in = r->selector == DANE_SELECTOR_CERT ? cert->der : cert->spki;
	size_t in_len = r->selector == DANE_SELECTOR_CERT ? cert->der_len : cert->spki_len;
	unsigned char digest[64];

	if (!dane_record_usable(r) || in == NULL || in_len == 0)
		return false;
	switch (r->mtype) {
	case DANE_MTYPE_FULL:
		return in_len == r->len && memcmp(in, r->data, r->len) == 0;
	case DANE_MTYPE_SHA256:
		if (mbedtls_sha256_ret(in, in_len, digest, 0) != 0)
			return false;
		return memcmp(digest, r->data, 32) == 0;
	case DANE_MTYPE_SHA512:
		if (mbedtls_sha512_ret(in, in_len, digest, 0) != 0)
			return false;
		return memcmp(digest, r->data, 64) == 0;
	default:
		return false;
	}
}

/* match_usage - the first record of usage that cert matches. */
static bool match_usage(const struct dane_tlsa *recs, size_t n, uint8_t usage, const struct dane_cert *cert)
{
	for (size_t i = 0; i < n; i++)
		if (recs[i].usage == usage && dane_record_matches(&recs[i], cert))
			return true;
	return false;
}

struct dane_match dane_match_chain(const struct dane_tlsa *recs, size_t n, const struct dane_cert *chain,
				   size_t chain_len)
{
	if (chain_len == 0)
		return (struct dane_match){ DANE_MATCH_NONE, 0 };
	if (match_usage(recs, n, DANE_USAGE_DANE_EE, &chain[0]))
		return (struct dane_match){ DANE_MATCH_EE, 0 };
	/* The issuers first: the usual place of a trust anchor. */
	for (size_t k = 1; k < chain_len; k++)
		if (match_usage(recs, n, DANE_USAGE_DANE_TA, &chain[k]))
			return (struct dane_match){ DANE_MATCH_TA, k };
	if (match_usage(recs, n, DANE_USAGE_DANE_TA, &chain[0]))
		return (struct dane_match){ DANE_MATCH_TA, 0 };
	return (struct dane_match){ DANE_MATCH_NONE, 0 };
}
