/*
 * test_mta_session - transcripts of the real outbound session
 * (relay/delivery/mta_session.c) driven through delivery_conn_handler.
 *
 * Link seams: this executable is built from mta_session.c, dest.c,
 * scheduler.c, tls_policy.c and smtp_client.c with ringmail_mail and ringmail_dns only
 * (tests/CMakeLists.txt); everything else the session calls is faked here
 * and records what it was asked to do: conn_* (the socket: a transcript of
 * the bytes written per connection), worker_timer_arm (the deadline class
 * of each state), the TLS library, the config, the queue (item_complete,
 * item_fail_all, domain_*). The log is faked too (it wins over core's
 * log.o, which is then never pulled from the archive): the session logs
 * every mta_enter_state as event=mta_state ... to=<state>, which gives the
 * test the session's state without reaching into its struct.
 *
 * The test plays the ring and the server: mta_session_open() connects
 * (conn_connect), handler->open() is the connect completing, and
 * handler->input() / timeout() / close() / tls_ready() are the server's
 * replies and the loop's events.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_file.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "dane_delivery.h"
#include "mta_sts_delivery.h"
#include "mta_sts_enforce.h"
#include "queue.h"
#include "tls.h"
#include "tls_policy.h"
#include "tlsrpt_delivery.h"

/* Defined in mta_session.c, declared by no header. */
extern const struct conn_handler delivery_conn_handler;

#define DOMAIN "example.test"
#define OTHER "other.test"           /* a second domain hosted at the same MX */
#define MAX_CONNS 16
#define MAX_DONE 16
#define MAX_ITEMS 16

/* ---- the fake world ----------------------------------------------------- */

struct fake_conn {
	struct conn c;
	char ip[64];
	char out[16384];       /* every byte the session wrote */
	size_t out_len, seen;  /* seen: what expect_sent checked already */
	unsigned writes;       /* conn_write calls */
	bool flush_closed;     /* conn_close_after_flush */
	bool closed;           /* conn_close */
	unsigned start_tls;    /* conn_start_tls calls */
	int timer;             /* the class last armed on its phase timer */
};

/* What the session reported for one item. */
struct completion {
	struct qitem *it;
	bool fail_all;         /* item_fail_all rather than item_complete */
	size_t n;
	struct rcpt_result res[4];
	char mx[64], ip[64], tls[96];
};

static struct {
	struct fake_conn *conns[MAX_CONNS];
	size_t nconns;
	unsigned connect_calls;
	char connect_ip[MAX_CONNS][64];  /* every conn_connect, failed or not */
	bool fail_connect[MAX_CONNS];    /* by conn_connect call number */

	struct completion done[MAX_DONE];
	size_t ndone;

	unsigned kicks;
	unsigned defers;
	char defer_status[16];           /* "" for NULL */
	char defer_text[400];

	bool tls_new_fails;              /* tls_session_new returns NULL */
	bool tls_start_fails;            /* conn_start_tls sets tls_failed */
	unsigned tls_new_calls;
	enum tls_verify tls_verify;
	char tls_host[128];              /* "(null)" for NULL */

	char state[16];                  /* the session's state, from the log */
	char path[512];                  /* every state entered, space-separated */

	struct qitem *items[MAX_ITEMS];
	size_t nitems;
} fx;

static struct config cfg;
static struct config_domain policy;
static struct worker w;
static struct delivery dl;
static struct qdomain *d;
static struct dns_route *route;
static char fake_tls_config, fake_tls_session;

/* ---- fakes: log --------------------------------------------------------- */

int log_enabled(enum log_level level)
{
	return 1;     /* debug too: mta_enter_state logs at debug */
}

void log_msg(enum log_level level, const char *event, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (getenv("MTA_TEST_LOG") != NULL)
		fprintf(stderr, "event=%s %s\n", event, line);
	if (strcmp(event, "mta_state") != 0)
		return;
	const char *to = strstr(line, " to=");
	cr_assert_not_null(to, "mta_state line without to=: %s", line);
	snprintf(fx.state, sizeof(fx.state), "%s", to + 4);
	size_t len = strlen(fx.path);
	snprintf(fx.path + len, sizeof(fx.path) - len, "%s%s", len ? " " : "", fx.state);
}

void log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	abort();
}

void log_panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	abort();
}

char *log_quote(char *dst, size_t dst_size, const char *src, size_t len)
{
	snprintf(dst, dst_size, "\"%.*s\"", (int)len, src);
	return dst;
}

/* ---- fakes: conn and timers --------------------------------------------- */

static struct fake_conn *fake_of(struct conn *c)
{
	return container_of(c, struct fake_conn, c);
}

struct conn *conn_connect(struct worker *wk, const struct sockaddr *addr, socklen_t len,
			  const struct conn_handler *handler, void *proto,
			  enum worker_timer_class connect_timer)
{
	unsigned n = fx.connect_calls++;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;

	cr_assert_lt(n, MAX_CONNS, "too many conn_connect calls");
	cr_assert_eq(addr->sa_family, AF_INET);
	cr_assert_eq(len, sizeof(struct sockaddr_in));
	cr_assert_eq(ntohs(sin->sin_port), 25, "port: got %u, want 25", ntohs(sin->sin_port));
	inet_ntop(AF_INET, &sin->sin_addr, fx.connect_ip[n], sizeof(fx.connect_ip[n]));
	if (fx.fail_connect[n])
		return NULL;

	struct fake_conn *fc = calloc(1, sizeof(*fc));
	cr_assert_not_null(fc);
	fc->c.w = wk;
	fc->c.fd = 100 + (int)n;
	fc->c.refs = 1;
	fc->c.outbound = fc->c.connecting = true;
	fc->c.handler = handler;
	fc->c.proto = proto;
	fc->timer = (int)connect_timer;
	snprintf(fc->ip, sizeof(fc->ip), "%s", fx.connect_ip[n]);
	fx.conns[fx.nconns++] = fc;
	return &fc->c;
}

void conn_write(struct conn *c, const void *data, size_t len)
{
	struct fake_conn *fc = fake_of(c);

	cr_assert_not(fc->flush_closed || fc->closed, "conn_write after close on %s", fc->ip);
	cr_assert_lt(fc->out_len + len, sizeof(fc->out), "transcript overflow");
	memcpy(fc->out + fc->out_len, data, len);
	fc->out_len += len;
	fc->out[fc->out_len] = '\0';
	fc->writes++;
}

void conn_start_tls(struct conn *c, struct tls_session *session)
{
	struct fake_conn *fc = fake_of(c);

	fc->start_tls++;
	c->tls = session;
	c->tls_handshaking = true;
	if (fx.tls_start_fails)
		c->tls_failed = true;
}

void conn_close_after_flush(struct conn *c)
{
	fake_of(c)->flush_closed = true;
}

void conn_close(struct conn *c)
{
	fake_of(c)->closed = true;
}

void worker_timer_arm(struct worker *wk, struct worker_timer *t, enum worker_timer_class cls)
{
	struct conn *c = container_of(t, struct conn, phase_timer);

	t->cls = (int)cls;
	fake_of(c)->timer = (int)cls;
}

/* ---- fakes: TLS --------------------------------------------------------- */

struct tls_config *tls_config_new_client(const char *ca_path, char *err, size_t errlen)
{
	return (struct tls_config *)&fake_tls_config;
}

struct tls_config *tls_config_free(struct tls_config *tc)
{
	return NULL;
}

struct tls_session *tls_session_new(struct tls_config *tc, enum tls_verify verify, const char *hostname)
{
	cr_assert_eq(tc, (struct tls_config *)&fake_tls_config);
	fx.tls_new_calls++;
	fx.tls_verify = verify;
	snprintf(fx.tls_host, sizeof(fx.tls_host), "%s", hostname ? hostname : "(null)");
	return fx.tls_new_fails ? NULL : (struct tls_session *)&fake_tls_session;
}

/* Resumption: nothing is saved here (tls.c's own tests and
 * test_outbound_tls_resume.py cover it), so nothing is offered. */
struct tls_saved_session *tls_session_save(const struct tls_session *s)
{
	return NULL;
}

int tls_session_resume(struct tls_session *s, const struct tls_saved_session *saved)
{
	return -EINVAL;
}

int tls_session_set_dane(struct tls_session *s, const struct dane_tlsa *recs, size_t n)
{
	return n > 0 ? 0 : -EINVAL;
}

struct tls_session *tls_session_free(struct tls_session *s)
{
	return NULL;
}

/* DANE: fake_dane names the one MX host with usable TLSA records of d. */
static const char *fake_dane;
static const struct dane_tlsa fake_dane_record = { 3, 1, 1, 32, (const uint8_t *)"0123456789abcdef0123456789abcdef" };

static bool fake_dane_host(const struct qdomain *qd, const char *mx)
{
	return fake_dane != NULL && qd == d && mx != NULL && strcmp(mx, fake_dane) == 0;
}

enum config_tls_policy dane_delivery_tls(const struct delivery *x, const struct qdomain *qd, const char *mx,
					 enum config_tls_policy other)
{
	return fake_dane_host(qd, mx) ? CONFIG_TLS_DANE : other == CONFIG_TLS_DANE ? CONFIG_TLS_MAY : other;
}

bool dane_delivery_host_allowed(const struct delivery *x, const struct qdomain *qd, const char *mx)
{
	return true;
}

bool dane_delivery_host_usable(const struct delivery *x, const struct qdomain *qd, const char *mx)
{
	return fake_dane_host(qd, mx);
}

const struct dane_tlsa *dane_delivery_records(const struct delivery *x, const struct qdomain *qd, const char *mx,
					      size_t *n)
{
	*n = fake_dane_host(qd, mx) ? 1 : 0;
	return *n ? &fake_dane_record : NULL;
}

enum tls_applied dane_delivery_applied(const struct delivery *x, const struct qdomain *qd, const char *mx,
				       enum tls_applied other)
{
	return fake_dane_host(qd, mx) ? TLS_APPLIED_DANE : other;
}

struct tls_saved_session *tls_saved_session_free(struct tls_saved_session *saved)
{
	return NULL;
}

const char *tls_strerror(struct tls_session *s)
{
	return "fake handshake failure";
}

void tls_session_info(const struct tls_session *s, struct tls_info *info)
{
	*info = (struct tls_info){ "TLSv1.2", "FAKE-AES-GCM", 0, 1 };
}

/* ---- fakes: config ------------------------------------------------------ */

static struct config_domain other_policy;   /* OTHER's, for the reuse tests */

const struct config_domain *config_domain_policy(const struct config *c, const char *domain)
{
	cr_assert_eq(c, &cfg);
	if (strcmp(domain, OTHER) == 0)
		return &other_policy;
	if (strcmp(domain, "empty.test") == 0)
		return &policy;
	cr_assert_str_eq(domain, DOMAIN);
	return &policy;
}

/* The sender route's tls (config_sender_route_tls): route_tls for HOP
 * when route_tls_set. */
