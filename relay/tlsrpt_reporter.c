/*
 * tlsrpt_reporter - TLS-RPT counts and reports on their own thread; see
 * tlsrpt_reporter.h.
 */
#include "tlsrpt_reporter.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dns.h"
#include "file_io.h"
#include "log.h"
#include "smtp_dkim.h"
#include "tlsrpt.h"
#include "tlsrpt_delivery.h"
#include "tlsrpt_queue.h"
#include "xalloc.h"

#define KEEP_PERIODS 7                  /* settled periods kept, in periods */
#define MAIL_WAIT_MS 30000              /* a report mail's commit, at most */
#define REPORT_MAX (16u << 20)          /* bytes of one gzipped report or mail */

struct reporter {
	pthread_t thread;
	bool running;
	_Atomic bool stop;
	_Atomic(const struct config *) pending;   /* held, for the thread to take */
	const struct config *cfg;                 /* held by the thread */
	struct worker *workers;
	char *dir;
	struct tlsrpt_period **periods;
	size_t period_count;
	bool dirty;
	int64_t saved_ms;
	struct dns_resolver *dns;
	bool warned_full;
};

static struct reporter rep;

static _Atomic uint64_t stat_reports_sent, stat_report_failures, stat_sessions, stat_late;

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

/* ---- the files ---------------------------------------------------------- */

static void period_path(const struct tlsrpt_period *p, char *out, size_t size)
{
	snprintf(out, size, "%s/%" PRId64 "-%" PRId64 ".json", rep.dir, p->start_s, p->end_s);
}

/* period_save - p's file replaced; logged on failure (kept in memory). */
static int period_save(const struct tlsrpt_period *p)
{
	char path[4096];
	json_t *j = tlsrpt_period_to_json(p);
	char *text = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	if (text == NULL)
		log_fatal("tlsrpt: out of memory");
	period_path(p, path, sizeof(path));
	struct iovec part = { text, strlen(text) };
	int rc = file_replace(rep.dir, path, &part, 1, 0600);
	if (rc < 0)
		log_error("tlsrpt_state", "path=%s result=not_saved error=\"%s\"", path, strerror(-rc));
	free(text);
	return rc;
}

static void save_all(void)
{
	for (size_t i = 0; i < rep.period_count; i++)
		period_save(rep.periods[i]);
	rep.dirty = false;
	rep.saved_ms = mono_ms();
}

static void period_append(struct tlsrpt_period *p)
{
	rep.periods = xreallocarray(rep.periods, rep.period_count + 1, sizeof(*rep.periods));
	rep.periods[rep.period_count++] = p;
}

/* load_one - a period file back into memory; a bad one is set aside. */
static void load_one(const char *name)
{
	char path[4096], bad[4200];
	json_error_t err;
	const char *why = NULL;

	snprintf(path, sizeof(path), "%s/%s", rep.dir, name);
	json_t *j = json_load_file(path, 0, &err);
	struct tlsrpt_period *p = j != NULL ? tlsrpt_period_from_json(j, &why) : NULL;
	json_decref(j);
	if (p == NULL) {
		snprintf(bad, sizeof(bad), "%s.bad", path);
		log_error("tlsrpt_state", "path=%s result=unreadable error=\"%s\" moved_to=%s", path,
			  why != NULL ? why : err.text, bad);
		rename(path, bad);
		return;
	}
	size_t domains = p->domain_count;
	period_append(p);
	log_info("tlsrpt_state", "path=%s result=loaded domains=%zu settled=%s", path, domains,
		 tlsrpt_period_settled(p) ? "yes" : "no");
}

static void load_all(void)
{
	DIR *d = opendir(rep.dir);
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n > 5 && strcmp(e->d_name + n - 5, ".json") == 0 && e->d_name[0] != '.')
			load_one(e->d_name);
	}
	closedir(d);
}

/* forget_old - settled periods past KEEP_PERIODS periods: file and memory. */
static void forget_old(int64_t now)
{
	for (size_t i = 0; i < rep.period_count;) {
		struct tlsrpt_period *p = rep.periods[i];
		if (!tlsrpt_period_settled(p) || now < p->end_s + KEEP_PERIODS * (p->end_s - p->start_s)) {
			i++;
			continue;
		}
		char path[4096];
		period_path(p, path, sizeof(path));
		unlink(path);
		tlsrpt_period_free(p);
		rep.periods[i] = rep.periods[--rep.period_count];
	}
}

/* ---- counting ----------------------------------------------------------- */

