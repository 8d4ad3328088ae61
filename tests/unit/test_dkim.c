/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: DKIM body hashes, header canonicalization, signing, keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "core/xmalloc.h"
#include "dkim/dkim.h"

/* --- helpers: an independent reading of the RFC, to check the module --- */

struct buf {
	char *s;
	size_t len, cap;
};

static void buf_add(struct buf *b, const char *p, size_t n)
{
	b->s = xreallocarray_grow(b->s, &b->cap, b->len + n + 1, 1);
	memcpy(b->s + b->len, p, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static char *b64enc(const unsigned char *p, size_t n)
{
	char *out = xmalloc(4 * ((n + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

/* Decodes base64, skipping white space (folding); returns the length. */
static size_t b64dec(const char *s, unsigned char *out, size_t cap)
{
	struct buf clean = {0};
	for (; *s; s++) {
		if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
			buf_add(&clean, s, 1);
	}
	assert_true(clean.len % 4 == 0);
	unsigned char *tmp = xmalloc(clean.len / 4 * 3 + 1);
	int n = EVP_DecodeBlock(tmp, (const unsigned char *)clean.s, (int)clean.len);
	assert_true(n >= 0);
	if (clean.len > 0 && clean.s[clean.len - 1] == '=')
		n--;
	if (clean.len > 1 && clean.s[clean.len - 2] == '=')
		n--;
	assert_true((size_t)n <= cap);
	memcpy(out, tmp, (size_t)n);
	free(tmp);
	free(clean.s);
	return (size_t)n;
}

static void sha256(const void *p, size_t n, unsigned char md[32])
{
	unsigned int len = 0;
	assert_int_equal(EVP_Digest(p, n, md, &len, EVP_sha256(), NULL), 1);
	assert_int_equal(len, 32);
}

static void sha256_b64(const void *p, size_t n, char out[45])
{
	unsigned char md[32];
	sha256(p, n, md);
	EVP_EncodeBlock((unsigned char *)out, md, 32);
}

/* Relaxed header canonicalization, written from RFC 6376 3.4.2 step by step. */
static void ref_relaxed(struct buf *out, const char *raw, size_t len, bool crlf)
{
	const char *colon = memchr(raw, ':', len);
	assert_non_null(colon);
	size_t nlen = (size_t)(colon - raw);
	while (nlen > 0 && (raw[nlen - 1] == ' ' || raw[nlen - 1] == '\t'))
		nlen--;
	for (size_t i = 0; i < nlen; i++) {
		char c = raw[i] >= 'A' && raw[i] <= 'Z' ? (char)(raw[i] + 32) : raw[i];
		buf_add(out, &c, 1);
	}
	buf_add(out, ":", 1);
	/* Unfold: remove every CRLF. */
	struct buf v = {0};
	const char *p = colon + 1, *end = raw + len;
	while (p < end) {
		if (p + 1 < end && p[0] == '\r' && p[1] == '\n')
			p += 2;
		else
			buf_add(&v, p++, 1);
	}
	/* WSP runs to one SP, then strip both ends. */
	struct buf w = {0};
	for (size_t i = 0; i < v.len; i++) {
		bool ws = v.s[i] == ' ' || v.s[i] == '\t';
		if (ws && w.len > 0 && w.s[w.len - 1] == ' ')
			continue;
		buf_add(&w, ws ? " " : &v.s[i], 1);
	}
	size_t a = 0, b = w.len;
	while (a < b && w.s[a] == ' ')
		a++;
	while (b > a && w.s[b - 1] == ' ')
		b--;
	if (b > a)
		buf_add(out, w.s + a, b - a);
	if (crlf)
		buf_add(out, "\r\n", 2);
	free(v.s);
	free(w.s);
}

/* Offset just past "b=" of the b tag in a DKIM-Signature field (tag-list
 * parsing, so that a "b=" inside a base64 value is not mistaken for it). */
static size_t b_tag_offset(const char *field)
{
	const char *p = strchr(field, ':');
	assert_non_null(p);
	p++;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		const char *eq = strchr(p, '=');
		assert_non_null(eq);
		size_t n = (size_t)(eq - p);
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == 1 && p[0] == 'b')
			return (size_t)(eq + 1 - field);
		p = strchr(eq, ';');
		assert_non_null(p);
		p++;
	}
}

/* The value of tag `name`, white space removed (malloc'ed), or NULL. */
static char *tag_value(const char *field, const char *name)
{
	const char *p = strchr(field, ':') + 1;
	while (*p) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		const char *eq = strchr(p, '=');
		if (eq == NULL)
			return NULL;
		size_t n = strcspn(p, "= \t");
		const char *end = eq + 1 + strcspn(eq + 1, ";");
		if (n == strlen(name) && strncmp(p, name, n) == 0) {
			struct buf v = {0};
			for (const char *q = eq + 1; q < end; q++) {
				if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\n')
					buf_add(&v, q, 1);
			}
			if (v.s == NULL)
				return xstrdup("");
			return v.s;
		}
		p = *end ? end + 1 : end;
	}
	return NULL;
}

/* The public key of a TXT record "v=DKIM1; k=...; p=...". */
static EVP_PKEY *txt_pubkey(const char *txt)
{
	unsigned char der[1024];
	const char *p = strstr(txt, "p=");
	assert_non_null(p);
	size_t n = b64dec(p + 2, der, sizeof(der));
	if (strstr(txt, "k=ed25519")) {
		assert_int_equal(n, 32);
		return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der, n);
	}
	assert_non_null(strstr(txt, "k=rsa"));
	const unsigned char *q = der;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &q, (long)n);
	assert_non_null(k);
	assert_ptr_equal(q, der + n);
	return k;
}

/* The signed data: the canonical fields (as the test expects them), then
 * the signature field up to "b=", canonicalized, without CRLF. */
static void signed_data(struct buf *data, const char *canon_fields, enum dkim_canon hc,
			const char *field)
{
	buf_adds(data, canon_fields);
	size_t cut = b_tag_offset(field);
	if (hc == DKIM_CANON_RELAXED)
		ref_relaxed(data, field, cut, false);
	else
		buf_add(data, field, cut);
}

static bool verify(EVP_PKEY *pub, const char *canon_fields, enum dkim_canon hc, const char *field)
{
	struct buf data = {0};
	signed_data(&data, canon_fields, hc, field);
	char *b = tag_value(field, "b");
	assert_non_null(b);
	unsigned char sig[1024];
	size_t siglen = b64dec(b, sig, sizeof(sig));
	free(b);

	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok;
	if (EVP_PKEY_get_base_id(pub) == EVP_PKEY_ED25519) {
		unsigned char md[32];
		sha256(data.s, data.len, md);
		ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub) == 1 &&
		     EVP_DigestVerify(ctx, sig, siglen, md, sizeof(md)) == 1;
	} else {
		ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub) == 1 &&
		     EVP_DigestVerify(ctx, sig, siglen, (unsigned char *)data.s, data.len) == 1;
	}
	EVP_MD_CTX_free(ctx);
	free(data.s);
	ERR_clear_error();
	return ok;
}

