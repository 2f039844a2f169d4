/*
 * suppress - the daemon's suppression list: one owner thread, snapshots
 * for the workers; see suppress.h.
 */
#include "suppress.h"

#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "file_io.h"
#include "helper.h"
#include "log.h"
#include "xalloc.h"

#define SUPPRESS_MAX_WORKERS 1024
#define COMPACT_MIN_LINES 1024

struct suppress_op {
	bool remove;
	char *address;
	int64_t created_s, expires_s;
	char *reason;
};

struct suppress_batch {
	struct suppress_op *ops;
	size_t count, cap;
	bool from_cluster;                 /* not told to the observer */
};

static _Atomic(suppress_observer_fn *) observer;

void suppress_observe(suppress_observer_fn *fn)
{
	atomic_store(&observer, fn);
}

void suppress_batch_from_cluster(struct suppress_batch *b)
{
	b->from_cluster = true;
}

/* The owner's state: written by the main thread in suppress_open before
 * any worker exists, then only by the one "suppress" helper thread. */
static struct {
	struct suppression_list *list;
	char *dir;
	int journal_fd;
	size_t journal_lines;
	uint64_t version;
} owner = { .journal_fd = -1 };

/* Made by suppress_open and never changed: what each worker starts with. */
static struct suppression_snapshot *initial;

/* One per worker, touched only by that worker's thread. */
struct suppress_slot {
	struct suppression_snapshot *snap;
	struct helper_worker *hw;
	unsigned jobs_out;
	bool exited;                       /* past exit: snapshots arriving now are dropped */
};
static struct suppress_slot slots[SUPPRESS_MAX_WORKERS];

static struct helper_pool suppress_pool = HELPER_POOL_INIT("suppress", 1);

struct suppress_job {
	struct helper_job job;             /* first */
	struct worker *w;
	struct suppress_batch *batch;
	suppress_done_fn *done;
	void *arg;
	int result;
	size_t changed;
};

/* A new snapshot on its way to one worker. */
struct snapshot_post {
	struct worker_post post;
	struct suppression_snapshot *snap; /* one reference */
};

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

/* ---- batches ---------------------------------------------------------- */

struct suppress_batch *suppress_batch_new(void)
{
	return xcalloc(1, sizeof(struct suppress_batch));
}

struct suppress_batch *suppress_batch_free(struct suppress_batch *b)
{
	if (b == NULL)
		return NULL;
	for (size_t i = 0; i < b->count; i++) {
		free(b->ops[i].address);
		free(b->ops[i].reason);
	}
	free(b->ops);
	free(b);
	return NULL;
}

static struct suppress_op *batch_push(struct suppress_batch *b)
{
	if (b->count == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 8;
		b->ops = xreallocarray(b->ops, b->cap, sizeof(*b->ops));
	}
	struct suppress_op *op = &b->ops[b->count++];
	memset(op, 0, sizeof(*op));
	return op;
}

void suppress_batch_add(struct suppress_batch *b, const char *address, int64_t created_s,
			int64_t expires_s, const char *reason)
{
	struct suppress_op *op = batch_push(b);

	op->address = xstrdup(address);
	op->created_s = created_s;
	op->expires_s = expires_s;
	op->reason = xstrdup(reason != NULL ? reason : "");
}

void suppress_batch_remove(struct suppress_batch *b, const char *address)
{
	struct suppress_op *op = batch_push(b);

	op->remove = true;
	op->address = xstrdup(address);
}

size_t suppress_batch_count(const struct suppress_batch *b)
{
	return b->count;
}

/* ---- the files (main thread at start, then the owner) ------------------ */

/* load_line - one line of the file (journal false) or the journal. */
static bool load_line(char *line, bool journal)
{
	struct suppression_entry e;
	const char *why = "";

	if (journal) {
		if (line[0] == '-' && line[1] == ',') {
			suppression_list_remove(owner.list, line + 2);
			return true;
		}
		if (line[0] != '+' || line[1] != ',')
			return false;
		line += 2;
	}
	int rc = suppression_csv_parse(line, &e, &why);
	if (rc == 1)
		return true;
	return rc == 0 && suppression_list_add(owner.list, e.address, e.created_s, e.expires_s, e.reason) == 0;
}

