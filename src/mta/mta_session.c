/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The SMTP client state machine of a delivery connection (RFC 5321, with
 * PIPELINING RFC 2920, SIZE RFC 1870, 8BITMIME RFC 6152, SMTPUTF8 RFC 6531,
 * STARTTLS RFC 3207).  Each state's action (the command it sends, the
 * deadline it arms) is in mta_enter_state(); each reply is handled by the
 * state it arrives in.  Outcomes go to the outcome stage per recipient.
 */
#include "mta/mta_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "core/stats.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/utf8.h"
#include "core/xmalloc.h"
#include "queue/suppress.h"

const char *mta_strstate(enum mta_state st)
{
	switch (st) {
	case MTA_HOOK:
		return "hook";
	case MTA_RESOLVING:
		return "resolving";
	case MTA_CONNECTING:
		return "connecting";
	case MTA_SOCKS:
		return "socks";
	case MTA_GREETING:
		return "greeting";
	case MTA_EHLO:
		return "ehlo";
	case MTA_HELO:
		return "helo";
	case MTA_STARTTLS:
		return "starttls";
	case MTA_HANDSHAKE:
		return "handshake";
	case MTA_AUTH:
		return "auth";
	case MTA_LOADING:
		return "loading";
	case MTA_HASHING:
		return "hashing";
	case MTA_SIGNING:
		return "signing";
	case MTA_MAIL:
		return "mail";
	case MTA_RCPT:
		return "rcpt";
	case MTA_DATA:
		return "data";
	case MTA_BODY:
		return "body";
	case MTA_DOT:
		return "dot";
	case MTA_RSET:
		return "rset";
	case MTA_IDLE:
		return "idle";
	case MTA_QUIT:
		return "quit";
	case MTA_CLOSED:
		return "closed";
	}
	return "?";
}

bool mta_state_before_session(enum mta_state st)
{
	return st == MTA_CONNECTING || st == MTA_SOCKS || st == MTA_GREETING || st == MTA_EHLO ||
	       st == MTA_HELO || st == MTA_STARTTLS || st == MTA_HANDSHAKE;
}

void mta_send_line(struct mta_conn *c, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

void mta_log_attempt(struct mta_conn *c, const char *response)
{
	const struct mta_target *t = c->cur < c->ntargets ? &c->targets[c->cur] : NULL;
	const struct mta_txn *x = &c->txn;
	log_msg(LOG_LEVEL_INFO, c->msg_id, "attempt",
		"zone=%s domain=%s local=%s mx=%s remote=%s%s%s tls=%s rcpts=%zu accepted=%zu "
		"response=\"%s\" ms=%lld",
		c->zone->name, x->batch ? x->batch->domain : "-",
		c->local_addr ? c->local_addr : "any", t ? t->host : "-", t ? t->addr : "-",
		c->proxy ? " proxy=" : "", c->proxy ? c->proxy->url : "",
		c->tls ? c->tls_version : "no", x->batch ? x->batch->n : 0, x->delivered, response,
		(long long)(clock_mono_ms() - x->started_ms));
}

/* --- transactions --- */

static void on_wake(void *arg, struct sched_batch *batch)
{
	struct mta_conn *c = arg;
	evtimer_del(c->idle_ev);
	if (batch == NULL) {
		mta_conn_quit(c);
		return;
	}
	mta_transaction_start(c, batch);
}

void mta_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct mta_conn *c = arg;
	sched_unpark(c->m->sched, c->slot);
	mta_conn_quit(c);
}

void mta_transaction_start(struct mta_conn *c, struct sched_batch *batch)
{
	struct mta_txn *x = &c->txn;
	memset(x, 0, sizeof(*x));
	x->batch = batch;
	x->item = xcalloc(batch->n, sizeof(*x->item));
	if (c->slot->messages > 1) /* the scheduler counts this one already */
		stats_connection_reuse(c->zone->name);
	x->started_ms = clock_mono_ms();
	c->in_txn = true;
	memcpy(c->msg_id, batch->items[0]->id, sizeof(c->msg_id));
	mta_enter_state(c, c->failed_txn ? MTA_RSET : MTA_LOADING);
}

/* The transaction is over: take more mail for this connection, wait for
 * some (connectionCache), or close. */
void mta_transaction_done(struct mta_conn *c)
{
	mta_txn_clear(c);
	if (c->m->stopping) {
		mta_conn_quit(c);
		return;
	}
	struct sched_batch *batch = sched_next_batch(c->m->sched, c->slot);
	if (batch != NULL) {
		mta_transaction_start(c, batch);
		return;
	}
	if (c->slot->messages >= c->zone->cache_reuse || c->zone->cache_ttl_ms == 0) {
		mta_conn_quit(c);
		return;
	}
	mta_enter_state(c, MTA_IDLE);
}