/* Every line of the field within 78 columns (tab: 8), CRLF line ends,
 * continuation lines starting with a tab, a CRLF at the end. */
static void check_folding(const char *field)
{
	size_t len = strlen(field);
	assert_true(len > 2 && strcmp(field + len - 2, "\r\n") == 0);
	const char *line = field;
	while (*line) {
		const char *eol = strstr(line, "\r\n");
		assert_non_null(eol);
		size_t col = 0;
		for (const char *p = line; p < eol; p++) {
			assert_true(*p != '\r' && *p != '\n');
			col += *p == '\t' ? 8 : 1;
		}
		if (col > 78)
			fail_msg("line of %zu columns: %.*s", col, (int)(eol - line), line);
		line = eol + 2;
		if (*line)
			assert_int_equal(*line, '\t');
	}
}

static char *body_hash(enum dkim_canon canon, const char *data, size_t len, size_t step)
{
	struct dkim_body *b = dkim_body_new(canon);
	for (size_t i = 0; i < len; i += step)
		dkim_body_update(b, data + i, len - i < step ? len - i : step);
	char *out = xmalloc(45);
	dkim_body_final(b, out);
	dkim_body_free(b);
	return out;
}

/* --- RFC 8463 Appendix A --- */

static const char rfc_secret[] = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
static const char rfc_public[] = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
#define RFC_B                                                                                      \
	"/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw=="
static const char rfc_sig_field[] = "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
				    " d=football.example.com; i=@football.example.com;\r\n"
				    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
				    " subject : date : message-id : from : subject : date;\r\n"
				    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
				    " b=" RFC_B "\r\n";
static const char rfc_bh[] = "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=";
static const char rfc_b[] = RFC_B;
static const char *const rfc_fields[] = {
    "From: Joe SixPack <joe@football.example.com>\r\n",
    "To: Suzie Q <suzie@shopping.example.net>\r\n",
    "Subject: Is dinner ready?\r\n",
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n",
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n",
};
static const char rfc_body[] = "Hi.\r\n"
			       "\r\n"
			       "We lost the game.  Are you hungry yet?\r\n"
			       "\r\n"
			       "Joe.\r\n";

static EVP_PKEY *rfc_pkey(void)
{
	unsigned char raw[32], pub[32];
	assert_int_equal(b64dec(rfc_secret, raw, sizeof(raw)), 32);
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw, sizeof(raw));
	assert_non_null(k);
	size_t n = sizeof(pub);
	assert_int_equal(EVP_PKEY_get_raw_public_key(k, pub, &n), 1);
	char *p64 = b64enc(pub, n);
	assert_string_equal(p64, rfc_public);
	free(p64);
	return k;
}

static char *ed25519_sign_b64(EVP_PKEY *k, const struct buf *data)
{
	unsigned char md[32], sig[64];
	size_t siglen = sizeof(sig);
	sha256(data->s, data->len, md);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestSignInit(ctx, NULL, NULL, NULL, k), 1);
	assert_int_equal(EVP_DigestSign(ctx, sig, &siglen, md, sizeof(md)), 1);
	EVP_MD_CTX_free(ctx);
	return b64enc(sig, siglen);
}

static void test_rfc8463_body_hash(void **state)
{
	(void)state;
	size_t len = strlen(rfc_body);
	for (size_t step = 1; step <= len; step++) {
		char *bh = body_hash(DKIM_CANON_RELAXED, rfc_body, len, step);
		assert_string_equal(bh, rfc_bh);
		free(bh);
	}
}

