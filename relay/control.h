/*
 * control - the control socket: ringmailctl's queue, domains, stats and
 * reload commands against the running daemon.
 *
 * Worker 0 listens on a unix socket (control.socket, mode control.mode; see
 * config_control_path). A client sends one request line and reads the
 * answer until the daemon closes the connection:
 *
 *   [json] queue list [domain=D] [deferred|held]     a row per queue item
 *   [json] queue show ID                              one message, every recipient
 *   [json] queue summary [domain=D] [deferred|held]   items per domain and age
 *   queue flush [domain=D]                            retry now, domain backoff off
 *   queue delete|bounce|hold|release ID|domain=D      the operator's actions
 *   [json] domains [domain=D]                         per domain: items, connections, backoff
 *   [json] stats                                      the metrics, summed
 *   reload                                            SIGHUP, and its result
 *   resolve DOMAIN [sender=ADDR]                      the next hop and its route, as
 *                                                     the running configuration decides
 *   [json] suppression list|export|add|remove|import  the suppression list
 *                                                     (control_suppression.h)
 *   [json] shaping status                             sites: suspended or not
 *   shaping resume SITE                               end a site's suspension now
 *
 * The answer is rows (aligned text, or one JSON object per line after
 * "json"), then one last line: "-- ok[ TEXT]" or "-- error TEXT".
 *
 * Queue commands travel between the workers as a queue_query (see
 * queue_query.h): one bounded step per worker visit, the next step only
 * when the socket has taken the rows of the last, so a listing of a
 * million items streams without stalling any worker.
 *
 * Actions on an item in a transaction (active) wait for the attempt to
 * end: what the attempt delivers stays delivered; the rest is deleted,
 * bounced or held then.
 */
#ifndef RINGMAIL_CONTROL_H
#define RINGMAIL_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

#include "control_suppression.h"
#include "queue_query.h"
#include "worker.h"

#define CONTROL_MAX_LINE 1024
#define CONTROL_MAX_TOP 100000         /* queue summary top=N, at most */

enum control_command { CONTROL_QUEUE, CONTROL_DOMAINS, CONTROL_STATS, CONTROL_RELOAD, CONTROL_RESOLVE,
		       CONTROL_SUPPRESSION, CONTROL_SHAPING, CONTROL_CLUSTER };

struct control_request {
	enum control_command command;
	enum queue_action action;           /* CONTROL_QUEUE; QUEUE_DOMAINS for domains */
	char queue_id[32];
	char domain[256];                   /* lower case */
	char sender[320];                   /* CONTROL_RESOLVE: "" = any */
	bool deferred_only, held_only, json;
	unsigned top;                       /* queue summary: domains shown; 0 = all */
	struct control_suppression_request suppression;   /* CONTROL_SUPPRESSION */
	char site[136];                     /* CONTROL_SHAPING: resume SITE, source:NAME or SITE/SOURCE; "" = status */
};

/* control_parse - one request line (without its newline). Returns 0, or
 * -EINVAL with a message for the client in err. */
int control_parse(const char *line, struct control_request *req, char *err, size_t errlen);

/* control_module - on worker 0 with a control socket: init listens, exit
 * stops listening and removes the socket. */
extern const struct worker_module control_module;

/* control_reload_done - from the main thread after a reload: tell the
 * clients waiting on `reload` (ok, or why not). */
void control_reload_done(struct worker *workers, bool ok, const char *text);

#endif
