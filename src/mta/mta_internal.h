/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Inside the delivery engine: the types its files share.
 *
 *   mta.c          the engine: create, attach, stop, free; the TLS context
 *   mta_conn.c     one connection: targets, source address, connect, phase
 *                  deadlines, the one teardown
 *   mta_session.c  the SMTP client state machine: each state's action in
 *                  mta_enter_state(), replies, ESMTP parameters
 *   mta_body.c     the message on the wire: store reads, transform
 *                  (downgrade, folding), dot-stuffing, the final dot
 *   mta_sign.c     DKIM: which keys, body hashes, signing on a crypto thread
 */
#ifndef ZMTA_MTA_INTERNAL_H
#define ZMTA_MTA_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/bufferevent.h>
#include <jansson.h>
#include <openssl/ssl.h>

#include "core/hmap.h"
#include "hook/hook.h"
#include "msg/header.h"
#include "mta/mta.h"
#include "mta/reply.h"
#include "msg/transform.h"
#include "net/socks5.h"
#include "outcome/outcome.h"

struct mta {
	struct event_base *base;
	const struct config *cfg;
	struct dns *dns;
	struct outcome *outcome;
	struct sched *sched;
	struct queue *queue;
	struct u64map *conns; /* id → struct mta_conn */
	uint64_t next_id;
	SSL_CTX *tls;                /* client context: opportunistic, no certificate checks */
	struct strmap *tls_sessions; /* "addr port" → SSL_SESSION *, for resumption */
	struct workpool *crypto;
	bool stopping; /* no new transactions; drained() once the last DOT is answered */
	void (*drained)(void *arg);
	void *drained_arg;
};

enum mta_state {
	MTA_HOOK,       /* waiting for sender:connect or sender:headers (src/hook/) */
	MTA_RESOLVING,  /* MX (or smart host) lookup */
	MTA_CONNECTING, /* TCP connect to targets[cur] (or to the proxy) */
	MTA_SOCKS,      /* the SOCKS5 handshake with the proxy (net/socks5.h) */
	MTA_GREETING,   /* waiting for 220 */
	MTA_EHLO,
	MTA_HELO,
	MTA_STARTTLS,  /* STARTTLS sent, waiting for 220 */
	MTA_HANDSHAKE, /* TLS handshake in progress */
	MTA_AUTH,      /* AUTH to the smart host sent, waiting for 235 or 334 */
	MTA_LOADING,   /* reading the message's metadata and first chunk */
	MTA_HASHING,   /* the store makes DKIM body hashes not made at intake */
	MTA_SIGNING,   /* DKIM signatures being made on a crypto thread */
	MTA_MAIL,      /* MAIL sent (with RCPT and DATA when pipelining) */
	MTA_RCPT,      /* waiting for RCPT replies */
	MTA_DATA,      /* waiting for 354 */
	MTA_BODY,      /* streaming the message */
	MTA_DOT,       /* waiting for the reply to the final dot */
	MTA_RSET,      /* RSET after a transaction that did not end with a dot */
	MTA_IDLE,      /* parked: waiting for more mail to the same place */
	MTA_QUIT,      /* QUIT sent, waiting for the reply before closing */
	MTA_CLOSED,
};

/* Where each recipient of the transaction stands. */
enum mta_item_state {
	MTA_ITEM_PENDING,  /* no answer yet */
	MTA_ITEM_ACCEPTED, /* RCPT accepted; the final reply decides */
	MTA_ITEM_DONE,     /* reported to the outcome stage: the item is gone */
};

struct mta_target {
	char *host; /* MX host name, or the address for a literal */
	char *addr; /* IPv4 or IPv6 literal; through a proxy, maybe a name (.onion) */
	int family; /* POOL_IPV4 or POOL_IPV6 */
};

/* The message being sent, from LOADING to the end of the transaction. */
struct mta_txn {
	struct sched_batch *batch;
	enum mta_item_state *item; /* per batch item */
	size_t rcpt_sent, rcpt_replies, accepted, delivered;
	json_t *meta;
	char *header_block; /* as it will be sent: transformed, then signed */
	size_t header_len;
	char *body0; /* body chunk 0, read with the metadata */
	size_t body0_len;
	uint32_t next_chunk;
	uint32_t nchunks;     /* body chunks stored, from bodySize; 0: unknown */
	unsigned transform;   /* TRANSFORM_* the body needs for this server */
	struct transform *tf; /* while streaming, when transform != 0 */
	bool eight_bit, smtputf8;
	bool hashes_asked;
	bool keys_fetched; /* run-time DKIM keys were asked for again */
	bool reading;      /* a store request is pending */
	uint64_t read_req;
	bool chunk_waiting; /* a chunk is held back until output drains */
	bool bol;           /* dot-stuffing: at the start of a line */
	char last2[2];      /* the last bytes sent, to end with CRLF */
	int64_t started_ms; /* monotonic */
};

