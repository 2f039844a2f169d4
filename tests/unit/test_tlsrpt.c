/*
 * test_tlsrpt - the _smtp._tls TXT record parser (with bad input), the
 * aggregate of a period and its durable form, the RFC 8460 JSON report,
 * gzip and the report mail.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tlsrpt.h"

static int parse(const char *txt, struct tlsrpt_rua *rua, const char **why)
{
	*why = NULL;
	return tlsrpt_record_parse(txt, strlen(txt), rua, why);
}

Test(tlsrpt, record_rfc_examples)
{
	struct tlsrpt_rua rua;
	const char *why;

	cr_assert_eq(parse("v=TLSRPTv1;rua=mailto:reports@example.com", &rua, &why), 1, "why %s", why);
	cr_assert_eq(rua.count, 1);
	cr_expect_str_eq(rua.uri[0], "mailto:reports@example.com");
	cr_assert_eq(parse("v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt", &rua, &why), 1);
	cr_expect_str_eq(rua.uri[0], "https://reporting.example.com/v1/tlsrpt");
	/* both, blanks around the comma, a trailing delimiter, an extension */
	cr_assert_eq(parse("v=TLSRPTv1 ; rua=mailto:a@example.com , https://r.example/x ; ext=1 ;", &rua, &why), 1,
		     "why %s", why);
	cr_assert_eq(rua.count, 2);
	cr_expect_str_eq(rua.uri[0], "mailto:a@example.com");
	cr_expect_str_eq(rua.uri[1], "https://r.example/x");
}

Test(tlsrpt, record_not_ours)
{
	struct tlsrpt_rua rua;
	const char *why;

	cr_expect_eq(parse("v=spf1 -all", &rua, &why), 0);
	cr_expect_eq(parse("v=TLSRPTv10; rua=mailto:a@b.example", &rua, &why), 0);
	cr_expect_eq(parse("v=tlsrptv1; rua=mailto:a@b.example", &rua, &why), 0);
	cr_expect_eq(parse("", &rua, &why), 0);
}

Test(tlsrpt, record_bad_input)
{
	static const char *const bad[] = {
		"v=TLSRPTv1",                                          /* no rua */
		"v=TLSRPTv1;",                                         /* no rua */
		"v=TLSRPTv1; rua=",                                    /* empty value */
		"v=TLSRPTv1; rua=mailto:a@b.example; rua=mailto:c@d.example",   /* twice */
		"v=TLSRPTv1; rua=mailto:a@b.example,",                 /* trailing comma */
		"v=TLSRPTv1; rua=,mailto:a@b.example",                 /* empty URI */
		"v=TLSRPTv1; rua=mailto:a@b.example mailto:c@d.example",   /* blank inside */
		"v=TLSRPTv1 rua=mailto:a@b.example",                   /* no ';' */
		"v=TLSRPTv1; rua",                                     /* no '=' */
		"v=TLSRPTv1; =x; rua=mailto:a@b.example",              /* no name */
		"v=TLSRPTv1; x=a b; rua=mailto:a@b.example",           /* blank in a value */
		"v=TLSRPTv1; rua=mailto:a@b.example\r\n",              /* control characters */
		"v=TLSRPTv1; rua=mailto:\xc3\xa9@b.example",           /* non-ASCII */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct tlsrpt_rua rua;
		const char *why = NULL;
		int rc = parse(bad[i], &rua, &why);
		cr_expect_eq(rc, -EINVAL, "\"%s\": got %d, want -EINVAL", bad[i], rc);
		cr_expect(why != NULL && why[0] != '\0', "\"%s\": no reason", bad[i]);
	}
	/* A URI over the limit, and a record over the limit. */
	char big[TLSRPT_TXT_MAX + 64];
	snprintf(big, sizeof(big), "v=TLSRPTv1; rua=https://x.example/%0*d", TLSRPT_URI_MAX, 0);
	struct tlsrpt_rua rua;
	const char *why;
	cr_expect_eq(parse(big, &rua, &why), -EINVAL);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "v=TLSRPTv1; rua=mailto:a@b.example; x=", 38);
	cr_expect_eq(parse(big, &rua, &why), -EINVAL);
	cr_expect_str_eq(why, "record too long");
}

