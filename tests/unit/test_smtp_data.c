/* test_smtp_data - DATA dot decoding, smuggling vectors, limits, BDAT. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_data.h"

struct dot_case {
	const char *name;
	const char *in;
	size_t in_len;		/* 0: strlen(in) */
	bool want_done;
	size_t want_used;	/* octets consumed; 0: all */
	const char *want_body;
	size_t want_body_len;	/* 0: strlen(want_body) */
	const char *want_verdict;	/* reply prefix; NULL = accepted */
};

#define SMUGGLED "550 5.6.11"
#define BADTEXT "554 5.6.0"

static const struct dot_case dot_cases[] = {
	{ "simple", "Hello\r\n.\r\n", 0, true, 0, "Hello\r\n", 0, NULL },
	{ "empty message", ".\r\n", 0, true, 0, "", 0, NULL },
	{ "dot-stuffed line", "..x\r\n.\r\n", 0, true, 0, ".x\r\n", 0, NULL },
	{ "dot-stuffed lone dot", "a\r\n..\r\n.\r\n", 0, true, 0, "a\r\n.\r\n", 0, NULL },
	{ "dot-stuffed first line", ".foo\r\n.\r\n", 0, true, 0, "foo\r\n", 0, NULL },
	{ "dot not at line start", "a.b\r\n .\r\n.\r\n", 0, true, 0, "a.b\r\n .\r\n", 0, NULL },
	{ "empty lines", "\r\n\r\n.\r\n", 0, true, 0, "\r\n\r\n", 0, NULL },
	{ "stops at end", "a\r\n.\r\nMAIL FROM:<x@y>\r\n", 0, true, 6, "a\r\n", 0, NULL },
	{ "LF.LF", "a\n.\nb\r\n.\r\n", 0, true, 0, "a\n.\nb\r\n", 0, SMUGGLED },
	{ "CR.CR", "a\r.\rb\r\n.\r\n", 0, true, 0, "a\r.\rb\r\n", 0, SMUGGLED },
	{ "CRLF.CR", "a\r\n.\rb\r\n.\r\n", 0, true, 0, "a\r\n\rb\r\n", 0, SMUGGLED },
	{ "LF.CRLF", "a\n.\r\nb\r\n.\r\n", 0, true, 0, "a\n.\r\nb\r\n", 0, SMUGGLED },
	{ "CR.CRLF", "a\r.\r\nb\r\n.\r\n", 0, true, 0, "a\r.\r\nb\r\n", 0, SMUGGLED },
	{ "CRLF.LF", "a\r\n.\nb\r\n.\r\n", 0, true, 0, "a\r\n\nb\r\n", 0, SMUGGLED },
	{ "CRLF.CR CRLF", "a\r\n.\r\r\n.\r\n", 0, true, 0, "a\r\n\r\r\n", 0, SMUGGLED },
	{ "bare LF at start", "\n.\n", 0, false, 0, "\n.\n", 0, NULL },
	{ "LF.LF never ends", "a\n.\n", 0, false, 0, "a\n.\n", 0, NULL },
	{ "CR.CR never ends", "a\r.\r", 0, false, 0, "a\r.", 0, NULL },
	{ "NUL before dot", "a\r\n\0.\r\n.\r\n", 10, true, 0, "a\r\n\0.\r\n", 7, BADTEXT },
	{ "NUL after dot", "a\r\n.\0\r\n.\r\n", 10, true, 0, "a\r\n\0\r\n", 6, BADTEXT },
	{ "NUL line", "a\r\n\0\r\n.\r\n", 9, true, 0, "a\r\n\0\r\n", 6, BADTEXT },
	{ "cut before LF", "a\r\n.\r", 0, false, 0, "a\r\n", 0, NULL },
	{ "bare CR in text", "a\rb\r\n.\r\n", 0, true, 0, "a\rb\r\n", 0, SMUGGLED },
	{ "bare LF in text", "a\nb\r\n.\r\n", 0, true, 0, "a\nb\r\n", 0, SMUGGLED },
	{ "8bit text", "\xc3\xa9t\xc3\xa9\r\n.\r\n", 0, true, 0, "\xc3\xa9t\xc3\xa9\r\n", 0, NULL },
};

struct run_result {
	struct buf body;
	size_t used;
	bool done;
	unsigned anomalies;
	const char *verdict;
};

static void run_dot(const char *in, size_t len, size_t step, const struct smtp_data_limits *lim,
		    struct run_result *r)
{
	struct smtp_data d;
	size_t off = 0;

	buf_init(&r->body, 1 << 20);
	smtp_data_begin_dot(&d, lim, &r->body);
	while (off < len && !smtp_data_done(&d)) {
		size_t n = len - off < step ? len - off : step;
		size_t used = smtp_data_feed(&d, in + off, n);

		cr_assert(used == n || smtp_data_done(&d), "short feed without end");
		off += used;
	}
	r->used = off;
	r->done = smtp_data_done(&d);
	r->anomalies = d.anomalies;
	r->verdict = smtp_data_verdict(&d);
}

