/*
 * buf - a growable byte buffer with a hard cap; see buf.h.
 */
#include "buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xalloc.h"

void buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->head = 0;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

/* buf_reserve - compact first, grow (doubling, clamped to max) only if that
 * is not enough: a FIFO that is drained as fast as it fills keeps its size. */
int buf_reserve(struct buf *b, size_t n)
{
	if (n > b->max - b->len)
		return -ENOBUFS;
	if (b->head + b->len + n <= b->cap)
		return 0;
	if (b->head > 0) {
		memmove(b->data, b->data + b->head, b->len);
		b->head = 0;
		if (b->len + n <= b->cap)
			return 0;
	}
	size_t want = b->len + n;
	size_t cap = b->cap > 0 ? b->cap : 256;
	while (cap < want)
		cap = cap > b->max / 2 ? b->max : cap * 2;
	if (cap > b->max)
		cap = b->max;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	int err;

	if (n == 0)
		return 0;
	if ((err = buf_reserve(b, n)) < 0)
		return err;
	memcpy(b->data + b->head + b->len, p, n);
	b->len += n;
	return 0;
}

int buf_append_str(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

/* buf_append_vprintf - format once into the free space, and again after
 * growing when it did not fit. */
int buf_append_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	size_t room = b->cap - (b->head + b->len);
	char *end = b->data != NULL ? b->data + b->head + b->len : NULL;
	char dummy[1];

	va_copy(ap2, ap);
	int n = vsnprintf(end != NULL ? end : dummy, end != NULL ? room : 1, fmt, ap);
	if (n < 0) {
		va_end(ap2);
		return -EINVAL;
	}
	if ((size_t)n < room) {
		b->len += (size_t)n;
		va_end(ap2);
		return 0;
	}
	int err = buf_reserve(b, (size_t)n + 1);
	if (err == -ENOBUFS && (size_t)n <= buf_room(b)) {
		/* The NUL does not fit under the cap: format into a temporary. */
		char *tmp = xmalloc((size_t)n + 1);
		vsnprintf(tmp, (size_t)n + 1, fmt, ap2);
		err = buf_append(b, tmp, (size_t)n);
		free(tmp);
		va_end(ap2);
		return err;
	}
	if (err < 0) {
		va_end(ap2);
		return err;
	}
	vsnprintf(b->data + b->head + b->len, (size_t)n + 1, fmt, ap2);
	va_end(ap2);
	b->len += (size_t)n;
	return 0;
}

int buf_append_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int err = buf_append_vprintf(b, fmt, ap);
	va_end(ap);
	return err;
}

/* buf_prepend - into the consumed space at the front when it fits (a
 * FIFO that gives a byte back), else move the live bytes up by n. */
int buf_prepend(struct buf *b, const void *p, size_t n)
{
	int err;

	if (n == 0)
		return 0;
	if (b->head >= n) {
		if (n > b->max - b->len)
			return -ENOBUFS;
		b->head -= n;
	} else {
		if ((err = buf_reserve(b, n)) < 0)
			return err;
		memmove(b->data + b->head + n, b->data + b->head, b->len);
	}
	memcpy(b->data + b->head, p, n);
	b->len += n;
	return 0;
}

void buf_produce(struct buf *b, size_t n)
{
	if (n > b->cap - (b->head + b->len))
		log_panic("buf_produce: %zu bytes beyond the reserved room", n);
	b->len += n;
}

void buf_truncate(struct buf *b, size_t len)
{
	if (len < b->len)
		b->len = len;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->head = 0;
		b->len = 0;
		return;
	}
	b->head += n;
	b->len -= n;
}

void buf_reset(struct buf *b)
{
	b->head = 0;
	b->len = 0;
}

void buf_clear(struct buf *b, size_t keep)
{
	if (b->cap > keep)
		buf_free(b);
	else
		buf_reset(b);
}

void buf_free(struct buf *b)
{
	if (b == NULL)
		return;
	free(b->data);
	buf_init(b, b->max);
}

int buf_append_json(struct buf *b, const char *s)
{
	if (s == NULL)
		return buf_append_str(b, "null");
	size_t start = b->len;
	int rc = buf_append(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; rc == 0 && *p != '\0'; p++) {
		if (*p == '"' || *p == '\\') {
			char esc[2] = { '\\', (char)*p };
			rc = buf_append(b, esc, 2);
		} else if (*p < 0x20 || *p == 0x7f) {
			rc = buf_append_printf(b, "\\u%04x", *p);
		} else {
			rc = buf_append(b, p, 1);
		}
	}
	if (rc == 0)
		rc = buf_append(b, "\"", 1);
	if (rc < 0)
		buf_truncate(b, start);      /* all or nothing, like every append */
	return rc;
}
