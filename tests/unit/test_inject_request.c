/*
 * test_inject_request - the /api/inject/v1 JSON: accepted shapes, every
 * refusal naming its field, substitutions, and raw content made into
 * CRLF message bytes (inject_message).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include "inject_message.h"
#include "inject_request.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static struct inject_request *parse_ok(const char *json)
{
	struct inject_request *q = NULL;
	char why[256] = "";
	int rc = inject_request_parse(json, strlen(json), 100, &q, why, sizeof(why));
	cr_assert_eq(rc, 0, "%s: %s", json, why);
	return q;
}

Test(inject_request, raw_content)
{
	struct inject_request *q = parse_ok(
		"{\"envelope_sender\":\"s@x.test\",\"recipients\":[{\"email\":\"a@y.test\"},"
		"{\"email\":\"b@y.test\",\"name\":\"B\",\"substitutions\":{\"n\":1,\"ok\":true,\"s\":\"v\"}}],"
		"\"content\":\"Subject: x\\r\\n\\r\\nbody\"}");
	cr_expect_str_eq(q->envelope_sender, "s@x.test");
	cr_assert_eq(q->recipient_count, 2);
	cr_expect_str_eq(q->recipients[0].email, "a@y.test");
	cr_expect_null(q->recipients[0].name);
	cr_expect_str_eq(q->recipients[1].name, "B");
	cr_assert_eq(q->recipients[1].sub_count, 3);
	cr_expect_str_eq(q->recipients[1].subs[0].name, "n");
	cr_expect_str_eq(q->recipients[1].subs[0].value, "1");
	cr_expect_str_eq(q->recipients[1].subs[1].value, "true");
	cr_expect(q->raw);
	cr_expect_eq(q->raw_len, strlen("Subject: x\r\n\r\nbody"));
	cr_expect(inject_request_has_substitutions(q));
	inject_request_free(q);
}

Test(inject_request, structured_content)
{
	struct inject_request *q = parse_ok(
		"{\"envelope_sender\":\"\",\"recipients\":[{\"email\":\"a@y.test\"}],"
		"\"content\":{\"subject\":\"S\",\"text_body\":\"t\",\"html_body\":\"<b>h</b>\","
		"\"from\":{\"email\":\"f@x.test\",\"name\":\"F\"},\"reply_to\":\"r@x.test\","
		"\"headers\":{\"X-Campaign\":\"c1\"},"
		"\"attachments\":[{\"data\":\"aGVsbG8=\",\"content_type\":\"text/plain\",\"file_name\":\"h.txt\"},"
		"{\"data\":\"AAEC\"}]}}");
	cr_expect_str_eq(q->envelope_sender, "");
	cr_expect(!q->raw);
	cr_expect(!inject_request_has_substitutions(q));
	const struct inject_content *c = &q->content;
	cr_expect_str_eq(c->subject, "S");
	cr_expect_str_eq(c->from.email, "f@x.test");
	cr_expect_str_eq(c->from.name, "F");
	cr_expect_str_eq(c->reply_to.email, "r@x.test");
	cr_assert_eq(c->header_count, 1);
	cr_expect_str_eq(c->headers[0].name, "X-Campaign");
	cr_assert_eq(c->attachment_count, 2);
	cr_expect_eq(c->attachments[0].len, 5);
	cr_expect(memcmp(c->attachments[0].data, "hello", 5) == 0);
	cr_expect_str_eq(c->attachments[1].content_type, "application/octet-stream");
	cr_expect_eq(c->attachments[1].len, 3);
	inject_request_free(q);
}

Test(inject_request, refusals_name_the_field)
{
	static const struct {
		const char *json;
		const char *want;
	} bad[] = {
		{ "{", "invalid JSON" },
		{ "[]", "the body must be a JSON object" },
		{ "{\"recipients\":[{\"email\":\"a@b\"}],\"content\":\"x: y\"}", "envelope_sender: missing" },
		{ "{\"envelope_sender\":1,\"recipients\":[],\"content\":\"x\"}", "envelope_sender: expects a string" },
		{ "{\"envelope_sender\":\"s@x\",\"content\":\"x: y\"}", "recipients: missing" },
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":[],\"content\":\"x: y\"}", "recipients: empty" },
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":{},\"content\":\"x: y\"}", "recipients: expects an array" },
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":[{\"name\":\"a\"}],\"content\":\"x: y\"}", "recipients[0].email: missing" },
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\"},{\"email\":2}],\"content\":\"x: y\"}",
		  "recipients[1].email: expects a string" },
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\"}]}", "content: missing" },
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\"}],\"content\":\"\"}", "content: empty" },
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\"}],\"content\":\"a\\u0000b\"}",
		  "is not allowed" },      /* jansson refuses \u0000 itself */
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\"}],\"content\":{\"from\":\"f@x\"}}",
		  "content: needs text_body or html_body" },
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\"}],\"content\":{\"text_body\":\"t\"}}",
		  "content.from: missing" },
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\"}],\"content\":{\"text_body\":\"t\","
		  "\"from\":\"f@x\",\"attachments\":[{\"data\":\"!!!\"}]}}", "content.attachments[0].data: not valid base64" },
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\"}],\"content\":{\"text_body\":\"t\","
		  "\"from\":\"f@x\",\"subject\":\"a\\r\\nBcc: x\"}}", "content.subject: must not contain CR or LF" },
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\"}],\"content\":{\"text_body\":\"t\","
		  "\"from\":\"f@x\",\"headers\":{\"X-A\":\"1\\nBcc: x\"}}}", "content.headers.X-A: must not contain CR or LF" },
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\"}],\"content\":{\"text_body\":\"t\","
		  "\"from\":\"f@x\",\"headers\":{\"Bad Name\":\"1\"}}}", "content.headers.Bad Name: not a header field name" },
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\"}],\"content\":{\"text_body\":\"t\","
		  "\"from\":{\"email\":\"f@n\\nBcc: x\"}}}", "content.from.email: must not contain control characters" },
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\",\"name\":\"A\\r\\nB\"}],"
		  "\"content\":\"x: y\"}", "recipients[0].name: must not contain control characters" },
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\"}],\"content\":{\"text_body\":\"t\","
		  "\"from\":\"f@x\",\"attachments\":[{\"data\":\"AAEC\",\"content_type\":\"text/plain; x=\\\"y\"}]}}",
		  "content_type: expects a media type" },
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\",\"substitutions\":{\"k\":[1]}}],"
		  "\"content\":\"x: y\"}", "recipients[0].substitutions.k: expects a string, number or boolean" },
		{ "{\"envelope_sender\":\"s@x\",\"envelope_sender\":\"t@x\",\"recipients\":[{\"email\":\"a@b\"}],"
		  "\"content\":\"x: y\"}", "invalid JSON" },
		{ "{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\"}],\"require_tls\":\"yes\","
		  "\"content\":\"x: y\"}", "require_tls: expects true or false" },
	};
	for (size_t i = 0; i < N(bad); i++) {
		struct inject_request *q = (struct inject_request *)1;
		char why[256] = "";
		int rc = inject_request_parse(bad[i].json, strlen(bad[i].json), 100, &q, why, sizeof(why));
		cr_expect_eq(rc, -EINVAL, "%s: rc %d", bad[i].json, rc);
		cr_expect_null(q);
		cr_expect(strstr(why, bad[i].want) != NULL, "%s: got \"%s\", want \"%s\"", bad[i].json, why, bad[i].want);
	}
}

