/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: bounce rules (parsing, errors, the shipped rules on real replies). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bounce/rules.h"

#define D BOUNCE_DEFER
#define R BOUNCE_REJECT

/* Replies as real servers send them (multi-line ones as mta/reply.c joins them). */
static const struct {
	int code;
	const char *response;
	enum bounce_action action;
	const char *category;
} shipped[] = {
    /* Recipients that do not exist, whatever the code. */
    {550,
     "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in virtual "
     "mailbox table",
     R, "recipient"},
    {550,
     "550-5.1.1 The email account that you tried to reach does not exist. Please try "
     "double-checking the recipient's email address for typos or unnecessary spaces. "
     "Learn more at https://support.google.com/mail/?p=NoSuchUser a1si2 - gsmtp",
     R, "recipient"},
    {550, "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
     R, "recipient"},
    {554,
     "554 delivery error: dd This user doesn't have a yahoo.com account (nobody@yahoo.com) "
     "[0] - mta1234.mail.bf1.yahoo.com",
     R, "recipient"},
    {450,
     "450 4.1.1 <nobody@example.org>: Recipient address rejected: User unknown in local "
     "recipient table",
     R, "recipient"},
    {450, "450 4.1.1 nobody@example.org: no such user here", R, "recipient"},
    {550, "550 5.1.1 user unknown", R, "recipient"},
    {550, "550 Unrouteable address", R, "recipient"},
    {511, "511 sorry, no mailbox here by that name (#5.1.1)", R, "recipient"},
    {550, "550 5.5.0 Requested action not taken: mailbox unavailable", R, "recipient"},
    {550, "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [AM1EUR02FT003]", R,
     "recipient"},
    {550,
     "550-5.2.1 The email account that you tried to reach is disabled. Learn more at "
     "https://support.google.com/mail/?p=DisabledUser - gsmtp",
     R, "recipient"},
    {450, "450 Requested mail action not taken: mailbox unavailable", D, "recipient"},
    {450,
     "450 4.1.1 <a@example.org>: Recipient address rejected: unverified address: Address "
     "verification in progress",
     D, "recipient"},
    {450,
     "450 4.1.1 <a@example.org>: Recipient address rejected: unverified address: host "
     "mx.example.org[192.0.2.7] said: 550 5.1.1 <a@example.org>: Recipient address "
     "rejected: User unknown (in reply to RCPT TO command)",
     R, "recipient"},
    {550,
     "550 Message was not accepted -- invalid mailbox. Local mailbox a@example.ru is "
     "unavailable: user not found",
     R, "recipient"},
    {550,
     "550 5.2.1 <a@example.org>: Recipient address rejected: this mailbox is inactive and "
     "has been disabled",
     R, "recipient"},
    {450, "450 4.2.0 Mailbox busy", D, "recipient"},
    {550, "550 Mailbox does not exist", R, "recipient"},
    {554,
     "554 delivery error: dd Sorry your message to a@yahoo.com cannot be delivered. This "
     "mailbox is disabled (554.30). - mta1234.mail.bf1.yahoo.com",
     R, "recipient"},
    {553, "553 5.3.0 <a@example.org>... Address no longer valid", R, "recipient"},
    /* Mailbox full: defers, even as 552 5.2.2, unless it is abandoned. */
    {452, "452 4.2.2 <a@example.com>: mailbox full", D, "capacity"},
    {552, "552 5.2.2 Mailbox size limit exceeded", D, "capacity"},
    {552, "552 5.2.2 <a@example.com>... Mailbox over quota", D, "capacity"},
    {552, "552 5.2.2 <a@example.com>: Quota exceeded (mailbox for user is full)", D, "capacity"},
    {554,
     "554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException."
     "MapiExceptionShutoffQuotaExceeded",
     D, "capacity"},
    {452,
     "452-4.2.2 The recipient's inbox is out of storage space. Please direct the recipient "
     "to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp",
     D, "capacity"},
    {552,
     "552-5.2.2 The email account that you tried to reach is over quota and inactive. "
     "https://support.google.com/mail/?p=OverQuotaPerm - gsmtp",
     R, "capacity"},
    {552, "552 Requested mail action aborted: exceeded storage allocation", D, "capacity"},
    /* Blocklists defer, even after 5xx. */
    {554,
     "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
     "zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1",
     D, "blacklist"},
    {550,
     "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your "
     "Internet service provider since part of their network is on our block list (S3150).",
     D, "blacklist"},
    {550,
     "550 5.7.606 Access denied, banned sending IP [192.0.2.1]. To request removal from this "
     "list please visit https://sender.office.com/",
     D, "blacklist"},
    {553,
     "553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.1, because the ip is "
     "in Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
     D, "blacklist"},
    {554, "554 rejected because 192.0.2.1 is listed at b.barracudacentral.org", D, "blacklist"},
    {550, "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.", D,
     "blacklist"},
    {550, "550 5.7.1 Your IP address 192.0.2.1 has been blocked", D, "blacklist"},
    {554, "554 5.7.1 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.1", D, "blacklist"},
    {421,
     "421 4.7.1 [TSS09] All messages from 192.0.2.1 will be permanently deferred; Retrying "
     "will NOT succeed. See https://postmaster.yahooinc.com/error-codes",
     R, "blacklist"},
    /* Greylisting. */
    {451, "451 4.7.1 Greylisted", D, "greylist"},
    {450,
     "450 4.2.0 <a@example.org>: Recipient address rejected: Greylisted, see "
     "http://postgrey.schweikert.ch/help/example.org.html",
     D, "greylist"},
    {451, "451 4.7.1 Greylisting in action, please come back in 00:05:00", D, "greylist"},
    {550, "550 Please try again in 300 seconds", D, "greylist"},
    /* Rate limits. */
    {421, "421-4.7.0 Try again later, closing connection. (EHLO) a1si2 - gsmtp", D, "rate"},
    {421, "421 4.7.0 Try again later", D, "rate"},
    {421, "421 4.7.0 mx.example.org Error: too many connections from 192.0.2.1", D,
     "capacity"}, /* ZoneMTA's category */
    {421,
     "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected "
     "volume or user complaints - 4.16.55.1",
     D, "rate"},
    {451, "451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77714)", D, "rate"},
    {421,
     "421-4.7.28 [192.0.2.1 15] Our system has detected an unusual rate of unsolicited mail "
     "originating from your IP address. To protect our users from spam, mail sent from "
     "your IP address has been temporarily rate limited. - gsmtp",
     D, "rate"},
    {450,
     "450-4.2.1 The user you are trying to contact is receiving mail at a rate that "
     "prevents additional messages from being delivered. - gsmtp",
     D, "rate"},
    {452, "452 4.5.3 Error: too many recipients", D, "rate"},
    {552, "552 Too many recipients", D, "rate"},
    {550, "550 5.4.5 Daily user sending quota exceeded. - gsmtp", D, "rate"},
    /* Content. */
    {550,
     "550-5.7.1 [192.0.2.1] Our system has detected that this message is likely "
     "unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been "
     "blocked. - gsmtp",
     R, "spam"},
    {550, "550 5.7.1 Message rejected as spam by Content Filtering.", R, "spam"},
    {550, "550 5.7.1 The message was blocked by the server because it contains a virus", R, "spam"},
    {554, "554 5.7.1 [2] Message rejected under suspicion of SPAM; https://ya.cc/1IrBc", R, "spam"},
    {554, "554 5.7.0 Reject, id=12345 - INFECTED: Eicar-Signature", R, "spam"},
    {451, "451 4.7.1 Spam message rejected, try again later", D, "spam"},
    {554, "554 5.7.0 Reject, id=12345-01 - Message content rejected, UBE", R, "spam"},
    {451, "451 4.5.0 Error in processing, id=12345-01, virus_scan FAILED", D, "protocol"},
    /* Sender authentication. */
    {550,
     "550-5.7.26 Unauthenticated email from example.com is not accepted due to domain's "
     "DMARC policy. Please contact the administrator of example.com domain. - gsmtp",
     R, "dmarc"},
    {550,
     "550 5.7.509 Access denied, sending domain example.com does not pass DMARC verification "
     "and has a DMARC policy of reject.",
     R, "dmarc"},
    {550, "550 5.7.23 SPF validation failed", R, "dmarc"},
    {550, "550 5.7.1 SPF check failed: 192.0.2.1 is not allowed to send mail from example.com", R,
     "dmarc"},
    {550,
     "550-5.7.1 This message does not pass authentication checks (SPF and DKIM both do not "
     "pass). SPF check for [example.com] does not pass with ip: [192.0.2.1]. - gsmtp",
     R, "dmarc"},
    {421,
     "421-4.7.0 This message does not pass authentication checks (SPF and DKIM both do not "
     "pass). - gsmtp",
     D, "dmarc"},
    {451, "451 4.7.1 SPF validation error: temporary DNS failure", D, "dmarc"},
    {451, "451 4.7.24 SPF: temporary error looking up example.com: SERVFAIL", D, "dmarc"},
    {421,
     "421-4.7.26 This mail has been rate limited because it is unauthenticated. Gmail "
     "requires all senders to authenticate with either SPF or DKIM. - gsmtp",
     D, "rate"},
    /* Policy. */
    {554, "554 5.7.1 <a@example.org>: Relay access denied", R, "policy"},
    {454, "454 4.7.1 <a@example.org>: Relay access denied", D, "policy"},
    {553, "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", R,
     "recipient"}, /* as ZoneMTA */
    {550,
     "550 5.7.1 <bounce@example.com>: Sender address rejected: User unknown in local "
     "recipient table",
     R, "policy"},
    {550,
     "550-Verification failed for <bounce@example.com> Unrouteable address Sender verify "
     "failed",
     R, "policy"},
    {450, "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.1]", D, "policy"},
    {550, "550 Administrative prohibition", R, "policy"},
    {550, "550 Relaying not allowed", R, "policy"},
    {450, "450 4.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied", D, "policy"},
    {450, "450 4.1.8 <bounce@example.com>: Sender address rejected: Domain not found", D, "policy"},
    {554, "554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied", R, "policy"},
    {504, "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname", R,
     "policy"},
    {554,
     "554 5.7.9 Message not accepted for policy reasons. See "
     "https://postmaster.yahooinc.com/error-codes",
     R, "policy"},
    /* Size. */
    {552, "552 5.3.4 Message size exceeds fixed limit", R, "message"},
    {552,
     "552-5.2.3 Your message exceeded Google's message size limits. Please visit "
     "https://support.google.com/mail/?p=MaxSizeError - gsmtp",
     R, "message"},
    {452, "452 4.3.4 Message too big for system", R, "message"},
    {552, "552 Requested mail action aborted: exceeded mailsize limit", R, "message"},
    {552, "552 Message exceeds the maximum allowed size", R, "message"},
    {452, "452 4.3.1 Insufficient system storage", D, "other"},
    {552, "552 4.4.5 Insufficient disk space; try again later", D, "other"},
    /* TLS. */
    {530, "530 5.7.0 Must issue a STARTTLS command first", D, "tls"},
    {454, "454 4.7.0 TLS not available due to local problem", D, "tls"},
    {0, "452 4.7.5 TLS is required but the server does not offer it", D, "tls"},
    {0, "TLS handshake with mx.example.org [192.0.2.7] failed: wrong version number", D, "tls"},
    /* DNS and the network, as zone-mta itself reports them (code 0). */
    {0, "451 4.4.3 example.org: SERVFAIL", D, "dns"},
    {450, "450 4.1.2 <a@example.org>: Recipient address rejected: Domain not found", D, "dns"},
    {550,
     "550 5.1.2 Bad destination host 'DNS Hard Error looking up example.invalid: "
     "NXDOMAIN'",
     R, "dns"},
    {554, "554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain", R, "dns"},
    {450, "450 4.4.0 example.org: temporary resolver failure", D, "dns"},
    {0, "connection to mx.example.org [192.0.2.7] failed: Connection refused", D, "network"},
    {0, "could not connect to any of 2 address(es) for example.org", D, "network"},
    {0, "451 4.4.2 connection closed before the delivery finished", D, "network"},
    {421, "421 4.4.2 mx.example.org Error: timeout exceeded", D, "network"},
    /* Protocol. */
    {500, "500 5.5.2 Error: bad syntax", R, "protocol"},
    {550, "550 5.6.11 SMTPSEND.BareLinefeedsAreIllegal; message contains bare linefeeds", R,
     "protocol"},
    {552, "552 Line too long", R, "protocol"},
    {451, "451 4.5.0 malformed reply from the receiving server", D, "protocol"},
    /* A 5xx that asks to come back later. */
    {550, "550 Please try again later", D, "other"},
    {554, "554 5.7.1 Temporarily unable to accept mail from you", D, "other"},
    {553,
     "553 5.3.0 flph840 DNSBL:RBL 521< 192.0.2.1 >_is_blocked.For assistance forward this "
     "error to abuse_rbl@abuse-att.net",
     D, "blacklist"},
    /* Loops. */
    {554, "554 5.4.6 Too many hops", R, "other"},
};

