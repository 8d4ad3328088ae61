/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: header block end, field parsing and rewriting, RFC 5322 dates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/xmalloc.h"
#include "msg/header.h"

/* A string literal and its length (NUL bytes inside included). */
#define IN(s) s, sizeof(s) - 1

static const struct block_case {
	const char *what;
	const char *in;
	size_t len;
	bool final;
	bool found;
	size_t end;
} blocks[] = {
    {"CRLF, blank line", IN("From: a\r\nTo: b\r\n\r\nbody\r\n"), false, true, 16},
    {"LF, blank line", IN("From: a\nTo: b\n\nbody\n"), false, true, 14},
    {"mixed CRLF and LF", IN("From: a\r\nTo: b\n\r\nbody"), false, true, 15},
    {"blank line, no body yet", IN("From: a\r\n\r\n"), false, true, 9},
    {"blank line is the end of input", IN("From: a\r\n\r\n"), true, true, 9},
    {"body starts with a non-header line", IN("From: a\r\nHello there\r\n"), false, true, 9},
    {"body line with a space before a colon", IN("From: a\r\nHello world: x\r\n"), false, true, 9},
    {"body line starting with a colon", IN("From: a\r\n: x\r\n"), false, true, 9},
    {"body line with a non-ASCII name",
     IN("From: a\r\n\xc3\x9c"
	"ber: x\r\n"),
     false, true, 9},
    {"body line with DEL in the name", IN("From: a\r\nX\x7fY: a\r\n"), false, true, 9},
    {"body line with a control byte", IN("From: a\r\n\x01X: a\r\n"), false, true, 9},
    {"only headers, final", IN("From: a\r\nTo: b\r\n"), true, true, 16},
    {"only headers, LF, final", IN("From: a\nTo: b\n"), true, true, 14},
    {"only headers, not final: next line unknown", IN("From: a\r\nTo: b\r\n"), false, false, 0},
    {"last line without line ending, final", IN("From: a\r\nTo: b"), true, true, 14},
    {"last line without line ending, not final", IN("From: a\r\nTo: b"), false, false, 0},
    {"name without colon at the end, final", IN("From: a\r\nSubj"), true, true, 9},
    {"name without colon at the end, not final", IN("From: a\r\nSubj"), false, false, 0},
    {"name and space at the end, final", IN("From: a\r\nSubject "), true, true, 9},
    {"empty input, final", IN(""), true, true, 0},
    {"empty input, not final", IN(""), false, false, 0},
    {"empty header block, CRLF", IN("\r\nbody\r\n"), false, true, 0},
    {"empty header block, LF", IN("\nbody\n"), false, true, 0},
    {"message starting with a continuation line", IN(" From: a\r\n\r\n"), false, true, 0},
    {"message starting with a body line", IN("Hello\r\n"), false, true, 0},
    {"message starting with a CR", IN("\rFrom: a\r\n"), false, true, 0},
    {"folded fields", IN("Subject: a\r\n b\r\n\tc\r\nTo: d\r\n  e\r\n\r\nx"), false, true, 32},
    {"folded fields, LF", IN("Subject: a\n b\n\tc\n\nx"), false, true, 17},
    {"continuation of only white space", IN("Subject: a\r\n \r\n\r\n"), false, true, 15},
    {"obsolete name and space", IN("Subject : x\r\nTo\t: y\r\n\r\n"), false, true, 21},
    {"obsolete name and several spaces", IN("Subject \t : x\r\n\r\n"), false, true, 15},
    {"empty value", IN("X-Empty:\r\n\r\n"), false, true, 10},
    {"bare CR inside a line", IN("From: a\rTo: b\r\n\r\n"), false, true, 15},
    {"line starting with a bare CR", IN("From: a\n\rX: y\n"), false, true, 8},
    {"cut after CR, empty line", IN("From: a\r\n\r"), false, true, 9},
    {"cut inside CRLF", IN("From: a\r"), false, false, 0},
    {"cut inside CRLF, final", IN("From: a\r"), true, true, 8},
    {"NUL and 8-bit bytes in a value", IN("From: a\0b\xff\r\n\r\n"), false, true, 12},
    {"colon right after one-byte name", IN("X:y\r\n\r\n"), false, true, 5},
    {"long folded value",
     IN("Received: from mx.example.test (mx.example.test [192.0.2.1])\r\n"
	"\tby relay.example.test with ESMTPS id 1578a823de00009fbb\r\n"
	"\tfor <user@example.test>; Tue, 24 Nov 2026 07:00:00 +0000\r\n\r\n"),
     false, true, 179},
};

