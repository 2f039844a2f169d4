/*
 * cluster - the cluster thread and its Redis keys; see cluster.h and
 * docs/CLUSTER.md.
 *
 * Keys (PREFIX is cluster.key_prefix):
 *   PREFIX rate:SITE:msg:WINDOW, ...:conn:WINDOW   tokens taken in a window
 *                                    (an integer, expires after 3 windows)
 *   PREFIX lease:SITE                sorted set of "node:i" scored by expiry (ms)
 *   PREFIX susp:SITE                 wall-clock ms the suspension ends; PX to it
 *   PREFIX suppression:log           stream of suppression changes: node, op (+ -), line
 */
#include "cluster.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster_plan.h"
#include "cluster_reply.h"
#include "cluster_state.h"
#include "delivery.h"
#include "log.h"
#include "redis_conn.h"
#include "shaping_state.h"
#include "suppress.h"
#include "suppression.h"
#include "xalloc.h"

/* KEYS[1] the bucket's key; ARGV interval_us, wanted, window_ms. Returns
 * {granted, window's cap, taken in the window after this}. The window and
 * its cap come from Redis's clock, so the nodes' clocks need not agree;
 * the cap is cluster_window_cap's formula. */
static const char rate_script[] =
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
	"local w = tonumber(ARGV[3]) * 1000\n"
	"local iv = tonumber(ARGV[1])\n"
	"local win = math.floor(now / w)\n"
	"local cap = math.floor((win + 1) * w / iv) - math.floor(win * w / iv)\n"
	"local key = KEYS[1] .. ':' .. win\n"
	"local used = tonumber(redis.call('GET', key) or '0')\n"
	"local grant = math.min(tonumber(ARGV[2]), cap - used)\n"
	"if grant < 0 then grant = 0 end\n"
	"if grant > 0 then\n"
	"  redis.call('INCRBY', key, grant)\n"
	"  redis.call('PEXPIRE', key, tonumber(ARGV[3]) * 3)\n"
	"end\n"
	"return {grant, cap, used + grant}\n";

/* KEYS[1] the site's lease set; ARGV node, target, max, ttl_ms, held
 * before. Drops expired leases, renews or adds this node's "node:0" ..
 * up to target while the set is below max, gives back the rest. Returns
 * {held, every member}. */
static const char lease_script[] =
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"local key = KEYS[1]\n"
	"redis.call('ZREMRANGEBYSCORE', key, '-inf', now)\n"
	"local target = tonumber(ARGV[2])\n"
	"local max = tonumber(ARGV[3])\n"
	"local exp = now + tonumber(ARGV[4])\n"
	"local held = 0\n"
	"for i = 0, target - 1 do\n"
	"  local m = ARGV[1] .. ':' .. i\n"
	"  if redis.call('ZSCORE', key, m) or redis.call('ZCARD', key) < max then\n"
	"    redis.call('ZADD', key, exp, m)\n"
	"    held = held + 1\n"
	"  else\n"
	"    break\n"
	"  end\n"
	"end\n"
	"local top = math.max(tonumber(ARGV[5]), target)\n"
	"for i = held, top - 1 do redis.call('ZREM', key, ARGV[1] .. ':' .. i) end\n"
	"if redis.call('ZCARD', key) > 0 then redis.call('PEXPIRE', key, tonumber(ARGV[4]) * 2) end\n"
	"local r = redis.call('ZRANGE', key, 0, -1)\n"
	"table.insert(r, 1, held)\n"
	"return r\n";

#define HOLDERS_MAX 256

/* How often a node asks again for a lease Redis refused (the site at its
 * max on every node together). */
#define LEASE_RETRY_MS 100

/* What the status shows of a slot, written by the thread under view_lock. */
struct slot_view {
	int64_t cap[CLUSTER_BUCKETS];       /* the current window's, from the last take */
	int64_t used[CLUSTER_BUCKETS];
	int64_t window_ms[CLUSTER_BUCKETS];   /* when that was (monotonic) */
	uint32_t max;
	char holders[HOLDERS_MAX];          /* "node=2 other=1" */
};

static struct cluster {
	pthread_t thread;
	_Atomic bool running, stop;
	char host[256];
	int port;
	char node[64], prefix[80], user[128];
	char *password;
	int64_t timeout_ms, reconnect_max_ms, batch, lease_ttl_ms, poll_ms;
	unsigned nodes;
	struct worker *workers;
	unsigned worker_count;

	/* the thread's own */
	struct redis_conn *conn;
	char rate_sha[48], lease_sha[48];
	int64_t backoff_ms, next_try_ms, next_poll_ms;
	bool down_logged;
	char last_error[160];
	uint32_t held[SHAPING_MAX_SITES];
	int64_t renewed_ms[SHAPING_MAX_SITES];
	int64_t lease_short_ms[SHAPING_MAX_SITES];   /* when Redis last granted fewer than asked */
	uint32_t lease_asked[SHAPING_MAX_SITES];
	int64_t synced_until[SHAPING_MAX_SITES];   /* monotonic; 0 = none */

	bool share_suppression;
	char stream_last[64];                      /* last entry read; "" = none yet */

