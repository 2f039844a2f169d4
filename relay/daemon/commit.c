/*
 * commit - a worker's group commit; see commit.h.
 *
 * Batch life: records are appended to the shard's pending buffer and their
 * waiters to `next`. The before-sleep hook starts a batch when none is in
 * flight: spool_shard_flush_begin() hands over one contiguous write, the
 * waiters move to `inflight`, and one write with RWF_DSYNC goes into the
 * ring: the kernel syncs the written range (data, and the size when it
 * grew) before it completes, the durability of write + fdatasync in one
 * request. It was a write linked to an fdatasync: both went to io-wq, two
 * hand-offs per batch where one does (issue 23). Its completion ends the
 * batch; a short write counts as -EIO. With spool.sync off it is a plain
 * write.
 *
 * The shard's blocking chores (the spare segment, deleting dead segments,
 * compaction's reads) run on the "spool" helper pool, one at a time per
 * shard, taken in the same hook: a rotation on the worker is then a
 * pointer swap.
 */
#include "commit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>         /* RWF_DSYNC */
#include <time.h>

#include "helper.h"
#include "log.h"
#include "vg.h"
#include "xalloc.h"

/* After a failed batch, the next waits this long (the outcomes of the failed
 * one are queued again, so without a pause a full disk would spin the loop). */
#define COMMIT_FAILURE_PAUSE_MS 100

struct commit {
	struct spool_shard *shard;
	struct commit_waiter *next, **next_tail;
	struct commit_waiter *inflight;
	struct ring_op write_op;
	size_t write_len;
	int write_result;
	bool sync;
	unsigned outstanding;            /* 1 while a batch's write is out */
	size_t inflight_records, next_records;
	int64_t started_ms;
	int64_t started_us;              /* CLOCK_MONOTONIC: latency histogram */
	int64_t failed_until_ms;         /* after a failed batch: rest until then */
	struct commit_stats stats;
	struct helper_worker *helpers;   /* the chores' results */
	struct commit_chore *chore;      /* out on a helper, or NULL */
};

/* A shard's chore on its way through the helper pool. */
struct commit_chore {
	struct helper_job job;           /* first */
	struct commit *c;
	struct spool_chore *chore;
};

static struct helper_pool spool_pool = HELPER_POOL_INIT("spool", 0);

static struct commit *commit_of(const struct worker *w)
{
	return w->commit;
}

static void commit_add_waiter(struct commit *c, struct commit_waiter *waiter)
{
	c->next_records++;
	if (waiter == NULL)
		return;
	waiter->next = NULL;
	*c->next_tail = waiter;
	c->next_tail = &waiter->next;
}

static int64_t monotonic_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* commit_batch_end - both completions are in: tell every waiter. */
static void commit_batch_end(struct worker *w, struct commit *c, int result)
{
	struct commit_waiter *list = c->inflight;

	spool_shard_flush_end(c->shard, result);
	c->inflight = NULL;
	c->stats.batches++;
	c->stats.records += c->inflight_records;
	if (c->inflight_records > c->stats.max_batch)
		c->stats.max_batch = c->inflight_records;
	c->stats.batch_hist[commit_hist_bucket(c->inflight_records, 1, COMMIT_BATCH_BUCKETS)]++;
	uint64_t us = (uint64_t)(monotonic_us() - c->started_us);
	c->stats.sync_hist[commit_hist_bucket(us, 125, COMMIT_SYNC_BUCKETS)]++;
	c->stats.sync_sum_us += us;
	if (result < 0) {
		c->failed_until_ms = w->now_ms + COMMIT_FAILURE_PAUSE_MS;
		c->stats.failures++;
		log_error("spool_commit", "worker=%u records=%zu error=\"%s\"", w->id,
			  c->inflight_records, strerror(-result));
	}
	log_debug("spool_commit", "worker=%u records=%zu ms=%lld", w->id, c->inflight_records,
		  (long long)(w->now_ms - c->started_ms));
	c->inflight_records = 0;
	while (list != NULL) {
		struct commit_waiter *next = list->next;
		if (list->done != NULL)
			list->done(list, result);
		list = next;
	}
}

static void commit_write_complete(struct worker *w, struct ring_op *op, const struct io_uring_cqe *cqe)
{
	struct commit *c = container_of(op, struct commit, write_op);

	if (cqe->res < 0)
		c->write_result = cqe->res;
	else if ((size_t)cqe->res != c->write_len)
		c->write_result = -EIO;
	else
		c->write_result = 0;
	c->outstanding = 0;
	commit_batch_end(w, c, c->write_result);
}

static void commit_chore_run(struct helper_job *job)
{
	spool_chore_run(((struct commit_chore *)job)->chore);
}

static void commit_chore_done(struct helper_job *job)
{
	struct commit_chore *cc = (struct commit_chore *)job;
	struct commit *c = cc->c;

	spool_shard_chore_done(c->shard, cc->chore);
	c->chore = NULL;
	free(cc);
}

