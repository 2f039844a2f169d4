/*
 * test_spool_shard - segments, group commit, failure path, rotation,
 * recovery from torn and corrupt tails, liveness and collection, queue ids.
 * The test plays the worker: pwrite + fdatasync where the ring would.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool_dump.h"
#include "spool_recover.h"
#include "spool_shard.h"

static char tmp[64];

static void make_tmp(void)
{
	snprintf(tmp, sizeof(tmp), "/tmp/ringmail-spool-test-XXXXXX");
	cr_assert_not_null(mkdtemp(tmp));
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	return remove(p);
}

static void remove_tmp(void)
{
	nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(spool_shard, .init = make_tmp, .fini = remove_tmp);

static struct spool_shard *open_shard(unsigned worker, uint64_t segment_size)
{
	struct spool_options opt = { .segment_size = segment_size };
	struct spool_shard *s;
	int rc = spool_shard_open(tmp, worker, &opt, &s);

	cr_assert_eq(rc, 0, "open: got %d, want 0", rc);
	return s;
}

/* flush - play the worker's write + fdatasync for one batch. */
static bool flush(struct spool_shard *s)
{
	struct spool_flush f;

	if (!spool_shard_flush_begin(s, &f))
		return false;
	ssize_t n = pwrite(f.fd, f.data, f.len, (off_t)f.offset);
	cr_assert_eq(n, (ssize_t)f.len, "pwrite: got %zd, want %zu", n, f.len);
	if (f.sync)
		cr_assert_eq(fdatasync(f.fd), 0);
	spool_shard_flush_end(s, 0);
	return true;
}

static const struct spool_rcpt two_rcpts[] = {
	{ "a@example.org", 0, "" }, { "b@example.net", SPOOL_NOTIFY_DELAY, "" },
};

/* append - a message of nrcpt recipients with a recognisable body. */
static void append(struct spool_shard *s, char qid[32], size_t nrcpt)
{
	char body[200];

	spool_shard_new_queue_id(s, qid);
	int len = snprintf(body, sizeof(body), "Subject: %s\r\n\r\nbody of %s\r\n",
			   qid, qid);
	struct spool_message m = {
		.queue_id = qid, .client_addr = "127.0.0.1:1", .helo = "h",
		.sender = "s@example.com", .rcpt_count = nrcpt, .rcpts = two_rcpts,
		.body = (const uint8_t *)body, .body_len = (size_t)len,
	};
	int rc = spool_shard_append_message(s, &m);
	cr_assert_eq(rc, 0, "append: got %d, want 0", rc);
}

static void outcome(struct spool_shard *s, const char *qid, uint32_t rcpt,
		    uint8_t status)
{
	struct spool_outcome o = { qid, rcpt, status, 1, 0 };

	cr_assert_eq(spool_shard_append_outcome(s, &o), 0);
}

/* expect_live - qid readable with the right body and rcpt 0 status. */
static void expect_live(struct spool_shard *s, const char *qid, uint8_t st0)
{
	struct spool_loaded *l;
	char want[200];
	int rc = spool_shard_read_message(s, qid, &l);

	cr_assert_eq(rc, 0, "read %s: got %d, want 0", qid, rc);
	cr_assert_str_eq(l->msg.queue_id, qid);
	int len = snprintf(want, sizeof(want), "Subject: %s\r\n\r\nbody of %s\r\n",
			   qid, qid);
	cr_assert_eq(l->msg.body_len, (size_t)len);
	cr_assert_eq(memcmp(l->msg.body, want, (size_t)len), 0);
	cr_assert_eq(l->state[0].status, st0, "%s rcpt 0: got %s, want %s", qid,
		     spool_status_name(l->state[0].status), spool_status_name(st0));
	spool_loaded_free(l);
}

static void expect_gone(struct spool_shard *s, const char *qid)
{
	struct spool_loaded *l;
	int rc = spool_shard_read_message(s, qid, &l);

	cr_assert_eq(rc, -ENOENT, "read %s: got %d, want -ENOENT", qid, rc);
	cr_assert_null(l);
}

static size_t live_count(struct spool_shard *s)
{
	struct spool_shard_stats st;

	spool_shard_stats(s, &st);
	return st.live_messages;
}

static bool segment_exists(unsigned worker, uint64_t seq)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/w%u/seg-%016" PRIx64 ".rms", tmp, worker, seq);
	return access(p, F_OK) == 0;
}

Test(spool_shard, append_flush_read_reopen)
{
	struct spool_shard *s = open_shard(0, 0);
	char q[3][32];

	for (int i = 0; i < 3; i++)
		append(s, q[i], 2);
	cr_assert_eq(live_count(s), 0, "nothing is live before the commit");
	expect_gone(s, q[0]);
	cr_assert(flush(s));
	cr_assert_not(flush(s), "no second batch without appends");
	cr_assert_eq(live_count(s), 3, "got %zu, want 3", live_count(s));
	for (int i = 0; i < 3; i++)
		expect_live(s, q[i], SPOOL_STATUS_PENDING);
	spool_shard_close(s);

	s = open_shard(0, 0);
	cr_assert_eq(live_count(s), 3, "after reopen: got %zu, want 3", live_count(s));
	for (int i = 0; i < 3; i++)
		expect_live(s, q[i], SPOOL_STATUS_PENDING);
	expect_gone(s, "NOSUCHID");
	spool_shard_close(s);
}

Test(spool_shard, appends_during_flight_go_to_next_batch)
{
	struct spool_shard *s = open_shard(0, 0);
	struct spool_flush f;
	char a[32], b[32];

	append(s, a, 1);
	cr_assert(spool_shard_flush_begin(s, &f));
	append(s, b, 1);
	struct spool_flush g;
	cr_assert_not(spool_shard_flush_begin(s, &g), "one batch in flight at most");
	cr_assert_eq(pwrite(f.fd, f.data, f.len, (off_t)f.offset), (ssize_t)f.len);
	spool_shard_flush_end(s, 0);
	expect_live(s, a, SPOOL_STATUS_PENDING);
	expect_gone(s, b);
	cr_assert(flush(s));
	expect_live(s, b, SPOOL_STATUS_PENDING);
	spool_shard_close(s);
}