	/* suppression changes made here, for Redis: the owner thread appends
	 * (suppress_observe), the cluster thread sends and drops them */
	pthread_mutex_t out_lock;
	char **out;
	size_t out_count, out_cap;
	_Atomic uint64_t suppression_out, suppression_in, suppression_dropped;

	/* read by other threads */
	_Atomic int up;
	_Atomic uint64_t round_trips, tokens, fallbacks, suspensions_in, resumes_in;
	pthread_mutex_t view_lock;
	struct slot_view view[SHAPING_MAX_SITES];
} cl = { .view_lock = PTHREAD_MUTEX_INITIALIZER, .out_lock = PTHREAD_MUTEX_INITIALIZER };

/* Suppression changes waiting for Redis, at most (the oldest go first). */
#define SUPPRESSION_OUT_MAX 100000
/* Changes sent or read in one pass, at most. */
#define SUPPRESSION_BATCH 256
/* The stream keeps about this many changes (XADD MAXLEN ~). */
#define SUPPRESSION_STREAM_MAX "100000"

static int64_t clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* key - PREFIX kind:SITE[:suffix] into out. */
static const char *key(char *out, size_t n, const char *kind, unsigned slot, const char *suffix)
{
	snprintf(out, n, "%s%s:%s%s%s", cl.prefix, kind, shaping_state_name(slot), suffix ? ":" : "", suffix ? suffix : "");
	return out;
}

/* ---- connection -------------------------------------------------------- */

/* went_down - Redis lost: fallback limits, said once per transition. */
static void went_down(const char *why)
{
	cl.conn = redis_conn_close(cl.conn);
	if (atomic_exchange(&cl.up, 0) == 1 || !cl.down_logged) {
		cluster_state_set_mode(CLUSTER_FALLBACK);
		cluster_state_drop_credits();
		for (unsigned i = 0; i < SHAPING_MAX_SITES; i++) {
			cluster_state_set_leases(i, 0);
			cl.held[i] = 0;
		}
		atomic_fetch_add(&cl.fallbacks, 1);
		log_warn("cluster_redis", "state=down redis=%s:%d error=\"%s\" mode=fallback nodes=%u note=\"local limits divided by cluster.nodes\"",
			 cl.host, cl.port, why, cl.nodes);
		cl.down_logged = true;
	}
	pthread_mutex_lock(&cl.view_lock);
	snprintf(cl.last_error, sizeof(cl.last_error), "%s", why);
	pthread_mutex_unlock(&cl.view_lock);
	cl.backoff_ms = cluster_backoff_next(cl.backoff_ms, cl.reconnect_max_ms);
	cl.next_try_ms = clock_ms(CLOCK_MONOTONIC) + cl.backoff_ms;
}

/* load_script - SCRIPT LOAD body into sha; 0 or -errno with why. */
static int load_script(const char *body, char *sha, size_t n, char *why, size_t whylen)
{
	const char *argv[] = { "SCRIPT", "LOAD", body };
	int rc;
	redisReply *r = redis_conn_command(cl.conn, &rc, 3, argv);

	atomic_fetch_add(&cl.round_trips, 1);
	if (r == NULL) {
		snprintf(why, whylen, "SCRIPT LOAD: %s", strerror(-rc));
		return rc;
	}
	rc = r->type == REDIS_REPLY_STRING ? 0 : -EPROTO;
	if (rc == 0)
		snprintf(sha, n, "%s", r->str);
	else
		snprintf(why, whylen, "SCRIPT LOAD: %s", r->type == REDIS_REPLY_ERROR ? r->str : "not a string");
	freeReplyObject(r);
	return rc;
}

/* try_connect - connect, AUTH, PING, load the scripts: up, or down again. */
static void try_connect(void)
{
	char why[256] = "";
	int rc;

	cl.conn = redis_conn_open(cl.host, cl.port, cl.timeout_ms, why, sizeof(why));
	if (cl.conn == NULL) {
		went_down(why);
		return;
	}
	const char *argv[3] = { "AUTH", cl.user, cl.password };
	int argc = cl.user[0] != '\0' ? 3 : 2;
	if (cl.user[0] == '\0')
		argv[1] = cl.password;
	const char *ping[] = { "PING" };
	redisReply *r = cl.password != NULL ? redis_conn_command(cl.conn, &rc, argc, argv)
					    : redis_conn_command(cl.conn, &rc, 1, ping);
	atomic_fetch_add(&cl.round_trips, 1);
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		snprintf(why, sizeof(why), "%s: %s", cl.password != NULL ? "AUTH" : "PING",
			 r == NULL ? strerror(-rc) : r->str);
		if (r != NULL)
			freeReplyObject(r);
		went_down(why);
		return;
	}
	freeReplyObject(r);
	if (load_script(rate_script, cl.rate_sha, sizeof(cl.rate_sha), why, sizeof(why)) < 0 ||
	    load_script(lease_script, cl.lease_sha, sizeof(cl.lease_sha), why, sizeof(why)) < 0) {
		went_down(why);
		return;
	}
	atomic_store(&cl.up, 1);
	cl.backoff_ms = 0;
	cl.down_logged = false;
	cl.next_poll_ms = 0;
	cluster_state_set_mode(CLUSTER_SHARED);
	log_info("cluster_redis", "state=up redis=%s:%d node=%s mode=shared", cl.host, cl.port, cl.node);
}

