/*
 * inject_request - POST /api/inject/v1 bodies; see inject_request.h.
 *
 * jansson parses; this file says what each field must be, with an error
 * naming the field ("recipients[3].email: expects a string"), since the
 * client's developer reads these while wiring their code up.
 */
#include "inject_request.h"

#include <errno.h>
#include <jansson.h>
#include <mbedtls/base64.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

#define FAIL(...) do { snprintf(why, whylen, __VA_ARGS__); return -EINVAL; } while (0)

/* dup_string - a JSON string value as a new C string, refusing NULs (the
 * rest of the relay handles C strings). */
static int dup_string(json_t *v, const char *field, char **out, char *why, size_t whylen)
{
	if (!json_is_string(v))
		FAIL("%s: expects a string", field);
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	if (strlen(s) != n)
		FAIL("%s: must not contain NUL", field);
	*out = xstrndup(s, n);
	return 0;
}

/* one_line - may s go into a header field? No control octets (CR and
 * LF would start a field of the client's making). */
static int one_line(const char *s, const char *field, char *why, size_t whylen)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 32 || *p == 127)
			FAIL("%s: must not contain control characters (CR, LF, ...)", field);
	return 0;
}

/* optional_string - like dup_string, but absent or null leaves *out NULL. */
static int optional_string(json_t *obj, const char *key, const char *field, char **out,
			   char *why, size_t whylen)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	return dup_string(v, field, out, why, whylen);
}

/* parse_substitutions - {"name": scalar, ...} into an array. */
static int parse_substitutions(json_t *obj, const char *field, struct inject_substitution **out,
			       size_t *count, char *why, size_t whylen)
{
	const char *key;
	json_t *v;

	*out = NULL;
	*count = 0;
	if (obj == NULL || json_is_null(obj))
		return 0;
	if (!json_is_object(obj))
		FAIL("%s: expects an object of name: value", field);
	*out = xcalloc(json_object_size(obj) + 1, sizeof(**out));
	json_object_foreach(obj, key, v) {
		struct inject_substitution *s = &(*out)[*count];
		char text[64];
		if (json_is_string(v)) {
			char sub_field[200];
			snprintf(sub_field, sizeof(sub_field), "%s.%s", field, key);
			if (dup_string(v, sub_field, &s->value, why, whylen) < 0)
				return -EINVAL;
		} else if (json_is_integer(v)) {
			snprintf(text, sizeof(text), "%lld", (long long)json_integer_value(v));
			s->value = xstrdup(text);
		} else if (json_is_real(v)) {
			snprintf(text, sizeof(text), "%g", json_real_value(v));
			s->value = xstrdup(text);
		} else if (json_is_boolean(v)) {
			s->value = xstrdup(json_is_true(v) ? "true" : "false");
		} else {
			FAIL("%s.%s: expects a string, number or boolean", field, key);
		}
		s->name = xstrdup(key);
		(*count)++;
	}
	return 0;
}

static int parse_recipient(json_t *v, size_t i, struct inject_recipient *r, char *why, size_t whylen)
{
	char field[64];

	snprintf(field, sizeof(field), "recipients[%zu]", i);
	if (!json_is_object(v))
		FAIL("%s: expects an object with \"email\"", field);
	json_t *email = json_object_get(v, "email");
	if (email == NULL)
		FAIL("%s.email: missing", field);
	snprintf(field, sizeof(field), "recipients[%zu].email", i);
	if (dup_string(email, field, &r->email, why, whylen) < 0)
		return -EINVAL;
	snprintf(field, sizeof(field), "recipients[%zu].name", i);
	if (optional_string(v, "name", field, &r->name, why, whylen) < 0 ||
	    (r->name != NULL && one_line(r->name, field, why, whylen) < 0))
		return -EINVAL;
	snprintf(field, sizeof(field), "recipients[%zu].substitutions", i);
	return parse_substitutions(json_object_get(v, "substitutions"), field, &r->subs, &r->sub_count,
				   why, whylen);
}

