/*
 * smtp_dkim - DKIM-sign a received message on a helper thread.
 *
 * At end of data the session waits for the group commit anyway; a
 * message from a trusted client (relay_networks or AUTH) whose From
 * domain has dkim.sign entries is signed first, on the "dkim" helper
 * pool (one thread per CPU), and the signed message is what gets
 * committed: the signature is durable and retries never re-sign.
 *
 *   j = smtp_dkim_job_new(cfg, body, body_len, done, ctx);
 *   smtp_dkim_submit(hw, j);         j->done(j) runs later on the worker
 *   j->result: 0 signed (j->message is the signature fields + body),
 *              -ENOENT nothing to sign with (no From, no matching entry),
 *              another error: signing failed (j->failures counts them;
 *              the message goes out unsigned)
 *   j = smtp_dkim_job_free(j);
 *
 * Ownership: the job holds a reference to cfg (config_hold, dropped by
 * smtp_dkim_job_free) and points at body, which must stay unchanged
 * until done runs (the session is paused). The job owns message.
 */
#ifndef RINGMAIL_SMTP_DKIM_H
#define RINGMAIL_SMTP_DKIM_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "config.h"
#include "dkim.h"
#include "helper.h"

/* Room for the log's "d/s,d/s": every entry's domain and selector. */
#define SMTP_DKIM_SIGNED_TEXT_MAX 512

struct smtp_dkim_job {
	struct helper_job job;                /* first */
	const struct config *cfg;             /* held (its keys) until the job is freed */
	const char *body;
	size_t body_len;
	int64_t timestamp;                    /* t=, taken at submit */
	int result;
	struct buf message;                   /* the signature fields, then body */
	unsigned signed_count[DKIM_ALGORITHM_COUNT];
	unsigned failures;
	char signed_text[SMTP_DKIM_SIGNED_TEXT_MAX];   /* "d/s,d/s" for the log */
	void (*done)(struct smtp_dkim_job *j);
	void *ctx;
};

/* smtp_dkim_enabled - does cfg sign anything at all? */
bool smtp_dkim_enabled(const struct config *cfg);

struct smtp_dkim_job *smtp_dkim_job_new(const struct config *cfg, const char *body, size_t body_len,
					void (*done)(struct smtp_dkim_job *j), void *ctx);

/* smtp_dkim_job_free - accepts NULL, returns NULL. */
struct smtp_dkim_job *smtp_dkim_job_free(struct smtp_dkim_job *j);

/* smtp_dkim_submit - sign on the helper pool; done runs on hw's worker. */
void smtp_dkim_submit(struct helper_worker *hw, struct smtp_dkim_job *j);

/* smtp_dkim_sign - what the helper runs, callable on any thread. */
void smtp_dkim_sign(struct smtp_dkim_job *j);

#endif
