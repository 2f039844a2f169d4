/*
 * test_sasl - AUTH PLAIN and LOGIN exchanges: with and without initial
 * response, authzid rules, base64 errors, cancel, length limits.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>

#include "sasl.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

#define USERNAME_PROMPT "VXNlcm5hbWU6"
#define PASSWORD_PROMPT "UGFzc3dvcmQ6"

struct sasl_case {
	const char *name;
	const char *mech;
	const char *initial;                /* NULL: no initial response */
	const char *steps[3];               /* client lines, NULL-terminated */
	const char *want_challenges[3];     /* one per NEED_MORE seen, in order */
	enum sasl_status want_status;
	enum sasl_error want_error;
	const char *want_user, *want_password;
};

/* The base64 strings were made with Python's base64 module. */
static const struct sasl_case cases[] = {
	{ "plain initial", "PLAIN", "AGFsaWNlAHNlY3JldA==", { NULL }, { NULL },
	  SASL_DONE, SASL_ERR_NONE, "alice", "secret" },
	{ "plain lower-case mech", "plain", "AGFsaWNlAHNlY3JldA==", { NULL }, { NULL },
	  SASL_DONE, SASL_ERR_NONE, "alice", "secret" },
	{ "plain authzid = authcid", "PLAIN", "YWxpY2UAYWxpY2UAc2VjcmV0", { NULL }, { NULL },
	  SASL_DONE, SASL_ERR_NONE, "alice", "secret" },
	{ "plain authzid other", "PLAIN", "Ym9iAGFsaWNlAHNlY3JldA==", { NULL }, { NULL },
	  SASL_ERROR, SASL_ERR_AUTHZID, NULL, NULL },
	{ "plain no initial", "PLAIN", NULL, { "AGFsaWNlAHNlY3JldA==", NULL }, { "" },
	  SASL_DONE, SASL_ERR_NONE, "alice", "secret" },
	{ "plain no initial, CRLF kept", "PLAIN", NULL, { "AGFsaWNlAHNlY3JldA==\r\n", NULL }, { "" },
	  SASL_DONE, SASL_ERR_NONE, "alice", "secret" },
	{ "plain waits", "PLAIN", NULL, { NULL }, { "" },
	  SASL_NEED_MORE, SASL_ERR_NONE, NULL, NULL },
	{ "plain empty initial", "PLAIN", "=", { NULL }, { NULL },
	  SASL_ERROR, SASL_ERR_MALFORMED, NULL, NULL },
	{ "plain cancelled", "PLAIN", NULL, { "*", NULL }, { "" },
	  SASL_ERROR, SASL_ERR_CANCELLED, NULL, NULL },
	{ "plain star as initial", "PLAIN", "*", { NULL }, { NULL },
	  SASL_ERROR, SASL_ERR_BASE64, NULL, NULL },
	{ "plain one NUL", "PLAIN", "YWxpY2UAc2VjcmV0", { NULL }, { NULL },
	  SASL_ERROR, SASL_ERR_MALFORMED, NULL, NULL },
	{ "plain empty password", "PLAIN", "AGFsaWNlAA==", { NULL }, { NULL },
	  SASL_ERROR, SASL_ERR_MALFORMED, NULL, NULL },
	{ "plain empty authcid", "PLAIN", "AABzZWNyZXQ=", { NULL }, { NULL },
	  SASL_ERROR, SASL_ERR_MALFORMED, NULL, NULL },
	{ "base64 length", "PLAIN", "AGFsaWNlAHNlY3JldA", { NULL }, { NULL },
	  SASL_ERROR, SASL_ERR_BASE64, NULL, NULL },
	{ "base64 alphabet", "PLAIN", "AGFs!WNlAHNlY3JldA==", { NULL }, { NULL },
	  SASL_ERROR, SASL_ERR_BASE64, NULL, NULL },
	{ "base64 inner pad", "PLAIN", "AG=saWNlAHNlY3JldA==", { NULL }, { NULL },
	  SASL_ERROR, SASL_ERR_BASE64, NULL, NULL },
	{ "base64 space", "PLAIN", "AGFs aWNlAHNlY3JldA==", { NULL }, { NULL },
	  SASL_ERROR, SASL_ERR_BASE64, NULL, NULL },
	{ "base64 three pads", "PLAIN", "AGFsaWNlAHNlY===", { NULL }, { NULL },
	  SASL_ERROR, SASL_ERR_BASE64, NULL, NULL },
	{ "plain bad base64 in step", "PLAIN", NULL, { "%%%%", NULL }, { "" },
	  SASL_ERROR, SASL_ERR_BASE64, NULL, NULL },
	{ "login two steps", "LOGIN", NULL, { "YWxpY2U=", "c2VjcmV0", NULL },
	  { USERNAME_PROMPT, PASSWORD_PROMPT }, SASL_DONE, SASL_ERR_NONE, "alice", "secret" },
	{ "login initial username", "LOGIN", "YWxpY2U=", { "c2VjcmV0", NULL }, { PASSWORD_PROMPT },
	  SASL_DONE, SASL_ERR_NONE, "alice", "secret" },
	{ "login waits for password", "LOGIN", NULL, { "YWxpY2U=", NULL },
	  { USERNAME_PROMPT, PASSWORD_PROMPT }, SASL_NEED_MORE, SASL_ERR_NONE, NULL, NULL },
	{ "login cancel at username", "LOGIN", NULL, { "*", NULL }, { USERNAME_PROMPT },
	  SASL_ERROR, SASL_ERR_CANCELLED, NULL, NULL },
	{ "login cancel at password", "LOGIN", NULL, { "YWxpY2U=", "*", NULL },
	  { USERNAME_PROMPT, PASSWORD_PROMPT }, SASL_ERROR, SASL_ERR_CANCELLED, NULL, NULL },
	{ "login empty username", "LOGIN", NULL, { "=", NULL }, { USERNAME_PROMPT },
	  SASL_ERROR, SASL_ERR_MALFORMED, NULL, NULL },
	{ "login NUL in username", "LOGIN", NULL, { "YWxpY2UAc2VjcmV0", NULL }, { USERNAME_PROMPT },
	  SASL_ERROR, SASL_ERR_MALFORMED, NULL, NULL },
	{ "login empty password", "LOGIN", "YWxpY2U=", { "=", NULL }, { PASSWORD_PROMPT },
	  SASL_ERROR, SASL_ERR_MALFORMED, NULL, NULL },
	{ "login bad base64", "LOGIN", NULL, { "YWxpY2U", NULL }, { USERNAME_PROMPT },
	  SASL_ERROR, SASL_ERR_BASE64, NULL, NULL },
	{ "unknown mechanism", "CRAM-MD5", NULL, { NULL }, { NULL },
	  SASL_ERROR, SASL_ERR_MECHANISM, NULL, NULL },
	{ "empty mechanism", "", "AGFsaWNlAHNlY3JldA==", { NULL }, { NULL },
	  SASL_ERROR, SASL_ERR_MECHANISM, NULL, NULL },
};

