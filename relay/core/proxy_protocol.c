/*
 * proxy_protocol - parse HAProxy's PROXY protocol header; see
 * proxy_protocol.h. The specification is HAProxy's doc/proxy-protocol.txt
 * (versions 1 and 2); this follows its receiver rules: v1 is one line of at
 * most 107 bytes with single spaces, v2 a 16-byte fixed part and a block
 * whose length it gives, and anything else is refused.
 */
#include "proxy_protocol.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

static const char v1_prefix[] = "PROXY ";
#define V1_PREFIX_LEN (sizeof(v1_prefix) - 1)

static const unsigned char v2_signature[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

/* v2 address block sizes (source and destination addresses, then ports). */
#define V2_INET_LEN 12
#define V2_INET6_LEN 36
#define V2_UNIX_LEN 216

enum { V2_FAMILY_UNSPEC, V2_FAMILY_INET, V2_FAMILY_INET6, V2_FAMILY_UNIX };
enum { V2_TRANSPORT_UNSPEC, V2_TRANSPORT_STREAM, V2_TRANSPORT_DGRAM };

const char *proxy_protocol_command_name(enum proxy_protocol_command command)
{
	return command == PROXY_PROTOCOL_LOCAL ? "local" : "proxy";
}

/* fail - set the reason and pass the code through. */
static int fail(const char **reason, const char *why, int code)
{
	*reason = why;
	return code;
}

/* v1_port - a decimal port, 1 to 5 digits, 0 to 65535; -1 if not. */
static int v1_port(const char *text)
{
	size_t n = strlen(text);
	long v = 0;

	if (n == 0 || n > 5)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (text[i] < '0' || text[i] > '9')
			return -1;
		v = v * 10 + (text[i] - '0');
	}
	return v <= 65535 ? (int)v : -1;
}

/* v1_address - fill sa (family af) from an address and a port text. */
static bool v1_address(int af, const char *ip, const char *port, struct sockaddr_storage *sa)
{
	int p = v1_port(port);

	memset(sa, 0, sizeof(*sa));
	if (p < 0)
		return false;
	if (af == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)sa;
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)p);
		return inet_pton(AF_INET, ip, &in->sin_addr) == 1;
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons((uint16_t)p);
	return inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1;
}

/* v1_fields - split line at single spaces into at most max fields; a
 * double, leading or trailing space makes an empty field, which the
 * callers refuse. Returns the count, or max + 1 if there are more. */
static size_t v1_fields(char *line, char **fields, size_t max)
{
	size_t n = 0;
	char *p = line;

	for (;;) {
		if (n == max)
			return max + 1;
		fields[n++] = p;
		char *sp = strchr(p, ' ');
		if (sp == NULL)
			return n;
		*sp = '\0';
		p = sp + 1;
	}
}

/* v1_line - the line after "PROXY " (no CRLF, NUL-terminated, changed in
 * place): "UNKNOWN[ anything]" or "TCP4|TCP6 src dst sport dport". */
static int v1_line(char *line, struct proxy_protocol_header *h, const char **reason)
{
	char *f[6];

	memset(h, 0, sizeof(*h));
	h->version = 1;
	h->command = PROXY_PROTOCOL_PROXY;
	/* UNKNOWN: the receiver ignores whatever follows (the spec's rule). */
	if (strncmp(line, "UNKNOWN", 7) == 0 && (line[7] == '\0' || line[7] == ' '))
		return 0;
	size_t n = v1_fields(line, f, 5);
	int af;
	if (strcmp(f[0], "TCP4") == 0)
		af = AF_INET;
	else if (strcmp(f[0], "TCP6") == 0)
		af = AF_INET6;
	else
		return fail(reason, "v1: protocol is not TCP4, TCP6 or UNKNOWN", -EINVAL);
	if (n != 5)
		return fail(reason, "v1: not four fields after the protocol", -EINVAL);
	if (!v1_address(af, f[1], f[3], &h->source) || !v1_address(af, f[2], f[4], &h->destination))
		return fail(reason, "v1: bad address or port", -EINVAL);
	h->has_source = true;
	h->address_len = af == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	return 0;
}

/* v1_parse - data starts with "PROXY ": find the CRLF within 107 bytes. */
static int v1_parse(const unsigned char *data, size_t len, struct proxy_protocol_header *out,
		    const char **reason)
{
	size_t limit = len < PROXY_PROTOCOL_V1_MAX ? len : PROXY_PROTOCOL_V1_MAX;

	for (size_t i = V1_PREFIX_LEN; i < limit; i++) {
		if (data[i] == '\r') {
			if (i + 1 == len)
				return 0;            /* the LF may follow */
			if (i + 1 >= PROXY_PROTOCOL_V1_MAX || data[i + 1] != '\n')
				return fail(reason, "v1: CR without LF", -EINVAL);
			char line[PROXY_PROTOCOL_V1_MAX];
			memcpy(line, data + V1_PREFIX_LEN, i - V1_PREFIX_LEN);
			line[i - V1_PREFIX_LEN] = '\0';
			struct proxy_protocol_header h;
			int rc = v1_line(line, &h, reason);
			if (rc < 0)
				return rc;
			*out = h;
			return (int)(i + 2);
		}
		if (data[i] < 0x20 || data[i] > 0x7e)
			return fail(reason, "v1: a control or 8-bit byte in the line", -EINVAL);
	}
	if (len >= PROXY_PROTOCOL_V1_MAX)
		return fail(reason, "v1: no CRLF within 107 bytes", -EMSGSIZE);
	return 0;
}

/* v2_tlvs - walk the TLVs in block[0..len): each is a type byte, a
 * two-byte big-endian length and that many bytes. Returns the count, or
 * -1 when one runs past the block. */
