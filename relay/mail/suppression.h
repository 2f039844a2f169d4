/*
 * suppression - the suppression list's data: a mutable list for its one
 * owner, immutable snapshots for everyone else, and the CSV lines of its
 * file, its journal and ringmailctl's import and export.
 *
 *   struct suppression_list *l = suppression_list_new();
 *   suppression_list_add(l, "a@b.example", created_s, expires_s, "5.1.1 user unknown");
 *   struct suppression_snapshot *s = suppression_snapshot_build(l, version);
 *   const struct suppression_entry *e = suppression_snapshot_find(s, "A@B.example", now_s);
 *   suppression_snapshot_unref(s);               the last reference frees it
 *
 * Addresses are compared without regard to case (lower-cased on the way
 * in): receivers treat local parts that way, and a suppression that a
 * case change escapes would be no suppression. An entry whose expires_s
 * (seconds since the epoch, 0 = never) has passed is as good as absent.
 * Reasons are one line of printable ASCII (other bytes become '?'), at
 * most SUPPRESSION_REASON_MAX bytes.
 *
 * CSV (RFC 4180 quoting): "address,created,expires,reason" with created
 * and expires in seconds since the epoch (expires empty or 0 = never). The
 * journal prefixes each line with "+," (add or replace) or "-," (remove:
 * the address alone).
 *
 * Ownership: a list owns its strings; a snapshot is one allocation holding
 * copies, shared by reference count across threads (suppression_snapshot_ref
 * and _unref are atomic; everything else of a snapshot is read-only).
 */
#ifndef RINGMAIL_SUPPRESSION_H
#define RINGMAIL_SUPPRESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SUPPRESSION_ADDRESS_MAX 320
#define SUPPRESSION_REASON_MAX 200
#define SUPPRESSION_LINE_MAX 1024          /* a CSV or journal line, newline included */

struct suppression_entry {
	const char *address;               /* lower case */
	int64_t created_s;
	int64_t expires_s;                 /* 0 = never */
	const char *reason;
};

struct suppression_list;
struct suppression_snapshot;

struct suppression_list *suppression_list_new(void);
struct suppression_list *suppression_list_free(struct suppression_list *l);

/* suppression_list_add - add or replace address's entry. -EINVAL when the
 * address is not one (empty, no '@', too long, blanks or controls). */
int suppression_list_add(struct suppression_list *l, const char *address, int64_t created_s,
			 int64_t expires_s, const char *reason);

/* suppression_list_remove - true when there was an entry. */
bool suppression_list_remove(struct suppression_list *l, const char *address);

/* suppression_list_purge - drop entries expired at now_s; how many. */
size_t suppression_list_purge(struct suppression_list *l, int64_t now_s);

size_t suppression_list_count(const struct suppression_list *l);

/* suppression_snapshot_build - an immutable copy of l, with one reference. */
struct suppression_snapshot *suppression_snapshot_build(const struct suppression_list *l, uint64_t version);

struct suppression_snapshot *suppression_snapshot_ref(struct suppression_snapshot *s);
/* suppression_snapshot_unref - accepts NULL, returns NULL. */
struct suppression_snapshot *suppression_snapshot_unref(struct suppression_snapshot *s);

uint64_t suppression_snapshot_version(const struct suppression_snapshot *s);
size_t suppression_snapshot_count(const struct suppression_snapshot *s);
/* suppression_snapshot_at - the i-th entry in address order. */
const struct suppression_entry *suppression_snapshot_at(const struct suppression_snapshot *s, size_t i);

/* suppression_snapshot_find - address's entry if it has one that has not
 * expired at now_s; NULL otherwise (also for s NULL). No allocation. */
const struct suppression_entry *suppression_snapshot_find(const struct suppression_snapshot *s,
							  const char *address, int64_t now_s);

/* suppression_csv_format - e as one CSV line ending in '\n' into dst
 * (size >= SUPPRESSION_LINE_MAX). Returns the length. */
size_t suppression_csv_format(char *dst, size_t size, const struct suppression_entry *e);

/* suppression_csv_parse - one CSV line (without its newline), parsed in
 * place: e's strings point into line. created empty = 0. Returns 0,
 * 1 for the header line "address,..." or a blank line (nothing to add), or
 * -EINVAL with the reason in *why. */
int suppression_csv_parse(char *line, struct suppression_entry *e, const char **why);

/* suppression_reason_clean - reason as stored: printable ASCII, one line,
 * cut at SUPPRESSION_REASON_MAX, into out (size > SUPPRESSION_REASON_MAX). */
void suppression_reason_clean(const char *reason, char *out, size_t size);

#endif
