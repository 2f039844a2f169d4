/*
 * test_spool_record - the spool record codec: round trips, truncation,
 * bit flips, CRC32C vectors, hostile bytes.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "spool_record.h"

static const struct spool_rcpt sample_rcpts[] = {
	{ "alice@example.org", SPOOL_NOTIFY_SUCCESS | SPOOL_NOTIFY_FAILURE,
	  "rfc822;alice@example.org" },
	{ "bob@example.net", 0, "" },
	{ "carol@例え.jp", SPOOL_NOTIFY_NEVER, "utf-8;carol@例え.jp" },
};

static const uint8_t sample_body[] = "Subject: hi\r\n\r\nhello\r\n.\r\n";

static struct spool_message sample_message(void)
{
	return (struct spool_message){
		.queue_id = "0ABCDEFGHJK0100001", .arrival_usec = 1763900000123456,
		.client_addr = "127.0.0.1:40000", .helo = "client.example",
		.auth_user = "app", .sender = "sender@example.com",
		.size_param = 12345, .body_type = SPOOL_BODY_8BITMIME,
		.smtputf8 = true, .ret = SPOOL_RET_HDRS, .envid = "env-1",
		.rcpt_count = 3, .rcpts = sample_rcpts,
		.body = sample_body, .body_len = sizeof(sample_body) - 1,
	};
}

/* encode_sample - the sample message encoded into a fresh buffer. */
static uint8_t *encode_sample(size_t *len)
{
	struct spool_message m = sample_message();
	size_t n = spool_record_message_size(&m);
	uint8_t *buf = malloc(n);

	cr_assert_gt(n, 0);
	ssize_t w = spool_record_encode_message(&m, buf, n);
	cr_assert_eq(w, (ssize_t)n, "encode: got %zd, want %zu", w, n);
	*len = n;
	return buf;
}

/* crc_reference - bit-at-a-time CRC32C, the definition. */
static uint32_t crc_reference(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
	}
	return ~c;
}

Test(spool_record, crc32c_vectors)
{
	uint32_t got = spool_crc32c(0, "123456789", 9);
	cr_assert_eq(got, 0xe3069283u, "got %08x, want e3069283", got);
	uint8_t buf[300];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	for (size_t off = 0; off < 8; off++)
		for (size_t n = 0; n + off <= sizeof(buf); n += 13) {
			uint32_t want = crc_reference(buf + off, n);
			got = spool_crc32c(0, buf + off, n);
			cr_assert_eq(got, want, "off %zu len %zu: got %08x, want %08x",
				     off, n, got, want);
			/* Incremental use gives the same value. */
			uint32_t half = spool_crc32c(0, buf + off, n / 2);
			got = spool_crc32c(half, buf + off + n / 2, n - n / 2);
			cr_assert_eq(got, want, "split: got %08x, want %08x", got, want);
		}
}

Test(spool_record, message_round_trip)
{
	size_t n;
	uint8_t *buf = encode_sample(&n);
	struct spool_message m = sample_message();
	struct spool_record rec;

	ssize_t r = spool_record_decode(buf, n, &rec);
	cr_assert_eq(r, (ssize_t)n, "decode: got %zd, want %zu", r, n);
	cr_assert_eq(rec.type, SPOOL_RECORD_MESSAGE);
	const struct spool_message *d = &rec.message;
	cr_assert_str_eq(d->queue_id, m.queue_id);
	cr_assert_eq(d->arrival_usec, m.arrival_usec);
	cr_assert_str_eq(d->client_addr, m.client_addr);
	cr_assert_str_eq(d->helo, m.helo);
	cr_assert_str_eq(d->auth_user, m.auth_user);
	cr_assert_str_eq(d->sender, m.sender);
	cr_assert_eq(d->size_param, m.size_param);
	cr_assert_eq(d->body_type, m.body_type);
	cr_assert_eq(d->smtputf8, true);
	cr_assert_eq(d->ret, m.ret);
	cr_assert_str_eq(d->envid, m.envid);
	cr_assert_eq(d->rcpt_count, 3, "rcpts: got %zu, want 3", d->rcpt_count);
	for (size_t i = 0; i < 3; i++) {
		cr_assert_str_eq(d->rcpts[i].address, sample_rcpts[i].address);
		cr_assert_eq(d->rcpts[i].notify, sample_rcpts[i].notify);
		cr_assert_str_eq(d->rcpts[i].orcpt, sample_rcpts[i].orcpt);
	}
	cr_assert_eq(d->body_len, m.body_len);
	cr_assert_eq(memcmp(d->body, m.body, m.body_len), 0);
	spool_record_clear(&rec);
	free(buf);
}

