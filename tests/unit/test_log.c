/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: log line format, escaping, levels, files and reopening. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/xmalloc.h"

static size_t fmt(char *buf, size_t len, enum log_level level, const char *qid, const char *event,
		  const char *f, ...) __attribute__((format(printf, 6, 7)));

static size_t fmt(char *buf, size_t len, enum log_level level, const char *qid, const char *event,
		  const char *f, ...)
{
	struct timespec ts = {.tv_sec = 1795000000, .tv_nsec = 123456789};
	va_list ap;
	va_start(ap, f);
	size_t n = log_format(buf, len, &ts, level, qid, event, f, ap);
	va_end(ap);
	return n;
}

static void test_format(void **state)
{
	(void)state;
	char buf[LOG_LINE_MAX + 64];
	size_t n = fmt(buf, sizeof(buf), LOG_LEVEL_INFO, "1578a823de00009fbb", "accepted",
		       "from=<%s> size=%d", "a@b.test", 42);
	assert_string_equal(buf, "2026-11-18T11:06:40.123Z info id=1578a823de00009fbb "
				 "event=accepted from=<a@b.test> size=42\n");
	assert_int_equal(n, strlen(buf));
	fmt(buf, sizeof(buf), LOG_LEVEL_WARN, NULL, "ready", "%s", "");
	assert_string_equal(buf, "2026-11-18T11:06:40.123Z warn event=ready\n");
}

static void test_escaping_keeps_one_line(void **state)
{
	(void)state;
	char buf[LOG_LINE_MAX + 64];
	fmt(buf, sizeof(buf), LOG_LEVEL_ERROR, NULL, "bad", "cmd=\"%s\"", "RCPT\r\nQUIT\t\x01\\");
	assert_string_equal(buf, "2026-11-18T11:06:40.123Z error event=bad "
				 "cmd=\"RCPT\\r\\nQUIT\\t\\x01\\\"\n");
}

static void test_long_lines_are_cut(void **state)
{
	(void)state;
	char buf[LOG_LINE_MAX + 64];
	char *big = xmalloc(3 * LOG_LINE_MAX);
	memset(big, 'x', 3 * LOG_LINE_MAX - 1);
	big[3 * LOG_LINE_MAX - 1] = '\0';
	size_t n = fmt(buf, sizeof(buf), LOG_LEVEL_INFO, NULL, "big", "v=%s", big);
	assert_true(n < sizeof(buf));
	assert_int_equal(buf[n - 1], '\n');
	assert_memory_equal(buf + n - 4, "...\n", 4);
	assert_null(memchr(buf, '\n', n - 1));
	free(big);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return xstrdup("");
	char *text = xcalloc(1, 65536);
	size_t n = fread(text, 1, 65535, f);
	text[n] = '\0';
	fclose(f);
	return text;
}

static void test_file_levels_and_reopen(void **state)
{
	(void)state;
	char dir[] = "/tmp/zmta-log-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *path = xasprintf("%s/zmta.log", dir);
	char *rotated = xasprintf("%s/zmta.log.1", dir);

	assert_int_equal(log_set_file(path), 0);
	log_set_level(LOG_LEVEL_INFO);
	log_info("one", "n=%d", 1);
	log_debug("hidden", "n=%d", 2);
	assert_int_equal(rename(path, rotated), 0);
	log_info("two", "n=%d", 3); /* still goes to the renamed file */
	assert_int_equal(log_reopen(), 0);
	log_warn("three", "n=%d", 4);

	char *old = slurp(rotated), *cur = slurp(path);
	assert_non_null(strstr(old, "event=one n=1\n"));
	assert_non_null(strstr(old, "event=two n=3\n"));
	assert_null(strstr(old, "hidden"));
	assert_null(strstr(old, "three"));
	assert_non_null(strstr(cur, "warn event=three n=4\n"));
	assert_null(strstr(cur, "event=one"));
	free(old);
	free(cur);

	assert_int_equal(log_set_file(NULL), 0);
	assert_int_equal(log_set_file("/nonexistent-dir/x.log"), -1);
	unlink(path);
	unlink(rotated);
	rmdir(dir);
	free(path);
	free(rotated);
}

/* Every buffer size, escapes at the cut included: nothing is written past
 * the end, and the line always ends in "\n\0" (a cut lost one byte past
 * the end before). */
static void test_small_buffers_are_never_overrun(void **state)
{
	(void)state;
	for (size_t len = 48; len < 120; len++) {
		char *buf = malloc(len + 8);
		memset(buf, 'Z', len + 8);
		size_t n = fmt(buf, len, LOG_LEVEL_INFO, NULL, "e", "x=%s",
			       "\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12\x13");
		assert_true(n < len);
		assert_int_equal(buf[n - 1], '\n');
		assert_int_equal(buf[n], '\0');
		for (size_t i = len; i < len + 8; i++)
			assert_int_equal(buf[i], 'Z');
		free(buf);
	}
}

static void test_level_names(void **state)
{
	(void)state;
	enum log_level l;
	assert_int_equal(log_level_parse("debug", &l), 0);
	assert_int_equal(l, LOG_LEVEL_DEBUG);
	assert_string_equal(log_level_name(LOG_LEVEL_WARN), "warn");
	assert_int_equal(log_level_parse("loud", &l), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_format),
	    cmocka_unit_test(test_escaping_keeps_one_line),
	    cmocka_unit_test(test_long_lines_are_cut),
	    cmocka_unit_test(test_file_levels_and_reopen),
	    cmocka_unit_test(test_small_buffers_are_never_overrun),
	    cmocka_unit_test(test_level_names),
	};
	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
