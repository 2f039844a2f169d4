/*
 * spool_dump - print the live messages of a spool; see spool_dump.h.
 *
 * Text lines are logfmt-like (key=value, values quoted when needed); --json
 * prints one JSON object per line. Strings come from disk and may hold any
 * byte but NUL, so both forms escape control bytes and quotes.
 */
#include "spool_dump.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "spool_recover.h"

/* dump_json_string - s as a JSON string literal. */
static void dump_json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(out, "\\u%04x", *p);
		else
			fputc(*p, out);
	}
	fputc('"', out);
}

static void dump_json(FILE *out, const struct spool_recovered *r)
{
	const struct spool_message *m = r->msg;

	fputs("{\"queue_id\":", out);
	dump_json_string(out, m->queue_id);
	fprintf(out, ",\"worker\":%u,\"segment\":%" PRIu64 ",\"offset\":%" PRIu64
		",\"length\":%u,\"size\":%zu,\"arrival_usec\":%" PRId64
		",\"sender\":", r->worker_id, r->loc.segment, r->loc.offset,
		r->loc.length, m->body_len, m->arrival_usec);
	dump_json_string(out, m->sender);
	fputs(",\"recipients\":[", out);
	for (size_t i = 0; i < m->rcpt_count; i++) {
		fputs(i ? ",{\"address\":" : "{\"address\":", out);
		dump_json_string(out, m->rcpts[i].address);
		fprintf(out, ",\"status\":\"%s\",\"attempts\":%u,"
			"\"next_attempt\":%" PRId64 "}",
			spool_status_name(r->state[i].status),
			r->state[i].attempts, r->state[i].next_attempt);
	}
	fputc(']', out);
	if (r->reply != NULL) {
		fputs(",\"last_reply\":", out);
		dump_json_string(out, r->reply);
	}
	fputs("}\n", out);
}

static void dump_text(FILE *out, const struct spool_recovered *r)
{
	const struct spool_message *m = r->msg;
	char q[1024];

	fprintf(out, "queue_id=%s worker=%u segment=%016" PRIx64 " offset=%"
		PRIu64 " length=%u size=%zu sender=%s", m->queue_id,
		r->worker_id, r->loc.segment, r->loc.offset, r->loc.length,
		m->body_len, log_quote(q, sizeof(q), m->sender, strlen(m->sender)));
	for (size_t i = 0; i < m->rcpt_count; i++) {
		const char *a = m->rcpts[i].address;
		fprintf(out, " rcpt=%s status=%s", log_quote(q, sizeof(q), a,
			strlen(a)), spool_status_name(r->state[i].status));
		if (r->state[i].attempts > 0)
			fprintf(out, " attempts=%u next_attempt=%" PRId64, r->state[i].attempts,
				r->state[i].next_attempt);
	}
	if (r->reply != NULL)
		fprintf(out, " last_reply=%s", log_quote(q, sizeof(q), r->reply, strlen(r->reply)));
	fputc('\n', out);
}

static int dump_one(void *ctx, const struct spool_recovered *r)
{
	if (*(const int *)ctx)
		dump_json(stdout, r);
	else
		dump_text(stdout, r);
	return 0;
}

int spool_dump_main(int argc, char **argv)
{
	int json = 0, i = 1;

	if (i < argc && strcmp(argv[i], "--json") == 0) {
		json = 1;
		i++;
	}
	if (i + 1 != argc || argv[i][0] == '-') {
		fprintf(stderr, "usage: %s [--json] SPOOL_DIR\n",
			argc > 0 ? argv[0] : "dump");
		return 2;
	}
	/* spool_recover() treats a missing spool as empty; a typo is not. */
	struct stat st;
	int err = stat(argv[i], &st) < 0 ? errno :
		  !S_ISDIR(st.st_mode) ? ENOTDIR : 0;
	if (err != 0) {
		fprintf(stderr, "%s: %s: %s\n", argv[0], argv[i], strerror(err));
		return 1;
	}
	int n = spool_recover(argv[i], UINT_MAX, dump_one, &json);
	if (fflush(stdout) != 0 || n < 0) {
		fprintf(stderr, "%s: %s: %s\n", argv[0], argv[i],
			strerror(n < 0 ? -n : EIO));
		return 1;
	}
	return 0;
}
