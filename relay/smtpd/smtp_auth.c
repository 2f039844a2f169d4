/*
 * smtp_auth - the AUTH helper thread and the result path; see smtp_auth.h.
 *
 * One helper thread for the process: AUTH is rare next to mail (clients
 * authenticate once per connection), and one thread bounds the CPU a
 * flood of logins can take from the workers (who also rate-limit
 * failures per address before asking). The thread blocks all signals
 * (inherited from the worker that started it) and is never joined: at exit
 * it is parked on its condition variable with nothing queued.
 */
#include "smtp_auth.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "users.h"
#include "xalloc.h"

struct smtp_auth_worker {
	struct worker *w;
	struct ring_op poll_op;		/* first: container of the op */
	int efd;
	struct mpsc results;
};

static pthread_once_t helper_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t helper_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t helper_cond = PTHREAD_COND_INITIALIZER;
static struct smtp_auth_request *helper_head, *helper_tail;

/* helper_main - verify queued requests one after another, forever. */
static void *helper_main(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&helper_lock);
		while (helper_head == NULL)
			pthread_cond_wait(&helper_cond, &helper_lock);
		struct smtp_auth_request *r = helper_head;
		helper_head = r->next;
		if (helper_head == NULL)
			helper_tail = NULL;
		pthread_mutex_unlock(&helper_lock);

		r->ok = users_verify(r->db, r->user, r->password);
		struct smtp_auth_worker *aw = r->aw;
		if (mpsc_push(&aw->results, &r->node)) {
			uint64_t one = 1;
			/* Only fails if the counter would overflow: it is read
			 * on every wake-up, so never. */
			if (write(aw->efd, &one, sizeof(one)) < 0)
				log_error("auth_helper", "error=\"eventfd write: %s\"", strerror(errno));
		}
	}
	return NULL;
}

static void helper_start(void)
{
	pthread_t t;
	int rc = pthread_create(&t, NULL, helper_main, NULL);

	if (rc != 0)
		log_fatal("auth helper thread: %s", strerror(rc));
	pthread_detach(t);
}

static void auth_arm_poll(struct smtp_auth_worker *aw)
{
	struct io_uring_sqe *sqe = worker_sqe(aw->w);

	io_uring_prep_poll_add(sqe, aw->efd, POLLIN);
	io_uring_sqe_set_data(sqe, &aw->poll_op);
}

/* auth_poll_complete - results arrived: hand each to its done callback. */
static void auth_poll_complete(struct worker *w, struct ring_op *op, const struct io_uring_cqe *cqe)
{
	struct smtp_auth_worker *aw = (struct smtp_auth_worker *)((char *)op - offsetof(struct smtp_auth_worker, poll_op));
	uint64_t n;

	(void)w;
	(void)cqe;
	if (read(aw->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_error("auth_helper", "error=\"eventfd read: %s\"", strerror(errno));
	struct mpsc_node *node = mpsc_take_all(&aw->results);
	while (node != NULL) {
		struct mpsc_node *next = node->next;
		struct smtp_auth_request *r = (struct smtp_auth_request *)node;
		r->done(r);
		node = next;
	}
	auth_arm_poll(aw);
}

struct smtp_auth_worker *smtp_auth_worker_new(struct worker *w)
{
	struct smtp_auth_worker *aw = xcalloc(1, sizeof(*aw));

	aw->w = w;
	aw->poll_op.complete = auth_poll_complete;
	mpsc_init(&aw->results);
	aw->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (aw->efd < 0) {
		log_error("auth_helper", "worker=%u error=\"eventfd: %s\"", w->id, strerror(errno));
		free(aw);
		return NULL;
	}
	auth_arm_poll(aw);
	return aw;
}

struct smtp_auth_worker *smtp_auth_worker_free(struct smtp_auth_worker *aw)
{
	if (aw == NULL)
		return NULL;
	/* The poll may still be in the ring, which goes away after us and
	 * never reports it: it writes nothing into aw. */
	close(aw->efd);
	free(aw);
	return NULL;
}

void smtp_auth_submit(struct smtp_auth_worker *aw, struct smtp_auth_request *r)
{
	pthread_once(&helper_once, helper_start);
	r->aw = aw;
	r->next = NULL;
	pthread_mutex_lock(&helper_lock);
	if (helper_tail != NULL)
		helper_tail->next = r;
	else
		helper_head = r;
	helper_tail = r;
	pthread_cond_signal(&helper_cond);
	pthread_mutex_unlock(&helper_lock);
}
