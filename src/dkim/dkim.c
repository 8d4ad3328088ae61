/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * DKIM signing (RFC 6376) with rsa-sha256 and ed25519-sha256 (RFC 8463).
 *
 * The body hash is computed while the body streams in: the canonicalization
 * keeps only a few bytes of state (a CR that may start a CRLF, whether a WSP
 * run is pending, how many empty lines are held back), never the body, so
 * any split of the input gives the same hash.  Canonical output is gathered
 * in a small buffer and hashed when it fills.
 *
 * A signature is computed over exactly the text emitted: the field is built
 * (folded) up to "b=", canonicalized like the signed fields, hashed, and the
 * base64 signature is then appended and folded.  Verifiers delete the b=
 * value with its surrounding white space, which gives back that text.
 */
#include "dkim/dkim.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "core/xmalloc.h"
#include "msg/header.h"

#define RSA_BITS_MIN 1024
#define RSA_BITS_MAX 4096
/* Folding width of the DKIM-Signature field, a tab counting 8 columns. */
#define FOLD_WIDTH 78
#define TAB_WIDTH 8

static bool is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* --- a growing string --- */

struct sbuf {
	char *s;
	size_t len, cap;
};

static void sb_add(struct sbuf *sb, const char *p, size_t n)
{
	if (n == 0)
		return;
	sb->s = xreallocarray_grow(sb->s, &sb->cap, sb->len + n + 1, 1);
	memcpy(sb->s + sb->len, p, n);
	sb->len += n;
	sb->s[sb->len] = '\0';
}

static void sb_adds(struct sbuf *sb, const char *s)
{
	sb_add(sb, s, strlen(s));
}

static void sb_addc(struct sbuf *sb, char c)
{
	sb_add(sb, &c, 1);
}

/* The last OpenSSL error as text (clearing the queue, so that a later
 * SSL_get_error() on this thread is not misled), or `fallback`. */
static char *ssl_error(const char *what)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;
	char *msg = reason ? xasprintf("%s: %s", what, reason) : xstrdup(what);
	ERR_clear_error();
	return msg;
}

