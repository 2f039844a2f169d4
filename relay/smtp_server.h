/*
 * smtp_server - the SMTP server on a worker: glue between a connection's
 * bytes (conn), the pure SMTP session, and the worker's spool shard.
 */
#ifndef RINGMAIL_SMTP_SERVER_H
#define RINGMAIL_SMTP_SERVER_H

#include "conn.h"
#include "worker.h"

extern const struct conn_handler smtp_server_handler;

/* smtp_server_worker_init / _exit - per-worker state (on the worker thread). */
void smtp_server_worker_init(struct worker *w);
void smtp_server_worker_exit(struct worker *w);

#endif
