/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Unit tests: the SMTP client state machine against scripted peers.  No
 * daemon: the queue (a RocksDB store in a temporary folder), scheduler,
 * outcome stage and delivery engine run on an event loop in this process;
 * the receiving server is a thread that follows a script line by line over
 * loopback TCP.  Outcomes are read from the log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "bounce/rules.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "msg/ingest.h"
#include "mta/mta.h"
#include "outcome/outcome.h"
#include "queue/queue.h"
#include "sched/sched.h"

/* --- the scripted peer --- */

/*
 * A script, one step a string:
 *   "S:text"   send text and CRLF
 *   "R:prefix" read a line, which must start with prefix
 *   "D"        read DATA up to CRLF.CRLF
 *   "L"        read one line of DATA, whatever it is
 *   "E"        the client closes without sending anything more
 *   "X"        close
 *   "Z"        close gracefully: no more sending, read until the client
 *              closes (a close with unread input would reset the
 *              connection and lose the last reply)
 */
struct peer {
	int listen_fd;
	int port;
	const char *const *script;
	pthread_t thread;
	char failure[300]; /* the first step that went wrong, or "" */
	size_t data_bytes;
	atomic_bool done; /* the script has run to its end (or failed) */
};

static int peer_readline(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	while (n + 1 < cap) {
		char ch;
		if (recv(fd, &ch, 1, 0) != 1)
			return -1;
		buf[n++] = ch;
		if (ch == '\n')
			break;
	}
	buf[n] = '\0';
	return (int)n;
}

static void *peer_run(void *arg)
{
	struct peer *p = arg;
	int fd = accept(p->listen_fd, NULL, NULL);
	if (fd < 0) {
		snprintf(p->failure, sizeof(p->failure), "accept failed");
		atomic_store(&p->done, true);
		return NULL;
	}
	char line[8192];
	for (const char *const *step = p->script; *step != NULL; step++) {
		const char *s = *step;
		if (s[0] == 'S') {
			char *out = xasprintf("%s\r\n", s + 2);
			send(fd, out, strlen(out), MSG_NOSIGNAL);
			free(out);
		} else if (s[0] == 'R') {
			if (peer_readline(fd, line, sizeof(line)) < 0 ||
			    strncmp(line, s + 2, strlen(s + 2)) != 0) {
				snprintf(p->failure, sizeof(p->failure), "step %s: got \"%.100s\"",
					 s, line);
				break;
			}
		} else if (s[0] == 'D') {
			for (;;) {
				int n = peer_readline(fd, line, sizeof(line));
				if (n < 0) {
					snprintf(p->failure, sizeof(p->failure), "closed in DATA");
					break;
				}
				p->data_bytes += (size_t)n;
				if (strcmp(line, ".\r\n") == 0)
					break;
			}
		} else if (s[0] == 'L') {
			peer_readline(fd, line, sizeof(line));
		} else if (s[0] == 'E') {
			if (peer_readline(fd, line, sizeof(line)) >= 0)
				snprintf(p->failure, sizeof(p->failure), "step E: got \"%.100s\"",
					 line);
			break;
		} else if (s[0] == 'X') {
			break;
		} else if (s[0] == 'Z') {
			shutdown(fd, SHUT_WR);
			while (recv(fd, line, sizeof(line), 0) > 0)
				;
			break;
		}
	}
	close(fd);
	atomic_store(&p->done, true);
	return NULL;
}

