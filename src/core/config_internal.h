/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * What config.c shares with its other parts: the list of problems found
 * while loading, and the checks in config_check.c.
 */
#ifndef ZMTA_CONFIG_INTERNAL_H
#define ZMTA_CONFIG_INTERNAL_H

#include <stddef.h>

#include "core/cfgtree.h"
#include "core/config.h"

/* Problems found while validating, sorted by file and line before they are
 * shown, whatever order the merged tree holds them in. */
struct problems {
	struct problem {
		const char *file;
		int line;
		char *text;
	} * list;
	size_t count, cap;
	struct problems *warnings; /* where validation puts its warnings */
};

/* Adds "FILE:LINE: what" for the node `at`. */
void problem_add(struct problems *p, const struct cfg_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The checks that need more than one option at a time (config_check.c):
 * what would fail at start, and what would silently expose more than was
 * asked.  fill_zone_auth also reads each zone's auth.passFile. */
void check_listeners(const struct config *cfg, struct problems *found);
void check_api(const struct config *cfg, struct problems *found);
void fill_zone_auth(struct config *cfg, struct problems *found);
/* bounces.templates (config_templates.c): the folder's texts, checked. */
void fill_dsn_templates(struct config *cfg, const char *dir, const struct cfg_node *at,
			struct problems *found);
void free_dsn_templates(struct bounce_config *b);

#endif
