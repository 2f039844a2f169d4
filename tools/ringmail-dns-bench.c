/*
 * ringmail-dns-bench - cold lookup rate and cache hit cost of the resolver.
 *
 *   ringmail-dns-bench --print-conf N > bench.conf     # dnsmasq records
 *   dnsmasq --conf-file=bench.conf --port=PORT ...
 *   ringmail-dns-bench --nameserver 127.0.0.1:PORT [--domains N]
 *                      [--in-flight K] [--hit-rounds R]
 *
 * Domain i is d<i>.bench.test with one MX mx<i>.bench.test and one A
 * record, so a cold lookup is two queries (MX, then A). Cold: all N are
 * submitted at once, at most K resolve concurrently; the loop is poll().
 * Hits: R passes over the N cached domains, timed with CLOCK_MONOTONIC.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dns.h"

struct bench_state {
	size_t outstanding;
	size_t ok, failed;
};

static int64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void bench_done(const struct dns_route *route, void *arg)
{
	struct bench_state *s = arg;

	if (route->status == DNS_ROUTE_OK)
		s->ok++;
	else
		s->failed++;
	s->outstanding--;
}

/* bench_print_conf - dnsmasq lines for n domains. */
static void bench_print_conf(size_t n)
{
	for (size_t i = 0; i < n; i++) {
		printf("mx-host=d%zu.bench.test,mx%zu.bench.test,10\n", i, i);
		printf("host-record=mx%zu.bench.test,127.%zu.%zu.%zu\n", i,
			1 + i / 65536, (i / 256) % 256, i % 256);
	}
}

/* bench_drive - poll the resolver until every lookup has called back. */
static void bench_drive(struct dns_resolver *r, struct bench_state *s)
{
	while (s->outstanding > 0) {
		int64_t now = bench_now_ns() / 1000000;
		int64_t wait = dns_resolver_next_timeout_ms(r, now);
		struct pollfd pfd = { .fd = dns_resolver_fd(r), .events = POLLIN };

		if (wait < 0 || wait > 1000)
			wait = 1000;
		if (poll(&pfd, 1, (int)wait) > 0)
			dns_resolver_on_readable(r, bench_now_ns() / 1000000);
		now = bench_now_ns() / 1000000;
		if (dns_resolver_next_timeout_ms(r, now) == 0)
			dns_resolver_on_timer(r, now);
	}
}

int main(int argc, char **argv)
{
	const char *servers[1] = { NULL };
	struct dns_options o = { .nameservers = servers, .nameserver_count = 1,
		.cache_max_entries = 0, .max_in_flight = 64 };
	size_t n = 10000, rounds = 100;
	struct bench_state s = { 0 };
	struct dns_resolver *r;
	struct dns_stats st;
	char err[256], name[64], **names;
	int64_t t0, t1;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--print-conf") == 0) {
			bench_print_conf((size_t)atol(argv[i + 1]));
			return 0;
		} else if (strcmp(argv[i], "--nameserver") == 0) {
			servers[0] = argv[i + 1];
		} else if (strcmp(argv[i], "--domains") == 0) {
			n = (size_t)atol(argv[i + 1]);
		} else if (strcmp(argv[i], "--in-flight") == 0) {
			o.max_in_flight = (size_t)atol(argv[i + 1]);
		} else if (strcmp(argv[i], "--hit-rounds") == 0) {
			rounds = (size_t)atol(argv[i + 1]);
		} else {
			fprintf(stderr, "usage: see the comment at the top of ringmail-dns-bench.c\n");
			return 2;
		}
	}
	if (servers[0] == NULL) {
		fprintf(stderr, "ringmail-dns-bench: --nameserver required\n");
		return 2;
	}
	o.cache_max_entries = n;
	if ((r = dns_resolver_new(&o, err, sizeof(err))) == NULL) {
		fprintf(stderr, "ringmail-dns-bench: %s\n", err);
		return 2;
	}
	t0 = bench_now_ns();
	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "d%zu.bench.test", i);
		s.outstanding++;
		dns_resolve_route(r, name, bench_done, &s, t0 / 1000000);
	}
	bench_drive(r, &s);
	t1 = bench_now_ns();
	dns_resolver_stats(r, &st);
	printf("cold: %zu domains in %.3f s = %.0f lookups/s (ok=%zu failed=%zu "
		"queries=%llu in_flight_max=%zu)\n", n, (t1 - t0) / 1e9,
		n / ((t1 - t0) / 1e9), s.ok, s.failed, (unsigned long long)st.queries,
		o.max_in_flight);
	s.ok = s.failed = 0;
	names = calloc(n, sizeof(*names));
	for (size_t i = 0; names && i < n; i++)
		if (asprintf(&names[i], "d%zu.bench.test", i) < 0)
			names[i] = NULL;
	t0 = bench_now_ns();
	for (size_t k = 0; names && k < rounds; k++) {
		for (size_t i = 0; i < n; i++) {
			s.outstanding++;
			dns_resolve_route(r, names[i], bench_done, &s, t0 / 1000000);
		}
	}
	t1 = bench_now_ns();
	dns_resolver_stats(r, &st);
	printf("hit: %zu lookups in %.3f s = %.1f ns/lookup (hits=%llu outstanding=%zu)\n", n * rounds, (t1 - t0) / 1e9,
		(double)(t1 - t0) / (double)(n * rounds), (unsigned long long)st.hits,
		s.outstanding);
	for (size_t i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
	dns_resolver_free(r);
	return s.failed > 0 || s.outstanding > 0;
}
