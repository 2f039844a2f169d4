/*
 * test_dane - TLSA usability and chain matching against real certificates:
 * openssl makes a CA, a leaf it signs and an unrelated self-signed
 * certificate in a temporary directory, and computes the TLSA data
 * itself (openssl's digests, not ours), so the matcher is checked
 * against an independent implementation.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/x509_crt.h>

#include "dane.h"

static char dir[64];
static mbedtls_x509_crt leaf_chain, other;

static void run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	cr_assert_eq(system(cmd), 0, "command failed: %s", cmd);
}

/* hex_of - the output of a shell pipeline, decoded from hex. */
static size_t hex_of(const char *pipeline, uint8_t *out, size_t cap)
{
	char cmd[1024], line[512];
	snprintf(cmd, sizeof(cmd), "cd %s && %s", dir, pipeline);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(line, sizeof(line), f));
	pclose(f);
	size_t n = 0;
	for (const char *p = line; p[0] && p[1] && p[0] != ' ' && p[0] != '\n' && n < cap; p += 2) {
		unsigned v;
		cr_assert_eq(sscanf(p, "%2x", &v), 1);
		out[n++] = (uint8_t)v;
	}
	return n;
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test_dane.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	run("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
	    "-out ca.pem -days 30 -subj /CN=test-ca -addext basicConstraints=critical,CA:TRUE 2>/dev/null", dir);
	run("cd %s && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key "
	    "-out leaf.csr -subj /CN=mx1.example 2>/dev/null && "
	    "printf 'subjectAltName=DNS:mx1.example\\n' > ext && "
	    "openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 "
	    "-extfile ext -out leaf.pem 2>/dev/null && cat leaf.pem ca.pem > chain.pem", dir);
	run("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key "
	    "-out other.pem -days 30 -subj /CN=mx1.example 2>/dev/null", dir);
	char path[128];
	mbedtls_x509_crt_init(&leaf_chain);
	mbedtls_x509_crt_init(&other);
	snprintf(path, sizeof(path), "%s/chain.pem", dir);
	cr_assert_eq(mbedtls_x509_crt_parse_file(&leaf_chain, path), 0);
	snprintf(path, sizeof(path), "%s/other.pem", dir);
	cr_assert_eq(mbedtls_x509_crt_parse_file(&other, path), 0);
}

static void teardown(void)
{
	mbedtls_x509_crt_free(&leaf_chain);
	mbedtls_x509_crt_free(&other);
	run("rm -rf %s", dir);
}

static struct dane_cert cert_of(const mbedtls_x509_crt *c)
{
	return (struct dane_cert){ c->raw.p, c->raw.len, c->pk_raw.p, c->pk_raw.len };
}

/* Digests by openssl: selector 1 = the SPKI, 0 = the certificate. */
#define SPKI(file, alg) "openssl x509 -in " file " -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -" alg " -hex | sed 's/.*= //'"
#define CERT(file, alg) "openssl x509 -in " file " -outform DER | openssl dgst -" alg " -hex | sed 's/.*= //'"

