/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: SMTP command lines, MAIL/RCPT arguments and the DATA stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_parse.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
/* A string literal and its length, NUL bytes included. */
#define S(x) x, sizeof(x) - 1

/* s[0..n) made printable for failure messages (one of four rotating buffers). */
static const char *esc(const char *s, size_t n)
{
	static char bufs[4][4096];
	static int which;
	char *b = bufs[which++ & 3];
	size_t o = 0;
	for (size_t i = 0; i < n && o + 5 < sizeof(bufs[0]); i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r')
			o += (size_t)sprintf(b + o, "\\r");
		else if (c == '\n')
			o += (size_t)sprintf(b + o, "\\n");
		else if (c < 0x20 || c >= 0x7f || c == '\\')
			o += (size_t)sprintf(b + o, "\\x%02x", c);
		else
			b[o++] = (char)c;
	}
	b[o] = '\0';
	return b;
}

/* ---- Command lines ---------------------------------------------------- */

static const struct {
	const char *line;
	enum smtp_verb verb;
	const char *name, *arg;
} commands_ok[] = {
    {"HELO example.com", SMTP_VERB_HELO, "HELO", "example.com"},
    {"helo example.com", SMTP_VERB_HELO, "HELO", "example.com"},
    {"HeLo example.com", SMTP_VERB_HELO, "HELO", "example.com"},
    {"EHLO  x.test  ", SMTP_VERB_EHLO, "EHLO", "x.test"},
    {"EHLO [192.0.2.1]", SMTP_VERB_EHLO, "EHLO", "[192.0.2.1]"},
    {"EHLO bücher.test", SMTP_VERB_EHLO, "EHLO", "bücher.test"},
    {"EHLO", SMTP_VERB_EHLO, "EHLO", ""},
    {"MAIL FROM:<a@b.test> SIZE=5", SMTP_VERB_MAIL, "MAIL", "FROM:<a@b.test> SIZE=5"},
    {"mail from:<>", SMTP_VERB_MAIL, "MAIL", "from:<>"},
    {"MAIL   FROM: <a@b.test>", SMTP_VERB_MAIL, "MAIL", "FROM: <a@b.test>"},
    {"RCPT TO:<a@b.test>", SMTP_VERB_RCPT, "RCPT", "TO:<a@b.test>"},
    {"DATA", SMTP_VERB_DATA, "DATA", ""},
    {"data   ", SMTP_VERB_DATA, "DATA", ""},
    {"DATA x", SMTP_VERB_DATA, "DATA", "x"},
    {"RSET", SMTP_VERB_RSET, "RSET", ""},
    {"NOOP", SMTP_VERB_NOOP, "NOOP", ""},
    {"NOOP what  ever ", SMTP_VERB_NOOP, "NOOP", "what  ever"},
    {"QUIT", SMTP_VERB_QUIT, "QUIT", ""},
    {"VRFY user", SMTP_VERB_VRFY, "VRFY", "user"},
    {"EXPN list", SMTP_VERB_EXPN, "EXPN", "list"},
    {"HELP", SMTP_VERB_HELP, "HELP", ""},
    {"STARTTLS", SMTP_VERB_STARTTLS, "STARTTLS", ""},
    {"starttls", SMTP_VERB_STARTTLS, "STARTTLS", ""},
    {"AUTH PLAIN AGFAYg==", SMTP_VERB_AUTH, "AUTH", "PLAIN AGFAYg=="},
    {"BDAT 100 LAST", SMTP_VERB_BDAT, "BDAT", "100 LAST"},
    /* unknown verbs are not errors */
    {"XYZZY plugh", SMTP_VERB_UNKNOWN, "", "plugh"},
    {"HELOX", SMTP_VERB_UNKNOWN, "", ""},
    {"HEL", SMTP_VERB_UNKNOWN, "", ""},
    {"MAILFROM:<a@b.test>", SMTP_VERB_UNKNOWN, "", ""},
    {"MAIL:FROM", SMTP_VERB_UNKNOWN, "", ""},
    {"STARTTLSX", SMTP_VERB_UNKNOWN, "", ""},
    {"GET / HTTP/1.1", SMTP_VERB_UNKNOWN, "", "/ HTTP/1.1"},
    {" HELO x", SMTP_VERB_UNKNOWN, "", "HELO x"},
    {"~", SMTP_VERB_UNKNOWN, "", ""},
};

static void test_command_ok(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(commands_ok); i++) {
		char line[SMTP_LINE_MAX + 1];
		snprintf(line, sizeof(line), "%s", commands_ok[i].line);
		struct smtp_command cmd;
		const char *reply = "unset";
		int rc = smtp_command_parse(line, strlen(line), &cmd, &reply);
		if (rc != 0)
			fail_msg("\"%s\": refused: %s", commands_ok[i].line, reply);
		if (cmd.verb != commands_ok[i].verb || strcmp(cmd.name, commands_ok[i].name) != 0 ||
		    strcmp(cmd.arg, commands_ok[i].arg) != 0)
			fail_msg("\"%s\": verb %d name \"%s\" arg \"%s\"", commands_ok[i].line,
				 cmd.verb, cmd.name, cmd.arg);
		/* arg points into the line */
		if (cmd.arg < line || cmd.arg > line + strlen(line))
			fail_msg("\"%s\": arg not inside the line", commands_ok[i].line);
	}
}

static const struct {
	const char *line;
	size_t len;
	const char *reply;
} commands_bad[] = {
    {S(""), "500 5.5.2 Error: empty command line"},
    {S(" "), "500 5.5.2 Error: empty command line"},
    {S("     "), "500 5.5.2 Error: empty command line"},
    {S("\0"), "500 5.5.2 Error: NUL byte in command line"},
    {S("HELO a\0b"), "500 5.5.2 Error: NUL byte in command line"},
    {S("NOOP\0"), "500 5.5.2 Error: NUL byte in command line"},
    {S("\0HELO"), "500 5.5.2 Error: NUL byte in command line"},
    {S("HELO a\tb"), "500 5.5.2 Error: control character in command line"},
    {S("HELO\tx"), "500 5.5.2 Error: control character in command line"},
    {S("HE\x01LO x"), "500 5.5.2 Error: control character in command line"},
    {S("NOOP \x7f"), "500 5.5.2 Error: control character in command line"},
    {S("NOOP \x1b[2J"), "500 5.5.2 Error: control character in command line"},
    {S("QUIT\r"), "500 5.5.2 Error: control character in command line"},
    {S("QUIT\n"), "500 5.5.2 Error: control character in command line"},
    {S("MAIL FROM:<a\r@b>"), "500 5.5.2 Error: control character in command line"},
    {S("HELO\xc3\xa9"), "500 5.5.2 Error: non-ASCII command verb"},
    {S("\xff"), "500 5.5.2 Error: non-ASCII command verb"},
    {S("\xc3\xa9HLO x"), "500 5.5.2 Error: non-ASCII command verb"},
};

static void test_command_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(commands_bad); i++) {
		char line[64];
		memcpy(line, commands_bad[i].line, commands_bad[i].len);
		line[commands_bad[i].len] = '\0';
		struct smtp_command cmd;
		const char *reply = NULL;
		int rc = smtp_command_parse(line, commands_bad[i].len, &cmd, &reply);
		if (rc != -1 || reply == NULL || strcmp(reply, commands_bad[i].reply) != 0)
			fail_msg("\"%s\": rc %d reply \"%s\"",
				 esc(commands_bad[i].line, commands_bad[i].len), rc,
				 reply ? reply : "(null)");
	}
}

static void test_command_trims_in_place(void **state)
{
	(void)state;
	char line[] = "NOOP  hello world   ";
	struct smtp_command cmd;
	const char *reply;
	assert_int_equal(smtp_command_parse(line, strlen(line), &cmd, &reply), 0);
	assert_string_equal(line, "NOOP  hello world");
	assert_string_equal(cmd.arg, "hello world");
	assert_ptr_equal(cmd.arg, line + 6);
}

static void test_command_line_max(void **state)
{
	(void)state;
	static char line[SMTP_LINE_MAX + 2];
	memset(line, 'x', sizeof(line) - 1);
	memcpy(line, "NOOP ", 5);
	line[SMTP_LINE_MAX] = '\0';
	struct smtp_command cmd;
	const char *reply;
	assert_int_equal(smtp_command_parse(line, SMTP_LINE_MAX, &cmd, &reply), 0);
	assert_int_equal(cmd.verb, SMTP_VERB_NOOP);
	assert_int_equal(strlen(cmd.arg), SMTP_LINE_MAX - 5);
	/* the contract says len <= SMTP_LINE_MAX; longer is still refused */
	memset(line, 'x', sizeof(line) - 1);
	memcpy(line, "NOOP ", 5);
	line[SMTP_LINE_MAX + 1] = '\0';
	assert_int_equal(smtp_command_parse(line, SMTP_LINE_MAX + 1, &cmd, &reply), -1);
	assert_string_equal(reply, "500 5.5.2 Error: command line too long");
}

/* ---- MAIL ------------------------------------------------------------- */