static enum config_tls_policy route_tls;
static bool route_tls_set;

bool config_sender_route_tls(const struct config *c, const char *hop, enum config_tls_policy *out)
{
	cr_assert_eq(c, &cfg);
	if (!route_tls_set || hop == NULL || strcmp(hop, "[relay.provider.test]:587") != 0)
		return false;
	*out = route_tls;
	return true;
}

const char *config_tls_policy_name(enum config_tls_policy p)
{
	static const char *const names[] = { "none", "may", "encrypt", "verify", "implicit", "dane" };
	return names[p];
}

/* ---- fakes: MTA-STS (mta_sts_delivery.c), driven by fake_sts ---------- */

static const struct mta_sts_policy *fake_sts;   /* d's policy; NULL = none */

enum config_tls_policy mta_sts_delivery_tls(const struct delivery *x, const struct qdomain *qd,
					    enum config_tls_policy configured)
{
	return fake_sts != NULL && fake_sts->mode == MTA_STS_MODE_ENFORCE && qd == d ? CONFIG_TLS_VERIFY
										       : configured;
}

bool mta_sts_delivery_host_allowed(const struct delivery *x, const struct qdomain *qd, const char *mx)
{
	return fake_sts == NULL || qd != d || mta_sts_enforce_host(CONFIG_TLS_MAY, false, fake_sts, mx).allowed;
}

enum tls_applied mta_sts_delivery_applied(const struct delivery *x, const struct qdomain *qd,
					  enum config_tls_policy configured)
{
	if (fake_sts != NULL && qd == d)
		return fake_sts->mode == MTA_STS_MODE_ENFORCE ? TLS_APPLIED_MTA_STS : TLS_APPLIED_MTA_STS_TESTING;
	return TLS_APPLIED_OPPORTUNISTIC;
}

const char *tls_applied_name(enum tls_applied p)
{
	return p == TLS_APPLIED_MTA_STS ? "mta-sts" : "other";
}

/* ---- fakes: TLS-RPT ------------------------------------------------------ */

/* The results the session reported, in order (tlsrpt_delivery.h). */
static enum tlsrpt_result tlsrpt_seen[16];
static size_t tlsrpt_seen_count;

bool tlsrpt_delivery_tlsa(const struct delivery *x, const struct qdomain *qd, const char *mx,
			  enum tlsrpt_result result, const struct tlsrpt_where *where)
{
	(void)x;
	(void)qd;
	(void)mx;
	(void)result;
	(void)where;
	return false;      /* the fakes have no TLSA records: counted as below */
}

void tlsrpt_delivery_sts_or_none(const struct delivery *x, const struct qdomain *qd, enum tlsrpt_result result,
				 const struct tlsrpt_where *where)
{
	(void)x;
	(void)qd;
	(void)where;
	if (tlsrpt_seen_count < sizeof(tlsrpt_seen) / sizeof(tlsrpt_seen[0]))
		tlsrpt_seen[tlsrpt_seen_count++] = result;
}

enum tlsrpt_result tlsrpt_delivery_cert_result(enum tls_cert_problem p)
{
	return p == TLS_CERT_NOT_TRUSTED ? TLSRPT_CERTIFICATE_NOT_TRUSTED : TLSRPT_VALIDATION_FAILURE;
}

enum tls_cert_problem tls_cert_problem_of(const struct tls_session *s)
{
	(void)s;
	return TLS_CERT_NOT_TRUSTED;
}

/* ---- fakes: the queue --------------------------------------------------- */

uint64_t delivery_rng_next(struct delivery *x)
{
	return 0x9e3779b97f4a7c15ULL;
}

void item_set_state(struct qitem *it, enum qstate state)
{
	it->state = (uint8_t)state;
}

void rcpt_result_set(struct rcpt_result *r, enum smtp_outcome outcome, int code, bool local,
		     const char *status, const char *text)
{
	*r = (struct rcpt_result){ .outcome = outcome, .code = code, .local = local };
	snprintf(r->status, sizeof(r->status), "%s", status);
	snprintf(r->text, sizeof(r->text), "%s", text);
}

static struct completion *completion_new(struct qitem *it)
{
	cr_assert_lt(fx.ndone, MAX_DONE);
	cr_assert_leq(it->count, 4);
	struct completion *e = &fx.done[fx.ndone++];
	e->it = it;
	e->n = it->count;
	return e;
}

void item_complete(struct delivery *x, struct qitem *it, const struct rcpt_result *res,
		   const char *mx, const char *ip, const char *tls)
{
	struct completion *e = completion_new(it);

	cr_assert_eq(x, &dl);
	memcpy(e->res, res, it->count * sizeof(*res));
	snprintf(e->mx, sizeof(e->mx), "%s", mx ? mx : "(null)");
	snprintf(e->ip, sizeof(e->ip), "%s", ip ? ip : "(null)");
	snprintf(e->tls, sizeof(e->tls), "%s", tls ? tls : "(null)");
}

void item_fail_all(struct delivery *x, struct qitem *it, enum smtp_outcome outcome, int code,
		   const char *status, const char *text)
{
	struct completion *e = completion_new(it);

	e->fail_all = true;
	for (uint32_t i = 0; i < it->count; i++)
		rcpt_result_set(&e->res[i], outcome, code, true, status, text);
}

struct qitem *domain_pop_ready(struct qdomain *qd)
{
	struct qitem *it = qd->ready_head;

	if (it == NULL)
		return NULL;
	qd->ready_head = it->next;
	if (qd->ready_head == NULL)
		qd->ready_tail = NULL;
	else
		qd->ready_head->prev = NULL;
	it->next = it->prev = NULL;
	qd->ready_count--;
	item_set_state(it, QSTATE_NEW);
	return it;
}

void domain_kick(struct delivery *x, struct qdomain *qd)
{
	fx.kicks++;
}

/* No shaping rules in these tests: never suspended. */
bool shaping_domain_parked(struct delivery *x, struct qdomain *qd)
{
	(void)x;
	(void)qd;
	return false;
}

/* No shaping limits nor sources either: everything is admitted, the
 * policy's numbers stand (shaping_delivery.c's own tests are end to end). */
struct conn *conn_connect_from(struct worker *wk, const struct sockaddr *addr, socklen_t len,
			       const struct sockaddr *source, socklen_t source_len,
			       const struct conn_handler *handler, void *proto,
			       enum worker_timer_class connect_timer)
{
	cr_assert_null(source, "no source is configured here");
	return conn_connect(wk, addr, len, handler, proto, connect_timer);
}

bool shaping_connection_admit(struct delivery *x, struct qdomain *qd, struct shaping_hold *hold)
{
	*hold = (struct shaping_hold){ -1, -1, -1, 0, false };
	return true;
}

void shaping_connection_connected(struct shaping_hold *hold)
{
	hold->rate_taken = false;
}

void shaping_connection_release(struct delivery *x, struct shaping_hold *hold)
{
	cr_assert(hold->site_slot < 0 && hold->entry_slot < 0);
}

bool shaping_session_fits(struct delivery *x, struct qdomain *qd, const struct shaping_hold *hold)
{
	return true;
}

bool shaping_session_wanted(struct delivery *x, const struct shaping_hold *hold)
{
	return false;
}

bool shaping_message_admit(struct delivery *x, struct qdomain *qd, const struct shaping_hold *hold)
{
	return true;
}

unsigned shaping_max_messages(struct delivery *x, struct qdomain *qd, const struct shaping_hold *hold, unsigned limit)
{
	return limit;
}

unsigned shaping_max_recipients(struct delivery *x, struct qdomain *qd, unsigned limit)
{
	return limit;
}

const struct shaping_source *shaping_source_of(struct delivery *x, const struct shaping_hold *hold)
{
	return NULL;
}

bool shaping_source_spent(struct delivery *x, const struct shaping_hold *hold)
{
	return false;
}

void shaping_source_sent(struct delivery *x, const struct shaping_hold *hold)
{
}

bool shaping_source_suspended(struct delivery *x, const struct shaping_hold *hold)
{
	return false;
}

void shaping_on_connection_reply(struct delivery *x, struct qdomain *qd, const struct shaping_hold *hold, int code,
				 const char *status, const char *text)
{
}

void item_split(struct delivery *x, struct qitem *it, uint32_t count)
{
	cr_assert_geq(count, it->count, "the fakes' items fit the policy");
}

bool domain_park_resting(struct delivery *x, struct qdomain *qd, const struct dns_route *r)
{
	return false;     /* delivery.c's; the timeouts here are a host's, not a blip */
}

void domain_defer_ready(struct delivery *x, struct qdomain *qd, const char *status, const char *text)
{
	fx.defers++;
	snprintf(fx.defer_status, sizeof(fx.defer_status), "%s", status ? status : "");
	snprintf(fx.defer_text, sizeof(fx.defer_text), "%s", text);
}

/* ---- building the world ------------------------------------------------- */

static const char body[] = "Subject: hi\r\n\r\nhello\r\n";   /* 22 bytes */
static struct qrcpt rcpts[] = {
	{ "r1@" DOMAIN, DOMAIN, NULL, 0 },
	{ "r2@" DOMAIN, DOMAIN, NULL, 0 },
	{ "r3@" DOMAIN, DOMAIN, NULL, 0 },
};
static struct qmsg msg;
static struct qbody msg_body;

/* add_item - an item of n recipients of msg, at the end of d's ready list. */
static struct qitem *add_item(uint32_t n)
{
	struct qitem *it = calloc(1, sizeof(*it) + n * sizeof(uint32_t));

	cr_assert_not_null(it);
	cr_assert_lt(fx.nitems, MAX_ITEMS);
	fx.items[fx.nitems++] = it;
	it->d = d;
	it->msg = &msg;
	it->body = &msg_body;
	it->count = n;
	for (uint32_t i = 0; i < n; i++)
		it->idx[i] = i;
	it->prev = d->ready_tail;
	if (d->ready_tail)
		d->ready_tail->next = it;
	else
		d->ready_head = it;
	d->ready_tail = it;
	d->ready_count++;
	it->state = QSTATE_READY;
	return it;
}

/* make_route - hosts mx1, mx2 ... of DOMAIN with addrs[i] IPv4 addresses
 * each: 192.0.2.11, .12 for mx1, 192.0.2.21 ... for mx2. */
static struct dns_route *make_route(size_t nhosts, const size_t *addrs)
{
	struct dns_route *r = calloc(1, sizeof(*r));

