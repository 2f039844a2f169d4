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
