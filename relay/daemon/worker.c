/*
 * worker - per-core io_uring event loop; see worker.h.
 */
#include "worker.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "helper.h"
#include "listen_pool.h"
#include "log.h"
#include "vg.h"

#define BUFFER_GROUP 0
#define ACCEPT_PAUSE_MS 100

static pthread_barrier_t worker_ready;
static _Atomic int worker_start_error;

/* Workers that may still produce work for others (outcomes, DSNs): a
 * stopping worker leaves its loop only when this is 0, so an outcome posted
 * home by the last transactions is journaled rather than dropped. */
static _Atomic unsigned workers_busy;

/* The thread ring lets a non-worker thread (main: signals) wake workers.
 * Only the main thread uses it, so it needs no lock. */
static struct io_uring thread_ring;
static bool thread_ring_ready;

static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct io_uring_sqe *worker_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	while (sqe == NULL) {
		int rc = io_uring_submit(&w->ring);
		if (rc < 0 && rc != -EBUSY && rc != -EAGAIN)
			log_fatal("io_uring_submit: %s", strerror(-rc));
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe;
}

void worker_timer_arm(struct worker *w, struct worker_timer *t, enum worker_timer_class cls)
{
	t->cls = (int)cls;      /* node.list is NULL again once it fires */
	deadline_arm(&w->timers[cls], &t->node, w->now_ms);
}

void worker_timer_disarm(struct worker_timer *t)
{
	deadline_disarm(&t->node);
}

void worker_add_hook(struct worker *w, void (*fn)(struct worker *, void *), void *arg)
{
	if (w->hook_count == WORKER_MAX_HOOKS)
		log_panic("worker_add_hook: more than %d hooks", WORKER_MAX_HOOKS);
	w->hooks[w->hook_count++] = (struct worker_hook){ fn, arg };
}

void worker_recycle_buffer(struct worker *w, unsigned bid)
{
	vg_kernel_reclaims(worker_buffer(w, bid), w->buf_size);
	io_uring_buf_ring_add(w->buf_ring, worker_buffer(w, bid), w->buf_size, (unsigned short)bid,
			      io_uring_buf_ring_mask(w->buf_count), 0);
	io_uring_buf_ring_advance(w->buf_ring, 1);
}

/* worker_timer_durations - each class's duration from the config. */
static void worker_timer_durations(struct worker *w)
{
	const struct config *cfg = w->cfg;
	const int64_t durations[WORKER_TIMER_CLASSES] = {
		[WORKER_TIMER_SMTP_IDLE] = cfg->smtp_idle_timeout_ms,
		[WORKER_TIMER_SMTP_COMMAND] = cfg->smtp_command_timeout_ms,
		[WORKER_TIMER_SMTP_DATA] = cfg->smtp_data_timeout_ms,
		[WORKER_TIMER_SHUTDOWN] = cfg->shutdown_timeout_ms,
		[WORKER_TIMER_OUT_CONNECT] = cfg->connect_timeout_ms,
		[WORKER_TIMER_OUT_GREETING] = cfg->greeting_timeout_ms,
		[WORKER_TIMER_OUT_COMMAND] = cfg->command_timeout_ms,
		[WORKER_TIMER_OUT_DATA] = cfg->data_timeout_ms,
		[WORKER_TIMER_OUT_IDLE] = cfg->connection_idle_timeout_ms,
		[WORKER_TIMER_POP3_COMMAND] = cfg->pop3_command_timeout_ms,
		[WORKER_TIMER_POP3_IDLE] = cfg->pop3_idle_timeout_ms,
		[WORKER_TIMER_PROXY_HEADER] = cfg->proxy_protocol_timeout_ms,
		[WORKER_TIMER_HTTP_IDLE] = cfg->http_idle_timeout_ms,
		[WORKER_TIMER_HTTP_REQUEST] = cfg->http_request_timeout_ms,
	};

	/* Through deadline_set_timeout: a reload that shortens a duration
	 * must not leave older, later-expiring nodes ahead of new ones. */
	for (int i = 0; i < WORKER_TIMER_CLASSES; i++)
		deadline_set_timeout(&w->timers[i], durations[i], w->now_ms);
}

/* Smallest ring a worker falls back to when locked memory runs short. */
#define RING_ENTRIES_FLOOR 256