static struct tlsrpt_period *period_of(int64_t t)
{
	for (size_t i = 0; i < rep.period_count; i++)
		if (rep.periods[i]->start_s <= t && t < rep.periods[i]->end_s)
			return rep.periods[i];
	int64_t len = rep.cfg->tls_rpt_report_interval_ms / 1000;
	int64_t start = t - ((t % len) + len) % len;
	struct tlsrpt_period *p = tlsrpt_period_new(start, start + len);
	period_append(p);
	return p;
}

static void drain(void)
{
	struct tlsrpt_queued *q = tlsrpt_queue_take_all();

	while (q != NULL) {
		struct tlsrpt_queued *next = tlsrpt_queued_next(q);
		int rc = tlsrpt_period_add(period_of(q->e.time_s), &q->e, (size_t)rep.cfg->tls_rpt_max_domains);
		if (rc == 0) {
			rep.dirty = true;
			atomic_fetch_add(&stat_sessions, 1);
		} else if (rc == -EALREADY) {
			atomic_fetch_add(&stat_late, 1);
		} else if (rc == -ENOSPC && !rep.warned_full) {
			rep.warned_full = true;
			log_warn("tlsrpt_limit", "domain=%s note=\"tls_rpt.max_domains reached: more domains are not counted this period\"",
				 q->e.domain);
		}
		tlsrpt_queued_free(q);
		q = next;
	}
}

/* ---- DNS on this thread -------------------------------------------------- */

struct txt_wait {
	bool done;
	enum dns_route_status status;
	struct tlsrpt_rua rua;
	int rc;
	const char *why;
};

struct route_wait {
	bool done;
	char resolve[1024];
};

/* dns_run - drive the resolver until *done or the deadline. */
static void dns_run(const bool *done, int64_t limit_ms)
{
	int64_t deadline = mono_ms() + limit_ms;

	while (!*done && mono_ms() < deadline) {
		int64_t now = mono_ms();
		int64_t t = dns_resolver_next_timeout_ms(rep.dns, now);
		if (t < 0 || t > 200)
			t = 200;
		struct pollfd pfd = { .fd = dns_resolver_fd(rep.dns), .events = POLLIN };
		if (poll(&pfd, 1, (int)t) > 0)
			dns_resolver_on_readable(rep.dns, mono_ms());
		dns_resolver_on_timer(rep.dns, mono_ms());
	}
}

static void txt_done(enum dns_route_status status, const char *const *txts, const size_t *lens, size_t n, void *arg)
{
	struct txt_wait *w = arg;

	w->status = status;
	w->rc = 0;
	if (status == DNS_ROUTE_OK)
		w->rc = tlsrpt_record_select(txts, lens, n, &w->rua, &w->why);
	w->done = true;
}

static void route_done(const struct dns_route *route, void *arg)
{
	struct route_wait *w = arg;
	char ip[64];
	size_t n = strlen(w->resolve);

	if (route->status == DNS_ROUTE_OK && route->host_count > 0) {
		const struct dns_host *h = &route->hosts[0];
		for (size_t a = 0; a < h->addr_count && n + 70 < sizeof(w->resolve); a++) {
			bool v6 = h->addrs[a].sa.sa_family == AF_INET6;
			dns_addr_format(&h->addrs[a], ip, sizeof(ip));
			n += (size_t)snprintf(w->resolve + n, sizeof(w->resolve) - n, "%s%s%s%s",
					      a ? "," : "", v6 ? "[" : "", ip, v6 ? "]" : "");
		}
	}
	w->done = true;
}

static int64_t dns_limit_ms(void)
{
	return rep.cfg->dns_timeout_ms * rep.cfg->dns_tries + 1000;
}

static bool dns_ready(void)
{
	if (rep.dns != NULL)
		return true;
	const struct config *cfg = rep.cfg;
	struct dns_options o = {
		.nameservers = (const char *const *)cfg->dns_nameservers,
		.nameserver_count = cfg->dns_nameserver_count,
		.cache_max_entries = 64,
		.family = strcmp(cfg->dns_ip_mode, "ipv6") == 0 ? DNS_FAMILY_IPV6 :
			  strcmp(cfg->dns_ip_mode, "both") == 0 ? DNS_FAMILY_BOTH : DNS_FAMILY_IPV4,
		.timeout_s = (int)(cfg->dns_timeout_ms / 1000),
		.tries = (int)cfg->dns_tries,
		.ttl_max_s = 60,
	};
	char err[256];
	rep.dns = dns_resolver_new(&o, err, sizeof(err));
	if (rep.dns == NULL)
		log_error("tlsrpt_dns", "error=\"%s\"", err);
	return rep.dns != NULL;
}

