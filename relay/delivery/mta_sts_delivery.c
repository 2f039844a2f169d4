/*
 * mta_sts_delivery - MTA-STS applied to deliveries; see mta_sts_delivery.h.
 */
#include "mta_sts_delivery.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "helper.h"
#include "log.h"
#include "mta_sts_enforce.h"
#include "mta_sts_fetch.h"
#include "mta_sts_store.h"
#include "queue.h"
#include "tlsrpt_delivery.h"

_Static_assert(TLS_APPLIED_COUNT == DELIVERY_TLS_POLICIES, "delivery.h's count of TLS policies");

/* Fetches block a thread for up to mta_sts.fetch_timeout each: a few
 * threads, shared by every worker, so one slow web server does not hold
 * up the other domains' checks. */
static struct helper_pool sts_pool = HELPER_POOL_INIT("mta-sts", 4);

enum sts_state {
	STS_UNKNOWN,               /* never checked (or reaped and made again) */
	STS_QUEUED,                /* waiting for a TXT lookup slot (sts_txt_cap) */
	STS_TXT,                   /* _mta-sts TXT lookup in flight */
	STS_ADDRESS,               /* A/AAAA of mta-sts.DOMAIN in flight */
	STS_JOB,                   /* load/fetch/store on a helper thread */
	STS_KNOWN,                 /* checked at checked_ms */
	STS_STATE_COUNT
};

static const char *const sts_state_names[STS_STATE_COUNT] = {
	"unknown", "queued", "txt", "address", "job", "known",
};

struct sts_job;

struct mta_sts_domain {
	enum sts_state state;
	bool loaded;               /* the cache file was read (or found absent) */
	bool blocking;             /* d's mail waits for this check */
	bool in_gate;              /* inside the gate's lookup call: no kick from there */
	struct mta_sts_cached *cache;      /* the policy known, or NULL */
	int64_t checked_ms;        /* monotonic: the last check ended */
	enum mta_sts_txt_state txt;
	char id[MTA_STS_ID_MAX + 1];
	struct sts_job *job;       /* in flight, or NULL */
	const struct dns_route *reported;  /* testing: the route last reported */
	struct qdomain *queue_next;        /* in dl's queue while QUEUED */
};

struct sts_job {
	struct helper_job job;     /* first */
	struct delivery *dl;
	struct qdomain *d;         /* NULL once d is gone: the job is only freed */
	/* in */
	char domain[MTA_STS_NAME_MAX + 1];
	char *dir, *ca_file, *resolve;
	long timeout_ms;
	size_t max_bytes;
	bool load, may_fetch;
	enum mta_sts_txt_state txt;
	char id[MTA_STS_ID_MAX + 1];
	int64_t now_s, refresh_before_s;
	struct mta_sts_cached *cache;      /* in: known (owned by the job); out: the result */
	/* out */
	bool fetched;              /* a fetch was tried */
	int fetch_rc;              /* 0: a new policy, stored */
	int store_rc;
	int load_rc;
	char error[320];
};

const char *tls_applied_name(enum tls_applied p)
{
	static const char *const names[TLS_APPLIED_COUNT] = {
		"none", "opportunistic", "encrypt", "verify", "implicit", "mta-sts", "mta-sts-testing",
		"require-tls", "dane",
	};
	return (unsigned)p < TLS_APPLIED_COUNT ? names[p] : "?";
}

/* sts_applies - does MTA-STS govern d's mail? Only mail to its own MX
 * hosts, and not when the operator set the domain's tls. */
static bool sts_applies(const struct delivery *dl, const struct qdomain *d)
{
	const struct config *cfg = dl->w->cfg;
	const struct config_domain *p = config_domain_policy(cfg, d->name);

	if (d->tls_optional)
		return false;      /* "TLS-Required: No" (RFC 8689 5): the sender opted out */
	if (!cfg->mta_sts_enabled || d->hop != NULL || p->tls_set || dl->w->role == WORKER_ROLE_LOCAL ||
	    config_is_local_domain(cfg, d->name))
		return false;
	if ((p->route != NULL && p->route[0] != '\0') || cfg->relayhost[0] != '\0')
		return false;
	size_t n = strlen(d->name);
	return mta_sts_domain_valid(d->name, n) && d->name[n - 1] != '.';
}

static void sts_enter_state(struct qdomain *d, enum sts_state next)
{
	log_debug("mta_sts_state", "domain=%s from=%s to=%s", d->name, sts_state_names[d->sts->state],
		  sts_state_names[next]);
	d->sts->state = next;
}