	cr_assert_not_null(r);
	r->refs = 1;
	r->status = DNS_ROUTE_OK;
	r->host_count = nhosts;
	r->hosts = calloc(nhosts, sizeof(*r->hosts));
	for (size_t i = 0; i < nhosts; i++) {
		struct dns_host *h = &r->hosts[i];
		char name[64];
		snprintf(name, sizeof(name), "mx%zu." DOMAIN, i + 1);
		h->name = strdup(name);
		h->preference = 10 * (int)(i + 1);
		h->port = 25;
		h->addr_count = addrs[i];
		h->addrs = calloc(addrs[i] ? addrs[i] : 1, sizeof(*h->addrs));
		for (size_t j = 0; j < addrs[i]; j++) {
			h->addrs[j].sin.sin_family = AF_INET;
			h->addrs[j].sin.sin_port = htons(25);
			h->addrs[j].sin.sin_addr.s_addr = htonl(0xc0000200u + 10 * (i + 1) + j + 1);
		}
	}
	return r;
}

static void world_init(void)
{
	tlsrpt_seen_count = 0;
	memset(&fx, 0, sizeof(fx));
	fake_sts = NULL;
	memset(&w, 0, sizeof(w));
	memset(&dl, 0, sizeof(dl));
	cfg = (struct config){ .hostname = "relay.test", .tls_ca_file = "", .serial = 1 };
	policy = (struct config_domain){ .name = "", .max_connections = 10,
		.max_messages_per_connection = 100, .max_recipients_per_transaction = 50,
		.tls = CONFIG_TLS_NONE };
	msg = (struct qmsg){ .queue_id = "Q1", .sender = "s@o.test", .rcpt_count = 3,
		.rcpts = rcpts, .body_len = sizeof(body) - 1 };
	msg_body.len = sizeof(body) - 1;
	msg_body.data = body;
	w.cfg = &cfg;
	w.now_ms = 1000000;
	w.delivery = &dl;
	dl.w = &w;
	dl.policy_serial = cfg.serial;
	dl.domain_retry = (struct retry_policy)RETRY_POLICY_DEFAULT;
	dl.retry = (struct retry_policy)RETRY_POLICY_DEFAULT;
	dl.max_per_address = 10;
	dl.max_total = 100;
	cfg.address_backoff_ms = 5000;
	cfg.domain_backoff_ms = 60000;
	d = calloc(1, sizeof(*d) + sizeof(DOMAIN));
	cr_assert_not_null(d);
	d->dl = &dl;
	d->window = INITIAL_WINDOW;
	d->items.next = d->items.prev = &d->items;
	memcpy(d->name, DOMAIN, sizeof(DOMAIN));
	route = NULL;
	route_tls_set = false;
}

/* pool - the first pooled session at any address, or NULL. */
static struct mta_session *pool(void)
{
	for (size_t i = 0; i < dl.dest_buckets; i++)
		for (struct qdest *e = dl.dests[i]; e != NULL; e = e->hash_next)
			if (e->idle_head != NULL)
				return e->idle_head;
	return NULL;
}

/* take_work - a pooled session (at whichever address) takes d's work. */
static bool take_work(void)
{
	for (size_t i = 0; i < dl.dest_buckets; i++)
		for (struct qdest *e = dl.dests[i]; e != NULL; e = e->hash_next)
			if (e->idle_head != NULL)
				return mta_session_reuse(e, d);
	return false;
}

/* open_session - mta_session_open: true when it is connecting. */
static bool open_session(void)
{
	struct qdest *full = NULL;

	return mta_session_open(&dl, d, route, &full) == MTA_OPENED;
}

/* world_fini - end every session still alive (the conn goes away, as at
 * worker exit), check that nothing was left behind, free the world. */
static void world_fini(void)
{
	for (size_t i = 0; i < fx.nconns; i++) {
		struct conn *c = &fx.conns[i]->c;
		if (c->proto != NULL && !fx.conns[i]->closed)
			c->handler->close(c);
	}
	if (d != NULL) {
		cr_expect_eq(d->active, 0, "sessions left: got %u, want 0", d->active);
		cr_expect_null(pool(), "a session left in the pool");
	}
	cr_expect_eq(dl.sessions_active, 0, "sessions_active: got %u, want 0", dl.sessions_active);
	if (route != NULL)
		cr_expect_eq(route->refs, 1, "route refs: got %d, want 1 (the test's)", route->refs);
	mta_session_tls_free(&dl);
	dests_free(&dl);
	route = dns_route_unref(route);
	for (size_t i = 0; i < fx.nconns; i++)
		free(fx.conns[i]);
	for (size_t i = 0; i < fx.nitems; i++)
		free(fx.items[i]);
	if (d != NULL)
		free(d->hop);
	free(d);
	d = NULL;
	memset(&fx, 0, sizeof(fx));
	cfg.auth = auth_file_free(cfg.auth);
}

TestSuite(mta_session, .init = world_init, .fini = world_fini);

/* ---- driving it --------------------------------------------------------- */

static struct fake_conn *last_conn(void)
{
	cr_assert_gt(fx.nconns, 0, "no connection was made");
	return fx.conns[fx.nconns - 1];
}

/* start - open a session over a route of nhosts hosts, and complete the
 * connect to the first address that took a socket. */
static struct fake_conn *start(size_t nhosts, const size_t *addrs)
{
	route = make_route(nhosts, addrs);
	cr_assert(open_session(), "mta_session_open: got false, want true");
	struct fake_conn *fc = last_conn();
	cr_assert_eq(fc->c.handler, &delivery_conn_handler);
	cr_assert_eq(fc->timer, WORKER_TIMER_OUT_CONNECT);
	fc->c.connecting = false;
	fc->c.handler->open(&fc->c);
	return fc;
}

/* opened - the connect of the newest conn completes. */
static struct fake_conn *opened(void)
{
	struct fake_conn *fc = last_conn();

	fc->c.connecting = false;
	fc->c.handler->open(&fc->c);
	return fc;
}

static void server(struct fake_conn *fc, const char *reply)
{
	size_t len = strlen(reply);
	size_t n = fc->c.handler->input(&fc->c, reply, len);

	cr_assert_eq(n, len, "input consumed: got %zu, want %zu", n, len);
}

/* expect_sent - the bytes written since the last check. */
static void expect_sent(struct fake_conn *fc, const char *want)
{
	const char *got = fc->out + fc->seen;

	cr_assert_str_eq(got, want, "sent to %s: got \"%s\", want \"%s\"", fc->ip, got, want);
	fc->seen = fc->out_len;
}

static void expect_state(const char *want)
{
	cr_assert_str_eq(fx.state, want, "state: got %s, want %s (path: %s)", fx.state, want, fx.path);
}

static void expect_timer(struct fake_conn *fc, enum worker_timer_class want)
{
	cr_assert_eq(fc->timer, (int)want, "timer class: got %d, want %d (state %s)", fc->timer,
		     (int)want, fx.state);
}

static void expect_rcpt(size_t done, size_t i, enum smtp_outcome outcome, int code,
			const char *status)
{
	cr_assert_gt(fx.ndone, done, "completions: got %zu, want more than %zu", fx.ndone, done);
	const struct rcpt_result *r = &fx.done[done].res[i];
	cr_assert_eq(r->outcome, outcome, "item %zu rcpt %zu outcome: got %d, want %d (%d %s %s)",
		     done, i, r->outcome, outcome, r->code, r->status, r->text);
	cr_assert_eq(r->code, code, "item %zu rcpt %zu code: got %d, want %d", done, i, r->code, code);
	cr_assert_str_eq(r->status, status, "item %zu rcpt %zu status: got %s, want %s", done, i,
			 r->status, status);
}

/* The session is over: its conn let go, the domain has no session. */
static void expect_over(struct fake_conn *fc)
{
	expect_state("closed");
	cr_assert(fc->flush_closed, "conn_close_after_flush not called on %s", fc->ip);
	cr_assert_null(fc->c.proto, "conn still points at the session");
	cr_assert_eq(d->active, 0, "d->active: got %u, want 0", d->active);
	cr_assert_null(pool());
}

static void expect_connects(unsigned want)
{
	cr_assert_eq(fx.connect_calls, want, "conn_connect calls: got %u, want %u", fx.connect_calls,
		     want);
}

static void expect_connect_ip(unsigned n, const char *want)
{
	cr_assert_gt(fx.connect_calls, n);
	cr_assert_str_eq(fx.connect_ip[n], want, "conn_connect #%u: got %s, want %s", n,
			 fx.connect_ip[n], want);
}

static const size_t one_addr[] = { 1 };
static const size_t two_addrs[] = { 2 };
static const size_t mx_2_1[] = { 2, 1 };

#define EHLO_PIPE "250-mx1." DOMAIN " hello\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n"
#define EHLO_PLAIN "250 mx1." DOMAIN " hello\r\n"
#define EHLO_FULL "250-mx1." DOMAIN " hello\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n" \
	"250-8BITMIME\r\n250-DSN\r\n250 ENHANCEDSTATUSCODES\r\n"
#define EHLO_TLS "250-mx1." DOMAIN " hello\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
#define GREETING "220 mx1." DOMAIN " ESMTP\r\n"
#define ENVELOPE_1 "MAIL FROM:<s@o.test> SIZE=22\r\nRCPT TO:<r1@" DOMAIN ">\r\nDATA\r\n"
#define ENVELOPE_1_NOSIZE "MAIL FROM:<s@o.test>\r\nRCPT TO:<r1@" DOMAIN ">\r\nDATA\r\n"
#define SENT_BODY "Subject: hi\r\n\r\nhello\r\n.\r\n"

/* greet - 220, EHLO, and the given EHLO reply. */
static void greet(struct fake_conn *fc, const char *ehlo_reply)
{
	expect_state("greeting");
	expect_timer(fc, WORKER_TIMER_OUT_GREETING);
	server(fc, GREETING);
	expect_sent(fc, "EHLO relay.test\r\n");
	expect_state("ehlo");
	expect_timer(fc, WORKER_TIMER_OUT_COMMAND);
	server(fc, ehlo_reply);
}

/* deliver_one - a pipelined one-recipient transaction that the server
 * accepts, from the envelope already written. */
