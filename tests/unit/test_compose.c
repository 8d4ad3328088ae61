/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: composing messages from JSON (msg/compose.c), read back with GMime. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <gmime/gmime.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"
#include "msg/compose.h"

/* JSON written with single quotes (no apostrophes needed in these tests). */
static json_t *J(const char *text)
{
	char *s = xstrdup(text);
	json_error_t e;

	for (char *p = s; *p; p++)
		if (*p == '\'')
			*p = '"';
	json_t *v = json_loads(s, JSON_ALLOW_NUL, &e);
	if (!v)
		fail_msg("bad test JSON (%s): %s", e.text, s);
	free(s);
	return v;
}

/* Every line ends in CRLF and holds at most 998 octets. */
static void assert_lines(const char *m, size_t len)
{
	size_t start = 0;

	assert_true(len >= 2);
	assert_memory_equal(m + len - 2, "\r\n", 2);
	for (size_t i = 0; i < len; i++) {
		if (m[i] == '\n') {
			if (i == 0 || m[i - 1] != '\r')
				fail_msg("bare LF at offset %zu", i);
			if (i - 1 - start > 998)
				fail_msg("line of %zu octets at offset %zu", i - 1 - start, start);
			start = i + 1;
		} else if (m[i] == '\r' && (i + 1 == len || m[i + 1] != '\n')) {
			fail_msg("bare CR at offset %zu", i);
		}
	}
}

struct composed {
	struct compose_result r;
	GMimeMessage *msg;
	char *headers; /* the top-level header block, NUL-terminated */
};

static void compose_ok(json_t *in, struct composed *c)
{
	struct compose_error err;

	memset(c, 0, sizeof *c);
	if (compose_message(in, "mta.example.net", &c->r, &err) != 0)
		fail_msg("compose failed: %s: %s", err.field, err.message);
	json_decref(in);
	assert_non_null(c->r.message);
	assert_int_equal(strlen(c->r.message), c->r.len);
	assert_lines(c->r.message, c->r.len);
	const char *end = strstr(c->r.message, "\r\n\r\n");
	assert_non_null(end);
	c->headers = xstrndup(c->r.message, (size_t)(end - c->r.message) + 2);

	GMimeStream *s = g_mime_stream_mem_new_with_buffer(c->r.message, c->r.len);
	GMimeParser *p = g_mime_parser_new_with_stream(s);
	c->msg = g_mime_parser_construct_message(p, NULL);
	assert_non_null(c->msg);
	g_object_unref(p);
	g_object_unref(s);
}

static void composed_free(struct composed *c)
{
	if (c->msg)
		g_object_unref(c->msg);
	free(c->headers);
	compose_result_clear(&c->r);
}

static void compose_fails(json_t *in, const char *field, const char *msg_part)
{
	struct compose_result r;
	struct compose_error err;

	if (compose_message(in, "mta.example.net", &r, &err) == 0)
		fail_msg("compose succeeded, expected an error on %s", field);
	json_decref(in);
	assert_null(r.message);
	assert_int_equal(r.nrcpts, 0);
	if (strcmp(err.field, field) != 0)
		fail_msg("error field \"%s\" (%s), expected \"%s\"", err.field, err.message, field);
	if (msg_part && !strstr(err.message, msg_part))
		fail_msg("error message \"%s\" lacks \"%s\"", err.message, msg_part);
}

/* "type/sub" or "multipart/x[child,child]", lower case. */
static void describe(GMimeObject *o, GString *out)
{
	char *mt = g_mime_content_type_get_mime_type(g_mime_object_get_content_type(o));

	for (char *p = mt; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	g_string_append(out, mt);
	g_free(mt);
	if (GMIME_IS_MULTIPART(o)) {
		GMimeMultipart *mp = GMIME_MULTIPART(o);

		g_string_append_c(out, '[');
		for (int i = 0; i < g_mime_multipart_get_count(mp); i++) {
			if (i)
				g_string_append_c(out, ',');
			describe(g_mime_multipart_get_part(mp, i), out);
		}
		g_string_append_c(out, ']');
	}
}

/* The n-th (0-based) leaf part of the given type, depth first. */
static GMimeObject *find_part(GMimeObject *o, const char *type, int *n)
{
	if (GMIME_IS_MULTIPART(o)) {
		GMimeMultipart *mp = GMIME_MULTIPART(o);

		for (int i = 0; i < g_mime_multipart_get_count(mp); i++) {
			GMimeObject *f = find_part(g_mime_multipart_get_part(mp, i), type, n);
			if (f)
				return f;
		}
		return NULL;
	}
	char *mt = g_mime_content_type_get_mime_type(g_mime_object_get_content_type(o));
	bool match = strcasecmp(mt, type) == 0;
	g_free(mt);
	if (match && (*n)-- == 0)
		return o;
	return NULL;
}

static GMimeObject *part_of(struct composed *c, const char *type, int index)
{
	GMimeObject *o = find_part(g_mime_message_get_mime_part(c->msg), type, &index);

	if (!o)
		fail_msg("no %s part", type);
	return o;
}

/* The decoded content of a leaf part. */
static GByteArray *decoded(GMimeObject *o)
{
	GMimeStream *s = g_mime_stream_mem_new();
	GByteArray *a;

	g_mime_data_wrapper_write_to_stream(g_mime_part_get_content(GMIME_PART(o)), s);
	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(s), FALSE);
	a = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(s));
	g_object_unref(s);
	return a;
}

