/*
 * tlsrpt - RFC 8460 records, aggregates and reports; see tlsrpt.h.
 */
#include "tlsrpt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <zlib.h>

#include <mbedtls/base64.h>

#include "xalloc.h"

static const char *const policy_type_names[TLSRPT_POLICY_TYPE_COUNT] = { "sts", "tlsa", "no-policy-found" };

static const char *const result_names[TLSRPT_RESULT_COUNT] = {
	"success", "starttls-not-supported", "certificate-host-mismatch", "certificate-expired",
	"certificate-not-trusted", "validation-failure", "tlsa-invalid", "dnssec-invalid", "dane-required",
	"sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid",
};

static const char *const state_names[TLSRPT_REPORT_STATE_COUNT] = { "pending", "sent", "no-record", "failed" };

const char *tlsrpt_policy_type_name(enum tlsrpt_policy_type t)
{
	return (unsigned)t < TLSRPT_POLICY_TYPE_COUNT ? policy_type_names[t] : "?";
}

const char *tlsrpt_result_name(enum tlsrpt_result r)
{
	return (unsigned)r < TLSRPT_RESULT_COUNT ? result_names[r] : "?";
}

const char *tlsrpt_report_state_name(enum tlsrpt_report_state s)
{
	return (unsigned)s < TLSRPT_REPORT_STATE_COUNT ? state_names[s] : "?";
}

