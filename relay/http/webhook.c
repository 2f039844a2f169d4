/*
 * webhook - the "webhook" helper thread: the delivery log to receivers;
 * see webhook.h.
 *
 * One thread, one libcurl multi handle, one target per configured url.
 * A target is in one of three states: reading (no batch: look for new
 * lines, or for a rotation at the end of the file), posting (its easy
 * handle is in the multi handle) or waiting (a failed batch, to be sent
 * again at next_try_ms). The thread sleeps in curl_multi_poll, at most
 * WEBHOOK_POLL_MS, and webhook_stop wakes it with curl_multi_wakeup.
 *
 * The counters other threads read (a metrics scrape) live in tables that
 * are published through an atomic pointer and never freed: a reload that
 * changes the webhooks makes a new table (carrying the counters of the
 * urls it keeps), so a scrape never reads freed memory and takes no lock.
 */
#include "webhook.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "delivery_log.h"
#include "file_io.h"
#include "log.h"
#include "webhook_event.h"
#include "xalloc.h"

#define WEBHOOK_READ_CHUNK (256 * 1024)          /* one pread of the log */
#define WEBHOOK_SCAN_MAX (16 * WEBHOOK_READ_CHUNK)   /* bytes looked at per pass */
/* While a backlog drains, the cursor is synced at most this often (two
 * syncs per batch would halve the rate); a caught-up reader saves it at
 * once. A crash resends at most this much of acknowledged batches. */
#define WEBHOOK_CURSOR_EVERY_MS 250

/* What a scrape reads: written by the thread, read by any. */
struct webhook_stats {
	char *url;
	_Atomic uint64_t events_sent;
	_Atomic uint64_t posts;
	_Atomic uint64_t post_failures;
	_Atomic uint64_t bad_lines;
	_Atomic uint64_t backlog_bytes;
	_Atomic uint64_t lag_seconds;
};

struct webhook_table {
	size_t count;
	struct webhook_stats *stats;
	struct webhook_table *prev;        /* kept reachable, never freed */
};

static _Atomic(struct webhook_table *) webhook_table;

struct webhook_target {
	struct config_webhook cfg;          /* url is our copy */
	struct webhook_stats *stats;
	char cursor_path[PATH_MAX];
	/* the file being read */
	int fd;
	uint64_t dev, ino;
	uint64_t offset;                    /* first byte not yet acknowledged */
	bool cursor_dirty;                  /* offset moved since the cursor was saved */
	int64_t cursor_saved_ms;
	int64_t rotation_seen_ms;           /* writers left the file at; 0 = not yet */
	int64_t next_open_ms;
	/* the batch */
	CURL *easy;
	struct curl_slist *headers;
	char *body;                         /* JSON array; NULL = none */
	uint64_t batch_end;                 /* the offset after its last line */
	size_t batch_events;
	int64_t batch_first_ts_ms;
	bool posting;
	int64_t next_try_ms;
	int64_t backoff_ms;
	char curl_err[CURL_ERROR_SIZE];
};

struct webhook_runner {
	pthread_t thread;
	_Atomic bool stop;
	CURLM *multi;
	char *log_path;
	char *spool_dir;
	size_t count;
	struct webhook_target *targets;
	char *chunk;                        /* WEBHOOK_READ_CHUNK */
};

static struct webhook_runner *runner;  /* main thread only */

/* mono_ms - the monotonic clock in ms: deadlines and backoff. */
static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* wall_ms - the wall clock in ms: the lag against the log's ts. */
static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int webhook_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

/* ---- the cursor ------------------------------------------------------- */

/* cursor_save - replace the target's cursor file atomically: a crash
 * leaves the old cursor or the new one, never a torn one. */
static int cursor_save(struct webhook_runner *r, struct webhook_target *t)
{
	struct webhook_cursor c = { t->dev, t->ino, t->offset };
	char text[PATH_MAX + 128];
	int n = webhook_cursor_format(text, sizeof(text), &c, t->cfg.url);

	if (n < 0)
		return n;
	struct iovec part = { text, (size_t)n };
	int rc = file_replace(r->spool_dir, t->cursor_path, &part, 1, 0640);
	if (rc == 0) {
		t->cursor_dirty = false;
		t->cursor_saved_ms = mono_ms();
	} else {
		log_error("webhook_cursor", "url=%s file=%s error=\"%s\"", t->cfg.url, t->cursor_path, strerror(-rc));
	}
	return rc;
}

