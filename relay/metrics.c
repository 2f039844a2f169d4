/*
 * metrics - snapshots and the Prometheus endpoint; see metrics.h.
 */
#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "listen_pool.h"
#include "delivery.h"
#include "http_server.h"
#include "log.h"
#include "mta_sts_delivery.h"
#include "shaping.h"
#include "cluster.h"
#include "smtp_server.h"
#include "version.h"
#include "webhook.h"
#include "tlsrpt_reporter.h"
#include "xalloc.h"

#define METRICS_MAX_BODY (1 << 20)

/* A worker's largest domain queues, published under a sequence count (odd
 * while being written): a reader retries on a torn copy. Every field is
 * atomic, so a torn read is only ever detected, never undefined. */
struct metrics_top {
	_Atomic unsigned seq;
	struct {
		_Atomic uint64_t items;
		_Atomic uint64_t name[METRICS_DOMAIN_NAME / 8];
	} e[METRICS_TOP_DOMAINS];
};

/* A worker's slot and, on worker 0, the listener. Only v and top are read
 * by other threads. */
struct metrics_worker {
	_Atomic uint64_t v[METRICS_COUNT];
	struct metrics_top top;
	int64_t next_publish_ms;
	struct worker_listener listener;   /* worker 0 with metrics.listen */
};

/* ---- rendering (pure) ------------------------------------------------- */

enum metric_kind { KIND_COUNTER, KIND_GAUGE, KIND_GAUGE_MAX };

