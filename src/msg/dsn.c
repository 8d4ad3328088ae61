/* SPDX-License-Identifier: EUPL-1.2 */
/* Delivery status notifications as mail; see dsn.h. */
#include "msg/dsn.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "core/utf8.h"
#include "core/xmalloc.h"
#include "msg/header.h"

/* A growing output buffer. */
struct out {
	char *buf;
	size_t len, cap;
};

#define PUTS(o, literal) put((o), (literal), sizeof(literal) - 1)

static void put(struct out *o, const char *s, size_t n)
{
	o->buf = xreallocarray_grow(o->buf, &o->cap, o->len + n + 1, 1);
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static void putf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = xvasprintf(fmt, ap);
	va_end(ap);
	put(o, s, strlen(s));
	free(s);
}

static void put_date(struct out *o, int64_t ms)
{
	char date[64];
	header_date_format((time_t)(ms / 1000), date, sizeof(date));
	put(o, date, strlen(date));
}

/* Longest reply text kept: folding cannot break a word, so this keeps
 * every line under the 998 octets of RFC 5322 2.1.1. */
#define DIAGNOSTIC_MAX 900

/* A reply as one line: its line breaks become spaces, bytes that are not
 * UTF-8 are replaced, and it is cut (at a character) after
 * DIAGNOSTIC_MAX octets. */
static char *one_line(const char *text)
{
	char *s = utf8_sanitize(text, strlen(text));
	for (char *p = s; *p; p++)
		if (*p == '\r' || *p == '\n' || *p == '\t')
			*p = ' ';
	size_t n = strlen(s);
	if (n > DIAGNOSTIC_MAX) {
		n = DIAGNOSTIC_MAX;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--; /* not inside a character */
		s[n] = '\0';
	}
	return s;
}

/* "Name: value" folded at spaces so no line passes 78 octets (RFC 5322
 * 2.2.3; message/delivery-status fields fold the same way). */
static void put_field(struct out *o, const char *name, const char *value)
{
	size_t col = strlen(name) + 2;
	putf(o, "%s: ", name);
	const char *p = value;
	while (*p != '\0') {
		const char *sp = strchr(p + 1, ' ');
		size_t word = sp ? (size_t)(sp - p) : strlen(p);
		if (col + word > 78 && col > strlen(name) + 2 && *p == ' ') {
			PUTS(o, "\r\n");
			col = 0;
		}
		put(o, p, word);
		col += word;
		p += word;
	}
	PUTS(o, "\r\n");
}

static bool has_8bit(const char *s)
{
	return s != NULL && utf8_has_8bit(s, strlen(s));
}

static const char *default_status(enum dsn_kind k)
{
	return k == DSN_FAILED ? "5.0.0" : k == DSN_DELAYED ? "4.0.0" : "2.0.0";
}

static const char *action_name(enum dsn_kind k)
{
	return k == DSN_FAILED ? "failed" : k == DSN_DELAYED ? "delayed" : "relayed";
}

/* Per recipient: its address, the host and what it said (and for a delay
 * until when it is tried), a blank line after each. */
static void recipients_block(struct out *o, const struct dsn_report *r)
{
	for (size_t i = 0; i < r->nrcpts; i++) {
		const struct dsn_recipient *d = &r->rcpts[i];
		putf(o, "<%s>", d->recipient);
		if (d->remote_mta != NULL)
			putf(o, ": host %s said", d->remote_mta);
		if (d->diagnostic != NULL) {
			char *diag = one_line(d->diagnostic);
			putf(o, ":\r\n    %s", diag);
			free(diag);
		}
		if (r->kind == DSN_DELAYED && d->will_retry_until_ms > 0) {
			PUTS(o, "\r\n    Delivery will be tried until ");
			put_date(o, d->will_retry_until_ms);
		}
		PUTS(o, "\r\n\r\n");
	}
}

/* A template's text with its placeholders filled in (a subject line
 * when `line`: one line, no CR or LF). */
static void put_template(struct out *o, const struct dsn_report *r, const char *t, bool line)
{
	while (*t != '\0') {
		const char *open = strchr(t, '{');
		if (open == NULL) {
			put(o, t, strlen(t));
			return;
		}
		put(o, t, (size_t)(open - t));
		const char *close = strchr(open, '}');
		size_t n = close ? (size_t)(close - open - 1) : 0;
#define IS(name) (n == sizeof(name) - 1 && memcmp(open + 1, name, n) == 0)
		char *subject = r->original_subject ? one_line(r->original_subject) : NULL;
		if (close == NULL) {
			put(o, open, 1);
			t = open + 1;
			free(subject);
			continue;
		} else if (IS("hostname")) {
			put(o, r->reporting_mta, strlen(r->reporting_mta));
		} else if (IS("sender")) {
			put(o, r->to, strlen(r->to));
		} else if (IS("subject")) {
			if (subject != NULL)
				put(o, subject, strlen(subject));
		} else if (IS("messageId")) {
			if (r->original_message_id != NULL)
				put(o, r->original_message_id, strlen(r->original_message_id));
		} else if (IS("date")) {
			put_date(o, r->arrival_ms);
		} else if (IS("recipients") && !line) {
			recipients_block(o, r);
		} else {
			put(o, open, n + 2); /* not ours: as written */
		}
#undef IS
		free(subject);
		t = close + 1;
	}
}

