/* SPDX-License-Identifier: EUPL-1.2 */
/* Composing a message from Nodemailer-style JSON with GMime; see compose.h. */
#include "msg/compose.h"

#include <gmime/gmime.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"
#include "msg/mime.h"

/* RFC 5322: a line is at most 998 octets before its CRLF. */
#define MAX_LINE 998
/* Longest message id (or cid) accepted, brackets excluded. */
#define MAX_ID 250

/* The state of one compose_message() call. */
struct compose {
	struct compose_error *err;
	GMimeParserOptions *popts;
	unsigned warnings;    /* parser warnings since the last reset */
	char warn_item[100];  /* the text the first of them was about */
	size_t content_bytes; /* body and attachment input, to size the output */
	bool priority_set;
};

/* Address lists as parsed: headers (all but bcc) and the envelope. */
enum {
	A_FROM,
	A_SENDER,
	A_TO,
	A_CC,
	A_BCC,
	A_REPLY_TO,
	A_COUNT
};

static const struct {
	const char *key;
	GMimeAddressType type;
} address_fields[A_COUNT] = {
    [A_FROM] = {"from", GMIME_ADDRESS_TYPE_FROM},
    [A_SENDER] = {"sender", GMIME_ADDRESS_TYPE_SENDER},
    [A_TO] = {"to", GMIME_ADDRESS_TYPE_TO},
    [A_CC] = {"cc", GMIME_ADDRESS_TYPE_CC},
    [A_BCC] = {"bcc", GMIME_ADDRESS_TYPE_BCC},
    [A_REPLY_TO] = {"replyTo", GMIME_ADDRESS_TYPE_REPLY_TO},
};

/* A growable array of GMime objects, each holding one reference. */
struct objvec {
	GMimeObject **v;
	size_t n, cap;
};

static void objvec_push(struct objvec *ov, GMimeObject *o)
{
	ov->v = xreallocarray_grow(ov->v, &ov->cap, ov->n + 1, sizeof *ov->v);
	ov->v[ov->n++] = o;
}

static void objvec_clear(struct objvec *ov)
{
	for (size_t i = 0; i < ov->n; i++)
		g_object_unref(ov->v[i]);
	free(ov->v);
	memset(ov, 0, sizeof *ov);
}

/* A field name for compose_error.field, cut to fit (vsnprintf: cutting is fine). */
static void fieldf(char *dst, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fieldf(char *dst, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dst, size, fmt, ap);
	va_end(ap);
}

static int fail(struct compose *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct compose *c, const char *field, const char *fmt, ...)
{
	va_list ap;

	fieldf(c->err->field, sizeof c->err->field, "%s", field);
	va_start(ap, fmt);
	vsnprintf(c->err->message, sizeof c->err->message, fmt, ap);
	va_end(ap);
	return -1;
}

static void parser_warning(gint64 offset, GMimeParserWarning code, const gchar *item, gpointer data)
{
	struct compose *c = data;

	(void)offset;
	(void)code;
	if (c->warnings++ == 0)
		snprintf(c->warn_item, sizeof c->warn_item, "%s", item ? item : "");
}

/* A member that is present and not null, or NULL. */
static json_t *member(const json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_null(v) ? NULL : v;
}

/* A string for a header: no NUL inside (json strings may hold one). */
static int header_string(struct compose *c, const json_t *v, const char *field, const char **out)
{
	*out = NULL; /* set on failure too, so that no caller reads garbage */
	if (!json_is_string(v))
		return fail(c, field, "must be a string");
	if (strlen(json_string_value(v)) != json_string_length(v))
		return fail(c, field, "must not contain a NUL character");
	*out = json_string_value(v);
	return 0;
}

static bool has_line_break(const char *s)
{
	return strpbrk(s, "\r\n") != NULL;
}

/* Refuses `path` and `href`: content comes in the JSON or not at all. */
static int refuse_file_access(struct compose *c, const json_t *o, const char *base)
{
	static const char *const keys[] = {"path", "href"};
	char field[sizeof c->err->field];

	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		if (member(o, keys[i])) {
			fieldf(field, sizeof field, "%s.%s", base, keys[i]);
			return fail(c, field, "file and URL access is disabled");
		}
	}
	return 0;
}

/* ---- addresses ---- */

/* GMime accepts "user" (no domain) even in strict mode: check each mailbox. */
static bool mailbox_ok(const char *addr)
{
	const char *at = strrchr(addr, '@');

	if (!at || at == addr || at[1] == '\0')
		return false;
	for (const unsigned char *p = (const unsigned char *)addr; *p; p++)
		if (*p < 0x20 || *p == 0x7f || (*p == ' ' && (const char *)p > at))
			return false;
	return true;
}

/* Checks every mailbox (groups included); names are encoded as UTF-8. */
static int check_list(struct compose *c, InternetAddressList *l, const char *field)
{
	for (int i = 0; i < internet_address_list_length(l); i++) {
		InternetAddress *ia = internet_address_list_get_address(l, i);
		const char *name = internet_address_get_name(ia);

		if (name && *name)
			internet_address_set_charset(ia, "UTF-8");
		if (INTERNET_ADDRESS_IS_GROUP(ia)) {
			InternetAddressGroup *g = INTERNET_ADDRESS_GROUP(ia);

			if (check_list(c, internet_address_group_get_members(g), field) < 0)
				return -1;
			continue;
		}
		const char *addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
		if (!mailbox_ok(addr))
			return fail(c, field, "invalid address \"%.100s\"", addr);
	}
	return 0;
}

