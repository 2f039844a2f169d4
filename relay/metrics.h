/*
 * metrics - the Prometheus endpoint (metrics.listen) and the per-worker
 * counter snapshots it reads.
 *
 * Every worker copies its counters (SMTP server, delivery, group commit,
 * spool shard, DNS, connections, SMTP refusals by reason) into its own
 * snapshot slot at most every
 * METRICS_PUBLISH_MS, from a before-sleep hook on its own thread; a worker
 * that did something since its last copy wakes once more to publish it.
 * Each slot field is a relaxed _Atomic uint64_t written by one thread and
 * read by the metrics connection on worker 0: no lock, no data race, and
 * nothing on the message path but a periodic copy of ~80 words. A scrape
 * therefore sees every worker as it was at most METRICS_PUBLISH_MS ago,
 * and the fields of one worker may be up to one copy apart (fine for
 * monotonic counters; histogram _count is derived from the buckets, so a
 * histogram is always self-consistent).
 *
 * The HTTP side is deliberately tiny: HTTP/1.0 or 1.1, one request per
 * connection, headers up to METRICS_MAX_REQUEST bytes, GET /metrics only
 * (other paths 404, other methods 405), "Connection: close" on every reply.
 *
 * Pure parts (unit-tested): metrics_http_parse, metrics_http_response,
 * metrics_render, metrics_render_process. Worker parts: metrics_module (init and exit on each
 * worker thread, worker 0 also opens the listener; drain after every worker
 * thread has ended frees the slot).
 */
#ifndef RINGMAIL_METRICS_H
#define RINGMAIL_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bounce_class.h"
#include "buf.h"
#include "commit.h"
#include "delivery.h"
#include "smtp_session.h"
#include "worker.h"

#define METRICS_PUBLISH_MS 250
#define METRICS_MAX_REQUEST 8192

/* One value per metric per worker; histograms take a range of slots. */
enum metrics_id {
	METRICS_RECEIVED,                  /* messages accepted (250 after DATA) */
	METRICS_REJECTED_COMMITS,          /* messages refused: the spool failed */
	METRICS_DELIVERED,                 /* recipient outcomes, per attempt */
	METRICS_DEFERRED,
	METRICS_BOUNCED,
	METRICS_DSN,                       /* delivery status notifications made */
	METRICS_CONN_ACCEPTED,             /* inbound connections accepted */
	METRICS_CONN_REFUSED,              /* inbound refused: max_connections */
	METRICS_CONN_OPENED,               /* outbound connections made */
	METRICS_CONN_FAILED,               /* outbound connects that failed */
	METRICS_CONN_IN_NOW,               /* gauges */
	METRICS_CONN_OUT_NOW,
	METRICS_QUEUE_NOW,
	METRICS_SPOOL_LIVE,
	METRICS_SPOOL_SEGMENTS,
	METRICS_SPOOL_SEGMENT_BYTES,       /* size of the segment being written */
	METRICS_SPOOL_BYTES,               /* every segment */
	METRICS_COMMIT_BATCHES,
	METRICS_COMMIT_RECORDS,
	METRICS_COMMIT_FAILURES,
	METRICS_COMMIT_MAX_BATCH,          /* gauge; max over workers */
	METRICS_COMMIT_BATCH_HIST,         /* COMMIT_BATCH_BUCKETS slots */
	METRICS_COMMIT_SYNC_HIST = METRICS_COMMIT_BATCH_HIST + COMMIT_BATCH_BUCKETS,
	METRICS_COMMIT_SYNC_SUM_US = METRICS_COMMIT_SYNC_HIST + COMMIT_SYNC_BUCKETS,
	METRICS_DNS_HITS,
	METRICS_DNS_MISSES,
	METRICS_DNS_QUERIES,
	METRICS_DNS_FAILURES,
	METRICS_DNS_CACHE_ENTRIES,
	METRICS_QUEUE_OLDEST_AGE,          /* seconds; gauge, max over workers */
	METRICS_DOMAINS_NOW,               /* destination domains held */
	METRICS_DOMAINS_REAPED,
	METRICS_CONN_REUSED,               /* idle sessions taken by another domain */
	METRICS_ADDRESSES_NOW,             /* destination addresses held */
	METRICS_DOMAINS_WAITING_NOW,       /* waiting for a connection (address full, cap) */
	METRICS_CONN_OUT_CAP,              /* the workers' shares of the total cap */
	METRICS_DKIM_SIGNED_RSA,           /* DKIM signatures made, rsa-sha256 */
	METRICS_DKIM_SIGNED_ED25519,       /* ed25519-sha256 */
	METRICS_DKIM_FAILURES,             /* signatures that could not be made */
	METRICS_SUPPRESSION_ADDED,         /* recipients put on the list by bounces */
	METRICS_SUPPRESSION_BOUNCED,       /* suppressed recipients bounced at delivery */
	METRICS_SHAPING_SUSPEND,           /* response rules that acted, by action */
	METRICS_SHAPING_BOUNCE,
	METRICS_SHAPING_SUPPRESS,
	METRICS_SHAPING_PARKED,            /* items parked for a suspension */
	METRICS_SHAPING_LOWER,             /* limits lowered by a response rule */
	METRICS_SHAPING_WAITS,             /* domains that waited for a shaping limit */
	METRICS_HTTP_REQUESTS,             /* HTTP API: complete requests */
	METRICS_HTTP_2XX,                  /* answers by class */
	METRICS_HTTP_4XX,
	METRICS_HTTP_5XX,
	METRICS_HTTP_UNAUTHORIZED,         /* 401: no or unknown token */
	METRICS_HTTP_FORBIDDEN,            /* 403: a token without "inject" */
	METRICS_HTTP_MESSAGES,             /* injected messages made durable */
	METRICS_HTTP_RECIPIENTS,           /* their recipients */
	METRICS_HTTP_FAILED_RECIPIENTS,    /* recipients refused in a request */
	METRICS_PROXY_HEADERS,             /* WORKER_PROXY_RESULTS slots, one per
					    * enum worker_proxy_result */
	METRICS_REJECTED = METRICS_PROXY_HEADERS + WORKER_PROXY_RESULTS,
					   /* SMTP_REJECT_COUNT slots, one per
					    * enum smtp_reject */
	METRICS_CATEGORY = METRICS_REJECTED + SMTP_REJECT_COUNT,   /* bounced then deferred
					    * recipients, BOUNCE_CAT_COUNT slots each */
	METRICS_MTA_STS_FETCHES = METRICS_CATEGORY + 2 * BOUNCE_CAT_COUNT,   /* MTA-STS policy fetches */
	METRICS_MTA_STS_FETCH_FAILURES,
	METRICS_MTA_STS_REFUSED,           /* recipients deferred by an enforce policy */
	METRICS_MTA_STS_REPORTS,           /* mode testing: what enforce would refuse */
	METRICS_TLS_POLICY,                /* DELIVERY_TLS_POLICIES slots: attempts by
					    * enum tls_applied */
	METRICS_TLS_OUT_FULL = METRICS_TLS_POLICY + DELIVERY_TLS_POLICIES,   /* outbound TLS full handshakes */
	METRICS_TLS_OUT_RESUMED,           /* outbound TLS handshakes that resumed a session */
	METRICS_SHAPING_SOURCE_SUSPEND,    /* egress sources suspended by a response rule */
	METRICS_REQUIRETLS_DELIVERED,      /* REQUIRETLS recipients delivered (RFC 8689) */
	METRICS_REQUIRETLS_REFUSED,        /* REQUIRETLS recipients bounced 5.7.10 / 5.7.30 */
	METRICS_DANE_LOOKUPS,              /* TLSA lookups */
	METRICS_DANE_VERIFIED,             /* handshakes authenticated by TLSA */
	METRICS_DANE_FAILURES,             /* hosts refused by DANE */
	METRICS_COUNT
};

