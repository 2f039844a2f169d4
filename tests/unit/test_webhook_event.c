/*
 * test_webhook_event - delivery log lines as webhook events: the type of
 * each line, the events filter, batches over whole lines only, the cursor
 * text, the url hash and the retry backoff.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include "delivery_log.h"
#include "webhook_event.h"

/* line - a real delivery log line (the daemon's formatter) for status. */
static size_t line(char *dst, size_t size, const char *status, const char *enhanced, int code,
		   const char *reply, const char *category, const char *rcpt)
{
	return delivery_log_format(dst, size, &(struct delivery_log_entry){
		.ts_ms = 1795442400123LL, .queue_id = "0001ABC", .sender = "a@b.example",
		.recipient = rcpt, .domain = "d.example", .mx = "mx.d.example", .ip = "192.0.2.1",
		.tls = "none", .status = status, .code = code, .enhanced_code = enhanced, .reply = reply,
		.delay_s = 1.5, .attempt = 2, .category = category,
	});
}

Test(webhook_event, classify_table)
{
	static const struct {
		const char *status, *enhanced, *reply;
		enum webhook_event want;
	} cases[] = {
		{ "delivered", "2.0.0", "ok", WEBHOOK_EVENT_DELIVERED },
		{ "deferred", "4.2.0", "try later", WEBHOOK_EVENT_DEFERRED },
		{ "bounced", "5.1.1", "user unknown", WEBHOOK_EVENT_BOUNCED },
		{ "bounced", NULL, "no enhanced code", WEBHOOK_EVENT_BOUNCED },
		{ "bounced", "4.4.7", "delivery time expired; last error: 451 busy", WEBHOOK_EVENT_EXPIRED },
		{ "bounced", "5.7.1", "Recipient address suppressed: 550 5.1.1 gone", WEBHOOK_EVENT_SUPPRESSED },
		/* a receiver's own 5.7.1 is a bounce, whatever it says */
		{ "bounced", "5.7.1", "spam detected", WEBHOOK_EVENT_BOUNCED },
		{ "suppressed", "5.7.1", "Recipient address suppressed: x", WEBHOOK_EVENT_SUPPRESSED },
		{ "deleted", "5.0.0", "deleted by the operator", WEBHOOK_EVENT_NONE },
		{ NULL, NULL, NULL, WEBHOOK_EVENT_NONE },
		{ "weird", NULL, NULL, WEBHOOK_EVENT_NONE },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum webhook_event got = webhook_event_classify(cases[i].status, cases[i].enhanced, cases[i].reply);
		cr_expect_eq(got, cases[i].want, "case %zu (%s %s): got %s, want %s", i,
			     cases[i].status ? cases[i].status : "NULL", cases[i].enhanced ? cases[i].enhanced : "NULL",
			     webhook_event_name(got), webhook_event_name(cases[i].want));
	}
}

Test(webhook_event, events_parse)
{
	unsigned mask = 0;

	cr_expect_eq(webhook_events_parse("delivered", &mask), 0);
	cr_expect_eq(webhook_events_parse("expired", &mask), 0);
	cr_expect_eq(mask, (1u << WEBHOOK_EVENT_DELIVERED) | (1u << WEBHOOK_EVENT_EXPIRED), "got mask %#x", mask);
	cr_expect_eq(webhook_events_parse("Delivered", &mask), -EINVAL, "names are exact");
	cr_expect_eq(webhook_events_parse("deleted", &mask), -EINVAL);
	cr_expect_eq(webhook_events_parse("", &mask), -EINVAL);
	for (unsigned i = 0; i < WEBHOOK_EVENT_COUNT; i++) {
		unsigned m = 0;
		cr_expect_eq(webhook_events_parse(webhook_event_name((enum webhook_event)i), &m), 0);
		cr_expect_eq(m, 1u << i, "%s: got %#x", webhook_event_name((enum webhook_event)i), m);
	}
	cr_expect_eq(WEBHOOK_EVENTS_ALL, 0x1fu);
}

