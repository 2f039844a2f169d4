/*
 * test_queue_format - the rows of ringmailctl's queue and domains
 * commands: exact text and JSON for fixed views, the qshape age columns,
 * the summary's order and TOTAL, and -ENOBUFS from a buffer too small.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE     /* memmem */
#endif
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue_format.h"

#define ID "4F3A2B1C0D9E8F7A6B"
#define T0_MS INT64_C(1795457045000)        /* 2026-11-23T18:04:05Z */
#define T0 "2026-11-23T18:04:05Z"
#define T1_MS INT64_C(1795458845000)        /* 2026-11-23T18:34:05Z */
#define T1 "2026-11-23T18:34:05Z"
#define MINUTE INT64_C(60000)

/* expect_buf - the buffer holds exactly want (and rc was 0). */
static void expect_buf(const char *what, int rc, struct buf *b, const char *want)
{
	cr_expect_eq(rc, 0, "%s: rc: got %d, want 0", what, rc);
	cr_expect(buf_len(b) == strlen(want) && memcmp(buf_data(b), want, buf_len(b)) == 0,
		  "%s:\ngot  [%.*s]\nwant [%s]", what, (int)buf_len(b), buf_data(b), want);
}

static const char *const two_rcpts[] = { "bob@example.com", "carol@example.com" };

static const struct queue_item_view deferred_item = {
	.queue_id = ID, .sender = "alice@example.org", .domain = "example.com", .state = "deferred",
	.arrival_ms = T0_MS + 999,          /* milliseconds are cut, not rounded */
	.size = 12345, .rcpts = two_rcpts, .rcpt_count = 2, .attempts = 3, .next_ms = T1_MS,
	.last_error = "451 4.7.1 try later",
};

static const char *const one_rcpt[] = { "dave@a-very-long-subdomain.example.net" };

static const struct queue_item_view ready_item = {
	.queue_id = ID, .sender = "", .domain = "a-very-long-subdomain.example.net", .state = "ready",
	.arrival_ms = T0_MS, .size = 0, .rcpts = one_rcpt, .rcpt_count = 1, .attempts = 0, .next_ms = 0,
	.last_error = NULL,
};

Test(queue_format, list_header)
{
	struct buf b;

	buf_init(&b, 4096);
	expect_buf("list header", queue_format_list_header(&b), &b,
		   "QUEUE_ID             STATE         SIZE ARRIVAL               TRY NEXT_ATTEMPT         "
		   "DOMAIN                   RCPTS SENDER\n");
	buf_free(&b);
}

Test(queue_format, item_text)
{
	struct buf b;

	buf_init(&b, 4096);
	expect_buf("deferred item", queue_format_item(&b, false, &deferred_item), &b,
		   ID "   deferred     12345 " T0 "    3 " T1 " example.com                  2 <alice@example.org>\n"
		   "                      (451 4.7.1 try later)\n");
	buf_reset(&b);
	/* next 0 is "-", no last error is no second line, a long domain
	 * pushes the columns rather than being cut, the null sender is <>. */
	expect_buf("ready item", queue_format_item(&b, false, &ready_item), &b,
		   ID "   ready            0 " T0 "    0 -                    "
		   "a-very-long-subdomain.example.net     1 <>\n");
	buf_free(&b);
}

Test(queue_format, item_json)
{
	struct buf b;

	buf_init(&b, 4096);
	expect_buf("deferred item", queue_format_item(&b, true, &deferred_item), &b,
		   "{\"queue_id\":\"" ID "\",\"state\":\"deferred\",\"size\":12345,\"attempts\":3,"
		   "\"arrival\":\"" T0 "\",\"next_attempt\":\"" T1 "\",\"domain\":\"example.com\",\"sender_route\":null,"
		   "\"sender\":\"alice@example.org\",\"last_error\":\"451 4.7.1 try later\","
		   "\"recipients\":[\"bob@example.com\",\"carol@example.com\"]}\n");
	buf_reset(&b);
	expect_buf("ready item", queue_format_item(&b, true, &ready_item), &b,
		   "{\"queue_id\":\"" ID "\",\"state\":\"ready\",\"size\":0,\"attempts\":0,"
		   "\"arrival\":\"" T0 "\",\"next_attempt\":null,"
		   "\"domain\":\"a-very-long-subdomain.example.net\",\"sender_route\":null,\"sender\":\"\",\"last_error\":null,"
		   "\"recipients\":[\"dave@a-very-long-subdomain.example.net\"]}\n");
	buf_free(&b);
}