/* The example signature, recomputed: checks the reference canonicalization
 * of this file and the Ed25519-of-the-sha256-digest construction. */
static void test_rfc8463_reference_signature(void **state)
{
	(void)state;
	EVP_PKEY *k = rfc_pkey();
	struct buf data = {0};
	for (size_t i = 0; i < 5; i++)
		ref_relaxed(&data, rfc_fields[i], strlen(rfc_fields[i]), true);
	/* h= lists from, subject and date twice: the second mentions are null. */
	ref_relaxed(&data, rfc_sig_field, b_tag_offset(rfc_sig_field), false);
	char *b = ed25519_sign_b64(k, &data);
	assert_string_equal(b, rfc_b);
	free(b);
	free(data.s);

	struct buf canon = {0};
	for (size_t i = 0; i < 5; i++)
		ref_relaxed(&canon, rfc_fields[i], strlen(rfc_fields[i]), true);
	assert_true(verify(k, canon.s, DKIM_CANON_RELAXED, rfc_sig_field));
	free(canon.s);
	EVP_PKEY_free(k);
}

/* dkim_sign on the example message with the example's key and choices.  Its
 * field has no i= and q= tags and writes h= without spaces, so its b= cannot
 * be the RFC's; Ed25519 being deterministic, it must equal the signature
 * recomputed here over the text it emitted. */
static void test_rfc8463_dkim_sign(void **state)
{
	(void)state;
	EVP_PKEY *k = rfc_pkey();
	BIO *bio = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL), 1);
	char *pem = NULL;
	long pemlen = BIO_get_mem_data(bio, &pem);
	enum dkim_algorithm alg = DKIM_RSA_SHA256;
	char *err = NULL;
	struct dkim_key *key = dkim_key_load(pem, (size_t)pemlen, &alg, &err);
	BIO_free(bio);
	assert_non_null(key);
	assert_null(err);
	assert_int_equal(alg, DKIM_ED25519_SHA256);

	struct buf block = {0}, canon = {0};
	for (size_t i = 0; i < 5; i++) {
		buf_adds(&block, rfc_fields[i]);
		ref_relaxed(&canon, rfc_fields[i], strlen(rfc_fields[i]), true);
	}
	static const char *const sign[] = {"from", "to", "subject", "date", "message-id"};
	static const char *const over[] = {"from", "subject", "date"};
	struct dkim_sign_params p = {
	    .domain = "football.example.com",
	    .selector = "brisbane",
	    .header_canon = DKIM_CANON_RELAXED,
	    .body_canon = DKIM_CANON_RELAXED,
	    .body_hash = rfc_bh,
	    .sign_headers = sign,
	    .n_sign_headers = 5,
	    .oversign = over,
	    .n_oversign = 3,
	    .timestamp = 1528637909,
	};
	char *field = dkim_sign(key, &p, block.s, block.len, &err);
	assert_non_null(field);
	assert_null(err);
	check_folding(field);
	struct buf text = {0};
	ref_relaxed(&text, field, b_tag_offset(field), false);
	assert_string_equal(text.s, "dkim-signature:v=1; a=ed25519-sha256; c=relaxed/relaxed;"
				    " d=football.example.com; s=brisbane; t=1528637909;"
				    " h=from:to:subject:date:message-id:from:subject:date;"
				    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=; b=");
	free(text.s);
	char *h = tag_value(field, "h");
	assert_string_equal(h, "from:to:subject:date:message-id:from:subject:date");
	free(h);
	char *v = tag_value(field, "bh");
	assert_string_equal(v, rfc_bh);
	free(v);
	v = tag_value(field, "t");
	assert_string_equal(v, "1528637909");
	free(v);
	v = tag_value(field, "s");
	assert_string_equal(v, "brisbane");
	free(v);

	struct buf data = {0};
	signed_data(&data, canon.s, DKIM_CANON_RELAXED, field);
	char *expect = ed25519_sign_b64(k, &data);
	char *b = tag_value(field, "b");
	assert_string_equal(b, expect);
	assert_true(verify(k, canon.s, DKIM_CANON_RELAXED, field));

	free(b);
	free(expect);
	free(data.s);
	free(field);
	free(block.s);
	free(canon.s);
	dkim_key_free(key);
	EVP_PKEY_free(k);
}

/* --- body canonicalization --- */

