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
 * TLS: not yet (no STLS, no implicit-TLS listener): USER/PASS and AUTH PLAIN
 * work only when pop3.allow_plaintext is true.
 */
#ifndef RINGMAIL_POP3_SERVER_H
#define RINGMAIL_POP3_SERVER_H

#include "conn.h"
#include "worker.h"

extern const struct conn_handler pop3_server_handler;

/* pop3_server_worker_init / _exit - per-worker state (on the worker thread). */
void pop3_server_worker_init(struct worker *w);
void pop3_server_worker_exit(struct worker *w);

#endif