/* ---- sending ------------------------------------------------------------- */

static const char *sender_of(char *buf, size_t size)
{
	if (rep.cfg->tls_rpt_sender[0] != '\0')
		return rep.cfg->tls_rpt_sender;
	snprintf(buf, size, "postmaster@%s", rep.cfg->hostname);
	return buf;
}

/* send_mail - the report mail into the queue through worker 0; 0 or
 * -errno with why. */
static int send_mail(const struct tlsrpt_domain *d, const struct tlsrpt_period *p, const char *uri, size_t index,
		     const struct buf *gz, char *why, size_t whylen)
{
	char to[TLSRPT_URI_MAX + 1], sbuf[300], msgid[200];
	const char *sender = sender_of(sbuf, sizeof(sbuf));
	const char *org = rep.cfg->tls_rpt_organization_name[0] ? rep.cfg->tls_rpt_organization_name : rep.cfg->hostname;

	if (tlsrpt_mailto_address(uri, to, sizeof(to)) < 0) {
		snprintf(why, whylen, "not a mailto address");
		return -EINVAL;
	}
	snprintf(msgid, sizeof(msgid), "<%zu.%s>", index, d->report_id);
	struct tlsrpt_mail m = {
		.from = sender, .to = to, .submitter = strchr(sender, '@') + 1, .policy_domain = d->name,
		.report_id = d->report_id, .organization_name = org, .start_s = p->start_s, .end_s = p->end_s,
		.now_s = now_s(), .message_id = msgid, .gzip = buf_data(gz), .gzip_len = buf_len(gz),
	};
	struct buf mail;
	buf_init(&mail, REPORT_MAX * 2);
	if (tlsrpt_mail_build(&m, &mail) < 0) {
		buf_free(&mail);
		snprintf(why, whylen, "report mail too large");
		return -ENOBUFS;
	}
	const char *body = buf_data(&mail);
	size_t len = buf_len(&mail);
	struct smtp_dkim_job *sig = NULL;
	if (smtp_dkim_enabled(rep.cfg)) {
		sig = smtp_dkim_job_new(rep.cfg, body, len, NULL, NULL);
		smtp_dkim_sign(sig);
		if (sig->result == 0) {
			body = buf_data(&sig->message);
			len = buf_len(&sig->message);
		}
	}
	struct tlsrpt_mail_job *j = tlsrpt_mail_job_new(sender, to, body, len);
	sig = smtp_dkim_job_free(sig);
	buf_free(&mail);
	tlsrpt_mail_job_post(&rep.workers[0], j);
	int64_t deadline = mono_ms() + MAIL_WAIT_MS;
	int rc;
	while ((rc = tlsrpt_mail_job_result(j)) == 1 && mono_ms() < deadline) {
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	if (rc == 0)
		log_info("tlsrpt_mail_queued", "domain=%s to=<%s> id=%s", d->name, to, tlsrpt_mail_job_queue_id(j));
	else
		snprintf(why, whylen, "queueing the mail: %s", rc == 1 ? "timed out" : strerror(-rc));
	tlsrpt_mail_job_release(j);
	return rc == 0 ? 0 : rc == 1 ? -ETIMEDOUT : rc;
}

/* https_host - host and port of an https:// URI. */
static int https_host(const char *uri, char *host, size_t size, unsigned *port)
{
	const char *p = uri + 8, *end = p;

	while (*end != '\0' && *end != '/' && *end != ':' && *end != '?' && *end != '#')
		end++;
	if (end == p || (size_t)(end - p) >= size || strchr(uri + 8, '@') != NULL)
		return -EINVAL;
	memcpy(host, p, (size_t)(end - p));
	host[end - p] = '\0';
	*port = 443;
	if (*end == ':') {
		char *stop;
		unsigned long v = strtoul(end + 1, &stop, 10);
		if (v == 0 || v > 65535)
			return -EINVAL;
		*port = (unsigned)v;
	}
	return 0;
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* send_https - POST the gzipped report; 0 on a 2xx. */
static int send_https(const char *uri, const struct buf *gz, char *why, size_t whylen)
{
	char host[256], target[300];
	unsigned port;
	struct route_wait w = { 0 };

	if (https_host(uri, host, sizeof(host), &port) < 0 || host[0] == '[') {
		snprintf(why, whylen, "unusable https URI");
		return -EINVAL;
	}
	snprintf(w.resolve, sizeof(w.resolve), "%s:%u:", host, port);
	size_t prefix = strlen(w.resolve);
	snprintf(target, sizeof(target), "[%s]:%u", host, port);
	dns_resolve_next_hop(rep.dns, target, route_done, &w, mono_ms());
	dns_run(&w.done, dns_limit_ms());
	if (!w.done)
		dns_resolve_cancel(rep.dns, route_done, &w);
	if (strlen(w.resolve) == prefix) {
		snprintf(why, whylen, "%.200s: no address", host);
		return -EHOSTUNREACH;
	}
	CURL *c = curl_easy_init();
	if (c == NULL) {
		snprintf(why, whylen, "curl_easy_init failed");
		return -ENOMEM;
	}
	struct curl_slist *resolve = curl_slist_append(NULL, w.resolve);
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/tlsrpt+gzip");
	char err[CURL_ERROR_SIZE] = "";
	struct stat st;
	const char *ca = rep.cfg->tls_ca_file;
	curl_easy_setopt(c, CURLOPT_URL, uri);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)rep.cfg->tls_rpt_http_timeout_ms);
	curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "ringmail tlsrpt");
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)buf_len(gz));
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, buf_data(gz));
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
	if (ca[0] != '\0')
		curl_easy_setopt(c, stat(ca, &st) == 0 && S_ISDIR(st.st_mode) ? CURLOPT_CAPATH : CURLOPT_CAINFO, ca);
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	curl_slist_free_all(resolve);
	curl_slist_free_all(headers);
	if (rc != CURLE_OK) {
		snprintf(why, whylen, "%s", err[0] ? err : curl_easy_strerror(rc));
		return -EIO;
	}
	if (status < 200 || status > 299) {
		snprintf(why, whylen, "HTTP status %ld", status);
		return -EPROTO;
	}
	return 0;
}

