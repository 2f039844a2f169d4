/*
 * smtp_address - RFC 5321 path parser for MAIL FROM / RCPT TO, and the
 * relay decision.
 *
 *   struct smtp_address a;
 *   int rc = smtp_address_parse("<User@Example.COM.>", len, SMTP_ADDRESS_RCPT, &a);
 *   rc == 0: a.mailbox = "User@example.com", a.domain = "example.com"
 *
 * Accepted: <local@domain>, <> (only with SMTP_ADDRESS_ALLOW_NULL), quoted
 * local parts ("a b"@x, "a@b"@x, kept quoted in mailbox), address literals
 * ([127.0.0.1], [IPv6:::1]), source routes <@a,@b:user@c> (checked, then
 * dropped), <postmaster> without a domain (only with
 * SMTP_ADDRESS_ALLOW_POSTMASTER, as RFC 5321 4.5.1 requires for RCPT).
 * UTF-8 in the local part or domain only with SMTP_ADDRESS_UTF8 (the MAIL had
 * SMTPUTF8); it must be well-formed UTF-8. Limits: local part 64, domain 255,
 * path 256 octets. The domain is lower-cased (ASCII) and a trailing dot is
 * removed; the local part is kept as written.
 *
 * The relay decision looks only at the parsed domain (after the structural
 * @, which is the last @ since a domain cannot hold one). % and ! in the
 * local part, and @ inside quotes, are never interpreted: "a%b@c"@local and
 * a!b%c@local are local addresses, never relayed.
 */
#ifndef RINGMAIL_SMTP_ADDRESS_H
#define RINGMAIL_SMTP_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_ADDRESS_LOCAL_MAX 64
#define SMTP_ADDRESS_DOMAIN_MAX 255
#define SMTP_ADDRESS_PATH_MAX 256

enum smtp_address_flag {
	SMTP_ADDRESS_ALLOW_NULL = 1 << 0,	/* <> allowed (MAIL FROM) */
	SMTP_ADDRESS_ALLOW_POSTMASTER = 1 << 1,	/* <postmaster> (RCPT TO) */
	SMTP_ADDRESS_UTF8 = 1 << 2,		/* SMTPUTF8 transaction */
};
#define SMTP_ADDRESS_MAIL (SMTP_ADDRESS_ALLOW_NULL)
#define SMTP_ADDRESS_RCPT (SMTP_ADDRESS_ALLOW_POSTMASTER)

/* Parse results (negative): map to replies in smtp_cmd. */
enum smtp_address_error {
	SMTP_ADDRESS_OK = 0,
	SMTP_ADDRESS_ESYNTAX = -1,	/* bad syntax */
	SMTP_ADDRESS_ETOOLONG = -2,	/* local part, domain or path too long */
	SMTP_ADDRESS_EUTF8 = -3,	/* non-ASCII without SMTPUTF8 */
	SMTP_ADDRESS_ENULL = -4,	/* <> where it is not allowed */
};

struct smtp_address {
	char mailbox[SMTP_ADDRESS_PATH_MAX + 1];	/* local@domain, "" for <> */
	const char *domain;	/* points into mailbox; "" for <> or <postmaster> */
	size_t local_len;	/* octets of the local part in mailbox */
	bool is_null;		/* <> */
	bool utf8;		/* holds non-ASCII octets */
};

/* smtp_address_parse - parse exactly the path text[0..len) ("<...>").
 * Returns 0 and fills out, or an enum smtp_address_error. */
int smtp_address_parse(const char *text, size_t len, unsigned flags,
		       struct smtp_address *out);

/* smtp_address_path_end - length of the path at the start of text (through
 * its closing ">", honouring quotes), or 0 when there is none. Lets the
 * command parser find where ESMTP parameters begin. */
size_t smtp_address_path_end(const char *text, size_t len);

typedef bool (*smtp_address_is_local_fn)(void *ctx, const char *domain);

/* smtp_address_is_local - whether the address is for a local domain. An
 * address without a domain (<postmaster>) is local. */
bool smtp_address_is_local(const struct smtp_address *a,
			   smtp_address_is_local_fn is_local, void *ctx);

/* smtp_address_relay_allowed - whether a RCPT to a may be accepted: its
 * domain is local, or the client is trusted (relay network or
 * authenticated). */
bool smtp_address_relay_allowed(const struct smtp_address *a, bool trusted,
				smtp_address_is_local_fn is_local, void *ctx);

#endif
