/*
 * mta_sts_fetch - fetch a domain's MTA-STS policy text over HTTPS
 * (RFC 8461 3.3) with libcurl. Blocking: call it only on a helper thread
 * (relay/daemon/helper.c), never on a worker's loop.
 *
 *   mta_sts_fetch_global_init();            once, before threads and seccomp
 *   struct mta_sts_fetch_opts o = { .timeout_ms = 10000, .max_bytes = 65536,
 *                                   .ca_file = "/etc/ssl/certs/ca-certificates.crt" };
 *   char body[MTA_STS_POLICY_MAX];
 *   size_t len;
 *   char err[256];
 *   int rc = mta_sts_fetch(&o, "example.com", body, sizeof(body), &len, err, sizeof(err));
 *
 * The URL is https://mta-sts.DOMAIN/.well-known/mta-sts.txt; the
 * certificate must verify against ca_file for mta-sts.DOMAIN; redirects
 * are not followed (RFC 8461 3.3); only HTTP 200 is a policy; a body over
 * max_bytes (at most the buffer) or a transfer over timeout_ms fails. A
 * Content-Type other than text/plain is refused (the RFC's SHOULD, against
 * user-hosted files on shared web servers).
 *
 * connect_to (NULL for none) is libcurl's CURLOPT_CONNECT_TO list,
 * "HOST:PORT:CONNECT-HOST:CONNECT-PORT" entries: the tests point
 * mta-sts.DOMAIN:443 at a loopback server; name and certificate checks
 * still use mta-sts.DOMAIN.
 *
 * resolve (NULL for none) is CURLOPT_RESOLVE, "HOST:PORT:ADDRESS[,ADDRESS]"
 * entries: the daemon resolves mta-sts.DOMAIN with its own resolver on the
 * worker (dns.h) and passes the addresses here, so libcurl never calls
 * getaddrinfo (which would read /etc/nsswitch.conf and load NSS modules
 * under Landlock and seccomp, and start a resolver thread per fetch).
 *
 * Returns 0 with *len bytes in body, -EINVAL for a bad domain, -ENOENT for
 * an HTTP answer other than 200 (the domain has no policy there),
 * -EMSGSIZE for an oversized body, -EPROTO for a wrong Content-Type, -EIO
 * for any transfer failure (DNS, connect, TLS, certificate, timeout); err
 * says which in one line. Ownership: nothing is kept after the call.
 */
#ifndef RINGMAIL_MTA_STS_FETCH_H
#define RINGMAIL_MTA_STS_FETCH_H

#include <stddef.h>

struct mta_sts_fetch_opts {
	long timeout_ms;                   /* whole transfer */
	size_t max_bytes;
	const char *ca_file;               /* NULL: libcurl's built-in default */
	const char *const *connect_to;     /* NULL-terminated, or NULL */
	const char *const *resolve;        /* NULL-terminated, or NULL */
};

/* mta_sts_fetch_global_init - curl_global_init; 0 or -EIO. */
int mta_sts_fetch_global_init(void);

int mta_sts_fetch(const struct mta_sts_fetch_opts *o, const char *domain, char *body, size_t cap,
		  size_t *len, char *err, size_t errlen);

#endif
