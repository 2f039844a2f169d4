/*
 * users_cli - "ringmailctl users": edit and check the passwd-file.
 *
 *   ringmailctl users add    [--file PATH] [--scheme S] NAME   new user (fails if present)
 *   ringmailctl users passwd [--file PATH] [--scheme S] NAME   new password (fails if absent)
 *   ringmailctl users del    [--file PATH] NAME                remove the user
 *   ringmailctl users verify [--file PATH] NAME                exit 0 if the password matches
 *   ringmailctl users check  [--file PATH]                     load the file, report errors
 *
 * PATH defaults to /etc/ringmail/users (a config key will name it later).
 * S is yescrypt (default), sha512-crypt, sha256-crypt or bcrypt.
 * The password comes from stdin: on a terminal it is prompted for without
 * echo (twice for add and passwd); otherwise the first line of stdin is the
 * password (trailing CR/LF removed), so scripts can pipe it in.
 * Exit status: 0 done, 1 failed (user exists/absent, bad file, I/O,
 * password mismatch), 2 usage.
 */
#ifndef RINGMAIL_USERS_CLI_H
#define RINGMAIL_USERS_CLI_H

#define USERS_CLI_DEFAULT_FILE "/etc/ringmail/users"

/* users_cli_main - argv[0] is "users". */
int users_cli_main(int argc, char **argv);

#endif
