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
#include "msg/compose_internal.h"
#include "msg/header.h"
#include "msg/mime.h"

/* RFC 5322: a line is at most 998 octets before its CRLF. */
#define MAX_LINE 998
/* Longest message id (or cid) accepted, brackets excluded. */
#define MAX_ID 250

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
void compose_fieldf(char *dst, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dst, size, fmt, ap);
	va_end(ap);
}

int compose_fail(struct compose *c, const char *field, const char *fmt, ...)
{
	va_list ap;

	compose_fieldf(c->err->field, sizeof c->err->field, "%s", field);
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
json_t *compose_member(const json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_null(v) ? NULL : v;
}

/* A string for a header: no NUL inside (json strings may hold one). */
int compose_header_string(struct compose *c, const json_t *v, const char *field, const char **out)
{
	*out = NULL; /* set on failure too, so that no caller reads garbage */
	if (!json_is_string(v))
		return compose_fail(c, field, "must be a string");
	if (strlen(json_string_value(v)) != json_string_length(v))
		return compose_fail(c, field, "must not contain a NUL character");
	*out = json_string_value(v);
	return 0;
}

bool compose_has_line_break(const char *s)
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
			return compose_fail(c, field, "invalid address \"%.100s\"", addr);
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
		compose_fail(c, field, "invalid address \"%.100s\"", s);
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
		compose_fail(c, field, "invalid address \"%.100s\"",
			     c->warnings ? c->warn_item : s);
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

	if (compose_header_string(c, v, field, &s) < 0)
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
	const json_t *jaddr = compose_member(o, "address"), *jname = compose_member(o, "name");
	const char *addr, *name = NULL;

	compose_fieldf(f, sizeof f, "%s.address", field);
	if (!jaddr)
		return compose_fail(c, f, "missing");
	if (compose_header_string(c, jaddr, f, &addr) < 0)
		return -1;
	InternetAddressList *l = blank_list(addr) ? NULL : parse_list(c, addr, f);
	if (!l)
		return blank_list(addr) ? compose_fail(c, f, "empty") : -1;
	InternetAddress *ia = internet_address_list_get_address(l, 0);
	if (internet_address_list_length(l) != 1 || !INTERNET_ADDRESS_IS_MAILBOX(ia)) {
		g_object_unref(l);
		return compose_fail(c, f, "must be a single address");
	}
	if (jname) {
		compose_fieldf(f, sizeof f, "%s.name", field);
		if (compose_header_string(c, jname, f, &name) < 0 ||
		    (compose_has_line_break(name) &&
		     compose_fail(c, f, "must not contain line breaks") < 0)) {
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
		return compose_fail(c, field,
				    "must be an address string, an {name, address} object "
				    "or a list of them");
	for (size_t i = 0; i < json_array_size(v); i++) {
		const json_t *e = json_array_get(v, i);

		compose_fieldf(f, sizeof f, "%s[%zu]", field, i);
		if (json_is_null(e))
			continue;
		if (json_is_string(e)) {
			if (add_address_string(c, e, f, into) < 0)
				return -1;
		} else if (json_is_object(e)) {
			if (add_address_object(c, e, f, into) < 0)
				return -1;
		} else {
			return compose_fail(
			    c, f, "must be an address string or an {name, address} object");
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
	const json_t *env = compose_member(msg, "envelope");
	const json_t *efrom = env ? compose_member(env, "from") : NULL;
	size_t cap = 0;

	if (env && !json_is_object(env))
		return compose_fail(c, "envelope", "must be an object");
	if (efrom) {
		const char *s;

		if (compose_header_string(c, efrom, "envelope.from", &s) < 0)
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
				return compose_fail(c, "envelope.from", "must be a single address");
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
		const json_t *v = compose_member(env, env_keys[i]);
		char f[sizeof c->err->field];

		if (!v)
			continue;
		env_rcpts = true;
		compose_fieldf(f, sizeof f, "envelope.%s", env_keys[i]);
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
			return compose_fail(c, "envelope.to", "no recipients");
		return 0;
	}
	add_rcpts(out, &cap, lists[A_TO]);
	add_rcpts(out, &cap, lists[A_CC]);
	add_rcpts(out, &cap, lists[A_BCC]);
	if (out->nrcpts == 0)
		return compose_fail(c, "to", "no recipients (to, cc and bcc are empty)");
	return 0;
}

/* ---- identifiers, dates, headers ---- */

/*
 * A message id as <id>: brackets added when missing, no white space or
 * control characters inside.  Returns the length of the id without
 * brackets, or -1.  `s` ends at `end`.
 */
int compose_make_id(struct compose *c, const char *s, const char *end, const char *field,
		    char **out)
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
		return compose_fail(c, field, "empty");
	if (end - s > MAX_ID)
		return compose_fail(c, field, "longer than %d characters", MAX_ID);
	for (const char *p = s; p < end; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch <= ' ' || ch >= 0x7f || ch == '<' || ch == '>')
			return compose_fail(c, field, "invalid identifier \"%.*s\"",
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
		if (compose_make_id(c, start, end, field, &id) < 0)
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
			compose_fieldf(f, sizeof f, "references[%zu]", i);
			rc = compose_header_string(c, json_array_get(v, i), f, &s);
			if (rc == 0)
				rc = add_references(c, s, f, refs);
		}
	} else if (json_is_string(v)) {
		rc = compose_header_string(c, v, "references", &s);
		if (rc == 0)
			rc = add_references(c, s, "references", refs);
	} else {
		rc = compose_fail(c, "references", "must be a string or a list of strings");
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
			return compose_fail(c, "date", "out of range");
		dt = g_date_time_new_from_unix_utc((gint64)(ms / 1000));
	} else if (v) {
		const char *s;

		if (compose_header_string(c, v, "date", &s) < 0)
			return -1;
		GTimeZone *utc = g_time_zone_new_utc();

		dt = g_date_time_new_from_iso8601(s, utc); /* no zone given: UTC */
		g_time_zone_unref(utc);
		if (!dt)
			dt = g_mime_utils_header_decode_date(s);
		if (!dt)
			return compose_fail(c, "date",
					    "not an RFC 5322 or ISO 8601 date: \"%.100s\"", s);
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

bool compose_header_name_ok(const char *name)
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
			compose_fail(c, field, "line break that is not folding (header injection)");
			return NULL;
		}
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			free(out);
			compose_fail(c, field, "control character 0x%02x", ch);
			return NULL;
		}
		out[n++] = (char)ch;
	}
	out[n] = '\0';
	return out;
}