/* cursor_load - the saved cursor; -ENOENT without one. */
static int cursor_load(const struct webhook_target *t, struct webhook_cursor *c)
{
	char text[PATH_MAX + 128];
	int fd = open(t->cursor_path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n < 0)
		return -EIO;
	if (webhook_cursor_parse(text, (size_t)n, c) < 0) {
		log_warn("webhook_cursor", "url=%s file=%s error=\"not a cursor; starting at the log's start\"",
			 t->cfg.url, t->cursor_path);
		return -EINVAL;
	}
	return 0;
}

/* file_use - read fd (the file at path) from offset on. */
static void file_use(struct webhook_target *t, int fd, uint64_t offset)
{
	struct stat st;

	fstat(fd, &st);
	t->fd = fd;
	t->dev = (uint64_t)st.st_dev;
	t->ino = (uint64_t)st.st_ino;
	t->offset = offset;
	t->rotation_seen_ms = 0;
	if (offset > (uint64_t)st.st_size) {
		log_warn("webhook_cursor", "url=%s offset=%llu size=%lld note=\"the log is shorter than the cursor (truncated?); reading it from its start\"",
			 t->cfg.url, (unsigned long long)offset, (long long)st.st_size);
		t->offset = 0;
	}
}

/* target_open - find where the cursor points: the log itself, the log
 * rotated once (PATH.1), or, failing both, the log's start. */
static void target_open(struct webhook_runner *r, struct webhook_target *t)
{
	struct webhook_cursor c;
	struct stat st;
	char rotated[PATH_MAX + 4];
	bool have = cursor_load(t, &c) == 0;
	int fd = open(r->log_path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		t->next_open_ms = mono_ms() + WEBHOOK_POLL_MS;   /* not written yet */
		return;
	}
	fstat(fd, &st);
	if (!have || (c.dev == (uint64_t)st.st_dev && c.ino == (uint64_t)st.st_ino)) {
		file_use(t, fd, have ? c.offset : 0);
		if (!have)
			cursor_save(r, t);
		log_info("webhook_start", "url=%s file=%s offset=%llu", t->cfg.url, r->log_path,
			 (unsigned long long)t->offset);
		return;
	}
	snprintf(rotated, sizeof(rotated), "%s.1", r->log_path);
	int old = open(rotated, O_RDONLY | O_CLOEXEC);
	if (old >= 0 && fstat(old, &st) == 0 && c.dev == (uint64_t)st.st_dev && c.ino == (uint64_t)st.st_ino) {
		close(fd);
		file_use(t, old, c.offset);
		log_info("webhook_start", "url=%s file=%s offset=%llu note=\"finishing the rotated log first\"",
			 t->cfg.url, rotated, (unsigned long long)t->offset);
		return;
	}
	if (old >= 0)
		close(old);
	log_warn("webhook_cursor", "url=%s file=%s note=\"the cursor's file is gone (rotated twice?); events in it not yet sent are lost; starting at the log's start\"",
		 t->cfg.url, t->cursor_path);
	file_use(t, fd, 0);
	cursor_save(r, t);
}

/* ---- reading ---------------------------------------------------------- */

/* target_fill - the next batch from the file, as JSON in t->body; the
 * cursor moves over lines that are no event for this receiver. Returns
 * true when a batch is ready. */
