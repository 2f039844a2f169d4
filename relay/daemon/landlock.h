/*
 * landlock - confine the daemon's file access with Landlock (Linux 5.19+
 * for what ringmaild needs; best effort: an older kernel runs unconfined
 * and the log says so). After landlock_confine every thread created
 * later, and the caller, can reach only:
 *
 *   read and write   spool.dir, mailbox.root, the log files' directories,
 *                    control.socket's directory
 *   read             the directories of the config file and of the files a
 *                    reload reads (tls.cert_file, tls.key_file,
 *                    users.file, delivery.tls_ca_file, DKIM key files), and
 *                    the system files the libraries read (resolv.conf,
 *                    hosts, CA certificates, time zones, /dev/urandom,
 *                    the CPU list, /proc/self)
 *
 * Nothing may be executed. Directories, not files, get the rules: a file
 * replaced by rename (ringmailctl users, an editor, certbot) is a new
 * inode and must stay reachable. Run it on the main thread before any
 * other thread starts: Landlock holds for the calling thread and its
 * descendants only.
 */
#ifndef RINGMAIL_LANDLOCK_H
#define RINGMAIL_LANDLOCK_H

#include <stddef.h>

#include "config.h"

/* landlock_confine - build the ruleset from cfg and enforce it. 1 when
 * enforced, 0 when the kernel lacks Landlock (or has only ABI 1, whose
 * ban on renames across directories would break Maildir delivery), -1 with err
 * filled in on a failure. Sets PR_SET_NO_NEW_PRIVS. */
int landlock_confine(const struct config *cfg, char *err, size_t errlen);

/* landlock_abi - the kernel's Landlock ABI version, or 0 without it. */
int landlock_abi(void);

#endif
