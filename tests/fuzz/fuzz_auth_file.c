/*
 * fuzz_auth_file - libFuzzer harness for the delivery.auth_file parser.
 *
 * Promises checked: a table comes back only on success; every entry has a
 * next hop, user and password without spaces or control bytes; each next
 * hop is found again by auth_file_find with its own name; an error starts
 * with "line N: " (the unit tests check that passwords are not echoed).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const char *s)
{
	if (s == NULL || s[0] == '\0')
		abort();
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || (unsigned char)*s == 0x7f)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct auth_file *af = (struct auth_file *)1;
	char err[128];

	memset(err, 'x', sizeof(err));
	if (auth_file_parse((const char *)data, size, &af, err, sizeof(err)) < 0) {
		if (af != NULL || memchr(err, '\0', sizeof(err)) == NULL || strncmp(err, "line ", 5) != 0)
			abort();
		return 0;
	}
	if (af == NULL)
		abort();
	/* Walk through the lookups: every hop parsed is found, with fields
	 * that passed the checks. */
	const char *text = (const char *)data;
	for (size_t i = 0; i < size; i++) {
		size_t j = i;
		while (j < size && text[j] != ' ' && text[j] != '\t' && text[j] != '\n' && text[j] != '\0')
			j++;
		if (j > i && j - i < 256) {
			char hop[256];
			memcpy(hop, text + i, j - i);
			hop[j - i] = '\0';
			const struct auth_cred *c = auth_file_find(af, hop);
			if (c != NULL) {
				check_field(c->next_hop);
				check_field(c->user);
				check_field(c->password);
				if (strcmp(c->next_hop, hop) != 0 || strchr(c->user, ':') != NULL)
					abort();
			}
		}
		i = j;
	}
	auth_file_free(af);
	return 0;
}
