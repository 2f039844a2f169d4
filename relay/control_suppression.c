/*
 * control_suppression - ringmailctl's suppression commands on the control
 * socket; see control_suppression.h.
 */
#include "control_suppression.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "log.h"
#include "suppress.h"
#include "xalloc.h"

#define CHUNK_ROWS 2000

struct control_suppression {
	struct worker *w;
	struct conn *c;                      /* NULL once the connection is gone */
	struct control_suppression_request req;
	bool json;
	bool in_flight;                      /* a change is with the owner */
	bool importing;                      /* reading an import's lines */
	bool ended;
	struct suppression_snapshot *snap;   /* a listing's, one reference */
	size_t pos;                          /* the listing's next entry */
	struct suppress_batch *batch;        /* an import's entries so far */
	size_t lines;
};

/* ---- the request (pure) ------------------------------------------------- */

static int parse_fail(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "suppression: %s", what);
	return -EINVAL;
}

/* next_word - the next blank-separated word of *p (cap size). */
static bool next_word(const char **p, char *out, size_t size)
{
	const char *s = *p;
	size_t n = 0;

	while (*s == ' ' || *s == '\t')
		s++;
	while (*s != '\0' && *s != ' ' && *s != '\t' && *s != '\r') {
		if (n + 1 >= size)
			return false;
		out[n++] = *s++;
	}
	out[n] = '\0';
	*p = s;
	return n > 0;
}

static bool plausible_address(const char *a)
{
	const char *at = strchr(a, '@');

	for (const char *p = a; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == ',' || *p == '"')
			return false;
	return at != NULL && at != a && at[1] != '\0';
}

int control_suppression_parse(const char *rest, bool json, struct control_suppression_request *req,
			      char *err, size_t errlen)
{
	static const char *const verbs[] = { "list", "export", "add", "remove", "import" };
	char word[SUPPRESSION_ADDRESS_MAX + 2];
	const char *p = rest;
	size_t v;

	memset(req, 0, sizeof(*req));
	if (!next_word(&p, word, sizeof(word)))
		return parse_fail(err, errlen, "missing command (list, export, add, remove, import)");
	for (v = 0; v < sizeof(verbs) / sizeof(verbs[0]) && strcmp(word, verbs[v]) != 0; v++)
		;
	if (v == sizeof(verbs) / sizeof(verbs[0]))
		return parse_fail(err, errlen, "unknown command");
	req->verb = (enum control_suppression_verb)v;
	if (json && req->verb != SUPPRESSION_LIST)
		return parse_fail(err, errlen, "only list has json output");
	bool has_address = next_word(&p, word, sizeof(word));
	if (has_address) {
		if (!plausible_address(word) || strlen(word) > SUPPRESSION_ADDRESS_MAX)
			return parse_fail(err, errlen, "bad address");
		memcpy(req->address, word, strlen(word) + 1);   /* fits: checked above */
	}
	switch (req->verb) {
	case SUPPRESSION_LIST:
		break;
	case SUPPRESSION_EXPORT:
	case SUPPRESSION_IMPORT:
		if (has_address)
			return parse_fail(err, errlen, "export and import take no arguments");
		break;
	case SUPPRESSION_REMOVE:
		if (!has_address)
			return parse_fail(err, errlen, "remove takes an address");
		break;
	case SUPPRESSION_ADD: {
		char num[24];
		if (!has_address || !next_word(&p, num, sizeof(num)))
			return parse_fail(err, errlen, "add takes ADDRESS EXPIRES [REASON]");
		char *end;
		errno = 0;
		long long e = strtoll(num, &end, 10);
		if (*end != '\0' || e < 0 || errno != 0)
			return parse_fail(err, errlen, "EXPIRES is seconds since the epoch, 0 = never");
		req->expires_s = e;
		while (*p == ' ' || *p == '\t')
			p++;
		suppression_reason_clean(p, req->reason, sizeof(req->reason));
		return 0;
	}
	}
	while (*p == ' ' || *p == '\t' || *p == '\r')
		p++;
	if (*p != '\0')
		return parse_fail(err, errlen, "unexpected argument");
	return 0;
}

/* ---- answering ---------------------------------------------------------- */

static void cs_free(struct control_suppression *cs)
{
	suppression_snapshot_unref(cs->snap);
	suppress_batch_free(cs->batch);
	free(cs);
}

