/*
 * fuzz_mta_sts - libFuzzer harness for the MTA-STS policy parser, the
 * _mta-sts TXT record parser, the cache file parser and MX matching (what an untrusted HTTPS
 * server and DNS answer feed ringmaild).
 *
 *   tools/fuzz run 20 mta_sts
 *
 * The checks: a refusal always carries a reason; an accepted policy obeys
 * the header's promises (a mode, max_age capped, mx count bounded, each mx
 * a lower-case valid name or *.name that matches itself, or the name
 * under it); a record that parses has an id of 1 to 32 letters and digits.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mta_sts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_policy(const char *text, size_t len)
{
	struct mta_sts_policy p;
	const char *why = NULL;
	int rc = mta_sts_policy_parse(text, len, &p, &why);

	if (rc < 0) {
		if ((rc != -EINVAL && rc != -E2BIG) || why == NULL || why[0] == '\0')
			abort();
		return;
	}
	if (rc != 0 || p.max_age_s > MTA_STS_MAX_AGE_MAX || p.mx_count > MTA_STS_MX_MAX)
		abort();
	if (p.mode != MTA_STS_MODE_NONE && p.mx_count == 0)
		abort();
	for (size_t i = 0; i < p.mx_count; i++) {
		const char *mx = p.mx[i];
		const char *name = mx[0] == '*' ? mx + 2 : mx;
		if (!mta_sts_domain_valid(name, strlen(name)))
			abort();
		for (const char *c = mx; *c != '\0'; c++)
			if (*c >= 'A' && *c <= 'Z')
				abort();
		char host[MTA_STS_NAME_MAX + 8];
		if (mx[0] == '*') {
			host[0] = 'x';
			strcpy(host + 1, mx + 1);
			if (!mta_sts_policy_mx_allowed(&p, host) || mta_sts_mx_match(mx, name))
				abort();
		} else if (!mta_sts_mx_match(mx, mx)) {
			abort();
		}
	}
}

static void check_record(const char *txt, size_t len)
{
	char id[MTA_STS_ID_MAX + 1];
	const char *why = NULL;
	int rc = mta_sts_record_parse(txt, len, id, &why);

	if (rc < 0 && (rc != -EINVAL || why == NULL))
		abort();
	if (rc > 0) {
		size_t n = strlen(id);
		if (n == 0 || n > MTA_STS_ID_MAX)
			abort();
	}
	const char *txts[1] = {txt};
	size_t lens[1] = {len};
	if (mta_sts_record_select(txts, lens, 1, id, &why) != rc)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The first byte picks the target so that one corpus serves both. */
	if (size == 0)
		return 0;
	const char *text = (const char *)data + 1;
	if (data[0] & 2) {
		struct mta_sts_cached c;
		const char *why = NULL;
		if (mta_sts_cache_parse(text, size - 1, &c, &why) < 0 && why == NULL)
			abort();
	} else if (data[0] & 1)
		check_record(text, size - 1);
	else
		check_policy(text, size - 1);
	return 0;
}
