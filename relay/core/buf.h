/*
 * buf - a growable byte buffer with a hard cap.
 *
 *   struct buf b;
 *   buf_init(&b, 1 << 20);            // never grows beyond 1 MiB
 *   if (buf_append_printf(&b, "MAIL FROM:<%s>\r\n", from) < 0) ...
 *   write(fd, buf_data(&b), buf_len(&b)); buf_consume(&b, written);
 *   buf_free(&b);
 *
 * To fill the buffer in place (an encoder, read(2)) instead of copying:
 *
 *   if (buf_reserve(&b, n) == 0) {
 *       ssize_t got = read(fd, buf_tail(&b), n);
 *       if (got > 0) buf_produce(&b, got);
 *   }
 *
 * Invariant: the live bytes are data[head .. head+len), 0 <= head+len <= cap
 * <= max. Consuming from the front only moves head; the bytes are moved back
 * to the start when more room is needed, so a buffer used as a FIFO does not
 * grow without bound. Storage grows geometrically (doubling).
 * Appends that would exceed the cap fail with -ENOBUFS and change nothing.
 * Out of memory is fatal (log_fatal). The buffer owns data; the struct is
 * meant to be embedded, so buf_free() returns nothing and leaves an empty,
 * reusable buffer.
 */
#ifndef RINGMAIL_BUF_H
#define RINGMAIL_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data;	/* owned storage, NULL until the first append */
	size_t head;	/* offset of the first live byte */
	size_t len;	/* number of live bytes */
	size_t cap;	/* allocated size of data */
	size_t max;	/* hard cap on cap */
};

/* buf_init - an empty buffer that will never hold more than max bytes. */
void buf_init(struct buf *b, size_t max);
/* buf_reserve - make room for n more bytes; 0 or -ENOBUFS (over the cap). */
int buf_reserve(struct buf *b, size_t n);
/* buf_append - copy n bytes to the end; 0 or -ENOBUFS. */
int buf_append(struct buf *b, const void *p, size_t n);
/* buf_append_str - append a NUL-terminated string (without the NUL). */
int buf_append_str(struct buf *b, const char *s);
/* buf_append_printf - append formatted text; 0, -ENOBUFS or -EINVAL. */
int buf_append_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int buf_append_vprintf(struct buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* buf_prepend - copy n bytes in front of the live bytes (p must not point
 * into b); 0 or -ENOBUFS. Moves the live bytes unless the consumed space
 * in front is large enough. */
int buf_prepend(struct buf *b, const void *p, size_t n);
/* buf_append_json - s as a JSON string ("null" for NULL): quotes,
 * backslashes and control bytes escaped, other bytes as they are. */
int buf_append_json(struct buf *b, const char *s);

/* buf_produce - the n bytes written at buf_tail() become live; n must be
 * within what the last buf_reserve() made room for (checked: panics). */
void buf_produce(struct buf *b, size_t n);
/* buf_consume - drop n bytes (at most buf_len) from the front. */
void buf_consume(struct buf *b, size_t n);
/* buf_truncate - keep only the first len bytes (len at most buf_len). */
void buf_truncate(struct buf *b, size_t len);
/* buf_reset - drop every byte, keep the storage. */
void buf_reset(struct buf *b);
/* buf_clear - drop every byte; keep the storage only if it is at most keep
 * bytes (a long-lived buffer that once held a big message gives it back). */
void buf_clear(struct buf *b, size_t keep);

/* buf_free - release the storage; the buffer is empty and usable again. */
void buf_free(struct buf *b);

/* buf_data - the first live byte; valid until the next change. */
static inline const char *buf_data(const struct buf *b)
{
	return b->data != NULL ? b->data + b->head : "";
}

static inline size_t buf_len(const struct buf *b)
{
	return b->len;
}

/* buf_tail - where the next byte goes: room for what buf_reserve() made
 * (NULL if it never ran); valid until the next change. */
static inline char *buf_tail(struct buf *b)
{
	return b->data != NULL ? b->data + b->head + b->len : NULL;
}

/* buf_room - how many more bytes could be appended before hitting the cap. */
static inline size_t buf_room(const struct buf *b)
{
	return b->max - b->len;
}

#endif
