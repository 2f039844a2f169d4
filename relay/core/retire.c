/*
 * retire - reference counts and the retire list; see retire.h.
 *
 * Orders: a hold is relaxed (the holder already has the object, so
 * nothing it reads depends on the increment). A release is a release
 * operation so that everything the holder did with the object happens
 * before the destroy; the last one adds an acquire fence so the
 * destroying side sees all of it (the usual shared_ptr pattern). The
 * push and the drain's take-all carry the object on to the draining
 * thread (release, acquire in mpsc.h).
 */
#include "retire.h"

#include "log.h"

void retire_init(struct retire_node *n, void (*destroy)(struct retire_node *n))
{
	n->node.next = NULL;
	atomic_init(&n->refs, 1);
	n->destroy = destroy;
}

void retire_hold(struct retire_node *n)
{
	unsigned long before = atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed);

	if (before == 0)
		log_fatal("retire_hold: the object was already retired");
}

bool retire_release(struct retire_list *l, struct retire_node *n)
{
	unsigned long before = atomic_fetch_sub_explicit(&n->refs, 1, memory_order_release);

	if (before == 0)
		log_fatal("retire_release: released more often than held");
	if (before > 1)
		return false;
	atomic_thread_fence(memory_order_acquire);
	atomic_fetch_add_explicit(&l->retired, 1, memory_order_relaxed);
	mpsc_push(&l->stack, &n->node);
	return true;
}

unsigned long retire_refs(struct retire_node *n)
{
	return atomic_load_explicit(&n->refs, memory_order_relaxed);
}

size_t retire_drain(struct retire_list *l)
{
	struct mpsc_node *node = mpsc_take_all(&l->stack);
	size_t count = 0;

	while (node != NULL) {
		struct mpsc_node *next = node->next;
		struct retire_node *n = (struct retire_node *)(void *)node;   /* node is the first member */
		n->destroy(n);
		count++;
		node = next;
	}
	atomic_fetch_add_explicit(&l->destroyed, count, memory_order_relaxed);
	return count;
}

size_t retire_pending(struct retire_list *l)
{
	size_t destroyed = atomic_load_explicit(&l->destroyed, memory_order_relaxed);
	size_t retired = atomic_load_explicit(&l->retired, memory_order_relaxed);

	return retired > destroyed ? retired - destroyed : 0;
}