/* What the server cannot take fails for good, with the reason; NULL if it
 * can take the message (perhaps transformed). */
static const char *refusal(struct mta_conn *c)
{
	struct mta_txn *x = &c->txn;
	uint64_t size = (uint64_t)json_integer_value(json_object_get(x->meta, "bodySize")) +
			x->header_len;
	if (c->size_ok && c->size_limit > 0 && size > c->size_limit)
		return "552 5.3.4 message is larger than the receiving server's SIZE limit";
	/* RFC 6531 3.2: no downgrade of addresses or UTF-8 headers exists. */
	if (x->smtputf8 && !c->smtputf8)
		return "553 5.6.7 message needs SMTPUTF8, which the receiving server lacks";
	return NULL;
}

static void message_loaded(void *arg, int rc, struct queue_message *msg);

/* Fails the batch when a load found no message; true when it did. */
static bool load_ok(struct mta_conn *c, int rc)
{
	c->txn.reading = false;
	if (rc == 1)
		return true;
	const char *why = rc == 0 ? "message no longer in the queue" : "cannot read the queue";
	log_msg(LOG_LEVEL_WARN, c->msg_id, "mta_load", "error=\"%s\"", why);
	mta_fail_rest(c, rc == 0 ? 550 : 451,
		      rc == 0 ? "550 5.0.0 message removed from queue"
			      : "451 4.3.0 queue read error");
	mta_transaction_done(c);
	return false;
}

/* The header block is final: transform, sign, send. */
static void message_ready(struct mta_conn *c)
{
	mta_body_prepare(c);
	if (!mta_sign_start(c))
		mta_enter_state(c, MTA_MAIL);
}

static void sender_headers_done(void *arg, const struct hook_result *res)
{
	struct mta_conn *c = arg;
	struct mta_txn *x = &c->txn;
	c->hook_id = 0;
	if (res->verdict == HOOK_REJECT || res->verdict == HOOK_TEMPFAIL) {
		header_list_clear(&c->hook_headers);
		mta_hook_refused(c, res);
		mta_transaction_done(c);
		return;
	}
	/* The handlers' changes become the header block sent and signed. */
	free(x->header_block);
	x->header_len = header_list_raw_size(&c->hook_headers);
	x->header_block = xmalloc(x->header_len + 1);
	header_list_serialize(&c->hook_headers, x->header_block);
	header_list_clear(&c->hook_headers);
	message_ready(c);
}

/* sender:headers may change the header block before it is transformed and
 * signed. */
static void run_sender_headers(struct mta_conn *c)
{
	struct mta_txn *x = &c->txn;
	const struct sched_item *first = x->batch->items[0];
	const struct mta_target *t = c->cur < c->ntargets ? &c->targets[c->cur] : NULL;
	header_list_parse(&c->hook_headers, x->header_block, x->header_len);
	c->hook_ctx = (struct hook_ctx){
	    .address = first->recipient,
	    .from = json_string_value(json_object_get(x->meta, "from")),
	    .queue_id = first->id,
	    .seq = first->seq,
	    .headers = &c->hook_headers,
	    .zone_name = c->zone->name,
	    .domain = x->batch->domain,
	    .mx = t ? t->host : NULL,
	    .local_ip = c->local_addr,
	};
	mta_enter_state(c, MTA_HOOK);
	uint64_t id = hook_run(HOOK_SENDER_HEADERS, &c->hook_ctx, sender_headers_done, c);
	if (id != 0)
		c->hook_id = id; /* else done has run, and c may be gone */
}

/* Recipients suppressed since they were queued leave the batch before the
 * attempt (reported as such); false when none is left. */
static bool drop_suppressed(struct mta_conn *c)
{
	struct mta_txn *x = &c->txn;
	struct suppressions *list = queue_suppressions(c->m->queue);
	size_t kept = 0;
	for (size_t i = 0; i < x->batch->n; i++) {
		const struct suppression *e = suppressions_match(list,
								 x->batch->items[i]->recipient);
		if (e != NULL) {
			char *why = xasprintf("%s %s is on the suppression list (entry %s)",
					      e->is_domain ? "domain" : "address", e->value, e->id);
			mta_item_report(c, i, OUTCOME_SUPPRESSED, 0, why, "suppressed");
			free(why);
			continue;
		}
		x->batch->items[kept] = x->batch->items[i];
		x->item[kept++] = x->item[i];
	}
	x->batch->n = kept;
	return kept > 0;
}

