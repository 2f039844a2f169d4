/*
 * queue_format - the rows of ringmailctl's queue and domains commands, as
 * aligned text or as JSON lines (pure: views in, bytes appended to a buf).
 *
 *   queue list      queue_format_list_header, then queue_format_item per item
 *   queue show      queue_format_message
 *   queue summary   queue_format_summary (sorts the rows, adds TOTAL)
 *   domains         queue_format_domains_header, queue_format_domain
 *   addresses       queue_format_addresses_header, queue_format_address
 *
 * Mail queued under a sender route (delivery.sender_routes) shows its
 * domain as "DOMAIN via HOP" in text, and a "sender_route" field (the hop,
 * or null) in JSON.
 *
 * Times are wall-clock milliseconds, printed as UTC ISO 8601; 0 is "none".
 * Text is for people (columns may grow past their width, never cut), a row
 * one line whatever a peer put in it (line breaks and tabs in a field
 * become spaces, other control bytes '?'); JSON is one object per line for
 * scripts, every string escaped. Every function returns 0 or -ENOBUFS
 * from the buf.
 */
#ifndef RINGMAIL_QUEUE_FORMAT_H
#define RINGMAIL_QUEUE_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* One queue item: some recipients of a message, for one domain. */
struct queue_item_view {
	const char *queue_id, *sender, *domain;
	const char *state;              /* ready, deferred, active, held */
	int64_t arrival_ms;
	size_t size;
	const char *const *rcpts;       /* the item's recipients */
	size_t rcpt_count;
	unsigned attempts;
	int64_t next_ms;                /* the next attempt; 0: not scheduled */
	const char *last_error;         /* the last deferral's reply, or NULL */
	const char *sender_route;       /* the next hop of its sender route, or NULL */
};

int queue_format_list_header(struct buf *out);
int queue_format_item(struct buf *out, bool json, const struct queue_item_view *v);

/* One recipient of a shown message; strings owned by the view. */
struct queue_rcpt_view {
	char *addr;
	const char *state;              /* static: a state or spool status name */
	unsigned attempts;
	int64_t next_ms;
	char *last_error;
};

/* A message being shown, filled as its items are found on the workers. */
struct queue_message_view {
	bool found;
	char queue_id[32];
	char *sender, *envid;           /* envid NULL when not given */
	int64_t arrival_ms;
	size_t size;
	size_t rcpt_count;
	struct queue_rcpt_view *rcpts;  /* rcpt_count of them */
};

int queue_format_message(struct buf *out, bool json, const struct queue_message_view *m);

/* queue_message_view_clear - free what the view owns; leaves it empty. */
void queue_message_view_clear(struct queue_message_view *m);

/* Ages in minutes, as Postfix's qshape: under 5, 10, 20, ... 1280, older. */
#define QUEUE_AGE_BUCKETS 10

struct queue_summary_row {
	char *domain;                   /* owned */
	uint64_t total;
	uint64_t age[QUEUE_AGE_BUCKETS];
};

/* queue_age_bucket - the column of an item age_ms old. */
size_t queue_age_bucket(int64_t age_ms);

/* queue_format_summary - TOTAL first, then the rows by total, largest
 * first (rows is sorted in place). */
int queue_format_summary(struct buf *out, bool json, struct queue_summary_row *rows, size_t n);

/* What `queue summary --top N` left out: counted in TOTAL, shown as one
 * last row ("(K other domains)"; in JSON {"others":K,...}). */
struct queue_summary_others {
	uint64_t domains;
	uint64_t total;
	uint64_t age[QUEUE_AGE_BUCKETS];
};

/* queue_summary_keep_top - keep the top rows by total (ties: by name)
 * in rows[0..top), fold the rest into *others and free their names;
 * *n becomes at most top. top 0 keeps everything. Run whenever the rows
 * reach a bound (2 x top) during a walk, the memory of a summary is
 * O(top), whatever the number of domains: each domain's row is complete
 * when it is added (a domain lives on one worker). */
void queue_summary_keep_top(struct queue_summary_row *rows, size_t *n, size_t top,
			    struct queue_summary_others *others);

/* queue_format_summary_top - queue_format_summary with the others row
 * (others may be NULL or empty). */
int queue_format_summary_top(struct buf *out, bool json, struct queue_summary_row *rows, size_t n,
			     const struct queue_summary_others *others);

/* One destination domain on its owner. */
struct queue_domain_view {
	const char *domain;
	size_t ready, deferred, active, held;
	unsigned connections, window;
	unsigned failures;              /* whole-domain backoff: hosts all failed */
	int64_t backoff_until_ms;       /* 0: not backing off */
	const char *sender_route;       /* the queue of a sender route's hop, or NULL */
};

int queue_format_domains_header(struct buf *out);
int queue_format_domain(struct buf *out, bool json, const struct queue_domain_view *v);

/* One MX address (IP and port) as a worker sees it: its sessions (idle
 * ones included), its window and limit, the domains waiting for it. */
struct queue_address_view {
	const char *address;            /* "ip:port" */
	unsigned worker;
	unsigned connections, idle, window, limit;
	size_t waiting;                 /* domains in its round robin */
	unsigned failures;              /* connect or greeting timeouts in a row */
	int64_t backoff_until_ms;       /* 0: not resting */
};

int queue_format_addresses_header(struct buf *out);
int queue_format_address(struct buf *out, bool json, const struct queue_address_view *v);

#endif
