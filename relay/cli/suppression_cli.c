/*
 * suppression_cli - ringmailctl suppression; see suppression_cli.h.
 */
#include "suppression_cli.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "control.h"
#include "control_cli.h"

static int usage(void)
{
	fprintf(stderr,
		"usage: ringmailctl suppression list [ADDRESS] [--json]\n"
		"       ringmailctl suppression add ADDRESS [--expire DURATION] [--reason TEXT]\n"
		"       ringmailctl suppression remove ADDRESS\n"
		"       ringmailctl suppression export [FILE]\n"
		"       ringmailctl suppression import FILE|-\n"
		"  every command: [--socket PATH | --config FILE]\n");
	return 2;
}

/* parse_expire - "3600", "30m", "12h", "90d" into seconds; -1 if bad. */
static int64_t parse_expire(const char *text)
{
	char *end;
	long long v = strtoll(text, &end, 10);
	int64_t unit = strcmp(end, "") == 0 || strcmp(end, "s") == 0 ? 1 : strcmp(end, "m") == 0 ? 60 :
		       strcmp(end, "h") == 0 ? 3600 : strcmp(end, "d") == 0 ? 86400 : 0;

	if (end == text || v <= 0 || unit == 0 || v > INT64_MAX / unit / 2)
		return -1;
	return (int64_t)v * unit;
}

int suppression_cli_main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "config", required_argument, NULL, 'c' },
		{ "expire", required_argument, NULL, 'e' },
		{ "reason", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock = NULL, *cfg_path = NULL, *reason = "";
	int64_t expire = 0;
	bool json = false;
	char line[CONTROL_MAX_LINE + 1], path[256];
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "s:c:h", options, NULL)) != -1) {
		switch (opt) {
		case 's': sock = optarg; break;
		case 'c': cfg_path = optarg; break;
		case 'e':
			if ((expire = parse_expire(optarg)) < 0) {
				fprintf(stderr, "ringmailctl: --expire: \"%s\" is not a duration (3600, 30m, 12h, 90d)\n", optarg);
				return 2;
			}
			break;
		case 'r': reason = optarg; break;
		case 'j': json = true; break;
		default: return usage();
		}
	}
	int n = argc - optind;
	if (n < 1)
		return usage();
	const char *verb = argv[optind], *arg = n > 1 ? argv[optind + 1] : NULL;
	FILE *body = NULL, *out = NULL;
	if (n > 2 || ((strcmp(verb, "add") == 0 || strcmp(verb, "remove") == 0 || strcmp(verb, "import") == 0) &&
		      arg == NULL))
		return usage();
	if (strcmp(verb, "add") == 0) {
		if (strchr(reason, '\n') != NULL)
			return usage();
		snprintf(line, sizeof(line), "suppression add %s %lld %s", arg,
			 expire > 0 ? (long long)(time(NULL) + expire) : 0LL, reason);
	} else if (strcmp(verb, "list") == 0) {
		snprintf(line, sizeof(line), "%ssuppression list%s%s", json ? "json " : "", arg ? " " : "",
			 arg ? arg : "");
	} else if (strcmp(verb, "remove") == 0) {
		snprintf(line, sizeof(line), "suppression remove %s", arg);
	} else if (strcmp(verb, "export") == 0) {
		snprintf(line, sizeof(line), "suppression export");
		if (arg != NULL && (out = fopen(arg, "w")) == NULL) {
			perror(arg);
			return 1;
		}
	} else if (strcmp(verb, "import") == 0) {
		snprintf(line, sizeof(line), "suppression import");
		body = strcmp(arg, "-") == 0 ? stdin : fopen(arg, "r");
		if (body == NULL) {
			perror(arg);
			return 1;
		}
	} else {
		return usage();
	}
	struct control_request req;
	char err[300];
	if (control_parse(line, &req, err, sizeof(err)) < 0) {
		fprintf(stderr, "ringmailctl: %s\n", err);
		return usage();
	}
	if (control_cli_socket(sock, cfg_path, path, sizeof(path)) < 0)
		return 1;
	if (out != NULL && freopen(arg, "w", stdout) == NULL) {
		perror(arg);
		return 1;
	}
	if (out != NULL)
		fclose(out);
	int rc = control_cli_send(path, line, body);
	if (body != NULL && body != stdin)
		fclose(body);
	return rc;
}
