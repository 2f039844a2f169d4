/*
 * shaping_state - process-wide site suspensions; see shaping_state.h.
 */
#include "shaping_state.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

struct site_state {
	char name[SHAPING_NAME_MAX];
	_Atomic int64_t until_ms;
	_Atomic uint64_t suspensions;
};

static struct site_state states[SHAPING_MAX_SITES];
static _Atomic size_t state_count;

int shaping_state_slot(const char *name)
{
	size_t n = atomic_load_explicit(&state_count, memory_order_acquire);

	for (size_t i = 0; i < n; i++)
		if (strcmp(states[i].name, name) == 0)
			return (int)i;
	if (n == SHAPING_MAX_SITES)
		return -1;
	snprintf(states[n].name, sizeof(states[n].name), "%s", name);
	atomic_store_explicit(&state_count, n + 1, memory_order_release);
	return (int)n;
}

size_t shaping_state_count(void)
{
	return atomic_load_explicit(&state_count, memory_order_acquire);
}

const char *shaping_state_name(unsigned slot)
{
	return slot < shaping_state_count() ? states[slot].name : "";
}

bool shaping_state_suspend(unsigned slot, int64_t until_ms)
{
	int64_t old = atomic_load_explicit(&states[slot].until_ms, memory_order_relaxed);

	while (old < until_ms) {
		if (atomic_compare_exchange_weak_explicit(&states[slot].until_ms, &old, until_ms,
							  memory_order_relaxed, memory_order_relaxed)) {
			atomic_fetch_add_explicit(&states[slot].suspensions, 1, memory_order_relaxed);
			return true;
		}
	}
	return false;
}

int64_t shaping_state_until(unsigned slot)
{
	return atomic_load_explicit(&states[slot].until_ms, memory_order_relaxed);
}

bool shaping_state_resume(unsigned slot, int64_t now_ms)
{
	int64_t old = atomic_exchange_explicit(&states[slot].until_ms, 0, memory_order_relaxed);

	return old > now_ms;
}

uint64_t shaping_state_suspensions(unsigned slot)
{
	return atomic_load_explicit(&states[slot].suspensions, memory_order_relaxed);
}