Test(inject_request, recipient_limit)
{
	const char *json = "{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\"},{\"email\":\"c@d\"}],"
			   "\"content\":\"x: y\"}";
	struct inject_request *q;
	char why[256];
	cr_expect_eq(inject_request_parse(json, strlen(json), 1, &q, why, sizeof(why)), -EINVAL);
	cr_expect(strstr(why, "smtp.max_recipients") != NULL, "%s", why);
}

Test(inject_message, substitutions)
{
	struct inject_substitution own[] = { { "name", "Ann" }, { "x", "" } };
	struct inject_substitution common[] = { { "name", "nobody" }, { "shop", "S&Co" } };
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "Hi {{name}}", "Hi Ann" },
		{ "Hi {{ name }} at {{shop}}{{x}}!", "Hi Ann at S&Co!" },
		{ "{{unknown}} stays", "{{unknown}} stays" },
		{ "{{ }} {{na me}} {name} {{name", "{{ }} {{na me}} {name} {{name" },
		{ "{{{name}}}", "{Ann}" },
		{ "", "" },
	};
	for (size_t i = 0; i < N(cases); i++) {
		struct buf b;
		buf_init(&b, 1024);
		cr_assert_eq(inject_substitute(cases[i].in, strlen(cases[i].in), own, N(own), common, N(common), &b), 0);
		cr_expect(buf_len(&b) == strlen(cases[i].want) && memcmp(buf_data(&b), cases[i].want, buf_len(&b)) == 0,
			  "%s: got \"%.*s\", want \"%s\"", cases[i].in, (int)buf_len(&b), buf_data(&b), cases[i].want);
		buf_free(&b);
	}
	struct buf small;
	buf_init(&small, 4);
	cr_expect_eq(inject_substitute("{{name}}{{name}}", 16, own, N(own), NULL, 0, &small), -ENOBUFS);
	buf_free(&small);
}

