/*
 * maildir - local mailboxes in Maildir format: delivery and a locked reader
 * for POP3.
 *
 *   Deliver (any number of writers at once, no lock needed):
 *     err = maildir_deliver(root, user, data, len, &opt, name, sizeof(name));
 *     0, -EDQUOT (over quota: 452/552), -EINVAL (bad user name), -errno
 *
 *   Read (one POP3 session per mailbox):
 *     err = maildir_open(root, user, &box);      0, -EBUSY (locked), -errno
 *     n = maildir_count(box);  maildir_size(box, i);  maildir_uidl(box, i);
 *     got = maildir_read(box, i, offset, buf, len);
 *     maildir_delete(box, i) ... maildir_commit(box);  (the UPDATE state)
 *     box = maildir_close(box);                  deletes nothing by itself
 *
 * Layout: <root>/<user>/{tmp,new,cur}. The root must exist; the user's
 * directories are created (0700) on first delivery or open. A delivery is
 * written to tmp/ as "<time>.M<usec>P<pid>Q<counter>.<host>,S=<s>,W=<w>",
 * fsynced, renamed into new/ and new/ is fsynced, so a message is either
 * wholly there or not at all after a crash. S= is the file size, W= the size
 * with CRLF line ends (Dovecot's meaning), which POP3 reports.
 *
 * Content is stored with LF line ends, as Postfix's local delivery and most
 * Maildir tools do: the CRLF of SMTP is turned into LF on delivery, and POP3
 * turns every bare LF back into CRLF. A message that does not end with a line
 * end gets one CRLF in POP3 and it is counted in maildir_size().
 *
 * The reader takes flock(LOCK_EX) on <root>/<user>/ringmail-pop3.lock (the
 * file is kept: unlinking it would let two sessions lock different inodes);
 * the kernel drops the lock when the process dies, so it is never stale.
 * On open, as Dovecot does, messages in new/ are moved to cur/ with the info
 * ":2," appended, then cur/ is read into a snapshot sorted by delivery time.
 * Mail delivered while the box is open waits in new/ for the next session.
 * The UIDL of a message is its base name up to the first ':', which no
 * Maildir tool changes, so it is stable across sessions.
 *
 * Blocking: every call does blocking file I/O (open, readdir, fsync). The
 * POP3 endpoint may later run these through the ring or a helper thread.
 * Ownership: strings passed in are copied or only used during the call;
 * maildir_uidl() points into the box and is valid until maildir_close().
 */
#ifndef RINGMAIL_MAILDIR_H
#define RINGMAIL_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The longest file name we create or accept. */
#define MAILDIR_NAME_MAX 255

struct maildir_deliver_options {
	uint64_t quota;		/* bytes (sum of S=) per mailbox; 0 = none */
	const char *hostname;	/* for the file name; NULL = gethostname() */
};

struct maildir_box;

/* maildir_user_valid - a user name usable as one directory name: 1 to 255
 * octets, no '/', no NUL, no control octets, not starting with '.'. */
bool maildir_user_valid(const char *user);

/* maildir_deliver - store one message (data as received; CRLF becomes LF).
 * opt may be NULL. On success the new/ file name is copied to name when
 * name is not NULL (name_size >= MAILDIR_NAME_MAX + 1 is always enough).
 * Returns 0, -EDQUOT when the message would take the box over its quota,
 * -EINVAL for a bad user name, or -errno of a failed system call (the tmp
 * file is removed then). */
int maildir_deliver(const char *root, const char *user, const char *data, size_t len,
		    const struct maildir_deliver_options *opt, char *name, size_t name_size);

/* maildir_usage - the bytes a mailbox holds (sum of S=, else file sizes, of
 * new/ and cur/). 0 and *bytes, or -errno; a missing mailbox holds 0. */
int maildir_usage(const char *root, const char *user, uint64_t *bytes);

/* maildir_open - lock the mailbox and take its snapshot. *box is set only on
 * success. Returns 0, -EBUSY (another session holds it), -EINVAL (bad user
 * name) or -errno. */
int maildir_open(const char *root, const char *user, struct maildir_box **box);

/* maildir_count - the messages in the snapshot (deleted ones included). */
size_t maildir_count(const struct maildir_box *box);

/* maildir_size - message i (0-based) in octets as sent by POP3 (CRLF). */
uint64_t maildir_size(const struct maildir_box *box, size_t i);

/* maildir_uidl - the unique id of message i (the base name up to ':'). */
const char *maildir_uidl(const struct maildir_box *box, size_t i);

/* maildir_read - up to len raw (LF) bytes of message i from offset. Returns
 * the bytes read, 0 at the end, or -errno (-ENOENT: removed behind our back). */
ssize_t maildir_read(struct maildir_box *box, size_t i, uint64_t offset, char *buf, size_t len);

/* maildir_delete - mark message i; nothing is removed before commit. 0 or
 * -EINVAL (no such message). */
int maildir_delete(struct maildir_box *box, size_t i);

/* maildir_undelete_all - forget every mark (POP3 RSET). */
void maildir_undelete_all(struct maildir_box *box);

/* maildir_commit - unlink the marked messages and fsync cur/. A message
 * already gone counts as removed. 0 or the first -errno (the rest are still
 * tried). */
int maildir_commit(struct maildir_box *box);

/* maildir_close - release the lock and free the box, removing nothing that
 * was not committed. Accepts NULL; returns NULL. */
struct maildir_box *maildir_close(struct maildir_box *box);

#endif