static const struct smtp_data_limits default_limits = { .line_max = 1000, .size_max = 1 << 20 };

Test(smtp_data, dot_table_whole_and_bytewise)
{
	for (size_t i = 0; i < sizeof(dot_cases) / sizeof(dot_cases[0]); i++) {
		const struct dot_case *c = &dot_cases[i];
		size_t len = c->in_len ? c->in_len : strlen(c->in);
		size_t want_used = c->want_used ? c->want_used : len;
		size_t want_body_len = c->want_body_len ? c->want_body_len : strlen(c->want_body);
		struct run_result whole, bytes;

		run_dot(c->in, len, len, &default_limits, &whole);
		run_dot(c->in, len, 1, &default_limits, &bytes);
		cr_expect_eq(whole.done, c->want_done, "%s: got done %d, want %d", c->name,
			     whole.done, c->want_done);
		cr_expect_eq(whole.used, want_used, "%s: got used %zu, want %zu", c->name,
			     whole.used, want_used);
		cr_expect(whole.body.len == want_body_len
			  && memcmp(buf_data(&whole.body), c->want_body, want_body_len) == 0,
			  "%s: got body %zu octets \"%.*s\", want %zu \"%s\"", c->name, whole.body.len,
			  (int)whole.body.len, buf_data(&whole.body), want_body_len, c->want_body);
		if (c->want_done && c->want_verdict)
			cr_expect(whole.verdict && strncmp(whole.verdict, c->want_verdict,
							   strlen(c->want_verdict)) == 0,
				  "%s: got verdict %s, want %s", c->name,
				  whole.verdict ? whole.verdict : "accept", c->want_verdict);
		else if (c->want_done)
			cr_expect_null(whole.verdict, "%s: got verdict %s, want accept", c->name,
				       whole.verdict);
		/* one byte at a time must give exactly the same result */
		cr_expect_eq(bytes.done, whole.done, "%s: bytewise done differs", c->name);
		cr_expect_eq(bytes.used, whole.used, "%s: bytewise used %zu vs %zu", c->name,
			     bytes.used, whole.used);
		cr_expect_eq(bytes.anomalies, whole.anomalies, "%s: bytewise anomalies %x vs %x",
			     c->name, bytes.anomalies, whole.anomalies);
		cr_expect(bytes.body.len == whole.body.len
			  && memcmp(buf_data(&bytes.body), buf_data(&whole.body),
				    whole.body.len) == 0, "%s: bytewise body differs", c->name);
		buf_free(&whole.body);
		buf_free(&bytes.body);
	}
}

Test(smtp_data, cr_dot_cr_at_end_of_feed_then_lf)
{
	struct buf body;
	struct smtp_data d;

	buf_init(&body, 1024);
	smtp_data_begin_dot(&d, &default_limits, &body);
	cr_expect_eq(smtp_data_feed(&d, "x\r\n.\r", 5), 5);
	cr_expect(!smtp_data_done(&d), "must wait for the LF");
	cr_expect_eq(smtp_data_feed(&d, "\nQUIT\r\n", 7), 1);
	cr_expect(smtp_data_done(&d));
	cr_expect_null(smtp_data_verdict(&d));
	cr_expect(body.len == 3 && memcmp(buf_data(&body), "x\r\n", 3) == 0);
	buf_free(&body);
}

static char *make_lines(size_t line_octets, size_t *len)
{
	/* one line of line_octets incl. CRLF, then the end */
	char *p = malloc(line_octets + 3);

	memset(p, 'x', line_octets - 2);
	memcpy(p + line_octets - 2, "\r\n.\r\n", 5);
	*len = line_octets + 3;
	return p;
}

Test(smtp_data, line_length_limit)
{
	struct { size_t octets; bool ok; } cases_len[] = { { 1000, true }, { 1001, false }, { 5000, false } };

	for (size_t i = 0; i < 3; i++) {
		size_t len;
		char *in = make_lines(cases_len[i].octets, &len);
		struct run_result r;

		run_dot(in, len, len, &default_limits, &r);
		cr_expect(r.done);
		cr_expect_eq(r.verdict == NULL, cases_len[i].ok, "line of %zu: got %s, want %s",
			     cases_len[i].octets, r.verdict ? r.verdict : "accept",
			     cases_len[i].ok ? "accept" : "reject");
		if (r.verdict)
			cr_expect(strncmp(r.verdict, "554 5.6.0", 9) == 0, "got %s", r.verdict);
		buf_free(&r.body);
		run_dot(in, len, 7, &default_limits, &r);
		cr_expect_eq(r.verdict == NULL, cases_len[i].ok, "line of %zu in pieces", cases_len[i].octets);
		buf_free(&r.body);
		free(in);
	}
}

