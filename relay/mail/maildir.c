/*
 * maildir - Maildir delivery and the locked POP3 reader (interface and the
 * layout decisions in maildir.h).
 *
 * Delivery needs no lock: names are unique (time, microseconds, pid, a
 * process-wide counter, host) and rename() into new/ is atomic. The quota
 * is checked against a readdir of new/ and cur/ just before writing, so two
 * deliveries racing may both fit and overshoot it by one message: a soft
 * quota, like Postfix's mailbox_size_limit per message.
 *
 * The reader's snapshot holds, per message, its file name in cur/, its
 * UIDL, its POP3 size and a deletion mark. One file descriptor is cached
 * for the message being read, so RETR in chunks does not reopen the file.
 */
#include "maildir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "file_io.h"
#include "log.h"
#include "xalloc.h"

#define MAILDIR_LOCK_NAME "ringmail-pop3.lock"
/* RFC 1939 7: a unique-id is 1 to 70 octets in 0x21..0x7E. */
#define UIDL_MAX 70
#define STAGE_SIZE 65536

struct maildir_message {
	char *name;		/* file name in cur/ */
	char *uidl;
	uint64_t size;		/* POP3 (CRLF) octets */
	bool deleted;		/* marked by maildir_delete */
	bool gone;		/* unlinked by maildir_commit */
};

struct maildir_box {
	char *dir;		/* <root>/<user> */
	int lock_fd;		/* holds the flock */
	struct maildir_message *messages;
	size_t count, cap;
	int read_fd;		/* open message, or -1 */
	size_t read_index;
};

static atomic_ulong delivery_counter;

/* path_join - "<a>/<b>[/<c>]" into out; -ENAMETOOLONG when it does not fit */
static int path_join(char *out, size_t size, const char *a, const char *b, const char *c)
{
	int n = c ? snprintf(out, size, "%s/%s/%s", a, b, c) : snprintf(out, size, "%s/%s", a, b);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* maildir_user_valid - one safe path component */
bool maildir_user_valid(const char *user)
{
	size_t i, len = user ? strlen(user) : 0;

	if (len == 0 || len > MAILDIR_NAME_MAX || user[0] == '.')
		return false;
	for (i = 0; i < len; i++)
		if (user[i] == '/' || (unsigned char)user[i] < 32 || user[i] == 127)
			return false;
	return true;
}

/* mkdir_exist - mkdir that accepts an existing directory */
static int mkdir_exist(const char *path)
{
	if (mkdir(path, 0700) == 0 || errno == EEXIST)
		return 0;
	return -errno;
}

/* dirs_create - <root>/<user> and its tmp, new and cur (root must exist, so
 * a missing mount shows up as an error rather than a fresh empty tree) */
static int dirs_create(const char *root, const char *user, char *dir, size_t size)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	char path[PATH_MAX];
	size_t i;
	int err;

	if ((err = path_join(dir, size, root, user, NULL)) < 0 || (err = mkdir_exist(dir)) < 0)
		return err;
	for (i = 0; i < 3; i++)
		if ((err = path_join(path, sizeof(path), dir, subs[i], NULL)) < 0
		    || (err = mkdir_exist(path)) < 0)
			return err;
	return 0;
}

/* fsync_path - fsync a directory, so a rename or unlink in it is durable */
static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		err = -errno;
	close(fd);
	return err;
}

/* stored_sizes - S= (CRLF turned into LF) and W= (POP3 octets) of data */
static void stored_sizes(const char *data, size_t len, uint64_t *s, uint64_t *w)
{
	char prev = 0, c;
	size_t i;

	*s = *w = 0;
	for (i = 0; i < len; i++) {
		if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
			continue;
		c = data[i];
		*s += 1;
		*w += (c == '\n' && prev != '\r') ? 2 : 1;
		prev = c;
	}
	if (*s > 0 && prev != '\n')
		*w += 2;
}

/* host_part - the host for file names: '/', ':' and ',' would break the
 * name's syntax, so they become octal escapes as the Maildir spec says */
static void host_part(const char *host, char *out, size_t size)
{
	char tmp[256];
	size_t o = 0;

	if (host == NULL) {
		if (gethostname(tmp, sizeof(tmp)) < 0)
			strcpy(tmp, "localhost");
		tmp[sizeof(tmp) - 1] = 0;
		host = tmp;
	}
	for (; *host && o + 5 < size; host++) {
		if (*host == '/' || *host == ':' || *host == ',')
			o += (size_t)snprintf(out + o, size - o, "\\%03o", (unsigned char)*host);
		else
			out[o++] = *host;
	}
	out[o] = 0;
}

