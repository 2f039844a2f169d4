/*
 * spool_recover - find every live message of a spool directory after a
 * restart or crash.
 *
 *   int n = spool_recover("/var/spool/ringmail", workers, on_message, ctx);
 *
 * Scans every <spool_dir>/w<N>/ (also N >= worker_count: those shards'
 * messages must not be lost; the daemon re-homes them, see docs/SPOOL.md),
 * oldest segment first, and calls fn once per live message with its
 * location, decoded envelope and body (borrowed for the call) and per-
 * recipient state. Read-only: it truncates nothing (spool_shard_open() cuts
 * torn tails of the shards it opens for writing). A daemon that opens its
 * shards first can use spool_shard_foreach_live() instead and scan once.
 */
#ifndef RINGMAIL_SPOOL_RECOVER_H
#define RINGMAIL_SPOOL_RECOVER_H

#include "spool_shard.h"

/* spool_recover - returns the number of live messages reported, fn's
 * non-zero value if it stopped the scan, or -errno. A missing spool_dir
 * holds no messages (returns 0). */
int spool_recover(const char *spool_dir, unsigned worker_count,
		  spool_live_fn fn, void *ctx);

/* spool_list_shards - sorted worker ids that have a w<N> directory; *ids
 * is malloc'd (caller frees). Returns the count or -errno. */
int spool_list_shards(const char *spool_dir, unsigned **ids);

/* spool_remove_shard - delete the segments and the w<N> directory of a
 * shard whose messages were re-homed (after their batch committed), then
 * fsync spool_dir. Blocking. Returns 0 or -errno. */
int spool_remove_shard(const char *spool_dir, unsigned worker_id);

#endif
