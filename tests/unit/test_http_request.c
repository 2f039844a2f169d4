/*
 * test_http_request - the HTTP request glue over http-parser: complete
 * requests fed whole and byte by byte, pipelining (stops at each
 * request's end), keep-alive rules, chunked bodies, limits (431, 414,
 * 413 by Content-Length and by chunks), 100-continue, bad syntax, and
 * the bearer token reader (http_tokens.h).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "http_request.h"
#include "http_tokens.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct http_request_limits limits = { 1024, 4096 };

struct request_case {
	const char *text;
	enum http_request_state want_state;
	int want_status;                   /* when ERROR */
	const char *want_target;           /* when COMPLETE */
	const char *want_body;
	bool want_keep_alive;
};

static const struct request_case cases[] = {
	{ "POST /api/inject/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
	  HTTP_REQUEST_COMPLETE, 0, "/api/inject/v1", "{}", true },
	{ "POST /a HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
	  HTTP_REQUEST_COMPLETE, 0, "/a", "", false },
	{ "GET /a HTTP/1.0\r\n\r\n", HTTP_REQUEST_COMPLETE, 0, "/a", "", false },
	{ "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", HTTP_REQUEST_COMPLETE, 0, "/a", "", true },
	{ "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
	  HTTP_REQUEST_COMPLETE, 0, "/c", "abcde", true },
	{ "POST /a HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", HTTP_REQUEST_ERROR, 413, NULL, NULL, false },
	{ "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1001\r\n", HTTP_REQUEST_BODY, 0, NULL, NULL, false },
	{ "GARBAGE\r\n\r\n", HTTP_REQUEST_ERROR, 400, NULL, NULL, false },
	{ "POST /a HTTP/2.0\r\n\r\n", HTTP_REQUEST_ERROR, 505, NULL, NULL, false },
	{ "POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", HTTP_REQUEST_ERROR, 400, NULL, NULL, false },
	{ "POST /a HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	  HTTP_REQUEST_ERROR, 400, NULL, NULL, false },
	{ "POST /a HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", HTTP_REQUEST_ERROR, 400, NULL, NULL, false },
	{ "POST /a HTTP/1.1\r\nContent-Len", HTTP_REQUEST_HEADERS, 0, NULL, NULL, false },
	{ "", HTTP_REQUEST_IDLE, 0, NULL, NULL, false },
};

static void check_case(const struct request_case *c, struct http_request *r, size_t used)
{
	enum http_request_state got = http_request_state(r);
	cr_expect_eq(got, c->want_state, "%s: state got %d, want %d", c->text, got, c->want_state);
	if (c->want_state == HTTP_REQUEST_ERROR)
		cr_expect_eq(http_request_error_status(r), c->want_status, "%s: status got %d, want %d",
			     c->text, http_request_error_status(r), c->want_status);
	if (c->want_state != HTTP_REQUEST_COMPLETE)
		return;
	size_t len;
	const char *body = http_request_body(r, &len);
	cr_expect_eq(used, strlen(c->text), "%s: used %zu of %zu", c->text, used, strlen(c->text));
	cr_expect_str_eq(http_request_target(r), c->want_target);
	cr_expect_eq(len, strlen(c->want_body));
	cr_expect(memcmp(body, c->want_body, len) == 0, "%s: body got %.*s", c->text, (int)len, body);
	cr_expect_eq(http_request_keep_alive(r), c->want_keep_alive, "%s: keep-alive", c->text);
}

Test(http_request, table_whole)
{
	for (size_t i = 0; i < N(cases); i++) {
		struct http_request *r = http_request_new(&limits);
		size_t used = http_request_feed(r, cases[i].text, strlen(cases[i].text));
		check_case(&cases[i], r, used);
		http_request_free(r);
	}
}

Test(http_request, table_byte_by_byte)
{
	for (size_t i = 0; i < N(cases); i++) {
		struct http_request *r = http_request_new(&limits);
		const char *t = cases[i].text;
		size_t used = 0;
		for (size_t k = 0; t[k] != '\0'; k++) {
			enum http_request_state s = http_request_state(r);
			if (s == HTTP_REQUEST_COMPLETE || s == HTTP_REQUEST_ERROR)
				break;
			used += http_request_feed(r, t + k, 1);
		}
		check_case(&cases[i], r, used);
		http_request_free(r);
	}
}

Test(http_request, pipelined_requests_stop_at_each_end)
{
	const char *two = "POST /one HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
			  "POST /two HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 2\r\n\r\nxy";
	struct http_request *r = http_request_new(&limits);
	size_t len = strlen(two), body_len;

	size_t used = http_request_feed(r, two, len);
	cr_assert_eq(http_request_state(r), HTTP_REQUEST_COMPLETE);
	cr_expect_str_eq(http_request_target(r), "/one");
	cr_expect_str_eq(http_request_authorization(r), "");
	cr_expect_eq(http_request_feed(r, two + used, len - used), 0, "a complete request takes nothing more");
	http_request_reset(r);
	used += http_request_feed(r, two + used, len - used);
	cr_assert_eq(http_request_state(r), HTTP_REQUEST_COMPLETE);
	cr_expect_eq(used, len);
	cr_expect_str_eq(http_request_target(r), "/two");
	cr_expect_str_eq(http_request_authorization(r), "Bearer t");
	const char *body = http_request_body(r, &body_len);
	cr_expect(body_len == 2 && memcmp(body, "xy", 2) == 0);
	http_request_free(r);
}

Test(http_request, header_limit_gives_431)
{
	char text[2048];
	int n = snprintf(text, sizeof(text), "POST /a HTTP/1.1\r\nX-Filler: ");
	memset(text + n, 'a', 1100);
	memcpy(text + n + 1100, "\r\n\r\n", 5);
	struct http_request *r = http_request_new(&limits);

	http_request_feed(r, text, strlen(text));
	cr_expect_eq(http_request_state(r), HTTP_REQUEST_ERROR);
	cr_expect_eq(http_request_error_status(r), 431);
	cr_expect(strstr(http_request_error_text(r), "http.max_header_size") != NULL);
	http_request_free(r);
}

Test(http_request, long_target_gives_414)
{
	char text[4096];
	int n = snprintf(text, sizeof(text), "GET /");
	memset(text + n, 'a', HTTP_REQUEST_TARGET_MAX + 10);
	strcpy(text + n + HTTP_REQUEST_TARGET_MAX + 10, " HTTP/1.1\r\n\r\n");
	struct http_request_limits big = { 8192, 4096 };
	struct http_request *r = http_request_new(&big);

	http_request_feed(r, text, strlen(text));
	cr_expect_eq(http_request_error_status(r), 414);
	http_request_free(r);
}

Test(http_request, chunked_body_over_the_limit_gives_413)
{
	char text[8192];
	int n = snprintf(text, sizeof(text), "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (int k = 0; k < 5; k++) {
		n += snprintf(text + n, sizeof(text) - (size_t)n, "400\r\n");
		memset(text + n, 'b', 1024);
		n += 1024;
		n += snprintf(text + n, sizeof(text) - (size_t)n, "\r\n");
	}
	struct http_request *r = http_request_new(&limits);
	http_request_feed(r, text, (size_t)n);
	cr_expect_eq(http_request_state(r), HTTP_REQUEST_ERROR);
	cr_expect_eq(http_request_error_status(r), 413);
	http_request_free(r);
}

Test(http_request, expect_continue_once)
{
	const char *head = "POST /a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Type: application/json\r\n"
			   "Content-Length: 2\r\n\r\n";
	struct http_request *r = http_request_new(&limits);

	http_request_feed(r, head, strlen(head));
	cr_expect_eq(http_request_state(r), HTTP_REQUEST_BODY);
	cr_expect(http_request_wants_continue(r));
	cr_expect_str_eq(http_request_content_type(r), "application/json");
	http_request_continue_sent(r);
	cr_expect(!http_request_wants_continue(r));
	http_request_feed(r, "{}", 2);
	cr_expect_eq(http_request_state(r), HTTP_REQUEST_COMPLETE);
	cr_expect_eq(http_request_method(r), HTTP_METHOD_POST);
	http_request_free(r);
}

Test(http_request, reset_applies_new_limits)
{
	const char *req = "POST /a HTTP/1.1\r\nContent-Length: 2000\r\n\r\n";
	struct http_request *r = http_request_new(&limits);
	struct http_request_limits small = { 1024, 1024 };

	http_request_set_limits(r, &small);
	http_request_reset(r);
	http_request_feed(r, req, strlen(req));
	cr_expect_eq(http_request_error_status(r), 413);
	http_request_free(r);
}

Test(http_tokens, bearer_reader)
{
	size_t len = 0;
	const char *t = http_bearer_token("Bearer abc ", &len);
	cr_assert_not_null(t);
	cr_expect(len == 3 && memcmp(t, "abc", 3) == 0);
	cr_expect_not_null(http_bearer_token("bearer  x", &len));
	cr_expect_null(http_bearer_token("Basic abc", &len));
	cr_expect_null(http_bearer_token("Bearer ", &len));
	cr_expect_null(http_bearer_token("", &len));
}

/* printf %s test | sha256sum */
#define SHA_TEST "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
/* printf %s other | sha256sum */
#define SHA_OTHER "d9298a10d1b0735837dc4bd85dac641b0f3cef27a47e5d53a54f2f3f5b2fcffa"

Test(http_tokens, parse_and_find)
{
	const char *text = "# tokens\n\napp1:" SHA_TEST ":inject\r\n  mon:" SHA_OTHER ":\n";
	struct http_tokens *t;
	char why[256];

	cr_assert_eq(http_tokens_parse(text, strlen(text), &t, why, sizeof(why)), 0, "%s", why);
	cr_expect_eq(http_tokens_count(t), 2);
	const struct http_token *a = http_tokens_find(t, "test", 4);
	cr_assert_not_null(a);
	cr_expect_str_eq(a->name, "app1");
	cr_expect(a->permissions & HTTP_TOKEN_INJECT);
	const struct http_token *m = http_tokens_find(t, "other", 5);
	cr_assert_not_null(m);
	cr_expect_str_eq(m->name, "mon");
	cr_expect_eq(m->permissions, 0);
	cr_expect_null(http_tokens_find(t, "tes", 3));
	cr_expect_null(http_tokens_find(t, SHA_TEST, strlen(SHA_TEST)), "the digest itself is no token");
	cr_expect_null(http_tokens_find(NULL, "test", 4));
	http_tokens_free(t);
}

Test(http_tokens, errors_name_the_line)
{
	static const struct {
		const char *text;
		const char *want;
	} bad[] = {
		{ "app1\n", "line 1: expects NAME:SHA256-HEX:PERMISSIONS" },
		{ "\napp1:abc:inject\n", "line 2: the digest must be 64 hex digits" },
		{ "app 1:" SHA_TEST ":inject\n", "line 1: the name" },
		{ "a:" SHA_TEST ":inject,send\n", "line 1: unknown permission" },
		{ "a:" SHA_TEST ":\na:" SHA_OTHER ":\n", "line 2: the name a appears twice" },
	};
	for (size_t i = 0; i < N(bad); i++) {
		struct http_tokens *t = (struct http_tokens *)1;
		char why[256] = "";
		cr_expect_lt(http_tokens_parse(bad[i].text, strlen(bad[i].text), &t, why, sizeof(why)), 0);
		cr_expect_null(t);
		cr_expect(strstr(why, bad[i].want) != NULL, "got \"%s\", want \"%s\"", why, bad[i].want);
	}
}
