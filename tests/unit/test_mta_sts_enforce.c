/*
 * test_mta_sts_enforce - per-host MTA-STS decisions, as a table.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "mta_sts_enforce.h"

static struct mta_sts_policy policy(const char *text)
{
	struct mta_sts_policy p;
	const char *why = NULL;
	cr_assert_eq(mta_sts_policy_parse(text, strlen(text), &p, &why), 0, "%s", why ? why : "-");
	return p;
}

Test(mta_sts_enforce, table)
{
	struct mta_sts_policy enforce = policy("version: STSv1\nmode: enforce\nmx: *.mx.example\nmax_age: 86400\n");
	struct mta_sts_policy testing = policy("version: STSv1\nmode: testing\nmx: *.mx.example\nmax_age: 86400\n");
	struct mta_sts_policy none = policy("version: STSv1\nmode: none\nmax_age: 86400\n");
	static const char *tls_names[] = {"none", "may", "encrypt", "verify", "implicit"};
	const struct {
		enum config_tls_policy configured;
		bool explicit_tls;
		const struct mta_sts_policy *p;
		const char *mx;
		enum config_tls_policy want_tls;
		bool want_allowed, want_report, want_sts;
	} cases[] = {
		/* no policy, or mode none: the configured policy */
		{CONFIG_TLS_MAY, false, NULL, "a.mx.example", CONFIG_TLS_MAY, true, false, false},
		{CONFIG_TLS_MAY, false, &none, "evil.example", CONFIG_TLS_MAY, true, false, false},
		/* enforce: matching hosts with verify, others refused */
		{CONFIG_TLS_MAY, false, &enforce, "a.mx.example", CONFIG_TLS_VERIFY, true, false, true},
		{CONFIG_TLS_NONE, false, &enforce, "A.MX.example.", CONFIG_TLS_VERIFY, true, false, true},
		{CONFIG_TLS_ENCRYPT, false, &enforce, "a.mx.example", CONFIG_TLS_VERIFY, true, false, true},
		{CONFIG_TLS_MAY, false, &enforce, "evil.example", CONFIG_TLS_MAY, false, false, true},
		{CONFIG_TLS_MAY, false, &enforce, "mx.example", CONFIG_TLS_MAY, false, false, true},
		{CONFIG_TLS_MAY, false, &enforce, "[192.0.2.1]", CONFIG_TLS_MAY, false, false, true},
		{CONFIG_TLS_MAY, false, &enforce, NULL, CONFIG_TLS_MAY, false, false, true},
		/* testing: delivered as configured, a mismatch reported */
		{CONFIG_TLS_MAY, false, &testing, "a.mx.example", CONFIG_TLS_MAY, true, false, true},
		{CONFIG_TLS_MAY, false, &testing, "evil.example", CONFIG_TLS_MAY, true, true, true},
		/* the domain's own domains[].tls wins */
		{CONFIG_TLS_NONE, true, &enforce, "evil.example", CONFIG_TLS_NONE, true, false, false},
		{CONFIG_TLS_ENCRYPT, true, &enforce, "a.mx.example", CONFIG_TLS_ENCRYPT, true, false, false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mta_sts_host_decision d =
			mta_sts_enforce_host(cases[i].configured, cases[i].explicit_tls, cases[i].p, cases[i].mx);
		cr_expect_eq(d.tls, cases[i].want_tls, "case %zu: tls got %s, want %s", i, tls_names[d.tls],
			     tls_names[cases[i].want_tls]);
		cr_expect_eq(d.allowed, cases[i].want_allowed, "case %zu: allowed got %d", i, d.allowed);
		cr_expect_eq(d.report, cases[i].want_report, "case %zu: report got %d", i, d.report);
		cr_expect_eq(d.sts, cases[i].want_sts, "case %zu: sts got %d", i, d.sts);
		cr_expect((d.allowed && !d.report) == (d.why[0] == '\0'), "case %zu: why \"%s\"", i, d.why);
	}
}