static int v2_tlvs(const unsigned char *block, size_t len)
{
	size_t off = 0;
	int count = 0;

	while (off < len) {
		if (len - off < 3)
			return -1;
		size_t vlen = ((size_t)block[off + 1] << 8) | block[off + 2];
		if (vlen > len - off - 3)
			return -1;
		off += 3 + vlen;
		count++;
	}
	return count;
}

/* v2_addresses - the PROXY command's address block (len bytes): the
 * family's addresses and ports, then TLVs. */
static int v2_addresses(const unsigned char *block, size_t len, int family,
			struct proxy_protocol_header *h, const char **reason)
{
	size_t used = 0;

	if (family == V2_FAMILY_INET) {
		if (len < V2_INET_LEN)
			return fail(reason, "v2: IPv4 address block too short", -EINVAL);
		struct sockaddr_in *src = (struct sockaddr_in *)&h->source;
		struct sockaddr_in *dst = (struct sockaddr_in *)&h->destination;
		src->sin_family = dst->sin_family = AF_INET;
		memcpy(&src->sin_addr, block, 4);
		memcpy(&dst->sin_addr, block + 4, 4);
		memcpy(&src->sin_port, block + 8, 2);
		memcpy(&dst->sin_port, block + 10, 2);
		h->address_len = sizeof(struct sockaddr_in);
		h->has_source = true;
		used = V2_INET_LEN;
	} else if (family == V2_FAMILY_INET6) {
		if (len < V2_INET6_LEN)
			return fail(reason, "v2: IPv6 address block too short", -EINVAL);
		struct sockaddr_in6 *src = (struct sockaddr_in6 *)&h->source;
		struct sockaddr_in6 *dst = (struct sockaddr_in6 *)&h->destination;
		src->sin6_family = dst->sin6_family = AF_INET6;
		memcpy(&src->sin6_addr, block, 16);
		memcpy(&dst->sin6_addr, block + 16, 16);
		memcpy(&src->sin6_port, block + 32, 2);
		memcpy(&dst->sin6_port, block + 34, 2);
		h->address_len = sizeof(struct sockaddr_in6);
		h->has_source = true;
		used = V2_INET6_LEN;
	} else if (family == V2_FAMILY_UNIX) {
		/* A unix socket path is no client address: keep the peer. */
		if (len < V2_UNIX_LEN)
			return fail(reason, "v2: unix address block too short", -EINVAL);
		used = V2_UNIX_LEN;
	} else {
		return 0;       /* AF_UNSPEC: the receiver ignores the block */
	}
	int tlvs = v2_tlvs(block + used, len - used);
	if (tlvs < 0) {
		h->has_source = false;
		return fail(reason, "v2: a TLV runs past the header", -EINVAL);
	}
	h->tlv_count = (unsigned)tlvs;
	return 0;
}

/* v2_parse - data starts with the whole 12-byte signature. */
static int v2_parse(const unsigned char *data, size_t len, size_t max,
		    struct proxy_protocol_header *out, const char **reason)
{
	if (len < PROXY_PROTOCOL_V2_FIXED)
		return 0;
	unsigned version = data[12] >> 4, command = data[12] & 0x0f;
	unsigned family = data[13] >> 4, transport = data[13] & 0x0f;
	size_t block_len = ((size_t)data[14] << 8) | data[15];

	if (version != 2)
		return fail(reason, "v2: version is not 2", -EINVAL);
	if (command > 1)
		return fail(reason, "v2: command is not LOCAL or PROXY", -EINVAL);
	if (family > V2_FAMILY_UNIX || transport > V2_TRANSPORT_DGRAM)
		return fail(reason, "v2: unknown address family or transport", -EINVAL);
	if (PROXY_PROTOCOL_V2_FIXED + block_len > max)
		return fail(reason, "v2: header longer than proxy_protocol.max_header_size", -EMSGSIZE);
	if (len < PROXY_PROTOCOL_V2_FIXED + block_len)
		return 0;

	struct proxy_protocol_header h;
	memset(&h, 0, sizeof(h));
	h.version = 2;
	h.command = command == 0 ? PROXY_PROTOCOL_LOCAL : PROXY_PROTOCOL_PROXY;
	if (h.command == PROXY_PROTOCOL_PROXY) {
		/* A datagram flow cannot have reached a stream listener. */
		if (transport == V2_TRANSPORT_DGRAM)
			return fail(reason, "v2: datagram transport on a stream", -EINVAL);
		int rc = v2_addresses(data + PROXY_PROTOCOL_V2_FIXED, block_len, (int)family, &h, reason);
		if (rc < 0)
			return rc;
	}
	/* LOCAL: the address block, TLVs included, is ignored (the spec). */
	*out = h;
	return (int)(PROXY_PROTOCOL_V2_FIXED + block_len);
}

int proxy_protocol_parse(const void *data, size_t len, size_t max,
			 struct proxy_protocol_header *out, const char **reason)
{
	const unsigned char *p = data;
	const char *unused;

	if (reason == NULL)
		reason = &unused;
	if (len == 0)
		return 0;
	if (p[0] == v1_prefix[0]) {
		size_t n = len < V1_PREFIX_LEN ? len : V1_PREFIX_LEN;
		if (memcmp(p, v1_prefix, n) != 0)
			return fail(reason, "not a PROXY protocol header", -EINVAL);
		return n < V1_PREFIX_LEN ? 0 : v1_parse(p, len, out, reason);
	}
	size_t n = len < sizeof(v2_signature) ? len : sizeof(v2_signature);
	if (memcmp(p, v2_signature, n) != 0)
		return fail(reason, "not a PROXY protocol header", -EINVAL);
	return n < sizeof(v2_signature) ? 0 : v2_parse(p, len, max, out, reason);
}
