/*
 * test_bounce - DSN structure and the NOTIFY rules.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "bounce.h"

static const char original[] =
	"From: a@o.test\r\nSubject: the original\r\n\r\nbody line one\r\nbody line two\r\n";

static const struct bounce_rcpt one_rcpt[] = {
	{ .addr = "r@d.test", .orcpt = "rfc822;R@d.test", .action = BOUNCE_FAILED,
	  .status = "5.1.1", .remote_mta = "mx.d.test", .code = 550,
	  .diagnostic = "no such user\nreally", .last_attempt_ms = 1700000000000LL },
};

static struct bounce_input input(void)
{
	return (struct bounce_input){
		.hostname = "relay.test", .sender = "a@o.test", .envid = "E1",
		.ret = SMTP_RET_NONE, .arrival_ms = 1699999000000LL,
		.now_ms = 1700000001000LL, .unique = 42, .rcpts = one_rcpt, .nrcpts = 1,
		.message = original, .message_len = sizeof(original) - 1,
	};
}

static char text[65536];

static const char *build(const struct bounce_input *in)
{
	struct buf out;

	buf_init(&out, sizeof(text) - 1);
	cr_assert_eq(bounce_build(in, &out), 0);
	memcpy(text, buf_data(&out), buf_len(&out));
	text[buf_len(&out)] = '\0';
	buf_free(&out);
	return text;
}

static void expect_has(const char *s, const char *needle)
{
	cr_expect(strstr(s, needle) != NULL, "want \"%s\" in the DSN:\n%s", needle, s);
}

Test(bounce, structure_and_fields)
{
	struct bounce_input in = input();
	const char *s = build(&in);
	static const char *const want[] = {
		"From: Mail Delivery System <MAILER-DAEMON@relay.test>\r\n",
		"To: <a@o.test>\r\n",
		"Subject: Undelivered Mail Returned to Sender\r\n",
		"Date: Tue, 14 Nov 2023 22:13:21 +0000\r\n",
		"Message-ID: <1700000001.000000000000002a@relay.test>\r\n",
		"Auto-Submitted: auto-generated\r\n",
		"MIME-Version: 1.0\r\n",
		"Content-Type: multipart/report; report-type=delivery-status;\r\n"
		"\tboundary=\"=_ringmail_000000000000002a\"\r\n",
		"\r\n--=_ringmail_000000000000002a\r\nContent-Description: Notification\r\n"
		"Content-Type: text/plain; charset=us-ascii\r\n",
		"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.test\r\n"
		"Original-Envelope-Id: E1\r\nArrival-Date: Tue, 14 Nov 2023 21:56:40 +0000\r\n\r\n"
		"Original-Recipient: rfc822;R@d.test\r\nFinal-Recipient: rfc822; r@d.test\r\n"
		"Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.d.test\r\n"
		"Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n really\r\n"
		"Last-Attempt-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n",
		"Content-Type: message/rfc822\r\n",
		"Subject: the original\r\n\r\nbody line one\r\nbody line two\r\n"
		"\r\n--=_ringmail_000000000000002a--\r\n",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		expect_has(s, want[i]);
	/* Three parts: the boundary opens three times and closes once. */
	size_t opens = 0;
	for (const char *p = s; (p = strstr(p, "\r\n--=_ringmail_000000000000002a\r\n")); p++)
		opens++;
	cr_expect_eq(opens, 3, "got %zu parts, want 3", opens);
	/* No bare LF anywhere. */
	for (const char *p = s; *p; p++)
		if (*p == '\n')
			cr_assert(p > s && p[-1] == '\r', "bare LF at %td", p - s);
}

Test(bounce, ret_hdrs_sends_headers_only)
{
	struct bounce_input in = input();
	in.ret = SMTP_RET_HDRS;
	const char *s = build(&in);

	expect_has(s, "Content-Type: text/rfc822-headers\r\n");
	expect_has(s, "Subject: the original\r\n");
	cr_expect(strstr(s, "body line one") == NULL, "body present with RET=HDRS");
	cr_expect(strstr(s, "message/rfc822") == NULL, "message/rfc822 with RET=HDRS");
}

Test(bounce, ret_full_over_cap_sends_headers_only)
{
	struct bounce_input in = input();
	in.ret = SMTP_RET_FULL;
	in.max_original = 20;
	const char *s = build(&in);

	expect_has(s, "Content-Type: text/rfc822-headers\r\n");
	cr_expect(strstr(s, "body line one") == NULL);
}

