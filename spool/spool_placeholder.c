/* Removed once the spool library lands. */
int spool_placeholder(void);
int spool_placeholder(void) { return 0; }
