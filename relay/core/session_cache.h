/*
 * session_cache - a small bounded map from a string key to an owned value
 * with an expiry, for one thread (no locks): the outbound TLS sessions a
 * delivery worker may resume, keyed by MX host, port and TLS policy.
 *
 *   c = session_cache_new(256, 3600000, free_value);
 *   session_cache_put(c, "mx.example.com|25|may", value, now_ms);  // owns it
 *   v = session_cache_get(c, "mx.example.com|25|may", now_ms);      // or NULL
 *   session_cache_remove(c, key);
 *   c = session_cache_free(c);
 *
 * Bounded: at most `cap` entries; a put into a full cache drops an expired
 * entry if there is one, else the least recently used. An entry expires
 * `lifetime_ms` after it was put (a get does not extend it). Values are
 * freed with the free function when replaced, dropped, expired or at free.
 * Lookups are linear: cap is meant to be hundreds to a few thousand, and a
 * lookup precedes a TLS handshake that costs milliseconds.
 */
#ifndef RINGMAIL_SESSION_CACHE_H
#define RINGMAIL_SESSION_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct session_cache;

/* session_cache_new - cap >= 1 entries, each kept lifetime_ms at most. */
struct session_cache *session_cache_new(size_t cap, int64_t lifetime_ms,
					void (*free_value)(void *));
struct session_cache *session_cache_free(struct session_cache *c);

/* session_cache_get - the live value for key (the cache keeps it), or NULL;
 * an expired entry found on the way is dropped. */
void *session_cache_get(struct session_cache *c, const char *key, int64_t now_ms);

/* session_cache_put - store value under key (replacing and freeing an older
 * one); the cache owns value from now on. */
void session_cache_put(struct session_cache *c, const char *key, void *value, int64_t now_ms);

/* session_cache_remove - drop key's entry, if any. */
void session_cache_remove(struct session_cache *c, const char *key);

size_t session_cache_len(const struct session_cache *c);
size_t session_cache_cap(const struct session_cache *c);
int64_t session_cache_lifetime(const struct session_cache *c);

#endif