static void test_shipped_table(void **state)
{
	(void)state;
	struct bounce_rules *r = bounce_rules_builtin();
	assert_true(bounce_rules_count(r) >= 40);
	int bad = 0;
	for (size_t i = 0; i < sizeof(shipped) / sizeof(shipped[0]); i++) {
		struct bounce_verdict v;
		bounce_rules_classify(r, shipped[i].code, shipped[i].response, &v);
		if (v.action != shipped[i].action || strcmp(v.category, shipped[i].category) != 0) {
			print_error("case %zu (%d %s): got %s %s (line %d), want %s %s\n", i,
				    shipped[i].code, shipped[i].response,
				    v.action == D ? "defer" : "reject", v.category, v.rule_line,
				    shipped[i].action == D ? "defer" : "reject",
				    shipped[i].category);
			bad++;
		}
	}
	bounce_rules_free(r);
	if (bad > 0)
		fail_msg("%d of %zu responses misclassified", bad,
			 sizeof(shipped) / sizeof(shipped[0]));
}

/* No rule matches: the code decides. */
static void test_defaults(void **state)
{
	(void)state;
	static const struct {
		int code;
		const char *response;
		enum bounce_action action;
		const char *category;
	} cases[] = {
	    {451, "451 Whatever happened", D, "other"},
	    {421, "421 Closing", D, "other"},
	    {550, "550 Nope", R, "other"},
	    {554, "554", R, "other"},
	    {0, "something odd", D, "network"},
	    {0, "", D, "network"},
	    {250, "250 2.0.0 Ok", D, "protocol"},
	    {354, "354 go ahead", D, "protocol"},
	    {999, "999 ?", D, "protocol"},
	    {-1, "nothing", D, "protocol"},
	};
	char *err = NULL;
	struct bounce_rules *empty = bounce_rules_parse("empty", "", 0, &err);
	assert_non_null(empty);
	assert_null(err);
	assert_int_equal(bounce_rules_count(empty), 0);
	struct bounce_rules *builtin = bounce_rules_builtin();
	struct bounce_rules *sets[] = {empty, builtin, NULL};
	for (size_t s = 0; s < 3; s++) {
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			struct bounce_verdict v;
			bounce_rules_classify(sets[s], cases[i].code, cases[i].response, &v);
			if (v.action != cases[i].action ||
			    strcmp(v.category, cases[i].category) != 0 || v.rule_line != 0)
				fail_msg("set %zu case %zu (%s): got %d %s line %d", s, i,
					 cases[i].response, v.action, v.category, v.rule_line);
		}
	}
	struct bounce_verdict v;
	bounce_rules_classify(builtin, 550, NULL, &v);
	assert_int_equal(v.action, R);
	bounce_rules_free(empty);
	bounce_rules_free(builtin);
}