/* ---- reporting ----------------------------------------------------------- */

/* lookup_rua - the domain's rua, once per report: 1 found, 0 none (the
 * domain wants no report), -EAGAIN when DNS did not answer. */
static int lookup_rua(struct tlsrpt_domain *d)
{
	char name[300];
	struct txt_wait w = { 0 };

	snprintf(name, sizeof(name), "_smtp._tls.%s", d->name);
	dns_lookup_txt(rep.dns, name, txt_done, &w, mono_ms());
	dns_run(&w.done, dns_limit_ms());
	if (!w.done)
		rep.dns = dns_resolver_free(rep.dns);  /* its callback must not find w gone */
	if (!w.done || w.status == DNS_ROUTE_TEMPFAIL)
		return -EAGAIN;
	if (w.status != DNS_ROUTE_OK || w.rc <= 0) {
		if (w.rc < 0)
			log_warn("tlsrpt_txt", "domain=%s result=invalid error=\"%s\"", d->name, w.why);
		return 0;
	}
	d->rua = w.rua;
	d->rua_known = true;
	return 1;
}

static void make_report_id(struct tlsrpt_domain *d, const struct tlsrpt_period *p)
{
	char sbuf[300];
	const char *sender = sender_of(sbuf, sizeof(sbuf));
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)mono_ms() ^ ((uint64_t)getpid() << 32);

	for (const char *s = d->name; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	snprintf(d->report_id, sizeof(d->report_id), "%" PRId64 ".%016" PRIx64 "@%.40s", p->start_s, h,
		 strchr(sender, '@') + 1);
}

/* report_domain - one attempt at d's report: lookup, build, send to the
 * rua URIs that have not taken it; its state is saved by the caller. */
