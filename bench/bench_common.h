/*
 * bench_common - what ringmail-sink and ringmail-bench share: the ring setup
 * with feature probing, a provided-buffer-ring shim for liburing 2.3, a CRLF
 * line reader, a log-bucketed latency histogram, a deterministic RNG, address
 * parsing and atomic file replacement.
 *
 *   struct io_uring ring;
 *   bench_ring_init(&ring, 4096, &flags);        ring with the best flags we get
 *   struct io_uring_sqe *sqe = bench_ring_sqe(&ring);   never NULL
 *   bench_hist_add(&hist, usec); bench_hist_quantile(&hist, 0.99);
 *
 * Errors are -errno. Nothing here logs; nothing here owns a pointer it was
 * given unless said so.
 */
#ifndef RINGMAIL_BENCH_COMMON_H
#define RINGMAIL_BENCH_COMMON_H

#include <liburing.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/socket.h>

/* bench_ring_init - set up ring with SINGLE_ISSUER|DEFER_TASKRUN, falling back
 * to COOP_TASKRUN and then to no flags on older kernels. The CQ is 8x the SQ
 * so that it never overflows with one op per connection. *flags_used gets
 * the setup flags that worked. Returns 0 or -errno. */
int bench_ring_init(struct io_uring *ring, unsigned entries, unsigned *flags_used);

/* bench_ring_sqe - a free SQE; submits to make room when the SQ is full. */
struct io_uring_sqe *bench_ring_sqe(struct io_uring *ring);

/* Provided buffer ring: count buffers of size bytes in group bgid. The
 * shim owns its memory; bench_buf_ring_free() releases it. */
struct bench_buf_ring {
	struct io_uring_buf_ring *ring;
	char *memory;
	unsigned count;
	unsigned size;
	int group;
};

/* bench_buf_ring_setup - register a buffer ring (what liburing 2.4 calls
 * io_uring_setup_buf_ring). Returns 0 or -errno (e.g. -EINVAL before 5.19). */
int bench_buf_ring_setup(struct io_uring *ring, struct bench_buf_ring *buffers,
			 unsigned count, unsigned size, int group);
/* bench_buf_ring_data - the memory of buffer id. */
char *bench_buf_ring_data(struct bench_buf_ring *buffers, unsigned id);
/* bench_buf_ring_recycle - give buffer id back to the kernel. */
void bench_buf_ring_recycle(struct bench_buf_ring *buffers, unsigned id);
void bench_buf_ring_free(struct io_uring *ring, struct bench_buf_ring *buffers);

/* Clocks, in microseconds. Wall time for the stamp header; monotonic for
 * everything measured inside one process. */
uint64_t bench_wall_us(void);
uint64_t bench_mono_us(void);

/* Deterministic RNG (splitmix64): same seed, same fault pattern. */
struct bench_rng {
	uint64_t state;
};
void bench_rng_seed(struct bench_rng *rng, uint64_t seed);
uint64_t bench_rng_next(struct bench_rng *rng);
/* bench_rng_unit - uniform in [0, 1). */
double bench_rng_unit(struct bench_rng *rng);
/* bench_rng_percent - true with probability percent/100. */
int bench_rng_percent(struct bench_rng *rng, double percent);

/* Latency histogram, HdrHistogram's layout: 128 sub-buckets per power of
 * two, so any quantile is within 1/128 (0.8%) of the true value (two
 * significant digits and more); values below 128 are exact, and so is max. */
#define BENCH_HIST_BITS 7
#define BENCH_HIST_SUB (1u << BENCH_HIST_BITS)
#define BENCH_HIST_BUCKETS (64 * BENCH_HIST_SUB)
struct bench_hist {
	uint64_t count;
	uint64_t max;
	uint64_t sum;
	uint64_t buckets[BENCH_HIST_BUCKETS];
};
void bench_hist_add(struct bench_hist *hist, uint64_t value);
/* bench_hist_quantile - value at quantile q (0..1); 0 when empty. */
uint64_t bench_hist_quantile(const struct bench_hist *hist, double q);
/* bench_hist_json - {"count":..,"p50":..,"p90":..,"p99":..,"p999":..,"max":..}
 * into buf. Returns the length (snprintf semantics). */
int bench_hist_json(const struct bench_hist *hist, char *buf, size_t size);
/* bench_hist_percentiles - the whole distribution in HdrHistogram's text
 * form (Value, Percentile, TotalCount, 1/(1-Percentile)), at percentiles
 * that halve the distance to 100% ticks times per halving (HdrHistogram's
 * outputPercentileDistribution), values divided by scale (1000: us -> ms).
 * Plot column 4 on a log x axis to see the tail. */
void bench_hist_percentiles(const struct bench_hist *hist, FILE *out, unsigned ticks,
			    double scale);

/* Ciphertext a TLS connection is writing: buf[sent..len), cap allocated. */
struct tls_session;
struct bench_wire {
	char *buf;
	size_t len, sent, cap;
};
/* bench_wire_take - move the session's pending ciphertext into w at once
 * (the pointer tls_pending_ciphertext gives dies with the next call). */
void bench_wire_take(struct bench_wire *w, struct tls_session *tls);
/* bench_wire_encrypt - all of out[*out_sent..out_len) into w. A write that
 * says TLS_WANT_WRITE is retried with the same bytes once the output was
 * taken. Returns 0 or the session's error. */
int bench_wire_encrypt(struct bench_wire *w, struct tls_session *tls, const char *out, size_t *out_sent,
		       size_t out_len);

/* Line reader over one connection's input. Invariant: buf[start..len) holds
 * unconsumed bytes, len <= cap. The caller fills buf+len (up to cap) and
 * calls bench_lines_next until it returns 0, then bench_lines_compact. */
struct bench_lines {
	char *buf;
	size_t start;
	size_t len;
	size_t cap;
};
/* bench_lines_init - allocate cap bytes. Returns 0 or -ENOMEM. */
int bench_lines_init(struct bench_lines *lines, size_t cap);
void bench_lines_free(struct bench_lines *lines);
/* bench_lines_append - copy data in; returns -ENOBUFS if it does not fit. */
int bench_lines_append(struct bench_lines *lines, const char *data, size_t len);
/* bench_lines_next - the next complete line (with its LF) or 0 if none. */
size_t bench_lines_next(struct bench_lines *lines, const char **line);
/* bench_lines_take - up to want raw bytes (BDAT); returns how many. */
size_t bench_lines_take(struct bench_lines *lines, size_t want, const char **data);
/* bench_lines_pending - unconsumed bytes. */
size_t bench_lines_pending(const struct bench_lines *lines);
/* bench_lines_compact - move the unconsumed tail to the front. */
void bench_lines_compact(struct bench_lines *lines);

/* bench_addr_parse - "1.2.3.4:25" or "[::1]:25" into ss. Returns 0 or -EINVAL. */
int bench_addr_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len);
/* bench_addr_format - "ip:port" text of ss into buf. */
void bench_addr_format(const struct sockaddr_storage *ss, char *buf, size_t size);

/* bench_file_replace - write data to path atomically (tmp file + rename),
 * so a reader never sees a half-written stats file. Returns 0 or -errno. */
int bench_file_replace(const char *path, const char *data, size_t len);

/* bench_parse_uint - strict decimal; returns 0 or -EINVAL. */
int bench_parse_uint(const char *text, uint64_t *value);

#endif