static const char *encoding_of(GMimeObject *o)
{
	return g_mime_content_encoding_to_string(g_mime_part_get_content_encoding(GMIME_PART(o)));
}

/*
 * Text comes back with CRLF line breaks (its canonical form); a single-part
 * body not ending in a line break gains the one that ends the message.
 */
static void assert_text(GMimeObject *o, const char *in, bool single)
{
	GByteArray *a = decoded(o);
	GString *want = g_string_new(NULL);

	for (const char *p = in; *p; p++) {
		if (*p == '\n')
			g_string_append_c(want, '\r');
		g_string_append_c(want, *p);
	}
	if (single && a->len == want->len + 2 && want->len && want->str[want->len - 1] != '\n')
		g_string_append(want, "\r\n");
	if (a->len != want->len || memcmp(a->data, want->str, a->len) != 0)
		fail_msg("decoded text differs: got %u bytes, want %zu", a->len, want->len);
	g_string_free(want, TRUE);
	g_byte_array_unref(a);
}

/*
 * A header of the parsed message, RFC 2047 decoded one encoded word at a
 * time: GMime 3.2.13 (Debian 12) joins adjacent base64 words before decoding
 * and drops everything after a padded one (jstedfast/gmime#133), while the
 * words themselves are right (each holds whole characters).
 */
static char *decoded_header(struct composed *c, const char *name)
{
	GMimeHeaderList *hl = g_mime_object_get_header_list(GMIME_OBJECT(c->msg));
	GMimeHeader *h = g_mime_header_list_get_header(hl, name);
	GString *out = g_string_new(NULL);
	bool prev_word = false;

	if (!h)
		fail_msg("no %s header", name);
	char *unfolded = g_mime_utils_header_unfold(g_mime_header_get_raw_value(h));
	const char *p = unfolded + strspn(unfolded, " \t");
	while (*p) {
		size_t ws = strspn(p, " \t");
		const char *tok = p + ws;
		size_t n = strcspn(tok, " \t");
		bool word = n > 4 && strncmp(tok, "=?", 2) == 0 &&
			    strncmp(tok + n - 2, "?=", 2) == 0;

		if (!(word && prev_word)) /* white space between two words goes */
			g_string_append_len(out, p, (gssize)ws);
		if (word) {
			char *w = g_strndup(tok, n);
			char *d = g_mime_utils_header_decode_text(NULL, w);

			g_string_append(out, d);
			g_free(d);
			g_free(w);
		} else {
			g_string_append_len(out, tok, (gssize)n);
		}
		prev_word = word;
		p = tok + n;
	}
	g_free(unfolded);
	return g_string_free(out, FALSE);
}

static void assert_header(struct composed *c, const char *name, const char *want)
{
	char *got = decoded_header(c, name);

	assert_string_equal(got, want);
	g_free(got);
}

static bool has_header(const char *headers, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = headers; p; p = strstr(p, "\r\n")) {
		if (p != headers)
			p += 2;
		if (strncasecmp(p, name, n) == 0 && p[n] == ':')
			return true;
		if (!*p)
			break;
	}
	return false;
}

/* ---- structure ---- */

#define PNG "'contentType': 'image/png', 'encoding': 'base64', 'content': 'iVBORw0KGgo='"

static const struct {
	const char *json;
	const char *tree;
} structures[] = {
    {"{'to': 'r@x.org', 'text': 'hi'}", "text/plain"},
    {"{'to': 'r@x.org', 'html': '<p>hi</p>'}", "text/html"},
    {"{'to': 'r@x.org'}", "text/plain"},
    {"{'to': 'r@x.org', 'text': '', 'html': ''}", "text/plain"},
    {"{'to': 'r@x.org', 'text': 'hi', 'html': '<p>hi</p>'}",
     "multipart/alternative[text/plain,text/html]"},
    {"{'to': 'r@x.org', 'html': '<img src=\\'cid:logo\\'>', "
     "'attachments': [{'cid': 'logo', " PNG "}]}",
     "multipart/related[text/html,image/png]"},
    {"{'to': 'r@x.org', 'text': 'hi', 'html': '<img>', 'attachments': [{'cid': 'logo', " PNG "}]}",
     "multipart/alternative[text/plain,multipart/related[text/html,image/png]]"},
    {"{'to': 'r@x.org', 'text': 'hi', 'attachments': [{'filename': 'a.pdf', "
     "'contentType': 'application/pdf', 'content': '%PDF'}]}",
     "multipart/mixed[text/plain,application/pdf]"},
    {"{'to': 'r@x.org', 'text': 'hi', 'html': '<img>', 'attachments': [{'filename': 'a.pdf', "
     "'contentType': 'application/pdf', 'content': '%PDF'}, {'cid': 'logo', " PNG "}]}",
     "multipart/mixed[multipart/alternative[text/plain,multipart/related[text/html,image/png]],"
     "application/pdf]"},
    {"{'to': 'r@x.org', 'text': 'hi', 'alternatives': [{'contentType': 'text/x-web-markdown', "
     "'content': '**hi**'}]}",
     "multipart/alternative[text/plain,text/x-web-markdown]"},
    {"{'to': 'r@x.org', 'html': '<p>x</p>', 'alternatives': [{'content': 'plain'}]}",
     "multipart/alternative[text/html,text/plain]"},
    /* one attachment and nothing else is the whole message, as in MailComposer */
    {"{'to': 'r@x.org', 'attachments': [{'content': 'data'}]}", "application/octet-stream"},
    {"{'to': 'r@x.org', 'attachments': [{'content': 'a'}, {'content': 'b'}]}",
     "multipart/mixed[application/octet-stream,application/octet-stream]"},
    /* a cid with no html to relate to is an ordinary (inline) attachment */
    {"{'to': 'r@x.org', 'text': 'hi', 'attachments': [{'cid': 'logo', " PNG "}]}",
     "multipart/mixed[text/plain,image/png]"},
};

