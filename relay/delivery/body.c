/*
 * body - message bodies held only while an item needs one; see queue.h.
 *
 * A queued message costs its envelope (qmsg) and its items; its body stays
 * in the home worker's spool segment. An item holds a body (a reference
 * to a qbody) from its arrival with fresh mail, or from a load, until it
 * waits again: item_retry_at and item_hold drop it. An item that needs its
 * body back asks the message's home, which knows where the record is now
 * (compaction moves records) and reads it through its own ring:
 *
 *   owner: item_load_body -> post to home (or call, when home is owner)
 *   home:  spool_shard_locate, IORING_OP_READ of the whole record
 *   home:  CRC-checked decode; the body points into the buffer read
 *   owner: body_load_done -> item_enqueue (or the operator's verdict)
 *
 * Each worker keeps the bytes of bodies its items hold (and loads under
 * way) under its share of spool.body_cache_size: due retries wait in the
 * retry heap while it is full (body_room). Fresh mail is not counted
 * against it before arrival: its body is in memory already.
 */
#include "queue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "commit.h"
#include "config.h"
#include "log.h"

/* One load, owner -> home -> owner; the item is touched only on the owner. */
struct body_load {
	struct worker_post post;
	struct ring_op op;
	struct worker *owner;
	struct qitem *it;
	struct qbody *body;        /* the record read and decoded, or NULL */
	size_t estimate;           /* counted in the owner's load_bytes */
	char queue_id[32];
	int err;
};

static void body_load_done(struct worker *w, struct worker_post *p);

/* qbody_alloc - room for cap bytes; data and len set by the caller. */
static struct qbody *qbody_alloc(size_t cap)
{
	struct qbody *b = xmalloc(sizeof(*b) + cap);

	atomic_init(&b->refs, 1);
	b->len = 0;
	b->data = b->buf;
	return b;
}

struct qbody *qbody_copy(const void *data, size_t len)
{
	struct qbody *b = qbody_alloc(len);

	memcpy(b->buf, data, len);
	b->len = len;
	return b;
}