static int name_lookup(const char *const *names, int count, const char *name)
{
	for (int i = 0; name != NULL && i < count; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -EINVAL;
}

int tlsrpt_policy_type_parse(const char *name)
{
	return name_lookup(policy_type_names, TLSRPT_POLICY_TYPE_COUNT, name);
}

int tlsrpt_result_parse(const char *name)
{
	return name_lookup(result_names, TLSRPT_RESULT_COUNT, name);
}

/* ---- the TXT record ---------------------------------------------------- */

#define VERSION_TAG "v=TLSRPTv1"

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool name_char(char c, bool first)
{
	bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
	return alnum || (!first && (c == '_' || c == '-' || c == '.'));
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int tlsrpt_mailto_address(const char *uri, char *out, size_t size)
{
	size_t n = 0, at = 0, ats = 0;

	if (strncasecmp(uri, "mailto:", 7) != 0 || size == 0)
		return -EINVAL;
	for (const char *p = uri + 7; *p != '\0' && *p != '?'; p++) {
		int c = (unsigned char)*p;
		if (c == '%') {
			int hi = hex_value(p[1]), lo = hi < 0 ? -1 : hex_value(p[2]);
			if (lo < 0)
				return -EINVAL;
			c = hi * 16 + lo;
			p += 2;
		}
		if (c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == ',' || c == '"' || c == '\\')
			return -EINVAL;
		if (c == '@') {
			ats++;
			at = n;
		} else if (ats > 0 && !name_char((char)c, false)) {
			return -EINVAL;         /* the domain: letters, digits, '-', '.' */
		}
		if (n + 1 >= size)
			return -EINVAL;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	if (ats != 1 || at == 0 || at + 1 >= n)
		return -EINVAL;
	return 0;
}

/* uri_usable - a rua URI we can send to: mailto: one address, https://host. */
static bool uri_usable(const char *uri)
{
	char addr[TLSRPT_URI_MAX + 1];

	if (strncasecmp(uri, "mailto:", 7) == 0)
		return tlsrpt_mailto_address(uri, addr, sizeof(addr)) == 0;
	if (strncasecmp(uri, "https://", 8) == 0)
		return uri[8] != '\0' && uri[8] != '/' && uri[8] != ':';
	return false;
}

/* parse_rua - value [p, end) of rua: URIs separated by *WSP "," *WSP. */
static int parse_rua(const char *p, const char *end, struct tlsrpt_rua *out, const char **why)
{
	while (p < end) {
		while (p < end && is_wsp(*p))
			p++;
		const char *start = p;
		while (p < end && *p != ',' && !is_wsp(*p))
			p++;
		size_t len = (size_t)(p - start);
		while (p < end && is_wsp(*p))
			p++;
		if (len == 0) {
			*why = "empty URI in rua";
			return -EINVAL;
		}
		if (p < end && *p != ',') {
			*why = "blank inside a rua URI";
			return -EINVAL;
		}
		if (len > TLSRPT_URI_MAX) {
			*why = "rua URI too long";
			return -EINVAL;
		}
		char uri[TLSRPT_URI_MAX + 1];
		memcpy(uri, start, len);
		uri[len] = '\0';
		if (uri_usable(uri) && out->count < TLSRPT_RUA_MAX)
			memcpy(out->uri[out->count++], uri, len + 1);
		if (p < end) {
			p++;           /* the comma */
			if (p == end) {
				*why = "rua ends in a comma";
				return -EINVAL;
			}
		}
	}
	return 0;
}

/* parse_field - one "name=value" at *pp (up to ';' or end). */
static int parse_field(const char **pp, const char *end, struct tlsrpt_rua *out, bool *seen_rua,
		       const char **why)
{
	const char *p = *pp, *name = p;

	if (!name_char(*p, true)) {
		*why = "field name does not start with a letter or digit";
		return -EINVAL;
	}
	while (p < end && name_char(*p, false))
		p++;
	size_t name_len = (size_t)(p - name);
	if (p == end || *p != '=') {
		*why = "field without '='";
		return -EINVAL;
	}
	p++;
	const char *value = p;
	while (p < end && *p != ';')
		p++;
	const char *vend = p;
	while (vend > value && is_wsp(vend[-1]))
		vend--;
	*pp = p;
	if (vend == value) {
		*why = "empty field value";
		return -EINVAL;
	}
	if (name_len == 3 && memcmp(name, "rua", 3) == 0) {
		if (*seen_rua) {
			*why = "rua given twice";
			return -EINVAL;
		}
		*seen_rua = true;
		return parse_rua(value, vend, out, why);
	}
	for (const char *q = value; q < vend; q++) {
		if (*q == '=' || is_wsp(*q)) {
			*why = "bad character in a field value";
			return -EINVAL;
		}
	}
	return 0;
}

int tlsrpt_record_parse(const char *txt, size_t len, struct tlsrpt_rua *out, const char **why)
{
	const size_t vlen = sizeof(VERSION_TAG) - 1;
	const char *end = txt + len;
	bool seen_rua = false;

	memset(out, 0, sizeof(*out));
	if (len < vlen || memcmp(txt, VERSION_TAG, vlen) != 0 || (len > vlen && txt[vlen] != ';' && !is_wsp(txt[vlen])))
		return 0;
	if (len > TLSRPT_TXT_MAX) {
		*why = "record too long";
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)txt[i];
		if ((c < 0x20 && c != '\t') || c >= 0x7f) {
			*why = "control or non-ASCII character in the record";
			return -EINVAL;
		}
	}
	const char *p = txt + vlen;
	for (;;) {
		while (p < end && is_wsp(*p))
			p++;
		if (p == end)
			break;
		if (*p != ';') {
			*why = "fields not separated by ';'";
			return -EINVAL;
		}
		p++;
		while (p < end && is_wsp(*p))
			p++;
		if (p == end)
			break;             /* a trailing delimiter */
		if (parse_field(&p, end, out, &seen_rua, why) < 0)
			return -EINVAL;
	}
	if (!seen_rua) {
		*why = "no rua field";
		return -EINVAL;
	}
	return 1;
}

int tlsrpt_record_select(const char *const *txts, const size_t *lens, size_t n, struct tlsrpt_rua *out,
			 const char **why)
{
	struct tlsrpt_rua one;
	int found = 0, rc = 0;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n; i++) {
		const char *w = NULL;
		int r = tlsrpt_record_parse(txts[i], lens[i], &one, &w);
		if (r == 0)
			continue;
		if (++found > 1) {
			*why = "several TLSRPT records";
			return -EINVAL;
		}
		if (r < 0) {
			*why = w;
			rc = -EINVAL;
		} else {
			*out = one;
			rc = 1;
		}
	}
	return rc;
}

/* ---- the aggregate ----------------------------------------------------- */

static char *dup_or_empty(const char *s)
{
	return xstrdup(s != NULL ? s : "");
}

static bool same(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

struct tlsrpt_period *tlsrpt_period_new(int64_t start_s, int64_t end_s)
{
	struct tlsrpt_period *p = xcalloc(1, sizeof(*p));
	p->start_s = start_s;
	p->end_s = end_s;
	return p;
}

static void domain_free(struct tlsrpt_domain *d)
{
	for (size_t i = 0; i < d->policy_count; i++) {
		struct tlsrpt_policy *pol = &d->policies[i];
		free(pol->policy_strings);
		free(pol->mx_hosts);
		for (size_t k = 0; k < pol->detail_count; k++) {
			struct tlsrpt_detail *x = &pol->details[k];
			free(x->sending_ip);
			free(x->receiving_mx);
			free(x->receiving_ip);
			free(x->reason_code);
			free(x->additional);
		}
	}
	free(d->policies);
	free(d->name);
	free(d);
}

struct tlsrpt_period *tlsrpt_period_free(struct tlsrpt_period *p)
{
	if (p == NULL)
		return NULL;
	for (size_t i = 0; i < p->domain_count; i++)
		domain_free(p->domains[i]);
	free(p->domains);
	free(p->index);
	free(p);
	return NULL;
}

/* index_slot - where name is, or the empty slot it would take. */
static size_t index_slot(const struct tlsrpt_period *p, const char *name)
{
	size_t mask = p->index_cap - 1, i = (size_t)name_hash(name) & mask;

	while (p->index[i] != 0 && strcmp(p->domains[p->index[i] - 1]->name, name) != 0)
		i = (i + 1) & mask;
	return i;
}

static void index_grow(struct tlsrpt_period *p)
{
	free(p->index);
	p->index_cap = p->index_cap ? p->index_cap * 2 : 64;
	p->index = xcalloc(p->index_cap, sizeof(*p->index));
	for (size_t k = 0; k < p->domain_count; k++)
		p->index[index_slot(p, p->domains[k]->name)] = k + 1;
}

struct tlsrpt_domain *tlsrpt_period_find(const struct tlsrpt_period *p, const char *name)
{
	if (p->index_cap == 0)
		return NULL;
	size_t k = p->index[index_slot(p, name)];
	return k ? p->domains[k - 1] : NULL;
}

static struct tlsrpt_domain *domain_add(struct tlsrpt_period *p, const char *name)
{
	if ((p->domain_count + 1) * 2 > p->index_cap)
		index_grow(p);
	if (p->domain_count == p->domain_cap) {
		p->domain_cap = p->domain_cap ? p->domain_cap * 2 : 16;
		p->domains = xreallocarray(p->domains, p->domain_cap, sizeof(*p->domains));
	}
	struct tlsrpt_domain *d = xcalloc(1, sizeof(*d));
	d->name = xstrdup(name);
	p->domains[p->domain_count++] = d;
	p->index[index_slot(p, name)] = p->domain_count;
	return d;
}

static struct tlsrpt_policy *policy_find_or_add(struct tlsrpt_domain *d, enum tlsrpt_policy_type type,
						const char *strings, const char *mx)
{
	for (size_t i = 0; i < d->policy_count; i++) {
		struct tlsrpt_policy *pol = &d->policies[i];
		if (pol->type == type && same(pol->policy_strings, strings) && same(pol->mx_hosts, mx))
			return pol;
	}
	d->policies = xreallocarray(d->policies, d->policy_count + 1, sizeof(*d->policies));
	struct tlsrpt_policy *pol = &d->policies[d->policy_count++];
	memset(pol, 0, sizeof(*pol));
	pol->type = type;
	pol->policy_strings = dup_or_empty(strings);
	pol->mx_hosts = dup_or_empty(mx);
	return pol;
}

static void detail_count(struct tlsrpt_policy *pol, const struct tlsrpt_event *e, uint64_t n)
{
	for (size_t k = 0; k < pol->detail_count; k++) {
		struct tlsrpt_detail *x = &pol->details[k];
		if (x->result == e->result && same(x->sending_ip, e->sending_ip) &&
		    same(x->receiving_mx, e->receiving_mx) && same(x->receiving_ip, e->receiving_ip) &&
		    same(x->reason_code, e->reason_code) && same(x->additional, e->additional)) {
			x->count += n;
			return;
		}
	}
	if (pol->detail_count == TLSRPT_DETAILS_MAX)
		return;                    /* in the summary only */
	struct tlsrpt_detail *x = &pol->details[pol->detail_count++];
	x->result = e->result;
	x->sending_ip = dup_or_empty(e->sending_ip);
	x->receiving_mx = dup_or_empty(e->receiving_mx);
	x->receiving_ip = dup_or_empty(e->receiving_ip);
	x->reason_code = dup_or_empty(e->reason_code);
	x->additional = dup_or_empty(e->additional);
	x->count = n;
}

int tlsrpt_period_add(struct tlsrpt_period *p, const struct tlsrpt_event *e, size_t max_domains)
{
	if (e->domain == NULL || e->domain[0] == '\0' || (unsigned)e->policy_type >= TLSRPT_POLICY_TYPE_COUNT ||
	    (unsigned)e->result >= TLSRPT_RESULT_COUNT)
		return -EINVAL;
	struct tlsrpt_domain *d = tlsrpt_period_find(p, e->domain);
	if (d == NULL) {
		if (p->domain_count >= max_domains)
			return -ENOSPC;
		d = domain_add(p, e->domain);
	}
	if (d->state != TLSRPT_REPORT_PENDING || d->attempts > 0)
		return -EALREADY;
	struct tlsrpt_policy *pol = policy_find_or_add(d, e->policy_type, e->policy_strings, e->mx_hosts);
	if (e->result == TLSRPT_SUCCESS) {
		pol->success++;
	} else {
		pol->failure++;
		detail_count(pol, e, 1);
	}
	return 0;
}

bool tlsrpt_period_settled(const struct tlsrpt_period *p)
{
	for (size_t i = 0; i < p->domain_count; i++)
		if (p->domains[i]->state == TLSRPT_REPORT_PENDING)
			return false;
	return true;
}

/* ---- the durable form -------------------------------------------------- */

static json_t *detail_to_json(const struct tlsrpt_detail *x)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "result", tlsrpt_result_name(x->result),
			 "sending_ip", x->sending_ip, "receiving_mx", x->receiving_mx, "receiving_ip",
			 x->receiving_ip, "reason_code", x->reason_code, "additional", x->additional, "count",
			 (json_int_t)x->count);
}