static bool target_fill(struct webhook_runner *r, struct webhook_target *t)
{
	json_t *batch = json_array();
	uint64_t at = t->offset;
	size_t events = 0;
	int64_t first_ts = 0;

	while (at - t->offset < WEBHOOK_SCAN_MAX && events < (size_t)t->cfg.batch) {
		ssize_t n = pread(t->fd, r->chunk, WEBHOOK_READ_CHUNK, (off_t)at);
		if (n <= 0)
			break;
		struct webhook_scan s = webhook_scan(r->chunk, (size_t)n, t->cfg.events, (size_t)t->cfg.batch, batch);
		if (s.consumed == 0 && n == WEBHOOK_READ_CHUNK)
			s.consumed = (size_t)n;   /* no '\n' in a whole chunk: not a log line */
		if (s.bad > 0) {
			atomic_fetch_add_explicit(&t->stats->bad_lines, s.bad, memory_order_relaxed);
			log_warn("webhook_bad_line", "url=%s file=%s offset=%llu lines=%zu note=\"not JSON; skipped\"",
				 t->cfg.url, r->log_path, (unsigned long long)at, s.bad);
		}
		if (events == 0 && s.events > 0)
			first_ts = s.first_ts_ms;
		events += s.events;
		at += s.consumed;
		if (s.consumed == 0 || (size_t)n < WEBHOOK_READ_CHUNK)
			break;
	}
	if (events == 0) {
		json_decref(batch);
		if (at != t->offset) {
			t->offset = at;
			t->cursor_dirty = true;
		}
		return false;
	}
	t->body = json_dumps(batch, JSON_COMPACT);
	json_decref(batch);
	if (t->body == NULL)
		log_fatal("webhook: out of memory");
	t->batch_end = at;
	t->batch_events = events;
	t->batch_first_ts_ms = first_ts;
	return true;
}

/* target_check_rotation - at the end of the file: has logrotate moved it
 * (and the writers with it), or cut it (copytruncate)? */
static void target_check_rotation(struct webhook_runner *r, struct webhook_target *t, int64_t now)
{
	struct stat st;
	uint64_t wdev, wino;

	if (fstat(t->fd, &st) == 0 && (uint64_t)st.st_size < t->offset) {
		log_warn("webhook_rotate", "url=%s file=%s note=\"the log was truncated; reading it from its start\"",
			 t->cfg.url, r->log_path);
		t->offset = 0;
		cursor_save(r, t);
		return;
	}
	if (stat(r->log_path, &st) < 0 || ((uint64_t)st.st_dev == t->dev && (uint64_t)st.st_ino == t->ino))
		return;          /* not rotated, or not yet reopened */
	if (delivery_log_identity(&wdev, &wino) == 0 && wdev == t->dev && wino == t->ino) {
		t->rotation_seen_ms = 0;    /* the writers are still on it */
		return;
	}
	if (t->rotation_seen_ms == 0) {
		t->rotation_seen_ms = now;
		return;
	}
	if (now - t->rotation_seen_ms < WEBHOOK_ROTATE_GRACE_MS)
		return;
	int fd = open(r->log_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	close(t->fd);
	file_use(t, fd, 0);
	cursor_save(r, t);
	log_info("webhook_rotate", "url=%s file=%s note=\"the rotated log is done; following the new one\"",
		 t->cfg.url, r->log_path);
}

/* target_gauges - backlog (bytes of the log not yet acknowledged) and
 * lag (age of the oldest event not yet acknowledged). */
static void target_gauges(struct webhook_runner *r, struct webhook_target *t)
{
	struct stat st;
	uint64_t backlog = 0;

	if (t->fd >= 0 && fstat(t->fd, &st) == 0 && (uint64_t)st.st_size > t->offset)
		backlog = (uint64_t)st.st_size - t->offset;
	if (t->fd >= 0 && stat(r->log_path, &st) == 0 && ((uint64_t)st.st_ino != t->ino || (uint64_t)st.st_dev != t->dev))
		backlog += (uint64_t)st.st_size;
	atomic_store_explicit(&t->stats->backlog_bytes, backlog, memory_order_relaxed);
	int64_t lag = t->body != NULL && t->batch_first_ts_ms > 0 ? (wall_ms() - t->batch_first_ts_ms) / 1000 : 0;
	atomic_store_explicit(&t->stats->lag_seconds, lag > 0 ? (uint64_t)lag : 0, memory_order_relaxed);
}

/* ---- posting ---------------------------------------------------------- */

/* discard - libcurl's write callback: the receiver's body is not read. */
static size_t discard(char *data, size_t size, size_t n, void *arg)
{
	(void)data;
	(void)arg;
	return size * n;
}

/* target_post - hand the batch to libcurl. */
static void target_post(struct webhook_runner *r, struct webhook_target *t)
{
	if (t->easy == NULL) {
		t->easy = curl_easy_init();
		if (t->easy == NULL)
			log_fatal("webhook: curl_easy_init failed");
		t->headers = curl_slist_append(NULL, "Content-Type: application/json");
		curl_easy_setopt(t->easy, CURLOPT_URL, t->cfg.url);
		curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(t->easy, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, (long)t->cfg.timeout_ms);
		curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)t->cfg.timeout_ms);
		curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
		curl_easy_setopt(t->easy, CURLOPT_USERAGENT, "ringmail webhook");
		curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, discard);
		curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->curl_err);
		curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
	}
	t->curl_err[0] = '\0';
	curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(t->body));
	curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, t->body);
	if (curl_multi_add_handle(r->multi, t->easy) != CURLM_OK)
		log_fatal("webhook: curl_multi_add_handle failed");
	t->posting = true;
}

