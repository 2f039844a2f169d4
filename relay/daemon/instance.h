/*
 * instance - one ringmaild per spool directory and per listen address.
 *
 * The main thread calls both before any worker starts:
 *
 *   long holder;
 *   int fd = instance_lock_spool(cfg->spool_dir, &holder);
 *   if (fd == -EWOULDBLOCK)  ... another ringmaild (pid holder) owns the spool
 *   struct instance_listen_busy busy;
 *   if (instance_probe_listeners(cfg, &busy) < 0)  ... busy.key, busy.addr
 *
 * The lock fd belongs to the caller and stays open for the life of the
 * process: the kernel drops the lock when the process dies, so a crash
 * never leaves a stale lock behind. The probe holds nothing once it
 * returns; see docs/OPERATIONS.md, "One daemon per spool and address".
 */
#ifndef RINGMAIL_INSTANCE_H
#define RINGMAIL_INSTANCE_H

#include "config.h"

/* The lock file's name inside spool.dir. */
#define INSTANCE_LOCK_FILE "ringmaild.lock"

/* instance_lock_spool - create spool_dir if missing, take an exclusive
 * flock on spool_dir/ringmaild.lock and write our PID into it. Returns the
 * lock fd (the caller keeps it open), -EWOULDBLOCK when another process
 * holds the lock (*holder: the PID written there, 0 if it could not be
 * read), or another -errno. */
int instance_lock_spool(const char *spool_dir, long *holder);

/* Which listener instance_probe_listeners could not bind. */
struct instance_listen_busy {
	const char *key;                  /* "listen", "smtps.listen", ... */
	const struct config_listen *addr; /* points into the config */
};

/* instance_probe_listeners - bind every listen address of cfg once
 * without SO_REUSEPORT (so that a live listener of any process makes the
 * bind fail) and close it again. A busy address is tried again for up to
 * 3 s (a daemon that just exited holds its sockets until the kernel has
 * torn down its io_uring ring). Returns 0, or the first failed bind's
 * -errno (-EADDRINUSE: another process listens there) with *busy naming
 * it. */
int instance_probe_listeners(const struct config *cfg, struct instance_listen_busy *busy);

#endif
