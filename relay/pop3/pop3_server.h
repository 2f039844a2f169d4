/*
 * pop3_server - the POP3 endpoint on the local worker: glue between a
 * connection's bytes (conn), the pure POP3 session (pop3_session), the
 * users db (config->users), the failed-login limiter (ratelimit) and the
 * Maildir mailboxes (pop3_maildir).
 *
 * Blocking: logins hash the password (users_verify, tens of ms with
 * yescrypt) and mailboxes are read with blocking file I/O, inline on the
 * local worker's thread. No SMTP session or relay delivery runs there, so
 * only other POP3 sessions and local deliveries wait meanwhile (one hash per
 * login). A helper thread for the hashing is the next step if that matters.
 *
 * TLS: STLS is offered when tls.cert_file is set; pop3s.listen is implicit
 * TLS (RFC 8314). USER/PASS and AUTH PLAIN work under TLS, and in clear
 * only when pop3.allow_plaintext is true.
 */
#ifndef RINGMAIL_POP3_SERVER_H
#define RINGMAIL_POP3_SERVER_H

#include "conn.h"
#include "worker.h"

/* pop3_server_handler: pop3.listen (STLS when TLS is configured);
 * pop3s_server_handler: pop3s.listen (TLS handshake before the greeting). */
extern const struct conn_handler pop3_server_handler;
extern const struct conn_handler pop3s_server_handler;

/* pop3_server_module - per-worker state of the POP3 server (the local
 * worker only). */
extern const struct worker_module pop3_server_module;

#endif