static int check_header_name(struct compose *c, const char *name, const char *field)
{
	if (!compose_header_name_ok(name))
		return compose_fail(c, field, "invalid header name");
	if (structure_header(name))
		return compose_fail(c, field, "%s is set by the composer from the message's parts",
				    name);
	if (c->priority_set && priority_header(name))
		return compose_fail(c, field, "conflicts with priority");
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
		*prepared = json_is_true(compose_member(v, "prepared"));
		v = compose_member(v, "value");
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
	} else if (compose_header_string(c, v, field, s) < 0) {
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
int compose_add_custom_header(struct compose *c, GMimeObject *m, const char *name, const json_t *v,
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

			compose_fieldf(f, sizeof f, "headers.%s", name);
			if (json_is_null(val) || field_of_header(name))
				continue;
			if (check_header_name(c, name, f) < 0)
				return -1;
			if (!json_is_array(val)) {
				if (compose_add_custom_header(c, m, name, val, f) < 0)
					return -1;
				continue;
			}
			for (size_t i = 0; i < json_array_size(val); i++) {
				compose_fieldf(f, sizeof f, "headers.%s[%zu]", name, i);
				if (compose_add_custom_header(c, m, name, json_array_get(val, i),
							      f) < 0)
					return -1;
			}
		}
		return 0;
	}
	if (!json_is_array(v))
		return compose_fail(c, "headers", "must be an object or a list of {key, value}");
	for (size_t i = 0; i < json_array_size(v); i++) {
		const json_t *e = json_array_get(v, i);
		const json_t *key = json_is_object(e) ? compose_member(e, "key") : NULL;
		const json_t *val = json_is_object(e) ? compose_member(e, "value") : NULL;
		const char *name;

		compose_fieldf(f, sizeof f, "headers[%zu]", i);
		if (!key || !val)
			return compose_fail(c, f, "must be a {key, value} object");
		compose_fieldf(f, sizeof f, "headers[%zu].key", i);
		if (compose_header_string(c, key, f, &name) < 0)
			return -1;
		if (field_of_header(name))
			continue;
		if (check_header_name(c, name, f) < 0)
			return -1;
		compose_fieldf(f, sizeof f, "headers[%zu].value", i);
		if (compose_add_custom_header(c, m, name, val, f) < 0)
			return -1;
	}
	return 0;
}

static int set_priority(struct compose *c, const json_t *v, GMimeObject *m)
{
	const char *s;

	if (compose_header_string(c, v, "priority", &s) < 0)
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
		return compose_fail(c, "priority", "must be \"high\", \"normal\" or \"low\"");
	}
	c->priority_set = true;
	return 0;
}