struct mta_conn {
	struct mta *m;
	uint64_t id;
	struct sched_slot *slot;
	const struct zone_config *zone;
	const struct pool_config *pool;
	char msg_id[QUEUE_ID_LEN + 1]; /* of the current (or last) transaction, for logs */
	enum mta_state state;
	struct mta_target *targets;
	size_t ntargets, cur;
	uint64_t dns_req;
	struct bufferevent *bev;
	const char *local_addr; /* the pool address of this target's family, or NULL */
	const char *ehlo_name;
	/* through a SOCKS5 proxy (onion.proxy, zones.*.proxy), or NULL */
	const struct socks_proxy *proxy;
	struct socks5 socks;
	/* sender:connect set where to go: a host (NULL: MX or zones.*.host)
	 * and port (0: zones.*.port) */
	const char *next_hop;
	int next_port;
	/* the server */
	bool pipelining, eightbit, smtputf8, starttls, size_ok;
	bool auth_plain, auth_login; /* mechanisms the server offers */
	bool dsn;                    /* the server takes DSN parameters (RFC 3461) */
	bool authed;                 /* AUTH done on this connection */
	int auth_step;               /* LOGIN: 0 user next, 1 password next, 2 done */
	uint64_t size_limit;
	bool tls;         /* this connection is encrypted */
	bool plain_retry; /* TLS failed with this address: now try without */
	char tls_version[16];
	struct reply rep;
	bool answered;        /* a server has replied on this connection */
	char last_error[300]; /* why the last target failed, for the deferral */
	int last_code;
	bool failed_txn; /* the last transaction ended without its final dot */
	struct mta_txn txn;
	bool in_txn;
	/* phase deadline: armed once the server has taken what was written */
	struct event *deadline_ev;
	uint64_t deadline_ms;
	bool deadline_pending; /* still writing: the deadline waits */
	size_t unsent_seen;    /* while pending: bytes not taken, last look */
	int64_t progress_ms;   /* while pending: when that last went down */
	struct event *idle_ev; /* ends a parked connection after connectionCache.ttl */
	int64_t started_ms;    /* monotonic: connection start */
	/* a pending sender:connect or sender:headers run */
	uint64_t hook_id;
	struct hook_ctx hook_ctx;
	struct header_list hook_headers;
};

/* mta_session.c */
void mta_enter_state(struct mta_conn *c, enum mta_state st);
const char *mta_strstate(enum mta_state st);
/* Connecting or setting up the session: a failure here moves on to the
 * next address (RFC 5321 5.1), as a failed connect does. */
bool mta_state_before_session(enum mta_state st);
void mta_on_read(struct bufferevent *bev, void *arg);
void mta_on_write(struct bufferevent *bev, void *arg);
void mta_on_event(struct bufferevent *bev, short what, void *arg);
/* The TLS handshake on the connection: after STARTTLS's 220, or at the
 * connect with implicit TLS (zones.*.secure). */
void mta_start_tls(struct mta_conn *c);
void mta_send_line(struct mta_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mta_transaction_start(struct mta_conn *c, struct sched_batch *batch);
void mta_transaction_done(struct mta_conn *c);
void mta_send_envelope(struct mta_conn *c);
void mta_log_attempt(struct mta_conn *c, const char *response);
void mta_idle_timeout(evutil_socket_t fd, short what, void *arg);

/* mta.c */
/* While stopping: calls drained() once no connection is left. */
void mta_check_drained(struct mta *m);

/* mta_conn.c */
/* The port this connection goes to. */
int mta_conn_port(const struct mta_conn *c);
void mta_conn_resolved(struct mta_conn *c);
void mta_conn_connect_next(struct mta_conn *c);
/* Connected to the proxy: the SOCKS5 handshake starts. */
void mta_socks_start(struct mta_conn *c);
/* Bytes from the proxy during the handshake. */
void mta_socks_read(struct mta_conn *c);
void mta_conn_next_target(struct mta_conn *c, const char *why, int code);
void mta_conn_deadline(struct mta_conn *c, uint64_t ms);
void mta_conn_deadline_clear(struct mta_conn *c);
/* The bufferevent's write timeout: timeouts.body without write progress. */
void mta_conn_set_write_timeout(struct mta_conn *c);
/* Reports every item not reported yet (code/text, the rules classify) and
 * ends the transaction. */
void mta_fail_rest(struct mta_conn *c, int code, const char *text);
/* Reports item i of the transaction. */
void mta_item_report(struct mta_conn *c, size_t i, enum outcome_status st, int code,
		     const char *text, const char *category);
/* A hook refused the transaction: every item not done gets the reply (or
 * `fallback`), PERMFAIL for REJECT, TEMPFAIL for TEMPFAIL. */
void mta_hook_refused(struct mta_conn *c, const struct hook_result *res);
/* Ends the transaction's memory (every item must be done). */
void mta_txn_clear(struct mta_conn *c);
/* Says QUIT and waits briefly for the reply, then closes. */
void mta_conn_quit(struct mta_conn *c);
/* The one teardown: items not reported get (code, text) or, with text
 * NULL, are abandoned (stay queued); the slot goes back; c is freed. */
void mta_conn_close(struct mta_conn *c, int code, const char *text);

/* mta_body.c */
/* After the load: the transform this server needs, and the header block
 * as it will be sent. */
void mta_body_prepare(struct mta_conn *c);
void mta_body_start(struct mta_conn *c);
void mta_body_on_drain(struct mta_conn *c);
void mta_body_clear(struct mta_conn *c);

/* mta_sign.c */
/* Starts signing when keys apply (the state moves on by itself); false when
 * the message goes unsigned. */
bool mta_sign_start(struct mta_conn *c);

#endif