Test(tlsrpt, record_unusable_uris_are_skipped)
{
	struct tlsrpt_rua rua;
	const char *why;

	/* Valid record, but only what we can send to is kept. */
	cr_assert_eq(parse("v=TLSRPTv1; rua=http://insecure.example/,ftp://x,mailto:not-an-address,"
			   "MAILTO:ok%40r.example?subject=x", &rua, &why), 1, "why %s", why);
	cr_assert_eq(rua.count, 1);
	cr_expect_str_eq(rua.uri[0], "MAILTO:ok%40r.example?subject=x");
	char addr[128];
	cr_assert_eq(tlsrpt_mailto_address(rua.uri[0], addr, sizeof(addr)), 0);
	cr_expect_str_eq(addr, "ok@r.example");
	cr_expect_eq(tlsrpt_mailto_address("mailto:a@b@c", addr, sizeof(addr)), -EINVAL);
	cr_expect_eq(tlsrpt_mailto_address("mailto:@b", addr, sizeof(addr)), -EINVAL);
	cr_expect_eq(tlsrpt_mailto_address("mailto:a@b.examplehttps://x/y", addr, sizeof(addr)), -EINVAL);
	cr_expect_eq(tlsrpt_mailto_address("mailto:a%4", addr, sizeof(addr)), -EINVAL);
	cr_expect_eq(tlsrpt_mailto_address("https://a@b", addr, sizeof(addr)), -EINVAL);
}

Test(tlsrpt, record_select)
{
	const char *txts[] = { "v=spf1 -all", "v=TLSRPTv1; rua=mailto:a@b.example", "v=TLSRPTv1; rua=mailto:c@d.example" };
	size_t lens[] = { strlen(txts[0]), strlen(txts[1]), strlen(txts[2]) };
	struct tlsrpt_rua rua;
	const char *why = NULL;

	cr_expect_eq(tlsrpt_record_select(txts, lens, 2, &rua, &why), 1);
	cr_expect_str_eq(rua.uri[0], "mailto:a@b.example");
	cr_expect_eq(tlsrpt_record_select(txts, lens, 3, &rua, &why), -EINVAL);
	cr_expect_str_eq(why, "several TLSRPT records");
	cr_expect_eq(tlsrpt_record_select(txts, lens, 1, &rua, &why), 0);
	const char *broken[] = { "v=TLSRPTv1; nope" };
	size_t blen[] = { strlen(broken[0]) };
	cr_expect_eq(tlsrpt_record_select(broken, blen, 1, &rua, &why), -EINVAL);
}

/* ---- the aggregate and the report ---------------------------------------- */

static const char *const sts_lines = "version: STSv1\nmode: enforce\nmx: mx1.sts.example\nmax_age: 86400";

static struct tlsrpt_period *sample_period(void)
{
	struct tlsrpt_period *p = tlsrpt_period_new(1764892800, 1764979200);   /* 2025-12-05 UTC */
	struct tlsrpt_event ok = { .domain = "sts.example", .policy_type = TLSRPT_POLICY_STS,
				   .policy_strings = sts_lines, .mx_hosts = "mx1.sts.example",
				   .result = TLSRPT_SUCCESS };
	for (int i = 0; i < 3; i++)
		cr_assert_eq(tlsrpt_period_add(p, &ok, 10), 0);
	struct tlsrpt_event bad = ok;
	bad.result = TLSRPT_CERTIFICATE_HOST_MISMATCH;
	bad.receiving_mx = "mx1.sts.example";
	bad.receiving_ip = "192.0.2.1";
	bad.sending_ip = "198.51.100.7";
	cr_assert_eq(tlsrpt_period_add(p, &bad, 10), 0);
	cr_assert_eq(tlsrpt_period_add(p, &bad, 10), 0);
	struct tlsrpt_event none = { .domain = "sts.example", .policy_type = TLSRPT_POLICY_NONE,
				     .result = TLSRPT_STARTTLS_NOT_SUPPORTED, .receiving_mx = "mx2.sts.example" };
	cr_assert_eq(tlsrpt_period_add(p, &none, 10), 0);
	struct tlsrpt_event other = { .domain = "other.example", .policy_type = TLSRPT_POLICY_NONE,
				      .result = TLSRPT_SUCCESS };
	cr_assert_eq(tlsrpt_period_add(p, &other, 10), 0);
	return p;
}

Test(tlsrpt, period_counts_and_limits)
{
	struct tlsrpt_period *p = sample_period();
	struct tlsrpt_domain *d = tlsrpt_period_find(p, "sts.example");

	cr_assert_not_null(d);
	cr_assert_eq(p->domain_count, 2);
	cr_assert_eq(d->policy_count, 2);
	cr_expect_eq(d->policies[0].success, 3);
	cr_expect_eq(d->policies[0].failure, 2);
	cr_assert_eq(d->policies[0].detail_count, 1);
	cr_expect_eq(d->policies[0].details[0].count, 2);
	cr_expect_eq(d->policies[1].type, TLSRPT_POLICY_NONE);
	cr_expect_eq(d->policies[1].failure, 1);
	/* max_domains */
	struct tlsrpt_event third = { .domain = "third.example", .policy_type = TLSRPT_POLICY_NONE };
	cr_expect_eq(tlsrpt_period_add(p, &third, 2), -ENOSPC);
	/* a domain whose report went out counts nothing more */
	d->state = TLSRPT_REPORT_SENT;
	struct tlsrpt_event late = { .domain = "sts.example", .policy_type = TLSRPT_POLICY_NONE };
	cr_expect_eq(tlsrpt_period_add(p, &late, 10), -EALREADY);
	cr_expect_not(tlsrpt_period_settled(p));
	tlsrpt_period_find(p, "other.example")->state = TLSRPT_REPORT_NO_RECORD;
	cr_expect(tlsrpt_period_settled(p));
	struct tlsrpt_event empty = { .domain = "" };
	cr_expect_eq(tlsrpt_period_add(p, &empty, 10), -EINVAL);
	tlsrpt_period_free(p);
}

