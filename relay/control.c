/*
 * control - the control socket; see control.h.
 */
#include "control.h"

#include <errno.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "delivery.h"
#include "errmsg.h"
#include "log.h"
#include "metrics.h"
#include "shaping_state.h"
#include "cluster.h"
#include "xalloc.h"

#define CONTROL_MAX_OUTPUT (64 << 20)  /* one answer, at most */

/* ---- the request (pure) ----------------------------------------------- */

static const struct {
	const char *name;
	enum queue_action action;
	bool target;             /* needs an ID or domain=D */
	bool changes;            /* flush and the other actions: no json, no filters */
} queue_verbs[] = {
	{ "list", QUEUE_LIST, false, false },
	{ "show", QUEUE_SHOW, true, false },
	{ "summary", QUEUE_SUMMARY, false, false },
	{ "flush", QUEUE_FLUSH, false, true },
	{ "delete", QUEUE_DELETE, true, true },
	{ "bounce", QUEUE_BOUNCE, true, true },
	{ "hold", QUEUE_HOLD, true, true },
	{ "release", QUEUE_RELEASE, true, true },
};

/* parse_top - top=N: queue summary shows the N largest domains. */
static int parse_top(const char *word, struct control_request *req, char *err, size_t errlen)
{
	char *end;
	unsigned long n = strtoul(word + 4, &end, 10);

	if (word[4] < '0' || word[4] > '9' || *end != '\0' || n == 0 || n > CONTROL_MAX_TOP ||
	    req->top != 0)
		return errmsg_set(err, errlen, -EINVAL, "bad top: \"%s\" (a number of domains, 1 to %u)", word,
				  CONTROL_MAX_TOP);
	req->top = (unsigned)n;
	return 0;
}

/* parse_word - one argument after the verb: domain=D, deferred, held, or
 * (show and the actions) a queue ID. */
static int parse_word(char *word, struct control_request *req, bool takes_id, char *err, size_t errlen)
{
	if (strncmp(word, "domain=", 7) == 0) {
		const char *d = word + 7;
		size_t len = strlen(d);
		if (len == 0 || len >= sizeof(req->domain) || req->domain[0] != '\0')
			return errmsg_set(err, errlen, -EINVAL, "bad domain: \"%s\"", word);
		for (size_t i = 0; i <= len; i++)
			req->domain[i] = (d[i] >= 'A' && d[i] <= 'Z') ? (char)(d[i] - 'A' + 'a') : d[i];
		return 0;
	}
	if (strncmp(word, "top=", 4) == 0)
		return parse_top(word, req, err, errlen);
	if (strcmp(word, "deferred") == 0 && !req->held_only) {
		req->deferred_only = true;
		return 0;
	}
	if (strcmp(word, "held") == 0 && !req->deferred_only) {
		req->held_only = true;
		return 0;
	}
	if (takes_id && req->queue_id[0] == '\0' && strlen(word) < sizeof(req->queue_id)) {
		for (const char *p = word; *p; p++)
			if (*p <= ' ' || *p > '~')
				return errmsg_set(err, errlen, -EINVAL, "bad queue ID: \"%s\"", word);
		snprintf(req->queue_id, sizeof(req->queue_id), "%s", word);
		return 0;
	}
	return errmsg_set(err, errlen, -EINVAL, "unexpected argument \"%s\"", word);
}

/* parse_queue - the words after "queue". */
static int parse_queue(char **words, size_t n, struct control_request *req, char *err, size_t errlen)
{
	size_t v;

	if (n == 0)
		return errmsg_set(err, errlen, -EINVAL, "%s", "queue: missing command");
	for (v = 0; v < sizeof(queue_verbs) / sizeof(queue_verbs[0]); v++)
		if (strcmp(words[0], queue_verbs[v].name) == 0)
			break;
	if (v == sizeof(queue_verbs) / sizeof(queue_verbs[0]))
		return errmsg_set(err, errlen, -EINVAL, "queue: unknown command \"%s\"", words[0]);
	req->command = CONTROL_QUEUE;
	req->action = queue_verbs[v].action;
	for (size_t i = 1; i < n; i++) {
		int rc = parse_word(words[i], req, queue_verbs[v].target, err, errlen);
		if (rc < 0)
			return rc;
	}
	if (queue_verbs[v].changes && (req->json || req->deferred_only || req->held_only))
		return errmsg_set(err, errlen, -EINVAL, "queue %s: takes only an ID or domain=D", words[0]);
	if (req->top != 0 && req->action != QUEUE_SUMMARY)
		return errmsg_set(err, errlen, -EINVAL, "queue %s: top=N is for queue summary", words[0]);
	if (req->action == QUEUE_SHOW && (req->queue_id[0] == '\0' || req->domain[0] != '\0'))
		return errmsg_set(err, errlen, -EINVAL, "%s", "queue show: takes one queue ID");
	if (queue_verbs[v].target && req->action != QUEUE_SHOW &&
	    (req->queue_id[0] == '\0') == (req->domain[0] == '\0'))
		return errmsg_set(err, errlen, -EINVAL, "queue %s: takes an ID or domain=D (one of them)", words[0]);
	return 0;
}

