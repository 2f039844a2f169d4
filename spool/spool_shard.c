/*
 * spool_shard - one worker's segment files, batches and index; see
 * spool_shard.h for the contract.
 *
 * State: segs[] sorted by seq, the last one current (appended to). Each
 * segment counts its live messages and lists the older segments whose
 * messages it holds final outcomes for (deps): it may be deleted only after
 * those. Two batch buffers alternate: pending (being filled) and inflight
 * (handed to the worker's ring, untouched until flush_end).
 *
 * The index changes only at commit (flush_end(0)) and during the open-time
 * scan, through one function, shard_apply(), so the in-memory view always
 * equals what a recovery of the disk would rebuild.
 */
#include "spool_shard.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "spool_index.h"
#include "xalloc.h"

#define SEGMENT_SIZE_DEFAULT (64ull << 20)
#define MAX_RECORD_DEFAULT ((size_t)128 << 20)
#define MAX_PENDING_DEFAULT ((size_t)512 << 20)
#define COMPACT_AGE 4			/* segments behind the current one */
#define COMPACT_MAX_BYTES ((size_t)4 << 20)	/* copied per rotation, at most */
#define QID_EPOCH_US 1577836800000000ll	/* 2020-01-01T00:00:00Z */
#define SCRATCH_RCPTS 32
/* The cap of the shard's struct bufs: none of their own. Appends to the
 * pending batch are capped at max_pending by shard_reserve(); the scan and
 * compaction images are as large as what they read from disk; a failed
 * batch's outcomes must go into the next one whatever its size. */
#define SHARD_BUF_MAX SIZE_MAX

struct spool_segment {
	uint64_t seq;
	int fd;
	uint64_t size;			/* committed bytes */
	uint64_t torn;			/* at open: damaged bytes past size */
	uint32_t live;			/* live messages stored here */
	uint32_t messages;		/* message records ever stored here */
	bool corrupt;			/* unreadable past size: never deleted */
	bool zeroed;			/* zeros past size (spool.preallocate) */
	bool dying;			/* in a collect chore, which owns fd */
	bool gone;			/* durably deleted: swept from segs */
	uint64_t *deps;			/* older segments it holds outcomes for */
	size_t ndeps, capdeps;
};

struct spool_shard {
	char dir[PATH_MAX];
	int dirfd;
	unsigned worker_id;
	struct spool_options opt;
	struct spool_segment *segs;	/* sorted by seq; last = current */
	size_t nsegs, capsegs;
	struct spool_index index;
	struct buf pending, inflight;	/* capped by shard_reserve() */
	bool in_flight;
	uint64_t inflight_seq, inflight_off;
	bool rotate_next;		/* truncate failed: leave that segment */
	int64_t qid_epoch;		/* us since QID_EPOCH_US */
	uint32_t qid_counter;
	uint64_t truncated_bytes, corrupt_segments;
	/* background chores (opt.background_chores) */
	enum { SPARE_NONE, SPARE_MAKING, SPARE_READY } spare;
	uint64_t spare_seq;
	int spare_fd;
	bool spare_zeroed;
	int64_t spare_retry_us, collect_retry_us;	/* after a failure */
	bool collect_due, chore_out;
	bool compact_due;		/* a rotation happened: look for work */
	struct spool_chore *compact_ready;	/* read, applied at the next flush */
	uint64_t rotations, rotations_blocking, rotations_deferred, rotate_us_max;
	uint64_t compactions, compacted;	/* chore compactions written, records */
};

/* A chore carries copies of what its syscalls need: the helper thread
 * never reads the shard. */
enum chore_kind { CHORE_SPARE, CHORE_COLLECT, CHORE_COMPACT };

struct spool_chore {
	enum chore_kind kind;
	char dir[PATH_MAX];
	int result;			/* spare: open/fsync; collect: the fsync */
	uint64_t seq;			/* spare: its seq; */
	int fd;				/* spare: the new file */
	uint64_t zeros;			/* spare: bytes to write as zeros */
	int zeros_error;		/* spare: why it has none after all */
	size_t n;			/* collect: segments to delete */
	uint64_t *seqs;
	int *fds;
	int *errs;			/* each unlink's result */
	/* compact: n records to read (seqs, fds as above), at offs, lens
	 * bytes each, of the entries ids; read one after another into data. */
	uint64_t *offs;
	uint32_t *lens;
	char **ids;
	uint8_t *data;
	size_t data_len;
};

static void chore_free(struct spool_chore *ch);

static const char qid_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* --- small helpers -------------------------------------------------------- */

static int64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void spool_shard_segment_path(const struct spool_shard *s, uint64_t seq,
			      char *buf, size_t size)
{
	snprintf(buf, size, "%s/seg-%016" PRIx64 ".rms", s->dir, seq);
}

