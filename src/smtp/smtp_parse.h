/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Pure SMTP server-side parsing (RFC 5321, RFC 6531 SMTPUTF8, RFC 1870 SIZE,
 * RFC 6152 8BITMIME): command lines, MAIL/RCPT arguments and the DATA
 * stream.  No I/O and no allocation: every function works on caller-owned
 * buffers, enforces every cap, and is unit-tested and fuzzed.
 */
#ifndef ZMTA_SMTP_PARSE_H
#define ZMTA_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest command line accepted, CRLF excluded.  RFC 5321 4.5.3.1.4 sets
 * 512 as the minimum; extension parameters make longer lines legitimate. */
#define SMTP_LINE_MAX 2048
/* RFC 5321 4.5.3.1: local part 64, domain 255, path 256 octets. */
#define SMTP_LOCAL_MAX 64
#define SMTP_DOMAIN_MAX 255
#define SMTP_PATH_MAX 256

enum smtp_verb {
	SMTP_VERB_UNKNOWN,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	SMTP_VERB_BDAT,
};

struct smtp_command {
	enum smtp_verb verb;
	const char *name; /* the verb as a canonical upper-case string, "" if unknown */
	const char *arg;  /* points into the line: text after the verb and its
			     separating space(s), trailing spaces removed; "" if none */
};

/*
 * Splits one command line (CRLF already removed, NUL-terminated, len bytes,
 * len <= SMTP_LINE_MAX) into verb and argument; the verb is matched
 * case-insensitively and must be followed by a space or the end.  Trailing
 * spaces are cut from the line in place.  Returns 0, or -1 with *reply set to
 * a complete static reply line (e.g. "500 5.5.2 Error: bad syntax") for an
 * empty line, a NUL or other control byte in the line, or non-ASCII in the
 * verb.  An unknown verb is not an error: verb = SMTP_VERB_UNKNOWN.
 */
int smtp_command_parse(char *line, size_t len, struct smtp_command *cmd, const char **reply);

/* BODY= parameter of MAIL (RFC 6152). */
enum smtp_body {
	SMTP_BODY_UNSPECIFIED,
	SMTP_BODY_7BIT,
	SMTP_BODY_8BITMIME,
};

/* A reverse-path or forward-path, brackets and any source route removed. */
struct smtp_path {
	char addr[SMTP_PATH_MAX + 1]; /* "local@domain"; "" for the null path <> */
	size_t at;                    /* index of the '@' separating the domain; 0 for <> */
	bool utf8;                    /* contains non-ASCII (valid UTF-8) octets */
};

/* RET= of MAIL (RFC 3461 4.3): what a failure notice returns. */
enum smtp_ret {
	SMTP_RET_UNSPECIFIED,
	SMTP_RET_FULL, /* the whole message */
	SMTP_RET_HDRS, /* its header only */
};

/* RFC 3461 4.4 and 4.2: ENVID at most 100 characters, ORCPT at most 500. */
#define SMTP_ENVID_MAX 100
#define SMTP_ORCPT_MAX 500

struct smtp_mail {
	struct smtp_path path;
	int64_t size; /* SIZE= value, -1 when not given */
	enum smtp_body body;
	bool smtputf8; /* SMTPUTF8 parameter given */
	enum smtp_ret ret;
	char envid[SMTP_ENVID_MAX + 1]; /* ENVID= as given (xtext); "" when not given */
};

/* NOTIFY= of RCPT (RFC 3461 4.1): NEVER alone, or some of the others. */
#define SMTP_NOTIFY_SUCCESS 0x1
#define SMTP_NOTIFY_FAILURE 0x2
#define SMTP_NOTIFY_DELAY 0x4
#define SMTP_NOTIFY_NEVER 0x8

struct smtp_rcpt_dsn {
	unsigned notify;                /* SMTP_NOTIFY_* bits; 0 when not given */
	char orcpt[SMTP_ORCPT_MAX + 1]; /* "addr-type;xtext" as given; "" when not given */
};