static const struct metric_desc {
	enum metrics_id id;
	enum metric_kind kind;
	const char *name;
	const char *help;
} metric_descs[] = {
	{ METRICS_RECEIVED, KIND_COUNTER, "ringmail_received_total", "Messages accepted (durable in the spool, 250 said)." },
	{ METRICS_REJECTED_COMMITS, KIND_COUNTER, "ringmail_rejected_commits_total", "Messages refused with 452 because the spool commit failed (also ringmail_rejected_total{reason=\"spool_failed\"})." },
	{ METRICS_DELIVERED, KIND_COUNTER, "ringmail_delivered_total", "Recipients delivered." },
	{ METRICS_DEFERRED, KIND_COUNTER, "ringmail_deferred_total", "Recipient delivery attempts deferred (temporary failures)." },
	{ METRICS_BOUNCED, KIND_COUNTER, "ringmail_bounced_total", "Recipients bounced (permanent failure or expired)." },
	{ METRICS_DSN, KIND_COUNTER, "ringmail_dsn_total", "Delivery status notifications generated." },
	{ METRICS_CONN_ACCEPTED, KIND_COUNTER, "ringmail_inbound_connections_total", "Inbound connections accepted (SMTP, POP3, metrics)." },
	{ METRICS_CONN_REFUSED, KIND_COUNTER, "ringmail_inbound_refused_total", "Inbound connections refused at max_connections." },
	{ METRICS_CONN_OPENED, KIND_COUNTER, "ringmail_outbound_connections_total", "Outbound SMTP connections established." },
	{ METRICS_CONN_FAILED, KIND_COUNTER, "ringmail_outbound_connect_failures_total", "Outbound SMTP connects that failed." },
	{ METRICS_CONN_IN_NOW, KIND_GAUGE, "ringmail_inbound_connections", "Inbound connections open now." },
	{ METRICS_CONN_OUT_NOW, KIND_GAUGE, "ringmail_outbound_sessions", "Outbound SMTP sessions open now (connecting, busy or idle)." },
	{ METRICS_QUEUE_NOW, KIND_GAUGE, "ringmail_queue_items", "Queue items (a message's recipients for one domain) ready or waiting for a retry." },
	{ METRICS_SPOOL_LIVE, KIND_GAUGE, "ringmail_spool_messages", "Messages in the spool with recipients not yet final." },
	{ METRICS_SPOOL_SEGMENTS, KIND_GAUGE, "ringmail_spool_segments", "Spool segment files." },
	{ METRICS_SPOOL_BYTES, KIND_GAUGE, "ringmail_spool_bytes", "Bytes of records in every spool segment; on disk add the preallocated zeros, up to 2 x spool.preallocate per worker (the segment being written and the spare)." },
	{ METRICS_SPOOL_SEGMENT_BYTES, KIND_GAUGE, "ringmail_spool_current_segment_bytes", "Bytes in the segments being written (one per shard)." },
	{ METRICS_COMMIT_BATCHES, KIND_COUNTER, "ringmail_commit_batches_total", "Group commit batches (one write and fdatasync each)." },
	{ METRICS_COMMIT_RECORDS, KIND_COUNTER, "ringmail_commit_records_total", "Records made durable by group commits." },
	{ METRICS_COMMIT_FAILURES, KIND_COUNTER, "ringmail_commit_failures_total", "Group commit batches that failed." },
	{ METRICS_COMMIT_MAX_BATCH, KIND_GAUGE_MAX, "ringmail_commit_max_batch_records", "Largest group commit batch so far." },
	{ METRICS_DNS_HITS, KIND_COUNTER, "ringmail_dns_cache_hits_total", "Routes answered from the DNS cache." },
	{ METRICS_DNS_MISSES, KIND_COUNTER, "ringmail_dns_cache_misses_total", "Routes that started a lookup." },
	{ METRICS_DNS_QUERIES, KIND_COUNTER, "ringmail_dns_queries_total", "DNS queries sent (MX, A, AAAA)." },
	{ METRICS_DNS_FAILURES, KIND_COUNTER, "ringmail_dns_failures_total", "Route lookups that failed (temporarily or permanently)." },
	{ METRICS_DNS_CACHE_ENTRIES, KIND_GAUGE, "ringmail_dns_cache_entries", "Entries in the DNS caches." },
	{ METRICS_DOMAINS_NOW, KIND_GAUGE, "ringmail_domains", "Destination domains the workers hold (with mail, connections, a lookup or a backoff, or not yet reaped)." },
	{ METRICS_DOMAINS_REAPED, KIND_COUNTER, "ringmail_domains_reaped_total", "Idle destination domains forgotten (delivery.domain_reap_interval)." },
	{ METRICS_CONN_REUSED, KIND_COUNTER, "ringmail_outbound_sessions_reused_total", "Idle outbound sessions that carried another domain's mail to the same MX address." },
	{ METRICS_ADDRESSES_NOW, KIND_GAUGE, "ringmail_destination_addresses", "MX addresses (IP and port) the workers hold sessions, waiting domains or a backoff for." },
	{ METRICS_DOMAINS_WAITING_NOW, KIND_GAUGE, "ringmail_domains_waiting", "Domains waiting for an outbound connection (their MX address full, or the total cap reached)." },
	{ METRICS_CONN_OUT_CAP, KIND_GAUGE, "ringmail_outbound_sessions_limit", "Outbound sessions allowed in all (delivery.max_connections_total, as the workers share it)." },
	{ METRICS_DKIM_SIGNED_RSA, KIND_COUNTER, "ringmail_dkim_signed_rsa_total", "DKIM signatures made with RSA-SHA256 keys (a dual-signed message counts once here and once for Ed25519)." },
	{ METRICS_DKIM_SIGNED_ED25519, KIND_COUNTER, "ringmail_dkim_signed_ed25519_total", "DKIM signatures made with Ed25519-SHA256 keys." },
	{ METRICS_DKIM_FAILURES, KIND_COUNTER, "ringmail_dkim_failures_total", "DKIM signatures that could not be made (the message went on without them)." },
	{ METRICS_SUPPRESSION_ADDED, KIND_COUNTER, "ringmail_suppression_added_total", "Recipients put on the suppression list by their hard bounces (suppression.categories)." },
	{ METRICS_SUPPRESSION_BOUNCED, KIND_COUNTER, "ringmail_suppression_bounced_total", "Queued recipients bounced at delivery because they are on the suppression list (refusals at RCPT are ringmail_rejected_total{reason=\"suppressed\"})." },
	{ METRICS_SHAPING_SUSPEND, KIND_COUNTER, "ringmail_shaping_suspensions_total", "Sites or domains suspended by a shaping response rule (shaping.file)." },
	{ METRICS_SHAPING_BOUNCE, KIND_COUNTER, "ringmail_shaping_bounced_total", "Temporary failures bounced at once by a shaping response rule." },
	{ METRICS_SHAPING_SUPPRESS, KIND_COUNTER, "ringmail_shaping_suppressed_total", "Recipients put on the suppression list by a shaping response rule." },
	{ METRICS_SHAPING_PARKED, KIND_COUNTER, "ringmail_shaping_parked_total", "Queue items held back because their site or domain was suspended." },
	{ METRICS_SHAPING_LOWER, KIND_COUNTER, "ringmail_shaping_lowered_total", "Limits of a site or domain lowered for a while by a shaping response rule (action lower)." },
	{ METRICS_SHAPING_WAITS, KIND_COUNTER, "ringmail_shaping_waits_total", "Times a domain waited for a shaping limit (a rate's token or a connection slot), its mail kept ready, no attempt counted." },
	{ METRICS_HTTP_REQUESTS, KIND_COUNTER, "ringmail_http_requests_total", "Complete HTTP API requests (http.listen)." },
	{ METRICS_HTTP_2XX, KIND_COUNTER, "ringmail_http_responses_2xx_total", "HTTP API answers with a 2xx status." },
	{ METRICS_HTTP_4XX, KIND_COUNTER, "ringmail_http_responses_4xx_total", "HTTP API answers with a 4xx status (bad requests, tokens, limits)." },
	{ METRICS_HTTP_5XX, KIND_COUNTER, "ringmail_http_responses_5xx_total", "HTTP API answers with a 5xx status (the spool failed)." },
	{ METRICS_HTTP_UNAUTHORIZED, KIND_COUNTER, "ringmail_http_unauthorized_total", "HTTP API requests without a valid bearer token (401)." },
	{ METRICS_HTTP_FORBIDDEN, KIND_COUNTER, "ringmail_http_forbidden_total", "HTTP API requests with a token not allowed to inject (403)." },
	{ METRICS_HTTP_MESSAGES, KIND_COUNTER, "ringmail_http_injected_messages_total", "Messages injected over HTTP and made durable (also in the delivery counters, not in ringmail_received_total)." },
	{ METRICS_HTTP_RECIPIENTS, KIND_COUNTER, "ringmail_http_injected_recipients_total", "Recipients of the messages injected over HTTP." },
	{ METRICS_HTTP_FAILED_RECIPIENTS, KIND_COUNTER, "ringmail_http_failed_recipients_total", "Recipients refused in HTTP injections (bad address, no such mailbox, suppressed, spool failure)." },
	{ METRICS_MTA_STS_FETCHES, KIND_COUNTER, "ringmail_mta_sts_fetches_total", "MTA-STS policy fetches (https://mta-sts.DOMAIN/.well-known/mta-sts.txt) tried." },
	{ METRICS_MTA_STS_FETCH_FAILURES, KIND_COUNTER, "ringmail_mta_sts_fetch_failures_total", "MTA-STS policy fetches that failed (the cached policy, if any, went on applying)." },
	{ METRICS_MTA_STS_REFUSED, KIND_COUNTER, "ringmail_mta_sts_refused_total", "Recipient attempts deferred (4.7.x) under an MTA-STS policy in mode enforce: no listed MX host, or no verified TLS." },
	{ METRICS_MTA_STS_REPORTS, KIND_COUNTER, "ringmail_mta_sts_testing_reports_total", "MTA-STS policies in mode testing: hosts or connections enforce would have refused (delivered anyway, logged as mta_sts_report)." },
	{ METRICS_QUEUE_OLDEST_AGE, KIND_GAUGE_MAX, "ringmail_queue_oldest_age_seconds", "Age of the oldest queued item (its message's arrival), 0 when the queue is empty." },
	{ METRICS_TLS_OUT_FULL, KIND_COUNTER, "ringmail_outbound_tls_full_total", "Outbound TLS handshakes that were full (no session resumed)." },
	{ METRICS_TLS_OUT_RESUMED, KIND_COUNTER, "ringmail_outbound_tls_resumed_total", "Outbound TLS handshakes that resumed a cached session (delivery.tls_session_cache_size)." },
	{ METRICS_SHAPING_SOURCE_SUSPEND, KIND_COUNTER, "ringmail_shaping_source_suspensions_total", "Egress sources suspended by a shaping response rule with scope = \"source\" (for every site)." },
	{ METRICS_REQUIRETLS_DELIVERED, KIND_COUNTER, "ringmail_requiretls_delivered_total", "Recipients of REQUIRETLS messages (RFC 8689) delivered over authenticated TLS to a server offering REQUIRETLS." },
	{ METRICS_REQUIRETLS_REFUSED, KIND_COUNTER, "ringmail_requiretls_refused_total", "Recipients of REQUIRETLS messages bounced because the TLS was not authenticated (5.7.10) or the server did not offer REQUIRETLS (5.7.30)." },
	{ METRICS_DANE_LOOKUPS, KIND_COUNTER, "ringmail_dane_lookups_total", "TLSA lookups (_25._tcp.MX) for DANE (RFC 7672)." },
	{ METRICS_DANE_VERIFIED, KIND_COUNTER, "ringmail_dane_verified_total", "Outbound TLS handshakes whose certificate chain matched the MX host's TLSA records." },
	{ METRICS_DANE_FAILURES, KIND_COUNTER, "ringmail_dane_failures_total", "MX hosts refused under DANE: no match, no STARTTLS, a failed handshake, or a bogus TLSA answer (4.7.x deferral)." },
};

