/*
 * cluster_state - what the workers see of the cluster (docs/CLUSTER.md):
 * a mode, and per shaping state slot the rate tokens ("credits") and the
 * connection leases the cluster thread took from Redis for this node.
 * Every field is an atomic word: workers only read and count down; the
 * cluster thread (relay/cluster/cluster.c) fills them. No lock, no
 * syscall, nothing of Redis on a message's path.
 *
 *   worker, in shaping_state.c's limits:
 *     if (!cluster_state_take(slot, bucket, interval_us, now_ms, &wait_us))  no token yet
 *     cluster_state_refund(slot, bucket)          a token taken and not used
 *     interval = cluster_state_scale_interval(interval)     the fallback share
 *     max = cluster_state_max_connections(slot, max)        the fallback share
 *     cluster_state_lease_allows(slot, open)      below the leases held
 *   cluster thread:
 *     cluster_state_set_mode(CLUSTER_SHARED or CLUSTER_FALLBACK)
 *     cluster_state_demand(slot, bucket, &interval_us, &wanted_ms)  what workers asked
 *     cluster_state_grant(slot, bucket, n)        tokens from Redis
 *     cluster_state_set_leases(slot, n)
 *
 * Modes: CLUSTER_OFF (no cluster.redis: every call is a no-op and every
 * limit the configured one), CLUSTER_SHARED (Redis answers: a rate token
 * needs a credit as well as the local bucket's token; a connection needs
 * a lease), CLUSTER_FALLBACK (Redis down or slow: no credits or leases,
 * rates and max_connections divided by cluster.nodes).
 */
#ifndef RINGMAIL_CLUSTER_STATE_H
#define RINGMAIL_CLUSTER_STATE_H

#include <stdbool.h>
#include <stdint.h>

enum cluster_mode { CLUSTER_OFF, CLUSTER_SHARED, CLUSTER_FALLBACK };

/* Buckets of a slot, as enum shaping_bucket: 0 messages, 1 connections. */
#define CLUSTER_BUCKETS 2

/* How long a worker without a credit waits before asking again: the
 * cluster thread's pass (CLUSTER_TICK_MS) brings new ones. */
#define CLUSTER_CREDIT_WAIT_US 20000

/* cluster_state_configure - at start, before the workers: a cluster of
 * nodes (the fallback share), in fallback until Redis first answers. */
void cluster_state_configure(unsigned nodes);
void cluster_state_set_mode(enum cluster_mode mode);
enum cluster_mode cluster_state_mode(void);
unsigned cluster_state_nodes(void);

/* cluster_state_take - in CLUSTER_SHARED, one credit of the slot's bucket
 * (false with *wait_us when none: the worker waits); always true in the
 * other modes. Records the rate (one token per interval_us) and that a
 * worker wanted one at now_ms, for the cluster thread. */
bool cluster_state_take(unsigned slot, unsigned bucket, int64_t interval_us, int64_t now_ms, int64_t *wait_us);
/* cluster_state_refund - a credit taken and not used goes back. */
void cluster_state_refund(unsigned slot, unsigned bucket);
/* cluster_state_scale_interval - in CLUSTER_FALLBACK the node's share of
 * a rate (the interval times cluster.nodes), else interval_us itself. */
int64_t cluster_state_scale_interval(int64_t interval_us);
/* cluster_state_max_connections - the node's max for the slot: its share
 * in CLUSTER_FALLBACK, else max itself. Records max (0: none) for the
 * cluster thread, which takes leases up to it. */
uint32_t cluster_state_max_connections(unsigned slot, uint32_t max);
/* cluster_state_lease_allows - may a connection open when open are (of a
 * slot with a max)? In CLUSTER_SHARED only below the leases held. */
bool cluster_state_lease_allows(unsigned slot, uint32_t open);

/* Cluster thread side. */
void cluster_state_demand(unsigned slot, unsigned bucket, int64_t *interval_us, int64_t *wanted_ms);
int64_t cluster_state_credits(unsigned slot, unsigned bucket);
void cluster_state_grant(unsigned slot, unsigned bucket, int64_t n);
/* cluster_state_drop_credits - every credit gone (Redis lost: they were
 * granted for windows that may be over by the time it is back). */
void cluster_state_drop_credits(void);
uint32_t cluster_state_configured_max(unsigned slot);
void cluster_state_set_leases(unsigned slot, uint32_t n);
uint32_t cluster_state_leases(unsigned slot);

#endif
