/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Delivery status notifications as mail (RFC 3464 in a multipart/report,
 * RFC 6522): a human-readable part, message/delivery-status with one block
 * per recipient, and the original's header (text/rfc822-headers) or the
 * whole original (message/rfc822, RET=FULL).  Pure: the caller gathers
 * what happened and where the notification goes; this only writes bytes.
 */
#ifndef ZMTA_DSN_H
#define ZMTA_DSN_H

#include <stddef.h>
#include <stdint.h>

enum dsn_kind {
	DSN_FAILED,  /* Action: failed; "Delivery Status Notification (Failure)" */
	DSN_DELAYED, /* Action: delayed; "(Delay)" */
	DSN_RELAYED, /* Action: relayed (NOTIFY=SUCCESS, next hop without DSN); "(Success)" */
};

struct dsn_recipient {
	const char *recipient;       /* the envelope recipient (Final-Recipient) */
	const char *orcpt;           /* ORCPT as given ("rfc822;xtext"), or NULL */
	const char *status;          /* enhanced code, "5.1.1"; NULL: from the kind */
	const char *remote_mta;      /* host name that answered, or NULL */
	const char *diagnostic;      /* the server's reply (one or more lines), or NULL */
	int64_t last_attempt_ms;     /* 0: none */
	int64_t will_retry_until_ms; /* delayed only; 0: not said */
};

struct dsn_report {
	enum dsn_kind kind;
	const char *reporting_mta;       /* our host name */
	const char *from_name;           /* mailerDaemon.name */
	const char *from_address;        /* mailerDaemon.address */
	const char *to;                  /* the original envelope sender */
	const char *envid;               /* ENVID (xtext), or NULL */
	const char *message_id;          /* Message-ID of the notification, without <> */
	const char *original_message_id; /* with <>, or NULL */
	const char *original_subject;    /* unfolded, or NULL */
	/* bounces.templates: the human part's text (CRLF lines, placeholders
	 * of dsn_template_placeholders) and subject, or NULL: the built-in */
	const char *template_text;
	const char *template_subject;
	int64_t arrival_ms; /* when the original arrived */
	int64_t now_ms;
	const struct dsn_recipient *rcpts;
	size_t nrcpts;
	/* The original's header block (CRLF lines, ending with the blank
	 * line or not), and with RET=FULL its body too (body != NULL). */
	const char *header_block;
	size_t header_len;
	const char *body;
	size_t body_len;
};

/* The whole notification (header and body, CRLF lines); *len its size. */
char *dsn_compose(const struct dsn_report *r, size_t *len);

#endif
