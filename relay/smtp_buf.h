/*
 * smtp_buf - a growable byte buffer with a hard cap, for the SMTP server.
 *
 *   struct smtp_buf b;
 *   smtp_buf_init(&b, 1 << 20);        cap: never holds more than 1 MiB
 *   if (smtp_buf_append(&b, p, n) < 0) ... -E2BIG: over the cap, nothing added
 *   smtp_buf_consume(&b, n);           drop n bytes from the front
 *   smtp_buf_release(&b);              free the storage
 *
 * Invariant: len <= cap <= max (cap is the allocated size). Growth is
 * geometric, so appending byte runs costs amortised O(1) per byte and there is
 * no allocation per append. Out of memory is fatal (log_fatal).
 * The buffer owns data; data may move on every append.
 */
#ifndef RINGMAIL_SMTP_BUF_H
#define RINGMAIL_SMTP_BUF_H

#include <stddef.h>

struct smtp_buf {
	char *data;	/* owned; NULL until the first append */
	size_t len;	/* bytes in use, from data[start] */
	size_t start;	/* consumed bytes at the front (see smtp_buf_consume) */
	size_t cap;	/* allocated bytes */
	size_t max;	/* hard cap on start-independent length */
};

/* smtp_buf_init - an empty buffer that will never hold more than max bytes. */
void smtp_buf_init(struct smtp_buf *b, size_t max);

/* smtp_buf_append - add n bytes. Returns 0, or -E2BIG (nothing added) when the
 * buffer would exceed its cap. */
int smtp_buf_append(struct smtp_buf *b, const void *p, size_t n);

/* smtp_buf_printf - append formatted text; same return as smtp_buf_append. */
int smtp_buf_printf(struct smtp_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* smtp_buf_bytes - the bytes in use (not NUL-terminated). */
const char *smtp_buf_bytes(const struct smtp_buf *b);

/* smtp_buf_consume - drop n bytes (n <= len) from the front. */
void smtp_buf_consume(struct smtp_buf *b, size_t n);

/* smtp_buf_clear - empty the buffer; keep the storage unless it is larger
 * than keep bytes, in which case it is freed. */
void smtp_buf_clear(struct smtp_buf *b, size_t keep);

/* smtp_buf_release - free the storage; the buffer is empty and reusable. */
void smtp_buf_release(struct smtp_buf *b);

#endif
