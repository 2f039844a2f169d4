/*
 * log - logfmt lines to stderr or a file; see log.h.
 *
 * The fd and level are plain globals read by every thread; log_open() swaps
 * the fd with an atomic exchange and closes the old one, so a reopen during
 * a write at worst loses that one line to a closed fd.
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

/* log_write_line - format one line and write it in one call. */
static void log_write_line(enum log_level level, const char *event,
			   const char *fmt, va_list ap)
{
	char line[4096];
	struct timespec now;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	int n = snprintf(line, sizeof(line),
			 "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
			 tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000,
			 level_names[level], event);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(line) - 1) {
		int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		if (m > 0)
			n += m;
	}
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t ignored = write(atomic_load(&log_fd), line, (size_t)n);
	(void)ignored;
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
	exit(1);
}

void log_panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_write_line(LOG_LEVEL_ERROR, "panic", fmt, ap);
	va_end(ap);
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
