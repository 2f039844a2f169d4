/*
 * test_metrics - the HTTP request parser, the status it leads to, the
 * response framing and the Prometheus rendering (sums, max, cumulative
 * histogram buckets).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct parse_case {
	const char *req;
	int want_rc;                       /* > 0: the whole request */
	int want_status;                   /* for rc > 0 */
};

#define WHOLE 1000

static const struct parse_case parse_cases[] = {
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", WHOLE, 200 },
	{ "GET /metrics HTTP/1.0\r\n\r\n", WHOLE, 200 },
	{ "GET /metrics HTTP/1.0\n\n", WHOLE, 200 },
	{ "GET /metrics?name[]=x HTTP/1.1\r\n\r\n", WHOLE, 200 },
	{ "GET / HTTP/1.1\r\n\r\n", WHOLE, 404 },
	{ "GET /metrics/ HTTP/1.1\r\n\r\n", WHOLE, 404 },
	{ "GET /metricsx HTTP/1.1\r\n\r\n", WHOLE, 404 },
	{ "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", WHOLE, 405 },
	{ "HEAD /metrics HTTP/1.1\r\n\r\n", WHOLE, 405 },
	{ "GETX /metrics HTTP/1.1\r\n\r\n", WHOLE, 405 },
	{ "DELETE /other HTTP/1.1\r\n\r\n", WHOLE, 404 },
	/* incomplete heads: wait for more */
	{ "GET /metrics HTTP/1.1\r\n", 0, 0 },
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\n\r", 0, 0 },
	{ "", 0, 0 },
	/* malformed */
	{ "garbage\r\n\r\n", -EINVAL, 0 },
	{ "GET /metrics\r\n\r\n", -EINVAL, 0 },
	{ "GET /metrics HTTP/2.0\r\n\r\n", -EINVAL, 0 },
	{ "GET /metrics HTTP/1.1 x\r\n\r\n", -EINVAL, 0 },
	{ "get /metrics HTTP/1.1\r\n\r\n", -EINVAL, 0 },
	{ "GET http://a/metrics HTTP/1.1\r\n\r\n", -EINVAL, 0 },
	{ " /metrics HTTP/1.1\r\n\r\n", -EINVAL, 0 },
};

Test(metrics, http_parse_table)
{
	for (size_t i = 0; i < N(parse_cases); i++) {
		const struct parse_case *c = &parse_cases[i];
		struct metrics_request req;
		size_t len = strlen(c->req);
		int rc = metrics_http_parse(c->req, len, &req);
		int want = c->want_rc == WHOLE ? (int)len : c->want_rc;

		cr_expect_eq(rc, want, "case %zu %s: got rc %d, want %d", i, c->req, rc, want);
		if (rc > 0 && want > 0) {
			int status = metrics_http_status(&req);
			cr_expect_eq(status, c->want_status, "case %zu %s: got status %d, want %d", i,
				     c->req, status, c->want_status);
		}
	}
}

Test(metrics, http_parse_stops_at_the_head)
{
	const char *req = "GET /metrics HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n";
	struct metrics_request r;
	int rc = metrics_http_parse(req, strlen(req), &r);

	cr_assert_eq(rc, 25, "got %d, want 25 (the first request only)", rc);
	cr_expect_str_eq(r.path, "/metrics", "got path %s", r.path);
}

