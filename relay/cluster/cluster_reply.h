/*
 * cluster_reply - the cluster's Redis answers decoded, pure (no I/O):
 * hiredis's reply trees in, checked numbers out. Anything of the wrong
 * shape is -EPROTO, never a crash (tests/unit/test_cluster.c feeds them
 * RESP bytes through hiredis's reader).
 *
 *   cluster_reply_rate(r, &answer)            the rate script's {granted, cap, used}
 *   cluster_reply_lease(r, &held, text, n)    the lease script's {held, members...}
 *   cluster_reply_suspension(r, &until)       one MGET element: nil (0) or wall ms
 */
#ifndef RINGMAIL_CLUSTER_REPLY_H
#define RINGMAIL_CLUSTER_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

struct cluster_rate_answer {
	int64_t granted;     /* tokens for this node now, 0..asked */
	int64_t cap;         /* the window's tokens for every node together */
	int64_t used;        /* taken in the window, this grant included */
};

/* cluster_reply_rate - 0, or -EPROTO (not three integers, negative ones,
 * or granted over the cap). */
int cluster_reply_rate(const redisReply *r, struct cluster_rate_answer *out);

/* cluster_reply_lease - the leases held, and holders as "node=2 other=1"
 * (members "node:i" counted per node, in the set's order; cut to fit n).
 * 0, or -EPROTO. */
int cluster_reply_lease(const redisReply *r, uint32_t *held, char *holders, size_t n);

/* cluster_reply_suspension - nil: 0 in *until_wall_ms; a decimal string:
 * its value (> 0); 0 either way, else -EPROTO. */
int cluster_reply_suspension(const redisReply *r, int64_t *until_wall_ms);

/* cluster_reply_stream_entry - one entry of an XRANGE answer, [id,
 * [field, value, ...]], with the fields node, op ("+" or "-") and line:
 * pointers into r. 0, or -EPROTO (a missing field, another shape). */
struct cluster_stream_entry {
	const char *id, *node, *op, *line;
};
int cluster_reply_stream_entry(const redisReply *r, struct cluster_stream_entry *out);

#endif