static void test_structure(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof structures / sizeof structures[0]; i++) {
		struct composed c;
		GString *tree = g_string_new(NULL);

		compose_ok(J(structures[i].json), &c);
		describe(g_mime_message_get_mime_part(c.msg), tree);
		if (strcmp(tree->str, structures[i].tree) != 0)
			fail_msg("case %zu: %s, want %s", i, tree->str, structures[i].tree);
		assert_true(has_header(c.headers, "MIME-Version"));
		g_string_free(tree, TRUE);
		composed_free(&c);
	}
}

static void test_related_details(void **state)
{
	struct composed c;

	(void)state;
	compose_ok(J("{'to': 'r@x.org', 'html': '<img src=\\'cid:logo@x\\'>', 'attachments': "
		     "[{'cid': '<logo@x>', 'filename': 'logo.png', " PNG "}]}"),
		   &c);
	GMimeObject *root = g_mime_message_get_mime_part(c.msg);
	assert_string_equal(g_mime_object_get_content_type_parameter(root, "type"), "text/html");
	GMimeObject *img = part_of(&c, "image/png", 0);
	assert_string_equal(g_mime_object_get_content_id(img), "logo@x");
	assert_string_equal(g_mime_object_get_disposition(img), "inline");
	assert_string_equal(g_mime_part_get_filename(GMIME_PART(img)), "logo.png");
	GByteArray *a = decoded(img);
	assert_int_equal(a->len, 8);
	assert_memory_equal(a->data, "\x89PNG\r\n\x1a\n", 8);
	g_byte_array_unref(a);
	composed_free(&c);
}

/* ---- bodies ---- */

static void test_bodies(void **state)
{
	struct composed c;
	GString *text = g_string_new("Tere! Šokolaad ja jäätis.\n\n");
	GString *html = g_string_new("<p>Ünïcödé &amp; <b>bold</b></p>\n");
	json_t *in;

	(void)state;
	/* a 2500-octet line with some two-byte UTF-8 in it */
	for (int i = 0; i < 300; i++)
		g_string_append(text, i % 10 ? "abcdefgh" : "abcdefgé");
	g_string_append(text, "\nFrom the start of a line\n.\nlast line, no newline");
	for (int i = 0; i < 400; i++)
		g_string_append(html, "<span>x</span>");
	in = json_pack("{s:s, s:s, s:s}", "to", "r@x.org", "text", text->str, "html", html->str);
	compose_ok(in, &c);
	GMimeObject *t = part_of(&c, "text/plain", 0), *h = part_of(&c, "text/html", 0);
	assert_string_equal(g_mime_object_get_content_type_parameter(t, "charset"), "utf-8");
	assert_string_equal(g_mime_object_get_content_type_parameter(h, "charset"), "utf-8");
	assert_string_equal(encoding_of(t), "quoted-printable");
	assert_text(t, text->str, false);
	assert_text(h, html->str, false);
	composed_free(&c);

	/* mostly non-ASCII text goes as base64, still CRLF inside */
	const char *ru = "Привет, мир!\nЭто проверка.\r\nИ ещё строка\rконец\n";
	compose_ok(json_pack("{s:s, s:s}", "to", "r@x.org", "text", ru), &c);
	t = part_of(&c, "text/plain", 0);
	assert_string_equal(encoding_of(t), "base64");
	assert_text(t, "Привет, мир!\nЭто проверка.\nИ ещё строка\nконец\n", true);
	composed_free(&c);

	/* plain ASCII stays 7bit; a single part keeps its text, plus the final CRLF */
	compose_ok(J("{'to': 'r@x.org', 'text': 'just ascii\\nsecond line'}"), &c);
	t = part_of(&c, "text/plain", 0);
	assert_string_equal(encoding_of(t), "7bit");
	assert_text(t, "just ascii\nsecond line", true);
	composed_free(&c);

	/* NUL in text: base64 */
	compose_ok(J("{'to': 'r@x.org', 'text': 'a\\u0000b', 'html': '<p>x</p>'}"), &c);
	t = part_of(&c, "text/plain", 0);
	assert_string_equal(encoding_of(t), "base64");
	GByteArray *a = decoded(t);
	assert_int_equal(a->len, 3);
	assert_memory_equal(a->data, "a\0b", 3);
	g_byte_array_unref(a);
	composed_free(&c);

	g_string_free(text, TRUE);
	g_string_free(html, TRUE);
}

