/*
 * test_users - the passwd-file: parsing and its errors, verification with
 * $6$ and $y$ hashes made here with libxcrypt, hashing, and the editors
 * (other lines kept byte for byte, atomic replacement, mode kept).
 */
#include <criterion/criterion.h>

#include <crypt.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "users.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Structurally valid hashes for the parser cases (never verified). */
#define H6 "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/"
#define HY "$y$j9T$ajy3vn47AtuNL6Gcs1p5D1$H82TlIxm9kdpZpeymrdQ/3VNJk0GYrSK6neZOP13O5C"
#define H2 "$2b$05$Yk54OqX5CbnZafTSGgXjwurlVu65NJMm3o0VeljVwacVug1c4w..C"
#define H5 "$5$fTew1vBWxk5us8Y6$oEqGU2YpU34Z2qQAPmc6p1IHpH9mb40xxZxQnrNe2D6"

struct parse_case {
	const char *text;
	int want_rc;
	size_t want_count;
	const char *want_error;     /* substring of the error, when want_rc < 0 */
};

static const struct parse_case parse_cases[] = {
	{ "", 0, 0, NULL },
	{ "# only a comment\n\n   \n\t# indented comment\n", 0, 0, NULL },
	{ "alice:" H6 "\n", 0, 1, NULL },
	{ "alice:" H6, 0, 1, NULL },                             /* no final newline */
	{ "alice:" H6 "\r\nbob:" HY "\r\n", 0, 2, NULL },         /* CRLF */
	{ "alice:{SHA512-CRYPT}" H6 ":1000:1000::/home/alice:/bin/false\n", 0, 1, NULL },
	{ "alice:{sha512-crypt}" H6 "\n", 0, 1, NULL },
	{ "alice:{CRYPT}" HY "\ncarol:{BLF-CRYPT}" H2 "\ndave:{SHA256-CRYPT}" H5 "\n", 0, 3, NULL },
	{ "alice@example.com:" HY "\n", 0, 1, NULL },
	{ "# users\nalice:" H6 "\n\nbob\n", -EINVAL, 0, "t:4: no ':'" },
	{ "#c\n\nbob:{PLAIN}secret\n", -EINVAL, 0, "t:3: unsupported {SCHEME}" },
	{ "bob:{SHA512-CRYPT" H6 "\n", -EINVAL, 0, "t:1: unterminated" },
	{ "bob:{SHA512-CRYPT}" HY "\n", -EINVAL, 0, "t:1: {SCHEME} does not match" },
	{ "bob:{BLF-CRYPT}" H6 "\n", -EINVAL, 0, "t:1: {SCHEME} does not match" },
	{ "bob:$1$97ENFmJN$mLLEVVyzODqR1Kti3Csvs.\n", -EINVAL, 0, "t:1: not a supported" },
	{ "bob:svUUt2ZoNhJl6\n", -EINVAL, 0, "t:1: not a supported" },   /* DES */
	{ "bob:secret\n", -EINVAL, 0, "t:1: not a supported" },
	{ "bob:\n", -EINVAL, 0, "t:1: empty password field" },
	{ "bob::1000\n", -EINVAL, 0, "t:1: empty password field" },
	{ "bob:$6$saltonly\n", -EINVAL, 0, "t:1: hash has no salt or no digest" },
	{ "bob:$6$salt$\n", -EINVAL, 0, "t:1: hash has no salt or no digest" },
	{ "bob:$6$sa lt$abc\n", -EINVAL, 0, "t:1: bad character" },
	{ ":" H6 "\n", -EINVAL, 0, "t:1: bad user name" },
	{ "b b:" H6 "\n", -EINVAL, 0, "t:1: bad user name" },
	{ " bob:" H6 "\n", -EINVAL, 0, "t:1: bad user name" },
	{ "x\x01y:" H6 "\n", -EINVAL, 0, "t:1: bad user name" },
	{ "a:" H6 "\nb:" HY "\n#\na:" HY "\n", -EINVAL, 0, "t:4: duplicate user (first on line 1)" },
	{ "a:" H6 "\nb\0:" HY "\n", -EINVAL, 0, "t:2: NUL byte" },
};

