/* The end-to-end tests' C plugin (see test_plugin.c). */
#ifndef ZMTA_TEST_PLUGIN_H
#define ZMTA_TEST_PLUGIN_H

#include <event2/event.h>

#include "core/config.h"

int test_plugin_start(struct event_base *base, const struct config *cfg, char **err);

#endif
