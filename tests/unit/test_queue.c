/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: the queue (queue.c) on the RAM store: commits, counters,
 * finish and defer, the hot cache, recovery, a failing store. */
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

#include "core/clock.h"
#include "queue/queue.h"
#include "queue/store_ram.h"

#define DIR "ram:test_queue"

static struct event_base *base;
static int rows_seen;
static char last_row_id[QUEUE_ID_LEN + 1];

static void on_row(void *arg, const struct queue_delivery_row *row)
{
	(void)arg;
	rows_seen++;
	snprintf(last_row_id, sizeof(last_row_id), "%s", row->id);
}

static struct queue *open_queue(void)
{
	char *err = NULL;
	struct queue *q = queue_open_backend(base, &store_ram, DIR, 0, on_row, NULL, &err);
	assert_non_null(q);
	return q;
}

struct wait {
	bool done;
	int rc;
	char error[256];
};

static void until(struct wait *w)
{
	while (!w->done)
		event_base_loop(base, EVLOOP_ONCE);
}

static void on_commit(void *arg, int rc, const char *error)
{
	struct wait *w = arg;
	w->done = true;
	w->rc = rc;
	snprintf(w->error, sizeof(w->error), "%s", error ? error : "");
}

static const char BODY[] = "\r\nhello\r\n";

/* Commits a message to the given recipients (domain after '@'); its id into id. */
static int commit(struct queue *q, char id[QUEUE_ID_LEN + 1], const char *const *rcpts, size_t n,
		  struct wait *w)
{
	queue_id_new(q, id);
	struct queue_body *b = queue_body_new(q, id, NULL, NULL);
	queue_body_write(b, BODY, sizeof(BODY) - 1);
	struct queue_delivery dlv[8];
	for (size_t i = 0; i < n; i++)
		dlv[i] = (struct queue_delivery){"default", rcpts[i], strchr(rcpts[i], '@') + 1,
						 clock_wall_ms()};
	const char header[] = "Subject: t\r\n";
	queue_message_commit(b, json_pack("{s:s, s:s}", "id", id, "from", "s@example.test"), header,
			     sizeof(header) - 1, dlv, n, NULL, on_commit, w);
	until(w);
	queue_body_free(b);
	return w->rc;
}

static int setup(void **state)
{
	(void)state;
	evthread_use_pthreads(); /* the store workers wake the loop from their threads */
	base = event_base_new();
	rows_seen = 0;
	store_ram_destroy(DIR);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	store_ram_destroy(DIR);
	event_base_free(base);
	return 0;
}

static void test_commit_counts_and_finish(void **state)
{
	(void)state;
	struct queue *q = open_queue();
	char id[QUEUE_ID_LEN + 1];
	const char *rcpts[] = {"a@one.test", "b@one.test", "c@two.test"};
	struct wait w = {0};
	assert_int_equal(commit(q, id, rcpts, 3, &w), 0);
	assert_int_equal(rows_seen, 3); /* each new row goes to the hook */
	assert_int_equal(store_ram_count(DIR, STORE_CF_META), 1);
	assert_int_equal(store_ram_count(DIR, STORE_CF_DLV), 3);
	assert_int_equal(store_ram_count(DIR, STORE_CF_BODY), 1);

	const struct strmap *domains;
	const struct queue_counts *c = queue_zone_counts(q, "default", &domains);
	assert_non_null(c);
	assert_int_equal(c->queued, 3);
	assert_int_equal(c->deferred, 0);
	const struct queue_counts *one = strmap_get(domains, "one.test");
	assert_int_equal(one->queued, 2);

	/* A deferral moves a count; finishing removes it. */
	struct queue_delivery_row row = {.id = id,
					 .seq = 1,
					 .zone = "default",
					 .recipient = "a@one.test",
					 .domain = "one.test",
					 .created = clock_wall_ms(),
					 .next_attempt = clock_wall_ms() + 60000,
					 .attempts = 1,
					 .deferred = true};
	struct queue_attempt attempt = {clock_wall_ms(), "mx.one.test",    "192.0.2.1", NULL,
					"TLSv1.3",       "451 4.0.0 later"};
	queue_delivery_defer(q, &row, false, &attempt, NULL);
	c = queue_zone_counts(q, "default", &domains);
	assert_int_equal(c->queued, 2);
	assert_int_equal(c->deferred, 1);
	/* The attempt joins the delivery's history, which goes with it. */
	struct wait deferred = {0};
	queue_after_writes(q, on_commit, &deferred);
	until(&deferred);
	assert_int_equal(store_ram_count(DIR, STORE_CF_ATTEMPTS), 1);
	queue_delivery_finish(q, id, 1, "default", "one.test", true, NULL);
	queue_delivery_finish(q, id, 2, "default", "one.test", false, NULL);
	c = queue_zone_counts(q, "default", &domains);
	assert_int_equal(c->queued, 1);
	assert_int_equal(c->deferred, 0);
	assert_int_equal(queue_processed(q), 2);
	/* The last one takes the message with it; queue_after_writes answers
	 * once that is written. */
	queue_delivery_finish(q, id, 3, "default", "two.test", false, NULL);
	struct wait written = {0};
	queue_after_writes(q, on_commit, &written);
	until(&written);
	assert_int_equal(written.rc, 0);
	assert_int_equal(store_ram_count(DIR, STORE_CF_META), 0);
	assert_int_equal(store_ram_count(DIR, STORE_CF_ATTEMPTS), 0);
	queue_close(q);
	assert_int_equal(store_ram_count(DIR, STORE_CF_META), 0);
	assert_int_equal(store_ram_count(DIR, STORE_CF_DLV), 0);
	assert_int_equal(store_ram_count(DIR, STORE_CF_BODY), 0);
}

