/* SPDX-License-Identifier: EUPL-1.2 */
/* Streaming 8-bit downgrade and long-line folding; see transform.h. */
#include "msg/transform.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#include "core/xmalloc.h"
#include "msg/header.h"
#include "msg/mime.h"

/* A part header block longer than this is passed on as it is. */
#define PART_HEADER_MAX (64 * 1024)
/* A boundary is at most 70 characters (RFC 2046 5.1.1): a line that starts
 * with "--" and grows past this is content. */
#define BOUNDARY_LINE_MAX 200
#define MAX_DEPTH 32

enum mode {
	MODE_HEADERS,   /* a part's header block, held until its empty line */
	MODE_PASS,      /* a part sent as it is */
	MODE_QP,        /* a part being encoded quoted-printable */
	MODE_MULTIPART, /* preamble or epilogue of a multipart */
};

struct transform {
	unsigned flags;
	transform_out out;
	void *arg;
	size_t col; /* fold: octets since the last LF sent */
	enum mode mode;
	bool bol;       /* at the start of an input line */
	bool separator; /* the empty line after the top header block is still to come */
	char *held;     /* a part header block, or a line that may be a boundary */
	size_t held_len, held_cap, line_start;
	bool holding;         /* held is a line that may be a boundary */
	bool message_headers; /* the headers held are an embedded message's */
	char *bounds[MAX_DEPTH];
	size_t nbounds;
	GMimeEncoding qp;
	bool cr; /* QP: the input ended at a CR; the next byte tells if CRLF */
	char *qpbuf;
	size_t qpcap;
};

typedef void (*sink_fn)(void *arg, const char *data, size_t len);

/* Sends bytes on, breaking lines longer than TRANSFORM_LINE_MAX with CRLF SP.
 * `col` counts the octets since the last LF; a CR at the limit may still
 * start the line's CRLF, so the break waits for the next octet. */
static void fold_write(struct transform *t, sink_fn sink, void *arg, const char *p, size_t n)
{
	if (!(t->flags & TRANSFORM_FOLD)) {
		sink(arg, p, n);
		return;
	}
	size_t start = 0;
	for (size_t i = 0; i < n;) {
		if (t->col < TRANSFORM_LINE_MAX) {
			size_t room = TRANSFORM_LINE_MAX - t->col;
			size_t lim = n - i < room ? n - i : room;
			const char *lf = memchr(p + i, '\n', lim);
			if (lf != NULL) {
				i = (size_t)(lf - p) + 1;
				t->col = 0;
			} else {
				i += lim;
				t->col += lim;
			}
			continue;
		}
		if (p[i] == '\n') {
			t->col = 0;
			i++;
		} else if (p[i] == '\r') {
			t->col++;
			i++;
		} else {
			sink(arg, p + start, i - start);
			sink(arg, "\r\n ", 3);
			start = i;
			t->col = 1;
		}
	}
	sink(arg, p + start, n - start);
}

static void emit(struct transform *t, const char *p, size_t n)
{
	if (n > 0)
		fold_write(t, t->out, t->arg, p, n);
}

/* QP output uses LF for line breaks: they go out as CRLF. */
static void emit_crlf(struct transform *t, const char *p, size_t n)
{
	while (n > 0) {
		const char *lf = memchr(p, '\n', n);
		if (lf == NULL) {
			emit(t, p, n);
			return;
		}
		emit(t, p, (size_t)(lf - p));
		emit(t, "\r\n", 2);
		n -= (size_t)(lf - p) + 1;
		p = lf + 1;
	}
}

/* Room in the encoder's output buffer for the encoding of n more bytes. */
static void qp_room(struct transform *t, size_t n)
{
	size_t need = g_mime_encoding_outlen(&t->qp, n);
	if (need > t->qpcap) {
		free(t->qpbuf);
		t->qpcap = need;
		t->qpbuf = xmalloc(need);
	}
}

static void qp_step(struct transform *t, const char *p, size_t n)
{
	if (n == 0)
		return;
	qp_room(t, n);
	emit_crlf(t, t->qpbuf, g_mime_encoding_step(&t->qp, p, n, t->qpbuf));
}

/* Body bytes of a part being encoded: CRLF line ends become the encoder's
 * LF (a hard line break); a CR alone is data (=0D). */
static void qp_feed(struct transform *t, const char *p, size_t n)
{
	if (t->cr && n > 0) {
		t->cr = false;
		if (p[0] != '\n')
			qp_step(t, "\r", 1);
	}
	while (n > 0) {
		const char *cr = memchr(p, '\r', n);
		if (cr == NULL) {
			qp_step(t, p, n);
			return;
		}
		qp_step(t, p, (size_t)(cr - p));
		n -= (size_t)(cr - p) + 1;
		p = cr + 1;
		if (n == 0)
			t->cr = true;
		else if (p[0] != '\n')
			qp_step(t, "\r", 1);
	}
}

