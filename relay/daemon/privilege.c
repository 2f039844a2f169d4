/*
 * privilege - the run-as user and the drop to it; see privilege.h.
 */
#include "privilege.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "config.h"

/* user_lookup - getpwnam into out; 0, -ENOENT or -errno. */
static int user_lookup(const char *name, struct privilege_user *out)
{
	errno = 0;
	struct passwd *pw = getpwnam(name);
	if (pw == NULL)
		return errno != 0 ? -errno : -ENOENT;
	out->uid = pw->pw_uid;
	out->gid = pw->pw_gid;
	snprintf(out->name, sizeof(out->name), "%s", pw->pw_name);
	return 0;
}

int privilege_resolve(const char *configured, struct privilege_user *out, char *err, size_t errlen)
{
	bool root = geteuid() == 0;
	const char *name = configured != NULL && configured[0] != '\0' ? configured : NULL;

	memset(out, 0, sizeof(*out));
	if (!root) {
		out->uid = geteuid();
		out->gid = getegid();
		if (name == NULL)
			return 0;
		struct privilege_user want;
		int rc = user_lookup(name, &want);
		if (rc < 0) {
			snprintf(err, errlen, "user \"%s\": %s", name,
				 rc == -ENOENT ? "no such user" : strerror(-rc));
			return -1;
		}
		if (want.uid != out->uid) {
			snprintf(err, errlen, "user \"%s\": started as uid %ld, only root can switch users",
				 name, (long)out->uid);
			return -1;
		}
		return 0;
	}
	int rc = user_lookup(name != NULL ? name : PRIVILEGE_DEFAULT_USER, out);
	if (rc == -ENOENT && name == NULL) {
		snprintf(err, errlen, "started as root and there is no \"%s\" user to run as: "
			 "create it (tools/setup does) or set user = \"root\" to run as root",
			 PRIVILEGE_DEFAULT_USER);
		return -1;
	}
	if (rc < 0) {
		snprintf(err, errlen, "user \"%s\": %s", name != NULL ? name : PRIVILEGE_DEFAULT_USER,
			 rc == -ENOENT ? "no such user" : strerror(-rc));
		return -1;
	}
	out->change = out->uid != 0;
	return 0;
}

/* chown_entry - the user takes the entry name of dir (fstatat'ed as st),
 * unless it already has it. 1 when skipped (a multiply linked file). */
static int chown_entry(int dir, const char *name, const struct stat *st, const struct privilege_user *u)
{
	if (st->st_uid == u->uid && st->st_gid == u->gid)
		return 0;
	if (!S_ISDIR(st->st_mode) && st->st_nlink > 1)
		return 1;
	if (fchownat(dir, name, u->uid, u->gid, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

/* chown_walk - chown_entry for every entry of the open directory dir,
 * descending through O_NOFOLLOW opens so that a directory swapped for a
 * link leads nowhere. Takes dir. Skipped count or -errno. */
static int chown_walk(int dir, const struct privilege_user *u, int depth)
{
	DIR *d = fdopendir(dir);
	int skipped = 0;

	if (d == NULL) {
		int err = -errno;
		close(dir);
		return err;
	}
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;            /* gone meanwhile */
		int rc = chown_entry(dirfd(d), e->d_name, &st, u);
		if (rc < 0) {
			closedir(d);
			return rc;
		}
		skipped += rc;
		if (!S_ISDIR(st.st_mode) || depth >= 64)
			continue;
		int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0)
			continue;
		rc = chown_walk(sub, u, depth + 1);
		if (rc < 0) {
			closedir(d);
			return rc;
		}
		skipped += rc;
	}
	closedir(d);
	return skipped;
}

int privilege_chown_tree(const char *path, const struct privilege_user *u)
{
	if (!u->change || path == NULL || path[0] == '\0')
		return 0;
	int dir = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dir < 0)
		return errno == ENOENT ? 0 : -errno;
	struct stat st;
	if (fstat(dir, &st) < 0 || ((st.st_uid != u->uid || st.st_gid != u->gid) &&
				    fchown(dir, u->uid, u->gid) < 0)) {
		int err = -errno;
		close(dir);
		return err;
	}
	return chown_walk(dir, u, 0);
}

