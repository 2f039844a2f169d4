/*
 * redis_conn - a blocking Redis connection for the cluster thread: our own
 * TCP socket, hiredis only as the protocol codec (redisFormatCommandArgv
 * to write, redisReader to parse), every wait bounded by a timeout.
 *
 *   c = redis_conn_open("127.0.0.1", 6379, 500, err, sizeof(err));
 *   redis_conn_append(c, argc, argv, argvlen);      queue commands ...
 *   rc = redis_conn_exchange(c, replies);           ... send them, read as many replies
 *   freeReplyObject(replies[i]) for each;           the caller owns them
 *   c = redis_conn_close(c);
 *
 * Why not hiredis's own context: Debian 12's hiredis 0.14 has no TLS and
 * its blocking calls cannot bound a connect by our timeout as simply;
 * owning the socket keeps the door open to carrying TLS ourselves.
 * Only the cluster thread uses a connection (never a worker's loop).
 * Errors: -ETIMEDOUT (connect or a round trip slower than the timeout),
 * -ECONNRESET (closed by the server), -EPROTO (not RESP), -errno.
 */
#ifndef RINGMAIL_REDIS_CONN_H
#define RINGMAIL_REDIS_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define REDIS_CONN_MAX_PIPELINE 1024

struct redis_conn;

struct redis_conn *redis_conn_open(const char *host, int port, int64_t timeout_ms, char *err, size_t errlen);
/* redis_conn_close - accepts NULL, returns NULL. */
struct redis_conn *redis_conn_close(struct redis_conn *c);

/* redis_conn_append - queue one command (its arguments are copied);
 * -ENOSPC past REDIS_CONN_MAX_PIPELINE. */
int redis_conn_append(struct redis_conn *c, int argc, const char **argv, const size_t *argvlen);
/* redis_conn_pending - commands queued and not yet exchanged. */
size_t redis_conn_pending(const struct redis_conn *c);
/* redis_conn_exchange - send the queued commands in one write and read
 * one reply each into replies (array of redis_conn_pending() slots): one
 * round trip. 0, or -errno (replies then hold nothing to free). */
int redis_conn_exchange(struct redis_conn *c, redisReply **replies);

/* redis_conn_command - one command, one round trip: the reply, or NULL
 * with *rc < 0. */
redisReply *redis_conn_command(struct redis_conn *c, int *rc, int argc, const char **argv);

#endif