Test(bounce, hostile_text_is_sanitized)
{
	struct bounce_rcpt r = one_rcpt[0];
	r.diagnostic = "evil\r\n--=_ringmail_000000000000002a\r\nX: \x01\xff";
	struct bounce_input in = input();
	in.rcpts = &r;
	const char *s = build(&in);

	expect_has(s, "Diagnostic-Code: smtp; 550 5.1.1 evil?\r\n --=_ringmail_000000000000002a?\r\n X: ??\r\n");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		cr_assert(*p < 0x80, "8-bit byte at %td", (const char *)p - s);
}

Test(bounce, boundary_avoids_original)
{
	static const char tricky[] = "Subject: x\r\n\r\n--=_ringmail_000000000000002a\r\n";
	struct bounce_input in = input();
	in.message = tricky;
	in.message_len = sizeof(tricky) - 1;
	const char *s = build(&in);

	expect_has(s, "boundary=\"=_ringmail_000000000000002b\"");
}

Test(bounce, delayed_subject_and_retry_until)
{
	struct bounce_rcpt r = { .addr = "r@d.test", .action = BOUNCE_DELAYED,
		.diagnostic = "connection refused", .retry_until_ms = 1700400000000LL };
	struct bounce_input in = input();
	in.rcpts = &r;
	const char *s = build(&in);

	expect_has(s, "Subject: Delayed Mail (still being retried)\r\n");
	expect_has(s, "Action: delayed\r\nStatus: 4.0.0\r\n");
	expect_has(s, "Diagnostic-Code: X-ringmail; connection refused\r\n");
	expect_has(s, "Will-Retry-Until: ");
}

/* RFC 3461 5.2.2 and 5.2.3: success notices; a report without failures
 * carries only the original's header unless RET=FULL. */
Test(bounce, success_delivered_and_relayed)
{
	struct bounce_rcpt r[] = {
		{ .addr = "r@d.test", .action = BOUNCE_DELIVERED, .remote_mta = "local",
		  .code = 250, .status = "2.0.0", .diagnostic = "delivered to maildir" },
		{ .addr = "s@e.test", .action = BOUNCE_RELAYED, .remote_mta = "mx.e.test",
		  .code = 250, .status = "2.0.0", .diagnostic = "queued" },
	};
	struct bounce_input in = input();
	in.rcpts = r;
	in.nrcpts = 2;
	const char *s = build(&in);

	expect_has(s, "Subject: Successful Mail Delivery Report\r\n");
	expect_has(s, "Final-Recipient: rfc822; r@d.test\r\nAction: delivered\r\nStatus: 2.0.0\r\n");
	expect_has(s, "Final-Recipient: rfc822; s@e.test\r\nAction: relayed\r\nStatus: 2.0.0\r\n");
	expect_has(s, "Content-Type: text/rfc822-headers\r\n");
	cr_expect(strstr(s, "body line one") == NULL, "a success report carries the body:\n%s", s);
	in.ret = SMTP_RET_FULL;
	s = build(&in);
	expect_has(s, "Content-Type: message/rfc822\r\n");
	expect_has(s, "body line one");
}

/* RFC 6533: an SMTPUTF8 original gets a global report that keeps the
 * addresses readable. */
Test(bounce, smtputf8_global_report)
{
	struct bounce_rcpt r = { .addr = "j\xc3\xb6rg+x=y@b\xc3\xbc" "cher.test", .action = BOUNCE_FAILED,
		.status = "5.1.1", .remote_mta = "mx.test", .code = 550, .diagnostic = "no" };
	struct bounce_input in = input();
	in.rcpts = &r;
	in.sender = "\xc3\xa9mile@o.test";
	in.smtputf8 = true;
	const char *s = build(&in);

	expect_has(s, "To: <\xc3\xa9mile@o.test>\r\n");
	expect_has(s, "Content-Type: multipart/report; report-type=global-delivery-status;\r\n");
	expect_has(s, "Content-Type: message/global-delivery-status\r\n");
	expect_has(s, "Final-Recipient: utf-8; j\xc3\xb6rg\\x{2B}x\\x{3D}y@b\xc3\xbc" "cher.test\r\n");
	expect_has(s, "<j\xc3\xb6rg\\x{2B}x\\x{3D}y@b\xc3\xbc" "cher.test>: failed");
	expect_has(s, "Content-Type: text/plain; charset=utf-8\r\n");
	expect_has(s, "Content-Type: message/global\r\n");
	cr_expect(strstr(s, "rfc822; ") == NULL, "an rfc822 address type in a global report");
	in.ret = SMTP_RET_HDRS;
	s = build(&in);
	expect_has(s, "Content-Type: message/global-headers\r\n");
	/* Not UTF-8, or a control: never raw in the report. */
	r.addr = "a\xff" "\x01" "b@c.test";
	s = build(&in);
	expect_has(s, "Final-Recipient: utf-8; a?\\x{01}b@c.test\r\n");
	/* Without SMTPUTF8 nothing changes: 7-bit rfc822 type. */
	in.smtputf8 = false;
	r.addr = "j\xc3\xb6rg@d.test";
	s = build(&in);
	expect_has(s, "Final-Recipient: rfc822; j??rg@d.test\r\n");
	expect_has(s, "report-type=delivery-status;");
}

