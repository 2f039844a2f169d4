/*
 * queue - messages, items and domains on a worker, the ready lists, the
 * retry heap, and the way in (delivery_submit); see queue.h.
 */
#include "queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "shaping.h"
#include "log.h"
#include "dane_delivery.h"
#include "mta_sts_delivery.h"
#include "suppress.h"

uint64_t delivery_rng_next(struct delivery *dl)
{
	/* xorshift64*: jitter and MIME boundaries, not secrets. */
	dl->rng ^= dl->rng >> 12;
	dl->rng ^= dl->rng << 25;
	dl->rng ^= dl->rng >> 27;
	return dl->rng * 0x2545F4914F6CDD1DULL;
}

int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* domain_hash - FNV-1a of the name in lower case. */
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

static void item_arrived(struct worker *w, struct worker_post *p);
static void item_discard(struct worker_post *p);

/* ---- messages ---------------------------------------------------------- */

/* qmsg_new - copy a spool message's envelope into one allocation (not
 * its body: see body.c). */
static struct qmsg *qmsg_new(unsigned home, const struct spool_message *m)
{
	size_t strings = strlen(m->sender) + 1 + (m->envid && m->envid[0] ? strlen(m->envid) + 1 : 0) +
			 (m->pool && m->pool[0] ? strlen(m->pool) + 1 : 0);
	for (size_t i = 0; i < m->rcpt_count; i++)
		strings += strlen(m->rcpts[i].address) + 1 +
			   (m->rcpts[i].orcpt && m->rcpts[i].orcpt[0] ? strlen(m->rcpts[i].orcpt) + 1 : 0);
	size_t size = sizeof(struct qmsg) + m->rcpt_count * sizeof(struct qrcpt) + strings;
	struct qmsg *q = xmalloc(size);
	char *p = (char *)(q + 1) + m->rcpt_count * sizeof(struct qrcpt);

	memset(q, 0, sizeof(*q));
	atomic_init(&q->refs, 0);
	q->home = home;
	q->arrival_ms = m->arrival_usec / 1000;
	snprintf(q->queue_id, sizeof(q->queue_id), "%s", m->queue_id);
	q->rcpts = (struct qrcpt *)(q + 1);
	q->rcpt_count = (uint32_t)m->rcpt_count;     /* the spool caps it far below */
#define COPY_STRING(dst, src) do { size_t n_ = strlen(src) + 1; memcpy(p, src, n_); dst = p; p += n_; } while (0)
	COPY_STRING(q->sender, m->sender);
	q->envid = NULL;
	if (m->envid != NULL && m->envid[0] != '\0')
		COPY_STRING(q->envid, m->envid);
	q->pool = NULL;
	if (m->pool != NULL && m->pool[0] != '\0')
		COPY_STRING(q->pool, m->pool);
	for (size_t i = 0; i < m->rcpt_count; i++) {
		struct qrcpt *r = &q->rcpts[i];
		COPY_STRING(r->addr, m->rcpts[i].address);
		r->orcpt = NULL;
		if (m->rcpts[i].orcpt != NULL && m->rcpts[i].orcpt[0] != '\0')
			COPY_STRING(r->orcpt, m->rcpts[i].orcpt);
		r->notify = m->rcpts[i].notify;
		const char *at = strrchr(r->addr, '@');
		r->domain = at ? at + 1 : "";
	}
#undef COPY_STRING
	q->body_len = m->body_len;
	q->ret = m->ret;
	q->smtputf8 = m->smtputf8;
	q->requiretls = m->requiretls;
	q->tls_required_no = m->tls_required_no;
	q->eightbit = m->body_type == SPOOL_BODY_8BITMIME || m->body_type == SPOOL_BODY_BINARYMIME;
	return q;
}

void qmsg_ref(struct qmsg *q)
{
	atomic_fetch_add_explicit(&q->refs, 1, memory_order_relaxed);
}

void qmsg_unref(struct qmsg *q)
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
	it->heap_index = UINT32_MAX;
	qmsg_ref(msg);
	return it;
}

/* item_set_state - move it to state, keeping its domain's counts. */
void item_set_state(struct qitem *it, enum qstate state)
{
	if (it->d != NULL) {
		it->d->by_state[it->state]--;
		it->d->by_state[state]++;
	}
	it->state = (uint8_t)state;
}