static const struct {
	enum dkim_canon canon;
	const char *in;
	const char *out; /* the canonical body that is hashed */
} body_cases[] = {
    {DKIM_CANON_SIMPLE, "", "\r\n"},
    {DKIM_CANON_SIMPLE, "\r\n", "\r\n"},
    {DKIM_CANON_SIMPLE, "\r\n\r\n\r\n", "\r\n"},
    {DKIM_CANON_SIMPLE, "\n\n", "\r\n"},
    {DKIM_CANON_SIMPLE, "abc\r\n", "abc\r\n"},
    {DKIM_CANON_SIMPLE, "abc\r\n\r\n\r\n", "abc\r\n"},
    {DKIM_CANON_SIMPLE, "abc", "abc\r\n"},
    {DKIM_CANON_SIMPLE, "a  b \t\r\n", "a  b \t\r\n"},
    {DKIM_CANON_SIMPLE, " \r\n", " \r\n"},
    {DKIM_CANON_SIMPLE, "a\nb\n\n", "a\r\nb\r\n"},
    {DKIM_CANON_SIMPLE, "a\r\n\r\nb\r\n\r\n", "a\r\n\r\nb\r\n"},
    {DKIM_CANON_SIMPLE, "\r\n\r\nx", "\r\n\r\nx\r\n"},
    {DKIM_CANON_SIMPLE, "a\rb\r\n", "a\rb\r\n"},
    {DKIM_CANON_SIMPLE, "a\r", "a\r\r\n"},
    {DKIM_CANON_SIMPLE, "a\r\r\n\r\n", "a\r\r\n"},
    /* RFC 6376 3.4.5 */
    {DKIM_CANON_SIMPLE, " C \r\nD \t E\r\n\r\n\r\n", " C \r\nD \t E\r\n"},
    {DKIM_CANON_RELAXED, " C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n"},
    {DKIM_CANON_RELAXED, "", ""},
    {DKIM_CANON_RELAXED, "\r\n", ""},
    {DKIM_CANON_RELAXED, "\r\n \t \r\n\r\n", ""},
    {DKIM_CANON_RELAXED, "   ", ""},
    {DKIM_CANON_RELAXED, "a  b\t\tc \t\r\n", "a b c\r\n"},
    {DKIM_CANON_RELAXED, " \t lead\r\n", " lead\r\n"},
    {DKIM_CANON_RELAXED, "abc\r\n \r\n\t\r\n", "abc\r\n"},
    {DKIM_CANON_RELAXED, "abc", "abc\r\n"},
    {DKIM_CANON_RELAXED, "abc  ", "abc\r\n"},
    {DKIM_CANON_RELAXED, "a\n\nb\n \n", "a\r\n\r\nb\r\n"},
    {DKIM_CANON_RELAXED, "a \r\n\r\n b\r\n", "a\r\n\r\n b\r\n"},
    {DKIM_CANON_RELAXED, "a \t \n \n\t\n", "a\r\n"},
    {DKIM_CANON_RELAXED, "x\r \r\n", "x\r\r\n"},
    {DKIM_CANON_RELAXED, "x \r y\r\n", "x \r y\r\n"},
    {DKIM_CANON_RELAXED, "x\t\r", "x \r\r\n"},
    {DKIM_CANON_RELAXED, "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n",
     "Hi.\r\n\r\nWe lost the game. Are you hungry yet?\r\n\r\nJoe.\r\n"},
};

static void test_body_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(body_cases) / sizeof(body_cases[0]); i++) {
		const char *in = body_cases[i].in;
		size_t len = strlen(in);
		char expect[45];
		sha256_b64(body_cases[i].out, strlen(body_cases[i].out), expect);

		char *whole = body_hash(body_cases[i].canon, in, len, len ? len : 1);
		if (strcmp(whole, expect) != 0)
			fail_msg("case %zu: whole input hashes wrong", i);
		char *bytes = body_hash(body_cases[i].canon, in, len, 1);
		if (strcmp(bytes, expect) != 0)
			fail_msg("case %zu: byte by byte hashes wrong", i);
		free(whole);
		free(bytes);

		/* Every split in two and in three pieces (empty pieces included). */
		for (size_t a = 0; a <= len; a++) {
			for (size_t c = a; c <= len; c++) {
				struct dkim_body *b = dkim_body_new(body_cases[i].canon);
				dkim_body_update(b, in, a);
				dkim_body_update(b, in + a, c - a);
				dkim_body_update(b, in + c, len - c);
				char out[45];
				dkim_body_final(b, out);
				dkim_body_free(b);
				if (strcmp(out, expect) != 0)
					fail_msg("case %zu: split at %zu,%zu hashes wrong", i, a,
						 c);
			}
		}
	}
}

/* A body larger than the internal buffer, in odd-sized pieces. */
static void test_body_large(void **state)
{
	(void)state;
	struct buf in = {0}, simple = {0}, relaxed = {0};
	char line[64];
	for (int i = 0; i < 20000; i++) {
		snprintf(line, sizeof(line), "line %d  with\t two  spaces \r\n", i);
		buf_adds(&in, line);
		buf_adds(&simple, line);
		snprintf(line, sizeof(line), "line %d with two spaces\r\n", i);
		buf_adds(&relaxed, line);
	}
	buf_adds(&in, "\r\n\r\n \r\n");
	buf_adds(&simple, "\r\n\r\n \r\n");
	char es[45], er[45];
	sha256_b64(simple.s, simple.len, es);
	sha256_b64(relaxed.s, relaxed.len, er);
	static const size_t steps[] = {1, 7, 4095, 4096, 4097, 65536, 1 << 22};
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		char *s = body_hash(DKIM_CANON_SIMPLE, in.s, in.len, steps[i]);
		char *r = body_hash(DKIM_CANON_RELAXED, in.s, in.len, steps[i]);
		assert_string_equal(s, es);
		assert_string_equal(r, er);
		free(s);
		free(r);
	}
	free(in.s);
	free(simple.s);
	free(relaxed.s);
}

/*
 * The body canonicalizations as RFC 6376 3.4.3/3.4.4 state them, line by
 * line (CRLF or a bare LF ends a line; a bare CR is an ordinary byte).
 */
