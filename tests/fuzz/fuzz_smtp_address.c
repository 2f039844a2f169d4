/*
 * fuzz_smtp_address - libFuzzer harness for the MAIL FROM / RCPT TO path
 * parser and the relay decision (relay/smtp_address.h).
 *
 *   tools/fuzz build && tools/fuzz run 60 smtp_address
 *
 * Byte 0 holds the parse flags (low 3 bits); the rest is the path text.
 * Invariants checked on every input:
 *   - smtp_address_path_end() never reports more than it was given;
 *   - a parsed address is NUL-terminated within its buffer, within the
 *     documented limits, its domain points into mailbox after the last "@"
 *     of the local part, is lower-case ASCII without a trailing dot;
 *   - <> only with SMTP_ADDRESS_ALLOW_NULL, non-ASCII only with
 *     SMTP_ADDRESS_UTF8;
 *   - the parsed form is a fixed point: "<" mailbox ">" parses again with the
 *     same flags to the same mailbox;
 *   - a recipient (not <>) with a local domain is always allowed to relay,
 *     and a trusted client may relay anywhere.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_address.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* is_local - local.org and anything under it is ours */
static bool is_local(void *ctx, const char *domain)
{
	size_t n = strlen(domain);

	(*(unsigned *)ctx)++;
	return strcmp(domain, "local.org") == 0 ||
	       (n > 10 && strcmp(domain + n - 10, ".local.org") == 0);
}

/* check - the structural invariants of a parsed address */
static void check(const struct smtp_address *a, unsigned flags)
{
	size_t len = strnlen(a->mailbox, sizeof(a->mailbox));
	size_t dlen, i;

	if (len == sizeof(a->mailbox) || a->domain == NULL)
		abort();
	if (a->domain < a->mailbox || a->domain > a->mailbox + len)
		abort();
	if (a->local_len > len || a->local_len > SMTP_ADDRESS_LOCAL_MAX)
		abort();
	dlen = strlen(a->domain);
	if (dlen > SMTP_ADDRESS_DOMAIN_MAX)
		abort();
	if (a->is_null && (!(flags & SMTP_ADDRESS_ALLOW_NULL) || len != 0))
		abort();
	if (dlen > 0) {
		if (a->domain != a->mailbox + a->local_len + 1 ||
		    a->mailbox[a->local_len] != '@')
			abort();
		if (a->domain[dlen - 1] == '.')
			abort();
		for (i = 0; i < dlen; i++)
			if (a->domain[i] >= 'A' && a->domain[i] <= 'Z' &&
			    !(a->domain[0] == '[' && i >= 1 && i <= 4))
				abort();	/* [IPv6: keeps its spelling */
	}
	for (i = 0; i < len; i++)
		if ((unsigned char)a->mailbox[i] >= 0x80 &&
		    (!(flags & SMTP_ADDRESS_UTF8) || !a->utf8))
			abort();
}

/* reparse - "<mailbox>" parses back to the same address */
static void reparse(const struct smtp_address *a, unsigned flags)
{
	char path[SMTP_ADDRESS_PATH_MAX + 3];
	struct smtp_address b;
	int n = snprintf(path, sizeof(path), "<%s>", a->mailbox);

	if (n < 0 || (size_t)n >= sizeof(path))
		abort();
	if (smtp_address_parse(path, (size_t)n, flags, &b) != 0)
		abort();
	if (strcmp(a->mailbox, b.mailbox) != 0 || a->is_null != b.is_null ||
	    a->local_len != b.local_len || strcmp(a->domain, b.domain) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_address a;
	unsigned flags, calls = 0;
	const char *text;
	size_t len, end;
	int rc;
	char *copy;

	if (size < 1)
		return 0;
	flags = data[0] & 7;
	len = size - 1;
	/* an exact-size heap copy, so ASan sees any read past the end */
	copy = malloc(len ? len : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data + 1, len);
	text = copy;

	end = smtp_address_path_end(text, len);
	if (end > len)
		abort();
	rc = smtp_address_parse(text, len, flags, &a);
	if (rc == 0) {
		check(&a, flags);
		reparse(&a, flags);
	}
	if (rc == 0 && !a.is_null) {
		if (smtp_address_is_local(&a, is_local, &calls) &&
		    !smtp_address_relay_allowed(&a, false, is_local, &calls))
			abort();
		if (!smtp_address_relay_allowed(&a, true, is_local, &calls))
			abort();
	}
	free(copy);
	return 0;
}
