/*
 * fuzz_suppression - libFuzzer harness for the suppression list's CSV
 * (what ringmailctl suppression import feeds the control socket) and its
 * data structures.
 *
 *   tools/fuzz run 20 suppression
 *
 * The checks: every line either parses or is refused with a reason; a
 * parsed entry that the list takes is found in the next snapshot under
 * its address in any case, and formats back to a line that parses to the
 * same entry.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "suppression.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct suppression_list *l = suppression_list_new();
	const char *p = (const char *)data, *end = p + size;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		char line[SUPPRESSION_LINE_MAX + 1];
		if (n <= SUPPRESSION_LINE_MAX && memchr(p, '\0', n) == NULL) {
			memcpy(line, p, n);
			line[n] = '\0';
			struct suppression_entry e;
			const char *why = NULL;
			int rc = suppression_csv_parse(line, &e, &why);
			if (rc < 0 && (why == NULL || why[0] == '\0'))
				abort();
			if (rc == 0 && suppression_list_add(l, e.address, e.created_s, e.expires_s, e.reason) == 0) {
				struct suppression_snapshot *s = suppression_snapshot_build(l, 1);
				const struct suppression_entry *got = suppression_snapshot_find(s, e.address, 0);
				if (e.expires_s == 0 && (got == NULL || strcasecmp(got->address, e.address) != 0))
					abort();
				if (got != NULL) {
					char out[SUPPRESSION_LINE_MAX + 8];
					size_t len = suppression_csv_format(out, sizeof(out), got);
					if (len == 0 || out[len - 1] != '\n')
						abort();
					out[len - 1] = '\0';
					struct suppression_entry back;
					if (suppression_csv_parse(out, &back, &why) != 0 || strcmp(back.address, got->address) != 0 ||
					    strcmp(back.reason, got->reason) != 0 || back.expires_s != got->expires_s)
						abort();
				}
				suppression_snapshot_unref(s);
			}
		}
		p += n + 1;
	}
	suppression_list_purge(l, 1);
	suppression_list_free(l);
	return 0;
}
