/* SPDX-License-Identifier: EUPL-1.2 */
/* The delivery engine as a whole: its TLS context, start and stop; see mta.h. */
#include "mta/mta_internal.h"

#include <stdlib.h>

#include <openssl/ssl.h>

#include "core/log.h"
#include "core/xmalloc.h"

struct mta *mta_new(struct event_base *base, const struct config *cfg, struct dns *dns,
		    struct outcome *outcome, struct workpool *crypto)
{
	struct mta *m = xcalloc(1, sizeof(*m));
	m->crypto = crypto;
	m->base = base;
	m->cfg = cfg;
	m->dns = dns;
	m->outcome = outcome;
	m->conns = u64map_new();
	m->tls_sessions = strmap_new();
	m->tls = SSL_CTX_new(TLS_client_method());
	if (m->tls == NULL)
		fatal("mta: cannot create a TLS context");
	/*
	 * Opportunistic TLS (RFC 7435): some encryption beats cleartext, so
	 * nothing is checked and old protocol versions and ciphers are taken
	 * (security level 0) rather than falling back to plain text.  The
	 * place for verification policies (requireTLS with checks, MTA-STS,
	 * DANE) is here: a context per policy, chosen per destination.
	 */
	SSL_CTX_set_verify(m->tls, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_security_level(m->tls, 0);
	SSL_CTX_set_cipher_list(m->tls, "DEFAULT:@SECLEVEL=0");
	SSL_CTX_set_min_proto_version(m->tls, TLS1_VERSION);
	/* Sessions are kept per destination address (mta_session.c). */
	SSL_CTX_set_session_cache_mode(m->tls, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	return m;
}

void mta_attach(struct mta *m, struct sched *sched, struct queue *queue)
{
	m->sched = sched;
	m->queue = queue;
}

void mta_check_drained(struct mta *m)
{
	if (!m->stopping || m->drained == NULL || u64map_count(m->conns) > 0)
		return;
	void (*drained)(void *) = m->drained;
	m->drained = NULL;
	drained(m->drained_arg);
}

void mta_shutdown(struct mta *m, void (*drained)(void *arg), void *arg)
{
	m->stopping = true;
	m->drained = drained;
	m->drained_arg = arg;
	/* Closing changes the map: collect first. */
	size_t n = u64map_count(m->conns), k = 0, pos = 0;
	uint64_t *ids = xcalloc(n ? n : 1, sizeof(*ids));
	uint64_t id;
	void *v;
	while (u64map_next(m->conns, &pos, &id, &v))
		ids[k++] = id;
	size_t waiting = 0;
	for (size_t i = 0; i < k; i++) {
		struct mta_conn *c = u64map_get(m->conns, ids[i]);
		if (c == NULL)
			continue;
		/* A server that has the whole message may be delivering it:
		 * cutting now would make the retry a duplicate. */
		if (c->state == MTA_DOT) {
			waiting++;
			continue;
		}
		mta_conn_close(c, 0, NULL);
	}
	free(ids);
	if (waiting > 0)
		log_info("stopping", "deliveries_waiting_for_reply=%zu", waiting);
	mta_check_drained(m);
}

void mta_free(struct mta *m)
{
	if (m == NULL)
		return;
	m->drained = NULL;
	size_t pos = 0;
	uint64_t id;
	void *v;
	while (u64map_next(m->conns, &pos, &id, &v)) {
		/* Unfinished deliveries stay in the store for the next start. */
		mta_conn_close(v, 0, NULL);
		pos = 0;
	}
	u64map_free(m->conns);
	pos = 0;
	const char *key;
	while (strmap_next(m->tls_sessions, &pos, &key, &v))
		SSL_SESSION_free(v);
	strmap_free(m->tls_sessions);
	SSL_CTX_free(m->tls);
	free(m);
}