static void deliver_one(struct fake_conn *fc, const char *envelope)
{
	unsigned writes = fc->writes;

	expect_sent(fc, envelope);
	expect_state("envelope");
	expect_timer(fc, WORKER_TIMER_OUT_COMMAND);
	server(fc, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n");
	expect_sent(fc, SENT_BODY);
	expect_state("body");
	expect_timer(fc, WORKER_TIMER_OUT_DATA);
	server(fc, "250 2.0.0 queued as X1\r\n");
	cr_assert_geq(fc->writes, writes + 1);
}

/* ---- 1. the happy path -------------------------------------------------- */

Test(mta_session, pipelined_delivery_idle_then_quit_at_max_messages)
{
	policy.max_messages_per_connection = 2;
	struct qitem *first = add_item(1);
	struct fake_conn *fc = start(1, one_addr);

	expect_connect_ip(0, "192.0.2.11");
	cr_assert_eq(d->active, 1);
	cr_assert_eq(dl.stats.connections, 1);
	greet(fc, EHLO_PIPE);
	/* MAIL, RCPT and DATA go out in one write. */
	cr_assert_eq(fc->writes, 2, "writes after EHLO reply: got %u, want 2", fc->writes);
	cr_assert_eq(first->state, QSTATE_ACTIVE, "item state: got %d, want ACTIVE", first->state);
	cr_assert_eq(d->window, INITIAL_WINDOW + 1, "window: got %u, want %u", d->window,
		     INITIAL_WINDOW + 1);
	deliver_one(fc, ENVELOPE_1);

	cr_assert_eq(fx.ndone, 1, "completions: got %zu, want 1", fx.ndone);
	cr_assert_eq(fx.done[0].it, first);
	cr_assert_not(fx.done[0].fail_all);
	expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
	cr_assert_str_eq(fx.done[0].mx, "mx1." DOMAIN, "mx: got %s", fx.done[0].mx);
	cr_assert_str_eq(fx.done[0].ip, "192.0.2.11", "ip: got %s", fx.done[0].ip);
	cr_assert_str_eq(fx.done[0].tls, "none", "tls: got %s", fx.done[0].tls);

	/* No item left: the pool, with the idle deadline. */
	expect_state("idle");
	expect_timer(fc, WORKER_TIMER_OUT_IDLE);
	cr_assert_not_null(pool(), "session not in the domain's pool");
	expect_sent(fc, "");

	/* Work arrives: the pooled session takes it. */
	struct qitem *second = add_item(1);
	cr_assert(take_work());
	cr_assert_null(pool());
	deliver_one(fc, ENVELOPE_1);
	cr_assert_eq(fx.ndone, 2);
	cr_assert_eq(fx.done[1].it, second);
	expect_rcpt(1, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");

	/* max_messages_per_connection reached: QUIT. */
	expect_sent(fc, "QUIT\r\n");
	expect_state("quit");
	expect_timer(fc, WORKER_TIMER_OUT_COMMAND);
	cr_assert_not(take_work(), "a quitting session took work");
	server(fc, "221 2.0.0 bye\r\n");
	expect_over(fc);
	expect_connects(1);
	cr_assert_eq(fx.defers, 0);
	cr_assert_eq(d->backoff.failures, 0);
	cr_assert_str_eq(fx.path, "connecting greeting ehlo envelope body idle ready envelope body quit closed",
			 "path: got \"%s\"", fx.path);
}

Test(mta_session, quits_at_max_messages_even_with_work_waiting)
{
	policy.max_messages_per_connection = 1;
	add_item(1);
	struct qitem *waiting = add_item(1);
	struct fake_conn *fc = start(1, one_addr);

	greet(fc, EHLO_PIPE);
	deliver_one(fc, ENVELOPE_1);
	cr_assert_eq(fx.ndone, 1);
	expect_sent(fc, "QUIT\r\n");
	expect_state("quit");
	cr_assert_eq(d->ready_head, waiting, "the second item left the ready list");
	unsigned kicks = fx.kicks;
	server(fc, "221 bye\r\n");
	expect_over(fc);
	cr_assert_gt(fx.kicks, kicks, "domain_kick not called after the session ended");
	cr_assert_eq(fx.ndone, 1);
}

/* ---- 2. per-recipient outcomes ------------------------------------------ */

Test(mta_session, per_recipient_outcomes)
{
	static const struct {
		const char *final;
		enum smtp_outcome outcome;
		int code;
		const char *status;
	} rows[] = {
		{ "250 2.0.0 queued\r\n", SMTP_OUTCOME_DELIVERED, 250, "2.0.0" },
		{ "451 4.3.0 try again later\r\n", SMTP_OUTCOME_DEFERRED, 451, "4.3.0" },
		{ "554 5.6.0 content rejected\r\n", SMTP_OUTCOME_BOUNCED, 554, "5.6.0" },
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		if (i > 0) {
			world_fini();
			world_init();
		}
		add_item(2);
		struct fake_conn *fc = start(1, one_addr);
		greet(fc, EHLO_FULL);
		expect_sent(fc, "MAIL FROM:<s@o.test> SIZE=22\r\nRCPT TO:<r1@" DOMAIN ">\r\n"
			    "RCPT TO:<r2@" DOMAIN ">\r\nDATA\r\n");
		server(fc, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n354 go\r\n");
		expect_sent(fc, SENT_BODY);
		cr_assert_eq(fx.ndone, 0, "row %zu: completed before the final reply", i);
		server(fc, rows[i].final);
		cr_assert_eq(fx.ndone, 1, "row %zu: completions: got %zu, want 1", i, fx.ndone);
		expect_rcpt(0, 0, rows[i].outcome, rows[i].code, rows[i].status);
		expect_rcpt(0, 1, SMTP_OUTCOME_BOUNCED, 550, "5.1.1");
		cr_assert_str_eq(fx.done[0].res[1].text, "no such user", "row %zu: text: got %s", i,
				 fx.done[0].res[1].text);
		/* A refused message does not end the connection. */
		expect_state("idle");
		expect_connects(1);
	}
}

Test(mta_session, refused_mail_defers_every_recipient_and_keeps_the_connection)
{
	add_item(2);
	struct fake_conn *fc = start(1, one_addr);

	greet(fc, EHLO_PLAIN);
	expect_sent(fc, "MAIL FROM:<s@o.test>\r\n");
	server(fc, "451 4.3.0 try later\r\n");
	cr_assert_eq(fx.ndone, 1);
	expect_rcpt(0, 0, SMTP_OUTCOME_DEFERRED, 451, "4.3.0");
	expect_rcpt(0, 1, SMTP_OUTCOME_DEFERRED, 451, "4.3.0");
	expect_state("idle");
	cr_assert_not(fc->flush_closed);
}

/* ---- 3. 421, next address, route failure -------------------------------- */

Test(mta_session, closing_421_mid_session_defers_and_ends)
{
	add_item(2);
	struct fake_conn *fc = start(1, two_addrs);

	greet(fc, EHLO_PLAIN);
	expect_sent(fc, "MAIL FROM:<s@o.test>\r\n");
	server(fc, "421 4.7.0 shutting down\r\n");
	cr_assert_eq(fx.ndone, 1);
	expect_rcpt(0, 0, SMTP_OUTCOME_DEFERRED, 421, "4.7.0");
	expect_rcpt(0, 1, SMTP_OUTCOME_DEFERRED, 421, "4.7.0");
	expect_over(fc);
	/* After READY the end of the connection is the end of the session. */
	expect_connects(1);
	cr_assert_eq(fx.defers, 0);
	cr_assert_eq(d->backoff.failures, 0);
}

Test(mta_session, greeting_421_walks_every_address_then_backs_off)
{
	static const char *const ips[] = { "192.0.2.11", "192.0.2.12", "192.0.2.21" };

	add_item(1);
	struct fake_conn *fc = start(2, mx_2_1);
	for (unsigned i = 0; i < 3; i++) {
		if (i > 0)
			fc = opened();
		expect_connects(i + 1);
		expect_connect_ip(i, ips[i]);
		expect_state("greeting");
		server(fc, "421 4.3.2 too busy\r\n");
		cr_assert(fc->flush_closed, "address %s: conn not closed", ips[i]);
		cr_assert_null(fc->c.proto);
		if (i < 2) {
			cr_assert_eq(fx.defers, 0, "deferred with address %u left", i + 1);
			expect_state("connecting");
			cr_assert_eq(d->active, 1);
		}
	}
	expect_connects(3);
	cr_assert_eq(fx.defers, 1, "domain_defer_ready calls: got %u, want 1", fx.defers);
	cr_assert_str_eq(fx.defer_status, "", "status: got \"%s\", want none", fx.defer_status);
	cr_assert_not_null(strstr(fx.defer_text, "no MX host reachable; last: mx2." DOMAIN
				  " [192.0.2.21]: 421"), "text: got \"%s\"", fx.defer_text);
	cr_assert_eq(d->backoff.failures, 1, "backoff failures: got %u, want 1", d->backoff.failures);
	cr_assert_gt(d->backoff.until_ms, w.now_ms);
	cr_assert_eq(dl.stats.connections, 3);
	cr_assert_eq(dl.stats.connect_failures, 3);
	cr_assert_eq(fx.ndone, 0, "an item was completed: the domain's ready items are deferred");
	expect_state("closed");
	cr_assert_eq(d->active, 0);
}

Test(mta_session, no_socket_skips_to_the_next_address)
{
	fx.fail_connect[0] = true;
	add_item(1);
	struct fake_conn *fc = start(1, two_addrs);

	expect_connects(2);
	expect_connect_ip(1, "192.0.2.12");
	cr_assert_eq(fx.nconns, 1);
	greet(fc, EHLO_PIPE);
	deliver_one(fc, ENVELOPE_1);
	expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
	cr_assert_str_eq(fx.done[0].ip, "192.0.2.12");
}

Test(mta_session, no_socket_anywhere_fails_the_open)
{
	fx.fail_connect[0] = fx.fail_connect[1] = fx.fail_connect[2] = true;
	route = make_route(2, mx_2_1);
	cr_assert_not(open_session(), "mta_session_open: got true, want false");
	expect_connects(3);
	cr_assert_eq(d->active, 0);
	cr_assert_eq(dl.sessions_active, 0);
	cr_assert_eq(route->refs, 1, "route refs: got %d, want 1", route->refs);
}

Test(mta_session, connect_failed_moves_to_the_next_address)
{
	add_item(1);
	route = make_route(1, two_addrs);
	cr_assert(open_session());
	struct fake_conn *fc = last_conn();
	fc->c.handler->connect_failed(&fc->c, -ECONNREFUSED);
	cr_assert(fc->flush_closed);
	expect_connects(2);
	expect_connect_ip(1, "192.0.2.12");
	fc = last_conn();
	fc->c.handler->connect_failed(&fc->c, -ECONNREFUSED);
	cr_assert_eq(fx.defers, 1);
	cr_assert_not_null(strstr(fx.defer_text, "[192.0.2.12]: Connection refused"),
			   "text: got \"%s\"", fx.defer_text);
	cr_assert_eq(d->backoff.failures, 1);
}

/* ---- 4. HELO ------------------------------------------------------------ */

Test(mta_session, helo_fallback_sends_no_esmtp_parameters)
{
	msg.eightbit = true;
	msg.envid = "ENV1";
	msg.ret = SPOOL_RET_FULL;
	rcpts[0].notify = SPOOL_NOTIFY_FAILURE;
	rcpts[0].orcpt = "rfc822;r1@" DOMAIN;
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);

	server(fc, GREETING);
	expect_sent(fc, "EHLO relay.test\r\n");
	server(fc, "502 5.5.1 command not recognized\r\n");
	expect_sent(fc, "HELO relay.test\r\n");
	expect_state("ehlo");
	expect_timer(fc, WORKER_TIMER_OUT_COMMAND);
	server(fc, "250 mx1." DOMAIN "\r\n");
	/* No PIPELINING: one command at a time, and no parameters at all. */
	expect_sent(fc, "MAIL FROM:<s@o.test>\r\n");
	expect_state("envelope");
	server(fc, "250 ok\r\n");
	expect_sent(fc, "RCPT TO:<r1@" DOMAIN ">\r\n");
	server(fc, "250 ok\r\n");
	expect_sent(fc, "DATA\r\n");
	server(fc, "354 go\r\n");
	expect_sent(fc, SENT_BODY);
	expect_state("body");
	server(fc, "250 ok\r\n");
	cr_assert_eq(fx.ndone, 1);
	expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
	expect_state("idle");
	rcpts[0].notify = 0;
	rcpts[0].orcpt = NULL;
}

/* The same message over EHLO: the parameters the HELO path left out. */
Test(mta_session, ehlo_sends_the_esmtp_parameters)
{
	msg.eightbit = true;
	msg.envid = "ENV1";
	msg.ret = SPOOL_RET_FULL;
	rcpts[0].notify = SPOOL_NOTIFY_FAILURE;
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);

	greet(fc, EHLO_FULL);
	const char *sent = fc->out + fc->seen;
	rcpts[0].notify = 0;
	cr_assert_not_null(strstr(sent, "SIZE=22"), "got \"%s\"", sent);
	cr_assert_not_null(strstr(sent, "BODY=8BITMIME"), "got \"%s\"", sent);
	cr_assert_not_null(strstr(sent, "RET=FULL"), "got \"%s\"", sent);
	cr_assert_not_null(strstr(sent, "ENVID=ENV1"), "got \"%s\"", sent);
	cr_assert_not_null(strstr(sent, "NOTIFY=FAILURE"), "got \"%s\"", sent);
}

/* ---- 5. STARTTLS under each policy -------------------------------------- */

static const char *const policy_names[] = { "none", "may", "encrypt", "verify" };

Test(mta_session, starttls_offered_and_completed)
{
	for (int p = CONFIG_TLS_NONE; p <= CONFIG_TLS_VERIFY; p++) {
		if (p > CONFIG_TLS_NONE) {
			world_fini();
			world_init();
		}
		policy.tls = (enum config_tls_policy)p;
		add_item(1);
		struct fake_conn *fc = start(1, one_addr);
		greet(fc, EHLO_TLS);
		if (p == CONFIG_TLS_NONE) {
			/* Never STARTTLS, even when offered. */
			deliver_one(fc, ENVELOPE_1_NOSIZE);
			cr_assert_eq(fx.tls_new_calls, 0, "none: tls_session_new called");
			cr_assert_eq(fc->start_tls, 0);
			cr_assert_str_eq(fx.done[0].tls, "none");
			continue;
		}
		expect_sent(fc, "STARTTLS\r\n");
		expect_state("starttls");
		expect_timer(fc, WORKER_TIMER_OUT_COMMAND);
		server(fc, "220 2.0.0 ready to start TLS\r\n");
		cr_assert_eq(fc->start_tls, 1, "%s: conn_start_tls calls: got %u, want 1",
			     policy_names[p], fc->start_tls);
		cr_assert_eq(fc->c.tls, (struct tls_session *)&fake_tls_session);
		cr_assert_eq(fx.tls_verify, p == CONFIG_TLS_VERIFY ? TLS_VERIFY_REQUIRED : TLS_VERIFY_NONE,
			     "%s: verify: got %d", policy_names[p], fx.tls_verify);
		cr_assert_str_eq(fx.tls_host, "mx1." DOMAIN, "%s: SNI: got %s", policy_names[p],
				 fx.tls_host);
		expect_state("starttls");
		expect_sent(fc, "");
		fc->c.handler->tls_ready(&fc->c, true);
		expect_sent(fc, "EHLO relay.test\r\n");
		expect_state("ehlo");
		/* STARTTLS is offered again over TLS: not sent twice. */
		server(fc, EHLO_TLS);
		deliver_one(fc, ENVELOPE_1_NOSIZE);
		cr_assert_eq(fx.ndone, 1, "%s: completions: got %zu", policy_names[p], fx.ndone);
		expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
		cr_assert_str_eq(fx.done[0].tls, "TLSv1.2/FAKE-AES-GCM", "%s: tls: got %s",
				 policy_names[p], fx.done[0].tls);
		cr_assert_eq(fc->start_tls, 1);
		expect_connects(1);
		expect_state("idle");
		/* TLS-RPT: one successful session. */
		cr_assert_eq(tlsrpt_seen_count, 1, "%s: TLS-RPT results: got %zu, want 1", policy_names[p],
			     tlsrpt_seen_count);
		cr_assert_eq(tlsrpt_seen[0], TLSRPT_SUCCESS);
	}
}

/* Not offered, or refused: "may" goes on in clear, encrypt and verify QUIT
 * and the host fails with 4.7.4. */
Test(mta_session, starttls_not_offered_or_refused)
{
	for (int refused = 0; refused <= 1; refused++) {
		for (int p = CONFIG_TLS_NONE; p <= CONFIG_TLS_VERIFY; p++) {
			if (refused || p > CONFIG_TLS_NONE) {
				world_fini();
				world_init();
			}
			const char *row = policy_names[p];
			policy.tls = (enum config_tls_policy)p;
			add_item(1);
			struct fake_conn *fc = start(1, one_addr);
			if (refused && p != CONFIG_TLS_NONE) {
				greet(fc, EHLO_TLS);
				expect_sent(fc, "STARTTLS\r\n");
				server(fc, "454 4.7.0 TLS not available\r\n");
			} else {
				greet(fc, refused ? EHLO_TLS : EHLO_PIPE);
			}
			cr_assert_eq(fc->start_tls, 0, "%s: conn_start_tls called", row);
			if (p != CONFIG_TLS_NONE) {
				cr_assert_eq(tlsrpt_seen_count, 1, "%s refused=%d: TLS-RPT results: got %zu, want 1",
					     row, refused, tlsrpt_seen_count);
				cr_assert_eq(tlsrpt_seen[0], TLSRPT_STARTTLS_NOT_SUPPORTED);
			}
			if (!tls_policy_required(policy.tls)) {
				deliver_one(fc, refused ? ENVELOPE_1_NOSIZE : ENVELOPE_1);
				expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
				cr_assert_str_eq(fx.done[0].tls, "none");
				cr_assert_eq(fx.defers, 0);
				continue;
			}
			expect_sent(fc, "QUIT\r\n");
			expect_state("quit");
			server(fc, "221 2.0.0 bye\r\n");
			expect_over(fc);
			cr_assert_eq(fx.ndone, 0, "%s: mail went out in clear", row);
			cr_assert_eq(fx.defers, 1, "%s refused=%d: defers: got %u, want 1", row, refused,
				     fx.defers);
			cr_assert_str_eq(fx.defer_status, "4.7.4", "%s refused=%d: status: got \"%s\", want 4.7.4",
					 row, refused, fx.defer_status);
			const char *why = refused ? "STARTTLS refused: 454" :
					  "TLS required but STARTTLS not offered";
			cr_assert_not_null(strstr(fx.defer_text, why), "%s: text: got \"%s\", want \"%s\"",
					   row, fx.defer_text, why);
			cr_assert_eq(d->backoff.failures, 1);
		}
	}
}

/* The handshake fails (or cannot start): "may" reconnects to the same
 * address and does not try STARTTLS there; encrypt and verify go to the
 * next address and end with 4.7.5. */
Test(mta_session, starttls_handshake_failure)
{
	enum how { HANDSHAKE, SESSION_NEW, START_TLS };
	static const char *const how_names[] = { "tls_ready(false)", "tls_session_new NULL",
						 "conn_start_tls failed" };

	for (int how = HANDSHAKE; how <= START_TLS; how++) {
		for (int p = CONFIG_TLS_MAY; p <= CONFIG_TLS_VERIFY; p++) {
			if (how != HANDSHAKE || p != CONFIG_TLS_MAY) {
				world_fini();
				world_init();
			}
			policy.tls = (enum config_tls_policy)p;
			fx.tls_new_fails = how == SESSION_NEW;
			fx.tls_start_fails = how == START_TLS;
			add_item(1);
			struct fake_conn *fc = start(1, two_addrs);
			for (unsigned attempt = 0; attempt < 2; attempt++) {
				if (attempt > 0)
					fc = opened();
				greet(fc, EHLO_TLS);
				if (p == CONFIG_TLS_MAY && attempt == 1)
					break;
				expect_sent(fc, "STARTTLS\r\n");
				server(fc, "220 2.0.0 go ahead\r\n");
				if (how == HANDSHAKE) {
					cr_assert_eq(fc->start_tls, 1);
					fc->c.handler->tls_ready(&fc->c, false);
				}
				cr_assert(fc->flush_closed, "%s %s: conn not closed", policy_names[p],
					  how_names[how]);
				cr_assert_null(fc->c.proto);
				expect_connects(2);
			}
			if (p == CONFIG_TLS_MAY) {
				/* The same address again, in clear. */
				expect_connects(2);
				expect_connect_ip(1, "192.0.2.11");
				deliver_one(fc, ENVELOPE_1_NOSIZE);
				expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
				cr_assert_eq(fc->start_tls, 0);
				cr_assert_eq(fx.defers, 0);
				/* TLS-RPT: the failed handshake; the clear retry is no TLS session. */
				cr_assert_eq(tlsrpt_seen_count, 1, "may %s: TLS-RPT results: got %zu", how_names[how],
					     tlsrpt_seen_count);
				cr_assert_eq(tlsrpt_seen[0], TLSRPT_CERTIFICATE_NOT_TRUSTED);
				continue;
			}
			cr_assert_eq(tlsrpt_seen_count, 2, "%s %s: TLS-RPT results: got %zu, want 2", policy_names[p],
				     how_names[how], tlsrpt_seen_count);
			expect_connects(2);
			expect_connect_ip(1, "192.0.2.12");
			cr_assert_eq(fx.ndone, 0);
			cr_assert_eq(fx.defers, 1, "%s %s: defers: got %u, want 1", policy_names[p],
				     how_names[how], fx.defers);
			cr_assert_str_eq(fx.defer_status, "4.7.5", "%s %s: status: got \"%s\", want 4.7.5",
					 policy_names[p], how_names[how], fx.defer_status);
			cr_assert_not_null(strstr(fx.defer_text, "[192.0.2.12]: TLS failed: "),
					   "%s %s: text: got \"%s\"", policy_names[p], how_names[how],
					   fx.defer_text);
			cr_assert_eq(d->backoff.failures, 1);
			cr_assert_eq(d->active, 0);
		}
	}
}

Test(mta_session, verify_without_a_host_name_fails_tls)
{
	policy.tls = CONFIG_TLS_VERIFY;
	add_item(1);
	route = make_route(1, one_addr);
	free(route->hosts[0].name);
	route->hosts[0].name = strdup("[192.0.2.11]");
	cr_assert(open_session());
	struct fake_conn *fc = opened();
	fx.tls_new_fails = true;     /* as the real one does without a name */
	greet(fc, EHLO_TLS);
	expect_sent(fc, "STARTTLS\r\n");
	server(fc, "220 go ahead\r\n");
	cr_assert_str_eq(fx.tls_host, "(null)", "SNI for a literal: got %s", fx.tls_host);
	cr_assert_eq(fx.tls_verify, TLS_VERIFY_REQUIRED);
	cr_assert_eq(fx.defers, 1);
	cr_assert_str_eq(fx.defer_status, "4.7.5");
	cr_assert_not_null(strstr(fx.defer_text, "no host name to verify"), "text: got \"%s\"",
			   fx.defer_text);
}

Test(mta_session, connection_lost_in_starttls_under_may_retries_in_clear)
{
	policy.tls = CONFIG_TLS_MAY;
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);

	greet(fc, EHLO_TLS);
	expect_sent(fc, "STARTTLS\r\n");
	server(fc, "220 go ahead\r\n");
	fc->c.handler->close(&fc->c);
	expect_connects(2);
	expect_connect_ip(1, "192.0.2.11");
	fc = opened();
	greet(fc, EHLO_TLS);
	deliver_one(fc, ENVELOPE_1_NOSIZE);
	expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
}

