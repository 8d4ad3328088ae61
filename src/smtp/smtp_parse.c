/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Pure SMTP server-side parsing; see smtp_parse.h.  No I/O, no allocation,
 * no global state: every function reads its arguments and writes its
 * results, and every reply is a static string.
 */
#include "smtp/smtp_parse.h"

#include <string.h>
#include <strings.h>

#include "core/utf8.h"

/* ASCII character classes, independent of the locale. */
static bool is_alpha(unsigned c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(unsigned c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* atext of RFC 5321 4.1.2 (RFC 5322 3.2.3): what a Dot-string atom is made of. */
static bool is_atext(unsigned c)
{
	return is_alpha(c) || is_digit(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", (int)c));
}

static unsigned to_lower(unsigned c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* True when s[0..n) equals the NUL-terminated `word`, ignoring ASCII case. */
static bool word_eq(const char *s, size_t n, const char *word)
{
	if (strlen(word) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (to_lower((unsigned char)s[i]) != to_lower((unsigned char)word[i]))
			return false;
	return true;
}

/* True when the NUL-terminated s starts with `prefix`, ignoring ASCII case. */
static bool prefix_eq(const char *s, const char *prefix)
{
	for (; *prefix != '\0'; s++, prefix++)
		if (to_lower((unsigned char)*s) != to_lower((unsigned char)*prefix))
			return false; /* also at the end of s, as *prefix is not NUL */
	return true;
}

/*
 * Length of the one well-formed non-ASCII UTF-8 character at p (p < end), or
 * 0 when malformed (RFC 3629 section 4): a stray continuation byte, a
 * truncated sequence, an overlong form (C0, C1, E0 80-9F, F0 80-8F), a
 * surrogate (ED A0-BF) or a code point above U+10FFFF (F4 90-BF, F5-FF).
 */
static size_t utf8_char(const unsigned char *p, const unsigned char *end)
{
	unsigned c = p[0], lo = 0x80, hi = 0xbf;
	size_t n;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/* ---- Command lines ---------------------------------------------------- */

static const struct {
	enum smtp_verb verb;
	const char *name;
} verbs[] = {
    {SMTP_VERB_HELO, "HELO"}, {SMTP_VERB_EHLO, "EHLO"}, {SMTP_VERB_MAIL, "MAIL"},
    {SMTP_VERB_RCPT, "RCPT"}, {SMTP_VERB_DATA, "DATA"}, {SMTP_VERB_RSET, "RSET"},
    {SMTP_VERB_NOOP, "NOOP"}, {SMTP_VERB_QUIT, "QUIT"}, {SMTP_VERB_VRFY, "VRFY"},
    {SMTP_VERB_EXPN, "EXPN"}, {SMTP_VERB_HELP, "HELP"}, {SMTP_VERB_STARTTLS, "STARTTLS"},
    {SMTP_VERB_AUTH, "AUTH"}, {SMTP_VERB_BDAT, "BDAT"},
};

int smtp_command_parse(char *line, size_t len, struct smtp_command *cmd, const char **reply)
{
	cmd->verb = SMTP_VERB_UNKNOWN;
	cmd->name = "";
	cmd->arg = "";
	if (len > SMTP_LINE_MAX) {
		*reply = "500 5.5.2 Error: command line too long";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c == '\0') {
			*reply = "500 5.5.2 Error: NUL byte in command line";
			return -1;
		}
		/* Tab included: commands are separated by SP only (RFC 5321 4.1.1). */
		if (c < 0x20 || c == 0x7f) {
			*reply = "500 5.5.2 Error: control character in command line";
			return -1;
		}
	}
	while (len > 0 && line[len - 1] == ' ')
		len--;
	line[len] = '\0';
	if (len == 0) {
		*reply = "500 5.5.2 Error: empty command line";
		return -1;
	}
	size_t vlen = 0;
	while (vlen < len && line[vlen] != ' ')
		vlen++;
	for (size_t i = 0; i < vlen; i++) {
		if ((unsigned char)line[i] >= 0x80) {
			*reply = "500 5.5.2 Error: non-ASCII command verb";
			return -1;
		}
	}
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (word_eq(line, vlen, verbs[i].name)) {
			cmd->verb = verbs[i].verb;
			cmd->name = verbs[i].name;
			break;
		}
	}
	size_t a = vlen;
	while (a < len && line[a] == ' ')
		a++;
	cmd->arg = line + a;
	*reply = NULL;
	return 0;
}

/* ---- Paths (RFC 5321 4.1.2, RFC 6531 3.3) ------------------------------ */

/* What can be wrong with a path; each has its own reply per role. */
enum path_err {
	PE_OK,
	PE_SYNTAX,      /* the local part or the overall shape */
	PE_LOCAL_LONG,  /* local part over SMTP_LOCAL_MAX */
	PE_DOMAIN,      /* the domain is not sub-domain *("." sub-domain) */
	PE_LABEL_LONG,  /* an ASCII label over 63 octets (RFC 1035 2.3.4) */
	PE_DOMAIN_LONG, /* domain over SMTP_DOMAIN_MAX */
	PE_LITERAL,     /* a bad or unsupported address literal */
	PE_ROUTE,       /* a bad source route */
	PE_NO_DOMAIN,   /* no "@domain" */
	PE_UTF8,        /* malformed UTF-8 */
	PE_PATH_LONG,   /* local@domain over SMTP_PATH_MAX */
	PE_NULL,        /* the null path <> where it is not allowed */
	PE_COUNT,
};

/* The replies of MAIL (sender) or RCPT (recipient). */
struct role {
	const char *keyword;  /* "FROM:" or "TO:" */
	const char *usage;    /* no keyword, or no '<' */
	const char *nonascii; /* valid UTF-8 but no SMTPUTF8 */
	const char *err[PE_COUNT];
};

static const struct role sender = {
    "FROM:",
    "501 5.5.4 Syntax: MAIL FROM:<address>",
    "553 5.6.7 Non-ASCII sender address requires SMTPUTF8",
    {
	[PE_SYNTAX] = "553 5.1.7 Bad sender address syntax",
	[PE_LOCAL_LONG] = "553 5.1.7 Sender local part longer than 64 octets",
	[PE_DOMAIN] = "553 5.1.7 Bad sender domain syntax",
	[PE_LABEL_LONG] = "553 5.1.7 Sender domain label longer than 63 octets",
	[PE_DOMAIN_LONG] = "553 5.1.7 Sender domain longer than 255 octets",
	[PE_LITERAL] = "553 5.1.7 Bad sender address literal",
	[PE_ROUTE] = "553 5.1.7 Bad source route in sender address",
	[PE_NO_DOMAIN] = "553 5.1.7 Sender address has no domain",
	[PE_UTF8] = "553 5.1.7 Sender address is not valid UTF-8",
	[PE_PATH_LONG] = "553 5.1.7 Sender address longer than 256 octets",
	[PE_NULL] = "553 5.1.7 Bad sender address syntax", /* not used: <> is allowed */
    },
};

static const struct role recipient = {
    "TO:",
    "501 5.5.4 Syntax: RCPT TO:<address>",
    "553 5.6.7 Non-ASCII recipient address requires SMTPUTF8",
    {
	[PE_SYNTAX] = "553 5.1.3 Bad recipient address syntax",
	[PE_LOCAL_LONG] = "553 5.1.3 Recipient local part longer than 64 octets",
	[PE_DOMAIN] = "553 5.1.3 Bad recipient domain syntax",
	[PE_LABEL_LONG] = "553 5.1.3 Recipient domain label longer than 63 octets",
	[PE_DOMAIN_LONG] = "553 5.1.3 Recipient domain longer than 255 octets",
	[PE_LITERAL] = "553 5.1.3 Bad recipient address literal",
	[PE_ROUTE] = "553 5.1.3 Bad source route in recipient address",
	[PE_NO_DOMAIN] = "553 5.1.3 Recipient address has no domain",
	[PE_UTF8] = "553 5.1.3 Recipient address is not valid UTF-8",
	[PE_PATH_LONG] = "553 5.1.3 Recipient address longer than 256 octets",
	[PE_NULL] = "553 5.1.3 Null recipient address not allowed",
    },
};

/* Scanners: each takes [p, end), returns where it stopped, or NULL with *err. */

static const unsigned char *fail(enum path_err *err, enum path_err e)
{
	*err = e;
	return NULL;
}

/*
 * Local-part = Dot-string / Quoted-string.  Non-ASCII (checked to be valid
 * UTF-8) is accepted in atext and qtextSMTP (RFC 6531 3.3) and flagged in
 * *utf8; whether SMTPUTF8 was given is decided by the caller.
 */
static const unsigned char *scan_local(const unsigned char *p, const unsigned char *end, bool *utf8,
				       enum path_err *err)
{
	if (p < end && *p == '"') {
		for (p++; p < end;) {
			if (*p == '"')
				return p + 1;
			if (*p == '\\') {
				/* quoted-pairSMTP = "\" %d32-126: ASCII only */
				if (end - p < 2 || p[1] < 32 || p[1] > 126)
					return fail(err, PE_SYNTAX);
				p += 2;
			} else if (*p >= 32 && *p <= 126) {
				p++;
			} else if (*p >= 0x80) {
				size_t n = utf8_char(p, end);
				if (n == 0)
					return fail(err, PE_UTF8);
				*utf8 = true;
				p += n;
			} else {
				return fail(err, PE_SYNTAX);
			}
		}
		return fail(err, PE_SYNTAX); /* unterminated */
	}
	for (;;) {
		const unsigned char *atom = p;
		while (p < end) {
			if (*p >= 0x80) {
				size_t n = utf8_char(p, end);
				if (n == 0)
					return fail(err, PE_UTF8);
				*utf8 = true;
				p += n;
			} else if (is_atext(*p)) {
				p++;
			} else {
				break;
			}
		}
		if (p == atom) /* empty, leading dot, ".." or trailing dot */
			return fail(err, PE_SYNTAX);
		if (p < end && *p == '.') {
			p++;
			continue;
		}
		return p;
	}
}

/*
 * Domain = sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str]:
 * letters, digits and inner hyphens, no trailing dot.  A label may also hold
 * UTF-8 (a U-label, RFC 6531 3.3), flagged in *utf8; IDNA2008 rules beyond
 * that are not checked.  ASCII labels are limited to 63 octets; a U-label's
 * limit applies to its A-label form, which is not computed here.
 */
static const unsigned char *scan_domain(const unsigned char *p, const unsigned char *end,
					bool *utf8, enum path_err *err)
{
	for (;;) {
		const unsigned char *label = p;
		bool ascii = true;
		while (p < end) {
			if (*p >= 0x80) {
				size_t n = utf8_char(p, end);
				if (n == 0)
					return fail(err, PE_UTF8);
				ascii = false;
				*utf8 = true;
				p += n;
			} else if (is_alpha(*p) || is_digit(*p) || *p == '-') {
				p++;
			} else {
				break;
			}
		}
		if (p == label || *label == '-' || p[-1] == '-')
			return fail(err, PE_DOMAIN);
		if (ascii && p - label > 63)
			return fail(err, PE_LABEL_LONG);
		if (p < end && *p == '.') {
			p++;
			continue;
		}
		return p;
	}
}

/*
 * Snum 3("." Snum), each Snum 0-255.  The grammar allows leading zeros
 * ("1*3DIGIT"), but "010" reads as 8 to inet_aton() and as 10 elsewhere, and
 * inet_pton() refuses it: refused here so the address cannot be ambiguous.
 */
static bool ipv4_ok(const unsigned char *p, const unsigned char *end)
{
	for (int i = 0; i < 4; i++) {
		if (i > 0) {
			if (p == end || *p != '.')
				return false;
			p++;
		}
		const unsigned char *num = p;
		unsigned v = 0;
		while (p < end && is_digit(*p) && p - num < 3)
			v = v * 10 + (*p++ - '0');
		if (p == num || v > 255 || (p - num > 1 && *num == '0'))
			return false;
	}
	return p == end;
}

/*
 * IPv6-addr of RFC 5321 4.1.3: 8 groups of 1-4 hex digits, or 6 and an IPv4
 * address; "::" at most once and standing for at least two groups, so at
 * most 6 (or 4 before an IPv4 address) explicit groups with it.
 */
static bool ipv6_ok(const unsigned char *p, const unsigned char *end)
{
	int groups = 0;
	bool compressed = false, v4 = false;
	if (end - p >= 2 && p[0] == ':' && p[1] == ':') {
		compressed = true;
		p += 2;
	} else if (p < end && *p == ':') {
		return false;
	}
	while (p < end) {
		const unsigned char *q = p;
		while (q < end && *q != ':')
			q++;
		if (memchr(p, '.', (size_t)(q - p)) != NULL) {
			if (q != end || !ipv4_ok(p, q))
				return false;
			v4 = true;
			break;
		}
		if (q - p < 1 || q - p > 4)
			return false;
		for (const unsigned char *h = p; h < q; h++)
			if (!is_hex(*h))
				return false;
		groups++;
		if (q == end)
			break;
		if (end - q >= 2 && q[1] == ':') {
			if (compressed)
				return false;
			compressed = true;
			p = q + 2;
		} else {
			p = q + 1;
			if (p == end) /* a trailing single ':' */
				return false;
		}
	}
	int max = v4 ? 6 : 8;
	return compressed ? groups <= max - 2 : groups == max;
}

/*
 * address-literal = "[" (IPv4 / "IPv6:" IPv6) "]", which must end the path.
 * General-address-literal (any other Standardized-tag) is refused: no tag
 * but IPv6 is registered, so nothing could be delivered there.
 */
static const unsigned char *scan_literal(const unsigned char *p, const unsigned char *end,
					 enum path_err *err)
{
	const unsigned char *close = memchr(p, ']', (size_t)(end - p));
	if (close == NULL || close + 1 != end)
		return fail(err, PE_LITERAL);
	const unsigned char *in = p + 1;
	bool ok;
	if (close - in >= 5 && word_eq((const char *)in, 5, "IPv6:"))
		ok = ipv6_ok(in + 5, close);
	else
		ok = ipv4_ok(in, close);
	return ok ? end : fail(err, PE_LITERAL);
}

/*
 * Parses what is between '<' and '>' into path: the null path (empty), or
 * [A-d-l ":"] Mailbox.  The source route is checked and dropped; whether it
 * held UTF-8 goes to *route_utf8 (path->utf8 covers the mailbox).
 */
static enum path_err parse_path(const unsigned char *p, const unsigned char *end,
				struct smtp_path *path, bool *route_utf8)
{
	enum path_err err = PE_OK;
	path->addr[0] = '\0';
	path->at = 0;
	path->utf8 = false;
	if (p == end)
		return PE_NULL;
	if (*p == '@') {
		/* A-d-l = At-domain *("," At-domain); At-domain = "@" Domain */
		for (;;) {
			const unsigned char *hop = ++p;
			p = scan_domain(p, end, route_utf8, &err);
			if (p == NULL)
				return err == PE_UTF8 ? PE_UTF8 : PE_ROUTE;
			if (p - hop > SMTP_DOMAIN_MAX)
				return PE_ROUTE;
			if (p < end && *p == ',' && end - p >= 2 && p[1] == '@') {
				p++;
				continue;
			}
			if (p < end && *p == ':') {
				p++;
				break;
			}
			/* "<@example.com>": no route at all but an empty local part */
			return p == end ? PE_SYNTAX : PE_ROUTE;
		}
	}
	const unsigned char *local = p;
	p = scan_local(p, end, &path->utf8, &err);
	if (p == NULL)
		return err;
	if (p == end)
		return PE_NO_DOMAIN;
	if (*p != '@')
		return PE_SYNTAX;
	const unsigned char *at = p++;
	if (p == end)
		return PE_NO_DOMAIN;
	const unsigned char *domain = p;
	if (*p == '[')
		p = scan_literal(p, end, &err);
	else
		p = scan_domain(p, end, &path->utf8, &err);
	if (p == NULL)
		return err;
	if (p != end)
		return PE_DOMAIN;
	if (at - local > SMTP_LOCAL_MAX)
		return PE_LOCAL_LONG;
	if (end - domain > SMTP_DOMAIN_MAX)
		return PE_DOMAIN_LONG;
	size_t len = (size_t)(end - local);
	if (len > SMTP_PATH_MAX)
		return PE_PATH_LONG;
	memcpy(path->addr, local, len);
	path->addr[len] = '\0';
	path->at = (size_t)(at - local);
	return PE_OK;
}

/*
 * The '>' closing a path that starts at p (just after '<'), or NULL.  A '>'
 * inside a quoted local part ("a>b"@example.com) does not close it.
 */
static const char *path_close(const char *p)
{
	bool quoted = false;
	for (; *p != '\0'; p++) {
		if (quoted) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '"')
				quoted = false;
		} else if (*p == '"') {
			quoted = true;
		} else if (*p == '>') {
			return p;
		}
	}
	return NULL;
}

/*
 * Parses "<keyword> *SP <path>" (the keyword in any case; spaces after the
 * colon are a common deviation, accepted) and returns what follows the path:
 * "" or a space and the parameters.  NULL with *reply on error.
 */
static const char *parse_path_arg(const char *arg, const struct role *role, struct smtp_path *path,
				  bool *route_utf8, bool *null_path, const char **reply)
{
	path->addr[0] = '\0';
	path->at = 0;
	path->utf8 = false;
	*null_path = false;
	if (!prefix_eq(arg, role->keyword)) {
		*reply = role->usage;
		return NULL;
	}
	const char *p = arg + strlen(role->keyword);
	while (*p == ' ')
		p++;
	if (*p != '<') {
		*reply = role->usage;
		return NULL;
	}
	const char *close = path_close(p + 1);
	if (close == NULL) {
		*reply = "501 5.5.4 Syntax: missing '>' after address";
		return NULL;
	}
	enum path_err e = parse_path((const unsigned char *)p + 1, (const unsigned char *)close,
				     path, route_utf8);
	*null_path = e == PE_NULL;
	if (e != PE_OK && e != PE_NULL) {
		*reply = role->err[e];
		return NULL;
	}
	p = close + 1;
	if (*p != '\0' && *p != ' ') {
		*reply = "501 5.5.4 Syntax: unexpected text after address";
		return NULL;
	}
	return p;
}

/*
 * The next parameter after p: skips spaces and sets [*kw, *kw + *kwlen) to the
 * keyword and *val to the value after '=' (NULL without one, running to
 * *end).  Returns false at the end of the line.
 */
static bool next_param(const char **p, const char **kw, size_t *kwlen, const char **val,
		       const char **end)
{
	const char *s = *p;
	while (*s == ' ')
		s++;
	if (*s == '\0')
		return false;
	*kw = s;
	while (*s != '\0' && *s != ' ' && *s != '=')
		s++;
	*kwlen = (size_t)(s - *kw);
	*val = NULL;
	if (*s == '=') {
		*val = ++s;
		while (*s != '\0' && *s != ' ')
			s++;
	}
	*end = s;
	*p = s;
	return true;
}

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static bool keyword_ok(const char *kw, size_t len)
{
	if (len == 0 || (unsigned char)kw[0] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned c = (unsigned char)kw[i];
		if (!is_alpha(c) && !is_digit(c) && c != '-')
			return false;
	}
	return true;
}

/* size-value = 1*20DIGIT (RFC 1870), which must also fit in an int64_t. */
static const char *parse_size(const char *v, const char *end, int64_t *size)
{
	size_t n = (size_t)(end - v);
	if (n == 0 || n > 20)
		return "555 5.5.4 Bad SIZE value: 1 to 20 digits expected";
	uint64_t x = 0;
	for (const char *s = v; s < end; s++) {
		if (!is_digit((unsigned char)*s))
			return "555 5.5.4 Bad SIZE value: 1 to 20 digits expected";
		unsigned d = (unsigned)(*s - '0');
		if (x > ((uint64_t)INT64_MAX - d) / 10)
			return "555 5.5.4 SIZE value out of range";
		x = x * 10 + d;
	}
	*size = (int64_t)x;
	return NULL;
}

static const char *const bad_param_syntax = "501 5.5.4 Syntax error in parameters";

static bool is_upper_hex(unsigned c)
{
	return is_digit(c) || (c >= 'A' && c <= 'F');
}

/* xtext; with utf8, octets over 127 pass too (the caller checks that
 * they are UTF-8). */
static bool xtext_check(const char *s, size_t n, bool utf8)
{
	for (size_t i = 0; i < n; i++) {
		unsigned c = (unsigned char)s[i];
		if (c == '+') {
			if (i + 2 >= n || !is_upper_hex((unsigned char)s[i + 1]) ||
			    !is_upper_hex((unsigned char)s[i + 2]))
				return false;
			i += 2;
		} else if ((c < '!' || c > '~' || c == '=') && !(utf8 && c >= 0x80)) {
			return false;
		}
	}
	return true;
}

bool smtp_xtext_valid(const char *s, size_t n)
{
	return xtext_check(s, n, false);
}

/* NOTIFY=NEVER, or a comma list of SUCCESS, FAILURE, DELAY (once each). */
static bool parse_notify(const char *v, const char *end, unsigned *notify)
{
	*notify = 0;
	while (v < end) {
		const char *comma = memchr(v, ',', (size_t)(end - v));
		const char *e = comma ? comma : end;
		size_t n = (size_t)(e - v);
		unsigned bit = word_eq(v, n, "SUCCESS")   ? SMTP_NOTIFY_SUCCESS
			       : word_eq(v, n, "FAILURE") ? SMTP_NOTIFY_FAILURE
			       : word_eq(v, n, "DELAY")   ? SMTP_NOTIFY_DELAY
			       : word_eq(v, n, "NEVER")   ? SMTP_NOTIFY_NEVER
							  : 0;
		if (bit == 0 || (*notify & bit))
			return false;
		*notify |= bit;
		if (comma == NULL)
			break;
		v = comma + 1;
		if (v == end)
			return false; /* a trailing comma */
	}
	return *notify != 0 && (!(*notify & SMTP_NOTIFY_NEVER) || *notify == SMTP_NOTIFY_NEVER);
}

/* ORCPT=addr-type;address: an atom, then xtext (or, for utf-8 with
 * SMTPUTF8, UTF-8 as well). */
static bool orcpt_ok(const char *v, const char *end, bool smtputf8)
{
	const char *semi = memchr(v, ';', (size_t)(end - v));
	if (semi == NULL || semi == v || semi + 1 == end)
		return false;
	for (const char *p = v; p < semi; p++)
		if (!is_alpha((unsigned char)*p) && !is_digit((unsigned char)*p) && *p != '-')
			return false;
	const char *addr = semi + 1;
	size_t n = (size_t)(end - addr);
	bool utf8 = smtputf8 && (size_t)(semi - v) == 5 && strncasecmp(v, "utf-8", 5) == 0;
	return xtext_check(addr, n, utf8) && (!utf8 || utf8_valid(addr, n));
}
static const char *const unsupported_param = "555 5.5.4 Unsupported parameter";
static const char *const bad_body = "555 5.5.4 Unsupported BODY value: 7BIT or 8BITMIME expected";

int smtp_mail_parse(const char *arg, struct smtp_mail *mail, const char **reply)
{
	mail->size = -1;
	mail->body = SMTP_BODY_UNSPECIFIED;
	mail->smtputf8 = false;
	mail->ret = SMTP_RET_UNSPECIFIED;
	mail->envid[0] = '\0';
	bool route_utf8 = false, null_path;
	const char *p = parse_path_arg(arg, &sender, &mail->path, &route_utf8, &null_path, reply);
	if (p == NULL)
		return -1;
	const char *kw, *val, *end;
	size_t kwlen;
	bool seen_size = false, seen_body = false, seen_envid = false;
	while (next_param(&p, &kw, &kwlen, &val, &end)) {
		if (!keyword_ok(kw, kwlen)) {
			*reply = bad_param_syntax;
			return -1;
		}
		if (word_eq(kw, kwlen, "SIZE")) {
			if (seen_size) {
				*reply = "555 5.5.4 Duplicate SIZE parameter";
				return -1;
			}
			seen_size = true;
			if (val == NULL) {
				*reply = "555 5.5.4 Bad SIZE value: 1 to 20 digits expected";
				return -1;
			}
			if ((*reply = parse_size(val, end, &mail->size)) != NULL)
				return -1;
		} else if (word_eq(kw, kwlen, "BODY")) {
			if (seen_body) {
				*reply = "555 5.5.4 Duplicate BODY parameter";
				return -1;
			}
			seen_body = true;
			size_t vlen = val ? (size_t)(end - val) : 0;
			if (val != NULL && word_eq(val, vlen, "7BIT")) {
				mail->body = SMTP_BODY_7BIT;
			} else if (val != NULL && word_eq(val, vlen, "8BITMIME")) {
				mail->body = SMTP_BODY_8BITMIME;
			} else {
				*reply = bad_body;
				return -1;
			}
		} else if (word_eq(kw, kwlen, "SMTPUTF8")) {
			if (mail->smtputf8) {
				*reply = "555 5.5.4 Duplicate SMTPUTF8 parameter";
				return -1;
			}
			if (val != NULL) {
				*reply = "555 5.5.4 SMTPUTF8 takes no value";
				return -1;
			}
			mail->smtputf8 = true;
		} else if (word_eq(kw, kwlen, "RET")) {
			size_t vlen = val ? (size_t)(end - val) : 0;
			if (mail->ret != SMTP_RET_UNSPECIFIED) {
				*reply = "555 5.5.4 Duplicate RET parameter";
				return -1;
			}
			if (val != NULL && word_eq(val, vlen, "FULL")) {
				mail->ret = SMTP_RET_FULL;
			} else if (val != NULL && word_eq(val, vlen, "HDRS")) {
				mail->ret = SMTP_RET_HDRS;
			} else {
				*reply = "501 5.5.4 Bad RET value: FULL or HDRS expected";
				return -1;
			}
		} else if (word_eq(kw, kwlen, "ENVID")) {
			size_t vlen = val ? (size_t)(end - val) : 0;
			if (seen_envid) {
				*reply = "555 5.5.4 Duplicate ENVID parameter";
				return -1;
			}
			seen_envid = true;
			if (vlen == 0 || vlen > SMTP_ENVID_MAX || !smtp_xtext_valid(val, vlen)) {
				*reply = "501 5.5.4 Bad ENVID value: 1 to 100 characters of xtext "
					 "expected";
				return -1;
			}
			memcpy(mail->envid, val, vlen);
			mail->envid[vlen] = '\0';
		} else {
			*reply = unsupported_param;
			return -1;
		}
	}
	if ((mail->path.utf8 || route_utf8) && !mail->smtputf8) {
		*reply = sender.nonascii;
		return -1;
	}
	*reply = NULL;
	return 0;
}

int smtp_rcpt_parse(const char *arg, bool smtputf8, struct smtp_path *rcpt,
		    struct smtp_rcpt_dsn *dsn, const char **reply)
{
	dsn->notify = 0;
	dsn->orcpt[0] = '\0';
	bool route_utf8 = false, null_path;
	const char *p = parse_path_arg(arg, &recipient, rcpt, &route_utf8, &null_path, reply);
	if (p == NULL)
		return -1;
	if (null_path) {
		*reply = recipient.err[PE_NULL];
		return -1;
	}
	const char *kw, *val, *end;
	size_t kwlen;
	while (next_param(&p, &kw, &kwlen, &val, &end)) {
		size_t vlen = val ? (size_t)(end - val) : 0;
		if (!keyword_ok(kw, kwlen)) {
			*reply = bad_param_syntax;
			return -1;
		}
		if (word_eq(kw, kwlen, "NOTIFY")) {
			if (dsn->notify != 0) {
				*reply = "555 5.5.4 Duplicate NOTIFY parameter";
				return -1;
			}
			if (val == NULL || !parse_notify(val, end, &dsn->notify)) {
				*reply = "501 5.5.4 Bad NOTIFY value: NEVER, or SUCCESS, FAILURE "
					 "and DELAY separated by commas, expected";
				return -1;
			}
		} else if (word_eq(kw, kwlen, "ORCPT")) {
			if (dsn->orcpt[0] != '\0') {
				*reply = "555 5.5.4 Duplicate ORCPT parameter";
				return -1;
			}
			if (val == NULL || vlen > SMTP_ORCPT_MAX || !orcpt_ok(val, end, smtputf8)) {
				*reply = "501 5.5.4 Bad ORCPT value: addr-type;xtext expected";
				return -1;
			}
			memcpy(dsn->orcpt, val, vlen);
			dsn->orcpt[vlen] = '\0';
		} else {
			*reply = unsupported_param;
			return -1;
		}
	}
	if ((rcpt->utf8 || route_utf8) && !smtputf8) {
		*reply = recipient.nonascii;
		return -1;
	}
	*reply = NULL;
	return 0;
}

/* ---- DATA (RFC 5321 4.1.1.4, 4.5.2) ------------------------------------ */

/*
 * Where the scanner is.  "Line start" means right after a real CRLF, or the
 * very beginning of the data; a bare CR or LF never starts a line.
 */
enum data_state {
	DATA_BOL,    /* at a line start: a '.' here is dot-stuffing or the end */
	DATA_DOT,    /* a line started with '.', which has been dropped */
	DATA_DOT_CR, /* a line started with ".\r": LF now ends the message */
	DATA_TEXT,   /* inside a line */
	DATA_CR,     /* a CR inside or ending a line (already output): LF ends the line */
	DATA_DONE,   /* the final ".\r\n" was consumed: nothing more is read */
};

void smtp_data_init(struct smtp_data *d)
{
	d->state = DATA_BOL;
	d->bad_newline = false;
	d->bad_nul = false;
}

/* The length of the leading run of p[0..len) that holds no CR and no LF. */
static size_t text_run(const char *p, size_t len)
{
	const char *cr = memchr(p, '\r', len);
	size_t n = cr ? (size_t)(cr - p) : len;
	const char *lf = memchr(p, '\n', n);
	return lf ? (size_t)(lf - p) : n;
}

/*
 * Every input byte gives at most one output byte, so out never needs more
 * than inlen.  A CR is output when it is read, before it is known whether an
 * LF follows: so when it turns out bare, the output ends with that CR.
 */
enum smtp_data_status smtp_data_feed(struct smtp_data *d, const char *in, size_t inlen, char *out,
				     size_t *outlen, size_t *consumed)
{
	size_t o = 0, i = 0;
	if (d->state == DATA_DONE) {
		*outlen = 0;
		*consumed = 0;
		return SMTP_DATA_END;
	}
	while (i < inlen) {
		if (d->state == DATA_TEXT) {
			/* Inside a line: everything up to the next CR or LF is
			 * ordinary, found with memchr rather than byte by byte. */
			size_t n = text_run(in + i, inlen - i);
			if (!d->bad_nul && memchr(in + i, '\0', n) != NULL)
				d->bad_nul = true;
			if (!d->bad_newline) {
				memcpy(out + o, in + i, n);
				o += n;
			}
			i += n;
			if (i == inlen)
				break;
		}
		char c = in[i++];
		if (c == '\0')
			d->bad_nul = true;
		switch ((enum data_state)d->state) {
		case DATA_BOL:
			if (c == '.') {
				d->state = DATA_DOT;
				continue;
			}
			break;
		case DATA_DOT:
			if (c == '\r') {
				d->state = DATA_DOT_CR;
				continue;
			}
			break; /* the dot was stuffing (or, before a bare LF, bad) */
		case DATA_DOT_CR:
			if (c == '\n') {
				d->state = DATA_DONE;
				*outlen = o;
				*consumed = i;
				return SMTP_DATA_END;
			}
			d->bad_newline = true; /* ".\r" then not LF */
			break;
		case DATA_CR:
			if (c == '\n') {
				if (!d->bad_newline)
					out[o++] = c;
				d->state = DATA_BOL;
				continue;
			}
			d->bad_newline = true; /* CR then not LF */
			break;
		case DATA_TEXT:
		case DATA_DONE: /* not reached: returned above */
			break;
		}
		/* c is an ordinary byte of a line in progress. */
		if (c == '\n') {
			d->bad_newline = true; /* LF without CR */
			d->state = DATA_TEXT;
			continue;
		}
		if (!d->bad_newline)
			out[o++] = c;
		d->state = c == '\r' ? DATA_CR : DATA_TEXT;
	}
	*outlen = o;
	*consumed = i;
	return SMTP_DATA_MORE;
}
