/*
 * delivery_log - JSON delivery lines; see delivery_log.h.
 *
 * The descriptor is a global that workers read with an atomic load. A
 * reopen opens the new file and dup2()s it over the descriptor in use, so
 * a writer always writes a whole line to the old file or the new one and
 * never to a closed (or reused) descriptor.
 */
#include "delivery_log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DELIVERY_LOG_LINE 4096

static _Atomic int delivery_log_fd = -1;

int delivery_log_open(const char *path)
{
	int old = atomic_load(&delivery_log_fd);

	if (path == NULL || path[0] == '\0') {
		atomic_store(&delivery_log_fd, -1);
		/* A writer may still hold old: leave it open (one fd, at most
		 * once per reconfiguration to ""). */
		return 0;
	}
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	if (old < 0) {
		atomic_store(&delivery_log_fd, fd);
		return 0;
	}
	int rc = dup2(fd, old) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

void delivery_log_message_id(const char *msg, size_t len, char *out, size_t size)
{
	const char *p = msg, *end = msg + len;

	out[0] = '\0';
	while (p < end && *p != '\r' && *p != '\n') {       /* an empty line ends the header */
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *next = eol != NULL ? eol + 1 : end;
		if ((size_t)(end - p) > 11 && strncasecmp(p, "Message-ID:", 11) == 0) {
			/* The value may be folded onto the next line(s). */
			const char *v = p + 11, *vend = next;
			while (vend < end && (*vend == ' ' || *vend == '\t')) {
				const char *e2 = memchr(vend, '\n', (size_t)(end - vend));
				vend = e2 != NULL ? e2 + 1 : end;
			}
			const char *lt = memchr(v, '<', (size_t)(vend - v));
			const char *gt = lt != NULL ? memchr(lt, '>', (size_t)(vend - lt)) : NULL;
			if (lt == NULL || gt == NULL || (size_t)(gt - lt - 1) >= size)
				return;
			for (const char *c = lt + 1; c < gt; c++)
				if (!isgraph((unsigned char)*c))
					return;
			memcpy(out, lt + 1, (size_t)(gt - lt - 1));
			out[gt - lt - 1] = '\0';
			return;
		}
		p = next;
	}
}

/* dkim_tag - the value of tag name (e.g. "d") in a DKIM-Signature value
 * [v, end), whitespace (and folding) stripped, into out; false if absent. */
static bool dkim_tag(const char *v, const char *end, const char *name, char *out, size_t size)
{
	size_t nlen = strlen(name);

	while (v < end) {
		const char *semi = memchr(v, ';', (size_t)(end - v));
		const char *tend = semi != NULL ? semi : end;
		while (v < tend && isspace((unsigned char)*v))
			v++;
		if ((size_t)(tend - v) > nlen && strncmp(v, name, nlen) == 0) {
			const char *p = v + nlen;
			while (p < tend && isspace((unsigned char)*p))
				p++;
			if (p < tend && *p == '=') {
				size_t n = 0;
				for (p++; p < tend && n + 1 < size; p++)
					if (isgraph((unsigned char)*p) && *p != ',')
						out[n++] = *p;
				out[n] = '\0';
				return n > 0;
			}
		}
		v = semi != NULL ? semi + 1 : end;
	}
	return false;
}

void delivery_log_dkim(const char *msg, size_t len, char *out, size_t size)
{
	const char *p = msg, *end = msg + len;
	size_t used = 0;

	out[0] = '\0';
	while (p < end && *p != '\r' && *p != '\n') {       /* an empty line ends the header */
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *next = eol != NULL ? eol + 1 : end;
		while (next < end && (*next == ' ' || *next == '\t')) {     /* folded */
			eol = memchr(next, '\n', (size_t)(end - next));
			next = eol != NULL ? eol + 1 : end;
		}
		char d[256], s[64], pair[330];
		if ((size_t)(end - p) > 15 && strncasecmp(p, "DKIM-Signature:", 15) == 0 &&
		    dkim_tag(p + 15, next, "d", d, sizeof(d)) && dkim_tag(p + 15, next, "s", s, sizeof(s))) {
			int n = snprintf(pair, sizeof(pair), "%s%s/%s", used ? "," : "", d, s);
			if (n < 0 || used + (size_t)n >= size)
				return;
			memcpy(out + used, pair, (size_t)n + 1);
			used += (size_t)n;
		}
		p = next;
	}
}

bool delivery_log_enabled(void)
{
	return atomic_load_explicit(&delivery_log_fd, memory_order_relaxed) >= 0;
}

int delivery_log_identity(uint64_t *dev, uint64_t *ino)
{
	int fd = atomic_load(&delivery_log_fd);
	struct stat st;

	if (fd < 0)
		return -ENOENT;
	if (fstat(fd, &st) < 0)
		return -errno;
	*dev = (uint64_t)st.st_dev;
	*ino = (uint64_t)st.st_ino;
	return 0;
}

/* json_string - append s as a JSON string (or null) to dst[*len..size),
 * keeping room for the closing bytes; cuts long values. */
static void json_string(char *dst, size_t size, size_t *len, const char *s)
{
	size_t n = *len;
	size_t limit = size - 64;          /* room for "..." and the rest of the line */

	if (s == NULL) {
		n += (size_t)snprintf(dst + n, size - n, "null");
		*len = n;
		return;
	}
	dst[n++] = '"';
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && n < limit; p++) {
		if (*p == '"' || *p == '\\') {
			dst[n++] = '\\';
			dst[n++] = (char)*p;
		} else if (*p < 0x20 || *p == 0x7f) {
			n += (size_t)snprintf(dst + n, size - n, "\\u%04x", *p);
		} else {
			dst[n++] = (char)*p;
		}
	}
	dst[n++] = '"';
	*len = n;
}

