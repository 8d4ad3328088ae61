/*
 * Delivery connections: an SMTP client state machine per connection.  A
 * connection never outlives its scheduler slot; answers from DNS and the
 * store are matched by request id and dropped when the connection is gone.
 */
#include "mta/mta.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <time.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "api/metrics.h"
#include "core/hmap.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "dkim/dkim.h"
#include "msg/header.h"
#include "mta/reply.h"

#define MTA_CONNECT_TIMEOUT_S 30
#define MTA_COMMAND_TIMEOUT_S 300
/* Stop reading the store while this much of the message waits to be sent. */
#define MTA_OUTPUT_HIGH (512 * 1024)
/* Body pieces at least this long are sent from their buffer, not copied. */
#define MTA_REFERENCE_MIN 4096

enum mta_state {
	MTA_RESOLVING,
	MTA_CONNECTING,
	MTA_GREETING,
	MTA_EHLO,
	MTA_HELO,
	MTA_STARTTLS, /* STARTTLS sent, waiting for 220 */
	MTA_HANDSHAKE, /* TLS handshake in progress */
	MTA_LOADING,  /* reading the message's metadata */
	MTA_HASHING,  /* reading the body for a DKIM body hash not made at intake */
	MTA_SIGNING,  /* DKIM signatures being made on a crypto thread */
	MTA_ENVELOPE, /* MAIL, RCPT and DATA sent, replies pending */
	MTA_BODY,     /* streaming the message */
	MTA_DOT,      /* waiting for the reply to the final dot */
	MTA_RSET,
	MTA_IDLE,     /* parked: waiting for more mail to the same place */
	MTA_QUITTING, /* QUIT sent, waiting for the reply before closing */
	MTA_CLOSING,
};

static const char *const state_names[] = {"resolving", "connecting", "greeting",  "ehlo",
					  "helo",      "starttls",   "handshake", "loading",
					  "hashing",   "signing",
					  "envelope",  "body",
					  "dot",       "rset",       "idle",     "quitting",
					  "closing"};

struct target {
	char *host;
	char *addr;
};

/* What the replies still expected are answers to, in order. */
enum expect {
	EXPECT_MAIL,
	EXPECT_RCPT,
	EXPECT_DATA,
};

struct mta {
	struct event_base *base;
	const struct config *cfg;
	struct dns *dns;
	const struct bounce_rules *rules;
	struct sched *sched;
	struct queue *queue;
	struct u64map *conns; /* id → struct mta_conn */
	uint64_t next_id;
	SSL_CTX *tls; /* client context: opportunistic, no certificate checks */
	struct workpool *crypto;
};

struct mta_conn {
	struct mta *m;
	uint64_t id;
	struct sched_slot *slot;
	const struct zone_config *zone;
	struct sched_batch *batch;
	/* the batch's message: its items are freed as they are reported */
	char msg_id[QUEUE_ID_LEN + 1];
	enum mta_state state;
	struct target *targets;
	size_t ntargets, cur;
	uint64_t dns_req, read_req;
	bool reading;
	struct bufferevent *bev;
	const char *local_addr; /* NULL: the system chooses */
	const char *ehlo_name;
	/* the server */
	bool pipelining, eightbit, smtputf8, starttls;
	bool tls;           /* this connection is encrypted */
	bool plain_retry;   /* TLS failed with this address: now try without */
	char tls_version[16];
	uint64_t size_limit;
	/* the reply being read */
	struct reply rep;
	/* the transaction */
	json_t *meta;
	char *header_block;
	size_t header_len;
	enum expect *expects;
	size_t nexpect, expect_pos, rcpt_pos;
	int *rcpt_code;     /* per item: 0 pending, else the reply code */
	char **rcpt_text;
	size_t accepted;
	char *body0;        /* body chunk 0, read with the metadata */
	size_t body0_len;
	uint32_t next_chunk;
	uint32_t nchunks;   /* body chunks stored, from bodySize; 0: unknown */
	bool hashes_asked;  /* missing body hashes were asked of the store */
	bool bol;           /* at the start of a line of the message (dot-stuffing) */
	char last2[2];      /* the last bytes sent, to end with CRLF */
	bool chunk_waiting; /* a chunk is held back until output drains */
	bool failed_txn;    /* the last transaction ended without its final dot */
	int64_t started_ms;
	struct event *idle_ev; /* ends a parked connection after connectionCache.ttl */
};

static void conn_next_target(struct mta_conn *c);
static void conn_close(struct mta_conn *c);
static void conn_quit(struct mta_conn *c);

static int64_t now_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void enter_state(struct mta_conn *c, enum mta_state st)
{
	log_debug("mta_state", "conn=%llu from=%s to=%s", (unsigned long long)c->id,
		  state_names[c->state], state_names[st]);
	c->state = st;
}

