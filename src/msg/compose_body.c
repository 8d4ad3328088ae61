/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The body of a /send message, as Nodemailer's MailComposer builds it: the
 * contents (strings, encodings, data: URIs, prepared parts), the leaves
 * with their types, dispositions and transfer encodings, and the tree of
 * mixed, alternative and related parts.  See compose.h.
 */
#include <gmime/gmime.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/utf8.h"
#include "core/xmalloc.h"
#include "msg/compose_internal.h"
#include "msg/mime.h"

static GByteArray *byte_array_take(guint8 *buf, size_t len)
{
	return g_byte_array_new_take(buf, len);
}

/* Text with every line break (CRLF, CR or LF) as LF; GMime writes CRLF. */
static GByteArray *text_lf(const guint8 *s, size_t len)
{
	guint8 *buf = g_malloc(len + 1);
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r') {
			buf[n++] = '\n';
			if (i + 1 < len && s[i + 1] == '\n')
				i++;
		} else {
			buf[n++] = s[i];
		}
	}
	return byte_array_take(buf, n);
}

/* LF → CRLF, for text that is base64 encoded (RFC 2045 canonical form). */
static GByteArray *text_crlf(const GByteArray *a)
{
	size_t lf = 0, n = 0;

	for (guint i = 0; i < a->len; i++)
		lf += a->data[i] == '\n';
	guint8 *buf = g_malloc(a->len + lf + 1);
	for (guint i = 0; i < a->len; i++) {
		if (a->data[i] == '\n')
			buf[n++] = '\r';
		buf[n++] = a->data[i];
	}
	return byte_array_take(buf, n);
}

static int b64_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+' || ch == '-')
		return 62;
	if (ch == '/' || ch == '_')
		return 63;
	return -1;
}

/* Base64 (standard or URL alphabet, white space ignored, padding optional). */
static GByteArray *base64_decode(const char *s, size_t len)
{
	guint8 *buf = g_malloc(len / 4 * 3 + 3);
	size_t n = 0, pad = 0;
	uint32_t acc = 0;
	unsigned q = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
			continue;
		if (ch == '=') {
			pad++;
			continue;
		}
		int v = b64_value(ch);
		if (v < 0 || pad)
			goto bad;
		acc = acc << 6 | (uint32_t)v;
		if (++q == 4) {
			buf[n++] = (guint8)(acc >> 16);
			buf[n++] = (guint8)(acc >> 8);
			buf[n++] = (guint8)acc;
			q = 0;
			acc = 0;
		}
	}
	if (q == 1 || (q == 0 && pad) || (q == 2 && pad && pad != 2) || (q == 3 && pad && pad != 1))
		goto bad;
	if (q == 2) {
		buf[n++] = (guint8)(acc >> 4);
	} else if (q == 3) {
		buf[n++] = (guint8)(acc >> 10);
		buf[n++] = (guint8)(acc >> 2);
	}
	return byte_array_take(buf, n);
bad:
	g_free(buf);
	return NULL;
}

static int hex_value(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static GByteArray *hex_decode(const char *s, size_t len)
{
	if (len % 2)
		return NULL;
	guint8 *buf = g_malloc(len / 2 + 1);
	for (size_t i = 0; i < len; i += 2) {
		int hi = hex_value((unsigned char)s[i]), lo = hex_value((unsigned char)s[i + 1]);

		if (hi < 0 || lo < 0) {
			g_free(buf);
			return NULL;
		}
		buf[i / 2] = (guint8)(hi << 4 | lo);
	}
	return byte_array_take(buf, len / 2);
}

/* Node's "latin1" (alias "binary"): each character's low byte. */
static GByteArray *latin1_bytes(const char *s, size_t len)
{
	guint8 *buf = g_malloc(len + 1);
	size_t n = 0;

	for (const char *p = s; p < s + len; p = g_utf8_next_char(p))
		buf[n++] = (guint8)g_utf8_get_char(p);
	return byte_array_take(buf, n);
}

/* Node's "utf16le" (alias "ucs2"). */
static GByteArray *utf16le_bytes(const char *s, size_t len)
{
	guint8 *buf = g_malloc(len * 4 + 1);
	size_t n = 0;

	for (const char *p = s; p < s + len; p = g_utf8_next_char(p)) {
		gunichar ch = g_utf8_get_char(p);
		guint16 units[2] = {(guint16)ch, 0};
		int count = 1;

		if (ch >= 0x10000) {
			units[0] = (guint16)(0xd800 + ((ch - 0x10000) >> 10));
			units[1] = (guint16)(0xdc00 + ((ch - 0x10000) & 0x3ff));
			count = 2;
		}
		for (int i = 0; i < count; i++) {
			buf[n++] = (guint8)(units[i] & 0xff);
			buf[n++] = (guint8)(units[i] >> 8);
		}
	}
	return byte_array_take(buf, n);
}

/*
 * Percent-decoding as JavaScript's decodeURIComponent: when an escape is
 * malformed or the bytes are not UTF-8, the data stays as it is (which is
 * what Nodemailer falls back to).
 */
static GByteArray *percent_decode(const char *s, size_t len)
{
	guint8 *buf = g_malloc(len + 1);
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%') {
			buf[n++] = (guint8)s[i];
			continue;
		}
		if (i + 2 >= len)
			goto as_is;
		int hi = hex_value((unsigned char)s[i + 1]),
		    lo = hex_value((unsigned char)s[i + 2]);
		if (hi < 0 || lo < 0)
			goto as_is;
		buf[n++] = (guint8)(hi << 4 | lo);
		i += 2;
	}
	if (!utf8_valid((const char *)buf, n))
		goto as_is;
	return byte_array_take(buf, n);
