/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Ingest: turns a message arriving as a byte stream into a queued message.
 * The header block is collected (bounded by HEADER_BLOCK_MAX) and parsed;
 * body bytes go straight to the store in chunks and are never held whole.
 * At the end the header block is rewritten (Received: prepended, Message-ID
 * and Date added when missing, X-Sending-Zone and Bcc removed), each recipient is
 * routed to a zone, and the message is committed durably.  Shared by the
 * SMTP server and the HTTP API.
 *
 * What relaying the message needs is found from its content, not from what
 * the client declared: "bodyType" is 8BITMIME when the body has a byte
 * over 127; "smtputf8" when the envelope or the header block has UTF-8
 * (RFC 6531, 6532; a header with 8-bit bytes that are not UTF-8 counts as
 * 8-bit instead); "longLines" counts lines over 998 octets (RFC 5322
 * 2.1.1), which delivery folds.  A recipient given twice is kept once.
 */
#ifndef ZMTA_INGEST_H
#define ZMTA_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/config.h"
#include "queue/queue.h"

/* A recipient's DSN request (RFC 3461), as the client gave it. */
struct ingest_dsn_rcpt {
	const char *notify; /* "NEVER", or some of "SUCCESS,FAILURE,DELAY"; NULL: not given */
	const char *orcpt;  /* "rfc822;xtext"; NULL: not given */
};

/* Who sent the message and to whom. */
struct ingest_envelope {
	uint64_t session;      /* the SMTP session's id; 0 for the API */
	const char *interface; /* "feeder", "api", ... */
	const char *origin;    /* client IP address */
	const char *transhost; /* the name the client gave (HELO/EHLO) */
	const char *transtype; /* "ESMTP", "SMTP", "HTTP" */
	const char *user;      /* authenticated user or NULL */
	const char *tls;       /* "TLSv1.3 with cipher ..." or NULL */
	const char *from;      /* envelope sender; "" for the null sender */
	char *const *rcpts;    /* envelope recipients, each with a domain */
	size_t nrcpts;
	/* DSN (RFC 3461): RET ("FULL", "HDRS") and ENVID (xtext), NULL when not
	 * given; per recipient, nrcpts entries, or NULL for none at all. */
	const char *dsn_ret, *dsn_envid;
	const struct ingest_dsn_rcpt *dsn_rcpts;
	bool allow_routing_headers; /* X-Sending-Zone may choose the zone */
	const char *received_by;    /* our host name in Received: */
};

struct ingest;

/*
 * Starts a message with a fresh queue id.  `on_drain(arg)` is called when a
 * busy ingest (see ingest_busy) can take more input.  `cfg` must outlive it.
 */
struct ingest *ingest_new(struct queue *q, const struct config *cfg, void (*on_drain)(void *arg),
			  void *arg);
const char *ingest_id(const struct ingest *in);
/* The Message-ID value (given or added), once ingest_finish has run. */
const char *ingest_message_id(const struct ingest *in);

/*
 * Feeds message bytes.  Returns 0, or -1 once the header block has grown
 * past HEADER_BLOCK_MAX: the message must then be refused (552 5.3.4) and
 * further input is ignored.
 */
int ingest_write(struct ingest *in, const char *data, size_t len);
/* True while the store is behind: stop reading until on_drain. */
bool ingest_busy(const struct ingest *in);
/* Bytes fed so far. */
uint64_t ingest_size(const struct ingest *in);

/* A hook refused the message for good (5xx) or for now (4xx); `error` is
 * the handler's SMTP reply, or NULL for the caller's default. */
#define INGEST_REJECTED -10
#define INGEST_DEFERRED -11

/* rc 0: queued (durable); else a QUEUE_ERR_* code and `error` says why (a
 * temporary failure: nothing of the message is visible), or INGEST_REJECTED
 * / INGEST_DEFERRED. */
typedef void (*ingest_done_cb)(void *arg, int rc, const char *error);

/*
 * Ends the input: rewrites the header block, runs the hook points
 * message:headers, message:store, queue:route (per recipient) and
 * message:queue (docs/hooks.md), routes, commits.  The envelope is copied.
 * `cb` runs once the commit is durable or failed, or a hook refused, unless
 * the ingest is freed first (which cancels a pending hook).
 */
void ingest_finish(struct ingest *in, const struct ingest_envelope *env, ingest_done_cb cb,
		   void *arg);

/*
 * Reading the message back while a hook holds it (message:store,
 * message:queue: a content check such as Rspamd): the header block as the
 * hooks have left it so far, then the body from the store, one chunk in
 * memory at a time.  ingest_reader_read() fills buf and returns the bytes,
 * 0 at the end, INGEST_READ_WAIT when the store has not answered yet
 * (`ready(arg)` is called once it has), or INGEST_READ_ERROR.  Free the
 * reader before the ingest.
 */
#define INGEST_READ_WAIT ((ssize_t)-1)
#define INGEST_READ_ERROR ((ssize_t)-2)
struct ingest_reader;
struct ingest_reader *ingest_reader_new(struct ingest *in, void (*ready)(void *arg), void *arg);
/* What the reader will give in all. */
uint64_t ingest_reader_size(const struct ingest_reader *r);
ssize_t ingest_reader_read(struct ingest_reader *r, char *buf, size_t len);
void ingest_reader_free(struct ingest_reader *r);

/* Frees it; an unfinished message leaves nothing in the store. */
void ingest_free(struct ingest *in);

#endif