struct loaded {
	struct wait w;
	char header[64];
	char body[64];
	json_int_t body_size;
};

static void on_load(void *arg, int rc, struct queue_message *msg)
{
	struct loaded *l = arg;
	l->w.done = true;
	l->w.rc = rc;
	if (rc == 1) {
		snprintf(l->header, sizeof(l->header), "%.*s", (int)msg->header_len,
			 msg->header_block);
		snprintf(l->body, sizeof(l->body), "%.*s", (int)msg->body_len, msg->body);
		l->body_size = json_integer_value(json_object_get(msg->meta, "bodySize"));
	}
}

static void test_hot_cache_answers_the_first_load(void **state)
{
	(void)state;
	struct queue *q = open_queue();
	char id[QUEUE_ID_LEN + 1];
	const char *rcpts[] = {"a@one.test"};
	struct wait w = {0};
	assert_int_equal(commit(q, id, rcpts, 1, &w), 0);
	struct queue_memory_stats st;
	queue_memory_stats(q, &st);
	assert_int_equal(st.hot_messages, 1);
	assert_true(st.hot_bytes > 0);

	struct loaded l = {0};
	queue_message_load(q, id, 0, 0, on_load, &l);
	until(&l.w);
	assert_int_equal(l.w.rc, 1);
	assert_string_equal(l.header, "Subject: t\r\n");
	assert_string_equal(l.body, BODY);
	assert_int_equal(l.body_size, sizeof(BODY) - 1);
	queue_memory_stats(q, &st);
	assert_int_equal(st.loads_hot, 1);
	assert_int_equal(st.loads_store, 0);
	assert_int_equal(st.hot_messages, 0); /* its body went to that load */

	/* The next load reads the store, with the same result. */
	struct loaded l2 = {0};
	queue_message_load(q, id, 0, 0, on_load, &l2);
	until(&l2.w);
	assert_int_equal(l2.w.rc, 1);
	assert_string_equal(l2.body, BODY);
	queue_memory_stats(q, &st);
	assert_int_equal(st.loads_store, 1);

	/* A message that is not there. */
	struct loaded none = {0};
	queue_message_load(q, "0000000000000000ab", 0, 0, on_load, &none);
	until(&none.w);
	assert_int_equal(none.w.rc, 0);
	queue_close(q);
}

static void put(struct store *s, enum store_cf cf, const char *key, size_t klen, const char *val)
{
	struct store_op op = {STORE_PUT, cf, key, klen, val, strlen(val)};
	char *err = NULL;
	assert_int_equal(store_ram.write(s, &op, 1, true, &err), 0);
}

static const char ROW[] = "{\"zone\":\"default\",\"domain\":\"one.test\",\"status\":\"QUEUED\","
			  "\"recipient\":\"a@one.test\",\"created\":1,\"next\":1,\"attempts\":0}";

/* What a restart finds: complete messages are scheduled again; rows without
 * their message, metadata without rows and bodies without metadata go. */