Test(metrics, http_parse_limits_the_head)
{
	static char req[METRICS_MAX_REQUEST + 100];
	struct metrics_request r;
	size_t n = (size_t)snprintf(req, sizeof(req), "GET /metrics HTTP/1.1\r\nX: ");

	memset(req + n, 'a', sizeof(req) - n);
	cr_expect_eq(metrics_http_parse(req, METRICS_MAX_REQUEST - 1, &r), 0, "under the limit: need more");
	int rc = metrics_http_parse(req, METRICS_MAX_REQUEST, &r);
	cr_expect_eq(rc, -EMSGSIZE, "at the limit: got %d, want -EMSGSIZE", rc);
	rc = metrics_http_parse(req, sizeof(req), &r);
	cr_expect_eq(rc, -EMSGSIZE, "beyond: got %d, want -EMSGSIZE", rc);
	/* A long path is cut and cannot match. */
	n = (size_t)snprintf(req, sizeof(req), "GET /metrics");
	memset(req + n, 'x', 400);
	n += 400;
	n += (size_t)snprintf(req + n, sizeof(req) - n, " HTTP/1.1\r\n\r\n");
	rc = metrics_http_parse(req, n, &r);
	cr_expect_eq(rc, (int)n, "got %d, want %zu", rc, n);
	cr_expect_eq(metrics_http_status(&r), 404, "a cut path: got %d, want 404", metrics_http_status(&r));
}

Test(metrics, http_response_framing)
{
	struct buf b;

	buf_init(&b, 1 << 16);
	cr_assert_eq(metrics_http_response(&b, 200, "a 1\n", 4), 0);
	char *s = strndup(buf_data(&b), buf_len(&b));
	cr_expect(strncmp(s, "HTTP/1.1 200 OK\r\n", 17) == 0, "got %s", s);
	cr_expect(strstr(s, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != NULL, "got %s", s);
	cr_expect(strstr(s, "Content-Length: 4\r\n") != NULL, "got %s", s);
	cr_expect(strstr(s, "Connection: close\r\n\r\na 1\n") != NULL, "got %s", s);
	free(s);
	buf_reset(&b);
	cr_assert_eq(metrics_http_response(&b, 405, NULL, 0), 0);
	s = strndup(buf_data(&b), buf_len(&b));
	cr_expect(strncmp(s, "HTTP/1.1 405 Method Not Allowed\r\n", 33) == 0, "got %s", s);
	cr_expect(strstr(s, "Allow: GET\r\n") != NULL, "got %s", s);
	cr_expect(strstr(s, "\r\n\r\n405 Method Not Allowed\n") != NULL, "got %s", s);
	free(s);
	buf_free(&b);
}

/* line - the line of text starting with prefix, or NULL. */
static const char *line(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);
	for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p)
		if (strncmp(p, prefix, n) == 0)
			return p;
	return NULL;
}

static void expect_line(const char *text, const char *want)
{
	const char *got = line(text, want);
	size_t n = strlen(want);
	cr_expect(got != NULL && (got[n] == '\n'), "want line \"%s\" in:\n%s", want, text);
}