static void send_line(struct mta_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void send_line(struct mta_conn *c, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

/* --- outcomes --- */

/* Reports one item and classifies a failure with the bounce rules. */
static void report(struct mta_conn *c, size_t i, int code, const char *text)
{
	struct sched_item *it = c->batch->items[i];
	if (code >= 200 && code < 300) {
		sched_result(c->m->sched, it, SCHED_OK, text, NULL);
		return;
	}
	struct bounce_verdict v;
	bounce_rules_classify(c->m->rules, code, text, &v);
	sched_result(c->m->sched, it, v.action == BOUNCE_REJECT ? SCHED_PERMFAIL : SCHED_TEMPFAIL,
		     text, v.category);
}

static void txn_clear(struct mta_conn *c)
{
	json_decref(c->meta);
	c->meta = NULL;
	free(c->body0);
	c->body0 = NULL;
	c->hashes_asked = false;
	free(c->header_block);
	c->header_block = NULL;
	free(c->expects);
	c->expects = NULL;
	c->nexpect = c->expect_pos = c->rcpt_pos = 0;
	if (c->rcpt_text != NULL)
		for (size_t i = 0; i < c->batch->n; i++)
			free(c->rcpt_text[i]);
	free(c->rcpt_text);
	c->rcpt_text = NULL;
	free(c->rcpt_code);
	c->rcpt_code = NULL;
	c->accepted = 0;
	if (c->reading) {
		queue_request_cancel(c->m->queue, c->read_req);
		c->reading = false;
	}
	sched_batch_free(c->batch);
	c->batch = NULL;
}

/* Every item of the batch not reported yet fails with (code, text). */
static void fail_rest(struct mta_conn *c, int code, const char *text)
{
	if (c->batch == NULL)
		return;
	for (size_t i = 0; i < c->batch->n; i++) {
		if (c->rcpt_code != NULL && c->rcpt_code[i] < 0)
			continue; /* already reported */
		report(c, i, code, text);
	}
	txn_clear(c);
}

static void log_attempt(struct mta_conn *c, const char *response)
{
	const struct target *t = c->cur < c->ntargets ? &c->targets[c->cur] : NULL;
	log_msg(LOG_LEVEL_INFO, c->msg_id, "attempt",
		"zone=%s domain=%s local=%s mx=%s remote=%s tls=%s rcpts=%zu accepted=%zu "
		"response=\"%s\" ms=%lld",
		c->batch->zone->name, c->batch->domain, c->local_addr ? c->local_addr : "any",
		t ? t->host : "-", t ? t->addr : "-", c->tls ? c->tls_version : "no", c->batch->n,
		c->accepted, response,
		(long long)(now_ms() - c->started_ms));
}

/* --- transactions --- */

static void start_transaction(struct mta_conn *c);
static bool start_signing(struct mta_conn *c);
static void hashes_loaded(void *arg, int rc, struct queue_message *msg);
static void send_envelope(struct mta_conn *c);

/* Sends the next batch over this connection (RSET first after a failure). */
static void continue_with(struct mta_conn *c, struct sched_batch *batch)
{
	c->batch = batch;
	memcpy(c->msg_id, batch->items[0]->id, sizeof(c->msg_id));
	if (c->failed_txn) {
		send_line(c, "RSET");
		enter_state(c, MTA_RSET);
		return;
	}
	start_transaction(c);
}

static void on_wake(void *arg, struct sched_batch *batch)
{
	struct mta_conn *c = arg;
	evtimer_del(c->idle_ev);
	if (batch == NULL) {
		conn_quit(c);
		return;
	}
	continue_with(c, batch);
}

static void on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct mta_conn *c = arg;
	sched_unpark(c->m->sched, c->slot);
	conn_quit(c);
}

/* The transaction is over: take more mail for this connection, wait for
 * some (connectionCache), or close. */
static void transaction_done(struct mta_conn *c)
{
	txn_clear(c);
	struct sched_batch *batch = sched_next_batch(c->m->sched, c->slot);
	if (batch != NULL) {
		continue_with(c, batch);
		return;
	}
	const struct zone_config *z = c->zone;
	if (c->slot->messages >= z->cache_reuse || z->cache_ttl_ms == 0) {
		conn_quit(c);
		return;
	}
	enter_state(c, MTA_IDLE);
	struct timeval tv = {(time_t)(z->cache_ttl_ms / 1000),
			     (suseconds_t)(z->cache_ttl_ms % 1000) * 1000};
	evtimer_add(c->idle_ev, &tv);
	sched_park(c->m->sched, c->slot, on_wake, c);
}

static bool needs_utf8(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* --- DKIM --- */

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
	if (j->error != NULL) {
		/* Sending unsigned what should be signed would hurt more. */
		log_msg(LOG_LEVEL_ERROR, c->msg_id, "dkim", "error=\"%s\" action=defer", j->error);
		fail_rest(c, 451, "451 4.7.0 DKIM signing failed");
		sign_job_free(j);
		transaction_done(c);
		return;
	}
	/* The signatures go on top of the header block (RFC 6376 5.6). */
	size_t slen = strlen(j->signatures);
	char *block = xmalloc(slen + c->header_len + 1);
	memcpy(block, j->signatures, slen);
	memcpy(block + slen, c->header_block, c->header_len);
	free(c->header_block);
	c->header_block = block;
	c->header_len += slen;
	log_msg(LOG_LEVEL_DEBUG, c->msg_id, "dkim", "signatures=%zu", j->nkeys);
	sign_job_free(j);
	send_envelope(c);
}

/* Starts signing when keys apply; false when the message goes unsigned. */
static bool start_signing(struct mta_conn *c)
{
	const struct config *cfg = c->m->cfg;
	if (cfg->n_dkim_keys == 0 || c->m->crypto == NULL)
		return false;
	struct sign_job *j = xcalloc(1, sizeof(*j));
	struct header_list headers = {0};
	header_list_parse(&headers, c->header_block, c->header_len);
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
	json_t *dk = json_object_get(c->meta, "dkim");
	unsigned missing = 0;
	for (size_t i = 0; i < j->nkeys; i++) {
		const char *h = json_string_value(json_object_get(
			dk, j->keys[i]->body_canon == DKIM_CANON_SIMPLE ? "bodyHashSimple" : "bodyHash"));
		if (h == NULL)
			missing |= 1u << j->keys[i]->body_canon;
		else
			j->body_hash[i] = xstrdup(h);
	}
	if (missing != 0 && !c->hashes_asked) {
		/* Queued before a key needed this hash: the store makes it. */
		sign_job_free(j);
		c->hashes_asked = true;
		enter_state(c, MTA_HASHING);
		c->reading = true;
		c->read_req = queue_message_load(c->m->queue, c->msg_id, missing, hashes_loaded, c);
		return true;
	}
	if (missing != 0) {
		log_msg(LOG_LEVEL_WARN, c->msg_id, "dkim", "action=unsigned "
			"reason=\"no body hash for this canonicalization\"");
		j->nkeys = 0;
	}
	if (j->nkeys == 0) {
		sign_job_free(j);
		return false;
	}
	j->m = c->m;
	j->conn_id = c->id;
	j->header_block = xmalloc(c->header_len);
	memcpy(j->header_block, c->header_block, c->header_len);
	j->header_len = c->header_len;
	j->job.run = sign_run;
	j->job.done = sign_done;
	enter_state(c, MTA_SIGNING);
	workpool_submit(c->m->crypto, &j->job);
	return true;
}

/* Fails the batch when a load found no message; true when it did. */
static bool load_ok(struct mta_conn *c, int rc)
{
	c->reading = false;
	if (rc == 1)
		return true;
	const char *why = rc == 0 ? "message no longer in the queue" : "cannot read the queue";
	log_msg(LOG_LEVEL_WARN, c->msg_id, "mta_load", "error=\"%s\"", why);
	fail_rest(c, rc == 0 ? 550 : 451, rc == 0 ? "550 5.0.0 message removed from queue"
						   : "451 4.3.0 queue read error");
	transaction_done(c);
	return false;
}

/* The metadata again, with the body hashes signing asked for. */
static void hashes_loaded(void *arg, int rc, struct queue_message *msg)
{
	struct mta_conn *c = arg;
	if (!load_ok(c, rc))
		return;
	json_object_set(c->meta, "dkim", json_object_get(msg->meta, "dkim"));
	if (!start_signing(c))
		send_envelope(c);
}

static void message_loaded(void *arg, int rc, struct queue_message *msg)
{
	struct mta_conn *c = arg;
	if (!load_ok(c, rc))
		return;
	c->meta = json_incref(msg->meta);
	c->header_block = xmalloc(msg->header_len + 1);
	memcpy(c->header_block, msg->header_block, msg->header_len);
	c->header_len = msg->header_len;
	c->body0 = msg->body;
	c->body0_len = msg->body_len;
	msg->body = NULL;
	/* A body of n bytes is max(1, ceil(n / QUEUE_CHUNK_SIZE)) chunks; without
	 * its size, reading goes on until a chunk is missing. */
	json_t *size = json_object_get(c->meta, "bodySize");
	c->nchunks = 0;
	if (json_is_integer(size) && json_integer_value(size) >= 0) {
		uint64_t n = (uint64_t)json_integer_value(size);
		c->nchunks = n == 0 ? 1 : (uint32_t)((n + QUEUE_CHUNK_SIZE - 1) / QUEUE_CHUNK_SIZE);
	}
	if (!start_signing(c))
		send_envelope(c);
}

/* The message is ready (signed if it should be): MAIL, RCPT, DATA. */
static void send_envelope(struct mta_conn *c)
{
	const char *from = json_string_value(json_object_get(c->meta, "from"));
	json_int_t body_size = json_integer_value(json_object_get(c->meta, "bodySize"));
	uint64_t size = (uint64_t)body_size + c->header_len;
	const char *body_type = json_string_value(json_object_get(c->meta, "bodyType"));
	bool eight = body_type != NULL && strcmp(body_type, "8BITMIME") == 0;
	bool utf8 = json_is_true(json_object_get(c->meta, "smtputf8")) || needs_utf8(from ? from : "");
	for (size_t i = 0; i < c->batch->n; i++)
		utf8 = utf8 || needs_utf8(c->batch->items[i]->recipient);

	/* What the server cannot take fails for good, with the reason. */
	const char *refusal = NULL;
	if (c->size_limit > 0 && size > c->size_limit)
		refusal = "552 5.3.4 message is larger than the receiving server's SIZE limit";
	else if (utf8 && !c->smtputf8)
		refusal = "553 5.6.7 message needs SMTPUTF8, which the receiving server lacks";
	else if (eight && !c->eightbit)
		refusal = "554 5.6.3 message needs 8BITMIME, which the receiving server lacks";
	if (refusal != NULL) {
		log_attempt(c, refusal);
		fail_rest(c, atoi(refusal), refusal);
		c->failed_txn = false;
		transaction_done(c);
		return;
	}

	char params[128] = "";
	if (c->size_limit > 0 || c->pipelining || c->eightbit) /* ESMTP */
		snprintf(params, sizeof(params), " SIZE=%llu%s%s", (unsigned long long)size,
			 eight ? " BODY=8BITMIME" : "", utf8 ? " SMTPUTF8" : "");
	c->nexpect = c->batch->n + 2;
	c->expects = xcalloc(c->nexpect, sizeof(*c->expects));
	c->expects[0] = EXPECT_MAIL;
	for (size_t i = 0; i < c->batch->n; i++)
		c->expects[i + 1] = EXPECT_RCPT;
	c->expects[c->batch->n + 1] = EXPECT_DATA;
	c->rcpt_code = xcalloc(c->batch->n, sizeof(int));
	c->rcpt_text = xcalloc(c->batch->n, sizeof(char *));
	c->failed_txn = true;
	enter_state(c, MTA_ENVELOPE);
	send_line(c, "MAIL FROM:<%s>%s", from ? from : "", params);
	if (c->pipelining) {
		/* RFC 2920: the whole envelope and DATA in one go. */
		for (size_t i = 0; i < c->batch->n; i++)
			send_line(c, "RCPT TO:<%s>", c->batch->items[i]->recipient);
		send_line(c, "DATA");
	}
}

static void start_transaction(struct mta_conn *c)
{
	c->started_ms = now_ms();
	enter_state(c, MTA_LOADING);
	c->reading = true;
	c->read_req = queue_message_load(c->m->queue, c->msg_id, 0, message_loaded, c);
}

/* --- the message body --- */

static void release_owned(const void *data, size_t len, void *owned)
{
	(void)data;
	(void)len;
	free(owned);
}

/*
 * Writes message bytes with dot-stuffing (RFC 5321 4.5.2).  `owned`, when
 * not NULL, is the malloc'ed buffer holding data, handed over: what follows
 * the last stuffed dot is then queued by reference instead of copied.
 */
static void write_stuffed(struct mta_conn *c, const char *data, size_t len, char *owned)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	if (len >= 2) {
		memcpy(c->last2, data + len - 2, 2);
	} else if (len == 1) {
		c->last2[0] = c->last2[1];
		c->last2[1] = data[0];
	}
	size_t start = 0, i = 0; /* data[start..i) is checked, not yet added */
	while (i < len) {
		if (c->bol && data[i] == '.') {
			evbuffer_add(out, data + start, i - start);
			evbuffer_add(out, ".", 1);
			start = i;
		}
		/* Lines start after LF only: jump to the next one. */
		const char *lf = memchr(data + i, '\n', len - i);
		c->bol = lf != NULL;
		i = lf ? (size_t)(lf - data) + 1 : len;
	}
	if (owned != NULL && len - start >= MTA_REFERENCE_MIN) {
		evbuffer_add_reference(out, data + start, len - start, release_owned, owned);
	} else {
		evbuffer_add(out, data + start, len - start);
		free(owned);
	}
}

