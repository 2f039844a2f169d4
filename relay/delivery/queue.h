/*
 * queue - the outbound engine's data model, shared by the files of
 * relay/delivery (not outside it: delivery.h is the public face).
 *
 *   qmsg     one accepted message: envelope, recipients and body, in one
 *            allocation, immutable, shared by the workers delivering it
 *            (atomic reference count: one per item or outcome in flight).
 *   qbody    a message's body, reference counted: held by an item only
 *            while it needs it (body.c); the rest of the time it stays in
 *            the spool.
 *   qitem    some recipients of one message for one domain, at most the
 *            domain's recipients-per-transaction; the unit of scheduling.
 *   qdomain  a destination domain on its owner: ready items, the retry
 *            state of the whole domain, its connections.
 *   qdest    a destination address (MX IP and port) on this worker: its
 *            sessions (busy and pooled), the domains waiting for one in
 *            round robin, its window and backoff. Sessions belong to an
 *            address, not a domain: one carries transactions of every
 *            domain routed to its address (Postfix's connection cache).
 *   delivery one worker's engine: its domains, addresses, retry heap,
 *            resolver, policies and counters.
 *
 * Where an item is (enum qstate): on its way between workers (NEW), in its
 * domain's ready list (READY), in the worker's retry heap (RETRY), in a
 * transaction (ACTIVE), or held by the operator (HELD). From its arrival at
 * the owner to its end it is also in its domain's item list, whatever its
 * state: that list is what the operator's queries walk.
 *
 *   queue.c        messages, items, domains, the ready lists, the retry
 *                  heap, and the way in: delivery_submit -> owner's inbox
 *   outcome.c      the end of an attempt: log, outcomes home, DSNs, retry
 *   mta_session.c  an outbound SMTP connection (state machine over a conn)
 *   local.c        delivery into local Maildirs (the local worker)
 *   dest.c         destination addresses: table, round robin, backoff
 *   delivery.c     the worker module: loop hook, resolver, domain_kick
 *   queue_admin.c  the operator's queries (queue_query.h)
 *   mta_sts_delivery.c  MTA-STS: the per-domain check (TXT, fetch on a
 *                  helper thread) and what its policy allows
 *   scheduler.c, tls_policy.c   the pure decisions the above apply
 */
#ifndef RINGMAIL_QUEUE_H
#define RINGMAIL_QUEUE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "delivery.h"
#include "dns.h"
#include "retry.h"
#include "scheduler.h"
#include "smtp_dsn.h"
#include "xalloc.h"

#define INITIAL_WINDOW 2
#define REPLY_TEXT_MAX 200

struct qrcpt {
	const char *addr;
	const char *domain;        /* after the last '@', lower case */
	const char *orcpt;         /* NULL when not given */
	uint8_t notify;            /* SPOOL_NOTIFY_* == SMTP_NOTIFY_* bits */
};

/* Every queued message holds one: its size counts (docs/SPOOL.md, memory
 * per queued message). Small fields share one word; empty strings are not
 * copied (envid and orcpt are NULL then). */
struct qmsg {
	_Atomic int refs;
	unsigned home;
	int64_t arrival_ms;        /* wall clock */
	char queue_id[32];
	const char *sender;
	const char *envid;         /* NULL when not given */
	const char *pool;          /* the pool header's egress pool, NULL none */
	struct qrcpt *rcpts;
	size_t body_len;           /* the body itself is in the spool, or in an item's qbody */
	uint32_t rcpt_count;
	uint8_t ret;               /* enum spool_ret */
	/* bits, so that the flags of RFC 8689 cost no byte of the qmsg */
	bool smtputf8 : 1, eightbit : 1;
	bool requiretls : 1;       /* RFC 8689: verified TLS to a REQUIRETLS server, or bounce */
	bool tls_required_no : 1;  /* RFC 8689 "TLS-Required: No": MTA-STS not enforced */
};

/* A body read from the spool (or copied at reception): data points into
 * buf, after the record's envelope when it was read back. */
