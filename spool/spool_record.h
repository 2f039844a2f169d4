/*
 * spool_record - the on-disk record codec of the spool (pure: bytes in/out).
 *
 *   size_t n = spool_record_message_size(&msg);
 *   ssize_t w = spool_record_encode_message(&msg, buf, cap);
 *   ssize_t r = spool_record_decode(bytes, len, &rec);   // >0: bytes used
 *   ...use rec.message / rec.outcome...
 *   spool_record_clear(&rec);
 *
 * Every record is a 16-byte header followed by a payload, little endian:
 *   magic  u32  "RMS1"
 *   type   u8   SPOOL_RECORD_MESSAGE or SPOOL_RECORD_OUTCOME
 *   flags  u8   SPOOL_RECORD_FLAG_* (MESSAGE), else 0
 *   spare  u16  0 (reserved)
 *   length u32  payload bytes (at most SPOOL_RECORD_MAX_PAYLOAD)
 *   crc    u32  CRC32C over header bytes 0..11, then the payload
 * Strings are stored as u16 length, bytes, NUL; the decoder checks the NUL
 * and that no NUL is embedded, so decoded strings are C strings that point
 * into the caller's bytes (zero copy).
 *
 * The decoder is fuzz-safe: any input yields a record or a negative code.
 * Decoded pointers borrow from the input buffer; rec->message.rcpts may be
 * heap-allocated (released by spool_record_clear()).
 */
#ifndef RINGMAIL_SPOOL_RECORD_H
#define RINGMAIL_SPOOL_RECORD_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SPOOL_RECORD_MAGIC 0x31534d52u	/* "RMS1" read as little endian */
#define SPOOL_RECORD_HEADER 16
#define SPOOL_RECORD_MAX_PAYLOAD (1u << 30)
#define SPOOL_QUEUE_ID_MAX 31		/* longest queue id, without NUL */
#define SPOOL_STRING_MAX 65534		/* longest envelope string */

enum spool_record_type {
	SPOOL_RECORD_MESSAGE = 1,	/* envelope + body of one message */
	SPOOL_RECORD_OUTCOME = 2,	/* state change of one recipient */
};

/* Header flags of a MESSAGE record. */
#define SPOOL_RECORD_FLAG_POOL 0x10	/* a pool string follows envid */

/* Decoder results besides a positive byte count. */
#define SPOOL_RECORD_SHORT (-ENODATA)	/* input ends inside the record */
#define SPOOL_RECORD_BAD (-EBADMSG)	/* bad magic, CRC or structure */

enum spool_body { SPOOL_BODY_NONE, SPOOL_BODY_7BIT, SPOOL_BODY_8BITMIME,
		  SPOOL_BODY_BINARYMIME };
enum spool_ret { SPOOL_RET_NONE, SPOOL_RET_FULL, SPOOL_RET_HDRS };

/* DSN NOTIFY= bits of one recipient (RFC 3461); 0 means not given. */
#define SPOOL_NOTIFY_NEVER 0x01
#define SPOOL_NOTIFY_SUCCESS 0x02
#define SPOOL_NOTIFY_FAILURE 0x04
#define SPOOL_NOTIFY_DELAY 0x08

/* Recipient status; DELIVERED to DELETED are final. */
enum spool_status {
	SPOOL_STATUS_PENDING = 0,	/* never tried */
	SPOOL_STATUS_DEFERRED = 1,	/* tried, retry later (not final) */
	SPOOL_STATUS_DELIVERED = 2,
	SPOOL_STATUS_BOUNCED = 3,
	SPOOL_STATUS_EXPIRED = 4,	/* gave up after the queue lifetime */
	SPOOL_STATUS_DELETED = 5,	/* removed by the operator */
	SPOOL_STATUS_HELD = 6,		/* held by the operator (not final) */
};
#define SPOOL_STATUS_IS_FINAL(s) ((s) >= SPOOL_STATUS_DELIVERED && (s) <= SPOOL_STATUS_DELETED)

struct spool_rcpt {
	const char *address;		/* never NULL; "" allowed */
	uint8_t notify;			/* SPOOL_NOTIFY_* bits */
	const char *orcpt;		/* ORCPT= value or "" (NULL encodes as "") */
};

