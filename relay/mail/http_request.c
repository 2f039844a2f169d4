/*
 * http_request - HTTP/1.1 requests from bytes; see http_request.h.
 *
 * http-parser does the syntax (request line, header folding rules,
 * chunked coding, Content-Length checks, smuggling guards such as a
 * Content-Length next to Transfer-Encoding); this file adds what it
 * leaves to its user: which headers to keep, the size limits, and
 * stopping exactly at the end of one request so that a pipelined next
 * one waits for the answer to this one (the parser is paused in
 * on_message_complete and unpaused by reset).
 */
#include "http_request.h"

#include <http_parser.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "xalloc.h"

/* Which kept header the field being parsed is. */
enum http_header_slot {
	SLOT_NONE,
	SLOT_AUTHORIZATION,
	SLOT_CONTENT_TYPE,
	SLOT_EXPECT,
	SLOT_COUNT
};

/* Field names longer than any we keep need not be held whole. */
#define FIELD_NAME_MAX 32

struct http_request {
	http_parser parser;
	http_parser_settings settings;
	struct http_request_limits limits, next_limits;
	enum http_request_state state;
	int error_status;
	char error_text[160];

	size_t header_bytes;               /* request line + fields so far */
	char target[HTTP_REQUEST_TARGET_MAX + 1];
	size_t target_len;
	char field[FIELD_NAME_MAX + 1];
	size_t field_len;
	bool in_value;                     /* the last callback was a value */
	enum http_header_slot slot;
	char values[SLOT_COUNT][HTTP_REQUEST_VALUE_MAX + 1];
	size_t value_lens[SLOT_COUNT];

	enum http_request_method method;
	bool keep_alive;
	bool wants_continue;
	struct buf body;
};

static struct http_request *request_of(http_parser *p)
{
	return p->data;
}

/* request_fail - remember why; the callback then returns non-zero, which
 * stops the parser. */
static int request_fail(struct http_request *r, int status, const char *text)
{
	if (r->error_status == 0) {
		r->error_status = status;
		snprintf(r->error_text, sizeof(r->error_text), "%s", text);
	}
	return -1;
}

/* count_header_bytes - charge n bytes of the head against header_max. */
static int count_header_bytes(struct http_request *r, size_t n)
{
	r->header_bytes += n;
	if (r->header_bytes > r->limits.header_max)
		return request_fail(r, 431, "the request line and header fields exceed http.max_header_size");
	return 0;
}

static int on_message_begin(http_parser *p)
{
	struct http_request *r = request_of(p);
	r->state = HTTP_REQUEST_HEADERS;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct http_request *r = request_of(p);

	if (r->target_len + len > HTTP_REQUEST_TARGET_MAX)
		return request_fail(r, 414, "the request target is too long");
	memcpy(r->target + r->target_len, at, len);
	r->target_len += len;
	r->target[r->target_len] = '\0';
	return count_header_bytes(r, len);
}

static enum http_header_slot slot_of(const char *name)
{
	if (strcasecmp(name, "authorization") == 0)
		return SLOT_AUTHORIZATION;
	if (strcasecmp(name, "content-type") == 0)
		return SLOT_CONTENT_TYPE;
	if (strcasecmp(name, "expect") == 0)
		return SLOT_EXPECT;
	return SLOT_NONE;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct http_request *r = request_of(p);

	if (r->in_value) {
		r->in_value = false;
		r->field_len = 0;
	}
	size_t room = FIELD_NAME_MAX - r->field_len;
	size_t n = len < room ? len : room;
	memcpy(r->field + r->field_len, at, n);
	r->field_len += n;
	r->field[r->field_len] = '\0';
	return count_header_bytes(r, len + 4);     /* ": " and CRLF */
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct http_request *r = request_of(p);

	if (!r->in_value) {
		r->in_value = true;
		/* A name cut at FIELD_NAME_MAX matches nothing we keep. */
		r->slot = r->field_len < FIELD_NAME_MAX ? slot_of(r->field) : SLOT_NONE;
		if (r->slot != SLOT_NONE && r->value_lens[r->slot] > 0)
			return request_fail(r, 400, "a header field the API reads appears twice");
	}
	if (r->slot != SLOT_NONE) {
		size_t *vl = &r->value_lens[r->slot];
		size_t room = HTTP_REQUEST_VALUE_MAX - *vl;
		size_t n = len < room ? len : room;
		memcpy(r->values[r->slot] + *vl, at, n);
		*vl += n;
		r->values[r->slot][*vl] = '\0';
	}
	return count_header_bytes(r, len);
}

static int on_headers_complete(http_parser *p)
{
	struct http_request *r = request_of(p);

	r->state = HTTP_REQUEST_BODY;
	switch (p->method) {
	case HTTP_GET:
		r->method = HTTP_METHOD_GET;
		break;
	case HTTP_HEAD:
		r->method = HTTP_METHOD_HEAD;
		break;
	case HTTP_POST:
		r->method = HTTP_METHOD_POST;
		break;
	default:
		r->method = HTTP_METHOD_OTHER;
		break;
	}
	if (p->http_major != 1)
		return request_fail(r, 505, "only HTTP/1.0 and HTTP/1.1 are spoken here");
	if (!(p->flags & F_CHUNKED) && p->content_length != ULLONG_MAX &&
	    p->content_length > r->limits.body_max)
		return request_fail(r, 413, "the body exceeds http.max_body_size");
	r->wants_continue = strcasecmp(r->values[SLOT_EXPECT], "100-continue") == 0;
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct http_request *r = request_of(p);

	if (buf_len(&r->body) + len > r->limits.body_max)
		return request_fail(r, 413, "the body exceeds http.max_body_size");
	if (buf_append(&r->body, at, len) < 0)
		return request_fail(r, 413, "the body exceeds http.max_body_size");
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct http_request *r = request_of(p);

	r->state = HTTP_REQUEST_COMPLETE;
	r->keep_alive = http_should_keep_alive(p) != 0;
	r->wants_continue = false;
	http_parser_pause(p, 1);
	return 0;
}

