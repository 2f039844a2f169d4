/*
 * ringmail-bounce-sample - print a sample DSN for fixed input to stdout.
 *
 *   ringmail-bounce-sample [hdrs]
 *
 * For tests (tests/integration/test_bounce_mime.py) and for eyeballing the
 * format: two recipients, one failed with a server reply, one delayed,
 * RET=FULL by default or RET=HDRS with the argument "hdrs".
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bounce.h"
#include "buf.h"

static const char original[] =
	"From: Alice <alice@example.org>\r\n"
	"To: bob@example.net, carol@example.net\r\n"
	"Subject: Quarterly figures\r\n"
	"Message-ID: <sample-1@example.org>\r\n"
	"\r\n"
	"Hello Bob,\r\n"
	".a line that starts with a dot\r\n"
	"the figures are attached.\r\n";

int main(int argc, char **argv)
{
	const struct bounce_rcpt rcpts[] = {
		{ .addr = "bob@example.net", .orcpt = "rfc822;bob@example.net",
		  .action = BOUNCE_FAILED, .status = "5.1.1", .remote_mta = "mx.example.net",
		  .code = 550, .diagnostic = "No such user here\nPlease check the address",
		  .last_attempt_ms = 1795000000000LL },
		{ .addr = "carol@example.net", .action = BOUNCE_DELAYED, .status = "4.4.1",
		  .remote_mta = "mx.example.net", .code = 0,
		  .diagnostic = "connection timed out", .last_attempt_ms = 1795000000000LL,
		  .retry_until_ms = 1795400000000LL },
	};
	struct bounce_input in = {
		.hostname = "relay.example.com",
		.sender = "alice@example.org",
		.envid = "QQ314159",
		.ret = argc > 1 && strcmp(argv[1], "hdrs") == 0 ? SMTP_RET_HDRS : SMTP_RET_FULL,
		.arrival_ms = 1794990000000LL,
		.now_ms = 1795000001000LL,
		.unique = 0x1234abcdULL,
		.rcpts = rcpts,
		.nrcpts = 2,
		.message = original,
		.message_len = sizeof(original) - 1,
	};
	struct buf out;

	buf_init(&out, 1 << 20);
	if (bounce_build(&in, &out) < 0) {
		fprintf(stderr, "bounce_build failed\n");
		return 1;
	}
	if (fwrite(buf_data(&out), 1, buf_len(&out), stdout) != buf_len(&out))
		return 1;
	buf_free(&out);
	return 0;
}