/* delivery_log_format - one entry as one JSON line. */
size_t delivery_log_format(char *dst, size_t size, const struct delivery_log_entry *e)
{
	static const char *const keys[] = { "queue_id", "message_id", "sender", "recipient", "domain", "mx", "ip",
					    "tls", "tls_policy", "status", "enhanced_code", "reply", "dkim", "category" };
	const char *vals[] = { e->queue_id, e->message_id, e->sender, e->recipient, e->domain, e->mx, e->ip,
			       e->tls != NULL ? e->tls : "unknown", e->tls_policy, e->status, e->enhanced_code, e->reply,
			       e->dkim, e->category };
	time_t sec = (time_t)(e->ts_ms / 1000);
	struct tm tm;
	size_t n;

	gmtime_r(&sec, &tm);
	n = (size_t)snprintf(dst, size, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
			     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			     tm.tm_sec, (int)(e->ts_ms % 1000));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		/* Each value is cut to leave room: the limit shrinks as we go. */
		size_t room = size - n;
		size_t share = room / (sizeof(keys) / sizeof(keys[0]) - i);
		size_t cap = n + (share > 96 ? share : 96);
		n += (size_t)snprintf(dst + n, size - n, ",\"%s\":", keys[i]);
		json_string(dst, cap < size ? cap : size, &n, vals[i]);
	}
	n += (size_t)snprintf(dst + n, size - n, ",\"code\":%d,\"delay\":%.3f,\"attempt\":%u}\n",
			      e->code, e->delay_s, e->attempt);
	if (n >= size) {                   /* cannot happen with size >= 512; stay safe */
		n = size - 1;
		dst[n - 1] = '\n';
	}
	return n;
}

void delivery_log_write(const struct delivery_log_entry *e)
{
	char line[DELIVERY_LOG_LINE];
	int fd = atomic_load(&delivery_log_fd);

	if (fd < 0)
		return;
	size_t n = delivery_log_format(line, sizeof(line), e);
	ssize_t ignored = write(fd, line, n);
	(void)ignored;
}

void delivery_log_suppressed(const char *sender, const char *recipient, const char *domain,
			     const char *reason)
{
	char reply[512];
	struct timespec now;

	if (!delivery_log_enabled())
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	snprintf(reply, sizeof(reply), "Recipient address suppressed: %s",
		 reason != NULL && reason[0] != '\0' ? reason : "on the suppression list");
	delivery_log_write(&(struct delivery_log_entry){
		.ts_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000,
		.sender = sender, .recipient = recipient, .domain = domain,
		.status = "suppressed", .code = 550, .enhanced_code = "5.7.1", .reply = reply,
	});
}
