/*
 * spool_shard - one worker's durable message store: append-only segment
 * files <spool_dir>/w<N>/seg-<16 hex seq>.rms holding checksummed records
 * (spool_record.h), written by group commit.
 *
 * The shard never writes on the hot path; the worker's io_uring does:
 *
 *   spool_shard_open(dir, worker, &opt, &shard);        // blocking, startup
 *   spool_shard_new_queue_id(shard, id);
 *   spool_shard_append_message(shard, &msg);             // memory only
 *   spool_shard_append_outcome(shard, &outcome);         // memory only
 *   if (spool_shard_flush_begin(shard, &f))              // once per loop pass
 *       submit write(f.fd, f.data, f.len, f.offset) -> fdatasync (linked)
 *   spool_shard_flush_end(shard, result);                // 0: all committed
 *   spool_shard_collect(shard);                          // rare, blocking
 *   shard = spool_shard_close(shard);
 *
 * With opt.background_chores (the daemon), a rotation does no syscall at
 * all: the blocking steps of a segment's life are chores for a helper
 * thread, at most one out per shard at a time:
 *
 *   if ((ch = spool_shard_chore_take(shard)) != NULL)   // worker, each pass
 *       on a helper thread: spool_chore_run(ch);       // touches no shard
 *       then on the worker: spool_shard_chore_done(shard, ch);  // frees ch
 *
 *   - the spare: the next segment file is created (open O_EXCL, fsync of
 *     the directory) before it is needed; a rotation takes it as the new
 *     current segment. While a spare is still being made, a full segment
 *     takes the next batch too (it grows past segment_size, by what the
 *     worker writes while the helper works, typically a batch or two);
 *     only when no spare is coming (its creation failed) does a rotation
 *     create one itself, blocking, as without chores.
 *   - collection: the segments that are deletable are unlinked, the
 *     directory fsynced, their fds closed (the last close of an unlinked
 *     file frees its blocks: the slow part); then the next round.
 * Without background_chores, rotation creates the next segment and
 * collects in place, blocking (tests, tools).
 *
 * Contract of the batch: every record appended before flush_begin() is in
 * that batch; records appended while it is in flight go to the next one.
 * flush_end(0) commits the batch: its messages may be acknowledged (250),
 * its outcomes take effect in the index. flush_end(<0) commits nothing: the
 * segment is truncated back to the batch start, the caller answers 452 to
 * each session whose message was in the batch, and the batch's outcome
 * records are queued again for the next batch (they are facts that must
 * still reach the disk). Messages and outcomes are applied to the in-memory
 * index only at commit, so a segment is never deleted on the strength of an
 * outcome that is not yet on disk.
 *
 * Segment life: a segment is deleted by spool_shard_collect() when it is not
 * the current one, holds no live message (one with a non-final recipient),
 * and every older segment whose messages it holds final outcomes for is
 * already deleted (otherwise those messages would come back after a crash
 * without their outcomes). Mostly-dead segments are compacted: at each
 * rotation, the live messages of segments at least four behind the current
 * one and at most half live are copied, with their recipients' states, in
 * front of the batch being written (about a quarter of a segment, at most
 * about 4 MiB, per rotation); the copy supersedes the original, whose segment can
 * then die and be collected. With background chores the reads are a
 * chore and the copies go in front of the next batch after it is done.
 *
 * Not thread-safe: one shard belongs to one worker thread.
 */
#ifndef RINGMAIL_SPOOL_SHARD_H
#define RINGMAIL_SPOOL_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spool_record.h"

struct spool_shard;

struct spool_options {
	uint64_t segment_size;		/* rotate past this; 0 = 64 MiB */
	size_t max_record;		/* largest record; 0 = 128 MiB */
	size_t max_pending;		/* cap of a pending batch; 0 = 512 MiB */
	bool no_sync;			/* flush says sync=false (tests, bench) */
	bool read_only;			/* scan only: no mkdir, truncation, writes */
	bool background_chores;		/* spare and collection by chores */
	uint64_t preallocate;		/* the spare's first bytes written as
					 * zeros ahead (capped at segment_size);
					 * 0 = none */
};