static json_t *domain_to_json(const struct tlsrpt_domain *d)
{
	json_t *pols = json_array(), *rua = json_array();

	for (size_t i = 0; i < d->policy_count; i++) {
		const struct tlsrpt_policy *pol = &d->policies[i];
		json_t *details = json_array();
		for (size_t k = 0; k < pol->detail_count; k++)
			json_array_append_new(details, detail_to_json(&pol->details[k]));
		json_array_append_new(pols, json_pack("{s:s, s:s, s:s, s:I, s:I, s:o}", "type",
						      tlsrpt_policy_type_name(pol->type), "policy_strings",
						      pol->policy_strings, "mx_hosts", pol->mx_hosts, "success",
						      (json_int_t)pol->success, "failure", (json_int_t)pol->failure,
						      "details", details));
	}
	for (size_t i = 0; i < d->rua.count; i++)
		json_array_append_new(rua, json_string(d->rua.uri[i]));
	return json_pack("{s:s, s:s, s:i, s:I, s:s, s:b, s:o, s:i, s:o}", "name", d->name, "state",
			 tlsrpt_report_state_name(d->state), "attempts", (int)d->attempts, "next_attempt",
			 (json_int_t)d->next_attempt_s, "report_id", d->report_id, "rua_known", d->rua_known, "rua",
			 rua, "rua_done", (int)d->rua_done, "policies", pols);
}

