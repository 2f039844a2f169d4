/*
 * test_privilege - the run-as user's resolution and the tree hand-over
 * (relay/daemon/privilege.c). The drop itself is one-way, so it is tested
 * on a real daemon (tests/integration/test_privilege.py); here: which user,
 * and that giving a tree away follows no link and skips hard links.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "privilege.h"

static char err[512];

Test(privilege, an_unknown_user_is_an_error_naming_it)
{
	struct privilege_user u;

	cr_assert_eq(privilege_resolve("no-such-user-ringmail", &u, err, sizeof(err)), -1);
	cr_assert(strstr(err, "no-such-user-ringmail") != NULL, "got \"%s\"", err);
}

Test(privilege, explicit_root_stays_root)
{
	struct privilege_user u;

	if (geteuid() != 0)
		cr_skip_test("needs root");
	cr_assert_eq(privilege_resolve("root", &u, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(u.uid, 0);
	cr_assert(!u.change);
}

Test(privilege, not_root_stays_itself)
{
	struct privilege_user u;

	if (geteuid() == 0)
		cr_skip_test("needs a user other than root");
	cr_assert_eq(privilege_resolve("", &u, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(u.uid, geteuid());
	cr_assert(!u.change);
	cr_assert_eq(privilege_resolve("root", &u, err, sizeof(err)), -1);
}

/* make_file - create path with some content. */
static void make_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	cr_assert(fd >= 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, "x", 1), 1);
	close(fd);
}

static uid_t owner(const char *path)
{
	struct stat st;
	cr_assert_eq(lstat(path, &st), 0, "%s: %s", path, strerror(errno));
	return st.st_uid;
}

Test(privilege, chown_tree_follows_no_link_and_skips_hard_links)
{
	char top[] = "/tmp/ringmail-unit-priv-XXXXXX", p[4096], outside[4096];

	if (geteuid() != 0)
		cr_skip_test("needs root");
	cr_assert_not_null(mkdtemp(top));
	/* top/tree/{a, sub/b, link -> ../outside, sub/hard (= ../outside's twin)} */
	snprintf(outside, sizeof(outside), "%s/outside", top);
	make_file(outside);
	snprintf(p, sizeof(p), "%s/tree", top);
	cr_assert_eq(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/tree/sub", top);
	cr_assert_eq(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/tree/a", top);
	make_file(p);
	snprintf(p, sizeof(p), "%s/tree/sub/b", top);
	make_file(p);
	snprintf(p, sizeof(p), "%s/tree/link", top);
	cr_assert_eq(symlink(outside, p), 0);
	snprintf(p, sizeof(p), "%s/tree/sub/hard", top);
	cr_assert_eq(link(outside, p), 0);

	struct privilege_user u = { .change = true, .uid = 4242, .gid = 4243 };
	snprintf(p, sizeof(p), "%s/tree", top);
	cr_assert_eq(privilege_chown_tree(p, &u), 1, "one hard-linked file skipped");

	const char *given[] = { "tree", "tree/sub", "tree/a", "tree/sub/b", "tree/link" };
	for (size_t i = 0; i < sizeof(given) / sizeof(given[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", top, given[i]);
		cr_assert_eq(owner(p), 4242, "%s: got uid %ld, want 4242", given[i], (long)owner(p));
	}
	cr_assert_eq(owner(outside), 0, "the link's target stays root's");
	snprintf(p, sizeof(p), "%s/tree/sub/hard", top);
	cr_assert_eq(owner(p), 0, "the hard link stays root's");
	/* A second pass has nothing left to do but the skipped link. */
	snprintf(p, sizeof(p), "%s/tree", top);
	cr_assert_eq(privilege_chown_tree(p, &u), 1);
	cr_assert_eq(privilege_chown_tree("/nonexistent/ringmail", &u), 0);

	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", top);
	cr_assert_eq(system(cmd), 0);
}

Test(privilege, chown_path_leaves_devices_alone)
{
	struct privilege_user u = { .change = true, .uid = 4242, .gid = 4243 };

	if (geteuid() != 0)
		cr_skip_test("needs root");
	cr_assert_eq(privilege_chown_path("/dev/null", &u), 0);
	cr_assert_eq(owner("/dev/null"), 0);
	cr_assert_eq(privilege_chown_path("-", &u), 0);
	cr_assert_eq(privilege_chown_path("", &u), 0);
}
