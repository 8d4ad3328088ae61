/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * UTF-8 checks.  JSON (metadata, API answers) must be valid UTF-8, while
 * mail carries whatever bytes a client sent; these turn one into the other.
 */
#ifndef ZMTA_UTF8_H
#define ZMTA_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..len) is well-formed UTF-8 (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF) without NUL bytes. */
bool utf8_valid(const char *s, size_t len);

/* True when a byte of s[0..len) is over 127 (not ASCII); eight at a time. */
bool utf8_has_8bit(const char *s, size_t len);

/* A malloc'ed, NUL-terminated copy of s[0..len) in which each ill-formed
 * byte is replaced by U+FFFD, and NUL bytes too. */
char *utf8_sanitize(const char *s, size_t len);

#endif