/* Standard base64 of `n` bytes, no line breaks; the caller frees it. */
static char *base64(const unsigned char *p, size_t n)
{
	if (n > INT_MAX / 2)
		fatal("dkim: base64 of %zu bytes", n);
	char *out = xmalloc(4 * ((n + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

/* --- body hash --- */

struct dkim_body {
	EVP_MD_CTX *md;
	bool relaxed;
	bool cr;      /* the last byte was a CR that may start a CRLF */
	bool wsp;     /* relaxed: a WSP run is held back (dropped at line end) */
	bool in_line; /* the current line has content */
	bool any;     /* something was hashed */
	/* dkim_body_skip_separator: -1 until the first byte is seen, then the
	 * bytes of the separating empty line still to drop */
	int separator;
	size_t empty; /* empty lines held back (dropped at the end of the body) */
	size_t out_len;
	unsigned char out[4096];
};

static void body_flush(struct dkim_body *b)
{
	if (b->out_len > 0 && EVP_DigestUpdate(b->md, b->out, b->out_len) != 1)
		fatal("dkim: EVP_DigestUpdate failed");
	if (b->out_len > 0)
		b->any = true;
	b->out_len = 0;
}

static void body_emit(struct dkim_body *b, const char *p, size_t n)
{
	while (n > 0) {
		if (b->out_len == sizeof(b->out))
			body_flush(b);
		size_t k = sizeof(b->out) - b->out_len;
		if (k > n)
			k = n;
		memcpy(b->out + b->out_len, p, k);
		b->out_len += k;
		p += k;
		n -= k;
	}
}

static void body_content(struct dkim_body *b, char c)
{
	if (!b->in_line) {
		for (; b->empty > 0; b->empty--)
			body_emit(b, "\r\n", 2);
		b->in_line = true;
	}
	if (b->wsp) {
		body_emit(b, " ", 1);
		b->wsp = false;
	}
	body_emit(b, &c, 1);
}

static void body_eol(struct dkim_body *b)
{
	b->wsp = false; /* WSP at the end of a line is dropped */
	if (b->in_line) {
		body_emit(b, "\r\n", 2);
		b->in_line = false;
	} else {
		b->empty++;
	}
}

struct dkim_body *dkim_body_new(enum dkim_canon canon)
{
	struct dkim_body *b = xcalloc(1, sizeof(*b));
	b->relaxed = canon == DKIM_CANON_RELAXED;
	b->md = EVP_MD_CTX_new();
	if (b->md == NULL || EVP_DigestInit_ex(b->md, EVP_sha256(), NULL) != 1)
		fatal("dkim: cannot start a sha256 digest");
	return b;
}

/* Bytes that end a run of ordinary line content, for each canonicalization:
 * CR and LF always, and WSP too for relaxed (RFC 6376 3.4.4). */
enum {
	STOP_SIMPLE = 1,
	STOP_RELAXED = 2
};
static const unsigned char body_stop[256] = {
    ['\r'] = STOP_SIMPLE | STOP_RELAXED,
    ['\n'] = STOP_SIMPLE | STOP_RELAXED,
    [' '] = STOP_RELAXED,
    ['\t'] = STOP_RELAXED,
};

/*
 * The length of the leading run of p[0..n) with no byte that ends ordinary
 * content.  Sixteen bytes at a time where the compiler has vector types
 * (GCC and Clang on every target), then byte by byte to the exact end.
 */
static size_t ordinary_run(const unsigned char *p, size_t n, bool relaxed)
{
	size_t i = 0;
#if defined(__GNUC__)
	typedef unsigned char v16 __attribute__((vector_size(16)));
	const v16 cr = {'\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r',
			'\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r'};
	const v16 lf = cr ^ ('\r' ^ '\n');
	const v16 sp = cr ^ ('\r' ^ ' ');
	const v16 tab = cr ^ ('\r' ^ '\t');
	for (; i + 16 <= n; i += 16) {
		v16 x;
		memcpy(&x, p + i, 16);
		v16 hit = (v16)(x == cr) | (v16)(x == lf);
		if (relaxed)
			hit |= (v16)(x == sp) | (v16)(x == tab);
		uint64_t w[2];
		memcpy(w, &hit, 16);
		if (w[0] | w[1])
			break;
	}
#endif
	const unsigned char stop = relaxed ? STOP_RELAXED : STOP_SIMPLE;
	while (i < n && !(body_stop[p[i]] & stop))
		i++;
	return i;
}

/*
 * The longest prefix of p[0..n) that canonicalizes to itself from a state
 * where nothing is held: ordinary bytes, and CRLFs that end a line with
 * content.  *in_line says whether the line in progress has content, before
 * and after.  Stops before WSP (relaxed), a bare CR or LF, an empty line
 * (held back in case the body ends there) and a CR that ends the input.
 */
static size_t verbatim_prefix(const char *p, size_t n, bool relaxed, bool *in_line)
{
	size_t i = 0, good = 0;
	bool line = *in_line;
	while (i < n) {
		size_t r = ordinary_run((const unsigned char *)p + i, n - i, relaxed);
		if (r > 0) {
			i += r;
			line = true;
		} else if (line && p[i] == '\r' && i + 1 < n && p[i + 1] == '\n') {
			i += 2;
			line = false;
		} else {
			break;
		}
		good = i;
		*in_line = line;
	}
	return good;
}

/* Hashes bytes that need no canonicalization: long runs straight from the
 * input, short ones through the buffer (one digest call per few KiB). */
static void body_verbatim(struct dkim_body *b, const char *p, size_t n)
{
	if (n < sizeof(b->out) / 4) {
		body_emit(b, p, n);
		return;
	}
	body_flush(b);
	if (EVP_DigestUpdate(b->md, p, n) != 1)
		fatal("dkim: EVP_DigestUpdate failed");
	b->any = true;
}

void dkim_body_skip_separator(struct dkim_body *b)
{
	b->separator = -1;
}

void dkim_body_update(struct dkim_body *b, const char *data, size_t len)
{
	const char *end = data + len;
	const char *p = data;
	if (b->separator == -1 && len > 0)
		b->separator = data[0] == '\r' ? 2 : data[0] == '\n' ? 1 : 0;
	for (; b->separator > 0 && p < end; b->separator--)
		p++;
	while (p < end) {
		if (!b->cr && !b->wsp && b->empty == 0) {
			size_t n = verbatim_prefix(p, (size_t)(end - p), b->relaxed, &b->in_line);
			if (n > 0) {
				body_verbatim(b, p, n);
				p += n;
				continue;
			}
		}
		if (b->cr) {
			b->cr = false;
			if (*p == '\n') {
				body_eol(b);
				p++;
				continue;
			}
			body_content(b, '\r'); /* a CR alone is an ordinary byte */
		}
		/* Copy a run of ordinary bytes in one go when nothing is held. */
		if (b->in_line && !b->wsp) {
			size_t n = ordinary_run((const unsigned char *)p, (size_t)(end - p),
						b->relaxed);
			if (n > 0) {
				body_emit(b, p, n);
				p += n;
				continue;
			}
		}
		char c = *p++;
		if (c == '\r')
			b->cr = true;
		else if (c == '\n')
			body_eol(b); /* a bare LF ends a line like CRLF */
		else if (b->relaxed && is_wsp((unsigned char)c))
			b->wsp = true;
		else
			body_content(b, c);
	}
}

void dkim_body_final(struct dkim_body *b, char out[45])
{
	if (b->cr) {
		b->cr = false;
		body_content(b, '\r');
	}
	/* A last line without its CRLF gets one; held empty lines and WSP go. */
	if (b->in_line)
		body_eol(b);
	body_flush(b);
	/* Simple: an empty body (or only empty lines) is a single CRLF. */
	if (!b->relaxed && !b->any)
		body_emit(b, "\r\n", 2);
	body_flush(b);

	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (EVP_DigestFinal_ex(b->md, md, &n) != 1 || n != 32)
		fatal("dkim: EVP_DigestFinal_ex failed");
	EVP_EncodeBlock((unsigned char *)out, md, (int)n);
}

void dkim_body_free(struct dkim_body *b)
{
	if (b == NULL)
		return;
	EVP_MD_CTX_free(b->md);
	free(b);
}

/* --- keys --- */

struct dkim_key {
	EVP_PKEY *pkey;
	enum dkim_algorithm alg;
};

/* Refuses encrypted keys instead of prompting on the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

struct dkim_key *dkim_key_load(const char *pem, size_t len, enum dkim_algorithm *alg, char **err)
{
	*err = NULL;
	if (len > INT_MAX) {
		*err = xstrdup("the key file is too large");
		return NULL;
	}
	ERR_clear_error();
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (bio == NULL)
		fatal("dkim: BIO_new_mem_buf failed");
	EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	if (pkey == NULL) {
		*err = ssl_error("cannot read the PEM private key");
		return NULL;
	}

	enum dkim_algorithm a;
	int id = EVP_PKEY_get_base_id(pkey);
	if (id == EVP_PKEY_RSA) {
		int bits = EVP_PKEY_get_bits(pkey);
		if (bits < RSA_BITS_MIN || bits > RSA_BITS_MAX) {
			*err = xasprintf("RSA key of %d bits: DKIM keys must have %d to %d bits",
					 bits, RSA_BITS_MIN, RSA_BITS_MAX);
			EVP_PKEY_free(pkey);
			return NULL;
		}
		a = DKIM_RSA_SHA256;
	} else if (id == EVP_PKEY_ED25519) {
		a = DKIM_ED25519_SHA256;
	} else {
		const char *name = EVP_PKEY_get0_type_name(pkey);
		*err = xasprintf("%s key: DKIM keys must be RSA (%d to %d bits) or Ed25519",
				 name ? name : "unknown", RSA_BITS_MIN, RSA_BITS_MAX);
		EVP_PKEY_free(pkey);
		ERR_clear_error();
		return NULL;
	}

	ERR_clear_error(); /* decoders may queue errors from the formats they tried */
	struct dkim_key *k = xmalloc(sizeof(*k));
	k->pkey = pkey;
	k->alg = a;
	if (alg)
		*alg = a;
	return k;
}

void dkim_key_free(struct dkim_key *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
}

/* --- header canonicalization --- */

/*
 * Relaxed (RFC 6376 3.4.2): name lower-cased, white space around the colon
 * removed, value unfolded (CRLF and a bare LF dropped), WSP runs to one SP,
 * WSP at the start and end of the value removed.  Ends with CRLF if `crlf`.
 */
static void canon_header_relaxed(struct sbuf *out, const char *raw, size_t len, bool crlf)
{
	size_t colon = 0;
	while (colon < len && raw[colon] != ':')
		colon++;
	size_t name_end = colon;
	while (name_end > 0 && is_wsp((unsigned char)raw[name_end - 1]))
		name_end--;
	for (size_t i = 0; i < name_end; i++) {
		char c = raw[i];
		sb_addc(out, c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c);
	}
	sb_addc(out, ':');

	bool wsp = false, started = false;
	for (size_t i = colon + 1; i < len; i++) {
		unsigned char c = (unsigned char)raw[i];
		if (c == '\n' || (c == '\r' && i + 1 < len && raw[i + 1] == '\n'))
			continue;
		if (is_wsp(c)) {
			wsp = true;
			continue;
		}
		if (wsp && started)
			sb_addc(out, ' ');
		wsp = false;
		started = true;
		sb_addc(out, (char)c);
	}
	if (crlf)
		sb_add(out, "\r\n", 2);
}

/*
 * Simple (RFC 6376 3.4.1): the field unchanged, except that a bare LF
 * becomes CRLF (network form, RFC 6376 5.3) and a field missing its final
 * line break (at the end of a block) gets one if `crlf`.
 */
static void canon_header_simple(struct sbuf *out, const char *raw, size_t len, bool crlf)
{
	for (size_t i = 0; i < len; i++) {
		if (raw[i] == '\n' && (i == 0 || raw[i - 1] != '\r'))
			sb_addc(out, '\r');
		sb_addc(out, raw[i]);
	}
	if (crlf && (len == 0 || raw[len - 1] != '\n'))
		sb_add(out, "\r\n", 2);
}

static void canon_header(struct sbuf *out, enum dkim_canon canon, const char *raw, size_t len,
			 bool crlf)
{
	if (canon == DKIM_CANON_RELAXED)
		canon_header_relaxed(out, raw, len, crlf);
	else
		canon_header_simple(out, raw, len, crlf);
}

/* --- the DKIM-Signature field --- */

/* A tag value that needs no quoting: printable, no ';', '=' or space
 * (bytes >= 0x80 pass: internationalized domain names, RFC 8616). */
static bool tag_value_ok(const char *s, bool colon_ok)
{
	if (s == NULL || *s == '\0')
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p <= ' ' || *p == 0x7f || *p == ';' || *p == '=' || (*p == ':' && !colon_ok))
			return false;
	}
	return true;
}

/* Builds the folded field text; `col` is the display column of the end. */
struct folder {
	struct sbuf sb;
	size_t col;
};

static void fold_add(struct folder *f, const char *s, size_t n)
{
	sb_add(&f->sb, s, n);
	f->col += n;
}

static void fold_break(struct folder *f)
{
	sb_adds(&f->sb, "\r\n\t");
	f->col = TAB_WIDTH;
}

/*
 * Appends "; name=value" (or " name=value" for the first tag), starting a
 * new line when the whole tag, with the ';' that will follow it, does not
 * fit.  A value longer than a line is split: after its ':' separators (h=,
 * whose syntax allows FWS there) or anywhere (base64, `anywhere`).
 */
static void fold_tag(struct folder *f, const char *name, const char *value, bool first,
		     bool anywhere)
{
	size_t nlen = strlen(name), vlen = strlen(value);
	if (!first)
		fold_add(f, ";", 1);
	if (f->col + 1 + nlen + 1 + vlen + 1 <= FOLD_WIDTH)
		fold_add(f, " ", 1);
	else
		fold_break(f);
	fold_add(f, name, nlen);
	fold_add(f, "=", 1);

	const char *p = value, *end = value + vlen;
	bool line_has_value = false;
	while (p < end) {
		size_t left = (size_t)(end - p), piece;
		if (anywhere) {
			size_t room = f->col < FOLD_WIDTH ? FOLD_WIDTH - f->col : 0;
			piece = left < room ? left : room;
			if (piece == left && f->col + piece + 1 > FOLD_WIDTH)
				piece--; /* room for the ';' after the last piece */
		} else {
			const char *c = memchr(p, ':', left);
			piece = c ? (size_t)(c - p) + 1 : left;
			size_t need = piece + (piece == left ? 1 : 0);
			if (f->col + need > FOLD_WIDTH && line_has_value)
				piece = 0;
		}
		if (piece == 0) {
			fold_break(f);
			line_has_value = false;
			continue;
		}
		fold_add(f, p, piece);
		p += piece;
		line_has_value = true;
	}
}

static const char *canon_name(enum dkim_canon c)
{
	return c == DKIM_CANON_RELAXED ? "relaxed" : "simple";
}

static bool in_list(const char *const *list, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		if (strcasecmp(list[i], name) == 0)
			return true;
	}
	return false;
}

