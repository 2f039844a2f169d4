/*
 * cluster_reply - decode the cluster's Redis answers; see cluster_reply.h.
 */
#include "cluster_reply.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cluster_reply_rate(const redisReply *r, struct cluster_rate_answer *out)
{
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3)
		return -EPROTO;
	for (size_t i = 0; i < 3; i++)
		if (r->element[i]->type != REDIS_REPLY_INTEGER || r->element[i]->integer < 0)
			return -EPROTO;
	*out = (struct cluster_rate_answer){ r->element[0]->integer, r->element[1]->integer, r->element[2]->integer };
	if (out->granted > out->cap || out->used > out->cap)
		return -EPROTO;
	return 0;
}

/* node_len - the node part of a lease member "node:i" (0: not one). */
static size_t node_len(const redisReply *m)
{
	if (m->type != REDIS_REPLY_STRING)
		return 0;
	const char *colon = memrchr(m->str, ':', m->len);
	return colon != NULL ? (size_t)(colon - m->str) : 0;
}

static bool same_node(const redisReply *a, size_t alen, const redisReply *b)
{
	return node_len(b) == alen && memcmp(a->str, b->str, alen) == 0;
}

int cluster_reply_lease(const redisReply *r, uint32_t *held, char *holders, size_t n)
{
	size_t len = 0;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_INTEGER ||
	    r->element[0]->integer < 0 || r->element[0]->integer > UINT32_MAX || n == 0)
		return -EPROTO;
	*held = (uint32_t)r->element[0]->integer;
	holders[0] = '\0';
	for (size_t i = 1; i < r->elements; i++) {
		const redisReply *m = r->element[i];
		size_t nl = node_len(m);
		bool seen = false;
		if (nl == 0)
			continue;
		for (size_t j = 1; j < i && !seen; j++)
			seen = same_node(m, nl, r->element[j]);
		if (seen)
			continue;
		unsigned count = 0;
		for (size_t j = i; j < r->elements; j++)
			count += same_node(m, nl, r->element[j]);
		int w = snprintf(holders + len, n - len, "%s%.*s=%u", len ? " " : "", (int)nl, m->str, count);
		if (w < 0 || (size_t)w >= n - len) {
			holders[len] = '\0';
			break;
		}
		len += (size_t)w;
	}
	return 0;
}

int cluster_reply_suspension(const redisReply *r, int64_t *until_wall_ms)
{
	*until_wall_ms = 0;
	if (r == NULL)
		return -EPROTO;
	if (r->type == REDIS_REPLY_NIL)
		return 0;
	if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 19)
		return -EPROTO;
	char *end;
	long long v = strtoll(r->str, &end, 10);
	if (*end != '\0' || v <= 0)
		return -EPROTO;
	*until_wall_ms = v;
	return 0;
}

int cluster_reply_stream_entry(const redisReply *r, struct cluster_stream_entry *out)
{
	*out = (struct cluster_stream_entry){ NULL, NULL, NULL, NULL };
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_ARRAY || r->element[1]->elements % 2 != 0)
		return -EPROTO;
	out->id = r->element[0]->str;
	const redisReply *f = r->element[1];
	for (size_t i = 0; i + 1 < f->elements; i += 2) {
		if (f->element[i]->type != REDIS_REPLY_STRING || f->element[i + 1]->type != REDIS_REPLY_STRING)
			return -EPROTO;
		const char *name = f->element[i]->str, *value = f->element[i + 1]->str;
		if (strcmp(name, "node") == 0)
			out->node = value;
		else if (strcmp(name, "op") == 0)
			out->op = value;
		else if (strcmp(name, "line") == 0)
			out->line = value;
	}
	if (out->node == NULL || out->op == NULL || out->line == NULL ||
	    (strcmp(out->op, "+") != 0 && strcmp(out->op, "-") != 0))
		return -EPROTO;
	return 0;
}