/* metrics_sum - one metric over every worker. */
static uint64_t metrics_sum(const struct metrics_values *workers, size_t n, size_t id, bool max)
{
	uint64_t total = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t v = workers[i].v[id];
		if (max)
			total = v > total ? v : total;
		else
			total += v;
	}
	return total;
}

/* render_rejected - ringmail_rejected_total, one line per enum smtp_reject
 * (zeros included: a dashboard sees every series from the start). */
static int render_rejected(struct buf *out, const struct metrics_values *workers, size_t n)
{
	static const char name[] = "ringmail_rejected_total";
	int rc = buf_append_printf(out, "# HELP %s Inbound SMTP refusals (replies, disconnects, "
				   "refused connections) by reason.\n# TYPE %s counter\n", name, name);

	for (size_t i = 0; i < SMTP_REJECT_COUNT && rc == 0; i++)
		rc = buf_append_printf(out, "%s{reason=\"%s\"} %llu\n", name,
				       smtp_reject_name((enum smtp_reject)i),
				       (unsigned long long)metrics_sum(workers, n, METRICS_REJECTED + i,
								       false));
	return rc;
}

/* The result label of ringmail_proxy_headers_total, by enum
 * worker_proxy_result. */
static const char *const proxy_result_names[WORKER_PROXY_RESULTS] = {
	[WORKER_PROXY_OK] = "ok",
	[WORKER_PROXY_KEPT_PEER] = "kept_peer",
	[WORKER_PROXY_BAD] = "bad",
	[WORKER_PROXY_TIMEOUT] = "timeout",
};

/* render_proxy_headers - ringmail_proxy_headers_total, one line per
 * result (zeros included, as for the refusals). */
static int render_proxy_headers(struct buf *out, const struct metrics_values *workers, size_t n)
{
	static const char name[] = "ringmail_proxy_headers_total";
	int rc = buf_append_printf(out, "# HELP %s PROXY protocol headers on proxy_protocol.listeners by "
				   "result: ok (client address taken), kept_peer (LOCAL, UNKNOWN), bad and "
				   "timeout (connection closed).\n# TYPE %s counter\n", name, name);

	for (size_t i = 0; i < WORKER_PROXY_RESULTS && rc == 0; i++)
		rc = buf_append_printf(out, "%s{result=\"%s\"} %llu\n", name, proxy_result_names[i],
				       (unsigned long long)metrics_sum(workers, n, METRICS_PROXY_HEADERS + i,
								       false));
	return rc;
}

/* render_categories - ringmail_bounce_category_total by outcome (bounced,
 * deferred) and category, zeros included. */
static int render_categories(struct buf *out, const struct metrics_values *workers, size_t n)
{
	static const char name[] = "ringmail_bounce_category_total";
	static const char *const outcomes[2] = { "bounced", "deferred" };
	int rc = buf_append_printf(out, "# HELP %s Bounced and deferred recipients by bounce "
				   "category (share/bounce-patterns.txt).\n# TYPE %s counter\n", name, name);

	for (size_t o = 0; o < 2 && rc == 0; o++)
		for (size_t k = 0; k < BOUNCE_CAT_COUNT && rc == 0; k++)
			rc = buf_append_printf(out, "%s{outcome=\"%s\",category=\"%s\"} %llu\n", name,
					       outcomes[o], bounce_category_name((enum bounce_category)k),
					       (unsigned long long)metrics_sum(workers, n,
							METRICS_CATEGORY + o * BOUNCE_CAT_COUNT + k, false));
	return rc;
}

/* render_tls_policies - ringmail_delivery_tls_policy_total by the policy
 * that applied (docs/TLS.md), zeros included. */
