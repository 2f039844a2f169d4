/*
 * test_deadline - fixed-duration timer lists: order, re-arm, disarm, pop.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#include "deadline.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* list_order - the nodes from head to tail as indexes into nodes[]; also
 * checks the back links and the list pointers on the way. */
static size_t list_order(const struct deadline_list *list, const struct deadline_node *nodes,
			 size_t *out, size_t max)
{
	size_t n = 0;
	const struct deadline_node *prev = &list->head;

	for (const struct deadline_node *p = list->head.next; p != &list->head; p = p->next) {
		cr_assert_lt(n, max, "list longer than %zu: a cycle?", max);
		cr_assert_eq(p->prev, prev, "back link broken at position %zu", n);
		cr_assert_eq(p->list, list, "node at position %zu does not point at its list", n);
		out[n++] = (size_t)(p - nodes);
		prev = p;
	}
	cr_assert_eq(list->head.prev, prev, "head.prev is not the tail");
	return n;
}

static void expect_order(const struct deadline_list *list, const struct deadline_node *nodes,
			 const size_t *want, size_t want_n)
{
	size_t got[16];
	size_t n = list_order(list, nodes, got, N(got));

	cr_assert_eq(n, want_n, "list length: got %zu, want %zu", n, want_n);
	for (size_t i = 0; i < n; i++)
		cr_expect_eq(got[i], want[i], "position %zu: got node %zu, want node %zu", i, got[i], want[i]);
}

Test(deadline, empty_list)
{
	struct deadline_list list;

	deadline_list_init(&list, 1000);
	cr_expect_eq(deadline_next(&list), INT64_MAX, "next of empty: got %lld, want INT64_MAX",
		     (long long)deadline_next(&list));
	cr_expect_null(deadline_pop_expired(&list, 0));
	cr_expect_null(deadline_pop_expired(&list, INT64_MAX));
	expect_order(&list, NULL, NULL, 0);
}

Test(deadline, arm_appends_in_order)
{
	struct deadline_list list;
	struct deadline_node nodes[4];

	memset(nodes, 0, sizeof(nodes));
	deadline_list_init(&list, 100);
	for (size_t i = 0; i < N(nodes); i++) {
		cr_expect(!deadline_armed(&nodes[i]));
		deadline_arm(&list, &nodes[i], 10 * (int64_t)i);
		cr_expect(deadline_armed(&nodes[i]));
		cr_expect_eq(nodes[i].expires_ms, 100 + 10 * (int64_t)i, "node %zu expires: got %lld, want %lld",
			     i, (long long)nodes[i].expires_ms, (long long)(100 + 10 * (int64_t)i));
	}
	expect_order(&list, nodes, (size_t[]){ 0, 1, 2, 3 }, 4);
	cr_expect_eq(deadline_next(&list), 100, "next: got %lld, want 100", (long long)deadline_next(&list));
}

Test(deadline, rearm_moves_to_tail)
{
	struct deadline_list list;
	struct deadline_node nodes[4];

	memset(nodes, 0, sizeof(nodes));
	deadline_list_init(&list, 50);
	for (size_t i = 0; i < N(nodes); i++)
		deadline_arm(&list, &nodes[i], (int64_t)i);

	deadline_arm(&list, &nodes[0], 10);     /* head to tail */
	expect_order(&list, nodes, (size_t[]){ 1, 2, 3, 0 }, 4);
	cr_expect_eq(nodes[0].expires_ms, 60);
	cr_expect_eq(deadline_next(&list), 51, "next: got %lld, want 51", (long long)deadline_next(&list));

	deadline_arm(&list, &nodes[2], 11);     /* middle to tail */
	expect_order(&list, nodes, (size_t[]){ 1, 3, 0, 2 }, 4);

	deadline_arm(&list, &nodes[2], 12);     /* tail stays tail */
	expect_order(&list, nodes, (size_t[]){ 1, 3, 0, 2 }, 4);
	cr_expect_eq(nodes[2].expires_ms, 62);
}

Test(deadline, rearm_moves_between_lists)
{
	struct deadline_list a, b;
	struct deadline_node nodes[3];

	memset(nodes, 0, sizeof(nodes));
	deadline_list_init(&a, 10);
	deadline_list_init(&b, 1000);
	for (size_t i = 0; i < N(nodes); i++)
		deadline_arm(&a, &nodes[i], 0);
	deadline_arm(&b, &nodes[1], 5);
	expect_order(&a, nodes, (size_t[]){ 0, 2 }, 2);
	expect_order(&b, nodes, (size_t[]){ 1 }, 1);
	cr_expect_eq(nodes[1].list, &b);
	cr_expect_eq(nodes[1].expires_ms, 1005);
}

