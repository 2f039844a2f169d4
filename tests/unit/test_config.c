/*
 * test_config - config_load defaults, a full file, every error path (each
 * must name the key and the line), and the policy look-ups.
 */
#include <criterion/criterion.h>
#include <fcntl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bounce_class.h"
#include "config.h"

/* write_temp - put text in a new file under /tmp; the caller unlinks it. */
static void write_temp(const char *text, char *path, size_t size)
{
	snprintf(path, size, "/tmp/ringmail-test-config-XXXXXX");
	int fd = mkstemp(path);
	cr_assert(fd >= 0, "mkstemp failed");
	size_t len = strlen(text);
	cr_assert_eq(write(fd, text, len), (ssize_t)len, "short write to %s", path);
	close(fd);
}

/* load_text - config_load on a temporary file holding text. */
static int load_text(const char *text, struct config **cfg, char *err, size_t errlen)
{
	char path[64];

	write_temp(text, path, sizeof(path));
	err[0] = '\0';
	int rc = config_load(path, cfg, err, errlen);
	unlink(path);
	return rc;
}

static struct sockaddr_in v4(const char *ip, unsigned short port)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	cr_assert_eq(inet_pton(AF_INET, ip, &sin.sin_addr), 1, "bad test address %s", ip);
	return sin;
}

static struct sockaddr_in6 v6(const char *ip, unsigned short port)
{
	struct sockaddr_in6 sin6;

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(port);
	cr_assert_eq(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1, "bad test address %s", ip);
	return sin6;
}

