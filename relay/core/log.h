/*
 * log - one line per event, logfmt, to stderr or a file.
 *
 *   log_msg(LOG_LEVEL_INFO, "accept", "worker=%d peer=%s", id, addr);
 * writes
 *   ts=2026-11-23T14:00:00.123Z level=info event=accept worker=0 peer=127.0.0.1:5000
 *
 * Each line goes out whole in one write(2), so lines from different threads
 * never interleave. A thread with an event loop may gather its lines and
 * write them together once per pass (log_batch_begin, log_batch_flush
 * before it sleeps, log_batch_end): a worker then pays one write(2) per
 * pass instead of one per line. The caller formats the key=value pairs;
 * log_quote() makes a value safe to embed (quotes, escapes, truncates).
 * log_fatal() is for a broken environment: it logs and exits 1.
 * log_panic() is for a broken invariant: it logs and aborts.
 */
#ifndef RINGMAIL_LOG_H
#define RINGMAIL_LOG_H

#include <stddef.h>

enum log_level {
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR,
};

/* log_open - send lines at or above level to path ("" or "-" for stderr).
 * Returns 0 or -errno. May be called again (SIGHUP, SIGUSR1) to reopen. */
int log_open(const char *path, enum log_level level);
int log_level_parse(const char *name, enum log_level *level);
int log_enabled(enum log_level level);

/* log_batch_begin - from now on, this thread's lines wait in a buffer of
 * its own until log_batch_flush (or until the buffer is full). The thread
 * must flush before it blocks for long (a worker: before each sleep).
 * log_batch_end flushes and returns the thread to a write per line.
 * A warning or an error flushes the batch with it at once (a crash may
 * follow); so do log_fatal and log_panic. Before a call that may kill the
 * process, flush. Out of memory is fatal. */
void log_batch_begin(void);
void log_batch_flush(void);
void log_batch_end(void);

void log_msg(enum log_level level, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
_Noreturn void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void log_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* log_quote - copy src (len bytes) into dst as a logfmt value: wrapped in
 * quotes, with ", \ and control bytes escaped; at most dst_size-1 bytes.
 * Returns dst. */
char *log_quote(char *dst, size_t dst_size, const char *src, size_t len);

#define log_debug(event, ...) \
	do { if (log_enabled(LOG_LEVEL_DEBUG)) log_msg(LOG_LEVEL_DEBUG, event, __VA_ARGS__); } while (0)
#define log_info(event, ...) log_msg(LOG_LEVEL_INFO, event, __VA_ARGS__)
#define log_warn(event, ...) log_msg(LOG_LEVEL_WARN, event, __VA_ARGS__)
#define log_error(event, ...) log_msg(LOG_LEVEL_ERROR, event, __VA_ARGS__)

#endif
