/*
 * test_dns_txt - dns_lookup_txt against a real dnsmasq on loopback
 * (MTA-STS discovery reads _mta-sts.DOMAIN TXT through it).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dns.h"

static pid_t dnsmasq = -1;
static char ns[32];

static int free_udp_port(void)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	getsockname(s, (struct sockaddr *)&a, &len);
	close(s);
	return ntohs(a.sin_port);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct answer {
	int calls;
	enum dns_route_status status;
	size_t n;
	char txt[4][600];
};

static void on_txt(enum dns_route_status status, const char *const *txts, const size_t *lens, size_t n,
		   void *arg)
{
	struct answer *a = arg;
	a->calls++;
	a->status = status;
	a->n = n;
	for (size_t i = 0; i < n && i < 4; i++) {
		cr_assert_lt(lens[i], sizeof(a->txt[i]));
		cr_assert_eq(txts[i][lens[i]], '\0');
		memcpy(a->txt[i], txts[i], lens[i] + 1);
	}
}

/* lookup - one TXT lookup, the resolver driven until it answers. */
static void lookup(const char *name, struct answer *a)
{
	const char *servers[] = {ns};
	struct dns_options o = {.nameservers = servers, .nameserver_count = 1, .timeout_s = 1, .tries = 2};
	char err[256];
	struct dns_resolver *r = dns_resolver_new(&o, err, sizeof(err));
	cr_assert_not_null(r, "%s", err);
	memset(a, 0, sizeof(*a));
	dns_lookup_txt(r, name, on_txt, a, now_ms());
	for (int i = 0; i < 200 && a->calls == 0; i++) {    /* the resolver gives up within 3 s */
		int64_t t = dns_resolver_next_timeout_ms(r, now_ms());
		struct pollfd p = {.fd = dns_resolver_fd(r), .events = POLLIN};
		if (poll(&p, 1, t < 0 || t > 50 ? 50 : (int)t) > 0)
			dns_resolver_on_readable(r, now_ms());
		dns_resolver_on_timer(r, now_ms());
	}
	dns_resolver_free(r);
	cr_assert_eq(a->calls, 1, "%s: one answer", name);
}

static void stop(void);

/* spawn - dnsmasq on a free port; its pid. */
static pid_t spawn(void)
{
	int port = free_udp_port();
	snprintf(ns, sizeof(ns), "127.0.0.1:%d", port);
	char port_arg[32];
	snprintf(port_arg, sizeof(port_arg), "--port=%d", port);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		dup2(null, 2);
		execlp("dnsmasq", "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", port_arg,
		       "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=", "--conf-file=/dev/null",
		       "--local=/test/", "--user=root", "--group=root", "--log-facility=/dev/null",
		       "--txt-record=_mta-sts.one.test,v=STSv1; id=20240101",
		       "--txt-record=_mta-sts.two.test,v=spf1 -all",
		       "--txt-record=_mta-sts.two.test,v=STSv1; id=B",
		       "--txt-record=_mta-sts.split.test,v=STSv1; ,id=split",
		       "--host-record=a.test,127.0.0.1", (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* start - a dnsmasq that answers. One that exits at once (its port was
 * taken for TCP, or by another test meanwhile) is replaced on another
 * port; on a loaded machine it may take a while to answer. */
static void start(void)
{
	struct answer a;
	for (int attempt = 0; attempt < 5; attempt++) {
		dnsmasq = spawn();
		for (int64_t until = now_ms() + 10000; now_ms() < until;) {
			if (waitpid(dnsmasq, NULL, WNOHANG) == dnsmasq) {
				dnsmasq = -1;
				break;
			}
			lookup("_mta-sts.one.test", &a);
			if (a.status == DNS_ROUTE_OK)
				return;
			usleep(100000);
		}
		stop();
	}
	cr_assert_fail("dnsmasq did not answer");
}

static void stop(void)
{
	if (dnsmasq > 0) {
		kill(dnsmasq, SIGTERM);
		waitpid(dnsmasq, NULL, 0);
		dnsmasq = -1;
	}
}

TestSuite(dns_txt, .init = start, .fini = stop, .timeout = 60);

Test(dns_txt, answers)
{
	struct answer a;

	lookup("_mta-sts.one.test", &a);
	cr_expect_eq(a.status, DNS_ROUTE_OK);
	cr_assert_eq(a.n, 1);
	cr_expect_str_eq(a.txt[0], "v=STSv1; id=20240101");

	lookup("_MTA-STS.Two.test.", &a);
	cr_expect_eq(a.status, DNS_ROUTE_OK);
	cr_assert_eq(a.n, 2);
	cr_expect((strcmp(a.txt[0], "v=spf1 -all") == 0 && strcmp(a.txt[1], "v=STSv1; id=B") == 0) ||
		  (strcmp(a.txt[1], "v=spf1 -all") == 0 && strcmp(a.txt[0], "v=STSv1; id=B") == 0),
		  "got \"%s\" and \"%s\"", a.txt[0], a.txt[1]);

	/* A record of two strings is read as one (RFC 8461 3.1). */
	lookup("_mta-sts.split.test", &a);
	cr_expect_eq(a.status, DNS_ROUTE_OK);
	cr_assert_eq(a.n, 1);
	cr_expect_str_eq(a.txt[0], "v=STSv1; id=split");

	lookup("_mta-sts.none.test", &a);
	cr_expect_eq(a.status, DNS_ROUTE_PERMFAIL, "NXDOMAIN");
	cr_expect_eq(a.n, 0);
	lookup("a.test", &a);
	cr_expect_eq(a.status, DNS_ROUTE_PERMFAIL, "no TXT record");
	lookup("bad..name", &a);
	cr_expect_eq(a.status, DNS_ROUTE_PERMFAIL, "not a name");
}

Test(dns_txt, free_cancels_a_running_lookup)
{
	const char *servers[] = {ns};
	struct dns_options o = {.nameservers = servers, .nameserver_count = 1};
	char err[256];
	struct dns_resolver *r = dns_resolver_new(&o, err, sizeof(err));
	struct answer a = {0};
	dns_lookup_txt(r, "_mta-sts.one.test", on_txt, &a, now_ms());
	dns_lookup_txt(r, "_mta-sts.two.test", on_txt, &a, now_ms());
	cr_expect_null(dns_resolver_free(r));
	cr_expect_eq(a.calls, 0, "no callback after free");
}
