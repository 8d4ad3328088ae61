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
	char *from; /* envelope sender: envelope.from, else from, sender, replyTo ("" allowed) */
	char **
	    rcpts; /* envelope recipients: envelope to + cc + bcc, else to + cc + bcc (deduplicated) */
	size_t nrcpts;
	char *message_id; /* the Message-ID header value, <...> */
};

/* A problem with the input: which field and what is wrong. */
struct compose_error {
	char field[64]; /* e.g. "to", "attachments[2].path", "" for the whole body */
	char message[256];
};

/*
 * Builds the message as Nodemailer's MailComposer does (ZoneMTA's /send),
 * with file and URL access off: the same envelope, MIME tree, types,
 * dispositions, file names, Content-IDs and header values.  Fields: from,
 * sender, to, cc, bcc, replyTo, inReplyTo, references, subject, messageId,
 * date (a string or ms since the epoch), text, html, watchHtml, amp,
 * icalEvent, alternatives, attachments, headers, envelope {from, to, cc,
 * bcc}, raw, textEncoding, encoding, and priority (Nodemailer's sendMail
 * option, which MailComposer leaves out).  Content is a string or {content
 * (+ encoding), raw, path or href holding a data: URI}; any other path or
 * URL is refused.  docs/api.md lists where we differ, and why.
 * `hostname` makes Message-IDs when the sender has no domain.  Returns 0
 * and fills `out` (message_id may be NULL for `raw` without one), or -1
 * and fills `err`.
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

struct header_list;

/*
 * The envelope of a prepared message from its headers, as ZoneMTA's
 * /send-raw takes it: From (else Sender), and To, Cc and Bcc.  0, or -1
 * with `err`; *from is "" when neither header names one.
 */
int compose_headers_envelope(const struct header_list *h, char **from, char ***rcpts,
			     size_t *nrcpts, struct compose_error *err);

/* A copy with every bare LF and every bare CR made CRLF (mail travels with
 * CRLF line ends, RFC 5322 2.3, and a lone CR must never reach a receiver
 * that ends lines at CR: SMTP smuggling).  NUL-terminated. */
char *compose_crlf_lines(const char *s, size_t len, size_t *out_len);

#endif
