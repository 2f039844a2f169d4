/*
 * test_netaddr - host:port parsing, CIDR parsing and matching, formatting.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "netaddr.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct hostport_case {
	const char *text;
	int want_rc;
	int want_family;
	const char *want_format;    /* netaddr_format of the result */
};

static const struct hostport_case hostport_cases[] = {
	{ "127.0.0.1:2525", 0, AF_INET, "127.0.0.1:2525" },
	{ "0.0.0.0:25", 0, AF_INET, "0.0.0.0:25" },
	{ "255.255.255.255:65535", 0, AF_INET, "255.255.255.255:65535" },
	{ "10.1.2.3:1", 0, AF_INET, "10.1.2.3:1" },
	{ "[::1]:2525", 0, AF_INET6, "[::1]:2525" },
	{ "[::]:25", 0, AF_INET6, "[::]:25" },
	{ "[2001:db8::1]:587", 0, AF_INET6, "[2001:db8::1]:587" },
	{ "[2001:DB8:0:0:0:0:0:1]:587", 0, AF_INET6, "[2001:db8::1]:587" },
	{ "[::ffff:127.0.0.1]:25", 0, AF_INET6, "[::ffff:127.0.0.1]:25" },
	{ "127.0.0.1:025", 0, AF_INET, "127.0.0.1:25" },
	/* invalid */
	{ "127.0.0.1:0", -EINVAL, 0, NULL },
	{ "127.0.0.1:65536", -EINVAL, 0, NULL },
	{ "127.0.0.1:99999999999999999999999", -EINVAL, 0, NULL },
	{ "127.0.0.1:", -EINVAL, 0, NULL },
	{ "127.0.0.1", -EINVAL, 0, NULL },
	{ "127.0.0.1:-1", -EINVAL, 0, NULL },
	{ "127.0.0.1:+25", -EINVAL, 0, NULL },
	{ "127.0.0.1: 25", -EINVAL, 0, NULL },
	{ "127.0.0.1:25 ", -EINVAL, 0, NULL },
	{ "127.0.0.1:25x", -EINVAL, 0, NULL },
	{ "127.0.0.1:0x19", -EINVAL, 0, NULL },
	{ ":25", -EINVAL, 0, NULL },
	{ "", -EINVAL, 0, NULL },
	{ ":", -EINVAL, 0, NULL },
	{ "localhost:25", -EINVAL, 0, NULL },
	{ "127.0.0:25", -EINVAL, 0, NULL },
	{ "127.0.0.256:25", -EINVAL, 0, NULL },
	{ "1.2.3.4.5:25", -EINVAL, 0, NULL },
	{ "127.0.0.1:25:26", -EINVAL, 0, NULL },
	{ " 127.0.0.1:25", -EINVAL, 0, NULL },
	{ "::1:25", -EINVAL, 0, NULL },               /* IPv6 needs brackets */
	{ "[::1]", -EINVAL, 0, NULL },
	{ "[::1]:", -EINVAL, 0, NULL },
	{ "[::1]25", -EINVAL, 0, NULL },
	{ "[::1:25", -EINVAL, 0, NULL },
	{ "::1]:25", -EINVAL, 0, NULL },
	{ "[]:25", -EINVAL, 0, NULL },
	{ "[127.0.0.1]:25", -EINVAL, 0, NULL },       /* brackets are for IPv6 */
	{ "[::1]:0", -EINVAL, 0, NULL },
	{ "[::1]:65536", -EINVAL, 0, NULL },
	{ "[::g]:25", -EINVAL, 0, NULL },
	{ "[1:2:3:4:5:6:7:8:9]:25", -EINVAL, 0, NULL },
	{ "[fe80::1%lo]:25", -EINVAL, 0, NULL },
	{ "[0000:0000:0000:0000:0000:0000:0000:0000:0000]:25", -EINVAL, 0, NULL },   /* too long for the buffer */
};

Test(netaddr, parse_hostport_table)
{
	for (size_t i = 0; i < N(hostport_cases); i++) {
		const struct hostport_case *c = &hostport_cases[i];
		struct sockaddr_storage ss;
		socklen_t len = 0;
		char buf[128];

		int rc = netaddr_parse_hostport(c->text, &ss, &len);
		cr_expect_eq(rc, c->want_rc, "parse_hostport(\"%s\"): got rc %d, want %d", c->text, rc, c->want_rc);
		if (rc != 0 || c->want_rc != 0)
			continue;
		cr_expect_eq(ss.ss_family, c->want_family, "parse_hostport(\"%s\"): got family %d, want %d",
			     c->text, ss.ss_family, c->want_family);
		socklen_t want_len = c->want_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
		cr_expect_eq(len, want_len, "parse_hostport(\"%s\"): got len %u, want %u", c->text,
			     (unsigned)len, (unsigned)want_len);
		netaddr_format((struct sockaddr *)&ss, buf, sizeof(buf));
		cr_expect_str_eq(buf, c->want_format, "format(parse(\"%s\")): got \"%s\", want \"%s\"",
				 c->text, buf, c->want_format);
	}
}

