/*
 * dkim_cli - "ringmailctl dkim keygen"; see dkim_cli.h.
 */
#include "dkim_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "dkim_key.h"

/* TXT character-strings hold at most 255 octets each. */
#define TXT_STRING_MAX 255

static int keygen_usage(void)
{
	fprintf(stderr, "usage: ringmailctl dkim keygen --domain D --selector S "
			"[--algorithm rsa|ed25519] [--bits N] --out FILE\n");
	return 2;
}

/* write_key - the PEM into a new file of mode 0600 (never over one). */
static int write_key(const char *path, const struct buf *pem)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	size_t done = 0;

	if (fd < 0) {
		fprintf(stderr, "ringmailctl: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (done < buf_len(pem)) {
		ssize_t n = write(fd, buf_data(pem) + done, buf_len(pem) - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		done += (size_t)n;
	}
	if (done < buf_len(pem) || fsync(fd) < 0 || close(fd) < 0) {
		fprintf(stderr, "ringmailctl: %s: %s\n", path, strerror(errno));
		unlink(path);
		return -1;
	}
	return 0;
}

/* print_record - the TXT record as name, value, and a zone-file line. */
static void print_record(const char *domain, const char *selector, const char *value)
{
	size_t len = strlen(value);

	printf("name: %s._domainkey.%s\n", selector, domain);
	printf("value: %s\n", value);
	printf("zone: %s._domainkey.%s. IN TXT (", selector, domain);
	for (size_t i = 0; i < len; i += TXT_STRING_MAX) {
		size_t n = len - i < TXT_STRING_MAX ? len - i : TXT_STRING_MAX;
		printf(" \"%.*s\"", (int)n, value + i);
	}
	printf(" )\n");
}

static int keygen(int argc, char **argv)
{
	static const struct option options[] = {
		{ "domain", required_argument, NULL, 'd' },
		{ "selector", required_argument, NULL, 's' },
		{ "algorithm", required_argument, NULL, 'a' },
		{ "bits", required_argument, NULL, 'b' },
		{ "out", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	const char *domain = NULL, *selector = NULL, *out = NULL;
	enum dkim_algorithm alg = DKIM_RSA_SHA256;
	unsigned long bits = 2048;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'd': domain = optarg; break;
		case 's': selector = optarg; break;
		case 'o': out = optarg; break;
		case 'a':
			if (strcmp(optarg, "rsa") == 0)
				alg = DKIM_RSA_SHA256;
			else if (strcmp(optarg, "ed25519") == 0)
				alg = DKIM_ED25519_SHA256;
			else
				return keygen_usage();
			break;
		case 'b':
			bits = strtoul(optarg, &end, 10);
			if (*end != '\0' || bits < DKIM_RSA_MIN_BITS || bits > DKIM_RSA_MAX_BITS) {
				fprintf(stderr, "ringmailctl: --bits: 1024 to 8192 (RFC 8301)\n");
				return 2;
			}
			break;
		default:
			return keygen_usage();
		}
	}
	if (domain == NULL || selector == NULL || out == NULL || optind != argc)
		return keygen_usage();

	struct buf pem, pub;
	struct dkim_key *key = NULL;
	char err[256];
	int rc = 1;
	buf_init(&pem, 64 * 1024);
	buf_init(&pub, 8 * 1024);
	if (dkim_key_generate(alg, (unsigned)bits, &pem, &key, err, sizeof(err)) < 0) {
		fprintf(stderr, "ringmailctl: %s\n", err);
	} else if (write_key(out, &pem) == 0 &&
		   buf_append_printf(&pub, "v=DKIM1; k=%s; p=", alg == DKIM_RSA_SHA256 ? "rsa" : "ed25519") == 0 &&
		   dkim_key_public(key, &pub) == 0 && buf_append(&pub, "", 1) == 0) {
		print_record(domain, selector, buf_data(&pub));
		rc = 0;
	}
	dkim_key_free(key);
	explicit_bzero(pem.data, pem.cap);
	buf_free(&pem);
	buf_free(&pub);
	return rc;
}

int dkim_cli_main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "keygen") == 0)
		return keygen(argc - 1, argv + 1);
	return keygen_usage();
}