Test(spool_shard, failed_flush_truncates_and_requeues_outcomes)
{
	struct spool_shard *s = open_shard(0, 0);
	char a[32], b[32];
	struct spool_flush f;
	struct stat st;

	append(s, a, 2);
	cr_assert(flush(s));
	append(s, b, 1);
	outcome(s, a, 0, SPOOL_STATUS_DELIVERED);
	cr_assert(spool_shard_flush_begin(s, &f));
	/* A short write, then the error: half a batch sits in the file. */
	cr_assert_eq(pwrite(f.fd, f.data, f.len / 2, (off_t)f.offset),
		     (ssize_t)(f.len / 2));
	spool_shard_flush_end(s, -ENOSPC);
	cr_assert_eq(fstat(f.fd, &st), 0);
	cr_assert_eq((uint64_t)st.st_size, f.offset, "size after failure: got %jd,"
		     " want %" PRIu64, (intmax_t)st.st_size, f.offset);
	expect_gone(s, b);
	expect_live(s, a, SPOOL_STATUS_PENDING);
	cr_assert_gt(spool_shard_pending(s), 0, "the outcome must be queued again");
	cr_assert(flush(s), "the shard keeps working after a failure");
	expect_live(s, a, SPOOL_STATUS_DELIVERED);
	spool_shard_close(s);

	s = open_shard(0, 0);
	expect_live(s, a, SPOOL_STATUS_DELIVERED);
	expect_gone(s, b);
	cr_assert_eq(live_count(s), 1, "got %zu, want 1", live_count(s));
	spool_shard_close(s);
}

Test(spool_shard, limits)
{
	struct spool_options opt = { .max_record = 100 };
	struct spool_shard *s;
	cr_assert_eq(spool_shard_open(tmp, 0, &opt, &s), 0);
	char q[32];
	spool_shard_new_queue_id(s, q);
	struct spool_message m = { .queue_id = q, .rcpt_count = 1,
				   .rcpts = two_rcpts, .body = (const uint8_t *)"x",
				   .body_len = 200 };
	uint8_t big[200] = { 0 };
	m.body = big;
	int rc = spool_shard_append_message(s, &m);
	cr_assert_eq(rc, -EFBIG, "got %d, want -EFBIG", rc);
	m.rcpt_count = 0;
	rc = spool_shard_append_message(s, &m);
	cr_assert_eq(rc, -EINVAL, "got %d, want -EINVAL", rc);
	spool_shard_close(s);
}

Test(spool_shard, rotation_and_reopen)
{
	struct spool_shard *s = open_shard(2, 1000);
	char q[40][32];

	for (int i = 0; i < 40; i++) {
		append(s, q[i], 2);
		if (i % 4 == 3)
			cr_assert(flush(s));
	}
	struct spool_shard_stats st;
	spool_shard_stats(s, &st);
	cr_assert_geq(st.segments, 5, "segments: got %zu, want >= 5", st.segments);
	cr_assert(segment_exists(2, 1) && segment_exists(2, st.current_segment));
	spool_shard_close(s);
	s = open_shard(2, 1000);
	cr_assert_eq(live_count(s), 40, "got %zu, want 40", live_count(s));
	for (int i = 0; i < 40; i++)
		expect_live(s, q[i], SPOOL_STATUS_PENDING);
	spool_shard_close(s);
}

/* tail_path - the newest segment file of worker 0. */
static void tail_path(char *p, size_t n)
{
	struct spool_shard *s = open_shard(0, 0);
	struct spool_shard_stats st;

	spool_shard_stats(s, &st);
	spool_shard_segment_path(s, st.current_segment, p, n);
	spool_shard_close(s);
}

Test(spool_shard, torn_tail_is_cut_and_appends_stay_clean)
{
	struct spool_shard *s = open_shard(0, 0);
	char q[5][32], path[512];

	for (int i = 0; i < 4; i++)
		append(s, q[i], 1);
	cr_assert(flush(s));
	/* Half of a fifth record: what a crash during the write leaves. */
	append(s, q[4], 1);
	struct spool_flush f;
	cr_assert(spool_shard_flush_begin(s, &f));
	cr_assert_eq(pwrite(f.fd, f.data, f.len - 7, (off_t)f.offset),
		     (ssize_t)(f.len - 7));
	spool_shard_close(s);	/* the crash: never flush_end */

	s = open_shard(0, 0);
	struct spool_shard_stats st;
	spool_shard_stats(s, &st);
	cr_assert_eq(st.truncated_bytes, f.len - 7, "cut: got %" PRIu64
		     ", want %zu", st.truncated_bytes, f.len - 7);
	cr_assert_eq(st.live_messages, 4);
	expect_gone(s, q[4]);
	char more[32];
	append(s, more, 1);
	cr_assert(flush(s));
	spool_shard_close(s);

	tail_path(path, sizeof(path));
	s = open_shard(0, 0);
	spool_shard_stats(s, &st);
	cr_assert_eq(st.truncated_bytes, 0);
	cr_assert_eq(st.live_messages, 5, "got %zu, want 5", st.live_messages);
	expect_live(s, more, SPOOL_STATUS_PENDING);
	spool_shard_close(s);
}

Test(spool_shard, corrupt_tail_record_is_dropped)
{
	struct spool_shard *s = open_shard(0, 0);
	char q[3][32], path[512];
	struct stat st;

	for (int i = 0; i < 3; i++)
		append(s, q[i], 1);
	cr_assert(flush(s));
	spool_shard_close(s);
	tail_path(path, sizeof(path));
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	fstat(fd, &st);
	char c;
	cr_assert_eq(pread(fd, &c, 1, st.st_size - 3), 1);
	c ^= 0x40;
	cr_assert_eq(pwrite(fd, &c, 1, st.st_size - 3), 1);
	close(fd);

	s = open_shard(0, 0);
	cr_assert_eq(live_count(s), 2, "got %zu, want 2", live_count(s));
	expect_live(s, q[0], SPOOL_STATUS_PENDING);
	expect_live(s, q[1], SPOOL_STATUS_PENDING);
	expect_gone(s, q[2]);
	spool_shard_close(s);
}

