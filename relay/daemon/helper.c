/*
 * helper - helper thread pools and the result path; see helper.h.
 *
 * Both ways are the same lock-free shape: an mpsc queue plus an eventfd
 * written only when the queue was empty. A helper sleeps in read(2) on
 * its own eventfd; a worker hears results through a poll in its ring. A
 * node is in one queue at a time (the helper's inbox, then the worker's
 * results), so one mpsc_node serves both.
 */
#include "helper.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"
#include "xalloc.h"

/* wake - add one to an eventfd. Only fails if the counter would
 * overflow: it is read on every wake-up, so never. */
static void wake(int efd, const char *what)
{
	uint64_t one = 1;

	if (write(efd, &one, sizeof(one)) < 0)
		log_error("helper", "pool=%s error=\"eventfd write: %s\"", what, strerror(errno));
}

struct helper_worker {
	struct worker *w;
	struct ring_op poll_op;
	int efd;
	struct mpsc results;
};

struct helper_thread {
	struct helper_pool *pool;
	struct mpsc inbox;
	int efd;			/* blocking: the helper sleeps in read */
};

/* helper_main - run the jobs of this thread's inbox, forever. */
static void *helper_main(void *arg)
{
	struct helper_thread *t = arg;

	/* "tls", "dkim", ...: what top -H and /proc show. From the thread
	 * itself: Landlock forbids writing another thread's comm in /proc. */
	prctl(PR_SET_NAME, t->pool->name, 0, 0, 0);
	for (;;) {
		struct mpsc_node *node = mpsc_take_all(&t->inbox);
		if (node == NULL) {
			uint64_t n;
			/* A push after the take writes the eventfd (the inbox
			 * was empty), so this read cannot miss it. */
			if (read(t->efd, &n, sizeof(n)) < 0 && errno != EINTR)
				log_fatal("helper thread (%s): eventfd read: %s", t->pool->name, strerror(errno));
			continue;
		}
		while (node != NULL) {
			struct mpsc_node *next = node->next;
			struct helper_job *job = (struct helper_job *)node;
			job->run(job);
			struct helper_worker *hw = job->hw;
			if (mpsc_push(&hw->results, &job->node))
				wake(hw->efd, t->pool->name);
			node = next;
		}
	}
	return NULL;
}

/* pool_start - the pool's threads, once. */
static struct helper_thread *pool_start(struct helper_pool *pool)
{
	pthread_mutex_lock(&pool->start_lock);
	struct helper_thread *threads = atomic_load(&pool->thread);
	if (threads == NULL) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		unsigned n = pool->threads != 0 ? pool->threads : cpus > 0 ? (unsigned)cpus : 1;
		threads = xcalloc(n, sizeof(*threads));
		for (unsigned i = 0; i < n; i++) {
			pthread_t tid;
			threads[i].pool = pool;
			mpsc_init(&threads[i].inbox);
			threads[i].efd = eventfd(0, EFD_CLOEXEC);
			if (threads[i].efd < 0)
				log_fatal("helper thread (%s): eventfd: %s", pool->name, strerror(errno));
			int rc = pthread_create(&tid, NULL, helper_main, &threads[i]);
			if (rc != 0)
				log_fatal("helper thread (%s): %s", pool->name, strerror(rc));
			pthread_detach(tid);
		}
		pool->count = n;
		atomic_store(&pool->thread, threads);
		log_debug("helper_start", "pool=%s threads=%u", pool->name, n);
	}
	pthread_mutex_unlock(&pool->start_lock);
	return threads;
}

static void helper_arm_poll(struct helper_worker *hw)
{
	struct io_uring_sqe *sqe = worker_sqe(hw->w);

	io_uring_prep_poll_add(sqe, hw->efd, POLLIN);
	io_uring_sqe_set_data(sqe, &hw->poll_op);
}

/* helper_poll_complete - results arrived: hand each to its done. */
static void helper_poll_complete(struct worker *w, struct ring_op *op, const struct io_uring_cqe *cqe)
{
	struct helper_worker *hw = container_of(op, struct helper_worker, poll_op);
	uint64_t n;

	(void)w;
	(void)cqe;
	if (read(hw->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_error("helper", "error=\"eventfd read: %s\"", strerror(errno));
	struct mpsc_node *node = mpsc_take_all(&hw->results);
	while (node != NULL) {
		struct mpsc_node *next = node->next;
		struct helper_job *job = (struct helper_job *)node;
		job->done(job);
		node = next;
	}
	helper_arm_poll(hw);
}

struct helper_worker *helper_worker_new(struct worker *w)
{
	struct helper_worker *hw = xcalloc(1, sizeof(*hw));

	hw->w = w;
	hw->poll_op.complete = helper_poll_complete;
	mpsc_init(&hw->results);
	hw->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (hw->efd < 0) {
		log_error("helper", "worker=%u error=\"eventfd: %s\"", w->id, strerror(errno));
		free(hw);
		return NULL;
	}
	helper_arm_poll(hw);
	return hw;
}

struct helper_worker *helper_worker_free(struct helper_worker *hw)
{
	if (hw == NULL)
		return NULL;
	/* The poll may still be in the ring, which goes away after us and
	 * never reports it: it writes nothing into hw. */
	close(hw->efd);
	free(hw);
	return NULL;
}

/* submit_on - push job onto the inbox of thread pick % count. */
static void submit_on(struct helper_pool *pool, struct helper_worker *hw, struct helper_job *job,
		      unsigned pick)
{
	struct helper_thread *threads = atomic_load(&pool->thread);

	if (threads == NULL)
		threads = pool_start(pool);
	struct helper_thread *t = &threads[pick % pool->count];
	job->hw = hw;
	if (mpsc_push(&t->inbox, &job->node))
		wake(t->efd, pool->name);
}

void helper_submit(struct helper_pool *pool, struct helper_worker *hw, struct helper_job *job)
{
	submit_on(pool, hw, job, atomic_fetch_add(&pool->next, 1));
}

void helper_submit_to(struct helper_pool *pool, struct helper_worker *hw, struct helper_job *job,
		      unsigned key)
{
	submit_on(pool, hw, job, key);
}