static void test_recovery(void **state)
{
	(void)state;
	struct queue *q = open_queue();
	char id[QUEUE_ID_LEN + 1];
	const char *rcpts[] = {"a@one.test", "b@two.test"};
	struct wait w = {0};
	assert_int_equal(commit(q, id, rcpts, 2, &w), 0);
	queue_close(q);

	bool corrupt;
	char *err = NULL;
	struct store *s = store_ram.open(DIR, &corrupt, &err);
	/* a delivery row whose message is gone */
	put(s, STORE_CF_DLV, "1111111111111111aa001", 21, ROW);
	/* metadata without any delivery row, and its body */
	put(s, STORE_CF_META, "2222222222222222aa", 18, "{\"bodySize\":3}");
	put(s, STORE_CF_BODY, "2222222222222222aa\0\0\0\0", 22, "abc");
	/* a body without metadata */
	put(s, STORE_CF_BODY, "3333333333333333aa\0\0\0\0", 22, "xyz");
	/* an unreadable row of the complete message: kept for a human */
	char bad[22];
	snprintf(bad, sizeof(bad), "%s0ff", id);
	put(s, STORE_CF_DLV, bad, 21, "not json");
	store_ram.close(s);

	rows_seen = 0;
	q = open_queue();
	assert_int_equal(rows_seen, 2); /* the complete message's two rows */
	assert_string_equal(last_row_id, id);
	const struct queue_counts *c = queue_zone_counts(q, "default", NULL);
	assert_int_equal(c->queued, 2);
	queue_close(q);
	assert_int_equal(store_ram_count(DIR, STORE_CF_META), 1);
	assert_int_equal(store_ram_count(DIR, STORE_CF_DLV), 3); /* 2 + the unreadable one */
	assert_int_equal(store_ram_count(DIR, STORE_CF_BODY), 1);

	/* New ids sort after every stored one, even in the same millisecond. */
	q = open_queue();
	char next[QUEUE_ID_LEN + 1];
	queue_id_new(q, next);
	assert_true(strcmp(next, id) > 0);
	queue_close(q);
}

static void test_a_failed_write_breaks_the_store(void **state)
{
	(void)state;
	struct queue *q = open_queue();
	char id[QUEUE_ID_LEN + 1];
	const char *rcpts[] = {"a@one.test"};
	store_ram_fail_writes(DIR, 1);
	struct wait w = {0};
	assert_int_equal(commit(q, id, rcpts, 1, &w), QUEUE_ERR_STORE);
	assert_non_null(strstr(w.error, "injected"));
	/* RocksDB must not be written after an I/O error: the next commit is
	 * refused too, though the store would take it. */
	struct wait w2 = {0};
	assert_int_equal(commit(q, id, rcpts, 1, &w2), QUEUE_ERR_STORE);
	assert_int_equal(rows_seen, 0);
	assert_null(queue_zone_counts(q, "default", NULL));
	assert_non_null(strstr(queue_broken(q), "injected by store_ram_fail_writes"));
	queue_close(q);
	assert_int_equal(store_ram_count(DIR, STORE_CF_DLV), 0);
}

/* A background error (a failed flush or compaction) is seen before the
 * next batch: nothing more is written. */
static void test_a_background_error_stops_writes(void **state)
{
	(void)state;
	struct queue *q = open_queue();
	char id[QUEUE_ID_LEN + 1];
	const char *rcpts[] = {"a@one.test"};
	struct wait w = {0};
	assert_int_equal(commit(q, id, rcpts, 1, &w), 0);
	assert_null(queue_broken(q));
	store_ram_background_error(DIR);
	struct wait w2 = {0};
	char id2[QUEUE_ID_LEN + 1];
	assert_int_equal(commit(q, id2, rcpts, 1, &w2), QUEUE_ERR_STORE);
	assert_non_null(strstr(w2.error, "injected by store_ram_background_error"));
	assert_non_null(queue_broken(q));
	/* Deletions are not written either: the first message stays. */
	queue_delivery_finish(q, id, 1, "default", "one.test", false, NULL);
	queue_close(q);
	assert_int_equal(store_ram_count(DIR, STORE_CF_DLV), 1);
	assert_int_equal(store_ram_count(DIR, STORE_CF_META), 1);
}

/* Queues a DSN for deliveries `seqs` of message id, finishing them in the
 * same write. */
