/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Routing: which sending zone each recipient goes through.  Rules, first
 * match wins: the X-Sending-Zone header (only where the interface allows
 * it), zones' routingHeaders, authenticatedUsers (the user who logged in
 * with SMTP AUTH), senderDomains (the envelope sender's domain),
 * recipientDomains, then queue.defaultZone.  Within one rule, zones are
 * tried in configuration order.  The first four rules depend only on the
 * message, so they are decided once per message.
 */
#ifndef ZMTA_ROUTE_H
#define ZMTA_ROUTE_H

#include "core/config.h"
#include "msg/header.h"

struct route_message {
	const char *header_zone; /* X-Sending-Zone value if it may be used, else NULL */
	const struct header_list *headers;
	const char *sender_domain; /* lower case, NULL for the null sender */
	const char *user;          /* authenticated user, or NULL */
};

/*
 * The zone chosen by the message-level rules, or NULL when the recipient's
 * domain decides.  *rule names the rule that matched ("header",
 * "routingHeaders", "authenticatedUsers", "senderDomains").  An X-Sending-Zone naming no zone is
 * skipped (logged by the caller through *unknown_zone).
 */
const struct zone_config *route_message_zone(const struct config *cfg,
					     const struct route_message *m, const char **rule,
					     const char **unknown_zone);

/* The zone for a recipient domain (lower case) when no message-level rule
 * matched: recipientDomains, else the default zone. */
const struct zone_config *route_recipient_zone(const struct config *cfg, const char *domain,
					       const char **rule);

#endif
