/* SPDX-License-Identifier: EUPL-1.2 */
/* Address ranges; see cidr.h. */
#include "core/cidr.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* An address in network byte order, IPv4-mapped IPv6 ones as IPv4. */
static int address_parse(const char *s, uint8_t out[16])
{
	if (inet_pton(AF_INET, s, out) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, s, out) != 1)
		return 0;
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (memcmp(out, mapped, 12) == 0) {
		memmove(out, out + 12, 4);
		return AF_INET;
	}
	return AF_INET6;
}

int cidr_parse(const char *s, struct cidr *out)
{
	char buf[64];
	size_t len = strcspn(s, "/");
	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(out, 0, sizeof(*out));
	out->family = address_parse(buf, out->addr);
	if (out->family == 0)
		return -1;
	int max = out->family == AF_INET ? 32 : 128;
	out->bits = max;
	if (s[len] == '/') {
		const char *b = s + len + 1;
		char *end;
		long v = strtol(b, &end, 10);
		if (*b < '0' || *b > '9' || *end != '\0' || v < 0 || v > max)
			return -1;
		out->bits = (int)v;
	}
	return 0;
}

static bool cidr_match(const struct cidr *c, int family, const uint8_t addr[16])
{
	if (c->family != family)
		return false;
	int full = c->bits / 8, rest = c->bits % 8;
	if (memcmp(c->addr, addr, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (c->addr[full] & mask) == (addr[full] & mask);
}

bool cidr_list_match(const struct cidr *list, size_t n, const char *ip)
{
	uint8_t addr[16];
	int family = address_parse(ip, addr);
	if (family == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (cidr_match(&list[i], family, addr))
			return true;
	return false;
}

bool cidr_is_loopback(const char *ip)
{
	struct cidr loopback[2];
	cidr_parse("127.0.0.0/8", &loopback[0]);
	cidr_parse("::1", &loopback[1]);
	return cidr_list_match(loopback, 2, ip);
}
