/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: UTF-8 validation and repair. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"

static const struct {
	const char *in;
	size_t len;
	bool valid;
	const char *sanitized;
} cases[] = {
    {"plain", 5, true, "plain"},
    {"", 0, true, ""},
    {"caf\xc3\xa9", 5, true, "caf\xc3\xa9"},
    {"\xe2\x82\xac", 3, true, "\xe2\x82\xac"},          /* € */
    {"\xf0\x9f\x98\x80", 4, true, "\xf0\x9f\x98\x80"},  /* 😀 */
    {"\xc0\xaf", 2, false, "\xef\xbf\xbd\xef\xbf\xbd"}, /* overlong / */
    {"\xe0\x80\xaf", 3, false, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"\xed\xa0\x80", 3, false, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
    {"\xf4\x90\x80\x80", 4, false,
     "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
    {"a\xe9z", 3, false, "a\xef\xbf\xbdz"},               /* latin-1 é */
    {"\xc3", 1, false, "\xef\xbf\xbd"},                   /* truncated */
    {"a\0b", 3, false,
     "a\xef\xbf\xbd"
     "b"}, /* NUL */
};

/* Every position of a high byte, at every alignment, is found. */
static void test_has_8bit(void **state)
{
	(void)state;
	char buf[40];
	for (size_t len = 0; len < sizeof(buf); len++) {
		memset(buf, 'a', sizeof(buf));
		assert_false(utf8_has_8bit(buf, len));
		for (size_t at = 0; at < len; at++) {
			buf[at] = (char)0x80;
			assert_true(utf8_has_8bit(buf, len));
			assert_false(utf8_has_8bit(buf, at)); /* just before it */
			buf[at] = 'a';
		}
	}
}

static void test_utf8_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (utf8_valid(cases[i].in, cases[i].len) != cases[i].valid)
			fail_msg("case %zu: valid should be %d", i, cases[i].valid);
		char *s = utf8_sanitize(cases[i].in, cases[i].len);
		if (strcmp(s, cases[i].sanitized) != 0)
			fail_msg("case %zu: sanitized wrong", i);
		assert_true(utf8_valid(s, strlen(s)));
		free(s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_utf8_table),
	    cmocka_unit_test(test_has_8bit),
	};
	return cmocka_run_group_tests_name("utf8", tests, NULL, NULL);
}