/* Whatever a peer put in a sender or a reply, the JSON line stays one
 * valid line: quotes, backslashes and control bytes are escaped. */
Test(queue_format, item_json_escapes)
{
	struct buf b;
	const struct queue_item_view v = {
		.queue_id = ID, .sender = "a\"b\\c\x01\x1f\x7f\td\ne", .domain = "example.com", .state = "held",
		.arrival_ms = 1, .size = 1, .rcpts = NULL, .rcpt_count = 0, .attempts = 1, .next_ms = -5,
		.last_error = "550 \"no\"\r\n",
	};

	buf_init(&b, 4096);
	expect_buf("escaped item", queue_format_item(&b, true, &v), &b,
		   "{\"queue_id\":\"" ID "\",\"state\":\"held\",\"size\":1,\"attempts\":1,"
		   "\"arrival\":\"1970-01-01T00:00:00Z\",\"next_attempt\":null,\"domain\":\"example.com\",\"sender_route\":null,"
		   "\"sender\":\"a\\\"b\\\\c\\u0001\\u001f\\u007f\\u0009d\\u000ae\","
		   "\"last_error\":\"550 \\\"no\\\"\\u000d\\u000a\",\"recipients\":[]}\n");
	buf_free(&b);
}

/* no_answer_end - no line of the text starts "-- ", which ringmailctl
 * would take for the end of the answer. */
static void no_answer_end(const char *what, const struct buf *b)
{
	const char *p = buf_data(b), *end = p + buf_len(b);

	for (const char *line = p; line < end;) {
		cr_expect(end - line < 3 || memcmp(line, "-- ", 3) != 0, "%s: got a line starting \"-- \" in [%.*s]",
			  what, (int)buf_len(b), p);
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		line = nl ? nl + 1 : end;
	}
}

/* A multi-line SMTP reply (joined with "\n") and escapes from a remote
 * server stay on the item's error line, as spaces and '?'. */
Test(queue_format, item_text_peer_bytes)
{
	struct buf b;
	struct queue_item_view v = ready_item;

	v.last_error = "mx.example.net [192.0.2.7]: 451 first\n-- ok\r\n\x1b[2J\tdone\x7f";
	v.sender = "a\nb";
	buf_init(&b, 4096);
	expect_buf("item with a multi-line reply", queue_format_item(&b, false, &v), &b,
		   ID "   ready            0 " T0 "    0 -                    "
		   "a-very-long-subdomain.example.net     1 <a b>\n"
		   "                      (mx.example.net [192.0.2.7]: 451 first -- ok  ?[2J done?)\n");
	no_answer_end("item", &b);
	buf_free(&b);
}

/* message - a shown message owning its strings, as the workers fill it. */
static void message_fill(struct queue_message_view *m)
{
	memset(m, 0, sizeof(*m));
	m->found = true;
	snprintf(m->queue_id, sizeof(m->queue_id), "%s", ID);
	m->sender = strdup("alice@example.org");
	m->envid = strdup("env-1");
	m->arrival_ms = T0_MS;
	m->size = 2048;
	m->rcpt_count = 3;
	m->rcpts = calloc(3, sizeof(*m->rcpts));
	cr_assert(m->sender && m->envid && m->rcpts);
	m->rcpts[0] = (struct queue_rcpt_view){ strdup("bob@example.com"), "deferred", 2, T1_MS,
						strdup("451 4.2.0 busy") };
	m->rcpts[1] = (struct queue_rcpt_view){ strdup("carol@example.net"), "delivered", 1, 0, NULL };
	m->rcpts[2] = (struct queue_rcpt_view){ NULL, NULL, 0, 0, NULL };
}