Test(tlsrpt, period_many_domains)
{
	struct tlsrpt_period *p = tlsrpt_period_new(0, 86400);
	char name[32];

	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "d%d.example", i);
		struct tlsrpt_event e = { .domain = name, .policy_type = TLSRPT_POLICY_NONE };
		cr_assert_eq(tlsrpt_period_add(p, &e, 100000), 0);
		cr_assert_eq(tlsrpt_period_add(p, &e, 100000), 0);
	}
	cr_expect_eq(p->domain_count, 5000);
	cr_expect_eq(tlsrpt_period_find(p, "d4321.example")->policies[0].success, 2);
	cr_expect_null(tlsrpt_period_find(p, "d5000.example"));
	tlsrpt_period_free(p);
}

Test(tlsrpt, period_json_round_trip)
{
	struct tlsrpt_period *p = sample_period();
	struct tlsrpt_domain *d = tlsrpt_period_find(p, "sts.example");
	d->attempts = 2;
	d->rua_known = true;
	d->rua.count = 1;
	strcpy(d->rua.uri[0], "https://r.example/");
	snprintf(d->report_id, sizeof(d->report_id), "id-1");
	json_t *j = tlsrpt_period_to_json(p);
	char *text = json_dumps(j, JSON_COMPACT);
	json_decref(j);

	json_error_t err;
	json_t *back = json_loads(text, 0, &err);
	cr_assert_not_null(back);
	const char *why = NULL;
	struct tlsrpt_period *q = tlsrpt_period_from_json(back, &why);
	cr_assert_not_null(q, "why %s", why);
	json_t *again = tlsrpt_period_to_json(q);
	char *text2 = json_dumps(again, JSON_COMPACT);
	cr_expect_str_eq(text2, text);
	cr_expect_eq(tlsrpt_period_find(q, "sts.example")->attempts, 2);
	free(text);
	free(text2);
	json_decref(back);
	json_decref(again);
	tlsrpt_period_free(q);
	tlsrpt_period_free(p);

	static const char *const bad[] = {
		"{}", "{\"version\":2,\"start\":0,\"end\":1,\"domains\":[]}",
		"{\"version\":1,\"start\":5,\"end\":1,\"domains\":[]}",
		"{\"version\":1,\"start\":0,\"end\":1,\"domains\":[{\"name\":\"x\"}]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *b = json_loads(bad[i], 0, &err);
		why = NULL;
		cr_expect_null(tlsrpt_period_from_json(b, &why), "%s", bad[i]);
		cr_expect_not_null(why);
		json_decref(b);
	}
}