static void ref_body(struct buf *out, enum dkim_canon canon, const char *in, size_t len)
{
	struct buf lines = {0};
	size_t keep = 0; /* lines.len up to the last line with content */
	for (size_t i = 0; i < len;) {
		size_t e = i;
		while (e < len && in[e] != '\n' &&
		       !(in[e] == '\r' && e + 1 < len && in[e + 1] == '\n'))
			e++;
		struct buf line = {0};
		buf_add(&line, "", 0);
		for (size_t k = i; k < e; k++) {
			bool wsp = in[k] == ' ' || in[k] == '\t';
			if (canon == DKIM_CANON_RELAXED && wsp) {
				if (line.len == 0 || line.s[line.len - 1] != ' ')
					buf_add(&line, " ", 1);
			} else {
				buf_add(&line, in + k, 1);
			}
		}
		if (canon == DKIM_CANON_RELAXED && line.len > 0 && line.s[line.len - 1] == ' ')
			line.len--;
		buf_add(&lines, line.s, line.len);
		buf_add(&lines, "\r\n", 2);
		if (line.len > 0)
			keep = lines.len;
		free(line.s);
		i = e < len ? e + (in[e] == '\r' ? 2 : 1) : e;
	}
	buf_add(out, "", 0);
	buf_add(out, lines.s ? lines.s : "", keep);
	if (canon == DKIM_CANON_SIMPLE && keep == 0)
		buf_add(out, "\r\n", 2);
	free(lines.s);
}

/* Random bodies with long runs of plain bytes (the module scans those 16 at
 * a time) cut at random places, against the reference; and a leading
 * separator line dropped by dkim_body_skip_separator. */
static void test_body_random(void **state)
{
	(void)state;
	static const char *const atoms[] = {"x", " ", "\t", "\r\n", "\n", "\r", "  \t "};
	unsigned seed = 12345;
	for (int round = 0; round < 400; round++) {
		struct buf in = {0};
		buf_add(&in, "", 0);
		/* Every fourth body opens with 3 KB of plain lines: hashed
		 * straight from the input rather than through the buffer. */
		for (int k = 0; round % 4 == 0 && k < 40; k++)
			buf_adds(&in, "0123456789abcdefghij0123456789abcdefghij0123456789abcdefghij"
				      "0123456789\r\n");
		int atoms_n = (int)(rand_r(&seed) % 60);
		for (int a = 0; a < atoms_n; a++) {
			unsigned r = (unsigned)rand_r(&seed) % 10;
			if (r < 4) {
				for (unsigned k = (unsigned)rand_r(&seed) % 80; k > 0; k--)
					buf_add(&in, &"abcdefghijklmnopq"[k % 16], 1);
			} else {
				buf_adds(&in, atoms[r - 3]);
			}
		}
		for (int c = 0; c < 2; c++) {
			enum dkim_canon canon = c ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
			struct buf want = {0};
			ref_body(&want, canon, in.s, in.len);
			char expect[45], got[45];
			sha256_b64(want.s, want.len, expect);
			for (int sep = 0; sep < 3; sep++) {
				/* sep 1: CRLF before the body, 2: LF; skipped either way */
				struct dkim_body *b = dkim_body_new(canon);
				if (sep > 0)
					dkim_body_skip_separator(b);
				const char *lead = sep == 1 ? "\r\n" : "\n";
				size_t leadn = sep == 0 ? 0 : sep == 1 ? 2 : 1;
				struct buf all = {0};
				buf_add(&all, lead, leadn);
				buf_add(&all, in.s, in.len);
				for (size_t i = 0; i < all.len;) {
					size_t n = 1 + (size_t)rand_r(&seed) % 100;
					if (n > all.len - i)
						n = all.len - i;
					dkim_body_update(b, all.s + i, n);
					i += n;
				}
				dkim_body_final(b, got);
				dkim_body_free(b);
				if (strcmp(got, expect) != 0)
					fail_msg("round %d canon %d separator %d: hash differs for "
						 "\"%s\"",
						 round, c, sep, in.s);
				free(all.s);
			}
			free(want.s);
		}
		free(in.s);
	}
}

/* --- header canonicalization and signing --- */

static const char test_block[] = "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
				 "From: Joe <joe@example.com>\r\n"
				 "SUBJECT :  Hello \t  world  \r\n"
				 "To: a@example.com,\r\n"
				 "\t b@example.com\r\n"
				 "X-Multi: one\r\n"
				 "Date:Mon, 1 Jan 2024 00:00:00 +0000\r\n"
				 "x-multi:  two \r\n"
				 "Subject2:\r\n"
				 "\tfolded only\r\n";
static const char *const test_sign[] = {"from", "subject", "to",       "x-multi",
					"date", "cc",      "subject2", "reply-to"};
static const char *const test_over[] = {"from", "reply-to"};
/* h=: absent names (cc, and reply-to before its oversigning) are left out;
 * repeated fields bottom up; oversigned names once more. */
static const char test_h[] = "from:subject:to:x-multi:x-multi:date:subject2:from:reply-to";
static const char test_relaxed[] = "from:Joe <joe@example.com>\r\n"
				   "subject:Hello world\r\n"
				   "to:a@example.com, b@example.com\r\n"
				   "x-multi:two\r\n"
				   "x-multi:one\r\n"
				   "date:Mon, 1 Jan 2024 00:00:00 +0000\r\n"
				   "subject2:folded only\r\n";
