/*
 * fuzz_bounce_class - libFuzzer harness for the bounce classification
 * table (bounce.patterns_file) and the classifier.
 *
 *   tools/fuzz run 20 bounce_class
 *
 * The input is a table; the same bytes are then classified as a reply
 * text under a few codes. Checks: a refused table keeps no rule and names
 * its origin; every answer is a category with a name.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bounce_class.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bounce_classifier *c = bounce_classifier_new();
	char err[256] = "", text[600];

	if (bounce_classifier_load(c, (const char *)data, size, "fuzz", err, sizeof(err)) < 0 &&
	    (bounce_classifier_rules(c) != 0 || strncmp(err, "fuzz line ", 10) != 0))
		abort();
	size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
	memcpy(text, data, n);
	text[n] = '\0';
	static const struct { int code; const char *status; } replies[] = {
		{ 550, "5.1.1" }, { 421, "4.7.28" }, { 0, NULL }, { 452, "4.2.2" }, { 554, "5.999.9999" },
	};
	for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
		enum bounce_category k = bounce_classify(c, replies[i].code, replies[i].status, text);
		if ((unsigned)k >= BOUNCE_CAT_COUNT || bounce_category_name(k)[0] == '\0')
			abort();
	}
	bounce_classifier_free(c);
	return 0;
}
