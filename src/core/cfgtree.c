/* SPDX-License-Identifier: EUPL-1.2 */
/* YAML → position-tracking tree, and deep merge; see cfgtree.h. */
#include "core/cfgtree.h"

#include <errno.h>
#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

/* Nesting deeper than this is surely not a config file; refusing it keeps
 * recursive walks bounded. */
#define CFG_MAX_DEPTH 32

static struct cfg_node *node_new(enum cfg_kind kind, const char *file, int line)
{
	struct cfg_node *n = xcalloc(1, sizeof(*n));
	n->kind = kind;
	n->file = xstrdup(file);
	n->line = line;
	return n;
}

static void node_add(struct cfg_node *parent, struct cfg_node *child)
{
	parent->child = xreallocarray_grow(parent->child, &parent->cap, parent->nchild + 1,
					   sizeof(*parent->child));
	parent->child[parent->nchild++] = child;
}

void cfg_node_free(struct cfg_node *node)
{
	if (node == NULL)
		return;
	for (size_t i = 0; i < node->nchild; i++)
		cfg_node_free(node->child[i]);
	free(node->child);
	free(node->key);
	free(node->value);
	free(node->file);
	free(node);
}

static int event_line(struct fy_event *ev)
{
	const struct fy_mark *m = fy_event_start_mark(ev);
	return m ? m->line + 1 : 0;
}

/* A plain scalar that YAML 1.2's core schema reads as null. */
static bool is_plain_null(const char *s, size_t len)
{
	return len == 0 || (len == 1 && s[0] == '~') ||
	       (len == 4 && (memcmp(s, "null", 4) == 0 || memcmp(s, "Null", 4) == 0 ||
			     memcmp(s, "NULL", 4) == 0));
}

static struct cfg_node *scalar_node(struct fy_event *ev, const char *name)
{
	size_t len;
	const char *text = fy_token_get_text(ev->scalar.value, &len);
	enum fy_scalar_style style = fy_token_scalar_style(ev->scalar.value);
	bool quoted = style != FYSS_PLAIN;

	if (text == NULL) {
		text = "";
		len = 0;
	}
	if (!quoted && is_plain_null(text, len))
		return node_new(CFG_NULL, name, event_line(ev));
	struct cfg_node *n = node_new(CFG_SCALAR, name, event_line(ev));
	n->value = xstrndup(text, len);
	n->quoted = quoted;
	return n;
}

