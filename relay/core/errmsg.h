/*
 * errmsg - the reason a parser or loader refused its input, written into
 * the caller's buffer (config checks, next hops, credential and key files).
 */
#ifndef RINGMAIL_CORE_ERRMSG_H
#define RINGMAIL_CORE_ERRMSG_H

#include <stddef.h>

/* errmsg_set - format the reason into err (if err is not NULL and errlen
 * is not 0, truncated to fit) and return rc, so a refusal is one line:
 *	return errmsg_set(err, errlen, -EINVAL, "%s:%u: no colon", path, line);
 */
int errmsg_set(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