/* ---- one pass ---------------------------------------------------------- */

enum op_kind { OP_RATE, OP_LEASE, OP_SUSPENSIONS, OP_SUPPRESSION_ADD, OP_SUPPRESSION_READ };

struct op {
	enum op_kind kind;
	unsigned slot, bucket;
	uint32_t target;       /* OP_LEASE: leases asked for */
};

static const char *const bucket_names[CLUSTER_BUCKETS] = { "msg", "conn" };

/* queue_rate - EVALSHA the rate script for a bucket workers want. */
static int queue_rate(struct op *ops, size_t *n, unsigned slot, unsigned b, int64_t want, int64_t interval_us)
{
	char k[160], iv[24], w[24], win[24];
	const char *argv[] = { "EVALSHA", cl.rate_sha, "1", key(k, sizeof(k), "rate", slot, bucket_names[b]), iv, w, win };

	snprintf(iv, sizeof(iv), "%lld", (long long)interval_us);
	snprintf(w, sizeof(w), "%lld", (long long)want);
	snprintf(win, sizeof(win), "%d", CLUSTER_WINDOW_MS);
	if (redis_conn_append(cl.conn, 7, argv, NULL) < 0)
		return -ENOSPC;
	ops[(*n)++] = (struct op){ OP_RATE, slot, b, 0 };
	return 0;
}

/* queue_lease - EVALSHA the lease script: hold target leases of slot. */
static int queue_lease(struct op *ops, size_t *n, unsigned slot, uint32_t target, uint32_t max)
{
	char k[160], t[16], m[16], ttl[24], prev[16];
	const char *argv[] = { "EVALSHA", cl.lease_sha, "1", key(k, sizeof(k), "lease", slot, NULL), cl.node, t, m, ttl, prev };

	snprintf(t, sizeof(t), "%u", target);
	snprintf(m, sizeof(m), "%u", max);
	snprintf(ttl, sizeof(ttl), "%lld", (long long)cl.lease_ttl_ms);
	snprintf(prev, sizeof(prev), "%u", cl.held[slot]);
	if (redis_conn_append(cl.conn, 9, argv, NULL) < 0)
		return -ENOSPC;
	ops[(*n)++] = (struct op){ OP_LEASE, slot, 0, target };
	return 0;
}

/* queue_suspensions - MGET every site's suspension key. */
static int queue_suspensions(struct op *ops, size_t *n, size_t count)
{
	const char **argv = xcalloc(count + 1, sizeof(*argv));
	char (*keys)[160] = xcalloc(count, sizeof(*keys));

	argv[0] = "MGET";
	for (size_t i = 0; i < count; i++)
		argv[i + 1] = key(keys[i], sizeof(keys[i]), "susp", (unsigned)i, NULL);
	int rc = redis_conn_append(cl.conn, (int)count + 1, argv, NULL);
	free(keys);
	free(argv);
	if (rc == 0)
		ops[(*n)++] = (struct op){ OP_SUSPENSIONS, 0, 0, 0 };
	return rc;
}

/* reply_rate - the rate script's answer: credits for the workers. */
static int reply_rate(const struct op *op, const redisReply *r, int64_t now)
{
	struct cluster_rate_answer a;

	if (cluster_reply_rate(r, &a) < 0)
		return -EPROTO;
	if (a.granted > 0) {
		cluster_state_grant(op->slot, op->bucket, a.granted);
		atomic_fetch_add(&cl.tokens, (uint64_t)a.granted);
	}
	pthread_mutex_lock(&cl.view_lock);
	cl.view[op->slot].cap[op->bucket] = a.cap;
	cl.view[op->slot].used[op->bucket] = a.used;
	cl.view[op->slot].window_ms[op->bucket] = now;
	pthread_mutex_unlock(&cl.view_lock);
	return 0;
}

/* reply_lease - the lease script's answer: the leases this node holds. */
static int reply_lease(const struct op *op, const redisReply *r, int64_t now)
{
	char holders[HOLDERS_MAX];
	uint32_t held;

	if (cluster_reply_lease(r, &held, holders, sizeof(holders)) < 0)
		return -EPROTO;
	cl.held[op->slot] = held;
	cl.lease_asked[op->slot] = op->target;
	if (held < op->target)
		cl.lease_short_ms[op->slot] = now;
	cl.renewed_ms[op->slot] = now;
	cluster_state_set_leases(op->slot, held);
	pthread_mutex_lock(&cl.view_lock);
	cl.view[op->slot].max = cluster_state_configured_max(op->slot);
	memcpy(cl.view[op->slot].holders, holders, sizeof(holders));
	pthread_mutex_unlock(&cl.view_lock);
	return 0;
}

/* ---- the suppression list --------------------------------------------- */

/* suppression_changed - the observer of suppress.c, on its owner thread:
 * a change made here, queued for the stream ("+CSV" or "-address"). */
