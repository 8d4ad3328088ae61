/* SPDX-License-Identifier: EUPL-1.2 */
/* SMTP client reply assembly; see reply.h. */
#include "mta/reply.h"

#include <stdbool.h>
#include <string.h>

static void append(struct reply *r, const char *s, size_t n)
{
	size_t room = REPLY_TEXT_MAX - 1 - r->len;
	if (n > room)
		n = room;
	memcpy(r->text + r->len, s, n);
	r->len += n;
	r->text[r->len] = '\0';
}

enum reply_status reply_feed(struct reply *r, const char *line, size_t len,
			     void (*keyword)(void *arg, const char *text, size_t len), void *arg)
{
	bool first = r->len == 0;
	if (first)
		r->lines = r->bytes = 0;
	r->lines++;
	r->bytes += len + 2;
	if (len > REPLY_LINE_MAX || r->lines > REPLY_LINES_MAX || r->bytes > REPLY_BYTES_MAX) {
		r->len = 0;
		return REPLY_TOO_LONG;
	}
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
	    line[2] < '0' || line[2] > '9' || (len > 3 && line[3] != ' ' && line[3] != '-')) {
		r->len = 0;
		return REPLY_BAD;
	}
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (!first && code != r->first_code) {
		r->len = 0;
		return REPLY_BAD;
	}
	bool last = len == 3 || line[3] == ' ';
	if (first) {
		r->first_code = code;
		r->text[0] = '\0';
		append(r, line, len);
	} else {
		const char *text = len > 4 ? line + 4 : "";
		size_t tlen = len > 4 ? len - 4 : 0;
		if (keyword != NULL)
			keyword(arg, text, tlen);
		append(r, " ", 1);
		append(r, text, tlen);
	}
	if (!last)
		return REPLY_MORE;
	r->code = code;
	r->len = 0; /* the next line starts a new reply; text stays readable */
	return REPLY_DONE;
}
