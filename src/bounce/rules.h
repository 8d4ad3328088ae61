/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Bounce rules: what a failed delivery attempt means.  The SMTP code alone
 * misleads (a 5xx "try again later", a 4xx "no such user"), so responses are
 * matched against an ordered list of rules, each a regular expression (PCRE2,
 * case-insensitive) with an action and a category; the first match wins.
 * Without a match: 4xx defers and 5xx rejects (category "other"), code 0 (no
 * reply) defers (category "network"), any other code defers (category
 * "protocol").
 *
 * Rules file format (config/bounces.txt is shipped and compiled in): one rule
 * per line, `ACTION CATEGORY REGEX`, or ZoneMTA's `REGEX,ACTION,CATEGORY,
 * MESSAGE` (its regex with flags "im" and no comma, as ZoneMTA splits the
 * line at commas; slowdown is a defer), where ACTION is defer or reject,
 * CATEGORY a word (blocklist, greylist, mailbox, quota, rate, policy, spam,
 * network, dns, protocol, other, ...: letters, digits, '-', '_') and REGEX
 * the rest of the line, its trailing blanks removed.  Blank lines and lines
 * starting with '#' are ignored.  The regex (UTF-8; '.' matches any character,
 * line breaks too) is matched against "CODE TEXT" of the response, e.g.
 * "550 5.1.1 No such user": a response that starts with its code is used as
 * it is ("550-" of a multi-line reply's first line made "550 "), otherwise
 * the code is put in front; with code 0 the text is used as it is.  Bytes
 * that are not UTF-8 in a response match no character but do not stop the
 * match.
 */
#ifndef ZMTA_BOUNCE_RULES_H
#define ZMTA_BOUNCE_RULES_H

#include <stdbool.h>
#include <stddef.h>

enum bounce_action {
	BOUNCE_DEFER,  /* temporary: try again later */
	BOUNCE_REJECT, /* permanent: bounce now */
};

struct bounce_verdict {
	enum bounce_action action;
	bool slowdown;        /* the rule said ZoneMTA's "slowdown" (a defer) */
	const char *category; /* borrowed from the rules */
	const char *message;  /* the rule's description (ZoneMTA's format), or NULL */
	int rule_line;        /* line of the rule that matched, 0 for the default */
};

struct bounce_rules;

/*
 * Parses rules from text; `name` labels errors.  Returns NULL and *err
 * (malloc'ed, "NAME:LINE: problem", e.g. a bad action or a regex that does
 * not compile, with PCRE2's message and offset) on the first bad line.
 */
struct bounce_rules *bounce_rules_parse(const char *name, const char *text, size_t len, char **err);
/* Reads and parses a file. */
struct bounce_rules *bounce_rules_load(const char *path, char **err);
/* The shipped rules (config/bounces.txt, compiled in). */
struct bounce_rules *bounce_rules_builtin(void);
void bounce_rules_free(struct bounce_rules *r);
/* Number of rules. */
size_t bounce_rules_count(const struct bounce_rules *r);

/*
 * Classifies a response: `code` is the SMTP reply code (or 0 for a network or
 * DNS failure with no reply, which defers unless a rule says otherwise),
 * `response` the full text ("550 5.1.1 <x@y>: no such user").  Thread-safe.
 */
void bounce_rules_classify(const struct bounce_rules *r, int code, const char *response,
			   struct bounce_verdict *out);

#endif