/* The template's subject as a header value: as it is when ASCII, else
 * RFC 2047 encoded words of UTF-8 (base64), folded, each under 76
 * characters and cut only between characters. */
static void put_subject(struct out *o, const struct dsn_report *r)
{
	struct out text = {0};
	put_template(&text, r, r->template_subject, true);
	const char *s = text.buf ? text.buf : "";
	size_t n = text.len;
	if (!has_8bit(s)) {
		put(o, s, n);
		free(text.buf);
		return;
	}
	size_t i = 0;
	while (i < n) {
		size_t take = n - i < 45 ? n - i : 45;
		while (take < n - i && ((unsigned char)s[i + take] & 0xc0) == 0x80)
			take--; /* not inside a character */
		unsigned char b64[64];
		int len = EVP_EncodeBlock(b64, (const unsigned char *)s + i, (int)take);
		putf(o, "%s=?UTF-8?B?%.*s?=", i > 0 ? "\r\n " : "", len, (const char *)b64);
		i += take;
	}
	free(text.buf);
}

static void human_part(struct out *o, const struct dsn_report *r)
{
	if (r->template_text != NULL) {
		put_template(o, r, r->template_text, false);
		/* the CRLF before the boundary belongs to it (RFC 2046 5.1.1):
		 * the text's own last line break stays the text's */
		PUTS(o, "\r\n");
		return;
	}
	putf(o, "This is the mail system at host %s.\r\n\r\n", r->reporting_mta);
	if (r->kind == DSN_FAILED)
		PUTS(o, "I'm sorry to have to inform you that your message could not be\r\n"
			"delivered to one or more recipients.\r\n");
	else if (r->kind == DSN_DELAYED)
		PUTS(o, "Your message could not be delivered yet to one or more recipients.\r\n"
			"It is still in the queue and delivery will be tried again.\r\n");
	else
		PUTS(o, "Your message was relayed to the recipients below, to a system that\r\n"
			"does not send delivery notifications itself.\r\n");
	if (r->original_subject != NULL) {
		char *subject = one_line(r->original_subject);
		putf(o, "\r\nSubject: %s\r\n", subject);
		free(subject);
	}
	PUTS(o, "\r\n");
	recipients_block(o, r);
}

