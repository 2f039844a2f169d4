/*
 * test_control - control_parse, the request-line grammar of the control
 * socket (see control.h): every accepted form with the request it makes,
 * every refused form with the message the client reads.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "control.h"

#define ID "4F3A2B1C0D9E8F7A6B"

static const char *command_name(enum control_command c)
{
	switch (c) {
	case CONTROL_QUEUE: return "queue";
	case CONTROL_DOMAINS: return "domains";
	case CONTROL_STATS: return "stats";
	case CONTROL_RELOAD: return "reload";
	case CONTROL_RESOLVE: return "resolve";
	case CONTROL_SUPPRESSION: return "suppression";
	case CONTROL_SHAPING: return "shaping";
	case CONTROL_CLUSTER: return "cluster";
	}
	return "?";
}

static const char *action_name(enum queue_action a)
{
	switch (a) {
	case QUEUE_LIST: return "list";
	case QUEUE_SHOW: return "show";
	case QUEUE_SUMMARY: return "summary";
	case QUEUE_DOMAINS: return "domains";
	case QUEUE_ADDRESSES: return "addresses";
	case QUEUE_FLUSH: return "flush";
	case QUEUE_DELETE: return "delete";
	case QUEUE_BOUNCE: return "bounce";
	case QUEUE_HOLD: return "hold";
	case QUEUE_RELEASE: return "release";
	}
	return "?";
}

struct accept_case {
	const char *line;
	enum control_command command;
	enum queue_action action;     /* only checked for queue and domains */
	const char *queue_id;
	const char *domain;
	bool deferred, held, json;
};

static const struct accept_case accept_cases[] = {
	{ "queue list", CONTROL_QUEUE, QUEUE_LIST, "", "", false, false, false },
	{ "json queue list", CONTROL_QUEUE, QUEUE_LIST, "", "", false, false, true },
	{ "queue list domain=Example.COM", CONTROL_QUEUE, QUEUE_LIST, "", "example.com", false, false, false },
	{ "queue list deferred", CONTROL_QUEUE, QUEUE_LIST, "", "", true, false, false },
	{ "queue list held", CONTROL_QUEUE, QUEUE_LIST, "", "", false, true, false },
	{ "queue list deferred deferred", CONTROL_QUEUE, QUEUE_LIST, "", "", true, false, false },
	{ "json queue list held domain=MX.a-b.Example", CONTROL_QUEUE, QUEUE_LIST, "", "mx.a-b.example",
	  false, true, true },
	{ "  queue\tlist \t deferred  \r", CONTROL_QUEUE, QUEUE_LIST, "", "", true, false, false },
	{ "queue show " ID, CONTROL_QUEUE, QUEUE_SHOW, ID, "", false, false, false },
	{ "json queue show " ID, CONTROL_QUEUE, QUEUE_SHOW, ID, "", false, false, true },
	{ "queue show 0123456789ABCDEF0123456789abcde", CONTROL_QUEUE, QUEUE_SHOW,
	  "0123456789ABCDEF0123456789abcde", "", false, false, false },        /* 31 bytes: the most */
	{ "queue summary", CONTROL_QUEUE, QUEUE_SUMMARY, "", "", false, false, false },
	{ "json queue summary domain=B.example deferred", CONTROL_QUEUE, QUEUE_SUMMARY, "", "b.example",
	  true, false, true },
	{ "queue summary held", CONTROL_QUEUE, QUEUE_SUMMARY, "", "", false, true, false },
	{ "queue flush", CONTROL_QUEUE, QUEUE_FLUSH, "", "", false, false, false },
	{ "queue flush domain=Example.ORG", CONTROL_QUEUE, QUEUE_FLUSH, "", "example.org", false, false, false },
	{ "queue delete " ID, CONTROL_QUEUE, QUEUE_DELETE, ID, "", false, false, false },
	{ "queue delete domain=X.example", CONTROL_QUEUE, QUEUE_DELETE, "", "x.example", false, false, false },
	{ "queue bounce " ID, CONTROL_QUEUE, QUEUE_BOUNCE, ID, "", false, false, false },
	{ "queue bounce domain=x.example", CONTROL_QUEUE, QUEUE_BOUNCE, "", "x.example", false, false, false },
	{ "queue hold " ID, CONTROL_QUEUE, QUEUE_HOLD, ID, "", false, false, false },
	{ "queue hold domain=x.example", CONTROL_QUEUE, QUEUE_HOLD, "", "x.example", false, false, false },
	{ "queue release " ID, CONTROL_QUEUE, QUEUE_RELEASE, ID, "", false, false, false },
	{ "queue release domain=X.EXAMPLE", CONTROL_QUEUE, QUEUE_RELEASE, "", "x.example", false, false, false },
	{ "domains", CONTROL_DOMAINS, QUEUE_DOMAINS, "", "", false, false, false },
	{ "json domains", CONTROL_DOMAINS, QUEUE_DOMAINS, "", "", false, false, true },
	{ "domains domain=MX.Example", CONTROL_DOMAINS, QUEUE_DOMAINS, "", "mx.example", false, false, false },
	{ "json domains domain=mx.example", CONTROL_DOMAINS, QUEUE_DOMAINS, "", "mx.example", false, false, true },
	{ "addresses", CONTROL_DOMAINS, QUEUE_ADDRESSES, "", "", false, false, false },
	{ "json addresses", CONTROL_DOMAINS, QUEUE_ADDRESSES, "", "", false, false, true },
	{ "stats", CONTROL_STATS, QUEUE_LIST, "", "", false, false, false },
	{ "json stats", CONTROL_STATS, QUEUE_LIST, "", "", false, false, true },
	{ "stats\r", CONTROL_STATS, QUEUE_LIST, "", "", false, false, false },
	{ "reload", CONTROL_RELOAD, QUEUE_LIST, "", "", false, false, false },
	/* 16 words, the most */
	{ "queue list deferred deferred deferred deferred deferred deferred deferred deferred deferred "
	  "deferred deferred deferred deferred deferred",
	  CONTROL_QUEUE, QUEUE_LIST, "", "", true, false, false },
};

