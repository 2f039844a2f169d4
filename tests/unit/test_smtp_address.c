/* test_smtp_address - RFC 5321 path parsing and the relay rule. */
#include <criterion/criterion.h>
#include <string.h>

#include "smtp_address.h"

struct address_case {
	const char *path;
	unsigned flags;
	int want_rc;
	const char *want_mailbox;	/* when want_rc == 0 */
	const char *want_domain;
};

static const struct address_case cases[] = {
	{ "<user@example.com>", SMTP_ADDRESS_MAIL, 0, "user@example.com", "example.com" },
	{ "<User@Example.COM>", SMTP_ADDRESS_RCPT, 0, "User@example.com", "example.com" },
	{ "<user@example.com.>", SMTP_ADDRESS_RCPT, 0, "user@example.com", "example.com" },
	{ "<>", SMTP_ADDRESS_MAIL, 0, "", "" },
	{ "<>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ENULL, NULL, NULL },
	{ "<\"a b\"@x.org>", SMTP_ADDRESS_RCPT, 0, "\"a b\"@x.org", "x.org" },
	{ "<\"a@b\"@x.org>", SMTP_ADDRESS_RCPT, 0, "\"a@b\"@x.org", "x.org" },
	{ "<\"a\\\"q\"@x.org>", SMTP_ADDRESS_RCPT, 0, "\"a\\\"q\"@x.org", "x.org" },
	{ "<u@[127.0.0.1]>", SMTP_ADDRESS_RCPT, 0, "u@[127.0.0.1]", "[127.0.0.1]" },
	{ "<u@[IPv6:::1]>", SMTP_ADDRESS_RCPT, 0, "u@[IPv6:::1]", "[IPv6:::1]" },
	{ "<u@[ipv6:2001:DB8::1]>", SMTP_ADDRESS_RCPT, 0, "u@[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]" },
	{ "<u@[300.0.0.1]>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<u@[IPv6:zz]>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<u@[tag:foo]>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<@a.org,@b.org:user@c.org>", SMTP_ADDRESS_RCPT, 0, "user@c.org", "c.org" },
	{ "<@a.org:user@c.org>", SMTP_ADDRESS_MAIL, 0, "user@c.org", "c.org" },
	{ "<@a.org user@c.org>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<Postmaster>", SMTP_ADDRESS_RCPT, 0, "Postmaster", "" },
	{ "<postmaster>", SMTP_ADDRESS_MAIL, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<user>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "user@example.com", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<user@example.com", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<user@@example.com>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<.user@example.com>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<us..er@example.com>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<user.@example.com>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<user@-example.com>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<user@example-.com>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<user@exa_mple.com>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<user@example..com>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<user@>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<@example.com>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<us er@example.com>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<\"unterminated@example.com>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<\"a\x01\"@example.com>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<a%b@example.com>", SMTP_ADDRESS_RCPT, 0, "a%b@example.com", "example.com" },
	{ "<a!b@example.com>", SMTP_ADDRESS_RCPT, 0, "a!b@example.com", "example.com" },
	/* UTF-8: only with SMTPUTF8, only well-formed */
	{ "<j\xc3\xb6rg@example.com>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_EUTF8, NULL, NULL },
	{ "<j\xc3\xb6rg@example.com>", SMTP_ADDRESS_RCPT | SMTP_ADDRESS_UTF8, 0,
	  "j\xc3\xb6rg@example.com", "example.com" },
	{ "<u@b\xc3\xbc" "cher.de>", SMTP_ADDRESS_RCPT, SMTP_ADDRESS_EUTF8, NULL, NULL },
	{ "<u@b\xc3\xbc" "cher.DE>", SMTP_ADDRESS_RCPT | SMTP_ADDRESS_UTF8, 0,
	  "u@b\xc3\xbc" "cher.de", "b\xc3\xbc" "cher.de" },
	{ "<j\xc3rg@example.com>", SMTP_ADDRESS_RCPT | SMTP_ADDRESS_UTF8, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<j\xc0\xafrg@example.com>", SMTP_ADDRESS_RCPT | SMTP_ADDRESS_UTF8, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
	{ "<j\xed\xa0\x80rg@example.com>", SMTP_ADDRESS_RCPT | SMTP_ADDRESS_UTF8, SMTP_ADDRESS_ESYNTAX, NULL, NULL },
};

Test(smtp_address, table)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct address_case *c = &cases[i];
		struct smtp_address a;
		int rc = smtp_address_parse(c->path, strlen(c->path), c->flags, &a);

		cr_expect_eq(rc, c->want_rc, "case %zu %s: got rc %d, want %d", i, c->path, rc, c->want_rc);
		if (rc != 0 || c->want_rc != 0)
			continue;
		cr_expect_str_eq(a.mailbox, c->want_mailbox, "case %zu %s: got mailbox %s, want %s",
				 i, c->path, a.mailbox, c->want_mailbox);
		cr_expect_str_eq(a.domain, c->want_domain, "case %zu %s: got domain %s, want %s",
				 i, c->path, a.domain, c->want_domain);
	}
}

static void make_address(char *buf, size_t local, size_t domain)
{
	size_t n = 0;

	buf[n++] = '<';
	memset(buf + n, 'a', local);
	n += local;
	buf[n++] = '@';
	while (domain > 0) {	/* labels of up to 60 octets */
		size_t label = domain > 61 ? 60 : domain;
		memset(buf + n, 'b', label);
		n += label;
		domain -= label;
		if (domain > 0) {
			buf[n++] = '.';
			domain--;
		}
	}
	buf[n++] = '>';
	buf[n] = 0;
}

Test(smtp_address, length_limits)
{
	struct { size_t local, domain; int want; } lens[] = {
		{ 64, 10, 0 }, { 65, 10, SMTP_ADDRESS_ETOOLONG },
		{ 10, 245, 0 }, { 10, 256, SMTP_ADDRESS_ETOOLONG },
		{ 64, 191, 0 }, { 64, 192, SMTP_ADDRESS_ETOOLONG },
	};
	char buf[1024];

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct smtp_address a;
		int rc;

		make_address(buf, lens[i].local, lens[i].domain);
		rc = smtp_address_parse(buf, strlen(buf), SMTP_ADDRESS_RCPT, &a);
		cr_expect_eq(rc, lens[i].want, "local %zu domain %zu: got %d, want %d",
			     lens[i].local, lens[i].domain, rc, lens[i].want);
	}
}

