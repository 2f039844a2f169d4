/* test_dkim - relaxed canonicalization (RFC 6376 3.4.5 and edge cases),
 * header parsing and selection, the From domain, the signature field. */
#include <criterion/criterion.h>
#include <errno.h>
#include <mbedtls/base64.h>
#include <mbedtls/sha256.h>
#include <stdio.h>
#include <string.h>

#include "dkim.h"

static void buf_sink(void *ctx, const char *p, size_t n)
{
	cr_assert_eq(buf_append(ctx, p, n), 0);
}

/* body_canon - the relaxed body of in, fed in pieces of step octets
 * (0: all at once). */
static void body_canon(const char *in, size_t len, size_t step, struct buf *out)
{
	struct dkim_body_canon c;

	buf_init(out, 1 << 20);
	dkim_body_canon_init(&c, buf_sink, out);
	if (step == 0)
		step = len > 0 ? len : 1;
	for (size_t i = 0; i < len; i += step)
		dkim_body_canon_feed(&c, in + i, len - i < step ? len - i : step);
	dkim_body_canon_finish(&c);
}

struct body_case {
	const char *name, *in, *want;
};

static const struct body_case body_cases[] = {
	/* RFC 6376 3.4.5, the relaxed body of its example. */
	{ "rfc 6376 3.4.5", " C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n" },
	{ "empty body", "", "" },
	{ "only empty lines", "\r\n\r\n\r\n", "" },
	{ "only whitespace lines", "  \r\n\t\r\n", "" },
	{ "no final CRLF", "abc", "abc\r\n" },
	{ "trailing whitespace, no CRLF", "abc \t ", "abc\r\n" },
	{ "one line", "Hello.\r\n", "Hello.\r\n" },
	{ "inner empty lines kept", "a\r\n\r\n\r\nb\r\n", "a\r\n\r\n\r\nb\r\n" },
	{ "whitespace line inside", "a\r\n \t \r\nb\r\n", "a\r\n\r\nb\r\n" },
	{ "leading whitespace kept as one SP", "\t\t a\r\n", " a\r\n" },
	{ "trailing empty lines go", "a\r\n\r\n \r\n\r\n", "a\r\n" },
	{ "bare CR is text", "a\rb\r\n", "a\rb\r\n" },
	{ "CR before CRLF", "a\r\r\n", "a\r\r\n" },
	{ "space before bare CR", "a \rb\r\n", "a \rb\r\n" },
	{ "bare LF is text", "a \nb\r\n", "a \nb\r\n" },
	{ "CR at the end", "a\r", "a\r\r\n" },
	{ "8-bit octets", "caf\xc3\xa9  \xe2\x82\xac\r\n", "caf\xc3\xa9 \xe2\x82\xac\r\n" },
	{ "dot line", ".\r\n", ".\r\n" },
	{ "many trailing lines", "x\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n", "x\r\n" },
	{ "many inner lines", "x\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\ny",
	  "x\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\ny\r\n" },
};

Test(dkim_body, table_in_every_cut)
{
	for (size_t i = 0; i < sizeof(body_cases) / sizeof(body_cases[0]); i++) {
		const struct body_case *t = &body_cases[i];
		size_t len = strlen(t->in);
		for (size_t step = 0; step <= len + 1; step++) {
			struct buf out;
			body_canon(t->in, len, step, &out);
			cr_expect(buf_len(&out) == strlen(t->want) &&
				  memcmp(buf_data(&out), t->want, buf_len(&out)) == 0,
				  "%s (step %zu): got \"%.*s\" (%zu), want \"%s\"", t->name, step,
				  (int)buf_len(&out), buf_data(&out), buf_len(&out), t->want);
			buf_free(&out);
		}
	}
}

static void b64(const uint8_t *p, size_t n, char *out, size_t size)
{
	size_t olen;

	cr_assert_eq(mbedtls_base64_encode((unsigned char *)out, size, &olen, p, n), 0);
}

