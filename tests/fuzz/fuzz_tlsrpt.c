/*
 * fuzz_tlsrpt - libFuzzer harness for the _smtp._tls TXT record parser
 * (what an untrusted DNS answer feeds ringmaild's TLS-RPT reporter) and
 * the reporter's state file reader.
 *
 *   tools/fuzz run 20 tlsrpt
 *
 * The checks: a refusal always carries a reason; a record that parses
 * keeps at most TLSRPT_RUA_MAX URIs, each mailto: with one address or
 * https://host; selecting the one record gives the same answer; a state
 * file that loads writes back to a form that loads to the same text.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tlsrpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_record(const char *txt, size_t len)
{
	struct tlsrpt_rua rua, again;
	const char *why = NULL;
	int rc = tlsrpt_record_parse(txt, len, &rua, &why);

	if (rc < 0 && (rc != -EINVAL || why == NULL || why[0] == '\0'))
		abort();
	if (rc > 0) {
		if (rua.count > TLSRPT_RUA_MAX)
			abort();
		for (size_t i = 0; i < rua.count; i++) {
			char addr[TLSRPT_URI_MAX + 1];
			if (strlen(rua.uri[i]) > TLSRPT_URI_MAX)
				abort();
			if (strncasecmp(rua.uri[i], "mailto:", 7) == 0) {
				if (tlsrpt_mailto_address(rua.uri[i], addr, sizeof(addr)) != 0 || strchr(addr, '@') == NULL)
					abort();
			} else if (strncasecmp(rua.uri[i], "https://", 8) != 0) {
				abort();
			}
		}
	}
	const char *txts[1] = { txt };
	size_t lens[1] = { len };
	if (tlsrpt_record_select(txts, lens, 1, &again, &why) != rc)
		abort();
	if (rc > 0 && memcmp(&rua, &again, sizeof(rua)) != 0)
		abort();
}

static void check_state(const char *text, size_t len)
{
	json_error_t err;
	json_t *j = json_loadb(text, len, 0, &err);
	const char *why = NULL;

	if (j == NULL)
		return;
	struct tlsrpt_period *p = tlsrpt_period_from_json(j, &why);
	json_decref(j);
	if (p == NULL) {
		if (why == NULL)
			abort();
		return;
	}
	json_t *out = tlsrpt_period_to_json(p);
	char *once = json_dumps(out, JSON_COMPACT);
	struct tlsrpt_period *q = tlsrpt_period_from_json(out, &why);
	if (q == NULL)
		abort();
	json_t *out2 = tlsrpt_period_to_json(q);
	char *twice = json_dumps(out2, JSON_COMPACT);
	if (once == NULL || twice == NULL || strcmp(once, twice) != 0)
		abort();
	free(once);
	free(twice);
	json_decref(out);
	json_decref(out2);
	tlsrpt_period_free(q);
	tlsrpt_period_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The first byte picks the target so that one corpus serves both. */
	if (size == 0)
		return 0;
	if (data[0] & 1)
		check_state((const char *)data + 1, size - 1);
	else
		check_record((const char *)data + 1, size - 1);
	return 0;
}
