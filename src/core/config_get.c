/* SPDX-License-Identifier: EUPL-1.2 */
/* Typed access to a validated configuration tree; see config_internal.h. */
#include "core/config_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"

/* The scalar text at `path` under `root` (NULL for null).  When absent and
 * `fields` is given, the schema default of that field; else fatal. */
const char *raw_value(const struct cfg_node *root, const char *path,
		      const struct cfg_schema *fields)
{
	const struct cfg_node *n = cfg_lookup(root, path);
	if (n != NULL)
		return n->kind == CFG_NULL ? NULL : n->value;
	/* Follow the path through the fields' schema to the default. */
	const char *seg = path;
	while (fields != NULL) {
		size_t len = strcspn(seg, ".");
		const struct cfg_schema *f = fields;
		while (f->key != NULL && (strlen(f->key) != len || memcmp(f->key, seg, len) != 0))
			f++;
		if (f->key == NULL)
			break;
		if (seg[len] == '\0') {
			if (f->def != NULL)
				return strcmp(f->def, "~") == 0 ? NULL : f->def;
			break;
		}
		fields = f->type == CT_MAP ? f->sub : NULL;
		seg += len + 1;
	}
	fatal("config: option %s missing after merge", path);
}

char *get_str_in(const struct cfg_node *root, const char *path, const struct cfg_schema *fields)
{
	const char *v = raw_value(root, path, fields);
	return v ? xstrdup(v) : NULL;
}

bool get_bool_in(const struct cfg_node *root, const char *path, const struct cfg_schema *fields)
{
	bool b = false;
	config_parse_bool(raw_value(root, path, fields), &b);
	return b;
}

long long get_int_in(const struct cfg_node *root, const char *path, const struct cfg_schema *fields)
{
	long long v = 0;
	config_parse_int(raw_value(root, path, fields), &v);
	return v;
}

uint64_t get_duration_in(const struct cfg_node *root, const char *path,
			 const struct cfg_schema *fields)
{
	uint64_t v = 0; /* null (CF_NULLABLE): 0 */
	const char *raw = raw_value(root, path, fields);
	if (raw != NULL)
		config_parse_duration(raw, &v);
	return v;
}

uint64_t get_size_in(const struct cfg_node *root, const char *path, const struct cfg_schema *fields)
{
	uint64_t v = 0;
	config_parse_size(raw_value(root, path, fields), &v);
	return v;
}

struct rate get_rate_in(const struct cfg_node *root, const char *path,
			const struct cfg_schema *fields)
{
	struct rate r = {0, 0};
	const char *v = raw_value(root, path, fields);
	if (v != NULL)
		config_parse_rate(v, &r);
	return r;
}

/* Relative paths in the config are relative to the app folder. */
/* A path relative to the app folder made absolute; takes `p`. */
char *path_in_app(const struct config *cfg, char *p)
{
	if (p != NULL && p[0] != '/' && cfg->app_dir != NULL) {
		char *abs = xasprintf("%s/%s", cfg->app_dir, p);
		free(p);
		p = abs;
	}
	return p;
}

char *get_path(const struct config *cfg, const char *path)
{
	return path_in_app(cfg, get_str(cfg->tree, path));
}

char *lowercase(char *s)
{
	for (char *p = s; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return s;
}

/* A list of strings (absent: empty), lower-cased, trimmed of a leading '@'. */
char **get_string_list(const struct cfg_node *list, size_t *n, bool lower)
{
	*n = list ? list->nchild : 0;
	char **out = xcalloc(*n ? *n : 1, sizeof(char *));
	for (size_t i = 0; i < *n; i++) {
		out[i] = xstrdup(list->child[i]->value);
		if (lower)
			lowercase(out[i]);
	}
	return out;
}

char **get_domains(const struct cfg_node *list, size_t *n)
{
	*n = list ? list->nchild : 0;
	char **out = xcalloc(*n ? *n : 1, sizeof(char *));
	for (size_t i = 0; i < *n; i++) {
		const char *d = list->child[i]->value;
		out[i] = lowercase(xstrdup(d[0] == '@' ? d + 1 : d));
	}
	return out;
}

const struct cfg_schema *schema_field(const struct cfg_schema *fields, const char *key)
{
	for (; fields->key != NULL; fields++)
		if (strcmp(fields->key, key) == 0)
			return fields;
	fatal("config: no schema for %s", key);
}

/* A list of address ranges; entries that do not parse are left out here
 * (check_listeners reports them). */
struct cidr *get_cidrs(const struct cfg_node *list, size_t *n)
{
	size_t count = list != NULL && list->kind == CFG_SEQ ? list->nchild : 0;
	struct cidr *out = xcalloc(count ? count : 1, sizeof(*out));
	*n = 0;
	for (size_t i = 0; i < count; i++)
		if (cidr_parse(list->child[i]->value, &out[*n]) == 0)
			(*n)++;
	return out;
}