#define EQ64(got, want) \
	cr_expect_eq((got), (want), "%s: got %lld, want %lld", #got, (long long)(got), (long long)(want))
#define EQSTR(got, want) \
	cr_expect_str_eq((got), (want), "%s: got \"%s\", want \"%s\"", #got, (got), (want))

Test(config, defaults_without_file)
{
	struct config *cfg = NULL;
	char err[256] = "";
	char buf[128];

	cr_assert_eq(config_load(NULL, &cfg, err, sizeof(err)), 0, "config_load(NULL): %s", err);
	cr_assert_not_null(cfg);

	EQ64(cfg->workers, 0);
	cr_expect(cfg->hostname != NULL && cfg->hostname[0] != '\0', "hostname should default to the system name");
	EQ64(cfg->shutdown_timeout_ms, 10000);
	EQSTR(cfg->log_file, "-");
	EQ64(cfg->log_level, LOG_LEVEL_INFO);

	cr_assert_eq(cfg->listen_count, 1, "listen_count: got %zu, want 1", cfg->listen_count);
	EQSTR(cfg->listen[0].text, "127.0.0.1:2525");
	EQSTR(netaddr_format((struct sockaddr *)&cfg->listen[0].addr, buf, sizeof(buf)), "127.0.0.1:2525");
	EQ64(cfg->listen[0].addr_len, sizeof(struct sockaddr_in));
	EQ64(cfg->listen_backlog, 4096);
	EQ64(cfg->max_connections, 20000);

	EQ64(cfg->ring_entries, 4096);
	EQ64(cfg->recv_buffer_size, 16 * 1024);
	EQ64(cfg->recv_buffer_count, 1024);

	EQ64(cfg->smtp_max_command_line, 512);
	EQ64(cfg->smtp_max_line, 1000);
	EQ64(cfg->smtp_max_message_size, 50LL << 20);
	EQ64(cfg->smtp_max_recipients, 1000);
	EQ64(cfg->smtp_max_errors, 20);
	EQ64(cfg->smtp_idle_timeout_ms, 300000);
	EQ64(cfg->smtp_command_timeout_ms, 300000);
	EQ64(cfg->smtp_data_timeout_ms, 600000);
	EQ64(cfg->smtp_max_input_backlog, 1 << 20);

	EQ64(cfg->relay_network_count, 2);
	EQ64(cfg->local_domain_count, 0);

	EQSTR(cfg->spool_dir, "/var/spool/ringmail");
	EQ64(cfg->spool_segment_size, 64LL << 20);
	cr_expect(cfg->spool_sync, "spool.sync should default to true");

	EQ64(cfg->dns_nameserver_count, 0);
	EQ64(cfg->dns_cache_size, 100000);
	EQ64(cfg->dns_min_ttl_ms, 60000);
	EQ64(cfg->dns_max_ttl_ms, 86400000);
	EQ64(cfg->dns_negative_ttl_ms, 300000);
	EQ64(cfg->dns_max_in_flight, 64);
	EQ64(cfg->dns_timeout_ms, 4000);
	EQ64(cfg->dns_tries, 3);
	EQSTR(cfg->dns_ip_mode, "ipv4");

	EQ64(cfg->delivery_port, 25);
	EQSTR(cfg->relayhost, "");
	EQ64(cfg->connect_timeout_ms, 30000);
	EQ64(cfg->greeting_timeout_ms, 60000);
	EQ64(cfg->command_timeout_ms, 300000);
	EQ64(cfg->data_timeout_ms, 600000);
	EQ64(cfg->connection_idle_timeout_ms, 5000);
	EQ64(cfg->min_backoff_ms, 300000);
	EQ64(cfg->max_backoff_ms, 4000000);
	EQ64(cfg->backoff_jitter_percent, 20);
	EQ64(cfg->queue_lifetime_ms, 5LL * 86400000);
	EQ64(cfg->domain_backoff_ms, 60000);
	EQ64(cfg->bounce_max_original_size, 1 << 20);
	EQ64(cfg->domain_default.max_connections, 20);
	EQ64(cfg->domain_default.max_messages_per_connection, 1000);
	EQ64(cfg->domain_default.max_recipients_per_transaction, 100);
	cr_expect_null(cfg->domain_default.route);
	EQ64(cfg->domain_count, 0);
	cr_expect_null(cfg->source_path);

	/* relay_networks: loopback, both families, and nothing else */
	struct sockaddr_in lo = v4("127.0.0.1", 1), lo2 = v4("127.200.3.4", 1), other = v4("10.0.0.1", 1);
	struct sockaddr_in6 lo6 = v6("::1", 1), other6 = v6("::2", 1);
	cr_expect(config_is_relay_client(cfg, (struct sockaddr *)&lo), "127.0.0.1 should relay");
	cr_expect(config_is_relay_client(cfg, (struct sockaddr *)&lo2), "127.200.3.4 should relay");
	cr_expect(config_is_relay_client(cfg, (struct sockaddr *)&lo6), "::1 should relay");
	cr_expect(!config_is_relay_client(cfg, (struct sockaddr *)&other), "10.0.0.1 should not relay");
	cr_expect(!config_is_relay_client(cfg, (struct sockaddr *)&other6), "::2 should not relay");

	cr_expect(config_domain_policy(cfg, "example.com") == &cfg->domain_default);
	cr_expect(!config_is_local_domain(cfg, "localhost"));
	cr_expect_null(config_free(cfg));
}

/* Every key set, domains before delivery so inheritance cannot depend on
 * the order of the file. */
static const char full_file[] =
	"# every key\n"
	"workers = 3;\n"
	"hostname = \"mx.example.net\";\n"
	"shutdown_timeout = \"250ms\";\n"
	"log = { file = \"/tmp/ringmail-test.log\"; level = \"debug\"; };\n"
	"listen = [ \"0.0.0.0:25\", \"[::1]:2526\" ];\n"
	"listen_backlog = 128;\n"
	"max_connections = 500;\n"
	"domains = (\n"
	"  { name = \"Gmail.COM.\"; max_connections = 50; },\n"
	"  { name = \"slow.example\"; route = \"10.1.1.1:2525\";\n"
	"    max_messages_per_connection = 3; max_recipients_per_transaction = 5; },\n"
	"  { name = \"plain.example\"; }\n"
	");\n"
	"ring = { entries = 256; recv_buffer_size = \"4k\"; recv_buffers = 64; };\n"
	"smtp = {\n"
	"  max_command_line = 1024; max_line = \"2k\"; max_message_size = \"10M\";\n"
	"  max_recipients = 50; max_errors = 5; idle_timeout = \"30s\";\n"
	"  command_timeout = 120; data_timeout = \"1h\"; max_input_backlog = \"512k\";\n"
	"};\n"
	"relay_networks = [ \"10.0.0.0/8\", \"2001:db8::/32\", \"192.168.1.7\" ];\n"
	"local_domains = ( \"Example.ORG.\", \"local.test\" );\n"
	"spool = { dir = \"/tmp/spool\"; segment_size = \"1G\"; sync = false; };\n"
	"dns = {\n"
	"  nameservers = [ \"127.0.0.1:5353\", \"[::1]:53\" ]; cache_size = 1000;\n"
	"  min_ttl = \"5m\"; max_ttl = \"2h\"; negative_ttl = 30; max_in_flight = 64;\n"
	"  timeout = \"2s\"; tries = 2; ip_mode = \"both\";\n"
	"};\n"
	"delivery = {\n"
	"  port = 2525; relayhost = \"smarthost.example:587\";\n"
	"  connect_timeout = \"10s\"; greeting_timeout = \"20s\"; command_timeout = \"3m\";\n"
	"  data_timeout = \"15m\"; idle_timeout = \"250ms\"; min_backoff = \"1m\";\n"
	"  max_backoff = \"2d\"; backoff_jitter = 0; queue_lifetime = \"3d\";\n"
	"  domain_backoff = \"90s\"; bounce_max_original = 65536;\n"
	"  max_connections = 7; max_messages_per_connection = 77;\n"
	"  max_recipients_per_transaction = 17;\n"
	"};\n";

Test(config, full_file)
{
	struct config *cfg = NULL;
	char err[256];
	char buf[128];

	cr_assert_eq(load_text(full_file, &cfg, err, sizeof(err)), 0, "config_load: %s", err);
	cr_assert_not_null(cfg);

	EQ64(cfg->workers, 3);
	EQSTR(cfg->hostname, "mx.example.net");
	EQ64(cfg->shutdown_timeout_ms, 250);
	EQSTR(cfg->log_file, "/tmp/ringmail-test.log");
	EQ64(cfg->log_level, LOG_LEVEL_DEBUG);

	cr_assert_eq(cfg->listen_count, 2, "listen_count: got %zu, want 2", cfg->listen_count);
	EQSTR(netaddr_format((struct sockaddr *)&cfg->listen[0].addr, buf, sizeof(buf)), "0.0.0.0:25");
	EQSTR(netaddr_format((struct sockaddr *)&cfg->listen[1].addr, buf, sizeof(buf)), "[::1]:2526");
	EQ64(cfg->listen[1].addr_len, sizeof(struct sockaddr_in6));
	EQSTR(cfg->listen[1].text, "[::1]:2526");
	EQ64(cfg->listen_backlog, 128);
	EQ64(cfg->max_connections, 500);

	EQ64(cfg->ring_entries, 256);
	EQ64(cfg->recv_buffer_size, 4096);
	EQ64(cfg->recv_buffer_count, 64);

	EQ64(cfg->smtp_max_command_line, 1024);
	EQ64(cfg->smtp_max_line, 2048);
	EQ64(cfg->smtp_max_message_size, 10LL << 20);
	EQ64(cfg->smtp_max_recipients, 50);
	EQ64(cfg->smtp_max_errors, 5);
	EQ64(cfg->smtp_idle_timeout_ms, 30000);
	EQ64(cfg->smtp_command_timeout_ms, 120000);
	EQ64(cfg->smtp_data_timeout_ms, 3600000);
	EQ64(cfg->smtp_max_input_backlog, 512 * 1024);

	EQ64(cfg->relay_network_count, 3);
	cr_assert_eq(cfg->local_domain_count, 2, "local_domain_count: got %zu, want 2", cfg->local_domain_count);
	EQSTR(cfg->local_domains[0], "example.org");
	EQSTR(cfg->local_domains[1], "local.test");

	EQSTR(cfg->spool_dir, "/tmp/spool");
	EQ64(cfg->spool_segment_size, 1LL << 30);
	cr_expect(!cfg->spool_sync, "spool.sync: got true, want false");

	cr_assert_eq(cfg->dns_nameserver_count, 2, "dns_nameserver_count: got %zu, want 2", cfg->dns_nameserver_count);
	EQSTR(cfg->dns_nameservers[0], "127.0.0.1:5353");
	EQSTR(cfg->dns_nameservers[1], "[::1]:53");
	EQ64(cfg->dns_cache_size, 1000);
	EQ64(cfg->dns_min_ttl_ms, 300000);
	EQ64(cfg->dns_max_ttl_ms, 7200000);
	EQ64(cfg->dns_negative_ttl_ms, 30000);
	EQ64(cfg->dns_max_in_flight, 64);
	EQ64(cfg->dns_timeout_ms, 2000);
	EQ64(cfg->dns_tries, 2);
	EQSTR(cfg->dns_ip_mode, "both");

	EQ64(cfg->delivery_port, 2525);
	EQSTR(cfg->relayhost, "smarthost.example:587");
	EQ64(cfg->connect_timeout_ms, 10000);
	EQ64(cfg->greeting_timeout_ms, 20000);
	EQ64(cfg->command_timeout_ms, 180000);
	EQ64(cfg->data_timeout_ms, 900000);
	EQ64(cfg->connection_idle_timeout_ms, 250);
	EQ64(cfg->min_backoff_ms, 60000);
	EQ64(cfg->max_backoff_ms, 2LL * 86400000);
	EQ64(cfg->backoff_jitter_percent, 0);
	EQ64(cfg->queue_lifetime_ms, 3LL * 86400000);
	EQ64(cfg->domain_backoff_ms, 90000);
	EQ64(cfg->bounce_max_original_size, 65536);
	EQ64(cfg->domain_default.max_connections, 7);
	EQ64(cfg->domain_default.max_messages_per_connection, 77);
	EQ64(cfg->domain_default.max_recipients_per_transaction, 17);

	cr_assert_eq(cfg->domain_count, 3, "domain_count: got %zu, want 3", cfg->domain_count);
	const struct config_domain *g = &cfg->domains[0], *s = &cfg->domains[1], *p = &cfg->domains[2];
	EQSTR(g->name, "gmail.com");
	cr_expect_null(g->route);
	EQ64(g->max_connections, 50);
	EQ64(g->max_messages_per_connection, 77);     /* inherited */
	EQ64(g->max_recipients_per_transaction, 17);  /* inherited */
	EQSTR(s->name, "slow.example");
	EQSTR(s->route, "10.1.1.1:2525");
	EQ64(s->max_connections, 7);                  /* inherited */
	EQ64(s->max_messages_per_connection, 3);
	EQ64(s->max_recipients_per_transaction, 5);
	EQSTR(p->name, "plain.example");
	EQ64(p->max_connections, 7);
	EQ64(p->max_messages_per_connection, 77);
	EQ64(p->max_recipients_per_transaction, 17);

	cr_expect(cfg->source_path != NULL && strncmp(cfg->source_path, "/tmp/", 5) == 0,
		  "source_path should be the file loaded");
	config_free(cfg);
}

/* Each value form a duration and a size may take, checked on one key. */
struct value_case {
	const char *setting;
	int64_t want;
};

Test(config, duration_and_size_forms)
{
	static const struct value_case durations[] = {
		{ "shutdown_timeout = \"250ms\";", 250 },
		{ "shutdown_timeout = \"30s\";", 30000 },
		{ "shutdown_timeout = \"5m\";", 300000 },
		{ "shutdown_timeout = \"2h\";", 7200000 },
		{ "shutdown_timeout = \"1d\";", 86400000 },
		{ "shutdown_timeout = 45;", 45000 },
		{ "shutdown_timeout = \"45\";", 45000 },
		{ "shutdown_timeout = 0;", 0 },
		{ "shutdown_timeout = 45L;", 45000 },
	};
	static const struct value_case sizes[] = {
		{ "smtp.max_message_size = \"512k\";", 512 * 1024 },
		{ "smtp.max_message_size = \"512K\";", 512 * 1024 },
		{ "smtp.max_message_size = \"10M\";", 10 << 20 },
		{ "smtp.max_message_size = \"10m\";", 10 << 20 },
		{ "smtp.max_message_size = \"1G\";", 1 << 30 },
		{ "smtp.max_message_size = \"2g\";", 2LL << 30 },
		{ "smtp.max_message_size = 123456;", 123456 },
		{ "smtp.max_message_size = \"123456\";", 123456 },
	};
	struct config *cfg;
	char err[256], text[128];

	for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
		int rc = load_text(durations[i].setting, &cfg, err, sizeof(err));
		cr_assert_eq(rc, 0, "%s: got error %s", durations[i].setting, err);
		cr_expect_eq(cfg->shutdown_timeout_ms, durations[i].want, "%s: got %lld ms, want %lld",
			     durations[i].setting, (long long)cfg->shutdown_timeout_ms, (long long)durations[i].want);
		config_free(cfg);
	}
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		/* the dotted form is not libconfig syntax: write the group */
		snprintf(text, sizeof(text), "smtp = { %s };\n", sizes[i].setting + 5);
		int rc = load_text(text, &cfg, err, sizeof(err));
		cr_assert_eq(rc, 0, "%s: got error %s", text, err);
		cr_expect_eq(cfg->smtp_max_message_size, sizes[i].want, "%s: got %lld bytes, want %lld",
			     text, (long long)cfg->smtp_max_message_size, (long long)sizes[i].want);
		config_free(cfg);
	}
}

