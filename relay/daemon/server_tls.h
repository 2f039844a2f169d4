/*
 * server_tls - the worker's server-side TLS configuration: the certificate
 * and key of tls.cert_file / tls.key_file, shared by every protocol that
 * offers TLS on the worker (SMTP STARTTLS and smtps, POP3 STLS and pop3s).
 *
 *   struct tls_config *tc = server_tls_config(w);   NULL: no certificate
 *   conn_start_server_tls(c, tc, timer);
 *
 * Rebuilt on first use after a reload; a certificate that no longer loads
 * keeps the one we had. Owned by the worker (server_tls_module frees it).
 * Session resumption state is shared by every worker through a root
 * config (tls.h), so a client resumes whichever worker it lands on.
 */
#ifndef RINGMAIL_SERVER_TLS_H
#define RINGMAIL_SERVER_TLS_H

#include "worker.h"

struct tls_config *server_tls_config(struct worker *w);

extern const struct worker_module server_tls_module;

#endif
