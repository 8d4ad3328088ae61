/* SPDX-License-Identifier: EUPL-1.2 */
/* Server-side TLS contexts; see tls.h. */
#include "net/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/xmalloc.h"

struct tls_sni_ctx {
	SSL_CTX *ctx;
	X509 *cert; /* the leaf: X509_check_host() against the SNI name */
};

struct tls_server {
	int refs;
	SSL_CTX *ctx; /* the default certificate */
	struct tls_sni_ctx *sni;
	size_t n_sni;
};

/* OpenSSL's last error as text, for a message. */
static const char *ssl_error(void)
{
	static char buf[256];
	unsigned long e = ERR_peek_last_error();
	if (e == 0)
		return "unknown error";
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
	(void)alert;
	struct tls_server *t = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (name == NULL)
		return SSL_TLSEXT_ERR_OK;
	for (size_t i = 0; i < t->n_sni; i++) {
		if (X509_check_host(t->sni[i].cert, name, 0, 0, NULL) == 1) {
			SSL_set_SSL_CTX(ssl, t->sni[i].ctx);
			break;
		}
	}
	/* An unknown name gets the default certificate, as most servers do. */
	return SSL_TLSEXT_ERR_OK;
}

/* One context with `key` and `cert`; NULL and *err when they do not load
 * or do not belong together. */
static SSL_CTX *context_new(const struct tls_config *cfg, const char *key, const char *cert,
			    char **err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL)
		fatal("SSL_CTX_new: %s", ssl_error());
	SSL_CTX_set_min_proto_version(ctx, cfg->min_version);
	long opts = SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
		    SSL_OP_NO_RENEGOTIATION;
	if (!cfg->session_tickets)
		opts |= SSL_OP_NO_TICKET;
	SSL_CTX_set_options(ctx, opts);
	/* Sessions resume from the server's cache too (TLS 1.2 without
	 * tickets); the id context is what a session belongs to. */
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"zone-mta", 8);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		*err = xasprintf("cannot use the certificate %s: %s", cert, ssl_error());
		goto fail;
	}
	/* Loading the key also checks it against the certificate. */
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
			*err = xasprintf("the key %s does not match the certificate %s", key, cert);
			ERR_clear_error();
		} else {
			*err = xasprintf("cannot use the key %s: %s", key, ssl_error());
		}
		goto fail;
	}
	if (cfg->ca != NULL) {
		FILE *f = fopen(cfg->ca, "r");
		if (f == NULL) {
			*err = xasprintf("cannot read the CA file %s", cfg->ca);
			goto fail;
		}
		X509 *x;
		int n = 0;
		while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
			SSL_CTX_add_extra_chain_cert(ctx, x); /* takes x */
			n++;
		}
		fclose(f);
		ERR_clear_error();
		if (n == 0) {
			*err = xasprintf("no certificate in the CA file %s", cfg->ca);
			goto fail;
		}
	}
	if (cfg->ciphers != NULL && SSL_CTX_set_cipher_list(ctx, cfg->ciphers) != 1) {
		*err = xasprintf("no usable cipher in \"%s\"", cfg->ciphers);
		ERR_clear_error();
		goto fail;
	}
	if (cfg->ciphersuites != NULL && SSL_CTX_set_ciphersuites(ctx, cfg->ciphersuites) != 1) {
		*err = xasprintf("no usable TLS 1.3 cipher suite in \"%s\"", cfg->ciphersuites);
		ERR_clear_error();
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

struct tls_server *tls_server_new(const struct tls_config *cfg, char **err)
{
	struct tls_server *t = xcalloc(1, sizeof(*t));
	t->refs = 1;
	t->ctx = context_new(cfg, cfg->key, cfg->cert, err);
	if (t->ctx == NULL) {
		free(t);
		return NULL;
	}
	t->sni = xcalloc(cfg->n_sni ? cfg->n_sni : 1, sizeof(*t->sni));
	for (size_t i = 0; i < cfg->n_sni; i++) {
		const struct tls_sni_config *s = &cfg->sni[i];
		SSL_CTX *ctx = context_new(cfg, s->key, s->cert, err);
		if (ctx == NULL) {
			tls_server_unref(t);
			return NULL;
		}
		t->sni[t->n_sni].ctx = ctx;
		t->sni[t->n_sni].cert = SSL_CTX_get0_certificate(ctx);
		t->n_sni++;
	}
	if (t->n_sni > 0) {
		SSL_CTX_set_tlsext_servername_callback(t->ctx, on_servername);
		SSL_CTX_set_tlsext_servername_arg(t->ctx, t);
	}
	return t;
}

struct tls_server *tls_server_ref(struct tls_server *t)
{
	t->refs++;
	return t;
}

void tls_server_unref(struct tls_server *t)
{
	if (t == NULL || --t->refs > 0)
		return;
	for (size_t i = 0; i < t->n_sni; i++)
		SSL_CTX_free(t->sni[i].ctx);
	free(t->sni);
	SSL_CTX_free(t->ctx);
	free(t);
}

/* Each SSL holds a reference to its tls_server (the SNI callback's
 * argument), dropped when OpenSSL frees the SSL. */
static int ssl_ref_index = -1;

static void ssl_ref_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			 void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	tls_server_unref(ptr);
}

SSL *tls_server_ssl(struct tls_server *t)
{
	if (ssl_ref_index < 0)
		ssl_ref_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, ssl_ref_free);
	SSL *ssl = SSL_new(t->ctx);
	if (ssl == NULL || ssl_ref_index < 0)
		fatal("SSL_new: %s", ssl_error());
	SSL_set_ex_data(ssl, ssl_ref_index, tls_server_ref(t));
	return ssl;
}

void tls_describe(SSL *ssl, char *buf, size_t len)
{
	snprintf(buf, len, "%s with cipher %s", SSL_get_version(ssl),
		 SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
}

int tls_version_parse(const char *name)
{
	static const struct {
		const char *name;
		int version;
	} versions[] = {{"TLSv1", TLS1_VERSION},
			{"TLSv1.1", TLS1_1_VERSION},
			{"TLSv1.2", TLS1_2_VERSION},
			{"TLSv1.3", TLS1_3_VERSION}};
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++)
		if (strcmp(versions[i].name, name) == 0)
			return versions[i].version;
	return 0;
}