/* Subject: each line break becomes a space, as Nodemailer does; GMime encodes. */
static int set_subject(struct compose *c, const json_t *v, GMimeMessage *m)
{
	const char *s;

	if (compose_header_string(c, v, "subject", &s) < 0)
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

/* ---- output ---- */

/* Every line ends in CRLF and holds at most 998 octets; a final CRLF is added if missing. */
static int check_lines(struct compose *c, GByteArray *a)
{
	size_t start = 0;

	for (size_t i = 0; i < a->len; i++) {
		if (a->data[i] == '\n') {
			if (i == 0 || a->data[i - 1] != '\r')
				return compose_fail(c, "",
						    "internal error: bare LF in the message");
			if (i - 1 - start > MAX_LINE)
				return compose_fail(c, "",
						    "a line of the composed message is too long");
			start = i + 1;
		} else if (a->data[i] == '\r' && (i + 1 == a->len || a->data[i + 1] != '\n')) {
			return compose_fail(c, "", "internal error: bare CR in the message");
		}
	}
	if (a->len - start > MAX_LINE)
		return compose_fail(c, "", "a line of the composed message is too long");
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
		rc = compose_fail(c, "", "could not write the message");
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
	const json_t *h = compose_member(msg, "headers");
	size_t n = json_is_array(h) ? json_array_size(h) : 0;
	const char *name;
	json_t *val;

	if (json_is_object(h)) {
		json_object_foreach ((json_t *)h, name, val) {
			const char *key = field_of_header(name);

			if (key && !compose_member(fields, key) && !json_is_null(val))
				json_object_set(fields, key,
						json_is_object(val) ? compose_member(val, "value")
								    : val);
		}
	}
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(h, i);
		const json_t *k = json_is_object(e) ? compose_member(e, "key") : NULL;
		const char *key = json_is_string(k) ? field_of_header(json_string_value(k)) : NULL;

		val = json_is_object(e) ? compose_member(e, "value") : NULL;
		if (key && val && !compose_member(fields, key))
			json_object_set(fields, key,
					json_is_object(val) ? compose_member(val, "value") : val);
	}
	json_object_del(fields, "headers"); /* read from msg */
	return fields;
}

static int text_options(struct compose *c, const json_t *msg)
{
	const char *s;
	const json_t *v;

	if ((v = compose_member(msg, "textEncoding"))) {
		if (compose_header_string(c, v, "textEncoding", &s) < 0)
			return -1;
		char first = (char)g_ascii_toupper(*s);
		if (first != 'Q' && first != 'B')
			return compose_fail(c, "textEncoding",
					    "must be \"quoted-printable\" or \"base64\"");
		c->text_encoding = first;
	}
	if ((v = compose_member(msg, "encoding"))) {
		if (compose_header_string(c, v, "encoding", &s) < 0)
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
	bool fields = compose_member(msg, "envelope") != NULL;

	if (!json_is_string(raw))
		return compose_fail(c, "raw", "must be a string");
	if (memchr(json_string_value(raw), '\0', json_string_length(raw)))
		return compose_fail(c, "raw", "contains a NUL byte");
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
		v = compose_member(msg, address_fields[i].key);
		if (v && add_addresses(c, v, address_fields[i].key, lists[i]) < 0)
			return -1;
	}
	if ((v = compose_member(msg, "raw")))
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
	if ((v = compose_member(msg, "subject")) && set_subject(c, v, m) < 0)
		goto out;
	if (set_date(c, compose_member(msg, "date"), m) < 0)
		goto out;
	if ((v = compose_member(msg, "messageId"))) {
		const char *s;

		if (compose_header_string(c, v, "messageId", &s) < 0 ||
		    compose_make_id(c, s, s + strlen(s), "messageId", &out->message_id) < 0)
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
	if ((v = compose_member(msg, "inReplyTo"))) {
		const char *s;

		if (compose_header_string(c, v, "inReplyTo", &s) < 0 ||
		    compose_make_id(c, s, s + strlen(s), "inReplyTo", &id) < 0)
			goto out;
		g_mime_object_set_header(mo, "In-Reply-To", id, NULL);
		free(id);
	}
	if ((v = compose_member(msg, "references")) && set_references(c, v, mo) < 0)
		goto out;
	if ((v = compose_member(msg, "priority")) && set_priority(c, v, mo) < 0)
		goto out;
	if ((v = compose_member(c->msg, "headers")) && add_custom_headers(c, v, mo) < 0)
		goto out;
	g_mime_object_set_header(mo, "MIME-Version", "1.0", NULL);

	body = compose_make_body(c, msg);
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
		return compose_fail(&c, "", "the message must be a JSON object");

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