static int render_tls_policies(struct buf *out, const struct metrics_values *workers, size_t n)
{
	static const char name[] = "ringmail_delivery_tls_policy_total";
	int rc = buf_append_printf(out, "# HELP %s Recipient delivery attempts by the outbound TLS policy "
				   "that applied.\n# TYPE %s counter\n", name, name);

	for (size_t k = 0; k < DELIVERY_TLS_POLICIES && rc == 0; k++)
		rc = buf_append_printf(out, "%s{policy=\"%s\"} %llu\n", name, tls_applied_name((enum tls_applied)k),
				       (unsigned long long)metrics_sum(workers, n, METRICS_TLS_POLICY + k, false));
	return rc;
}

/* append_label_value - a label value, escaping \\, \" and newline as the
 * text format 0.0.4 asks. */
static int append_label_value(struct buf *out, const char *value)
{
	int rc = 0;

	for (const char *p = value; *p && rc == 0; p++)
		rc = *p == '\\' || *p == '"' ? buf_append_printf(out, "\\%c", *p) :
		     *p == '\n' ? buf_append_str(out, "\\n") : buf_append(out, p, 1);
	return rc;
}

static int domain_cmp(const void *a, const void *b)
{
	const struct metrics_domain *x = a, *y = b;

	if (x->items != y->items)
		return x->items > y->items ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* render_top_domains - ringmail_domain_queue_items for the largest queues
 * over all workers. Each domain lives on one worker, so the top of the
 * workers' tops is the top of all. */
static int render_top_domains(struct buf *out, const struct metrics_values *workers, size_t n)
{
	static const char name[] = "ringmail_domain_queue_items";
	struct metrics_domain *all = calloc(n * METRICS_TOP_DOMAINS + 1, sizeof(*all));
	size_t count = 0;
	int rc;

	if (all == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < METRICS_TOP_DOMAINS && workers[i].top[k].items > 0; k++)
			all[count++] = workers[i].top[k];
	qsort(all, count, sizeof(*all), domain_cmp);
	rc = buf_append_printf(out, "# HELP %s Queue items of the %d domains with the most.\n# TYPE %s gauge\n",
			       name, METRICS_TOP_DOMAINS, name);
	for (size_t i = 0; i < count && i < METRICS_TOP_DOMAINS && rc == 0; i++) {
		rc = buf_append_printf(out, "%s{domain=\"", name);
		if (rc == 0)
			rc = append_label_value(out, all[i].name);
		if (rc == 0)
			rc = buf_append_printf(out, "\"} %llu\n", (unsigned long long)all[i].items);
	}
	free(all);
	return rc;
}

/* render_histogram - buckets (cumulative), _sum and _count. bound(i) is
 * base << i in units of scale (e.g. 1e-6 for microseconds as seconds). */
static int render_histogram(struct buf *out, const struct metrics_values *workers, size_t n,
			    const char *name, const char *help, size_t first, unsigned buckets,
			    uint64_t base, double scale, double sum)
{
	uint64_t cumulative = 0;
	int rc = buf_append_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);

	for (unsigned i = 0; i < buckets && rc == 0; i++) {
		cumulative += metrics_sum(workers, n, first + i, false);
		if (i + 1 < buckets)
			rc = buf_append_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name,
					       (double)(base << i) * scale, (unsigned long long)cumulative);
		else
			rc = buf_append_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name,
					       (unsigned long long)cumulative);
	}
	if (rc == 0)
		rc = buf_append_printf(out, "%s_sum %.6f\n%s_count %llu\n", name, sum, name,
				       (unsigned long long)cumulative);
	return rc;
}

int metrics_render(struct buf *out, const struct metrics_values *workers, size_t n)
{
	int rc = 0;

	for (size_t i = 0; i < sizeof(metric_descs) / sizeof(metric_descs[0]) && rc == 0; i++) {
		const struct metric_desc *d = &metric_descs[i];
		uint64_t v = metrics_sum(workers, n, d->id, d->kind == KIND_GAUGE_MAX);
		rc = buf_append_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", d->name, d->help,
				       d->name, d->kind == KIND_COUNTER ? "counter" : "gauge",
				       d->name, (unsigned long long)v);
	}
	if (rc == 0)
		rc = render_rejected(out, workers, n);
	if (rc == 0)
		rc = render_proxy_headers(out, workers, n);
	if (rc == 0)
		rc = render_categories(out, workers, n);
	if (rc == 0)
		rc = render_tls_policies(out, workers, n);
	if (rc == 0)
		rc = render_top_domains(out, workers, n);
	if (rc == 0)
		rc = render_histogram(out, workers, n, "ringmail_commit_batch_records",
				      "Records per group commit batch.", METRICS_COMMIT_BATCH_HIST,
				      COMMIT_BATCH_BUCKETS, 1, 1.0,
				      (double)metrics_sum(workers, n, METRICS_COMMIT_RECORDS, false));
	if (rc == 0)
		rc = render_histogram(out, workers, n, "ringmail_commit_sync_seconds",
				      "Group commit latency: write and fdatasync, submit to completion.",
				      METRICS_COMMIT_SYNC_HIST, COMMIT_SYNC_BUCKETS, 125, 1e-6,
				      (double)metrics_sum(workers, n, METRICS_COMMIT_SYNC_SUM_US, false) / 1e6);
	return rc;
}

