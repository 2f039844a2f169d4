/*
 * mta_session - one outbound SMTP session: the pure protocol client
 * (smtp_client) over a conn, opened for a domain and walking that domain's
 * route until an address works; then it belongs to the address (qdest,
 * dest.c), carrying one transaction after another for the domains routed
 * there (the next one waiting at the address first: sched_next_work) and
 * waiting in the address's pool between them. A session may carry another
 * domain's mail when its TLS policy (and, under "verify", MX name) is the
 * same (mta_compatible).
 *
 * The session is an enum mta_state, entered only through mta_enter_state,
 * which logs the step and arms the state's deadline from mta_deadline[].
 * The protocol states (GREETING .. QUIT) follow the client's own after each
 * input; the session adds the connect, the STARTTLS handshake, the pool
 * (IDLE) and the end (CLOSED):
 *
 *   CONNECTING -> GREETING -> EHLO -> [STARTTLS -> EHLO] -> READY
 *   READY -> ENVELOPE -> BODY -> READY       (a transaction; READY is left
 *   READY -> IDLE -> READY                    in the same pass: the next
 *   READY -> QUIT -> CLOSED                   item, the pool, or QUIT)
 *   any -> CLOSED                             (421, failure, timeout, reset)
 *
 * A session that fails before its first READY moves on to the next address
 * or MX host (sched_next_address; under "may" a TLS failure first retries
 * the same address in clear; addresses that rest are passed over, a full
 * one makes the domain wait there); when none is left the domain backs off
 * and its ready items are deferred (or, when every address rests after a
 * timeout or two, they wait for the first to come back). A connect or
 * greeting timeout rests the address (dest_failed). After the first READY,
 * the end of the connection is the end of the session.
 *
 * STARTTLS follows tls_policy.h; the handshake runs on the conn with one
 * client tls_config per worker (mbedTLS's curve tables are per thread).
 */
#include "queue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth_file.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "dane_delivery.h"
#include "mta_sts_delivery.h"
#include "session_cache.h"
#include "shaping.h"
#include "smtp_client.h"
#include "tls.h"
#include "tls_policy.h"
#include "tlsrpt_delivery.h"

/* How far into an address's round robin a session looks for a domain it
 * may carry (TLS policy, MX name): all alike in practice. */
#define WAITERS_SCANNED 32

enum mta_state {
	MTA_CONNECTING,            /* TCP connect in flight */
	MTA_GREETING,              /* waiting for the 220 */
	MTA_EHLO,                  /* EHLO or HELO sent (first, or again over TLS) */
	MTA_STARTTLS,              /* STARTTLS sent, or its handshake running */
	MTA_AUTH,                  /* AUTH sent to a next hop with credentials */
	MTA_READY,                 /* between transactions: left in the same pass */
	MTA_ENVELOPE,              /* MAIL, RCPT, DATA (or the RSET after a failed one) */
	MTA_BODY,                  /* the body and its final reply */
	MTA_IDLE,                  /* in the domain's pool, waiting for work */
	MTA_QUIT,                  /* QUIT sent */
	MTA_CLOSED,                /* the connection is over */
	MTA_STATE_COUNT
};

static const char *const mta_state_names[MTA_STATE_COUNT] = {
	"connecting", "greeting", "ehlo", "starttls", "auth", "ready", "envelope", "body", "idle",
	"quit", "closed",
};

/* The deadline of each state (-1: none; READY never lasts). CLOSED's bounds
 * the flush of the last bytes after the session let go of the conn. */
static const int mta_deadline[MTA_STATE_COUNT] = {
	[MTA_CONNECTING] = WORKER_TIMER_OUT_CONNECT,
	[MTA_GREETING] = WORKER_TIMER_OUT_GREETING,
	[MTA_EHLO] = WORKER_TIMER_OUT_COMMAND,
	[MTA_STARTTLS] = WORKER_TIMER_OUT_COMMAND,
	[MTA_AUTH] = WORKER_TIMER_OUT_COMMAND,
	[MTA_READY] = -1,
	[MTA_ENVELOPE] = WORKER_TIMER_OUT_COMMAND,
	[MTA_BODY] = WORKER_TIMER_OUT_DATA,
	[MTA_IDLE] = WORKER_TIMER_OUT_IDLE,
	[MTA_QUIT] = WORKER_TIMER_OUT_COMMAND,
	[MTA_CLOSED] = WORKER_TIMER_OUT_COMMAND,
};

/* STARTTLS on the current connection. */
enum mta_tls {
	MTA_TLS_CLEAR,             /* not tried (yet) */
	MTA_TLS_TRIED,             /* STARTTLS sent: refused, or the handshake runs */
	MTA_TLS_ON,                /* the handshake completed */
};

struct mta_session {
	struct delivery *dl;
	struct qdomain *d;         /* the domain served now; NULL while pooled */
	struct qdest *dest;        /* the address connected (or connecting) to */
	struct conn *conn;
	struct smtp_client *client;
	struct dns_route *route;
	struct sched_cursor at;    /* which MX host and address */
	enum mta_state state;
	struct qitem *item;        /* the transaction in progress */
	struct smtp_client_txn txn;
	struct smtp_client_rcpt *rcpts;
	struct rcpt_result *results;
	size_t rcpt_cap;
	unsigned transactions;
	bool established;          /* reached READY once: no next address after this */
	struct mta_session *idle_prev, *idle_next;
	/* the current connection */
	enum config_tls_policy tls_policy;
	enum tls_applied tls_applied;      /* where tls_policy comes from, for reasons */
	enum mta_tls tls;
	bool failed;               /* the host failed (connect, reply, 421, TLS policy) */
	bool explained;            /* last_error says why (TLS): later events keep it */
	bool retry_clear;          /* a TLS failure under "may": this address again in clear */
	bool timed_out;            /* in connect or greeting: the address rests (pile-up?) */
	const char *abort_reason;  /* set in a client callback, applied by mta_pump */
	char ip[64];
	char last_error[REPLY_TEXT_MAX];   /* why the last host failed */
	char last_status[12];              /* its enhanced status; "" = 4.4.1 */
	char tls_desc[96];         /* "TLSv1.2/<cipher>" or "none", for the log */
	/* SMTP AUTH to the next hop (delivery.auth_file), copied at the open:
	 * a reload may free the config they came from. */
	char *hop;                 /* the next hop as configured; NULL = MX */
	char *auth_user, *auth_password;   /* NULL = no AUTH */
	bool authenticated;        /* 235 on this connection */
	struct shaping_hold hold;  /* shaping: connection slots held, egress source */
	char ehlo[256];            /* the source's EHLO name; "" = the relay's hostname */
	char source[64];           /* the source address bound to, for the log; "" = none */
};

extern const struct conn_handler delivery_conn_handler;

static void mta_pump(struct mta_session *s);

/* session_mx - the MX host name of the address, as the domain served now
 * calls it (a reused session may have been opened for another domain), or
 * as the route it was opened for does. */
static const char *session_mx(const struct mta_session *s)
{
	const char *name = NULL;

	if (s->d != NULL && s->dest != NULL && s->d->route != s->route)
		name = dest_mx_name(s->dest, s->d->route);
	if (name == NULL && s->route != NULL && s->at.host < s->route->host_count)
		name = s->route->hosts[s->at.host].name;
	return name;
}

static const char *session_mx_text(const struct mta_session *s)
{
	return session_mx(s) ? session_mx(s) : "-";
}

/* domain_name - the domain the session serves; "-" while it is pooled. */
static const char *domain_name(const struct mta_session *s)
{
	return s->d != NULL ? s->d->name : "-";
}

/* mta_assign - the session serves d from now on (NULL: nobody, pooled);
 * a domain counts the sessions serving it against its own window. */
