/* test_smtp_dkim - the signing job (run synchronously): which dkim.sign
 * entries sign, the signed copy's layout, messages left unsigned. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dkim_key.h"
#include "smtp_dkim.h"

static struct config *cfg;
static struct dkim_key *keys[3];
static char *headers[] = { "from", "subject", "to" };

/* Three entries: example.com (RSA and Ed25519) and other.test (Ed25519). */
static void setup(void)
{
	static const char *const domains[] = { "example.com", "example.com", "other.test" };
	static const char *const selectors[] = { "r", "e", "o" };
	char err[256];

	/* Aligned like config_load's (the reference count has its own
	 * cache line) and holding one reference, the test's: a job holds
	 * its own while it lives. */
	cfg = aligned_alloc(_Alignof(struct config), sizeof(*cfg));
	memset(cfg, 0, sizeof(*cfg));
	retire_init(&cfg->retire, NULL);
	cfg->dkim_signers = calloc(3, sizeof(*cfg->dkim_signers));
	for (int i = 0; i < 3; i++) {
		struct buf pem;
		buf_init(&pem, 64 * 1024);
		cr_assert_eq(dkim_key_generate(i == 0 ? DKIM_RSA_SHA256 : DKIM_ED25519_SHA256, 1024, &pem,
					       &keys[i], err, sizeof(err)), 0, "%s", err);
		buf_free(&pem);
		cfg->dkim_signers[i] = (struct config_dkim_signer){
			.domain = (char *)domains[i], .selector = (char *)selectors[i], .key = keys[i] };
	}
	cfg->dkim_signer_count = 3;
	cfg->dkim_headers = headers;
	cfg->dkim_header_count = 3;
	cfg->dkim_expire_ms = 0;
}

static void teardown(void)
{
	cr_expect_eq(retire_refs(&cfg->retire), 1, "every job released the config");
	for (int i = 0; i < 3; i++)
		dkim_key_free(keys[i]);
	free(cfg->dkim_signers);
	free(cfg);
}

static struct smtp_dkim_job *sign(const char *msg)
{
	struct smtp_dkim_job *j = smtp_dkim_job_new(cfg, msg, strlen(msg), NULL, NULL);

	smtp_dkim_sign(j);
	return j;
}

TestSuite(smtp_dkim, .init = setup, .fini = teardown);

Test(smtp_dkim, aligned_entries_sign_in_list_order_above_the_message)
{
	const char *msg = "Received: from x\r\nFrom: A <a@news.example.com>\r\nSubject: s\r\n\r\nbody\r\n";
	struct smtp_dkim_job *j = sign(msg);

	cr_assert_eq(j->result, 0);
	cr_expect_str_eq(j->signed_text, "example.com/r,example.com/e");
	cr_expect_eq(j->signed_count[DKIM_RSA_SHA256], 1);
	cr_expect_eq(j->signed_count[DKIM_ED25519_SHA256], 1);
	cr_expect_eq(j->failures, 0);
	const char *out = buf_data(&j->message);
	size_t len = buf_len(&j->message);
	cr_assert_gt(len, strlen(msg));
	cr_expect(strncmp(out, "DKIM-Signature: v=1; a=rsa-sha256;", 34) == 0, "%.60s", out);
	const char *second = strstr(out + 1, "\r\nDKIM-Signature: v=1; a=ed25519-sha256;");
	cr_expect_not_null(second);
	cr_expect(memcmp(out + len - strlen(msg), msg, strlen(msg)) == 0, "the message follows the fields unchanged");
	smtp_dkim_job_free(j);
}

Test(smtp_dkim, unaligned_or_unparsable_from_is_not_signed)
{
	static const char *const msgs[] = {
		"From: a@example.org\r\n\r\nx\r\n",            /* no entry */
		"From: a@badexample.com\r\n\r\nx\r\n",         /* not a parent */
		"Subject: no from\r\n\r\nx\r\n",
		"From: a@example.com\r\nFrom: b@example.com\r\n\r\nx\r\n",
		"From: undisclosed\r\n\r\nx\r\n",
	};
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		struct smtp_dkim_job *j = sign(msgs[i]);
		cr_expect_eq(j->result, -ENOENT, "%s: got %d", msgs[i], j->result);
		cr_expect_eq(buf_len(&j->message), 0);
		cr_expect_str_eq(j->signed_text, "");
		smtp_dkim_job_free(j);
	}
}

Test(smtp_dkim, other_domain_gets_its_own_key_only)
{
	struct smtp_dkim_job *j = sign("From: <x@OTHER.test>\r\nTo: y@z.test\r\n\r\n");

	cr_assert_eq(j->result, 0);
	cr_expect_str_eq(j->signed_text, "other.test/o");
	cr_expect_eq(j->signed_count[DKIM_RSA_SHA256], 0);
	cr_expect_eq(j->signed_count[DKIM_ED25519_SHA256], 1);
	cr_expect(strstr(buf_data(&j->message), "d=other.test; s=o;") != NULL);
	smtp_dkim_job_free(j);
}
