/*
 * test_log - log_quote escaping and truncation, log_level_parse, batches.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct quote_case {
	const char *src;
	size_t len;
	size_t dst_size;
	const char *want;
};

#define Q(s, size, want) { s, sizeof(s) - 1, size, want }

static const struct quote_case quote_cases[] = {
	Q("", 64, "\"\""),
	Q("hello", 64, "\"hello\""),
	Q("a b=c", 64, "\"a b=c\""),
	Q("say \"hi\"", 64, "\"say \\\"hi\\\"\""),
	Q("back\\slash", 64, "\"back\\\\slash\""),
	Q("cr\r\nlf", 64, "\"cr\\x0d\\x0alf\""),
	Q("tab\there", 64, "\"tab\\x09here\""),
	Q("\x01\x1f\x7f", 64, "\"\\x01\\x1f\\x7f\""),
	Q("nul\0byte", 64, "\"nul\\x00byte\""),
	Q("caf\xc3\xa9", 64, "\"caf\xc3\xa9\""),       /* bytes >= 0x80 pass as they are */
	Q("~ !", 64, "\"~ !\""),
	/* truncation: the result fits in dst_size - 1 and keeps both quotes */
	Q("hello", 8, "\"hello\""),
	Q("hello", 7, "\"hell\""),
	Q("hello", 6, "\"hel\""),
	Q("hello", 3, "\"\""),
	Q("hello", 4, "\"h\""),
	/* an escape is never cut in half */
	Q("a\"b", 5, "\"a\""),
	Q("a\"b", 6, "\"a\\\"\""),
	Q("a\nb", 6, "\"a\""),
	Q("a\nb", 8, "\"a\\x0a\""),
	Q("a\nb", 9, "\"a\\x0ab\""),
};

Test(log, quote_table)
{
	for (size_t i = 0; i < N(quote_cases); i++) {
		const struct quote_case *c = &quote_cases[i];
		char dst[64];

		memset(dst, '#', sizeof(dst));
		char *ret = log_quote(dst, c->dst_size, c->src, c->len);
		cr_expect_eq(ret, dst, "case %zu: log_quote should return dst", i);
		cr_expect_str_eq(dst, c->want, "case %zu (size %zu): got %s, want %s", i, c->dst_size, dst, c->want);
		cr_expect_leq(strlen(dst), c->dst_size - 1, "case %zu: %zu bytes in a %zu buffer", i, strlen(dst),
			      c->dst_size);
		for (size_t j = c->dst_size; j < sizeof(dst); j++)
			cr_assert_eq(dst[j], '#', "case %zu: wrote byte %zu past dst_size %zu", i, j, c->dst_size);
	}
}

Test(log, quote_uses_len_not_nul)
{
	char dst[32];

	cr_expect_str_eq(log_quote(dst, sizeof(dst), "abcdef", 3), "\"abc\"");
	cr_expect_str_eq(log_quote(dst, sizeof(dst), NULL, 0), "\"\"");
}

Test(log, quote_tiny_buffers)
{
	char dst[4] = "###";

	cr_expect_str_eq(log_quote(dst, 2, "x", 1), "", "size 2: got \"%s\", want empty", dst);
	memcpy(dst, "###", 4);
	cr_expect_str_eq(log_quote(dst, 1, "x", 1), "");
	memcpy(dst, "###", 4);
	log_quote(dst, 0, "x", 1);
	cr_expect_str_eq(dst, "###", "size 0 must not write");
	log_quote(NULL, 0, "x", 1);
}

Test(log, quote_long_input_fills_buffer)
{
	char src[300], dst[100];

	memset(src, 'a', sizeof(src));
	log_quote(dst, sizeof(dst), src, sizeof(src));
	cr_expect_eq(strlen(dst), sizeof(dst) - 1, "got %zu bytes, want %zu", strlen(dst), sizeof(dst) - 1);
	cr_expect_eq(dst[0], '"');
	cr_expect_eq(dst[sizeof(dst) - 2], '"');
	for (size_t i = 1; i < sizeof(dst) - 2; i++)
		cr_assert_eq(dst[i], 'a', "byte %zu: got %c", i, dst[i]);
}

