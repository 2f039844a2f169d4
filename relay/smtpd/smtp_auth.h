/*
 * smtp_auth - password checks for SMTP AUTH off the worker loop.
 *
 * users_verify costs tens of milliseconds (crypt is slow by design), far
 * too long for a worker's event loop. The check runs on the "auth" helper
 * pool (relay/daemon/helper.h: one thread for the process) and the answer
 * comes back on the worker's own loop.
 *
 *   hw = helper_worker_new(w);             on the worker thread, once
 *   r = calloc(...); fill cfg (held), db, user, password, done, ctx;
 *   smtp_auth_submit(hw, r);               r->done(r) runs later on w's
 *                                          loop with r->ok set; r is the
 *                                          caller's again (wipe, free)
 *
 * Ownership: the request and db must live until done runs: the caller
 * holds a reference to the config that owns the db in r->cfg
 * (config_hold) and releases it when done has run.
 */
#ifndef RINGMAIL_SMTP_AUTH_H
#define RINGMAIL_SMTP_AUTH_H

#include <stdbool.h>

#include "helper.h"
#include "sasl.h"

struct config;
struct users_db;

struct smtp_auth_request {
	struct helper_job job;			/* first */
	const struct config *cfg;		/* held: it owns db */
	const struct users_db *db;
	char user[SASL_USER_MAX + 1];
	char password[SASL_PASSWORD_MAX + 1];
	bool ok;				/* the verdict, when done runs */
	void (*done)(struct smtp_auth_request *r);
	void *ctx;
};

/* smtp_auth_submit - check r->user / r->password against r->db. */
void smtp_auth_submit(struct helper_worker *hw, struct smtp_auth_request *r);

#endif