Test(netaddr, parse_hostport_fields)
{
	struct sockaddr_storage ss;
	socklen_t len;

	cr_assert_eq(netaddr_parse_hostport("192.0.2.10:2525", &ss, &len), 0);
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
	cr_expect_eq(ntohs(sin->sin_port), 2525, "port: got %u, want 2525", ntohs(sin->sin_port));
	cr_expect_eq(ntohl(sin->sin_addr.s_addr), 0xc000020au, "addr: got %08x, want c000020a",
		     ntohl(sin->sin_addr.s_addr));

	cr_assert_eq(netaddr_parse_hostport("[2001:db8::2]:65535", &ss, &len), 0);
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
	struct in6_addr want;
	inet_pton(AF_INET6, "2001:db8::2", &want);
	cr_expect_eq(ntohs(sin6->sin6_port), 65535, "port: got %u, want 65535", ntohs(sin6->sin6_port));
	cr_expect(memcmp(&sin6->sin6_addr, &want, sizeof(want)) == 0, "v6 address bytes differ");
	cr_expect_eq(sin6->sin6_scope_id, 0u);
	cr_expect_eq(sin6->sin6_flowinfo, 0u);
}

struct cidr_parse_case {
	const char *text;
	int want_rc;
	int want_family;
	unsigned want_prefix;
	const char *want_network;   /* the address with host bits cleared */
};

static const struct cidr_parse_case cidr_parse_cases[] = {
	{ "127.0.0.0/8", 0, AF_INET, 8, "127.0.0.0" },
	{ "127.1.2.3/8", 0, AF_INET, 8, "127.0.0.0" },
	{ "10.1.2.3", 0, AF_INET, 32, "10.1.2.3" },
	{ "10.1.2.3/32", 0, AF_INET, 32, "10.1.2.3" },
	{ "0.0.0.0/0", 0, AF_INET, 0, "0.0.0.0" },
	{ "255.255.255.255/0", 0, AF_INET, 0, "0.0.0.0" },
	{ "172.31.255.255/13", 0, AF_INET, 13, "172.24.0.0" },
	{ "192.168.255.255/23", 0, AF_INET, 23, "192.168.254.0" },
	{ "10.255.255.255/31", 0, AF_INET, 31, "10.255.255.254" },
	{ "10.0.0.0/08", 0, AF_INET, 8, "10.0.0.0" },
	{ "::1/128", 0, AF_INET6, 128, "::1" },
	{ "::1", 0, AF_INET6, 128, "::1" },
	{ "::/0", 0, AF_INET6, 0, "::" },
	{ "ffff:ffff::/0", 0, AF_INET6, 0, "::" },
	{ "2001:db8:ffff::1/32", 0, AF_INET6, 32, "2001:db8::" },
	{ "2001:db8:ffff::1/35", 0, AF_INET6, 35, "2001:db8:e000::" },
	{ "fe80::1:2:3:4/64", 0, AF_INET6, 64, "fe80::" },
	{ "2001:db8::ffff/127", 0, AF_INET6, 127, "2001:db8::fffe" },
	{ "::ffff:10.1.2.3/104", 0, AF_INET6, 104, "::ffff:10.0.0.0" },
	/* invalid */
	{ "10.0.0.0/33", -EINVAL, 0, 0, NULL },
	{ "::/129", -EINVAL, 0, 0, NULL },
	{ "10.0.0.0/", -EINVAL, 0, 0, NULL },
	{ "10.0.0.0/-1", -EINVAL, 0, 0, NULL },
	{ "10.0.0.0/+8", -EINVAL, 0, 0, NULL },
	{ "10.0.0.0/8x", -EINVAL, 0, 0, NULL },
	{ "10.0.0.0/8/8", -EINVAL, 0, 0, NULL },
	{ "10.0.0.0/ 8", -EINVAL, 0, 0, NULL },
	{ "10.0.0.0/99999999999999999999999", -EINVAL, 0, 0, NULL },
	{ "/8", -EINVAL, 0, 0, NULL },
	{ "", -EINVAL, 0, 0, NULL },
	{ "10.0.0/8", -EINVAL, 0, 0, NULL },
	{ "10.0.0.256/8", -EINVAL, 0, 0, NULL },
	{ "localhost", -EINVAL, 0, 0, NULL },
	{ "[::1]/128", -EINVAL, 0, 0, NULL },
	{ "::g/64", -EINVAL, 0, 0, NULL },
	{ "0000:0000:0000:0000:0000:0000:0000:0000:0000/64", -EINVAL, 0, 0, NULL },
};

