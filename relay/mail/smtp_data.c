/*
 * smtp_data - DATA/BDAT body decoder (policy in smtp_data.h).
 *
 * The DATA decoder is a byte state machine whose state lives in struct
 * smtp_data, so input may be split anywhere. Ordinary text is moved in runs:
 * the text state scans ahead to the next CR, LF or NUL and appends the run
 * with one call, so the per-byte cost is a compare, not a function call.
 */
#include "smtp_data.h"

#include <string.h>

#include "log.h"

enum data_state {
	DATA_BOL,	/* at the start of a line that followed CR LF */
	DATA_DOT,	/* "." at the start of such a line (dot held back) */
	DATA_DOT_CR,	/* "." CR at the start of such a line */
	DATA_TEXT,	/* inside a line */
	DATA_CR,	/* CR inside a line (held back until we see what follows) */
	DATA_END,	/* CR LF "." CR LF seen */
};

/* data_begin - common part of both begin functions */
static void data_begin(struct smtp_data *d, const struct smtp_data_limits *limits,
		       struct buf *body)
{
	memset(d, 0, sizeof(*d));
	d->limits = *limits;
	d->body = body;
	d->check = true;
}

/* smtp_data_begin_dot - the DATA command's CR LF counts as the CR LF before
 * the first line, hence DATA_BOL */
void smtp_data_begin_dot(struct smtp_data *d, const struct smtp_data_limits *limits,
			 struct buf *body)
{
	data_begin(d, limits, body);
	d->state = DATA_BOL;
}

/* smtp_data_begin_bdat - start a chunked message */
void smtp_data_begin_bdat(struct smtp_data *d, const struct smtp_data_limits *limits,
			  struct buf *body, bool binary)
{
	data_begin(d, limits, body);
	d->bdat = true;
	d->check = !binary;
	d->state = DATA_TEXT;
	d->done = true;
}

/* smtp_data_chunk - the next BDAT chunk's length */
void smtp_data_chunk(struct smtp_data *d, uint64_t octets)
{
	if (!d->bdat)
		log_panic("smtp_data_chunk: not in BDAT mode");
	d->chunk_left = octets;
	d->done = octets == 0;
}

/* emit - store content, or count and drop it once over the size limit */
static void emit(struct smtp_data *d, const char *p, size_t n)
{
	if (n == 0)
		return;
	d->size += n;
	if ((d->anomalies & SMTP_DATA_TOO_BIG) || d->size > d->limits.size_max) {
		d->anomalies |= SMTP_DATA_TOO_BIG;
		return;
	}
	if (buf_append(d->body, p, n) < 0)
		d->anomalies |= SMTP_DATA_TOO_BIG;
}

/* line_grow - account n wire octets to the current line */
static void line_grow(struct smtp_data *d, size_t n)
{
	d->line_len += n;
	if (d->limits.line_max && d->line_len > d->limits.line_max)
		d->anomalies |= SMTP_DATA_LONG_LINE;
}

/* text_byte - one octet in the middle of a line; returns the next state.
 * LF ends the line for length counting, but a bare LF never brings us back to
 * DATA_BOL: only CR LF may precede the terminating dot. */
static int text_byte(struct smtp_data *d, char c)
{
	line_grow(d, 1);
	switch (c) {
	case '\r':
		return DATA_CR;
	case '\n':
		d->anomalies |= SMTP_DATA_BARE_LF;
		d->line_len = 0;
		emit(d, "\n", 1);
		return DATA_TEXT;
	case '\0':
		d->anomalies |= SMTP_DATA_NUL;
		break;
	}
	emit(d, &c, 1);
	return DATA_TEXT;
}

/* text_run - length of ordinary octets at p (no CR, LF, NUL) */
static size_t text_run(const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && p[i] != '\r' && p[i] != '\n' && p[i] != '\0')
		i++;
	return i;
}

