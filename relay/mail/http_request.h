/*
 * http_request - one HTTP/1.1 request at a time, parsed from bytes by
 * Debian's http-parser (libhttp-parser), with our limits on top: the
 * glue the HTTP API's sessions (relay/http) feed their input to. Pure:
 * no I/O, no clock.
 *
 *   struct http_request *r = http_request_new(&limits);
 *   size_t used = http_request_feed(r, data, len);   // never past one request
 *   switch (http_request_state(r)) {
 *   case HTTP_REQUEST_COMPLETE: act on method/path/headers/body, answer,
 *        then http_request_reset(r) and feed the rest (pipelining)
 *   case HTTP_REQUEST_ERROR: answer http_request_error_status(r) with
 *        http_request_error_text(r), then close
 *   default: need more input (http_request_wants_continue: say 100)
 *   }
 *   r = http_request_free(r);
 *
 * Limits: the request line and header fields together at most
 * header_max bytes (431 past it; 414 when the target alone is longer);
 * the body at most body_max bytes (413 as soon as Content-Length says
 * so, or when a chunked body grows past it). Only the headers the API
 * needs are kept (Authorization, Content-Type, Expect); others are
 * counted and dropped. Bytes after a complete request are not consumed:
 * the caller keeps them for the next one.
 *
 * Ownership: the strings and the body belong to r and stay valid until
 * the next reset, feed after completion, or free.
 */
#ifndef RINGMAIL_HTTP_REQUEST_H
#define RINGMAIL_HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

struct http_request;

struct http_request_limits {
	size_t header_max;             /* request line + header fields */
	size_t body_max;               /* decoded body */
};

enum http_request_state {
	HTTP_REQUEST_IDLE,             /* nothing of a request yet */
	HTTP_REQUEST_HEADERS,          /* inside the request line or headers */
	HTTP_REQUEST_BODY,             /* headers done, body arriving */
	HTTP_REQUEST_COMPLETE,         /* a whole request: act on it */
	HTTP_REQUEST_ERROR,            /* bad or too large: answer and close */
};

/* The methods the API tells apart; anything else is OTHER (405). */
enum http_request_method {
	HTTP_METHOD_OTHER,
	HTTP_METHOD_GET,
	HTTP_METHOD_HEAD,
	HTTP_METHOD_POST,
};

/* Kept header values are capped at this (longer ones are cut, which
 * makes a token or type that cannot match rather than an error). */
#define HTTP_REQUEST_VALUE_MAX 512
#define HTTP_REQUEST_TARGET_MAX 2048

struct http_request *http_request_new(const struct http_request_limits *limits);

/* http_request_free - accepts NULL, returns NULL. */
struct http_request *http_request_free(struct http_request *r);

/* http_request_set_limits - applies from the next request on (reload). */
void http_request_set_limits(struct http_request *r, const struct http_request_limits *limits);

/* http_request_feed - parse up to len bytes; returns how many were used.
 * Stops at the end of a request (COMPLETE) or at an error; feeding a
 * COMPLETE or ERROR request uses nothing. */
size_t http_request_feed(struct http_request *r, const char *data, size_t len);

/* http_request_reset - ready for the next request on the connection. */
void http_request_reset(struct http_request *r);

enum http_request_state http_request_state(const struct http_request *r);

/* http_request_error_status / _text - the status to answer (400, 405 is
 * the caller's, 413, 414, 431, 505) and a sentence saying why. */
int http_request_error_status(const struct http_request *r);
const char *http_request_error_text(const struct http_request *r);

enum http_request_method http_request_method(const struct http_request *r);
const char *http_request_target(const struct http_request *r);      /* "/api/inject/v1" */
const char *http_request_authorization(const struct http_request *r);   /* "" when absent */
const char *http_request_content_type(const struct http_request *r);    /* "" when absent */
const char *http_request_body(const struct http_request *r, size_t *len);

/* http_request_keep_alive - may the connection carry another request
 * (HTTP/1.1 without "Connection: close", or 1.0 with keep-alive)? Valid
 * once COMPLETE. */
bool http_request_keep_alive(const struct http_request *r);

/* http_request_wants_continue - the headers are in, they asked for
 * "Expect: 100-continue" and nobody has answered it yet; the caller
 * says 100 and calls http_request_continue_sent. */
bool http_request_wants_continue(const struct http_request *r);
void http_request_continue_sent(struct http_request *r);

#endif
