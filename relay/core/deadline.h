/*
 * deadline - O(1) timeouts for thousands of connections.
 *
 * Every list has one fixed duration (idle, command, data ...), so a node
 * armed later always expires later: appending at the tail keeps the list
 * sorted, re-arming moves a node to the tail, and the head is the next to
 * expire. The worker sleeps until the earliest head of its lists (the
 * timeout of its one submit-and-wait) and then pops what has expired.
 * A node is in at most one list; pure code, no clock of its own.
 */
#ifndef RINGMAIL_DEADLINE_H
#define RINGMAIL_DEADLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct deadline_node {
	struct deadline_node *prev, *next;   /* NULL when not armed */
	struct deadline_list *list;
	int64_t expires_ms;
};

struct deadline_list {
	struct deadline_node head;           /* sentinel */
	int64_t timeout_ms;
};

void deadline_list_init(struct deadline_list *list, int64_t timeout_ms);

/* deadline_arm - (re)start node's timer: it expires timeout_ms after now. */
void deadline_arm(struct deadline_list *list, struct deadline_node *node, int64_t now_ms);

/* deadline_set_timeout - change the list's duration (a reload). A shorter
 * one also pulls in the nodes armed before, to at most timeout_ms after
 * now: that keeps the list sorted (a node armed later still expires no
 * earlier) and applies the new limit to everyone. O(nodes), once. */
void deadline_set_timeout(struct deadline_list *list, int64_t timeout_ms, int64_t now_ms);

/* deadline_disarm - stop node's timer; harmless when it is not armed. */
void deadline_disarm(struct deadline_node *node);

static inline bool deadline_armed(const struct deadline_node *node)
{
	return node->list != NULL;
}

/* deadline_next - when the list's first node expires; INT64_MAX if empty. */
int64_t deadline_next(const struct deadline_list *list);

/* deadline_pop_expired - disarm and return the first node expired at now,
 * or NULL. */
struct deadline_node *deadline_pop_expired(struct deadline_list *list, int64_t now_ms);

#endif
