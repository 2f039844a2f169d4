/*
 * listen_pool - listeners opened before the privilege drop; see listen_pool.h.
 */
#include "listen_pool.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "xalloc.h"

/* Only bind needs privileges: a pooled socket listens when its worker
 * takes it, so that until the workers are up a client is refused, as
 * before there was a pool, instead of waiting in a backlog nobody reads. */
struct pooled {
	const struct config_listen *listen;
	unsigned worker;
	int backlog;
	int fd;                 /* bound, not listening; -1 once taken */
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pooled *pool;
static size_t pool_count, pool_cap;

/* socket_bind - a TCP socket bound to l, not yet listening. fd or -errno. */
static int socket_bind(const struct config_listen *l, bool reuseport)
{
	int one = 1;
	int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (l->addr.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&l->addr, l->addr_len) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* socket_listen - listen on fd, closing it on failure. fd or -errno. */
static int socket_listen(int fd, int backlog)
{
	if (listen(fd, backlog) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int listen_pool_socket(const struct config_listen *l, int backlog, bool reuseport)
{
	int fd = socket_bind(l, reuseport);

	return fd < 0 ? fd : socket_listen(fd, backlog);
}

/* pool_add - open l for worker and keep it. 0 or -errno. */
static int pool_add(const struct config_listen *l, unsigned worker, int backlog, bool reuseport)
{
	int fd = socket_bind(l, reuseport);

	if (fd < 0)
		return fd;
	if (pool_count == pool_cap) {
		pool_cap = pool_cap ? pool_cap * 2 : 16;
		pool = xrealloc(pool, pool_cap * sizeof(*pool));
	}
	pool[pool_count++] = (struct pooled){ l, worker, backlog, fd };
	return 0;
}

int listen_pool_open(const struct config *cfg, unsigned smtp_workers, const struct config_listen **failed)
{
	const struct { const struct config_listen *list; size_t count; bool local; } lists[] = {
		{ cfg->listen, cfg->listen_count, false },
		{ cfg->smtps_listen, cfg->smtps_listen_count, false },
		{ cfg->submission_listen, cfg->submission_listen_count, false },
		{ cfg->pop3_listen, cfg->pop3_listen_count, true },
		{ cfg->pop3s_listen, cfg->pop3s_listen_count, true },
	};
	int rc = 0;

	for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]) && rc == 0; k++) {
		for (size_t i = 0; i < lists[k].count && rc == 0; i++) {
			const struct config_listen *l = &lists[k].list[i];
			if (lists[k].local) {
				rc = pool_add(l, smtp_workers, (int)cfg->listen_backlog, true);
				*failed = l;
				continue;
			}
			for (unsigned w = 0; w < smtp_workers && rc == 0; w++) {
				rc = pool_add(l, w, (int)cfg->listen_backlog, true);
				*failed = l;
			}
		}
	}
	if (rc == 0 && cfg->metrics_listen_count > 0) {
		*failed = &cfg->metrics_listen[0];
		rc = pool_add(&cfg->metrics_listen[0], 0, 64, false);
	}
	if (rc < 0)
		listen_pool_close_all();
	return rc;
}

int listen_pool_take(const struct config_listen *l, unsigned worker)
{
	int fd = -ENOENT, backlog = 0;

	pthread_mutex_lock(&pool_lock);
	for (size_t i = 0; i < pool_count; i++) {
		if (pool[i].listen == l && pool[i].worker == worker && pool[i].fd >= 0) {
			fd = pool[i].fd;
			backlog = pool[i].backlog;
			pool[i].fd = -1;
			break;
		}
	}
	pthread_mutex_unlock(&pool_lock);
	return fd < 0 ? fd : socket_listen(fd, backlog);
}

void listen_pool_close_all(void)
{
	pthread_mutex_lock(&pool_lock);
	for (size_t i = 0; i < pool_count; i++)
		if (pool[i].fd >= 0)
			close(pool[i].fd);
	free(pool);
	pool = NULL;
	pool_count = pool_cap = 0;
	pthread_mutex_unlock(&pool_lock);
}
