/*
 * pop3_maildir - the POP3 session's mailbox ops (pop3_session.h) over a
 * Maildir reader (maildir.h). The glue the POP3 endpoint puts in its
 * open_mailbox callback:
 *
 *   static int open_mailbox(void *ctx, const char *user,
 *                           const struct pop3_mailbox_ops **ops, void **box)
 *   {
 *           return pop3_maildir_open(maildir_root, user, ops, box);
 *   }
 *
 * Blocking file I/O, as in maildir.h. The box belongs to the session, which
 * releases it through ops->close.
 */
#ifndef RINGMAIL_POP3_MAILDIR_H
#define RINGMAIL_POP3_MAILDIR_H

#include "pop3_session.h"

/* pop3_maildir_ops - maildir_count, _size, _uidl, _read, _delete, _commit,
 * _close behind the pop3_mailbox_ops interface */
extern const struct pop3_mailbox_ops pop3_maildir_ops;

/* pop3_maildir_open - maildir_open as an enum pop3_open_result: OK (ops and
 * box set), IN_USE (-EBUSY: another session), ERROR (logged) */
int pop3_maildir_open(const char *root, const char *user,
		      const struct pop3_mailbox_ops **ops, void **box);

#endif
