/*
 * worker - one thread, one core, one io_uring ring, no locks.
 *
 * A worker owns its ring, its listening sockets (SO_REUSEPORT, multishot
 * accept), its connections, their provided receive buffers and timers, and
 * (with later modules) its spool shard, DNS context and destination queues.
 * Nothing it owns is touched by another thread. Other threads reach it only
 * through worker_post(): a lock-free inbox plus an IORING_OP_MSG_RING wake-up.
 *
 * Every request in the ring carries a struct ring_op pointer as user_data;
 * the loop calls op->complete for each completion. A user_data of 0 means
 * "nobody cares" (cancels, closes, the sender's side of MSG_RING).
 *
 * Roles: worker_start_all starts count SMTP workers (SMTP listeners, a spool
 * shard each, a share of the destination domains) and one more, the local
 * worker, at all[count]: it owns every local mailbox, so it runs the POP3
 * listeners (pop3.listen) and performs the local (Maildir) deliveries. Its
 * file I/O and password hashing block, which is acceptable on this thread
 * only: no SMTP session or relay delivery ever waits for it. It has no spool
 * shard (outcomes go home to the SMTP worker that spooled the message).
 *
 * One loop pass: run before-sleep hooks (group commit), submit everything
 * and wait for at least one completion or the earliest timer, dispatch all
 * completions, expire timers, drain the inbox.
 */
#ifndef RINGMAIL_WORKER_H
#define RINGMAIL_WORKER_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "deadline.h"
#include "mpsc.h"

struct worker;
struct ring_op;
struct conn;
struct tls_config;
struct helper_worker;
struct commit;
struct smtp_server_worker;
struct delivery;
struct pop3_server_worker;
struct metrics_worker;
struct control_worker;
struct http_server_worker;

/* What became of PROXY protocol headers (conn_accept_proxied), counted per
 * worker: a client address taken, the socket's peer kept (v2 LOCAL, v1
 * UNKNOWN, AF_UNSPEC), closed for a bad or missing header, or for one that
 * did not arrive within proxy_protocol.timeout. */
enum worker_proxy_result {
	WORKER_PROXY_OK,
	WORKER_PROXY_KEPT_PEER,
	WORKER_PROXY_BAD,
	WORKER_PROXY_TIMEOUT,
	WORKER_PROXY_RESULTS
};

enum worker_role {
	WORKER_ROLE_SMTP,                  /* SMTP listeners, spool shard, relay */
	WORKER_ROLE_LOCAL,                 /* POP3 listeners, local deliveries */
};

/* A message for a worker's inbox: handle runs on the target's thread, which
 * then owns it; discard frees one the target never handled (it stopped). */
struct worker_post {
	struct mpsc_node node;             /* first: the inbox links these */
	void (*handle)(struct worker *w, struct worker_post *p);
	void (*discard)(struct worker_post *p);
};

typedef void ring_op_fn(struct worker *w, struct ring_op *op, const struct io_uring_cqe *cqe);

struct ring_op {
	ring_op_fn *complete;
};

/* A timer: a deadline node and what to do when it fires. */
struct worker_timer {
	struct deadline_node node;
	void (*fire)(struct worker *w, struct worker_timer *t);
	int cls;                           /* enum worker_timer_class, set by arm */
};

enum worker_timer_class {
	WORKER_TIMER_SMTP_IDLE,            /* SMTP (and control, metrics) client idle */
	WORKER_TIMER_SMTP_COMMAND,
	WORKER_TIMER_SMTP_DATA,
	WORKER_TIMER_SHUTDOWN,
	WORKER_TIMER_OUT_CONNECT,          /* outbound: TCP connect */
	WORKER_TIMER_OUT_GREETING,         /* outbound: waiting for 220 */
	WORKER_TIMER_OUT_COMMAND,          /* outbound: a command's reply */
	WORKER_TIMER_OUT_DATA,             /* outbound: body and final reply */
	WORKER_TIMER_OUT_IDLE,             /* outbound: pooled, unused */
	WORKER_TIMER_POP3_COMMAND,         /* POP3: a command before login */
	WORKER_TIMER_POP3_IDLE,            /* POP3 client idle */
	WORKER_TIMER_PROXY_HEADER,         /* inbound: the PROXY protocol header */
	WORKER_TIMER_HTTP_IDLE,            /* HTTP client idle between requests */
	WORKER_TIMER_HTTP_REQUEST,         /* HTTP: one request in, its answer out */
	WORKER_TIMER_CLASSES
};

