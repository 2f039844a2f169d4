/*
 * fuzz_smtp_data - libFuzzer harness for the DATA/BDAT body decoder
 * (relay/smtp_data.h).
 *
 *   tools/fuzz build && tools/fuzz run 60 smtp_data
 *
 * Input layout:
 *   byte 0      mode: bit 0 BDAT, bit 1 BODY=BINARYMIME, bits 2-3 the line
 *               limit (none, 1000, 78, 8), bits 4-5 the size limit (huge,
 *               4096, 64, 0), bit 6 a body buffer cap below the size limit
 *   byte 1      k = number of split bytes (0..15)
 *   k bytes     split lengths, used cyclically: how the input is cut into
 *               feeds, and (BDAT) the length of each BDAT chunk
 *   the rest    the wire octets after "354" (DATA) or after each BDAT command
 *
 * Each input is decoded three times: all at once, one byte at a time, and
 * in the chunks above. Invariants: every run consumes the same octets and
 * ends with the same done flag, anomalies, size and verdict; the stored body
 * is never larger than the input consumed; unless the message is too big
 * (a run that crosses the limit is dropped whole, so the stored prefix
 * depends on the cut), the three bodies are byte for byte the same.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	struct smtp_data d;
	struct buf body;
	size_t consumed;
	const char *verdict;
};

struct input {
	unsigned mode;
	const uint8_t *splits;
	size_t nsplits;
	const char *wire;
	size_t len;
};

enum cut { CUT_WHOLE, CUT_BYTE, CUT_SPLITS };

/* split_at - the i-th split length, never 0 */
static size_t split_at(const struct input *in, size_t i)
{
	if (in->nsplits == 0)
		return 7;
	return in->splits[i % in->nsplits] ? in->splits[i % in->nsplits] : 1;
}

/* feed_len - how many octets the next feed offers */
static size_t feed_len(const struct input *in, enum cut cut, size_t *i, size_t left)
{
	size_t n = left;

	if (cut == CUT_BYTE)
		n = 1;
	else if (cut == CUT_SPLITS)
		n = split_at(in, (*i)++);
	return n < left ? n : left;
}

/* decode - one full decoding of the input with the given cut */
static void decode(const struct input *in, enum cut cut, struct run *r)
{
	static const size_t line_max[4] = { 0, 1000, 78, 8 };
	static const uint64_t size_max[4] = { UINT64_MAX / 2, 4096, 64, 0 };
	struct smtp_data_limits lim = {
		.line_max = line_max[(in->mode >> 2) & 3],
		.size_max = size_max[(in->mode >> 4) & 3],
	};
	size_t fi = 0, ci = 0, n, got;

	memset(r, 0, sizeof(*r));
	buf_init(&r->body, (in->mode & 0x40) ? 100 : 1 << 20);
	if (!(in->mode & 1)) {
		smtp_data_begin_dot(&r->d, &lim, &r->body);
		while (r->consumed < in->len && !smtp_data_done(&r->d)) {
			n = feed_len(in, cut, &fi, in->len - r->consumed);
			got = smtp_data_feed(&r->d, in->wire + r->consumed, n);
			if (got > n || (got < n && !smtp_data_done(&r->d)))
				abort();
			r->consumed += got;
		}
	} else {
		smtp_data_begin_bdat(&r->d, &lim, &r->body, in->mode & 2);
		while (r->consumed < in->len) {
			/* BDAT chunk sizes do not depend on the cut */
			smtp_data_chunk(&r->d, split_at(in, ci++) * 3);
			while (r->consumed < in->len && !smtp_data_done(&r->d)) {
				n = feed_len(in, cut, &fi, in->len - r->consumed);
				got = smtp_data_feed(&r->d, in->wire + r->consumed, n);
				if (got > n || (got < n && !smtp_data_done(&r->d)))
					abort();
				r->consumed += got;
			}
		}
	}
	r->verdict = smtp_data_verdict(&r->d);
	if (r->body.len > r->consumed)
		abort();
}

/* same - the decodings agree (see the top comment) */
static void same(const struct run *a, const struct run *b)
{
	if (a->consumed != b->consumed || a->d.done != b->d.done ||
	    a->d.anomalies != b->d.anomalies || a->d.size != b->d.size)
		abort();
	if ((a->verdict == NULL) != (b->verdict == NULL) ||
	    (a->verdict && strcmp(a->verdict, b->verdict) != 0))
		abort();
	if (a->d.anomalies & SMTP_DATA_TOO_BIG)
		return;
	if (a->body.len != b->body.len ||
	    (a->body.len && memcmp(buf_data(&a->body),
				   buf_data(&b->body), a->body.len) != 0))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in;
	struct run whole, bytes, splits;

	if (size < 2)
		return 0;
	in.mode = data[0];
	in.nsplits = data[1] & 15;
	if (size < 2 + in.nsplits)
		return 0;
	in.splits = data + 2;
	in.wire = (const char *)data + 2 + in.nsplits;
	in.len = size - 2 - in.nsplits;

	decode(&in, CUT_WHOLE, &whole);
	decode(&in, CUT_BYTE, &bytes);
	decode(&in, CUT_SPLITS, &splits);
	same(&whole, &bytes);
	same(&whole, &splits);
	/* the message content never exceeds what was counted */
	if (!(whole.d.anomalies & SMTP_DATA_TOO_BIG) && whole.body.len != whole.d.size)
		abort();
	buf_free(&whole.body);
	buf_free(&bytes.body);
	buf_free(&splits.body);
	return 0;
}
