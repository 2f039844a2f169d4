/* test_maildir - Maildir delivery and the POP3 reader, in a temporary root. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "maildir.h"

static char root[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void setup(void)
{
	strcpy(root, "/tmp/test_maildir.XXXXXX");
	cr_assert_not_null(mkdtemp(root), "mkdtemp: %s", strerror(errno));
}

static void teardown(void)
{
	nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(maildir, .init = setup, .fini = teardown);

/* dir_count - entries of <root>/<user>/<sub> not starting with '.'; the
 * first name is copied to first */
static int dir_count(const char *user, const char *sub, char *first, size_t size)
{
	char path[512];
	DIR *d;
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s/%s", root, user, sub);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n++ == 0 && first != NULL)
			snprintf(first, size, "%s", e->d_name);
	}
	closedir(d);
	return n;
}

static void deliver(const char *user, const char *data, char *name)
{
	char tmp[MAILDIR_NAME_MAX + 1];
	int err = maildir_deliver(root, user, data, strlen(data), NULL, name ? name : tmp,
				  MAILDIR_NAME_MAX + 1);

	cr_assert_eq(err, 0, "deliver: got %d (%s), want 0", err, strerror(-err));
}

/* read_all - the raw bytes of message i */
static size_t read_all(struct maildir_box *box, size_t i, char *buf, size_t size)
{
	size_t got = 0;
	ssize_t n;

	while ((n = maildir_read(box, i, got, buf + got, 5)) > 0 && got < size - 6)
		got += (size_t)n;
	cr_assert_geq(n, 0, "read: got %zd", n);
	buf[got] = 0;
	return got;
}