static const char test_simple[] = "From: Joe <joe@example.com>\r\n"
				  "SUBJECT :  Hello \t  world  \r\n"
				  "To: a@example.com,\r\n"
				  "\t b@example.com\r\n"
				  "x-multi:  two \r\n"
				  "X-Multi: one\r\n"
				  "Date:Mon, 1 Jan 2024 00:00:00 +0000\r\n"
				  "Subject2:\r\n"
				  "\tfolded only\r\n";

static void sign_and_verify(const char *type, int bits)
{
	char *pem = NULL, *txt = NULL, *err = NULL;
	assert_int_equal(dkim_keygen(type, bits, &pem, &txt, &err), 0);
	assert_null(err);
	assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
	bool rsa = strcmp(type, "rsa") == 0;
	assert_true(strncmp(txt, rsa ? "v=DKIM1; k=rsa; p=" : "v=DKIM1; k=ed25519; p=",
			    rsa ? 18 : 22) == 0);
	EVP_PKEY *pub = txt_pubkey(txt);
	if (rsa)
		assert_int_equal(EVP_PKEY_get_bits(pub), bits);

	enum dkim_algorithm alg;
	struct dkim_key *key = dkim_key_load(pem, strlen(pem), &alg, &err);
	assert_non_null(key);
	assert_int_equal(ERR_peek_error(), 0);
	assert_int_equal(alg, rsa ? DKIM_RSA_SHA256 : DKIM_ED25519_SHA256);

	static const enum dkim_canon canons[] = {DKIM_CANON_RELAXED, DKIM_CANON_SIMPLE};
	for (size_t c = 0; c < 2; c++) {
		struct dkim_sign_params p = {
		    .domain = "example.com",
		    .selector = "sel-2024.a",
		    .header_canon = canons[c],
		    .body_canon = canons[1 - c],
		    .body_hash = rfc_bh,
		    .sign_headers = test_sign,
		    .n_sign_headers = sizeof(test_sign) / sizeof(test_sign[0]),
		    .oversign = test_over,
		    .n_oversign = 2,
		    .timestamp = c == 0 ? 1700000000 : 0,
		};
		char *field = dkim_sign(key, &p, test_block, strlen(test_block), &err);
		assert_non_null(field);
		assert_null(err);
		check_folding(field);
		char *h = tag_value(field, "h");
		assert_string_equal(h, test_h);
		free(h);
		char *v = tag_value(field, "c");
		assert_string_equal(v, c == 0 ? "relaxed/simple" : "simple/relaxed");
		free(v);
		v = tag_value(field, "a");
		assert_string_equal(v, rsa ? "rsa-sha256" : "ed25519-sha256");
		free(v);
		v = tag_value(field, "t");
		if (c == 0)
			assert_string_equal(v, "1700000000");
		else
			assert_null(v);
		free(v);

		const char *canon = canons[c] == DKIM_CANON_RELAXED ? test_relaxed : test_simple;
		if (!verify(pub, canon, canons[c], field))
			fail_msg("%s %d %s: signature does not verify:\n%s", type, bits,
				 c == 0 ? "relaxed" : "simple", field);
		/* A changed field breaks it. */
		struct buf bad = {0};
		buf_adds(&bad, canon);
		bad.s[6] ^= 1;
		assert_false(verify(pub, bad.s, canons[c], field));
		free(bad.s);
		free(field);
	}
	dkim_key_free(key);
	EVP_PKEY_free(pub);
	free(pem);
	free(txt);
}

static void test_sign_rsa1024(void **state)
{
	(void)state;
	sign_and_verify("rsa", 1024);
}

static void test_sign_rsa2048(void **state)
{
	(void)state;
	sign_and_verify("rsa", 2048);
}

static void test_sign_ed25519(void **state)
{
	(void)state;
	sign_and_verify("ed25519", 0);
}

/* A long h= list and a field without a final CRLF: folding inside h=, and
 * a bare LF converted for simple canonicalization. */