static void check_accept(const char *shown, const char *line, const struct accept_case *c)
{
	struct control_request req;
	char err[256] = "untouched";
	int rc = control_parse(line, &req, err, sizeof(err));

	cr_assert_eq(rc, 0, "%s: got %d (%s), want 0", shown, rc, err);
	cr_expect_eq(req.command, c->command, "%s: command: got %s, want %s", shown, command_name(req.command),
		     command_name(c->command));
	if (c->command == CONTROL_QUEUE || c->command == CONTROL_DOMAINS)
		cr_expect_eq(req.action, c->action, "%s: action: got %s, want %s", shown,
			     action_name(req.action), action_name(c->action));
	cr_expect_str_eq(req.queue_id, c->queue_id, "%s: queue_id: got \"%s\", want \"%s\"", shown,
			 req.queue_id, c->queue_id);
	cr_expect_str_eq(req.domain, c->domain, "%s: domain: got \"%s\", want \"%s\"", shown, req.domain,
			 c->domain);
	cr_expect_eq(req.deferred_only, c->deferred, "%s: deferred_only: got %d, want %d", shown,
		     req.deferred_only, c->deferred);
	cr_expect_eq(req.held_only, c->held, "%s: held_only: got %d, want %d", shown, req.held_only, c->held);
	cr_expect_eq(req.json, c->json, "%s: json: got %d, want %d", shown, req.json, c->json);
}

Test(control_parse, accepted)
{
	for (size_t i = 0; i < sizeof(accept_cases) / sizeof(accept_cases[0]); i++)
		check_accept(accept_cases[i].line, accept_cases[i].line, &accept_cases[i]);
}

struct refuse_case {
	const char *line;
	const char *want_err;
};

