/*
 * test_bench_common - the pure parts of bench/bench_common.c: histogram,
 * line reader, address parsing, RNG, number parsing.
 *
 * bench_common.c is compiled into this test directly: the unit test glob
 * links only ringmail_relay, and the bench library is the bench's own.
 */
#include "../../bench/bench_common.c"

#include <criterion/criterion.h>

Test(bench_hist, quantiles_within_one_bucket)
{
	static struct bench_hist hist;

	for (uint64_t v = 1; v <= 1000; v++)
		bench_hist_add(&hist, v);
	static const struct { double q; uint64_t want; } cases[] = {
		{ 0.50, 500 }, { 0.90, 900 }, { 0.99, 990 }, { 0.999, 999 }, { 1.0, 1000 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t got = bench_hist_quantile(&hist, cases[i].q);

		cr_expect(got >= cases[i].want && got <= cases[i].want + cases[i].want / 8,
			  "q=%g: got %llu, want %llu (+12.5%%)", cases[i].q,
			  (unsigned long long)got, (unsigned long long)cases[i].want);
	}
	cr_expect_eq(hist.max, 1000, "max: got %llu, want 1000", (unsigned long long)hist.max);
	cr_expect_eq(hist.count, 1000, "count: got %llu, want 1000", (unsigned long long)hist.count);
}

Test(bench_hist, empty_and_small_values)
{
	static struct bench_hist hist;
	char json[256];

	cr_expect_eq(bench_hist_quantile(&hist, 0.5), 0, "empty: got %llu, want 0",
		     (unsigned long long)bench_hist_quantile(&hist, 0.5));
	bench_hist_add(&hist, 3);
	cr_expect_eq(bench_hist_quantile(&hist, 0.5), 3, "got %llu, want 3",
		     (unsigned long long)bench_hist_quantile(&hist, 0.5));
	bench_hist_add(&hist, UINT64_MAX / 2);
	bench_hist_json(&hist, json, sizeof(json));
	cr_expect(strstr(json, "\"count\":2,") != NULL, "got %s", json);
}

Test(bench_lines, lines_partial_and_raw)
{
	struct bench_lines lines;
	const char *line;
	size_t len;

	cr_assert_eq(bench_lines_init(&lines, 32), 0);
	cr_assert_eq(bench_lines_append(&lines, "EHLO a\r\nMAIL", 12), 0);
	len = bench_lines_next(&lines, &line);
	cr_expect(len == 8 && memcmp(line, "EHLO a\r\n", 8) == 0, "got %zu %.*s, want EHLO a",
		  len, (int)len, line);
	cr_expect_eq(bench_lines_next(&lines, &line), 0, "partial line must wait");
	cr_expect_eq(bench_lines_pending(&lines), 4, "got %zu pending, want 4",
		     bench_lines_pending(&lines));
	bench_lines_compact(&lines);
	cr_assert_eq(bench_lines_append(&lines, " FROM:<>\n", 9), 0);
	len = bench_lines_next(&lines, &line);
	cr_expect(len == 13 && memcmp(line, "MAIL FROM:<>\n", 13) == 0, "got %.*s", (int)len, line);
	cr_assert_eq(bench_lines_append(&lines, "abcdef", 6), 0);
	len = bench_lines_take(&lines, 4, &line);
	cr_expect(len == 4 && memcmp(line, "abcd", 4) == 0, "take: got %zu, want 4", len);
	cr_expect_eq(bench_lines_append(&lines, "0123456789012345678901234567890123", 34), -ENOBUFS,
		     "overflow must be refused");
	bench_lines_free(&lines);
	bench_lines_free(NULL);
}

Test(bench_addr, parse_table)
{
	static const struct { const char *text; int ret; const char *back; } cases[] = {
		{ "127.0.0.1:25", 0, "127.0.0.1:25" },
		{ "[::1]:2525", 0, "[::1]:2525" },
		{ "localhost:26", 0, "127.0.0.1:26" },
		{ "127.0.0.1", -EINVAL, NULL },
		{ "127.0.0.1:70000", -EINVAL, NULL },
		{ "host.example:25", -EINVAL, NULL },
		{ "[::1:25", -EINVAL, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t len;
		char back[64];
		int ret = bench_addr_parse(cases[i].text, &ss, &len);

		cr_expect_eq(ret, cases[i].ret, "%s: got %d, want %d", cases[i].text, ret,
			     cases[i].ret);
		if (ret == 0) {
			bench_addr_format(&ss, back, sizeof(back));
			cr_expect_str_eq(back, cases[i].back, "%s: got %s, want %s",
					 cases[i].text, back, cases[i].back);
		}
	}
}

Test(bench_rng, deterministic_and_bounded)
{
	struct bench_rng a, b;
	int hits = 0;

	bench_rng_seed(&a, 42);
	bench_rng_seed(&b, 42);
	for (int i = 0; i < 1000; i++) {
		cr_assert_eq(bench_rng_next(&a), bench_rng_next(&b), "same seed must repeat");
		double u = bench_rng_unit(&a);

		bench_rng_unit(&b);
		cr_assert(u >= 0 && u < 1, "unit: got %g, want [0,1)", u);
		hits += bench_rng_percent(&a, 100);
		cr_assert_eq(bench_rng_percent(&a, 0), 0, "0%% must never hit");
		bench_rng_percent(&b, 100);
		bench_rng_percent(&b, 0);
	}
	cr_expect_eq(hits, 1000, "100%%: got %d hits, want 1000", hits);
}

Test(bench_parse, uint_table)
{
	static const struct { const char *text; int ret; uint64_t value; } cases[] = {
		{ "0", 0, 0 }, { "2525", 0, 2525 }, { "18446744073709551615", 0, UINT64_MAX },
		{ "", -EINVAL, 0 }, { "-1", -EINVAL, 0 }, { "12x", -EINVAL, 0 },
		{ "18446744073709551616", -EINVAL, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 0;
		int ret = bench_parse_uint(cases[i].text, &v);

		cr_expect_eq(ret, cases[i].ret, "%s: got %d, want %d", cases[i].text, ret,
			     cases[i].ret);
		if (ret == 0)
			cr_expect_eq(v, cases[i].value, "%s: got %llu", cases[i].text,
				     (unsigned long long)v);
	}
}

Test(bench_file, replace_is_atomic_rename)
{
	char dir[] = "/tmp/bench_common_XXXXXX";
	char path[128], tmp[140], buf[16] = { 0 };

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/stats.json", dir);
	cr_assert_eq(bench_file_replace(path, "{\"a\":1}", 7), 0);
	cr_assert_eq(bench_file_replace(path, "{}", 2), 0);
	FILE *fp = fopen(path, "r");

	cr_assert_not_null(fp);
	size_t n = fread(buf, 1, sizeof(buf) - 1, fp);

	fclose(fp);
	cr_expect(n == 2 && strcmp(buf, "{}") == 0, "got %s, want {}", buf);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	cr_expect_neq(access(tmp, F_OK), 0, "tmp file must be gone");
	unlink(path);
	rmdir(dir);
}

Test(bench_hist, within_one_128th_over_wide_range)
{
	static struct bench_hist hist;

	/* one value at a time: the quantile of a single value is its bucket's
	 * upper end, never below the value and at most 1/128 above it */
	for (uint64_t v = 1; v < (1ULL << 40); v = v * 3 + 1) {
		memset(&hist, 0, sizeof(hist));
		bench_hist_add(&hist, v);
		bench_hist_add(&hist, v * 4);	/* keeps max from capping the answer */
		uint64_t got = bench_hist_quantile(&hist, 0.5);

		cr_expect(got >= v && got <= v + v / 128,
			  "v=%llu: got %llu", (unsigned long long)v, (unsigned long long)got);
	}
}

Test(bench_hist, percentile_distribution_text)
{
	static struct bench_hist hist;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	for (uint64_t v = 1; v <= 10000; v++)
		bench_hist_add(&hist, v * 10);
	bench_hist_percentiles(&hist, f, 5, 1000.0);
	fclose(f);
	/* rows: value (ms), percentile, total count, 1/(1-p); the 50% row holds
	 * half the values, the last row all of them at the max */
	double prev_value = -1, prev_p = -1, value, p, inv;
	unsigned long long total;
	int rows = 0, saw_half = 0;
	char *line = strtok(text, "\n");

	while (line != NULL) {
		if (sscanf(line, "%lf %lf %llu %lf", &value, &p, &total, &inv) >= 3 &&
		    line[strspn(line, " ")] != '#' && line[strspn(line, " ")] != 'V') {
			cr_expect(value >= prev_value, "values go up: %s", line);
			cr_expect(p > prev_p, "percentiles go up: %s", line);
			if (p == 0.5) {
				saw_half = 1;
				cr_expect(value >= 50.0 && value <= 50.0 * 1.008, "p50: %s", line);
			}
			prev_value = value;
			prev_p = p;
			rows++;
		}
		line = strtok(NULL, "\n");
	}
	cr_expect(saw_half, "a 50%% row");
	cr_expect(rows > 20, "got %d rows", rows);
	cr_expect(prev_p == 1.0 && total == 10000 && prev_value == 100.0,
		  "last row: p=%g total=%llu value=%g", prev_p, total, prev_value);
	free(text);
}
