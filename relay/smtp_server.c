/*
 * smtp_server - greeting and QUIT only; the full session lands with the
 * inbound SMTP issue.
 */
#include "smtp_server.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static void smtp_open(struct conn *c)
{
	char line[300];
	int n = snprintf(line, sizeof(line), "220 %s ESMTP ringmail\r\n", c->w->cfg->hostname);
	conn_write(c, line, (size_t)n);
	conn_set_phase_timer(c, WORKER_TIMER_SMTP_COMMAND);
}

static size_t smtp_input(struct conn *c, const char *data, size_t len)
{
	const char *eol = memchr(data, '\n', len);
	if (eol == NULL)
		return 0;
	size_t n = (size_t)(eol - data) + 1;
	if (n >= 4 && strncasecmp(data, "QUIT", 4) == 0) {
		conn_write(c, "221 2.0.0 Bye\r\n", 15);
		conn_close_after_flush(c);
	} else {
		conn_write(c, "502 5.5.1 Not implemented\r\n", 27);
	}
	conn_set_phase_timer(c, WORKER_TIMER_SMTP_COMMAND);
	return n;
}

static void smtp_timeout(struct conn *c, enum worker_timer_class cls)
{
	conn_write(c, "421 4.4.2 Timeout, closing connection\r\n", 39);
	conn_close_after_flush(c);
}

static void smtp_shutdown(struct conn *c)
{
	conn_write(c, "421 4.3.2 Shutting down\r\n", 25);
	conn_close_after_flush(c);
}

const struct conn_handler smtp_server_handler = {
	.name = "smtp",
	.open = smtp_open,
	.input = smtp_input,
	.timeout = smtp_timeout,
	.shutdown = smtp_shutdown,
};

void smtp_server_worker_init(struct worker *w) { (void)w; }
void smtp_server_worker_exit(struct worker *w) { (void)w; }