static void peer_start(struct peer *p, const char *const *script, bool small_buffer)
{
	memset(p, 0, sizeof(*p));
	p->script = script;
	p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(p->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (small_buffer) {
		int size = 4096;
		setsockopt(p->listen_fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	}
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(p->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(p->listen_fd, 4), 0);
	socklen_t len = sizeof(sa);
	getsockname(p->listen_fd, (struct sockaddr *)&sa, &len);
	p->port = ntohs(sa.sin_port);
	pthread_create(&p->thread, NULL, peer_run, p);
}

static void peer_stop(struct peer *p)
{
	shutdown(p->listen_fd, SHUT_RDWR);
	pthread_join(p->thread, NULL);
	close(p->listen_fd);
}

/* --- the relay in this process --- */

struct relay {
	char dir[64];
	char log_path[128];
	struct event_base *base;
	struct config *cfg;
	struct bounce_rules *rules;
	struct outcome *outcome;
	struct sched *sched;
	struct mta *mta;
	struct queue *queue;
	bool committed;
};

static void on_row(void *arg, const struct queue_delivery_row *row)
{
	sched_add(arg, row);
}

static void relay_start(struct relay *r, int port)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->dir, sizeof(r->dir), "/tmp/zmta-test-mta-XXXXXX");
	assert_non_null(mkdtemp(r->dir));
	snprintf(r->log_path, sizeof(r->log_path), "%s/log", r->dir);
	/* DSN mail is tested end to end (tests/e2e/test_dsn.py): this relay
	 * has no DNS to find the sender's domain with. */
	char *yaml = xasprintf("queue:\n  dir: %s/q\n  deferTimes: [1 h]\n"
			       "bounces:\n  dsn: false\n"
			       "zones:\n  default:\n    host: 127.0.0.1\n    port: %d\n"
			       "    connectionCache: {ttl: 0 s}\n"
			       "    timeouts: {greeting: 3 s, ehlo: 3 s, mail: 3 s, rcpt: 3 s, "
			       "data: 3 s, dot: 3 s, body: 3 s, quit: 1 s}\n",
			       r->dir, port);
	char *path = xasprintf("%s/test.yaml", r->dir);
	FILE *f = fopen(path, "w");
	fputs(yaml, f);
	fclose(f);
	struct config_source src = {.extra_file = path};
	char *errors = NULL;
	r->cfg = config_load(&src, &errors);
	if (r->cfg == NULL)
		fail_msg("config: %s", errors);
	free(yaml);
	free(path);
	assert_int_equal(log_set_file(r->log_path), 0);
	log_set_level(LOG_LEVEL_INFO);
	r->base = event_base_new();
	r->rules = bounce_rules_builtin();
	r->outcome = outcome_new(r->cfg, r->rules);
	r->mta = mta_new(r->base, r->cfg, NULL, r->outcome, NULL);
	r->sched = sched_new(r->base, r->cfg, mta_start, r->mta);
	char *err = NULL;
	r->queue = queue_open(r->base, r->cfg->queue.dir, 0, on_row, r->sched, &err);
	if (r->queue == NULL)
		fail_msg("queue: %s", err);
	outcome_attach(r->outcome, r->sched, r->queue);
	mta_attach(r->mta, r->sched, r->queue);
}

