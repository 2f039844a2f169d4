/* test_file_io - whole writes and durable file replacement. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file_io.h"

static char dir[64], path[128];

static void setup(void)
{
	strcpy(dir, "/tmp/ringmail-file-io-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/state", dir);
}

static void teardown(void)
{
	char tmp[160];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	unlink(tmp);
	unlink(path);
	rmdir(dir);
}

TestSuite(file_io, .init = setup, .fini = teardown);

/* content - the file's bytes (static buffer), or NULL. */
static const char *content(const char *p)
{
	static char text[256];
	FILE *f = fopen(p, "r");
	if (f == NULL)
		return NULL;
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	return text;
}

Test(file_io, replace_writes_every_part_and_leaves_no_temporary)
{
	struct iovec parts[] = { { "head\n", 5 }, { "", 0 }, { "body", 4 } };
	struct stat st;
	char tmp[160];

	cr_assert_eq(file_replace(dir, path, parts, 3, 0600), 0);
	cr_assert_str_eq(content(path), "head\nbody");
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	cr_expect_eq(access(tmp, F_OK), -1, "the temporary file is left");

	struct iovec again = { "new", 3 };
	cr_assert_eq(file_replace(dir, path, &again, 1, 0600), 0);
	cr_assert_str_eq(content(path), "new", "a replacement is whole, not appended");
}

/* An error leaves the old content (here: the temporary cannot be made,
 * its name being taken by a directory). */
Test(file_io, a_failed_replace_keeps_the_old_file)
{
	struct iovec old = { "old", 3 }, new = { "new", 3 };
	char tmp[160];

	cr_assert_eq(file_replace(dir, path, &old, 1, 0600), 0);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	cr_assert_eq(mkdir(tmp, 0700), 0);
	cr_expect_eq(file_replace(dir, path, &new, 1, 0600), -EISDIR);
	cr_expect_str_eq(content(path), "old");
	rmdir(tmp);
	cr_expect_eq(file_replace("/nonexistent-ringmail-dir", "/nonexistent-ringmail-dir/x", &new, 1, 0600),
		     -ENOENT);
}

Test(file_io, write_all_and_sync_dir)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	char big[200000];

	cr_assert_geq(fd, 0);
	memset(big, 'x', sizeof(big));
	cr_expect_eq(file_write_all(fd, big, sizeof(big)), 0);
	close(fd);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq(st.st_size, (off_t)sizeof(big));
	cr_expect_eq(file_write_all(-1, "x", 1), -EBADF);
	cr_expect_eq(file_sync_dir(dir), 0);
	cr_expect_eq(file_sync_dir(path), -ENOTDIR);
}