static void message_loaded(void *arg, int rc, struct queue_message *msg)
{
	struct mta_conn *c = arg;
	if (!load_ok(c, rc))
		return;
	struct mta_txn *x = &c->txn;
	x->meta = json_incref(msg->meta);
	x->header_block = xmalloc(msg->header_len + 1);
	memcpy(x->header_block, msg->header_block, msg->header_len);
	x->header_len = msg->header_len;
	x->body0 = msg->body;
	x->body0_len = msg->body_len;
	msg->body = NULL;
	/* A body of n bytes is max(1, ceil(n / QUEUE_CHUNK_SIZE)) chunks; without
	 * its size, reading goes on until a chunk is missing. */
	json_t *size = json_object_get(x->meta, "bodySize");
	if (json_is_integer(size) && json_integer_value(size) >= 0) {
		uint64_t n = (uint64_t)json_integer_value(size);
		x->nchunks = n == 0 ? 1 : (uint32_t)((n + QUEUE_CHUNK_SIZE - 1) / QUEUE_CHUNK_SIZE);
	}
	/* What the content needs, as detected at intake. */
	const char *body_type = json_string_value(json_object_get(x->meta, "bodyType"));
	x->eight_bit = body_type != NULL && strcmp(body_type, "8BITMIME") == 0;
	const char *from = json_string_value(json_object_get(x->meta, "from"));
	/* The envelope again: a message queued before intake recorded it. */
	x->smtputf8 = json_is_true(json_object_get(x->meta, "smtputf8")) ||
		      (from != NULL && utf8_has_8bit(from, strlen(from)));
	for (size_t i = 0; i < x->batch->n; i++) {
		const char *r = x->batch->items[i]->recipient;
		x->smtputf8 = x->smtputf8 || utf8_has_8bit(r, strlen(r));
	}

	if (!drop_suppressed(c)) {
		mta_transaction_done(c);
		return;
	}
	const char *refused = refusal(c);
	if (refused != NULL) {
		mta_log_attempt(c, refused);
		for (size_t i = 0; i < x->batch->n; i++)
			mta_item_report(c, i, OUTCOME_PERMFAIL, atoi(refused), refused, NULL);
		mta_transaction_done(c);
		return;
	}
	if (hook_active(HOOK_SENDER_HEADERS)) {
		run_sender_headers(c);
		return;
	}
	message_ready(c);
}

/* MAIL, and with PIPELINING the RCPTs and DATA in the same write. */
/* RCPT, with the recipient's NOTIFY and ORCPT for a server that takes DSN. */
static void send_rcpt(struct mta_conn *c, const char *rcpt)
{
	json_t *dsn = c->dsn ? json_object_get(c->txn.meta, "dsn") : NULL;
	json_t *r = json_object_get(json_object_get(dsn, "rcpts"), rcpt);
	const char *notify = json_string_value(json_object_get(r, "notify"));
	const char *orcpt = json_string_value(json_object_get(r, "orcpt"));
	mta_send_line(c, "RCPT TO:<%s>%s%s%s%s", rcpt, notify ? " NOTIFY=" : "",
		      notify ? notify : "", orcpt ? " ORCPT=" : "", orcpt ? orcpt : "");
}

static void send_envelope(struct mta_conn *c)
{
	struct mta_txn *x = &c->txn;
	const char *from = json_string_value(json_object_get(x->meta, "from"));
	uint64_t size = (uint64_t)json_integer_value(json_object_get(x->meta, "bodySize")) +
			x->header_len;
	/* Parameters only for what the server advertised (RFC 1870, 6152, 6531). */
	char params[96] = "";
	size_t n = 0;
	if (c->size_ok)
		n += (size_t)snprintf(params + n, sizeof(params) - n, " SIZE=%llu",
				      (unsigned long long)size);
	if (x->eight_bit && c->eightbit && !(x->transform & TRANSFORM_DOWNGRADE))
		n += (size_t)snprintf(params + n, sizeof(params) - n, " BODY=8BITMIME");
	if (x->smtputf8 && c->smtputf8)
		snprintf(params + n, sizeof(params) - n, " SMTPUTF8");
	/* The client's DSN request goes on to a server that takes it (RFC
	 * 3461 4.1); ENVID and ORCPT are xtext, checked at intake. */
	json_t *dsn = c->dsn ? json_object_get(x->meta, "dsn") : NULL;
	const char *ret = json_string_value(json_object_get(dsn, "ret"));
	const char *envid = json_string_value(json_object_get(dsn, "envid"));
	c->failed_txn = true; /* until the final dot is answered */
	mta_send_line(c, "MAIL FROM:<%s>%s%s%s%s%s", from ? from : "", params, ret ? " RET=" : "",
		      ret ? ret : "", envid ? " ENVID=" : "", envid ? envid : "");
	if (c->pipelining) {
		for (size_t i = 0; i < x->batch->n; i++)
			send_rcpt(c, x->batch->items[i]->recipient);
		x->rcpt_sent = x->batch->n;
		mta_send_line(c, "DATA");
	}
}

/* --- states --- */

