/*
 * delivery - the outbound engine; see delivery.h.
 *
 * Objects:
 *   qmsg     one accepted message: envelope, recipients and body, in one
 *            allocation, immutable, shared by the workers delivering it
 *            (atomic reference count: one per item or outcome in flight).
 *   qitem    some recipients of one message for one domain, at most the
 *            domain's recipients-per-transaction; the unit of scheduling.
 *   qdomain  a destination domain on its owner: ready items, the retry
 *            state of the whole domain, its connections.
 *   osession one outbound SMTP connection: the pure client (smtp_client)
 *            over a conn; it serves its domain's items one after another
 *            and waits in the domain's idle list between them.
 *   qoutcome final outcomes of an item, posted home to be journaled.
 *
 * Concurrency window (after Postfix's queue manager): a domain starts with
 * two connections and may open one more each time a connection reaches
 * READY, up to its max_connections; a domain whose hosts all fail is
 * backed off as a whole (retry_domain_*) and then probed with one
 * connection.
 *
 * STARTTLS (RFC 3207) per the domain's delivery.tls policy: after the
 * first EHLO of a connection, STARTTLS when offered (not under "none"),
 * the handshake on the conn (one client tls_config per worker), then EHLO
 * again. "may" goes on in clear when STARTTLS is not offered or refused,
 * and after a failed handshake reconnects to the same address without it;
 * "encrypt" and "verify" treat all of these as a failed host (QUIT, next
 * MX, then deferral with 4.7.4 / 4.7.5): nothing is sent in clear.
 *
 * Local domains (local_domains) are owned by the local worker instead: it
 * writes each recipient into its Maildir (mailbox.root) with blocking file
 * I/O, which only that thread may do, and completes the item like any other
 * (logged with mx=local, outcomes home, DSNs, retries in its own heap).
 */
#include "delivery.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bounce.h"
#include "buf.h"
#include "commit.h"
#include "conn.h"
#include "delivery_log.h"
#include "dns.h"
#include "log.h"
#include "mailbox.h"
#include "queue_query.h"
#include "maildir.h"
#include "retry.h"
#include "smtp_client.h"
#include "tls.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define INITIAL_WINDOW 2
#define REPLY_TEXT_MAX 200

struct qrcpt {
	const char *addr;
	const char *domain;        /* after the last '@', lower case */
	const char *orcpt;         /* NULL when not given */
	uint8_t notify;            /* SPOOL_NOTIFY_* == SMTP_NOTIFY_* bits */
};

struct qmsg {
	_Atomic int refs;
	unsigned home;
	int64_t arrival_ms;        /* wall clock */
	char queue_id[32];
	const char *sender;
	const char *envid;         /* NULL when not given */
	uint8_t ret;               /* enum spool_ret */
	bool smtputf8, eightbit;
	size_t rcpt_count;
	struct qrcpt *rcpts;
	const char *body;
	size_t body_len;
};

/* Where an item is on its owner (queue_query's states for the operator). */
enum qstate {
	QSTATE_NEW,                /* on its way, or between two places */
	QSTATE_READY,              /* in its domain's ready list */
	QSTATE_RETRY,              /* in the retry heap */
	QSTATE_ACTIVE,             /* in a transaction */
	QSTATE_HELD,               /* held by the operator: in no list but its domain's */
	QSTATE_COUNT
};

/* An operator's action waiting for an active item's attempt to end. */
enum qdoom { QDOOM_NONE, QDOOM_DELETE, QDOOM_BOUNCE, QDOOM_HOLD };

/* A link in a domain's list of items; a cursor of a queue query is a
 * marker link in the same list (see delivery_query_step). */
struct qlink {
	struct qlink *prev, *next;
	bool marker;
};

struct qitem {
	struct worker_post post;
	struct qlink link;         /* in d->items, from arrival at the owner */
	struct qdomain *d;         /* the owner's domain; NULL before arrival */
	struct qitem *next, *prev; /* in the domain's ready list */
	struct qmsg *msg;
	char *last_error;          /* the last deferral's reply, or NULL */
	int64_t due_ms;            /* monotonic, while in the retry heap */
	size_t heap_index;
	unsigned attempts;
	uint8_t state;             /* enum qstate */
	uint8_t doom;              /* enum qdoom: on arrival, or when the attempt ends */
	uint32_t count;
	uint32_t idx[];
};

struct outcome_entry {
	uint32_t idx;
	uint8_t status;            /* enum spool_status, final */
	uint32_t attempts;
};

struct qoutcome {
	struct worker_post post;
	struct qmsg *msg;          /* holds one reference */
	char *dsn;                 /* a DSN to spool and send, or NULL */
	size_t dsn_len;
	uint32_t count;
	struct outcome_entry e[];
};

struct osession;

struct qdomain {
	struct delivery *dl;
	struct qdomain *hash_next;
	uint64_t hash;
	size_t index;              /* in dl->domain_list */
	struct qlink items;        /* every item of the domain on this worker */
	size_t by_state[QSTATE_COUNT];
	struct qitem *ready_head, *ready_tail;
	size_t ready_count;
	struct osession *idle_head;
	unsigned active;           /* sessions: connecting, busy or idle */
	unsigned window;
	unsigned want;             /* connections wanted when the route comes */
	bool resolving;
	struct retry_domain_state backoff;
	char name[];
};

/* The result of one recipient in one attempt. */
struct rcpt_result {
	enum smtp_outcome outcome;
	int code;
	bool local;
	bool deleted;              /* by the operator: final, no DSN */
	char status[12];
	char text[REPLY_TEXT_MAX];
};

struct osession {
	struct delivery *dl;
	struct qdomain *d;
	struct conn *conn;
	struct smtp_client *client;
	struct dns_route *route;
	size_t host, addr;         /* which MX host and address */
	struct qitem *item;        /* the transaction in progress */
	struct smtp_client_txn txn;
	struct smtp_client_rcpt *rcpts;
	struct rcpt_result *results;
	size_t rcpt_cap;
	unsigned transactions;
	bool established;          /* reached READY at least once */
	bool over;                 /* the client closed: finish after the callback */
	bool over_failed;
	bool quitting;
	struct osession *idle_prev, *idle_next;
	bool idle;
	char ip[64];
	char last_error[REPLY_TEXT_MAX];   /* why the last host failed */
	char last_status[12];              /* its enhanced status; "" = 4.4.1 */
	/* STARTTLS (per connection unless said otherwise) */
	enum config_tls_policy tls_policy;
	bool tls_tried;            /* STARTTLS sent on this connection */
	bool tls_phase;            /* from STARTTLS until the handshake ended */
	bool tls_on;               /* the handshake completed */
	bool tls_abort;            /* the session could not start: abort in pump */
	bool tls_skip;             /* this host failed TLS under "may": go clear */
	bool tls_retry_plain;      /* reconnect to the same address without TLS */
	bool policy_failed;        /* quit because the TLS policy was not met */
	bool reason_kept;          /* last_error says why; closed keeps it */
	char tls_desc[96];         /* "TLSv1.2/<cipher>" or "none", for the log */
};

struct delivery {
	struct worker *w;
	struct dns_resolver *resolver;
	struct ring_op dns_poll_op;
	bool dns_poll_armed;
	struct qdomain **domains;  /* hash table */
	size_t domain_buckets, domain_count;
	struct qdomain **domain_list;      /* the same, in creation order */
	size_t domain_list_cap;
	struct qitem **heap;       /* retry heap, earliest due first */
	size_t heap_len, heap_cap;
	struct retry_policy retry;         /* per item */
	struct retry_policy domain_retry;  /* a whole domain whose hosts all failed */
	const struct config *policy_cfg;   /* the config the policies come from */
	struct delivery_stats stats;
	struct tls_config *tls_client;     /* made on first STARTTLS; per worker */
	char *tls_client_ca;               /* the CA path it was made with */
	size_t ready_total;        /* items in every domain's ready list (metrics) */
	unsigned walks;            /* queue queries with a cursor in domain_list */
	int64_t next_reap_ms;
	unsigned sessions_active;  /* outbound sessions (metrics) */
	uint64_t rng;
	bool stopping;
};

static void domain_kick(struct delivery *dl, struct qdomain *d);
static void item_complete(struct delivery *dl, struct qdomain *d, struct qitem *it,
			  const struct rcpt_result *res, const char *mx, const char *ip,
			  const char *tls);
static void local_deliver_item(struct delivery *dl, struct qitem *it);
static void item_arrived(struct worker *w, struct worker_post *p);
static void item_discard(struct worker_post *p);

static uint64_t rng_next(struct delivery *dl)
{
	/* xorshift64*: jitter and MIME boundaries, not secrets. */
	dl->rng ^= dl->rng >> 12;
	dl->rng ^= dl->rng << 25;
	dl->rng ^= dl->rng >> 27;
	return dl->rng * 0x2545F4914F6CDD1DULL;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		log_fatal("out of memory");
	return p;
}

static uint64_t domain_hash(const char *name)
{
	uint64_t h = 1469598103934665603ULL;   /* FNV-1a */
	for (const char *p = name; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		h = (h ^ c) * 1099511628211ULL;
	}
	return h;
}

/* ---- messages ---------------------------------------------------------- */

/* qmsg_new - copy a spool message into one allocation. */
static struct qmsg *qmsg_new(unsigned home, const struct spool_message *m)
{
	size_t strings = strlen(m->sender) + 1 + (m->envid ? strlen(m->envid) : 0) + 1;
	for (size_t i = 0; i < m->rcpt_count; i++)
		strings += strlen(m->rcpts[i].address) + 1 +
			   (m->rcpts[i].orcpt ? strlen(m->rcpts[i].orcpt) : 0) + 1;
	size_t size = sizeof(struct qmsg) + m->rcpt_count * sizeof(struct qrcpt) + strings + m->body_len;
	struct qmsg *q = xmalloc(size);
	char *p = (char *)(q + 1) + m->rcpt_count * sizeof(struct qrcpt);

	memset(q, 0, sizeof(*q));
	atomic_init(&q->refs, 0);
	q->home = home;
	q->arrival_ms = m->arrival_usec / 1000;
	snprintf(q->queue_id, sizeof(q->queue_id), "%s", m->queue_id);
	q->rcpts = (struct qrcpt *)(q + 1);
	q->rcpt_count = m->rcpt_count;
#define COPY_STRING(dst, src) do { size_t n_ = strlen(src) + 1; memcpy(p, src, n_); dst = p; p += n_; } while (0)
	COPY_STRING(q->sender, m->sender);
	COPY_STRING(q->envid, m->envid ? m->envid : "");
	if (q->envid[0] == '\0')
		q->envid = NULL;
	for (size_t i = 0; i < m->rcpt_count; i++) {
		struct qrcpt *r = &q->rcpts[i];
		COPY_STRING(r->addr, m->rcpts[i].address);
		COPY_STRING(r->orcpt, m->rcpts[i].orcpt ? m->rcpts[i].orcpt : "");
		if (r->orcpt[0] == '\0')
			r->orcpt = NULL;
		r->notify = m->rcpts[i].notify;
		const char *at = strrchr(r->addr, '@');
		r->domain = at ? at + 1 : "";
	}
#undef COPY_STRING
	memcpy(p, m->body, m->body_len);
	q->body = p;
	q->body_len = m->body_len;
	q->ret = m->ret;
	q->smtputf8 = m->smtputf8;
	q->eightbit = m->body_type == SPOOL_BODY_8BITMIME || m->body_type == SPOOL_BODY_BINARYMIME;
	return q;
}

