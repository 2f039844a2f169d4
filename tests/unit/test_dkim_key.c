/* test_dkim_key - loading keys (good and bad), signing with them (checked
 * by mbedTLS and libsodium verifiers), generating, the p= value. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <mbedtls/base64.h>
#include <pthread.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dkim_key.h"

/* RFC 8463 appendix A: the example Ed25519 key (seed and public key). */
static const char rfc8463_seed[] = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
static const char rfc8463_public[] = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

static size_t unbase64(const char *in, uint8_t *out, size_t size)
{
	size_t n = 0;

	cr_assert_eq(mbedtls_base64_decode(out, size, &n, (const unsigned char *)in, strlen(in)), 0);
	return n;
}

/* ed25519_pem - the PKCS#8 PEM openssl writes for a seed. */
static void ed25519_pem(const uint8_t seed[32], char *out, size_t size)
{
	uint8_t der[48] = { 0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
			    0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20 };
	char b64[80];
	size_t n;

	memcpy(der + 16, seed, 32);
	cr_assert_eq(mbedtls_base64_encode((unsigned char *)b64, sizeof(b64), &n, der, sizeof(der)), 0);
	snprintf(out, size, "-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n", b64);
}

Test(dkim_key, rfc8463_ed25519_key_signs_and_verifies)
{
	uint8_t seed[32], pub[32], sig[DKIM_SIGNATURE_MAX], digest[DKIM_HASH_LEN];
	char pem[256], err[256];
	struct dkim_key *k = NULL;
	struct buf p;
	size_t sig_len = 0;

	cr_assert_eq(unbase64(rfc8463_seed, seed, sizeof(seed)), 32);
	ed25519_pem(seed, pem, sizeof(pem));
	cr_assert_eq(dkim_key_parse(pem, &k, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(dkim_key_algorithm(k), DKIM_ED25519_SHA256);
	buf_init(&p, 4096);
	cr_assert_eq(dkim_key_public(k, &p), 0);
	buf_append(&p, "", 1);
	cr_expect_str_eq(buf_data(&p), rfc8463_public);
	mbedtls_sha256_ret((const unsigned char *)"hello", 5, digest, 0);
	cr_assert_eq(dkim_key_sign(k, digest, sig, &sig_len), 0);
	cr_assert_eq(sig_len, 64);
	unbase64(rfc8463_public, pub, sizeof(pub));
	cr_expect_eq(crypto_sign_verify_detached(sig, digest, sizeof(digest), pub), 0, "libsodium rejects the signature");
	digest[0] ^= 1;
	cr_expect_neq(crypto_sign_verify_detached(sig, digest, sizeof(digest), pub), 0, "a changed digest verifies");
	buf_free(&p);
	dkim_key_free(k);
}

/* verify_rsa - check sig over digest with the p= value, as a verifier would. */
static int verify_rsa(const struct dkim_key *k, const uint8_t *digest, const uint8_t *sig, size_t sig_len)
{
	struct buf p;
	uint8_t der[2048];
	mbedtls_pk_context pk;

	buf_init(&p, 8192);
	cr_assert_eq(dkim_key_public(k, &p), 0);
	buf_append(&p, "", 1);
	size_t n = unbase64(buf_data(&p), der, sizeof(der));
	mbedtls_pk_init(&pk);
	cr_assert_eq(mbedtls_pk_parse_public_key(&pk, der, n), 0);
	int rc = mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, digest, DKIM_HASH_LEN, sig, sig_len);
	mbedtls_pk_free(&pk);
	buf_free(&p);
	return rc;
}

Test(dkim_key, generated_rsa_round_trip)
{
	struct buf pem;
	struct dkim_key *k = NULL, *again = NULL;
	char err[256];
	uint8_t digest[DKIM_HASH_LEN] = { 1, 2, 3 }, sig[DKIM_SIGNATURE_MAX];
	size_t sig_len = 0;

	buf_init(&pem, 64 * 1024);
	cr_assert_eq(dkim_key_generate(DKIM_RSA_SHA256, 1024, &pem, &k, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(dkim_key_algorithm(k), DKIM_RSA_SHA256);
	cr_expect_eq(dkim_key_bits(k), 1024);
	buf_append(&pem, "", 1);
	cr_expect(strstr(buf_data(&pem), "-----BEGIN RSA PRIVATE KEY-----") != NULL);
	cr_assert_eq(dkim_key_parse(buf_data(&pem), &again, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(dkim_key_sign(k, digest, sig, &sig_len), 0);
	cr_expect_eq(sig_len, 128);
	cr_expect_eq(verify_rsa(again, digest, sig, sig_len), 0, "the parsed-back key does not verify");
	digest[5] = 9;
	cr_expect_neq(verify_rsa(k, digest, sig, sig_len), 0, "a changed digest verifies");
	buf_free(&pem);
	dkim_key_free(k);
	dkim_key_free(again);
}

Test(dkim_key, generated_ed25519_round_trip)
{
	struct buf pem;
	struct dkim_key *k = NULL;
	char err[256];

	buf_init(&pem, 64 * 1024);
	cr_assert_eq(dkim_key_generate(DKIM_ED25519_SHA256, 0, &pem, &k, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(dkim_key_algorithm(k), DKIM_ED25519_SHA256);
	buf_append(&pem, "", 1);
	cr_expect(strstr(buf_data(&pem), "-----BEGIN PRIVATE KEY-----") != NULL);
	buf_free(&pem);
	dkim_key_free(k);
}

/* pem_of - write a freshly generated key of another kind as PEM. */
static void pem_of(mbedtls_pk_type_t type, unsigned bits, char *out, size_t size)
{
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_pk_context pk;

	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	mbedtls_pk_init(&pk);
	cr_assert_eq(mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0), 0);
	cr_assert_eq(mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(type)), 0);
	if (type == MBEDTLS_PK_RSA)
		cr_assert_eq(mbedtls_rsa_gen_key(mbedtls_pk_rsa(pk), mbedtls_ctr_drbg_random, &drbg, bits, 65537), 0);
	else
		cr_assert_eq(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk),
						 mbedtls_ctr_drbg_random, &drbg), 0);
	cr_assert_eq(mbedtls_pk_write_key_pem(&pk, (unsigned char *)out, size), 0);
	mbedtls_pk_free(&pk);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
}

struct bad_case {
	const char *name;
	const char *pem;
	const char *want;         /* in the error */
};

Test(dkim_key, bad_input_is_refused_with_a_reason)
{
	char small_rsa[4096], ec[4096];
	uint8_t seed[32] = { 0 };
	char ed[256];

	pem_of(MBEDTLS_PK_RSA, 512, small_rsa, sizeof(small_rsa));
	pem_of(MBEDTLS_PK_ECKEY, 0, ec, sizeof(ec));
	ed25519_pem(seed, ed, sizeof(ed));
	ed[40] = ed[40] == 'A' ? 'B' : 'A';  /* inside the base64: the prefix breaks */
	const struct bad_case cases[] = {
		{ "empty", "", "not a PEM private key" },
		{ "garbage", "hello world\n", "not a PEM private key" },
		{ "bad base64", "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n", "not a PEM private key" },
		{ "truncated", "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n", "not a PEM private key" },
		{ "encrypted", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted" },
		{ "public key", "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n", "not a PEM private key" },
		{ "RSA 512", small_rsa, "512 bits" },
		{ "EC key", ec, "DKIM signs with RSA or Ed25519" },
		{ "damaged Ed25519 prefix", ed, "not a PEM private key" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dkim_key *k = (struct dkim_key *)&k;
		char err[256] = "";
		int rc = dkim_key_parse(cases[i].pem, &k, err, sizeof(err));
		cr_expect_eq(rc, -EINVAL, "%s: got rc %d, want -EINVAL", cases[i].name, rc);
		cr_expect_null(k, "%s: *out must be NULL", cases[i].name);
		cr_expect(strstr(err, cases[i].want) != NULL, "%s: got \"%s\", want \"%s\"", cases[i].name, err,
			  cases[i].want);
	}
}

Test(dkim_key, load_from_files)
{
	char path[] = "/tmp/ringmail-test-dkim-key-XXXXXX", err[512];
	struct dkim_key *k = NULL;
	uint8_t seed[32];
	char pem[256];

	unbase64(rfc8463_seed, seed, sizeof(seed));
	ed25519_pem(seed, pem, sizeof(pem));
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, pem, strlen(pem)), (ssize_t)strlen(pem));
	close(fd);
	cr_expect_eq(dkim_key_load(path, &k, err, sizeof(err)), 0, "%s", err);
	cr_expect_not_null(k);
	k = dkim_key_free(k);
	cr_expect_null(k);

	cr_expect_eq(dkim_key_load("/nonexistent/dkim.pem", &k, err, sizeof(err)), -ENOENT);
	cr_expect(strstr(err, "/nonexistent/dkim.pem") != NULL, "got \"%s\"", err);
	/* A file too large to be a key. */
	fd = open(path, O_WRONLY | O_TRUNC);
	cr_assert(fd >= 0);
	static char big[70 * 1024];
	memset(big, 'A', sizeof(big));
	cr_assert_eq(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
	close(fd);
	cr_expect_eq(dkim_key_load(path, &k, err, sizeof(err)), -EFBIG);
	cr_expect(strstr(err, path) != NULL, "got \"%s\"", err);
	/* A key the loader can read but which is not a key names the file. */
	fd = open(path, O_WRONLY | O_TRUNC);
	cr_assert_eq(write(fd, "nope\n", 5), 5);
	close(fd);
	cr_expect_eq(dkim_key_load(path, &k, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, path) != NULL, "got \"%s\"", err);
	unlink(path);
	cr_expect_null(dkim_key_free(NULL));
}

struct sign_thread {
	struct dkim_key *key;
	uint8_t digest[DKIM_HASH_LEN];
	uint8_t sig[DKIM_SIGNATURE_MAX];
	size_t sig_len;
	int rc;
};

static void *sign_many(void *arg)
{
	struct sign_thread *t = arg;

	for (int i = 0; i < 20 && t->rc == 0; i++) {
		t->sig_len = sizeof(t->sig);
		t->rc = dkim_key_sign(t->key, t->digest, t->sig, &t->sig_len);
	}
	return NULL;
}

/* Threads sign with one key at once (each on its own RSA copy): every
 * signature verifies. */
Test(dkim_key, concurrent_rsa_signatures_verify)
{
	struct buf pem;
	struct dkim_key *k = NULL;
	char err[256];
	struct sign_thread t[4];
	pthread_t tid[4];

	buf_init(&pem, 64 * 1024);
	cr_assert_eq(dkim_key_generate(DKIM_RSA_SHA256, 1024, &pem, &k, err, sizeof(err)), 0, "%s", err);
	for (int i = 0; i < 4; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		t[i].key = k;
		t[i].digest[0] = (uint8_t)i;
		cr_assert_eq(pthread_create(&tid[i], NULL, sign_many, &t[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(tid[i], NULL);
		cr_expect_eq(t[i].rc, 0);
		cr_expect_eq(verify_rsa(k, t[i].digest, t[i].sig, t[i].sig_len), 0, "thread %d's signature", i);
	}
	buf_free(&pem);
	dkim_key_free(k);
}
