/* Config loading, merging, validation and typed access; see config.h. */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/xmalloc.h"

extern const char zmta_default_config[];
extern const size_t zmta_default_config_len;

/* Stop listing problems after this many: the first ones matter. */
#define CONFIG_MAX_ERRORS 20

/* Problems found while validating, sorted by file and line before they are
 * shown, whatever order the merged tree holds them in. */
struct problems {
	struct problem {
		const char *file;
		int line;
		char *text;
	} *list;
	size_t count, cap;
};

static void problem_add(struct problems *p, const struct cfg_node *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void problem_add(struct problems *p, const struct cfg_node *at, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *what = xvasprintf(fmt, ap);
	va_end(ap);
	p->list = xreallocarray_grow(p->list, &p->cap, p->count + 1, sizeof(*p->list));
	p->list[p->count++] = (struct problem){at->file, at->line,
					       xasprintf("%s:%d: %s", at->file, at->line, what)};
	free(what);
}

static int problem_cmp(const void *a, const void *b)
{
	const struct problem *x = a, *y = b;
	int c = strcmp(x->file, y->file);
	return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* Joins the sorted problems, one per line, into a new string. */
static char *problems_join(struct problems *p)
{
	qsort(p->list, p->count, sizeof(*p->list), problem_cmp);
	size_t shown = p->count < CONFIG_MAX_ERRORS ? p->count : CONFIG_MAX_ERRORS;
	char *out = xstrdup("");
	for (size_t i = 0; i < shown; i++) {
		char *next = xasprintf("%s%s%s", out, i ? "\n" : "", p->list[i].text);
		free(out);
		out = next;
	}
	if (p->count > shown) {
		char *next = xasprintf("%s\n(%zu more problems not shown)", out, p->count - shown);
		free(out);
		out = next;
	}
	for (size_t i = 0; i < p->count; i++)
		free(p->list[i].text);
	free(p->list);
	return out;
}

bool config_parse_bool(const char *s, bool *out)
{
	if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0)
		*out = true;
	else if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0)
		*out = false;
	else
		return false;
	return true;
}

bool config_parse_int(const char *s, long long *out)
{
	char *end;
	if (*s == '\0' || isspace((unsigned char)*s))
		return false;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = v;
	return true;
}

struct unit {
	const char *name;
	uint64_t factor;
};

/* Parses "<digits>[ ]<unit>" with a unit from the table (case-insensitive);
 * a bare number takes `bare` as its factor. */
static bool parse_with_unit(const char *s, const struct unit *units, uint64_t bare, uint64_t *out)
{
	char *end;
	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	unsigned long long n = strtoull(s, &end, 10);
	if (errno != 0)
		return false;
	while (*end == ' ')
		end++;
	uint64_t factor = 0;
	if (*end == '\0') {
		factor = bare;
	} else {
		for (const struct unit *u = units; u->name != NULL; u++) {
			if (strcasecmp(end, u->name) == 0) {
				factor = u->factor;
				break;
			}
		}
	}
	if (factor == 0 || (n != 0 && n > UINT64_MAX / factor))
		return false;
	*out = n * factor;
	return true;
}

bool config_parse_duration(const char *s, uint64_t *ms)
{
	static const struct unit units[] = {
		{"ms", 1},
		{"s", 1000}, {"sec", 1000}, {"second", 1000}, {"seconds", 1000},
		{"m", 60000}, {"min", 60000}, {"minute", 60000}, {"minutes", 60000},
		{"h", 3600000}, {"hour", 3600000}, {"hours", 3600000},
		{"d", 86400000}, {"day", 86400000}, {"days", 86400000},
		{NULL, 0},
	};
	return parse_with_unit(s, units, 1, ms);
}

bool config_parse_size(const char *s, uint64_t *bytes)
{
	static const struct unit units[] = {
		{"b", 1},
		{"k", 1024}, {"kb", 1024},
		{"m", 1024 * 1024}, {"mb", 1024 * 1024},
		{"g", 1024 * 1024 * 1024}, {"gb", 1024 * 1024 * 1024},
		{NULL, 0},
	};
	return parse_with_unit(s, units, 1, bytes);
}

static const char *kind_name(enum cfg_kind kind)
{
	switch (kind) {
	case CFG_NULL:
		return "null";
	case CFG_SCALAR:
		return "a single value";
	case CFG_MAP:
		return "a mapping";
	case CFG_SEQ:
		return "a list";
	}
	return "?";
}

/* What the node holds, for "(got ...)" in messages. */
static void describe(const struct cfg_node *n, char *buf, size_t len)
{
	if (n->kind == CFG_SCALAR)
		snprintf(buf, len, "'%.60s'", n->value);
	else
		snprintf(buf, len, "%s", kind_name(n->kind));
}

static void validate_node(const struct cfg_node *n, const struct cfg_schema *s, const char *path,
			  struct problems *errors);

