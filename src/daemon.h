/*
 * The relay process: one libevent loop, its listeners, signals and
 * lifecycle.  Order at start: listeners are bound, the pid file is written,
 * then privileges are dropped; only then is "ready" logged.
 */
#ifndef ZMTA_DAEMON_H
#define ZMTA_DAEMON_H

#include <event2/event.h>

#include "core/config.h"

/*
 * Runs the relay until SIGTERM/SIGINT.  Takes ownership of cfg; `src` is kept
 * to reload the configuration on SIGHUP.  Returns the process exit code:
 * 0 after a clean stop, 1 when it could not start.
 */
int daemon_run(const struct config_source *src, struct config *cfg);

/*
 * A plugin compiled into the binary: called once the loop and the hook bus
 * exist, before any listener takes a connection, to register its hook
 * handlers (src/hook/hook.h).  Returns 0, or -1 with *err (the start fails).
 */
typedef int (*daemon_plugin_fn)(struct event_base *base, const struct config *cfg, char **err);
/* Sets the plugin daemon_run starts; call before it. */
void daemon_set_plugin(daemon_plugin_fn fn);

#endif
