/*
 * cluster_state - the cluster's share of the shaping state, as workers
 * see it; see cluster_state.h.
 */
#include "cluster_state.h"

#include <stdatomic.h>

#include "cluster_plan.h"
#include "shaping.h"

struct cluster_slot {
	_Atomic int64_t credits[CLUSTER_BUCKETS];
	_Atomic int64_t interval_us[CLUSTER_BUCKETS];
	_Atomic int64_t wanted_ms[CLUSTER_BUCKETS];
	_Atomic uint32_t configured_max;
	_Atomic uint32_t leases;
};

static struct cluster_slot slots[SHAPING_MAX_SITES];
static _Atomic int mode = CLUSTER_OFF;
static _Atomic unsigned nodes = 1;

void cluster_state_configure(unsigned n)
{
	atomic_store(&nodes, n > 0 ? n : 1);
	atomic_store(&mode, CLUSTER_FALLBACK);
}

void cluster_state_set_mode(enum cluster_mode m)
{
	atomic_store_explicit(&mode, (int)m, memory_order_release);
}

enum cluster_mode cluster_state_mode(void)
{
	return (enum cluster_mode)atomic_load_explicit(&mode, memory_order_acquire);
}

unsigned cluster_state_nodes(void)
{
	return atomic_load_explicit(&nodes, memory_order_relaxed);
}

bool cluster_state_take(unsigned slot, unsigned bucket, int64_t interval_us, int64_t now_ms, int64_t *wait_us)
{
	if (cluster_state_mode() != CLUSTER_SHARED || interval_us == 0 || slot >= SHAPING_MAX_SITES)
		return true;
	struct cluster_slot *s = &slots[slot];
	if (atomic_load_explicit(&s->interval_us[bucket], memory_order_relaxed) != interval_us)
		atomic_store_explicit(&s->interval_us[bucket], interval_us, memory_order_relaxed);
	if (atomic_load_explicit(&s->wanted_ms[bucket], memory_order_relaxed) != now_ms)
		atomic_store_explicit(&s->wanted_ms[bucket], now_ms, memory_order_relaxed);
	int64_t old = atomic_load_explicit(&s->credits[bucket], memory_order_relaxed);
	while (old > 0)
		if (atomic_compare_exchange_weak_explicit(&s->credits[bucket], &old, old - 1, memory_order_relaxed,
							  memory_order_relaxed))
			return true;
	*wait_us = CLUSTER_CREDIT_WAIT_US;
	return false;
}

void cluster_state_refund(unsigned slot, unsigned bucket)
{
	if (cluster_state_mode() == CLUSTER_SHARED && slot < SHAPING_MAX_SITES)
		atomic_fetch_add_explicit(&slots[slot].credits[bucket], 1, memory_order_relaxed);
}

int64_t cluster_state_scale_interval(int64_t interval_us)
{
	if (cluster_state_mode() != CLUSTER_FALLBACK)
		return interval_us;
	return cluster_fallback_interval(interval_us, cluster_state_nodes());
}

uint32_t cluster_state_max_connections(unsigned slot, uint32_t max)
{
	enum cluster_mode m = cluster_state_mode();

	if (m == CLUSTER_OFF || slot >= SHAPING_MAX_SITES)
		return max;
	struct cluster_slot *s = &slots[slot];
	if (atomic_load_explicit(&s->configured_max, memory_order_relaxed) != max)
		atomic_store_explicit(&s->configured_max, max, memory_order_relaxed);
	if (max == 0)
		return 0;
	if (m == CLUSTER_FALLBACK)
		return cluster_fallback_max(max, cluster_state_nodes());
	return max;
}

bool cluster_state_lease_allows(unsigned slot, uint32_t open)
{
	if (cluster_state_mode() != CLUSTER_SHARED || slot >= SHAPING_MAX_SITES)
		return true;
	return open < atomic_load_explicit(&slots[slot].leases, memory_order_relaxed);
}

void cluster_state_demand(unsigned slot, unsigned bucket, int64_t *interval_us, int64_t *wanted_ms)
{
	*interval_us = atomic_load_explicit(&slots[slot].interval_us[bucket], memory_order_relaxed);
	*wanted_ms = atomic_load_explicit(&slots[slot].wanted_ms[bucket], memory_order_relaxed);
}

int64_t cluster_state_credits(unsigned slot, unsigned bucket)
{
	return atomic_load_explicit(&slots[slot].credits[bucket], memory_order_relaxed);
}

void cluster_state_grant(unsigned slot, unsigned bucket, int64_t n)
{
	atomic_fetch_add_explicit(&slots[slot].credits[bucket], n, memory_order_relaxed);
}

void cluster_state_drop_credits(void)
{
	for (unsigned i = 0; i < SHAPING_MAX_SITES; i++)
		for (unsigned b = 0; b < CLUSTER_BUCKETS; b++)
			atomic_store_explicit(&slots[i].credits[b], 0, memory_order_relaxed);
}

uint32_t cluster_state_configured_max(unsigned slot)
{
	return atomic_load_explicit(&slots[slot].configured_max, memory_order_relaxed);
}

void cluster_state_set_leases(unsigned slot, uint32_t n)
{
	atomic_store_explicit(&slots[slot].leases, n, memory_order_relaxed);
}

uint32_t cluster_state_leases(unsigned slot)
{
	return atomic_load_explicit(&slots[slot].leases, memory_order_relaxed);
}
