/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Per-sender settings from an HTTP server (docs/http-config.md; ZoneMTA's
 * core/http-config), built-in handlers on the hook bus: smtp:mail_from
 * asks (or the cache answers), smtp:rcpt_to applies the recipient limit,
 * message:headers applies the rest (for /send it asks there); the DKIM
 * keys go to the keyring (dkim/keyring.h), which asks this module again
 * after a restart.
 */
#ifndef ZMTA_HTTP_CONFIG_H
#define ZMTA_HTTP_CONFIG_H

struct config;
struct http_client;
struct http_config;

/* Registers the handlers when httpConfig.url is set; NULL otherwise. */
struct http_config *http_config_new(const struct config *cfg, struct http_client *http);
/* After hook_shutdown. */
void http_config_free(struct http_config *h);

#endif