Test(deadline, disarm)
{
	struct deadline_list list;
	struct deadline_node nodes[5];

	memset(nodes, 0, sizeof(nodes));
	deadline_list_init(&list, 10);
	for (size_t i = 0; i < N(nodes); i++)
		deadline_arm(&list, &nodes[i], (int64_t)i);

	deadline_disarm(&nodes[2]);             /* middle */
	cr_expect(!deadline_armed(&nodes[2]));
	cr_expect_null(nodes[2].prev);
	cr_expect_null(nodes[2].next);
	expect_order(&list, nodes, (size_t[]){ 0, 1, 3, 4 }, 4);

	deadline_disarm(&nodes[0]);             /* head */
	expect_order(&list, nodes, (size_t[]){ 1, 3, 4 }, 3);
	cr_expect_eq(deadline_next(&list), 11, "next: got %lld, want 11", (long long)deadline_next(&list));

	deadline_disarm(&nodes[4]);             /* tail */
	expect_order(&list, nodes, (size_t[]){ 1, 3 }, 2);

	deadline_disarm(&nodes[4]);             /* twice: harmless */
	deadline_disarm(&nodes[2]);
	expect_order(&list, nodes, (size_t[]){ 1, 3 }, 2);

	deadline_disarm(&nodes[1]);
	deadline_disarm(&nodes[3]);
	expect_order(&list, nodes, NULL, 0);
	cr_expect_eq(deadline_next(&list), INT64_MAX);

	/* a disarmed node can be armed again */
	deadline_arm(&list, &nodes[3], 100);
	expect_order(&list, nodes, (size_t[]){ 3 }, 1);
	cr_expect_eq(deadline_next(&list), 110);
}

Test(deadline, disarm_never_armed)
{
	struct deadline_node node;

	memset(&node, 0, sizeof(node));
	deadline_disarm(&node);
	cr_expect(!deadline_armed(&node));
}

Test(deadline, pop_expired_only_expired_in_order)
{
	struct deadline_list list;
	struct deadline_node nodes[6];

	memset(nodes, 0, sizeof(nodes));
	deadline_list_init(&list, 1000);
	for (size_t i = 0; i < N(nodes); i++)
		deadline_arm(&list, &nodes[i], 100 * (int64_t)i);   /* expire 1000, 1100, ... 1500 */
	deadline_arm(&list, &nodes[1], 150);                        /* now 1150, after node 5 */

	cr_expect_null(deadline_pop_expired(&list, 999), "nothing expires before 1000");
	expect_order(&list, nodes, (size_t[]){ 0, 2, 3, 4, 5, 1 }, 6);

	struct deadline_node *got = deadline_pop_expired(&list, 1000);   /* expiry == now counts */
	cr_expect_eq(got, &nodes[0], "pop at 1000: got node %td, want node 0", got ? got - nodes : -1);
	cr_expect(!deadline_armed(&nodes[0]), "a popped node is disarmed");
	cr_expect_null(deadline_pop_expired(&list, 1000));

	/* at 1350: nodes 2 (1200) and 3 (1300) only, in that order */
	size_t want[] = { 2, 3 }, n = 0;
	while ((got = deadline_pop_expired(&list, 1350)) != NULL) {
		cr_assert_lt(n, N(want), "popped too many: node %td", got - nodes);
		cr_expect_eq(got, &nodes[want[n]], "pop %zu: got node %td, want node %zu", n, got - nodes, want[n]);
		n++;
	}
	cr_expect_eq(n, N(want), "popped %zu, want %zu", n, N(want));
	expect_order(&list, nodes, (size_t[]){ 4, 5, 1 }, 3);
	cr_expect_eq(deadline_next(&list), 1400, "next: got %lld, want 1400", (long long)deadline_next(&list));

	/* the far future drains the rest in list order */
	size_t rest[] = { 4, 5, 1 };
	for (size_t i = 0; i < N(rest); i++) {
		got = deadline_pop_expired(&list, INT64_MAX);
		cr_expect_eq(got, &nodes[rest[i]], "drain %zu: got node %td, want node %zu", i,
			     got ? got - nodes : -1, rest[i]);
	}
	cr_expect_null(deadline_pop_expired(&list, INT64_MAX));
	cr_expect_eq(deadline_next(&list), INT64_MAX);
}

Test(deadline, zero_timeout_list)
{
	struct deadline_list list;
	struct deadline_node node;

	memset(&node, 0, sizeof(node));
	deadline_list_init(&list, 0);
	deadline_arm(&list, &node, 42);
	cr_expect_eq(deadline_next(&list), 42);
	cr_expect_null(deadline_pop_expired(&list, 41));
	cr_expect_eq(deadline_pop_expired(&list, 42), &node);
}
