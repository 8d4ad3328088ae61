/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: the 8-bit downgrade and long-line folding (msg/transform.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"
#include "msg/transform.h"

struct buf {
	char *p;
	size_t len, cap;
};

static void collect(void *arg, const char *data, size_t len)
{
	struct buf *b = arg;
	b->p = xreallocarray_grow(b->p, &b->cap, b->len + len + 1, 1);
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
}

/* Runs a transform over header + body, feeding the body `step` bytes at a
 * time (0: at once); returns header and body out. */
static void run(unsigned flags, const char *header, const char *body, size_t step, char **hout,
		struct buf *out)
{
	size_t hlen;
	memset(out, 0, sizeof(*out));
	struct transform *t = transform_new(flags, header, strlen(header), hout, &hlen, collect,
					    out);
	size_t n = strlen(body);
	if (step == 0)
		step = n ? n : 1;
	for (size_t i = 0; i < n; i += step)
		transform_feed(t, body + i, i + step <= n ? step : n - i);
	transform_end(t);
	transform_free(t);
	if (out->p == NULL)
		out->p = xstrdup("");
}

static size_t longest_line(const char *s)
{
	size_t best = 0, cur = 0;
	for (; *s; s++) {
		if (*s == '\n') {
			best = cur > best ? cur : best;
			cur = 0;
		} else if (*s != '\r') {
			cur++;
		}
	}
	return cur > best ? cur : best;
}

static void test_fold_long_lines(void **state)
{
	(void)state;
	size_t n = 5000;
	char *line = xmalloc(n + 1);
	for (size_t i = 0; i < n; i++)
		line[i] = (char)('a' + i % 26);
	line[n] = '\0';
	char *body = xasprintf("\r\nshort\r\n%s\r\n%.998s\r\n%.999s\r\nend\r\n", line, line, line);
	char *h;
	struct buf out;
	run(TRANSFORM_FOLD, "Subject: x\r\n", body, 0, &h, &out);
	assert_true(longest_line(out.p) <= TRANSFORM_LINE_MAX);
	/* Unfolding (removing the inserted CRLF SP) gives the input back. */
	struct buf back = {0};
	for (size_t i = 0; i < out.len; i++) {
		if (i + 2 < out.len && memcmp(out.p + i, "\r\n ", 3) == 0) {
			i += 2;
			continue;
		}
		collect(&back, out.p + i, 1);
	}
	assert_string_equal(back.p, body);
	/* Exactly 998 is left alone; 999 is broken once, before its last octet. */
	char *at998 = xasprintf("\r\n%.998s\r\n%.998s\r\n %c\r\nend", line, line, line[998]);
	assert_non_null(strstr(out.p, at998));
	free(at998);
	/* Split anywhere, the same output. */
	for (size_t step = 1; step < 1200; step += 97) {
		char *h2;
		struct buf o2;
		run(TRANSFORM_FOLD, "Subject: x\r\n", body, step, &h2, &o2);
		assert_int_equal(o2.len, out.len);
		assert_memory_equal(o2.p, out.p, out.len);
		free(h2);
		free(o2.p);
	}
	free(back.p);
	free(h);
	free(out.p);
	free(body);
	free(line);
}

static void test_fold_header(void **state)
{
	(void)state;
	char *value = xmalloc(3001);
	memset(value, 'h', 3000);
	value[3000] = '\0';
	char *header = xasprintf("Subject: %s\r\nTo: a@b\r\n", value);
	char *h;
	struct buf out;
	run(TRANSFORM_FOLD, header, "\r\nbody\r\n", 0, &h, &out);
	assert_true(longest_line(h) <= TRANSFORM_LINE_MAX);
	assert_non_null(strstr(h, "\r\n hhh"));
	assert_string_equal(out.p, "\r\nbody\r\n");
	free(h);
	free(out.p);
	free(header);
	free(value);
}

static void test_downgrade_single_part(void **state)
{
	(void)state;
	const char *header = "From: a@b\r\nSubject: x\r\n";
	char *h;
	struct buf out;
	run(TRANSFORM_DOWNGRADE, header, "\r\ncaf\xc3\xa9 = ok  \r\n.dot\r\n", 0, &h, &out);
	/* No MIME before: it becomes MIME with a quoted-printable body. */
	assert_string_equal(h, "From: a@b\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
			       "Content-Transfer-Encoding: quoted-printable\r\n");
	assert_string_equal(out.p, "\r\ncaf=C3=A9 =3D ok =20\r\n.dot\r\n");
	free(h);
	free(out.p);
}

static const char multipart_header[] =
    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n boundary=\"=_b1\"\r\n"
    "Content-Transfer-Encoding: 8bit\r\n";
static const char multipart_body[] =
    "\r\npre\r\n--=_b1\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa9t\xc3\xa9\r\n"
    "--=_b1\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n"
    "--inner\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    "<p>\xc3\xa0</p>\r\n--inner--\r\n"
    "--=_b1\r\nContent-Type: application/octet-stream\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n"
    "--=_b1\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    "Subject: inner\r\n\r\nna\xc3\xafve\r\n"
    "--=_b1--\r\nepi\r\n";

static void test_downgrade_multipart(void **state)
{
	(void)state;
	char *h;
	struct buf out;
	run(TRANSFORM_DOWNGRADE, multipart_header, multipart_body, 0, &h, &out);
	/* The multipart itself is relabelled 7bit; boundaries untouched. */
	assert_non_null(strstr(h, "Content-Transfer-Encoding: 7bit\r\n"));
	assert_non_null(strstr(h, "boundary=\"=_b1\""));
	const char *want_start =
	    "\r\npre\r\n--=_b1\r\nContent-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9t=C3=A9\r\n"
	    "--=_b1\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n"
	    "--inner\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable"
	    "\r\n\r\n<p>=C3=A0</p>\r\n--inner--\r\n"
	    "--=_b1\r\nContent-Type: application/octet-stream\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n"
	    "--=_b1\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
	    "Subject: inner\r\nMIME-Version: 1.0\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n\r\nna=C3=AFve\r\n"
	    "--=_b1--\r\nepi\r\n";
	assert_string_equal(out.p, want_start);
	assert_non_null(strstr(out.p, "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
				      "=C3=A9t=C3=A9\r\n--=_b1\r\n"));
	assert_non_null(strstr(out.p, "<p>=C3=A0</p>\r\n--inner--\r\n"));
	assert_non_null(strstr(out.p, "base64\r\n\r\nAAEC\r\n--=_b1\r\n"));
	assert_non_null(strstr(out.p, "message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n"));
	assert_non_null(strstr(out.p, "na=C3=AFve\r\n--=_b1--\r\nepi\r\n"));
	for (size_t i = 0; i < out.len; i++)
		assert_true((unsigned char)out.p[i] < 0x80);
	/* Any split of the input gives the same bytes. */
	for (size_t step = 1; step < 40; step++) {
		char *h2;
		struct buf o2;
		run(TRANSFORM_DOWNGRADE, multipart_header, multipart_body, step, &h2, &o2);
		assert_string_equal(o2.p, out.p);
		free(h2);
		free(o2.p);
	}
	free(h);
	free(out.p);
}

static void test_downgrade_leaves_7bit_parts(void **state)
{
	(void)state;
	const char *header =
	    "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n";
	const char *body = "\r\nalready =3D encoded\r\n";
	char *h;
	struct buf out;
	run(TRANSFORM_DOWNGRADE, header, body, 0, &h, &out);
	assert_string_equal(h, header);
	assert_string_equal(out.p, body);
	free(h);
	free(out.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fold_long_lines),
	    cmocka_unit_test(test_fold_header),
	    cmocka_unit_test(test_downgrade_single_part),
	    cmocka_unit_test(test_downgrade_multipart),
	    cmocka_unit_test(test_downgrade_leaves_7bit_parts),
	};
	return cmocka_run_group_tests_name("transform", tests, NULL, NULL);
}
