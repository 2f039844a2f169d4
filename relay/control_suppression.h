/*
 * control_suppression - the control socket's suppression commands
 * (ringmailctl suppression ...), apart from control.c's queue walks.
 *
 *   [json] suppression list [ADDRESS]       a row per entry (or the one)
 *   suppression export                      CSV: header, a line per entry
 *   suppression add ADDRESS EXPIRES REASON  EXPIRES: seconds since the
 *                                           epoch, 0 = never; REASON: the
 *                                           rest of the line, may be empty
 *   suppression remove ADDRESS
 *   suppression import                      then CSV lines (suppression.h),
 *                                           then a line "."
 *
 * Listings come from worker 0's snapshot, written a chunk at a time as the
 * socket drains (the snapshot is held by reference meanwhile); changes go
 * to the list's owner (relay/daemon/suppress.h) and are answered when they
 * are durable. Every worker sees a change within a pass of its loop after
 * that.
 *
 * Ownership: control.c's session owns its control_suppression until the
 * connection closes; then control_suppression_detach hands it over to
 * itself (it frees itself once a change in flight has come back).
 */
#ifndef RINGMAIL_CONTROL_SUPPRESSION_H
#define RINGMAIL_CONTROL_SUPPRESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "suppression.h"

#define CONTROL_IMPORT_MAX 10000000        /* entries in one import */

enum control_suppression_verb { SUPPRESSION_LIST, SUPPRESSION_EXPORT, SUPPRESSION_ADD,
				SUPPRESSION_REMOVE, SUPPRESSION_IMPORT };

struct control_suppression_request {
	enum control_suppression_verb verb;
	char address[SUPPRESSION_ADDRESS_MAX + 1];   /* "" for all (list) */
	int64_t expires_s;
	char reason[SUPPRESSION_REASON_MAX + 1];
};

/* control_suppression_parse - the request after the word "suppression"
 * (rest: the rest of the line), json as given before it. 0 or -EINVAL
 * with a message in err. */
int control_suppression_parse(const char *rest, bool json, struct control_suppression_request *req,
			      char *err, size_t errlen);

struct control_suppression;

/* control_suppression_start - answer req on c (worker 0). */
struct control_suppression *control_suppression_start(struct worker *w, struct conn *c,
						      const struct control_suppression_request *req, bool json);

/* control_suppression_input - more input after the request line (an
 * import's lines); returns the bytes consumed. */
size_t control_suppression_input(struct control_suppression *cs, const char *data, size_t len);

/* control_suppression_drained - the socket took the last chunk. */
void control_suppression_drained(struct control_suppression *cs);

/* control_suppression_detach - the connection is gone: accepts NULL,
 * returns NULL (cs frees itself when nothing is in flight). */
struct control_suppression *control_suppression_detach(struct control_suppression *cs);

#endif
