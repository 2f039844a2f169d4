/*
 * webhook_event - delivery log lines as webhook events; see webhook_event.h.
 */
#include "webhook_event.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const event_names[WEBHOOK_EVENT_COUNT] = {
	[WEBHOOK_EVENT_DELIVERED] = "delivered",
	[WEBHOOK_EVENT_BOUNCED] = "bounced",
	[WEBHOOK_EVENT_DEFERRED] = "deferred",
	[WEBHOOK_EVENT_EXPIRED] = "expired",
	[WEBHOOK_EVENT_SUPPRESSED] = "suppressed",
};

const char *webhook_event_name(enum webhook_event type)
{
	return type < WEBHOOK_EVENT_COUNT ? event_names[type] : "none";
}

int webhook_events_parse(const char *name, unsigned *mask)
{
	for (unsigned i = 0; i < WEBHOOK_EVENT_COUNT; i++) {
		if (strcmp(name, event_names[i]) == 0) {
			*mask |= 1u << i;
			return 0;
		}
	}
	return -EINVAL;
}

/* webhook_event_classify - see the header's table. The expired and
 * suppressed bounces are told apart by what ringmaild itself writes for
 * them, never by a receiver's words: a receiver's bounce is a 5xx with a
 * 5.x.x code, and only our own suppression bounce starts its text so. */
enum webhook_event webhook_event_classify(const char *status, const char *enhanced_code,
					  const char *reply)
{
	if (status == NULL)
		return WEBHOOK_EVENT_NONE;
	if (strcmp(status, "delivered") == 0)
		return WEBHOOK_EVENT_DELIVERED;
	if (strcmp(status, "deferred") == 0)
		return WEBHOOK_EVENT_DEFERRED;
	if (strcmp(status, "suppressed") == 0)
		return WEBHOOK_EVENT_SUPPRESSED;
	if (strcmp(status, "bounced") != 0)
		return WEBHOOK_EVENT_NONE;
	if (enhanced_code != NULL && strcmp(enhanced_code, "4.4.7") == 0)
		return WEBHOOK_EVENT_EXPIRED;
	if (enhanced_code != NULL && strcmp(enhanced_code, "5.7.1") == 0 && reply != NULL &&
	    strncmp(reply, WEBHOOK_SUPPRESSED_REPLY, strlen(WEBHOOK_SUPPRESSED_REPLY)) == 0)
		return WEBHOOK_EVENT_SUPPRESSED;
	return WEBHOOK_EVENT_BOUNCED;
}

json_t *webhook_event_from_line(const char *line, size_t len, unsigned mask, enum webhook_event *type)
{
	json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);

	*type = WEBHOOK_EVENT_NONE;
	if (o == NULL)
		return NULL;
	if (!json_is_object(o)) {
		json_decref(o);
		return NULL;
	}
	*type = webhook_event_classify(json_string_value(json_object_get(o, "status")),
				       json_string_value(json_object_get(o, "enhanced_code")),
				       json_string_value(json_object_get(o, "reply")));
	if (*type == WEBHOOK_EVENT_NONE || (mask & (1u << *type)) == 0) {
		json_decref(o);
		return NULL;
	}
	json_object_set_new(o, "event", json_string(event_names[*type]));
	return o;
}

int64_t webhook_ts_parse(const char *ts)
{
	struct tm tm = { 0 };
	int ms = 0, n = 0;

	if (ts == NULL ||
	    sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
		   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &n) != 7 || ts[n] != '\0')
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);
	return t < 0 ? 0 : (int64_t)t * 1000 + ms;
}

struct webhook_scan webhook_scan(const char *data, size_t len, unsigned mask, size_t max, json_t *batch)
{
	struct webhook_scan s = { 0 };

	while (s.consumed < len && json_array_size(batch) < max) {
		const char *line = data + s.consumed;
		const char *nl = memchr(line, '\n', len - s.consumed);
		if (nl == NULL)
			break;                     /* a write in progress: later */
		size_t n = (size_t)(nl - line);
		s.consumed += n + 1;
		if (n == 0)
			continue;
		enum webhook_event type;
		json_t *o = webhook_event_from_line(line, n, mask, &type);
		if (o == NULL) {
			if (type == WEBHOOK_EVENT_NONE) {
				json_t *j = json_loadb(line, n, 0, NULL);   /* a "deleted" is no error */
				if (j == NULL)
					s.bad++;
				json_decref(j);
			}
			s.skipped += type != WEBHOOK_EVENT_NONE;
			continue;
		}
		if (s.events == 0)
			s.first_ts_ms = webhook_ts_parse(json_string_value(json_object_get(o, "ts")));
		json_array_append_new(batch, o);
		s.events++;
	}
	return s;
}

int webhook_cursor_format(char *dst, size_t size, const struct webhook_cursor *c, const char *url)
{
	int n = snprintf(dst, size, "ringmail-webhook-cursor 1 %" PRIu64 " %" PRIu64 " %" PRIu64 " %s\n",
			 c->dev, c->ino, c->offset, url);

	return n < 0 || (size_t)n >= size ? -ENOSPC : n;
}

int webhook_cursor_parse(const char *text, size_t len, struct webhook_cursor *c)
{
	char buf[128];
	int n = 0;

	if (len >= sizeof(buf))
		len = sizeof(buf) - 1;
	memcpy(buf, text, len);
	buf[len] = '\0';
	if (sscanf(buf, "ringmail-webhook-cursor 1 %" SCNu64 " %" SCNu64 " %" SCNu64 " %n",
		   &c->dev, &c->ino, &c->offset, &n) != 3 || n == 0)
		return -EINVAL;
	return 0;
}

void webhook_url_hash(const char *url, char out[17])
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const unsigned char *p = (const unsigned char *)url; *p; p++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
	}
	snprintf(out, 17, "%016" PRIx64, h);
}

int64_t webhook_backoff_next(int64_t prev_ms, int64_t min_ms, int64_t max_ms)
{
	int64_t next = prev_ms <= 0 ? min_ms : prev_ms > max_ms / 2 ? max_ms : prev_ms * 2;

	if (next < min_ms)
		next = min_ms;
	return next > max_ms ? max_ms : next;
}
