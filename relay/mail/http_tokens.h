/*
 * http_tokens - the HTTP API's bearer tokens (http.token_file), stored
 * hashed: the file holds SHA-256 digests, never the tokens themselves.
 *
 * File format, one token per line; blank lines and lines starting with
 * '#' are ignored:
 *
 *   NAME:SHA256-HEX:PERMISSIONS
 *   app1:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08:inject
 *   monitor:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752:
 *
 * NAME names the token in logs (letters, digits, '-', '_', '.'); the
 * digest is of the token's bytes exactly as clients send them after
 * "Bearer " (printf %s "$TOKEN" | sha256sum); PERMISSIONS is a comma
 * list, of which "inject" (POST /api/inject/v1) is the one defined so
 * far; an empty list is a valid token that may do nothing (403).
 *
 *   struct http_tokens *t;
 *   if (http_tokens_load(path, &t, why, sizeof(why)) < 0) ...
 *   const struct http_token *tok = http_tokens_find(t, presented, len);
 *   if (tok == NULL) -> 401; if (!(tok->permissions & HTTP_TOKEN_INJECT)) -> 403
 *   t = http_tokens_free(t);
 *
 * The config owns its tokens (loaded with it, so SIGHUP re-reads the
 * file and a bad file fails the reload like a bad key). A lookup compares
 * every digest in constant time.
 */
#ifndef RINGMAIL_HTTP_TOKENS_H
#define RINGMAIL_HTTP_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_TOKEN_NAME_MAX 64
#define HTTP_TOKEN_DIGEST 32

enum http_token_permission {
	HTTP_TOKEN_INJECT = 1 << 0,
};

struct http_token {
	char name[HTTP_TOKEN_NAME_MAX + 1];
	uint8_t digest[HTTP_TOKEN_DIGEST];
	unsigned permissions;              /* enum http_token_permission bits */
};

struct http_tokens;

/* http_tokens_load - read path; 0, or -errno with a message naming the
 * line in why. */
int http_tokens_load(const char *path, struct http_tokens **out, char *why, size_t whylen);

/* http_tokens_parse - the same from text (tests). */
int http_tokens_parse(const char *text, size_t len, struct http_tokens **out, char *why, size_t whylen);

/* http_tokens_free - accepts NULL, returns NULL. */
struct http_tokens *http_tokens_free(struct http_tokens *t);

size_t http_tokens_count(const struct http_tokens *t);

/* http_tokens_find - the entry whose digest is SHA-256(token), or NULL.
 * t may be NULL (no tokens: nothing matches). */
const struct http_token *http_tokens_find(const struct http_tokens *t, const char *token, size_t len);

/* http_bearer_token - the token of an Authorization value "Bearer X"
 * (scheme case-insensitive, RFC 6750 2.1); NULL when it is not one. */
const char *http_bearer_token(const char *authorization, size_t *len);

#endif