Test(config, empty_file_and_empty_lists)
{
	struct config *cfg;
	char err[256];

	cr_assert_eq(load_text("", &cfg, err, sizeof(err)), 0, "empty file: %s", err);
	EQ64(cfg->listen_count, 1);
	config_free(cfg);

	cr_assert_eq(load_text("relay_networks = [];\nlocal_domains = [];\ndns = { nameservers = []; };\ndomains = ();\n",
			       &cfg, err, sizeof(err)), 0, "empty lists: %s", err);
	EQ64(cfg->relay_network_count, 0);
	EQ64(cfg->local_domain_count, 0);
	EQ64(cfg->dns_nameserver_count, 0);
	EQ64(cfg->domain_count, 0);
	struct sockaddr_in lo = v4("127.0.0.1", 1);
	cr_expect(!config_is_relay_client(cfg, (struct sockaddr *)&lo), "no relay_networks: nobody relays");
	config_free(cfg);

	cr_assert_eq(load_text("log = { level = \"WARN\"; };\n", &cfg, err, sizeof(err)), 0, "WARN: %s", err);
	EQ64(cfg->log_level, LOG_LEVEL_WARN);
	config_free(cfg);
}

struct error_case {
	const char *name;
	const char *text;
	const char *want_line;   /* "line N" */
	const char *want_key;    /* the key the message must name */
};

