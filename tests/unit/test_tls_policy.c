/*
 * test_tls_policy - outbound STARTTLS decisions under each policy.
 */
#include <criterion/criterion.h>

#include "tls_policy.h"

static const char *const policy_names[] = { "none", "may", "encrypt", "verify", "implicit", "dane" };
static const char *const step_names[] = { "start", "clear", "refuse" };

Test(tls_policy, at_ready)
{
	static const struct {
		enum config_tls_policy policy;
		bool offered, tried, clear_only;
		enum tls_step want;
	} cases[] = {
		/* none: never, offered or not */
		{ CONFIG_TLS_NONE, true, false, false, TLS_STEP_CLEAR },
		{ CONFIG_TLS_NONE, false, false, false, TLS_STEP_CLEAR },
		/* may: when offered; otherwise, refused or in the clear retry, clear */
		{ CONFIG_TLS_MAY, true, false, false, TLS_STEP_START },
		{ CONFIG_TLS_MAY, false, false, false, TLS_STEP_CLEAR },
		{ CONFIG_TLS_MAY, true, true, false, TLS_STEP_CLEAR },
		{ CONFIG_TLS_MAY, true, false, true, TLS_STEP_CLEAR },
		/* encrypt and verify: TLS or nothing */
		{ CONFIG_TLS_ENCRYPT, true, false, false, TLS_STEP_START },
		{ CONFIG_TLS_ENCRYPT, false, false, false, TLS_STEP_REFUSE },
		{ CONFIG_TLS_ENCRYPT, true, true, false, TLS_STEP_REFUSE },
		{ CONFIG_TLS_VERIFY, true, false, false, TLS_STEP_START },
		{ CONFIG_TLS_VERIFY, false, false, false, TLS_STEP_REFUSE },
		{ CONFIG_TLS_VERIFY, true, true, false, TLS_STEP_REFUSE },
		/* dane (a host with usable TLSA records): TLS or nothing */
		{ CONFIG_TLS_DANE, true, false, false, TLS_STEP_START },
		{ CONFIG_TLS_DANE, false, false, false, TLS_STEP_REFUSE },
		{ CONFIG_TLS_DANE, true, true, false, TLS_STEP_REFUSE },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum tls_step got = tls_policy_at_ready(cases[i].policy, cases[i].offered, cases[i].tried,
							cases[i].clear_only);
		cr_expect_eq(got, cases[i].want, "%s offered=%d tried=%d clear_only=%d: got %s, want %s",
			     policy_names[cases[i].policy], cases[i].offered, cases[i].tried,
			     cases[i].clear_only, step_names[got], step_names[cases[i].want]);
	}
}

Test(tls_policy, retry_in_clear_only_under_may_once)
{
	static const struct {
		enum config_tls_policy policy;
		bool clear_only, want;
	} cases[] = {
		{ CONFIG_TLS_NONE, false, false },
		{ CONFIG_TLS_MAY, false, true },
		{ CONFIG_TLS_MAY, true, false },
		{ CONFIG_TLS_ENCRYPT, false, false },
		{ CONFIG_TLS_VERIFY, false, false },
		{ CONFIG_TLS_DANE, false, false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool got = tls_policy_retry_clear(cases[i].policy, cases[i].clear_only);
		cr_expect_eq(got, cases[i].want, "%s clear_only=%d: got %d, want %d",
			     policy_names[cases[i].policy], cases[i].clear_only, got, cases[i].want);
	}
}

Test(tls_policy, required)
{
	cr_expect_not(tls_policy_required(CONFIG_TLS_NONE));
	cr_expect_not(tls_policy_required(CONFIG_TLS_MAY));
	cr_expect(tls_policy_required(CONFIG_TLS_ENCRYPT));
	cr_expect(tls_policy_required(CONFIG_TLS_VERIFY));
}

/* RFC 8689 4.2.1: verified TLS to a host whose name is trustworthy. */
Test(tls_policy, authenticated_for_requiretls)
{
	static const char *const names[] = { "none", "may", "encrypt", "verify", "implicit", "dane" };
	static const struct {
		enum config_tls_policy policy;
		bool tls_on, sts, next_hop, want;
	} cases[] = {
		/* MTA-STS enforce: verify, handshake done */
		{ CONFIG_TLS_VERIFY, true, true, false, true },
		{ CONFIG_TLS_VERIFY, false, true, false, false },  /* no handshake (yet) */
		/* a configured next hop with tls = verify: the smart-host reading */
		{ CONFIG_TLS_VERIFY, true, false, true, true },
		{ CONFIG_TLS_ENCRYPT, true, false, true, false },  /* any certificate */
		{ CONFIG_TLS_IMPLICIT, true, false, true, false },
		/* the domain's own tls = verify: MX names from plain DNS */
		{ CONFIG_TLS_VERIFY, true, false, false, false },
		/* opportunistic, encrypt, none: never */
		{ CONFIG_TLS_MAY, true, false, false, false },
		{ CONFIG_TLS_MAY, true, true, false, false },
		{ CONFIG_TLS_ENCRYPT, true, false, false, false },
		{ CONFIG_TLS_NONE, false, false, false, false },
		{ CONFIG_TLS_NONE, false, false, true, false },
		/* DANE: the chain matched the TLSA records */
		{ CONFIG_TLS_DANE, true, false, false, true },
		{ CONFIG_TLS_DANE, false, false, false, false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tls_auth_facts f = { .policy = cases[i].policy, .tls_on = cases[i].tls_on,
					    .mta_sts_enforce = cases[i].sts, .next_hop = cases[i].next_hop };
		bool got = tls_policy_authenticated(&f);
		cr_expect_eq(got, cases[i].want, "%s tls_on=%d sts=%d next_hop=%d: got %d, want %d",
			     names[cases[i].policy], cases[i].tls_on, cases[i].sts, cases[i].next_hop, got,
			     cases[i].want);
	}
}

Test(tls_policy, dane_requires_tls)
{
	cr_expect(tls_policy_required(CONFIG_TLS_DANE));
	cr_expect(!tls_policy_required(CONFIG_TLS_MAY));
}
