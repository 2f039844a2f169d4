/*
 * bench_common - shared pieces of the bench tools; see bench_common.h.
 */
#include "bench_common.h"
#include "log.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int bench_ring_init(struct io_uring *ring, unsigned entries, unsigned *flags_used)
{
	/* Best first: no task work interrupts, then cooperative, then plain. */
	static const unsigned tries[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int ret = -EINVAL;

	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		struct io_uring_params params;

		memset(&params, 0, sizeof(params));
		params.flags = tries[i] | IORING_SETUP_CQSIZE;
		params.cq_entries = entries * 8;
		ret = io_uring_queue_init_params(entries, ring, &params);
		if (ret == 0) {
			if (flags_used != NULL)
				*flags_used = tries[i];
			return 0;
		}
	}
	return ret;
}

struct io_uring_sqe *bench_ring_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	while (sqe == NULL) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	return sqe;
}

int bench_buf_ring_setup(struct io_uring *ring, struct bench_buf_ring *buffers,
			 unsigned count, unsigned size, int group)
{
	struct io_uring_buf_reg reg;
	void *mapped;
	int ret;

	memset(buffers, 0, sizeof(*buffers));
	/* The kernel wants the ring page aligned and a power-of-two count. */
	if (count == 0 || (count & (count - 1)) != 0)
		return -EINVAL;
	if (posix_memalign(&mapped, 4096, count * sizeof(struct io_uring_buf)) != 0)
		return -ENOMEM;
	buffers->memory = malloc((size_t)count * size);
	if (buffers->memory == NULL) {
		free(mapped);
		return -ENOMEM;
	}
	buffers->ring = mapped;
	buffers->count = count;
	buffers->size = size;
	buffers->group = group;
	io_uring_buf_ring_init(buffers->ring);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)buffers->ring;
	reg.ring_entries = count;
	reg.bgid = (uint16_t)group;
	ret = io_uring_register_buf_ring(ring, &reg, 0);
	if (ret != 0) {
		free(buffers->memory);
		free(buffers->ring);
		memset(buffers, 0, sizeof(*buffers));
		return ret;
	}
	for (unsigned i = 0; i < count; i++)
		io_uring_buf_ring_add(buffers->ring, bench_buf_ring_data(buffers, i), size,
				      (unsigned short)i, io_uring_buf_ring_mask(count), (int)i);
	io_uring_buf_ring_advance(buffers->ring, (int)count);
	return 0;
}

char *bench_buf_ring_data(struct bench_buf_ring *buffers, unsigned id)
{
	return buffers->memory + (size_t)id * buffers->size;
}

void bench_buf_ring_recycle(struct bench_buf_ring *buffers, unsigned id)
{
	io_uring_buf_ring_add(buffers->ring, bench_buf_ring_data(buffers, id), buffers->size,
			      (unsigned short)id, io_uring_buf_ring_mask(buffers->count), 0);
	io_uring_buf_ring_advance(buffers->ring, 1);
}

void bench_buf_ring_free(struct io_uring *ring, struct bench_buf_ring *buffers)
{
	if (buffers == NULL || buffers->ring == NULL)
		return;
	io_uring_unregister_buf_ring(ring, buffers->group);
	free(buffers->memory);
	free(buffers->ring);
	memset(buffers, 0, sizeof(*buffers));
}

