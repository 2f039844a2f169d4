/*
 * test_cluster - the cluster's pure code: cluster.* in the config (each
 * error names the key), the plan's arithmetic (fallback shares, window
 * caps, credit and lease requests, backoff, the suspension decisions),
 * the workers' side of cluster_state in each mode, and the decoding of
 * Redis answers fed as RESP bytes through hiredis's reader.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "cluster_plan.h"
#include "cluster_reply.h"
#include "cluster_state.h"
#include "config.h"

/* load_text - config_load on a temporary file holding text. */
static int load_text(const char *text, struct config **cfg, char *err, size_t errlen)
{
	char path[] = "/tmp/ringmail-test-cluster-XXXXXX";
	int fd = mkstemp(path);

	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	err[0] = '\0';
	int rc = config_load(path, cfg, err, errlen);
	unlink(path);
	return rc;
}

Test(cluster_config, defaults_are_off)
{
	struct config *cfg = NULL;
	char err[512];

	cr_assert_eq(config_load(NULL, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(cfg->cluster_redis, "");
	cr_expect_eq(cfg->cluster_nodes, 1);
	cr_expect_eq(cfg->cluster_batch, 10);
	cr_expect_eq(cfg->cluster_timeout_ms, 500);
	cr_expect_eq(cfg->cluster_lease_ttl_ms, 10000);
	cr_expect_eq(cfg->cluster_poll_interval_ms, 250);
	cr_expect_str_eq(cfg->cluster_key_prefix, "ringmail:");
	cr_expect_null(cfg->cluster_password);
	config_free(cfg);
}

Test(cluster_config, full_section_and_password_file)
{
	char pw[] = "/tmp/ringmail-test-cluster-pw-XXXXXX", text[1024], err[512];
	int fd = mkstemp(pw);
	struct config *cfg = NULL;

	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "s3cret word\nignored\n", 20), 20);
	close(fd);
	snprintf(text, sizeof(text),
		 "cluster = { redis = \"[::1]:6380\"; node_name = \"mta-1.east\"; nodes = 3; password_file = \"%s\";\n"
		 "  username = \"ringmail\"; key_prefix = \"rm:\"; timeout = \"200ms\"; batch = 20; lease_ttl = \"30s\"; };\n", pw);
	cr_assert_eq(load_text(text, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(cfg->cluster_redis, "[::1]:6380");
	cr_expect_str_eq(cfg->cluster_node_name, "mta-1.east");
	cr_expect_eq(cfg->cluster_nodes, 3);
	cr_expect_str_eq(cfg->cluster_password, "s3cret word");
	cr_expect_str_eq(cfg->cluster_username, "ringmail");
	cr_expect_eq(cfg->cluster_batch, 20);
	cr_expect_eq(cfg->cluster_lease_ttl_ms, 30000);
	config_free(cfg);
	unlink(pw);
}

Test(cluster_config, node_name_defaults_to_the_host_name)
{
	struct config *cfg = NULL;
	char err[512];

	cr_assert_eq(load_text("cluster = { redis = \"127.0.0.1:6379\"; };\n", &cfg, err, sizeof(err)), 0, "%s", err);
	cr_expect_neq(cfg->cluster_node_name[0], '\0');
	config_free(cfg);
}

Test(cluster_config, errors_name_the_key)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "cluster = { redis = \"127.0.0.1\"; };\n", "cluster.redis" },
		{ "cluster = { redis = \"127.0.0.1:0\"; };\n", "cluster.redis" },
		{ "cluster = { redis = \"127.0.0.1:70000\"; };\n", "cluster.redis" },
		{ "cluster = { redis = \"[::1:6379\"; };\n", "cluster.redis" },
		{ "cluster = { redis = \"127.0.0.1:6379\"; node_name = \"a b\"; };\n", "cluster.node_name" },
		{ "cluster = { redis = \"127.0.0.1:6379\"; node_name = \"a:b\"; };\n", "cluster.node_name" },
		{ "cluster = { redis = \"127.0.0.1:6379\"; password_file = \"/nonexistent/pw\"; };\n", "cluster.password_file" },
		{ "cluster = { redis = \"127.0.0.1:6379\"; key_prefix = \"a b\"; };\n", "cluster.key_prefix" },
		{ "cluster = { nodes = 0; };\n", "cluster.nodes" },
		{ "cluster = { batch = 0; };\n", "cluster.batch" },
		{ "cluster = { timeout = \"5ms\"; };\n", "cluster.timeout" },
		{ "cluster = { lease_ttl = \"10ms\"; };\n", "cluster.lease_ttl" },
		{ "cluster = { tls = true; };\n", "cluster.tls" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *cfg = NULL;
		char err[512];
		cr_expect_lt(load_text(cases[i].text, &cfg, err, sizeof(err)), 0, "case %zu loaded", i);
		cr_expect(strstr(err, cases[i].want) != NULL, "case %zu: got \"%s\", want %s named", i, err, cases[i].want);
		cr_expect(strstr(err, "line 1") != NULL, "case %zu: no line in \"%s\"", i, err);
		config_free(cfg);
	}
}