/* DANE: an MX host with usable TLSA records gets TLS_VERIFY_DANE, and
 * without STARTTLS it is refused with the RFC 8460 result type. */
Test(mta_session, dane_host_requires_starttls_and_dane_verify)
{
	policy.tls = CONFIG_TLS_MAY;
	fake_dane = "mx1." DOMAIN;
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);
	greet(fc, EHLO_TLS);
	expect_sent(fc, "STARTTLS\r\n");
	server(fc, "220 go ahead\r\n");
	cr_assert_eq(fx.tls_verify, TLS_VERIFY_DANE, "got %d", fx.tls_verify);
	cr_assert_str_eq(fx.tls_host, "mx1." DOMAIN);
}

Test(mta_session, dane_host_without_starttls_is_refused)
{
	policy.tls = CONFIG_TLS_MAY;
	fake_dane = "mx1." DOMAIN;
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);
	greet(fc, EHLO_PLAIN);
	expect_sent(fc, "QUIT\r\n");
	server(fc, "221 2.0.0 bye\r\n");
	expect_over(fc);
	cr_assert_eq(fx.ndone, 0, "mail went out in clear");
	cr_assert_eq(fx.defers, 1);
	cr_assert_str_eq(fx.defer_status, "4.7.4");
	cr_assert_not_null(strstr(fx.defer_text, "DANE policy: TLS required but STARTTLS not offered"),
			   "text: got \"%s\"", fx.defer_text);
	cr_assert_not_null(strstr(fx.defer_text, "result-type=starttls-not-supported"), "text: got \"%s\"",
			   fx.defer_text);
}

