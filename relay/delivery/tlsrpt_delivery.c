/*
 * tlsrpt_delivery - session results for TLS-RPT; see tlsrpt_delivery.h.
 */
#include "tlsrpt_delivery.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commit.h"
#include "dane_delivery.h"
#include "log.h"
#include "mta_sts_delivery.h"
#include "queue.h"
#include "tlsrpt_queue.h"

bool tlsrpt_delivery_wanted(const struct delivery *dl, const struct qdomain *d)
{
	const struct config *cfg = dl->w->cfg;

	if (d == NULL || !tlsrpt_queue_enabled() || !cfg->tls_rpt_enabled || d->hop != NULL ||
	    dl->w->role == WORKER_ROLE_LOCAL || cfg->relayhost[0] != '\0' || config_is_local_domain(cfg, d->name))
		return false;
	const struct config_domain *p = config_domain_policy(cfg, d->name);
	return (p->route == NULL || p->route[0] == '\0') && p->tls != CONFIG_TLS_NONE;
}

void tlsrpt_delivery_record(const struct delivery *dl, const struct qdomain *d, enum tlsrpt_policy_type type,
			    const char *policy_strings, const char *mx_hosts, enum tlsrpt_result result,
			    const struct tlsrpt_where *where)
{
	static const struct tlsrpt_where nowhere;

	if (!tlsrpt_delivery_wanted(dl, d))
		return;
	if (where == NULL)
		where = &nowhere;
	struct tlsrpt_event e = {
		.time_s = wall_ms() / 1000, .domain = d->name, .policy_type = type,
		.policy_strings = policy_strings, .mx_hosts = mx_hosts, .result = result,
		.sending_ip = where->sending_ip, .receiving_mx = where->mx, .receiving_ip = where->ip,
		.reason_code = where->reason_code, .additional = where->additional,
	};
	tlsrpt_queue_record(&e);
}

/* sts_lines - the policy as RFC 8461 text lines (RFC 8460 4.4's
 * policy-string) and its mx patterns, '\n'-separated. */
static void sts_lines(const struct mta_sts_policy *p, char *lines, size_t lsize, char *mx, size_t msize)
{
	size_t n = (size_t)snprintf(lines, lsize, "version: STSv1\nmode: %s", mta_sts_mode_name(p->mode));
	size_t m = 0;

	mx[0] = '\0';
	for (size_t i = 0; i < p->mx_count; i++) {
		if (n < lsize)
			n += (size_t)snprintf(lines + n, lsize - n, "\nmx: %s", p->mx[i]);
		if (m < msize)
			m += (size_t)snprintf(mx + m, msize - m, "%s%s", i ? "\n" : "", p->mx[i]);
	}
	if (n < lsize)
		snprintf(lines + n, lsize - n, "\nmax_age: %u", p->max_age_s);
}

bool tlsrpt_delivery_tlsa(const struct delivery *dl, const struct qdomain *d, const char *mx,
			  enum tlsrpt_result result, const struct tlsrpt_where *where)
{
	size_t n = 0;
	const struct dane_tlsa *r = mx != NULL ? dane_delivery_records(dl, d, mx, &n) : NULL;

	if (r == NULL || n == 0)
		return false;
	if (!tlsrpt_delivery_wanted(dl, d))
		return true;
	char lines[4096];
	size_t used = 0;
	for (size_t i = 0; i < n && used + 16 < sizeof(lines); i++) {
		used += (size_t)snprintf(lines + used, sizeof(lines) - used, "%s%u %u %u ", i ? "\n" : "",
					 r[i].usage, r[i].selector, r[i].mtype);
		for (size_t k = 0; k < r[i].len && used + 3 < sizeof(lines); k++)
			used += (size_t)snprintf(lines + used, sizeof(lines) - used, "%02x", r[i].data[k]);
	}
	tlsrpt_delivery_record(dl, d, TLSRPT_POLICY_TLSA, lines, mx, result, where);
	return true;
}

void tlsrpt_delivery_sts_or_none(const struct delivery *dl, const struct qdomain *d, enum tlsrpt_result result,
				 const struct tlsrpt_where *where)
{
	if (!tlsrpt_delivery_wanted(dl, d))
		return;
	const struct mta_sts_policy *p = mta_sts_delivery_policy(dl, d);
	if (p == NULL) {
		tlsrpt_delivery_record(dl, d, TLSRPT_POLICY_NONE, NULL, NULL, result, where);
		return;
	}
	char lines[4096], mx[2048];
	sts_lines(p, lines, sizeof(lines), mx, sizeof(mx));
	tlsrpt_delivery_record(dl, d, TLSRPT_POLICY_STS, lines, mx, result, where);
}

