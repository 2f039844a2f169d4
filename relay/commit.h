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

struct commit_stats {
	uint64_t batches;
	uint64_t records;
	uint64_t failures;
	uint64_t max_batch;
};

/* commit_worker_init - open this worker's shard (blocking; at start) and
 * hook the flush into the loop. Returns 0 or -errno. */
int commit_worker_init(struct worker *w);

/* commit_worker_exit - close the shard; a batch in flight is forgotten. */
void commit_worker_exit(struct worker *w);

/* commit_message - append a message; waiter->done(result) once its batch
 * is durable or failed. Returns 0, or -errno when it could not even be
 * appended (waiter not called). */
int commit_message(struct worker *w, const struct spool_message *msg, struct commit_waiter *waiter);

/* commit_outcome - append a recipient outcome; waiter may be NULL. */
int commit_outcome(struct worker *w, const struct spool_outcome *outcome, struct commit_waiter *waiter);

/* commit_busy - a batch is pending or in flight (the worker must not exit). */
bool commit_busy(const struct worker *w);

/* commit_shard - the worker's shard (for queue ids and reads). */
struct spool_shard *commit_shard(struct worker *w);

void commit_get_stats(const struct worker *w, struct commit_stats *out);

#endif
