/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The relay process: one libevent loop, its listeners, signals and
 * lifecycle.  Order at start: listeners are bound, the pid file is written,
 * then privileges are dropped; only then is "ready" logged.
 */
#ifndef ZMTA_DAEMON_H
#define ZMTA_DAEMON_H

#include <event2/event.h>

#include "core/config.h"

struct http_client;

/*
 * Runs the relay until SIGTERM/SIGINT.  Takes ownership of cfg; `src` is kept
 * to reload the configuration on SIGHUP.  Returns the process exit code:
 * 0 after a clean stop, 1 when it could not start.
 */
int daemon_run(const struct config_source *src, struct config *cfg);

/* What a plugin gets to work with; all of it outlives the plugin. */
struct plugin_env {
	struct event_base *base;
	const struct config *cfg;
	struct http_client *http;
};

/*
 * A plugin compiled into the binary: called once the loop, the hook bus
 * and the HTTP client exist, before any listener takes a connection, to
 * register its hook handlers (src/hook/hook.h).  Returns 0, or -1 with
 * *err (the start fails).
 */
typedef int (*daemon_plugin_fn)(const struct plugin_env *env, char **err);
/* Sets the plugin daemon_run starts; call before it. */
void daemon_set_plugin(daemon_plugin_fn fn);

#endif