Test(tlsrpt, report_json_rfc8460)
{
	struct tlsrpt_period *p = sample_period();
	struct tlsrpt_report_meta m = { .organization_name = "Example Org", .contact_info = "tlsrpt@relay.example",
					.report_id = "1764892800.abc@relay.example", .start_s = p->start_s,
					.end_s = p->end_s };
	char *text = tlsrpt_report_json(&m, tlsrpt_period_find(p, "sts.example"));
	json_error_t err;
	json_t *r = json_loads(text, 0, &err);

	cr_assert_not_null(r, "%s", text);
	cr_expect_str_eq(json_string_value(json_object_get(r, "organization-name")), "Example Org");
	cr_expect_str_eq(json_string_value(json_object_get(r, "contact-info")), "tlsrpt@relay.example");
	cr_expect_str_eq(json_string_value(json_object_get(r, "report-id")), "1764892800.abc@relay.example");
	json_t *range = json_object_get(r, "date-range");
	cr_expect_str_eq(json_string_value(json_object_get(range, "start-datetime")), "2025-12-05T00:00:00Z");
	cr_expect_str_eq(json_string_value(json_object_get(range, "end-datetime")), "2025-12-05T23:59:59Z");
	json_t *pols = json_object_get(r, "policies");
	cr_assert_eq(json_array_size(pols), 2);
	json_t *sts = json_array_get(pols, 0);
	json_t *pol = json_object_get(sts, "policy");
	cr_expect_str_eq(json_string_value(json_object_get(pol, "policy-type")), "sts");
	cr_expect_str_eq(json_string_value(json_object_get(pol, "policy-domain")), "sts.example");
	json_t *lines = json_object_get(pol, "policy-string");
	cr_assert_eq(json_array_size(lines), 4);
	cr_expect_str_eq(json_string_value(json_array_get(lines, 1)), "mode: enforce");
	cr_expect_str_eq(json_string_value(json_array_get(json_object_get(pol, "mx-host"), 0)), "mx1.sts.example");
	json_t *sum = json_object_get(sts, "summary");
	cr_expect_eq(json_integer_value(json_object_get(sum, "total-successful-session-count")), 3);
	cr_expect_eq(json_integer_value(json_object_get(sum, "total-failure-session-count")), 2);
	json_t *fd = json_array_get(json_object_get(sts, "failure-details"), 0);
	cr_expect_str_eq(json_string_value(json_object_get(fd, "result-type")), "certificate-host-mismatch");
	cr_expect_str_eq(json_string_value(json_object_get(fd, "sending-mta-ip")), "198.51.100.7");
	cr_expect_str_eq(json_string_value(json_object_get(fd, "receiving-mx-hostname")), "mx1.sts.example");
	cr_expect_str_eq(json_string_value(json_object_get(fd, "receiving-ip")), "192.0.2.1");
	cr_expect_eq(json_integer_value(json_object_get(fd, "failed-session-count")), 2);
	cr_expect_null(json_object_get(fd, "failure-reason-code"));       /* empty: left out */
	json_t *none = json_object_get(json_array_get(pols, 1), "policy");
	cr_expect_str_eq(json_string_value(json_object_get(none, "policy-type")), "no-policy-found");
	cr_expect_null(json_object_get(none, "policy-string"));
	/* the key order of RFC 8460's example */
	cr_expect(strncmp(text, "{\"organization-name\":", 21) == 0, "%s", text);
	json_decref(r);
	free(text);
	tlsrpt_period_free(p);
}

Test(tlsrpt, gzip_round_trip_and_mail)
{
	const char *json = "{\"organization-name\":\"x\"}";
	struct buf gz;

	buf_init(&gz, 1 << 20);
	cr_assert_eq(tlsrpt_gzip(json, strlen(json), &gz), 0);
	cr_assert(buf_len(&gz) > 18);
	cr_expect_eq((unsigned char)buf_data(&gz)[0], 0x1f);
	cr_expect_eq((unsigned char)buf_data(&gz)[1], 0x8b);
	char back[256];
	z_stream z = { 0 };
	cr_assert_eq(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = (Bytef *)buf_data(&gz);
	z.avail_in = (uInt)buf_len(&gz);
	z.next_out = (Bytef *)back;
	z.avail_out = sizeof(back);
	cr_assert_eq(inflate(&z, Z_FINISH), Z_STREAM_END);
	cr_expect_eq(z.total_out, strlen(json));
	cr_expect(memcmp(back, json, strlen(json)) == 0);
	inflateEnd(&z);

	struct tlsrpt_mail m = { .from = "tlsrpt@relay.example", .to = "reports@sts.example",
				 .submitter = "relay.example", .policy_domain = "sts.example",
				 .report_id = "r1@relay.example", .organization_name = "Example Org",
				 .start_s = 1764892800, .end_s = 1764979200, .now_s = 1764979300,
				 .message_id = "<r1.0@relay.example>", .gzip = buf_data(&gz), .gzip_len = buf_len(&gz) };
	struct buf out;
	buf_init(&out, 1 << 20);
	cr_assert_eq(tlsrpt_mail_build(&m, &out), 0);
	cr_assert_eq(buf_append(&out, "", 1), 0);
	const char *text = buf_data(&out);
	cr_expect_not_null(strstr(text, "\r\nSubject: Report Domain: sts.example Submitter: relay.example "
				   "Report-ID: <r1@relay.example>\r\n"));
	cr_expect_not_null(strstr(text, "\r\nTLS-Report-Domain: sts.example\r\n"));
	cr_expect_not_null(strstr(text, "\r\nTLS-Report-Submitter: relay.example\r\n"));
	cr_expect_not_null(strstr(text, "Content-Type: multipart/report; report-type=\"tlsrpt\";"));
	cr_expect_not_null(strstr(text, "Content-Type: application/tlsrpt+gzip\r\n"));
	cr_expect_not_null(strstr(text, "filename=\"relay.example!sts.example!1764892800!1764979199!r1relay.example.json.gz\""));
	for (const char *p = text; *p != '\0'; p++)
		if (*p == '\n')
			cr_assert(p > text && p[-1] == '\r', "bare LF at %zu", (size_t)(p - text));
	buf_free(&out);
	buf_free(&gz);
}
