/*
 * cluster - several ringmaild as one: the shaping state that must be
 * global lives in Redis, kept by one thread per daemon (docs/CLUSTER.md).
 *
 *   cluster_start(cfg, workers, count)   main thread, after the workers start;
 *                                        0 and nothing when cluster.redis is ""
 *   cluster_stop()                       at exit: gives back its leases
 *   cluster_status_render(&buf, json)    ringmailctl cluster status (any thread)
 *   cluster_metrics_render(&buf)         the metrics endpoint (any thread)
 *
 * The thread owns the Redis connection (relay/cluster/redis_conn.c); no
 * worker ever waits for Redis. Each pass (CLUSTER_TICK_MS) it takes rate
 * tokens in batches for the buckets workers drew from lately and hands
 * them to cluster_state's credits, keeps this node's connection leases at
 * what its workers use (plus one when one waits), and every
 * cluster.poll_interval reads and writes the shared suspensions. All of a
 * pass is one pipelined round trip (two when it writes suspensions).
 * Redis down, slow (over cluster.timeout) or refusing: the node goes to
 * fallback (cluster_state.h: local limits divided by cluster.nodes), says
 * so once in the log and in metrics, and reconnects with a doubling
 * backoff up to cluster.reconnect_max.
 */
#ifndef RINGMAIL_CLUSTER_H
#define RINGMAIL_CLUSTER_H

#include <stdbool.h>

#include "buf.h"
#include "config.h"
#include "worker.h"

#define CLUSTER_TICK_MS 10
/* Rate tokens are counted in Redis per window of this length. */
#define CLUSTER_WINDOW_MS 1000
/* A bucket counts as wanted this long after a worker last drew from it. */
#define CLUSTER_DEMAND_MS 2000

/* cluster_start - copy cfg's cluster settings (a change needs a restart)
 * and start the thread; workers is the array of count + 1 workers. 0, or
 * -errno. */
int cluster_start(const struct config *cfg, struct worker *workers, unsigned count);
void cluster_stop(void);
bool cluster_running(void);

int cluster_status_render(struct buf *out, bool json);
int cluster_metrics_render(struct buf *out);

#endif
