/*
 * smtp_auth - password checks for SMTP AUTH off the worker loop.
 *
 * users_verify costs tens of milliseconds (crypt is slow by design), far
 * too long for a worker's event loop. A worker hands a request to one
 * process-wide helper thread (started on first use) and hears the answer
 * on its own loop: the helper pushes the finished request onto the
 * worker's result queue and, if the queue was empty, writes the worker's
 * eventfd, which a poll in the worker's ring is waiting on.
 *
 *   aw = smtp_auth_worker_new(w);          on the worker thread
 *   r = calloc(...); fill db, user, password, done, ctx;
 *   smtp_auth_submit(aw, r);               r->done(r) runs later on w's
 *                                          loop with r->ok set; r is the
 *                                          caller's again (wipe, free)
 *   aw = smtp_auth_worker_free(aw);        when no request is pending
 *
 * Ownership: the request and db must live until done runs; the caller
 * keeps the users db alive (configs live until the process ends).
 */
#ifndef RINGMAIL_SMTP_AUTH_H
#define RINGMAIL_SMTP_AUTH_H

#include <stdbool.h>

#include "mpsc.h"
#include "sasl.h"
#include "worker.h"

struct users_db;
struct smtp_auth_worker;

struct smtp_auth_request {
	struct mpsc_node node;			/* first: the result queue */
	struct smtp_auth_request *next;		/* the helper's queue */
	struct smtp_auth_worker *aw;
	const struct users_db *db;
	char user[SASL_USER_MAX + 1];
	char password[SASL_PASSWORD_MAX + 1];
	bool ok;				/* the verdict, when done runs */
	void (*done)(struct smtp_auth_request *r);
	void *ctx;
};

/* smtp_auth_worker_new - the worker's result queue and its eventfd poll;
 * NULL (logged) when no eventfd can be made: then AUTH is not offered. */
struct smtp_auth_worker *smtp_auth_worker_new(struct worker *w);

/* smtp_auth_worker_free - accepts NULL, returns NULL. */
struct smtp_auth_worker *smtp_auth_worker_free(struct smtp_auth_worker *aw);

/* smtp_auth_submit - check r->user / r->password against r->db. */
void smtp_auth_submit(struct smtp_auth_worker *aw, struct smtp_auth_request *r);

#endif
