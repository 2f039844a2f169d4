/*
 * test_smtp_reply - the SMTP reply parser, table-driven.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "smtp_reply.h"

struct reply_case {
	const char *in;
	int rc;			/* of the first parse call over the whole input */
	int code;
	const char *enhanced;
	const char *text;
	unsigned lines;
	size_t used;		/* 0: all of it */
};

static const struct reply_case cases[] = {
	{ "250 ok\r\n", 1, 250, "", "ok", 1, 0 },
	{ "250\r\n", 1, 250, "", "", 1, 0 },
	{ "250 ok\n", 1, 250, "", "ok", 1, 0 },
	{ "550 5.1.1 No such user\r\n", 1, 550, "5.1.1", "No such user", 1, 0 },
	{ "550 5.1.1\r\n", 1, 550, "5.1.1", "", 1, 0 },
	{ "550 4.1.1 class mismatch\r\n", 1, 550, "", "4.1.1 class mismatch", 1, 0 },
	{ "250 2.1.10x not code\r\n", 1, 250, "", "2.1.10x not code", 1, 0 },
	{ "451 4.123.456 long parts\r\n", 1, 451, "4.123.456", "long parts", 1, 0 },
	{ "451 4.1234.1 too long\r\n", 1, 451, "", "4.1234.1 too long", 1, 0 },
	{ "250-a\r\n250-b\r\n250 c\r\n", 1, 250, "", "a\nb\nc", 3, 0 },
	{ "550-5.7.1 one\r\n550-5.7.1 two\r\n550 5.7.1 three\r\n", 1, 550, "5.7.1",
	  "one\ntwo\nthree", 3, 0 },
	{ "250 first\r\n250 second\r\n", 1, 250, "", "first", 1, 11 },
	{ "250-partial\r\n", 0, 0, NULL, NULL, 0, 0 },
	{ "25", 0, 0, NULL, NULL, 0, 0 },
	{ "250-a\r\n251 b\r\n", -EPROTO, 0, NULL, NULL, 0, 14 },
	{ "hello\r\n", -EPROTO, 0, NULL, NULL, 0, 0 },
	{ "25\r\n", -EPROTO, 0, NULL, NULL, 0, 0 },
	{ "250x\r\n", -EPROTO, 0, NULL, NULL, 0, 0 },
	{ "150 preliminary\r\n", -EPROTO, 0, NULL, NULL, 0, 0 },
	{ "260 bad second digit\r\n", -EPROTO, 0, NULL, NULL, 0, 0 },
	{ "\r\n", -EPROTO, 0, NULL, NULL, 0, 0 },
};

Test(smtp_reply, table)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct reply_case *tc = &cases[i];
		struct smtp_reply_parser p;
		const struct smtp_reply *r;
		size_t used, len = strlen(tc->in);

		smtp_reply_parser_init(&p, 0, 0);
		int rc = smtp_reply_parse(&p, tc->in, len, &used, &r);
		cr_expect_eq(rc, tc->rc, "case %zu rc: got %d, want %d", i, rc, tc->rc);
		size_t want_used = tc->used ? tc->used : len;
		cr_expect_eq(used, want_used, "case %zu used: got %zu, want %zu", i, used, want_used);
		if (rc != 1 || tc->rc != 1)
			continue;
		cr_expect_eq(r->code, tc->code, "case %zu code: got %d, want %d", i, r->code, tc->code);
		cr_expect_str_eq(r->enhanced, tc->enhanced, "case %zu enhanced: got \"%s\", want \"%s\"",
				 i, r->enhanced, tc->enhanced);
		cr_expect_str_eq(r->text, tc->text, "case %zu text: got \"%s\", want \"%s\"",
				 i, r->text, tc->text);
		cr_expect_eq(r->lines, tc->lines, "case %zu lines: got %u, want %u", i, r->lines, tc->lines);
	}
}

/* Every split of a multi-line reply gives the same result. */
Test(smtp_reply, fragments)
{
	const char *in = "250-mx.test\r\n250-PIPELINING\r\n250 5.5.5 not a code here\r\n250 next\r\n";
	size_t len = strlen(in);

	for (size_t cut = 0; cut <= len; cut++) {
		struct smtp_reply_parser p;
		const struct smtp_reply *r = NULL;
		size_t used = 0, off = 0;
		int rc = 0;

		smtp_reply_parser_init(&p, 0, 0);
		rc = smtp_reply_parse(&p, in, cut, &used, &r);
		off = used;
		if (rc == 0) {
			rc = smtp_reply_parse(&p, in + off, len - off, &used, &r);
			off += used;
		}
		cr_assert_eq(rc, 1, "cut %zu: got rc %d, want 1", cut, rc);
		cr_assert_eq(r->lines, 3, "cut %zu: got %u lines", cut, r->lines);
		cr_assert_str_eq(r->text, "mx.test\nPIPELINING\n5.5.5 not a code here",
				 "cut %zu: got \"%s\"", cut, r->text);
		rc = smtp_reply_parse(&p, in + off, len - off, &used, &r);
		cr_assert_eq(rc, 1);
		cr_assert_str_eq(r->text, "next");
	}
}

