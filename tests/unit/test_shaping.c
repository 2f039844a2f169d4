/*
 * test_shaping - the site matcher, the response rule matcher and the
 * shaping file loader.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config_shaping.h"
#include "shaping.h"
#include "shaping_state.h"

Test(shaping, sites_by_mx_suffix)
{
	struct shaping_rules *r = shaping_rules_new();
	const char *google[] = { ".google.com", "googlemail.com." };
	const char *ms[] = { ".outlook.com", ".protection.outlook.com" };

	cr_assert_eq(shaping_site_add(r, "gmail", google, 2), 0);
	cr_assert_eq(shaping_site_add(r, "microsoft", ms, 2), 0);
	cr_expect_eq(shaping_site_add(r, "gmail", ms, 1), -EINVAL, "a name twice");
	cr_expect_eq(shaping_site_add(r, "bad name", ms, 1), -EINVAL);
	cr_expect_eq(shaping_site_add(r, "empty", NULL, 0), 0, "no mx: a site of listed domains only");
	const char *odd[] = { "exa mple.com" };
	cr_expect_eq(shaping_site_add(r, "odd", odd, 1), -EINVAL);
	static const struct {
		const char *mx[2];
		size_t n;
		int want;
	} cases[] = {
		{ { "aspmx.l.google.com" }, 1, 0 },
		{ { "ALT1.ASPMX.L.GOOGLE.COM." }, 1, 0 },
		{ { "google.com" }, 1, -1 },                 /* ".google.com": only below it */
		{ { "googlemail.com" }, 1, 0 },              /* "googlemail.com": itself too */
		{ { "mx.googlemail.com" }, 1, 0 },
		{ { "notgooglemail.com" }, 1, -1 },          /* a label boundary, not a substring */
		{ { "example-com.mail.protection.outlook.com" }, 1, 1 },
		{ { "mx.example.net", "backup.outlook.com" }, 2, 1 },   /* any MX host counts */
		{ { "mx.example.net" }, 1, -1 },
		{ { "[192.0.2.1]" }, 1, -1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = shaping_site_of(r, cases[i].mx, cases[i].n);
		cr_expect_eq(got, cases[i].want, "case %zu (%s): got %d, want %d", i, cases[i].mx[0], got, cases[i].want);
	}
	cr_expect_eq(shaping_site_find(r, "microsoft"), 1);
	cr_expect_eq(shaping_site_find(r, "yahoo"), -1);
	cr_expect_eq(shaping_site_of(NULL, cases[0].mx, 1), -1);
	shaping_rules_free(r);
}

static void add(struct shaping_rules *r, const char *code, const char *status, const char *text,
		enum shaping_action action, int line)
{
	struct shaping_response x = { .action = action, .duration_ms = 60000, .line = line, .text = text };
	char err[256];

	snprintf(x.reply, sizeof(x.reply), "%s", code);
	snprintf(x.status, sizeof(x.status), "%s", status);
	cr_assert_eq(shaping_response_add(r, &x, err, sizeof(err)), 0, "%s", err);
}