Test(queue_format, message_text)
{
	struct queue_message_view m;
	struct buf b;

	buf_init(&b, 4096);
	message_fill(&m);
	expect_buf("message", queue_format_message(&b, false, &m), &b,
		   "queue_id:   " ID "\n"
		   "arrival:    " T0 "\n"
		   "sender:     <alice@example.org>\n"
		   "size:       2048\n"
		   "envid:      env-1\n"
		   "recipients: 3\n"
		   "  <bob@example.com> deferred attempts=2 next=" T1 " last=(451 4.2.0 busy)\n"
		   "  <carol@example.net> delivered attempts=1\n"
		   "  <?> unknown attempts=0\n");
	queue_message_view_clear(&m);

	/* The null sender, no ENVID, no arrival time, no recipients. */
	buf_reset(&b);
	m.sender = strdup("");
	snprintf(m.queue_id, sizeof(m.queue_id), "%s", "Q1");
	expect_buf("bare message", queue_format_message(&b, false, &m), &b,
		   "queue_id:   Q1\narrival:    -\nsender:     <>\nsize:       0\nrecipients: 0\n");
	queue_message_view_clear(&m);
	buf_reset(&b);
	expect_buf("no sender", queue_format_message(&b, false, &m), &b,
		   "queue_id:   \narrival:    -\nsender:     <>\nsize:       0\nrecipients: 0\n");
	buf_free(&b);
}

/* An ENVID decoded from xtext and a reply may hold any byte: the shown
 * message keeps one line per field and per recipient. */
Test(queue_format, message_text_peer_bytes)
{
	struct queue_message_view m;
	struct buf b;

	buf_init(&b, 4096);
	message_fill(&m);
	free(m.envid);
	m.envid = strdup("x\n-- ok");
	free(m.rcpts[0].last_error);
	m.rcpts[0].last_error = strdup("451-a\n-- error b\x1b]0;c\x07");
	cr_assert(m.envid && m.rcpts[0].last_error);
	expect_buf("message with peer bytes", queue_format_message(&b, false, &m), &b,
		   "queue_id:   " ID "\n"
		   "arrival:    " T0 "\n"
		   "sender:     <alice@example.org>\n"
		   "size:       2048\n"
		   "envid:      x -- ok\n"
		   "recipients: 3\n"
		   "  <bob@example.com> deferred attempts=2 next=" T1 " last=(451-a -- error b?]0;c?)\n"
		   "  <carol@example.net> delivered attempts=1\n"
		   "  <?> unknown attempts=0\n");
	no_answer_end("message", &b);
	queue_message_view_clear(&m);
	buf_free(&b);
}

Test(queue_format, message_json)
{
	struct queue_message_view m;
	struct buf b;

	buf_init(&b, 4096);
	message_fill(&m);
	expect_buf("message", queue_format_message(&b, true, &m), &b,
		   "{\"queue_id\":\"" ID "\",\"sender\":\"alice@example.org\",\"envid\":\"env-1\",\"size\":2048,"
		   "\"arrival\":\"" T0 "\",\"recipients\":["
		   "{\"address\":\"bob@example.com\",\"state\":\"deferred\",\"attempts\":2,"
		   "\"next_attempt\":\"" T1 "\",\"last_error\":\"451 4.2.0 busy\"},"
		   "{\"address\":\"carol@example.net\",\"state\":\"delivered\",\"attempts\":1,"
		   "\"next_attempt\":null,\"last_error\":null},"
		   "{\"address\":null,\"state\":\"unknown\",\"attempts\":0,\"next_attempt\":null,"
		   "\"last_error\":null}]}\n");
	queue_message_view_clear(&m);

	buf_reset(&b);
	snprintf(m.queue_id, sizeof(m.queue_id), "%s", "Q\"1");
	expect_buf("bare message", queue_format_message(&b, true, &m), &b,
		   "{\"queue_id\":\"Q\\\"1\",\"sender\":\"\",\"envid\":null,\"size\":0,\"arrival\":null,"
		   "\"recipients\":[]}\n");
	buf_free(&b);
}

