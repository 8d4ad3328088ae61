/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: the hook bus (order, verdicts, asynchronous answers, cancel, deadline). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hook/hook.h"

/* What the handlers did, in order, as letters. */
static char trail[64];
static struct hook_call *held; /* the call a PENDING handler keeps */
static int cancels;

static int done_calls;
static struct hook_result last;
static char last_reply[128];

static void on_done(void *arg, const struct hook_result *res)
{
	(void)arg;
	done_calls++;
	last = *res;
	snprintf(last_reply, sizeof(last_reply), "%s", res->reply ? res->reply : "");
	last.reply = last_reply;
}

static void note(const char *what)
{
	strncat(trail, what, sizeof(trail) - strlen(trail) - 1);
}

static enum hook_verdict h_continue(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	(void)call;
	(void)ctx;
	note(arg);
	return HOOK_CONTINUE;
}

static enum hook_verdict h_accept(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	(void)call;
	(void)ctx;
	note(arg);
	return HOOK_ACCEPT;
}

/* Rejects addresses starting with "bad", with the address in the reply. */
static enum hook_verdict h_reject_bad(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	note(arg);
	if (strncmp(ctx->address, "bad", 3) != 0)
		return HOOK_CONTINUE;
	char reply[128];
	snprintf(reply, sizeof(reply), "550 5.7.1 <%s> refused", ctx->address);
	hook_set_reply(call, reply);
	return HOOK_REJECT;
}

static enum hook_verdict h_pending(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	(void)ctx;
	note(arg);
	held = call;
	return HOOK_PENDING;
}

/* Answers from inside the handler, then says PENDING: the bus must take it as synchronous. */
static enum hook_verdict h_answers_inline(struct hook_call *call, const struct hook_ctx *ctx,
					  void *arg)
{
	(void)ctx;
	note(arg);
	hook_answer(call, HOOK_TEMPFAIL, "451 4.7.1 later");
	return HOOK_PENDING;
}

static void h_cancel(struct hook_call *call, void *arg)
{
	(void)arg;
	assert_ptr_equal(call, held);
	held = NULL;
	cancels++;
}

