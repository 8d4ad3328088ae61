/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Fuzz harness for the PROXY protocol parser (src/net/proxy.c): a header
 * found is within the input and the size limit, its client address is a
 * real address; every shorter prefix of it asks for more bytes; the
 * header alone parses to the same result; bytes after it never change
 * it.  Any disagreement aborts.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_header h;
	const char *why = NULL;
	enum proxy_status st = proxy_parse(data, size, &h, &why);
	if (st == PROXY_INVALID) {
		CHECK(why != NULL && why[0] != '\0');
		return 0;
	}
	if (st == PROXY_NEED_MORE) {
		/* Only a beginning may ask for more, never an overlong one. */
		CHECK(size < PROXY_HEADER_MAX);
		return 0;
	}
	CHECK(h.length > 0 && h.length <= size && h.length <= PROXY_HEADER_MAX);
	CHECK(h.version == 1 || h.version == 2);
	if (!h.local) {
		unsigned char addr[16];
		CHECK(inet_pton(AF_INET, h.client, addr) == 1 ||
		      inet_pton(AF_INET6, h.client, addr) == 1);
		CHECK(h.client_port >= 0 && h.client_port <= 65535);
	}
	for (size_t n = 0; n < h.length; n++) {
		struct proxy_header p;
		CHECK(proxy_parse(data, n, &p, &why) == PROXY_NEED_MORE);
	}
	struct proxy_header alone;
	CHECK(proxy_parse(data, h.length, &alone, &why) == PROXY_DONE);
	CHECK(alone.length == h.length && alone.version == h.version && alone.local == h.local &&
	      strcmp(alone.client, h.client) == 0 && alone.client_port == h.client_port);
	return 0;
}
