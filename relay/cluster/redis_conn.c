/*
 * redis_conn - a Redis connection over our own socket; see redis_conn.h.
 */
#include "redis_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "xalloc.h"

struct redis_conn {
	int fd;
	int64_t timeout_ms;
	redisReader *reader;
	struct buf out;          /* formatted commands not yet sent */
	size_t pending;          /* how many */
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* wait_fd - poll fd for events until deadline_ms: 0, or -ETIMEDOUT. */
static int wait_fd(int fd, short events, int64_t deadline_ms)
{
	for (;;) {
		int64_t left = deadline_ms - mono_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = fd, .events = events };
		int n = poll(&p, 1, (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

/* connect_one - a non-blocking connect to ai bounded by deadline_ms. */
static int connect_one(const struct addrinfo *ai, int64_t deadline_ms)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	int one = 1, soerr = 0;
	socklen_t len = sizeof(soerr);

	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return fd;
	int rc = errno == EINPROGRESS ? wait_fd(fd, POLLOUT, deadline_ms) : -errno;
	if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr != 0)
		rc = -soerr;
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

struct redis_conn *redis_conn_open(const char *host, int port, int64_t timeout_ms, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *res = NULL;
	char service[16];
	int64_t deadline = mono_ms() + timeout_ms;
	int fd = -ENOENT;

	snprintf(service, sizeof(service), "%d", port);
	int g = getaddrinfo(host, service, &hints, &res);
	if (g != 0) {
		snprintf(err, errlen, "%s: %s", host, gai_strerror(g));
		return NULL;
	}
	for (const struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
		fd = connect_one(ai, deadline);
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "connect %s:%d: %s", host, port, strerror(-fd));
		return NULL;
	}
	struct redis_conn *c = xcalloc(1, sizeof(*c));
	c->fd = fd;
	c->timeout_ms = timeout_ms;
	c->reader = redisReaderCreate();
	if (c->reader == NULL)
		abort();     /* out of memory */
	buf_init(&c->out, 1 << 24);
	return c;
}

struct redis_conn *redis_conn_close(struct redis_conn *c)
{
	if (c == NULL)
		return NULL;
	close(c->fd);
	redisReaderFree(c->reader);
	buf_free(&c->out);
	free(c);
	return NULL;
}

int redis_conn_append(struct redis_conn *c, int argc, const char **argv, const size_t *argvlen)
{
	char *cmd = NULL;

	if (c->pending >= REDIS_CONN_MAX_PIPELINE)
		return -ENOSPC;
	int n = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
	if (n < 0)
		abort();     /* out of memory */
	int rc = buf_append(&c->out, cmd, (size_t)n);
	redisFreeCommand(cmd);
	if (rc < 0)
		return rc;
	c->pending++;
	return 0;
}

size_t redis_conn_pending(const struct redis_conn *c)
{
	return c->pending;
}

/* send_all - the queued bytes, within deadline_ms. */
static int send_all(struct redis_conn *c, int64_t deadline_ms)
{
	const char *p = buf_data(&c->out);
	size_t left = buf_len(&c->out);

	while (left > 0) {
		ssize_t n = send(c->fd, p, left, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			left -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return -errno;
		int rc = wait_fd(c->fd, POLLOUT, deadline_ms);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int redis_conn_exchange(struct redis_conn *c, redisReply **replies)
{
	int64_t deadline = mono_ms() + c->timeout_ms;
	size_t want = c->pending, got = 0;
	int rc = send_all(c, deadline);

	buf_reset(&c->out);
	c->pending = 0;
	while (rc == 0 && got < want) {
		void *reply = NULL;
		if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
			rc = -EPROTO;
			break;
		}
		if (reply != NULL) {
			replies[got++] = reply;
			continue;
		}
		char in[16384];
		ssize_t n = recv(c->fd, in, sizeof(in), 0);
		if (n > 0) {
			if (redisReaderFeed(c->reader, in, (size_t)n) != REDIS_OK)
				rc = -EPROTO;
		} else if (n == 0) {
			rc = -ECONNRESET;
		} else if (errno == EAGAIN) {
			rc = wait_fd(c->fd, POLLIN, deadline);
		} else if (errno != EINTR) {
			rc = -errno;
		}
	}
	if (rc < 0)
		for (size_t i = 0; i < got; i++)
			freeReplyObject(replies[i]);
	return rc;
}

redisReply *redis_conn_command(struct redis_conn *c, int *rc, int argc, const char **argv)
{
	redisReply *reply = NULL;

	*rc = redis_conn_append(c, argc, argv, NULL);
	if (*rc == 0)
		*rc = redis_conn_exchange(c, &reply);
	return *rc == 0 ? reply : NULL;
}
