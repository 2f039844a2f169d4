/*
 * spool_record - encode and decode spool records; see spool_record.h.
 *
 * Pure code: no I/O, no logging. The decoder reads through a cursor that
 * checks every length against the bytes left, so truncated or hostile input
 * ends in SPOOL_RECORD_SHORT or SPOOL_RECORD_BAD, never out of bounds.
 *
 * MESSAGE payload: queue_id str, arrival i64, client str, helo str,
 *   auth str, sender str, size u64, body_type u8, mail_flags u8, ret u8,
 *   envid str, rcpt_count u32, rcpt_count x (address str, notify u8,
 *   orcpt str), body_len u64, body bytes.
 *   mail_flags: bit 0 SMTPUTF8, bit 1 REQUIRETLS, bit 2 "TLS-Required: No".
 *   It was the smtputf8 byte (0 or 1) before REQUIRETLS: old records read
 *   the same. An older ringmaild would take bits 1-2 for SMTPUTF8 (a
 *   downgrade with such records queued sends them as SMTPUTF8 mail).
 * OUTCOME payload: queue_id str, rcpt_index u32, status u8, attempts u32,
 *   next_attempt i64.
 */
#include "spool_record.h"

#include <stdlib.h>
#include <string.h>

/* The message's mail_flags byte (see above). */
#define SPOOL_MAIL_SMTPUTF8 0x01
#define SPOOL_MAIL_REQUIRETLS 0x02
#define SPOOL_MAIL_TLS_REQUIRED_NO 0x04

/* --- CRC32C ------------------------------------------------------------ */

static uint32_t crc_table[8][256];
static int crc_ready;	/* 0 none, 1 table, 2 hardware */

/* crc_init - build the slice-by-8 tables (reflected poly 0x82F63B78). */
static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^
				crc_table[0][crc_table[t - 1][i] & 0xff];
#if defined(__x86_64__)
	__builtin_cpu_init();
	__atomic_store_n(&crc_ready, __builtin_cpu_supports("sse4.2") ? 2 : 1,
			 __ATOMIC_RELEASE);
#else
	__atomic_store_n(&crc_ready, 1, __ATOMIC_RELEASE);
#endif
}

/* crc_soft - slice-by-8 software CRC32C on the inverted register. */
static uint32_t crc_soft(uint32_t c, const uint8_t *p, size_t len)
{
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		w ^= c;
		c = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
		    crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
		    crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
		    crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
	return c;
}

#if defined(__x86_64__)
/* crc_hard - the SSE4.2 crc32 instruction, 8 bytes per step. */
__attribute__((target("sse4.2")))
static uint32_t crc_hard(uint32_t c, const uint8_t *p, size_t len)
{
	uint64_t c64 = c;

	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c64 = __builtin_ia32_crc32di(c64, w);
		p += 8;
		len -= 8;
	}
	c = (uint32_t)c64;
	while (len--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}
#endif

uint32_t spool_crc32c(uint32_t crc, const void *data, size_t len)
{
	/* Racing initialisers compute identical tables: benign. */
	int mode = __atomic_load_n(&crc_ready, __ATOMIC_ACQUIRE);
	if (mode == 0) {
		crc_init();
		mode = __atomic_load_n(&crc_ready, __ATOMIC_ACQUIRE);
	}
	uint32_t c = ~crc;
#if defined(__x86_64__)
	if (mode == 2)
		return ~crc_hard(c, data, len);
#endif
	return ~crc_soft(c, data, len);
}

/* --- little-endian writer ---------------------------------------------- */

struct writer {
	uint8_t *p;
	size_t off;
};

static void put_u8(struct writer *w, uint8_t v) { w->p[w->off++] = v; }

static void put_u16(struct writer *w, uint16_t v)
{
	put_u8(w, (uint8_t)v);
	put_u8(w, (uint8_t)(v >> 8));
}

static void put_u32(struct writer *w, uint32_t v)
{
	put_u16(w, (uint16_t)v);
	put_u16(w, (uint16_t)(v >> 16));
}

static void put_u64(struct writer *w, uint64_t v)
{
	put_u32(w, (uint32_t)v);
	put_u32(w, (uint32_t)(v >> 32));
}

static void put_str(struct writer *w, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	put_u16(w, (uint16_t)n);
	if (n)
		memcpy(w->p + w->off, s, n);
	w->off += n;
	put_u8(w, 0);
}