/* unique_name - "<time>.M<usec>P<pid>Q<counter>.<host>,S=<s>,W=<w>" */
static int unique_name(const struct maildir_deliver_options *opt, uint64_t s, uint64_t w,
		       char *out, size_t size)
{
	char host[128];
	struct timeval tv;
	int n;

	gettimeofday(&tv, NULL);
	host_part(opt ? opt->hostname : NULL, host, sizeof(host));
	n = snprintf(out, size, "%lld.M%ldP%ldQ%lu.%s,S=%llu,W=%llu", (long long)tv.tv_sec,
		     (long)tv.tv_usec, (long)getpid(),
		     atomic_fetch_add(&delivery_counter, 1) + 1, host,
		     (unsigned long long)s, (unsigned long long)w);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* write_converted - the content with every CRLF turned into LF */
static int write_converted(int fd, const char *data, size_t len)
{
	char *stage = xmalloc(STAGE_SIZE);
	size_t i, k = 0;
	int err = 0;

	for (i = 0; i < len && err == 0; i++) {
		if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
			continue;
		stage[k++] = data[i];
		if (k == STAGE_SIZE) {
			err = file_write_all(fd, stage, k);
			k = 0;
		}
	}
	if (err == 0 && k > 0)
		err = file_write_all(fd, stage, k);
	free(stage);
	return err;
}

/* file_write - create tmp/<name> exclusively, write and fsync it */
static int file_write(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600), err;

	if (fd < 0)
		return -errno;
	err = write_converted(fd, data, len);
	if (err == 0 && fsync(fd) < 0)
		err = -errno;
	if (close(fd) < 0 && err == 0)
		err = -errno;
	return err;
}

/* maildir_deliver - tmp/, fsync, rename into new/, fsync new/ */
int maildir_deliver(const char *root, const char *user, const char *data, size_t len,
		    const struct maildir_deliver_options *opt, char *name, size_t name_size)
{
	char dir[PATH_MAX], file[MAILDIR_NAME_MAX + 1], tmp[PATH_MAX], dst[PATH_MAX];
	uint64_t s, w, used;
	int err;

	if (!maildir_user_valid(user))
		return -EINVAL;
	if ((err = dirs_create(root, user, dir, sizeof(dir))) < 0)
		return err;
	stored_sizes(data, len, &s, &w);
	if (opt && opt->quota) {
		if ((err = maildir_usage(root, user, &used)) < 0)
			return err;
		if (used + s > opt->quota)
			return -EDQUOT;
	}
	if ((err = unique_name(opt, s, w, file, sizeof(file))) < 0
	    || (err = path_join(tmp, sizeof(tmp), dir, "tmp", file)) < 0
	    || (err = path_join(dst, sizeof(dst), dir, "new", file)) < 0)
		return err;
	if ((err = file_write(tmp, data, len)) < 0)
		goto fail;
	if (rename(tmp, dst) < 0) {
		err = -errno;
		goto fail;
	}
	if ((err = path_join(tmp, sizeof(tmp), dir, "new", NULL)) < 0
	    || (err = fsync_path(tmp)) < 0)
		return err;	/* in new/ already: it may survive, do not unlink */
	if (name != NULL && name_size > 0)
		snprintf(name, name_size, "%s", file);
	return 0;
fail:
	unlink(tmp);
	return err;
}

/* name_field - the number after ",<key>=" in the base name, or -1 */
static int64_t name_field(const char *name, char key)
{
	const char *p = name, *colon = strchr(name, ':');
	char *end;
	unsigned long long v;

	while ((p = strchr(p, ',')) != NULL && (colon == NULL || p < colon)) {
		p++;
		if (p[0] == key && p[1] == '=') {
			errno = 0;
			v = strtoull(p + 2, &end, 10);
			if (errno == 0 && end != p + 2 && v <= INT64_MAX)
				return (int64_t)v;
		}
	}
	return -1;
}

/* dir_usage - add the sizes of the messages in one directory */
static int dir_usage(const char *path, uint64_t *bytes)
{
	DIR *d = opendir(path);
	struct dirent *e;
	struct stat st;
	int64_t s;

	if (d == NULL)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if ((s = name_field(e->d_name, 'S')) >= 0)
			*bytes += (uint64_t)s;
		else if (fstatat(dirfd(d), e->d_name, &st, 0) == 0)
			*bytes += (uint64_t)st.st_size;
	}
	closedir(d);
	return 0;
}

/* maildir_usage - sum over new/ and cur/ */
int maildir_usage(const char *root, const char *user, uint64_t *bytes)
{
	char path[PATH_MAX], dir[PATH_MAX];
	int err;

	*bytes = 0;
	if (!maildir_user_valid(user))
		return -EINVAL;
	if ((err = path_join(dir, sizeof(dir), root, user, NULL)) < 0
	    || (err = path_join(path, sizeof(path), dir, "new", NULL)) < 0
	    || (err = dir_usage(path, bytes)) < 0
	    || (err = path_join(path, sizeof(path), dir, "cur", NULL)) < 0)
		return err;
	return dir_usage(path, bytes);
}