Test(maildir, user_names)
{
	static const struct {
		const char *user;
		bool valid;
	} cases[] = {
		{ "alice", true }, { "a.b-c_d+e", true }, { "", false }, { ".", false },
		{ "..", false }, { ".hidden", false }, { "a/b", false }, { "a\nb", false },
		{ "a\x7f", false },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(maildir_user_valid(cases[i].user), cases[i].valid,
			     "user [%s]: got %d, want %d", cases[i].user, !cases[i].valid,
			     cases[i].valid);
	cr_assert_eq(maildir_deliver(root, "../x", "a", 1, NULL, NULL, 0), -EINVAL);
	cr_assert_eq(maildir_deliver("/nonexistent-root-dir", "x", "a", 1, NULL, NULL, 0),
		     -ENOENT);
}

Test(maildir, delivery_name_and_place)
{
	struct maildir_deliver_options opt = { .hostname = "mx:1/a,b" };
	char name[MAILDIR_NAME_MAX + 1], found[MAILDIR_NAME_MAX + 1], want[64];
	const char *data = "Subject: hi\r\n\r\nbody\r\n";
	unsigned long long t;
	long usec, pid;
	unsigned long q;
	int n = 0, err;

	err = maildir_deliver(root, "alice", data, strlen(data), &opt, name, sizeof(name));
	cr_assert_eq(err, 0, "got %d, want 0", err);
	cr_assert_eq(sscanf(name, "%llu.M%ldP%ldQ%lu.%n", &t, &usec, &pid, &q, &n), 4,
		     "name %s", name);
	cr_assert(usec >= 0 && usec < 1000000, "usec %ld", usec);
	cr_assert_eq(pid, (long)getpid(), "got pid %ld, want %ld", pid, (long)getpid());
	/* Stored with LF: 12 + 1 + 5 = 18 octets; 21 with CRLF. */
	snprintf(want, sizeof(want), "mx\\0721\\057a\\054b,S=18,W=21");
	cr_assert_str_eq(name + n, want, "got host part %s, want %s", name + n, want);
	cr_assert_eq(dir_count("alice", "new", found, sizeof(found)), 1);
	cr_assert_str_eq(found, name);
	cr_assert_eq(dir_count("alice", "tmp", NULL, 0), 0, "tmp/ is empty after delivery");
	cr_assert_eq(dir_count("alice", "cur", NULL, 0), 0);
}

Test(maildir, names_are_unique)
{
	char a[MAILDIR_NAME_MAX + 1], b[MAILDIR_NAME_MAX + 1];

	deliver("bob", "x\n", a);
	deliver("bob", "x\n", b);
	cr_assert_str_neq(a, b, "two deliveries got the same name %s", a);
	cr_assert_eq(dir_count("bob", "new", NULL, 0), 2);
}

Test(maildir, stored_with_lf_and_read_back)
{
	struct maildir_box *box;
	char buf[256];
	size_t n;

	deliver("carol", "A: b\r\n\r\nline\r\n.dot\r\nbare\nend", NULL);
	cr_assert_eq(maildir_open(root, "carol", &box), 0);
	cr_assert_eq(maildir_count(box), 1);
	n = read_all(box, 0, buf, sizeof(buf));
	cr_assert_str_eq(buf, "A: b\n\nline\n.dot\nbare\nend", "got [%s]", buf);
	/* CRLF size: every LF counts 2, and the last line gets a CRLF. */
	cr_assert_eq(maildir_size(box, 0), n + 5 + 2, "got %llu, want %zu",
		     (unsigned long long)maildir_size(box, 0), n + 7);
	maildir_close(box);
}

/* Files written by other tools: no S= or W= in the name, CRLF or LF inside. */
Test(maildir, foreign_files_sized_by_reading)
{
	char path[512];
	struct maildir_box *box;
	FILE *f;

	deliver("dave", "first\n", NULL);
	snprintf(path, sizeof(path), "%s/dave/cur/1.foreign:2,S", root);
	f = fopen(path, "w");
	fputs("x\r\ny\nz", f);	/* 3 + 3 + 1 + 2 = 9 */
	fclose(f);
	snprintf(path, sizeof(path), "%s/dave/new/2.other", root);
	f = fopen(path, "w");
	fputs("a\n", f);	/* 3 */
	fclose(f);
	snprintf(path, sizeof(path), "%s/dave/cur/3.subdir", root);
	cr_assert_eq(mkdir(path, 0700), 0, "a stray directory is skipped");
	cr_assert_eq(maildir_open(root, "dave", &box), 0);
	cr_assert_eq(maildir_count(box), 3, "got %zu", maildir_count(box));
	/* Sorted by the leading time: 1.foreign, 2.other, then ours (now). */
	cr_assert_str_eq(maildir_uidl(box, 0), "1.foreign");
	cr_assert_eq(maildir_size(box, 0), 9, "got %llu", (unsigned long long)maildir_size(box, 0));
	cr_assert_str_eq(maildir_uidl(box, 1), "2.other");
	cr_assert_eq(maildir_size(box, 1), 3);
	cr_assert_eq(maildir_size(box, 2), 7);
	maildir_close(box);
	cr_assert_eq(dir_count("dave", "new", NULL, 0), 0, "new/ moved to cur/");
	snprintf(path, sizeof(path), "%s/dave/cur/2.other:2,", root);
	cr_assert_eq(access(path, F_OK), 0, "2.other got its :2, info");
	snprintf(path, sizeof(path), "%s/dave/cur/1.foreign:2,S", root);
	cr_assert_eq(access(path, F_OK), 0, "info kept as it was");
}

Test(maildir, quota)
{
	struct maildir_deliver_options opt = { .quota = 20 };
	uint64_t used;

	cr_assert_eq(maildir_deliver(root, "erin", "0123456789\r\n", 12, &opt, NULL, 0), 0);
	cr_assert_eq(maildir_usage(root, "erin", &used), 0);
	cr_assert_eq(used, 11, "got %llu, want 11 (stored with LF)", (unsigned long long)used);
	cr_assert_eq(maildir_deliver(root, "erin", "012345678\r\n", 11, &opt, NULL, 0), -EDQUOT);
	cr_assert_eq(maildir_deliver(root, "erin", "01234567\r\n", 10, &opt, NULL, 0), 0,
		     "exactly at the quota fits");
	cr_assert_eq(maildir_deliver(root, "erin", "x", 1, &opt, NULL, 0), -EDQUOT);
	cr_assert_eq(dir_count("erin", "new", NULL, 0), 2);
	cr_assert_eq(dir_count("erin", "tmp", NULL, 0), 0);
	cr_assert_eq(maildir_usage(root, "nobody", &used), 0);
	cr_assert_eq(used, 0);
}

Test(maildir, second_open_is_busy)
{
	struct maildir_box *a, *b = NULL;

	deliver("frank", "m\n", NULL);
	cr_assert_eq(maildir_open(root, "frank", &a), 0);
	cr_assert_eq(maildir_open(root, "frank", &b), -EBUSY);
	cr_assert_null(b);
	/* Delivery into a locked mailbox works; the session keeps its snapshot. */
	deliver("frank", "n\n", NULL);
	cr_assert_eq(maildir_count(a), 1);
	a = maildir_close(a);
	cr_assert_null(a);
	cr_assert_eq(maildir_open(root, "frank", &b), 0, "open after close");
	cr_assert_eq(maildir_count(b), 2);
	maildir_close(b);
}

Test(maildir, uidl_stable_across_sessions)
{
	struct maildir_box *box;
	char first[3][128];
	size_t i;

	deliver("gina", "one\n", NULL);
	deliver("gina", "two\n", NULL);
	deliver("gina", "three\n", NULL);
	cr_assert_eq(maildir_open(root, "gina", &box), 0);
	cr_assert_eq(maildir_count(box), 3);
	for (i = 0; i < 3; i++) {
		snprintf(first[i], sizeof(first[i]), "%s", maildir_uidl(box, i));
		cr_assert(strlen(first[i]) > 0 && strlen(first[i]) <= 70, "uidl %s", first[i]);
		cr_assert_null(strpbrk(first[i], ":, "), "uidl %s", first[i]);
	}
	maildir_close(box);
	cr_assert_eq(maildir_open(root, "gina", &box), 0);
	for (i = 0; i < 3; i++)
		cr_expect_str_eq(maildir_uidl(box, i), first[i], "message %zu: got %s, want %s",
				 i, maildir_uidl(box, i), first[i]);
	maildir_close(box);
}

Test(maildir, long_host_gets_hashed_uidl)
{
	struct maildir_deliver_options opt = {
		.hostname = "a-very-long-host-name-that-goes-on.and-on.example.com",
	};
	struct maildir_box *box;
	char uidl[80];

	cr_assert_eq(maildir_deliver(root, "hank", "x\n", 2, &opt, NULL, 0), 0);
	cr_assert_eq(maildir_open(root, "hank", &box), 0);
	snprintf(uidl, sizeof(uidl), "%s", maildir_uidl(box, 0));
	cr_assert_eq(strlen(uidl), 17, "got %s", uidl);
	cr_assert_eq(uidl[0], 'H');
	maildir_close(box);
	cr_assert_eq(maildir_open(root, "hank", &box), 0);
	cr_assert_str_eq(maildir_uidl(box, 0), uidl);
	maildir_close(box);
}

Test(maildir, delete_and_commit_removes)
{
	struct maildir_box *box;
	char keep[64];

	deliver("ivan", "one\n", NULL);
	deliver("ivan", "two\n", NULL);
	cr_assert_eq(maildir_open(root, "ivan", &box), 0);
	snprintf(keep, sizeof(keep), "%s", maildir_uidl(box, 1));
	cr_assert_eq(maildir_delete(box, 0), 0);
	cr_assert_eq(maildir_delete(box, 2), -EINVAL);
	cr_assert_eq(maildir_commit(box), 0);
	cr_assert_eq(maildir_read(box, 0, 0, keep + 60, 1), -EINVAL, "a removed message");
	maildir_close(box);
	cr_assert_eq(dir_count("ivan", "cur", NULL, 0), 1);
	cr_assert_eq(maildir_open(root, "ivan", &box), 0);
	cr_assert_eq(maildir_count(box), 1);
	cr_assert_str_eq(maildir_uidl(box, 0), keep);
	maildir_close(box);
}

Test(maildir, close_without_commit_removes_nothing)
{
	struct maildir_box *box;

	deliver("judy", "one\n", NULL);
	deliver("judy", "two\n", NULL);
	cr_assert_eq(maildir_open(root, "judy", &box), 0);
	maildir_delete(box, 0);
	maildir_delete(box, 1);
	maildir_close(box);
	cr_assert_eq(dir_count("judy", "cur", NULL, 0), 2);
	cr_assert_eq(maildir_open(root, "judy", &box), 0);
	maildir_delete(box, 0);
	maildir_undelete_all(box);
	cr_assert_eq(maildir_commit(box), 0);
	maildir_close(box);
	cr_assert_eq(dir_count("judy", "cur", NULL, 0), 2, "undeleted before commit");
}

Test(maildir, empty_mailbox_and_close_null)
{
	struct maildir_box *box;

	cr_assert_eq(maildir_open(root, "kim", &box), 0, "a new user's mailbox is created");
	cr_assert_eq(maildir_count(box), 0);
	cr_assert_eq(maildir_commit(box), 0);
	maildir_close(box);
	cr_assert_null(maildir_close(NULL));
	cr_assert_eq(maildir_open(root, "../kim", &box), -EINVAL);
}

Test(maildir, same_second_sorted_by_microseconds)
{
	static const char *const names[] = {   /* as written; usec not zero-padded */
		"1795450001.M169036P1Q2.host,S=2,W=2", "1795450001.M63617P1Q1.host,S=2,W=2",
		"1795450000.M999999P1Q9.host,S=2,W=2",
	};
	static const char *const want[] = {    /* the UIDL: up to the first ',' */
		"1795450000.M999999P1Q9.host", "1795450001.M63617P1Q1.host", "1795450001.M169036P1Q2.host",
	};
	char path[512];
	struct maildir_box *box;

	deliver("erin", "x\n", NULL);          /* makes the directories */
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/erin/new/%s", root, names[i]);
		FILE *f = fopen(path, "w");
		cr_assert_not_null(f, "fopen %s", path);
		fputs("a\n", f);
		fclose(f);
	}
	cr_assert_eq(maildir_open(root, "erin", &box), 0);
	cr_assert_eq(maildir_count(box), 4, "got %zu", maildir_count(box));
	for (size_t i = 0; i < 3; i++)
		cr_expect_str_eq(maildir_uidl(box, i), want[i], "message %zu: got %s, want %s", i,
				 maildir_uidl(box, i), want[i]);
	maildir_close(box);
}
