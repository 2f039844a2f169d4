/*
 * xalloc - allocation for which out of memory is fatal, and container_of.
 *
 *   struct conn *c = xcalloc(1, sizeof(*c));     // never NULL
 *   v = xreallocarray(v, cap, sizeof(*v));        // old v is gone, new one owned
 *   s->name = xstrdup(name);
 *
 * House rule (STYLE.md, rule 3): out of memory is fatal, so these never
 * return NULL; they call log_fatal("out of memory") instead. Code that must
 * survive a failed allocation (e.g. returns -ENOMEM on purpose) keeps
 * calling malloc and friends directly.
 *
 * A size of zero is treated as one byte, so a NULL from the C library
 * always means out of memory (calloc(0) and realloc(p, 0) may return NULL;
 * the latter even frees p). The caller owns what is returned and frees it
 * with free().
 */
#ifndef RINGMAIL_XALLOC_H
#define RINGMAIL_XALLOC_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* container_of - the struct of type that holds ptr as its member. */
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

/* xmalloc - malloc that never returns NULL. */
static inline void *xmalloc(size_t n)
{
	void *p = malloc(n != 0 ? n : 1);

	if (p == NULL)
		log_fatal("out of memory");
	return p;
}

/* xcalloc - calloc that never returns NULL (overflow of n * size is
 * refused by calloc, and so fatal too). */
static inline void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n != 0 ? n : 1, size != 0 ? size : 1);

	if (p == NULL)
		log_fatal("out of memory");
	return p;
}

/* xrealloc - realloc that never returns NULL nor frees p. */
static inline void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n != 0 ? n : 1);

	if (q == NULL)
		log_fatal("out of memory");
	return q;
}

/* xreallocarray - xrealloc of n elements of size, refusing (fatally) a
 * product that overflows, as a growing array's doubling eventually would. */
static inline void *xreallocarray(void *p, size_t n, size_t size)
{
	if (size != 0 && n > (size_t)-1 / size)
		log_fatal("out of memory");
	return xrealloc(p, n * size);
}

/* xstrdup - strdup that never returns NULL. */
static inline char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		log_fatal("out of memory");
	return p;
}

/* xstrndup - strndup that never returns NULL. */
static inline char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);

	if (p == NULL)
		log_fatal("out of memory");
	return p;
}

#endif
