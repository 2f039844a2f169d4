/*
 * test_mpsc - the intrusive MPSC queue: FIFO order, the "was empty" signal,
 * and a multi-producer stress run (every node once, per-producer order).
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpsc.h"

struct item {
	struct mpsc_node node;       /* first: a node pointer is an item pointer */
	unsigned producer;
	unsigned seq;
};

#define ITEM(n) ((struct item *)(void *)(n))

Test(mpsc, empty)
{
	struct mpsc q;

	mpsc_init(&q);
	cr_expect_null(mpsc_take_all(&q));
	cr_expect_null(mpsc_take_all(&q));
}

Test(mpsc, fifo_single_producer)
{
	struct mpsc q;
	struct item items[10];

	mpsc_init(&q);
	for (unsigned i = 0; i < 10; i++) {
		items[i].seq = i;
		mpsc_push(&q, &items[i].node);
	}
	unsigned n = 0;
	for (struct mpsc_node *p = mpsc_take_all(&q); p != NULL; p = p->next) {
		cr_assert_lt(n, 10u, "more nodes than pushed");
		cr_expect_eq(ITEM(p)->seq, n, "position %u: got seq %u, want %u", n, ITEM(p)->seq, n);
		n++;
	}
	cr_expect_eq(n, 10u, "got %u nodes, want 10", n);
	cr_expect_null(mpsc_take_all(&q), "queue should be empty after take_all");

	/* a second batch after draining: order again from the first pushed */
	for (unsigned i = 0; i < 3; i++)
		mpsc_push(&q, &items[i].node);
	struct mpsc_node *p = mpsc_take_all(&q);
	for (unsigned i = 0; i < 3; i++, p = p->next) {
		cr_assert_not_null(p, "second batch: got %u nodes, want 3", i);
		cr_expect_eq(ITEM(p)->seq, i, "second batch %u: got seq %u", i, ITEM(p)->seq);
	}
	cr_expect_null(p);
}

Test(mpsc, push_reports_empty)
{
	struct mpsc q;
	struct item items[4];

	mpsc_init(&q);
	cr_expect(mpsc_push(&q, &items[0].node), "first push onto an empty queue: got false, want true");
	cr_expect(!mpsc_push(&q, &items[1].node), "second push: got true, want false");
	cr_expect(!mpsc_push(&q, &items[2].node), "third push: got true, want false");
	cr_assert_not_null(mpsc_take_all(&q));
	cr_expect(mpsc_push(&q, &items[3].node), "push after take_all: got false, want true");
	cr_expect(!mpsc_push(&q, &items[0].node), "push onto one: got true, want false");
}

#define PRODUCERS 4
#define PER_PRODUCER 100000

struct stress {
	struct mpsc q;
	struct item *items;          /* PRODUCERS * PER_PRODUCER */
	atomic_uint ready;
	atomic_ulong wakeups;        /* pushes that reported an empty queue */
};

struct producer_arg {
	struct stress *s;
	unsigned id;
};

static void *producer_main(void *arg)
{
	struct producer_arg *a = arg;
	struct stress *s = a->s;

	/* start together so the pushes really race */
	atomic_fetch_add(&s->ready, 1);
	while (atomic_load(&s->ready) < PRODUCERS + 1)
		sched_yield();
	for (unsigned i = 0; i < PER_PRODUCER; i++) {
		struct item *it = &s->items[a->id * PER_PRODUCER + i];
		it->producer = a->id;
		it->seq = i;
		if (mpsc_push(&s->q, &it->node))
			atomic_fetch_add(&s->wakeups, 1);
	}
	return NULL;
}

/* consume - take one batch, checking it against what came before. */
static size_t consume(struct stress *s, unsigned next_seq[PRODUCERS], unsigned char *seen)
{
	size_t n = 0;

	for (struct mpsc_node *p = mpsc_take_all(&s->q); p != NULL; p = p->next) {
		struct item *it = ITEM(p);
		size_t idx = (size_t)(it - s->items);
		cr_assert_lt(idx, (size_t)PRODUCERS * PER_PRODUCER, "node outside the item array");
		cr_assert_lt(it->producer, PRODUCERS);
		cr_assert_eq(seen[idx], 0, "node %zu received twice", idx);
		seen[idx] = 1;
		cr_assert_eq(it->seq, next_seq[it->producer], "producer %u: got seq %u, want %u",
			     it->producer, it->seq, next_seq[it->producer]);
		next_seq[it->producer]++;
		n++;
	}
	return n;
}

Test(mpsc, multi_producer_stress, .timeout = 60)
{
	struct stress s;
	pthread_t threads[PRODUCERS];
	struct producer_arg args[PRODUCERS];
	unsigned next_seq[PRODUCERS] = { 0 };
	size_t total = (size_t)PRODUCERS * PER_PRODUCER, received = 0, batches = 0;
	unsigned char *seen = calloc(total, 1);

	s.items = calloc(total, sizeof(*s.items));
	cr_assert(s.items != NULL && seen != NULL);
	mpsc_init(&s.q);
	atomic_init(&s.ready, 0);
	atomic_init(&s.wakeups, 0);
	for (unsigned i = 0; i < PRODUCERS; i++) {
		args[i] = (struct producer_arg){ &s, i };
		cr_assert_eq(pthread_create(&threads[i], NULL, producer_main, &args[i]), 0);
	}
	atomic_fetch_add(&s.ready, 1);
	while (received < total) {
		size_t n = consume(&s, next_seq, seen);
		received += n;
		batches += n > 0;
		if (n == 0)
			sched_yield();   /* the machine is shared: let producers run */
	}
	for (unsigned i = 0; i < PRODUCERS; i++)
		pthread_join(threads[i], NULL);

	cr_expect_eq(received, total, "received %zu, want %zu", received, total);
	cr_expect_null(mpsc_take_all(&s.q), "nodes left after every node was received");
	for (unsigned i = 0; i < PRODUCERS; i++)
		cr_expect_eq(next_seq[i], PER_PRODUCER, "producer %u: got %u nodes, want %u", i, next_seq[i],
			     PER_PRODUCER);
	for (size_t i = 0; i < total; i++)
		if (!seen[i])
			cr_assert_fail("node %zu never received", i);
	/* each non-empty batch began with exactly one push that saw the queue empty */
	cr_expect_eq(atomic_load(&s.wakeups), batches, "empty-queue pushes: got %lu, want %zu (batches)",
		     atomic_load(&s.wakeups), batches);
	free(seen);
	free(s.items);
}
