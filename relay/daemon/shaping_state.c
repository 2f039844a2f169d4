/*
 * shaping_state - process-wide site suspensions; see shaping_state.h.
 */
#include "shaping_state.h"

#include "cluster_state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Atomic uint64_t generation;

static void changed(void)
{
	atomic_fetch_add_explicit(&generation, 1, memory_order_release);
}

struct site_state {
	char name[2 * SHAPING_NAME_MAX + 2];   /* "site/source" the longest */
	_Atomic int64_t until_ms;
	_Atomic uint64_t suspensions;
	_Atomic uint32_t connections;
	_Atomic int64_t denied_ms;
	_Atomic int64_t buckets[SHAPING_BUCKET_COUNT];
	_Atomic int64_t lower_until_ms[SHAPING_LIMIT_COUNT];
	_Atomic int64_t lower_value[SHAPING_LIMIT_COUNT];
	_Atomic uint64_t lowerings;
};

/* Sites and domain entries, "site/source" pairs (per_source limits) and
 * "source:NAME" suspensions share the table. */
#define STATE_SLOTS 8192
static struct site_state states[STATE_SLOTS];

/* A source's day (high 32 bits) and messages that day (low 32). */
struct source_state {
	char name[SHAPING_NAME_MAX];
	_Atomic uint64_t day_count;
};

#define SOURCE_SLOTS (4 * SHAPING_MAX_SOURCES)
static struct source_state sources[SOURCE_SLOTS];
static _Atomic size_t source_count;

int shaping_state_source_slot(const char *name)
{
	size_t n = atomic_load_explicit(&source_count, memory_order_acquire);

	for (size_t i = 0; i < n; i++)
		if (strcmp(sources[i].name, name) == 0)
			return (int)i;
	if (n == SOURCE_SLOTS)
		return -1;
	snprintf(sources[n].name, sizeof(sources[n].name), "%s", name);
	atomic_store_explicit(&source_count, n + 1, memory_order_release);
	return (int)n;
}

bool shaping_state_source_take(unsigned slot, int64_t day, uint32_t limit)
{
	_Atomic uint64_t *w = &sources[slot].day_count;
	uint64_t old = atomic_load_explicit(w, memory_order_relaxed), next;

	do {
		uint32_t count = (int64_t)(old >> 32) == day ? (uint32_t)old : 0;
		if (limit != 0 && count >= limit)
			return false;
		next = ((uint64_t)day << 32) | (count + 1);
	} while (!atomic_compare_exchange_weak_explicit(w, &old, next, memory_order_relaxed, memory_order_relaxed));
	return true;
}

uint32_t shaping_state_source_sent(unsigned slot, int64_t day)
{
	uint64_t v = atomic_load_explicit(&sources[slot].day_count, memory_order_relaxed);

	return (int64_t)(v >> 32) == day ? (uint32_t)v : 0;
}

bool shaping_state_source_full(unsigned slot, int64_t day, uint32_t limit)
{
	return limit != 0 && shaping_state_source_sent(slot, day) >= limit;
}
static _Atomic size_t state_count;

int shaping_state_slot(const char *name)
{
	size_t n = atomic_load_explicit(&state_count, memory_order_acquire);

	for (size_t i = 0; i < n; i++)
		if (strcmp(states[i].name, name) == 0)
			return (int)i;
	if (n == STATE_SLOTS)
		return -1;
	snprintf(states[n].name, sizeof(states[n].name), "%s", name);
	atomic_store_explicit(&state_count, n + 1, memory_order_release);
	return (int)n;
}

size_t shaping_state_count(void)
{
	return atomic_load_explicit(&state_count, memory_order_acquire);
}

const char *shaping_state_name(unsigned slot)
{
	return slot < shaping_state_count() ? states[slot].name : "";
}

bool shaping_state_suspend(unsigned slot, int64_t until_ms)
{
	int64_t old = atomic_load_explicit(&states[slot].until_ms, memory_order_relaxed);

	while (old < until_ms) {
		if (atomic_compare_exchange_weak_explicit(&states[slot].until_ms, &old, until_ms,
							  memory_order_relaxed, memory_order_relaxed)) {
			atomic_fetch_add_explicit(&states[slot].suspensions, 1, memory_order_relaxed);
			changed();
			return true;
		}
	}
	return false;
}

int64_t shaping_state_until(unsigned slot)
{
	return atomic_load_explicit(&states[slot].until_ms, memory_order_relaxed);
}

