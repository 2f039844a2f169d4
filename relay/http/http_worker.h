/*
 * http_worker - the HTTP API's per-worker state (w->http), shared by the
 * files of relay/http only.
 */
#ifndef RINGMAIL_HTTP_WORKER_H
#define RINGMAIL_HTTP_WORKER_H

#include "http_server.h"
#include "worker.h"

struct helper_worker;

struct http_server_worker {
	struct helper_worker *helpers;     /* DKIM signing; made on first use */
	struct http_server_stats stats;
};

/* http_worker_helpers - w's end of the helper pools, made on first use;
 * NULL (logged) without an eventfd. */
struct helper_worker *http_worker_helpers(struct worker *w);

#endif
