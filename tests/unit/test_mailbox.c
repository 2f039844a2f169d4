/* test_mailbox - address to mailbox name, and existence with and without a
 * users db. */
#include <criterion/criterion.h>
#include <string.h>

#include "mailbox.h"
#include "users.h"

struct name_case {
	const char *address;
	const char *want;           /* NULL: -EINVAL */
};

Test(mailbox, names)
{
	static const struct name_case cases[] = {
		{ "alice@example.com", "alice" },
		{ "Alice@Example.COM", "alice" },
		{ "alice+lists@example.com", "alice" },
		{ "bob+a+b@x", "bob" },
		{ "postmaster", "postmaster" },
		{ "a.b@x", "a.b" },
		{ "+detail@x", NULL },
		{ "@x", NULL },
		{ ".hidden@x", NULL },
		{ "\"a b\"@x", NULL },
		{ "a/b@x", NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[MAILBOX_NAME_MAX + 1];
		int rc = mailbox_name(cases[i].address, out, sizeof(out));
		if (cases[i].want == NULL) {
			cr_expect(rc < 0, "%s: got %d (\"%s\"), want -EINVAL", cases[i].address, rc,
				  rc == 0 ? out : "");
		} else {
			cr_expect(rc == 0, "%s: got %d, want 0", cases[i].address, rc);
			if (rc == 0)
				cr_expect(strcmp(out, cases[i].want) == 0, "%s: got \"%s\", want \"%s\"",
					  cases[i].address, out, cases[i].want);
		}
	}
}

Test(mailbox, short_buffer)
{
	char out[4];

	cr_expect(mailbox_name("abcd@x", out, sizeof(out)) < 0, "got 0 for a name that does not fit");
	cr_expect(mailbox_name("abc@x", out, sizeof(out)) == 0 && strcmp(out, "abc") == 0,
		  "got \"%s\", want \"abc\"", out);
}

Test(mailbox, exists)
{
	static const char text[] = "alice:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\n";
	struct users_db *db = NULL;
	char err[256];

	cr_assert(users_parse("test", text, strlen(text), &db, err, sizeof(err)) == 0, "parse: %s", err);
	cr_expect(mailbox_exists(db, "alice@example.com"), "alice: got false, want true");
	cr_expect(mailbox_exists(db, "ALICE+x@example.com"), "ALICE+x: got false, want true");
	cr_expect(!mailbox_exists(db, "bob@example.com"), "bob: got true, want false");
	cr_expect(mailbox_exists(NULL, "bob@example.com"), "no db, bob: got false, want true");
	cr_expect(!mailbox_exists(NULL, "\"a b\"@example.com"), "no db, quoted: got true, want false");
	users_free(db);
}