Test(bounce, bad_input_and_cap)
{
	struct bounce_input in = input();
	struct buf out;

	buf_init(&out, 100);
	in.sender = "";
	cr_expect_eq(bounce_build(&in, &out), -EINVAL);
	in = input();
	in.nrcpts = 0;
	cr_expect_eq(bounce_build(&in, &out), -EINVAL);
	in = input();
	cr_expect_eq(bounce_build(&in, &out), -ENOBUFS);
	cr_expect_eq(buf_len(&out), 0, "a failed build left %zu bytes", buf_len(&out));
	buf_free(&out);
}

Test(bounce, notify_rules)
{
	static const struct {
		const char *sender;
		unsigned notify;
		enum bounce_action action;
		bool want;
	} t[] = {
		{ "", 0, BOUNCE_FAILED, false },
		{ NULL, 0, BOUNCE_FAILED, false },
		{ "", SMTP_NOTIFY_FAILURE, BOUNCE_FAILED, false },
		{ "a@b", 0, BOUNCE_FAILED, true },
		{ "a@b", 0, BOUNCE_DELAYED, true },
		{ "a@b", 0, BOUNCE_DELIVERED, false },
		{ "a@b", SMTP_NOTIFY_NEVER, BOUNCE_FAILED, false },
		{ "a@b", SMTP_NOTIFY_FAILURE, BOUNCE_FAILED, true },
		{ "a@b", SMTP_NOTIFY_FAILURE, BOUNCE_DELAYED, false },
		{ "a@b", SMTP_NOTIFY_DELAY, BOUNCE_DELAYED, true },
		{ "a@b", SMTP_NOTIFY_DELAY, BOUNCE_FAILED, false },
		{ "a@b", SMTP_NOTIFY_SUCCESS, BOUNCE_DELIVERED, true },
		{ "a@b", SMTP_NOTIFY_SUCCESS, BOUNCE_RELAYED, true },
		{ "a@b", 0, BOUNCE_RELAYED, false },
		{ "a@b", SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY, BOUNCE_RELAYED, false },
		{ "a@b", SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE, BOUNCE_FAILED, true },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		bool got = bounce_wanted(t[i].sender, t[i].notify, t[i].action);
		cr_expect_eq(got, t[i].want, "case %zu: got %d, want %d", i, got, t[i].want);
	}
}

Test(bounce, category_in_text_and_fields)
{
	struct bounce_rcpt r = one_rcpt[0];
	struct bounce_input in = input();

	r.category = "invalid_recipient";
	in.rcpts = &r;
	const char *s = build(&in);
	expect_has(s, "\r\n    (category: invalid_recipient)\r\n");
	expect_has(s, "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n really\r\n"
		   "X-Ringmail-Bounce-Category: invalid_recipient\r\n");
	in.rcpts = one_rcpt;
	s = build(&in);
	cr_expect(strstr(s, "category") == NULL, "no category unless given");
}

/* RFC 8689 5: the report of a REQUIRETLS message, redacted: no part of
 * the original, whatever RET says; the report itself stays whole. */
Test(bounce, redacted_has_no_original)
{
	struct bounce_input in = input();
	in.ret = SMTP_RET_FULL;
	in.redacted = true;
	const char *s = build(&in);

	expect_has(s, "Content-Type: message/delivery-status\r\n");
	expect_has(s, "Final-Recipient: rfc822; r@d.test\r\n");
	expect_has(s, "Status: 5.1.1\r\n");
	cr_expect(strstr(s, "the original") == NULL, "original header in a redacted DSN:\n%s", s);
	cr_expect(strstr(s, "body line one") == NULL, "original body in a redacted DSN");
	cr_expect(strstr(s, "message/rfc822") == NULL && strstr(s, "rfc822-headers") == NULL,
		  "a third part in a redacted DSN:\n%s", s);
	/* The multipart still closes. */
	size_t n = strlen(s);
	cr_expect(n > 4 && strcmp(s + n - 4, "--\r\n") == 0, "no closing boundary:\n%s", s + (n > 80 ? n - 80 : 0));
}