/* Parses a string holding an address list; NULL when it is not one. */
static InternetAddressList *parse_list(struct compose *c, const char *s, const char *field)
{
	c->warnings = 0;
	InternetAddressList *l = internet_address_list_parse(c->popts, s);

	if (!l || c->warnings || internet_address_list_length(l) == 0) {
		if (l)
			g_object_unref(l);
		fail(c, field, "invalid address \"%.100s\"", c->warnings ? c->warn_item : s);
		return NULL;
	}
	if (check_list(c, l, field) < 0) {
		g_object_unref(l);
		return NULL;
	}
	return l;
}

static bool blank_list(const char *s)
{
	return s[strspn(s, " \t\r\n,")] == '\0';
}

static int add_address_string(struct compose *c, const json_t *v, const char *field,
			      InternetAddressList *into)
{
	const char *s;

	if (header_string(c, v, field, &s) < 0)
		return -1;
	if (blank_list(s))
		return 0;
	InternetAddressList *l = parse_list(c, s, field);
	if (!l)
		return -1;
	internet_address_list_append(into, l);
	g_object_unref(l);
	return 0;
}

/* {name, address}: the address must be one bare mailbox; the name is free text. */
static int add_address_object(struct compose *c, const json_t *o, const char *field,
			      InternetAddressList *into)
{
	char f[sizeof c->err->field];
	const json_t *jaddr = member(o, "address"), *jname = member(o, "name");
	const char *addr, *name = NULL;

	fieldf(f, sizeof f, "%s.address", field);
	if (!jaddr)
		return fail(c, f, "missing");
	if (header_string(c, jaddr, f, &addr) < 0)
		return -1;
	InternetAddressList *l = blank_list(addr) ? NULL : parse_list(c, addr, f);
	if (!l)
		return blank_list(addr) ? fail(c, f, "empty") : -1;
	InternetAddress *ia = internet_address_list_get_address(l, 0);
	if (internet_address_list_length(l) != 1 || !INTERNET_ADDRESS_IS_MAILBOX(ia)) {
		g_object_unref(l);
		return fail(c, f, "must be a single address");
	}
	if (jname) {
		fieldf(f, sizeof f, "%s.name", field);
		if (header_string(c, jname, f, &name) < 0 ||
		    (has_line_break(name) && fail(c, f, "must not contain line breaks") < 0)) {
			g_object_unref(l);
			return -1;
		}
	}
	InternetAddress *mb = internet_address_mailbox_new(
	    name && *name ? name : NULL,
	    internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)));
	g_object_unref(l);
	if (name && *name)
		internet_address_set_charset(mb, "UTF-8");
	internet_address_list_add(into, mb);
	g_object_unref(mb);
	return 0;
}

/* A string ("A <a@b>, c@d"), an {name, address} object, or a list of them. */
static int add_addresses(struct compose *c, const json_t *v, const char *field,
			 InternetAddressList *into)
{
	char f[sizeof c->err->field];

	if (json_is_string(v))
		return add_address_string(c, v, field, into);
	if (json_is_object(v))
		return add_address_object(c, v, field, into);
	if (!json_is_array(v))
		return fail(c, field,
			    "must be an address string, an {name, address} object "
			    "or a list of them");
	for (size_t i = 0; i < json_array_size(v); i++) {
		const json_t *e = json_array_get(v, i);

		fieldf(f, sizeof f, "%s[%zu]", field, i);
		if (json_is_null(e))
			continue;
		if (json_is_string(e)) {
			if (add_address_string(c, e, f, into) < 0)
				return -1;
		} else if (json_is_object(e)) {
			if (add_address_object(c, e, f, into) < 0)
				return -1;
		} else {
			return fail(c, f, "must be an address string or an {name, address} object");
		}
	}
	return 0;
}

/* The address an SMTP envelope uses: the domain in IDNA form. */
static const char *envelope_addr(InternetAddress *ia)
{
	return internet_address_mailbox_get_idn_addr(INTERNET_ADDRESS_MAILBOX(ia));
}

static const char *first_mailbox(InternetAddressList *l)
{
	for (int i = 0; i < internet_address_list_length(l); i++) {
		InternetAddress *ia = internet_address_list_get_address(l, i);

		if (INTERNET_ADDRESS_IS_MAILBOX(ia))
			return envelope_addr(ia);
		const char *m = first_mailbox(
		    internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)));
		if (m)
			return m;
	}
	return NULL;
}

static void add_rcpt(struct compose_result *out, size_t *cap, const char *addr)
{
	for (size_t i = 0; i < out->nrcpts; i++)
		if (strcasecmp(out->rcpts[i], addr) == 0)
			return;
	out->rcpts = xreallocarray_grow(out->rcpts, cap, out->nrcpts + 1, sizeof *out->rcpts);
	out->rcpts[out->nrcpts++] = xstrdup(addr);
}

static void add_rcpts(struct compose_result *out, size_t *cap, InternetAddressList *l)
{
	for (int i = 0; i < internet_address_list_length(l); i++) {
		InternetAddress *ia = internet_address_list_get_address(l, i);

		if (INTERNET_ADDRESS_IS_MAILBOX(ia))
			add_rcpt(out, cap, envelope_addr(ia));
		else
			add_rcpts(out, cap,
				  internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)));
	}
}

static int make_envelope(struct compose *c, const json_t *msg, InternetAddressList **lists,
			 struct compose_result *out)
{
	const json_t *env = member(msg, "envelope");
	const json_t *efrom = env ? member(env, "from") : NULL;
	const json_t *eto = env ? member(env, "to") : NULL;
	size_t cap = 0;

