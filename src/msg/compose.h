/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Composing a message from JSON in Nodemailer's format (POST /send) with
 * GMime: headers with RFC 2047 encoded words for non-ASCII names and
 * subjects, RFC 2231 parameters for non-ASCII filenames, text and html
 * bodies as quoted-printable or base64 as fits, and the multipart structure
 * (mixed > alternative / related) that the parts call for.  Files and URLs
 * are never read: content comes in the JSON or not at all.
 */
#ifndef ZMTA_COMPOSE_H
#define ZMTA_COMPOSE_H

#include <jansson.h>
#include <stddef.h>

struct compose_result {
	char *message; /* the complete message (headers, empty line, body), CRLF line ends */
	size_t len;
	char *from;   /* envelope sender: envelope.from, else sender, else from ("" allowed) */
	char **rcpts; /* envelope recipients: envelope.to, else to + cc + bcc (deduplicated) */
	size_t nrcpts;
	char *message_id; /* the Message-ID header value, <...> */
};

/* A problem with the input: which field and what is wrong. */
struct compose_error {
	char field[64]; /* e.g. "to", "attachments[2].path", "" for the whole body */
	char message[256];
};

/*
 * Builds the message.  Supported fields: from, sender, to, cc, bcc, replyTo,
 * inReplyTo, references (string or list), subject, text, html, attachments
 * [{filename, content (string; base64 when encoding is "base64"), encoding,
 * contentType, cid, contentDisposition}], alternatives [{content,
 * contentType, encoding}], headers (object {name: value or [values]} or list
 * [{key, value}]), messageId, date (RFC 5322 string or ISO 8601), envelope
 * {from, to}, priority ("high", "normal", "low").  Addresses are strings
 * ("Name <a@b>", comma-separated lists), {name, address} objects, or lists
 * of either.  Bcc never appears in the headers.  An attachment or
 * alternative with `path` or `href` is refused (no file or URL access).
 * `hostname` makes Message-IDs (<random@hostname>) when none is given.
 * Returns 0 and fills `out`, or -1 and fills `err` (unknown top-level keys
 * are ignored, as Nodemailer does; wrong types, bad addresses, no
 * recipients and bad base64 are errors).
 */
int compose_message(const json_t *msg, const char *hostname, struct compose_result *out,
		    struct compose_error *err);

void compose_result_clear(struct compose_result *r);

/*
 * The bare addresses (domains in IDNA form, deduplicated) of address-list
 * header values such as To: and Cc: (POST /send-raw).  0 and *addrs (a
 * malloc'ed array of malloc'ed strings), or -1 and `err` naming `field`.
 */
int compose_envelope_addresses(const char *const *values, size_t nvalues, const char *field,
			       char ***addrs, size_t *naddrs, struct compose_error *err);

#endif