/* Clearing frees what the view owns (ASan would see a leak) and leaves it
 * empty; clearing an empty view again is harmless. */
Test(queue_format, message_view_clear)
{
	struct queue_message_view m, zero;

	message_fill(&m);
	queue_message_view_clear(&m);
	memset(&zero, 0, sizeof(zero));
	cr_expect(memcmp(&m, &zero, sizeof(m)) == 0, "got a view not all zero after clear, want all zero");
	queue_message_view_clear(&m);
}

struct age_case {
	int64_t age_ms;
	size_t want;
};

static const struct age_case age_cases[] = {
	{ INT64_MIN, 0 },
	{ -1, 0 },
	{ 0, 0 },
	{ 5 * MINUTE - 1, 0 },              /* 4m59.999s */
	{ 5 * MINUTE, 1 },
	{ 10 * MINUTE - 1, 1 },
	{ 10 * MINUTE, 2 },
	{ 20 * MINUTE - 1, 2 },
	{ 20 * MINUTE, 3 },
	{ 40 * MINUTE, 4 },
	{ 80 * MINUTE, 5 },
	{ 160 * MINUTE, 6 },
	{ 320 * MINUTE - 1, 6 },
	{ 320 * MINUTE, 7 },
	{ 640 * MINUTE, 8 },
	{ 1280 * MINUTE - 1, 8 },
	{ 1280 * MINUTE, 9 },
	{ 365 * 24 * 60 * MINUTE, 9 },
	{ INT64_MAX, 9 },
};

Test(queue_format, age_bucket)
{
	for (size_t i = 0; i < sizeof(age_cases) / sizeof(age_cases[0]); i++) {
		size_t got = queue_age_bucket(age_cases[i].age_ms);
		cr_expect_eq(got, age_cases[i].want, "age %lld ms: got column %zu, want %zu",
			     (long long)age_cases[i].age_ms, got, age_cases[i].want);
	}
}

static const char summary_header[] =
	"                                       T      5     10     20     40     80    160    320    640   1280  1280+\n";

/* summary_rows - three domains, given out of order; owned strings. */
static void summary_rows(struct queue_summary_row rows[3])
{
	memset(rows, 0, 3 * sizeof(*rows));
	rows[0].domain = strdup("c.example");
	rows[0].total = 2;
	rows[0].age[9] = 2;
	rows[1].domain = strdup("a.example");
	rows[1].total = 5;
	rows[1].age[0] = 1;
	rows[1].age[1] = 1;
	rows[1].age[9] = 3;
	rows[2].domain = strdup("b.example");
	rows[2].total = 2;
	rows[2].age[1] = 2;
	cr_assert(rows[0].domain && rows[1].domain && rows[2].domain);
}

static void summary_rows_free(struct queue_summary_row rows[3])
{
	for (size_t i = 0; i < 3; i++)
		free(rows[i].domain);
}

/* Largest total first, equal totals by name, TOTAL the sums; the rows
 * array itself comes back in that order. */
Test(queue_format, summary_text)
{
	struct queue_summary_row rows[3];
	struct buf b;
	static const char *const want_order[] = { "a.example", "b.example", "c.example" };

	buf_init(&b, 4096);
	summary_rows(rows);
	expect_buf("summary", queue_format_summary(&b, false, rows, 3), &b,
		   "                                       T      5     10     20     40     80    160    320    640   1280  1280+\n"
		   "TOTAL                                  9      1      3      0      0      0      0      0      0      0      5\n"
		   "a.example                              5      1      1      0      0      0      0      0      0      0      3\n"
		   "b.example                              2      0      2      0      0      0      0      0      0      0      0\n"
		   "c.example                              2      0      0      0      0      0      0      0      0      0      2\n");
	for (size_t i = 0; i < 3; i++)
		cr_expect_str_eq(rows[i].domain, want_order[i], "rows[%zu]: got %s, want %s", i, rows[i].domain,
				 want_order[i]);
	summary_rows_free(rows);
	buf_free(&b);
}