bool mta_sts_delivery_busy(const struct qdomain *d)
{
	const struct mta_sts_domain *st = d->sts;
	return st != NULL && (st->state == STS_QUEUED || st->state == STS_TXT || st->state == STS_ADDRESS ||
			      st->state == STS_JOB);
}

struct mta_sts_domain *mta_sts_domain_free(struct mta_sts_domain *st)
{
	if (st == NULL)
		return NULL;
	if (st->job != NULL)
		st->job->d = NULL;         /* comes back to be freed only */
	free(st->cache);
	free(st);
	return NULL;
}

static struct sts_job *sts_job_free(struct sts_job *j)
{
	free(j->dir);
	free(j->ca_file);
	free(j->resolve);
	free(j->cache);
	free(j);
	return NULL;
}

/* ---- the answers ----------------------------------------------------- */

const struct mta_sts_policy *mta_sts_delivery_policy(const struct delivery *dl, const struct qdomain *d)
{
	const struct mta_sts_domain *st = d != NULL ? d->sts : NULL;

	if (st == NULL || st->cache == NULL || !sts_applies(dl, d))
		return NULL;
	if (!mta_sts_cache_valid(st->cache, wall_ms() / 1000) || st->cache->policy.mode == MTA_STS_MODE_NONE)
		return NULL;
	return &st->cache->policy;
}

enum config_tls_policy mta_sts_delivery_tls(const struct delivery *dl, const struct qdomain *d,
					    enum config_tls_policy configured)
{
	const struct mta_sts_policy *p = mta_sts_delivery_policy(dl, d);

	/* Under enforce the hosts used are the listed ones (the others are
	 * skipped), and mta_sts_enforce_host gives those "verify". */
	if (p == NULL || p->mode != MTA_STS_MODE_ENFORCE || p->mx_count == 0)
		return configured;
	return CONFIG_TLS_VERIFY;
}

bool mta_sts_delivery_host_allowed(const struct delivery *dl, const struct qdomain *d, const char *mx)
{
	const struct mta_sts_policy *p = mta_sts_delivery_policy(dl, d);

	return p == NULL || mta_sts_enforce_host(CONFIG_TLS_MAY, false, p, mx).allowed;
}

enum tls_applied mta_sts_delivery_applied(const struct delivery *dl, const struct qdomain *d,
					  enum config_tls_policy configured)
{
	const struct mta_sts_policy *p = mta_sts_delivery_policy(dl, d);

	if (p != NULL)
		return p->mode == MTA_STS_MODE_ENFORCE ? TLS_APPLIED_MTA_STS : TLS_APPLIED_MTA_STS_TESTING;
	switch (configured) {
	case CONFIG_TLS_NONE:
		return TLS_APPLIED_NONE;
	case CONFIG_TLS_MAY:
		return TLS_APPLIED_OPPORTUNISTIC;
	case CONFIG_TLS_ENCRYPT:
		return TLS_APPLIED_ENCRYPT;
	case CONFIG_TLS_VERIFY:
		return TLS_APPLIED_VERIFY;
	case CONFIG_TLS_IMPLICIT:
		return TLS_APPLIED_IMPLICIT;
	case CONFIG_TLS_DANE:
		return TLS_APPLIED_OPPORTUNISTIC;  /* a host without usable TLSA (dane_delivery_applied) */
	}
	return TLS_APPLIED_OPPORTUNISTIC;
}

/* hosts_text - the route's MX names, comma-separated, for a reason. */
static void hosts_text(char *out, size_t size, const struct dns_route *route)
{
	size_t n = 0;

	out[0] = '\0';
	for (size_t h = 0; h < route->host_count && n + 1 < size; h++) {
		int k = snprintf(out + n, size - n, "%s%s", h ? "," : "", route->hosts[h].name);
		if (k < 0 || (size_t)k >= size - n)
			break;
		n += (size_t)k;
	}
}

