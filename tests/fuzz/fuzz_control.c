/*
 * fuzz_control - libFuzzer harness for the control socket's request parser
 * (relay/control.h) and the JSON rows of the queue commands
 * (relay/queue_format.h), whose strings come from mail senders.
 *
 *   tools/fuzz build && tools/fuzz run 60 control
 *
 * The input (up to its first NUL) is a request line. Invariants:
 *   - control_parse either fails with a message or fills a request whose
 *     strings are NUL-terminated, whose domain has no upper case and no
 *     blank, whose queue ID is printable ASCII, that never asks for both
 *     deferred and held, and whose action fits its command;
 *   - the input as a sender, domain and last error in a JSON item row gives
 *     one line: no control byte but the final newline, starting with '{'
 *     and ending with "}\n".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "control.h"
#include "queue_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_request(const struct control_request *r)
{
	if (memchr(r->queue_id, '\0', sizeof(r->queue_id)) == NULL ||
	    memchr(r->domain, '\0', sizeof(r->domain)) == NULL)
		abort();
	for (const char *p = r->domain; *p; p++)
		if ((*p >= 'A' && *p <= 'Z') || *p == ' ' || *p == '\t')
			abort();
	for (const char *p = r->queue_id; *p; p++)
		if (*p <= ' ' || *p > '~')
			abort();
	if (r->deferred_only && r->held_only)
		abort();
	if (r->command == CONTROL_DOMAINS && r->action != QUEUE_DOMAINS && r->action != QUEUE_ADDRESSES)
		abort();
	if (r->action == QUEUE_ADDRESSES && (r->command != CONTROL_DOMAINS || r->domain[0] != '\0'))
		abort();
	if (r->command == CONTROL_QUEUE && r->action == QUEUE_SHOW && r->queue_id[0] == '\0')
		abort();
}

static void check_json_row(const char *s)
{
	const char *rcpts[] = { s, "b@example.org" };
	struct buf b;

	buf_init(&b, 1 << 20);
	int rc = queue_format_item(&b, true, &(struct queue_item_view){
		.queue_id = "0ABC", .sender = s, .domain = s, .state = "deferred",
		.arrival_ms = 1763900000000, .size = 10, .rcpts = rcpts, .rcpt_count = 2,
		.attempts = 1, .next_ms = 0, .last_error = s,
	});
	if (rc == 0) {
		const char *d = buf_data(&b);
		size_t n = buf_len(&b);
		if (n < 3 || d[0] != '{' || d[n - 2] != '}' || d[n - 1] != '\n')
			abort();
		for (size_t i = 0; i + 1 < n; i++)
			if ((unsigned char)d[i] < 0x20)
				abort();
	}
	buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = malloc(size + 1);
	struct control_request req;
	char err[300];

	if (line == NULL)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	err[0] = '\0';
	if (control_parse(line, &req, err, sizeof(err)) == 0)
		check_request(&req);
	else if (err[0] == '\0')
		abort();                       /* a refusal always says why */
	check_json_row(line);
	free(line);
	return 0;
}
