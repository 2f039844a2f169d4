/* Removed once the dns library lands. */
int dns_placeholder(void);
int dns_placeholder(void) { return 0; }