static void chunk_read(void *arg, int rc, const char *data, size_t len);

static void request_chunk(struct mta_conn *c)
{
	c->reading = true;
	c->read_req = queue_chunk_get(c->m->queue, c->msg_id, c->next_chunk++,
				      chunk_read, c);
}

/* The whole message is out: end it with the final dot. */
static void body_end(struct mta_conn *c)
{
	/* The last line must end in CRLF before the dot. */
	if (memcmp(c->last2, "\r\n", 2) != 0)
		evbuffer_add(bufferevent_get_output(c->bev), "\r\n", 2);
	evbuffer_add(bufferevent_get_output(c->bev), ".\r\n", 3);
	enter_state(c, MTA_DOT);
}

/* A chunk went out: the next one, once the output has room, or the end. */
static void body_next(struct mta_conn *c)
{
	if (c->nchunks > 0 && c->next_chunk >= c->nchunks)
		body_end(c);
	else if (evbuffer_get_length(bufferevent_get_output(c->bev)) > MTA_OUTPUT_HIGH)
		c->chunk_waiting = true; /* on_write asks for the next one */
	else
		request_chunk(c);
}

static void chunk_read(void *arg, int rc, const char *data, size_t len)
{
	struct mta_conn *c = arg;
	c->reading = false;
	if (rc < 0 || (rc == 0 && c->nchunks > 0)) {
		/* The server must not take half a message: drop the connection. */
		const char *why = rc < 0 ? "queue read error while sending"
					 : "queue read error while sending: a body chunk is missing";
		log_attempt(c, why);
		fail_rest(c, 451, "451 4.3.0 queue read error while sending");
		conn_close(c);
		return;
	}
	if (rc == 0) {
		body_end(c); /* the size was not recorded: the end is the first missing chunk */
		return;
	}
	write_stuffed(c, data, len, NULL);
	body_next(c);
}

