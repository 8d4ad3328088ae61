/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * RocksDB backend of the queue store.  One database, three column families.
 * Durability comes from synced writes of the WAL (group-committed by the
 * store worker), never from turning sync off.  A database that RocksDB
 * reports as corrupt is never repaired here: the operator moves it aside.
 */
#include "queue/store.h"

#include <rocksdb/c.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

static const char *const cf_names[STORE_CF_COUNT + 1] = {
    [STORE_CF_META] = "meta",     [STORE_CF_BODY] = "body",         [STORE_CF_DLV] = "dlv",
    [STORE_CF_EVENTS] = "events", [STORE_CF_SUPPRESS] = "suppress", [STORE_CF_KV] = "kv",
    [STORE_CF_ADMIN] = "admin",   [STORE_CF_ATTEMPTS] = "attempts",
};

/* Memtable sizes.  Bodies pass through the body memtable on their way to
 * disk, so its size bounds the memory a large message costs: small enough
 * for a 50 MB message to stream in well under 64 MB of RSS. */
#define BODY_WRITE_BUFFER (8 << 20)
#define OTHER_WRITE_BUFFER (16 << 20)
#define ALL_WRITE_BUFFERS (40 << 20)
#define MAX_TOTAL_WAL (64 << 20)
#define WAL_RECYCLE 4

struct store {
	rocksdb_t *db;
	rocksdb_options_t *opts;
	rocksdb_options_t *body_opts;
	rocksdb_column_family_handle_t *cf[STORE_CF_COUNT];
	rocksdb_column_family_handle_t *default_cf;
	rocksdb_writeoptions_t *wsync, *wnosync;
	rocksdb_readoptions_t *ropts;
};

/* Takes a RocksDB error string (freeing it) into a malloc'ed message. */
static char *take_error(char *rerr)
{
	char *msg = xstrdup(rerr);
	rocksdb_free(rerr);
	return msg;
}

static void rdb_close(struct store *s)
{
	if (s == NULL)
		return;
	for (int i = 0; i < STORE_CF_COUNT; i++)
		if (s->cf[i] != NULL)
			rocksdb_column_family_handle_destroy(s->cf[i]);
	if (s->default_cf != NULL)
		rocksdb_column_family_handle_destroy(s->default_cf);
	if (s->db != NULL)
		rocksdb_close(s->db);
	rocksdb_writeoptions_destroy(s->wsync);
	rocksdb_writeoptions_destroy(s->wnosync);
	rocksdb_readoptions_destroy(s->ropts);
	rocksdb_options_destroy(s->opts);
	rocksdb_options_destroy(s->body_opts);
	free(s);
}

static struct store *rdb_open(const char *dir, bool *corrupt, char **err)
{
	struct store *s = xcalloc(1, sizeof(*s));
	char *rerr = NULL;
	*corrupt = false;

