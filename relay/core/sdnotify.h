/*
 * sdnotify - tell systemd (Type=notify) how the daemon is doing, without
 * libsystemd: one datagram to the unix socket named by $NOTIFY_SOCKET
 * ("/path" or "@abstract"), as sd_notify(3) describes.
 *
 *   sdnotify_send("READY=1");      after every worker listens
 *   sdnotify_send("STOPPING=1");   on SIGTERM
 */
#ifndef RINGMAIL_SDNOTIFY_H
#define RINGMAIL_SDNOTIFY_H

/* sdnotify_send - send state; 0 when sent or when $NOTIFY_SOCKET is not
 * set (not under systemd), else -errno. */
int sdnotify_send(const char *state);

#endif
