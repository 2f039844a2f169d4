/*
 * ringmailctl - the operator's tool.
 *
 *   ringmailctl resolve [options] DOMAIN...   what the relay would do for each domain
 *   ringmailctl spool dump [--json] DIR       every live message in a spool directory
 *   ringmailctl users add|passwd|del|verify|check [--file PATH] NAME   the passwd-file
 *   ringmailctl dkim keygen --domain D --selector S ... --out FILE   a DKIM key and its record
 *   ringmailctl queue|domains|addresses|stats|reload ...  the running daemon,
 *                                           over its control socket (control_cli.h)
 *
 * Global options (--socket PATH, --config FILE: where the daemon's control
 * socket is) may come before the command or after it; they concern only
 * the daemon's commands.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control_cli.h"
#include "dkim_cli.h"
#include "dns.h"
#include "spool_dump.h"
#include "suppression_cli.h"
#include "users_cli.h"
#include "version.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
	bool daemon;               /* over the control socket: takes the global options */
};

static int run_spool(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "dump") == 0)
		return spool_dump_main(argc - 1, argv + 1);
	fprintf(stderr, "usage: ringmailctl spool dump [--json] SPOOL_DIR\n");
	return 2;
}

/* run_resolve - "resolve DOMAIN [--sender ADDR]" asks the running daemon
 * (its relayhost, routes, sender routes, nameservers and cache); with any
 * of the resolver's own options it is the offline tool, which knows only
 * what its options say. */
static int run_resolve(int argc, char **argv)
{
	static const char *const offline[] = {
		"--nameserver", "--port", "--ipv4", "--ipv6", "--both", "--timeout", "--tries",
		"--route", "--relayhost",
	};

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--offline") == 0) {
			/* no daemon at all: the defaults (/etc/resolv.conf, MX) */
			memmove(argv + i, argv + i + 1, (size_t)(argc - i) * sizeof(*argv));
			return dns_resolve_main(argc - 1, argv);
		}
		for (size_t k = 0; k < sizeof(offline) / sizeof(offline[0]); k++)
			if (strcmp(argv[i], offline[k]) == 0)
				return dns_resolve_main(argc, argv);
	}
	return control_cli_main(argc, argv);
}

static const struct command commands[] = {
	{ "queue", control_cli_main,
	  "queue list|show|summary|flush|delete|bounce|hold|release [ID] [--domain D] [--deferred|--held] [--top N] [--json]",
	  true },
	{ "domains", control_cli_main, "domains [--domain D] [--json]", true },
	{ "addresses", control_cli_main, "addresses [--json]", true },
	{ "stats", control_cli_main, "stats [--json]", true },
	{ "reload", control_cli_main, "reload", true },
	{ "resolve", run_resolve,
	  "resolve DOMAIN [--sender ADDR]   (the daemon's relayhost, routes, sender routes, nameservers)\n"
	  "  ringmailctl resolve [--offline] [--nameserver ADDR[:PORT]]... [--port N] [--ipv4|--ipv6|--both] [--timeout S] [--tries N]\n"
	  "                      [--route DOMAIN=TARGET]... [--relayhost TARGET] DOMAIN...   (offline)", true },
	{ "shaping", control_cli_main, "shaping status [--json] | shaping resume SITE|source:NAME|SITE/SOURCE", true },
	{ "cluster", control_cli_main, "cluster status [--json]   (Redis, this node, global rates, leases)", true },
	{ "suppression", suppression_cli_main,
	  "suppression list [ADDRESS] [--json] | add ADDRESS [--expire D] [--reason T] | remove ADDRESS\n"
	  "                      | export [FILE] | import FILE|-", true },
	{ "spool", run_spool, "spool dump [--json] SPOOL_DIR", false },
	{ "users", users_cli_main,
	  "users add|passwd|del|verify [--file PATH] [--scheme S] NAME | users check [--file PATH]", false },
	{ "dkim", dkim_cli_main,
	  "dkim keygen --domain D --selector S [--algorithm rsa|ed25519] [--bits N] --out FILE", false },
};

#define GLOBAL_MAX 4               /* --socket P --config F */

static void usage(FILE *out)
{
	fprintf(out, "usage: ringmailctl [GLOBAL OPTIONS] COMMAND [ARGS]\n"
		"\nglobal options (before or after the command; for the daemon's commands):\n"
		"  --socket PATH   the daemon's control socket\n"
		"  --config FILE   find it as control.socket in FILE (default "
		"/etc/ringmail/ringmail.conf, else the built-in default)\n"
		"  --help, --version\n"
		"\nthe running daemon, over its control socket:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (i > 0 && commands[i - 1].daemon && !commands[i].daemon)
			fprintf(out, "\nwithout the daemon:\n");
		fprintf(out, "  ringmailctl %s\n", commands[i].usage);
	}
}

/* global_option - is argv[i] a global option? *width: 2 for "--socket P",
 * 1 for "--socket=P". */
static bool global_option(char **argv, int argc, int i, int *width)
{
	static const char *const names[] = { "--socket", "--config" };

	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		size_t n = strlen(names[k]);
		if (strncmp(argv[i], names[k], n) != 0)
			continue;
		if (argv[i][n] == '=') {
			*width = 1;
			return true;
		}
		if (argv[i][n] == '\0' && i + 1 < argc) {
			*width = 2;
			return true;
		}
	}
	return false;
}

int main(int argc, char **argv)
{
	char *globals[GLOBAL_MAX];
	int nglobals = 0, first = 1, width;

	/* Global options before the command go after it, where the
	 * command's own parser (getopt) takes them. */
	while (first < argc && global_option(argv, argc, first, &width)) {
		if (nglobals + width > GLOBAL_MAX) {
			fprintf(stderr, "ringmailctl: --socket and --config, once each\n");
			return 2;
		}
		for (int k = 0; k < width; k++)
			globals[nglobals++] = argv[first + k];
		first += width;
	}
	if (first >= argc || strcmp(argv[first], "--help") == 0 || strcmp(argv[first], "-h") == 0) {
		usage(first >= argc ? stderr : stdout);
		return first >= argc ? 2 : 0;
	}
	if (strcmp(argv[first], "--version") == 0) {
		printf("ringmailctl %s\n", ringmail_version());
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[first], commands[i].name) != 0)
			continue;
		if (nglobals > 0 && !commands[i].daemon) {
			fprintf(stderr, "ringmailctl: %s does not talk to the daemon: no --socket or --config\n",
				commands[i].name);
			return 2;
		}
		int n = argc - first;
		char **args = calloc((size_t)(n + nglobals + 1), sizeof(*args));
		if (args == NULL) {
			fprintf(stderr, "ringmailctl: out of memory\n");
			return 1;
		}
		memcpy(args, argv + first, (size_t)n * sizeof(*args));
		memcpy(args + n, globals, (size_t)nglobals * sizeof(*args));
		int rc = commands[i].run(n + nglobals, args);
		free(args);
		return rc;
	}
	fprintf(stderr, "ringmailctl: unknown command \"%s\"\n", argv[first]);
	usage(stderr);
	return 2;
}