enum tlsrpt_result tlsrpt_delivery_cert_result(enum tls_cert_problem p)
{
	switch (p) {
	case TLS_CERT_EXPIRED:
		return TLSRPT_CERTIFICATE_EXPIRED;
	case TLS_CERT_HOST_MISMATCH:
		return TLSRPT_CERTIFICATE_HOST_MISMATCH;
	case TLS_CERT_NOT_TRUSTED:
		return TLSRPT_CERTIFICATE_NOT_TRUSTED;
	default:
		return TLSRPT_VALIDATION_FAILURE;
	}
}

/* ---- report mail into the queue -------------------------------------- */

struct tlsrpt_mail_job {
	struct worker_post post;           /* first */
	struct commit_waiter waiter;
	struct worker *w;
	char queue_id[32];
	char *sender, *recipient, *body;
	size_t body_len;
	bool retried;
	_Atomic int result;                /* 1 pending, 0 queued, -errno */
	_Atomic int refs;
};

struct tlsrpt_mail_job *tlsrpt_mail_job_new(const char *sender, const char *recipient, const char *body,
					    size_t len)
{
	struct tlsrpt_mail_job *j = xcalloc(1, sizeof(*j));

	j->sender = xstrdup(sender);
	j->recipient = xstrdup(recipient);
	j->body = xmalloc(len);
	memcpy(j->body, body, len);
	j->body_len = len;
	atomic_init(&j->result, 1);
	atomic_init(&j->refs, 2);
	return j;
}

struct tlsrpt_mail_job *tlsrpt_mail_job_release(struct tlsrpt_mail_job *j)
{
	if (j != NULL && atomic_fetch_sub(&j->refs, 1) == 1) {
		free(j->sender);
		free(j->recipient);
		free(j->body);
		free(j);
	}
	return NULL;
}

int tlsrpt_mail_job_result(const struct tlsrpt_mail_job *j)
{
	return atomic_load(&j->result);
}

const char *tlsrpt_mail_job_queue_id(const struct tlsrpt_mail_job *j)
{
	return j->queue_id;
}

static void mail_job_spool(struct tlsrpt_mail_job *j, struct spool_message *msg, struct spool_rcpt *rcpt)
{
	memset(msg, 0, sizeof(*msg));
	memset(rcpt, 0, sizeof(*rcpt));
	rcpt->address = j->recipient;
	rcpt->notify = SPOOL_NOTIFY_FAILURE;       /* a lost report comes back to tls_rpt.sender */
	rcpt->orcpt = "";
	msg->queue_id = j->queue_id;
	msg->arrival_usec = wall_ms() * 1000;
	msg->client_addr = "local";
	msg->helo = "";
	msg->auth_user = "";
	msg->sender = j->sender;
	msg->envid = "";
	msg->rcpt_count = 1;
	msg->rcpts = rcpt;
	msg->body = (const uint8_t *)j->body;
	msg->body_len = j->body_len;
	msg->body_type = SPOOL_BODY_7BIT;
}

static void mail_job_finish(struct tlsrpt_mail_job *j, int result)
{
	atomic_store(&j->result, result);
	tlsrpt_mail_job_release(j);
}

/* mail_job_committed - the batch holding the report ended: queue it, or
 * try the next batch once before giving up (the reporter retries). */
static void mail_job_committed(struct commit_waiter *waiter, int result)
{
	struct tlsrpt_mail_job *j = container_of(waiter, struct tlsrpt_mail_job, waiter);
	struct spool_message msg;
	struct spool_rcpt rcpt;

	mail_job_spool(j, &msg, &rcpt);
	if (result < 0) {
		if (!j->retried) {
			j->retried = true;
			if (commit_message(j->w, &msg, &j->waiter) == 0)
				return;
		}
		mail_job_finish(j, result);
		return;
	}
	delivery_submit(j->w, &msg, NULL);
	mail_job_finish(j, 0);
}

static void mail_job_arrived(struct worker *w, struct worker_post *p)
{
	struct tlsrpt_mail_job *j = (struct tlsrpt_mail_job *)p;
	struct spool_message msg;
	struct spool_rcpt rcpt;

	j->w = w;
	j->waiter.done = mail_job_committed;
	spool_shard_new_queue_id(commit_shard(w), j->queue_id);
	mail_job_spool(j, &msg, &rcpt);
	int rc = commit_message(w, &msg, &j->waiter);
	if (rc < 0)
		mail_job_finish(j, rc);
}

static void mail_job_discard(struct worker_post *p)
{
	mail_job_finish((struct tlsrpt_mail_job *)p, -ECANCELED);
}

void tlsrpt_mail_job_post(struct worker *w, struct tlsrpt_mail_job *j)
{
	j->post.handle = mail_job_arrived;
	j->post.discard = mail_job_discard;
	worker_post(NULL, w, &j->post);
}