static const struct error_case error_cases[] = {
	{ "unknown top-level key", "workers = 1;\n\nbogus = 1;\n", "line 3", "\"bogus\"" },
	{ "unknown nested key", "smtp = {\n  max_errors = 3;\n  bogus = 1;\n};\n", "line 3", "smtp.bogus" },
	{ "unknown deeper key", "log = {\n  level = \"info\";\n  extra = { a = 1; };\n};\n", "line 3", "log.extra" },
	{ "scalar where a group belongs", "workers = 1;\nsmtp = 5;\n", "line 2", "smtp" },
	{ "unknown key in domains entry",
	  "domains = (\n  { name = \"a.example\";\n    colour = \"red\"; }\n);\n", "line 3", "colour" },
	{ "string for int", "workers = 1;\n\nmax_connections = \"10\";\n", "line 3", "max_connections" },
	{ "string for int in group", "dns = {\n  tries = \"2\";\n};\n", "line 2", "dns.tries" },
	{ "int for bool", "spool = {\n  sync = 1;\n};\n", "line 2", "spool.sync" },
	{ "string for bool", "spool = {\n  sync = \"yes\";\n};\n", "line 2", "spool.sync" },
	{ "bool for string", "workers = 1;\nhostname = true;\n", "line 2", "hostname" },
	{ "int for string", "workers = 1;\nhostname = 5;\n", "line 2", "hostname" },
	{ "bool for int", "workers = true;\n", "line 1", "workers" },
	{ "bool for duration", "\nshutdown_timeout = false;\n", "line 2", "shutdown_timeout" },
	{ "float for int", "\n\nworkers = 1.5;\n", "line 3", "workers" },
	{ "group for int", "workers = { a = 1; };\n", "line 1", "workers" },
	{ "non-list for listen", "\nlisten = \"127.0.0.1:25\";\n", "line 2", "listen" },
	{ "non-list for relay_networks", "\nrelay_networks = \"10.0.0.0/8\";\n", "line 2", "relay_networks" },
	{ "non-list for local_domains", "\n\nlocal_domains = \"a.example\";\n", "line 3", "local_domains" },
	{ "non-list for nameservers", "dns = {\n  nameservers = \"127.0.0.1:53\";\n};\n", "line 2", "dns.nameservers" },
	{ "list of numbers", "\nrelay_networks = [ 10, 11 ];\n", "line 2", "relay_networks" },
	{ "list for scalar", "\nhostname = [ \"a\" ];\n", "line 2", "hostname" },
	{ "workers too large", "\nworkers = 257;\n", "line 2", "workers" },
	{ "ring.entries too small", "ring = {\n  entries = 32;\n};\n", "line 2", "ring.entries" },
	{ "delivery.port 65536", "delivery = {\n\n  port = 65536;\n};\n", "line 3", "delivery.port" },
	{ "delivery.port 0", "delivery = {\n  port = 0;\n};\n", "line 2", "delivery.port" },
	{ "dns.tries 11", "dns = {\n  tries = 11;\n};\n", "line 2", "dns.tries" },
	{ "jitter 101", "delivery = {\n  backoff_jitter = 101;\n};\n", "line 2", "delivery.backoff_jitter" },
	{ "duration too long", "dns = {\n  timeout = \"90s\";\n};\n", "line 2", "dns.timeout" },
	{ "duration too short", "smtp = {\n  idle_timeout = \"500ms\";\n};\n", "line 2", "smtp.idle_timeout" },
	{ "size too large", "smtp = {\n  max_message_size = \"4G\";\n};\n", "line 2", "smtp.max_message_size" },
	{ "size too small", "ring = {\n  recv_buffer_size = 512;\n};\n", "line 2", "ring.recv_buffer_size" },
	{ "duration overflow", "\nshutdown_timeout = \"99999999999999999999d\";\n", "line 2", "shutdown_timeout" },
	{ "duration unit x", "smtp = {\n  idle_timeout = \"5x\";\n};\n", "line 2", "smtp.idle_timeout" },
	{ "duration unit M", "smtp = {\n  idle_timeout = \"5M\";\n};\n", "line 2", "smtp.idle_timeout" },
	{ "duration space", "smtp = {\n  idle_timeout = \"5 m\";\n};\n", "line 2", "smtp.idle_timeout" },
	{ "duration unit only", "smtp = {\n  idle_timeout = \"s\";\n};\n", "line 2", "smtp.idle_timeout" },
	{ "duration empty", "smtp = {\n  idle_timeout = \"\";\n};\n", "line 2", "smtp.idle_timeout" },
	{ "duration fraction", "smtp = {\n  idle_timeout = \"1.5s\";\n};\n", "line 2", "smtp.idle_timeout" },
	{ "size unit T", "smtp = {\n  max_message_size = \"10T\";\n};\n", "line 2", "smtp.max_message_size" },
	{ "size unit kb", "smtp = {\n  max_message_size = \"10kb\";\n};\n", "line 2", "smtp.max_message_size" },
	{ "size unit only", "smtp = {\n  max_message_size = \"M\";\n};\n", "line 2", "smtp.max_message_size" },
	{ "negative int", "\nworkers = -1;\n", "line 2", "workers" },
	{ "negative duration int", "\nshutdown_timeout = -5;\n", "line 2", "shutdown_timeout" },
	{ "negative duration string", "\nshutdown_timeout = \"-5s\";\n", "line 2", "shutdown_timeout" },
	{ "negative size string", "ring = {\n  recv_buffer_size = \"-4k\";\n};\n", "line 2", "ring.recv_buffer_size" },
	{ "negative size int", "delivery = {\n  bounce_max_original = -1;\n};\n", "line 2", "delivery.bounce_max_original" },
	{ "listen without port", "\nlisten = [ \"127.0.0.1\" ];\n", "line 2", "listen" },
	{ "listen host name", "\nlisten = [ \"localhost:25\" ];\n", "line 2", "listen" },
	{ "listen port 0", "\nlisten = [ \"127.0.0.1:0\" ];\n", "line 2", "listen" },
	{ "listen bare ipv6", "\nlisten = [ \"::1:25\" ];\n", "line 2", "listen" },
	{ "listen second bad", "\nlisten = [ \"127.0.0.1:25\", \"[::1]:99999\" ];\n", "line 2", "listen" },
	{ "listen empty", "\nlisten = [ ];\n", "line 2", "listen" },
	{ "listen too many",
	  "\nlisten = [ \"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\", \"127.0.0.1:4\", \"127.0.0.1:5\",\n"
	  "  \"127.0.0.1:6\", \"127.0.0.1:7\", \"127.0.0.1:8\", \"127.0.0.1:9\", \"127.0.0.1:10\",\n"
	  "  \"127.0.0.1:11\", \"127.0.0.1:12\", \"127.0.0.1:13\", \"127.0.0.1:14\", \"127.0.0.1:15\",\n"
	  "  \"127.0.0.1:16\", \"127.0.0.1:17\" ];\n", "line 2", "listen" },
	{ "cidr prefix 33", "\nrelay_networks = [ \"10.0.0.0/33\" ];\n", "line 2", "relay_networks" },
	{ "cidr short ip", "\nrelay_networks = [ \"10.0.0/8\" ];\n", "line 2", "relay_networks" },
	{ "cidr v6 prefix 129", "\nrelay_networks = [ \"::1/129\" ];\n", "line 2", "relay_networks" },
	{ "cidr empty prefix", "\nrelay_networks = [ \"127.0.0.1/\" ];\n", "line 2", "relay_networks" },
	{ "cidr name", "\nrelay_networks = [ \"localhost\" ];\n", "line 2", "relay_networks" },
	{ "bad log level", "log = {\n  level = \"verbose\";\n};\n", "line 2", "log.level" },
	{ "log level number", "log = {\n  level = 2;\n};\n", "line 2", "log.level" },
	{ "bad ip_mode", "dns = {\n  ip_mode = \"ipv5\";\n};\n", "line 2", "dns.ip_mode" },
	{ "ip_mode case", "dns = {\n  ip_mode = \"IPv4\";\n};\n", "line 2", "dns.ip_mode" },
	{ "domains not a list", "\ndomains = { name = \"a.example\"; };\n", "line 2", "domains" },
	{ "domains array", "\ndomains = [ \"a.example\" ];\n", "line 2", "domains" },
	/* libconfig dates a scalar list element by the token after it, so keep
	 * the list on one line */
	{ "domains element not a group", "\ndomains = ( \"a.example\" );\n", "line 2", "domains" },
	{ "domains entry without name", "domains = (\n  { name = \"a.example\"; },\n  { max_connections = 1; }\n);\n",
	  "line 3", "domains" },
	{ "domains entry empty name", "domains = (\n  { name = \"\"; }\n);\n", "line 2", "domains" },
	/* found by fuzz_config: names with an empty label were kept and could
	 * never match a domain */
	{ "domains entry name with empty label", "domains = (\n  { name = \"a.example..\"; }\n);\n", "line 2", "a.example." },
	{ "domains entry name only a dot", "domains = (\n  { name = \".\"; }\n);\n", "line 2", "domains" },
	{ "local domain with empty label", "\nlocal_domains = [ \"a..example\" ];\n", "line 2", "local_domains" },
	{ "local domain leading dot", "\nlocal_domains = [ \".example\" ];\n", "line 2", "local_domains" },
	{ "local domain empty", "\nlocal_domains = [ \"\" ];\n", "line 2", "local_domains" },
	{ "domains entry name not string", "domains = (\n  { name = 5; }\n);\n", "line 2", "name" },
	{ "domains entry wrong type", "domains = (\n  { name = \"a.example\";\n    max_connections = \"5\"; }\n);\n",
	  "line 3", "max_connections" },
	{ "domains entry out of range", "domains = (\n  { name = \"a.example\";\n    max_connections = 0; }\n);\n",
	  "line 3", "max_connections" },
	{ "duplicate domain", "domains = (\n  { name = \"a.example\"; },\n  { name = \"A.Example.\"; }\n);\n",
	  "line 3", "a.example" },
	/* issue 17: a next hop that cannot work is refused here, not at delivery */
	{ "relayhost bad port", "delivery = {\n\n  relayhost = \"smtp.example.com:99999\";\n};\n", "line 3", "delivery.relayhost" },
	{ "relayhost bad ip", "delivery = {\n  relayhost = \"10.0.0.256:25\";\n};\n", "line 2", "not an IPv4" },
	{ "relayhost ipv6 without brackets", "delivery = {\n  relayhost = \"::1:25:x\";\n};\n", "line 2", "brackets" },
	{ "relayhost unclosed bracket", "delivery = {\n  relayhost = \"[relay.example:587\";\n};\n", "line 2", "delivery.relayhost" },
	{ "route bad", "domains = (\n  { name = \"a.example\";\n    route = \"relay example\"; }\n);\n", "line 3", "domains[].route" },
	{ "min_ttl > max_ttl", "dns = {\n  min_ttl = \"2h\";\n  max_ttl = \"1h\";\n};\n", "line 2", "dns.min_ttl" },
	{ "max_ttl below default min_ttl", "dns = {\n\n  max_ttl = \"30s\";\n};\n", "line 3", "dns.max_ttl" },
	{ "min_backoff > max_backoff", "delivery = {\n  min_backoff = \"2h\";\n  max_backoff = \"1h\";\n};\n",
	  "line 2", "delivery.min_backoff" },
	{ "recv_buffers not a power of two", "ring = {\n  entries = 256;\n  recv_buffers = 1000;\n};\n",
	  "line 3", "ring.recv_buffers" },
	{ "input backlog below buffer size", "ring = {\n  recv_buffer_size = \"64k\";\n};\nsmtp = {\n  max_input_backlog = \"32k\";\n};\n",
	  "line 5", "smtp.max_input_backlog" },
	{ "dkim.headers without From", "workers = 1;\ndkim = {\n  headers = [\"Subject\", \"To\"];\n};\n",
	  "line 3", "dkim.headers" },
	{ "dkim.headers bad name", "dkim = {\n  headers = [\"From\", \"Sub ject\"];\n};\n", "line 2", "dkim.headers" },
	{ "dkim.sign unknown key", "dkim = {\n  sign = (\n    { domain = \"a.test\"; selector = \"s\";\n"
	  "      key_file = \"/nonexistent\"; algorithm = \"rsa\"; }\n  );\n};\n", "line 4", "algorithm" },
	{ "dkim.sign without key_file", "dkim = {\n  sign = (\n    { domain = \"a.test\"; selector = \"s\"; }\n  );\n};\n",
	  "line 3", "key_file" },
	{ "dkim.sign bad selector", "dkim = {\n  sign = (\n\n    { domain = \"a.test\"; selector = \"s_1\"; key_file = \"/x\"; }\n  );\n};\n",
	  "line 4", "s_1" },
	{ "dkim.sign unreadable key", "dkim = {\n  sign = (\n    { domain = \"a.test\"; selector = \"s\";\n"
	  "      key_file = \"/nonexistent/k.pem\"; }\n  );\n};\n", "line 3", "/nonexistent/k.pem" },
	{ "dkim.sign not a list", "dkim = {\n  sign = { domain = \"a.test\"; };\n};\n", "line 2", "dkim.sign" },
	{ "dkim.expire bad", "dkim = {\n  expire = \"soon\";\n};\n", "line 2", "dkim.expire" },
	{ "bounce.patterns_file missing", "bounce = {\n  patterns_file = \"/nonexistent/p.txt\";\n};\n", "line 2", "bounce.patterns_file" },
	{ "syntax error", "workers = 1;\nhostname = \"x\";\nlisten = ;\n", "line 3", "/tmp/ringmail-test-config-" },
	{ "unterminated group", "workers = 1;\nsmtp = {\n  max_errors = 3;\n", "line 4", "/tmp/ringmail-test-config-" },
};