/* load_file - every line of dir/name; a missing file is empty. */
static int load_file(const char *name, bool journal, size_t *lines, char *err, size_t errlen)
{
	char path[4096], line[SUPPRESSION_LINE_MAX + 2];
	size_t bad = 0;

	snprintf(path, sizeof(path), "%s/%s", owner.dir, name);
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t n = strlen(line);
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		(*lines)++;
		if (!load_line(line, journal))
			bad++;
	}
	fclose(f);
	if (bad > 0)   /* a torn last line after a crash, or a hand edit */
		log_warn("suppression_load", "file=%s bad_lines=%zu", path, bad);
	return 0;
}

/* compact - the list (without expired entries) into the file, written
 * aside, synced and renamed; then the journal starts empty. A crash
 * between the rename and the truncation replays the journal over the new
 * file, which changes nothing: adds replace and removes remove. */
static int compact(void)
{
	char path[4096], line[SUPPRESSION_LINE_MAX];
	struct buf b;
	int rc;

	suppression_list_purge(owner.list, now_s());
	struct suppression_snapshot *s = suppression_snapshot_build(owner.list, 0);
	snprintf(path, sizeof(path), "%s/%s", owner.dir, SUPPRESS_FILE);
	buf_init(&b, (size_t)1 << 34);
	rc = buf_append_str(&b, "address,created,expires,reason\n");
	for (size_t i = 0; i < suppression_snapshot_count(s) && rc == 0; i++) {
		size_t n = suppression_csv_format(line, sizeof(line), suppression_snapshot_at(s, i));
		rc = buf_append(&b, line, n);
	}
	suppression_snapshot_unref(s);
	if (rc == 0) {
		struct iovec part = { (void *)buf_data(&b), buf_len(&b) };
		rc = file_replace(owner.dir, path, &part, 1, 0600);
	}
	buf_free(&b);
	if (rc == 0 && ftruncate(owner.journal_fd, 0) == 0)
		owner.journal_lines = 0;
	return rc;
}

