/* test_mime_downgrade - 8bit MIME parts to quoted-printable (RFC 6152 3). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime_downgrade.h"

struct case_ {
	const char *name;
	const char *in;
	const char *want;	/* expected output; NULL when want_rc < 0 */
	int want_rc;
};

#define CTE_QP "Content-Transfer-Encoding: quoted-printable\r\n"

static const struct case_ cases[] = {
	{ "7-bit message copied", "Subject: hi\r\n\r\nhello\r\n", "Subject: hi\r\n\r\nhello\r\n", 0 },
	{ "plain 8-bit, no MIME headers",
	  "Subject: hi\r\n\r\ncaf\xc3\xa9\r\n",
	  "Subject: hi\r\n" CTE_QP "MIME-Version: 1.0\r\n\r\ncaf=C3=A9\r\n", 0 },
	{ "8bit CTE replaced",
	  "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
	  "Content-Transfer-Encoding: 8bit\r\nSubject: x\r\n\r\n\xe2\x82\xac 5\r\n",
	  "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
	  CTE_QP "Subject: x\r\n\r\n=E2=82=AC 5\r\n", 0 },
	{ "folded CTE replaced whole",
	  "MIME-Version: 1.0\r\nContent-Transfer-Encoding:\r\n 8bit\r\n\r\n\xff\r\n",
	  "MIME-Version: 1.0\r\n" CTE_QP "\r\n=FF\r\n", 0 },
	{ "equals, trailing blanks and controls encoded",
	  "MIME-Version: 1.0\r\n\r\na=b \r\n\xe9\tx\t\r\nbell\x07\r\n",
	  "MIME-Version: 1.0\r\n" CTE_QP "\r\na=3Db=20\r\n=E9\tx=09\r\nbell=07\r\n", 0 },
	{ "8-bit only in headers: copied",
	  "Subject: caf\xc3\xa9\r\n\r\nplain\r\n", "Subject: caf\xc3\xa9\r\n\r\nplain\r\n", 0 },
	{ "bare LF lines become CRLF",
	  "MIME-Version: 1.0\n\n\xe9\nb\n",
	  "MIME-Version: 1.0\n" CTE_QP "\n=E9\r\nb\r\n", 0 },
	{ "no final line break kept",
	  "MIME-Version: 1.0\r\n\r\n\xe9", "MIME-Version: 1.0\r\n" CTE_QP "\r\n=E9", 0 },
	{ "multipart: only the 8-bit part converted",
	  "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
	  "preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nascii\r\n"
	  "--b1\r\nContent-Type: text/plain; charset=latin1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xe9t\xe9\r\n"
	  "--b1--\r\nepilogue\r\n",
	  "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
	  "preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nascii\r\n"
	  "--b1\r\nContent-Type: text/plain; charset=latin1\r\n" CTE_QP "\r\n=E9t=E9\r\n"
	  "--b1--\r\nepilogue\r\n", 0 },
	{ "nested multipart",
	  "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n"
	  "--outer\r\nContent-Type: multipart/alternative;\r\n boundary=\"in ner\"\r\n\r\n"
	  "--in ner\r\nContent-Type: text/plain\r\n\r\n\xc3\xbc\r\n"
	  "--in ner\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--in ner--\r\n"
	  "--outer--\r\n",
	  "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n"
	  "--outer\r\nContent-Type: multipart/alternative;\r\n boundary=\"in ner\"\r\n\r\n"
	  "--in ner\r\nContent-Type: text/plain\r\n" CTE_QP "\r\n=C3=BC\r\n"
	  "--in ner\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--in ner--\r\n"
	  "--outer--\r\n", 0 },
	{ "unclosed multipart: last part runs to the end",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n\xe9\r\n",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" CTE_QP "\r\n=E9\r\n", 0 },
	{ "boundary prefix inside a line is not a delimiter",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--bx\xe9\r\n--b--\r\n",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" CTE_QP "\r\n--bx=E9\r\n--b--\r\n", 0 },
	{ "message/rfc822 with 8-bit refused",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n"
	  "Subject: inner\r\n\r\n\xe9\r\n--b--\r\n", NULL, MIME_DOWNGRADE_MESSAGE_PART },
	{ "digest part defaults to message/rfc822",
	  "Content-Type: multipart/digest; boundary=b\r\n\r\n--b\r\n\r\n"
	  "Subject: inner\r\n\r\n\xe9\r\n--b--\r\n", NULL, MIME_DOWNGRADE_MESSAGE_PART },
	{ "message/rfc822 with 7-bit body copied",
	  "Content-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\nok\r\n",
	  "Content-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\nok\r\n", 0 },
	{ "base64 part with 8-bit refused",
	  "Content-Transfer-Encoding: base64\r\n\r\n\xe9\r\n", NULL, MIME_DOWNGRADE_ENCODED_PART },
	{ "binary part refused",
	  "Content-Transfer-Encoding: binary\r\n\r\n\xe9\r\n", NULL, MIME_DOWNGRADE_ENCODED_PART },
	{ "8-bit preamble refused",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n\xe9\r\n--b\r\n\r\nx\r\n--b--\r\n",
	  NULL, MIME_DOWNGRADE_STRUCTURE },
	{ "8-bit epilogue refused",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n\xe9\r\n",
	  NULL, MIME_DOWNGRADE_STRUCTURE },
	{ "multipart without its boundary in the body refused",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n\xe9\r\n", NULL, MIME_DOWNGRADE_STRUCTURE },
	{ "multipart without boundary parameter treated as a leaf",
	  "Content-Type: multipart/mixed\r\n\r\n\xe9\r\n",
	  "Content-Type: multipart/mixed\r\n" CTE_QP "MIME-Version: 1.0\r\n\r\n=E9\r\n", 0 },
};

Test(mime_downgrade, table)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct case_ *c = &cases[i];
		struct buf out;
		const char *why = NULL;
		buf_init(&out, 1 << 20);
		int rc = mime_downgrade(c->in, strlen(c->in), &out, &why);
		cr_expect_eq(rc, c->want_rc, "%s: got rc %d, want %d", c->name, rc, c->want_rc);
		if (rc == 0 && c->want != NULL) {
			cr_expect(buf_len(&out) == strlen(c->want) &&
				  memcmp(buf_data(&out), c->want, strlen(c->want)) == 0,
				  "%s:\ngot  [%.*s]\nwant [%s]", c->name, (int)buf_len(&out),
				  buf_data(&out), c->want);
			if (strstr(c->name, "headers") == NULL)
				cr_expect(!mime_has_8bit(buf_data(&out), buf_len(&out)),
					  "%s: output has 8-bit bytes", c->name);
		}
		if (rc < 0)
			cr_expect(why != NULL && why[0] != '\0', "%s: no reason given", c->name);
		buf_free(&out);
	}
}

