/*
 * control_cli - ringmailctl's commands that talk to the running daemon over
 * its control socket (control.h has the protocol).
 *
 *   ringmailctl queue list [--domain D] [--deferred|--held] [--json]
 *   ringmailctl queue show ID [--json]
 *   ringmailctl queue summary [--domain D] [--deferred|--held] [--json]
 *   ringmailctl queue flush [DOMAIN]
 *   ringmailctl queue delete|bounce|hold|release ID | --domain D
 *   ringmailctl domains [--domain D] [--json]
 *   ringmailctl stats [--json]
 *   ringmailctl reload
 *
 * Every command takes --socket PATH, or --config FILE to find the socket
 * the way the daemon does (control.socket under spool.dir); without either,
 * CONTROL_CLI_DEFAULT_CONFIG when it exists, else the built-in defaults.
 * Rows go to stdout as they stream in; the daemon's closing line goes to
 * stderr ("deleted 3 of 3 items"). Exit status: 0 ok, 1 the daemon said
 * no or could not be reached, 2 usage.
 */
#ifndef RINGMAIL_CONTROL_CLI_H
#define RINGMAIL_CONTROL_CLI_H

#define CONTROL_CLI_DEFAULT_CONFIG "/etc/ringmail/ringmail.conf"

/* control_cli_main - argv[0] is the command: "queue", "domains", "stats"
 * or "reload". */
int control_cli_main(int argc, char **argv);

#include <stddef.h>
#include <stdio.h>

/* control_cli_socket - the control socket's path: sock, else the one
 * cfg_path's config names (as the daemon finds it). 0, or -1 (said). */
int control_cli_socket(const char *sock, const char *cfg_path, char *out, size_t size);

/* control_cli_send - one request line (and body's lines then ".", unless
 * body is NULL) to the daemon at path; its rows to stdout, its last line
 * judged. The exit status: 0 ok, 1 not. */
int control_cli_send(const char *path, const char *line, FILE *body);

#endif
