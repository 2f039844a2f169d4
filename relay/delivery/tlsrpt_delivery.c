/*
 * tlsrpt_delivery - session results for TLS-RPT; see tlsrpt_delivery.h.
 */
#include "tlsrpt_delivery.h"

#include <stdio.h>
#include <string.h>

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
