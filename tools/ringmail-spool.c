/*
 * ringmail-spool - stand-alone front end of the spool tools until
 * ringmailctl grows a "spool" command:
 *
 *   ringmail-spool dump [--json] SPOOL_DIR
 */
#include <stdio.h>
#include <string.h>

#include "spool_dump.h"

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "dump") == 0)
		return spool_dump_main(argc - 1, argv + 1);
	fprintf(stderr, "usage: %s dump [--json] SPOOL_DIR\n", argv[0]);
	return 2;
}