/* Feeds `in` in steps of `step` bytes with one *scan; final with the last. */
static bool feed(const char *in, size_t len, bool final, size_t step, size_t *end)
{
	size_t scan = 0, n = 0;
	for (;;) {
		n = n + step < len ? n + step : len;
		if (header_block_end(in, n, final && n == len, &scan, end))
			return true;
		if (n == len)
			return false;
	}
}

static void test_block_end(void **state)
{
	(void)state;
	static const size_t steps[] = {1, 2, 3, 5, 7, 64, SIZE_MAX / 2};
	for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) {
		const struct block_case *c = &blocks[i];
		for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
			size_t end = SIZE_MAX;
			bool found = feed(c->in, c->len, c->final, steps[s], &end);
			if (found != c->found || (found && end != c->end))
				fail_msg("%s, step %zu: found=%d end=%zu, want found=%d end=%zu",
					 c->what, steps[s], found, end, c->found, c->end);
		}
		/* A prefix seen afresh either needs more or already knows. */
		for (size_t n = 0; n < c->len; n++) {
			size_t scan = 0, end = SIZE_MAX;
			if (header_block_end(c->in, n, false, &scan, &end) &&
			    (!c->found || end != c->end))
				fail_msg("%s, prefix %zu: end=%zu", c->what, n, end);
		}
		/* Asking again after the answer gives the same answer. */
		size_t scan = 0, end = SIZE_MAX, again = SIZE_MAX;
		if (header_block_end(c->in, c->len, c->final, &scan, &end)) {
			assert_true(header_block_end(c->in, c->len, c->final, &scan, &again));
			assert_int_equal(again, end);
		}
	}
}

/* One long line (value or name) fed a byte at a time: linear, so quick. */
static void test_block_end_linear(void **state)
{
	(void)state;
	size_t len = 1024 * 1024;
	char *buf = xmalloc(len + 3);
	for (int kind = 0; kind < 3; kind++) {
		memset(buf, 'a', len);
		if (kind == 0)
			memcpy(buf, "X:", 2); /* a long value */
		else if (kind == 2)
			memset(buf + 1, ' ', len - 1); /* a name and long white space */
		memcpy(buf + len, "\r\n\r", 3);
		clock_t t0 = clock();
		size_t scan = 0, end = SIZE_MAX, n;
		for (n = 1; n <= len + 3; n++) {
			if (header_block_end(buf, n, false, &scan, &end))
				break;
		}
		double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
		if (secs > 5)
			fail_msg("kind %d: %.1f s for %zu bytes", kind, secs, len);
		assert_true(n <= len + 3);
		assert_int_equal(end, kind == 0 ? len + 2 : 0);
	}
	free(buf);
}

static void check_serialize(const struct header_list *list, const char *want, size_t want_len)
{
	size_t n = header_list_raw_size(list);
	char *buf = xmalloc(n + 1);
	header_list_serialize(list, buf);
	if (n != want_len || memcmp(buf, want, n) != 0)
		fail_msg("serialized \"%.*s\", want \"%.*s\"", (int)n, buf, (int)want_len, want);
	free(buf);
}

/* Every block of the table parses into fields that serialize back byte for byte. */
static void test_round_trip(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) {
		const struct block_case *c = &blocks[i];
		if (!c->found)
			continue;
		struct header_list list = {0};
		header_list_parse(&list, c->in, c->end);
		for (size_t k = 0; k < list.count; k++) {
			assert_non_null(list.items[k].key);
			assert_non_null(list.items[k].value);
			assert_true(list.items[k].raw_len > 0);
		}
		check_serialize(&list, c->in, c->end);
		header_list_clear(&list);
		assert_int_equal(list.count, 0);
		assert_null(list.items);
	}
}

static const char sample[] = "Received: from a.test\r\n"
			     "\tby b.test; Tue, 24 Nov 2026 07:00:00 +0000\r\n"
			     "Subject : Hello\r\n"
			     "  wide   world \r\n"
			     "received: from c.test\r\n"
			     "X-Empty:\r\n"
			     "X-Spaces:   \t \r\n"
			     "To: <a@b.test>\n"
			     "X-Bare-CR: a\rb\r\n"
			     "MIME-Version: 1.0";