Test(config, every_error_names_key_and_line)
{
	for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
		const struct error_case *c = &error_cases[i];
		struct config *cfg = (struct config *)&cfg;   /* must be reset to NULL */
		char err[256];

		int rc = load_text(c->text, &cfg, err, sizeof(err));
		cr_expect_eq(rc, -EINVAL, "%s: got rc %d, want -EINVAL", c->name, rc);
		cr_expect_null(cfg, "%s: *out should be NULL on error", c->name);
		if (rc == 0) {
			config_free(cfg);
			continue;
		}
		cr_expect(strstr(err, c->want_line) != NULL, "%s: got \"%s\", want it to name %s",
			  c->name, err, c->want_line);
		cr_expect(strstr(err, c->want_key) != NULL, "%s: got \"%s\", want it to name %s",
			  c->name, err, c->want_key);
	}
}

/* bounce.patterns_file: its rules come first, a bad line names file and line. */
Test(config, bounce_patterns_file)
{
	char path[] = "/tmp/ringmail-test-patterns-XXXXXX";
	int fd = mkstemp(path);
	static const char rules[] = "# ours\npolicy 550 5.1.1 closed account\n";
	struct config *cfg;
	char err[512], text[256];

	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, rules, strlen(rules)), (ssize_t)strlen(rules));
	close(fd);
	snprintf(text, sizeof(text), "bounce = {\n  patterns_file = \"%s\";\n};\n", path);
	cr_assert_eq(load_text(text, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(bounce_classify(cfg->bounce_classifier, 550, "5.1.1", "Closed account"), BOUNCE_CAT_POLICY);
	cr_expect_eq(bounce_classify(cfg->bounce_classifier, 550, "5.1.1", "no such user"),
		     BOUNCE_CAT_INVALID_RECIPIENT);
	config_free(cfg);

	fd = open(path, O_WRONLY | O_TRUNC);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "policy 550 5.1.1\nspam * *\n", 27), 27);
	close(fd);
	cr_expect_eq(load_text(text, &cfg, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "line 2: bounce.patterns_file:") != NULL && strstr(err, " line 2: unknown category") != NULL,
		  "got %s", err);
	unlink(path);
}

Test(config, missing_file)
{
	struct config *cfg = (struct config *)&cfg;
	char err[256] = "";
	const char *path = "/tmp/ringmail-test-config-does-not-exist.conf";

	unlink(path);
	cr_expect_eq(config_load(path, &cfg, err, sizeof(err)), -EINVAL);
	cr_expect_null(cfg);
	cr_expect(strstr(err, path) != NULL, "got \"%s\", want it to name %s", err, path);
}

Test(config, error_message_truncated_safely)
{
	struct config *cfg;
	char err[8];

	cr_expect_eq(load_text("\nbogus_key_with_a_long_name = 1;\n", &cfg, err, sizeof(err)), -EINVAL);
	cr_expect_eq(strlen(err), sizeof(err) - 1, "got %zu bytes, want %zu", strlen(err), sizeof(err) - 1);
}

Test(config, is_local_domain)
{
	struct config *cfg;
	char err[256];
	static const struct {
		const char *domain;
		bool want;
	} cases[] = {
		{ "example.org", true },
		{ "EXAMPLE.ORG", true },
		{ "Example.Org.", true },
		{ "local.test", true },
		{ "local.test.", true },
		{ "LOCAL.TEST.", true },
		{ "example.org..", false },
		{ "sub.example.org", false },
		{ "example.or", false },
		{ "example.orgx", false },
		{ "xexample.org", false },
		{ "", false },
		{ ".", false },
	};

	cr_assert_eq(load_text("local_domains = [ \"Example.ORG.\", \"local.test\" ];\n", &cfg, err, sizeof(err)), 0,
		     "%s", err);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool got = config_is_local_domain(cfg, cases[i].domain);
		cr_expect_eq(got, cases[i].want, "config_is_local_domain(\"%s\"): got %d, want %d",
			     cases[i].domain, got, cases[i].want);
	}
	config_free(cfg);
}

Test(config, is_relay_client)
{
	struct config *cfg;
	char err[256];
	static const struct {
		const char *ip;
		bool v6;
		bool want;
	} cases[] = {
		{ "10.0.0.1", false, true },
		{ "10.255.255.255", false, true },
		{ "11.0.0.1", false, false },
		{ "192.168.1.7", false, true },
		{ "192.168.1.8", false, false },
		{ "172.16.0.1", false, true },
		{ "172.31.255.255", false, true },
		{ "172.32.0.0", false, false },
		{ "127.0.0.1", false, false },
		{ "2001:db8::1", true, true },
		{ "2001:db8:ffff::1", true, true },
		{ "2001:db9::1", true, false },
		{ "::1", true, false },
		{ "::ffff:10.1.2.3", true, true },
		{ "::ffff:192.168.1.7", true, true },
		{ "::ffff:11.1.2.3", true, false },
		{ "::10.1.2.3", true, false },          /* v4-compatible, not v4-mapped */
		{ "64:ff9b::10.1.2.3", true, false },
	};

	cr_assert_eq(load_text("relay_networks = [ \"10.0.0.0/8\", \"172.16.0.0/12\", \"192.168.1.7\", \"2001:db8::/32\" ];\n",
			       &cfg, err, sizeof(err)), 0, "%s", err);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_in sin;
		struct sockaddr_in6 sin6;
		const struct sockaddr *sa;
		if (cases[i].v6) {
			sin6 = v6(cases[i].ip, 25);
			sa = (const struct sockaddr *)&sin6;
		} else {
			sin = v4(cases[i].ip, 25);
			sa = (const struct sockaddr *)&sin;
		}
		bool got = config_is_relay_client(cfg, sa);
		cr_expect_eq(got, cases[i].want, "config_is_relay_client(%s): got %d, want %d",
			     cases[i].ip, got, cases[i].want);
	}
	config_free(cfg);

	/* the default loopback networks with a v4-mapped loopback peer */
	cr_assert_eq(config_load(NULL, &cfg, err, sizeof(err)), 0, "%s", err);
	struct sockaddr_in6 mapped = v6("::ffff:127.0.0.1", 25);
	cr_expect(config_is_relay_client(cfg, (struct sockaddr *)&mapped), "::ffff:127.0.0.1 should relay by default");
	struct sockaddr_un_like { sa_family_t family; char path[20]; } unix_peer = { AF_UNIX, "x" };
	cr_expect(!config_is_relay_client(cfg, (struct sockaddr *)&unix_peer), "an AF_UNIX peer should not relay");
	config_free(cfg);
}