Test(netaddr, parse_cidr_table)
{
	for (size_t i = 0; i < N(cidr_parse_cases); i++) {
		const struct cidr_parse_case *c = &cidr_parse_cases[i];
		struct netaddr_cidr net;
		char buf[INET6_ADDRSTRLEN];

		int rc = netaddr_parse_cidr(c->text, &net);
		cr_expect_eq(rc, c->want_rc, "parse_cidr(\"%s\"): got rc %d, want %d", c->text, rc, c->want_rc);
		if (rc != 0 || c->want_rc != 0)
			continue;
		cr_expect_eq(net.family, c->want_family, "parse_cidr(\"%s\"): got family %d, want %d",
			     c->text, net.family, c->want_family);
		cr_expect_eq(net.prefix, c->want_prefix, "parse_cidr(\"%s\"): got prefix %u, want %u",
			     c->text, net.prefix, c->want_prefix);
		inet_ntop(net.family, net.addr, buf, sizeof(buf));
		cr_expect_str_eq(buf, c->want_network, "parse_cidr(\"%s\"): got network %s, want %s",
				 c->text, buf, c->want_network);
	}
}

struct match_case {
	const char *net;
	const char *peer;
	bool want;
};

static const struct match_case match_cases[] = {
	{ "0.0.0.0/0", "1.2.3.4", true },
	{ "0.0.0.0/0", "255.255.255.255", true },
	{ "0.0.0.0/0", "::1", false },                  /* v4 networks do not match v6 peers */
	{ "0.0.0.0/0", "::ffff:1.2.3.4", true },        /* ... unless v4-mapped */
	{ "10.0.0.0/8", "10.0.0.0", true },
	{ "10.0.0.0/8", "10.255.255.255", true },
	{ "10.0.0.0/8", "11.0.0.0", false },
	{ "10.0.0.0/8", "9.255.255.255", false },
	{ "10.0.0.0/8", "::ffff:10.9.8.7", true },
	{ "10.0.0.0/8", "::ffff:11.9.8.7", false },
	{ "10.0.0.0/8", "::10.9.8.7", false },
	{ "10.0.0.0/8", "::ffff:0:10.9.8.7", false },
	{ "10.0.0.0/8", "0:0:0:0:0:fffe:a09:807", false },
	{ "192.0.2.7/32", "192.0.2.7", true },
	{ "192.0.2.7/32", "192.0.2.6", false },
	{ "192.0.2.7/32", "192.0.2.8", false },
	{ "192.0.2.7", "::ffff:192.0.2.7", true },
	{ "172.16.0.0/13", "172.16.0.0", true },
	{ "172.16.0.0/13", "172.23.255.255", true },
	{ "172.16.0.0/13", "172.24.0.0", false },
	{ "172.16.0.0/13", "172.15.255.255", false },
	{ "192.168.2.0/23", "192.168.3.1", true },
	{ "192.168.2.0/23", "192.168.4.1", false },
	{ "192.168.2.0/23", "192.168.1.255", false },
	{ "10.0.0.0/1", "127.255.255.255", true },
	{ "10.0.0.0/1", "128.0.0.0", false },
	{ "128.0.0.0/1", "128.0.0.0", true },
	{ "::/0", "::", true },
	{ "::/0", "2001:db8::1", true },
	{ "::/0", "1.2.3.4", false },                   /* v6 networks do not match v4 peers */
	{ "::1/128", "::1", true },
	{ "::1/128", "::2", false },
	{ "::1/128", "::", false },
	{ "::1/128", "127.0.0.1", false },
	{ "2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true },
	{ "2001:db8::/32", "2001:db9::", false },
	{ "2001:db8::/35", "2001:db8:1fff::1", true },
	{ "2001:db8::/35", "2001:db8:2000::1", false },
	{ "2001:db8::ffff/127", "2001:db8::fffe", true },
	{ "2001:db8::ffff/127", "2001:db8::ffff", true },
	{ "2001:db8::ffff/127", "2001:db8::1:0", false },
	{ "::ffff:0:0/96", "::ffff:1.2.3.4", true },
	{ "::ffff:0:0/96", "1.2.3.4", false },
	{ "::ffff:0:0/96", "::fffe:1.2.3.4", false },
};

/* to_sockaddr - a numeric address of either family into ss. */
static const struct sockaddr *to_sockaddr(const char *ip, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
	} else {
		cr_assert_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1, "bad test address %s", ip);
		sin6->sin6_family = AF_INET6;
	}
	return (const struct sockaddr *)ss;
}