/* cs_end - the last line, then close. */
static void cs_end(struct control_suppression *cs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void cs_end(struct control_suppression *cs, const char *fmt, ...)
{
	char line[600];
	va_list ap;

	cs->ended = true;
	cs->importing = false;
	if (cs->c == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	strcat(line, "\n");
	conn_write(cs->c, line, strlen(line));
	conn_close_after_flush(cs->c);
}

static void format_time(int64_t s, char *out, size_t size)
{
	time_t t = (time_t)s;
	struct tm tm;

	if (s == 0) {
		snprintf(out, size, "never");
		return;
	}
	gmtime_r(&t, &tm);
	strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* json_text - s as a JSON string (reasons and addresses are printable
 * ASCII: only the quote and the backslash need escaping). */
static int json_text(struct buf *b, const char *s)
{
	int rc = buf_append_str(b, "\"");

	for (; *s && rc == 0; s++)
		rc = *s == '"' || *s == '\\' ? buf_append_printf(b, "\\%c", *s) : buf_append(b, s, 1);
	return rc == 0 ? buf_append_str(b, "\"") : rc;
}

static int format_row(struct buf *b, const struct suppression_entry *e, enum control_suppression_verb verb,
		      bool json)
{
	char created[32], expires[32], line[SUPPRESSION_LINE_MAX];

	if (verb == SUPPRESSION_EXPORT)
		return buf_append(b, line, suppression_csv_format(line, sizeof(line), e));
	if (json) {
		int rc = buf_append_str(b, "{\"address\":");
		if (rc == 0)
			rc = json_text(b, e->address);
		if (rc == 0)
			rc = buf_append_printf(b, ",\"created\":%" PRId64 ",\"expires\":%" PRId64 ",\"reason\":",
					       e->created_s, e->expires_s);
		if (rc == 0)
			rc = json_text(b, e->reason);
		return rc == 0 ? buf_append_str(b, "}\n") : rc;
	}
	format_time(e->created_s, created, sizeof(created));
	format_time(e->expires_s, expires, sizeof(expires));
	return buf_append_printf(b, "%-40s %-20s %-20s %s\n", e->address, created, expires, e->reason);
}

/* list_chunk - the next rows of a listing; the end line after the last. */
static void list_chunk(struct control_suppression *cs)
{
	struct buf b;
	size_t total = suppression_snapshot_count(cs->snap);
	size_t end = cs->pos + CHUNK_ROWS < total ? cs->pos + CHUNK_ROWS : total;
	int64_t now = (int64_t)time(NULL);

	buf_init(&b, (size_t)CHUNK_ROWS * (SUPPRESSION_LINE_MAX + 64));
	for (; cs->pos < end; cs->pos++) {
		const struct suppression_entry *e = suppression_snapshot_at(cs->snap, cs->pos);
		if (e->expires_s != 0 && e->expires_s <= now)
			continue;
		format_row(&b, e, cs->req.verb, cs->json);
	}
	conn_write(cs->c, buf_data(&b), buf_len(&b));
	buf_free(&b);
	if (cs->pos == total)
		cs_end(cs, "-- ok %zu entries", total);
}

static void change_done(struct worker *w, void *arg, int result, size_t changed)
{
	struct control_suppression *cs = arg;

	(void)w;
	cs->in_flight = false;
	if (cs->c == NULL) {
		cs_free(cs);
		return;
	}
	if (result < 0)
		cs_end(cs, "-- error the journal could not be written (%s); the change holds until a restart",
		       strerror(-result));
	else if (cs->req.verb == SUPPRESSION_REMOVE)
		cs_end(cs, changed > 0 ? "-- ok removed" : "-- error not on the list");
	else if (cs->req.verb == SUPPRESSION_IMPORT)
		cs_end(cs, "-- ok imported %zu entries", changed);
	else
		cs_end(cs, changed > 0 ? "-- ok added" : "-- error not an address");
}

static void submit(struct control_suppression *cs, struct suppress_batch *b)
{
	cs->in_flight = true;
	suppress_submit(cs->w, b, change_done, cs);
}

struct control_suppression *control_suppression_start(struct worker *w, struct conn *c,
						      const struct control_suppression_request *req, bool json)
{
	struct control_suppression *cs = xcalloc(1, sizeof(*cs));
	const struct suppression_snapshot *snap = suppress_snapshot(w);

	cs->w = w;
	cs->c = c;
	cs->req = *req;
	cs->json = json;
	log_info("control", "command=suppression_%s address=%s",
		 (const char *const[]){ "list", "export", "add", "remove", "import" }[req->verb],
		 req->address[0] ? req->address : "-");
	switch (req->verb) {
	case SUPPRESSION_LIST:
		if (req->address[0] != '\0') {
			struct buf b;
			const struct suppression_entry *e = suppress_find(w, req->address);
			buf_init(&b, SUPPRESSION_LINE_MAX * 2);
			if (e != NULL)
				format_row(&b, e, req->verb, json);
			conn_write(c, buf_data(&b), buf_len(&b));
			buf_free(&b);
			if (e != NULL)
				cs_end(cs, "-- ok 1 entry");
			else
				cs_end(cs, "-- error %s is not on the list", req->address);
			break;
		}
		/* fall through */
	case SUPPRESSION_EXPORT:
		if (snap == NULL) {
			cs_end(cs, "-- error the daemon has no suppression list");
			break;
		}
		cs->snap = suppression_snapshot_ref((struct suppression_snapshot *)snap);
		if (req->verb == SUPPRESSION_EXPORT)
			conn_write(c, "address,created,expires,reason\n", 31);
		list_chunk(cs);
		break;
	case SUPPRESSION_ADD: {
		struct suppress_batch *b = suppress_batch_new();
		suppress_batch_add(b, req->address, (int64_t)time(NULL), req->expires_s,
				   req->reason[0] ? req->reason : "added by the operator");
		submit(cs, b);
		break;
	}
	case SUPPRESSION_REMOVE: {
		struct suppress_batch *b = suppress_batch_new();
		suppress_batch_remove(b, req->address);
		submit(cs, b);
		break;
	}
	case SUPPRESSION_IMPORT:
		cs->importing = true;
		cs->batch = suppress_batch_new();
		break;
	}
	return cs;
}

/* import_line - one CSV line of an import; false when the import ended. */
static bool import_line(struct control_suppression *cs, char *line)
{
	struct suppression_entry e;
	const char *why = "";

	cs->lines++;
	if (strcmp(line, ".") == 0 || strcmp(line, ".\r") == 0) {
		struct suppress_batch *b = cs->batch;
		cs->batch = NULL;
		cs->importing = false;
		submit(cs, b);
		return false;
	}
	int rc = suppression_csv_parse(line, &e, &why);
	if (rc < 0) {
		cs_end(cs, "-- error line %zu: %s; nothing imported", cs->lines, why);
		return false;
	}
	if (rc == 0) {
		if (suppress_batch_count(cs->batch) >= CONTROL_IMPORT_MAX) {
			cs_end(cs, "-- error more than %d entries; nothing imported", CONTROL_IMPORT_MAX);
			return false;
		}
		suppress_batch_add(cs->batch, e.address, e.created_s ? e.created_s : (int64_t)time(NULL),
				   e.expires_s, e.reason[0] ? e.reason : "imported");
	}
	return true;
}

size_t control_suppression_input(struct control_suppression *cs, const char *data, size_t len)
{
	size_t used = 0;

	while (cs->importing) {
		const char *nl = memchr(data + used, '\n', len - used);
		if (nl == NULL) {
			if (len - used > SUPPRESSION_LINE_MAX) {
				cs_end(cs, "-- error line %zu: too long; nothing imported", cs->lines + 1);
				return len;
			}
			return used;             /* wait for the rest of the line */
		}
		char line[SUPPRESSION_LINE_MAX + 1];
		size_t n = (size_t)(nl - (data + used));
		if (n > SUPPRESSION_LINE_MAX) {
			cs_end(cs, "-- error line %zu: too long; nothing imported", cs->lines + 1);
			return len;
		}
		memcpy(line, data + used, n);
		line[n] = '\0';
		used += n + 1;
		import_line(cs, line);
	}
	return len;                          /* anything after the end is ignored */
}

void control_suppression_drained(struct control_suppression *cs)
{
	if (cs->snap != NULL && !cs->ended && cs->c != NULL)
		list_chunk(cs);
}

struct control_suppression *control_suppression_detach(struct control_suppression *cs)
{
	if (cs == NULL)
		return NULL;
	cs->c = NULL;
	if (!cs->in_flight)
		cs_free(cs);
	return NULL;
}
