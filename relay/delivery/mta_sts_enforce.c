/*
 * mta_sts_enforce - MTA-STS per-host decisions; see mta_sts_enforce.h.
 */
#include "mta_sts_enforce.h"

struct mta_sts_host_decision mta_sts_enforce_host(enum config_tls_policy configured, bool explicit_tls,
						  const struct mta_sts_policy *policy, const char *mx_host)
{
	struct mta_sts_host_decision d = {.tls = configured, .allowed = true, .why = ""};

	if (explicit_tls || policy == NULL || policy->mode == MTA_STS_MODE_NONE)
		return d;
	d.sts = true;
	bool match = mx_host != NULL && mta_sts_policy_mx_allowed(policy, mx_host);
	if (policy->mode == MTA_STS_MODE_TESTING) {
		if (!match) {
			d.report = true;
			d.why = "MX host not in the MTA-STS policy (mode testing: delivered anyway)";
		}
		return d;
	}
	if (!match) {
		d.allowed = false;
		d.why = "MX host not in the MTA-STS policy (mode enforce)";
		return d;
	}
	d.tls = CONFIG_TLS_VERIFY;         /* RFC 8461 4.2: TLS, certificate valid for the MX name */
	return d;
}
