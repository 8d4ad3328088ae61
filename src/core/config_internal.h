/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * What config.c shares with its other parts: the list of problems found
 * while loading, and the checks in config_check.c.
 */
#ifndef ZMTA_CONFIG_INTERNAL_H
#define ZMTA_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* Typed access to the validated tree (config_get.c).  A path that is
 * absent takes the default of its field in `fields` when given; absence
 * otherwise is a broken invariant (fatal).  Paths in the config are
 * relative to the app folder. */
const char *raw_value(const struct cfg_node *root, const char *path,
		      const struct cfg_schema *fields);
char *get_str_in(const struct cfg_node *root, const char *path, const struct cfg_schema *fields);
bool get_bool_in(const struct cfg_node *root, const char *path, const struct cfg_schema *fields);
long long get_int_in(const struct cfg_node *root, const char *path,
		     const struct cfg_schema *fields);
uint64_t get_duration_in(const struct cfg_node *root, const char *path,
			 const struct cfg_schema *fields);
uint64_t get_size_in(const struct cfg_node *root, const char *path,
		     const struct cfg_schema *fields);
struct rate get_rate_in(const struct cfg_node *root, const char *path,
			const struct cfg_schema *fields);
#define get_str(root, path) get_str_in(root, path, NULL)
#define get_bool(root, path) get_bool_in(root, path, NULL)
#define get_int(root, path) get_int_in(root, path, NULL)
#define get_duration(root, path) get_duration_in(root, path, NULL)
/* A path relative to the app folder made absolute; takes `p`. */
char *path_in_app(const struct config *cfg, char *p);
char *get_path(const struct config *cfg, const char *path);
char *lowercase(char *s);
/* A list of strings (absent: empty), optionally lower-cased. */
char **get_string_list(const struct cfg_node *list, size_t *n, bool lower);
/* Domains, lower-cased, trimmed of a leading '@'. */
char **get_domains(const struct cfg_node *list, size_t *n);
const struct cfg_schema *schema_field(const struct cfg_schema *fields, const char *key);
/* Address ranges; entries that do not parse are left out (check_listeners
 * reports them). */
struct cidr *get_cidrs(const struct cfg_node *list, size_t *n);

/* SOCKS5 proxies (config_integrations.c). */
struct socks_proxy *parse_socks_proxy(const char *url, const char **why);
void free_socks_proxy(struct socks_proxy *p);
void fill_proxies(struct config *cfg, struct problems *found);
/* rspamd.* (config_integrations.c). */
void fill_rspamd(struct config *cfg, struct problems *found);
void free_rspamd(struct rspamd_config *r);
/* httpConfig.* (config_integrations.c). */
void fill_http_config(struct config *cfg, struct problems *found);
void free_http_config(struct http_config_config *h);

#endif