bool shaping_state_resume(unsigned slot, int64_t now_ms)
{
	int64_t old = atomic_exchange_explicit(&states[slot].until_ms, 0, memory_order_relaxed);
	bool was = old > now_ms;

	for (int k = 0; k < SHAPING_LIMIT_COUNT; k++)
		was |= atomic_exchange_explicit(&states[slot].lower_until_ms[k], 0, memory_order_relaxed) > now_ms;
	changed();
	return was;
}

bool shaping_state_connection_acquire(unsigned slot, uint32_t max)
{
	_Atomic uint32_t *n = &states[slot].connections;
	uint32_t old = atomic_load_explicit(n, memory_order_relaxed);

	do {
		if (max != 0 && (old >= max || !cluster_state_lease_allows(slot, old)))
			return false;
	} while (!atomic_compare_exchange_weak_explicit(n, &old, old + 1, memory_order_relaxed, memory_order_relaxed));
	return true;
}

void shaping_state_connection_release(unsigned slot)
{
	atomic_fetch_sub_explicit(&states[slot].connections, 1, memory_order_relaxed);
}

uint32_t shaping_state_connections(unsigned slot)
{
	return atomic_load_explicit(&states[slot].connections, memory_order_relaxed);
}

void shaping_state_denied(unsigned slot, int64_t now_ms)
{
	atomic_store_explicit(&states[slot].denied_ms, now_ms, memory_order_relaxed);
}

bool shaping_state_wanted(unsigned slot, int64_t now_ms)
{
	int64_t at = atomic_load_explicit(&states[slot].denied_ms, memory_order_relaxed);

	return at != 0 && now_ms - at < 1000;
}

bool shaping_state_take(unsigned slot, enum shaping_bucket b, const struct token_bucket_rate *r, int64_t now_us,
			int64_t *wait_us)
{
	if (!token_bucket_take(&states[slot].buckets[b], r, now_us, wait_us))
		return false;
	/* In a cluster the token needs a credit from Redis too (taken by the
	 * cluster thread in batches): the local bucket shapes, the credits
	 * hold the sum of every node to the site's rate. */
	if (cluster_state_take(slot, (unsigned)b, r->interval_us, now_us / 1000, wait_us))
		return true;
	token_bucket_refund(&states[slot].buckets[b], r);
	return false;
}

void shaping_state_refund(unsigned slot, enum shaping_bucket b, const struct token_bucket_rate *r)
{
	token_bucket_refund(&states[slot].buckets[b], r);
	if (r->interval_us != 0)
		cluster_state_refund(slot, (unsigned)b);
}

_Atomic int64_t *shaping_state_bucket(unsigned slot, enum shaping_bucket b)
{
	return &states[slot].buckets[b];
}

bool shaping_state_lower(unsigned slot, enum shaping_limit_kind kind, int64_t value, int64_t until_ms, int64_t now_ms)
{
	struct site_state *st = &states[slot];
	int64_t old = atomic_load_explicit(&st->lower_until_ms[kind], memory_order_relaxed);

	if (old > now_ms)
		return false;      /* one lowering at a time: a storm lowers once */
	/* The value first: a reader that sees the new deadline sees it. */
	atomic_store_explicit(&st->lower_value[kind], value, memory_order_relaxed);
	if (!atomic_compare_exchange_strong_explicit(&st->lower_until_ms[kind], &old, until_ms, memory_order_release,
						     memory_order_relaxed))
		return false;
	atomic_fetch_add_explicit(&st->lowerings, 1, memory_order_relaxed);
	changed();
	return true;
}

bool shaping_state_lowered(unsigned slot, enum shaping_limit_kind kind, int64_t now_ms, int64_t *value,
			   int64_t *until_ms)
{
	struct site_state *st = &states[slot];
	int64_t until = atomic_load_explicit(&st->lower_until_ms[kind], memory_order_acquire);

	if (until <= now_ms)
		return false;
	*value = atomic_load_explicit(&st->lower_value[kind], memory_order_relaxed);
	if (until_ms != NULL)
		*until_ms = until;
	return true;
}

uint64_t shaping_state_lowerings(unsigned slot)
{
	return atomic_load_explicit(&states[slot].lowerings, memory_order_relaxed);
}

uint64_t shaping_state_suspensions(unsigned slot)
{
	return atomic_load_explicit(&states[slot].suspensions, memory_order_relaxed);
}

/* shaping_state_rate - the site's rate of kind, or the lowered one while a
 * "lower" rule runs (when it is slower). */