void mta_enter_state(struct mta_conn *c, enum mta_state st)
{
	log_debug("mta_state", "conn=%llu from=%s to=%s", (unsigned long long)c->id,
		  mta_strstate(c->state), mta_strstate(st));
	c->state = st;
	const struct zone_timeouts *to = &c->zone->timeouts;
	struct mta_txn *x = &c->txn;
	switch (st) {
	case MTA_HOOK:
		mta_conn_deadline_clear(c); /* the bus has its own deadline */
		return;
	case MTA_RESOLVING:
	case MTA_CONNECTING:
	case MTA_SOCKS:
	case MTA_HANDSHAKE:
	case MTA_SIGNING:
	case MTA_HASHING:
		/* Their actions are the callers' (mta_conn.c, mta_sign.c). */
		return;
	case MTA_AUTH:
		/* auth_start() and the 334 replies send the lines. */
		mta_conn_deadline(c, to->ehlo);
		return;
	case MTA_GREETING:
		mta_conn_deadline(c, to->greeting); /* from the connect */
		return;
	case MTA_EHLO:
		c->pipelining = c->eightbit = c->smtputf8 = c->starttls = c->size_ok = false;
		c->auth_plain = c->auth_login = c->dsn = false;
		c->size_limit = 0;
		mta_send_line(c, "EHLO %s", c->ehlo_name);
		mta_conn_deadline(c, to->ehlo);
		return;
	case MTA_HELO:
		mta_send_line(c, "HELO %s", c->ehlo_name);
		mta_conn_deadline(c, to->ehlo);
		return;
	case MTA_STARTTLS:
		mta_send_line(c, "STARTTLS");
		mta_conn_deadline(c, to->starttls);
		return;
	case MTA_LOADING:
		mta_conn_deadline_clear(c);
		x->reading = true;
		x->read_req = queue_message_load(c->m->queue, c->msg_id, 0, 0, message_loaded, c);
		return;
	case MTA_MAIL:
		send_envelope(c);
		mta_conn_deadline(c, to->mail);
		return;
	case MTA_RCPT:
		if (!c->pipelining)
			send_rcpt(c, x->batch->items[x->rcpt_sent++]->recipient);
		mta_conn_deadline(c, to->rcpt);
		return;
	case MTA_DATA:
		if (!c->pipelining)
			mta_send_line(c, "DATA");
		mta_conn_deadline(c, to->data);
		return;
	case MTA_BODY:
		/* Only write progress counts now (the bufferevent's write timeout). */
		mta_conn_deadline_clear(c);
		mta_body_start(c);
		return;
	case MTA_DOT:
		mta_conn_deadline(c, to->dot); /* armed once the dot has left */
		return;
	case MTA_RSET:
		mta_send_line(c, "RSET");
		mta_conn_deadline(c, to->rset);
		return;
	case MTA_IDLE: {
		mta_conn_deadline_clear(c);
		uint64_t ttl = c->zone->cache_ttl_ms;
		struct timeval tv = {(time_t)(ttl / 1000), (suseconds_t)(ttl % 1000) * 1000};
		evtimer_add(c->idle_ev, &tv);
		sched_park(c->m->sched, c->slot, on_wake, c);
		return;
	}
	case MTA_QUIT:
		mta_send_line(c, "QUIT");
		mta_conn_deadline(c, to->quit);
		return;
	case MTA_CLOSED:
		return;
	}
}

/* The zone requires TLS and cannot have it here: try later. */
static void tls_refused(struct mta_conn *c, const char *why)
{
	mta_log_attempt(c, why);
	mta_fail_rest(c, 0, why);
	mta_conn_quit(c);
}

/* TLS or nothing: asked for, implicit, or needed to protect credentials. */
static bool tls_required(const struct zone_config *z)
{
	return z->require_tls || z->secure || z->auth_user != NULL;
}

