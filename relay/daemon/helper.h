/*
 * helper - run blocking or CPU-heavy jobs off a worker's loop.
 *
 * A worker's ring loop may not block or burn milliseconds: password
 * hashing (crypt) and DKIM signing (an RSA-2048 private operation costs
 * about a millisecond) run on helper threads instead. A pool is a static
 * object per kind of job, its threads started on first use; a finished
 * job comes back to the worker that submitted it through that worker's
 * result queue (mpsc) and an eventfd polled in its ring, and its done
 * callback runs on the worker's loop.
 *
 *   static struct helper_pool pool = HELPER_POOL_INIT("name", 0);  0: one per CPU
 *   hw = helper_worker_new(w);              on the worker thread, once
 *   job->run = ...; job->done = ...;        embed struct helper_job first
 *   helper_submit(&pool, hw, job);          run(job) on a helper thread,
 *                                           then done(job) on w's loop
 *   helper_submit_to(&pool, hw, job, key);  the same, always on thread
 *                                           key % threads (jobs that share
 *                                           state only one thread may use)
 *   hw = helper_worker_free(hw);            when no job is out
 *
 * Nothing here locks on a worker's loop: a submit picks a helper thread
 * round-robin and pushes onto its lock-free inbox, writing the helper's
 * eventfd only when the inbox was empty (the first submit to a pool
 * takes a mutex once, to start its threads).
 *
 * Ownership: the job (and whatever run reads) belongs to the helper from
 * submit until done is called; then it is the caller's again. The threads
 * block all signals (inherited from the worker that starts them) and are
 * never joined: at exit they wait on an empty queue.
 */
#ifndef RINGMAIL_HELPER_H
#define RINGMAIL_HELPER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "mpsc.h"

struct worker;
struct helper_worker;

struct helper_job {
	struct mpsc_node node;			/* first: the result queue */
	struct helper_worker *hw;
	void (*run)(struct helper_job *job);	/* on a helper thread */
	void (*done)(struct helper_job *job);	/* on the submitting worker */
};

struct helper_thread;

struct helper_pool {
	const char *name;
	unsigned threads;			/* 0: one per online CPU */
	pthread_mutex_t start_lock;		/* the first submit only */
	_Atomic(struct helper_thread *) thread;	/* set once they run */
	unsigned count;
	_Atomic unsigned next;			/* round-robin */
};

#define HELPER_POOL_INIT(pool_name, thread_count) { \
	.name = (pool_name), .threads = (thread_count), \
	.start_lock = PTHREAD_MUTEX_INITIALIZER }

/* helper_worker_new - w's result queue and its eventfd poll; NULL
 * (logged) when no eventfd can be made. */
struct helper_worker *helper_worker_new(struct worker *w);

/* helper_worker_free - accepts NULL, returns NULL. */
struct helper_worker *helper_worker_free(struct helper_worker *hw);

/* helper_submit - queue job on pool (starting its threads the first
 * time); job->done runs later on hw's worker. */
void helper_submit(struct helper_pool *pool, struct helper_worker *hw, struct helper_job *job);

/* helper_submit_to - as helper_submit, on thread key % (pool's threads):
 * every job with one key runs on one thread, one after another. For
 * state that must never be used by two threads at once (TLS handshakes
 * of one worker's configs: conn.c). */
void helper_submit_to(struct helper_pool *pool, struct helper_worker *hw, struct helper_job *job,
		      unsigned key);

#endif