static void validate_map(const struct cfg_node *n, const struct cfg_schema *fields,
			 const char *path, struct problems *errors)
{
	for (size_t i = 0; i < n->nchild; i++) {
		const struct cfg_node *c = n->child[i];
		char *cpath = *path ? xasprintf("%s.%s", path, c->key) : xstrdup(c->key);
		const struct cfg_schema *f = fields;
		while (f->key != NULL && strcmp(f->key, c->key) != 0)
			f++;
		if (f->key == NULL)
			problem_add(errors, c, "unknown option %s", cpath);
		else
			validate_node(c, f, cpath, errors);
		free(cpath);
	}
}

static void validate_scalar(const struct cfg_node *n, const struct cfg_schema *s,
			    const char *path, struct problems *errors)
{
	char got[80];
	describe(n, got, sizeof(got));
	bool b;
	long long i;
	uint64_t u;

	switch (s->type) {
	case CT_BOOL:
		if (n->quoted || !config_parse_bool(n->value, &b))
			problem_add(errors, n, "option %s must be true or false (got %s)", path, got);
		break;
	case CT_INT:
		if (n->quoted || !config_parse_int(n->value, &i) || i < s->min || i > s->max)
			problem_add(errors, n, "option %s must be an integer from %lld to %lld (got %s)",
				   path, s->min, s->max, got);
		break;
	case CT_DURATION:
		if (!config_parse_duration(n->value, &u))
			problem_add(errors, n,
				   "option %s must be a duration such as 500 ms, 10 s, 5 min, 2 h, 3 days (got %s)",
				   path, got);
		else if (u < (uint64_t)s->min || u > (uint64_t)s->max)
			problem_add(errors, n, "option %s must be from %lld ms to %lld ms (got %s)",
				   path, s->min, s->max, got);
		break;
	case CT_SIZE:
		if (!config_parse_size(n->value, &u))
			problem_add(errors, n,
				   "option %s must be a size such as 512 KB, 30 MB, 1 GB (got %s)", path, got);
		else if (u < (uint64_t)s->min || u > (uint64_t)s->max)
			problem_add(errors, n, "option %s must be from %lld to %lld bytes (got %s)",
				   path, s->min, s->max, got);
		break;
	case CT_ENUM: {
		const char *const *c = s->choices;
		while (*c != NULL && strcmp(*c, n->value) != 0)
			c++;
		if (*c == NULL) {
			char list[256] = "";
			for (c = s->choices; *c != NULL; c++)
				snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
					 c == s->choices ? "" : ", ", *c);
			problem_add(errors, n, "option %s must be one of %s (got %s)", path, list, got);
		}
		break;
	}
	case CT_STRING:
		break;
	default:
		fatal("validate_scalar: not a scalar type");
	}
}

static void validate_node(const struct cfg_node *n, const struct cfg_schema *s, const char *path,
			  struct problems *errors)
{
	static const char *const wanted[] = {
		[CT_BOOL] = "true or false", [CT_INT] = "an integer",  [CT_STRING] = "a string",
		[CT_DURATION] = "a duration", [CT_SIZE] = "a size",   [CT_ENUM] = "a single value",
		[CT_MAP] = "a mapping",      [CT_DICT] = "a mapping", [CT_LIST] = "a list",
	};
	enum cfg_kind want_kind = s->type == CT_MAP || s->type == CT_DICT ? CFG_MAP
				  : s->type == CT_LIST			  ? CFG_SEQ
									  : CFG_SCALAR;
	if (n->kind == CFG_NULL) {
		if (!(s->flags & CF_NULLABLE))
			problem_add(errors, n, "option %s must be %s, not null", path,
				   wanted[s->type]);
		return;
	}
	if (n->kind != want_kind) {
		problem_add(errors, n, "option %s must be %s (got %s)", path, wanted[s->type],
			   kind_name(n->kind));
		return;
	}
	switch (s->type) {
	case CT_MAP:
		validate_map(n, s->sub, path, errors);
		break;
	case CT_DICT:
		for (size_t i = 0; i < n->nchild; i++) {
			char *cpath = xasprintf("%s.%s", path, n->child[i]->key);
			validate_node(n->child[i], &s->sub[0], cpath, errors);
			free(cpath);
		}
		break;
	case CT_LIST:
		for (size_t i = 0; i < n->nchild; i++) {
			char *cpath = xasprintf("%s[%zu]", path, i);
			validate_node(n->child[i], &s->sub[0], cpath, errors);
			free(cpath);
		}
		break;
	default:
		validate_scalar(n, s, path, errors);
	}
}

int config_validate(const struct cfg_node *root, char **errors)
{
	struct problems found = {0};
	validate_map(root, config_schema, "", &found);
	int count = (int)found.count;
	if (count > 0) {
		free(*errors);
		*errors = problems_join(&found);
	}
	return count;
}

