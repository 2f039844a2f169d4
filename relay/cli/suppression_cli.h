/*
 * suppression_cli - ringmailctl's suppression command, over the control
 * socket (relay/control_suppression.h has the protocol):
 *
 *   ringmailctl suppression list [ADDRESS] [--json]
 *   ringmailctl suppression add ADDRESS [--expire DURATION] [--reason TEXT]
 *   ringmailctl suppression remove ADDRESS
 *   ringmailctl suppression export [FILE]      CSV; stdout without FILE
 *   ringmailctl suppression import FILE|-      CSV; - is stdin
 *
 * --expire takes seconds or a number with s, m, h or d ("90d"); without
 * it an entry lasts until removed. Takes --socket and --config like the
 * other daemon commands.
 */
#ifndef RINGMAIL_SUPPRESSION_CLI_H
#define RINGMAIL_SUPPRESSION_CLI_H

/* suppression_cli_main - argv[0] is "suppression". */
int suppression_cli_main(int argc, char **argv);

#endif
