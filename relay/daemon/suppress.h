/*
 * suppress - the suppression list of the running daemon: durable in the
 * spool directory, read by every worker without a lock, changed by one
 * owner.
 *
 *   suppress_open(spool_dir, err, n)     main thread, before the workers
 *   suppress_module                      in the module table: each worker
 *                                        gets the current snapshot
 *   e = suppress_find(w, "a@b.example")  on a worker: the entry or NULL
 *   b = suppress_batch_new();            changes, applied in order
 *   suppress_batch_add(b, ...); suppress_batch_remove(b, "a@b");
 *   suppress_submit(w, b, done, arg);    done(w, arg, result) later on w
 *
 * The model. One owner, the "suppress" helper thread (a pool of one, so
 * its jobs run one after another), holds the mutable list, appends each
 * batch to the journal (spool.dir/suppression.journal, one fdatasync per
 * batch) and folds the journal into spool.dir/suppression.csv (written
 * aside, synced, renamed) when it has grown past the list. After each
 * batch it builds an immutable snapshot (a sorted array, one allocation,
 * reference counted) and posts it to every worker's inbox; each worker
 * swaps its own pointer in its loop and drops its reference on the old
 * one, so no worker ever reads memory another thread may free, and none
 * locks or blocks: a lookup is a binary search in its own snapshot.
 * A change is seen by a worker within one pass of its loop after the
 * owner posts it; done runs when the change is durable.
 */
#ifndef RINGMAIL_SUPPRESS_H
#define RINGMAIL_SUPPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "suppression.h"
#include "worker.h"

#define SUPPRESS_FILE "suppression.csv"
#define SUPPRESS_JOURNAL "suppression.journal"

extern const struct worker_module suppress_module;

/* suppress_open - load the list from spool_dir (the file, then the
 * journal) and open the journal. 0, or -errno with why in err. */
int suppress_open(const char *spool_dir, char *err, size_t errlen);

/* suppress_find - on w's thread: address's live entry in w's snapshot,
 * or NULL. Valid until w's loop handles its inbox again. */
const struct suppression_entry *suppress_find(const struct worker *w, const char *address);

/* suppress_snapshot - w's snapshot (borrowed, same lifetime), or NULL. */
const struct suppression_snapshot *suppress_snapshot(const struct worker *w);

struct suppress_batch;

struct suppress_batch *suppress_batch_new(void);
struct suppress_batch *suppress_batch_free(struct suppress_batch *b);
/* suppress_batch_add - add or replace address's entry (copied). */
void suppress_batch_add(struct suppress_batch *b, const char *address, int64_t created_s,
			int64_t expires_s, const char *reason);
/* suppress_batch_remove - take address off the list. */
void suppress_batch_remove(struct suppress_batch *b, const char *address);
size_t suppress_batch_count(const struct suppress_batch *b);

/* suppress_batch_from_cluster - b came from another node (through the
 * cluster, relay/cluster): applied like any batch, not told to the
 * observer again. */
void suppress_batch_from_cluster(struct suppress_batch *b);

/* suppress_observer_fn - on the owner thread, once per change a batch
 * made (not for batches from the cluster): remove false with line an
 * entry's CSV (suppression_csv_format, with its newline), remove true with
 * line the address. suppress_observe - set it (NULL: none), before the
 * workers start or at any time (an atomic pointer). */
typedef void suppress_observer_fn(bool remove, const char *line);
void suppress_observe(suppress_observer_fn *fn);

/* suppress_done_fn - on the submitting worker: result 0 or -errno (the
 * journal could not be written: the change holds until a restart);
 * changed = adds that were valid plus removes that found an entry. */
typedef void suppress_done_fn(struct worker *w, void *arg, int result, size_t changed);

/* suppress_submit - hand b to the owner (b is the owner's from now on).
 * done may be NULL. */
void suppress_submit(struct worker *w, struct suppress_batch *b, suppress_done_fn *done, void *arg);

#endif