Test(dkim_body, hash_of_empty_and_of_text)
{
	uint8_t h[DKIM_HASH_LEN];
	char text[64];

	/* The relaxed hash of an empty body is SHA-256 of nothing. */
	dkim_body_hash("", 0, h);
	b64(h, sizeof(h), text, sizeof(text));
	cr_expect_str_eq(text, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
	dkim_body_hash("\r\n\r\n", 4, h);
	b64(h, sizeof(h), text, sizeof(text));
	cr_expect_str_eq(text, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
	/* "Hi  there \r\n\r\n" is "Hi there\r\n": the same hash. */
	uint8_t a[DKIM_HASH_LEN], b[DKIM_HASH_LEN];
	dkim_body_hash("Hi  there \r\n\r\n", 14, a);
	mbedtls_sha256_ret((const unsigned char *)"Hi there\r\n", 10, b, 0);
	cr_expect(memcmp(a, b, sizeof(a)) == 0, "relaxed hash is not SHA-256 of the canonical body");
}

struct header_case {
	const char *name, *in, *want;
};

static const struct header_case header_cases[] = {
	/* RFC 6376 3.4.5, the relaxed headers of its example. */
	{ "rfc A", "A: X\r\n", "a:X\r\n" },
	{ "rfc B", "B : Y\t\r\n\tZ  \r\n", "b:Y Z\r\n" },
	{ "no CRLF", "Subject: hi", "subject:hi\r\n" },
	{ "empty value", "X-Empty:\r\n", "x-empty:\r\n" },
	{ "whitespace value", "X-Empty: \t \r\n", "x-empty:\r\n" },
	{ "long fold", "Subject: a\r\n b\r\n\t\tc \r\n d\r\n", "subject:a b c d\r\n" },
	{ "value case kept", "From: Jane DOE <Jane@Example.COM>\r\n", "from:Jane DOE <Jane@Example.COM>\r\n" },
	{ "8-bit value", "Subject: caf\xc3\xa9\r\n", "subject:caf\xc3\xa9\r\n" },
	{ "colon in value", "To: a:b;\r\n", "to:a:b;\r\n" },
};

Test(dkim_header, canonicalization_table)
{
	for (size_t i = 0; i < sizeof(header_cases) / sizeof(header_cases[0]); i++) {
		const struct header_case *t = &header_cases[i];
		struct buf out;
		buf_init(&out, 4096);
		cr_assert_eq(dkim_header_canon(&out, t->in, strlen(t->in)), 0);
		cr_expect(buf_len(&out) == strlen(t->want) &&
			  memcmp(buf_data(&out), t->want, buf_len(&out)) == 0,
			  "%s: got \"%.*s\", want \"%s\"", t->name, (int)buf_len(&out), buf_data(&out), t->want);
		buf_free(&out);
	}
}

Test(dkim_header, canonicalization_respects_the_cap)
{
	struct buf out;

	buf_init(&out, 8);
	cr_expect_eq(dkim_header_canon(&out, "Subject: far too long\r\n", 23), -ENOBUFS);
	cr_expect_eq(buf_len(&out), 0);
	buf_free(&out);
}

static const char rfc_message[] = "A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n";

Test(dkim_header, parse_rfc_example)
{
	struct dkim_header h;

	dkim_header_parse(rfc_message, strlen(rfc_message), &h);
	cr_assert_eq(h.count, 2);
	cr_expect_eq(h.fields[0].len, 6);
	cr_expect_eq(h.fields[1].len, strlen("B : Y\t\r\n\tZ  \r\n"));
	cr_expect(dkim_field_is(&h.fields[1], "b"), "\"B :\" is named b");
	cr_expect_str_eq(rfc_message + h.body_offset, " C \r\nD \t E\r\n\r\n\r\n");
	dkim_header_free(&h);
}

Test(dkim_header, parse_edges)
{
	struct dkim_header h;
	const char *no_body = "Subject: x\r\nTo: y\r\n";
	const char *bare_lf = "Subject: x\nTo: y\n\nbody\n";
	const char *garbage = "not a header\r\nX: 1\r\n\r\n";

	dkim_header_parse(no_body, strlen(no_body), &h);
	cr_expect_eq(h.count, 2);
	cr_expect_eq(h.body_offset, strlen(no_body));
	dkim_header_free(&h);
	dkim_header_parse(bare_lf, strlen(bare_lf), &h);
	cr_expect_eq(h.count, 2);
	cr_expect_str_eq(bare_lf + h.body_offset, "body\n");
	dkim_header_free(&h);
	dkim_header_parse(garbage, strlen(garbage), &h);
	cr_assert_eq(h.count, 2);
	cr_expect_eq(h.fields[0].name_len, 0);
	cr_expect(!dkim_field_is(&h.fields[0], "not a header"));
	dkim_header_free(&h);
	dkim_header_parse("", 0, &h);
	cr_expect_eq(h.count, 0);
	cr_expect_eq(h.body_offset, 0);
	dkim_header_free(&h);
}

static const char *const default_names[] = { "from", "reply-to", "subject", "date", "to", "cc", "received" };

Test(dkim_select, bottom_up_and_from_oversigned)
{
	const char *msg = "Received: one\r\nFrom: <a@example.com>\r\nReceived: two\r\nX-Other: z\r\n"
			  "subject: s\r\nTo: t\r\n\r\nbody\r\n";
	struct dkim_header h;
	const struct dkim_field *picked[16];
	struct buf tag;

	dkim_header_parse(msg, strlen(msg), &h);
	buf_init(&tag, 4096);
	size_t n = dkim_select(&h, default_names, 7, &tag, picked);
	buf_append(&tag, "", 1);
	cr_expect_str_eq(buf_data(&tag), "from:from:subject:to:received:received");
	cr_assert_eq(n, 5);
	cr_expect(strncmp(picked[0]->field, "From:", 5) == 0);
	cr_expect(strncmp(picked[1]->field, "subject:", 8) == 0);
	cr_expect(strncmp(picked[2]->field, "To:", 3) == 0);
	cr_expect(strncmp(picked[3]->field, "Received: two", 13) == 0, "last instance first");
	cr_expect(strncmp(picked[4]->field, "Received: one", 13) == 0);
	buf_free(&tag);
	dkim_header_free(&h);
}

Test(dkim_select, absent_from_still_oversigned)
{
	const char *msg = "Subject: s\r\n\r\n";
	struct dkim_header h;
	const struct dkim_field *picked[4];
	struct buf tag;

	dkim_header_parse(msg, strlen(msg), &h);
	buf_init(&tag, 4096);
	cr_expect_eq(dkim_select(&h, default_names, 3, &tag, picked), 1);
	buf_append(&tag, "", 1);
	cr_expect_str_eq(buf_data(&tag), "from:subject");
	buf_free(&tag);
	dkim_header_free(&h);
}

struct from_case {
	const char *header;
	int want_rc;
	const char *want;
};

static const struct from_case from_cases[] = {
	{ "From: <a@Example.COM>\r\n", 0, "example.com" },
	{ "From: a@example.com\r\n", 0, "example.com" },
	{ "From: Jane <jane@mail.example.org>\r\n", 0, "mail.example.org" },
	{ "From: \"Doe, <Jane> @ fake.test\" <jane@real.test>\r\n", 0, "real.test" },
	{ "From: (comment <x@c.test>) jane@real.test\r\n", 0, "real.test" },
	{ "From: jane@real.test (Jane <x@c.test>)\r\n", 0, "real.test" },
	{ "From: Jane\r\n <jane@folded.test>\r\n", 0, "folded.test" },
	{ "From: \"a@b\"@quoted.test\r\n", 0, "quoted.test" },
	{ "From: <jane@trailing.test.>\r\n", 0, "trailing.test" },
	{ "From: a@x.test, b@y.test\r\n", 0, "x.test" },
	{ "From: jane\r\n", -EINVAL, NULL },
	{ "From: <jane@[192.0.2.1]>\r\n", -EINVAL, NULL },
	{ "From: <jane@bad..test>\r\n", -EINVAL, NULL },
	{ "From: <jane@>\r\n", -EINVAL, NULL },
	{ "From: <a@x.test>\r\nFrom: <b@y.test>\r\n", -EINVAL, NULL },
	{ "Sender: <a@x.test>\r\n", -ENOENT, NULL },
};

Test(dkim_from, domain_table)
{
	for (size_t i = 0; i < sizeof(from_cases) / sizeof(from_cases[0]); i++) {
		const struct from_case *t = &from_cases[i];
		struct dkim_header h;
		char got[DKIM_DOMAIN_MAX + 1] = "";
		dkim_header_parse(t->header, strlen(t->header), &h);
		int rc = dkim_from_domain(&h, got, sizeof(got));
		cr_expect_eq(rc, t->want_rc, "%s: got rc %d, want %d", t->header, rc, t->want_rc);
		if (t->want != NULL)
			cr_expect_str_eq(got, t->want, "%s: got %s, want %s", t->header, got, t->want);
		dkim_header_free(&h);
	}
}

Test(dkim_from, alignment)
{
	cr_expect(dkim_domain_aligned("example.com", "example.com"));
	cr_expect(dkim_domain_aligned("mail.example.com", "example.com"));
	cr_expect(!dkim_domain_aligned("example.com", "mail.example.com"));
	cr_expect(!dkim_domain_aligned("badexample.com", "example.com"));
	cr_expect(!dkim_domain_aligned("example.com", "com.example.com"));
}

/* A signer that "signs" with the digest itself and keeps it. */
struct fake_signer {
	uint8_t digest[DKIM_HASH_LEN];
	int calls;
	int fail;
};

static int fake_sign(void *ctx, const uint8_t digest[DKIM_HASH_LEN], uint8_t *sig, size_t *sig_len)
{
	struct fake_signer *f = ctx;

	f->calls++;
	if (f->fail)
		return f->fail;
	memcpy(f->digest, digest, DKIM_HASH_LEN);
	memcpy(sig, digest, DKIM_HASH_LEN);
	*sig_len = DKIM_HASH_LEN;
	return 0;
}

/* unfold - the field with every CRLF and the tab after it removed. */
static void unfold(const char *in, size_t len, char *out)
{
	size_t k = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\r' && i + 2 < len && in[i + 1] == '\n' && in[i + 2] == '\t') {
			i += 2;
			continue;
		}
		out[k++] = in[i];
	}
	out[k] = '\0';
}

