/*
 * webhook_event - the pure part of the delivery event webhooks: which
 * delivery log line is which event, the filter, the batch of events to
 * POST, the durable cursor's text and the retry backoff.
 *
 *   unsigned mask;
 *   webhook_events_parse("delivered", &mask);          one name at a time
 *   json_t *batch = json_array();
 *   struct webhook_scan s = webhook_scan(data, len, mask, 100, batch);
 *   ... POST json_dumps(batch); on a 2xx the cursor moves by s.consumed
 *
 * An event is one line of the JSON delivery log (relay/mail/delivery_log.h)
 * with every field it has, plus "event": the type below. The type comes
 * from the line alone, so the file is the only source of truth:
 *   delivered   status "delivered"
 *   deferred    status "deferred"
 *   expired     status "bounced" with enhanced_code 4.4.7: the queue
 *               lifetime ran out (relay/delivery/outcome.c, expire_result)
 *   suppressed  status "suppressed" (refused at injection: SMTP RCPT or
 *               HTTP, because the recipient is on the suppression list), or
 *               status "bounced" with 5.7.1 and a reply starting with
 *               "Recipient address suppressed" (suppression.check at
 *               delivery, relay/delivery/queue.c)
 *   bounced     any other status "bounced"
 * Other statuses (an operator's "deleted") are no event.
 *
 * Ownership: webhook_scan appends new references to the caller's array;
 * nothing else is kept.
 */
#ifndef RINGMAIL_WEBHOOK_EVENT_H
#define RINGMAIL_WEBHOOK_EVENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum webhook_event {
	WEBHOOK_EVENT_DELIVERED,
	WEBHOOK_EVENT_BOUNCED,
	WEBHOOK_EVENT_DEFERRED,
	WEBHOOK_EVENT_EXPIRED,
	WEBHOOK_EVENT_SUPPRESSED,
	WEBHOOK_EVENT_COUNT,
	WEBHOOK_EVENT_NONE = WEBHOOK_EVENT_COUNT,
};

#define WEBHOOK_EVENTS_ALL ((1u << WEBHOOK_EVENT_COUNT) - 1)

/* The reply text of a recipient bounced at delivery for being on the list. */
#define WEBHOOK_SUPPRESSED_REPLY "Recipient address suppressed"

/* webhook_event_name - "delivered", "bounced", "deferred", "expired",
 * "suppressed"; "none" for WEBHOOK_EVENT_NONE. */
const char *webhook_event_name(enum webhook_event type);

/* webhook_events_parse - add the event named name to *mask; -EINVAL for
 * a name that is none of them. */
int webhook_events_parse(const char *name, unsigned *mask);

/* webhook_event_classify - the event a delivery log line is, from its
 * fields (NULL for an absent one). */
enum webhook_event webhook_event_classify(const char *status, const char *enhanced_code,
					  const char *reply);

/* webhook_event_from_line - the event object of one line (len bytes,
 * without the '\n'): the line's object with "event" added, when its type
 * is in mask; NULL otherwise, with *type WEBHOOK_EVENT_NONE for a line
 * that is not a JSON object (or has no status). The caller owns it. */
json_t *webhook_event_from_line(const char *line, size_t len, unsigned mask,
				enum webhook_event *type);

struct webhook_scan {
	size_t consumed;                   /* bytes of whole lines looked at */
	size_t events;                     /* appended to the batch */
	size_t skipped;                    /* lines filtered out */
	size_t bad;                        /* lines that are not an event */
	int64_t first_ts_ms;               /* the first appended event's ts; 0 = none */
};

/* webhook_scan - the whole lines of data[0, len) in order: each event in
 * mask is appended to batch until batch holds max; consumed stops after
 * the last line looked at, so a partial last line (a write in progress)
 * and the lines after a full batch are left for the next scan. A line
 * longer than len with no '\n' is left too: the caller reads more. */
struct webhook_scan webhook_scan(const char *data, size_t len, unsigned mask, size_t max,
				 json_t *batch);

/* webhook_ts_parse - the ms since the epoch of a log "ts" value
 * ("2026-11-23T14:00:00.123Z"); 0 when it does not parse. */
int64_t webhook_ts_parse(const char *ts);

/* The cursor: where a webhook's reading of the delivery log stands, as
 * the file's identity (device and inode) and the offset of the first
 * byte not yet acknowledged by the receiver. */
struct webhook_cursor {
	uint64_t dev, ino;
	uint64_t offset;
};

/* webhook_cursor_format - one line "ringmail-webhook-cursor 1 DEV INO
 * OFFSET URL\n" into dst; the length, or -ENOSPC. */
int webhook_cursor_format(char *dst, size_t size, const struct webhook_cursor *c, const char *url);

/* webhook_cursor_parse - the cursor of such a text; -EINVAL if it is not
 * one (the URL is not checked: the file's name carries its hash). */
int webhook_cursor_parse(const char *text, size_t len, struct webhook_cursor *c);

/* webhook_url_hash - 16 hex digits naming a URL's cursor file (64-bit
 * FNV-1a), into out (size >= 17). */
void webhook_url_hash(const char *url, char out[17]);

/* webhook_backoff_next - the wait before the next try after a failure
 * that followed a wait of prev_ms (0 for the first failure): min_ms, then
 * doubling up to max_ms. */
int64_t webhook_backoff_next(int64_t prev_ms, int64_t min_ms, int64_t max_ms);

#endif
