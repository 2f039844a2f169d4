/*
 * fuzz_spool_recover - libFuzzer harness for crash recovery: the input
 * becomes the segment files of a spool directory, which is then scanned by
 * spool_recover() and opened with spool_shard_open() as the daemon does
 * after a crash (spool/spool_recover.h, spool/spool_shard.h).
 *
 *   tools/fuzz build && tools/fuzz run 60 spool_recover
 *
 * Input layout:
 *   byte 0      bit 0: split the data into two segments (seq 1 and 2) at
 *               the offset in bytes 1-2; bit 1: open read-only; bit 2: put
 *               the shard in w3 (beyond worker_count, as after a reduction
 *               of workers), else in w0
 *   bytes 1-2   split offset, little-endian (always present)
 *   the rest    segment bytes: records as spool_record.h encodes them
 *
 * Each input gets a fresh directory under $TMPDIR (default /tmp), removed
 * afterwards. Besides "never crash, never read out of bounds": every live
 * message is read back with spool_shard_read_message(); spool_recover()
 * reports as many live messages as the shard holds; and after open (which
 * cuts a torn tail) and collect, a second open finds the same live set.
 */
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool_recover.h"
#include "spool_shard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_IDS 32

struct ids {
	char id[MAX_IDS][SPOOL_QUEUE_ID_MAX + 1];
	size_t n;
	size_t total;
	size_t touched;
};

/* touch_message - read every byte a consumer would, for ASan's sake */
static size_t touch_message(const struct spool_message *m,
			    const struct spool_rcpt_state *st)
{
	size_t n = strlen(m->queue_id) + strlen(m->client_addr) +
		   strlen(m->helo) + strlen(m->auth_user) + strlen(m->sender) +
		   strlen(m->envid);

	for (size_t i = 0; i < m->rcpt_count; i++)
		n += strlen(m->rcpts[i].address) + strlen(m->rcpts[i].orcpt) +
		     st[i].status;
	if (m->body_len)
		n += m->body[0] + m->body[m->body_len - 1];
	return n;
}

/* on_live - remember the queue ids of live messages */
static int on_live(void *ctx, const struct spool_recovered *r)
{
	struct ids *ids = ctx;
	size_t len = strlen(r->msg->queue_id);

	if (len == 0 || len > SPOOL_QUEUE_ID_MAX)
		abort();
	ids->touched += touch_message(r->msg, r->state);
	if (ids->n < MAX_IDS)
		memcpy(ids->id[ids->n++], r->msg->queue_id, len + 1);
	ids->total++;
	return 0;
}

/* write_file - create path holding exactly len bytes of p */
static void write_file(const char *path, const uint8_t *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		abort();
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n <= 0)
			abort();
		p += n;
		len -= (size_t)n;
	}
	close(fd);
}

/* rm_entry - nftw callback removing one entry (depth first) */
static int rm_entry(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* open_and_walk - open the shard, read back each live message, collect */
static int open_and_walk(const char *dir, unsigned worker, bool read_only,
			 bool collect, struct ids *ids)
{
	struct spool_options opt = { .no_sync = true, .read_only = read_only,
				     .max_record = 1 << 20 };
	struct spool_shard *shard = NULL;
	struct spool_shard_stats st;
	struct spool_loaded *l;
	int rc;

	memset(ids, 0, sizeof(*ids));
	rc = spool_shard_open(dir, worker, &opt, &shard);
	if (rc < 0)
		return rc;
	spool_shard_stats(shard, &st);
	if (spool_shard_foreach_live(shard, on_live, ids) < 0)
		abort();
	if (ids->total != st.live_messages)
		abort();
	for (size_t i = 0; i < ids->n; i++) {
		if (spool_shard_read_message(shard, ids->id[i], &l) < 0)
			abort();
		ids->touched += touch_message(&l->msg, l->state);
		spool_loaded_free(l);
	}
	if (collect && spool_shard_collect(shard) < 0)
		abort();
	spool_shard_close(shard);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char dir[256], sub[300], path[400];
	const char *tmp = getenv("TMPDIR");
	struct ids *first, *again, *rec;
	unsigned worker;
	size_t split;
	bool two, read_only;
	int rc;

	if (size < 3)
		return 0;
	two = data[0] & 1;
	read_only = data[0] & 2;
	worker = (data[0] & 4) ? 3 : 0;
	split = (size_t)data[1] | (size_t)data[2] << 8;
	data += 3;
	size -= 3;
	if (split > size)
		split = size;

	snprintf(dir, sizeof(dir), "%s/ringmail-fuzz-spool.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(sub, sizeof(sub), "%s/w%u", dir, worker);
	if (mkdir(sub, 0700) < 0)
		abort();
	snprintf(path, sizeof(path), "%s/seg-%016x.rms", sub, 1);
	write_file(path, data, two ? split : size);
	if (two) {
		snprintf(path, sizeof(path), "%s/seg-%016x.rms", sub, 2);
		write_file(path, data + split, size - split);
	}

	first = calloc(3, sizeof(*first));
	if (first == NULL)
		abort();
	again = first + 1;
	rec = first + 2;
	rc = spool_recover(dir, 1, on_live, rec);
	if (rc >= 0 && (size_t)rc != rec->total)
		abort();
	if (open_and_walk(dir, worker, read_only, !read_only, first) == 0) {
		/* recover does not cut torn tails, open does: same live set */
		if (rc >= 0 && rec->total != first->total)
			abort();
		if (open_and_walk(dir, worker, read_only, false, again) == 0 &&
		    again->total != first->total)
			abort();
	}
	free(first);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