static size_t count_fields(const struct header_list *hl, const char *name)
{
	size_t n = 0;
	for (size_t i = 0; i < hl->count; i++) {
		if (strcasecmp(hl->items[i].key, name) == 0)
			n++;
	}
	return n;
}

/* Appends `name` to the h= list `n` times. */
static void add_names(struct sbuf *h, const char *name, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (h->len > 0)
			sb_addc(h, ':');
		for (const char *p = name; *p; p++)
			sb_addc(h, *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : *p);
	}
}

/*
 * The h= list: each name of sign_headers (first mention only) once per
 * field of that name in the message, then each name of oversign once more
 * than it has fields (a name only in oversign gets its fields too, so the
 * extra mention does stand for "no further field").  Names in neither list
 * and absent names that are not oversigned are left out.
 */
static void build_h(struct sbuf *h, const struct dkim_sign_params *p, const struct header_list *hl)
{
	for (size_t i = 0; i < p->n_sign_headers; i++) {
		if (in_list(p->sign_headers, i, p->sign_headers[i]))
			continue;
		add_names(h, p->sign_headers[i], count_fields(hl, p->sign_headers[i]));
	}
	for (size_t i = 0; i < p->n_oversign; i++) {
		if (in_list(p->oversign, i, p->oversign[i]))
			continue;
		if (!in_list(p->sign_headers, p->n_sign_headers, p->oversign[i]))
			add_names(h, p->oversign[i], count_fields(hl, p->oversign[i]));
		add_names(h, p->oversign[i], 1);
	}
}