json_t *tlsrpt_period_to_json(const struct tlsrpt_period *p)
{
	json_t *domains = json_array();

	for (size_t i = 0; i < p->domain_count; i++)
		json_array_append_new(domains, domain_to_json(p->domains[i]));
	return json_pack("{s:i, s:I, s:I, s:o}", "version", 1, "start", (json_int_t)p->start_s, "end",
			 (json_int_t)p->end_s, "domains", domains);
}

static int detail_from_json(struct tlsrpt_policy *pol, const json_t *j, const char **why)
{
	const char *result, *sip, *mx, *rip, *code, *add;
	json_int_t count;

	if (json_unpack((json_t *)j, "{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "result", &result, "sending_ip", &sip,
			"receiving_mx", &mx, "receiving_ip", &rip, "reason_code", &code, "additional", &add, "count",
			&count) < 0 || tlsrpt_result_parse(result) <= 0 || count < 0) {
		*why = "bad failure detail";
		return -EINVAL;
	}
	struct tlsrpt_event e = { .result = (enum tlsrpt_result)tlsrpt_result_parse(result), .sending_ip = sip,
				  .receiving_mx = mx, .receiving_ip = rip, .reason_code = code, .additional = add };
	detail_count(pol, &e, (uint64_t)count);
	return 0;
}

