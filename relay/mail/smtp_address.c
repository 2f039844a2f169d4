/*
 * smtp_address - RFC 5321 path parsing and the relay decision.
 *
 * The parser is a straight recursive-descent walk over the grammar of RFC 5321
 * 4.1.2 (Path, Mailbox, Local-part, Domain, address-literal) with the RFC 6531
 * extension that lets UTF-8 appear in atoms, quoted text and labels. It never
 * allocates: the result is a fixed-size struct.
 */
#include "smtp_address.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

struct address_scan {
	const char *p;		/* next octet */
	const char *end;	/* one past the last octet of the inner path */
	unsigned flags;
	bool utf8;		/* saw non-ASCII */
	int error;		/* first error seen, 0 if none */
};

/* utf8_sequence_len - length of the well-formed UTF-8 sequence at p (2..4),
 * or 0 when it is malformed (overlong, surrogate, above U+10FFFF, cut). */
static size_t utf8_sequence_len(const unsigned char *p, const unsigned char *end)
{
	size_t n, i;
	uint32_t cp;

	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if ((size_t)(end - p) < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff
	    || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* scan_utf8 - accept one UTF-8 character at the cursor when the transaction
 * allows it; records why not otherwise. */
static bool scan_utf8(struct address_scan *s)
{
	size_t n;

	if (!(s->flags & SMTP_ADDRESS_UTF8)) {
		if (!s->error)
			s->error = SMTP_ADDRESS_EUTF8;
		return false;
	}
	n = utf8_sequence_len((const unsigned char *)s->p, (const unsigned char *)s->end);
	if (n == 0)
		return false;
	s->p += n;
	s->utf8 = true;
	return true;
}

/* is_atext - RFC 5322 atext (ASCII part) */
static bool is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		|| (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

static bool is_let_dig(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* scan_dot_string - Dot-string: atoms separated by single dots */
static bool scan_dot_string(struct address_scan *s)
{
	bool in_atom = false;

	while (s->p < s->end) {
		unsigned char c = (unsigned char)*s->p;

		if (c == '.') {
			if (!in_atom)
				return false;
			in_atom = false;
			s->p++;
		} else if (c >= 0x80) {
			if (!scan_utf8(s))
				return false;
			in_atom = true;
		} else if (is_atext(c)) {
			in_atom = true;
			s->p++;
		} else {
			break;
		}
	}
	return in_atom;
}

/* scan_quoted_string - Quoted-string: qtextSMTP and quoted-pairSMTP */
static bool scan_quoted_string(struct address_scan *s)
{
	s->p++;
	while (s->p < s->end) {
		unsigned char c = (unsigned char)*s->p;

		if (c == '"') {
			s->p++;
			return true;
		}
		if (c == '\\') {
			if (s->p + 1 >= s->end || s->p[1] < 32 || s->p[1] > 126)
				return false;
			s->p += 2;
		} else if (c >= 0x80) {
			if (!scan_utf8(s))
				return false;
		} else if (c >= 32 && c <= 126) {
			s->p++;
		} else {
			return false;
		}
	}
	return false;
}

/* scan_label - one sub-domain: Let-dig [Ldh-str], or a U-label */
static bool scan_label(struct address_scan *s)
{
	const char *start = s->p;
	bool last_hyphen = false;

	while (s->p < s->end && *s->p != '.') {
		unsigned char c = (unsigned char)*s->p;

		if (c >= 0x80) {
			if (!scan_utf8(s))
				return false;
			last_hyphen = false;
		} else if (is_let_dig(c) || (c == '-' && s->p != start)) {
			last_hyphen = c == '-';
			s->p++;
		} else {
			break;
		}
	}
	return s->p > start && !last_hyphen && s->p - start <= 63;
}

/* address_literal_valid - [IPv4] or [IPv6:...]; general literals are refused
 * because nothing here could deliver to them. A NUL is refused first:
 * inet_pton() would stop at it and pass "[127.0.0.1\0junk]", whose stored
 * mailbox a C string would then cut inside the brackets. */
static bool address_literal_valid(const char *p, size_t len)
{
	char tmp[64];
	unsigned char bin[16];
	int family = AF_INET;

	if (len >= 5 && strncasecmp(p, "IPv6:", 5) == 0) {
		family = AF_INET6;
		p += 5;
		len -= 5;
	}
	if (len == 0 || len >= sizeof(tmp) || memchr(p, 0, len) != NULL)
		return false;
	memcpy(tmp, p, len);
	tmp[len] = 0;
	return inet_pton(family, tmp, bin) == 1;
}

/* scan_domain - Domain or address-literal; a trailing dot is allowed (and
 * later dropped) because clients send FQDNs that way. */
static bool scan_domain(struct address_scan *s)
{
	if (s->p < s->end && *s->p == '[') {
		const char *close = memchr(s->p, ']', (size_t)(s->end - s->p));

		if (close == NULL || !address_literal_valid(s->p + 1, (size_t)(close - s->p - 1)))
			return false;
		s->p = close + 1;
		return true;
	}
	for (;;) {
		if (!scan_label(s))
			return false;
		if (s->p >= s->end || *s->p != '.')
			return true;
		s->p++;
		if (s->p >= s->end || *s->p == ',' || *s->p == ':')
			return true;	/* trailing dot */
	}
}

/* scan_source_route - A-d-l ":" : checked for syntax, then ignored, as RFC
 * 5321 4.1.2 and appendix C tell servers to. */
static bool scan_source_route(struct address_scan *s)
{
	for (;;) {
		if (s->p >= s->end || *s->p != '@')
			return false;
		s->p++;
		if (!scan_domain(s))
			return false;
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			continue;
		}
		if (s->p < s->end && *s->p == ':') {
			s->p++;
			return true;
		}
		return false;
	}
}

/* address_store - copy local part and normalised domain into out */
static int address_store(struct smtp_address *out, const char *local, size_t local_len,
			 const char *domain, size_t domain_len)
{
	size_t i;
	char *d;

	if (domain_len > 0 && domain[domain_len - 1] == '.')
		domain_len--;
	if (local_len > SMTP_ADDRESS_LOCAL_MAX || domain_len > SMTP_ADDRESS_DOMAIN_MAX
	    || local_len + 1 + domain_len > SMTP_ADDRESS_PATH_MAX)
		return SMTP_ADDRESS_ETOOLONG;
	memcpy(out->mailbox, local, local_len);
	out->local_len = local_len;
	if (domain_len == 0) {
		out->mailbox[local_len] = 0;
		out->domain = out->mailbox + local_len;
		return 0;
	}
	out->mailbox[local_len] = '@';
	d = out->mailbox + local_len + 1;
	for (i = 0; i < domain_len; i++) {
		unsigned char c = (unsigned char)domain[i];
		d[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	d[domain_len] = 0;
	if (domain_len > 6 && strncmp(d, "[ipv6:", 6) == 0)
		memcpy(d + 1, "IPv6", 4);	/* the tag keeps its RFC spelling */
	out->domain = d;
	return 0;
}

/* smtp_address_parse - parse one <path> */
int smtp_address_parse(const char *text, size_t len, unsigned flags,
		       struct smtp_address *out)
{
	struct address_scan s = { .flags = flags };
	const char *local, *local_end, *domain;
	bool ok;

	memset(out, 0, sizeof(*out));
	out->domain = out->mailbox;
	if (len < 2 || text[0] != '<' || text[len - 1] != '>')
		return SMTP_ADDRESS_ESYNTAX;
	if (len > SMTP_ADDRESS_PATH_MAX + 2)
		return SMTP_ADDRESS_ETOOLONG;
	if (len == 2) {
		out->is_null = true;
		return flags & SMTP_ADDRESS_ALLOW_NULL ? 0 : SMTP_ADDRESS_ENULL;
	}
	s.p = text + 1;
	s.end = text + len - 1;
	if (*s.p == '@' && !scan_source_route(&s))
		return s.error ? s.error : SMTP_ADDRESS_ESYNTAX;
	local = s.p;
	ok = s.p < s.end && (*s.p == '"' ? scan_quoted_string(&s) : scan_dot_string(&s));
	local_end = s.p;
	if (ok && s.p == s.end && (flags & SMTP_ADDRESS_ALLOW_POSTMASTER)
	    && local_end - local == 10 && strncasecmp(local, "postmaster", 10) == 0)
		return address_store(out, local, 10, "", 0);
	if (ok && (s.p >= s.end || *s.p != '@'))
		ok = false;
	domain = ++s.p;
	if (ok)
		ok = scan_domain(&s) && s.p == s.end;
	if (!ok)
		return s.error ? s.error : SMTP_ADDRESS_ESYNTAX;
	out->utf8 = s.utf8;
	return address_store(out, local, (size_t)(local_end - local), domain,
			     (size_t)(s.end - domain));
}

/* smtp_address_path_end - find the closing ">" of a path, skipping quotes */
size_t smtp_address_path_end(const char *text, size_t len)
{
	bool quoted = false;
	size_t i;

	if (len == 0 || text[0] != '<')
		return 0;
	for (i = 1; i < len; i++) {
		if (quoted && text[i] == '\\')
			i++;
		else if (text[i] == '"')
			quoted = !quoted;
		else if (!quoted && text[i] == '>')
			return i + 1;
	}
	return 0;
}

/* smtp_address_is_local - domain-only locality test */
bool smtp_address_is_local(const struct smtp_address *a,
			   smtp_address_is_local_fn is_local, void *ctx)
{
	if (a->domain[0] == 0)
		return !a->is_null;
	return is_local != NULL && is_local(ctx, a->domain);
}

/* smtp_address_relay_allowed - the open-relay guard: only the parsed domain
 * counts, so %-hacks, bang paths and quoted @ can never route mail onward. */
bool smtp_address_relay_allowed(const struct smtp_address *a, bool trusted,
				smtp_address_is_local_fn is_local, void *ctx)
{
	if (a->is_null)
		return false;
	return trusted || smtp_address_is_local(a, is_local, ctx);
}