Test(users, parse_table)
{
	for (size_t i = 0; i < N(parse_cases); i++) {
		const struct parse_case *c = &parse_cases[i];
		/* the NUL case needs its real length */
		size_t len = strlen(c->text);
		if (c->want_error && strstr(c->want_error, "NUL"))
			len += 1 + strlen(c->text + len + 1);
		struct users_db *db = (struct users_db *)1;
		char err[256] = "";
		int rc = users_parse("t", c->text, len, &db, err, sizeof(err));
		cr_expect_eq(rc, c->want_rc, "case %zu: rc got %d, want %d (err \"%s\")", i, rc,
			     c->want_rc, err);
		if (c->want_rc == 0) {
			cr_expect_eq(users_count(db), c->want_count, "case %zu: count got %zu, want %zu",
				     i, users_count(db), c->want_count);
		} else {
			cr_expect_null(db, "case %zu: db set on failure", i);
			cr_expect(strstr(err, c->want_error) != NULL,
				  "case %zu: error got \"%s\", want it to contain \"%s\"", i, err,
				  c->want_error);
		}
		users_free(db);
	}
}

/* make_hash - a crypt string of password with method prefix, made here
 * with libxcrypt directly (not with users_hash_password). */
static void make_hash(const char *prefix, const char *password, char *out, size_t outlen)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	static struct crypt_data work;

	cr_assert_not_null(crypt_gensalt_rn(prefix, 0, NULL, 0, setting, sizeof(setting)),
			   "gensalt %s failed", prefix);
	memset(&work, 0, sizeof(work));
	const char *h = crypt_rn(password, setting, &work, sizeof(work));
	cr_assert_not_null(h, "crypt_rn %s failed", prefix);
	cr_assert_lt(strlen(h), outlen);
	strcpy(out, h);
}

static char tmpdir[64];