/* str_size - encoded size of s, or 0 when it is too long. */
static size_t str_size(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	return n > SPOOL_STRING_MAX ? 0 : n + 3;
}

static bool queue_id_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;

	if (n == 0 || n > SPOOL_QUEUE_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (id[i] <= ' ' || id[i] > '~')
			return false;
	return true;
}

/* --- encoder ------------------------------------------------------------ */

/* has_pool - the message carries a pool (SPOOL_RECORD_FLAG_POOL). */
static bool has_pool(const struct spool_message *m)
{
	return m->pool != NULL && m->pool[0] != '\0';
}

size_t spool_record_message_size(const struct spool_message *m)
{
	const char *strs[] = { m->queue_id, m->client_addr, m->helo,
			       m->auth_user, m->sender, m->envid, has_pool(m) ? m->pool : "" };
	size_t n = SPOOL_RECORD_HEADER + 8 + 8 + 3 + 4 + 8 - (has_pool(m) ? 0 : 3);

	if (!queue_id_ok(m->queue_id) || m->rcpt_count == 0 ||
	    m->rcpt_count > UINT32_MAX || (m->body_len && !m->body))
		return 0;
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		size_t s = str_size(strs[i]);
		if (s == 0)
			return 0;
		n += s;
	}
	for (size_t i = 0; i < m->rcpt_count; i++) {
		size_t a = str_size(m->rcpts[i].address);
		size_t o = str_size(m->rcpts[i].orcpt);
		if (a == 0 || o == 0)
			return 0;
		n += a + 1 + o;
		if (n > SPOOL_RECORD_MAX_PAYLOAD)
			return 0;
	}
	if (m->body_len > SPOOL_RECORD_MAX_PAYLOAD ||
	    n - SPOOL_RECORD_HEADER + m->body_len > SPOOL_RECORD_MAX_PAYLOAD)
		return 0;
	return n + m->body_len;
}

size_t spool_record_outcome_size(const struct spool_outcome *o)
{
	if (!queue_id_ok(o->queue_id) || o->status == SPOOL_STATUS_PENDING ||
	    o->status > SPOOL_STATUS_HELD)
		return 0;
	size_t n = SPOOL_RECORD_HEADER + str_size(o->queue_id) + 4 + 1 + 4 + 8;
	if (o->reply != NULL && o->reply[0] != '\0') {
		size_t r = str_size(o->reply);
		if (r == 0 || r > SPOOL_REPLY_MAX + 3)
			return 0;
		n += r;
	}
	return n;
}

/* seal - write the header in front of a payload of n bytes and its CRC. */
static void seal(uint8_t *buf, uint8_t type, uint8_t flags, size_t total)
{
	struct writer w = { buf, 0 };
	uint32_t len = (uint32_t)(total - SPOOL_RECORD_HEADER);

	put_u32(&w, SPOOL_RECORD_MAGIC);
	put_u8(&w, type);
	put_u8(&w, flags);
	put_u16(&w, 0);
	put_u32(&w, len);
	uint32_t crc = spool_crc32c(0, buf, 12);
	crc = spool_crc32c(crc, buf + SPOOL_RECORD_HEADER, len);
	put_u32(&w, crc);
}

ssize_t spool_record_encode_message(const struct spool_message *m,
				    uint8_t *buf, size_t cap)
{
	size_t total = spool_record_message_size(m);

	if (total == 0)
		return -EINVAL;
	if (total > cap)
		return -ENOSPC;
	struct writer w = { buf, SPOOL_RECORD_HEADER };
	put_str(&w, m->queue_id);
	put_u64(&w, (uint64_t)m->arrival_usec);
	put_str(&w, m->client_addr);
	put_str(&w, m->helo);
	put_str(&w, m->auth_user);
	put_str(&w, m->sender);
	put_u64(&w, m->size_param);
	put_u8(&w, m->body_type);
	put_u8(&w, (uint8_t)((m->smtputf8 ? SPOOL_MAIL_SMTPUTF8 : 0) |
			     (m->requiretls ? SPOOL_MAIL_REQUIRETLS : 0) |
			     (m->tls_required_no ? SPOOL_MAIL_TLS_REQUIRED_NO : 0)));
	put_u8(&w, m->ret);
	put_str(&w, m->envid);
	if (has_pool(m))
		put_str(&w, m->pool);
	put_u32(&w, (uint32_t)m->rcpt_count);
	for (size_t i = 0; i < m->rcpt_count; i++) {
		put_str(&w, m->rcpts[i].address);
		put_u8(&w, m->rcpts[i].notify);
		put_str(&w, m->rcpts[i].orcpt);
	}
	put_u64(&w, m->body_len);
	if (m->body_len)
		memcpy(buf + w.off, m->body, m->body_len);
	seal(buf, SPOOL_RECORD_MESSAGE, has_pool(m) ? SPOOL_RECORD_FLAG_POOL : 0, total);
	return (ssize_t)total;
}

