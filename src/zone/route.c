/* SPDX-License-Identifier: EUPL-1.2 */
/* Recipient routing to sending zones; see route.h. */
#include "zone/route.h"

#include <string.h>
#include <strings.h>
#include <ctype.h>

static bool domain_listed(char *const *list, size_t n, const char *domain)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], domain) == 0)
			return true;
	return false;
}

/* Does some field `name` (lower case) carry exactly `value`? */
/* `s` without leading and trailing white space: its start, and *n its length. */
static const char *trimmed(const char *s, size_t *n)
{
	*n = strlen(s);
	while (*n > 0 && isspace((unsigned char)s[*n - 1]))
		(*n)--;
	while (*n > 0 && isspace((unsigned char)*s)) {
		s++;
		(*n)--;
	}
	return s;
}

/* As ZoneMTA compares them: the value trimmed, case ignored. */
static bool has_header_value(const struct header_list *headers, const char *name, const char *value)
{
	size_t vlen, n;
	value = trimmed(value, &vlen);
	for (size_t i = 0; i < headers->count; i++) {
		const char *v = trimmed(headers->items[i].value, &n);
		if (strcmp(headers->items[i].key, name) == 0 && n == vlen &&
		    strncasecmp(v, value, n) == 0)
			return true;
	}
	return false;
}

const struct zone_config *route_message_zone(const struct config *cfg,
					     const struct route_message *m, const char **rule,
					     const char **unknown_zone)
{
	*unknown_zone = NULL;
	if (m->header_zone != NULL && m->header_zone[0] != '\0') {
		const struct zone_config *z = config_zone(cfg, m->header_zone);
		if (z != NULL) {
			*rule = "header";
			return z;
		}
		*unknown_zone = m->header_zone;
	}
	for (size_t i = 0; i < cfg->n_zones; i++) {
		const struct zone_config *z = &cfg->zones[i];
		for (size_t j = 0; j < z->n_routing_headers; j++) {
			if (has_header_value(m->headers, z->routing_headers[j].name,
					     z->routing_headers[j].value)) {
				*rule = "routingHeaders";
				return z;
			}
		}
	}
	if (m->user != NULL) {
		for (size_t i = 0; i < cfg->n_zones; i++) {
			const struct zone_config *z = &cfg->zones[i];
			for (size_t j = 0; j < z->n_authenticated_users; j++) {
				if (strcmp(z->authenticated_users[j], m->user) == 0) {
					*rule = "authenticatedUsers";
					return z;
				}
			}
		}
	}
	if (m->sender_domain != NULL) {
		for (size_t i = 0; i < cfg->n_zones; i++) {
			const struct zone_config *z = &cfg->zones[i];
			if (domain_listed(z->sender_domains, z->n_sender_domains,
					  m->sender_domain)) {
				*rule = "senderDomains";
				return z;
			}
		}
	}
	return NULL;
}

const struct zone_config *route_recipient_zone(const struct config *cfg, const char *domain,
					       const char **rule)
{
	for (size_t i = 0; i < cfg->n_zones; i++) {
		const struct zone_config *z = &cfg->zones[i];
		if (domain_listed(z->recipient_domains, z->n_recipient_domains, domain)) {
			*rule = "recipientDomains";
			return z;
		}
	}
	*rule = "default";
	return config_zone(cfg, cfg->queue.default_zone);
}
