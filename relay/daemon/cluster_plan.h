/*
 * cluster_plan - the pure decisions of the cluster (docs/CLUSTER.md): the
 * config's Redis address and node name, the local share of a limit while
 * Redis is down, a fixed window's share of a rate, how many rate tokens
 * and connection leases a node asks for, and the reconnect backoff.
 * No I/O, no clock: every input is an argument, so each is a table test
 * (tests/unit/test_cluster.c).
 *
 *   cluster_address_parse("127.0.0.1:6379", host, sizeof(host), &port)
 *   cluster_fallback_interval(interval_us, nodes)   a rate's share
 *   cluster_fallback_max(max, nodes)                max_connections' share
 *   cluster_window_cap(window, window_us, interval_us)   tokens in a window
 *   cluster_credit_request(credits, batch)          tokens to ask for
 *   cluster_lease_target(open, max, wanted)         leases to hold
 *   cluster_backoff_next(current_ms, max_ms)
 */
#ifndef RINGMAIL_CLUSTER_PLAN_H
#define RINGMAIL_CLUSTER_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* cluster_address_parse - "host:port", "[v6]:port"; 0, or -EINVAL. */
int cluster_address_parse(const char *text, char *host, size_t hostlen, int *port);

/* cluster_name_valid - 1 to 63 of [A-Za-z0-9._-] (a part of Redis keys
 * and of lease members "node:index"). */
bool cluster_name_valid(const char *name);

/* cluster_password_read - path's first line (without its newline) into a
 * new string *out; 0, or -errno with why (never the password) in err. An
 * empty first line is -EINVAL. */
int cluster_password_read(const char *path, char **out, char *err, size_t errlen);

/* cluster_fallback_interval - a rate of one token per interval_us kept by
 * each of nodes alone: one per interval_us * nodes (0 stays no limit). */
int64_t cluster_fallback_interval(int64_t interval_us, unsigned nodes);

/* cluster_fallback_max - max (0: none) split among nodes, at least 1. */
uint32_t cluster_fallback_max(uint32_t max, unsigned nodes);

/* cluster_window_cap - tokens of a rate of one per interval_us in fixed
 * window number window of window_us each: floor((w+1)W/I) - floor(wW/I),
 * so that the windows' caps add up to the rate exactly over time, even
 * when a window holds less than one token on average. */
int64_t cluster_window_cap(int64_t window, int64_t window_us, int64_t interval_us);

/* cluster_credit_request - tokens to take from Redis for a bucket whose
 * workers wanted one lately and hold credits now: up to batch when below
 * half of it (at least 1), else 0 (enough in hand). */
int64_t cluster_credit_request(int64_t credits, int64_t batch);

/* cluster_lease_target - leases a node should hold for a site: one per
 * open connection, one more when a worker waits for a slot, never over max
 * (0: no limit, none needed). */
uint32_t cluster_lease_target(uint32_t open, uint32_t max, bool wanted);

/* What a node does about one site's suspension (cluster_suspension_decide). */
enum cluster_suspension_action {
	CLUSTER_SUSPENSION_NONE,
	CLUSTER_SUSPENSION_PUBLISH,          /* SET the local one (started or grew here) */
	CLUSTER_SUSPENSION_PUBLISH_RESUME,   /* DEL: resumed here before its end */
	CLUSTER_SUSPENSION_APPLY,            /* another node's, longer than ours */
	CLUSTER_SUSPENSION_RESUME,           /* deleted by another node: resume here */
};

/* Suspensions closer than this are the same one (clocks, rounding). */
#define CLUSTER_SUSPEND_SLACK_MS 100

/* cluster_suspension_decide - local: the site's suspension end here
 * (monotonic ms; 0 or past: none), synced: that end when last published
 * or applied (0: none), remote: the end in Redis (wall-clock ms; 0: no
 * key), now and wall: the two clocks now. A local end that differs from
 * synced is news from this node (a rule, or the restored state file); a
 * synced one that vanished here was resumed here; one that vanished from
 * Redis was resumed elsewhere. For PUBLISH with a remote end already as
 * long, *write is false (nothing to SET, only synced to update). */
enum cluster_suspension_action cluster_suspension_decide(int64_t local, int64_t synced, int64_t remote, int64_t now,
							 int64_t wall, bool *write);

/* cluster_backoff_next - the wait after one more failed connect: double
 * current (100 ms at first), at most max_ms. */
int64_t cluster_backoff_next(int64_t current_ms, int64_t max_ms);

#endif
