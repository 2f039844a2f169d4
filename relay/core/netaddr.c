/*
 * netaddr - parse and match addresses and CIDR networks; see netaddr.h.
 */
#include "netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* parse_port - a decimal port 1..65535 with nothing after it. */
static int parse_port(const char *text, unsigned short *port)
{
	char *end;
	unsigned long v;

	if (*text < '0' || *text > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(text, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > 65535)
		return -EINVAL;
	*port = (unsigned short)v;
	return 0;
}

int netaddr_parse_hostport(const char *text, struct sockaddr_storage *out, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon;
	const char *host_start = text;
	size_t host_len;
	unsigned short port;

	memset(out, 0, sizeof(*out));
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL || close[1] != ':')
			return -EINVAL;
		host_start = text + 1;
		host_len = (size_t)(close - host_start);
		colon = close + 1;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL)
			return -EINVAL;
		host_len = (size_t)(colon - text);
	}
	if (host_len == 0 || host_len >= sizeof(host))
		return -EINVAL;
	memcpy(host, host_start, host_len);
	host[host_len] = '\0';
	if (parse_port(colon + 1, &port) < 0)
		return -EINVAL;

	struct sockaddr_in *sin = (struct sockaddr_in *)out;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
	if (text[0] != '[' && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
		return 0;
	}
	if (text[0] == '[' && inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof(*sin6);
		return 0;
	}
	return -EINVAL;
}

int netaddr_parse_cidr(const char *text, struct netaddr_cidr *out)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(text, '/');
	size_t host_len = slash ? (size_t)(slash - text) : strlen(text);
	unsigned max_prefix;

	memset(out, 0, sizeof(*out));
	if (host_len == 0 || host_len >= sizeof(host))
		return -EINVAL;
	memcpy(host, text, host_len);
	host[host_len] = '\0';
	if (inet_pton(AF_INET, host, out->addr) == 1) {
		out->family = AF_INET;
		max_prefix = 32;
	} else if (inet_pton(AF_INET6, host, out->addr) == 1) {
		out->family = AF_INET6;
		max_prefix = 128;
	} else {
		return -EINVAL;
	}
	out->prefix = max_prefix;
	if (slash != NULL) {
		char *end;
		if (slash[1] < '0' || slash[1] > '9')
			return -EINVAL;
		unsigned long p = strtoul(slash + 1, &end, 10);
		if (*end != '\0' || p > max_prefix)
			return -EINVAL;
		out->prefix = (unsigned)p;
	}
	for (unsigned bit = out->prefix; bit < max_prefix; bit++)
		out->addr[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
	return 0;
}

bool netaddr_cidr_match(const struct netaddr_cidr *net, const struct sockaddr *addr)
{
	static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const unsigned char *bytes;

	if (addr->sa_family == AF_INET) {
		if (net->family != AF_INET)
			return false;
		bytes = (const unsigned char *)&((const struct sockaddr_in *)addr)->sin_addr;
	} else if (addr->sa_family == AF_INET6) {
		bytes = (const unsigned char *)&((const struct sockaddr_in6 *)addr)->sin6_addr;
		if (net->family == AF_INET) {
			if (memcmp(bytes, v4mapped, sizeof(v4mapped)) != 0)
				return false;
			bytes += 12;
		}
	} else {
		return false;
	}
	unsigned full = net->prefix / 8, rest = net->prefix % 8;
	if (memcmp(bytes, net->addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff00u >> rest);
	return (bytes[full] & mask) == net->addr[full];
}

char *netaddr_format_ip(const struct sockaddr *addr, char *buf, size_t size)
{
	const void *src = addr->sa_family == AF_INET6
		? (const void *)&((const struct sockaddr_in6 *)addr)->sin6_addr
		: (const void *)&((const struct sockaddr_in *)addr)->sin_addr;

	if (inet_ntop(addr->sa_family, src, buf, (socklen_t)size) == NULL)
		snprintf(buf, size, "?");
	return buf;
}

char *netaddr_format(const struct sockaddr *addr, char *buf, size_t size)
{
	char ip[INET6_ADDRSTRLEN];
	unsigned port;

	netaddr_format_ip(addr, ip, sizeof(ip));
	if (addr->sa_family == AF_INET6) {
		port = ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
		snprintf(buf, size, "[%s]:%u", ip, port);
	} else {
		port = ntohs(((const struct sockaddr_in *)addr)->sin_port);
		snprintf(buf, size, "%s:%u", ip, port);
	}
	return buf;
}