static void qmsg_ref(struct qmsg *q)
{
	atomic_fetch_add_explicit(&q->refs, 1, memory_order_relaxed);
}

static void qmsg_unref(struct qmsg *q)
{
	if (atomic_fetch_sub_explicit(&q->refs, 1, memory_order_acq_rel) == 1)
		free(q);
}

static struct qitem *qitem_new(struct qmsg *msg, uint32_t capacity)
{
	struct qitem *it = xmalloc(sizeof(*it) + capacity * sizeof(uint32_t));

	memset(it, 0, sizeof(*it));
	it->post.handle = item_arrived;
	it->post.discard = item_discard;
	it->msg = msg;
	it->heap_index = SIZE_MAX;
	qmsg_ref(msg);
	return it;
}

/* item_set_state - move it to state, keeping its domain's counts. */
static void item_set_state(struct qitem *it, enum qstate state)
{
	if (it->d != NULL) {
		it->d->by_state[it->state]--;
		it->d->by_state[state]++;
	}
	it->state = (uint8_t)state;
}

static void link_insert_after(struct qlink *pos, struct qlink *l)
{
	l->prev = pos;
	l->next = pos->next;
	pos->next->prev = l;
	pos->next = l;
}

static void link_remove(struct qlink *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->prev = l->next = l;
}

/* qitem_free - the item is done (or the worker stops): out of its domain. */
static void qitem_free(struct qitem *it)
{
	if (it->d != NULL) {
		it->d->by_state[it->state]--;
		link_remove(&it->link);
	}
	qmsg_unref(it->msg);
	free(it->last_error);
	free(it);
}

static struct delivery *delivery_of(struct worker *w)
{
	return w->delivery;
}

/* ---- domains ----------------------------------------------------------- */

/* domain_find - d of name on this worker, or NULL. */
static struct qdomain *domain_find(struct delivery *dl, const char *name)
{
	uint64_t h = domain_hash(name);

	if (dl->domain_buckets > 0) {
		for (struct qdomain *d = dl->domains[h % dl->domain_buckets]; d; d = d->hash_next)
			if (d->hash == h && strcasecmp(d->name, name) == 0)
				return d;
	}
	return NULL;
}

/* domain_get - d of name, made on first use. Domains stay until exit. */
static struct qdomain *domain_get(struct delivery *dl, const char *name)
{
	uint64_t h = domain_hash(name);
	struct qdomain *d = domain_find(dl, name);

	if (d != NULL)
		return d;
	if (dl->domain_count >= dl->domain_buckets * 2) {
		size_t nb = dl->domain_buckets ? dl->domain_buckets * 4 : 256;
		struct qdomain **nt = calloc(nb, sizeof(*nt));
		if (nt == NULL)
			log_fatal("out of memory");
		for (size_t i = 0; i < dl->domain_buckets; i++) {
			struct qdomain *e = dl->domains[i];
			while (e) {
				struct qdomain *next = e->hash_next;
				e->hash_next = nt[e->hash % nb];
				nt[e->hash % nb] = e;
				e = next;
			}
		}
		free(dl->domains);
		dl->domains = nt;
		dl->domain_buckets = nb;
	}
	size_t len = strlen(name);
	d = xmalloc(sizeof(*d) + len + 1);
	memset(d, 0, sizeof(*d));
	for (size_t i = 0; i <= len; i++)
		d->name[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] - 'A' + 'a') : name[i];
	d->dl = dl;
	d->hash = h;
	d->window = INITIAL_WINDOW;
	d->items.prev = d->items.next = &d->items;
	if (dl->domain_count == dl->domain_list_cap) {
		dl->domain_list_cap = dl->domain_list_cap ? dl->domain_list_cap * 2 : 256;
		dl->domain_list = realloc(dl->domain_list, dl->domain_list_cap * sizeof(*dl->domain_list));
		if (dl->domain_list == NULL)
			log_fatal("out of memory");
	}
	d->index = dl->domain_count;
	dl->domain_list[dl->domain_count] = d;
	d->hash_next = dl->domains[h % dl->domain_buckets];
	dl->domains[h % dl->domain_buckets] = d;
	dl->domain_count++;
	return d;
}

static void domain_push_ready(struct qdomain *d, struct qitem *it)
{
	it->next = NULL;
	it->prev = d->ready_tail;
	if (d->ready_tail)
		d->ready_tail->next = it;
	else
		d->ready_head = it;
	d->ready_tail = it;
	d->ready_count++;
	d->dl->ready_total++;
	item_set_state(it, QSTATE_READY);
}

/* domain_remove_ready - take it out of d's ready list, wherever it is. */
static void domain_remove_ready(struct qdomain *d, struct qitem *it)
{
	if (it->prev)
		it->prev->next = it->next;
	else
		d->ready_head = it->next;
	if (it->next)
		it->next->prev = it->prev;
	else
		d->ready_tail = it->prev;
	it->next = it->prev = NULL;
	d->ready_count--;
	d->dl->ready_total--;
	item_set_state(it, QSTATE_NEW);
}

static struct qitem *domain_pop_ready(struct qdomain *d)
{
	struct qitem *it = d->ready_head;

	if (it != NULL)
		domain_remove_ready(d, it);
	return it;
}

/* ---- the retry heap ---------------------------------------------------- */

static void heap_swap(struct delivery *dl, size_t a, size_t b)
{
	struct qitem *t = dl->heap[a];
	dl->heap[a] = dl->heap[b];
	dl->heap[b] = t;
	dl->heap[a]->heap_index = a;
	dl->heap[b]->heap_index = b;
}