	if (env && !json_is_object(env))
		return fail(c, "envelope", "must be an object");
	if (efrom) {
		const char *s;

		if (header_string(c, efrom, "envelope.from", &s) < 0)
			return -1;
		if (blank_list(s) || strcmp(s, "<>") == 0) {
			out->from = xstrdup("");
		} else {
			InternetAddressList *l = parse_list(c, s, "envelope.from");
			if (!l)
				return -1;
			InternetAddress *ia = internet_address_list_get_address(l, 0);
			bool single = internet_address_list_length(l) == 1 &&
				      INTERNET_ADDRESS_IS_MAILBOX(ia);

			if (!single) {
				g_object_unref(l);
				return fail(c, "envelope.from", "must be a single address");
			}
			out->from = xstrdup(envelope_addr(ia));
			g_object_unref(l);
		}
	} else {
		const char *s = first_mailbox(lists[A_SENDER]);

		if (!s)
			s = first_mailbox(lists[A_FROM]);
		out->from = xstrdup(s ? s : "");
	}

	if (eto) {
		InternetAddressList *l = internet_address_list_new();

		if (add_addresses(c, eto, "envelope.to", l) < 0) {
			g_object_unref(l);
			return -1;
		}
		add_rcpts(out, &cap, l);
		g_object_unref(l);
		if (out->nrcpts == 0)
			return fail(c, "envelope.to", "no recipients");
		return 0;
	}
	add_rcpts(out, &cap, lists[A_TO]);
	add_rcpts(out, &cap, lists[A_CC]);
	add_rcpts(out, &cap, lists[A_BCC]);
	if (out->nrcpts == 0)
		return fail(c, "to", "no recipients (to, cc and bcc are empty)");
	return 0;
}

/* ---- identifiers, dates, headers ---- */

/*
 * A message id as <id>: brackets added when missing, no white space or
 * control characters inside.  Returns the length of the id without
 * brackets, or -1.  `s` ends at `end`.
 */
static int make_id(struct compose *c, const char *s, const char *end, const char *field, char **out)
{
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (s < end && *s == '<')
		s++;
	if (end > s && end[-1] == '>')
		end--;
	if (s == end)
		return fail(c, field, "empty");
	if (end - s > MAX_ID)
		return fail(c, field, "longer than %d characters", MAX_ID);
	for (const char *p = s; p < end; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch <= ' ' || ch >= 0x7f || ch == '<' || ch == '>')
			return fail(c, field, "invalid identifier \"%.*s\"",
				    end - s > 100 ? 100 : (int)(end - s), s);
	}
	*out = xasprintf("<%.*s>", (int)(end - s), s);
	return (int)(end - s);
}

/* References: ids separated by white space (or just "><"), from a string or a list. */
static int add_references(struct compose *c, const char *s, const char *field, GString *refs)
{
	while (*s) {
		const char *start, *end;

		s += strspn(s, " \t\r\n");
		if (!*s)
			break;
		start = s;
		if (*s == '<') {
			end = strchr(s, '>');
			end = end ? end + 1 : s + strlen(s);
		} else {
			end = s + strcspn(s, " \t\r\n<");
		}
		char *id;
		if (make_id(c, start, end, field, &id) < 0)
			return -1;
		if (refs->len)
			g_string_append_c(refs, ' ');
		g_string_append(refs, id);
		free(id);
		s = end;
	}
	return 0;
}

static int set_references(struct compose *c, const json_t *v, GMimeObject *m)
{
	GString *refs = g_string_new(NULL);
	char f[sizeof c->err->field];
	const char *s;
	int rc = 0;

	if (json_is_array(v)) {
		for (size_t i = 0; i < json_array_size(v) && rc == 0; i++) {
			fieldf(f, sizeof f, "references[%zu]", i);
			rc = header_string(c, json_array_get(v, i), f, &s);
			if (rc == 0)
				rc = add_references(c, s, f, refs);
		}
	} else if (json_is_string(v)) {
		rc = header_string(c, v, "references", &s);
		if (rc == 0)
			rc = add_references(c, s, "references", refs);
	} else {
		rc = fail(c, "references", "must be a string or a list of strings");
	}
	if (rc == 0 && refs->len)
		g_mime_object_set_header(m, "References", refs->str, NULL);
	g_string_free(refs, TRUE);
	return rc;
}

/* "date": ISO 8601 first (strict), then RFC 5322 (GMime's lenient parser); else now. */
static int set_date(struct compose *c, const json_t *v, GMimeMessage *m)
{
	GDateTime *dt;

	if (v) {
		const char *s;

		if (header_string(c, v, "date", &s) < 0)
			return -1;
		GTimeZone *utc = g_time_zone_new_utc();

		dt = g_date_time_new_from_iso8601(s, utc); /* no zone given: UTC */
		g_time_zone_unref(utc);
		if (!dt)
			dt = g_mime_utils_header_decode_date(s);
		if (!dt)
			return fail(c, "date", "not an RFC 5322 or ISO 8601 date: \"%.100s\"", s);
	} else {
		dt = g_date_time_new_now_utc();
	}
	g_mime_message_set_date(m, dt);
	g_date_time_unref(dt);
	return 0;
}

