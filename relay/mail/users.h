/*
 * users - the passwd-file of SMTP AUTH and POP3 users, with crypt(3) hashes.
 *
 * The file is the one Dovecot's passwd-file and mkpasswd(1) produce:
 *
 *   # comment lines and blank lines are ignored
 *   alice:$y$j9T$...                         bare crypt(3) hash
 *   bob:{SHA512-CRYPT}$6$...:1000:1000::/home/bob:/bin/false
 *   carol:{BLF-CRYPT}$2b$05$...              scheme prefix, as Dovecot writes it
 *
 * user ":" password [":" uid ":" gid ":" gecos ":" home ":" shell ":" extra]
 * where password is an optional {CRYPT}, {SHA512-CRYPT}, {SHA256-CRYPT} or
 * {BLF-CRYPT} prefix and a crypt(3) hash of one of the methods libxcrypt
 * implements and we accept: $y$ (yescrypt), $gy$, $7$ (scrypt), $6$
 * (SHA512-CRYPT), $5$ (SHA256-CRYPT), $2b$/$2a$/$2y$ (bcrypt). A prefix must
 * agree with its hash ({SHA512-CRYPT} needs $6$). Fields after the password
 * are ignored here and kept by the editors. Plaintext ({PLAIN}), MD5-crypt
 * and DES hashes are refused. A user name is 1..255 bytes, no ':', no space
 * or control bytes (mail addresses are fine).
 *
 * COST: crypt is slow by design (yescrypt at libxcrypt's default cost takes
 * tens of milliseconds, bcrypt and SHA512-CRYPT a few). users_verify and
 * users_hash_password must never run on a worker's event loop: the daemon
 * hands them to a helper thread and resumes the session on the answer.
 *
 * THREADS: a users_db is immutable after users_load, so users_verify,
 * users_exists and users_count may run on any number of threads at once
 * (each call has its own crypt work area). Replacing the db on SIGHUP is the
 * caller's business: free the old one only when no verify still uses it.
 *
 * The file editors (users_file_set, users_file_delete) rewrite the file
 * atomically: a temporary file in the same directory, fsync, rename over the
 * old one, fsync of the directory; a reader sees the old file or the new one,
 * never a mixture. Concurrent editors are serialised with flock(2) on the
 * directory. Mode and owner of an existing file are kept (a new one is 0640);
 * a symlink is followed and its target rewritten.
 */
#ifndef RINGMAIL_USERS_H
#define RINGMAIL_USERS_H

#include <stdbool.h>
#include <stddef.h>

#define USERS_NAME_MAX 255          /* bytes in a user name */
#define USERS_PASSWORD_MAX 511      /* bytes in a password (libxcrypt takes < 512) */
#define USERS_HASH_MAX 384          /* a crypt(3) output (CRYPT_OUTPUT_SIZE) */

struct users_db;                    /* opaque, immutable after load */

/* users_load - read and check the passwd-file at path. On success *out owns
 * a new db (free with users_free) and 0 is returned. On failure returns
 * -errno (I/O) or -EINVAL (a bad line), and err holds "PATH:LINE: reason"
 * (or "PATH: reason"). A file with no users is valid. */
int users_load(const char *path, struct users_db **out, char *err, size_t errlen);

/* users_parse - the same from a buffer (text, len bytes); name is used in
 * error messages. Pure: for tests and fuzzers. */
int users_parse(const char *name, const char *text, size_t len, struct users_db **out,
		char *err, size_t errlen);

/* users_free - release db; accepts NULL; returns NULL. */
struct users_db *users_free(struct users_db *db);

size_t users_count(const struct users_db *db);

/* users_name_valid - may name be a user name in the file (see above)? */
bool users_name_valid(const char *name);

/* users_exists - is user in the file? For RCPT and POP3 USER checks; it is
 * fast, so unlike users_verify its timing says whether the user exists. */
bool users_exists(const struct users_db *db, const char *user);

/* users_verify - does password match user's hash? Slow (see COST). An
 * unknown user costs one hash all the same (against the first entry's hash,
 * so with the same method and cost the file uses), and the comparison is
 * constant-time, so neither timing nor answer tells a wrong password from
 * an unknown user. False also for a password over USERS_PASSWORD_MAX. */
bool users_verify(const struct users_db *db, const char *user, const char *password);

/* users_hash_password - a new hash of password with a fresh random salt
 * at libxcrypt's default cost. scheme: NULL or "yescrypt" (the default),
 * "sha512-crypt", "sha256-crypt", "blf-crypt" or "bcrypt" (any case).
 * Writes the crypt string ("$y$...") into out. Returns 0, -EINVAL (unknown
 * scheme, password too long or empty), -ENOSPC (outlen too small; use
 * USERS_HASH_MAX) or -errno from libxcrypt (-ENOSYS: method disabled). Slow. */
int users_hash_password(const char *password, const char *scheme, char *out, size_t outlen);

enum users_set_mode {
	USERS_SET_ANY,          /* add or replace */
	USERS_SET_NEW,          /* add; -EEXIST if the user is there */
	USERS_SET_EXISTING,     /* replace; -ENOENT if the user is not there */
};

/* users_file_set - give user the password field hash (a crypt string,
 * optionally with a {SCHEME} prefix) in the file at path, creating the file
 * if needed. An existing line keeps its fields after the password; a new
 * user is appended. Every other line, comments included, is kept byte for
 * byte (a later duplicate line of the same user is dropped). Returns 0,
 * -EINVAL (bad name or hash), -EEXIST/-ENOENT (see mode), -EFBIG (the
 * file is, or would become, larger than the loader accepts) or -errno. */
int users_file_set(const char *path, const char *user, const char *hash, enum users_set_mode mode);

/* users_file_delete - remove every line of user. Returns 0, -ENOENT (no such
 * user or no file; the file is left alone), -EINVAL (bad name) or -errno. */
int users_file_delete(const char *path, const char *user);

#endif