static void suppression_changed(bool remove, const char *line)
{
	size_t n = strcspn(line, "\n");
	char *copy = xmalloc(n + 2);

	copy[0] = remove ? '-' : '+';
	memcpy(copy + 1, line, n);
	copy[n + 1] = '\0';
	pthread_mutex_lock(&cl.out_lock);
	if (cl.out_count == SUPPRESSION_OUT_MAX) {
		/* Redis away too long: the oldest change goes (this node keeps it). */
		free(cl.out[0]);
		memmove(cl.out, cl.out + 1, (cl.out_count - 1) * sizeof(*cl.out));
		cl.out_count--;
		atomic_fetch_add(&cl.suppression_dropped, 1);
	}
	if (cl.out_count == cl.out_cap) {
		cl.out_cap = cl.out_cap ? cl.out_cap * 2 : 64;
		cl.out = xreallocarray(cl.out, cl.out_cap, sizeof(*cl.out));
	}
	cl.out[cl.out_count++] = copy;
	pthread_mutex_unlock(&cl.out_lock);
}

/* queue_suppression_out - XADD the oldest changes made here; how many
 * (dropped from the queue only once Redis took them). */
static size_t queue_suppression_out(struct op *ops, size_t *n)
{
	char k[160];
	size_t sent = 0;

	snprintf(k, sizeof(k), "%ssuppression:log", cl.prefix);
	pthread_mutex_lock(&cl.out_lock);
	for (; sent < cl.out_count && sent < SUPPRESSION_BATCH && *n < REDIS_CONN_MAX_PIPELINE - 8; sent++) {
		const char *c = cl.out[sent];
		const char *argv[] = { "XADD", k, "MAXLEN", "~", SUPPRESSION_STREAM_MAX, "*", "node", cl.node, "op",
				       c[0] == '-' ? "-" : "+", "line", c + 1 };
		if (redis_conn_append(cl.conn, 12, argv, NULL) < 0)
			break;
		ops[(*n)++] = (struct op){ OP_SUPPRESSION_ADD, 0, 0, 0 };
	}
	pthread_mutex_unlock(&cl.out_lock);
	return sent;
}

/* suppression_sent - the first sent changes are in Redis: drop them. */
static void suppression_sent(size_t sent)
{
	pthread_mutex_lock(&cl.out_lock);
	for (size_t i = 0; i < sent; i++)
		free(cl.out[i]);
	memmove(cl.out, cl.out + sent, (cl.out_count - sent) * sizeof(*cl.out));
	cl.out_count -= sent;
	pthread_mutex_unlock(&cl.out_lock);
	atomic_fetch_add(&cl.suppression_out, sent);
}

/* queue_suppression_read - XRANGE the changes after the last one read (at
 * the first connect: from the stream's start, so a node that starts late
 * catches up on what the stream still holds). */
static void queue_suppression_read(struct op *ops, size_t *n)
{
	char k[160], from[80], count[16];

	snprintf(k, sizeof(k), "%ssuppression:log", cl.prefix);
	if (cl.stream_last[0] != '\0')
		snprintf(from, sizeof(from), "(%s", cl.stream_last);
	else
		snprintf(from, sizeof(from), "-");
	snprintf(count, sizeof(count), "%d", SUPPRESSION_BATCH);
	const char *argv[] = { "XRANGE", k, from, "+", "COUNT", count };
	if (redis_conn_append(cl.conn, 6, argv, NULL) == 0)
		ops[(*n)++] = (struct op){ OP_SUPPRESSION_READ, 0, 0, 0 };
}

struct suppression_post {
	struct worker_post post;
	struct suppress_batch *batch;
};

static void suppression_post_arrived(struct worker *w, struct worker_post *p)
{
	struct suppression_post *sp = (struct suppression_post *)p;

	suppress_submit(w, sp->batch, NULL, NULL);      /* the owner thread applies it */
	free(sp);
}

static void suppression_post_discard(struct worker_post *p)
{
	struct suppression_post *sp = (struct suppression_post *)p;

	suppress_batch_free(sp->batch);
	free(sp);
}

/* reply_suppression_read - other nodes' changes, as one batch handed to
 * worker 0 (suppress_submit runs on a worker), marked so that the owner
 * does not send them back. */
