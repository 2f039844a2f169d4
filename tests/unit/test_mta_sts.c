/*
 * test_mta_sts - MTA-STS policy parser, TXT record parser, MX matching.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mta_sts.h"

static int parse(const char *text, struct mta_sts_policy *p, const char **why)
{
	*why = NULL;
	return mta_sts_policy_parse(text, strlen(text), p, why);
}

Test(mta_sts, policy_rfc_example)
{
	struct mta_sts_policy p;
	const char *why;
	const char *text = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
			   "mx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";

	cr_assert_eq(parse(text, &p, &why), 0, "why: %s", why ? why : "-");
	cr_expect_eq(p.mode, MTA_STS_MODE_ENFORCE);
	cr_expect_eq(p.max_age_s, 604800);
	cr_assert_eq(p.mx_count, 3);
	cr_expect_str_eq(p.mx[0], "mail.example.com");
	cr_expect_str_eq(p.mx[1], "*.example.net");
	cr_expect_str_eq(p.mx[2], "backupmx.example.com");
	cr_expect_str_eq(mta_sts_mode_name(p.mode), "enforce");
}

Test(mta_sts, policy_lf_blanks_extensions_and_case)
{
	struct mta_sts_policy p;
	const char *why;

	/* LF only, blanks after the colon and at the end of lines, an unknown
	 * field, no final newline, upper-case mx stored lower case. */
	cr_assert_eq(parse("version:STSv1\nmode:\ttesting  \nmx: MX1.Example.COM.\nfoo_bar: any thing\n"
			   "max_age: 99999999999", &p, &why), -EINVAL, "11 digits");
	cr_assert_eq(parse("version:STSv1\nmode:\ttesting  \nmx: MX1.Example.COM.\nfoo_bar: any thing\n"
			   "max_age: 9999999999", &p, &why), 0, "why: %s", why ? why : "-");
	cr_expect_eq(p.mode, MTA_STS_MODE_TESTING);
	cr_expect_eq(p.max_age_s, MTA_STS_MAX_AGE_MAX, "capped at a year: got %u", p.max_age_s);
	cr_expect_str_eq(p.mx[0], "mx1.example.com");

	/* mode none needs no mx; trailing blank lines are fine. */
	cr_assert_eq(parse("version: STSv1\nmode: none\nmax_age: 0\n\n\r\n", &p, &why), 0, "why: %s",
		     why ? why : "-");
	cr_expect_eq(p.mode, MTA_STS_MODE_NONE);
	cr_expect_eq(p.mx_count, 0);
}