/* run_case - start, feed the steps, compare every challenge and the end. */
static void run_case(const struct sasl_case *c)
{
	struct sasl_session s;
	struct sasl_result r = sasl_start(&s, c->mech, c->initial);
	size_t step = 0, challenge = 0;

	for (;;) {
		if (r.status == SASL_NEED_MORE) {
			cr_assert_lt(challenge, N(c->want_challenges), "%s: too many challenges", c->name);
			const char *want = c->want_challenges[challenge++];
			cr_assert_not_null(want, "%s: unexpected challenge \"%s\"", c->name, r.challenge);
			cr_expect_str_eq(r.challenge, want, "%s: challenge got \"%s\", want \"%s\"",
					 c->name, r.challenge, want);
		}
		if (r.status != SASL_NEED_MORE || c->steps[step] == NULL)
			break;
		r = sasl_step(&s, c->steps[step], strlen(c->steps[step]));
		step++;
	}
	cr_expect_null(c->steps[step], "%s: ended before step %zu", c->name, step);
	cr_assert_eq(r.status, c->want_status, "%s: status got %d, want %d (reason %s)", c->name,
		     r.status, c->want_status, r.reason ? r.reason : "-");
	if (c->want_status == SASL_ERROR) {
		cr_expect_eq(r.error, c->want_error, "%s: error got %d, want %d", c->name, r.error,
			     c->want_error);
		cr_expect_not_null(r.reason, "%s: no reason", c->name);
	}
	if (c->want_status == SASL_DONE) {
		cr_expect_str_eq(r.user, c->want_user, "%s: user got \"%s\", want \"%s\"", c->name,
				 r.user, c->want_user);
		cr_expect_str_eq(r.password, c->want_password, "%s: password got \"%s\", want \"%s\"",
				 c->name, r.password, c->want_password);
	}
}

Test(sasl, exchanges)
{
	for (size_t i = 0; i < N(cases); i++)
		run_case(&cases[i]);
}

/* b64 - base64 of len bytes, malloc'ed. */
static char *b64(const void *data, size_t len)
{
	size_t cap = (len + 2) / 3 * 4 + 1, olen;
	char *out = malloc(cap);

	cr_assert_eq(mbedtls_base64_encode((unsigned char *)out, cap, &olen, data, len), 0);
	return out;
}

