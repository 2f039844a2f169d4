/*
 * dns_fake - a query hook that records queries so tests answer them by
 * hand, with a fake clock. Shared by test_dns_cache.c and test_dns_mx.c.
 */
#ifndef RINGMAIL_DNS_FAKE_H
#define RINGMAIL_DNS_FAKE_H

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "dns_internal.h"

#define FAKE_MAX 64

struct fake_query {
	struct dns_pending_query *q;
	enum dns_query_kind kind;
	char name[256];
	int answered;
};

struct fake_dns {
	struct fake_query queries[FAKE_MAX];
	size_t count;
};

struct fake_result {
	struct dns_route *route;
	int calls;
};

static inline void fake_hook(void *arg, struct dns_pending_query *q,
	enum dns_query_kind kind, const char *name)
{
	struct fake_dns *f = arg;

	if (f->count < FAKE_MAX) {
		f->queries[f->count].q = q;
		f->queries[f->count].kind = kind;
		snprintf(f->queries[f->count].name, sizeof(f->queries[0].name), "%s", name);
		f->queries[f->count].answered = 0;
		f->count++;
	}
}

static inline void fake_done(const struct dns_route *route, void *arg)
{
	struct fake_result *res = arg;

	res->calls++;
	dns_route_unref(res->route);
	res->route = dns_route_ref(route);
}

/* fake_find - the first unanswered query of kind for name, or NULL. */
static inline struct fake_query *fake_find(struct fake_dns *f,
	enum dns_query_kind kind, const char *name)
{
	for (size_t i = 0; i < f->count; i++)
		if (!f->queries[i].answered && f->queries[i].kind == kind &&
		    strcmp(f->queries[i].name, name) == 0)
			return &f->queries[i];
	return NULL;
}

static inline int fake_answer_mx(struct fake_dns *f, const char *name,
	enum dns_answer_kind kind, uint32_t ttl, const struct dns_mx_record *mx,
	size_t n, int64_t now)
{
	struct fake_query *fq = fake_find(f, DNS_QUERY_MX, name);
	struct dns_mx_answer a = { .kind = kind, .ttl_s = ttl, .count = n, .records = mx };

	if (fq == NULL)
		return -1;
	fq->answered = 1;
	dns_query_answer_mx(fq->q, &a, now);
	return 0;
}

/* fake_answer_a - answer an A query with one dotted quad (or a failure). */
static inline int fake_answer_a(struct fake_dns *f, const char *name,
	enum dns_answer_kind kind, uint32_t ttl, const char *ip, int64_t now)
{
	struct fake_query *fq = fake_find(f, DNS_QUERY_A, name);
	struct in_addr in;
	struct dns_addr_answer a = { .kind = kind, .ttl_s = ttl, .family = AF_INET };

	if (fq == NULL)
		return -1;
	if (ip) {
		inet_pton(AF_INET, ip, &in);
		a.count = 1;
		a.addrs = &in;
	}
	fq->answered = 1;
	dns_query_answer_addr(fq->q, &a, now);
	return 0;
}

static inline size_t fake_count_kind(const struct fake_dns *f, enum dns_query_kind kind)
{
	size_t n = 0;

	for (size_t i = 0; i < f->count; i++)
		n += f->queries[i].kind == kind;
	return n;
}

static inline struct dns_resolver *fake_resolver(struct fake_dns *f,
	struct dns_options *o)
{
	static const char *const servers[] = { "127.0.0.1:1" };
	char err[256] = "";
	struct dns_resolver *r;

	o->nameservers = servers;
	o->nameserver_count = 1;
	if (o->shuffle_seed == 0)
		o->shuffle_seed = 42;
	r = dns_resolver_new(o, err, sizeof(err));
	if (r == NULL) {
		fprintf(stderr, "dns_resolver_new: %s\n", err);
		return NULL;
	}
	memset(f, 0, sizeof(*f));
	dns_resolver_set_query_hook(r, fake_hook, f);
	return r;
}

#endif