void qbody_ref(struct qbody *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

struct qbody *qbody_unref(struct qbody *b)
{
	if (b != NULL && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
		free(b);
	return NULL;
}

/* body_cap - this worker's share of spool.body_cache_size. */
static size_t body_cap(const struct delivery *dl)
{
	return (size_t)dl->w->cfg->spool_body_cache_size / (dl->w->count ? dl->w->count : 1);
}

bool body_room(const struct delivery *dl)
{
	size_t held = dl->body_bytes + dl->load_bytes;

	return held == 0 || held < body_cap(dl);
}

void item_drop_body(struct qitem *it)
{
	if (it->body == NULL)
		return;
	if (it->d != NULL)
		it->d->dl->body_bytes -= it->body->len;
	it->body = qbody_unref(it->body);
}

static void body_load_discard(struct worker_post *p)
{
	struct body_load *req = (struct body_load *)p;

	qbody_unref(req->body);
	free(req);
}

/* body_load_reply - on the home: the result goes back to the owner. */
static void body_load_reply(struct worker *home, struct body_load *req)
{
	req->post.handle = body_load_done;
	if (req->owner == home)
		body_load_done(home, &req->post);
	else
		worker_post(home, req->owner, &req->post);
}

/* body_read_complete - on the home: the record is in; check and decode it. */
static void body_read_complete(struct worker *home, struct ring_op *op, const struct io_uring_cqe *cqe)
{
	struct body_load *req = container_of(op, struct body_load, op);
	struct delivery *dl = delivery_of(home);
	struct spool_record rec;
	size_t want = req->body->len;

	if (dl != NULL)
		dl->reads_in_flight--;
	if (cqe->res < 0 || (size_t)cqe->res != want) {
		req->err = cqe->res < 0 ? cqe->res : -EIO;
	} else if (spool_record_decode((const uint8_t *)req->body->buf, want, &rec) != (ssize_t)want ||
		   rec.type != SPOOL_RECORD_MESSAGE || strcmp(rec.message.queue_id, req->queue_id) != 0) {
		req->err = -EBADMSG;
	} else {
		req->body->data = (const char *)rec.message.body;
		req->body->len = rec.message.body_len;
		spool_record_clear(&rec);
	}
	if (req->err < 0)
		req->body = qbody_unref(req->body);
	body_load_reply(home, req);
}

/* body_load_start - on the home: read the message's record where it is now. */
static void body_load_start(struct worker *home, struct body_load *req)
{
	struct delivery *dl = delivery_of(home);
	uint64_t offset;
	uint32_t length;
	int fd;

	req->err = home->role == WORKER_ROLE_SMTP && dl != NULL ?
		   spool_shard_locate(commit_shard(home), req->queue_id, &fd, &offset, &length) : -ENOENT;
	if (req->err < 0) {
		body_load_reply(home, req);
		return;
	}
	req->body = qbody_alloc(length);
	req->body->len = length;   /* the record's, until decoded */
	req->op.complete = body_read_complete;
	struct io_uring_sqe *sqe = worker_sqe(home);
	io_uring_prep_read(sqe, fd, req->body->buf, length, offset);
	io_uring_sqe_set_data(sqe, &req->op);
	/* Submitted now: the fd is the shard's, and a rotation in this
	 * pass's hooks could collect the segment and close it (its number
	 * then reused) before the loop's own submit. Once submitted, the
	 * read holds the file. */
	io_uring_submit(&home->ring);
	dl->reads_in_flight++;
}

static void body_load_arrived(struct worker *home, struct worker_post *p)
{
	body_load_start(home, (struct body_load *)p);
}

void item_load_body(struct delivery *dl, struct qitem *it)
{
	struct worker *w = dl->w;
	struct worker *home = &w->all[it->msg->home];
	struct body_load *req = xcalloc(1, sizeof(*req));

	item_set_state(it, QSTATE_ACTIVE);   /* the operator's changes wait for it */
	req->post.handle = body_load_arrived;
	req->post.discard = body_load_discard;
	req->owner = w;
	req->it = it;
	req->estimate = it->msg->body_len;
	snprintf(req->queue_id, sizeof(req->queue_id), "%s", it->msg->queue_id);
	dl->load_bytes += req->estimate;
	dl->stats.body_loads++;
	if (home == w)
		body_load_start(w, req);
	else
		worker_post(w, home, &req->post);
}

/* body_load_done - on the owner: the item goes on with its body, or is
 * deferred when the spool could not give it. */
static void body_load_done(struct worker *w, struct worker_post *p)
{
	struct body_load *req = (struct body_load *)p;
	struct delivery *dl = delivery_of(w);
	struct qitem *it = req->it;
	enum qdoom doom = (enum qdoom)it->doom;

	dl->load_bytes -= req->estimate;
	it->body = req->body;
	req->body = NULL;
	if (it->body != NULL)
		dl->body_bytes += it->body->len;
	free(req);
	if (dl->stopping)
		return;      /* domains_free takes the item, body and all */
	item_set_state(it, QSTATE_NEW);
	if (it->body == NULL) {
		log_error("spool_read_failed", "id=%s worker=%u home=%u", it->msg->queue_id, w->id,
			  it->msg->home);
		item_fail_all(dl, it, SMTP_OUTCOME_DEFERRED, 451, "4.3.0",
			      "the message could not be read from the spool");
		return;
	}
	switch (doom) {
	case QDOOM_DELETE:
	case QDOOM_BOUNCE:
		item_admin_finish(dl, it, doom);
		return;
	case QDOOM_HOLD:
		it->doom = QDOOM_NONE;
		item_hold(dl, it);
		return;
	default:
		item_enqueue(dl, it);
		return;
	}
}
