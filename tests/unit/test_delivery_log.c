/*
 * test_delivery_log - one entry becomes one JSON line: fields, escaping,
 * nulls, cutting of long values.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "delivery_log.h"

static struct delivery_log_entry sample(void)
{
	return (struct delivery_log_entry){
		.ts_ms = 1795442400123LL, .queue_id = "0001ABC", .message_id = "m1@x", .sender = "a@b.example",
		.recipient = "c@d.example", .domain = "d.example", .mx = "mx.d.example",
		.ip = "192.0.2.1", .tls = "none", .tls_policy = "opportunistic", .status = "delivered", .code = 250,
		.enhanced_code = "2.0.0", .reply = "ok queued", .delay_s = 1.5, .attempt = 2,
		.dkim = "example.com/s1,example.com/s2",
	};
}

Test(delivery_log, format_all_fields)
{
	struct delivery_log_entry e = sample();
	char line[4096];
	size_t n = delivery_log_format(line, sizeof(line), &e);
	const char *want = "{\"ts\":\"2026-11-23T14:00:00.123Z\",\"queue_id\":\"0001ABC\",\"message_id\":\"m1@x\",\"sender\":\"a@b.example\","
			   "\"recipient\":\"c@d.example\",\"domain\":\"d.example\",\"mx\":\"mx.d.example\","
			   "\"ip\":\"192.0.2.1\",\"tls\":\"none\",\"tls_policy\":\"opportunistic\",\"status\":\"delivered\",\"enhanced_code\":\"2.0.0\","
			   "\"reply\":\"ok queued\",\"dkim\":\"example.com/s1,example.com/s2\",\"category\":null,"
			   "\"code\":250,\"delay\":1.500,\"attempt\":2}\n";

	cr_expect_eq(n, strlen(want), "got length %zu, want %zu", n, strlen(want));
	cr_expect(strncmp(line, want, n) == 0, "got %.*s, want %s", (int)n, line, want);
}

Test(delivery_log, nulls_escapes_and_unknown_tls)
{
	struct delivery_log_entry e = sample();
	char line[4096];

	e.sender = "";
	e.message_id = NULL;
	e.mx = NULL;
	e.ip = NULL;
	e.tls = NULL;
	e.enhanced_code = NULL;
	e.reply = "say \"no\"\\\r\n\x01";
	e.dkim = NULL;
	size_t n = delivery_log_format(line, sizeof(line), &e);
	line[n] = '\0';
	cr_expect(strstr(line, "\"message_id\":null,\"sender\":\"\",") != NULL, "null sender: got %s", line);
	cr_expect(strstr(line, "\"mx\":null,\"ip\":null,\"tls\":\"unknown\",") != NULL, "got %s", line);
	cr_expect(strstr(line, "\"enhanced_code\":null,") != NULL, "got %s", line);
	cr_expect(strstr(line, "\"dkim\":null,\"category\":null,\"code\"") != NULL, "unsigned: got %s", line);
	cr_expect(strstr(line, "\"reply\":\"say \\\"no\\\"\\\\\\u000d\\u000a\\u0001\",") != NULL,
		  "escapes: got %s", line);
	cr_expect(strchr(line, '\n') == line + n - 1, "one line ending in \\n: got %s", line);
}

Test(delivery_log, category_of_a_bounce)
{
	struct delivery_log_entry e = sample();
	char line[4096];

	e.status = "bounced";
	e.code = 550;
	e.enhanced_code = "5.1.1";
	e.category = "invalid_recipient";
	size_t n = delivery_log_format(line, sizeof(line), &e);
	line[n] = '\0';
	cr_expect(strstr(line, ",\"category\":\"invalid_recipient\",\"code\":550,") != NULL, "got %s", line);
}

Test(delivery_log, long_values_are_cut_to_fit)
{
	static char big[10000];
	char line[1024];
	struct delivery_log_entry e = sample();

	memset(big, '"', sizeof(big) - 1);     /* every byte doubles when escaped */
	e.reply = big;
	e.recipient = big;
	size_t n = delivery_log_format(line, sizeof(line), &e);
	cr_assert_lt(n, sizeof(line), "got %zu, want < %zu", n, sizeof(line));
	line[n] = '\0';
	cr_expect(line[n - 1] == '\n', "ends in a newline");
	cr_expect(strstr(line, ",\"code\":250,\"delay\":1.500,\"attempt\":2}\n") != NULL,
		  "the tail survives: got %s", line);
	/* An escape is never cut in half: the value is whole \" pairs. */
	const char *v = strstr(line, "\"reply\":\"");
	const char *end = strstr(line, "\",\"dkim\":");
	cr_assert(v != NULL && end != NULL, "got %s", line);
	v += strlen("\"reply\":\"");
	cr_expect((end - v) % 2 == 0 && end - v >= 2, "got %s", line);
	for (const char *p = v; p < end; p += 2)
		cr_expect(p[0] == '\\' && p[1] == '"', "a broken escape at %ld: %s", (long)(p - line), line);
}

