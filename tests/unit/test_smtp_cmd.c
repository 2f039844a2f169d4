/* test_smtp_cmd - command split, MAIL/RCPT parameters, xtext. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "smtp_cmd.h"

Test(smtp_cmd, split)
{
	struct smtp_cmd_line l;
	const char *line = "mail   FROM:<a@b>  ";

	smtp_cmd_split(line, strlen(line), &l);
	cr_expect_eq(l.verb_len, 4);
	cr_expect(smtp_cmd_verb_is(&l, "MAIL"), "verb match is case-insensitive");
	cr_expect(!smtp_cmd_verb_is(&l, "MAI"));
	cr_expect_eq(l.args_len, 10, "got args_len %zu, want 10", l.args_len);
	cr_expect(strncmp(l.args, "FROM:<a@b>", 10) == 0);
	smtp_cmd_split("QUIT", 4, &l);
	cr_expect_eq(l.args_len, 0);
}

struct mail_case {
	const char *args;
	bool esmtp;
	const char *want_err;	/* prefix of the reply; NULL = ok */
};

static const struct mail_case mail_cases[] = {
	{ "FROM:<a@b.c>", true, NULL },
	{ "from:<a@b.c>", true, NULL },
	{ "FROM: <a@b.c>", true, NULL },
	{ "FROM:<>", true, NULL },
	{ "FROM:<a@b.c> SIZE=1000", true, NULL },
	{ "FROM:<a@b.c> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=abc+2Bdef", true, NULL },
	{ "FROM:<a@b.c> body=binarymime", true, NULL },
	{ "FROM:<a@b.c> BODY=7BIT", true, NULL },
	{ "FROM:a@b.c", true, "501 5.5.4" },
	{ "TO:<a@b.c>", true, "501 5.5.4" },
	{ "FROM:<a@b.c>SIZE=1", true, "501 5.5.4" },
	{ "FROM:<a b@c>", true, "501 5.1.7" },
	{ "FROM:<a@b.c> FOO=1", true, "555 5.5.4" },
	{ "FROM:<a@b.c> SIZE=1", false, "555 5.5.4" },
	{ "FROM:<a@b.c> SIZE=1 SIZE=2", true, "501 5.5.4" },
	{ "FROM:<a@b.c> SIZE=abc", true, "501 5.5.4" },
	{ "FROM:<a@b.c> SIZE", true, "501 5.5.4" },
	{ "FROM:<a@b.c> SIZE=", true, "501 5.5.4" },
	{ "FROM:<a@b.c> BODY=9BIT", true, "501 5.5.4" },
	{ "FROM:<a@b.c> RET=ALL", true, "501 5.5.4" },
	{ "FROM:<a@b.c> ENVID=a+zz", true, "501 5.5.4" },
	{ "FROM:<a@b.c> SMTPUTF8=yes", true, "501 5.5.4" },
	{ "FROM:<a@b.c> -X=1", true, "501 5.5.4" },
	{ "FROM:<j\xc3\xb6@b.c>", true, "553 5.6.7" },
	{ "FROM:<j\xc3\xb6@b.c> SMTPUTF8", true, NULL },
	{ "FROM:<a@b.c> REQUIRETLS", true, NULL },
	{ "FROM:<a@b.c> requiretls SMTPUTF8", true, NULL },
	{ "FROM:<a@b.c> REQUIRETLS=yes", true, "501 5.5.4" },
	{ "FROM:<a@b.c> REQUIRETLS REQUIRETLS", true, "501 5.5.4" },
	{ "FROM:<a@b.c> REQUIRETLS", false, "555 5.5.4" },
};

Test(smtp_cmd, mail_table)
{
	for (size_t i = 0; i < sizeof(mail_cases) / sizeof(mail_cases[0]); i++) {
		const struct mail_case *c = &mail_cases[i];
		struct smtp_address from;
		struct smtp_mail_params p;
		const char *err = smtp_cmd_parse_mail(c->args, strlen(c->args), c->esmtp, &from, &p);

		if (c->want_err == NULL)
			cr_expect_null(err, "MAIL %s: got %s, want ok", c->args, err);
		else
			cr_expect(err != NULL && strncmp(err, c->want_err, strlen(c->want_err)) == 0,
				  "MAIL %s: got %s, want %s", c->args, err ? err : "ok", c->want_err);
	}
}