/* One message. For encoding, NULL strings encode as "". */
struct spool_message {
	const char *queue_id;		/* 1..SPOOL_QUEUE_ID_MAX printable bytes */
	int64_t arrival_usec;		/* unix time of the 250, microseconds */
	const char *client_addr;	/* "203.0.113.5:4242" or similar */
	const char *helo;
	const char *auth_user;		/* "" when not authenticated */
	const char *sender;		/* reverse path without <>, "" for null */
	uint64_t size_param;		/* SIZE= value, 0 if not given */
	uint8_t body_type;		/* enum spool_body */
	bool smtputf8;
	bool requiretls;		/* RFC 8689 MAIL FROM REQUIRETLS */
	bool tls_required_no;		/* RFC 8689 "TLS-Required: No" (and no REQUIRETLS) */
	uint8_t ret;			/* enum spool_ret */
	const char *envid;		/* ENVID= value or "" */
	const char *pool;		/* egress pool chosen by the pool header, or
					 * NULL/"": none. Stored (after envid) only
					 * when set, under SPOOL_RECORD_FLAG_POOL, so
					 * older records read as they were. */
	size_t rcpt_count;		/* at least 1 */
	const struct spool_rcpt *rcpts;
	const uint8_t *body;		/* message content as received */
	size_t body_len;
};

/* A recipient's state change. attempts, next_attempt and reply matter for
 * DEFERRED. reply (the last deferral's reply, at most SPOOL_REPLY_MAX
 * bytes) is an optional trailing string: NULL or "" writes none, and a
 * record without one decodes with reply NULL. */
struct spool_outcome {
	const char *queue_id;
	uint32_t rcpt_index;
	uint8_t status;			/* enum spool_status, not PENDING */
	uint32_t attempts;		/* delivery attempts so far */
	int64_t next_attempt;		/* unix seconds of the next try */
	const char *reply;		/* last reply, or NULL */
};
#define SPOOL_REPLY_MAX 1024

struct spool_record {
	enum spool_record_type type;
	uint32_t length;		/* header + payload bytes */
	struct spool_message message;	/* when type == MESSAGE */
	struct spool_outcome outcome;	/* when type == OUTCOME */
	struct spool_rcpt *rcpt_heap;	/* private: owned rcpts array or NULL */
};

/* spool_crc32c - CRC32C (Castagnoli) of len bytes, continuing from crc
 * (start with 0). Uses the SSE4.2 instruction when the CPU has it. */
uint32_t spool_crc32c(uint32_t crc, const void *data, size_t len);

/* Sizes in bytes of the encoded record (header included), or 0 when the
 * input cannot be encoded (too long, embedded NUL, no recipients ...). */
size_t spool_record_message_size(const struct spool_message *msg);
size_t spool_record_outcome_size(const struct spool_outcome *out);

/* Encode into buf; return the byte count, -EINVAL for unencodable input or
 * -ENOSPC when cap is too small. */
ssize_t spool_record_encode_message(const struct spool_message *msg,
				    uint8_t *buf, size_t cap);
ssize_t spool_record_encode_outcome(const struct spool_outcome *out,
				    uint8_t *buf, size_t cap);

/* spool_record_peek - check only the header at buf; returns the full record
 * length, SPOOL_RECORD_SHORT if fewer than 16 bytes, SPOOL_RECORD_BAD. */
ssize_t spool_record_peek(const uint8_t *buf, size_t len);

/* spool_record_decode - decode the record at the start of buf, CRC checked.
 * Returns bytes consumed (>0), SPOOL_RECORD_SHORT or SPOOL_RECORD_BAD. On
 * success the caller must call spool_record_clear(rec) afterwards. */
ssize_t spool_record_decode(const uint8_t *buf, size_t len,
			    struct spool_record *rec);

/* spool_record_decode_scratch - as spool_record_decode, but recipients go
 * into scratch when they fit (no allocation); check_crc false skips the CRC
 * for bytes already verified. */
ssize_t spool_record_decode_scratch(const uint8_t *buf, size_t len,
				    struct spool_record *rec, bool check_crc,
				    struct spool_rcpt *scratch, size_t scratch_cap);

/* spool_record_clear - free what decode allocated; rec may be NULL. */
void spool_record_clear(struct spool_record *rec);

const char *spool_status_name(uint8_t status);

#endif