static void make_tmpdir(void)
{
	strcpy(tmpdir, "/tmp/test_users.XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *de;
	char path[512];

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' && (de->d_name[1] == '\0' || strcmp(de->d_name, "..") == 0))
			continue;
		snprintf(path, sizeof(path), "%s/%s", tmpdir, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(tmpdir);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "cannot write %s", path);
	fputs(text, f);
	fclose(f);
}

static char *read_text(const char *path)
{
	static char buf[16384];
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "cannot read %s", path);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

TestSuite(users_file, .init = make_tmpdir, .fini = remove_tmpdir);

Test(users_file, verify_sha512_and_yescrypt)
{
	char h6[USERS_HASH_MAX], hy[USERS_HASH_MAX], text[2048], path[256], err[256];
	struct users_db *db;

	make_hash("$6$", "s3cret", h6, sizeof(h6));
	make_hash("$y$", "hunter2", hy, sizeof(hy));
	snprintf(text, sizeof(text), "# test users\nalice:{SHA512-CRYPT}%s:1000:1000::/home/alice:\n\nbob:%s\n",
		 h6, hy);
	snprintf(path, sizeof(path), "%s/users", tmpdir);
	write_text(path, text);
	cr_assert_eq(users_load(path, &db, err, sizeof(err)), 0, "load: %s", err);
	cr_expect_eq(users_count(db), 2);
	cr_expect(users_exists(db, "alice"));
	cr_expect(users_exists(db, "bob"));
	cr_expect_not(users_exists(db, "carol"));

	static const struct {
		const char *user, *password;
		bool want;
	} cases[] = {
		{ "alice", "s3cret", true },
		{ "alice", "s3cret ", false },
		{ "alice", "S3cret", false },
		{ "alice", "", false },
		{ "alice", "hunter2", false },
		{ "bob", "hunter2", true },
		{ "bob", "hunter", false },
		{ "carol", "s3cret", false },     /* unknown user, alice's password */
		{ "", "s3cret", false },
		{ "Alice", "s3cret", false },     /* names are case-sensitive */
	};
	for (size_t i = 0; i < N(cases); i++) {
		bool got = users_verify(db, cases[i].user, cases[i].password);
		cr_expect_eq(got, cases[i].want, "verify(%s, \"%s\"): got %d, want %d",
			     cases[i].user, cases[i].password, got, cases[i].want);
	}
	users_free(db);
}

Test(users_file, load_missing_file_names_it)
{
	char path[256], err[256] = "";
	struct users_db *db;

	snprintf(path, sizeof(path), "%s/absent", tmpdir);
	cr_expect_eq(users_load(path, &db, err, sizeof(err)), -ENOENT);
	cr_expect_null(db);
	cr_expect(strstr(err, path) != NULL, "error got \"%s\", want the path", err);
}

Test(users, verify_without_db_or_users)
{
	struct users_db *db;

	cr_expect_not(users_verify(NULL, "alice", "x"));
	cr_assert_eq(users_parse("t", "# nobody\n", 9, &db, NULL, 0), 0);
	cr_expect_not(users_verify(db, "alice", "x"));
	users_free(db);
	cr_expect_null(users_free(NULL));
}

Test(users, hash_password_round_trip)
{
	char hash[USERS_HASH_MAX], line[USERS_HASH_MAX + 16];
	struct users_db *db;
	static const struct {
		const char *scheme, *prefix;
	} cases[] = {
		{ NULL, "$y$" }, { "yescrypt", "$y$" }, { "SHA512-CRYPT", "$6$" }, { "bcrypt", "$2b$" },
	};

	for (size_t i = 0; i < N(cases); i++) {
		cr_assert_eq(users_hash_password("pa:ss word", cases[i].scheme, hash, sizeof(hash)), 0,
			     "scheme %s", cases[i].scheme);
		cr_expect_eq(strncmp(hash, cases[i].prefix, strlen(cases[i].prefix)), 0,
			     "scheme %s: got %s, want prefix %s", cases[i].scheme, hash, cases[i].prefix);
		snprintf(line, sizeof(line), "u:%s\n", hash);
		cr_assert_eq(users_parse("t", line, strlen(line), &db, NULL, 0), 0, "parse %s", line);
		cr_expect(users_verify(db, "u", "pa:ss word"), "scheme %s does not verify", cases[i].scheme);
		cr_expect_not(users_verify(db, "u", "pa:ss wort"));
		users_free(db);
	}
	char h2[USERS_HASH_MAX];
	cr_assert_eq(users_hash_password("x", "sha512-crypt", h2, sizeof(h2)), 0);
	cr_assert_eq(users_hash_password("x", "sha512-crypt", hash, sizeof(hash)), 0);
	cr_expect_str_neq(hash, h2, "two hashes share a salt: %s", hash);
	cr_expect_eq(users_hash_password("x", "md5-crypt", hash, sizeof(hash)), -EINVAL);
	cr_expect_eq(users_hash_password("", NULL, hash, sizeof(hash)), -EINVAL);
	cr_expect_eq(users_hash_password("x", "sha512-crypt", hash, 20), -ENOSPC);
	char *longpw = malloc(USERS_PASSWORD_MAX + 2);
	memset(longpw, 'a', USERS_PASSWORD_MAX + 1);
	longpw[USERS_PASSWORD_MAX + 1] = '\0';
	cr_expect_eq(users_hash_password(longpw, "sha512-crypt", hash, sizeof(hash)), -EINVAL);
	free(longpw);
}

Test(users, verify_refuses_overlong_password)
{
	char hash[USERS_HASH_MAX], line[USERS_HASH_MAX + 16];
	char *pw = malloc(USERS_PASSWORD_MAX + 2);
	struct users_db *db;

	memset(pw, 'p', USERS_PASSWORD_MAX + 1);
	pw[USERS_PASSWORD_MAX] = '\0';
	make_hash("$6$", pw, hash, sizeof(hash));       /* exactly the maximum */
	snprintf(line, sizeof(line), "u:%s\n", hash);
	cr_assert_eq(users_parse("t", line, strlen(line), &db, NULL, 0), 0);
	cr_expect(users_verify(db, "u", pw), "a password of USERS_PASSWORD_MAX bytes must verify");
	pw[USERS_PASSWORD_MAX] = 'p';
	pw[USERS_PASSWORD_MAX + 1] = '\0';
	cr_expect_not(users_verify(db, "u", pw), "an over-long password must not verify");
	users_free(db);
	free(pw);
}

Test(users_file, set_and_delete_keep_other_lines)
{
	char path[256], h_alice[USERS_HASH_MAX], h_new[USERS_HASH_MAX], want[4096], err[256];
	struct stat st;
	struct users_db *db;

	snprintf(path, sizeof(path), "%s/users", tmpdir);
	make_hash("$6$", "old", h_alice, sizeof(h_alice));
	make_hash("$6$", "new", h_new, sizeof(h_new));
	snprintf(want, sizeof(want),
		 "# ringmail users\r\n\nalice:{SHA512-CRYPT}%s:1000:1000::/home/alice:/bin/sh\r\n"
		 "  # bob is next\nbob:" HY "\n# last line, no newline", h_alice);
	write_text(path, want);
	cr_assert_eq(chmod(path, 0600), 0);

	/* replace alice: the fields after the password and the CRLF stay */
	cr_assert_eq(users_file_set(path, "alice", h_new, USERS_SET_EXISTING), 0);
	snprintf(want, sizeof(want),
		 "# ringmail users\r\n\nalice:%s:1000:1000::/home/alice:/bin/sh\r\n"
		 "  # bob is next\nbob:" HY "\n# last line, no newline", h_new);
	cr_expect_str_eq(read_text(path), want);
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0600, "mode got %o, want 600", st.st_mode & 07777);

	cr_expect_eq(users_file_set(path, "alice", h_new, USERS_SET_NEW), -EEXIST);
	cr_expect_eq(users_file_set(path, "zed", h_new, USERS_SET_EXISTING), -ENOENT);
	cr_expect_eq(users_file_set(path, "bad name", h_new, USERS_SET_ANY), -EINVAL);
	cr_expect_eq(users_file_set(path, "zed", "plaintext", USERS_SET_ANY), -EINVAL);
	cr_expect_eq(users_file_set(path, "zed", "$6$a$b:evil", USERS_SET_ANY), -EINVAL);
	cr_expect_str_eq(read_text(path), want, "a refused edit changed the file");

	/* a new user is appended after a newline the last line lacked */
	cr_assert_eq(users_file_set(path, "carol", "{CRYPT}" HY, USERS_SET_NEW), 0);
	strcat(want, "\ncarol:{CRYPT}" HY "\n");
	cr_expect_str_eq(read_text(path), want);

	/* delete bob: only his line goes */
	cr_assert_eq(users_file_delete(path, "bob"), 0);
	snprintf(want, sizeof(want),
		 "# ringmail users\r\n\nalice:%s:1000:1000::/home/alice:/bin/sh\r\n"
		 "  # bob is next\n# last line, no newline\ncarol:{CRYPT}" HY "\n", h_new);
	cr_expect_str_eq(read_text(path), want);
	cr_expect_eq(users_file_delete(path, "bob"), -ENOENT);
	cr_expect_eq(users_file_delete(path, "bo"), -ENOENT, "a prefix of a name matched");

	cr_assert_eq(users_load(path, &db, err, sizeof(err)), 0, "load after edits: %s", err);
	cr_expect_eq(users_count(db), 2);
	cr_expect(users_verify(db, "alice", "new"));
	cr_expect_not(users_verify(db, "alice", "old"));
	users_free(db);
}

