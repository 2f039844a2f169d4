/*
 * test_proxy_protocol - the PROXY protocol header parser: v1 TCP4, TCP6 and
 * UNKNOWN; v2 PROXY (IPv4, IPv6, unix, AF_UNSPEC, with TLVs) and LOCAL;
 * every truncation of a good header asks for more; oversized, malformed
 * and garbage input is refused, as early as it can be.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "netaddr.h"
#include "proxy_protocol.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_DEFAULT 4096

static const unsigned char sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* v2 - build a v2 header into out: ver_cmd, fam, then block of blen. */
static size_t v2(unsigned char *out, unsigned ver_cmd, unsigned fam, const void *block, size_t blen)
{
	memcpy(out, sig, 12);
	out[12] = (unsigned char)ver_cmd;
	out[13] = (unsigned char)fam;
	out[14] = (unsigned char)(blen >> 8);
	out[15] = (unsigned char)blen;
	if (blen > 0)
		memcpy(out + 16, block, blen);
	return 16 + blen;
}

static const char *fmt(const struct sockaddr_storage *sa, char *buf, size_t n)
{
	return netaddr_format((const struct sockaddr *)sa, buf, n);
}

struct v1_case {
	const char *text;
	int want;                  /* > 0: length; 0: need more; < 0: error */
	const char *want_source;   /* NULL: has_source false */
	const char *want_destination;
};

static const struct v1_case v1_cases[] = {
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n", 44, "192.0.2.1:56324", "198.51.100.2:25" },
	{ "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", 56,
	  "255.255.255.255:65535", "255.255.255.255:65535" },
	{ "PROXY TCP4 127.0.0.5 127.0.0.1 0 1\r\n", 36, "127.0.0.5:0", "127.0.0.1:1" },
	{ "PROXY TCP6 2001:db8::1 2001:db8::2 4000 587\r\n", 45, "[2001:db8::1]:4000", "[2001:db8::2]:587" },
	{ "PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n", 37, "[::ffff:192.0.2.1]:1", "[::1]:2" },
	{ "PROXY UNKNOWN\r\n", 15, NULL, NULL },
	{ "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", 59, NULL, NULL },
	/* the longest v1 header: 107 bytes */
	{ "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	  104, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535" },
	/* the client's first bytes follow the header */
	{ "PROXY TCP4 10.0.0.1 10.0.0.2 1000 25\r\nEHLO x\r\n", 38, "10.0.0.1:1000", "10.0.0.2:25" },
	/* need more */
	{ "", 0, NULL, NULL },
	{ "P", 0, NULL, NULL },
	{ "PROXY", 0, NULL, NULL },
	{ "PROXY ", 0, NULL, NULL },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25", 0, NULL, NULL },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r", 0, NULL, NULL },
	/* bad */
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\n", -EINVAL, NULL, NULL },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\rX", -EINVAL, NULL, NULL },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n", -EINVAL, NULL, NULL },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25 7\r\n", -EINVAL, NULL, NULL },
	{ "PROXY TCP4 192.0.2.1  198.51.100.2 56324 25\r\n", -EINVAL, NULL, NULL },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25 \r\n", -EINVAL, NULL, NULL },
	{ "PROXY  TCP4 192.0.2.1 198.51.100.2 56324 25\r\n", -EINVAL, NULL, NULL },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 65536 25\r\n", -EINVAL, NULL, NULL },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 -1 25\r\n", -EINVAL, NULL, NULL },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 123456 25\r\n", -EINVAL, NULL, NULL },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 x 25\r\n", -EINVAL, NULL, NULL },
	{ "PROXY TCP4 192.0.2 198.51.100.2 1 25\r\n", -EINVAL, NULL, NULL },
	{ "PROXY TCP4 2001:db8::1 198.51.100.2 1 25\r\n", -EINVAL, NULL, NULL },
	{ "PROXY TCP6 192.0.2.1 2001:db8::2 1 25\r\n", -EINVAL, NULL, NULL },
	{ "PROXY TCP5 192.0.2.1 198.51.100.2 1 25\r\n", -EINVAL, NULL, NULL },
	{ "PROXY tcp4 192.0.2.1 198.51.100.2 1 25\r\n", -EINVAL, NULL, NULL },
	{ "PROXY UNKNOWNX\r\n", -EINVAL, NULL, NULL },
	{ "PROXY \r\n", -EINVAL, NULL, NULL },
	{ "PROXY TCP4 192.0.2.1\t198.51.100.2 1 25\r\n", -EINVAL, NULL, NULL },
	{ "PROXY TCP4 192.0.2.\xc3\xa9 198.51.100.2 1 25\r\n", -EINVAL, NULL, NULL },
	/* garbage, refused without waiting for more */
	{ "EHLO client.example\r\n", -EINVAL, NULL, NULL },
	{ "E", -EINVAL, NULL, NULL },
	{ "PROXX", -EINVAL, NULL, NULL },
	{ "proxy TCP4", -EINVAL, NULL, NULL },
	{ "\r\n\r\n\0\r\nQUIX", -EINVAL, NULL, NULL },
	{ "\x16\x03\x01\x02\x00", -EINVAL, NULL, NULL },    /* a TLS ClientHello */
};

