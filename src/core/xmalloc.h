/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Allocation helpers that never return NULL: running out of memory is not a
 * condition a relay can handle gracefully mid-flight, so they abort with a
 * message instead (as Postfix's mymalloc and OpenSMTPD's xmalloc do).
 * fatal() is for broken invariants only, never for bad input.
 */
#ifndef ZMTA_XMALLOC_H
#define ZMTA_XMALLOC_H

#include <stdarg.h>
#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
/* Grows an array to hold at least `need` elements of `size`; updates *cap. */
void *xreallocarray_grow(void *ptr, size_t *cap, size_t need, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* A copy of s, or NULL for NULL. */
char *xstrdup_or_null(const char *s);
/* Returns a newly allocated formatted string; the caller frees it. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Overwrites a password or other secret string, then frees it; NULL is
 * ignored. */
void free_secret(char *s);

/* Logs at error level (and to stderr) and aborts. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
