/*
 * tls - TLS 1.2 over mbedTLS 2.28 with memory bios; see tls.h.
 *
 * mbedTLS reads and writes through two callbacks (mbedtls_ssl_set_bio):
 * tls_bio_recv takes ciphertext from s->in, which the caller fills with
 * what the ring received, and tls_bio_send appends to s->out, which the
 * caller drains into the ring. An empty s->in is MBEDTLS_ERR_SSL_WANT_READ,
 * a full s->out is MBEDTLS_ERR_SSL_WANT_WRITE; both surface to the caller
 * as TLS_WANT_READ / TLS_WANT_WRITE and the call is simply repeated later.
 *
 * The handshake is stepped here rather than with mbedtls_ssl_handshake()
 * so that we can see whether it went through the certificate state: 2.28
 * has no public "was this resumed" call, and an abbreviated handshake is
 * exactly one that skips from ServerHello to ChangeCipherSpec.
 */
#include "tls.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <mbedtls/config.h>
#include <mbedtls/asn1.h>
#include <mbedtls/bignum.h>
#include <mbedtls/cipher.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/dhm.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/pem.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#include "buf.h"
#include "log.h"
#include "xalloc.h"

#if !defined(MBEDTLS_THREADING_C)
#error "tls.c shares session caches and ticket keys between workers: mbedTLS must be built with MBEDTLS_THREADING_C"
#endif
#if !defined(MBEDTLS_SSL_SESSION_TICKETS) || !defined(MBEDTLS_SSL_CACHE_C) || !defined(MBEDTLS_SSL_TICKET_C)
#error "tls.c needs mbedTLS with session tickets and the session cache"
#endif

/* The largest TLS 1.2 record on the wire: 2^14 plaintext + 2048 expansion
 * + the 5-byte header. tls_write waits for that much room, so that a
 * record it starts is never half-written because our buffer was full. */
#define TLS_RECORD_MAX		(16384 + 2048 + 5)
#define TLS_WRITE_CHUNK		16384
/* Idle sessions give their buffer storage back above this size. */
#define TLS_BUF_KEEP		1024

#define TLS_CACHE_ENTRIES	1024	/* mbedTLS searches it linearly */
#define TLS_CACHE_TIMEOUT	3600
#define TLS_TICKET_LIFETIME	(12 * 3600)

/* Server: forward secrecy and AEAD only. */
static const int tls_server_suites[] = {
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	0
};

/* Client: the same first; then older suites that old receivers still
 * need, because opportunistic TLS that fails falls back to cleartext. */
static const int tls_client_suites[] = {
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	MBEDTLS_TLS_DHE_RSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_DHE_RSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	MBEDTLS_TLS_RSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_RSA_WITH_AES_256_GCM_SHA384,
	0
};

/* Session cache and ticket key of server configs: shared between the
 * workers' configs, hence the atomic count; mbedTLS locks the insides. */
struct tls_resumption {
	atomic_int refs;
	mbedtls_ssl_cache_context cache;
	mbedtls_ssl_ticket_context ticket;
};

struct tls_config {
	atomic_int refs;		/* the creator's plus one per session */
	int is_server;
	int has_ca;			/* client: chain holds a CA bundle */
	mbedtls_ssl_config conf;	/* server, or client TLS_VERIFY_NONE */
	mbedtls_ssl_config conf_required;	/* client TLS_VERIFY_REQUIRED */
	mbedtls_x509_crt chain;		/* server: own chain; client: CAs */
	mbedtls_pk_context key;		/* server: private key */
	struct tls_resumption *resumption;	/* server only */
};

struct tls_session {
	struct tls_config *cfg;		/* one reference */
	mbedtls_ssl_context ssl;
	struct buf in;			/* ciphertext received, not yet read */
	struct buf out;			/* ciphertext to send */
	enum tls_verify verify;
	char *hostname;			/* client: owned copy, or NULL */
	int handshake_done;
	int full_handshake;		/* passed the certificate state */
	int peer_closed;		/* close_notify received */
	int close_sent;			/* close_notify queued */
	int error;			/* sticky: 0, -EPROTO, -EKEYREJECTED */
	int mbed_error;			/* the mbedTLS code behind error */
	size_t write_retry;		/* length owed to mbedtls_ssl_write */
	int stutter, recv_refused, send_refused;
	char errbuf[384];
	/* DANE (TLS_VERIFY_DANE): the records, one block with their data */
	struct dane_tlsa *dane;
	size_t dane_count;
	int dane_checked;		/* the chain was looked at */
	enum dane_result dane_result;
	char dane_why[160];
};

