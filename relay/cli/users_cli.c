/*
 * users_cli - ringmailctl's users command; see users_cli.h.
 */
#include "users_cli.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "users.h"

struct users_cli_args {
	const char *command;
	const char *file;
	const char *scheme;
	const char *name;
};

/* usage - the synopsis on stderr; the usage exit status. */
static int usage(void)
{
	fprintf(stderr,
		"usage: ringmailctl users add|passwd [--file PATH] [--scheme yescrypt|sha512-crypt|sha256-crypt|bcrypt] NAME\n"
		"       ringmailctl users del|verify [--file PATH] NAME\n"
		"       ringmailctl users check [--file PATH]\n"
		"PATH defaults to %s; the password is read from stdin\n"
		"(without echo on a terminal, else the first line).\n",
		USERS_CLI_DEFAULT_FILE);
	return 2;
}

/* parse_args - the subcommand, options and NAME; false on a usage error. */
static bool parse_args(int argc, char **argv, struct users_cli_args *a)
{
	*a = (struct users_cli_args){ .file = USERS_CLI_DEFAULT_FILE };
	if (argc < 2)
		return false;
	a->command = argv[1];
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--file") == 0 && i + 1 < argc)
			a->file = argv[++i];
		else if (strncmp(argv[i], "--file=", 7) == 0)
			a->file = argv[i] + 7;
		else if (strcmp(argv[i], "--scheme") == 0 && i + 1 < argc)
			a->scheme = argv[++i];
		else if (strncmp(argv[i], "--scheme=", 9) == 0)
			a->scheme = argv[i] + 9;
		else if (argv[i][0] == '-' || a->name != NULL)
			return false;
		else
			a->name = argv[i];
	}
	bool wants_name = strcmp(a->command, "check") != 0;
	return wants_name == (a->name != NULL);
}

/* read_line - one line from in into buf (cap bytes), without CR/LF.
 * Returns 0, -ENODATA at EOF, -E2BIG for an over-long line. */
static int read_line(FILE *in, char *buf, size_t cap)
{
	if (fgets(buf, (int)cap, in) == NULL)
		return -ENODATA;
	size_t len = strlen(buf);
	if (len > 0 && buf[len - 1] != '\n' && !feof(in))
		return -E2BIG;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	return 0;
}

/* prompt_no_echo - ask on stderr, read stdin with echo off. Echo goes off
 * before the prompt appears, so nothing typed after the prompt is shown
 * (type-ahead from before it is discarded, as getpass does). */
static int prompt_no_echo(const char *prompt, char *buf, size_t cap)
{
	struct termios saved, quiet;

	if (tcgetattr(STDIN_FILENO, &saved) < 0)
		return -errno;
	quiet = saved;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	quiet.c_lflag |= ECHONL;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) < 0)
		return -errno;
	fputs(prompt, stderr);
	fflush(stderr);
	int rc = read_line(stdin, buf, cap);
	tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	return rc;
}

/* read_password - from the terminal (confirmed when confirm) or stdin's
 * first line. buf holds USERS_PASSWORD_MAX + 2 bytes. */
static int read_password(bool confirm, char *buf, size_t cap)
{
	char again[USERS_PASSWORD_MAX + 2];
	int rc;

	if (!isatty(STDIN_FILENO))
		rc = read_line(stdin, buf, cap);
	else if ((rc = prompt_no_echo("Password: ", buf, cap)) == 0 && confirm) {
		rc = prompt_no_echo("Retype password: ", again, sizeof(again));
		if (rc == 0 && strcmp(buf, again) != 0) {
			fprintf(stderr, "ringmailctl: passwords do not match\n");
			rc = -EINVAL;
		}
		explicit_bzero(again, sizeof(again));
	}
	if (rc == -ENODATA)
		fprintf(stderr, "ringmailctl: no password on stdin\n");
	else if (rc == -E2BIG)
		fprintf(stderr, "ringmailctl: password longer than %d bytes\n", USERS_PASSWORD_MAX);
	else if (rc == 0 && buf[0] == '\0') {
		fprintf(stderr, "ringmailctl: empty password\n");
		rc = -EINVAL;
	}
	return rc;
}

/* cmd_set - add or passwd: hash a password and write it. */
static int cmd_set(const struct users_cli_args *a, enum users_set_mode mode)
{
	char password[USERS_PASSWORD_MAX + 2];
	char hash[USERS_HASH_MAX];

	if (read_password(true, password, sizeof(password)) < 0)
		return 1;
	int rc = users_hash_password(password, a->scheme, hash, sizeof(hash));
	explicit_bzero(password, sizeof(password));
	if (rc < 0) {
		fprintf(stderr, "ringmailctl: cannot hash with scheme %s: %s\n",
			a->scheme ? a->scheme : "yescrypt", strerror(-rc));
		return rc == -EINVAL ? 2 : 1;
	}
	rc = users_file_set(a->file, a->name, hash, mode);
	if (rc == -EEXIST)
		fprintf(stderr, "ringmailctl: user %s already exists in %s\n", a->name, a->file);
	else if (rc == -ENOENT && mode == USERS_SET_EXISTING)
		fprintf(stderr, "ringmailctl: no user %s in %s\n", a->name, a->file);
	else if (rc < 0)
		fprintf(stderr, "ringmailctl: %s: %s\n", a->file, strerror(-rc));
	return rc < 0 ? 1 : 0;
}

/* cmd_delete - del: remove the user's line. */
static int cmd_delete(const struct users_cli_args *a)
{
	int rc = users_file_delete(a->file, a->name);

	if (rc == -ENOENT)
		fprintf(stderr, "ringmailctl: no user %s in %s\n", a->name, a->file);
	else if (rc < 0)
		fprintf(stderr, "ringmailctl: %s: %s\n", a->file, strerror(-rc));
	return rc < 0 ? 1 : 0;
}

/* cmd_load - check (name NULL) or verify a password against the file. */
static int cmd_load(const struct users_cli_args *a)
{
	char err[512], password[USERS_PASSWORD_MAX + 2];
	struct users_db *db;

	if (users_load(a->file, &db, err, sizeof(err)) < 0) {
		fprintf(stderr, "ringmailctl: %s\n", err);
		return 1;
	}
	int status = 0;
	if (a->name == NULL) {
		printf("%s: %zu users\n", a->file, users_count(db));
	} else if (read_password(false, password, sizeof(password)) < 0) {
		status = 1;
	} else {
		status = users_verify(db, a->name, password) ? 0 : 1;
		explicit_bzero(password, sizeof(password));
		printf("%s\n", status == 0 ? "ok" : "mismatch");
	}
	users_free(db);
	return status;
}

int users_cli_main(int argc, char **argv)
{
	struct users_cli_args a;

	if (!parse_args(argc, argv, &a))
		return usage();
	if (a.name != NULL && !users_name_valid(a.name)) {
		fprintf(stderr, "ringmailctl: bad user name \"%s\" (1-%d bytes, no ':', spaces or control bytes)\n",
			a.name, USERS_NAME_MAX);
		return 1;
	}
	if (strcmp(a.command, "add") == 0)
		return cmd_set(&a, USERS_SET_NEW);
	if (strcmp(a.command, "passwd") == 0)
		return cmd_set(&a, USERS_SET_EXISTING);
	if (strcmp(a.command, "del") == 0)
		return cmd_delete(&a);
	if (strcmp(a.command, "verify") == 0 || strcmp(a.command, "check") == 0)
		return cmd_load(&a);
	return usage();
}