bool mta_sts_delivery_route_refused(struct delivery *dl, struct qdomain *d, const struct dns_route *route)
{
	const struct mta_sts_policy *p = mta_sts_delivery_policy(dl, d);
	char hosts[160], text[REPLY_TEXT_MAX];
	bool any = false;

	if (p == NULL)
		return false;
	for (size_t h = 0; h < route->host_count; h++) {
		struct mta_sts_host_decision dec = mta_sts_enforce_host(CONFIG_TLS_MAY, false, p, route->hosts[h].name);
		any |= dec.allowed;
		if (dec.report && d->sts->reported != route) {
			struct tlsrpt_where where = { .mx = route->hosts[h].name, .reason_code = "MX host not in the policy" };
			tlsrpt_delivery_sts_or_none(dl, d, TLSRPT_VALIDATION_FAILURE, &where);
			dl->stats.mta_sts_reports++;
			log_warn("mta_sts_report", "domain=%s mode=testing id=%s mx=%s would_refuse=\"%s\"", d->name,
				 d->sts->cache->id, route->hosts[h].name, "MX host not in the policy");
		}
	}
	d->sts->reported = route;
	if (any || p->mode != MTA_STS_MODE_ENFORCE || d->ready_head == NULL)
		return false;
	for (size_t h = 0; h < route->host_count; h++) {
		struct tlsrpt_where where = { .mx = route->hosts[h].name, .reason_code = "MX host not in the policy" };
		tlsrpt_delivery_sts_or_none(dl, d, TLSRPT_VALIDATION_FAILURE, &where);
	}
	hosts_text(hosts, sizeof(hosts), route);
	if (snprintf(text, sizeof(text), "MTA-STS policy of %s (mode enforce, id %s) lists none of its MX hosts (%s)",
		     d->name, d->sts->cache->id, hosts) >= (int)sizeof(text))
		memcpy(text + sizeof(text) - 4, "...", 4);    /* a long host list, cut */
	log_warn("mta_sts_refused", "domain=%s id=%s mx=%s reason=\"no MX host in the policy\" action=defer",
		 d->name, d->sts->cache->id, hosts);
	domain_defer_ready(dl, d, MTA_STS_DEFER_STATUS, text);
	return true;
}

/* ---- the check ------------------------------------------------------- */

/* refresh_window - how close to its end a policy is fetched again:
 * mta_sts.refresh_before, but at most half its max_age (a short-lived
 * policy is not fetched on every check). */
static int64_t refresh_window(int64_t refresh_before_s, const struct mta_sts_cached *c)
{
	int64_t half = c != NULL ? (int64_t)c->policy.max_age_s / 2 : 0;

	return c != NULL && half < refresh_before_s ? half : refresh_before_s;
}

static void sts_txt_done(enum dns_route_status status, const char *const *txts, const size_t *lens, size_t n,
			 void *arg);

/* sts_finish - the check ended: the answer applies from now on, and mail
 * that waited for it goes. */
static void sts_finish(struct delivery *dl, struct qdomain *d)
{
	struct mta_sts_domain *st = d->sts;
	bool waited = st->blocking;

	sts_enter_state(d, STS_KNOWN);
	st->checked_ms = dl->w->now_ms;
	st->blocking = false;
	/* An answer inside the gate's own call (a name the resolver refuses
	 * at once) needs no kick: the gate's caller goes on. */
	if (waited && !dl->stopping && !st->in_gate)
		domain_kick(dl, d);
}

/* sts_txt_cap - TXT lookups a worker runs at once: half of
 * dns.max_in_flight, so that thousands of new domains do not flood the
 * name server beside their MX lookups (which keep the other half). */
static unsigned sts_txt_cap(const struct delivery *dl)
{
	int64_t half = dl->w->cfg->dns_max_in_flight / 2;

	return half > 0 ? (unsigned)half : 1;
}

/* sts_txt_start - d's _mta-sts TXT lookup goes out. */
static void sts_txt_start(struct delivery *dl, struct qdomain *d)
{
	char name[MTA_STS_NAME_MAX + 16];

	snprintf(name, sizeof(name), "_mta-sts.%s", d->name);
	dl->sts_txt_running++;
	sts_enter_state(d, STS_TXT);
	dns_lookup_txt(dl->resolver, name, sts_txt_done, d, dl->w->now_ms);
}

/* sts_pump - queued domains start their lookups while there is room. */
static void sts_pump(struct delivery *dl)
{
	if (dl->sts_pumping)
		return;
	dl->sts_pumping = true;
	while (dl->sts_queue_head != NULL && dl->sts_txt_running < sts_txt_cap(dl) && !dl->stopping) {
		struct qdomain *d = dl->sts_queue_head;
		dl->sts_queue_head = d->sts->queue_next;
		if (dl->sts_queue_head == NULL)
			dl->sts_queue_tail = NULL;
		d->sts->queue_next = NULL;
		sts_txt_start(dl, d);
	}
	dl->sts_pumping = false;
}

