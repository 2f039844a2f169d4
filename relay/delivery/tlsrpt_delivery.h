/*
 * tlsrpt_delivery - what the outbound engine tells TLS-RPT (RFC 8460):
 * one call per TLS session result (or policy failure) of a delivery to a
 * domain's own MX hosts, handed to the reporter thread through the
 * lock-free queue (relay/daemon/tlsrpt_queue.h). Never blocks, never
 * locks; a no-op unless tls_rpt.enabled.
 *
 *   mta_session, STARTTLS + handshake ok:
 *       tlsrpt_delivery_sts_or_none(dl, d, TLSRPT_SUCCESS, &where);
 *   a refused or failed TLS session:
 *       tlsrpt_delivery_sts_or_none(dl, d, TLSRPT_CERTIFICATE_EXPIRED, &where);
 *   DANE (policy "tlsa"), one call with its own strings:
 *       tlsrpt_delivery_record(dl, d, TLSRPT_POLICY_TLSA, tlsa_lines, mx_lines,
 *                              TLSRPT_TLSA_INVALID, &where);
 *
 * The policy of a result: "sts" when an MTA-STS policy (mode enforce or
 * testing) applies to the domain, with the policy's lines and mx patterns;
 * "tlsa" from the DANE code; else "no-policy-found". Results are counted
 * only for mail to the domain's own MX hosts (not a relayhost, a route or
 * a sender route: the report goes to the domain about its MX hosts), and
 * not under delivery.tls "none" (no TLS was tried) nor for local domains.
 *
 * Ownership: every string is copied before the call returns.
 */
#ifndef RINGMAIL_TLSRPT_DELIVERY_H
#define RINGMAIL_TLSRPT_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>

#include "worker.h"

#include "tls.h"
#include "tlsrpt.h"

struct delivery;
struct qdomain;

/* Where a session went; any field may be NULL or "". */
struct tlsrpt_where {
	const char *sending_ip;            /* the egress source bound to */
	const char *mx;                    /* the MX host name */
	const char *ip;                    /* the address connected to */
	const char *reason_code;           /* failure-reason-code */
	const char *additional;            /* additional-information */
};

/* tlsrpt_delivery_wanted - are d's sessions counted? */
bool tlsrpt_delivery_wanted(const struct delivery *dl, const struct qdomain *d);

/* tlsrpt_delivery_record - count one result for d under a given policy. */
void tlsrpt_delivery_record(const struct delivery *dl, const struct qdomain *d, enum tlsrpt_policy_type type,
			    const char *policy_strings, const char *mx_hosts, enum tlsrpt_result result,
			    const struct tlsrpt_where *where);

/* tlsrpt_delivery_tlsa - the same under DANE ("tlsa"): the policy strings
 * are mx's TLSA records ("3 1 1 <hex>", RFC 8460 4.4); false (nothing
 * counted) when mx has no usable records. */
bool tlsrpt_delivery_tlsa(const struct delivery *dl, const struct qdomain *d, const char *mx,
			  enum tlsrpt_result result, const struct tlsrpt_where *where);

/* tlsrpt_delivery_sts_or_none - the same under d's MTA-STS policy, or
 * "no-policy-found" when none applies. */
void tlsrpt_delivery_sts_or_none(const struct delivery *dl, const struct qdomain *d, enum tlsrpt_result result,
				 const struct tlsrpt_where *where);

/* tlsrpt_delivery_cert_result - the RFC 8460 result type of a
 * certificate problem (validation-failure for anything not named). */
enum tlsrpt_result tlsrpt_delivery_cert_result(enum tls_cert_problem p);

/*
 * A report mail on its way into the queue, from the reporter thread to a
 * worker (the DSN path of outcome.c: commit, then delivery_submit):
 *
 *   j = tlsrpt_mail_job_new(sender, rcpt, body, len);     reporter
 *   tlsrpt_mail_job_post(w, j);                           a worker commits it
 *   while ((rc = tlsrpt_mail_job_result(j)) == 1) wait;   0 queued, -errno not
 *   j = tlsrpt_mail_job_release(j);
 *
 * Both sides hold a reference; the last release frees it.
 */
struct tlsrpt_mail_job;

struct tlsrpt_mail_job *tlsrpt_mail_job_new(const char *sender, const char *recipient, const char *body,
					    size_t len);
void tlsrpt_mail_job_post(struct worker *w, struct tlsrpt_mail_job *j);
/* tlsrpt_mail_job_result - 1 pending, 0 durable and queued, -errno. */
int tlsrpt_mail_job_result(const struct tlsrpt_mail_job *j);
/* tlsrpt_mail_job_queue_id - the queue id once queued. */
const char *tlsrpt_mail_job_queue_id(const struct tlsrpt_mail_job *j);
struct tlsrpt_mail_job *tlsrpt_mail_job_release(struct tlsrpt_mail_job *j);

#endif
