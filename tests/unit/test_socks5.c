/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: the SOCKS5 client handshake (net/socks5.c) against the bytes
 * RFC 1928 and RFC 1929 lay down, and the proxy URLs of the config. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/config_internal.h"
#include "net/socks5.h"

static void test_no_auth_name_connect(void **state)
{
	(void)state;
	struct socks5 s = {.host = "abcdefgh.onion", .port = 25};
	uint8_t out[SOCKS5_OUT_MAX];
	size_t n = socks5_start(&s, out);
	/* VER 5, one method: no authentication */
	assert_int_equal(n, 3);
	assert_memory_equal(out, "\x05\x01\x00", 3);
	size_t used, outlen;
	assert_int_equal(socks5_input(&s, (const uint8_t *)"\x05", 1, &used, out, &outlen),
			 SOCKS5_MORE);
	assert_int_equal(used, 0);
	assert_int_equal(socks5_input(&s, (const uint8_t *)"\x05\x00", 2, &used, out, &outlen),
			 SOCKS5_MORE);
	assert_int_equal(used, 2);
	/* CONNECT, ATYP 3 (a domain name the proxy resolves), port 25 */
	const uint8_t want[] = {5,   1,   0,   3,   14,  'a', 'b', 'c', 'd', 'e', 'f',
				'g', 'h', '.', 'o', 'n', 'i', 'o', 'n', 0,   25};
	assert_int_equal(outlen, sizeof(want));
	assert_memory_equal(out, want, sizeof(want));
	/* A success reply with an IPv4 bound address, and the greeting after */
	const uint8_t reply[] = {5, 0, 0, 1, 127, 0, 0, 1, 0x04, 0x38, '2', '2', '0'};
	assert_int_equal(socks5_input(&s, reply, 9, &used, out, &outlen), SOCKS5_MORE);
	assert_int_equal(socks5_input(&s, reply, sizeof(reply), &used, out, &outlen), SOCKS5_DONE);
	assert_int_equal(used, 10); /* the "220" is the server's */
	assert_int_equal(outlen, 0);
}

static void test_userpass_and_literals(void **state)
{
	(void)state;
	struct socks5 s = {.user = "zone", .password = "s3cret", .host = "192.0.2.7", .port = 587};
	uint8_t out[SOCKS5_OUT_MAX];
	size_t n = socks5_start(&s, out);
	assert_int_equal(n, 4);
	assert_memory_equal(out, "\x05\x02\x00\x02", 4);
	size_t used, outlen;
	assert_int_equal(socks5_input(&s, (const uint8_t *)"\x05\x02", 2, &used, out, &outlen),
			 SOCKS5_MORE);
	/* RFC 1929: VER 1, ULEN, UNAME, PLEN, PASSWD */
	assert_int_equal(outlen, 1 + 1 + 4 + 1 + 6);
	assert_memory_equal(out, "\x01\x04zone\x06s3cret", outlen);
	assert_int_equal(socks5_input(&s, (const uint8_t *)"\x01\x00", 2, &used, out, &outlen),
			 SOCKS5_MORE);
	const uint8_t want[] = {5, 1, 0, 1, 192, 0, 2, 7, 0x02, 0x4b};
	assert_int_equal(outlen, sizeof(want));
	assert_memory_equal(out, want, sizeof(want));
	/* a reply with a domain-name bound address: 4 + 1 + len + 2 */
	const uint8_t reply[] = {5, 0, 0, 3, 3, 'a', '.', 'b', 0, 1};
	assert_int_equal(socks5_input(&s, reply, sizeof(reply), &used, out, &outlen), SOCKS5_DONE);
	assert_int_equal(used, sizeof(reply));

	struct socks5 v6 = {.host = "2001:db8::1", .port = 25};
	socks5_start(&v6, out);
	assert_int_equal(socks5_input(&v6, (const uint8_t *)"\x05\x00", 2, &used, out, &outlen),
			 SOCKS5_MORE);
	assert_int_equal(outlen, 4 + 16 + 2);
	assert_int_equal(out[3], 4);
	assert_int_equal(out[4], 0x20);
	assert_int_equal(out[19], 1);
}

