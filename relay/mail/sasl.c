/*
 * sasl - AUTH PLAIN and AUTH LOGIN decoders; see sasl.h.
 *
 * Every decoded response passes through one stack buffer that is wiped
 * before return, so a password lives only in the session until
 * sasl_reset.
 */
#include "sasl.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/base64.h>

enum sasl_state {
	STATE_IDLE,
	STATE_PLAIN_RESPONSE,       /* PLAIN without initial response: waiting */
	STATE_LOGIN_USER,           /* sent "Username:" */
	STATE_LOGIN_PASSWORD,       /* sent "Password:" */
	STATE_DONE,
	STATE_FAILED,
};

#define DECODED_MAX (SASL_LINE_MAX / 4 * 3)

static const char challenge_empty[] = "";
static const char challenge_username[] = "VXNlcm5hbWU6";   /* "Username:" */
static const char challenge_password[] = "UGFzc3dvcmQ6";   /* "Password:" */

int sasl_mech_parse(const char *name, enum sasl_mech *out)
{
	if (strcasecmp(name, "PLAIN") == 0)
		*out = SASL_MECH_PLAIN;
	else if (strcasecmp(name, "LOGIN") == 0)
		*out = SASL_MECH_LOGIN;
	else
		return -EINVAL;
	return 0;
}

void sasl_reset(struct sasl_session *s)
{
	explicit_bzero(s, sizeof(*s));
	s->state = STATE_IDLE;
}

/* fail - end the exchange with error; nothing decoded is kept. */
static struct sasl_result fail(struct sasl_session *s, enum sasl_error error, const char *reason)
{
	sasl_reset(s);
	s->state = STATE_FAILED;
	return (struct sasl_result){ .status = SASL_ERROR, .error = error, .reason = reason };
}

/* need_more - wait in state for the reply to challenge. */
static struct sasl_result need_more(struct sasl_session *s, int state, const char *challenge)
{
	s->state = state;
	return (struct sasl_result){ .status = SASL_NEED_MORE, .challenge = challenge };
}

/* done - user and password are in the session; hand them out. */
static struct sasl_result done(struct sasl_session *s)
{
	s->state = STATE_DONE;
	return (struct sasl_result){ .status = SASL_DONE, .user = s->user, .password = s->password };
}

/* base64_char - one of the 64 characters (not the '=' pad). */
static bool base64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		c == '+' || c == '/';
}

/* base64_strict - is text canonical-shaped base64: groups of four from the
 * alphabet, '=' only as the last one or two characters? mbedTLS alone
 * would also skip spaces and line breaks, which a SASL response may not
 * contain. */
static bool base64_strict(const char *text, size_t len)
{
	if (len % 4 != 0)
		return false;
	size_t pad = 0;
	if (len >= 1 && text[len - 1] == '=')
		pad = (len >= 2 && text[len - 2] == '=') ? 2 : 1;
	for (size_t i = 0; i < len - pad; i++)
		if (!base64_char(text[i]))
			return false;
	return true;
}

/* decode - one response line into out (DECODED_MAX bytes). "=" is the
 * empty response. Returns SASL_ERR_NONE and *out_len, or the error. */
static enum sasl_error decode(const char *line, size_t len, unsigned char *out, size_t *out_len)
{
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		len--;
	if (len > SASL_LINE_MAX)
		return SASL_ERR_TOO_LONG;
	if (len == 1 && line[0] == '*')
		return SASL_ERR_CANCELLED;
	*out_len = 0;
	if (len == 1 && line[0] == '=')
		return SASL_ERR_NONE;
	if (!base64_strict(line, len))
		return SASL_ERR_BASE64;
	int rc = mbedtls_base64_decode(out, DECODED_MAX, out_len, (const unsigned char *)line, len);
	if (rc == MBEDTLS_ERR_BASE64_BUFFER_TOO_SMALL)
		return SASL_ERR_TOO_LONG;
	return rc == 0 ? SASL_ERR_NONE : SASL_ERR_BASE64;
}

/* error_text - a reason for logs when decode failed. */
static const char *error_text(enum sasl_error e)
{
	switch (e) {
	case SASL_ERR_BASE64: return "invalid base64";
	case SASL_ERR_TOO_LONG: return "response too long";
	case SASL_ERR_CANCELLED: return "cancelled by client";
	default: return "malformed response";
	}
}

