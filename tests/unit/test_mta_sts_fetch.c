/*
 * test_mta_sts_fetch - the HTTPS policy fetch against a real loopback
 * server (tests/integration/mta_sts_server.py, Python's http.server with
 * ssl) and certificates made here with openssl: a test CA, a server
 * certificate for the mta-sts.*.test names the cases use.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mta_sts.h"
#include "mta_sts_fetch.h"

static char dir[] = "/tmp/mta-sts-fetch-XXXXXX";
static pid_t server = -1;
static char connect_to[64];

/* in_dir - run a shell command in dir. */
static void in_dir(const char *script)
{
	char cmd[4096];
	snprintf(cmd, sizeof(cmd), "cd %s && %s", dir, script);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static void put(const char *name, const char *text)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/policies/%s", dir, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

/* spawn_server - mta_sts_server.py on ip:port_arg; its port into port. */
static pid_t spawn_server(const char *ip, const char *port_arg, char *port)
{
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		char script[512], cert[256], key[256], policies[256];
		snprintf(script, sizeof(script), "%s/tests/integration/mta_sts_server.py", SOURCE_DIR);
		snprintf(cert, sizeof(cert), "%s/server.pem", dir);
		snprintf(key, sizeof(key), "%s/server.key", dir);
		snprintf(policies, sizeof(policies), "%s/policies", dir);
		dup2(fds[1], 1);
		close(fds[0]);
		execl("/usr/bin/python3", "python3", script, cert, key, ip, policies, port_arg, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	FILE *f = fdopen(fds[0], "r");
	port[0] = '\0';
	cr_assert_not_null(fgets(port, 16, f), "the HTTPS server on %s printed its port", ip);
	fclose(f);
	port[strcspn(port, "\n")] = '\0';
	return pid;
}

static void start(void)
{
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(mta_sts_fetch_global_init(), 0);
	in_dir("mkdir policies && "
	   "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
	   "-subj /CN=test-ca -keyout ca.key -out ca.pem 2>/dev/null && "
	   "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
	   "-subj /CN=other-ca -keyout other.key -out other.pem 2>/dev/null && "
	   "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=mta-sts.good.test "
	   "-keyout server.key -out server.csr 2>/dev/null && "
	   "printf 'subjectAltName=DNS:mta-sts.good.test,DNS:mta-sts.big.test,DNS:mta-sts.html.test,"
	   "DNS:mta-sts.redirect.test,DNS:mta-sts.missing.test\\n' > san.ext && "
	   "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
	   "-extfile san.ext -out server.pem 2>/dev/null");
	put("mta-sts.good.test", "version: STSv1\r\nmode: enforce\r\nmx: *.good.test\r\nmax_age: 86400\r\n");
	put("mta-sts.wrong.test", "version: STSv1\r\nmode: enforce\r\nmx: *.good.test\r\nmax_age: 86400\r\n");
	put("mta-sts.html.test", "#type text/html\nversion: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1\n");
	put("mta-sts.redirect.test", "#status 301\n#location https://mta-sts.good.test/.well-known/mta-sts.txt\n");
	char *big = malloc(70001);
	memset(big, 'x', 70000);
	big[70000] = '\0';
	put("mta-sts.big.test", big);
	free(big);

	char port[16];
	server = spawn_server("127.0.0.1", "0", port);
	snprintf(connect_to, sizeof(connect_to), "::127.0.0.1:%s", port);
}

static void stop(void)
{
	if (server > 0) {
		kill(server, SIGTERM);
		waitpid(server, NULL, 0);
	}
	in_dir("rm -rf policies *.pem *.key *.csr *.srl san.ext");
	rmdir(dir);
}

TestSuite(mta_sts_fetch, .init = start, .fini = stop, .timeout = 60);

static int fetch(const char *domain, const char *ca, size_t max_bytes, long timeout_ms, const char *to,
		 char *body, size_t *len, char *err)
{
	char ca_path[256];
	snprintf(ca_path, sizeof(ca_path), "%s/%s", dir, ca);
	const char *list[] = {to, NULL};
	struct mta_sts_fetch_opts o = {.timeout_ms = timeout_ms, .max_bytes = max_bytes, .ca_file = ca_path,
				       .connect_to = list};
	err[0] = '\0';
	return mta_sts_fetch(&o, domain, body, MTA_STS_POLICY_MAX, len, err, 256);
}

Test(mta_sts_fetch, cases)
{
	static char body[MTA_STS_POLICY_MAX];
	char err[256];
	size_t len;

	int rc = fetch("good.test", "ca.pem", 65536, 10000, connect_to, body, &len, err);
	cr_assert_eq(rc, 0, "good: got %d (%s)", rc, err);
	struct mta_sts_policy p;
	const char *why = NULL;
	cr_assert_eq(mta_sts_policy_parse(body, len, &p, &why), 0, "%s", why ? why : "-");
	cr_expect_eq(p.mode, MTA_STS_MODE_ENFORCE);
	cr_expect_str_eq(p.mx[0], "*.good.test");

	static const struct {
		const char *domain, *ca;
		size_t max_bytes;
		int want;
		const char *err_contains;
	} cases[] = {
		{"good.test", "other.pem", 65536, -EIO, "certificate"},   /* another CA */
		{"wrong.test", "ca.pem", 65536, -EIO, "mta-sts.wrong.test"},   /* name not in the cert */
		{"good.test", "ca.pem", 20, -EMSGSIZE, "larger than 20"},   /* the configured limit */
		{"big.test", "ca.pem", 65536, -EMSGSIZE, "larger than 65536"},
		{"html.test", "ca.pem", 65536, -EPROTO, "text/html"},
		{"redirect.test", "ca.pem", 65536, -ENOENT, "301"},   /* not followed */
		{"missing.test", "ca.pem", 65536, -ENOENT, "404"},
		{"bad/domain", "ca.pem", 65536, -EINVAL, "domain"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rc = fetch(cases[i].domain, cases[i].ca, cases[i].max_bytes, 10000, connect_to, body, &len, err);
		cr_expect_eq(rc, cases[i].want, "%s: got %d (%s), want %d", cases[i].domain, rc, err, cases[i].want);
		cr_expect(strstr(err, cases[i].err_contains) != NULL, "%s: got err \"%s\", want \"%s\" in it",
			  cases[i].domain, err, cases[i].err_contains);
	}
}

Test(mta_sts_fetch, a_silent_server_times_out)
{
	/* A socket that listens but never speaks: the TLS handshake waits. */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(s, 4), 0);
	socklen_t alen = sizeof(a);
	getsockname(s, (struct sockaddr *)&a, &alen);
	char to[64];
	snprintf(to, sizeof(to), "::127.0.0.1:%u", ntohs(a.sin_port));

	static char body[MTA_STS_POLICY_MAX];
	char err[256];
	size_t len;
	int rc = fetch("good.test", "ca.pem", 65536, 300, to, body, &len, err);
	cr_expect_eq(rc, -EIO, "got %d (%s)", rc, err);
	cr_expect(strstr(err, "imeout") != NULL || strstr(err, "timed out") != NULL, "got \"%s\"", err);
	close(s);
}

Test(mta_sts_fetch, port_443_with_addresses_given_no_getaddrinfo)
{
	/* How the daemon fetches: the real URL (port 443) and the address
	 * from its own resolver through CURLOPT_RESOLVE. Binding 443 needs
	 * root; another 127.0.0.x keeps clear of anything else on 443. */
	if (geteuid() != 0)
		cr_skip_test("binding port 443 needs root");
	char ip[32], port[16], resolve[96];
	snprintf(ip, sizeof(ip), "127.0.%d.%d", 100 + getpid() % 100, 2 + getpid() % 250);
	pid_t pid = spawn_server(ip, "443", port);
	cr_expect_str_eq(port, "443");
	snprintf(resolve, sizeof(resolve), "mta-sts.good.test:443:%s", ip);
	char ca_path[256];
	snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", dir);
	const char *list[] = {resolve, NULL};
	struct mta_sts_fetch_opts o = {.timeout_ms = 10000, .max_bytes = 65536, .ca_file = ca_path, .resolve = list};
	static char body[MTA_STS_POLICY_MAX];
	char err[256] = "";
	size_t len = 0;
	int rc = mta_sts_fetch(&o, "good.test", body, sizeof(body), &len, err, sizeof(err));
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	cr_expect_eq(rc, 0, "got %d (%s)", rc, err);
	cr_expect(len > 0 && memcmp(body, "version: STSv1", 14) == 0);
}