#define NOSIZE (-1)
#define B_NONE SMTP_BODY_UNSPECIFIED
#define B_7 SMTP_BODY_7BIT
#define B_8 SMTP_BODY_8BITMIME

static const struct {
	const char *arg;
	const char *addr;
	size_t at;
	bool utf8;
	int64_t size;
	enum smtp_body body;
	bool smtputf8;
} mail_ok[] = {
    {"FROM:<a@example.com>", "a@example.com", 1, false, NOSIZE, B_NONE, false},
    {"from:<a@example.com>", "a@example.com", 1, false, NOSIZE, B_NONE, false},
    {"From:<A.B@Example.COM>", "A.B@Example.COM", 3, false, NOSIZE, B_NONE, false},
    {"FROM:<>", "", 0, false, NOSIZE, B_NONE, false},
    {"FROM: <a@example.com>", "a@example.com", 1, false, NOSIZE, B_NONE, false},
    {"FROM:   <>", "", 0, false, NOSIZE, B_NONE, false},
    {"FROM:<a@example.com>   ", "a@example.com", 1, false, NOSIZE, B_NONE, false},
    {"FROM:<a.b.c@x-y.test>", "a.b.c@x-y.test", 5, false, NOSIZE, B_NONE, false},
    {"FROM:<!#$%&'*+-/=?^_`{|}~@x.test>", "!#$%&'*+-/=?^_`{|}~@x.test", 19, false, NOSIZE, B_NONE,
     false},
    {"FROM:<a@localhost>", "a@localhost", 1, false, NOSIZE, B_NONE, false},
    {"FROM:<a@1.2.3.4>", "a@1.2.3.4", 1, false, NOSIZE, B_NONE, false},
    {"FROM:<a@x--y.test>", "a@x--y.test", 1, false, NOSIZE, B_NONE, false},
    {"FROM:<a@xn--bcher-kva.test>", "a@xn--bcher-kva.test", 1, false, NOSIZE, B_NONE, false},
    /* quoted local parts, kept as received */
    {"FROM:<\"john doe\"@example.com>", "\"john doe\"@example.com", 10, false, NOSIZE, B_NONE,
     false},
    {"FROM:<\"a\\\"b\"@x.test>", "\"a\\\"b\"@x.test", 6, false, NOSIZE, B_NONE, false},
    {"FROM:<\"a\\\\b\"@x.test>", "\"a\\\\b\"@x.test", 6, false, NOSIZE, B_NONE, false},
    {"FROM:<\"a\\ b\"@x.test>", "\"a\\ b\"@x.test", 6, false, NOSIZE, B_NONE, false},
    {"FROM:<\"a>b\"@x.test>", "\"a>b\"@x.test", 5, false, NOSIZE, B_NONE, false},
    {"FROM:<\"a@b\"@x.test>", "\"a@b\"@x.test", 5, false, NOSIZE, B_NONE, false},
    {"FROM:<\"<>\"@x.test> SIZE=1", "\"<>\"@x.test", 4, false, 1, B_NONE, false},
    {"FROM:<\"\"@x.test>", "\"\"@x.test", 2, false, NOSIZE, B_NONE, false},
    {"FROM:<\"a..b.\"@x.test>", "\"a..b.\"@x.test", 7, false, NOSIZE, B_NONE, false},
    /* address literals */
    {"FROM:<a@[192.0.2.1]>", "a@[192.0.2.1]", 1, false, NOSIZE, B_NONE, false},
    {"FROM:<a@[0.0.0.0]>", "a@[0.0.0.0]", 1, false, NOSIZE, B_NONE, false},
    {"FROM:<a@[255.255.255.255]>", "a@[255.255.255.255]", 1, false, NOSIZE, B_NONE, false},
    {"FROM:<a@[IPv6:2001:db8::1]>", "a@[IPv6:2001:db8::1]", 1, false, NOSIZE, B_NONE, false},
    {"FROM:<a@[ipv6:::1]>", "a@[ipv6:::1]", 1, false, NOSIZE, B_NONE, false},
    {"FROM:<a@[IPv6:::]>", "a@[IPv6:::]", 1, false, NOSIZE, B_NONE, false},
    {"FROM:<a@[IPv6:1::]>", "a@[IPv6:1::]", 1, false, NOSIZE, B_NONE, false},
    {"FROM:<a@[IPv6:1:2:3:4:5:6:7:8]>", "a@[IPv6:1:2:3:4:5:6:7:8]", 1, false, NOSIZE, B_NONE,
     false},
    {"FROM:<a@[IPv6:FFFF:abcd:0:0:0:0:0:0]>", "a@[IPv6:FFFF:abcd:0:0:0:0:0:0]", 1, false, NOSIZE,
     B_NONE, false},
    {"FROM:<a@[IPv6:1:2:3:4:5:6::]>", "a@[IPv6:1:2:3:4:5:6::]", 1, false, NOSIZE, B_NONE, false},
    {"FROM:<a@[IPv6:1:2:3::4:5:6]>", "a@[IPv6:1:2:3::4:5:6]", 1, false, NOSIZE, B_NONE, false},
    {"FROM:<a@[IPv6:::ffff:192.0.2.1]>", "a@[IPv6:::ffff:192.0.2.1]", 1, false, NOSIZE, B_NONE,
     false},
    {"FROM:<a@[IPv6:::192.0.2.1]>", "a@[IPv6:::192.0.2.1]", 1, false, NOSIZE, B_NONE, false},
    {"FROM:<a@[IPv6:1:2:3:4:5:6:192.0.2.1]>", "a@[IPv6:1:2:3:4:5:6:192.0.2.1]", 1, false, NOSIZE,
     B_NONE, false},
    {"FROM:<a@[IPv6:1:2:3:4::192.0.2.1]>", "a@[IPv6:1:2:3:4::192.0.2.1]", 1, false, NOSIZE, B_NONE,
     false},
    /* source routes: checked, then dropped */
    {"FROM:<@a.test,@b.test:u@c.test>", "u@c.test", 1, false, NOSIZE, B_NONE, false},
    {"FROM:<@a.test:u@c.test>", "u@c.test", 1, false, NOSIZE, B_NONE, false},
    {"FROM:<@a:\"x y\"@c.test>", "\"x y\"@c.test", 5, false, NOSIZE, B_NONE, false},
    /* parameters */
    {"FROM:<a@x.test> SIZE=1000", "a@x.test", 1, false, 1000, B_NONE, false},
    {"FROM:<a@x.test> size=0", "a@x.test", 1, false, 0, B_NONE, false},
    {"FROM:<a@x.test> SIZE=9223372036854775807", "a@x.test", 1, false, INT64_MAX, B_NONE, false},
    {"FROM:<a@x.test> SIZE=00000000000000000001", "a@x.test", 1, false, 1, B_NONE, false},
    {"FROM:<a@x.test> BODY=8BITMIME", "a@x.test", 1, false, NOSIZE, B_8, false},
    {"FROM:<a@x.test> body=8bitmime", "a@x.test", 1, false, NOSIZE, B_8, false},
    {"FROM:<a@x.test> BODY=7BIT", "a@x.test", 1, false, NOSIZE, B_7, false},
    {"FROM:<a@x.test> Body=7bit", "a@x.test", 1, false, NOSIZE, B_7, false},
    {"FROM:<a@x.test> SMTPUTF8", "a@x.test", 1, false, NOSIZE, B_NONE, true},
    {"FROM:<a@x.test> smtputf8", "a@x.test", 1, false, NOSIZE, B_NONE, true},
    {"FROM:<a@x.test> SIZE=5 BODY=8BITMIME SMTPUTF8", "a@x.test", 1, false, 5, B_8, true},
    {"FROM:<a@x.test> SMTPUTF8 BODY=7BIT SIZE=5", "a@x.test", 1, false, 5, B_7, true},
    {"FROM:<a@x.test>   SIZE=5    SMTPUTF8   ", "a@x.test", 1, false, 5, B_NONE, true},
    {"FROM:<> SIZE=5", "", 0, false, 5, B_NONE, false},
    {"FROM:<> BODY=8BITMIME SMTPUTF8", "", 0, false, NOSIZE, B_8, true},
    /* UTF-8 with SMTPUTF8 (RFC 6531) */
    {"FROM:<δοκιμή@παράδειγμα.δοκιμή> SMTPUTF8", "δοκιμή@παράδειγμα.δοκιμή", 12, true, NOSIZE,
     B_NONE, true},
    {"FROM:<jöhn@x.test> SMTPUTF8", "jöhn@x.test", 5, true, NOSIZE, B_NONE, true},
    {"FROM:<a@bücher.test> SMTPUTF8", "a@bücher.test", 1, true, NOSIZE, B_NONE, true},
    {"FROM:<\"jö hn\"@x.test> SMTPUTF8", "\"jö hn\"@x.test", 8, true, NOSIZE, B_NONE, true},
    {"FROM:<😀@x.test> SMTPUTF8", "😀@x.test", 4, true, NOSIZE, B_NONE, true},
    {"FROM:<@bücher.test:a@x.test> SMTPUTF8", "a@x.test", 1, false, NOSIZE, B_NONE, true},
    {"FROM:<用户@例子.广告> SMTPUTF8", "用户@例子.广告", 6, true, NOSIZE, B_NONE, true},
};