static void start_body(struct mta_conn *c)
{
	enter_state(c, MTA_BODY);
	c->bol = true;
	c->last2[0] = c->last2[1] = 0;
	c->next_chunk = 0;
	write_stuffed(c, c->header_block, c->header_len, NULL);
	if (c->body0 == NULL) {
		request_chunk(c);
		return;
	}
	write_stuffed(c, c->body0, c->body0_len, c->body0);
	c->body0 = NULL;
	c->next_chunk = 1;
	body_next(c);
}

/* --- replies --- */

/* One reply to the envelope (MAIL, RCPT, DATA), in the order sent. */
static void envelope_reply(struct mta_conn *c, int code)
{
	enum expect e = c->expects[c->expect_pos++];
	switch (e) {
	case EXPECT_MAIL:
		if (code / 100 != 2) {
			/* Every recipient fails with the MAIL reply.  Pipelined
			 * RCPT and DATA replies still come; without pipelining,
			 * nothing more was sent. */
			for (size_t i = 0; i < c->batch->n; i++) {
				report(c, i, code, c->rep.text);
				c->rcpt_code[i] = -1;
			}
			if (!c->pipelining) {
				log_attempt(c, c->rep.text);
				transaction_done(c);
			}
			return;
		}
		if (!c->pipelining)
			send_line(c, "RCPT TO:<%s>", c->batch->items[0]->recipient);
		return;
	case EXPECT_RCPT: {
		size_t i = c->rcpt_pos++;
		if (c->rcpt_code[i] >= 0) {
			c->rcpt_code[i] = code;
			c->rcpt_text[i] = xstrdup(c->rep.text);
			if (code / 100 == 2) {
				c->accepted++;
			} else {
				report(c, i, code, c->rep.text);
				c->rcpt_code[i] = -1;
			}
		}
		if (!c->pipelining) {
			if (c->rcpt_pos < c->batch->n) {
				send_line(c, "RCPT TO:<%s>", c->batch->items[c->rcpt_pos]->recipient);
			} else if (c->accepted > 0) {
				send_line(c, "DATA");
			} else {
				log_attempt(c, c->rep.text);
				transaction_done(c);
			}
		}
		return;
	}
	case EXPECT_DATA:
		if (code == 354 && c->accepted > 0) {
			start_body(c);
		} else if (code == 354) {
			/* Pipelined DATA accepted with no recipient: end it empty. */
			evbuffer_add(bufferevent_get_output(c->bev), ".\r\n", 3);
			enter_state(c, MTA_DOT);
			c->accepted = 0;
		} else {
			for (size_t i = 0; i < c->batch->n; i++) {
				if (c->rcpt_code[i] > 0) {
					report(c, i, code, c->rep.text);
					c->rcpt_code[i] = -1;
				}
			}
			log_attempt(c, c->rep.text);
			transaction_done(c);
		}
		return;
	}
}

