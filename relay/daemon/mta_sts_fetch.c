/*
 * mta_sts_fetch - the HTTPS policy fetch; see mta_sts_fetch.h.
 */
#include "mta_sts_fetch.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "mta_sts.h"

struct sink {
	char *body;
	size_t len, limit;
	bool too_big;
};

/* sink_write - libcurl's write callback: keep at most limit bytes; a
 * short return makes libcurl abort the transfer. */
static size_t sink_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct sink *s = arg;
	size_t n = size * nmemb;
	if (n > s->limit - s->len) {
		s->too_big = true;
		return 0;
	}
	memcpy(s->body + s->len, data, n);
	s->len += n;
	return n;
}

int mta_sts_fetch_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

/* content_type_ok - "text/plain", any parameters ignored (RFC 8461 3.2). */
static bool content_type_ok(const char *ct)
{
	if (ct == NULL)
		return false;
	size_t n = strlen("text/plain");
	return strncasecmp(ct, "text/plain", n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* fetch_setup - the options that make this an RFC 8461 fetch. */
static void fetch_setup(CURL *c, const struct mta_sts_fetch_opts *o, const char *url, struct sink *s,
			char *curl_err, struct curl_slist *connect_to, struct curl_slist *resolve)
{
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (o->ca_file != NULL)
		curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);            /* threads: no SIGALRM */
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, o->timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, o->timeout_ms);
	curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)s->limit);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "ringmail MTA-STS");
	if (connect_to != NULL)
		curl_easy_setopt(c, CURLOPT_CONNECT_TO, connect_to);
	if (resolve != NULL)
		curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
}

/* slist - a NULL-terminated array as libcurl's list (NULL when empty). */
static struct curl_slist *slist(const char *const *items)
{
	struct curl_slist *l = NULL;
	for (const char *const *e = items; e != NULL && *e != NULL; e++)
		l = curl_slist_append(l, *e);
	return l;
}

int mta_sts_fetch(const struct mta_sts_fetch_opts *o, const char *domain, char *body, size_t cap,
		  size_t *len, char *err, size_t errlen)
{
	*len = 0;
	size_t dlen = strlen(domain);
	if (!mta_sts_domain_valid(domain, dlen) || domain[dlen - 1] == '.') {
		snprintf(err, errlen, "not a domain name");
		return -EINVAL;
	}
	char url[MTA_STS_NAME_MAX + 64];
	snprintf(url, sizeof(url), "https://mta-sts.%s/.well-known/mta-sts.txt", domain);

	struct sink s = {.body = body, .limit = o->max_bytes < cap ? o->max_bytes : cap};
	struct curl_slist *connect_to = slist(o->connect_to), *resolve = slist(o->resolve);
	char curl_err[CURL_ERROR_SIZE] = "";
	CURL *c = curl_easy_init();
	if (c == NULL) {
		curl_slist_free_all(connect_to);
		curl_slist_free_all(resolve);
		snprintf(err, errlen, "curl_easy_init failed");
		return -EIO;
	}
	fetch_setup(c, o, url, &s, curl_err, connect_to, resolve);
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	char *ct = NULL;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
	int ret = 0;
	if (s.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
		snprintf(err, errlen, "%s: body larger than %zu bytes", url, s.limit);
		ret = -EMSGSIZE;
	} else if (rc != CURLE_OK) {
		snprintf(err, errlen, "%s: %s", url, curl_err[0] != '\0' ? curl_err : curl_easy_strerror(rc));
		ret = -EIO;
	} else if (status != 200) {
		snprintf(err, errlen, "%s: HTTP status %ld", url, status);
		ret = -ENOENT;
	} else if (!content_type_ok(ct)) {
		snprintf(err, errlen, "%s: Content-Type %s, not text/plain", url, ct != NULL ? ct : "missing");
		ret = -EPROTO;
	} else {
		*len = s.len;
	}
	curl_easy_cleanup(c);
	curl_slist_free_all(connect_to);
	curl_slist_free_all(resolve);
	return ret;
}