/* --- typed access to a validated tree: absence is a broken invariant --- */

static const struct cfg_node *need(const struct cfg_node *root, const char *path)
{
	const struct cfg_node *n = cfg_lookup(root, path);
	if (n == NULL)
		fatal("config: option %s missing after merge", path);
	return n;
}

static char *get_str(const struct cfg_node *root, const char *path)
{
	const struct cfg_node *n = need(root, path);
	return n->kind == CFG_NULL ? NULL : xstrdup(n->value);
}

static bool get_bool(const struct cfg_node *root, const char *path)
{
	bool b = false;
	config_parse_bool(need(root, path)->value, &b);
	return b;
}

static long long get_int(const struct cfg_node *root, const char *path)
{
	long long v = 0;
	config_parse_int(need(root, path)->value, &v);
	return v;
}

/* Relative paths in the config are relative to the app folder. */
static char *get_path(const struct config *cfg, const char *path)
{
	char *p = get_str(cfg->tree, path);
	if (p != NULL && p[0] != '/' && cfg->app_dir != NULL) {
		char *abs = xasprintf("%s/%s", cfg->app_dir, p);
		free(p);
		p = abs;
	}
	return p;
}

static void config_fill(struct config *cfg)
{
	const struct cfg_node *t = cfg->tree;
	cfg->ident = get_str(t, "ident");
	cfg->user = get_str(t, "user");
	cfg->group = get_str(t, "group");
	cfg->pidfile = get_path(cfg, "pidfile");

	char *level = get_str(t, "log.level");
	log_level_parse(level, &cfg->log.level);
	free(level);
	cfg->log.file = get_path(cfg, "log.file");
	cfg->log.syslog = get_bool(t, "log.syslog");

	cfg->api.enabled = get_bool(t, "api.enabled");
	cfg->api.host = get_str(t, "api.host");
	cfg->api.port = (int)get_int(t, "api.port");

	cfg->queue.dir = get_path(cfg, "queue.dir");
}

static bool file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* Parses `path` and merges it into cfg->tree; returns -1 with *errors set. */
static int merge_file(struct config *cfg, const char *path, char **errors)
{
	struct cfg_error err;
	struct cfg_node *n = cfg_parse_file(path, &err);
	if (n == NULL) {
		*errors = xstrdup(err.msg);
		return -1;
	}
	cfg_merge(cfg->tree, n);
	cfg->files = xrealloc(cfg->files, sizeof(*cfg->files) * (size_t)(cfg->nfiles + 1));
	cfg->files[cfg->nfiles++] = xstrdup(path);
	return 0;
}

/* ZONEMTA_ENV names a file in config/: keep it a plain name. */
static bool env_name_ok(const char *env)
{
	if (*env == '\0' || *env == '.')
		return false;
	for (const char *p = env; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
			return false;
	return true;
}

struct config *config_load(const struct config_source *src, char **errors)
{
	struct cfg_error err;
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	*errors = NULL;

	cfg->tree = cfg_parse_string(CONFIG_BUILTIN_NAME, zmta_default_config,
				     zmta_default_config_len, &err);
	if (cfg->tree == NULL)
		fatal("built-in configuration does not parse: %s", err.msg);

	if (src->app_dir != NULL) {
		if (!file_exists(src->app_dir)) {
			*errors = xasprintf("%s: app folder does not exist", src->app_dir);
			goto fail;
		}
		cfg->app_dir = xstrdup(src->app_dir);
		const char *env = src->env ? src->env : getenv("ZONEMTA_ENV");
		if (env == NULL || *env == '\0')
			env = "development";
		if (!env_name_ok(env)) {
			*errors = xasprintf("ZONEMTA_ENV=%s: must be a plain name such as production",
					    env);
			goto fail;
		}
		char *files[2] = {
			xasprintf("%s/config/default.yaml", src->app_dir),
			xasprintf("%s/config/%s.yaml", src->app_dir, env),
		};
		int rc = 0;
		for (int i = 0; i < 2; i++) {
			if (rc == 0 && file_exists(files[i]))
				rc = merge_file(cfg, files[i], errors);
			free(files[i]);
		}
		if (rc != 0)
			goto fail;
	}
	if (src->extra_file != NULL && merge_file(cfg, src->extra_file, errors) != 0)
		goto fail;

	if (config_validate(cfg->tree, errors) != 0)
		goto fail;
	config_fill(cfg);
	return cfg;
fail:
	config_free(cfg);
	return NULL;
}

void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	free(cfg->app_dir);
	free(cfg->ident);
	free(cfg->user);
	free(cfg->group);
	free(cfg->pidfile);
	free(cfg->log.file);
	free(cfg->api.host);
	free(cfg->queue.dir);
	for (int i = 0; i < cfg->nfiles; i++)
		free(cfg->files[i]);
	free(cfg->files);
	cfg_node_free(cfg->tree);
	free(cfg);
}