int metrics_render_process(struct buf *out, const struct metrics_process *p)
{
	int rc = buf_append_str(out, "# HELP ringmail_build_info The ringmaild version (always 1).\n"
				"# TYPE ringmail_build_info gauge\nringmail_build_info{version=\"");

	if (rc == 0)
		rc = append_label_value(out, p->version);
	if (rc == 0)
		rc = buf_append_printf(out, "\"} 1\n# HELP process_start_time_seconds Start time of the "
				       "process since the Unix epoch in seconds.\n"
				       "# TYPE process_start_time_seconds gauge\n"
				       "process_start_time_seconds %.3f\n", p->start_time_seconds);
	if (rc == 0 && p->resident_bytes >= 0)
		rc = buf_append_printf(out, "# HELP process_resident_memory_bytes Resident memory size "
				       "in bytes.\n# TYPE process_resident_memory_bytes gauge\n"
				       "process_resident_memory_bytes %lld\n", (long long)p->resident_bytes);
	if (rc == 0 && p->open_fds >= 0)
		rc = buf_append_printf(out, "# HELP process_open_fds Number of open file descriptors.\n"
				       "# TYPE process_open_fds gauge\nprocess_open_fds %lld\n",
				       (long long)p->open_fds);
	if (rc == 0 && p->configs_live >= 0)
		rc = buf_append_printf(out, "# HELP ringmail_configs_live Configurations in memory: the "
				       "current one and old ones still used by a connection or a worker.\n"
				       "# TYPE ringmail_configs_live gauge\nringmail_configs_live %lld\n",
				       (long long)p->configs_live);
	return rc;
}

/* ---- HTTP (pure) ------------------------------------------------------ */

/* head_end - the length of the request head (through the empty line), or 0. */
static size_t head_end(const char *data, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (data[i] != '\n')
			continue;
		if (data[i + 1] == '\n')
			return i + 2;
		if (data[i + 1] == '\r' && i + 2 < len && data[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

int metrics_http_parse(const char *data, size_t len, struct metrics_request *req)
{
	size_t end = head_end(data, len < METRICS_MAX_REQUEST ? len : METRICS_MAX_REQUEST);

	if (end == 0)
		return len >= METRICS_MAX_REQUEST ? -EMSGSIZE : 0;
	const char *nl = memchr(data, '\n', end);
	size_t line_len = (size_t)(nl - data);
	if (line_len > 0 && data[line_len - 1] == '\r')
		line_len--;
	const char *sp1 = memchr(data, ' ', line_len);
	if (sp1 == NULL || sp1 == data)
		return -EINVAL;
	for (const char *p = data; p < sp1; p++)
		if (*p < 'A' || *p > 'Z')
			return -EINVAL;
	const char *target = sp1 + 1;
	const char *sp2 = memchr(target, ' ', line_len - (size_t)(target - data));
	if (sp2 == NULL || sp2 == target || *target != '/')
		return -EINVAL;
	size_t vlen = line_len - (size_t)(sp2 + 1 - data);
	if (vlen != 8 || (memcmp(sp2 + 1, "HTTP/1.0", 8) != 0 && memcmp(sp2 + 1, "HTTP/1.1", 8) != 0))
		return -EINVAL;
	req->method = (sp1 - data == 3 && memcmp(data, "GET", 3) == 0) ? METRICS_HTTP_GET : METRICS_HTTP_OTHER;
	size_t plen = 0;
	while (target + plen < sp2 && target[plen] != '?' && plen + 1 < sizeof(req->path))
		plen++;
	memcpy(req->path, target, plen);
	req->path[plen] = '\0';
	if (target + plen < sp2 && target[plen] != '?')
		req->path[0] = '\0';       /* cut: it cannot be /metrics */
	return (int)end;
}

int metrics_http_status(const struct metrics_request *req)
{
	if (strcmp(req->path, "/metrics") != 0)
		return 404;
	return req->method == METRICS_HTTP_GET ? 200 : 405;
}

static const char *status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	default: return "Internal Server Error";
	}
}

int metrics_http_response(struct buf *out, int status, const char *body, size_t body_len)
{
	char text[64];

	if (body == NULL) {
		snprintf(text, sizeof(text), "%d %s\n", status, status_text(status));
		body = text;
		body_len = strlen(text);
	}
	int rc = buf_append_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
				   "Connection: close\r\n\r\n", status, status_text(status),
				   status == 200 ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8",
				   body_len, status == 405 ? "Allow: GET\r\n" : "");
	return rc < 0 ? rc : buf_append(out, body, body_len);
}

/* ---- snapshots (each worker's own thread) ----------------------------- */

/* metrics_collect_http - the HTTP API's counters of w. */
static void metrics_collect_http(const struct worker *w, uint64_t *v)
{
	struct http_server_stats h;

	http_server_get_stats(w, &h);
	v[METRICS_HTTP_REQUESTS] = h.requests;
	v[METRICS_HTTP_2XX] = h.responses[HTTP_STATUS_2XX];
	v[METRICS_HTTP_4XX] = h.responses[HTTP_STATUS_4XX];
	v[METRICS_HTTP_5XX] = h.responses[HTTP_STATUS_5XX];
	v[METRICS_HTTP_UNAUTHORIZED] = h.unauthorized;
	v[METRICS_HTTP_FORBIDDEN] = h.forbidden;
	v[METRICS_HTTP_MESSAGES] = h.injected_messages;
	v[METRICS_HTTP_RECIPIENTS] = h.injected_recipients;
	v[METRICS_HTTP_FAILED_RECIPIENTS] = h.failed_recipients;
}

