/* SPDX-License-Identifier: EUPL-1.2 */
/* Helpers shared by unit tests. */
#ifndef ZMTA_TEST_UTIL_H
#define ZMTA_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

/* The built-in defaults with `yaml` merged over them; fails the test on a
 * configuration error.  The caller frees it with config_free(). */
static inline struct config *test_config(const char *yaml)
{
	char path[] = "/tmp/zmta-unit-XXXXXX.yaml";
	int fd = mkstemps(path, 5);
	if (fd < 0 || write(fd, yaml, strlen(yaml)) != (ssize_t)strlen(yaml)) {
		fprintf(stderr, "test_config: cannot write %s\n", path);
		abort();
	}
	close(fd);
	struct config_source src = {.extra_file = path};
	char *errors = NULL;
	struct config *cfg = config_load(&src, &errors);
	unlink(path);
	if (cfg == NULL) {
		fprintf(stderr, "test_config: %s\n", errors);
		abort();
	}
	return cfg;
}

#endif