static void check_mail_ok(size_t i)
{
	struct smtp_mail m;
	const char *reply = "unset";
	int rc = smtp_mail_parse(mail_ok[i].arg, &m, &reply);
	if (rc != 0)
		fail_msg("\"%s\": refused: %s", mail_ok[i].arg, reply);
	if (strcmp(m.path.addr, mail_ok[i].addr) != 0 || m.path.at != mail_ok[i].at ||
	    m.path.utf8 != mail_ok[i].utf8 || m.size != mail_ok[i].size ||
	    m.body != mail_ok[i].body || m.smtputf8 != mail_ok[i].smtputf8)
		fail_msg("\"%s\": addr \"%s\" at %zu utf8 %d size %lld body %d smtputf8 %d",
			 mail_ok[i].arg, m.path.addr, m.path.at, m.path.utf8, (long long)m.size,
			 m.body, m.smtputf8);
	if (m.path.addr[0] != '\0' && m.path.addr[m.path.at] != '@')
		fail_msg("\"%s\": addr[at] is not '@'", mail_ok[i].arg);
}

static void test_mail_ok(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(mail_ok); i++)
		check_mail_ok(i);
}

#define USAGE "501 5.5.4 Syntax: MAIL FROM:<address>"
#define NOCLOSE "501 5.5.4 Syntax: missing '>' after address"
#define AFTER "501 5.5.4 Syntax: unexpected text after address"
#define BADSYN "553 5.1.7 Bad sender address syntax"
#define BADDOM "553 5.1.7 Bad sender domain syntax"
#define BADLIT "553 5.1.7 Bad sender address literal"
#define BADROUTE "553 5.1.7 Bad source route in sender address"
#define NODOM "553 5.1.7 Sender address has no domain"
#define BADUTF8 "553 5.1.7 Sender address is not valid UTF-8"
#define NEEDUTF8 "553 5.6.7 Non-ASCII sender address requires SMTPUTF8"
#define PSYN "501 5.5.4 Syntax error in parameters"
#define UNSUP "555 5.5.4 Unsupported parameter"
#define BADSIZE "555 5.5.4 Bad SIZE value: 1 to 20 digits expected"
#define BIGSIZE "555 5.5.4 SIZE value out of range"
#define BADBODY "555 5.5.4 Unsupported BODY value: 7BIT or 8BITMIME expected"

static const struct {
	const char *arg;
	const char *reply;
} mail_bad[] = {
    /* the shape of the command */
    {"", USAGE},
    {"FROM", USAGE},
    {"FROM:", USAGE},
    {"FRO", USAGE},
    {"FROM<a@x.test>", USAGE},
    {"FROM :<a@x.test>", USAGE},
    {" FROM:<a@x.test>", USAGE},
    {"TO:<a@x.test>", USAGE},
    {"FROMAGE:<a@x.test>", USAGE},
    {"FROM:a@x.test", USAGE},
    {"FROM: a@x.test", USAGE},
    {"FROM:\"<a@x.test>\"", USAGE},
    {"FROM:<a@x.test", NOCLOSE},
    {"FROM:<", NOCLOSE},
    {"FROM:<\"a>@x.test", NOCLOSE},
    {"FROM:<\"a\\\">@x.test", NOCLOSE},
    {"FROM:<a@x.test>x", AFTER},
    {"FROM:<a@x.test>>", AFTER},
    {"FROM:<a@x.test><b@y.test>", AFTER},
    {"FROM:<a@x.test>SIZE=5", AFTER},
    {"FROM:<>x", AFTER},
    /* local part */
    {"FROM:< a@x.test>", BADSYN},
    {"FROM:<a b@x.test>", BADSYN},
    {"FROM:<.a@x.test>", BADSYN},
    {"FROM:<a.@x.test>", BADSYN},
    {"FROM:<a..b@x.test>", BADSYN},
    {"FROM:<a(b)@x.test>", BADSYN},
    {"FROM:<a,b@x.test>", BADSYN},
    {"FROM:<a[b]@x.test>", BADSYN},
    {"FROM:<a\\b@x.test>", BADSYN},
    {"FROM:<a:b@x.test>", BADSYN},
    {"FROM:<a;b@x.test>", BADSYN},
    {"FROM:<a\"b\"@x.test>", BADSYN},
    {"FROM:<\"a\"b@x.test>", BADSYN},
    {"FROM:<\"a\".b@x.test>", BADSYN},
    {"FROM:<\"a\\\xc3\xa9\"@x.test> SMTPUTF8", BADSYN},
    {"FROM:<\"a\tb\"@x.test>", BADSYN},
    {"FROM:<\"a\\\tb\"@x.test>", BADSYN},
    {"FROM:<a\x7f@x.test>", BADSYN},
    {"FROM:<a\x01@x.test>", BADSYN},
    {"FROM:<@x.test>", BADSYN},
    {"FROM:<@a.test:>", BADSYN},
    /* no domain */
    {"FROM:<a>", NODOM},
    {"FROM:<a@>", NODOM},
    {"FROM:<\"a@b\">", NODOM},
    {"FROM:<postmaster>", NODOM},
    /* domain */
    {"FROM:<a@x..test>", BADDOM},
    {"FROM:<a@.x.test>", BADDOM},
    {"FROM:<a@x.test.>", BADDOM},
    {"FROM:<a@-x.test>", BADDOM},
    {"FROM:<a@x-.test>", BADDOM},
    {"FROM:<a@x.-test>", BADDOM},
    {"FROM:<a@x_y.test>", BADDOM},
    {"FROM:<a@x.test@y.test>", BADDOM},
    {"FROM:<a@x.test >", BADDOM},
    {"FROM:<a@x y.test>", BADDOM},
    {"FROM:<a@x.test:25>", BADDOM},
    {"FROM:<a@@x.test>", BADDOM},
    {"FROM:<a@x.test]>", BADDOM},
    {"FROM:<a@x.test[1.2.3.4]>", BADDOM},
    /* address literals */
    {"FROM:<a@[192.0.2.256]>", BADLIT},
    {"FROM:<a@[192.0.2]>", BADLIT},
    {"FROM:<a@[192.0.2.1.5]>", BADLIT},
    {"FROM:<a@[192.0.2.]>", BADLIT},
    {"FROM:<a@[.192.0.2.1]>", BADLIT},
    {"FROM:<a@[192..0.2]>", BADLIT},
    {"FROM:<a@[01.2.3.4]>", BADLIT},
    {"FROM:<a@[1.2.3.00]>", BADLIT},
    {"FROM:<a@[1.2.3.1000]>", BADLIT},
    {"FROM:<a@[1.2.3.4 ]>", BADLIT},
    {"FROM:<a@[ 1.2.3.4]>", BADLIT},
    {"FROM:<a@[]>", BADLIT},
    {"FROM:<a@[1.2.3.4]x>", BADLIT},
    {"FROM:<a@[1.2.3.4]]>", BADLIT},
    {"FROM:<a@[1.2.3.4>", BADLIT},
    {"FROM:<a@[IPv6:]>", BADLIT},
    {"FROM:<a@[IPv6]>", BADLIT},
    {"FROM:<a@[IPv6:1:2:3:4:5:6:7]>", BADLIT},
    {"FROM:<a@[IPv6:1:2:3:4:5:6:7:8:9]>", BADLIT},
    {"FROM:<a@[IPv6:1::2::3]>", BADLIT},
    {"FROM:<a@[IPv6:1:::2]>", BADLIT},
    {"FROM:<a@[IPv6:12345::]>", BADLIT},
    {"FROM:<a@[IPv6:g::1]>", BADLIT},
    {"FROM:<a@[IPv6:1:2:3:4:5:6:7::]>", BADLIT},
    {"FROM:<a@[IPv6:::1:2:3:4:5:6:7]>", BADLIT},
    {"FROM:<a@[IPv6:1:2:3:4:5:6:7:1.2.3.4]>", BADLIT},
    {"FROM:<a@[IPv6:1:2:3:4:5::1.2.3.4]>", BADLIT},
    {"FROM:<a@[IPv6:1:2:3:4:5:1.2.3.4]>", BADLIT},
    {"FROM:<a@[IPv6:::1.2.3]>", BADLIT},
    {"FROM:<a@[IPv6:1.2.3.4]>", BADLIT},
    {"FROM:<a@[IPv6:1.2.3.4::]>", BADLIT},
    {"FROM:<a@[IPv6:1:]>", BADLIT},
    {"FROM:<a@[IPv6::1]>", BADLIT},
    {"FROM:<a@[IPv6:1::2:]>", BADLIT},
    {"FROM:<a@[IPv6:fe80::1%eth0]>", BADLIT},
    {"FROM:<a@[IPv6:::\xc3\xa9]> SMTPUTF8", BADLIT},
    {"FROM:<a@[x-foo:bar]>", BADLIT},
    {"FROM:<a@[localhost]>", BADLIT},
    /* source routes */
    {"FROM:<@a.test u@b.test>", BADROUTE},
    {"FROM:<@a.test,b.test:u@c.test>", BADROUTE},
    {"FROM:<@a.test,:u@c.test>", BADROUTE},
    {"FROM:<@:u@x.test>", BADROUTE},
    {"FROM:<@a..b:u@x.test>", BADROUTE},
    {"FROM:<@a.test;u@x.test>", BADROUTE},
    {"FROM:<@[1.2.3.4]:u@x.test>", BADROUTE},
    {"FROM:<@@a.test:u@x.test>", BADROUTE},
    /* parameters */
    {"FROM:<a@x.test> SIZE", BADSIZE},
    {"FROM:<a@x.test> SIZE=", BADSIZE},
    {"FROM:<a@x.test> SIZE=abc", BADSIZE},
    {"FROM:<a@x.test> SIZE=-1", BADSIZE},
    {"FROM:<a@x.test> SIZE=+1", BADSIZE},
    {"FROM:<a@x.test> SIZE=1.5", BADSIZE},
    {"FROM:<a@x.test> SIZE=1k", BADSIZE},
    {"FROM:<a@x.test> SIZE=0x10", BADSIZE},
    {"FROM:<a@x.test> SIZE==5", BADSIZE},
    {"FROM:<a@x.test> SIZE=5=5", BADSIZE},
    {"FROM:<a@x.test> SIZE=\xd9\xa5", BADSIZE},
    {"FROM:<a@x.test> SIZE=123456789012345678901", BADSIZE},
    {"FROM:<a@x.test> SIZE=000000000000000000001", BADSIZE},
    {"FROM:<a@x.test> SIZE=9223372036854775808", BIGSIZE},
    {"FROM:<a@x.test> SIZE=18446744073709551616", BIGSIZE},
    {"FROM:<a@x.test> SIZE=99999999999999999999", BIGSIZE},
    {"FROM:<a@x.test> SIZE=1 SIZE=1", "555 5.5.4 Duplicate SIZE parameter"},
    {"FROM:<a@x.test> size=1 SIZE=2", "555 5.5.4 Duplicate SIZE parameter"},
    {"FROM:<a@x.test> BODY", BADBODY},
    {"FROM:<a@x.test> BODY=", BADBODY},
    {"FROM:<a@x.test> BODY=BINARYMIME", BADBODY},
    {"FROM:<a@x.test> BODY=8BIT", BADBODY},
    {"FROM:<a@x.test> BODY=7BITS", BADBODY},
    {"FROM:<a@x.test> BODY=7BIT BODY=7BIT", "555 5.5.4 Duplicate BODY parameter"},
    {"FROM:<a@x.test> BODY=7BIT body=8BITMIME", "555 5.5.4 Duplicate BODY parameter"},
    {"FROM:<a@x.test> SMTPUTF8=yes", "555 5.5.4 SMTPUTF8 takes no value"},
    {"FROM:<a@x.test> SMTPUTF8=", "555 5.5.4 SMTPUTF8 takes no value"},
    {"FROM:<a@x.test> SMTPUTF8 SMTPUTF8", "555 5.5.4 Duplicate SMTPUTF8 parameter"},
    {"FROM:<a@x.test> AUTH=<>", UNSUP},
    {"FROM:<a@x.test> X-FOO", UNSUP},
    {"FROM:<a@x.test> SIZE5", UNSUP},
    {"FROM:<a@x.test> SIZE=5 X", UNSUP},
    {"FROM:<a@x.test> =5", PSYN},
    {"FROM:<a@x.test> -X", PSYN},
    {"FROM:<a@x.test> SI_ZE=1", PSYN},
    {"FROM:<a@x.test> SIZE\t=1", PSYN},
    {"FROM:<a@x.test> \xc3\xa9=1", PSYN},
    {"FROM:<a@x.test> <b@y.test>", PSYN},
    /* the first error from the left wins */
    {"FROM:<a@x.test> X-FOO SIZE=abc", UNSUP},
    {"FROM:<a@x..test> X-FOO", BADDOM},
    /* UTF-8 without SMTPUTF8 */
    {"FROM:<jöhn@x.test>", NEEDUTF8},
    {"FROM:<a@bücher.test>", NEEDUTF8},
    {"FROM:<\"jöhn\"@x.test>", NEEDUTF8},
    {"FROM:<@bücher.test:a@x.test>", NEEDUTF8},
    {"FROM:<jöhn@x.test> SIZE=10 BODY=8BITMIME", NEEDUTF8},
    /* invalid UTF-8: refused with or without SMTPUTF8 */
    {"FROM:<a\xff@x.test>", BADUTF8},
    {"FROM:<a\xff@x.test> SMTPUTF8", BADUTF8},
    {"FROM:<a\xc3@x.test> SMTPUTF8", BADUTF8},
    {"FROM:<a@b\xc3.test> SMTPUTF8", BADUTF8},
    {"FROM:<\"a\xc3\"@x.test> SMTPUTF8", BADUTF8},
    {"FROM:<@b\xc3:a@x.test> SMTPUTF8", BADUTF8},
};