/* Where a record lives: segment seq and byte range in that file. */
struct spool_location {
	uint64_t segment;
	uint64_t offset;
	uint32_t length;
};

/* Per-recipient state as the spool knows it. */
struct spool_rcpt_state {
	uint8_t status;			/* enum spool_status */
	uint32_t attempts;
	int64_t next_attempt;		/* unix seconds; 0 = not deferred */
};

/* One write (then fdatasync if sync) for the worker to submit. data stays
 * valid and unchanged until spool_shard_flush_end(). */
struct spool_flush {
	int fd;
	uint64_t offset;
	const uint8_t *data;
	size_t len;
	bool sync;
	uint64_t segment;		/* for logs */
};

/* A live message handed to a callback by foreach_live / spool_recover. msg
 * and state borrow memory valid only during the call. */
struct spool_recovered {
	unsigned worker_id;
	struct spool_location loc;
	const struct spool_message *msg;
	const struct spool_rcpt_state *state;	/* msg->rcpt_count entries */
	const char *reply;		/* the last deferral's reply, or NULL */
};
/* Return 0 to go on, anything else to stop (returned to the caller). */
typedef int (*spool_live_fn)(void *ctx, const struct spool_recovered *r);

/* A message read back for delivery; owns its bytes. */
struct spool_loaded {
	struct spool_message msg;	/* points into this object */
	struct spool_location loc;
	struct spool_rcpt_state *state;	/* msg.rcpt_count entries */
	struct spool_record rec;	/* private */
	uint8_t *bytes;			/* private */
};

/* spool_shard_open - open (creating dirs as needed) the shard of worker_id,
 * scan its segments to rebuild the index, truncate a torn tail of the last
 * segment. opt may be NULL. Blocking. Returns 0 or -errno. */
int spool_shard_open(const char *spool_dir, unsigned worker_id,
		     const struct spool_options *opt, struct spool_shard **out);

/* spool_shard_close - close files, free everything; returns NULL. A batch
 * still in flight is forgotten (never acknowledged). */
struct spool_shard *spool_shard_close(struct spool_shard *shard);

/* spool_shard_new_queue_id - a fresh id of 18 chars [0-9A-Z], unique across
 * workers and restarts: start time (us), worker id, counter. */
void spool_shard_new_queue_id(struct spool_shard *shard, char out[32]);

/* Encode a record into the pending batch. 0, -EINVAL (unencodable), -EFBIG
 * (over max_record), -ENOBUFS (pending batch at its cap). */
int spool_shard_append_message(struct spool_shard *shard,
			       const struct spool_message *msg);
int spool_shard_append_outcome(struct spool_shard *shard,
			       const struct spool_outcome *outcome);

/* spool_shard_append_recovered - re-home a message found by spool_recover()
 * in another shard: its MESSAGE record plus one OUTCOME per recipient that
 * is not PENDING. Same returns as append_message. On a partial failure some
 * records may be pending; the message is safe as long as the old shard is
 * removed only after this batch commits. */
int spool_shard_append_recovered(struct spool_shard *shard,
				 const struct spool_recovered *r);

/* spool_shard_pending - bytes waiting for the next batch. */
size_t spool_shard_pending(const struct spool_shard *shard);

/* spool_shard_flush_begin - if records are pending and no batch is in
 * flight, rotate the segment if due, fill f and mark the batch in flight.
 * Rotation is blocking (creat + directory fsync); if it fails the batch
 * stays pending and false is returned. */
bool spool_shard_flush_begin(struct spool_shard *shard, struct spool_flush *f);

/* spool_shard_flush_end - result of the write + sync: 0, or -errno (a short
 * write is reported by the caller as -EIO). See the contract above. */