/* Header names the composer writes itself; custom headers may not set them. */
static bool managed_header(const char *name)
{
	static const char *const names[] = {
	    "From",        "Sender",     "To",      "Cc",   "Bcc",        "Reply-To",
	    "In-Reply-To", "References", "Subject", "Date", "Message-ID", "MIME-Version",
	};

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcasecmp(name, names[i]) == 0)
			return true;
	return strncasecmp(name, "Content-", 8) == 0;
}

static bool priority_header(const char *name)
{
	return strcasecmp(name, "X-Priority") == 0 || strcasecmp(name, "X-MSMail-Priority") == 0 ||
	       strcasecmp(name, "Importance") == 0;
}

static bool header_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 76)
		return false;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == ':')
			return false;
	return true;
}

/*
 * A header value with folding (CRLF or LF followed by a space or tab)
 * undone; any other CR, LF or control character is refused, so a value can
 * never start a header of its own.  GMime folds (and encodes) it again.
 */
static char *unfold_value(struct compose *c, const char *s, const char *field)
{
	size_t len = strlen(s), n = 0;
	char *out = xmalloc(len + 1);

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '\r' && s[i + 1] == '\n' && (s[i + 2] == ' ' || s[i + 2] == '\t')) {
			i++;
			continue;
		}
		if (ch == '\n' && (s[i + 1] == ' ' || s[i + 1] == '\t'))
			continue;
		if (ch == '\r' || ch == '\n') {
			free(out);
			fail(c, field, "line break that is not folding (header injection)");
			return NULL;
		}
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			free(out);
			fail(c, field, "control character 0x%02x", ch);
			return NULL;
		}
		out[n++] = (char)ch;
	}
	out[n] = '\0';
	return out;
}

static int check_header_name(struct compose *c, const char *name, const char *field)
{
	if (!header_name_ok(name))
		return fail(c, field, "invalid header name");
	if (managed_header(name))
		return fail(c, field, "%s is set by the composer from its own field", name);
	if (c->priority_set && priority_header(name))
		return fail(c, field, "conflicts with priority");
	return 0;
}

static int add_custom_header(struct compose *c, GMimeObject *m, const char *name, const json_t *v,
			     const char *field)
{
	char *value, num[32];
	const char *s;

	if (json_is_integer(v)) {
		snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		s = num;
	} else if (header_string(c, v, field, &s) < 0) {
		return -1;
	}
	value = unfold_value(c, s, field);
	if (!value)
		return -1;
	g_mime_object_append_header(m, name, value, "UTF-8");
	free(value);
	return 0;
}

/* headers: {name: value or [values]} or [{key, value}]. */
static int add_custom_headers(struct compose *c, const json_t *v, GMimeObject *m)
{
	char f[sizeof c->err->field];

	if (json_is_object(v)) {
		json_t *o = (json_t *)v;

		for (void *it = json_object_iter(o); it; it = json_object_iter_next(o, it)) {
			const char *name = json_object_iter_key(it);
			json_t *val = json_object_iter_value(it);

			fieldf(f, sizeof f, "headers.%s", name);
			if (json_is_null(val))
				continue;
			if (check_header_name(c, name, f) < 0)
				return -1;
			if (!json_is_array(val)) {
				if (add_custom_header(c, m, name, val, f) < 0)
					return -1;
				continue;
			}
			for (size_t i = 0; i < json_array_size(val); i++) {
				fieldf(f, sizeof f, "headers.%s[%zu]", name, i);
				if (add_custom_header(c, m, name, json_array_get(val, i), f) < 0)
					return -1;
			}
		}
		return 0;
	}
	if (!json_is_array(v))
		return fail(c, "headers", "must be an object or a list of {key, value}");
	for (size_t i = 0; i < json_array_size(v); i++) {
		const json_t *e = json_array_get(v, i);
		const json_t *key = json_is_object(e) ? member(e, "key") : NULL;
		const json_t *val = json_is_object(e) ? member(e, "value") : NULL;
		const char *name;

		fieldf(f, sizeof f, "headers[%zu]", i);
		if (!key || !val)
			return fail(c, f, "must be a {key, value} object");
		fieldf(f, sizeof f, "headers[%zu].key", i);
		if (header_string(c, key, f, &name) < 0 || check_header_name(c, name, f) < 0)
			return -1;
		fieldf(f, sizeof f, "headers[%zu].value", i);
		if (add_custom_header(c, m, name, val, f) < 0)
			return -1;
	}
	return 0;
}

static int set_priority(struct compose *c, const json_t *v, GMimeObject *m)
{
	const char *s;

	if (header_string(c, v, "priority", &s) < 0)
		return -1;
	if (strcasecmp(s, "high") == 0) {
		g_mime_object_append_header(m, "X-Priority", "1 (Highest)", NULL);
		g_mime_object_append_header(m, "X-MSMail-Priority", "High", NULL);
		g_mime_object_append_header(m, "Importance", "High", NULL);
	} else if (strcasecmp(s, "low") == 0) {
		g_mime_object_append_header(m, "X-Priority", "5 (Lowest)", NULL);
		g_mime_object_append_header(m, "X-MSMail-Priority", "Low", NULL);
		g_mime_object_append_header(m, "Importance", "Low", NULL);
	} else if (strcasecmp(s, "normal") == 0) {
		return 0;
	} else {
		return fail(c, "priority", "must be \"high\", \"normal\" or \"low\"");
	}
	c->priority_set = true;
	return 0;
}

