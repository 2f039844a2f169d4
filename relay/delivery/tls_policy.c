/*
 * tls_policy - outbound STARTTLS decisions; see tls_policy.h.
 */
#include "tls_policy.h"

enum tls_step tls_policy_at_ready(enum config_tls_policy policy, bool offered, bool tried,
				  bool clear_only)
{
	if (policy == CONFIG_TLS_NONE)
		return TLS_STEP_CLEAR;
	if (offered && !tried && !clear_only)
		return TLS_STEP_START;
	return policy == CONFIG_TLS_MAY ? TLS_STEP_CLEAR : TLS_STEP_REFUSE;
}

bool tls_policy_retry_clear(enum config_tls_policy policy, bool clear_only)
{
	return policy == CONFIG_TLS_MAY && !clear_only;
}

bool tls_policy_required(enum config_tls_policy policy)
{
	return policy == CONFIG_TLS_ENCRYPT || policy == CONFIG_TLS_VERIFY ||
	       policy == CONFIG_TLS_IMPLICIT || policy == CONFIG_TLS_DANE;
}

bool tls_policy_authenticated(const struct tls_auth_facts *f)
{
	if (f->tls_on && f->policy == CONFIG_TLS_DANE)
		return true;       /* the chain matched the host's DNSSEC-secure TLSA */
	if (!f->tls_on || f->policy != CONFIG_TLS_VERIFY)
		return false;      /* no TLS, or a certificate nobody checked */
	return f->mta_sts_enforce || f->next_hop;
}