/* worker_ring_init - the ring with the newest flags the kernel takes:
 * SINGLE_ISSUER + DEFER_TASKRUN (6.1), else COOP_TASKRUN, else none
 * (always none with ring.poll_wait).
 * The CQ is four times the SQ so that multishot bursts do not overflow.
 * The kernel charges ring memory to the user's RLIMIT_MEMLOCK, shared by
 * every process of that user: when it is short (ENOMEM) the ring is made
 * with half the entries, down to RING_ENTRIES_FLOOR, and the log says so
 * (a smaller ring only submits in more rounds). */
static int worker_ring_init(struct worker *w)
{
	static const unsigned flag_sets[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int rc = -EINVAL;
	size_t n = sizeof(flag_sets) / sizeof(flag_sets[0]);
	unsigned entries = (unsigned)w->cfg->ring_entries;

	/* poll_wait needs a plain ring: task work then interrupts poll(2);
	 * with DEFER_TASKRUN nothing would wake a thread asleep in it. */
	w->poll_wait = w->cfg->ring_poll_wait;     /* a reload cannot change the ring */
	for (;;) {
		for (size_t i = w->poll_wait ? n - 1 : 0; i < n; i++) {
			struct io_uring_params p;
			memset(&p, 0, sizeof(p));
			p.flags = flag_sets[i] | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
			p.cq_entries = entries * 4;
			rc = io_uring_queue_init_params(entries, &w->ring, &p);
			if (rc == 0) {
				w->ring_fd = w->ring.ring_fd;
				if (entries != (unsigned)w->cfg->ring_entries)
					log_warn("ring_init", "worker=%u entries=%u configured=%ld note=\"locked memory "
						 "(RLIMIT_MEMLOCK, systemd LimitMEMLOCK) too low for ring.entries\"",
						 w->id, entries, (long)w->cfg->ring_entries);
				return 0;
			}
			if (rc == -ENOMEM)
				break;
		}
		if (rc != -ENOMEM || entries / 2 < RING_ENTRIES_FLOOR)
			return rc;
		entries /= 2;
	}
}

/* worker_buffers_init - the provided-buffer ring for receives. liburing 2.3
 * has no io_uring_setup_buf_ring, so this is the shim STYLE.md asks for. */
static int worker_buffers_init(struct worker *w)
{
	struct io_uring_buf_reg reg;
	void *ring_mem;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	w->buf_count = (unsigned)w->cfg->recv_buffer_count;
	w->buf_size = (unsigned)w->cfg->recv_buffer_size;
	if (posix_memalign(&ring_mem, page, w->buf_count * sizeof(struct io_uring_buf)) != 0)
		return -ENOMEM;
	w->buf_ring = ring_mem;
	io_uring_buf_ring_init(w->buf_ring);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uintptr_t)ring_mem;
	reg.ring_entries = w->buf_count;
	reg.bgid = BUFFER_GROUP;
	int rc = io_uring_register_buf_ring(&w->ring, &reg, 0);
	if (rc < 0)
		return rc;
	if (posix_memalign((void **)&w->buf_base, page, (size_t)w->buf_count * w->buf_size) != 0)
		return -ENOMEM;
	for (unsigned i = 0; i < w->buf_count; i++)
		io_uring_buf_ring_add(w->buf_ring, worker_buffer(w, i), w->buf_size, (unsigned short)i,
				      io_uring_buf_ring_mask(w->buf_count), (int)i);
	io_uring_buf_ring_advance(w->buf_ring, (int)w->buf_count);
	return 0;
}

/* worker_listen_socket - a SO_REUSEPORT listener: every worker binds the
 * same address and the kernel spreads connections over them. The main
 * thread opened it before dropping privileges (listen_pool), unless it
 * did not. */
static int worker_listen_socket(const struct worker *w, const struct config_listen *l)
{
	int fd = listen_pool_take(l, w->id);

	if (fd != -ENOENT)
		return fd;
	return listen_pool_socket(l, (int)w->cfg->listen_backlog, true);
}