/* file_pop3_size - the POP3 size of a file without W=: read it through */
static int file_pop3_size(int dirfd_, const char *name, uint64_t *size)
{
	char buf[8192], prev = 0;
	ssize_t n, i;
	int fd = openat(dirfd_, name, O_RDONLY | O_CLOEXEC);

	*size = 0;
	if (fd < 0)
		return -errno;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (i = 0; i < n; i++) {
			*size += (buf[i] == '\n' && prev != '\r') ? 2 : 1;
			prev = buf[i];
		}
	}
	if (*size > 0 && prev != '\n')
		*size += 2;
	n = n < 0 ? -errno : 0;
	close(fd);
	return (int)n;
}

/* uidl_make - the base name up to ':' (the info) or ',' (S=, W= and other
 * attributes). RFC 1939 allows 70 printable octets; a longer or odd name
 * (a long host name) gets a 64-bit FNV-1a hash of it instead, also stable. */
static char *uidl_make(const char *name)
{
	size_t len = strcspn(name, ":,"), i;
	uint64_t h = 0xcbf29ce484222325ull;
	bool ok = len > 0 && len <= UIDL_MAX;
	char hex[24];

	for (i = 0; i < len; i++) {
		if ((unsigned char)name[i] < 0x21 || (unsigned char)name[i] > 0x7e)
			ok = false;
		h = (h ^ (unsigned char)name[i]) * 0x100000001b3ull;
	}
	if (ok)
		return xstrndup(name, len);
	snprintf(hex, sizeof(hex), "H%016llx", (unsigned long long)h);
	return xstrdup(hex);
}

/* box_add - append one message of cur/ to the snapshot */
static void box_add(struct maildir_box *box, int dirfd_, const char *name)
{
	struct maildir_message *m;
	int64_t w = name_field(name, 'W');
	uint64_t size;
	int err;

	if (w >= 0) {
		size = (uint64_t)w;
	} else if ((err = file_pop3_size(dirfd_, name, &size)) < 0) {
		/* One unreadable file must not lock the user out of the rest. */
		if (err != -ENOENT)
			log_warn("maildir_skipped", "file=%s/cur/%s error=%s", box->dir, name,
				 strerror(-err));
		return;
	}
	if (box->count == box->cap) {
		box->cap = box->cap ? box->cap * 2 : 16;
		box->messages = xreallocarray(box->messages, box->cap, sizeof(*m));
	}
	m = &box->messages[box->count++];
	memset(m, 0, sizeof(*m));
	m->name = xstrdup(name);
	m->uidl = uidl_make(name);
	m->size = size;
}

/* new_move - new/ to cur/ with ":2," (no flags): the mail has been seen by
 * a reader, as Dovecot marks it; a name that already has info keeps it */
static void new_move(const char *dir)
{
	char from[PATH_MAX], to[PATH_MAX], newdir[PATH_MAX], curdir[PATH_MAX];
	DIR *d;
	struct dirent *e;

	if (path_join(newdir, sizeof(newdir), dir, "new", NULL) < 0
	    || path_join(curdir, sizeof(curdir), dir, "cur", NULL) < 0
	    || (d = opendir(newdir)) == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (path_join(from, sizeof(from), newdir, e->d_name, NULL) < 0
		    || snprintf(to, sizeof(to), "%s/%s%s", curdir, e->d_name,
				strchr(e->d_name, ':') ? "" : ":2,") >= (int)sizeof(to))
			continue;
		if (rename(from, to) < 0 && errno != ENOENT)
			log_warn("maildir_move_failed", "file=%s error=%s", from, strerror(errno));
	}
	closedir(d);
}

/* message_order - by delivery time (the name's leading number), then name */
static int message_order(const void *a, const void *b)
{
	const struct maildir_message *x = a, *y = b;
	char *ex, *ey;
	unsigned long long tx = strtoull(x->name, &ex, 10), ty = strtoull(y->name, &ey, 10);

	if (tx != ty)
		return tx < ty ? -1 : 1;
	/* Same second: "M<usec>" is not zero-padded (M63617 comes after
	 * M169036 as text), so compare it as a number. */
	if (strncmp(ex, ".M", 2) == 0 && strncmp(ey, ".M", 2) == 0) {
		unsigned long long ux = strtoull(ex + 2, NULL, 10), uy = strtoull(ey + 2, NULL, 10);
		if (ux != uy)
			return ux < uy ? -1 : 1;
	}
	return strcmp(x->name, y->name);
}