Test(config, domain_policy)
{
	struct config *cfg;
	char err[256];

	cr_assert_eq(load_text(full_file, &cfg, err, sizeof(err)), 0, "%s", err);
	static const struct {
		const char *domain;
		int want;   /* index into cfg->domains, -1: the defaults */
	} cases[] = {
		{ "gmail.com", 0 },
		{ "GMAIL.COM", 0 },
		{ "Gmail.Com.", 0 },
		{ "slow.example", 1 },
		{ "slow.example.", 1 },
		{ "plain.example", 2 },
		{ "mail.gmail.com", -1 },
		{ "gmail.com.evil", -1 },
		{ "gmail.co", -1 },
		{ "example.com", -1 },
		{ "", -1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct config_domain *got = config_domain_policy(cfg, cases[i].domain);
		const struct config_domain *want = cases[i].want < 0 ? &cfg->domain_default : &cfg->domains[cases[i].want];
		cr_expect(got == want, "config_domain_policy(\"%s\"): got %s, want %s", cases[i].domain,
			  got->name ? got->name : "(defaults)", want->name ? want->name : "(defaults)");
	}
	EQ64(config_domain_policy(cfg, "other.example")->max_connections, 7);
	EQ64(config_domain_policy(cfg, "gmail.com")->max_connections, 50);
	config_free(cfg);
}

Test(config, keys_dump_lists_every_key)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	static const char *const keys[] = {
		"workers", "log.level", "listen", "ring.recv_buffers", "smtp.max_input_backlog",
		"relay_networks", "spool.sync", "dns.ip_mode", "delivery.max_recipients_per_transaction",
		"domains[].route", "delivery.sender_routes[].route", "delivery.sender_routes[].tls", "delivery.auth_file", "dkim.headers", "dkim.expire", "dkim.sign[].key_file",
	};

	cr_assert_not_null(out);
	config_keys_dump(out);
	fclose(out);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		cr_expect(strstr(text, keys[i]) != NULL, "config_keys_dump lacks %s", keys[i]);
	free(text);
}

Test(config, free_null)
{
	cr_expect_null(config_free(NULL));
}

Test(config, local_mailbox_and_pop3_keys)
{
	struct config *cfg;
	char err[256];
	char users[64];

	cr_assert_eq(config_load(NULL, &cfg, err, sizeof(err)), 0, "defaults: %s", err);
	EQ64(cfg->pop3_listen_count, 0);
	cr_expect(!cfg->pop3_allow_plaintext, "pop3.allow_plaintext: got true, want false");
	EQ64(cfg->pop3_idle_timeout_ms, 600000);
	EQ64(cfg->pop3_command_timeout_ms, 60000);
	EQSTR(cfg->mailbox_root, "/var/mail/ringmail");
	EQ64(cfg->mailbox_quota, 0);
	EQSTR(cfg->users_file, "");
	cr_expect_null(cfg->users, "no users.file: got a users db");
	EQ64(cfg->listen_count, 1);
	config_free(cfg);

	write_temp("alice:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\n",
		   users, sizeof(users));
	char text[512];
	snprintf(text, sizeof(text),
		 "pop3 = { listen = [\"127.0.0.1:1110\", \"[::1]:1110\"]; allow_plaintext = true; idle_timeout = \"20m\"; };\n"
		 "mailbox = { root = \"/srv/mail\"; quota = \"10M\"; };\nusers = { file = \"%s\"; };\n", users);
	int rc = load_text(text, &cfg, err, sizeof(err));
	cr_assert_eq(rc, 0, "got %d (%s), want 0", rc, err);
	EQ64(cfg->pop3_listen_count, 2);
	EQSTR(cfg->pop3_listen[1].text, "[::1]:1110");
	EQ64(cfg->listen_count, 1);      /* the SMTP list is untouched */
	cr_expect(cfg->pop3_allow_plaintext, "pop3.allow_plaintext: got false, want true");
	EQ64(cfg->pop3_idle_timeout_ms, 1200000);
	EQSTR(cfg->mailbox_root, "/srv/mail");
	EQ64(cfg->mailbox_quota, 10 << 20);
	cr_expect_not_null(cfg->users, "users.file set: no users db");
	config_free(cfg);
	unlink(users);

	snprintf(text, sizeof(text), "\n\nusers = { file = \"%s\"; };\n", users);
	rc = load_text(text, &cfg, err, sizeof(err));
	cr_expect_eq(rc, -EINVAL, "missing users file: got %d, want -EINVAL", rc);
	cr_expect(strstr(err, "line 3") != NULL && strstr(err, "users.file") != NULL,
		  "got \"%s\", want line 3 and users.file", err);
}

