/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * DKIM keys that arrive at run time (from the HTTP config server), held in
 * memory only: a message's metadata names such a key by the SHA-256 of its
 * PEM text, never by the key itself, so no private key is written to the
 * queue in clear.  After a restart the keyring is empty, and delivery asks
 * the key's source again (keyring_fetch).  Loop thread only.
 */
#ifndef ZMTA_KEYRING_H
#define ZMTA_KEYRING_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct dkim_key;

/* The hex SHA-256 of a key's PEM: 64 characters and a NUL. */
#define KEYRING_HASH_LEN 65

/* Loads `pem` (if not held already) and writes its hash.  0, or -1 and
 * *err (malloc'ed: why the key does not load). */
int keyring_add(const char *pem, char hash[KEYRING_HASH_LEN], char **err);
/* The key with this hash, or NULL when not (or no longer) held. */
const struct dkim_key *keyring_get(const char *hash);

/*
 * Where keys come from again after a restart: `fetch` asks the source for
 * the keys of the message whose metadata is `meta` (adding them with
 * keyring_add) and calls done(done_arg, ok) once, later; ok false when the
 * source could not answer.  Returns an id for `cancel`.
 */
typedef void (*keyring_done_fn)(void *done_arg, bool ok);
struct keyring_source {
	uint64_t (*fetch)(void *arg, json_t *meta, keyring_done_fn done, void *done_arg);
	void (*cancel)(void *arg, uint64_t id);
	void *arg;
};
void keyring_set_source(const struct keyring_source *src);
/* 0 (done has been called: no source) or an id for keyring_cancel. */
uint64_t keyring_fetch(json_t *meta, keyring_done_fn done, void *done_arg);
void keyring_cancel(uint64_t id);

/* Frees every key (at exit). */
void keyring_clear(void);

#endif
