/*
 * retire - reference-counted objects whose last reference may drop on any
 * thread, freed later on the one thread that drains their retire list.
 *
 *   struct thing { ...; struct retire_node retire; };
 *   static struct retire_list graveyard = RETIRE_LIST_INIT;
 *
 *   retire_init(&t->retire, thing_destroy);          refs = 1 (the creator's)
 *   any thread:  retire_hold(&t->retire);             one more holder
 *                retire_release(&graveyard, &t->retire);
 *                    the last release puts t on the list (returns true);
 *                    nobody may touch t after its own release
 *   one thread:  retire_drain(&graveyard);            calls thing_destroy for
 *                    every retired node, oldest first, and returns how many
 *
 * Why a list and not a free in the last release: the last holder may be a
 * worker on its loop or a helper thread, and freeing (a config: files'
 * worth of strings, keys, regexes, a users db) is slow work a worker must
 * not do. Holding and releasing are one atomic operation each, no lock;
 * pushing is one compare-and-swap (relay/core/mpsc.h).
 *
 * Rules: a node is retired once (releasing a node whose count is already
 * zero aborts: a broken invariant). Only a holder may hold again: to hand
 * an object to another thread, hold it for that thread before you give it
 * the pointer. Ownership: a pushed node belongs to the list until drain
 * hands it to destroy, which owns (frees) it.
 */
#ifndef RINGMAIL_RETIRE_H
#define RINGMAIL_RETIRE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "mpsc.h"

struct retire_node {
	struct mpsc_node node;                    /* on the list once retired */
	atomic_ulong refs;
	void (*destroy)(struct retire_node *n);   /* frees the object */
};

struct retire_list {
	struct mpsc stack;
	atomic_size_t retired;                    /* pushed so far */
	atomic_size_t destroyed;                  /* drained so far */
};

#define RETIRE_LIST_INIT { { NULL }, 0, 0 }

/* retire_init - one reference, the caller's. */
void retire_init(struct retire_node *n, void (*destroy)(struct retire_node *n));

/* retire_hold - one more reference; the caller must already hold one. */
void retire_hold(struct retire_node *n);

/* retire_release - drop a reference. The last one pushes n onto l (true);
 * either way the caller must not touch n afterwards. */
bool retire_release(struct retire_list *l, struct retire_node *n);

/* retire_refs - the count now (a hint: it may change at once). */
unsigned long retire_refs(struct retire_node *n);

/* retire_drain - destroy everything retired so far; how many. Call from
 * one thread at a time. */
size_t retire_drain(struct retire_list *l);

/* retire_pending - retired, not yet destroyed (a hint). */
size_t retire_pending(struct retire_list *l);

#endif