static void qp_end(struct transform *t)
{
	if (t->mode != MODE_QP)
		return;
	if (t->cr)
		qp_step(t, "\r", 1);
	t->cr = false;
	qp_room(t, 1);
	emit_crlf(t, t->qpbuf, g_mime_encoding_flush(&t->qp, "", 0, t->qpbuf));
}

static void content(struct transform *t, const char *p, size_t n)
{
	if (t->mode == MODE_QP)
		qp_feed(t, p, n);
	else
		emit(t, p, n);
}

static void hold(struct transform *t, const char *p, size_t n)
{
	t->held = xreallocarray_grow(t->held, &t->held_cap, t->held_len + n + 1, 1);
	memcpy(t->held + t->held_len, p, n);
	t->held_len += n;
}

/* The value of parameter `name` of a Content-Type value (token or quoted
 * string, RFC 2045 5.1), malloc'ed, or NULL. */
static char *ct_param(const char *ct, const char *name)
{
	size_t nlen = strlen(name);
	const char *p = strchr(ct, ';');
	while (p != NULL) {
		p++;
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		const char *eq = strchr(p, '=');
		if (eq == NULL)
			return NULL;
		const char *kend = eq;
		while (kend > p && (kend[-1] == ' ' || kend[-1] == '\t'))
			kend--;
		const char *v = eq + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		char *value;
		const char *next;
		if (*v == '"') {
			value = xmalloc(strlen(v) + 1);
			size_t o = 0;
			for (v++; *v && *v != '"'; v++) {
				if (*v == '\\' && v[1])
					v++;
				value[o++] = *v;
			}
			value[o] = '\0';
			next = strchr(v, ';');
		} else {
			size_t vlen = strcspn(v, "; \t\r\n");
			value = xstrndup(v, vlen);
			next = strchr(v + vlen, ';');
		}
		if ((size_t)(kend - p) == nlen && strncasecmp(p, name, nlen) == 0 && *value)
			return value;
		free(value);
		p = next;
	}
	return NULL;
}

/* Replaces (or adds) Content-Transfer-Encoding where it was. */
static void set_cte(struct header_list *list, int at, const char *value)
{
	if (at >= 0)
		header_list_remove(list, "content-transfer-encoding");
	header_list_insert(list, at >= 0 ? (size_t)at : list->count, "Content-Transfer-Encoding",
			   value);
}

static bool type_is(const char *ct, const char *type)
{
	size_t n = strlen(type);
	return ct != NULL && strncasecmp(ct, type, n) == 0 &&
	       (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t' ||
		type[n - 1] == '/');
}

/* A part's header block is complete: what its body becomes, and how the
 * header must say so.  `top`: the header of a message (the whole one, or
 * one embedded as message/rfc822), which may lack MIME-Version. */
static void part_decide(struct transform *t, struct header_list *list, bool top)
{
	int ci = header_list_find(list, "content-type");
	int ei = header_list_find(list, "content-transfer-encoding");
	const char *ct = ci >= 0 ? list->items[ci].value : NULL;
	const char *cte = ei >= 0 ? list->items[ei].value : NULL;
	bool eight = cte != NULL &&
		     (strcasecmp(cte, "8bit") == 0 || strcasecmp(cte, "binary") == 0);
	if (type_is(ct, "multipart/")) {
		char *b = ct_param(ct, "boundary");
		if (b != NULL && t->nbounds < MAX_DEPTH) {
			t->bounds[t->nbounds++] = b;
			if (eight)
				set_cte(list, ei, "7bit");
			t->mode = MODE_MULTIPART;
			return;
		}
		free(b);
		t->mode = MODE_PASS; /* no boundary: nothing to walk */
		return;
	}
	if (type_is(ct, "message/rfc822")) {
		/* Its content is a message: walk it (RFC 2046 5.2.1 allows no
		 * encoding but 7bit, 8bit, binary). */
		if (eight)
			set_cte(list, ei, "7bit");
		t->mode = MODE_HEADERS;
		t->message_headers = true;
		return;
	}
	if (eight || ei < 0) {
		set_cte(list, ei, "quoted-printable");
		if (top && header_list_find(list, "mime-version") < 0)
			header_list_insert(
			    list, (size_t)header_list_find(list, "content-transfer-encoding"),
			    "MIME-Version", "1.0");
		g_mime_encoding_init_encode(&t->qp, GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE);
		t->cr = false;
		t->mode = MODE_QP;
		return;
	}
	t->mode = MODE_PASS;
}

static char *serialize(const struct header_list *list, size_t *len)
{
	*len = header_list_raw_size(list);
	char *s = xmalloc(*len + 1);
	header_list_serialize(list, s);
	return s;
}

/* The held part header block ended with its empty line. */
static void part_headers_done(struct transform *t)
{
	size_t hlen = t->line_start;
	struct header_list list = {0};
	header_list_parse(&list, t->held, hlen);
	bool message = t->message_headers;
	t->message_headers = false;
	part_decide(t, &list, message);
	size_t n;
	char *h = serialize(&list, &n);
	header_list_clear(&list);
	emit(t, h, n);
	free(h);
	emit(t, t->held + hlen, t->held_len - hlen); /* the empty line */
	t->held_len = t->line_start = 0;
}