static void test_attachment_contents(void **state)
{
	struct composed c;
	GByteArray *a;

	(void)state;
	/* binary with CR and LF bytes: exact, as base64 */
	compose_ok(J("{'to': 'r@x.org', 'text': 'x', 'attachments': ["
		     "{'filename': 'bin', 'encoding': 'base64', 'content': 'AA0KDQoKDf8='},"
		     "{'filename': 'h.bin', 'encoding': 'hex', 'content': '0d0a00FF'},"
		     "{'filename': 'notes.txt', 'contentType': 'text/plain', "
		     "'content': 'a\\nb\\n'},"
		     "{'filename': 'a.csv', 'contentType': 'text/csv; charset=iso-8859-1', "
		     "'encoding': 'base64', 'content': 'YQpi6Q=='}]}"),
		   &c);
	GMimeObject *bin = part_of(&c, "application/octet-stream", 0);
	assert_string_equal(encoding_of(bin), "base64");
	assert_string_equal(g_mime_object_get_disposition(bin), "attachment");
	a = decoded(bin);
	assert_int_equal(a->len, 8);
	assert_memory_equal(a->data, "\0\r\n\r\n\n\r\xff", 8);
	g_byte_array_unref(a);
	a = decoded(part_of(&c, "application/octet-stream", 1));
	assert_int_equal(a->len, 4);
	assert_memory_equal(a->data, "\r\n\0\xff", 4);
	g_byte_array_unref(a);
	GMimeObject *notes = part_of(&c, "text/plain", 1);
	/* ASCII: no charset, as MailComposer */
	assert_null(g_mime_object_get_content_type_parameter(notes, "charset"));
	assert_text(notes, "a\nb\n", false);
	GMimeObject *csv = part_of(&c, "text/csv", 0);
	assert_string_equal(g_mime_object_get_content_type_parameter(csv, "charset"), "iso-8859-1");
	a = decoded(csv);
	assert_int_equal(a->len, 4);
	assert_memory_equal(a->data, "a\nb\xe9", 4);
	g_byte_array_unref(a);
	composed_free(&c);

	/* explicit disposition; base64 with white space and without padding */
	compose_ok(J("{'to': 'r@x.org', 'attachments': [{'contentDisposition': 'inline', "
		     "'encoding': 'base64', 'content': 'aGVs\\r\\nbG8'}]}"),
		   &c);
	GMimeObject *o = part_of(&c, "application/octet-stream", 0);
	assert_string_equal(g_mime_object_get_disposition(o), "inline");
	a = decoded(o);
	assert_int_equal(a->len, 5);
	assert_memory_equal(a->data, "hello", 5);
	g_byte_array_unref(a);
	composed_free(&c);
}

/* ---- headers ---- */

static void test_unicode_headers(void **state)
{
	struct composed c;

	(void)state;
	compose_ok(J("{'from': 'Jõgeva Ümar <j@x.org>', 'to': [{'name': '山田 太郎', 'address': "
		     "'taro@x.jp'}, 'Plain Name <p@x.org>', {'address': 'bare@x.org'}], "
		     "'cc': '\\'Doe, Jane\\' <jane@x.org>', "
		     "'subject': 'Tähelepanu: ✓ 😀 a subject long enough to need folding, surely', "
		     "'text': 'x', 'attachments': [{'filename': 'résumé – 履歴書.pdf', "
		     "'content': 'x'}]}"),
		   &c);
	/* headers are pure ASCII */
	for (const unsigned char *p = (const unsigned char *)c.headers; *p; p++)
		assert_true(*p < 0x80);
	assert_header(&c, "Subject",
		      "Tähelepanu: ✓ 😀 a subject long enough to need folding, surely");
	InternetAddressList *from = g_mime_message_get_from(c.msg);
	assert_int_equal(internet_address_list_length(from), 1);
	assert_string_equal(internet_address_get_name(internet_address_list_get_address(from, 0)),
			    "Jõgeva Ümar");
	InternetAddressList *to = g_mime_message_get_to(c.msg);
	assert_int_equal(internet_address_list_length(to), 3);
	InternetAddress *t0 = internet_address_list_get_address(to, 0);
	assert_string_equal(internet_address_get_name(t0), "山田 太郎");
	assert_string_equal(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(t0)),
			    "taro@x.jp");
	InternetAddressList *cc = g_mime_message_get_cc(c.msg);
	assert_string_equal(internet_address_get_name(internet_address_list_get_address(cc, 0)),
			    "Doe, Jane");
	GMimeObject *att = part_of(&c, "application/pdf", 0); /* by the name */
	assert_string_equal(g_mime_part_get_filename(GMIME_PART(att)), "résumé – 履歴書.pdf");
	assert_non_null(strstr(c.r.message, "filename*"));
	assert_string_equal(c.r.from, "j@x.org");
	composed_free(&c);
}

