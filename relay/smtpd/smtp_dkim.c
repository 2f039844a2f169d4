/*
 * smtp_dkim - the signing job; see smtp_dkim.h.
 *
 * The body hash is computed once per message whatever the number of
 * signatures (every one uses relaxed/relaxed and no l=). Signature
 * fields go above everything else, our Received field included, in the
 * order of the dkim.sign list.
 */
#include "smtp_dkim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dkim_key.h"
#include "xalloc.h"

/* The fields themselves: an RSA-8192 signature with a long h= list is
 * under 3 KiB; the cap only bounds a pathological config. */
#define SMTP_DKIM_FIELDS_MAX (256 * 1024)

static struct helper_pool dkim_pool = HELPER_POOL_INIT("dkim", 0);

bool smtp_dkim_enabled(const struct config *cfg)
{
	return cfg->dkim_signer_count > 0;
}

struct smtp_dkim_job *smtp_dkim_job_new(const struct config *cfg, const char *body, size_t body_len,
					void (*done)(struct smtp_dkim_job *j), void *ctx)
{
	struct smtp_dkim_job *j = xcalloc(1, sizeof(*j));

	j->cfg = config_hold(cfg);
	j->body = body;
	j->body_len = body_len;
	j->timestamp = (int64_t)time(NULL);
	j->done = done;
	j->ctx = ctx;
	j->result = -ENOENT;
	buf_init(&j->message, SMTP_DKIM_FIELDS_MAX + body_len);
	return j;
}

struct smtp_dkim_job *smtp_dkim_job_free(struct smtp_dkim_job *j)
{
	if (j == NULL)
		return NULL;
	buf_free(&j->message);
	config_release(j->cfg);
	free(j);
	return NULL;
}

/* note_signed - "d/s" appended to the log text (cut if it is too long). */
static void note_signed(struct smtp_dkim_job *j, const struct config_dkim_signer *s)
{
	size_t used = strlen(j->signed_text);

	snprintf(j->signed_text + used, sizeof(j->signed_text) - used, "%s%s/%s",
		 used > 0 ? "," : "", s->domain, s->selector);
}

void smtp_dkim_sign(struct smtp_dkim_job *j)
{
	const struct config *cfg = j->cfg;
	struct dkim_header h;
	char from[DKIM_DOMAIN_MAX + 1];
	uint8_t bh[DKIM_HASH_LEN];
	bool hashed = false;

	dkim_header_parse(j->body, j->body_len, &h);
	if (dkim_from_domain(&h, from, sizeof(from)) < 0) {
		dkim_header_free(&h);
		return;        /* -ENOENT: no From, or none we could align with */
	}
	for (size_t i = 0; i < cfg->dkim_signer_count; i++) {
		const struct config_dkim_signer *s = &cfg->dkim_signers[i];
		if (!dkim_domain_aligned(from, s->domain))
			continue;
		if (!hashed) {
			dkim_body_hash(j->body + h.body_offset, j->body_len - h.body_offset, bh);
			hashed = true;
		}
		struct dkim_sign_params p = {
			.domain = s->domain,
			.selector = s->selector,
			.algorithm = dkim_key_algorithm(s->key),
			.timestamp = j->timestamp,
			.expire = cfg->dkim_expire_ms / 1000,
			.sign = dkim_key_sign,
			.sign_ctx = s->key,
		};
		int rc = dkim_sign(&h, (const char *const *)cfg->dkim_headers, cfg->dkim_header_count,
				   bh, &p, &j->message);
		if (rc < 0) {
			j->failures++;
			j->result = rc;
			continue;
		}
		j->signed_count[p.algorithm]++;
		note_signed(j, s);
	}
	dkim_header_free(&h);
	if (buf_len(&j->message) == 0)
		return;
	/* Some signature made it: the message goes out with it, even if
	 * another entry failed (counted and logged by the caller). */
	if (buf_append(&j->message, j->body, j->body_len) < 0) {
		j->failures++;
		j->result = -ENOBUFS;
		buf_free(&j->message);
		memset(j->signed_count, 0, sizeof(j->signed_count));
		j->signed_text[0] = '\0';
		return;
	}
	j->result = 0;
}

static void dkim_run(struct helper_job *job)
{
	smtp_dkim_sign(container_of(job, struct smtp_dkim_job, job));
}

static void dkim_done(struct helper_job *job)
{
	struct smtp_dkim_job *j = container_of(job, struct smtp_dkim_job, job);

	j->done(j);
}

void smtp_dkim_submit(struct helper_worker *hw, struct smtp_dkim_job *j)
{
	j->job.run = dkim_run;
	j->job.done = dkim_done;
	helper_submit(&dkim_pool, hw, &j->job);
}