void spool_shard_flush_end(struct spool_shard *shard, int result);

/* spool_shard_in_flight - true between flush_begin and flush_end. */
bool spool_shard_in_flight(const struct spool_shard *shard);

/* spool_shard_collect - unlink every deletable segment (see above), fsync
 * the directory between rounds so deletions happen in a safe order.
 * Blocking and rare. Returns the number removed or -errno. */
int spool_shard_collect(struct spool_shard *shard);

/* spool_shard_read_message - blocking pread + decode of a live message.
 * Returns 0, -ENOENT (unknown or dead) or -errno; *out owned by the caller,
 * released with spool_loaded_free(). */
int spool_shard_read_message(struct spool_shard *shard, const char *queue_id,
			     struct spool_loaded **out);
struct spool_loaded *spool_loaded_free(struct spool_loaded *loaded);

/* spool_shard_locate - where live message queue_id's record is now (a
 * compaction may have moved it): an fd of its segment (the shard's; valid
 * until the segment is collected at a later rotation: a read submitted to
 * io_uring before then holds its own reference), offset and length.
 * Returns 0 or -ENOENT (unknown or dead). */
int spool_shard_locate(const struct spool_shard *shard, const char *queue_id,
		       int *fd, uint64_t *offset, uint32_t *length);

/* spool_shard_states - the recipient states of live message queue_id
 * (*n of them), or NULL when the shard does not hold it. Borrowed: valid
 * until the shard next changes. */
const struct spool_rcpt_state *spool_shard_states(const struct spool_shard *shard,
						  const char *queue_id, size_t *n);

/* spool_shard_foreach_live - call fn for every committed live message, in
 * disk order (one read per segment). Returns 0, fn's non-zero value, or
 * -errno. fn may append to any shard but must not call flush_end, collect
 * or close on this one (the walk holds pointers into its index). */
int spool_shard_foreach_live(struct spool_shard *shard, spool_live_fn fn,
			     void *ctx);

/* Counters for metrics and tests. */
struct spool_shard_stats {
	size_t live_messages;
	size_t segments;
	uint64_t current_segment;
	uint64_t current_size;
	uint64_t total_size;		/* committed bytes in every segment */
	uint64_t truncated_bytes;	/* torn tail cut at open */
	uint64_t corrupt_segments;	/* scans stopped early at open */
	uint64_t rotations;		/* since open */
	uint64_t rotations_blocking;	/* made their segment in place */
	uint64_t rotations_deferred;	/* passes a full segment waited for its spare */
	uint64_t rotate_us_max;		/* the longest a rotation held the worker */
	uint64_t compactions;		/* compaction chores written (background) */
	uint64_t compacted;		/* records they copied */
};
void spool_shard_stats(const struct spool_shard *shard,
		       struct spool_shard_stats *st);

/* A chore: blocking work taken from the shard, run elsewhere. */
struct spool_chore;

/* spool_shard_chore_take - the chore due now (a spare to create, dead
 * segments to delete), or NULL: none due, or one is already out. Cheap:
 * meant for every loop pass. Only with opt.background_chores. */
struct spool_chore *spool_shard_chore_take(struct spool_shard *shard);

/* spool_chore_run - do the chore's syscalls; on any thread, touching
 * nothing of the shard (the chore carries paths and fds). */
void spool_chore_run(struct spool_chore *chore);

/* spool_shard_chore_done - apply a finished chore on the shard's thread
 * and free it. */
void spool_shard_chore_done(struct spool_shard *shard, struct spool_chore *chore);

/* spool_shard_chore_out - true while a taken chore is not done (the
 * worker must not close the shard before: the chore owns the fds of the
 * segments it deletes). */
bool spool_shard_chore_out(const struct spool_shard *shard);

/* spool_shard_segment_path - path of segment seq of this shard. */
void spool_shard_segment_path(const struct spool_shard *shard, uint64_t seq,
			      char *buf, size_t size);

#endif
