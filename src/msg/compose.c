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

#include "core/utf8.h"
#include "core/xmalloc.h"
#include "msg/header.h"
#include "msg/mime.h"

/* RFC 5322: a line is at most 998 octets before its CRLF. */
#define MAX_LINE 998
/* Longest message id (or cid) accepted, brackets excluded. */
#define MAX_ID 250

/* The state of one compose_message() call. */
struct compose {
	struct compose_error *err;
	const json_t *msg; /* as given (the fields are a copy with header stand-ins) */
	GMimeParserOptions *popts;
	unsigned warnings;    /* parser warnings since the last reset */
	char warn_item[100];  /* the text the first of them was about */
	size_t content_bytes; /* body and attachment input, to size the output */
	bool priority_set;
	const char *text_cte; /* mail.encoding for text parts: base64 or quoted-printable */
	char text_encoding;   /* textEncoding: 'Q' or 'B' for text that needs encoding */
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

/*
 * Addresses without angle brackets, as Nodemailer's addressparser reads
 * them: in each comma-separated entry the last word that looks like
 * user@domain is the address and the other words are the name
 * ("Name user@example.com").  NULL when an entry has no such word, or
 * holds what only the strict grammar may read (<, >, quotes, groups).
 */
static InternetAddressList *parse_bare_list(const char *s)
{
	if (strpbrk(s, "<>\"():;\\"))
		return NULL;
	InternetAddressList *l = internet_address_list_new();
	char **entries = g_strsplit(s, ",", -1);
	bool ok = true;

	for (char **entry = entries; ok && *entry; entry++) {
		char **words = g_strsplit_set(*entry, " \t\r\n", -1);
		GString *name = g_string_new(NULL);
		const char *addr = NULL;
		int at = -1;

		for (int i = (int)g_strv_length(words) - 1; i >= 0 && at < 0; i--) {
			const char *w = words[i], *sign = strchr(w, '@');
			if (sign && sign != w && sign[1] && !strchr(sign + 1, '@'))
				at = i;
		}
		for (int i = 0; words[i]; i++) {
			if (i == at || !*words[i])
				continue;
			if (name->len)
				g_string_append_c(name, ' ');
			g_string_append(name, words[i]);
		}
		if (at >= 0) {
			addr = words[at];
			InternetAddress *ia = internet_address_mailbox_new(
			    name->len ? name->str : NULL, addr);
			internet_address_list_add(l, ia);
			g_object_unref(ia);
		} else if (name->len) {
			ok = false;
		}
		g_string_free(name, TRUE);
		g_strfreev(words);
	}
	g_strfreev(entries);
	if (!ok || internet_address_list_length(l) == 0) {
		g_object_unref(l);
		return NULL;
	}
	return l;
}

/*
 * What GMime's address parser must never see: control characters (a
 * header value has no line breaks left once unfolded) and unbalanced angle
 * brackets outside quoted strings.  Besides being invalid, both make
 * GMime 3.2 leak on its error path.
 */
static bool plausible_list(const char *s)
{
	bool quoted = false;
	int depth = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return false;
		if (quoted) {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '"')
				quoted = false;
		} else if (*p == '"') {
			quoted = true;
		} else if (*p == '<') {
			if (depth++)
				return false;
		} else if (*p == '>') {
			if (!depth--)
				return false;
		}
	}
	return !quoted && depth == 0;
}