Test(queue_format, summary_json)
{
	struct queue_summary_row rows[3];
	struct buf b;

	buf_init(&b, 4096);
	summary_rows(rows);
	expect_buf("summary", queue_format_summary(&b, true, rows, 3), &b,
		   "{\"domain\":\"TOTAL\",\"total\":9,\"age_minutes\":{\"5\":1,\"10\":3,\"20\":0,\"40\":0,\"80\":0,"
		   "\"160\":0,\"320\":0,\"640\":0,\"1280\":0,\"1280+\":5}}\n"
		   "{\"domain\":\"a.example\",\"total\":5,\"age_minutes\":{\"5\":1,\"10\":1,\"20\":0,\"40\":0,\"80\":0,"
		   "\"160\":0,\"320\":0,\"640\":0,\"1280\":0,\"1280+\":3}}\n"
		   "{\"domain\":\"b.example\",\"total\":2,\"age_minutes\":{\"5\":0,\"10\":2,\"20\":0,\"40\":0,\"80\":0,"
		   "\"160\":0,\"320\":0,\"640\":0,\"1280\":0,\"1280+\":0}}\n"
		   "{\"domain\":\"c.example\",\"total\":2,\"age_minutes\":{\"5\":0,\"10\":0,\"20\":0,\"40\":0,\"80\":0,"
		   "\"160\":0,\"320\":0,\"640\":0,\"1280\":0,\"1280+\":2}}\n");
	summary_rows_free(rows);
	buf_free(&b);
}

/* An empty queue (no rows at all, as a summary over no domain gives):
 * the header and a TOTAL of zeros. */
Test(queue_format, summary_empty)
{
	struct buf b;

	buf_init(&b, 4096);
	expect_buf("empty summary", queue_format_summary(&b, false, NULL, 0), &b,
		   "                                       T      5     10     20     40     80    160    320    640   1280  1280+\n"
		   "TOTAL                                  0      0      0      0      0      0      0      0      0      0      0\n");
	buf_reset(&b);
	expect_buf("empty summary json", queue_format_summary(&b, true, NULL, 0), &b,
		   "{\"domain\":\"TOTAL\",\"total\":0,\"age_minutes\":{\"5\":0,\"10\":0,\"20\":0,\"40\":0,\"80\":0,"
		   "\"160\":0,\"320\":0,\"640\":0,\"1280\":0,\"1280+\":0}}\n");
	buf_free(&b);
}

/* The labels mean what queue_age_bucket does: a key K counts the items
 * younger than K minutes (and not younger than the key before), "1280+"
 * the rest. Also the text header: its columns carry the same labels. */
Test(queue_format, summary_labels_match_buckets)
{
	struct buf b;
	char want[64];

	char domain[] = "d";

	buf_init(&b, 4096);
	for (int64_t limit = 5; limit <= 1280; limit *= 2) {
		for (int older = 0; older <= 1; older++) {
			struct queue_summary_row row = { .domain = domain, .total = 1 };
			int64_t age = limit * MINUTE - (older ? 0 : 1);

			row.age[queue_age_bucket(age)] = 1;
			buf_reset(&b);
			cr_assert_eq(queue_format_summary(&b, true, &row, 1), 0);
			if (!older)
				snprintf(want, sizeof(want), "\"%lld\":1", (long long)limit);
			else if (limit < 1280)
				snprintf(want, sizeof(want), "\"%lld\":1", (long long)limit * 2);
			else
				snprintf(want, sizeof(want), "\"1280+\":1");
			/* Twice: in TOTAL and in the row of d. */
			const char *hit = memmem(buf_data(&b), buf_len(&b), want, strlen(want));
			cr_expect(hit != NULL && memmem(hit + 1, buf_len(&b) - (size_t)(hit + 1 - buf_data(&b)),
							want, strlen(want)) != NULL,
				  "age %lld ms: got %.*s, want %s in both rows", (long long)age, (int)buf_len(&b),
				  buf_data(&b), want);
		}
	}
	buf_reset(&b);
	cr_assert_eq(queue_format_summary(&b, false, NULL, 0), 0);
	cr_expect(buf_len(&b) > strlen(summary_header) &&
			  memcmp(buf_data(&b), summary_header, strlen(summary_header)) == 0,
		  "got header [%.*s], want [%s]", (int)buf_len(&b), buf_data(&b), summary_header);
	buf_free(&b);
}