Test(mta_sts, policy_bad_inputs)
{
	static const struct {
		const char *text;
		const char *why_contains;
	} cases[] = {
		{"", "no version"},
		{"version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n", "STSv1"},
		{"version: stsv1\nmode: enforce\nmx: a.b\nmax_age: 1\n", "STSv1"},
		{"version: STSv1\nmode: Enforce\nmx: a.b\nmax_age: 1\n", "mode"},
		{"version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx"},
		{"version: STSv1\nmx: a.b\nmax_age: 1\n", "no mode"},
		{"version: STSv1\nmode: enforce\nmx: a.b\n", "no max_age"},
		{"mode: enforce\nmx: a.b\nmax_age: 1\n", "no version"},
		{"version: STSv1\nmode: enforce\nmode: testing\nmx: a.b\nmax_age: 1\n", "twice"},
		{"version: STSv1\nversion: STSv1\nmode: enforce\nmx: a.b\nmax_age: 1\n", "twice"},
		{"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 1\nmax_age: 2\n", "twice"},
		{"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n", "max_age"},
		{"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 1d\n", "max_age"},
		{"version: STSv1\nmode: enforce\nmx: a.b\nmax_age:\n", "empty"},
		{"version: STSv1\nmode: enforce\nmx: a..b\nmax_age: 1\n", "mx"},
		{"version: STSv1\nmode: enforce\nmx: a.b..\nmax_age: 1\n", "mx"},
		{"version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n", "mx"},
		{"version: STSv1\nmode: enforce\nmx: a.*.b\nmax_age: 1\n", "mx"},
		{"version: STSv1\nmode: enforce\nmx: **.b\nmax_age: 1\n", "mx"},
		{"version: STSv1\nmode: enforce\nmx: -a.b\nmax_age: 1\n", "mx"},
		{"version: STSv1\nmode: enforce\nmx: a-.b\nmax_age: 1\n", "mx"},
		{"version: STSv1\nmode: enforce\nmx: a_b.c\nmax_age: 1\n", "mx"},
		{"version: STSv1\nmode: enforce\nmx: a.b c.d\nmax_age: 1\n", "mx"},
		{"version: STSv1\nmode: enforce\nmx: 1.2.3.4:25\nmax_age: 1\n", "mx"},
		{"version: STSv1\n mode: enforce\nmx: a.b\nmax_age: 1\n", "begins with a blank"},
		{"version: STSv1\n\nmode: enforce\nmx: a.b\nmax_age: 1\n", "blank line"},
		{"version: STSv1\nmode enforce\nmx: a.b\nmax_age: 1\n", "no ':'"},
		{"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 1\n_x: y\n", "field name"},
		{"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 1\nx: y\x01z\n", "control"},
		{"version: STSv1\rmode: enforce\nmx: a.b\nmax_age: 1\n", "bare CR"},
		{"<html><body>404</body></html>", "':'"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mta_sts_policy p;
		const char *why;
		int rc = parse(cases[i].text, &p, &why);
		cr_expect_eq(rc, -EINVAL, "case %zu: got %d, want -EINVAL", i, rc);
		cr_expect(why != NULL && strstr(why, cases[i].why_contains) != NULL,
			  "case %zu: got why \"%s\", want it to contain \"%s\"", i, why ? why : "(null)",
			  cases[i].why_contains);
	}

	/* A NUL inside the text is refused, not read as the end. */
	struct mta_sts_policy p;
	const char *why = NULL;
	const char nul[] = "version: STSv1\nmode: enforce\nmx: a.b\0c\nmax_age: 1\n";
	cr_expect_eq(mta_sts_policy_parse(nul, sizeof(nul) - 1, &p, &why), -EINVAL);
}

Test(mta_sts, policy_size_and_mx_count_bounds)
{
	struct mta_sts_policy p;
	const char *why = NULL;
	size_t cap = MTA_STS_POLICY_MAX + 100;
	char *big = malloc(cap);
	size_t n = (size_t)snprintf(big, cap, "version: STSv1\nmode: enforce\nmax_age: 1\nmx: a.b\n");

	while (n + 40 < MTA_STS_POLICY_MAX)
		n += (size_t)snprintf(big + n, cap - n, "x-padding: %030d\n", 0);
	cr_expect_eq(mta_sts_policy_parse(big, n, &p, &why), 0, "just under the cap: %s", why ? why : "-");
	memset(big + n, '\n', cap - n);
	cr_expect_eq(mta_sts_policy_parse(big, MTA_STS_POLICY_MAX + 1, &p, &why), -E2BIG);
	free(big);

	char text[8192];
	n = (size_t)snprintf(text, sizeof(text), "version: STSv1\nmode: enforce\nmax_age: 1\n");
	for (int i = 0; i < MTA_STS_MX_MAX; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "mx: mx%d.example.com\n", i);
	cr_expect_eq(mta_sts_policy_parse(text, n, &p, &why), 0, "64 mx: %s", why ? why : "-");
	cr_expect_eq(p.mx_count, MTA_STS_MX_MAX);
	n += (size_t)snprintf(text + n, sizeof(text) - n, "mx: one-more.example.com\n");
	cr_expect_eq(mta_sts_policy_parse(text, n, &p, &why), -EINVAL);
	cr_expect_str_eq(why, "too many mx lines");

	/* A 63-byte label is a label; 64 is not. */
	char mx[200];
	snprintf(mx, sizeof(mx), "version: STSv1\nmode: enforce\nmax_age: 1\nmx: %063d.example\n", 0);
	cr_expect_eq(parse(mx, &p, &why), 0);
	snprintf(mx, sizeof(mx), "version: STSv1\nmode: enforce\nmax_age: 1\nmx: %064d.example\n", 0);
	cr_expect_eq(parse(mx, &p, &why), -EINVAL);
}

Test(mta_sts, mx_matching)
{
	static const struct {
		const char *pattern, *host;
		bool want;
	} cases[] = {
		{"mail.example.com", "mail.example.com", true},
		{"mail.example.com", "MAIL.Example.Com", true},
		{"mail.example.com", "mail.example.com.", true},
		{"mail.example.com", "mail.example.co", false},
		{"mail.example.com", "xmail.example.com", false},
		{"mail.example.com", "example.com", false},
		{"*.example.com", "mx1.example.com", true},
		{"*.example.com", "MX1.EXAMPLE.COM.", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", ".example.com", false},
		{"*.example.com", "mx1.example.net", false},
		{"*.example.com", "mx1example.com", false},
		{"*.example.com", "", false},
		{"*.example.com", ".", false},
		{"mail.example.com", "", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool got = mta_sts_mx_match(cases[i].pattern, cases[i].host);
		cr_expect_eq(got, cases[i].want, "%s vs %s: got %d, want %d", cases[i].pattern, cases[i].host,
			     got, cases[i].want);
	}

	struct mta_sts_policy p;
	const char *why;
	cr_assert_eq(parse("version: STSv1\nmode: enforce\nmx: mx.a.example\nmx: *.b.example\nmax_age: 86400\n",
			   &p, &why), 0);
	cr_expect(mta_sts_policy_mx_allowed(&p, "mx.a.example"));
	cr_expect(mta_sts_policy_mx_allowed(&p, "x.b.example"));
	cr_expect(!mta_sts_policy_mx_allowed(&p, "evil.example"));
}

static int record(const char *txt, char *id, const char **why)
{
	*why = NULL;
	return mta_sts_record_parse(txt, strlen(txt), id, why);
}

Test(mta_sts, txt_record)
{
	char id[MTA_STS_ID_MAX + 1];
	const char *why;

	cr_expect_eq(record("v=STSv1; id=20160831085700Z;", id, &why), 1);
	cr_expect_str_eq(id, "20160831085700Z");
	cr_expect_eq(record("v=STSv1;id=abc", id, &why), 1);
	cr_expect_str_eq(id, "abc");
	cr_expect_eq(record("v=STSv1 ; id=abc ; ext=x.y-z", id, &why), 1);
	cr_expect_str_eq(id, "abc");
	cr_expect_eq(record("v=STSv1; foo=bar; id=12345678901234567890123456789012", id, &why), 1);
	cr_expect_str_eq(id, "12345678901234567890123456789012");

	/* Not STS records at all: discarded, not errors. */
	cr_expect_eq(record("v=spf1 -all", id, &why), 0);
	cr_expect_eq(record("v=STSv10; id=1", id, &why), 0);
	cr_expect_eq(record("", id, &why), 0);

	static const char *bad[] = {
		"v=STSv1",
		"v=STSv1;",
		"v=STSv1; id=",
		"v=STSv1; id=123456789012345678901234567890123",
		"v=STSv1; id=a-b",
		"v=STSv1; id=a; id=b",
		"v=STSv1; id=a b",
		"v=STSv1; id=a; =x",
		"v=STSv1; id=a; x",
		"v=STSv1; id=a; x=",
		"v=STSv1; id=a; x=y=z",
		"v=STSv1 id=a",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = record(bad[i], id, &why);
		cr_expect_eq(rc, -EINVAL, "\"%s\": got %d, want -EINVAL", bad[i], rc);
		cr_expect_not_null(why, "\"%s\" has a reason", bad[i]);
	}
}

Test(mta_sts, txt_record_select)
{
	char id[MTA_STS_ID_MAX + 1] = "";
	const char *why = NULL;
	const char *one[] = {"v=spf1 -all", "v=STSv1; id=A1", "something else"};
	size_t one_len[] = {11, 14, 14};
	cr_expect_eq(mta_sts_record_select(one, one_len, 3, id, &why), 1);
	cr_expect_str_eq(id, "A1");

	const char *none[] = {"v=spf1 -all"};
	size_t none_len[] = {11};
	cr_expect_eq(mta_sts_record_select(none, none_len, 1, id, &why), 0);
	cr_expect_eq(mta_sts_record_select(NULL, NULL, 0, id, &why), 0);

	const char *two[] = {"v=STSv1; id=A1", "v=STSv1; id=B2"};
	size_t two_len[] = {14, 14};
	cr_expect_eq(mta_sts_record_select(two, two_len, 2, id, &why), -EINVAL);
	cr_expect_str_eq(why, "several v=STSv1 records");

	const char *broken[] = {"v=STSv1; id=a-b"};
	size_t broken_len[] = {15};
	cr_expect_eq(mta_sts_record_select(broken, broken_len, 1, id, &why), -EINVAL);
}

Test(mta_sts, domain_valid)
{
	cr_expect(mta_sts_domain_valid("example.com", 11));
	cr_expect(mta_sts_domain_valid("example.com.", 12));
	cr_expect(mta_sts_domain_valid("xn--bcher-kva.example", 21));
	cr_expect(mta_sts_domain_valid("a", 1));
	cr_expect(!mta_sts_domain_valid("", 0));
	cr_expect(!mta_sts_domain_valid(".", 1));
	cr_expect(!mta_sts_domain_valid("a..b", 4));
	cr_expect(!mta_sts_domain_valid(".a", 2));
	cr_expect(!mta_sts_domain_valid("a/b", 3));
	cr_expect(!mta_sts_domain_valid("a.b-", 4));
	cr_expect(!mta_sts_domain_valid("a.b..", 5), "found by the fuzzer");
}

Test(mta_sts, cache_file_round_trip)
{
	const char *policy = "version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 86400\n";
	char file[1024];
	size_t n = mta_sts_cache_header(file, sizeof(file), "20240101T1", 1700000000);
	cr_assert_gt(n, 0);
	strcpy(file + n, policy);
	struct mta_sts_cached c;
	const char *why = NULL;
	cr_assert_eq(mta_sts_cache_parse(file, strlen(file), &c, &why), 0, "%s", why ? why : "-");
	cr_expect_str_eq(c.id, "20240101T1");
	cr_expect_eq(c.fetched_s, 1700000000);
	cr_expect_eq(c.policy.mode, MTA_STS_MODE_ENFORCE);
	cr_expect(mta_sts_cache_valid(&c, 1700000000 + 86399));
	cr_expect(!mta_sts_cache_valid(&c, 1700000000 + 86400));
	cr_expect(!mta_sts_cache_valid(NULL, 0));

	static const char *bad[] = {
		"",
		"ringmail-mta-sts 2\nid: a\nfetched: 1\n\nversion: STSv1\nmode: none\nmax_age: 1\n",
		"ringmail-mta-sts 1\nid: a-b\nfetched: 1\n\nversion: STSv1\nmode: none\nmax_age: 1\n",
		"ringmail-mta-sts 1\nid: a\nfetched: x\n\nversion: STSv1\nmode: none\nmax_age: 1\n",
		"ringmail-mta-sts 1\nid: a\nfetched: 1\nversion: STSv1\nmode: none\nmax_age: 1\n",
		"ringmail-mta-sts 1\nid: a\nfetched: 1\n\nversion: STSv1\nmode: none\n",
		"ringmail-mta-sts 1\nfetched: 1\nid: a\n\nversion: STSv1\nmode: none\nmax_age: 1\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(mta_sts_cache_parse(bad[i], strlen(bad[i]), &c, &why), -EINVAL, "case %zu", i);
}

Test(mta_sts, decide)
{
	struct mta_sts_cached c = {.id = "A", .fetched_s = 1000};
	c.policy.max_age_s = 1000;             /* valid until 2000 */
	static const struct {
		bool cached;
		enum mta_sts_txt_state txt;
		const char *id;
		int64_t now;
		enum mta_sts_action want;
		bool want_refresh;
	} cases[] = {
		{false, MTA_STS_TXT_NONE, NULL, 1500, MTA_STS_NO_POLICY, false},
		{false, MTA_STS_TXT_TEMPFAIL, NULL, 1500, MTA_STS_NO_POLICY, false},
		{false, MTA_STS_TXT_ID, "A", 1500, MTA_STS_FETCH, false},
		{true, MTA_STS_TXT_ID, "A", 1500, MTA_STS_USE_CACHED, false},
		{true, MTA_STS_TXT_ID, "B", 1500, MTA_STS_FETCH, false},      /* id changed */
		{true, MTA_STS_TXT_NONE, NULL, 1500, MTA_STS_USE_CACHED, false},      /* record stripped */
		{true, MTA_STS_TXT_TEMPFAIL, NULL, 1500, MTA_STS_USE_CACHED, false},
		{true, MTA_STS_TXT_ID, "A", 1950, MTA_STS_USE_CACHED, true},  /* near its end */
		{true, MTA_STS_TXT_NONE, NULL, 1950, MTA_STS_USE_CACHED, true},
		{true, MTA_STS_TXT_ID, "A", 2000, MTA_STS_FETCH, false},      /* expired */
		{true, MTA_STS_TXT_NONE, NULL, 2000, MTA_STS_NO_POLICY, false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool refresh = true;
		enum mta_sts_action got = mta_sts_decide(cases[i].cached ? &c : NULL, cases[i].txt, cases[i].id,
							 cases[i].now, 100, &refresh);
		cr_expect_eq(got, cases[i].want, "case %zu: got %d, want %d", i, got, cases[i].want);
		cr_expect_eq(refresh, cases[i].want_refresh, "case %zu: refresh got %d", i, refresh);
	}
}