void link_insert_after(struct qlink *pos, struct qlink *l)
{
	l->prev = pos;
	l->next = pos->next;
	pos->next->prev = l;
	pos->next = l;
}

void link_remove(struct qlink *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->prev = l->next = l;
}

/* ---- interned replies -------------------------------------------------- */

struct qreply {
	struct qreply *next;
	uint64_t hash;
	uint32_t refs;
	char text[];
};

static void reply_grow(struct delivery *dl)
{
	size_t nb = dl->reply_buckets ? dl->reply_buckets * 2 : 64;
	struct qreply **t = xcalloc(nb, sizeof(*t));

	for (size_t i = 0; i < dl->reply_buckets; i++) {
		struct qreply *r = dl->replies[i];
		while (r != NULL) {
			struct qreply *next = r->next;
			r->next = t[r->hash & (nb - 1)];
			t[r->hash & (nb - 1)] = r;
			r = next;
		}
	}
	free(dl->replies);
	dl->replies = t;
	dl->reply_buckets = nb;
}

char *reply_intern(struct delivery *dl, const char *text)
{
	uint64_t h = domain_hash(text) * 31 + strlen(text);

	for (struct qreply *r = dl->reply_buckets ? dl->replies[h & (dl->reply_buckets - 1)] : NULL;
	     r != NULL; r = r->next) {
		if (r->hash == h && strcmp(r->text, text) == 0) {
			r->refs++;
			return r->text;
		}
	}
	if (dl->reply_count >= dl->reply_buckets)
		reply_grow(dl);
	size_t len = strlen(text);
	struct qreply *r = xmalloc(sizeof(*r) + len + 1);
	memcpy(r->text, text, len + 1);
	r->hash = h;
	r->refs = 1;
	r->next = dl->replies[h & (dl->reply_buckets - 1)];
	dl->replies[h & (dl->reply_buckets - 1)] = r;
	dl->reply_count++;
	return r->text;
}

char *reply_release(struct delivery *dl, char *text)
{
	if (text == NULL)
		return NULL;
	struct qreply *r = container_of(text, struct qreply, text);
	if (--r->refs > 0)
		return NULL;
	struct qreply **p = &dl->replies[r->hash & (dl->reply_buckets - 1)];
	while (*p != r)
		p = &(*p)->next;
	*p = r->next;
	dl->reply_count--;
	free(r);
	return NULL;
}

/* qitem_free - the item is done (or the worker stops): out of its domain. */
void qitem_free(struct qitem *it)
{
	if (it->d != NULL) {
		it->d->by_state[it->state]--;
		link_remove(&it->link);
		it->last_error = reply_release(it->d->dl, it->last_error);
	}
	item_drop_body(it);
	qmsg_unref(it->msg);
	free(it->last_error);
	free(it);
}

/* ---- domains ----------------------------------------------------------- */

/* domain_find_hop - d of name and sender-route hop on this worker, or
 * NULL. Every hop of a domain hashes alike (the domain's). */
struct qdomain *domain_find_hop(struct delivery *dl, const char *name, const char *hop)
{
	return domain_find_key(dl, name, hop, NULL);
}

/* domain_find_opt - d of name, hop, pool and kind ("TLS-Required: No"). */
static struct qdomain *domain_find_opt(struct delivery *dl, const char *name, const char *hop,
				       const char *pool, bool tls_optional)
{
	uint64_t h = domain_hash(name);

	if (dl->domain_buckets > 0) {
		for (struct qdomain *d = dl->domains[h % dl->domain_buckets]; d; d = d->hash_next)
			if (d->hash == h && strcasecmp(d->name, name) == 0 && d->tls_optional == tls_optional &&
			    (d->hop == hop || (d->hop != NULL && hop != NULL && strcmp(d->hop, hop) == 0)) &&
			    (d->pool == pool || (d->pool != NULL && pool != NULL && strcmp(d->pool, pool) == 0)))
				return d;
	}
	return NULL;
}

struct qdomain *domain_find_key(struct delivery *dl, const char *name, const char *hop, const char *pool)
{
	return domain_find_opt(dl, name, hop, pool, false);
}

/* domain_index_named - the smallest index >= from in domain_list of a
 * qdomain named name (any hop), or dl->domain_count. The queues of one
 * name share a hash chain, so this walks one chain. */