as_is:
	g_free(buf);
	return byte_array_take(g_memdup2(s, len), len);
}

/*
 * One leaf of the message, as Nodemailer's MailComposer describes it before
 * building its node: text, html, an alternative, an attachment.
 */
struct element {
	GMimeContentType *ct;
	char *filename;        /* NULL: none */
	char *cid;             /* without brackets; NULL: none */
	char *disposition;     /* NULL: by the rule */
	char *cte;             /* the requested transfer encoding, lower case; NULL: by content */
	GByteArray *data;      /* the content */
	bool string;           /* given as a (UTF-8) string rather than as bytes */
	GByteArray *raw;       /* a whole prepared part, headers and body; or NULL */
	const json_t *headers; /* extra part headers, or NULL */
	char field[sizeof((struct compose_error *)0)->field];
};

static void element_clear(struct element *e)
{
	if (e->ct)
		g_object_unref(e->ct);
	free(e->filename);
	free(e->cid);
	free(e->disposition);
	free(e->cte);
	if (e->data)
		g_byte_array_unref(e->data);
	if (e->raw)
		g_byte_array_unref(e->raw);
	memset(e, 0, sizeof *e);
}

struct elements {
	struct element *v;
	size_t n, cap;
};

static struct element *elements_add(struct elements *l)
{
	l->v = xreallocarray_grow(l->v, &l->cap, l->n + 1, sizeof *l->v);
	memset(&l->v[l->n], 0, sizeof l->v[0]);
	return &l->v[l->n++];
}

static void elements_clear(struct elements *l)
{
	for (size_t i = 0; i < l->n; i++)
		element_clear(&l->v[i]);
	free(l->v);
	memset(l, 0, sizeof *l);
}

/*
 * The bytes of a string per Nodemailer's `encoding` (a Node Buffer
 * encoding, compared without case, '-', '_' or spaces): utf8, ascii and
 * us-ascii keep the string as text; base64 (and base64url), hex, latin1
 * (binary) and utf16le (ucs2) make bytes.
 */
static int decode_content(struct compose *c, const json_t *content, const json_t *jenc,
			  const char *base, struct element *e)
{
	char f[sizeof c->err->field], enc[32] = "";
	const char *s = json_string_value(content);
	size_t len = json_string_length(content);

	if (len > G_MAXUINT / 4) {
		compose_fieldf(f, sizeof f, "%s.content", base);
		return compose_fail(c, f, "too large");
	}
	c->content_bytes += len;
	if (jenc) {
		const char *name;
		size_t n = 0;

		compose_fieldf(f, sizeof f, "%s.encoding", base);
		if (compose_header_string(c, jenc, f, &name) < 0)
			return -1;
		for (const char *p = name; *p && n + 1 < sizeof enc; p++)
			if (*p != '-' && *p != '_' && *p != ' ' && *p != '\t')
				enc[n++] = (char)g_ascii_tolower(*p);
		enc[n] = '\0';
	}
	e->string = false;
	if (!*enc || !strcmp(enc, "utf8") || !strcmp(enc, "ascii") || !strcmp(enc, "usascii")) {
		e->string = true;
		e->data = byte_array_take(g_memdup2(s, len), len);
	} else if (!strcmp(enc, "base64") || !strcmp(enc, "base64url")) {
		e->data = base64_decode(s, len);
	} else if (!strcmp(enc, "hex")) {
		e->data = hex_decode(s, len);
	} else if (!strcmp(enc, "latin1") || !strcmp(enc, "binary")) {
		e->data = latin1_bytes(s, len);
	} else if (!strcmp(enc, "utf16le") || !strcmp(enc, "ucs2")) {
		e->data = utf16le_bytes(s, len);
	} else {
		compose_fieldf(f, sizeof f, "%s.encoding", base);
		return compose_fail(
		    c, f,
		    "unknown encoding (utf-8, ascii, base64, base64url, hex, latin1, "
		    "binary or utf16le)");
	}
	if (!e->data) {
		compose_fieldf(f, sizeof f, "%s.content", base);
		return compose_fail(c, f, "invalid %s", enc);
	}
	return 0;
}