Test(dkim_sign, digest_covers_the_canonical_headers_and_the_field)
{
	const char *msg = "From: Jane <jane@example.com>\r\nSubject:  Hi\r\n   there\r\nX-Skip: 1\r\n\r\nBody\r\n";
	const char *const names[] = { "from", "subject" };
	struct dkim_header h;
	uint8_t bh[DKIM_HASH_LEN], want[DKIM_HASH_LEN];
	char bh64[64], got_text[4096], expect[4096], sig64[64];
	struct fake_signer f = { 0 };
	struct buf out;

	dkim_header_parse(msg, strlen(msg), &h);
	dkim_body_hash(msg + h.body_offset, strlen(msg) - h.body_offset, bh);
	b64(bh, sizeof(bh), bh64, sizeof(bh64));
	struct dkim_sign_params p = { "example.com", "sel", DKIM_RSA_SHA256, 1700000000, 3600, fake_sign, &f };
	buf_init(&out, 64 * 1024);
	cr_assert_eq(dkim_sign(&h, names, 2, bh, &p, &out), 0);
	cr_assert_eq(f.calls, 1);

	snprintf(expect, sizeof(expect),
		 "from:Jane <jane@example.com>\r\nsubject:Hi there\r\n"
		 "dkim-signature:v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=sel; "
		 "t=1700000000; x=1700003600; h=from:from:subject; bh=%s; b=", bh64);
	mbedtls_sha256_ret((const unsigned char *)expect, strlen(expect), want, 0);
	cr_expect(memcmp(f.digest, want, sizeof(want)) == 0, "digest is not over the canonical input:\n%s", expect);

	b64(f.digest, sizeof(f.digest), sig64, sizeof(sig64));
	unfold(buf_data(&out), buf_len(&out), got_text);
	snprintf(expect, sizeof(expect),
		 "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=sel;"
		 "t=1700000000; x=1700003600; h=from:from:subject;bh=%s;b=%s\r\n", bh64, sig64);
	cr_expect_str_eq(got_text, expect);
	/* Every line of the field is short, and continuation lines start with a tab. */
	const char *line = buf_data(&out);
	for (const char *nl; (nl = memchr(line, '\n', buf_len(&out) - (size_t)(line - buf_data(&out)))) != NULL;
	     line = nl + 1) {
		cr_expect_lt(nl - line, 80);
		if (nl + 1 < buf_data(&out) + buf_len(&out))
			cr_expect_eq(nl[1], '\t');
	}
	buf_free(&out);
	dkim_header_free(&h);
}