Test(proxy_protocol, v1_table)
{
	for (size_t i = 0; i < N(v1_cases); i++) {
		const struct v1_case *tc = &v1_cases[i];
		struct proxy_protocol_header h;
		const char *reason = NULL;
		size_t len = strlen(tc->text);
		if (strncmp(tc->text, "\r\n\r\n", 4) == 0)
			len = 12;      /* holds a NUL */
		memset(&h, 0xa5, sizeof(h));
		int got = proxy_protocol_parse(tc->text, len, MAX_DEFAULT, &h, &reason);
		cr_expect_eq(got, tc->want, "%zu %.40s: got %d, want %d", i, tc->text, got, tc->want);
		if (got < 0)
			cr_expect(reason != NULL && reason[0] != '\0', "%zu: no reason", i);
		if (got <= 0 || tc->want <= 0)
			continue;
		cr_expect_eq(h.version, 1);
		cr_expect_eq(h.command, PROXY_PROTOCOL_PROXY);
		cr_expect_eq(h.has_source, tc->want_source != NULL, "%zu: has_source %d", i, h.has_source);
		if (tc->want_source != NULL && h.has_source) {
			char a[80], b[80];
			cr_expect_str_eq(fmt(&h.source, a, sizeof(a)), tc->want_source, "%zu", i);
			cr_expect_str_eq(fmt(&h.destination, b, sizeof(b)), tc->want_destination, "%zu", i);
		}
	}
}

