/*
 * dkim_key - DKIM private keys through OpenSSL's libcrypto (RSA signing),
 * libsodium (Ed25519) and mbedTLS (PEM framing, base64, RSA generation);
 * see dkim_key.h.
 */
#include "dkim_key.h"

#include <errno.h>
#include <fcntl.h>
#include <mbedtls/base64.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pem.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/rsa.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errmsg.h"
#include "xalloc.h"

/* A key file is small: an RSA-8192 PEM is about 6.5 KiB. */
#define DKIM_KEY_FILE_MAX (64 * 1024)

/* The DER of an Ed25519 PKCS#8 private key (RFC 8410) up to the seed:
 * SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING {
 * OCTET STRING (32) } }. */
static const uint8_t ed25519_pkcs8_prefix[16] = {
	0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
	0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
};

struct dkim_key {
	enum dkim_algorithm algorithm;
	EVP_PKEY *rsa;                                  /* RSA */
	uint8_t ed_secret[crypto_sign_SECRETKEYBYTES];  /* Ed25519: seed + public */
	uint8_t ed_public[crypto_sign_PUBLICKEYBYTES];
};

/* Each thread's generator for RSA key generation. */
static __thread struct {
	bool ready;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
} thread_rng;

/* rng - this thread's seeded generator, or NULL. */
static mbedtls_ctr_drbg_context *rng(void)
{
	static const char personal[] = "ringmail-dkim";

	if (!thread_rng.ready) {
		mbedtls_entropy_init(&thread_rng.entropy);
		mbedtls_ctr_drbg_init(&thread_rng.drbg);
		if (mbedtls_ctr_drbg_seed(&thread_rng.drbg, mbedtls_entropy_func, &thread_rng.entropy,
					  (const unsigned char *)personal, sizeof(personal) - 1) != 0)
			return NULL;
		thread_rng.ready = true;
	}
	return &thread_rng.drbg;
}

/* parse_ed25519 - a PKCS#8 PEM holding an Ed25519 seed; false if the PEM
 * is something else (then mbedTLS gets to try). */
static bool parse_ed25519(const char *pem, struct dkim_key *k)
{
	mbedtls_pem_context ctx;
	size_t used;
	bool ok = false;

	mbedtls_pem_init(&ctx);
	if (mbedtls_pem_read_buffer(&ctx, "-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----",
				    (const unsigned char *)pem, NULL, 0, &used) == 0 &&
	    ctx.buflen == sizeof(ed25519_pkcs8_prefix) + crypto_sign_SEEDBYTES &&
	    memcmp(ctx.buf, ed25519_pkcs8_prefix, sizeof(ed25519_pkcs8_prefix)) == 0) {
		crypto_sign_seed_keypair(k->ed_public, k->ed_secret, ctx.buf + sizeof(ed25519_pkcs8_prefix));
		k->algorithm = DKIM_ED25519_SHA256;
		ok = true;
	}
	mbedtls_pem_free(&ctx);
	return ok;
}

/* no_passphrase - an encrypted PEM is refused, never asked about. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

/* parse_rsa - an RSA key in PKCS#1 or PKCS#8 PEM, of 1024 to 8192 bits.
 * Signing goes through libcrypto: its RSA-2048 private operation takes
 * about 0.3 ms here, mbedTLS 2.28's 1.7 ms (generic bignum code, no
 * assembly in Debian's build), and a bulk sender signs every message. */
static int parse_rsa(const char *pem, struct dkim_key *k, char *err, size_t errlen)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);

	if (bio == NULL)
		return errmsg_set(err, errlen, -ENOMEM, "out of memory");
	ERR_clear_error();
	k->rsa = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	if (k->rsa == NULL) {
		char why[128];
		ERR_error_string_n(ERR_peek_last_error(), why, sizeof(why));
		ERR_clear_error();
		return errmsg_set(err, errlen, -EINVAL, "not a PEM private key (%s)", why);
	}
	if (EVP_PKEY_get_base_id(k->rsa) != EVP_PKEY_RSA)
		return errmsg_set(err, errlen, -EINVAL, "a %s key: DKIM signs with RSA or Ed25519",
				  EVP_PKEY_get0_type_name(k->rsa));
	int bits = EVP_PKEY_get_bits(k->rsa);
	if (bits < DKIM_RSA_MIN_BITS || bits > DKIM_RSA_MAX_BITS ||
	    (bits + 7) / 8 > DKIM_SIGNATURE_MAX)
		return errmsg_set(err, errlen, -EINVAL,
				  "an RSA key of %d bits: RFC 8301 wants 1024 to 8192 (2048 recommended)",
				  bits);
	k->algorithm = DKIM_RSA_SHA256;
	return 0;
}