Test(dkim_sign, long_h_list_folds_and_ed25519_name)
{
	const char *msg = "From: a@example.com\r\nTo: b@example.net\r\n\r\n";
	const char *const names[] = { "from", "reply-to", "subject", "date", "to", "cc", "message-id",
				      "mime-version", "content-type", "content-transfer-encoding",
				      "in-reply-to", "references", "list-id", "list-unsubscribe",
				      "list-unsubscribe-post", "feedback-id" };
	struct dkim_header h;
	uint8_t bh[DKIM_HASH_LEN] = { 0 };
	struct fake_signer f = { 0 };
	struct buf out;
	char text[4096];

	dkim_header_parse(msg, strlen(msg), &h);
	struct dkim_sign_params p = { "example.com", "e", DKIM_ED25519_SHA256, 1, 0, fake_sign, &f };
	buf_init(&out, 64 * 1024);
	cr_assert_eq(dkim_sign(&h, names, sizeof(names) / sizeof(names[0]), bh, &p, &out), 0);
	unfold(buf_data(&out), buf_len(&out), text);
	cr_expect(strstr(text, "a=ed25519-sha256;") != NULL, "%s", text);
	cr_expect(strstr(text, "h=from:from:to;") != NULL, "%s", text);
	cr_expect(strstr(text, "x=") == NULL, "no x= without an expiry: %s", text);
	buf_free(&out);
	dkim_header_free(&h);
}

