/*
 * fuzz_proxy_protocol - libFuzzer harness for the PROXY protocol header
 * parser (relay/core/proxy_protocol.c).
 *
 *   tools/fuzz build && tools/fuzz run 20 proxy_protocol
 *
 * The first two bytes pick the size bound (232 to 65551, as the config
 * allows); the rest is the received stream. The checks are the parser's
 * promises: a header is never longer than the input or the bound (v1 at
 * most 107 bytes); the same bytes cut to the header's length give the same
 * header; any shorter cut of them is "need more", never an error; an
 * error names a reason; "need more" is only said below the bound; a source
 * address has the family its length says.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy_protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_protocol_header h, again;
	const char *reason = NULL;

	if (size < 2)
		return 0;
	size_t max = 232 + (((size_t)data[0] << 8 | data[1]) % (PROXY_PROTOCOL_V2_MAX - 232 + 1));
	data += 2;
	size -= 2;
	/* A copy of exactly size bytes, so ASan sees any read past the end. */
	uint8_t *copy = malloc(size ? size : 1);
	memcpy(copy, data, size);

	int n = proxy_protocol_parse(copy, size, max, &h, &reason);
	if (n < 0) {
		if ((n != -EINVAL && n != -EMSGSIZE) || reason == NULL || reason[0] == '\0')
			abort();
	} else if (n == 0) {
		if (size >= max && size >= PROXY_PROTOCOL_V1_MAX)
			abort();
	} else {
		if ((size_t)n > size || ((size_t)n > max && n > PROXY_PROTOCOL_V1_MAX))
			abort();
		if (h.version == 1 && n > PROXY_PROTOCOL_V1_MAX)
			abort();
		if (h.version != 1 && h.version != 2)
			abort();
		if (h.has_source) {
			int fam = h.source.ss_family;
			if (fam != h.destination.ss_family ||
			    (fam == AF_INET && h.address_len != sizeof(struct sockaddr_in)) ||
			    (fam == AF_INET6 && h.address_len != sizeof(struct sockaddr_in6)) ||
			    (fam != AF_INET && fam != AF_INET6) || h.command != PROXY_PROTOCOL_PROXY)
				abort();
		}
		if (proxy_protocol_parse(copy, (size_t)n, max, &again, NULL) != n ||
		    again.version != h.version || again.has_source != h.has_source ||
		    again.tlv_count != h.tlv_count)
			abort();
		for (size_t cut = 0; cut < (size_t)n; cut += 1 + cut / 4)
			if (proxy_protocol_parse(copy, cut, max, &again, NULL) != 0)
				abort();
		if (proxy_protocol_parse(copy, (size_t)n - 1, max, &again, NULL) != 0)
			abort();
	}
	free(copy);
	return 0;
}