static struct bounce_rules *parse_ok(const char *text)
{
	char *err = NULL;
	struct bounce_rules *r = bounce_rules_parse("t.txt", text, strlen(text), &err);
	if (r == NULL)
		fail_msg("parse failed: %s", err);
	assert_null(err);
	return r;
}

static void expect(const struct bounce_rules *r, int code, const char *response,
		   enum bounce_action action, const char *category, int line)
{
	struct bounce_verdict v;
	bounce_rules_classify(r, code, response, &v);
	if (v.action != action || strcmp(v.category, category) != 0 || v.rule_line != line)
		fail_msg("%d %s: got %d %s line %d, want %d %s line %d", code, response, v.action,
			 v.category, v.rule_line, action, category, line);
}

static void test_first_match(void **state)
{
	(void)state;
	struct bounce_rules *r = parse_ok("# general after specific\n"
					  "defer special foo bar\n"
					  "reject general foo\n"
					  "\n"
					  "defer late foo\n"
					  "defer fivexx ^5\\d\\d \n"
					  "reject code ^451 4\\.7\\.1 x$\n");
	assert_int_equal(bounce_rules_count(r), 5);
	expect(r, 550, "550 foo bar", D, "special", 2);
	expect(r, 450, "450 a foo", R, "general", 3);
	expect(r, 550, "550 something", D, "fivexx", 6);
	/* The code is put in front when the response lacks it... */
	expect(r, 451, "4.7.1 x", R, "code", 7);
	/* ..., "451-" of a multi-line reply reads "451 ", and a wrong code in front stays. */
	expect(r, 451, "451-4.7.1 x", R, "code", 7);
	expect(r, 451, "452 4.7.1 x", D, "other", 0);
	/* Code 0: the text as it is. */
	expect(r, 0, "451 4.7.1 x", R, "code", 7);
	expect(r, 0, "4.7.1 x", D, "network", 0);
	/* Case-insensitive. */
	expect(r, 550, "550 FOO BAR", D, "special", 2);
	bounce_rules_free(r);
}

