/*
 * dkim_cli - "ringmailctl dkim": DKIM key management.
 *
 *   ringmailctl dkim keygen --domain D --selector S [--algorithm rsa|ed25519]
 *                           [--bits N] --out FILE
 *
 * Writes a new private key to FILE (PEM, mode 0600; an existing FILE is
 * never overwritten) and prints the TXT record to publish:
 *
 *   name: S._domainkey.D
 *   value: v=DKIM1; k=rsa; p=...
 *   zone: S._domainkey.D. IN TXT ( "v=DKIM1; k=rsa; " "p=..." ... )
 *
 * The zone line splits the value into strings of at most 255 octets (a
 * TXT record's limit per string). RSA keys are 2048 bits unless --bits
 * says otherwise (1024 to 8192, RFC 8301). Exit status: 0 done, 1 failed,
 * 2 usage.
 */
#ifndef RINGMAIL_DKIM_CLI_H
#define RINGMAIL_DKIM_CLI_H

/* dkim_cli_main - argv[0] is "dkim". */
int dkim_cli_main(int argc, char **argv);

#endif