static void worker_arm_accept(struct worker *w, size_t i)
{
	struct io_uring_sqe *sqe = worker_sqe(w);
	io_uring_prep_multishot_accept(sqe, w->listen_fds[i], NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data(sqe, &w->accept_ops[i]);
}

/* worker_refuse - too many connections: 421 and close, linked in the ring.
 * An implicit-TLS client expects a handshake, not text: just close. */
static void worker_refuse(struct worker *w, int fd, enum config_listen_role role)
{
	static const char busy[] = "421 4.3.2 Too many connections, try again later\r\n";
	static const char pop3_busy[] = "-ERR [SYS/TEMP] Too many connections, try again later\r\n";
	static const char http_busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
		"Content-Length: 49\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"
		"{\"error\":\"too many connections, try again later\"}";
	struct io_uring_sqe *sqe;

	if (role != CONFIG_ROLE_SMTPS && role != CONFIG_ROLE_POP3S && role != CONFIG_ROLE_HTTPS) {
		sqe = worker_sqe(w);
		if (role == CONFIG_ROLE_HTTP)
			io_uring_prep_send(sqe, fd, http_busy, sizeof(http_busy) - 1, MSG_NOSIGNAL);
		else if (role == CONFIG_ROLE_POP3)
			io_uring_prep_send(sqe, fd, pop3_busy, sizeof(pop3_busy) - 1, MSG_NOSIGNAL);
		else
			io_uring_prep_send(sqe, fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL);
		/* A hard link: the close must run even when the send fails
		 * (the client already reset), or the socket leaks. */
		sqe->flags |= IOSQE_IO_HARDLINK;
		io_uring_sqe_set_data(sqe, NULL);
	}
	sqe = worker_sqe(w);
	io_uring_prep_close(sqe, fd);
	io_uring_sqe_set_data(sqe, NULL);
	w->rejected_busy++;
	if (role != CONFIG_ROLE_POP3 && role != CONFIG_ROLE_POP3S && role != CONFIG_ROLE_HTTP &&
	    role != CONFIG_ROLE_HTTPS)
		w->rejected_busy_smtp++;
}

static void worker_accept_complete(struct worker *w, struct ring_op *op, const struct io_uring_cqe *cqe)
{
	size_t i = (size_t)(op - w->accept_ops);

	if (cqe->res >= 0) {
		if (w->stopping)
			worker_refuse(w, cqe->res, w->listen_roles[i]);
		else if (w->conn_count >= (size_t)w->cfg->max_connections)
			worker_refuse(w, cqe->res, w->listen_roles[i]);
		else {
			w->accepted++;
			if (w->listen_proxy[i])
				conn_accept_proxied(w, cqe->res, w->plan->handlers[w->listen_roles[i]]);
			else
				conn_accept(w, cqe->res, w->plan->handlers[w->listen_roles[i]]);
		}
	} else if (cqe->res != -ECANCELED && cqe->res != -EBADF) {
		log_warn("accept_error", "worker=%u error=\"%s\"", w->id, strerror(-cqe->res));
	}
	if (!(cqe->flags & IORING_CQE_F_MORE) && !w->stopping) {
		if (cqe->res == -EMFILE || cqe->res == -ENFILE || cqe->res == -ENOBUFS || cqe->res == -ENOMEM) {
			/* Out of descriptors or memory: re-arming now would spin. */
			w->accept_paused |= 1u << i;
			w->accept_resume_ms = w->now_ms + ACCEPT_PAUSE_MS;
		} else {
			worker_arm_accept(w, i);
		}
	}
}

static void worker_shutdown_fire(struct worker *w, struct worker_timer *t)
{
	log_info("shutdown_deadline", "worker=%u closing=%zu", w->id, w->conn_count);
	while (w->conns != NULL)
		conn_close(w->conns);
}

static void listener_arm(struct worker *w, struct worker_listener *l)
{
	struct io_uring_sqe *sqe = worker_sqe(w);

	io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data(sqe, &l->accept_op);
}

static void listener_accept_complete(struct worker *w, struct ring_op *op, const struct io_uring_cqe *cqe)
{
	struct worker_listener *l = (struct worker_listener *)((char *)op - offsetof(struct worker_listener, accept_op));

	if (cqe->res >= 0) {
		if (w->stopping || l->fd < 0)
			close(cqe->res);
		else
			conn_accept(w, cqe->res, l->handler);
	} else if (cqe->res != -ECANCELED && cqe->res != -EBADF) {
		log_warn("accept", "listener=%s error=\"%s\"", l->name, strerror(-cqe->res));
	}
	if (!(cqe->flags & IORING_CQE_F_MORE) && !w->stopping && l->fd >= 0 &&
	    cqe->res != -ECANCELED && cqe->res != -EBADF)
		listener_arm(w, l);
}

void worker_listener_start(struct worker *w, struct worker_listener *l, int fd,
			   const struct conn_handler *handler, const char *name)
{
	l->fd = fd;
	l->handler = handler;
	l->name = name;
	l->accept_op.complete = listener_accept_complete;
	listener_arm(w, l);
}

void worker_listener_stop(struct worker *w, struct worker_listener *l)
{
	if (l->fd < 0)
		return;
	struct io_uring_sqe *sqe = worker_sqe(w);
	io_uring_prep_cancel(sqe, &l->accept_op, 0);
	io_uring_sqe_set_data(sqe, NULL);
	close(l->fd);
	l->fd = -1;
}

/* worker_begin_stop - stop accepting, let sessions finish until the
 * shutdown deadline. */
static void worker_begin_stop(struct worker *w)
{
	if (w->stopping)
		return;
	w->stopping = true;
	for (size_t i = 0; i < w->listen_count; i++) {
		struct io_uring_sqe *sqe = worker_sqe(w);
		io_uring_prep_cancel(sqe, &w->accept_ops[i], 0);
		io_uring_sqe_set_data(sqe, NULL);
		sqe = worker_sqe(w);
		io_uring_prep_close(sqe, w->listen_fds[i]);
		io_uring_sqe_set_data(sqe, NULL);
	}
	w->listen_count = 0;
	worker_timer_arm(w, &w->shutdown_timer, WORKER_TIMER_SHUTDOWN);
	conn_shutdown_all(w);
}

/* worker_wake_complete - another thread posted to the inbox, asked us to
 * stop, or handed us a new config. */
static void worker_wake_complete(struct worker *w, struct ring_op *op, const struct io_uring_cqe *cqe)
{
	const struct config *cfg = atomic_exchange(&w->pending_cfg, NULL);

	if (cfg != NULL) {
		/* Nothing on this worker keeps a pointer into the old config
		 * past this pass without its own reference (conns, helper
		 * jobs hold theirs), so ours can go now. */
		const struct config *old = w->cfg;
		w->cfg = cfg;
		worker_timer_durations(w);
		log_debug("reload", "worker=%u serial=%lu", w->id, cfg->serial);
		config_release(old);
	}
	if (atomic_load(&w->stop_requested))
		worker_begin_stop(w);
	struct mpsc_node *node = mpsc_take_all(&w->inbox);
	while (node != NULL) {
		struct mpsc_node *next = node->next;
		struct worker_post *p = (struct worker_post *)node;
		p->handle(w, p);
		node = next;
	}
}

/* worker_wake - post a MSG_RING completion to target from ring. */
static void worker_wake(struct io_uring *ring, struct worker *target)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (sqe == NULL) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	io_uring_prep_msg_ring(sqe, target->ring_fd, 0, (uint64_t)(uintptr_t)&target->wake_op, 0);
	io_uring_sqe_set_data(sqe, NULL);
}

