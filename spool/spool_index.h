/*
 * spool_index - the shard's in-memory map: queue id -> live message
 * (location + recipient states). Internal to the spool library.
 *
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones), keyed by the queue id string. The index owns its entries:
 * spool_index_insert() allocates one (with its state array in the same
 * block), spool_index_remove() frees it. No message bodies are kept.
 */
#ifndef RINGMAIL_SPOOL_INDEX_H
#define RINGMAIL_SPOOL_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "spool_record.h"
#include "spool_shard.h"

/* A last reply shared by every entry that has it (a destination that is
 * down gives thousands of messages the same one): interned, counted. */
struct spool_reply {
	struct spool_reply *next;	/* hash chain */
	uint64_t hash;
	uint32_t refs;
	char text[];
};

/* One per live message, so its size counts (docs/SPOOL.md): 40 bytes, the
 * states, then the queue id's own bytes (not a 32-byte array): 80 bytes
 * with one recipient, a size class below the fixed-array layout's 96. */
struct spool_entry {
	struct spool_reply *reply;	/* the last deferral's reply, or NULL */
	uint64_t segment;
	uint64_t offset;
	uint32_t hash;			/* of the queue id */
	uint32_t length;
	uint32_t rcpt_count;
	uint32_t final_count;
	struct spool_rcpt_state state[];	/* rcpt_count entries, then the
						 * NUL-terminated queue id */
};

/* spool_entry_queue_id - e's queue id, stored after its states. */
static inline const char *spool_entry_queue_id(const struct spool_entry *e)
{
	return (const char *)&e->state[e->rcpt_count];
}

struct spool_index {
	struct spool_entry **slots;	/* cap slots, NULL = empty */
	size_t cap;			/* power of two, or 0 */
	size_t count;
	struct spool_reply **replies;	/* interned replies, chained */
	size_t reply_buckets, reply_count;
};

/* spool_index_find - the entry of queue_id or NULL. */
struct spool_entry *spool_index_find(const struct spool_index *ix,
				     const char *queue_id);

/* spool_index_insert - new entry (states PENDING); the id must not be
 * present. Out of memory is fatal. */
struct spool_entry *spool_index_insert(struct spool_index *ix,
				       const char *queue_id,
				       uint32_t rcpt_count);

/* spool_index_remove - unlink and free e (which must be in ix). */
void spool_index_remove(struct spool_index *ix, struct spool_entry *e);

/* spool_index_set_reply - e's last reply becomes text (NULL or "": none). */
void spool_index_set_reply(struct spool_index *ix, struct spool_entry *e,
			   const char *text);

/* spool_index_free - free every entry and the table. */
void spool_index_free(struct spool_index *ix);

#endif