/* The reply to the final dot decides for every accepted recipient. */
static void dot_reply(struct mta_conn *c, int code)
{
	log_attempt(c, c->rep.text);
	for (size_t i = 0; i < c->batch->n; i++) {
		if (c->rcpt_code[i] > 0) {
			report(c, i, code, c->rep.text);
			c->rcpt_code[i] = -1;
		}
	}
	c->failed_txn = false;
	transaction_done(c);
}

/* One EHLO keyword line (after the code), e.g. "SIZE 10240000". */
static void parse_ehlo(struct mta_conn *c, const char *kw)
{
	if (strncasecmp(kw, "PIPELINING", 10) == 0)
		c->pipelining = true;
	else if (strncasecmp(kw, "8BITMIME", 8) == 0)
		c->eightbit = true;
	else if (strncasecmp(kw, "SMTPUTF8", 8) == 0)
		c->smtputf8 = true;
	else if (strncasecmp(kw, "STARTTLS", 8) == 0)
		c->starttls = true;
	else if (strncasecmp(kw, "SIZE", 4) == 0 && (kw[4] == ' ' || kw[4] == '\0'))
		c->size_limit = strtoull(kw + 4, NULL, 10);
}

static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

/* The zone requires TLS and cannot have it here: try later. */
static void tls_refused(struct mta_conn *c, const char *why)
{
	log_attempt(c, why);
	fail_rest(c, 0, why);
	conn_quit(c);
}