/* v1: 107 bytes without a CRLF is too long, whatever follows. */
Test(proxy_protocol, v1_oversized)
{
	char line[200];
	const char *reason = NULL;
	struct proxy_protocol_header h;

	memset(line, 'A', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	cr_expect_eq(proxy_protocol_parse(line, 106, MAX_DEFAULT, &h, &reason), 0);
	cr_expect_eq(proxy_protocol_parse(line, 107, MAX_DEFAULT, &h, &reason), -EMSGSIZE);
	cr_expect_eq(proxy_protocol_parse(line, sizeof(line), MAX_DEFAULT, &h, &reason), -EMSGSIZE);
	/* CRLF at bytes 106 and 107: a 108-byte line */
	line[105] = '\r';
	line[106] = '\n';
	cr_expect_eq(proxy_protocol_parse(line, 107, MAX_DEFAULT, &h, NULL), 107);
	line[105] = 'A';
	line[106] = '\r';
	line[107] = '\n';
	cr_expect_lt(proxy_protocol_parse(line, 108, MAX_DEFAULT, &h, NULL), 0);
}

/* Every proper prefix of a good header asks for more. */
static void expect_prefixes_need_more(const unsigned char *hdr, size_t len)
{
	struct proxy_protocol_header h;

	for (size_t n = 0; n < len; n++) {
		const char *reason = NULL;
		int got = proxy_protocol_parse(hdr, n, MAX_DEFAULT, &h, &reason);
		cr_expect_eq(got, 0, "prefix %zu of %zu: got %d (%s)", n, len, got, reason ? reason : "");
	}
}

Test(proxy_protocol, v1_truncated)
{
	static const char *const good[] = {
		"PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n",
		"PROXY TCP6 2001:db8::1 2001:db8::2 4000 587\r\n",
		"PROXY UNKNOWN\r\n",
	};
	for (size_t i = 0; i < N(good); i++)
		expect_prefixes_need_more((const unsigned char *)good[i], strlen(good[i]));
}

Test(proxy_protocol, v2_proxy_inet)
{
	unsigned char block[12 + 8] = { 192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0, 25,
					/* TLVs: ALPN "h2", NOOP with no value */
					0x01, 0x00, 0x02, 'h', '2', 0x04, 0x00, 0x00 };
	unsigned char hdr[64];
	size_t len = v2(hdr, 0x21, 0x11, block, sizeof(block));
	struct proxy_protocol_header h;
	char a[80];

	hdr[len] = 'E';    /* the client's first byte */
	cr_assert_eq(proxy_protocol_parse(hdr, len + 1, MAX_DEFAULT, &h, NULL), (int)len);
	cr_expect_eq(h.version, 2);
	cr_expect_eq(h.command, PROXY_PROTOCOL_PROXY);
	cr_expect(h.has_source);
	cr_expect_eq(h.address_len, sizeof(struct sockaddr_in));
	cr_expect_str_eq(fmt(&h.source, a, sizeof(a)), "192.0.2.1:56324");
	cr_expect_str_eq(fmt(&h.destination, a, sizeof(a)), "198.51.100.2:25");
	cr_expect_eq(h.tlv_count, 2);
	expect_prefixes_need_more(hdr, len);
}

Test(proxy_protocol, v2_proxy_inet6)
{
	unsigned char block[36];
	unsigned char hdr[64];
	struct proxy_protocol_header h;
	char a[80];

	inet_pton(AF_INET6, "2001:db8::1", block);
	inet_pton(AF_INET6, "::1", block + 16);
	block[32] = 0x12, block[33] = 0x34, block[34] = 0x02, block[35] = 0x4b;
	size_t len = v2(hdr, 0x21, 0x21, block, sizeof(block));
	cr_assert_eq(proxy_protocol_parse(hdr, len, MAX_DEFAULT, &h, NULL), (int)len);
	cr_expect(h.has_source);
	cr_expect_eq(h.tlv_count, 0);
	cr_expect_str_eq(fmt(&h.source, a, sizeof(a)), "[2001:db8::1]:4660");
	cr_expect_str_eq(fmt(&h.destination, a, sizeof(a)), "[::1]:587");
	expect_prefixes_need_more(hdr, len);
}

/* LOCAL keeps the socket's peer, whatever the block holds; so do UNSPEC
 * and unix addresses. */
Test(proxy_protocol, v2_local_unspec_unix)
{
	unsigned char hdr[512], block[300];
	struct proxy_protocol_header h;
	size_t len;

	memset(block, 0xee, sizeof(block));
	len = v2(hdr, 0x20, 0x00, NULL, 0);
	cr_expect_eq(proxy_protocol_parse(hdr, len, MAX_DEFAULT, &h, NULL), 16);
	cr_expect_eq(h.command, PROXY_PROTOCOL_LOCAL);
	cr_expect_not(h.has_source);
	/* LOCAL with an address block of garbage: ignored, skipped */
	len = v2(hdr, 0x20, 0x11, block, 40);
	cr_expect_eq(proxy_protocol_parse(hdr, len, MAX_DEFAULT, &h, NULL), 56);
	cr_expect_eq(h.command, PROXY_PROTOCOL_LOCAL);
	cr_expect_not(h.has_source);
	/* PROXY, AF_UNSPEC */
	len = v2(hdr, 0x21, 0x00, block, 5);
	cr_expect_eq(proxy_protocol_parse(hdr, len, MAX_DEFAULT, &h, NULL), 21);
	cr_expect_eq(h.command, PROXY_PROTOCOL_PROXY);
	cr_expect_not(h.has_source);
	/* PROXY, AF_UNIX stream: 216 bytes of paths */
	len = v2(hdr, 0x21, 0x31, block, 216);
	memset(hdr + 16, 0, 216);
	cr_expect_eq(proxy_protocol_parse(hdr, len, MAX_DEFAULT, &h, NULL), 232);
	cr_expect_not(h.has_source);
	len = v2(hdr, 0x21, 0x31, block, 215);
	cr_expect_eq(proxy_protocol_parse(hdr, len, MAX_DEFAULT, &h, NULL), -EINVAL);
}

Test(proxy_protocol, v2_bad)
{
	unsigned char hdr[128], block[64];
	struct proxy_protocol_header h;
	const char *reason;
	size_t len;

	memset(block, 0, sizeof(block));
	struct {
		unsigned ver_cmd, fam;
		size_t blen;
		const char *what;
	} cases[] = {
		{ 0x11, 0x11, 12, "version 1 in a v2 header" },
		{ 0x31, 0x11, 12, "version 3" },
		{ 0x22, 0x11, 12, "command 2" },
		{ 0x2f, 0x11, 12, "command 15" },
		{ 0x21, 0x41, 12, "family 4" },
		{ 0x21, 0x13, 12, "transport 3" },
		{ 0x21, 0x12, 12, "IPv4 datagram" },
		{ 0x21, 0x11, 11, "IPv4 block too short" },
		{ 0x21, 0x21, 35, "IPv6 block too short" },
		{ 0x21, 0x11, 13, "one byte of TLV" },
		{ 0x21, 0x11, 14, "two bytes of TLV" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		reason = NULL;
		len = v2(hdr, cases[i].ver_cmd, cases[i].fam, block, cases[i].blen);
		int got = proxy_protocol_parse(hdr, len, MAX_DEFAULT, &h, &reason);
		cr_expect_eq(got, -EINVAL, "%s: got %d", cases[i].what, got);
		cr_expect(reason != NULL, "%s: no reason", cases[i].what);
	}
	/* a TLV whose length runs past the block */
	block[12] = 0x02, block[13] = 0x00, block[14] = 0x05, block[15] = 'a';
	len = v2(hdr, 0x21, 0x11, block, 16);
	cr_expect_eq(proxy_protocol_parse(hdr, len, MAX_DEFAULT, &h, NULL), -EINVAL);
	/* ... and one that fits exactly */
	block[14] = 0x01;
	len = v2(hdr, 0x21, 0x11, block, 16);
	cr_expect_eq(proxy_protocol_parse(hdr, len, MAX_DEFAULT, &h, NULL), (int)len);
	cr_expect_eq(h.tlv_count, 1);
	/* the version is checked before the rest of the header is waited for */
	len = v2(hdr, 0x11, 0x11, block, 12);
	cr_expect_eq(proxy_protocol_parse(hdr, 16, MAX_DEFAULT, &h, NULL), -EINVAL);
}

/* The size bound: a v2 length beyond max is refused from the fixed part
 * alone, without waiting for the block. */
Test(proxy_protocol, v2_oversized)
{
	unsigned char hdr[16];
	struct proxy_protocol_header h;
	const char *reason = NULL;

	v2(hdr, 0x21, 0x11, NULL, 0);
	hdr[14] = 0xff, hdr[15] = 0xff;
	cr_expect_eq(proxy_protocol_parse(hdr, 16, MAX_DEFAULT, &h, &reason), -EMSGSIZE);
	cr_expect(reason != NULL);
	hdr[14] = 0x00, hdr[15] = 240;       /* 256 in all */
	cr_expect_eq(proxy_protocol_parse(hdr, 16, 255, &h, NULL), -EMSGSIZE);
	cr_expect_eq(proxy_protocol_parse(hdr, 16, 256, &h, NULL), 0);
}

Test(proxy_protocol, garbage)
{
	static const unsigned char inputs[][16] = {
		{ 0 },
		{ 0xff, 0xfe },
		{ '\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\r' },
		{ '\r', '\n', 'E', 'H', 'L', 'O' },
		{ 'Q', 'U', 'I', 'T', '\r', '\n' },
	};
	static const size_t lens[] = { 1, 2, 12, 6, 6 };
	struct proxy_protocol_header h;

	for (size_t i = 0; i < N(inputs); i++)
		cr_expect_eq(proxy_protocol_parse(inputs[i], lens[i], MAX_DEFAULT, &h, NULL), -EINVAL, "%zu", i);
	cr_expect_str_eq(proxy_protocol_command_name(PROXY_PROTOCOL_LOCAL), "local");
	cr_expect_str_eq(proxy_protocol_command_name(PROXY_PROTOCOL_PROXY), "proxy");
}
