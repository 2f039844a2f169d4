/*
 * privilege - run as the ringmail user: ringmaild started as root opens
 * what needs root (listeners below 1024, the spool lock, the logs), gives
 * the files it will write later to the run-as user, then drops to that
 * user for good. See docs/OPERATIONS.md, "Privileges".
 *
 *   struct privilege_user u;
 *   if (privilege_resolve(cfg->user, &u, err, sizeof(err)) < 0) ... exit 1
 *   privilege_chown_tree(cfg->spool_dir, &u) ...
 *   if (privilege_drop(&u, err, sizeof(err)) < 0) ... exit 1
 *
 * Every function here runs on the main thread before any other thread
 * exists: setresuid is then a plain per-process change.
 */
#ifndef RINGMAIL_PRIVILEGE_H
#define RINGMAIL_PRIVILEGE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define PRIVILEGE_DEFAULT_USER "ringmail"

struct privilege_user {
	bool change;            /* started as root and dropping to someone else */
	uid_t uid;
	gid_t gid;
	char name[64];
};

/* privilege_resolve - who to run as. configured is the user key ("" =
 * the default). As root: the named user; "" = ringmail when that user
 * exists, else an error (running as root takes user = "root"). Not as
 * root: stay who we are; a configured user other than ourselves is an
 * error (only root can switch). 0 or -1 with err filled in. */
int privilege_resolve(const char *configured, struct privilege_user *out, char *err, size_t errlen);

/* privilege_chown_tree - give path and everything below it to the user
 * (only entries owned by someone else; symbolic links are not followed,
 * regular files with more than one link are skipped and counted: a hard
 * link planted by the run-as user must not hand it a foreign file).
 * A missing path is fine. Returns the number of skipped entries, or
 * -errno when the tree cannot be walked. No-op unless u->change. */
int privilege_chown_tree(const char *path, const struct privilege_user *u);

/* privilege_chown_path - give one existing file (a log) to the user, the
 * same way; no-op for "" and "-", and unless u->change. 0 or -errno. */
int privilege_chown_path(const char *path, const struct privilege_user *u);

/* privilege_drop - started unprivileged (u->change false, not root):
 * clear every capability (CAP_NET_BIND_SERVICE from systemd). As root:
 * setgroups(0), setresgid, setresuid to the user, then
 * check with getresuid/getresgid that real, effective and saved ids are
 * all the user's and that going back to root fails. 0, or -1 with err
 * filled in (the caller exits: a half-dropped daemon must not serve). */
int privilege_drop(const struct privilege_user *u, char *err, size_t errlen);

struct config;

/* privilege_check_readable - open each file cfg will read again later (the
 * config file, tls.cert_file, tls.key_file, users.file, DKIM keys) as the
 * user we now are, under whatever confinement is on: a file only root
 * could read would otherwise fail later, in a worker, quietly (a listener
 * without STARTTLS) or at the next reload. 0, or -1 with err naming the
 * key and the file. */
int privilege_check_readable(const struct config *cfg, char *err, size_t errlen);

#endif
