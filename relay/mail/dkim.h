/*
 * dkim - the pure part of DKIM signing (RFC 6376, RFC 8301, RFC 8463):
 * relaxed canonicalization, header selection, the From domain, and the
 * DKIM-Signature field built around a signer callback. No keys and no
 * I/O here: the caller brings a function that signs a SHA-256 digest.
 *
 *   struct dkim_header h;
 *   dkim_header_parse(msg, len, &h);          the header block's fields
 *   char domain[DKIM_DOMAIN_MAX + 1];
 *   if (dkim_from_domain(&h, domain, sizeof(domain)) == 0) {
 *       uint8_t bh[DKIM_HASH_LEN];
 *       dkim_body_hash(msg + h.body_offset, len - h.body_offset, bh);
 *       struct dkim_sign_params p = { "example.com", "s1", DKIM_RSA_SHA256,
 *                                     now, 0, sign_fn, key };
 *       struct buf out;  buf_init(&out, 64 * 1024);
 *       dkim_sign(&h, names, name_count, bh, &p, &out);  appends the field
 *   }
 *   dkim_header_free(&h);
 *
 * Ownership: a dkim_header points into the message (which must outlive
 * it) and owns only its array of fields. Everything runs on any thread:
 * no global state.
 */
#ifndef RINGMAIL_DKIM_H
#define RINGMAIL_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define DKIM_HASH_LEN 32              /* SHA-256 */
#define DKIM_SIGNATURE_MAX 1024       /* an RSA-8192 signature; Ed25519 is 64 */
#define DKIM_DOMAIN_MAX 253
#define DKIM_SELECTOR_MAX 63

enum dkim_algorithm {
	DKIM_RSA_SHA256,                  /* a=rsa-sha256 (RFC 8301) */
	DKIM_ED25519_SHA256,              /* a=ed25519-sha256 (RFC 8463) */
	DKIM_ALGORITHM_COUNT
};

/* dkim_algorithm_name - "rsa-sha256" or "ed25519-sha256" (the a= value). */
const char *dkim_algorithm_name(enum dkim_algorithm alg);

/* dkim_sink_fn - where canonicalized bytes go (a hash, a buffer). */
typedef void dkim_sink_fn(void *ctx, const char *p, size_t n);

/* A streaming relaxed body canonicalizer (RFC 6376 3.4.4): whitespace
 * runs become one SP, whitespace at the end of a line goes, empty lines
 * at the end go, and a non-empty body ends with exactly one CRLF (an
 * empty one stays empty). Fed in any cuts, it emits the same bytes. */
struct dkim_body_canon {
	dkim_sink_fn *out;
	void *ctx;
	size_t pending_lines;             /* CRLFs held back: maybe trailing */
	bool pending_space;               /* whitespace seen since the last text */
	bool pending_cr;                  /* a CR that may start a CRLF */
	bool emitted;                     /* some text went out */
};

void dkim_body_canon_init(struct dkim_body_canon *c, dkim_sink_fn *out, void *ctx);
void dkim_body_canon_feed(struct dkim_body_canon *c, const char *p, size_t n);
/* dkim_body_canon_finish - flush the end of the body; c is done. */
void dkim_body_canon_finish(struct dkim_body_canon *c);

/* dkim_header_canon - append the relaxed form (RFC 6376 3.4.2) of one
 * header field ("Name: value", folded lines and its final CRLF or not):
 * "name:value\r\n". 0 or -ENOBUFS (out's cap). */
int dkim_header_canon(struct buf *out, const char *field, size_t len);

/* One field of the header block, pointing into the message. */
struct dkim_field {
	const char *field;                /* "Name: value\r\n\t more\r\n" */
	size_t len;                       /* all of it, final line end included */
	size_t name_len;                  /* octets of the name; 0: no colon */
};

struct dkim_header {
	struct dkim_field *fields;        /* owned */
	size_t count;
	size_t body_offset;               /* first body octet (after the empty line) */
};

/* dkim_header_parse - split the header block of msg into its fields. A
 * line without a colon is kept as a field with name_len 0 (never
 * selected). Without an empty line the whole message is header. */
void dkim_header_parse(const char *msg, size_t len, struct dkim_header *h);

/* dkim_header_free - frees the field array; h may be reused. */
void dkim_header_free(struct dkim_header *h);

/* dkim_field_is - is the field's name (any case) name? */
bool dkim_field_is(const struct dkim_field *f, const char *name);

/* dkim_select - RFC 6376 5.4.2: for each name of names (lower case, in
 * order), every instance present, from the bottom up; "from" once more
 * than it is present (over-signing: a From added later breaks the
 * signature). Appends the h= value to h_tag, writes the chosen fields to
 * picked (room for h->count) and returns how many; instances that do not
 * fit in h_tag's cap are left out of both. */
size_t dkim_select(const struct dkim_header *h, const char *const *names, size_t name_count,
		   struct buf *h_tag, const struct dkim_field **picked);

/* dkim_from_domain - the domain of the From field's address (angle-addr
 * or bare addr-spec; comments and quoted strings skipped), lower case.
 * 0; -ENOENT (no From), -EINVAL (more than one From, no address, or a
 * domain that is not a plausible name), -ENAMETOOLONG (size). */
int dkim_from_domain(const struct dkim_header *h, char *out, size_t size);

/* dkim_domain_aligned - is signing domain d the From domain or a parent
 * of it (DMARC relaxed alignment)? Both lower case. */
bool dkim_domain_aligned(const char *from_domain, const char *d);

/* dkim_body_hash - SHA-256 of the relaxed body (the bh= value). */
void dkim_body_hash(const char *body, size_t len, uint8_t out[DKIM_HASH_LEN]);

/* dkim_sign_fn - sign a SHA-256 digest: write the signature into sig
 * (DKIM_SIGNATURE_MAX octets of room) and its length into *sig_len.
 * 0 or a negative error. Called once per signature, on the caller's thread. */
typedef int dkim_sign_fn(void *ctx, const uint8_t digest[DKIM_HASH_LEN],
			 uint8_t *sig, size_t *sig_len);

struct dkim_sign_params {
	const char *domain;               /* d=, lower case */
	const char *selector;             /* s= */
	enum dkim_algorithm algorithm;
	int64_t timestamp;                /* t=, seconds since the epoch */
	int64_t expire;                   /* x= = t + expire; 0: no x= */
	dkim_sign_fn *sign;
	void *sign_ctx;
};

/* dkim_sign - append one folded "DKIM-Signature: ...\r\n" field for the
 * message whose header is h and body hash bh. 0, -ENOBUFS (out's cap) or
 * the signer's error (out unchanged then). */
int dkim_sign(const struct dkim_header *h, const char *const *names, size_t name_count,
	      const uint8_t bh[DKIM_HASH_LEN], const struct dkim_sign_params *p, struct buf *out);

#endif