static int reply_suppression_read(const redisReply *r)
{
	struct suppress_batch *b = NULL;

	if (r->type != REDIS_REPLY_ARRAY)
		return -EPROTO;
	for (size_t i = 0; i < r->elements; i++) {
		struct cluster_stream_entry e;
		if (cluster_reply_stream_entry(r->element[i], &e) < 0) {
			log_warn("cluster_suppression", "result=bad_entry");
			continue;
		}
		snprintf(cl.stream_last, sizeof(cl.stream_last), "%s", e.id);
		if (strcmp(e.node, cl.node) == 0)
			continue;
		if (b == NULL)
			b = suppress_batch_new();
		if (e.op[0] == '-') {
			suppress_batch_remove(b, e.line);
			continue;
		}
		char line[SUPPRESSION_LINE_MAX];
		struct suppression_entry se;
		const char *why = "";
		snprintf(line, sizeof(line), "%s", e.line);
		if (suppression_csv_parse(line, &se, &why) == 0)
			suppress_batch_add(b, se.address, se.created_s, se.expires_s, se.reason);
		else
			log_warn("cluster_suppression", "result=bad_line from=%s why=\"%s\"", e.node, why);
	}
	if (b == NULL)
		return 0;
	if (suppress_batch_count(b) == 0) {
		suppress_batch_free(b);
		return 0;
	}
	atomic_fetch_add(&cl.suppression_in, suppress_batch_count(b));
	log_info("cluster_suppression", "action=apply changes=%zu", suppress_batch_count(b));
	suppress_batch_from_cluster(b);
	struct suppression_post *sp = xcalloc(1, sizeof(*sp));
	sp->post.handle = suppression_post_arrived;
	sp->post.discard = suppression_post_discard;
	sp->batch = b;
	worker_post(NULL, &cl.workers[0], &sp->post);
	return 0;
}

/* sync_suspensions - compare every site's suspension here with the one in
 * Redis (r: the MGET's answer) and act (cluster_suspension_decide):
 * publish a local one that started or grew, delete one the operator
 * resumed here, apply one another node wrote, resume one another node
 * deleted. Queues the writes on the connection; how many. */
static size_t sync_suspensions(const redisReply *r, size_t count, int64_t now, int64_t wall)
{
	size_t writes = 0;

	for (size_t i = 0; i < count && i < r->elements; i++) {
		unsigned slot = (unsigned)i;
		int64_t local = shaping_state_until(slot), remote;
		char k[160], v[24], px[24];
		bool write;
		if (cluster_reply_suspension(r->element[i], &remote) < 0)
			continue;
		switch (cluster_suspension_decide(local, cl.synced_until[i], remote, now, wall, &write)) {
		case CLUSTER_SUSPENSION_PUBLISH:
			if (write) {
				snprintf(v, sizeof(v), "%lld", (long long)(wall + local - now));
				snprintf(px, sizeof(px), "%lld", (long long)(local - now));
				const char *argv[] = { "SET", key(k, sizeof(k), "susp", slot, NULL), v, "PX", px };
				writes += redis_conn_append(cl.conn, 5, argv, NULL) == 0;
				log_info("cluster_suspension", "action=publish site=%s for_ms=%lld", shaping_state_name(slot),
					 (long long)(local - now));
			}
			cl.synced_until[i] = local;
			break;
		case CLUSTER_SUSPENSION_PUBLISH_RESUME: {
			const char *argv[] = { "DEL", key(k, sizeof(k), "susp", slot, NULL) };
			writes += redis_conn_append(cl.conn, 2, argv, NULL) == 0;
			cl.synced_until[i] = 0;
			log_info("cluster_suspension", "action=publish_resume site=%s", shaping_state_name(slot));
			break;
		}
		case CLUSTER_SUSPENSION_APPLY:
			shaping_state_suspend(slot, now + (remote - wall));
			cl.synced_until[i] = shaping_state_until(slot);
			atomic_fetch_add(&cl.suspensions_in, 1);
			log_warn("shaping_action", "action=suspend scope=site site=%s source=cluster for_ms=%lld",
				 shaping_state_name(slot), (long long)(remote - wall));
			break;
		case CLUSTER_SUSPENSION_RESUME:
			shaping_state_resume(slot, now);
			shaping_resume_posted(cl.workers, cl.worker_count, slot);
			cl.synced_until[i] = 0;
			atomic_fetch_add(&cl.resumes_in, 1);
			log_info("shaping_action", "action=resume site=%s source=cluster", shaping_state_name(slot));
			break;
		case CLUSTER_SUSPENSION_NONE:
			break;
		}
	}
	return writes;
}

/* queue_pass - the pass's commands: rate tokens for buckets in demand,
 * leases that should change or be renewed, the suspensions when due. */
static int queue_pass(struct op *ops, size_t *n, int64_t now)
{
	size_t count = shaping_state_count();
	int rc = 0;

	for (unsigned i = 0; i < count && rc == 0; i++) {
		for (unsigned b = 0; b < CLUSTER_BUCKETS && rc == 0; b++) {
			int64_t interval, wanted;
			cluster_state_demand(i, b, &interval, &wanted);
			if (interval <= 0 || wanted == 0 || now - wanted > CLUSTER_DEMAND_MS)
				continue;
			int64_t want = cluster_credit_request(cluster_state_credits(i, b), cl.batch);
			if (want > 0)
				rc = queue_rate(ops, n, i, b, want, interval);
		}
		uint32_t max = cluster_state_configured_max(i);
		if (rc != 0 || (max == 0 && cl.held[i] == 0))
			continue;
		uint32_t target = cluster_lease_target(shaping_state_connections(i), max, shaping_state_wanted(i, now));
		/* A site at its max everywhere: ask again at most every
		 * LEASE_RETRY_MS, not every pass. */
		bool retry = target > cl.held[i] && target <= cl.lease_asked[i] && now - cl.lease_short_ms[i] < LEASE_RETRY_MS;
		if ((target != cl.held[i] && !retry) || (cl.held[i] > 0 && now - cl.renewed_ms[i] >= cl.lease_ttl_ms / 3))
			rc = queue_lease(ops, n, i, target, max);
	}
	if (rc == 0 && now >= cl.next_poll_ms) {
		if (count > 0)
			rc = queue_suspensions(ops, n, count);
		if (rc == 0 && cl.share_suppression)
			queue_suppression_read(ops, n);
		cl.next_poll_ms = now + cl.poll_ms;
	}
	return rc;
}