/* box_scan - new/ into cur/, then cur/ into the snapshot */
static int box_scan(struct maildir_box *box)
{
	char path[PATH_MAX];
	DIR *d;
	struct dirent *e;
	int err = 0;

	new_move(box->dir);
	if ((err = path_join(path, sizeof(path), box->dir, "cur", NULL)) < 0)
		return err;
	if ((d = opendir(path)) == NULL)
		return -errno;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' && e->d_type != DT_DIR)
			box_add(box, dirfd(d), e->d_name);
	closedir(d);
	if (box->count > 1)
		qsort(box->messages, box->count, sizeof(box->messages[0]), message_order);
	return 0;
}

/* box_lock - flock the lock file; -EBUSY when another session has it */
static int box_lock(struct maildir_box *box)
{
	char path[PATH_MAX];
	int err;

	if ((err = path_join(path, sizeof(path), box->dir, MAILDIR_LOCK_NAME, NULL)) < 0)
		return err;
	if ((box->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		return -errno;
	if (flock(box->lock_fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? -EBUSY : -errno;
	return 0;
}

/* maildir_open - lock, then snapshot */
int maildir_open(const char *root, const char *user, struct maildir_box **boxp)
{
	char dir[PATH_MAX];
	struct maildir_box *box;
	int err;

	if (!maildir_user_valid(user))
		return -EINVAL;
	if ((err = dirs_create(root, user, dir, sizeof(dir))) < 0)
		return err;
	box = xcalloc(1, sizeof(*box));
	box->dir = xstrdup(dir);
	box->lock_fd = box->read_fd = -1;
	if ((err = box_lock(box)) < 0 || (err = box_scan(box)) < 0) {
		maildir_close(box);
		return err;
	}
	*boxp = box;
	return 0;
}

size_t maildir_count(const struct maildir_box *box)
{
	return box->count;
}

uint64_t maildir_size(const struct maildir_box *box, size_t i)
{
	if (i >= box->count)
		log_panic("maildir_size: no message %zu of %zu", i, box->count);
	return box->messages[i].size;
}

const char *maildir_uidl(const struct maildir_box *box, size_t i)
{
	if (i >= box->count)
		log_panic("maildir_uidl: no message %zu of %zu", i, box->count);
	return box->messages[i].uidl;
}

/* maildir_read - pread on a cached descriptor of message i */
ssize_t maildir_read(struct maildir_box *box, size_t i, uint64_t offset, char *buf, size_t len)
{
	char path[PATH_MAX];
	ssize_t n;
	int err;

	if (i >= box->count || box->messages[i].gone)
		return -EINVAL;
	if (box->read_fd < 0 || box->read_index != i) {
		if (box->read_fd >= 0)
			close(box->read_fd);
		box->read_fd = -1;
		if ((err = path_join(path, sizeof(path), box->dir, "cur", box->messages[i].name)) < 0)
			return err;
		if ((box->read_fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			return -errno;
		box->read_index = i;
	}
	do
		n = pread(box->read_fd, buf, len, (off_t)offset);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

int maildir_delete(struct maildir_box *box, size_t i)
{
	if (i >= box->count || box->messages[i].gone)
		return -EINVAL;
	box->messages[i].deleted = true;
	return 0;
}

void maildir_undelete_all(struct maildir_box *box)
{
	size_t i;

	for (i = 0; i < box->count; i++)
		box->messages[i].deleted = false;
}

/* maildir_commit - unlink the marked messages; fsync cur/ once */
int maildir_commit(struct maildir_box *box)
{
	char path[PATH_MAX];
	size_t i;
	int err = 0, e;
	bool any = false;

	for (i = 0; i < box->count; i++) {
		struct maildir_message *m = &box->messages[i];

		if (!m->deleted || m->gone)
			continue;
		if ((e = path_join(path, sizeof(path), box->dir, "cur", m->name)) == 0
		    && unlink(path) < 0 && errno != ENOENT)
			e = -errno;
		if (e < 0) {
			if (err == 0)
				err = e;
			continue;
		}
		m->gone = any = true;
	}
	if (any && path_join(path, sizeof(path), box->dir, "cur", NULL) == 0
	    && (e = fsync_path(path)) < 0 && err == 0)
		err = e;
	return err;
}

/* maildir_close - the lock goes with the descriptor */
struct maildir_box *maildir_close(struct maildir_box *box)
{
	size_t i;

	if (box == NULL)
		return NULL;
	if (box->read_fd >= 0)
		close(box->read_fd);
	if (box->lock_fd >= 0)
		close(box->lock_fd);
	for (i = 0; i < box->count; i++) {
		free(box->messages[i].name);
		free(box->messages[i].uidl);
	}
	free(box->messages);
	free(box->dir);
	free(box);
	return NULL;
}