static int policy_from_json(struct tlsrpt_domain *d, const json_t *j, const char **why)
{
	const char *type, *strings, *mx;
	json_int_t success, failure;
	json_t *details;
	size_t k;
	json_t *x;

	if (json_unpack((json_t *)j, "{s:s, s:s, s:s, s:I, s:I, s:o}", "type", &type, "policy_strings", &strings, "mx_hosts",
			&mx, "success", &success, "failure", &failure, "details", &details) < 0 ||
	    tlsrpt_policy_type_parse(type) < 0 || !json_is_array(details) || success < 0 || failure < 0) {
		*why = "bad policy";
		return -EINVAL;
	}
	struct tlsrpt_policy *pol = policy_find_or_add(d, (enum tlsrpt_policy_type)tlsrpt_policy_type_parse(type),
						       strings, mx);
	pol->success += (uint64_t)success;
	pol->failure += (uint64_t)failure;
	json_array_foreach(details, k, x)
		if (detail_from_json(pol, x, why) < 0)
			return -EINVAL;
	return 0;
}

static int domain_from_json(struct tlsrpt_period *p, const json_t *j, const char **why)
{
	const char *name, *state, *report_id;
	int attempts, rua_known, rua_done;
	json_int_t next;
	json_t *rua, *pols, *x;
	size_t k;

	if (json_unpack((json_t *)j, "{s:s, s:s, s:i, s:I, s:s, s:b, s:o, s:i, s:o}", "name", &name, "state", &state,
			"attempts", &attempts, "next_attempt", &next, "report_id", &report_id, "rua_known",
			&rua_known, "rua", &rua, "rua_done", &rua_done, "policies", &pols) < 0 ||
	    !json_is_array(rua) || !json_is_array(pols) || name[0] == '\0' || attempts < 0 ||
	    tlsrpt_period_find(p, name) != NULL || strlen(report_id) >= sizeof(((struct tlsrpt_domain *)0)->report_id)) {
		*why = "bad domain";
		return -EINVAL;
	}
	int st = name_lookup(state_names, TLSRPT_REPORT_STATE_COUNT, state);
	if (st < 0) {
		*why = "bad report state";
		return -EINVAL;
	}
	struct tlsrpt_domain *d = domain_add(p, name);
	d->state = (enum tlsrpt_report_state)st;
	d->attempts = (unsigned)attempts;
	d->next_attempt_s = next;
	snprintf(d->report_id, sizeof(d->report_id), "%s", report_id);
	d->rua_known = rua_known;
	d->rua_done = (uint32_t)rua_done;
	json_array_foreach(rua, k, x) {
		const char *u = json_string_value(x);
		if (u == NULL || strlen(u) > TLSRPT_URI_MAX || d->rua.count == TLSRPT_RUA_MAX) {
			*why = "bad rua";
			return -EINVAL;
		}
		snprintf(d->rua.uri[d->rua.count++], TLSRPT_URI_MAX + 1, "%s", u);
	}
	json_array_foreach(pols, k, x)
		if (policy_from_json(d, x, why) < 0)
			return -EINVAL;
	return 0;
}

