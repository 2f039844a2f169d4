/* test_header_fields - finding a field in a message's header section. */
#include <criterion/criterion.h>
#include <string.h>

#include "header_fields.h"

Test(header_fields, table)
{
	static const struct {
		const char *msg, *name;
		bool want;
	} t[] = {
		{ "Subject: x\r\nMessage-ID: <a@b>\r\n\r\nbody\r\n", "Message-ID", true },
		{ "Subject: x\r\nmessage-id: <a@b>\r\n\r\nbody\r\n", "Message-ID", true },
		{ "Subject: x\r\nMessage-ID : <a@b>\r\n\r\n", "Message-ID", true },
		{ "Subject: x\r\n\r\nMessage-ID: <a@b>\r\n", "Message-ID", false },
		{ "Subject: x\r\n Message-ID: folded\r\n\r\n", "Message-ID", false },
		{ "Subject: x\r\nResent-Message-ID: <a@b>\r\n\r\n", "Message-ID", false },
		{ "Message-IDx: <a@b>\r\n\r\n", "Message-ID", false },
		{ "Subject: x\r\nnot a header\r\nDate: now\r\n\r\n", "Date", false },
		{ "Date: Mon, 1 Jan 2026 00:00:00 +0000\n\n", "Date", true },
		{ "Date: no final newline", "Date", true },
		{ "", "Date", false },
		{ "\r\nDate: x\r\n", "Date", false },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		bool got = header_fields_has(t[i].msg, strlen(t[i].msg), t[i].name);
		cr_expect_eq(got, t[i].want, "case %zu (%s in \"%s\"): got %d, want %d", i, t[i].name,
			     t[i].msg, got, t[i].want);
	}
}

/* header_fields_take: every field of the name goes (folds too), the
 * first one's value comes back unfolded; the body is never touched. */
Test(header_fields, take_removes_and_returns_the_first)
{
	static const struct {
		const char *msg, *want_msg, *want_value;
		size_t cap;
		int found;
	} t[] = {
		{ "Subject: x\r\nX-Virtual-MTA: bulk\r\n\r\nbody\r\n", "Subject: x\r\n\r\nbody\r\n", "bulk", 64, 1 },
		{ "x-virtual-mta:   tx  \r\nSubject: x\r\n\r\n", "Subject: x\r\n\r\n", "tx", 64, 1 },
		{ "X-Virtual-MTA: a\r\n  b\r\nSubject: x\r\nX-Virtual-MTA: c\r\n\r\nX-Virtual-MTA: body\r\n",
		  "Subject: x\r\n\r\nX-Virtual-MTA: body\r\n", "a b", 64, 2 },
		{ "Subject: x\r\n\r\nX-Virtual-MTA: bulk\r\n", "Subject: x\r\n\r\nX-Virtual-MTA: bulk\r\n", "", 64, 0 },
		{ "X-Virtual-MTAx: bulk\r\n\r\n", "X-Virtual-MTAx: bulk\r\n\r\n", "", 64, 0 },
		{ "X-Virtual-MTA: a-very-long-pool-name\n\nb\n", "\nb\n", "a-ve", 5, -1 },
		{ "Subject: x\nX-Virtual-MTA: last", "Subject: x\n", "last", 64, 1 },
		{ "Subject: x\r\nnot a header\r\nX-Virtual-MTA: bulk\r\n\r\n",
		  "Subject: x\r\nnot a header\r\nX-Virtual-MTA: bulk\r\n\r\n", "", 64, 0 },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char msg[256], value[64];
		int found = 99;
		size_t len = strlen(t[i].msg);
		memcpy(msg, t[i].msg, len);
		len = header_fields_take(msg, len, "X-Virtual-MTA", value, t[i].cap, &found);
		cr_expect_eq(found, t[i].found, "case %zu: found %d, want %d", i, found, t[i].found);
		cr_expect(len == strlen(t[i].want_msg) && memcmp(msg, t[i].want_msg, len) == 0,
			  "case %zu: got \"%.*s\", want \"%s\"", i, (int)len, msg, t[i].want_msg);
		if (found != 0)
			cr_expect_str_eq(value, t[i].want_value, "case %zu", i);
	}
}

Test(header_fields, value_and_tls_required)
{
	static const struct {
		const char *msg;
		long want_len;
		const char *want;
		bool no;
	} t[] = {
		{ "Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n", 2, "No", true },
		{ "tls-required:no\r\n\r\n", 2, "no", true },
		{ "TLS-Required:   NO  \r\n\r\n", 2, "NO", true },
		{ "TLS-Required:\r\n No\r\n\r\n", 2, "No", true },
		{ "TLS-Required: Yes\r\n\r\n", 3, "Yes", false },
		{ "TLS-Required: No thanks\r\n\r\n", 9, "No thanks", false },
		{ "TLS-Required: No", 2, "No", true },
		{ "Subject: x\r\n\r\nTLS-Required: No\r\n", -1, "", false },
		{ "X-TLS-Required: No\r\n\r\n", -1, "", false },
		{ "TLS-Required: a\r\n b\r\nTo: c\r\n\r\n", 3, "a b", false },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char out[16];
		long n = header_fields_value(t[i].msg, strlen(t[i].msg), "TLS-Required", out, sizeof(out));
		bool no = header_fields_tls_required_no(t[i].msg, strlen(t[i].msg));
		cr_expect_eq(n, t[i].want_len, "case %zu: length got %ld, want %ld", i, n, t[i].want_len);
		cr_expect_str_eq(out, t[i].want, "case %zu: value got \"%s\", want \"%s\"", i, out, t[i].want);
		cr_expect_eq(no, t[i].no, "case %zu: TLS-Required: No got %d, want %d", i, no, t[i].no);
	}
}