struct tls_saved_session {
	mbedtls_ssl_session session;
	char *hostname;
	int verified;
};

/* One DRBG per thread: handshakes on different workers never share a lock,
 * and nothing here needs freeing (the contexts hold no heap memory). */
static __thread struct {
	int seeded;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
} tls_rng;

/* tls_random - mbedTLS's f_rng; p_rng is unused (the state is per thread). */
static int tls_random(void *p_rng, unsigned char *out, size_t len)
{
	static const char personal[] = "ringmail tls";
	int r;

	(void)p_rng;
	if (!tls_rng.seeded) {
		mbedtls_entropy_init(&tls_rng.entropy);
		mbedtls_ctr_drbg_init(&tls_rng.drbg);
		r = mbedtls_ctr_drbg_seed(&tls_rng.drbg, mbedtls_entropy_func,
			&tls_rng.entropy, (const unsigned char *)personal,
			sizeof personal - 1);
		if (r != 0)
			log_fatal("tls: cannot seed the random generator (-0x%04x)", -r);
		tls_rng.seeded = 1;
	}
	while (len > 0) {
		size_t n = len < MBEDTLS_CTR_DRBG_MAX_REQUEST ? len : MBEDTLS_CTR_DRBG_MAX_REQUEST;
		if ((r = mbedtls_ctr_drbg_random(&tls_rng.drbg, out, n)) != 0)
			return r;
		out += n;
		len -= n;
	}
	return 0;
}

/* tls_is_alloc_failure - mbedTLS codes add a high-level and a low-level
 * part; out of memory in either is fatal here, as everywhere in ringmail. */
static int tls_is_alloc_failure(int r)
{
	static const int codes[] = {
		MBEDTLS_ERR_SSL_ALLOC_FAILED, MBEDTLS_ERR_X509_ALLOC_FAILED,
		MBEDTLS_ERR_PK_ALLOC_FAILED, MBEDTLS_ERR_CIPHER_ALLOC_FAILED,
		MBEDTLS_ERR_MD_ALLOC_FAILED, MBEDTLS_ERR_ECP_ALLOC_FAILED,
		MBEDTLS_ERR_DHM_ALLOC_FAILED, MBEDTLS_ERR_MPI_ALLOC_FAILED,
		MBEDTLS_ERR_ASN1_ALLOC_FAILED, MBEDTLS_ERR_PEM_ALLOC_FAILED,
	};
	int high = -((-r) & 0xFF80), low = -((-r) & 0x007F);

	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
		if (r == codes[i] || high == codes[i] || low == codes[i])
			return 1;
	return 0;
}

/* tls_config_error - "path: mbedTLS's words" into err. */
static void tls_config_error(char *err, size_t errlen, const char *what,
	const char *path, int r)
{
	char text[160];

	if (tls_is_alloc_failure(r))
		log_fatal("tls: out of memory loading %s", path);
	mbedtls_strerror(r, text, sizeof text);
	snprintf(err, errlen, "%s %s: %s", what, path, text);
}

/* Key exchange curves, cheapest first: mbedTLS 2.28's default order puts
 * the largest first, so a server chose P-521 even when a client offered
 * X25519, and a full handshake cost several times what it must. P-521
 * stays last for peers (and certificates) that need it. */
static const mbedtls_ecp_group_id tls_curves[] = {
	MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP256R1, MBEDTLS_ECP_DP_SECP384R1,
	MBEDTLS_ECP_DP_SECP521R1, MBEDTLS_ECP_DP_NONE,
};

/* tls_conf_defaults - what every config shares: TLS 1.2 only, our RNG,
 * our curve order, no renegotiation (the default, said again because it
 * matters). */