Test(spool_shard, outcomes_kill_and_collect_in_safe_order)
{
	/* segment_size 1: every batch after the first in a segment rotates. */
	struct spool_shard *s = open_shard(0, 1);
	char a[32], b[32], c[32];

	append(s, a, 2);
	append(s, b, 1);
	cr_assert(flush(s));			/* segment 1: A, B */
	append(s, c, 1);
	outcome(s, a, 0, SPOOL_STATUS_DELIVERED);
	outcome(s, a, 1, SPOOL_STATUS_BOUNCED);
	cr_assert(flush(s));			/* segment 2: C, A final */
	expect_gone(s, a);
	cr_assert_eq(live_count(s), 2);
	cr_assert_eq(spool_shard_collect(s), 0, "B and C still live");
	outcome(s, b, 0, SPOOL_STATUS_EXPIRED);
	outcome(s, c, 0, SPOOL_STATUS_DELETED);
	cr_assert(flush(s));			/* segment 3: B, C final */
	cr_assert_eq(live_count(s), 0);
	int n = spool_shard_collect(s);
	cr_assert_eq(n, 2, "collected: got %d, want 2", n);
	cr_assert_not(segment_exists(0, 1));
	cr_assert_not(segment_exists(0, 2));
	cr_assert(segment_exists(0, 3), "the current segment stays");
	spool_shard_close(s);
	s = open_shard(0, 1);
	cr_assert_eq(live_count(s), 0);
	spool_shard_close(s);
}

Test(spool_shard, outcome_segment_outlives_its_message_segment)
{
	struct spool_shard *s = open_shard(0, 1);
	char a[32], pad[32];

	append(s, a, 2);
	cr_assert(flush(s));			/* segment 1: A */
	outcome(s, a, 0, SPOOL_STATUS_DELIVERED);
	cr_assert(flush(s));			/* segment 2: A rcpt 0 final */
	append(s, pad, 1);
	cr_assert(flush(s));			/* segment 3 (current) */
	/* Segment 2 holds no live message, but deleting it would resurrect
	 * A's first recipient after a restart. */
	cr_assert_eq(spool_shard_collect(s), 0);
	cr_assert(segment_exists(0, 2));
	spool_shard_close(s);
	s = open_shard(0, 1);
	expect_live(s, a, SPOOL_STATUS_DELIVERED);
	spool_shard_close(s);
}