struct qbody {
	_Atomic int refs;
	size_t len;
	const char *data;
	char buf[];
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

/* A link in a domain's list of items; a cursor of a queue query is a
 * marker link in the same list (see delivery_query_step). */
struct qlink {
	struct qlink *prev, *next;
	bool marker;
};

struct qitem {
	/* An item is posted once, home -> owner (item_dispatch), and is in a
	 * ready list only after it arrived: the two share their bytes, so a
	 * queued item is 112 bytes with one recipient instead of 128
	 * (docs/SPOOL.md, memory per queued message). */
	union {
		struct worker_post post;   /* until item_enqueue on the owner */
		struct {
			struct qitem *next, *prev;   /* then: in the domain's ready list */
		};
	};
	struct qlink link;         /* in d->items, from arrival at the owner */
	struct qdomain *d;         /* the owner's domain; NULL before arrival */
	struct qmsg *msg;
	struct qbody *body;        /* while READY, ACTIVE or loading; NULL while it waits */
	char *last_error;          /* the last deferral's reply, or NULL: malloc'd before
				    * arrival at the owner, then interned there (reply_intern) */
	int64_t due_ms;            /* monotonic, while in the retry heap; before its
				    * arrival at the owner, wall ms of the next attempt
				    * it resumes from the spool (0: now) */
	uint32_t heap_index;       /* UINT32_MAX when not in the heap */
	unsigned attempts;
	uint8_t state;             /* enum qstate */
	uint8_t doom;              /* enum qdoom: on arrival, or when the attempt ends */
	bool delay_warned;         /* its NOTIFY=DELAY notice went (in memory only) */
	bool parked;               /* in the heap for a shaping suspension, not a retry */
	uint32_t count;
	uint32_t idx[];
};

struct mta_session;
struct qdomain;

struct qdest {
	struct qdest *hash_next;
	uint64_t hash;
	union dns_addr addr;       /* with the port */
	unsigned active;           /* sessions connecting or connected to it */
	unsigned window;           /* grows on READY, halves on a failure */
	unsigned failures;         /* connect or greeting failures in a row */
	int64_t until_ms;          /* backed off until (monotonic); 0: not */
	struct mta_session *idle_head;     /* pooled, for any domain routed here */
	struct qdomain *wait_head, *wait_tail;   /* domains waiting, round robin */
	size_t waiting;
	char text[64];             /* "ip:port" */
};

struct qdomain {
	struct delivery *dl;
	struct qdomain *hash_next;
	uint64_t hash;
	size_t index;              /* in dl->domain_list */
	struct qlink items;        /* every item of the domain on this worker */
	size_t by_state[QSTATE_COUNT];
	struct qitem *ready_head, *ready_tail;
	size_t ready_count;
	struct dns_route *route;   /* the last one resolved (a reference), or NULL */
	struct qdest *wait_on;     /* the address (or dl->anywhere) it waits for */
	struct qdomain *wait_prev, *wait_next;
	unsigned active;           /* sessions serving it: connecting, busy or idle */
	unsigned window;
	unsigned want;             /* connections wanted when the route comes */
	bool resolving;
	bool rerouting;            /* a reload changed its next hop: being moved */
	struct retry_domain_state backoff;
	char *hop;                 /* a sender route's next hop (owned), or NULL:
				    * the domain's own route; the same domain
				    * with another hop is another qdomain */
	char *pool;                /* the egress pool its mail's sender chose
				    * (shaping file "senders", owned), or NULL;
				    * another pool is another qdomain too */
	bool tls_optional;         /* its mail has "TLS-Required: No" (RFC 8689 5): no
				    * MTA-STS (nor DANE) for it; the same domain without
				    * the header is another qdomain */
	int64_t suspended_until_ms;        /* a shaping rule suspended the domain (monotonic) */
	struct mta_sts_domain *sts;        /* its MTA-STS check and policy (owned), or NULL */
	struct dane_domain *dane;          /* its MX hosts' TLSA answers (owned), or NULL */
	/* shaping limits (shaping_delivery.c): which entries of the shaping
	 * file apply, found again when the config or the route changes */
	unsigned long shaping_serial;      /* the config's serial they come from; 0 = not yet */
	const struct dns_route *shaping_route;   /* the route they were found with (identity only) */
	int shaping_site, shaping_entry;   /* its site, its own entry: indexes in cfg->shaping, -1 none */
	int64_t shaping_due_ms;            /* waits for a limit until then; 0 = not in dl->shaping_waiters */
	struct qdomain *shaping_next;      /* in dl->shaping_waiters */
	char name[];
};

/* What a 2xx means for NOTIFY=SUCCESS (RFC 3461 5.2): delivered here (a
 * mailbox); relayed to a next hop without DSN (we report "relayed"); or
 * handed to one that has DSN and took NOTIFY along (it reports, not us). */
enum rcpt_success {
	RCPT_SUCCESS_DELIVERED,
	RCPT_SUCCESS_RELAYED,
	RCPT_SUCCESS_PASSED_ON,
};

/* The result of one recipient in one attempt. */
struct rcpt_result {
	enum smtp_outcome outcome;
	int code;
	bool local;
	bool deleted;              /* by the operator: final, no DSN */
	uint8_t success;           /* enum rcpt_success: for NOTIFY=SUCCESS */
	uint8_t category;          /* enum bounce_category; item_complete sets it */
	char status[12];
	char text[REPLY_TEXT_MAX];
};

struct tls_config;
struct dns_resolver;
struct helper_worker;
struct mta_sts_domain;
struct dane_domain;

struct delivery {
	struct worker *w;
	struct dns_resolver *resolver;
	struct ring_op dns_poll_op;
	bool dns_poll_armed;
	struct qdomain **domains;  /* hash table */
	size_t domain_buckets, domain_count;
	struct qdomain **domain_list;      /* the same, in creation order */
	size_t domain_list_cap;
	struct qdest **dests;      /* hash table of destination addresses */
	size_t dest_buckets, dest_count;
	struct qdest anywhere;     /* domains waiting for the worker's cap */
	size_t domains_waiting;    /* in an address's round robin, or anywhere's */
	unsigned max_per_address;  /* this worker's shares of the relay's limits */
	unsigned max_total;
	struct qitem **heap;       /* retry heap, earliest due first */
	size_t heap_len, heap_cap;
	struct retry_policy retry;         /* per item */
	struct retry_policy domain_retry;  /* a whole domain whose hosts all failed */
	unsigned long policy_serial;       /* the config the policies come from */
	struct delivery_stats stats;
	struct tls_config *tls_client;     /* made on first STARTTLS; per worker */
	char *tls_client_ca;               /* the CA path it was made with */
	struct session_cache *tls_sessions;   /* outbound TLS sessions to resume (mta_session.c) */
	char **auth_failed_hops;           /* next hops whose AUTH failure was logged loudly */
	size_t auth_failed_count;
	size_t ready_total;        /* items in every domain's ready list (metrics) */
	unsigned walks;            /* queue queries with a cursor in domain_list */
	int64_t next_reap_ms;
	int64_t next_rewake_ms;    /* dests_rewake, while domains wait */
	unsigned sessions_active;  /* outbound sessions (metrics) */
	uint64_t rng;
	size_t body_bytes;         /* bodies held by this worker's items */
	size_t load_bytes;         /* bodies being read (estimated) */
	unsigned reads_in_flight;  /* as a home: body reads in the ring */
	struct qreply **replies;   /* interned last replies of items (queue.c) */
	size_t reply_buckets, reply_count;
	unsigned local_unjournaled;  /* local worker: items delivered, outcomes not yet durable */
	size_t local_turn;         /* local worker: the next domain to serve, round robin */
	bool stopping;
	struct shaping_matcher *shaping_matcher;   /* the config's response rules, for this thread */
	unsigned long shaping_serial;              /* the config it was compiled from */
	unsigned long routes_serial;       /* the config the resolver's routes came from */
	uint64_t sender_routes_hash;       /* of that config's delivery.sender_routes */
	struct helper_worker *sts_helpers;         /* MTA-STS jobs come back here (mta_sts_delivery.c) */
	unsigned sts_jobs_out;                     /* of them on helper threads now */
	unsigned sts_txt_running;                  /* _mta-sts TXT lookups in flight */
	struct qdomain *sts_queue_head, *sts_queue_tail;   /* domains waiting to start theirs */
	bool sts_pumping;                          /* in sts_pump: no nested pumping */
	struct qdomain *shaping_waiters;           /* domains waiting for a limit's token or slot */
	const struct shaping_hold *shaping_reply_hold;   /* the session whose replies item_complete
							   * judges now (scope = "source"), or NULL */
};

static inline struct delivery *delivery_of(struct worker *w)
{
	return w->delivery;
}

/* ---- queue.c ---- */

int64_t wall_ms(void);
uint64_t delivery_rng_next(struct delivery *dl);
void qmsg_ref(struct qmsg *q);
void qmsg_unref(struct qmsg *q);
void qitem_free(struct qitem *it);
void item_set_state(struct qitem *it, enum qstate state);
void link_insert_after(struct qlink *pos, struct qlink *l);
void link_remove(struct qlink *l);

struct qdomain *domain_find(struct delivery *dl, const char *name);
/* domain_find_hop - the qdomain of name whose mail goes to sender-route
 * hop (NULL: the domain's own route), or NULL. */
struct qdomain *domain_find_hop(struct delivery *dl, const char *name, const char *hop);
/* domain_index_named - the first index >= from in dl->domain_list of a
 * queue of domain name (its own route's or a sender route's), else
 * dl->domain_count. */
size_t domain_index_named(const struct delivery *dl, const char *name, size_t from);
/* domain_get_hop - the qdomain of name and hop (NULL: its own route),
 * made on first use. */
struct qdomain *domain_get_hop(struct delivery *dl, const char *name, const char *hop);
/* item_rehome - a waiting item (READY, RETRY, HELD, or NEW on its way
 * back to item_enqueue) whose sender now has another next hop (a reload
 * changed delivery.sender_routes) moves to its domain's queue under that
 * hop (NULL: the domain's own): a ready one is ready there (not kicked:
 * the caller kicks), a deferred one is due now, a held one stays held. */
void item_rehome(struct delivery *dl, struct qitem *it, const char *hop);
/* domain_find_key, domain_get_key - the same with the pool the sender
 * chose (shaping "senders"; NULL: none); the _hop forms mean no pool. */
struct qdomain *domain_find_key(struct delivery *dl, const char *name, const char *hop, const char *pool);
struct qdomain *domain_get_key(struct delivery *dl, const char *name, const char *hop, const char *pool);
/* domain_get_opt - domain_get_key for mail with "TLS-Required: No" too
 * (tls_optional: a qdomain apart, whose sessions ignore MTA-STS). */
struct qdomain *domain_get_opt(struct delivery *dl, const char *name, const char *hop, const char *pool,
			       bool tls_optional);
/* item_sender_pool - the pool name the shaping file's "senders" choose for
 * it's sender under w's running config (none on the local worker), or NULL. */
const char *item_sender_pool(const struct delivery *dl, const struct qitem *it);
/* item_sender_hop - the sender route of it's sender under w's running
 * config (none on the local worker), or NULL. */
const char *item_sender_hop(const struct delivery *dl, const struct qitem *it);
void domain_push_ready(struct qdomain *d, struct qitem *it);
void domain_remove_ready(struct qdomain *d, struct qitem *it);
struct qitem *domain_pop_ready(struct qdomain *d);
void domains_reap(struct delivery *dl);
void domains_free(struct delivery *dl);

void heap_remove(struct delivery *dl, struct qitem *it);
struct qitem *heap_pop(struct delivery *dl);
void item_retry_at(struct delivery *dl, struct qitem *it, int64_t due_ms);

/* item_split - it keeps its first count recipients; the rest become a
 * new item in its domain's ready list. */
void item_split(struct delivery *dl, struct qitem *it, uint32_t count);

/* item_enqueue - on the domain's owner: into its domain's ready list and
 * kick the domain (the local worker delivers at once). */
void item_enqueue(struct delivery *dl, struct qitem *it);

/* reply_intern - the worker's shared copy of text (one reference): a
 * destination that is down gives all its mail the same reply.
 * reply_release - drop one reference (NULL is fine); returns NULL. */
char *reply_intern(struct delivery *dl, const char *text);
char *reply_release(struct delivery *dl, char *text);

/* ---- body.c ---- */

struct qbody *qbody_copy(const void *data, size_t len);
void qbody_ref(struct qbody *b);
struct qbody *qbody_unref(struct qbody *b);    /* accepts NULL; returns NULL */
/* item_body - the item's body while it has one (READY, ACTIVE), else NULL. */
static inline const char *item_body(const struct qitem *it)
{
	return it->body != NULL ? it->body->data : NULL;
}
/* body_room - may this worker hold (or load) one more body? */
bool body_room(const struct delivery *dl);
/* item_drop_body - the item waits: its body goes back to the spool. */
void item_drop_body(struct qitem *it);
/* item_load_body - ask the message's home for the body; the item is
 * ACTIVE meanwhile and goes to item_enqueue (or the operator's delete,
 * bounce or hold that came meanwhile) when it has it. */
void item_load_body(struct delivery *dl, struct qitem *it);

/* ---- outcome.c ---- */

/* item_complete - the results of one attempt (res[i] for it->idx[i]):
 * logged, final ones journaled at home with a DSN for bounces, deferred
 * ones parked for a retry (or bounced when the queue lifetime is over). The
 * item is freed or parked on return. mx, ip, tls may be NULL. */
void item_complete(struct delivery *dl, struct qitem *it, const struct rcpt_result *res,
		   const char *mx, const char *ip, const char *tls);
/* item_fail_all - every recipient of the item gets the same result. */
void item_fail_all(struct delivery *dl, struct qitem *it, enum smtp_outcome outcome, int code,
		   const char *status, const char *text);
/* item_hold - the operator holds it: out of scheduling until released. */
void item_hold(struct delivery *dl, struct qitem *it);
/* item_journal_state - a non-final state of every recipient, at home. */
void item_journal_state(struct delivery *dl, struct qitem *it, enum spool_status status);
/* item_admin_finish - the operator deletes or bounces a waiting item now. */
void item_admin_finish(struct delivery *dl, struct qitem *it, enum qdoom doom);
/* rcpt_result_set - fill one result. */
void rcpt_result_set(struct rcpt_result *r, enum smtp_outcome outcome, int code, bool local,
		     const char *status, const char *text);

/* ---- dest.c ---- */

/* dest_get - the address's entry, made on first use; dest_find - the
 * entry if there is one (an address never used has no state: it does not
 * rest and has no pool). */
struct qdest *dest_get(struct delivery *dl, const union dns_addr *addr);
struct qdest *dest_find(const struct delivery *dl, const union dns_addr *addr);
/* dest_backed_off - is it resting after connection failures? */
bool dest_backed_off(const struct delivery *dl, const struct qdest *dest);
/* dest_wait - d waits at dest (or &dl->anywhere) for a connection; a
 * domain waits in one place at a time. dest_unwait - it stops waiting. */
void dest_wait(struct qdest *dest, struct qdomain *d);
void dest_unwait(struct qdomain *d);
/* dest_pop_waiter - the first domain waiting at dest, out of its list. */
struct qdomain *dest_pop_waiter(struct qdest *dest);
/* dest_wake - a connection to dest ended: kick the first domain waiting
 * there, else the first waiting for the worker's cap. */
void dest_wake(struct delivery *dl, struct qdest *dest);
/* dests_rewake - the net under dest_wake (once a second while domains
 * wait): every slot free at an address, or under the worker's cap, kicks
 * one domain waiting for it. dest_wake kicks one domain per slot freed;
 * when that domain does not take the slot (a pooled session served it
 * meanwhile, or it had nothing left), the next waiter would sleep on. */
void dests_rewake(struct delivery *dl);
/* dest_succeeded / dest_failed - a connection reached READY / failed at
 * connect or greeting: the window and backoff. */
void dest_succeeded(struct delivery *dl, struct qdest *dest);
void dest_failed(struct delivery *dl, struct qdest *dest);
/* dest_mx_name - the MX host name under which route reaches dest, or NULL. */
const char *dest_mx_name(const struct qdest *dest, const struct dns_route *route);
/* dests_reap, dests_free - forget unused addresses; all of them at exit. */
void dests_reap(struct delivery *dl);
void dests_free(struct delivery *dl);

/* ---- local.c ---- */

void local_deliver_item(struct delivery *dl, struct qitem *it);
/* local_run - on the local worker, before each sleep: deliver ready items
 * round robin over its domains while fewer than mailbox.delivery_window
 * delivered items wait for their outcomes to be durable at home; wake at
 * once if more could go. */
void local_run(struct delivery *dl);

/* ---- mta_session.c ---- */

struct dns_route;

enum mta_open {
	MTA_OPENED,                /* connecting */
	MTA_WAIT,                  /* the address is full, or the worker's cap reached */
	MTA_NO_ADDRESS,            /* no address could even be tried */
	MTA_LIMITED,               /* a shaping limit: d waits for it (shaping_waiting) */
};

/* mta_session_open - a new session for d over route, connecting to its
 * first address that does not rest; on MTA_WAIT *full is where d should
 * wait (an address, or &dl->anywhere). Nothing is left behind unless
 * MTA_OPENED. */
enum mta_open mta_session_open(struct delivery *dl, struct qdomain *d, const struct dns_route *route,
			       struct qdest **full);
/* mta_session_reuse - an idle session at dest that can carry d's mail
 * (same TLS policy; same MX name under "verify") takes d's next item;
 * false when dest has none. */
bool mta_session_reuse(struct qdest *dest, struct qdomain *d);
/* mta_session_count_idle - sessions in dest's pool. */
unsigned mta_session_count_idle(const struct qdest *dest);
/* mta_session_tls_free - the worker's client TLS config, at exit. */
void mta_session_tls_free(struct delivery *dl);

/* ---- shaping_delivery.c ---- */

struct suppress_batch;

/* shaping_domain_parked - d (or its site) is suspended by a response rule:
 * its ready items wait in the heap until the suspension ends (no attempt
 * counted); true when it is. */
bool shaping_domain_parked(struct delivery *dl, struct qdomain *d);
/* shaping_on_result - the response rules on one recipient's reply (the
 * message's recipient idx) from the receiver: suspend, bounce now (changes r), or add to *suppress. */
void shaping_on_result(struct delivery *dl, const struct qitem *it, uint32_t idx, struct rcpt_result *r,
		       struct suppress_batch **suppress);
/* shaping_delivery_free - the worker's matcher, at exit. */
void shaping_delivery_free(struct delivery *dl);

/* What a session holds of the shaping limits: a connection of its site's
 * and its domain entry's slots (state slot numbers, -1 none), and the
 * egress source it is bound to (index in the config's shaping rules, -1
 * none; with the config serial it was chosen under, and its state slot to
 * find it again by name in a later config). */
struct shaping_hold {
	int site_slot, entry_slot;
	int source;
	unsigned long serial;
	bool rate_taken;           /* a connection_rate token, refunded if it never connected */
	unsigned source_slot;      /* the source's state slot (by name): finds it again
				    * after a reload; meaningful while source >= 0 */
	unsigned pair_plus1[2];    /* per_source slots held, of the domain entry's and the
				    * site's (source, site) pair: state slot + 1, 0 none */
	bool pair_rate_taken;      /* their connection_rate tokens, as rate_taken */
};

/* shaping_waiting - d waits for a limit (its items stay ready; the
 * worker's hook kicks it when the wait is over). */
bool shaping_waiting(struct delivery *dl, struct qdomain *d);
/* shaping_connection_admit - may a new connection for d open now? Takes
 * a connection slot of its site and entry and a connection_rate token into
 * *hold, and picks the egress source; false (nothing held, d waits) when a
 * limit says not yet. */
bool shaping_connection_admit(struct delivery *dl, struct qdomain *d, struct shaping_hold *hold);
/* shaping_connection_connected - the held token was used. */
void shaping_connection_connected(struct shaping_hold *hold);
/* shaping_connection_release - the session ends: its slots go back. */
void shaping_connection_release(struct delivery *dl, struct shaping_hold *hold);
/* shaping_session_fits - may a session holding hold carry d's mail (same
 * site, entry and pool)? */
bool shaping_session_fits(struct delivery *dl, struct qdomain *d, const struct shaping_hold *hold);
/* shaping_session_wanted - a worker waits for a connection slot held by
 * hold: an idle session should quit rather than pool. */
bool shaping_session_wanted(struct delivery *dl, const struct shaping_hold *hold);
/* shaping_message_admit - may d's next transaction begin now? Takes a
 * message_rate token; false when d must wait (it then does). */
bool shaping_message_admit(struct delivery *dl, struct qdomain *d, const struct shaping_hold *hold);
/* shaping_max_messages / shaping_max_recipients - policy, or lower when a
 * site or entry says so. */
unsigned shaping_max_messages(struct delivery *dl, struct qdomain *d, const struct shaping_hold *hold,
			      unsigned policy);
unsigned shaping_max_recipients(struct delivery *dl, struct qdomain *d, unsigned policy);
/* shaping_source_of - the source a hold is bound to: its address and EHLO
 * name (the same name's in the running config after a reload), or NULL. */
const struct shaping_source *shaping_source_of(struct delivery *dl, const struct shaping_hold *hold);
/* shaping_source_spent - the session's source has sent its warm-up share
 * of today; shaping_source_sent - count one message of it. */
bool shaping_source_spent(struct delivery *dl, const struct shaping_hold *hold);
/* shaping_source_suspended - the session's source is suspended (a
 * response rule with scope = "source"): it opens nothing more. */
bool shaping_source_suspended(struct delivery *dl, const struct shaping_hold *hold);
/* shaping_on_connection_reply - a reply that ended a connection before
 * any transaction (greeting, EHLO): the response rules with scope =
 * "source" on it (the source is refused, not one recipient). */
void shaping_on_connection_reply(struct delivery *dl, struct qdomain *d, const struct shaping_hold *hold, int code,
				 const char *status, const char *text);
void shaping_source_sent(struct delivery *dl, const struct shaping_hold *hold);
/* shaping_delivery_hook - before each sleep: domains whose wait is over
 * are kicked; the next end of a wait, or 0. */
int64_t shaping_delivery_hook(struct delivery *dl);

/* ---- delivery.c ---- */

/* domain_kick - give ready items to idle connections, and open new ones
 * within the domain's window when items are left over. */
void domain_kick(struct delivery *dl, struct qdomain *d);
/* delivery_routes_sync - after a reload (w->cfg changed): the resolver
 * takes the new routes and relayhost, domains whose next hop changed move
 * there now, and items whose sender route changed move to their new
 * queue. Cheap when nothing changed; called before any new route lookup. */
void delivery_routes_sync(struct delivery *dl);
/* same_text - two strings (either NULL) alike. */
static inline bool same_text(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}
/* domain_park_resting - every address of route rests after timeouts (the
 * first few in a row): d's ready items wait for the first to come back,
 * no attempt counted; true when parked. */
bool domain_park_resting(struct delivery *dl, struct qdomain *d, const struct dns_route *route);
/* domain_defer_ready - every ready item of d is deferred. */
void domain_defer_ready(struct delivery *dl, struct qdomain *d, const char *status, const char *text);

#endif