bool mta_sts_delivery_gate(struct delivery *dl, struct qdomain *d)
{
	if (!sts_applies(dl, d))
		return false;
	if (d->sts == NULL)
		d->sts = xcalloc(1, sizeof(*d->sts));
	struct mta_sts_domain *st = d->sts;
	if (mta_sts_delivery_busy(d))
		return st->blocking;
	if (st->state == STS_KNOWN && dl->w->now_ms < st->checked_ms + dl->w->cfg->mta_sts_recheck_interval_ms &&
	    (st->cache == NULL || mta_sts_cache_valid(st->cache, wall_ms() / 1000)))
		return false;
	/* The first check holds the mail, and so does one whose policy ran
	 * out (it may have a successor); later ones run behind it. */
	st->blocking = st->state != STS_KNOWN || (st->cache != NULL && !mta_sts_cache_valid(st->cache, wall_ms() / 1000));
	if (dl->sts_txt_running >= sts_txt_cap(dl)) {
		sts_enter_state(d, STS_QUEUED);
		if (dl->sts_queue_tail != NULL)
			dl->sts_queue_tail->sts->queue_next = d;
		else
			dl->sts_queue_head = d;
		dl->sts_queue_tail = d;
		return st->blocking;
	}
	st->in_gate = true;
	sts_txt_start(dl, d);
	st->in_gate = false;
	return mta_sts_delivery_busy(d) && st->blocking;
}

/* sts_tlsrpt_fetch_failed - TLS-RPT: the policy could not be had
 * (RFC 8460 4.3.2.2), under the cached policy if one still applies. */
static void sts_tlsrpt_fetch_failed(struct delivery *dl, struct qdomain *d, const struct sts_job *j)
{
	enum tlsrpt_result r = TLSRPT_STS_POLICY_FETCH_ERROR;
	struct tlsrpt_where where = { .reason_code = j->error };

	if (j->fetch_rc == -EINVAL && strncmp(j->error, "the policy does not parse", 25) == 0)
		r = TLSRPT_STS_POLICY_INVALID;
	else if (j->fetch_rc == -EIO && (strstr(j->error, "certificate") != NULL || strstr(j->error, "SSL") != NULL))
		r = TLSRPT_STS_WEBPKI_INVALID;
	if (mta_sts_delivery_policy(dl, d) != NULL)
		tlsrpt_delivery_sts_or_none(dl, d, r, &where);
	else
		tlsrpt_delivery_record(dl, d, TLSRPT_POLICY_STS, NULL, NULL, r, &where);
}

/* sts_job_done - on the worker: the job's answer becomes d's. */
static void sts_job_done(struct helper_job *job)
{
	struct sts_job *j = (struct sts_job *)job;
	struct delivery *dl = j->dl;
	struct qdomain *d = j->d;

	dl->sts_jobs_out--;
	if (d == NULL) {
		sts_job_free(j);
		return;
	}
	struct mta_sts_domain *st = d->sts;
	st->job = NULL;
	st->loaded = true;
	if (j->load_rc < 0 && j->load_rc != -ENOENT)
		log_warn("mta_sts_cache", "domain=%s result=unreadable error=\"%s\"", d->name, j->error);
	if (j->fetched) {
		dl->stats.mta_sts_fetches++;
		if (j->fetch_rc == 0) {
			const struct mta_sts_policy *p = &j->cache->policy;
			log_info("mta_sts_fetch", "domain=%s result=ok id=%s mode=%s max_age=%u mx=%zu stored=%s",
				 d->name, j->cache->id, mta_sts_mode_name(p->mode), p->max_age_s, p->mx_count,
				 j->store_rc == 0 ? "yes" : "no");
			if (j->store_rc < 0)
				log_warn("mta_sts_cache", "domain=%s result=not_stored error=\"%s\"", d->name,
					 strerror(-j->store_rc));
		} else {
			dl->stats.mta_sts_fetch_failures++;
			sts_tlsrpt_fetch_failed(dl, d, j);
			log_warn("mta_sts_fetch", "domain=%s result=failed id=%s error=\"%s\" using=%s", d->name, j->id,
				 j->error, j->cache != NULL && mta_sts_cache_valid(j->cache, wall_ms() / 1000)
				 ? "cached" : "none");
		}
	}
	if (j->cache != st->cache && j->cache != NULL) {
		bool changed = st->cache == NULL || strcmp(st->cache->id, j->cache->id) != 0;
		free(st->cache);
		st->cache = j->cache;
		j->cache = NULL;
		if (changed)
			log_info("mta_sts_policy", "domain=%s id=%s mode=%s max_age=%u fetched=%lld", d->name,
				 st->cache->id, mta_sts_mode_name(st->cache->policy.mode), st->cache->policy.max_age_s,
				 (long long)st->cache->fetched_s);
	}
	sts_job_free(j);
	sts_finish(dl, d);
}