Test(spool_shard, deferral_survives_restart)
{
	struct spool_shard *s = open_shard(0, 0);
	char a[32];

	append(s, a, 2);
	cr_assert(flush(s));
	struct spool_outcome o = { a, 1, SPOOL_STATUS_DEFERRED, 3, 1900000000 };
	cr_assert_eq(spool_shard_append_outcome(s, &o), 0);
	cr_assert(flush(s));
	spool_shard_close(s);
	s = open_shard(0, 0);
	struct spool_loaded *l;
	cr_assert_eq(spool_shard_read_message(s, a, &l), 0);
	cr_assert_eq(l->state[1].status, SPOOL_STATUS_DEFERRED);
	cr_assert_eq(l->state[1].attempts, 3, "got %u, want 3", l->state[1].attempts);
	cr_assert_eq(l->state[1].next_attempt, 1900000000);
	cr_assert_eq(l->state[0].status, SPOOL_STATUS_PENDING);
	spool_loaded_free(l);
	spool_shard_close(s);
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

Test(spool_shard, queue_ids_unique_across_reopen_and_workers)
{
	enum { PER = 2000 };
	char (*ids)[32] = calloc(3 * PER, 32);

	for (int round = 0; round < 3; round++) {
		struct spool_shard *s = open_shard(round == 2 ? 1 : 0, 0);
		for (int i = 0; i < PER; i++) {
			char *id = ids[round * PER + i];
			spool_shard_new_queue_id(s, id);
			cr_assert_eq(strlen(id), 18, "got %zu chars, want 18", strlen(id));
			cr_assert_eq(strspn(id, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
				     18, "bad id %s", id);
		}
		spool_shard_close(s);
	}
	qsort(ids, 3 * PER, 32, cmp_id);
	for (int i = 1; i < 3 * PER; i++)
		cr_assert_str_neq(ids[i - 1], ids[i], "duplicate id %s", ids[i]);
	free(ids);
}

struct seen {
	int count;
	unsigned workers[8];
	int deferred;
};

static int on_live(void *ctx, const struct spool_recovered *r)
{
	struct seen *seen = ctx;

	cr_assert_lt(r->worker_id, 8);
	seen->workers[r->worker_id]++;
	seen->count++;
	for (size_t i = 0; i < r->msg->rcpt_count; i++)
		if (r->state[i].status == SPOOL_STATUS_DEFERRED)
			seen->deferred++;
	cr_assert_gt(r->msg->body_len, 0);
	return 0;
}

Test(spool_shard, recover_reports_every_shard_including_orphans)
{
	char q[32];
	struct spool_shard *s0 = open_shard(0, 0);
	struct spool_shard *s3 = open_shard(3, 0);

	for (int i = 0; i < 5; i++)
		append(s0, q, 2);
	append(s3, q, 1);
	cr_assert(flush(s0));
	cr_assert(flush(s3));
	struct spool_outcome o = { q, 0, SPOOL_STATUS_DEFERRED, 1, 5 };
	cr_assert_eq(spool_shard_append_outcome(s3, &o), 0);
	cr_assert(flush(s3));
	spool_shard_close(s0);
	spool_shard_close(s3);

	struct seen seen = { 0 };
	int n = spool_recover(tmp, 2, on_live, &seen);
	cr_assert_eq(n, 6, "got %d, want 6", n);
	cr_assert_eq(seen.workers[0], 5);
	cr_assert_eq(seen.workers[3], 1, "the orphan shard w3 must be reported");
	cr_assert_eq(seen.deferred, 1);
	cr_assert_eq(spool_recover("/nonexistent/ringmail", 1, on_live, &seen), 0);
}

struct rehome {
	struct spool_shard *to;
	int moved;
};

static int rehome_one(void *ctx, const struct spool_recovered *r)
{
	struct rehome *h = ctx;

	if (r->worker_id == 0)
		return 0;
	h->moved++;
	return spool_shard_append_recovered(h->to, r);
}

Test(spool_shard, orphan_messages_rehome_with_their_states)
{
	char a[32], b[32];
	struct spool_shard *s5 = open_shard(5, 0);

	append(s5, a, 2);
	append(s5, b, 1);
	cr_assert(flush(s5));
	outcome(s5, a, 0, SPOOL_STATUS_DELIVERED);
	cr_assert(flush(s5));
	spool_shard_close(s5);

	struct rehome h = { open_shard(0, 0), 0 };
	int n = spool_recover(tmp, 1, rehome_one, &h);
	cr_assert_eq(n, 2, "recovered: got %d, want 2", n);
	cr_assert_eq(h.moved, 2);
	cr_assert(flush(h.to));
	cr_assert_eq(spool_remove_shard(tmp, 5), 0);
	expect_live(h.to, a, SPOOL_STATUS_DELIVERED);
	expect_live(h.to, b, SPOOL_STATUS_PENDING);
	spool_shard_close(h.to);

	struct seen seen = { 0 };
	n = spool_recover(tmp, 1, on_live, &seen);
	cr_assert_eq(n, 2, "after re-homing: got %d, want 2", n);
	cr_assert_eq(seen.workers[0], 2);
	cr_assert_eq(seen.workers[5], 0, "w5 must be gone");
}

Test(spool_shard, dump_prints_one_line_per_live_message)
{
	char a[32], b[32], out[300];
	struct spool_shard *s = open_shard(0, 0);

	append(s, a, 2);
	append(s, b, 1);
	cr_assert(flush(s));
	outcome(s, a, 1, SPOOL_STATUS_BOUNCED);
	outcome(s, b, 0, SPOOL_STATUS_DELIVERED);
	cr_assert(flush(s));
	spool_shard_close(s);

	snprintf(out, sizeof(out), "%s/dump.out", tmp);
	fflush(stdout);
	int saved = dup(1);
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 1);
	close(fd);
	char *argv[] = { "dump", "--json", tmp, NULL };
	int rc = spool_dump_main(3, argv);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	cr_assert_eq(rc, 0, "got %d, want 0", rc);

	char line[2048] = "";
	FILE *f = fopen(out, "r");
	int lines = 0;
	while (fgets(line, sizeof(line), f) != NULL)
		lines++;
	fclose(f);
	cr_assert_eq(lines, 1, "lines: got %d, want 1 (only %s is live)", lines, a);
	cr_assert_not_null(strstr(line, a), "got %s, want queue id %s", line, a);
	cr_assert_not_null(strstr(line, "\"status\":\"bounced\""), "got %s", line);
	cr_assert_not_null(strstr(line, "\"status\":\"pending\""), "got %s", line);

	char *bad[] = { "dump", "/nonexistent/ringmail-spool", NULL };
	cr_assert_eq(spool_dump_main(2, bad), 1);
}

Test(spool_shard, held_is_not_final_and_survives_collect_and_restart)
{
	struct spool_shard *s = open_shard(0, 1);
	char a[32], b[32], pad[32];

	append(s, a, 1);
	append(s, b, 1);
	cr_assert(flush(s));			/* segment 1: A, B */
	outcome(s, a, 0, SPOOL_STATUS_HELD);
	outcome(s, b, 0, SPOOL_STATUS_HELD);
	cr_assert(flush(s));			/* segment 2: both held */
	cr_assert_eq(live_count(s), 2, "held messages stay live");
	outcome(s, b, 0, SPOOL_STATUS_DEFERRED);	/* released */
	append(s, pad, 1);
	cr_assert(flush(s));
	spool_shard_collect(s);
	spool_shard_close(s);
	s = open_shard(0, 1);
	cr_assert_eq(live_count(s), 3, "got %zu, want 3", live_count(s));
	expect_live(s, a, SPOOL_STATUS_HELD);
	expect_live(s, b, SPOOL_STATUS_DEFERRED);
	outcome(s, a, 0, SPOOL_STATUS_DELETED);
	cr_assert(flush(s));
	expect_gone(s, a);
	spool_shard_close(s);
}

Test(spool_shard, rotation_collects_dead_segments)
{
	/* segment_size 1: every batch after the first in a segment rotates. */
	struct spool_shard *s = open_shard(0, 1);
	char a[32], b[32], c[32];

	append(s, a, 1);
	cr_assert(flush(s));			/* segment 1: A */
	outcome(s, a, 0, SPOOL_STATUS_DELIVERED);
	cr_assert(flush(s));			/* segment 2: A final */
	cr_assert(segment_exists(0, 1) && segment_exists(0, 2));
	append(s, b, 1);
	cr_assert(flush(s));			/* segment 3: B; the rotation collects */
	cr_assert_not(segment_exists(0, 1), "A's segment is dead");
	cr_assert_not(segment_exists(0, 2), "and then the one with its outcome");
	cr_assert(segment_exists(0, 3));
	append(s, c, 1);
	cr_assert(flush(s));			/* segment 4: B still live in 3 */
	cr_assert(segment_exists(0, 3), "a live message keeps its segment");
	spool_shard_close(s);
	s = open_shard(0, 1);
	expect_live(s, b, SPOOL_STATUS_PENDING);
	expect_live(s, c, SPOOL_STATUS_PENDING);
	spool_shard_close(s);
}

/* compact_setup - segment 1 holds A (2 recipients, the first delivered,
 * the second held) and B, C, D (final): one of four live. Then batches
 * rotate; the rotation that makes segment 5 finds segment 1 old enough
 * (COMPACT_AGE 4) and mostly dead, and copies A in front of that batch,
 * whose own records follow: a pad message and, with release, A's second
 * recipient released (DEFERRED). */
static void compact_setup(struct spool_shard *s, char a[32], bool release)
{
	char b[32], c[32], d[32], pad[32];

	append(s, a, 2);
	append(s, b, 1);
	append(s, c, 1);
	append(s, d, 1);
	cr_assert(flush(s));				/* segment 1 */
	outcome(s, a, 0, SPOOL_STATUS_DELIVERED);
	outcome(s, a, 1, SPOOL_STATUS_HELD);
	outcome(s, b, 0, SPOOL_STATUS_DELIVERED);
	outcome(s, c, 0, SPOOL_STATUS_BOUNCED);
	outcome(s, d, 0, SPOOL_STATUS_DELETED);
	cr_assert(flush(s));				/* segment 2 */
	for (int i = 0; i < 3; i++) {			/* segments 3, 4, 5 */
		append(s, pad, 1);
		outcome(s, pad, 0, SPOOL_STATUS_DELIVERED);
		if (i == 2 && release)
			outcome(s, a, 1, SPOOL_STATUS_DEFERRED);
		cr_assert(flush(s));
	}
	cr_assert(segment_exists(0, 1), "the copy is not yet a reason to delete");
}

/* a_location - A's segment and its recipients' states, from disk. */
static uint64_t a_location(struct spool_shard *s, const char *a, uint8_t *st0, uint8_t *st1)
{
	struct spool_loaded *l;

	cr_assert_eq(spool_shard_read_message(s, a, &l), 0);
	uint64_t seg = l->loc.segment;
	*st0 = l->state[0].status;
	*st1 = l->state[1].status;
	spool_loaded_free(l);
	return seg;
}

Test(spool_shard, compaction_moves_the_live_rest_of_an_old_segment)
{
	struct spool_shard *s = open_shard(0, 1);
	char a[32], pad[32];
	uint8_t st0, st1;

	compact_setup(s, a, false);
	cr_assert_eq(a_location(s, a, &st0, &st1), 5, "A's copy is in segment 5");
	append(s, pad, 1);
	cr_assert(flush(s));		/* segment 6: the rotation collects 1 */
	cr_assert_not(segment_exists(0, 1), "segment 1 died with the copy");
	/* the states went with the copy, in memory and after a restart */
	spool_shard_close(s);
	s = open_shard(0, 1);
	cr_assert_eq(a_location(s, a, &st0, &st1), 5);
	cr_assert_eq(st0, SPOOL_STATUS_DELIVERED);
	cr_assert_eq(st1, SPOOL_STATUS_HELD, "got %s, want held", spool_status_name(st1));
	/* later outcomes apply to the copy and kill it */
	outcome(s, a, 1, SPOOL_STATUS_DELIVERED);
	cr_assert(flush(s));
	expect_gone(s, a);
	spool_shard_close(s);
}

Test(spool_shard, compaction_copy_and_original_recover_as_one)
{
	struct spool_shard *s = open_shard(0, 1);
	char a[32];
	uint8_t st0, st1;

	/* The release is in the same batch as the copy, after it. */
	compact_setup(s, a, true);
	cr_assert_eq(a_location(s, a, &st0, &st1), 5);
	cr_assert_eq(st1, SPOOL_STATUS_DEFERRED, "in memory: got %s", spool_status_name(st1));
	/* a crash now: both copies on disk; the newest wins, with the states
	 * it carried and the outcome that followed it */
	spool_shard_close(s);
	s = open_shard(0, 1);
	cr_assert_not(segment_exists(0, 1), "the open collects the original's segment");
	cr_assert_eq(a_location(s, a, &st0, &st1), 5);
	cr_assert_eq(st0, SPOOL_STATUS_DELIVERED);
	cr_assert_eq(st1, SPOOL_STATUS_DEFERRED, "after restart: got %s", spool_status_name(st1));
	cr_assert_eq(live_count(s), 1, "only A: got %zu", live_count(s));
	spool_shard_close(s);
}

Test(spool_shard, a_release_outlives_the_hold_it_ends)
{
	/* Found in review: the release (DEFERRED after HELD) was no
	 * dependency, so its segment could go while the hold's stayed, and a
	 * restart held the message again. */
	struct spool_shard *s = open_shard(0, 1);
	char m[32], pad[32];

	append(s, m, 1);
	cr_assert(flush(s));				/* segment 1: M */
	outcome(s, m, 0, SPOOL_STATUS_HELD);
	cr_assert(flush(s));				/* segment 2: held */
	outcome(s, m, 0, SPOOL_STATUS_DEFERRED);
	append(s, pad, 1);
	outcome(s, pad, 0, SPOOL_STATUS_DELIVERED);
	cr_assert(flush(s));				/* segment 3: released, pad dead */
	append(s, pad, 1);
	cr_assert(flush(s));				/* segment 4: the rotation collects */
	cr_assert(segment_exists(0, 3), "the release must stay while M's segment does");
	spool_shard_close(s);
	s = open_shard(0, 1);
	expect_live(s, m, SPOOL_STATUS_DEFERRED);
	spool_shard_close(s);
}

Test(spool_shard, a_corrupt_segment_is_kept_for_salvage)
{
	/* Found in review: a corrupt segment whose readable part was all dead
	 * was collected, with the acknowledged messages past the damage. */
	struct spool_shard *s = open_shard(0, 1);
	char a[32], b[32], pad[32], path[512];
	struct stat st;

	append(s, a, 1);
	outcome(s, a, 0, SPOOL_STATUS_DELIVERED);
	append(s, b, 1);
	cr_assert(flush(s));				/* segment 1: A (dead), B */
	append(s, pad, 1);
	cr_assert(flush(s));				/* segment 2 */
	spool_shard_segment_path(s, 1, path, sizeof(path));
	spool_shard_close(s);
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	fstat(fd, &st);
	char c;
	cr_assert_eq(pread(fd, &c, 1, st.st_size - 3), 1);   /* inside B */
	c ^= 0x40;
	cr_assert_eq(pwrite(fd, &c, 1, st.st_size - 3), 1);
	close(fd);

	s = open_shard(0, 1);
	cr_assert(segment_exists(0, 1), "kept at open");
	append(s, pad, 1);
	cr_assert(flush(s));				/* a rotation: collection runs */
	append(s, pad, 1);
	cr_assert(flush(s));
	cr_assert(segment_exists(0, 1), "kept at rotation");
	struct spool_shard_stats sst;
	spool_shard_stats(s, &sst);
	cr_assert_eq(sst.corrupt_segments, 1);
	spool_shard_close(s);
}

static int collect_reply(void *ctx, const struct spool_recovered *r)
{
	char *out = ctx;

	snprintf(out, 128, "%s %u %lld", r->reply ? r->reply : "(none)", r->state[0].attempts,
		 (long long)r->state[0].next_attempt);
	return 0;
}

Test(spool_shard, deferral_reply_survives_restart_and_compaction)
{
	struct spool_shard *s = open_shard(0, 1);
	char a[32], b[32], pad[32], got[128];

	append(s, a, 1);
	append(s, b, 1);
	cr_assert(flush(s));				/* segment 1 */
	struct spool_outcome o = { a, 0, SPOOL_STATUS_DEFERRED, 2, 1900000000, "451 4.7.1 later" };
	cr_assert_eq(spool_shard_append_outcome(s, &o), 0);
	outcome(s, b, 0, SPOOL_STATUS_DELIVERED);
	cr_assert(flush(s));				/* segment 2 */
	spool_shard_close(s);
	s = open_shard(0, 1);
	cr_assert_eq(spool_shard_foreach_live(s, collect_reply, got), 0);
	cr_assert_str_eq(got, "451 4.7.1 later 2 1900000000", "got %s", got);
	/* a later deferral without a reply keeps the last one */
	o.attempts = 3;
	o.reply = NULL;
	cr_assert_eq(spool_shard_append_outcome(s, &o), 0);
	cr_assert(flush(s));
	for (int i = 0; i < 4; i++) {			/* rotate until A is copied */
		append(s, pad, 1);
		outcome(s, pad, 0, SPOOL_STATUS_DELIVERED);
		cr_assert(flush(s));
	}
	cr_assert_not(segment_exists(0, 1), "A was compacted out of segment 1");
	spool_shard_close(s);
	s = open_shard(0, 1);
	cr_assert_eq(spool_shard_foreach_live(s, collect_reply, got), 0);
	cr_assert_str_eq(got, "451 4.7.1 later 3 1900000000", "after compaction: got %s", got);
	spool_shard_close(s);
}

/* chores - run every chore due now, as the helper thread would. */
static int chores(struct spool_shard *s)
{
	struct spool_chore *ch;
	int n = 0;

	while ((ch = spool_shard_chore_take(s)) != NULL) {
		cr_assert(spool_shard_chore_out(s));
		cr_assert_null(spool_shard_chore_take(s), "one chore out at a time");
		spool_chore_run(ch);
		spool_shard_chore_done(s, ch);
		n++;
	}
	return n;
}

Test(spool_shard, chores_make_the_spare_and_collect_off_the_worker)
{
	/* segment_size 1: every batch after the first in a segment rotates. */
	struct spool_options opt = { .segment_size = 1, .background_chores = true };
	struct spool_shard *s;
	char a[32], b[32], c[32];

	cr_assert_eq(spool_shard_open(tmp, 0, &opt, &s), 0);
	cr_assert_eq(chores(s), 1, "the spare");
	cr_assert(segment_exists(0, 2), "spare file made by the chore");
	append(s, a, 1);
	cr_assert(flush(s));				/* segment 1: A */
	append(s, b, 1);
	outcome(s, a, 0, SPOOL_STATUS_DELIVERED);
	cr_assert(flush(s));				/* segment 2 (the spare): B, A's outcome */
	struct spool_shard_stats st;
	spool_shard_stats(s, &st);
	cr_assert_eq(st.current_segment, 2);
	cr_assert_eq(st.rotations, 1);
	cr_assert_eq(st.rotations_blocking, 0, "the rotation took the spare");
	cr_assert(segment_exists(0, 1), "collection waits for its chore");

	/* The next rotation while the spare is still being made: the full
	 * segment takes one more batch instead of blocking. */
	struct spool_chore *ch = spool_shard_chore_take(s);	/* the spare (3) */
	cr_assert_not_null(ch);
	append(s, c, 1);
	cr_assert(flush(s));
	spool_shard_stats(s, &st);
	cr_assert_eq(st.current_segment, 2, "C went into the full segment");
	cr_assert_eq(st.rotations_deferred, 1);
	spool_chore_run(ch);
	spool_shard_chore_done(s, ch);
	cr_assert_eq(chores(s), 1, "the collection due since the rotation");
	cr_assert_not(segment_exists(0, 1), "segment 1 collected by the chore");
	outcome(s, b, 0, SPOOL_STATUS_DELIVERED);
	cr_assert(flush(s));				/* segment 3: the spare */
	cr_assert_eq(chores(s), 1, "the next spare; segment 2 holds C");
	cr_assert(segment_exists(0, 2) && segment_exists(0, 3) && segment_exists(0, 4));
	spool_shard_stats(s, &st);
	cr_assert_eq(st.rotations_blocking, 0);
	cr_assert_eq(st.segments, 2, "segments: got %zu, want 2", st.segments);
	spool_shard_close(s);

	/* A reopen finds C and the unused spare (empty, now current). */
	s = open_shard(0, 1);
	cr_assert_eq(live_count(s), 1);
	expect_live(s, c, SPOOL_STATUS_PENDING);
	spool_shard_stats(s, &st);
	cr_assert_eq(st.current_segment, 4);
	spool_shard_close(s);
}

Test(spool_shard, a_failed_spare_chore_falls_back_to_a_blocking_rotation)
{
	struct spool_options opt = { .segment_size = 1, .background_chores = true };
	struct spool_shard *s;
	char a[32], b[32], path[512];

	cr_assert_eq(spool_shard_open(tmp, 0, &opt, &s), 0);
	/* Something already holds the spare's name: O_EXCL fails. */
	spool_shard_segment_path(s, 2, path, sizeof(path));
	int fd = open(path, O_CREAT | O_WRONLY, 0640);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(chores(s), 1);
	cr_assert_null(spool_shard_chore_take(s), "no retry within a second");
	unlink(path);
	append(s, a, 1);
	cr_assert(flush(s));
	append(s, b, 1);
	cr_assert(flush(s));				/* rotates in place */
	struct spool_shard_stats st;
	spool_shard_stats(s, &st);
	cr_assert_eq(st.current_segment, 2);
	cr_assert_eq(st.rotations_blocking, 1);
	spool_shard_close(s);
}

/* file_size - st_size of worker 0's segment seq. */
static uint64_t file_size(struct spool_shard *s, uint64_t seq)
{
	char path[512];
	struct stat st;

	spool_shard_segment_path(s, seq, path, sizeof(path));
	cr_assert_eq(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

Test(spool_shard, a_preallocated_spare_is_written_over_and_its_zeros_are_no_torn_tail)
{
	struct spool_options opt = { .segment_size = 4096, .preallocate = 1 << 20,
				     .background_chores = true };
	struct spool_shard *s;
	char q[64][32];
	struct spool_shard_stats st;
	int n = 0;

	cr_assert_eq(spool_shard_open(tmp, 0, &opt, &s), 0);
	cr_assert_eq(chores(s), 1, "the spare");
	cr_assert_eq(file_size(s, 2), 4096, "zeros up to segment_size, not 1 MiB");
	for (; n < 5; n++)
		append(s, q[n], 1);
	cr_assert(flush(s));
	spool_shard_stats(s, &st);
	cr_assert_eq(st.current_segment, 2, "the empty first segment gave way");
	cr_assert_gt(st.current_size, 0);
	cr_assert_eq(file_size(s, 2), 4096, "written over from offset 0, not appended");
	cr_assert_eq(chores(s), 2, "the next spare, then segment 1 collected");
	cr_assert_not(segment_exists(0, 1));
	while (st.current_segment == 2) {	/* fill 2, then over into 3 */
		cr_assert_lt(n, 60);
		for (int i = 0; i < 4; i++, n++)
			append(s, q[n], 1);
		cr_assert(flush(s));
		spool_shard_stats(s, &st);
	}
	cr_assert_eq(st.current_segment, 3);
	cr_assert_eq(file_size(s, 3), 4096);
	spool_shard_close(s);

	/* Reopen: zeros after the last record are the end, in the last
	 * segment and before it. */
	cr_assert_eq(spool_shard_open(tmp, 0, &opt, &s), 0);
	spool_shard_stats(s, &st);
	cr_assert_eq(st.truncated_bytes, 0);
	cr_assert_eq(st.corrupt_segments, 0);
	cr_assert_eq(st.live_messages, (size_t)n);
	cr_assert_eq(st.current_segment, 3);
	for (int i = 0; i < n; i++)
		expect_live(s, q[i], SPOOL_STATUS_PENDING);
	uint64_t before = st.current_size;

	/* A torn write over the zeros leaves bytes: cut, as ever. */
	char t[32];
	append(s, t, 1);
	struct spool_flush f;
	cr_assert(spool_shard_flush_begin(s, &f));
	cr_assert_eq(f.offset, before, "over the zeros, at the end of the records");
	cr_assert_eq(pwrite(f.fd, f.data, f.len - 7, (off_t)f.offset),
		     (ssize_t)(f.len - 7));
	spool_shard_close(s);	/* the crash: never flush_end */
	cr_assert_eq(spool_shard_open(tmp, 0, &opt, &s), 0);
	spool_shard_stats(s, &st);
	cr_assert_eq(st.live_messages, (size_t)n);
	cr_assert_eq(st.truncated_bytes, 4096 - before, "the partial record and the zeros after it");
	cr_assert_eq(file_size(s, 3), before);
	expect_gone(s, t);
	spool_shard_close(s);
}

/* zeroed_shard - a shard on a zeroed segment 2 holding message a, with
 * the zeroed spare 3 ready and segment 1 collected. */
static struct spool_shard *zeroed_shard(char a[32])
{
	struct spool_options opt = { .segment_size = 4096, .preallocate = 4096,
				     .background_chores = true };
	struct spool_shard *s;
	struct spool_shard_stats st;

	cr_assert_eq(spool_shard_open(tmp, 0, &opt, &s), 0);
	cr_assert_eq(chores(s), 1);
	append(s, a, 1);
	cr_assert(flush(s));
	cr_assert_eq(chores(s), 2);
	spool_shard_stats(s, &st);
	cr_assert_eq(st.current_segment, 2);
	cr_assert_eq(file_size(s, 3), 4096);
	return s;
}

Test(spool_shard, a_torn_batch_before_a_waiting_spare_is_cut_not_corrupt)
{
	struct spool_options opt = { .segment_size = 4096, .preallocate = 4096,
				     .background_chores = true };
	struct spool_shard_stats st;
	char a[32], t[32];
	struct spool_shard *s = zeroed_shard(a);

	spool_shard_stats(s, &st);
	uint64_t before = st.current_size;
	append(s, t, 1);
	struct spool_flush f;
	cr_assert(spool_shard_flush_begin(s, &f));
	/* The batch's first bytes never reached the disk, a later part did:
	 * zeros at the end of the records, but data after them. */
	cr_assert_eq(pwrite(f.fd, f.data + 10, f.len - 10, (off_t)f.offset + 10),
		     (ssize_t)(f.len - 10));
	spool_shard_close(s);	/* the crash */

	cr_assert_eq(spool_shard_open(tmp, 0, &opt, &s), 0);
	spool_shard_stats(s, &st);
	cr_assert_eq(st.corrupt_segments, 0, "the spare after it holds no record");
	cr_assert_eq(st.truncated_bytes, 4096 - before);
	cr_assert_eq(file_size(s, 2), before);
	cr_assert_eq(st.current_segment, 3);
	cr_assert_eq(st.live_messages, 1);
	expect_live(s, a, SPOOL_STATUS_PENDING);
	expect_gone(s, t);
	spool_shard_close(s);
}

Test(spool_shard, a_failed_batch_over_zeros_leaves_the_segment_for_the_next_zeroed_spare)
{
	struct spool_shard_stats st;
	char a[32], b[32], c[32];
	struct spool_shard *s = zeroed_shard(a);
	struct spool_flush f;

	spool_shard_stats(s, &st);
	uint64_t size = st.current_size;
	append(s, b, 1);
	cr_assert(spool_shard_flush_begin(s, &f));
	spool_shard_flush_end(s, -EIO);
	cr_assert_eq(file_size(s, 2), size, "cut back to the batch start, zeros too");
	append(s, c, 1);
	cr_assert(flush(s));
	spool_shard_stats(s, &st);
	cr_assert_eq(st.current_segment, 3, "no appending to the cut segment");
	expect_live(s, a, SPOOL_STATUS_PENDING);
	expect_live(s, c, SPOOL_STATUS_PENDING);
	expect_gone(s, b);
	spool_shard_close(s);
}

Test(spool_shard, a_spare_without_room_for_its_zeros_is_an_empty_spare)
{
	struct spool_options opt = { .segment_size = 1 << 20, .preallocate = 1 << 20,
				     .background_chores = true };
	struct rlimit small = { 64 << 10, RLIM_INFINITY };
	struct spool_shard *s;
	struct spool_shard_stats st;
	char a[32];

	/* Files may not grow past 64 KiB: the zeros fail as ENOSPC would. */
	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
	cr_assert_eq(spool_shard_open(tmp, 0, &opt, &s), 0);
	cr_assert_eq(chores(s), 1, "the spare, made without zeros");
	cr_assert_eq(file_size(s, 2), 0);
	append(s, a, 1);
	cr_assert(flush(s));
	spool_shard_stats(s, &st);
	cr_assert_eq(st.current_segment, 1, "no rotation to an unzeroed spare");
	spool_shard_close(s);
}

/* chore_compact_setup - compact_setup with background chores, every chore
 * run after each flush: the rotation to segment 5 only marks compaction
 * due; its reads are the chore's. Returns with the compaction chore taken
 * (out) and not yet run. */
static struct spool_chore *chore_compact_setup(struct spool_shard **sp, char a[32])
{
	struct spool_options opt = { .segment_size = 1, .background_chores = true };
	char b[32], c[32], d[32], pad[32];

	cr_assert_eq(spool_shard_open(tmp, 0, &opt, sp), 0);
	struct spool_shard *s = *sp;
	chores(s);
	append(s, a, 2);
	append(s, b, 1);
	append(s, c, 1);
	append(s, d, 1);
	cr_assert(flush(s));				/* segment 1 */
	outcome(s, a, 0, SPOOL_STATUS_DELIVERED);
	outcome(s, a, 1, SPOOL_STATUS_HELD);
	outcome(s, b, 0, SPOOL_STATUS_DELIVERED);
	outcome(s, c, 0, SPOOL_STATUS_BOUNCED);
	outcome(s, d, 0, SPOOL_STATUS_DELETED);
	chores(s);
	cr_assert(flush(s));				/* segment 2 */
	for (int i = 0; i < 3; i++) {			/* segments 3, 4, 5 */
		chores(s);
		append(s, pad, 1);
		outcome(s, pad, 0, SPOOL_STATUS_DELIVERED);
		cr_assert(flush(s));
	}
	struct spool_shard_stats st;
	spool_shard_stats(s, &st);
	cr_assert_eq(st.current_segment, 5);
	cr_assert_eq(st.rotations_blocking, 0);
	cr_assert_eq(st.compactions, 0, "the rotation itself copies nothing");
	uint8_t st0, st1;
	cr_assert_eq(a_location(s, a, &st0, &st1), 1, "A still in segment 1");
	/* The spare for 6 first, then the compaction. */
	struct spool_chore *ch = spool_shard_chore_take(s);
	cr_assert_not_null(ch);
	spool_chore_run(ch);
	spool_shard_chore_done(s, ch);
	ch = spool_shard_chore_take(s);
	cr_assert_not_null(ch, "the compaction chore");
	return ch;
}

Test(spool_shard, compaction_reads_are_a_chore_and_later_outcomes_follow_the_copy)
{
	struct spool_shard *s;
	char a[32], pad[32];
	uint8_t st0, st1;
	struct spool_shard_stats st;

	struct spool_chore *ch = chore_compact_setup(&s, a);
	/* While the chore reads, A's second recipient is released: the
	 * outcome waits in the batch and must apply to the copy. */
	outcome(s, a, 1, SPOOL_STATUS_DEFERRED);
	spool_chore_run(ch);
	spool_shard_chore_done(s, ch);
	cr_assert(segment_exists(0, 1));
	cr_assert(flush(s));		/* the copy in front of the batch */
	spool_shard_stats(s, &st);
	cr_assert_eq(st.compactions, 1);
	cr_assert_eq(st.compacted, 1, "only A is live in segment 1: got %llu",
		     (unsigned long long)st.compacted);
	/* segment_size 1: that flush rotated to 6 (the spare) first */
	cr_assert_eq(a_location(s, a, &st0, &st1), st.current_segment, "A's copy is in the current segment");
	cr_assert_eq(st.current_segment, 6);
	cr_assert_eq(st0, SPOOL_STATUS_DELIVERED);
	cr_assert_eq(st1, SPOOL_STATUS_DEFERRED, "in memory: got %s", spool_status_name(st1));
	cr_assert_geq(chores(s), 1, "the collection of segment 1");
	cr_assert_not(segment_exists(0, 1), "segment 1 died with the copy");
	/* a restart finds the copy with the states and the later outcome */
	spool_shard_close(s);
	s = open_shard(0, 1);
	cr_assert_eq(a_location(s, a, &st0, &st1), 6);
	cr_assert_eq(st0, SPOOL_STATUS_DELIVERED);
	cr_assert_eq(st1, SPOOL_STATUS_DEFERRED, "after restart: got %s", spool_status_name(st1));
	cr_assert_eq(live_count(s), 1, "only A: got %zu", live_count(s));
	(void)pad;
	spool_shard_close(s);
}

Test(spool_shard, a_compaction_read_for_a_message_that_died_meanwhile_is_dropped)
{
	struct spool_shard *s;
	char a[32];
	struct spool_shard_stats st;

	struct spool_chore *ch = chore_compact_setup(&s, a);
	outcome(s, a, 1, SPOOL_STATUS_DELIVERED);
	cr_assert(flush(s));		/* A is gone before the chore is done */
	expect_gone(s, a);
	spool_chore_run(ch);
	spool_shard_chore_done(s, ch);
	char pad[32];
	append(s, pad, 1);
	cr_assert(flush(s));
	spool_shard_stats(s, &st);
	cr_assert_eq(st.compactions, 0, "nothing to copy");
	spool_shard_close(s);
	s = open_shard(0, 1);
	expect_gone(s, a);
	cr_assert_eq(live_count(s), 1, "only the pad: got %zu", live_count(s));
	spool_shard_close(s);
}