static const struct refuse_case refuse_cases[] = {
	{ "", "empty request" },
	{ "   \t\r", "empty request" },
	{ "json", "empty request" },
	{ "frobnicate", "unknown command \"frobnicate\"" },
	{ "QUEUE list", "unknown command \"QUEUE\"" },
	{ "json json stats", "unknown command \"json\"" },
	{ "queue", "queue: missing command" },
	{ "json queue", "queue: missing command" },
	{ "queue purge", "queue: unknown command \"purge\"" },
	{ "queue LIST", "queue: unknown command \"LIST\"" },
	/* show: exactly one ID */
	{ "queue show", "queue show: takes one queue ID" },
	{ "queue show " ID " 4F3A2B1C0D9E8F7A6C", "unexpected argument \"4F3A2B1C0D9E8F7A6C\"" },
	{ "queue show domain=x.example", "queue show: takes one queue ID" },
	{ "queue show " ID " domain=x.example", "queue show: takes one queue ID" },
	/* the actions: an ID or domain=D, not both, not neither */
	{ "queue delete", "queue delete: takes an ID or domain=D (one of them)" },
	{ "queue delete " ID " domain=x.example", "queue delete: takes an ID or domain=D (one of them)" },
	{ "queue delete domain=x.example " ID, "queue delete: takes an ID or domain=D (one of them)" },
	{ "queue bounce", "queue bounce: takes an ID or domain=D (one of them)" },
	{ "queue hold", "queue hold: takes an ID or domain=D (one of them)" },
	{ "queue release", "queue release: takes an ID or domain=D (one of them)" },
	{ "queue delete " ID " " ID, "unexpected argument \"" ID "\"" },
	/* flush and the actions change the queue: no json, no filters */
	{ "json queue flush", "queue flush: takes only an ID or domain=D" },
	{ "json queue delete " ID, "queue delete: takes only an ID or domain=D" },
	{ "json queue bounce domain=x.example", "queue bounce: takes only an ID or domain=D" },
	{ "queue flush deferred", "queue flush: takes only an ID or domain=D" },
	{ "queue release domain=x.example held", "queue release: takes only an ID or domain=D" },
	{ "queue hold held", "queue hold: takes only an ID or domain=D" },
	{ "queue flush " ID, "unexpected argument \"" ID "\"" },
	/* deferred and held exclude each other */
	{ "queue list deferred held", "unexpected argument \"held\"" },
	{ "queue summary held deferred", "unexpected argument \"deferred\"" },
	/* bad domain= */
	{ "queue list domain=", "bad domain: \"domain=\"" },
	{ "queue list domain=a.example domain=b.example", "bad domain: \"domain=b.example\"" },
	{ "queue delete domain=", "bad domain: \"domain=\"" },
	{ "domains domain=", "domains: unexpected argument \"domain=\"" },
	{ "domains domain=a.example domain=b.example", "domains: unexpected argument \"domain=b.example\"" },
	{ "domains deferred", "domains: unexpected argument \"deferred\"" },
	{ "addresses domain=a.example", "addresses: takes no arguments" },
	{ "domains " ID, "domains: unexpected argument \"" ID "\"" },
	/* words that fit nowhere */
	{ "queue list " ID, "unexpected argument \"" ID "\"" },
	{ "queue summary now", "unexpected argument \"now\"" },
	{ "queue show 0123456789ABCDEF0123456789abcdef", "unexpected argument \"0123456789ABCDEF0123456789abcdef\"" },
	/* 17 words */
	{ "queue list deferred deferred deferred deferred deferred deferred deferred deferred deferred "
	  "deferred deferred deferred deferred deferred deferred",
	  "too many arguments" },
	/* stats and reload */
	{ "stats now", "stats: takes no arguments" },
	{ "json stats domain=x.example", "stats: takes no arguments" },
	{ "reload now", "reload: takes no arguments" },
	{ "json reload", "reload: no json output" },
	/* control bytes, DEL and 8-bit bytes in an ID */
	{ "queue show AB\x01" "CD", "bad queue ID: \"AB\x01" "CD\"" },
	{ "queue delete AB\x1b[2J", "bad queue ID: \"AB\x1b[2J\"" },
	{ "queue hold AB\x7f", "bad queue ID: \"AB\x7f\"" },
	{ "queue release \xc3\xa9t\xc3\xa9", "bad queue ID: \"\xc3\xa9t\xc3\xa9\"" },
};

static void check_refuse(const char *shown, const char *line, const char *want_err)
{
	struct control_request req;
	char err[512] = "";
	int rc = control_parse(line, &req, err, sizeof(err));

	cr_expect_eq(rc, -EINVAL, "%s: got %d, want -EINVAL (%d)", shown, rc, -EINVAL);
	cr_expect_str_eq(err, want_err, "%s: error: got \"%s\", want \"%s\"", shown, err, want_err);
}

Test(control_parse, refused)
{
	for (size_t i = 0; i < sizeof(refuse_cases) / sizeof(refuse_cases[0]); i++)
		check_refuse(refuse_cases[i].line, refuse_cases[i].line, refuse_cases[i].want_err);
}