int dkim_key_parse(const char *pem, struct dkim_key **out, char *err, size_t errlen)
{
	struct dkim_key *k = xcalloc(1, sizeof(*k));
	int rc = 0;

	*out = NULL;
	if (sodium_init() < 0) {
		free(k);
		return errmsg_set(err, errlen, -EIO, "libsodium does not initialise");
	}
	if (strstr(pem, "ENCRYPTED") != NULL) {
		rc = errmsg_set(err, errlen, -EINVAL, "an encrypted key (write it without a passphrase)");
	} else if (!parse_ed25519(pem, k)) {
		rc = parse_rsa(pem, k, err, errlen);
	}
	if (rc < 0) {
		dkim_key_free(k);
		return rc;
	}
	*out = k;
	return 0;
}

int dkim_key_load(const char *path, struct dkim_key **out, char *err, size_t errlen)
{
	char *text = xmalloc(DKIM_KEY_FILE_MAX + 1);
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc;

	*out = NULL;
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		free(text);
		return rc;
	}
	for (;;) {
		ssize_t n = read(fd, text + len, DKIM_KEY_FILE_MAX + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : 0;
			break;
		}
		len += (size_t)n;
		if (len > DKIM_KEY_FILE_MAX) {
			rc = -EFBIG;
			break;
		}
	}
	close(fd);
	if (rc < 0) {
		snprintf(err, errlen, "cannot read %s: %s", path,
			 rc == -EFBIG ? "larger than 64 KiB, not a key" : strerror(-rc));
	} else {
		char why[200];
		text[len] = '\0';
		rc = dkim_key_parse(text, out, why, sizeof(why));
		if (rc < 0)
			snprintf(err, errlen, "%s: %s", path, why);
	}
	sodium_memzero(text, len);
	free(text);
	return rc;
}

struct dkim_key *dkim_key_free(struct dkim_key *k)
{
	if (k == NULL)
		return NULL;
	EVP_PKEY_free(k->rsa);
	sodium_memzero(k->ed_secret, sizeof(k->ed_secret));
	free(k);
	return NULL;
}

enum dkim_algorithm dkim_key_algorithm(const struct dkim_key *k)
{
	return k->algorithm;
}

unsigned dkim_key_bits(const struct dkim_key *k)
{
	return k->algorithm == DKIM_RSA_SHA256 ? (unsigned)EVP_PKEY_get_bits(k->rsa) : 256;
}

int dkim_key_sign(void *key, const uint8_t digest[DKIM_HASH_LEN], uint8_t *sig, size_t *sig_len)
{
	struct dkim_key *k = key;

	if (k->algorithm == DKIM_ED25519_SHA256) {
		unsigned long long n = 0;
		if (crypto_sign_detached(sig, &n, digest, DKIM_HASH_LEN, k->ed_secret) != 0)
			return -EIO;
		*sig_len = (size_t)n;
		return 0;
	}
	/* One context per signature: the key is shared by every thread
	 * (libcrypto keeps its blinding per thread). */
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k->rsa, NULL);
	size_t n = DKIM_SIGNATURE_MAX;
	int rc = ctx != NULL && EVP_PKEY_sign_init(ctx) > 0 &&
		 EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0 &&
		 EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) > 0 &&
		 EVP_PKEY_sign(ctx, sig, &n, digest, DKIM_HASH_LEN) > 0 ? 0 : -EIO;
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	*sig_len = n;
	return rc;
}

