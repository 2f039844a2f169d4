/*
 * fuzz_sasl - libFuzzer harness for the AUTH PLAIN / LOGIN decoders.
 *
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Irelay \
 *     tests/fuzz/fuzz_sasl.c relay/sasl.c -lmbedcrypto -o fuzz_sasl
 *   ./fuzz_sasl -max_total_time=20 tests/fuzz/corpus/sasl/
 *
 * The first byte picks the mechanism and whether the first line is an
 * initial response; the rest is split into lines at '\n'. The checks are
 * the decoder's promises: a result's user and password are non-empty,
 * within their caps and NUL-terminated; a challenge is only ever one of
 * the three known ones; after DONE or ERROR a step is a STATE error.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct sasl_result *r)
{
	if (r->status == SASL_DONE) {
		size_t u = strlen(r->user), p = strlen(r->password);
		if (u == 0 || u > SASL_USER_MAX || p == 0 || p > SASL_PASSWORD_MAX)
			abort();
	} else if (r->status == SASL_NEED_MORE) {
		if (strcmp(r->challenge, "") != 0 && strcmp(r->challenge, "VXNlcm5hbWU6") != 0 &&
		    strcmp(r->challenge, "UGFzc3dvcmQ6") != 0)
			abort();
	} else if (r->reason == NULL || r->error == SASL_ERR_NONE) {
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sasl_session s;
	struct sasl_result r;
	char line[SASL_LINE_MAX + 64];
	size_t off = 1;

	if (size < 1)
		return 0;
	const char *mech = (data[0] & 1) ? "LOGIN" : "PLAIN";
	bool initial = data[0] & 2;
	bool first = true;
	r = sasl_start(&s, mech, NULL);
	while (off <= size) {
		const uint8_t *nl = memchr(data + off, '\n', size - off);
		size_t n = (nl ? (size_t)(nl - data) : size) - off;
		if (n >= sizeof(line))
			n = sizeof(line) - 1;
		memcpy(line, data + off, n);
		line[n] = '\0';
		if (first && initial) {
			/* the initial response is a C string: stop at a NUL */
			r = sasl_start(&s, mech, line);
		} else {
			enum sasl_status before = r.status;
			r = sasl_step(&s, line, n);
			if (before != SASL_NEED_MORE && (r.status != SASL_ERROR || r.error != SASL_ERR_STATE))
				abort();
		}
		first = false;
		check(&r);
		if (nl == NULL)
			break;
		off = (size_t)(nl - data) + 1;
	}
	sasl_reset(&s);
	return 0;
}