/* A complete line starting with "--": a boundary of an open multipart? */
static bool boundary_line(struct transform *t)
{
	size_t n = t->held_len;
	while (n > 2 && (t->held[n - 1] == '\n' || t->held[n - 1] == '\r' ||
			 t->held[n - 1] == ' ' || t->held[n - 1] == '\t'))
		n--;
	const char *s = t->held + 2;
	size_t len = n - 2;
	for (size_t k = t->nbounds; k-- > 0;) {
		size_t blen = strlen(t->bounds[k]);
		bool delim = len == blen && memcmp(s, t->bounds[k], blen) == 0;
		bool close = len == blen + 2 && memcmp(s, t->bounds[k], blen) == 0 &&
			     s[blen] == '-' && s[blen + 1] == '-';
		if (!delim && !close)
			continue;
		qp_end(t);
		emit(t, t->held, t->held_len);
		size_t keep = close ? k : k + 1;
		while (t->nbounds > keep)
			free(t->bounds[--t->nbounds]);
		t->mode = close ? MODE_MULTIPART : MODE_HEADERS;
		t->message_headers = false;
		t->held_len = t->line_start = 0;
		return true;
	}
	return false;
}

static void downgrade_feed(struct transform *t, const char *p, size_t n)
{
	while (n > 0) {
		const char *lf = memchr(p, '\n', n);
		size_t k = lf ? (size_t)(lf - p) + 1 : n;
		if (t->separator) {
			emit(t, p, k);
			t->separator = lf == NULL;
			t->bol = lf != NULL;
		} else if (t->mode == MODE_HEADERS) {
			hold(t, p, k);
			if (t->held_len > PART_HEADER_MAX) {
				/* Not a header block we will rewrite: as it is. */
				emit(t, t->held, t->held_len);
				t->held_len = t->line_start = 0;
				t->mode = MODE_PASS;
			} else if (lf != NULL) {
				size_t line = t->held_len - t->line_start;
				const char *l = t->held + t->line_start;
				if (line == 1 || (line == 2 && l[0] == '\r'))
					part_headers_done(t);
				else
					t->line_start = t->held_len;
			}
			t->bol = lf != NULL;
		} else if (t->holding || (t->bol && t->nbounds > 0 && p[0] == '-')) {
			t->holding = true;
			hold(t, p, k);
			bool maybe = t->held_len < 2 || t->held[1] == '-';
			if (!maybe || t->held_len > BOUNDARY_LINE_MAX) {
				t->holding = false;
				content(t, t->held, t->held_len);
				t->held_len = 0;
			} else if (lf != NULL) {
				t->holding = false;
				if (!boundary_line(t)) {
					content(t, t->held, t->held_len);
					t->held_len = 0;
				}
			}
			t->bol = lf != NULL;
		} else {
			content(t, p, k);
			t->bol = lf != NULL;
		}
		p += k;
		n -= k;
	}
}

/* The rewritten header block as it is made. */
struct growbuf {
	char *p;
	size_t len, cap;
};

static void append_buf(void *arg, const char *data, size_t len)
{
	struct growbuf *b = arg;
	b->p = xreallocarray_grow(b->p, &b->cap, b->len + len + 1, 1);
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
}

struct transform *transform_new(unsigned flags, const char *header, size_t hlen, char **new_header,
				size_t *new_hlen, transform_out out, void *arg)
{
	mime_init();
	struct transform *t = xcalloc(1, sizeof(*t));
	t->flags = flags;
	t->out = out;
	t->arg = arg;
	t->mode = MODE_PASS;
	t->separator = true;
	char *h = NULL;
	size_t n = 0;
	if (flags & TRANSFORM_DOWNGRADE) {
		struct header_list list = {0};
		header_list_parse(&list, header, hlen);
		part_decide(t, &list, true);
		h = serialize(&list, &n);
		header_list_clear(&list);
	}
	struct growbuf b = {NULL, 0, 0};
	fold_write(t, append_buf, &b, h ? h : header, h ? n : hlen);
	free(h);
	if (b.p == NULL)
		b.p = xstrdup("");
	*new_header = b.p;
	*new_hlen = b.len;
	t->col = 0;
	return t;
}

void transform_feed(struct transform *t, const char *data, size_t len)
{
	if (t->flags & TRANSFORM_DOWNGRADE)
		downgrade_feed(t, data, len);
	else
		emit(t, data, len);
}

void transform_end(struct transform *t)
{
	if (t->held_len > 0) {
		if (t->holding)
			content(t, t->held, t->held_len);
		else
			emit(t, t->held, t->held_len);
		t->held_len = 0;
	}
	qp_end(t);
	t->mode = MODE_PASS;
}

void transform_free(struct transform *t)
{
	if (t == NULL)
		return;
	while (t->nbounds > 0)
		free(t->bounds[--t->nbounds]);
	free(t->held);
	free(t->qpbuf);
	free(t);
}
