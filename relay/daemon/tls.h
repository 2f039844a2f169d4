/*
 * tls - our small TLS interface over mbedTLS 2.28, with memory bios so that
 * the ring does all socket I/O. No sockets here: ciphertext in, ciphertext
 * out, plaintext in between. This is the only module that includes mbedTLS.
 *
 *   cfg = tls_config_new_server("chain.pem", "key.pem", NULL, err, sizeof err);
 *   s = tls_session_new(cfg, TLS_VERIFY_NONE, NULL);
 *   on received bytes:  tls_feed_ciphertext(s, bytes, n);
 *   drive:              r = tls_handshake(s);    // 0 = done, or TLS_WANT_*
 *                       while ((n = tls_read(s, buf, sizeof buf)) > 0) use(buf, n);
 *                       n = tls_write(s, data, len);  // n bytes accepted
 *   after every call:   out = tls_pending_ciphertext(s, &len);
 *                       append out to the connection's send buffer,
 *                       tls_ciphertext_consumed(s, len);
 *   s = tls_session_free(s);  cfg = tls_config_free(cfg);
 *
 * Protocol: TLS 1.2 only. mbedTLS 2.28 (Debian 12) has no TLS 1.3 (its 1.3
 * code is an incomplete experiment, off in Debian's build), and we accept
 * nothing older than 1.2. Server suites: ECDHE with AES-GCM or
 * ChaCha20-Poly1305, ECDSA or RSA certificates. The client offers the same
 * first and then a few older suites (CBC, plain RSA key exchange): under
 * opportunistic TLS (RFC 7435) an old cipher still beats cleartext.
 * Renegotiation is refused. Resumption: session tickets (RFC 5077; an
 * AES-256-GCM key that rotates every 12 hours) and, for clients without
 * tickets, a session-ID cache (1024 entries, one hour).
 *
 * Return codes. tls_handshake, tls_read, tls_write and tls_close_notify
 * return TLS_WANT_READ (feed more ciphertext, then call again) or
 * TLS_WANT_WRITE (take the pending ciphertext, then call again), or an
 * error: -EPROTO (a protocol failure: bad record, fatal alert, garbage,
 * no common cipher), -EKEYREJECTED (TLS_VERIFY_REQUIRED and the peer's
 * certificate did not verify: unknown CA, expired, wrong host name).
 * tls_strerror() says why, for the log. After an error the session is dead:
 * every call returns the same error; pending ciphertext may hold an alert
 * for the peer (sending it is polite, not required).
 *
 * STARTTLS (CVE-2011-0411): bytes that arrived in cleartext before the
 * handshake started belong to the cleartext session. When STARTTLS is
 * accepted the caller MUST discard every plaintext byte still buffered
 * (and reset its protocol state) and feed this module only bytes that
 * arrive after the "220 Ready to start TLS" reply was queued. Bytes a
 * client pipelined after STARTTLS are then never executed as commands.
 *
 * Threads. A tls_config and its sessions are used by one thread at a time
 * (one config per worker; build it in any thread, then hand it over). The
 * reason: mbedTLS memoizes a precomputed table in each elliptic-curve group
 * on first use (ecp.h: "not thread-safe to use same group in multiple
 * threads"), and the server key and the client's CA keys hold such groups.
 * The resumption state of a server config (session-ID cache and ticket keys)
 * is what several workers must share, because a returning client lands on
 * any worker: pass a config as `share` to tls_config_new_server and both use
 * one cache and one ticket key. That part is thread-safe: mbedTLS guards its
 * cache and ticket contexts with mutexes, and this module refuses to build
 * without MBEDTLS_THREADING_C (Debian's build has it, with pthreads).
 * Randomness comes from one CTR-DRBG per thread (seeded from the kernel on
 * first use), so handshakes on different workers never contend on a lock.
 * "One thread at a time" is what lets conn.c run handshake steps on a
 * helper thread (tls.offload_handshakes): all steps of one worker's
 * sessions go to the same helper thread, and the worker leaves a session
 * alone while its step is out.
 *
 * Reloading certificates (SIGHUP) = building new configs, with the old one
 * as `share` so resumption survives. Sessions hold a reference to their
 * config: existing connections keep the old certificate until they close.
 *
 * Memory per session: mbedTLS's own record buffers (about 2 x 16.5 KiB)
 * plus our two ciphertext buffers, which are released when empty.
 */
