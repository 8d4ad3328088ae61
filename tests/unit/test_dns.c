/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Unit tests: MX/A/AAAA resolution (src/mta/dns.c) against a real dnsmasq
 * started here on 127.0.0.1 and a free port, with a tiny in-process UDP
 * server that answers SERVFAIL to everything dnsmasq forwards to it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "mta/dns.h"

#define DNSMASQ "/usr/sbin/dnsmasq"

/* --- the SERVFAIL stub --- */

static struct {
	int fd;
	int port;
	pthread_t thread;
	atomic_bool stop;
} stub = {.fd = -1};

/* Answers every query with its own question and rcode 2 (SERVFAIL). */
static void *stub_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&stub.stop)) {
		struct pollfd p = {.fd = stub.fd, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		unsigned char buf[1500];
		struct sockaddr_in from;
		socklen_t fromlen = sizeof(from);
		ssize_t n = recvfrom(stub.fd, buf, sizeof(buf), 0, (struct sockaddr *)&from,
				     &fromlen);
		if (n < 12)
			continue;
		size_t off = 12; /* the question: a name, type and class */
		while (off < (size_t)n && buf[off] != 0)
			off += 1 + buf[off];
		off += 5;
		if (off > (size_t)n)
			continue;
		buf[2] = (unsigned char)(0x80 | (buf[2] & 0x79)); /* QR, opcode, RD */
		buf[3] = 0x80 | 2;                                /* RA, SERVFAIL */
		memset(buf + 6, 0, 6);                            /* no AN, NS, AR */
		sendto(stub.fd, buf, off, 0, (struct sockaddr *)&from, fromlen);
	}
	return NULL;
}

/* A UDP socket on 127.0.0.1 and a free port; -1 on failure. */
static int bound_udp(int *port)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

/* Where queries go and never come back from: a socket nobody reads. */
static struct {
	int fd;
	int port;
} blackhole = {.fd = -1};

static int stub_start(void)
{
	stub.fd = bound_udp(&stub.port);
	if (stub.fd < 0)
		return -1;
	atomic_store(&stub.stop, false);
	return pthread_create(&stub.thread, NULL, stub_main, NULL) == 0 ? 0 : -1;
}

static void stub_stop(void)
{
	if (stub.fd < 0)
		return;
	atomic_store(&stub.stop, true);
	pthread_join(stub.thread, NULL);
	close(stub.fd);
	stub.fd = -1;
}

/* --- dnsmasq --- */

struct dnsmasq {
	pid_t pid;
	int port;
	char dir[64];
	char addr[32]; /* "127.0.0.1@PORT", for ub_ctx_set_fwd() */
};

static struct dnsmasq server; /* shared by most tests */
static struct dnsmasq own;    /* test_cache's, stopped mid-test */

