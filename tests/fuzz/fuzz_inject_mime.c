/*
 * fuzz_inject_mime - libFuzzer harness for the JSON-to-MIME path of the
 * HTTP API: inject_request_parse, then, for each recipient (its own
 * substitutions), mime_build or, for raw content, inject_substitute and
 * inject_message_normalize (relay/mail/inject_request.h, mime_build.h,
 * inject_message.h).
 *
 *   tools/fuzz build && tools/fuzz run 60 inject_mime
 *
 * Invariants checked on every input:
 *   - a refused request says why and returns no request;
 *   - a built message is CRLF only (no bare CR or LF), has no NUL, and
 *     every line is at most 998 octets (RFC 5322 2.1.1);
 *   - a normalized raw message is CRLF only and ends in CRLF;
 *   - the size cap holds: nothing grows past the buffer's max.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inject_message.h"
#include "inject_request.h"
#include "mime_build.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_crlf(const char *s, size_t n, size_t line_max)
{
	size_t col = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\0')
			abort();
		if (s[i] == '\r') {
			if (i + 1 >= n || s[i + 1] != '\n')
				abort();
			continue;
		}
		if (s[i] == '\n') {
			if (i == 0 || s[i - 1] != '\r')
				abort();
			col = 0;
			continue;
		}
		if (++col > line_max)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct inject_request *q = NULL;
	char why[256] = "";

	if (inject_request_parse((const char *)data, size, 50, &q, why, sizeof(why)) < 0) {
		if (q != NULL || why[0] == '\0')
			abort();
		return 0;
	}
	for (size_t i = 0; i < q->recipient_count && i < 4; i++) {
		const struct inject_recipient *r = &q->recipients[i];
		struct buf out;
		buf_init(&out, 1 << 20);
		if (q->raw) {
			struct buf text;
			buf_init(&text, 1 << 20);
			if (inject_substitute(q->raw_content, q->raw_len, r->subs, r->sub_count, q->subs, q->sub_count,
					      &text) == 0 &&
			    inject_message_normalize(buf_data(&text), buf_len(&text), 100000, &out) == 0) {
				check_crlf(buf_data(&out), buf_len(&out), 100000);
				if (buf_len(&out) < 2 || memcmp(buf_data(&out) + buf_len(&out) - 2, "\r\n", 2) != 0)
					abort();
			}
			buf_free(&text);
		} else {
			struct mime_build_params p = { "relay.test", 1796400000, "QID", "a@b" };
			int rc = mime_build(&q->content, &p, r->subs, r->sub_count, q->subs, q->sub_count, &out);
			if (rc == 0)
				check_crlf(buf_data(&out), buf_len(&out), 998);
			else if (rc != -ENOBUFS && rc != -EINVAL)
				abort();
		}
		if (buf_len(&out) > out.max)
			abort();
		buf_free(&out);
	}
	inject_request_free(q);
	return 0;
}