/* Parses a string holding an address list; NULL when it is not one. */
static InternetAddressList *parse_list(struct compose *c, const char *s, const char *field)
{
	if (!plausible_list(s)) {
		fail(c, field, "invalid address \"%.100s\"", s);
		return NULL;
	}
	c->warnings = 0;
	InternetAddressList *l = internet_address_list_parse(c->popts, s);

	if (!l || c->warnings || internet_address_list_length(l) == 0) {
		if (l)
			g_object_unref(l);
		l = parse_bare_list(s);
	}
	if (!l) {
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
		/* Nodemailer's order: From, else Sender, else Reply-To. */
		const char *s = first_mailbox(lists[A_FROM]);

		if (!s)
			s = first_mailbox(lists[A_SENDER]);
		if (!s)
			s = first_mailbox(lists[A_REPLY_TO]);
		out->from = xstrdup(s ? s : "");
	}

	static const char *const env_keys[] = {"to", "cc", "bcc"};
	bool env_rcpts = false;
	for (size_t i = 0; env && i < 3; i++) {
		const json_t *v = member(env, env_keys[i]);
		char f[sizeof c->err->field];

		if (!v)
			continue;
		env_rcpts = true;
		fieldf(f, sizeof f, "envelope.%s", env_keys[i]);
		InternetAddressList *l = internet_address_list_new();
		if (add_addresses(c, v, f, l) < 0) {
			g_object_unref(l);
			return -1;
		}
		add_rcpts(out, &cap, l);
		g_object_unref(l);
	}
	if (env_rcpts) {
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

/* "date": a number (ms since the epoch), ISO 8601 (strict), then RFC 5322
 * (GMime's lenient parser); else now. */
static int set_date(struct compose *c, const json_t *v, GMimeMessage *m)
{
	GDateTime *dt;

	if (v && json_is_number(v)) {
		/* JavaScript's Date.now(): milliseconds since the epoch. */
		double ms = json_number_value(v);

		if (ms < 0 || ms > 253402300799000.0)
			return fail(c, "date", "out of range");
		dt = g_date_time_new_from_unix_utc((gint64)(ms / 1000));
	} else if (v) {
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

/*
 * Header fields the composer writes from the message's own fields.  A
 * custom header of one of these names stands for its field when the field
 * is absent, and is dropped when it is present: Nodemailer adds custom
 * headers first and its fields override them.
 */
static const struct {
	const char *header, *field;
} field_headers[] = {
    {"From", "from"},
    {"Sender", "sender"},
    {"To", "to"},
    {"Cc", "cc"},
    {"Bcc", "bcc"},
    {"Reply-To", "replyTo"},
    {"In-Reply-To", "inReplyTo"},
    {"References", "references"},
    {"Subject", "subject"},
    {"Message-ID", "messageId"},
    {"Date", "date"},
};

static const char *field_of_header(const char *name)
{
	for (size_t i = 0; i < sizeof field_headers / sizeof field_headers[0]; i++)
		if (strcasecmp(name, field_headers[i].header) == 0)
			return field_headers[i].field;
	return NULL;
}

/* The fields that make the MIME structure: never from custom headers at the top. */
static bool structure_header(const char *name)
{
	static const char *const names[] = {
	    "MIME-Version",        "Content-Type", "Content-Transfer-Encoding",
	    "Content-Disposition", "Content-ID",
	};

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcasecmp(name, names[i]) == 0)
			return true;
	return false;
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
	if (structure_header(name))
		return fail(c, field, "%s is set by the composer from the message's parts", name);
	if (c->priority_set && priority_header(name))
		return fail(c, field, "conflicts with priority");
	return 0;
}

/*
 * A header value as given: a string, a number or a boolean, or {value,
 * prepared}.  *s is NULL for an empty value, which adds no header.
 */
static int custom_value(struct compose *c, const json_t *v, const char *field, char *num,
			size_t numsize, const char **s, bool *prepared)
{
	*s = NULL;
	*prepared = false;
	if (json_is_object(v)) {
		*prepared = json_is_true(member(v, "prepared"));
		v = member(v, "value");
		if (!v)
			return 0;
	}
	if (json_is_integer(v)) {
		snprintf(num, numsize, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		*s = num;
	} else if (json_is_real(v)) {
		snprintf(num, numsize, "%.17g", json_real_value(v));
		*s = num;
	} else if (json_is_boolean(v)) {
		*s = json_is_true(v) ? "true" : "false";
	} else if (header_string(c, v, field, s) < 0) {
		return -1;
	}
	if ((*s)[strspn(*s, " \t\r\n")] == '\0')
		*s = NULL;
	return 0;
}

/*
 * One custom header.  A prepared value ({prepared: true, value}) goes out
 * as it is, folding included, as in Nodemailer; any other is encoded (RFC
 * 2047) and folded by GMime.  Either way a line break that is not folding
 * is refused: a value can never start a header of its own.
 */
static int add_custom_header(struct compose *c, GMimeObject *m, const char *name, const json_t *v,
			     const char *field)
{
	char *value, num[64];
	const char *s;
	bool prepared;

	if (custom_value(c, v, field, num, sizeof num, &s, &prepared) < 0)
		return -1;
	if (!s)
		return 0;
	value = unfold_value(c, s, field);
	if (!value)
		return -1;
	if (!prepared) {
		g_mime_object_append_header(m, name, value, "UTF-8");
		free(value);
		return 0;
	}
	free(value);
	GString *raw = g_string_new(" ");
	for (const char *p = s; *p; p++)
		if (!(p[0] == '\r' && p[1] == '\n'))
			g_string_append_c(raw, *p == '\r' ? '\n' : *p);
	g_string_append_c(raw, '\n');
	GMimeHeaderList *hl = g_mime_object_get_header_list(m);
	g_mime_header_list_append(hl, name, "", NULL);
	g_mime_header_set_raw_value(
	    g_mime_header_list_get_header_at(hl, g_mime_header_list_get_count(hl) - 1), raw->str);
	g_string_free(raw, TRUE);
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
			if (json_is_null(val) || field_of_header(name))
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
		if (header_string(c, key, f, &name) < 0)
			return -1;
		if (field_of_header(name))
			continue;
		if (check_header_name(c, name, f) < 0)
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

/* Subject: each line break becomes a space, as Nodemailer does; GMime encodes. */
static int set_subject(struct compose *c, const json_t *v, GMimeMessage *m)
{
	const char *s;

	if (header_string(c, v, "subject", &s) < 0)
		return -1;
	char *copy = xmalloc(strlen(s) + 1), *o = copy;
	for (; *s; s++) {
		if (*s == '\r' || *s == '\n') {
			*o++ = ' ';
			s += s[0] == '\r' && s[1] == '\n';
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
		fieldf(f, sizeof f, "%s.content", base);
		return fail(c, f, "too large");
	}
	c->content_bytes += len;
	if (jenc) {
		const char *name;
		size_t n = 0;

		fieldf(f, sizeof f, "%s.encoding", base);
		if (header_string(c, jenc, f, &name) < 0)
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
		fieldf(f, sizeof f, "%s.encoding", base);
		return fail(c, f,
			    "unknown encoding (utf-8, ascii, base64, base64url, hex, latin1, "
			    "binary or utf16le)");
	}
	if (!e->data) {
		fieldf(f, sizeof f, "%s.content", base);
		return fail(c, f, "invalid %s", enc);
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
		return fail(c, field, "a data: URI needs a comma before its data");
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
		return fail(c, field, "invalid base64 in the data: URI");
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
		return fail(c, base, "must be a string or an object with content, raw or path");
	const json_t *raw = member(v, "raw");
	if (raw) {
		fieldf(f, sizeof f, "%s.raw", base);
		if (!json_is_string(raw))
			return fail(c, f, "must be a string");
		c->content_bytes += json_string_length(raw);
		e->raw = text_lf((const guint8 *)json_string_value(raw), json_string_length(raw));
		return 0;
	}
	static const char *const refs[] = {"path", "href"};
	for (size_t i = 0; i < 2; i++) {
		const json_t *r = member(v, refs[i]);
		if (!r || json_is_false(r))
			continue;
		fieldf(f, sizeof f, "%s.%s", base, refs[i]);
		if (!json_is_string(r))
			return fail(c, f, "must be a string");
		if (g_ascii_strncasecmp(json_string_value(r), "data:", 5) != 0)
			return fail(c, f, "file and URL access is disabled");
		return data_uri(c, json_string_value(r), json_string_length(r), f, e, dtype);
	}
	const json_t *content = member(v, "content");
	if (!content) {
		e->string = true;
		e->data = g_byte_array_new();
		return 0;
	}
	if (!json_is_string(content)) {
		fieldf(f, sizeof f, "%s.content", base);
		return fail(c, f, "must be a string");
	}
	return decode_content(c, content, member(v, "encoding"), base, e);
}

/* A content type given as a string; multipart types are not for leaves. */
static GMimeContentType *parse_content_type(struct compose *c, const char *s, const char *field)
{
	GMimeContentType *ct;

	if (has_line_break(s)) {
		fail(c, field, "must not contain line breaks");
		return NULL;
	}
	c->warnings = 0;
	ct = g_mime_content_type_parse(c->popts, s);
	if (c->warnings || !strchr(s, '/')) {
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
	const json_t *v = json_is_object(o) ? member(o, key) : NULL;

	*out = NULL;
	if (!v || json_is_false(v))
		return 0;
	fieldf(f, sizeof f, "%s.%s", base, key);
	if (header_string(c, v, f, out) < 0)
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
		fieldf(f, sizeof f, "%s.filename", base);
		if (!filename_ok(filename))
			return fail(c, f, "must not contain control characters");
		e->filename = xstrdup(filename);
	}
	if (cid && attachment) { /* alternatives have no Content-ID or disposition */
		char *bracketed;
		int n;

		fieldf(f, sizeof f, "%s.cid", base);
		n = make_id(c, cid, cid + strlen(cid), f, &bracketed);
		if (n < 0)
			return -1;
		e->cid = xstrndup(bracketed + 1, (size_t)n);
		free(bracketed);
	}
	if (disp && attachment) {
		fieldf(f, sizeof f, "%s.contentDisposition", base);
		if (g_ascii_strcasecmp(disp, "attachment") != 0 &&
		    g_ascii_strcasecmp(disp, "inline") != 0)
			return fail(c, f, "must be \"attachment\" or \"inline\"");
		e->disposition = g_ascii_strdown(disp, -1);
	}
	if (cte)
		e->cte = g_ascii_strdown(cte, -1);
	e->headers = member(o, "headers");
	if (e->headers && !json_is_object(e->headers) && !json_is_array(e->headers)) {
		fieldf(f, sizeof f, "%s.headers", base);
		return fail(c, f, "must be an object or a list of {key, value}");
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

	fieldf(e->field, sizeof e->field, "attachments[%zu]", i);
	if (!json_is_object(a))
		return fail(c, e->field, "must be an object");
	if (element_content(c, a, e->field, e, &dtype) < 0 ||
	    element_options(c, e, a, e->field, true) < 0 ||
	    optional_string(c, a, "contentType", e->field, &type) < 0)
		goto bad;
	fieldf(f, sizeof f, "%s.contentType", e->field);
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
	const json_t *jname = member(a, "filename");
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
	const json_t *v = member(msg, key);
	char *dtype = NULL;

	if (!v || json_is_false(v) || (json_is_string(v) && json_string_length(v) == 0))
		return 0;
	struct element *e = elements_add(alts);
	fieldf(e->field, sizeof e->field, "%s", key);
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

	fieldf(e->field, sizeof e->field, "alternatives[%zu]", i);
	if (!json_is_object(a))
		return fail(c, e->field, "must be an object");
	rc = element_content(c, a, e->field, e, &dtype);
	if (rc == 0)
		rc = element_options(c, e, a, e->field, false);
	if (rc == 0)
		rc = optional_string(c, a, "contentType", e->field, &type);
	if (rc == 0) {
		fieldf(f, sizeof f, "%s.contentType", e->field);
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
	const json_t *v = member(msg, "icalEvent");
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
			return fail(c, "icalEvent.method", "must be a word such as REQUEST");
	struct element *alt = elements_add(alts);
	fieldf(alt->field, sizeof alt->field, "icalEvent");
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
	fieldf(att->field, sizeof att->field, "icalEvent");
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
		fieldf(f, sizeof f, "%s.raw", e->field);
		fail(c, f, "not a MIME part");
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
		return fail(c, field, "%s is set from the part's own fields", name);
	bool cte = !g_ascii_strcasecmp(name, "Content-Transfer-Encoding");
	bool disp = !g_ascii_strcasecmp(name, "Content-Disposition");
	bool cid = !g_ascii_strcasecmp(name, "Content-ID");
	if (!cte && !disp && !cid)
		return add_custom_header(c, o, name, v, field);
	const char *s;
	if (header_string(c, json_is_object(v) ? member(v, "value") : v, field, &s) < 0)
		return -1;
	char **slot = cte ? &e->cte : disp ? &e->disposition : &e->cid;
	if (*slot)
		return 0;
	if (cid) {
		char *bracketed;
		int n = make_id(c, s, s + strlen(s), field, &bracketed);

		if (n < 0)
			return -1;
		e->cid = xstrndup(bracketed + 1, (size_t)n);
		free(bracketed);
		return 0;
	}
	char *word = g_ascii_strdown(s, (gssize)strcspn(s, "; \t"));
	if (disp && strcmp(word, "attachment") != 0 && strcmp(word, "inline") != 0) {
		g_free(word);
		return fail(c, field, "must be \"attachment\" or \"inline\"");
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
			fieldf(f, sizeof f, "%s.headers.%s", e->field, name);
			if (json_is_null(val))
				continue;
			if (!header_name_ok(name))
				return fail(c, f, "invalid header name");
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

			fieldf(f, sizeof f, "%s.headers[%zu]", e->field, i);
			if (!json_is_object(h) || !member(h, "key") || !member(h, "value"))
				return fail(c, f, "must be a {key, value} object");
			if (header_string(c, member(h, "key"), f, &name) < 0)
				return -1;
			if (!header_name_ok(name))
				return fail(c, f, "invalid header name");
			if (part_header(c, o, e, name, member(h, "value"), f) < 0)
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
	const json_t *jatt = member(msg, "attachments"), *jalt = member(msg, "alternatives");
	struct elements ical = {0};
	int rc = -1;

	if (jatt && !json_is_array(jatt))
		return fail(c, "attachments", "must be a list");
	if (jalt && !json_is_array(jalt))
		return fail(c, "alternatives", "must be a list");
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
static GMimeObject *make_body(struct compose *c, const json_t *msg)
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
		fail(c, "", "could not build the message");
out:
	elements_clear(&t.alts);
	elements_clear(&t.attached);
	elements_clear(&t.related);
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

/*
 * The message's fields with custom headers standing in for absent ones
 * (headers: {"Subject": ...} works as subject does).  A new reference.
 */
static json_t *fields_with_headers(const json_t *msg)
{
	json_t *fields = json_copy((json_t *)msg);
	const json_t *h = member(msg, "headers");
	size_t n = json_is_array(h) ? json_array_size(h) : 0;
	const char *name;
	json_t *val;

	if (json_is_object(h)) {
		json_object_foreach ((json_t *)h, name, val) {
			const char *key = field_of_header(name);

			if (key && !member(fields, key) && !json_is_null(val))
				json_object_set(fields, key,
						json_is_object(val) ? member(val, "value") : val);
		}
	}
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(h, i);
		const json_t *k = json_is_object(e) ? member(e, "key") : NULL;
		const char *key = json_is_string(k) ? field_of_header(json_string_value(k)) : NULL;

		val = json_is_object(e) ? member(e, "value") : NULL;
		if (key && val && !member(fields, key))
			json_object_set(fields, key,
					json_is_object(val) ? member(val, "value") : val);
	}
	json_object_del(fields, "headers"); /* read from msg */
	return fields;
}

static int text_options(struct compose *c, const json_t *msg)
{
	const char *s;
	const json_t *v;

	if ((v = member(msg, "textEncoding"))) {
		if (header_string(c, v, "textEncoding", &s) < 0)
			return -1;
		char first = (char)g_ascii_toupper(*s);
		if (first != 'Q' && first != 'B')
			return fail(c, "textEncoding",
				    "must be \"quoted-printable\" or \"base64\"");
		c->text_encoding = first;
	}
	if ((v = member(msg, "encoding"))) {
		if (header_string(c, v, "encoding", &s) < 0)
			return -1;
		if (!g_ascii_strcasecmp(s, "base64"))
			c->text_cte = "base64";
		else if (!g_ascii_strcasecmp(s, "quoted-printable"))
			c->text_cte = "quoted-printable";
	}
	return 0;
}

/*
 * `raw`: the message is given whole and goes out as it is (line ends made
 * CRLF).  Its envelope: `envelope`, else the address fields, else (an
 * extension: Nodemailer would have none) the message's own headers, as for
 * /send-raw.
 */
static int compose_raw(struct compose *c, const json_t *msg, const json_t *raw,
		       InternetAddressList **lists, struct compose_result *out)
{
	bool fields = member(msg, "envelope") != NULL;

	if (!json_is_string(raw))
		return fail(c, "raw", "must be a string");
	if (memchr(json_string_value(raw), '\0', json_string_length(raw)))
		return fail(c, "raw", "contains a NUL byte");
	out->message = compose_crlf_lines(json_string_value(raw), json_string_length(raw),
					  &out->len);
	for (int i = 0; i < A_COUNT; i++)
		fields = fields || internet_address_list_length(lists[i]) > 0;

	struct header_list h = {0};
	size_t scan = 0, end = 0;
	header_block_end(out->message, out->len, true, &scan, &end);
	header_list_parse(&h, out->message, end);
	int mid = header_list_find(&h, "message-id");
	if (mid >= 0)
		out->message_id = xstrdup(h.items[mid].value);
	int rc = fields
		     ? make_envelope(c, msg, lists, out)
		     : compose_headers_envelope(&h, &out->from, &out->rcpts, &out->nrcpts, c->err);
	header_list_clear(&h);
	return rc;
}

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
	if ((v = member(msg, "raw")))
		return compose_raw(c, msg, v, lists, out);
	if (text_options(c, msg) < 0 || make_envelope(c, msg, lists, out) < 0)
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
		/* Nodemailer's: the envelope sender's domain, else the host name. */
		char *uuid = g_uuid_string_random();
		const char *at = strrchr(out->from, '@');
		const char *domain = at && at[1]             ? at + 1
				     : hostname && *hostname ? hostname
							     : "localhost";

		out->message_id = xasprintf("<%s@%s>", uuid, domain);
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
	if ((v = member(c->msg, "headers")) && add_custom_headers(c, v, mo) < 0)
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

	c.msg = msg;
	json_t *fields = fields_with_headers(msg);
	rc = compose(&c, fields, hostname, lists, out);
	json_decref(fields);

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

/* All values of header fields named `key` (lower case) in the block. */
static size_t header_values(const struct header_list *h, const char *key, const char **out,
			    size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < h->count && n < max; i++)
		if (strcmp(h->items[i].key, key) == 0)
			out[n++] = h->items[i].value;
	return n;
}

int compose_headers_envelope(const struct header_list *h, char **from, char ***rcpts,
			     size_t *nrcpts, struct compose_error *err)
{
	const char *values[64];
	char **senders = NULL;
	size_t nsenders = 0, n = header_values(h, "from", values, 1);

	*from = NULL;
	*rcpts = NULL;
	*nrcpts = 0;
	if (n == 0)
		n = header_values(h, "sender", values, 1);
	if (compose_envelope_addresses(values, n, "from", &senders, &nsenders, err) < 0)
		return -1;
	*from = xstrdup(nsenders ? senders[0] : "");
	for (size_t i = 0; i < nsenders; i++)
		free(senders[i]);
	free(senders);
	n = header_values(h, "to", values, 20);
	n += header_values(h, "cc", values + n, 20);
	n += header_values(h, "bcc", values + n, 20);
	return compose_envelope_addresses(values, n, "to", rcpts, nrcpts, err);
}

char *compose_crlf_lines(const char *s, size_t len, size_t *out_len)
{
	size_t extra = 0;

	for (size_t i = 0; i < len; i++)
		extra += (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) ||
			 (s[i] == '\r' && (i + 1 == len || s[i + 1] != '\n'));
	char *out = xmalloc(len + extra + 1);
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		bool bare_lf = s[i] == '\n' && (i == 0 || s[i - 1] != '\r');
		bool bare_cr = s[i] == '\r' && (i + 1 == len || s[i + 1] != '\n');

		if (bare_lf || bare_cr) {
			out[o++] = '\r';
			out[o++] = '\n';
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	*out_len = o;
	return out;
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
