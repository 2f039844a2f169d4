/*
 * dns_cli - "resolve": print what the relay would do for each domain.
 *
 *   resolve [--nameserver ADDR[:PORT]]... [--port N] [--ipv4|--ipv6|--both]
 *           [--timeout S] [--tries N] [--route DOMAIN=TARGET]...
 *           [--relayhost TARGET] DOMAIN...
 *
 * Output, in argument order:
 *   DOMAIN ok ttl=SECONDS
 *     mx PREF HOST port PORT: ADDR ADDR...
 *   DOMAIN tempfail|permfail CODE X.Y.Z text
 * Exit status: 0 if every domain resolved, 1 if any failed, 2 on usage.
 * A CLI may block in poll(); the library itself never does.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dns.h"

struct cli_result {
	struct dns_route *route;
	size_t *outstanding;
};

static int64_t cli_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void cli_done(const struct dns_route *route, void *arg)
{
	struct cli_result *res = arg;

	res->route = dns_route_ref(route);
	(*res->outstanding)--;
}

/* cli_print - one domain's route in the documented format. */
static void cli_print(FILE *out, const char *domain, const struct dns_route *route)
{
	char buf[64];

	if (route->status != DNS_ROUTE_OK) {
		fprintf(out, "%s %s %d %s %s\n", domain, dns_route_status_name(route->status),
			route->smtp_code, route->enhanced, route->text);
		return;
	}
	fprintf(out, "%s ok ttl=%u\n", domain, route->ttl_s);
	for (size_t i = 0; i < route->host_count; i++) {
		const struct dns_host *h = &route->hosts[i];

		fprintf(out, "  mx %d %s port %u:", h->preference, h->name, h->port);
		for (size_t j = 0; j < h->addr_count; j++)
			fprintf(out, " %s", dns_addr_format(&h->addrs[j], buf, sizeof(buf)));
		fputc('\n', out);
	}
}

/* cli_wait - drive the resolver with poll() until nothing is outstanding. */
static void cli_wait(struct dns_resolver *r, const size_t *outstanding)
{
	while (*outstanding > 0) {
		int64_t now = cli_now_ms();
		int64_t wait = dns_resolver_next_timeout_ms(r, now);
		struct pollfd pfd = { .fd = dns_resolver_fd(r), .events = POLLIN };
		int n;

		if (wait < 0 || wait > 1000)
			wait = 1000;
		n = poll(&pfd, 1, (int)wait);
		now = cli_now_ms();
		if (n > 0)
			dns_resolver_on_readable(r, now);
		if (dns_resolver_next_timeout_ms(r, now) == 0)
			dns_resolver_on_timer(r, now);
	}
}

static void cli_usage(void)
{
	fprintf(stderr, "usage: resolve [--nameserver ADDR[:PORT]]... [--port N] "
		"[--ipv4|--ipv6|--both] [--timeout S] [--tries N]\n"
		"               [--route DOMAIN=TARGET]... [--relayhost TARGET] DOMAIN...\n");
}

#define CLI_MAX_LIST 16

struct cli_config {
	struct dns_options opts;
	const char *servers[CLI_MAX_LIST];
	struct dns_static_route routes[CLI_MAX_LIST];
	int first_domain;
};

/* cli_parse - flags into options; returns 0 or -EINVAL. */
static int cli_parse(int argc, char **argv, struct cli_config *c)
{
	int i;

	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--ipv4") == 0) { c->opts.family = DNS_FAMILY_IPV4; continue; }
		if (strcmp(a, "--ipv6") == 0) { c->opts.family = DNS_FAMILY_IPV6; continue; }
		if (strcmp(a, "--both") == 0) { c->opts.family = DNS_FAMILY_BOTH; continue; }
		if (v == NULL)
			return -EINVAL;
		i++;
		if (strcmp(a, "--nameserver") == 0 && c->opts.nameserver_count < CLI_MAX_LIST)
			c->servers[c->opts.nameserver_count++] = v;
		else if (strcmp(a, "--port") == 0)
			c->opts.port = (uint16_t)atoi(v);
		else if (strcmp(a, "--timeout") == 0)
			c->opts.timeout_s = atoi(v);
		else if (strcmp(a, "--tries") == 0)
			c->opts.tries = atoi(v);
		else if (strcmp(a, "--relayhost") == 0)
			c->opts.relayhost = v;
		else if (strcmp(a, "--route") == 0 && c->opts.static_route_count < CLI_MAX_LIST
			 && strchr(v, '=') != NULL) {
			struct dns_static_route *s = &c->routes[c->opts.static_route_count++];

			*strchr(argv[i], '=') = '\0';
			s->domain = argv[i];
			s->target = argv[i] + strlen(argv[i]) + 1;
		} else
			return -EINVAL;
	}
	c->opts.nameservers = c->servers;
	c->opts.static_routes = c->routes;
	c->first_domain = i;
	return i < argc ? 0 : -EINVAL;
}

/* dns_resolve_main - the resolve command. */
int dns_resolve_main(int argc, char **argv)
{
	struct cli_config c = { .opts = { .family = DNS_FAMILY_IPV4 } };
	struct dns_resolver *r;
	struct cli_result *results;
	size_t count, outstanding;
	int status = 0;
	char err[256];

	if (cli_parse(argc, argv, &c) < 0) {
		cli_usage();
		return 2;
	}
	if ((r = dns_resolver_new(&c.opts, err, sizeof(err))) == NULL) {
		fprintf(stderr, "resolve: %s\n", err);
		return 2;
	}
	count = (size_t)(argc - c.first_domain);
	outstanding = count;
	results = calloc(count, sizeof(*results));
	if (results == NULL)
		return 2;
	for (size_t i = 0; i < count; i++) {
		results[i].outstanding = &outstanding;
		dns_resolve_route(r, argv[c.first_domain + i], cli_done, &results[i],
			cli_now_ms());
	}
	cli_wait(r, &outstanding);
	for (size_t i = 0; i < count; i++) {
		cli_print(stdout, argv[c.first_domain + i], results[i].route);
		if (results[i].route->status != DNS_ROUTE_OK)
			status = 1;
		dns_route_unref(results[i].route);
	}
	free(results);
	dns_resolver_free(r);
	return status;
}