int control_parse(const char *line, struct control_request *req, char *err, size_t errlen)
{
	char copy[CONTROL_MAX_LINE + 1];
	char *words[16], *save = NULL;
	size_t n = 0;

	memset(req, 0, sizeof(*req));
	if (strlen(line) > CONTROL_MAX_LINE)
		return errmsg_set(err, errlen, -EINVAL, "%s", "request too long");
	snprintf(copy, sizeof(copy), "%s", line);
	for (char *w = strtok_r(copy, " \t\r", &save); w != NULL; w = strtok_r(NULL, " \t\r", &save)) {
		if (n == sizeof(words) / sizeof(words[0]))
			return errmsg_set(err, errlen, -EINVAL, "%s", "too many arguments");
		words[n++] = w;
	}
	size_t i = 0;
	if (n > 0 && strcmp(words[0], "json") == 0) {
		req->json = true;
		i = 1;
	}
	if (i == n)
		return errmsg_set(err, errlen, -EINVAL, "%s", "empty request");
	if (strcmp(words[i], "queue") == 0)
		return parse_queue(words + i + 1, n - i - 1, req, err, errlen);
	if (strcmp(words[i], "shaping") == 0) {
		req->command = CONTROL_SHAPING;
		if (n == i + 2 && strcmp(words[i + 1], "status") == 0)
			return 0;
		if (n == i + 3 && strcmp(words[i + 1], "resume") == 0 && !req->json &&
		    strlen(words[i + 2]) < sizeof(req->site)) {
			snprintf(req->site, sizeof(req->site), "%s", words[i + 2]);
			return 0;
		}
		return errmsg_set(err, errlen, -EINVAL, "%s", "shaping: status, or resume SITE (or source:NAME, or SITE/SOURCE)");
	}
	if (strcmp(words[i], "cluster") == 0) {
		req->command = CONTROL_CLUSTER;
		if (n == i + 2 && strcmp(words[i + 1], "status") == 0)
			return 0;
		return errmsg_set(err, errlen, -EINVAL, "%s", "cluster: status");
	}
	if (strcmp(words[i], "suppression") == 0) {
		req->command = CONTROL_SUPPRESSION;
		const char *rest = strstr(line, "suppression") + strlen("suppression");
		return control_suppression_parse(rest, req->json, &req->suppression, err, errlen);
	}
	if (strcmp(words[i], "domains") == 0) {
		req->command = CONTROL_DOMAINS;
		req->action = QUEUE_DOMAINS;
		for (size_t k = i + 1; k < n; k++)
			if (strncmp(words[k], "domain=", 7) != 0 || parse_word(words[k], req, false, err, errlen) < 0)
				return errmsg_set(err, errlen, -EINVAL, "domains: unexpected argument \"%s\"", words[k]);
		return 0;
	}
	if (strcmp(words[i], "addresses") == 0) {
		req->command = CONTROL_DOMAINS;
		req->action = QUEUE_ADDRESSES;
		if (i + 1 != n)
			return errmsg_set(err, errlen, -EINVAL, "%s", "addresses: takes no arguments");
		return 0;
	}
	if (strcmp(words[i], "resolve") == 0) {
		req->command = CONTROL_RESOLVE;
		if (req->json)
			return errmsg_set(err, errlen, -EINVAL, "%s", "resolve: no json output");
		if (i + 1 >= n || strchr(words[i + 1], '=') != NULL || strlen(words[i + 1]) >= sizeof(req->domain))
			return errmsg_set(err, errlen, -EINVAL, "%s", "resolve: want DOMAIN [sender=ADDR]");
		snprintf(req->domain, sizeof(req->domain), "%s", words[i + 1]);
		for (char *c = req->domain; *c; c++)     /* the request's promise: lower case */
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		for (size_t k = i + 2; k < n; k++) {
			if (strncmp(words[k], "sender=", 7) != 0 || strlen(words[k] + 7) >= sizeof(req->sender))
				return errmsg_set(err, errlen, -EINVAL, "resolve: unexpected argument \"%s\"", words[k]);
			snprintf(req->sender, sizeof(req->sender), "%s", words[k] + 7);
		}
		return 0;
	}
	if (strcmp(words[i], "stats") == 0 || strcmp(words[i], "reload") == 0) {
		req->command = words[i][0] == 's' ? CONTROL_STATS : CONTROL_RELOAD;
		if (i + 1 != n)
			return errmsg_set(err, errlen, -EINVAL, "%s: takes no arguments", words[i]);
		if (req->command == CONTROL_RELOAD && req->json)
			return errmsg_set(err, errlen, -EINVAL, "%s", "reload: no json output");
		return 0;
	}
	return errmsg_set(err, errlen, -EINVAL, "unknown command \"%s\"", words[i]);
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- sessions --------------------------------------------------------- */

struct control_session;

struct control_worker {
	struct worker_listener listener;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct control_session *reloading;     /* waiting for the reload's result */
};

struct control_session {
	struct conn *c;                /* NULL once the connection is gone */
	struct queue_query *q;         /* the query of this session, or NULL */
	bool away;                     /* q is on another worker */
	bool wait_drain;               /* the next step when the socket took the rows */
	bool answered;                 /* a request was read */
	bool resolving;                /* the resolver holds s: cancelled when the client leaves */
	struct control_suppression *sup;   /* a suppression command, or NULL */
	struct control_session *next_reloading;
};

/* A reload's result, posted to worker 0 by the main thread. */
struct reload_result {
	struct worker_post post;
	bool ok;
	char text[512];
};

static void session_free(struct control_session *s)
{
	free(s);
}

/* query_free - everything a query owns; a cursor left on a worker that
 * stopped (only at exit) is freed without unlinking. */
static void query_free(struct queue_query *q)
{
	buf_free(&q->out);
	queue_message_view_clear(&q->show);
	free(q->spool_states);
	for (size_t i = 0; i < q->row_count; i++)
		free(q->rows[i].domain);
	free(q->rows);
	free(q->marker);
	free(q);
}

/* session_end - the last line and close. */
static void session_end(struct control_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void session_end(struct control_session *s, const char *fmt, ...)
{
	char line[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	strcat(line, "\n");
	conn_write(s->c, line, strlen(line));
	conn_close_after_flush(s->c);
}

/* For the log, and the last line of an action. */
static const char *const action_names[] = {
	[QUEUE_LIST] = "list", [QUEUE_SHOW] = "show", [QUEUE_SUMMARY] = "summary",
	[QUEUE_DOMAINS] = "domains", [QUEUE_ADDRESSES] = "addresses", [QUEUE_FLUSH] = "flush",
	[QUEUE_DELETE] = "delete",
	[QUEUE_BOUNCE] = "bounce", [QUEUE_HOLD] = "hold", [QUEUE_RELEASE] = "release",
};
static const char *const action_done[] = {
	[QUEUE_FLUSH] = "flushed", [QUEUE_DELETE] = "deleted", [QUEUE_BOUNCE] = "bounced",
	[QUEUE_HOLD] = "held", [QUEUE_RELEASE] = "released",
};

/* query_finish - every worker walked: the rows made at the end, the last
 * line. */
static void query_finish(struct control_session *s, struct queue_query *q)
{
	int rc = 0;

	if (q->action == QUEUE_SHOW && q->show.found) {
		for (size_t i = 0; i < q->show.rcpt_count && i < q->spool_state_count; i++) {
			struct queue_rcpt_view *r = &q->show.rcpts[i];
			if (r->state == NULL) {
				r->state = spool_status_name(q->spool_states[i].status);
				r->attempts = q->spool_states[i].attempts;
			}
		}
		rc = queue_format_message(&q->out, q->json, &q->show);
	} else if (q->action == QUEUE_SUMMARY) {
		queue_summary_keep_top(q->rows, &q->row_count, q->top, &q->others);
		rc = queue_format_summary_top(&q->out, q->json, q->rows, q->row_count, &q->others);
	}
	conn_write(s->c, buf_data(&q->out), buf_len(&q->out));
	log_info("control_done", "command=%s matched=%llu changed=%llu steps=%llu max_step_cpu_us=%llu elapsed_ms=%lld",
		 action_names[q->action], (unsigned long long)q->matched, (unsigned long long)q->changed,
		 (unsigned long long)q->steps, (unsigned long long)q->max_step_us,
		 (long long)((mono_us() - q->started_us) / 1000));
	if (rc < 0)
		session_end(s, "-- error the answer is too large");
	else if (q->action == QUEUE_SHOW && !q->show.found)
		session_end(s, "-- error %s: not in the queue", q->queue_id);
	else if (q->action >= QUEUE_FLUSH)
		session_end(s, "-- ok %s %llu of %llu items", action_done[q->action],
			    (unsigned long long)q->changed, (unsigned long long)q->matched);
	else if (q->action == QUEUE_DOMAINS)
		session_end(s, "-- ok %llu domains", (unsigned long long)q->matched);
	else if (q->action == QUEUE_ADDRESSES)
		session_end(s, "-- ok %llu addresses", (unsigned long long)q->matched);
	else
		session_end(s, "-- ok %llu items", (unsigned long long)q->matched);
	query_free(q);
	s->q = NULL;
}

static void query_visit(struct worker *w, struct worker_post *p);

/* thread_cpu_us - CPU time of the calling thread. */
static int64_t thread_cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* query_step - one step on w, timed in the worker's CPU time (wall time
 * would count whatever else ran on the core): the log says how long the
 * longest step held a worker. */
static void query_step(struct worker *w, struct queue_query *q)
{
	int64_t t0 = thread_cpu_us();

	delivery_query_step(w, q);
	uint64_t us = (uint64_t)(thread_cpu_us() - t0);
	q->steps++;
	if (us > q->max_step_us)
		q->max_step_us = us;
}

/* query_drive - walk on: the next step to the worker it is due on, or
 * the end. Every step goes through that worker's inbox, ours included, so
 * between two steps every worker gets back to its ring. */
static void query_drive(struct worker *w, struct control_session *s)
{
	struct queue_query *q = s->q;

	if (q->at_done && !q->cancel) {
		q->at++;
		q->at_started = q->at_done = false;
	}
	if (q->at_done || q->at > w->count) {
		/* Over, or cancelled and the cursor dropped. */
		if (s->c != NULL && !q->cancel) {
			query_finish(s, q);
			return;
		}
		query_free(q);
		session_free(s);
		return;
	}
	s->away = true;
	q->post.handle = query_visit;
	worker_post(w, &w->all[q->at], &q->post);
}

/* query_home - back from a step. */
static void query_home(struct worker *w, struct worker_post *p)
{
	struct queue_query *q = (struct queue_query *)p;
	struct control_session *s = q->owner;

	s->away = false;
	if (s->c == NULL) {
		/* A walk begun on worker `at` ends there (its cursor, its
		 * count of walks), marker or not. */
		q->cancel = q->at_started && !q->at_done;
		q->at_done = !q->cancel;
		if (!q->cancel) {
			query_free(q);
			session_free(s);
			return;
		}
	} else if (buf_len(&q->out) > 0 && q->action != QUEUE_SHOW && q->action != QUEUE_SUMMARY) {
		conn_write(s->c, buf_data(&q->out), buf_len(&q->out));
		buf_reset(&q->out);
		s->wait_drain = true;
		return;
	}
	query_drive(w, s);
}

/* query_visit - a step on this worker, then home. */
static void query_visit(struct worker *w, struct worker_post *p)
{
	struct queue_query *q = (struct queue_query *)p;

	query_step(w, q);
	q->post.handle = query_home;
	worker_post(w, &w->all[q->home], &q->post);
}

static void query_discard(struct worker_post *p)
{
	query_free((struct queue_query *)p);
}

/* query_start - a queue or domains request: the walk begins at worker 0. */
static void query_start(struct worker *w, struct control_session *s, const struct control_request *req)
{
	struct queue_query *q = xcalloc(1, sizeof(*q));

	q->post.discard = query_discard;
	q->action = req->action;
	snprintf(q->queue_id, sizeof(q->queue_id), "%s", req->queue_id);
	snprintf(q->domain, sizeof(q->domain), "%s", req->domain);
	q->deferred_only = req->deferred_only;
	q->held_only = req->held_only;
	q->top = req->top;
	q->json = req->json;
	q->home = w->id;
	q->owner = s;
	q->now_wall_ms = wall_ms();
	q->started_us = mono_us();
	buf_init(&q->out, CONTROL_MAX_OUTPUT);
	s->q = q;
	if (!req->json && req->action == QUEUE_LIST)
		queue_format_list_header(&q->out);
	else if (!req->json && req->action == QUEUE_DOMAINS)
		queue_format_domains_header(&q->out);
	else if (!req->json && req->action == QUEUE_ADDRESSES)
		queue_format_addresses_header(&q->out);
	if (buf_len(&q->out) > 0) {
		conn_write(s->c, buf_data(&q->out), buf_len(&q->out));
		buf_reset(&q->out);
	}
	log_info("control", "command=%s id=%s domain=%s", action_names[req->action],
		 req->queue_id[0] ? req->queue_id : "-", req->domain[0] ? req->domain : "-");
	query_drive(w, s);
}

/* session_reload - SIGHUP to ourselves; main's reload answers through
 * control_reload_done. */
static void session_reload(struct worker *w, struct control_session *s)
{
	if (w->cfg->source_path == NULL) {
		session_end(s, "-- error the daemon runs without a configuration file: nothing to reload");
		return;
	}
	s->next_reloading = w->control->reloading;
	w->control->reloading = s;
	log_info("control", "command=reload");
	kill(getpid(), SIGHUP);
}

/* resolve_answer - the route for a resolve request: its hosts and
 * addresses, then the last line. A session whose client left meanwhile
 * only ends here. */
static void resolve_answer(const struct dns_route *route, void *arg)
{
	struct control_session *s = arg;
	char line[700], addr[64];

	s->resolving = false;
	if (s->c == NULL) {
		session_free(s);
		return;
	}
	if (route->status != DNS_ROUTE_OK) {
		session_end(s, "-- error %s %d %s %s", dns_route_status_name(route->status), route->smtp_code,
			    route->enhanced, route->text);
		return;
	}
	for (size_t i = 0; i < route->host_count; i++) {
		const struct dns_host *h = &route->hosts[i];
		int n = snprintf(line, sizeof(line), "  mx %d %s port %u:", h->preference, h->name, h->port);
		for (size_t j = 0; j < h->addr_count && n < (int)sizeof(line) - 70; j++)
			n += snprintf(line + n, sizeof(line) - (size_t)n, " %s", dns_addr_format(&h->addrs[j], addr, sizeof(addr)));
		snprintf(line + n, sizeof(line) - (size_t)n, "\n");
		conn_write(s->c, line, strlen(line));
	}
	session_end(s, "-- ok ttl=%u", route->ttl_s);
}

/* session_resolve - what the running daemon would do with mail for a
 * domain (and sender): the rule, the next hop, the nameservers, then the
 * route from worker 0's resolver (its cache, or a lookup). */
static void session_resolve(struct worker *w, struct control_session *s, const struct control_request *req)
{
	const struct config *cfg = w->cfg;
	const char *via, *hop;
	char line[900];
	int n;

	via = delivery_next_hop(w, req->domain, req->sender, &hop);
	n = snprintf(line, sizeof(line), "%s%s%s via=%s next_hop=%s nameservers=", req->domain,
		     req->sender[0] ? " sender=" : "", req->sender, via, hop != NULL ? hop : "-");
	for (size_t i = 0; i < cfg->dns_nameserver_count && n < (int)sizeof(line) - 80; i++)
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%s%s", i ? "," : "", cfg->dns_nameservers[i]);
	snprintf(line + n, sizeof(line) - (size_t)n, "%s\n", cfg->dns_nameserver_count ? "" : "resolv.conf");
	conn_write(s->c, line, strlen(line));
	log_info("control", "command=resolve domain=%s", req->domain);
	s->resolving = true;
	if (!delivery_resolve(w, req->domain, req->sender, resolve_answer, s)) {
		s->resolving = false;
		session_end(s, strcmp(via, "local") == 0 ? "-- ok local delivery" : "-- error no resolver on this worker");
	}
}

/* shaping_status_row - one site's (or domain entry's) line: state,
 * connections open / max, tokens in its buckets, limits lowered now. */
static void shaping_status_row(struct buf *b, const struct shaping_rules *rules, int idx, unsigned slot,
			       const char *name, bool suspended, long long remaining, unsigned long long count,
			       bool json, int64_t now)
{
	const struct shaping_site *site = idx >= 0 ? shaping_site_at(rules, (size_t)idx) : NULL;
	unsigned conns = shaping_state_connections(slot);
	uint32_t max = site != NULL ? shaping_state_max_connections(site, now) : 0;
	long long tokens[2] = { -1, -1 };      /* message, connection; -1 = no limit */
	char lowered[200] = "";
	size_t n = 0;

	for (int i = 0; site != NULL && i < 2; i++) {
		enum shaping_limit_kind kind = i == 0 ? SHAPING_LIMIT_MESSAGE_RATE : SHAPING_LIMIT_CONNECTION_RATE;
		struct token_bucket_rate r = shaping_state_rate(site, kind, now);
		if (r.interval_us != 0)
			tokens[i] = token_bucket_available(atomic_load(shaping_state_bucket(slot, (enum shaping_bucket)i)), &r,
							   now * 1000);
	}
	for (int kind = 0; kind < SHAPING_LIMIT_COUNT; kind++) {
		int64_t value, until;
		if (!shaping_state_lowered(slot, (enum shaping_limit_kind)kind, now, &value, &until))
			continue;
		/* A rate shows as messages per hour: "10/min" is 600/h. */
		long long shown = kind == SHAPING_LIMIT_MAX_CONNECTIONS ? (long long)value
							       : (long long)(3600000000LL / (value > 0 ? value : 1));
		n += (size_t)snprintf(lowered + n, sizeof(lowered) - n,
				      json ? "%s{\"limit\":\"%s\",\"value\":%lld,\"per\":\"%s\",\"remaining_s\":%lld}"
					   : "%s%s=%lld%s(%llds)",
				      n > 0 ? "," : "", shaping_limit_name((enum shaping_limit_kind)kind), shown,
				      kind == SHAPING_LIMIT_MAX_CONNECTIONS ? "" : json ? "hour" : "/h",
				      (long long)((until - now + 999) / 1000));
		if (n >= sizeof(lowered))
			n = sizeof(lowered) - 1;
	}
	if (json) {
		buf_append_printf(b, "{\"site\":\"%s\",\"kind\":\"%s\",\"state\":\"%s\",\"remaining_s\":%lld,\"suspensions\":%llu,"
				  "\"connections\":%u,\"max_connections\":%u,\"message_tokens\":%lld,\"connection_tokens\":%lld,"
				  "\"lowerings\":%llu,\"lowered\":[%s]}\n",
				  name, site != NULL && site->domain_entry ? "domain" : "site", suspended ? "suspended" : "active",
				  remaining, count, conns, max, tokens[0], tokens[1],
				  (unsigned long long)shaping_state_lowerings(slot), lowered);
		return;
	}
	char mc[24], t0[16], t1[16];
	snprintf(mc, sizeof(mc), max ? "%u/%u" : "%u/-", conns, max);
	snprintf(t0, sizeof(t0), tokens[0] < 0 ? "-" : "%lld", tokens[0]);
	snprintf(t1, sizeof(t1), tokens[1] < 0 ? "-" : "%lld", tokens[1]);
	buf_append_printf(b, "%-24s %-10s %12lld %12llu %11s %9s %9s  %s\n", name, suspended ? "suspended" : "active",
			  remaining, count, mc, t0, t1, lowered[0] ? lowered : "-");
}

/* shaping_status_pairs - a line per (site, source) pair of the sites and
 * domain entries with per_source limits: connections open / max and the
 * tokens in its buckets. */
static void shaping_status_pairs(struct buf *b, const struct shaping_rules *rules, bool json, int64_t now)
{
	bool header = false;

	for (size_t i = 0; i < shaping_site_count(rules); i++) {
		const struct shaping_site *site = shaping_site_at(rules, i);
		for (size_t k = 0; site->has_pairs && k < shaping_source_count(rules); k++) {
			unsigned slot = site->pair_slots[k];
			int64_t until = shaping_state_until(slot);
			long long remaining = until > now ? (long long)((until - now + 999) / 1000) : 0;
			if (!site->has_per_source && remaining == 0)
				continue;     /* only a source_site rule's pair, not suspended */
			const struct shaping_rate *rates[2] = { &site->per_source.message_rate, &site->per_source.connection_rate };
			long long tokens[2] = { -1, -1 };
			for (int j = 0; j < 2; j++) {
				struct token_bucket_rate r;
				if (rates[j]->count != 0 &&
				    token_bucket_rate_set(&r, rates[j]->count, rates[j]->period_ms * 1000, rates[j]->burst) == 0)
					tokens[j] = token_bucket_available(atomic_load(shaping_state_bucket(slot, (enum shaping_bucket)j)),
									   &r, now * 1000);
			}
			unsigned conns = shaping_state_connections(slot), max = site->per_source.max_connections;
			if (json) {
				buf_append_printf(b, "{\"per_source\":\"%s\",\"connections\":%u,\"max_connections\":%u,"
						  "\"message_tokens\":%lld,\"connection_tokens\":%lld,\"state\":\"%s\","
						  "\"remaining_s\":%lld,\"suspensions\":%llu}\n",
						  shaping_state_name(slot), conns, max, tokens[0], tokens[1],
						  remaining > 0 ? "suspended" : "active", remaining,
						  (unsigned long long)shaping_state_suspensions(slot));
				continue;
			}
			if (!header)
				buf_append_printf(b, "\n%-40s %11s %10s %11s %-10s %11s\n", "SITE/SOURCE", "CONNECTIONS",
						  "MSG_TOKENS", "CONN_TOKENS", "STATE", "REMAINING_S");
			header = true;
			char mc[24], t0[16], t1[16];
			snprintf(mc, sizeof(mc), max ? "%u/%u" : "%u/-", conns, max);
			snprintf(t0, sizeof(t0), tokens[0] < 0 ? "-" : "%lld", tokens[0]);
			snprintf(t1, sizeof(t1), tokens[1] < 0 ? "-" : "%lld", tokens[1]);
			buf_append_printf(b, "%-40s %11s %10s %11s %-10s %11lld\n", shaping_state_name(slot), mc, t0, t1,
					  remaining > 0 ? "suspended" : "active", remaining);
		}
	}
}

/* session_shaping - shaping status (every site of the config, and any
 * other still suspended from an earlier one) or resume SITE. */
static void session_shaping(struct worker *w, struct control_session *s, const struct control_request *req)
{
	struct buf b;
	int64_t now = w->now_ms;

	if (req->site[0] != '\0') {
		size_t k;
		for (k = 0; k < shaping_state_count() && strcmp(shaping_state_name((unsigned)k), req->site) != 0; k++)
			;
		if (k == shaping_state_count()) {
			session_end(s, "-- error no site named %s (nor domain entry, source:NAME or SITE/SOURCE)", req->site);
			return;
		}
		bool was = shaping_state_resume((unsigned)k, now);
		shaping_resume(w, (unsigned)k);
		log_info("shaping_action", "action=resume site=%s source=operator was_suspended=%s", req->site,
			 was ? "yes" : "no");
		session_end(s, "-- ok %s resumed%s", req->site, was ? "" : " (it was not suspended nor lowered)");
		return;
	}
	buf_init(&b, 1 << 20);
	if (!req->json)
		buf_append_printf(&b, "%-24s %-10s %12s %12s %11s %9s %9s  %s\n", "SITE", "STATE", "REMAINING_S",
				  "SUSPENSIONS", "CONNECTIONS", "MSG_TOKENS", "CONN_TOKENS", "LOWERED");
	for (size_t k = 0; k < shaping_state_count(); k++) {
		const char *name = shaping_state_name((unsigned)k);
		int64_t until = shaping_state_until((unsigned)k);
		bool suspended = until > now;
		int idx = shaping_site_find(w->cfg->shaping, name);
		if ((idx < 0 && !suspended) || strchr(name, '/') != NULL || strncmp(name, "source:", 7) == 0)
			continue;    /* a site of an older config, idle; pairs and sources below */
		long long remaining = suspended ? (long long)((until - now + 999) / 1000) : 0;
		unsigned long long count = (unsigned long long)shaping_state_suspensions((unsigned)k);
		shaping_status_row(&b, w->cfg->shaping, idx, (unsigned)k, name, suspended, remaining, count, req->json, now);
	}
	/* Egress sources: today's messages against the warm-up's share, and
	 * a suspension (scope = "source"; resume source:NAME). */
	int64_t day = (int64_t)time(NULL) / 86400;
	for (size_t i = 0; i < shaping_source_count(w->cfg->shaping); i++) {
		const struct shaping_source *src = shaping_source_at(w->cfg->shaping, i);
		uint32_t sent = shaping_state_source_sent(src->slot, day), limit = shaping_source_daily_limit(src, day);
		int64_t until = shaping_state_until(src->suspend_slot);
		long long remaining = until > now ? (long long)((until - now + 999) / 1000) : 0;
		if (req->json) {
			buf_append_printf(&b, "{\"source\":\"%s\",\"address\":\"%s\",\"ehlo\":\"%s\",\"sent_today\":%u,\"daily_limit\":%u,"
					  "\"state\":\"%s\",\"remaining_s\":%lld,\"suspensions\":%llu}\n",
					  src->name, src->address, src->ehlo, sent, limit, remaining > 0 ? "suspended" : "active",
					  remaining, (unsigned long long)shaping_state_suspensions(src->suspend_slot));
			continue;
		}
		if (i == 0)
			buf_append_printf(&b, "\n%-24s %-40s %10s %11s %-10s %11s\n", "SOURCE", "ADDRESS", "SENT_TODAY",
					  "DAILY_LIMIT", "STATE", "REMAINING_S");
		char lim[16];
		snprintf(lim, sizeof(lim), limit ? "%u" : "-", limit);
		buf_append_printf(&b, "%-24s %-40s %10u %11s %-10s %11lld\n", src->name, src->address, sent, lim,
				  remaining > 0 ? "suspended" : "active", remaining);
	}
	shaping_status_pairs(&b, w->cfg->shaping, req->json, now);
	conn_write(s->c, buf_data(&b), buf_len(&b));
	buf_free(&b);
	session_end(s, "-- ok");
}

/* session_request - one request line. */
static void session_request(struct worker *w, struct control_session *s, const char *line)
{
	struct control_request req;
	char err[300];

	s->answered = true;
	if (control_parse(line, &req, err, sizeof(err)) < 0) {
		session_end(s, "-- error %s", err);
		return;
	}
	switch (req.command) {
	case CONTROL_QUEUE:
	case CONTROL_DOMAINS:
		query_start(w, s, &req);
		break;
	case CONTROL_STATS: {
		struct buf b;
		buf_init(&b, 1 << 20);
		int rc = metrics_stats(w, &b, req.json);
		conn_write(s->c, buf_data(&b), buf_len(&b));
		buf_free(&b);
		if (rc < 0)
			session_end(s, "-- error %s", strerror(-rc));
		else
			session_end(s, "-- ok");
		break;
	}
	case CONTROL_RELOAD:
		session_reload(w, s);
		break;
	case CONTROL_RESOLVE:
		session_resolve(w, s, &req);
		break;
	case CONTROL_SUPPRESSION:
		s->sup = control_suppression_start(w, s->c, &req.suppression, req.json);
		break;
	case CONTROL_SHAPING:
		session_shaping(w, s, &req);
		break;
	case CONTROL_CLUSTER: {
		struct buf b;
		buf_init(&b, 1 << 20);
		int rc = cluster_status_render(&b, req.json);
		conn_write(s->c, buf_data(&b), buf_len(&b));
		buf_free(&b);
		if (rc < 0)
			session_end(s, "-- error %s", strerror(-rc));
		else
			session_end(s, "-- ok");
		break;
	}
	}
}

/* ---- the connection --------------------------------------------------- */

static void control_open(struct conn *c)
{
	struct control_session *s = xcalloc(1, sizeof(*s));

	s->c = c;
	c->proto = s;
	conn_set_phase_timer(c, WORKER_TIMER_SMTP_COMMAND);
}

static size_t control_input(struct conn *c, const char *data, size_t len)
{
	struct control_session *s = c->proto;
	const char *nl;
	char line[CONTROL_MAX_LINE + 1];

	if (s != NULL && s->sup != NULL)
		return control_suppression_input(s->sup, data, len);   /* an import's lines */
	if (s == NULL || s->answered)
		return len;                  /* one request per connection */
	nl = memchr(data, '\n', len);
	if (nl == NULL) {
		if (len > CONTROL_MAX_LINE) {
			s->answered = true;
			session_end(s, "-- error request too long");
			return len;
		}
		return 0;                    /* wait for the rest of the line */
	}
	size_t n = (size_t)(nl - data);
	if (n > CONTROL_MAX_LINE) {
		s->answered = true;
		session_end(s, "-- error request too long");
		return len;
	}
	memcpy(line, data, n);
	line[n] = '\0';
	worker_timer_disarm(&c->phase_timer);
	session_request(c->w, s, line);
	if (s->sup != NULL && n + 1 < len)
		return n + 1 + control_suppression_input(s->sup, nl + 1, len - n - 1);
	return len;
}

static void control_drained(struct conn *c)
{
	struct control_session *s = c->proto;

	if (s != NULL && s->sup != NULL)
		control_suppression_drained(s->sup);
	if (s != NULL && s->wait_drain) {
		s->wait_drain = false;
		query_drive(c->w, s);
	}
}

static void control_timeout(struct conn *c, enum worker_timer_class cls)
{
	struct control_session *s = c->proto;

	(void)cls;
	if (s == NULL || !s->answered)
		conn_close(c);               /* no request in time */
	/* else: an answer is under way; it ends the connection itself */
}

static void control_shutdown(struct conn *c)
{
	conn_close(c);
}

/* reloading_remove - s no longer waits for a reload's result. */
static void reloading_remove(struct control_worker *cw, struct control_session *s)
{
	if (cw == NULL)
		return;
	for (struct control_session **p = &cw->reloading; *p != NULL; p = &(*p)->next_reloading) {
		if (*p == s) {
			*p = s->next_reloading;
			return;
		}
	}
}

static void control_close(struct conn *c)
{
	struct control_session *s = c->proto;

	if (s == NULL)
		return;
	c->proto = NULL;
	s->c = NULL;
	reloading_remove(c->w->control, s);
	s->sup = control_suppression_detach(s->sup);
	if (s->resolving && !delivery_resolve_cancel(c->w, resolve_answer, s))
		return;                      /* resolve_answer frees it */
	if (s->away)
		return;                      /* query_home finishes it */
	if (s->q == NULL) {
		session_free(s);
		return;
	}
	s->wait_drain = false;
	s->q->cancel = s->q->at_started && !s->q->at_done;
	s->q->at_done = !s->q->cancel;
	if (!s->q->cancel) {
		query_free(s->q);
		session_free(s);
		return;
	}
	query_drive(c->w, s);
}

static const struct conn_handler control_handler = {
	.name = "control",
	.open = control_open,
	.input = control_input,
	.drained = control_drained,
	.timeout = control_timeout,
	.shutdown = control_shutdown,
	.close = control_close,
	.idle_timer = WORKER_TIMER_SMTP_IDLE,   /* smtp.idle_timeout: no key of its own */
	.input_cap = NULL,                      /* CONN_INPUT_CAP_DEFAULT */
};

/* ---- reload results ---------------------------------------------------- */

static void reload_result_handle(struct worker *w, struct worker_post *p)
{
	struct reload_result *r = (struct reload_result *)p;
	struct control_session *s;

	while (w->control != NULL && (s = w->control->reloading) != NULL) {
		w->control->reloading = s->next_reloading;
		if (r->ok)
			session_end(s, "-- ok %s", r->text);
		else
			session_end(s, "-- error %s", r->text);
	}
	free(r);
}

static void reload_result_discard(struct worker_post *p)
{
	free(p);
}

void control_reload_done(struct worker *workers, bool ok, const char *text)
{
	struct reload_result *r = xcalloc(1, sizeof(*r));

	r->post.handle = reload_result_handle;
	r->post.discard = reload_result_discard;
	r->ok = ok;
	snprintf(r->text, sizeof(r->text), "%s", text);
	worker_post(NULL, &workers[0], &r->post);
}

/* ---- the listener (worker 0) ------------------------------------------ */

/* control_listen - bind the unix socket (replacing a stale one) with the
 * configured mode. */
static int control_listen(const char *path, int mode)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;      /* not ours to remove */
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || chmod(path, (mode_t)mode) < 0 ||
	    listen(fd, 64) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static int control_worker_init(struct worker *w)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int rc;

	if (w->id != 0 || w->role != WORKER_ROLE_SMTP)
		return 0;
	rc = config_control_path(w->cfg, path, sizeof(path));
	if (rc == -ENOENT)
		return 0;
	if (rc == 0)
		rc = control_listen(path, w->cfg->control_mode);
	if (rc < 0) {
		log_error("listen", "control=%s error=\"%s\"", w->cfg->control_socket, strerror(-rc));
		return rc;
	}
	struct control_worker *cw = xcalloc(1, sizeof(*cw));
	snprintf(cw->path, sizeof(cw->path), "%s", path);
	w->control = cw;
	worker_listener_start(w, &cw->listener, rc, &control_handler, "control");
	log_info("control_listen", "path=%s mode=%04o", path, (unsigned)w->cfg->control_mode);
	return 0;
}

static void control_worker_exit(struct worker *w)
{
	struct control_worker *cw = w->control;

	if (cw == NULL)
		return;
	if (cw->listener.fd >= 0) {
		close(cw->listener.fd);
		unlink(cw->path);
	}
	free(cw);
	w->control = NULL;
}

const struct worker_module control_module = {
	.name = "control",
	.init = control_worker_init,
	.exit = control_worker_exit,
};
