/*
 * http_inject - POST /api/inject/v1 on a worker: from the JSON body to
 * durable spool records, by the same path as an SMTP message (smtpd's
 * smtp_server.c): the relay checks, DKIM signing on the helper threads,
 * the worker's group commit, then delivery_submit. The answer is made
 * only once every record of the request is durable or failed.
 *
 *   struct http_inject *j = http_inject_start(w, &who, body, len, done, ctx);
 *   ... done(j, ctx) later on w's loop (or at once: check the status):
 *   status = http_inject_status(j);  reply = http_inject_reply(j, &n);
 *   j = http_inject_free(j);
 *
 * One message for all recipients, unless the request carries
 * substitutions: then one message per recipient (each its own content).
 * Recipients are checked like RCPT TO: a bad address, a local one
 * without a mailbox, or one on the suppression list (suppression.check
 * injection or both) fails that recipient only ("failed_recipients");
 * the rest are queued. Limits: smtp.max_message_size per message,
 * smtp.max_line per line, smtp.max_recipients per request.
 *
 * Statuses: 200 (something queued), 400 (bad request: JSON, fields,
 * sender, content), 413 (a message is too large), 422 (no recipient
 * acceptable), 503 (the spool failed: nothing of it is durable).
 *
 * Ownership: the job copies what it needs from the request; done runs
 * once; the caller frees the job after done (or after a synchronous
 * status), never before.
 */
#ifndef RINGMAIL_HTTP_INJECT_H
#define RINGMAIL_HTTP_INJECT_H

#include <stdbool.h>
#include <stddef.h>

#include "worker.h"

struct http_inject;

/* Who injects: for the Received header, logs and the record. */
struct http_inject_client {
	const char *address;               /* peer "ip:port" */
	const char *ip;
	const char *token_name;
};

/* http_inject_start - check and queue the request body. Returns the job;
 * when http_inject_pending(j) is false the answer is ready now and done
 * is not called. */
struct http_inject *http_inject_start(struct worker *w, const struct http_inject_client *who,
				      const char *body, size_t len,
				      void (*done)(struct http_inject *j, void *ctx), void *ctx);

bool http_inject_pending(const struct http_inject *j);

/* http_inject_status / http_inject_reply - the HTTP status and JSON body
 * to answer with. */
int http_inject_status(const struct http_inject *j);
const char *http_inject_reply(const struct http_inject *j, size_t *len);

/* http_inject_free - accepts NULL, returns NULL; never while pending. */
struct http_inject *http_inject_free(struct http_inject *j);

#endif
