/*
 * spool_recover - scan all shards of a spool; see spool_recover.h.
 *
 * Each shard is opened read-only (which scans and indexes it, CRC checked),
 * then its live messages are visited in disk order, one read per segment,
 * and the shard is closed before the next: memory holds one shard's index
 * at a time, never message bodies.
 */
#include "spool_recover.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "xalloc.h"

struct recover_count {
	spool_live_fn fn;
	void *ctx;
	int count;
};

static int recover_count_one(void *ctx, const struct spool_recovered *r)
{
	struct recover_count *c = ctx;

	c->count++;
	return c->fn(c->ctx, r);
}

static int cmp_unsigned(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;

	return x < y ? -1 : x > y;
}

int spool_list_shards(const char *spool_dir, unsigned **ids)
{
	DIR *d = opendir(spool_dir);
	unsigned *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;

	*ids = NULL;
	if (d == NULL)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d)) != NULL) {
		unsigned id;
		char extra;
		if (de->d_name[0] != 'w' ||
		    sscanf(de->d_name, "w%u%c", &id, &extra) != 1 ||
		    de->d_name[1] < '0' || de->d_name[1] > '9')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[n++] = id;
	}
	closedir(d);
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_unsigned);
	*ids = v;
	return (int)n;
}

int spool_recover(const char *spool_dir, unsigned worker_count,
		  spool_live_fn fn, void *ctx)
{
	const struct spool_options ro = { .read_only = true };
	struct recover_count c = { fn, ctx, 0 };
	unsigned *ids;
	int n = spool_list_shards(spool_dir, &ids);
	int rc = n < 0 ? n : 0;

	for (int i = 0; rc == 0 && i < n; i++) {
		struct spool_shard *s;
		rc = spool_shard_open(spool_dir, ids[i], &ro, &s);
		if (rc < 0) {
			log_error("spool_recover_failed", "dir=%s worker=%u error=%s",
				  spool_dir, ids[i], strerror(-rc));
			break;
		}
		if (ids[i] >= worker_count)
			log_warn("spool_orphan_shard", "dir=%s worker=%u workers=%u",
				 spool_dir, ids[i], worker_count);
		rc = spool_shard_foreach_live(s, recover_count_one, &c);
		spool_shard_close(s);
	}
	free(ids);
	return rc != 0 ? rc : c.count;
}

int spool_remove_shard(const char *spool_dir, unsigned worker_id)
{
	char dir[PATH_MAX], path[PATH_MAX + 300];
	struct dirent *de;

	if (snprintf(dir, sizeof(dir), "%s/w%u", spool_dir, worker_id) >=
	    (int)sizeof(dir))
		return -ENAMETOOLONG;
	DIR *d = opendir(dir);
	if (d == NULL)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "seg-", 4) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (unlink(path) < 0 && errno != ENOENT) {
			int err = -errno;
			closedir(d);
			return err;
		}
	}
	closedir(d);
	if (rmdir(dir) < 0)
		return -errno;
	int fd = open(spool_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}