size_t domain_index_named(const struct delivery *dl, const char *name, size_t from)
{
	uint64_t h = domain_hash(name);
	size_t best = dl->domain_count;

	if (dl->domain_buckets > 0)
		for (const struct qdomain *d = dl->domains[h % dl->domain_buckets]; d; d = d->hash_next)
			if (d->hash == h && d->index >= from && d->index < best && strcasecmp(d->name, name) == 0)
				best = d->index;
	return best;
}

/* domain_find - d of name on this worker (its own route), or NULL. */
struct qdomain *domain_find(struct delivery *dl, const char *name)
{
	return domain_find_hop(dl, name, NULL);
}

/* domain_get_hop - d of name and hop, made on first use. */
struct qdomain *domain_get_hop(struct delivery *dl, const char *name, const char *hop)
{
	return domain_get_key(dl, name, hop, NULL);
}

/* domain_get_key - d of name, hop and pool, made on first use. */
struct qdomain *domain_get_key(struct delivery *dl, const char *name, const char *hop, const char *pool)
{
	return domain_get_opt(dl, name, hop, pool, false);
}

struct qdomain *domain_get_opt(struct delivery *dl, const char *name, const char *hop, const char *pool,
			       bool tls_optional)
{
	uint64_t h = domain_hash(name);
	struct qdomain *d = domain_find_opt(dl, name, hop, pool, tls_optional);

	if (d != NULL)
		return d;
	if (dl->domain_count >= dl->domain_buckets * 2) {
		size_t nb = dl->domain_buckets ? dl->domain_buckets * 4 : 256;
		struct qdomain **nt = xcalloc(nb, sizeof(*nt));
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
	d->hop = hop != NULL ? xstrdup(hop) : NULL;
	d->pool = pool != NULL ? xstrdup(pool) : NULL;
	d->tls_optional = tls_optional;
	d->window = INITIAL_WINDOW;
	d->items.prev = d->items.next = &d->items;
	if (dl->domain_count == dl->domain_list_cap) {
		dl->domain_list_cap = dl->domain_list_cap ? dl->domain_list_cap * 2 : 256;
		dl->domain_list = xreallocarray(dl->domain_list, dl->domain_list_cap, sizeof(*dl->domain_list));
	}
	d->index = dl->domain_count;
	dl->domain_list[dl->domain_count] = d;
	d->hash_next = dl->domains[h % dl->domain_buckets];
	dl->domains[h % dl->domain_buckets] = d;
	dl->domain_count++;
	return d;
}

void domain_push_ready(struct qdomain *d, struct qitem *it)
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
void domain_remove_ready(struct qdomain *d, struct qitem *it)
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

struct qitem *domain_pop_ready(struct qdomain *d)
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
	dl->heap[a]->heap_index = (uint32_t)a;
	dl->heap[b]->heap_index = (uint32_t)b;
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
		dl->heap = xreallocarray(dl->heap, dl->heap_cap, sizeof(*dl->heap));
	}
	size_t i = dl->heap_len++;
	dl->heap[i] = it;
	it->heap_index = (uint32_t)i;
	heap_sift_up(dl, i);
	item_set_state(it, QSTATE_RETRY);
}

/* heap_remove - take it out of the retry heap, wherever it is. */
void heap_remove(struct delivery *dl, struct qitem *it)
{
	size_t i = it->heap_index;

	dl->heap_len--;
	if (i != dl->heap_len) {
		dl->heap[i] = dl->heap[dl->heap_len];
		dl->heap[i]->heap_index = (uint32_t)i;
		/* The last item, moved into the hole, goes up or down. */
		heap_sift_up(dl, i);
		heap_sift_down(dl, i);
	}
	it->heap_index = UINT32_MAX;
	item_set_state(it, QSTATE_NEW);
}

struct qitem *heap_pop(struct delivery *dl)
{
	struct qitem *top = dl->heap[0];

	heap_remove(dl, top);
	return top;
}

/* item_retry_at - park an item until due_ms; its body goes back to the
 * spool meanwhile. */
void item_retry_at(struct delivery *dl, struct qitem *it, int64_t due_ms)
{
	item_drop_body(it);
	it->due_ms = due_ms;
	heap_push(dl, it);
}

