/*
 * mpsc - a lock-free multi-producer, single-consumer queue of intrusive
 * nodes: how workers hand each other message references.
 *
 * Producers push with one compare-and-swap onto a stack; the consumer takes
 * the whole stack with one exchange and reverses it, so it sees FIFO order
 * per producer. Taking everything at once is what makes it ABA-free.
 * mpsc_push() returns true when the queue was empty: only then does the
 * producer need to wake the consumer.
 */
#ifndef RINGMAIL_MPSC_H
#define RINGMAIL_MPSC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct mpsc_node {
	struct mpsc_node *next;
};

struct mpsc {
	_Atomic(struct mpsc_node *) head;
};

static inline void mpsc_init(struct mpsc *q)
{
	atomic_init(&q->head, NULL);
}

/* mpsc_empty - nothing queued right now (a push may come at any time). */
static inline bool mpsc_empty(struct mpsc *q)
{
	return atomic_load_explicit(&q->head, memory_order_acquire) == NULL;
}

static inline bool mpsc_push(struct mpsc *q, struct mpsc_node *node)
{
	struct mpsc_node *old = atomic_load_explicit(&q->head, memory_order_relaxed);
	do {
		node->next = old;
	} while (!atomic_compare_exchange_weak_explicit(&q->head, &old, node,
							memory_order_release,
							memory_order_relaxed));
	return old == NULL;
}

/* mpsc_take_all - everything queued so far, oldest first, or NULL. */
static inline struct mpsc_node *mpsc_take_all(struct mpsc *q)
{
	struct mpsc_node *list = atomic_exchange_explicit(&q->head, NULL, memory_order_acquire);
	struct mpsc_node *fifo = NULL;

	while (list != NULL) {
		struct mpsc_node *next = list->next;
		list->next = fifo;
		fifo = list;
		list = next;
	}
	return fifo;
}

#endif
