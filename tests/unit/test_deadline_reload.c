/*
 * test_deadline_reload - a list whose duration changes (a reload shortens
 * smtp.idle_timeout, say) must still expire its nodes in deadline order,
 * and nodes armed before a shortening wait at most the new duration.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#include "deadline.h"

Test(deadline_reload, shorter_duration_pulls_in_older_nodes)
{
	struct deadline_list list;
	struct deadline_node old, young;

	memset(&old, 0, sizeof(old));
	memset(&young, 0, sizeof(young));
	deadline_list_init(&list, 300000);
	deadline_arm(&list, &old, 0);                   /* 300000 */
	deadline_set_timeout(&list, 10000, 1000);       /* the reload: old now 11000 */
	deadline_arm(&list, &young, 2000);              /* 12000 */

	int64_t next = deadline_next(&list);
	cr_assert_eq(next, 11000, "next deadline: got %lld, want 11000", (long long)next);
	cr_assert_null(deadline_pop_expired(&list, 10999), "nothing is due before 11000");
	struct deadline_node *n = deadline_pop_expired(&list, 11000);
	cr_assert_eq(n, &old, "popped at 11000: got %p, want the old node %p", (void *)n, (void *)&old);
	cr_assert_null(deadline_pop_expired(&list, 11999), "young is due at 12000");
	n = deadline_pop_expired(&list, 12000);
	cr_assert_eq(n, &young, "popped at 12000: got %p, want the young node %p", (void *)n, (void *)&young);
}

Test(deadline_reload, shorter_duration_keeps_early_nodes)
{
	struct deadline_list list;
	struct deadline_node a, b;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	deadline_list_init(&list, 1000);
	deadline_arm(&list, &a, 0);                     /* 1000 */
	deadline_arm(&list, &b, 900);                   /* 1900 */
	deadline_set_timeout(&list, 500, 1000);         /* cap 1500: a stays 1000, b 1500 */
	cr_assert_eq(a.expires_ms, 1000, "a: got %lld, want 1000", (long long)a.expires_ms);
	cr_assert_eq(b.expires_ms, 1500, "b: got %lld, want 1500", (long long)b.expires_ms);
}

Test(deadline_reload, longer_duration_changes_nothing_armed)
{
	struct deadline_list list;
	struct deadline_node a, b;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	deadline_list_init(&list, 100);
	deadline_arm(&list, &a, 0);                     /* 100 */
	deadline_set_timeout(&list, 1000, 10);
	deadline_arm(&list, &b, 20);                    /* 1020 */
	cr_assert_eq(a.expires_ms, 100, "a: got %lld, want 100", (long long)a.expires_ms);
	cr_assert_eq(deadline_pop_expired(&list, 100), &a, "a first, at 100");
	cr_assert_null(deadline_pop_expired(&list, 1019), "b is due at 1020");
	cr_assert_eq(deadline_pop_expired(&list, 1020), &b, "b at 1020");
}
