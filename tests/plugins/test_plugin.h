/* SPDX-License-Identifier: EUPL-1.2 */
/* The end-to-end tests' C plugin (see test_plugin.c). */
#ifndef ZMTA_TEST_PLUGIN_H
#define ZMTA_TEST_PLUGIN_H

#include "daemon.h"

int test_plugin_start(const struct plugin_env *env, char **err);

#endif
