/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Fuzz harness for the SOCKS5 client handshake (src/net/socks5.c): the
 * input's first byte picks the setup (credentials, destination kind), the
 * rest is what the proxy sends.  Fed whole or one byte at a time, the
 * handshake ends the same (status, bytes taken, reply); it never takes
 * more than it was given nor writes more than SOCKS5_OUT_MAX; an error is
 * an SMTP reply of class 4 or 5 that names the proxy.  Any disagreement
 * aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/socks5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

struct outcome {
	enum socks5_status st;
	size_t taken;
	char reply[200];
	bool permanent;
};

static void run(uint8_t setup, const uint8_t *in, size_t n, bool bytewise, struct outcome *o)
{
	static const char *const hosts[] = {"abcdefghijklmnop.onion", "192.0.2.1", "2001:db8::25",
					    "mx.example.test"};
	struct socks5 s = {.host = hosts[setup & 3], .port = 25};
	if (setup & 4) {
		s.user = "user";
		s.password = (setup & 8) ? "" : "secret";
	}
	uint8_t out[SOCKS5_OUT_MAX];
	size_t outlen = socks5_start(&s, out);
	CHECK(outlen >= 3 && outlen <= SOCKS5_OUT_MAX);
	size_t have = 0, taken = 0; /* bytes offered so far; bytes taken */
	enum socks5_status st = SOCKS5_MORE;
	while (st == SOCKS5_MORE && have < n) {
		have = bytewise ? have + 1 : n;
		size_t used;
		do {
			st = socks5_input(&s, in + taken, have - taken, &used, out, &outlen);
			CHECK(used <= have - taken);
			CHECK(outlen <= SOCKS5_OUT_MAX);
			taken += used;
		} while (st == SOCKS5_MORE && used > 0);
	}
	o->st = st;
	o->taken = taken;
	o->permanent = s.permanent;
	memcpy(o->reply, s.reply, sizeof(o->reply));
	if (st == SOCKS5_ERROR) {
		CHECK(memchr(s.reply, '\0', sizeof(s.reply)) != NULL);
		CHECK(strncmp(s.reply, "451 4.", 6) == 0 || strncmp(s.reply, "550 5.", 6) == 0);
		CHECK(strstr(s.reply, "SOCKS5 proxy") != NULL);
		CHECK(s.permanent == (s.reply[0] == '5'));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	struct outcome whole, bytes;
	run(data[0], data + 1, size - 1, false, &whole);
	run(data[0], data + 1, size - 1, true, &bytes);
	CHECK(whole.st == bytes.st);
	if (whole.st != SOCKS5_MORE) {
		CHECK(whole.taken == bytes.taken);
		CHECK(strcmp(whole.reply, bytes.reply) == 0);
		CHECK(whole.permanent == bytes.permanent);
	}
	return 0;
}