/* Whether s[0..n) is xtext (RFC 3461 4): the printable ASCII characters
 * but "+" and "=", and "+" with two upper-case hexadecimal digits. */
bool smtp_xtext_valid(const char *s, size_t n);

/*
 * Parses the argument of MAIL ("FROM:<path> [params]").  Accepts "FROM:" in
 * any case, optional spaces after the colon, the null path <>, quoted local
 * parts, address literals ([192.0.2.1], [IPv6:...]), an obsolete source route
 * (<@a,@b:user@host>, ignored), and the parameters SIZE=<digits>,
 * BODY=7BIT|8BITMIME, SMTPUTF8, RET=FULL|HDRS and ENVID=<xtext> (each at
 * most once, keywords case-insensitive).  A path with non-ASCII octets is accepted only when it
 * is valid UTF-8 and SMTPUTF8 is given.  Returns 0, or -1 with *reply set to
 * a complete static reply line that says what is wrong:
 *   501 5.5.4 for syntax (missing FROM:, no brackets, garbage after path),
 *   553 5.1.7 for a bad sender address, 553 5.6.7 for non-ASCII without
 *   SMTPUTF8, 555 5.5.4 for an unknown or repeated parameter or bad value.
 */
int smtp_mail_parse(const char *arg, struct smtp_mail *mail, const char **reply);

/*
 * Parses the argument of RCPT ("TO:<path> [params]").  Like
 * smtp_mail_parse, but the null path is refused and a domain is required
 * (553 5.1.3), the parameters are NOTIFY= and ORCPT= (RFC 3461: ORCPT's
 * addr-type an atom, its address xtext; with addr-type utf-8 and SMTPUTF8
 * also UTF-8, RFC 6533), and `smtputf8` says whether the transaction's
 * MAIL had SMTPUTF8 (else non-ASCII gets 553 5.6.7).  Bad addresses get
 * 553 5.1.3.  Returns 0 or -1 with *reply.
 */
int smtp_rcpt_parse(const char *arg, bool smtputf8, struct smtp_path *rcpt,
		    struct smtp_rcpt_dsn *dsn, const char **reply);

/*
 * The DATA stream (RFC 5321 4.5.2 and 4.1.1.4): removes dot-stuffing and
 * finds the end, which is only CRLF "." CRLF.  A bare LF or bare CR anywhere
 * (including "\n.\n", "\r.\r", "\r\n.\n", "\n.\r\n") never ends the message:
 * it sets `bad_newline`, after which nothing more is output, and scanning goes
 * on for the real CRLF.CRLF so the session stays in sync; the caller then
 * refuses the whole message (defence against SMTP smuggling).  A NUL byte
 * sets `bad_nul` likewise: a receiver that drops NULs would read
 * "CRLF NUL . CRLF" as the end.
 */
struct smtp_data {
	int state;        /* private */
	bool bad_newline; /* a bare CR or LF was seen */
	bool bad_nul;     /* a NUL byte was seen */
};

enum smtp_data_status {
	SMTP_DATA_MORE, /* all input consumed, the end not reached yet */
	SMTP_DATA_END,  /* the terminating CRLF.CRLF was consumed */
};

/* Starts at the beginning of the first line (right after "354"). */
void smtp_data_init(struct smtp_data *d);

/*
 * Consumes input from in[0..inlen) and writes message bytes to out, which
 * must have room for inlen bytes.  The CRLF that ends the last line belongs
 * to the message; the final ".CRLF" does not.  Sets *outlen and *consumed
 * (== inlen unless the end was found: bytes after it are left for the next
 * command).  Resumable across any split of the input.
 */
enum smtp_data_status smtp_data_feed(struct smtp_data *d, const char *in, size_t inlen, char *out,
				     size_t *outlen, size_t *consumed);

#endif