Test(spool_record, message_defaults_and_scratch)
{
	struct spool_rcpt one = { "x@y", 0, NULL };
	struct spool_message m = { .queue_id = "Q1", .rcpt_count = 1, .rcpts = &one };
	uint8_t buf[256];
	struct spool_rcpt scratch[2];
	struct spool_record rec;

	ssize_t w = spool_record_encode_message(&m, buf, sizeof(buf));
	cr_assert_gt(w, 0);
	ssize_t r = spool_record_decode_scratch(buf, (size_t)w, &rec, true,
						scratch, 2);
	cr_assert_eq(r, w, "got %zd, want %zd", r, w);
	cr_assert_eq(rec.message.rcpts, scratch, "recipients should use scratch");
	cr_assert_null(rec.rcpt_heap);
	cr_assert_str_eq(rec.message.sender, "");
	cr_assert_str_eq(rec.message.rcpts[0].orcpt, "");
	cr_assert_eq(rec.message.body_len, 0);
	spool_record_clear(&rec);
}

Test(spool_record, outcome_round_trip_every_status)
{
	for (uint8_t st = SPOOL_STATUS_DEFERRED; st <= SPOOL_STATUS_HELD; st++) {
		struct spool_outcome o = { "0ABCDEFGHJK0100001", 7, st, 3,
					   1763900000 };
		uint8_t buf[128];
		struct spool_record rec;
		ssize_t w = spool_record_encode_outcome(&o, buf, sizeof(buf));
		cr_assert_eq(w, (ssize_t)spool_record_outcome_size(&o));
		ssize_t r = spool_record_decode(buf, (size_t)w, &rec);
		cr_assert_eq(r, w, "status %s: got %zd, want %zd",
			     spool_status_name(st), r, w);
		cr_assert_eq(rec.type, SPOOL_RECORD_OUTCOME);
		cr_assert_str_eq(rec.outcome.queue_id, o.queue_id);
		cr_assert_eq(rec.outcome.rcpt_index, 7);
		cr_assert_eq(rec.outcome.status, st, "got %d, want %d",
			     rec.outcome.status, st);
		cr_assert_eq(rec.outcome.attempts, 3);
		cr_assert_eq(rec.outcome.next_attempt, 1763900000);
		spool_record_clear(&rec);
	}
}

