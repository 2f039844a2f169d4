/*
 * test_retire - reference counts and the retire list: nothing is destroyed
 * while held, the last release retires (once), drain destroys on the
 * draining thread only, and a stress run of threads holding and releasing
 * many objects while one thread drains destroys each exactly once. Then
 * the config's use of it: config_hold / config_release / serials.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "retire.h"

struct thing {
	struct retire_node retire;
	int id;
	atomic_int destroyed;
	pthread_t destroyed_on;
};

static atomic_int destroy_calls;

static void thing_destroy(struct retire_node *n)
{
	struct thing *t = (struct thing *)(void *)n;   /* retire is the first member */

	atomic_fetch_add(&t->destroyed, 1);
	t->destroyed_on = pthread_self();
	atomic_fetch_add(&destroy_calls, 1);
}

Test(retire, held_objects_are_not_destroyed)
{
	struct retire_list l = RETIRE_LIST_INIT;
	struct thing t = { .id = 1 };

	retire_init(&t.retire, thing_destroy);
	retire_hold(&t.retire);
	retire_hold(&t.retire);
	cr_expect_eq(retire_refs(&t.retire), 3);
	cr_expect_not(retire_release(&l, &t.retire));
	cr_expect_not(retire_release(&l, &t.retire));
	cr_expect_eq(retire_drain(&l), 0, "still held once: nothing to destroy");
	cr_expect_eq(atomic_load(&t.destroyed), 0);
	cr_expect_eq(retire_pending(&l), 0);
}

Test(retire, last_release_retires_and_drain_destroys_once)
{
	struct retire_list l = RETIRE_LIST_INIT;
	struct thing t = { .id = 1 };

	retire_init(&t.retire, thing_destroy);
	retire_hold(&t.retire);
	cr_expect_not(retire_release(&l, &t.retire));
	cr_expect(retire_release(&l, &t.retire), "the last release retires");
	cr_expect_eq(atomic_load(&t.destroyed), 0, "release never destroys by itself");
	cr_expect_eq(retire_pending(&l), 1);
	cr_expect_eq(retire_drain(&l), 1);
	cr_expect_eq(atomic_load(&t.destroyed), 1);
	cr_expect_eq(retire_drain(&l), 0, "a second drain finds nothing");
	cr_expect_eq(atomic_load(&t.destroyed), 1);
	cr_expect_eq(retire_pending(&l), 0);
}

Test(retire, drain_destroys_oldest_first)
{
	struct retire_list l = RETIRE_LIST_INIT;
	struct thing t[3] = { { .id = 0 }, { .id = 1 }, { .id = 2 } };

	for (int i = 0; i < 3; i++) {
		retire_init(&t[i].retire, thing_destroy);
		retire_release(&l, &t[i].retire);
	}
	cr_expect_eq(retire_pending(&l), 3);
	struct mpsc_node *n = mpsc_take_all(&l.stack);
	for (int i = 0; i < 3; i++, n = n->next)
		cr_expect_eq(((struct thing *)(void *)n)->id, i, "got %d, want %d",
			     ((struct thing *)(void *)n)->id, i);
}

/* The stress run: each of THREADS threads gets a reference to every
 * object (held for it before it starts, as retire.h says), holds and
 * releases each ROUNDS times more in an order of its own, then drops its
 * own; the creator's goes before they start. So the last release of each object
 * falls on whichever thread finishes with it last, while the main thread
 * drains. */
#define THREADS 4
#define OBJECTS 256
#define ROUNDS 200

static struct thing things[OBJECTS];
static struct retire_list stress_list = RETIRE_LIST_INIT;
static atomic_int running;
static atomic_bool go;          /* threads start once the creator let go */

static void *stress_worker(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;

	while (!atomic_load(&go))
		sched_yield();
	for (int r = 0; r < ROUNDS; r++)
		for (int k = 0; k < OBJECTS; k++) {
			struct thing *t = &things[(k * 7 + id * 31 + (unsigned)r) % OBJECTS];
			retire_hold(&t->retire);
			cr_assert_eq(atomic_load(&t->destroyed), 0, "destroyed while held");
			retire_release(&stress_list, &t->retire);
		}
	for (int k = 0; k < OBJECTS; k++)
		retire_release(&stress_list, &things[(k * 13 + id) % OBJECTS].retire);
	atomic_fetch_sub(&running, 1);
	return NULL;
}

Test(retire, stress_each_destroyed_exactly_once_on_the_draining_thread)
{
	pthread_t th[THREADS];
	size_t destroyed = 0;

	atomic_store(&destroy_calls, 0);
	for (int i = 0; i < OBJECTS; i++) {
		things[i].id = i;
		retire_init(&things[i].retire, thing_destroy);
		for (int j = 0; j < THREADS; j++)
			retire_hold(&things[i].retire);
	}
	atomic_store(&running, THREADS);
	atomic_store(&go, false);
	for (unsigned i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, stress_worker, (void *)(uintptr_t)i), 0);
	for (int i = 0; i < OBJECTS; i++)
		cr_expect_not(retire_release(&stress_list, &things[i].retire), "the threads hold it");
	atomic_store(&go, true);
	while (atomic_load(&running) > 0)
		destroyed += retire_drain(&stress_list);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	destroyed += retire_drain(&stress_list);
	cr_expect_eq(destroyed, OBJECTS);
	cr_expect_eq(atomic_load(&destroy_calls), OBJECTS);
	for (int i = 0; i < OBJECTS; i++) {
		cr_expect_eq(atomic_load(&things[i].destroyed), 1, "object %d destroyed %d times", i,
			     atomic_load(&things[i].destroyed));
		cr_expect(pthread_equal(things[i].destroyed_on, pthread_self()));
	}
}

/* ---- configs ------------------------------------------------------------ */

Test(retire, config_freed_after_the_last_holder_and_the_drain)
{
	struct config *cfg;
	char err[256];

	config_retired_free();
	size_t live = config_live_count();
	cr_assert_eq(config_load(NULL, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(config_live_count(), live + 1);
	cr_expect_eq((uintptr_t)&cfg->retire % 64, 0, "the count has its own cache line");
	const struct config *a = config_hold(cfg);      /* a worker */
	const struct config *b = config_hold(cfg);      /* a session */
	cr_expect_eq(a, cfg);
	cr_expect_null(config_release(cfg), "the loader's reference");
	a = config_release(a);
	cr_expect_eq(config_retired_free(), 0, "a session still holds it");
	cr_expect_eq(config_live_count(), live + 1);
	cr_expect_str_eq(b->hostname[0] != '\0' ? "set" : "empty", "set", "still readable");
	b = config_release(b);
	cr_expect_eq(config_live_count(), live + 1, "retired, not freed: the main thread frees");
	cr_expect_eq(config_retired_free(), 1);
	cr_expect_eq(config_live_count(), live);
	cr_expect_null(config_hold(NULL));
	cr_expect_null(config_release(NULL));
}

Test(retire, config_serials_increase_and_are_never_reused)
{
	struct config *c1, *c2;
	char err[256];

	cr_assert_eq(config_load(NULL, &c1, err, sizeof(err)), 0, "%s", err);
	unsigned long s1 = c1->serial;
	config_release(c1);
	config_retired_free();
	cr_assert_eq(config_load(NULL, &c2, err, sizeof(err)), 0, "%s", err);
	cr_expect_gt(s1, 0);
	cr_expect_gt(c2->serial, s1, "got %lu after %lu", c2->serial, s1);
	config_free(c2);
}