/* copy_field - a decoded field into dst (cap bytes plus NUL). */
static enum sasl_error copy_field(char *dst, size_t cap, const unsigned char *src, size_t len)
{
	if (len == 0)
		return SASL_ERR_MALFORMED;
	if (len > cap)
		return SASL_ERR_TOO_LONG;
	if (memchr(src, '\0', len) != NULL)
		return SASL_ERR_MALFORMED;
	memcpy(dst, src, len);
	dst[len] = '\0';
	return SASL_ERR_NONE;
}

/* plain_response - authzid NUL authcid NUL passwd (RFC 4616). */
static struct sasl_result plain_response(struct sasl_session *s, const unsigned char *msg, size_t len)
{
	const unsigned char *nul1 = memchr(msg, '\0', len);
	const unsigned char *nul2 = nul1 ? memchr(nul1 + 1, '\0', len - (size_t)(nul1 + 1 - msg)) : NULL;

	if (nul2 == NULL)
		return fail(s, SASL_ERR_MALFORMED, "PLAIN response needs authzid NUL authcid NUL passwd");
	size_t authzid_len = (size_t)(nul1 - msg);
	size_t authcid_len = (size_t)(nul2 - nul1 - 1);
	size_t passwd_len = len - (size_t)(nul2 + 1 - msg);
	enum sasl_error e = copy_field(s->user, SASL_USER_MAX, nul1 + 1, authcid_len);
	if (e == SASL_ERR_NONE)
		e = copy_field(s->password, SASL_PASSWORD_MAX, nul2 + 1, passwd_len);
	if (e != SASL_ERR_NONE)
		return fail(s, e, e == SASL_ERR_TOO_LONG ? "PLAIN field too long"
			    : "PLAIN response has an empty or NUL-bearing field");
	if (authzid_len != 0 &&
	    (authzid_len != authcid_len || memcmp(msg, s->user, authcid_len) != 0))
		return fail(s, SASL_ERR_AUTHZID, "authzid differs from authcid");
	return done(s);
}

/* respond - feed one response line to the state the session is in. */
static struct sasl_result respond(struct sasl_session *s, const char *line, size_t len)
{
	unsigned char msg[DECODED_MAX];
	size_t msg_len = 0;
	struct sasl_result r;
	enum sasl_error e = decode(line, len, msg, &msg_len);

	if (e != SASL_ERR_NONE) {
		r = fail(s, e, error_text(e));
	} else if (s->state == STATE_PLAIN_RESPONSE) {
		r = plain_response(s, msg, msg_len);
	} else if (s->state == STATE_LOGIN_USER) {
		e = copy_field(s->user, SASL_USER_MAX, msg, msg_len);
		r = e ? fail(s, e, "bad LOGIN username")
		      : need_more(s, STATE_LOGIN_PASSWORD, challenge_password);
	} else {
		e = copy_field(s->password, SASL_PASSWORD_MAX, msg, msg_len);
		r = e ? fail(s, e, "bad LOGIN password") : done(s);
	}
	explicit_bzero(msg, sizeof(msg));
	return r;
}

struct sasl_result sasl_start(struct sasl_session *s, const char *name, const char *initial)
{
	enum sasl_mech mech;

	sasl_reset(s);
	if (sasl_mech_parse(name, &mech) < 0)
		return fail(s, SASL_ERR_MECHANISM, "unsupported mechanism");
	s->mech = mech;
	s->state = mech == SASL_MECH_PLAIN ? STATE_PLAIN_RESPONSE : STATE_LOGIN_USER;
	if (initial != NULL) {
		if (strcmp(initial, "*") == 0)
			return fail(s, SASL_ERR_BASE64, "invalid base64");
		return respond(s, initial, strlen(initial));
	}
	if (mech == SASL_MECH_PLAIN)
		return need_more(s, STATE_PLAIN_RESPONSE, challenge_empty);
	return need_more(s, STATE_LOGIN_USER, challenge_username);
}

struct sasl_result sasl_step(struct sasl_session *s, const char *line, size_t len)
{
	if (s->state != STATE_PLAIN_RESPONSE && s->state != STATE_LOGIN_USER &&
	    s->state != STATE_LOGIN_PASSWORD)
		return fail(s, SASL_ERR_STATE, "no exchange in progress");
	return respond(s, line, len);
}