/* request_clear - forget the last request; the limits that a reload set
 * apply from here. */
static void request_clear(struct http_request *r)
{
	r->limits = r->next_limits;
	http_parser_init(&r->parser, HTTP_REQUEST);
	r->parser.data = r;
	r->state = HTTP_REQUEST_IDLE;
	r->error_status = 0;
	r->error_text[0] = '\0';
	r->header_bytes = 0;
	r->target_len = 0;
	r->target[0] = '\0';
	r->field_len = 0;
	r->in_value = false;
	r->slot = SLOT_NONE;
	for (int i = 0; i < SLOT_COUNT; i++) {
		r->value_lens[i] = 0;
		r->values[i][0] = '\0';
	}
	r->method = HTTP_METHOD_OTHER;
	r->keep_alive = false;
	r->wants_continue = false;
	/* Keep a modest body buffer's storage between requests. */
	size_t keep = 256 * 1024;
	if (keep > r->limits.body_max + 1)
		keep = r->limits.body_max + 1;
	buf_clear(&r->body, keep);
	r->body.max = r->limits.body_max + 1;
}

struct http_request *http_request_new(const struct http_request_limits *limits)
{
	struct http_request *r = xcalloc(1, sizeof(*r));

	http_parser_settings_init(&r->settings);
	r->settings.on_message_begin = on_message_begin;
	r->settings.on_url = on_url;
	r->settings.on_header_field = on_header_field;
	r->settings.on_header_value = on_header_value;
	r->settings.on_headers_complete = on_headers_complete;
	r->settings.on_body = on_body;
	r->settings.on_message_complete = on_message_complete;
	r->next_limits = *limits;
	buf_init(&r->body, limits->body_max + 1);
	request_clear(r);
	return r;
}

struct http_request *http_request_free(struct http_request *r)
{
	if (r == NULL)
		return NULL;
	buf_free(&r->body);
	free(r);
	return NULL;
}

void http_request_set_limits(struct http_request *r, const struct http_request_limits *limits)
{
	r->next_limits = *limits;
}

void http_request_reset(struct http_request *r)
{
	request_clear(r);
}

/* error_from_parser - a status for what http-parser refused. */
static void error_from_parser(struct http_request *r)
{
	enum http_errno err = HTTP_PARSER_ERRNO(&r->parser);

	if (r->error_status != 0)
		return;      /* ours, from a callback */
	switch (err) {
	case HPE_HEADER_OVERFLOW:
		request_fail(r, 431, "the header fields are too large");
		break;
	case HPE_INVALID_VERSION:
		request_fail(r, 505, "only HTTP/1.0 and HTTP/1.1 are spoken here");
		break;
	default: {
		char text[160];
		snprintf(text, sizeof(text), "malformed HTTP request: %s", http_errno_description(err));
		request_fail(r, 400, text);
		break;
	}
	}
}

size_t http_request_feed(struct http_request *r, const char *data, size_t len)
{
	if (r->state == HTTP_REQUEST_COMPLETE || r->state == HTTP_REQUEST_ERROR || len == 0)
		return 0;
	size_t used = http_parser_execute(&r->parser, &r->settings, data, len);
	enum http_errno err = HTTP_PARSER_ERRNO(&r->parser);

	if (r->state == HTTP_REQUEST_COMPLETE)
		return used;      /* paused at the end of the request */
	if (err != HPE_OK) {
		error_from_parser(r);
		r->state = HTTP_REQUEST_ERROR;
	}
	return used;
}

enum http_request_state http_request_state(const struct http_request *r)
{
	return r->state;
}

int http_request_error_status(const struct http_request *r)
{
	return r->error_status;
}

const char *http_request_error_text(const struct http_request *r)
{
	return r->error_text;
}

enum http_request_method http_request_method(const struct http_request *r)
{
	return r->method;
}

const char *http_request_target(const struct http_request *r)
{
	return r->target;
}

const char *http_request_authorization(const struct http_request *r)
{
	return r->values[SLOT_AUTHORIZATION];
}

const char *http_request_content_type(const struct http_request *r)
{
	return r->values[SLOT_CONTENT_TYPE];
}

const char *http_request_body(const struct http_request *r, size_t *len)
{
	*len = buf_len(&r->body);
	return *len > 0 ? buf_data(&r->body) : "";
}

bool http_request_keep_alive(const struct http_request *r)
{
	return r->keep_alive;
}

bool http_request_wants_continue(const struct http_request *r)
{
	return r->state == HTTP_REQUEST_BODY && r->wants_continue;
}

void http_request_continue_sent(struct http_request *r)
{
	r->wants_continue = false;
}
