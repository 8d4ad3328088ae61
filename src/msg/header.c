/* SPDX-License-Identifier: EUPL-1.2 */
/* Message header block: end detection, fields as raw bytes, dates; see header.h. */
#include "msg/header.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

/* Everything below is ASCII-only on purpose: no <ctype.h>, no locale. */

static bool is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* RFC 5322 ftext: printable US-ASCII other than ':' (and so no space). */
static bool is_name_char(unsigned char c)
{
	return c > ' ' && c < 0x7f && c != ':';
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char to_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/*
 * Block end.  The state kept in *scan between calls is the position of the
 * next byte to look at, times two, plus one when that byte is inside the rest
 * of a line already known to belong to the block (after a field's colon, or
 * in a continuation line): there only the line feed matters.  Otherwise the
 * position is either at the start of a line (position 0 or just after a line
 * feed) or inside a field name or in the white space between a name and its
 * colon; the byte before it tells which.  A buffer never exceeds PTRDIFF_MAX
 * bytes, so the doubling cannot overflow.
 */
#define SCAN_IN_LINE 1u

/* Start of the line containing `pos`, known to hold only name bytes and
 * white space before it: looked at once, when the block ends there. */
static size_t line_start(const char *buf, size_t pos)
{
	while (pos > 0 && buf[pos - 1] != '\n')
		pos--;
	return pos;
}

bool header_block_end(const char *buf, size_t len, bool final, size_t *scan, size_t *end)
{
	size_t pos = *scan >> 1;
	bool in_line = (*scan & SCAN_IN_LINE) != 0;

	while (pos < len) {
		if (in_line) {
			const char *lf = memchr(buf + pos, '\n', len - pos);
			if (lf == NULL) {
				pos = len;
				break;
			}
			pos = (size_t)(lf - buf) + 1;
			in_line = false;
			continue;
		}
		unsigned char c = (unsigned char)buf[pos];
		if (pos == 0 || buf[pos - 1] == '\n') {
			/* First byte of a line: a continuation (never as the first
			 * line), a field name, or the end of the block (an empty
			 * line, whether CRLF or LF, or anything else). */
			if (pos > 0 && is_wsp(c)) {
				in_line = true;
				pos++;
				continue;
			}
			if (!is_name_char(c)) {
				*end = pos;
				*scan = pos << 1;
				return true;
			}
			pos++;
			continue;
		}
		/* Inside a name, or in the white space after it ("Name :" is
		 * the obsolete syntax of RFC 5322 4.5). */
		if (c == ':') {
			in_line = true;
			pos++;
			continue;
		}
		if (is_wsp(c) || (is_name_char(c) && !is_wsp((unsigned char)buf[pos - 1]))) {
			pos++;
			continue;
		}
		/* Not a field: the block ends before this line. */
		*end = line_start(buf, pos);
		*scan = *end << 1;
		return true;
	}

	*scan = pos << 1 | (in_line ? SCAN_IN_LINE : 0);
	if (!final)
		return false;
	if (in_line || pos == 0 || buf[pos - 1] == '\n') {
		/* At the end of a line or inside one that belongs to the
		 * block: the input ends with the block. */
		*end = pos;
	} else {
		/* A name without its colon is not a field. */
		*end = line_start(buf, pos);
		*scan = *end << 1;
	}
	return true;
}

/* Fills key and value from raw. */
static void field_fill(struct header *h)
{
	const char *raw = h->raw;
	size_t n = h->raw_len, colon = 0;
	while (colon < n && raw[colon] != ':' && raw[colon] != '\n')
		colon++;
	if (colon >= n || raw[colon] != ':') {
		/* Not a field; impossible in a block from header_block_end. */
		h->key = xstrdup("");
		h->value = xstrdup("");
		return;
	}

	size_t a = 0, b = colon;
	while (a < b && is_wsp((unsigned char)raw[a]))
		a++;
	while (b > a && is_wsp((unsigned char)raw[b - 1]))
		b--;
	h->key = xmalloc(b - a + 1);
	for (size_t i = a; i < b; i++)
		h->key[i - a] = to_lower(raw[i]);
	h->key[b - a] = '\0';

	/* Unfold: drop each LF and the CR right before it; a CR elsewhere is
	 * an ordinary byte.  Then trim the white space at both ends. */
	char *v = xmalloc(n - colon);
	size_t vlen = 0;
	for (size_t i = colon + 1; i < n; i++) {
		if (raw[i] == '\n' || (raw[i] == '\r' && i + 1 < n && raw[i + 1] == '\n'))
			continue;
		v[vlen++] = raw[i];
	}
	size_t start = 0;
	while (start < vlen && is_wsp((unsigned char)v[start]))
		start++;
	while (vlen > start && is_wsp((unsigned char)v[vlen - 1]))
		vlen--;
	memmove(v, v + start, vlen - start);
	v[vlen - start] = '\0';
	h->value = v;
}

/* Makes room for one more field at `index`. */
static struct header *list_open(struct header_list *list, size_t index)
{
	list->items = xreallocarray_grow(list->items, &list->cap, list->count + 1,
					 sizeof(*list->items));
	memmove(&list->items[index + 1], &list->items[index],
		(list->count - index) * sizeof(*list->items));
	list->count++;
	return &list->items[index];
}

static void list_add_raw(struct header_list *list, const char *raw, size_t len)
{
	struct header *h = list_open(list, list->count);
	h->raw = xmalloc(len + 1);
	memcpy(h->raw, raw, len);
	h->raw[len] = '\0';
	h->raw_len = len;
	field_fill(h);
}

void header_list_parse(struct header_list *list, const char *block, size_t len)
{
	size_t start = 0, pos = 0;
	while (pos < len) {
		if (pos > start && !is_wsp((unsigned char)block[pos])) {
			list_add_raw(list, block + start, pos - start);
			start = pos;
		}
		const char *lf = memchr(block + pos, '\n', len - pos);
		pos = lf ? (size_t)(lf - block) + 1 : len;
	}
	if (pos > start)
		list_add_raw(list, block + start, pos - start);
}

int header_list_find(const struct header_list *list, const char *key)
{
	for (size_t i = 0; i < list->count; i++) {
		if (strcmp(list->items[i].key, key) == 0)
			return i <= INT_MAX ? (int)i : -1;
	}
	return -1;
}

static void header_free(struct header *h)
{
	free(h->raw);
	free(h->key);
	free(h->value);
}

size_t header_list_remove(struct header_list *list, const char *key)
{
	size_t kept = 0;
	for (size_t i = 0; i < list->count; i++) {
		if (strcmp(list->items[i].key, key) == 0)
			header_free(&list->items[i]);
		else
			list->items[kept++] = list->items[i];
	}
	size_t removed = list->count - kept;
	list->count = kept;
	return removed;
}

void header_list_insert(struct header_list *list, size_t index, const char *name, const char *value)
{
	if (index > list->count)
		fatal("header_list_insert: index %zu past the %zu fields", index, list->count);
	char *raw = xasprintf("%s: %s\r\n", name, value);
	struct header *h = list_open(list, index);
	h->raw = raw;
	h->raw_len = strlen(raw);
	field_fill(h);
}

size_t header_list_raw_size(const struct header_list *list)
{
	size_t n = 0;
	for (size_t i = 0; i < list->count; i++)
		n += list->items[i].raw_len;
	return n;
}

void header_list_serialize(const struct header_list *list, char *buf)
{
	for (size_t i = 0; i < list->count; i++) {
		memcpy(buf, list->items[i].raw, list->items[i].raw_len);
		buf += list->items[i].raw_len;
	}
}

void header_list_clear(struct header_list *list)
{
	for (size_t i = 0; i < list->count; i++)
		header_free(&list->items[i]);
	free(list->items);
	*list = (struct header_list){0};
}

/*
 * Dates.  The parser reads tokens (digit runs, letter runs, punctuation)
 * separated by optional CFWS: white space (CR and LF included, as in a
 * folded value) and comments, anywhere the obsolete grammar of RFC 5322 4.3
 * allows them, which is between any two tokens.
 */

static const char *const day_names[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const month_names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Skips white space and (nested) comments; false on an unclosed comment. */
static bool skip_cfws(const char **p)
{
	const char *s = *p;
	for (;;) {
		while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
			s++;
		if (*s != '(')
			break;
		size_t depth = 0;
		do {
			if (*s == '\0')
				return false;
			if (*s == '\\') {
				if (s[1] == '\0')
					return false;
				s += 2;
				continue;
			}
			if (*s == '(')
				depth++;
			else if (*s == ')')
				depth--;
			s++;
		} while (depth > 0);
	}
	*p = s;
	return true;
}

/* Reads a run of digits (at most `max`, else fails) as a number. */
static bool read_number(const char **p, size_t min, size_t max, int *out, size_t *ndigits)
{
	const char *s = *p;
	int v = 0;
	size_t n = 0;
	while (is_digit((unsigned char)s[n])) {
		if (n == max)
			return false;
		v = v * 10 + (s[n] - '0');
		n++;
	}
	if (n < min)
		return false;
	*p = s + n;
	*out = v;
	if (ndigits)
		*ndigits = n;
	return true;
}

/* Length of the run of letters at s. */
static size_t alpha_run(const char *s)
{
	size_t n = 0;
	while (is_alpha((unsigned char)s[n]))
		n++;
	return n;
}

/* Index of the 3-letter name at s (a run of exactly 3 letters) in names, or -1. */
static int name_index(const char *s, size_t run, const char *const *names, int count)
{
	if (run != 3)
		return -1;
	for (int i = 0; i < count; i++) {
		if (to_lower(s[0]) == to_lower(names[i][0]) &&
		    to_lower(s[1]) == to_lower(names[i][1]) &&
		    to_lower(s[2]) == to_lower(names[i][2]))
			return i;
	}
	return -1;
}

/* Reads the zone as seconds east of UTC. */
static bool read_zone(const char **p, long *offset)
{
	static const struct {
		const char *name;
		int hours;
	} zones[] = {
	    {"UT", 0},   {"GMT", 0},  {"EST", -5}, {"EDT", -4}, {"CST", -6},
	    {"CDT", -5}, {"MST", -7}, {"MDT", -6}, {"PST", -8}, {"PDT", -7},
	};
	const char *s = *p;
	if (*s == '+' || *s == '-') {
		int sign = *s == '-' ? -1 : 1, v;
		size_t n;
		s++;
		if (!read_number(&s, 4, 4, &v, &n))
			return false;
		int hh = v / 100, mm = v % 100;
		if (hh > 23 || mm > 59)
			return false;
		*offset = sign * (hh * 3600L + mm * 60L);
		*p = s;
		return true;
	}
	size_t run = alpha_run(s);
	if (run == 0)
		return false;
	/* Military letters and unknown names mean -0000, that is UTC
	 * (RFC 5322 4.3). */
	*offset = 0;
	for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
		size_t k = strlen(zones[i].name);
		if (k != run)
			continue;
		size_t j = 0;
		while (j < k && to_lower(s[j]) == to_lower(zones[i].name[j]))
			j++;
		if (j == k) {
			*offset = zones[i].hours * 3600L;
			break;
		}
	}
	*p = s + run;
	return true;
}

static bool is_leap(int year)
{
	return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

/* Bounds of a parsed date, in UTC, so that the formatted form (always a
 * four-digit year) parses back to the same time. */
#define DATE_YEAR_MIN 1900
#define DATE_YEAR_MAX 9999

int header_date_parse(const char *value, time_t *out)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	const char *s = value;
	int day, year, hour, minute, second = 0;
	size_t n;
	long offset;

	if (!skip_cfws(&s))
		return -1;
	size_t run = alpha_run(s);
	if (run > 0) {
		/* The day of the week is checked for its spelling only: not
		 * against the date, as most parsers do. */
		if (name_index(s, run, day_names, 7) < 0)
			return -1;
		s += run;
		if (!skip_cfws(&s) || *s++ != ',' || !skip_cfws(&s))
			return -1;
	}
	if (!read_number(&s, 1, 2, &day, NULL) || !skip_cfws(&s))
		return -1;
	run = alpha_run(s);
	int month = name_index(s, run, month_names, 12);
	if (month < 0)
		return -1;
	s += run;
	if (!skip_cfws(&s) || !read_number(&s, 2, 9, &year, &n) || !skip_cfws(&s))
		return -1;
	if (n == 2)
		year += year < 50 ? 2000 : 1900;
	else if (n == 3)
		year += 1900;
	if (year < DATE_YEAR_MIN || year > DATE_YEAR_MAX)
		return -1;
	if (!read_number(&s, 2, 2, &hour, NULL) || !skip_cfws(&s) || *s++ != ':' ||
	    !skip_cfws(&s) || !read_number(&s, 2, 2, &minute, NULL) || !skip_cfws(&s))
		return -1;
	if (*s == ':') {
		s++;
		if (!skip_cfws(&s) || !read_number(&s, 2, 2, &second, NULL) || !skip_cfws(&s))
			return -1;
	}
	if (!read_zone(&s, &offset) || !skip_cfws(&s) || *s != '\0')
		return -1;

	int last = mdays[month] + (month == 1 && is_leap(year));
	if (day < 1 || day > last || hour > 23 || minute > 59 || second > 60)
		return -1;
	if (second == 60)
		second = 59; /* a leap second: time_t has none */

	struct tm tm = {
	    .tm_year = year - 1900,
	    .tm_mon = month,
	    .tm_mday = day,
	    .tm_hour = hour,
	    .tm_min = minute,
	    .tm_sec = second,
	};
	errno = 0;
	time_t t = timegm(&tm);
	if (t == (time_t)-1 && errno != 0)
		return -1;
	t -= offset;

	/* The zone may move a date at the edges of the range out of it. */
	struct tm check;
	if (gmtime_r(&t, &check) == NULL || check.tm_year + 1900 < DATE_YEAR_MIN ||
	    check.tm_year + 1900 > DATE_YEAR_MAX)
		return -1;
	*out = t;
	return 0;
}

void header_date_format(time_t t, char *buf, size_t len)
{
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL)
		fatal("header_date_format: time %lld out of range", (long long)t);
	snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d +0000", day_names[tm.tm_wday],
		 tm.tm_mday, month_names[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
		 tm.tm_sec);
}
