/*
 * test_buf - the growable byte buffer.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
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

struct json_case {
	const char *in;
	const char *want;
};

static const struct json_case json_cases[] = {
	{ NULL, "null" },
	{ "", "\"\"" },
	{ "alice@example.org", "\"alice@example.org\"" },
	{ "say \"hi\"", "\"say \\\"hi\\\"\"" },
	{ "C:\\dir\\", "\"C:\\\\dir\\\\\"" },
	{ "\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"" },
	{ "tab\there\r\n", "\"tab\\u0009here\\u000d\\u000a\"" },
	{ " ~/", "\" ~/\"" },                           /* the first and last printable, and / as is */
	{ "\xc3\xa9t\xc3\xa9 \xff", "\"\xc3\xa9t\xc3\xa9 \xff\"" }, /* 8-bit bytes as they are */
	{ "null", "\"null\"" },
};

Test(buf, append_json)
{
	struct buf b;

	buf_init(&b, 1024);
	for (size_t i = 0; i < sizeof(json_cases) / sizeof(json_cases[0]); i++) {
		const struct json_case *c = &json_cases[i];
		buf_reset(&b);
		cr_assert_eq(buf_append_str(&b, "x="), 0);
		int rc = buf_append_json(&b, c->in);
		char want[64];
		snprintf(want, sizeof(want), "x=%s", c->want);
		cr_expect_eq(rc, 0, "case %zu: got rc %d, want 0", i, rc);
		cr_expect(buf_len(&b) == strlen(want) && memcmp(buf_data(&b), want, buf_len(&b)) == 0,
			  "case %zu: got [%.*s], want [%s]", i, (int)buf_len(&b), buf_data(&b), want);
	}
	buf_free(&b);
}

/* json_fill - a buffer of max (at least 4) bytes holding "abc" behind a
 * consumed byte, so an append that needs the room moves the live bytes to
 * the front first. */
static void json_fill(struct buf *b, size_t max)
{
	buf_init(b, max);
	cr_assert_eq(buf_append_str(b, "1abc"), 0);
	buf_consume(b, 1);
}

/* All or nothing: with any cap too small, wherever the string runs out of
 * room (a plain byte, inside an escape, the closing quote), the buffer
 * keeps exactly what it had; with the exact room, the whole string. */
Test(buf, append_json_all_or_nothing)
{
	static const char *const inputs[] = { "plain", "q\"b\\e\x01z", "\x1f", "\"" };

	for (size_t k = 0; k < sizeof(inputs) / sizeof(inputs[0]); k++) {
		struct buf b;
		size_t need;

		buf_init(&b, 1024);
		cr_assert_eq(buf_append_json(&b, inputs[k]), 0);
		need = 3 + buf_len(&b);
		buf_free(&b);
		for (size_t max = 4; max < need; max++) {
			json_fill(&b, max);
			int rc = buf_append_json(&b, inputs[k]);
			cr_expect_eq(rc, -ENOBUFS, "input %zu, cap %zu of %zu: got %d, want -ENOBUFS", k, max, need,
				     rc);
			cr_expect(buf_len(&b) == 3 && memcmp(buf_data(&b), "abc", 3) == 0,
				  "input %zu, cap %zu: got [%.*s] after a failed append, want [abc]", k, max,
				  (int)buf_len(&b), buf_data(&b));
			/* and the buffer goes on working */
			cr_expect_eq(buf_append_str(&b, "d"), 0, "input %zu, cap %zu: got an error, want room for 1", k, max);
			buf_free(&b);
		}
		json_fill(&b, need);
		cr_expect_eq(buf_append_json(&b, inputs[k]), 0, "input %zu at its exact size: got an error", k);
		cr_expect_eq(buf_len(&b), need, "input %zu: got len %zu, want %zu", k, buf_len(&b), need);
		buf_free(&b);
	}
	/* null needs 4 bytes, and is all or nothing too */
	struct buf b;
	json_fill(&b, 6);
	cr_expect_eq(buf_append_json(&b, NULL), -ENOBUFS, "null with 3 bytes of room: got success");
	cr_expect_eq(buf_len(&b), 3, "got len %zu after a failed null, want 3", buf_len(&b));
	buf_free(&b);
}

Test(buf, reserve_tail_produce)
{
	struct buf b;

	buf_init(&b, 64);
	cr_assert_eq(buf_tail(&b), NULL);
	cr_assert_eq(buf_reserve(&b, 5), 0);
	memcpy(buf_tail(&b), "hello", 5);
	buf_produce(&b, 5);
	cr_assert_eq(buf_len(&b), 5);
	cr_assert(memcmp(buf_data(&b), "hello", 5) == 0);
	/* After a consume the tail follows the live bytes. */
	buf_consume(&b, 2);
	cr_assert_eq(buf_reserve(&b, 3), 0);
	cr_assert_eq(buf_tail(&b), buf_data(&b) + buf_len(&b));
	memcpy(buf_tail(&b), "abc", 3);
	buf_produce(&b, 3);
	cr_assert(memcmp(buf_data(&b), "lloabc", 6) == 0, "got %.*s", (int)buf_len(&b), buf_data(&b));
	/* Reserve never goes past the cap. */
	cr_assert_eq(buf_reserve(&b, 59), -ENOBUFS);
	cr_assert_eq(buf_reserve(&b, 58), 0);
	cr_assert_eq(buf_len(&b), 6, "reserve changed len to %zu", buf_len(&b));
	buf_free(&b);
}

Test(buf, truncate)
{
	struct buf b;

	buf_init(&b, 64);
	cr_assert_eq(buf_append_str(&b, "0123456789"), 0);
	buf_consume(&b, 2);
	buf_truncate(&b, 3);
	cr_assert_eq(buf_len(&b), 3);
	cr_assert(memcmp(buf_data(&b), "234", 3) == 0);
	buf_truncate(&b, 10);   /* longer than what is there: no change */
	cr_assert_eq(buf_len(&b), 3);
	cr_assert_eq(buf_append_str(&b, "x"), 0);
	cr_assert(memcmp(buf_data(&b), "234x", 4) == 0);
	buf_free(&b);
}

Test(buf, prepend)
{
	struct buf b;

	buf_init(&b, 16);
	/* Into an empty buffer. */
	cr_assert_eq(buf_prepend(&b, "def", 3), 0);
	cr_assert(memcmp(buf_data(&b), "def", 3) == 0);
	/* In front of live bytes: they move up. */
	cr_assert_eq(buf_prepend(&b, "abc", 3), 0);
	cr_assert_eq(buf_len(&b), 6);
	cr_assert(memcmp(buf_data(&b), "abcdef", 6) == 0, "got %.*s", (int)buf_len(&b), buf_data(&b));
	/* Into the consumed space at the front. */
	buf_consume(&b, 4);
	cr_assert_eq(buf_prepend(&b, "XY", 2), 0);
	cr_assert(memcmp(buf_data(&b), "XYef", 4) == 0, "got %.*s", (int)buf_len(&b), buf_data(&b));
	/* The cap counts live bytes, wherever they go. */
	cr_assert_eq(buf_append_str(&b, "0123456789"), 0);
	cr_assert_eq(buf_prepend(&b, "123", 3), -ENOBUFS);
	cr_assert_eq(buf_len(&b), 14, "a failed prepend changed len to %zu", buf_len(&b));
	cr_assert_eq(buf_prepend(&b, "12", 2), 0);
	cr_assert(memcmp(buf_data(&b), "12XYef0123456789", 16) == 0);
	cr_assert_eq(buf_prepend(&b, "", 0), 0);
	buf_free(&b);
}