/* Sends "PREFIX" and the base64 of n bytes, and wipes the copy. */
static void send_secret(struct mta_conn *c, const char *prefix, const void *secret, size_t n)
{
	char *b = xmalloc(4 * ((n + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)b, secret, (int)n);
	mta_send_line(c, "%s%s", prefix, b);
	explicit_bzero(b, strlen(b));
	free(b);
}

/* One line per AUTH to a smart host: never the password. */
static void auth_log(struct mta_conn *c, bool ok, const char *why)
{
	const struct mta_target *t = &c->targets[c->cur];
	log_msg(ok ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, c->in_txn ? c->msg_id : NULL, "mta_auth",
		"zone=%s mx=%s remote=%s user=\"%s\" result=%s response=\"%s\"", c->zone->name,
		t->host, t->addr, c->zone->auth_user, ok ? "ok" : "failed", why);
}

/* The smart host refused the credentials or cannot take them: the mail
 * waits (a wrong password is the operator's to fix, not the senders'
 * to receive as a bounce). */
static void auth_refused(struct mta_conn *c, const char *why)
{
	auth_log(c, false, why);
	char text[400];
	snprintf(text, sizeof(text), "454 4.7.0 AUTH as %s at the smart host failed: %s",
		 c->zone->auth_user, why);
	tls_refused(c, text);
}

/* AUTH PLAIN with the initial response, else LOGIN (RFC 4954). */
static void auth_start(struct mta_conn *c)
{
	const struct zone_config *z = c->zone;
	if (c->auth_plain) {
		size_t ul = strlen(z->auth_user), pl = strlen(z->auth_pass);
		/* authzid (empty) NUL authcid NUL passwd, then base64 */
		unsigned char *raw = xmalloc(ul + pl + 2);
		raw[0] = '\0';
		memcpy(raw + 1, z->auth_user, ul);
		raw[1 + ul] = '\0';
		memcpy(raw + 2 + ul, z->auth_pass, pl);
		send_secret(c, "AUTH PLAIN ", raw, ul + pl + 2);
		explicit_bzero(raw, ul + pl + 2);
		free(raw);
		c->auth_step = 2;
	} else if (c->auth_login) {
		mta_send_line(c, "AUTH LOGIN");
		c->auth_step = 0;
	} else {
		auth_refused(c, "the server offers neither AUTH PLAIN nor AUTH LOGIN");
		return;
	}
	mta_enter_state(c, MTA_AUTH);
}

static void auth_reply(struct mta_conn *c, int code)
{
	if (code == 235) {
		c->authed = true;
		auth_log(c, true, c->rep.text);
		mta_enter_state(c, MTA_LOADING);
		return;
	}
	if (code == 334 && c->auth_step < 2) {
		const char *s = c->auth_step == 0 ? c->zone->auth_user : c->zone->auth_pass;
		send_secret(c, "", s, strlen(s));
		c->auth_step++;
		mta_conn_deadline(c, c->zone->timeouts.ehlo);
		return;
	}
	auth_refused(c, c->rep.text);
}

/* Connected, greeted, EHLO done (and TLS where it could be had). */
static void session_ready(struct mta_conn *c)
{
	if (!c->tls && tls_required(c->zone)) {
		tls_refused(c, c->zone->auth_user != NULL
				   ? "452 4.7.5 the server does not offer TLS: the credentials "
				     "are not sent in the clear"
				   : "452 4.7.5 TLS is required but the server does not offer it");
		return;
	}
	/* The zone's credentials are for its smart host, never for a next hop
	 * a plugin chose instead. */
	if (c->zone->auth_user != NULL && !c->authed && c->next_hop == NULL) {
		auth_start(c);
		return;
	}
	mta_enter_state(c, MTA_LOADING); /* the batch the connection was started for */
}

/* After "220" to STARTTLS: the handshake runs in a filter over the socket. */
void mta_start_tls(struct mta_conn *c)
{
	struct mta *m = c->m;
	const struct mta_target *t = &c->targets[c->cur];
	SSL *ssl = SSL_new(m->tls);
	/* SNI names hosts only, never address literals (RFC 6066 3). */
	if (strcmp(t->host, t->addr) != 0)
		SSL_set_tlsext_host_name(ssl, t->host);
	char key[80];
	snprintf(key, sizeof(key), "%s %d", t->addr, mta_conn_port(c));
	SSL_SESSION *sess = strmap_get(m->tls_sessions, key);
	if (sess != NULL)
		SSL_set_session(ssl, sess);
	struct bufferevent *plain = c->bev;
	bufferevent_setcb(plain, NULL, NULL, NULL, NULL);
	c->bev = bufferevent_openssl_filter_new(m->base, plain, ssl, BUFFEREVENT_SSL_CONNECTING,
						BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(c->bev, mta_on_read, mta_on_write, mta_on_event, c);
	mta_conn_set_write_timeout(c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	mta_enter_state(c, MTA_HANDSHAKE);
	mta_conn_deadline(c, c->zone->timeouts.starttls);
}

/* Keeps the TLS session for the next connection to this address.  Done at
 * the reply to EHLO, not at the handshake: a TLS 1.3 server sends its
 * session ticket after the handshake. */
static void tls_session_keep(struct mta_conn *c)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	SSL_SESSION *sess = ssl ? SSL_get1_session(ssl) : NULL;
	if (sess == NULL)
		return;
	if (!SSL_SESSION_is_resumable(sess)) {
		SSL_SESSION_free(sess);
		return;
	}
	const struct mta_target *t = &c->targets[c->cur];
	char key[80];
	snprintf(key, sizeof(key), "%s %d", t->addr, mta_conn_port(c));
	SSL_SESSION_free(strmap_remove(c->m->tls_sessions, key));
	strmap_put(c->m->tls_sessions, key, sess);
}

static void handshake_done(struct mta_conn *c)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	snprintf(c->tls_version, sizeof(c->tls_version), "%s", SSL_get_version(ssl));
	c->tls = true;
	/* Implicit TLS: the greeting comes now.  STARTTLS (RFC 3207): forget
	 * what was said before; EHLO again. */
	mta_enter_state(c, c->zone->secure ? MTA_GREETING : MTA_EHLO);
}

/* An early reply while the body is being sent: it decides the transaction,
 * and the connection cannot go on (the rest of the body would be read as
 * commands). */
static void early_reply(struct mta_conn *c, int code)
{
	char text[REPLY_TEXT_MAX + 64];
	if (code / 100 == 2)
		snprintf(text, sizeof(text), "451 4.5.0 reply before the end of the data: %s",
			 c->rep.text);
	else
		snprintf(text, sizeof(text), "%s", c->rep.text);
	mta_log_attempt(c, text);
	mta_fail_rest(c, code / 100 == 2 ? 451 : code, text);
	mta_conn_close(c, 0, NULL);
}

static void rcpt_reply(struct mta_conn *c, int code)
{
	struct mta_txn *x = &c->txn;
	size_t i = x->rcpt_replies++;
	if (x->item[i] == MTA_ITEM_PENDING) {
		if (code / 100 == 2) {
			x->item[i] = MTA_ITEM_ACCEPTED;
			x->accepted++;
		} else {
			mta_item_report(c, i, code / 100 == 4 ? OUTCOME_TEMPFAIL : OUTCOME_PERMFAIL,
					code, c->rep.text, NULL);
		}
	}
	if (code == 421) {
		/* The server is closing the session (RFC 5321 3.8). */
		mta_log_attempt(c, c->rep.text);
		mta_fail_rest(c, code, c->rep.text);
		mta_conn_close(c, 0, NULL);
		return;
	}
	if (x->rcpt_replies < x->batch->n) {
		if (c->pipelining)
			mta_conn_deadline(c, c->zone->timeouts.rcpt);
		else
			mta_enter_state(c, MTA_RCPT);
		return;
	}
	if (c->pipelining || x->accepted > 0) {
		mta_enter_state(c, MTA_DATA); /* pipelined: DATA was sent already */
		return;
	}
	mta_log_attempt(c, c->rep.text);
	mta_transaction_done(c); /* nobody accepted: RSET before the next one */
}

static void mail_reply(struct mta_conn *c, int code)
{
	struct mta_txn *x = &c->txn;
	if (code / 100 == 2) {
		mta_enter_state(c, MTA_RCPT);
		return;
	}
	/* Every recipient fails with the MAIL reply.  Pipelined RCPT and DATA
	 * replies still come and are read. */
	mta_log_attempt(c, c->rep.text);
	for (size_t i = 0; i < x->batch->n; i++)
		mta_item_report(c, i, code / 100 == 4 ? OUTCOME_TEMPFAIL : OUTCOME_PERMFAIL, code,
				c->rep.text, NULL);
	if (code == 421) {
		mta_conn_close(c, 0, NULL);
		return;
	}
	if (c->pipelining)
		mta_enter_state(c, MTA_RCPT);
	else
		mta_transaction_done(c);
}

static void data_reply(struct mta_conn *c, int code)
{
	struct mta_txn *x = &c->txn;
	if (code == 354 && x->accepted > 0) {
		mta_enter_state(c, MTA_BODY);
		return;
	}
	if (code == 354) {
		/* Pipelined DATA accepted with no recipient: end it empty. */
		evbuffer_add(bufferevent_get_output(c->bev), ".\r\n", 3);
		mta_enter_state(c, MTA_DOT);
		return;
	}
	if (x->accepted > 0)
		mta_log_attempt(c, c->rep.text);
	mta_fail_rest(c, code, c->rep.text);
	if (code == 421)
		mta_conn_close(c, 0, NULL);
	else
		mta_transaction_done(c);
}

/* The reply to the final dot decides for every accepted recipient. */
static void dot_reply(struct mta_conn *c, int code)
{
	struct mta_txn *x = &c->txn;
	x->delivered = code / 100 == 2 ? x->accepted : 0;
	if (x->accepted > 0)
		mta_log_attempt(c, c->rep.text);
	for (size_t i = 0; i < x->batch->n; i++)
		if (x->item[i] == MTA_ITEM_ACCEPTED)
			mta_item_report(c, i,
					code / 100 == 2   ? OUTCOME_OK
					: code / 100 == 4 ? OUTCOME_TEMPFAIL
							  : OUTCOME_PERMFAIL,
					code, c->rep.text, NULL);
	c->failed_txn = false;
	if (code == 421)
		mta_conn_close(c, 0, NULL);
	else
		mta_transaction_done(c);
}

static void on_reply(struct mta_conn *c, int code)
{
	switch (c->state) {
	case MTA_GREETING:
		if (code != 220) {
			/* 421/554 greeting: this address will not take mail now. */
			mta_conn_next_target(c, c->rep.text, code);
			return;
		}
		mta_enter_state(c, MTA_EHLO);
		return;
	case MTA_EHLO:
		if (code / 100 != 2) {
			/* 421 closes, 554 refuses service: HELO would not help. */
			if (code == 421 || code == 554)
				mta_conn_next_target(c, c->rep.text, code);
			else
				mta_enter_state(c, MTA_HELO);
			return;
		}
		if (!c->tls && c->starttls && !c->plain_retry && !c->zone->ignore_tls) {
			mta_enter_state(c, MTA_STARTTLS);
			return;
		}
		if (c->tls)
			tls_session_keep(c);
		session_ready(c);
		return;
	case MTA_HELO:
		if (code / 100 != 2) {
			mta_conn_next_target(c, c->rep.text, code);
			return;
		}
		session_ready(c);
		return;
	case MTA_STARTTLS:
		if (code == 220) {
			mta_start_tls(c);
			return;
		}
		if (tls_required(c->zone)) {
			tls_refused(c, c->rep.text);
			return;
		}
		if (code == 421) {
			mta_conn_next_target(c, c->rep.text, code);
			return;
		}
		session_ready(c); /* opportunistic: go on in plain text */
		return;
	case MTA_AUTH:
		auth_reply(c, code);
		return;
	case MTA_MAIL:
		mail_reply(c, code);
		return;
	case MTA_RCPT:
		rcpt_reply(c, code);
		return;
	case MTA_DATA:
		data_reply(c, code);
		return;
	case MTA_BODY:
		early_reply(c, code);
		return;
	case MTA_DOT:
		dot_reply(c, code);
		return;
	case MTA_RSET:
		if (code / 100 != 2) {
			mta_fail_rest(c, 421, "421 4.4.0 connection unusable after RSET");
			mta_conn_quit(c);
			return;
		}
		c->failed_txn = false;
		mta_enter_state(c, MTA_LOADING);
		return;
	case MTA_QUIT:
		mta_conn_close(c, 0, NULL);
		return;
	case MTA_IDLE:
		/* Typically 421 from a server that timed us out: just go. */
		sched_unpark(c->m->sched, c->slot);
		evtimer_del(c->idle_ev);
		mta_conn_close(c, 0, NULL);
		return;
	case MTA_HOOK:
	case MTA_RESOLVING:
	case MTA_CONNECTING:
	case MTA_SOCKS:
	case MTA_HANDSHAKE:
	case MTA_LOADING:
	case MTA_HASHING:
	case MTA_SIGNING:
	case MTA_CLOSED:
		break;
	}
	/* A reply while none is due: protocol error. */
	log_msg(LOG_LEVEL_WARN, c->in_txn ? c->msg_id : NULL, "mta_protocol",
		"conn=%llu state=%s response=\"%s\"", (unsigned long long)c->id,
		mta_strstate(c->state), c->rep.text);
	mta_conn_close(c, 451, "451 4.5.0 unexpected reply from the receiving server");
}

/* One EHLO keyword line (after the code), e.g. "SIZE 10240000". */
static void ehlo_keyword(void *arg, const char *text, size_t len)
{
	struct mta_conn *c = arg;
	size_t len0 = len;
	char kw[64];
	if (len >= sizeof(kw))
		len = sizeof(kw) - 1;
	memcpy(kw, text, len);
	kw[len] = '\0';
	if (strcasecmp(kw, "PIPELINING") == 0)
		c->pipelining = true;
	else if (strcasecmp(kw, "8BITMIME") == 0)
		c->eightbit = true;
	else if (strcasecmp(kw, "SMTPUTF8") == 0)
		c->smtputf8 = true;
	else if (strcasecmp(kw, "STARTTLS") == 0)
		c->starttls = true;
	else if (strcasecmp(kw, "DSN") == 0)
		c->dsn = true;
	else if (strncasecmp(kw, "AUTH", 4) == 0 && (kw[4] == ' ' || kw[4] == '=')) {
		/* "AUTH PLAIN LOGIN", or the old "AUTH=LOGIN": the mechanisms,
		 * read from the whole line (it may be longer than kw). */
		for (size_t i = 5; i < len0;) {
			size_t j = i;
			while (j < len0 && text[j] != ' ')
				j++;
			if (j - i == 5 && strncasecmp(text + i, "PLAIN", 5) == 0)
				c->auth_plain = true;
			else if (j - i == 5 && strncasecmp(text + i, "LOGIN", 5) == 0)
				c->auth_login = true;
			i = j + 1;
		}
	} else if (strncasecmp(kw, "SIZE", 4) == 0 && (kw[4] == ' ' || kw[4] == '\0')) {
		c->size_ok = true;
		c->size_limit = strtoull(kw + 4, NULL, 10);
	}
}

/* A reply the connection cannot go on from: as if the server failed. */
static void bad_reply(struct mta_conn *c, const char *why)
{
	char text[200];
	snprintf(text, sizeof(text), "451 4.5.0 %s from the receiving server", why);
	if (mta_state_before_session(c->state)) {
		mta_conn_next_target(c, text, 451);
		return;
	}
	if (c->in_txn)
		mta_log_attempt(c, text);
	mta_conn_close(c, 451, text);
}

void mta_on_read(struct bufferevent *bev, void *arg)
{
	struct mta_conn *c = arg;
	struct mta *m = c->m;
	uint64_t id = c->id;
	struct evbuffer *in = bufferevent_get_input(bev);
	if (c->state == MTA_SOCKS) {
		mta_socks_read(c);
		/* Done: the server's greeting may have come along with it. */
		if (u64map_get(m->conns, id) != c || c->bev != bev || c->state != MTA_GREETING)
			return;
	}
	for (;;) {
		size_t len;
		char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
		if (line == NULL) {
			/* No line end within the cap: an endless line. */
			if (evbuffer_get_length(in) > REPLY_LINE_MAX)
				bad_reply(c, "reply too long");
			return;
		}
		enum reply_status st = len > REPLY_LINE_MAX
					   ? REPLY_TOO_LONG
					   : reply_feed(&c->rep, line, len,
							c->state == MTA_EHLO ? ehlo_keyword : NULL,
							c);
		free(line);
		if (st == REPLY_BAD) {
			bad_reply(c, "malformed reply");
			return;
		}
		if (st == REPLY_TOO_LONG) {
			bad_reply(c, "reply too long");
			return;
		}
		if (st == REPLY_MORE)
			continue;
		c->answered = true;
		on_reply(c, c->rep.code);
		/* The reply may have closed the connection or moved it on. */
		if (u64map_get(m->conns, id) != c || c->bev != bev || c->state == MTA_CLOSED)
			return;
	}
}

void mta_on_write(struct bufferevent *bev, void *arg)
{
	struct mta_conn *c = arg;
	(void)bev;
	if (c->state == MTA_BODY)
		mta_body_on_drain(c);
}

void mta_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct mta_conn *c = arg;
	(void)bev;
	if ((what & BEV_EVENT_CONNECTED) && c->state == MTA_HANDSHAKE) {
		handshake_done(c);
		return;
	}
	if ((what & BEV_EVENT_CONNECTED) && c->proxy != NULL && c->state == MTA_CONNECTING) {
		mta_socks_start(c);
		return;
	}
	if (what & BEV_EVENT_CONNECTED) {
		if (c->zone->secure)
			mta_start_tls(c); /* implicit TLS: the handshake first */
		else
			mta_enter_state(c, MTA_GREETING);
		return;
	}
	const struct mta_target *t = &c->targets[c->cur];
	if (c->state == MTA_HANDSHAKE) {
		unsigned long e = bufferevent_get_openssl_error(c->bev);
		char why[300];
		snprintf(why, sizeof(why), "TLS handshake with %s [%s] failed: %s", t->host,
			 t->addr, e ? ERR_reason_error_string(e) : "connection closed");
		if (tls_required(c->zone)) {
			mta_log_attempt(c, why);
			mta_conn_close(c, 0, why);
			return;
		}
		/* Opportunistic TLS: once more with the same address, in plain text. */
		log_msg(LOG_LEVEL_INFO, c->in_txn ? c->msg_id : NULL, "mta_tls",
			"mx=%s remote=%s error=\"%s\" action=retry_plain", t->host, t->addr, why);
		bufferevent_free(c->bev);
		c->bev = NULL;
		c->plain_retry = true;
		mta_conn_connect_next(c);
		return;
	}
	const char *why = (what & BEV_EVENT_TIMEOUT) ? "no write progress (timeout)"
			  : (what & BEV_EVENT_EOF)
			      ? "connection closed by the server"
			      : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR());
	if (c->state == MTA_QUIT || c->state == MTA_IDLE) {
		if (c->state == MTA_IDLE) {
			sched_unpark(c->m->sched, c->slot);
			evtimer_del(c->idle_ev);
		}
		mta_conn_close(c, 0, NULL);
		return;
	}
	char text[400];
	if (c->proxy != NULL && (c->state == MTA_CONNECTING || c->state == MTA_SOCKS))
		snprintf(text, sizeof(text), "451 4.4.1 SOCKS5 proxy %s %s: %s", c->proxy->url,
			 c->state == MTA_CONNECTING ? "unreachable" : "failed", why);
	else
		snprintf(text, sizeof(text), "connection to %s [%s] failed: %s", t->host, t->addr,
			 why);
	if (mta_state_before_session(c->state)) {
		mta_conn_next_target(c, text, 0);
		return;
	}
	if (c->in_txn)
		mta_log_attempt(c, text);
	mta_conn_close(c, 0, text);
}
