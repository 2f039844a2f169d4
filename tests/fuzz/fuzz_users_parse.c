/*
 * fuzz_users_parse - libFuzzer harness for the passwd-file parser.
 *
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Irelay \
 *     tests/fuzz/fuzz_users_parse.c relay/users.c relay/log.c -lcrypt -o fuzz_users_parse
 *   ./fuzz_users_parse -max_total_time=20 tests/fuzz/corpus/users/
 *
 * The checks: a failure sets no db and an error naming a line or the
 * file; a success has no more users than lines, each of them found by
 * users_exists (the sorted search agrees with the parse).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "users.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct users_db *db;
	char err[256] = "";
	size_t lines = 1;

	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	int rc = users_parse("f", (const char *)data, size, &db, err, sizeof(err));
	if (rc < 0) {
		if (db != NULL || strncmp(err, "f:", 2) != 0)
			abort();
		return 0;
	}
	if (users_count(db) > lines)
		abort();
	/* every name at the start of a line that parsed must be found */
	const char *p = (const char *)data, *end = p + size;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *colon = memchr(p, ':', (size_t)((nl ? nl : end) - p));
		if (colon != NULL && colon > p && strchr("# \t\r", *p) == NULL &&
		    (size_t)(colon - p) <= USERS_NAME_MAX) {
			char name[USERS_NAME_MAX + 1];
			memcpy(name, p, (size_t)(colon - p));
			name[colon - p] = '\0';
			if (!users_exists(db, name))
				abort();
		}
		p = nl ? nl + 1 : end;
	}
	users_free(db);
	return 0;
}
