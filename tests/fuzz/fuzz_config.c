/*
 * fuzz_config - libFuzzer harness for the configuration loader
 * (relay/config.h): the input is written to a temporary file under $TMPDIR
 * (default /tmp), loaded with config_load(), and the config freed.
 *
 *   tools/fuzz build && tools/fuzz run 60 config
 *
 * Invariants: config_load() returns 0 with a config, or a negative errno
 * with no config and a non-empty, NUL-terminated error message; a config
 * that loads has values inside the documented ranges checked below.
 * libconfig honours @include and config_load() does not turn it off, so an
 * input holding "@include" (any case) is skipped: the fuzzer could otherwise
 * name /dev/zero or any other file of the machine.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* has_include - whether "@include" appears, ignoring case */
static bool has_include(const uint8_t *p, size_t n)
{
	static const char word[] = "@include";

	for (size_t i = 0; i + sizeof(word) - 1 <= n; i++) {
		size_t j = 0;

		while (j < sizeof(word) - 1 && tolower(p[i + j]) == word[j])
			j++;
		if (j == sizeof(word) - 1)
			return true;
	}
	return false;
}

/* check - a loaded config keeps the documented ranges */
static void check(const struct config *cfg)
{
	if (cfg->workers < 0 || cfg->workers > 256)
		abort();
	if (cfg->listen_count < 1 || cfg->listen_count > CONFIG_MAX_LISTEN)
		abort();
	if (cfg->smtp_max_line < 1000 || cfg->smtp_max_command_line < 512)
		abort();
	if (cfg->spool_dir == NULL || cfg->hostname == NULL || cfg->log_file == NULL)
		abort();
	for (size_t i = 0; i < cfg->domain_count; i++) {
		const char *name = cfg->domains[i].name;
		size_t n = strlen(name);

		if (n > 0 && name[n - 1] == '.')
			abort();
		for (size_t j = 0; j < n; j++)
			if (name[j] >= 'A' && name[j] <= 'Z')
				abort();
	}
	for (size_t i = 0; i < cfg->listen_count; i++)
		if (memchr(cfg->listen[i].text, 0, sizeof(cfg->listen[i].text)) == NULL)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[256], err[256];
	const char *tmp = getenv("TMPDIR");
	struct config *cfg = NULL;
	const uint8_t *p = data;
	size_t left = size;
	int fd, rc;

	if (has_include(data, size))
		return 0;
	snprintf(path, sizeof(path), "%s/ringmail-fuzz-config.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	fd = mkstemp(path);
	if (fd < 0)
		abort();
	while (left > 0) {
		ssize_t n = write(fd, p, left);

		if (n <= 0)
			abort();
		p += n;
		left -= (size_t)n;
	}
	close(fd);

	memset(err, 'x', sizeof(err));
	rc = config_load(path, &cfg, err, sizeof(err));
	unlink(path);
	if (rc == 0) {
		if (cfg == NULL)
			abort();
		check(cfg);
	} else {
		if (rc > 0 || cfg != NULL)
			abort();
		if (memchr(err, 0, sizeof(err)) == NULL || err[0] == 0)
			abort();
	}
	config_free(cfg);
	return 0;
}
