/*
 * test_mime_build - messages built from structured content: structure
 * (single part, alternative, mixed), encodings chosen (7bit, QP, base64),
 * RFC 2047 words (length, UTF-8 characters never split), addresses,
 * line lengths and CRLF everywhere, substitutions, custom headers
 * replacing ours, and the size cap. tests/integration/test_http_inject.py
 * checks the same builder's output with Python's email package.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mime_build.h"

static const struct mime_build_params params = { "relay.test", 1796400000, "QID1", "Ann <a@y.test>" };

static char *build(struct inject_content *c, const struct inject_substitution *subs, size_t n, size_t cap)
{
	struct buf b;
	buf_init(&b, cap);
	int rc = mime_build(c, &params, subs, n, NULL, 0, &b);
	cr_assert_eq(rc, 0, "mime_build: %d", rc);
	buf_append(&b, "", 1);
	char *s = strdup(buf_data(&b));
	buf_free(&b);
	return s;
}

/* check_lines - CRLF only, and no line longer than max octets. */
static void check_lines(const char *msg, size_t max)
{
	size_t col = 0;
	for (const char *p = msg; *p; p++) {
		if (*p == '\n') {
			cr_expect(p > msg && p[-1] == '\r', "bare LF at %zu", (size_t)(p - msg));
			col = 0;
			continue;
		}
		if (*p == '\r') {
			cr_expect(p[1] == '\n', "bare CR at %zu", (size_t)(p - msg));
			continue;
		}
		col++;
		cr_expect(col <= max, "line over %zu octets near \"%.40s\"", max, p - col + 1);
		if (col > max)
			return;
	}
}

Test(mime_build, text_only_ascii_is_7bit)
{
	struct inject_content c = { .subject = "Hello", .text_body = "line one\nline two",
				    .from = { "f@x.test", "Fred" } };
	char *m = build(&c, NULL, 0, 1 << 20);

	cr_expect(strstr(m, "From: Fred <f@x.test>\r\n") != NULL, "%s", m);
	cr_expect(strstr(m, "To: Ann <a@y.test>\r\n") != NULL);
	cr_expect(strstr(m, "Subject: Hello\r\n") != NULL);
	cr_expect(strstr(m, "Message-ID: <QID1.1796400000@relay.test>\r\n") != NULL);
	cr_expect(strstr(m, "Date: ") != NULL);
	cr_expect(strstr(m, "MIME-Version: 1.0\r\n") != NULL);
	cr_expect(strstr(m, "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
			    "line one\r\nline two\r\n") != NULL, "%s", m);
	cr_expect(strstr(m, "multipart") == NULL);
	check_lines(m, 78);
	free(m);
}

Test(mime_build, utf8_and_long_lines_are_quoted_printable)
{
	char body[400];
	memset(body, 'x', 200);
	strcpy(body + 200, " caf\xc3\xa9 = end \n");
	struct inject_content c = { .html_body = body, .from = { "f@x.test", NULL } };
	char *m = build(&c, NULL, 0, 1 << 20);

	cr_expect(strstr(m, "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable") != NULL, "%s", m);
	cr_expect(strstr(m, "caf=C3=A9 =3D end") != NULL, "%s", m);
	cr_expect(strstr(m, "=\r\n") != NULL, "soft line breaks");
	cr_expect(strstr(m, "end=20\r\n") != NULL, "a space before a line break is encoded: %s", m);
	check_lines(m, 78);
	free(m);
}

Test(mime_build, alternative_and_mixed_with_attachments)
{
	struct inject_attachment att[] = {
		{ .data = "hello", .len = 5, .content_type = "text/plain", .file_name = "h.txt" },
		{ .data = "\x00\x01\x02", .len = 3, .content_type = "application/octet-stream",
		  .file_name = "r\xc3\xa9sum\xc3\xa9.bin" },
	};
	struct inject_content c = { .subject = "S", .text_body = "t", .html_body = "<p>h</p>",
				    .from = { "f@x.test", NULL }, .attachments = att, .attachment_count = 2 };
	char *m = build(&c, NULL, 0, 1 << 20);

	const char *mixed = strstr(m, "Content-Type: multipart/mixed;\r\n boundary=\"=_rm_QID1_m\"");
	const char *alt = strstr(m, "Content-Type: multipart/alternative;\r\n boundary=\"=_rm_QID1_a\"");
	cr_assert(mixed != NULL && alt != NULL && mixed < alt, "%s", m);
	cr_expect(strstr(m, "--=_rm_QID1_a--\r\n") != NULL);
	cr_expect(strstr(m, "--=_rm_QID1_m--\r\n") != NULL);
	cr_expect(strstr(m, "Content-Disposition: attachment;\r\n filename=\"h.txt\"") != NULL, "%s", m);
	cr_expect(strstr(m, "aGVsbG8=\r\n") != NULL);
	cr_expect(strstr(m, "AAEC\r\n") != NULL);
	cr_expect(strstr(m, "filename*=utf-8''r%C3%A9sum%C3%A9.bin") != NULL, "%s", m);
	check_lines(m, 78);
	free(m);
}

