/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * libFuzzer harness for the DSN parameters (RFC 3461): xtext, RCPT's
 * NOTIFY= and ORCPT=, MAIL's RET= and ENVID=, and what the DSN composer
 * (RFC 3464) makes of what was accepted.  The first byte chooses the mode:
 *   0  smtp_xtext_valid against a restatement of RFC 3461 4
 *   1  RCPT TO:<...> with the input as its parameters; when accepted, the
 *      NOTIFY bits and the ORCPT obey RFC 3461 4.1/4.2, and a DSN naming
 *      that ORCPT is well-formed mail
 *   2  MAIL FROM:<...> with the input as its parameters; when accepted,
 *      ENVID is xtext of at most 100 characters, and a DSN carrying it is
 *      well-formed mail
 * Every invariant is checked with abort() (replay.c runs the corpus in
 * ctest).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "msg/dsn.h"
#include "smtp/smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static bool upper_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* RFC 3461 4: xtext = *( xchar / hexchar ); xchar is "!" to "~" but "+"
 * and "="; hexchar is "+" and two upper-case hexadecimal digits. */
static bool xtext_by_the_rfc(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '+') {
			if (i + 2 >= n || !upper_hex(s[i + 1]) || !upper_hex(s[i + 2]))
				return false;
			i += 2;
		} else if (c < '!' || c > '~' || c == '=') {
			return false;
		}
	}
	return true;
}

/* The notification is mail: CRLF lines of at most 998 octets, no NUL, no
 * bare CR or LF; its header fields carry no control characters. */
static void check_mail(const char *m, size_t len)
{
	CHECK(m != NULL && len > 0 && strlen(m) == len);
	size_t line = 0;
	bool in_header = true;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)m[i];
		if (c == '\r') {
			CHECK(i + 1 < len && m[i + 1] == '\n');
			if (line == 0)
				in_header = false;
			line = 0;
			i++;
			continue;
		}
		CHECK(c != '\n');
		CHECK(++line <= 998);
		if (in_header)
			CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
	}
	CHECK(line == 0); /* ends with CRLF */
}

static void compose(const char *orcpt, const char *envid)
{
	struct dsn_recipient r = {
	    .recipient = "bob@example.test",
	    .orcpt = orcpt,
	    .diagnostic = "550 5.1.1 no such user",
	    .remote_mta = "mx.example.test",
	    .last_attempt_ms = 1700000000000,
	};
	static const char header[] = "From: a@origin.test\r\nSubject: hi\r\n\r\n";
	struct dsn_report rep = {
	    .kind = DSN_FAILED,
	    .reporting_mta = "mta.test",
	    .from_name = "Mail Delivery Subsystem",
	    .from_address = "mailer-daemon@mta.test",
	    .to = "a@origin.test",
	    .envid = envid,
	    .message_id = "1@mta.test",
	    .arrival_ms = 1700000000000,
	    .now_ms = 1700000001000,
	    .rcpts = &r,
	    .nrcpts = 1,
	    .header_block = header,
	    .header_len = sizeof(header) - 1,
	};
	size_t len = 0;
	char *mail = dsn_compose(&rep, &len);
	check_mail(mail, len);
	free(mail);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int mode = data[0] % 3;
	const char *in = (const char *)data + 1;
	size_t n = size - 1;
	if (n > 2000)
		n = 2000;
	if (mode == 0) {
		CHECK(smtp_xtext_valid(in, n) == xtext_by_the_rfc(in, n));
		return 0;
	}
	char *arg = malloc(n + 64);
	int len = snprintf(arg, 64, mode == 1 ? "TO:<bob@example.test> " : "FROM:<a@origin.test> ");
	memcpy(arg + len, in, n);
	arg[len + (int)n] = '\0';
	const char *reply = NULL;
	if (mode == 1) {
		struct smtp_path rcpt;
		struct smtp_rcpt_dsn dsn;
		if (smtp_rcpt_parse(arg, (data[0] & 0x80) != 0, &rcpt, &dsn, &reply) == 0) {
			/* NEVER stands alone (RFC 3461 4.1) */
			CHECK(!(dsn.notify & SMTP_NOTIFY_NEVER) || dsn.notify == SMTP_NOTIFY_NEVER);
			size_t olen = strlen(dsn.orcpt);
			CHECK(olen <= SMTP_ORCPT_MAX);
			if (olen > 0) {
				const char *semi = strchr(dsn.orcpt, ';');
				CHECK(semi != NULL && semi > dsn.orcpt);
				if (strncasecmp(dsn.orcpt, "utf-8;", 6) != 0)
					CHECK(smtp_xtext_valid(semi + 1, strlen(semi + 1)));
			}
			compose(olen > 0 ? dsn.orcpt : NULL, NULL);
		} else {
			CHECK(reply != NULL && (reply[0] == '5' || reply[0] == '4'));
		}
	} else {
		struct smtp_mail mail;
		if (smtp_mail_parse(arg, &mail, &reply) == 0) {
			size_t elen = strlen(mail.envid);
			CHECK(elen <= SMTP_ENVID_MAX);
			CHECK(smtp_xtext_valid(mail.envid, elen));
			compose(NULL, elen > 0 ? mail.envid : NULL);
		} else {
			CHECK(reply != NULL && reply[0] == '5');
		}
	}
	free(arg);
	return 0;
}