static int notice(struct queue *q, const char *id, const unsigned *seqs, size_t n,
		  char dsn_id[QUEUE_ID_LEN + 1], const char *body, size_t body_len)
{
	queue_id_new(q, dsn_id);
	struct queue_finished fin[4];
	for (size_t i = 0; i < n; i++)
		fin[i] = (struct queue_finished){id, seqs[i], "default", "one.test", false};
	struct queue_delivery dlv = {"bounces", "s@example.test", "example.test", clock_wall_ms()};
	const char header[] = "Subject: Delivery Status Notification (Failure)\r\n";
	struct wait w = {0};
	struct queue_events evs = {0};
	for (size_t i = 0; i < n; i++) {
		char eid[QUEUE_ID_LEN + 1];
		queue_id_new(q, eid);
		queue_event_add(&evs, "hook", eid, "{\"event\":\"bounced\"}", 20);
	}
	queue_notice_commit(q, dsn_id, json_pack("{s:s, s:s}", "id", dsn_id, "from", ""), header,
			    sizeof(header) - 1, body, body_len, &dlv, fin, n, &evs, on_commit, &w);
	assert_int_equal(evs.n, 0); /* taken */
	until(&w);
	return w.rc;
}

/* A notice and the end of the deliveries it reports on are one write:
 * the rows and (with the last) the message go, the notice is queued with
 * its body in chunks, and its delivery reaches the hook once durable. */
static void test_notice_commit_replaces_the_rows(void **state)
{
	(void)state;
	struct queue *q = open_queue();
	char id[QUEUE_ID_LEN + 1], dsn[QUEUE_ID_LEN + 1];
	const char *rcpts[] = {"a@one.test", "b@one.test", "c@one.test"};
	struct wait w = {0};
	assert_int_equal(commit(q, id, rcpts, 3, &w), 0);
	rows_seen = 0;
	unsigned first[] = {1, 2};
	assert_int_equal(notice(q, id, first, 2, dsn, "\r\nfailed\r\n", 10), 0);
	assert_int_equal(rows_seen, 1);
	assert_string_equal(last_row_id, dsn);
	assert_int_equal(store_ram_count(DIR, STORE_CF_META), 2);
	assert_int_equal(store_ram_count(DIR, STORE_CF_DLV), 2);    /* c, and the notice's */
	assert_int_equal(store_ram_count(DIR, STORE_CF_EVENTS), 2); /* one per finished row */
	const struct queue_counts *c = queue_zone_counts(q, "default", NULL);
	assert_int_equal(c->queued, 1);
	assert_int_equal(queue_zone_counts(q, "bounces", NULL)->queued, 1);

	/* A notice bigger than a chunk is stored in chunks, read back whole. */
	size_t big = QUEUE_CHUNK_SIZE + 100;
	char *body = malloc(big);
	memset(body, 'x', big);
	unsigned last[] = {3};
	char dsn2[QUEUE_ID_LEN + 1];
	assert_int_equal(notice(q, id, last, 1, dsn2, body, big), 0);
	free(body);
	struct wait written = {0};
	queue_after_writes(q, on_commit, &written);
	until(&written);
	assert_int_equal(store_ram_count(DIR, STORE_CF_META), 2); /* the two notices */
	assert_int_equal(store_ram_count(DIR, STORE_CF_BODY), 3); /* 1 + 2 chunks */
	assert_int_equal(queue_zone_counts(q, "default", NULL)->queued, 0);
	struct loaded l = {0};
	queue_message_load(q, dsn2, 0, 0, on_load, &l);
	until(&l.w);
	assert_int_equal(l.w.rc, 1);
	assert_int_equal(l.body_size, (json_int_t)big);
	queue_close(q);

	/* After a restart both notices are scheduled, nothing of the original. */
	rows_seen = 0;
	q = open_queue();
	assert_int_equal(rows_seen, 2);
	assert_null(queue_zone_counts(q, "default", NULL));
	queue_close(q);
}

/* A failed notice write leaves the rows as they were: retried after a
 * restart, reported again then. */
static void test_a_failed_notice_keeps_the_rows(void **state)
{
	(void)state;
	struct queue *q = open_queue();
	char id[QUEUE_ID_LEN + 1], dsn[QUEUE_ID_LEN + 1];
	const char *rcpts[] = {"a@one.test"};
	struct wait w = {0};
	assert_int_equal(commit(q, id, rcpts, 1, &w), 0);
	store_ram_fail_writes(DIR, 1);
	unsigned seqs[] = {1};
	assert_int_equal(notice(q, id, seqs, 1, dsn, "\r\nfailed\r\n", 10), QUEUE_ERR_STORE);
	queue_close(q);
	assert_int_equal(store_ram_count(DIR, STORE_CF_META), 1);
	assert_int_equal(store_ram_count(DIR, STORE_CF_DLV), 1);
	assert_int_equal(store_ram_count(DIR, STORE_CF_EVENTS), 0); /* nor its events */
	rows_seen = 0;
	q = open_queue();
	assert_int_equal(rows_seen, 1);
	assert_string_equal(last_row_id, id);
	queue_close(q);
}