/* A side listener (metrics, control): a socket of worker 0's with a
 * multishot accept that hands each connection to handler. fd < 0 when not
 * listening. */
struct worker_listener {
	int fd;
	struct ring_op accept_op;
	const struct conn_handler *handler;
	const char *name;                  /* for the log */
};

/* A hook run once per loop pass before the ring is entered. */
struct worker_hook {
	void (*run)(struct worker *w, void *arg);
	void *arg;
};

#define WORKER_MAX_HOOKS 4

/* A module: one part of the daemon with per-worker state (SMTP server,
 * delivery, commit, ...). Every entry may be NULL.
 *   init   on the worker thread before its first pass, in table order
 *          (the ring and receive buffers exist, the listeners not yet;
 *          hooks run in the order they were added); < 0 aborts the start
 *   start  on the worker thread once every worker is up
 *   busy   while stopping: true while the module still has work of its
 *          own in flight (a commit); the worker does not leave before
 *   exit   on the worker thread after its loop, in reverse table order;
 *          also after a failed start, so it must accept a half-made state
 *   drain  on the main thread once every worker thread has ended */
struct worker_module {
	const char *name;
	int (*init)(struct worker *w);
	void (*start)(struct worker *w);
	bool (*busy)(const struct worker *w);
	void (*exit)(struct worker *w);
	void (*drain)(struct worker *w);
};

/* What the daemon is made of (main.c): its modules, NULL-terminated, and
 * the protocol handler of each listener role. worker.c names none. */
struct worker_plan {
	const struct worker_module *const *modules;
	const struct conn_handler *handlers[CONFIG_ROLE_COUNT];
};

struct worker {
	unsigned id;
	enum worker_role role;
	unsigned count;                    /* SMTP workers in the process */
	struct worker *all;                /* every worker: count SMTP, then the local one */
	pthread_t thread;
	int cpu;
	struct io_uring ring;
	int ring_fd;
	bool poll_wait;                    /* ring.poll_wait as the ring was made */
	int64_t now_ms;                    /* CLOCK_MONOTONIC, once per pass */
	int64_t wake_at_ms;                /* hooks lower it: a timer of their own */

	const struct worker_plan *plan;
	size_t modules_ready;              /* plan->modules[0..n) made: their exits run */
	struct tls_config *server_tls;     /* server_tls.h */
	struct helper_worker *tls_helpers; /* TLS handshakes' results (conn.c); lazily */
	unsigned tls_steps_out;            /* handshake steps on a helper thread now */
	unsigned long server_tls_serial;   /* the config it was made from; 0: none */
	const struct config *cfg;          /* this worker's view, held; see worker_reload_all */
	_Atomic(const struct config *) pending_cfg;   /* held for this worker */

	/* provided receive buffers (one group) */
	struct io_uring_buf_ring *buf_ring;
	char *buf_base;
	unsigned buf_count, buf_size;

	int listen_fds[CONFIG_MAX_LISTEN];
	struct ring_op accept_ops[CONFIG_MAX_LISTEN];
	size_t listen_count;
	enum config_listen_role listen_roles[CONFIG_MAX_LISTEN];
	bool listen_proxy[CONFIG_MAX_LISTEN];  /* expects a PROXY protocol header */
	unsigned accept_paused;            /* bit per listener: waiting to re-arm */
	int64_t accept_resume_ms;

	struct conn *conns;                /* doubly linked list of inbound connections */
	size_t conn_count;                 /* open connections */
	size_t conn_objects;               /* allocated, maybe closed with requests in flight */

