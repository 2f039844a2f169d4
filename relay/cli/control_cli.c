/*
 * control_cli - ringmailctl's daemon commands; see control_cli.h.
 */
#include "control_cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "control.h"

static int usage(void)
{
	fprintf(stderr,
		"usage: ringmailctl queue list [--domain D] [--deferred|--held] [--json]\n"
		"       ringmailctl queue show ID [--json]\n"
		"       ringmailctl queue summary [--top N] [--domain D] [--deferred|--held] [--json]\n"
		"       ringmailctl queue flush [DOMAIN]\n"
		"       ringmailctl queue delete|bounce|hold|release ID | --domain D\n"
		"       ringmailctl domains [--domain D] [--json]\n"
		"       ringmailctl stats [--json]\n"
		"       ringmailctl reload\n"
		"  every command: [--socket PATH | --config FILE]\n");
	return 2;
}

/* socket_path - --socket, or the config's control.socket. */
static int socket_path(const char *sock, const char *cfg_path, char *out, size_t size)
{
	struct config *cfg;
	char err[512];

	if (sock != NULL) {
		snprintf(out, size, "%s", sock);
		return 0;
	}
	if (cfg_path == NULL && access(CONTROL_CLI_DEFAULT_CONFIG, R_OK) == 0)
		cfg_path = CONTROL_CLI_DEFAULT_CONFIG;
	if (config_load(cfg_path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "ringmailctl: %s\n", err);
		return -1;
	}
	int rc = config_control_path(cfg, out, size);
	config_free(cfg);
	if (rc < 0)
		fprintf(stderr, "ringmailctl: %s\n",
			rc == -ENOENT ? "control.socket is \"\": the daemon has no control socket" : strerror(-rc));
	return rc < 0 ? -1 : 0;
}

/* put - append to the request line. */
static bool put(char *line, size_t size, const char *word)
{
	size_t len = strlen(line);
	int n = snprintf(line + len, size - len, "%s%s", len ? " " : "", word);
	return n >= 0 && (size_t)n < size - len;
}

/* status_line - the daemon's last line, "-- ok[ TEXT]" or "-- error TEXT"
 * (without its newline): TEXT to stderr; the exit status. */
static int status_line(const char *line)
{
	fflush(stdout);
	if (strncmp(line + 3, "ok", 2) == 0) {
		if (line[5] == ' ')
			fprintf(stderr, "%s\n", line + 6);
		return 0;
	}
	fprintf(stderr, "ringmailctl: %s\n", strncmp(line + 3, "error ", 6) == 0 ? line + 9 : line + 3);
	return 1;
}

/* relay_answer - rows to stdout as they come, whole lines at a time; the
 * last line judged. */
static int relay_answer(int fd)
{
	static char buf[1 << 17];
	size_t have = 0;           /* bytes of buf not passed on: a partial line */
	bool continued = false;    /* buf starts in the middle of a long row */
	ssize_t n;

	while ((n = read(fd, buf + have, sizeof(buf) - have)) > 0) {
		size_t done = 0;
		char *nl;
		have += (size_t)n;
		while ((nl = memchr(buf + done, '\n', have - done)) != NULL) {
			char *line = buf + done;
			if (!continued && nl - line >= 3 && memcmp(line, "-- ", 3) == 0) {
				fwrite(buf, 1, done, stdout);
				*nl = '\0';
				return status_line(line);
			}
			continued = false;
			done = (size_t)(nl + 1 - buf);
		}
		if (done == 0 && have == sizeof(buf)) {
			/* A row longer than buf: data; pass on what there is. */
			done = have;
			continued = true;
		}
		fwrite(buf, 1, done, stdout);
		memmove(buf, buf + done, have - done);
		have -= done;
	}
	fflush(stdout);
	fprintf(stderr, "ringmailctl: the daemon closed the connection without an answer\n");
	return 1;
}

/* send_all - the whole buffer to fd; false (said) on failure. A daemon
 * that stopped reading (it refused an import's line) has its answer
 * waiting: EPIPE is not said, the caller reads the answer. */
static bool send_all(int fd, const char *path, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0) {
			if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
				return false;
			fprintf(stderr, "ringmailctl: %s: %s\n", path, strerror(errno));
			return false;
		}
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* send_body - body's lines after the request, then the "." that ends
 * them (a line "." of the body itself cannot occur in CSV). */
