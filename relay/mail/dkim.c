/*
 * dkim - canonicalization, header selection and the DKIM-Signature field;
 * see dkim.h.
 *
 * Only relaxed/relaxed is implemented: it is what we sign with (simple
 * breaks on any re-folding relay in between) and a signer needs no other.
 * The body canonicalizer is a small state machine fed in any cuts, so a
 * large body streams into the hash without a canonical copy; runs of text
 * go to the sink whole, not octet by octet.
 */
#include "dkim.h"

#include <errno.h>
#include <mbedtls/base64.h>
#include <mbedtls/sha256.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "xalloc.h"

/* Where the signature field is folded: a line of the field stays under
 * about this many octets (RFC 5322's 78 is a SHOULD). */
#define DKIM_FOLD_AT 72

const char *dkim_algorithm_name(enum dkim_algorithm alg)
{
	switch (alg) {
	case DKIM_RSA_SHA256:
		return "rsa-sha256";
	case DKIM_ED25519_SHA256:
		return "ed25519-sha256";
	default:
		return "?";
	}
}

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

void dkim_body_canon_init(struct dkim_body_canon *c, dkim_sink_fn *out, void *ctx)
{
	memset(c, 0, sizeof(*c));
	c->out = out;
	c->ctx = ctx;
}

/* body_before_text - text follows: the line ends held back were not
 * trailing after all, and a whitespace run before it becomes one SP. */
static void body_before_text(struct dkim_body_canon *c)
{
	static const char crlfs[] = "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n";

	while (c->pending_lines > 0) {
		size_t n = c->pending_lines < 8 ? c->pending_lines : 8;
		c->out(c->ctx, crlfs, 2 * n);
		c->pending_lines -= n;
	}
	if (c->pending_space) {
		c->out(c->ctx, " ", 1);
		c->pending_space = false;
	}
	c->emitted = true;
}

void dkim_body_canon_feed(struct dkim_body_canon *c, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (c->pending_cr) {
			c->pending_cr = false;
			if (p[i] == '\n') {
				/* End of line: its trailing whitespace goes. */
				c->pending_space = false;
				c->pending_lines++;
				i++;
				continue;
			}
			body_before_text(c);   /* a CR alone is text */
			c->out(c->ctx, "\r", 1);
		}
		if (is_wsp(p[i])) {
			c->pending_space = true;
			i++;
			continue;
		}
		if (p[i] == '\r') {
			c->pending_cr = true;
			i++;
			continue;
		}
		size_t j = i;
		while (j < n && !is_wsp(p[j]) && p[j] != '\r')
			j++;
		body_before_text(c);
		c->out(c->ctx, p + i, j - i);
		i = j;
	}
}

void dkim_body_canon_finish(struct dkim_body_canon *c)
{
	if (c->pending_cr) {
		body_before_text(c);
		c->out(c->ctx, "\r", 1);
		c->pending_cr = false;
	}
	/* The last line's whitespace is trailing; a non-empty body ends with
	 * one CRLF whether it had one or not (RFC 6376 errata 1384). */
	if (c->emitted)
		c->out(c->ctx, "\r\n", 2);
	c->pending_lines = 0;
	c->pending_space = false;
	c->emitted = false;
}

/* name_length - the field's name without whitespace before the colon. */
static size_t name_length(const struct dkim_field *f)
{
	size_t n = f->name_len;

	while (n > 0 && is_wsp(f->field[n - 1]))
		n--;
	return n;
}