static void mta_assign(struct mta_session *s, struct qdomain *d)
{
	if (s->d == d)
		return;
	if (s->d != NULL)
		s->d->active--;
	s->d = d;
	if (d != NULL)
		d->active++;
}

/* mta_arm_deadline - (re)start the current state's deadline: on entry, and
 * on every sign of progress within the state. */
static void mta_arm_deadline(struct mta_session *s)
{
	int cls = mta_deadline[s->state];

	if (cls >= 0 && s->conn != NULL)
		worker_timer_arm(s->dl->w, &s->conn->phase_timer, (enum worker_timer_class)cls);
}

/* mta_enter_state - the one way a session changes state. */
static void mta_enter_state(struct mta_session *s, enum mta_state next)
{
	log_debug("mta_state", "domain=%s ip=%s from=%s to=%s", domain_name(s), s->ip,
		  mta_state_names[s->state], mta_state_names[next]);
	s->state = next;
	mta_arm_deadline(s);
}

/* mta_state_of - the session state that follows the client's. */
static enum mta_state mta_state_of(enum smtp_client_state cs)
{
	switch (cs) {
	case SMTP_CLIENT_GREETING:
		return MTA_GREETING;
	case SMTP_CLIENT_EHLO:
	case SMTP_CLIENT_HELO:
		return MTA_EHLO;
	case SMTP_CLIENT_STARTTLS:
	case SMTP_CLIENT_TLS:
		return MTA_STARTTLS;
	case SMTP_CLIENT_AUTH:
		return MTA_AUTH;
	case SMTP_CLIENT_READY:
		return MTA_READY;
	case SMTP_CLIENT_MAIL:
	case SMTP_CLIENT_RCPT:
	case SMTP_CLIENT_DATA:
	case SMTP_CLIENT_RSET:
		return MTA_ENVELOPE;
	case SMTP_CLIENT_BODY:
		return MTA_BODY;
	case SMTP_CLIENT_QUIT:
		return MTA_QUIT;
	case SMTP_CLIENT_CLOSED:
	case SMTP_CLIENT_FAILED:
	default:
		return MTA_CLOSED;
	}
}

/* ---- the next hop and its credentials ----------------------------------- */

/* mta_hop_of - the next hop of d as written in the config (its sender
 * route, its route, else delivery.relayhost), or NULL when mail goes to
 * the MX hosts. */
static const char *mta_hop_of(const struct config *cfg, const struct qdomain *d)
{
	if (d->hop != NULL)
		return d->hop;
	const char *route = config_domain_policy(cfg, d->name)->route;

	if (route != NULL && route[0] != '\0')
		return route;
	return cfg->relayhost != NULL && cfg->relayhost[0] != '\0' ? cfg->relayhost : NULL;
}

/* mta_policy_of - the TLS policy for d's mail to MX host mx: its sender
 * route's tls when it gives one, else the recipient domain's ("verify"
 * under an MTA-STS policy in mode enforce), and DANE's for a host with
 * TLSA records (dane_delivery_tls; "dane" without records is "may"); a
 * next hop with credentials gets at least "encrypt": a password never
 * goes out in clear. */
static enum config_tls_policy mta_policy_of(const struct config *cfg, const struct qdomain *d, const char *mx)
{
	enum config_tls_policy p;

	if (d->hop == NULL || !config_sender_route_tls(cfg, d->hop, &p))
		p = mta_sts_delivery_tls(d->dl, d, config_domain_policy(cfg, d->name)->tls);
	p = dane_delivery_tls(d->dl, d, mx, p);

	if ((p == CONFIG_TLS_NONE || p == CONFIG_TLS_MAY) &&
	    auth_file_find(cfg->auth, mta_hop_of(cfg, d)) != NULL)
		return CONFIG_TLS_ENCRYPT;
	return p;
}

