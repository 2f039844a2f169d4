/*
 * shaping_state - the live state of the shaping sites, shared by every
 * worker without a lock: per site name (process-wide, as sites span
 * domains owned by different workers), until when it is suspended.
 *
 *   slot = shaping_state_slot("gmail");     main thread, at config load
 *   shaping_state_suspend(slot, until_ms);   any worker (monotonic ms)
 *   until = shaping_state_until(slot);       any thread; 0 or past: not suspended
 *   shaping_state_resume(slot);              the operator
 *
 *   shaping_state_connection_acquire(slot, max)   a connection opens (false: max reached)
 *   shaping_state_connection_release(slot)        it closed
 *   token_bucket_take(shaping_state_bucket(slot, SHAPING_BUCKET_MESSAGE), ...)
 *   shaping_state_lower(slot, kind, value, until_ms)   a "lower" rule
 *
 * Slots are never reused or removed (at most 8192 names per run: sites,
 * domain entries, "site/source" pairs of per_source limits and
 * "source:NAME" suspensions of egress sources): a reload that drops a
 * site leaves its slot idle, one that keeps it keeps its suspension. Every field is atomic; a name is written once
 * before its slot is published.
 */
#ifndef RINGMAIL_SHAPING_STATE_H
#define RINGMAIL_SHAPING_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "shaping.h"
#include "token_bucket.h"

enum shaping_bucket {
	SHAPING_BUCKET_MESSAGE,
	SHAPING_BUCKET_CONNECTION,
	SHAPING_BUCKET_COUNT
};

/* shaping_state_slot - the slot of name, made on first use; -1 when the
 * table is full. Only one thread may call it at a time (config loads). */
int shaping_state_slot(const char *name);

/* shaping_state_count - slots made so far; shaping_state_name - a slot's. */
size_t shaping_state_count(void);
const char *shaping_state_name(unsigned slot);

/* shaping_state_suspend - suspended until at least until_ms; returns true
 * when this call started or extended the suspension. */
bool shaping_state_suspend(unsigned slot, int64_t until_ms);
int64_t shaping_state_until(unsigned slot);
/* shaping_state_resume - not suspended (nor lowered) from now on; true if
 * it was either. */
bool shaping_state_resume(unsigned slot, int64_t now_ms);
/* shaping_state_suspensions - how many suspensions the slot has had. */
uint64_t shaping_state_suspensions(unsigned slot);

/* shaping_state_connection_acquire - one more connection of the slot, when
 * fewer than max (0: no limit) are open; false (nothing counted) when not.
 * Every open connection is counted, limited or not, for the status. */
bool shaping_state_connection_acquire(unsigned slot, uint32_t max);
void shaping_state_connection_release(unsigned slot);
uint32_t shaping_state_connections(unsigned slot);

/* shaping_state_denied - a worker waits for a connection of the slot (at
 * now_ms); shaping_state_wanted - did one within the last second? A
 * session that would go idle quits instead, freeing its slot. */
void shaping_state_denied(unsigned slot, int64_t now_ms);
bool shaping_state_wanted(unsigned slot, int64_t now_ms);

/* shaping_state_take - a token of the slot's bucket b at rate r, and in
 * a cluster a credit from Redis too (cluster_state.h); false with the
 * wait when either is missing (nothing taken). shaping_state_refund -
 * give back a token taken and not used. */
bool shaping_state_take(unsigned slot, enum shaping_bucket b, const struct token_bucket_rate *r, int64_t now_us,
			int64_t *wait_us);
void shaping_state_refund(unsigned slot, enum shaping_bucket b, const struct token_bucket_rate *r);

/* shaping_state_bucket - the slot's token bucket (token_bucket.h; times in
 * monotonic microseconds). */
_Atomic int64_t *shaping_state_bucket(unsigned slot, enum shaping_bucket b);

/* shaping_state_lower - a "lower" rule: limit kind is value (a rate's
 * interval in us, or a connection count) until until_ms; true when this
 * call started it (not running already). shaping_state_lowered - the value
 * while it runs (true), else false. */
bool shaping_state_lower(unsigned slot, enum shaping_limit_kind kind, int64_t value, int64_t until_ms, int64_t now_ms);
bool shaping_state_lowered(unsigned slot, enum shaping_limit_kind kind, int64_t now_ms, int64_t *value,
			   int64_t *until_ms);
/* shaping_state_rate - site's (a site's or domain entry's, at its slot)
 * rate of kind (a rate kind) as a bucket rate, or the lowered one while a
 * "lower" runs and is slower. shaping_state_max_connections - the same for
 * max_connections (0: none). */
struct token_bucket_rate shaping_state_rate(const struct shaping_site *site, enum shaping_limit_kind kind,
					    int64_t now_ms);
uint32_t shaping_state_max_connections(const struct shaping_site *site, int64_t now_ms);

/* Egress sources' warm-up counts, process-wide like the sites': per
 * source name a slot (made at config load, never removed), with the UTC
 * day and the messages sent that day in one atomic word. */
int shaping_state_source_slot(const char *name);
/* shaping_state_source_take - one message of the source on day, unless
 * limit (0: none) are sent already that day; shaping_state_source_sent -
 * how many that day. shaping_state_source_full - would a take fail? */
bool shaping_state_source_take(unsigned slot, int64_t day, uint32_t limit);
uint32_t shaping_state_source_sent(unsigned slot, int64_t day);
bool shaping_state_source_full(unsigned slot, int64_t day, uint32_t limit);

/* shaping_state_lowerings - how many "lower" actions the slot has had. */
uint64_t shaping_state_lowerings(unsigned slot);

/* Durable suspensions and lowerings (spool.dir/shaping.state): every
 * change (a suspend or lower that started, a resume) bumps the generation;
 * the main thread saves the file when it moved (shaping_state_save: a
 * temporary file, fsync, rename), and restores it at start, before the
 * workers (shaping_state_restore: entries that ended are dropped; times
 * go to the file as wall-clock ms and come back as monotonic ones). Both
 * return 0 or -errno (restore: -ENOENT when there is no file, -EINVAL with
 * the line in err for a bad one). */
uint64_t shaping_state_generation(void);
int shaping_state_save(const char *path, int64_t now_ms, int64_t wall_now_ms);
int shaping_state_restore(const char *path, int64_t now_ms, int64_t wall_now_ms, size_t *restored, char *err,
			  size_t errlen);

#endif