/* target_done - the receiver's answer: a 2xx moves the cursor past the
 * batch; anything else keeps the batch for another try after a backoff. */
static void target_done(struct webhook_runner *r, struct webhook_target *t, CURLcode result)
{
	long status = 0;

	curl_multi_remove_handle(r->multi, t->easy);
	t->posting = false;
	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
	atomic_fetch_add_explicit(&t->stats->posts, 1, memory_order_relaxed);
	if (result == CURLE_OK && status >= 200 && status < 300) {
		t->offset = t->batch_end;
		t->cursor_dirty = true;
		if (mono_ms() - t->cursor_saved_ms >= WEBHOOK_CURSOR_EVERY_MS)
			cursor_save(r, t);
		atomic_fetch_add_explicit(&t->stats->events_sent, t->batch_events, memory_order_relaxed);
		if (t->backoff_ms > 0)
			log_info("webhook_recovered", "url=%s events=%zu", t->cfg.url, t->batch_events);
		free(t->body);
		t->body = NULL;
		t->backoff_ms = 0;
		return;
	}
	atomic_fetch_add_explicit(&t->stats->post_failures, 1, memory_order_relaxed);
	t->backoff_ms = webhook_backoff_next(t->backoff_ms, t->cfg.retry_min_ms, t->cfg.retry_max_ms);
	t->next_try_ms = mono_ms() + t->backoff_ms;
	char why[CURL_ERROR_SIZE + 64], quoted[2 * CURL_ERROR_SIZE + 140];
	if (result != CURLE_OK)
		snprintf(why, sizeof(why), "%s", t->curl_err[0] ? t->curl_err : curl_easy_strerror(result));
	else
		snprintf(why, sizeof(why), "HTTP status %ld", status);
	log_quote(quoted, sizeof(quoted), why, strlen(why));
	log_warn("webhook_failed", "url=%s events=%zu status=%ld error=%s retry_in=%.3f", t->cfg.url,
		 t->batch_events, status, quoted, (double)t->backoff_ms / 1000.0);
}

/* target_step - whatever the target can do now; *wait shrinks to when
 * it next has something to do. */
static void target_step(struct webhook_runner *r, struct webhook_target *t, int64_t now, int64_t *wait)
{
	if (t->fd < 0) {
		if (now >= t->next_open_ms)
			target_open(r, t);
		if (t->fd < 0)
			return;
	}
	if (t->posting)
		return;
	if (t->body != NULL) {
		if (now >= t->next_try_ms)
			target_post(r, t);
		else if (t->next_try_ms - now < *wait)
			*wait = t->next_try_ms - now;
		return;
	}
	if (target_fill(r, t)) {
		if (t->cursor_dirty && now - t->cursor_saved_ms >= WEBHOOK_CURSOR_EVERY_MS)
			cursor_save(r, t);
		target_post(r, t);
		return;
	}
	if (t->cursor_dirty)
		cursor_save(r, t);    /* caught up: make it durable now */
	target_check_rotation(r, t, now);
}

/* webhook_thread - every target's step, libcurl's progress, then sleep
 * until a socket is ready, a retry is due or WEBHOOK_POLL_MS passes. */
