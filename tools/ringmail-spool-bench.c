/*
 * ringmail-spool-bench - fill a spool with N messages, then time recovery.
 *
 *   ringmail-spool-bench [-w WORKERS] [-s BODY_BYTES] [-b BATCH] SPOOL_DIR N
 *   ringmail-spool-bench -r [-w WORKERS] SPOOL_DIR     (recovery only)
 *
 * Fill: WORKERS shards, messages of one recipient and BODY_BYTES of body
 * (default 2048), committed BATCH (default 512) per write through the same
 * flush_begin/flush_end calls the worker makes, without a sync per batch
 * (one syncfs at the end): this measures recovery, not the disk's fsync.
 * Recovery: spool_recover() over all shards (CRC of every byte, index,
 * decoding every live envelope), then spool_shard_open() of each shard (the
 * scan the daemon does at start). Prints one logfmt line per phase.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spool_recover.h"
#include "spool_shard.h"

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* bench_flush - the worker's write for one batch, done with pwrite. */
static void bench_flush(struct spool_shard *s)
{
	struct spool_flush f;

	if (!spool_shard_flush_begin(s, &f))
		return;
	ssize_t n = pwrite(f.fd, f.data, f.len, (off_t)f.offset);
	spool_shard_flush_end(s, n == (ssize_t)f.len ? 0 : -EIO);
	if (n != (ssize_t)f.len) {
		perror("pwrite");
		exit(1);
	}
}

static int bench_fill(const char *dir, unsigned workers, long count,
		      size_t body_len, int batch)
{
	struct spool_options opt = { .no_sync = true };
	uint8_t *body = malloc(body_len);
	struct spool_rcpt rcpt = { "user@example.org", 0, "" };

	for (size_t i = 0; i < body_len; i++)
		body[i] = (uint8_t)('a' + i % 26);
	for (unsigned w = 0; w < workers; w++) {
		struct spool_shard *s;
		int rc = spool_shard_open(dir, w, &opt, &s);
		if (rc < 0) {
			fprintf(stderr, "open: %s\n", strerror(-rc));
			return 1;
		}
		long mine = count / workers + ((long)w < count % workers);
		for (long i = 0; i < mine; i++) {
			char qid[32];
			spool_shard_new_queue_id(s, qid);
			struct spool_message m = {
				.queue_id = qid, .arrival_usec = 1,
				.client_addr = "127.0.0.1:40000", .helo = "bench",
				.sender = "bench@example.com", .rcpt_count = 1,
				.rcpts = &rcpt, .body = body, .body_len = body_len,
			};
			if (spool_shard_append_message(s, &m) < 0)
				return 1;
			if ((i + 1) % batch == 0)
				bench_flush(s);
		}
		bench_flush(s);
		spool_shard_close(s);
	}
	free(body);
	sync();
	return 0;
}

static int bench_count(void *ctx, const struct spool_recovered *r)
{
	*(size_t *)ctx += r->msg->body_len;
	return 0;
}

static int bench_recover(const char *dir, unsigned workers)
{
	size_t bytes = 0;
	double t0 = now_sec();
	int n = spool_recover(dir, workers, bench_count, &bytes);
	double t1 = now_sec();

	if (n < 0) {
		fprintf(stderr, "recover: %s\n", strerror(-n));
		return 1;
	}
	printf("phase=recover messages=%d body_bytes=%zu seconds=%.3f msgs_per_sec=%.0f\n",
	       n, bytes, t1 - t0, n / (t1 - t0));
	size_t live = 0;
	t0 = now_sec();
	for (unsigned w = 0; w < workers; w++) {
		struct spool_shard *s;
		struct spool_shard_stats st;
		if (spool_shard_open(dir, w, NULL, &s) < 0)
			return 1;
		spool_shard_stats(s, &st);
		live += st.live_messages;
		spool_shard_close(s);
	}
	t1 = now_sec();
	printf("phase=shard_open messages=%zu seconds=%.3f\n", live, t1 - t0);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned workers = 2;
	size_t body_len = 2048;
	int batch = 512, recover_only = 0, c;

	while ((c = getopt(argc, argv, "rw:s:b:")) != -1) {
		switch (c) {
		case 'r': recover_only = 1; break;
		case 'w': workers = (unsigned)atoi(optarg); break;
		case 's': body_len = (size_t)atol(optarg); break;
		case 'b': batch = atoi(optarg); break;
		default: goto usage;
		}
	}
	if (workers == 0 || batch <= 0 || argc - optind != (recover_only ? 1 : 2))
		goto usage;
	if (!recover_only) {
		long count = atol(argv[optind + 1]);
		double t0 = now_sec();
		if (bench_fill(argv[optind], workers, count, body_len, batch) != 0)
			return 1;
		printf("phase=fill messages=%ld seconds=%.3f\n", count, now_sec() - t0);
	}
	return bench_recover(argv[optind], workers);
usage:
	fprintf(stderr, "usage: %s [-w WORKERS] [-s BODY_BYTES] [-b BATCH] SPOOL_DIR N\n"
		"       %s -r [-w WORKERS] SPOOL_DIR\n", argv[0], argv[0]);
	return 2;
}
