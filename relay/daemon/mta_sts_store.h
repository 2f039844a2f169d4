/*
 * mta_sts_store - the durable MTA-STS policy cache: one file per domain in
 * a directory (the daemon's is SPOOL/mta-sts), in mta_sts.h's cache format.
 * Blocking file I/O: call it on a helper thread or at start, never on a
 * worker's loop.
 *
 *   mta_sts_store_save(dir, "example.com", id, fetched_s, policy_text, len);
 *   struct mta_sts_cached c;
 *   if (mta_sts_store_load(dir, "example.com", &c, &why) == 0 && mta_sts_cache_valid(&c, now_s)) ...
 *
 * A save writes DOMAIN.tmp, fdatasyncs it, renames it over DOMAIN and
 * fsyncs the directory, so a crash leaves the old policy or the new one,
 * never half of one: a cached policy is what protects a domain while its
 * DNS or web server is under attack. Domains are checked (mta_sts.h's
 * mta_sts_domain_valid, lower case, no trailing dot) before they become
 * file names. Errors: -errno; load also -EINVAL (why set) for a file that
 * does not parse, -ENOENT when there is none.
 */
#ifndef RINGMAIL_MTA_STS_STORE_H
#define RINGMAIL_MTA_STS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "mta_sts.h"

int mta_sts_store_save(const char *dir, const char *domain, const char *id, int64_t fetched_s,
		       const char *policy, size_t len);

int mta_sts_store_load(const char *dir, const char *domain, struct mta_sts_cached *out, const char **why);

/* mta_sts_store_remove - forget domain's policy (0 or -errno; none is 0). */
int mta_sts_store_remove(const char *dir, const char *domain);

#endif
