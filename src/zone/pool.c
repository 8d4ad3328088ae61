/* SPDX-License-Identifier: EUPL-1.2 */
/* Weighted, stable choice of a pool address per family; see pool.h. */
#include "zone/pool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

int pool_family(const char *address)
{
	return strchr(address, ':') != NULL ? POOL_IPV6 : POOL_IPV4;
}

void pool_rr_init(struct pool_rr *rr, const struct pool_config *pool, int family)
{
	size_t n = pool->naddrs;
	rr->pool = pool;
	rr->family = family;
	rr->count = 0;
	rr->weight = xcalloc(n ? n : 1, sizeof(double));
	rr->current = xcalloc(n ? n : 1, sizeof(double));
	/* Addresses without a ratio share what the others leave, equally;
	 * when the ratios leave nothing, they are used as given.  Ratios are
	 * read within the family: they set the shares among its addresses. */
	double given = 0;
	size_t unset = 0;
	for (size_t i = 0; i < n; i++) {
		if (pool_family(pool->addrs[i].address) != family)
			continue;
		rr->count++;
		if (pool->addrs[i].ratio >= 0)
			given += pool->addrs[i].ratio;
		else
			unset++;
	}
	double rest = unset > 0 && given < 1 ? (1 - given) / (double)unset : 0;
	double total = 0;
	for (size_t i = 0; i < n; i++) {
		if (pool_family(pool->addrs[i].address) != family)
			continue;
		rr->weight[i] = pool->addrs[i].ratio >= 0 ? pool->addrs[i].ratio : rest;
		total += rr->weight[i];
	}
	if (total <= 0) /* every ratio 0: share equally rather than send nothing */
		for (size_t i = 0; i < n; i++)
			if (pool_family(pool->addrs[i].address) == family)
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
	if (rr->count == 0)
		return -1;
	/* nginx's smooth weighted round robin: raise every address by its
	 * weight, take the highest, lower it by the total. */
	double total = 0;
	size_t best = SIZE_MAX;
	for (size_t i = 0; i < n; i++) {
		if (pool_family(rr->pool->addrs[i].address) != rr->family)
			continue;
		rr->current[i] += rr->weight[i];
		total += rr->weight[i];
		if (best == SIZE_MAX || rr->current[i] > rr->current[best])
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

void pool_parse_kept(const struct pool_config *pool, const char *kept, int local[2])
{
	if (kept == NULL)
		return;
	char *copy = xstrdup(kept);
	char *save = NULL;
	for (char *a = strtok_r(copy, ",", &save); a != NULL; a = strtok_r(NULL, ",", &save)) {
		int i = pool_find(pool, a);
		if (i >= 0)
			local[pool_family(a)] = i;
	}
	free(copy);
}

char *pool_format_kept(const struct pool_config *pool, const int local[2])
{
	const char *v4 = local[POOL_IPV4] >= 0 ? pool->addrs[local[POOL_IPV4]].address : NULL;
	const char *v6 = local[POOL_IPV6] >= 0 ? pool->addrs[local[POOL_IPV6]].address : NULL;
	if (v4 != NULL && v6 != NULL)
		return xasprintf("%s,%s", v4, v6);
	if (v4 != NULL || v6 != NULL)
		return xstrdup(v4 != NULL ? v4 : v6);
	return NULL;
}
