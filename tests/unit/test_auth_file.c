/*
 * test_auth_file - delivery.auth_file: next hops' SMTP AUTH credentials.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth_file.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

Test(auth_file, parses_lines_comments_and_colons)
{
	static const char text[] =
		"# provider\n"
		"\n"
		"[smtp.provider.example]:587   apikey:s3cr3t\n"
		"  relay.example.com\talice:pass:with:colons  \r\n"
		"10.0.0.5:25 bob:x";
	struct auth_file *af;
	char err[128];
	const struct auth_cred *c;

	cr_assert_eq(auth_file_parse(text, strlen(text), &af, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(auth_file_count(af), 3);
	c = auth_file_find(af, "[smtp.provider.example]:587");
	cr_assert_not_null(c);
	cr_expect_str_eq(c->user, "apikey");
	cr_expect_str_eq(c->password, "s3cr3t");
	c = auth_file_find(af, "relay.example.com");
	cr_assert_not_null(c);
	cr_expect_str_eq(c->user, "alice");
	cr_expect_str_eq(c->password, "pass:with:colons");
	c = auth_file_find(af, "10.0.0.5:25");
	cr_assert_not_null(c);
	cr_expect_str_eq(c->password, "x");
	/* Exactly as written: no normalisation of the key. */
	cr_expect_null(auth_file_find(af, "smtp.provider.example:587"));
	cr_expect_null(auth_file_find(af, "RELAY.example.com"));
	cr_expect_null(auth_file_find(NULL, "relay.example.com"));
	auth_file_free(af);
}

struct bad_case {
	const char *text;
	const char *why;
};

Test(auth_file, rejects_bad_lines_without_showing_passwords)
{
	static const struct bad_case cases[] = {
		{ "relay.example\n", "line 1: want" },
		{ "# c\nrelay.example    \n", "line 2: want" },
		{ "relay.example alice\n", "USER:PASSWORD" },
		{ "relay.example :hunter2\n", "user name" },
		{ "relay.example alice:\n", "password" },
		{ "relay.example alice:two words\n", "password" },
		{ "relay.example alice:x\nrelay.example bob:hunter2\n", "line 2: next hop relay.example appears twice" },
		{ "relay.example alice:hun\001ter2\n", "password" },
	};

	for (size_t i = 0; i < N(cases); i++) {
		struct auth_file *af = (struct auth_file *)1;
		char err[160];
		int rc = auth_file_parse(cases[i].text, strlen(cases[i].text), &af, err, sizeof(err));

		cr_expect_eq(rc, -EINVAL, "case %zu: got rc %d, want -EINVAL", i, rc);
		cr_expect_null(af, "case %zu: table returned on error", i);
		cr_expect(strstr(err, cases[i].why) != NULL, "case %zu: got \"%s\", want \"%s\"", i, err,
			  cases[i].why);
		cr_expect(strstr(err, "hunter2") == NULL, "case %zu: the password leaked: %s", i, err);
	}
}

Test(auth_file, load_refuses_a_file_others_may_read)
{
	char path[] = "/tmp/test_auth_file_XXXXXX";
	int fd = mkstemp(path);
	struct auth_file *af;
	char err[256];

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "[relay]:587 u:p\n", 16), 16);
	close(fd);
	cr_assert_eq(chmod(path, 0644), 0);
	cr_expect_eq(auth_file_load(path, &af, err, sizeof(err)), -EPERM);
	cr_expect(strstr(err, "readable by group or others") != NULL, "got \"%s\"", err);
	cr_assert_eq(chmod(path, 0640), 0);
	cr_expect_eq(auth_file_load(path, &af, err, sizeof(err)), -EPERM);
	cr_assert_eq(chmod(path, 0600), 0);
	cr_assert_eq(auth_file_load(path, &af, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(auth_file_find(af, "[relay]:587")->user, "u");
	auth_file_free(af);
	unlink(path);
	cr_expect_eq(auth_file_load(path, &af, err, sizeof(err)), -ENOENT);
}
