/*
 * nexthop - parse "host[:port]", "[host]:port", "ip[:port]", "[ip]:port"
 * and "[ipv6]:port"; see nexthop.h.
 *
 * A bare IPv4 address is an address, never a host name: looking
 * "10.0.0.5" up in DNS fails and used to bounce every message (issue 17).
 * A bare IPv6 address has colons of its own, so it takes no port unless
 * it is bracketed.
 */
#include "nexthop.h"
#include "errmsg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* port_parse - decimal 1..65535, at most 5 digits, nothing else. */
static int port_parse(const char *s, size_t n, uint16_t *port)
{
	unsigned long v = 0;

	if (n == 0 || n > 5)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

/* host_parse - a DNS name of n bytes into out, lower case; one trailing
 * dot is dropped. */
static int host_parse(const char *s, size_t n, char *out)
{
	size_t label = 0;

	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0)
				return -EINVAL;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
			label++;
		} else if (c >= 'A' && c <= 'Z') {
			c = (unsigned char)(c - 'A' + 'a');
			label++;
		} else {
			return -EINVAL;
		}
		if (label > 63)
			return -EINVAL;
		out[i] = (char)c;
	}
	out[n] = '\0';
	return 0;
}

/* addr_parse - an IPv4 or IPv6 address (with "IPv6:" when tagged) of n
 * bytes: 1 when it is one, 0 when it is not. */
static int addr_parse(const char *s, size_t n, bool tagged_ok, struct nexthop *out)
{
	char buf[INET6_ADDRSTRLEN + 8];

	if (n == 0 || n >= sizeof(buf))
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (tagged_ok && strncasecmp(buf, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, buf + 5, &out->addr.v6) != 1)
			return 0;
		out->family = AF_INET6;
	} else if (inet_pton(AF_INET, buf, &out->addr.v4) == 1) {
		out->family = AF_INET;
	} else if (inet_pton(AF_INET6, buf, &out->addr.v6) == 1) {
		out->family = AF_INET6;
	} else {
		return 0;
	}
	inet_ntop(out->family, &out->addr, out->host, sizeof(out->host));
	out->kind = NEXTHOP_ADDR;
	return 1;
}

/* looks_numeric - digits and dots only: meant as an IPv4 address, so it
 * must be one ("10.0.0.256" is a mistake, not a host name). */
static bool looks_numeric(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
			return false;
	return n > 0;
}

/* bracketed - "[inside]" then optionally ":port". */
static int bracketed(const char *text, struct nexthop *out, char *err, size_t errlen)
{
	const char *close = strchr(text, ']');
	size_t n;

	if (close == NULL)
		return errmsg_set(err, errlen, -EINVAL, "\"%s\": '[' without ']'", text);
	n = (size_t)(close - text - 1);
	if (close[1] == ':') {
		if (port_parse(close + 2, strlen(close + 2), &out->port) < 0)
			return errmsg_set(err, errlen, -EINVAL, "\"%s\": bad port (1 to 65535)", text);
	} else if (close[1] != '\0') {
		return errmsg_set(err, errlen, -EINVAL, "\"%s\": only \":port\" may follow ']'", text);
	}
	if (addr_parse(text + 1, n, true, out))
		return 0;
	if (looks_numeric(text + 1, n))
		return errmsg_set(err, errlen, -EINVAL, "\"%s\": not an IP address", text);
	out->kind = NEXTHOP_HOST;
	if (host_parse(text + 1, n, out->host) < 0)
		return errmsg_set(err, errlen, -EINVAL, "\"%s\": not a host name or IP address", text);
	return 0;
}

int nexthop_parse(const char *text, struct nexthop *out, char *err, size_t errlen)
{
	const char *colon;
	size_t n;

	memset(out, 0, sizeof(*out));
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (text == NULL || text[0] == '\0')
		return errmsg_set(err, errlen, -EINVAL, "empty next hop");
	for (const char *p = text; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			return errmsg_set(err, errlen, -EINVAL, "next hop contains a space or a control character");
	if (text[0] == '[')
		return bracketed(text, out, err, errlen);
	colon = strchr(text, ':');
	if (colon != NULL && strchr(colon + 1, ':') != NULL) {
		/* Two colons or more: a bare IPv6 address, no port. */
		if (addr_parse(text, strlen(text), false, out) && out->family == AF_INET6)
			return 0;
		return errmsg_set(err, errlen, -EINVAL, "\"%s\": an IPv6 address with a port needs brackets: \"[ipv6]:port\"", text);
	}
	n = colon != NULL ? (size_t)(colon - text) : strlen(text);
	if (colon != NULL && port_parse(colon + 1, strlen(colon + 1), &out->port) < 0)
		return errmsg_set(err, errlen, -EINVAL, "\"%s\": bad port (1 to 65535)", text);
	if (looks_numeric(text, n)) {
		if (addr_parse(text, n, false, out) && out->family == AF_INET)
			return 0;
		memset(&out->addr, 0, sizeof(out->addr));
		return errmsg_set(err, errlen, -EINVAL, "\"%s\": not an IPv4 address", text);
	}
	out->kind = NEXTHOP_MX;
	if (host_parse(text, n, out->host) < 0)
		return errmsg_set(err, errlen, -EINVAL, "\"%s\": not a host name", text);
	return 0;
}

const char *nexthop_kind_name(enum nexthop_kind kind)
{
	switch (kind) {
	case NEXTHOP_MX: return "mx";
	case NEXTHOP_HOST: return "host";
	case NEXTHOP_ADDR: return "address";
	}
	return "?";
}
