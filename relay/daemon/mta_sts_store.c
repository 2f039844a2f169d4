/*
 * mta_sts_store - the durable MTA-STS policy cache; see mta_sts_store.h.
 */
#include "mta_sts_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file_io.h"

/* store_path - dir/domain[suffix]; false when domain is no file name. */
static bool store_path(char *out, size_t size, const char *dir, const char *domain, const char *suffix)
{
	size_t n = strlen(domain);
	if (!mta_sts_domain_valid(domain, n) || domain[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (domain[i] >= 'A' && domain[i] <= 'Z')
			return false;
	int len = snprintf(out, size, "%s/%s%s", dir, domain, suffix);
	return len > 0 && (size_t)len < size;
}

/* id_valid - 1 to 32 letters and digits, as the TXT record's id. */
static bool id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > MTA_STS_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') || (id[i] >= '0' && id[i] <= '9')))
			return false;
	return true;
}

int mta_sts_store_save(const char *dir, const char *domain, const char *id, int64_t fetched_s,
		       const char *policy, size_t len)
{
	char path[4096], header[MTA_STS_CACHE_HEADER_MAX];
	if (!store_path(path, sizeof(path), dir, domain, ""))
		return -EINVAL;
	size_t hlen = mta_sts_cache_header(header, sizeof(header), id, fetched_s);
	if (hlen == 0 || len > MTA_STS_POLICY_MAX || !id_valid(id) || fetched_s < 0)
		return -EINVAL;
	struct iovec parts[] = { { header, hlen }, { (void *)policy, len } };
	return file_replace(dir, path, parts, 2, 0600);
}

int mta_sts_store_load(const char *dir, const char *domain, struct mta_sts_cached *out, const char **why)
{
	char path[4096];
	if (!store_path(path, sizeof(path), dir, domain, ""))
		return -EINVAL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t cap = MTA_STS_CACHE_HEADER_MAX + MTA_STS_POLICY_MAX + 1, len = 0;
	char *buf = malloc(cap);
	if (buf == NULL) {
		close(fd);
		return -ENOMEM;
	}
	int rc = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = -errno;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == cap) {
			rc = -EFBIG;
			break;
		}
	}
	close(fd);
	if (rc == 0)
		rc = mta_sts_cache_parse(buf, len, out, why);
	free(buf);
	return rc;
}

int mta_sts_store_remove(const char *dir, const char *domain)
{
	char path[4096];
	if (!store_path(path, sizeof(path), dir, domain, ""))
		return -EINVAL;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}
