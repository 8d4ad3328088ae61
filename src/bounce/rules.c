/* SPDX-License-Identifier: EUPL-1.2 */
/* Bounce rules: responses → defer or reject, and a category; see rules.h. */
#include "bounce/rules.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/xmalloc.h"

extern const char zmta_bounce_rules[];
extern const size_t zmta_bounce_rules_len;

#define BUILTIN_NAME "config/bounces.txt"

/*
 * Responses are bytes, not necessarily UTF-8 (servers send Latin-1 and worse),
 * while rules may well carry non-ASCII text ("Postfach voll").  PCRE2_UTF with
 * PCRE2_MATCH_INVALID_UTF gives both: Unicode case folding for the patterns,
 * and a subject with invalid sequences is still matched (they simply match no
 * character) instead of failing with an error.  \C could split a character in
 * UTF mode, so it is refused.  '.' matches any character, a line break too:
 * the whole response is one subject.
 */
#define COMPILE_OPTIONS                                                                            \
	(PCRE2_CASELESS | PCRE2_DOTALL | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF |                     \
	 PCRE2_NEVER_BACKSLASH_C)

/* Bounds the work of one rule on one response: a badly written rule (nested
 * quantifiers) on a long response gives up (no match) instead of spinning. */
#define MATCH_LIMIT 1000000
/* Error messages quote at most this much of a bad word. */
#define QUOTE_MAX 40

struct rule {
	enum bounce_action action;
	bool slowdown; /* ZoneMTA's action name (a defer) */
	char *category;
	char *message; /* ZoneMTA's fourth field, or NULL */
	int line;
	pcre2_code *re;
};

struct bounce_rules {
	struct rule *rules;
	size_t n, cap;
	pcre2_match_context *mctx; /* read-only once built: shared by threads */
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static bool is_category_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

static int quote_len(size_t n)
{
	return (int)(n > QUOTE_MAX ? QUOTE_MAX : n);
}

static bool parse_action(const char *action, size_t len, enum bounce_action *act, bool *slowdown)
{
	*slowdown = false;
	if (len == 5 && strncasecmp(action, "defer", 5) == 0) {
		*act = BOUNCE_DEFER;
	} else if (len == 6 && strncasecmp(action, "reject", 6) == 0) {
		*act = BOUNCE_REJECT;
	} else if (len == 8 && strncasecmp(action, "slowdown", 8) == 0) {
		*act = BOUNCE_DEFER; /* ZoneMTA: a defer */
		*slowdown = true;
	} else {
		return false;
	}
	return true;
}

/* Compiles and appends a rule; false and *err on a bad one. */
static bool add_rule(struct bounce_rules *r, const char *name, int lineno, const char *action,
		     size_t action_len, const char *category, size_t category_len,
		     const char *regex, size_t regex_len, const char *message, size_t message_len,
		     uint32_t options, char **err)
{
	enum bounce_action act;
	bool slowdown;
	if (!parse_action(action, action_len, &act, &slowdown)) {
		*err = xasprintf("%s:%d: unknown action '%.*s' (defer, reject or slowdown)", name,
				 lineno, quote_len(action_len), action);
		return false;
	}
	for (size_t i = 0; i < category_len; i++) {
		if (!is_category_char(category[i])) {
			*err = xasprintf("%s:%d: bad category '%.*s' (letters, digits, '-', '_')",
					 name, lineno, quote_len(category_len), category);
			return false;
		}
	}
	if (category_len == 0 || regex_len == 0) {
		*err = xasprintf("%s:%d: empty %s", name, lineno, regex_len ? "category" : "regex");
		return false;
	}

	int errcode;
	PCRE2_SIZE erroff;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)regex, regex_len, COMPILE_OPTIONS | options,
				       &errcode, &erroff, NULL);
	if (re == NULL) {
		PCRE2_UCHAR msg[256];
		if (pcre2_get_error_message(errcode, msg, sizeof(msg)) < 0)
			snprintf((char *)msg, sizeof(msg), "error %d", errcode);
		*err = xasprintf("%s:%d: bad regex: %s at offset %zu", name, lineno, (char *)msg,
				 (size_t)erroff);
		return false;
	}
	/* JIT where the library and the CPU have it; the interpreter otherwise. */
	(void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);

	r->rules = xreallocarray_grow(r->rules, &r->cap, r->n + 1, sizeof(*r->rules));
	struct rule *rule = &r->rules[r->n++];
	rule->action = act;
	rule->slowdown = slowdown;
	rule->category = xstrndup(category, category_len);
	rule->message = message_len ? xstrndup(message, message_len) : NULL;
	rule->line = lineno;
	rule->re = re;
	return true;
}

