/*
 * deadline - fixed-duration timer lists; see deadline.h.
 */
#include "deadline.h"

#include <stddef.h>

void deadline_list_init(struct deadline_list *list, int64_t timeout_ms)
{
	list->head.prev = list->head.next = &list->head;
	list->head.list = list;
	list->timeout_ms = timeout_ms;
}

void deadline_set_timeout(struct deadline_list *list, int64_t timeout_ms, int64_t now_ms)
{
	int64_t latest = now_ms + timeout_ms;

	if (timeout_ms < list->timeout_ms) {
		for (struct deadline_node *n = list->head.next; n != &list->head; n = n->next)
			if (n->expires_ms > latest)
				n->expires_ms = latest;
	}
	list->timeout_ms = timeout_ms;
}

void deadline_disarm(struct deadline_node *node)
{
	if (node->list == NULL)
		return;
	node->prev->next = node->next;
	node->next->prev = node->prev;
	node->prev = node->next = NULL;
	node->list = NULL;
}

void deadline_arm(struct deadline_list *list, struct deadline_node *node, int64_t now_ms)
{
	deadline_disarm(node);
	node->expires_ms = now_ms + list->timeout_ms;
	node->list = list;
	node->prev = list->head.prev;
	node->next = &list->head;
	list->head.prev->next = node;
	list->head.prev = node;
}

int64_t deadline_next(const struct deadline_list *list)
{
	if (list->head.next == &list->head)
		return INT64_MAX;
	return list->head.next->expires_ms;
}

struct deadline_node *deadline_pop_expired(struct deadline_list *list, int64_t now_ms)
{
	struct deadline_node *first = list->head.next;

	if (first == &list->head || first->expires_ms > now_ms)
		return NULL;
	deadline_disarm(first);
	return first;
}