/* ---- posting between workers ----------------------------------------- */

static struct worker *domain_owner(struct worker *w, const char *domain)
{
	return &w->all[domain_hash(domain) % w->count];
}

/* item_drop_suppressed - with suppression.check at delivery: the
 * recipients of it on the suppression list bounce now (550 5.7.1), in an
 * item of their own; true when none is left in it (it is gone then). */
static bool item_drop_suppressed(struct delivery *dl, struct qitem *it)
{
	uint32_t hits = 0;

	if ((dl->w->cfg->suppression_check & CONFIG_SUPPRESS_DELIVERY) == 0)
		return false;
	for (uint32_t i = 0; i < it->count; i++)
		hits += suppress_find(dl->w, it->msg->rcpts[it->idx[i]].addr) != NULL;
	if (hits == 0)
		return false;
	struct qitem *gone = hits == it->count ? it : qitem_new(it->msg, hits);
	if (gone != it) {
		uint32_t kept = 0;
		gone->attempts = it->attempts;
		for (uint32_t i = 0; i < it->count; i++) {
			if (suppress_find(dl->w, it->msg->rcpts[it->idx[i]].addr) != NULL)
				gone->idx[gone->count++] = it->idx[i];
			else
				it->idx[kept++] = it->idx[i];
		}
		it->count = kept;
	}
	struct rcpt_result *res = xcalloc(gone->count, sizeof(*res));
	for (uint32_t i = 0; i < gone->count; i++) {
		const struct suppression_entry *hit = suppress_find(dl->w, it->msg->rcpts[gone->idx[i]].addr);
		char text[REPLY_TEXT_MAX];
		snprintf(text, sizeof(text), "Recipient address suppressed: %s",
			 hit != NULL && hit->reason[0] ? hit->reason : "on the suppression list");
		rcpt_result_set(&res[i], SMTP_OUTCOME_BOUNCED, 550, true, "5.7.1", text);
	}
	dl->stats.suppressed_bounced += gone->count;
	item_complete(dl, gone, res, NULL, NULL, NULL);
	free(res);
	return gone == it;
}

void item_split(struct delivery *dl, struct qitem *it, uint32_t count)
{
	struct qdomain *d = it->d;

	if (count == 0 || count >= it->count || d == NULL)
		return;
	struct qitem *rest = qitem_new(it->msg, it->count - count);
	for (uint32_t i = count; i < it->count; i++)
		rest->idx[rest->count++] = it->idx[i];
	it->count = count;
	rest->attempts = it->attempts;
	rest->delay_warned = it->delay_warned;
	rest->last_error = it->last_error != NULL ? reply_intern(dl, it->last_error) : NULL;
	if (it->body != NULL) {
		qbody_ref(it->body);
		rest->body = it->body;
		dl->body_bytes += it->body->len;
	}
	rest->d = d;
	d->by_state[rest->state]++;
	link_insert_after(&it->link, &rest->link);
	dl->stats.queued_items++;
	domain_push_ready(d, rest);
}

/* item_enqueue - on the domain's owner: into its domain's ready list (on
 * the local worker local_run takes it from there). On arrival the item joins its domain's
 * list; one that comes held from the spool (doom HOLD) waits there. */