struct tlsrpt_period *tlsrpt_period_from_json(const json_t *j, const char **why)
{
	json_int_t start, end;
	int version;
	json_t *domains, *x;
	size_t k;

	if (json_unpack((json_t *)j, "{s:i, s:I, s:I, s:o}", "version", &version, "start", &start, "end", &end, "domains",
			&domains) < 0 || version != 1 || end <= start || !json_is_array(domains)) {
		*why = "not a TLS-RPT period (version 1, start, end, domains)";
		return NULL;
	}
	struct tlsrpt_period *p = tlsrpt_period_new(start, end);
	json_array_foreach(domains, k, x) {
		if (domain_from_json(p, x, why) < 0)
			return tlsrpt_period_free(p);
	}
	return p;
}

/* ---- the report -------------------------------------------------------- */

void tlsrpt_datetime(int64_t t, char *out, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* lines_to_json - a '\n'-separated list as an array of strings. */
static json_t *lines_to_json(const char *lines)
{
	json_t *a = json_array();

	while (lines != NULL && *lines != '\0') {
		const char *nl = strchr(lines, '\n');
		size_t n = nl ? (size_t)(nl - lines) : strlen(lines);
		if (n > 0)
			json_array_append_new(a, json_stringn(lines, n));
		lines += n + (nl ? 1 : 0);
	}
	return a;
}

static void set_if(json_t *o, const char *key, const char *value)
{
	if (value != NULL && value[0] != '\0')
		json_object_set_new(o, key, json_string(value));
}

static json_t *report_policy(const struct tlsrpt_domain *d, const struct tlsrpt_policy *pol)
{
	json_t *policy = json_object(), *details = json_array();

	json_object_set_new(policy, "policy-type", json_string(tlsrpt_policy_type_name(pol->type)));
	if (pol->policy_strings[0] != '\0')
		json_object_set_new(policy, "policy-string", lines_to_json(pol->policy_strings));
	json_object_set_new(policy, "policy-domain", json_string(d->name));
	if (pol->mx_hosts[0] != '\0')
		json_object_set_new(policy, "mx-host", lines_to_json(pol->mx_hosts));
	for (size_t k = 0; k < pol->detail_count; k++) {
		const struct tlsrpt_detail *x = &pol->details[k];
		json_t *o = json_object();
		json_object_set_new(o, "result-type", json_string(tlsrpt_result_name(x->result)));
		set_if(o, "sending-mta-ip", x->sending_ip);
		set_if(o, "receiving-mx-hostname", x->receiving_mx);
		set_if(o, "receiving-ip", x->receiving_ip);
		json_object_set_new(o, "failed-session-count", json_integer((json_int_t)x->count));
		set_if(o, "additional-information", x->additional);
		set_if(o, "failure-reason-code", x->reason_code);
		json_array_append_new(details, o);
	}
	json_t *out = json_object();
	json_object_set_new(out, "policy", policy);
	json_object_set_new(out, "summary", json_pack("{s:I, s:I}", "total-successful-session-count",
						      (json_int_t)pol->success, "total-failure-session-count",
						      (json_int_t)pol->failure));
	if (json_array_size(details) > 0)
		json_object_set_new(out, "failure-details", details);
	else
		json_decref(details);
	return out;
}

char *tlsrpt_report_json(const struct tlsrpt_report_meta *m, const struct tlsrpt_domain *d)
{
	char start[32], end[32];
	json_t *pols = json_array();

	tlsrpt_datetime(m->start_s, start, sizeof(start));
	tlsrpt_datetime(m->end_s - 1, end, sizeof(end));     /* inclusive, as RFC 8460's example */
	for (size_t i = 0; i < d->policy_count; i++)
		json_array_append_new(pols, report_policy(d, &d->policies[i]));
	json_t *r = json_object();
	json_object_set_new(r, "organization-name", json_string(m->organization_name));
	json_object_set_new(r, "date-range", json_pack("{s:s, s:s}", "start-datetime", start, "end-datetime", end));
	json_object_set_new(r, "contact-info", json_string(m->contact_info));
	json_object_set_new(r, "report-id", json_string(m->report_id));
	json_object_set_new(r, "policies", pols);
	char *text = json_dumps(r, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(r);
	if (text == NULL)
		abort();                   /* jansson fails only out of memory */
	return text;
}

int tlsrpt_gzip(const char *data, size_t len, struct buf *out)
{
	z_stream z;
	int rc;

	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -EIO;
	z.next_in = (Bytef *)(uintptr_t)data;
	z.avail_in = (uInt)len;
	do {
		if (buf_reserve(out, 16384) < 0) {
			deflateEnd(&z);
			return -ENOBUFS;
		}
		z.next_out = (Bytef *)buf_tail(out);
		z.avail_out = 16384;
		rc = deflate(&z, Z_FINISH);
		buf_produce(out, 16384 - z.avail_out);
	} while (rc == Z_OK || (rc == Z_BUF_ERROR && z.avail_out == 0));
	deflateEnd(&z);
	return rc == Z_STREAM_END ? 0 : -EIO;
}

void tlsrpt_report_filename(const struct tlsrpt_mail *m, char *out, size_t size)
{
	char id[80];
	size_t n = 0;

	/* The unique part: the report id's safe characters. */
	for (const char *p = m->report_id; *p != '\0' && n + 1 < sizeof(id); p++)
		if (name_char(*p, false))
			id[n++] = *p;
	id[n] = '\0';
	snprintf(out, size, "%s!%s!%" PRId64 "!%" PRId64 "!%s.json.gz", m->submitter, m->policy_domain, m->start_s,
		 m->end_s - 1, id);
}

/* base64_lines - data in base64, 76 columns, CRLF after each line. */
static int base64_lines(const char *data, size_t len, struct buf *out)
{
	for (size_t off = 0; off < len; off += 57) {
		unsigned char line[80];
		size_t n = len - off < 57 ? len - off : 57, olen = 0;
		if (mbedtls_base64_encode(line, sizeof(line), &olen, (const unsigned char *)data + off, n) != 0)
			return -EIO;
		if (buf_append(out, line, olen) < 0 || buf_append(out, "\r\n", 2) < 0)
			return -ENOBUFS;
	}
	return 0;
}

int tlsrpt_mail_build(const struct tlsrpt_mail *m, struct buf *out)
{
	char date[64], start[32], end[32], filename[600];
	time_t now = (time_t)m->now_s;
	struct tm tm;
	char boundary[64];

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	tlsrpt_datetime(m->start_s, start, sizeof(start));
	tlsrpt_datetime(m->end_s - 1, end, sizeof(end));
	snprintf(boundary, sizeof(boundary), "=_tlsrpt_%" PRId64 "_%016" PRIx64, m->start_s, name_hash(m->report_id));
	tlsrpt_report_filename(m, filename, sizeof(filename));
	if (buf_append_printf(out,
			      "From: <%s>\r\nTo: <%s>\r\n"
			      "Subject: Report Domain: %s Submitter: %s Report-ID: <%s>\r\n"
			      "Date: %s\r\nMessage-ID: %s\r\n"
			      "TLS-Report-Domain: %s\r\nTLS-Report-Submitter: %s\r\n"
			      "Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
			      "Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\"%s\"\r\n\r\n"
			      "This is a MIME-formatted message.\r\n\r\n--%s\r\n"
			      "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
			      "This is an aggregate TLS report (RFC 8460) from %s\r\n"
			      "for %s, %s to %s.\r\n\r\n--%s\r\n"
			      "Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n"
			      "Content-Disposition: attachment;\r\n\tfilename=\"%s\"\r\n\r\n",
			      m->from, m->to, m->policy_domain, m->submitter, m->report_id, date, m->message_id,
			      m->policy_domain, m->submitter, boundary, boundary, m->organization_name,
			      m->policy_domain, start, end, boundary, filename) < 0)
		return -ENOBUFS;
	int rc = base64_lines(m->gzip, m->gzip_len, out);
	if (rc < 0)
		return rc;
	return buf_append_printf(out, "\r\n--%s--\r\n", boundary) < 0 ? -ENOBUFS : 0;
}