static void test_sign_long_h(void **state)
{
	(void)state;
	char *pem = NULL, *txt = NULL, *err = NULL;
	assert_int_equal(dkim_keygen("ed25519", 0, &pem, &txt, &err), 0);
	struct dkim_key *key = dkim_key_load(pem, strlen(pem), NULL, &err);
	assert_non_null(key);
	EVP_PKEY *pub = txt_pubkey(txt);

	struct buf block = {0}, relaxed = {0}, simple = {0}, h = {0};
	const char *names[40];
	char *owned[40];
	buf_adds(&block, "From: a@example.com\r\n");
	for (int i = 0; i < 40; i++) {
		owned[i] = xasprintf("x-some-rather-long-field-name-%02d", i);
		names[i] = owned[i];
		/* Field 1 ends in a bare LF, the last field has no line end. */
		const char *eol = i == 39 ? "" : "\r\n";
		if (i == 1)
			eol = "\n";
		char *f = xasprintf("X-Some-Rather-Long-Field-Name-%02d: value %d%s", i, i, eol);
		buf_adds(&block, f);
		free(f);
	}
	for (int i = 39; i >= 0; i--) {
		char *f = xasprintf("X-Some-Rather-Long-Field-Name-%02d: value %d\r\n", i, i);
		buf_adds(&simple, f);
		free(f);
		f = xasprintf("x-some-rather-long-field-name-%02d:value %d\r\n", i, i);
		buf_adds(&relaxed, f);
		free(f);
		if (h.len)
			buf_adds(&h, ":");
		buf_adds(&h, owned[i]);
	}
	static const char *const from[] = {"from"};
	const char *rev[41];
	for (int i = 0; i < 40; i++)
		rev[i] = names[39 - i];
	rev[40] = "from";
	for (int c = 0; c < 2; c++) {
		struct dkim_sign_params p = {
		    .domain = "example.com",
		    .selector = "s",
		    .header_canon = c ? DKIM_CANON_SIMPLE : DKIM_CANON_RELAXED,
		    .body_canon = DKIM_CANON_SIMPLE,
		    .body_hash = rfc_bh,
		    .sign_headers = rev,
		    .n_sign_headers = 41,
		    .oversign = from,
		    .n_oversign = 1,
		};
		char *field = dkim_sign(key, &p, block.s, block.len, &err);
		assert_non_null(field);
		check_folding(field);
		char *hv = tag_value(field, "h");
		char *eh = xasprintf("%s:from:from", h.s);
		assert_string_equal(hv, eh);
		struct buf canon = {0};
		buf_adds(&canon, c ? simple.s : relaxed.s);
		buf_adds(&canon, c ? "From: a@example.com\r\n" : "from:a@example.com\r\n");
		if (!verify(pub, canon.s, p.header_canon, field))
			fail_msg("long h= (%s) does not verify:\n%s", c ? "simple" : "relaxed",
				 field);
		free(canon.s);
		free(hv);
		free(eh);
		free(field);
	}
	for (int i = 0; i < 40; i++)
		free(owned[i]);
	free(block.s);
	free(relaxed.s);
	free(simple.s);
	free(h.s);
	dkim_key_free(key);
	EVP_PKEY_free(pub);
	free(pem);
	free(txt);
}

static void test_sign_errors(void **state)
{
	(void)state;
	char *pem = NULL, *txt = NULL, *err = NULL;
	assert_int_equal(dkim_keygen("ed25519", 0, &pem, &txt, &err), 0);
	struct dkim_key *key = dkim_key_load(pem, strlen(pem), NULL, &err);
	assert_non_null(key);
	static const char *const sign[] = {"from", "to"};
	struct dkim_sign_params p = {
	    .domain = "example.com",
	    .selector = "s",
	    .body_hash = rfc_bh,
	    .sign_headers = sign,
	    .n_sign_headers = 2,
	};
	const char *no_from = "To: a@example.com\r\n";
	assert_null(dkim_sign(key, &p, no_from, strlen(no_from), &err));
	assert_non_null(strstr(err, "no From"));
	free(err);

	const char *block = "From: a@example.com\r\n";
	p.n_sign_headers = 1;
	p.sign_headers = sign + 1;
	assert_null(dkim_sign(key, &p, block, strlen(block), &err));
	assert_non_null(strstr(err, "From"));
	free(err);
	p.sign_headers = sign;

	p.domain = "example.com; x=y";
	assert_null(dkim_sign(key, &p, block, strlen(block), &err));
	assert_non_null(strstr(err, "d="));
	free(err);
	p.domain = "example.com";
	p.selector = "";
	assert_null(dkim_sign(key, &p, block, strlen(block), &err));
	assert_non_null(strstr(err, "s="));
	free(err);
	p.selector = "s";
	p.body_hash = "short";
	assert_null(dkim_sign(key, &p, block, strlen(block), &err));
	assert_non_null(strstr(err, "body hash"));
	free(err);

	p.body_hash = rfc_bh;
	p.timestamp = -1;
	assert_null(dkim_sign(key, &p, block, strlen(block), &err));
	assert_non_null(strstr(err, "t="));
	free(err);
	p.timestamp = 0;
	/* From only oversigned: still signed, its field and once more. */
	static const char *const from[] = {"from"};
	p.sign_headers = sign + 1;
	p.oversign = from;
	p.n_oversign = 1;
	char *field = dkim_sign(key, &p, block, strlen(block), &err);
	assert_non_null(field);
	char *h = tag_value(field, "h");
	assert_string_equal(h, "from:from");
	free(h);
	free(field);
	dkim_key_free(key);
	free(pem);
	free(txt);
}

/* dkim_sign from several threads with one key (dkim.h promises it works):
 * RSA PKCS#1 v1.5 and Ed25519 are deterministic, so every result must equal
 * the one made alone. */
struct sign_job {
	const struct dkim_key *key;
	const struct dkim_sign_params *p;
	const char *expect;
	int mismatches;
};

static void *sign_thread(void *arg)
{
	struct sign_job *j = arg;
	for (int i = 0; i < 50; i++) {
		char *err = NULL;
		char *f = dkim_sign(j->key, j->p, test_block, strlen(test_block), &err);
		if (f == NULL || strcmp(f, j->expect) != 0)
			j->mismatches++;
		free(f);
		free(err);
	}
	return NULL;
}

