/*
 * cluster_plan - pure decisions of the cluster; see cluster_plan.h.
 */
#include "cluster_plan.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

int cluster_address_parse(const char *text, char *host, size_t hostlen, int *port)
{
	const char *colon, *start = text, *end;

	if (text[0] == '[') {
		end = strchr(text, ']');
		if (end == NULL || end[1] != ':')
			return -EINVAL;
		start = text + 1;
		colon = end + 1;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL || memchr(text, ':', (size_t)(colon - text)) != NULL)
			return -EINVAL;
		end = colon;
	}
	size_t n = (size_t)(end - start);
	if (n == 0 || n >= hostlen)
		return -EINVAL;
	char *stop;
	long p = strtol(colon + 1, &stop, 10);
	if (colon[1] == '\0' || *stop != '\0' || p < 1 || p > 65535)
		return -EINVAL;
	memcpy(host, start, n);
	host[n] = '\0';
	*port = (int)p;
	return 0;
}

bool cluster_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)name[i]) && name[i] != '.' && name[i] != '_' && name[i] != '-')
			return false;
	return true;
}

int cluster_password_read(const char *path, char **out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char line[1024];

	*out = NULL;
	if (f == NULL) {
		int e = errno;
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(e));
		return -e;
	}
	bool got = fgets(line, sizeof(line), f) != NULL;
	fclose(f);
	line[got ? strcspn(line, "\r\n") : 0] = '\0';
	if (line[0] == '\0') {
		snprintf(err, errlen, "%s: the first line (the password) is empty", path);
		return -EINVAL;
	}
	*out = xstrdup(line);
	memset(line, 0, sizeof(line));
	return 0;
}

int64_t cluster_fallback_interval(int64_t interval_us, unsigned nodes)
{
	if (interval_us <= 0 || nodes <= 1)
		return interval_us;
	if (interval_us > INT64_MAX / nodes)
		return INT64_MAX;
	return interval_us * (int64_t)nodes;
}

uint32_t cluster_fallback_max(uint32_t max, unsigned nodes)
{
	if (max == 0 || nodes <= 1)
		return max;
	return max / nodes > 0 ? max / nodes : 1;
}

int64_t cluster_window_cap(int64_t window, int64_t window_us, int64_t interval_us)
{
	if (interval_us <= 0 || window_us <= 0 || window < 0)
		return 0;
	/* 128-bit products: a window number of today's clock times a window
	 * length overflows no 64-bit word, but stay safe for any input. */
	__int128 hi = ((__int128)(window + 1) * window_us) / interval_us;
	__int128 lo = ((__int128)window * window_us) / interval_us;
	return (int64_t)(hi - lo);
}

int64_t cluster_credit_request(int64_t credits, int64_t batch)
{
	int64_t low = batch / 2 > 0 ? batch / 2 : 1;

	if (batch <= 0 || credits >= low)
		return 0;
	return batch - (credits > 0 ? credits : 0);
}

uint32_t cluster_lease_target(uint32_t open, uint32_t max, bool wanted)
{
	uint32_t want = open + (wanted ? 1 : 0);

	if (max == 0)
		return 0;
	return want < max ? want : max;
}

int64_t cluster_backoff_next(int64_t current_ms, int64_t max_ms)
{
	int64_t next = current_ms <= 0 ? 100 : current_ms * 2;

	return next < max_ms ? next : max_ms;
}

enum cluster_suspension_action cluster_suspension_decide(int64_t local, int64_t synced, int64_t remote, int64_t now,
							 int64_t wall, bool *write)
{
	bool active = local > now, remote_active = remote > wall;
	int64_t local_wall = wall + (local - now), remote_mono = now + (remote - wall);

	*write = false;
	if (active && local != synced) {
		*write = !remote_active || remote < local_wall - CLUSTER_SUSPEND_SLACK_MS;
		return CLUSTER_SUSPENSION_PUBLISH;
	}
	if (!active && synced > now) {
		*write = true;
		return CLUSTER_SUSPENSION_PUBLISH_RESUME;
	}
	if (remote_active && (!active || remote_mono > local + CLUSTER_SUSPEND_SLACK_MS))
		return CLUSTER_SUSPENSION_APPLY;
	if (remote == 0 && active && local == synced)
		return CLUSTER_SUSPENSION_RESUME;
	return CLUSTER_SUSPENSION_NONE;
}
