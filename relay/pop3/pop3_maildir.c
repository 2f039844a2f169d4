/*
 * pop3_maildir - Maildir behind the POP3 mailbox ops (see pop3_maildir.h).
 * Thin adapters: the index conventions (0-based) and the meaning of sizes
 * (CRLF octets, the final CRLF included) are the same on both sides.
 */
#include "pop3_maildir.h"

#include <errno.h>
#include <string.h>

#include "log.h"
#include "maildir.h"

static size_t ops_count(void *box)
{
	return maildir_count(box);
}

static uint64_t ops_size(void *box, size_t i)
{
	return maildir_size(box, i);
}

static const char *ops_uidl(void *box, size_t i)
{
	return maildir_uidl(box, i);
}

static ssize_t ops_read(void *box, size_t i, uint64_t offset, char *buf, size_t len)
{
	return maildir_read(box, i, offset, buf, len);
}

static int ops_mark_deleted(void *box, size_t i)
{
	return maildir_delete(box, i);
}

static int ops_commit(void *box)
{
	return maildir_commit(box);
}

static void ops_close(void *box)
{
	maildir_close(box);
}

const struct pop3_mailbox_ops pop3_maildir_ops = {
	.count = ops_count,
	.size = ops_size,
	.uidl = ops_uidl,
	.read = ops_read,
	.mark_deleted = ops_mark_deleted,
	.commit = ops_commit,
	.close = ops_close,
};

/* pop3_maildir_open - -EBUSY is the client's answer ([IN-USE]); anything
 * else is the server's problem, so it is logged here */
int pop3_maildir_open(const char *root, const char *user,
		      const struct pop3_mailbox_ops **ops, void **box)
{
	struct maildir_box *b;
	int err = maildir_open(root, user, &b);

	if (err == -EBUSY)
		return POP3_OPEN_IN_USE;
	if (err < 0) {
		log_warn("pop3_mailbox_open_failed", "user=%s error=%s", user, strerror(-err));
		return POP3_OPEN_ERROR;
	}
	*ops = &pop3_maildir_ops;
	*box = b;
	return POP3_OPEN_OK;
}