static void test_envelope(void **state)
{
	struct composed c;

	(void)state;
	/* bcc: recipients, never headers; duplicates fold case-insensitively */
	compose_ok(J("{'from': 'a@x.org', 'to': 'One <one@y.org>, two@y.org', "
		     "'cc': ['ONE@Y.ORG', 'three@y.org'], 'bcc': 'hidden@z.org, Two@y.org', "
		     "'text': 'x'}"),
		   &c);
	assert_false(has_header(c.headers, "Bcc"));
	assert_null(strstr(c.r.message, "hidden"));
	assert_int_equal(c.r.nrcpts, 4);
	assert_string_equal(c.r.rcpts[0], "one@y.org");
	assert_string_equal(c.r.rcpts[1], "two@y.org");
	assert_string_equal(c.r.rcpts[2], "three@y.org");
	assert_string_equal(c.r.rcpts[3], "hidden@z.org");
	assert_string_equal(c.r.from, "a@x.org");
	composed_free(&c);

	/* envelope override */
	compose_ok(J("{'from': 'a@x.org', 'to': 'b@y.org', 'bcc': 'c@y.org', 'envelope': "
		     "{'from': 'bounces+123@x.org', 'to': ['r1@z.org', 'R1@z.org', 'r2@z.org']}}"),
		   &c);
	assert_string_equal(c.r.from, "bounces+123@x.org");
	assert_int_equal(c.r.nrcpts, 2);
	assert_string_equal(c.r.rcpts[0], "r1@z.org");
	assert_string_equal(c.r.rcpts[1], "r2@z.org");
	assert_true(has_header(c.headers, "To"));
	composed_free(&c);

	/* from before sender (Nodemailer's order); null sender; groups; IDN domains */
	compose_ok(J("{'from': 'a@x.org', 'sender': 's@x.org', 'to': 'team: m1@y.org, m2@y.org;'}"),
		   &c);
	assert_string_equal(c.r.from, "a@x.org");
	assert_int_equal(c.r.nrcpts, 2);
	assert_string_equal(c.r.rcpts[1], "m2@y.org");
	assert_true(has_header(c.headers, "Sender"));
	composed_free(&c);
	compose_ok(J("{'to': 'r@bücher.example', 'envelope': {'from': ''}}"), &c);
	assert_string_equal(c.r.from, "");
	assert_string_equal(c.r.rcpts[0], "r@xn--bcher-kva.example");
	assert_false(has_header(c.headers, "From"));
	composed_free(&c);
}

static void test_custom_headers(void **state)
{
	struct composed c;
	GMimeObject *m;

	(void)state;
	compose_ok(J("{'to': 'r@x.org', 'replyTo': 'reply@x.org', "
		     "'headers': {'X-Campaign': 'spring', "
		     "'X-Multi': ['one', 'two'], 'X-Folded': 'first part\\r\\n second part', "
		     "'X-Unicode': 'naïve café', 'X-Number': 42}}"),
		   &c);
	m = GMIME_OBJECT(c.msg);
	assert_string_equal(g_mime_object_get_header(m, "X-Campaign"), "spring");
	assert_non_null(strstr(c.headers, "X-Multi: one\r\nX-Multi: two\r\n"));
	assert_string_equal(g_mime_object_get_header(m, "X-Number"), "42");
	assert_true(has_header(c.headers, "Reply-To"));
	char *folded = g_mime_utils_header_unfold(g_mime_object_get_header(m, "X-Folded"));
	assert_string_equal(folded, "first part second part");
	g_free(folded);
	assert_header(&c, "X-Unicode", "naïve café");
	composed_free(&c);

	compose_ok(J("{'to': 'r@x.org', 'headers': [{'key': 'X-A', 'value': '1'}, "
		     "{'key': 'X-A', 'value': '2'}, {'key': 'List-Unsubscribe', "
		     "'value': '<mailto:u@x.org>'}]}"),
		   &c);
	assert_non_null(strstr(c.headers, "X-A: 1\r\nX-A: 2\r\n"));
	assert_string_equal(g_mime_object_get_header(GMIME_OBJECT(c.msg), "List-Unsubscribe"),
			    "<mailto:u@x.org>");
	composed_free(&c);

	/* a header named like a field stands in for the absent field (Bcc stays
	 * out of the headers), and gives way to a present one; a prepared value
	 * goes out as it is; an empty value adds nothing */
	compose_ok(J("{'to': 'r@x.org', 'subject': 'field', 'headers': {'Bcc': 'b@y.org', "
		     "'Subject': 'header', 'X-Raw': {'prepared': true, 'value': '=?x?q?as_is?='}, "
		     "'X-Empty': {'prepared': true}}}"),
		   &c);
	assert_int_equal(c.r.nrcpts, 2);
	assert_string_equal(c.r.rcpts[1], "b@y.org");
	assert_false(has_header(c.headers, "Bcc"));
	assert_header(&c, "Subject", "field");
	assert_non_null(strstr(c.headers, "\r\nX-Raw: =?x?q?as_is?=\r\n"));
	assert_false(has_header(c.headers, "X-Empty"));
	composed_free(&c);
}

static void test_priority(void **state)
{
	static const struct {
		const char *priority, *x_priority, *importance;
	} cases[] = {
	    {"high", "1 (Highest)", "High"},
	    {"LOW", "5 (Lowest)", "Low"},
	    {"normal", NULL, NULL},
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct composed c;
		json_t *in = J("{'to': 'r@x.org'}");

		json_object_set_new(in, "priority", json_string(cases[i].priority));
		compose_ok(in, &c);
		GMimeObject *m = GMIME_OBJECT(c.msg);
		if (cases[i].x_priority) {
			assert_string_equal(g_mime_object_get_header(m, "X-Priority"),
					    cases[i].x_priority);
			assert_string_equal(g_mime_object_get_header(m, "Importance"),
					    cases[i].importance);
			assert_string_equal(g_mime_object_get_header(m, "X-MSMail-Priority"),
					    cases[i].importance);
		} else {
			assert_false(has_header(c.headers, "X-Priority"));
			assert_false(has_header(c.headers, "Importance"));
		}
		composed_free(&c);
	}
}

