/*
 * mime_downgrade - 8bit MIME parts to quoted-printable (contract in
 * mime_downgrade.h).
 *
 * An entity is a span of bytes: a header block, an empty line, a body. The
 * walk goes down multipart bodies only where 8-bit bytes are: a span
 * without any is copied byte for byte, so every part we need not touch
 * stays exactly as the sender wrote it. (A DKIM signature's body hash
 * covers the whole body, so any conversion breaks it: docs/CONFIGURATION.md.)
 */
#include "mime_downgrade.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct span {
	const char *p;
	size_t len;
};

enum cte {
	CTE_NONE, CTE_7BIT, CTE_8BIT, CTE_BINARY, CTE_QP, CTE_BASE64, CTE_OTHER,
};

/* What the header block of one entity says. */
struct entity_head {
	struct span head;	/* header fields, without the empty line */
	struct span sep;	/* the empty line ("\r\n" or "\n"), may be empty */
	struct span body;
	char type[80];		/* "type/subtype", lower case; "" when absent */
	char boundary[80];	/* RFC 2046 5.1.1: at most 70 characters */
	enum cte cte;
	bool has_cte, has_mime_version;
};

#define EMIT(out, p, n) do { if (buf_append((out), (p), (n)) < 0) return MIME_DOWNGRADE_NOSPACE; } while (0)
#define EMIT_STR(out, s) EMIT(out, s, strlen(s))

bool mime_has_8bit(const char *p, size_t len)
{
	const unsigned char *u = (const unsigned char *)p;

	for (size_t i = 0; i < len; i++)
		if (u[i] & 0x80)
			return true;
	return false;
}

/* line_len - the length of the line at p, its LF included. */
static size_t line_len(const char *p, size_t avail)
{
	const char *nl = memchr(p, '\n', avail);
	return nl != NULL ? (size_t)(nl - p) + 1 : avail;
}

/* line_is_empty - "\r\n", "\n" (the end of a header block). */
static bool line_is_empty(const char *p, size_t n)
{
	return (n == 1 && p[0] == '\n') || (n == 2 && p[0] == '\r' && p[1] == '\n');
}

/* skip_space - past blanks, folds and (non-nested) comments. */
static const char *skip_space(const char *p, const char *end)
{
	while (p < end) {
		if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
			p++;
		} else if (*p == '(') {
			while (p < end && *p != ')')
				p++;
			if (p < end)
				p++;
		} else {
			break;
		}
	}
	return p;
}

/* is_tspecial - RFC 2045 5.1 tspecials, which end a token. */
static bool is_tspecial(char c)
{
	return strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

/* read_token - a token (or with slash_ok "type/subtype") lower-cased into
 * dst; returns the end of it. */
static const char *read_token(const char *p, const char *end, char *dst, size_t cap,
			      bool slash_ok)
{
	size_t n = 0;

	while (p < end && (unsigned char)*p > ' ' && (unsigned char)*p < 127 &&
	       (!is_tspecial(*p) || (slash_ok && *p == '/'))) {
		if (n + 1 < cap)
			dst[n++] = (char)tolower((unsigned char)*p);
		p++;
	}
	dst[n] = '\0';
	return p;
}

/* read_value - a parameter value, token or quoted-string, as is. */
static const char *read_value(const char *p, const char *end, char *dst, size_t cap)
{
	size_t n = 0;

	if (p < end && *p == '"') {
		for (p++; p < end && *p != '"'; p++) {
			if (*p == '\\' && p + 1 < end)
				p++;
			if (*p == '\r' || *p == '\n')
				continue;
			if (n + 1 < cap)
				dst[n++] = *p;
		}
		if (p < end)
			p++;
	} else {
		while (p < end && (unsigned char)*p > ' ' && (unsigned char)*p < 127 && !is_tspecial(*p)) {
			if (n + 1 < cap)
				dst[n++] = *p;
			p++;
		}
	}
	dst[n] = '\0';
	return p;
}

/* parse_content_type - type/subtype and the boundary parameter. */
static void parse_content_type(struct entity_head *h, const char *p, const char *end)
{
	char name[32], value[sizeof(h->boundary)];

	p = read_token(skip_space(p, end), end, h->type, sizeof(h->type), true);
	while ((p = skip_space(p, end)) < end && *p == ';') {
		p = read_token(skip_space(p + 1, end), end, name, sizeof(name), false);
		p = skip_space(p, end);
		if (p >= end || *p != '=')
			break;
		p = read_value(skip_space(p + 1, end), end, value, sizeof(value));
		if (strcmp(name, "boundary") == 0 && value[0] != '\0' && strlen(value) <= 70)
			memcpy(h->boundary, value, strlen(value) + 1);
	}
}

/* parse_cte - the Content-Transfer-Encoding mechanism. */
static enum cte parse_cte(const char *p, const char *end)
{
	static const struct { const char *name; enum cte cte; } known[] = {
		{ "7bit", CTE_7BIT }, { "8bit", CTE_8BIT }, { "binary", CTE_BINARY },
		{ "quoted-printable", CTE_QP }, { "base64", CTE_BASE64 },
	};
	char mech[32];

	read_token(skip_space(p, end), end, mech, sizeof(mech), false);
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(mech, known[i].name) == 0)
			return known[i].cte;
	return CTE_OTHER;
}