Test(config, listener_roles)
{
	struct config *cfg;
	char err[256];

	cr_assert_eq(config_load(NULL, &cfg, err, sizeof(err)), 0, "defaults: %s", err);
	EQ64(cfg->smtps_listen_count, 0);
	EQ64(cfg->submission_listen_count, 0);
	EQ64(cfg->pop3s_listen_count, 0);
	EQ64(cfg->listen[0].role, CONFIG_ROLE_SMTP);
	config_free(cfg);

	int rc = load_text("listen = [\"127.0.0.1:25\"];\nsubmission = { listen = [\"127.0.0.1:587\", \"[::1]:587\"]; };\n"
			   "pop3 = { listen = [\"127.0.0.1:110\"]; };\n", &cfg, err, sizeof(err));
	cr_assert_eq(rc, 0, "got %d (%s), want 0", rc, err);
	EQ64(cfg->listen_count, 1);
	EQ64(cfg->listen[0].role, CONFIG_ROLE_SMTP);
	EQ64(cfg->submission_listen_count, 2);
	EQSTR(cfg->submission_listen[1].text, "[::1]:587");
	EQ64(cfg->submission_listen[0].role, CONFIG_ROLE_SUBMISSION);
	EQ64(cfg->submission_listen[1].role, CONFIG_ROLE_SUBMISSION);
	EQ64(cfg->pop3_listen[0].role, CONFIG_ROLE_POP3);
	config_free(cfg);

	/* Implicit TLS without a certificate names the key and its line. */
	static const struct {
		const char *text, *key, *line;
	} bad[] = {
		{ "\nsmtps = { listen = [\"127.0.0.1:465\"]; };\n", "smtps.listen", "line 2" },
		{ "\n\npop3s = { listen = [\"127.0.0.1:995\"]; };\n", "pop3s.listen", "line 3" },
		{ "listen = [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\", \"127.0.0.1:4\", \"127.0.0.1:5\","
		  " \"127.0.0.1:6\", \"127.0.0.1:7\", \"127.0.0.1:8\", \"127.0.0.1:9\"];\n"
		  "submission = { listen = [\"127.0.0.1:11\", \"127.0.0.1:12\", \"127.0.0.1:13\", \"127.0.0.1:14\","
		  " \"127.0.0.1:15\", \"127.0.0.1:16\", \"127.0.0.1:17\", \"127.0.0.1:18\"]; };\n",
		  "submission.listen", "line 2" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cfg = NULL;
		rc = load_text(bad[i].text, &cfg, err, sizeof(err));
		cr_expect_eq(rc, -EINVAL, "case %zu: got %d, want -EINVAL", i, rc);
		cr_expect(strstr(err, bad[i].key) != NULL && strstr(err, bad[i].line) != NULL,
			  "case %zu: got \"%s\", want %s and %s", i, err, bad[i].key, bad[i].line);
		config_free(cfg);
	}
}

Test(config, outbound_tls_policy)
{
	struct config *cfg;
	char err[256];

	cr_assert_eq(config_load(NULL, &cfg, err, sizeof(err)), 0, "defaults: %s", err);
	cr_expect_eq(cfg->domain_default.tls, CONFIG_TLS_MAY, "delivery.tls: got %s, want may",
		     config_tls_policy_name(cfg->domain_default.tls));
	EQSTR(cfg->tls_ca_file, "/etc/ssl/certs/ca-certificates.crt");
	config_free(cfg);

	int rc = load_text("delivery = { tls = \"encrypt\"; tls_ca_file = \"\"; };\n"
			   "domains = ( { name = \"a.example\"; tls = \"none\"; },\n"
			   "            { name = \"b.example\"; } );\n", &cfg, err, sizeof(err));
	cr_assert_eq(rc, 0, "got %d (%s), want 0", rc, err);
	static const struct { const char *domain; enum config_tls_policy want; bool set; } cases[] = {
		{ "a.example", CONFIG_TLS_NONE, true },
		{ "b.example", CONFIG_TLS_ENCRYPT, false },      /* inherits delivery.tls */
		{ "other.example", CONFIG_TLS_ENCRYPT, false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum config_tls_policy got = config_domain_policy(cfg, cases[i].domain)->tls;
		cr_expect_eq(got, cases[i].want, "%s: got %s, want %s", cases[i].domain,
			     config_tls_policy_name(got), config_tls_policy_name(cases[i].want));
		/* only a domain's own tls key wins over MTA-STS */
		cr_expect_eq(config_domain_policy(cfg, cases[i].domain)->tls_set, cases[i].set,
			     "%s: tls_set", cases[i].domain);
	}
	EQSTR(cfg->tls_ca_file, "");
	config_free(cfg);

	static const struct { const char *text; const char *want; } bad[] = {
		{ "\ndelivery = { tls = \"maybe\"; };\n", "line 2" },
		{ "delivery = { tls = true; };\n", "delivery.tls" },
		{ "domains = ( { name = \"x.example\";\n tls = \"strict\"; } );\n", "line 2" },
		/* "verify" needs a CA bundle that loads */
		{ "delivery = { tls = \"verify\";\n tls_ca_file = \"/nonexistent/ca.pem\"; };\n",
		  "delivery.tls_ca_file" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rc = load_text(bad[i].text, &cfg, err, sizeof(err));
		cr_expect_eq(rc, -EINVAL, "case %zu: got %d, want -EINVAL", i, rc);
		cr_expect(strstr(err, bad[i].want) != NULL, "case %zu: got \"%s\", want %s", i, err, bad[i].want);
	}
	/* Under "may" a missing bundle is no error: verification is only reported. */
	rc = load_text("delivery = { tls_ca_file = \"/nonexistent/ca.pem\"; };\n", &cfg, err, sizeof(err));
	cr_expect_eq(rc, 0, "may with a missing CA file: got %d (%s), want 0", rc, err);
	config_free(cfg);
}

/* A key file that is not a key: the error names the key_file and line. */
Test(config, dkim_sign_bad_key_names_file_and_line)
{
	char key[64], text[512], err[512];
	struct config *cfg = NULL;

	write_temp("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n", key, sizeof(key));
	snprintf(text, sizeof(text), "dkim = {\n  sign = (\n    { domain = \"a.test\"; selector = \"s\"; key_file = \"%s\"; },\n"
		 "    { domain = \"b.test\"; selector = \"s\";\n      key_file = \"%s\"; }\n  );\n};\n", key, key);
	cr_expect_eq(load_text(text, &cfg, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "line 3") != NULL && strstr(err, key) != NULL, "got \"%s\"", err);
	unlink(key);
}

Test(config, dkim_defaults)
{
	struct config *cfg = NULL;
	char err[256];

	cr_assert_eq(config_load(NULL, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(cfg->dkim_signer_count, 0);
	cr_expect_eq(cfg->dkim_expire_ms, 0);
	cr_assert_eq(cfg->dkim_header_count, 16);
	cr_expect_str_eq(cfg->dkim_headers[0], "from");
	cr_expect_str_eq(cfg->dkim_headers[15], "feedback-id");
	config_free(cfg);
	cr_assert_eq(load_text("dkim = { headers = [\"FROM\", \"X-Campaign\"]; expire = \"7d\"; };\n",
			       &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg->dkim_header_count, 2);
	cr_expect_str_eq(cfg->dkim_headers[1], "x-campaign");
	cr_expect_eq(cfg->dkim_expire_ms, 7 * 86400000LL);
	config_free(cfg);
}

/* proxy_protocol.listeners marks the listeners it names, in any listen
 * list, by address (not by spelling); an address that is no listener is
 * an error naming the key and its line; the limits have ranges. */
Test(config, proxy_protocol_listeners)
{
	struct config *cfg;
	char err[256];

	cr_assert_eq(config_load(NULL, &cfg, err, sizeof(err)), 0, "defaults: %s", err);
	EQ64(cfg->proxy_protocol_listener_count, 0);
	EQ64(cfg->proxy_protocol_timeout_ms, 5000);
	EQ64(cfg->proxy_protocol_max_header_size, 4096);
	cr_expect_not(cfg->listen[0].proxy_protocol);
	config_free(cfg);

	int rc = load_text("listen = [\"127.0.0.1:25\", \"127.0.0.1:2525\"];\n"
			   "submission = { listen = [\"[::1]:587\"]; };\n"
			   "pop3 = { listen = [\"127.0.0.1:110\"]; };\n"
			   "proxy_protocol = {\n  listeners = [\"127.0.0.1:025\", \"[0:0::1]:587\", \"127.0.0.1:110\"];\n"
			   "  timeout = \"250ms\";\n  max_header_size = \"1k\";\n};\n", &cfg, err, sizeof(err));
	cr_assert_eq(rc, 0, "got %d (%s), want 0", rc, err);
	cr_expect(cfg->listen[0].proxy_protocol);
	cr_expect_not(cfg->listen[1].proxy_protocol);
	cr_expect(cfg->submission_listen[0].proxy_protocol);
	cr_expect(cfg->pop3_listen[0].proxy_protocol);
	EQ64(cfg->proxy_protocol_timeout_ms, 250);
	EQ64(cfg->proxy_protocol_max_header_size, 1024);
	config_free(cfg);

	static const struct {
		const char *text, *key, *line;
	} bad[] = {
		{ "listen = [\"127.0.0.1:25\"];\n\nproxy_protocol = {\n  listeners = [\"127.0.0.1:26\"];\n};\n",
		  "proxy_protocol.listeners", "line 4" },
		{ "metrics = { listen = [\"127.0.0.1:9225\"]; };\nproxy_protocol = { listeners = [\"127.0.0.1:9225\"]; };\n",
		  "proxy_protocol.listeners", "line 2" },
		{ "proxy_protocol = { listeners = [\"localhost:25\"]; };\n", "proxy_protocol.listeners", "line 1" },
		{ "\nproxy_protocol = { timeout = \"10m\"; };\n", "proxy_protocol.timeout", "line 2" },
		{ "proxy_protocol = { max_header_size = 100; };\n", "proxy_protocol.max_header_size", "line 1" },
		{ "proxy_protocol = { max_header_size = \"1M\"; };\n", "proxy_protocol.max_header_size", "line 1" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cfg = NULL;
		rc = load_text(bad[i].text, &cfg, err, sizeof(err));
		cr_expect_eq(rc, -EINVAL, "case %zu: got %d, want -EINVAL", i, rc);
		cr_expect(strstr(err, bad[i].key) != NULL && strstr(err, bad[i].line) != NULL,
			  "case %zu: got \"%s\", want %s and %s", i, err, bad[i].key, bad[i].line);
		config_free(cfg);
	}
}

/* issue 17: parent-domain entries and sender routes. */
Test(config, parent_domain_entries_and_sender_routes)
{
	static const char text[] =
		"domains = (\n"
		"  { name = \".example.test\"; route = \"[10.0.0.1]:25\"; tls = \"encrypt\"; },\n"
		"  { name = \"b.example.test\"; route = \"10.0.0.2:25\"; }\n"
		");\n"
		"delivery = {\n"
		"  sender_routes = (\n"
		"    { sender = \"Tenant-A.test\"; route = \"[smtp.a.test]:587\"; },\n"
		"    { sender = \".tenants.test\"; route = \"[smtp.parent.test]:587\"; },\n"
		"    { sender = \"boss@tenant-a.test\"; route = \"10.9.9.9:465\"; }\n"
		"  );\n"
		"};\n";
	struct config *cfg;
	char err[256];

	cr_assert_eq(load_text(text, &cfg, err, sizeof(err)), 0, "%s", err);
	EQSTR(config_domain_policy(cfg, "a.example.test")->route, "[10.0.0.1]:25");
	cr_expect_eq(config_domain_policy(cfg, "x.a.Example.test.")->tls, CONFIG_TLS_ENCRYPT);
	EQSTR(config_domain_policy(cfg, "b.example.test")->route, "10.0.0.2:25");
	cr_expect(config_domain_policy(cfg, "example.test") == &cfg->domain_default,
		  "\".example.test\" covers subdomains only");
	EQSTR(config_sender_next_hop(cfg, "app@tenant-a.test"), "[smtp.a.test]:587");
	EQSTR(config_sender_next_hop(cfg, "Boss@Tenant-A.test"), "10.9.9.9:465");
	EQSTR(config_sender_next_hop(cfg, "x@eu.tenants.test"), "[smtp.parent.test]:587");
	cr_expect_null(config_sender_next_hop(cfg, "x@tenants.test"));
	cr_expect_null(config_sender_next_hop(cfg, "x@other.test"));
	cr_expect_null(config_sender_next_hop(cfg, ""));
	config_free(cfg);

	static const char *const bad[] = {
		"delivery = { sender_routes = ( { sender = \"a.test\"; } ); };\n",
		"delivery = { sender_routes = ( { sender = \"a..test\"; route = \"x\"; } ); };\n",
		"delivery = { sender_routes = ( { sender = \"a.test\"; route = \"10.0.0.256\"; } ); };\n",
		"delivery = { sender_routes = ( { sender = \"a.test\"; route = \"x\"; colour = 1; } ); };\n",
		"delivery = { sender_routes = ( { sender = \"a.test\"; route = \"x\"; },\n { sender = \"A.test\"; route = \"y\"; } ); };\n",
		"domains = ( { name = \".\"; } );\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(load_text(bad[i], &cfg, err, sizeof(err)), -EINVAL, "accepted: %s", bad[i]);
		cr_expect(strstr(err, "line ") != NULL, "no line in \"%s\"", err);
	}
}

/* issue 17: delivery.sender_routes[].tls, for mail through that route;
 * entries naming the same route must agree on it. */
Test(config, sender_route_tls)
{
	static const char text[] =
		"delivery = {\n"
		"  sender_routes = (\n"
		"    { sender = \"a.test\"; route = \"[smtp.p.test]:465\"; tls = \"implicit\"; },\n"
		"    { sender = \"b.test\"; route = \"[smtp.p.test]:465\"; tls = \"implicit\"; },\n"
		"    { sender = \"c.test\"; route = \"[smtp.q.test]:587\"; }\n"
		"  );\n"
		"};\n";
	struct config *cfg;
	char err[256];
	enum config_tls_policy p = CONFIG_TLS_MAY;

	cr_assert_eq(load_text(text, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_expect(config_sender_route_tls(cfg, "[smtp.p.test]:465", &p));
	cr_expect_eq(p, CONFIG_TLS_IMPLICIT, "got %s, want implicit", config_tls_policy_name(p));
	cr_expect_not(config_sender_route_tls(cfg, "[smtp.q.test]:587", &p), "no tls given: the domain's");
	cr_expect_not(config_sender_route_tls(cfg, NULL, &p));
	config_free(cfg);

	static const struct { const char *text, *want; } bad[] = {
		{ "delivery = { sender_routes = ( { sender = \"a.test\"; route = \"x\"; tls = \"sometimes\"; } ); };\n",
		  "is not none, may, encrypt, verify, implicit or dane" },
		{ "delivery = { sender_routes = ( { sender = \"a.test\"; route = \"x\"; tls = \"verify\"; },\n"
		  "  { sender = \"b.test\"; route = \"x\"; tls = \"encrypt\"; } ); };\n", "must agree" },
		{ "delivery = { sender_routes = ( { sender = \"a.test\"; route = \"x\"; tls = \"verify\"; },\n"
		  "  { sender = \"b.test\"; route = \"x\"; } ); };\n", "must agree" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(load_text(bad[i].text, &cfg, err, sizeof(err)), -EINVAL, "accepted: %s", bad[i].text);
		cr_expect(strstr(err, bad[i].want) != NULL, "got \"%s\", want it to say \"%s\"", err, bad[i].want);
		cr_expect(strstr(err, "line ") != NULL, "no line in \"%s\"", err);
	}
}

Test(config, webhooks)
{
	static const char text[] =
		"log = { delivery_file = \"/tmp/d.json\"; };\n"
		"webhooks = (\n"
		"  { url = \"http://127.0.0.1:8080/events\"; },\n"
		"  { url = \"https://hooks.example.com/x\"; events = [\"bounced\", \"expired\"]; batch = 500;\n"
		"    timeout = \"3s\"; retry_min = \"2s\"; retry_max = \"1h\"; }\n"
		");\n";
	struct config *cfg;
	char err[256];

	cr_assert_eq(load_text(text, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg->webhook_count, 2);
	const struct config_webhook *a = &cfg->webhooks[0], *b = &cfg->webhooks[1];
	cr_expect_str_eq(a->url, "http://127.0.0.1:8080/events");
	cr_expect_eq(a->events, 0x1fu, "default: every event, got %#x", a->events);
	cr_expect_eq(a->batch, 100);
	cr_expect_eq(a->timeout_ms, 10000);
	cr_expect_eq(a->retry_min_ms, 1000);
	cr_expect_eq(a->retry_max_ms, 300000);
	cr_expect_eq(a->line, 3);
	cr_expect_eq(b->events, (1u << 1) | (1u << 3), "bounced and expired: got %#x", b->events);
	cr_expect_eq(b->batch, 500);
	cr_expect_eq(b->timeout_ms, 3000);
	cr_expect_eq(b->retry_min_ms, 2000);
	cr_expect_eq(b->retry_max_ms, 3600000);
	config_free(cfg);

	cr_assert_eq(config_load(NULL, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(cfg->webhook_count, 0);
	config_free(cfg);
}

Test(config, webhooks_errors)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "log = { delivery_file = \"/tmp/d\"; };\nwebhooks = ( { events = [\"bounced\"]; } );\n",
		  "line 2: webhooks: entry 1 needs a url" },
		{ "log = { delivery_file = \"/tmp/d\"; };\nwebhooks = ( { url = \"ftp://x.example/y\"; } );\n",
		  "line 2: webhooks: entry 1 needs a url" },
		{ "log = { delivery_file = \"/tmp/d\"; };\nwebhooks = ( { url = \"http://a.example/\";\n events = [\"opened\"]; } );\n",
		  "line 3: webhooks: events: \"opened\" is not delivered" },
		{ "log = { delivery_file = \"/tmp/d\"; };\nwebhooks = ( { url = \"http://a.example/\"; events = []; } );\n",
		  "line 2: webhooks: events is empty" },
		{ "log = { delivery_file = \"/tmp/d\"; };\nwebhooks = ( { url = \"http://a.example/\"; colour = 1; } );\n",
		  "line 2: webhooks: unknown key \"colour\"" },
		{ "log = { delivery_file = \"/tmp/d\"; };\nwebhooks = ( { url = \"http://a.example/\"; batch = 0; } );\n",
		  "line 2: batch: 0 is out of range" },
		{ "log = { delivery_file = \"/tmp/d\"; };\nwebhooks = ( { url = \"http://a.example/\"; retry_min = \"1m\"; retry_max = \"1s\"; } );\n",
		  "retry_min is larger than retry_max" },
		{ "log = { delivery_file = \"/tmp/d\"; };\nwebhooks = ( { url = \"http://a.example/\"; }, { url = \"http://a.example/\"; } );\n",
		  "appears twice" },
		{ "webhooks = ( { url = \"http://a.example/\"; } );\n",
		  "line 1: webhooks need log.delivery_file" },
		{ "log = { delivery_file = \"/tmp/d\"; };\nwebhooks = { url = \"http://a.example/\"; };\n",
		  "line 2: webhooks: expects a list of groups" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *cfg = NULL;
		char err[256];
		cr_expect_eq(load_text(cases[i].text, &cfg, err, sizeof(err)), -EINVAL, "case %zu loaded", i);
		cr_expect(strstr(err, cases[i].want) != NULL, "case %zu: got \"%s\", want \"%s\"", i, err, cases[i].want);
		cr_expect_null(cfg);
	}
}
