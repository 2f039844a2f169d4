/*
 * test_mta_sts_store - the durable MTA-STS policy cache in a scratch
 * directory: save, load, replace, refuse bad names and broken files.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mta_sts_store.h"

static char dir[] = "/tmp/mta-sts-store-XXXXXX";

static void start(void)
{
	cr_assert_not_null(mkdtemp(dir));
}

static void stop(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_expect_eq(system(cmd), 0);
}

TestSuite(mta_sts_store, .init = start, .fini = stop);

Test(mta_sts_store, save_load_replace_remove)
{
	const char *v1 = "version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 3600\n";
	const char *v2 = "version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 86400\n";
	struct mta_sts_cached c;
	const char *why = NULL;

	cr_expect_eq(mta_sts_store_load(dir, "example.com", &c, &why), -ENOENT);
	cr_assert_eq(mta_sts_store_save(dir, "example.com", "one", 1000, v1, strlen(v1)), 0);
	cr_assert_eq(mta_sts_store_load(dir, "example.com", &c, &why), 0, "%s", why ? why : "-");
	cr_expect_str_eq(c.id, "one");
	cr_expect_eq(c.fetched_s, 1000);
	cr_expect_eq(c.policy.mode, MTA_STS_MODE_TESTING);

	cr_assert_eq(mta_sts_store_save(dir, "example.com", "two", 2000, v2, strlen(v2)), 0);
	cr_assert_eq(mta_sts_store_load(dir, "example.com", &c, &why), 0);
	cr_expect_str_eq(c.id, "two");
	cr_expect_eq(c.policy.mode, MTA_STS_MODE_ENFORCE);
	cr_expect_eq(c.policy.max_age_s, 86400);
	char tmp[256];
	snprintf(tmp, sizeof(tmp), "%s/example.com.tmp", dir);
	cr_expect_neq(access(tmp, F_OK), 0, "no temporary file left");

	cr_expect_eq(mta_sts_store_remove(dir, "example.com"), 0);
	cr_expect_eq(mta_sts_store_remove(dir, "example.com"), 0);
	cr_expect_eq(mta_sts_store_load(dir, "example.com", &c, &why), -ENOENT);
}

Test(mta_sts_store, refuses_names_that_are_not_domains)
{
	const char *v = "version: STSv1\nmode: none\nmax_age: 1\n";
	static const char *bad[] = {"../etc", "a/b", "", ".", "Example.com", "example.com.", "a..b"};
	struct mta_sts_cached c;
	const char *why;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(mta_sts_store_save(dir, bad[i], "x", 1, v, strlen(v)), -EINVAL, "\"%s\"", bad[i]);
		cr_expect_eq(mta_sts_store_load(dir, bad[i], &c, &why), -EINVAL, "\"%s\"", bad[i]);
	}
	cr_expect_eq(mta_sts_store_save(dir, "ok.example", "bad-id", 1, v, strlen(v)), -EINVAL);
	cr_expect_eq(mta_sts_store_save(dir, "ok.example", "", 1, v, strlen(v)), -EINVAL);
	cr_expect_eq(mta_sts_store_load(dir, "ok.example", &c, &why), -ENOENT);
}

Test(mta_sts_store, a_broken_file_is_an_error_not_a_policy)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/broken.example", dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("ringmail-mta-sts 1\nid: a\nfetched: 5\n\nversion: STSv1\nmode: enforce\n", f);   /* cut short */
	fclose(f);
	struct mta_sts_cached c;
	const char *why = NULL;
	cr_expect_eq(mta_sts_store_load(dir, "broken.example", &c, &why), -EINVAL);
	cr_expect_not_null(why);
}
