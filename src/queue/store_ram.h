/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The RAM storage backend (store_ram.c), for unit tests: the queue without
 * RocksDB or a file system.  A store is named by the `dir` given to open()
 * and keeps its data across close() and open() until store_ram_destroy().
 */
#ifndef ZMTA_STORE_RAM_H
#define ZMTA_STORE_RAM_H

#include <stddef.h>

#include "queue/store.h"

extern const struct store_backend store_ram;

/* The next `n` writes to the store `dir` fail, as an I/O error would. */
void store_ram_fail_writes(const char *dir, int n);
/* The store `dir` reports a background error from now on (health()). */
void store_ram_background_error(const char *dir);
/* Entries in one column family of the store `dir`. */
size_t store_ram_count(const char *dir, enum store_cf cf);
/* Forgets the store `dir` and its data. */
void store_ram_destroy(const char *dir);

#endif