Test(queue_format, domains)
{
	struct buf b;
	const struct queue_domain_view quiet = { "example.com", 10, 3, 2, 1, 4, 8, 0, 0 };
	const struct queue_domain_view backing_off = { "mx.example.org", 0, 120, 0, 0, 0, 1, 3, T1_MS };

	buf_init(&b, 4096);
	expect_buf("domains header", queue_format_domains_header(&b), &b,
		   "DOMAIN                             READY DEFERRED ACTIVE   HELD CONNS WINDOW FAILURES BACKOFF_UNTIL\n");
	buf_reset(&b);
	expect_buf("quiet domain", queue_format_domain(&b, false, &quiet), &b,
		   "example.com                           10        3      2      1     4      8        0 -\n");
	buf_reset(&b);
	expect_buf("backing off", queue_format_domain(&b, false, &backing_off), &b,
		   "mx.example.org                         0      120      0      0     0      1        3 " T1 "\n");
	buf_reset(&b);
	expect_buf("quiet domain json", queue_format_domain(&b, true, &quiet), &b,
		   "{\"domain\":\"example.com\",\"sender_route\":null,\"ready\":10,\"deferred\":3,\"active\":2,\"held\":1,"
		   "\"connections\":4,\"window\":8,\"failures\":0,\"backoff_until\":null}\n");
	buf_reset(&b);
	expect_buf("backing off json", queue_format_domain(&b, true, &backing_off), &b,
		   "{\"domain\":\"mx.example.org\",\"sender_route\":null,\"ready\":0,\"deferred\":120,\"active\":0,\"held\":0,"
		   "\"connections\":0,\"window\":1,\"failures\":3,\"backoff_until\":\"" T1 "\"}\n");
	buf_free(&b);
}

Test(queue_format, addresses)
{
	struct buf b;
	const struct queue_address_view busy = { "192.0.2.10:25", 0, 10, 2, 10, 10, 37, 0, 0 };
	const struct queue_address_view resting = { "[2001:db8::1]:25", 1, 0, 0, 1, 10, 0, 2, T1_MS };

	buf_init(&b, 4096);
	expect_buf("addresses header", queue_format_addresses_header(&b), &b,
		   "ADDRESS                                  WORKER CONNS IDLE WINDOW LIMIT WAITING FAILURES BACKOFF_UNTIL\n");
	buf_reset(&b);
	expect_buf("busy address", queue_format_address(&b, false, &busy), &b,
		   "192.0.2.10:25                                 0    10    2     10    10      37        0 -\n");
	buf_reset(&b);
	expect_buf("resting address", queue_format_address(&b, false, &resting), &b,
		   "[2001:db8::1]:25                              1     0    0      1    10       0        2 " T1 "\n");
	buf_reset(&b);
	expect_buf("busy address json", queue_format_address(&b, true, &busy), &b,
		   "{\"address\":\"192.0.2.10:25\",\"worker\":0,\"connections\":10,\"idle\":2,\"window\":10,"
		   "\"limit\":10,\"waiting\":37,\"failures\":0,\"backoff_until\":null}\n");
	buf_reset(&b);
	expect_buf("resting address json", queue_format_address(&b, true, &resting), &b,
		   "{\"address\":\"[2001:db8::1]:25\",\"worker\":1,\"connections\":0,\"idle\":0,\"window\":1,"
		   "\"limit\":10,\"waiting\":0,\"failures\":2,\"backoff_until\":\"" T1 "\"}\n");
	buf_free(&b);
}