Test(smtp_cmd, mail_values)
{
	const char *args = "FROM:<A@B.C> SIZE=12345 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=QQ+2B+3D1";
	struct smtp_address from;
	struct smtp_mail_params p;

	cr_assert_null(smtp_cmd_parse_mail(args, strlen(args), true, &from, &p));
	cr_expect_str_eq(from.mailbox, "A@b.c");
	cr_expect(p.has_size);
	cr_expect_eq(p.size, 12345);
	cr_expect_eq(p.body, SMTP_BODY_8BITMIME);
	cr_expect(p.smtputf8);
	cr_expect_eq(p.ret, SMTP_RET_FULL);
	cr_expect(p.has_envid);
	cr_expect_str_eq(p.envid, "QQ+=1", "got envid %s, want QQ+=1", p.envid);

	cr_expect(!p.requiretls, "REQUIRETLS without the parameter");
	args = "FROM:<a@b.c> BODY=8BITMIME REQUIRETLS";
	cr_assert_null(smtp_cmd_parse_mail(args, strlen(args), true, &from, &p));
	cr_expect(p.requiretls, "REQUIRETLS not seen");

	args = "FROM:<a@b.c> SIZE=99999999999999999999999";
	cr_assert_null(smtp_cmd_parse_mail(args, strlen(args), true, &from, &p));
	cr_expect_eq(p.size, UINT64_MAX, "overflowing SIZE saturates");
}

struct rcpt_case {
	const char *args;
	bool utf8;
	const char *want_err;
	unsigned want_notify;
};

static const struct rcpt_case rcpt_cases[] = {
	{ "TO:<a@b.c>", false, NULL, 0 },
	{ "To: <a@b.c>", false, NULL, 0 },
	{ "TO:<postmaster>", false, NULL, 0 },
	{ "TO:<>", false, "501 5.1.3", 0 },
	{ "TO:<a@b.c> NOTIFY=NEVER", false, NULL, SMTP_NOTIFY_NEVER },
	{ "TO:<a@b.c> NOTIFY=success,failure,DELAY", false, NULL,
	  SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY },
	{ "TO:<a@b.c> NOTIFY=FAILURE", false, NULL, SMTP_NOTIFY_FAILURE },
	{ "TO:<a@b.c> NOTIFY=NEVER,FAILURE", false, "501 5.5.4", 0 },
	{ "TO:<a@b.c> NOTIFY=FAILURE,FAILURE", false, "501 5.5.4", 0 },
	{ "TO:<a@b.c> NOTIFY=", false, "501 5.5.4", 0 },
	{ "TO:<a@b.c> NOTIFY", false, "501 5.5.4", 0 },
	{ "TO:<a@b.c> ORCPT", false, "501 5.5.4", 0 },
	{ "TO:<a@b.c> NOTIFY=DELAY ORCPT=rfc822;x notify=never", false, "501 5.5.4", 0 },
	{ "TO:<a@b.c> NOTIFY=FAILURE,", false, "501 5.5.4", 0 },
	{ "TO:<a@b.c> NOTIFY=SOMETIMES", false, "501 5.5.4", 0 },
	{ "TO:<a@b.c> ORCPT=rfc822;a+40b.c", false, NULL, 0 },
	{ "TO:<a@b.c> ORCPT=rfc822", false, "501 5.5.4", 0 },
	{ "TO:<a@b.c> ORCPT=;a", false, "501 5.5.4", 0 },
	{ "TO:<a@b.c> ORCPT=rfc822;", false, "501 5.5.4", 0 },
	{ "TO:<a@b.c> SIZE=1", false, "555 5.5.4", 0 },
	{ "FROM:<a@b.c>", false, "501 5.5.4", 0 },
	{ "TO:<\xc3\xa9@b.c>", false, "553 5.6.7", 0 },
	{ "TO:<\xc3\xa9@b.c>", true, NULL, 0 },
};