/* thread_wake - wake a worker from the main thread, and reap the
 * sender-side completions of earlier wake-ups. */
static void thread_wake(struct worker *target)
{
	struct io_uring_cqe *cqe;

	worker_wake(&thread_ring, target);
	io_uring_submit(&thread_ring);
	while (io_uring_peek_cqe(&thread_ring, &cqe) == 0)
		io_uring_cqe_seen(&thread_ring, cqe);
}

void worker_post(struct worker *from, struct worker *target, struct worker_post *p)
{
	if (!mpsc_push(&target->inbox, &p->node))
		return;           /* not empty: a wake-up is already on its way */
	if (from != NULL)
		worker_wake(&from->ring, target);   /* submitted with from's next pass */
	else
		thread_wake(target);
}

/* worker_next_timeout - time until the earliest timer, or -1 for none. */
static int64_t worker_next_timeout(struct worker *w)
{
	int64_t next = w->wake_at_ms;

	for (int i = 0; i < WORKER_TIMER_CLASSES; i++) {
		int64_t t = deadline_next(&w->timers[i]);
		if (t < next)
			next = t;
	}
	if (next == INT64_MAX)
		return -1;
	return next > w->now_ms ? next - w->now_ms : 0;
}

static void worker_expire_timers(struct worker *w)
{
	for (int i = 0; i < WORKER_TIMER_CLASSES; i++) {
		struct deadline_node *node;
		while ((node = deadline_pop_expired(&w->timers[i], w->now_ms)) != NULL) {
			struct worker_timer *t = (struct worker_timer *)node;
			t->fire(w, t);
		}
	}
}