static void set_error(struct cfg_error *err, const char *name, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_error(struct cfg_error *err, const char *name, int line, const char *fmt, ...)
{
	char what[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(err->msg, sizeof(err->msg), "%s:%d: %s", name, line, what);
	else
		snprintf(err->msg, sizeof(err->msg), "%s: %s", name, what);
}

/* Takes the first error libfyaml collected, with its position. */
static void syntax_error(struct fy_diag *diag, struct cfg_error *err, const char *name)
{
	void *iter = NULL;
	struct fy_diag_error *de = fy_diag_errors_iterate(diag, &iter);
	if (de != NULL)
		set_error(err, name, de->line, "YAML syntax error: %s", de->msg); /* 1-based */
	else
		set_error(err, name, 0, "YAML syntax error");
}

/*
 * Builds the tree from parser events.  A stack of open containers; a mapping
 * alternates key and value, so a pending key is held until its value arrives.
 */
struct builder {
	struct cfg_node *stack[CFG_MAX_DEPTH + 1];
	char *pending_key[CFG_MAX_DEPTH + 1];
	int pending_line[CFG_MAX_DEPTH + 1];
	int depth; /* number of open containers */
	struct cfg_node *root;
	int documents;
};

/* Places a finished node into the open container; returns -1 on error. */
static int builder_place(struct builder *b, struct cfg_node *n, const char *name,
			 struct cfg_error *err)
{
	if (b->depth == 0) {
		if (n->kind == CFG_NULL) {
			/* An empty document: an empty mapping. */
			n->kind = CFG_MAP;
		} else if (n->kind != CFG_MAP) {
			set_error(err, name, n->line, "the top level must be a mapping of options");
			cfg_node_free(n);
			return -1;
		}
		b->root = n;
		return 0;
	}
	struct cfg_node *parent = b->stack[b->depth - 1];
	if (parent->kind == CFG_SEQ) {
		node_add(parent, n);
		return 0;
	}
	char **key = &b->pending_key[b->depth - 1];
	if (*key == NULL) {
		/* n is a key. */
		if (n->kind == CFG_MAP || n->kind == CFG_SEQ) {
			set_error(err, name, n->line, "a key must be a plain name");
			cfg_node_free(n);
			return -1;
		}
		*key = xstrdup(n->kind == CFG_SCALAR ? n->value : "null");
		b->pending_line[b->depth - 1] = n->line;
		if (cfg_map_get(parent, *key) != NULL) {
			set_error(err, name, n->line, "duplicate key '%s'", *key);
			cfg_node_free(n);
			return -1;
		}
		cfg_node_free(n);
		return 0;
	}
	n->key = *key;
	*key = NULL;
	if (n->line == 0) /* an empty value has no position: use its key's */
		n->line = b->pending_line[b->depth - 1];
	node_add(parent, n);
	return 0;
}

struct cfg_node *cfg_parse_string(const char *name, const char *text, size_t len,
				  struct cfg_error *err)
{
	struct fy_diag_cfg dcfg;
	fy_diag_cfg_default(&dcfg);
	dcfg.fp = NULL;
	struct fy_diag *diag = fy_diag_create(&dcfg);
	if (diag == NULL)
		fatal("libfyaml: cannot create diagnostics");
	fy_diag_set_collect_errors(diag, true);

	struct fy_parse_cfg pcfg = {.flags = FYPCF_QUIET | FYPCF_DEFAULT_VERSION_1_2, .diag = diag};
	struct fy_parser *fyp = fy_parser_create(&pcfg);
	if (fyp == NULL)
		fatal("libfyaml: cannot create parser");

	struct builder b = {0};
	bool failed = false;
	if (fy_parser_set_string(fyp, text, len) != 0) {
		syntax_error(diag, err, name);
		failed = true;
	}

	struct fy_event *ev;
	while (!failed && (ev = fy_parser_parse(fyp)) != NULL) {
		struct cfg_node *done = NULL;
		int line = event_line(ev);

		switch (ev->type) {
		case FYET_DOCUMENT_START:
			if (++b.documents > 1) {
				set_error(err, name, line, "only one YAML document is allowed");
				failed = true;
			}
			break;
		case FYET_MAPPING_START:
		case FYET_SEQUENCE_START:
			if (b.depth > 0 && b.stack[b.depth - 1]->kind == CFG_MAP &&
			    b.pending_key[b.depth - 1] == NULL) {
				set_error(err, name, line, "a key must be a plain name");
				failed = true;
			} else if (b.depth == CFG_MAX_DEPTH) {
				set_error(err, name, line, "nesting deeper than %d levels",
					  CFG_MAX_DEPTH);
				failed = true;
			} else {
				b.stack[b.depth] = node_new(
				    ev->type == FYET_MAPPING_START ? CFG_MAP : CFG_SEQ, name, line);
				b.pending_key[b.depth] = NULL;
				b.depth++;
			}
			break;
		case FYET_MAPPING_END:
		case FYET_SEQUENCE_END:
			done = b.stack[--b.depth];
			break;
		case FYET_SCALAR:
			done = scalar_node(ev, name);
			break;
		case FYET_ALIAS:
			set_error(err, name, line,
				  "YAML aliases are not supported in config files");
			failed = true;
			break;
		default:
			break;
		}
		fy_parser_event_free(fyp, ev);
		if (done != NULL && builder_place(&b, done, name, err) != 0)
			failed = true;
	}
	if (!failed && fy_parser_get_stream_error(fyp)) {
		syntax_error(diag, err, name);
		failed = true;
	}

	for (int i = 0; i < b.depth; i++) {
		free(b.pending_key[i]);
		cfg_node_free(b.stack[i]);
	}
	fy_parser_destroy(fyp);
	fy_diag_destroy(diag);
	if (failed) {
		cfg_node_free(b.root);
		return NULL;
	}
	if (b.root == NULL) /* no document at all: an empty file */
		b.root = node_new(CFG_MAP, name, 1);
	return b.root;
}

struct cfg_node *cfg_parse_file(const char *path, struct cfg_error *err)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		set_error(err, path, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	char *text = NULL;
	size_t len = 0, cap = 0, n;
	char chunk[8192];
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		text = xreallocarray_grow(text, &cap, len + n, 1);
		memcpy(text + len, chunk, n);
		len += n;
	}
	bool rerr = ferror(f);
	fclose(f);
	if (rerr) {
		free(text);
		set_error(err, path, 0, "cannot read: %s", strerror(errno));
		return NULL;
	}
	struct cfg_node *root = cfg_parse_string(path, text ? text : "", len, err);
	free(text);
	return root;
}

struct cfg_node *cfg_map_get(const struct cfg_node *map, const char *key)
{
	if (map == NULL || map->kind != CFG_MAP)
		return NULL;
	for (size_t i = 0; i < map->nchild; i++)
		if (strcmp(map->child[i]->key, key) == 0)
			return map->child[i];
	return NULL;
}

struct cfg_node *cfg_lookup(const struct cfg_node *root, const char *path)
{
	char part[128];
	const struct cfg_node *n = root;
	while (n != NULL && *path != '\0') {
		size_t len = strcspn(path, ".");
		if (len >= sizeof(part))
			return NULL;
		memcpy(part, path, len);
		part[len] = '\0';
		n = cfg_map_get(n, part);
		path += len + (path[len] == '.');
	}
	return (struct cfg_node *)n;
}

void cfg_merge(struct cfg_node *dst, struct cfg_node *src)
{
	if (dst->kind != CFG_MAP || src->kind != CFG_MAP) {
		/* Replace dst's content with src's, keeping dst's key. */
		for (size_t i = 0; i < dst->nchild; i++)
			cfg_node_free(dst->child[i]);
		free(dst->child);
		free(dst->value);
		free(dst->file);
		char *key = dst->key;
		*dst = *src;
		dst->key = key;
		free(src->key);
		free(src);
		return;
	}
	for (size_t i = 0; i < src->nchild; i++) {
		struct cfg_node *s = src->child[i];
		struct cfg_node *d = cfg_map_get(dst, s->key);
		if (d != NULL)
			cfg_merge(d, s);
		else
			node_add(dst, s);
	}
	free(src->child);
	src->child = NULL;
	src->nchild = 0;
	cfg_node_free(src);
}

bool cfg_node_equal(const struct cfg_node *a, const struct cfg_node *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	if (a->kind != b->kind || a->nchild != b->nchild)
		return false;
	if (a->kind == CFG_SCALAR && strcmp(a->value, b->value) != 0)
		return false;
	for (size_t i = 0; i < a->nchild; i++) {
		const struct cfg_node *x = a->child[i], *y = b->child[i];
		if ((x->key == NULL) != (y->key == NULL) || (x->key && strcmp(x->key, y->key) != 0))
			return false;
		if (!cfg_node_equal(x, y))
			return false;
	}
	return true;
}