/*
 * A data: URI (RFC 2397), as Nodemailer reads one: the media type without
 * its parameters (application/octet-stream when absent), then base64 or
 * percent-encoded bytes.  *type gets the media type.
 */
static int data_uri(struct compose *c, const char *uri, size_t len, const char *field,
		    struct element *e, char **type)
{
	const char *comma = memchr(uri, ',', len);

	if (!comma)
		return compose_fail(c, field, "a data: URI needs a comma before its data");
	char *meta = xstrndup(uri + 5, (size_t)(comma - uri - 5));
	char **entries = g_strsplit(meta, ";", -1);
	guint n = g_strv_length(entries);
	bool b64 = false;
	free(meta);
	if (n > 0) {
		char *last = g_strstrip(g_ascii_strdown(entries[n - 1], -1));

		if (!strcmp(last, "base64") || !strcmp(last, "utf8") || !strcmp(last, "utf-8")) {
			b64 = !strcmp(last, "base64");
			n--;
		}
		g_free(last);
	}
	char *t = n > 0 ? g_strstrip(xstrdup(entries[0])) : xstrdup("");
	g_strfreev(entries);
	if (!*t) {
		free(t);
		t = xstrdup("application/octet-stream");
	}
	const char *data = comma + 1;
	size_t dlen = len - (size_t)(data - uri);
	c->content_bytes += dlen;
	e->string = false;
	e->data = b64 ? base64_decode(data, dlen) : percent_decode(data, dlen);
	if (!e->data) {
		free(t);
		return compose_fail(c, field, "invalid base64 in the data: URI");
	}
	*type = t;
	return 0;
}

/*
 * The content of `v`: a string, or an object with `content` (and
 * `encoding`), `raw` (a prepared part) or a data: URI in `path` or `href`.
 * Any other path or URL is refused: no file or URL access.  *dtype gets a
 * data URI's media type.  `v` absent is an empty string.
 */
static int element_content(struct compose *c, const json_t *v, const char *base, struct element *e,
			   char **dtype)
{
	char f[sizeof c->err->field];

	*dtype = NULL;
	if (!v || json_is_string(v)) {
		if (!v) {
			e->string = true;
			e->data = g_byte_array_new();
			return 0;
		}
		return decode_content(c, v, NULL, base, e);
	}
	if (!json_is_object(v))
		return compose_fail(c, base,
				    "must be a string or an object with content, raw or path");
	const json_t *raw = compose_member(v, "raw");
	if (raw) {
		compose_fieldf(f, sizeof f, "%s.raw", base);
		if (!json_is_string(raw))
			return compose_fail(c, f, "must be a string");
		c->content_bytes += json_string_length(raw);
		e->raw = text_lf((const guint8 *)json_string_value(raw), json_string_length(raw));
		return 0;
	}
	static const char *const refs[] = {"path", "href"};
	for (size_t i = 0; i < 2; i++) {
		const json_t *r = compose_member(v, refs[i]);
		if (!r || json_is_false(r))
			continue;
		compose_fieldf(f, sizeof f, "%s.%s", base, refs[i]);
		if (!json_is_string(r))
			return compose_fail(c, f, "must be a string");
		if (g_ascii_strncasecmp(json_string_value(r), "data:", 5) != 0)
			return compose_fail(c, f, "file and URL access is disabled");
		return data_uri(c, json_string_value(r), json_string_length(r), f, e, dtype);
	}
	const json_t *content = compose_member(v, "content");
	if (!content) {
		e->string = true;
		e->data = g_byte_array_new();
		return 0;
	}
	if (!json_is_string(content)) {
		compose_fieldf(f, sizeof f, "%s.content", base);
		return compose_fail(c, f, "must be a string");
	}
	return decode_content(c, content, compose_member(v, "encoding"), base, e);
}

/* A content type given as a string; multipart types are not for leaves. */
static GMimeContentType *parse_content_type(struct compose *c, const char *s, const char *field)
{
	GMimeContentType *ct;

	if (compose_has_line_break(s)) {
		compose_fail(c, field, "must not contain line breaks");
		return NULL;
	}
	c->warnings = 0;
	ct = g_mime_content_type_parse(c->popts, s);
	if (c->warnings || !strchr(s, '/')) {
		g_object_unref(ct);
		compose_fail(c, field, "invalid content type \"%.100s\"", s);
		return NULL;
	}
	if (g_mime_content_type_is_type(ct, "multipart", "*")) {
		g_object_unref(ct);
		compose_fail(c, field, "multipart types cannot be given for a part");
		return NULL;
	}
	return ct;
}