Test(dane, usability)
{
	static const uint8_t d32[32], d64[64], d31[31];
	const struct {
		struct dane_tlsa r;
		bool want;
	} cases[] = {
		{{3, 1, 1, 32, d32}, true},  {{3, 0, 1, 32, d32}, true}, {{2, 1, 2, 64, d64}, true},
		{{2, 0, 0, 31, d31}, true},  {{3, 1, 0, 31, d31}, true},
		{{0, 1, 1, 32, d32}, false}, /* PKIX-TA: unusable for SMTP */
		{{1, 1, 1, 32, d32}, false}, /* PKIX-EE */
		{{4, 1, 1, 32, d32}, false}, {{3, 2, 1, 32, d32}, false}, {{3, 1, 3, 32, d32}, false},
		{{3, 1, 1, 31, d31}, false}, /* SHA-256 of the wrong length */
		{{3, 1, 2, 32, d32}, false}, {{3, 1, 0, 0, d32}, false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(dane_record_usable(&cases[i].r), cases[i].want, "case %zu: got %d, want %d", i,
			     dane_record_usable(&cases[i].r), cases[i].want);
	struct dane_tlsa bad[2] = {{1, 1, 1, 32, d32}, {3, 1, 1, 31, d31}};
	struct dane_tlsa good[2] = {{1, 1, 1, 32, d32}, {3, 1, 1, 32, d32}};
	cr_expect_eq(dane_usability(bad, 0), DANE_NONE);
	cr_expect_eq(dane_usability(bad, 2), DANE_UNUSABLE);
	cr_expect_eq(dane_usability(good, 2), DANE_USABLE);
	cr_expect_str_eq(dane_result_name(DANE_RESULT_DNSSEC_INVALID), "dnssec-invalid");
	cr_expect_str_eq(dane_result_name(DANE_RESULT_TLSA_INVALID), "tlsa-invalid");
}

Test(dane, matching, .init = setup, .fini = teardown)
{
	uint8_t leaf_spki256[64], leaf_cert512[64], ca_spki256[64], ca_cert256[64], other_spki256[64];
	cr_assert_eq(hex_of(SPKI("leaf.pem", "sha256"), leaf_spki256, 64), 32);
	cr_assert_eq(hex_of(CERT("leaf.pem", "sha512"), leaf_cert512, 64), 64);
	cr_assert_eq(hex_of(SPKI("ca.pem", "sha256"), ca_spki256, 64), 32);
	cr_assert_eq(hex_of(CERT("ca.pem", "sha256"), ca_cert256, 64), 32);
	cr_assert_eq(hex_of(SPKI("other.pem", "sha256"), other_spki256, 64), 32);

	cr_assert_not_null(leaf_chain.next);
	struct dane_cert chain[2] = { cert_of(&leaf_chain), cert_of(leaf_chain.next) };
	struct dane_cert alone[1] = { cert_of(&other) };

	const struct {
		const char *name;
		struct dane_tlsa r;
		const struct dane_cert *chain;
		size_t len;
		enum dane_match_kind want;
		size_t want_index;
	} cases[] = {
		{"3 1 1 leaf", {3, 1, 1, 32, leaf_spki256}, chain, 2, DANE_MATCH_EE, 0},
		{"3 0 2 leaf", {3, 0, 2, 64, leaf_cert512}, chain, 2, DANE_MATCH_EE, 0},
		{"3 0 0 leaf", {3, 0, 0, leaf_chain.raw.len, leaf_chain.raw.p}, chain, 2, DANE_MATCH_EE, 0},
		{"3 1 0 leaf", {3, 1, 0, leaf_chain.pk_raw.len, leaf_chain.pk_raw.p}, chain, 2, DANE_MATCH_EE, 0},
		{"2 1 1 ca", {2, 1, 1, 32, ca_spki256}, chain, 2, DANE_MATCH_TA, 1},
		{"2 0 1 ca", {2, 0, 1, 32, ca_cert256}, chain, 2, DANE_MATCH_TA, 1},
		/* a DANE-EE record of the CA does not make the leaf trusted */
		{"3 1 1 ca", {3, 1, 1, 32, ca_spki256}, chain, 2, DANE_MATCH_NONE, 0},
		/* the CA's digest with PKIX usage: unusable, no match */
		{"0 1 1 ca", {0, 1, 1, 32, ca_spki256}, chain, 2, DANE_MATCH_NONE, 0},
		{"1 1 1 leaf", {1, 1, 1, 32, leaf_spki256}, chain, 2, DANE_MATCH_NONE, 0},
		/* another key of the same name */
		{"3 1 1 other", {3, 1, 1, 32, other_spki256}, chain, 2, DANE_MATCH_NONE, 0},
		{"3 1 1 leaf vs other", {3, 1, 1, 32, leaf_spki256}, alone, 1, DANE_MATCH_NONE, 0},
		{"3 1 1 other alone", {3, 1, 1, 32, other_spki256}, alone, 1, DANE_MATCH_EE, 0},
		/* a self-signed leaf as its own trust anchor */
		{"2 1 1 other alone", {2, 1, 1, 32, other_spki256}, alone, 1, DANE_MATCH_TA, 0},
		/* a wrong matching type for the data: SHA-512 of 32 bytes */
		{"3 1 2 short", {3, 1, 2, 32, leaf_spki256}, chain, 2, DANE_MATCH_NONE, 0},
		{"no chain", {3, 1, 1, 32, leaf_spki256}, chain, 0, DANE_MATCH_NONE, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dane_match m = dane_match_chain(&cases[i].r, 1, cases[i].chain, cases[i].len);
		cr_expect_eq(m.kind, cases[i].want, "%s: got kind %d, want %d", cases[i].name, m.kind, cases[i].want);
		if (m.kind == cases[i].want && m.kind != DANE_MATCH_NONE)
			cr_expect_eq(m.index, cases[i].want_index, "%s: got index %zu, want %zu", cases[i].name,
				     m.index, cases[i].want_index);
	}
	/* several records: one match is enough, unusable ones are skipped */
	uint8_t flipped[32];
	memcpy(flipped, leaf_spki256, 32);
	flipped[0] ^= 1;
	struct dane_tlsa set[3] = {{1, 1, 1, 32, leaf_spki256}, {3, 1, 1, 32, flipped}, {2, 1, 1, 32, ca_spki256}};
	struct dane_match m = dane_match_chain(set, 3, chain, 2);
	cr_expect_eq(m.kind, DANE_MATCH_TA);
	cr_expect_eq(dane_match_chain(set, 2, chain, 2).kind, DANE_MATCH_NONE);
}
