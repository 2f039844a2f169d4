/*
 * test_suppression - the suppression list's data: list, snapshots, CSV.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "suppression.h"

Test(suppression, list_add_replace_remove_and_snapshot)
{
	struct suppression_list *l = suppression_list_new();

	cr_assert_eq(suppression_list_add(l, "B@Example.test", 10, 0, "first"), 0);
	cr_assert_eq(suppression_list_add(l, "a@example.test", 11, 100, "bye\r\nbcc: x"), 0);
	cr_assert_eq(suppression_list_add(l, "b@example.TEST", 12, 0, "second"), 0);   /* replaces */
	cr_expect_eq(suppression_list_add(l, "nobody", 1, 0, ""), -EINVAL);
	cr_expect_eq(suppression_list_add(l, "a b@example.test", 1, 0, ""), -EINVAL);
	cr_expect_eq(suppression_list_add(l, "@example.test", 1, 0, ""), -EINVAL);
	cr_expect_eq(suppression_list_count(l), 2);

	struct suppression_snapshot *s = suppression_snapshot_build(l, 7);
	cr_expect_eq(suppression_snapshot_version(s), 7);
	cr_assert_eq(suppression_snapshot_count(s), 2);
	cr_expect_str_eq(suppression_snapshot_at(s, 0)->address, "a@example.test");   /* sorted */
	const struct suppression_entry *e = suppression_snapshot_find(s, "b@EXAMPLE.test", 50);
	cr_assert_not_null(e);
	cr_expect_str_eq(e->reason, "second");
	cr_expect_eq(e->created_s, 12);
	e = suppression_snapshot_find(s, "A@example.test", 99);
	cr_assert_not_null(e);
	cr_expect_str_eq(e->reason, "bye??bcc: x", "one line, printable: got %s", e->reason);
	cr_expect_null(suppression_snapshot_find(s, "a@example.test", 100), "expired at 100");
	cr_expect_null(suppression_snapshot_find(s, "c@example.test", 0));
	cr_expect_null(suppression_snapshot_find(NULL, "a@example.test", 0));

	/* The snapshot is a copy: changing the list later does not touch it. */
	cr_expect(suppression_list_remove(l, "B@example.test"));
	cr_expect(!suppression_list_remove(l, "B@example.test"));
	cr_expect_not_null(suppression_snapshot_find(s, "b@example.test", 0));
	struct suppression_snapshot *s2 = suppression_snapshot_ref(s);
	cr_expect_null(suppression_snapshot_unref(s));
	cr_expect_not_null(suppression_snapshot_find(s2, "b@example.test", 0), "one reference left");
	suppression_snapshot_unref(s2);

	cr_expect_eq(suppression_list_purge(l, 100), 1);
	cr_expect_eq(suppression_list_count(l), 0);
	suppression_list_free(l);
}

Test(suppression, many_entries_stay_sorted)
{
	struct suppression_list *l = suppression_list_new();
	char addr[64];

	for (int i = 0; i < 5000; i++) {
		snprintf(addr, sizeof(addr), "u%d@d%d.test", (i * 7919) % 5000, i % 13);
		cr_assert_eq(suppression_list_add(l, addr, 1, 0, "x"), 0);
	}
	struct suppression_snapshot *s = suppression_snapshot_build(l, 1);
	for (size_t i = 1; i < suppression_snapshot_count(s); i++)
		cr_assert(strcmp(suppression_snapshot_at(s, i - 1)->address, suppression_snapshot_at(s, i)->address) < 0);
	for (int i = 0; i < 5000; i++) {
		snprintf(addr, sizeof(addr), "u%d@d%d.test", (i * 7919) % 5000, i % 13);
		cr_assert_not_null(suppression_snapshot_find(s, addr, 0), "%s", addr);
	}
	suppression_snapshot_unref(s);
	suppression_list_free(l);
}

Test(suppression, csv_round_trip_and_quoting)
{
	static const struct suppression_entry in[] = {
		{ "a@b.test", 1700000000, 0, "550 5.1.1 user unknown" },
		{ "c@d.test", 5, 4102444800LL, "said \"no\", twice" },
		{ "e@f.test", 0, 0, "" },
		{ "g@h.test", 1, 2, " leading blank" },
		{ "i@j.test", 1, 2, "trailing blank " },
	};
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		char line[SUPPRESSION_LINE_MAX];
		size_t n = suppression_csv_format(line, sizeof(line), &in[i]);
		cr_assert(n > 0 && line[n - 1] == '\n');
		line[n - 1] = '\0';
		struct suppression_entry out;
		const char *why = "";
		cr_assert_eq(suppression_csv_parse(line, &out, &why), 0, "case %zu: %s (%s)", i, why, line);
		cr_expect_str_eq(out.address, in[i].address);
		cr_expect_eq(out.created_s, in[i].created_s);
		cr_expect_eq(out.expires_s, in[i].expires_s);
		cr_expect_str_eq(out.reason, in[i].reason, "case %zu", i);
	}
	char quoted[] = "x@y.test,3,,\"say \"\"hi\"\", ok\"";
	struct suppression_entry e;
	const char *why;
	cr_assert_eq(suppression_csv_parse(quoted, &e, &why), 0);
	cr_expect_str_eq(e.reason, "say \"hi\", ok");
}

Test(suppression, csv_refusals)
{
	static const struct {
		const char *line;
		int rc;
		const char *why;
	} cases[] = {
		{ "address,created,expires,reason", 1, NULL },
		{ "", 1, NULL },
		{ "\r", 1, NULL },
		{ "a@b.test", 0, NULL },
		{ "a@b.test,1", 0, NULL },
		{ "nobody,1,2,x", -EINVAL, "not an address" },
		{ "a@b.test,soon,,x", -EINVAL, "created and expires" },
		{ "a@b.test,1,-5,x", -EINVAL, "created and expires" },
		{ "a@b.test,1,2,x,extra", -EINVAL, "more than 4 fields" },
		{ "a@b.test,1,2,\"open", -EINVAL, "unterminated quote" },
		{ "a@b.test,1,2,\"closed\"junk", -EINVAL, "unterminated quote" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char line[256];
		struct suppression_entry e;
		const char *why = "";
		snprintf(line, sizeof(line), "%s", cases[i].line);
		int rc = suppression_csv_parse(line, &e, &why);
		cr_expect_eq(rc, cases[i].rc, "%s: got %d", cases[i].line, rc);
		if (cases[i].why != NULL)
			cr_expect(strncmp(why, cases[i].why, strlen(cases[i].why)) == 0, "%s: got %s", cases[i].line, why);
	}
}