/* dot_step - one transition of the DATA machine; consumes *p */
static void dot_step(struct smtp_data *d, char c)
{
	switch (d->state) {
	case DATA_BOL:
		if (c == '.') {
			line_grow(d, 1);
			d->state = DATA_DOT;
		} else {
			d->state = text_byte(d, c);
		}
		break;
	case DATA_DOT:
		if (c == '\r') {
			line_grow(d, 1);
			d->state = DATA_DOT_CR;
		} else {
			d->state = text_byte(d, c);	/* the stuffing dot is dropped */
		}
		break;
	case DATA_DOT_CR:
		if (c == '\n') {
			d->state = DATA_END;
			d->done = true;
			break;
		}
		d->anomalies |= SMTP_DATA_BARE_CR;
		emit(d, "\r", 1);
		d->state = text_byte(d, c);
		break;
	case DATA_CR:
		if (c == '\n') {
			line_grow(d, 1);
			d->line_len = 0;
			emit(d, "\r\n", 2);
			d->state = DATA_BOL;
			break;
		}
		d->anomalies |= SMTP_DATA_BARE_CR;
		emit(d, "\r", 1);
		d->state = text_byte(d, c);
		break;
	default:
		d->state = text_byte(d, c);
		break;
	}
}

/* dot_feed - DATA: run the machine until end of data or end of input */
static size_t dot_feed(struct smtp_data *d, const char *in, size_t len)
{
	size_t i = 0, run;

	while (i < len && d->state != DATA_END) {
		if (d->state == DATA_TEXT) {
			run = text_run(in + i, len - i);
			if (run > 0) {
				line_grow(d, run);
				emit(d, in + i, run);
				i += run;
				continue;
			}
		}
		dot_step(d, in[i++]);
	}
	return i;
}

/* chunk_check - BDAT: the text checks over n verbatim octets, with the CR
 * state carried across chunks */
static void chunk_check(struct smtp_data *d, const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char c = p[i];

		if (d->state == DATA_CR && c != '\n')
			d->anomalies |= SMTP_DATA_BARE_CR;
		if (c == '\n' && d->state != DATA_CR)
			d->anomalies |= SMTP_DATA_BARE_LF;
		if (c == '\0')
			d->anomalies |= SMTP_DATA_NUL;
		line_grow(d, 1);
		if (c == '\n')
			d->line_len = 0;
		d->state = c == '\r' ? DATA_CR : DATA_TEXT;
	}
}

/* smtp_data_feed - consume body input */
size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t len)
{
	size_t n;

	if (!d->bdat)
		return d->done ? 0 : dot_feed(d, in, len);
	n = d->chunk_left < len ? (size_t)d->chunk_left : len;
	if (d->check)
		chunk_check(d, in, n);
	emit(d, in, n);
	d->chunk_left -= n;
	d->done = d->chunk_left == 0;
	return n;
}

/* smtp_data_done - see header */
bool smtp_data_done(const struct smtp_data *d)
{
	return d->done;
}

/* smtp_data_verdict_anomaly - the first problem, in the order the header
 * gives: size, bare CR/LF, NUL, line length */
unsigned smtp_data_verdict_anomaly(const struct smtp_data *d)
{
	unsigned a = d->anomalies;

	if (d->bdat && d->check && d->state == DATA_CR)
		a |= SMTP_DATA_BARE_CR;	/* content ended in a lone CR */
	if (a & SMTP_DATA_TOO_BIG)
		return SMTP_DATA_TOO_BIG;
	if (a & (SMTP_DATA_BARE_LF | SMTP_DATA_BARE_CR))
		return SMTP_DATA_BARE_LF;
	if (a & SMTP_DATA_NUL)
		return SMTP_DATA_NUL;
	if (a & SMTP_DATA_LONG_LINE)
		return SMTP_DATA_LONG_LINE;
	return 0;
}

/* smtp_data_verdict - the reply for the whole message, first problem wins */
const char *smtp_data_verdict(const struct smtp_data *d)
{
	switch (smtp_data_verdict_anomaly(d)) {
	case SMTP_DATA_TOO_BIG:
		return "552 5.3.4 Error: message exceeds fixed maximum message size";
	case SMTP_DATA_BARE_LF:
		return "550 5.6.11 Error: bare CR or LF in message content (SMTP smuggling defence)";
	case SMTP_DATA_NUL:
		return "554 5.6.0 Error: NUL octet in message content";
	case SMTP_DATA_LONG_LINE:
		return "554 5.6.0 Error: message line too long";
	default:
		return NULL;
	}
}