/* metrics_collect - w's counters now. */
static void metrics_collect(struct worker *w, struct metrics_values *out)
{
	uint64_t *v = out->v;
	struct smtp_server_stats smtp;

	memset(out, 0, sizeof(*out));
	smtp_server_get_stats(w, &smtp);
	v[METRICS_RECEIVED] = smtp.messages;
	v[METRICS_REJECTED_COMMITS] = smtp.rejected_commits;
	v[METRICS_DKIM_SIGNED_RSA] = smtp.dkim_signed[DKIM_RSA_SHA256];
	v[METRICS_DKIM_SIGNED_ED25519] = smtp.dkim_signed[DKIM_ED25519_SHA256];
	v[METRICS_DKIM_FAILURES] = smtp.dkim_failures;
	v[METRICS_CONN_ACCEPTED] = atomic_load_explicit(&w->accepted, memory_order_relaxed);
	v[METRICS_CONN_REFUSED] = atomic_load_explicit(&w->rejected_busy, memory_order_relaxed);
	memcpy(&v[METRICS_REJECTED], smtp.rejected, sizeof(smtp.rejected));
	metrics_collect_http(w, v);
	v[METRICS_REJECTED + SMTP_REJECT_BUSY] = w->rejected_busy_smtp;
	for (size_t i = 0; i < WORKER_PROXY_RESULTS; i++)
		v[METRICS_PROXY_HEADERS + i] = w->proxy_headers[i];
	if (w->delivery != NULL) {
		struct delivery_stats d;
		delivery_get_stats(w, &d);
		v[METRICS_DELIVERED] = d.delivered;
		v[METRICS_DEFERRED] = d.deferred;
		v[METRICS_BOUNCED] = d.bounced;
		v[METRICS_DSN] = d.dsn_sent;
		v[METRICS_CONN_OPENED] = d.connections;
		v[METRICS_CONN_FAILED] = d.connect_failures;
		v[METRICS_CONN_OUT_NOW] = d.sessions_now;
		v[METRICS_QUEUE_NOW] = d.queue_now;
		v[METRICS_DOMAINS_NOW] = d.domains_now;
		v[METRICS_DOMAINS_REAPED] = d.domains_reaped;
		v[METRICS_CONN_REUSED] = d.reused;
		v[METRICS_ADDRESSES_NOW] = d.addresses_now;
		v[METRICS_DOMAINS_WAITING_NOW] = d.domains_waiting_now;
		v[METRICS_CONN_OUT_CAP] = d.connections_cap;
		v[METRICS_DNS_HITS] = d.dns.hits;
		v[METRICS_DNS_MISSES] = d.dns.misses;
		v[METRICS_DNS_QUERIES] = d.dns.queries;
		v[METRICS_DNS_FAILURES] = d.dns.failures;
		v[METRICS_DNS_CACHE_ENTRIES] = d.dns.cache_entries;
		v[METRICS_SHAPING_SUSPEND] = d.shaping_actions[SHAPING_SUSPEND];
		v[METRICS_SHAPING_BOUNCE] = d.shaping_actions[SHAPING_BOUNCE];
		v[METRICS_SHAPING_SUPPRESS] = d.shaping_actions[SHAPING_SUPPRESS];
		v[METRICS_SHAPING_PARKED] = d.shaping_parked;
		v[METRICS_SHAPING_LOWER] = d.shaping_actions[SHAPING_LOWER];
		v[METRICS_SHAPING_WAITS] = d.shaping_waits;
		v[METRICS_SUPPRESSION_ADDED] = d.suppressed_added;
		v[METRICS_SUPPRESSION_BOUNCED] = d.suppressed_bounced;
		v[METRICS_MTA_STS_FETCHES] = d.mta_sts_fetches;
		v[METRICS_MTA_STS_FETCH_FAILURES] = d.mta_sts_fetch_failures;
		v[METRICS_MTA_STS_REFUSED] = d.mta_sts_refused;
		v[METRICS_MTA_STS_REPORTS] = d.mta_sts_reports;
		memcpy(&v[METRICS_TLS_POLICY], d.tls_policy, sizeof(d.tls_policy));
		v[METRICS_TLS_OUT_FULL] = d.tls_full;
		v[METRICS_TLS_OUT_RESUMED] = d.tls_resumed;
		v[METRICS_SHAPING_SOURCE_SUSPEND] = d.shaping_source_suspensions;
		v[METRICS_REQUIRETLS_DELIVERED] = d.requiretls_delivered;
		v[METRICS_REQUIRETLS_REFUSED] = d.requiretls_refused;
		v[METRICS_DANE_LOOKUPS] = d.dane_lookups;
		v[METRICS_DANE_VERIFIED] = d.dane_verified;
		v[METRICS_DANE_FAILURES] = d.dane_failures;
		memcpy(&v[METRICS_CATEGORY], d.bounced_by_category, sizeof(d.bounced_by_category));
		memcpy(&v[METRICS_CATEGORY + BOUNCE_CAT_COUNT], d.deferred_by_category,
		       sizeof(d.deferred_by_category));

		struct delivery_domain_count top[METRICS_TOP_DOMAINS];
		int64_t oldest;
		size_t k = delivery_queue_shape(w, top, METRICS_TOP_DOMAINS, &oldest);
		for (size_t i = 0; i < k; i++) {
			snprintf(out->top[i].name, sizeof(out->top[i].name), "%s", top[i].name);
			out->top[i].items = top[i].items;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		v[METRICS_QUEUE_OLDEST_AGE] = oldest > 0 && now > oldest ? (uint64_t)(now - oldest) / 1000 : 0;
	}
	/* conn_count holds outbound connections too; sessions that are still
	 * resolving have none, so this may undercount inbound briefly. */
	uint64_t conns = w->conn_count;
	v[METRICS_CONN_IN_NOW] = conns > v[METRICS_CONN_OUT_NOW] ? conns - v[METRICS_CONN_OUT_NOW] : 0;
	if (w->commit != NULL) {
		struct commit_stats c;
		struct spool_shard_stats s;
		commit_get_stats(w, &c);
		v[METRICS_COMMIT_BATCHES] = c.batches;
		v[METRICS_COMMIT_RECORDS] = c.records;
		v[METRICS_COMMIT_FAILURES] = c.failures;
		v[METRICS_COMMIT_MAX_BATCH] = c.max_batch;
		memcpy(&v[METRICS_COMMIT_BATCH_HIST], c.batch_hist, sizeof(c.batch_hist));
		memcpy(&v[METRICS_COMMIT_SYNC_HIST], c.sync_hist, sizeof(c.sync_hist));
		v[METRICS_COMMIT_SYNC_SUM_US] = c.sync_sum_us;
		spool_shard_stats(commit_shard(w), &s);
		v[METRICS_SPOOL_LIVE] = s.live_messages;
		v[METRICS_SPOOL_SEGMENTS] = s.segments;
		v[METRICS_SPOOL_SEGMENT_BYTES] = s.current_size;
		v[METRICS_SPOOL_BYTES] = s.total_size;
	}
}

static void metrics_publish(struct worker *w, struct metrics_worker *m)
{
	struct metrics_values v;

	metrics_collect(w, &v);
	for (size_t i = 0; i < METRICS_COUNT; i++)
		atomic_store_explicit(&m->v[i], v.v[i], memory_order_relaxed);
	unsigned seq = atomic_load_explicit(&m->top.seq, memory_order_relaxed);
	atomic_store_explicit(&m->top.seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	for (size_t i = 0; i < METRICS_TOP_DOMAINS; i++) {
		uint64_t words[METRICS_DOMAIN_NAME / 8];
		memcpy(words, v.top[i].name, sizeof(words));
		atomic_store_explicit(&m->top.e[i].items, v.top[i].items, memory_order_relaxed);
		for (size_t k = 0; k < METRICS_DOMAIN_NAME / 8; k++)
			atomic_store_explicit(&m->top.e[i].name[k], words[k], memory_order_relaxed);
	}
	atomic_store_explicit(&m->top.seq, seq + 2, memory_order_release);
}

/* top_read - a consistent copy of m's top domains (empty after too many
 * torn reads, which a writer publishing every 250 ms never causes). */
static void top_read(const struct metrics_worker *m, struct metrics_domain *out)
{
	for (int tries = 0; tries < 1000; tries++) {
		unsigned s1 = atomic_load_explicit(&m->top.seq, memory_order_acquire);
		if (s1 & 1)
			continue;
		for (size_t i = 0; i < METRICS_TOP_DOMAINS; i++) {
			uint64_t words[METRICS_DOMAIN_NAME / 8];
			out[i].items = atomic_load_explicit(&m->top.e[i].items, memory_order_relaxed);
			for (size_t k = 0; k < METRICS_DOMAIN_NAME / 8; k++)
				words[k] = atomic_load_explicit(&m->top.e[i].name[k], memory_order_relaxed);
			memcpy(out[i].name, words, sizeof(words));
			out[i].name[METRICS_DOMAIN_NAME - 1] = '\0';
		}
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&m->top.seq, memory_order_relaxed) == s1)
			return;
	}
	memset(out, 0, METRICS_TOP_DOMAINS * sizeof(*out));
}