#ifndef RINGMAIL_TLS_H
#define RINGMAIL_TLS_H

#include <errno.h>
#include <stddef.h>
#include <sys/types.h>

#include "dane.h"

#define TLS_WANT_READ	(-EAGAIN)
#define TLS_WANT_WRITE	(-ENOBUFS)

/* Hard caps of the ciphertext buffers. Input: what the ring received and
 * the session has not decrypted yet (the caller stops feeding when it
 * stops reading plaintext). Output: what waits to be sent. */
#define TLS_INPUT_MAX	(256 * 1024)
#define TLS_OUTPUT_MAX	(64 * 1024)

struct tls_config;
struct tls_session;
struct tls_saved_session;

enum tls_verify {
	/* Opportunistic ("may", "encrypt", and every server session): the peer's
	 * certificate is checked when a CA bundle is there, the result is only
	 * reported by tls_peer_verified(). */
	TLS_VERIFY_NONE,
	/* "verify": the chain must lead to the CA bundle and the certificate
	 * must name the host given to tls_session_new(); else -EKEYREJECTED. */
	TLS_VERIFY_REQUIRED,
	/* DANE (RFC 7672), client only: the chain must match one of the TLSA
	 * records given with tls_session_set_dane() before the handshake:
	 * DANE-EE(3) the leaf, nothing else (no name, no dates, no CA);
	 * DANE-TA(2) a certificate of the presented chain, to which the leaf
	 * must chain, within its dates and naming the host given to
	 * tls_session_new(). No CA bundle takes part. A mismatch fails the
	 * handshake with -EKEYREJECTED; tls_dane_result() says why in RFC
	 * 8460's terms. Never resumed (tls_session_resume refuses). */
	TLS_VERIFY_DANE,
};

struct tls_info {
	const char *protocol;	/* "TLSv1.2"; static strings */
	const char *cipher;	/* e.g. "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256" */
	int resumed;		/* 1 if the handshake was abbreviated */
	int verified;		/* tls_peer_verified() */
};

/* tls_config_new_server - a server config from a PEM certificate chain (leaf
 * first) and a PEM private key (unencrypted), which must match. With share
 * != NULL the new config uses share's session cache and ticket key (share
 * stays the caller's). Returns NULL with a message in err on failure. The
 * caller owns the result (one reference). */
struct tls_config *tls_config_new_server(const char *cert_file,
	const char *key_file, struct tls_config *share, char *err, size_t errlen);

/* tls_config_new_client - a client config; ca_path is a PEM bundle file, a
 * directory of PEM files, or NULL (then TLS_VERIFY_REQUIRED sessions always
 * fail). Returns NULL with a message in err on failure. */
struct tls_config *tls_config_new_client(const char *ca_path, char *err,
	size_t errlen);

/* tls_config_free - drop the caller's reference; the config goes away with
 * its last session. Returns NULL. */
struct tls_config *tls_config_free(struct tls_config *cfg);

/* tls_session_new - one connection's TLS state; takes a reference to cfg.
 * Client configs: verify as above, hostname for SNI and for the certificate
 * check (may be NULL under TLS_VERIFY_NONE). Server configs ignore both.
 * Returns NULL only when hostname is unusable (-EINVAL: too long) or
 * TLS_VERIFY_REQUIRED is asked without a hostname. */
struct tls_session *tls_session_new(struct tls_config *cfg,
	enum tls_verify verify, const char *hostname);

/* tls_session_set_dane - the TLSA records a TLS_VERIFY_DANE session
 * checks the server's chain against (copied, data and all); before the
 * handshake. 0, or -EINVAL (not a DANE session, or no records). */
int tls_session_set_dane(struct tls_session *s, const struct dane_tlsa *recs, size_t n);

/* tls_dane_result - a DANE session's verdict on the chain: DANE_RESULT_OK
 * once it matched; until the check ran, or when the handshake failed
 * before it, DANE_RESULT_VALIDATION_FAILURE. */
enum dane_result tls_dane_result(const struct tls_session *s);

/* tls_session_free - free the session, drop its config reference. NULL. */
struct tls_session *tls_session_free(struct tls_session *s);

/* tls_feed_ciphertext - bytes the ring received from the peer (copied).
 * 0, or -ENOBUFS over TLS_INPUT_MAX (nothing taken: read plaintext first). */
