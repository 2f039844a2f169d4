/*
 * mailbox - local part to mailbox name; see mailbox.h.
 */
#include "mailbox.h"

#include <errno.h>
#include <string.h>

#include "maildir.h"
#include "users.h"

/* mailbox_name - lower-cased local part up to '+', checked for Maildir. */
int mailbox_name(const char *address, char *out, size_t outlen)
{
	const char *at = strrchr(address, '@');
	size_t len = at != NULL ? (size_t)(at - address) : strlen(address);
	const char *plus = memchr(address, '+', len);

	if (plus != NULL)
		len = (size_t)(plus - address);
	if (len == 0 || len >= outlen || len > MAILBOX_NAME_MAX)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = address[i];
		out[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	out[len] = '\0';
	/* A quoted local part keeps its quotes in the address: refused. */
	if (strchr(out, '"') != NULL || !maildir_user_valid(out))
		return -EINVAL;
	return 0;
}

bool mailbox_exists(const struct users_db *db, const char *address)
{
	char name[MAILBOX_NAME_MAX + 1];

	if (mailbox_name(address, name, sizeof(name)) < 0)
		return false;
	return db == NULL || users_exists(db, name);
}