static const struct {
	const char *raw, *key, *value;
} sample_fields[] = {
    {"Received: from a.test\r\n\tby b.test; Tue, 24 Nov 2026 07:00:00 +0000\r\n", "received",
     "from a.test\tby b.test; Tue, 24 Nov 2026 07:00:00 +0000"},
    {"Subject : Hello\r\n  wide   world \r\n", "subject", "Hello  wide   world"},
    {"received: from c.test\r\n", "received", "from c.test"},
    {"X-Empty:\r\n", "x-empty", ""},
    {"X-Spaces:   \t \r\n", "x-spaces", ""},
    {"To: <a@b.test>\n", "to", "<a@b.test>"},
    {"X-Bare-CR: a\rb\r\n", "x-bare-cr", "a\rb"},
    {"MIME-Version: 1.0", "mime-version", "1.0"},
};

static void test_parse(void **state)
{
	(void)state;
	struct header_list list = {0};
	header_list_parse(&list, sample, sizeof(sample) - 1);
	assert_int_equal(list.count, sizeof(sample_fields) / sizeof(sample_fields[0]));
	for (size_t i = 0; i < list.count; i++) {
		const struct header *h = &list.items[i];
		assert_int_equal(h->raw_len, strlen(sample_fields[i].raw));
		assert_memory_equal(h->raw, sample_fields[i].raw, h->raw_len);
		assert_string_equal(h->key, sample_fields[i].key);
		assert_string_equal(h->value, sample_fields[i].value);
	}
	assert_int_equal(header_list_raw_size(&list), sizeof(sample) - 1);
	check_serialize(&list, sample, sizeof(sample) - 1);

	assert_int_equal(header_list_find(&list, "received"), 0);
	assert_int_equal(header_list_find(&list, "subject"), 1);
	assert_int_equal(header_list_find(&list, "mime-version"), 7);
	assert_int_equal(header_list_find(&list, "Subject"), -1);
	assert_int_equal(header_list_find(&list, "date"), -1);

	/* Parsing appends to a list in use. */
	header_list_parse(&list, IN("Date: x\r\n"));
	assert_int_equal(list.count, 9);
	assert_int_equal(header_list_find(&list, "date"), 8);
	header_list_clear(&list);

	/* An empty block gives no fields. */
	header_list_parse(&list, "", 0);
	assert_int_equal(list.count, 0);
	assert_int_equal(header_list_raw_size(&list), 0);
	header_list_clear(&list);
}

/* Bytes that header_block_end would never delimit still parse without harm. */
static void test_parse_odd_blocks(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		size_t len;
		size_t count;
	} odd[] = {
	    {IN(" leading continuation\r\nA: b\r\n"), 2},
	    {IN("no colon\r\n"), 1},
	    {IN("\r\n\r\n"), 2},
	    {IN("A: b\r\n\r\n"), 2},
	    {IN(":\n"), 1},
	    {IN("\0:\0\n"), 1},
	};
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		struct header_list list = {0};
		header_list_parse(&list, odd[i].in, odd[i].len);
		assert_int_equal(list.count, odd[i].count);
		check_serialize(&list, odd[i].in, odd[i].len);
		header_list_clear(&list);
	}
}

static void test_remove(void **state)
{
	(void)state;
	struct header_list list = {0};
	header_list_parse(&list, sample, sizeof(sample) - 1);
	assert_int_equal(header_list_remove(&list, "received"), 2);
	assert_int_equal(header_list_remove(&list, "received"), 0);
	assert_int_equal(header_list_remove(&list, "nosuch"), 0);
	assert_int_equal(list.count, 6);
	static const char want[] = "Subject : Hello\r\n"
				   "  wide   world \r\n"
				   "X-Empty:\r\n"
				   "X-Spaces:   \t \r\n"
				   "To: <a@b.test>\n"
				   "X-Bare-CR: a\rb\r\n"
				   "MIME-Version: 1.0";
	check_serialize(&list, want, sizeof(want) - 1);
	/* Top and bottom. */
	assert_int_equal(header_list_remove(&list, "subject"), 1);
	assert_int_equal(header_list_remove(&list, "mime-version"), 1);
	check_serialize(&list,
			IN("X-Empty:\r\nX-Spaces:   \t \r\nTo: <a@b.test>\nX-Bare-CR: a\rb\r\n"));
	assert_int_equal(header_list_find(&list, "to"), 2);
	header_list_clear(&list);

	/* Removing everything leaves a usable empty list. */
	header_list_parse(&list, IN("A: 1\r\na: 2\r\nA : 3\r\n"));
	assert_int_equal(header_list_remove(&list, "a"), 3);
	assert_int_equal(list.count, 0);
	check_serialize(&list, "", 0);
	header_list_insert(&list, 0, "B", "4");
	check_serialize(&list, IN("B: 4\r\n"));
	header_list_clear(&list);
}