/* reply_error - an error reply: NOSCRIPT (Redis restarted, its script
 * cache empty) loads the scripts again; any other is Redis refusing. */
static int reply_error(const redisReply *r, char *why, size_t n)
{
	if (strncmp(r->str, "NOSCRIPT", 8) == 0) {
		if (load_script(rate_script, cl.rate_sha, sizeof(cl.rate_sha), why, n) < 0 ||
		    load_script(lease_script, cl.lease_sha, sizeof(cl.lease_sha), why, n) < 0)
			return -EIO;
		return 0;
	}
	snprintf(why, n, "%s", r->str);
	return -EIO;
}

/* cluster_pass - one pass: one pipelined round trip, and one more for
 * suspension writes; false when Redis failed (went_down has run). */
static bool cluster_pass(void)
{
	static struct op ops[REDIS_CONN_MAX_PIPELINE];
	static redisReply *replies[REDIS_CONN_MAX_PIPELINE];
	int64_t now = clock_ms(CLOCK_MONOTONIC), wall = clock_ms(CLOCK_REALTIME);
	size_t n = 0, writes = 0;
	char why[256] = "";

	queue_pass(ops, &n, now);
	size_t sent = cl.share_suppression ? queue_suppression_out(ops, &n) : 0;
	if (n == 0)
		return true;
	int rc = redis_conn_exchange(cl.conn, replies);
	atomic_fetch_add(&cl.round_trips, 1);
	if (rc < 0) {
		snprintf(why, sizeof(why), "%s", rc == -ETIMEDOUT ? "timed out (cluster.timeout)" : strerror(-rc));
		went_down(why);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		const redisReply *r = replies[i];
		if (rc == 0 && r->type == REDIS_REPLY_ERROR)
			rc = reply_error(r, why, sizeof(why));
		else if (rc == 0 && ops[i].kind == OP_RATE)
			rc = reply_rate(&ops[i], r, now);
		else if (rc == 0 && ops[i].kind == OP_LEASE)
			rc = reply_lease(&ops[i], r, now);
		else if (rc == 0 && ops[i].kind == OP_SUSPENSIONS)
			writes = r->type == REDIS_REPLY_ARRAY ? sync_suspensions(r, shaping_state_count(), now, wall) : 0;
		else if (rc == 0 && ops[i].kind == OP_SUPPRESSION_READ)
			rc = reply_suppression_read(r);
		if (rc == -EPROTO && why[0] == '\0')
			snprintf(why, sizeof(why), "unexpected reply to %s", ops[i].kind == OP_RATE ? "the rate script" : "the lease script");
		freeReplyObject(replies[i]);
	}
	if (rc == 0 && sent > 0)
		suppression_sent(sent);
	if (rc == 0 && writes > 0) {
		rc = redis_conn_exchange(cl.conn, replies);
		atomic_fetch_add(&cl.round_trips, 1);
		if (rc == 0)
			for (size_t i = 0; i < writes; i++)
				freeReplyObject(replies[i]);
		else
			snprintf(why, sizeof(why), "%s", strerror(-rc));
	}
	if (rc < 0) {
		went_down(why);
		return false;
	}
	return true;
}

/* release_leases - at exit: this node's leases back at once, so the
 * others need not wait lease_ttl for its share. */
static void release_leases(void)
{
	static struct op ops[REDIS_CONN_MAX_PIPELINE];
	static redisReply *replies[REDIS_CONN_MAX_PIPELINE];
	size_t n = 0;

	for (unsigned i = 0; i < shaping_state_count() && n < REDIS_CONN_MAX_PIPELINE; i++)
		if (cl.held[i] > 0)
			queue_lease(ops, &n, i, 0, cluster_state_configured_max(i));
	if (n > 0 && redis_conn_exchange(cl.conn, replies) == 0)
		for (size_t i = 0; i < n; i++)
			freeReplyObject(replies[i]);
}

static void *cluster_main(void *arg)
{
	const struct timespec tick = { .tv_nsec = CLUSTER_TICK_MS * 1000000L };

	(void)arg;
	log_info("cluster_start", "redis=%s:%d node=%s nodes=%u key_prefix=%s", cl.host, cl.port, cl.node, cl.nodes,
		 cl.prefix);
	while (!atomic_load(&cl.stop)) {
		if (cl.conn == NULL && clock_ms(CLOCK_MONOTONIC) >= cl.next_try_ms)
			try_connect();
		if (cl.conn != NULL)
			cluster_pass();
		nanosleep(&tick, NULL);
	}
	if (cl.conn != NULL)
		release_leases();
	cl.conn = redis_conn_close(cl.conn);
	return NULL;
}

