/*
 * fuzz_nexthop - libFuzzer harness for the next-hop parser (nexthop.c).
 *
 * The promises checked: a parse that succeeds names a kind, a NUL-terminated
 * lower-case host that fits, and for an address a family and a host that
 * parses back to the same next hop; the error text is always terminated.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nexthop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[600], err[64];
	struct nexthop hop, again;

	if (size >= sizeof(text))
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	memset(err, 'x', sizeof(err));
	if (nexthop_parse(text, &hop, err, sizeof(err)) < 0) {
		if (memchr(err, '\0', sizeof(err)) == NULL)
			abort();
		return 0;
	}
	if (memchr(hop.host, '\0', sizeof(hop.host)) == NULL || hop.host[0] == '\0')
		abort();
	for (const char *p = hop.host; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			abort();
	if (hop.kind == NEXTHOP_ADDR) {
		if (hop.family != AF_INET && hop.family != AF_INET6)
			abort();
		char back[300];
		snprintf(back, sizeof(back), "[%s]", hop.host);
		if (nexthop_parse(back, &again, NULL, 0) < 0 || again.kind != NEXTHOP_ADDR ||
		    memcmp(&again.addr, &hop.addr, sizeof(hop.addr)) != 0)
			abort();
	} else if (hop.kind != NEXTHOP_MX && hop.kind != NEXTHOP_HOST) {
		abort();
	}
	return 0;
}