/* A domain is a DNS name: 255 bytes fit domain[256], one more does not. */
Test(control_parse, domain_length)
{
	char line[300], want[300];
	struct accept_case c = { NULL, CONTROL_QUEUE, QUEUE_LIST, "", NULL, false, false, false };
	char domain[257];

	memset(domain, 'A', 255);
	domain[255] = '\0';
	snprintf(line, sizeof(line), "queue list domain=%s", domain);
	memset(domain, 'a', 255);
	c.domain = domain;
	check_accept("domain= of 255 bytes", line, &c);

	memset(domain, 'a', 256);
	domain[256] = '\0';
	snprintf(line, sizeof(line), "queue list domain=%s", domain);
	snprintf(want, sizeof(want), "bad domain: \"domain=%s\"", domain);
	check_refuse("domain= of 256 bytes", line, want);
}

/* CONTROL_MAX_LINE bytes are read; one more is refused before any word. */
Test(control_parse, line_length)
{
	char line[CONTROL_MAX_LINE + 2];
	struct accept_case c = { NULL, CONTROL_STATS, QUEUE_LIST, "", "", false, false, false };

	memset(line, ' ', sizeof(line));
	memcpy(line, "stats", 5);
	line[CONTROL_MAX_LINE] = '\0';
	check_accept("stats and spaces up to CONTROL_MAX_LINE", line, &c);

	line[CONTROL_MAX_LINE] = ' ';
	line[CONTROL_MAX_LINE + 1] = '\0';
	check_refuse("stats and spaces past CONTROL_MAX_LINE", line, "request too long");

	/* A long line is refused as such even when its words would be wrong too. */
	memset(line, 'x', sizeof(line));
	line[CONTROL_MAX_LINE + 1] = '\0';
	check_refuse("CONTROL_MAX_LINE + 1 bytes of x", line, "request too long");
}

/* Each parse starts from an empty request: nothing of the last one stays. */
Test(control_parse, clears_request)
{
	struct control_request req;
	char err[128];

	memset(&req, 0xa5, sizeof(req));
	cr_assert_eq(control_parse("json queue list domain=a.example deferred", &req, err, sizeof(err)), 0);
	cr_assert_eq(control_parse("stats", &req, err, sizeof(err)), 0, "got error %s", err);
	cr_expect_eq(req.command, CONTROL_STATS, "got %s, want stats", command_name(req.command));
	cr_expect_str_eq(req.domain, "", "domain: got \"%s\", want \"\"", req.domain);
	cr_expect_str_eq(req.queue_id, "", "queue_id: got \"%s\", want \"\"", req.queue_id);
	cr_expect(!req.json && !req.deferred_only && !req.held_only, "got json=%d deferred=%d held=%d, want 0 0 0",
		  req.json, req.deferred_only, req.held_only);
}

/* The message is cut to the caller's buffer and always terminated. */
Test(control_parse, short_error_buffer)
{
	struct control_request req;
	char err[10];

	memset(err, 'z', sizeof(err));
	cr_assert_eq(control_parse("frobnicate", &req, err, 8), -EINVAL);
	cr_expect_str_eq(err, "unknown", "got \"%s\", want \"unknown\"", err);
	cr_expect_eq(err[8], 'z', "wrote past errlen: got 0x%02x, want 'z'", (unsigned char)err[8]);
}

