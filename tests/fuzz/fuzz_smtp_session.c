/*
 * fuzz_smtp_session - libFuzzer harness for the SMTP server state machine.
 *
 * Input layout: byte 0 picks the session options (trusted peer, small
 * limits, TLS and AUTH offered: a handshake "succeeds" at once and drops
 * the buffered input, password "pw" is right); then repeatedly one length byte followed by that many octets of
 * client input, so the fuzzer controls how the stream is split. Commits are
 * answered with success or -EIO depending on the input, output is drained
 * whenever the session asks, and the loop ends when the session closes.
 *
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Irelay \
 *     tests/fuzz/fuzz_smtp_session.c relay/smtp_*.c relay/log.c -o /tmp/fuzz_smtp
 *   /tmp/fuzz_smtp tests/fuzz/corpus/smtp_session -max_total_time=20
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool fuzz_is_local(void *ctx, const char *domain)
{
	(void)ctx;
	return strcmp(domain, "local.org") == 0;
}

static void fuzz_queue_id(void *ctx, char out[32])
{
	unsigned *n = ctx;

	memcpy(out, "FUZZ", 5);
	out[4] = (char)('A' + (*n)++ % 26);
	out[5] = 0;
}

static time_t fuzz_now(void *ctx)
{
	(void)ctx;
	return 0;
}

/* fuzz_pool_known - one known pool for the pool header. */
static bool fuzz_pool_known(void *ctx, const char *pool)
{
	(void)ctx;
	return strcmp(pool, "bulk") == 0;
}

/* drain - consume output, checking it is made of CRLF-terminated lines */
static void drain(struct smtp_session *s)
{
	size_t n;
	const char *p = smtp_session_output(s, &n);

	if (n > 0 && (n < 2 || p[n - 2] != '\r' || p[n - 1] != '\n'))
		abort();
	smtp_session_output_consumed(s, n);
}

/* commit - check the message the worker would spool, then answer */
static void commit(struct smtp_session *s, int err)
{
	const struct smtp_message *m = smtp_session_message(s);

	if (m == NULL || m->recipient_count == 0 || m->body_len < m->header_len
	    || strncmp(m->body, "Received: ", 10) != 0 || (m->pool[0] != '\0' && strcmp(m->pool, "bulk") != 0))
		abort();
	smtp_session_commit_done(s, err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned ids = 0;
	struct smtp_session_config cfg = {
		.hostname = "mx.fuzz", .ctx = &ids, .is_local_domain = fuzz_is_local,
		.new_queue_id = fuzz_queue_id, .now = fuzz_now,
	};
	struct smtp_peer peer = { .address = "192.0.2.7", .port = 1 };
	struct smtp_session *s;
	size_t pos = 1, pending = 0, guard = 0;
	const uint8_t *chunk = NULL;

	if (size < 1)
		return 0;
	peer.trusted = data[0] & 1;
	cfg.tls_available = (data[0] & 32) != 0;
	cfg.auth_available = (data[0] & 64) != 0;
	cfg.auth_plaintext = (data[0] & 128) != 0;
	if (data[0] & 4) {
		cfg.pool_header = "X-Virtual-MTA";
		cfg.pool_known = fuzz_pool_known;
	}
	if (data[0] & 2) {
		cfg.line_max = 64;
		cfg.data_line_max = 80;
		cfg.message_size_max = 200;
		cfg.recipients_max = 3;
		cfg.errors_max = 5;
		cfg.output_max = 256;
	}
	s = smtp_session_new(&cfg, &peer);
	smtp_session_start(s);
	for (;;) {
		enum smtp_session_want want = smtp_session_want(s);

		if (++guard > 1000000)
			abort();	/* no progress: a hang */
		drain(s);
		if (want == SMTP_WANT_CLOSE)
			break;
		if (want == SMTP_WANT_COMMIT) {
			commit(s, (data[0] & 4) && (ids & 1) ? -EIO : 0);
			continue;
		}
		if (want == SMTP_WANT_STARTTLS) {
			/* The glue discards what was buffered in clear. */
			pending = 0;
			smtp_session_set_tls(s, true);
			continue;
		}
		if (want == SMTP_WANT_AUTH) {
			const char *user, *password;

			if (!smtp_session_auth_credentials(s, &user, &password))
				abort();
			smtp_session_auth_done(s, strcmp(password, "pw") == 0 ? 0 : -EACCES);
			continue;
		}
		if (pending == 0) {
			if (pos >= size)
				break;
			pending = data[pos++];
			if (pending > size - pos)
				pending = size - pos;
			chunk = data + pos;
			pos += pending;
			if (pending == 0)
				continue;
		}
		size_t used = smtp_session_feed(s, (const char *)chunk, pending);
		if (used > pending)
			abort();
		chunk += used;
		pending -= used;
		if (data[0] & 8)
			smtp_session_timeout_class(s);
	}
	if ((data[0] & 16) && smtp_session_want(s) == SMTP_WANT_READ)
		smtp_session_timeout(s);
	smtp_session_free(s);
	return 0;
}