/*
 * ZoneMTA's line, `regex,action,category,message`, split as ZoneMTA splits
 * it: at the first three commas (so its regexes hold no comma).  The regex
 * is a JavaScript one with flags "im": case-insensitive, ^ and $ at line
 * breaks.  False when the line is not of this form.
 */
static bool parse_zonemta_line(struct bounce_rules *r, const char *name, int lineno, const char *p,
			       const char *end, char **err, bool *handled)
{
	const char *c1 = memchr(p, ',', (size_t)(end - p));
	const char *c2 = c1 ? memchr(c1 + 1, ',', (size_t)(end - c1 - 1)) : NULL;
	*handled = false;
	if (c2 == NULL)
		return true;
	const char *c3 = memchr(c2 + 1, ',', (size_t)(end - c2 - 1));
	const char *action = c1 + 1, *category = c2 + 1;
	size_t action_len = (size_t)(c2 - action);
	size_t category_len = (size_t)((c3 ? c3 : end) - category);
	*handled = true;
	enum bounce_action act;
	bool slowdown;
	if (!parse_action(action, action_len, &act, &slowdown)) {
		*err = xasprintf("%s:%d: unknown action '%.*s' in ZoneMTA's "
				 "regex,action,category,message (defer, reject or slowdown)",
				 name, lineno, quote_len(action_len), action);
		return false;
	}
	const char *message = c3 ? c3 + 1 : end;
	return add_rule(r, name, lineno, action, action_len, category, category_len, p,
			(size_t)(c1 - p), message, (size_t)(end - message), PCRE2_MULTILINE, err);
}

/* Parses one line (without its '\n'); false and *err on a bad one. */
static bool parse_line(struct bounce_rules *r, const char *name, int lineno, const char *p,
		       const char *end, char **err)
{
	while (end > p && is_space(end[-1]))
		end--;
	while (p < end && is_space(*p))
		p++;
	if (p == end || *p == '#')
		return true;

	const char *action = p;
	while (p < end && !is_space(*p))
		p++;
	size_t action_len = (size_t)(p - action);
	enum bounce_action act;
	bool slowdown;
	if (!parse_action(action, action_len, &act, &slowdown)) {
		bool handled;
		if (!parse_zonemta_line(r, name, lineno, action, end, err, &handled))
			return false;
		if (handled)
			return true;
		*err = xasprintf("%s:%d: unknown action '%.*s' (defer, reject or slowdown)", name,
				 lineno, quote_len(action_len), action);
		return false;
	}
	while (p < end && is_space(*p))
		p++;
	const char *category = p;
	while (p < end && !is_space(*p))
		p++;
	size_t category_len = (size_t)(p - category);
	while (p < end && is_space(*p))
		p++;
	if (category_len == 0 || p == end) {
		*err = xasprintf("%s:%d: expected ACTION CATEGORY REGEX", name, lineno);
		return false;
	}
	return add_rule(r, name, lineno, action, action_len, category, category_len, p,
			(size_t)(end - p), NULL, 0, 0, err);
}

struct bounce_rules *bounce_rules_parse(const char *name, const char *text, size_t len, char **err)
{
	*err = NULL;
	struct bounce_rules *r = xcalloc(1, sizeof(*r));
	r->mctx = pcre2_match_context_create(NULL);
	if (r->mctx == NULL)
		fatal("bounce rules: out of memory");
	pcre2_set_match_limit(r->mctx, MATCH_LIMIT);

	const char *p = text, *end = text + len;
	int lineno = 0;
	while (p < end) {
		lineno++;
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl != NULL ? nl : end;
		if (!parse_line(r, name, lineno, p, eol, err)) {
			bounce_rules_free(r);
			return NULL;
		}
		p = nl != NULL ? nl + 1 : end;
	}
	return r;
}

