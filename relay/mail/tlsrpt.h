/*
 * tlsrpt - SMTP TLS Reporting (RFC 8460): the _smtp._tls TXT record, the
 * result types, the aggregate of one reporting period and the report
 * built from it (JSON, gzip, the mail that carries it). Pure: no I/O, no
 * clock; the reporter (relay/tlsrpt_reporter.c) does those.
 *
 *   struct tlsrpt_rua rua;
 *   int rc = tlsrpt_record_select(txts, lens, n, &rua, &why);  1: one record
 *
 *   struct tlsrpt_period *p = tlsrpt_period_new(start_s, end_s);
 *   tlsrpt_period_add(p, &event, max_domains);      one session's result
 *   json_t *state = tlsrpt_period_to_json(p);       the durable form
 *   p = tlsrpt_period_from_json(state, &why);       after a restart
 *   char *report = tlsrpt_report_json(&meta, tlsrpt_period_domain(p, i));
 *
 * The aggregate: per policy domain (the recipient domain), per policy
 * (type, its text and MX patterns), the successful and failed sessions,
 * and per failure detail (result type, sending and receiving addresses,
 * MX name, reason code) its count. A domain also carries where its report
 * stands (pending, sent, no record, given up) and its rua, so that a
 * restart neither loses a day nor reports it twice.
 *
 * The TXT record (RFC 8460 3): "v=TLSRPTv1;" first, fields "name=value"
 * separated by ";" with optional blanks, rua required and at most once:
 * a comma-separated list of mailto: and https: URIs. Unknown fields are
 * ignored (the RFC's superset rule) but must still be name=value; URIs of
 * other schemes are ignored; a record whose rua has no usable URI is
 * valid but reports nowhere. Several TLSRPT records mean none (RFC 8460 3).
 *
 * Errors: -EINVAL with *why set to a static one-line reason.
 * Ownership: tlsrpt_period_* own their strings (copied from the event);
 * returned strings are malloc'd and the caller's.
 */
#ifndef RINGMAIL_TLSRPT_H
#define RINGMAIL_TLSRPT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define TLSRPT_RUA_MAX 8                /* URIs of one rua we keep */
#define TLSRPT_URI_MAX 512              /* bytes of one URI */
#define TLSRPT_TXT_MAX 2048             /* one TXT record we look at */
#define TLSRPT_DETAILS_MAX 64           /* failure details per policy; more are merged into the last */

enum tlsrpt_policy_type {
	TLSRPT_POLICY_STS,                 /* "sts": an MTA-STS policy */
	TLSRPT_POLICY_TLSA,                /* "tlsa": DANE */
	TLSRPT_POLICY_NONE,                /* "no-policy-found" */
	TLSRPT_POLICY_TYPE_COUNT
};

/* RFC 8460 4.3; TLSRPT_SUCCESS is a successful session. */
enum tlsrpt_result {
	TLSRPT_SUCCESS,
	TLSRPT_STARTTLS_NOT_SUPPORTED,
	TLSRPT_CERTIFICATE_HOST_MISMATCH,
	TLSRPT_CERTIFICATE_EXPIRED,
	TLSRPT_CERTIFICATE_NOT_TRUSTED,
	TLSRPT_VALIDATION_FAILURE,
	TLSRPT_TLSA_INVALID,
	TLSRPT_DNSSEC_INVALID,
	TLSRPT_DANE_REQUIRED,
	TLSRPT_STS_POLICY_FETCH_ERROR,
	TLSRPT_STS_POLICY_INVALID,
	TLSRPT_STS_WEBPKI_INVALID,
	TLSRPT_RESULT_COUNT
};

const char *tlsrpt_policy_type_name(enum tlsrpt_policy_type t);
const char *tlsrpt_result_name(enum tlsrpt_result r);
/* tlsrpt_policy_type_parse / tlsrpt_result_parse - by name; -EINVAL. */
int tlsrpt_policy_type_parse(const char *name);
int tlsrpt_result_parse(const char *name);

/* ---- the TXT record ---------------------------------------------------- */

struct tlsrpt_rua {
	size_t count;                      /* usable URIs (mailto:, https:) */
	char uri[TLSRPT_RUA_MAX][TLSRPT_URI_MAX + 1];
};

/* tlsrpt_record_parse - one TXT record. 1: a TLSRPT record, its usable
 * rua URIs in *out; 0: not one (does not begin with "v=TLSRPTv1");
 * -EINVAL: begins so but is malformed. */
int tlsrpt_record_parse(const char *txt, size_t len, struct tlsrpt_rua *out, const char **why);

/* tlsrpt_record_select - the TXT records at _smtp._tls.DOMAIN: 1 with
 * *out when exactly one is a TLSRPT record and well formed, 0 when none
 * is, -EINVAL when several are or the one is malformed. */
int tlsrpt_record_select(const char *const *txts, const size_t *lens, size_t n, struct tlsrpt_rua *out,
			 const char **why);

/* tlsrpt_mailto_address - the address of a "mailto:" URI (percent escapes
 * decoded, any "?query" dropped) into out; -EINVAL when it is not one
 * plain address. */
int tlsrpt_mailto_address(const char *uri, char *out, size_t size);

/* ---- one session's result ---------------------------------------------- */

/* What the delivery engine hands the reporter. Strings are borrowed for
 * the call; "" (or NULL) leaves a field out. policy_strings and mx_hosts
 * hold one item per line ('\n'-separated). */