static void test_insert(void **state)
{
	(void)state;
	struct header_list list = {0};
	header_list_parse(&list, IN("From: a\r\nTo: b\n"));
	header_list_insert(&list, 0, "Received", "from x\r\n\tby y");
	header_list_insert(&list, 2, "Message-ID", "<1@x.test>");
	header_list_insert(&list, list.count, "X-Last", "");
	header_list_insert(&list, 1, "Return-Path", "  <r@x.test>  ");
	check_serialize(&list, IN("Received: from x\r\n\tby y\r\n"
				  "Return-Path:   <r@x.test>  \r\n"
				  "From: a\r\n"
				  "Message-ID: <1@x.test>\r\n"
				  "To: b\n"
				  "X-Last: \r\n"));
	static const struct {
		const char *key, *value;
	} want[] = {
	    {"received", "from x\tby y"},
	    {"return-path", "<r@x.test>"},
	    {"from", "a"},
	    {"message-id", "<1@x.test>"},
	    {"to", "b"},
	    {"x-last", ""},
	};
	assert_int_equal(list.count, 6);
	for (size_t i = 0; i < list.count; i++) {
		assert_string_equal(list.items[i].key, want[i].key);
		assert_string_equal(list.items[i].value, want[i].value);
		assert_int_equal(list.items[i].raw_len, strlen(list.items[i].raw));
	}
	assert_int_equal(header_list_find(&list, "message-id"), 3);
	/* Many more than the initial capacity. */
	for (int i = 0; i < 100; i++)
		header_list_insert(&list, list.count / 2, "X-N", "n");
	assert_int_equal(list.count, 106);
	assert_int_equal(header_list_remove(&list, "x-n"), 100);
	assert_int_equal(header_list_find(&list, "x-last"), 5);
	header_list_clear(&list);
}

/* 2024-01-01 00:00:00 UTC, a Monday. */
#define JAN2024 1704067200LL
#define H 3600LL