/* Subject: line breaks become a space, as Nodemailer does; GMime encodes. */
static int set_subject(struct compose *c, const json_t *v, GMimeMessage *m)
{
	const char *s;

	if (header_string(c, v, "subject", &s) < 0)
		return -1;
	char *copy = xmalloc(strlen(s) + 1), *o = copy;
	for (; *s; s++) {
		if (*s == '\r' || *s == '\n') {
			if (o == copy || o[-1] != ' ')
				*o++ = ' ';
			s += strspn(s + 1, "\r\n");
			continue;
		}
		*o++ = *s;
	}
	*o = '\0';
	g_mime_message_set_subject(m, copy, "UTF-8");
	free(copy);
	return 0;
}

/* ---- content ---- */

static GByteArray *byte_array_take(guint8 *buf, size_t len)
{
	return g_byte_array_new_take(buf, len);
}

/* Text with every line break (CRLF, CR or LF) as LF; GMime writes CRLF. */
static GByteArray *text_lf(const char *s, size_t len)
{
	guint8 *buf = g_malloc(len + 1);
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r') {
			buf[n++] = '\n';
			if (i + 1 < len && s[i + 1] == '\n')
				i++;
		} else {
			buf[n++] = (guint8)s[i];
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

/*
 * A leaf part over `data` (taken).  `text`: line breaks are text line
 * breaks (normalized to LF already, written as CRLF); otherwise the bytes
 * are binary and must come back exactly, so anything holding a CR or LF
 * goes out as base64 (7bit and quoted-printable would turn LF into CRLF).
 */
static GMimePart *leaf_part(GMimeContentType *ct, GByteArray *data, bool text)
{
	GMimePart *p = g_mime_part_new();
	GMimeStream *s;
	GMimeDataWrapper *w;
	GMimeContentEncoding enc;

	g_mime_object_set_content_type(GMIME_OBJECT(p), ct);
	s = g_mime_stream_mem_new_with_byte_array(data);
	w = g_mime_data_wrapper_new_with_stream(s, GMIME_CONTENT_ENCODING_DEFAULT);
	g_mime_part_set_content(p, w);
	enc = g_mime_part_get_best_content_encoding(p, GMIME_ENCODING_CONSTRAINT_7BIT);
	if (enc == GMIME_CONTENT_ENCODING_BASE64 && text) {
		/* Canonical CRLF inside base64 (setting the array frees the LF copy). */
		g_mime_stream_mem_set_byte_array(GMIME_STREAM_MEM(s), text_crlf(data));
		g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(s), TRUE);
	} else if (!text && enc != GMIME_CONTENT_ENCODING_BASE64 &&
		   (memchr(data->data, '\n', data->len) || memchr(data->data, '\r', data->len))) {
		enc = GMIME_CONTENT_ENCODING_BASE64;
	}
	if (enc == GMIME_CONTENT_ENCODING_DEFAULT)
		enc = GMIME_CONTENT_ENCODING_7BIT;
	g_mime_part_set_content_encoding(p, enc);
	g_object_unref(w);
	g_object_unref(s);
	return p;
}

static GMimePart *text_part(const char *subtype, const json_t *v)
{
	GMimeContentType *ct = g_mime_content_type_new("text", subtype);
	GMimePart *p;

	g_mime_content_type_set_parameter(ct, "charset", "utf-8");
	p = leaf_part(ct, text_lf(json_string_value(v), json_string_length(v)), true);
	g_object_unref(ct);
	return p;
}

/* text or html: a string; "" counts as absent, as in Nodemailer. */
static int body_text(struct compose *c, const json_t *msg, const char *key, const char *subtype,
		     GMimePart **out)
{
	const json_t *v = member(msg, key);

	*out = NULL;
	if (!v)
		return 0;
	if (json_is_object(v) && refuse_file_access(c, v, key) < 0)
		return -1;
	if (!json_is_string(v))
		return fail(c, key, "must be a string");
	if (json_string_length(v) == 0)
		return 0;
	c->content_bytes += json_string_length(v);
	*out = text_part(subtype, v);
	return 0;
}

/* A content type given as a string; multipart types are not for leaves. */
static GMimeContentType *parse_content_type(struct compose *c, const json_t *v, const char *field)
{
	const char *s;
	GMimeContentType *ct;

	if (header_string(c, v, field, &s) < 0)
		return NULL;
	if (has_line_break(s)) {
		fail(c, field, "must not contain line breaks");
		return NULL;
	}
	c->warnings = 0;
	ct = g_mime_content_type_parse(c->popts, s);
	if (c->warnings) {
		g_object_unref(ct);
		fail(c, field, "invalid content type \"%.100s\"", s);
		return NULL;
	}
	if (g_mime_content_type_is_type(ct, "multipart", "*")) {
		g_object_unref(ct);
		fail(c, field, "multipart types cannot be given for a part");
		return NULL;
	}
	return ct;
}

/*
 * The content of an attachment or alternative, with its type: a string, as
 * UTF-8 text or as base64 or hex per `encoding`.
 */