/* parse_address - "addr" or {"email", "name"}. */
static int parse_address_fields(json_t *v, const char *field, struct inject_address *a, char *why, size_t whylen);

/* parse_address - an address field; the address at most 254 octets
 * (RFC 5321 4.5.3.1.3), so that its header line stays foldable. */
static int parse_address(json_t *v, const char *field, struct inject_address *a, char *why, size_t whylen)
{
	if (parse_address_fields(v, field, a, why, whylen) < 0)
		return -EINVAL;
	if (a->email != NULL && strlen(a->email) > 254)
		FAIL("%s: the address is longer than 254 octets", field);
	return 0;
}

static int parse_address_fields(json_t *v, const char *field, struct inject_address *a, char *why, size_t whylen)
{
	char sub[64];

	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_string(v)) {
		if (dup_string(v, field, &a->email, why, whylen) < 0)
			return -EINVAL;
		return one_line(a->email, field, why, whylen);
	}
	if (!json_is_object(v))
		FAIL("%s: expects an address string or {\"email\", \"name\"}", field);
	json_t *email = json_object_get(v, "email");
	if (email == NULL)
		FAIL("%s.email: missing", field);
	snprintf(sub, sizeof(sub), "%s.email", field);
	if (dup_string(email, sub, &a->email, why, whylen) < 0 || one_line(a->email, sub, why, whylen) < 0)
		return -EINVAL;
	snprintf(sub, sizeof(sub), "%s.name", field);
	if (optional_string(v, "name", sub, &a->name, why, whylen) < 0)
		return -EINVAL;
	return a->name != NULL ? one_line(a->name, sub, why, whylen) : 0;
}

static int parse_attachment(json_t *v, size_t i, struct inject_attachment *a, char *why, size_t whylen)
{
	char field[64];
	char *b64 = NULL;

	snprintf(field, sizeof(field), "content.attachments[%zu]", i);
	if (!json_is_object(v))
		FAIL("%s: expects an object with \"data\"", field);
	json_t *data = json_object_get(v, "data");
	if (data == NULL)
		FAIL("%s.data: missing", field);
	snprintf(field, sizeof(field), "content.attachments[%zu].data", i);
	if (dup_string(data, field, &b64, why, whylen) < 0)
		return -EINVAL;
	size_t n = strlen(b64), olen = 0;
	a->data = xmalloc(n / 4 * 3 + 3);
	int rc = mbedtls_base64_decode((unsigned char *)a->data, n / 4 * 3 + 3, &olen,
				       (const unsigned char *)b64, n);
	free(b64);
	if (rc != 0)
		FAIL("%s: not valid base64", field);
	a->len = olen;
	snprintf(field, sizeof(field), "content.attachments[%zu].content_type", i);
	if (optional_string(v, "content_type", field, &a->content_type, why, whylen) < 0)
		return -EINVAL;
	if (a->content_type == NULL)
		a->content_type = xstrdup("application/octet-stream");
	if (strlen(a->content_type) > 200 || strchr(a->content_type, '/') == NULL || strpbrk(a->content_type, " \t\";") != NULL ||
	    one_line(a->content_type, field, why, whylen) < 0)
		FAIL("%s: expects a media type such as \"application/pdf\"", field);
	snprintf(field, sizeof(field), "content.attachments[%zu].file_name", i);
	if (optional_string(v, "file_name", field, &a->file_name, why, whylen) < 0 ||
	    (a->file_name != NULL && one_line(a->file_name, field, why, whylen) < 0))
		return -EINVAL;
	if (a->file_name != NULL && strlen(a->file_name) > 200)
		FAIL("%s: longer than 200 octets", field);
	snprintf(field, sizeof(field), "content.attachments[%zu].content_id", i);
	if (optional_string(v, "content_id", field, &a->content_id, why, whylen) < 0)
		return -EINVAL;
	if (a->content_id != NULL && (strlen(a->content_id) > 200 || strpbrk(a->content_id, "<> \t") != NULL ||
				      one_line(a->content_id, field, why, whylen) < 0))
		FAIL("%s: expects an id without <, >, spaces or control characters", field);
	return 0;
}