static void heap_sift_up(struct delivery *dl, size_t i)
{
	while (i > 0 && dl->heap[(i - 1) / 2]->due_ms > dl->heap[i]->due_ms) {
		heap_swap(dl, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_sift_down(struct delivery *dl, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < dl->heap_len && dl->heap[l]->due_ms < dl->heap[m]->due_ms)
			m = l;
		if (r < dl->heap_len && dl->heap[r]->due_ms < dl->heap[m]->due_ms)
			m = r;
		if (m == i)
			return;
		heap_swap(dl, i, m);
		i = m;
	}
}

static void heap_push(struct delivery *dl, struct qitem *it)
{
	if (dl->heap_len == dl->heap_cap) {
		dl->heap_cap = dl->heap_cap ? dl->heap_cap * 2 : 1024;
		dl->heap = realloc(dl->heap, dl->heap_cap * sizeof(*dl->heap));
		if (dl->heap == NULL)
			log_fatal("out of memory");
	}
	size_t i = dl->heap_len++;
	dl->heap[i] = it;
	it->heap_index = i;
	heap_sift_up(dl, i);
	item_set_state(it, QSTATE_RETRY);
}

/* heap_remove - take it out of the retry heap, wherever it is. */
static void heap_remove(struct delivery *dl, struct qitem *it)
{
	size_t i = it->heap_index;

	dl->heap_len--;
	if (i != dl->heap_len) {
		dl->heap[i] = dl->heap[dl->heap_len];
		dl->heap[i]->heap_index = i;
		/* The last item, moved into the hole, goes up or down. */
		heap_sift_up(dl, i);
		heap_sift_down(dl, i);
	}
	it->heap_index = SIZE_MAX;
	item_set_state(it, QSTATE_NEW);
}

static struct qitem *heap_pop(struct delivery *dl)
{
	struct qitem *top = dl->heap[0];

	heap_remove(dl, top);
	return top;
}

/* item_retry_at - park an item until due_ms. */
static void item_retry_at(struct delivery *dl, struct qitem *it, int64_t due_ms)
{
	it->due_ms = due_ms;
	heap_push(dl, it);
}

/* ---- posting between workers ----------------------------------------- */

static struct worker *domain_owner(struct worker *w, const char *domain)
{
	return &w->all[domain_hash(domain) % w->count];
}

/* item_enqueue - on the domain's owner: into its domain's ready list (the
 * local worker delivers at once). On arrival the item joins its domain's
 * list; one that comes held from the spool (doom HOLD) waits there. */
static void item_enqueue(struct delivery *dl, struct qitem *it)
{
	if (it->d == NULL) {
		struct qdomain *d = domain_get(dl, it->msg->rcpts[it->idx[0]].domain);
		it->d = d;
		d->by_state[it->state]++;
		link_insert_after(d->items.prev, &it->link);
		dl->stats.queued_items++;
		if (it->doom == QDOOM_HOLD) {
			it->doom = QDOOM_NONE;
			item_set_state(it, QSTATE_HELD);
			return;
		}
	}
	if (dl->w->role == WORKER_ROLE_LOCAL) {
		/* Stopping: an outcome might not reach a home that has left;
		 * the spool still has the item for the next start. */
		if (!dl->w->stopping)
			local_deliver_item(dl, it);
		return;
	}
	domain_push_ready(it->d, it);
	domain_kick(dl, it->d);
}

static void item_arrived(struct worker *w, struct worker_post *p)
{
	item_enqueue(delivery_of(w), (struct qitem *)p);
}

static void item_discard(struct worker_post *p)
{
	qitem_free((struct qitem *)p);
}

static void item_dispatch(struct worker *w, struct qitem *it)
{
	const char *domain = it->msg->rcpts[it->idx[0]].domain;
	struct worker *owner = config_is_local_domain(w->cfg, domain) ? worker_local(w)
								       : domain_owner(w, domain);

	if (owner == w)
		item_enqueue(delivery_of(w), it);
	else
		worker_post(w, owner, &it->post);
}

/* delivery_submit - one item per domain (split at the domain's recipients
 * per transaction), recipients held in the spool apart from the others. */
void delivery_submit(struct worker *w, const struct spool_message *m,
		     const struct spool_rcpt_state *state)
{
	struct qmsg *q = qmsg_new(w->id, m);
	bool *taken = calloc(m->rcpt_count ? m->rcpt_count : 1, sizeof(bool));

	if (taken == NULL)
		log_fatal("out of memory");
	qmsg_ref(q);    /* held while items are made */
	for (size_t i = 0; i < q->rcpt_count; i++) {
		if (taken[i] || (state != NULL && SPOOL_STATUS_IS_FINAL(state[i].status)))
			continue;
		const char *domain = q->rcpts[i].domain;
		bool held = state != NULL && state[i].status == SPOOL_STATUS_HELD;
		size_t limit = (size_t)config_domain_policy(w->cfg, domain)->max_recipients_per_transaction;
		struct qitem *it = qitem_new(q, (uint32_t)(limit < q->rcpt_count ? limit : q->rcpt_count));
		it->attempts = state != NULL ? state[i].attempts : 0;
		it->doom = held ? QDOOM_HOLD : QDOOM_NONE;
		for (size_t j = i; j < q->rcpt_count && it->count < limit; j++) {
			if (taken[j] || (state != NULL && SPOOL_STATUS_IS_FINAL(state[j].status)))
				continue;
			if (strcasecmp(q->rcpts[j].domain, domain) != 0 ||
			    held != (state != NULL && state[j].status == SPOOL_STATUS_HELD))
				continue;
			taken[j] = true;
			it->idx[it->count++] = (uint32_t)j;
		}
		item_dispatch(w, it);
	}
	free(taken);
	qmsg_unref(q);
}

/* A DSN waiting for its batch; then it is delivered like any message. */
struct dsn_commit {
	struct commit_waiter waiter;
	struct worker *w;
	char queue_id[32];
	char *recipient;
	char *body;
	size_t body_len;
};

static void dsn_spool_message(struct dsn_commit *dc, struct spool_message *msg, struct spool_rcpt *rcpt)
{
	memset(msg, 0, sizeof(*msg));
	memset(rcpt, 0, sizeof(*rcpt));
	rcpt->address = dc->recipient;
	rcpt->notify = SPOOL_NOTIFY_NEVER;
	rcpt->orcpt = "";
	msg->queue_id = dc->queue_id;
	msg->arrival_usec = wall_ms() * 1000;
	msg->client_addr = "local";
	msg->helo = "";
	msg->auth_user = "";
	msg->sender = "";
	msg->envid = "";
	msg->rcpt_count = 1;
	msg->rcpts = rcpt;
	msg->body = (const uint8_t *)dc->body;
	msg->body_len = dc->body_len;
}

static void dsn_commit_done(struct commit_waiter *waiter, int result)
{
	struct dsn_commit *dc = container_of(waiter, struct dsn_commit, waiter);
	struct spool_message msg;
	struct spool_rcpt rcpt;

	dsn_spool_message(dc, &msg, &rcpt);
	if (result < 0) {
		/* Not durable: try again in the next batch rather than lose it. */
		if (commit_message(dc->w, &msg, &dc->waiter) == 0)
			return;
		log_error("dsn_lost", "id=%s to=<%s> error=\"%s\"", dc->queue_id, dc->recipient,
			  strerror(-result));
	} else {
		log_info("dsn_queued", "id=%s to=<%s> size=%zu", dc->queue_id, dc->recipient, dc->body_len);
		delivery_submit(dc->w, &msg, NULL);
	}
	free(dc->recipient);
	free(dc->body);
	free(dc);
}

static void outcome_discard(struct worker_post *p)
{
	struct qoutcome *o = (struct qoutcome *)p;

	qmsg_unref(o->msg);
	free(o->dsn);
	free(o);
}

/* outcome_journal - at home: the bounce (if any) then the outcomes go into
 * the next batch, so a DSN is never lost to a crash between the two. */
static void outcome_journal(struct worker *w, struct qoutcome *o)
{
	if (o->dsn != NULL) {
		struct dsn_commit *dc = xmalloc(sizeof(*dc));
		struct spool_message msg;
		struct spool_rcpt rcpt;

		memset(dc, 0, sizeof(*dc));
		dc->w = w;
		dc->waiter.done = dsn_commit_done;
		spool_shard_new_queue_id(commit_shard(w), dc->queue_id);
		dc->recipient = strdup(o->msg->sender);
		dc->body = o->dsn;
		dc->body_len = o->dsn_len;
		o->dsn = NULL;
		if (dc->recipient == NULL)
			log_fatal("out of memory");
		dsn_spool_message(dc, &msg, &rcpt);
		int rc = commit_message(w, &msg, &dc->waiter);
		if (rc < 0) {
			log_error("dsn_lost", "id=%s to=<%s> error=\"%s\"", dc->queue_id, dc->recipient,
				  strerror(-rc));
			free(dc->recipient);
			free(dc->body);
			free(dc);
		}
	}
	for (uint32_t i = 0; i < o->count; i++) {
		struct spool_outcome out = {
			.queue_id = o->msg->queue_id,
			.rcpt_index = o->e[i].idx,
			.status = o->e[i].status,
			.attempts = o->e[i].attempts,
		};
		int rc = commit_outcome(w, &out, NULL);
		if (rc < 0)
			log_error("outcome_lost", "id=%s rcpt=%u error=\"%s\"", out.queue_id, out.rcpt_index,
				  strerror(-rc));
	}
	outcome_discard(&o->post);
}

static void outcome_arrived(struct worker *w, struct worker_post *p)
{
	outcome_journal(w, (struct qoutcome *)p);
}


/* outcome_new - room for count recipients' outcomes of it's message. */
static struct qoutcome *outcome_new(const struct qitem *it, uint32_t count)
{
	struct qoutcome *o = xmalloc(sizeof(*o) + count * sizeof(o->e[0]));

	memset(o, 0, sizeof(*o));
	o->post.handle = outcome_arrived;
	o->post.discard = outcome_discard;
	o->msg = it->msg;
	qmsg_ref(it->msg);
	return o;
}

/* outcome_send - hand outcomes to the message's home worker. */
static void outcome_send(struct delivery *dl, struct qoutcome *o)
{
	struct worker *w = dl->w;
	struct worker *home = &w->all[o->msg->home];

	if (home == w)
		outcome_journal(w, o);
	else
		worker_post(w, home, &o->post);
}

/* ---- outcomes of an attempt ------------------------------------------ */

/* item_journal_state - record a non-final state (held, or deferred again
 * after a release) of every recipient of it at home, so it survives a
 * restart. */
static void item_journal_state(struct delivery *dl, struct qitem *it, enum spool_status status)
{
	struct qoutcome *o = outcome_new(it, it->count);

	for (uint32_t i = 0; i < it->count; i++)
		o->e[o->count++] = (struct outcome_entry){ .idx = it->idx[i], .status = (uint8_t)status,
							    .attempts = it->attempts };
	outcome_send(dl, o);
}

/* item_hold - the operator holds it: out of scheduling until released. */
static void item_hold(struct delivery *dl, struct qitem *it)
{
	item_set_state(it, QSTATE_HELD);
	item_journal_state(dl, it, SPOOL_STATUS_HELD);
}

static const char *outcome_name(const struct rcpt_result *r)
{
	return r->deleted ? "deleted" : r->outcome == SMTP_OUTCOME_DELIVERED ? "delivered" :
	       r->outcome == SMTP_OUTCOME_DEFERRED ? "deferred" : "bounced";
}

/* admin_result - what the operator's delete or bounce makes of a recipient. */
static void admin_result(struct rcpt_result *r, enum qdoom doom)
{
	bool del = doom == QDOOM_DELETE;

	*r = (struct rcpt_result){ .outcome = SMTP_OUTCOME_BOUNCED, .local = true, .deleted = del };
	snprintf(r->status, sizeof(r->status), "5.0.0");
	snprintf(r->text, sizeof(r->text), del ? "deleted by the operator" : "bounced by the operator");
}

/* log_delivery - one line per recipient per attempt; tls is what the
 * connection used ("TLSv1.2/<cipher>", "none"), NULL without one. */
static void log_delivery(struct delivery *dl, const struct qitem *it, uint32_t idx,
			 const struct rcpt_result *r, const char *mx, const char *ip, const char *tls)
{
	char reply[2 * REPLY_TEXT_MAX + 3];
	const struct qmsg *m = it->msg;

	if (delivery_log_enabled()) {
		char msgid[256];
		delivery_log_message_id(m->body, m->body_len, msgid, sizeof(msgid));
		delivery_log_write(&(struct delivery_log_entry){
			.ts_ms = wall_ms(), .queue_id = m->queue_id, .message_id = msgid[0] ? msgid : NULL,
			.sender = m->sender,
			.recipient = m->rcpts[idx].addr, .domain = m->rcpts[idx].domain, .mx = mx, .ip = ip,
			.tls = tls, .status = outcome_name(r), .code = r->code, .enhanced_code = r->status[0] ? r->status : NULL,
			.reply = r->text, .delay_s = (double)(wall_ms() - m->arrival_ms) / 1000.0,
			.attempt = it->attempts + 1,
		});
		return;
	}
	log_quote(reply, sizeof(reply), r->text, strlen(r->text));
	log_info("delivery", "id=%s rcpt=<%s> domain=%s mx=%s ip=%s tls=%s status=%s code=%d dsn=%s delay=%.3f attempt=%u reply=%s",
		 m->queue_id, m->rcpts[idx].addr, m->rcpts[idx].domain, mx ? mx : "-", ip ? ip : "-",
		 tls ? tls : "-",
		 outcome_name(r), r->code, r->status[0] ? r->status : "-",
		 (double)(wall_ms() - m->arrival_ms) / 1000.0, it->attempts + 1, reply);
}

/* dsn_build - an RFC 3464 report for the bounced recipients whose NOTIFY
 * wants one; NULL when none does (or the sender is <>). */
static char *dsn_build(struct delivery *dl, const struct qitem *it, const struct rcpt_result *res,
		       const char *mx, size_t *len)
{
	const struct qmsg *m = it->msg;
	struct bounce_rcpt *br = xmalloc(it->count * sizeof(*br));
	size_t n = 0;
	int64_t now = wall_ms();

	for (uint32_t i = 0; i < it->count; i++) {
		const struct qrcpt *r = &m->rcpts[it->idx[i]];
		if (res[i].outcome != SMTP_OUTCOME_BOUNCED || res[i].deleted ||
		    !bounce_wanted(m->sender, r->notify, BOUNCE_FAILED))
			continue;
		br[n++] = (struct bounce_rcpt){
			.addr = r->addr, .orcpt = r->orcpt, .action = BOUNCE_FAILED,
			.status = res[i].status[0] ? res[i].status : NULL,
			.remote_mta = res[i].local ? NULL : mx, .code = res[i].local ? 0 : res[i].code,
			.diagnostic = res[i].text, .last_attempt_ms = now,
		};
	}
	char *out = NULL;
	if (n > 0) {
		struct buf b;
		buf_init(&b, (size_t)dl->w->cfg->bounce_max_original_size + (1 << 20));
		struct bounce_input in = {
			.hostname = dl->w->cfg->hostname, .sender = m->sender, .envid = m->envid,
			.ret = m->ret == SPOOL_RET_HDRS ? SMTP_RET_HDRS : m->ret == SPOOL_RET_FULL ? SMTP_RET_FULL : SMTP_RET_NONE,
			.arrival_ms = m->arrival_ms, .now_ms = now, .unique = rng_next(dl),
			.rcpts = br, .nrcpts = n, .message = m->body, .message_len = m->body_len,
			.max_original = (size_t)dl->w->cfg->bounce_max_original_size,
		};
		if (bounce_build(&in, &b) == 0) {
			*len = buf_len(&b);
			out = xmalloc(*len);
			memcpy(out, buf_data(&b), *len);
			dl->stats.dsn_sent++;
		}
		buf_free(&b);
	}
	free(br);
	return out;
}

/* item_complete - the results of one attempt at an item: journal the final
 * ones at home (with a DSN for bounces), park the deferred ones for a retry,
 * or bounce them when the queue lifetime is over. An operator's delete,
 * bounce or hold that waited for the attempt applies to what is left. */
static void item_complete(struct delivery *dl, struct qdomain *d, struct qitem *it,
			  const struct rcpt_result *res_in, const char *mx, const char *ip,
			  const char *tls)
{
	struct rcpt_result *res = xmalloc(it->count * sizeof(*res));
	uint32_t deferred = 0, final = 0;
	bool expired = retry_expired(&dl->retry, it->msg->arrival_ms, wall_ms());
	const struct rcpt_result *last_deferral = NULL;

	(void)d;
	memcpy(res, res_in, it->count * sizeof(*res));
	for (uint32_t i = 0; i < it->count; i++) {
		if (res[i].outcome == SMTP_OUTCOME_DEFERRED &&
		    (it->doom == QDOOM_DELETE || it->doom == QDOOM_BOUNCE)) {
			admin_result(&res[i], (enum qdoom)it->doom);
		} else if (res[i].outcome == SMTP_OUTCOME_DEFERRED && expired) {
			char text[REPLY_TEXT_MAX];
			/* 35 bytes of prefix + at most 164 of the old text fit. */
			snprintf(text, sizeof(text), "delivery time expired; last error: %.164s", res[i].text);
			memcpy(res[i].text, text, sizeof(text));
			snprintf(res[i].status, sizeof(res[i].status), "4.4.7");
			res[i].outcome = SMTP_OUTCOME_BOUNCED;
			res[i].local = true;
		}
		log_delivery(dl, it, it->idx[i], &res[i], mx, ip, tls);
		if (res[i].outcome == SMTP_OUTCOME_DEFERRED) {
			deferred++;
			last_deferral = &res[i];
		} else {
			final++;
		}
		dl->stats.delivered += res[i].outcome == SMTP_OUTCOME_DELIVERED;
		dl->stats.deferred += res[i].outcome == SMTP_OUTCOME_DEFERRED;
		dl->stats.bounced += res[i].outcome == SMTP_OUTCOME_BOUNCED && !res[i].deleted;
		dl->stats.deleted += res[i].deleted;
	}
	if (final > 0) {
		struct qoutcome *o = outcome_new(it, final);
		o->dsn = dsn_build(dl, it, res, mx, &o->dsn_len);
		for (uint32_t i = 0; i < it->count; i++) {
			if (res[i].outcome == SMTP_OUTCOME_DEFERRED)
				continue;
			o->e[o->count++] = (struct outcome_entry){
				.idx = it->idx[i],
				.status = res[i].outcome == SMTP_OUTCOME_DELIVERED ? SPOOL_STATUS_DELIVERED :
					  res[i].deleted ? SPOOL_STATUS_DELETED :
					  res[i].local && strcmp(res[i].status, "4.4.7") == 0 ? SPOOL_STATUS_EXPIRED :
					  SPOOL_STATUS_BOUNCED,
				.attempts = it->attempts + 1,
			};
		}
		outcome_send(dl, o);
	}
	if (deferred == 0) {
		free(res);
		qitem_free(it);
		return;
	}
	/* Keep only the deferred recipients in the item. */
	char reason[REPLY_TEXT_MAX + 32];
	snprintf(reason, sizeof(reason), "%d %s %s", last_deferral->code,
		 last_deferral->status[0] ? last_deferral->status : "-", last_deferral->text);
	free(it->last_error);
	it->last_error = strdup(reason);
	uint32_t n = 0;
	for (uint32_t i = 0; i < it->count; i++)
		if (res[i].outcome == SMTP_OUTCOME_DEFERRED)
			it->idx[n++] = it->idx[i];
	it->count = n;
	it->attempts++;
	free(res);
	if (it->doom == QDOOM_HOLD) {
		it->doom = QDOOM_NONE;
		item_hold(dl, it);
		return;
	}
	int64_t delay = retry_next_delay_ms(&dl->retry, it->attempts - 1, rng_next(dl));
	item_retry_at(dl, it, dl->w->now_ms + delay);
}

/* item_fail_all - every recipient of the item gets the same result. */
static void item_fail_all(struct delivery *dl, struct qdomain *d, struct qitem *it,
			  enum smtp_outcome outcome, int code, const char *status, const char *text)
{
	struct rcpt_result *res = xmalloc(it->count * sizeof(*res));

	for (uint32_t i = 0; i < it->count; i++) {
		res[i] = (struct rcpt_result){ .outcome = outcome, .code = code, .local = true };
		snprintf(res[i].status, sizeof(res[i].status), "%s", status);
		snprintf(res[i].text, sizeof(res[i].text), "%s", text);
	}
	item_complete(dl, d, it, res, NULL, NULL, NULL);
	free(res);
}

/* ---- local delivery (the local worker only) --------------------------- */

/* local_result - fill one recipient's result of a local delivery. */
static void local_result(struct rcpt_result *r, enum smtp_outcome outcome, int code,
			 const char *status, const char *text)
{
	*r = (struct rcpt_result){ .outcome = outcome, .code = code, .local = true };
	snprintf(r->status, sizeof(r->status), "%s", status);
	snprintf(r->text, sizeof(r->text), "%s", text);
}

/* local_deliver_one - write the message into the recipient's Maildir, with
 * Return-Path and Delivered-To prepended (RFC 5321 4.4). Blocks. */
static void local_deliver_one(struct delivery *dl, const struct qmsg *m, const struct qrcpt *rc,
			      struct rcpt_result *res)
{
	const struct config *cfg = dl->w->cfg;
	char name[MAILBOX_NAME_MAX + 1];

	if (!mailbox_exists(cfg->users, rc->addr) || mailbox_name(rc->addr, name, sizeof(name)) < 0) {
		local_result(res, SMTP_OUTCOME_BOUNCED, 550, "5.1.1", "user unknown");
		return;
	}
	struct buf b;
	struct maildir_deliver_options opt = {
		.quota = (uint64_t)cfg->mailbox_quota, .hostname = cfg->hostname,
	};
	int err;
	buf_init(&b, m->body_len + 1024);     /* both paths are at most 256 octets */
	if (buf_append_printf(&b, "Return-Path: <%s>\r\nDelivered-To: %s\r\n", m->sender, rc->addr) < 0 ||
	    buf_append(&b, m->body, m->body_len) < 0)
		err = -ENOMEM;
	else
		err = maildir_deliver(cfg->mailbox_root, name, buf_data(&b), buf_len(&b), &opt, NULL, 0);
	buf_free(&b);
	if (err == 0) {
		local_result(res, SMTP_OUTCOME_DELIVERED, 250, "2.0.0", "delivered to maildir");
	} else if (err == -EDQUOT) {
		local_result(res, SMTP_OUTCOME_DEFERRED, 452, "4.2.2", "mailbox full");
	} else if (err == -EINVAL) {
		local_result(res, SMTP_OUTCOME_BOUNCED, 550, "5.1.1", "user unknown");
	} else {
		char text[REPLY_TEXT_MAX];
		snprintf(text, sizeof(text), "local delivery failed: %s", strerror(-err));
		log_error("local_delivery_failed", "id=%s mailbox=%s root=%s error=\"%s\"", m->queue_id,
			  name, cfg->mailbox_root, strerror(-err));
		local_result(res, SMTP_OUTCOME_DEFERRED, 451, "4.3.0", text);
	}
}

/* local_deliver_item - every recipient of the item, then the usual
 * completion (log lines, outcomes home, DSN, retries). */
static void local_deliver_item(struct delivery *dl, struct qitem *it)
{
	struct rcpt_result *res = xmalloc(it->count * sizeof(*res));

	item_set_state(it, QSTATE_ACTIVE);
	for (uint32_t i = 0; i < it->count; i++)
		local_deliver_one(dl, it->msg, &it->msg->rcpts[it->idx[i]], &res[i]);
	item_complete(dl, NULL, it, res, "local", NULL, NULL);
	free(res);
}

/* ---- outbound sessions ----------------------------------------------- */

extern const struct conn_handler delivery_conn_handler;

static void idle_remove(struct osession *s)
{
	if (!s->idle)
		return;
	if (s->idle_prev)
		s->idle_prev->idle_next = s->idle_next;
	else
		s->d->idle_head = s->idle_next;
	if (s->idle_next)
		s->idle_next->idle_prev = s->idle_prev;
	s->idle_prev = s->idle_next = NULL;
	s->idle = false;
}

static void idle_push(struct osession *s)
{
	s->idle_prev = NULL;
	s->idle_next = s->d->idle_head;
	if (s->idle_next)
		s->idle_next->idle_prev = s;
	s->d->idle_head = s;
	s->idle = true;
	worker_timer_arm(s->dl->w, &s->conn->phase_timer, WORKER_TIMER_OUT_IDLE);
}

static const char *session_mx(const struct osession *s)
{
	return s->route && s->host < s->route->host_count ? s->route->hosts[s->host].name : NULL;
}

/* session_begin - start a transaction for the next ready item, if any;
 * returns true when one is under way. Called only in READY. */
static bool session_begin(struct osession *s)
{
	struct delivery *dl = s->dl;
	struct qdomain *d = s->d;
	const struct config_domain *pol = config_domain_policy(dl->w->cfg, d->name);

	while (!dl->stopping && s->transactions < (unsigned)pol->max_messages_per_connection) {
		struct qitem *it = domain_pop_ready(d);
		if (it == NULL)
			return false;
		const struct qmsg *m = it->msg;
		if (it->count > s->rcpt_cap) {
			s->rcpt_cap = it->count;
			s->rcpts = realloc(s->rcpts, s->rcpt_cap * sizeof(*s->rcpts));
			s->results = realloc(s->results, s->rcpt_cap * sizeof(*s->results));
			if (s->rcpts == NULL || s->results == NULL)
				log_fatal("out of memory");
		}
		for (uint32_t i = 0; i < it->count; i++) {
			const struct qrcpt *r = &m->rcpts[it->idx[i]];
			s->rcpts[i] = (struct smtp_client_rcpt){ r->addr, r->notify, r->orcpt };
			s->results[i] = (struct rcpt_result){ .outcome = SMTP_OUTCOME_DEFERRED, .code = 0, .local = true };
			snprintf(s->results[i].status, sizeof(s->results[i].status), "4.4.2");
			snprintf(s->results[i].text, sizeof(s->results[i].text), "no reply");
		}
		s->txn = (struct smtp_client_txn){
			.sender = m->sender, .rcpts = s->rcpts, .nrcpts = it->count,
			.flags = (m->eightbit ? SMTP_TXN_8BIT : 0) | (m->smtputf8 ? SMTP_TXN_SMTPUTF8 : 0),
			.envid = m->envid,
			.ret = m->ret == SPOOL_RET_HDRS ? SMTP_RET_HDRS : m->ret == SPOOL_RET_FULL ? SMTP_RET_FULL : SMTP_RET_NONE,
			.body = m->body, .body_len = m->body_len,
		};
		s->item = it;
		item_set_state(it, QSTATE_ACTIVE);
		s->transactions++;
		int rc = smtp_client_begin(s->client, &s->txn);
		if (rc == 0)
			return true;
		if (rc < 0) {
			/* The envelope cannot be sent at all (bad address bytes). */
			s->item = NULL;
			item_fail_all(dl, d, it, SMTP_OUTCOME_BOUNCED, 0, "5.1.3",
				      "address cannot be sent over SMTP");
		}
		/* rc == 1: ended at once; txn_done has run. Take the next. */
	}
	return false;
}

/* ---- outbound STARTTLS ------------------------------------------------ */

/* delivery_tls_client - the worker's client TLS config (mbedTLS's curve
 * tables are per thread, tls.h), made on first use and again when a reload
 * changed the CA path; sessions keep the old one alive. A CA bundle that
 * does not load leaves a config without CAs: "may" and "encrypt" still
 * work, "verify" fails. NULL only if no config can be made at all. */
static struct tls_config *delivery_tls_client(struct delivery *dl)
{
	const char *ca = dl->w->cfg->tls_ca_file;
	char err[256];

	if (dl->tls_client != NULL && strcmp(dl->tls_client_ca, ca) == 0)
		return dl->tls_client;
	dl->tls_client = tls_config_free(dl->tls_client);
	free(dl->tls_client_ca);
	dl->tls_client_ca = strdup(ca);
	if (dl->tls_client_ca == NULL)
		log_fatal("out of memory");
	if (ca[0] != '\0') {
		dl->tls_client = tls_config_new_client(ca, err, sizeof(err));
		if (dl->tls_client == NULL)
			log_warn("tls_client_ca", "worker=%u ca=%s error=\"%s\" verify=impossible",
				 dl->w->id, ca, err);
	}
	if (dl->tls_client == NULL) {
		dl->tls_client = tls_config_new_client(NULL, err, sizeof(err));
		if (dl->tls_client == NULL)
			log_error("tls_client", "worker=%u error=\"%s\"", dl->w->id, err);
	}
	return dl->tls_client;
}

/* session_tls_failed - STARTTLS or the handshake failed on this
 * connection. Under "may" the same address is tried again in clear (once
 * per host); otherwise the host failed, with a reason that says TLS. */
static void session_tls_failed(struct osession *s, const char *why)
{
	const char *mx = session_mx(s) ? session_mx(s) : "-";
	bool fallback = s->tls_policy == CONFIG_TLS_MAY && !s->tls_skip;
	char quoted[REPLY_TEXT_MAX + 3];

	s->tls_phase = false;
	log_quote(quoted, sizeof(quoted), why, strlen(why));
	log_info("delivery_connection", "domain=%s mx=%s ip=%s result=tls_failed policy=%s next=%s error=%s",
		 s->d->name, mx, s->ip, config_tls_policy_name(s->tls_policy),
		 fallback ? "retry_without_tls" : "next_host", quoted);
	snprintf(s->last_error, sizeof(s->last_error), "%s [%s]: TLS failed: %s", mx, s->ip, why);
	snprintf(s->last_status, sizeof(s->last_status), "4.7.5");
	s->reason_kept = true;
	s->tls_retry_plain = fallback;
}

/* session_tls_gate - on the first READY of a connection: start STARTTLS
 * when the policy wants it and the server offers it; refuse to go on in
 * clear under "encrypt" and "verify" (QUIT; the host failed). Returns
 * true when the connection is not ready for mail yet. */
static bool session_tls_gate(struct osession *s)
{
	if (s->established || s->tls_on || s->tls_policy == CONFIG_TLS_NONE || s->dl->stopping)
		return false;     /* stopping: ev_ready quits, sending nothing */
	if (!s->tls_tried && !s->tls_skip && smtp_client_has_ext(s->client, SMTP_EXT_STARTTLS) &&
	    smtp_client_starttls(s->client) == 0) {
		s->tls_tried = true;
		s->tls_phase = true;
		return true;
	}
	if (s->tls_policy == CONFIG_TLS_MAY)
		return false;
	if (!s->reason_kept) {
		const char *mx = session_mx(s) ? session_mx(s) : "-";
		log_info("delivery_connection", "domain=%s mx=%s ip=%s result=tls_not_offered policy=%s",
			 s->d->name, mx, s->ip, config_tls_policy_name(s->tls_policy));
		snprintf(s->last_error, sizeof(s->last_error),
			 "%s [%s]: TLS required but STARTTLS not offered", mx, s->ip);
		snprintf(s->last_status, sizeof(s->last_status), "4.7.4");
		s->reason_kept = true;
	}
	s->policy_failed = true;
	s->quitting = true;
	smtp_client_quit(s->client);
	return true;
}

/* ---- smtp_client events (run inside feed/begin/abort) ----------------- */

static void ev_rcpt(void *arg, size_t index, enum smtp_outcome outcome, const struct smtp_client_result *r)
{
	struct osession *s = arg;
	struct rcpt_result *res = &s->results[index];

	res->outcome = outcome;
	res->code = r->code;
	res->local = r->local;
	snprintf(res->status, sizeof(res->status), "%s", r->status ? r->status : "");
	snprintf(res->text, sizeof(res->text), "%s", r->text ? r->text : "");
}

static void ev_txn_done(void *arg, const struct smtp_client_txn *txn)
{
	struct osession *s = arg;
	struct qitem *it = s->item;

	s->item = NULL;
	if (it != NULL)
		item_complete(s->dl, s->d, it, s->results, session_mx(s), s->ip[0] ? s->ip : NULL,
			      s->tls_desc);
}

static void ev_ready(void *arg)
{
	struct osession *s = arg;
	struct qdomain *d = s->d;
	const struct config_domain *pol = config_domain_policy(s->dl->w->cfg, d->name);

	if (session_tls_gate(s))
		return;
	if (!s->established) {
		s->established = true;
		retry_domain_succeeded(&d->backoff);
		if (d->window < (unsigned)pol->max_connections)
			d->window++;
	}
	if (session_begin(s))
		return;
	if (s->dl->stopping || s->transactions >= (unsigned)pol->max_messages_per_connection) {
		s->quitting = true;
		smtp_client_quit(s->client);
	}
	/* else: idle; osession_pump puts it in the pool. */
}

/* ev_starttls - the reply to STARTTLS. On 220 the handshake starts at
 * once (the ClientHello goes out with conn_start_tls); a refusal leaves the
 * client READY, and ev_ready then goes on in clear or quits by policy. */
static void ev_starttls(void *arg, bool ok, const struct smtp_client_result *r)
{
	struct osession *s = arg;
	const char *mx = session_mx(s);

	if (!ok) {
		char quoted[REPLY_TEXT_MAX + 3];
		const char *text = r && r->text ? r->text : "";
		s->tls_phase = false;
		log_quote(quoted, sizeof(quoted), text, strlen(text));
		log_info("delivery_connection", "domain=%s mx=%s ip=%s result=starttls_refused code=%d reply=%s",
			 s->d->name, mx ? mx : "-", s->ip, r ? r->code : 0, quoted);
		if (s->tls_policy >= CONFIG_TLS_ENCRYPT) {
			snprintf(s->last_error, sizeof(s->last_error), "%s [%s]: STARTTLS refused: %d %s",
				 mx ? mx : "-", s->ip, r ? r->code : 0, text);
			snprintf(s->last_status, sizeof(s->last_status), "4.7.4");
			s->reason_kept = true;
		}
		return;
	}
	struct tls_config *tc = delivery_tls_client(s->dl);
	bool verify = s->tls_policy == CONFIG_TLS_VERIFY;
	/* SNI and the certificate check want a name; "[ip]" is none. */
	const char *name = mx != NULL && mx[0] != '[' ? mx : NULL;
	struct tls_session *ts = tc == NULL ? NULL :
		tls_session_new(tc, verify ? TLS_VERIFY_REQUIRED : TLS_VERIFY_NONE, name);

	if (ts == NULL) {
		session_tls_failed(s, tc == NULL ? "no TLS client configuration" :
				      verify && name == NULL ? "no host name to verify" :
				      "cannot start a TLS session");
		s->tls_abort = true;     /* in osession_pump, after the feed */
		return;
	}
	conn_start_tls(s->conn, ts);
	if (s->conn->tls_failed) {
		session_tls_failed(s, tls_strerror(ts));
		s->tls_abort = true;
	}
}

static void ev_closed(void *arg, bool failed, const struct smtp_client_result *r)
{
	struct osession *s = arg;

	s->over = true;
	/* A QUIT because TLS was required and not there fails the host. */
	s->over_failed = failed || s->policy_failed;
	if (failed && s->tls_phase) {
		/* E.g. cleartext right behind the 220 to STARTTLS: a server
		 * broken in STARTTLS, so under "may" try it again in clear. */
		session_tls_failed(s, r && r->text ? r->text : "failed in STARTTLS");
	}
	if (s->reason_kept)
		return;     /* TLS: last_error says it better, already logged */
	if (failed) {
		snprintf(s->last_error, sizeof(s->last_error), "%s [%s]: %d %s",
			 session_mx(s) ? session_mx(s) : "-", s->ip, r ? r->code : 0,
			 r && r->text ? r->text : "");
		s->last_status[0] = '\0';
	}
	if (failed)
		log_info("delivery_connection", "domain=%s mx=%s ip=%s result=failed code=%d reply=\"%s\"",
			 s->d->name, session_mx(s) ? session_mx(s) : "-", s->ip, r ? r->code : 0,
			 r && r->text ? r->text : "");
}

static struct osession *osession_new(struct delivery *dl, struct qdomain *d, const struct dns_route *route)
{
	struct osession *s = calloc(1, sizeof(*s));

	if (s == NULL)
		log_fatal("out of memory");
	s->dl = dl;
	s->d = d;
	s->route = dns_route_ref(route);
	d->active++;
	dl->sessions_active++;
	return s;
}

/* osession_free - the session is over for good. */
static void osession_free(struct osession *s)
{
	struct qdomain *d = s->d;

	idle_remove(s);
	if (s->item != NULL) {
		/* Defensive: a transaction the client never finished. */
		item_fail_all(s->dl, d, s->item, SMTP_OUTCOME_DEFERRED, 0, "4.4.2", "connection lost");
		s->item = NULL;
	}
	smtp_client_free(s->client);
	dns_route_unref(s->route);
	free(s->rcpts);
	free(s->results);
	d->active--;
	s->dl->sessions_active--;
	free(s);
}

/* osession_connect - connect to the current address of the route. */
static bool osession_connect(struct osession *s)
{
	struct dns_route *route = s->route;

	while (s->host < route->host_count) {
		struct dns_host *h = &route->hosts[s->host];
		if (s->addr < h->addr_count) {
			union dns_addr *a = &h->addrs[s->addr];
			socklen_t len = a->sa.sa_family == AF_INET6 ? sizeof(a->sin6) : sizeof(a->sin);
			dns_addr_format(a, s->ip, sizeof(s->ip));
			s->conn = conn_connect(s->dl->w, &a->sa, len, &delivery_conn_handler, s,
					       WORKER_TIMER_OUT_CONNECT);
			if (s->conn != NULL) {
				s->dl->stats.connections++;
				return true;
			}
		}
		if (++s->addr >= h->addr_count) {
			s->host++;
			s->addr = 0;
			s->tls_skip = false;
		}
	}
	return false;
}

/* domain_defer_ready - every ready item of d is deferred with status
 * (NULL: 4.4.1, no answer from host) and text. */
static void domain_defer_ready(struct delivery *dl, struct qdomain *d, const char *status,
			       const char *text)
{
	struct qitem *it;

	while ((it = domain_pop_ready(d)) != NULL)
		item_fail_all(dl, d, it, SMTP_OUTCOME_DEFERRED, 0, status ? status : "4.4.1", text);
}

/* osession_over - the connection ended. Before the session ever became
 * ready, a failure moves on to the next address or MX host; when none is
 * left, the whole domain backs off. */
static void osession_over(struct osession *s, bool failed)
{
	struct delivery *dl = s->dl;
	struct qdomain *d = s->d;
	struct conn *c = s->conn;

	idle_remove(s);
	s->conn = NULL;
	if (c != NULL) {
		c->proto = NULL;
		/* Bounds the flush: out_timeout closes a conn without session.
		 * Armed first: the close may be at once (and disarms it). */
		worker_timer_arm(dl->w, &c->phase_timer, WORKER_TIMER_OUT_COMMAND);
		conn_close_after_flush(c);
	}
	if (failed && !s->established && !dl->stopping) {
		dl->stats.connect_failures++;
		smtp_client_free(s->client);
		s->client = NULL;
		s->over = false;
		if (s->tls_retry_plain) {
			/* "may": TLS failed with this host, so the same
			 * address again, in clear (RFC 7435 fallback). */
			s->tls_retry_plain = false;
			s->tls_skip = true;
		} else if (++s->addr >= s->route->hosts[s->host].addr_count) {
			s->host++;
			s->addr = 0;
			s->tls_skip = false;
		}
		if (osession_connect(s))
			return;
		retry_domain_failed(&dl->domain_retry, &d->backoff, dl->w->now_ms, rng_next(dl));
		log_warn("domain_backoff", "domain=%s failures=%u for_ms=%lld", d->name, d->backoff.failures,
			 (long long)(d->backoff.until_ms - dl->w->now_ms));
		/* Every waiting item had an attempt: count it, log it, and let
		 * the queue lifetime run out (a bounce) rather than park forever. */
		char text[REPLY_TEXT_MAX + 40];
		snprintf(text, sizeof(text), "no MX host reachable; last: %s",
			 s->last_error[0] ? s->last_error : "connection failed");
		domain_defer_ready(dl, d, s->last_status[0] ? s->last_status : NULL, text);
	}
	osession_free(s);
	domain_kick(dl, d);
}

/* osession_pump - send what the client wrote, then settle its state:
 * finished, idle in the pool, or waiting with the right timer. */
static void osession_pump(struct osession *s)
{
	struct conn *c = s->conn;
	const char *out;
	size_t len;

	if (s->tls_abort) {
		s->tls_abort = false;
		smtp_client_abort(s->client, "TLS failed");
	}
	while ((out = smtp_client_output(s->client, &len)) != NULL && len > 0) {
		conn_write(c, out, len);
		smtp_client_output_consumed(s->client, len);
	}
	if (s->over) {
		osession_over(s, s->over_failed);
		return;
	}
	switch (smtp_client_state(s->client)) {
	case SMTP_CLIENT_READY:
		if (!s->idle) {
			idle_push(s);
			domain_kick(s->dl, s->d);   /* work may have arrived */
		}
		break;
	case SMTP_CLIENT_GREETING:
		worker_timer_arm(s->dl->w, &c->phase_timer, WORKER_TIMER_OUT_GREETING);
		break;
	case SMTP_CLIENT_BODY:
		worker_timer_arm(s->dl->w, &c->phase_timer, WORKER_TIMER_OUT_DATA);
		break;
	default:
		worker_timer_arm(s->dl->w, &c->phase_timer, WORKER_TIMER_OUT_COMMAND);
		break;
	}
}

/* ---- the conn handler ------------------------------------------------- */

static void out_open(struct conn *c)
{
	struct osession *s = c->proto;
	struct smtp_client_config cfg = {
		.helo_name = s->dl->w->cfg->hostname,
		.events = { .arg = s, .rcpt = ev_rcpt, .txn_done = ev_txn_done, .ready = ev_ready,
			    .starttls = ev_starttls, .closed = ev_closed },
	};

	s->client = smtp_client_new(&cfg);
	s->tls_policy = config_domain_policy(s->dl->w->cfg, s->d->name)->tls;
	s->tls_tried = s->tls_phase = s->tls_on = s->tls_abort = false;
	s->policy_failed = s->reason_kept = false;
	snprintf(s->tls_desc, sizeof(s->tls_desc), "none");
	osession_pump(s);
}

/* out_tls_ready - the handshake after STARTTLS ended: EHLO again over TLS
 * (RFC 3207 4.2), or the TLS failure path. */
static void out_tls_ready(struct conn *c, bool ok)
{
	struct osession *s = c->proto;

	if (s == NULL)
		return;
	if (!ok) {
		session_tls_failed(s, tls_strerror(c->tls));
		smtp_client_abort(s->client, "TLS handshake failed");
		osession_pump(s);
		return;
	}
	struct tls_info info;
	const char *mx = session_mx(s);

	tls_session_info(c->tls, &info);
	s->tls_phase = false;
	s->tls_on = true;
	snprintf(s->tls_desc, sizeof(s->tls_desc), "%s/%s", info.protocol ? info.protocol : "?",
		 info.cipher ? info.cipher : "?");
	log_info("delivery_tls", "domain=%s mx=%s ip=%s policy=%s protocol=%s cipher=%s verified=%d resumed=%d",
		 s->d->name, mx ? mx : "-", s->ip, config_tls_policy_name(s->tls_policy),
		 info.protocol ? info.protocol : "?", info.cipher ? info.cipher : "?", info.verified,
		 info.resumed);
	smtp_client_restart_ehlo(s->client);
	osession_pump(s);
}

static void out_connect_failed(struct conn *c, int err)
{
	struct osession *s = c->proto;

	if (s == NULL)
		return;
	log_info("delivery_connection", "domain=%s mx=%s ip=%s result=connect_failed error=\"%s\"",
		 s->d->name, session_mx(s) ? session_mx(s) : "-", s->ip, strerror(-err));
	snprintf(s->last_error, sizeof(s->last_error), "%s [%s]: %s",
		 session_mx(s) ? session_mx(s) : "-", s->ip, strerror(-err));
	s->last_status[0] = '\0';
	osession_over(s, true);
}

static size_t out_input(struct conn *c, const char *data, size_t len)
{
	struct osession *s = c->proto;

	if (s == NULL)
		return len;
	idle_remove(s);
	smtp_client_feed(s->client, data, len);
	osession_pump(s);
	return len;
}

static void out_timeout(struct conn *c, enum worker_timer_class cls)
{
	struct osession *s = c->proto;

	if (s == NULL) {
		conn_close(c);      /* the flush osession_over allowed is stuck */
		return;
	}
	if (cls == WORKER_TIMER_OUT_IDLE) {
		idle_remove(s);
		s->quitting = true;
		smtp_client_quit(s->client);
		worker_timer_arm(s->dl->w, &c->phase_timer, WORKER_TIMER_OUT_COMMAND);
		osession_pump(s);
		return;
	}
	if (cls == WORKER_TIMER_OUT_CONNECT || s->client == NULL) {
		log_info("delivery_connection", "domain=%s ip=%s result=connect_timeout", s->d->name, s->ip);
		osession_over(s, true);
		return;
	}
	if (s->tls_phase)
		session_tls_failed(s, "timeout in STARTTLS");
	smtp_client_abort(s->client, cls == WORKER_TIMER_OUT_DATA ? "timeout sending the message"
								  : "timeout waiting for the server");
	osession_pump(s);
}

/* out_close - the conn is going away under us (peer reset, worker stop). */
static void out_close(struct conn *c)
{
	struct osession *s = c->proto;

	if (s == NULL)
		return;
	bool in_tls = s->tls_phase && !s->established;

	c->proto = NULL;
	s->conn = NULL;
	if (in_tls)
		session_tls_failed(s, "connection lost during STARTTLS");
	if (s->client != NULL)
		smtp_client_abort(s->client, "connection lost");
	s->over = true;
	s->over_failed = true;
	/* Not a fallback moment, except in STARTTLS (nothing was sent yet):
	 * a session that was lost with mail in flight ends here. */
	if (!in_tls)
		s->established = true;
	osession_over(s, true);
}

static void out_shutdown(struct conn *c)
{
	struct osession *s = c->proto;

	if (s == NULL)
		return;
	s->dl->stopping = true;
	if (s->client == NULL || s->idle || smtp_client_state(s->client) == SMTP_CLIENT_READY) {
		idle_remove(s);
		if (s->client != NULL && smtp_client_state(s->client) == SMTP_CLIENT_READY) {
			s->quitting = true;
			smtp_client_quit(s->client);
			osession_pump(s);
		} else {
			conn_close(c);
		}
	}
	/* A transaction in progress finishes; ev_ready then quits. */
}

const struct conn_handler delivery_conn_handler = {
	.name = "smtp-out",
	.open = out_open,
	.connect_failed = out_connect_failed,
	.input = out_input,
	.timeout = out_timeout,
	.shutdown = out_shutdown,
	.close = out_close,
	.tls_ready = out_tls_ready,
};

/* ---- scheduling ------------------------------------------------------- */

/* route_ready - where the domain's mail goes is known (or it failed). */
static void route_ready(const struct dns_route *route, void *arg)
{
	struct qdomain *d = arg;
	struct delivery *dl = d->dl;
	unsigned want = d->want;
	struct qitem *it;

	d->resolving = false;
	d->want = 0;
	if (dl->stopping)
		return;     /* a final outcome now might not reach its home: the spool keeps the items */
	if (route->status != DNS_ROUTE_OK) {
		enum smtp_outcome outcome = route->status == DNS_ROUTE_TEMPFAIL ? SMTP_OUTCOME_DEFERRED
										 : SMTP_OUTCOME_BOUNCED;
		log_info("route_failed", "domain=%s status=%s code=%d dsn=%s text=\"%s\"", d->name,
			 dns_route_status_name(route->status), route->smtp_code, route->enhanced, route->text);
		while ((it = domain_pop_ready(d)) != NULL)
			item_fail_all(dl, d, it, outcome, route->smtp_code, route->enhanced, route->text);
		return;
	}
	for (unsigned i = 0; i < want && !dl->stopping; i++) {
		struct osession *s = osession_new(dl, d, route);
		if (!osession_connect(s)) {
			osession_free(s);
			if (d->active == 0)
				domain_defer_ready(dl, d, NULL, "no MX host address could be connected to");
			break;
		}
	}
}

/* domain_kick - give ready items to idle connections, and open new ones
 * within the domain's window when items are left over. */
static void domain_kick(struct delivery *dl, struct qdomain *d)
{
	struct worker *w = dl->w;

	if (dl->stopping)
		return;
	while (d->ready_head != NULL && d->idle_head != NULL) {
		struct osession *s = d->idle_head;
		const struct config_domain *pol = config_domain_policy(w->cfg, d->name);
		idle_remove(s);
		if (!session_begin(s) && s->transactions >= (unsigned)pol->max_messages_per_connection) {
			s->quitting = true;
			smtp_client_quit(s->client);
		}
		osession_pump(s);
	}
	if (d->ready_head == NULL)
		return;
	if (retry_domain_blocked(&d->backoff, w->now_ms)) {
		struct qitem *it;
		while ((it = domain_pop_ready(d)) != NULL)
			item_retry_at(dl, it, d->backoff.until_ms);
		return;
	}
	const struct config_domain *pol = config_domain_policy(w->cfg, d->name);
	unsigned limit = d->window < (unsigned)pol->max_connections ? d->window : (unsigned)pol->max_connections;
	if (retry_domain_probing(&d->backoff, w->now_ms))
		limit = 1;
	if (d->active >= limit || d->ready_count <= d->active)
		return;
	unsigned want = limit - d->active;
	if (want > d->ready_count - d->active)
		want = (unsigned)(d->ready_count - d->active);
	if (d->resolving) {
		if (want > d->want)
			d->want = want;
		return;
	}
	d->resolving = true;
	d->want = want;
	dns_resolve_route(dl->resolver, d->name, route_ready, d, w->now_ms);
}

/* ---- the resolver in the ring ---------------------------------------- */

static void dns_poll_arm(struct delivery *dl)
{
	struct io_uring_sqe *sqe = worker_sqe(dl->w);

	io_uring_prep_poll_multishot(sqe, dns_resolver_fd(dl->resolver), POLLIN);
	io_uring_sqe_set_data(sqe, &dl->dns_poll_op);
	dl->dns_poll_armed = true;
}

static void dns_poll_complete(struct worker *w, struct ring_op *op, const struct io_uring_cqe *cqe)
{
	struct delivery *dl = container_of(op, struct delivery, dns_poll_op);

	if (!(cqe->flags & IORING_CQE_F_MORE))
		dl->dns_poll_armed = false;
	if (cqe->res > 0)
		dns_resolver_on_readable(dl->resolver, w->now_ms);
	if (!dl->dns_poll_armed && dl->resolver != NULL && cqe->res != -ECANCELED)
		dns_poll_arm(dl);
}

static void wake_at(struct worker *w, int64_t at)
{
	if (at < w->wake_at_ms)
		w->wake_at_ms = at;
}

/* delivery_policies - retry policies from the config (again after a reload). */
static void delivery_policies(struct delivery *dl, const struct config *cfg)
{
	dl->retry = (struct retry_policy){
		.base_ms = cfg->min_backoff_ms, .max_ms = cfg->max_backoff_ms,
		.jitter_percent = (unsigned)cfg->backoff_jitter_percent, .lifetime_ms = cfg->queue_lifetime_ms,
	};
	dl->domain_retry = dl->retry;
	dl->domain_retry.base_ms = cfg->domain_backoff_ms;
	if (dl->domain_retry.max_ms < dl->domain_retry.base_ms)
		dl->domain_retry.max_ms = dl->domain_retry.base_ms;
	dl->policy_cfg = cfg;
}

/* domain_idle - nothing refers to d: no item (nor a query's marker), no
 * session, no lookup, no backoff to remember. */
static bool domain_idle(const struct qdomain *d)
{
	return d->items.next == &d->items && d->active == 0 && !d->resolving && d->want == 0 &&
	       d->idle_head == NULL && d->ready_head == NULL && d->backoff.failures == 0;
}

/* domain_unhash - take d out of its hash chain. */
static void domain_unhash(struct delivery *dl, struct qdomain *d)
{
	struct qdomain **p = &dl->domains[d->hash % dl->domain_buckets];

	while (*p != d)
		p = &(*p)->hash_next;
	*p = d->hash_next;
}

/* domains_reap - forget the idle domains, so a relay that has written to
 * millions of domains does not keep them all. Only between queue walks:
 * their cursors are indexes into domain_list, which this compacts. */
static void domains_reap(struct delivery *dl)
{
	size_t keep = 0, before = dl->domain_count;

	for (size_t i = 0; i < dl->domain_count; i++) {
		struct qdomain *d = dl->domain_list[i];
		if (domain_idle(d)) {
			domain_unhash(dl, d);
			free(d);
			continue;
		}
		d->index = keep;
		dl->domain_list[keep++] = d;
	}
	dl->domain_count = keep;
	dl->stats.domains_reaped += before - keep;
	if (before > keep)
		log_debug("domains_reaped", "worker=%u reaped=%zu kept=%zu", dl->w->id, before - keep, keep);
}

/* delivery_hook - before each sleep: due retries back to their domains,
 * resolver timers (new queries are sent from here), and the next wake-up. */
static void delivery_hook(struct worker *w, void *arg)
{
	struct delivery *dl = arg;

	if (w->stopping)
		dl->stopping = true;
	if (dl->policy_cfg != w->cfg)
		delivery_policies(dl, w->cfg);
	if (w->now_ms >= dl->next_reap_ms) {
		if (dl->walks == 0 && !dl->stopping)
			domains_reap(dl);
		dl->next_reap_ms = w->now_ms + w->cfg->domain_reap_interval_ms;
	}
	if (dl->domain_count > 0 && !dl->stopping)
		wake_at(w, dl->next_reap_ms);     /* an idle worker reaps too */
	while (dl->heap_len > 0 && dl->heap[0]->due_ms <= w->now_ms && !dl->stopping)
		item_enqueue(dl, heap_pop(dl));
	int64_t t;
	while ((t = dns_resolver_next_timeout_ms(dl->resolver, w->now_ms)) == 0)
		dns_resolver_on_timer(dl->resolver, w->now_ms);
	if (t > 0)
		wake_at(w, w->now_ms + t);
	/* Last: resolver callbacks above may have parked items (a DNS
	 * failure defers them), and their retry must wake us. */
	if (dl->heap_len > 0 && !dl->stopping)
		wake_at(w, dl->heap[0]->due_ms);
}

/* ---- the operator's queue queries (queue_query.h) --------------------- */

#define QUERY_STEP_UNITS 1024          /* items or domains visited per step */
#define QUERY_STEP_BYTES (16 * 1024)   /* rows per step, about */

static const char *const qstate_names[QSTATE_COUNT] = { "new", "ready", "deferred", "active", "held" };

/* item_next_wall_ms - when it is due, in wall-clock time; 0 when not in the
 * retry heap. */
static int64_t item_next_wall_ms(const struct delivery *dl, const struct queue_query *q,
				 const struct qitem *it)
{
	return it->state == QSTATE_RETRY ? q->now_wall_ms + (it->due_ms - dl->w->now_ms) : 0;
}

static bool query_matches(const struct queue_query *q, const struct qitem *it)
{
	if (q->queue_id[0] != '\0' && strcmp(it->msg->queue_id, q->queue_id) != 0)
		return false;
	if (q->deferred_only && it->state != QSTATE_RETRY)
		return false;
	return !q->held_only || it->state == QSTATE_HELD;
}

/* query_list_row - queue list: a row for the item. */
static void query_list_row(const struct delivery *dl, struct queue_query *q, const struct qitem *it)
{
	const char **rcpts = xmalloc(it->count * sizeof(*rcpts));

	for (uint32_t i = 0; i < it->count; i++)
		rcpts[i] = it->msg->rcpts[it->idx[i]].addr;
	queue_format_item(&q->out, q->json, &(struct queue_item_view){
		.queue_id = it->msg->queue_id, .sender = it->msg->sender, .domain = it->d->name,
		.state = qstate_names[it->state], .arrival_ms = it->msg->arrival_ms,
		.size = it->msg->body_len, .rcpts = rcpts, .rcpt_count = it->count,
		.attempts = it->attempts, .next_ms = item_next_wall_ms(dl, q, it),
		.last_error = it->last_error,
	});
	free(rcpts);
}

/* query_show_item - queue show: the envelope (first time) and the item's
 * recipients into the message view. */
static void query_show_item(const struct delivery *dl, struct queue_query *q, const struct qitem *it)
{
	struct queue_message_view *m = &q->show;
	const struct qmsg *msg = it->msg;

	if (!m->found) {
		m->found = true;
		snprintf(m->queue_id, sizeof(m->queue_id), "%s", msg->queue_id);
		m->sender = strdup(msg->sender);
		m->envid = msg->envid ? strdup(msg->envid) : NULL;
		m->arrival_ms = msg->arrival_ms;
		m->size = msg->body_len;
		m->rcpt_count = msg->rcpt_count;
		m->rcpts = calloc(msg->rcpt_count ? msg->rcpt_count : 1, sizeof(*m->rcpts));
		if (m->sender == NULL || m->rcpts == NULL)
			log_fatal("out of memory");
		for (size_t i = 0; i < msg->rcpt_count; i++)
			if ((m->rcpts[i].addr = strdup(msg->rcpts[i].addr)) == NULL)
				log_fatal("out of memory");
	}
	for (uint32_t i = 0; i < it->count && it->idx[i] < m->rcpt_count; i++) {
		struct queue_rcpt_view *r = &m->rcpts[it->idx[i]];
		r->state = qstate_names[it->state];
		r->attempts = it->attempts;
		r->next_ms = item_next_wall_ms(dl, q, it);
		free(r->last_error);
		r->last_error = it->last_error ? strdup(it->last_error) : NULL;
	}
}

/* query_show_spool - queue show on the message's home worker: the spool's
 * states, which say what happened to the recipients no longer queued. */
static void query_show_spool(struct worker *w, struct queue_query *q)
{
	size_t n;
	const struct spool_rcpt_state *st;

	if (w->role != WORKER_ROLE_SMTP || q->spool_states != NULL)
		return;
	st = spool_shard_states(commit_shard(w), q->queue_id, &n);
	if (st == NULL || n == 0)
		return;
	q->spool_states = xmalloc(n * sizeof(*st));
	memcpy(q->spool_states, st, n * sizeof(*st));
	q->spool_state_count = n;
}

/* query_summary_add - queue summary: count the item in the row being made
 * for its domain (the last row). */
static void query_summary_add(struct queue_query *q, const struct qitem *it)
{
	struct queue_summary_row *row = &q->rows[q->row_count - 1];
	int64_t age = q->now_wall_ms - it->msg->arrival_ms;

	row->total++;
	row->age[queue_age_bucket(age > 0 ? age : 0)]++;
}

/* query_summary_begin - a row for d; query_summary_end keeps it if any
 * item counted. */
static void query_summary_begin(struct queue_query *q, const struct qdomain *d)
{
	if (q->row_count == q->row_cap) {
		q->row_cap = q->row_cap ? q->row_cap * 2 : 64;
		q->rows = realloc(q->rows, q->row_cap * sizeof(*q->rows));
		if (q->rows == NULL)
			log_fatal("out of memory");
	}
	memset(&q->rows[q->row_count], 0, sizeof(q->rows[0]));
	if ((q->rows[q->row_count].domain = strdup(d->name)) == NULL)
		log_fatal("out of memory");
	q->row_count++;
}

static void query_summary_end(struct queue_query *q)
{
	if (q->row_count > 0 && q->rows[q->row_count - 1].total == 0)
		free(q->rows[--q->row_count].domain);
}

/* query_domain_row - domains: d's line, when it has anything to say. */
static void query_domain_row(const struct delivery *dl, struct queue_query *q, const struct qdomain *d)
{
	bool blocked = retry_domain_blocked(&d->backoff, dl->w->now_ms);

	if (d->items.next == &d->items && d->active == 0 && d->backoff.failures == 0)
		return;
	q->matched++;
	queue_format_domain(&q->out, q->json, &(struct queue_domain_view){
		.domain = d->name, .ready = d->by_state[QSTATE_READY], .deferred = d->by_state[QSTATE_RETRY],
		.active = d->by_state[QSTATE_ACTIVE], .held = d->by_state[QSTATE_HELD],
		.connections = d->active, .window = d->window, .failures = d->backoff.failures,
		.backoff_until_ms = blocked ? q->now_wall_ms + (d->backoff.until_ms - dl->w->now_ms) : 0,
	});
}

/* item_unschedule - take a waiting item out of the ready list or the
 * retry heap; false for one that is not waiting (active, held). */
static bool item_unschedule(struct delivery *dl, struct qitem *it)
{
	if (it->state == QSTATE_READY)
		domain_remove_ready(it->d, it);
	else if (it->state == QSTATE_RETRY)
		heap_remove(dl, it);
	else
		return false;
	return true;
}

/* item_admin_finish - delete or bounce every recipient of a waiting or
 * held item now: logged, journaled at home, a DSN for a bounce. */
static void item_admin_finish(struct delivery *dl, struct qitem *it, enum qdoom doom)
{
	struct rcpt_result *res = xmalloc(it->count * sizeof(*res));

	for (uint32_t i = 0; i < it->count; i++)
		admin_result(&res[i], doom);
	item_complete(dl, it->d, it, res, NULL, NULL, NULL);
	free(res);
}

/* query_change - flush, delete, bounce, hold or release one item; true
 * when something changed. The item may be gone on return. */
static bool query_change(struct delivery *dl, struct queue_query *q, struct qitem *it)
{
	enum qdoom doom = q->action == QUEUE_DELETE ? QDOOM_DELETE :
			  q->action == QUEUE_BOUNCE ? QDOOM_BOUNCE : QDOOM_HOLD;

	switch (q->action) {
	case QUEUE_FLUSH:
		if (it->state != QSTATE_RETRY)
			return false;
		heap_remove(dl, it);
		retry_domain_succeeded(&it->d->backoff);
		item_enqueue(dl, it);
		return true;
	case QUEUE_DELETE:
	case QUEUE_BOUNCE:
		if (it->state == QSTATE_ACTIVE) {
			it->doom = (uint8_t)doom;     /* after this attempt */
			return true;
		}
		if (it->state != QSTATE_HELD && !item_unschedule(dl, it))
			return false;
		item_admin_finish(dl, it, doom);
		return true;
	case QUEUE_HOLD:
		if (it->state == QSTATE_ACTIVE) {
			it->doom = QDOOM_HOLD;
			return true;
		}
		if (!item_unschedule(dl, it))
			return false;
		item_hold(dl, it);
		return true;
	case QUEUE_RELEASE:
		if (it->state == QSTATE_ACTIVE && it->doom == QDOOM_HOLD) {
			it->doom = QDOOM_NONE;
			return true;
		}
		if (it->state != QSTATE_HELD)
			return false;
		item_set_state(it, QSTATE_NEW);
		item_journal_state(dl, it, SPOOL_STATUS_DEFERRED);
		item_enqueue(dl, it);
		return true;
	default:
		return false;
	}
}

/* query_item - one matching item. */
static void query_item(struct delivery *dl, struct queue_query *q, struct qitem *it)
{
	q->matched++;
	switch (q->action) {
	case QUEUE_LIST:
		query_list_row(dl, q, it);
		break;
	case QUEUE_SHOW:
		query_show_item(dl, q, it);
		break;
	case QUEUE_SUMMARY:
		query_summary_add(q, it);
		break;
	default:
		q->changed += query_change(dl, q, it);
		break;
	}
}

/* query_walk_domain - walk d's items from the marker, within the budget;
 * true when d is done (the marker is gone). */
static bool query_walk_domain(struct delivery *dl, struct queue_query *q, struct qdomain *d, size_t *units)
{
	struct qlink *marker = q->marker;

	if (marker == NULL) {
		marker = xmalloc(sizeof(*marker));
		marker->marker = true;
		link_insert_after(&d->items, marker);
		q->marker = marker;
		if (q->action == QUEUE_SUMMARY)
			query_summary_begin(q, d);
	}
	while (marker->next != &d->items) {
		if (*units >= QUERY_STEP_UNITS || buf_len(&q->out) >= QUERY_STEP_BYTES)
			return false;
		struct qlink *l = marker->next;
		/* The marker steps past l first: whatever happens to l (freed,
		 * requeued), the walk goes on from the marker. */
		link_remove(marker);
		link_insert_after(l, marker);
		if (l->marker)
			continue;           /* another query's cursor */
		(*units)++;
		struct qitem *it = container_of(l, struct qitem, link);
		if (query_matches(q, it))
			query_item(dl, q, it);
	}
	link_remove(marker);
	free(marker);
	q->marker = NULL;
	if (q->action == QUEUE_SUMMARY)
		query_summary_end(q);
	return true;
}

void delivery_query_step(struct worker *w, struct queue_query *q)
{
	struct delivery *dl = delivery_of(w);
	size_t units = 0;

	if (q->cancel || dl == NULL || dl->stopping) {
		if (q->marker != NULL) {
			link_remove(q->marker);
			free(q->marker);
			q->marker = NULL;
		}
		if (dl != NULL && q->at_started)
			dl->walks--;
		q->at_done = true;
		return;
	}
	if (!q->at_started) {
		q->at_started = true;
		dl->walks++;
		q->domain_index = 0;
		if (q->action == QUEUE_SHOW)
			query_show_spool(w, q);
		if (q->domain[0] != '\0') {
			struct qdomain *d = domain_find(dl, q->domain);
			q->domain_index = d != NULL ? d->index : dl->domain_count;
		}
	}
	while (q->domain_index < dl->domain_count && units < QUERY_STEP_UNITS &&
	       buf_len(&q->out) < QUERY_STEP_BYTES) {
		struct qdomain *d = dl->domain_list[q->domain_index];
		units++;
		if (q->action != QUEUE_DOMAINS && !query_walk_domain(dl, q, d, &units))
			return;             /* budget spent inside d */
		if (q->action == QUEUE_DOMAINS)
			query_domain_row(dl, q, d);
		q->domain_index = q->domain[0] != '\0' ? dl->domain_count : q->domain_index + 1;
	}
	q->at_done = q->domain_index >= dl->domain_count;
	if (q->at_done)
		dl->walks--;
}

/* ---- life cycle ------------------------------------------------------- */

static int delivery_resolver_new(struct delivery *dl, const struct config *cfg)
{
	struct dns_static_route *routes = calloc(cfg->domain_count + 1, sizeof(*routes));
	size_t nroutes = 0;
	char err[256];

	if (routes == NULL)
		log_fatal("out of memory");
	for (size_t i = 0; i < cfg->domain_count; i++)
		if (cfg->domains[i].route != NULL && cfg->domains[i].route[0] != '\0')
			routes[nroutes++] = (struct dns_static_route){ cfg->domains[i].name, cfg->domains[i].route };
	struct dns_options opt = {
		.nameservers = (const char *const *)cfg->dns_nameservers,
		.nameserver_count = cfg->dns_nameserver_count,
		.cache_max_entries = (size_t)cfg->dns_cache_size,
		.ttl_min_s = (uint32_t)(cfg->dns_min_ttl_ms / 1000),
		.ttl_max_s = (uint32_t)(cfg->dns_max_ttl_ms / 1000),
		.negative_ttl_s = (uint32_t)(cfg->dns_negative_ttl_ms / 1000),
		.max_in_flight = (size_t)cfg->dns_max_in_flight,
		.family = strcmp(cfg->dns_ip_mode, "ipv6") == 0 ? DNS_FAMILY_IPV6 :
			  strcmp(cfg->dns_ip_mode, "both") == 0 ? DNS_FAMILY_BOTH : DNS_FAMILY_IPV4,
		.port = (uint16_t)cfg->delivery_port,
		.timeout_s = (int)(cfg->dns_timeout_ms / 1000),
		.tries = (int)cfg->dns_tries,
		.static_routes = routes,
		.static_route_count = nroutes,
		.relayhost = cfg->relayhost[0] ? cfg->relayhost : NULL,
	};
	dl->resolver = dns_resolver_new(&opt, err, sizeof(err));
	free(routes);
	if (dl->resolver == NULL) {
		log_error("dns_init", "worker=%u error=\"%s\"", dl->w->id, err);
		return -EINVAL;
	}
	return 0;
}

static int delivery_worker_init(struct worker *w)
{
	struct delivery *dl = calloc(1, sizeof(*dl));
	const struct config *cfg = w->cfg;

	if (dl == NULL)
		log_fatal("out of memory");
	dl->w = w;
	dl->rng = (uint64_t)wall_ms() * 2654435761u + w->id + 1;
	delivery_policies(dl, cfg);
	dl->dns_poll_op.complete = dns_poll_complete;
	w->delivery = dl;
	int rc = delivery_resolver_new(dl, cfg);
	if (rc < 0)
		return rc;
	worker_add_hook(w, delivery_hook, dl);
	dns_poll_arm(dl);
	return 0;
}

static int requeue_live(void *ctx, const struct spool_recovered *r)
{
	struct worker *w = ctx;
	delivery_submit(w, r->msg, r->state);
	return 0;
}

static void delivery_worker_start(struct worker *w)
{
	struct spool_shard_stats st;

	if (w->role == WORKER_ROLE_LOCAL)
		return;    /* no shard: its items come from the SMTP workers */
	spool_shard_stats(commit_shard(w), &st);
	if (st.live_messages == 0)
		return;
	int rc = spool_shard_foreach_live(commit_shard(w), requeue_live, w);
	log_info("spool_requeue", "worker=%u messages=%zu result=%d", w->id, st.live_messages, rc);
}

static void delivery_worker_exit(struct worker *w)
{
	struct delivery *dl = delivery_of(w);

	if (dl == NULL)
		return;
	dl->stopping = true;
	/* Every item on this worker is in its domain's list, whatever its
	 * state; a query's cursor (a marker) belongs to the query. */
	for (size_t i = 0; i < dl->domain_count; i++) {
		struct qdomain *d = dl->domain_list[i];
		struct qlink *l = d->items.next;
		while (l != &d->items) {
			struct qlink *next = l->next;
			if (!l->marker)
				qitem_free((struct qitem *)((char *)l - offsetof(struct qitem, link)));
			l = next;
		}
		free(d);
	}
	free(dl->domains);
	free(dl->domain_list);
	dl->domains = dl->domain_list = NULL;
	dl->domain_buckets = dl->domain_count = dl->domain_list_cap = 0;
	dl->ready_total = dl->heap_len = 0;
	free(dl->heap);
	dl->heap = NULL;
	log_info("delivery_stats", "worker=%u delivered=%llu deferred=%llu bounced=%llu dsn=%llu connections=%llu connect_failures=%llu",
		 w->id, (unsigned long long)dl->stats.delivered, (unsigned long long)dl->stats.deferred,
		 (unsigned long long)dl->stats.bounced, (unsigned long long)dl->stats.dsn_sent,
		 (unsigned long long)dl->stats.connections, (unsigned long long)dl->stats.connect_failures);
	dl->resolver = dns_resolver_free(dl->resolver);
	dl->tls_client = tls_config_free(dl->tls_client);
	free(dl->tls_client_ca);
	dl->tls_client_ca = NULL;
}

static void delivery_worker_drain(struct worker *w)
{
	struct delivery *dl = delivery_of(w);

	if (dl == NULL)
		return;
	dns_resolver_free(dl->resolver);
	tls_config_free(dl->tls_client);
	free(dl->tls_client_ca);
	free(dl);
	w->delivery = NULL;
}

void delivery_get_stats(const struct worker *w, struct delivery_stats *out)
{
	const struct delivery *dl = w->delivery;

	*out = dl->stats;
	out->queue_now = dl->ready_total + dl->heap_len;
	out->domains_now = dl->domain_count;
	out->sessions_now = dl->sessions_active;
	if (dl->resolver != NULL)
		dns_resolver_stats(dl->resolver, &out->dns);
	else
		memset(&out->dns, 0, sizeof(out->dns));
}

size_t delivery_queue_shape(struct worker *w, struct delivery_domain_count *top, size_t n,
			    int64_t *oldest_ms)
{
	struct delivery *dl = delivery_of(w);
	size_t count = 0;

	*oldest_ms = 0;
	for (size_t i = 0; dl != NULL && i < dl->domain_count; i++) {
		const struct qdomain *d = dl->domain_list[i];
		uint64_t items = 0;
		/* Items join the list as they arrive: the first is the oldest
		 * here, bar a spool's requeue order at start. */
		for (const struct qlink *l = d->items.next; l != &d->items; l = l->next) {
			if (l->marker)
				continue;
			const struct qitem *it = container_of(l, struct qitem, link);
			if (*oldest_ms == 0 || it->msg->arrival_ms < *oldest_ms)
				*oldest_ms = it->msg->arrival_ms;
			break;
		}
		for (size_t k = 0; k < QSTATE_COUNT; k++)
			items += d->by_state[k];
		if (items == 0 || (count == n && items <= top[n - 1].items))
			continue;
		size_t j = count < n ? count++ : n - 1;     /* insertion, largest first */
		while (j > 0 && top[j - 1].items < items) {
			top[j] = top[j - 1];
			j--;
		}
		top[j] = (struct delivery_domain_count){ d->name, items };
	}
	return count;
}

const struct worker_module delivery_module = {
	.name = "delivery",
	.init = delivery_worker_init,
	.start = delivery_worker_start,
	.exit = delivery_worker_exit,
	.drain = delivery_worker_drain,
};