static GMimePart *content_part(struct compose *c, const json_t *o, const char *base,
			       const char *default_type)
{
	char f[sizeof c->err->field];
	const json_t *content = member(o, "content"), *jenc = member(o, "encoding");
	const json_t *jtype = member(o, "contentType");
	GMimeContentType *ct;
	GByteArray *data = NULL;
	bool text = true;

	fieldf(f, sizeof f, "%s.content", base);
	if (!content) {
		fail(c, f, "missing");
		return NULL;
	}
	if (!json_is_string(content)) {
		fail(c, f, "must be a string");
		return NULL;
	}
	const char *s = json_string_value(content);
	size_t len = json_string_length(content);
	if (len > G_MAXUINT / 2) {
		fail(c, f, "too large");
		return NULL;
	}
	c->content_bytes += len;
	if (jtype) {
		fieldf(f, sizeof f, "%s.contentType", base);
		ct = parse_content_type(c, jtype, f);
		if (!ct)
			return NULL;
	} else {
		ct = g_mime_content_type_parse(c->popts, default_type);
	}
	if (jenc) {
		const char *enc;

		fieldf(f, sizeof f, "%s.encoding", base);
		if (header_string(c, jenc, f, &enc) < 0)
			goto bad;
		bool b64 = strcasecmp(enc, "base64") == 0;
		if (!b64 && strcasecmp(enc, "hex") != 0) {
			if (strcasecmp(enc, "utf-8") != 0 && strcasecmp(enc, "utf8") != 0) {
				fail(c, f, "must be \"base64\", \"hex\" or \"utf-8\"");
				goto bad;
			}
		} else {
			text = false;
			data = b64 ? base64_decode(s, len) : hex_decode(s, len);
			if (!data) {
				fieldf(f, sizeof f, "%s.content", base);
				fail(c, f, "invalid %s", b64 ? "base64" : "hex");
				goto bad;
			}
		}
	}
	/* Text given as a string is UTF-8; binary text types keep their bytes. */
	bool is_text = g_mime_content_type_is_type(ct, "text", "*");
	if (text && is_text && !g_mime_content_type_get_parameter(ct, "charset"))
		g_mime_content_type_set_parameter(ct, "charset", "utf-8");
	if (text)
		data = is_text ? text_lf(s, len) : byte_array_take(g_memdup2(s, len), len);
	GMimePart *p = leaf_part(ct, data, text && is_text);
	g_object_unref(ct);
	return p;
bad:
	g_object_unref(ct);
	return NULL;
}

static int check_cid(struct compose *c, const json_t *v, const char *field, char **cid)
{
	const char *s;
	char *bracketed;
	int n;

	if (header_string(c, v, field, &s) < 0)
		return -1;
	n = make_id(c, s, s + strlen(s), field, &bracketed);
	if (n < 0)
		return -1;
	*cid = xstrndup(bracketed + 1, (size_t)n);
	free(bracketed);
	return 0;
}