static const struct {
	const char *text;
	long long t; /* -1: refused (no valid case below is at -1) */
} dates[] = {
    /* The usual forms. */
    {"Thu, 01 Jan 1970 00:00:00 +0000", 0},
    {"Fri, 21 Nov 1997 09:55:06 -0600", 880127706},
    {"Tue, 1 Jul 2003 10:52:37 +0200", 1057049557},
    {"Tue, 24 Nov 2026 07:00:00 +0000", 1795503600},
    {"Mon, 1 Jan 2024 10:00:00 +0000", JAN2024 + 10 * H},
    {"Mon, 1 Jan 2024 10:00:00 -0000", JAN2024 + 10 * H},
    {"Mon, 1 Jan 2024 10:00:00 +0530", JAN2024 + 10 * H - 5 * H - 1800},
    {"Mon, 1 Jan 2024 10:00:00 -0930", JAN2024 + 10 * H + 9 * H + 1800},
    {"Mon, 1 Jan 2024 01:00:00 +0200", JAN2024 - H},
    {"Mon, 1 Jan 2024 23:00:00 -2359", JAN2024 + 23 * H + 23 * H + 59 * 60},
    /* No day name, no seconds. */
    {"1 Jan 2024 10:00:00 +0000", JAN2024 + 10 * H},
    {"Mon, 1 Jan 2024 10:00 +0000", JAN2024 + 10 * H},
    {"1 Jan 2024 10:00 +0000", JAN2024 + 10 * H},
    /* Case of names. */
    {"mon, 1 jan 2024 10:00:00 gmt", JAN2024 + 10 * H},
    {"MON, 1 JAN 2024 10:00:00 +0000", JAN2024 + 10 * H},
    /* Obsolete zones. */
    {"Mon, 1 Jan 2024 10:00:00 UT", JAN2024 + 10 * H},
    {"Mon, 1 Jan 2024 10:00:00 GMT", JAN2024 + 10 * H},
    {"Mon, 1 Jan 2024 10:00:00 EST", JAN2024 + 15 * H},
    {"Mon, 1 Jan 2024 10:00:00 EDT", JAN2024 + 14 * H},
    {"Mon, 1 Jan 2024 10:00:00 CST", JAN2024 + 16 * H},
    {"Mon, 1 Jan 2024 10:00:00 CDT", JAN2024 + 15 * H},
    {"Mon, 1 Jan 2024 10:00:00 MST", JAN2024 + 17 * H},
    {"Mon, 1 Jan 2024 10:00:00 MDT", JAN2024 + 16 * H},
    {"Mon, 1 Jan 2024 10:00:00 PST", JAN2024 + 18 * H},
    {"Mon, 1 Jan 2024 10:00:00 PDT", JAN2024 + 17 * H},
    {"Mon, 1 Jan 2024 10:00:00 pdt", JAN2024 + 17 * H},
    {"Mon, 1 Jan 2024 10:00:00 Z", JAN2024 + 10 * H},
    {"Mon, 1 Jan 2024 10:00:00 A", JAN2024 + 10 * H},    /* military: -0000 */
    {"Mon, 1 Jan 2024 10:00:00 y", JAN2024 + 10 * H},    /* military: -0000 */
    {"Mon, 1 Jan 2024 10:00:00 CEST", JAN2024 + 10 * H}, /* unknown: -0000 */
    {"Mon, 1 Jan 2024 10:00:00 UTC", JAN2024 + 10 * H},
    {"Mon, 1 Jan 2024 10:00:00EST", JAN2024 + 15 * H},
    /* Comments and white space. */
    {"Tue, 1 Jul 2003 10:52:37 +0200 (CEST)", 1057049557},
    {"Fri, 21 Nov 1997 09(comment):   55  :  06 -0600", 880127706},
    {"Thu,\r\n      13\r\n        Feb\r\n          1969\r\n      23:32\r\n"
     "               -0330 (Newfoundland Time)",
     -27723480},
    {"  (a (nested) comment) Mon (x) , (y) 1 (z) Jan (w) 2024 (v) 10 (u) : (t) 00 (s) : (r) 00 "
     "(q) +0000 (p)",
     JAN2024 + 10 * H},
    {"Mon, 1 Jan 2024 10:00:00 +0000 (a \\) quoted paren)", JAN2024 + 10 * H},
    {"Mon, 1 Jan 2024 10:00:00 +0000 (a \\( quoted paren)", JAN2024 + 10 * H},
    {"\tMon,  1  Jan  2024  10:00:00  +0000  ", JAN2024 + 10 * H},
    {"Mon,1 Jan 2024 10:00:00 +0000", JAN2024 + 10 * H},
    {"1Jan2024 10:00 +0000", JAN2024 + 10 * H},
    /* Leap years and days. */
    {"Thu, 29 Feb 2024 12:00:00 +0000", 1709208000},
    {"Tue, 29 Feb 2000 00:00:00 +0000", 951782400},
    {"31 Dec 2024 00:00 +0000", JAN2024 + 365 * 24 * H},
    {"Sun, 30 Jun 2024 23:59:60 +0000", 1719791999}, /* leap second as :59 */
    {"Sun, 30 Jun 2024 23:59:59 +0000", 1719791999},
    /* Two- and three-digit years; four digits with a leading zero. */
    {"1 Jan 00 00:00 +0000", 946684800},
    {"1 Jan 24 00:00 +0000", JAN2024},
    {"1 Jan 49 00:00 +0000", 2493072000},
    {"1 Jan 50 00:00 +0000", -631152000},
    {"1 Jan 70 00:00 +0000", 0},
    {"1 Jan 124 00:00 +0000", JAN2024},
    {"1 Jan 070 00:00 +0000", 0},
    {"1 Jan 02024 00:00 +0000", JAN2024},
    /* Range edges. */
    {"1 Jan 1900 00:00 +0000", -2208988800},
    {"31 Dec 9999 23:59:59 +0000", 253402300799},
    {"31 Dec 9999 23:59:59 +0100", 253402300799 - H},
    {"1 Jan 1900 00:00 -0100", -2208988800 + H},

    /* Refused. */
    {"", -1},
    {"   ", -1},
    {"(only a comment)", -1},
    {"Mon, 1 Jan 2024", -1},
    {"Mon, 1 Jan 2024 10:00:00", -1}, /* no zone */
    {"Mon, 1 Jan 2024 10 +0000", -1}, /* no minutes */
    {"Mon, 1 Jan 2024 10: +0000", -1},
    {"Mon 1 Jan 2024 10:00:00 +0000", -1}, /* no comma */
    {"Mon,, 1 Jan 2024 10:00:00 +0000", -1},
    {", 1 Jan 2024 10:00:00 +0000", -1},
    {"Monday, 1 Jan 2024 10:00:00 +0000", -1},
    {"Xyz, 1 Jan 2024 10:00:00 +0000", -1},
    {"Mon, Jan 1 2024 10:00:00 +0000", -1}, /* month first */
    {"Mon Jan  1 10:00:00 2024", -1},       /* asctime */
    {"2024-01-01T10:00:00Z", -1},           /* ISO 8601 */
    {"Mon, 1 January 2024 10:00:00 +0000", -1},
    {"Mon, 1 Foo 2024 10:00:00 +0000", -1},
    {"Mon, 001 Jan 2024 10:00:00 +0000", -1},
    {"Mon, 0 Jan 2024 10:00:00 +0000", -1},
    {"Mon, 32 Jan 2024 10:00:00 +0000", -1},
    {"Fri, 29 Feb 2023 10:00:00 +0000", -1},
    {"Thu, 29 Feb 1900 10:00:00 +0000", -1},
    {"Fri, 30 Feb 2024 10:00:00 +0000", -1},
    {"Sat, 31 Feb 2024 10:00:00 +0000", -1},
    {"Tue, 31 Apr 2024 10:00:00 +0000", -1},
    {"Mon, 31 Jun 2024 10:00:00 +0000", -1},
    {"Mon, 1 Jan 2024 24:00:00 +0000", -1},
    {"Mon, 1 Jan 2024 23:60:00 +0000", -1},
    {"Mon, 1 Jan 2024 23:59:61 +0000", -1},
    {"Mon, 1 Jan 2024 99:00:00 +0000", -1},
    {"Mon, 1 Jan 2024 1:00:00 +0000", -1},
    {"Mon, 1 Jan 2024 10:0:00 +0000", -1},
    {"Mon, 1 Jan 2024 10:00:0 +0000", -1},
    {"Mon, 1 Jan 2024 100:00:00 +0000", -1},
    {"Mon, 1 Jan 2024 10:00:00:00 +0000", -1},
    {"Mon, 1 Jan 2024 10.00.00 +0000", -1},
    {"Mon, 1 Jan 4 10:00:00 +0000", -1},    /* one-digit year */
    {"Mon, 1 Jan 1899 10:00:00 +0000", -1}, /* before 1900 */
    {"Mon, 1 Jan 10000 10:00:00 +0000", -1},
    {"Mon, 1 Jan 9999999999 10:00:00 +0000", -1},
    {"1 Jan 1900 00:00 +0100", -1},     /* 1899 in UTC */
    {"31 Dec 9999 23:59:59 -0100", -1}, /* 10000 in UTC */
    {"Mon, 1 Jan 202410:00:00 +0000", -1},
    {"Mon, 1 Jan 2024 10:00:00 +000", -1},
    {"Mon, 1 Jan 2024 10:00:00 +00000", -1},
    {"Mon, 1 Jan 2024 10:00:00 +0060", -1},
    {"Mon, 1 Jan 2024 10:00:00 +2400", -1},
    {"Mon, 1 Jan 2024 10:00:00 + 0000", -1},
    {"Mon, 1 Jan 2024 10:00:00 0000", -1},
    {"Mon, 1 Jan 2024 10:00:00 +0000 extra", -1},
    {"Mon, 1 Jan 2024 10:00:00 +0000 GMT", -1},
    {"Mon, 1 Jan 2024 10:00:00 GMT+1", -1},
    {"Mon, 1 Jan 2024 10:00:00 Europe/Paris", -1},
    {"Mon, 1 Jan 2024 10:00:00 +0000 (unclosed", -1},
    {"Mon, 1 Jan 2024 10:00:00 +0000 (a (b)", -1},
    {"Mon, 1 Jan 2024 10:00:00 +0000 (ends in \\", -1},
    {"Mon, 1 Jan 2024 10:00:00 +0000 )", -1},
    {"Mon, -1 Jan 2024 10:00:00 +0000", -1},
    {"Mon, 1 Jan -2024 10:00:00 +0000", -1},
    {"Mon, 1 Jan 2024 10:00:00 +0000\x01", -1},
    {"Mon, 1 Jan 2024 10:00:00 +\xd9\xa0\xd9\xa0\xd9\xa0\xd9\xa0", -1}, /* Arabic digits */
};