Test(webhook_event, from_line_keeps_every_field_and_adds_event)
{
	char buf[4096];
	size_t n = line(buf, sizeof(buf), "bounced", "5.1.1", 550, "user unknown", "invalid_recipient", "c@d.example");
	enum webhook_event type;
	json_t *o = webhook_event_from_line(buf, n - 1, WEBHOOK_EVENTS_ALL, &type);

	cr_assert_not_null(o);
	cr_expect_eq(type, WEBHOOK_EVENT_BOUNCED);
	cr_expect_str_eq(json_string_value(json_object_get(o, "event")), "bounced");
	cr_expect_str_eq(json_string_value(json_object_get(o, "category")), "invalid_recipient");
	cr_expect_str_eq(json_string_value(json_object_get(o, "recipient")), "c@d.example");
	cr_expect_str_eq(json_string_value(json_object_get(o, "queue_id")), "0001ABC");
	cr_expect_str_eq(json_string_value(json_object_get(o, "ts")), "2026-11-23T14:00:00.123Z");
	cr_expect_eq(json_integer_value(json_object_get(o, "code")), 550);
	cr_expect_eq(json_integer_value(json_object_get(o, "attempt")), 2);
	cr_expect(json_is_null(json_object_get(o, "message_id")), "absent message_id: got non-null");
	/* every field of the log line, plus event */
	cr_expect_eq(json_object_size(o), 19, "got %zu fields", json_object_size(o));
	json_decref(o);
}

Test(webhook_event, from_line_filters)
{
	char buf[4096];
	size_t n = line(buf, sizeof(buf), "deferred", "4.2.0", 451, "busy", "rate_limit", "c@d.example");
	enum webhook_event type;

	cr_expect_null(webhook_event_from_line(buf, n - 1, 1u << WEBHOOK_EVENT_DELIVERED, &type));
	cr_expect_eq(type, WEBHOOK_EVENT_DEFERRED, "a filtered line still has its type");
	cr_expect_null(webhook_event_from_line("not json", 8, WEBHOOK_EVENTS_ALL, &type));
	cr_expect_eq(type, WEBHOOK_EVENT_NONE);
	cr_expect_null(webhook_event_from_line("[1,2]", 5, WEBHOOK_EVENTS_ALL, &type));
	cr_expect_eq(type, WEBHOOK_EVENT_NONE);
}

Test(webhook_event, scan_batches_whole_lines)
{
	char data[16384];
	size_t len = 0;
	const char *statuses[] = { "delivered", "deferred", "bounced", "delivered", "deleted", "delivered" };

	for (size_t i = 0; i < 6; i++) {
		char rcpt[32];
		snprintf(rcpt, sizeof(rcpt), "r%zu@d.example", i);
		len += line(data + len, sizeof(data) - len, statuses[i], "2.0.0", 250, "ok", NULL, rcpt);
	}
	size_t full = len;
	memcpy(data + len, "{\"ts\":\"2026-11-23T14:00:00.123Z\",\"status\":\"deliv", 47);   /* a write in progress */
	len += 47;

	/* delivered only, 2 per batch: r0, r3, then r5, then nothing */
	unsigned mask = 1u << WEBHOOK_EVENT_DELIVERED;
	json_t *b = json_array();
	struct webhook_scan s = webhook_scan(data, len, mask, 2, b);
	cr_expect_eq(s.events, 2);
	cr_expect_eq(s.skipped, 2, "deferred and bounced filtered: got %zu", s.skipped);
	cr_expect_str_eq(json_string_value(json_object_get(json_array_get(b, 1), "recipient")), "r3@d.example");
	cr_expect_eq(s.first_ts_ms, 1795442400123LL);
	size_t at = s.consumed;
	json_decref(b);

	b = json_array();
	s = webhook_scan(data + at, len - at, mask, 2, b);
	cr_expect_eq(s.events, 1);
	cr_expect_str_eq(json_string_value(json_object_get(json_array_get(b, 0), "recipient")), "r5@d.example");
	cr_expect_eq(at + s.consumed, full, "the partial last line is left: got %zu, want %zu", at + s.consumed, full);
	cr_expect_eq(s.bad, 0, "a deleted line is no error");
	json_decref(b);

	b = json_array();
	s = webhook_scan(data + full, len - full, mask, 2, b);
	cr_expect_eq(s.consumed, 0);
	cr_expect_eq(s.events, 0);
	json_decref(b);
}