/* A plain copy of one worker's slot. */
#define METRICS_TOP_DOMAINS 10       /* per-domain series: the largest queues */
#define METRICS_DOMAIN_NAME 256

struct metrics_domain {
	char name[METRICS_DOMAIN_NAME];
	uint64_t items;                    /* 0: an unused slot */
};

struct metrics_values {
	uint64_t v[METRICS_COUNT];
	struct metrics_domain top[METRICS_TOP_DOMAINS];   /* the worker's, largest first */
};

/* metrics_render - the Prometheus text format (0.0.4) of n workers'
 * values, summed (max for the max batch), appended to out. 0 or -ENOBUFS. */
int metrics_render(struct buf *out, const struct metrics_values *workers, size_t n);

/* The process as a whole, not summed over workers: read at scrape time. */
struct metrics_process {
	const char *version;               /* static; ringmail_build_info's label */
	double start_time_seconds;         /* wall clock (Unix time) at start */
	int64_t resident_bytes;            /* -1: unknown (its metric is left out) */
	int64_t open_fds;                  /* -1: unknown (left out) */
	int64_t configs_live;              /* config_live_count(); -1: left out */
};

/* metrics_render_process - ringmail_build_info{version} 1 and the
 * process_* gauges of the Prometheus client conventions, appended to out.
 * 0 or -ENOBUFS. Pure. */
int metrics_render_process(struct buf *out, const struct metrics_process *p);

/* metrics_process_started - note the wall clock as the process start. Call
 * once from main() before any thread is started (no lock: the threads
 * created later see it). */
void metrics_process_started(void);

/* metrics_process_read - the version, the noted start and, from procfs,
 * the resident set size and the number of open descriptors (-1 each when
 * procfs cannot be read). Blocking reads of /proc/self, made on worker 0
 * only when a scrape asks. */
void metrics_process_read(struct metrics_process *p);

enum metrics_http_method { METRICS_HTTP_GET, METRICS_HTTP_OTHER };

struct metrics_request {
	enum metrics_http_method method;
	char path[256];                    /* without the query string; cut */
};

/* metrics_http_parse - look for a complete request head (request line and
 * headers up to an empty line) in data. Returns its length (> 0), 0 when
 * more bytes are needed, -EMSGSIZE beyond METRICS_MAX_REQUEST, -EINVAL
 * for a malformed request line or an HTTP version other than 1.x. */
int metrics_http_parse(const char *data, size_t len, struct metrics_request *req);

/* metrics_http_status - the status a parsed request gets: 200; 404 for
 * a path other than /metrics; 405 for /metrics with a method but GET. */
int metrics_http_status(const struct metrics_request *req);

/* metrics_http_response - status line, headers (Content-Length,
 * Connection: close) and body into out; body may be NULL for an error
 * (then a one-line text body). 0 or -ENOBUFS. */
int metrics_http_response(struct buf *out, int status, const char *body, size_t body_len);

/* metrics_stats - ringmailctl stats on worker 0: every plain metric summed
 * over the workers (the largest for a maximum), as aligned "name value"
 * lines or one JSON object. 0 or -ENOBUFS. */
int metrics_stats(struct worker *w, struct buf *out, bool json);

extern const struct worker_module metrics_module;

#endif