static void test_ids_and_dates(void **state)
{
	struct composed c;

	(void)state;
	compose_ok(J("{'to': 'r@x.org', 'messageId': 'abc.123@x.org', 'inReplyTo': '<p@x.org>', "
		     "'references': ['<r1@x.org> r2@x.org', '<r3@x.org><r4@x.org>'], "
		     "'date': '2024-02-03T04:05:06Z'}"),
		   &c);
	assert_string_equal(c.r.message_id, "<abc.123@x.org>");
	assert_string_equal(g_mime_message_get_message_id(c.msg), "abc.123@x.org");
	assert_string_equal(g_mime_object_get_header(GMIME_OBJECT(c.msg), "In-Reply-To"),
			    "<p@x.org>");
	char *refs = g_mime_utils_header_unfold(
	    g_mime_object_get_header(GMIME_OBJECT(c.msg), "References"));
	assert_string_equal(refs, "<r1@x.org> <r2@x.org> <r3@x.org> <r4@x.org>");
	g_free(refs);
	GDateTime *d = g_mime_message_get_date(c.msg);
	assert_int_equal(g_date_time_to_unix(d), 1706933106);
	composed_free(&c);

	compose_ok(J("{'to': 'r@x.org', 'messageId': '<given@x.org>', "
		     "'date': 'Sat, 03 Feb 2024 06:05:06 +0200', 'references': '<only@x.org>'}"),
		   &c);
	assert_string_equal(c.r.message_id, "<given@x.org>");
	assert_int_equal(g_date_time_to_unix(g_mime_message_get_date(c.msg)), 1706933106);
	composed_free(&c);

	/* ISO 8601 without a zone is UTC */
	compose_ok(J("{'to': 'r@x.org', 'date': '2024-02-03T04:05:06.250'}"), &c);
	assert_int_equal(g_date_time_to_unix(g_mime_message_get_date(c.msg)), 1706933106);
	composed_free(&c);
	/* Date.now(): milliseconds */
	compose_ok(J("{'to': 'r@x.org', 'date': 1706933106250}"), &c);
	assert_int_equal(g_date_time_to_unix(g_mime_message_get_date(c.msg)), 1706933106);
	composed_free(&c);

	/* generated: <random@hostname>, different each time; Date now */
	compose_ok(J("{'to': 'r@x.org'}"), &c);
	struct composed c2;
	compose_ok(J("{'to': 'r@x.org'}"), &c2);
	size_t n = strlen(c.r.message_id);
	assert_true(n > 20);
	assert_int_equal(c.r.message_id[0], '<');
	assert_string_equal(c.r.message_id + n - strlen("@mta.example.net>"), "@mta.example.net>");
	assert_string_not_equal(c.r.message_id, c2.r.message_id);
	assert_non_null(strstr(c.headers, c.r.message_id));
	gint64 age = g_get_real_time() / G_USEC_PER_SEC -
		     g_date_time_to_unix(g_mime_message_get_date(c.msg));
	assert_true(age >= 0 && age < 60);
	composed_free(&c);
	composed_free(&c2);
}

/* ---- errors ---- */

