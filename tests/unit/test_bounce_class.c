/*
 * test_bounce_class - the bounce classifier and the table that ships.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "bounce_class.h"

struct class_case {
	int code;
	const char *status;
	const char *text;
	const char *want;
};

/* Real replies of the big providers and of ringmail itself. */
static const struct class_case builtin_cases[] = {
	{ 550, "5.1.1", "The email account that you tried to reach does not exist. Please try double-checking", "invalid_recipient" },
	{ 550, "5.1.1", "<a@b>: Recipient address rejected: User unknown in virtual mailbox table", "invalid_recipient" },
	{ 550, NULL, "Requested action not taken: mailbox unavailable", "invalid_recipient" },
	{ 554, "5.7.9", "delivery error: dd This user doesn't have a yahoo.com account", "invalid_recipient" },
	{ 553, NULL, "sorry, that domain isn't in my list of allowed rcpthosts", "policy" },
	{ 552, "5.2.2", "The email account that you tried to reach is over quota", "mailbox_full" },
	{ 452, "4.2.2", "The email account that you tried to reach is over quota", "mailbox_full" },
	{ 552, NULL, "Mailbox full", "mailbox_full" },
	{ 550, "5.7.1", "Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam", "policy" },
	{ 550, "5.7.1", "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", "policy" },
	{ 550, "5.7.606", "Access denied, banned sending IP [192.0.2.1]", "policy" },
	{ 554, "5.7.1", "<a@b>: Relay access denied", "policy" },
	{ 550, "5.7.26", "This mail is unauthenticated, which poses a security risk to the sender and Gmail users", "authentication" },
	{ 550, "5.7.1", "Email rejected per DMARC policy for example.com", "authentication" },
	{ 550, "5.7.23", "The message was rejected because of Sender Policy Framework violation", "authentication" },
	{ 550, "5.7.1", "SPF check failed", "authentication" },
	{ 421, "4.7.28", "Our system has detected an unusual rate of unsolicited mail originating from your IP address", "rate_limit" },
	{ 421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints", "rate_limit" },
	{ 451, "4.7.500", "Server busy. Please try again later from [192.0.2.1]", "rate_limit" },
	{ 450, "4.2.1", "The user you are trying to contact is receiving mail too quickly", "rate_limit" },
	{ 421, NULL, "Too many concurrent SMTP connections; please try again later.", "rate_limit" },
	{ 421, NULL, "closing connection", "rate_limit" },
	{ 552, "5.3.4", "Your message exceeded Google's message size limits", "message_too_large" },
	{ 552, NULL, "Message size exceeds fixed maximum message size", "message_too_large" },
	{ 554, "5.3.4", "Message too big for system", "message_too_large" },
	/* ringmail's own decisions (code 0 or the resolver's codes) */
	{ 550, "5.1.2", "domain example.invalid does not exist", "dns" },
	{ 451, "4.4.3", "MX lookup for example.com failed temporarily", "dns" },
	{ 554, "5.4.4", "no MX host of example.com has an address", "dns" },
	{ 556, "5.1.10", "domain example.com does not accept mail (null MX)", "dns" },
	{ 0, "4.7.5", "TLS failed: certificate verify failed", "tls" },
	{ 0, "4.7.4", "TLS required but STARTTLS not offered", "tls" },
	{ 0, "4.4.2", "connection lost", "connection" },
	{ 0, "4.4.2", "no reply", "connection" },
	{ 0, "4.4.1", "connect to 127.0.0.1:25: Connection refused", "connection" },
	{ 0, "4.4.1", "", "connection" },
	{ 0, "5.1.3", "address cannot be sent over SMTP", "invalid_recipient" },
	{ 0, "4.4.7", "delivery time expired; last error: 452 4.2.2 mailbox full", "mailbox_full" },
	{ 0, "5.0.0", "bounced by the operator", "other" },
	{ 500, NULL, "something we have never seen", "other" },
	{ 0, NULL, NULL, "other" },
};

Test(bounce_class, builtin_table)
{
	struct bounce_classifier *c = bounce_classifier_default();

	cr_assert(bounce_classifier_rules(c) > 40, "got %zu rules", bounce_classifier_rules(c));
	for (size_t i = 0; i < sizeof(builtin_cases) / sizeof(builtin_cases[0]); i++) {
		const struct class_case *k = &builtin_cases[i];
		const char *got = bounce_category_name(bounce_classify(c, k->code, k->status, k->text));
		cr_expect_str_eq(got, k->want, "case %zu: %d %s %s: got %s, want %s", i, k->code,
				 k->status ? k->status : "-", k->text ? k->text : "(null)", got, k->want);
	}
	bounce_classifier_free(c);
}

Test(bounce_class, names_round_trip)
{
	for (int i = 0; i < BOUNCE_CAT_COUNT; i++)
		cr_expect_eq(bounce_category_parse(bounce_category_name((enum bounce_category)i)), i);
	cr_expect_eq(bounce_category_parse("nonsense"), -1);
	cr_expect_str_eq(bounce_category_name(BOUNCE_CAT_COUNT), "other");
}

/* Loaded rules come before the built-in ones when loaded first, as the
 * config does with bounce.patterns_file. */
Test(bounce_class, extension_first_match_wins)
{
	static const char extra[] =
		"# site specific\n"
		"policy  5xx  5.1.1  mailbox unavailable|rejected by our\r\n"
		"\n"
		"mailbox_full 4xx x.7.* stop sending for now\n";
	struct bounce_classifier *c = bounce_classifier_new();
	char err[256];

	cr_assert_eq(bounce_classifier_load(c, extra, strlen(extra), "extra", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(bounce_classifier_load(c, bounce_patterns_builtin, bounce_patterns_builtin_len,
					    "builtin", err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(bounce_classify(c, 550, "5.1.1", "Rejected by our filter"), BOUNCE_CAT_POLICY);
	cr_expect_eq(bounce_classify(c, 550, "5.1.1", "user unknown"), BOUNCE_CAT_INVALID_RECIPIENT);
	/* 5xx does not match a 4xx reply; status patterns need a status. */
	cr_expect_eq(bounce_classify(c, 450, "5.1.1", "mailbox unavailable"), BOUNCE_CAT_INVALID_RECIPIENT);
	cr_expect_eq(bounce_classify(c, 421, "4.7.1", "STOP sending for now"), BOUNCE_CAT_MAILBOX_FULL);
	cr_expect_eq(bounce_classify(c, 421, NULL, "stop sending for now"), BOUNCE_CAT_RATE_LIMIT);
	bounce_classifier_free(c);
}

struct bad_case {
	const char *text;
	const char *want_err;
};

Test(bounce_class, bad_tables_name_the_line)
{
	static const struct bad_case bad[] = {
		{ "nope 550 5.1.1\n", "t line 1: unknown category" },
		{ "# ok\npolicy 5555 *\n", "t line 2: bad reply code" },
		{ "policy 650 *\n", "t line 1: bad reply code" },
		{ "policy 550\n", "t line 1: bad status" },
		{ "policy 550 3.1.1\n", "t line 1: bad status" },
		{ "policy 550 5.1\n", "t line 1: bad status" },
		{ "policy 550 5.1.1.1\n", "t line 1: bad status" },
		{ "policy 550 5.a.1\n", "t line 1: bad status" },
		{ "policy * * spam||ham\n", "t line 1: empty text" },
		{ "policy * * spam|\n", "t line 1: empty text" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct bounce_classifier *c = bounce_classifier_new();
		char err[256] = "";
		int rc = bounce_classifier_load(c, bad[i].text, strlen(bad[i].text), "t", err, sizeof(err));
		cr_expect_eq(rc, -EINVAL, "case %zu: got %d", i, rc);
		cr_expect(strncmp(err, bad[i].want_err, strlen(bad[i].want_err)) == 0,
			  "case %zu: got \"%s\", want \"%s...\"", i, err, bad[i].want_err);
		cr_expect_eq(bounce_classifier_rules(c), 0, "case %zu: a bad table keeps nothing", i);
		bounce_classifier_free(c);
	}
}

/* A partly good table that fails keeps the rules loaded before it only. */
Test(bounce_class, failed_load_keeps_earlier_rules)
{
	static const char good[] = "policy * * spam\n";
	static const char bad[] = "tls * * tls\nbogus\n";
	struct bounce_classifier *c = bounce_classifier_new();
	char err[256];

	cr_assert_eq(bounce_classifier_load(c, good, strlen(good), "g", err, sizeof(err)), 0);
	cr_assert_eq(bounce_classifier_load(c, bad, strlen(bad), "b", err, sizeof(err)), -EINVAL);
	cr_expect_eq(bounce_classifier_rules(c), 1);
	cr_expect_eq(bounce_classify(c, 0, NULL, "TLS"), BOUNCE_CAT_OTHER);
	cr_expect_eq(bounce_classify(c, 0, NULL, "SPAM"), BOUNCE_CAT_POLICY);
	bounce_classifier_free(c);
}
