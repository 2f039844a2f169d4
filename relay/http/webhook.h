/*
 * webhook - delivery events POSTed to the configured receivers
 * (webhooks = ( { url = "http://..."; events = [...]; batch = 100; } )).
 *
 *   webhook_global_init();          main thread, before threads and seccomp
 *   webhook_start(cfg);             after the workers start (no-op without webhooks)
 *   webhook_reload(cfg);            SIGHUP: restarted only if the webhooks changed
 *   webhook_stop();                 at exit, after the workers are joined
 *   webhook_metrics_render(&buf);   a metrics scrape, any thread
 *
 * The source of events is the JSON delivery log file (log.delivery_file),
 * not an in-process feed: the workers write it with one write(2) per line
 * (relay/mail/delivery_log.c) and it is what survives a crash, so reading
 * it back is what makes "every event at least once" true across restarts.
 * One helper thread, "webhook", follows the file for every receiver and
 * POSTs with libcurl's multi interface; no worker's ring is involved.
 *
 * Per receiver: a cursor, SPOOL/webhook-<hash of url>.cursor (the file's
 * device, inode and the offset of the first byte not yet acknowledged),
 * replaced atomically (write aside, fdatasync, rename). The thread reads
 * whole lines from the cursor on, keeps the events the receiver wants
 * (relay/mail/webhook_event.h), POSTs at most batch of them as a JSON
 * array, and moves the cursor only when the receiver answers 2xx.
 * Anything else (no connection, a timeout, a 500) is retried with the
 * same body after retry_min, doubling up to retry_max; later events wait
 * behind it, so a receiver sees events in log order. The moved cursor is
 * saved at once when the reader has caught up, and at most every 250 ms
 * while a backlog drains (a sync per batch would halve the rate): a
 * restart or a kill -9 resends the batch in flight and, in a drain, at
 * most the last 250 ms of acknowledged ones.
 *
 * Rotation: when log.delivery_file names another file (logrotate renamed
 * it and SIGUSR1/SIGHUP reopened it), the old file is read to its end, and
 * only once the writers have moved off it (delivery_log_identity) and a
 * WEBHOOK_ROTATE_GRACE_MS has passed does the reader go to the new file,
 * from its start. A cursor that names a file no longer at the path is
 * looked for at PATH.1 (logrotate's first name) before giving up on it (a
 * warning; the reader starts at the current file's start). A file cut
 * shorter than the cursor (copytruncate) is read again from its start.
 * A receiver with no cursor yet starts at the current file's start.
 */
#ifndef RINGMAIL_WEBHOOK_H
#define RINGMAIL_WEBHOOK_H

#include "buf.h"
#include "config.h"

#define WEBHOOK_POLL_MS 200            /* how often an idle reader looks for new lines */
#define WEBHOOK_ROTATE_GRACE_MS 1000   /* writes in flight on a rotated file land by then */

/* webhook_global_init - libcurl's global state; 0 or -EIO. */
int webhook_global_init(void);

/* webhook_start - the thread for cfg's webhooks (copied); 0 when there
 * are none or it started, -errno when the thread could not start. */
int webhook_start(const struct config *cfg);

/* webhook_reload - restart with cfg if its webhooks, the delivery log or
 * the spool directory differ from the running ones. */
void webhook_reload(const struct config *cfg);

/* webhook_stop - stop the thread (a POST in flight is abandoned: its
 * events go again after the next start). Accepts no thread. */
void webhook_stop(void);

/* webhook_metrics_render - the ringmail_webhook_* series, one per url. */
int webhook_metrics_render(struct buf *out);

#endif
