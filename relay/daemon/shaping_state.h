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
 * Slots are never reused or removed (at most SHAPING_MAX_SITES names per
 * run): a reload that drops a site leaves its slot idle, one that keeps it
 * keeps its suspension. Every field is atomic; a name is written once
 * before its slot is published.
 */
#ifndef RINGMAIL_SHAPING_STATE_H
#define RINGMAIL_SHAPING_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "shaping.h"

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
/* shaping_state_resume - not suspended from now on; true if it was. */
bool shaping_state_resume(unsigned slot, int64_t now_ms);
/* shaping_state_suspensions - how many suspensions the slot has had. */
uint64_t shaping_state_suspensions(unsigned slot);

#endif