Test(webhook_event, scan_counts_bad_lines)
{
	const char data[] = "garbage\n\n{\"status\":\"delivered\",\"recipient\":\"x@y\"}\n";
	json_t *b = json_array();
	struct webhook_scan s = webhook_scan(data, strlen(data), WEBHOOK_EVENTS_ALL, 10, b);

	cr_expect_eq(s.bad, 1);
	cr_expect_eq(s.events, 1);
	cr_expect_eq(s.consumed, strlen(data));
	cr_expect_eq(s.first_ts_ms, 0, "no ts: 0");
	json_decref(b);
}

Test(webhook_event, ts_parse)
{
	cr_expect_eq(webhook_ts_parse("2026-11-23T14:00:00.123Z"), 1795442400123LL);
	cr_expect_eq(webhook_ts_parse("1970-01-01T00:00:01.000Z"), 1000);
	cr_expect_eq(webhook_ts_parse("2026-11-23 14:00:00"), 0);
	cr_expect_eq(webhook_ts_parse(NULL), 0);
}

Test(webhook_event, cursor_round_trip)
{
	struct webhook_cursor c = { 2049, 1234567, 987654321 }, back;
	char text[256];
	int n = webhook_cursor_format(text, sizeof(text), &c, "http://127.0.0.1:8080/hook");

	cr_assert_gt(n, 0);
	cr_expect_str_eq(text, "ringmail-webhook-cursor 1 2049 1234567 987654321 http://127.0.0.1:8080/hook\n");
	cr_assert_eq(webhook_cursor_parse(text, (size_t)n, &back), 0);
	cr_expect(back.dev == c.dev && back.ino == c.ino && back.offset == c.offset, "got %llu %llu %llu",
		  (unsigned long long)back.dev, (unsigned long long)back.ino, (unsigned long long)back.offset);
	cr_expect_eq(webhook_cursor_parse("ringmail-webhook-cursor 2 1 2 3 x", 33, &back), -EINVAL);
	cr_expect_eq(webhook_cursor_parse("ringmail-webhook-cursor 1 1 2", 29, &back), -EINVAL);
	cr_expect_eq(webhook_cursor_parse("", 0, &back), -EINVAL);
	cr_expect_eq(webhook_cursor_format(text, 10, &c, "http://x"), -ENOSPC);
}

Test(webhook_event, url_hash)
{
	char a[17], b[17], c[17];

	webhook_url_hash("http://127.0.0.1:8080/a", a);
	webhook_url_hash("http://127.0.0.1:8080/a", b);
	webhook_url_hash("http://127.0.0.1:8080/b", c);
	cr_expect_str_eq(a, b);
	cr_expect_str_neq(a, c);
	cr_expect_eq(strlen(a), 16);
	webhook_url_hash("", a);
	cr_expect_str_eq(a, "cbf29ce484222325", "FNV-1a of nothing is its offset basis");
}

Test(webhook_event, backoff_doubles_between_bounds)
{
	int64_t want[] = { 1000, 2000, 4000, 8000, 10000, 10000 };
	int64_t d = 0;

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		d = webhook_backoff_next(d, 1000, 10000);
		cr_expect_eq(d, want[i], "step %zu: got %lld, want %lld", i, (long long)d, (long long)want[i]);
	}
	cr_expect_eq(webhook_backoff_next(INT64_MAX / 2 + 1, 10, INT64_MAX - 1), INT64_MAX - 1, "no overflow");
	cr_expect_eq(webhook_backoff_next(5, 10, 20), 10, "never below min");
}

Test(webhook_event, suppressed_line_is_a_suppressed_event)
{
	/* what delivery_log_suppressed writes, through the formatter */
	char buf[4096];
	size_t n = delivery_log_format(buf, sizeof(buf), &(struct delivery_log_entry){
		.ts_ms = 1795442400123LL, .recipient = "x@d.example", .domain = "d.example", .tls = "none",
		.status = "suppressed", .code = 550, .enhanced_code = "5.7.1",
		.reply = "Recipient address suppressed: 550 5.1.1 gone",
	});
	enum webhook_event type;
	json_t *o = webhook_event_from_line(buf, n - 1, 1u << WEBHOOK_EVENT_SUPPRESSED, &type);

	cr_assert_not_null(o);
	cr_expect_str_eq(json_string_value(json_object_get(o, "event")), "suppressed");
	cr_expect(json_is_null(json_object_get(o, "queue_id")), "no queue id at injection");
	json_decref(o);
}
