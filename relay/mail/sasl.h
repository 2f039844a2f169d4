/*
 * sasl - the server side of AUTH PLAIN and AUTH LOGIN, as pure decoders.
 *
 *   struct sasl_session s;
 *   struct sasl_result r = sasl_start(&s, "PLAIN", initial_response_or_NULL);
 *   while (r.status == SASL_NEED_MORE) {
 *           send "334 " r.challenge (SMTP, RFC 4954) or "+ " r.challenge (POP3, RFC 5034)
 *           r = sasl_step(&s, next_line, next_line_len);
 *   }
 *   SASL_DONE: check r.user / r.password with users_verify (on a helper thread)
 *   SASL_ERROR: r.error says why (map to a reply), r.reason is text for logs
 *   sasl_reset(&s);                      wipes the password
 *
 * PLAIN (RFC 4616): base64 of authzid NUL authcid NUL passwd. An authzid
 * other than empty or the authcid itself is refused (we have no proxy
 * authorisation). LOGIN (the de-facto draft): prompts "Username:" then
 * "Password:" (base64 "VXNlcm5hbWU6", "UGFzc3dvcmQ6"); an initial response
 * is taken as the username. An initial response of "=" is an empty one
 * (RFC 4954); a line "*" cancels (the caller answers 501). Base64 is checked
 * strictly (alphabet, padding, length a multiple of 4) and decoded by
 * mbedTLS. Lines are given without CRLF (a trailing CR or LF is ignored).
 *
 * No I/O, no heap, no logging; the session is caller-owned storage (embed
 * it or allocate it), and the user and password of a result point into it.
 */
#ifndef RINGMAIL_SASL_H
#define RINGMAIL_SASL_H

#include <stddef.h>

#define SASL_USER_MAX 255           /* decoded authcid / authzid bytes */
#define SASL_PASSWORD_MAX 1024      /* decoded password bytes */
#define SASL_LINE_MAX 4096          /* base64 characters in one response */

enum sasl_mech {
	SASL_MECH_PLAIN,
	SASL_MECH_LOGIN,
};

enum sasl_status {
	SASL_NEED_MORE,             /* send challenge, feed the reply to sasl_step */
	SASL_DONE,                  /* user and password are ready */
	SASL_ERROR,                 /* the exchange is over; see error */
};

enum sasl_error {
	SASL_ERR_NONE,
	SASL_ERR_MECHANISM,         /* not PLAIN or LOGIN: SMTP 504 5.5.4 */
	SASL_ERR_BASE64,            /* not valid base64: 501 5.5.2 */
	SASL_ERR_TOO_LONG,          /* over SASL_LINE_MAX or a field max: 500 5.5.6 */
	SASL_ERR_CANCELLED,         /* client sent "*": 501 5.0.0 */
	SASL_ERR_MALFORMED,         /* wrong fields, empty user/password, NUL: 501 5.5.2 */
	SASL_ERR_AUTHZID,           /* authzid differs from authcid: 535 5.7.8 */
	SASL_ERR_STATE,             /* sasl_step after DONE or ERROR: a caller bug */
};

struct sasl_result {
	enum sasl_status status;
	const char *challenge;      /* NEED_MORE: base64 text, possibly "" (static) */
	const char *user;           /* DONE: NUL-terminated, points into the session */
	const char *password;       /* DONE: likewise; wiped by sasl_reset */
	enum sasl_error error;      /* ERROR */
	const char *reason;         /* ERROR: static text for logs */
};

/* Fields are private to sasl.c. */
struct sasl_session {
	enum sasl_mech mech;
	int state;
	char user[SASL_USER_MAX + 1];
	char password[SASL_PASSWORD_MAX + 1];
};

/* sasl_mech_parse - "PLAIN" or "LOGIN" (any case); 0 or -EINVAL. */
int sasl_mech_parse(const char *name, enum sasl_mech *out);

/* sasl_start - begin an exchange for mechanism name; initial is the
 * initial response (the AUTH command's second argument) or NULL. */
struct sasl_result sasl_start(struct sasl_session *s, const char *name, const char *initial);

/* sasl_step - the client's reply (len bytes) to the last challenge. */
struct sasl_result sasl_step(struct sasl_session *s, const char *line, size_t len);

/* sasl_reset - wipe the session (the password above all); it may be
 * started again. */
void sasl_reset(struct sasl_session *s);

#endif