/* ---- interface ---------------------------------------------------------- */

int cluster_start(const struct config *cfg, struct worker *workers, unsigned count)
{
	if (cfg->cluster_redis[0] == '\0')
		return 0;
	if (cluster_address_parse(cfg->cluster_redis, cl.host, sizeof(cl.host), &cl.port) < 0)
		return -EINVAL;      /* config_load checked it */
	snprintf(cl.node, sizeof(cl.node), "%s", cfg->cluster_node_name);
	snprintf(cl.prefix, sizeof(cl.prefix), "%s", cfg->cluster_key_prefix);
	snprintf(cl.user, sizeof(cl.user), "%s", cfg->cluster_username);
	cl.password = cfg->cluster_password != NULL ? xstrdup(cfg->cluster_password) : NULL;
	cl.timeout_ms = cfg->cluster_timeout_ms;
	cl.reconnect_max_ms = cfg->cluster_reconnect_max_ms;
	cl.batch = cfg->cluster_batch;
	cl.lease_ttl_ms = cfg->cluster_lease_ttl_ms;
	cl.poll_ms = cfg->cluster_poll_interval_ms;
	cl.nodes = (unsigned)cfg->cluster_nodes;
	cl.workers = workers;
	cl.worker_count = count;
	cl.share_suppression = cfg->cluster_share_suppression;
	if (cl.share_suppression)
		suppress_observe(suppression_changed);
	cluster_state_configure(cl.nodes);
	int rc = pthread_create(&cl.thread, NULL, cluster_main, NULL);
	if (rc != 0) {
		cluster_state_set_mode(CLUSTER_OFF);
		return -rc;
	}
	atomic_store(&cl.running, true);
	return 0;
}

void cluster_stop(void)
{
	if (!atomic_load(&cl.running))
		return;
	suppress_observe(NULL);
	atomic_store(&cl.stop, true);
	pthread_join(cl.thread, NULL);
	atomic_store(&cl.running, false);
	if (cl.password != NULL) {
		explicit_bzero(cl.password, strlen(cl.password));
		free(cl.password);
		cl.password = NULL;
	}
}

bool cluster_running(void)
{
	return atomic_load(&cl.running);
}

/* json_string - s as a JSON string (names and Redis errors: printable). */
static int json_string(struct buf *out, const char *s)
{
	int rc = buf_append_str(out, "\"");

	for (; rc == 0 && *s != '\0'; s++)
		rc = (*s == '"' || *s == '\\') ? buf_append_printf(out, "\\%c", *s)
		     : (unsigned char)*s < 0x20 ? buf_append_printf(out, "\\u%04x", *s) : buf_append(out, s, 1);
	return rc == 0 ? buf_append_str(out, "\"") : rc;
}

/* window_text - "taken/cap" of a bucket's current window, or "-". */
static void window_text(const struct slot_view *v, unsigned b, int64_t now, char *out, size_t n)
{
	if (v->window_ms[b] == 0 || now - v->window_ms[b] > CLUSTER_WINDOW_MS)
		snprintf(out, n, "-");
	else
		snprintf(out, n, "%lld/%lld", (long long)v->used[b], (long long)v->cap[b]);
}

