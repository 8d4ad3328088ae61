/* Weighted, stable choice of a pool address; see pool.h. */
#include "zone/pool.h"

#include <stdint.h>

/* FNV-1a over both strings, then a final mix (splitmix64). */
static uint64_t hash2(const char *a, const char *b)
{
	uint64_t h = 1469598103934665603ULL;
	for (const char *s = a; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	h = (h ^ 0xff) * 1099511628211ULL; /* separator: "ab"+"c" != "a"+"bc" */
	for (const char *s = b; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	return h ^ (h >> 31);
}

int pool_pick(const struct pool_config *pool, const char *id, const char *domain)
{
	if (pool->naddrs == 0)
		return -1;
	/* Addresses without a ratio share what the others leave, equally. */
	double given = 0;
	size_t unset = 0;
	for (size_t i = 0; i < pool->naddrs; i++) {
		if (pool->addrs[i].ratio >= 0)
			given += pool->addrs[i].ratio;
		else
			unset++;
	}
	double rest = unset > 0 && given < 1 ? (1 - given) / (double)unset : 0;
	double total = given + rest * (double)unset;
	if (total <= 0)
		return (int)(hash2(id, domain) % pool->naddrs); /* all ratios 0: equal */
	double x = (double)(hash2(id, domain) >> 11) / 9007199254740992.0 * total; /* [0, total) */
	double acc = 0;
	for (size_t i = 0; i < pool->naddrs; i++) {
		acc += pool->addrs[i].ratio >= 0 ? pool->addrs[i].ratio : rest;
		if (x < acc)
			return (int)i;
	}
	return (int)pool->naddrs - 1;
}
