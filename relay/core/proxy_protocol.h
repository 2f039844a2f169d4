/*
 * proxy_protocol - the PROXY protocol header (HAProxy's, versions 1 and 2)
 * that a load balancer sends before the client's first byte, naming the
 * client it relays.
 *
 *   struct proxy_protocol_header h;
 *   const char *reason;
 *   int n = proxy_protocol_parse(data, len, max, &h, &reason);
 *   n == 0: need more bytes (everything so far may still be a header)
 *   n  < 0: not a header (-EINVAL) or longer than max (-EMSGSIZE); reason
 *           says why, for the log
 *   n  > 0: a whole header of n bytes; data[n..] is the client's stream
 *
 * Pure code over the bytes received so far: no state between calls, so the
 * caller keeps the input and calls again when more arrives. The header is
 * small (v1 at most 107 bytes, v2 16 plus its length field), so parsing
 * again from the start costs nothing. Bytes that can no longer begin a
 * header (an SMTP client that sent "EHLO") are refused at once, without
 * waiting for more.
 *
 * h->has_source is false when the header names no usable client: v2 LOCAL
 * (the balancer's own health check), v1 UNKNOWN, v2 AF_UNSPEC or AF_UNIX.
 * The connection then keeps the socket's own peer. v2 TLVs are walked for
 * well-formedness and skipped. No pointer into data is kept.
 */
#ifndef RINGMAIL_PROXY_PROTOCOL_H
#define RINGMAIL_PROXY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* The longest v1 header, CRLF included (the specification's figure). */
#define PROXY_PROTOCOL_V1_MAX 107
/* The v2 fixed part: signature, version and command, family, length. */
#define PROXY_PROTOCOL_V2_FIXED 16
/* The longest v2 header the length field allows. */
#define PROXY_PROTOCOL_V2_MAX (PROXY_PROTOCOL_V2_FIXED + 65535)

enum proxy_protocol_command {
	PROXY_PROTOCOL_PROXY,         /* relayed: v1 TCP4/TCP6/UNKNOWN, v2 PROXY */
	PROXY_PROTOCOL_LOCAL,         /* v2 LOCAL: the balancer speaks for itself */
};

struct proxy_protocol_header {
	int version;                          /* 1 or 2 */
	enum proxy_protocol_command command;
	bool has_source;                      /* source and destination are set */
	struct sockaddr_storage source;       /* the client, as the balancer saw it */
	struct sockaddr_storage destination;  /* the address the client reached */
	socklen_t address_len;                /* of either, when has_source */
	unsigned tlv_count;                   /* v2 TLVs skipped */
};

/* proxy_protocol_parse - parse a header at the start of data[0..len),
 * refusing one longer than max bytes (a v1 header is always allowed its
 * 107). Returns the header's length, 0 for "need more", or -EINVAL /
 * -EMSGSIZE with *reason (a static string) set. out is written only on
 * success. */
int proxy_protocol_parse(const void *data, size_t len, size_t max,
			 struct proxy_protocol_header *out, const char **reason);

/* proxy_protocol_command_name - "proxy" or "local", for logs. */
const char *proxy_protocol_command_name(enum proxy_protocol_command command);

#endif