	s->opts = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(s->opts, 1);
	rocksdb_options_set_create_missing_column_families(s->opts, 1);
	/* Verify checksums and refuse to open on any inconsistency. */
	rocksdb_options_set_paranoid_checks(s->opts, 1);
	rocksdb_options_increase_parallelism(s->opts, 2);
	rocksdb_options_set_compression(s->opts, rocksdb_lz4_compression);
	rocksdb_options_set_db_write_buffer_size(s->opts, ALL_WRITE_BUFFERS);
	/* Bodies pass through the WAL, and a WAL file lives until every column
	 * family's data in it is flushed: the small meta and dlv memtables
	 * would keep hundreds of MB of body WAL alive.  Past this size they
	 * are flushed, so old WAL files go (and recovery has less to replay). */
	rocksdb_options_set_max_total_wal_size(s->opts, MAX_TOTAL_WAL);
	/* Reuse finished WAL files instead of creating new ones: writing over
	 * pages already allocated costs less than growing a fresh file. */
	rocksdb_options_set_recycle_log_file_num(s->opts, WAL_RECYCLE);
	rocksdb_options_set_write_buffer_size(s->opts, OTHER_WRITE_BUFFER);
	/* RocksDB's own LOG (data/LOG) is written on the queue's disk: when
	 * that fills, its writer fails once and asserts (aborting the
	 * process) on the next line, which RocksDB writes at once to report
	 * the error.  Only fatal lines, then; zone-mta logs store errors. */
	rocksdb_options_set_info_log_level(s->opts, 4 /* FATAL_LEVEL */);
	rocksdb_options_set_keep_log_file_num(s->opts, 2);
	/* No automatic recovery from a background error: RocksDB's resume
	 * thread syncs a write-ahead log that has failed before, and its
	 * debug assertions abort the process (seen with ENOSPC).  A failed
	 * store stays out of service until restart (queue_worker.c). */
	rocksdb_options_t *no_resume = rocksdb_options_create();
	rocksdb_get_options_from_string(s->opts, "max_bgerror_resume_count=0", no_resume, &rerr);
	if (rerr != NULL) {
		*err = take_error(rerr);
		rocksdb_options_destroy(no_resume);
		rdb_close(s);
		return NULL;
	}
	rocksdb_options_destroy(s->opts);
	s->opts = no_resume;
	s->body_opts = rocksdb_options_create_copy(s->opts);
	rocksdb_options_set_write_buffer_size(s->body_opts, BODY_WRITE_BUFFER);
	rocksdb_options_set_max_write_buffer_number(s->body_opts, 2);

	s->wsync = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(s->wsync, 1);
	s->wnosync = rocksdb_writeoptions_create();
	s->ropts = rocksdb_readoptions_create();
	rocksdb_readoptions_set_verify_checksums(s->ropts, 1);

	const char *names[STORE_CF_COUNT + 1] = {"default"};
	const rocksdb_options_t *cfopts[STORE_CF_COUNT + 1];
	rocksdb_column_family_handle_t *handles[STORE_CF_COUNT + 1] = {0};
	cfopts[0] = s->opts;
	for (int i = 0; i < STORE_CF_COUNT; i++) {
		if (cf_names[i] == NULL)
			fatal("store: column family %d has no name", i);
		names[i + 1] = cf_names[i];
		cfopts[i + 1] = i == STORE_CF_BODY ? s->body_opts : s->opts;
	}
	s->db = rocksdb_open_column_families(s->opts, dir, STORE_CF_COUNT + 1, names, cfopts,
					     handles, &rerr);
	if (s->db == NULL) {
		*err = take_error(rerr);
		/* RocksDB prefixes damage with "Corruption:"; a missing or
		 * truncated CURRENT/MANIFEST also means a damaged store. */
		*corrupt = strstr(*err, "Corruption") != NULL || strstr(*err, "MANIFEST") != NULL ||
			   strstr(*err, "CURRENT") != NULL;
		rdb_close(s);
		return NULL;
	}
	s->default_cf = handles[0];
	for (int i = 0; i < STORE_CF_COUNT; i++)
		s->cf[i] = handles[i + 1];
	return s;
}

static int rdb_write(struct store *s, const struct store_op *ops, size_t n, bool sync, char **err)
{
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	for (size_t i = 0; i < n; i++) {
		const struct store_op *op = &ops[i];
		switch (op->kind) {
		case STORE_PUT:
			rocksdb_writebatch_put_cf(wb, s->cf[op->cf], op->key, op->klen, op->val,
						  op->vlen);
			break;
		case STORE_DELETE:
			rocksdb_writebatch_delete_cf(wb, s->cf[op->cf], op->key, op->klen);
			break;
		case STORE_DELETE_RANGE:
			rocksdb_writebatch_delete_range_cf(wb, s->cf[op->cf], op->key, op->klen,
							   op->val, op->vlen);
			break;
		}
	}
	char *rerr = NULL;
	rocksdb_write(s->db, sync ? s->wsync : s->wnosync, wb, &rerr);
	rocksdb_writebatch_destroy(wb);
	if (rerr != NULL) {
		*err = take_error(rerr);
		return -1;
	}
	return 0;
}