/* metrics_snapshot - every worker's last published values (worker 0). */
static void metrics_snapshot(struct worker *w, struct metrics_values *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct metrics_worker *m = w->all[i].metrics;
		for (size_t k = 0; k < METRICS_COUNT; k++)
			out[i].v[k] = m == NULL ? 0 : atomic_load_explicit(&m->v[k], memory_order_relaxed);
		if (m != NULL)
			top_read(m, out[i].top);
		else
			memset(out[i].top, 0, sizeof(out[i].top));
	}
}

int metrics_stats(struct worker *w, struct buf *out, bool json)
{
	size_t n = w->count + 1;
	struct metrics_values *vals = xcalloc(n, sizeof(*vals));
	int rc = json ? buf_append_str(out, "{") : 0;

	metrics_publish(w, w->metrics);
	metrics_snapshot(w, vals, n);
	for (size_t i = 0; rc == 0 && i < sizeof(metric_descs) / sizeof(metric_descs[0]); i++) {
		const struct metric_desc *d = &metric_descs[i];
		const char *name = d->name + strlen("ringmail_");
		unsigned long long v = metrics_sum(vals, n, d->id, d->kind == KIND_GAUGE_MAX);
		rc = json ? buf_append_printf(out, "%s\"%s\":%llu", i ? "," : "", name, v)
			  : buf_append_printf(out, "%-40s %llu\n", name, v);
	}
	for (size_t i = 0; rc == 0 && i < SMTP_REJECT_COUNT; i++) {
		char name[64];
		unsigned long long v = metrics_sum(vals, n, METRICS_REJECTED + i, false);
		snprintf(name, sizeof(name), "rejected_%s_total", smtp_reject_name((enum smtp_reject)i));
		rc = json ? buf_append_printf(out, ",\"%s\":%llu", name, v)
			  : buf_append_printf(out, "%-40s %llu\n", name, v);
	}
	for (size_t i = 0; rc == 0 && i < WORKER_PROXY_RESULTS; i++) {
		char name[64];
		unsigned long long v = metrics_sum(vals, n, METRICS_PROXY_HEADERS + i, false);
		snprintf(name, sizeof(name), "proxy_headers_%s_total", proxy_result_names[i]);
		rc = json ? buf_append_printf(out, ",\"%s\":%llu", name, v)
			  : buf_append_printf(out, "%-40s %llu\n", name, v);
	}
	if (rc == 0 && json)
		rc = buf_append_str(out, "}\n");
	free(vals);
	return rc;
}

/* ---- the process (procfs, worker 0 at scrape time) ------------------- */

static double process_start_seconds;   /* written before any thread starts */

void metrics_process_started(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	process_start_seconds = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* process_resident_bytes - the second field of /proc/self/statm (pages). */
static int64_t process_resident_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "re");
	unsigned long long size, resident;
	int n;

	if (f == NULL)
		return -1;
	n = fscanf(f, "%llu %llu", &size, &resident);
	fclose(f);
	return n == 2 ? (int64_t)resident * sysconf(_SC_PAGESIZE) : -1;
}

