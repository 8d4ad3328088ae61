/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Address ranges ("10.0.0.0/8", "2001:db8::/32", or one address) and
 * whether an address falls in one; IPv4-mapped IPv6 addresses
 * (::ffff:a.b.c.d) match the IPv4 ranges.
 */
#ifndef ZMTA_CIDR_H
#define ZMTA_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	int bits;
};

/* Returns 0 and fills *out, or -1 when `s` is no address or range. */
int cidr_parse(const char *s, struct cidr *out);
/* Whether the textual address `ip` is in any of the n ranges. */
bool cidr_list_match(const struct cidr *list, size_t n, const char *ip);
/* Whether the textual address `ip` is a loopback one (127/8, ::1). */
bool cidr_is_loopback(const char *ip);

#endif