Test(users_file, set_creates_file_and_drops_duplicates)
{
	char path[256], h[USERS_HASH_MAX], want[1024];
	struct stat st;

	snprintf(path, sizeof(path), "%s/new-users", tmpdir);
	cr_expect_eq(users_file_delete(path, "alice"), -ENOENT);
	cr_expect_eq(users_file_set(path, "alice", HY, USERS_SET_EXISTING), -ENOENT);
	cr_expect_neq(access(path, F_OK), 0, "a refused edit created the file");
	cr_assert_eq(users_file_set(path, "alice", HY, USERS_SET_NEW), 0);
	cr_expect_str_eq(read_text(path), "alice:" HY "\n");
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0640, "mode got %o, want 640", st.st_mode & 07777);

	/* a hand-made duplicate: set keeps the first line, drops the second */
	write_text(path, "a:" HY "\nb:" HY "\na:" H2 "\n");
	make_hash("$6$", "pw", h, sizeof(h));
	cr_assert_eq(users_file_set(path, "a", h, USERS_SET_ANY), 0);
	snprintf(want, sizeof(want), "a:%s\nb:" HY "\n", h);
	cr_expect_str_eq(read_text(path), want);
}

Test(users_file, rewrite_is_atomic)
{
	char path[256], h[USERS_HASH_MAX];
	struct stat before, after;
	char old_text[256];

	snprintf(path, sizeof(path), "%s/users", tmpdir);
	write_text(path, "# v1\nalice:" HY "\n");
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &before), 0);
	make_hash("$6$", "pw", h, sizeof(h));
	cr_assert_eq(users_file_set(path, "alice", h, USERS_SET_ANY), 0);
	cr_assert_eq(stat(path, &after), 0);
	/* a new inode was renamed into place; a reader that had the old file
	 * open still reads the old content whole */
	cr_expect_neq(before.st_ino, after.st_ino, "the file was rewritten in place");
	ssize_t n = read(fd, old_text, sizeof(old_text) - 1);
	cr_assert_geq(n, 0);
	old_text[n] = '\0';
	cr_expect_str_eq(old_text, "# v1\nalice:" HY "\n");
	close(fd);

	/* no temporary file is left behind */
	DIR *d = opendir(tmpdir);
	struct dirent *de;
	int entries = 0;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			entries++;
			cr_expect_str_eq(de->d_name, "users", "stray file %s", de->d_name);
		}
	closedir(d);
	cr_expect_eq(entries, 1);
}