/* worker_resume_accepts - re-arm accepts paused by a resource shortage. */
static void worker_resume_accepts(struct worker *w)
{
	if (w->accept_paused == 0 || w->stopping)
		return;
	if (w->now_ms < w->accept_resume_ms) {
		if (w->accept_resume_ms < w->wake_at_ms)
			w->wake_at_ms = w->accept_resume_ms;
		return;
	}
	for (size_t i = 0; i < w->listen_count; i++)
		if (w->accept_paused & (1u << i))
			worker_arm_accept(w, i);
	w->accept_paused = 0;
}

/* worker_modules_exit - the exit of every module that was made, last made
 * first gone (a worker that failed to start made only some, or none). */
static void worker_modules_exit(struct worker *w)
{
	size_t n = w->modules_ready;

	while (n-- > 0)
		if (w->plan->modules[n]->exit != NULL)
			w->plan->modules[n]->exit(w);
}

/* worker_modules_busy - does a module still have work in flight? */
static bool worker_modules_busy(const struct worker *w)
{
	for (const struct worker_module *const *m = w->plan->modules; *m != NULL; m++)
		if ((*m)->busy != NULL && (*m)->busy(w))
			return true;
	return false;
}

/* worker_settled - stopping, and nothing left of our own: no connection,
 * no commit. The first time, we stop counting as busy (the last worker to
 * do so wakes the others); we leave once every worker has settled and our
 * inbox and commits are empty. */
static bool worker_settled(struct worker *w, bool *released)
{
	if (!w->stopping || w->conn_objects > 0 || worker_modules_busy(w))
		return false;
	if (!*released) {
		*released = true;
		if (atomic_fetch_sub(&workers_busy, 1) == 1) {
			for (unsigned i = 0; i <= w->count; i++)
				if (&w->all[i] != w)
					worker_wake(&w->ring, &w->all[i]);
			io_uring_submit(&w->ring);
		}
	}
	return atomic_load(&workers_busy) == 0 && mpsc_empty(&w->inbox);
}

/* worker_wait_poll - one pass's wait when ring.poll_wait is set: submit
 * without waiting, then sleep in poll(2) on the ring fd. valgrind 3.19 runs
 * io_uring_enter as a syscall that never blocks, so a thread asleep in it
 * keeps valgrind's thread lock and starves every other thread; poll(2) is
 * one valgrind knows may block. The ring has no task-run flags: task work
 * interrupts the poll, runs, posts its completions and so wakes it.
 * io_uring_get_events then moves any overflowed completions to the CQ. */
static int worker_wait_poll(struct worker *w, int64_t wait_ms)
{
	struct pollfd p = { .fd = w->ring_fd, .events = POLLIN };
	int rc = io_uring_submit(&w->ring);

	if (rc < 0 || io_uring_cq_ready(&w->ring) > 0)
		return rc;
	if (poll(&p, 1, wait_ms > INT_MAX ? INT_MAX : (int)wait_ms) < 0 && errno != EINTR)
		return -errno;
	return io_uring_get_events(&w->ring);
}

/* worker_loop - one submit-and-wait per pass, with the earliest timer as
 * its timeout; then every completion, then the timers. */