Test(cluster_plan, address_parse)
{
	static const struct {
		const char *text;
		int rc;
		const char *host;
		int port;
	} cases[] = {
		{ "127.0.0.1:6379", 0, "127.0.0.1", 6379 },
		{ "redis.example.net:1", 0, "redis.example.net", 1 },
		{ "[::1]:6380", 0, "::1", 6380 },
		{ "::1:6379", -EINVAL, NULL, 0 },
		{ ":6379", -EINVAL, NULL, 0 },
		{ "host:", -EINVAL, NULL, 0 },
		{ "host:65536", -EINVAL, NULL, 0 },
		{ "host:12x", -EINVAL, NULL, 0 },
		{ "[::1]6379", -EINVAL, NULL, 0 },
		{ "host", -EINVAL, NULL, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char host[64] = "";
		int port = 0;
		int rc = cluster_address_parse(cases[i].text, host, sizeof(host), &port);
		cr_expect_eq(rc, cases[i].rc, "%s: got %d, want %d", cases[i].text, rc, cases[i].rc);
		if (rc == 0) {
			cr_expect_str_eq(host, cases[i].host, "%s: got host %s", cases[i].text, host);
			cr_expect_eq(port, cases[i].port, "%s: got port %d", cases[i].text, port);
		}
	}
}

Test(cluster_plan, names)
{
	cr_expect(cluster_name_valid("node-1.east_2"));
	cr_expect_not(cluster_name_valid(""));
	cr_expect_not(cluster_name_valid("a:b"));
	cr_expect_not(cluster_name_valid("a b"));
	cr_expect_not(cluster_name_valid("0123456789012345678901234567890123456789012345678901234567890123"));
}

Test(cluster_plan, fallback_shares)
{
	cr_expect_eq(cluster_fallback_interval(100000, 3), 300000, "10/s on 3 nodes: 3.33/s each");
	cr_expect_eq(cluster_fallback_interval(0, 3), 0, "no limit stays no limit");
	cr_expect_eq(cluster_fallback_interval(100000, 1), 100000);
	cr_expect_eq(cluster_fallback_interval(INT64_MAX / 2, 3), INT64_MAX, "saturates");
	cr_expect_eq(cluster_fallback_max(20, 3), 6);
	cr_expect_eq(cluster_fallback_max(2, 3), 1, "at least one connection each");
	cr_expect_eq(cluster_fallback_max(0, 3), 0, "no limit");
	cr_expect_eq(cluster_fallback_max(5, 1), 5);
}

Test(cluster_plan, window_caps_add_up_to_the_rate)
{
	static const struct {
		int64_t interval_us, windows, want;     /* tokens over that many 1 s windows */
		int64_t lo, hi;                         /* every window's cap within */
	} cases[] = {
		{ 1000000 / 12, 100, 1200, 12, 13 },    /* 12/s */
		{ 6000000, 60, 10, 0, 1 },              /* 10/min: a token in 10 of 60 windows */
		{ 3600000000LL / 500, 3600, 500, 0, 1 },   /* 500/hour */
		{ 3000000 / 7, 3600, 8400, 2, 3 },      /* 2.33/s */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t sum = 0;
		for (int64_t w = 1796450000; w < 1796450000 + cases[i].windows; w++) {
			int64_t cap = cluster_window_cap(w, 1000000, cases[i].interval_us);
			cr_expect(cap >= cases[i].lo && cap <= cases[i].hi, "case %zu window %lld: cap %lld", i, (long long)w,
				  (long long)cap);
			sum += cap;
		}
		cr_expect(llabs(sum - cases[i].want) <= 1, "case %zu: got %lld tokens, want %lld", i, (long long)sum,
			  (long long)cases[i].want);
	}
	cr_expect_eq(cluster_window_cap(5, 1000000, 0), 0, "no rate: nothing from Redis");
}

Test(cluster_plan, credit_requests)
{
	cr_expect_eq(cluster_credit_request(0, 10), 10);
	cr_expect_eq(cluster_credit_request(4, 10), 6, "below half: top up to the batch");
	cr_expect_eq(cluster_credit_request(5, 10), 0, "half in hand: enough");
	cr_expect_eq(cluster_credit_request(0, 1), 1);
	cr_expect_eq(cluster_credit_request(1, 1), 0);
	cr_expect_eq(cluster_credit_request(-2, 4), 4, "never more than a batch");
}

Test(cluster_plan, lease_targets)
{
	cr_expect_eq(cluster_lease_target(0, 2, false), 0, "idle: give them back");
	cr_expect_eq(cluster_lease_target(0, 2, true), 1, "a worker waits: one more");
	cr_expect_eq(cluster_lease_target(2, 2, true), 2, "never over the max");
	cr_expect_eq(cluster_lease_target(3, 5, false), 3);
	cr_expect_eq(cluster_lease_target(3, 0, true), 0, "no max: no leases");
}

Test(cluster_plan, backoff_doubles_to_the_max)
{
	int64_t b = 0;
	int64_t want[] = { 100, 200, 400, 800, 1000, 1000 };

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		b = cluster_backoff_next(b, 1000);
		cr_expect_eq(b, want[i], "step %zu: got %lld", i, (long long)b);
	}
}

