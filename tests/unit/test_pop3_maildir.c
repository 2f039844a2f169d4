/* test_pop3_maildir - the POP3 session over a real Maildir in a temporary
 * root: what a delivery stores is what RETR sends, LIST sizes match, DELE
 * takes effect at QUIT only, a second session gets [IN-USE]. */
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "maildir.h"
#include "pop3_maildir.h"
#include "pop3_session.h"

static char root[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void setup(void)
{
	strcpy(root, "/tmp/test_pop3_maildir.XXXXXX");
	cr_assert_not_null(mkdtemp(root), "mkdtemp: %s", strerror(errno));
}

static void teardown(void)
{
	nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(pop3_maildir, .init = setup, .fini = teardown);

static int test_auth(void *ctx, const char *user, const char *password)
{
	return strcmp(password, "pw") == 0 ? POP3_AUTH_OK : POP3_AUTH_BAD;
}

static int test_open(void *ctx, const char *user, const struct pop3_mailbox_ops **ops,
		     void **box)
{
	return pop3_maildir_open(root, user, ops, box);
}

static struct pop3_session *session(void)
{
	struct pop3_session_config cfg = {
		.hostname = "pop.test", .plaintext_allowed = true,
		.authenticate = test_auth, .open_mailbox = test_open,
	};
	struct pop3_session *s = pop3_session_new(&cfg);
	size_t n;

	pop3_session_start(s);
	pop3_session_output(s, &n);
	pop3_session_output_consumed(s, n);
	return s;
}

/* talk - feed all of in, return all output (malloc'd) */
static char *talk(struct pop3_session *s, const char *in)
{
	size_t used = 0, len = strlen(in), n, out_len = 0;
	char *out = calloc(1, 1);
	const char *p;

	for (;;) {
		while ((p = pop3_session_output(s, &n)), n > 0) {
			out = realloc(out, out_len + n + 1);
			memcpy(out + out_len, p, n);
			out_len += n;
			out[out_len] = 0;
			pop3_session_output_consumed(s, n);
		}
		if (used >= len || pop3_session_want(s) == POP3_WANT_CLOSE)
			return out;
		used += pop3_session_feed(s, in + used, len - used);
	}
}

static void deliver(const char *user, const char *data)
{
	int err = maildir_deliver(root, user, data, strlen(data), NULL, NULL, 0);

	cr_assert_eq(err, 0, "deliver: got %d, want 0", err);
}

#define LOGIN "USER amy\r\nPASS pw\r\n"
/* 7 + 8 octets: "first" and "second" with CRLF */
#define STAT_UIDL "+OK\r\n+OK Logged in.\r\n+OK 2 15\r\n+OK 2 "

Test(pop3_maildir, delivered_is_retrieved)
{
	struct pop3_session *s;
	char *out;

	deliver("amy", "Subject: one\r\n\r\n.leading dot\r\nend\r\n");
	deliver("amy", "Subject: two\r\n\r\nno final line end");
	s = session();
	out = talk(s, LOGIN "STAT\r\nLIST\r\nRETR 1\r\nRETR 2\r\nTOP 1 0\r\n");
	cr_assert_str_eq(out, "+OK\r\n+OK Logged in.\r\n+OK 2 70\r\n"
			 "+OK 2 messages (70 octets)\r\n1 35\r\n2 35\r\n.\r\n"
			 "+OK 35 octets\r\nSubject: one\r\n\r\n..leading dot\r\nend\r\n.\r\n"
			 "+OK 35 octets\r\nSubject: two\r\n\r\nno final line end\r\n.\r\n"
			 "+OK\r\nSubject: one\r\n\r\n.\r\n", "got [%s]", out);
	free(out);
	pop3_session_free(s);
}

Test(pop3_maildir, dele_quit_removes_and_drop_keeps)
{
	struct pop3_session *s, *t;
	char *out, uidl2[128];

	deliver("amy", "first\r\n");
	deliver("amy", "second\r\n");
	s = session();
	free(talk(s, LOGIN "DELE 1\r\n"));
	t = session();
	out = talk(t, LOGIN);
	cr_assert_str_eq(out, "+OK\r\n-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n",
			 "got [%s]", out);
	free(out);
	pop3_session_free(t);
	pop3_session_free(s);			/* dropped: nothing deleted */

	s = session();
	out = talk(s, LOGIN "STAT\r\nUIDL 2\r\nDELE 1\r\nQUIT\r\n");
	cr_assert_eq(strncmp(out, STAT_UIDL, strlen(STAT_UIDL)), 0, "got [%s]", out);
	snprintf(uidl2, sizeof(uidl2), "%.*s", (int)strcspn(out + strlen(STAT_UIDL), "\r"),
		 out + strlen(STAT_UIDL));
	cr_assert(strstr(out, "+OK Logging out, messages deleted.\r\n"), "got [%s]", out);
	free(out);
	pop3_session_free(s);

	s = session();
	out = talk(s, LOGIN "STAT\r\nUIDL\r\nRETR 1\r\nQUIT\r\n");
	cr_assert(strstr(out, "+OK 1 8\r\n"), "got [%s]", out);
	cr_assert(strstr(out, uidl2), "the survivor keeps its UIDL %s: got [%s]", uidl2, out);
	cr_assert(strstr(out, "second\r\n.\r\n"), "got [%s]", out);
	free(out);
	pop3_session_free(s);
}