void item_enqueue(struct delivery *dl, struct qitem *it)
{
	if (it->d == NULL) {
		/* A sender route (delivery.sender_routes) comes before the
		 * recipient domain's: such mail queues apart, under its hop. */
		struct qdomain *d = domain_get_opt(dl, it->msg->rcpts[it->idx[0]].domain,
						   item_sender_hop(dl, it), item_sender_pool(dl, it),
						   it->msg->tls_required_no);
		it->d = d;
		d->by_state[it->state]++;
		link_insert_after(d->items.prev, &it->link);
		dl->stats.queued_items++;
		if (it->last_error != NULL) {
			char *own = it->last_error;
			it->last_error = reply_intern(dl, own);
			free(own);
		}
		if (it->body != NULL)
			dl->body_bytes += it->body->len;
		if (it->doom == QDOOM_HOLD) {
			it->doom = QDOOM_NONE;
			item_set_state(it, QSTATE_HELD);
			return;
		}
		/* From the spool, deferred before a restart: its backoff goes on. */
		int64_t wait = it->due_ms - wall_ms();    /* see due_ms */
		it->due_ms = 0;
		if (wait > 0 || it->body == NULL) {
			/* Without its body (from the spool) it waits in the
			 * heap like a due retry: loads stay within the cache. */
			item_retry_at(dl, it, dl->w->now_ms + (wait > 0 ? wait : 0));
			return;
		}
	} else {
		/* Back from the heap, a release or a body read: a reload may
		 * have given its sender another next hop meanwhile. */
		const char *hop = item_sender_hop(dl, it);
		if (!same_text(hop, it->d->hop) || !same_text(item_sender_pool(dl, it), it->d->pool))
			item_rehome(dl, it, hop);
	}
	it->parked = false;
	if (it->doom == QDOOM_NONE && item_drop_suppressed(dl, it))
		return;
	if (it->body == NULL) {
		if (retry_domain_blocked(&it->d->backoff, dl->w->now_ms)) {
			/* No use reading it back for a domain that rests. */
			item_retry_at(dl, it, it->d->backoff.until_ms);
		} else if (!body_room(dl)) {
			item_retry_at(dl, it, dl->w->now_ms);
		} else {
			item_load_body(dl, it);
		}
		return;
	}
	domain_push_ready(it->d, it);
	if (dl->w->role == WORKER_ROLE_LOCAL)
		return;      /* local_run delivers it, within the window */
	domain_kick(dl, it->d);
}

const char *item_sender_hop(const struct delivery *dl, const struct qitem *it)
{
	const struct config *cfg = dl->w->cfg;

	if (dl->w->role == WORKER_ROLE_LOCAL || cfg->sender_route_count == 0)
		return NULL;
	return config_sender_next_hop(cfg, it->msg->sender);
}

const char *item_sender_pool(const struct delivery *dl, const struct qitem *it)
{
	const struct config *cfg = dl->w->cfg;

	if (dl->w->role == WORKER_ROLE_LOCAL)
		return NULL;
	/* The pool header's choice first (a pool a reload removed: as if
	 * there were none), then the sender's. */
	int k = it->msg->pool != NULL ? shaping_pool_find(cfg->shaping, it->msg->pool) : -1;
	if (k >= 0)
		return shaping_pool_at(cfg->shaping, (size_t)k)->name;
	if (shaping_sender_count(cfg->shaping) == 0)
		return NULL;
	k = shaping_sender_pool(cfg->shaping, it->msg->sender);
	return k >= 0 ? shaping_pool_at(cfg->shaping, (size_t)k)->name : NULL;
}

