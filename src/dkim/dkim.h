/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * DKIM (RFC 6376, RFC 8463 for ed25519): the body hash computed while a
 * message streams in, and signatures made at delivery from the stored hash
 * and the final header block, so signing does not re-read the body (unless
 * the message was queued before a key needed its hash: queue_message_load).
 *
 * Thread-safety: a struct dkim_body is used by one thread at a time;
 * dkim_sign() touches only its arguments, so crypto worker threads may run
 * it concurrently with the same key.
 */
#ifndef ZMTA_DKIM_H
#define ZMTA_DKIM_H

#include <stdbool.h>
#include <stddef.h>

enum dkim_canon {
	DKIM_CANON_SIMPLE,
	DKIM_CANON_RELAXED,
};

enum dkim_algorithm {
	DKIM_RSA_SHA256,
	DKIM_ED25519_SHA256,
};

/* --- body hash, streamed --- */

struct dkim_body;

/* Starts a sha256 body hash with the given canonicalization (RFC 6376 3.4.3/3.4.4). */
struct dkim_body *dkim_body_new(enum dkim_canon canon);
/*
 * Feeds body bytes, in any pieces.  The body is everything after the empty
 * line that ends the header block (that empty line excluded).  Lines end in
 * CRLF; a bare LF is treated as CRLF (RFC 6376 5.3: convert before signing).
 */
void dkim_body_update(struct dkim_body *b, const char *data, size_t len);
/*
 * The bytes fed from now on begin with the empty line that ends the header
 * block (CRLF or LF), as a body stored by the queue does: it is left out.
 */
void dkim_body_skip_separator(struct dkim_body *b);
/* Finishes: writes the base64 body hash (44 chars + NUL) into out. */
void dkim_body_final(struct dkim_body *b, char out[45]);
void dkim_body_free(struct dkim_body *b);

/* --- keys --- */

struct dkim_key;

/*
 * Loads a PEM private key (RSA 1024-4096 bits, or Ed25519) from memory.
 * NULL and *err (malloc'ed, says what is wrong: unreadable PEM, wrong type,
 * RSA size out of range) on failure.  `alg` gets the key's algorithm.
 */
struct dkim_key *dkim_key_load(const char *pem, size_t len, enum dkim_algorithm *alg, char **err);
void dkim_key_free(struct dkim_key *k);

/* --- signing --- */

struct dkim_sign_params {
	const char *domain;   /* d= */
	const char *selector; /* s= */
	enum dkim_canon header_canon;
	enum dkim_canon body_canon;
	const char *body_hash; /* bh=, from dkim_body_final with body_canon */
	/* Header field names to sign (lower case), in the order to sign; each
	 * name present in the message is signed once per occurrence, bottom
	 * up (RFC 6376 5.4.2); names in `oversign` are listed once more so
	 * that no further field of that name can be added. */
	const char *const *sign_headers;
	size_t n_sign_headers;
	const char *const *oversign;
	size_t n_oversign;
	long timestamp; /* t=, 0: leave out */
};

/*
 * Signs a header block (raw fields, each ending in CRLF, as stored: no
 * empty line).  Returns the complete DKIM-Signature field, folded, ending
 * in CRLF, ready to be put on top of the header block (malloc'ed), or NULL
 * and *err.
 */
char *dkim_sign(const struct dkim_key *key, const struct dkim_sign_params *p,
		const char *header_block, size_t header_len, char **err);

/*
 * A new key and the DNS TXT record for it: `type` "rsa" (bits 1024-4096)
 * or "ed25519".  Writes the private key PEM into *pem and the record text
 * ("v=DKIM1; k=rsa; p=...") into *txt (both malloc'ed).  0 or -1 and *err.
 */
int dkim_keygen(const char *type, int bits, char **pem, char **txt, char **err);

#endif