ssize_t spool_record_encode_outcome(const struct spool_outcome *o,
				    uint8_t *buf, size_t cap)
{
	size_t total = spool_record_outcome_size(o);

	if (total == 0)
		return -EINVAL;
	if (total > cap)
		return -ENOSPC;
	struct writer w = { buf, SPOOL_RECORD_HEADER };
	put_str(&w, o->queue_id);
	put_u32(&w, o->rcpt_index);
	put_u8(&w, o->status);
	put_u32(&w, o->attempts);
	put_u64(&w, (uint64_t)o->next_attempt);
	if (o->reply != NULL && o->reply[0] != '\0')
		put_str(&w, o->reply);
	seal(buf, SPOOL_RECORD_OUTCOME, 0, total);
	return (ssize_t)total;
}

/* --- decoder ------------------------------------------------------------ */

/* A bounds-checked reader; once bad is set every get returns zero. */
struct reader {
	const uint8_t *p;
	size_t len, off;
	bool bad;
};

static bool need(struct reader *r, size_t n)
{
	if (r->bad || r->len - r->off < n) {
		r->bad = true;
		return false;
	}
	return true;
}

static uint8_t get_u8(struct reader *r)
{
	return need(r, 1) ? r->p[r->off++] : 0;
}

static uint64_t get_le(struct reader *r, int bytes)
{
	uint64_t v = 0;

	if (!need(r, (size_t)bytes))
		return 0;
	for (int i = 0; i < bytes; i++)
		v |= (uint64_t)r->p[r->off + (size_t)i] << (8 * i);
	r->off += (size_t)bytes;
	return v;
}

/* get_str - a NUL-terminated string without embedded NULs, in place. */
static const char *get_str(struct reader *r)
{
	size_t n = (size_t)get_le(r, 2);

	if (!need(r, n + 1))
		return "";
	const char *s = (const char *)r->p + r->off;
	if (s[n] != '\0' || memchr(s, 0, n) != NULL) {
		r->bad = true;
		return "";
	}
	r->off += n + 1;
	return s;
}

ssize_t spool_record_peek(const uint8_t *buf, size_t len)
{
	struct reader r = { buf, len, 0, false };

	if (len < SPOOL_RECORD_HEADER)
		return SPOOL_RECORD_SHORT;
	uint32_t magic = (uint32_t)get_le(&r, 4);
	uint8_t type = get_u8(&r);
	uint8_t flags = get_u8(&r);
	uint16_t spare = (uint16_t)get_le(&r, 2);
	uint32_t plen = (uint32_t)get_le(&r, 4);
	uint8_t allowed = type == SPOOL_RECORD_MESSAGE ? SPOOL_RECORD_FLAG_POOL : 0;
	if (magic != SPOOL_RECORD_MAGIC || (flags & ~allowed) != 0 || spare != 0 ||
	    (type != SPOOL_RECORD_MESSAGE && type != SPOOL_RECORD_OUTCOME) ||
	    plen > SPOOL_RECORD_MAX_PAYLOAD)
		return SPOOL_RECORD_BAD;
	return (ssize_t)(SPOOL_RECORD_HEADER + (size_t)plen);
}

/* decode_rcpts - read n recipients into scratch or a heap array. */
static bool decode_rcpts(struct reader *r, struct spool_record *rec, size_t n,
			 struct spool_rcpt *scratch, size_t scratch_cap)
{
	struct spool_rcpt *v = scratch;

	/* Each recipient takes at least 7 bytes: no giant allocations. */
	if (n == 0 || n > (r->len - r->off) / 7)
		return false;
	if (n > scratch_cap) {
		v = calloc(n, sizeof(*v));
		if (v == NULL)
			return false;
		rec->rcpt_heap = v;
	}
	for (size_t i = 0; i < n; i++) {
		v[i].address = get_str(r);
		v[i].notify = get_u8(r);
		v[i].orcpt = get_str(r);
	}
	rec->message.rcpts = v;
	rec->message.rcpt_count = n;
	return !r->bad;
}

