/*
 * auth_file - credentials for next hops that want SMTP AUTH
 * (delivery.auth_file), one line per next hop:
 *
 *   # comments and blank lines are ignored
 *   [smtp.provider.example]:587   apikey:s3cr3t
 *   relay.example.com             alice:pass:with:colons
 *
 * NEXTHOP USER:PASSWORD, separated by spaces or tabs; NEXTHOP exactly as
 * written in delivery.relayhost, domains[].route or a sender route (the
 * lookup is a plain string comparison, as Postfix's smtp_sasl_password_maps
 * with the relayhost as key); the password runs to the end of the line and
 * may hold ':' (not spaces, CR or controls). A next hop must appear once.
 *
 * auth_file_load refuses a file that group or others may read: it holds
 * passwords. Errors name the line, never the password.
 *
 *   struct auth_file *af;
 *   if (auth_file_load(path, &af, err, sizeof err) < 0) ...
 *   const struct auth_cred *c = auth_file_find(af, "[smtp.provider.example]:587");
 *   af = auth_file_free(af);
 *
 * THREADS: immutable once loaded; any thread may look up at once. Owned
 * by the config that loaded it (freed with it).
 */
#ifndef RINGMAIL_AUTH_FILE_H
#define RINGMAIL_AUTH_FILE_H

#include <stddef.h>

struct auth_cred {
	char *next_hop;
	char *user;
	char *password;
};

struct auth_file;

/* auth_file_parse - text (len bytes, need not be NUL-terminated) into a
 * new table. Returns 0, or -EINVAL with "line N: why" in err. */
int auth_file_parse(const char *text, size_t len, struct auth_file **out, char *err, size_t errlen);
/* auth_file_load - read and parse path; -EPERM when group or others may
 * read it, -errno when it cannot be read. */
int auth_file_load(const char *path, struct auth_file **out, char *err, size_t errlen);
/* auth_file_find - the credentials of next_hop, or NULL. af may be NULL. */
const struct auth_cred *auth_file_find(const struct auth_file *af, const char *next_hop);
size_t auth_file_count(const struct auth_file *af);
/* auth_file_free - accepts NULL; returns NULL. Passwords are wiped. */
struct auth_file *auth_file_free(struct auth_file *af);

#endif