Test(smtp_address, path_end)
{
	cr_expect_eq(smtp_address_path_end("<a@b> SIZE=1", 12), 5);
	cr_expect_eq(smtp_address_path_end("<\"a>b\"@c> X", 11), 9);
	cr_expect_eq(smtp_address_path_end("<a@b", 4), 0);
	cr_expect_eq(smtp_address_path_end("a@b>", 4), 0);
}

static bool only_local_org(void *ctx, const char *domain)
{
	(void)ctx;
	return strcmp(domain, "local.org") == 0;
}

Test(smtp_address, relay_decision)
{
	static const struct { const char *path; bool trusted; bool want; } cases_relay[] = {
		{ "<u@local.org>", false, true },
		{ "<u@LOCAL.ORG.>", false, true },
		{ "<u@remote.net>", false, false },
		{ "<u@remote.net>", true, true },
		/* percent hack, bang path, quoted @: domain decides, never the local part */
		{ "<u%remote.net@local.org>", false, true },
		{ "<u%local.org@remote.net>", false, false },
		{ "<remote.net!u@local.org>", false, true },
		{ "<\"u@remote.net\"@local.org>", false, true },
		{ "<\"u@local.org\"@remote.net>", false, false },
		{ "<@local.org:u@remote.net>", false, false },
		{ "<postmaster>", false, true },
	};
	for (size_t i = 0; i < sizeof(cases_relay) / sizeof(cases_relay[0]); i++) {
		struct smtp_address a;
		bool got;

		cr_assert_eq(smtp_address_parse(cases_relay[i].path, strlen(cases_relay[i].path),
						 SMTP_ADDRESS_RCPT, &a), 0, "parse %s", cases_relay[i].path);
		got = smtp_address_relay_allowed(&a, cases_relay[i].trusted, only_local_org, NULL);
		cr_expect_eq(got, cases_relay[i].want, "%s trusted=%d: got %d, want %d",
			     cases_relay[i].path, cases_relay[i].trusted, got, cases_relay[i].want);
	}
}

Test(smtp_address, null_sender_never_relays)
{
	struct smtp_address a;

	cr_assert_eq(smtp_address_parse("<>", 2, SMTP_ADDRESS_MAIL, &a), 0);
	cr_expect(!smtp_address_relay_allowed(&a, true, only_local_org, NULL));
	cr_expect(!smtp_address_is_local(&a, only_local_org, NULL));
}

/* Found by fuzz_smtp_address: inet_pton() stopped at an embedded NUL, so a
 * literal with one passed and the mailbox, read as a C string, ended inside
 * the brackets. Every octet of the path must be checked. */
Test(smtp_address, nul_in_address_literal)
{
	static const struct { const char *path; size_t len; } cases_nul[] = {
		{ "<u@[IPv6:::\0\0\0\0001]>", 19 },
		{ "<u@[127.0.0.1\0junk]>", 20 },
		{ "<u@[127.0.0.1\0]>", 16 },
	};

	for (size_t i = 0; i < sizeof(cases_nul) / sizeof(cases_nul[0]); i++) {
		struct smtp_address a;
		int rc = smtp_address_parse(cases_nul[i].path, cases_nul[i].len,
					    SMTP_ADDRESS_RCPT, &a);

		cr_expect_eq(rc, SMTP_ADDRESS_ESYNTAX, "case %zu: got rc %d, want %d",
			     i, rc, SMTP_ADDRESS_ESYNTAX);
	}
}