static void test_date_parse(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++) {
		time_t t = 42;
		int rc = header_date_parse(dates[i].text, &t);
		if (dates[i].t == -1) {
			if (rc != -1)
				fail_msg("\"%s\": accepted as %lld", dates[i].text, (long long)t);
			if (t != 42)
				fail_msg("\"%s\": refused but wrote the time", dates[i].text);
		} else {
			if (rc != 0)
				fail_msg("\"%s\": refused", dates[i].text);
			if ((long long)t != dates[i].t)
				fail_msg("\"%s\": %lld want %lld", dates[i].text, (long long)t,
					 dates[i].t);
		}
	}
}

static void test_date_format(void **state)
{
	(void)state;
	static const struct {
		long long t;
		const char *text;
	} cases[] = {
	    {0, "Thu, 01 Jan 1970 00:00:00 +0000"},
	    {1795503600, "Tue, 24 Nov 2026 07:00:00 +0000"},
	    {1709208000 + 11 * H + 59 * 60 + 59, "Thu, 29 Feb 2024 23:59:59 +0000"},
	    {-1, "Wed, 31 Dec 1969 23:59:59 +0000"},
	    {-2208988800, "Mon, 01 Jan 1900 00:00:00 +0000"},
	    {253402300799, "Fri, 31 Dec 9999 23:59:59 +0000"},
	};
	char buf[64];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		header_date_format((time_t)cases[i].t, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].text);
	}
	/* The documented minimum room is enough. */
	char small[32];
	header_date_format(1795503600, small, sizeof(small));
	assert_string_equal(small, "Tue, 24 Nov 2026 07:00:00 +0000");
	/* Too little room cuts the text, still terminated. */
	header_date_format(1795503600, small, 4);
	assert_string_equal(small, "Tue");
}

