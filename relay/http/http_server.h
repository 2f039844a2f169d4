/*
 * http_server - the HTTP API on the SMTP workers (http.listen): glue
 * between a connection's bytes (conn), the request parser
 * (http_request), the bearer tokens (http_tokens, from the config) and
 * the injection path (http_inject).
 *
 * Each worker listens on every http.listen address with SO_REUSEPORT,
 * like SMTP: a connection lives on the worker that accepted it, and the
 * messages it injects go into that worker's spool shard and commit.
 *
 * Endpoints: POST /api/inject/v1 (docs/HTTP.md). Every answer other than
 * 100 Continue carries a JSON body; errors are {"error": "..."}.
 * Keep-alive (HTTP/1.1 default); pipelined requests wait their turn.
 */
#ifndef RINGMAIL_HTTP_SERVER_H
#define RINGMAIL_HTTP_SERVER_H

#include <stdint.h>

#include "conn.h"
#include "worker.h"

extern const struct conn_handler http_server_handler;

/* https_server_handler: http.tls_listen, the same API after an
 * implicit TLS handshake with tls.cert_file (server_tls.h). */
extern const struct conn_handler https_server_handler;

/* http_server_module - per-worker state of the HTTP API (SMTP workers). */
extern const struct worker_module http_server_module;

/* Answers by class, for metrics. */
enum http_status_class {
	HTTP_STATUS_2XX,
	HTTP_STATUS_4XX,
	HTTP_STATUS_5XX,
	HTTP_STATUS_CLASSES
};

struct http_server_stats {
	uint64_t connections;
	uint64_t requests;
	uint64_t responses[HTTP_STATUS_CLASSES];
	uint64_t unauthorized;             /* 401 */
	uint64_t forbidden;                /* 403 */
	uint64_t timeouts;
	uint64_t injected_messages;
	uint64_t injected_recipients;
	uint64_t failed_recipients;
	uint64_t commit_failures;
};

/* http_server_get_stats - w's counters (worker thread only). */
void http_server_get_stats(const struct worker *w, struct http_server_stats *out);

#endif
