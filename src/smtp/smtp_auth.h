/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * SMTP AUTH (RFC 4954) for one listener: checking a user name and password
 * against the listener's backend, off the loop's critical path.
 *
 *  - HTTP (authUrl, ZoneMTA's http-auth): GET with the credentials as HTTP
 *    Basic; 2xx accepts (a JSON body's "user" names the user to record),
 *    401 and 403 refuse, anything else or no answer is a temporary failure.
 *  - A users file (authUsersFile): crypt(3) hashes, checked on the CPU pool.
 *
 * Answers are cached for authCacheTTL under a SHA-256 of the listener, user
 * and password (never the password itself).  Failures are counted per
 * client address: authMaxFailures within authFailureWindow blocks it for
 * the rest of the window.  The SASL dialogue itself is the session's.
 */
#ifndef ZMTA_SMTP_AUTH_H
#define ZMTA_SMTP_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "core/config.h"
#include "core/workpool.h"
#include "net/http_client.h"

enum smtp_auth_result {
	SMTP_AUTH_OK,
	SMTP_AUTH_FAILED,   /* wrong user or password: 535 */
	SMTP_AUTH_TEMPFAIL, /* the backend could not say: 454 */
};

/* `user` is the name to record (the backend's, else the one given). */
typedef void (*smtp_auth_done_fn)(void *arg, enum smtp_auth_result result, const char *user,
				  bool cached);

struct smtp_auth;

/* NULL and *err when the users file cannot be loaded. */
struct smtp_auth *smtp_auth_new(const struct smtp_iface_config *iface, struct http_client *http,
				struct workpool *cpu, char **err);
void smtp_auth_free(struct smtp_auth *a);
/* Reads the users file again (SIGHUP); on error the old one stays. */
int smtp_auth_reload(struct smtp_auth *a, char **err);

/* Starts a check; `done` runs once, later, from the loop.  Returns an id
 * for smtp_auth_cancel(). */
uint64_t smtp_auth_check(struct smtp_auth *a, const char *user, const char *password,
			 const char *method, const char *client, smtp_auth_done_fn done, void *arg);
void smtp_auth_cancel(struct smtp_auth *a, uint64_t id);

/* Counts a failure of `client`; true when it is now blocked. */
bool smtp_auth_failed(struct smtp_auth *a, const char *client);
/* Whether `client` has failed too often lately. */
bool smtp_auth_blocked(struct smtp_auth *a, const char *client);

/* SASL PLAIN's message (RFC 4616), base64: authzid NUL user NUL password.
 * Returns 0 and the user and password (caller frees), or -1. */
int smtp_auth_plain_decode(const char *b64, char **user, char **password);
/* Strict base64 to its *len bytes (NULs possible) and a terminating NUL;
 * NULL if it is not base64. */
char *smtp_auth_b64_decode(const char *b64, size_t *len);

#endif