/* process_open_fds - the entries of /proc/self/fd, less the one the
 * directory stream itself holds. O(descriptors): a scrape of a daemon with
 * 100k connections reads ~100k small entries on worker 0, once per scrape. */
static int64_t process_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int64_t n = 0;
	struct dirent *e;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n > 0 ? n - 1 : 0;
}

/* metrics_process_read - see header. These are blocking syscalls on the
 * worker's thread (fopen, read, getdents), allowed here because procfs
 * answers them from kernel memory: they never wait for a disk or the
 * network, and they run only when a scrape arrives. */
void metrics_process_read(struct metrics_process *p)
{
	p->version = ringmail_version();
	p->start_time_seconds = process_start_seconds;
	p->resident_bytes = process_resident_bytes();
	p->open_fds = process_open_fds();
	p->configs_live = (int64_t)config_live_count();
}

/* ---- the HTTP connection (worker 0) ---------------------------------- */

static char metrics_answered;          /* c->proto once the reply is queued */

static void metrics_open(struct conn *c)
{
	conn_set_phase_timer(c, WORKER_TIMER_SMTP_COMMAND);
}

/* metrics_answer - the reply to a request head (or to a bad one: rc). */
static void metrics_answer(struct conn *c, int rc, const struct metrics_request *req)
{
	struct worker *w = c->w;
	int status = rc == -EMSGSIZE ? 431 : rc < 0 ? 400 : metrics_http_status(req);
	struct buf body, out;

	buf_init(&body, METRICS_MAX_BODY);
	buf_init(&out, METRICS_MAX_BODY + 1024);
	if (status == 200) {
		size_t n = w->count + 1;
		struct metrics_values *vals = xcalloc(n, sizeof(*vals));
		metrics_publish(w, w->metrics);          /* our own part fresh */
		metrics_snapshot(w, vals, n);
		struct metrics_process proc;
		metrics_process_read(&proc);
		if (metrics_render(&body, vals, n) < 0 || metrics_render_process(&body, &proc) < 0 ||
		    webhook_metrics_render(&body) < 0 || cluster_metrics_render(&body) < 0 ||
		    tlsrpt_metrics_render(&body) < 0)
			status = 500;
		free(vals);
	}
	if (metrics_http_response(&out, status, status == 200 ? buf_data(&body) : NULL,
				  status == 200 ? buf_len(&body) : 0) == 0)
		conn_write(c, buf_data(&out), buf_len(&out));
	buf_free(&body);
	buf_free(&out);
	c->proto = &metrics_answered;
	conn_close_after_flush(c);
}

static size_t metrics_input(struct conn *c, const char *data, size_t len)
{
	struct metrics_request req;

	if (c->proto != NULL)
		return len;                        /* answered: ignore the rest */
	int rc = metrics_http_parse(data, len, &req);
	if (rc == 0)
		return 0;
	metrics_answer(c, rc, &req);
	return len;
}

static void metrics_timeout(struct conn *c, enum worker_timer_class cls)
{
	(void)cls;
	conn_close(c);
}

static void metrics_shutdown(struct conn *c)
{
	if (c->proto == NULL)
		conn_close(c);
}

static const struct conn_handler metrics_handler = {
	.name = "metrics",
	.open = metrics_open,
	.input = metrics_input,
	.timeout = metrics_timeout,
	.shutdown = metrics_shutdown,
	.idle_timer = WORKER_TIMER_SMTP_IDLE,   /* smtp.idle_timeout: no key of its own */
	.input_cap = NULL,                      /* CONN_INPUT_CAP_DEFAULT */
};

/* ---- the listener and the hook ---------------------------------------- */

/* metrics_hook - publish the snapshot when due; when something happened
 * since (this pass exists), make sure we wake to publish it. */
static void metrics_hook(struct worker *w, void *arg)
{
	struct metrics_worker *m = arg;

	if (w->stopping)
		worker_listener_stop(w, &m->listener);
	if (w->now_ms >= m->next_publish_ms) {
		metrics_publish(w, m);
		m->next_publish_ms = w->now_ms + METRICS_PUBLISH_MS;
	} else if (m->next_publish_ms < w->wake_at_ms) {
		w->wake_at_ms = m->next_publish_ms;
	}
}

/* metrics_listen - the pooled socket (see listen_pool.h) or a new one. */
static int metrics_listen(const struct config_listen *l)
{
	int fd = listen_pool_take(l, 0);

	return fd != -ENOENT ? fd : listen_pool_socket(l, 64, false);
}

static int metrics_worker_init(struct worker *w)
{
	struct metrics_worker *m = xcalloc(1, sizeof(*m));

	m->listener.fd = -1;
	w->metrics = m;
	metrics_publish(w, m);
	worker_add_hook(w, metrics_hook, m);
	if (w->id != 0 || w->cfg->metrics_listen_count == 0)
		return 0;
	int fd = metrics_listen(&w->cfg->metrics_listen[0]);
	if (fd < 0) {
		log_error("listen", "worker=%u metrics=%s error=\"%s\"", w->id,
			  w->cfg->metrics_listen[0].text, strerror(-fd));
		return fd;
	}
	worker_listener_start(w, &m->listener, fd, &metrics_handler, "metrics");
	log_info("metrics_listen", "addr=%s", w->cfg->metrics_listen[0].text);
	return 0;
}

static void metrics_worker_exit(struct worker *w)
{
	struct metrics_worker *m = w->metrics;

	if (m != NULL && m->listener.fd >= 0) {
		close(m->listener.fd);
		m->listener.fd = -1;
	}
}

static void metrics_worker_drain(struct worker *w)
{
	free(w->metrics);
	w->metrics = NULL;
}

const struct worker_module metrics_module = {
	.name = "metrics",
	.init = metrics_worker_init,
	.exit = metrics_worker_exit,
	.drain = metrics_worker_drain,
};
