/*
 * Choosing the local address a delivery is sent from.  Messages are dealt
 * to the pool's addresses by smooth weighted round robin, in proportion to
 * their ratios (IP warm-up) to within one message at any moment.  The
 * choice is made once per delivery and kept (in memory and, once a
 * delivery is deferred, in its stored row), so retries leave from the same
 * address.
 */
#ifndef ZMTA_POOL_H
#define ZMTA_POOL_H

#include "core/config.h"

struct pool_rr {
	const struct pool_config *pool;
	double *weight;  /* share of each address */
	double *current; /* smooth weighted round robin state */
};

void pool_rr_init(struct pool_rr *rr, const struct pool_config *pool);
void pool_rr_clear(struct pool_rr *rr);
/* The next address: an index into pool->addrs, or -1 for an empty pool
 * (the system chooses the source address). */
int pool_rr_next(struct pool_rr *rr);
/* The index of `address` in the pool, or -1. */
int pool_find(const struct pool_config *pool, const char *address);

#endif