static int setup(void **state)
{
	(void)state;
	trail[0] = '\0';
	held = NULL;
	cancels = 0;
	done_calls = 0;
	memset(&last, 0, sizeof(last));
	hook_init(NULL, 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	hook_shutdown();
	return 0;
}

static void test_no_handler_is_immediate(void **state)
{
	(void)state;
	struct hook_ctx ctx = {.address = "a@b"};
	assert_false(hook_active(HOOK_SMTP_RCPT_TO));
	assert_int_equal(hook_run(HOOK_SMTP_RCPT_TO, &ctx, on_done, NULL), 0);
	assert_int_equal(done_calls, 1);
	assert_int_equal(last.verdict, HOOK_CONTINUE);
	assert_null(last.handler);
}

static void test_order_and_short_circuit(void **state)
{
	(void)state;
	hook_register(HOOK_SMTP_RCPT_TO, "first", h_continue, NULL, "1");
	hook_register(HOOK_SMTP_RCPT_TO, "second", h_reject_bad, NULL, "2");
	hook_register(HOOK_SMTP_RCPT_TO, "third", h_accept, NULL, "3");
	hook_register(HOOK_SMTP_RCPT_TO, "fourth", h_continue, NULL, "4");
	/* another point's handler is not asked */
	hook_register(HOOK_SMTP_MAIL_FROM, "other", h_continue, NULL, "X");
	assert_true(hook_active(HOOK_SMTP_RCPT_TO));

	struct hook_ctx ok = {.address = "good@example.com"};
	assert_int_equal(hook_run(HOOK_SMTP_RCPT_TO, &ok, on_done, NULL), 0);
	assert_string_equal(trail, "123");
	assert_int_equal(last.verdict, HOOK_ACCEPT);
	assert_string_equal(last.handler, "third");
	assert_string_equal(last.reply, "");

	trail[0] = '\0';
	struct hook_ctx bad = {.address = "bad@example.com"};
	assert_int_equal(hook_run(HOOK_SMTP_RCPT_TO, &bad, on_done, NULL), 0);
	assert_string_equal(trail, "12");
	assert_int_equal(last.verdict, HOOK_REJECT);
	assert_string_equal(last.handler, "second");
	assert_string_equal(last.reply, "550 5.7.1 <bad@example.com> refused");
	assert_int_equal(done_calls, 2);
}

static void test_all_continue(void **state)
{
	(void)state;
	hook_register(HOOK_MESSAGE_HEADERS, "a", h_continue, NULL, "a");
	hook_register(HOOK_MESSAGE_HEADERS, "b", h_continue, NULL, "b");
	struct hook_ctx ctx = {0};
	hook_run(HOOK_MESSAGE_HEADERS, &ctx, on_done, NULL);
	assert_string_equal(trail, "ab");
	assert_int_equal(last.verdict, HOOK_CONTINUE);
	assert_null(last.handler);
}

static void test_async_answer_resumes_chain(void **state)
{
	(void)state;
	hook_register(HOOK_SMTP_RCPT_TO, "wait", h_pending, h_cancel, "w");
	hook_register(HOOK_SMTP_RCPT_TO, "then", h_reject_bad, NULL, "r");
	struct hook_ctx ctx = {.address = "bad@x"};
	uint64_t id = hook_run(HOOK_SMTP_RCPT_TO, &ctx, on_done, NULL);
	assert_int_not_equal(id, 0);
	assert_int_equal(done_calls, 0);
	assert_non_null(held);
	assert_ptr_equal(hook_call_ctx(held), &ctx);
	hook_answer(held, HOOK_CONTINUE, NULL);
	assert_int_equal(done_calls, 1);
	assert_string_equal(trail, "wr");
	assert_int_equal(last.verdict, HOOK_REJECT);
	/* the run is over: cancelling its id is harmless */
	hook_cancel(id);
	assert_int_equal(cancels, 0);
}

static void test_async_tempfail_reply(void **state)
{
	(void)state;
	hook_register(HOOK_SMTP_DATA, "wait", h_pending, h_cancel, "w");
	struct hook_ctx ctx = {0};
	assert_int_not_equal(hook_run(HOOK_SMTP_DATA, &ctx, on_done, NULL), 0);
	hook_answer(held, HOOK_TEMPFAIL, "451 4.7.1 greylisted");
	assert_int_equal(last.verdict, HOOK_TEMPFAIL);
	assert_string_equal(last.reply, "451 4.7.1 greylisted");
	assert_string_equal(last.handler, "wait");
}

static void test_inline_answer_is_synchronous(void **state)
{
	(void)state;
	hook_register(HOOK_SMTP_HELO, "inline", h_answers_inline, NULL, "i");
	struct hook_ctx ctx = {0};
	assert_int_equal(hook_run(HOOK_SMTP_HELO, &ctx, on_done, NULL), 0);
	assert_int_equal(done_calls, 1);
	assert_int_equal(last.verdict, HOOK_TEMPFAIL);
	assert_string_equal(last.reply, "451 4.7.1 later");
}

static void test_cancel(void **state)
{
	(void)state;
	hook_register(HOOK_SMTP_RCPT_TO, "wait", h_pending, h_cancel, "w");
	struct hook_ctx a = {.address = "a@x"}, b = {.address = "b@x"};
	uint64_t ida = hook_run(HOOK_SMTP_RCPT_TO, &a, on_done, NULL);
	struct hook_call *call_a = held;
	uint64_t idb = hook_run(HOOK_SMTP_RCPT_TO, &b, on_done, NULL);
	struct hook_call *call_b = held;
	assert_int_not_equal(ida, idb);
	held = call_a;
	hook_cancel(ida);
	assert_int_equal(cancels, 1);
	assert_int_equal(done_calls, 0);
	hook_cancel(ida); /* twice: ignored */
	assert_int_equal(cancels, 1);
	/* the other run is untouched */
	hook_answer(call_b, HOOK_ACCEPT, NULL);
	assert_int_equal(done_calls, 1);
	assert_int_equal(last.verdict, HOOK_ACCEPT);
}

static void test_shutdown_cancels_pending(void **state)
{
	(void)state;
	hook_register(HOOK_SENDER_CONNECT, "wait", h_pending, h_cancel, "w");
	struct hook_ctx ctx = {0};
	hook_run(HOOK_SENDER_CONNECT, &ctx, on_done, NULL);
	hook_shutdown();
	assert_int_equal(cancels, 1);
	assert_int_equal(done_calls, 0);
	assert_false(hook_active(HOOK_SENDER_CONNECT));
}

/* A handler that never answers is cancelled at the deadline: TEMPFAIL. */
static void test_deadline(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	hook_init(base, 30);
	hook_register(HOOK_SMTP_RCPT_TO, "silent", h_pending, h_cancel, "s");
	struct hook_ctx ctx = {.address = "a@x"};
	assert_int_not_equal(hook_run(HOOK_SMTP_RCPT_TO, &ctx, on_done, NULL), 0);
	event_base_dispatch(base); /* returns once the deadline fired */
	assert_int_equal(done_calls, 1);
	assert_int_equal(cancels, 1);
	assert_int_equal(last.verdict, HOOK_TEMPFAIL);
	assert_string_equal(last.reply, "451 4.3.0 Error: a plugin did not answer in time");
	hook_shutdown();
	event_base_free(base);
}

static void test_names(void **state)
{
	(void)state;
	for (int i = 0; i < HOOK_POINT_COUNT; i++) {
		enum hook_point p;
		const char *name = hook_point_name((enum hook_point)i);
		assert_non_null(strchr(name, ':'));
		assert_int_equal(hook_point_parse(name, &p), 0);
		assert_int_equal(p, i);
	}
	enum hook_point p;
	assert_int_equal(hook_point_parse("smtp:nope", &p), -1);
	assert_string_equal(hook_point_name(HOOK_SENDER_RESPONSE_ERROR), "sender:responseError");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_no_handler_is_immediate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_order_and_short_circuit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_all_continue, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_async_answer_resumes_chain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_async_tempfail_reply, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inline_answer_is_synchronous, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_shutdown_cancels_pending, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_names, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