static int parse_headers(json_t *obj, struct inject_content *c, char *why, size_t whylen)
{
	const char *key;
	json_t *v;

	if (obj == NULL || json_is_null(obj))
		return 0;
	if (!json_is_object(obj))
		FAIL("content.headers: expects an object of name: value");
	c->headers = xcalloc(json_object_size(obj) + 1, sizeof(*c->headers));
	json_object_foreach(obj, key, v) {
		char field[200];
		snprintf(field, sizeof(field), "content.headers.%s", key);
		if (key[0] == '\0' || strlen(key) > 76)
			FAIL("content.headers: a header name is empty or longer than 76 octets");
		for (const char *p = key; *p; p++)
			if (*p < 33 || *p > 126 || *p == ':')
				FAIL("%s: not a header field name", field);
		struct inject_header *h = &c->headers[c->header_count];
		if (dup_string(v, field, &h->value, why, whylen) < 0)
			return -EINVAL;
		h->name = xstrdup(key);
		c->header_count++;
		for (const char *p = h->value; *p; p++)
			if (*p == '\r' || *p == '\n')
				FAIL("%s: must not contain CR or LF", field);
	}
	return 0;
}

static int parse_content(json_t *v, struct inject_content *c, char *why, size_t whylen)
{
	if (optional_string(v, "subject", "content.subject", &c->subject, why, whylen) < 0 ||
	    optional_string(v, "text_body", "content.text_body", &c->text_body, why, whylen) < 0 ||
	    optional_string(v, "html_body", "content.html_body", &c->html_body, why, whylen) < 0 ||
	    parse_address(json_object_get(v, "from"), "content.from", &c->from, why, whylen) < 0 ||
	    parse_address(json_object_get(v, "reply_to"), "content.reply_to", &c->reply_to, why, whylen) < 0 ||
	    parse_headers(json_object_get(v, "headers"), c, why, whylen) < 0)
		return -EINVAL;
	if (c->subject != NULL && strpbrk(c->subject, "\r\n") != NULL)
		FAIL("content.subject: must not contain CR or LF");
	if (c->text_body == NULL && c->html_body == NULL)
		FAIL("content: needs text_body or html_body (or be a whole message as a string)");
	if (c->from.email == NULL)
		FAIL("content.from: missing");
	json_t *atts = json_object_get(v, "attachments");
	if (atts == NULL || json_is_null(atts))
		return 0;
	if (!json_is_array(atts))
		FAIL("content.attachments: expects an array");
	c->attachments = xcalloc(json_array_size(atts) + 1, sizeof(*c->attachments));
	for (size_t i = 0; i < json_array_size(atts); i++) {
		c->attachment_count = i + 1;
		if (parse_attachment(json_array_get(atts, i), i, &c->attachments[i], why, whylen) < 0)
			return -EINVAL;
	}
	return 0;
}