static void test_mail_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(mail_bad); i++) {
		struct smtp_mail m;
		const char *reply = NULL;
		int rc = smtp_mail_parse(mail_bad[i].arg, &m, &reply);
		if (rc != -1 || reply == NULL || strcmp(reply, mail_bad[i].reply) != 0)
			fail_msg("\"%s\": rc %d reply \"%s\" want \"%s\"",
				 esc(mail_bad[i].arg, strlen(mail_bad[i].arg)), rc,
				 reply ? reply : "(null)", mail_bad[i].reply);
	}
}

/*
 * Single characters, each put in a Dot-string, a quoted local part, and a
 * domain label, with SMTPUTF8: valid UTF-8 is accepted, and every malformed
 * form refused (RFC 3629: overlongs, surrogates, above U+10FFFF, stray or
 * missing continuation bytes).
 */
static const struct {
	const char *seq;
	bool ok;
} utf8_cases[] = {
    {"\xc2\x80", true},         /* U+0080, smallest 2-byte */
    {"\xc3\xa9", true},         /* é */
    {"\xdf\xbf", true},         /* U+07FF */
    {"\xe0\xa0\x80", true},     /* U+0800, smallest 3-byte */
    {"\xe2\x82\xac", true},     /* € */
    {"\xed\x9f\xbf", true},     /* U+D7FF, below the surrogates */
    {"\xee\x80\x80", true},     /* U+E000, above them */
    {"\xef\xbf\xbf", true},     /* U+FFFF */
    {"\xf0\x90\x80\x80", true}, /* U+10000, smallest 4-byte */
    {"\xf0\x9f\x98\x80", true}, /* 😀 */
    {"\xf4\x8f\xbf\xbf", true}, /* U+10FFFF, the last */
    {"\x80", false},            /* stray continuation */
    {"\xbf", false},
    {"\xc0\x80", false}, /* overlong NUL */
    {"\xc0\xaf", false}, /* overlong '/' */
    {"\xc1\xbf", false},
    {"\xe0\x80\xaf", false},
    {"\xe0\x9f\xbf", false}, /* overlong U+07FF */
    {"\xf0\x80\x80\xaf", false},
    {"\xf0\x8f\xbf\xbf", false},         /* overlong U+FFFF */
    {"\xed\xa0\x80", false},             /* U+D800 */
    {"\xed\xbf\xbf", false},             /* U+DFFF */
    {"\xed\xa0\x80\xed\xb0\x80", false}, /* a CESU-8 surrogate pair */
    {"\xf4\x90\x80\x80", false},         /* U+110000 */
    {"\xf5\x80\x80\x80", false},
    {"\xf7\xbf\xbf\xbf", false},
    {"\xf8\x88\x80\x80\x80", false}, /* 5-byte form */
    {"\xfc\x84\x80\x80\x80\x80", false},
    {"\xfe", false},
    {"\xff", false},
    {"\xc3", false}, /* truncated */
    {"\xe2\x82", false},
    {"\xf0\x9f\x98", false},
    {"\xc3\x28", false}, /* bad continuation */
    {"\xe2\x28\xa1", false},
    {"\xe2\x82\x28", false},
    {"\xf0\x28\x8c\xbc", false},
    {"\xf0\x90\x28\xbc", false},
    {"\xf0\x90\x8c\x28", false},
    {"\xc3\xa9\xa9", false}, /* one continuation too many */
};