Test(smtp_data, size_limit_reads_to_end)
{
	const struct smtp_data_limits lim = { .line_max = 1000, .size_max = 10 };
	const char *in = "0123456789abcdef\r\nmore\r\n.\r\nNEXT";
	struct run_result r;

	run_dot(in, strlen(in), strlen(in), &lim, &r);
	cr_expect(r.done);
	cr_expect_eq(r.used, strlen(in) - 4, "reads through the end: got %zu", r.used);
	cr_expect(r.verdict && strncmp(r.verdict, "552 5.3.4", 9) == 0, "got %s", r.verdict);
	cr_expect_leq(r.body.len, 10, "stored past the limit: %zu", r.body.len);
	buf_free(&r.body);

	in = "0123456789\r\n.\r\n";	/* 12 octets of content: over 10 */
	run_dot(in, strlen(in), 1, &lim, &r);
	cr_expect(r.verdict && strncmp(r.verdict, "552", 3) == 0);
	buf_free(&r.body);
}

/* bdat_run - send content as chunks of the given sizes, each fed in random
 * fragments; returns the verdict of the whole message */
static const char *bdat_run(const char *content, size_t len, const size_t *chunks, size_t nchunks,
			    bool binary, uint64_t size_max, struct buf *body, unsigned seed)
{
	const struct smtp_data_limits lim = { .line_max = 1000, .size_max = size_max };
	struct smtp_data d;
	size_t off = 0;

	buf_init(body, 1 << 20);
	smtp_data_begin_bdat(&d, &lim, body, binary);
	for (size_t c = 0; c < nchunks; c++) {
		size_t end = off + chunks[c];

		smtp_data_chunk(&d, chunks[c]);
		while (off < end) {
			size_t frag = 1 + (size_t)rand_r(&seed) % 97;
			size_t avail = len - off < frag ? len - off : frag;
			size_t used = smtp_data_feed(&d, content + off, avail);

			cr_assert(used > 0 && used <= avail);
			off += used;
		}
		cr_assert(smtp_data_done(&d), "chunk %zu not complete", c);
		cr_assert_eq(off, end, "chunk %zu over-read", c);
	}
	return smtp_data_verdict(&d);
}

Test(smtp_data, bdat_random_chunks)
{
	char content[4000];
	unsigned seed = 12345;

	for (size_t i = 0; i < sizeof(content); i++)	/* binary, with NUL, CR, LF */
		content[i] = (char)(rand_r(&seed) & 0xff);
	for (unsigned round = 0; round < 50; round++) {
		size_t chunks[64], n = 0, left = sizeof(content);
		struct buf body;
		const char *v;

		while (left > 0 && n < 63) {
			size_t c = (size_t)rand_r(&seed) % 300;
			if (c > left)
				c = left;
			chunks[n++] = c;
			left -= c;
		}
		chunks[n++] = left;
		v = bdat_run(content, sizeof(content), chunks, n, true, 1 << 20, &body, round);
		cr_expect_null(v, "round %u: binary content refused: %s", round, v);
		cr_expect(body.len == sizeof(content)
			  && memcmp(buf_data(&body), content, sizeof(content)) == 0,
			  "round %u: content not verbatim", round);
		buf_free(&body);
	}
}

Test(smtp_data, bdat_checks_and_size)
{
	struct buf body;
	const char *v;
	size_t two[] = { 6, 6 }, split[] = { 2, 3 }, one[] = { 4 };

	v = bdat_run("0123456789ab", 12, two, 2, false, 10, &body, 1);
	cr_expect(v && strncmp(v, "552 5.3.4", 9) == 0, "size across chunks: got %s", v);
	buf_free(&body);
	v = bdat_run("a\r\nb\n", 5, split, 2, false, 100, &body, 1);
	cr_expect(v && strncmp(v, SMUGGLED, 10) == 0, "bare LF in BDAT text: got %s", v);
	buf_free(&body);
	v = bdat_run("a\r\nb\n", 5, split, 2, true, 100, &body, 1);
	cr_expect_null(v, "BINARYMIME takes anything: got %s", v);
	buf_free(&body);
	v = bdat_run("ab\r\n", 4, (size_t[]){ 3, 1 }, 2, false, 100, &body, 1);
	cr_expect_null(v, "CR LF split over chunks: got %s", v);
	buf_free(&body);
	v = bdat_run("abc\r", 4, one, 1, false, 100, &body, 1);
	cr_expect(v && strncmp(v, SMUGGLED, 10) == 0, "lone CR at end: got %s", v);
	buf_free(&body);
	v = bdat_run("\r\n.\r\n", 5, (size_t[]){ 5 }, 1, false, 100, &body, 1);
	cr_expect_null(v, "dots are content in BDAT");
	cr_expect_eq(body.len, 5, "got %zu octets, want 5", body.len);
	buf_free(&body);
}