/* parse_root - the fields of the top-level object. */
static int parse_root(json_t *root, size_t recipients_max, struct inject_request *q, char *why, size_t whylen)
{
	if (!json_is_object(root))
		FAIL("the body must be a JSON object");
	json_t *sender = json_object_get(root, "envelope_sender");
	if (sender == NULL)
		FAIL("envelope_sender: missing");
	if (dup_string(sender, "envelope_sender", &q->envelope_sender, why, whylen) < 0)
		return -EINVAL;
	json_t *rcpts = json_object_get(root, "recipients");
	if (rcpts == NULL)
		FAIL("recipients: missing");
	if (!json_is_array(rcpts))
		FAIL("recipients: expects an array of {\"email\": ...}");
	size_t n = json_array_size(rcpts);
	if (n == 0)
		FAIL("recipients: empty");
	if (n > recipients_max)
		FAIL("recipients: more than %zu (smtp.max_recipients)", recipients_max);
	q->recipients = xcalloc(n, sizeof(*q->recipients));
	for (size_t i = 0; i < n; i++) {
		q->recipient_count = i + 1;
		if (parse_recipient(json_array_get(rcpts, i), i, &q->recipients[i], why, whylen) < 0)
			return -EINVAL;
	}
	if (parse_substitutions(json_object_get(root, "substitutions"), "substitutions", &q->subs,
				&q->sub_count, why, whylen) < 0)
		return -EINVAL;
	json_t *require_tls = json_object_get(root, "require_tls");
	if (require_tls != NULL && !json_is_boolean(require_tls))
		FAIL("require_tls: expects true or false");
	q->require_tls = require_tls != NULL && json_is_true(require_tls);
	json_t *content = json_object_get(root, "content");
	if (content == NULL)
		FAIL("content: missing");
	if (json_is_string(content)) {
		q->raw = true;
		q->raw_len = json_string_length(content);
		q->raw_content = xmalloc(q->raw_len + 1);
		memcpy(q->raw_content, json_string_value(content), q->raw_len + 1);
		if (q->raw_len == 0)
			FAIL("content: empty");
		if (memchr(q->raw_content, '\0', q->raw_len) != NULL)
			FAIL("content: must not contain NUL");
		return 0;
	}
	if (!json_is_object(content))
		FAIL("content: expects a message as a string, or an object (subject, text_body, ...)");
	return parse_content(content, &q->content, why, whylen);
}

int inject_request_parse(const char *json, size_t len, size_t recipients_max,
			 struct inject_request **out, char *why, size_t whylen)
{
	json_error_t err;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);

	*out = NULL;
	if (root == NULL) {
		snprintf(why, whylen, "invalid JSON at line %d column %d: %s", err.line, err.column, err.text);
		return -EINVAL;
	}
	struct inject_request *q = xcalloc(1, sizeof(*q));
	int rc = parse_root(root, recipients_max, q, why, whylen);
	json_decref(root);
	if (rc < 0) {
		inject_request_free(q);
		return rc;
	}
	*out = q;
	return 0;
}

static void free_subs(struct inject_substitution *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(s[i].name);
		free(s[i].value);
	}
	free(s);
}

static void free_content(struct inject_content *c)
{
	free(c->subject);
	free(c->text_body);
	free(c->html_body);
	free(c->from.email);
	free(c->from.name);
	free(c->reply_to.email);
	free(c->reply_to.name);
	for (size_t i = 0; i < c->header_count; i++) {
		free(c->headers[i].name);
		free(c->headers[i].value);
	}
	free(c->headers);
	for (size_t i = 0; i < c->attachment_count; i++) {
		free(c->attachments[i].data);
		free(c->attachments[i].content_type);
		free(c->attachments[i].file_name);
		free(c->attachments[i].content_id);
	}
	free(c->attachments);
}

struct inject_request *inject_request_free(struct inject_request *q)
{
	if (q == NULL)
		return NULL;
	free(q->envelope_sender);
	for (size_t i = 0; i < q->recipient_count; i++) {
		free(q->recipients[i].email);
		free(q->recipients[i].name);
		free_subs(q->recipients[i].subs, q->recipients[i].sub_count);
	}
	free(q->recipients);
	free_subs(q->subs, q->sub_count);
	free(q->raw_content);
	free_content(&q->content);
	free(q);
	return NULL;
}

bool inject_request_has_substitutions(const struct inject_request *q)
{
	if (q->sub_count > 0)
		return true;
	for (size_t i = 0; i < q->recipient_count; i++)
		if (q->recipients[i].sub_count > 0)
			return true;
	return false;
}