/*
 * Canonicalizes the fields named in `hlist` (colon-separated) as a verifier
 * selects them (RFC 6376 5.4.2): for each mention, the next field of that
 * name from the bottom up; a mention with none left is the null string.
 */
static void canon_selected(struct sbuf *out, enum dkim_canon canon, const char *hlist,
			   const struct header_list *hl)
{
	bool *used = xcalloc(hl->count + 1, sizeof(*used));
	const char *p = hlist;
	while (*p) {
		const char *e = strchr(p, ':');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		for (size_t i = hl->count; i-- > 0;) {
			const struct header *f = &hl->items[i];
			if (!used[i] && strlen(f->key) == n && strncasecmp(f->key, p, n) == 0) {
				used[i] = true;
				canon_header(out, canon, f->raw, f->raw_len, true);
				break;
			}
		}
		p += n;
		if (*p == ':')
			p++;
	}
	free(used);
}

/* Signs the sha256 digest of `data` (RSA PKCS#1 v1.5 / Ed25519 of the digest). */
static char *sign_data(const struct dkim_key *key, const struct sbuf *data, char **err)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		fatal("dkim: EVP_MD_CTX_new failed");
	unsigned char *sig = NULL;
	size_t siglen = 0;
	char *b64 = NULL;
	int ok;
	if (key->alg == DKIM_RSA_SHA256) {
		/* PKCS#1 v1.5 of sha256(data): the default padding of RSA keys. */
		ok = EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key->pkey) == 1 &&
		     EVP_DigestSign(ctx, NULL, &siglen, (const unsigned char *)data->s,
				    data->len) == 1;
		if (ok) {
			sig = xmalloc(siglen);
			ok = EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)data->s,
					    data->len) == 1;
		}
	} else {
		/* RFC 8463 3: PureEdDSA over the sha256 digest. */
		unsigned char digest[32];
		unsigned int dlen = 0;
		if (EVP_Digest(data->s, data->len, digest, &dlen, EVP_sha256(), NULL) != 1 ||
		    dlen != sizeof(digest))
			fatal("dkim: sha256 failed");
		ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, key->pkey) == 1 &&
		     EVP_DigestSign(ctx, NULL, &siglen, digest, sizeof(digest)) == 1;
		if (ok) {
			sig = xmalloc(siglen);
			ok = EVP_DigestSign(ctx, sig, &siglen, digest, sizeof(digest)) == 1;
		}
	}
	if (ok)
		b64 = base64(sig, siglen);
	else
		*err = ssl_error(key->alg == DKIM_RSA_SHA256 ? "RSA signing failed"
							     : "Ed25519 signing failed");
	free(sig);
	EVP_MD_CTX_free(ctx);
	return b64;
}