static int element_type(struct compose *c, struct element *e, const char *type, const char *field)
{
	e->ct = parse_content_type(c, type, field);
	return e->ct ? 0 : -1;
}

static bool filename_ok(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* A string member, or NULL when absent (or false); -1 when of another type. */
static int optional_string(struct compose *c, const json_t *o, const char *key, const char *base,
			   const char **out)
{
	char f[sizeof c->err->field];
	const json_t *v = json_is_object(o) ? compose_member(o, key) : NULL;

	*out = NULL;
	if (!v || json_is_false(v))
		return 0;
	compose_fieldf(f, sizeof f, "%s.%s", base, key);
	if (compose_header_string(c, v, f, out) < 0)
		return -1;
	if (!**out)
		*out = NULL;
	return 0;
}

/* filename, cid, contentDisposition, contentTransferEncoding, headers. */
static int element_options(struct compose *c, struct element *e, const json_t *o, const char *base,
			   bool attachment)
{
	char f[sizeof c->err->field];
	const char *filename, *cid, *disp, *cte;

	if (!json_is_object(o))
		return 0;
	if (optional_string(c, o, "filename", base, &filename) < 0 ||
	    optional_string(c, o, "cid", base, &cid) < 0 ||
	    optional_string(c, o, "contentDisposition", base, &disp) < 0 ||
	    optional_string(c, o, "contentTransferEncoding", base, &cte) < 0)
		return -1;
	if (filename) {
		compose_fieldf(f, sizeof f, "%s.filename", base);
		if (!filename_ok(filename))
			return compose_fail(c, f, "must not contain control characters");
		e->filename = xstrdup(filename);
	}
	if (cid && attachment) { /* alternatives have no Content-ID or disposition */
		char *bracketed;
		int n;

		compose_fieldf(f, sizeof f, "%s.cid", base);
		n = compose_make_id(c, cid, cid + strlen(cid), f, &bracketed);
		if (n < 0)
			return -1;
		e->cid = xstrndup(bracketed + 1, (size_t)n);
		free(bracketed);
	}
	if (disp && attachment) {
		compose_fieldf(f, sizeof f, "%s.contentDisposition", base);
		if (g_ascii_strcasecmp(disp, "attachment") != 0 &&
		    g_ascii_strcasecmp(disp, "inline") != 0)
			return compose_fail(c, f, "must be \"attachment\" or \"inline\"");
		e->disposition = g_ascii_strdown(disp, -1);
	}
	if (cte)
		e->cte = g_ascii_strdown(cte, -1);
	e->headers = compose_member(o, "headers");
	if (e->headers && !json_is_object(e->headers) && !json_is_array(e->headers)) {
		compose_fieldf(f, sizeof f, "%s.headers", base);
		return compose_fail(c, f, "must be an object or a list of {key, value}");
	}
	return 0;
}

/* The name Nodemailer gives an unnamed attachment: attachment-N.ext. */
static char *default_filename(const GMimeContentType *ct, size_t index)
{
	char *type = g_mime_content_type_get_mime_type((GMimeContentType *)ct);
	char *name = xasprintf("attachment-%zu.%s", index + 1, mime_extension_for_type(type));

	g_free(type);
	return name;
}

/* attachments[i] as MailComposer's getAttachments() sees it. */
static int attachment_element(struct compose *c, const json_t *a, size_t i, struct element *e)
{
	char f[sizeof c->err->field];
	char *dtype = NULL;
	const char *type;

	compose_fieldf(e->field, sizeof e->field, "attachments[%zu]", i);
	if (!json_is_object(a))
		return compose_fail(c, e->field, "must be an object");
	if (element_content(c, a, e->field, e, &dtype) < 0 ||
	    element_options(c, e, a, e->field, true) < 0 ||
	    optional_string(c, a, "contentType", e->field, &type) < 0)
		goto bad;
	compose_fieldf(f, sizeof f, "%s.contentType", e->field);
	if (!type)
		type = dtype ? dtype : mime_type_for_name(e->filename ? e->filename : "bin");
	if (element_type(c, e, type, f) < 0)
		goto bad;
	free(dtype);
	bool message = g_mime_content_type_is_type(e->ct, "message", "*");
	bool image = g_mime_content_type_is_type(e->ct, "image", "*");
	if (!e->disposition)
		e->disposition = xstrdup(message || (image && e->cid) ? "inline" : "attachment");
	if (!e->cte && !message)
		e->cte = xstrdup("base64");
	const json_t *jname = compose_member(a, "filename");
	if (!e->filename && !message && !json_is_false(jname))
		e->filename = default_filename(e->ct, i);
	return 0;
bad:
	free(dtype);
	return -1;
}

/* text, html, watchHtml, amp: a string or an object; the type is fixed. */
static int body_element(struct compose *c, const json_t *msg, const char *key, const char *type,
			struct elements *alts)
{
	const json_t *v = compose_member(msg, key);
	char *dtype = NULL;

	if (!v || json_is_false(v) || (json_is_string(v) && json_string_length(v) == 0))
		return 0;
	struct element *e = elements_add(alts);
	compose_fieldf(e->field, sizeof e->field, "%s", key);
	int rc = element_content(c, v, key, e, &dtype);
	free(dtype);
	if (rc == 0)
		rc = element_options(c, e, v, key, false);
	if (rc == 0)
		rc = element_type(c, e, type, key);
	return rc;
}

/* alternatives[i]: its contentType, else one guessed from its file name, else text/plain. */
static int alternative_element(struct compose *c, const json_t *a, size_t i, struct elements *alts)
{
	char f[sizeof c->err->field];
	struct element *e = elements_add(alts);
	char *dtype = NULL;
	const char *type;
	int rc;

	compose_fieldf(e->field, sizeof e->field, "alternatives[%zu]", i);
	if (!json_is_object(a))
		return compose_fail(c, e->field, "must be an object");
	rc = element_content(c, a, e->field, e, &dtype);
	if (rc == 0)
		rc = element_options(c, e, a, e->field, false);
	if (rc == 0)
		rc = optional_string(c, a, "contentType", e->field, &type);
	if (rc == 0) {
		compose_fieldf(f, sizeof f, "%s.contentType", e->field);
		if (!type)
			type = dtype ? dtype
				     : mime_type_for_name(e->filename ? e->filename : "txt");
		rc = element_type(c, e, type, f);
	}
	free(dtype);
	return rc;
}

/*
 * icalEvent: one text/calendar alternative (method=, no file name) and the
 * same content again as an application/ics attachment (invite.ics), as
 * Nodemailer sends calendar invitations.
 */
static int ical_elements(struct compose *c, const json_t *msg, struct elements *alts,
			 struct elements *attached)
{
	const json_t *v = compose_member(msg, "icalEvent");
	const char *method = "PUBLISH", *filename = NULL;
	char *dtype = NULL, *type;

	if (!v || json_is_false(v))
		return 0;
	if (optional_string(c, v, "method", "icalEvent", &method) < 0 ||
	    optional_string(c, v, "filename", "icalEvent", &filename) < 0)
		return -1;
	if (!method)
		method = "PUBLISH";
	for (const char *p = method; *p; p++)
		if (!g_ascii_isalnum(*p) && *p != '-')
			return compose_fail(c, "icalEvent.method",
					    "must be a word such as REQUEST");
	struct element *alt = elements_add(alts);
	compose_fieldf(alt->field, sizeof alt->field, "icalEvent");
	if (element_content(c, v, "icalEvent", alt, &dtype) < 0)
		return -1;
	free(dtype);
	char *upper = g_ascii_strup(method, -1);
	type = xasprintf("text/calendar; charset=utf-8; method=%s", upper);
	g_free(upper);
	int rc = element_type(c, alt, type, "icalEvent");
	free(type);
	if (rc < 0)
		return -1;

	struct element *att = elements_add(attached);
	compose_fieldf(att->field, sizeof att->field, "icalEvent");
	att->ct = g_mime_content_type_parse(c->popts, "application/ics");
	att->filename = xstrdup(filename ? filename : "invite.ics");
	att->disposition = xstrdup("attachment");
	att->cte = xstrdup("base64");
	att->string = alt->string;
	if (alt->data) /* a copy: a node's stream takes its element's bytes */
		att->data = g_byte_array_append(g_byte_array_new(), alt->data->data,
						alt->data->len);
	if (alt->raw)
		att->raw = g_byte_array_ref(alt->raw);
	return 0;
}

/* A prepared part (`raw`), parsed so that it nests like any other. */
static GMimeObject *raw_part(struct compose *c, const struct element *e)
{
	GByteArray *crlf = text_crlf(e->raw);
	GMimeStream *s = g_mime_stream_mem_new_with_byte_array(crlf);
	GMimeParser *p = g_mime_parser_new_with_stream(s);
	GMimeObject *o = g_mime_parser_construct_part(p, NULL);
	char f[sizeof c->err->field];

	g_object_unref(p);
	g_object_unref(s);
	if (!o) {
		compose_fieldf(f, sizeof f, "%s.raw", e->field);
		compose_fail(c, f, "not a MIME part");
	}
	return o;
}

static bool data_has_line_break(const GByteArray *d)
{
	return d->len > 0 && (memchr(d->data, '\n', d->len) || memchr(d->data, '\r', d->len));
}

/* Custom part headers: Content-Transfer-Encoding, -Disposition and -ID are
 * used where the part has none of its own; Content-Type is refused. */
static int part_header(struct compose *c, GMimeObject *o, struct element *e, const char *name,
		       const json_t *v, const char *field)
{
	if (!g_ascii_strcasecmp(name, "Content-Type") || !g_ascii_strcasecmp(name, "MIME-Version"))
		return compose_fail(c, field, "%s is set from the part's own fields", name);
	bool cte = !g_ascii_strcasecmp(name, "Content-Transfer-Encoding");
	bool disp = !g_ascii_strcasecmp(name, "Content-Disposition");
	bool cid = !g_ascii_strcasecmp(name, "Content-ID");
	if (!cte && !disp && !cid)
		return compose_add_custom_header(c, o, name, v, field);
	const char *s;
	if (compose_header_string(c, json_is_object(v) ? compose_member(v, "value") : v, field,
				  &s) < 0)
		return -1;
	char **slot = cte ? &e->cte : disp ? &e->disposition : &e->cid;
	if (*slot)
		return 0;
	if (cid) {
		char *bracketed;
		int n = compose_make_id(c, s, s + strlen(s), field, &bracketed);

		if (n < 0)
			return -1;
		e->cid = xstrndup(bracketed + 1, (size_t)n);
		free(bracketed);
		return 0;
	}
	char *word = g_ascii_strdown(s, (gssize)strcspn(s, "; \t"));
	if (disp && strcmp(word, "attachment") != 0 && strcmp(word, "inline") != 0) {
		g_free(word);
		return compose_fail(c, field, "must be \"attachment\" or \"inline\"");
	}
	*slot = xstrdup(word);
	g_free(word);
	return 0;
}

static int part_headers(struct compose *c, GMimeObject *o, struct element *e)
{
	char f[sizeof c->err->field];

	if (json_is_object(e->headers)) {
		const char *name;
		json_t *val;

		json_object_foreach ((json_t *)e->headers, name, val) {
			compose_fieldf(f, sizeof f, "%s.headers.%s", e->field, name);
			if (json_is_null(val))
				continue;
			if (!compose_header_name_ok(name))
				return compose_fail(c, f, "invalid header name");
			size_t n = json_is_array(val) ? json_array_size(val) : 1;
			for (size_t i = 0; i < n; i++)
				if (part_header(c, o, e, name,
						json_is_array(val) ? json_array_get(val, i) : val,
						f) < 0)
					return -1;
		}
	} else if (json_is_array(e->headers)) {
		for (size_t i = 0; i < json_array_size(e->headers); i++) {
			const json_t *h = json_array_get(e->headers, i);
			const char *name;

			compose_fieldf(f, sizeof f, "%s.headers[%zu]", e->field, i);
			if (!json_is_object(h) || !compose_member(h, "key") ||
			    !compose_member(h, "value"))
				return compose_fail(c, f, "must be a {key, value} object");
			if (compose_header_string(c, compose_member(h, "key"), f, &name) < 0)
				return -1;
			if (!compose_header_name_ok(name))
				return compose_fail(c, f, "invalid header name");
			if (part_header(c, o, e, name, compose_member(h, "value"), f) < 0)
				return -1;
		}
	}
	return 0;
}

/*
 * The transfer encoding of a leaf.  Asked-for base64 and quoted-printable
 * are used; text otherwise goes 7bit when it can, else as the message's
 * textEncoding says, else what fits best; message parts are 7bit or 8bit
 * (RFC 2046 5.2.1 allows nothing else); other types go base64 unless 7bit
 * or 8bit was asked for and the bytes allow it.
 */
static GMimeContentEncoding leaf_encoding(struct compose *c, GMimePart *p, const struct element *e,
					  bool text, bool message)
{
	const char *cte = e->cte ? e->cte : (text ? c->text_cte : NULL); /* mail.encoding */
	GMimeContentEncoding best7 = g_mime_part_get_best_content_encoding(
	    p, GMIME_ENCODING_CONSTRAINT_7BIT);

	if (message) /* long lines are refused on output */
		return utf8_has_8bit((const char *)e->data->data, e->data->len)
			   ? GMIME_CONTENT_ENCODING_8BIT
			   : GMIME_CONTENT_ENCODING_7BIT;
	if (cte && !strcmp(cte, "base64"))
		return GMIME_CONTENT_ENCODING_BASE64;
	if (cte && !strcmp(cte, "quoted-printable") && (text || !data_has_line_break(e->data)))
		return GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE;
	bool exact = !text || !e->string; /* bytes that must come back as they are */
	if (exact && data_has_line_break(e->data))
		return GMIME_CONTENT_ENCODING_BASE64;
	if (best7 == GMIME_CONTENT_ENCODING_DEFAULT || best7 == GMIME_CONTENT_ENCODING_7BIT) {
		if (text || (cte && (!strcmp(cte, "7bit") || !strcmp(cte, "8bit"))))
			return GMIME_CONTENT_ENCODING_7BIT;
		return GMIME_CONTENT_ENCODING_BASE64;
	}
	if (!text)
		return GMIME_CONTENT_ENCODING_BASE64;
	if (c->text_encoding) /* textEncoding: for text that needs encoding */
		return c->text_encoding == 'B' ? GMIME_CONTENT_ENCODING_BASE64
					       : GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE;
	return best7;
}

/* The node of one element: a prepared part, or a leaf with its headers. */
static GMimeObject *element_node(struct compose *c, struct element *e)
{
	if (e->raw)
		return raw_part(c, e);

	GMimePart *p = g_mime_part_new();
	GMimeObject *o = GMIME_OBJECT(p);
	bool text = g_mime_content_type_is_type(e->ct, "text", "*");
	bool message = g_mime_content_type_is_type(e->ct, "message", "*");

	if (part_headers(c, o, e) < 0) {
		g_object_unref(p);
		return NULL;
	}
	/* Text given as a string, and any message, is lines; other content is bytes. */
	GByteArray *data;
	if (message) {
		/* GMime writes a message part's lines as they are: CRLF already. */
		GByteArray *lf = text_lf(e->data->data, e->data->len);
		data = text_crlf(lf);
		g_byte_array_unref(lf);
	} else if (text && e->string) {
		data = text_lf(e->data->data, e->data->len);
	} else {
		data = e->data; /* the stream's now: each element makes one node */
		e->data = g_byte_array_new();
	}
	if (text && e->string && !g_mime_content_type_get_parameter(e->ct, "charset") &&
	    utf8_has_8bit((const char *)data->data, data->len))
		g_mime_content_type_set_parameter(e->ct, "charset", "utf-8");
	g_mime_object_set_content_type(o, e->ct);

	GMimeStream *s = g_mime_stream_mem_new_with_byte_array(data);
	GMimeDataWrapper *w = g_mime_data_wrapper_new_with_stream(s,
								  GMIME_CONTENT_ENCODING_DEFAULT);
	g_mime_part_set_content(p, w);
	GMimeContentEncoding enc = leaf_encoding(c, p, e, text, message);
	if (enc == GMIME_CONTENT_ENCODING_BASE64 && text && e->string)
		/* Canonical CRLF inside base64 (setting the array frees the LF copy). */
		g_mime_stream_mem_set_byte_array(GMIME_STREAM_MEM(s), text_crlf(data));
	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(s), TRUE);
	g_mime_part_set_content_encoding(p, enc);
	g_object_unref(w);
	g_object_unref(s);

	const char *disp = e->disposition;
	if (!disp && (!text || e->filename))
		disp = e->cid && g_mime_content_type_is_type(e->ct, "image", "*") ? "inline"
										  : "attachment";
	if (disp)
		g_mime_object_set_disposition(o, disp);
	if (e->filename)
		g_mime_part_set_filename(p, e->filename);
	if (e->cid)
		g_mime_object_set_content_id(o, e->cid);
	return o;
}