static void test_comments_and_blanks(void **state)
{
	(void)state;
	struct bounce_rules *r = parse_ok("# a comment\r\n"
					  "\r\n"
					  "   \t\n"
					  "\t# an indented comment\n"
					  "  defer\tgrey-list_2   greylist  \r\n"
					  "REJECT Mailbox unknown user\n"
					  "defer hash a#b");
	assert_int_equal(bounce_rules_count(r), 3);
	/* Trailing blanks and CR are not part of the regex; inner ones are. */
	expect(r, 450, "450 Greylist", D, "grey-list_2", 5);
	expect(r, 450, "450 unknown user", R, "Mailbox", 6);
	expect(r, 550, "550 unknown  user", R, "other", 0);
	expect(r, 450, "450 a#b", D, "hash", 7);
	bounce_rules_free(r);

	r = parse_ok("# nothing but comments\n\n");
	assert_int_equal(bounce_rules_count(r), 0);
	bounce_rules_free(r);
}

/* Does s match the pattern, where one '*' stands for any text? */
static bool glob_match(const char *pattern, const char *s)
{
	const char *star = strchr(pattern, '*');
	if (star == NULL)
		return strcmp(pattern, s) == 0;
	size_t pre = (size_t)(star - pattern), post = strlen(star + 1), n = strlen(s);
	return n >= pre + post && strncmp(s, pattern, pre) == 0 &&
	       strcmp(s + n - post, star + 1) == 0;
}

