/*
 * fuzz_smtp_reply - libFuzzer harness for the SMTP reply parser.
 *
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Irelay \
 *     tests/fuzz/fuzz_smtp_reply.c relay/smtp_reply.c relay/log.c -o fuzz_smtp_reply
 *   ./fuzz_smtp_reply -max_total_time=20 tests/fuzz/corpus/smtp_reply/
 *
 * The first byte picks the fragment size and the line limit, so that the
 * same replies are also fed in pieces; the checks are the parser's promises:
 * never consume more than given, a reply's text stays within its cap and
 * NUL-terminated, codes in range, errors sticky.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_reply_parser p;
	const struct smtp_reply *r;
	size_t frag, off = 1;

	if (size < 1)
		return 0;
	frag = (data[0] & 15) + 1;
	smtp_reply_parser_init(&p, (data[0] & 16) ? 64 : 0, (data[0] & 32) ? 3 : 0);
	while (off < size) {
		size_t n = size - off < frag ? size - off : frag;
		size_t used;
		int rc = smtp_reply_parse(&p, (const char *)data + off, n, &used, &r);
		if (used > n)
			abort();
		off += used;
		if (rc < 0) {
			if (smtp_reply_parse(&p, "250 ok\r\n", 8, &used, &r) != rc)
				abort();
			return 0;
		}
		if (rc == 1) {
			if (r->code < 200 || r->code > 599 || r->text_len > SMTP_REPLY_TEXT_MAX ||
			    strlen(r->text) > r->text_len || r->lines == 0 ||
			    strlen(r->enhanced) >= SMTP_REPLY_ENHANCED_MAX)
				abort();
			if (r->enhanced[0] != '\0' && r->enhanced[0] - '0' != r->code / 100)
				abort();
		} else if (used != n) {
			abort();
		}
	}
	return 0;
}