static void test_failures(void **state)
{
	(void)state;
	uint8_t out[SOCKS5_OUT_MAX];
	size_t used, outlen;
	/* refused credentials: temporary, names the cause */
	struct socks5 s = {.user = "u", .password = "p", .host = "x.onion", .port = 25};
	socks5_start(&s, out);
	socks5_input(&s, (const uint8_t *)"\x05\x02", 2, &used, out, &outlen);
	assert_int_equal(socks5_input(&s, (const uint8_t *)"\x01\x01", 2, &used, out, &outlen),
			 SOCKS5_ERROR);
	assert_false(s.permanent);
	assert_non_null(strstr(s.reply, "451 4.7.0"));
	assert_non_null(strstr(s.reply, "username/password refused"));

	/* no acceptable method */
	struct socks5 m = {.host = "x.onion", .port = 25};
	socks5_start(&m, out);
	assert_int_equal(socks5_input(&m, (const uint8_t *)"\x05\xff", 2, &used, out, &outlen),
			 SOCKS5_ERROR);
	assert_non_null(strstr(m.reply, "none of our authentication methods"));
	/* not SOCKS5 at all (an SMTP server on the proxy's port) */
	socks5_start(&m, out);
	assert_int_equal(socks5_input(&m, (const uint8_t *)"22", 2, &used, out, &outlen),
			 SOCKS5_ERROR);

	/* each CONNECT failure: REP code, text, and temporary or not */
	static const struct {
		uint8_t rep;
		const char *code, *text;
		bool permanent;
	} reps[] = {
	    {0x01, "451 4.4.0", "general SOCKS server failure", false},
	    {0x02, "451 4.4.0", "not allowed by ruleset", false},
	    {0x04, "451 4.4.1", "host unreachable", false},
	    {0x05, "451 4.4.1", "connection refused", false},
	    {0x06, "451 4.4.2", "TTL expired", false},
	    {0xF0, "451 4.4.1", "descriptor can not be found", false},
	    {0xF6, "550 5.1.2", "invalid onion service address", true},
	    {0x7a, "451 4.4.0", "unknown reply code", false},
	};
	for (size_t i = 0; i < sizeof(reps) / sizeof(reps[0]); i++) {
		struct socks5 c = {.host = "x.onion", .port = 25};
		socks5_start(&c, out);
		socks5_input(&c, (const uint8_t *)"\x05\x00", 2, &used, out, &outlen);
		uint8_t r[] = {5, reps[i].rep};
		assert_int_equal(socks5_input(&c, r, 2, &used, out, &outlen), SOCKS5_ERROR);
		assert_int_equal(c.rep, reps[i].rep);
		assert_int_equal(strncmp(c.reply, reps[i].code, 9), 0);
		assert_non_null(strstr(c.reply, reps[i].text));
		assert_non_null(strstr(c.reply, "x.onion"));
		assert_int_equal(c.permanent, reps[i].permanent);
	}
	/* a name longer than ATYP 3 can carry */
	char longname[300];
	memset(longname, 'a', 299);
	longname[299] = '\0';
	struct socks5 l = {.host = longname, .port = 25};
	socks5_start(&l, out);
	assert_int_equal(socks5_input(&l, (const uint8_t *)"\x05\x00", 2, &used, out, &outlen),
			 SOCKS5_ERROR);
}

static void test_proxy_urls(void **state)
{
	(void)state;
	const char *why = NULL;
	struct socks_proxy *p = parse_socks_proxy("socks5://127.0.0.1:9050", &why);
	assert_non_null(p);
	assert_string_equal(p->host, "127.0.0.1");
	assert_int_equal(p->port, 9050);
	assert_null(p->user);
	assert_string_equal(p->url, "socks5://127.0.0.1:9050");
	free_socks_proxy(p);

	p = parse_socks_proxy("socks5h://zone:pa55@[::1]:1081", &why);
	assert_non_null(p);
	assert_string_equal(p->host, "::1");
	assert_int_equal(p->port, 1081);
	assert_string_equal(p->user, "zone");
	assert_string_equal(p->password, "pa55");
	assert_string_equal(p->url, "socks5://zone@[::1]:1081"); /* no password in logs */
	free_socks_proxy(p);

	p = parse_socks_proxy("socks5://10.0.0.1", &why);
	assert_int_equal(p->port, 1080);
	free_socks_proxy(p);

	const char *bad[] = {"http://127.0.0.1:9050",
			     "socks5://localhost:9050",
			     "socks5://127.0.0.1:0",
			     "socks5://127.0.0.1:x",
			     "socks5://[::1:9050",
			     "socks5://@127.0.0.1",
			     NULL};
	for (size_t i = 0; bad[i]; i++) {
		why = NULL;
		assert_null(parse_socks_proxy(bad[i], &why));
		assert_non_null(why);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_no_auth_name_connect),
	    cmocka_unit_test(test_userpass_and_literals),
	    cmocka_unit_test(test_failures),
	    cmocka_unit_test(test_proxy_urls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