Test(smtp_reply, byte_at_a_time)
{
	const char *in = "421-4.7.0 going\r\n421 4.7.0 down\r\n";
	struct smtp_reply_parser p;
	const struct smtp_reply *r = NULL;
	size_t used;
	int rc = 0;

	smtp_reply_parser_init(&p, 0, 0);
	for (const char *s = in; *s; s++) {
		cr_assert(rc == 0, "reply complete too early");
		rc = smtp_reply_parse(&p, s, 1, &used, &r);
		cr_assert_eq(used, 1);
	}
	cr_assert_eq(rc, 1);
	cr_assert_eq(r->code, 421);
	cr_assert_str_eq(r->enhanced, "4.7.0");
	cr_assert_str_eq(r->text, "going\ndown");
}

Test(smtp_reply, line_too_long)
{
	struct smtp_reply_parser p;
	const struct smtp_reply *r;
	char line[200];
	size_t used;

	smtp_reply_parser_init(&p, 64, 0);
	memset(line, 'a', sizeof(line));
	memcpy(line, "250 ", 4);
	cr_assert_eq(smtp_reply_parse(&p, line, sizeof(line), &used, &r), -EMSGSIZE);
	/* The error is sticky. */
	cr_assert_eq(smtp_reply_parse(&p, "250 ok\r\n", 8, &used, &r), -EMSGSIZE);

	/* Exactly max_line bytes plus CRLF is fine. */
	smtp_reply_parser_init(&p, 64, 0);
	memset(line, 'b', 64);
	memcpy(line, "250 ", 4);
	memcpy(line + 64, "\r\n", 2);
	cr_assert_eq(smtp_reply_parse(&p, line, 66, &used, &r), 1);
	cr_assert_eq(r->text_len, 60);
}

Test(smtp_reply, too_many_lines)
{
	struct smtp_reply_parser p;
	const struct smtp_reply *r;
	size_t used;

	smtp_reply_parser_init(&p, 0, 3);
	const char *ok = "250-a\r\n250-b\r\n250 c\r\n";
	cr_assert_eq(smtp_reply_parse(&p, ok, strlen(ok), &used, &r), 1);
	const char *bad = "250-a\r\n250-b\r\n250-c\r\n250 d\r\n";
	cr_assert_eq(smtp_reply_parse(&p, bad, strlen(bad), &used, &r), -EMSGSIZE);
}

Test(smtp_reply, text_is_truncated_not_failed)
{
	struct smtp_reply_parser p;
	const struct smtp_reply *r = NULL;
	char line[1000];
	size_t used;
	int rc = 0;

	smtp_reply_parser_init(&p, 0, 0);
	memset(line, 'x', sizeof(line));
	memcpy(line, "250-", 4);
	memcpy(line + sizeof(line) - 2, "\r\n", 2);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(smtp_reply_parse(&p, line, sizeof(line), &used, &r), 0);
	rc = smtp_reply_parse(&p, "250 end\r\n", 9, &used, &r);
	cr_assert_eq(rc, 1);
	cr_assert_eq(r->text_len, SMTP_REPLY_TEXT_MAX, "got %zu", r->text_len);
	cr_assert_eq(strlen(r->text), SMTP_REPLY_TEXT_MAX);
	cr_assert(smtp_reply_pending(&p) == false);
}

Test(smtp_reply, enhanced_parse)
{
	static const struct { const char *s; size_t want; } t[] = {
		{ "2.0.0", 5 }, { "5.1.1 x", 5 }, { "4.7.26 y", 6 }, { "3.1.1", 0 },
		{ "5.1", 0 }, { "5..1", 0 }, { "5.1.", 0 }, { "5.1.1x", 0 }, { "", 0 },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t got = smtp_enhanced_parse(t[i].s, strlen(t[i].s));
		cr_expect_eq(got, t[i].want, "\"%s\": got %zu, want %zu", t[i].s, got, t[i].want);
	}
}