static void relay_stop(struct relay *r)
{
	mta_free(r->mta);
	outcome_shutdown(r->outcome);
	queue_close(r->queue);
	sched_free(r->sched);
	outcome_free(r->outcome);
	bounce_rules_free(r->rules);
	event_base_free(r->base);
	config_free(r->cfg);
	log_set_file(NULL);
	char *cmd = xasprintf("rm -rf %s", r->dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

static void committed(void *arg, int rc, const char *error)
{
	struct relay *r = arg;
	(void)error;
	assert_int_equal(rc, 0);
	r->committed = true;
}

static char *read_log(const struct relay *r)
{
	FILE *f = fopen(r->log_path, "r");
	if (f == NULL)
		return xstrdup("");
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *s = xmalloc((size_t)n + 1);
	s[fread(s, 1, (size_t)n, f)] = '\0';
	fclose(f);
	return s;
}

/* Runs the loop until every needle is in the log and the peer's script has
 * ended (or 15 s pass): the relay may still owe the peer its QUIT. */
static void run_until(struct relay *r, const struct peer *p, const char *const *needles)
{
	int64_t end = clock_mono_ms() + 15000;
	struct timeval tick = {0, 20000};
	while (clock_mono_ms() < end) {
		event_base_loopexit(r->base, &tick);
		event_base_dispatch(r->base);
		char *log = read_log(r);
		bool all = true;
		for (const char *const *n = needles; *n && all; n++)
			all = strstr(log, *n) != NULL;
		free(log);
		if (all && atomic_load(&p->done))
			return;
	}
	char *log = read_log(r);
	fail_msg("not all of the expected lines came; peer: %s; log:\n%s", p->failure, log);
}

/* Queues one message to the given recipients. */
static void submit(struct relay *r, char *const *rcpts, size_t n, size_t body_bytes)
{
	struct ingest *in = ingest_new(r->queue, r->cfg, NULL, NULL);
	const char *head = "From: <a@origin.test>\r\nSubject: t\r\n\r\n";
	ingest_write(in, head, strlen(head));
	char line[80];
	memset(line, 'b', 78);
	line[78] = '\r';
	line[79] = '\n';
	for (size_t done = 0; done < body_bytes; done += sizeof(line))
		ingest_write(in, line, sizeof(line));
	ingest_write(in, "end\r\n", 5);
	struct ingest_envelope env = {
	    .interface = "test",
	    .origin = "127.0.0.1",
	    .transhost = "t",
	    .transtype = "ESMTP",
	    .from = "a@origin.test",
	    .rcpts = rcpts,
	    .nrcpts = n,
	    .received_by = "relay.test",
	};
	r->committed = false;
	ingest_finish(in, &env, committed, r);
	while (!r->committed)
		event_base_loop(r->base, EVLOOP_ONCE);
	ingest_free(in);
}

/* --- cases --- */

/*
 * One message to `rcpts` (with `body_bytes` of body) against a peer running
 * `script`: every line of `want` must come to the log, none of `unwanted`,
 * and the peer must have seen what its script expects.
 */
static void run_case(const char *const *script, bool small_buffer, char *const *rcpts, size_t n,
		     size_t body_bytes, const char *const *want, const char *unwanted)
{
	struct peer p;
	peer_start(&p, script, small_buffer);
	struct relay r;
	relay_start(&r, p.port);
	submit(&r, rcpts, n, body_bytes);
	run_until(&r, &p, want);
	if (unwanted != NULL) {
		char *log = read_log(&r);
		if (strstr(log, unwanted) != NULL)
			fail_msg("\"%s\" in the log:\n%s", unwanted, log);
		free(log);
	}
	peer_stop(&p);
	assert_string_equal(p.failure, "");
	relay_stop(&r);
}

static void test_multiline_replies_and_pipelining(void **state)
{
	(void)state;
	static const char *const script[] = {"S:220-mx.test hello",
					     "S:220-more greeting",
					     "S:220 ready",
					     "R:EHLO ",
					     "S:250-mx.test",
					     "S:250-PIPELINING",
					     "S:250-SIZE 100000",
					     "S:250 8BITMIME",
					     "R:MAIL FROM:<a@origin.test> SIZE=",
					     "R:RCPT TO:<r1@x.test>",
					     "R:DATA",
					     "S:250-2.1.0 sender",
					     "S:250 2.1.0 ok",
					     "S:250 2.1.5 ok",
					     "S:354 go",
					     "D",
					     "S:250-2.0.0 first line",
					     "S:250 2.0.0 queued as 7",
					     "R:QUIT",
					     "S:221 bye",
					     NULL};
	char *rcpts[] = {"r1@x.test"};
	static const char *const want[] = {
	    "event=delivered seq=001 zone=default rcpt=<r1@x.test> attempts=1 status=2.0.0 "
	    "response=\"250-2.0.0 first line 2.0.0 queued as 7\"",
	    NULL};
	run_case(script, false, rcpts, 1, 100, want, NULL);
}

static void test_421_mid_session_defers(void **state)
{
	(void)state;
	static const char *const script[] = {"S:220 ready",
					     "R:EHLO ",
					     "S:250 mx.test",
					     "R:MAIL FROM:<a@origin.test>",
					     "S:421 4.3.2 shutting down",
					     "X",
					     NULL};
	char *rcpts[] = {"r1@x.test", "r2@x.test"};
	static const char *const want[] = {"event=deferred seq=001 zone=default rcpt=<r1@x.test>",
					   "event=deferred seq=002 zone=default rcpt=<r2@x.test>",
					   "response=\"421 4.3.2 shutting down\"", NULL};
	run_case(script, false, rcpts, 2, 100, want, "event=delivered");
}

static void test_rcpt_5xx_with_others_accepted(void **state)
{
	(void)state;
	/* No PIPELINING: one command at a time. */
	static const char *const script[] = {"S:220 ready",
					     "R:EHLO ",
					     "S:250 mx.test",
					     "R:MAIL FROM:<a@origin.test>",
					     "S:250 ok",
					     "R:RCPT TO:<r1@x.test>",
					     "S:250 ok",
					     "R:RCPT TO:<r2@x.test>",
					     "S:550 5.1.1 <r2@x.test>: no such user",
					     "R:RCPT TO:<r3@x.test>",
					     "S:250 ok",
					     "R:DATA",
					     "S:354 go",
					     "D",
					     "S:250 2.0.0 taken",
					     "R:QUIT",
					     "S:221 bye",
					     NULL};
	char *rcpts[] = {"r1@x.test", "r2@x.test", "r3@x.test"};
	static const char *const want[] = {
	    "event=delivered seq=001 zone=default rcpt=<r1@x.test>",
	    "event=bounced seq=002 zone=default rcpt=<r2@x.test> category=",
	    "status=5.1.1 response=\"550 5.1.1 <r2@x.test>: no such user\"",
	    "event=delivered seq=003 zone=default rcpt=<r3@x.test>",
	    "event=attempt zone=default domain=x.test local=any mx=127.0.0.1 remote=127.0.0.1 "
	    "tls=no rcpts=3 accepted=2 response=\"250 2.0.0 taken\"",
	    NULL};
	run_case(script, false, rcpts, 3, 100, want, NULL);
}

static void test_early_reply_during_data(void **state)
{
	(void)state;
	/* The server refuses while the (large) body is still being sent. */
	static const char *const script[] = {"S:220 ready",
					     "R:EHLO ",
					     "S:250-mx.test",
					     "S:250 PIPELINING",
					     "R:MAIL",
					     "R:RCPT",
					     "R:DATA",
					     "S:250 ok",
					     "S:250 ok",
					     "S:354 go",
					     "L",
					     "L",
					     "S:554 5.7.1 content rejected",
					     "Z",
					     NULL};
	char *rcpts[] = {"r1@x.test"};
	static const char *const want[] = {"event=bounced seq=001 zone=default rcpt=<r1@x.test>",
					   "response=\"554 5.7.1 content rejected\"", NULL};
	run_case(script, true, rcpts, 1, 16 * 1024 * 1024, want, "event=delivered");
}

static void test_ehlo_421_does_not_fall_back_to_helo(void **state)
{
	(void)state;
	static const char *const script[] = {"S:220 ready", "R:EHLO ", "S:421 4.7.0 go away", "E",
					     NULL};
	char *rcpts[] = {"r1@x.test"};
	/* The deferral says what the server said, not "could not connect". */
	static const char *const want[] = {"event=deferred seq=001 zone=default rcpt=<r1@x.test>",
					   "response=\"421 4.7.0 go away\"", NULL};
	run_case(script, false, rcpts, 1, 10, want, NULL);
}

int main(void)
{
	evthread_use_pthreads();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_multiline_replies_and_pipelining),
	    cmocka_unit_test(test_421_mid_session_defers),
	    cmocka_unit_test(test_rcpt_5xx_with_others_accepted),
	    cmocka_unit_test(test_early_reply_during_data),
	    cmocka_unit_test(test_ehlo_421_does_not_fall_back_to_helo),
	};
	return cmocka_run_group_tests_name("mta", tests, NULL, NULL);
}
