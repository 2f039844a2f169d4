/*
 * log - logfmt lines to stderr or a file; see log.h.
 *
 * The fd and level are plain globals read by every thread; log_open() swaps
 * the fd with an atomic exchange and closes the old one, so a reopen during
 * a write at worst loses that one line to a closed fd (or, batched, the
 * lines of one pass).
 *
 * A batching thread keeps its lines in a thread-local buffer; the buffer
 * only ever holds whole lines, so one write(2) of it cannot split a line.
 * The timestamp's date and time of day are formatted once a second per
 * thread (gmtime_r and the printf behind it are a good share of a line's
 * cost on a busy worker); only the milliseconds change in between.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_fd = 2;
static _Atomic int log_min_level = LOG_LEVEL_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

enum { LOG_LINE_MAX = 4096, LOG_BATCH_SIZE = 16 * LOG_LINE_MAX };

/* This thread's batch (data NULL: not batching) and its last second's
 * "YYYY-MM-DDTHH:MM:SS" (19 bytes). */
static _Thread_local struct {
	char *data;
	size_t len;
	time_t stamp_sec;
	char stamp[32];
} log_tls = { .stamp_sec = -1 };

static void log_write_all(const char *data, size_t len)
{
	ssize_t ignored = write(atomic_load(&log_fd), data, len);
	(void)ignored;
}

void log_batch_begin(void)
{
	if (log_tls.data != NULL)
		return;
	log_tls.data = malloc(LOG_BATCH_SIZE);
	if (log_tls.data == NULL)
		abort();           /* out of memory is fatal; nowhere to log it yet */
	log_tls.len = 0;
}

void log_batch_flush(void)
{
	if (log_tls.len == 0)
		return;
	log_write_all(log_tls.data, log_tls.len);
	log_tls.len = 0;
}

void log_batch_end(void)
{
	log_batch_flush();
	free(log_tls.data);
	log_tls.data = NULL;
}

int log_open(const char *path, enum log_level level)
{
	int fd = 2;

	if (path != NULL && path[0] != '\0' && strcmp(path, "-") != 0) {
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0)
			return -errno;
	}
	atomic_store(&log_min_level, level);
	int old = atomic_exchange(&log_fd, fd);
	if (old != 2 && old != fd)
		close(old);
	return 0;
}

int log_level_parse(const char *name, enum log_level *level)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(name, level_names[i]) == 0) {
			*level = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

int log_enabled(enum log_level level)
{
	return (int)level >= atomic_load(&log_min_level);
}

/* log_stamp - "ts=YYYY-MM-DDTHH:MM:SS.mmmZ " into dst (at least 29 bytes);
 * returns its length (28). */
static size_t log_stamp(char *dst)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	if (now.tv_sec != log_tls.stamp_sec) {
		struct tm tm;

		gmtime_r(&now.tv_sec, &tm);
		snprintf(log_tls.stamp, sizeof(log_tls.stamp), "%04u-%02u-%02uT%02u:%02u:%02u",
			 (unsigned)(tm.tm_year + 1900) % 10000, (unsigned)(tm.tm_mon + 1) % 100,
			 (unsigned)tm.tm_mday % 100, (unsigned)tm.tm_hour % 100,
			 (unsigned)tm.tm_min % 100, (unsigned)tm.tm_sec % 100);
		log_tls.stamp_sec = now.tv_sec;
	}
	unsigned ms = (unsigned)(now.tv_nsec / 1000000);
	memcpy(dst, "ts=", 3);
	memcpy(dst + 3, log_tls.stamp, 19);
	dst[22] = '.';
	dst[23] = (char)('0' + ms / 100);
	dst[24] = (char)('0' + ms / 10 % 10);
	dst[25] = (char)('0' + ms % 10);
	dst[26] = 'Z';
	dst[27] = ' ';
	dst[28] = '\0';
	return 28;
}

/* log_write_line - format one line and write it in one call, or append it
 * to this thread's batch. */
static void log_write_line(enum log_level level, const char *event,
			   const char *fmt, va_list ap)
{
	char stack_line[LOG_LINE_MAX];
	char *line = stack_line;

	if (log_tls.data != NULL) {
		if (LOG_BATCH_SIZE - log_tls.len < LOG_LINE_MAX)
			log_batch_flush();
		line = log_tls.data + log_tls.len;
	}
	size_t n = log_stamp(line);
	int k = snprintf(line + n, LOG_LINE_MAX - n, "level=%s event=%s ",
			 level_names[level], event);
	if (k < 0)
		return;
	n += (size_t)k;
	if (n < LOG_LINE_MAX - 1) {
		int m = vsnprintf(line + n, LOG_LINE_MAX - n, fmt, ap);
		if (m > 0)
			n += (size_t)m;
	}
	if (n > LOG_LINE_MAX - 2)
		n = LOG_LINE_MAX - 2;
	line[n++] = '\n';
	if (line == stack_line) {
		log_write_all(line, n);
		return;
	}
	log_tls.len += n;
	/* A warning or an error may come just before the process dies (a
	 * seccomp kill, a crash): it and the lines before it go out now. */
	if (level >= LOG_LEVEL_WARN)
		log_batch_flush();
}

void log_msg(enum log_level level, const char *event, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	log_write_line(level, event, fmt, ap);
	va_end(ap);
}

void log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_write_line(LOG_LEVEL_ERROR, "fatal", fmt, ap);
	va_end(ap);
	log_batch_flush();
	exit(1);
}

void log_panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_write_line(LOG_LEVEL_ERROR, "panic", fmt, ap);
	va_end(ap);
	log_batch_flush();
	abort();
}

char *log_quote(char *dst, size_t dst_size, const char *src, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (dst_size < 3) {
		if (dst_size > 0)
			dst[0] = '\0';
		return dst;
	}
	dst[o++] = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];
		char esc[4];
		size_t elen = 0;

		if (c == '"' || c == '\\') {
			esc[elen++] = '\\';
			esc[elen++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			esc[elen++] = '\\';
			esc[elen++] = 'x';
			esc[elen++] = hex[c >> 4];
			esc[elen++] = hex[c & 15];
		} else {
			esc[elen++] = (char)c;
		}
		if (o + elen + 2 > dst_size)
			break;
		memcpy(dst + o, esc, elen);
		o += elen;
	}
	dst[o++] = '"';
	dst[o] = '\0';
	return dst;
}