/* A multipart over `children` (references taken); NULL children fail it. */
static GMimeObject *multipart(const char *subtype, GMimeObject **children, size_t n)
{
	GMimeMultipart *mp = g_mime_multipart_new_with_subtype(subtype);
	bool ok = true;

	for (size_t i = 0; i < n; i++) {
		if (!children[i]) {
			ok = false;
			continue;
		}
		g_mime_multipart_add(mp, children[i]);
		g_object_unref(children[i]);
	}
	if (!ok) {
		g_object_unref(mp);
		return NULL;
	}
	return GMIME_OBJECT(mp);
}

/* The tree MailComposer builds, over the elements it lists. */
struct tree {
	struct compose *c;
	struct elements alts, attached, related;
	struct element *html; /* the last text/html alternative, or NULL */
	bool use_related, use_alternative, use_mixed;
};

static GMimeObject *related_node(struct tree *t)
{
	size_t n = t->related.n + 1;
	GMimeObject **v = xcalloc(n, sizeof *v);

	v[0] = element_node(t->c, t->html);
	for (size_t i = 0; v[0] && i < t->related.n; i++)
		v[i + 1] = element_node(t->c, &t->related.v[i]);
	GMimeObject *o = v[0] ? multipart("related", v, n) : NULL;
	free(v);
	if (o)
		g_mime_object_set_content_type_parameter(o, "type", "text/html");
	return o;
}