/* sts_job_run - on a helper thread: the cache file, the decision, the
 * fetch and the store. Blocking by design. */
static void sts_job_run(struct helper_job *job)
{
	struct sts_job *j = (struct sts_job *)job;
	const char *why = NULL;
	bool refresh = false;

	if (j->load) {
		struct mta_sts_cached *c = xcalloc(1, sizeof(*c));
		j->load_rc = mta_sts_store_load(j->dir, j->domain, c, &why);
		if (j->load_rc == 0 && j->cache == NULL) {
			j->cache = c;
		} else {
			if (j->load_rc < 0 && j->load_rc != -ENOENT)
				snprintf(j->error, sizeof(j->error), "%s/%s: %s", j->dir, j->domain,
					 j->load_rc == -EINVAL && why ? why : strerror(-j->load_rc));
			free(c);
		}
	}
	enum mta_sts_action a = mta_sts_decide(j->cache, j->txt, j->id, j->now_s,
					       refresh_window(j->refresh_before_s, j->cache), &refresh);
	if ((a != MTA_STS_FETCH && !refresh) || j->txt != MTA_STS_TXT_ID || !j->may_fetch) {
		if ((a == MTA_STS_FETCH || refresh) && j->txt == MTA_STS_TXT_ID) {
			j->fetched = true;
			j->fetch_rc = -EHOSTUNREACH;
			snprintf(j->error, sizeof(j->error), "mta-sts.%s: no address", j->domain);
		}
		return;
	}
	const char *resolve[] = { j->resolve, NULL };
	struct mta_sts_fetch_opts o = {
		.timeout_ms = j->timeout_ms, .max_bytes = j->max_bytes,
		.ca_file = j->ca_file[0] != '\0' ? j->ca_file : NULL, .resolve = resolve,
	};
	char *body = xmalloc(j->max_bytes + 1);
	size_t len = 0;
	j->fetched = true;
	j->fetch_rc = mta_sts_fetch(&o, j->domain, body, j->max_bytes, &len, j->error, sizeof(j->error));
	struct mta_sts_cached *c = NULL;
	if (j->fetch_rc == 0) {
		c = xcalloc(1, sizeof(*c));
		if (mta_sts_policy_parse(body, len, &c->policy, &why) < 0) {
			snprintf(j->error, sizeof(j->error), "the policy does not parse: %s", why);
			j->fetch_rc = -EINVAL;
			c = (free(c), NULL);
		}
	}
	if (c != NULL) {
		snprintf(c->id, sizeof(c->id), "%s", j->id);
		c->fetched_s = j->now_s;
		if (mkdir(j->dir, 0700) < 0 && errno != EEXIST)
			j->store_rc = -errno;
		else
			j->store_rc = mta_sts_store_save(j->dir, j->domain, j->id, j->now_s, body, len);
		free(j->cache);
		j->cache = c;
	}
	free(body);
}

/* sts_job_submit - the rest of the check on a helper thread; resolve is
 * libcurl's "host:port:addresses" (taken), or NULL: no fetch possible. */
static void sts_job_submit(struct delivery *dl, struct qdomain *d, char *resolve)
{
	const struct config *cfg = dl->w->cfg;
	struct mta_sts_domain *st = d->sts;
	struct sts_job *j = xcalloc(1, sizeof(*j));
	size_t dirlen = strlen(cfg->spool_dir) + sizeof("/mta-sts");

	j->dl = dl;
	j->d = d;
	snprintf(j->domain, sizeof(j->domain), "%s", d->name);
	j->dir = xmalloc(dirlen);
	snprintf(j->dir, dirlen, "%s/mta-sts", cfg->spool_dir);
	j->ca_file = xstrdup(cfg->tls_ca_file);
	j->resolve = resolve;
	j->timeout_ms = (long)cfg->mta_sts_fetch_timeout_ms;
	j->max_bytes = (size_t)cfg->mta_sts_max_policy_size;
	j->load = !st->loaded;
	j->may_fetch = resolve != NULL;
	j->txt = st->txt;
	memcpy(j->id, st->id, sizeof(j->id));
	j->now_s = wall_ms() / 1000;
	j->refresh_before_s = cfg->mta_sts_refresh_before_ms / 1000;
	if (st->cache != NULL) {
		j->cache = xmalloc(sizeof(*j->cache));
		*j->cache = *st->cache;
	}
	j->job.run = sts_job_run;
	j->job.done = sts_job_done;
	if (dl->sts_helpers == NULL)
		dl->sts_helpers = helper_worker_new(dl->w);
	if (dl->sts_helpers == NULL) {
		sts_job_free(j);
		sts_finish(dl, d);         /* logged; the policy known stays */
		return;
	}
	st->job = j;
	dl->sts_jobs_out++;
	sts_enter_state(d, STS_JOB);
	helper_submit(&sts_pool, dl->sts_helpers, &j->job);
}

