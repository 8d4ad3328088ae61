/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Two small open-addressing hash maps: string keys (copied, owned by the map)
 * and 64-bit integer keys.  Values are caller-owned pointers.  Used for zones
 * and domains by name, and for matching worker answers to requests by id.
 * Not thread-safe: each map lives on one thread.
 */
#ifndef ZMTA_HMAP_H
#define ZMTA_HMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct strmap;
struct u64map;

struct strmap *strmap_new(void);
/* Frees the map and its key copies, not the values.  Accepts NULL. */
void strmap_free(struct strmap *m);
void *strmap_get(const struct strmap *m, const char *key);
/* Sets key → value (value must not be NULL); returns the previous value or NULL. */
void *strmap_put(struct strmap *m, const char *key, void *value);
/* Removes key; returns its value or NULL. */
void *strmap_remove(struct strmap *m, const char *key);
size_t strmap_count(const struct strmap *m);
/* Iterates: start with *pos = 0; returns false at the end.  The map must not
 * change during an iteration. */
bool strmap_next(const struct strmap *m, size_t *pos, const char **key, void **value);

struct u64map *u64map_new(void);
void u64map_free(struct u64map *m);
void *u64map_get(const struct u64map *m, uint64_t key);
void *u64map_put(struct u64map *m, uint64_t key, void *value);
void *u64map_remove(struct u64map *m, uint64_t key);
size_t u64map_count(const struct u64map *m);
bool u64map_next(const struct u64map *m, size_t *pos, uint64_t *key, void **value);

#endif
