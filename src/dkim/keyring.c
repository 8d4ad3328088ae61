/* SPDX-License-Identifier: EUPL-1.2 */
/* Run-time DKIM keys by the hash of their PEM; see keyring.h. */
#include "dkim/keyring.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hmap.h"
#include "dkim/dkim.h"

static struct strmap *keys; /* hash → struct dkim_key */
static struct keyring_source source;

static void hash_of(const char *pem, char out[KEYRING_HASH_LEN])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_Digest(pem, strlen(pem), md, &n, EVP_sha256(), NULL);
	for (unsigned i = 0; i < n && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int keyring_add(const char *pem, char hash[KEYRING_HASH_LEN], char **err)
{
	hash_of(pem, hash);
	if (keys == NULL)
		keys = strmap_new();
	if (strmap_get(keys, hash) != NULL)
		return 0;
	enum dkim_algorithm alg;
	struct dkim_key *k = dkim_key_load(pem, strlen(pem), &alg, err);
	if (k == NULL)
		return -1;
	strmap_put(keys, hash, k);
	return 0;
}

const struct dkim_key *keyring_get(const char *hash)
{
	return keys != NULL ? strmap_get(keys, hash) : NULL;
}

void keyring_set_source(const struct keyring_source *src)
{
	if (src != NULL)
		source = *src;
	else
		memset(&source, 0, sizeof(source));
}

uint64_t keyring_fetch(json_t *meta, keyring_done_fn done, void *done_arg)
{
	if (source.fetch == NULL) {
		done(done_arg, false);
		return 0;
	}
	return source.fetch(source.arg, meta, done, done_arg);
}

void keyring_cancel(uint64_t id)
{
	if (id != 0 && source.cancel != NULL)
		source.cancel(source.arg, id);
}

void keyring_clear(void)
{
	if (keys == NULL)
		return;
	size_t pos = 0;
	const char *k;
	void *v;
	while (strmap_next(keys, &pos, &k, &v))
		dkim_key_free(v);
	strmap_free(keys);
	keys = NULL;
}