/* field_named - is the field at p (length n) called name? */
static bool field_named(const char *p, size_t n, const char *name)
{
	size_t k = strlen(name);

	if (n <= k || strncasecmp(p, name, k) != 0)
		return false;
	const char *q = p + k;
	while (q < p + n && (*q == ' ' || *q == '\t'))
		q++;
	return q < p + n && *q == ':';
}

/* field_len - the length of the header field at p with its folded lines. */
static size_t field_len(const char *p, size_t avail)
{
	size_t n = line_len(p, avail);

	while (n < avail && (p[n] == ' ' || p[n] == '\t'))
		n += line_len(p + n, avail - n);
	return n;
}

/* entity_parse - split e into header block and body; read the fields
 * that matter here. default_type applies when there is no Content-Type. */
static void entity_parse(struct entity_head *h, struct span e, const char *default_type)
{
	size_t off = 0;

	memset(h, 0, sizeof(*h));
	h->head.p = e.p;
	while (off < e.len) {
		size_t n = line_len(e.p + off, e.len - off);
		if (line_is_empty(e.p + off, n)) {
			h->sep = (struct span){ e.p + off, n };
			break;
		}
		n = field_len(e.p + off, e.len - off);
		const char *f = e.p + off, *colon = memchr(f, ':', n);
		if (colon != NULL && field_named(f, n, "Content-Type"))
			parse_content_type(h, colon + 1, f + n);
		else if (colon != NULL && field_named(f, n, "Content-Transfer-Encoding")) {
			h->cte = parse_cte(colon + 1, f + n);
			h->has_cte = true;
		} else if (colon != NULL && field_named(f, n, "MIME-Version"))
			h->has_mime_version = true;
		off += n;
	}
	h->head.len = off;
	size_t body_at = off + h->sep.len;
	h->body = (struct span){ e.p + body_at, e.len - body_at };
	if (h->type[0] == '\0')
		snprintf(h->type, sizeof(h->type), "%s", default_type);
}

/* emit_head - the header block with Content-Transfer-Encoding set to
 * quoted-printable (replaced, or added at the end). */
static int emit_head(struct buf *out, const struct entity_head *h, bool top)
{
	static const char cte_qp[] = "Content-Transfer-Encoding: quoted-printable\r\n";
	size_t off = 0;

	while (off < h->head.len) {
		const char *f = h->head.p + off;
		size_t n = field_len(f, h->head.len - off);
		if (field_named(f, n, "Content-Transfer-Encoding"))
			EMIT_STR(out, cte_qp);
		else
			EMIT(out, f, n);
		off += n;
	}
	if (h->head.len > 0 && h->head.p[h->head.len - 1] != '\n')
		EMIT_STR(out, "\r\n");
	if (!h->has_cte)
		EMIT_STR(out, cte_qp);
	if (top && !h->has_mime_version)
		EMIT_STR(out, "MIME-Version: 1.0\r\n");
	EMIT(out, h->sep.len > 0 ? h->sep.p : "\r\n", h->sep.len > 0 ? h->sep.len : 2);
	return 0;
}

/* qp_line - one line's content (no EOL) as quoted-printable, with soft
 * breaks so that no output line is longer than 76 characters. */
static int qp_line(struct buf *out, const unsigned char *p, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t col = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
		bool last = i + 1 == n;
		bool plain = (c >= 33 && c <= 126 && c != '=') ||
			     ((c == ' ' || c == '\t') && !last);
		char tok[3] = { (char)c };
		size_t k = 1;
		if (!plain) {
			tok[0] = '=';
			tok[1] = hex[c >> 4];
			tok[2] = hex[c & 15];
			k = 3;
		}
		if (col + k > 75) {
			EMIT_STR(out, "=\r\n");
			col = 0;
		}
		EMIT(out, tok, k);
		col += k;
	}
	return 0;
}

/* qp_body - a body as quoted-printable, line by line; lines keep their
 * hard breaks (as CRLF). */
static int qp_body(struct buf *out, struct span b)
{
	size_t off = 0;

	while (off < b.len) {
		size_t n = line_len(b.p + off, b.len - off), content = n;
		bool eol = b.p[off + n - 1] == '\n';
		if (eol) {
			content--;
			if (content > 0 && b.p[off + content - 1] == '\r')
				content--;
		}
		int rc = qp_line(out, (const unsigned char *)b.p + off, content);
		if (rc < 0)
			return rc;
		if (eol)
			EMIT_STR(out, "\r\n");
		off += n;
	}
	return 0;
}