int cluster_status_render(struct buf *out, bool json)
{
	static struct slot_view view[SHAPING_MAX_SITES];
	static pthread_mutex_t render_lock = PTHREAD_MUTEX_INITIALIZER;
	char error[sizeof(cl.last_error)];
	int64_t now = clock_ms(CLOCK_MONOTONIC);
	size_t count = shaping_state_count();
	bool running = cluster_running(), up = atomic_load(&cl.up) == 1;
	const char *mode = !running ? "off" : up ? "shared" : "fallback";
	int rc;

	pthread_mutex_lock(&render_lock);
	pthread_mutex_lock(&cl.view_lock);
	memcpy(view, cl.view, sizeof(view));
	snprintf(error, sizeof(error), "%s", up ? "" : cl.last_error);
	pthread_mutex_unlock(&cl.view_lock);
	if (json) {
		rc = buf_append_printf(out, "{\"redis\":");
		rc = rc ? rc : json_string(out, running ? cl.host : "");
		rc = rc ? rc : buf_append_printf(out, ",\"port\":%d,\"state\":\"%s\",\"mode\":\"%s\",\"node\":", cl.port,
						 !running ? "off" : up ? "up" : "down", mode);
		rc = rc ? rc : json_string(out, cl.node);
		rc = rc ? rc : buf_append_printf(out, ",\"nodes\":%u,\"round_trips\":%llu,\"tokens_taken\":%llu,\"fallbacks\":%llu,\"last_error\":",
						 cl.nodes, (unsigned long long)atomic_load(&cl.round_trips),
						 (unsigned long long)atomic_load(&cl.tokens), (unsigned long long)atomic_load(&cl.fallbacks));
		rc = rc ? rc : json_string(out, error);
		rc = rc ? rc : buf_append_printf(out, ",\"suppression_shared\":%s,\"suppression_sent\":%llu,\"suppression_received\":%llu",
						 cl.share_suppression ? "true" : "false",
						 (unsigned long long)atomic_load(&cl.suppression_out),
						 (unsigned long long)atomic_load(&cl.suppression_in));
		rc = rc ? rc : buf_append_str(out, ",\"sites\":[");
	} else {
		rc = buf_append_printf(out, "redis        %s:%d %s (mode %s)%s%s\nnode         %s (cluster.nodes %u)\n"
				       "round_trips  %llu  tokens_taken %llu  fallbacks %llu\n"
				       "suppression  %s  sent %llu  received %llu\n\n%-24s %12s %12s %8s  %s\n",
				       running ? cl.host : "-", cl.port, !running ? "off" : up ? "up" : "down", mode,
				       error[0] ? " error: " : "", error, cl.node, cl.nodes,
				       (unsigned long long)atomic_load(&cl.round_trips), (unsigned long long)atomic_load(&cl.tokens),
				       (unsigned long long)atomic_load(&cl.fallbacks), cl.share_suppression ? "shared" : "local",
				       (unsigned long long)atomic_load(&cl.suppression_out),
				       (unsigned long long)atomic_load(&cl.suppression_in), "SITE", "MSG_WINDOW", "CONN_WINDOW",
				       "LEASES", "HOLDERS");
	}
	bool first = true;
	for (size_t i = 0; i < count && rc == 0; i++) {
		const struct slot_view *v = &view[i];
		char msg[48], conn[48], leases[32];
		uint32_t max = cluster_state_configured_max((unsigned)i);
		window_text(v, 0, now, msg, sizeof(msg));
		window_text(v, 1, now, conn, sizeof(conn));
		if (!json) {
			snprintf(leases, sizeof(leases), max ? "%u/%u" : "%u/-", cluster_state_leases((unsigned)i), max);
			rc = buf_append_printf(out, "%-24s %12s %12s %8s  %s\n", shaping_state_name((unsigned)i), msg, conn, leases,
					       v->holders[0] ? v->holders : "-");
			continue;
		}
		rc = buf_append_str(out, first ? "{\"site\":" : ",{\"site\":");
		first = false;
		rc = rc ? rc : json_string(out, shaping_state_name((unsigned)i));
		rc = rc ? rc : buf_append_printf(out, ",\"message_window\":\"%s\",\"connection_window\":\"%s\",\"leases_held\":%u,\"max_connections\":%u,\"holders\":",
						 msg, conn, cluster_state_leases((unsigned)i), max);
		rc = rc ? rc : json_string(out, v->holders);
		rc = rc ? rc : buf_append_str(out, "}");
	}
	if (rc == 0 && json)
		rc = buf_append_str(out, "]}\n");
	pthread_mutex_unlock(&render_lock);
	return rc;
}

int cluster_metrics_render(struct buf *out)
{
	if (!cluster_running())
		return 0;
	int up = atomic_load(&cl.up);
	return buf_append_printf(out,
		"# HELP ringmail_cluster_redis_up 1 while the cluster's Redis answers, else 0 (cluster.redis).\n"
		"# TYPE ringmail_cluster_redis_up gauge\nringmail_cluster_redis_up %d\n"
		"# HELP ringmail_cluster_fallback 1 while this node keeps local limits divided by cluster.nodes (Redis down or slow).\n"
		"# TYPE ringmail_cluster_fallback gauge\nringmail_cluster_fallback %d\n"
		"# HELP ringmail_cluster_fallbacks_total Times this node lost Redis and fell back to local limits.\n"
		"# TYPE ringmail_cluster_fallbacks_total counter\nringmail_cluster_fallbacks_total %llu\n"
		"# HELP ringmail_cluster_redis_round_trips_total Round trips to Redis (each a pipeline of commands).\n"
		"# TYPE ringmail_cluster_redis_round_trips_total counter\nringmail_cluster_redis_round_trips_total %llu\n"
		"# HELP ringmail_cluster_tokens_taken_total Rate tokens this node took from Redis for its workers.\n"
		"# TYPE ringmail_cluster_tokens_taken_total counter\nringmail_cluster_tokens_taken_total %llu\n"
		"# HELP ringmail_cluster_suspensions_received_total Suspensions another node wrote that this node applied.\n"
		"# TYPE ringmail_cluster_suspensions_received_total counter\nringmail_cluster_suspensions_received_total %llu\n"
		"# HELP ringmail_cluster_suppression_sent_total Suppression list changes made here and written to Redis.\n"
		"# TYPE ringmail_cluster_suppression_sent_total counter\nringmail_cluster_suppression_sent_total %llu\n"
		"# HELP ringmail_cluster_suppression_received_total Suppression list changes of other nodes applied here.\n"
		"# TYPE ringmail_cluster_suppression_received_total counter\nringmail_cluster_suppression_received_total %llu\n",
		up, up ? 0 : 1, (unsigned long long)atomic_load(&cl.fallbacks),
		(unsigned long long)atomic_load(&cl.round_trips), (unsigned long long)atomic_load(&cl.tokens),
		(unsigned long long)atomic_load(&cl.suspensions_in), (unsigned long long)atomic_load(&cl.suppression_out),
		(unsigned long long)atomic_load(&cl.suppression_in));
}