/* ---- 6. timeouts -------------------------------------------------------- */

Test(mta_session, timeout_in_greeting_moves_to_the_next_address)
{
	add_item(1);
	struct fake_conn *fc = start(1, two_addrs);

	expect_state("greeting");
	fc->c.handler->timeout(&fc->c, WORKER_TIMER_OUT_GREETING);
	cr_assert(fc->flush_closed);
	cr_assert_null(fc->c.proto);
	expect_connects(2);
	expect_connect_ip(1, "192.0.2.12");
	expect_state("connecting");
	fc = opened();
	greet(fc, EHLO_PIPE);
	deliver_one(fc, ENVELOPE_1);
	expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
}

Test(mta_session, timeout_in_connect_moves_to_the_next_address)
{
	add_item(1);
	route = make_route(1, two_addrs);
	cr_assert(open_session());
	struct fake_conn *fc = last_conn();
	expect_state("connecting");
	fc->c.handler->timeout(&fc->c, WORKER_TIMER_OUT_CONNECT);
	cr_assert(fc->flush_closed);
	expect_connects(2);
	expect_connect_ip(1, "192.0.2.12");
}

Test(mta_session, timeout_in_the_body_defers_the_recipients)
{
	add_item(2);
	struct fake_conn *fc = start(1, two_addrs);

	greet(fc, EHLO_PIPE);
	server(fc, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	expect_state("body");
	fc->c.handler->timeout(&fc->c, WORKER_TIMER_OUT_DATA);
	cr_assert_eq(fx.ndone, 1);
	for (size_t i = 0; i < 2; i++) {
		expect_rcpt(0, i, SMTP_OUTCOME_DEFERRED, 0, "4.4.2");
		cr_assert_str_eq(fx.done[0].res[i].text, "timeout sending the message",
				 "text: got \"%s\"", fx.done[0].res[i].text);
	}
	expect_over(fc);
	expect_connects(1);
	cr_assert_eq(fx.defers, 0);
}

Test(mta_session, timeout_in_the_envelope_defers_the_recipients)
{
	add_item(1);
	struct fake_conn *fc = start(1, two_addrs);

	greet(fc, EHLO_PLAIN);
	expect_sent(fc, "MAIL FROM:<s@o.test>\r\n");
	fc->c.handler->timeout(&fc->c, WORKER_TIMER_OUT_COMMAND);
	cr_assert_eq(fx.ndone, 1);
	expect_rcpt(0, 0, SMTP_OUTCOME_DEFERRED, 0, "4.4.2");
	cr_assert_str_eq(fx.done[0].res[0].text, "timeout waiting for the server");
	expect_over(fc);
	expect_connects(1);
}

Test(mta_session, timeout_in_idle_quits)
{
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);

	greet(fc, EHLO_PIPE);
	deliver_one(fc, ENVELOPE_1);
	expect_state("idle");
	cr_assert_not_null(pool());
	fc->c.handler->timeout(&fc->c, WORKER_TIMER_OUT_IDLE);
	expect_sent(fc, "QUIT\r\n");
	expect_state("quit");
	expect_timer(fc, WORKER_TIMER_OUT_COMMAND);
	cr_assert_null(pool(), "a quitting session is still in the pool");
	server(fc, "221 bye\r\n");
	expect_over(fc);
	cr_assert_eq(fx.defers, 0);
	cr_assert_eq(fx.ndone, 1);
}

/* ---- 7. the conn goes away ---------------------------------------------- */

Test(mta_session, connection_lost_in_a_transaction)
{
	add_item(2);
	struct fake_conn *fc = start(1, two_addrs);

	greet(fc, EHLO_PIPE);
	expect_state("envelope");
	fc->c.handler->close(&fc->c);
	cr_assert_eq(fx.ndone, 1);
	for (size_t i = 0; i < 2; i++) {
		expect_rcpt(0, i, SMTP_OUTCOME_DEFERRED, 0, "4.4.2");
		cr_assert_str_eq(fx.done[0].res[i].text, "connection lost");
	}
	expect_state("closed");
	cr_assert_null(fc->c.proto);
	/* The conn was going away by itself: not closed again. */
	cr_assert_not(fc->flush_closed);
	cr_assert_eq(d->active, 0);
	expect_connects(1);
	cr_assert_eq(fx.defers, 0);
}

Test(mta_session, connection_lost_while_idle)
{
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);

	greet(fc, EHLO_PIPE);
	deliver_one(fc, ENVELOPE_1);
	expect_state("idle");
	fc->c.handler->close(&fc->c);
	expect_state("closed");
	cr_assert_null(pool());
	cr_assert_eq(d->active, 0);
	cr_assert_eq(fx.ndone, 1);
	expect_connects(1);
}

/* The peer closes (EOF or reset) before the first READY: the session moves
 * on to the next address, and when none is left the domain backs off. (It
 * used to end at once, and domain_kick reopened the same first address.) */
Test(mta_session, connection_lost_in_greeting_moves_to_the_next_address)
{
	add_item(1);
	struct fake_conn *fc = start(1, two_addrs);

	expect_state("greeting");
	fc->c.handler->close(&fc->c);
	expect_connects(2);
	expect_connect_ip(1, "192.0.2.12");
	fc = opened();
	fc->c.handler->close(&fc->c);
	cr_assert_eq(fx.defers, 1, "domain_defer_ready calls: got %u, want 1", fx.defers);
	cr_assert_eq(d->backoff.failures, 1, "backoff failures: got %u, want 1", d->backoff.failures);
}

/* A connect timeout is the reason the host failed: the deferral names the
 * last host that timed out, not an earlier host's TLS failure (it used to
 * keep the previous reason, here mx1's 4.7.5). */
Test(mta_session, connect_timeout_is_the_last_error)
{
	static const size_t one_each[] = { 1, 1 };

	policy.tls = CONFIG_TLS_ENCRYPT;
	add_item(1);
	struct fake_conn *fc = start(2, one_each);
	greet(fc, EHLO_TLS);
	expect_sent(fc, "STARTTLS\r\n");
	server(fc, "220 go ahead\r\n");
	fc->c.handler->tls_ready(&fc->c, false);
	expect_connects(2);
	expect_connect_ip(1, "192.0.2.21");
	fc = last_conn();
	fc->c.handler->timeout(&fc->c, WORKER_TIMER_OUT_CONNECT);
	cr_assert_eq(fx.defers, 1);
	cr_assert_not_null(strstr(fx.defer_text, "[192.0.2.21]"),
			   "text: got \"%s\", want the last host's (192.0.2.21) reason", fx.defer_text);
	cr_assert_str_neq(fx.defer_status, "4.7.5", "status: got \"%s\", want not 4.7.5 (mx2 did no TLS)",
			  fx.defer_status);
}

/* ---- 8. addresses: limits, round robin, reuse, rest (issue 25) ----------- */

static struct qrcpt other_rcpts[] = { { "x1@" OTHER, OTHER, NULL, 0 } };
static struct qmsg other_msg;

#define ENVELOPE_OTHER "MAIL FROM:<s@o.test> SIZE=22\r\nRCPT TO:<x1@" OTHER ">\r\nDATA\r\n"

/* other_domain - OTHER, with one ready item of one recipient, routed
 * through the same route as DOMAIN (its MX shares the address). */
static struct qdomain *other_domain(struct qitem **item)
{
	struct qdomain *od = calloc(1, sizeof(*od) + sizeof(OTHER));
	struct qitem *it = calloc(1, sizeof(*it) + sizeof(uint32_t));

	cr_assert(od != NULL && it != NULL);
	other_policy = policy;
	other_msg = msg;
	other_msg.rcpts = other_rcpts;
	other_msg.rcpt_count = 1;
	od->dl = &dl;
	od->window = INITIAL_WINDOW;
	od->items.next = od->items.prev = &od->items;
	memcpy(od->name, OTHER, sizeof(OTHER));
	od->route = dns_route_ref(route);
	it->d = od;
	it->msg = &other_msg;
	it->body = &msg_body;
	it->count = 1;
	it->state = QSTATE_READY;
	od->ready_head = od->ready_tail = it;
	od->ready_count = 1;
	cr_assert_lt(fx.nitems, MAX_ITEMS);
	fx.items[fx.nitems++] = it;
	*item = it;
	return od;
}