static int tls_conf_defaults(mbedtls_ssl_config *conf, int endpoint,
	const int *suites)
{
	int r = mbedtls_ssl_config_defaults(conf, endpoint,
		MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);

	if (r != 0)
		return r;
	mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3,
		MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_max_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3,
		MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_rng(conf, tls_random, NULL);
	mbedtls_ssl_conf_ciphersuites(conf, suites);
	mbedtls_ssl_conf_curves(conf, tls_curves);
	mbedtls_ssl_conf_renegotiation(conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
	return 0;
}

static struct tls_config *tls_config_alloc(int is_server)
{
	struct tls_config *cfg = xcalloc(1, sizeof *cfg);

	atomic_init(&cfg->refs, 1);
	cfg->is_server = is_server;
	mbedtls_ssl_config_init(&cfg->conf);
	mbedtls_ssl_config_init(&cfg->conf_required);
	mbedtls_x509_crt_init(&cfg->chain);
	mbedtls_pk_init(&cfg->key);
	return cfg;
}

/* tls_resumption_new - a fresh session cache and ticket key. */
static struct tls_resumption *tls_resumption_new(void)
{
	struct tls_resumption *res = xcalloc(1, sizeof *res);
	int r;

	atomic_init(&res->refs, 1);
	mbedtls_ssl_cache_init(&res->cache);
	mbedtls_ssl_cache_set_max_entries(&res->cache, TLS_CACHE_ENTRIES);
	mbedtls_ssl_cache_set_timeout(&res->cache, TLS_CACHE_TIMEOUT);
	mbedtls_ssl_ticket_init(&res->ticket);
	r = mbedtls_ssl_ticket_setup(&res->ticket, tls_random, NULL,
		MBEDTLS_CIPHER_AES_256_GCM, TLS_TICKET_LIFETIME);
	if (r != 0)
		log_fatal("tls: cannot set up session tickets (-0x%04x)", -r);
	return res;
}

static void tls_resumption_release(struct tls_resumption *res)
{
	if (res == NULL || atomic_fetch_sub(&res->refs, 1) != 1)
		return;
	mbedtls_ssl_cache_free(&res->cache);
	mbedtls_ssl_ticket_free(&res->ticket);
	free(res);
}

/* tls_config_new_server - load and check the certificate and key, then
 * attach the (maybe shared) resumption state. */
struct tls_config *tls_config_new_server(const char *cert_file,
	const char *key_file, struct tls_config *share, char *err, size_t errlen)
{
	struct tls_config *cfg = tls_config_alloc(1);
	int r;

	if (share != NULL && !share->is_server) {
		snprintf(err, errlen, "cannot share resumption with a client config");
		return tls_config_free(cfg);
	}
	if ((r = mbedtls_x509_crt_parse_file(&cfg->chain, cert_file)) != 0) {
		if (r > 0)	/* that many certificates did not parse */
			r = MBEDTLS_ERR_X509_INVALID_FORMAT;
		tls_config_error(err, errlen, "certificate", cert_file, r);
		return tls_config_free(cfg);
	}
	if ((r = mbedtls_pk_parse_keyfile(&cfg->key, key_file, NULL)) != 0) {
		tls_config_error(err, errlen, "key", key_file, r);
		return tls_config_free(cfg);
	}
	if ((r = mbedtls_pk_check_pair(&cfg->chain.pk, &cfg->key)) != 0) {
		tls_config_error(err, errlen, "key does not match certificate",
			cert_file, r);
		return tls_config_free(cfg);
	}
	if ((r = tls_conf_defaults(&cfg->conf, MBEDTLS_SSL_IS_SERVER,
	    tls_server_suites)) != 0 ||
	    (r = mbedtls_ssl_conf_own_cert(&cfg->conf, &cfg->chain, &cfg->key)) != 0) {
		tls_config_error(err, errlen, "configuration for", cert_file, r);
		return tls_config_free(cfg);
	}
	if (share != NULL) {
		cfg->resumption = share->resumption;
		atomic_fetch_add(&cfg->resumption->refs, 1);
	} else {
		cfg->resumption = tls_resumption_new();
	}
	mbedtls_ssl_conf_session_cache(&cfg->conf, &cfg->resumption->cache,
		mbedtls_ssl_cache_get, mbedtls_ssl_cache_set);
	mbedtls_ssl_conf_session_tickets_cb(&cfg->conf, mbedtls_ssl_ticket_write,
		mbedtls_ssl_ticket_parse, &cfg->resumption->ticket);
	return cfg;
}

/* tls_load_ca - a bundle file or a directory of PEM files. A directory
 * such as /etc/ssl/certs holds files that are not certificates: accept
 * it when at least one certificate parsed. */
static int tls_load_ca(mbedtls_x509_crt *chain, const char *ca_path)
{
	struct stat st;
	int r;

	if (stat(ca_path, &st) != 0)
		return MBEDTLS_ERR_X509_FILE_IO_ERROR;
	if (S_ISDIR(st.st_mode))
		r = mbedtls_x509_crt_parse_path(chain, ca_path);
	else
		r = mbedtls_x509_crt_parse_file(chain, ca_path);
	if (r < 0)
		return r;
	if (chain->version == 0)	/* nothing parsed */
		return MBEDTLS_ERR_X509_INVALID_FORMAT;
	return 0;
}

/* tls_config_new_client - two mbedTLS configs over one CA bundle: the
 * verify mode is fixed per mbedTLS config, and ours is chosen per session. */
struct tls_config *tls_config_new_client(const char *ca_path, char *err,
	size_t errlen)
{
	struct tls_config *cfg = tls_config_alloc(0);
	int r;

	if (ca_path != NULL) {
		if ((r = tls_load_ca(&cfg->chain, ca_path)) != 0) {
			tls_config_error(err, errlen, "CA bundle", ca_path, r);
			return tls_config_free(cfg);
		}
		cfg->has_ca = 1;
	}
	if ((r = tls_conf_defaults(&cfg->conf, MBEDTLS_SSL_IS_CLIENT,
	    tls_client_suites)) != 0 ||
	    (r = tls_conf_defaults(&cfg->conf_required, MBEDTLS_SSL_IS_CLIENT,
	    tls_client_suites)) != 0) {
		tls_config_error(err, errlen, "client configuration",
			ca_path != NULL ? ca_path : "(no CA)", r);
		return tls_config_free(cfg);
	}
	mbedtls_ssl_conf_authmode(&cfg->conf, MBEDTLS_SSL_VERIFY_OPTIONAL);
	mbedtls_ssl_conf_authmode(&cfg->conf_required, MBEDTLS_SSL_VERIFY_REQUIRED);
	if (cfg->has_ca) {
		mbedtls_ssl_conf_ca_chain(&cfg->conf, &cfg->chain, NULL);
		mbedtls_ssl_conf_ca_chain(&cfg->conf_required, &cfg->chain, NULL);
	}
	mbedtls_ssl_conf_session_tickets(&cfg->conf, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
	mbedtls_ssl_conf_session_tickets(&cfg->conf_required, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
	return cfg;
}

struct tls_config *tls_config_free(struct tls_config *cfg)
{
	if (cfg == NULL || atomic_fetch_sub(&cfg->refs, 1) != 1)
		return NULL;
	mbedtls_ssl_config_free(&cfg->conf);
	mbedtls_ssl_config_free(&cfg->conf_required);
	mbedtls_x509_crt_free(&cfg->chain);
	mbedtls_pk_free(&cfg->key);
	tls_resumption_release(cfg->resumption);
	free(cfg);
	return NULL;
}

/* tls_bio_send - mbedTLS's f_send: append to s->out, as much as fits. */
static int tls_bio_send(void *ctx, const unsigned char *p, size_t len)
{
	struct tls_session *s = ctx;
	size_t n = len;

	if (s->stutter) {
		if (!s->send_refused) {
			s->send_refused = 1;
			return MBEDTLS_ERR_SSL_WANT_WRITE;
		}
		s->send_refused = 0;
		if (n > 100)	/* partial writes too */
			n = 100;
	}
	if (n > buf_room(&s->out))
		n = buf_room(&s->out);
	if (n > INT_MAX)
		n = INT_MAX;
	if (n == 0)
		return MBEDTLS_ERR_SSL_WANT_WRITE;
	if (buf_append(&s->out, p, n) < 0)
		log_panic("tls_bio_send: %zu bytes do not fit after the room check", n);
	return (int)n;
}

/* tls_bio_recv - mbedTLS's f_recv: take from s->in; empty means wait. */
static int tls_bio_recv(void *ctx, unsigned char *p, size_t len)
{
	struct tls_session *s = ctx;
	size_t n = len;

	if (s->stutter) {
		if (!s->recv_refused) {
			s->recv_refused = 1;
			return MBEDTLS_ERR_SSL_WANT_READ;
		}
		s->recv_refused = 0;
	}
	if (n > buf_len(&s->in))
		n = buf_len(&s->in);
	if (n > INT_MAX)
		n = INT_MAX;
	if (n == 0)
		return MBEDTLS_ERR_SSL_WANT_READ;
	memcpy(p, buf_data(&s->in), n);
	buf_consume(&s->in, n);
	return (int)n;
}

/* tls_dane_ta - the leaf must chain to the trust anchor the TLSA record
 * named (a certificate of the presented chain), be within its dates and
 * name the host (RFC 7672 3.1.2, 3.2.3): mbedTLS's path check with that
 * one certificate as the only CA. */
static enum dane_result tls_dane_ta(struct tls_session *s, mbedtls_x509_crt *leaf, const mbedtls_x509_crt *anchor)
{
	mbedtls_x509_crt ta;
	uint32_t flags = 0;
	int r;

	mbedtls_x509_crt_init(&ta);
	r = mbedtls_x509_crt_parse_der(&ta, anchor->raw.p, anchor->raw.len);
	if (r == 0)
		r = mbedtls_x509_crt_verify(leaf, &ta, NULL, s->hostname, &flags, NULL, NULL);
	mbedtls_x509_crt_free(&ta);
	if (r == 0 && flags == 0)
		return DANE_RESULT_OK;
	if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
		snprintf(s->dane_why, sizeof s->dane_why, "DANE-TA: the certificate does not name %s", s->hostname);
		return DANE_RESULT_HOST_MISMATCH;
	}
	if (flags & (MBEDTLS_X509_BADCERT_EXPIRED | MBEDTLS_X509_BADCERT_FUTURE)) {
		snprintf(s->dane_why, sizeof s->dane_why, "DANE-TA: a certificate of the chain is out of its dates");
		return DANE_RESULT_EXPIRED;
	}
	snprintf(s->dane_why, sizeof s->dane_why, "DANE-TA: the chain does not lead to the trust anchor");
	return DANE_RESULT_NOT_TRUSTED;
}

/* tls_dane_verify - mbedTLS's verify callback under TLS_VERIFY_DANE. It
 * runs for each certificate of the path mbedTLS built, the leaf (depth 0)
 * last; the PKIX flags are not ours to judge, so they are cleared, and at
 * the leaf the presented chain (leaf->next ...) meets the TLSA records. A
 * refusal returns an error, which ends the handshake under the optional
 * mode too. */
static int tls_dane_verify(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	struct tls_session *s = arg;
	struct dane_cert chain[16];
	const mbedtls_x509_crt *at[16];
	size_t n = 0;

	*flags = 0;
	if (depth > 0)
		return 0;
	for (const mbedtls_x509_crt *c = crt; c != NULL && n < 16; c = c->next) {
		chain[n] = (struct dane_cert){ c->raw.p, c->raw.len, c->pk_raw.p, c->pk_raw.len };
		at[n++] = c;
	}
	struct dane_match m = dane_match_chain(s->dane, s->dane_count, chain, n);
	s->dane_checked = 1;
	switch (m.kind) {
	case DANE_MATCH_EE:
		s->dane_result = DANE_RESULT_OK;
		break;
	case DANE_MATCH_TA:
		s->dane_result = tls_dane_ta(s, crt, at[m.index]);
		break;
	case DANE_MATCH_NONE:
		snprintf(s->dane_why, sizeof s->dane_why, "no TLSA record matches the certificate chain");
		s->dane_result = DANE_RESULT_NOT_TRUSTED;
		break;
	}
	return s->dane_result == DANE_RESULT_OK ? 0 : MBEDTLS_ERR_X509_FATAL_ERROR;
}

int tls_session_set_dane(struct tls_session *s, const struct dane_tlsa *recs, size_t n)
{
	size_t bytes = n * sizeof(*recs);

	if (s->verify != TLS_VERIFY_DANE || n == 0 || s->dane != NULL)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		bytes += recs[i].len;
	s->dane = xmalloc(bytes);
	uint8_t *data = (uint8_t *)(s->dane + n);
	for (size_t i = 0; i < n; i++) {
		s->dane[i] = recs[i];
		memcpy(data, recs[i].data, recs[i].len);
		s->dane[i].data = data;
		data += recs[i].len;
	}
	s->dane_count = n;
	return 0;
}

enum dane_result tls_dane_result(const struct tls_session *s)
{
	return s->dane_checked ? s->dane_result : DANE_RESULT_VALIDATION_FAILURE;
}

/* tls_session_new - pick the mbedTLS config that carries the verify mode,
 * set SNI and the name to check, plug in the memory bios. */
struct tls_session *tls_session_new(struct tls_config *cfg,
	enum tls_verify verify, const char *hostname)
{
	struct tls_session *s;
	const mbedtls_ssl_config *conf = &cfg->conf;
	int r;

	if (!cfg->is_server && verify == TLS_VERIFY_REQUIRED) {
		if (hostname == NULL || hostname[0] == '\0')
			return NULL;
		conf = &cfg->conf_required;
	}
	/* DANE keeps the optional mode: its verdict is ours (the verify
	 * callback), and a config without CAs must still work. */
	if (!cfg->is_server && verify == TLS_VERIFY_DANE && (hostname == NULL || hostname[0] == '\0'))
		return NULL;
	s = xcalloc(1, sizeof *s);
	mbedtls_ssl_init(&s->ssl);
	buf_init(&s->in, TLS_INPUT_MAX);
	buf_init(&s->out, TLS_OUTPUT_MAX);
	s->verify = cfg->is_server ? TLS_VERIFY_NONE : verify;
	if ((r = mbedtls_ssl_setup(&s->ssl, conf)) != 0)
		log_fatal("tls: cannot set up a session (-0x%04x)", -r);
	if (!cfg->is_server && hostname != NULL) {
		if (mbedtls_ssl_set_hostname(&s->ssl, hostname) != 0) {
			mbedtls_ssl_free(&s->ssl);
			free(s);
			return NULL;
		}
		s->hostname = xstrdup(hostname);
	}
	mbedtls_ssl_set_bio(&s->ssl, s, tls_bio_send, tls_bio_recv, NULL);
	if (s->verify == TLS_VERIFY_DANE) {
		s->dane_result = DANE_RESULT_VALIDATION_FAILURE;
		mbedtls_ssl_set_verify(&s->ssl, tls_dane_verify, s);
	}
	atomic_fetch_add(&cfg->refs, 1);
	s->cfg = cfg;
	return s;
}

struct tls_session *tls_session_free(struct tls_session *s)
{
	if (s == NULL)
		return NULL;
	mbedtls_ssl_free(&s->ssl);
	buf_free(&s->in);
	buf_free(&s->out);
	free(s->hostname);
	free(s->dane);
	tls_config_free(s->cfg);
	free(s);
	return NULL;
}

void tls_session_set_stutter(struct tls_session *s, int on)
{
	s->stutter = on;
}

int tls_feed_ciphertext(struct tls_session *s, const void *data, size_t len)
{
	return buf_append(&s->in, data, len);
}

const void *tls_pending_ciphertext(struct tls_session *s, size_t *len)
{
	*len = buf_len(&s->out);
	return buf_data(&s->out);
}

void tls_ciphertext_consumed(struct tls_session *s, size_t n)
{
	buf_consume(&s->out, n);
	if (buf_len(&s->out) == 0)
		buf_clear(&s->out, TLS_BUF_KEEP);
}

/* tls_fail - make an mbedTLS error the session's sticky error. */
static int tls_fail(struct tls_session *s, int r)
{
	if (tls_is_alloc_failure(r))
		log_fatal("tls: out of memory in a session (-0x%04x)", -r);
	s->mbed_error = r;
	if (r == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED ||
	    r == MBEDTLS_ERR_SSL_CA_CHAIN_REQUIRED ||
	    (s->dane_checked && s->dane_result != DANE_RESULT_OK))
		s->error = -EKEYREJECTED;
	else
		s->error = -EPROTO;
	return s->error;
}

/* tls_status - an mbedTLS return code as ours: waits pass, errors stick.
 * Waiting for input with nothing buffered is idleness: give the input
 * storage back. */
static int tls_status(struct tls_session *s, int r)
{
	if (r == MBEDTLS_ERR_SSL_WANT_READ) {
		if (buf_len(&s->in) == 0)
			buf_clear(&s->in, TLS_BUF_KEEP);
		return TLS_WANT_READ;
	}
	if (r == MBEDTLS_ERR_SSL_WANT_WRITE)
		return TLS_WANT_WRITE;
	return tls_fail(s, r);
}

/* tls_handshake - step until HANDSHAKE_OVER, noting a full handshake. The
 * check after completion is belt and braces: mbedTLS already refuses an
 * unverified peer under VERIFY_REQUIRED, and a resumed session only
 * carries trust it had (tls_session_resume). */
int tls_handshake(struct tls_session *s)
{
	int r;

	if (s->error != 0)
		return s->error;
	if (s->handshake_done)
		return 0;
	while (s->ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER) {
		if (s->ssl.state == MBEDTLS_SSL_SERVER_CERTIFICATE)
			s->full_handshake = 1;
		if ((r = mbedtls_ssl_handshake_step(&s->ssl)) != 0)
			return tls_status(s, r);
	}
	s->handshake_done = 1;
	if ((s->verify == TLS_VERIFY_REQUIRED || s->verify == TLS_VERIFY_DANE) && !tls_peer_verified(s))
		return tls_fail(s, MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
	return 0;
}

ssize_t tls_read(struct tls_session *s, void *buf, size_t cap)
{
	int r, empty = 0;

	if ((r = tls_handshake(s)) != 0)
		return r;
	if (s->peer_closed)
		return 0;
	if (cap == 0)
		return -EINVAL;
	if (cap > INT_MAX)
		cap = INT_MAX;
	/* A zero-length application record (some stacks send them to vary
	 * the CBC IV) reads as 0; mbedTLS limits how many in a row. */
	while ((r = mbedtls_ssl_read(&s->ssl, buf, cap)) == 0 && ++empty < 8)
		;
	if (r > 0)
		return r;
	if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
		s->peer_closed = 1;
		return 0;
	}
	if (r == 0)
		return tls_fail(s, MBEDTLS_ERR_SSL_INVALID_RECORD);
	return tls_status(s, r);
}

/* tls_write - see tls.h for the same-bytes rule after TLS_WANT_WRITE: we
 * pass mbedTLS exactly the length it was given before, because it answers
 * a retry with the length of the new call, not of the record it built. */
ssize_t tls_write(struct tls_session *s, const void *data, size_t len)
{
	size_t n;
	int r;

	if ((r = tls_handshake(s)) != 0)
		return r;
	if (s->close_sent)
		return -EPIPE;
	if (len == 0)
		return 0;
	if (s->write_retry > 0) {
		if (len < s->write_retry)
			return -EINVAL;
		n = s->write_retry;
	} else {
		if (buf_room(&s->out) < TLS_RECORD_MAX)
			return TLS_WANT_WRITE;
		n = len < TLS_WRITE_CHUNK ? len : TLS_WRITE_CHUNK;
	}
	r = mbedtls_ssl_write(&s->ssl, data, n);
	if (r >= 0) {
		s->write_retry = 0;
		return r;
	}
	if (r == MBEDTLS_ERR_SSL_WANT_WRITE || r == MBEDTLS_ERR_SSL_WANT_READ)
		s->write_retry = n;
	return tls_status(s, r);
}

int tls_close_notify(struct tls_session *s)
{
	int r;

	if (s->error != 0)
		return s->error;
	if (!s->handshake_done || s->close_sent)
		return 0;
	/* After WANT_WRITE the alert is already built: mbedTLS's next call
	 * only flushes it and returns 0. */
	if ((r = mbedtls_ssl_close_notify(&s->ssl)) != 0)
		return tls_status(s, r);
	s->close_sent = 1;
	return 0;
}

void tls_session_info(const struct tls_session *s, struct tls_info *info)
{
	memset(info, 0, sizeof *info);
	if (!s->handshake_done)
		return;
	info->protocol = mbedtls_ssl_get_version(&s->ssl);
	info->cipher = mbedtls_ssl_get_ciphersuite(&s->ssl);
	info->resumed = !s->full_handshake;
	info->verified = tls_peer_verified(s);
}

int tls_peer_verified(const struct tls_session *s)
{
	if (!s->handshake_done || mbedtls_ssl_get_peer_cert(&s->ssl) == NULL)
		return 0;
	if (s->verify == TLS_VERIFY_DANE)
		return s->dane_checked && s->dane_result == DANE_RESULT_OK;
	return mbedtls_ssl_get_verify_result(&s->ssl) == 0;
}

/* tls_strerror - mbedTLS's text for the error, then the verification
 * flags on one line (mbedTLS writes one per line). */
const char *tls_strerror(struct tls_session *s)
{
	char flags[256];
	uint32_t vr = mbedtls_ssl_get_verify_result(&s->ssl);
	size_t len;

	s->errbuf[0] = '\0';
	if (s->verify == TLS_VERIFY_DANE && s->dane_checked && s->dane_result != DANE_RESULT_OK) {
		snprintf(s->errbuf, sizeof s->errbuf, "DANE: %s (result-type=%s)", s->dane_why,
			 dane_result_name(s->dane_result));
		return s->errbuf;
	}
	if (s->mbed_error != 0)
		mbedtls_strerror(s->mbed_error, s->errbuf, sizeof s->errbuf);
	if (vr == 0 || vr == (uint32_t)-1)
		return s->errbuf;
	if (mbedtls_x509_crt_verify_info(flags, sizeof flags, "", vr) <= 0)
		return s->errbuf;
	for (char *p = flags; *p != '\0'; p++)
		if (*p == '\n')
			*p = ';';
	len = strlen(flags);
	if (len > 0 && flags[len - 1] == ';')
		flags[len - 1] = '\0';
	len = strlen(s->errbuf);
	snprintf(s->errbuf + len, sizeof s->errbuf - len, "%sverify: %s",
		len > 0 ? "; " : "", flags);
	return s->errbuf;
}

struct tls_saved_session *tls_session_save(const struct tls_session *s)
{
	struct tls_saved_session *saved;
	int r;

	if (s->cfg->is_server || !s->handshake_done || s->error != 0)
		return NULL;
	saved = xcalloc(1, sizeof *saved);
	mbedtls_ssl_session_init(&saved->session);
	if ((r = mbedtls_ssl_get_session(&s->ssl, &saved->session)) != 0) {
		if (tls_is_alloc_failure(r))
			log_fatal("tls: out of memory saving a session");
		return tls_saved_session_free(saved);
	}
	if (s->hostname != NULL)
		saved->hostname = xstrdup(s->hostname);
	saved->verified = tls_peer_verified(s);
	return saved;
}

static int tls_same_host(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcasecmp(a, b) == 0;
}

int tls_session_resume(struct tls_session *s,
	const struct tls_saved_session *saved)
{
	int r;

	if (s->cfg->is_server || s->ssl.state != MBEDTLS_SSL_HELLO_REQUEST)
		return -EINVAL;
	if (!tls_same_host(s->hostname, saved->hostname))
		return -EINVAL;
	if (s->verify == TLS_VERIFY_REQUIRED && !saved->verified)
		return -EINVAL;
	if (s->verify == TLS_VERIFY_DANE)
		return -EINVAL;     /* the TLSA records may have changed: a full check */
	if ((r = mbedtls_ssl_set_session(&s->ssl, &saved->session)) != 0) {
		if (tls_is_alloc_failure(r))
			log_fatal("tls: out of memory resuming a session");
		return -EINVAL;
	}
	return 0;
}

struct tls_saved_session *tls_saved_session_free(struct tls_saved_session *saved)
{
	if (saved == NULL)
		return NULL;
	mbedtls_ssl_session_free(&saved->session);
	free(saved->hostname);
	free(saved);
	return NULL;
}

enum tls_cert_problem tls_cert_problem_of(const struct tls_session *s)
{
	uint32_t vr;

	if (s == NULL)
		return TLS_CERT_NONE;
	vr = mbedtls_ssl_get_verify_result(&s->ssl);
	if (vr == 0)
		return TLS_CERT_OK;
	if (vr == (uint32_t)-1 || (vr & MBEDTLS_X509_BADCERT_SKIP_VERIFY) != 0)
		return mbedtls_ssl_get_peer_cert(&s->ssl) == NULL ? TLS_CERT_NONE : TLS_CERT_OTHER;
	if (vr & (MBEDTLS_X509_BADCERT_EXPIRED | MBEDTLS_X509_BADCERT_FUTURE))
		return TLS_CERT_EXPIRED;
	if (vr & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
		return TLS_CERT_NOT_TRUSTED;
	if (vr & MBEDTLS_X509_BADCERT_CN_MISMATCH)
		return TLS_CERT_HOST_MISMATCH;
	return TLS_CERT_OTHER;
}