static const struct {
	const char *json;
	const char *field;
	const char *message; /* a part of it, or NULL */
} errors[] = {
    {"[1]", "", NULL},
    {"{'to': 'r@x.org', 'attachments': [{'content': 'x'}, {'path': '/etc/passwd'}]}",
     "attachments[1].path", "file and URL access is disabled"},
    {"{'to': 'r@x.org', 'attachments': [{'href': 'http://x.org/a'}]}", "attachments[0].href",
     "disabled"},
    {"{'to': 'r@x.org', 'alternatives': [{'path': 'a.txt'}]}", "alternatives[0].path", "disabled"},
    {"{'to': 'r@x.org', 'text': {'path': '/etc/passwd'}}", "text.path", "disabled"},
    {"{'to': 'r@x.org', 'html': {'href': 'http://x'}}", "html.href", "disabled"},
    {"{'to': 'r@x.org', 'attachments': [{'encoding': 'base64', 'content': 'YWJj!ZA=='}]}",
     "attachments[0].content", "base64"},
    {"{'to': 'r@x.org', 'attachments': [{'encoding': 'base64', 'content': 'YQ=x'}]}",
     "attachments[0].content", "base64"},
    {"{'to': 'r@x.org', 'attachments': [{'encoding': 'base64', 'content': 'YWJjZ'}]}",
     "attachments[0].content", "base64"},
    {"{'to': 'r@x.org', 'attachments': [{'encoding': 'hex', 'content': 'abc'}]}",
     "attachments[0].content", "hex"},
    {"{'to': 'r@x.org', 'attachments': [{'encoding': 'rot13', 'content': 'x'}]}",
     "attachments[0].encoding", "unknown encoding"},
    {"{'to': 'r@x.org', 'attachments': [{'content': 5}]}", "attachments[0].content", NULL},
    {"{'to': 'r@x.org', 'attachments': [{'content': 'x', 'contentType': 'garbage'}]}",
     "attachments[0].contentType", NULL},
    {"{'to': 'r@x.org', 'attachments': [{'content': 'x', 'contentType': 'multipart/mixed'}]}",
     "attachments[0].contentType", NULL},
    {"{'to': 'r@x.org', 'attachments': [{'content': 'x', 'filename': 'a\\r\\nb'}]}",
     "attachments[0].filename", NULL},
    {"{'to': 'r@x.org', 'attachments': [{'content': 'x', 'contentDisposition': 'form'}]}",
     "attachments[0].contentDisposition", NULL},
    {"{'to': 'r@x.org', 'attachments': [{'content': 'x', 'cid': 'a b'}]}", "attachments[0].cid",
     NULL},
    {"{'to': 'r@x.org', 'attachments': {'content': 'x'}}", "attachments", "list"},
    {"{'to': 'r@x.org', 'attachments': [5]}", "attachments[0]", "object"},
    {"{'to': 'r@x.org', 'alternatives': 'x'}", "alternatives", "list"},
    {"{'to': 'not an address'}", "to", "invalid address"},
    {"{'to': 'user'}", "to", "invalid address"},
    /* refused before GMime's parser, which leaks on these (ASan build) */
    {"{'to': 'r@x.org', 'envelope': {'from': 'x>\\r\\n@e.org'}}", "envelope.from",
     "invalid address"},
    {"{'to': 'r@x.org', 'envelope': {'from': 'x>@e.org'}}", "envelope.from", "invalid address"},
    {"{'to': 'a\\r\\nb@x.org'}", "to", "invalid address"},
    {"{'to': 'a@b.org, broken@'}", "to", "invalid address"},
    {"{'to': ['ok@x.org', '<unclosed@x.org']}", "to[1]", "invalid address"},
    {"{'to': 'r@x.org', 'cc': {'name': 'N', 'address': 'nope'}}", "cc.address", NULL},
    {"{'to': 'r@x.org', 'cc': {'name': 'N'}}", "cc.address", "missing"},
    {"{'to': [{'name': 'a\\nBcc: x@y.org', 'address': 'r@x.org'}]}", "to[0].name", "line breaks"},
    {"{'to': 'r@x.org', 'cc': {'address': 'a@x.org, b@x.org'}}", "cc.address", "single"},
    {"{'to': 'r@x.org', 'from': 'user'}", "from", "invalid address"},
    {"{'to': 'r@x.org', 'replyTo': 7}", "replyTo", NULL},
    {"{'to': 5}", "to", "must be"},
    {"{'to': [[\"r@x.org\"]]}", "to[0]", NULL},
    {"{'from': 'a@x.org', 'text': 'x'}", "to", "no recipients"},
    {"{'from': 'a@x.org', 'to': '', 'cc': [], 'bcc': ' , '}", "to", "no recipients"},
    {"{'to': 'r@x.org', 'envelope': {'to': []}}", "envelope.to", "no recipients"},
    {"{'to': 'r@x.org', 'envelope': {'to': 'bad'}}", "envelope.to", "invalid address"},
    {"{'to': 'r@x.org', 'envelope': {'from': 'a@x.org, b@x.org'}}", "envelope.from", "single"},
    {"{'to': 'r@x.org', 'envelope': 'x'}", "envelope", NULL},
    {"{'to': 'r@x.org', 'subject': 5}", "subject", "string"},
    {"{'to': 'r@x.org', 'text': 5}", "text", "string"},
    {"{'to': 'r@x.org', 'headers': 5}", "headers", NULL},
    {"{'to': 'r@x.org', 'headers': {'X-A': 'a\\r\\nBcc: x@y.org'}}", "headers.X-A", "injection"},
    {"{'to': 'r@x.org', 'headers': {'X-A': 'a\\nb'}}", "headers.X-A", "injection"},
    {"{'to': 'r@x.org', 'headers': {'X-A': 'a\\rb'}}", "headers.X-A", "injection"},
    {"{'to': 'r@x.org', 'headers': {'X-A': ['ok', 'a\\r\\n']}}", "headers.X-A[1]", "injection"},
    {"{'to': 'r@x.org', 'headers': [{'key': 'X-B', 'value': 'x\\ny'}]}", "headers[0].value",
     "injection"},
    {"{'to': 'r@x.org', 'headers': [{'key': 'X B', 'value': 'x'}]}", "headers[0].key", "name"},
    {"{'to': 'r@x.org', 'headers': [{'value': 'x'}]}", "headers[0]", NULL},
    {"{'to': 'r@x.org', 'headers': {'content-type': 'text/html'}}", "headers.content-type", NULL},
    {"{'to': 'r@x.org', 'headers': {'X-A': {'prepared': true, 'value': 'a\\r\\nB: c'}}}",
     "headers.X-A", "injection"},
    {"{'to': 'r@x.org', 'priority': 'high', 'headers': {'X-Priority': '3'}}", "headers.X-Priority",
     "priority"},
    {"{'to': 'r@x.org', 'priority': 'urgent'}", "priority", NULL},
    {"{'to': 'r@x.org', 'messageId': 'a b@x.org'}", "messageId", NULL},
    {"{'to': 'r@x.org', 'messageId': '<>'}", "messageId", "empty"},
    {"{'to': 'r@x.org', 'inReplyTo': 'x\\r\\nBcc: y'}", "inReplyTo", NULL},
    {"{'to': 'r@x.org', 'references': ['<a@x>', 5]}", "references[1]", NULL},
    {"{'to': 'r@x.org', 'references': 5}", "references", NULL},
    {"{'to': 'r@x.org', 'date': 'yesterday'}", "date", NULL},
    {"{'to': 'r@x.org', 'date': -1}", "date", "range"},
};

static void test_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
		compose_fails(J(errors[i].json), errors[i].field, errors[i].message);
	}
}