/* Formatting then parsing gives the same time, across the accepted range. */
static void test_date_round_trip(void **state)
{
	(void)state;
	char buf[64];
	time_t back;
	const long long lo = -2208988800LL, hi = 253402300799LL;
	for (long long t = lo; t <= hi; t += 7919LL * 3607) {
		header_date_format((time_t)t, buf, sizeof(buf));
		if (header_date_parse(buf, &back) != 0 || (long long)back != t)
			fail_msg("%lld -> \"%s\" -> %lld", t, buf, (long long)back);
	}
	/* Every day of a leap year, and the edges. */
	for (long long t = JAN2024 - 1; t < JAN2024 + 367 * 24 * H; t += 24 * H + 1) {
		header_date_format((time_t)t, buf, sizeof(buf));
		assert_int_equal(header_date_parse(buf, &back), 0);
		assert_true((long long)back == t);
	}
	static const long long edges[] = {lo, hi, 0, -1, 1};
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		header_date_format((time_t)edges[i], buf, sizeof(buf));
		assert_int_equal(header_date_parse(buf, &back), 0);
		assert_true((long long)back == edges[i]);
	}
	/* Every accepted date of the table, once formatted, parses to the same time. */
	for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++) {
		time_t t;
		if (header_date_parse(dates[i].text, &t) != 0)
			continue;
		header_date_format(t, buf, sizeof(buf));
		assert_int_equal(header_date_parse(buf, &back), 0);
		assert_true(back == t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_block_end),        cmocka_unit_test(test_block_end_linear),
	    cmocka_unit_test(test_round_trip),       cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_parse_odd_blocks), cmocka_unit_test(test_remove),
	    cmocka_unit_test(test_insert),           cmocka_unit_test(test_date_parse),
	    cmocka_unit_test(test_date_format),      cmocka_unit_test(test_date_round_trip),
	};
	return cmocka_run_group_tests_name("header", tests, NULL, NULL);
}