static void report_domain(struct tlsrpt_period *p, struct tlsrpt_domain *d, int64_t now)
{
	char why[512] = "";
	const struct config *cfg = rep.cfg;

	d->attempts++;
	if (!d->rua_known) {
		int rc = lookup_rua(d);
		if (rc == 0 || (rc > 0 && d->rua.count == 0)) {
			d->state = TLSRPT_REPORT_NO_RECORD;
			log_info("tlsrpt_report", "domain=%s period=%" PRId64 " result=no_record", d->name, p->start_s);
			return;
		}
		if (rc < 0)
			snprintf(why, sizeof(why), "_smtp._tls.%s: DNS did not answer", d->name);
	}
	if (d->rua_known) {
		if (d->report_id[0] == '\0')
			make_report_id(d, p);
		const char *org = cfg->tls_rpt_organization_name[0] ? cfg->tls_rpt_organization_name : cfg->hostname;
		char sbuf[300];
		const char *contact = cfg->tls_rpt_contact_info[0] ? cfg->tls_rpt_contact_info : sender_of(sbuf, sizeof(sbuf));
		struct tlsrpt_report_meta meta = { .organization_name = org, .contact_info = contact,
						   .report_id = d->report_id, .start_s = p->start_s, .end_s = p->end_s };
		char *json = tlsrpt_report_json(&meta, d);
		struct buf gz;
		buf_init(&gz, REPORT_MAX);
		int grc = tlsrpt_gzip(json, strlen(json), &gz);
		free(json);
		for (size_t i = 0; grc == 0 && i < d->rua.count; i++) {
			if (d->rua_done & (1u << i))
				continue;
			char one[256] = "";
			const char *uri = d->rua.uri[i];
			int rc = strncasecmp(uri, "mailto:", 7) == 0 ? send_mail(d, p, uri, i, &gz, one, sizeof(one))
								      : send_https(uri, &gz, one, sizeof(one));
			if (rc == 0) {
				d->rua_done |= 1u << i;
				log_info("tlsrpt_report", "domain=%s period=%" PRId64 " rua=\"%s\" result=sent report_id=%s bytes=%zu",
					 d->name, p->start_s, uri, d->report_id, buf_len(&gz));
			} else {
				log_warn("tlsrpt_report", "domain=%s period=%" PRId64 " rua=\"%s\" result=failed attempt=%u error=\"%s\"",
					 d->name, p->start_s, uri, d->attempts, one);
				snprintf(why, sizeof(why), "%s: %s", uri, one);
			}
		}
		if (grc < 0)
			snprintf(why, sizeof(why), "gzip failed");
		buf_free(&gz);
		if (grc == 0 && d->rua_done == (d->rua.count >= 32 ? UINT32_MAX : (1u << d->rua.count) - 1)) {
			d->state = TLSRPT_REPORT_SENT;
			atomic_fetch_add(&stat_reports_sent, 1);
			return;
		}
	}
	atomic_fetch_add(&stat_report_failures, 1);
	if (d->attempts >= (unsigned)cfg->tls_rpt_max_attempts) {
		d->state = TLSRPT_REPORT_FAILED;
		log_error("tlsrpt_report", "domain=%s period=%" PRId64 " result=given_up attempts=%u error=\"%s\"", d->name,
			  p->start_s, d->attempts, why);
		return;
	}
	d->next_attempt_s = now + cfg->tls_rpt_retry_interval_ms / 1000;
}

/* report_due - the reports of every period that has ended. */
static void report_due(int64_t now)
{
	int64_t delay = rep.cfg->tls_rpt_report_delay_ms / 1000;

	for (size_t i = 0; i < rep.period_count && !atomic_load(&rep.stop); i++) {
		struct tlsrpt_period *p = rep.periods[i];
		if (now < p->end_s + delay || tlsrpt_period_settled(p))
			continue;
		for (size_t k = 0; k < p->domain_count && !atomic_load(&rep.stop); k++) {
			struct tlsrpt_domain *d = p->domains[k];
			if (d->state != TLSRPT_REPORT_PENDING || d->next_attempt_s > now || !dns_ready())
				continue;
			report_domain(p, d, now);
			period_save(p);
			drain();           /* the workers go on meanwhile */
		}
	}
}

/* ---- the thread ---------------------------------------------------------- */

static void take_config(void)
{
	const struct config *next = atomic_exchange(&rep.pending, NULL);

	if (next == NULL)
		return;
	bool dns_changed = rep.cfg == NULL || rep.cfg->dns_nameserver_count != next->dns_nameserver_count;
	config_release(rep.cfg);
	rep.cfg = next;
	if (dns_changed)
		rep.dns = dns_resolver_free(rep.dns);
	tlsrpt_queue_enable((size_t)rep.cfg->tls_rpt_max_queued);
}