/* shard_find_segment - binary search by seq; NULL if deleted. */
static struct spool_segment *shard_find_segment(struct spool_shard *s,
						uint64_t seq)
{
	size_t lo = 0, hi = s->nsegs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->segs[mid].seq == seq)
			return &s->segs[mid];
		if (s->segs[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static struct spool_segment *shard_current(struct spool_shard *s)
{
	return s->nsegs ? &s->segs[s->nsegs - 1] : NULL;
}

/* shard_push_segment - append a segment (seq above all others). */
static struct spool_segment *shard_push_segment(struct spool_shard *s,
						uint64_t seq, int fd)
{
	if (s->nsegs == s->capsegs) {
		size_t cap = s->capsegs ? s->capsegs * 2 : 16;
		s->segs = xreallocarray(s->segs, cap, sizeof(*s->segs));
		s->capsegs = cap;
	}
	struct spool_segment *g = &s->segs[s->nsegs++];
	memset(g, 0, sizeof(*g));
	g->seq = seq;
	g->fd = fd;
	return g;
}

/* segment_add_dep - remember that g holds outcomes for segment dep. */
static void segment_add_dep(struct spool_segment *g, uint64_t dep)
{
	for (size_t i = g->ndeps; i > 0; i--)
		if (g->deps[i - 1] == dep)
			return;
	if (g->ndeps == g->capdeps) {
		size_t cap = g->capdeps ? g->capdeps * 2 : 4;
		g->deps = xreallocarray(g->deps, cap, sizeof(*g->deps));
		g->capdeps = cap;
	}
	g->deps[g->ndeps++] = dep;
}

/* --- the index: one place where records take effect ----------------------- */

/* shard_kill - e's message is dead (or superseded): drop it. */
static void shard_kill(struct spool_shard *s, struct spool_entry *e)
{
	struct spool_segment *g = shard_find_segment(s, e->segment);

	if (g == NULL || g->live == 0)
		log_panic("spool: live count broken for segment %" PRIu64,
			  e->segment);
	g->live--;
	spool_index_remove(&s->index, e);
}

/* shard_apply_outcome - a recipient's new state; final states are sticky. */
static void shard_apply_outcome(struct spool_shard *s,
				const struct spool_outcome *o, uint64_t seq)
{
	struct spool_entry *e = spool_index_find(&s->index, o->queue_id);

	/* Unknown: its message is already dead, or in a deleted segment. */
	if (e == NULL || o->rcpt_index >= e->rcpt_count)
		return;
	struct spool_rcpt_state *st = &e->state[o->rcpt_index];
	if (SPOOL_STATUS_IS_FINAL(st->status))
		return;
	bool was_held = st->status == SPOOL_STATUS_HELD;
	st->attempts = o->attempts;
	st->next_attempt = o->next_attempt;
	st->status = o->status;
	if (o->reply != NULL && o->reply[0] != '\0')
		spool_index_set_reply(&s->index, e, o->reply);
	bool final = SPOOL_STATUS_IS_FINAL(o->status);
	/* Deferrals are not deps: losing one only resets a retry timer.
	 * A hold is one: losing it would let the message go; and so is what
	 * ends a hold (a release): losing it would hold the message again. */
	if (!final && o->status != SPOOL_STATUS_HELD && !was_held)
		return;
	if (e->segment != seq)
		segment_add_dep(shard_find_segment(s, seq), e->segment);
	if (final && ++e->final_count == e->rcpt_count)
		shard_kill(s, e);
}

/* shard_apply - let a committed record at (seq, off) take effect. */
static void shard_apply(struct spool_shard *s, const struct spool_record *rec,
			uint64_t seq, uint64_t off)
{
	if (rec->type == SPOOL_RECORD_OUTCOME) {
		shard_apply_outcome(s, &rec->outcome, seq);
		return;
	}
	const struct spool_message *m = &rec->message;
	struct spool_entry *old = spool_index_find(&s->index, m->queue_id);
	if (old != NULL) {
		/* A rewrite: the newest copy wins, and its segment must outlive
		 * the old copy's, or a crash would bring the old one back. */
		if (old->segment != seq)
			segment_add_dep(shard_find_segment(s, seq), old->segment);
		shard_kill(s, old);
	}
	struct spool_entry *e = spool_index_insert(&s->index, m->queue_id,
						   (uint32_t)m->rcpt_count);
	e->segment = seq;
	e->offset = off;
	e->length = rec->length;
	struct spool_segment *g = shard_find_segment(s, seq);
	g->live++;
	g->messages++;
}

/* shard_note_queue_id - keep new ids above any id already on disk, so a
 * clock stepped back between runs cannot repeat one. */
static void shard_note_queue_id(struct spool_shard *s, const char *id)
{
	int64_t v = 0;

	if (strlen(id) != 18)
		return;
	for (int i = 0; i < 10; i++) {
		const char *c = strchr(qid_alphabet, id[i]);
		if (c == NULL || *c == '\0')
			return;
		v = v * 32 + (c - qid_alphabet);
	}
	if (v >= s->qid_epoch)
		s->qid_epoch = v + 1;
}

/* --- open: scan what is on disk ------------------------------------------- */

/* read_all - pread exactly len bytes at off; -EIO on a short file. */
static int read_all(int fd, uint8_t *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

/* shard_scan_bytes - apply every valid record of one segment image;
 * returns the length of the valid prefix. */
static uint64_t shard_scan_bytes(struct spool_shard *s, uint64_t seq,
				 const uint8_t *p, uint64_t size)
{
	struct spool_rcpt scratch[SCRATCH_RCPTS];
	uint64_t off = 0;

	while (off < size) {
		struct spool_record rec;
		ssize_t n = spool_record_decode_scratch(p + off, size - off, &rec,
							true, scratch,
							SCRATCH_RCPTS);
		if (n < 0)
			break;
		if (rec.type == SPOOL_RECORD_MESSAGE)
			shard_note_queue_id(s, rec.message.queue_id);
		shard_apply(s, &rec, seq, off);
		spool_record_clear(&rec);
		off += (uint64_t)n;
	}
	return off;
}

/* all_zero - no record starts with a zero byte (its magic), so zeros
 * after the last valid record are preallocated space, never a torn write:
 * a write that reached the disk in part leaves some of its bytes. */
static bool all_zero(const uint8_t *p, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		if (p[i] != 0)
			return false;
	return true;
}

/* shard_scan_segment - read segment g whole and apply it; what follows
 * its valid records is nothing, zeros (preallocated) or damage (g->torn,
 * settled by shard_settle_tails once every segment is read). */
static int shard_scan_segment(struct spool_shard *s, struct spool_segment *g,
			      struct buf *img)
{
	struct stat st;

	if (fstat(g->fd, &st) < 0)
		return -errno;
	uint64_t size = (uint64_t)st.st_size;
	buf_reset(img);
	if (buf_reserve(img, (size_t)size) < 0)
		return -ENOMEM;
	int rc = read_all(g->fd, (uint8_t *)buf_tail(img), size, 0);
	if (rc < 0)
		return rc;
	const uint8_t *p = (const uint8_t *)buf_tail(img);
	g->size = shard_scan_bytes(s, g->seq, p, size);
	uint64_t rest = size - g->size;	/* p is NULL for an empty file */
	if (rest > 0 && all_zero(p + g->size, rest))
		g->zeroed = true;		/* written over next */
	else
		g->torn = rest;
	return 0;
}

/* shard_settle_tails - damage followed only by segments without a record
 * (spares, made ahead and never written) is the batch in flight at the
 * crash, never acknowledged: cut it, unless read-only. Followed by
 * records, what follows the damage may be acknowledged mail: the file
 * stays for the operator, whatever the readable part says (collection
 * skips it). */
static int shard_settle_tails(struct spool_shard *s)
{
	bool records_after = false;

	for (size_t i = s->nsegs; i-- > 0;) {
		struct spool_segment *g = &s->segs[i];
		if (g->torn > 0 && !records_after && !s->opt.read_only) {
			log_warn("spool_torn_tail", "segment=%016" PRIx64 " valid=%" PRIu64
				 " cut=%" PRIu64, g->seq, g->size, g->torn);
			if (ftruncate(g->fd, (off_t)g->size) < 0 || fdatasync(g->fd) < 0)
				return -errno;
			s->truncated_bytes += g->torn;
		} else if (g->torn > 0 && records_after) {
			log_error("spool_corrupt_segment", "dir=%s segment=%016" PRIx64
				  " valid=%" PRIu64 " size=%" PRIu64 " note=\"kept for salvage\"",
				  s->dir, g->seq, g->size, g->size + g->torn);
			g->corrupt = true;
			s->corrupt_segments++;
		}
		records_after = records_after || g->size > 0 || g->torn > 0;
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* shard_list_segments - sorted seqs of seg-*.rms files; caller frees. */
static int shard_list_segments(struct spool_shard *s, uint64_t **out,
			       size_t *count)
{
	int fd = dup(s->dirfd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	uint64_t *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;

	if (d == NULL) {
		int err = -errno;
		if (fd >= 0)
			close(fd);
		return err;
	}
	while ((de = readdir(d)) != NULL) {
		uint64_t seq;
		char tail[8];
		if (strlen(de->d_name) != 24 ||
		    sscanf(de->d_name, "seg-%16" SCNx64 "%4s", &seq, tail) != 2 ||
		    strcmp(tail, ".rms") != 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[n++] = seq;
	}
	closedir(d);
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_u64);
	*out = v;
	*count = n;
	return 0;
}

/* shard_create_segment - new empty current segment seq, made durable. */
static int shard_create_segment(struct spool_shard *s, uint64_t seq)
{
	char path[PATH_MAX + 32];

	spool_shard_segment_path(s, seq, path, sizeof(path));
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	if (fsync(s->dirfd) < 0) {
		int err = -errno;
		close(fd);
		unlink(path);
		return err;
	}
	shard_push_segment(s, seq, fd);
	return 0;
}

/* shard_load - open and scan every segment, oldest first. */
static int shard_load(struct spool_shard *s)
{
	uint64_t *seqs = NULL;
	size_t n = 0;
	struct buf img;
	int rc = shard_list_segments(s, &seqs, &n);

	buf_init(&img, SHARD_BUF_MAX);

	for (size_t i = 0; rc == 0 && i < n; i++) {
		char path[PATH_MAX + 32];
		spool_shard_segment_path(s, seqs[i], path, sizeof(path));
		int fd = open(path, (s->opt.read_only ? O_RDONLY : O_RDWR) |
			      O_CLOEXEC);
		if (fd < 0) {
			rc = -errno;
			break;
		}
		rc = shard_scan_segment(s, shard_push_segment(s, seqs[i], fd), &img);
	}
	buf_free(&img);
	free(seqs);
	if (rc == 0)
		rc = shard_settle_tails(s);
	if (rc == 0 && s->nsegs == 0 && !s->opt.read_only)
		rc = shard_create_segment(s, 1);
	return rc;
}

/* shard_open_dir - mkdir -p <spool_dir>/w<N> (unless read-only), open it. */
static int shard_open_dir(struct spool_shard *s, const char *spool_dir)
{
	if (snprintf(s->dir, sizeof(s->dir), "%s/w%u", spool_dir, s->worker_id)
	    >= (int)sizeof(s->dir) - 32)
		return -ENAMETOOLONG;
	if (!s->opt.read_only) {
		if (mkdir(spool_dir, 0750) < 0 && errno != EEXIST)
			return -errno;
		if (mkdir(s->dir, 0750) == 0) {
			int pfd = open(spool_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (pfd >= 0) {
				fsync(pfd);
				close(pfd);
			}
		} else if (errno != EEXIST) {
			return -errno;
		}
	}
	s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return s->dirfd < 0 ? -errno : 0;
}

int spool_shard_open(const char *spool_dir, unsigned worker_id,
		     const struct spool_options *opt, struct spool_shard **out)
{
	struct spool_shard *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (s == NULL)
		return -ENOMEM;
	s->dirfd = -1;
	s->spare_fd = -1;
	s->worker_id = worker_id;
	if (opt)
		s->opt = *opt;
	if (s->opt.segment_size == 0)
		s->opt.segment_size = SEGMENT_SIZE_DEFAULT;
	if (s->opt.max_record == 0)
		s->opt.max_record = MAX_RECORD_DEFAULT;
	if (s->opt.max_pending == 0)
		s->opt.max_pending = MAX_PENDING_DEFAULT;
	buf_init(&s->pending, SHARD_BUF_MAX);
	buf_init(&s->inflight, SHARD_BUF_MAX);
	int rc = shard_open_dir(s, spool_dir);
	if (rc == 0)
		rc = shard_load(s);
	if (rc < 0) {
		spool_shard_close(s);
		return rc;
	}
	/* What died before the last stop (or crash) goes now. */
	int n = s->opt.read_only ? 0 : spool_shard_collect(s);
	if (n < 0)
		log_error("spool_collect_failed", "dir=%s error=%s", s->dir, strerror(-n));
	int64_t now = now_usec() - QID_EPOCH_US;
	if (now > s->qid_epoch)
		s->qid_epoch = now;
	*out = s;
	return 0;
}

struct spool_shard *spool_shard_close(struct spool_shard *s)
{
	if (s == NULL)
		return NULL;
	for (size_t i = 0; i < s->nsegs; i++) {
		/* A dying segment's fd belongs to its chore. */
		if (s->segs[i].fd >= 0 && !s->segs[i].dying)
			close(s->segs[i].fd);
		free(s->segs[i].deps);
	}
	if (s->spare == SPARE_READY)
		close(s->spare_fd);
	if (s->compact_ready != NULL)
		chore_free(s->compact_ready);
	free(s->segs);
	spool_index_free(&s->index);
	buf_free(&s->pending);
	buf_free(&s->inflight);
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s);
	return NULL;
}

/* --- queue ids and appends ------------------------------------------------- */

void spool_shard_new_queue_id(struct spool_shard *s, char out[32])
{
	if (s->qid_counter >= (1u << 30)) {
		int64_t now = now_usec() - QID_EPOCH_US;
		s->qid_epoch = now > s->qid_epoch ? now : s->qid_epoch + 1;
		s->qid_counter = 0;
	}
	uint64_t parts[3] = { (uint64_t)s->qid_epoch, s->worker_id & 1023u,
			      s->qid_counter++ };
	const int width[3] = { 10, 2, 6 };
	int pos = 18;

	out[pos] = '\0';
	for (int p = 2; p >= 0; p--)
		for (int i = 0; i < width[p]; i++, parts[p] >>= 5)
			out[--pos] = qid_alphabet[parts[p] & 31];
}

/* shard_reserve - room for an n-byte record in the pending batch, which
 * never grows past max_pending through an append. */
static int shard_reserve(struct spool_shard *s, size_t n)
{
	if (s->opt.read_only)
		return -EROFS;
	if (n > s->opt.max_record)
		return -EFBIG;
	if (n > s->opt.max_pending || buf_len(&s->pending) > s->opt.max_pending - n)
		return -ENOBUFS;
	return buf_reserve(&s->pending, n);
}

int spool_shard_append_message(struct spool_shard *s,
			       const struct spool_message *msg)
{
	size_t n = spool_record_message_size(msg);

	if (n == 0)
		return -EINVAL;
	int rc = shard_reserve(s, n);
	if (rc < 0)
		return rc;
	ssize_t w = spool_record_encode_message(msg, (uint8_t *)buf_tail(&s->pending), n);
	if (w < 0)
		return (int)w;
	buf_produce(&s->pending, (size_t)w);
	return 0;
}

int spool_shard_append_outcome(struct spool_shard *s,
			       const struct spool_outcome *o)
{
	size_t n = spool_record_outcome_size(o);

	if (n == 0)
		return -EINVAL;
	int rc = shard_reserve(s, n);
	if (rc < 0)
		return rc;
	ssize_t w = spool_record_encode_outcome(o, (uint8_t *)buf_tail(&s->pending), n);
	if (w < 0)
		return (int)w;
	buf_produce(&s->pending, (size_t)w);
	return 0;
}

int spool_shard_append_recovered(struct spool_shard *s,
				 const struct spool_recovered *r)
{
	int rc = spool_shard_append_message(s, r->msg);

	for (size_t i = 0; rc == 0 && i < r->msg->rcpt_count; i++) {
		const struct spool_rcpt_state *st = &r->state[i];
		if (st->status == SPOOL_STATUS_PENDING)
			continue;
		struct spool_outcome o = { r->msg->queue_id, (uint32_t)i,
					   st->status, st->attempts,
					   st->next_attempt,
					   SPOOL_STATUS_IS_FINAL(st->status) ? NULL : r->reply };
		rc = spool_shard_append_outcome(s, &o);
	}
	return rc;
}

size_t spool_shard_pending(const struct spool_shard *s)
{
	return buf_len(&s->pending);
}

bool spool_shard_in_flight(const struct spool_shard *s)
{
	return s->in_flight;
}

/* --- group commit ---------------------------------------------------------- */

/* compact_wanted - an old segment mostly dead: at least COMPACT_AGE
 * segments behind the current one, at most half of its messages live. */
static bool compact_wanted(struct spool_shard *s, const struct spool_segment *g)
{
	return g->live > 0 && g->seq + COMPACT_AGE <= shard_current(s)->seq &&
	       (uint64_t)g->live * 2 <= g->messages;
}

/* compact_copy - append e's message record as it is on disk, then an
 * OUTCOME per recipient that is no longer pending, to b. */
static int compact_outcomes(const struct spool_entry *e, struct buf *b);

static int compact_copy(struct spool_shard *s, const struct spool_entry *e,
			const struct spool_segment *g, struct buf *b)
{
	int rc = buf_reserve(b, e->length);

	(void)s;
	if (rc == 0)
		rc = read_all(g->fd, (uint8_t *)buf_tail(b), e->length, e->offset);
	if (rc < 0)
		return rc;
	buf_produce(b, e->length);
	return compact_outcomes(e, b);
}

/* compact_outcomes - an OUTCOME per recipient of e no longer pending. */
static int compact_outcomes(const struct spool_entry *e, struct buf *b)
{
	for (uint32_t i = 0; i < e->rcpt_count; i++) {
		const struct spool_rcpt_state *st = &e->state[i];
		if (st->status == SPOOL_STATUS_PENDING)
			continue;
		struct spool_outcome o = { spool_entry_queue_id(e), i, st->status, st->attempts, st->next_attempt,
					   SPOOL_STATUS_IS_FINAL(st->status) || e->reply == NULL ? NULL
												   : e->reply->text };
		size_t n = spool_record_outcome_size(&o);
		if (buf_reserve(b, n) < 0)
			return -ENOBUFS;
		ssize_t w = spool_record_encode_outcome(&o, (uint8_t *)buf_tail(b), n);
		if (w < 0)
			return (int)w;
		buf_produce(b, (size_t)w);
	}
	return 0;
}

/* shard_compact - copy the live messages of mostly dead old segments into
 * the batch about to be written, so those segments die and are collected.
 * The copies (each a message record and its recipients' states) go in
 * front of the batch's own records: states committed so far are in the
 * copy, and the batch's outcomes then apply to the new copy, on disk as in
 * the index. A copy wins over the original (shard_apply), and its segment
 * must outlive the original's. Bounded to a quarter of a segment per
 * rotation; blocking reads, as rare as rotations. */
static size_t shard_compact(struct spool_shard *s, size_t *bytes)
{
	struct buf b;
	size_t budget = s->opt.segment_size / 4, moved = 0;
	bool any = false;

	*bytes = 0;
	buf_init(&b, SHARD_BUF_MAX);
	if (budget > COMPACT_MAX_BYTES)
		budget = COMPACT_MAX_BYTES;
	for (size_t i = 0; i + 1 < s->nsegs && !any; i++)
		any = compact_wanted(s, &s->segs[i]);
	if (!any || buf_len(&s->pending) + budget > s->opt.max_pending)
		return 0;
	for (size_t k = 0; k < s->index.cap && (moved == 0 || buf_len(&b) < budget); k++) {
		const struct spool_entry *e = s->index.slots[k];
		const struct spool_segment *g = e != NULL ? shard_find_segment(s, e->segment) : NULL;
		if (g == NULL || g == shard_current(s) || !compact_wanted(s, g))
			continue;
		if (compact_copy(s, e, g, &b) < 0) {
			log_error("spool_compact_failed", "dir=%s id=%s", s->dir, spool_entry_queue_id(e));
			buf_free(&b);
			return 0;
		}
		moved++;
	}
	if (moved > 0 && buf_prepend(&s->pending, buf_data(&b), buf_len(&b)) == 0)
		*bytes = buf_len(&b);
	else
		moved = 0;
	buf_free(&b);
	return moved;
}

/* shard_next_segment - make the next segment current: the spare when
 * one is ready (no syscall), else create it in place (blocking). Returns
 * 0, 1 when the full segment must take one more batch because its spare
 * is still being made, or -errno (-EAGAIN: a forced rotation waits for
 * the spare). */
static int shard_next_segment(struct spool_shard *s, bool forced, bool *blocking)
{
	struct spool_segment *cur = shard_current(s);

	*blocking = false;
	if (s->opt.background_chores && s->spare == SPARE_READY) {
		shard_push_segment(s, s->spare_seq, s->spare_fd)->zeroed = s->spare_zeroed;
		s->spare = SPARE_NONE;
		s->spare_fd = -1;
		return 0;
	}
	if (s->opt.background_chores && s->spare == SPARE_MAKING) {
		s->rotations_deferred++;
		return forced ? -EAGAIN : 1;
	}
	*blocking = true;
	return shard_create_segment(s, cur ? cur->seq + 1 : 1);
}

/* shard_rotate - start a new current segment, compact, and collect the
 * segments that died since the last rotation: with background chores
 * compaction (its reads) and collection are chores, and the segment
 * usually the spare, so no syscall remains here; without, creat + fsync,
 * compaction's preads and unlink + fsync of the directory, blocking. */
static int shard_rotate(struct spool_shard *s)
{
	int64_t t0 = now_usec();
	bool blocking;
	int rc = shard_next_segment(s, s->rotate_next, &blocking);

	if (rc == 1 || rc == -EAGAIN)
		return rc;
	if (rc < 0) {
		log_error("spool_rotate_failed", "dir=%s error=%s", s->dir,
			  strerror(-rc));
		return rc;
	}
	s->rotate_next = false;
	size_t bytes = 0, moved = 0;
	int n = 0;
	if (s->opt.background_chores) {
		s->collect_due = true;
		s->compact_due = true;
	} else {
		moved = shard_compact(s, &bytes);
		n = spool_shard_collect(s);
	}
	if (n < 0)
		log_error("spool_collect_failed", "dir=%s error=%s", s->dir, strerror(-n));
	uint64_t us = (uint64_t)(now_usec() - t0);
	s->rotations++;
	s->rotations_blocking += blocking;
	if (us > s->rotate_us_max)
		s->rotate_us_max = us;
	/* The time the worker was held (before the log line's own write). */
	log_info("spool_rotate", "dir=%s segment=%llu blocking=%d compacted=%zu compacted_bytes=%zu collected=%d ms=%.3f",
		 s->dir, (unsigned long long)shard_current(s)->seq, blocking, moved, bytes,
		 n < 0 ? 0 : n, (double)us / 1000.0);
	return 0;
}

static void shard_compact_apply(struct spool_shard *s);

bool spool_shard_flush_begin(struct spool_shard *s, struct spool_flush *f)
{
	if (s->in_flight || s->opt.read_only)
		return false;
	if (s->compact_ready != NULL)
		shard_compact_apply(s);
	if (buf_len(&s->pending) == 0)
		return false;
	struct spool_segment *cur = shard_current(s);
	/* A segment without zeros ahead (a new shard's first, one whose torn
	 * tail was cut) gives way to the first zeroed spare, whose syncs are
	 * cheaper; it is collected when its messages are done. */
	bool unzeroed = !cur->zeroed && s->spare == SPARE_READY && s->spare_zeroed;
	if (s->rotate_next || unzeroed ||
	    (cur->size > 0 && cur->size + buf_len(&s->pending) > s->opt.segment_size)) {
		int rc = shard_rotate(s);
		if (rc < 0)
			return false;
		cur = shard_current(s);
	}
	/* Swap: the filled batch goes to the ring, the empty one fills. */
	struct buf t = s->inflight;
	s->inflight = s->pending;
	s->pending = t;
	buf_reset(&s->pending);
	s->in_flight = true;
	s->inflight_seq = cur->seq;
	s->inflight_off = cur->size;
	*f = (struct spool_flush){ .fd = cur->fd, .offset = cur->size,
				   .data = (const uint8_t *)buf_data(&s->inflight),
				   .len = buf_len(&s->inflight),
				   .sync = !s->opt.no_sync, .segment = cur->seq };
	return true;
}

/* shard_commit - the batch is on disk: apply its records in order. */
static void shard_commit(struct spool_shard *s)
{
	struct spool_rcpt scratch[SCRATCH_RCPTS];
	size_t off = 0;

	const uint8_t *p = (const uint8_t *)buf_data(&s->inflight);
	size_t len = buf_len(&s->inflight);

	while (off < len) {
		struct spool_record rec;
		ssize_t n = spool_record_decode_scratch(p + off, len - off,
							&rec, false, scratch,
							SCRATCH_RCPTS);
		if (n < 0)
			log_panic("spool: own batch undecodable at %zu", off);
		shard_apply(s, &rec, s->inflight_seq, s->inflight_off + off);
		spool_record_clear(&rec);
		off += (size_t)n;
	}
	shard_current(s)->size += len;
}

/* shard_requeue_outcomes - a failed batch's outcomes go first into the
 * next batch; its messages are dropped (their sessions get 452). */
static void shard_requeue_outcomes(struct spool_shard *s)
{
	const uint8_t *p = (const uint8_t *)buf_data(&s->inflight);
	size_t len = buf_len(&s->inflight), off = 0;
	struct buf keep;

	buf_init(&keep, SHARD_BUF_MAX);
	while (off < len) {
		size_t n = (size_t)spool_record_peek(p + off, len - off);
		if (p[off + 4] == SPOOL_RECORD_OUTCOME)
			buf_append(&keep, p + off, n);
		off += n;
	}
	/* Cannot fail: neither buffer is capped (SHARD_BUF_MAX). */
	if (buf_len(&keep) > 0)
		buf_prepend(&s->pending, buf_data(&keep), buf_len(&keep));
	buf_free(&keep);
}

void spool_shard_flush_end(struct spool_shard *s, int result)
{
	if (!s->in_flight)
		log_panic("spool: flush_end without a batch in flight");
	s->in_flight = false;
	if (result == 0) {
		shard_commit(s);
		buf_reset(&s->inflight);
		return;
	}
	struct spool_segment *cur = shard_current(s);
	log_error("spool_flush_failed", "dir=%s segment=%016" PRIx64
		  " bytes=%zu error=%s", s->dir, cur->seq, buf_len(&s->inflight),
		  strerror(-result));
	/* No partial or unacknowledged record may stay in the segment, nor
	 * come back after a crash (an error path: blocking is allowed). The
	 * zeros past it go too: the next zeroed spare takes over. */
	cur->zeroed = false;
	if (ftruncate(cur->fd, (off_t)s->inflight_off) < 0 || fdatasync(cur->fd) < 0) {
		log_error("spool_truncate_failed", "dir=%s segment=%016" PRIx64
			  " error=%m", s->dir, cur->seq);
		s->rotate_next = true;
	}
	shard_requeue_outcomes(s);
	buf_reset(&s->inflight);
}

/* --- segment deletion ------------------------------------------------------ */

/* segment_deletable - no live message and every dep already gone. */
static bool segment_deletable(struct spool_shard *s, struct spool_segment *g)
{
	if (g->live != 0 || g->corrupt || g->dying || g == shard_current(s))
		return false;
	for (size_t i = 0; i < g->ndeps; i++)
		if (shard_find_segment(s, g->deps[i]) != NULL)
			return false;
	return true;
}

/* shard_collect_round - unlink what is deletable now; returns the count. */
static int shard_collect_round(struct spool_shard *s)
{
	size_t keep = 0;
	int removed = 0;
	bool *dead = xcalloc(s->nsegs, sizeof(*dead));

	for (size_t i = 0; i < s->nsegs; i++)
		dead[i] = segment_deletable(s, &s->segs[i]);
	for (size_t i = 0; i < s->nsegs; i++) {
		struct spool_segment *g = &s->segs[i];
		char path[PATH_MAX + 32];
		spool_shard_segment_path(s, g->seq, path, sizeof(path));
		if (dead[i] && unlink(path) < 0 && errno != ENOENT) {
			log_error("spool_unlink_failed", "path=%s error=%m", path);
			dead[i] = false;
		}
		if (!dead[i]) {
			s->segs[keep++] = *g;
			continue;
		}
		if (g->fd >= 0)
			close(g->fd);
		free(g->deps);
		removed++;
	}
	s->nsegs = keep;
	free(dead);
	return removed;
}

int spool_shard_collect(struct spool_shard *s)
{
	int total = 0, n;

	if (s->opt.read_only)
		return 0;
	/* A round's unlinks must be durable before the segments that depend
	 * on them go: otherwise a crash could bring back a message without
	 * the outcomes that made it dead. */
	while ((n = shard_collect_round(s)) > 0) {
		if (fsync(s->dirfd) < 0)
			return -errno;
		total += n;
	}
	return total;
}

/* --- reading back ---------------------------------------------------------- */

int spool_shard_read_message(struct spool_shard *s, const char *queue_id,
			     struct spool_loaded **out)
{
	struct spool_entry *e = spool_index_find(&s->index, queue_id);
	struct spool_segment *g = e ? shard_find_segment(s, e->segment) : NULL;

	*out = NULL;
	if (g == NULL)
		return -ENOENT;
	struct spool_loaded *l = calloc(1, sizeof(*l));
	uint8_t *bytes = malloc(e->length);
	if (l == NULL || bytes == NULL) {
		free(l);
		free(bytes);
		return -ENOMEM;
	}
	l->bytes = bytes;
	int rc = read_all(g->fd, bytes, e->length, e->offset);
	if (rc == 0 && spool_record_decode(bytes, e->length, &l->rec) < 0)
		rc = -EBADMSG;
	if (rc == 0) {
		l->state = malloc(e->rcpt_count * sizeof(*l->state));
		if (l->state == NULL)
			rc = -ENOMEM;
	}
	if (rc < 0) {
		spool_loaded_free(l);
		return rc;
	}
	memcpy(l->state, e->state, e->rcpt_count * sizeof(*l->state));
	l->msg = l->rec.message;
	l->loc = (struct spool_location){ e->segment, e->offset, e->length };
	*out = l;
	return 0;
}

struct spool_loaded *spool_loaded_free(struct spool_loaded *l)
{
	if (l == NULL)
		return NULL;
	spool_record_clear(&l->rec);
	free(l->state);
	free(l->bytes);
	free(l);
	return NULL;
}

static int cmp_entry_location(const void *a, const void *b)
{
	const struct spool_entry *x = *(struct spool_entry *const *)a;
	const struct spool_entry *y = *(struct spool_entry *const *)b;

	if (x->segment != y->segment)
		return x->segment < y->segment ? -1 : 1;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* shard_visit_run - read the byte range holding v[0..n) (one segment) in
 * one pread and hand each message to fn. */
static int shard_visit_run(struct spool_shard *s, struct spool_entry **v,
			   size_t n, struct buf *img, spool_live_fn fn,
			   void *ctx)
{
	struct spool_segment *g = shard_find_segment(s, v[0]->segment);
	uint64_t base = v[0]->offset;
	uint64_t end = v[n - 1]->offset + v[n - 1]->length;
	struct spool_rcpt scratch[SCRATCH_RCPTS];

	buf_reset(img);
	if (buf_reserve(img, end - base) < 0)
		return -ENOMEM;
	const uint8_t *p = (const uint8_t *)buf_tail(img);
	int rc = read_all(g->fd, (uint8_t *)buf_tail(img), end - base, base);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct spool_record rec;
		if (spool_record_decode_scratch(p + (v[i]->offset - base),
						v[i]->length, &rec, true, scratch,
						SCRATCH_RCPTS) < 0)
			return -EBADMSG;	/* changed under us */
		struct spool_recovered r = {
			.worker_id = s->worker_id,
			.loc = { v[i]->segment, v[i]->offset, v[i]->length },
			.msg = &rec.message, .state = v[i]->state,
			.reply = v[i]->reply != NULL ? v[i]->reply->text : NULL,
		};
		rc = fn(ctx, &r);
		spool_record_clear(&rec);
	}
	return rc;
}

int spool_shard_foreach_live(struct spool_shard *s, spool_live_fn fn, void *ctx)
{
	size_t n = 0;
	struct spool_entry **v = malloc((s->index.count + 1) * sizeof(*v));
	struct buf img;
	int rc = 0;

	if (v == NULL)
		return -ENOMEM;
	buf_init(&img, SHARD_BUF_MAX);
	for (size_t i = 0; i < s->index.cap; i++)
		if (s->index.slots[i] != NULL)
			v[n++] = s->index.slots[i];
	qsort(v, n, sizeof(*v), cmp_entry_location);
	for (size_t i = 0, j; rc == 0 && i < n; i = j) {
		for (j = i + 1; j < n && v[j]->segment == v[i]->segment; j++)
			;
		rc = shard_visit_run(s, v + i, j - i, &img, fn, ctx);
	}
	buf_free(&img);
	free(v);
	return rc;
}

int spool_shard_locate(const struct spool_shard *s, const char *queue_id,
		       int *fd, uint64_t *offset, uint32_t *length)
{
	const struct spool_entry *e = spool_index_find(&s->index, queue_id);
	const struct spool_segment *g = e ? shard_find_segment((struct spool_shard *)s, e->segment) : NULL;

	if (g == NULL)
		return -ENOENT;
	*fd = g->fd;
	*offset = e->offset;
	*length = e->length;
	return 0;
}

const struct spool_rcpt_state *spool_shard_states(const struct spool_shard *s,
						  const char *queue_id, size_t *n)
{
	const struct spool_entry *e = spool_index_find(&s->index, queue_id);

	*n = e != NULL ? e->rcpt_count : 0;
	return e != NULL ? e->state : NULL;
}

void spool_shard_stats(const struct spool_shard *s, struct spool_shard_stats *st)
{
	const struct spool_segment *cur = s->nsegs ? &s->segs[s->nsegs - 1] : NULL;
	uint64_t total = 0;

	for (size_t i = 0; i < s->nsegs; i++)
		total += s->segs[i].size;
	*st = (struct spool_shard_stats){
		.total_size = total,
		.live_messages = s->index.count,
		.segments = s->nsegs,
		.current_segment = cur ? cur->seq : 0,
		.current_size = cur ? cur->size : 0,
		.truncated_bytes = s->truncated_bytes,
		.corrupt_segments = s->corrupt_segments,
		.rotations = s->rotations,
		.rotations_blocking = s->rotations_blocking,
		.rotations_deferred = s->rotations_deferred,
		.rotate_us_max = s->rotate_us_max,
		.compactions = s->compactions,
		.compacted = s->compacted,
	};
}

/* --- background chores ---------------------------------------------------- */

#define CHORE_RETRY_US 1000000		/* after a failed chore */

static struct spool_chore *chore_new(struct spool_shard *s, enum chore_kind kind)
{
	struct spool_chore *ch = xcalloc(1, sizeof(*ch));

	ch->kind = kind;
	ch->fd = -1;
	memcpy(ch->dir, s->dir, sizeof(ch->dir));
	return ch;
}

/* chore_take_collect - one round: every segment deletable now. */
static struct spool_chore *chore_take_collect(struct spool_shard *s)
{
	size_t n = 0;

	for (size_t i = 0; i < s->nsegs; i++)
		n += segment_deletable(s, &s->segs[i]);
	s->collect_due = false;
	if (n == 0)
		return NULL;
	struct spool_chore *ch = chore_new(s, CHORE_COLLECT);
	ch->seqs = xcalloc(n, sizeof(*ch->seqs));
	ch->fds = xcalloc(n, sizeof(*ch->fds));
	ch->errs = xcalloc(n, sizeof(*ch->errs));
	for (size_t i = 0; i < s->nsegs; i++) {
		struct spool_segment *g = &s->segs[i];
		if (!segment_deletable(s, g))
			continue;
		ch->seqs[ch->n] = g->seq;
		ch->fds[ch->n++] = g->fd;
		g->dying = true;
	}
	return ch;
}

/* chore_take_compact - the live records of mostly dead old segments, up
 * to the per-rotation budget: their locations now, their bytes read by
 * the chore, their copies appended at the next flush (shard_compact_apply). */
static struct spool_chore *chore_take_compact(struct spool_shard *s)
{
	size_t budget = s->opt.segment_size / 4, total = 0, n = 0, cap = 0;
	bool any = false;

	s->compact_due = false;
	if (budget > COMPACT_MAX_BYTES)
		budget = COMPACT_MAX_BYTES;
	for (size_t i = 0; i + 1 < s->nsegs && !any; i++)
		any = compact_wanted(s, &s->segs[i]);
	if (!any || buf_len(&s->pending) + budget > s->opt.max_pending)
		return NULL;
	struct spool_chore *ch = chore_new(s, CHORE_COMPACT);
	for (size_t k = 0; k < s->index.cap && (n == 0 || total < budget); k++) {
		const struct spool_entry *e = s->index.slots[k];
		const struct spool_segment *g = e != NULL ? shard_find_segment(s, e->segment) : NULL;
		if (g == NULL || g == shard_current(s) || g->dying || !compact_wanted(s, g))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			ch->seqs = xrealloc(ch->seqs, cap * sizeof(*ch->seqs));
			ch->fds = xrealloc(ch->fds, cap * sizeof(*ch->fds));
			ch->offs = xrealloc(ch->offs, cap * sizeof(*ch->offs));
			ch->lens = xrealloc(ch->lens, cap * sizeof(*ch->lens));
			ch->ids = xrealloc(ch->ids, cap * sizeof(*ch->ids));
		}
		ch->seqs[n] = g->seq;
		ch->fds[n] = g->fd;
		ch->offs[n] = e->offset;
		ch->lens[n] = e->length;
		ch->ids[n++] = xstrdup(spool_entry_queue_id(e));
		total += e->length;
	}
	ch->n = n;
	ch->data_len = total;
	if (n == 0) {
		chore_free(ch);
		return NULL;
	}
	return ch;
}

struct spool_chore *spool_shard_chore_take(struct spool_shard *s)
{
	if (!s->opt.background_chores || s->opt.read_only || s->chore_out)
		return NULL;
	struct spool_chore *ch = NULL;
	if (s->spare == SPARE_NONE && (s->spare_retry_us == 0 || now_usec() >= s->spare_retry_us)) {
		ch = chore_new(s, CHORE_SPARE);
		ch->seq = shard_current(s)->seq + 1;
		ch->zeros = s->opt.preallocate < s->opt.segment_size ?
			    s->opt.preallocate : s->opt.segment_size;
		s->spare = SPARE_MAKING;
	} else if (s->compact_due && s->compact_ready == NULL) {
		ch = chore_take_compact(s);
	}
	if (ch == NULL && s->collect_due &&
	    (s->collect_retry_us == 0 || now_usec() >= s->collect_retry_us)) {
		ch = chore_take_collect(s);
	}
	s->chore_out = ch != NULL;
	return ch;
}

bool spool_shard_chore_out(const struct spool_shard *s)
{
	return s->chore_out;
}

/* chore_fsync_dir - make the directory's entries durable. */
static int chore_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/* write_zeros - the first len bytes of a new segment written as zeros
 * and made durable: the blocks are allocated and initialized now, on the
 * helper, so a batch written over them later changes no metadata and its
 * sync is one data write and a cache flush, with no journal commit (ext4,
 * xfs). fallocate() would leave unwritten extents, whose conversion at
 * the first write is metadata again. */
static int write_zeros(int fd, uint64_t len)
{
	static const uint8_t zeros[256 * 1024];
	uint64_t off = 0;

	while (off < len) {
		size_t n = len - off < sizeof(zeros) ? (size_t)(len - off) : sizeof(zeros);
		ssize_t w = pwrite(fd, zeros, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		off += (uint64_t)w;
	}
	return len > 0 && fdatasync(fd) < 0 ? -errno : 0;
}

static void chore_segment_path(const struct spool_chore *ch, uint64_t seq,
			       char *buf, size_t size)
{
	snprintf(buf, size, "%s/seg-%016" PRIx64 ".rms", ch->dir, seq);
}

void spool_chore_run(struct spool_chore *ch)
{
	char path[PATH_MAX + 32];

	if (ch->kind == CHORE_SPARE) {
		chore_segment_path(ch, ch->seq, path, sizeof(path));
		ch->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
		ch->result = ch->fd < 0 ? -errno : 0;
		if (ch->result == 0 && ch->zeros > 0) {
			/* No room for the zeros (ENOSPC): an empty spare
			 * still spares the rotation its syscalls. */
			ch->zeros_error = write_zeros(ch->fd, ch->zeros);
			if (ch->zeros_error < 0) {
				ch->zeros = 0;
				if (ftruncate(ch->fd, 0) < 0)
					ch->result = -errno;
			}
		}
		if (ch->result == 0)
			ch->result = chore_fsync_dir(ch->dir);
		if (ch->result < 0 && ch->fd >= 0) {
			close(ch->fd);
			unlink(path);
			ch->fd = -1;
		}
		return;
	}
	if (ch->kind == CHORE_COMPACT) {
		/* Old segments are never written again and their fds stay open
		 * while the chore is out (no collection runs meanwhile). */
		size_t at = 0;
		ch->data = malloc(ch->data_len > 0 ? ch->data_len : 1);
		ch->result = ch->data == NULL ? -ENOMEM : 0;
		for (size_t i = 0; i < ch->n && ch->result == 0; i++) {
			ch->result = read_all(ch->fds[i], ch->data + at, ch->lens[i], ch->offs[i]);
			at += ch->lens[i];
		}
		return;
	}
	for (size_t i = 0; i < ch->n; i++) {
		chore_segment_path(ch, ch->seqs[i], path, sizeof(path));
		ch->errs[i] = unlink(path) < 0 && errno != ENOENT ? -errno : 0;
	}
	ch->result = chore_fsync_dir(ch->dir);
	/* Unlinked: the fd is no longer needed whatever the fsync said, and
	 * its last close frees the file's blocks (the slow part). */
	for (size_t i = 0; i < ch->n; i++)
		if (ch->errs[i] == 0 && ch->fds[i] >= 0)
			close(ch->fds[i]);
}

/* chore_spare_done - the spare is ready, or comes again in a second. */
static void chore_spare_done(struct spool_shard *s, struct spool_chore *ch)
{
	if (ch->result < 0 || ch->seq != shard_current(s)->seq + 1) {
		if (ch->result < 0)
			log_error("spool_spare_failed", "dir=%s segment=%016" PRIx64 " error=%s",
				  s->dir, ch->seq, strerror(-ch->result));
		else
			log_panic("spool: spare %016" PRIx64 " is not next", ch->seq);
		s->spare = SPARE_NONE;
		s->spare_retry_us = now_usec() + CHORE_RETRY_US;
		return;
	}
	if (ch->zeros_error < 0)
		log_warn("spool_preallocate_failed", "dir=%s segment=%016" PRIx64 " error=\"%s\"",
			 s->dir, ch->seq, strerror(-ch->zeros_error));
	s->spare = SPARE_READY;
	s->spare_seq = ch->seq;
	s->spare_fd = ch->fd;
	s->spare_zeroed = ch->zeros > 0;
	s->spare_retry_us = 0;
}

/* chore_collect_done - drop what is durably gone; an unlinked segment
 * whose directory fsync failed stays (its dependents wait) and goes in a
 * later round. */
static void chore_collect_done(struct spool_shard *s, struct spool_chore *ch)
{
	size_t removed = 0;

	for (size_t i = 0; i < ch->n; i++) {
		struct spool_segment *g = shard_find_segment(s, ch->seqs[i]);
		if (g == NULL || !g->dying)
			log_panic("spool: collected segment %016" PRIx64 " not dying", ch->seqs[i]);
		g->dying = false;
		if (ch->errs[i] < 0) {
			log_error("spool_unlink_failed", "dir=%s segment=%016" PRIx64 " error=%s",
				  s->dir, g->seq, strerror(-ch->errs[i]));
			continue;
		}
		g->fd = -1;

		if (ch->result == 0) {
			free(g->deps);
			g->deps = NULL;
			g->gone = true;		/* swept below: finds need the order */
			removed++;
		}
	}
	size_t keep = 0;
	for (size_t i = 0; i < s->nsegs; i++)
		if (!s->segs[i].gone)
			s->segs[keep++] = s->segs[i];
	s->nsegs = keep;
	if (ch->result < 0) {
		log_error("spool_collect_failed", "dir=%s error=%s", s->dir, strerror(-ch->result));
		s->collect_retry_us = now_usec() + CHORE_RETRY_US;
		s->collect_due = true;
	} else if (removed > 0) {
		s->collect_retry_us = 0;
		s->collect_due = true;		/* the next round */
		log_debug("spool_collect", "dir=%s collected=%zu", s->dir, removed);
	}
}

static void chore_free(struct spool_chore *ch)
{
	for (size_t i = 0; ch->ids != NULL && i < ch->n; i++)
		free(ch->ids[i]);
	free(ch->ids);
	free(ch->offs);
	free(ch->lens);
	free(ch->data);
	free(ch->seqs);
	free(ch->fds);
	free(ch->errs);
	free(ch);
}

/* shard_compact_apply - the compaction chore's records, read on the
 * helper, go in front of the batch about to be written, as shard_compact's
 * would: called from flush_begin with no batch in flight, so every state
 * committed so far is in the copy and the batch's outcomes follow it.
 * A record whose entry died or moved since the chore was taken is
 * dropped. */
static void shard_compact_apply(struct spool_shard *s)
{
	struct spool_chore *ch = s->compact_ready;
	struct buf b;
	size_t at = 0, moved = 0;

	s->compact_ready = NULL;
	buf_init(&b, SHARD_BUF_MAX);
	for (size_t i = 0; i < ch->n; i++) {
		const uint8_t *rec = ch->data + at;
		at += ch->lens[i];
		const struct spool_entry *e = spool_index_find(&s->index, ch->ids[i]);
		if (e == NULL || e->segment != ch->seqs[i] || e->offset != ch->offs[i] ||
		    e->length != ch->lens[i])
			continue;
		if (buf_append(&b, rec, ch->lens[i]) < 0 || compact_outcomes(e, &b) < 0) {
			log_error("spool_compact_failed", "dir=%s id=%s", s->dir, ch->ids[i]);
			moved = 0;
			break;
		}
		moved++;
	}
	if (moved > 0 && buf_len(&s->pending) + buf_len(&b) <= s->opt.max_pending &&
	    buf_prepend(&s->pending, buf_data(&b), buf_len(&b)) == 0) {
		s->compactions++;
		s->compacted += moved;
		log_info("spool_compact", "dir=%s compacted=%zu compacted_bytes=%zu",
			 s->dir, moved, buf_len(&b));
	}
	buf_free(&b);
	chore_free(ch);
}

void spool_shard_chore_done(struct spool_shard *s, struct spool_chore *ch)
{
	if (!s->chore_out)
		log_panic("spool: chore done without a chore out");
	s->chore_out = false;
	if (ch->kind == CHORE_COMPACT) {
		if (ch->result < 0) {
			log_error("spool_compact_failed", "dir=%s error=%s", s->dir, strerror(-ch->result));
			chore_free(ch);
		} else {
			s->compact_ready = ch;
		}
		return;
	}
	if (ch->kind == CHORE_SPARE)
		chore_spare_done(s, ch);
	else
		chore_collect_done(s, ch);
	chore_free(ch);
}