struct msgid_case {
	const char *msg;
	const char *want;
};

static const struct msgid_case msgid_cases[] = {
	{ "Message-ID: <a@b>\r\n\r\nbody", "a@b" },
	{ "Subject: x\r\nmessage-id:<abc.def@host.example>\r\n\r\n", "abc.def@host.example" },
	{ "Subject: x\nMESSAGE-ID: <lf@only>\n\n", "lf@only" },
	{ "Message-ID:\r\n <folded@x>\r\n\r\n", "folded@x" },
	{ "Subject: x\r\n\r\nMessage-ID: <in@body>\r\n", "" },
	{ "Message-ID: no-brackets@x\r\n\r\n", "" },
	{ "Message-ID: <a b@x>\r\n\r\n", "" },
	{ "Message-ID: <unterminated@x\r\n\r\n", "" },
	{ "Message-IDX: <a@b>\r\n\r\n", "" },
	{ "", "" },
	{ "Message-ID: <abcdefghijklmnopqrstuvwxyz@toolong.example>\r\n\r\n", "" },
};

Test(delivery_log, message_id_table)
{
	for (size_t i = 0; i < sizeof(msgid_cases) / sizeof(msgid_cases[0]); i++) {
		char out[32];
		const char *msg = msgid_cases[i].msg;
		delivery_log_message_id(msg, strlen(msg), out, sizeof(out));
		cr_expect_str_eq(out, msgid_cases[i].want, "case %zu: got \"%s\", want \"%s\"", i, out,
				 msgid_cases[i].want);
	}
}

Test(delivery_log, dkim_signers_table)
{
	static const struct { const char *msg, *want; } cases[] = {
		{ "From: a@b\r\nSubject: x\r\n\r\nbody\r\n", "" },
		{ "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s2026r;\r\n\tbh=abc; b=xyz\r\n"
		  "dkim-signature: v=1; a=ed25519-sha256; s = s2026e ; d=mail.example.com;\r\n b=q\r\n"
		  "From: a@example.com\r\n\r\n", "example.com/s2026r,mail.example.com/s2026e" },
		{ "DKIM-Signature: v=1; d=example.com; b=no-selector\r\n\r\n", "" },
		{ "Subject: x\r\n\r\nDKIM-Signature: v=1; d=body.example; s=s\r\n", "" },  /* in the body */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[512];
		delivery_log_dkim(cases[i].msg, strlen(cases[i].msg), out, sizeof(out));
		cr_expect_str_eq(out, cases[i].want, "case %zu: got \"%s\", want \"%s\"", i, out, cases[i].want);
	}
	char small[20];
	delivery_log_dkim(cases[1].msg, strlen(cases[1].msg), small, sizeof(small));
	cr_expect_str_eq(small, "example.com/s2026r", "cut at a whole pair: got \"%s\"", small);
}