void item_rehome(struct delivery *dl, struct qitem *it, const char *hop)
{
	struct qdomain *from = it->d, *to = domain_get_opt(dl, from->name, hop, item_sender_pool(dl, it),
							    it->msg->tls_required_no);
	enum qstate state = (enum qstate)it->state;

	if (state == QSTATE_READY)
		domain_remove_ready(from, it);        /* NEW now */
	else if (state == QSTATE_RETRY)
		heap_remove(dl, it);
	from->by_state[it->state]--;
	link_remove(&it->link);
	it->d = to;
	to->by_state[it->state]++;
	link_insert_after(to->items.prev, &it->link);
	log_debug("item_rehome", "id=%s domain=%s from=%s to=%s", it->msg->queue_id, to->name,
		  from->hop != NULL ? from->hop : "-", hop != NULL ? hop : "-");
	if (state == QSTATE_READY)
		domain_push_ready(to, it);
	else if (state == QSTATE_RETRY)
		item_retry_at(dl, it, it->parked ? it->due_ms : dl->w->now_ms);
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

/* item_resume - an item made from the spool takes its recipients' retry
 * state: the most attempts and the latest next attempt of them, so none
 * is tried earlier than its backoff said, and the last reply. */
static void item_resume(struct qitem *it, const struct spool_rcpt_state *state, const char *reply)
{
	for (uint32_t k = 0; k < it->count; k++) {
		const struct spool_rcpt_state *st = &state[it->idx[k]];
		if (st->attempts > it->attempts)
			it->attempts = st->attempts;
		if (st->status == SPOOL_STATUS_DEFERRED && st->next_attempt * 1000 > it->due_ms)
			it->due_ms = st->next_attempt * 1000;    /* wall, until arrival */
	}
	if (reply != NULL && it->attempts > 0)
		it->last_error = xstrdup(reply);
}

/* submit - one item per domain (split at the domain's recipients per
 * transaction), recipients held in the spool apart from the others;
 * reply is the last deferral's from the spool (or NULL). */
static void submit(struct worker *w, const struct spool_message *m,
		   const struct spool_rcpt_state *state, const char *reply, bool with_body)
{
	struct qmsg *q = qmsg_new(w->id, m);
	struct qbody *body = with_body ? qbody_copy(m->body, m->body_len) : NULL;
	bool *taken = xcalloc(m->rcpt_count, sizeof(bool));

	qmsg_ref(q);    /* held while items are made */
	for (size_t i = 0; i < q->rcpt_count; i++) {
		if (taken[i] || (state != NULL && SPOOL_STATUS_IS_FINAL(state[i].status)))
			continue;
		const char *domain = q->rcpts[i].domain;
		bool held = state != NULL && state[i].status == SPOOL_STATUS_HELD;
		size_t limit = (size_t)config_domain_policy(w->cfg, domain)->max_recipients_per_transaction;
		struct qitem *it = qitem_new(q, (uint32_t)(limit < q->rcpt_count ? limit : q->rcpt_count));
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
		if (state != NULL)
			item_resume(it, state, reply);
		if (body != NULL) {
			qbody_ref(body);
			it->body = body;
		}
		item_dispatch(w, it);
	}
	free(taken);
	qbody_unref(body);
	qmsg_unref(q);
}

/* delivery_submit - a message durable in w's shard, all recipients new
 * (state NULL) or as the spool has them. */
void delivery_submit(struct worker *w, const struct spool_message *m,
		     const struct spool_rcpt_state *state)
{
	submit(w, m, state, NULL, true);
}

void delivery_submit_recovered(struct worker *w, const struct spool_recovered *r)
{
	submit(w, r->msg, r->state, r->reply, false);
}

/* domain_idle - nothing refers to d: no item (nor a query's marker), no
 * session, no lookup, no backoff to remember. */
static bool domain_idle(const struct qdomain *d)
{
	return d->items.next == &d->items && d->active == 0 && !d->resolving && d->want == 0 &&
	       d->wait_on == NULL && d->ready_head == NULL && d->backoff.failures == 0 &&
	       d->suspended_until_ms <= d->dl->w->now_ms && !mta_sts_delivery_busy(d) && !dane_delivery_busy(d) &&
	       d->shaping_due_ms == 0;
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
void domains_reap(struct delivery *dl)
{
	size_t keep = 0, before = dl->domain_count;

	for (size_t i = 0; i < dl->domain_count; i++) {
		struct qdomain *d = dl->domain_list[i];
		if (domain_idle(d)) {
			domain_unhash(dl, d);
			dns_route_unref(d->route);
			mta_sts_domain_free(d->sts);
			dane_domain_free(d->dane);
			free(d->hop);
			free(d->pool);
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

/* domains_free - at exit: every domain and every item on this worker. */
void domains_free(struct delivery *dl)
{
	/* Every item on this worker is in its domain's list, whatever its
	 * state; a query's cursor (a marker) belongs to the query. */
	for (size_t i = 0; i < dl->domain_count; i++) {
		struct qdomain *d = dl->domain_list[i];
		struct qlink *l = d->items.next;
		while (l != &d->items) {
			struct qlink *next = l->next;
			if (!l->marker)
				qitem_free(container_of(l, struct qitem, link));
			l = next;
		}
		dns_route_unref(d->route);
		mta_sts_domain_free(d->sts);
		dane_domain_free(d->dane);
		free(d->hop);
		free(d->pool);
		free(d);
	}
	for (size_t i = 0; i < dl->reply_buckets; i++) {
		struct qreply *r = dl->replies[i];
		while (r != NULL) {
			struct qreply *next = r->next;
			free(r);
			r = next;
		}
	}
	free(dl->replies);
	dl->replies = NULL;
	dl->reply_buckets = dl->reply_count = 0;
	free(dl->domains);
	free(dl->domain_list);
	dl->domains = dl->domain_list = NULL;
	dl->domain_buckets = dl->domain_count = dl->domain_list_cap = 0;
	dl->ready_total = dl->heap_len = 0;
	free(dl->heap);
	dl->heap = NULL;
}
