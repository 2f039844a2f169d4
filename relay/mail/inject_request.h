/*
 * inject_request - the JSON body of POST /api/inject/v1 (KumoMTA's
 * shape), checked and turned into C: pure, no I/O.
 *
 *   {
 *     "envelope_sender": "bounces@example.com",
 *     "recipients": [ {"email": "a@example.net", "name": "A",
 *                      "substitutions": {"first": "Ann"}} ],
 *     "substitutions": {"campaign": "x"},              (optional, for all)
 *     "require_tls": true,            (optional: RFC 8689 REQUIRETLS for it)
 *     "content": "From: ...\r\n\r\nraw RFC 5322 message"
 *       or { "subject", "text_body", "html_body", "from": {"email","name"},
 *            "reply_to": "addr" | {"email","name"}, "headers": {"X-A": "b"},
 *            "attachments": [ {"data": base64, "content_type", "file_name"} ] }
 *   }
 *
 *   struct inject_request *q;
 *   if (inject_request_parse(json, len, &q, why, sizeof(why)) < 0) -> 400 why
 *   ... q->recipients[i].email is what the client wrote (checked by the
 *   caller with smtp_address_parse: a bad one fails that recipient only)
 *   q = inject_request_free(q);
 *
 * A request is refused whole (-EINVAL, why says which field) when the
 * JSON does not parse, a required field is missing or has the wrong
 * type, there are no recipients, or an attachment is not base64.
 * Substitution values may be strings, numbers or booleans.
 *
 * Ownership: q owns every string; attachment data is decoded.
 */
#ifndef RINGMAIL_INJECT_REQUEST_H
#define RINGMAIL_INJECT_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

struct inject_substitution {
	char *name;
	char *value;
};

struct inject_recipient {
	char *email;
	char *name;                        /* NULL when not given */
	struct inject_substitution *subs;
	size_t sub_count;
};

struct inject_address {
	char *email;                       /* NULL when absent */
	char *name;                        /* NULL when not given */
};

struct inject_header {
	char *name;
	char *value;
};

struct inject_attachment {
	char *data;                        /* decoded bytes */
	size_t len;
	char *content_type;                /* "application/octet-stream" when absent */
	char *file_name;                   /* NULL when absent */
	char *content_id;                  /* NULL when absent: an inline part */
};

/* The structured form of "content"; any body may be NULL, not both. */
struct inject_content {
	char *subject;
	char *text_body;
	char *html_body;
	struct inject_address from;
	struct inject_address reply_to;
	struct inject_header *headers;
	size_t header_count;
	struct inject_attachment *attachments;
	size_t attachment_count;
};

struct inject_request {
	char *envelope_sender;             /* "" for the null sender */
	struct inject_recipient *recipients;
	size_t recipient_count;
	struct inject_substitution *subs;  /* for every recipient */
	size_t sub_count;
	bool raw;                          /* content was a string */
	char *raw_content;
	size_t raw_len;
	struct inject_content content;     /* when !raw */
	bool require_tls;                  /* "require_tls": true (RFC 8689 REQUIRETLS) */
};

/* inject_request_parse - 0 and *out, or -EINVAL with why. Limits:
 * recipients_max recipients (more: refused whole). */
int inject_request_parse(const char *json, size_t len, size_t recipients_max,
			 struct inject_request **out, char *why, size_t whylen);

/* inject_request_free - accepts NULL, returns NULL. */
struct inject_request *inject_request_free(struct inject_request *q);

/* inject_request_has_substitutions - does any recipient, or the request,
 * carry substitutions (then each recipient gets its own message)? */
bool inject_request_has_substitutions(const struct inject_request *q);

#endif