static void test_sign_threads(void **state)
{
	(void)state;
	static const char *const types[] = {"rsa", "ed25519"};
	for (size_t t = 0; t < 2; t++) {
		char *pem = NULL, *txt = NULL, *err = NULL;
		assert_int_equal(dkim_keygen(types[t], 1024, &pem, &txt, &err), 0);
		struct dkim_key *key = dkim_key_load(pem, strlen(pem), NULL, &err);
		assert_non_null(key);
		struct dkim_sign_params p = {
		    .domain = "example.com",
		    .selector = "s",
		    .header_canon = DKIM_CANON_RELAXED,
		    .body_canon = DKIM_CANON_RELAXED,
		    .body_hash = rfc_bh,
		    .sign_headers = test_sign,
		    .n_sign_headers = sizeof(test_sign) / sizeof(test_sign[0]),
		};
		char *expect = dkim_sign(key, &p, test_block, strlen(test_block), &err);
		assert_non_null(expect);
		struct sign_job jobs[4];
		pthread_t th[4];
		for (int i = 0; i < 4; i++) {
			jobs[i] = (struct sign_job){key, &p, expect, 0};
			assert_int_equal(pthread_create(&th[i], NULL, sign_thread, &jobs[i]), 0);
		}
		for (int i = 0; i < 4; i++) {
			assert_int_equal(pthread_join(th[i], NULL), 0);
			assert_int_equal(jobs[i].mismatches, 0);
		}
		free(expect);
		dkim_key_free(key);
		free(pem);
		free(txt);
	}
}

/* --- keys --- */

static char *pem_of(EVP_PKEY *k, const EVP_CIPHER *cipher, const char *pass)
{
	BIO *bio = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PrivateKey(bio, k, cipher, NULL, 0, NULL, (void *)pass), 1);
	char *p = NULL;
	long n = BIO_get_mem_data(bio, &p);
	char *s = xstrndup(p, (size_t)n);
	BIO_free(bio);
	return s;
}

static void expect_load_error(const char *pem, size_t len, const char *needle)
{
	char *err = NULL;
	enum dkim_algorithm alg;
	struct dkim_key *k = dkim_key_load(pem, len, &alg, &err);
	assert_null(k);
	assert_non_null(err);
	if (strstr(err, needle) == NULL)
		fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
	free(err);
	assert_int_equal(ERR_peek_error(), 0); /* the error queue is left clean */
}

static void test_key_errors(void **state)
{
	(void)state;
	const char *garbage =
	    "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n";
	expect_load_error(garbage, strlen(garbage), "cannot read the PEM private key");
	expect_load_error("hello", 5, "cannot read the PEM private key");
	expect_load_error("", 0, "cannot read the PEM private key");

	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
	assert_non_null(k);
	char *pem = pem_of(k, NULL, NULL);
	expect_load_error(pem, strlen(pem), "RSA key of 512 bits");
	free(pem);
	EVP_PKEY_free(k);

	k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(k);
	pem = pem_of(k, NULL, NULL);
	expect_load_error(pem, strlen(pem), "EC key: DKIM keys must be RSA");
	free(pem);
	EVP_PKEY_free(k);

	/* An encrypted key is refused, never prompted for. */
	k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	pem = pem_of(k, EVP_aes_128_cbc(), "secret");
	assert_non_null(strstr(pem, "ENCRYPTED"));
	expect_load_error(pem, strlen(pem), "cannot read the PEM private key");
	free(pem);
	/* The same key in clear loads; a public key alone does not. */
	pem = pem_of(k, NULL, NULL);
	char *err = NULL;
	struct dkim_key *dk = dkim_key_load(pem, strlen(pem), NULL, &err);
	assert_non_null(dk);
	assert_int_equal(ERR_peek_error(), 0);
	dkim_key_free(dk);
	free(pem);
	BIO *bio = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PUBKEY(bio, k), 1);
	char *p = NULL;
	long n = BIO_get_mem_data(bio, &p);
	expect_load_error(p, (size_t)n, "cannot read the PEM private key");
	BIO_free(bio);
	EVP_PKEY_free(k);

	char *txt = NULL;
	assert_int_equal(dkim_keygen("rsa", 512, &pem, &txt, &err), -1);
	assert_non_null(strstr(err, "1024 to 4096"));
	free(err);
	assert_int_equal(dkim_keygen("rsa", 8192, &pem, &txt, &err), -1);
	free(err);
	assert_int_equal(dkim_keygen("dsa", 1024, &pem, &txt, &err), -1);
	assert_non_null(strstr(err, "dsa"));
	free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rfc8463_body_hash),
	    cmocka_unit_test(test_rfc8463_reference_signature),
	    cmocka_unit_test(test_rfc8463_dkim_sign),
	    cmocka_unit_test(test_body_table),
	    cmocka_unit_test(test_body_large),
	    cmocka_unit_test(test_body_random),
	    cmocka_unit_test(test_sign_rsa1024),
	    cmocka_unit_test(test_sign_rsa2048),
	    cmocka_unit_test(test_sign_ed25519),
	    cmocka_unit_test(test_sign_long_h),
	    cmocka_unit_test(test_sign_errors),
	    cmocka_unit_test(test_sign_threads),
	    cmocka_unit_test(test_key_errors),
	};
	return cmocka_run_group_tests_name("dkim", tests, NULL, NULL);
}