static int hex_value(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* An xtext (RFC 3461 4) decoded; kept encoded when it would decode to a
 * control character, which has no place in a header field. */
static char *xtext_decode(const char *x)
{
	char *out = xmalloc(strlen(x) + 1), *p = out;
	for (const char *s = x; *s; s++) {
		int hi, lo;
		if (*s == '+' && (hi = hex_value(s[1])) >= 0 && (lo = hex_value(s[2])) >= 0) {
			int c = hi * 16 + lo;
			if (c < 0x20 || c == 0x7f) {
				free(out);
				return xstrdup(x);
			}
			*p++ = (char)c;
			s += 2;
		} else {
			*p++ = *s;
		}
	}
	*p = '\0';
	return out;
}

static void status_part(struct out *o, const struct dsn_report *r)
{
	/* Per-message fields (RFC 3464 2.2). */
	putf(o, "Reporting-MTA: dns; %s\r\n", r->reporting_mta);
	if (r->envid != NULL) {
		char *envid = xtext_decode(r->envid); /* RFC 3461 6.3 */
		putf(o, "Original-Envelope-Id: %s\r\n", envid);
		free(envid);
	}
	PUTS(o, "Arrival-Date: ");
	put_date(o, r->arrival_ms);
	PUTS(o, "\r\n");
	/* Per-recipient fields (RFC 3464 2.3). */
	for (size_t i = 0; i < r->nrcpts; i++) {
		const struct dsn_recipient *d = &r->rcpts[i];
		PUTS(o, "\r\n");
		if (d->orcpt != NULL) {
			/* "rfc822;xtext" to "rfc822; address" (RFC 3461 6.3: the
			 * xtext encoding removed). */
			const char *semi = strchr(d->orcpt, ';');
			if (semi != NULL) {
				char *address = xtext_decode(semi + 1);
				putf(o, "Original-Recipient: %.*s; %s\r\n", (int)(semi - d->orcpt),
				     d->orcpt, address);
				free(address);
			}
		}
		/* RFC 6533: utf-8 addresses in message/global-delivery-status. */
		putf(o, "Final-Recipient: %s; %s\r\n", has_8bit(d->recipient) ? "utf-8" : "rfc822",
		     d->recipient);
		putf(o, "Action: %s\r\n", action_name(r->kind));
		putf(o, "Status: %s\r\n", d->status ? d->status : default_status(r->kind));
		if (d->remote_mta != NULL)
			putf(o, "Remote-MTA: dns; %s\r\n", d->remote_mta);
		if (d->diagnostic != NULL) {
			char *diag = one_line(d->diagnostic);
			char *value = xasprintf("smtp; %s", diag);
			put_field(o, "Diagnostic-Code", value);
			free(value);
			free(diag);
		}
		if (d->last_attempt_ms > 0) {
			PUTS(o, "Last-Attempt-Date: ");
			put_date(o, d->last_attempt_ms);
			PUTS(o, "\r\n");
		}
		if (r->kind == DSN_DELAYED && d->will_retry_until_ms > 0) {
			PUTS(o, "Will-Retry-Until: ");
			put_date(o, d->will_retry_until_ms);
			PUTS(o, "\r\n");
		}
	}
}

/* The header block without its closing blank line. */
static size_t header_fields_len(const char *h, size_t n)
{
	while (n >= 4 && memcmp(h + n - 4, "\r\n\r\n", 4) == 0)
		n -= 2;
	return n;
}

char *dsn_compose(const struct dsn_report *r, size_t *len)
{
	struct out o = {0};
	bool utf8 = false;
	for (size_t i = 0; i < r->nrcpts; i++)
		utf8 = utf8 || has_8bit(r->rcpts[i].recipient) || has_8bit(r->rcpts[i].diagnostic);
	utf8 = utf8 || has_8bit(r->original_subject);
	/* The boundary: the notification's own id, which nothing else has. */
	const char *at = strchr(r->message_id, '@');
	int idlen = at ? (int)(at - r->message_id) : (int)strlen(r->message_id);
	char *boundary = xasprintf("=_dsn_%.*s", idlen, r->message_id);

	putf(&o, "From: %s <%s>\r\n", r->from_name, r->from_address);
	putf(&o, "To: <%s>\r\n", r->to);
	if (r->template_subject != NULL) {
		PUTS(&o, "Subject: ");
		put_subject(&o, r);
		PUTS(&o, "\r\n");
	} else {
		putf(&o, "Subject: Delivery Status Notification (%s)\r\n",
		     r->kind == DSN_FAILED    ? "Failure"
		     : r->kind == DSN_DELAYED ? "Delay"
					      : "Success");
	}
	PUTS(&o, "Date: ");
	put_date(&o, r->now_ms);
	PUTS(&o, "\r\n");
	putf(&o, "Message-ID: <%s>\r\n", r->message_id);
	if (r->original_message_id != NULL) {
		putf(&o, "In-Reply-To: %s\r\n", r->original_message_id);
		putf(&o, "References: %s\r\n", r->original_message_id);
	}
	PUTS(&o, "Auto-Submitted: auto-replied\r\n");
	PUTS(&o, "MIME-Version: 1.0\r\n");
	putf(&o,
	     "Content-Type: multipart/report; report-type=%s;\r\n"
	     "\tboundary=\"%s\"\r\n\r\n",
	     utf8 ? "global-delivery-status" : "delivery-status", boundary);
	PUTS(&o, "This is a MIME-encapsulated message.\r\n\r\n");

	putf(&o,
	     "--%s\r\nContent-Description: Notification\r\n"
	     "Content-Type: text/plain; charset=utf-8\r\n"
	     "Content-Transfer-Encoding: %s\r\n\r\n",
	     boundary, utf8 || has_8bit(r->template_text) ? "8bit" : "7bit");
	human_part(&o, r);

	putf(&o,
	     "--%s\r\nContent-Description: Delivery report\r\n"
	     "Content-Type: message/%s\r\n\r\n",
	     boundary, utf8 ? "global-delivery-status" : "delivery-status");
	status_part(&o, r);
	PUTS(&o, "\r\n");

	size_t hlen = header_fields_len(r->header_block, r->header_len);
	bool orig_8bit = utf8_has_8bit(r->header_block, hlen) ||
			 (r->body != NULL && utf8_has_8bit(r->body, r->body_len));
	if (r->body != NULL) {
		putf(&o,
		     "--%s\r\nContent-Description: Undelivered Message\r\n"
		     "Content-Type: message/rfc822\r\n"
		     "Content-Transfer-Encoding: %s\r\n\r\n",
		     boundary, orig_8bit ? "8bit" : "7bit");
		put(&o, r->header_block, hlen);
		PUTS(&o, "\r\n");
		put(&o, r->body, r->body_len);
		if (r->body_len < 2 || memcmp(r->body + r->body_len - 2, "\r\n", 2) != 0)
			PUTS(&o, "\r\n");
	} else {
		putf(&o,
		     "--%s\r\nContent-Description: Undelivered Message Headers\r\n"
		     "Content-Type: text/rfc822-headers\r\n"
		     "Content-Transfer-Encoding: %s\r\n\r\n",
		     boundary, orig_8bit ? "8bit" : "7bit");
		put(&o, r->header_block, hlen);
	}
	putf(&o, "\r\n--%s--\r\n", boundary);
	free(boundary);
	*len = o.len;
	return o.buf;
}
