/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: assembling SMTP replies on the client side. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "mta/reply.h"

static char keywords[512];

static void collect(void *arg, const char *text, size_t len)
{
	(void)arg;
	strncat(keywords, text, len);
	strcat(keywords, "|");
}

/* Feeds lines; returns the status of the last one. */
static enum reply_status feed(struct reply *r, const char *const *lines)
{
	enum reply_status st = REPLY_BAD;
	for (; *lines; lines++)
		st = reply_feed(r, *lines, strlen(*lines), collect, NULL);
	return st;
}

static void test_single_and_multiline(void **state)
{
	(void)state;
	struct reply r = {0};
	const char *one[] = {"250 2.0.0 Ok: queued", NULL};
	assert_int_equal(feed(&r, one), REPLY_DONE);
	assert_int_equal(r.code, 250);
	assert_string_equal(r.text, "250 2.0.0 Ok: queued");

	keywords[0] = '\0';
	const char *ehlo[] = {"250-mx.test Hello", "250-PIPELINING", "250-SIZE 1000",
			      "250 8BITMIME", NULL};
	assert_int_equal(reply_feed(&r, ehlo[0], strlen(ehlo[0]), collect, NULL), REPLY_MORE);
	assert_int_equal(feed(&r, ehlo + 1), REPLY_DONE);
	assert_int_equal(r.code, 250);
	assert_string_equal(r.text, "250-mx.test Hello PIPELINING SIZE 1000 8BITMIME");
	assert_string_equal(keywords, "PIPELINING|SIZE 1000|8BITMIME|");

	const char *bare[] = {"220", NULL};
	assert_int_equal(feed(&r, bare), REPLY_DONE);
	assert_int_equal(r.code, 220);
	const char *multi[] = {"550-5.1.1 The email account that you tried to reach does",
			       "550-5.1.1 not exist.", "550 5.1.1 https://support.example", NULL};
	assert_int_equal(feed(&r, multi), REPLY_DONE);
	assert_int_equal(r.code, 550);
	assert_non_null(strstr(r.text, "does 5.1.1 not exist. 5.1.1 https://"));
}

static void test_bad_lines(void **state)
{
	(void)state;
	static const char *const bad[] = {"", "25", "abc", "650 no", "250x", "2a0 x", "199 x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct reply r = {0};
		if (reply_feed(&r, bad[i], strlen(bad[i]), NULL, NULL) != REPLY_BAD)
			fail_msg("accepted \"%s\"", bad[i]);
	}
	/* A code that changes inside a multi-line reply. */
	struct reply r = {0};
	assert_int_equal(reply_feed(&r, "250-a", 5, NULL, NULL), REPLY_MORE);
	assert_int_equal(reply_feed(&r, "550 b", 5, NULL, NULL), REPLY_BAD);
	/* After a bad line, the next one starts afresh. */
	assert_int_equal(reply_feed(&r, "354 go", 6, NULL, NULL), REPLY_DONE);
	assert_int_equal(r.code, 354);
}

static void test_long_replies_are_cut(void **state)
{
	(void)state;
	struct reply r = {0};
	char line[600];
	memset(line, 'x', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	memcpy(line, "451-", 4);
	for (int i = 0; i < 10; i++)
		assert_int_equal(reply_feed(&r, line, strlen(line), NULL, NULL), REPLY_MORE);
	assert_int_equal(reply_feed(&r, "451 end", 7, NULL, NULL), REPLY_DONE);
	assert_int_equal(strlen(r.text), REPLY_TEXT_MAX - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_single_and_multiline),
	    cmocka_unit_test(test_bad_lines),
	    cmocka_unit_test(test_long_replies_are_cut),
	};
	return cmocka_run_group_tests_name("reply", tests, NULL, NULL);
}