/* After "220" to STARTTLS: the handshake runs in a filter over the socket. */
static void start_tls(struct mta_conn *c)
{
	SSL *ssl = SSL_new(c->m->tls);
	/* SNI: the MX host name (no certificate check, but servers pick by it). */
	SSL_set_tlsext_host_name(ssl, c->targets[c->cur].host);
	struct bufferevent *plain = c->bev;
	bufferevent_setcb(plain, NULL, NULL, NULL, NULL);
	c->bev = bufferevent_openssl_filter_new(c->m->base, plain, ssl, BUFFEREVENT_SSL_CONNECTING,
						BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	struct timeval tv = {MTA_COMMAND_TIMEOUT_S, 0};
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	enter_state(c, MTA_HANDSHAKE);
}

static void on_reply(struct mta_conn *c, int code)
{
	switch (c->state) {
	case MTA_GREETING:
		if (code != 220) {
			log_msg(LOG_LEVEL_INFO, c->msg_id, "mta_greeting",
				"mx=%s remote=%s response=\"%s\" action=next_host",
				c->targets[c->cur].host, c->targets[c->cur].addr, c->rep.text);
			bufferevent_free(c->bev);
			c->bev = NULL;
			c->cur++;
			conn_next_target(c);
			return;
		}
		enter_state(c, MTA_EHLO);
		send_line(c, "EHLO %s", c->ehlo_name);
		return;
	case MTA_EHLO:
		if (code / 100 != 2) {
			enter_state(c, MTA_HELO);
			send_line(c, "HELO %s", c->ehlo_name);
			return;
		}
		if (!c->tls && c->starttls && !c->plain_retry) {
			enter_state(c, MTA_STARTTLS);
			send_line(c, "STARTTLS");
			return;
		}
		if (!c->tls && c->zone->require_tls) {
			tls_refused(c, "452 4.7.5 TLS is required but the server does not offer it");
			return;
		}
		start_transaction(c);
		return;
	case MTA_STARTTLS:
		if (code != 220) {
			if (c->zone->require_tls) {
				tls_refused(c, c->rep.text);
				return;
			}
			start_transaction(c); /* opportunistic: go on in plain text */
			return;
		}
		start_tls(c);
		return;
	case MTA_HELO:
		if (code / 100 == 2 && c->zone->require_tls) {
			tls_refused(c, "452 4.7.5 TLS is required but the server does not offer it");
			return;
		}
		if (code / 100 != 2) {
			log_attempt(c, c->rep.text);
			fail_rest(c, code, c->rep.text);
			conn_quit(c);
			return;
		}
		start_transaction(c);
		return;
	case MTA_ENVELOPE:
		envelope_reply(c, code);
		return;
	case MTA_DOT:
		dot_reply(c, code);
		return;
	case MTA_QUITTING:
		conn_close(c);
		return;
	case MTA_RSET:
		if (code / 100 != 2) {
			fail_rest(c, 421, "421 4.4.0 connection unusable after RSET");
			conn_quit(c);
			return;
		}
		c->failed_txn = false;
		start_transaction(c);
		return;
	default:
		/* A reply while none is due (e.g. while loading): protocol error. */
		log_msg(LOG_LEVEL_WARN, NULL, "mta_protocol", "conn=%llu state=%s response=\"%s\"",
			(unsigned long long)c->id, state_names[c->state], c->rep.text);
		fail_rest(c, 451, "451 4.5.0 unexpected reply from the receiving server");
		conn_close(c);
	}
}

static void ehlo_keyword(void *arg, const char *text, size_t len)
{
	struct mta_conn *c = arg;
	char kw[64];
	if (len >= sizeof(kw))
		len = sizeof(kw) - 1;
	memcpy(kw, text, len);
	kw[len] = '\0';
	parse_ehlo(c, kw);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct mta_conn *c = arg;
	struct mta *m = c->m;
	uint64_t id = c->id;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;
	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		enum reply_status st = reply_feed(&c->rep, line, len,
						  c->state == MTA_EHLO ? ehlo_keyword : NULL, c);
		free(line);
		if (st == REPLY_BAD) {
			fail_rest(c, 451, "451 4.5.0 malformed reply from the receiving server");
			conn_close(c);
			return;
		}
		if (st == REPLY_MORE)
			continue;
		on_reply(c, c->rep.code);
		/* The reply may have closed the connection or moved it on. */
		if (u64map_get(m->conns, id) != c || c->bev != bev || c->state == MTA_CLOSING)
			return;
	}
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct mta_conn *c = arg;
	(void)bev;
	if (c->state == MTA_BODY && c->chunk_waiting) {
		c->chunk_waiting = false;
		request_chunk(c);
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct mta_conn *c = arg;
	(void)bev;
	if ((what & BEV_EVENT_CONNECTED) && c->state == MTA_HANDSHAKE) {
		/* RFC 3207: after the handshake, forget what was said; EHLO again. */
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
		snprintf(c->tls_version, sizeof(c->tls_version), "%s", SSL_get_version(ssl));
		c->tls = true;
		c->pipelining = c->eightbit = c->smtputf8 = c->starttls = false;
		c->size_limit = 0;
		enter_state(c, MTA_EHLO);
		send_line(c, "EHLO %s", c->ehlo_name);
		return;
	}
	if (what & BEV_EVENT_CONNECTED) {
		enter_state(c, MTA_GREETING);
		struct timeval tv = {MTA_COMMAND_TIMEOUT_S, 0};
		bufferevent_set_timeouts(c->bev, &tv, &tv);
		return;
	}
	if (c->state == MTA_HANDSHAKE) {
		unsigned long e = bufferevent_get_openssl_error(c->bev);
		char why[256];
		snprintf(why, sizeof(why), "TLS handshake with %s [%s] failed: %s",
			 c->targets[c->cur].host, c->targets[c->cur].addr,
			 e ? ERR_reason_error_string(e) : "connection closed");
		bufferevent_free(c->bev);
		c->bev = NULL;
		if (c->zone->require_tls) {
			log_attempt(c, why);
			fail_rest(c, 0, why);
			conn_close(c);
			return;
		}
		/* Opportunistic TLS: once more with the same address, in plain text. */
		log_msg(LOG_LEVEL_INFO, c->msg_id, "mta_tls",
			"mx=%s remote=%s error=\"%s\" action=retry_plain", c->targets[c->cur].host,
			c->targets[c->cur].addr, why);
		c->plain_retry = true;
		conn_next_target(c);
		return;
	}
	const char *why = (what & BEV_EVENT_TIMEOUT) ? "timeout"
			  : (what & BEV_EVENT_EOF)   ? "connection closed by the server"
						     : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR());
	if (c->state == MTA_QUITTING) {
		conn_close(c);
		return;
	}
	if (c->state == MTA_CONNECTING || c->state == MTA_GREETING) {
		log_msg(LOG_LEVEL_INFO, c->batch ? c->msg_id : NULL, "mta_connect",
			"mx=%s remote=%s local=%s error=\"%s\" action=next_address",
			c->targets[c->cur].host, c->targets[c->cur].addr,
			c->local_addr ? c->local_addr : "any", why);
		bufferevent_free(c->bev);
		c->bev = NULL;
		c->cur++;
		c->plain_retry = false;
		conn_next_target(c);
		return;
	}
	if (c->batch != NULL) {
		char text[300];
		snprintf(text, sizeof(text), "connection to %s [%s] failed: %s",
			 c->targets[c->cur].host, c->targets[c->cur].addr, why);
		log_attempt(c, text);
		fail_rest(c, 0, text);
	}
	conn_close(c);
}

