/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests for the listener's pure parts: address ranges (core/cidr.c),
 * PROXY headers (net/proxy.c), users files (core/passwd.c) and the AUTH
 * decoding (smtp/smtp_auth.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cidr.h"
#include "core/passwd.h"
#include "net/proxy.h"
#include "smtp/smtp_auth.h"

static bool in(const char *range, const char *ip)
{
	struct cidr c;
	assert_int_equal(cidr_parse(range, &c), 0);
	return cidr_list_match(&c, 1, ip);
}

static void test_cidr(void **state)
{
	(void)state;
	assert_true(in("10.0.0.0/8", "10.255.1.2"));
	assert_false(in("10.0.0.0/8", "11.0.0.1"));
	assert_true(in("192.0.2.7", "192.0.2.7"));
	assert_false(in("192.0.2.7", "192.0.2.8"));
	assert_true(in("0.0.0.0/0", "203.0.113.1"));
	assert_true(in("127.0.0.0/30", "127.0.0.3"));
	assert_false(in("127.0.0.0/30", "127.0.0.4"));
	/* IPv6, and IPv4-mapped clients against IPv4 ranges */
	assert_true(in("2001:db8::/32", "2001:db8:ffff::1"));
	assert_false(in("2001:db8::/32", "2001:db9::1"));
	assert_true(in("2001:db8::/127", "2001:db8::1"));
	assert_true(in("10.0.0.0/8", "::ffff:10.1.2.3"));
	assert_false(in("2001:db8::/32", "10.1.2.3"));
	assert_false(in("10.0.0.0/8", "not an address"));
	struct cidr c;
	assert_int_equal(cidr_parse("10.0.0.0/33", &c), -1);
	assert_int_equal(cidr_parse("2001:db8::/129", &c), -1);
	assert_int_equal(cidr_parse("10.0.0.0/", &c), -1);
	assert_int_equal(cidr_parse("10.0.0.0/8x", &c), -1);
	assert_int_equal(cidr_parse("example.com", &c), -1);
	assert_int_equal(cidr_parse("", &c), -1);
	assert_true(cidr_is_loopback("127.0.0.1"));
	assert_true(cidr_is_loopback("127.9.9.9"));
	assert_true(cidr_is_loopback("::1"));
	assert_false(cidr_is_loopback("0.0.0.0"));
	assert_false(cidr_is_loopback("::"));
	assert_false(cidr_is_loopback("192.168.1.1"));
}

static enum proxy_status parse(const void *buf, size_t len, struct proxy_header *h)
{
	const char *why;
	return proxy_parse(buf, len, h, &why);
}

static const char V2_SIG[] = "\r\n\r\n\0\r\nQUIT\n";

static size_t v2(unsigned char *out, int cmd, int fam, const void *body, size_t n)
{
	memcpy(out, V2_SIG, 12);
	out[12] = (unsigned char)(0x20 | cmd);
	out[13] = (unsigned char)fam;
	out[14] = (unsigned char)(n >> 8);
	out[15] = (unsigned char)n;
	memcpy(out + 16, body, n);
	return 16 + n;
}

static void test_proxy_v1(void **state)
{
	(void)state;
	struct proxy_header h;
	const char *t = "PROXY TCP4 203.0.113.9 127.0.0.1 40000 25\r\nEHLO x\r\n";
	assert_int_equal(parse(t, strlen(t), &h), PROXY_DONE);
	assert_int_equal(h.version, 1);
	assert_false(h.local);
	assert_string_equal(h.client, "203.0.113.9");
	assert_int_equal(h.client_port, 40000);
	assert_int_equal(h.length, strlen("PROXY TCP4 203.0.113.9 127.0.0.1 40000 25\r\n"));
	/* every beginning asks for more */
	for (size_t n = 0; n < h.length; n++)
		assert_int_equal(parse(t, n, &h), PROXY_NEED_MORE);
	t = "PROXY TCP6 2001:db8::1 ::1 1 2\r\n";
	assert_int_equal(parse(t, strlen(t), &h), PROXY_DONE);
	assert_string_equal(h.client, "2001:db8::1");
	t = "PROXY UNKNOWN whatever\r\n";
	assert_int_equal(parse(t, strlen(t), &h), PROXY_DONE);
	assert_true(h.local);
	const char *bad[] = {
	    "PROXY TCP4 203.0.113.999 127.0.0.1 1 2\r\n",   /* not an address */
	    "PROXY TCP4 2001:db8::1 127.0.0.1 1 2\r\n",     /* wrong family */
	    "PROXY TCP4 203.0.113.9 127.0.0.1 70000 2\r\n", /* port */
	    "PROXY TCP4 203.0.113.9 127.0.0.1 1\r\n",       /* a field missing */
	    "PROXY UDP4 203.0.113.9 127.0.0.1 1 2\r\n",     /* protocol */
	    "PROXY TCP4 203.0.113.9 127.0.0.1 1 2\n",       /* LF alone */
	    "EHLO client.test\r\n",                         /* no header */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		assert_int_equal(parse(bad[i], strlen(bad[i]), &h), PROXY_INVALID);
	/* v1 is at most 107 bytes: a line that never ends is refused. */
	char longline[200] = "PROXY TCP4 ";
	memset(longline + 11, '1', sizeof(longline) - 12);
	longline[sizeof(longline) - 1] = '\0';
	assert_int_equal(parse(longline, strlen(longline), &h), PROXY_INVALID);
}

static void test_proxy_v2(void **state)
{
	(void)state;
	unsigned char buf[PROXY_HEADER_MAX + 32];
	unsigned char body[36] = {0};
	struct proxy_header h;
	inet_pton(AF_INET, "203.0.113.9", body);
	inet_pton(AF_INET, "127.0.0.1", body + 4);
	body[8] = 0x9c, body[9] = 0x40; /* 40000 */
	size_t n = v2(buf, 1, 0x11, body, 12);
	assert_int_equal(parse(buf, n, &h), PROXY_DONE);
	assert_int_equal(h.version, 2);
	assert_string_equal(h.client, "203.0.113.9");
	assert_int_equal(h.client_port, 40000);
	assert_int_equal(h.length, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(parse(buf, i, &h), PROXY_NEED_MORE);
	/* TLVs after the addresses are skipped */
	unsigned char tlv[12 + 6] = {0};
	memcpy(tlv, body, 12);
	memcpy(tlv + 12,
	       "\x04\x00\x03"
	       "abc",
	       6);
	n = v2(buf, 1, 0x11, tlv, sizeof(tlv));
	assert_int_equal(parse(buf, n, &h), PROXY_DONE);
	assert_int_equal(h.length, n);
	/* IPv6 */
	memset(body, 0, sizeof(body));
	inet_pton(AF_INET6, "2001:db8::1", body);
	inet_pton(AF_INET6, "::1", body + 16);
	n = v2(buf, 1, 0x21, body, 36);
	assert_int_equal(parse(buf, n, &h), PROXY_DONE);
	assert_string_equal(h.client, "2001:db8::1");
	/* LOCAL: the proxy's own connection */
	n = v2(buf, 0, 0x00, body, 0);
	assert_int_equal(parse(buf, n, &h), PROXY_DONE);
	assert_true(h.local);
	/* too short for its family, a wrong version, an unknown command, too long */
	n = v2(buf, 1, 0x11, body, 3);
	assert_int_equal(parse(buf, n, &h), PROXY_INVALID);
	n = v2(buf, 1, 0x11, body, 12);
	buf[12] = 0x11;
	assert_int_equal(parse(buf, n, &h), PROXY_INVALID);
	n = v2(buf, 5, 0x11, body, 12);
	assert_int_equal(parse(buf, n, &h), PROXY_INVALID);
	memcpy(buf, V2_SIG, 12);
	buf[12] = 0x21, buf[13] = 0x11;
	buf[14] = (PROXY_V2_MAX_PAYLOAD + 1) >> 8, buf[15] = (PROXY_V2_MAX_PAYLOAD + 1) & 0xff;
	assert_int_equal(parse(buf, 16, &h), PROXY_INVALID);
}

static void test_passwd_file(void **state)
{
	(void)state;
	char path[] = "/tmp/zmta-passwd-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	char *yes = strdup(crypt("s3cret", crypt_gensalt("$y$", 0, NULL, 0)));
	char *sha = strdup(crypt("hunter2", crypt_gensalt("$6$", 0, NULL, 0)));
	FILE *f = fdopen(fd, "w");
	fprintf(f, "# users\n\nalice:%s\nbob:%s\n", yes, sha);
	fclose(f);
	char *err = NULL;
	struct passwd_file *p = passwd_file_load(path, &err);
	assert_non_null(p);
	assert_null(err);
	assert_string_equal(passwd_file_hash(p, "alice"), yes);
	assert_null(passwd_file_hash(p, "carol"));
	assert_non_null(passwd_file_any_hash(p));
	assert_true(passwd_verify(passwd_file_hash(p, "alice"), "s3cret"));
	assert_false(passwd_verify(passwd_file_hash(p, "alice"), "s3cret "));
	assert_true(passwd_verify(passwd_file_hash(p, "bob"), "hunter2"));
	assert_false(passwd_verify("*", ""));
	passwd_file_free(p);

	const char *bad[][2] = {
	    {"alice\n", ":1: not a \"user:hash\" line"},
	    {"# c\nalice:plain\n", ":2: the hash of alice is no crypt(3) hash"},
	    {"alice:$6$abc$def\nalice:$6$abc$def\n", ":2: user alice is listed twice"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		f = fopen(path, "w");
		fputs(bad[i][0], f);
		fclose(f);
		assert_null(passwd_file_load(path, &err));
		assert_non_null(err);
		assert_non_null(strstr(err, path));
		if (strstr(err, bad[i][1]) == NULL)
			fail_msg("%s: want %s", err, bad[i][1]);
		free(err);
		err = NULL;
	}
	unlink(path);
	assert_null(passwd_file_load(path, &err));
	assert_non_null(strstr(err, "cannot read"));
	free(err);
	free(yes);
	free(sha);
}

static void test_auth_decoding(void **state)
{
	(void)state;
	char *user, *password;
	/* "\0alice\0s3cret" and "admin\0alice\0s3cret": the authzid is ignored */
	assert_int_equal(smtp_auth_plain_decode("AGFsaWNlAHMzY3JldA==", &user, &password), 0);
	assert_string_equal(user, "alice");
	assert_string_equal(password, "s3cret");
	free(user);
	free(password);
	assert_int_equal(smtp_auth_plain_decode("YWRtaW4AYWxpY2UAczNjcmV0", &user, &password), 0);
	assert_string_equal(user, "alice");
	free(user);
	free(password);
	/* empty user, one NUL only, three NULs, not base64 */
	assert_int_equal(smtp_auth_plain_decode("AABwdw==", &user, &password), -1);
	assert_int_equal(smtp_auth_plain_decode("AGFsaWNl", &user, &password), -1);
	assert_int_equal(smtp_auth_plain_decode("AGEAYgBj", &user, &password), -1);
	assert_int_equal(smtp_auth_plain_decode("!!!!", &user, &password), -1);
	size_t len;
	char *t = smtp_auth_b64_decode("YWxpY2U=", &len);
	assert_string_equal(t, "alice");
	assert_int_equal(len, 5);
	free(t);
	t = smtp_auth_b64_decode("", &len);
	assert_int_equal(len, 0);
	free(t);
	/* strict: padding only at the end, no spaces, whole quads */
	assert_null(smtp_auth_b64_decode("YW=xpY2U", &len));
	assert_null(smtp_auth_b64_decode("YWxpY2U= ", &len));
	assert_null(smtp_auth_b64_decode(" YWxpY2U", &len));
	assert_null(smtp_auth_b64_decode("YWxpY2", &len));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cidr),          cmocka_unit_test(test_proxy_v1),
	    cmocka_unit_test(test_proxy_v2),      cmocka_unit_test(test_passwd_file),
	    cmocka_unit_test(test_auth_decoding),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