Test(netaddr, cidr_match_table)
{
	for (size_t i = 0; i < N(match_cases); i++) {
		const struct match_case *c = &match_cases[i];
		struct netaddr_cidr net;
		struct sockaddr_storage ss;

		cr_assert_eq(netaddr_parse_cidr(c->net, &net), 0, "parse_cidr(\"%s\") failed", c->net);
		bool got = netaddr_cidr_match(&net, to_sockaddr(c->peer, &ss));
		cr_expect_eq(got, c->want, "match(%s, %s): got %d, want %d", c->net, c->peer, got, c->want);
	}
}

Test(netaddr, cidr_match_every_v4_prefix)
{
	/* 10.20.30.40 is in 10.20.30.40/p for every p; flipping bit p-1 leaves it */
	struct sockaddr_storage ss;
	const struct sockaddr *inside = to_sockaddr("10.20.30.40", &ss);

	for (unsigned p = 0; p <= 32; p++) {
		char text[32];
		struct netaddr_cidr net;
		snprintf(text, sizeof(text), "10.20.30.40/%u", p);
		cr_assert_eq(netaddr_parse_cidr(text, &net), 0, "parse_cidr(\"%s\") failed", text);
		cr_expect(netaddr_cidr_match(&net, inside), "match(%s, 10.20.30.40): got 0, want 1", text);
		if (p == 0)
			continue;
		struct sockaddr_in out = *(const struct sockaddr_in *)inside;
		out.sin_addr.s_addr ^= htonl(1u << (32 - p));
		char ip[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &out.sin_addr, ip, sizeof(ip));
		cr_expect(!netaddr_cidr_match(&net, (struct sockaddr *)&out), "match(%s, %s): got 1, want 0", text, ip);
	}
}

Test(netaddr, cidr_match_unknown_family)
{
	struct netaddr_cidr net;
	struct sockaddr_un sun;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	cr_assert_eq(netaddr_parse_cidr("0.0.0.0/0", &net), 0);
	cr_expect(!netaddr_cidr_match(&net, (struct sockaddr *)&sun), "AF_UNIX matched 0.0.0.0/0");
	cr_assert_eq(netaddr_parse_cidr("::/0", &net), 0);
	cr_expect(!netaddr_cidr_match(&net, (struct sockaddr *)&sun), "AF_UNIX matched ::/0");
}

Test(netaddr, format_round_trips)
{
	static const char *const texts[] = {
		"127.0.0.1:2525", "0.0.0.0:1", "192.0.2.255:65535",
		"[::1]:25", "[::]:2525", "[2001:db8::1:2]:587", "[fe80::1]:65535", "[::ffff:10.0.0.1]:25",
	};

	for (size_t i = 0; i < N(texts); i++) {
		struct sockaddr_storage ss, again;
		socklen_t len, len2;
		char buf[80], buf2[80];

		cr_assert_eq(netaddr_parse_hostport(texts[i], &ss, &len), 0, "parse(\"%s\") failed", texts[i]);
		netaddr_format((struct sockaddr *)&ss, buf, sizeof(buf));
		cr_expect_str_eq(buf, texts[i], "format(parse(\"%s\")): got \"%s\"", texts[i], buf);
		cr_assert_eq(netaddr_parse_hostport(buf, &again, &len2), 0, "parse(\"%s\") failed", buf);
		cr_expect_eq(len, len2);
		cr_expect(memcmp(&ss, &again, len) == 0, "parse(format(x)) != x for %s", texts[i]);
		netaddr_format(( struct sockaddr *)&again, buf2, sizeof(buf2));
		cr_expect_str_eq(buf2, buf);
	}
}

Test(netaddr, format_ip_and_small_buffers)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char buf[64];

	cr_assert_eq(netaddr_parse_hostport("[2001:db8::7]:25", &ss, &len), 0);
	cr_expect_str_eq(netaddr_format_ip((struct sockaddr *)&ss, buf, sizeof(buf)), "2001:db8::7");
	cr_assert_eq(netaddr_parse_hostport("198.51.100.4:25", &ss, &len), 0);
	cr_expect_str_eq(netaddr_format_ip((struct sockaddr *)&ss, buf, sizeof(buf)), "198.51.100.4");

	/* a buffer too small is truncated, never overrun */
	char small[8];
	memset(small, 'x', sizeof(small));
	netaddr_format((struct sockaddr *)&ss, small, sizeof(small));
	cr_expect_eq(strlen(small), sizeof(small) - 1, "got \"%s\"", small);
	cr_expect_str_eq(small, "198.51.");

	/* an unknown family formats as "?" */
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	cr_expect_str_eq(netaddr_format_ip((struct sockaddr *)&sun, buf, sizeof(buf)), "?");
}
