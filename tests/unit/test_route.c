/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: routing precedence (route.c): X-Sending-Zone (when allowed),
 * routingHeaders, authenticatedUsers, senderDomains, recipientDomains, the default zone; within
 * a rule, configuration order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "msg/header.h"
#include "zone/route.h"
#include "test_util.h"

static const char CONFIG[] =
    "queue: {defaultZone: fallback}\n"
    "zones:\n"
    "  fallback: {}\n"
    "  byheader: {routingHeaders: {x-class: bulk}}\n"
    "  byuser: {authenticatedUsers: [alice, Bob]}\n"
    "  bysender: {senderDomains: [news.test], recipientDomains: [rcpt.test]}\n"
    "  bysender2: {senderDomains: [news.test]}\n"
    "  byrcpt: {recipientDomains: [rcpt.test, other.test], routingHeaders: {x-class: bulk}}\n";

static struct config *cfg;

static int setup(void **state)
{
	(void)state;
	cfg = test_config(CONFIG);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	config_free(cfg);
	return 0;
}

static const char *route_as(const char *user, const char *header_zone, const char *head,
			    const char *sender, const char *rcpt_domain, const char **rule)
{
	struct header_list h = {0};
	header_list_parse(&h, head, strlen(head));
	struct route_message m = {header_zone, &h, sender, user};
	const char *unknown;
	const struct zone_config *z = route_message_zone(cfg, &m, rule, &unknown);
	if (z == NULL)
		z = route_recipient_zone(cfg, rcpt_domain, rule);
	header_list_clear(&h);
	return z->name;
}

static const char *route(const char *header_zone, const char *head, const char *sender,
			 const char *rcpt_domain, const char **rule)
{
	return route_as(NULL, header_zone, head, sender, rcpt_domain, rule);
}

static void test_precedence(void **state)
{
	(void)state;
	const char *rule;
	const char *bulk = "X-Class: bulk\r\nSubject: s\r\n\r\n";
	const char *plain = "Subject: s\r\n\r\n";
	/* The header beats everything. */
	assert_string_equal(route("bysender2", bulk, "news.test", "rcpt.test", &rule), "bysender2");
	assert_string_equal(rule, "header");
	/* routingHeaders beat senderDomains; the first zone in order wins. */
	assert_string_equal(route(NULL, bulk, "news.test", "rcpt.test", &rule), "byheader");
	assert_string_equal(rule, "routingHeaders");
	/* values compare as ZoneMTA compares them: trimmed, case ignored */
	assert_string_equal(
	    route(NULL, "x-class:   BULK  \r\nSubject: s\r\n\r\n", "news.test", "rcpt.test", &rule),
	    "byheader");
	assert_string_not_equal(
	    route(NULL, "X-Class: bulkier\r\n\r\n", "news.test", "rcpt.test", &rule), "byheader");
	/* authenticatedUsers come after routingHeaders, before senderDomains;
	 * names compare exactly. */
	assert_string_equal(route_as("alice", NULL, bulk, "news.test", "rcpt.test", &rule),
			    "byheader");
	assert_string_equal(route_as("Bob", NULL, plain, "news.test", "rcpt.test", &rule),
			    "byuser");
	assert_string_equal(rule, "authenticatedUsers");
	assert_string_equal(route_as("bob", NULL, plain, "news.test", "rcpt.test", &rule),
			    "bysender");
	/* senderDomains beat recipientDomains, first zone in order. */
	assert_string_equal(route(NULL, plain, "news.test", "rcpt.test", &rule), "bysender");
	assert_string_equal(rule, "senderDomains");
	/* recipientDomains: first in order lists rcpt.test. */
	assert_string_equal(route(NULL, plain, "else.test", "rcpt.test", &rule), "bysender");
	assert_string_equal(rule, "recipientDomains");
	assert_string_equal(route(NULL, plain, "else.test", "other.test", &rule), "byrcpt");
	/* Nothing matches: the default zone; the null sender too. */
	assert_string_equal(route(NULL, plain, NULL, "nowhere.test", &rule), "fallback");
	assert_string_equal(rule, "default");
}

static void test_unknown_header_zone_is_skipped(void **state)
{
	(void)state;
	struct header_list h = {0};
	struct route_message m = {"nosuchzone", &h, "news.test", NULL};
	const char *rule, *unknown;
	const struct zone_config *z = route_message_zone(cfg, &m, &rule, &unknown);
	assert_string_equal(unknown, "nosuchzone");
	assert_string_equal(z->name, "bysender");
	/* Zone names match case-insensitively. */
	m.header_zone = "BYRCPT";
	z = route_message_zone(cfg, &m, &rule, &unknown);
	assert_null(unknown);
	assert_string_equal(z->name, "byrcpt");
}

static void test_header_value_must_match_exactly(void **state)
{
	(void)state;
	const char *rule;
	assert_string_equal(route(NULL, "X-Class: bulky\r\n\r\n", NULL, "x.test", &rule),
			    "fallback");
	assert_string_equal(route(NULL, "X-Other: bulk\r\n\r\n", NULL, "x.test", &rule),
			    "fallback");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_header_zone_is_skipped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_header_value_must_match_exactly, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