Test(metrics, render_sums_workers)
{
	struct metrics_values v[3];
	struct buf b;

	memset(v, 0, sizeof(v));
	v[0].v[METRICS_DELIVERED] = 5;
	v[1].v[METRICS_DELIVERED] = 7;
	v[2].v[METRICS_RECEIVED] = 3;
	v[0].v[METRICS_COMMIT_MAX_BATCH] = 9;
	v[1].v[METRICS_COMMIT_MAX_BATCH] = 4;
	v[0].v[METRICS_QUEUE_NOW] = 2;
	v[1].v[METRICS_QUEUE_NOW] = 1;
	/* batches of 1, 1, 3 and 300 records; syncs of 100us, 300us, 1s */
	v[0].v[METRICS_COMMIT_BATCH_HIST + 0] = 2;
	v[1].v[METRICS_COMMIT_BATCH_HIST + 2] = 1;
	v[1].v[METRICS_COMMIT_BATCH_HIST + COMMIT_BATCH_BUCKETS - 1] = 1;
	v[0].v[METRICS_COMMIT_RECORDS] = 2;
	v[1].v[METRICS_COMMIT_RECORDS] = 303;
	v[0].v[METRICS_COMMIT_SYNC_HIST + 0] = 1;
	v[0].v[METRICS_COMMIT_SYNC_HIST + 2] = 1;
	v[1].v[METRICS_COMMIT_SYNC_HIST + COMMIT_SYNC_BUCKETS - 1] = 1;
	v[0].v[METRICS_COMMIT_SYNC_SUM_US] = 400;
	v[0].v[METRICS_DKIM_SIGNED_ED25519] = 5;
	v[1].v[METRICS_DKIM_SIGNED_ED25519] = 2;
	v[1].v[METRICS_DKIM_FAILURES] = 1;
	v[1].v[METRICS_COMMIT_SYNC_SUM_US] = 1000000;

	buf_init(&b, 1 << 20);
	cr_assert_eq(metrics_render(&b, v, 3), 0);
	cr_assert_eq(buf_append(&b, "", 1), 0);
	const char *t = buf_data(&b);
	expect_line(t, "# TYPE ringmail_delivered_total counter");
	expect_line(t, "ringmail_delivered_total 12");
	expect_line(t, "ringmail_received_total 3");
	expect_line(t, "# TYPE ringmail_queue_items gauge");
	expect_line(t, "ringmail_queue_items 3");
	expect_line(t, "ringmail_commit_max_batch_records 9");
	expect_line(t, "ringmail_bounced_total 0");
	expect_line(t, "# TYPE ringmail_commit_batch_records histogram");
	expect_line(t, "ringmail_commit_batch_records_bucket{le=\"1\"} 2");
	expect_line(t, "ringmail_commit_batch_records_bucket{le=\"2\"} 2");
	expect_line(t, "ringmail_commit_batch_records_bucket{le=\"4\"} 3");
	expect_line(t, "ringmail_commit_batch_records_bucket{le=\"256\"} 3");
	expect_line(t, "ringmail_commit_batch_records_bucket{le=\"+Inf\"} 4");
	expect_line(t, "ringmail_commit_batch_records_sum 305.000000");
	expect_line(t, "ringmail_commit_batch_records_count 4");
	expect_line(t, "ringmail_commit_sync_seconds_bucket{le=\"0.000125\"} 1");
	expect_line(t, "ringmail_commit_sync_seconds_bucket{le=\"0.00025\"} 1");
	expect_line(t, "ringmail_commit_sync_seconds_bucket{le=\"0.0005\"} 2");
	expect_line(t, "ringmail_commit_sync_seconds_bucket{le=\"0.128\"} 2");
	expect_line(t, "ringmail_commit_sync_seconds_bucket{le=\"+Inf\"} 3");
	expect_line(t, "ringmail_commit_sync_seconds_sum 1.000400");
	expect_line(t, "ringmail_commit_sync_seconds_count 3");
	expect_line(t, "ringmail_dkim_signed_ed25519_total 7");
	expect_line(t, "ringmail_dkim_signed_rsa_total 0");
	expect_line(t, "ringmail_dkim_failures_total 1");
	/* Every sample line names a metric that has a TYPE line. */
	for (const char *p = t; *p != '\0'; p = strchr(p, '\n') + 1) {
		if (*p == '#')
			continue;
		char name[128], type_line[160];
		cr_assert_eq(sscanf(p, "%127[a-z0-9_]", name), 1);
		snprintf(type_line, sizeof(type_line), "# TYPE %s ", name);
		cr_expect(line(t, type_line) != NULL || strstr(name, "_bucket") || strstr(name, "_sum") ||
			  strstr(name, "_count"), "no TYPE for %s", name);
	}
	buf_free(&b);
}