struct bounce_rules *bounce_rules_load(const char *path, char **err)
{
	*err = NULL;
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		*err = xasprintf("%s: %s", path, strerror(errno));
		return NULL;
	}
	size_t len = 0, cap = 0;
	char *buf = NULL;
	for (;;) {
		buf = xreallocarray_grow(buf, &cap, len + 4096, 1);
		size_t got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	bool failed = ferror(f);
	int saved = errno;
	fclose(f);
	if (failed) {
		*err = xasprintf("%s: %s", path, strerror(saved));
		free(buf);
		return NULL;
	}
	struct bounce_rules *r = bounce_rules_parse(path, buf, len, err);
	free(buf);
	return r;
}

struct bounce_rules *bounce_rules_builtin(void)
{
	char *err;
	struct bounce_rules *r = bounce_rules_parse(BUILTIN_NAME, zmta_bounce_rules,
						    zmta_bounce_rules_len, &err);
	if (r == NULL)
		fatal("shipped bounce rules: %s", err);
	return r;
}

void bounce_rules_free(struct bounce_rules *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++) {
		free(r->rules[i].category);
		free(r->rules[i].message);
		pcre2_code_free(r->rules[i].re);
	}
	free(r->rules);
	pcre2_match_context_free(r->mctx);
	free(r);
}

size_t bounce_rules_count(const struct bounce_rules *r)
{
	return r->n;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * The text the rules see: "CODE TEXT".  The response normally starts with
 * its code already ("550 5.1.1 ...", or "550-5.1.1 ..." for the first line
 * of a multi-line reply, made "550 " here); otherwise the code is put in
 * front.  Code 0 (no reply) leaves the text as it is.  Returns what to free.
 */
static char *subject(int code, const char *response, const char **subj)
{
	*subj = response;
	if (code == 0)
		return NULL;
	if (is_digit(response[0]) && is_digit(response[1]) && is_digit(response[2]) &&
	    (response[0] - '0') * 100 + (response[1] - '0') * 10 + (response[2] - '0') == code) {
		if (response[3] == ' ' || response[3] == '\0')
			return NULL;
		if (response[3] == '-') {
			char *s = xstrdup(response);
			s[3] = ' ';
			*subj = s;
			return s;
		}
	}
	char *s = xasprintf("%d %s", code, response);
	*subj = s;
	return s;
}

static void default_verdict(int code, struct bounce_verdict *out)
{
	out->rule_line = 0;
	out->message = NULL;
	out->slowdown = false;
	if (code == 0) {
		out->action = BOUNCE_DEFER;
		out->category = "network";
	} else if (code >= 400 && code <= 499) {
		out->action = BOUNCE_DEFER;
		out->category = "other";
	} else if (code >= 500 && code <= 599) {
		out->action = BOUNCE_REJECT;
		out->category = "other";
	} else {
		/* A 2xx/3xx where a failure was reported, or no valid code at all. */
		out->action = BOUNCE_DEFER;
		out->category = "protocol";
	}
}

void bounce_rules_classify(const struct bounce_rules *r, int code, const char *response,
			   struct bounce_verdict *out)
{
	if (response == NULL)
		response = "";
	default_verdict(code, out);
	if (r == NULL || r->n == 0)
		return;
	const char *subj;
	char *owned = subject(code, response, &subj);
	size_t len = strlen(subj);
	/* One pair is enough: only whether a rule matches counts (a smaller
	 * ovector than the pattern has groups still reports the match). */
	pcre2_match_data *md = pcre2_match_data_create(1, NULL);
	if (md == NULL)
		fatal("bounce rules: out of memory");
	for (size_t i = 0; i < r->n; i++) {
		const struct rule *rule = &r->rules[i];
		/* Errors (a match limit hit) count as no match. */
		if (pcre2_match(rule->re, (PCRE2_SPTR)subj, len, 0, 0, md, r->mctx) >= 0) {
			out->action = rule->action;
			out->slowdown = rule->slowdown;
			out->category = rule->category;
			out->message = rule->message;
			out->rule_line = rule->line;
			break;
		}
	}
	pcre2_match_data_free(md);
	free(owned);
}