static void *webhook_thread(void *arg)
{
	struct webhook_runner *r = arg;

	while (!atomic_load(&r->stop)) {
		int64_t now = mono_ms(), wait = WEBHOOK_POLL_MS;
		int running = 0, queued;
		CURLMsg *m;

		for (size_t i = 0; i < r->count; i++)
			target_step(r, &r->targets[i], now, &wait);
		curl_multi_perform(r->multi, &running);
		bool finished = false;
		while ((m = curl_multi_info_read(r->multi, &queued)) != NULL) {
			if (m->msg != CURLMSG_DONE)
				continue;
			struct webhook_target *t = NULL;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
			target_done(r, t, m->data.result);
			finished = true;
		}
		for (size_t i = 0; i < r->count; i++)
			target_gauges(r, &r->targets[i]);
		if (!finished)
			curl_multi_poll(r->multi, NULL, 0, (int)(wait > 0 ? wait : 0), NULL);
	}
	return NULL;
}

/* ---- start, stop, reload ---------------------------------------------- */

/* stats_table - the counters for cfg's urls: those of the current table
 * for the urls it has, zeros for new ones. Published, never freed. */
static struct webhook_table *stats_table(const struct config *cfg)
{
	struct webhook_table *old = atomic_load(&webhook_table), *t = xcalloc(1, sizeof(*t));

	t->count = cfg->webhook_count;
	t->stats = xcalloc(t->count, sizeof(*t->stats));
	t->prev = old;
	for (size_t i = 0; i < t->count; i++) {
		struct webhook_stats *s = &t->stats[i];
		s->url = xstrdup(cfg->webhooks[i].url);
		for (size_t k = 0; old != NULL && k < old->count; k++) {
			if (strcmp(old->stats[k].url, s->url) != 0)
				continue;
			atomic_store(&s->events_sent, atomic_load(&old->stats[k].events_sent));
			atomic_store(&s->posts, atomic_load(&old->stats[k].posts));
			atomic_store(&s->post_failures, atomic_load(&old->stats[k].post_failures));
			atomic_store(&s->bad_lines, atomic_load(&old->stats[k].bad_lines));
		}
	}
	return t;
}

int webhook_start(const struct config *cfg)
{
	if (cfg->webhook_count == 0 || runner != NULL)
		return 0;
	struct webhook_runner *r = xcalloc(1, sizeof(*r));
	struct webhook_table *table = stats_table(cfg);

	r->multi = curl_multi_init();
	if (r->multi == NULL)
		log_fatal("webhook: curl_multi_init failed");
	r->log_path = xstrdup(cfg->log_delivery_file);
	r->spool_dir = xstrdup(cfg->spool_dir);
	r->chunk = xmalloc(WEBHOOK_READ_CHUNK);
	r->count = cfg->webhook_count;
	r->targets = xcalloc(r->count, sizeof(*r->targets));
	for (size_t i = 0; i < r->count; i++) {
		struct webhook_target *t = &r->targets[i];
		char hash[17];
		t->cfg = cfg->webhooks[i];
		t->cfg.url = xstrdup(cfg->webhooks[i].url);
		t->stats = &table->stats[i];
		t->fd = -1;
		webhook_url_hash(t->cfg.url, hash);
		snprintf(t->cursor_path, sizeof(t->cursor_path), "%s/webhook-%s.cursor", cfg->spool_dir, hash);
	}
	atomic_store(&webhook_table, table);
	int rc = pthread_create(&r->thread, NULL, webhook_thread, r);
	if (rc != 0) {
		log_error("webhook_start", "error=\"%s\"", strerror(rc));
		curl_multi_cleanup(r->multi);
		for (size_t i = 0; i < r->count; i++)
			free(r->targets[i].cfg.url);
		free(r->targets);
		free(r->chunk);
		free(r->log_path);
		free(r->spool_dir);
		free(r);
		return -rc;
	}
	pthread_setname_np(r->thread, "webhook");
	runner = r;
	return 0;
}

void webhook_stop(void)
{
	struct webhook_runner *r = runner;

	if (r == NULL)
		return;
	atomic_store(&r->stop, true);
	curl_multi_wakeup(r->multi);
	pthread_join(r->thread, NULL);
	for (size_t i = 0; i < r->count; i++) {
		struct webhook_target *t = &r->targets[i];
		if (t->posting)
			curl_multi_remove_handle(r->multi, t->easy);
		if (t->fd >= 0 && t->cursor_dirty)
			cursor_save(r, t);
		if (t->easy != NULL)
			curl_easy_cleanup(t->easy);
		curl_slist_free_all(t->headers);
		if (t->fd >= 0)
			close(t->fd);
		free(t->body);
		free(t->cfg.url);
	}
	curl_multi_cleanup(r->multi);
	free(r->targets);
	free(r->chunk);
	free(r->log_path);
	free(r->spool_dir);
	free(r);
	runner = NULL;
}