/* plain_message - NUL authcid NUL password, with given field lengths. */
static char *plain_message(size_t user_len, size_t password_len, size_t *len)
{
	char *m = malloc(user_len + password_len + 2);

	m[0] = '\0';
	memset(m + 1, 'u', user_len);
	m[1 + user_len] = '\0';
	memset(m + 2 + user_len, 'p', password_len);
	*len = user_len + password_len + 2;
	return m;
}

Test(sasl, length_limits)
{
	static const struct {
		size_t user_len, password_len;
		enum sasl_status want_status;
		enum sasl_error want_error;
	} limits[] = {
		{ SASL_USER_MAX, SASL_PASSWORD_MAX, SASL_DONE, SASL_ERR_NONE },
		{ SASL_USER_MAX + 1, 8, SASL_ERROR, SASL_ERR_TOO_LONG },
		{ 8, SASL_PASSWORD_MAX + 1, SASL_ERROR, SASL_ERR_TOO_LONG },
		{ 8, 2990, SASL_ERROR, SASL_ERR_TOO_LONG },   /* far over the password cap */
		{ 8, 3100, SASL_ERROR, SASL_ERR_TOO_LONG },   /* over SASL_LINE_MAX */
	};
	struct sasl_session s;

	for (size_t i = 0; i < N(limits); i++) {
		size_t len;
		char *m = plain_message(limits[i].user_len, limits[i].password_len, &len);
		char *line = b64(m, len);
		struct sasl_result r = sasl_start(&s, "PLAIN", line);
		cr_expect_eq(r.status, limits[i].want_status, "case %zu: status got %d, want %d (%s)",
			     i, r.status, limits[i].want_status, r.reason ? r.reason : "-");
		if (r.status == SASL_DONE) {
			cr_expect_eq(strlen(r.user), limits[i].user_len);
			cr_expect_eq(strlen(r.password), limits[i].password_len);
		} else {
			cr_expect_eq(r.error, limits[i].want_error, "case %zu: error got %d, want %d", i,
				     r.error, limits[i].want_error);
		}
		free(line);
		free(m);
	}

	/* LOGIN: the same caps on each step */
	char big[SASL_USER_MAX + 1];
	memset(big, 'u', sizeof(big));
	char *line = b64(big, sizeof(big));
	struct sasl_result r = sasl_start(&s, "LOGIN", NULL);
	r = sasl_step(&s, line, strlen(line));
	cr_expect_eq(r.status, SASL_ERROR);
	cr_expect_eq(r.error, SASL_ERR_TOO_LONG, "got %d, want TOO_LONG", r.error);
	free(line);
}

Test(sasl, step_after_end_and_reset_wipes)
{
	struct sasl_session s;
	struct sasl_result r = sasl_start(&s, "PLAIN", "AGFsaWNlAHNlY3JldA==");

	cr_assert_eq(r.status, SASL_DONE);
	r = sasl_step(&s, "AGFsaWNlAHNlY3JldA==", 20);
	cr_expect_eq(r.status, SASL_ERROR);
	cr_expect_eq(r.error, SASL_ERR_STATE, "got %d, want STATE", r.error);

	r = sasl_start(&s, "LOGIN", "YWxpY2U=");
	r = sasl_step(&s, "c2VjcmV0", 8);
	cr_assert_eq(r.status, SASL_DONE);
	sasl_reset(&s);
	for (size_t i = 0; i < sizeof(s.password); i++)
		cr_assert_eq(s.password[i], 0, "password byte %zu not wiped", i);
	r = sasl_step(&s, "c2VjcmV0", 8);
	cr_expect_eq(r.error, SASL_ERR_STATE, "step after reset: got %d, want STATE", r.error);

	/* a failed exchange keeps nothing decoded */
	r = sasl_start(&s, "LOGIN", "YWxpY2U=");
	r = sasl_step(&s, "*", 1);
	cr_expect_eq(r.error, SASL_ERR_CANCELLED);
	cr_expect_eq(s.user[0], 0, "user kept after failure");
}

Test(sasl, mech_parse)
{
	enum sasl_mech m;

	cr_expect_eq(sasl_mech_parse("PLAIN", &m), 0);
	cr_expect_eq(m, SASL_MECH_PLAIN);
	cr_expect_eq(sasl_mech_parse("Login", &m), 0);
	cr_expect_eq(m, SASL_MECH_LOGIN);
	cr_expect_eq(sasl_mech_parse("PLAINX", &m), -EINVAL);
	cr_expect_eq(sasl_mech_parse("XOAUTH2", &m), -EINVAL);
}