static void test_utf8_validation(void **state)
{
	(void)state;
	static const char *const forms[] = {
	    "FROM:<x%sy@x.test> SMTPUTF8",
	    "FROM:<\"x%sy\"@x.test> SMTPUTF8",
	    "FROM:<a@x%sy.test> SMTPUTF8",
	    "FROM:<@x%sy.test:a@x.test> SMTPUTF8",
	};
	for (size_t i = 0; i < N(utf8_cases); i++) {
		for (size_t f = 0; f < N(forms); f++) {
			char arg[128];
			snprintf(arg, sizeof(arg), forms[f], utf8_cases[i].seq);
			struct smtp_mail m;
			const char *reply = NULL;
			int rc = smtp_mail_parse(arg, &m, &reply);
			if (utf8_cases[i].ok && rc != 0)
				fail_msg("\"%s\": refused: %s", esc(arg, strlen(arg)), reply);
			if (!utf8_cases[i].ok && (rc != -1 || strcmp(reply, BADUTF8) != 0))
				fail_msg("\"%s\": rc %d reply %s", esc(arg, strlen(arg)), rc,
					 reply ? reply : "(null)");
			if (rc == 0 && m.path.utf8 != (f != 3))
				fail_msg("\"%s\": utf8 flag %d", esc(arg, strlen(arg)),
					 m.path.utf8);
		}
		/* the same character without SMTPUTF8 */
		char arg[128];
		snprintf(arg, sizeof(arg), "FROM:<x%sy@x.test>", utf8_cases[i].seq);
		struct smtp_mail m;
		const char *reply = NULL;
		assert_int_equal(smtp_mail_parse(arg, &m, &reply), -1);
		assert_string_equal(reply, utf8_cases[i].ok ? NEEDUTF8 : BADUTF8);
	}
}

/* A domain of exactly n octets: labels of 63 'd' (or fewer) joined by dots. */
static void make_domain(char *out, size_t n)
{
	size_t o = 0;
	while (o < n) {
		size_t left = n - o;
		size_t label = left > 64 ? 63 : left;
		if (left > 63 && left < 66) /* never leave a last label of 0 or a lone dot */
			label = left - 3;
		memset(out + o, 'd', label);
		o += label;
		if (o < n)
			out[o++] = '.';
	}
	out[o] = '\0';
}

static void test_path_lengths(void **state)
{
	(void)state;
	static const struct {
		size_t local, domain;
		bool quoted;
		const char *reply; /* NULL: accepted */
	} cases[] = {
	    {64, 10, false, NULL},
	    {65, 10, false, "553 5.1.7 Sender local part longer than 64 octets"},
	    {64, 10, true, NULL}, /* the quotes count */
	    {65, 10, true, "553 5.1.7 Sender local part longer than 64 octets"},
	    {1, 254, false, NULL}, /* "a@" + 254 = 256, the longest path */
	    {2, 254, false, "553 5.1.7 Sender address longer than 256 octets"},
	    /* 255 is the domain limit, but "x@" and 255 octets make 257 */
	    {1, 255, false, "553 5.1.7 Sender address longer than 256 octets"},
	    {1, 256, false, "553 5.1.7 Sender domain longer than 255 octets"},
	    {64, 191, false, NULL}, /* 64 + 1 + 191 = 256 */
	    {64, 192, false, "553 5.1.7 Sender address longer than 256 octets"},
	    {64, 1000, false, "553 5.1.7 Sender domain longer than 255 octets"},
	};
	for (size_t i = 0; i < N(cases); i++) {
		char local[128], domain[1100], arg[1400];
		memset(local, 'l', cases[i].local);
		local[cases[i].local] = '\0';
		if (cases[i].quoted) {
			local[0] = '"';
			local[cases[i].local - 1] = '"';
		}
		make_domain(domain, cases[i].domain);
		assert_int_equal(strlen(domain), cases[i].domain);
		snprintf(arg, sizeof(arg), "FROM:<%s@%s>", local, domain);
		struct smtp_mail m;
		const char *reply = NULL;
		int rc = smtp_mail_parse(arg, &m, &reply);
		if (cases[i].reply == NULL && rc != 0)
			fail_msg("case %zu: refused: %s", i, reply);
		if (cases[i].reply != NULL && (rc != -1 || strcmp(reply, cases[i].reply) != 0))
			fail_msg("case %zu: rc %d reply %s", i, rc, reply ? reply : "(null)");
		if (rc == 0) {
			assert_int_equal(strlen(m.path.addr), cases[i].local + 1 + cases[i].domain);
			assert_int_equal(m.path.at, cases[i].local);
		}
		/* the same limits for recipients */
		snprintf(arg, sizeof(arg), "TO:<%s@%s>", local, domain);
		struct smtp_path r;
		struct smtp_rcpt_dsn dsn;
		int rrc = smtp_rcpt_parse(arg, false, &r, &dsn, &reply);
		if (rrc != rc)
			fail_msg("case %zu: RCPT rc %d, MAIL rc %d", i, rrc, rc);
		if (rrc != 0 && strncmp(reply, "553 5.1.3 Recipient ", 20) != 0)
			fail_msg("case %zu: RCPT reply %s", i, reply);
	}
}

static void test_label_lengths(void **state)
{
	(void)state;
	char label[80], arg[200];
	struct smtp_mail m;
	const char *reply;
	memset(label, 'd', 63);
	label[63] = '\0';
	snprintf(arg, sizeof(arg), "FROM:<a@%s.test>", label);
	assert_int_equal(smtp_mail_parse(arg, &m, &reply), 0);
	snprintf(arg, sizeof(arg), "FROM:<a@x.%s>", label);
	assert_int_equal(smtp_mail_parse(arg, &m, &reply), 0);
	strcat(label, "d");
	snprintf(arg, sizeof(arg), "FROM:<a@%s.test>", label);
	assert_int_equal(smtp_mail_parse(arg, &m, &reply), -1);
	assert_string_equal(reply, "553 5.1.7 Sender domain label longer than 63 octets");
	snprintf(arg, sizeof(arg), "FROM:<a@x.%s>", label);
	assert_int_equal(smtp_mail_parse(arg, &m, &reply), -1);
	assert_string_equal(reply, "553 5.1.7 Sender domain label longer than 63 octets");
	/* a U-label's limit is on its A-label form, not computed: 40 × "é" (80 octets) */
	char ulabel[100] = "";
	for (int i = 0; i < 40; i++)
		strcat(ulabel, "é");
	snprintf(arg, sizeof(arg), "FROM:<a@%s.test> SMTPUTF8", ulabel);
	assert_int_equal(smtp_mail_parse(arg, &m, &reply), 0);
	assert_true(m.path.utf8);
}

static void test_mail_output_reset(void **state)
{
	(void)state;
	/* fields are reset on every call, success or not */
	struct smtp_mail m;
	const char *reply;
	assert_int_equal(smtp_mail_parse("FROM:<a@x.test> SIZE=5 BODY=7BIT SMTPUTF8", &m, &reply),
			 0);
	assert_int_equal(smtp_mail_parse("FROM:<>", &m, &reply), 0);
	assert_int_equal(m.size, -1);
	assert_int_equal(m.body, SMTP_BODY_UNSPECIFIED);
	assert_false(m.smtputf8);
	assert_string_equal(m.path.addr, "");
	assert_int_equal(m.path.at, 0);
	assert_false(m.path.utf8);
	assert_null(reply);
}

/* ---- RCPT ------------------------------------------------------------- */

static const struct {
	const char *arg;
	bool smtputf8;
	const char *addr;
	size_t at;
	bool utf8;
} rcpt_ok[] = {
    {"TO:<a@x.test>", false, "a@x.test", 1, false},
    {"to:<a@x.test>", false, "a@x.test", 1, false},
    {"To: <a@x.test>", false, "a@x.test", 1, false},
    {"TO:<a@x.test>  ", false, "a@x.test", 1, false},
    {"TO:<Postmaster@x.test>", false, "Postmaster@x.test", 10, false},
    {"TO:<@r.test:a@x.test>", false, "a@x.test", 1, false},
    {"TO:<@r.test,@s.test:a@x.test>", false, "a@x.test", 1, false},
    {"TO:<\"a b\"@x.test>", false, "\"a b\"@x.test", 5, false},
    {"TO:<\"a\\\"b\"@x.test>", false, "\"a\\\"b\"@x.test", 6, false},
    {"TO:<a@[192.0.2.1]>", false, "a@[192.0.2.1]", 1, false},
    {"TO:<a@[IPv6:::1]>", false, "a@[IPv6:::1]", 1, false},
    {"TO:<a@x.test>", true, "a@x.test", 1, false},
    {"TO:<jöhn@bücher.test>", true, "jöhn@bücher.test", 5, true},
    {"TO:<\"jö hn\"@x.test>", true, "\"jö hn\"@x.test", 8, true},
};

static void test_rcpt_ok(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(rcpt_ok); i++) {
		struct smtp_path r;
		struct smtp_rcpt_dsn dsn;
		const char *reply = "unset";
		int rc = smtp_rcpt_parse(rcpt_ok[i].arg, rcpt_ok[i].smtputf8, &r, &dsn, &reply);
		if (rc != 0)
			fail_msg("\"%s\": refused: %s", rcpt_ok[i].arg, reply);
		if (strcmp(r.addr, rcpt_ok[i].addr) != 0 || r.at != rcpt_ok[i].at ||
		    r.utf8 != rcpt_ok[i].utf8)
			fail_msg("\"%s\": addr \"%s\" at %zu utf8 %d", rcpt_ok[i].arg, r.addr, r.at,
				 r.utf8);
	}
}