static int append_base64(struct buf *out, const uint8_t *p, size_t n)
{
	size_t need = 0;

	mbedtls_base64_encode(NULL, 0, &need, p, n);
	if (buf_reserve(out, need) < 0)
		return -ENOBUFS;
	if (mbedtls_base64_encode((unsigned char *)buf_tail(out), need, &need, p, n) != 0)
		return -ENOBUFS;
	buf_produce(out, need);
	return 0;
}

int dkim_key_public(const struct dkim_key *k, struct buf *out)
{
	uint8_t der[2 * DKIM_SIGNATURE_MAX + 64];

	if (k->algorithm == DKIM_ED25519_SHA256)
		return append_base64(out, k->ed_public, sizeof(k->ed_public));
	if (i2d_PUBKEY(k->rsa, NULL) > (int)sizeof(der))
		return -ENOBUFS;
	uint8_t *p = der;
	int n = i2d_PUBKEY(k->rsa, &p);
	if (n <= 0)
		return -ENOBUFS;
	return append_base64(out, der, (size_t)n);
}

/* generate_rsa - a PKCS#1 PEM ("BEGIN RSA PRIVATE KEY", as openssl
 * genrsa writes) of a new key. */
static int generate_rsa(unsigned bits, struct buf *pem, char *err, size_t errlen)
{
	mbedtls_pk_context pk;
	mbedtls_ctr_drbg_context *drbg = rng();
	unsigned char *text = xmalloc(16 * 1024);
	int rc = 0;

	mbedtls_pk_init(&pk);
	if (drbg == NULL ||
	    mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)) != 0 ||
	    mbedtls_rsa_gen_key(mbedtls_pk_rsa(pk), mbedtls_ctr_drbg_random, drbg, bits, 65537) != 0 ||
	    mbedtls_pk_write_key_pem(&pk, text, 16 * 1024) != 0)
		rc = errmsg_set(err, errlen, -EIO, "RSA key generation failed");
	else if (buf_append_str(pem, (const char *)text) < 0)
		rc = errmsg_set(err, errlen, -ENOBUFS, "no room for the PEM");
	mbedtls_platform_zeroize(text, 16 * 1024);
	free(text);
	mbedtls_pk_free(&pk);
	return rc;
}

/* generate_ed25519 - a PKCS#8 PEM, as openssl genpkey writes. */
static int generate_ed25519(struct buf *pem, char *err, size_t errlen)
{
	uint8_t der[sizeof(ed25519_pkcs8_prefix) + crypto_sign_SEEDBYTES];
	char b64[128];
	size_t n = 0;
	int rc = 0;

	memcpy(der, ed25519_pkcs8_prefix, sizeof(ed25519_pkcs8_prefix));
	randombytes_buf(der + sizeof(ed25519_pkcs8_prefix), crypto_sign_SEEDBYTES);
	if (mbedtls_base64_encode((unsigned char *)b64, sizeof(b64), &n, der, sizeof(der)) != 0 ||
	    buf_append_printf(pem, "-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n", b64) < 0)
		rc = errmsg_set(err, errlen, -ENOBUFS, "no room for the PEM");
	sodium_memzero(der, sizeof(der));
	sodium_memzero(b64, sizeof(b64));
	return rc;
}

int dkim_key_generate(enum dkim_algorithm alg, unsigned bits, struct buf *pem,
		      struct dkim_key **out, char *err, size_t errlen)
{
	size_t start = buf_len(pem);
	int rc;

	*out = NULL;
	if (sodium_init() < 0)
		return errmsg_set(err, errlen, -EIO, "libsodium does not initialise");
	if (alg == DKIM_RSA_SHA256) {
		if (bits < DKIM_RSA_MIN_BITS || bits > DKIM_RSA_MAX_BITS)
			return errmsg_set(err, errlen, -EINVAL, "RSA bits must be 1024 to 8192 (RFC 8301)");
		rc = generate_rsa(bits, pem, err, errlen);
	} else {
		rc = generate_ed25519(pem, err, errlen);
	}
	if (rc == 0) {
		/* Parsed back: what was written is what will be loaded. */
		char *copy = xstrndup(buf_data(pem) + start, buf_len(pem) - start);
		rc = dkim_key_parse(copy, out, err, errlen);
		sodium_memzero(copy, strlen(copy));
		free(copy);
	}
	return rc;
}