static GMimeObject *alternative_node(struct tree *t)
{
	GMimeObject **v = xcalloc(t->alts.n, sizeof *v);
	size_t n = 0;

	for (size_t i = 0; i < t->alts.n; i++) {
		struct element *e = &t->alts.v[i];

		v[n] = t->use_related && e == t->html ? related_node(t) : element_node(t->c, e);
		if (!v[n++])
			break;
	}
	GMimeObject *o = multipart("alternative", v, n);
	free(v);
	return o;
}

static GMimeObject *mixed_node(struct tree *t)
{
	GMimeObject **v = xcalloc(t->alts.n + t->attached.n + 1, sizeof *v);
	size_t n = 0;
	bool ok = true;

	if (t->use_alternative)
		ok = (v[n++] = alternative_node(t)) != NULL;
	else if (t->use_related)
		ok = (v[n++] = related_node(t)) != NULL;
	for (size_t i = 0; ok && !t->use_alternative && i < t->alts.n; i++)
		if (!t->use_related || &t->alts.v[i] != t->html)
			ok = (v[n++] = element_node(t->c, &t->alts.v[i])) != NULL;
	for (size_t i = 0; ok && i < t->attached.n; i++)
		ok = (v[n++] = element_node(t->c, &t->attached.v[i])) != NULL;
	GMimeObject *o = multipart("mixed", v, n);
	free(v);
	return o;
}