static bool decode_message(struct reader *r, struct spool_record *rec, uint8_t flags,
			   struct spool_rcpt *scratch, size_t scratch_cap)
{
	struct spool_message *m = &rec->message;

	m->queue_id = get_str(r);
	m->arrival_usec = (int64_t)get_le(r, 8);
	m->client_addr = get_str(r);
	m->helo = get_str(r);
	m->auth_user = get_str(r);
	m->sender = get_str(r);
	m->size_param = get_le(r, 8);
	m->body_type = get_u8(r);
	uint8_t mail_flags = get_u8(r);
	m->smtputf8 = (mail_flags & SPOOL_MAIL_SMTPUTF8) != 0;
	m->requiretls = (mail_flags & SPOOL_MAIL_REQUIRETLS) != 0;
	m->tls_required_no = (mail_flags & SPOOL_MAIL_TLS_REQUIRED_NO) != 0;
	m->ret = get_u8(r);
	m->envid = get_str(r);
	m->pool = flags & SPOOL_RECORD_FLAG_POOL ? get_str(r) : NULL;
	size_t n = (size_t)get_le(r, 4);
	if (r->bad || !queue_id_ok(m->queue_id) ||
	    !decode_rcpts(r, rec, n, scratch, scratch_cap))
		return false;
	uint64_t body_len = get_le(r, 8);
	if (r->bad || body_len != r->len - r->off)
		return false;
	m->body = r->p + r->off;
	m->body_len = (size_t)body_len;
	r->off = r->len;
	return true;
}

static bool decode_outcome(struct reader *r, struct spool_outcome *o)
{
	o->queue_id = get_str(r);
	o->rcpt_index = (uint32_t)get_le(r, 4);
	o->status = get_u8(r);
	o->attempts = (uint32_t)get_le(r, 4);
	o->next_attempt = (int64_t)get_le(r, 8);
	o->reply = NULL;
	if (!r->bad && r->off < r->len)
		o->reply = get_str(r);	/* optional: the last reply */
	return !r->bad && r->off == r->len && queue_id_ok(o->queue_id) &&
	       o->status != SPOOL_STATUS_PENDING &&
	       o->status <= SPOOL_STATUS_HELD;
}

ssize_t spool_record_decode_scratch(const uint8_t *buf, size_t len,
				    struct spool_record *rec, bool check_crc,
				    struct spool_rcpt *scratch, size_t scratch_cap)
{
	memset(rec, 0, sizeof(*rec));
	ssize_t total = spool_record_peek(buf, len);
	if (total < 0)
		return total;
	if ((size_t)total > len)
		return SPOOL_RECORD_SHORT;
	size_t plen = (size_t)total - SPOOL_RECORD_HEADER;
	if (check_crc) {
		uint32_t want = (uint32_t)buf[12] | (uint32_t)buf[13] << 8 |
				(uint32_t)buf[14] << 16 | (uint32_t)buf[15] << 24;
		uint32_t crc = spool_crc32c(0, buf, 12);
		if (spool_crc32c(crc, buf + SPOOL_RECORD_HEADER, plen) != want)
			return SPOOL_RECORD_BAD;
	}
	struct reader r = { buf + SPOOL_RECORD_HEADER, plen, 0, false };
	rec->type = (enum spool_record_type)buf[4];
	rec->length = (uint32_t)total;
	bool ok = rec->type == SPOOL_RECORD_MESSAGE ?
		decode_message(&r, rec, buf[5], scratch, scratch_cap) :
		decode_outcome(&r, &rec->outcome);
	if (!ok) {
		spool_record_clear(rec);
		return SPOOL_RECORD_BAD;
	}
	return total;
}

ssize_t spool_record_decode(const uint8_t *buf, size_t len,
			    struct spool_record *rec)
{
	return spool_record_decode_scratch(buf, len, rec, true, NULL, 0);
}

void spool_record_clear(struct spool_record *rec)
{
	if (rec == NULL)
		return;
	free(rec->rcpt_heap);
	rec->rcpt_heap = NULL;
	rec->message.rcpts = NULL;
	rec->message.rcpt_count = 0;
}

const char *spool_status_name(uint8_t status)
{
	static const char *const names[] = { "pending", "deferred", "delivered",
					     "bounced", "expired", "deleted", "held" };

	return status < sizeof(names) / sizeof(names[0]) ? names[status] : "unknown";
}
