/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The header block of a message (RFC 5322 2.2, 3.6): finding its end while
 * the message streams in, splitting it into fields kept as raw bytes, and
 * rewriting it (adding and removing fields) without touching the bytes of
 * the fields left alone.  Also RFC 5322 dates.
 */
#ifndef ZMTA_HEADER_H
#define ZMTA_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* Largest header block accepted; larger gets 552 5.3.4. */
#define HEADER_BLOCK_MAX (1024 * 1024)

/* One header field. */
struct header {
	char *raw; /* the whole field as received: name, colon, value, every
			   folded line, and the final CRLF (LF alone is kept as is) */
	size_t raw_len;
	char *key;   /* the field name, lower-cased, no surrounding space */
	char *value; /* the unfolded value: line breaks of folding removed,
			   leading and trailing white space trimmed */
};

struct header_list {
	struct header *items;
	size_t count, cap;
};

/*
 * Finds the end of the header block at the start of a message, resumably:
 * call it each time `buf` has grown (same buffer, longer len), with the same
 * *scan (start it at 0; its value is opaque state, not an offset to use); it
 * does not rescan what it has seen.  The block ends before the first empty
 * line (CRLF or LF alone; the empty line belongs to the body), or before the
 * first line that is neither a field ("name:" with a name of printable ASCII
 * other than ':' and space) nor a continuation (starting with space or tab),
 * or, when `final` (no more input will come), at the end of the input.
 * Returns true with *end set to the length of the block (0 is legitimate: a
 * message starting with an empty line), or false when more input is needed
 * to know.
 */
bool header_block_end(const char *buf, size_t len, bool final, size_t *scan, size_t *end);

/*
 * Splits a header block (as delimited by header_block_end) into fields,
 * appending them to `list` (which the caller has zeroed or used before).
 * Cannot fail on any input: a block that does not start with a field name
 * is impossible by construction of header_block_end.
 */
void header_list_parse(struct header_list *list, const char *block, size_t len);

/* Index of the first field named `key` (lower-case), or -1. */
int header_list_find(const struct header_list *list, const char *key);
/* Removes every field named `key`; returns how many were removed. */
size_t header_list_remove(struct header_list *list, const char *key);
/*
 * Inserts a field at `index` (0: at the top; list->count: at the bottom)
 * from its name and value; the raw form is "Name: value\r\n" with the value
 * copied as given (the caller folds long values itself with "\r\n\t").
 */
void header_list_insert(struct header_list *list, size_t index, const char *name,
			const char *value);
/* Total bytes of the raw fields. */
size_t header_list_raw_size(const struct header_list *list);
/* Writes the raw fields back to back into buf (room: raw_size bytes). */
void header_list_serialize(const struct header_list *list, char *buf);
/* Frees the fields and the array; the list is zeroed and reusable. */
void header_list_clear(struct header_list *list);

/*
 * Parses an RFC 5322 date-time (3.3), including the obsolete forms of 4.3
 * (two- and three-digit years, alphabetic zones UT/GMT/EST/EDT/CST/CDT/MST/
 * MDT/PST/PDT and military letters, optional day-of-week, optional seconds,
 * comments in parentheses, extra white space).  Returns 0 and the UTC time,
 * or -1 for anything else (including impossible dates like 31 Feb).
 */
int header_date_parse(const char *value, time_t *out);
/* Formats `t` as "Tue, 24 Nov 2026 07:00:00 +0000" (UTC) into buf (>= 32 bytes). */
void header_date_format(time_t t, char *buf, size_t len);

#endif
