/*
 * smtp_server - the SMTP server on a worker: glue between a connection's
 * bytes (conn), the pure SMTP session, and the worker's spool shard.
 */
#ifndef RINGMAIL_SMTP_SERVER_H
#define RINGMAIL_SMTP_SERVER_H

#include <stdint.h>

#include "conn.h"
#include "dkim.h"
#include "smtp_session.h"
#include "worker.h"

struct tls_config;

/* One handler per listener role (config_listen_role): plain SMTP, implicit
 * TLS (handshake before the greeting) and submission (AUTH before MAIL). */
extern const struct conn_handler smtp_server_handler;
extern const struct conn_handler smtps_server_handler;
extern const struct conn_handler submission_server_handler;

/* smtp_server_module - per-worker state of the SMTP server (every worker:
 * the local one has no SMTP listener). */
extern const struct worker_module smtp_server_module;

struct smtp_server_stats {
	uint64_t messages;                 /* accepted (durable, 250 said) */
	uint64_t rejected_commits;         /* the spool failed: 452 said */
	uint64_t auth_ok, auth_failed;
	uint64_t dkim_signed[DKIM_ALGORITHM_COUNT];   /* signatures made, per algorithm */
	uint64_t dkim_failures;            /* signatures that could not be made */
	uint64_t rejected[SMTP_REJECT_COUNT];   /* refusals by reason; BUSY stays 0
						 * (the worker counts refused connections) */
};

/* smtp_server_get_stats - w's counters (worker thread only). */
void smtp_server_get_stats(const struct worker *w, struct smtp_server_stats *out);

#endif
