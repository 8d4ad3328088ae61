/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Rewrites a stored message on its way to a server that needs it in another
 * form, as a stream (a message is never held whole):
 *
 * - TRANSFORM_DOWNGRADE (RFC 6152 3, as Postfix does): the next hop has no
 *   8BITMIME.  Each leaf part declared 8bit or binary, or with no
 *   Content-Transfer-Encoding, is encoded quoted-printable (GMime's encoder)
 *   and its header says so; multiparts and message/rfc822 parts declared
 *   8bit are relabelled 7bit, and their parts are walked in turn.  Boundary
 *   lines, preambles, epilogues and parts already 7bit, quoted-printable or
 *   base64 pass unchanged; header fields are not encoded.
 * - TRANSFORM_FOLD (RFC 5322 2.1.1, as Postfix's smtp_line_length_limit):
 *   a line longer than 998 octets is broken by inserting CRLF SP, so that
 *   no receiver sees a longer line.
 *
 * The same transform runs where the DKIM body hash of the rewritten body is
 * made (the store thread) and where the body is sent, so signatures cover
 * exactly the bytes sent.  Pure, no I/O; unit-tested.
 */
#ifndef ZMTA_TRANSFORM_H
#define ZMTA_TRANSFORM_H

#include <stdbool.h>
#include <stddef.h>

#define TRANSFORM_DOWNGRADE 1u
#define TRANSFORM_FOLD 2u

/* Longest line sent, without its CRLF (RFC 5322 2.1.1). */
#define TRANSFORM_LINE_MAX 998

typedef void (*transform_out)(void *arg, const char *data, size_t len);

struct transform;

/*
 * Starts a transform of the message whose header block is header[0..hlen)
 * (every field with its CRLF, no empty line).  The rewritten header block
 * is returned in *new_header (malloc'ed, NUL-terminated) and *new_hlen; body bytes given to
 * transform_feed come out through out(arg, ...).
 */
struct transform *transform_new(unsigned flags, const char *header, size_t hlen, char **new_header,
				size_t *new_hlen, transform_out out, void *arg);
/* Body bytes, from the empty line after the header block on. */
void transform_feed(struct transform *t, const char *data, size_t len);
/* The end of the body: what is still held comes out. */
void transform_end(struct transform *t);
void transform_free(struct transform *t);

#endif