Test(inject_message, normalize)
{
	static const struct {
		const char *in;
		int want_rc;
		const char *want;
	} cases[] = {
		{ "Subject: a\n\nbody", 0, "Subject: a\r\n\r\nbody\r\n" },
		{ "Subject: a\r\n\r\nbody\r\n", 0, "Subject: a\r\n\r\nbody\r\n" },
		{ "Subject: a\r\rb\r\n", 0, "Subject: a\r\n\r\nb\r\n" },
		{ "Subject: a", 0, "Subject: a\r\n" },
		{ "not a header\n\nbody", -EBADMSG, NULL },
		{ ": x\n", -EBADMSG, NULL },
		{ "Subject: aaaaaaaaaa\n", -E2BIG, NULL },
	};
	for (size_t i = 0; i < N(cases); i++) {
		struct buf b;
		buf_init(&b, 1024);
		int rc = inject_message_normalize(cases[i].in, strlen(cases[i].in), i == N(cases) - 1 ? 12 : 1000, &b);
		cr_expect_eq(rc, cases[i].want_rc, "case %zu: rc %d", i, rc);
		if (rc == 0)
			cr_expect(buf_len(&b) == strlen(cases[i].want) && memcmp(buf_data(&b), cases[i].want, buf_len(&b)) == 0,
				  "case %zu: got \"%.*s\"", i, (int)buf_len(&b), buf_data(&b));
		buf_free(&b);
	}
	struct buf small;
	buf_init(&small, 8);
	cr_expect_eq(inject_message_normalize("Subject: long enough\n", 21, 1000, &small), -ENOBUFS);
	buf_free(&small);
}

/* "require_tls": RFC 8689 REQUIRETLS for an injected message. */
Test(inject_request, require_tls)
{
	struct inject_request *q = parse_ok("{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\"}],"
					    "\"require_tls\":true,\"content\":\"x: y\"}");
	cr_expect(q->require_tls);
	q = inject_request_free(q);
	q = parse_ok("{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\"}],"
		     "\"require_tls\":false,\"content\":\"x: y\"}");
	cr_expect(!q->require_tls);
	q = inject_request_free(q);
	q = parse_ok("{\"envelope_sender\":\"s@x\",\"recipients\":[{\"email\":\"a@b\"}],\"content\":\"x: y\"}");
	cr_expect(!q->require_tls, "require_tls without the field");
	q = inject_request_free(q);
}