static void wipe_free(char **p)
{
	if (*p != NULL) {
		explicit_bzero(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

/* mta_auth_setup - the credentials for the session's next hop (fixed
 * when the session was made, with its route: a reload meanwhile does not
 * send one hop's password to another). */
static void mta_auth_setup(struct mta_session *s, const struct config *cfg)
{
	const struct auth_cred *cred = auth_file_find(cfg->auth, s->hop);

	wipe_free(&s->auth_user);
	wipe_free(&s->auth_password);
	if (cred != NULL) {
		s->auth_user = xstrdup(cred->user);
		s->auth_password = xstrdup(cred->password);
	}
	s->authenticated = false;
}

/* ---- the domain's pool -------------------------------------------------- */

static void idle_remove(struct mta_session *s)
{
	if (s->state != MTA_IDLE)
		return;
	if (s->idle_prev)
		s->idle_prev->idle_next = s->idle_next;
	else
		s->dest->idle_head = s->idle_next;
	if (s->idle_next)
		s->idle_next->idle_prev = s->idle_prev;
	s->idle_prev = s->idle_next = NULL;
	mta_enter_state(s, MTA_READY);
}

static void idle_push(struct mta_session *s)
{
	s->idle_prev = NULL;
	s->idle_next = s->dest->idle_head;
	if (s->idle_next)
		s->idle_next->idle_prev = s;
	s->dest->idle_head = s;
	mta_enter_state(s, MTA_IDLE);
}

unsigned mta_session_count_idle(const struct qdest *dest)
{
	unsigned n = 0;

	for (const struct mta_session *s = dest->idle_head; s != NULL; s = s->idle_next)
		n++;
	return n;
}

/* ---- transactions ------------------------------------------------------- */

/* mta_txn_prepare - the client's view of it, every result "no reply"
 * until a reply says otherwise. */
static void mta_txn_prepare(struct mta_session *s, struct qitem *it)
{
	const struct qmsg *m = it->msg;

	if (it->count > s->rcpt_cap) {
		s->rcpt_cap = it->count;
		s->rcpts = xreallocarray(s->rcpts, s->rcpt_cap, sizeof(*s->rcpts));
		s->results = xreallocarray(s->results, s->rcpt_cap, sizeof(*s->results));
	}
	for (uint32_t i = 0; i < it->count; i++) {
		const struct qrcpt *r = &m->rcpts[it->idx[i]];
		s->rcpts[i] = (struct smtp_client_rcpt){ r->addr, r->notify, r->orcpt };
		rcpt_result_set(&s->results[i], SMTP_OUTCOME_DEFERRED, 0, true, "4.4.2", "no reply");
	}
	s->txn = (struct smtp_client_txn){
		.sender = m->sender, .rcpts = s->rcpts, .nrcpts = it->count,
		.flags = (m->eightbit ? SMTP_TXN_8BIT : 0) | (m->smtputf8 ? SMTP_TXN_SMTPUTF8 : 0),
		.envid = m->envid,
		.ret = m->ret == SPOOL_RET_HDRS ? SMTP_RET_HDRS : m->ret == SPOOL_RET_FULL ? SMTP_RET_FULL : SMTP_RET_NONE,
		.body = item_body(it), .body_len = m->body_len,
	};
}

/* mta_requiretls_refused - RFC 8689 4.2.1 for a REQUIRETLS message on
 * this connection: NULL when its TLS is authenticated for it->d (the
 * server's REQUIRETLS is smtp_client_begin's check), else why not. */
static const char *mta_requiretls_refused(const struct mta_session *s, const struct qitem *it)
{
	const struct config *cfg = s->dl->w->cfg;
	const struct qdomain *d = it->d;
	enum config_tls_policy configured = config_domain_policy(cfg, d->name)->tls;
	struct tls_auth_facts f = {
		.policy = s->tls_policy, .tls_on = s->tls == MTA_TLS_ON,
		.mta_sts_enforce = mta_sts_delivery_applied(s->dl, d, configured) == TLS_APPLIED_MTA_STS,
		.next_hop = s->hop != NULL,
	};

	if (tls_policy_authenticated(&f))
		return NULL;
	if (!f.tls_on)
		return "REQUIRETLS: no TLS to the server";
	return "REQUIRETLS: the server's TLS is not authenticated by MTA-STS or DANE";
}

/* mta_begin - start a transaction for it; true when one is under way
 * (false: it ended at once and was completed). */
static bool mta_begin(struct mta_session *s, struct qitem *it)
{
	mta_txn_prepare(s, it);
	if (it->msg->requiretls) {
		const char *why = mta_requiretls_refused(s, it);
		if (why != NULL) {
			/* Nothing of it goes out: a non-delivery report (RFC
			 * 8689 4.2.1, 5.7.10), redacted (outcome.c). */
			log_info("requiretls_refused", "id=%s domain=%s mx=%s ip=%s policy=%s reason=\"%s\"",
				 it->msg->queue_id, it->d->name, session_mx_text(s), s->ip,
				 config_tls_policy_name(s->tls_policy), why);
			item_set_state(it, QSTATE_ACTIVE);
			for (uint32_t i = 0; i < it->count; i++)
				rcpt_result_set(&s->results[i], SMTP_OUTCOME_BOUNCED, 0, true, "5.7.10", why);
			item_complete(s->dl, it, s->results, session_mx(s), s->ip[0] ? s->ip : NULL,
				      s->tls_desc);
			return false;
		}
		s->txn.flags |= SMTP_TXN_REQUIRETLS;
	}
	s->item = it;
	item_set_state(it, QSTATE_ACTIVE);
	s->transactions++;
	int rc = smtp_client_begin(s->client, &s->txn);
	if (rc == 0)
		return true;
	if (rc < 0) {
		/* The envelope cannot be sent at all (bad address bytes). */
		s->item = NULL;
		item_fail_all(s->dl, it, SMTP_OUTCOME_BOUNCED, 0, "5.1.3", "address cannot be sent over SMTP");
	}
	/* rc == 1: ended at once; txn_done has run. */
	return false;
}

/* mta_moved - d's mail no longer goes where this session goes: a
 * reload changed its next hop or TLS policy since the session began. */
static bool mta_moved(const struct mta_session *s, const struct qdomain *d)
{
	const struct config *cfg = s->dl->w->cfg;

	return !same_text(mta_hop_of(cfg, d), s->hop) || mta_policy_of(cfg, d, session_mx(s)) != s->tls_policy;
}

/* mta_host_allowed - may d's mail go to MX host mx? Not to a host with a
 * bogus TLSA answer; a host with usable TLSA records whatever MTA-STS
 * says (DANE wins); else as MTA-STS says. */
static bool mta_host_allowed(const struct delivery *dl, const struct qdomain *d, const char *mx)
{
	if (!dane_delivery_host_allowed(dl, d, mx))
		return false;
	return dane_delivery_host_usable(dl, d, mx) || mta_sts_delivery_host_allowed(dl, d, mx);
}

/* mta_compatible - may this session carry d's mail? The same TLS policy
 * and, under "verify", the same MX name (the certificate was checked for
 * it): Postfix's connection cache keys on the same. */
static bool mta_compatible(const struct mta_session *s, const struct qdomain *d)
{
	const struct config *cfg = s->dl->w->cfg;
	const char *theirs = dest_mx_name(s->dest, d->route);
	enum config_tls_policy policy = mta_policy_of(cfg, d, theirs);

	if (policy != s->tls_policy || !same_text(mta_hop_of(cfg, d), s->hop))
		return false;     /* another next hop may log in as someone else */
	if (!mta_host_allowed(s->dl, d, theirs))
		return false;     /* an MX host d's MTA-STS policy does not list, or bogus TLSA */
	if (!shaping_session_fits(s->dl, (struct qdomain *)d, &s->hold))
		return false;     /* another site's slot, or a source not in d's pool */
	if (policy != CONFIG_TLS_VERIFY && policy != CONFIG_TLS_DANE)
		return true;
	const char *mx = session_mx(s);
	return mx != NULL && theirs != NULL && strcasecmp(mx, theirs) == 0;
}

/* mta_pop_compatible - the first domain waiting at the session's address
 * (among the first few: the rest wait for a session of their own kind)
 * whose mail this session may carry, out of the round robin. */
static struct qdomain *mta_pop_compatible(struct mta_session *s)
{
	unsigned n = 0;

	for (struct qdomain *d = s->dest->wait_head; d != NULL && n < WAITERS_SCANNED;
	     d = d->wait_next, n++) {
		if (mta_compatible(s, d)) {
			dest_unwait(d);
			return d;
		}
	}
	return NULL;
}

/* mta_go_idle - nothing to carry: into the pool (mta_pump puts it there),
 * or QUIT when the connection has done its share for the domain it served
 * or domains wait for the slot it holds. */
static void mta_go_idle(struct mta_session *s)
{
	const struct qdomain *d = s->d;
	struct qdomain *own = s->d;
	bool spent = d != NULL && s->transactions >= shaping_max_messages(s->dl, own, &s->hold,
		(unsigned)config_domain_policy(s->dl->w->cfg, d->name)->max_messages_per_connection);

	mta_assign(s, NULL);
	/* A worker waiting for the connection slot this one holds gets it. */
	if (spent || s->dl->stopping || s->dest->wait_head != NULL || s->dl->anywhere.wait_head != NULL ||
	    shaping_session_wanted(s->dl, &s->hold))
		smtp_client_quit(s->client);
}

/* mta_next - the client is READY: the next transaction (the next domain
 * waiting at the address first, then the session's own: sched_next_work),
 * the pool, or QUIT (sched_on_ready). */
static void mta_next(struct mta_session *s)
{
	if (s->d != NULL && mta_moved(s, s->d)) {
		/* A reload sent the domain elsewhere: no more of its mail on
		 * this connection. After the QUIT, mta_over kicks the domain,
		 * which opens a session to its new next hop. */
		log_info("delivery_connection", "domain=%s mx=%s ip=%s result=next_hop_changed action=quit",
			 domain_name(s), session_mx_text(s), s->ip);
		smtp_client_quit(s->client);
		return;
	}
	for (;;) {
		struct qdomain *d = s->d;
		bool own = d != NULL && d->ready_head != NULL, switched = false;
		if (sched_next_work(own, s->dest->wait_head != NULL) == SCHED_WORK_NEXT) {
			struct qdomain *next = mta_pop_compatible(s);
			if (next != NULL) {
				if (own)
					dest_wait(s->dest, d);     /* its turn comes again */
				mta_assign(s, next);
				d = next;
				switched = true;
			}
		}
		if (d == NULL || d->ready_head == NULL) {
			if (!switched) {
				mta_go_idle(s);
				return;
			}
			continue;     /* a waiter whose items went elsewhere: the next one */
		}
		const struct config_domain *policy = config_domain_policy(s->dl->w->cfg, d->name);
		unsigned max = shaping_max_messages(s->dl, d, &s->hold, (unsigned)policy->max_messages_per_connection);
		if (shaping_domain_parked(s->dl, d)) {
			/* Suspended meanwhile: its items wait, this connection ends. */
			smtp_client_quit(s->client);
			return;
		}
		if (sched_on_ready(s->dl->stopping, s->transactions, max, true) == SCHED_READY_QUIT) {
			smtp_client_quit(s->client);
			return;
		}
		if (shaping_source_spent(s->dl, &s->hold)) {
			/* Its source's warm-up share of the day is sent: the
			 * next connection takes another source (or waits). */
			smtp_client_quit(s->client);
			return;
		}
		if (!shaping_message_admit(s->dl, d, &s->hold)) {
			/* A message rate holds d back (it waits for its token):
			 * this session goes to other work, the pool, or QUIT. */
			mta_go_idle(s);
			return;
		}
		shaping_source_sent(s->dl, &s->hold);
		struct qitem *it = domain_pop_ready(d);
		item_split(s->dl, it, shaping_max_recipients(s->dl, d, (unsigned)policy->max_recipients_per_transaction));
		if (mta_begin(s, it))
			return;
		/* ended at once: the next one */
	}
}

/* ---- STARTTLS ----------------------------------------------------------- */

/* mta_tls_client - the worker's client TLS config, made on first use and
 * again when a reload changed the CA path; sessions keep the old one
 * alive. A CA bundle that does not load leaves a config without CAs: "may"
 * and "encrypt" still work, "verify" fails. NULL only if no config can be
 * made at all. */
static struct tls_config *mta_tls_client(struct delivery *dl)
{
	const char *ca = dl->w->cfg->tls_ca_file;
	char err[256];

	if (dl->tls_client != NULL && strcmp(dl->tls_client_ca, ca) == 0)
		return dl->tls_client;
	dl->tls_client = tls_config_free(dl->tls_client);
	free(dl->tls_client_ca);
	dl->tls_client_ca = xstrdup(ca);
	/* Sessions verified against the old CAs carry trust of the old CAs. */
	dl->tls_sessions = session_cache_free(dl->tls_sessions);
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

void mta_session_tls_free(struct delivery *dl)
{
	for (size_t i = 0; i < dl->auth_failed_count; i++)
		free(dl->auth_failed_hops[i]);
	free(dl->auth_failed_hops);
	dl->auth_failed_hops = NULL;
	dl->auth_failed_count = 0;
	dl->tls_client = tls_config_free(dl->tls_client);
	free(dl->tls_client_ca);
	dl->tls_client_ca = NULL;
	dl->tls_sessions = session_cache_free(dl->tls_sessions);
}

/* ---- TLS session resumption ---------------------------------------------
 * Each worker keeps the client sessions of its last full handshakes, one per
 * (verify name, port, TLS policy): the MX host name (or "[ip]" when there is
 * none), so a session verified for one name is never offered for another,
 * and tls_session_resume refuses an unverified one under "verify". Tickets
 * (RFC 5077) or session IDs, whatever the receiver gave; a receiver that
 * forgot the session answers with a full handshake, which replaces it. */

static void mta_tls_saved_free(void *saved)
{
	tls_saved_session_free(saved);
}

/* mta_tls_sessions - the worker's cache as the config wants it (a reload
 * that changes its size or lifetime starts it afresh); NULL when off. */
static struct session_cache *mta_tls_sessions(struct delivery *dl)
{
	const struct config *cfg = dl->w->cfg;
	size_t cap = cfg->tls_session_cache_size > 0 ? (size_t)cfg->tls_session_cache_size : 0;

	if (dl->tls_sessions != NULL && (session_cache_cap(dl->tls_sessions) != cap ||
	    session_cache_lifetime(dl->tls_sessions) != cfg->tls_session_lifetime_ms))
		dl->tls_sessions = session_cache_free(dl->tls_sessions);
	if (dl->tls_sessions == NULL && cap > 0)
		dl->tls_sessions = session_cache_new(cap, cfg->tls_session_lifetime_ms, mta_tls_saved_free);
	return dl->tls_sessions;
}

/* mta_tls_session_key - "name|port|policy"; name is the verify name (the
 * MX host) or, for "[ip]" next hops, the address. */
static void mta_tls_session_key(const struct mta_session *s, char *key, size_t len)
{
	const char *mx = session_mx(s);
	const char *text = s->dest != NULL ? s->dest->text : "";
	const char *colon = strrchr(text, ':');

	if (mx != NULL && mx[0] != '[')
		snprintf(key, len, "%s|%s|%s", mx, colon ? colon + 1 : "", config_tls_policy_name(s->tls_policy));
	else
		snprintf(key, len, "[%s]|%s", text, config_tls_policy_name(s->tls_policy));
}

/* mta_dane_refused - DANE refused the host: the RFC 8460 result type
 * goes into the reason (the TLS module names it when the chain was
 * checked; else STARTTLS was missing or the handshake failed before). */
static void mta_dane_refused(struct mta_session *s, const char *status)
{
	enum dane_result r = strcmp(status, "4.7.4") == 0 ? DANE_RESULT_STARTTLS_NOT_SUPPORTED
							   : DANE_RESULT_VALIDATION_FAILURE;
	const char *token = strstr(s->last_error, "result-type=");
	size_t len = strlen(s->last_error);

	if (token == NULL && len + 40 < sizeof(s->last_error))
		snprintf(s->last_error + len, sizeof(s->last_error) - len, " (result-type=%s)", dane_result_name(r));
	token = strstr(s->last_error, "result-type=");
	s->dl->stats.dane_failures++;
	log_warn("dane_refused", "domain=%s mx=%s ip=%s result_type=%.*s action=next_host", domain_name(s),
		 session_mx_text(s), s->ip, token != NULL ? (int)strcspn(token + 12, ") ") : 1,
		 token != NULL ? token + 12 : "-");
}

/* mta_explain - the host failed for a reason of ours (TLS); it stays the
 * reason whatever the end of the connection says. */
static void mta_explain(struct mta_session *s, const char *status, const char *what, const char *why)
{
	/* The policy first: the library's reason may be long and is cut. */
	snprintf(s->last_error, sizeof(s->last_error), "%s [%s]: %s%s%s", session_mx_text(s), s->ip,
		 s->tls_applied == TLS_APPLIED_MTA_STS ? "MTA-STS policy (mode enforce): " :
		 s->tls_policy == CONFIG_TLS_DANE ? "DANE policy: " : "", what, why);
	snprintf(s->last_status, sizeof(s->last_status), "%s", status);
	s->explained = true;
	if (s->tls_policy == CONFIG_TLS_DANE)
		mta_dane_refused(s, status);
}

/* mta_sts_report - mode testing: what enforce would have refused here,
 * logged (the mail goes on as configured). */
static void mta_sts_report(struct mta_session *s, const char *would_refuse)
{
	if (s->tls_applied != TLS_APPLIED_MTA_STS_TESTING)
		return;
	s->dl->stats.mta_sts_reports++;
	log_warn("mta_sts_report", "domain=%s mode=testing mx=%s ip=%s would_refuse=\"%s\"", domain_name(s),
		 session_mx_text(s), s->ip, would_refuse);
}

/* mta_tlsrpt - one TLS-RPT result (RFC 8460) of this connection; why
 * becomes the failure-reason-code. */
static void mta_tlsrpt(struct mta_session *s, enum tlsrpt_result result, const char *why)
{
	const char *mx = session_mx(s);
	struct tlsrpt_where where = {
		.sending_ip = s->source, .mx = mx != NULL && mx[0] != '[' ? mx : NULL, .ip = s->ip,
		.reason_code = why,
	};

	if (s->tls_applied == TLS_APPLIED_DANE && tlsrpt_delivery_tlsa(s->dl, s->d, mx, result, &where))
		return;
	tlsrpt_delivery_sts_or_none(s->dl, s->d, result, &where);
}

/* mta_tls_failed - STARTTLS or the handshake failed on this connection,
 * which is over: under "may" the same address is tried again in clear
 * (once per host); otherwise the host failed, with a reason that says TLS. */
static void mta_tls_failed(struct mta_session *s, const char *why)
{
	bool fallback = tls_policy_retry_clear(s->tls_policy, s->at.clear_only);
	char quoted[REPLY_TEXT_MAX + 3];

	log_quote(quoted, sizeof(quoted), why, strlen(why));
	log_info("delivery_connection", "domain=%s mx=%s ip=%s result=tls_failed policy=%s next=%s error=%s",
		 domain_name(s), session_mx_text(s), s->ip, config_tls_policy_name(s->tls_policy),
		 fallback ? "retry_without_tls" : "next_host", quoted);
	mta_explain(s, "4.7.5", "TLS failed: ", why);
	mta_sts_report(s, "TLS failed");
	mta_tlsrpt(s, tlsrpt_delivery_cert_result(s->conn != NULL ? tls_cert_problem_of(conn_tls_idle(s->conn)) : TLS_CERT_NONE),
		   why);
	s->retry_clear = fallback;
	mta_enter_state(s, MTA_CLOSED);
}

/* mta_tls_gate - on the first READY of a connection: STARTTLS, go on in
 * clear, or QUIT because the policy wants TLS the host does not give (the
 * host failed). Returns true when the connection is not ready for mail. */
static bool mta_tls_gate(struct mta_session *s)
{
	if (s->established || s->tls == MTA_TLS_ON || s->dl->stopping)
		return false;     /* stopping: mta_next quits, sending nothing */
	bool offered = smtp_client_has_ext(s->client, SMTP_EXT_STARTTLS);
	switch (tls_policy_at_ready(s->tls_policy, offered, s->tls == MTA_TLS_TRIED, s->at.clear_only)) {
	case TLS_STEP_CLEAR:
		if (!offered)
			mta_sts_report(s, "STARTTLS not offered");
		if (!offered && !s->at.clear_only)
			mta_tlsrpt(s, TLSRPT_STARTTLS_NOT_SUPPORTED, "STARTTLS not offered");
		return false;
	case TLS_STEP_START:
		if (smtp_client_starttls(s->client) == 0) {
			s->tls = MTA_TLS_TRIED;
			mta_enter_state(s, MTA_STARTTLS);
			return true;
		}
		if (!tls_policy_required(s->tls_policy))
			return false;
		break;
	case TLS_STEP_REFUSE:
		break;
	}
	if (!s->explained) {
		log_info("delivery_connection", "domain=%s mx=%s ip=%s result=tls_not_offered policy=%s",
			 domain_name(s), session_mx_text(s), s->ip, config_tls_policy_name(s->tls_policy));
		mta_explain(s, "4.7.4", "TLS required but STARTTLS not offered", "");
		mta_tlsrpt(s, TLSRPT_STARTTLS_NOT_SUPPORTED, "STARTTLS not offered");
	}
	s->failed = true;
	smtp_client_quit(s->client);
	return true;
}

/* ---- SMTP AUTH to a next hop -------------------------------------------- */

/* auth_failure_known - was this hop's AUTH failure logged loudly on this
 * worker already? Remembers it (or, on success, forgets it). */
static bool auth_failure_known(struct delivery *dl, const char *hop, bool failed)
{
	for (size_t i = 0; i < dl->auth_failed_count; i++) {
		if (strcmp(dl->auth_failed_hops[i], hop) != 0)
			continue;
		if (!failed) {
			free(dl->auth_failed_hops[i]);
			dl->auth_failed_hops[i] = dl->auth_failed_hops[--dl->auth_failed_count];
		}
		return true;
	}
	if (failed) {
		dl->auth_failed_hops = xreallocarray(dl->auth_failed_hops, dl->auth_failed_count + 1,
						     sizeof(*dl->auth_failed_hops));
		dl->auth_failed_hops[dl->auth_failed_count++] = xstrdup(hop);
	}
	return false;
}

/* mta_auth_gate - after TLS, before the first transaction: log in to a
 * next hop that has credentials. Never in clear: the policy is at least
 * "encrypt" (mta_policy_of), and this checks again. Returns true when the
 * connection is not ready for mail yet. */
static bool mta_auth_gate(struct mta_session *s)
{
	if (s->established || s->authenticated || s->auth_user == NULL || s->dl->stopping)
		return false;
	if (s->tls != MTA_TLS_ON) {
		/* Cannot happen (the TLS gate quits first); if it ever does,
		 * the host fails rather than see a password in clear. */
		log_error("delivery_auth", "domain=%s hop=%s ip=%s result=refused reason=\"no TLS\"",
			  domain_name(s), s->hop, s->ip);
		mta_explain(s, "4.7.4", "TLS required for AUTH", "");
		s->failed = true;
		smtp_client_quit(s->client);
		return true;
	}
	if (!smtp_client_has_ext(s->client, SMTP_EXT_AUTH)) {
		/* As Postfix: a hop that does not ask for a login gets the
		 * mail without one (it may know us by address). */
		log_warn("delivery_auth", "domain=%s hop=%s mx=%s ip=%s result=not_offered action=send_without_auth",
			 domain_name(s), s->hop, session_mx_text(s), s->ip);
		return false;
	}
	if (smtp_client_auth(s->client, s->auth_user, s->auth_password) != 0)
		return false;     /* over-long credentials: config_check's business */
	mta_enter_state(s, MTA_AUTH);
	return true;
}

/* ev_auth - the hop's answer to AUTH. A refusal (535 and the like) is our
 * configuration, not the recipients': the host failed with 4.7.0, so the
 * mail is deferred and retried, and an operator hears it loudly once per
 * hop (then quietly until it works again). */
static void ev_auth(void *arg, bool ok, const struct smtp_client_result *r)
{
	struct mta_session *s = arg;
	char quoted[REPLY_TEXT_MAX + 3], why[REPLY_TEXT_MAX];
	const char *text = r != NULL && r->text != NULL ? r->text : "";

	if (ok) {
		s->authenticated = true;
		auth_failure_known(s->dl, s->hop, false);
		log_info("delivery_auth", "domain=%s hop=%s mx=%s ip=%s user=%s result=ok", domain_name(s), s->hop,
			 session_mx_text(s), s->ip, s->auth_user);
		return;
	}
	log_quote(quoted, sizeof(quoted), text, strlen(text));
	if (!auth_failure_known(s->dl, s->hop, true))
		log_error("delivery_auth", "domain=%s hop=%s mx=%s ip=%s user=%s result=failed code=%d reply=%s "
			  "action=defer hint=\"check delivery.auth_file\"", domain_name(s), s->hop,
			  session_mx_text(s), s->ip, s->auth_user, r != NULL ? r->code : 0, quoted);
	else
		log_info("delivery_auth", "domain=%s hop=%s mx=%s ip=%s result=failed code=%d", domain_name(s),
			 s->hop, session_mx_text(s), s->ip, r != NULL ? r->code : 0);
	snprintf(why, sizeof(why), "%d %s", r != NULL ? r->code : 0, text);
	mta_explain(s, "4.7.0", "authentication to the next hop failed: ", why);
	s->failed = true;
	smtp_client_quit(s->client);
}

/* ---- smtp_client events (run inside feed/begin/abort) ------------------- */

static void ev_rcpt(void *arg, size_t index, enum smtp_outcome outcome, const struct smtp_client_result *r)
{
	struct mta_session *s = arg;

	rcpt_result_set(&s->results[index], outcome, r->code, r->local, r->status ? r->status : "",
			r->text ? r->text : "");
	s->results[index].success = smtp_client_has_ext(s->client, SMTP_EXT_DSN)
		? RCPT_SUCCESS_PASSED_ON : RCPT_SUCCESS_RELAYED;
}

static void ev_txn_done(void *arg, const struct smtp_client_txn *txn)
{
	struct mta_session *s = arg;
	struct qitem *it = s->item;

	s->item = NULL;
	s->dl->shaping_reply_hold = &s->hold;     /* a rule with scope = "source" */
	if (it != NULL)
		item_complete(s->dl, it, s->results, session_mx(s), s->ip[0] ? s->ip : NULL, s->tls_desc);
	s->dl->shaping_reply_hold = NULL;
}

static void ev_ready(void *arg)
{
	struct mta_session *s = arg;
	struct qdomain *d = s->d;

	if (mta_tls_gate(s) || mta_auth_gate(s))
		return;
	if (!s->established) {
		s->established = true;
		dest_succeeded(s->dl, s->dest);
		retry_domain_succeeded(&d->backoff);
		d->window = sched_window_grow(d->window,
			(unsigned)config_domain_policy(s->dl->w->cfg, d->name)->max_connections);
	}
	mta_next(s);
}

/* mta_tls_begin - start the handshake on the connection (after the 220
 * to STARTTLS, or at once under "implicit"). The ClientHello goes out
 * with conn_start_tls; a failure is the TLS failure path. */
static void mta_tls_begin(struct mta_session *s)
{
	const char *mx = session_mx(s);
	struct tls_config *tc = mta_tls_client(s->dl);
	bool verify = s->tls_policy == CONFIG_TLS_VERIFY;
	/* SNI and the certificate check want a name; "[ip]" is none. */
	const char *name = mx != NULL && mx[0] != '[' ? mx : NULL;
	bool dane = s->tls_policy == CONFIG_TLS_DANE;
	struct tls_session *ts = tc == NULL ? NULL :
		tls_session_new(tc, dane ? TLS_VERIFY_DANE : verify ? TLS_VERIFY_REQUIRED : TLS_VERIFY_NONE, name);
	size_t nrec = 0;
	const struct dane_tlsa *recs = dane ? dane_delivery_records(s->dl, s->d, mx, &nrec) : NULL;

	s->tls = MTA_TLS_TRIED;
	if (ts != NULL && dane && (recs == NULL || tls_session_set_dane(ts, recs, nrec) != 0)) {
		/* The answers changed under the session (a new route): this
		 * connection fails, the next one starts from the new ones. */
		ts = tls_session_free(ts);
		mta_tls_failed(s, "the MX host's TLSA records are gone");
		s->abort_reason = "TLS failed";
		return;
	}
	if (ts == NULL) {
		mta_tls_failed(s, tc == NULL ? "no TLS client configuration" :
				  verify && name == NULL ? "no host name to verify" :
				  "cannot start a TLS session");
		s->abort_reason = "TLS failed";
		return;
	}
	struct session_cache *cache = dane ? NULL : mta_tls_sessions(s->dl);
	if (cache != NULL) {
		char key[512];
		mta_tls_session_key(s, key, sizeof(key));
		const struct tls_saved_session *saved = session_cache_get(cache, key, s->dl->w->now_ms);
		if (saved != NULL && tls_session_resume(ts, saved) != 0)
			session_cache_remove(cache, key);
	}
	conn_start_tls(s->conn, ts);
	if (s->conn->tls_failed) {
		mta_tls_failed(s, tls_strerror(ts));
		s->abort_reason = "TLS failed";
	}
}

/* ev_starttls - the reply to STARTTLS. On 220 the handshake starts at
 * once (the ClientHello goes out with conn_start_tls); a refusal leaves the
 * client READY, and ev_ready then goes on in clear or quits by policy. */
static void ev_starttls(void *arg, bool ok, const struct smtp_client_result *r)
{
	struct mta_session *s = arg;

	if (!ok) {
		char quoted[REPLY_TEXT_MAX + 3], why[REPLY_TEXT_MAX];
		const char *text = r && r->text ? r->text : "";
		log_quote(quoted, sizeof(quoted), text, strlen(text));
		log_info("delivery_connection", "domain=%s mx=%s ip=%s result=starttls_refused code=%d reply=%s",
			 domain_name(s), session_mx_text(s), s->ip, r ? r->code : 0, quoted);
		mta_enter_state(s, MTA_READY);
		mta_tlsrpt(s, TLSRPT_STARTTLS_NOT_SUPPORTED, "STARTTLS refused");
		if (tls_policy_required(s->tls_policy)) {
			snprintf(why, sizeof(why), "%d %s", r ? r->code : 0, text);
			mta_explain(s, "4.7.4", "STARTTLS refused: ", why);
		}
		return;
	}
	mta_tls_begin(s);
}

static void ev_closed(void *arg, bool failed, const struct smtp_client_result *r)
{
	struct mta_session *s = arg;

	s->failed |= failed;
	if (failed && s->state == MTA_STARTTLS) {
		/* E.g. cleartext right behind the 220 to STARTTLS: a server
		 * broken in STARTTLS, so under "may" try it again in clear. */
		mta_tls_failed(s, r && r->text ? r->text : "failed in STARTTLS");
	}
	if (failed && !s->established && r != NULL && !r->local)
		shaping_on_connection_reply(s->dl, s->d, &s->hold, r->code, r->status, r->text);
	if (s->explained || !failed)
		return;     /* TLS: last_error says it better, already logged */
	snprintf(s->last_error, sizeof(s->last_error), "%s [%s]: %d %s", session_mx_text(s), s->ip,
		 r ? r->code : 0, r && r->text ? r->text : "");
	s->last_status[0] = '\0';
	log_info("delivery_connection", "domain=%s mx=%s ip=%s result=failed code=%d reply=\"%s\"",
		 domain_name(s), session_mx_text(s), s->ip, r ? r->code : 0, r && r->text ? r->text : "");
}

/* ---- life of a session -------------------------------------------------- */

static struct mta_session *mta_session_new(struct delivery *dl, struct qdomain *d,
					   const struct dns_route *route)
{
	struct mta_session *s = xcalloc(1, sizeof(*s));

	s->dl = dl;
	s->route = dns_route_ref(route);
	s->hop = mta_hop_of(dl->w->cfg, d) != NULL ? xstrdup(mta_hop_of(dl->w->cfg, d)) : NULL;
	s->state = MTA_CONNECTING;
	s->hold = (struct shaping_hold){ -1, -1, -1, 0, false };
	mta_assign(s, d);
	dl->sessions_active++;
	return s;
}

/* mta_leave_dest - the session no longer holds a connection to its
 * address; returns the address (NULL: none), whose waiters may go now. */
static struct qdest *mta_leave_dest(struct mta_session *s)
{
	struct qdest *dest = s->dest;

	if (dest != NULL)
		dest->active--;
	s->dest = NULL;
	return dest;
}

/* mta_session_free - the session is over for good: its slot at the
 * address goes to the next domain waiting there. */
static void mta_session_free(struct mta_session *s)
{
	struct delivery *dl = s->dl;

	idle_remove(s);
	if (s->item != NULL) {
		/* Defensive: a transaction the client never finished. */
		item_fail_all(dl, s->item, SMTP_OUTCOME_DEFERRED, 0, "4.4.2", "connection lost");
		s->item = NULL;
	}
	smtp_client_free(s->client);
	dns_route_unref(s->route);
	free(s->hop);
	wipe_free(&s->auth_user);
	wipe_free(&s->auth_password);
	free(s->rcpts);
	free(s->results);
	mta_assign(s, NULL);
	shaping_connection_release(dl, &s->hold);
	struct qdest *dest = mta_leave_dest(s);
	dl->sessions_active--;
	free(s);
	if (dest != NULL && !dl->stopping)
		dest_wake(dl, dest);
}

/* mta_connect - connect to the route's address at s->at or, when that one
 * rests after failures, the first after it that does not (or that takes a
 * socket). MTA_WAIT, with the place to wait in *full, when the address to
 * use is full or the worker's cap is reached. */
static enum mta_open mta_connect(struct mta_session *s, struct qdest **full)
{
	struct delivery *dl = s->dl;
	bool more = sched_first_address(&s->at, s->route);

	for (; more; more = sched_next_address(&s->at, s->route, false)) {
		union dns_addr *a = &s->route->hosts[s->at.host].addrs[s->at.addr];
		if (s->d != NULL && !mta_host_allowed(dl, s->d, s->route->hosts[s->at.host].name))
			continue;     /* MTA-STS enforce: not a listed MX host; or bogus TLSA */
		struct qdest *dest = dest_get(dl, a);
		struct sched_dest_view v = {
			.active = dest->active, .window = dest->window, .max_per_address = dl->max_per_address,
			.worker_active = dl->sessions_active - 1, .max_total = dl->max_total,
			.backed_off = dest_backed_off(dl, dest),
		};
		switch (sched_dest_admit(&v)) {
		case SCHED_DEST_SKIP:
			continue;
		case SCHED_DEST_WAIT:
			*full = dest;
			return MTA_WAIT;
		case SCHED_DEST_WAIT_ANY:
			*full = &dl->anywhere;
			return MTA_WAIT;
		case SCHED_DEST_OPEN:
			break;
		}
		socklen_t len = a->sa.sa_family == AF_INET6 ? sizeof(a->sin6) : sizeof(a->sin);
		dns_addr_format(a, s->ip, sizeof(s->ip));
		const struct shaping_source *src = shaping_source_of(dl, &s->hold);
		s->conn = conn_connect_from(dl->w, &a->sa, len, src ? (const struct sockaddr *)&src->addr : NULL,
					    src ? src->addr_len : 0, &delivery_conn_handler, s, WORKER_TIMER_OUT_CONNECT);
		if (s->conn == NULL && src != NULL)
			log_warn("delivery_connection", "ip=%s result=bind_failed source=%s address=%s error=\"%s\"", s->ip,
				 src->name, src->address, strerror(errno));
		if (s->conn != NULL) {
			shaping_connection_connected(&s->hold);
			if (src != NULL && src->addr.ss_family == a->sa.sa_family) {
				snprintf(s->ehlo, sizeof(s->ehlo), "%s", src->ehlo);
				snprintf(s->source, sizeof(s->source), "%s", src->address);
			} else {
				s->ehlo[0] = s->source[0] = '\0';
			}
			s->dest = dest;
			dest->active++;
			dl->stats.connections++;
			mta_enter_state(s, MTA_CONNECTING);
			return MTA_OPENED;
		}
	}
	return MTA_NO_ADDRESS;
}

enum mta_open mta_session_open(struct delivery *dl, struct qdomain *d, const struct dns_route *route,
			       struct qdest **full)
{
	struct mta_session *s = mta_session_new(dl, d, route);

	if (!shaping_connection_admit(dl, d, &s->hold)) {
		mta_session_free(s);
		return MTA_LIMITED;
	}
	enum mta_open r = mta_connect(s, full);

	if (r != MTA_OPENED)
		mta_session_free(s);
	return r;
}

bool mta_session_reuse(struct qdest *dest, struct qdomain *d)
{
	for (struct mta_session *s = dest->idle_head; s != NULL; s = s->idle_next) {
		if (!mta_compatible(s, d))
			continue;
		idle_remove(s);
		mta_assign(s, d);
		s->dl->stats.reused++;
		mta_next(s);
		mta_pump(s);
		return true;
	}
	return false;
}

/* mta_route_failed - no address of the route worked. When every one of
 * them rests after a failed connect or greeting, the first times (our own
 * pile-up, or a blip), the ready items wait for the first to come back,
 * with no attempt counted; otherwise the whole domain backs off, and every
 * waiting item had an attempt: counted, logged, and the queue lifetime
 * runs out (a bounce) rather than parking forever. */
static void mta_route_failed(struct mta_session *s)
{
	struct delivery *dl = s->dl;
	struct qdomain *d = s->d;
	char text[REPLY_TEXT_MAX + 40];

	if (domain_park_resting(dl, d, s->route))
		return;
	retry_domain_failed(&dl->domain_retry, &d->backoff, dl->w->now_ms, delivery_rng_next(dl));
	log_warn("domain_backoff", "domain=%s failures=%u for_ms=%lld", d->name, d->backoff.failures,
		 (long long)(d->backoff.until_ms - dl->w->now_ms));
	snprintf(text, sizeof(text), "no MX host reachable; last: %s",
		 s->last_error[0] ? s->last_error : "connection failed");
	domain_defer_ready(dl, d, s->last_status[0] ? s->last_status : NULL, text);
}

/* mta_next_address - the connection failed before READY: the next address
 * (or this one in clear), or the route is used up. false: the session ends. */
static bool mta_next_address(struct mta_session *s)
{
	struct delivery *dl = s->dl;
	bool retry_clear = s->retry_clear;
	struct qdest *full = NULL, *left;

	dl->stats.connect_failures++;
	s->client = smtp_client_free(s->client);
	s->retry_clear = false;
	left = mta_leave_dest(s);
	enum mta_open r = sched_next_address(&s->at, s->route, retry_clear) ? mta_connect(s, &full)
									    : MTA_NO_ADDRESS;
	if (r == MTA_WAIT)
		dest_wait(full, s->d);
	else if (r == MTA_NO_ADDRESS)
		mta_route_failed(s);
	if (left != NULL)
		dest_wake(dl, left);
	return r == MTA_OPENED;
}

/* mta_over - the connection ended. Before the session was ever READY, a
 * failure moves on to the next address or MX host (a failed connect or
 * greeting also rests the address); when none is left, the domain waits
 * or backs off (mta_route_failed). */
static void mta_over(struct mta_session *s)
{
	struct delivery *dl = s->dl;
	struct qdomain *d = s->d;
	struct conn *c = s->conn;

	idle_remove(s);
	/* Armed first (the flush is bounded by CLOSED's deadline): the close
	 * may happen at once, and disarms it. */
	mta_enter_state(s, MTA_CLOSED);
	s->conn = NULL;
	if (c != NULL) {
		c->proto = NULL;
		conn_close_after_flush(c);
	}
	if (s->timed_out && s->dest != NULL && !dl->stopping)
		dest_failed(dl, s->dest);
	s->timed_out = false;
	/* A source suspended by this failure tries no other address: the
	 * domain's next session picks another source. */
	if (s->failed && !s->established && !dl->stopping && !shaping_source_suspended(dl, &s->hold) &&
	    mta_next_address(s))
		return;
	mta_session_free(s);
	if (d != NULL)
		domain_kick(dl, d);
}

/* mta_pump - send what the client wrote, then follow its state: the end,
 * the pool, or the deadline of where it is now. */
static void mta_pump(struct mta_session *s)
{
	const char *out;
	size_t len;

	if (s->abort_reason != NULL) {
		const char *why = s->abort_reason;
		s->abort_reason = NULL;
		smtp_client_abort(s->client, why);
	}
	while ((out = smtp_client_output(s->client, &len)) != NULL && len > 0) {
		conn_write(s->conn, out, len);
		smtp_client_output_consumed(s->client, len);
	}
	enum mta_state next = mta_state_of(smtp_client_state(s->client));
	if (next == MTA_CLOSED || s->state == MTA_CLOSED) {
		mta_over(s);
	} else if (next == MTA_READY) {
		if (s->state != MTA_IDLE) {
			mta_assign(s, NULL);
			idle_push(s);
		}
	} else if (next != s->state) {
		mta_enter_state(s, next);
	} else {
		mta_arm_deadline(s);       /* progress: the state's deadline again */
	}
}

/* ---- the conn handler --------------------------------------------------- */

static void out_open(struct conn *c)
{
	struct mta_session *s = c->proto;
	struct smtp_client_config cfg = {
		.helo_name = s->ehlo[0] ? s->ehlo : s->dl->w->cfg->hostname,
		.events = { .arg = s, .rcpt = ev_rcpt, .txn_done = ev_txn_done, .ready = ev_ready,
			    .starttls = ev_starttls, .closed = ev_closed, .auth = ev_auth },
	};

	s->client = smtp_client_new(&cfg);
	mta_auth_setup(s, s->dl->w->cfg);
	s->tls_policy = mta_policy_of(s->dl->w->cfg, s->d, session_mx(s));
	s->tls_applied = dane_delivery_applied(s->dl, s->d, session_mx(s),
					       mta_sts_delivery_applied(s->dl, s->d, s->tls_policy));
	s->tls = MTA_TLS_CLEAR;
	s->failed = s->explained = false;
	s->abort_reason = NULL;
	snprintf(s->tls_desc, sizeof(s->tls_desc), "none");
	mta_enter_state(s, MTA_GREETING);
	if (s->tls_policy == CONFIG_TLS_IMPLICIT)
		mta_tls_begin(s);     /* RFC 8314: the handshake, then the greeting */
	mta_pump(s);
}

/* out_tls_ready - the handshake after STARTTLS ended: EHLO again over TLS
 * (RFC 3207 4.2), or the TLS failure path. */
static void out_tls_ready(struct conn *c, bool ok)
{
	struct mta_session *s = c->proto;
	struct tls_info info;

	if (s == NULL)
		return;
	if (!ok) {
		if (s->dl->tls_sessions != NULL) {
			char key[512];
			mta_tls_session_key(s, key, sizeof(key));
			session_cache_remove(s->dl->tls_sessions, key);
		}
		mta_tls_failed(s, tls_strerror(c->tls));
		smtp_client_abort(s->client, "TLS handshake failed");
		mta_pump(s);
		return;
	}
	tls_session_info(c->tls, &info);
	s->tls = MTA_TLS_ON;
	if (info.resumed)
		s->dl->stats.tls_resumed++;
	else
		s->dl->stats.tls_full++;
	if (s->tls_policy == CONFIG_TLS_DANE) {
		s->dl->stats.dane_verified++;
		log_info("dane_verified", "domain=%s mx=%s ip=%s", domain_name(s), session_mx_text(s), s->ip);
	}
	/* DANE sessions are never resumed (tls.h): nothing to keep. */
	struct session_cache *cache = s->tls_policy == CONFIG_TLS_DANE ? NULL : mta_tls_sessions(s->dl);
	if (cache != NULL && !info.resumed) {
		/* A resumed session stays as it was put: its lifetime counts
		 * from the full handshake, like Postfix's cache timeout. */
		struct tls_saved_session *saved = tls_session_save(c->tls);
		if (saved != NULL) {
			char key[512];
			mta_tls_session_key(s, key, sizeof(key));
			session_cache_put(cache, key, saved, s->dl->w->now_ms);
		}
	}
	snprintf(s->tls_desc, sizeof(s->tls_desc), "%s/%s", info.protocol ? info.protocol : "?",
		 info.cipher ? info.cipher : "?");
	log_info("delivery_tls", "domain=%s mx=%s ip=%s policy=%s applied=%s protocol=%s cipher=%s verified=%d resumed=%d",
		 domain_name(s), session_mx_text(s), s->ip, config_tls_policy_name(s->tls_policy),
		 tls_applied_name(s->tls_applied), info.protocol ? info.protocol : "?",
		 info.cipher ? info.cipher : "?", info.verified, info.resumed);
	if (!info.verified)
		mta_sts_report(s, "certificate not verified for the MX host");
	/* Under mode testing an unverified certificate is what the report
	 * is for; with no policy (or "verify" passed) the session counts as
	 * a success. */
	if (!info.verified && s->tls_applied == TLS_APPLIED_MTA_STS_TESTING)
		mta_tlsrpt(s, tlsrpt_delivery_cert_result(tls_cert_problem_of(c->tls)), tls_strerror(c->tls));
	else
		mta_tlsrpt(s, TLSRPT_SUCCESS, NULL);
	/* Under "implicit" the greeting comes next, over TLS; after
	 * STARTTLS, EHLO again. */
	if (smtp_client_state(s->client) == SMTP_CLIENT_TLS)
		smtp_client_restart_ehlo(s->client);
	mta_pump(s);
}

static void out_connect_failed(struct conn *c, int err)
{
	struct mta_session *s = c->proto;

	if (s == NULL)
		return;
	log_info("delivery_connection", "domain=%s mx=%s ip=%s result=connect_failed error=\"%s\"",
		 domain_name(s), session_mx_text(s), s->ip, strerror(-err));
	snprintf(s->last_error, sizeof(s->last_error), "%s [%s]: %s", session_mx_text(s), s->ip,
		 strerror(-err));
	s->last_status[0] = '\0';
	s->failed = true;
	mta_over(s);
}

static size_t out_input(struct conn *c, const char *data, size_t len)
{
	struct mta_session *s = c->proto;

	if (s == NULL)
		return len;
	idle_remove(s);
	smtp_client_feed(s->client, data, len);
	mta_pump(s);
	return len;
}

static void out_timeout(struct conn *c, enum worker_timer_class cls)
{
	struct mta_session *s = c->proto;

	if (s == NULL) {
		conn_close(c);      /* the flush mta_over allowed is stuck */
		return;
	}
	switch (s->state) {
	case MTA_IDLE:
		idle_remove(s);
		smtp_client_quit(s->client);
		mta_pump(s);
		return;
	case MTA_CONNECTING:
		log_info("delivery_connection", "domain=%s ip=%s result=connect_timeout", domain_name(s), s->ip);
		snprintf(s->last_error, sizeof(s->last_error), "%s [%s]: connection timed out",
			 session_mx_text(s), s->ip);
		s->last_status[0] = '\0';
		s->failed = true;
		s->timed_out = true;
		mta_over(s);
		return;
	case MTA_GREETING:
		s->timed_out = true;
		break;
	case MTA_STARTTLS:
		mta_tls_failed(s, "timeout in STARTTLS");
		break;
	default:
		break;
	}
	smtp_client_abort(s->client, s->state == MTA_BODY ? "timeout sending the message"
							   : "timeout waiting for the server");
	mta_pump(s);
}

/* out_close - the conn is going away under us (peer reset, worker stop). */
static void out_close(struct conn *c)
{
	struct mta_session *s = c->proto;

	if (s == NULL)
		return;
	bool in_tls = s->state == MTA_STARTTLS && !s->established;

	c->proto = NULL;
	s->conn = NULL;
	if (in_tls)
		mta_tls_failed(s, "connection lost during STARTTLS");
	if (s->client != NULL)
		smtp_client_abort(s->client, "connection lost");
	/* Before the first READY nothing was sent: the next address (or, in
	 * STARTTLS under "may", this one in clear), as for any failed host.
	 * After it, mail may have been in flight: the session ends here. */
	s->failed = true;
	mta_over(s);
}

static void out_shutdown(struct conn *c)
{
	struct mta_session *s = c->proto;

	if (s == NULL)
		return;
	s->dl->stopping = true;
	if (s->client == NULL) {
		conn_close(c);
	} else if (s->state == MTA_IDLE || smtp_client_state(s->client) == SMTP_CLIENT_READY) {
		idle_remove(s);
		smtp_client_quit(s->client);
		mta_pump(s);
	}
	/* A transaction in progress finishes; mta_next then quits. */
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