/* same_webhooks - would cfg run the thread exactly as it runs? */
static bool same_webhooks(const struct webhook_runner *r, const struct config *cfg)
{
	if (r == NULL)
		return cfg->webhook_count == 0;
	if (r->count != cfg->webhook_count || strcmp(r->log_path, cfg->log_delivery_file) != 0 ||
	    strcmp(r->spool_dir, cfg->spool_dir) != 0)
		return false;
	for (size_t i = 0; i < r->count; i++) {
		const struct config_webhook *a = &r->targets[i].cfg, *b = &cfg->webhooks[i];
		if (strcmp(a->url, b->url) != 0 || a->events != b->events || a->batch != b->batch ||
		    a->timeout_ms != b->timeout_ms || a->retry_min_ms != b->retry_min_ms ||
		    a->retry_max_ms != b->retry_max_ms)
			return false;
	}
	return true;
}

void webhook_reload(const struct config *cfg)
{
	if (same_webhooks(runner, cfg))
		return;
	webhook_stop();
	if (cfg->webhook_count == 0)
		atomic_store(&webhook_table, stats_table(cfg));   /* no series any more */
	int rc = webhook_start(cfg);
	log_info("webhook_reload", "webhooks=%zu result=%s", cfg->webhook_count, rc == 0 ? "ok" : "failed");
}

/* ---- metrics ---------------------------------------------------------- */

/* render_one - one metric family: a series per url of the table. */
static int render_one(struct buf *out, const struct webhook_table *t, const char *name, const char *type,
		      const char *help, size_t field)
{
	int rc = buf_append_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);

	for (size_t i = 0; i < t->count && rc == 0; i++) {
		const _Atomic uint64_t *v = (const _Atomic uint64_t *)((const char *)&t->stats[i] + field);
		rc = buf_append_printf(out, "%s{url=\"", name);
		for (const char *p = t->stats[i].url; *p && rc == 0; p++)
			rc = *p == '\\' || *p == '"' ? buf_append_printf(out, "\\%c", *p) : buf_append(out, p, 1);
		if (rc == 0)
			rc = buf_append_printf(out, "\"} %llu\n",
					       (unsigned long long)atomic_load_explicit(v, memory_order_relaxed));
	}
	return rc;
}

int webhook_metrics_render(struct buf *out)
{
	const struct webhook_table *t = atomic_load(&webhook_table);
	int rc = 0;

	if (t == NULL || t->count == 0)
		return 0;
	rc = render_one(out, t, "ringmail_webhook_events_sent_total", "counter",
			"Delivery events a webhook receiver acknowledged (2xx).",
			offsetof(struct webhook_stats, events_sent));
	if (rc == 0)
		rc = render_one(out, t, "ringmail_webhook_posts_total", "counter",
				"POSTs to a webhook receiver that finished (answered or failed).",
				offsetof(struct webhook_stats, posts));
	if (rc == 0)
		rc = render_one(out, t, "ringmail_webhook_post_failures_total", "counter",
				"POSTs that failed (no connection, timeout, or not 2xx); each is retried.",
				offsetof(struct webhook_stats, post_failures));
	if (rc == 0)
		rc = render_one(out, t, "ringmail_webhook_bad_lines_total", "counter",
				"Delivery log lines that were not JSON (skipped).",
				offsetof(struct webhook_stats, bad_lines));
	if (rc == 0)
		rc = render_one(out, t, "ringmail_webhook_backlog_bytes", "gauge",
				"Bytes of the delivery log not yet acknowledged by the receiver.",
				offsetof(struct webhook_stats, backlog_bytes));
	if (rc == 0)
		rc = render_one(out, t, "ringmail_webhook_lag_seconds", "gauge",
				"Age of the oldest event waiting for the receiver's 2xx; 0 when caught up.",
				offsetof(struct webhook_stats, lag_seconds));
	return rc;
}