int dkim_header_canon(struct buf *out, const char *field, size_t len)
{
	const char *colon = memchr(field, ':', len);
	size_t name_end = colon != NULL ? (size_t)(colon - field) : len;
	if (buf_reserve(out, len + 3) < 0)
		return -ENOBUFS;
	/* Never longer than the field plus ":\r\n", so one reservation holds. */
	char *o = buf_tail(out);
	size_t k = 0;
	for (size_t i = 0; i < name_end; i++) {
		char ch = field[i];
		if (ch == '\r' || ch == '\n')
			continue;
		o[k++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
	}
	/* Whitespace before the colon goes ("B :"), counted after the line
	 * ends are dropped so that the result is a fixed point. */
	while (k > 0 && is_wsp(o[k - 1]))
		k--;
	o[k++] = ':';
	bool space = false, text = false;
	for (size_t i = colon != NULL ? (size_t)(colon - field) + 1 : len; i < len; i++) {
		char ch = field[i];
		if (ch == '\r' || ch == '\n')
			continue;           /* unfolding */
		if (is_wsp(ch)) {
			space = true;
			continue;
		}
		if (space && text)
			o[k++] = ' ';
		space = false;
		text = true;
		o[k++] = ch;
	}
	o[k++] = '\r';
	o[k++] = '\n';
	buf_produce(out, k);
	return 0;
}

void dkim_header_parse(const char *msg, size_t len, struct dkim_header *h)
{
	size_t cap = 0, pos = 0;

	memset(h, 0, sizeof(*h));
	h->body_offset = len;
	while (pos < len) {
		if (msg[pos] == '\n' || (msg[pos] == '\r' && pos + 1 < len && msg[pos + 1] == '\n')) {
			h->body_offset = pos + (msg[pos] == '\n' ? 1 : 2);
			return;
		}
		size_t start = pos;
		const char *nl = memchr(msg + pos, '\n', len - pos);
		pos = nl != NULL ? (size_t)(nl - msg) + 1 : len;
		const char *colon = memchr(msg + start, ':', pos - start);
		while (pos < len && is_wsp(msg[pos])) {
			nl = memchr(msg + pos, '\n', len - pos);
			pos = nl != NULL ? (size_t)(nl - msg) + 1 : len;
		}
		if (h->count == cap) {
			cap = cap == 0 ? 32 : 2 * cap;
			h->fields = xreallocarray(h->fields, cap, sizeof(*h->fields));
		}
		h->fields[h->count++] = (struct dkim_field){
			.field = msg + start,
			.len = pos - start,
			.name_len = colon != NULL ? (size_t)(colon - (msg + start)) : 0,
		};
	}
}

void dkim_header_free(struct dkim_header *h)
{
	free(h->fields);
	memset(h, 0, sizeof(*h));
}

bool dkim_field_is(const struct dkim_field *f, const char *name)
{
	size_t n = name_length(f);

	return n > 0 && strlen(name) == n && strncasecmp(f->field, name, n) == 0;
}

size_t dkim_select(const struct dkim_header *h, const char *const *names, size_t name_count,
		   struct buf *h_tag, const struct dkim_field **picked)
{
	bool *used = xcalloc(h->count + 1, sizeof(bool));
	size_t n = 0;

	for (size_t k = 0; k < name_count; k++) {
		for (size_t i = h->count; i-- > 0;) {
			if (used[i] || !dkim_field_is(&h->fields[i], names[k]))
				continue;
			/* From the bottom up: a verifier pairs the first
			 * name with the last instance (RFC 6376 5.4.2). A
			 * name that does not fit in h_tag is not picked
			 * either, so the two always agree. */
			if (buf_append_printf(h_tag, "%s%s", buf_len(h_tag) ? ":" : "", names[k]) < 0)
				break;
			used[i] = true;
			picked[n++] = &h->fields[i];
		}
		if (strcmp(names[k], "from") == 0)
			(void)buf_append_printf(h_tag, "%s%s", buf_len(h_tag) ? ":" : "", "from");
	}
	free(used);
	return n;
}

/* address_clean - the octets of an address with comments dropped, each
 * quoted string as one 'q' and whitespace gone, up to the end of the
 * first mailbox. */
static size_t address_clean(const char *p, size_t len, char *out, size_t size)
{
	size_t k = 0;
	int depth = 0;
	bool quoted = false;

	for (size_t i = 0; i < len && k + 1 < size; i++) {
		char ch = p[i];
		if ((quoted || depth > 0) && ch == '\\') {
			i++;
			continue;
		}
		if (quoted) {
			if (ch == '"')
				quoted = false;
			continue;
		}
		if (depth > 0) {
			depth += ch == '(' ? 1 : ch == ')' ? -1 : 0;
			continue;
		}
		if (ch == '(') {
			depth = 1;
		} else if (ch == '"') {
			quoted = true;
			out[k++] = 'q';
		} else if (ch == '>' || ch == ',' || ch == ';') {
			break;
		} else if (!is_wsp(ch) && ch != '\r' && ch != '\n') {
			out[k++] = ch;
		}
	}
	out[k] = '\0';
	return k;
}

/* angle_start - the octet after the first '<' outside quotes and
 * comments, or NULL when the address is a bare addr-spec. */
static const char *angle_start(const char *p, size_t len)
{
	int depth = 0;
	bool quoted = false;

	for (size_t i = 0; i < len; i++) {
		char ch = p[i];
		if ((quoted || depth > 0) && ch == '\\') {
			i++;
		} else if (quoted) {
			quoted = ch != '"';
		} else if (depth > 0) {
			depth += ch == '(' ? 1 : ch == ')' ? -1 : 0;
		} else if (ch == '"') {
			quoted = true;
		} else if (ch == '(') {
			depth = 1;
		} else if (ch == '<') {
			return p + i + 1;
		}
	}
	return NULL;
}

/* plausible_domain - letters, digits, hyphens and dots, no empty label. */
static bool plausible_domain(const char *d)
{
	size_t n = strlen(d);

	if (n == 0 || d[0] == '.' || d[n - 1] == '.' || strstr(d, "..") != NULL)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = d[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.'))
			return false;
	}
	return true;
}

int dkim_from_domain(const struct dkim_header *h, char *out, size_t size)
{
	const struct dkim_field *from = NULL;
	char clean[1024];

	for (size_t i = 0; i < h->count; i++) {
		if (!dkim_field_is(&h->fields[i], "from"))
			continue;
		if (from != NULL)
			return -EINVAL;
		from = &h->fields[i];
	}
	if (from == NULL)
		return -ENOENT;
	const char *v = from->field + from->name_len + 1;
	size_t vlen = from->len - from->name_len - 1;
	const char *angle = angle_start(v, vlen);
	if (angle != NULL) {
		vlen -= (size_t)(angle - v);
		v = angle;
	}
	address_clean(v, vlen, clean, sizeof(clean));
	char *at = strrchr(clean, '@');
	if (at == NULL)
		return -EINVAL;
	char *d = at + 1;
	for (char *q = d; *q; q++)
		if (*q >= 'A' && *q <= 'Z')
			*q = (char)(*q - 'A' + 'a');
	size_t n = strlen(d);
	if (n > 0 && d[n - 1] == '.')
		d[--n] = '\0';
	if (!plausible_domain(d) || n > DKIM_DOMAIN_MAX)
		return -EINVAL;
	if (n + 1 > size)
		return -ENAMETOOLONG;
	memcpy(out, d, n + 1);
	return 0;
}

bool dkim_domain_aligned(const char *from_domain, const char *d)
{
	size_t fn = strlen(from_domain), dn = strlen(d);

	if (fn == dn)
		return strcmp(from_domain, d) == 0;
	return fn > dn && from_domain[fn - dn - 1] == '.' && strcmp(from_domain + fn - dn, d) == 0;
}

static void sha256_sink(void *ctx, const char *p, size_t n)
{
	mbedtls_sha256_update_ret(ctx, (const unsigned char *)p, n);
}

void dkim_body_hash(const char *body, size_t len, uint8_t out[DKIM_HASH_LEN])
{
	mbedtls_sha256_context sha;
	struct dkim_body_canon c;

	mbedtls_sha256_init(&sha);
	mbedtls_sha256_starts_ret(&sha, 0);
	dkim_body_canon_init(&c, sha256_sink, &sha);
	dkim_body_canon_feed(&c, body, len);
	dkim_body_canon_finish(&c);
	mbedtls_sha256_finish_ret(&sha, out);
	mbedtls_sha256_free(&sha);
}

/* append_base64 - src in base64, folded: a line break and a tab whenever
 * the current line of b reaches DKIM_FOLD_AT. */
static int append_base64(struct buf *b, const uint8_t *src, size_t n, size_t *line)
{
	char enc[(DKIM_SIGNATURE_MAX + 2) / 3 * 4 + 1];
	size_t elen = 0;

	if (mbedtls_base64_encode((unsigned char *)enc, sizeof(enc), &elen, src, n) != 0)
		return -ENOBUFS;
	for (size_t i = 0; i < elen;) {
		if (*line >= DKIM_FOLD_AT) {
			if (buf_append(b, "\r\n\t", 3) < 0)
				return -ENOBUFS;
			*line = 1;
		}
		size_t take = DKIM_FOLD_AT - *line < elen - i ? DKIM_FOLD_AT - *line : elen - i;
		if (buf_append(b, enc + i, take) < 0)
			return -ENOBUFS;
		i += take;
		*line += take;
	}
	return 0;
}

/* signature_head - the field up to and including "b=", folded. */
static int signature_head(struct buf *f, const struct dkim_sign_params *p, const char *h_tag,
			  const uint8_t bh[DKIM_HASH_LEN])
{
	int rc = buf_append_printf(f, "DKIM-Signature: v=1; a=%s; c=relaxed/relaxed; d=%s; s=%s;\r\n\tt=%lld;",
				   dkim_algorithm_name(p->algorithm), p->domain, p->selector,
				   (long long)p->timestamp);
	if (rc == 0 && p->expire > 0)
		rc = buf_append_printf(f, " x=%lld;", (long long)(p->timestamp + p->expire));
	if (rc == 0)
		rc = buf_append_str(f, " h=");
	/* The h= list folds after a colon (FWS is allowed there). */
	size_t line = 20;
	for (const char *name = h_tag; rc == 0 && *name;) {
		const char *colon = strchr(name, ':');
		size_t n = colon != NULL ? (size_t)(colon - name) + 1 : strlen(name);
		if (line + n > DKIM_FOLD_AT) {
			rc = buf_append(f, "\r\n\t", 3);
			line = 1;
		}
		if (rc == 0)
			rc = buf_append(f, name, n);
		line += n;
		name += n;
	}
	if (rc == 0)
		rc = buf_append_str(f, ";\r\n\tbh=");
	line = 4;
	if (rc == 0)
		rc = append_base64(f, bh, DKIM_HASH_LEN, &line);
	if (rc == 0)
		rc = buf_append_str(f, ";\r\n\tb=");
	return rc < 0 ? -ENOBUFS : 0;
}

int dkim_sign(const struct dkim_header *h, const char *const *names, size_t name_count,
	      const uint8_t bh[DKIM_HASH_LEN], const struct dkim_sign_params *p, struct buf *out)
{
	const struct dkim_field **picked = xcalloc(h->count + 1, sizeof(*picked));
	struct buf h_tag, field, canon;
	uint8_t digest[DKIM_HASH_LEN], sig[DKIM_SIGNATURE_MAX];
	size_t sig_len = sizeof(sig);
	mbedtls_sha256_context sha;
	int rc;

	buf_init(&h_tag, 64 * 1024);
	buf_init(&field, 128 * 1024);
	buf_init(&canon, 1 << 30);
	size_t n = dkim_select(h, names, name_count, &h_tag, picked);
	rc = buf_append(&h_tag, "", 1);    /* a C string */
	if (rc == 0)
		rc = signature_head(&field, p, buf_data(&h_tag), bh);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = dkim_header_canon(&canon, picked[i]->field, picked[i]->len);
	if (rc == 0)
		rc = dkim_header_canon(&canon, buf_data(&field), buf_len(&field));
	if (rc == 0) {
		/* The signature field is hashed without its CRLF (RFC 6376
		 * 3.7), and with an empty b= value, as it stands now. */
		buf_truncate(&canon, buf_len(&canon) - 2);
		mbedtls_sha256_init(&sha);
		mbedtls_sha256_starts_ret(&sha, 0);
		mbedtls_sha256_update_ret(&sha, (const unsigned char *)buf_data(&canon), buf_len(&canon));
		mbedtls_sha256_finish_ret(&sha, digest);
		mbedtls_sha256_free(&sha);
		rc = p->sign(p->sign_ctx, digest, sig, &sig_len);
	}
	if (rc == 0) {
		const char *last = buf_data(&field) + buf_len(&field);
		size_t line = 0;
		while (line < buf_len(&field) && last[-(ptrdiff_t)line - 1] != '\n')
			line++;
		rc = append_base64(&field, sig, sig_len, &line);
		if (rc == 0)
			rc = buf_append(&field, "\r\n", 2);
		if (rc == 0)
			rc = buf_append(out, buf_data(&field), buf_len(&field));
	}
	buf_free(&h_tag);
	buf_free(&field);
	buf_free(&canon);
	free(picked);
	return rc;
}