static bool filename_ok(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* One attachment part; *has_cid tells whether it may go in multipart/related. */
static GMimePart *attachment(struct compose *c, const json_t *a, size_t i, bool *has_cid)
{
	char base[sizeof c->err->field], f[sizeof c->err->field];
	const json_t *jname, *jcid, *jdisp;
	const char *filename = NULL, *disp = NULL;
	char *cid = NULL;
	GMimePart *p;

	fieldf(base, sizeof base, "attachments[%zu]", i);
	if (!json_is_object(a)) {
		fail(c, base, "must be an object");
		return NULL;
	}
	if (refuse_file_access(c, a, base) < 0)
		return NULL;
	jname = member(a, "filename");
	jcid = member(a, "cid");
	jdisp = member(a, "contentDisposition");
	if (jname && !json_is_false(jname)) {
		fieldf(f, sizeof f, "%s.filename", base);
		if (header_string(c, jname, f, &filename) < 0)
			return NULL;
		if (!filename_ok(filename)) {
			fail(c, f, "must not contain control characters");
			return NULL;
		}
		if (!*filename)
			filename = NULL;
	}
	if (jdisp) {
		fieldf(f, sizeof f, "%s.contentDisposition", base);
		if (header_string(c, jdisp, f, &disp) < 0)
			return NULL;
		if (strcasecmp(disp, "attachment") != 0 && strcasecmp(disp, "inline") != 0) {
			fail(c, f, "must be \"attachment\" or \"inline\"");
			return NULL;
		}
	}
	if (jcid) {
		fieldf(f, sizeof f, "%s.cid", base);
		if (check_cid(c, jcid, f, &cid) < 0)
			return NULL;
	}
	p = content_part(c, a, base, "application/octet-stream");
	if (!p) {
		free(cid);
		return NULL;
	}
	if (!disp)
		disp = cid ? "inline" : "attachment";
	g_mime_object_set_disposition(GMIME_OBJECT(p), strcasecmp(disp, "inline") == 0
							   ? GMIME_DISPOSITION_INLINE
							   : GMIME_DISPOSITION_ATTACHMENT);
	if (filename)
		g_mime_part_set_filename(p, filename);
	if (cid)
		g_mime_object_set_content_id(GMIME_OBJECT(p), cid);
	*has_cid = cid != NULL;
	free(cid);
	return p;
}

static GMimeObject *multipart(const char *subtype, struct objvec *parts)
{
	GMimeMultipart *mp = g_mime_multipart_new_with_subtype(subtype);

	for (size_t i = 0; i < parts->n; i++)
		g_mime_multipart_add(mp, parts->v[i]);
	objvec_clear(parts);
	return GMIME_OBJECT(mp);
}

/*
 * The body, as Nodemailer builds it:
 *   mixed [ alternative [ text, related [ html, cid parts ], alternatives ], attachments ]
 * where each multipart appears only when it has more than one child (mixed:
 * when there are attachments; related: when there are cid parts and html).
 * Nothing at all is an empty text/plain part.
 */
static GMimeObject *make_body(struct compose *c, const json_t *msg)
{
	struct objvec alts = {0}, related = {0}, attached = {0};
	const json_t *jatt = member(msg, "attachments"), *jalt = member(msg, "alternatives");
	GMimePart *text = NULL, *html = NULL;
	GMimeObject *root = NULL;
	char f[sizeof c->err->field];

	if (body_text(c, msg, "text", "plain", &text) < 0 ||
	    body_text(c, msg, "html", "html", &html) < 0)
		goto out;
	if (jatt && !json_is_array(jatt)) {
		fail(c, "attachments", "must be a list");
		goto out;
	}
	if (jalt && !json_is_array(jalt)) {
		fail(c, "alternatives", "must be a list");
		goto out;
	}
	for (size_t i = 0; jatt && i < json_array_size(jatt); i++) {
		bool has_cid = false;
		GMimePart *p = attachment(c, json_array_get(jatt, i), i, &has_cid);

		if (!p)
			goto out;
		objvec_push(has_cid && html ? &related : &attached, GMIME_OBJECT(p));
	}

	if (text)
		objvec_push(&alts, GMIME_OBJECT(g_steal_pointer(&text)));
	if (html) {
		GMimeObject *h = GMIME_OBJECT(g_steal_pointer(&html));

		if (related.n) {
			struct objvec rel = {0};

			objvec_push(&rel, h);
			for (size_t i = 0; i < related.n; i++)
				objvec_push(&rel, related.v[i]);
			related.n = 0;
			h = multipart("related", &rel);
			g_mime_object_set_content_type_parameter(h, "type", "text/html");
		}
		objvec_push(&alts, h);
	}
	for (size_t i = 0; jalt && i < json_array_size(jalt); i++) {
		const json_t *a = json_array_get(jalt, i);
		GMimePart *p;

		fieldf(f, sizeof f, "alternatives[%zu]", i);
		if (!json_is_object(a)) {
			fail(c, f, "must be an object");
			goto out;
		}
		if (refuse_file_access(c, a, f) < 0)
			goto out;
		p = content_part(c, a, f, "text/plain");
		if (!p)
			goto out;
		objvec_push(&alts, GMIME_OBJECT(p));
	}

	if (alts.n > 1) {
		root = multipart("alternative", &alts);
	} else if (alts.n == 1) {
		root = alts.v[0];
		alts.n = 0;
	}
	if (attached.n) {
		struct objvec mixed = {0};

		if (root)
			objvec_push(&mixed, root);
		for (size_t i = 0; i < attached.n; i++)
			objvec_push(&mixed, attached.v[i]);
		attached.n = 0;
		root = multipart("mixed", &mixed);
	}
	if (!root) {
		GMimeContentType *ct = g_mime_content_type_new("text", "plain");

		g_mime_content_type_set_parameter(ct, "charset", "utf-8");
		root = GMIME_OBJECT(leaf_part(ct, g_byte_array_new(), true));
		g_object_unref(ct);
	}
out:
	if (text)
		g_object_unref(text);
	if (html)
		g_object_unref(html);
	objvec_clear(&alts);
	objvec_clear(&related);
	objvec_clear(&attached);
	return root;
}

/* ---- output ---- */

/* Every line ends in CRLF and holds at most 998 octets; a final CRLF is added if missing. */
static int check_lines(struct compose *c, GByteArray *a)
{
	size_t start = 0;

	for (size_t i = 0; i < a->len; i++) {
		if (a->data[i] == '\n') {
			if (i == 0 || a->data[i - 1] != '\r')
				return fail(c, "", "internal error: bare LF in the message");
			if (i - 1 - start > MAX_LINE)
				return fail(c, "", "a line of the composed message is too long");
			start = i + 1;
		} else if (a->data[i] == '\r' && (i + 1 == a->len || a->data[i + 1] != '\n')) {
			return fail(c, "", "internal error: bare CR in the message");
		}
	}
	if (a->len - start > MAX_LINE)
		return fail(c, "", "a line of the composed message is too long");
	if (start != a->len)
		g_byte_array_append(a, (const guint8 *)"\r\n", 2);
	return 0;
}

static int write_message(struct compose *c, GMimeMessage *m, struct compose_result *out)
{
	GMimeFormatOptions *fo = g_mime_format_options_new();
	/* Sized for the bulk case, base64 in and out (line breaks add 1/38). */
	size_t hint = c->content_bytes + c->content_bytes / 32 + 65536;
	GByteArray *a = g_byte_array_sized_new(hint > G_MAXUINT ? G_MAXUINT : (guint)hint);
	GMimeStream *s = g_mime_stream_mem_new_with_byte_array(a);
	int rc = 0;

	g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
	g_mime_format_options_set_param_encoding_method(fo, GMIME_PARAM_ENCODING_METHOD_RFC2231);
	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(s), FALSE);
	if (g_mime_object_write_to_stream(GMIME_OBJECT(m), fo, s) < 0)
		rc = fail(c, "", "could not write the message");
	g_object_unref(s);
	g_mime_format_options_free(fo);
	if (rc == 0)
		rc = check_lines(c, a);
	if (rc < 0) {
		g_byte_array_unref(a);
		return -1;
	}
	out->len = a->len;
	g_byte_array_append(a, (const guint8 *)"", 1); /* NUL-terminated for convenience */
	out->message = (char *)g_byte_array_free(a, FALSE);
	return 0;
}

/* ---- the whole message ---- */