/* issue 17: resolve DOMAIN [sender=ADDR] */
Test(control, parse_resolve)
{
	struct control_request req;
	char err[300];

	cr_assert_eq(control_parse("resolve example.com sender=app@tenant.test", &req, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(req.command, CONTROL_RESOLVE, "got %s", command_name(req.command));
	cr_expect_str_eq(req.domain, "example.com");
	cr_expect_str_eq(req.sender, "app@tenant.test");
	cr_assert_eq(control_parse("resolve Example.COM", &req, err, sizeof(err)), 0, "%s", err);
	cr_expect_str_eq(req.sender, "");
	cr_expect_str_eq(req.domain, "example.com", "found by fuzz_control: domains are lower case");
	static const char *const bad[] = {
		"resolve", "resolve sender=a@b", "resolve a.test extra", "json resolve a.test",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(control_parse(bad[i], &req, err, sizeof(err)), -EINVAL, "accepted \"%s\"", bad[i]);
}

/* The suppression commands: what each line makes, and what is refused. */
Test(control, suppression_requests)
{
	static const struct {
		const char *line;
		int verb;
		const char *address;
		long long expires;
		const char *reason;
		bool json;
	} ok[] = {
		{ "suppression list", SUPPRESSION_LIST, "", 0, "", false },
		{ "json suppression list", SUPPRESSION_LIST, "", 0, "", true },
		{ "suppression list A@b.example", SUPPRESSION_LIST, "A@b.example", 0, "", false },
		{ "suppression export", SUPPRESSION_EXPORT, "", 0, "", false },
		{ "suppression import", SUPPRESSION_IMPORT, "", 0, "", false },
		{ "suppression remove a@b.example", SUPPRESSION_REMOVE, "a@b.example", 0, "", false },
		{ "suppression add a@b.example 0", SUPPRESSION_ADD, "a@b.example", 0, "", false },
		{ "suppression add a@b.example 1900000000 complained,  twice", SUPPRESSION_ADD, "a@b.example",
		  1900000000LL, "complained,  twice", false },
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct control_request req;
		char err[300] = "";
		cr_assert_eq(control_parse(ok[i].line, &req, err, sizeof(err)), 0, "%s: %s", ok[i].line, err);
		cr_expect_eq(req.command, CONTROL_SUPPRESSION, "%s", ok[i].line);
		cr_expect_eq((int)req.suppression.verb, ok[i].verb, "%s", ok[i].line);
		cr_expect_str_eq(req.suppression.address, ok[i].address, "%s", ok[i].line);
		cr_expect_eq(req.suppression.expires_s, ok[i].expires, "%s", ok[i].line);
		cr_expect_str_eq(req.suppression.reason, ok[i].reason, "%s", ok[i].line);
		cr_expect_eq(req.json, ok[i].json, "%s", ok[i].line);
	}
	static const struct {
		const char *line;
		const char *want;
	} bad[] = {
		{ "suppression", "suppression: missing command" },
		{ "suppression drop a@b", "suppression: unknown command" },
		{ "suppression remove", "suppression: remove takes an address" },
		{ "suppression remove nobody", "suppression: bad address" },
		{ "suppression add a@b.example", "suppression: add takes ADDRESS EXPIRES [REASON]" },
		{ "suppression add a@b.example soon", "suppression: EXPIRES is seconds" },
		{ "suppression export a@b.example", "suppression: export and import take no arguments" },
		{ "json suppression export", "suppression: only list has json output" },
		{ "suppression list a@b.example c@d.example", "suppression: unexpected argument" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct control_request req;
		char err[300] = "";
		cr_expect_eq(control_parse(bad[i].line, &req, err, sizeof(err)), -EINVAL, "%s", bad[i].line);
		cr_expect(strncmp(err, bad[i].want, strlen(bad[i].want)) == 0, "%s: got \"%s\", want \"%s\"",
			  bad[i].line, err, bad[i].want);
	}
}

/* queue summary top=N: a positive number, once, for summary only. */
Test(control, parse_queue_summary_top)
{
	static const struct {
		const char *line;
		unsigned top;            /* 0: refused with err */
		const char *err;
	} cases[] = {
		{ "queue summary top=10", 10, NULL },
		{ "json queue summary top=1 deferred domain=a.example", 1, NULL },
		{ "queue summary top=100000", 100000, NULL },
		{ "queue summary top=0", 0, "bad top: \"top=0\" (a number of domains, 1 to 100000)" },
		{ "queue summary top=", 0, "bad top: \"top=\" (a number of domains, 1 to 100000)" },
		{ "queue summary top=-3", 0, "bad top: \"top=-3\" (a number of domains, 1 to 100000)" },
		{ "queue summary top=5x", 0, "bad top: \"top=5x\" (a number of domains, 1 to 100000)" },
		{ "queue summary top=100001", 0, "bad top: \"top=100001\" (a number of domains, 1 to 100000)" },
		{ "queue summary top=3 top=4", 0, "bad top: \"top=4\" (a number of domains, 1 to 100000)" },
		{ "queue list top=3", 0, "queue list: top=N is for queue summary" },
		{ "queue flush top=3", 0, "queue flush: top=N is for queue summary" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct control_request req;
		char err[300] = "";
		int rc = control_parse(cases[i].line, &req, err, sizeof(err));
		if (cases[i].top != 0) {
			cr_expect_eq(rc, 0, "%s: got %d (%s), want 0", cases[i].line, rc, err);
			cr_expect_eq(req.top, cases[i].top, "%s: top: got %u, want %u", cases[i].line, req.top,
				     cases[i].top);
			cr_expect_eq(req.action, QUEUE_SUMMARY);
		} else {
			cr_expect_eq(rc, -EINVAL, "%s: got %d, want -EINVAL", cases[i].line, rc);
			cr_expect_str_eq(err, cases[i].err, "%s: got \"%s\", want \"%s\"", cases[i].line, err,
					 cases[i].err);
		}
	}
}
