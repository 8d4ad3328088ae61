/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: ingest (ingest.c) on the RAM queue: the header rewrite, what
 * the content needs (bodyType, smtputf8, longLines), duplicate recipients,
 * routing, and the hook points between the data and the commit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>

#include "core/xmalloc.h"
#include "hook/hook.h"
#include "msg/header.h"
#include "msg/ingest.h"
#include "queue/store_ram.h"
#include "test_util.h"

#define DIR "ram:test_ingest"

static const char CONFIG[] = "zones:\n"
			     "  default: {}\n"
			     "  special: {recipientDomains: [special.test]}\n"
			     "  chosen: {}\n"
			     "dkim: {enabled: false}\n";

static struct event_base *base;
static struct config *cfg;
static struct queue *q;

static int setup(void **state)
{
	(void)state;
	evthread_use_pthreads();
	base = event_base_new();
	cfg = test_config(CONFIG);
	store_ram_destroy(DIR);
	char *err = NULL;
	q = queue_open_backend(base, &store_ram, DIR, 0, NULL, NULL, &err);
	assert_non_null(q);
	hook_init(base, 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	hook_shutdown();
	queue_close(q);
	store_ram_destroy(DIR);
	config_free(cfg);
	event_base_free(base);
	return 0;
}

struct result {
	bool done;
	int rc;
	char error[256];
	char id[QUEUE_ID_LEN + 1];
	json_t *meta;
	char *header;
	json_t *deliveries;
};

static void on_done(void *arg, int rc, const char *error)
{
	struct result *r = arg;
	r->done = true;
	r->rc = rc;
	snprintf(r->error, sizeof(r->error), "%s", error ? error : "");
}

static void on_message(void *arg, int rc, const struct queue_message *msg)
{
	struct result *r = arg;
	r->done = true;
	assert_int_equal(rc, 1);
	r->meta = json_incref(msg->meta);
	r->header = strndup(msg->header_block, msg->header_len);
	r->deliveries = json_incref(msg->deliveries);
}

static void until(struct result *r)
{
	while (!r->done)
		event_base_loop(base, EVLOOP_ONCE);
}

/* Ingests `msg` from `from` to the NULL-terminated `rcpts`; on success reads
 * back what was stored into r. */
static void ingest(const char *msg, const char *from, char *const *rcpts, bool routing_headers,
		   struct result *r)
{
	struct ingest *in = ingest_new(q, cfg, NULL, NULL);
	/* In small pieces: the header block may end inside one. */
	for (size_t off = 0, n = strlen(msg); off < n; off += 7)
		assert_int_equal(ingest_write(in, msg + off, n - off < 7 ? n - off : 7), 0);
	size_t nrcpts = 0;
	while (rcpts[nrcpts] != NULL)
		nrcpts++;
	struct ingest_envelope env = {
	    .interface = "feeder",
	    .origin = "192.0.2.1",
	    .transhost = "client.test",
	    .transtype = "ESMTP",
	    .from = from,
	    .rcpts = rcpts,
	    .nrcpts = nrcpts,
	    .allow_routing_headers = routing_headers,
	    .received_by = "mx.test",
	};
	ingest_finish(in, &env, on_done, r);
	until(r);
	snprintf(r->id, sizeof(r->id), "%s", ingest_id(in));
	ingest_free(in);
	if (r->rc != 0)
		return;
	r->done = false;
	queue_message_get(q, r->id, on_message, r);
	until(r);
}

static void result_clear(struct result *r)
{
	json_decref(r->meta);
	json_decref(r->deliveries);
	free(r->header);
}

static const char *meta_str(const struct result *r, const char *key)
{
	return json_string_value(json_object_get(r->meta, key));
}

static const char *zone_of(const struct result *r, size_t i)
{
	return json_string_value(json_object_get(json_array_get(r->deliveries, i), "zone"));
}

static void test_headers_rewritten_and_content_detected(void **state)
{
	(void)state;
	char *rcpts[] = {"a@example.test", "b@special.test", "a@example.test", NULL};
	struct result r = {0};
	ingest("Subject: hi\r\nBcc: hidden@example.test\r\nX-Sending-Zone: chosen\r\n\r\n"
	       "caf\xc3\xa9\r\n",
	       "s@example.test", rcpts, false, &r);
	assert_int_equal(r.rc, 0);
	/* Received first, for no one (two recipients); Message-ID and Date added;
	 * Bcc and X-Sending-Zone gone. */
	assert_true(
	    strncmp(r.header, "Received: from client.test ([192.0.2.1])\r\n\tby mx.test", 53) == 0);
	assert_null(strstr(r.header, "\tfor <"));
	assert_non_null(strstr(r.header, "\r\nMessage-ID: <"));
	assert_non_null(strstr(r.header, "\r\nDate: "));
	assert_null(strstr(r.header, "Bcc:"));
	assert_null(strstr(r.header, "X-Sending-Zone"));
	/* The body is 8-bit; the envelope and header are ASCII. */
	assert_string_equal(meta_str(&r, "bodyType"), "8BITMIME");
	assert_false(json_is_true(json_object_get(r.meta, "smtputf8")));
	/* The duplicate is dropped; routing: by recipient domain, and the header
	 * was not allowed to choose. */
	assert_int_equal(json_array_size(r.deliveries), 2);
	assert_string_equal(zone_of(&r, 0), "default");
	assert_string_equal(zone_of(&r, 1), "special");
	result_clear(&r);
}

static void test_routing_header_when_allowed_utf8_and_long_lines(void **state)
{
	(void)state;
	char line[1200];
	memset(line, 'x', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	char *msg = xasprintf(
	    "Subject: =?utf-8?q?x?= \xc3\xa9\r\nX-Sending-Zone: chosen\r\n\r\n%s\r\n", line);
	char *rcpts[] = {"b@special.test", NULL};
	struct result r = {0};
	ingest(msg, "s@example.test", rcpts, true, &r);
	free(msg);
	assert_int_equal(r.rc, 0);
	assert_string_equal(zone_of(&r, 0), "chosen");
	/* UTF-8 in the header block needs SMTPUTF8; the body is ASCII. */
	assert_true(json_is_true(json_object_get(r.meta, "smtputf8")));
	assert_string_equal(meta_str(&r, "bodyType"), "7BIT");
	assert_int_equal(json_integer_value(json_object_get(r.meta, "longLines")), 1);
	/* One recipient: the trace field names it. */
	assert_non_null(strstr(r.header, "\tfor <b@special.test>;"));
	result_clear(&r);
}

/* --- hooks --- */

static enum hook_verdict add_header(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	(void)call;
	(void)arg;
	assert_string_equal(ctx->from, "s@example.test");
	assert_int_equal(ctx->nrcpts, 2);
	header_list_insert(ctx->headers, ctx->headers->count, "X-Hooked", "yes");
	return HOOK_CONTINUE;
}

static int routes_seen;

static enum hook_verdict reroute(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	(void)call;
	(void)arg;
	routes_seen++;
	if (strncmp(ctx->address, "move@", 5) == 0)
		*ctx->zone = "chosen";
	else if (strncmp(ctx->address, "lost@", 5) == 0)
		*ctx->zone = "no-such-zone";
	return HOOK_CONTINUE;
}

static struct hook_call *held;

static enum hook_verdict hold(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	held = call;
	return HOOK_PENDING;
}

static void test_hooks_change_headers_and_zones(void **state)
{
	(void)state;
	routes_seen = 0;
	hook_register(HOOK_MESSAGE_HEADERS, "t", add_header, NULL, NULL);
	hook_register(HOOK_QUEUE_ROUTE, "t", reroute, NULL, NULL);
	char *rcpts[] = {"move@example.test", "lost@special.test", NULL};
	struct result r = {0};
	ingest("Subject: hi\r\n\r\nbody\r\n", "s@example.test", rcpts, false, &r);
	assert_int_equal(r.rc, 0);
	assert_non_null(strstr(r.header, "\r\nX-Hooked: yes\r\n"));
	assert_int_equal(routes_seen, 2);
	assert_string_equal(zone_of(&r, 0), "chosen");
	assert_string_equal(zone_of(&r, 1), "special"); /* no such zone: kept */
	result_clear(&r);
}

static void test_a_late_refusal_stores_nothing(void **state)
{
	(void)state;
	held = NULL;
	hook_register(HOOK_MESSAGE_QUEUE, "t", hold, NULL, NULL);
	char *rcpts[] = {"a@example.test", NULL};
	struct ingest *in = ingest_new(q, cfg, NULL, NULL);
	const char msg[] = "Subject: hi\r\n\r\nbody\r\n";
	ingest_write(in, msg, sizeof(msg) - 1);
	struct ingest_envelope env = {.interface = "api",
				      .origin = "192.0.2.1",
				      .transtype = "HTTP",
				      .from = "s@example.test",
				      .rcpts = rcpts,
				      .nrcpts = 1,
				      .received_by = "mx.test"};
	struct result r = {0};
	ingest_finish(in, &env, on_done, &r);
	/* The envelope was copied: the caller's may go while the hook waits. */
	rcpts[0] = NULL;
	assert_false(r.done);
	assert_non_null(held);
	hook_answer(held, HOOK_REJECT, "550 5.7.1 not today");
	assert_true(r.done);
	assert_int_equal(r.rc, INGEST_REJECTED);
	assert_string_equal(r.error, "550 5.7.1 not today");
	ingest_free(in);
	queue_close(q); /* the body's chunks are deleted before it returns */
	assert_int_equal(store_ram_count(DIR, STORE_CF_META), 0);
	assert_int_equal(store_ram_count(DIR, STORE_CF_DLV), 0);
	assert_int_equal(store_ram_count(DIR, STORE_CF_BODY), 0);
	char *err = NULL;
	q = queue_open_backend(base, &store_ram, DIR, 0, NULL, NULL, &err);
}

static void test_freeing_a_waiting_ingest_cancels_its_hook(void **state)
{
	(void)state;
	held = NULL;
	hook_register(HOOK_MESSAGE_HEADERS, "t", hold, NULL, NULL);
	char *rcpts[] = {"a@example.test", NULL};
	struct ingest *in = ingest_new(q, cfg, NULL, NULL);
	ingest_write(in, "Subject: x\r\n\r\nb\r\n", 17);
	struct ingest_envelope env = {.interface = "api",
				      .origin = "192.0.2.1",
				      .transtype = "HTTP",
				      .from = "",
				      .rcpts = rcpts,
				      .nrcpts = 1,
				      .received_by = "mx.test"};
	struct result r = {0};
	ingest_finish(in, &env, on_done, &r);
	assert_non_null(held);
	ingest_free(in); /* the client went away */
	/* The run is gone: nothing is left to answer (ASan would see a use after free). */
	hook_shutdown();
	assert_false(r.done);
	hook_init(base, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_headers_rewritten_and_content_detected, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_routing_header_when_allowed_utf8_and_long_lines,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hooks_change_headers_and_zones, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_late_refusal_stores_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_freeing_a_waiting_ingest_cancels_its_hook, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