Test(users_file, edit_through_symlink_keeps_link)
{
	char path[256], link[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/users", tmpdir);
	snprintf(link, sizeof(link), "%s/users-link", tmpdir);
	write_text(path, "# kept\n");
	cr_assert_eq(symlink("users", link), 0);
	cr_assert_eq(users_file_set(link, "alice", HY, USERS_SET_NEW), 0);
	cr_assert_eq(lstat(link, &st), 0);
	cr_expect(S_ISLNK(st.st_mode), "the symlink was replaced by a file");
	cr_expect_str_eq(read_text(path), "# kept\nalice:" HY "\n");
	cr_assert_eq(users_file_delete(link, "alice"), 0);
	cr_expect_str_eq(read_text(path), "# kept\n");
}

/* Concurrent verification: the db is shared read-only, each call has its
 * own crypt work area, so answers stay right on four threads at once. */
struct verify_job {
	const struct users_db *db;
	int wrong;
};

static void *verify_thread(void *arg)
{
	struct verify_job *job = arg;

	for (int i = 0; i < 15; i++) {
		if (!users_verify(job->db, "alice", "s3cret"))
			job->wrong++;
		if (users_verify(job->db, "alice", "s3creT") || users_verify(job->db, "zed", "s3cret"))
			job->wrong++;
	}
	return NULL;
}

Test(users, verify_on_many_threads)
{
	char hash[USERS_HASH_MAX], line[USERS_HASH_MAX + 16];
	struct users_db *db;
	pthread_t threads[4];
	struct verify_job jobs[4];

	make_hash("$6$", "s3cret", hash, sizeof(hash));
	snprintf(line, sizeof(line), "alice:%s\n", hash);
	cr_assert_eq(users_parse("t", line, strlen(line), &db, NULL, 0), 0);
	for (int i = 0; i < 4; i++) {
		jobs[i] = (struct verify_job){ .db = db };
		cr_assert_eq(pthread_create(&threads[i], NULL, verify_thread, &jobs[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(threads[i], NULL);
		cr_expect_eq(jobs[i].wrong, 0, "thread %d: %d wrong answers, want 0", i, jobs[i].wrong);
	}
	users_free(db);
}