Test(smtp_cmd, rcpt_table)
{
	for (size_t i = 0; i < sizeof(rcpt_cases) / sizeof(rcpt_cases[0]); i++) {
		const struct rcpt_case *c = &rcpt_cases[i];
		struct smtp_address to;
		struct smtp_rcpt_params p;
		const char *err = smtp_cmd_parse_rcpt(c->args, strlen(c->args), true, c->utf8, &to, &p);

		if (c->want_err == NULL) {
			cr_expect_null(err, "RCPT %s: got %s, want ok", c->args, err);
			if (err == NULL)
				cr_expect_eq(p.notify, c->want_notify, "RCPT %s: got notify %u, want %u",
					     c->args, p.notify, c->want_notify);
		} else {
			cr_expect(err != NULL && strncmp(err, c->want_err, strlen(c->want_err)) == 0,
				  "RCPT %s: got %s, want %s", c->args, err ? err : "ok", c->want_err);
		}
	}
}

Test(smtp_cmd, orcpt_values)
{
	const char *args = "TO:<a@b.c> ORCPT=RFC822;Joe+2BX+40b.c NOTIFY=DELAY";
	struct smtp_address to;
	struct smtp_rcpt_params p;

	cr_assert_null(smtp_cmd_parse_rcpt(args, strlen(args), true, false, &to, &p));
	cr_expect(p.has_orcpt);
	cr_expect_str_eq(p.orcpt_type, "rfc822");
	cr_expect_str_eq(p.orcpt, "Joe+X@b.c", "got %s, want Joe+X@b.c", p.orcpt);
	cr_expect_eq(p.notify, SMTP_NOTIFY_DELAY);
}

struct xtext_case {
	const char *in;
	int want_rc;
	const char *want;
};

static const struct xtext_case xtext_cases[] = {
	{ "", 0, "" },
	{ "abc", 3, "abc" },
	{ "a+2Bb", 3, "a+b" },
	{ "+3D+20", 2, "= " },
	{ "a+2bb", 3, "a+b" },		/* lower-case hex tolerated */
	{ "a+", -EINVAL, NULL },
	{ "a+2", -EINVAL, NULL },
	{ "a+G0", -EINVAL, NULL },
	{ "a+00", -EINVAL, NULL },	/* encoded NUL */
	{ "a=b", -EINVAL, NULL },
	{ "a b", -EINVAL, NULL },
	{ "a\x7f", -EINVAL, NULL },
};

Test(smtp_cmd, xtext_decode)
{
	for (size_t i = 0; i < sizeof(xtext_cases) / sizeof(xtext_cases[0]); i++) {
		const struct xtext_case *c = &xtext_cases[i];
		char out[32];
		int rc = smtp_xtext_decode(c->in, strlen(c->in), out, sizeof(out));

		cr_expect_eq(rc, c->want_rc, "xtext %s: got %d, want %d", c->in, rc, c->want_rc);
		if (rc >= 0 && c->want)
			cr_expect_str_eq(out, c->want, "xtext %s: got %s, want %s", c->in, out, c->want);
	}
	char small[4];
	cr_expect_eq(smtp_xtext_decode("abcd", 4, small, sizeof(small)), -E2BIG);
}

Test(smtp_cmd, xtext_round_trip)
{
	const char *in = "a+b=c d\x01\xff~!";
	char enc[64], dec[64];
	int n = smtp_xtext_encode(in, strlen(in), enc, sizeof(enc));

	cr_assert_gt(n, 0);
	cr_expect_str_eq(enc, "a+2Bb+3Dc+20d+01+FF~!", "got %s", enc);
	cr_assert_eq(smtp_xtext_decode(enc, (size_t)n, dec, sizeof(dec)), (int)strlen(in));
	cr_expect_str_eq(dec, in);
}
