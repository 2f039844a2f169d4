/*
 * landlock - file access confinement; see landlock.h. Raw syscalls: Debian
 * 12 has no Landlock library.
 */
#include "landlock.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif

#define FS_READ (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)
#define FS_FILE_RIGHTS (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | \
			LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE)

/* Everything ABI 1 and 2 know (v3 adds TRUNCATE below). */
#define FS_ALL_V2 ((LANDLOCK_ACCESS_FS_REFER << 1) - 1)

int landlock_abi(void)
{
	long abi = syscall(__NR_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	return abi < 0 ? 0 : (int)abi;
}

struct ruleset {
	int fd;
	uint64_t handled;
	uint64_t write;          /* the handled rights of a read-write tree */
};

/* rule_add - allow access (masked by what is handled) under path. A
 * missing path is skipped: it may appear later only through a restart. */
static int rule_add(struct ruleset *rs, const char *path, uint64_t access)
{
	struct stat st;
	int fd = open(path, O_PATH | O_CLOEXEC);

	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR || errno == EACCES ? 0 : -errno;
	if (fstat(fd, &st) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	struct landlock_path_beneath_attr attr = {
		.allowed_access = access & rs->handled & (S_ISDIR(st.st_mode) ? ~0ULL : FS_FILE_RIGHTS),
		.parent_fd = fd,
	};
	int rc = 0;
	if (attr.allowed_access != 0 &&
	    syscall(__NR_landlock_add_rule, rs->fd, LANDLOCK_RULE_PATH_BENEATH, &attr, 0) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* rule_add_dir_of - rule_add on the directory holding file ("." for a bare
 * name); nothing for "", "-" and paths under /dev (a log on /dev/stderr
 * gets the file, not /dev). */
static int rule_add_dir_of(struct ruleset *rs, const char *file, uint64_t access)
{
	char dir[4096];

	if (file == NULL || file[0] == '\0' || strcmp(file, "-") == 0)
		return 0;
	if (strncmp(file, "/dev/", 5) == 0)
		return rule_add(rs, file, access);
	const char *slash = strrchr(file, '/');
	if (slash == NULL)
		return rule_add(rs, ".", access);
	size_t len = slash == file ? 1 : (size_t)(slash - file);
	if (len >= sizeof(dir))
		return -ENAMETOOLONG;
	memcpy(dir, file, len);
	dir[len] = '\0';
	return rule_add(rs, dir, access);
}

/* What libc, udns, mbedTLS and glibc's sysconf read after the start. */
static const char *const system_read_paths[] = {
	"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf",
	"/etc/localtime", "/usr/share/zoneinfo", "/etc/ssl", "/usr/share/ca-certificates",
	"/usr/local/share/ca-certificates", "/dev/urandom", "/dev/random",
	"/sys/devices/system/cpu", "/proc/self",
};

/* ruleset_fill - every rule of landlock.h's table. */
static int ruleset_fill(struct ruleset *rs, const struct config *cfg)
{
	char control[4096];
	int rc = 0;

	rc = rc ? rc : rule_add(rs, cfg->spool_dir, rs->write);
	rc = rc ? rc : rule_add(rs, cfg->mailbox_root, rs->write);
	rc = rc ? rc : rule_add_dir_of(rs, cfg->log_file, rs->write);
	rc = rc ? rc : rule_add_dir_of(rs, cfg->log_delivery_file, rs->write);
	if (rc == 0 && config_control_path(cfg, control, sizeof(control)) == 0)
		rc = rule_add_dir_of(rs, control, rs->write);
	rc = rc ? rc : rule_add(rs, "/dev/null", FS_READ | LANDLOCK_ACCESS_FS_WRITE_FILE);
	rc = rc ? rc : rule_add_dir_of(rs, cfg->source_path, FS_READ);
	rc = rc ? rc : rule_add_dir_of(rs, cfg->tls_cert_file, FS_READ);
	rc = rc ? rc : rule_add_dir_of(rs, cfg->tls_key_file, FS_READ);
	rc = rc ? rc : rule_add_dir_of(rs, cfg->users_file, FS_READ);
	rc = rc ? rc : rule_add_dir_of(rs, cfg->auth_file, FS_READ);
	rc = rc ? rc : rule_add_dir_of(rs, cfg->http_token_file, FS_READ);
	rc = rc ? rc : rule_add_dir_of(rs, cfg->shaping_file, FS_READ);
	rc = rc ? rc : rule_add_dir_of(rs, cfg->bounce_patterns_file, FS_READ);
	rc = rc ? rc : rule_add(rs, cfg->tls_ca_file, FS_READ);
	rc = rc ? rc : rule_add_dir_of(rs, cfg->tls_ca_file, FS_READ);
	for (size_t i = 0; rc == 0 && i < cfg->dkim_signer_count; i++)
		rc = rule_add_dir_of(rs, cfg->dkim_signers[i].key_file, FS_READ);
	for (size_t i = 0; rc == 0 && i < sizeof(system_read_paths) / sizeof(system_read_paths[0]); i++)
		rc = rule_add(rs, system_read_paths[i], FS_READ);
	return rc;
}

int landlock_confine(const struct config *cfg, char *err, size_t errlen)
{
	int abi = landlock_abi();

	if (abi < 2) {
		log_warn("landlock", "result=unavailable abi=%d note=\"kernel without Landlock ABI 2 (5.19): file access is not confined\"", abi);
		return 0;
	}
	struct ruleset rs = { .handled = FS_ALL_V2 };
	if (abi >= 3)
		rs.handled |= LANDLOCK_ACCESS_FS_TRUNCATE;
	rs.write = rs.handled & ~(uint64_t)(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
					    LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
					    LANDLOCK_ACCESS_FS_MAKE_SYM);
	struct landlock_ruleset_attr attr = { .handled_access_fs = rs.handled };
	rs.fd = (int)syscall(__NR_landlock_create_ruleset, &attr, sizeof(attr), 0);
	if (rs.fd < 0) {
		snprintf(err, errlen, "landlock: create ruleset: %s", strerror(errno));
		return -1;
	}
	int rc = ruleset_fill(&rs, cfg);
	if (rc < 0) {
		snprintf(err, errlen, "landlock: add rule: %s", strerror(-rc));
		close(rs.fd);
		return -1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    syscall(__NR_landlock_restrict_self, rs.fd, 0) < 0) {
		snprintf(err, errlen, "landlock: restrict: %s", strerror(errno));
		close(rs.fd);
		return -1;
	}
	close(rs.fd);
	log_info("landlock", "result=enforced abi=%d", abi);
	return 1;
}