static int compose(struct compose *c, const json_t *msg, const char *hostname,
		   InternetAddressList **lists, struct compose_result *out)
{
	GMimeObject *mo, *body;
	const json_t *v;
	char *id;
	int rc = -1;

	for (int i = 0; i < A_COUNT; i++) {
		v = member(msg, address_fields[i].key);
		if (v && add_addresses(c, v, address_fields[i].key, lists[i]) < 0)
			return -1;
	}
	if (make_envelope(c, msg, lists, out) < 0)
		return -1;

	GMimeMessage *m = g_mime_message_new(FALSE);
	mo = GMIME_OBJECT(m);
	for (int i = 0; i < A_COUNT; i++) {
		if (i == A_BCC || internet_address_list_length(lists[i]) == 0)
			continue;
		GMimeAddressType type = address_fields[i].type;

		internet_address_list_append(g_mime_message_get_addresses(m, type), lists[i]);
	}
	if ((v = member(msg, "subject")) && set_subject(c, v, m) < 0)
		goto out;
	if (set_date(c, member(msg, "date"), m) < 0)
		goto out;
	if ((v = member(msg, "messageId"))) {
		const char *s;

		if (header_string(c, v, "messageId", &s) < 0 ||
		    make_id(c, s, s + strlen(s), "messageId", &out->message_id) < 0)
			goto out;
	} else {
		char *uuid = g_uuid_string_random();

		out->message_id = xasprintf("<%s@%s>", uuid,
					    hostname && *hostname ? hostname : "localhost");
		g_free(uuid);
	}
	g_mime_object_set_header(mo, "Message-ID", out->message_id, NULL);
	if ((v = member(msg, "inReplyTo"))) {
		const char *s;

		if (header_string(c, v, "inReplyTo", &s) < 0 ||
		    make_id(c, s, s + strlen(s), "inReplyTo", &id) < 0)
			goto out;
		g_mime_object_set_header(mo, "In-Reply-To", id, NULL);
		free(id);
	}
	if ((v = member(msg, "references")) && set_references(c, v, mo) < 0)
		goto out;
	if ((v = member(msg, "priority")) && set_priority(c, v, mo) < 0)
		goto out;
	if ((v = member(msg, "headers")) && add_custom_headers(c, v, mo) < 0)
		goto out;
	g_mime_object_set_header(mo, "MIME-Version", "1.0", NULL);

	body = make_body(c, msg);
	if (!body)
		goto out;
	g_mime_message_set_mime_part(m, body);
	g_object_unref(body);
	rc = write_message(c, m, out);
out:
	g_object_unref(m);
	return rc;
}

int compose_message(const json_t *msg, const char *hostname, struct compose_result *out,
		    struct compose_error *err)
{
	struct compose_error unused;
	struct compose c = {.err = err ? err : &unused};
	InternetAddressList *lists[A_COUNT];
	int rc;

	memset(out, 0, sizeof *out);
	memset(c.err, 0, sizeof *c.err);
	mime_init();
	if (!json_is_object(msg))
		return fail(&c, "", "the message must be a JSON object");

	c.popts = g_mime_parser_options_new();
	g_mime_parser_options_set_address_compliance_mode(c.popts, GMIME_RFC_COMPLIANCE_STRICT);
	g_mime_parser_options_set_parameter_compliance_mode(c.popts, GMIME_RFC_COMPLIANCE_STRICT);
	g_mime_parser_options_set_rfc2047_compliance_mode(c.popts, GMIME_RFC_COMPLIANCE_STRICT);
	g_mime_parser_options_set_allow_addresses_without_domain(c.popts, FALSE);
	g_mime_parser_options_set_warning_callback(c.popts, parser_warning, &c);
	for (int i = 0; i < A_COUNT; i++)
		lists[i] = internet_address_list_new();

	rc = compose(&c, msg, hostname, lists, out);

	for (int i = 0; i < A_COUNT; i++)
		g_object_unref(lists[i]);
	g_mime_parser_options_free(c.popts);
	if (rc < 0)
		compose_result_clear(out);
	return rc;
}

int compose_envelope_addresses(const char *const *values, size_t nvalues, const char *field,
			       char ***addrs, size_t *naddrs, struct compose_error *err)
{
	struct compose_error unused;
	struct compose c = {.err = err ? err : &unused};
	struct compose_result acc = {0};
	size_t cap = 0;
	int rc = 0;

	memset(c.err, 0, sizeof *c.err);
	mime_init();
	c.popts = g_mime_parser_options_new();
	g_mime_parser_options_set_address_compliance_mode(c.popts, GMIME_RFC_COMPLIANCE_LOOSE);
	g_mime_parser_options_set_allow_addresses_without_domain(c.popts, FALSE);
	g_mime_parser_options_set_warning_callback(c.popts, parser_warning, &c);
	for (size_t i = 0; i < nvalues && rc == 0; i++) {
		if (blank_list(values[i]))
			continue;
		InternetAddressList *l = parse_list(&c, values[i], field);
		if (l == NULL) {
			rc = -1;
			break;
		}
		add_rcpts(&acc, &cap, l);
		g_object_unref(l);
	}
	g_mime_parser_options_free(c.popts);
	if (rc != 0) {
		for (size_t i = 0; i < acc.nrcpts; i++)
			free(acc.rcpts[i]);
		free(acc.rcpts);
		return -1;
	}
	*addrs = acc.rcpts;
	*naddrs = acc.nrcpts;
	return 0;
}

void compose_result_clear(struct compose_result *r)
{
	g_free(r->message); /* GLib memory (the output stream's buffer, kept) */
	free(r->from);
	for (size_t i = 0; i < r->nrcpts; i++)
		free(r->rcpts[i]);
	free(r->rcpts);
	free(r->message_id);
	memset(r, 0, sizeof *r);
}
