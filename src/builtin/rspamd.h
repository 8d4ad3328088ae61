/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Rspamd spam checks of arriving mail (docs/rspamd.md), a built-in handler
 * of message:store: the message is streamed from the store to Rspamd's
 * /checkv2 through the HTTP client, and the answer decides per
 * rspamd.actions.  Nothing blocks: the reply to DATA (or /send) waits on
 * the hook bus.
 */
#ifndef ZMTA_RSPAMD_H
#define ZMTA_RSPAMD_H

struct config;
struct http_client;
struct rspamd;

/* Registers the handler when rspamd.enabled; NULL otherwise. */
struct rspamd *rspamd_new(const struct config *cfg, struct http_client *http);
/* After hook_shutdown (no check is pending then). */
void rspamd_free(struct rspamd *r);

#endif