/* The elements, from the message's fields, in MailComposer's order. */
static int list_elements(struct compose *c, const json_t *msg, struct tree *t)
{
	const json_t *jatt = compose_member(msg, "attachments"),
		     *jalt = compose_member(msg, "alternatives");
	struct elements ical = {0};
	int rc = -1;

	if (jatt && !json_is_array(jatt))
		return compose_fail(c, "attachments", "must be a list");
	if (jalt && !json_is_array(jalt))
		return compose_fail(c, "alternatives", "must be a list");
	if (body_element(c, msg, "text", "text/plain; charset=utf-8", &t->alts) < 0 ||
	    body_element(c, msg, "watchHtml", "text/watch-html; charset=utf-8", &t->alts) < 0 ||
	    body_element(c, msg, "amp", "text/x-amp-html; charset=utf-8", &t->alts) < 0 ||
	    body_element(c, msg, "html", "text/html; charset=utf-8", &t->alts) < 0 ||
	    ical_elements(c, msg, &t->alts, &ical) < 0)
		goto out;
	for (size_t i = 0; jalt && i < json_array_size(jalt); i++)
		if (alternative_element(c, json_array_get(jalt, i), i, &t->alts) < 0)
			goto out;
	for (size_t i = 0; i < t->alts.n; i++)
		if (g_mime_content_type_is_type(t->alts.v[i].ct, "text", "html"))
			t->html = &t->alts.v[i];
	for (size_t i = 0; jatt && i < json_array_size(jatt); i++) {
		struct element e = {0};

		if (attachment_element(c, json_array_get(jatt, i), i, &e) < 0) {
			element_clear(&e);
			goto out;
		}
		*elements_add(t->html && e.cid ? &t->related : &t->attached) = e;
	}
	for (size_t i = 0; i < ical.n; i++)
		*elements_add(&t->attached) = ical.v[i];
	ical.n = 0;
	t->use_related = t->html && t->related.n;
	t->use_alternative = t->alts.n > 1;
	t->use_mixed = t->attached.n > 1 || (t->alts.n && t->attached.n == 1);
	rc = 0;
out:
	elements_clear(&ical);
	return rc;
}

/*
 * The body, as MailComposer builds it: mixed when there is more than one
 * part beside the text, alternative when there is more than one view,
 * related for html with cid attachments; else the one part there is, or
 * an empty text/plain one.
 */
GMimeObject *compose_make_body(struct compose *c, const json_t *msg)
{
	struct tree t = {.c = c};
	GMimeObject *root = NULL;

	if (list_elements(c, msg, &t) < 0)
		goto out;
	if (t.use_mixed) {
		root = mixed_node(&t);
	} else if (t.use_alternative) {
		root = alternative_node(&t);
	} else if (t.use_related) {
		root = related_node(&t);
	} else if (t.alts.n || t.attached.n) {
		root = element_node(c, t.alts.n ? &t.alts.v[0] : &t.attached.v[0]);
	} else {
		struct element e = {.string = true, .data = g_byte_array_new()};

		snprintf(e.field, sizeof e.field, "text");
		e.ct = g_mime_content_type_parse(c->popts, "text/plain");
		root = element_node(c, &e);
		element_clear(&e);
	}
	if (!root && !c->err->message[0])
		compose_fail(c, "", "could not build the message");
out:
	elements_clear(&t.alts);
	elements_clear(&t.attached);
	elements_clear(&t.related);
	return root;
}
