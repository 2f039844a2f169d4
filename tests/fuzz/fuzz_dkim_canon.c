/*
 * fuzz_dkim_canon - libFuzzer harness for DKIM's header and body
 * canonicalization, header parsing and selection, the From domain and the
 * signature field (relay/mail/dkim.h).
 *
 *   tools/fuzz build && tools/fuzz run 60 dkim_canon
 *
 * Input layout: byte 0 is the cut size (1..16) for feeding the body in
 * pieces; the rest is a message (header block, empty line, body).
 *
 * Invariants: the body canonicalizer gives the same bytes whole, octet by
 * octet and in cuts, and its output is a fixed point (canonicalizing it
 * again changes nothing), has no tab, no whitespace run, no whitespace
 * before a CRLF, no empty line at the end, and ends in CRLF unless empty;
 * the parsed fields tile the header block; each relaxed header field is a
 * fixed point with a lower-case name; a From domain is a plausible name;
 * a signature over the message is made and is plain folded text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dkim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void sink(void *ctx, const char *p, size_t n)
{
	if (buf_append(ctx, p, n) < 0)
		abort();
}

static void body_canon(const char *p, size_t n, size_t cut, struct buf *out)
{
	struct dkim_body_canon c;

	buf_init(out, 4 * n + 64);
	dkim_body_canon_init(&c, sink, out);
	for (size_t i = 0; i < n; i += cut)
		dkim_body_canon_feed(&c, p + i, n - i < cut ? n - i : cut);
	dkim_body_canon_finish(&c);
}

static bool same(const struct buf *a, const struct buf *b)
{
	return buf_len(a) == buf_len(b) && memcmp(buf_data(a), buf_data(b), buf_len(a)) == 0;
}

static void check_body(const char *body, size_t n, size_t cut)
{
	struct buf whole, bytes, cuts, again;

	body_canon(body, n, n > 0 ? n : 1, &whole);
	body_canon(body, n, 1, &bytes);
	body_canon(body, n, cut, &cuts);
	if (!same(&whole, &bytes) || !same(&whole, &cuts))
		abort();
	const char *o = buf_data(&whole);
	size_t len = buf_len(&whole);
	if (len > 0 && (len < 2 || o[len - 2] != '\r' || o[len - 1] != '\n'))
		abort();
	if (len >= 4 && memcmp(o + len - 4, "\r\n\r\n", 4) == 0)
		abort();
	for (size_t i = 0; i < len; i++) {
		/* A space before a bare CR is text; before a CRLF it is not. */
		if (o[i] == '\t' || (o[i] == ' ' && i + 1 < len && o[i + 1] == ' ') ||
		    (o[i] == ' ' && i + 2 < len && o[i + 1] == '\r' && o[i + 2] == '\n'))
			abort();
	}
	body_canon(o, len, len > 0 ? len : 1, &again);
	if (!same(&whole, &again))
		abort();
	buf_free(&whole);
	buf_free(&bytes);
	buf_free(&cuts);
	buf_free(&again);
}

static void check_field(const struct dkim_field *f)
{
	struct buf a, b;

	/* The relaxed form is at most one octet longer (a colon added to a
	 * line without one); the canonicalizer reserves its input + 3. */
	buf_init(&a, f->len + 3);
	buf_init(&b, f->len + 8);
	if (dkim_header_canon(&a, f->field, f->len) < 0)
		abort();
	const char *o = buf_data(&a);
	size_t len = buf_len(&a);
	if (len < 3 || o[len - 2] != '\r' || o[len - 1] != '\n')
		abort();
	const char *colon = memchr(o, ':', len);
	if (colon == NULL)
		abort();
	for (const char *p = o; p < o + len - 2; p++) {
		if (*p == '\r' || *p == '\n' || (p > colon && *p == '\t') ||
		    (p < colon && *p >= 'A' && *p <= 'Z'))
			abort();
	}
	/* A fixed point: the relaxed form is already relaxed. */
	if (dkim_header_canon(&b, o, len) < 0 || !same(&a, &b))
		abort();
	buf_free(&a);
	buf_free(&b);
}

static int fake_sign(void *ctx, const uint8_t digest[DKIM_HASH_LEN], uint8_t *sig, size_t *sig_len)
{
	(void)ctx;
	memcpy(sig, digest, DKIM_HASH_LEN);
	*sig_len = DKIM_HASH_LEN;
	return 0;
}

static void check_header(const char *msg, size_t n)
{
	static const char *const names[] = { "from", "subject", "to", "cc", "date", "message-id" };
	struct dkim_header h;
	char domain[DKIM_DOMAIN_MAX + 1];

	dkim_header_parse(msg, n, &h);
	if (h.body_offset > n)
		abort();
	size_t at = 0;
	for (size_t i = 0; i < h.count; i++) {
		const struct dkim_field *f = &h.fields[i];
		if (f->field != msg + at || f->len == 0 || f->name_len >= f->len)
			abort();
		at += f->len;
		check_field(f);
	}
	if (at > h.body_offset)
		abort();
	if (dkim_from_domain(&h, domain, sizeof(domain)) == 0) {
		if (domain[0] == '\0' || !dkim_domain_aligned(domain, domain))
			abort();
		for (const char *p = domain; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
				abort();
	}
	const struct dkim_field **picked = calloc(h.count + 1, sizeof(*picked));
	struct buf tag, out;
	buf_init(&tag, 1 << 20);
	buf_init(&out, 1 << 22);
	if (dkim_select(&h, names, 6, &tag, picked) > h.count)
		abort();
	uint8_t bh[DKIM_HASH_LEN];
	dkim_body_hash(msg + h.body_offset, n - h.body_offset, bh);
	struct dkim_sign_params p = { "example.com", "s", DKIM_RSA_SHA256, 1, 60, fake_sign, NULL };
	if (dkim_sign(&h, names, 6, bh, &p, &out) != 0)
		abort();
	const char *o = buf_data(&out);
	for (size_t i = 0; i < buf_len(&out); i++)
		if ((o[i] == '\n') != (i > 0 && o[i - 1] == '\r') ||
		    (o[i] == '\r' && (i + 1 == buf_len(&out) || o[i + 1] != '\n')))
			abort();
	buf_free(&tag);
	buf_free(&out);
	free(picked);
	dkim_header_free(&h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t cut = (data[0] & 15) + 1;
	const char *msg = (const char *)data + 1;
	size_t n = size - 1;

	check_body(msg, n, cut);
	check_header(msg, n);
	return 0;
}
