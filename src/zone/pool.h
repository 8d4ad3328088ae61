/*
 * Choosing the local address a delivery is sent from.  The choice hashes
 * the message id and the recipient domain, so every retry of a delivery
 * leaves from the same address, while different messages spread over the
 * pool in proportion to the addresses' ratios (IP warm-up).
 */
#ifndef ZMTA_POOL_H
#define ZMTA_POOL_H

#include "core/config.h"

/* Index into pool->addrs, or -1 for an empty pool (the system chooses). */
int pool_pick(const struct pool_config *pool, const char *id, const char *domain);

#endif