Test(cluster_plan, suspension_decisions)
{
	/* now = 1000 (monotonic), wall = 1,000,000 (so wall = mono + 999000). */
	static const struct {
		int64_t local, synced, remote;
		enum cluster_suspension_action want;
		bool write;
		const char *why;
	} cases[] = {
		{ 0, 0, 0, CLUSTER_SUSPENSION_NONE, false, "nothing anywhere" },
		{ 61000, 0, 0, CLUSTER_SUSPENSION_PUBLISH, true, "a rule suspended here" },
		{ 61000, 0, 1060000, CLUSTER_SUSPENSION_PUBLISH, false, "here, and as long in Redis already" },
		{ 61000, 31000, 1030000, CLUSTER_SUSPENSION_PUBLISH, true, "grew here" },
		{ 61000, 61000, 1060000, CLUSTER_SUSPENSION_NONE, false, "in step" },
		{ 0, 61000, 1060000, CLUSTER_SUSPENSION_PUBLISH_RESUME, true, "the operator resumed here" },
		{ 0, 0, 1060000, CLUSTER_SUSPENSION_APPLY, false, "another node's" },
		{ 31000, 31000, 1060000, CLUSTER_SUSPENSION_APPLY, false, "another node's is longer" },
		{ 61000, 61000, 1060050, CLUSTER_SUSPENSION_NONE, false, "within the slack" },
		{ 61000, 61000, 0, CLUSTER_SUSPENSION_RESUME, false, "deleted by another node" },
		{ 0, 900, 0, CLUSTER_SUSPENSION_NONE, false, "ran out everywhere" },
		{ 0, 0, 999500, CLUSTER_SUSPENSION_NONE, false, "Redis's has ended" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool write = !cases[i].write;
		enum cluster_suspension_action got =
			cluster_suspension_decide(cases[i].local, cases[i].synced, cases[i].remote, 1000, 1000000, &write);
		cr_expect_eq(got, cases[i].want, "%s: got %d, want %d", cases[i].why, got, cases[i].want);
		cr_expect_eq(write, cases[i].write, "%s: write %d", cases[i].why, write);
	}
}

Test(cluster_state, workers_side_in_each_mode)
{
	int64_t wait = 0, interval, wanted;

	cr_expect(cluster_state_take(3, 0, 100000, 5, &wait), "off: always");
	cr_expect_eq(cluster_state_scale_interval(100000), 100000);
	cr_expect_eq(cluster_state_max_connections(3, 6), 6);

	cluster_state_configure(3);
	cr_expect_eq(cluster_state_mode(), CLUSTER_FALLBACK, "until Redis first answers");
	cr_expect(cluster_state_take(3, 0, 100000, 5, &wait));
	cr_expect_eq(cluster_state_scale_interval(100000), 300000);
	cr_expect_eq(cluster_state_max_connections(3, 6), 2);
	cr_expect(cluster_state_lease_allows(3, 100));

	cluster_state_set_mode(CLUSTER_SHARED);
	cr_expect_eq(cluster_state_max_connections(3, 6), 6);
	cr_expect_eq(cluster_state_configured_max(3), 6);
	cr_expect_not(cluster_state_lease_allows(3, 0), "no lease yet");
	cluster_state_set_leases(3, 2);
	cr_expect(cluster_state_lease_allows(3, 1));
	cr_expect_not(cluster_state_lease_allows(3, 2));
	cr_expect_not(cluster_state_take(3, 0, 100000, 7, &wait), "no credit yet");
	cr_expect_eq(wait, CLUSTER_CREDIT_WAIT_US);
	cluster_state_demand(3, 0, &interval, &wanted);
	cr_expect_eq(interval, 100000);
	cr_expect_eq(wanted, 7);
	cluster_state_grant(3, 0, 2);
	cr_expect(cluster_state_take(3, 0, 100000, 8, &wait));
	cr_expect(cluster_state_take(3, 0, 100000, 8, &wait));
	cr_expect_not(cluster_state_take(3, 0, 100000, 8, &wait), "two credits, two takes");
	cluster_state_refund(3, 0);
	cr_expect_eq(cluster_state_credits(3, 0), 1);
	cr_expect(cluster_state_take(3, 1, 0, 8, &wait), "no rate: no credit needed");
	cluster_state_drop_credits();
	cr_expect_eq(cluster_state_credits(3, 0), 0);
	cluster_state_set_mode(CLUSTER_OFF);
}

/* parse - one reply from RESP bytes through hiredis's reader. */
static redisReply *parse(const char *resp)
{
	redisReader *r = redisReaderCreate();
	void *reply = NULL;

	cr_assert_eq(redisReaderFeed(r, resp, strlen(resp)), REDIS_OK);
	cr_assert_eq(redisReaderGetReply(r, &reply), REDIS_OK);
	cr_assert_not_null(reply, "incomplete: %s", resp);
	redisReaderFree(r);
	return reply;
}

Test(cluster_reply, rate_answers)
{
	struct cluster_rate_answer a;
	redisReply *r = parse("*3\r\n:4\r\n:12\r\n:8\r\n");

	cr_expect_eq(cluster_reply_rate(r, &a), 0);
	cr_expect_eq(a.granted, 4);
	cr_expect_eq(a.cap, 12);
	cr_expect_eq(a.used, 8);
	freeReplyObject(r);
	static const char *const bad[] = {
		"*2\r\n:4\r\n:12\r\n", "*3\r\n:4\r\n$2\r\n12\r\n:8\r\n", "*3\r\n:-1\r\n:12\r\n:8\r\n",
		"*3\r\n:13\r\n:12\r\n:12\r\n", "-NOSCRIPT No matching script\r\n", ":3\r\n", "$-1\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = parse(bad[i]);
		cr_expect_eq(cluster_reply_rate(r, &a), -EPROTO, "case %zu accepted", i);
		freeReplyObject(r);
	}
}

Test(cluster_reply, lease_answers)
{
	char holders[64];
	uint32_t held = 99;
	redisReply *r = parse("*5\r\n:1\r\n$4\r\nn0:0\r\n$4\r\nn1:0\r\n$4\r\nn1:1\r\n$7\r\nx:y:z:0\r\n");

	cr_expect_eq(cluster_reply_lease(r, &held, holders, sizeof(holders)), 0);
	cr_expect_eq(held, 1);
	cr_expect_str_eq(holders, "n0=1 n1=2 x:y:z=1");
	cr_expect_eq(cluster_reply_lease(r, &held, holders, 8), 0);
	cr_expect_str_eq(holders, "n0=1", "cut at a whole holder: got \"%s\"", holders);
	freeReplyObject(r);
	r = parse("*1\r\n:0\r\n");
	cr_expect_eq(cluster_reply_lease(r, &held, holders, sizeof(holders)), 0);
	cr_expect_eq(held, 0);
	cr_expect_str_eq(holders, "");
	freeReplyObject(r);
	r = parse("*0\r\n");
	cr_expect_eq(cluster_reply_lease(r, &held, holders, sizeof(holders)), -EPROTO);
	freeReplyObject(r);
	r = parse("-ERR wrong\r\n");
	cr_expect_eq(cluster_reply_lease(r, &held, holders, sizeof(holders)), -EPROTO);
	freeReplyObject(r);
}

Test(cluster_reply, suspension_answers)
{
	int64_t until = -1;
	redisReply *r = parse("*3\r\n$13\r\n1796457600000\r\n$-1\r\n$3\r\nabc\r\n");

	cr_expect_eq(cluster_reply_suspension(r->element[0], &until), 0);
	cr_expect_eq(until, 1796457600000LL);
	cr_expect_eq(cluster_reply_suspension(r->element[1], &until), 0);
	cr_expect_eq(until, 0, "nil: no suspension");
	cr_expect_eq(cluster_reply_suspension(r->element[2], &until), -EPROTO);
	freeReplyObject(r);
	r = parse(":5\r\n");
	cr_expect_eq(cluster_reply_suspension(r, &until), -EPROTO);
	freeReplyObject(r);
}

Test(cluster_reply, stream_entries)
{
	struct cluster_stream_entry e;
	redisReply *r = parse("*2\r\n$15\r\n1796457600000-0\r\n*6\r\n$4\r\nnode\r\n$2\r\nn1\r\n$2\r\nop\r\n$1\r\n+\r\n"
			      "$4\r\nline\r\n$22\r\na@b.test,1,0,by phone\n\r\n");

	cr_expect_eq(cluster_reply_stream_entry(r, &e), 0);
	cr_expect_str_eq(e.id, "1796457600000-0");
	cr_expect_str_eq(e.node, "n1");
	cr_expect_str_eq(e.op, "+");
	cr_expect_str_eq(e.line, "a@b.test,1,0,by phone\n");
	freeReplyObject(r);
	static const char *const bad[] = {
		"*2\r\n$3\r\n1-0\r\n*4\r\n$4\r\nnode\r\n$2\r\nn1\r\n$2\r\nop\r\n$1\r\n+\r\n",             /* no line */
		"*2\r\n$3\r\n1-0\r\n*6\r\n$4\r\nnode\r\n$2\r\nn1\r\n$2\r\nop\r\n$1\r\n*\r\n$4\r\nline\r\n$1\r\nx\r\n",   /* bad op */
		"*2\r\n$3\r\n1-0\r\n*3\r\n$4\r\nnode\r\n$2\r\nn1\r\n$2\r\nop\r\n",                       /* odd fields */
		"*1\r\n$3\r\n1-0\r\n", ":1\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = parse(bad[i]);
		cr_expect_eq(cluster_reply_stream_entry(r, &e), -EPROTO, "case %zu accepted", i);
		freeReplyObject(r);
	}
}
