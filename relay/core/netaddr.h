/*
 * netaddr - socket addresses and CIDR networks as the config writes them.
 *
 *   "127.0.0.1:2525", "[::1]:2525", "0.0.0.0:25"   -> netaddr_parse_hostport
 *   "127.0.0.0/8", "::1/128", "10.1.2.3"           -> netaddr_parse_cidr
 *
 * Pure code: no DNS, no sockets. IPv4-mapped IPv6 peers (::ffff:a.b.c.d)
 * match IPv4 networks, since a dual-stack listener reports them that way.
 */
#ifndef RINGMAIL_NETADDR_H
#define RINGMAIL_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct netaddr_cidr {
	int family;                 /* AF_INET or AF_INET6 */
	unsigned char addr[16];     /* network byte order, host bits cleared */
	unsigned prefix;
};

/* netaddr_parse_hostport - parse "ip:port" or "[ipv6]:port" (numeric only).
 * Returns 0 or -EINVAL. */
int netaddr_parse_hostport(const char *text, struct sockaddr_storage *out, socklen_t *len);

/* netaddr_parse_cidr - parse "ip/prefix" or a bare ip (a host network). */
int netaddr_parse_cidr(const char *text, struct netaddr_cidr *out);

/* netaddr_cidr_match - is the socket address inside the network? */
bool netaddr_cidr_match(const struct netaddr_cidr *net, const struct sockaddr *addr);

/* netaddr_format - "ip:port" or "[ipv6]:port" into buf; returns buf. */
char *netaddr_format(const struct sockaddr *addr, char *buf, size_t size);

/* netaddr_format_ip - the address alone, no port. */
char *netaddr_format_ip(const struct sockaddr *addr, char *buf, size_t size);

#endif
