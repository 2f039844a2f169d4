/*
 * listen_pool - listening sockets opened by the main thread before the
 * privilege drop, for the workers to take when they start: a port below
 * 1024 needs root (or CAP_NET_BIND_SERVICE) to bind, the workers run
 * without either.
 *
 *   listen_pool_open(cfg, smtp_workers)      main thread, as root
 *   fd = listen_pool_take(l, worker_id)      a worker: -ENOENT = open it yourself
 *   listen_pool_close_all()                  what no worker took
 *
 * Each SMTP worker has its own SO_REUSEPORT socket per address of listen,
 * smtps.listen and submission.listen; the local worker (id smtp_workers)
 * those of pop3.listen and pop3s.listen; worker 0 metrics.listen[0].
 * The pool only binds (what needs the privilege); a socket starts
 * listening when its worker takes it, so a client that comes before the
 * workers are up is refused rather than left waiting. Entries are keyed
 * by the config_listen's address, so only the config
 * passed to listen_pool_open finds them (listeners change only on restart).
 */
#ifndef RINGMAIL_LISTEN_POOL_H
#define RINGMAIL_LISTEN_POOL_H

#include <stdbool.h>

#include "config.h"

/* listen_pool_socket - a bound, listening TCP socket for l; reuseport
 * for the workers' shared addresses. fd or -errno. */
int listen_pool_socket(const struct config_listen *l, int backlog, bool reuseport);

/* listen_pool_open - every listener of cfg for smtp_workers workers plus
 * the local one. 0, or -errno with *failed set to the listener (nothing
 * stays open). */
int listen_pool_open(const struct config *cfg, unsigned smtp_workers, const struct config_listen **failed);

/* listen_pool_take - the pooled socket of l for worker, now listening
 * and the caller's; -ENOENT when there is none, -errno when listen
 * fails. Thread-safe. */
int listen_pool_take(const struct config_listen *l, unsigned worker);

/* listen_pool_close_all - close the sockets nobody took. */
void listen_pool_close_all(void);

#endif