static void test_parse_errors(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		const char *err; /* the message; '*' stands for any text (PCRE2's wording) */
	} cases[] = {
	    {"defer spam\n", "t.txt:1: expected ACTION CATEGORY REGEX"},
	    {"defer\n", "t.txt:1: expected ACTION CATEGORY REGEX"},
	    {"# ok\ndefer spam   \t\r\n", "t.txt:2: expected ACTION CATEGORY REGEX"},
	    {"# ok\n\nbounce spam foo\n",
	     "t.txt:3: unknown action 'bounce' (defer, reject or slowdown)"},
	    {"defer,spam,foo\n", "t.txt:1: unknown action 'spam' in ZoneMTA's "
				 "regex,action,category,message (defer, reject or slowdown)"},
	    {"^550 x,reject,,oops\n", "t.txt:1: empty category"},
	    {"rejected spam foo\n",
	     "t.txt:1: unknown action 'rejected' (defer, reject or slowdown)"},
	    {"defer a x\nreject spam (foo\n",
	     "t.txt:2: bad regex: missing closing parenthesis at offset 4"},
	    {"reject spam foo[\n",
	     "t.txt:1: bad regex: missing terminating ] for character class at offset 4"},
	    {"reject spam *x\n", "t.txt:1: bad regex: quantifier does not follow a repeatable item "
				 "at offset 0"},
	    {"reject spam a\\C\n", "t.txt:1: bad regex: using \\C is disabled* at offset 3"},
	    {"reject spam caf\xe9\n", "t.txt:1: bad regex: UTF-8 error: * at offset 3"},
	    {"reject sp@m foo\n", "t.txt:1: bad category 'sp@m' (letters, digits, '-', '_')"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *err = NULL;
		struct bounce_rules *r = bounce_rules_parse("t.txt", cases[i].text,
							    strlen(cases[i].text), &err);
		if (r != NULL)
			fail_msg("case %zu: parsed", i);
		assert_non_null(err);
		if (!glob_match(cases[i].err, err))
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, cases[i].err);
		free(err);
	}
}

