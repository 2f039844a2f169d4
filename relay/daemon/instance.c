/*
 * instance - the spool lock and the listen-address probe; see instance.h.
 */
#include "instance.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* lock_holder - the PID a running ringmaild wrote into its lock file; 0
 * when there is none yet (it may sit between flock and write). */
static long lock_holder(int fd)
{
	char text[32];
	ssize_t n = pread(fd, text, sizeof(text) - 1, 0);

	if (n <= 0)
		return 0;
	text[n] = '\0';
	char *end;
	long pid = strtol(text, &end, 10);
	return end != text && pid > 0 ? pid : 0;
}

/* lock_write_pid - replace the file's content with our PID, for the
 * message of the next daemon that finds the spool taken. */
static int lock_write_pid(int fd)
{
	char text[32];
	int len = snprintf(text, sizeof(text), "%ld\n", (long)getpid());

	if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t)len, 0) != len)
		return -errno;
	return 0;
}

int instance_lock_spool(const char *spool_dir, long *holder)
{
	char path[4096];

	*holder = 0;
	if (snprintf(path, sizeof(path), "%s/%s", spool_dir, INSTANCE_LOCK_FILE) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	/* The spool shards create the directory the same way (0750, one
	 * level); the lock comes first, so it creates it here. */
	if (mkdir(spool_dir, 0750) < 0 && errno != EEXIST)
		return -errno;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0)
		return -errno;
	/* flock, not fcntl locks: it belongs to the open file, so no other
	 * thread's close of some other fd on this file can drop it. */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int err = -errno;
		if (err == -EWOULDBLOCK)
			*holder = lock_holder(fd);
		close(fd);
		return err;
	}
	int rc = lock_write_pid(fd);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

/* probe_bind - can this process be the first listener of l? SO_REUSEADDR
 * so that connections of a previous run in TIME_WAIT do not count; no
 * SO_REUSEPORT, so that any listening socket on the address does. */
static int probe_bind(const struct config_listen *l)
{
	int one = 1;
	int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l->addr.ss_family == AF_INET6)   /* as the workers' sockets */
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	int rc = bind(fd, (const struct sockaddr *)&l->addr, l->addr_len) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/* A daemon that has just exited, even cleanly, may keep its listeners for
 * a few milliseconds: the kernel closes the files its io_uring ring still
 * references in a deferred teardown, after the process is gone. A restart
 * (systemd, a crash loop) must not take that for another daemon, so a busy
 * address is tried again for this long before the probe gives up. */
#define PROBE_PATIENCE_MS 3000
#define PROBE_INTERVAL_MS 20

/* probe_bind_patiently - probe_bind, waiting out a predecessor's teardown. */
static int probe_bind_patiently(const struct config_listen *l)
{
	const struct timespec interval = { 0, PROBE_INTERVAL_MS * 1000000L };
	int rc = probe_bind(l);

	for (int waited = 0; rc == -EADDRINUSE && waited < PROBE_PATIENCE_MS;
	     waited += PROBE_INTERVAL_MS) {
		nanosleep(&interval, NULL);
		rc = probe_bind(l);
	}
	return rc;
}

int instance_probe_listeners(const struct config *cfg, struct instance_listen_busy *busy)
{
	const struct {
		const char *key;
		const struct config_listen *list;
		size_t count;
	} lists[] = {
		{ "listen", cfg->listen, cfg->listen_count },
		{ "smtps.listen", cfg->smtps_listen, cfg->smtps_listen_count },
		{ "submission.listen", cfg->submission_listen, cfg->submission_listen_count },
		{ "pop3.listen", cfg->pop3_listen, cfg->pop3_listen_count },
		{ "pop3s.listen", cfg->pop3s_listen, cfg->pop3s_listen_count },
		{ "http.listen", cfg->http_listen, cfg->http_listen_count },
		{ "http.tls_listen", cfg->http_tls_listen, cfg->http_tls_listen_count },
		/* Only [0] is served (see config.h). */
		{ "metrics.listen", cfg->metrics_listen, cfg->metrics_listen_count > 0 },
	};

	for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
		for (size_t i = 0; i < lists[k].count; i++) {
			int rc = probe_bind_patiently(&lists[k].list[i]);
			if (rc < 0) {
				busy->key = lists[k].key;
				busy->addr = &lists[k].list[i];
				return rc;
			}
		}
	}
	return 0;
}