/* format_one - run formatter number which into b. */
static int format_one(int which, struct buf *b)
{
	struct queue_message_view m;
	struct queue_summary_row rows[3];
	const struct queue_domain_view d = { "mx.example.org", 0, 120, 0, 0, 0, 1, 3, T1_MS };
	int rc;

	switch (which) {
	case 0: return queue_format_item(b, false, &deferred_item);
	case 1: return queue_format_item(b, true, &deferred_item);
	case 2:
	case 3:
		message_fill(&m);
		rc = queue_format_message(b, which == 3, &m);
		queue_message_view_clear(&m);
		return rc;
	case 4:
	case 5:
		summary_rows(rows);
		rc = queue_format_summary(b, which == 5, rows, 3);
		summary_rows_free(rows);
		return rc;
	case 6: return queue_format_domain(b, false, &d);
	case 7: return queue_format_domain(b, true, &d);
	case 8: return queue_format_list_header(b);
	default: return queue_format_domains_header(b);
	}
}

/* Every cap short of the whole output fails with -ENOBUFS (never a
 * silently cut row reported as done); the exact size succeeds. */
Test(queue_format, enobufs)
{
	for (int which = 0; which <= 9; which++) {
		struct buf full, small;

		buf_init(&full, 1 << 16);
		cr_assert_eq(format_one(which, &full), 0, "formatter %d: got an error with room", which);
		for (size_t cap = 0; cap < buf_len(&full); cap++) {
			buf_init(&small, cap);
			int rc = format_one(which, &small);
			cr_expect_eq(rc, -ENOBUFS, "formatter %d, cap %zu of %zu: got %d, want -ENOBUFS", which, cap,
				     buf_len(&full), rc);
			buf_free(&small);
		}
		buf_init(&small, buf_len(&full));
		cr_expect_eq(format_one(which, &small), 0, "formatter %d at its exact size: got an error", which);
		cr_expect(buf_len(&small) == buf_len(&full) &&
				  memcmp(buf_data(&small), buf_data(&full), buf_len(&full)) == 0,
			  "formatter %d at its exact size: got [%.*s], want [%.*s]", which, (int)buf_len(&small),
			  buf_data(&small), (int)buf_len(&full), buf_data(&full));
		buf_free(&small);
		buf_free(&full);
	}
}

/* has - the buffer holds text somewhere. */
static bool has(const struct buf *b, const char *text)
{
	return memmem(buf_data(b), buf_len(b), text, strlen(text)) != NULL;
}

/* Mail queued under a sender route (issue 17): "DOMAIN via HOP" in text,
 * and the hop in JSON's sender_route. */
Test(queue_format, sender_route_queue)
{
	struct buf b;
	const char *rcpts[] = { "bob@example.com" };
	struct queue_item_view it = {
		.queue_id = ID, .sender = "app@tenant-a.example", .domain = "example.com", .state = "deferred",
		.arrival_ms = T0_MS, .size = 10, .rcpts = rcpts, .rcpt_count = 1, .attempts = 1, .next_ms = T1_MS,
		.sender_route = "[smtp.provider.example]:587",
	};
	struct queue_domain_view dv = { .domain = "example.com", .deferred = 1, .window = 2,
		.sender_route = "[smtp.provider.example]:587" };

	buf_init(&b, 4096);
	cr_assert_eq(queue_format_item(&b, false, &it), 0);
	cr_expect(has(&b, " example.com via [smtp.provider.example]:587 "),
		  "got [%.*s]", (int)buf_len(&b), buf_data(&b));
	buf_reset(&b);
	cr_assert_eq(queue_format_item(&b, true, &it), 0);
	cr_expect(has(&b, "\"domain\":\"example.com\",\"sender_route\":\"[smtp.provider.example]:587\","),
		  "got [%.*s]", (int)buf_len(&b), buf_data(&b));
	buf_reset(&b);
	cr_assert_eq(queue_format_domain(&b, false, &dv), 0);
	cr_expect(strncmp(buf_data(&b), "example.com via [smtp.provider.example]:587 ", 44) == 0,
		  "got [%.*s]", (int)buf_len(&b), buf_data(&b));
	buf_reset(&b);
	cr_assert_eq(queue_format_domain(&b, true, &dv), 0);
	cr_expect(has(&b, "{\"domain\":\"example.com\",\"sender_route\":\"[smtp.provider.example]:587\","),
		  "got [%.*s]", (int)buf_len(&b), buf_data(&b));
	buf_free(&b);
}