Test(dkim_sign, signer_failure_leaves_out_unchanged)
{
	const char *msg = "From: a@example.com\r\n\r\n";
	const char *const names[] = { "from" };
	struct dkim_header h;
	uint8_t bh[DKIM_HASH_LEN] = { 0 };
	struct fake_signer f = { .fail = -EIO };
	struct buf out;

	dkim_header_parse(msg, strlen(msg), &h);
	struct dkim_sign_params p = { "example.com", "s", DKIM_RSA_SHA256, 1, 0, fake_sign, &f };
	buf_init(&out, 64 * 1024);
	buf_append_str(&out, "keep");
	cr_expect_eq(dkim_sign(&h, names, 1, bh, &p, &out), -EIO);
	cr_expect_eq(buf_len(&out), 4);
	buf_free(&out);
	dkim_header_free(&h);
}

Test(dkim_select, h_tag_cap_keeps_tag_and_fields_in_step)
{
	const char *msg = "To: a\r\nTo: b\r\nTo: c\r\nTo: d\r\n\r\n";
	const char *const names[] = { "to" };
	struct dkim_header h;
	const struct dkim_field *picked[8];
	struct buf tag;

	dkim_header_parse(msg, strlen(msg), &h);
	buf_init(&tag, 8);            /* room for "to:to:to" (8), not a fourth */
	size_t n = dkim_select(&h, names, 1, &tag, picked);
	cr_expect_eq(n, 3);
	cr_expect(buf_len(&tag) == 8 && memcmp(buf_data(&tag), "to:to:to", 8) == 0, "got %.*s",
		  (int)buf_len(&tag), buf_data(&tag));
	buf_free(&tag);
	dkim_header_free(&h);
}