static void other_free(struct qdomain *od)
{
	cr_expect_eq(od->active, 0, "sessions still serving " OTHER ": %u", od->active);
	dest_unwait(od);
	dns_route_unref(od->route);
	free(od);
}

static struct qdest *first_dest(void)
{
	return dest_get(&dl, &route->hosts[0].addrs[0]);
}

/* A session that finishes a transaction serves the domain waiting at its
 * address before its own next item: round robin, one connection. */
Test(mta_session, the_next_waiting_domain_goes_first)
{
	struct qitem *first = add_item(1), *third = add_item(1), *second;
	struct fake_conn *fc = start(1, one_addr);
	struct qdomain *od = other_domain(&second);

	greet(fc, EHLO_PIPE);
	expect_sent(fc, ENVELOPE_1);
	dest_wait(first_dest(), od);
	cr_assert_eq(dl.domains_waiting, 1);
	server(fc, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n");
	expect_sent(fc, SENT_BODY);
	server(fc, "250 2.0.0 queued\r\n");
	/* OTHER's turn; DOMAIN waits at the address with its second item. */
	expect_sent(fc, ENVELOPE_OTHER);
	cr_assert_null(od->wait_on, OTHER " still waiting");
	cr_assert_eq(d->wait_on, first_dest(), DOMAIN " is not waiting at the address");
	cr_assert_eq(od->active, 1);
	cr_assert_eq(d->active, 0);
	server(fc, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n");
	expect_sent(fc, SENT_BODY);
	server(fc, "250 2.0.0 queued\r\n");
	deliver_one(fc, ENVELOPE_1);
	cr_assert_eq(fx.ndone, 3, "completions: got %zu, want 3", fx.ndone);
	cr_assert(fx.done[0].it == first && fx.done[1].it == second && fx.done[2].it == third,
		  "order: want " DOMAIN ", " OTHER ", " DOMAIN);
	cr_assert_eq(dl.domains_waiting, 0);
	expect_state("idle");
	cr_assert_eq(fx.nconns, 1, "connections: got %zu, want 1", fx.nconns);
	other_free(od);
}

/* An idle session at the address takes another domain's mail when the TLS
 * policy is the same, and not when it differs. */
Test(mta_session, an_idle_session_is_reused_by_another_domain)
{
	struct qitem *it;
	struct fake_conn *fc = start(1, one_addr);

	greet(fc, EHLO_PIPE);
	expect_state("idle");
	struct qdomain *od = other_domain(&it);
	other_policy.tls = CONFIG_TLS_MAY;
	cr_assert_not(mta_session_reuse(first_dest(), od), "reused across TLS policies");
	other_policy.tls = policy.tls;
	cr_assert(mta_session_reuse(first_dest(), od), "not reused");
	expect_sent(fc, ENVELOPE_OTHER);
	server(fc, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n");
	expect_sent(fc, SENT_BODY);
	server(fc, "250 2.0.0 queued\r\n");
	cr_assert_eq(fx.ndone, 1);
	cr_assert_eq(fx.done[0].it, it);
	expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
	expect_state("idle");
	cr_assert_eq(od->active, 0, "a pooled session serves nobody");
	other_free(od);
}

/* The address's limit: a second session waits at the address; the first
 * one's end wakes it. */
Test(mta_session, a_full_address_makes_the_domain_wait)
{
	struct qitem *it;
	struct qdest *full = NULL;

	dl.max_per_address = 1;
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);
	struct qdomain *od = other_domain(&it);
	cr_assert_eq(mta_session_open(&dl, od, route, &full), MTA_WAIT);
	cr_assert_eq(full, first_dest(), "waits elsewhere than the full address");
	expect_connects(1);
	dest_wait(full, od);
	unsigned kicks = fx.kicks;
	fc->c.handler->close(&fc->c);     /* the session ends */
	cr_assert_null(od->wait_on, "the waiter was not woken");
	cr_assert_gt(fx.kicks, kicks, "nobody kicked");
	cr_assert_eq(first_dest()->active, 0);
	other_free(od);
}

/* The worker's cap: a new address, but every session of the worker in use. */
Test(mta_session, the_worker_cap_makes_the_domain_wait_anywhere)
{
	struct qdest *full = NULL;

	dl.max_total = 1;
	add_item(1);
	start(2, (const size_t[]){ 1, 1 });
	cr_assert_eq(mta_session_open(&dl, d, route, &full), MTA_WAIT);
	cr_assert_eq(full, &dl.anywhere, "not the worker-wide wait");
}

/* A connect timeout rests the address and halves its window; the session
 * goes on at the next address, and a later session passes the resting one. */
Test(mta_session, a_connect_timeout_rests_the_address)
{
	add_item(1);
	route = make_route(1, two_addrs);
	cr_assert(open_session());
	struct qdest *a = first_dest();
	a->window = 8;
	struct fake_conn *fc = last_conn();
	fc->c.handler->timeout(&fc->c, WORKER_TIMER_OUT_CONNECT);
	cr_assert_eq(a->failures, 1);
	cr_assert_eq(a->window, 4, "window: got %u, want 4", a->window);
	cr_assert_eq(a->until_ms, w.now_ms + cfg.address_backoff_ms);
	cr_assert(dest_backed_off(&dl, a));
	expect_connects(2);
	expect_connect_ip(1, "192.0.2.12");
	cr_assert(open_session());
	expect_connects(3);
	expect_connect_ip(2, "192.0.2.12");     /* .11 rests: passed over */
}

/* A domain still in the round robin whose items another session took is
 * skipped: the session serves the next waiter, and neither idles nor
 * quits while a domain with mail waits (a session quit there and was
 * replaced, in test_delivery's bulk run). */
Test(mta_session, a_waiter_without_mail_is_skipped)
{
	struct qitem *second;
	struct fake_conn *fc = start(1, one_addr);
	struct qdomain *od = other_domain(&second);
	struct qdomain *empty = calloc(1, sizeof(*empty) + sizeof("empty.test"));

	cr_assert_not_null(empty);
	empty->dl = &dl;
	empty->items.next = empty->items.prev = &empty->items;
	memcpy(empty->name, "empty.test", sizeof("empty.test"));
	add_item(1);
	greet(fc, EHLO_PIPE);
	expect_sent(fc, ENVELOPE_1);
	dest_wait(first_dest(), empty);       /* waits, but its mail went elsewhere */
	dest_wait(first_dest(), od);
	server(fc, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n");
	expect_sent(fc, SENT_BODY);
	server(fc, "250 2.0.0 queued\r\n");
	expect_sent(fc, ENVELOPE_OTHER);        /* not QUIT */
	cr_assert_null(empty->wait_on);
	cr_assert_null(od->wait_on);
	server(fc, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n");
	expect_sent(fc, SENT_BODY);
	server(fc, "250 2.0.0 queued\r\n");
	cr_assert_eq(fx.ndone, 2);
	cr_assert_eq(fx.done[1].it, second);
	expect_state("idle");
	cr_assert_eq(empty->active, 0);
	free(empty);
	other_free(od);
}

/* ---- 9. a next hop with SMTP AUTH (delivery.auth_file) ------------------ */

#define HOP "[relay.provider.test]:587"
#define EHLO_AUTH_TLS "250-mx1." DOMAIN " hello\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 AUTH LOGIN PLAIN\r\n"
#define EHLO_AUTH "250-mx1." DOMAIN " hello\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n"
/* base64("\0apikey\0s3cr3t") */
#define AUTH_LINE "AUTH PLAIN AGFwaWtleQBzM2NyM3Q=\r\n"

/* with_credentials - relayhost HOP, and credentials for it. */
static void with_credentials(void)
{
	static const char text[] = HOP " apikey:s3cr3t\n";
	char err[128];

	cfg.relayhost = HOP;
	cr_assert_eq(auth_file_parse(text, strlen(text), &cfg.auth, err, sizeof(err)), 0, "%s", err);
}

/* tls_up - STARTTLS offered, sent, accepted, handshake done, EHLO again. */
static void tls_up(struct fake_conn *fc, const char *ehlo_over_tls)
{
	expect_sent(fc, "STARTTLS\r\n");
	server(fc, "220 2.0.0 go ahead\r\n");
	fc->c.handler->tls_ready(&fc->c, true);
	expect_sent(fc, "EHLO relay.test\r\n");
	server(fc, ehlo_over_tls);
}

Test(mta_session, auth_plain_after_starttls_then_mail)
{
	with_credentials();
	policy.tls = CONFIG_TLS_MAY;     /* raised to encrypt: a password goes */
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);

	greet(fc, EHLO_AUTH_TLS);
	tls_up(fc, EHLO_AUTH);
	expect_sent(fc, AUTH_LINE);
	expect_state("auth");
	expect_timer(fc, WORKER_TIMER_OUT_COMMAND);
	cr_assert_eq(fx.ndone, 0);
	server(fc, "235 2.7.0 Authentication successful\r\n");
	deliver_one(fc, ENVELOPE_1_NOSIZE);
	expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
	cr_assert_str_eq(fx.done[0].tls, "TLSv1.2/FAKE-AES-GCM");
	cr_assert_str_eq(fx.path, "connecting greeting ehlo starttls ehlo auth envelope body idle",
			 "path: got \"%s\"", fx.path);
	/* A reused connection does not log in again. */
	add_item(1);
	cr_assert(take_work());
	deliver_one(fc, ENVELOPE_1_NOSIZE);
	const char *first = strstr(fc->out, AUTH_LINE);
	cr_assert_not_null(first);
	cr_assert_null(strstr(first + 1, "AUTH"), "AUTH sent twice: %s", fc->out);
}

Test(mta_session, auth_login_when_only_login_is_offered)
{
	with_credentials();
	policy.tls = CONFIG_TLS_ENCRYPT;
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);

	greet(fc, EHLO_AUTH_TLS);
	tls_up(fc, "250-mx1." DOMAIN "\r\n250-PIPELINING\r\n250 AUTH=LOGIN\r\n");
	expect_sent(fc, "AUTH LOGIN\r\n");
	server(fc, "334 VXNlcm5hbWU6\r\n");
	expect_sent(fc, "YXBpa2V5\r\n");
	server(fc, "334 UGFzc3dvcmQ6\r\n");
	expect_sent(fc, "czNjcjN0\r\n");
	expect_state("auth");
	server(fc, "235 ok\r\n");
	deliver_one(fc, ENVELOPE_1_NOSIZE);
	expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
}

/* The hop offers no STARTTLS: the credentials never leave, the host fails
 * (4.7.4) and the mail is deferred. */
Test(mta_session, auth_never_in_clear)
{
	with_credentials();
	policy.tls = CONFIG_TLS_NONE;    /* raised to encrypt as well */
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);

	greet(fc, EHLO_AUTH);
	expect_sent(fc, "QUIT\r\n");
	server(fc, "221 bye\r\n");
	cr_assert_null(strstr(fc->out, "AUTH"), "credentials sent in clear: %s", fc->out);
	cr_assert_null(strstr(fc->out, "AGFwaWtleQBzM2NyM3Q"), "credentials sent in clear");
	cr_assert_eq(fx.defers, 1);
	cr_assert_str_eq(fx.defer_status, "4.7.4");
	cr_assert_eq(fx.ndone, 0, "an item completed (bounced?)");
}

/* 535: our configuration, not the recipient: every address of the hop
 * is tried, then the domain's mail is deferred with 4.7.0. */
Test(mta_session, auth_535_defers_and_quits)
{
	with_credentials();
	add_item(1);
	struct fake_conn *fc = start(1, two_addrs);

	for (int i = 0; i < 2; i++) {
		if (i > 0)
			fc = opened();
		greet(fc, EHLO_AUTH_TLS);
		tls_up(fc, EHLO_AUTH);
		expect_sent(fc, AUTH_LINE);
		server(fc, "535 5.7.8 Authentication credentials invalid\r\n");
		expect_sent(fc, "QUIT\r\n");
		expect_state("quit");
		server(fc, "221 bye\r\n");
		cr_assert(fc->flush_closed);
		cr_assert_null(strstr(fc->out, "MAIL FROM"), "mail sent after a failed AUTH");
	}
	expect_connects(2);
	cr_assert_eq(fx.defers, 1);
	cr_assert_str_eq(fx.defer_status, "4.7.0", "status: got %s", fx.defer_status);
	cr_assert_not_null(strstr(fx.defer_text, "authentication to the next hop failed: 535"),
			   "text: got \"%s\"", fx.defer_text);
	cr_assert_eq(fx.ndone, 0, "an item completed (bounced?)");
	cr_assert_eq(dl.auth_failed_count, 1, "the hop is remembered as failing");
}

/* No credentials for another next hop: no AUTH, policy untouched. */
Test(mta_session, no_credentials_no_auth)
{
	with_credentials();
	cfg.relayhost = "[other.provider.test]:587";
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);

	greet(fc, EHLO_AUTH);
	deliver_one(fc, ENVELOPE_1_NOSIZE);
	cr_assert_null(strstr(fc->out, "AUTH"));
}