static bool send_body(int fd, const char *path, FILE *body)
{
	char chunk[1 << 16];
	size_t n;
	bool newline = true;

	while ((n = fread(chunk, 1, sizeof(chunk), body)) > 0) {
		if (!send_all(fd, path, chunk, n))
			return false;
		newline = chunk[n - 1] == '\n';
	}
	return send_all(fd, path, newline ? ".\n" : "\n.\n", newline ? 2 : 3);
}

/* control_request - send line (and body's lines, unless NULL) to the
 * daemon, relay its answer. */
static int control_request(const char *path, const char *line, FILE *body)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "ringmailctl: %s: %s\n", path, fd < 0 ? strerror(errno) : "path too long");
		if (fd >= 0)
			close(fd);
		return 1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		fprintf(stderr, "ringmailctl: cannot reach the daemon at %s: %s\n", path, strerror(errno));
		close(fd);
		return 1;
	}
	char req[CONTROL_MAX_LINE + 2];
	snprintf(req, sizeof(req), "%s\n", line);
	size_t off = 0, len = strlen(req);
	while (off < len) {
		ssize_t n = write(fd, req + off, len - off);
		if (n <= 0) {
			fprintf(stderr, "ringmailctl: %s: %s\n", path, strerror(errno));
			close(fd);
			return 1;
		}
		off += (size_t)n;
	}
	if (body != NULL && !send_body(fd, path, body) && errno != EPIPE && errno != ECONNRESET) {
		close(fd);
		return 1;
	}
	int rc = relay_answer(fd);
	close(fd);
	return rc;
}

int control_cli_socket(const char *sock, const char *cfg_path, char *out, size_t size)
{
	return socket_path(sock, cfg_path, out, size);
}

int control_cli_send(const char *path, const char *line, FILE *body)
{
	return control_request(path, line, body);
}

int control_cli_main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "config", required_argument, NULL, 'c' },
		{ "domain", required_argument, NULL, 'd' },
		{ "deferred", no_argument, NULL, 'D' },
		{ "held", no_argument, NULL, 'H' },
		{ "json", no_argument, NULL, 'j' },
		{ "sender", required_argument, NULL, 'S' },
		{ "top", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock = NULL, *cfg_path = NULL, *domain = NULL, *sender = NULL, *top = NULL;
	bool deferred = false, held = false, json = false;
	char line[CONTROL_MAX_LINE + 1] = "", word[300], path[256];
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "s:c:d:h", options, NULL)) != -1) {
		switch (opt) {
		case 's': sock = optarg; break;
		case 'c': cfg_path = optarg; break;
		case 'd': domain = optarg; break;
		case 'D': deferred = true; break;
		case 'H': held = true; break;
		case 'j': json = true; break;
		case 'S': sender = optarg; break;
		case 'T': top = optarg; break;
		default: return usage();
		}
	}
	if (json && !put(line, sizeof(line), "json"))
		return usage();
	put(line, sizeof(line), argv[0]);
	for (int i = optind; i < argc; i++) {
		/* queue flush DOMAIN: the one positional domain */
		bool flush_domain = strcmp(argv[0], "queue") == 0 && i == optind + 1 &&
				    strcmp(argv[optind], "flush") == 0;
		snprintf(word, sizeof(word), flush_domain ? "domain=%s" : "%s", argv[i]);
		if (strchr(argv[i], ' ') != NULL || !put(line, sizeof(line), word))
			return usage();
	}
	if (domain != NULL) {
		snprintf(word, sizeof(word), "domain=%s", domain);
		if (strchr(domain, ' ') != NULL || !put(line, sizeof(line), word))
			return usage();
	}
	if (sender != NULL) {
		snprintf(word, sizeof(word), "sender=%s", sender);
		if (strchr(sender, ' ') != NULL || !put(line, sizeof(line), word))
			return usage();
	}
	if (top != NULL) {
		snprintf(word, sizeof(word), "top=%s", top);
		if (strchr(top, ' ') != NULL || !put(line, sizeof(line), word))
			return usage();
	}
	if ((deferred && !put(line, sizeof(line), "deferred")) || (held && !put(line, sizeof(line), "held")))
		return usage();
	/* The daemon checks the words; check here too, for a usage error
	 * without a daemon. */
	struct control_request req;
	char err[300];
	if (control_parse(line, &req, err, sizeof(err)) < 0) {
		fprintf(stderr, "ringmailctl: %s\n", err);
		return usage();
	}
	if (socket_path(sock, cfg_path, path, sizeof(path)) < 0)
		return 1;
	return control_request(path, line, NULL);
}