	struct deadline_list timers[WORKER_TIMER_CLASSES];
	struct worker_timer shutdown_timer;

	struct worker_hook hooks[WORKER_MAX_HOOKS];
	unsigned hook_count;

	struct mpsc inbox;                 /* struct worker_post nodes */
	struct ring_op wake_op;

	/* per-worker state of the modules (their own types) */
	struct commit *commit;             /* spool shard and group commit */
	struct smtp_server_worker *smtp;   /* SMTP server sessions */
	struct delivery *delivery;         /* queues, pools, resolver */
	struct pop3_server_worker *pop3;   /* POP3 sessions (local worker) */
	struct metrics_worker *metrics;    /* counter snapshot; freed by worker_join_all */
	struct control_worker *control;    /* worker 0: the control socket */
	struct http_server_worker *http;   /* HTTP API sessions (SMTP workers) */

	_Atomic bool stop_requested;
	bool stopping;
	int exit_status;

	/* counters, read by other threads only for reporting */
	_Atomic uint64_t accepted;
	_Atomic uint64_t rejected_busy;
	uint64_t rejected_busy_smtp;       /* of those, SMTP roles (this thread only) */
	uint64_t proxy_headers[WORKER_PROXY_RESULTS];   /* this thread only */
};

/* worker_start_all - create, pin and start count SMTP workers and the local
 * worker with cfg and the modules and handlers of plan (which outlives
 * them); workers has count + 1 entries (the local one last).
 * Returns 0 once every worker is listening, or -errno (then stop and join
 * them). The other *_all functions take the same count and array. */
int worker_start_all(struct worker *workers, unsigned count, const struct config *cfg,
		     const struct worker_plan *plan);

/* worker_stop_all - ask every worker to stop (from any thread). */
void worker_stop_all(struct worker *workers, unsigned count);

/* worker_join_all - wait for every worker; returns the worst exit status. */
int worker_join_all(struct worker *workers, unsigned count);

/* worker_reload_all - hand every worker a new config (from any thread).
 * Each worker gets its own reference (config_hold), taken here, and
 * drops the one to its old config when it picks the new one up at the
 * top of its loop; a config handed over but replaced before a worker
 * picked it up is released here. The caller keeps its own reference.
 * worker_start_all holds one per worker too; worker_join_all drops them. */
void worker_reload_all(struct worker *workers, unsigned count, const struct config *cfg);

/* worker_post - queue p for target (from any thread) and wake it; p->handle
 * runs there. from is the calling worker, or NULL from a non-worker thread. */
void worker_post(struct worker *from, struct worker *target, struct worker_post *p);

/* worker_local - the local worker (mailboxes, POP3) of w's process. */
static inline struct worker *worker_local(const struct worker *w)
{
	return &w->all[w->count];
}

/* worker_sqe - a free submission entry; submits to make room if needed. */
struct io_uring_sqe *worker_sqe(struct worker *w);

/* worker_timer_arm - (re)start t in the given class; worker_timer_disarm. */
void worker_timer_arm(struct worker *w, struct worker_timer *t, enum worker_timer_class cls);
void worker_timer_disarm(struct worker_timer *t);

/* worker_add_hook - run fn(w, arg) before every sleep (worker thread only). */
void worker_add_hook(struct worker *w, void (*fn)(struct worker *, void *), void *arg);

/* worker_listener_start - accept on fd (listening, owned by l from now on)
 * through the ring; worker_listener_stop - cancel the accept and close it
 * (harmless when not listening). */
void worker_listener_start(struct worker *w, struct worker_listener *l, int fd,
			   const struct conn_handler *handler, const char *name);
void worker_listener_stop(struct worker *w, struct worker_listener *l);

/* worker_recycle_buffer - give a provided receive buffer back to the ring. */
void worker_recycle_buffer(struct worker *w, unsigned bid);

static inline char *worker_buffer(struct worker *w, unsigned bid)
{
	return w->buf_base + (size_t)bid * w->buf_size;
}

#endif
