/*
 * nexthop - the syntax of a next hop (delivery.relayhost, domains[].route,
 * delivery.sender_routes[].route), as Postfix writes it; pure, no DNS.
 *
 *   struct nexthop hop;
 *   char err[128];
 *   if (nexthop_parse("[smtp.example.com]:587", &hop, err, sizeof err) < 0)
 *       ... err says why ...
 *
 *   host           MX lookup of host, port 25 (the caller's default)
 *   host:port      MX lookup of host, that port
 *   [host]         A/AAAA of host only, no MX lookup
 *   [host]:port
 *   1.2.3.4        an IP literal: never looked up in DNS
 *   1.2.3.4:port
 *   [1.2.3.4]:port
 *   [IPv6:::1]:port, [::1]:port, ::1 (no port without brackets)
 *
 * Host names are checked (letters, digits, '-', '_', dots between
 * non-empty labels of at most 63 bytes, at most 253 bytes) and lower-cased.
 */
#ifndef RINGMAIL_NEXTHOP_H
#define RINGMAIL_NEXTHOP_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

enum nexthop_kind {
	NEXTHOP_MX,        /* "host[:port]": the host's MX records (else its address) */
	NEXTHOP_HOST,      /* "[host][:port]": the host's A/AAAA records only */
	NEXTHOP_ADDR,      /* an IP literal, bracketed or not: no DNS at all */
};

#define NEXTHOP_NAME_MAX 254

struct nexthop {
	enum nexthop_kind kind;
	char host[NEXTHOP_NAME_MAX];   /* lower-case name, or the address as text */
	uint16_t port;                 /* 0 = not given: the caller's default */
	int family;                    /* NEXTHOP_ADDR: AF_INET or AF_INET6 */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} addr;
};

/* nexthop_parse - text into *out. Returns 0, or -EINVAL with a reason in
 * err (NUL-terminated, at most errlen bytes; err may be NULL). */
int nexthop_parse(const char *text, struct nexthop *out, char *err, size_t errlen);

/* nexthop_kind_name - "mx", "host" or "address". */
const char *nexthop_kind_name(enum nexthop_kind kind);

#endif