/* commit_chores - hand the shard's next chore to a helper, if one is due
 * and none is out. The done callback's wake-up brings the next pass. */
static void commit_chores(struct commit *c)
{
	if (c->chore != NULL || c->helpers == NULL)
		return;
	struct spool_chore *chore = spool_shard_chore_take(c->shard);
	if (chore == NULL)
		return;
	struct commit_chore *cc = xcalloc(1, sizeof(*cc));
	cc->c = c;
	cc->chore = chore;
	cc->job.run = commit_chore_run;
	cc->job.done = commit_chore_done;
	c->chore = cc;
	helper_submit(&spool_pool, c->helpers, &cc->job);
}

/* commit_flush - the before-sleep hook: start a batch if one is due. */
static void commit_flush(struct worker *w, void *arg)
{
	struct commit *c = arg;
	struct spool_flush f;

	commit_chores(c);
	if (c->outstanding > 0)
		return;
	if (w->now_ms < c->failed_until_ms) {
		/* The disk just failed (full?): retrying every pass would spin. */
		if (c->failed_until_ms < w->wake_at_ms)
			w->wake_at_ms = c->failed_until_ms;
		return;
	}
	if (!spool_shard_flush_begin(c->shard, &f)) {
		/* Records pending but no batch: the segment rotation failed.
		 * Come back in a second rather than when some unrelated event
		 * wakes the loop (the waiting sessions would hang, and so would
		 * a stopping worker). */
		if (spool_shard_pending(c->shard) > 0 && w->now_ms + 1000 < w->wake_at_ms)
			w->wake_at_ms = w->now_ms + 1000;
		return;
	}
	c->inflight = c->next;
	c->next = NULL;
	c->next_tail = &c->next;
	c->inflight_records = c->next_records;
	c->next_records = 0;
	c->write_len = f.len;
	c->write_result = 0;
	c->started_ms = w->now_ms;
	c->started_us = monotonic_us();

	struct io_uring_sqe *sqe = worker_sqe(w);
	vg_kernel_reads(f.data, f.len);
	io_uring_prep_write(sqe, f.fd, f.data, (unsigned)f.len, f.offset);
	if (f.sync && w->cfg->spool_sync)
		sqe->rw_flags = RWF_DSYNC;
	io_uring_sqe_set_data(sqe, &c->write_op);
	c->outstanding = 1;
}

static int commit_worker_init(struct worker *w)
{
	struct spool_options opt;

	if (w->role != WORKER_ROLE_SMTP)
		return 0;          /* the local worker has no shard */
	struct commit *c = xcalloc(1, sizeof(*c));
	memset(&opt, 0, sizeof(opt));
	opt.segment_size = (uint64_t)w->cfg->spool_segment_size;
	opt.preallocate = (uint64_t)w->cfg->spool_preallocate;
	opt.no_sync = !w->cfg->spool_sync;
	c->helpers = helper_worker_new(w);
	/* Without a result path (no eventfd), rotations block as before. */
	opt.background_chores = c->helpers != NULL;
	int rc = spool_shard_open(w->cfg->spool_dir, w->id, &opt, &c->shard);
	if (rc < 0) {
		log_error("spool_open", "worker=%u dir=%s error=\"%s\"", w->id, w->cfg->spool_dir,
			  strerror(-rc));
		helper_worker_free(c->helpers);
		free(c);
		return rc;
	}
	c->next_tail = &c->next;
	c->write_op.complete = commit_write_complete;
	w->commit = c;
	worker_add_hook(w, commit_flush, c);
	return 0;
}

static void commit_worker_exit(struct worker *w)
{
	struct commit *c = commit_of(w);

	if (c == NULL)
		return;
	/* busy() kept the worker until its chore came back. */
	spool_shard_close(c->shard);
	helper_worker_free(c->helpers);
	free(c);
	w->commit = NULL;
}

int commit_message(struct worker *w, const struct spool_message *msg, struct commit_waiter *waiter)
{
	struct commit *c = commit_of(w);
	int rc = spool_shard_append_message(c->shard, msg);

	if (rc < 0)
		return rc;
	commit_add_waiter(c, waiter);
	return 0;
}

int commit_outcome(struct worker *w, const struct spool_outcome *outcome, struct commit_waiter *waiter)
{
	struct commit *c = commit_of(w);
	int rc = spool_shard_append_outcome(c->shard, outcome);

	if (rc < 0)
		return rc;
	commit_add_waiter(c, waiter);
	return 0;
}

static bool commit_busy(const struct worker *w)
{
	const struct commit *c = commit_of(w);

	return c != NULL && (c->outstanding > 0 || spool_shard_pending(c->shard) > 0 ||
			     c->chore != NULL);
}

struct spool_shard *commit_shard(struct worker *w)
{
	return commit_of(w)->shard;
}

void commit_get_stats(const struct worker *w, struct commit_stats *out)
{
	*out = commit_of(w)->stats;
}

const struct worker_module commit_module = {
	.name = "commit",
	.init = commit_worker_init,
	.busy = commit_busy,
	.exit = commit_worker_exit,
};
