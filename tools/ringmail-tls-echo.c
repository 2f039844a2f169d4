/*
 * ringmail-tls-echo - a test server for relay/daemon/tls.c: echoes every line it
 * receives over TLS, one connection at a time, with blocking sockets. It
 * shows the memory-bio contract with real peers (openssl s_client).
 *
 *   ringmail-tls-echo --cert C --key K [--port N] [--starttls] [--connections N]
 *
 * It prints "port=N" on stdout once listening (port 0 picks one) and, for
 * each handshake, "event=tls protocol=... cipher=... resumed=0|1" on stderr.
 * --starttls speaks just enough SMTP for "openssl s_client -starttls smtp":
 * 220 greeting, EHLO offers STARTTLS, STARTTLS answers 220 and starts TLS.
 * Plaintext that arrived after STARTTLS is discarded, never executed, and
 * the count goes to stderr as "event=starttls discarded=N" (CVE-2011-0411).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tls.h"

struct echo {
	int fd;
	struct tls_session *s;
	int logged;
	char line[4096];	/* plaintext not yet echoed (no newline yet) */
	size_t line_len;
};

/* send_all - blocking send; 0 or -1. */
static int send_all(int fd, const void *p, size_t len)
{
	const char *c = p;

	while (len > 0) {
		ssize_t n = send(fd, c, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		c += n;
		len -= (size_t)n;
	}
	return 0;
}

/* flush - what the ring would do: send the pending ciphertext. */
static int flush(struct echo *e)
{
	size_t len;
	const void *p = tls_pending_ciphertext(e->s, &len);

	if (len == 0)
		return 0;
	if (send_all(e->fd, p, len) < 0)
		return -1;
	tls_ciphertext_consumed(e->s, len);
	return 0;
}

/* echo_write - encrypt all of p, flushing whenever the output fills. */
static int echo_write(struct echo *e, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = tls_write(e->s, p, len);
		if (n == TLS_WANT_WRITE) {
			if (flush(e) < 0)
				return -1;
			continue;
		}
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return flush(e);
}

/* echo_plaintext - echo complete lines; keep a partial one for later. */
static int echo_plaintext(struct echo *e, const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (e->line_len < sizeof e->line)
			e->line[e->line_len++] = p[i];
		if (p[i] == '\n' || e->line_len == sizeof e->line) {
			if (echo_write(e, e->line, e->line_len) < 0)
				return -1;
			e->line_len = 0;
		}
	}
	return 0;
}

/* echo_drive - after new input: handshake, read and echo. 1 to go on,
 * 0 when the peer closed, -1 on an error. */
static int echo_drive(struct echo *e)
{
	char buf[4096];
	ssize_t n = TLS_WANT_READ;
	int r = tls_handshake(e->s);

	if (r == 0 && !e->logged) {
		struct tls_info info;
		tls_session_info(e->s, &info);
		fprintf(stderr, "event=tls protocol=%s cipher=%s resumed=%d\n",
			info.protocol, info.cipher, info.resumed);
		e->logged = 1;
	}
	if (r != 0 && r != TLS_WANT_READ && r != TLS_WANT_WRITE) {
		fprintf(stderr, "event=tls error=\"%s\"\n", tls_strerror(e->s));
		flush(e);	/* the alert, if any */
		return -1;
	}
	while (r == 0 && (n = tls_read(e->s, buf, sizeof buf)) > 0)
		if (echo_plaintext(e, buf, (size_t)n) < 0)
			return -1;
	if (r == 0 && n == 0) {	/* close_notify: answer it */
		tls_close_notify(e->s);
		flush(e);
		return 0;
	}
	if (r == 0 && n != TLS_WANT_READ && n != TLS_WANT_WRITE) {
		fprintf(stderr, "event=tls error=\"%s\"\n", tls_strerror(e->s));
		return -1;
	}
	return flush(e) < 0 ? -1 : 1;
}

/* serve_tls - the TLS phase of one connection: only bytes received from
 * now on are fed to the session. */
static void serve_tls(int fd, struct tls_config *cfg)
{
	struct echo e = { .fd = fd };
	char buf[16384];
	int r;

	e.s = tls_session_new(cfg, TLS_VERIFY_NONE, NULL);
	while ((r = echo_drive(&e)) > 0) {
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (tls_feed_ciphertext(e.s, buf, (size_t)n) < 0)
			break;
	}
	tls_session_free(e.s);
}

/* starttls_dialog - cleartext SMTP up to STARTTLS. 1 when TLS should
 * start (everything received after the STARTTLS line is dropped). */
static int starttls_dialog(int fd)
{
	char buf[4096];
	size_t len = 0;

	if (send_all(fd, "220 echo ESMTP\r\n", 16) < 0)
		return 0;
	for (;;) {
		char *nl;
		while ((nl = memchr(buf, '\n', len)) != NULL) {
			size_t line = (size_t)(nl - buf) + 1;
			const char *reply = "500 5.5.1 only EHLO, STARTTLS, QUIT\r\n";
			int starttls = strncasecmp(buf, "STARTTLS", 8) == 0;
			int quit = strncasecmp(buf, "QUIT", 4) == 0;
			if (strncasecmp(buf, "EHLO", 4) == 0)
				reply = "250-echo\r\n250 STARTTLS\r\n";
			else if (starttls)
				reply = "220 2.0.0 Ready to start TLS\r\n";
			else if (quit)
				reply = "221 2.0.0 bye\r\n";
			if (send_all(fd, reply, strlen(reply)) < 0 || quit)
				return 0;
			memmove(buf, buf + line, len - line);
			len -= line;
			if (starttls) {
				fprintf(stderr, "event=starttls discarded=%zu\n", len);
				return 1;
			}
		}
		if (len == sizeof buf)
			return 0;
		ssize_t n = recv(fd, buf + len, sizeof buf - len, 0);
		if (n <= 0)
			return 0;
		len += (size_t)n;
	}
}

static int listen_on(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	socklen_t salen = sizeof sa;
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &salen) < 0) {
		perror("ringmail-tls-echo: listen");
		exit(1);
	}
	printf("port=%d\n", ntohs(sa.sin_port));
	fflush(stdout);
	return fd;
}

int main(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL;
	int port = 0, starttls = 0, connections = -1;
	char err[256];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--starttls") == 0)
			starttls = 1;
		else if (i + 1 < argc && strcmp(argv[i], "--cert") == 0)
			cert = argv[++i];
		else if (i + 1 < argc && strcmp(argv[i], "--key") == 0)
			key = argv[++i];
		else if (i + 1 < argc && strcmp(argv[i], "--port") == 0)
			port = atoi(argv[++i]);
		else if (i + 1 < argc && strcmp(argv[i], "--connections") == 0)
			connections = atoi(argv[++i]);
		else
			cert = NULL, i = argc;
	}
	if (cert == NULL || key == NULL) {
		fprintf(stderr, "usage: ringmail-tls-echo --cert C --key K [--port N] "
			"[--starttls] [--connections N]\n");
		return 2;
	}
	struct tls_config *cfg = tls_config_new_server(cert, key, NULL, err, sizeof err);
	if (cfg == NULL) {
		fprintf(stderr, "ringmail-tls-echo: %s\n", err);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	int lfd = listen_on(port);
	for (int done = 0; connections < 0 || done < connections; done++) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			continue;
		if (!starttls || starttls_dialog(fd))
			serve_tls(fd, cfg);
		close(fd);
	}
	close(lfd);
	tls_config_free(cfg);
	return 0;
}
