/*
 * test_buf - the growable byte buffer.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "buf.h"

Test(buf, append_consume_fifo)
{
	struct buf b;

	buf_init(&b, 1024);
	cr_assert_eq(buf_len(&b), 0);
	cr_assert_str_eq(buf_data(&b), "");
	cr_assert_eq(buf_append_str(&b, "hello "), 0);
	cr_assert_eq(buf_append_printf(&b, "%s %d", "world", 42), 0);
	cr_assert_eq(buf_len(&b), 14);
	cr_assert(memcmp(buf_data(&b), "hello world 42", 14) == 0);
	buf_consume(&b, 6);
	cr_assert(memcmp(buf_data(&b), "world 42", 8) == 0, "got %.*s", (int)buf_len(&b), buf_data(&b));
	/* A FIFO that drains as it fills stays within its cap. */
	for (int i = 0; i < 10000; i++) {
		cr_assert_eq(buf_append(&b, "0123456789", 10), 0, "round %d", i);
		buf_consume(&b, 10);
	}
	cr_assert(b.cap <= 1024, "cap grew to %zu", b.cap);
	buf_consume(&b, 1000);
	cr_assert_eq(buf_len(&b), 0);
	buf_free(&b);
	buf_free(NULL);
}

Test(buf, hard_cap)
{
	struct buf b;
	char big[300];

	memset(big, 'x', sizeof(big));
	buf_init(&b, 500);
	cr_assert_eq(buf_append(&b, big, 300), 0);
	cr_assert_eq(buf_append(&b, big, 201), -ENOBUFS);
	cr_assert_eq(buf_len(&b), 300, "a failed append changed len to %zu", buf_len(&b));
	cr_assert_eq(buf_append(&b, big, 200), 0);
	cr_assert_eq(buf_len(&b), 500);
	cr_assert_eq(buf_append_printf(&b, "%d", 1), -ENOBUFS);
	buf_reset(&b);
	/* printf exactly up to the cap (no room for the NUL) still works. */
	cr_assert_eq(buf_append(&b, big, 300), 0);
	cr_assert_eq(buf_append(&b, big, 197), 0);
	cr_assert_eq(buf_append_printf(&b, "%s", "abc"), 0);
	cr_assert_eq(buf_len(&b), 500);
	cr_assert(memcmp(buf_data(&b) + 497, "abc", 3) == 0);
	buf_free(&b);
}

Test(buf, printf_growth)
{
	struct buf b;
	char want[5000];

	buf_init(&b, 1 << 20);
	memset(want, 'y', sizeof(want) - 1);
	want[sizeof(want) - 1] = '\0';
	cr_assert_eq(buf_append_printf(&b, "<%s>", want), 0);
	cr_assert_eq(buf_len(&b), sizeof(want) + 1);
	cr_assert_eq(buf_data(&b)[0], '<');
	cr_assert_eq(buf_data(&b)[sizeof(want)], '>');
	buf_free(&b);
}
