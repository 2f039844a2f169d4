/*
 * test_tls - a server session and a client session talking entirely in
 * memory: the test pumps ciphertext between them, whole, a byte at a time
 * or in random chunks, with the stuttering bio that refuses every first
 * attempt. Certificates are made at test time with openssl(1).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tls.h"

static char dir[64];
static char cert[128], key[128];		/* EC, CN=localhost */
static char other_cert[128], other_key[128];	/* EC, CN=other: unknown CA */

static void run(const char *cmd)
{
	int r = system(cmd);

	cr_assert_eq(r, 0, "command failed (%d): %s", r, cmd);
}

/* make_cert - a self-signed P-256 certificate (which is also its own CA). */
static void make_cert(const char *c, const char *k, const char *cn)
{
	char cmd[512];

	snprintf(cmd, sizeof cmd, "openssl req -x509 -newkey ec -pkeyopt "
		"ec_paramgen_curve:prime256v1 -nodes -keyout %s -out %s -days 1 "
		"-subj /CN=%s 2>/dev/null", k, c, cn);
	run(cmd);
}

static void setup(void)
{
	strcpy(dir, "/tmp/test_tls.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(cert, sizeof cert, "%s/cert.pem", dir);
	snprintf(key, sizeof key, "%s/key.pem", dir);
	snprintf(other_cert, sizeof other_cert, "%s/other.pem", dir);
	snprintf(other_key, sizeof other_key, "%s/otherkey.pem", dir);
	make_cert(cert, key, "localhost");
	make_cert(other_cert, other_key, "other");
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (dir[0] != '\0' && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

TestSuite(tls, .init = setup, .fini = teardown);

static struct tls_config *server_config(const char *c, const char *k,
	struct tls_config *share)
{
	char err[256] = "";
	struct tls_config *cfg = tls_config_new_server(c, k, share, err, sizeof err);

	cr_assert_not_null(cfg, "server config: %s", err);
	return cfg;
}

static struct tls_config *client_config(const char *ca)
{
	char err[256] = "";
	struct tls_config *cfg = tls_config_new_client(ca, err, sizeof err);

	cr_assert_not_null(cfg, "client config: %s", err);
	return cfg;
}

/* How ciphertext travels: whole, one byte at a time, or random chunks. */
enum pump { PUMP_WHOLE, PUMP_BYTES, PUMP_RANDOM };

/* move - deliver some of from's pending ciphertext to to; 1 if any moved. */
static int move(struct tls_session *from, struct tls_session *to, enum pump how)
{
	size_t len;
	const char *p = tls_pending_ciphertext(from, &len);

	if (len == 0)
		return 0;
	if (how == PUMP_BYTES)
		len = 1;
	else if (how == PUMP_RANDOM && len > 1)
		len = 1 + (size_t)rand() % (len < 3000 ? len : 3000);
	cr_assert_eq(tls_feed_ciphertext(to, p, len), 0);
	tls_ciphertext_consumed(from, len);
	return 1;
}

static int waiting(int r)
{
	return r == TLS_WANT_READ || r == TLS_WANT_WRITE;
}

/* handshake - both sides until both are done, one fails, or nothing moves
 * any more. Results in *rc and *rs (0, or the error; a side still waiting
 * when the other gave up keeps its TLS_WANT_*). */
static void handshake(struct tls_session *c, struct tls_session *s,
	enum pump how, int *rc, int *rs)
{
	int idle = 0;

	for (long round = 0; round < 2000000; round++) {
		*rc = tls_handshake(c);
		*rs = tls_handshake(s);
		int moved = move(c, s, how) | move(s, c, how);
		if (*rc == 0 && *rs == 0 && !moved)
			return;
		if (!waiting(*rc) && !waiting(*rs) && !moved)
			return;
		/* The stuttering bio needs a second call on the same input. */
		idle = moved ? 0 : idle + 1;
		if (idle > 4)
			return;
	}
	cr_assert_fail("handshake did not finish");
}

/* transfer - send len bytes from one side to the other and check them.
 * The writer writes until the output is full before anything moves, so
 * TLS_WANT_WRITE and the retry rule are part of every big transfer.
 * Returns how many times tls_write said TLS_WANT_WRITE. */
static long transfer(struct tls_session *from, struct tls_session *to,
	const char *data, size_t len, enum pump how)
{
	char *got = malloc(len + 1), chunk[5000];
	size_t sent = 0, received = 0;
	long want_writes = 0;

	cr_assert_not_null(got);
	for (long round = 0; received < len; round++) {
		cr_assert_lt(round, 5000000, "transfer stuck at %zu of %zu", received, len);
		while (sent < len) {
			ssize_t n = tls_write(from, data + sent, len - sent);
			if (n == TLS_WANT_WRITE)
				want_writes++;
			if (n == TLS_WANT_WRITE || n == TLS_WANT_READ)
				break;
			cr_assert_gt(n, 0, "tls_write: got %zd, want > 0 (%s)", n,
				tls_strerror(from));
			sent += (size_t)n;
		}
		move(from, to, how);
		for (;;) {
			ssize_t n = tls_read(to, chunk, how == PUMP_WHOLE ? sizeof chunk : 1 + (size_t)rand() % sizeof chunk);
			if (waiting((int)n))
				break;
			cr_assert_gt(n, 0, "tls_read: got %zd, want > 0 (%s)", n,
				tls_strerror(to));
			cr_assert_leq(received + (size_t)n, len, "received too much");
			memcpy(got + received, chunk, (size_t)n);
			received += (size_t)n;
		}
		move(to, from, how);
	}
	cr_assert(memcmp(got, data, len) == 0, "received bytes differ from sent ones");
	free(got);
	return want_writes;
}

static char *pattern(size_t len, unsigned seed)
{
	char *p = malloc(len);

	cr_assert_not_null(p);
	for (size_t i = 0; i < len; i++)
		p[i] = (char)(seed + i * 7 + i / 251);
	return p;
}

/* connect_pair - a fresh client and server session, handshaken. */
static void connect_pair(struct tls_config *ccfg, struct tls_config *scfg,
	enum tls_verify verify, const char *host, struct tls_session **c,
	struct tls_session **s)
{
	int rc, rs;

	*c = tls_session_new(ccfg, verify, host);
	*s = tls_session_new(scfg, TLS_VERIFY_NONE, NULL);
	cr_assert_not_null(*c);
	cr_assert_not_null(*s);
	handshake(*c, *s, PUMP_WHOLE, &rc, &rs);
	cr_assert_eq(rc, 0, "client handshake: got %d, want 0 (%s)", rc, tls_strerror(*c));
	cr_assert_eq(rs, 0, "server handshake: got %d, want 0 (%s)", rs, tls_strerror(*s));
}

Test(tls, handshake_and_data_both_ways)
{
	struct tls_config *scfg = server_config(cert, key, NULL);
	struct tls_config *ccfg = client_config(NULL);
	struct tls_session *c, *s;
	struct tls_info info;
	size_t big = 100 * 1024;
	char *data = pattern(big, 1);

	connect_pair(ccfg, scfg, TLS_VERIFY_NONE, "localhost", &c, &s);
	/* The sessions hold their configs: dropping ours early is fine. */
	scfg = tls_config_free(scfg);
	ccfg = tls_config_free(ccfg);
	tls_session_info(c, &info);
	cr_assert_str_eq(info.protocol, "TLSv1.2");
	cr_assert(strstr(info.cipher, "ECDHE-ECDSA") != NULL &&
		(strstr(info.cipher, "GCM") != NULL || strstr(info.cipher, "CHACHA") != NULL),
		"got cipher %s, want ECDHE-ECDSA with an AEAD", info.cipher);
	cr_assert_eq(info.resumed, 0);
	cr_assert_eq(info.verified, 0, "no CA bundle, yet verified");
	cr_assert_eq(tls_peer_verified(s), 0, "server has no client certificate");
	tls_session_info(s, &info);
	cr_assert_str_eq(info.protocol, "TLSv1.2");

	transfer(c, s, "EHLO client\r\n", 13, PUMP_WHOLE);
	transfer(s, c, "250 ok\r\n", 8, PUMP_WHOLE);
	transfer(c, s, data, big, PUMP_WHOLE);
	transfer(s, c, data, big, PUMP_WHOLE);
	free(data);
	tls_session_free(c);
	tls_session_free(s);
}

Test(tls, chaotic_pump_with_stuttering_bio)
{
	struct tls_config *scfg = server_config(cert, key, NULL);
	struct tls_config *ccfg = client_config(cert);
	struct tls_session *c = tls_session_new(ccfg, TLS_VERIFY_REQUIRED, "localhost");
	struct tls_session *s = tls_session_new(scfg, TLS_VERIFY_NONE, NULL);
	size_t big = 100 * 1024;
	char *data = pattern(big, 2);
	int rc, rs;

	srand(42);
	tls_session_set_stutter(c, 1);
	tls_session_set_stutter(s, 1);
	handshake(c, s, PUMP_BYTES, &rc, &rs);
	cr_assert_eq(rc, 0, "client: got %d, want 0 (%s)", rc, tls_strerror(c));
	cr_assert_eq(rs, 0, "server: got %d, want 0 (%s)", rs, tls_strerror(s));
	cr_assert_eq(tls_peer_verified(c), 1);
	transfer(c, s, data, big, PUMP_RANDOM);
	transfer(s, c, data, big, PUMP_RANDOM);
	/* 3000 bytes fit in the output: every TLS_WANT_WRITE is the bio's. */
	long stutters = transfer(c, s, data, 3000, PUMP_BYTES);
	cr_assert_gt(stutters, 0, "got %ld refused writes, want some", stutters);
	free(data);
	tls_session_free(c);
	tls_session_free(s);
	tls_config_free(scfg);
	tls_config_free(ccfg);
}

/* Verification cases, table-driven: CA bundle, host name, mode, outcome. */
Test(tls, verification_table)
{
	struct {
		const char *name;
		const char *ca;		/* NULL: none */
		const char *host;
		enum tls_verify verify;
		int want;		/* client handshake result */
		int want_verified;
		const char *want_text;	/* in tls_strerror, or NULL */
	} cases[] = {
		{ "right CA and host", cert, "localhost", TLS_VERIFY_REQUIRED, 0, 1, NULL },
		{ "host name differs", cert, "mx.example.org", TLS_VERIFY_REQUIRED,
		  -EKEYREJECTED, 0, "Common Name" },
		{ "unknown CA", other_cert, "localhost", TLS_VERIFY_REQUIRED,
		  -EKEYREJECTED, 0, "trusted CA" },
		{ "no CA bundle", NULL, "localhost", TLS_VERIFY_REQUIRED,
		  -EKEYREJECTED, 0, NULL },
		{ "opportunistic, unknown CA", other_cert, "localhost", TLS_VERIFY_NONE,
		  0, 0, "trusted CA" },
		{ "opportunistic, right CA", cert, "localhost", TLS_VERIFY_NONE, 0, 1, NULL },
		{ "opportunistic, wrong host", cert, "mx.example.org", TLS_VERIFY_NONE,
		  0, 0, "Common Name" },
	};
	struct tls_config *scfg = server_config(cert, key, NULL);

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct tls_config *ccfg = client_config(cases[i].ca);
		struct tls_session *c = tls_session_new(ccfg, cases[i].verify, cases[i].host);
		struct tls_session *s = tls_session_new(scfg, TLS_VERIFY_NONE, NULL);
		int rc, rs;

		cr_assert_not_null(c, "%s: no session", cases[i].name);
		handshake(c, s, PUMP_WHOLE, &rc, &rs);
		cr_expect_eq(rc, cases[i].want, "%s: got %d, want %d (%s)",
			cases[i].name, rc, cases[i].want, tls_strerror(c));
		cr_expect_eq(tls_peer_verified(c), cases[i].want_verified,
			"%s: verified got %d, want %d", cases[i].name,
			tls_peer_verified(c), cases[i].want_verified);
		if (cases[i].want != 0)
			cr_expect(rs < 0 && !waiting(rs), "%s: server got %d, want an error "
				"(the client's alert)", cases[i].name, rs);
		if (cases[i].want_text != NULL)
			cr_expect(strstr(tls_strerror(c), cases[i].want_text) != NULL,
				"%s: got \"%s\", want it to mention \"%s\"", cases[i].name,
				tls_strerror(c), cases[i].want_text);
		if (cases[i].want != 0)	/* the error sticks */
			cr_expect_eq(tls_write(c, "x", 1), cases[i].want, "%s", cases[i].name);
		tls_session_free(c);
		tls_session_free(s);
		tls_config_free(ccfg);
	}
	tls_config_free(scfg);
	/* verify=required needs a name to check. */
	struct tls_config *ccfg = client_config(cert);
	cr_assert_null(tls_session_new(ccfg, TLS_VERIFY_REQUIRED, NULL));
	tls_config_free(ccfg);
}

/* resume_once - a new client session offering saved; returns both infos. */
static void resume_once(struct tls_config *ccfg, struct tls_config *scfg,
	const struct tls_saved_session *saved, enum tls_verify verify,
	struct tls_info *ci, struct tls_info *si)
{
	struct tls_session *c = tls_session_new(ccfg, verify, "localhost");
	struct tls_session *s = tls_session_new(scfg, TLS_VERIFY_NONE, NULL);
	int rc, rs;

	cr_assert_eq(tls_session_resume(c, saved), 0);
	handshake(c, s, PUMP_WHOLE, &rc, &rs);
	cr_assert_eq(rc, 0, "client: got %d (%s)", rc, tls_strerror(c));
	cr_assert_eq(rs, 0, "server: got %d (%s)", rs, tls_strerror(s));
	tls_session_info(c, ci);
	tls_session_info(s, si);
	transfer(c, s, "after resumption", 16, PUMP_WHOLE);
	tls_session_free(c);
	tls_session_free(s);
}

Test(tls, resumption_shared_between_configs)
{
	struct tls_config *scfg = server_config(cert, key, NULL);
	struct tls_config *ccfg = client_config(cert);
	struct tls_session *c, *s;
	struct tls_saved_session *saved;
	struct tls_info ci, si;

	connect_pair(ccfg, scfg, TLS_VERIFY_REQUIRED, "localhost", &c, &s);
	tls_session_info(c, &ci);
	cr_assert_eq(ci.resumed, 0, "first handshake claims to be resumed");
	saved = tls_session_save(c);
	cr_assert_not_null(saved);
	cr_assert_null(tls_session_save(s), "a server session cannot be saved");
	tls_session_free(c);
	tls_session_free(s);

	resume_once(ccfg, scfg, saved, TLS_VERIFY_REQUIRED, &ci, &si);
	cr_assert_eq(ci.resumed, 1, "client: second handshake was not abbreviated");
	cr_assert_eq(si.resumed, 1, "server: second handshake was not abbreviated");
	cr_assert_eq(ci.verified, 1, "a resumed verified session stays verified");

	/* Another worker's config (or the one after a reload) that shares
	 * the resumption state takes the same ticket. */
	struct tls_config *shared = server_config(cert, key, scfg);
	resume_once(ccfg, shared, saved, TLS_VERIFY_REQUIRED, &ci, &si);
	cr_assert_eq(si.resumed, 1, "shared config did not resume");

	/* An unrelated config cannot read the ticket: a full handshake. */
	struct tls_config *alone = server_config(cert, key, NULL);
	resume_once(ccfg, alone, saved, TLS_VERIFY_REQUIRED, &ci, &si);
	cr_assert_eq(ci.resumed, 0, "client: resumed with a foreign server");
	cr_assert_eq(si.resumed, 0, "server: resumed a ticket it never issued");

	tls_config_free(scfg);		/* shared keeps the resumption state */
	resume_once(ccfg, shared, saved, TLS_VERIFY_NONE, &ci, &si);
	cr_assert_eq(si.resumed, 1, "resumption state went with the first config");

	tls_saved_session_free(saved);
	tls_config_free(shared);
	tls_config_free(alone);
	tls_config_free(ccfg);
}

Test(tls, resumption_refuses_borrowed_trust)
{
	struct tls_config *scfg = server_config(cert, key, NULL);
	struct tls_config *nocas = client_config(NULL);
	struct tls_config *ccfg = client_config(cert);
	struct tls_session *c, *s;
	struct tls_saved_session *saved;

	/* An unverified session (no CA) must not resume under verify. */
	connect_pair(nocas, scfg, TLS_VERIFY_NONE, "localhost", &c, &s);
	saved = tls_session_save(c);
	cr_assert_not_null(saved);
	tls_session_free(c);
	tls_session_free(s);
	c = tls_session_new(ccfg, TLS_VERIFY_REQUIRED, "localhost");
	cr_assert_eq(tls_session_resume(c, saved), -EINVAL);
	tls_session_free(c);
	c = tls_session_new(ccfg, TLS_VERIFY_NONE, "mx.example.org");
	cr_assert_eq(tls_session_resume(c, saved), -EINVAL, "another host's session");
	tls_session_free(c);
	c = tls_session_new(ccfg, TLS_VERIFY_NONE, "LOCALHOST");
	cr_assert_eq(tls_session_resume(c, saved), 0, "host names ignore case");
	tls_session_free(c);
	tls_saved_session_free(saved);
	tls_saved_session_free(NULL);
	tls_config_free(scfg);
	tls_config_free(nocas);
	tls_config_free(ccfg);
}

Test(tls, close_notify)
{
	struct tls_config *scfg = server_config(cert, key, NULL);
	struct tls_config *ccfg = client_config(NULL);
	struct tls_session *c, *s;
	char buf[64];

	connect_pair(ccfg, scfg, TLS_VERIFY_NONE, NULL, &c, &s);
	cr_assert_eq(tls_write(c, "QUIT\r\n", 6), 6);
	cr_assert_eq(tls_close_notify(c), 0);
	cr_assert_eq(tls_close_notify(c), 0, "a second close_notify is a no-op");
	cr_assert_eq(tls_write(c, "x", 1), -EPIPE, "write after close_notify");
	while (move(c, s, PUMP_WHOLE))
		;
	cr_assert_eq(tls_read(s, buf, sizeof buf), 6);
	cr_assert(memcmp(buf, "QUIT\r\n", 6) == 0);
	cr_assert_eq(tls_read(s, buf, sizeof buf), 0, "close_notify reads as end of data");
	cr_assert_eq(tls_read(s, buf, sizeof buf), 0, "and stays so");
	cr_assert_eq(tls_close_notify(s), 0);
	while (move(s, c, PUMP_WHOLE))
		;
	cr_assert_eq(tls_read(c, buf, sizeof buf), 0);
	tls_session_free(c);
	tls_session_free(s);
	tls_config_free(scfg);
	tls_config_free(ccfg);
}

/* Garbage at every stage is an error, never a crash or a hang. */
Test(tls, garbage_is_an_error)
{
	struct tls_config *scfg = server_config(cert, key, NULL);
	struct tls_config *ccfg = client_config(NULL);
	struct tls_session *c, *s;
	char junk[600], buf[64];
	int rc, rs;

	srand(7);
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (char)rand();
	/* A server greeted with noise, and a plaintext SMTP client. */
	s = tls_session_new(scfg, TLS_VERIFY_NONE, NULL);
	cr_assert_eq(tls_feed_ciphertext(s, junk, sizeof junk), 0);
	cr_assert_eq(tls_handshake(s), -EPROTO);
	cr_assert_eq(tls_read(s, buf, sizeof buf), -EPROTO, "the error sticks");
	cr_assert(tls_strerror(s)[0] != '\0');
	tls_session_free(s);
	s = tls_session_new(scfg, TLS_VERIFY_NONE, NULL);
	cr_assert_eq(tls_feed_ciphertext(s, "EHLO x\r\n", 8), 0);
	cr_assert_eq(tls_handshake(s), -EPROTO);
	tls_session_free(s);

	/* A client answered with noise. */
	c = tls_session_new(ccfg, TLS_VERIFY_NONE, NULL);
	cr_assert_eq(tls_handshake(c), TLS_WANT_READ);
	cr_assert_eq(tls_feed_ciphertext(c, "220 mx ESMTP\r\n", 14), 0);
	rc = tls_handshake(c);
	cr_assert_eq(rc, -EPROTO, "got %d, want -EPROTO", rc);
	tls_session_free(c);

	/* One flipped byte anywhere in the handshake. */
	for (int round = 0; round < 24; round++) {
		c = tls_session_new(ccfg, TLS_VERIFY_NONE, NULL);
		s = tls_session_new(scfg, TLS_VERIFY_NONE, NULL);
		int victim = round % 2, flipped = 0;
		size_t at = (size_t)rand() % 1200;
		for (int step = 0; step < 50; step++) {
			rc = tls_handshake(c);
			rs = tls_handshake(s);
			struct tls_session *from = victim ? s : c;
			size_t len;
			char *p = (char *)tls_pending_ciphertext(from, &len);
			if (!flipped && at < len) {
				p[at] ^= 0x5a;	/* the buffer is ours to spoil in a test */
				flipped = 1;
			} else if (!flipped) {
				at -= len;
			}
			if (!(move(c, s, PUMP_WHOLE) | move(s, c, PUMP_WHOLE)) && step > 0)
				break;
		}
		if (flipped)
			cr_assert(rc != 0 || rs != 0, "round %d: a corrupted handshake "
				"succeeded on both sides", round);
		tls_session_free(c);
		tls_session_free(s);
	}

	/* Noise after the handshake. */
	connect_pair(ccfg, scfg, TLS_VERIFY_NONE, NULL, &c, &s);
	cr_assert_eq(tls_feed_ciphertext(s, junk, sizeof junk), 0);
	cr_assert_eq(tls_read(s, buf, sizeof buf), -EPROTO);
	cr_assert_eq(tls_write(s, "x", 1), -EPROTO);
	tls_session_free(c);
	tls_session_free(s);
	tls_config_free(scfg);
	tls_config_free(ccfg);
}

Test(tls, caps_and_back_pressure)
{
	struct tls_config *scfg = server_config(cert, key, NULL);
	struct tls_config *ccfg = client_config(NULL);
	struct tls_session *c, *s;
	static char big[TLS_INPUT_MAX + 1];
	size_t len;
	ssize_t n;
	int writes = 0;

	s = tls_session_new(scfg, TLS_VERIFY_NONE, NULL);
	cr_assert_eq(tls_feed_ciphertext(s, big, sizeof big), -ENOBUFS);
	tls_session_free(s);

	connect_pair(ccfg, scfg, TLS_VERIFY_NONE, NULL, &c, &s);
	/* Nobody drains: writes stop at the output cap, nothing is lost. */
	while ((n = tls_write(c, big, 16384)) > 0)
		writes++;
	cr_assert_eq(n, TLS_WANT_WRITE, "got %zd, want TLS_WANT_WRITE", n);
	tls_pending_ciphertext(c, &len);
	cr_assert_leq(len, TLS_OUTPUT_MAX, "output %zu over the cap", len);
	cr_assert_gt(writes, 0);
	tls_session_free(c);
	tls_session_free(s);
	tls_config_free(scfg);
	tls_config_free(ccfg);
}

Test(tls, rsa_certificate)
{
	char rcert[160], rkey[160], cmd[512];

	snprintf(rcert, sizeof rcert, "%s/rsa.pem", dir);
	snprintf(rkey, sizeof rkey, "%s/rsakey.pem", dir);
	snprintf(cmd, sizeof cmd, "openssl req -x509 -newkey rsa:2048 -nodes "
		"-keyout %s -out %s -days 1 -subj /CN=localhost 2>/dev/null", rkey, rcert);
	run(cmd);
	struct tls_config *scfg = server_config(rcert, rkey, NULL);
	struct tls_config *ccfg = client_config(rcert);
	struct tls_session *c, *s;
	struct tls_info info;

	connect_pair(ccfg, scfg, TLS_VERIFY_REQUIRED, "localhost", &c, &s);
	tls_session_info(c, &info);
	cr_assert(strstr(info.cipher, "ECDHE-RSA") != NULL, "got %s, want ECDHE-RSA", info.cipher);
	transfer(c, s, "hello", 5, PUMP_WHOLE);
	tls_session_free(c);
	tls_session_free(s);
	tls_config_free(scfg);
	tls_config_free(ccfg);
}

Test(tls, config_errors)
{
	char err[256], missing[160];

	snprintf(missing, sizeof missing, "%s/missing.pem", dir);
	struct {
		const char *name, *cert, *key, *want;
	} cases[] = {
		{ "missing certificate", missing, key, "missing.pem" },
		{ "missing key", cert, missing, "missing.pem" },
		{ "key of another certificate", cert, other_key, "does not match" },
		{ "key file as certificate", key, key, "key.pem" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		err[0] = '\0';
		cr_expect_null(tls_config_new_server(cases[i].cert, cases[i].key, NULL,
			err, sizeof err), "%s: got a config", cases[i].name);
		cr_expect(strstr(err, cases[i].want) != NULL, "%s: got \"%s\", want \"%s\" in it",
			cases[i].name, err, cases[i].want);
	}
	err[0] = '\0';
	cr_expect_null(tls_config_new_client(missing, err, sizeof err));
	cr_expect(strstr(err, "missing.pem") != NULL, "got \"%s\"", err);
	/* A directory of PEM files is a CA bundle too. */
	struct tls_config *ccfg = tls_config_new_client(dir, err, sizeof err);
	cr_expect_not_null(ccfg, "directory CA: %s", err);
	tls_config_free(ccfg);
	tls_config_free(NULL);
	tls_session_free(NULL);
}

/* Workers: each thread has its own configs (tls.h's rule), the server
 * configs share one resumption state, and a session saved on the main
 * thread resumes on every worker at once. No Criterion asserts in the
 * threads: they count, the main thread checks. */
struct worker {
	pthread_t thread;
	struct tls_config *scfg, *ccfg;
	const struct tls_saved_session *saved;
	int done, resumed;
};

static int quiet_pump(struct tls_session *from, struct tls_session *to)
{
	size_t len;
	const void *p = tls_pending_ciphertext(from, &len);

	if (len == 0 || tls_feed_ciphertext(to, p, len) != 0)
		return 0;
	tls_ciphertext_consumed(from, len);
	return 1;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < 10; i++) {
		struct tls_session *c = tls_session_new(w->ccfg, TLS_VERIFY_NONE, "localhost");
		struct tls_session *s = tls_session_new(w->scfg, TLS_VERIFY_NONE, NULL);
		int rc = -1, rs = -1, moved = 1;
		struct tls_info info;

		if (i % 2 == 0)	/* half resumed, half full handshakes */
			tls_session_resume(c, w->saved);
		while (moved) {
			rc = tls_handshake(c);
			rs = tls_handshake(s);
			moved = quiet_pump(c, s) | quiet_pump(s, c);
		}
		if (rc == 0 && rs == 0) {
			w->done++;
			tls_session_info(s, &info);
			w->resumed += info.resumed;
		}
		tls_session_free(c);
		tls_session_free(s);
	}
	return NULL;
}

Test(tls, workers_share_resumption)
{
	struct tls_config *base = server_config(cert, key, NULL);
	struct tls_config *ccfg = client_config(NULL);
	struct tls_session *c, *s;
	struct worker w[3];
	struct tls_saved_session *saved;

	connect_pair(ccfg, base, TLS_VERIFY_NONE, "localhost", &c, &s);
	saved = tls_session_save(c);
	cr_assert_not_null(saved);
	tls_session_free(c);
	tls_session_free(s);
	for (int i = 0; i < 3; i++) {
		w[i] = (struct worker){ .scfg = server_config(cert, key, base),
			.ccfg = client_config(NULL), .saved = saved };
		cr_assert_eq(pthread_create(&w[i].thread, NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(w[i].thread, NULL);
		cr_expect_eq(w[i].done, 10, "worker %d: got %d handshakes, want 10", i, w[i].done);
		cr_expect_eq(w[i].resumed, 5, "worker %d: got %d resumed, want 5", i, w[i].resumed);
		tls_config_free(w[i].scfg);
		tls_config_free(w[i].ccfg);
	}
	tls_saved_session_free(saved);
	tls_config_free(base);
	tls_config_free(ccfg);
}