/* A port free for UDP and TCP on 127.0.0.1 right now (dnsmasq wants both). */
static int free_port(void)
{
	for (int i = 0; i < 50; i++) {
		int u = socket(AF_INET, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		socklen_t len = sizeof(sa);
		int port = -1;
		if (bind(u, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		    getsockname(u, (struct sockaddr *)&sa, &len) == 0 &&
		    bind(t, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			port = ntohs(sa.sin_port);
		close(u);
		close(t);
		if (port > 0)
			return port;
	}
	return -1;
}

/* True when something answers a DNS query on 127.0.0.1:port within ms. */
static bool probe(int port, int ms)
{
	/* id, RD, one question: probe.test IN A */
	static const char q[] = "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
				"\x05probe\x04test\x00\x00\x01\x00\x01";
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	bool ok = false;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    send(fd, q, sizeof(q) - 1, 0) > 0) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		unsigned char buf[512];
		ok = poll(&p, 1, ms) == 1 && recv(fd, buf, sizeof(buf), 0) >= 12;
	}
	close(fd);
	return ok;
}

static void dnsmasq_stop(struct dnsmasq *m)
{
	if (m->pid <= 0)
		return;
	kill(m->pid, SIGTERM);
	for (int i = 0; i < 500; i++) {
		if (waitpid(m->pid, NULL, WNOHANG) == m->pid) {
			m->pid = 0;
			return;
		}
		usleep(10000);
	}
	kill(m->pid, SIGKILL);
	waitpid(m->pid, NULL, 0);
	m->pid = 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void dnsmasq_cleanup(struct dnsmasq *m)
{
	dnsmasq_stop(m);
	if (m->dir[0])
		nftw(m->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	m->dir[0] = '\0';
}

/* Starts dnsmasq serving `records` (config lines); 0 when it answers. */
static int dnsmasq_start(struct dnsmasq *m, const char *records)
{
	memset(m, 0, sizeof(*m));
	strcpy(m->dir, "/tmp/zmta-test-dns-XXXXXX");
	if (mkdtemp(m->dir) == NULL)
		return -1;
	char conf[128], log[128];
	snprintf(conf, sizeof(conf), "%s/dnsmasq.conf", m->dir);
	snprintf(log, sizeof(log), "%s/dnsmasq.log", m->dir);
	for (int attempt = 0; attempt < 5; attempt++) {
		m->port = free_port();
		FILE *f = fopen(conf, "w");
		if (f == NULL || m->port < 0)
			return -1;
		fprintf(f,
			"port=%d\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n"
			"cache-size=0\npid-file=%s/dnsmasq.pid\nlog-facility=-\nlog-queries\n"
			"local=/test/\n%s%s",
			m->port, m->dir, geteuid() == 0 ? "user=root\n" : "", records);
		fclose(f);
		m->pid = fork();
		if (m->pid < 0)
			return -1;
		if (m->pid == 0) {
			int in = open("/dev/null", O_RDONLY);
			int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
			dup2(in, 0);
			dup2(out, 1);
			dup2(out, 2);
			char arg[160];
			snprintf(arg, sizeof(arg), "--conf-file=%s", conf);
			execl(DNSMASQ, "dnsmasq", "-k", arg, (char *)NULL);
			_exit(127);
		}
		struct timespec start;
		clock_gettime(CLOCK_MONOTONIC, &start);
		for (;;) {
			if (waitpid(m->pid, NULL, WNOHANG) == m->pid) {
				m->pid = 0;
				break; /* lost the port to someone, or broken: try again */
			}
			if (probe(m->port, 100)) {
				snprintf(m->addr, sizeof(m->addr), "127.0.0.1@%d", m->port);
				return 0;
			}
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec - start.tv_sec > 10) {
				dnsmasq_stop(m);
				break;
			}
		}
	}
	fprintf(stderr, "dnsmasq did not start; see %s\n", log);
	return -1;
}

/* --- resolving on a loop --- */

#define MAXH 8
#define MAXA 8

struct got {
	int calls;
	enum dns_status status;
	char error[512];
	bool implicit;
	size_t nhosts;
	struct {
		char name[256];
		int pref;
		size_t naddrs;
		char addrs[MAXA][64];
	} hosts[MAXH];
	struct fx *free_in_cb; /* test_free_in_callback */
};

struct fx {
	struct event_base *base;
	struct dns *d;
	bool timed_out;
};

static void on_result(void *arg, const struct dns_mx_result *res)
{
	struct got *g = arg;
	g->calls++;
	g->status = res->status;
	snprintf(g->error, sizeof(g->error), "%s", res->error ? res->error : "");
	g->implicit = res->implicit;
	g->nhosts = res->nhosts;
	assert_true(res->status == DNS_OK || res->nhosts == 0);
	assert_true(res->nhosts <= MAXH);
	for (size_t i = 0; i < res->nhosts; i++) {
		snprintf(g->hosts[i].name, sizeof(g->hosts[i].name), "%s", res->hosts[i].name);
		g->hosts[i].pref = res->hosts[i].preference;
		g->hosts[i].naddrs = res->hosts[i].naddrs;
		assert_true(res->hosts[i].naddrs <= MAXA);
		for (size_t k = 0; k < res->hosts[i].naddrs; k++)
			snprintf(g->hosts[i].addrs[k], sizeof(g->hosts[i].addrs[k]), "%s",
				 res->hosts[i].addrs[k]);
	}
	if (g->free_in_cb != NULL) {
		dns_free(g->free_in_cb->d);
		g->free_in_cb->d = NULL;
	}
}

static void on_wait_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	((struct fx *)arg)->timed_out = true;
}

/* Runs the loop until g's callback has run (at most 15 s). */
static void wait_for(struct fx *f, struct got *g)
{
	struct event *t = evtimer_new(f->base, on_wait_timeout, f);
	struct timeval tv = {15, 0};
	f->timed_out = false;
	evtimer_add(t, &tv);
	while (g->calls == 0 && !f->timed_out)
		event_base_loop(f->base, EVLOOP_ONCE);
	event_free(t);
	assert_int_equal(g->calls, 1);
}

/* Runs the loop for `ms` whatever happens. */
static void run_for(struct fx *f, int ms)
{
	struct event *t = evtimer_new(f->base, on_wait_timeout, f);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	f->timed_out = false;
	evtimer_add(t, &tv);
	while (!f->timed_out)
		event_base_loop(f->base, EVLOOP_ONCE);
	event_free(t);
}

static struct dns *new_dns(struct event_base *base, const char *addr, bool ipv6, bool prefer_ipv6)
{
	char *ns[] = {(char *)addr};
	struct dns_config cfg = {
	    .nameservers = ns, .n_nameservers = 1, .ipv6 = ipv6, .prefer_ipv6 = prefer_ipv6};
	char *err = NULL;
	struct dns *d = dns_new(base, &cfg, &err);
	if (d == NULL)
		fail_msg("dns_new: %s", err);
	return d;
}

static void resolve(struct fx *f, const char *domain, struct got *g)
{
	memset(g, 0, sizeof(*g));
	uint64_t id = dns_resolve_mx(f->d, domain, on_result, g);
	assert_true(id != 0);
	assert_int_equal(g->calls, 0); /* never from inside the call */
	wait_for(f, g);
}

static bool has_addr(const struct got *g, size_t h, const char *addr)
{
	for (size_t k = 0; k < g->hosts[h].naddrs; k++)
		if (strcmp(g->hosts[h].addrs[k], addr) == 0)
			return true;
	return false;
}

/* --- fixtures --- */

static const char *records_fmt = "local-ttl=300\n"
				 "mx-host=example.test,mx1.example.test,10\n"
				 "mx-host=example.test,mx2.example.test,20\n"
				 "host-record=mx1.example.test,127.0.0.2\n"
				 "host-record=mx1.example.test,127.0.0.3\n"
				 "host-record=mx2.example.test,127.0.0.4\n"
				 "mx-host=multi.test,a.multi.test,10\n"
				 "mx-host=multi.test,b.multi.test,10\n"
				 "mx-host=multi.test,c.multi.test,20\n"
				 "host-record=a.multi.test,127.0.0.5\n"
				 "host-record=b.multi.test,127.0.0.6\n"
				 "host-record=c.multi.test,127.0.0.7\n"
				 "mx-host=nullmx.test,.,0\n"
				 "host-record=implicit.test,127.0.0.8\n"
				 "txt-record=empty.test,\"no mail here\"\n"
				 "host-record=dual.test,127.0.0.9,2001:db8::9\n"
				 "mx-host=partial.test,missing.partial.test,5\n"
				 "mx-host=partial.test,good.partial.test,10\n"
				 "host-record=good.partial.test,127.0.0.10\n"
				 "mx-host=nohost.test,gone.nohost.test,10\n"
				 "mx-host=broken.test,mx.servfail.test,10\n"
				 "server=/servfail.test/127.0.0.1#%d\n"
				 "mx-host=slow.test,mx.blackhole.test,10\n"
				 "server=/blackhole.test/127.0.0.1#%d\n"
				 "local=/invalid/\n"
				 "host-record=host.invalid,127.0.0.11\n";

static int group_setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	if (access(DNSMASQ, X_OK) != 0) {
		fprintf(stderr, "%s is missing (scripts/deps.sh installs dnsmasq-base)\n", DNSMASQ);
		return -1;
	}
	if (stub_start() != 0)
		return -1;
	char records[4096];
	blackhole.fd = bound_udp(&blackhole.port);
	if (blackhole.fd < 0)
		return -1;
	snprintf(records, sizeof(records), records_fmt, stub.port, blackhole.port);
	return dnsmasq_start(&server, records);
}

static int group_teardown(void **state)
{
	(void)state;
	dnsmasq_cleanup(&server);
	dnsmasq_cleanup(&own);
	stub_stop();
	if (blackhole.fd >= 0)
		close(blackhole.fd);
	return 0;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->base = event_base_new();
	f->d = new_dns(f->base, server.addr, true, false);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	dns_free(f->d);
	event_base_free(f->base);
	free(f);
	return 0;
}

/* --- tests --- */

static void test_mx_by_preference(void **state)
{
	struct fx *f = *state;
	struct got g;
	resolve(f, "example.test", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_false(g.implicit);
	assert_int_equal(g.nhosts, 2);
	assert_string_equal(g.hosts[0].name, "mx1.example.test");
	assert_int_equal(g.hosts[0].pref, 10);
	assert_int_equal(g.hosts[0].naddrs, 2);
	assert_true(has_addr(&g, 0, "127.0.0.2"));
	assert_true(has_addr(&g, 0, "127.0.0.3"));
	assert_string_equal(g.hosts[1].name, "mx2.example.test");
	assert_int_equal(g.hosts[1].pref, 20);
	assert_int_equal(g.hosts[1].naddrs, 1);
	assert_string_equal(g.hosts[1].addrs[0], "127.0.0.4");
}

/* Case and a trailing dot do not matter; what is no host name is NOTFOUND. */
static void test_domain_names(void **state)
{
	struct fx *f = *state;
	struct got g;
	resolve(f, "Example.TEST.", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_int_equal(g.nhosts, 2);
	assert_string_equal(g.hosts[0].name, "mx1.example.test");
	static const char *const bad[] = {
	    "", ".", "a..test", "bad domain.test", "[127.0.0.1]", "m\xc3\xbcnchen.test"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		resolve(f, bad[i], &g);
		assert_int_equal(g.status, DNS_NOTFOUND);
		assert_int_equal(g.nhosts, 0);
		assert_non_null(strstr(g.error, "invalid domain"));
	}
}

/* RFC 5321 5.1: equal preferences in random order; both orders appear. */
static void test_equal_preference_random(void **state)
{
	struct fx *f = *state;
	int a_first = 0, b_first = 0;
	for (int i = 0; i < 64; i++) {
		struct got g;
		resolve(f, "multi.test", &g);
		assert_int_equal(g.status, DNS_OK);
		assert_int_equal(g.nhosts, 3);
		assert_string_equal(g.hosts[2].name, "c.multi.test");
		if (strcmp(g.hosts[0].name, "a.multi.test") == 0) {
			assert_string_equal(g.hosts[1].name, "b.multi.test");
			assert_string_equal(g.hosts[0].addrs[0], "127.0.0.5");
			a_first++;
		} else {
			assert_string_equal(g.hosts[0].name, "b.multi.test");
			assert_string_equal(g.hosts[1].name, "a.multi.test");
			assert_string_equal(g.hosts[0].addrs[0], "127.0.0.6");
			b_first++;
		}
	}
	assert_true(a_first > 0);
	assert_true(b_first > 0);
}

static void test_implicit_mx(void **state)
{
	struct fx *f = *state;
	struct got g;
	resolve(f, "implicit.test", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_true(g.implicit);
	assert_int_equal(g.nhosts, 1);
	assert_string_equal(g.hosts[0].name, "implicit.test");
	assert_int_equal(g.hosts[0].naddrs, 1);
	assert_string_equal(g.hosts[0].addrs[0], "127.0.0.8");

	/* A name that exists with neither MX nor address records. */
	resolve(f, "empty.test", &g);
	assert_int_equal(g.status, DNS_NOTFOUND);
	assert_false(g.implicit);
	assert_int_equal(g.nhosts, 0);
}

/* invalid. is one of the special-use zones the forwarder may answer. */
static void test_special_use_zone(void **state)
{
	struct fx *f = *state;
	struct got g;
	resolve(f, "host.invalid", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_true(g.implicit);
	assert_string_equal(g.hosts[0].addrs[0], "127.0.0.11");
}

static void test_null_mx(void **state)
{
	struct fx *f = *state;
	struct got g;
	resolve(f, "nullmx.test", &g);
	assert_int_equal(g.status, DNS_NULLMX);
	assert_int_equal(g.nhosts, 0);
	assert_non_null(strstr(g.error, "null MX"));
}

static void test_nxdomain(void **state)
{
	struct fx *f = *state;
	struct got g;
	resolve(f, "nothere.test", &g);
	assert_int_equal(g.status, DNS_NOTFOUND);
	assert_int_equal(g.nhosts, 0);
	assert_non_null(strstr(g.error, "NXDOMAIN"));
}

static void test_servfail(void **state)
{
	struct fx *f = *state;
	struct got g;
	resolve(f, "servfail.test", &g);
	assert_int_equal(g.status, DNS_RETRY);
	assert_int_equal(g.nhosts, 0);
	assert_non_null(strstr(g.error, "SERVFAIL"));

	/* The MX is fine, its only host fails: temporary too. */
	resolve(f, "broken.test", &g);
	assert_int_equal(g.status, DNS_RETRY);
	assert_int_equal(g.nhosts, 0);
	assert_non_null(strstr(g.error, "mx.servfail.test"));
}

/* A host without an address is kept (naddrs 0) for the caller to skip. */
static void test_host_without_address(void **state)
{
	struct fx *f = *state;
	struct got g;
	resolve(f, "partial.test", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_int_equal(g.nhosts, 2);
	assert_string_equal(g.hosts[0].name, "missing.partial.test");
	assert_int_equal(g.hosts[0].naddrs, 0);
	assert_string_equal(g.hosts[1].name, "good.partial.test");
	assert_int_equal(g.hosts[1].naddrs, 1);
	assert_string_equal(g.hosts[1].addrs[0], "127.0.0.10");

	/* No host has one (NXDOMAIN, not a failure): still OK, all empty. */
	resolve(f, "nohost.test", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_int_equal(g.nhosts, 1);
	assert_int_equal(g.hosts[0].naddrs, 0);
}

static void test_ipv6_order(void **state)
{
	struct fx *f = *state;
	struct got g;
	resolve(f, "dual.test", &g); /* ipv6, IPv4 first */
	assert_int_equal(g.status, DNS_OK);
	assert_int_equal(g.hosts[0].naddrs, 2);
	assert_string_equal(g.hosts[0].addrs[0], "127.0.0.9");
	assert_string_equal(g.hosts[0].addrs[1], "2001:db8::9");

	dns_free(f->d);
	f->d = new_dns(f->base, server.addr, true, true);
	resolve(f, "dual.test", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_int_equal(g.hosts[0].naddrs, 2);
	assert_string_equal(g.hosts[0].addrs[0], "2001:db8::9");
	assert_string_equal(g.hosts[0].addrs[1], "127.0.0.9");

	dns_free(f->d);
	f->d = new_dns(f->base, server.addr, false, true); /* no AAAA lookups at all */
	resolve(f, "dual.test", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_int_equal(g.hosts[0].naddrs, 1);
	assert_string_equal(g.hosts[0].addrs[0], "127.0.0.9");
}

/* Answers come from the cache, at once, while their server is down. */
static void test_cache(void **state)
{
	struct fx *f = *state;
	assert_int_equal(dnsmasq_start(&own, "local-ttl=300\n"
					     "mx-host=cached.test,mx.cached.test,10\n"
					     "host-record=mx.cached.test,127.0.0.12\n"
					     "mx-host=nullmx.test,.,0\n"),
			 0);
	dns_free(f->d);
	f->d = new_dns(f->base, own.addr, true, false);
	static const char *const names[] = {"cached.test", "gone.test", "nullmx.test"};
	static const enum dns_status want[] = {DNS_OK, DNS_NOTFOUND, DNS_NULLMX};
	struct got g;
	for (size_t i = 0; i < 3; i++) {
		resolve(f, names[i], &g);
		assert_int_equal(g.status, want[i]);
	}
	dnsmasq_cleanup(&own);
	for (size_t i = 0; i < 3; i++) {
		memset(&g, 0, sizeof(g));
		dns_resolve_mx(f->d, names[i], on_result, &g);
		assert_int_equal(g.calls, 0);
		event_base_loop(f->base, EVLOOP_NONBLOCK); /* no round trip needed */
		assert_int_equal(g.calls, 1);
		assert_int_equal(g.status, want[i]);
	}
	assert_int_equal(g.status, DNS_NULLMX);
	resolve(f, "cached.test", &g);
	assert_int_equal(g.nhosts, 1);
	assert_string_equal(g.hosts[0].name, "mx.cached.test");
	assert_string_equal(g.hosts[0].addrs[0], "127.0.0.12");
}

static void test_cancel(void **state)
{
	struct fx *f = *state;
	struct got cancelled = {0}, g;
	/* Before unbound answers; twice; unknown ids are ignored. */
	uint64_t id = dns_resolve_mx(f->d, "example.test", on_result, &cancelled);
	dns_cancel(f->d, id);
	dns_cancel(f->d, id);
	dns_cancel(f->d, 987654);
	resolve(f, "example.test", &g); /* the same questions: unbound answers both */
	assert_int_equal(g.status, DNS_OK);
	/* Answered (from the cache, or invalid) but not yet called back. */
	id = dns_resolve_mx(f->d, "example.test", on_result, &cancelled);
	dns_cancel(f->d, id);
	id = dns_resolve_mx(f->d, "not a domain", on_result, &cancelled);
	dns_cancel(f->d, id);
	/* After the MX answer, with address lookups in flight (they never end),
	 * and with the MX lookup itself in flight. */
	uint64_t slow = dns_resolve_mx(f->d, "slow.test", on_result, &cancelled);
	uint64_t hang = dns_resolve_mx(f->d, "hang.blackhole.test", on_result, &cancelled);
	run_for(f, 200);
	dns_cancel(f->d, slow);
	dns_cancel(f->d, hang);
	run_for(f, 100);
	assert_int_equal(cancelled.calls, 0);
	resolve(f, "implicit.test", &g); /* still works */
	assert_int_equal(g.status, DNS_OK);
}

/* dns_free() with lookups in flight or answered: no callback, no leak. */
static void test_free_pending(void **state)
{
	struct fx *f = *state;
	struct got g = {0};
	dns_resolve_mx(f->d, "slow.test", on_result, &g);
	dns_resolve_mx(f->d, "hang.blackhole.test", on_result, &g);
	run_for(f, 100);
	dns_resolve_mx(f->d, "", on_result, &g);
	dns_resolve_mx(f->d, "example.test", on_result, &g);
	dns_free(f->d);
	f->d = NULL;
	run_for(f, 50);
	assert_int_equal(g.calls, 0);
}

/* A callback may free the resolver (the daemon stopping). */
static void test_free_in_callback(void **state)
{
	struct fx *f = *state;
	struct got g = {0}, other = {0};
	g.free_in_cb = f;
	dns_resolve_mx(f->d, "nothere.test", on_result, &g);
	dns_resolve_mx(f->d, "example.test", on_result, &other);
	dns_resolve_mx(f->d, "example.test", on_result, &other);
	wait_for(f, &g);
	assert_null(f->d);
	run_for(f, 50);
	assert_true(other.calls <= 2);
}

static void test_new(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	char *ns[] = {"not an address"};
	struct dns_config cfg = {.nameservers = ns, .n_nameservers = 1};
	char *err = NULL;
	assert_null(dns_new(base, &cfg, &err));
	assert_non_null(err);
	assert_non_null(strstr(err, "not an address"));
	free(err);

	/* No servers: the system's resolv.conf (nothing is asked here). */
	struct dns_config sys = {.ipv6 = true};
	err = NULL;
	struct dns *d = dns_new(base, &sys, &err);
	assert_non_null(d);
	assert_null(err);
	dns_free(d);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_mx_by_preference, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_domain_names, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_equal_preference_random, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_implicit_mx, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_special_use_zone, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_null_mx, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_nxdomain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_servfail, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_host_without_address, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ipv6_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_pending, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_in_callback, setup, teardown),
	    cmocka_unit_test(test_new),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