/* qp_decode - RFC 2045 6.7 decoding, for the round trip below. */
static size_t qp_decode(const char *in, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (in[i] == '=' && i + 2 < n && in[i + 1] == '\r' && in[i + 2] == '\n') {
			i += 2;
		} else if (in[i] == '=' && i + 2 < n) {
			char hex[3] = { in[i + 1], in[i + 2], 0 };
			out[o++] = (char)strtol(hex, NULL, 16);
			i += 2;
		} else {
			out[o++] = in[i];
		}
	}
	return o;
}

Test(mime_downgrade, long_lines_soft_broken_and_round_trip)
{
	static const char head[] = "MIME-Version: 1.0\r\nContent-Transfer-Encoding: 8bit\r\n\r\n";
	char body[4096];
	size_t n = 0;

	srand(26);
	for (int line = 0; line < 20; line++) {
		int len = rand() % 300;
		for (int k = 0; k < len; k++) {
			int c = rand() % 256;
			body[n++] = (char)(c == '\r' || c == '\n' ? 'x' : c);
		}
		body[n++] = '\r';
		body[n++] = '\n';
	}
	char *msg = malloc(sizeof(head) + n);
	memcpy(msg, head, sizeof(head) - 1);
	memcpy(msg + sizeof(head) - 1, body, n);

	struct buf out;
	buf_init(&out, 1 << 20);
	cr_assert_eq(mime_downgrade(msg, sizeof(head) - 1 + n, &out, NULL), 0);
	const char *o = buf_data(&out);
	size_t olen = buf_len(&out);
	cr_assert(!mime_has_8bit(o, olen), "output has 8-bit bytes");
	const char *sep = strstr(o, "\r\n\r\n");
	cr_assert(sep != NULL);
	const char *ob = sep + 4;
	size_t oblen = olen - (size_t)(ob - o);

	/* No line over 76 characters, no trailing blank before a line end. */
	for (size_t at = 0; at < oblen;) {
		const char *nl = memchr(ob + at, '\n', oblen - at);
		cr_assert(nl != NULL && nl > ob + at && nl[-1] == '\r', "line not CRLF at %zu", at);
		size_t len = (size_t)(nl - (ob + at)) - 1;
		cr_expect(len <= 76, "line of %zu characters", len);
		if (len > 0)
			cr_expect(ob[at + len - 1] != ' ' && ob[at + len - 1] != '\t', "trailing blank");
		at += len + 2;
	}
	char *dec = malloc(oblen + 1);
	size_t dlen = qp_decode(ob, oblen, dec);
	cr_expect(dlen == n && memcmp(dec, body, n) == 0, "round trip differs (%zu vs %zu)", dlen, n);
	free(dec);
	free(msg);
	buf_free(&out);
}

Test(mime_downgrade, nesting_cap)
{
	char msg[8192];
	size_t n = 0;

	for (int d = 0; d <= MIME_DOWNGRADE_MAX_DEPTH; d++)
		n += (size_t)snprintf(msg + n, sizeof(msg) - n,
				      "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", d, d);
	n += (size_t)snprintf(msg + n, sizeof(msg) - n, "\r\n\xe9\r\n");
	struct buf out;
	const char *why;
	buf_init(&out, 1 << 20);
	cr_expect_eq(mime_downgrade(msg, n, &out, &why), MIME_DOWNGRADE_STRUCTURE);
	buf_free(&out);
}

Test(mime_downgrade, output_cap)
{
	static const char msg[] = "Subject: x\r\n\r\n\xe9\xe9\xe9\xe9\xe9\xe9\xe9\xe9\r\n";
	struct buf out;
	const char *why;
	buf_init(&out, 20);
	cr_expect_eq(mime_downgrade(msg, sizeof(msg) - 1, &out, &why), MIME_DOWNGRADE_NOSPACE);
	cr_expect(why != NULL && why[0] != '\0');
	buf_free(&out);
}

Test(mime_downgrade, has_8bit)
{
	cr_expect(!mime_has_8bit("abc\r\n", 5));
	cr_expect(mime_has_8bit("ab\x80", 3));
	cr_expect(!mime_has_8bit("", 0));
}