static void worker_loop(struct worker *w)
{
	bool released = false;

	while (!worker_settled(w, &released)) {
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts;
		unsigned head, seen = 0;

		w->wake_at_ms = INT64_MAX;
		for (unsigned i = 0; i < w->hook_count; i++)
			w->hooks[i].run(w, w->hooks[i].arg);
		worker_resume_accepts(w);
		int64_t wait_ms = worker_next_timeout(w);
		ts.tv_sec = wait_ms / 1000;
		ts.tv_nsec = (wait_ms % 1000) * 1000000;
		log_batch_flush();         /* this pass's lines, in one write */
		int rc = w->poll_wait ? worker_wait_poll(w, wait_ms) :
			io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, wait_ms >= 0 ? &ts : NULL, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY)
			log_fatal("worker %u: wait for completions: %s", w->id, strerror(-rc));
		w->now_ms = monotonic_ms();
		io_uring_for_each_cqe(&w->ring, head, cqe) {
			struct ring_op *op = io_uring_cqe_get_data(cqe);
			if (op != NULL)
				op->complete(w, op, cqe);
			seen++;
		}
		io_uring_cq_advance(&w->ring, seen);
		worker_expire_timers(w);
	}
	/* Hand the last closes to the kernel before the ring goes. */
	io_uring_submit(&w->ring);
}