struct tlsrpt_event {
	int64_t time_s;                    /* when (UTC seconds): picks the period */
	const char *domain;                /* the policy domain */
	enum tlsrpt_policy_type policy_type;
	const char *policy_strings;        /* sts: the policy's lines; tlsa: the records */
	const char *mx_hosts;              /* sts: the policy's mx patterns */
	enum tlsrpt_result result;
	const char *sending_ip;
	const char *receiving_mx;
	const char *receiving_ip;
	const char *reason_code;           /* failure-reason-code */
	const char *additional;            /* additional-information */
};

/* ---- the aggregate of one period --------------------------------------- */

enum tlsrpt_report_state {
	TLSRPT_REPORT_PENDING,             /* counting, or due and not sent yet */
	TLSRPT_REPORT_SENT,                /* sent to every rua that took it */
	TLSRPT_REPORT_NO_RECORD,           /* the domain publishes no TLSRPT record */
	TLSRPT_REPORT_FAILED,              /* given up after the attempts allowed */
	TLSRPT_REPORT_STATE_COUNT
};

const char *tlsrpt_report_state_name(enum tlsrpt_report_state s);

struct tlsrpt_detail {
	enum tlsrpt_result result;
	char *sending_ip, *receiving_mx, *receiving_ip, *reason_code, *additional;
	uint64_t count;
};

struct tlsrpt_policy {
	enum tlsrpt_policy_type type;
	char *policy_strings;              /* '\n'-separated */
	char *mx_hosts;                    /* '\n'-separated */
	uint64_t success, failure;
	size_t detail_count;
	struct tlsrpt_detail details[TLSRPT_DETAILS_MAX];
};

struct tlsrpt_domain {
	char *name;
	size_t policy_count;
	struct tlsrpt_policy *policies;
	/* the report */
	enum tlsrpt_report_state state;
	unsigned attempts;
	int64_t next_attempt_s;            /* 0: as soon as due */
	char report_id[80];                /* fixed at the first attempt; "" before */
	struct tlsrpt_rua rua;             /* from the first attempt's lookup */
	uint32_t rua_done;                 /* bit i: rua.uri[i] took the report */
	bool rua_known;
};

struct tlsrpt_period {
	int64_t start_s, end_s;            /* [start, end) in UTC seconds */
	size_t domain_count, domain_cap;
	struct tlsrpt_domain **domains;
	/* index: open addressing over domains by name */
	size_t *index;
	size_t index_cap;
};

struct tlsrpt_period *tlsrpt_period_new(int64_t start_s, int64_t end_s);
/* tlsrpt_period_free - accepts NULL, returns NULL. */
struct tlsrpt_period *tlsrpt_period_free(struct tlsrpt_period *p);

/* tlsrpt_period_find - the domain's entry, or NULL. */
struct tlsrpt_domain *tlsrpt_period_find(const struct tlsrpt_period *p, const char *name);

/* tlsrpt_period_add - count one session (or policy failure). 0;
 * -ENOSPC when the period already has max_domains other domains;
 * -EALREADY when the domain's report is no longer pending (it went out:
 * a late result is not counted twice nor in a report never sent);
 * -EINVAL for an event without a domain. */
int tlsrpt_period_add(struct tlsrpt_period *p, const struct tlsrpt_event *e, size_t max_domains);

/* tlsrpt_period_to_json - the durable form (a new reference). */
json_t *tlsrpt_period_to_json(const struct tlsrpt_period *p);
/* tlsrpt_period_from_json - back; NULL with why on a malformed one. */
struct tlsrpt_period *tlsrpt_period_from_json(const json_t *j, const char **why);

/* tlsrpt_period_settled - every domain's report sent, given up or not
 * wanted. */
bool tlsrpt_period_settled(const struct tlsrpt_period *p);

/* ---- the report -------------------------------------------------------- */

struct tlsrpt_report_meta {
	const char *organization_name;
	const char *contact_info;
	const char *report_id;
	int64_t start_s, end_s;            /* the period [start, end) */
};

/* tlsrpt_report_json - the RFC 8460 section 4 report of d's sessions in
 * the period: compact JSON, malloc'd (NULL only out of memory: fatal). */
char *tlsrpt_report_json(const struct tlsrpt_report_meta *m, const struct tlsrpt_domain *d);

/* tlsrpt_gzip - len bytes as a gzip file (RFC 1952) appended to out; 0,
 * -ENOBUFS at out's cap, -EIO if zlib fails. */
int tlsrpt_gzip(const char *data, size_t len, struct buf *out);

/* tlsrpt_datetime - "2026-12-05T00:00:00Z" into out (at least 21 bytes). */
void tlsrpt_datetime(int64_t t, char *out, size_t size);

struct tlsrpt_mail {
	const char *from;                  /* tls_rpt.sender */
	const char *to;                    /* the rua's address */
	const char *submitter;             /* our domain: TLS-Report-Submitter */
	const char *policy_domain;         /* TLS-Report-Domain */
	const char *report_id;
	const char *organization_name;
	int64_t start_s, end_s;
	int64_t now_s;                     /* Date */
	const char *message_id;            /* "<...>", unique per mail */
	const char *gzip;                  /* the report, gzipped */
	size_t gzip_len;
};

/* tlsrpt_mail_build - the RFC 8460 5.3 mail: multipart/report;
 * report-type="tlsrpt", a text/plain part and the application/tlsrpt+gzip
 * report in base64, TLS-Report-Domain and TLS-Report-Submitter, Subject
 * "Report Domain: D Submitter: S Report-ID: <ID>". CRLF lines. 0 or
 * -ENOBUFS. */
int tlsrpt_mail_build(const struct tlsrpt_mail *m, struct buf *out);

/* tlsrpt_report_filename - "submitter!domain!start!end!id.json.gz"
 * (RFC 8460 5.3) into out. */
void tlsrpt_report_filename(const struct tlsrpt_mail *m, char *out, size_t size);

#endif
