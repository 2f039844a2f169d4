/*
 * dkim_key - DKIM private keys: loading, signing a digest, generating.
 *
 *   struct dkim_key *k;
 *   char err[256];
 *   if (dkim_key_load("/etc/ringmail/dkim/example.com.rsa.pem", &k, err, sizeof(err)) < 0) ...
 *   dkim_key_algorithm(k);                     follows the key
 *   dkim_key_sign(k, digest, sig, &sig_len);   a dkim_sign_fn; any thread
 *   k = dkim_key_free(k);
 *
 * RSA goes through OpenSSL's libcrypto (PKCS#1 or PKCS#8 PEM, as `openssl
 * genrsa` and `openssl genpkey -algorithm RSA` write them; at least 1024
 * bits, RFC 8301): its private operation is about 6 times faster than
 * mbedTLS 2.28's here. Ed25519 goes through libsodium, since mbedTLS 2.28
 * has none: the PKCS#8 PEM of `openssl genpkey -algorithm ed25519` is a
 * fixed 16-octet DER prefix and the 32-octet seed. Signing is thread-safe:
 * every thread signs with the same key (libcrypto keeps RSA blinding per
 * thread), each signature with its own context. A key is immutable once
 * loaded; the config owns it.
 */
#ifndef RINGMAIL_DKIM_KEY_H
#define RINGMAIL_DKIM_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "dkim.h"

#define DKIM_RSA_MIN_BITS 1024
#define DKIM_RSA_MAX_BITS 8192

struct dkim_key;

/* dkim_key_load - read a PEM private key. 0, or -EINVAL/-errno with the
 * reason in err (unreadable, not a key, an unsupported type, too short). */
int dkim_key_load(const char *path, struct dkim_key **out, char *err, size_t errlen);

/* dkim_key_parse - the same from PEM text in memory (NUL-terminated). */
int dkim_key_parse(const char *pem, struct dkim_key **out, char *err, size_t errlen);

/* dkim_key_free - accepts NULL, returns NULL. */
struct dkim_key *dkim_key_free(struct dkim_key *k);

enum dkim_algorithm dkim_key_algorithm(const struct dkim_key *k);

/* dkim_key_bits - RSA modulus bits, or 256 for Ed25519. */
unsigned dkim_key_bits(const struct dkim_key *k);

/* dkim_key_sign - sign a SHA-256 digest (RSASSA-PKCS1-v1_5 or PureEdDSA
 * over the digest, RFC 8463); the dkim_sign_fn shape, with the key as
 * ctx. 0 or -EIO. */
int dkim_key_sign(void *key, const uint8_t digest[DKIM_HASH_LEN], uint8_t *sig, size_t *sig_len);

/* dkim_key_public - the p= value of the key's DNS record (base64 of the
 * SubjectPublicKeyInfo for RSA, of the raw 32-octet key for Ed25519),
 * appended to out. 0 or -ENOBUFS. */
int dkim_key_public(const struct dkim_key *k, struct buf *out);

/* dkim_key_generate - a new key (bits: RSA only) as PEM appended to pem,
 * and the key itself. 0, or -EINVAL/-EIO with the reason in err. */
int dkim_key_generate(enum dkim_algorithm alg, unsigned bits, struct buf *pem,
		      struct dkim_key **out, char *err, size_t errlen);

#endif