struct token_bucket_rate shaping_state_rate(const struct shaping_site *site, enum shaping_limit_kind kind,
					       int64_t now_ms)
{
	const struct shaping_rate *r = kind == SHAPING_LIMIT_MESSAGE_RATE ? &site->limits.message_rate
									  : &site->limits.connection_rate;
	struct token_bucket_rate tb;
	int64_t lowered;

	if (token_bucket_rate_set(&tb, r->count, r->period_ms * 1000, r->burst) < 0)
		tb = (struct token_bucket_rate){ 0, 1 };
	if (shaping_state_lowered(site->slot, kind, now_ms, &lowered, NULL) &&
	    (tb.interval_us == 0 || lowered > tb.interval_us))
		tb = (struct token_bucket_rate){ lowered, 1 };
	tb.interval_us = cluster_state_scale_interval(tb.interval_us);   /* Redis down: this node's share */
	return tb;
}

/* shaping_state_max_connections - the site's, or the lowered one. */
uint32_t shaping_state_max_connections(const struct shaping_site *site, int64_t now_ms)
{
	uint32_t max = site->limits.max_connections;
	int64_t lowered;

	if (shaping_state_lowered(site->slot, SHAPING_LIMIT_MAX_CONNECTIONS, now_ms, &lowered, NULL) &&
	    (max == 0 || lowered < max))
		max = (uint32_t)lowered;
	return cluster_state_max_connections(site->slot, max);   /* Redis down: this node's share */
}

uint64_t shaping_state_generation(void)
{
	return atomic_load_explicit(&generation, memory_order_acquire);
}

int shaping_state_save(const char *path, int64_t now_ms, int64_t wall_now_ms)
{
	size_t n = strlen(path) + 5;
	char *tmp = malloc(n);

	if (tmp == NULL)
		return -ENOMEM;
	snprintf(tmp, n, "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (f == NULL) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		free(tmp);
		return -e;
	}
	/* One line per running suspension or lowering: "name suspend until"
	 * or "name lower kind value until", until in wall-clock ms. */
	fprintf(f, "# ringmail shaping state: name suspend|lower [kind value] until_unix_ms\n");
	for (size_t i = 0; i < shaping_state_count(); i++) {
		int64_t until = shaping_state_until((unsigned)i), value;
		if (until > now_ms)
			fprintf(f, "%s suspend %lld\n", states[i].name, (long long)(wall_now_ms + until - now_ms));
		for (int k = 0; k < SHAPING_LIMIT_COUNT; k++)
			if (shaping_state_lowered((unsigned)i, (enum shaping_limit_kind)k, now_ms, &value, &until))
				fprintf(f, "%s lower %s %lld %lld\n", states[i].name, shaping_limit_name((enum shaping_limit_kind)k),
					(long long)value, (long long)(wall_now_ms + until - now_ms));
	}
	int rc = fflush(f) != 0 || fsync(fileno(f)) != 0 ? -errno : 0;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	free(tmp);
	return rc;
}

int shaping_state_restore(const char *path, int64_t now_ms, int64_t wall_now_ms, size_t *restored, char *err,
			  size_t errlen)
{
	FILE *f = fopen(path, "re");
	char line[256];
	int lineno = 0, rc = 0;

	*restored = 0;
	if (f == NULL)
		return -errno;
	while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
		char name[2 * SHAPING_NAME_MAX + 2], what[16], kind[32];
		long long a, b;
		lineno++;
		if (line[0] == '#' || line[0] == '\n')
			continue;
		int got = sscanf(line, "%129s %15s", name, what);
		if (got == 2 && strcmp(what, "suspend") == 0 && sscanf(line, "%*s %*s %lld", &a) == 1) {
			int slot = shaping_state_slot(name);
			if (slot < 0) {
				rc = -ENOSPC;
				break;
			}
			if (a > wall_now_ms) {
				shaping_state_suspend((unsigned)slot, now_ms + (a - wall_now_ms));
				(*restored)++;
			}
		} else if (got == 2 && strcmp(what, "lower") == 0 &&
			   sscanf(line, "%*s %*s %31s %lld %lld", kind, &a, &b) == 3 && shaping_limit_parse(kind) >= 0 &&
			   a > 0) {
			int slot = shaping_state_slot(name);
			if (slot < 0) {
				rc = -ENOSPC;
				break;
			}
			if (b > wall_now_ms &&
			    shaping_state_lower((unsigned)slot, (enum shaping_limit_kind)shaping_limit_parse(kind), a,
						now_ms + (b - wall_now_ms), now_ms))
				(*restored)++;
		} else {
			rc = -EINVAL;
		}
	}
	if (rc < 0)
		snprintf(err, errlen, "%s line %d: %s", path, lineno,
			 rc == -ENOSPC ? "too many site names" : "not \"name suspend until\" nor \"name lower kind value until\"");
	fclose(f);
	return rc;
}
