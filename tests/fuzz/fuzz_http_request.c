/*
 * fuzz_http_request - libFuzzer harness for the HTTP request glue
 * (relay/mail/http_request.h) over http-parser, and the bearer token
 * reader.
 *
 *   tools/fuzz build && tools/fuzz run 60 http_request
 *
 * Byte 0 picks the feed size (1..256 octets at a time, so requests split
 * anywhere); the rest is a connection's input, fed request after request
 * as the server does (reset after each complete one).
 * Invariants checked on every input:
 *   - a feed never reports more than it was given, and progress or a
 *     final state is made (no spinning);
 *   - an error has a 4xx/5xx status and a text;
 *   - a complete request's body is within the limit and the target
 *     within HTTP_REQUEST_TARGET_MAX.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_request.h"
#include "http_tokens.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct http_request_limits limits = { 2048, 4096 };

	if (size < 1)
		return 0;
	size_t step = (size_t)data[0] + 1;
	const char *in = (const char *)data + 1;
	size_t len = size - 1, pos = 0;
	struct http_request *r = http_request_new(&limits);

	while (pos < len) {
		size_t n = len - pos < step ? len - pos : step;
		size_t used = http_request_feed(r, in + pos, n);
		if (used > n)
			abort();
		pos += used;
		enum http_request_state s = http_request_state(r);
		if (s == HTTP_REQUEST_ERROR) {
			int status = http_request_error_status(r);
			if (status < 400 || status > 599 || http_request_error_text(r)[0] == '\0')
				abort();
			break;
		}
		if (s == HTTP_REQUEST_COMPLETE) {
			size_t body_len;
			http_request_body(r, &body_len);
			if (body_len > limits.body_max || strlen(http_request_target(r)) > HTTP_REQUEST_TARGET_MAX)
				abort();
			size_t tlen;
			http_bearer_token(http_request_authorization(r), &tlen);
			http_request_reset(r);
			continue;
		}
		if (used < n)
			abort();        /* neither done nor failed, yet input was left */
	}
	http_request_free(r);
	return 0;
}
