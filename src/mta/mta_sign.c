/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * DKIM at delivery: which keys sign (every key of the From: domain, or of a
 * parent that covers subdomains, of the zone's signing domain, and the
 * run-time keys the message's metadata names: RSA and Ed25519 side by
 * side, RFC 8463 section 6), the body hashes they
 * need (made at intake, or by the store thread for a message queued before
 * its key existed, or sent transformed), and the signing itself on a
 * crypto thread.  The signatures go on top of the header block as sent.
 */
#include "mta/mta_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/workpool.h"
#include "core/xmalloc.h"
#include "dkim/dkim.h"
#include "dkim/keyring.h"
#include "msg/header.h"

/* Signatures on one message at most. */
#define SIGN_MAX_KEYS 8

struct sign_key {
	char *domain, *selector;
	enum dkim_canon header_canon, body_canon;
	const struct dkim_key *key;
};

struct sign_job {
	struct workpool_job job;
	struct mta *m;
	uint64_t conn_id;
	char *header_block;
	size_t header_len;
	struct sign_key keys[SIGN_MAX_KEYS];
	char *body_hash[SIGN_MAX_KEYS];
	size_t nkeys;
	char *signatures; /* result: the DKIM-Signature fields, first key on top */
	char *error;
};

/* The domain of the (first) address in a From: value, lower case. */
static char *from_domain(const char *value)
{
	const char *end = strrchr(value, '>');
	const char *at = NULL;
	for (const char *p = value; *p && (end == NULL || p < end); p++)
		if (*p == '@')
			at = p;
	if (at == NULL)
		return NULL;
	size_t n = strcspn(at + 1, "> \t\r\n,;");
	char *d = xstrndup(at + 1, n);
	for (char *p = d; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return d;
}

static void add_key(struct sign_job *j, const char *domain, const char *selector,
		    enum dkim_canon hc, enum dkim_canon bc, const struct dkim_key *key)
{
	for (size_t i = 0; i < j->nkeys; i++)
		if (strcmp(j->keys[i].domain, domain) == 0 &&
		    strcmp(j->keys[i].selector, selector) == 0)
			return; /* the same signature twice says nothing more */
	if (j->nkeys == SIGN_MAX_KEYS)
		return;
	j->keys[j->nkeys++] = (struct sign_key){xstrdup(domain), xstrdup(selector), hc, bc, key};
}

/* Every usable dkim.keys entry of `domain` (with subdomains: only those
 * that cover subdomains); how many there were. */
static size_t add_config_keys(struct sign_job *j, const struct config *cfg, const char *domain,
			      bool subdomains)
{
	size_t n = 0;
	for (size_t i = 0; i < cfg->n_dkim_keys; i++) {
		const struct dkim_key_config *k = &cfg->dkim_keys[i];
		if (k->key == NULL || strcmp(k->domain, domain) != 0 ||
		    (subdomains && !k->subdomains))
			continue;
		add_key(j, k->domain, k->selector, (enum dkim_canon)k->header_canon,
			(enum dkim_canon)k->body_canon, k->key);
		n++;
	}
	return n;
}

/* The keys for mail From: `domain`: its own, else those of the nearest
 * parent that cover subdomains. */
static void add_author_keys(struct sign_job *j, const struct config *cfg, const char *domain)
{
	if (add_config_keys(j, cfg, domain, false) > 0)
		return;
	for (const char *p = strchr(domain, '.'); p != NULL; p = strchr(p + 1, '.'))
		if (add_config_keys(j, cfg, p + 1, true) > 0)
			return;
}

/* The run-time keys the metadata names ("dkimKeys": [{domain, selector,
 * key: hash}], from the HTTP config server); how many are not held. */
static size_t add_runtime_keys(struct sign_job *j, json_t *meta)
{
	size_t missing = 0, i;
	json_t *e;
	json_array_foreach (json_object_get(meta, "dkimKeys"), i, e) {
		const char *d = json_string_value(json_object_get(e, "domain"));
		const char *sel = json_string_value(json_object_get(e, "selector"));
		const char *h = json_string_value(json_object_get(e, "key"));
		if (d == NULL || sel == NULL || h == NULL)
			continue;
		const struct dkim_key *k = keyring_get(h);
		if (k == NULL)
			missing++;
		else
			add_key(j, d, sel, DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, k);
	}
	return missing;
}

static void sign_run(struct workpool_job *job)
{
	struct sign_job *j = (struct sign_job *)job;
	const struct config *cfg = j->m->cfg;
	char *out = xstrdup("");
	for (size_t i = 0; i < j->nkeys && j->error == NULL; i++) {
		const struct sign_key *k = &j->keys[i];
		struct dkim_sign_params p = {
		    .domain = k->domain,
		    .selector = k->selector,
		    .header_canon = k->header_canon,
		    .body_canon = k->body_canon,
		    .body_hash = j->body_hash[i],
		    .sign_headers = (const char *const *)cfg->dkim_sign_headers,
		    .n_sign_headers = cfg->n_dkim_sign_headers,
		    .oversign = (const char *const *)cfg->dkim_oversign,
		    .n_oversign = cfg->n_dkim_oversign,
		    .timestamp = (long)time(NULL),
		};
		char *sig = dkim_sign(k->key, &p, j->header_block, j->header_len, &j->error);
		if (sig != NULL) {
			char *joined = xasprintf("%s%s", out, sig);
			free(out);
			free(sig);
			out = joined;
		}
	}
	j->signatures = out;
}

static void sign_job_free(struct sign_job *j)
{
	free(j->header_block);
	for (size_t i = 0; i < j->nkeys; i++) {
		free(j->body_hash[i]);
		free(j->keys[i].domain);
		free(j->keys[i].selector);
	}
	free(j->signatures);
	free(j->error);
	free(j);
}

static void sign_done(struct workpool_job *job)
{
	struct sign_job *j = (struct sign_job *)job;
	struct mta_conn *c = u64map_get(j->m->conns, j->conn_id);
	if (c == NULL || c->state != MTA_SIGNING) {
		sign_job_free(j); /* the connection went away meanwhile */
		return;
	}
	struct mta_txn *x = &c->txn;
	if (j->error != NULL) {
		/* Sending unsigned what should be signed would hurt more. */
		log_msg(LOG_LEVEL_ERROR, c->msg_id, "dkim", "error=\"%s\" action=defer", j->error);
		mta_fail_rest(c, 451, "451 4.7.0 DKIM signing failed");
		sign_job_free(j);
		mta_transaction_done(c);
		return;
	}
	/* The signatures go on top of the header block (RFC 6376 5.6). */
	size_t slen = strlen(j->signatures);
	char *block = xmalloc(slen + x->header_len + 1);
	memcpy(block, j->signatures, slen);
	memcpy(block + slen, x->header_block, x->header_len);
	free(x->header_block);
	x->header_block = block;
	x->header_len += slen;
	log_msg(LOG_LEVEL_DEBUG, c->msg_id, "dkim", "signatures=%zu", j->nkeys);
	sign_job_free(j);
	mta_enter_state(c, MTA_MAIL);
}

static void hashes_loaded(void *arg, int rc, struct queue_message *msg)
{
	struct mta_conn *c = arg;
	struct mta_txn *x = &c->txn;
	x->reading = false;
	if (rc != 1) {
		log_msg(LOG_LEVEL_WARN, c->msg_id, "mta_load", "error=\"%s\"",
			rc == 0 ? "message no longer in the queue" : "cannot read the queue");
		mta_fail_rest(c, rc == 0 ? 550 : 451,
			      rc == 0 ? "550 5.0.0 message removed from queue"
				      : "451 4.3.0 queue read error");
		mta_transaction_done(c);
		return;
	}
	json_object_set(x->meta, "dkim", json_object_get(msg->meta, "dkim"));
	if (!mta_sign_start(c))
		mta_enter_state(c, MTA_MAIL);
}

/* Waiting for the run-time keys of a message queued before a restart. */
struct key_wait {
	struct mta *m;
	uint64_t conn_id;
};

static void keys_fetched(void *arg, bool ok)
{
	struct key_wait *w = arg;
	struct mta_conn *c = u64map_get(w->m->conns, w->conn_id);
	free(w);
	if (c == NULL || c->state != MTA_SIGNING)
		return; /* the connection went away meanwhile */
	if (!ok) {
		/* Sending unsigned what should be signed would hurt more. */
		log_msg(LOG_LEVEL_WARN, c->msg_id, "dkim",
			"error=\"the key source did not answer\" action=defer");
		mta_fail_rest(c, 451, "451 4.7.0 DKIM key not available, try again later");
		mta_transaction_done(c);
		return;
	}
	if (!mta_sign_start(c))
		mta_enter_state(c, MTA_MAIL);
}

bool mta_sign_start(struct mta_conn *c)
{
	struct mta *m = c->m;
	struct mta_txn *x = &c->txn;
	const struct config *cfg = m->cfg;
	json_t *runtime = json_object_get(x->meta, "dkimKeys");
	if ((cfg->n_dkim_keys == 0 && json_array_size(runtime) == 0) || m->crypto == NULL)
		return false;
	struct sign_job *j = xcalloc(1, sizeof(*j));
	struct header_list headers = {0};
	header_list_parse(&headers, x->header_block, x->header_len);
	int fi = header_list_find(&headers, "from");
	char *domain = fi >= 0 ? from_domain(headers.items[fi].value) : NULL;
	header_list_clear(&headers);
	if (domain != NULL)
		add_author_keys(j, cfg, domain);
	free(domain);
	if (c->zone->signing_domain != NULL)
		add_config_keys(j, cfg, c->zone->signing_domain, false);
	size_t missing_keys = add_runtime_keys(j, x->meta);
	if (missing_keys > 0 && !x->keys_fetched) {
		/* Held in memory only: after a restart, asked for again. */
		sign_job_free(j);
		x->keys_fetched = true;
		mta_enter_state(c, MTA_SIGNING);
		struct key_wait *w = xcalloc(1, sizeof(*w));
		*w = (struct key_wait){m, c->id};
		keyring_fetch(x->meta, keys_fetched, w);
		return true;
	}
	if (missing_keys > 0)
		log_msg(LOG_LEVEL_WARN, c->msg_id, "dkim",
			"keys_gone=%zu action=sign_without "
			"reason=\"the key source no longer offers them\"",
			missing_keys);
	if (j->nkeys == 0) {
		sign_job_free(j);
		return false;
	}
	unsigned wanted = 0;
	for (size_t i = 0; i < j->nkeys; i++)
		wanted |= 1u << j->keys[i].body_canon;
	if (!x->hashes_asked && x->transform != 0) {
		/* The hashes made at intake are of the body as stored, not as
		 * sent: the store makes them again through the same transform. */
		sign_job_free(j);
		x->hashes_asked = true;
		mta_enter_state(c, MTA_HASHING);
		x->reading = true;
		x->read_req = queue_message_load(m->queue, c->msg_id, wanted, x->transform,
						 hashes_loaded, c);
		return true;
	}
	json_t *dk = json_object_get(x->meta, "dkim");
	unsigned missing = 0;
	for (size_t i = 0; i < j->nkeys; i++) {
		const char *h = json_string_value(json_object_get(
		    dk,
		    j->keys[i].body_canon == DKIM_CANON_SIMPLE ? "bodyHashSimple" : "bodyHash"));
		if (h == NULL)
			missing |= 1u << j->keys[i].body_canon;
		else
			j->body_hash[i] = xstrdup(h);
	}
	if (missing != 0 && !x->hashes_asked) {
		/* Queued before a key needed this hash: the store makes it. */
		sign_job_free(j);
		x->hashes_asked = true;
		mta_enter_state(c, MTA_HASHING);
		x->reading = true;
		x->read_req = queue_message_load(m->queue, c->msg_id, missing, 0, hashes_loaded, c);
		return true;
	}
	if (missing != 0) {
		log_msg(LOG_LEVEL_WARN, c->msg_id, "dkim",
			"action=unsigned reason=\"no body hash for this canonicalization\"");
		sign_job_free(j);
		return false;
	}
	j->m = m;
	j->conn_id = c->id;
	j->header_block = xmalloc(x->header_len);
	memcpy(j->header_block, x->header_block, x->header_len);
	j->header_len = x->header_len;
	j->job.run = sign_run;
	j->job.done = sign_done;
	mta_enter_state(c, MTA_SIGNING);
	workpool_submit(m->crypto, &j->job);
	return true;
}