#define BAD_NOTIFY                                                                                 \
	"501 5.5.4 Bad NOTIFY value: NEVER, or SUCCESS, FAILURE and DELAY separated by commas, "   \
	"expected"
#define BAD_ORCPT "501 5.5.4 Bad ORCPT value: addr-type;xtext expected"

static const struct {
	const char *arg;
	bool smtputf8;
	const char *reply;
} rcpt_bad[] = {
    {"TO:<>", false, "553 5.1.3 Null recipient address not allowed"},
    {"TO: <>", true, "553 5.1.3 Null recipient address not allowed"},
    {"TO:<> NOTIFY=NEVER", false, "553 5.1.3 Null recipient address not allowed"},
    {"TO:<a>", false, "553 5.1.3 Recipient address has no domain"},
    {"TO:<a@>", false, "553 5.1.3 Recipient address has no domain"},
    {"TO:<Postmaster>", false, "553 5.1.3 Recipient address has no domain"},
    {"TO:<a@x.test> NOTIFY=", false, BAD_NOTIFY},
    {"TO:<a@x.test> NOTIFY", false, BAD_NOTIFY},
    {"TO:<a@x.test> NOTIFY=NEVER,SUCCESS", false, BAD_NOTIFY},
    {"TO:<a@x.test> NOTIFY=SUCCESS,SUCCESS", false, BAD_NOTIFY},
    {"TO:<a@x.test> NOTIFY=SUCCESS,", false, BAD_NOTIFY},
    {"TO:<a@x.test> NOTIFY=ALWAYS", false, BAD_NOTIFY},
    {"TO:<a@x.test> NOTIFY=DELAY NOTIFY=DELAY", false, "555 5.5.4 Duplicate NOTIFY parameter"},
    {"TO:<a@x.test> ORCPT=a@x.test", false, BAD_ORCPT},
    {"TO:<a@x.test> ORCPT=rfc822;", false, BAD_ORCPT},
    {"TO:<a@x.test> ORCPT=;a@x.test", false, BAD_ORCPT},
    {"TO:<a@x.test> ORCPT=rfc822;a=b@x.test", false, BAD_ORCPT},
    {"TO:<a@x.test> ORCPT=rfc822;a+2@x.test", false, BAD_ORCPT},
    {"TO:<a@x.test> ORCPT=rfc822;a+2b@x.test", false, BAD_ORCPT},
    {"TO:<a@x.test> ORCPT=rfc822;j\xc3\xb6hn@x.test", true, BAD_ORCPT},
    {"TO:<a@x.test> ORCPT=utf-8;j\xc3\xb6hn@x.test", false, BAD_ORCPT},
    {"TO:<a@x.test> ORCPT=utf-8;j\xffhn@x.test", true, BAD_ORCPT},
    {"TO:<a@x.test> ORCPT=rfc822;a@x.test ORCPT=rfc822;b@x.test", false,
     "555 5.5.4 Duplicate ORCPT parameter"},
    {"TO:<a@x.test> SIZE=1", false, "555 5.5.4 Unsupported parameter"},
    {"TO:<a@x.test> SMTPUTF8", true, "555 5.5.4 Unsupported parameter"},
    {"TO:<a@x.test> =x", false, "501 5.5.4 Syntax error in parameters"},
    {"FROM:<a@x.test>", false, "501 5.5.4 Syntax: RCPT TO:<address>"},
    {"", false, "501 5.5.4 Syntax: RCPT TO:<address>"},
    {"TO", false, "501 5.5.4 Syntax: RCPT TO:<address>"},
    {"TO :<a@x.test>", false, "501 5.5.4 Syntax: RCPT TO:<address>"},
    {"TO:a@x.test", false, "501 5.5.4 Syntax: RCPT TO:<address>"},
    {"TO:<a@x.test", false, "501 5.5.4 Syntax: missing '>' after address"},
    {"TO:<a@x.test>x", false, "501 5.5.4 Syntax: unexpected text after address"},
    {"TO:<a b@x.test>", false, "553 5.1.3 Bad recipient address syntax"},
    {"TO:<a..b@x.test>", false, "553 5.1.3 Bad recipient address syntax"},
    {"TO:<a@x..test>", false, "553 5.1.3 Bad recipient domain syntax"},
    {"TO:<a@[1.2.3.256]>", false, "553 5.1.3 Bad recipient address literal"},
    {"TO:<@x;a@y.test>", false, "553 5.1.3 Bad source route in recipient address"},
    {"TO:<jöhn@x.test>", false, "553 5.6.7 Non-ASCII recipient address requires SMTPUTF8"},
    {"TO:<a@bücher.test>", false, "553 5.6.7 Non-ASCII recipient address requires SMTPUTF8"},
    {"TO:<@bücher.test:a@x.test>", false,
     "553 5.6.7 Non-ASCII recipient address requires SMTPUTF8"},
    {"TO:<a\xff@x.test>", true, "553 5.1.3 Recipient address is not valid UTF-8"},
    {"TO:<a\xed\xa0\x80@x.test>", true, "553 5.1.3 Recipient address is not valid UTF-8"},
};

static void test_rcpt_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(rcpt_bad); i++) {
		struct smtp_path r;
		struct smtp_rcpt_dsn dsn;
		const char *reply = NULL;
		int rc = smtp_rcpt_parse(rcpt_bad[i].arg, rcpt_bad[i].smtputf8, &r, &dsn, &reply);
		if (rc != -1 || reply == NULL || strcmp(reply, rcpt_bad[i].reply) != 0)
			fail_msg("\"%s\": rc %d reply \"%s\" want \"%s\"",
				 esc(rcpt_bad[i].arg, strlen(rcpt_bad[i].arg)), rc,
				 reply ? reply : "(null)", rcpt_bad[i].reply);
	}
}

/* RFC 3461: RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT. */
static void test_dsn_parameters(void **state)
{
	(void)state;
	struct smtp_mail m;
	const char *reply;
	assert_int_equal(smtp_mail_parse("FROM:<a@x.test> RET=HDRS ENVID=QQ+2B1", &m, &reply), 0);
	assert_int_equal(m.ret, SMTP_RET_HDRS);
	assert_string_equal(m.envid, "QQ+2B1");
	assert_int_equal(smtp_mail_parse("FROM:<> ret=full", &m, &reply), 0);
	assert_int_equal(m.ret, SMTP_RET_FULL);
	assert_string_equal(m.envid, "");
	const char *bad[][2] = {
	    {"FROM:<a@x.test> RET=ALL", "501 5.5.4 Bad RET value: FULL or HDRS expected"},
	    {"FROM:<a@x.test> RET", "501 5.5.4 Bad RET value: FULL or HDRS expected"},
	    {"FROM:<a@x.test> RET=FULL RET=HDRS", "555 5.5.4 Duplicate RET parameter"},
	    {"FROM:<a@x.test> ENVID=", "501 5.5.4 Bad ENVID value: 1 to 100 characters of xtext "
				       "expected"},
	    {"FROM:<a@x.test> ENVID=a=b", "501 5.5.4 Bad ENVID value: 1 to 100 characters of "
					  "xtext expected"},
	    {"FROM:<a@x.test> ENVID=a ENVID=b", "555 5.5.4 Duplicate ENVID parameter"},
	};
	for (size_t i = 0; i < N(bad); i++) {
		reply = NULL;
		if (smtp_mail_parse(bad[i][0], &m, &reply) != -1 || strcmp(reply, bad[i][1]) != 0)
			fail_msg("\"%s\": reply %s", bad[i][0], reply ? reply : "(null)");
	}
	char envid[160];
	snprintf(envid, sizeof(envid), "FROM:<a@x.test> ENVID=%0101d", 0);
	assert_int_equal(smtp_mail_parse(envid, &m, &reply), -1);
	snprintf(envid, sizeof(envid), "FROM:<a@x.test> ENVID=%0100d", 0);
	assert_int_equal(smtp_mail_parse(envid, &m, &reply), 0);

	struct smtp_path r;
	struct smtp_rcpt_dsn dsn;
	assert_int_equal(smtp_rcpt_parse("TO:<a@x.test> NOTIFY=delay,FAILURE "
					 "ORCPT=rfc822;A+2BB@x.test",
					 false, &r, &dsn, &reply),
			 0);
	assert_int_equal(dsn.notify, SMTP_NOTIFY_DELAY | SMTP_NOTIFY_FAILURE);
	assert_string_equal(dsn.orcpt, "rfc822;A+2BB@x.test");
	assert_int_equal(smtp_rcpt_parse("TO:<a@x.test> NOTIFY=NEVER", false, &r, &dsn, &reply), 0);
	assert_int_equal(dsn.notify, SMTP_NOTIFY_NEVER);
	assert_string_equal(dsn.orcpt, "");
	assert_int_equal(smtp_rcpt_parse("TO:<a@x.test>", false, &r, &dsn, &reply), 0);
	assert_int_equal(dsn.notify, 0);
	/* RFC 6533: a UTF-8 original recipient, with SMTPUTF8 */
	assert_int_equal(
	    smtp_rcpt_parse("TO:<a@x.test> ORCPT=utf-8;j\xc3\xb6hn@x.test", true, &r, &dsn, &reply),
	    0);
	assert_true(smtp_xtext_valid("a+41b", 5));
	assert_false(smtp_xtext_valid("a+4", 3));
	assert_false(smtp_xtext_valid("a b", 3));
	assert_false(smtp_xtext_valid("a+4a", 4));
}