Test(spool_record, encode_rejects_bad_input)
{
	struct spool_rcpt one = { "x@y", 0, "" };
	uint8_t buf[512];
	struct {
		const char *name, *qid;
		size_t rcpts;
		ssize_t want;
	} cases[] = {
		{ "empty id", "", 1, -EINVAL },
		{ "space in id", "A B", 1, -EINVAL },
		{ "id too long", "0123456789012345678901234567890123", 1, -EINVAL },
		{ "no recipients", "Q1", 0, -EINVAL },
		{ "ok", "Q1", 1, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct spool_message m = { .queue_id = cases[i].qid,
					   .rcpt_count = cases[i].rcpts,
					   .rcpts = &one };
		ssize_t w = spool_record_encode_message(&m, buf, sizeof(buf));
		if (cases[i].want == 0)
			cr_assert_gt(w, 0, "%s: got %zd, want > 0", cases[i].name, w);
		else
			cr_assert_eq(w, cases[i].want, "%s: got %zd, want %zd",
				     cases[i].name, w, cases[i].want);
	}
	struct spool_message m = sample_message();
	ssize_t w = spool_record_encode_message(&m, buf, 20);
	cr_assert_eq(w, -ENOSPC, "small buffer: got %zd, want %d", w, -ENOSPC);
	struct spool_outcome o = { "Q1", 0, SPOOL_STATUS_PENDING, 0, 0 };
	w = spool_record_encode_outcome(&o, buf, sizeof(buf));
	cr_assert_eq(w, -EINVAL, "pending outcome: got %zd, want %d", w, -EINVAL);
}

Test(spool_record, truncated_at_every_length)
{
	size_t n;
	uint8_t *buf = encode_sample(&n);

	for (size_t len = 0; len < n; len++) {
		/* A fresh copy of exactly len bytes, so ASan sees overreads. */
		uint8_t *cut = malloc(len ? len : 1);
		memcpy(cut, buf, len);
		struct spool_record rec;
		ssize_t r = spool_record_decode(cut, len, &rec);
		cr_assert_eq(r, SPOOL_RECORD_SHORT, "len %zu: got %zd, want %d",
			     len, r, SPOOL_RECORD_SHORT);
		free(cut);
	}
	free(buf);
}

Test(spool_record, every_bit_flip_is_caught)
{
	size_t n;
	uint8_t *buf = encode_sample(&n);

	for (size_t bit = 0; bit < n * 8; bit++) {
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		struct spool_record rec;
		ssize_t r = spool_record_decode(buf, n, &rec);
		cr_assert_lt(r, 0, "bit %zu flipped: got %zd, want an error", bit, r);
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	free(buf);
}

/* Random bytes, and valid records mutated with the CRC check off so the
 * structure parser sees hostile lengths: errors or records, never crashes. */
Test(spool_record, hostile_bytes_never_crash)
{
	size_t n;
	uint8_t *good = encode_sample(&n);
	uint8_t *buf = malloc(n);
	unsigned seed = 12345;
	int ok = 0;

	for (int iter = 0; iter < 200000; iter++) {
		memcpy(buf, good, n);
		int flips = 1 + rand_r(&seed) % 8;
		for (int k = 0; k < flips; k++)
			buf[16 + (size_t)rand_r(&seed) % (n - 16)] = (uint8_t)rand_r(&seed);
		size_t len = iter % 3 ? n : (size_t)rand_r(&seed) % (n + 1);
		struct spool_record rec;
		ssize_t r = spool_record_decode_scratch(buf, len, &rec, false, NULL, 0);
		if (r > 0) {
			ok++;
			cr_assert_leq((size_t)r, len);
			if (rec.type == SPOOL_RECORD_MESSAGE)
				for (size_t i = 0; i < rec.message.rcpt_count; i++)
					(void)strlen(rec.message.rcpts[i].address);
			spool_record_clear(&rec);
		}
	}
	for (int iter = 0; iter < 100000; iter++) {
		uint8_t rnd[64];
		for (size_t i = 0; i < sizeof(rnd); i++)
			rnd[i] = (uint8_t)rand_r(&seed);
		if (iter & 1)	/* a plausible header over random payload */
			memcpy(rnd, good, 12);
		struct spool_record rec;
		ssize_t r = spool_record_decode(rnd, sizeof(rnd), &rec);
		if (r > 0)
			spool_record_clear(&rec);
	}
	cr_assert_gt(ok, 0, "some mutations (of the body) should still decode");
	free(buf);
	free(good);
}

Test(spool_record, outcome_reply_round_trip_and_old_form)
{
	struct spool_outcome o = { "0ABCDEFGHJK0100001", 2, SPOOL_STATUS_DEFERRED, 4,
				   1763900000, "451 4.7.1 try again later" };
	uint8_t buf[256];
	struct spool_record rec;
	ssize_t w = spool_record_encode_outcome(&o, buf, sizeof(buf));

	cr_assert_eq(w, (ssize_t)spool_record_outcome_size(&o));
	cr_assert_eq(spool_record_decode(buf, (size_t)w, &rec), w);
	cr_assert_str_eq(rec.outcome.reply, o.reply, "got %s", rec.outcome.reply);
	cr_assert_eq(rec.outcome.attempts, 4);
	cr_assert_eq(rec.outcome.next_attempt, 1763900000);
	spool_record_clear(&rec);
	/* "" and NULL write the old form, which decodes with no reply */
	o.reply = "";
	ssize_t w2 = spool_record_encode_outcome(&o, buf, sizeof(buf));
	o.reply = NULL;
	cr_assert_eq(w2, (ssize_t)spool_record_outcome_size(&o));
	cr_assert_lt(w2, w);
	cr_assert_eq(spool_record_decode(buf, (size_t)w2, &rec), w2);
	cr_assert_null(rec.outcome.reply);
	spool_record_clear(&rec);
	/* too long: unencodable, the caller cuts it */
	char big[SPOOL_REPLY_MAX + 2];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	o.reply = big;
	cr_assert_eq(spool_record_outcome_size(&o), 0);
}

/* A message's pool (the pool header's choice) goes after envid under
 * SPOOL_RECORD_FLAG_POOL; without one the record is byte for byte the
 * old form (flags 0) and decodes with pool NULL. */
Test(spool_record, message_pool_round_trip_and_old_form)
{
	struct spool_message m = sample_message();
	size_t plain = spool_record_message_size(&m);
	m.pool = "bulk";
	size_t n = spool_record_message_size(&m);
	cr_assert_eq(n, plain + 2 + 4 + 1, "the pool string: got %zu, want %zu", n, plain + 7);
	uint8_t *buf = malloc(n);
	cr_assert_eq(spool_record_encode_message(&m, buf, n), (ssize_t)n);
	cr_expect_eq(buf[5], SPOOL_RECORD_FLAG_POOL);
	struct spool_record rec;
	cr_assert_eq(spool_record_decode(buf, n, &rec), (ssize_t)n);
	cr_expect_str_eq(rec.message.pool, "bulk");
	cr_expect_str_eq(rec.message.envid, "env-1");
	cr_expect_eq(rec.message.rcpt_count, 3);
	cr_expect_eq(rec.message.body_len, m.body_len);
	spool_record_clear(&rec);
	free(buf);

	size_t old_len;
	buf = encode_sample(&old_len);
	cr_expect_eq(buf[5], 0);
	cr_assert_eq(spool_record_decode(buf, old_len, &rec), (ssize_t)old_len);
	cr_expect_null(rec.message.pool);
	spool_record_clear(&rec);
	free(buf);
}

/* The mail_flags byte: every combination of SMTPUTF8, REQUIRETLS and
 * "TLS-Required: No" comes back; a record of before REQUIRETLS (the byte
 * was smtputf8, 0 or 1) reads as it did, with neither RFC 8689 flag. */
Test(spool_record, mail_flags_round_trip_and_old_form)
{
	struct spool_rcpt one = { "x@y", 0, NULL };
	uint8_t buf[256], old[256];

	for (unsigned bits = 0; bits < 8; bits++) {
		struct spool_message m = { .queue_id = "Q1", .rcpt_count = 1, .rcpts = &one,
					   .smtputf8 = bits & 1, .requiretls = (bits & 2) != 0,
					   .tls_required_no = (bits & 4) != 0 };
		struct spool_record rec;
		ssize_t w = spool_record_encode_message(&m, buf, sizeof(buf));
		cr_assert_gt(w, 0);
		cr_assert_eq(spool_record_decode(buf, (size_t)w, &rec), w);
		cr_expect_eq(rec.message.smtputf8, m.smtputf8, "bits %u: smtputf8 got %d", bits,
			     rec.message.smtputf8);
		cr_expect_eq(rec.message.requiretls, m.requiretls, "bits %u: requiretls got %d", bits,
			     rec.message.requiretls);
		cr_expect_eq(rec.message.tls_required_no, m.tls_required_no,
			     "bits %u: tls_required_no got %d", bits, rec.message.tls_required_no);
		spool_record_clear(&rec);
	}
	/* The old form: the byte after body_type is 1 for SMTPUTF8. Find it
	 * by difference between a record with and one without SMTPUTF8. */
	struct spool_message a = { .queue_id = "Q1", .rcpt_count = 1, .rcpts = &one };
	struct spool_message b = a;
	b.smtputf8 = true;
	ssize_t na = spool_record_encode_message(&a, old, sizeof(old));
	ssize_t nb = spool_record_encode_message(&b, buf, sizeof(buf));
	cr_assert_eq(na, nb);
	size_t at = SIZE_MAX;
	for (size_t i = SPOOL_RECORD_HEADER; i < (size_t)na; i++)
		if (old[i] != buf[i]) {
			at = i;
			break;
		}
	cr_assert_neq(at, SIZE_MAX);
	cr_expect_eq(old[at], 0);
	cr_expect_eq(buf[at], 1, "SMTPUTF8 alone is written as the old byte 1, got %u", buf[at]);
}