int privilege_chown_path(const char *path, const struct privilege_user *u)
{
	struct stat st;

	if (!u->change || path == NULL || path[0] == '\0' || strcmp(path, "-") == 0)
		return 0;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISREG(st.st_mode))
		return 0;        /* /dev/stdout, a FIFO: not ours to give */
	int rc = chown_entry(AT_FDCWD, path, &st, u);
	return rc < 0 ? rc : 0;
}

/* capabilities_clear - a daemon started unprivileged with
 * CAP_NET_BIND_SERVICE (the systemd unit's AmbientCapabilities) needs it
 * only until its listeners are open: clear the ambient set, then the
 * permitted and effective ones. Raw capset: all-zero sets need no libcap. */
static int capabilities_clear(void)
{
	struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	memset(data, 0, sizeof(data));
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	if (syscall(SYS_capset, &header, data) < 0)
		return -errno;
	return 0;
}

int privilege_drop(const struct privilege_user *u, char *err, size_t errlen)
{
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;

	if (!u->change && u->uid != 0 && capabilities_clear() < 0) {
		snprintf(err, errlen, "cannot drop capabilities: %s", strerror(errno));
		return -1;
	}
	if (!u->change)
		return 0;
	if (setgroups(0, NULL) < 0 || setresgid(u->gid, u->gid, u->gid) < 0 ||
	    setresuid(u->uid, u->uid, u->uid) < 0) {
		snprintf(err, errlen, "user \"%s\": cannot switch to uid %ld gid %ld: %s", u->name,
			 (long)u->uid, (long)u->gid, strerror(errno));
		return -1;
	}
	if (getresuid(&ruid, &euid, &suid) < 0 || getresgid(&rgid, &egid, &sgid) < 0 ||
	    ruid != u->uid || euid != u->uid || suid != u->uid ||
	    rgid != u->gid || egid != u->gid || sgid != u->gid ||
	    getgroups(0, NULL) != 0) {
		snprintf(err, errlen, "user \"%s\": the switch did not take", u->name);
		return -1;
	}
	if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0) {
		snprintf(err, errlen, "user \"%s\": root could be regained after the switch", u->name);
		return -1;
	}
	/* Core dumps of a process that changed ids stay off (the kernel's
	 * default after setuid); and it may no longer be ptraced by the
	 * user either: what it read as root must not leak that way. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	return 0;
}

/* check_one - open path for reading; 0 or -1 with err naming key. */
static int check_one(const char *key, const char *path, char *err, size_t errlen)
{
	if (path == NULL || path[0] == '\0')
		return 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s %s: %s as uid %ld (it is read again on SIGHUP; "
			 "see docs/OPERATIONS.md, \"Privileges\")", key, path, strerror(errno),
			 (long)geteuid());
		return -1;
	}
	close(fd);
	return 0;
}

int privilege_check_readable(const struct config *cfg, char *err, size_t errlen)
{
	if (check_one("config file", cfg->source_path, err, errlen) < 0 ||
	    check_one("tls.cert_file", cfg->tls_cert_file, err, errlen) < 0 ||
	    check_one("tls.key_file", cfg->tls_key_file, err, errlen) < 0 ||
	    check_one("users.file", cfg->users_file, err, errlen) < 0 ||
	    check_one("delivery.auth_file", cfg->auth_file, err, errlen) < 0 ||
	    check_one("http.token_file", cfg->http_token_file, err, errlen) < 0 ||
	    check_one("shaping.file", cfg->shaping_file, err, errlen) < 0 ||
	    check_one("bounce.patterns_file", cfg->bounce_patterns_file, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < cfg->dkim_signer_count; i++)
		if (check_one("dkim.sign[].key_file", cfg->dkim_signers[i].key_file, err, errlen) < 0)
			return -1;
	return 0;
}