/* Every reply is a complete line: a 2xx-5xx code, a space, an enhanced code. */
static void test_reply_format(void **state)
{
	(void)state;
	const char *replies[N(mail_bad) + N(rcpt_bad)];
	size_t n = 0;
	for (size_t i = 0; i < N(mail_bad); i++)
		replies[n++] = mail_bad[i].reply;
	for (size_t i = 0; i < N(rcpt_bad); i++)
		replies[n++] = rcpt_bad[i].reply;
	for (size_t i = 0; i < n; i++) {
		const char *r = replies[i];
		if (strlen(r) < 12 || (r[0] != '5' && r[0] != '4') || r[3] != ' ' || r[5] != '.' ||
		    r[4] != r[0] || strchr(r, '\r') || strchr(r, '\n'))
			fail_msg("bad reply line \"%s\"", r);
	}
}

/* ---- DATA ------------------------------------------------------------- */

struct data_result {
	char out[256];
	size_t outlen, consumed;
	enum smtp_data_status status;
	bool bad;
};

/*
 * Feeds in[0..n) cut at cuts[0..ncuts) (increasing offsets), each piece in a
 * buffer of its exact size (so AddressSanitizer sees any overread) with an
 * output buffer of exactly the piece's size.  Stops at the end of the data.
 */
static void feed_pieces(const char *in, size_t n, const size_t *cuts, size_t ncuts,
			struct data_result *r)
{
	struct smtp_data d;
	smtp_data_init(&d);
	r->outlen = r->consumed = 0;
	r->status = SMTP_DATA_MORE;
	size_t start = 0;
	for (size_t k = 0; k <= ncuts; k++) {
		size_t stop = k < ncuts ? cuts[k] : n;
		size_t len = stop - start;
		char *piece = malloc(len ? len : 1);
		char *out = malloc(len ? len : 1);
		assert_non_null(piece);
		assert_non_null(out);
		memcpy(piece, in + start, len);
		size_t outlen = 99999, consumed = 99999;
		r->status = smtp_data_feed(&d, piece, len, out, &outlen, &consumed);
		if (outlen > len || consumed > len || outlen > consumed)
			fail_msg("\"%s\": piece %zu: outlen %zu consumed %zu of %zu", esc(in, n), k,
				 outlen, consumed, len);
		if (r->status == SMTP_DATA_MORE && consumed != len)
			fail_msg("\"%s\": MORE but consumed %zu of %zu", esc(in, n), consumed, len);
		assert_true(r->outlen + outlen <= sizeof(r->out));
		memcpy(r->out + r->outlen, out, outlen);
		r->outlen += outlen;
		r->consumed += consumed;
		free(piece);
		free(out);
		if (r->status == SMTP_DATA_END)
			break;
		start = stop;
	}
	r->bad = d.bad_newline;
}

static void expect_same(const char *in, size_t n, const char *how, const struct data_result *want,
			const struct data_result *got)
{
	if (got->status != want->status || got->bad != want->bad ||
	    got->consumed != want->consumed || got->outlen != want->outlen ||
	    memcmp(got->out, want->out, want->outlen) != 0)
		fail_msg("\"%s\" %s: status %d bad %d consumed %zu out \"%s\"; "
			 "want status %d bad %d consumed %zu out \"%s\"",
			 esc(in, n), how, got->status, got->bad, got->consumed,
			 esc(got->out, got->outlen), want->status, want->bad, want->consumed,
			 esc(want->out, want->outlen));
}

/* Whole, byte by byte, cut once anywhere, and cut twice anywhere: all the same. */
static void check_every_split(const char *in, size_t n, const struct data_result *want)
{
	struct data_result got;
	char how[64];
	feed_pieces(in, n, NULL, 0, &got);
	expect_same(in, n, "whole", want, &got);
	size_t cuts[256];
	assert_true(n < N(cuts));
	for (size_t i = 0; i < n; i++)
		cuts[i] = i + 1;
	feed_pieces(in, n, cuts, n ? n - 1 : 0, &got);
	expect_same(in, n, "byte by byte", want, &got);
	for (size_t i = 0; i <= n; i++) {
		for (size_t j = i; j <= n; j++) {
			size_t two[2] = {i, j};
			feed_pieces(in, n, two, 2, &got);
			snprintf(how, sizeof(how), "cut at %zu and %zu", i, j);
			expect_same(in, n, how, want, &got);
		}
	}
}

#define MORE SMTP_DATA_MORE
#define END SMTP_DATA_END

static const struct {
	const char *in;
	size_t inlen;
	const char *out;
	size_t outlen;
	enum smtp_data_status status;
	bool bad;
	size_t left; /* bytes after the end, not consumed */
} data_cases[] = {
    /* the end, the empty message, bytes left for the next command */
    {S(""), S(""), MORE, false, 0},
    {S(".\r\n"), S(""), END, false, 0},
    {S(".\r\nQUIT\r\n"), S(""), END, false, 6},
    {S("a\r\n.\r\n"), S("a\r\n"), END, false, 0},
    {S("\r\n.\r\n"), S("\r\n"), END, false, 0},
    {S("\r\n\r\n.\r\n"), S("\r\n\r\n"), END, false, 0},
    {S("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"), S("Subject: x\r\n\r\nbody\r\n"), END, false, 6},
    {S("a\r\n.\r\n.\r\n"), S("a\r\n"), END, false, 3},
    {S("a\r\n.\r\nMAIL FROM:<>\r\n"), S("a\r\n"), END, false, 14},
    /* not the end yet */
    {S("a"), S("a"), MORE, false, 0},
    {S("a\r\n"), S("a\r\n"), MORE, false, 0},
    {S("a\r\n."), S("a\r\n"), MORE, false, 0},
    {S("a\r\n.\r"), S("a\r\n"), MORE, false, 0},
    {S("a\r"), S("a\r"), MORE, false, 0},
    {S("\r"), S("\r"), MORE, false, 0},
    {S("."), S(""), MORE, false, 0},
    {S("a\r\n. \r\n"), S("a\r\n \r\n"), MORE, false, 0},
    {S("a\r\n.\r\n"
       "x"),
     S("a\r\n"), END, false, 1},
    /* dot-unstuffing: only the first dot of a line, only at a line start */
    {S("..\r\n.\r\n"), S(".\r\n"), END, false, 0},
    {S(".a\r\n.\r\n"), S("a\r\n"), END, false, 0},
    {S("..a\r\n.\r\n"), S(".a\r\n"), END, false, 0},
    {S("a\r\n...\r\n.\r\n"), S("a\r\n..\r\n"), END, false, 0},
    {S("a.\r\n.b\r\n. \r\n.\r\n"), S("a.\r\nb\r\n \r\n"), END, false, 0},
    {S("a\r\n..\r\n.\r\n"), S("a\r\n.\r\n"), END, false, 0},
    {S("a\r\n.\r\r\n"
       "x"),
     S("a\r\n"), MORE, true, 0},
    {S("a.b.\r\n"), S("a.b.\r\n"), MORE, false, 0},
    /* any byte value passes through */
    {S("\0\xff\xc3\xa9\x7f\t\r\n.\r\n"), S("\0\xff\xc3\xa9\x7f\t\r\n"), END, false, 0},
    {S(".\0\r\n.\r\n"), S("\0\r\n"), END, false, 0},
    /* smuggling: a bare LF or CR never ends the message, nothing is output after it */
    {S("a\n.\n"), S("a"), MORE, true, 0},
    {S("a\n.\nMAIL FROM:<x@y.test>\r\n"), S("a"), MORE, true, 0},
    {S("a\r.\r"), S("a\r"), MORE, true, 0},
    {S("a\r.\rMAIL FROM:<x@y.test>\r\n"), S("a\r"), MORE, true, 0},
    {S("a\r\n.\n"), S("a\r\n"), MORE, true, 0},
    {S("a\r\n.\nRCPT TO:<x@y.test>\r\n"), S("a\r\n"), MORE, true, 0},
    {S("a\n.\r\n"), S("a"), MORE, true, 0},
    {S("a\n.\r\nDATA\r\n"), S("a"), MORE, true, 0},
    {S("a\r.\r\n"), S("a\r"), MORE, true, 0},
    {S("a\r.\r\nDATA\r\n"), S("a\r"), MORE, true, 0},
    {S("a\r\n.\r"
       "x"),
     S("a\r\n"), MORE, true, 0},
    {S("a\r\n.\rMAIL FROM:<x@y.test>\r\n"), S("a\r\n"), MORE, true, 0},
    {S("\n.\n"), S(""), MORE, true, 0},
    {S("\r.\r"), S("\r"), MORE, true, 0},
    {S("\n.\r\n"), S(""), MORE, true, 0},
    {S(".\n"), S(""), MORE, true, 0},
    {S(".\n.\r\n"), S(""), MORE, true, 0},
    {S(".\r.\r\n"), S(""), MORE, true, 0},
    {S("\n"), S(""), MORE, true, 0},
    {S("a\r\n\n.\r\n"), S("a\r\n"), MORE, true, 0},
    {S("a\r\n\r.\r\n"), S("a\r\n\r"), MORE, true, 0},
    {S("a\r\n.\n.\r\n"), S("a\r\n"), MORE, true, 0},
    {S("a\r\n\n\r\n.\n"), S("a\r\n"), MORE, true, 0},
    /* bare LF or CR mid-line: output stops, the real end is still found */
    {S("a\nb\r\n.\r\n"), S("a"), END, true, 0},
    {S("a\rb\r\n.\r\n"), S("a\r"), END, true, 0},
    {S("a\n\r\n.\r\nQUIT\r\n"), S("a"), END, true, 6},
    {S("a\n.\nb\r\n.\r\n"), S("a"), END, true, 0},
    {S("a\r.\rb\r\n.\r\nQUIT\r\n"), S("a\r"), END, true, 6},
    {S("a\n.\r\nb\r\n.\r\n"), S("a"), END, true, 0},
    {S("a\r\n.\rb\r\n.\r\nQUIT\r\n"), S("a\r\n"), END, true, 6},
    {S("\r\n.\n\r\n.\r\n"), S("\r\n"), END, true, 0},
    {S("\r\r\n.\r\n"), S("\r"), END, true, 0},
    {S("a\r\n.\r\r\n.\r\n"), S("a\r\n"), END, true, 0},
    {S("a\r\r\r\n.\r\n"), S("a\r"), END, true, 0},
    {S("line1\r\nline2\nline3\r\n..x\r\n.\r\n"), S("line1\r\nline2"), END, true, 0},
};