Test(metrics, render_rejected_by_reason)
{
	struct metrics_values v[2];
	struct buf b;
	char want[128];

	memset(v, 0, sizeof(v));
	v[0].v[METRICS_REJECTED + SMTP_REJECT_RELAY_DENIED] = 3;
	v[1].v[METRICS_REJECTED + SMTP_REJECT_RELAY_DENIED] = 4;
	v[1].v[METRICS_REJECTED + SMTP_REJECT_SMUGGLING] = 1;
	v[0].v[METRICS_REJECTED + SMTP_REJECT_BUSY] = 2;
	v[1].v[METRICS_REJECTED_COMMITS] = 5;          /* the old name stays */

	buf_init(&b, 1 << 20);
	cr_assert_eq(metrics_render(&b, v, 2), 0);
	cr_assert_eq(buf_append(&b, "", 1), 0);
	const char *t = buf_data(&b);
	expect_line(t, "# TYPE ringmail_rejected_total counter");
	expect_line(t, "ringmail_rejected_total{reason=\"relay_denied\"} 7");
	expect_line(t, "ringmail_rejected_total{reason=\"smuggling\"} 1");
	expect_line(t, "ringmail_rejected_total{reason=\"busy\"} 2");
	expect_line(t, "ringmail_rejected_commits_total 5");
	/* Every reason has its line, zeros included, and only one HELP/TYPE. */
	for (int i = 0; i < SMTP_REJECT_COUNT; i++) {
		snprintf(want, sizeof(want), "ringmail_rejected_total{reason=\"%s\"} ",
			 smtp_reject_name((enum smtp_reject)i));
		unsigned n = 0;
		for (const char *p = strstr(t, want); p != NULL; p = strstr(p + 1, want))
			n++;
		cr_expect_eq(n, 1, "%s: got %u lines, want 1", want, n);
	}
	const char *help = strstr(t, "# TYPE ringmail_rejected_total ");
	cr_expect(help != NULL && strstr(help + 1, "# TYPE ringmail_rejected_total ") == NULL,
		  "want one TYPE line for ringmail_rejected_total");
	expect_line(t, "ringmail_rejected_total{reason=\"unknown_user\"} 0");
	buf_free(&b);
}

Test(metrics, render_fails_when_full)
{
	struct metrics_values v;
	struct buf b;

	memset(&v, 0, sizeof(v));
	buf_init(&b, 64);
	cr_expect_eq(metrics_render(&b, &v, 1), -ENOBUFS, "a 64-byte buffer must overflow");
	buf_free(&b);
}

Test(metrics, commit_hist_bucket)
{
	static const struct { uint64_t value, base; unsigned n, want; } cases[] = {
		{ 0, 1, 10, 0 }, { 1, 1, 10, 0 }, { 2, 1, 10, 1 }, { 3, 1, 10, 2 }, { 256, 1, 10, 8 },
		{ 257, 1, 10, 9 }, { 1000000, 1, 10, 9 }, { 125, 125, 12, 0 }, { 126, 125, 12, 1 },
		{ 128000, 125, 12, 10 }, { 128001, 125, 12, 11 },
	};
	for (size_t i = 0; i < N(cases); i++) {
		unsigned got = commit_hist_bucket(cases[i].value, cases[i].base, cases[i].n);
		cr_expect_eq(got, cases[i].want, "value %llu base %llu: got %u, want %u",
			     (unsigned long long)cases[i].value, (unsigned long long)cases[i].base,
			     got, cases[i].want);
	}
}