static void test_invalid_utf8(void **state)
{
	(void)state;
	struct bounce_rules *r = bounce_rules_builtin();
	/* Latin-1 and stray bytes around the text that matters. */
	struct bounce_verdict v;
	bounce_rules_classify(r, 550, "550 5.1.1 Benutzer \xfc\xff\xfe unbekannt: user unknown",
			      &v);
	assert_int_equal(v.action, R);
	assert_string_equal(v.category, "recipient");
	bounce_rules_classify(r, 452, "452 4.2.2 Bo\xeete pleine \xc3 (mailbox full)", &v);
	assert_int_equal(v.action, D);
	assert_string_equal(v.category, "capacity");
	bounce_rules_classify(r, 451, "451 \xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80", &v);
	assert_int_equal(v.action, D);
	assert_string_equal(v.category, "other");
	bounce_rules_free(r);

	/* Non-ASCII rules fold case; an invalid byte inside the text breaks the match. */
	r = parse_ok("defer quota \xc3\x9c"
		     "berschritten\n");
	expect(r, 552,
	       "552 Speicherplatz \xc3\xbc"
	       "berschritten \xff",
	       D, "quota", 1);
	expect(r, 552,
	       "552 Speicherplatz \xfc"
	       "berschritten",
	       R, "other", 0);
	bounce_rules_free(r);
}

static void test_long_response(void **state)
{
	(void)state;
	enum {
		LEN = 64 * 1024
	};
	struct bounce_rules *r = bounce_rules_builtin();
	char *s = malloc(LEN + 64);
	assert_non_null(s);
	struct bounce_verdict v;

	/* The decisive words at the very end. */
	strcpy(s, "550 5.0.0 ");
	memset(s + 10, 'x', LEN);
	strcpy(s + 10 + LEN, " user unknown");
	bounce_rules_classify(r, 550, s, &v);
	assert_int_equal(v.action, R);
	assert_string_equal(v.category, "recipient");

	/* Nothing to find, with repeated near-misses and invalid bytes. */
	size_t n = 0;
	n += (size_t)sprintf(s, "451 ");
	while (n + 32 < LEN) {
		memcpy(s + n, "connection to mailbox \xff ", 24);
		n += 24;
	}
	s[n] = '\0';
	bounce_rules_classify(r, 451, s, &v);
	assert_int_equal(v.action, D);

	/* The same without its code: put in front, code 0 as is. */
	bounce_rules_classify(r, 550, s + 4, &v);
	bounce_rules_classify(r, 0, s + 4, &v);
	assert_int_equal(v.action, D);
	free(s);
	bounce_rules_free(r);
}

static void test_load(void **state)
{
	(void)state;
	char path[] = "/tmp/zmta-bounce-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = "# mine\nreject custom ^550 5\\.7\\.1 go away\n\ndefer\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);

	char *err = NULL;
	assert_null(bounce_rules_load(path, &err));
	char *want = NULL;
	assert_true(asprintf(&want, "%s:4: expected ACTION CATEGORY REGEX", path) > 0);
	assert_string_equal(err, want);
	free(want);
	free(err);

	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	text = "# mine\nreject custom ^550 5\\.7\\.1 go away\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	struct bounce_rules *r = bounce_rules_load(path, &err);
	assert_non_null(r);
	assert_int_equal(bounce_rules_count(r), 1);
	expect(r, 550, "550 5.7.1 go away now", R, "custom", 2);
	bounce_rules_free(r);
	unlink(path);

	assert_null(bounce_rules_load("/nonexistent/bounces.txt", &err));
	assert_string_equal(err, "/nonexistent/bounces.txt: No such file or directory");
	free(err);
}

/* classify from several threads at once on shared rules (for the sanitizers). */
struct thread_arg {
	const struct bounce_rules *r;
	int bad;
};

static void *classify_thread(void *p)
{
	struct thread_arg *a = p;
	for (int round = 0; round < 20; round++) {
		for (size_t i = 0; i < sizeof(shipped) / sizeof(shipped[0]); i++) {
			struct bounce_verdict v;
			bounce_rules_classify(a->r, shipped[i].code, shipped[i].response, &v);
			if (v.action != shipped[i].action ||
			    strcmp(v.category, shipped[i].category) != 0)
				a->bad++;
		}
	}
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	struct bounce_rules *r = bounce_rules_builtin();
	pthread_t t[4];
	struct thread_arg args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){r, 0};
		assert_int_equal(pthread_create(&t[i], NULL, classify_thread, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(args[i].bad, 0);
	}
	bounce_rules_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_shipped_table), cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_first_match),   cmocka_unit_test(test_comments_and_blanks),
	    cmocka_unit_test(test_parse_errors),  cmocka_unit_test(test_invalid_utf8),
	    cmocka_unit_test(test_long_response), cmocka_unit_test(test_load),
	    cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests_name("bounce_rules", tests, NULL, NULL);
}
