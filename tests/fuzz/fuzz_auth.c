/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Fuzz harness for the AUTH exchange's decoding (src/smtp/smtp_auth.c):
 * what decodes, encoded again, decodes to the same bytes; a PLAIN
 * response decodes to a user and password without NUL that, encoded
 * again as "\0user\0password", decode to the same; LOGIN's base64 of any
 * NUL-free bytes decodes back to them.  Any disagreement aborts.
 */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"
#include "smtp/smtp_auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

static char *b64(const unsigned char *p, size_t n)
{
	char *out = xmalloc(4 * ((n + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	/* The input as a response line, as the session hands it over. */
	char *line = xmalloc(size + 1);
	memcpy(line, data, size);
	line[size] = '\0';

	size_t len;
	char *text = smtp_auth_b64_decode(line, &len);
	if (text != NULL) {
		CHECK(text[len] == '\0');
		/* Encoded again (canonically), it decodes to the same bytes. */
		char *back = b64((const unsigned char *)text, len);
		size_t len2;
		char *again = smtp_auth_b64_decode(back, &len2);
		CHECK(again != NULL && len2 == len && memcmp(again, text, len) == 0);
		free(again);
		free(back);
		free(text);
	}

	char *user, *password;
	if (smtp_auth_plain_decode(line, &user, &password) == 0) {
		size_t ul = strlen(user), pl = strlen(password);
		unsigned char *raw = xmalloc(ul + pl + 2);
		raw[0] = '\0';
		memcpy(raw + 1, user, ul);
		raw[1 + ul] = '\0';
		memcpy(raw + 2 + ul, password, pl);
		char *again = b64(raw, ul + pl + 2);
		char *u2, *p2;
		CHECK(smtp_auth_plain_decode(again, &u2, &p2) == 0);
		CHECK(strcmp(u2, user) == 0 && strcmp(p2, password) == 0);
		free(u2);
		free(p2);
		free(again);
		free(raw);
		free(user);
		free(password);
	}

	/* The raw input, NUL bytes cut out, as a LOGIN answer. */
	unsigned char *clean = xmalloc(size + 1);
	size_t n = 0;
	for (size_t i = 0; i < size; i++)
		if (data[i] != 0)
			clean[n++] = data[i];
	char *enc = b64(clean, n);
	text = smtp_auth_b64_decode(enc, &len);
	CHECK(text != NULL && len == n && memcmp(text, clean, n) == 0);
	free(text);
	free(enc);
	free(clean);
	free(line);
	return 0;
}