Test(mime_build, encoded_words_keep_characters_whole)
{
	/* 40 two-octet characters: 80 octets, more than one word's 45. */
	char subject[200] = "";
	for (int i = 0; i < 40; i++)
		strcat(subject, "\xc3\xa9");
	struct buf b;
	buf_init(&b, 4096);
	cr_assert_eq(mime_encode_word(subject, &b), 0);
	buf_append(&b, "", 1);
	const char *s = buf_data(&b);
	int words = 0;
	for (const char *w = strstr(s, "=?utf-8?B?"); w != NULL; w = strstr(w + 1, "=?utf-8?B?")) {
		const char *end = strstr(w, "?=");
		cr_assert_not_null(end);
		cr_expect_leq((size_t)(end + 2 - w), 75, "word longer than 75");
		/* 44 octets = 22 characters; 45 would split one. */
		words++;
	}
	cr_expect_eq(words, 2, "%s", s);
	/* The first word holds 44 octets (60 base64 characters), not 45. */
	const char *first = strstr(s, "B?") + 2;
	cr_expect_eq((size_t)(strstr(first, "?=") - first), 60, "%s", s);
	buf_free(&b);

	buf_init(&b, 4096);
	cr_assert_eq(mime_encode_word("plain ascii", &b), 0);
	cr_expect(buf_len(&b) == 11 && memcmp(buf_data(&b), "plain ascii", 11) == 0);
	buf_free(&b);
}

Test(mime_build, addresses)
{
	static const struct {
		const char *name, *email, *want;
	} cases[] = {
		{ NULL, "a@b", "a@b" },
		{ "", "a@b", "a@b" },
		{ "Ann Lee", "a@b", "Ann Lee <a@b>" },
		{ "Lee, Ann", "a@b", "\"Lee, Ann\" <a@b>" },
		{ "A \"q\" B.", "a@b", "\"A \\\"q\\\" B.\" <a@b>" },
		{ "J\xc3\xbcrgen", "j@b", "=?utf-8?B?SsO8cmdlbg==?= <j@b>" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf b;
		buf_init(&b, 1024);
		cr_assert_eq(mime_format_address(cases[i].name, cases[i].email, &b), 0);
		cr_expect(buf_len(&b) == strlen(cases[i].want) && memcmp(buf_data(&b), cases[i].want, buf_len(&b)) == 0,
			  "got %.*s, want %s", (int)buf_len(&b), buf_data(&b), cases[i].want);
		buf_free(&b);
	}
}

Test(mime_build, substitutions_and_custom_headers)
{
	struct inject_header headers[] = { { "Message-ID", "<mine@x.test>" }, { "X-Who", "{{n}}" } };
	struct inject_content c = { .subject = "Hi {{n}}", .text_body = "Dear {{ n }},", .html_body = NULL,
				    .from = { "f@x.test", NULL }, .reply_to = { "r@x.test", "R" },
				    .headers = headers, .header_count = 2 };
	struct inject_substitution subs[] = { { "n", "Zo\xc3\xab" } };
	char *m = build(&c, subs, 1, 1 << 20);

	cr_expect(strstr(m, "Subject: =?utf-8?B?SGkgWm/Dqw==?=\r\n") != NULL, "%s", m);
	cr_expect(strstr(m, "Dear Zo=C3=AB,") != NULL, "%s", m);
	cr_expect(strstr(m, "Message-ID: <mine@x.test>\r\n") != NULL);
	cr_expect(strstr(m, "Message-ID: <QID1") == NULL, "ours is not added next to theirs");
	cr_expect(strstr(m, "X-Who: {{n}}\r\n") != NULL, "headers are not templates");
	cr_expect(strstr(m, "Reply-To: R <r@x.test>\r\n") != NULL);
	free(m);
}

Test(mime_build, subject_with_newline_after_substitution_is_refused)
{
	struct inject_content c = { .subject = "Hi {{n}}", .text_body = "t", .from = { "f@x.test", NULL } };
	struct inject_substitution subs[] = { { "n", "a\r\nBcc: evil@x" } };
	struct buf b;
	buf_init(&b, 1 << 20);
	cr_expect_eq(mime_build(&c, &params, subs, 1, NULL, 0, &b), -EINVAL);
	buf_free(&b);
}

Test(mime_build, size_cap)
{
	struct inject_attachment att = { .data = "0123456789", .len = 10, .content_type = "a/b" };
	struct inject_content c = { .text_body = "t", .from = { "f@x.test", NULL }, .attachments = &att,
				    .attachment_count = 1 };
	struct buf b;
	buf_init(&b, 200);
	cr_expect_eq(mime_build(&c, &params, NULL, 0, NULL, 0, &b), -ENOBUFS);
	buf_free(&b);
}