static int rdb_get(struct store *s, enum store_cf cf, const char *key, size_t klen, char **val,
		   size_t *vlen, char **err)
{
	char *rerr = NULL;
	char *v = rocksdb_get_cf(s->db, s->ropts, s->cf[cf], key, klen, vlen, &rerr);
	if (rerr != NULL) {
		*err = take_error(rerr);
		return -1;
	}
	if (v == NULL)
		return 0;
	/* Hand out memory the caller can free() with the rest of our code. */
	*val = xmalloc(*vlen + 1);
	memcpy(*val, v, *vlen);
	(*val)[*vlen] = '\0';
	rocksdb_free(v);
	return 1;
}

static int rdb_scan(struct store *s, enum store_cf cf, const char *prefix, size_t plen,
		    store_scan_cb cb, void *arg, char **err)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[cf]);
	if (plen > 0)
		rocksdb_iter_seek(it, prefix, plen);
	else
		rocksdb_iter_seek_to_first(it);
	for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		if (plen > 0 && (klen < plen || memcmp(k, prefix, plen) != 0))
			break;
		const char *v = rocksdb_iter_value(it, &vlen);
		if (cb(arg, k, klen, v, vlen) != 0)
			break;
	}
	char *rerr = NULL;
	rocksdb_iter_get_error(it, &rerr);
	rocksdb_iter_destroy(it);
	if (rerr != NULL) {
		*err = take_error(rerr);
		return -1;
	}
	return 0;
}

static int rdb_prefixes(struct store *s, enum store_cf cf, size_t plen, store_scan_cb cb, void *arg,
			char **err)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->ropts, s->cf[cf]);
	char *next = xmalloc(plen + 1);
	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);) {
		size_t klen;
		const char *k = rocksdb_iter_key(it, &klen);
		if (klen < plen) {
			rocksdb_iter_next(it);
			continue;
		}
		memcpy(next, k, plen);
		if (cb(arg, next, plen, NULL, 0) != 0)
			break;
		/* The smallest key after every key with this prefix. */
		next[plen] = '\xff';
		rocksdb_iter_seek(it, next, plen + 1);
		while (rocksdb_iter_valid(it)) {
			k = rocksdb_iter_key(it, &klen);
			if (klen < plen || memcmp(k, next, plen) != 0)
				break;
			rocksdb_iter_next(it);
		}
	}
	free(next);
	char *rerr = NULL;
	rocksdb_iter_get_error(it, &rerr);
	rocksdb_iter_destroy(it);
	if (rerr != NULL) {
		*err = take_error(rerr);
		return -1;
	}
	return 0;
}

static int rdb_health(struct store *s, char **err)
{
	char *n = rocksdb_property_value(s->db, "rocksdb.background-errors");
	long errors = n ? strtol(n, NULL, 10) : 0;
	rocksdb_free(n);
	if (errors == 0)
		return 0;
	*err = xasprintf("RocksDB had %ld background error%s (a write, flush or compaction "
			 "failed)",
			 errors, errors == 1 ? "" : "s");
	return -1;
}

static int rdb_flush(struct store *s, char **err)
{
	rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
	rocksdb_flushoptions_set_wait(fo, 1);
	char *rerr = NULL;
	for (int i = 0; i < STORE_CF_COUNT && rerr == NULL; i++)
		rocksdb_flush_cf(s->db, fo, s->cf[i], &rerr);
	rocksdb_flushoptions_destroy(fo);
	if (rerr != NULL) {
		*err = take_error(rerr);
		return -1;
	}
	return 0;
}

const struct store_backend store_rocksdb = {
    .name = "rocksdb",
    .open = rdb_open,
    .close = rdb_close,
    .write = rdb_write,
    .get = rdb_get,
    .scan = rdb_scan,
    .prefixes = rdb_prefixes,
    .health = rdb_health,
    .flush = rdb_flush,
    .wal_cap = MAX_TOTAL_WAL,
};
