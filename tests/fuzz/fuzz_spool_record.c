/*
 * fuzz_spool_record - libFuzzer harness for the spool record decoder.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *     -Ispool -Irelay tests/fuzz/fuzz_spool_record.c spool/spool_*.c relay/log.c
 *   ./a.out tests/fuzz/corpus/spool_record
 *
 * Decodes the input as a sequence of records, as a segment scan does, once
 * with the CRC checked and once without (so mutations reach the payload
 * parser), and touches every decoded string so ASan sees any overread.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spool_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t touch(const struct spool_record *rec)
{
	size_t n = 0;

	if (rec->type == SPOOL_RECORD_OUTCOME)
		return strlen(rec->outcome.queue_id);
	const struct spool_message *m = &rec->message;
	n += strlen(m->queue_id) + strlen(m->client_addr) + strlen(m->helo) +
	     strlen(m->auth_user) + strlen(m->sender) + strlen(m->envid);
	for (size_t i = 0; i < m->rcpt_count; i++)
		n += strlen(m->rcpts[i].address) + strlen(m->rcpts[i].orcpt);
	if (m->body_len)
		n += m->body[m->body_len - 1];
	return n;
}

static void scan(const uint8_t *data, size_t size, bool crc)
{
	struct spool_rcpt scratch[4];
	size_t off = 0;

	while (off < size) {
		struct spool_record rec;
		ssize_t n = spool_record_decode_scratch(data + off, size - off, &rec,
							crc, scratch, 4);
		if (n < 0)
			return;
		if ((size_t)n > size - off)
			abort();
		volatile size_t sink = touch(&rec);
		(void)sink;
		spool_record_clear(&rec);
		off += (size_t)n;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy so reads past the end are caught. */
	uint8_t *copy = malloc(size ? size : 1);

	memcpy(copy, data, size);
	scan(copy, size, true);
	scan(copy, size, false);
	free(copy);
	return 0;
}