int tls_feed_ciphertext(struct tls_session *s, const void *data, size_t len);

/* tls_pending_ciphertext - bytes to send to the peer, *len of them (0 if
 * none). The pointer is valid until the next call on the session, so copy
 * the bytes into the connection's send buffer (do not send from it while
 * calling tls_write), then call tls_ciphertext_consumed. */
const void *tls_pending_ciphertext(struct tls_session *s, size_t *len);
void tls_ciphertext_consumed(struct tls_session *s, size_t n);

/* tls_handshake - drive the handshake: 0 once complete, TLS_WANT_*, or an
 * error. tls_read and tls_write drive it too, so calling it is optional;
 * it tells the caller when to log the session's parameters. */
int tls_handshake(struct tls_session *s);

/* tls_read - decrypted bytes (> 0, at most cap), 0 once the peer sent
 * close_notify (end of data), TLS_WANT_READ when no whole record is there,
 * or an error. A record may hold more than cap bytes: call again until
 * TLS_WANT_READ before waiting for input. */
ssize_t tls_read(struct tls_session *s, void *buf, size_t cap);

/* tls_write - encrypt up to len bytes (at most one record, 16 KiB); returns
 * how many were taken (> 0), TLS_WANT_WRITE (output is full: take pending
 * ciphertext, then call again), TLS_WANT_READ (handshake not done), or an
 * error. After TLS_WANT_WRITE the next call must pass the same bytes again
 * (at least as many; mbedTLS may have encrypted them already): keep them in
 * the buffer until accepted, as one naturally does. */
ssize_t tls_write(struct tls_session *s, const void *data, size_t len);

/* tls_close_notify - queue the close_notify alert: 0, TLS_WANT_WRITE (call
 * again after taking the pending ciphertext), or an error. Finish a
 * tls_write that said TLS_WANT_WRITE first. Nothing may be written after. */
int tls_close_notify(struct tls_session *s);

/* tls_session_info - protocol, cipher and flags, for the logs; all zero
 * until the handshake completed. */
void tls_session_info(const struct tls_session *s, struct tls_info *info);

/* tls_peer_verified - 1 if the peer presented a certificate that chains to
 * the CA bundle (and, when a hostname was given, names it), else 0. */
int tls_peer_verified(const struct tls_session *s);

/* tls_strerror - why the session failed and why the peer's certificate did
 * not verify (also on a working opportunistic session), for the log; ""
 * if there is nothing to say. Valid until the next call. */
const char *tls_strerror(struct tls_session *s);

/* Client-side resumption. tls_session_save copies the parameters of a
 * completed client session (NULL if there is nothing to save); the caller
 * owns it and may keep it per destination host (tls_session_resume only
 * reads it, so several sessions may offer one). tls_session_resume offers
 * it in a new client session before the handshake: 0, or -EINVAL when the
 * saved session does not fit (another host name, or it was not verified and
 * this session requires verification: a resumed handshake skips the
 * certificate check, so it must not inherit trust it never had). */
struct tls_saved_session *tls_session_save(const struct tls_session *s);
int tls_session_resume(struct tls_session *s,
	const struct tls_saved_session *saved);
struct tls_saved_session *tls_saved_session_free(struct tls_saved_session *saved);

/* tls_session_set_stutter - testing only: the bio refuses every first
 * attempt to receive or send with WANT_READ / WANT_WRITE, which walks every
 * retry path in mbedTLS and here. */
void tls_session_set_stutter(struct tls_session *s, int on);

/* Why a peer's certificate did not verify, in the categories TLS-RPT
 * (RFC 8460 4.3.1) reports. */
enum tls_cert_problem {
	TLS_CERT_OK,            /* verified, or nothing checked yet */
	TLS_CERT_NONE,          /* no certificate (or no handshake) */
	TLS_CERT_EXPIRED,       /* expired or not yet valid */
	TLS_CERT_HOST_MISMATCH, /* does not name the host */
	TLS_CERT_NOT_TRUSTED,   /* does not chain to the CA bundle */
	TLS_CERT_OTHER,         /* revoked, bad key usage, ... */
};

/* tls_cert_problem_of - the first problem of s's peer certificate, by
 * the verification flags mbedTLS kept (also after a failed handshake). */
enum tls_cert_problem tls_cert_problem_of(const struct tls_session *s);

#endif