/* --top: the largest rows stay, the rest fold into one "others" row that
 * TOTAL still counts; pruning in rounds (as a walk does every 2 x top
 * rows) gives the same answer as pruning once. */
Test(queue_format, summary_top_folds_the_rest_into_others)
{
	struct queue_summary_row rows[3];
	struct queue_summary_others others = { 0 };
	struct buf b;
	size_t n = 3;

	buf_init(&b, 4096);
	summary_rows(rows);
	queue_summary_keep_top(rows, &n, 1, &others);
	cr_assert_eq(n, 1, "kept: got %zu, want 1", n);
	cr_assert_str_eq(rows[0].domain, "a.example");
	cr_assert_eq(others.domains, 2);
	cr_assert_eq(others.total, 4);
	expect_buf("summary top 1", queue_format_summary_top(&b, false, rows, n, &others), &b,
		   "                                       T      5     10     20     40     80    160    320    640   1280  1280+\n"
		   "TOTAL                                  9      1      3      0      0      0      0      0      0      0      5\n"
		   "a.example                              5      1      1      0      0      0      0      0      0      0      3\n"
		   "(2 other domains)                      4      0      2      0      0      0      0      0      0      0      2\n");
	buf_reset(&b);
	expect_buf("summary top 1 json", queue_format_summary_top(&b, true, rows, n, &others), &b,
		   "{\"domain\":\"TOTAL\",\"total\":9,\"age_minutes\":{\"5\":1,\"10\":3,\"20\":0,\"40\":0,\"80\":0,"
		   "\"160\":0,\"320\":0,\"640\":0,\"1280\":0,\"1280+\":5}}\n"
		   "{\"domain\":\"a.example\",\"total\":5,\"age_minutes\":{\"5\":1,\"10\":1,\"20\":0,\"40\":0,\"80\":0,"
		   "\"160\":0,\"320\":0,\"640\":0,\"1280\":0,\"1280+\":3}}\n"
		   "{\"others\":2,\"total\":4,\"age_minutes\":{\"5\":0,\"10\":2,\"20\":0,\"40\":0,\"80\":0,"
		   "\"160\":0,\"320\":0,\"640\":0,\"1280\":0,\"1280+\":2}}\n");
	free(rows[0].domain);

	/* in rounds: top 2 over rows arriving one at a time */
	struct queue_summary_row one[3], kept[4];
	struct queue_summary_others o2 = { 0 };
	size_t k = 0;
	summary_rows(one);
	for (size_t i = 0; i < 3; i++) {
		kept[k++] = one[2 - i];
		if (k >= 2)
			queue_summary_keep_top(kept, &k, 2, &o2);
	}
	cr_assert_eq(k, 2);
	cr_assert_str_eq(kept[0].domain, "a.example");
	cr_assert_str_eq(kept[1].domain, "b.example", "equal totals: by name; got %s", kept[1].domain);
	cr_assert_eq(o2.domains, 1);
	cr_assert_eq(o2.total, 2);
	free(kept[0].domain);
	free(kept[1].domain);
	/* top 0 and top >= n keep everything */
	summary_rows(one);
	k = 3;
	queue_summary_keep_top(one, &k, 0, &o2);
	queue_summary_keep_top(one, &k, 5, &o2);
	cr_assert_eq(k, 3);
	cr_assert_eq(o2.domains, 1);
	summary_rows_free(one);
	buf_free(&b);
}
