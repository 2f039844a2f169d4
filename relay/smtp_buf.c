/*
 * smtp_buf - growable capped byte buffer (see smtp_buf.h).
 */
#include "smtp_buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* smtp_buf_init - empty buffer with a hard cap */
void smtp_buf_init(struct smtp_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

/* smtp_buf_reserve - make room for need more bytes after the data in use.
 * Consumed space at the front is reclaimed first, so a buffer used as a FIFO
 * (the reply queue) does not grow without bound. */
static int smtp_buf_reserve(struct smtp_buf *b, size_t need)
{
	size_t want, cap;
	char *p;

	if (need > b->max || b->len > b->max - need)
		return -E2BIG;
	want = b->len + need;
	if (b->start > 0 && b->start + want > b->cap) {
		memmove(b->data, b->data + b->start, b->len);
		b->start = 0;
	}
	if (b->start + want <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < want)
		cap = cap > SIZE_MAX / 2 ? want : cap * 2;
	if (cap > b->max)
		cap = b->max;
	if ((p = realloc(b->data, cap)) == NULL)
		log_fatal("smtp_buf: out of memory (%zu bytes)", cap);
	b->data = p;
	b->cap = cap;
	return 0;
}

/* smtp_buf_append - add bytes, or refuse all of them at the cap */
int smtp_buf_append(struct smtp_buf *b, const void *p, size_t n)
{
	int err;

	if (n == 0)
		return 0;
	if ((err = smtp_buf_reserve(b, n)) < 0)
		return err;
	memcpy(b->data + b->start + b->len, p, n);
	b->len += n;
	return 0;
}

/* smtp_buf_printf - formatted append; replies and headers are short, so one
 * stack buffer is enough and an over-long result is an invariant failure. */
int smtp_buf_printf(struct smtp_buf *b, const char *fmt, ...)
{
	char tmp[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		log_panic("smtp_buf_printf: formatted text too long (%d)", n);
	return smtp_buf_append(b, tmp, (size_t)n);
}

/* smtp_buf_bytes - start of the bytes in use */
const char *smtp_buf_bytes(const struct smtp_buf *b)
{
	return b->data ? b->data + b->start : "";
}

/* smtp_buf_consume - drop bytes from the front */
void smtp_buf_consume(struct smtp_buf *b, size_t n)
{
	if (n > b->len)
		log_panic("smtp_buf_consume: %zu > %zu", n, b->len);
	b->start += n;
	b->len -= n;
	if (b->len == 0)
		b->start = 0;
}

/* smtp_buf_clear - empty, keeping small storage for reuse */
void smtp_buf_clear(struct smtp_buf *b, size_t keep)
{
	if (b->cap > keep) {
		smtp_buf_release(b);
		return;
	}
	b->len = 0;
	b->start = 0;
}

/* smtp_buf_release - free the storage */
void smtp_buf_release(struct smtp_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->start = b->cap = 0;
}
