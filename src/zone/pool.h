/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Choosing the local address a delivery is sent from.  Messages are dealt
 * to the pool's addresses by smooth weighted round robin, in proportion to
 * their ratios (IP warm-up) to within one message at any moment, once per
 * address family: a delivery gets one IPv4 and one IPv6 address of the pool
 * (or -1 where the pool has none of a family), and leaves from the one of
 * the family of the address it connects to.  The choice is made once per
 * delivery and kept (in memory and, once a delivery is deferred, in its
 * stored row), so retries leave from the same addresses.
 */
#ifndef ZMTA_POOL_H
#define ZMTA_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"

/* Address families, as indexes. */
#define POOL_IPV4 0
#define POOL_IPV6 1

struct pool_rr {
	const struct pool_config *pool;
	int family;      /* POOL_IPV4 or POOL_IPV6: only addresses of it are dealt */
	double *weight;  /* share of each address (0 for the other family) */
	double *current; /* smooth weighted round robin state */
	size_t count;    /* addresses of the family */
};

/* The family of an address literal (POOL_IPV6 when it holds a ':'). */
int pool_family(const char *address);
void pool_rr_init(struct pool_rr *rr, const struct pool_config *pool, int family);
void pool_rr_clear(struct pool_rr *rr);
/* The next address of the family: an index into pool->addrs, or -1 when the
 * pool has none of it. */
int pool_rr_next(struct pool_rr *rr);
/* The index of `address` in the pool, or -1. */
int pool_find(const struct pool_config *pool, const char *address);
/* The addresses kept in a delivery row ("a.b.c.d", "x::y", or both joined
 * by a comma) into local[family]; others are left as they are. */
void pool_parse_kept(const struct pool_config *pool, const char *kept, int local[2]);
/* The addresses to keep in a delivery row (malloc'ed), or NULL for none. */
char *pool_format_kept(const struct pool_config *pool, const int local[2]);

#endif
