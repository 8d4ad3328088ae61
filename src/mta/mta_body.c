/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The message on the wire: the header block, then the body read chunk by
 * chunk from the store (never more than MTA_OUTPUT_HIGH waiting to be
 * sent), through the transform the server needs (8-bit downgrade, folding
 * of long lines), dot-stuffed (RFC 5321 4.5.2) and ended with CRLF.CRLF.
 */
#include "mta/mta_internal.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "core/log.h"
#include "msg/transform.h"

/* Stop reading the store while this much of the message waits to be sent. */
#define MTA_OUTPUT_HIGH (512 * 1024)
/* Body pieces at least this long are sent from their buffer, not copied. */
#define MTA_REFERENCE_MIN 4096

/* The TRANSFORM_* flags the message needs for this server. */
static unsigned transform_for(const struct mta_conn *c)
{
	const struct mta_txn *x = &c->txn;
	unsigned t = 0;
	/* RFC 6152 3: without 8BITMIME, 8-bit content is converted to 7 bits. */
	if (x->eight_bit && !c->eightbit)
		t |= TRANSFORM_DOWNGRADE;
	json_int_t long_lines = json_integer_value(json_object_get(x->meta, "longLines"));
	if (long_lines > 0)
		t |= TRANSFORM_FOLD;
	return t;
}

static void release_owned(const void *data, size_t len, void *owned)
{
	(void)data;
	(void)len;
	free(owned);
}

/*
 * Writes message bytes with dot-stuffing.  A dot is doubled after every
 * line-break character, CR or LF alone included: a receiver that ends
 * lines at either must still never read an end of data from us.  `owned`,
 * when not NULL, is the malloc'ed buffer holding data, handed over: what
 * follows the last stuffed dot is then queued by reference, not copied.
 */
static void write_stuffed(struct mta_conn *c, const char *data, size_t len, char *owned)
{
	struct mta_txn *x = &c->txn;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	if (len >= 2) {
		memcpy(x->last2, data + len - 2, 2);
	} else if (len == 1) {
		x->last2[0] = x->last2[1];
		x->last2[1] = data[0];
	}
	size_t start = 0, i = 0; /* data[start..i) is checked, not yet added */
	while (i < len) {
		if (x->bol && data[i] == '.') {
			evbuffer_add(out, data + start, i - start);
			evbuffer_add(out, ".", 1);
			start = i;
		}
		const char *lf = memchr(data + i, '\n', len - i);
		size_t end = lf ? (size_t)(lf - data) : len;
		const char *cr = memchr(data + i, '\r', end - i);
		const char *brk = cr ? cr : lf;
		x->bol = brk != NULL;
		i = brk ? (size_t)(brk - data) + 1 : len;
	}
	if (owned != NULL && len - start >= MTA_REFERENCE_MIN) {
		evbuffer_add_reference(out, data + start, len - start, release_owned, owned);
	} else {
		evbuffer_add(out, data + start, len - start);
		free(owned);
	}
}

static void transformed(void *arg, const char *data, size_t len)
{
	write_stuffed(arg, data, len, NULL);
}

/* Body bytes (owned: a malloc'ed buffer handed over, or NULL). */
static void body_write(struct mta_conn *c, const char *data, size_t len, char *owned)
{
	if (c->txn.tf != NULL) {
		transform_feed(c->txn.tf, data, len);
		free(owned);
		return;
	}
	write_stuffed(c, data, len, owned);
}

static void chunk_read(void *arg, int rc, const char *data, size_t len);

static void request_chunk(struct mta_conn *c)
{
	struct mta_txn *x = &c->txn;
	x->reading = true;
	x->read_req = queue_chunk_get(c->m->queue, c->msg_id, x->next_chunk++, chunk_read, c);
}

/* The whole message is out: end it with the final dot. */
static void body_end(struct mta_conn *c)
{
	struct mta_txn *x = &c->txn;
	if (x->tf != NULL)
		transform_end(x->tf);
	struct evbuffer *out = bufferevent_get_output(c->bev);
	/* The last line must end in CRLF before the dot. */
	if (memcmp(x->last2, "\r\n", 2) != 0)
		evbuffer_add(out, "\r\n", 2);
	evbuffer_add(out, ".\r\n", 3);
	mta_enter_state(c, MTA_DOT);
}

/* A chunk went out: the next one, once the output has room, or the end. */
static void body_next(struct mta_conn *c)
{
	struct mta_txn *x = &c->txn;
	if (x->nchunks > 0 && x->next_chunk >= x->nchunks)
		body_end(c);
	else if (evbuffer_get_length(bufferevent_get_output(c->bev)) > MTA_OUTPUT_HIGH)
		x->chunk_waiting = true; /* mta_body_on_drain asks for the next one */
	else
		request_chunk(c);
}

static void chunk_read(void *arg, int rc, const char *data, size_t len)
{
	struct mta_conn *c = arg;
	struct mta_txn *x = &c->txn;
	x->reading = false;
	if (rc < 0 || (rc == 0 && x->nchunks > 0)) {
		/* The server must not take half a message: drop the connection. */
		const char *why = rc < 0
				      ? "queue read error while sending"
				      : "queue read error while sending: a body chunk is missing";
		mta_log_attempt(c, why);
		mta_conn_close(c, 451, "451 4.3.0 queue read error while sending");
		return;
	}
	if (rc == 0) {
		body_end(c); /* the size was not recorded: the end is the first missing chunk */
		return;
	}
	body_write(c, data, len, NULL);
	body_next(c);
}

void mta_body_prepare(struct mta_conn *c)
{
	struct mta_txn *x = &c->txn;
	x->transform = transform_for(c);
	if (x->transform == 0)
		return;
	/* The transform reads the original header block (what the parts
	 * are) and gives the one to send and sign; the body goes through
	 * it as it streams. */
	char *h;
	size_t hlen;
	x->tf = transform_new(x->transform, x->header_block, x->header_len, &h, &hlen, transformed,
			      c);
	free(x->header_block);
	x->header_block = h;
	x->header_len = hlen;
}

void mta_body_start(struct mta_conn *c)
{
	struct mta_txn *x = &c->txn;
	x->bol = true;
	x->last2[0] = x->last2[1] = 0;
	x->next_chunk = 0;
	write_stuffed(c, x->header_block, x->header_len, NULL);
	if (x->body0 == NULL) {
		request_chunk(c);
		return;
	}
	char *b0 = x->body0;
	x->body0 = NULL;
	x->next_chunk = 1;
	body_write(c, b0, x->body0_len, b0);
	body_next(c);
}

void mta_body_on_drain(struct mta_conn *c)
{
	struct mta_txn *x = &c->txn;
	if (x->chunk_waiting) {
		x->chunk_waiting = false;
		request_chunk(c);
	}
}

void mta_body_clear(struct mta_conn *c)
{
	transform_free(c->txn.tf);
	c->txn.tf = NULL;
}