/* ---- 10. implicit TLS (RFC 8314) ---------------------------------------- */

Test(mta_session, implicit_tls_handshake_before_greeting)
{
	policy.tls = CONFIG_TLS_IMPLICIT;
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);

	cr_assert_eq(fc->start_tls, 1, "no handshake at connect");
	expect_state("greeting");
	expect_timer(fc, WORKER_TIMER_OUT_GREETING);
	expect_sent(fc, "");
	fc->c.handler->tls_ready(&fc->c, true);
	expect_sent(fc, "");      /* the server speaks first, over TLS */
	greet(fc, EHLO_TLS);      /* STARTTLS offered: never sent under implicit */
	deliver_one(fc, ENVELOPE_1_NOSIZE);
	expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
	cr_assert_str_eq(fx.done[0].tls, "TLSv1.2/FAKE-AES-GCM");
	cr_assert_eq(fc->start_tls, 1);
	cr_assert_null(strstr(fc->out, "STARTTLS"));
}

Test(mta_session, implicit_tls_with_auth)
{
	with_credentials();
	policy.tls = CONFIG_TLS_IMPLICIT;
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);

	fc->c.handler->tls_ready(&fc->c, true);
	greet(fc, EHLO_AUTH);
	expect_sent(fc, AUTH_LINE);
	server(fc, "235 ok\r\n");
	deliver_one(fc, ENVELOPE_1_NOSIZE);
	expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
}

Test(mta_session, implicit_tls_failure_is_a_failed_host)
{
	policy.tls = CONFIG_TLS_IMPLICIT;
	add_item(1);
	struct fake_conn *fc = start(1, two_addrs);

	fc->c.handler->tls_ready(&fc->c, false);
	cr_assert(fc->flush_closed);
	expect_connects(2);
	fc = opened();
	cr_assert_eq(fc->start_tls, 1);
	fc->c.handler->tls_ready(&fc->c, false);
	cr_assert_eq(fx.defers, 1);
	cr_assert_str_eq(fx.defer_status, "4.7.5");
	cr_assert_eq(fx.ndone, 0);
	cr_assert_eq(fx.conns[0]->out_len, 0, "bytes sent in clear under implicit");
}

/* A sender route's hop (qdomain.hop) wins over the relayhost: its
 * credentials are used, and a session for it carries no mail of the same
 * domain routed elsewhere. */
Test(mta_session, sender_route_hop_logs_in_with_its_credentials)
{
	with_credentials();
	cfg.relayhost = "[plain.relay.test]:25";     /* no credentials */
	d->hop = strdup(HOP);
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);

	greet(fc, EHLO_AUTH_TLS);
	tls_up(fc, EHLO_AUTH);
	expect_sent(fc, AUTH_LINE);
	server(fc, "235 ok\r\n");
	deliver_one(fc, ENVELOPE_1_NOSIZE);
	expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
	expect_state("idle");
	struct qdomain *plain = calloc(1, sizeof(*plain) + sizeof(DOMAIN));
	cr_assert_not_null(plain);
	memcpy(plain->name, DOMAIN, sizeof(DOMAIN));
	plain->dl = &dl;
	plain->items.next = plain->items.prev = &plain->items;
	struct qdest *dest = NULL;
	for (size_t i = 0; i < dl.dest_buckets && dest == NULL; i++)
		dest = dl.dests[i];
	cr_assert_not_null(dest);
	cr_assert_not(mta_session_reuse(dest, plain), "a session of another hop was reused");
	free(plain);
}

/* ---- 11. a sender route's tls; a reload that moves the domain ---------- */

/* delivery.sender_routes[].tls wins over the recipient domain's policy for
 * mail through that route: implicit TLS, the handshake before the greeting. */
Test(mta_session, sender_route_tls_wins_over_the_domain)
{
	policy.tls = CONFIG_TLS_NONE;
	d->hop = strdup(HOP);
	route_tls = CONFIG_TLS_IMPLICIT;
	route_tls_set = true;
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);

	cr_assert_eq(fc->start_tls, 1, "implicit: the handshake starts at the connect");
	fc->c.handler->tls_ready(&fc->c, true);
	greet(fc, EHLO_TLS);
	deliver_one(fc, ENVELOPE_1_NOSIZE);
	expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
	cr_assert_null(strstr(fc->out, "STARTTLS"), "STARTTLS under implicit: %s", fc->out);
}

/* A route's tls "none" does not let a password out in clear: with
 * credentials it is raised to encrypt, and a hop without STARTTLS fails. */
Test(mta_session, sender_route_tls_none_with_credentials_is_encrypt)
{
	with_credentials();
	cfg.relayhost = "[plain.relay.test]:25";
	d->hop = strdup(HOP);
	route_tls = CONFIG_TLS_NONE;
	route_tls_set = true;
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);

	greet(fc, EHLO_AUTH);        /* no STARTTLS offered */
	expect_sent(fc, "QUIT\r\n");
	server(fc, "221 bye\r\n");
	cr_assert_null(strstr(fc->out, "AUTH"), "credentials sent in clear: %s", fc->out);
	cr_assert_null(strstr(fc->out, "MAIL FROM"), "mail sent in clear: %s", fc->out);
	cr_assert_eq(fx.defers, 1);
	cr_assert_str_eq(fx.defer_status, "4.7.4");
}

/* A reload gives the domain another next hop while a session of the old
 * one is open: its next transaction does not go there; the session QUITs
 * and the domain is kicked (to open a session to the new hop). */
Test(mta_session, next_hop_changed_by_a_reload_quits)
{
	cfg.relayhost = "[old.relay.test]:25";
	add_item(1);
	struct fake_conn *fc = start(1, one_addr);

	greet(fc, EHLO_TLS);       /* PIPELINING; STARTTLS not used under none */
	deliver_one(fc, ENVELOPE_1_NOSIZE);
	expect_rcpt(0, 0, SMTP_OUTCOME_DELIVERED, 250, "2.0.0");
	expect_state("idle");
	cfg.relayhost = "[new.relay.test]:25";      /* the reload */
	add_item(1);
	cr_assert_not(take_work(), "a pooled session of the old hop took the domain's mail");
	/* One that is busy when the reload comes: QUIT after its transaction. */
	cfg.relayhost = "[old.relay.test]:25";
	cr_assert(take_work());
	expect_sent(fc, ENVELOPE_1_NOSIZE);
	server(fc, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n");
	expect_sent(fc, SENT_BODY);
	cfg.relayhost = "[new.relay.test]:25";      /* the reload, mid-transaction */
	add_item(1);
	unsigned kicks = fx.kicks;
	server(fc, "250 2.0.0 queued as X2\r\n");
	cr_assert_eq(fx.ndone, 2, "the transaction under way completes");
	expect_sent(fc, "QUIT\r\n");
	server(fc, "221 bye\r\n");
	cr_assert_gt(fx.kicks, kicks, "the domain was not kicked after the old hop's session ended");
}

/* MTA-STS enforce: the MX host the policy does not list is passed over,
 * the listed one gets "verify" for its name; without STARTTLS it fails
 * with a reason that names the policy. */
Test(mta_session, mta_sts_enforce_skips_unlisted_host_and_verifies)
{
	static const size_t two[] = { 1, 1 };
	static struct mta_sts_policy p = { .mode = MTA_STS_MODE_ENFORCE, .max_age_s = 86400, .mx_count = 1,
					   .mx = { "mx2." DOMAIN } };

	fake_sts = &p;
	add_item(1);
	struct fake_conn *fc = start(2, two);
	cr_assert_str_eq(fx.connect_ip[0], "192.0.2.21", "connected to %s, want mx2's 192.0.2.21",
			 fx.connect_ip[0]);
	greet(fc, EHLO_TLS);
	expect_sent(fc, "STARTTLS\r\n");
	server(fc, "220 2.0.0 ready to start TLS\r\n");
	cr_assert_eq(fx.tls_verify, TLS_VERIFY_REQUIRED, "verify: got %d", fx.tls_verify);
	cr_assert_str_eq(fx.tls_host, "mx2." DOMAIN);
	world_fini();

	world_init();
	fake_sts = &p;
	add_item(1);
	fc = start(2, two);
	greet(fc, EHLO_PLAIN);
	expect_sent(fc, "QUIT\r\n");
	server(fc, "221 bye\r\n");
	fc->c.handler->close(&fc->c);
	cr_assert_eq(fx.connect_calls, 1, "connects: got %u, want 1 (mx1 is not in the policy)", fx.connect_calls);
	cr_assert_eq(fx.defers, 1, "defers: got %u", fx.defers);
	cr_assert_str_eq(fx.defer_status, "4.7.4");
	cr_assert(strstr(fx.defer_text, "MTA-STS") != NULL, "reason: %s", fx.defer_text);
}
