/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Server-side TLS contexts for the listeners (SMTP and the HTTP API): a
 * certificate chain and key, optionally more of them chosen by SNI, the
 * minimum protocol version, ciphers, session tickets.  A context is built
 * whole from its files or not at all, so a reload that finds a broken file
 * keeps the running one.  Contexts are reference counted: a session keeps
 * the one its handshake started with while a reload swaps in the next.
 */
#ifndef ZMTA_TLS_H
#define ZMTA_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "core/config.h"

struct tls_server;

/* Builds the contexts; NULL and *err (naming the file) when one cannot. */
struct tls_server *tls_server_new(const struct tls_config *cfg, char **err);
struct tls_server *tls_server_ref(struct tls_server *t);
/* Drops a reference; the last frees. NULL is ignored. */
void tls_server_unref(struct tls_server *t);
/* A new server-side SSL for one connection; it keeps the contexts alive
 * until it is freed, whatever reloads happen meanwhile.  On the loop
 * thread only (the reference count is not atomic). */
SSL *tls_server_ssl(struct tls_server *t);
/* "TLSv1.3" and the cipher's name: what a Received header says. */
void tls_describe(SSL *ssl, char *buf, size_t len);
/* Parses "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"; 0 when unknown. */
int tls_version_parse(const char *name);

#endif