static void test_data_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(data_cases); i++) {
		struct data_result want;
		memcpy(want.out, data_cases[i].out, data_cases[i].outlen);
		want.outlen = data_cases[i].outlen;
		want.status = data_cases[i].status;
		want.bad = data_cases[i].bad;
		want.consumed = data_cases[i].inlen - data_cases[i].left;
		check_every_split(data_cases[i].in, data_cases[i].inlen, &want);
	}
}

/*
 * The DATA rules restated on a whole buffer, independently of the state
 * machine: a line starts at 0 or after CRLF; the end is the first ".\r\n" at
 * a line start; before it, a line-start dot is dropped, an LF not after a CR
 * is bare, a CR not followed by an LF is bare (it is output itself unless it
 * follows a line-start dot), and nothing is output after a bare one.
 */
static void reference(const char *in, size_t n, struct data_result *r)
{
#define LINE_START(i) ((i) == 0 || ((i) >= 2 && in[(i)-2] == '\r' && in[(i)-1] == '\n'))
	size_t end = n;
	r->status = SMTP_DATA_MORE;
	r->consumed = n;
	for (size_t i = 0; i + 3 <= n; i++) {
		if (LINE_START(i) && memcmp(in + i, ".\r\n", 3) == 0) {
			end = i;
			r->status = SMTP_DATA_END;
			r->consumed = i + 3;
			break;
		}
	}
	r->outlen = 0;
	r->bad = false;
	for (size_t i = 0; i < end; i++) {
		char c = in[i];
		if (c == '.' && LINE_START(i))
			continue;
		if (c == '\n' && (i == 0 || in[i - 1] != '\r')) {
			r->bad = true;
			continue;
		}
		if (c == '\r') {
			bool after_dot = i >= 1 && in[i - 1] == '.' && LINE_START(i - 1);
			if (!r->bad && !after_dot)
				r->out[r->outlen++] = c;
			if (i + 1 < n && in[i + 1] != '\n')
				r->bad = true;
			continue;
		}
		if (!r->bad)
			r->out[r->outlen++] = c;
	}
#undef LINE_START
}

/* Every string of up to 8 bytes over CR, LF, '.', 'a' against the reference. */
static void test_data_exhaustive(void **state)
{
	(void)state;
	static const char alphabet[4] = {'\r', '\n', '.', 'a'};
	char in[8];
	size_t total = 0;
	for (size_t n = 0; n <= sizeof(in); n++) {
		size_t count = (size_t)1 << (2 * n);
		for (size_t k = 0; k < count; k++) {
			for (size_t j = 0; j < n; j++)
				in[j] = alphabet[(k >> (2 * j)) & 3];
			struct data_result want, got;
			reference(in, n, &want);
			feed_pieces(in, n, NULL, 0, &got);
			expect_same(in, n, "whole (reference)", &want, &got);
			size_t cuts[8];
			for (size_t j = 0; j + 1 < n; j++)
				cuts[j] = j + 1;
			feed_pieces(in, n, cuts, n ? n - 1 : 0, &got);
			expect_same(in, n, "byte by byte (reference)", &want, &got);
			for (size_t j = 0; j <= n; j++) {
				size_t one[1] = {j};
				feed_pieces(in, n, one, 1, &got);
				expect_same(in, n, "cut once (reference)", &want, &got);
			}
			total++;
		}
	}
	assert_int_equal(total, 87381);
}

static void test_data_after_end(void **state)
{
	(void)state;
	struct smtp_data d;
	char out[16];
	size_t outlen, consumed;
	smtp_data_init(&d);
	assert_int_equal(smtp_data_feed(&d, "x\r\n.\r\nQUIT", 10, out, &outlen, &consumed),
			 SMTP_DATA_END);
	assert_int_equal(consumed, 6);
	assert_int_equal(outlen, 3);
	/* once ended, nothing more is read */
	assert_int_equal(smtp_data_feed(&d, "QUIT\r\n", 6, out, &outlen, &consumed), SMTP_DATA_END);
	assert_int_equal(consumed, 0);
	assert_int_equal(outlen, 0);
	/* init starts over, at a line start */
	smtp_data_init(&d);
	assert_false(d.bad_newline);
	assert_int_equal(smtp_data_feed(&d, ".\r\n", 3, out, &outlen, &consumed), SMTP_DATA_END);
	assert_int_equal(outlen, 0);
	/* an empty feed changes nothing */
	smtp_data_init(&d);
	assert_int_equal(smtp_data_feed(&d, "", 0, out, &outlen, &consumed), SMTP_DATA_MORE);
	assert_int_equal(outlen + consumed, 0);
	assert_int_equal(smtp_data_feed(&d, ".\r\n", 3, out, &outlen, &consumed), SMTP_DATA_END);
}

/* A large message in odd-sized pieces: the output is the unstuffed input. */
static void test_data_large(void **state)
{
	(void)state;
	size_t lines = 5000, n = 0;
	char *in = malloc(lines * 16 + 8), *want = malloc(lines * 16 + 8);
	char *out = malloc(lines * 16 + 8);
	assert_non_null(in);
	assert_non_null(want);
	assert_non_null(out);
	size_t wn = 0;
	for (size_t i = 0; i < lines; i++) {
		int len = sprintf(in + n, i % 3 ? "line %zu\r\n" : "..dot %zu\r\n", i);
		memcpy(want + wn, in + n + (i % 3 ? 0 : 1), (size_t)len - (i % 3 ? 0 : 1));
		wn += (size_t)len - (i % 3 ? 0 : 1);
		n += (size_t)len;
	}
	memcpy(in + n, ".\r\n", 3);
	n += 3;
	struct smtp_data d;
	smtp_data_init(&d);
	size_t pos = 0, o = 0, step = 1;
	enum smtp_data_status st = SMTP_DATA_MORE;
	while (st == SMTP_DATA_MORE && pos < n) {
		size_t len = n - pos < step ? n - pos : step;
		size_t outlen, consumed;
		st = smtp_data_feed(&d, in + pos, len, out + o, &outlen, &consumed);
		pos += consumed;
		o += outlen;
		step = step * 7 % 1021 + 1;
	}
	assert_int_equal(st, SMTP_DATA_END);
	assert_int_equal(pos, n);
	assert_false(d.bad_newline);
	assert_int_equal(o, wn);
	assert_memory_equal(out, want, wn);
	free(in);
	free(want);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_command_ok),
	    cmocka_unit_test(test_command_errors),
	    cmocka_unit_test(test_command_trims_in_place),
	    cmocka_unit_test(test_command_line_max),
	    cmocka_unit_test(test_mail_ok),
	    cmocka_unit_test(test_mail_errors),
	    cmocka_unit_test(test_utf8_validation),
	    cmocka_unit_test(test_path_lengths),
	    cmocka_unit_test(test_label_lengths),
	    cmocka_unit_test(test_mail_output_reset),
	    cmocka_unit_test(test_rcpt_ok),
	    cmocka_unit_test(test_rcpt_errors),
	    cmocka_unit_test(test_dsn_parameters),
	    cmocka_unit_test(test_reply_format),
	    cmocka_unit_test(test_data_table),
	    cmocka_unit_test(test_data_exhaustive),
	    cmocka_unit_test(test_data_after_end),
	    cmocka_unit_test(test_data_large),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
