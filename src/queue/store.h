/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The queue's storage backend: a table of functions over six ordered
 * key/value column families (DESIGN.md "Storage").  Calls are synchronous
 * and may block, so only the store workers (queue_worker.c) and start-up
 * code call them, never the event loop.  Implementations must be safe to
 * call from several threads at once.
 */
#ifndef ZMTA_STORE_H
#define ZMTA_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum store_cf {
	STORE_CF_META,     /* id → message metadata (JSON) */
	STORE_CF_BODY,     /* id ‖ chunk# (4 bytes, big-endian) → message bytes */
	STORE_CF_DLV,      /* id ‖ seq (3 hex digits) → delivery row (JSON) */
	STORE_CF_EVENTS,   /* endpoint name ‖ '\n' ‖ event id → event (JSON) */
	STORE_CF_SUPPRESS, /* "a:" address or "d:" domain → suppression entry (JSON) */
	STORE_CF_KV,       /* plugin name ‖ '\n' ‖ key → value (zmta.kv) */
	STORE_CF_ADMIN,    /* "pause\n" id → a pause; "op\n" id → an audit entry (JSON) */
	STORE_CF_ATTEMPTS, /* id ‖ seq ‖ attempt (4 hex digits) → a failed attempt (JSON) */
	STORE_CF_COUNT,
};

enum store_op_kind {
	STORE_PUT,
	STORE_DELETE,
	STORE_DELETE_RANGE, /* [key, end) */
};

struct store_op {
	enum store_op_kind kind;
	enum store_cf cf;
	const char *key;
	size_t klen;
	const char *val; /* PUT: the value; DELETE_RANGE: the end key */
	size_t vlen;
};

/* Called for each entry of a scan; return non-zero to stop. */
typedef int (*store_scan_cb)(void *arg, const char *key, size_t klen, const char *val, size_t vlen);

struct store;

struct store_backend {
	const char *name;
	/* Opens (creating when missing) the store in `dir`.  NULL and *err
	 * (malloc'ed) on failure; *corrupt tells a damaged store apart. */
	struct store *(*open)(const char *dir, bool *corrupt, char **err);
	void (*close)(struct store *s);
	/* Applies all ops atomically; with `sync`, durable on return. 0 or -1. */
	int (*write)(struct store *s, const struct store_op *ops, size_t n, bool sync, char **err);
	/* 1 and a malloc'ed value, 0 when absent, -1 on error. */
	int (*get)(struct store *s, enum store_cf cf, const char *key, size_t klen, char **val,
		   size_t *vlen, char **err);
	/* Visits keys starting with `prefix` (all keys for plen 0) in order. */
	int (*scan)(struct store *s, enum store_cf cf, const char *prefix, size_t plen,
		    store_scan_cb cb, void *arg, char **err);
	/* Visits each distinct key prefix of `plen` bytes once, in order,
	 * seeking past the rest of its keys (values are not read). */
	int (*prefixes)(struct store *s, enum store_cf cf, size_t plen, store_scan_cb cb, void *arg,
			char **err);
	/* 0, or -1 and *err when the store has had a background error (a
	 * failed flush or compaction): it must not be written again. */
	int (*health)(struct store *s, char **err);
	/* Writes the memtables out, so the write-ahead log they hold can go
	 * (space is short).  0 or -1. */
	int (*flush)(struct store *s, char **err);
	/* Disk space the store may take for its write-ahead log beyond its
	 * data: the guard keeps this much free besides queue.minFreeSpace. */
	uint64_t wal_cap;
};

extern const struct store_backend store_rocksdb;

#endif
