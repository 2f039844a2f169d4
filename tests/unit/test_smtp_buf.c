/* test_smtp_buf - the capped growable buffer. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "smtp_buf.h"

Test(smtp_buf, append_cap_consume)
{
	struct smtp_buf b;
	char big[5000];

	memset(big, 'x', sizeof(big));
	smtp_buf_init(&b, 4096);
	cr_expect_eq(smtp_buf_append(&b, "hello", 5), 0);
	cr_expect_eq(smtp_buf_append(&b, big, 4092), -E2BIG, "over the cap: nothing added");
	cr_expect_eq(b.len, 5, "got len %zu, want 5", b.len);
	cr_expect_eq(smtp_buf_append(&b, big, 4091), 0, "exactly at the cap");
	cr_expect_leq(b.cap, 4096, "allocation capped: %zu", b.cap);
	smtp_buf_consume(&b, 4000);
	cr_expect_eq(b.len, 96);
	cr_expect_eq(smtp_buf_append(&b, big, 4000), 0, "consumed space is reused");
	cr_expect_eq(memcmp(smtp_buf_bytes(&b), big, 96 + 4000), 0);
	cr_expect_eq(smtp_buf_printf(&b, "%d", 42), -E2BIG);
	smtp_buf_clear(&b, 0);
	cr_expect_eq(b.len, 0);
	cr_expect_eq(smtp_buf_printf(&b, "a%db", 42), 0);
	cr_expect(b.len == 4 && memcmp(smtp_buf_bytes(&b), "a42b", 4) == 0);
	smtp_buf_release(&b);
	smtp_buf_release(&b);
	cr_expect_null(b.data);
}