static void *reporter_main(void *arg)
{
	(void)arg;
	take_config();
	load_all();
	while (!atomic_load(&rep.stop)) {
		take_config();
		drain();
		int64_t now = now_s();
		if (rep.dirty && mono_ms() - rep.saved_ms >= rep.cfg->tls_rpt_save_interval_ms)
			save_all();
		report_due(now);
		forget_old(now);
		struct timespec ts = { 0, TLSRPT_QUEUE_POLL_MS * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	drain();
	save_all();
	return NULL;
}

int tlsrpt_reporter_start(const struct config *cfg, struct worker *workers)
{
	rep.workers = workers;             /* a reload may enable it later */
	if (!cfg->tls_rpt_enabled || rep.running)
		return 0;
	size_t n = strlen(cfg->spool_dir) + sizeof("/tlsrpt");
	free(rep.dir);
	rep.dir = xmalloc(n);
	snprintf(rep.dir, n, "%s/tlsrpt", cfg->spool_dir);
	if (mkdir(rep.dir, 0700) < 0 && errno != EEXIST) {
		int rc = -errno;
		log_error("tlsrpt_start", "dir=%s error=\"%s\"", rep.dir, strerror(errno));
		return rc;
	}
	atomic_store(&rep.stop, false);
	atomic_store(&rep.pending, config_hold(cfg));
	tlsrpt_queue_enable((size_t)cfg->tls_rpt_max_queued);
	int rc = pthread_create(&rep.thread, NULL, reporter_main, NULL);
	if (rc != 0) {
		tlsrpt_queue_enable(0);
		config_release(atomic_exchange(&rep.pending, NULL));
		log_error("tlsrpt_start", "error=\"%s\"", strerror(rc));
		return -rc;
	}
	rep.running = true;
	log_info("tlsrpt_start", "dir=%s interval=%" PRId64 "s", rep.dir, cfg->tls_rpt_report_interval_ms / 1000);
	return 0;
}

void tlsrpt_reporter_stop(void)
{
	if (!rep.running)
		return;
	atomic_store(&rep.stop, true);
	pthread_join(rep.thread, NULL);
	rep.running = false;
	tlsrpt_queue_enable(0);
	for (struct tlsrpt_queued *q = tlsrpt_queue_take_all(), *next; q != NULL; q = next) {
		next = tlsrpt_queued_next(q);
		tlsrpt_queued_free(q);
	}
	for (size_t i = 0; i < rep.period_count; i++)
		tlsrpt_period_free(rep.periods[i]);
	free(rep.periods);
	rep.periods = NULL;
	rep.period_count = 0;
	rep.dns = dns_resolver_free(rep.dns);
	rep.cfg = config_release(rep.cfg);
	config_release(atomic_exchange(&rep.pending, NULL));
}

void tlsrpt_reporter_reload(const struct config *cfg)
{
	if (!rep.running) {
		if (cfg->tls_rpt_enabled && rep.workers != NULL)
			tlsrpt_reporter_start(cfg, rep.workers);
		return;
	}
	if (!cfg->tls_rpt_enabled) {
		tlsrpt_reporter_stop();
		return;
	}
	config_release(atomic_exchange(&rep.pending, config_hold(cfg)));
}

int tlsrpt_metrics_render(struct buf *out)
{
	return buf_append_printf(out,
		"# HELP ringmail_tlsrpt_reports_sent_total TLS-RPT reports (RFC 8460) sent: one per domain and period, taken by every rua URI.\n"
		"# TYPE ringmail_tlsrpt_reports_sent_total counter\nringmail_tlsrpt_reports_sent_total %" PRIu64 "\n"
		"# HELP ringmail_tlsrpt_report_failures_total TLS-RPT report attempts that failed (DNS, HTTPS, the queue); retried up to tls_rpt.max_attempts.\n"
		"# TYPE ringmail_tlsrpt_report_failures_total counter\nringmail_tlsrpt_report_failures_total %" PRIu64 "\n"
		"# HELP ringmail_tlsrpt_sessions_total TLS session results counted for TLS-RPT.\n"
		"# TYPE ringmail_tlsrpt_sessions_total counter\nringmail_tlsrpt_sessions_total %" PRIu64 "\n"
		"# HELP ringmail_tlsrpt_dropped_total TLS session results dropped: tls_rpt.max_queued waiting for the reporter.\n"
		"# TYPE ringmail_tlsrpt_dropped_total counter\nringmail_tlsrpt_dropped_total %" PRIu64 "\n"
		"# HELP ringmail_tlsrpt_late_total TLS session results for a domain whose report for that period had gone out.\n"
		"# TYPE ringmail_tlsrpt_late_total counter\nringmail_tlsrpt_late_total %" PRIu64 "\n",
		atomic_load(&stat_reports_sent), atomic_load(&stat_report_failures), atomic_load(&stat_sessions),
		tlsrpt_queue_dropped(), atomic_load(&stat_late));
}