/* --- connecting --- */

static int bind_local(evutil_socket_t fd, int family, const char *local)
{
	if (family == AF_INET6) {
		struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
		if (inet_pton(AF_INET6, local, &sa.sin6_addr) != 1)
			return 1; /* an IPv4 source cannot serve an IPv6 target: skip */
		return bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	}
	struct sockaddr_in sa = {.sin_family = AF_INET};
	if (inet_pton(AF_INET, local, &sa.sin_addr) != 1)
		return 1;
	return bind(fd, (struct sockaddr *)&sa, sizeof(sa));
}

static void conn_next_target(struct mta_conn *c)
{
	int port = c->zone->port;
	for (; c->cur < c->ntargets; c->cur++) {
		const struct target *t = &c->targets[c->cur];
		struct sockaddr_storage ss = {0};
		socklen_t slen;
		int family;
		if (strchr(t->addr, ':') != NULL) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
			s6->sin6_family = family = AF_INET6;
			s6->sin6_port = htons((uint16_t)port);
			inet_pton(AF_INET6, t->addr, &s6->sin6_addr);
			slen = sizeof(*s6);
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
			s4->sin_family = family = AF_INET;
			s4->sin_port = htons((uint16_t)port);
			inet_pton(AF_INET, t->addr, &s4->sin_addr);
			slen = sizeof(*s4);
		}
		evutil_socket_t fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		/* SMTP is request/reply: without this, Nagle holds a small write
		 * (the end of a command batch, the last body piece) until the
		 * peer's delayed ACK, some 40 ms a message. */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (c->local_addr != NULL && bind_local(fd, family, c->local_addr) < 0) {
			log_msg(LOG_LEVEL_WARN, c->msg_id, "mta_bind",
				"local=%s error=\"%s\"", c->local_addr, strerror(errno));
			close(fd);
			continue;
		}
		c->bev = bufferevent_socket_new(c->m->base, fd, BEV_OPT_CLOSE_ON_FREE);
		/* Bodies go out in writes of up to a chunk, not libevent's 16 KiB. */
		bufferevent_set_max_single_write(c->bev, QUEUE_CHUNK_SIZE);
		bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
		c->tls = c->pipelining = c->eightbit = c->smtputf8 = c->starttls = false;
		c->size_limit = 0;
		struct timeval tv = {MTA_CONNECT_TIMEOUT_S, 0};
		bufferevent_set_timeouts(c->bev, &tv, &tv);
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
		enter_state(c, MTA_CONNECTING);
		if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)slen) != 0) {
			bufferevent_free(c->bev);
			c->bev = NULL;
			continue;
		}
		return;
	}
	/* Every address failed: try again later. */
	char text[200];
	snprintf(text, sizeof(text), "could not connect to any of %zu address(es) for %s",
		 c->ntargets, c->batch->domain);
	log_attempt(c, text);
	fail_rest(c, 0, text);
	conn_close(c);
}

static void add_target(struct mta_conn *c, size_t *cap, const char *host, const char *addr)
{
	c->targets = xreallocarray_grow(c->targets, cap, c->ntargets + 1, sizeof(*c->targets));
	c->targets[c->ntargets].host = xstrdup(host);
	c->targets[c->ntargets].addr = xstrdup(addr);
	c->ntargets++;
}

static void on_resolved(void *arg, const struct dns_mx_result *res)
{
	struct mta_conn *c = arg;
	c->dns_req = 0;
	metrics_observe_dns((double)(now_ms() - c->started_ms) / 1000.0);
	if (res->status != DNS_OK) {
		char text[300];
		snprintf(text, sizeof(text), "%s %s: %s", res->status == DNS_RETRY ? "451 4.4.3" : "550 5.1.2",
			 c->batch->domain, res->error ? res->error : "DNS lookup failed");
		log_attempt(c, text);
		if (res->status == DNS_RETRY)
			fail_rest(c, 0, text);
		else
			for (size_t i = 0; i < c->batch->n; i++)
				sched_result(c->m->sched, c->batch->items[i], SCHED_PERMFAIL, text, "dns");
		txn_clear(c);
		conn_close(c);
		return;
	}
	size_t cap = 0;
	const struct zone_config *z = c->batch->zone;
	for (size_t h = 0; h < res->nhosts; h++) {
		const struct dns_host *host = &res->hosts[h];
		/* preferIPv6 puts IPv6 first; ignoreIPv6 drops it. */
		for (int pass = 0; pass < 2; pass++) {
			bool want_v6 = (pass == 0) == z->prefer_ipv6;
			for (size_t a = 0; a < host->naddrs; a++) {
				bool v6 = strchr(host->addrs[a], ':') != NULL;
				if (v6 == want_v6 && !(v6 && z->ignore_ipv6))
					add_target(c, &cap, host->name, host->addrs[a]);
			}
		}
	}
	c->cur = 0;
	conn_next_target(c);
}

