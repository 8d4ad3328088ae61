/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * DKIM at delivery: which keys sign (the From: domain's, or a parent's that
 * covers subdomains, and the zone's signing domain), the body hashes they
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
#include "msg/header.h"

struct sign_job {
	struct workpool_job job;
	struct mta *m;
	uint64_t conn_id;
	char *header_block;
	size_t header_len;
	const struct dkim_key_config *keys[2];
	char *body_hash[2];
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

/* The key for mail From: `domain`: its own, else a parent's that covers
 * subdomains. */
static const struct dkim_key_config *key_for(const struct config *cfg, const char *domain)
{
	const struct dkim_key_config *k = config_dkim_key(cfg, domain);
	if (k != NULL)
		return k;
	for (const char *p = strchr(domain, '.'); p != NULL; p = strchr(p + 1, '.')) {
		k = config_dkim_key(cfg, p + 1);
		if (k != NULL && k->subdomains)
			return k;
	}
	return NULL;
}

static void sign_run(struct workpool_job *job)
{
	struct sign_job *j = (struct sign_job *)job;
	const struct config *cfg = j->m->cfg;
	char *out = xstrdup("");
	for (size_t i = 0; i < j->nkeys && j->error == NULL; i++) {
		const struct dkim_key_config *k = j->keys[i];
		struct dkim_sign_params p = {
		    .domain = k->domain,
		    .selector = k->selector,
		    .header_canon = (enum dkim_canon)k->header_canon,
		    .body_canon = (enum dkim_canon)k->body_canon,
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
	for (size_t i = 0; i < j->nkeys; i++)
		free(j->body_hash[i]);
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

bool mta_sign_start(struct mta_conn *c)
{
	struct mta *m = c->m;
	struct mta_txn *x = &c->txn;
	const struct config *cfg = m->cfg;
	if (cfg->n_dkim_keys == 0 || m->crypto == NULL)
		return false;
	struct sign_job *j = xcalloc(1, sizeof(*j));
	struct header_list headers = {0};
	header_list_parse(&headers, x->header_block, x->header_len);
	int fi = header_list_find(&headers, "from");
	char *domain = fi >= 0 ? from_domain(headers.items[fi].value) : NULL;
	header_list_clear(&headers);
	const struct dkim_key_config *author = domain ? key_for(cfg, domain) : NULL;
	free(domain);
	const struct dkim_key_config *zone = c->zone->signing_domain
						 ? config_dkim_key(cfg, c->zone->signing_domain)
						 : NULL;
	if (author != NULL)
		j->keys[j->nkeys++] = author;
	if (zone != NULL && zone != author)
		j->keys[j->nkeys++] = zone;
	if (j->nkeys == 0) {
		sign_job_free(j);
		return false;
	}
	unsigned wanted = 0;
	for (size_t i = 0; i < j->nkeys; i++)
		wanted |= 1u << j->keys[i]->body_canon;
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
		    j->keys[i]->body_canon == DKIM_CANON_SIMPLE ? "bodyHashSimple" : "bodyHash"));
		if (h == NULL)
			missing |= 1u << j->keys[i]->body_canon;
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
