/*
 * scheduler - the outbound engine's decisions, as pure functions: facts in,
 * an action out. The engine (delivery.c, mta_session.c, outcome.c) gathers
 * the facts and applies the action; tests/unit/test_scheduler.c tables
 * every rule.
 *
 * Concurrency window (after Postfix's queue manager): a domain starts with
 * INITIAL_WINDOW connections and may open one more each time a connection
 * reaches READY, up to its max_connections; a domain whose hosts all fail
 * is backed off as a whole (retry.h's retry_domain_*) and then probed with
 * one connection.
 *
 *   sched_domain_kick      ready items, no idle session: open how many?
 *   sched_window_grow      a connection reached READY: the new window
 *   sched_on_ready         a READY session: next transaction, idle or QUIT
 *   sched_next_address     a connection failed before READY: where next
 *   sched_rcpt_rule        an attempt's result, given the operator's doom
 *                          and the queue lifetime
 *   sched_final_status     the spool status of a final result
 *   sched_after_attempt    recipients still deferred: retry, hold or done
 *
 * Destination addresses (issue 25: many domains, few MX hosts): every MX
 * address has its own window and limit, and the worker a cap on all its
 * outbound connections; a domain that finds its address full waits in the
 * address's round robin, and a session that finishes a transaction serves
 * the next waiting domain before its own again (connection reuse).
 *
 *   sched_share            a relay-wide limit -> this worker's share
 *   sched_dest_admit       a domain wants a new connection to an address
 *   sched_next_work        a READY session: own domain, the next waiting
 *                          one, or nothing
 *   sched_dest_failed      an address failed at connect or greeting:
 *                          its window and backoff
 */
#ifndef RINGMAIL_SCHEDULER_H
#define RINGMAIL_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns.h"
#include "smtp_dsn.h"
#include "spool_record.h"

/* An operator's action waiting for an active item's attempt to end. */
enum qdoom { QDOOM_NONE, QDOOM_DELETE, QDOOM_BOUNCE, QDOOM_HOLD };

/* What domain_kick knows of a domain with ready items and no idle session. */
struct sched_domain_view {
	size_t ready;              /* items in the ready list */
	unsigned active;           /* sessions: connecting, busy or idle */
	unsigned window;           /* the concurrency window */
	unsigned max_connections;  /* the domain's policy */
	bool blocked;              /* backed off: nothing may start now */
	bool probing;              /* the backoff is over: one connection probes */
};

enum sched_kick_action {
	SCHED_KICK_NOTHING,        /* enough connections are open or coming */
	SCHED_KICK_PARK,           /* backed off: every ready item waits for its end */
	SCHED_KICK_OPEN,           /* open `open` connections (after the route) */
};

struct sched_kick {
	enum sched_kick_action action;
	unsigned open;
};

struct sched_kick sched_domain_kick(const struct sched_domain_view *v);

/* sched_window_grow - a connection of the domain reached READY. */
unsigned sched_window_grow(unsigned window, unsigned max_connections);

enum sched_ready_action {
	SCHED_READY_BEGIN,         /* take the next ready item */
	SCHED_READY_IDLE,          /* wait in the domain's pool */
	SCHED_READY_QUIT,          /* QUIT: stopping, or the connection has done its share */
};

/* sched_on_ready - a session is READY; work says whether an item waits. */
enum sched_ready_action sched_on_ready(bool stopping, unsigned transactions,
				       unsigned max_per_connection, bool work);

/* Which address of a route a session is at. clear_only: this address is
 * being tried again without STARTTLS (the "may" fallback, RFC 7435). */
struct sched_cursor {
	size_t host, addr;
	bool clear_only;
};

/* sched_first_address - skip to the first address at or after c (hosts
 * without addresses are passed over); false when the route has none left. */
bool sched_first_address(struct sched_cursor *c, const struct dns_route *route);

/* sched_next_address - the address at c failed before the session was
 * READY: the same address again in clear when retry_clear, else the next
 * address of the host, else the next host's first. false: none left. */
bool sched_next_address(struct sched_cursor *c, const struct dns_route *route, bool retry_clear);

enum sched_rcpt_rule {
	SCHED_RCPT_AS_IS,          /* the result stands */
	SCHED_RCPT_ADMIN,          /* deferred, but the operator deleted or bounced it */
	SCHED_RCPT_EXPIRE,         /* deferred past the queue lifetime: bounce, 4.4.7 */
};

enum sched_rcpt_rule sched_rcpt_rule(enum smtp_outcome outcome, enum qdoom doom, bool expired);

/* sched_final_status - the journal's status for a result that is final
 * (not deferred): expired is a local 4.4.7. */
enum spool_status sched_final_status(enum smtp_outcome outcome, bool deleted, bool local,
				     const char *status);

enum sched_after {
	SCHED_AFTER_DONE,          /* every recipient is final: free the item */
	SCHED_AFTER_HOLD,          /* held while active: hold what is left */
	SCHED_AFTER_RETRY,         /* into the retry heap */
};

enum sched_after sched_after_attempt(unsigned deferred, enum qdoom doom);

/* sched_share - a limit for the whole relay, split among workers (each
 * owns its domains' connections): never 0, and never more in all than the
 * limit while it is at least the number of workers. */
unsigned sched_share(unsigned limit, unsigned workers);

/* What a worker knows of a destination address a domain wants a new
 * connection to. */
struct sched_dest_view {
	unsigned active;           /* sessions to it on this worker */
	unsigned window;           /* its window (grows on READY, halves on failure) */
	unsigned max_per_address;  /* this worker's share of the per-address limit */
	unsigned worker_active;    /* every outbound session of this worker */
	unsigned max_total;        /* this worker's share of the total cap */
	bool backed_off;           /* resting after connection failures */
};

enum sched_dest_action {
	SCHED_DEST_OPEN,           /* open a connection to it */
	SCHED_DEST_WAIT,           /* full: wait in its round robin */
	SCHED_DEST_WAIT_ANY,       /* the worker's cap: wait for any connection to end */
	SCHED_DEST_SKIP,           /* backed off: try the next address */
};

enum sched_dest_action sched_dest_admit(const struct sched_dest_view *v);

enum sched_work {
	SCHED_WORK_OWN,            /* the session's domain again */
	SCHED_WORK_NEXT,           /* the next domain waiting at the address (round robin) */
	SCHED_WORK_NONE,           /* nothing: idle (or QUIT, as sched_on_ready says) */
};

/* sched_next_work - a session is READY: own says its domain has items
 * ready, waiting that another domain waits at the session's address. */
enum sched_work sched_next_work(bool own, bool waiting);

/* An address's state after a connection to it failed before the greeting
 * was over (refused, timed out, reset, a 4xx/5xx greeting). */
struct sched_dest_failure {
	unsigned window;           /* halved, at least 1 */
	int64_t backoff_ms;        /* base doubling per failure in a row, capped */
};

struct sched_dest_failure sched_dest_failed(unsigned window, unsigned failures, int64_t base_ms,
					    int64_t max_ms);

#endif
