/*
 * fuzz_pop3_session - libFuzzer harness for the POP3 server state machine.
 *
 * Input layout: byte 0 picks the session options (plaintext allowed, TLS
 * offered or active, a small output backlog, short mailbox reads); then
 * repeatedly one length byte followed by that many octets of client input,
 * so the fuzzer controls how the stream is split. The mailbox is in memory
 * (messages with dot lines, bare LF, no final line end). Output is drained
 * whenever the session asks; STLS is answered with a finished handshake.
 * Checked: the mailbox is closed exactly once, committed only at QUIT, and
 * a settled output (want READ) always ends with CRLF.
 *
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Irelay \
 *     tests/fuzz/fuzz_pop3_session.c relay/pop3_session.c relay/buf.c \
 *     relay/log.c -o /tmp/fuzz_pop3
 *   /tmp/fuzz_pop3 tests/fuzz/corpus/pop3_session -max_total_time=20
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3_session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const messages[] = {
	"Subject: a\r\n\r\nbody\r\n.\r\n..x\r\n",
	"Subject: b\n\n.dot\nbare lf\nno end",
	"",
};

struct fuzz_box {
	size_t read_max;
	unsigned opens, closes, commits;
};

static size_t fuzz_count(void *b)
{
	return 3;
}

static uint64_t fuzz_size(void *b, size_t i)
{
	const char *p = messages[i];
	uint64_t n = 0;
	size_t k, len = strlen(p);

	for (k = 0; k < len; k++)
		n += (p[k] == '\n' && (k == 0 || p[k - 1] != '\r')) ? 2 : 1;
	return n + (len > 0 && p[len - 1] != '\n' ? 2 : 0);
}

static const char *fuzz_uidl(void *b, size_t i)
{
	static const char *const ids[] = { "u1", "u2", "u3" };

	return ids[i];
}

static ssize_t fuzz_read(void *b, size_t i, uint64_t offset, char *buf, size_t len)
{
	struct fuzz_box *f = b;
	size_t total = strlen(messages[i]), n;

	if (i >= 3)
		abort();
	if (offset >= total)
		return 0;
	n = total - (size_t)offset;
	if (n > len)
		n = len;
	if (n > f->read_max)
		n = f->read_max;
	memcpy(buf, messages[i] + offset, n);
	return (ssize_t)n;
}

static int fuzz_mark(void *b, size_t i)
{
	return i < 3 ? 0 : (abort(), 0);
}

static int fuzz_commit(void *b)
{
	((struct fuzz_box *)b)->commits++;
	return 0;
}

static void fuzz_close(void *b)
{
	((struct fuzz_box *)b)->closes++;
}

static const struct pop3_mailbox_ops fuzz_ops = {
	.count = fuzz_count, .size = fuzz_size, .uidl = fuzz_uidl, .read = fuzz_read,
	.mark_deleted = fuzz_mark, .commit = fuzz_commit, .close = fuzz_close,
};

static int fuzz_auth(void *ctx, const char *user, const char *password)
{
	if (strcmp(user, "a") == 0 && strcmp(password, "b") == 0)
		return POP3_AUTH_OK;
	return strcmp(user, "r") == 0 ? POP3_AUTH_RATE_LIMITED : POP3_AUTH_BAD;
}

static int fuzz_open(void *ctx, const char *user, const struct pop3_mailbox_ops **ops,
		     void **b)
{
	struct fuzz_box *f = ctx;

	if (f->opens > f->closes)
		abort();	/* a second open while the first is held */
	f->opens++;
	*ops = &fuzz_ops;
	*b = f;
	return POP3_OPEN_OK;
}

/* drain - send everything; a settled session's output ends with CRLF */
static void drain(struct pop3_session *s)
{
	const char *p;
	size_t n;

	while ((p = pop3_session_output(s, &n)), n > 0) {
		if (pop3_session_want(s) == POP3_WANT_READ
		    && (n < 2 || p[n - 2] != '\r' || p[n - 1] != '\n'))
			abort();
		pop3_session_output_consumed(s, n);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_box box = { 0 };
	struct pop3_session_config cfg = {
		.hostname = "pop.fuzz", .ctx = &box, .authenticate = fuzz_auth,
		.open_mailbox = fuzz_open,
	};
	struct pop3_session *s;
	size_t pos = 1, pending = 0, used, guard = 0;
	const uint8_t *chunk = NULL;

	if (size < 1)
		return 0;
	cfg.plaintext_allowed = data[0] & 1;
	cfg.tls_available = data[0] & 2;
	cfg.output_max = data[0] & 8 ? 64 : 0;
	cfg.line_max = data[0] & 16 ? 24 : 0;
	cfg.errors_max = data[0] & 32 ? 2 : 0;
	box.read_max = data[0] & 64 ? 1 : 65536;
	s = pop3_session_new(&cfg);
	pop3_session_set_tls(s, data[0] & 4);
	pop3_session_start(s);
	for (;;) {
		drain(s);
		switch (pop3_session_want(s)) {
		case POP3_WANT_CLOSE:
			goto done;
		case POP3_WANT_STARTTLS:
			pending = 0;	/* plaintext after STLS is thrown away */
			pop3_session_tls_started(s);
			continue;
		case POP3_WANT_FLUSH:
			if (++guard > 1000000)
				abort();
			continue;
		case POP3_WANT_READ:
			break;
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
		used = pop3_session_feed(s, (const char *)chunk, pending);
		chunk += used;
		pending -= used;
	}
done:
	if (box.commits > 1)
		abort();
	pop3_session_free(s);
	if (box.closes != box.opens)
		abort();
	return 0;
}
