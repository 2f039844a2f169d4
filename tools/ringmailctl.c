/*
 * ringmailctl - the operator's tool.
 *
 *   ringmailctl resolve [options] DOMAIN...   what the relay would do for each domain
 *   ringmailctl spool dump [--json] DIR       every live message in a spool directory
 *   ringmailctl users add|passwd|del|verify|check [--file PATH] NAME   the passwd-file
 *   ringmailctl dkim keygen --domain D --selector S ... --out FILE   a DKIM key and its record
 *   ringmailctl queue|domains|stats|reload ...  the running daemon, over its
 *                                           control socket (control_cli.h)
 */
#include <stdio.h>
#include <string.h>

#include "control_cli.h"
#include "dkim_cli.h"
#include "dns.h"
#include "spool_dump.h"
#include "users_cli.h"
#include "version.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
};

static int run_spool(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "dump") == 0)
		return spool_dump_main(argc - 1, argv + 1);
	fprintf(stderr, "usage: ringmailctl spool dump [--json] SPOOL_DIR\n");
	return 2;
}

static const struct command commands[] = {
	{ "resolve", dns_resolve_main,
	  "resolve [--nameserver ADDR:PORT] [--port N] [--ipv4|--ipv6|--both] DOMAIN..." },
	{ "spool", run_spool, "spool dump [--json] SPOOL_DIR" },
	{ "queue", control_cli_main,
	  "queue list|show|summary|flush|delete|bounce|hold|release [ID] [--domain D] [--deferred|--held] [--json]" },
	{ "domains", control_cli_main, "domains [--domain D] [--json]" },
	{ "addresses", control_cli_main, "addresses [--json]" },
	{ "stats", control_cli_main, "stats [--json]" },
	{ "reload", control_cli_main, "reload" },
	{ "users", users_cli_main,
	  "users add|passwd|del|verify [--file PATH] [--scheme S] NAME | users check [--file PATH]" },
	{ "dkim", dkim_cli_main,
	  "dkim keygen --domain D --selector S [--algorithm rsa|ed25519] [--bits N] --out FILE" },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: ringmailctl COMMAND [ARGS]\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  ringmailctl %s\n", commands[i].usage);
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("ringmailctl %s\n", ringmail_version());
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "ringmailctl: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return 2;
}
