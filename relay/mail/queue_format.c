/*
 * queue_format - text and JSON rows for the queue commands; see
 * queue_format.h.
 */
#include "queue_format.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* iso_time - "2026-11-23T18:04:05Z", or "-" for 0. */
static const char *iso_time(int64_t ms, char out[32])
{
	struct tm tm;
	time_t sec = (time_t)(ms / 1000);

	if (ms <= 0 || gmtime_r(&sec, &tm) == NULL)
		return "-";
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return out;
}

/* text_line - append a printf'd line of text, then make what it appended
 * one line of printable bytes (its final newline kept). A peer's bytes get
 * into rows: an SMTP reply joins its lines with "\n", an ENVID's xtext
 * decodes to any byte. Raw, they would split a row, reach the operator's
 * terminal as escapes, or start a line "-- ok" that ringmailctl takes for
 * the end of the answer. Line breaks and tabs become spaces, other control
 * bytes '?'; 8-bit bytes (UTF-8 addresses) stay. */
static int text_line(struct buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int text_line(struct buf *out, const char *fmt, ...)
{
	size_t start = buf_len(out), end;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = buf_append_vprintf(out, fmt, ap);
	va_end(ap);
	if (rc < 0)
		return rc;
	end = buf_len(out);
	if (end > start && out->data[out->head + end - 1] == '\n')
		end--;
	for (char *p = out->data + out->head + start; p < out->data + out->head + end; p++) {
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
		else if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
	return 0;
}

/* json_time - the same as a JSON value: a string, or null. */
static int json_time(struct buf *out, int64_t ms)
{
	char t[32];

	return ms <= 0 ? buf_append_str(out, "null") : buf_append_json(out, iso_time(ms, t));
}

/* json_field - ,"name": then a string value (or null). */
static int json_field(struct buf *out, const char *name, const char *value)
{
	int rc = buf_append_printf(out, ",\"%s\":", name);
	return rc < 0 ? rc : buf_append_json(out, value);
}

int queue_format_list_header(struct buf *out)
{
	return buf_append_printf(out, "%-20s %-8s %9s %-20s %4s %-20s %-24s %5s %s\n", "QUEUE_ID", "STATE",
				 "SIZE", "ARRIVAL", "TRY", "NEXT_ATTEMPT", "DOMAIN", "RCPTS", "SENDER");
}

/* domain_text - "example.com", or "example.com via HOP" for a sender
 * route's queue. */
static const char *domain_text(const char *domain, const char *sender_route, char *buf, size_t size)
{
	if (sender_route == NULL)
		return domain;
	snprintf(buf, size, "%s via %s", domain, sender_route);
	return buf;
}

int queue_format_item(struct buf *out, bool json, const struct queue_item_view *v)
{
	char a[32], n[32], dom[600];
	int rc;

	if (!json) {
		rc = text_line(out, "%-20s %-8s %9zu %-20s %4u %-20s %-24s %5zu <%s>\n", v->queue_id, v->state,
			       v->size, iso_time(v->arrival_ms, a), v->attempts, iso_time(v->next_ms, n),
			       domain_text(v->domain, v->sender_route, dom, sizeof(dom)), v->rcpt_count, v->sender);
		if (rc == 0 && v->last_error != NULL)
			rc = text_line(out, "%22s(%s)\n", "", v->last_error);
		return rc;
	}
	rc = buf_append_str(out, "{\"queue_id\":");
	if (rc == 0)
		rc = buf_append_json(out, v->queue_id);
	if (rc == 0)
		rc = json_field(out, "state", v->state);
	if (rc == 0)
		rc = buf_append_printf(out, ",\"size\":%zu,\"attempts\":%u,\"arrival\":", v->size, v->attempts);
	if (rc == 0)
		rc = json_time(out, v->arrival_ms);
	if (rc == 0)
		rc = buf_append_str(out, ",\"next_attempt\":");
	if (rc == 0)
		rc = json_time(out, v->next_ms);
	if (rc == 0)
		rc = json_field(out, "domain", v->domain);
	if (rc == 0)
		rc = json_field(out, "sender_route", v->sender_route);
	if (rc == 0)
		rc = json_field(out, "sender", v->sender);
	if (rc == 0)
		rc = json_field(out, "last_error", v->last_error);
	if (rc == 0)
		rc = buf_append_str(out, ",\"recipients\":[");
	for (size_t i = 0; rc == 0 && i < v->rcpt_count; i++) {
		if (i > 0)
			rc = buf_append_str(out, ",");
		if (rc == 0)
			rc = buf_append_json(out, v->rcpts[i]);
	}
	return rc == 0 ? buf_append_str(out, "]}\n") : rc;
}

/* message_text - the envelope, then a line per recipient. */
static int message_text(struct buf *out, const struct queue_message_view *m)
{
	char t[32], next[64] = "";
	int rc = text_line(out, "queue_id:   %s\n", m->queue_id);

	if (rc == 0)
		rc = text_line(out, "arrival:    %s\n", iso_time(m->arrival_ms, t));
	if (rc == 0)
		rc = text_line(out, "sender:     <%s>\n", m->sender ? m->sender : "");
	if (rc == 0)
		rc = text_line(out, "size:       %zu\n", m->size);
	if (rc == 0 && m->envid != NULL)
		rc = text_line(out, "envid:      %s\n", m->envid);
	if (rc == 0)
		rc = text_line(out, "recipients: %zu\n", m->rcpt_count);
	for (size_t i = 0; rc == 0 && i < m->rcpt_count; i++) {
		const struct queue_rcpt_view *r = &m->rcpts[i];
		if (r->next_ms > 0)
			snprintf(next, sizeof(next), " next=%s", iso_time(r->next_ms, t));
		else
			next[0] = '\0';
		rc = text_line(out, "  <%s> %s attempts=%u%s%s%s%s\n", r->addr ? r->addr : "?",
			       r->state ? r->state : "unknown", r->attempts, next, r->last_error ? " last=(" : "",
			       r->last_error ? r->last_error : "", r->last_error ? ")" : "");
	}
	return rc;
}

int queue_format_message(struct buf *out, bool json, const struct queue_message_view *m)
{
	if (!json)
		return message_text(out, m);
	int rc = buf_append_str(out, "{\"queue_id\":");
	if (rc == 0)
		rc = buf_append_json(out, m->queue_id);
	if (rc == 0)
		rc = json_field(out, "sender", m->sender ? m->sender : "");
	if (rc == 0)
		rc = json_field(out, "envid", m->envid);
	if (rc == 0)
		rc = buf_append_printf(out, ",\"size\":%zu,\"arrival\":", m->size);
	if (rc == 0)
		rc = json_time(out, m->arrival_ms);
	if (rc == 0)
		rc = buf_append_str(out, ",\"recipients\":[");
	for (size_t i = 0; rc == 0 && i < m->rcpt_count; i++) {
		const struct queue_rcpt_view *r = &m->rcpts[i];
		rc = buf_append_str(out, i > 0 ? ",{\"address\":" : "{\"address\":");
		if (rc == 0)
			rc = buf_append_json(out, r->addr);
		if (rc == 0)
			rc = json_field(out, "state", r->state ? r->state : "unknown");
		if (rc == 0)
			rc = buf_append_printf(out, ",\"attempts\":%u,\"next_attempt\":", r->attempts);
		if (rc == 0)
			rc = json_time(out, r->next_ms);
		if (rc == 0)
			rc = json_field(out, "last_error", r->last_error);
		if (rc == 0)
			rc = buf_append_str(out, "}");
	}
	return rc == 0 ? buf_append_str(out, "]}\n") : rc;
}

void queue_message_view_clear(struct queue_message_view *m)
{
	for (size_t i = 0; i < m->rcpt_count; i++) {
		free(m->rcpts[i].addr);
		free(m->rcpts[i].last_error);
	}
	free(m->rcpts);
	free(m->sender);
	free(m->envid);
	memset(m, 0, sizeof(*m));
}

size_t queue_age_bucket(int64_t age_ms)
{
	int64_t limit_min = 5;

	for (size_t i = 0; i + 1 < QUEUE_AGE_BUCKETS; i++, limit_min *= 2)
		if (age_ms < limit_min * 60000)
			return i;
	return QUEUE_AGE_BUCKETS - 1;
}

static int summary_cmp(const void *a, const void *b)
{
	const struct queue_summary_row *x = a, *y = b;

	if (x->total != y->total)
		return x->total > y->total ? -1 : 1;
	return strcmp(x->domain, y->domain);
}

/* summary_row - one line: the domain (or, with others > 0, the count of
 * domains --top left out), its total, its ages. */
static int summary_row(struct buf *out, bool json, const char *domain, uint64_t others,
		       const uint64_t *total, const uint64_t *age)
{
	int rc;

	if (!json) {
		char name[64];
		if (others > 0)
			snprintf(name, sizeof(name), "(%llu other domains)", (unsigned long long)others);
		rc = buf_append_printf(out, "%-32s %7llu", others > 0 ? name : domain,
				       (unsigned long long)*total);
		for (size_t i = 0; rc == 0 && i < QUEUE_AGE_BUCKETS; i++)
			rc = buf_append_printf(out, " %6llu", (unsigned long long)age[i]);
		return rc == 0 ? buf_append_str(out, "\n") : rc;
	}
	if (others > 0) {
		rc = buf_append_printf(out, "{\"others\":%llu", (unsigned long long)others);
	} else {
		rc = buf_append_str(out, "{\"domain\":");
		if (rc == 0)
			rc = buf_append_json(out, domain);
	}
	if (rc == 0)
		rc = buf_append_printf(out, ",\"total\":%llu,\"age_minutes\":{", (unsigned long long)*total);
	int64_t limit = 5;
	for (size_t i = 0; rc == 0 && i < QUEUE_AGE_BUCKETS; i++, limit *= 2) {
		if (i + 1 < QUEUE_AGE_BUCKETS)
			rc = buf_append_printf(out, "%s\"%lld\":%llu", i ? "," : "", (long long)limit,
					       (unsigned long long)age[i]);
		else
			rc = buf_append_printf(out, ",\"%lld+\":%llu", (long long)limit / 2,
					       (unsigned long long)age[i]);
	}
	return rc == 0 ? buf_append_str(out, "}}\n") : rc;
}

void queue_summary_keep_top(struct queue_summary_row *rows, size_t *n, size_t top,
			    struct queue_summary_others *others)
{
	if (top == 0 || *n <= top)
		return;
	qsort(rows, *n, sizeof(*rows), summary_cmp);
	for (size_t i = top; i < *n; i++) {
		others->domains++;
		others->total += rows[i].total;
		for (size_t j = 0; j < QUEUE_AGE_BUCKETS; j++)
			others->age[j] += rows[i].age[j];
		free(rows[i].domain);
		rows[i].domain = NULL;
	}
	*n = top;
}

int queue_format_summary(struct buf *out, bool json, struct queue_summary_row *rows, size_t n)
{
	return queue_format_summary_top(out, json, rows, n, NULL);
}

int queue_format_summary_top(struct buf *out, bool json, struct queue_summary_row *rows, size_t n,
			     const struct queue_summary_others *others)
{
	uint64_t total = 0, age[QUEUE_AGE_BUCKETS] = { 0 };
	int rc = 0;

	if (n > 1)      /* rows is NULL when no domain matched: qsort wants a pointer */
		qsort(rows, n, sizeof(*rows), summary_cmp);
	for (size_t i = 0; i < n; i++) {
		total += rows[i].total;
		for (size_t j = 0; j < QUEUE_AGE_BUCKETS; j++)
			age[j] += rows[i].age[j];
	}
	if (others != NULL) {
		total += others->total;
		for (size_t j = 0; j < QUEUE_AGE_BUCKETS; j++)
			age[j] += others->age[j];
	}
	if (!json) {
		rc = buf_append_printf(out, "%-32s %7s", "", "T");
		int64_t limit = 5;
		for (size_t i = 0; rc == 0 && i + 1 < QUEUE_AGE_BUCKETS; i++, limit *= 2)
			rc = buf_append_printf(out, " %6lld", (long long)limit);
		if (rc == 0)
			rc = buf_append_printf(out, " %5lld+\n", (long long)limit / 2);
	}
	if (rc == 0)
		rc = summary_row(out, json, "TOTAL", 0, &total, age);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = summary_row(out, json, rows[i].domain, 0, &rows[i].total, rows[i].age);
	if (rc == 0 && others != NULL && others->domains > 0)
		rc = summary_row(out, json, NULL, others->domains, &others->total, others->age);
	return rc;
}

int queue_format_domains_header(struct buf *out)
{
	return buf_append_printf(out, "%-32s %7s %8s %6s %6s %5s %6s %8s %s\n", "DOMAIN", "READY", "DEFERRED",
				 "ACTIVE", "HELD", "CONNS", "WINDOW", "FAILURES", "BACKOFF_UNTIL");
}

int queue_format_domain(struct buf *out, bool json, const struct queue_domain_view *v)
{
	char t[32], dom[600];
	int rc;

	if (!json)
		return text_line(out, "%-32s %7zu %8zu %6zu %6zu %5u %6u %8u %s\n",
				 domain_text(v->domain, v->sender_route, dom, sizeof(dom)), v->ready,
				 v->deferred, v->active, v->held, v->connections, v->window, v->failures,
				 iso_time(v->backoff_until_ms, t));
	rc = buf_append_str(out, "{\"domain\":");
	if (rc == 0)
		rc = buf_append_json(out, v->domain);
	if (rc == 0)
		rc = json_field(out, "sender_route", v->sender_route);
	if (rc == 0)
		rc = buf_append_printf(out, ",\"ready\":%zu,\"deferred\":%zu,\"active\":%zu,\"held\":%zu,"
				       "\"connections\":%u,\"window\":%u,\"failures\":%u,\"backoff_until\":",
				       v->ready, v->deferred, v->active, v->held, v->connections, v->window,
				       v->failures);
	if (rc == 0)
		rc = json_time(out, v->backoff_until_ms);
	return rc == 0 ? buf_append_str(out, "}\n") : rc;
}

int queue_format_addresses_header(struct buf *out)
{
	return buf_append_printf(out, "%-40s %6s %5s %4s %6s %5s %7s %8s %s\n", "ADDRESS", "WORKER", "CONNS",
				 "IDLE", "WINDOW", "LIMIT", "WAITING", "FAILURES", "BACKOFF_UNTIL");
}

int queue_format_address(struct buf *out, bool json, const struct queue_address_view *v)
{
	char t[32];
	int rc;

	if (!json)
		return text_line(out, "%-40s %6u %5u %4u %6u %5u %7zu %8u %s\n", v->address, v->worker,
				 v->connections, v->idle, v->window, v->limit, v->waiting, v->failures,
				 iso_time(v->backoff_until_ms, t));
	rc = buf_append_str(out, "{\"address\":");
	if (rc == 0)
		rc = buf_append_json(out, v->address);
	if (rc == 0)
		rc = buf_append_printf(out, ",\"worker\":%u,\"connections\":%u,\"idle\":%u,\"window\":%u,"
				       "\"limit\":%u,\"waiting\":%zu,\"failures\":%u,\"backoff_until\":",
				       v->worker, v->connections, v->idle, v->window, v->limit, v->waiting,
				       v->failures);
	if (rc == 0)
		rc = json_time(out, v->backoff_until_ms);
	return rc == 0 ? buf_append_str(out, "}\n") : rc;
}