static void test_subject_line_breaks(void **state)
{
	struct composed c;

	(void)state;
	compose_ok(J("{'to': 'r@x.org', 'subject': 'one\\r\\nBcc: evil@x.org\\ntwo'}"), &c);
	assert_false(has_header(c.headers, "Bcc"));
	assert_header(&c, "Subject", "one Bcc: evil@x.org two");
	composed_free(&c);
}

/* Nothing the input can hold makes a line longer than 998 octets. */
static void test_long_lines(void **state)
{
	GString *token = g_string_new(NULL), *subject = g_string_new(NULL);
	GString *name = g_string_new(NULL), *line = g_string_new(NULL);
	json_t *to = json_array(), *in;
	struct composed c;

	(void)state;
	for (int i = 0; i < 2000; i++)
		g_string_append_c(token, (char)('a' + i % 26));
	for (int i = 0; i < 300; i++)
		g_string_append(subject, i % 3 ? "ö" : "word ");
	for (int i = 0; i < 200; i++)
		g_string_append(name, "nämé");
	for (int i = 0; i < 5000; i++)
		g_string_append_c(line, (char)('!' + i % 90));
	for (int i = 0; i < 100; i++) {
		char addr[64];

		snprintf(addr, sizeof addr, "Recipient Number %d <rcpt%d@example.org>", i, i);
		json_array_append_new(to, json_string(addr));
	}
	json_array_append_new(to, json_pack("{s:s, s:s}", "name", name->str, "address", "n@x.org"));
	in = json_pack("{s:o, s:s, s:s, s:s, s:{s:s, s:s}, s:[{s:s, s:s, s:s}], s:[s,s,s]}", "to",
		       to, "subject", subject->str, "text", line->str, "html", line->str, "headers",
		       "X-Long", token->str, "X-Spaced", subject->str, "attachments", "filename",
		       name->str, "contentType", "text/plain", "content", line->str, "references",
		       "<a@x.org>", "<b@x.org>", "<c@x.org>");
	compose_ok(in, &c);
	assert_int_equal(c.r.nrcpts, 101);
	assert_header(&c, "Subject", subject->str);
	assert_header(&c, "X-Spaced", subject->str);
	assert_string_equal(g_mime_part_get_filename(GMIME_PART(part_of(&c, "text/plain", 1))),
			    name->str);
	assert_header(&c, "X-Long", token->str);
	assert_text(part_of(&c, "text/html", 0), line->str, false);
	composed_free(&c);
	g_string_free(token, TRUE);
	g_string_free(subject, TRUE);
	g_string_free(name, TRUE);
	g_string_free(line, TRUE);
}

/* Several threads at once (GMime is initialized once, objects are per call). */
static void *compose_many(void *arg)
{
	(void)arg;
	for (int i = 0; i < 50; i++) {
		struct compose_result r;
		struct compose_error err;
		json_t *in = json_pack("{s:s, s:s, s:s, s:s, s:[{s:s, s:s}]}", "from",
				       "Jöhn <j@x.org>", "to", "r@x.org", "subject", "Tëst", "text",
				       "hällo", "attachments", "filename", "ä.txt", "content", "x");

		if (compose_message(in, "h.example", &r, &err) != 0)
			return (void *)1;
		json_decref(in);
		compose_result_clear(&r);
	}
	return NULL;
}

static void test_threads(void **state)
{
	pthread_t t[4];
	void *rv;

	(void)state;
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, compose_many, NULL), 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], &rv), 0);
		assert_null(rv);
	}
}

/* ---- size ---- */

static void test_large_attachment(void **state)
{
	const size_t size = 10 * 1024 * 1024;
	guint8 *data = xmalloc(size);
	uint64_t x = 0x9e3779b97f4a7c15u;
	struct composed c;

	(void)state;
	for (size_t i = 0; i < size; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		data[i] = (guint8)x;
	}
	gchar *b64 = g_base64_encode(data, size);
	json_t *att = json_pack("{s:s, s:s, s:s}", "filename", "big.bin", "encoding", "base64",
				"contentType", "application/octet-stream");
	json_object_set_new(att, "content", json_stringn_nocheck(b64, strlen(b64)));
	g_free(b64);
	json_t *in = json_pack("{s:s, s:s, s:[o]}", "to", "r@x.org", "text", "see attached",
			       "attachments", att);
	compose_ok(in, &c);
	assert_true(c.r.len > size * 4 / 3);
	assert_true(c.r.len < size * 4 / 3 + size / 20);
	GMimeObject *o = part_of(&c, "application/octet-stream", 0);
	assert_string_equal(encoding_of(o), "base64");
	assert_string_equal(g_mime_part_get_filename(GMIME_PART(o)), "big.bin");
	GByteArray *a = decoded(o);
	assert_int_equal(a->len, size);
	assert_memory_equal(a->data, data, size);
	g_byte_array_unref(a);
	composed_free(&c);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_structure),
	    cmocka_unit_test(test_related_details),
	    cmocka_unit_test(test_bodies),
	    cmocka_unit_test(test_attachment_contents),
	    cmocka_unit_test(test_unicode_headers),
	    cmocka_unit_test(test_envelope),
	    cmocka_unit_test(test_custom_headers),
	    cmocka_unit_test(test_priority),
	    cmocka_unit_test(test_ids_and_dates),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_subject_line_breaks),
	    cmocka_unit_test(test_long_lines),
	    cmocka_unit_test(test_threads),
	    cmocka_unit_test(test_large_attachment),
	};

	g_mime_init();
	return cmocka_run_group_tests_name("compose", tests, NULL, NULL);
}
