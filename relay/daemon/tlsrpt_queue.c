/*
 * tlsrpt_queue - session results to the TLS-RPT reporter; see tlsrpt_queue.h.
 */
#include "tlsrpt_queue.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xalloc.h"

static struct mpsc queue;              /* zero is an empty queue */
static _Atomic size_t limit;           /* 0: off */
static _Atomic size_t waiting;
static _Atomic uint64_t dropped;

void tlsrpt_queue_enable(size_t n)
{
	atomic_store(&limit, n);
}

bool tlsrpt_queue_enabled(void)
{
	return atomic_load_explicit(&limit, memory_order_relaxed) > 0;
}

/* copy_in - s (or "") into the record's tail at *at. */
static const char *copy_in(char **at, const char *s)
{
	char *p = *at;
	size_t n = s != NULL ? strlen(s) : 0;

	memcpy(p, s != NULL ? s : "", n);
	p[n] = '\0';
	*at = p + n + 1;
	return p;
}

static size_t len_of(const char *s)
{
	return (s != NULL ? strlen(s) : 0) + 1;
}

bool tlsrpt_queue_record(const struct tlsrpt_event *e)
{
	size_t max = atomic_load_explicit(&limit, memory_order_relaxed);

	if (max == 0)
		return false;
	if (atomic_fetch_add_explicit(&waiting, 1, memory_order_relaxed) >= max) {
		atomic_fetch_sub_explicit(&waiting, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
		return false;
	}
	size_t n = len_of(e->domain) + len_of(e->policy_strings) + len_of(e->mx_hosts) + len_of(e->sending_ip) +
		   len_of(e->receiving_mx) + len_of(e->receiving_ip) + len_of(e->reason_code) + len_of(e->additional);
	struct tlsrpt_queued *q = xmalloc(sizeof(*q) + n);
	char *at = (char *)(q + 1);

	q->e = *e;
	if (q->e.time_s == 0)
		q->e.time_s = (int64_t)time(NULL);
	q->e.domain = copy_in(&at, e->domain);
	q->e.policy_strings = copy_in(&at, e->policy_strings);
	q->e.mx_hosts = copy_in(&at, e->mx_hosts);
	q->e.sending_ip = copy_in(&at, e->sending_ip);
	q->e.receiving_mx = copy_in(&at, e->receiving_mx);
	q->e.receiving_ip = copy_in(&at, e->receiving_ip);
	q->e.reason_code = copy_in(&at, e->reason_code);
	q->e.additional = copy_in(&at, e->additional);
	mpsc_push(&queue, &q->node);
	return true;
}

struct tlsrpt_queued *tlsrpt_queue_take_all(void)
{
	return (struct tlsrpt_queued *)mpsc_take_all(&queue);
}

struct tlsrpt_queued *tlsrpt_queued_free(struct tlsrpt_queued *q)
{
	if (q != NULL) {
		atomic_fetch_sub_explicit(&waiting, 1, memory_order_relaxed);
		free(q);
	}
	return NULL;
}

uint64_t tlsrpt_queue_dropped(void)
{
	return atomic_load(&dropped);
}