Test(log, level_parse)
{
	static const struct {
		const char *name;
		int want_rc;
		enum log_level want;
	} cases[] = {
		{ "debug", 0, LOG_LEVEL_DEBUG },
		{ "info", 0, LOG_LEVEL_INFO },
		{ "warn", 0, LOG_LEVEL_WARN },
		{ "error", 0, LOG_LEVEL_ERROR },
		{ "DEBUG", 0, LOG_LEVEL_DEBUG },
		{ "Warn", 0, LOG_LEVEL_WARN },
		{ "warning", -EINVAL, 0 },
		{ "err", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
		{ "info ", -EINVAL, 0 },
		{ " info", -EINVAL, 0 },
		{ "fatal", -EINVAL, 0 },
		{ "0", -EINVAL, 0 },
	};

	for (size_t i = 0; i < N(cases); i++) {
		enum log_level level = (enum log_level)99;
		int rc = log_level_parse(cases[i].name, &level);
		cr_expect_eq(rc, cases[i].want_rc, "log_level_parse(\"%s\"): got rc %d, want %d", cases[i].name, rc,
			     cases[i].want_rc);
		if (cases[i].want_rc == 0)
			cr_expect_eq(level, cases[i].want, "log_level_parse(\"%s\"): got %d, want %d", cases[i].name,
				     level, cases[i].want);
		else
			cr_expect_eq((int)level, 99, "log_level_parse(\"%s\") changed the level on error", cases[i].name);
	}
}

/* read_file - the file's bytes (at most size-1) as a string. */
static size_t read_file(const char *path, char *out, size_t size)
{
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "open %s", path);
	size_t n = fread(out, 1, size - 1, f);
	fclose(f);
	out[n] = '\0';
	return n;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;
	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

/* open_temp_log - the log into a new file named from tmpl (a mkstemp
 * template, rewritten with the name). */
static void open_temp_log(char *tmpl)
{
	int fd = mkstemp(tmpl);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(log_open(tmpl, LOG_LEVEL_INFO), 0);
}

Test(log, batch_waits_for_flush_and_keeps_lines_whole)
{
	char path[] = "/tmp/test_log_batch_XXXXXX";
	open_temp_log(path);

	static char got[1 << 20];
	log_batch_begin();
	log_info("one", "n=%d", 1);
	log_info("two", "n=%d", 2);
	cr_expect_eq(read_file(path, got, sizeof(got)), 0, "got %s before the flush, want nothing",
		     got);
	log_batch_flush();
	read_file(path, got, sizeof(got));
	cr_expect_eq(count_lines(got), 2, "got %s, want two lines", got);
	cr_expect_not_null(strstr(got, " level=info event=one n=1\n"), "got %s", got);
	cr_expect_not_null(strstr(got, " level=info event=two n=2\n"), "got %s", got);
	cr_expect_eq(strncmp(got, "ts=", 3), 0, "got %s", got);
	cr_expect_eq(got[26], 'Z', "got %.40s, want ts=YYYY-MM-DDTHH:MM:SS.mmmZ", got);

	/* More than a buffer's worth flushes by itself, and no line is cut. */
	char big[3000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (int i = 0; i < 100; i++)
		log_info("big", "i=%d v=%s", i, big);
	read_file(path, got, sizeof(got));
	cr_expect_gt(count_lines(got), 2, "a full buffer should have been written");
	log_batch_end();
	read_file(path, got, sizeof(got));
	cr_expect_eq(count_lines(got), 102, "got %zu lines, want 102", count_lines(got));
	for (char *line = got; *line != '\0';) {
		char *nl = strchr(line, '\n');
		cr_assert_not_null(nl);
		cr_expect_eq(strncmp(line, "ts=", 3), 0, "a line starts with %.20s", line);
		line = nl + 1;
	}

	/* Not batching: each line is written at once. */
	log_info("three", "n=%d", 3);
	read_file(path, got, sizeof(got));
	cr_expect_eq(count_lines(got), 103);
	log_open("", LOG_LEVEL_INFO);
	unlink(path);
}

Test(log, batch_flushes_at_a_warning)
{
	char path[] = "/tmp/test_log_warn_XXXXXX";
	open_temp_log(path);

	static char got[65536];
	log_batch_begin();
	log_info("before", "n=%d", 1);
	log_warn("trouble", "n=%d", 2);
	read_file(path, got, sizeof(got));
	cr_expect_eq(count_lines(got), 2, "got %s, want the info line and the warning", got);
	char *info = strstr(got, "event=before"), *warn = strstr(got, "event=trouble");
	cr_expect(info != NULL && warn != NULL && info < warn, "got %s, want them in order", got);
	log_batch_end();
	log_open("", LOG_LEVEL_INFO);
	unlink(path);
}
