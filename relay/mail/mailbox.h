/*
 * mailbox - which local mailbox a recipient address names, and whether it
 * exists. Pure (no I/O): shared by the RCPT check on the SMTP workers, the
 * local deliveries and the POP3 login on the local worker.
 *
 *   char name[MAILBOX_NAME_MAX + 1];
 *   if (mailbox_name("Alice+lists@example.com", name, sizeof(name)) == 0)
 *           name == "alice"
 *   mailbox_exists(db, "alice+x@example.com")     users file, or any name
 *
 * Mapping: the local part (before the last '@'; all of it when there is
 * none) is lower-cased (ASCII) and cut at the first '+' (a "+detail"
 * suffix lands in the same mailbox). The result must be a valid Maildir
 * directory name (maildir_user_valid): quoted local parts and names with
 * '/' or a leading '.' name no mailbox. So users in the users file should be
 * written in lower case: POP3 logins open the mailbox of the lower-cased
 * name too.
 *
 * With no users db (users.file = ""), every valid name exists (its Maildir
 * is created on first delivery); with one, only its users do.
 */
#ifndef RINGMAIL_MAILBOX_H
#define RINGMAIL_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>

#define MAILBOX_NAME_MAX 255

struct users_db;

/* mailbox_name - the mailbox of address into out (outlen bytes, NUL
 * included). Returns 0, or -EINVAL when the address names no mailbox
 * (or it does not fit). */
int mailbox_name(const char *address, char *out, size_t outlen);

/* mailbox_exists - does address name a mailbox of db (NULL: any valid)? */
bool mailbox_exists(const struct users_db *db, const char *address);

#endif
