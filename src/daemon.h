/*
 * The relay process: one libevent loop, its listeners, signals and
 * lifecycle.  Order at start: listeners are bound, the pid file is written,
 * then privileges are dropped; only then is "ready" logged.
 */
#ifndef ZMTA_DAEMON_H
#define ZMTA_DAEMON_H

#include "core/config.h"

/*
 * Runs the relay until SIGTERM/SIGINT.  Takes ownership of cfg; `src` is kept
 * to reload the configuration on SIGHUP.  Returns the process exit code:
 * 0 after a clean stop, 1 when it could not start.
 */
int daemon_run(const struct config_source *src, struct config *cfg);

#endif
