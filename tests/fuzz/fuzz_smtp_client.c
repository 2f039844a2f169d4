/*
 * fuzz_smtp_client - libFuzzer harness for the client state machine: a
 * hostile server's bytes, in fragments, against a client that begins a
 * transaction whenever it is READY.
 *
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Irelay \
 *     tests/fuzz/fuzz_smtp_client.c relay/smtp_client.c relay/smtp_reply.c \
 *     relay/buf.c relay/log.c -o fuzz_smtp_client
 *   ./fuzz_smtp_client -max_total_time=20 tests/fuzz/corpus/smtp_client/
 *
 * Checks: each recipient gets exactly one rcpt event per transaction, and
 * txn_done follows only when all have had theirs.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "smtp_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct smtp_client_rcpt rcpts[] = {
	{ "a@d.test", SMTP_NOTIFY_FAILURE, "rfc822;a@d.test" },
	{ "b@d.test", 0, NULL },
	{ "c@d.test", SMTP_NOTIFY_NEVER, NULL },
};
static const char body[] = "Subject: x\r\n\r\n.dot\r\nline\r\n";
static const struct smtp_client_txn txn = {
	.sender = "s@o.test", .rcpts = rcpts, .nrcpts = 3, .flags = SMTP_TXN_8BIT,
	.envid = "E1", .ret = SMTP_RET_FULL, .body = body, .body_len = sizeof(body) - 1,
};

struct state {
	struct smtp_client *c;
	unsigned seen[3];
	int txns;
	bool closed;
	bool want_auth, auth_tried;
};

static void on_rcpt(void *arg, size_t i, enum smtp_outcome o,
		    const struct smtp_client_result *res)
{
	struct state *s = arg;
	if (i >= 3 || s->seen[i]++ != 0 || res->status == NULL || res->text == NULL)
		abort();
}

static void on_txn_done(void *arg, const struct smtp_client_txn *t)
{
	struct state *s = arg;
	for (int i = 0; i < 3; i++)
		if (s->seen[i] != 1)
			abort();
	memset(s->seen, 0, sizeof(s->seen));
	s->txns++;
}

static void on_ready(void *arg)
{
	struct state *s = arg;
	if (s->want_auth && !s->auth_tried) {
		/* AUTH first (PLAIN or LOGIN, whatever the server lists). */
		s->auth_tried = true;
		if (smtp_client_auth(s->c, "fuzz-user", "fuzz:pass") == 0)
			return;
	}
	if (s->txns < 4)
		(void)smtp_client_begin(s->c, &txn);
	else
		(void)smtp_client_quit(s->c);
}

static void on_auth(void *arg, bool ok, const struct smtp_client_result *res)
{
	struct state *s = arg;
	if (!s->auth_tried || smtp_client_state(s->c) != SMTP_CLIENT_READY || res->text == NULL)
		abort();
	if (!ok)
		(void)smtp_client_quit(s->c);
}

static void on_closed(void *arg, bool failed, const struct smtp_client_result *res)
{
	struct state *s = arg;
	if (s->closed)
		abort();
	s->closed = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	struct state st = { 0 };
	struct smtp_client_config cfg = {
		.helo_name = "fuzz.test",
		.events = { &st, on_rcpt, on_txn_done, on_ready, NULL, on_closed, on_auth },
	};
	size_t off = 1, len;

	if (!quiet) {
		log_open("/dev/null", LOG_LEVEL_ERROR);
		quiet = true;
	}
	if (size < 1)
		return 0;
	size_t frag = (data[0] & 31) + 1;
	st.want_auth = (data[0] & 128) != 0;
	st.c = smtp_client_new(&cfg);
	while (off < size) {
		size_t n = size - off < frag ? size - off : frag;
		if (smtp_client_feed(st.c, (const char *)data + off, n) < 0)
			break;
		off += n;
		(void)smtp_client_output(st.c, &len);
		smtp_client_output_consumed(st.c, len);
		if (data[0] & 32 && smtp_client_state(st.c) == SMTP_CLIENT_TLS)
			(void)smtp_client_restart_ehlo(st.c);
	}
	if (data[0] & 64)
		smtp_client_abort(st.c, "fuzz end");
	st.c = smtp_client_free(st.c);
	return 0;
}