char *dkim_sign(const struct dkim_key *key, const struct dkim_sign_params *p,
		const char *header_block, size_t header_len, char **err)
{
	*err = NULL;
	if (!tag_value_ok(p->domain, false)) {
		*err = xasprintf("invalid DKIM domain (d=) \"%s\"", p->domain ? p->domain : "");
		return NULL;
	}
	if (p->timestamp < 0) {
		*err = xasprintf("invalid DKIM timestamp (t=) %ld", p->timestamp);
		return NULL;
	}
	if (!tag_value_ok(p->selector, false)) {
		*err = xasprintf("invalid DKIM selector (s=) \"%s\"",
				 p->selector ? p->selector : "");
		return NULL;
	}
	if (p->body_hash == NULL || strlen(p->body_hash) != 44 ||
	    strspn(p->body_hash,
		   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") != 43 ||
	    p->body_hash[43] != '=') {
		*err = xstrdup("invalid DKIM body hash: not 44 characters of base64");
		return NULL;
	}
	for (size_t i = 0; i < p->n_sign_headers + p->n_oversign; i++) {
		const char *n = i < p->n_sign_headers ? p->sign_headers[i]
						      : p->oversign[i - p->n_sign_headers];
		if (!tag_value_ok(n, false)) {
			*err = xasprintf("invalid header field name to sign \"%s\"", n ? n : "");
			return NULL;
		}
	}

	struct header_list hl = {0};
	header_list_parse(&hl, header_block, header_len);
	/* RFC 6376 5.4: From must be signed; verifiers reject a signature without. */
	const char *from_err = NULL;
	if (count_fields(&hl, "from") == 0)
		from_err = "the message has no From field to sign";
	else if (!in_list(p->sign_headers, p->n_sign_headers, "from") &&
		 !in_list(p->oversign, p->n_oversign, "from"))
		from_err = "the From field is not among the fields to sign";
	if (from_err) {
		*err = xstrdup(from_err);
		header_list_clear(&hl);
		return NULL;
	}
	struct sbuf h = {0};
	build_h(&h, p, &hl);

	struct folder f = {0};
	fold_add(&f, "DKIM-Signature:", strlen("DKIM-Signature:"));
	fold_tag(&f, "v", "1", true, false);
	fold_tag(&f, "a", key->alg == DKIM_RSA_SHA256 ? "rsa-sha256" : "ed25519-sha256", false,
		 false);
	char *c = xasprintf("%s/%s", canon_name(p->header_canon), canon_name(p->body_canon));
	fold_tag(&f, "c", c, false, false);
	free(c);
	fold_tag(&f, "d", p->domain, false, false);
	fold_tag(&f, "s", p->selector, false, false);
	if (p->timestamp > 0) {
		char t[32];
		snprintf(t, sizeof(t), "%ld", p->timestamp);
		fold_tag(&f, "t", t, false, false);
	}
	fold_tag(&f, "h", h.s, false, false);
	fold_tag(&f, "bh", p->body_hash, false, true);
	/* b= starts its own line: its value is always longer than a line. */
	fold_add(&f, ";", 1);
	fold_break(&f);
	fold_add(&f, "b=", 2);

	/* The signed data: the selected fields, then this field with an empty
	 * b= and no final CRLF (RFC 6376 3.7), all canonicalized. */
	struct sbuf data = {0};
	canon_selected(&data, p->header_canon, h.s, &hl);
	canon_header(&data, p->header_canon, f.sb.s, f.sb.len, false);
	header_list_clear(&hl);
	free(h.s);

	char *sig = sign_data(key, &data, err);
	free(data.s);
	if (sig == NULL) {
		free(f.sb.s);
		return NULL;
	}
	size_t slen = strlen(sig);
	for (size_t i = 0; i < slen;) {
		if (f.col >= FOLD_WIDTH)
			fold_break(&f);
		size_t n = FOLD_WIDTH - f.col;
		if (n > slen - i)
			n = slen - i;
		fold_add(&f, sig + i, n);
		i += n;
	}
	free(sig);
	fold_add(&f, "\r\n", 2);
	return f.sb.s;
}

/* --- key generation --- */

int dkim_keygen(const char *type, int bits, char **pem, char **txt, char **err)
{
	*pem = *txt = *err = NULL;
	EVP_PKEY *pkey = NULL;
	bool rsa = strcmp(type, "rsa") == 0;
	ERR_clear_error();
	if (rsa) {
		if (bits < RSA_BITS_MIN || bits > RSA_BITS_MAX) {
			*err = xasprintf("RSA keys must have %d to %d bits, not %d", RSA_BITS_MIN,
					 RSA_BITS_MAX, bits);
			return -1;
		}
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
	} else if (strcmp(type, "ed25519") == 0) {
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	} else {
		*err = xasprintf("unknown key type \"%s\" (rsa or ed25519)", type);
		return -1;
	}
	if (pkey == NULL) {
		*err = ssl_error("key generation failed");
		return -1;
	}

	/* The private key, PKCS#8 PEM. */
	BIO *bio = BIO_new(BIO_s_mem());
	if (bio == NULL || PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1)
		fatal("dkim: cannot write a PEM key");
	char *mem = NULL;
	long n = BIO_get_mem_data(bio, &mem);
	*pem = xstrndup(mem, (size_t)n);
	BIO_free(bio);

	/* The public key: DER SubjectPublicKeyInfo for RSA (RFC 6376 3.6.1),
	 * the raw 32 bytes for Ed25519 (RFC 8463 3.5). */
	unsigned char *pub = NULL;
	size_t publen = 0;
	if (rsa) {
		int len = i2d_PUBKEY(pkey, &pub);
		if (len <= 0)
			fatal("dkim: i2d_PUBKEY failed");
		publen = (size_t)len;
	} else {
		if (EVP_PKEY_get_raw_public_key(pkey, NULL, &publen) != 1)
			fatal("dkim: EVP_PKEY_get_raw_public_key failed");
		pub = OPENSSL_malloc(publen);
		if (pub == NULL || EVP_PKEY_get_raw_public_key(pkey, pub, &publen) != 1)
			fatal("dkim: EVP_PKEY_get_raw_public_key failed");
	}
	char *p64 = base64(pub, publen);
	OPENSSL_free(pub);
	*txt = xasprintf("v=DKIM1; k=%s; p=%s", rsa ? "rsa" : "ed25519", p64);
	free(p64);
	EVP_PKEY_free(pkey);
	return 0;
}