/* clock_us - one clock in microseconds. */
static uint64_t clock_us(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t bench_wall_us(void)
{
	return clock_us(CLOCK_REALTIME);
}

uint64_t bench_mono_us(void)
{
	return clock_us(CLOCK_MONOTONIC);
}

void bench_rng_seed(struct bench_rng *rng, uint64_t seed)
{
	rng->state = seed;
}

uint64_t bench_rng_next(struct bench_rng *rng)
{
	uint64_t z = (rng->state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

double bench_rng_unit(struct bench_rng *rng)
{
	return (double)(bench_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

int bench_rng_percent(struct bench_rng *rng, double percent)
{
	if (percent <= 0)
		return 0;
	if (percent >= 100)
		return 1;
	return bench_rng_unit(rng) * 100.0 < percent;
}

/* hist_bucket - index of value: the power of two, then BENCH_HIST_BITS
 * bits below it. Values below BENCH_HIST_SUB are their own bucket. */
static unsigned hist_bucket(uint64_t value)
{
	if (value < BENCH_HIST_SUB)
		return (unsigned)value;
	unsigned msb = 63u - (unsigned)__builtin_clzll(value);
	unsigned sub = (unsigned)(value >> (msb - BENCH_HIST_BITS)) & (BENCH_HIST_SUB - 1);

	return (msb - BENCH_HIST_BITS + 1) * BENCH_HIST_SUB + sub;
}

/* hist_bucket_value - the upper end of bucket index, so quantiles round up. */
static uint64_t hist_bucket_value(unsigned index)
{
	if (index < BENCH_HIST_SUB)
		return index;
	unsigned msb = index / BENCH_HIST_SUB + BENCH_HIST_BITS - 1;
	uint64_t sub = index % BENCH_HIST_SUB;
	uint64_t low = (1ULL << msb) | (sub << (msb - BENCH_HIST_BITS));

	return low + (1ULL << (msb - BENCH_HIST_BITS)) - 1;
}

void bench_hist_add(struct bench_hist *hist, uint64_t value)
{
	hist->buckets[hist_bucket(value)]++;
	hist->count++;
	hist->sum += value;
	if (value > hist->max)
		hist->max = value;
}

uint64_t bench_hist_quantile(const struct bench_hist *hist, double q)
{
	if (hist->count == 0)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)hist->count + 0.999999);
	uint64_t seen = 0;

	if (rank == 0)
		rank = 1;
	for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
		seen += hist->buckets[i];
		if (seen >= rank) {
			uint64_t value = hist_bucket_value(i);
			return value < hist->max ? value : hist->max;
		}
	}
	return hist->max;
}

int bench_hist_json(const struct bench_hist *hist, char *buf, size_t size)
{
	return snprintf(buf, size,
			"{\"count\":%llu,\"p50\":%llu,\"p90\":%llu,\"p99\":%llu,"
			"\"p999\":%llu,\"max\":%llu}",
			(unsigned long long)hist->count,
			(unsigned long long)bench_hist_quantile(hist, 0.50),
			(unsigned long long)bench_hist_quantile(hist, 0.90),
			(unsigned long long)bench_hist_quantile(hist, 0.99),
			(unsigned long long)bench_hist_quantile(hist, 0.999),
			(unsigned long long)hist->max);
}

void bench_hist_percentiles(const struct bench_hist *hist, FILE *out, unsigned ticks,
			    double scale)
{
	fprintf(out, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount",
		"1/(1-Percentile)");
	if (hist->count == 0)
		return;
	/* Percentiles 0, then ticks steps per halving of what is left to 100%:
	 * 50% in `ticks` steps, 25% more in `ticks`, and so on, up to the
	 * last value (as HdrHistogram prints it). */
	double p = 0, step = 50.0 / ticks;
	uint64_t seen = 0;
	unsigned i = 0, in_half = 0;

	for (;;) {
		uint64_t rank = (uint64_t)(p / 100.0 * (double)hist->count + 0.999999);

		if (rank == 0)
			rank = 1;
		while (seen + hist->buckets[i] < rank && i + 1 < BENCH_HIST_BUCKETS)
			seen += hist->buckets[i++];
		uint64_t value = hist_bucket_value(i);

		if (value > hist->max)
			value = hist->max;
		uint64_t total = seen + hist->buckets[i];

		if (total >= hist->count) {
			fprintf(out, "%12.3f %14.12f %10llu %14s\n", (double)hist->max / scale,
				1.0, (unsigned long long)hist->count, "inf");
			break;
		}
		fprintf(out, "%12.3f %14.12f %10llu %14.2f\n", (double)value / scale,
			p / 100.0, (unsigned long long)total, 1.0 / (1.0 - p / 100.0));
		p += step;
		if (++in_half == ticks) {
			in_half = 0;
			step /= 2;
		}
		/* the next percentile lies past this bucket's share: jump there */
		double here = 100.0 * (double)total / (double)hist->count;

		while (p < here) {
			p += step;
			if (++in_half == ticks) {
				in_half = 0;
				step /= 2;
			}
		}
	}
	fprintf(out, "#[Mean = %.3f, Max = %.3f, Total count = %llu]\n",
		(double)hist->sum / (double)hist->count / scale, (double)hist->max / scale,
		(unsigned long long)hist->count);
}

void bench_wire_take(struct bench_wire *w, struct tls_session *tls)
{
	size_t len;
	const void *data = tls_pending_ciphertext(tls, &len);

	if (len == 0)
		return;
	if (w->len + len > w->cap) {
		if (w->cap == 0)
			w->cap = 4096;
		while (w->len + len > w->cap)
			w->cap *= 2;
		w->buf = realloc(w->buf, w->cap);
		if (w->buf == NULL)
			log_fatal("out of memory");
	}
	memcpy(w->buf + w->len, data, len);
	w->len += len;
	tls_ciphertext_consumed(tls, len);
}

int bench_wire_encrypt(struct bench_wire *w, struct tls_session *tls, const char *out, size_t *out_sent,
		       size_t out_len)
{
	while (*out_sent < out_len) {
		ssize_t n = tls_write(tls, out + *out_sent, out_len - *out_sent);

		bench_wire_take(w, tls);
		if (n == TLS_WANT_WRITE)
			continue;
		if (n < 0)
			return (int)n;
		*out_sent += (size_t)n;
	}
	return 0;
}

int bench_lines_init(struct bench_lines *lines, size_t cap)
{
	lines->buf = malloc(cap);
	lines->start = 0;
	lines->len = 0;
	lines->cap = cap;
	return lines->buf == NULL ? -ENOMEM : 0;
}

void bench_lines_free(struct bench_lines *lines)
{
	if (lines == NULL)
		return;
	free(lines->buf);
	lines->buf = NULL;
}

int bench_lines_append(struct bench_lines *lines, const char *data, size_t len)
{
	if (lines->cap - lines->len < len)
		bench_lines_compact(lines);
	if (lines->cap - lines->len < len)
		return -ENOBUFS;
	memcpy(lines->buf + lines->len, data, len);
	lines->len += len;
	return 0;
}

size_t bench_lines_next(struct bench_lines *lines, const char **line)
{
	const char *begin = lines->buf + lines->start;
	const char *lf = memchr(begin, '\n', lines->len - lines->start);

	if (lf == NULL)
		return 0;
	size_t n = (size_t)(lf - begin) + 1;

	*line = begin;
	lines->start += n;
	return n;
}

size_t bench_lines_take(struct bench_lines *lines, size_t want, const char **data)
{
	size_t have = lines->len - lines->start;
	size_t n = want < have ? want : have;

	*data = lines->buf + lines->start;
	lines->start += n;
	return n;
}

size_t bench_lines_pending(const struct bench_lines *lines)
{
	return lines->len - lines->start;
}

void bench_lines_compact(struct bench_lines *lines)
{
	if (lines->start == 0)
		return;
	memmove(lines->buf, lines->buf + lines->start, lines->len - lines->start);
	lines->len -= lines->start;
	lines->start = 0;
}

int bench_addr_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[128];
	const char *colon = strrchr(text, ':');
	uint64_t port;

	if (colon == NULL || (size_t)(colon - text) >= sizeof(host))
		return -EINVAL;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	if (bench_parse_uint(colon + 1, &port) != 0 || port > 65535)
		return -EINVAL;
	memset(ss, 0, sizeof(*ss));
	if (host[0] == '[') {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		size_t hl = strlen(host);

		if (hl < 2 || host[hl - 1] != ']')
			return -EINVAL;
		host[hl - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &in6->sin6_addr) != 1)
			return -EINVAL;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return 0;
	}
	struct sockaddr_in *in = (struct sockaddr_in *)ss;

	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
		return -EINVAL;
	in->sin_family = AF_INET;
	in->sin_port = htons((uint16_t)port);
	*len = sizeof(*in);
	return 0;
}

void bench_addr_format(const struct sockaddr_storage *ss, char *buf, size_t size)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, size, "[%s]:%u", host, ntohs(in6->sin6_port));
		return;
	}
	const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

	inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
	snprintf(buf, size, "%s:%u", host, ntohs(in->sin_port));
}

int bench_file_replace(const char *path, const char *data, size_t len)
{
	char tmp[4096];
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	for (size_t done = 0; done < len;) {
		ssize_t n = write(fd, data + done, len - done);

		if (n < 0) {
			int err = -errno;

			close(fd);
			unlink(tmp);
			return err;
		}
		done += (size_t)n;
	}
	close(fd);
	if (rename(tmp, path) != 0)
		return -errno;
	return 0;
}

int bench_parse_uint(const char *text, uint64_t *value)
{
	char *end;

	if (text == NULL || text[0] < '0' || text[0] > '9')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);

	if (errno != 0 || *end != '\0')
		return -EINVAL;
	*value = v;
	return 0;
}
