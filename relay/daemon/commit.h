/*
 * commit - group commit of a worker's spool shard through its ring.
 *
 * Callers append records (a message for a session waiting to say 250, an
 * outcome of a delivery) and register a waiter. Once per loop pass, before
 * the worker sleeps, everything appended since the last batch is written
 * and synced with one linked write + fdatasync in the ring; when the sync
 * completes every waiter of that batch hears the result: 0 (durable) or
 * -errno (nothing of the batch is durable: ENOSPC, EIO ...).
 *
 *   struct commit_waiter { ...; void (*done)(struct commit_waiter *, int) };
 *   rc = commit_message(w, &msg, &waiter);   // -errno now, or done() later
 *
 * A waiter must stay allocated until done() runs; a waiter whose owner goes
 * away sets done to NULL instead of unlinking itself.
 */
#ifndef RINGMAIL_COMMIT_H
#define RINGMAIL_COMMIT_H

#include <stdint.h>

#include "spool_record.h"
#include "spool_shard.h"
#include "worker.h"

struct commit_waiter {
	struct commit_waiter *next;
	void (*done)(struct commit_waiter *waiter, int result);
};

/* Histograms (per bucket, not cumulative): batch size in records, bucket
 * i holding sizes up to 2^i, the last everything larger; commit latency
 * (write + fdatasync, submit to completion), bucket i up to 125 us << i,
 * the last everything slower. */
#define COMMIT_BATCH_BUCKETS 10            /* <= 1, 2, 4 ... 256, +Inf */
#define COMMIT_SYNC_BUCKETS 12             /* <= 125us, 250us ... 128ms, +Inf */

struct commit_stats {
	uint64_t batches;
	uint64_t records;
	uint64_t failures;
	uint64_t max_batch;
	uint64_t batch_hist[COMMIT_BATCH_BUCKETS];
	uint64_t sync_hist[COMMIT_SYNC_BUCKETS];
	uint64_t sync_sum_us;
};

/* commit_hist_bucket - the bucket of value in a histogram of n buckets
 * whose bound i is base << i (the last bucket is unbounded). */
static inline unsigned commit_hist_bucket(uint64_t value, uint64_t base, unsigned n)
{
	unsigned i = 0;
	while (i + 1 < n && value > (base << i))
		i++;
	return i;
}

/* commit_module - on each SMTP worker: init opens the worker's shard
 * (blocking; at start) and hooks the flush into the loop; busy while a
 * batch is pending or in flight (the worker must not exit); exit closes the
 * shard (a batch in flight is forgotten). */
extern const struct worker_module commit_module;

/* commit_message - append a message; waiter->done(result) once its batch
 * is durable or failed. Returns 0, or -errno when it could not even be
 * appended (waiter not called). */
int commit_message(struct worker *w, const struct spool_message *msg, struct commit_waiter *waiter);

/* commit_outcome - append a recipient outcome; waiter may be NULL. */
int commit_outcome(struct worker *w, const struct spool_outcome *outcome, struct commit_waiter *waiter);

/* commit_shard - the worker's shard (for queue ids and reads). */
struct spool_shard *commit_shard(struct worker *w);

void commit_get_stats(const struct worker *w, struct commit_stats *out);

#endif