struct told {
	int n;
	char endpoint[32], id[QUEUE_ID_LEN + 1], json[64];
};

static void on_event(void *arg, const char *endpoint, size_t elen, const char *id, size_t ilen,
		     const char *json, size_t len)
{
	struct told *t = arg;
	t->n++;
	snprintf(t->endpoint, sizeof(t->endpoint), "%.*s", (int)elen, endpoint);
	snprintf(t->id, sizeof(t->id), "%.*s", (int)ilen, id);
	snprintf(t->json, sizeof(t->json), "%.*s", (int)len, json);
}

/* Events go in the write of the change they report, reach the hook once
 * written (not before, not on a failed write), stay stored across a
 * restart until deleted. */
static void test_events_ride_with_their_change(void **state)
{
	(void)state;
	struct queue *q = open_queue();
	struct told t = {0};
	char *err = NULL;
	assert_int_equal(queue_events_open(q, on_event, &t, &err), 0);
	char id[QUEUE_ID_LEN + 1], eid[QUEUE_ID_LEN + 1];
	const char *rcpts[] = {"a@one.test", "b@one.test"};
	struct wait w = {0};
	assert_int_equal(commit(q, id, rcpts, 2, &w), 0);

	struct queue_events evs = {0};
	queue_id_new(q, eid);
	queue_event_add(&evs, "crm", eid, "{\"event\":\"delivered\"}", 21);
	queue_delivery_finish(q, id, 1, "default", "one.test", false, &evs);
	assert_int_equal(evs.n, 0);
	assert_int_equal(t.n, 0); /* not before the write */
	struct wait written = {0};
	queue_after_writes(q, on_commit, &written);
	until(&written);
	assert_int_equal(t.n, 1);
	assert_string_equal(t.endpoint, "crm");
	assert_string_equal(t.id, eid);
	assert_string_equal(t.json, "{\"event\":\"delivered\"}");
	assert_int_equal(store_ram_count(DIR, STORE_CF_DLV), 1);
	assert_int_equal(store_ram_count(DIR, STORE_CF_EVENTS), 1);

	/* A failed write: neither the change nor its event. */
	store_ram_fail_writes(DIR, 1);
	char eid2[QUEUE_ID_LEN + 1];
	queue_id_new(q, eid2);
	queue_event_add(&evs, "crm", eid2, "{}", 2);
	struct queue_delivery_row row = {.id = id,
					 .seq = 2,
					 .zone = "default",
					 .recipient = "b@one.test",
					 .domain = "one.test",
					 .created = clock_wall_ms(),
					 .next_attempt = clock_wall_ms()};
	struct queue_attempt attempt = {.time = clock_wall_ms(), .response = "451 later"};
	queue_delivery_defer(q, &row, false, &attempt, &evs);
	struct wait failed = {0};
	queue_after_writes(q, on_commit, &failed);
	until(&failed);
	assert_int_equal(t.n, 1);
	assert_int_equal(store_ram_count(DIR, STORE_CF_EVENTS), 1);
	queue_close(q);

	/* The stored event is told again after a restart, until deleted. */
	store_ram_fail_writes(DIR, 0);
	q = open_queue();
	memset(&t, 0, sizeof(t));
	assert_int_equal(queue_events_open(q, on_event, &t, &err), 1);
	assert_int_equal(t.n, 1);
	assert_string_equal(t.id, eid);
	const char *ids[] = {eid};
	queue_events_delete(q, "crm", ids, 1);
	struct wait deleted = {0};
	queue_after_writes(q, on_commit, &deleted);
	until(&deleted);
	assert_int_equal(store_ram_count(DIR, STORE_CF_EVENTS), 0);
	queue_close(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_commit_counts_and_finish, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hot_cache_answers_the_first_load, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_recovery, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_failed_write_breaks_the_store, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_background_error_stops_writes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_notice_commit_replaces_the_rows, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_events_ride_with_their_change, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_failed_notice_keeps_the_rows, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
