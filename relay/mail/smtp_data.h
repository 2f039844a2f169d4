/*
 * smtp_data - the message body decoder for DATA (RFC 5321 4.1.1.4, 4.5.2)
 * and BDAT (RFC 3030), kept apart from the session so it can be fed one
 * byte at a time or a megabyte at a time with the same result.
 *
 *   struct smtp_data d;
 *   smtp_data_begin_dot(&d, &limits, &body);        after "354"
 *   n = smtp_data_feed(&d, in, len);                 consumes up to the end
 *   if (smtp_data_done(&d)) reply = smtp_data_verdict(&d);   NULL = accept
 *
 *   smtp_data_begin_bdat(&d, &limits, &body, binary); first BDAT of a message
 *   smtp_data_chunk(&d, octets);                     each BDAT command
 *   n = smtp_data_feed(&d, in, len);                 until smtp_data_done()
 *
 * DATA policy (the SMTP smuggling defence, CVE-2023-51764/51765/51766):
 *   - The message ends ONLY at CR LF "." CR LF. The first CR LF may be the one
 *     that ended the DATA command, so "." CR LF right away is an empty message.
 *     LF.LF, CR.CR, CRLF.CR, LF.CRLF, CR.CRLF, CRLF.LF, ".\0", "\0." and every
 *     other near miss are ordinary content: reading goes on.
 *   - A line that starts with "." loses that dot (dot-unstuffing); everything
 *     else is stored byte for byte.
 *   - A bare LF (LF not after CR) or bare CR (CR not before LF) anywhere in the
 *     content marks the message; at its end it is refused with
 *     550 5.6.11 (nothing ambiguous is ever queued, so nothing ambiguous is
 *     ever relayed to a server that would split it differently).
 *   - A NUL octet is refused the same way with 554 5.6.0 (not allowed in
 *     7BIT/8BITMIME text, RFC 6152).
 *   - A line longer than the line limit (default 1000 octets including CR LF,
 *     counted on the wire, stuffing dot included; RFC 5321 4.5.3.1.6) is
 *     refused at the end with 554 5.6.0. We do not fold lines: changing the
 *     content would break DKIM signatures, and a 5xx lets the sender see it.
 *   - More content than the size limit: 552 5.3.4 at the end; content past the
 *     limit is read and thrown away so the session stays in step.
 *   When several apply, the verdict is the first of: size, bare CR/LF, NUL,
 *   line length.
 * BDAT: chunk octets are stored verbatim (no dot handling); the size limit
 * applies to the sum of all chunks. Unless BODY=BINARYMIME, the same bare
 * CR/LF, NUL and line-length checks run across chunk boundaries, because the
 * message may later be relayed with DATA.
 */
#ifndef RINGMAIL_SMTP_DATA_H
#define RINGMAIL_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum smtp_data_anomaly {
	SMTP_DATA_TOO_BIG = 1 << 0,
	SMTP_DATA_BARE_LF = 1 << 1,
	SMTP_DATA_BARE_CR = 1 << 2,
	SMTP_DATA_NUL = 1 << 3,
	SMTP_DATA_LONG_LINE = 1 << 4,
};

struct smtp_data_limits {
	size_t line_max;	/* octets per line incl. CR LF; 0 = no limit */
	uint64_t size_max;	/* content octets per message */
};

struct smtp_data {
	int state;		/* private: decoder state */
	bool bdat;		/* BDAT mode (no dot handling) */
	bool check;		/* run the text checks (false for BINARYMIME) */
	struct smtp_data_limits limits;
	struct buf *body;	/* not owned: content is appended here */
	uint64_t size;		/* content octets seen (stored or not) */
	uint64_t chunk_left;	/* BDAT: octets left in the current chunk */
	size_t line_len;	/* octets of the current wire line so far */
	unsigned anomalies;	/* enum smtp_data_anomaly bits */
	bool done;		/* DATA: end seen; BDAT: chunk complete */
};

/* smtp_data_begin_dot - start decoding a DATA body into body */
void smtp_data_begin_dot(struct smtp_data *d, const struct smtp_data_limits *limits,
			 struct buf *body);

/* smtp_data_begin_bdat - start a BDAT message; binary is BODY=BINARYMIME */
void smtp_data_begin_bdat(struct smtp_data *d, const struct smtp_data_limits *limits,
			  struct buf *body, bool binary);

/* smtp_data_chunk - expect octets more BDAT octets (done becomes false,
 * or stays true for an empty chunk) */
void smtp_data_chunk(struct smtp_data *d, uint64_t octets);

/* smtp_data_feed - consume input up to the end of data (DATA) or of the
 * chunk (BDAT). Returns the octets consumed; fewer than len only when done. */
size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t len);

/* smtp_data_done - DATA: end-of-data seen; BDAT: current chunk complete */
bool smtp_data_done(const struct smtp_data *d);

/* smtp_data_verdict - NULL when the message may be accepted, else the reply
 * line (static, no CR LF) explaining the refusal. */
const char *smtp_data_verdict(const struct smtp_data *d);

/* smtp_data_verdict_anomaly - the one enum smtp_data_anomaly bit the
 * verdict stands for (BARE_LF for either bare CR or LF), or 0 when the
 * message may be accepted. */
unsigned smtp_data_verdict_anomaly(const struct smtp_data *d);

#endif
