/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Lua 5.4 plugins on the hook bus (docs/plugins.md).  Each plugin of
 * `plugins:` runs in its own sandboxed state on the loop thread: its file
 * runs once at load and registers handlers with zmta.hook(name, fn); each
 * hook call then runs in a coroutine of its own, which may wait for the
 * loop (zmta.sleep, zmta.http.request, zmta.dns.lookup, zmta.kv) while
 * other sessions go on.  An
 * instruction budget per call, a memory cap per state and a wall-time cap
 * per call keep a plugin from stalling or exhausting the relay; a plugin
 * that errors or passes a limit is logged with its name and line, and the
 * call ends by the plugin's onError (tempfail or continue).
 */
#ifndef ZMTA_LUA_PLUGIN_H
#define ZMTA_LUA_PLUGIN_H

#include <event2/event.h>

#include "core/config.h"

struct http_client;
struct plugins;

/*
 * Loads the enabled plugins of cfg (which must outlive them) and registers
 * their handlers.  NULL and *err ("FILE:LINE: ...") when one cannot load:
 * a syntax error, an error while its file runs, an unknown hook name.
 */
struct plugins *plugins_load(const struct config *cfg, struct event_base *base,
			     struct http_client *http, char **err);
/* The queue whose store keeps zmta.kv (it opens after the plugins load);
 * NULL before it closes: requests under way are dropped. */
struct queue;
void plugins_attach_queue(struct plugins *p, struct queue *queue);
/* The resolver zmta.dns.lookup asks (NULL before it is freed). */
struct dns;
void plugins_attach_dns(struct plugins *p, struct dns *dns);
/*
 * SIGHUP: reads every plugin's file again into a new state.  Calls under
 * way finish on the old states; new calls get the new ones.  When one
 * does not load, all keep their running state: -1 and *err.
 */
int plugins_reload(struct plugins *p, char **err);
/* Loads the plugins of cfg to check them, without a loop: what
 * check-config reports.  0, or -1 and *err. */
int plugins_check(const struct config *cfg, char **err);
/* Ends every pending call without answering it (the hook bus is being
 * shut down) and frees the states.  Accepts NULL. */
void plugins_free(struct plugins *p);

#endif
