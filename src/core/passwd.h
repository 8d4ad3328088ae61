/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * A static users file for SMTP AUTH: one "user:hash" per line, the hash
 * from crypt(3) (yescrypt, bcrypt, sha512-crypt... whatever libxcrypt
 * knows: `mkpasswd -m yescrypt`), blank lines and '#' comments ignored.
 */
#ifndef ZMTA_PASSWD_H
#define ZMTA_PASSWD_H

#include <stdbool.h>

struct passwd_file;

/* Loads the file; NULL and *err ("FILE:LINE: why") when it cannot be read
 * or a line is no "user:hash" with a hash libxcrypt can check. */
struct passwd_file *passwd_file_load(const char *path, char **err);
void passwd_file_free(struct passwd_file *p);
/* The user's hash, or NULL. */
const char *passwd_file_hash(const struct passwd_file *p, const char *user);
/* Some user's hash (NULL when there is none): checking an unknown user
 * against it costs what checking a known one does. */
const char *passwd_file_any_hash(const struct passwd_file *p);
/* Whether `password` matches `hash`: crypt(3), slow by design (tens of
 * milliseconds for yescrypt), so never on the event loop. */
bool passwd_verify(const char *hash, const char *password);

#endif