void mta_start(void *arg, struct sched_slot *slot, struct sched_batch *batch)
{
	struct mta *m = arg;
	struct mta_conn *c = xcalloc(1, sizeof(*c));
	c->m = m;
	c->id = ++m->next_id;
	c->slot = slot;
	c->batch = batch;
	memcpy(c->msg_id, batch->items[0]->id, sizeof(c->msg_id));
	c->zone = batch->zone;
	c->idle_ev = evtimer_new(m->base, on_idle_timeout, c);
	c->started_ms = now_ms();
	const struct pool_config *pool = sched_zone_pool(m->sched, batch->zone);
	if (slot->local >= 0 && pool != NULL) {
		c->local_addr = pool->addrs[slot->local].address;
		c->ehlo_name = pool->addrs[slot->local].name;
	}
	if (c->ehlo_name == NULL)
		c->ehlo_name = m->cfg->hostname;
	u64map_put(m->conns, c->id, c);
	metrics_connection(c->zone->name, 1);
	enter_state(c, MTA_RESOLVING);
	const char *host = batch->zone->host;
	unsigned char buf[16];
	if (host != NULL && (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1)) {
		size_t cap = 0;
		add_target(c, &cap, host, host);
		conn_next_target(c);
		return;
	}
	c->dns_req = dns_resolve_mx(m->dns, host ? host : batch->domain, on_resolved, c);
}

/* Says QUIT and waits (briefly) for the reply before closing, so that the
 * server has let go of the session when the slot is given to another
 * connection. */
static void conn_quit(struct mta_conn *c)
{
	if (c->bev == NULL) {
		conn_close(c);
		return;
	}
	send_line(c, "QUIT");
	enter_state(c, MTA_QUITTING);
	struct timeval tv = {5, 0};
	bufferevent_set_timeouts(c->bev, &tv, &tv);
}

/* Ends the connection at once and frees it. */
static void conn_close(struct mta_conn *c)
{
	enter_state(c, MTA_CLOSING);
	if (c->batch != NULL)
		fail_rest(c, 0, "451 4.4.2 connection closed before the delivery finished");
	txn_clear(c);
	if (c->dns_req)
		dns_cancel(c->m->dns, c->dns_req);
	if (c->bev != NULL)
		bufferevent_free(c->bev); /* a pending QUIT may be lost: harmless */
	event_free(c->idle_ev);
	for (size_t i = 0; i < c->ntargets; i++) {
		free(c->targets[i].host);
		free(c->targets[i].addr);
	}
	free(c->targets);
	u64map_remove(c->m->conns, c->id);
	metrics_connection(c->zone->name, -1);
	struct sched *s = c->m->sched;
	struct sched_slot *slot = c->slot;
	free(c);
	sched_release(s, slot);
}

struct mta *mta_new(struct event_base *base, const struct config *cfg, struct dns *dns,
		    const struct bounce_rules *rules, struct workpool *crypto)
{
	struct mta *m = xcalloc(1, sizeof(*m));
	m->crypto = crypto;
	m->base = base;
	m->cfg = cfg;
	m->dns = dns;
	m->rules = rules;
	m->conns = u64map_new();
	m->tls = SSL_CTX_new(TLS_client_method());
	if (m->tls == NULL)
		fatal("mta: cannot create a TLS context");
	/* Opportunistic TLS (RFC 7435): encrypt whenever possible, check nothing;
	 * a failed check would only push the mail back to plain text. */
	SSL_CTX_set_verify(m->tls, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_min_proto_version(m->tls, TLS1_2_VERSION);
	return m;
}

const struct bounce_rules *mta_set_rules(struct mta *m, const struct bounce_rules *rules)
{
	const struct bounce_rules *old = m->rules;
	m->rules = rules;
	return old;
}

void mta_attach(struct mta *m, struct sched *sched, struct queue *queue)
{
	m->sched = sched;
	m->queue = queue;
}

void mta_free(struct mta *m)
{
	if (m == NULL)
		return;
	size_t pos = 0;
	uint64_t id;
	void *v;
	while (u64map_next(m->conns, &pos, &id, &v)) {
		struct mta_conn *c = v;
		/* Unfinished deliveries stay in the store for the next start. */
		if (c->dns_req)
			dns_cancel(m->dns, c->dns_req);
		if (c->reading)
			queue_request_cancel(m->queue, c->read_req);
		if (c->bev)
			bufferevent_free(c->bev);
		event_free(c->idle_ev);
		json_decref(c->meta);
		free(c->header_block);
		free(c->expects);
		free(c->rcpt_code);
		if (c->rcpt_text && c->batch)
			for (size_t i = 0; i < c->batch->n; i++)
				free(c->rcpt_text[i]);
		free(c->rcpt_text);
		if (c->batch != NULL)
			for (size_t i = 0; i < c->batch->n; i++)
				if (c->rcpt_code == NULL || c->rcpt_code[i] >= 0)
					sched_item_abandon(c->batch->items[i]);
		sched_batch_free(c->batch);
		for (size_t i = 0; i < c->ntargets; i++) {
			free(c->targets[i].host);
			free(c->targets[i].addr);
		}
		free(c->targets);
		free(c->slot);
		free(c);
	}
	u64map_free(m->conns);
	SSL_CTX_free(m->tls);
	free(m);
}
