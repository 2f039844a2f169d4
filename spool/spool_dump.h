/*
 * spool_dump - `spool dump [--json] SPOOL_DIR`: one line per live message
 * (queue id, sender, recipients and their states, size, location), for
 * ringmailctl and tools/ringmail-spool. Read-only; safe on a stopped spool
 * (on a running one it shows a snapshot that may lag the daemon).
 */
#ifndef RINGMAIL_SPOOL_DUMP_H
#define RINGMAIL_SPOOL_DUMP_H

/* spool_dump_main - argv[0] is the command name ("dump"). Returns the
 * process exit status: 0 ok, 1 error, 2 usage. */
int spool_dump_main(int argc, char **argv);

#endif
