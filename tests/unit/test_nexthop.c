/*
 * test_nexthop - the next-hop syntax of relayhost and routes (issue 17).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "nexthop.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct ok_case {
	const char *text;
	enum nexthop_kind kind;
	const char *host;
	unsigned port;
	int family;             /* NEXTHOP_ADDR only */
};

static const struct ok_case ok_cases[] = {
	{ "smtp.example.com", NEXTHOP_MX, "smtp.example.com", 0, 0 },
	{ "SMTP.Example.COM.", NEXTHOP_MX, "smtp.example.com", 0, 0 },
	{ "smtp.example.com:587", NEXTHOP_MX, "smtp.example.com", 587, 0 },
	{ "localhost", NEXTHOP_MX, "localhost", 0, 0 },
	{ "mail_1-a.example:25", NEXTHOP_MX, "mail_1-a.example", 25, 0 },
	{ "[smtp.example.com]", NEXTHOP_HOST, "smtp.example.com", 0, 0 },
	{ "[smtp.example.com]:465", NEXTHOP_HOST, "smtp.example.com", 465, 0 },
	{ "[Relay.Example]:1", NEXTHOP_HOST, "relay.example", 1, 0 },
	{ "10.0.0.5", NEXTHOP_ADDR, "10.0.0.5", 0, AF_INET },
	{ "10.0.0.5:25", NEXTHOP_ADDR, "10.0.0.5", 25, AF_INET },
	{ "127.0.0.1:65535", NEXTHOP_ADDR, "127.0.0.1", 65535, AF_INET },
	{ "[10.0.0.5]", NEXTHOP_ADDR, "10.0.0.5", 0, AF_INET },
	{ "[10.0.0.5]:2525", NEXTHOP_ADDR, "10.0.0.5", 2525, AF_INET },
	{ "[::1]:587", NEXTHOP_ADDR, "::1", 587, AF_INET6 },
	{ "[IPv6:2001:db8::1]:25", NEXTHOP_ADDR, "2001:db8::1", 25, AF_INET6 },
	{ "[ipv6:::1]", NEXTHOP_ADDR, "::1", 0, AF_INET6 },
	{ "::1", NEXTHOP_ADDR, "::1", 0, AF_INET6 },
	{ "2001:db8::25", NEXTHOP_ADDR, "2001:db8::25", 0, AF_INET6 },
	{ "[2001:DB8::1]", NEXTHOP_ADDR, "2001:db8::1", 0, AF_INET6 },
};

Test(nexthop, accepts_every_form)
{
	for (size_t i = 0; i < N(ok_cases); i++) {
		const struct ok_case *c = &ok_cases[i];
		struct nexthop hop;
		char err[128];
		int rc = nexthop_parse(c->text, &hop, err, sizeof(err));

		cr_expect_eq(rc, 0, "%s: got rc %d (%s), want 0", c->text, rc, err);
		if (rc != 0)
			continue;
		cr_expect_eq(hop.kind, c->kind, "%s: got kind %s, want %s", c->text,
			     nexthop_kind_name(hop.kind), nexthop_kind_name(c->kind));
		cr_expect_str_eq(hop.host, c->host, "%s: got host %s, want %s", c->text, hop.host, c->host);
		cr_expect_eq(hop.port, c->port, "%s: got port %u, want %u", c->text, hop.port, c->port);
		if (c->kind == NEXTHOP_ADDR)
			cr_expect_eq(hop.family, c->family, "%s: got family %d, want %d", c->text,
				     hop.family, c->family);
	}
}

struct bad_case {
	const char *text;
	const char *why;        /* a piece of the message */
};

static const struct bad_case bad_cases[] = {
	{ "", "empty" },
	{ "host:", "bad port" },
	{ "host:0", "bad port" },
	{ "host:65536", "bad port" },
	{ "host:25x", "bad port" },
	{ "host:-1", "bad port" },
	{ "host:0000025", "bad port" },
	{ "10.0.0.5:", "bad port" },
	{ "10.0.0.256", "not an IPv4" },
	{ "10.0.0", "not an IPv4" },
	{ "10.0.0.5.6:25", "not an IPv4" },
	{ "[10.0.0.256]:25", "not an IP address" },
	{ "[host", "without ']'" },
	{ "[host]x", "only \":port\"" },
	{ "[host]:", "bad port" },
	{ "[]:25", "not a host name" },
	{ "[IPv6:zz]", "not a host name" },
	{ "::1:25:x", "brackets" },
	{ "2001:db8::1:99999", "brackets" },
	{ "a..b", "not a host name" },
	{ ".example.com", "not a host name" },
	{ "exa mple.com", "space" },
	{ "example.com\n", "control" },
	{ "ex@mple.com", "not a host name" },
	{ "example.com:25:26", "brackets" },
	{ "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.com", "not a host name" },
	{ ":25", "not a host name" },
};

Test(nexthop, rejects_bad_input)
{
	for (size_t i = 0; i < N(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct nexthop hop;
		char err[128];
		int rc = nexthop_parse(c->text, &hop, err, sizeof(err));

		cr_expect_eq(rc, -EINVAL, "\"%s\": got rc %d (kind %s host %s), want -EINVAL", c->text, rc,
			     nexthop_kind_name(hop.kind), hop.host);
		cr_expect(strstr(err, c->why) != NULL, "\"%s\": got error \"%s\", want \"%s\" in it",
			  c->text, err, c->why);
	}
}

Test(nexthop, long_names_and_null_err)
{
	char name[300];
	struct nexthop hop;

	/* 253 bytes in labels of 63 is the longest name. */
	memset(name, 'a', sizeof(name));
	for (int i = 63; i < 253; i += 64)
		name[i] = '.';
	name[253] = '\0';
	cr_expect_eq(nexthop_parse(name, &hop, NULL, 0), 0);
	cr_expect_eq(strlen(hop.host), 253u);
	name[253] = 'a';
	name[254] = '\0';
	cr_expect_eq(nexthop_parse(name, &hop, NULL, 0), -EINVAL);
	cr_expect_eq(nexthop_parse(NULL, &hop, NULL, 0), -EINVAL);
}
