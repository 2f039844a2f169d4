/*
 * spool_index - queue id -> live message map; see spool_index.h.
 *
 * The table stays at most 70% full, so probes stay short; deletion shifts
 * later members of the cluster back so lookups never need tombstones.
 */
#include "spool_index.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xalloc.h"

/* index_hash - FNV-1a of the id, mixed so low bits spread well. */
static uint64_t index_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 0x100000001b3ull;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	return h ^ (h >> 32);
}

struct spool_entry *spool_index_find(const struct spool_index *ix,
				     const char *queue_id)
{
	if (ix->cap == 0)
		return NULL;
	uint32_t h = (uint32_t)index_hash(queue_id);
	size_t mask = ix->cap - 1;

	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct spool_entry *e = ix->slots[i];
		if (e == NULL)
			return NULL;
		if (e->hash == h && strcmp(spool_entry_queue_id(e), queue_id) == 0)
			return e;
	}
}

/* index_place - put e into the first free slot of its probe sequence. */
static void index_place(struct spool_entry **slots, size_t cap,
			struct spool_entry *e)
{
	size_t mask = cap - 1;
	size_t i = e->hash & mask;

	while (slots[i] != NULL)
		i = (i + 1) & mask;
	slots[i] = e;
}

/* index_grow - double the table (start at 1024 slots). */
static void index_grow(struct spool_index *ix)
{
	size_t cap = ix->cap ? ix->cap * 2 : 1024;
	struct spool_entry **slots = xcalloc(cap, sizeof(*slots));

	for (size_t i = 0; i < ix->cap; i++)
		if (ix->slots[i] != NULL)
			index_place(slots, cap, ix->slots[i]);
	free(ix->slots);
	ix->slots = slots;
	ix->cap = cap;
}

struct spool_entry *spool_index_insert(struct spool_index *ix,
				       const char *queue_id,
				       uint32_t rcpt_count)
{
	if ((ix->count + 1) * 10 > ix->cap * 7)
		index_grow(ix);
	size_t id_len = strnlen(queue_id, SPOOL_QUEUE_ID_MAX);
	struct spool_entry *e = xcalloc(1, sizeof(*e) + rcpt_count * sizeof(e->state[0]) +
				       id_len + 1);
	e->hash = (uint32_t)index_hash(queue_id);
	e->rcpt_count = rcpt_count;
	memcpy((char *)spool_entry_queue_id(e), queue_id, id_len);   /* NUL: calloc */
	index_place(ix->slots, ix->cap, e);
	ix->count++;
	return e;
}

/* reply_grow - double the reply table (start at 64 buckets). */
static void reply_grow(struct spool_index *ix)
{
	size_t nb = ix->reply_buckets ? ix->reply_buckets * 2 : 64;
	struct spool_reply **t = xcalloc(nb, sizeof(*t));

	for (size_t i = 0; i < ix->reply_buckets; i++) {
		struct spool_reply *r = ix->replies[i];
		while (r != NULL) {
			struct spool_reply *next = r->next;
			r->next = t[r->hash & (nb - 1)];
			t[r->hash & (nb - 1)] = r;
			r = next;
		}
	}
	free(ix->replies);
	ix->replies = t;
	ix->reply_buckets = nb;
}

/* reply_intern - a reference to the shared copy of text. */
static struct spool_reply *reply_intern(struct spool_index *ix, const char *text)
{
	uint64_t h = index_hash(text);

	for (struct spool_reply *r = ix->reply_buckets ? ix->replies[h & (ix->reply_buckets - 1)] : NULL;
	     r != NULL; r = r->next) {
		if (r->hash == h && strcmp(r->text, text) == 0) {
			r->refs++;
			return r;
		}
	}
	if (ix->reply_count >= ix->reply_buckets)
		reply_grow(ix);
	size_t len = strlen(text);
	struct spool_reply *r = xmalloc(sizeof(*r) + len + 1);
	memcpy(r->text, text, len + 1);
	r->hash = h;
	r->refs = 1;
	r->next = ix->replies[h & (ix->reply_buckets - 1)];
	ix->replies[h & (ix->reply_buckets - 1)] = r;
	ix->reply_count++;
	return r;
}

/* reply_release - drop one reference; the last frees it. */
static void reply_release(struct spool_index *ix, struct spool_reply *r)
{
	if (r == NULL || --r->refs > 0)
		return;
	struct spool_reply **p = &ix->replies[r->hash & (ix->reply_buckets - 1)];
	while (*p != r)
		p = &(*p)->next;
	*p = r->next;
	ix->reply_count--;
	free(r);
}

void spool_index_set_reply(struct spool_index *ix, struct spool_entry *e,
			   const char *text)
{
	if (e->reply != NULL && text != NULL && strcmp(e->reply->text, text) == 0)
		return;
	reply_release(ix, e->reply);
	e->reply = text != NULL && text[0] != '\0' ? reply_intern(ix, text) : NULL;
}

void spool_index_remove(struct spool_index *ix, struct spool_entry *e)
{
	size_t mask = ix->cap - 1;
	size_t i = e->hash & mask;

	while (ix->slots[i] != e) {
		if (ix->slots[i] == NULL)
			log_panic("spool index: removing an absent entry %s",
				  spool_entry_queue_id(e));
		i = (i + 1) & mask;
	}
	ix->slots[i] = NULL;
	/* Backward shift: move later cluster members whose home slot is not
	 * in (i, j] into the hole, so every probe sequence stays unbroken. */
	for (size_t j = (i + 1) & mask; ix->slots[j] != NULL; j = (j + 1) & mask) {
		size_t home = ix->slots[j]->hash & mask;
		bool between = i <= j ? (home > i && home <= j)
				      : (home > i || home <= j);
		if (!between) {
			ix->slots[i] = ix->slots[j];
			ix->slots[j] = NULL;
			i = j;
		}
	}
	ix->count--;
	reply_release(ix, e->reply);
	free(e);
}

void spool_index_free(struct spool_index *ix)
{
	if (ix == NULL)
		return;
	for (size_t i = 0; i < ix->cap; i++)
		free(ix->slots[i]);
	free(ix->slots);
	for (size_t i = 0; i < ix->reply_buckets; i++) {
		struct spool_reply *r = ix->replies[i];
		while (r != NULL) {
			struct spool_reply *next = r->next;
			free(r);
			r = next;
		}
	}
	free(ix->replies);
	memset(ix, 0, sizeof(*ix));
}
