/*
 * test_scheduler - the outbound engine's pure decisions, one table each.
 */
#include <criterion/criterion.h>

#include "scheduler.h"

static const char *const kick_names[] = { "nothing", "park", "open" };

Test(scheduler, domain_kick)
{
	static const struct {
		struct sched_domain_view v;
		enum sched_kick_action action;
		unsigned open;
		const char *why;
	} cases[] = {
		{ { .ready = 0, .window = 2, .max_connections = 20 }, SCHED_KICK_NOTHING, 0, "no work" },
		{ { .ready = 1, .window = 2, .max_connections = 20 }, SCHED_KICK_OPEN, 1, "one item, one connection" },
		{ { .ready = 10, .window = 2, .max_connections = 20 }, SCHED_KICK_OPEN, 2, "the window caps" },
		{ { .ready = 30, .window = 30, .max_connections = 20 }, SCHED_KICK_OPEN, 20, "max_connections caps" },
		{ { .ready = 10, .active = 1, .window = 4, .max_connections = 20 }, SCHED_KICK_OPEN, 3, "what is open counts" },
		{ { .ready = 10, .active = 4, .window = 4, .max_connections = 20 }, SCHED_KICK_NOTHING, 0, "window full" },
		{ { .ready = 3, .active = 3, .window = 8, .max_connections = 20 }, SCHED_KICK_NOTHING, 0, "a connection per item already" },
		{ { .ready = 5, .active = 3, .window = 8, .max_connections = 20 }, SCHED_KICK_OPEN, 2, "no more than the items left" },
		{ { .ready = 10, .window = 8, .max_connections = 20, .blocked = true }, SCHED_KICK_PARK, 0, "backed off" },
		{ { .ready = 10, .window = 8, .max_connections = 20, .probing = true }, SCHED_KICK_OPEN, 1, "a probe is one connection" },
		{ { .ready = 10, .active = 1, .window = 8, .max_connections = 20, .probing = true }, SCHED_KICK_NOTHING, 0, "the probe is out" },
		{ { .ready = 10, .window = 8, .max_connections = 0 }, SCHED_KICK_NOTHING, 0, "max_connections 0" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sched_kick k = sched_domain_kick(&cases[i].v);
		cr_expect(k.action == cases[i].action && k.open == cases[i].open,
			  "%s: got %s %u, want %s %u", cases[i].why, kick_names[k.action], k.open,
			  kick_names[cases[i].action], cases[i].open);
	}
}

Test(scheduler, window_grows_to_the_limit)
{
	static const unsigned cases[][3] = {   /* window, max, want */
		{ 2, 20, 3 }, { 19, 20, 20 }, { 20, 20, 20 }, { 25, 20, 25 }, { 0, 1, 1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned got = sched_window_grow(cases[i][0], cases[i][1]);
		cr_expect_eq(got, cases[i][2], "window %u max %u: got %u, want %u", cases[i][0],
			     cases[i][1], got, cases[i][2]);
	}
}

Test(scheduler, on_ready)
{
	static const char *const names[] = { "begin", "idle", "quit" };
	static const struct {
		bool stopping;
		unsigned transactions, max;
		bool work;
		enum sched_ready_action want;
	} cases[] = {
		{ false, 0, 100, true, SCHED_READY_BEGIN },
		{ false, 0, 100, false, SCHED_READY_IDLE },
		{ false, 99, 100, true, SCHED_READY_BEGIN },
		{ false, 100, 100, true, SCHED_READY_QUIT },
		{ false, 100, 100, false, SCHED_READY_QUIT },
		{ true, 0, 100, true, SCHED_READY_QUIT },
		{ true, 0, 100, false, SCHED_READY_QUIT },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum sched_ready_action got = sched_on_ready(cases[i].stopping, cases[i].transactions,
							     cases[i].max, cases[i].work);
		cr_expect_eq(got, cases[i].want, "case %zu: got %s, want %s", i, names[got],
			     names[cases[i].want]);
	}
}

/* route_of - a route with hosts whose address counts are given. */
static struct dns_route route_of(struct dns_host *hosts, const size_t *counts, size_t n)
{
	for (size_t i = 0; i < n; i++)
		hosts[i] = (struct dns_host){ .addr_count = counts[i] };
	return (struct dns_route){ .status = DNS_ROUTE_OK, .host_count = n, .hosts = hosts };
}

Test(scheduler, address_walk)
{
	struct dns_host hosts[4];
	static const size_t counts[] = { 2, 0, 1, 1 };     /* the second host has no address */
	struct dns_route route = route_of(hosts, counts, 4);
	struct sched_cursor c = { 0, 0, false };
	static const size_t want[][2] = { { 0, 0 }, { 0, 1 }, { 2, 0 }, { 3, 0 } };

	cr_assert(sched_first_address(&c, &route));
	for (size_t i = 0; i < 4; i++) {
		cr_expect(c.host == want[i][0] && c.addr == want[i][1], "step %zu: got %zu/%zu, want %zu/%zu",
			  i, c.host, c.addr, want[i][0], want[i][1]);
		bool more = sched_next_address(&c, &route, false);
		cr_expect_eq(more, i < 3, "step %zu: more %d", i, more);
	}
	cr_expect_not(sched_next_address(&c, &route, false), "a used-up route stays used up");
}

Test(scheduler, clear_retry_stays_then_moves_on)
{
	struct dns_host hosts[2];
	static const size_t counts[] = { 1, 1 };
	struct dns_route route = route_of(hosts, counts, 2);
	struct sched_cursor c = { 0, 0, false };

	cr_assert(sched_next_address(&c, &route, true));
	cr_expect(c.host == 0 && c.addr == 0 && c.clear_only, "retry in clear: same address, clear only");
	cr_assert(sched_next_address(&c, &route, false));
	cr_expect(c.host == 1 && c.addr == 0 && !c.clear_only, "next host: TLS again");
}

Test(scheduler, empty_routes)
{
	struct dns_host hosts[2];
	static const size_t counts[] = { 0, 0 };
	struct dns_route route = route_of(hosts, counts, 2);
	struct sched_cursor c = { 0, 0, false };

	cr_expect_not(sched_first_address(&c, &route), "hosts without addresses");
	route.host_count = 0;
	c = (struct sched_cursor){ 0, 0, false };
	cr_expect_not(sched_first_address(&c, &route), "no host");
	cr_expect_not(sched_next_address(&c, &route, true), "no host, even in clear");
}

Test(scheduler, rcpt_rules)
{
	static const char *const names[] = { "as is", "admin", "expire" };
	static const struct {
		enum smtp_outcome outcome;
		enum qdoom doom;
		bool expired;
		enum sched_rcpt_rule want;
	} cases[] = {
		{ SMTP_OUTCOME_DELIVERED, QDOOM_NONE, false, SCHED_RCPT_AS_IS },
		{ SMTP_OUTCOME_DELIVERED, QDOOM_DELETE, true, SCHED_RCPT_AS_IS },
		{ SMTP_OUTCOME_BOUNCED, QDOOM_BOUNCE, true, SCHED_RCPT_AS_IS },
		{ SMTP_OUTCOME_DEFERRED, QDOOM_NONE, false, SCHED_RCPT_AS_IS },
		{ SMTP_OUTCOME_DEFERRED, QDOOM_NONE, true, SCHED_RCPT_EXPIRE },
		{ SMTP_OUTCOME_DEFERRED, QDOOM_DELETE, false, SCHED_RCPT_ADMIN },
		{ SMTP_OUTCOME_DEFERRED, QDOOM_BOUNCE, true, SCHED_RCPT_ADMIN },
		{ SMTP_OUTCOME_DEFERRED, QDOOM_HOLD, false, SCHED_RCPT_AS_IS },
		{ SMTP_OUTCOME_DEFERRED, QDOOM_HOLD, true, SCHED_RCPT_EXPIRE },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum sched_rcpt_rule got = sched_rcpt_rule(cases[i].outcome, cases[i].doom, cases[i].expired);
		cr_expect_eq(got, cases[i].want, "case %zu: got %s, want %s", i, names[got],
			     names[cases[i].want]);
	}
}

Test(scheduler, final_status)
{
	static const struct {
		enum smtp_outcome outcome;
		bool deleted, local;
		const char *status;
		enum spool_status want;
	} cases[] = {
		{ SMTP_OUTCOME_DELIVERED, false, false, "2.0.0", SPOOL_STATUS_DELIVERED },
		{ SMTP_OUTCOME_BOUNCED, false, false, "5.1.1", SPOOL_STATUS_BOUNCED },
		{ SMTP_OUTCOME_BOUNCED, true, true, "5.0.0", SPOOL_STATUS_DELETED },
		{ SMTP_OUTCOME_BOUNCED, false, true, "5.0.0", SPOOL_STATUS_BOUNCED },
		{ SMTP_OUTCOME_BOUNCED, false, true, "4.4.7", SPOOL_STATUS_EXPIRED },
		{ SMTP_OUTCOME_BOUNCED, false, false, "4.4.7", SPOOL_STATUS_BOUNCED },  /* a peer's 4.4.7 */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum spool_status got = sched_final_status(cases[i].outcome, cases[i].deleted,
							   cases[i].local, cases[i].status);
		cr_expect_eq(got, cases[i].want, "case %zu: got %d, want %d", i, got, cases[i].want);
	}
}

Test(scheduler, after_attempt)
{
	cr_expect_eq(sched_after_attempt(0, QDOOM_NONE), SCHED_AFTER_DONE);
	cr_expect_eq(sched_after_attempt(0, QDOOM_HOLD), SCHED_AFTER_DONE, "nothing left to hold");
	cr_expect_eq(sched_after_attempt(2, QDOOM_NONE), SCHED_AFTER_RETRY);
	cr_expect_eq(sched_after_attempt(2, QDOOM_HOLD), SCHED_AFTER_HOLD);
}

Test(scheduler, share_of_a_relay_limit)
{
	static const unsigned cases[][3] = {   /* limit, workers, want */
		{ 300, 2, 150 }, { 20, 2, 10 }, { 21, 2, 10 }, { 1, 2, 1 }, { 20, 0, 20 }, { 5, 8, 1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned got = sched_share(cases[i][0], cases[i][1]);
		cr_expect_eq(got, cases[i][2], "limit %u workers %u: got %u, want %u", cases[i][0],
			     cases[i][1], got, cases[i][2]);
	}
}

Test(scheduler, dest_admit)
{
	static const char *const names[] = { "open", "wait", "wait for any", "skip" };
	static const struct {
		struct sched_dest_view v;
		enum sched_dest_action want;
		const char *why;
	} cases[] = {
		{ { 0, 2, 10, 0, 150, false }, SCHED_DEST_OPEN, "a new address" },
		{ { 1, 2, 10, 5, 150, false }, SCHED_DEST_OPEN, "within the window" },
		{ { 2, 2, 10, 5, 150, false }, SCHED_DEST_WAIT, "the window is full" },
		{ { 10, 30, 10, 50, 150, false }, SCHED_DEST_WAIT, "the per-address limit" },
		{ { 3, 8, 10, 150, 150, false }, SCHED_DEST_WAIT_ANY, "the worker's cap" },
		{ { 8, 8, 10, 150, 150, false }, SCHED_DEST_WAIT, "the address first: its sessions serve it" },
		{ { 0, 8, 10, 0, 150, true }, SCHED_DEST_SKIP, "resting" },
		{ { 0, 1, 10, 0, 150, false }, SCHED_DEST_OPEN, "a halved window still opens one" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum sched_dest_action got = sched_dest_admit(&cases[i].v);
		cr_expect_eq(got, cases[i].want, "%s: got %s, want %s", cases[i].why, names[got],
			     names[cases[i].want]);
	}
}

Test(scheduler, next_work_is_fair)
{
	static const char *const names[] = { "own", "next", "none" };
	static const struct {
		bool own, waiting;
		enum sched_work want;
	} cases[] = {
		{ true, false, SCHED_WORK_OWN },
		{ true, true, SCHED_WORK_NEXT },     /* round robin: others first */
		{ false, true, SCHED_WORK_NEXT },
		{ false, false, SCHED_WORK_NONE },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum sched_work got = sched_next_work(cases[i].own, cases[i].waiting);
		cr_expect_eq(got, cases[i].want, "own=%d waiting=%d: got %s, want %s", cases[i].own,
			     cases[i].waiting, names[got], names[cases[i].want]);
	}
}

Test(scheduler, dest_failure_halves_and_backs_off)
{
	static const struct {
		unsigned window, failures;
		unsigned want_window;
		int64_t want_ms;
	} cases[] = {
		{ 20, 1, 10, 5000 }, { 10, 2, 5, 10000 }, { 5, 3, 2, 20000 }, { 2, 4, 1, 40000 },
		{ 1, 5, 1, 60000 }, { 1, 40, 1, 60000 },   /* capped, and no overflow */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sched_dest_failure f = sched_dest_failed(cases[i].window, cases[i].failures, 5000, 60000);
		cr_expect(f.window == cases[i].want_window && f.backoff_ms == cases[i].want_ms,
			  "window %u failures %u: got %u/%lld, want %u/%lld", cases[i].window,
			  cases[i].failures, f.window, (long long)f.backoff_ms, cases[i].want_window,
			  (long long)cases[i].want_ms);
	}
}