Test(metrics, render_top_domains_merges_workers)
{
	struct metrics_values w[2];
	struct buf b;

	memset(w, 0, sizeof(w));
	/* worker 0 has 11 domains (one more than the top keeps) */
	for (int i = 0; i < METRICS_TOP_DOMAINS; i++) {
		snprintf(w[0].top[i].name, sizeof(w[0].top[i].name), "w0-%02d.test", i);
		w[0].top[i].items = (uint64_t)(100 - i);
	}
	snprintf(w[1].top[0].name, sizeof(w[1].top[0].name), "big.test");
	w[1].top[0].items = 500;
	snprintf(w[1].top[1].name, sizeof(w[1].top[1].name), "q\"uo\\te.test");
	w[1].top[1].items = 95;
	w[0].v[METRICS_QUEUE_OLDEST_AGE] = 7;
	w[1].v[METRICS_QUEUE_OLDEST_AGE] = 42;
	buf_init(&b, 1 << 20);
	cr_assert_eq(metrics_render(&b, w, 2), 0);
	char *text = strndup(buf_data(&b), buf_len(&b));
	cr_assert_not_null(strstr(text, "\nringmail_queue_oldest_age_seconds 42\n"), "max over workers:\n%s", text);
	const char *first = strstr(text, "ringmail_domain_queue_items{domain=\"big.test\"} 500\n");
	cr_assert_not_null(first, "%s", text);
	cr_assert_not_null(strstr(text, "ringmail_domain_queue_items{domain=\"q\\\"uo\\\\te.test\"} 95\n"),
			   "label escaped:\n%s", text);
	/* ten series: big.test, w0-00..w0-04 (100..96), quote (95), w0-05..07 */
	int series = 0;
	for (const char *p = text; (p = strstr(p, "ringmail_domain_queue_items{")) != NULL; p++)
		series++;
	cr_assert_eq(series, METRICS_TOP_DOMAINS, "got %d series, want %d", series, METRICS_TOP_DOMAINS);
	cr_assert_not_null(strstr(text, "{domain=\"w0-07.test\"} 93\n"), "%s", text);
	cr_assert_null(strstr(text, "w0-08.test"), "the 11th largest is left out");
	cr_assert(first < strstr(text, "w0-00.test"), "largest first");
	free(text);
	buf_free(&b);
}

Test(metrics, render_process)
{
	struct metrics_process p = {
		.version = "1.2.3",
		.start_time_seconds = 1700000000.25,
		.resident_bytes = 12345678,
		.open_fds = 42,
		.configs_live = 3,
	};
	struct buf b;

	buf_init(&b, 1 << 16);
	cr_assert_eq(metrics_render_process(&b, &p), 0);
	cr_assert_eq(buf_append(&b, "", 1), 0);
	const char *t = buf_data(&b);
	expect_line(t, "# TYPE ringmail_build_info gauge");
	expect_line(t, "ringmail_build_info{version=\"1.2.3\"} 1");
	expect_line(t, "# TYPE process_start_time_seconds gauge");
	expect_line(t, "process_start_time_seconds 1700000000.250");
	expect_line(t, "# TYPE process_resident_memory_bytes gauge");
	expect_line(t, "process_resident_memory_bytes 12345678");
	expect_line(t, "# TYPE process_open_fds gauge");
	expect_line(t, "process_open_fds 42");
	expect_line(t, "# TYPE ringmail_configs_live gauge");
	expect_line(t, "ringmail_configs_live 3");
	buf_free(&b);

	/* unknown values (a procfs read failed) leave their metric out; a
	 * label value is escaped */
	p.version = "x\"y\\z";
	p.resident_bytes = -1;
	p.open_fds = -1;
	p.configs_live = -1;
	buf_init(&b, 1 << 16);
	cr_assert_eq(metrics_render_process(&b, &p), 0);
	cr_assert_eq(buf_append(&b, "", 1), 0);
	t = buf_data(&b);
	expect_line(t, "ringmail_build_info{version=\"x\\\"y\\\\z\"} 1");
	cr_expect(strstr(t, "process_resident_memory_bytes") == NULL, "got %s", t);
	cr_expect(strstr(t, "process_open_fds") == NULL, "got %s", t);
	cr_expect(strstr(t, "ringmail_configs_live") == NULL, "got %s", t);
	buf_free(&b);

	buf_init(&b, 32);
	cr_expect_eq(metrics_render_process(&b, &p), -ENOBUFS);
	buf_free(&b);
}

Test(metrics, process_read_sees_this_process)
{
	struct metrics_process p;

	metrics_process_started();
	metrics_process_read(&p);
	cr_expect_str_eq(p.version, RINGMAIL_VERSION);
	cr_expect(p.start_time_seconds > 1.5e9, "got %f", p.start_time_seconds);
	cr_expect(p.resident_bytes > 0, "got %lld", (long long)p.resident_bytes);
	cr_expect(p.open_fds >= 3, "got %lld", (long long)p.open_fds);
	cr_expect_eq(p.configs_live, 0, "no config loaded here: got %lld", (long long)p.configs_live);
}