/* sts_address_done - mta-sts.DOMAIN's addresses, for libcurl. */
static void sts_address_done(const struct dns_route *route, void *arg)
{
	struct qdomain *d = arg;
	struct delivery *dl = d->dl;
	char buf[1024], ip[64];
	size_t n = 0;

	if (dl->stopping) {
		sts_finish(dl, d);         /* no job that could outlive the worker */
		return;
	}
	if (route->status == DNS_ROUTE_OK && route->host_count > 0 && route->hosts[0].addr_count > 0) {
		const struct dns_host *h = &route->hosts[0];
		n = (size_t)snprintf(buf, sizeof(buf), "mta-sts.%s:%u:", d->name, (unsigned)dl->w->cfg->mta_sts_https_port);
		for (size_t a = 0; a < h->addr_count && n + 70 < sizeof(buf); a++) {
			dns_addr_format(&h->addrs[a], ip, sizeof(ip));
			bool v6 = h->addrs[a].sa.sa_family == AF_INET6;
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s%s%s", a ? "," : "", v6 ? "[" : "", ip,
					      v6 ? "]" : "");
		}
	} else {
		log_warn("mta_sts_fetch", "domain=%s result=failed error=\"mta-sts.%s: %s\"", d->name, d->name,
			 route->text[0] ? route->text : "no address");
	}
	sts_job_submit(dl, d, n > 0 ? xstrdup(buf) : NULL);
}

/* sts_txt_done - the _mta-sts TXT record: an id, none, or no answer. */
static void sts_txt_done(enum dns_route_status status, const char *const *txts, const size_t *lens, size_t n,
			 void *arg)
{
	struct qdomain *d = arg;
	struct delivery *dl = d->dl;
	struct mta_sts_domain *st = d->sts;
	const char *why = NULL;
	char target[MTA_STS_NAME_MAX + 32];

	dl->sts_txt_running--;
	st->txt = status == DNS_ROUTE_TEMPFAIL ? MTA_STS_TXT_TEMPFAIL : MTA_STS_TXT_NONE;
	st->id[0] = '\0';
	if (status == DNS_ROUTE_OK) {
		int rc = mta_sts_record_select(txts, lens, n, st->id, &why);
		if (rc > 0)
			st->txt = MTA_STS_TXT_ID;
		else if (rc < 0)
			log_warn("mta_sts_txt", "domain=%s result=invalid error=\"%s\"", d->name, why);
	}
	bool refresh = false;
	enum mta_sts_action a = mta_sts_decide(st->cache, st->txt, st->id, wall_ms() / 1000,
					       refresh_window(dl->w->cfg->mta_sts_refresh_before_ms / 1000, st->cache),
					       &refresh);
	/* A cache file may hold what the TXT record names: read it before
	 * fetching (the job does both). */
	if (dl->stopping) {
		sts_finish(dl, d);
	} else if (st->txt == MTA_STS_TXT_ID && (a == MTA_STS_FETCH || refresh)) {
		sts_enter_state(d, STS_ADDRESS);
		snprintf(target, sizeof(target), "[mta-sts.%s]:%u", d->name, (unsigned)dl->w->cfg->mta_sts_https_port);
		dns_resolve_next_hop(dl->resolver, target, sts_address_done, d, dl->w->now_ms);
	} else if (!st->loaded) {
		sts_job_submit(dl, d, NULL);
	} else {
		sts_finish(dl, d);
	}
	sts_pump(dl);
}

void mta_sts_delivery_exit(struct delivery *dl)
{
	if (dl->sts_jobs_out == 0)
		dl->sts_helpers = helper_worker_free(dl->sts_helpers);
	/* else: a helper thread still holds a job for this queue; the
	 * process is ending, and the queue stays for it to write to. */
}