/* delimiter_kind - 0: not a delimiter of boundary; 1: "--b"; 2: "--b--". */
static int delimiter_kind(const char *p, size_t n, const char *boundary)
{
	size_t k = strlen(boundary);

	if (n < k + 2 || p[0] != '-' || p[1] != '-' || memcmp(p + 2, boundary, k) != 0)
		return 0;
	size_t i = k + 2;
	int kind = 1;
	if (i + 1 < n && p[i] == '-' && p[i + 1] == '-') {
		kind = 2;
		i += 2;
	}
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	if (i < n && p[i] == '\r')
		i++;
	if (i < n && p[i] == '\n')
		i++;
	return i == n ? kind : 0;
}

static int entity_emit(struct buf *out, struct span e, const char *default_type,
		       bool top, unsigned depth, const char **why);

/* multipart_emit - the body of a multipart entity: preamble, parts,
 * epilogue. The line break before a delimiter stays with the part before
 * it (copied or re-encoded as a hard break: the same bytes). */
static int multipart_emit(struct buf *out, const struct entity_head *h, unsigned depth,
			  const char **why)
{
	const char *child_type = strcmp(h->type, "multipart/digest") == 0
		? "message/rfc822" : "text/plain";
	struct span b = h->body;
	size_t off = 0, part_at = 0;
	bool in_part = false, closed = false;

	while (off < b.len && !closed) {
		size_t n = line_len(b.p + off, b.len - off);
		int kind = delimiter_kind(b.p + off, n, h->boundary);
		if (kind != 0) {
			struct span before = { b.p + part_at, off - part_at };
			int rc;
			if (in_part) {
				rc = entity_emit(out, before, child_type, false, depth + 1, why);
			} else if (mime_has_8bit(before.p, before.len)) {
				*why = "8-bit text in a multipart preamble cannot be converted to 7-bit";
				rc = MIME_DOWNGRADE_STRUCTURE;
			} else {
				rc = buf_append(out, before.p, before.len) < 0 ? MIME_DOWNGRADE_NOSPACE : 0;
			}
			if (rc < 0)
				return rc;
			EMIT(out, b.p + off, n);
			in_part = true;
			closed = kind == 2;
			part_at = off + n;
		}
		off += n;
	}
	struct span rest = { b.p + part_at, b.len - part_at };
	if (in_part && !closed)
		return entity_emit(out, rest, child_type, false, depth + 1, why);
	if (mime_has_8bit(rest.p, rest.len)) {
		*why = in_part ? "8-bit text in a multipart epilogue cannot be converted to 7-bit"
			       : "8-bit multipart body without its boundary cannot be converted to 7-bit";
		return MIME_DOWNGRADE_STRUCTURE;
	}
	EMIT(out, rest.p, rest.len);
	return 0;
}

/* entity_emit - one entity, converted where its body has 8-bit bytes. */
static int entity_emit(struct buf *out, struct span e, const char *default_type,
		       bool top, unsigned depth, const char **why)
{
	struct entity_head h;

	entity_parse(&h, e, default_type);
	if (!mime_has_8bit(h.body.p, h.body.len)) {
		EMIT(out, e.p, e.len);
		return 0;
	}
	if (depth >= MIME_DOWNGRADE_MAX_DEPTH) {
		*why = "8-bit MIME parts nested too deep to convert to 7-bit";
		return MIME_DOWNGRADE_STRUCTURE;
	}
	if (strncmp(h.type, "multipart/", 10) == 0 && h.boundary[0] != '\0') {
		EMIT(out, h.head.p, h.head.len + h.sep.len);
		return multipart_emit(out, &h, depth, why);
	}
	if (strncmp(h.type, "message/", 8) == 0) {
		*why = "8-bit data in a message/* MIME part cannot be converted to 7-bit";
		return MIME_DOWNGRADE_MESSAGE_PART;
	}
	if (h.has_cte && h.cte != CTE_7BIT && h.cte != CTE_8BIT) {
		*why = "8-bit data in a binary, base64 or quoted-printable MIME part cannot be converted to 7-bit";
		return MIME_DOWNGRADE_ENCODED_PART;
	}
	int rc = emit_head(out, &h, top);
	return rc < 0 ? rc : qp_body(out, h.body);
}

int mime_downgrade(const char *msg, size_t len, struct buf *out, const char **why)
{
	static const char *none = "";
	const char *scratch;

	if (why == NULL)
		why = &scratch;
	*why = none;
	int rc = entity_emit(out, (struct span){ msg, len }, "text/plain", true, 0, why);
	if (rc == MIME_DOWNGRADE_NOSPACE)
		*why = "message too large to convert to 7-bit";
	return rc;
}