static void worker_pin(struct worker *w)
{
	cpu_set_t set;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	CPU_ZERO(&set);
	w->cpu = (int)(w->id % (unsigned)(cpus > 0 ? cpus : 1));
	CPU_SET(w->cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* worker_listen_all - a socket for every listener of the worker's role:
 * SMTP workers take listen, smtps.listen, submission.listen, http.listen
 * and http.tls_listen, the local worker pop3.listen and pop3s.listen
 * (config_load caps the sum). */
static int worker_listen_all(struct worker *w)
{
	const struct config *cfg = w->cfg;
	bool local = w->role == WORKER_ROLE_LOCAL;
	const struct config_listen *lists[5] = {
		local ? cfg->pop3_listen : cfg->listen,
		local ? cfg->pop3s_listen : cfg->smtps_listen,
		local ? NULL : cfg->submission_listen,
		local ? NULL : cfg->http_listen,
		local ? NULL : cfg->http_tls_listen,
	};
	const size_t counts[5] = {
		local ? cfg->pop3_listen_count : cfg->listen_count,
		local ? cfg->pop3s_listen_count : cfg->smtps_listen_count,
		local ? 0 : cfg->submission_listen_count,
		local ? 0 : cfg->http_listen_count,
		local ? 0 : cfg->http_tls_listen_count,
	};

	for (size_t k = 0; k < 5; k++) {
		for (size_t i = 0; i < counts[k]; i++) {
			const struct config_listen *l = &lists[k][i];
			if (w->listen_count == CONFIG_MAX_LISTEN)
				return -EMFILE;      /* config_load prevents it */
			int fd = worker_listen_socket(w, l);
			if (fd < 0) {
				log_error("listen", "worker=%u addr=%s error=\"%s\"", w->id,
					  l->text, strerror(-fd));
				return fd;
			}
			size_t n = w->listen_count++;
			w->listen_fds[n] = fd;
			w->listen_roles[n] = l->role;
			w->listen_proxy[n] = l->proxy_protocol;
			w->accept_ops[n].complete = worker_accept_complete;
			worker_arm_accept(w, n);
		}
	}
	return 0;
}

/* worker_setup - everything a worker needs before its first pass; runs on
 * the worker's own thread (SINGLE_ISSUER binds the ring to it). */
static int worker_setup(struct worker *w)
{
	int rc = worker_ring_init(w);

	if (rc < 0) {
		log_error("ring_init", "worker=%u error=\"%s\"", w->id, strerror(-rc));
		return rc;
	}
	rc = worker_buffers_init(w);
	if (rc < 0) {
		log_error("buffer_ring", "worker=%u error=\"%s\"", w->id, strerror(-rc));
		return rc;
	}
	for (const struct worker_module *const *m = w->plan->modules; *m != NULL; m++) {
		rc = (*m)->init != NULL ? (*m)->init(w) : 0;
		if (rc < 0) {
			log_debug("module_init", "worker=%u module=%s error=\"%s\"", w->id, (*m)->name,
				  strerror(-rc));
			return rc;
		}
		w->modules_ready++;
	}
	return worker_listen_all(w);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	if (w->role == WORKER_ROLE_SMTP)
		worker_pin(w);
	else
		w->cpu = -1;       /* the local worker blocks: let the scheduler place it */
	w->now_ms = monotonic_ms();
	for (int i = 0; i < WORKER_TIMER_CLASSES; i++)
		deadline_list_init(&w->timers[i], 0);
	worker_timer_durations(w);
	w->shutdown_timer.fire = worker_shutdown_fire;
	w->wake_op.complete = worker_wake_complete;
	mpsc_init(&w->inbox);

	int rc = worker_setup(w);
	if (rc < 0)
		atomic_store(&worker_start_error, rc);
	pthread_barrier_wait(&worker_ready);
	if (atomic_load(&worker_start_error) != 0) {
		w->exit_status = 1;
		worker_modules_exit(w);
		free(w->buf_base);
		free(w->buf_ring);
		return NULL;
	}
	log_batch_begin();
	log_info("worker_start", "worker=%u role=%s cpu=%d listeners=%zu", w->id,
		 w->role == WORKER_ROLE_LOCAL ? "local" : "smtp", w->cpu, w->listen_count);
	for (const struct worker_module *const *m = w->plan->modules; *m != NULL; m++)
		if ((*m)->start != NULL)
			(*m)->start(w);
	worker_loop(w);
	worker_modules_exit(w);
	/* Every handshake job held a conn, and no conn is left. */
	w->tls_helpers = helper_worker_free(w->tls_helpers);
	log_info("worker_exit", "worker=%u%s accepted=%llu refused=%llu", w->id,
		 w->role == WORKER_ROLE_LOCAL ? " role=local" : "",
		 (unsigned long long)w->accepted, (unsigned long long)w->rejected_busy);
	log_batch_end();
	io_uring_queue_exit(&w->ring);
	free(w->buf_base);
	free(w->buf_ring);
	return NULL;
}

int worker_start_all(struct worker *workers, unsigned count, const struct config *cfg,
		     const struct worker_plan *plan)
{
	int rc = io_uring_queue_init(64, &thread_ring, 0);

	if (rc < 0)
		return rc;
	thread_ring_ready = true;
	atomic_store(&workers_busy, count + 1);
	pthread_barrier_init(&worker_ready, NULL, count + 2);
	for (unsigned i = 0; i <= count; i++) {
		struct worker *w = &workers[i];
		memset(w, 0, sizeof(*w));
		w->id = i;
		w->role = i == count ? WORKER_ROLE_LOCAL : WORKER_ROLE_SMTP;
		w->count = count;
		w->all = workers;
		w->cfg = config_hold(cfg);
		w->plan = plan;
		rc = pthread_create(&w->thread, NULL, worker_main, w);
		if (rc != 0)
			log_fatal("pthread_create: %s", strerror(rc));
	}
	pthread_barrier_wait(&worker_ready);
	return atomic_load(&worker_start_error);
}

void worker_stop_all(struct worker *workers, unsigned count)
{
	for (unsigned i = 0; i <= count; i++) {
		atomic_store(&workers[i].stop_requested, true);
		thread_wake(&workers[i]);
	}
}

void worker_reload_all(struct worker *workers, unsigned count, const struct config *cfg)
{
	for (unsigned i = 0; i <= count; i++) {
		/* Held before the worker can see it: once the worker has
		 * it, the caller's release must not be the last. */
		const struct config *unseen = atomic_exchange(&workers[i].pending_cfg, config_hold(cfg));
		config_release(unseen);
		thread_wake(&workers[i]);
	}
}

int worker_join_all(struct worker *workers, unsigned count)
{
	int status = 0;

	for (unsigned i = 0; i <= count; i++) {
		pthread_join(workers[i].thread, NULL);
		if (workers[i].exit_status > status)
			status = workers[i].exit_status;
	}
	/* Every thread is gone: free what was posted to a worker after it
	 * stopped reading its inbox. */
	for (unsigned i = 0; i <= count; i++) {
		struct mpsc_node *node = mpsc_take_all(&workers[i].inbox);
		while (node != NULL) {
			struct mpsc_node *next = node->next;
			struct worker_post *p = (struct worker_post *)node;
			p->discard(p);
			node = next;
		}
		for (const struct worker_module *const *m = workers[i].plan->modules; *m != NULL; m++)
			if ((*m)->drain != NULL)
				(*m)->drain(&workers[i]);
		workers[i].cfg = config_release(workers[i].cfg);
		config_release(atomic_exchange(&workers[i].pending_cfg, NULL));
	}
	pthread_barrier_destroy(&worker_ready);
	if (thread_ring_ready) {
		io_uring_queue_exit(&thread_ring);
		thread_ring_ready = false;
	}
	return status;
}
