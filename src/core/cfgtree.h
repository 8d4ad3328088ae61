/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * A parsed YAML config file as a small tree that remembers, for every node,
 * the file and line it came from.  Deep merges keep that origin, so an error
 * found after merging still names the file and line the user has to edit.
 * libfyaml does the parsing; this module only builds the tree and merges.
 */
#ifndef ZMTA_CFGTREE_H
#define ZMTA_CFGTREE_H

#include <stdbool.h>
#include <stddef.h>

enum cfg_kind {
	CFG_NULL,   /* null, ~ or an empty value */
	CFG_SCALAR, /* any other scalar, kept as text */
	CFG_MAP,
	CFG_SEQ,
};

struct cfg_node {
	enum cfg_kind kind;
	char *key;   /* key in the parent mapping, NULL for the root and sequence items */
	char *value; /* CFG_SCALAR: the text */
	bool quoted; /* scalar was quoted or a block scalar: never a number or bool */
	char *file;  /* the file (or name) it was read from */
	int line;    /* 1-based */
	struct cfg_node **child; /* CFG_MAP entries in file order, or CFG_SEQ items */
	size_t nchild;
	size_t cap;
};

/* Message buffer for errors, formatted "FILE:LINE: message". */
struct cfg_error {
	char msg[512];
};

/*
 * Parses one YAML document whose root must be a mapping (an empty document
 * is an empty mapping).  `name` labels errors and nodes.  Returns a tree the
 * caller frees with cfg_node_free(), or NULL with err filled in.
 */
struct cfg_node *cfg_parse_string(const char *name, const char *text, size_t len,
				  struct cfg_error *err);
/* Reads and parses a file; a missing file is an error (callers check first). */
struct cfg_node *cfg_parse_file(const char *path, struct cfg_error *err);

/*
 * Deep-merges src over dst: mappings merge key by key, anything else in src
 * replaces what dst has.  Consumes src.
 */
void cfg_merge(struct cfg_node *dst, struct cfg_node *src);

/* The entry `key` of mapping `map`, or NULL. */
struct cfg_node *cfg_map_get(const struct cfg_node *map, const char *key);
/* Follows a dotted path ("log.level") through mappings; NULL when absent. */
struct cfg_node *cfg_lookup(const struct cfg_node *root, const char *path);

/* Same content (kinds, keys, values; not positions)? */
bool cfg_node_equal(const struct cfg_node *a, const struct cfg_node *b);

void cfg_node_free(struct cfg_node *node);

#endif