Test(shaping, response_rules_first_match)
{
	struct shaping_rules *r = shaping_rules_new();

	add(r, "421", "4.7.28", NULL, SHAPING_SUSPEND, 1);
	add(r, "4xx", "x.7.*", "^(try again|rate) (later|limit)", SHAPING_SUSPEND, 2);
	add(r, "5xx", "5.7.1", "spamhaus|complain", SHAPING_SUPPRESS, 3);
	add(r, "*", "*", "mailbox.*moved", SHAPING_BOUNCE, 4);
	struct shaping_matcher *m = shaping_matcher_new(r);
	static const struct {
		int code;
		const char *status, *text;
		int want_line;                          /* 0: none */
	} cases[] = {
		{ 421, "4.7.28", "anything", 1 },
		{ 421, "4.7.0", "Try again later", 2 },
		{ 451, "4.7.1", "rate limit exceeded", 2 },
		{ 451, "4.7.1", "please try again later", 0 },   /* anchored at the start */
		{ 451, "4.4.1", "try again later", 0 },          /* x.7.* */
		{ 421, NULL, "try again later", 0 },             /* a status pattern needs a status */
		{ 550, "5.7.1", "listed at SPAMHAUS", 3 },
		{ 550, "5.7.10", "listed at spamhaus", 0 },
		{ 0, NULL, "Mailbox has MOVED", 4 },             /* "*": ours too */
		{ 250, "2.0.0", "ok", 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct shaping_response *hit = shaping_match(r, m, cases[i].code, cases[i].status, cases[i].text);
		int got = hit != NULL ? hit->line : 0;
		cr_expect_eq(got, cases[i].want_line, "case %zu: %d %s %s: got rule %d, want %d", i, cases[i].code,
			     cases[i].status ? cases[i].status : "-", cases[i].text, got, cases[i].want_line);
	}
	/* Without the thread's matcher, text rules never match. */
	cr_expect_eq(shaping_match(r, NULL, 421, "4.7.0", "Try again later"), NULL);
	shaping_matcher_free(m);
	shaping_rules_free(r);
}

Test(shaping, bad_rules_refused)
{
	static const struct {
		const char *code, *status, *text;
		enum shaping_action action;
		int64_t duration;
		const char *want;
	} bad[] = {
		{ "42", "*", NULL, SHAPING_BOUNCE, 0, "code \"42\"" },
		{ "621", "*", NULL, SHAPING_BOUNCE, 0, "code \"621\"" },
		{ "*", "4.7", NULL, SHAPING_BOUNCE, 0, "enhanced \"4.7\"" },
		{ "*", "3.1.1", NULL, SHAPING_BOUNCE, 0, "enhanced \"3.1.1\"" },
		{ "*", "*", "(unclosed", SHAPING_BOUNCE, 0, "text \"(unclosed\"" },
		{ "*", "*", NULL, SHAPING_SUSPEND, 0, "suspend needs a duration" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct shaping_rules *r = shaping_rules_new();
		struct shaping_response x = { .action = bad[i].action, .duration_ms = bad[i].duration, .text = bad[i].text };
		char err[256] = "";
		snprintf(x.reply, sizeof(x.reply), "%s", bad[i].code);
		snprintf(x.status, sizeof(x.status), "%s", bad[i].status);
		cr_expect_eq(shaping_response_add(r, &x, err, sizeof(err)), -EINVAL, "case %zu", i);
		cr_expect(strncmp(err, bad[i].want, strlen(bad[i].want)) == 0, "case %zu: got %s", i, err);
		cr_expect_eq(shaping_response_count(r), 0);
		shaping_rules_free(r);
	}
}

static int load(const char *text, struct shaping_rules **out, char *err, size_t errlen)
{
	char path[] = "/tmp/ringmail-test-shaping-XXXXXX";
	int fd = mkstemp(path);

	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	int rc = config_shaping_load(path, out, err, errlen);
	unlink(path);
	return rc;
}

Test(shaping, file_loads_and_names_bad_lines)
{
	struct shaping_rules *r;
	char err[512];

	cr_assert_eq(load("sites = (\n { name = \"gmail\"; mx = [ \".google.com\" ]; },\n"
			  " { name = \"yahoo\"; mx = [ \".yahoodns.net\" ]; }\n);\n"
			  "responses = (\n { code = \"421\"; enhanced = \"4.7.28\"; action = \"suspend\"; duration = \"10m\"; },\n"
			  " { code = \"5xx\"; text = \"blocked\"; action = \"suppress\"; scope = \"domain\"; }\n);\n",
			  &r, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(shaping_site_count(r), 2);
	cr_expect_eq(shaping_response_count(r), 2);
	cr_expect_eq(shaping_response_at(r, 0)->duration_ms, 600000);
	cr_expect_eq(shaping_response_at(r, 0)->line, 6);
	cr_expect_eq(shaping_response_at(r, 1)->scope, SHAPING_SCOPE_DOMAIN);
	cr_expect_str_eq(shaping_state_name(shaping_site_at(r, 1)->slot), "yahoo");
	shaping_rules_free(r);

	static const struct {
		const char *text, *want;
	} bad[] = {
		{ "speed = 1;\n", "line 1: unknown key speed" },
		{ "sites = (\n { name = \"x\"; }\n);\n", "line 2: sites: each needs" },
		{ "sites = (\n { name = \"x\"; mx = [ \".a\" ]; color = \"red\"; }\n);\n", "line 2: sites: unknown key" },
		{ "responses = (\n { action = \"explode\"; }\n);\n", "line 2: responses: action is" },
		{ "responses = (\n { action = \"suspend\"; duration = \"soon\"; }\n);\n", "line 2: responses: duration" },
		{ "responses = (\n { action = \"suspend\"; }\n);\n", "line 2: responses: suspend needs a duration" },
		{ "responses = (\n {\n action = \"bounce\"; text = \"[\"; }\n);\n", "line 2: responses: text" },
		{ "responses = (\n { action = \"bounce\"; scope = \"planet\"; }\n);\n", "line 2: responses: scope" },
		{ "sites = ;\n", "line 1: syntax error" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = (struct shaping_rules *)&r;
		cr_expect_eq(load(bad[i].text, &r, err, sizeof(err)), -EINVAL, "case %zu", i);
		cr_expect_null(r);
		cr_expect(strstr(err, bad[i].want) != NULL, "case %zu: got \"%s\", want \"%s\"", i, err, bad[i].want);
	}
}

Test(shaping, state_suspend_and_resume)
{
	int slot = shaping_state_slot("state-test");
	cr_assert(slot >= 0);
	cr_expect_eq(shaping_state_slot("state-test"), slot, "one slot per name");
	cr_expect(shaping_state_suspend((unsigned)slot, 5000));
	cr_expect(!shaping_state_suspend((unsigned)slot, 4000), "never shortened");
	cr_expect_eq(shaping_state_until((unsigned)slot), 5000);
	cr_expect(shaping_state_resume((unsigned)slot, 1000));
	cr_expect_eq(shaping_state_until((unsigned)slot), 0);
	cr_expect(!shaping_state_resume((unsigned)slot, 1000));
	cr_expect_eq(shaping_state_suspensions((unsigned)slot), 1);
}

/* The example shipped in share/ loads. */
Test(shaping, shipped_example_loads)
{
	struct shaping_rules *r;
	char err[512];

	cr_assert_eq(config_shaping_load(SOURCE_DIR "/share/shaping.example.conf", &r, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(shaping_site_count(r), 5);
	const char *gmail[] = { "gmail-smtp-in.l.google.com" };
	cr_expect_str_eq(shaping_site_at(r, (size_t)shaping_site_of(r, gmail, 1))->name, "google");
	struct shaping_matcher *m = shaping_matcher_new(r);
	const struct shaping_response *hit = shaping_match(r, m, 421, "4.7.0",
		"[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints");
	cr_assert_not_null(hit);
	cr_expect_eq(hit->action, SHAPING_SUSPEND);
	cr_expect_eq(hit->duration_ms, 30 * 60000);
	shaping_matcher_free(m);
	shaping_rules_free(r);
}

Test(shaping, rates_parse)
{
	static const struct {
		const char *text;
		bool ok;
		uint32_t count;
		int64_t period_ms;
	} cases[] = {
		{ "100/min", true, 100, 60000 }, { "5/s", true, 5, 1000 }, { "20/hour", true, 20, 3600000 },
		{ "1/d", true, 1, 86400000 }, { "3/second", true, 3, 1000 }, { "0", true, 0, 0 }, { "", true, 0, 0 },
		{ "100", false, 0, 0 }, { "100/fortnight", false, 0, 0 }, { "-5/s", false, 0, 0 },
		{ "0/s", false, 0, 0 }, { "x/s", false, 0, 0 }, { "5/s ", false, 0, 0 }, { "2000000/s", false, 0, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct shaping_rate r;
		bool ok = shaping_rate_parse(cases[i].text, &r);
		cr_assert_eq(ok, cases[i].ok, "\"%s\": got %d, want %d", cases[i].text, ok, cases[i].ok);
		if (ok)
			cr_assert(r.count == cases[i].count && r.period_ms == cases[i].period_ms,
				  "\"%s\": got %u/%lld", cases[i].text, r.count, (long long)r.period_ms);
	}
	cr_assert_eq(shaping_limit_parse("message_rate"), SHAPING_LIMIT_MESSAGE_RATE);
	cr_assert_eq(shaping_limit_parse("max_connections"), SHAPING_LIMIT_MAX_CONNECTIONS);
	cr_assert_eq(shaping_limit_parse("speed"), -1);
	cr_assert_eq(shaping_action_parse("lower"), SHAPING_LOWER);
}

Test(shaping, listed_domains_and_domain_entries)
{
	struct shaping_rules *r = shaping_rules_new();
	const char *mx[] = { ".bigmail.test" };
	const char *listed[] = { "Listed.Example", "other.example." };

	cr_assert_eq(shaping_site_add(r, "big", mx, 1), 0);
	cr_assert_eq(shaping_site_add(r, "listonly", NULL, 0), 0);
	cr_assert_eq(shaping_site_set_domains(r, 1, listed, 2), 0);
	const char *bad[] = { ".dot.example" };
	cr_expect_eq(shaping_site_set_domains(r, 1, bad, 1), -EINVAL);
	cr_assert_eq(shaping_domain_add(r, "a.test"), 0);
	cr_expect_eq(shaping_domain_add(r, "A.TEST."), -EINVAL, "the same domain twice");
	cr_expect_eq(shaping_domain_add(r, "big"), -EINVAL, "a site's name");

	const char *on_big[] = { "mx1.bigmail.test" };
	static const struct {
		const char *domain;
		bool mx;
		int site, entry;
	} cases[] = {
		{ "a.test", true, 0, 2 },            /* its MX: site big; its own entry too */
		{ "a.test", false, -1, 2 },          /* no route yet: no site, its entry */
		{ "listed.example", true, 1, -1 },   /* listed wins over the MX */
		{ "OTHER.EXAMPLE.", false, 1, -1 },
		{ "b.test", true, 0, -1 },
		{ "b.test", false, -1, -1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int site = shaping_site_of_domain(r, cases[i].domain, on_big, cases[i].mx ? 1 : 0);
		int entry = shaping_domain_find(r, cases[i].domain);
		cr_expect_eq(site, cases[i].site, "%s: site got %d, want %d", cases[i].domain, site, cases[i].site);
		cr_expect_eq(entry, cases[i].entry, "%s: entry got %d, want %d", cases[i].domain, entry, cases[i].entry);
	}
	cr_assert(shaping_site_at(r, 2)->domain_entry);
	cr_assert_eq(shaping_site_at(r, 0)->pool, -1);
	shaping_rules_free(r);
}

Test(shaping, lower_rule_checked)
{
	struct shaping_rules *r = shaping_rules_new();
	char err[200];
	struct shaping_response rule = { .reply = "421", .status = "*", .action = SHAPING_LOWER,
					  .duration_ms = 60000, .limit = SHAPING_LIMIT_MESSAGE_RATE };

	cr_expect_eq(shaping_response_add(r, &rule, err, sizeof(err)), -EINVAL, "no value");
	rule.lower_rate = (struct shaping_rate){ 10, 60000, 0 };
	cr_assert_eq(shaping_response_add(r, &rule, err, sizeof(err)), 0, "%s", err);
	rule.duration_ms = 0;
	cr_expect_eq(shaping_response_add(r, &rule, err, sizeof(err)), -EINVAL, "no duration");
	const struct shaping_response *hit = shaping_match(r, NULL, 421, "4.7.0", "slow down");
	cr_assert_not_null(hit);
	cr_assert_eq(hit->action, SHAPING_LOWER);
	cr_assert_eq(hit->lower_rate.count, 10);
	shaping_rules_free(r);
}

Test(shaping, sources_pools_and_weighted_pick)
{
	struct shaping_rules *r = shaping_rules_new();
	const char *both[] = { "one", "two" }, *bad[] = { "one", "nosuch" };
	unsigned w31[] = { 3, 1 }, w0[] = { 3, 0 };

	cr_assert_eq(shaping_source_add(r, "one", "127.0.0.11", "one.example"), 0);
	cr_assert_eq(shaping_source_add(r, "two", "::1", ""), 0);
	cr_expect_eq(shaping_source_add(r, "one", "127.0.0.12", ""), -EINVAL, "a name twice");
	cr_expect_eq(shaping_source_add(r, "three", "localhost", ""), -EINVAL, "not numeric");
	cr_expect_eq(shaping_source_add(r, "four", "127.0.0.1", "bad name!"), -EINVAL);
	cr_assert_eq(shaping_pool_add(r, "main", both, w31, 2), 0);
	cr_expect_eq(shaping_pool_add(r, "bad", bad, w31, 2), -EINVAL, "an unknown source");
	cr_expect_eq(shaping_pool_add(r, "zero", both, w0, 2), -EINVAL, "a zero weight");
	cr_assert_eq(shaping_pool_find(r, "main"), 0);
	const struct shaping_pool *p = shaping_pool_at(r, 0);
	unsigned hits[2] = { 0, 0 };
	for (uint64_t x = 0; x < 4000; x++)
		hits[shaping_pool_pick(p, x * 2654435761u)]++;
	cr_expect(hits[0] > 2800 && hits[0] < 3200, "weight 3 of 4: got %u of 4000", hits[0]);
	bool usable[2] = { false, true };
	for (uint64_t x = 0; x < 100; x++)
		cr_assert_eq(shaping_pool_pick_among(p, usable, x), 1, "only two is usable");
	usable[1] = false;
	cr_assert_eq(shaping_pool_pick_among(p, usable, 7), -1);
	cr_assert_eq(shaping_source_at(r, 1)->addr.ss_family, AF_INET6);
	shaping_rules_free(r);
}

Test(shaping, warmup_schedule)
{
	struct shaping_rules *r = shaping_rules_new();
	uint32_t daily[] = { 50, 100, 200 };
	int64_t day;

	cr_assert(shaping_day_parse("1970-01-01", &day));
	cr_assert_eq(day, 0);
	cr_assert(shaping_day_parse("2026-12-05", &day));
	cr_assert_eq(day, 20792, "got %lld", (long long)day);
	cr_assert(shaping_day_parse("2024-03-01", &day));
	cr_assert_eq(day, 19783, "got %lld", (long long)day);
	cr_expect_not(shaping_day_parse("2026-02-29", &day), "not a leap year");
	cr_expect(shaping_day_parse("2024-02-29", &day));
	cr_expect_not(shaping_day_parse("2026-13-01", &day));
	cr_expect_not(shaping_day_parse("2026-1-01", &day));
	cr_expect_not(shaping_day_parse("yesterday", &day));

	cr_assert_eq(shaping_source_add(r, "new", "127.0.0.11", ""), 0);
	cr_assert_eq(shaping_source_daily_limit(shaping_source_at(r, 0), 20792), 0, "no warm-up: no limit");
	cr_assert_eq(shaping_source_set_warmup(r, 0, 20792, daily, 3), 0);
	const struct shaping_source *src = shaping_source_at(r, 0);
	static const struct { int64_t day; uint32_t want; } cases[] = {
		{ 20700, 50 }, { 20792, 50 }, { 20793, 100 }, { 20794, 200 }, { 20795, 0 }, { 30000, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(shaping_source_daily_limit(src, cases[i].day), cases[i].want, "day %lld: got %u, want %u",
			     (long long)cases[i].day, shaping_source_daily_limit(src, cases[i].day), cases[i].want);
	uint32_t zero[] = { 10, 0 };
	cr_expect_eq(shaping_source_set_warmup(r, 0, 0, zero, 2), -EINVAL);

	/* The shared counter: a new day starts from zero. */
	int slot = shaping_state_source_slot("new");
	cr_assert_geq(slot, 0);
	for (int i = 0; i < 50; i++)
		cr_assert(shaping_state_source_take((unsigned)slot, 20792, 50));
	cr_assert_not(shaping_state_source_take((unsigned)slot, 20792, 50));
	cr_assert(shaping_state_source_full((unsigned)slot, 20792, 50));
	cr_assert_eq(shaping_state_source_sent((unsigned)slot, 20792), 50);
	cr_assert(shaping_state_source_take((unsigned)slot, 20793, 100), "the next day");
	cr_assert_eq(shaping_state_source_sent((unsigned)slot, 20793), 1);
	cr_assert_eq(shaping_state_source_sent((unsigned)slot, 20792), 0, "the old day is gone");
	shaping_rules_free(r);
}

Test(shaping, senders_choose_pools)
{
	struct shaping_rules *r;
	char err[512];

	cr_assert_eq(load("sources = ( { name = \"a\"; address = \"127.0.0.11\"; },\n"
			  "            { name = \"b\"; address = \"127.0.0.12\"; } );\n"
			  "pools = ( { name = \"bulk\"; sources = ( { source = \"a\"; } ); },\n"
			  "          { name = \"tx\"; sources = ( { source = \"b\"; } ); } );\n"
			  "senders = ( { sender = \"news.example.com\"; pool = \"bulk\"; },\n"
			  "            { sender = \"ceo@news.example.com\"; pool = \"tx\"; },\n"
			  "            { sender = \".example.org\"; pool = \"tx\"; },\n"
			  "            { sender = \".mail.example.org\"; pool = \"bulk\"; } );\n",
			  &r, err, sizeof(err)), 0, "%s", err);
	int bulk = shaping_pool_find(r, "bulk"), tx = shaping_pool_find(r, "tx");
	cr_expect_eq(shaping_sender_count(r), 4);
	cr_expect_eq(shaping_sender_pool(r, "x@news.example.com"), bulk, "the domain");
	cr_expect_eq(shaping_sender_pool(r, "CEO@News.Example.com"), tx, "the address beats the domain");
	cr_expect_eq(shaping_sender_pool(r, "x@a.example.org"), tx, "a parent");
	cr_expect_eq(shaping_sender_pool(r, "x@b.mail.example.org"), bulk, "the longest parent");
	cr_expect_eq(shaping_sender_pool(r, "x@example.org"), -1, "a parent is not the domain itself");
	cr_expect_eq(shaping_sender_pool(r, "x@sub.news.example.com"), -1, "a domain is not its parent");
	cr_expect_eq(shaping_sender_pool(r, ""), -1, "the null sender");
	shaping_rules_free(r);

	static const struct {
		const char *text, *want;
	} bad[] = {
		{ "senders = (\n { sender = \"a.test\"; pool = \"nosuch\"; }\n);\n", "line 2: senders: no pool named nosuch" },
		{ "senders = (\n { sender = \"a.test\"; }\n);\n", "line 2: senders: each needs" },
		{ "senders = (\n { sender = \"a.test\"; pool = \"p\"; color = 1; }\n);\n", "line 2: senders: unknown key" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(load(bad[i].text, &r, err, sizeof(err)), -EINVAL, "case %zu", i);
		cr_expect(strstr(err, bad[i].want) != NULL, "case %zu: got \"%s\", want \"%s\"", i, err, bad[i].want);
	}
	cr_assert_eq(load("sources = ( { name = \"a\"; address = \"127.0.0.11\"; } );\n"
			  "pools = ( { name = \"p\"; sources = ( { source = \"a\"; } ); } );\n"
			  "senders = ( { sender = \"a.test\"; pool = \"p\"; },\n { sender = \"A.test\"; pool = \"p\"; } );\n",
			  &r, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "line 4: senders: appears twice") != NULL, "got \"%s\"", err);
}

/* Suspensions and lowerings to a file and back: monotonic times become
 * wall-clock ones and back; what ended is dropped; a bad line is named. */
Test(shaping, state_saved_and_restored)
{
	char path[] = "/tmp/ringmail-test-state-XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	close(fd);
	int a = shaping_state_slot("persist-a"), b = shaping_state_slot("persist-b");
	cr_assert(a >= 0 && b >= 0);
	uint64_t g = shaping_state_generation();
	cr_expect(shaping_state_suspend((unsigned)a, 10000 + 60000));
	cr_expect(shaping_state_lower((unsigned)b, SHAPING_LIMIT_MAX_CONNECTIONS, 2, 10000 + 30000, 10000));
	cr_expect_gt(shaping_state_generation(), g, "a change moves the generation");
	/* Saved at monotonic 10000 = wall 1,000,000,000. */
	cr_assert_eq(shaping_state_save(path, 10000, 1000000000), 0);
	FILE *f = fopen(path, "r");
	char text[1024] = "";
	cr_assert(f != NULL);
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	cr_expect(strstr(text, "persist-a suspend 1000060000\n") != NULL, "%s", text);
	cr_expect(strstr(text, "persist-b lower max_connections 2 1000030000\n") != NULL, "%s", text);
	shaping_state_resume((unsigned)a, 10000);
	shaping_state_resume((unsigned)b, 10000);

	/* Restored 40 s later (wall), at monotonic 500: the lowering ended. */
	size_t restored = 0;
	char err[256];
	cr_assert_eq(shaping_state_restore(path, 500, 1000040000, &restored, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(restored, 1);
	cr_expect_eq(shaping_state_until((unsigned)a), 500 + 20000);
	int64_t value;
	cr_expect(!shaping_state_lowered((unsigned)b, SHAPING_LIMIT_MAX_CONNECTIONS, 500, &value, NULL));
	shaping_state_resume((unsigned)a, 500);

	f = fopen(path, "w");
	cr_assert(f != NULL);
	fputs("# comment\npersist-a sleep 5\n", f);
	fclose(f);
	cr_expect_eq(shaping_state_restore(path, 500, 1000040000, &restored, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "line 2:") != NULL, "%s", err);
	unlink(path);
	cr_expect_eq(shaping_state_restore(path, 500, 1000040000, &restored, err, sizeof(err)), -ENOENT);
}

/* shaping_pool_choose: a source with any wait is skipped; when every one
 * waits, the soonest of the members' longest waits. */
Test(shaping, pool_choose_skips_held_sources)
{
	struct shaping_rules *r = shaping_rules_new();
	const char *three[] = { "a", "b", "c" };
	unsigned w[] = { 1, 1, 1 };

	cr_assert_eq(shaping_source_add(r, "a", "127.0.0.11", ""), 0);
	cr_assert_eq(shaping_source_add(r, "b", "127.0.0.12", ""), 0);
	cr_assert_eq(shaping_source_add(r, "c", "127.0.0.13", ""), 0);
	cr_assert_eq(shaping_pool_add(r, "p", three, w, 3), 0);
	const struct shaping_pool *p = shaping_pool_at(r, 0);
	static const struct {
		struct shaping_source_view v[3];
		int want;                  /* the only choice, or -1 */
		int64_t wait;
	} cases[] = {
		{ { { 1000, 0, 0, 0 }, { 0, 50, 0, 0 }, { 0, 0, 0, 0 } }, 2, 0 },
		{ { { 0, 0, 0, 60000 }, { 0, 0, 250, 0 }, { 0, 0, 0, 0 } }, 2, 0 },
		{ { { 1000, 0, 0, 0 }, { 0, 50, 250, 0 }, { 0, 0, 0, 60000 } }, -1, 250 },
		{ { { 300, 0, 0, 0 }, { 0, 50, 0, 0 }, { 0, 0, 120, 0 } }, -1, 50 },
		{ { { 0, 0, 0, 0 }, { 900, 0, 0, 0 }, { 900, 0, 0, 0 } }, 0, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (uint64_t x = 0; x < 50; x++) {
			int64_t wait = -7;
			int got = shaping_pool_choose(p, cases[i].v, x * 2654435761u, &wait);
			cr_assert_eq(got, cases[i].want, "case %zu: got %d, want %d", i, got, cases[i].want);
			cr_assert_eq(wait, cases[i].wait, "case %zu: got wait %lld, want %lld", i, (long long)wait,
				     (long long)cases[i].wait);
		}
	}
	struct shaping_source_view free3[3] = { { 0, 0, 0, 0 }, { 0, 0, 0, 0 }, { 0, 0, 0, 0 } };
	unsigned hits[3] = { 0, 0, 0 };
	int64_t wait;
	for (uint64_t x = 0; x < 3000; x++)
		hits[shaping_pool_choose(p, free3, x * 2654435761u, &wait)]++;
	cr_expect(hits[0] > 850 && hits[1] > 850 && hits[2] > 850, "even weights: %u %u %u", hits[0], hits[1],
		  hits[2]);
	shaping_rules_free(r);
}

/* per_source limits load with a state slot per (site, source) pair;
 * scope = "source" is for suspend only. */
Test(shaping, per_source_and_source_scope_load)
{
	struct shaping_rules *r;
	char err[512];

	cr_assert_eq(load("sources = ( { name = \"ip1\"; address = \"127.0.0.11\"; },\n"
			  "            { name = \"ip2\"; address = \"127.0.0.12\"; } );\n"
			  "sites = ( { name = \"gm\"; mx = [ \".gm.test\" ]; max_connections = 9;\n"
			  "  per_source = { max_connections = 2; message_rate = \"10/s\"; message_burst = 3;\n"
			  "                 connection_rate = \"1/s\"; max_messages_per_connection = 50; }; },\n"
			  "          { name = \"plain\"; mx = [ \".plain.test\" ]; } );\n"
			  "responses = ( { code = \"421\"; enhanced = \"4.7.0\"; action = \"suspend\"; scope = \"source\";"
			  " duration = \"1h\"; } );\n",
			  &r, err, sizeof(err)), 0, "%s", err);
	const struct shaping_site *gm = shaping_site_at(r, 0), *plain = shaping_site_at(r, 1);
	cr_expect(gm->has_per_source);
	cr_expect(!plain->has_per_source);
	cr_expect_eq(gm->limits.max_connections, 9);
	cr_expect_eq(gm->per_source.max_connections, 2);
	cr_expect_eq(gm->per_source.message_rate.count, 10);
	cr_expect_eq(gm->per_source.message_rate.burst, 3);
	cr_expect_eq(gm->per_source.connection_rate.period_ms, 1000);
	cr_expect_eq(gm->per_source.max_messages_per_connection, 50);
	cr_expect_str_eq(shaping_state_name(gm->pair_slots[0]), "gm/ip1");
	cr_expect_str_eq(shaping_state_name(gm->pair_slots[1]), "gm/ip2");
	cr_expect_str_eq(shaping_state_name(shaping_source_at(r, 1)->suspend_slot), "source:ip2");
	cr_expect_eq(shaping_response_at(r, 0)->scope, SHAPING_SCOPE_SOURCE);
	cr_expect(!plain->has_pairs, "no per_source, no source_site rule: no pairs");
	shaping_rules_free(r);

	/* A source_site rule gives every site and domain entry its pairs. */
	cr_assert_eq(load("sources = ( { name = \"ip1\"; address = \"127.0.0.11\"; } );\n"
			  "sites = ( { name = \"ss\"; mx = [ \".ss.test\" ]; } );\n"
			  "domains = ( { name = \"one.test\"; } );\n"
			  "responses = ( { code = \"421\"; action = \"suspend\"; scope = \"source_site\"; duration = \"1h\"; } );\n",
			  &r, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(shaping_response_at(r, 0)->scope, SHAPING_SCOPE_SOURCE_SITE);
	cr_expect(shaping_site_at(r, 0)->has_pairs && !shaping_site_at(r, 0)->has_per_source);
	cr_expect_str_eq(shaping_state_name(shaping_site_at(r, 0)->pair_slots[0]), "ss/ip1");
	cr_expect_str_eq(shaping_state_name(shaping_site_at(r, 1)->pair_slots[0]), "one.test/ip1");
	shaping_rules_free(r);

	static const struct {
		const char *text, *want;
	} bad[] = {
		{ "sites = (\n { name = \"x\"; mx = [ \".a\" ];\n per_source = { max_recipients = 2; }; }\n);\n",
		  "line 3: per_source is {" },
		{ "sites = (\n { name = \"x\"; mx = [ \".a\" ]; per_source = 3; }\n);\n", "line 2: per_source is {" },
		{ "sites = (\n { name = \"x\"; mx = [ \".a\" ]; per_source = { message_rate = \"fast\"; }; }\n);\n",
		  "message_rate is a rate" },
		{ "responses = (\n { action = \"bounce\"; scope = \"source\"; }\n);\n",
		  "line 2: responses: scope = source or source_site is for action = suspend, not bounce" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = (struct shaping_rules *)&r;
		cr_expect_eq(load(bad[i].text, &r, err, sizeof(err)), -EINVAL, "case %zu", i);
		cr_expect(strstr(err, bad[i].want) != NULL, "case %zu: got \"%s\", want \"%s\"", i, err, bad[i].want);
	}
}

/* A source's suspension is saved and restored under "source:NAME". */
Test(shaping, source_suspension_saved_by_name)
{
	char path[] = "/tmp/ringmail-test-state-XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	close(fd);
	int s = shaping_state_slot("source:persisted-ip");
	cr_assert(s >= 0);
	cr_expect(shaping_state_suspend((unsigned)s, 1000 + 60000));
	cr_assert_eq(shaping_state_save(path, 1000, 2000000000), 0);
	shaping_state_resume((unsigned)s, 1000);
	size_t restored = 0;
	char err[256];
	cr_assert_eq(shaping_state_restore(path, 100, 2000000000, &restored, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(restored, 1);
	cr_expect_eq(shaping_state_until((unsigned)s), 100 + 60000);
	shaping_state_resume((unsigned)s, 100);
	unlink(path);
}
