/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * SMTP replies as a client reads them (RFC 5321 4.2): "CODE-text" lines
 * continue a reply, "CODE text" (or a bare "CODE") ends it.  The text is
 * kept for logs and bounce rules: the first line whole, later lines without
 * their code, joined by spaces, cut at REPLY_TEXT_MAX.  Pure; unit-tested.
 */
#ifndef ZMTA_REPLY_H
#define ZMTA_REPLY_H

#include <stddef.h>

#define REPLY_TEXT_MAX 2000
/* What a server may send (RFC 5321 4.5.3.1.5 asks for 512 octets a line):
 * a longer line, more lines or more bytes in one reply end the session. */
#define REPLY_LINE_MAX 4096
#define REPLY_LINES_MAX 100
#define REPLY_BYTES_MAX (64 * 1024)

struct reply {
	int code;                  /* of the finished reply */
	char text[REPLY_TEXT_MAX]; /* NUL-terminated */
	size_t len;
	int first_code;      /* code of the first line, to check the rest */
	size_t lines, bytes; /* of the reply being read */
};

enum reply_status {
	REPLY_MORE = 0,      /* a continuation line: the reply goes on */
	REPLY_DONE = 1,      /* the last line: r->code and r->text are the reply */
	REPLY_BAD = -1,      /* not a reply line, or a code that changed mid-reply */
	REPLY_TOO_LONG = -2, /* past REPLY_LINE_MAX, REPLY_LINES_MAX or REPLY_BYTES_MAX */
};

/*
 * Feeds one line (CRLF removed).  After REPLY_DONE or an error the next
 * line starts a new reply.  `keyword` (may be NULL) receives the text after
 * the code of each continuation line but the first, e.g. EHLO keywords.
 */
enum reply_status reply_feed(struct reply *r, const char *line, size_t len,
			     void (*keyword)(void *arg, const char *text, size_t len), void *arg);

#endif