int suppress_open(const char *spool_dir, char *err, size_t errlen)
{
	char path[4096];
	size_t file_lines = 0;

	owner.list = suppression_list_new();
	owner.dir = xstrdup(spool_dir);
	int rc = load_file(SUPPRESS_FILE, false, &file_lines, err, errlen);
	if (rc == 0)
		rc = load_file(SUPPRESS_JOURNAL, true, &owner.journal_lines, err, errlen);
	if (rc < 0)
		return rc;
	snprintf(path, sizeof(path), "%s/%s", spool_dir, SUPPRESS_JOURNAL);
	owner.journal_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (owner.journal_fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	owner.version = 1;
	initial = suppression_snapshot_build(owner.list, owner.version);
	log_info("suppression_loaded", "entries=%zu journal_lines=%zu",
		 suppression_list_count(owner.list), owner.journal_lines);
	return 0;
}

/* ---- the owner -------------------------------------------------------- */

static void snapshot_arrived(struct worker *w, struct worker_post *p)
{
	struct snapshot_post *sp = (struct snapshot_post *)p;
	struct suppress_slot *slot = &slots[w->id];

	if (slot->exited) {
		suppression_snapshot_unref(sp->snap);
	} else if (slot->snap == NULL || suppression_snapshot_version(sp->snap) > suppression_snapshot_version(slot->snap)) {
		suppression_snapshot_unref(slot->snap);
		slot->snap = sp->snap;
	} else {
		suppression_snapshot_unref(sp->snap);
	}
	free(sp);
}

static void snapshot_discard(struct worker_post *p)
{
	struct snapshot_post *sp = (struct snapshot_post *)p;

	suppression_snapshot_unref(sp->snap);
	free(sp);
}

/* publish - the list as a new snapshot to every worker's inbox. */
static void publish(struct worker *any)
{
	struct suppression_snapshot *s = suppression_snapshot_build(owner.list, ++owner.version);

	for (unsigned i = 0; i <= any->count; i++) {
		struct snapshot_post *sp = xcalloc(1, sizeof(*sp));
		sp->post.handle = snapshot_arrived;
		sp->post.discard = snapshot_discard;
		sp->snap = suppression_snapshot_ref(s);
		worker_post(NULL, &any->all[i], &sp->post);
	}
	suppression_snapshot_unref(s);
}

/* job_run - on the owner thread: apply, journal, maybe compact, publish. */
static void job_run(struct helper_job *job)
{
	struct suppress_job *j = (struct suppress_job *)job;
	struct buf b;
	char line[SUPPRESSION_LINE_MAX + 4];
	int rc = 0;

	suppress_observer_fn *tell = j->batch->from_cluster ? NULL : atomic_load(&observer);

	buf_init(&b, (size_t)1 << 34);
	for (size_t i = 0; i < j->batch->count && rc == 0; i++) {
		const struct suppress_op *op = &j->batch->ops[i];
		if (op->remove) {
			if (!suppression_list_remove(owner.list, op->address))
				continue;
			rc = buf_append_printf(&b, "-,%s\n", op->address);
			if (tell != NULL)
				tell(true, op->address);
		} else {
			if (suppression_list_add(owner.list, op->address, op->created_s, op->expires_s,
						 op->reason) < 0)
				continue;
			char reason[SUPPRESSION_REASON_MAX + 1];
			suppression_reason_clean(op->reason, reason, sizeof(reason));
			struct suppression_entry e = { .address = op->address, .created_s = op->created_s,
						       .expires_s = op->expires_s, .reason = reason };
			memcpy(line, "+,", 2);
			size_t n = suppression_csv_format(line + 2, sizeof(line) - 2, &e);
			rc = buf_append(&b, line, n + 2);
			if (tell != NULL)
				tell(false, line + 2);
		}
		j->changed++;
		owner.journal_lines++;
	}
	if (rc == 0 && buf_len(&b) > 0) {
		rc = file_write_all(owner.journal_fd, buf_data(&b), buf_len(&b));
		if (rc == 0 && fdatasync(owner.journal_fd) < 0)
			rc = -errno;
	}
	buf_free(&b);
	if (rc < 0)
		log_error("suppression_journal", "error=\"%s\"", strerror(-rc));
	if (owner.journal_lines > COMPACT_MIN_LINES && owner.journal_lines > suppression_list_count(owner.list)) {
		int crc = compact();
		if (crc < 0)
			log_error("suppression_compact", "error=\"%s\"", strerror(-crc));
	}
	if (j->changed > 0)
		publish(j->w);
	j->result = rc;
}

static void job_done(struct helper_job *job)
{
	struct suppress_job *j = (struct suppress_job *)job;
	struct worker *w = j->w;

	slots[w->id].jobs_out--;
	if (j->done != NULL)
		j->done(w, j->arg, j->result, j->changed);
	suppress_batch_free(j->batch);
	free(j);
}

void suppress_submit(struct worker *w, struct suppress_batch *b, suppress_done_fn *done, void *arg)
{
	struct suppress_slot *slot = &slots[w->id];

	if (slot->hw == NULL || owner.list == NULL) {
		/* No list (suppress_open was not called): nothing to change. */
		if (done != NULL)
			done(w, arg, -ENOENT, 0);
		suppress_batch_free(b);
		return;
	}
	struct suppress_job *j = xcalloc(1, sizeof(*j));
	j->job.run = job_run;
	j->job.done = job_done;
	j->w = w;
	j->batch = b;
	j->done = done;
	j->arg = arg;
	slot->jobs_out++;
	helper_submit(&suppress_pool, slot->hw, &j->job);
}

/* ---- the workers -------------------------------------------------------- */

const struct suppression_entry *suppress_find(const struct worker *w, const char *address)
{
	return suppression_snapshot_find(slots[w->id].snap, address, now_s());
}

const struct suppression_snapshot *suppress_snapshot(const struct worker *w)
{
	return slots[w->id].snap;
}

static int suppress_init(struct worker *w)
{
	struct suppress_slot *slot = &slots[w->id];

	if (w->id >= SUPPRESS_MAX_WORKERS)
		log_panic("suppress_init: worker %u over %d", w->id, SUPPRESS_MAX_WORKERS);
	memset(slot, 0, sizeof(*slot));
	if (initial == NULL)
		return 0;                  /* no list: lookups find nothing */
	slot->snap = suppression_snapshot_ref(initial);
	slot->hw = helper_worker_new(w);
	return slot->hw != NULL ? 0 : -ENOMEM;
}

static bool suppress_busy(const struct worker *w)
{
	return slots[w->id].jobs_out > 0;
}

static void suppress_exit(struct worker *w)
{
	struct suppress_slot *slot = &slots[w->id];

	slot->snap = suppression_snapshot_unref(slot->snap);
	slot->exited = true;
	if (slot->jobs_out == 0)
		slot->hw = helper_worker_free(slot->hw);
}

const struct worker_module suppress_module = {
	.name = "suppress",
	.init = suppress_init,
	.busy = suppress_busy,
	.exit = suppress_exit,
};
