/*
 * smtp_cmd - SMTP command line parsing: the verb, MAIL FROM and RCPT TO with
 * their ESMTP parameters (RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 3030 BODY,
 * RFC 6531 SMTPUTF8, RFC 3461 DSN: RET, ENVID, NOTIFY, ORCPT, RFC 8689
 * REQUIRETLS), and xtext. Whether REQUIRETLS may be used in the session
 * (only over TLS) is the session's rule, not the parser's.
 *
 *   struct smtp_cmd_line l;
 *   smtp_cmd_split(line, len, &l);               verb and arguments
 *   const char *err = smtp_cmd_parse_mail(l.args, l.args_len, true, &from, &mp);
 *   err == NULL: parsed; else err is the reply line to send (no CRLF), e.g.
 *   "555 5.5.4 Unsupported parameter" for an unknown parameter.
 *
 * The line given to these functions has its CRLF removed. All returned reply
 * strings are static. Nothing here allocates or keeps pointers beyond the
 * call except smtp_cmd_line, which points into the caller's line.
 */
#ifndef RINGMAIL_SMTP_CMD_H
#define RINGMAIL_SMTP_CMD_H

#include <stdbool.h>

#include "smtp_dsn.h"
#include <stddef.h>
#include <stdint.h>

#include "smtp_address.h"

struct smtp_cmd_line {
	const char *verb;	/* into the line; not NUL-terminated */
	size_t verb_len;
	const char *args;	/* after the separating space(s); may be "" */
	size_t args_len;
};

/* smtp_cmd_split - split a command line at the first space run into verb
 * and arguments; trailing spaces of the arguments are dropped. */
void smtp_cmd_split(const char *line, size_t len, struct smtp_cmd_line *out);

/* smtp_cmd_verb_is - case-insensitive verb comparison */
bool smtp_cmd_verb_is(const struct smtp_cmd_line *l, const char *verb);

enum smtp_body_type {
	SMTP_BODY_UNSPECIFIED = 0,	/* taken as 7BIT */
	SMTP_BODY_7BIT,
	SMTP_BODY_8BITMIME,
	SMTP_BODY_BINARYMIME,
};

#define SMTP_ENVID_MAX 100	/* RFC 3461 4.4 */
#define SMTP_ORCPT_MAX 500	/* RFC 3461 4.2 */
#define SMTP_ORCPT_TYPE_MAX 31

struct smtp_mail_params {
	bool has_size;
	uint64_t size;			/* SIZE=; UINT64_MAX when it overflowed */
	enum smtp_body_type body;
	bool smtputf8;
	enum smtp_dsn_ret ret;
	bool has_envid;
	char envid[SMTP_ENVID_MAX + 1];	/* xtext-decoded */
	bool requiretls;		/* RFC 8689 REQUIRETLS (no value) */
};

struct smtp_rcpt_params {
	unsigned notify;		/* enum smtp_notify bits; 0 = not given */
	bool has_orcpt;
	char orcpt_type[SMTP_ORCPT_TYPE_MAX + 1];	/* e.g. "rfc822" */
	char orcpt[SMTP_ORCPT_MAX + 1];	/* xtext-decoded address */
};

/* smtp_cmd_parse_mail - parse MAIL arguments ("FROM:<path> params").
 * esmtp: the session used EHLO (parameters allowed). Returns NULL, or the
 * error reply line. */
const char *smtp_cmd_parse_mail(const char *args, size_t len, bool esmtp,
				struct smtp_address *from, struct smtp_mail_params *params);

/* smtp_cmd_parse_rcpt - parse RCPT arguments ("TO:<path> params"). utf8:
 * the transaction's MAIL had SMTPUTF8. Returns NULL, or the error reply. */
const char *smtp_cmd_parse_rcpt(const char *args, size_t len, bool esmtp, bool utf8,
				struct smtp_address *to, struct smtp_rcpt_params *params);

/* smtp_xtext_decode - decode RFC 3461 xtext into out (NUL-terminated).
 * Returns the decoded length, -EINVAL for bad xtext (or an encoded NUL), or
 * -E2BIG when it does not fit in out_size - 1 bytes. */
int smtp_xtext_decode(const char *in, size_t len, char *out, size_t out_size);

/* smtp_xtext_encode - encode into out (NUL-terminated) for passing DSN
 * parameters on. Returns the encoded length or -E2BIG. */
int smtp_xtext_encode(const char *in, size_t len, char *out, size_t out_size);

#endif
