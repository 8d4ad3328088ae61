/* Weighted, stable choice of a pool address; see pool.h. */
#include "zone/pool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

void pool_rr_init(struct pool_rr *rr, const struct pool_config *pool)
{
	size_t n = pool->naddrs;
	rr->pool = pool;
	rr->weight = xcalloc(n ? n : 1, sizeof(double));
	rr->current = xcalloc(n ? n : 1, sizeof(double));
	/* Addresses without a ratio share what the others leave, equally;
	 * when the ratios leave nothing, they are used as given. */
	double given = 0;
	size_t unset = 0;
	for (size_t i = 0; i < n; i++) {
		if (pool->addrs[i].ratio >= 0)
			given += pool->addrs[i].ratio;
		else
			unset++;
	}
	double rest = unset > 0 && given < 1 ? (1 - given) / (double)unset : 0;
	double total = 0;
	for (size_t i = 0; i < n; i++) {
		rr->weight[i] = pool->addrs[i].ratio >= 0 ? pool->addrs[i].ratio : rest;
		total += rr->weight[i];
	}
	if (total <= 0) /* every ratio 0: share equally rather than send nothing */
		for (size_t i = 0; i < n; i++)
			rr->weight[i] = 1;
}

void pool_rr_clear(struct pool_rr *rr)
{
	free(rr->weight);
	free(rr->current);
}

int pool_rr_next(struct pool_rr *rr)
{
	size_t n = rr->pool->naddrs;
	if (n == 0)
		return -1;
	/* nginx's smooth weighted round robin: raise every address by its
	 * weight, take the highest, lower it by the total. */
	double total = 0;
	size_t best = 0;
	for (size_t i = 0; i < n; i++) {
		rr->current[i] += rr->weight[i];
		total += rr->weight[i];
		if (rr->current[i] > rr->current[best])
			best = i;
	}
	rr->current[best] -= total;
	return (int)best;
}

int pool_find(const struct pool_config *pool, const char *address)
{
	for (size_t i = 0; i < pool->naddrs; i++)
		if (strcmp(pool->addrs[i].address, address) == 0)
			return (int)i;
	return -1;
}
