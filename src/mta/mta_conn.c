/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * One delivery connection: where to connect (MX targets in order), from
 * which pool address (the one of the target's family: never an unbound
 * socket when the zone has a pool), the per-phase deadline, and the one
 * teardown that frees a connection and hands each scheduler item back
 * exactly once.
 */
#include "mta/mta_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <idn2.h>

#include "core/stats.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "zone/pool.h"

/* --- items and outcomes --- */

void mta_item_report(struct mta_conn *c, size_t i, enum outcome_status st, int code,
		     const char *text, const char *category)
{
	struct mta_txn *x = &c->txn;
	if (x->item[i] == MTA_ITEM_DONE)
		fatal("mta: item %zu of %s reported twice", i, c->msg_id);
	x->item[i] = MTA_ITEM_DONE;
	json_t *dsn = json_object_get(json_object_get(x->meta, "dsn"), "rcpts");
	struct outcome_report r = {
	    .status = st,
	    .code = code,
	    .text = text,
	    .category = category,
	    .attempted = c->answered,
	    .remote_mta = c->answered && c->cur < c->ntargets ? c->targets[c->cur].host : NULL,
	    .notify = json_string_value(
		json_object_get(json_object_get(dsn, x->batch->items[i]->recipient), "notify")),
	    .next_hop_dsn = c->dsn,
	    .meta = x->meta,
	    .header_block = x->header_block,
	    .header_len = x->header_len,
	    .remote_address = c->answered && c->cur < c->ntargets ? c->targets[c->cur].addr : NULL,
	    .local_address = c->answered ? c->local_addr : NULL,
	    .tls = c->tls ? c->tls_version : NULL,
	};
	outcome_report(c->m->outcome, x->batch->items[i], &r);
}

void mta_fail_rest(struct mta_conn *c, int code, const char *text)
{
	if (!c->in_txn)
		return;
	struct mta_txn *x = &c->txn;
	for (size_t i = 0; i < x->batch->n; i++)
		if (x->item[i] != MTA_ITEM_DONE)
			mta_item_report(c, i, code / 100 == 5 ? OUTCOME_PERMFAIL : OUTCOME_TEMPFAIL,
					code, text, NULL);
}

void mta_txn_clear(struct mta_conn *c)
{
	if (!c->in_txn)
		return;
	struct mta_txn *x = &c->txn;
	for (size_t i = 0; i < x->batch->n; i++)
		if (x->item[i] != MTA_ITEM_DONE)
			fatal("mta: transaction of %s ended with item %zu unreported", c->msg_id,
			      i);
	if (x->reading)
		queue_request_cancel(c->m->queue, x->read_req);
	mta_body_clear(c);
	json_decref(x->meta);
	free(x->header_block);
	free(x->body0);
	free(x->item);
	sched_batch_free(x->batch);
	outcome_batch_end(c->m->outcome, c->msg_id);
	memset(x, 0, sizeof(*x));
	c->in_txn = false;
}

/* --- deadlines --- */

/* How often an unfinished write is looked at while a deadline waits. */
#define MTA_DRAIN_POLL_MS 100

/* Bytes written but not yet taken by the server: in our buffers (and the
 * TLS filter's) and in the socket's send queue, sent but unacknowledged. */
static size_t unsent(struct mta_conn *c)
{
	if (c->bev == NULL)
		return 0;
	size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));
	struct bufferevent *u = bufferevent_get_underlying(c->bev);
	if (u != NULL)
		n += evbuffer_get_length(bufferevent_get_output(u));
	int queued = 0;
	evutil_socket_t fd = bufferevent_getfd(c->bev);
	if (fd >= 0 && ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0)
		n += (size_t)queued;
	return n;
}

static void arm(struct mta_conn *c, uint64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(c->deadline_ev, &tv);
}

static void phase_timeout(struct mta_conn *c, const char *what)
{
	char why[200];
	snprintf(
	    why, sizeof(why), "451 4.4.2 timeout: %s in the %s phase after %llu ms", what,
	    mta_strstate(c->state),
	    (unsigned long long)(c->deadline_pending ? c->zone->timeouts.body : c->deadline_ms));
	log_msg(LOG_LEVEL_INFO, c->in_txn ? c->msg_id : NULL, "mta_timeout",
		"conn=%llu state=%s reason=\"%s\"", (unsigned long long)c->id,
		mta_strstate(c->state), what);
	if (mta_state_before_session(c->state)) {
		mta_conn_next_target(c, why, 451);
	} else if (c->state == MTA_QUIT) {
		mta_conn_close(c, 0, NULL);
	} else {
		if (c->in_txn)
			mta_log_attempt(c, why);
		mta_conn_close(c, 451, why);
	}
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct mta_conn *c = arg;
	if (!c->deadline_pending) {
		phase_timeout(c, "no complete reply");
		return;
	}
	/* Still writing: the deadline starts once the server has taken it
	 * all; until then only write progress counts. */
	size_t left = unsent(c);
	int64_t now = clock_mono_ms();
	if (left == 0) {
		c->deadline_pending = false;
		arm(c, c->deadline_ms);
		return;
	}
	if (left < c->unsent_seen) {
		c->unsent_seen = left;
		c->progress_ms = now;
	} else if (now - c->progress_ms >= (int64_t)c->zone->timeouts.body) {
		phase_timeout(c, "no write progress");
		return;
	}
	arm(c, MTA_DRAIN_POLL_MS);
}

void mta_conn_deadline(struct mta_conn *c, uint64_t ms)
{
	evtimer_del(c->deadline_ev);
	c->deadline_ms = ms;
	/* Counted once what was written has been taken: time the server
	 * spends reading is not time it spends answering. */
	size_t left = unsent(c);
	c->deadline_pending = left > 0;
	if (c->deadline_pending) {
		c->unsent_seen = left;
		c->progress_ms = clock_mono_ms();
		arm(c, MTA_DRAIN_POLL_MS);
		return;
	}
	arm(c, ms);
}

void mta_conn_set_write_timeout(struct mta_conn *c)
{
	/* No read timeout: the phase deadline counts.  The write timeout is
	 * the body phase's "no write progress" limit, in every phase. */
	struct timeval body = {(time_t)(c->zone->timeouts.body / 1000),
			       (suseconds_t)(c->zone->timeouts.body % 1000) * 1000};
	bufferevent_set_timeouts(c->bev, NULL, &body);
}

void mta_conn_deadline_clear(struct mta_conn *c)
{
	evtimer_del(c->deadline_ev);
	c->deadline_pending = false;
}

/* --- connecting --- */

static int bind_local(evutil_socket_t fd, int family, const char *local)
{
	if (family == POOL_IPV6) {
		struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
		if (inet_pton(AF_INET6, local, &sa.sin6_addr) != 1)
			return -1;
		return bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	}
	struct sockaddr_in sa = {.sin_family = AF_INET};
	if (inet_pton(AF_INET, local, &sa.sin_addr) != 1)
		return -1;
	return bind(fd, (struct sockaddr *)&sa, sizeof(sa));
}

/* An IPv4 or IPv6 literal and a port into ss; returns its length. */
static socklen_t sockaddr_of(struct sockaddr_storage *ss, const char *addr, int port)
{
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		return sizeof(*s6);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	memset(ss, 0, sizeof(*ss));
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, addr, &s4->sin_addr);
	return sizeof(*s4);
}

/* Through a proxy the pool's addresses are not bound (the proxy's own
 * address is what the receiver sees); their EHLO name is still used: the
 * target family's entry, else the other family's. */
static void proxy_ehlo_name(struct mta_conn *c, int family)
{
	if (c->pool == NULL || c->pool->naddrs == 0)
		return;
	int li = c->slot->local[family];
	if (li < 0)
		li = c->slot->local[family == POOL_IPV6 ? POOL_IPV4 : POOL_IPV6];
	if (li >= 0 && c->pool->addrs[li].name != NULL)
		c->ehlo_name = c->pool->addrs[li].name;
}

static void all_targets_failed(struct mta_conn *c)
{
	char text[400];
	if (c->last_error[0] != '\0')
		snprintf(text, sizeof(text), "%s", c->last_error);
	else
		snprintf(text, sizeof(text), "could not connect to any of %zu address(es) for %s",
			 c->ntargets, c->in_txn ? c->txn.batch->domain : "the domain");
	if (c->in_txn)
		mta_log_attempt(c, text);
	mta_conn_close(c, c->last_code, text);
}

int mta_conn_port(const struct mta_conn *c)
{
	return c->next_port > 0 ? c->next_port : c->zone->port;
}

/* Connects to targets[cur], or the next one that can be tried. */
void mta_conn_connect_next(struct mta_conn *c)
{
	int port = mta_conn_port(c);
	for (; c->cur < c->ntargets; c->cur++) {
		const struct mta_target *t = &c->targets[c->cur];
		/* The pool address of the target's family; a pool without one
		 * cannot reach this target (never the system's choice). */
		c->local_addr = NULL;
		c->ehlo_name = c->m->cfg->hostname;
		if (c->proxy != NULL) {
			proxy_ehlo_name(c, t->family);
		} else if (c->pool != NULL && c->pool->naddrs > 0) {
			int li = c->slot->local[t->family];
			if (li < 0) {
				snprintf(
				    c->last_error, sizeof(c->last_error),
				    "451 4.4.4 the zone's pool has no %s address to reach %s [%s]",
				    t->family == POOL_IPV6 ? "IPv6" : "IPv4", t->host, t->addr);
				c->last_code = 451;
				log_msg(LOG_LEVEL_INFO, c->in_txn ? c->msg_id : NULL, "mta_connect",
					"mx=%s remote=%s action=skip reason=\"no pool address of "
					"this family\"",
					t->host, t->addr);
				continue;
			}
			c->local_addr = c->pool->addrs[li].address;
			if (c->pool->addrs[li].name != NULL)
				c->ehlo_name = c->pool->addrs[li].name;
		}
		/* Through a proxy, the socket goes to the proxy and the target
		 * is what the proxy is asked to CONNECT to. */
		struct sockaddr_storage ss = {0};
		socklen_t slen = c->proxy != NULL ? sockaddr_of(&ss, c->proxy->host, c->proxy->port)
						  : sockaddr_of(&ss, t->addr, port);
		evutil_socket_t fd = socket(ss.ss_family,
					    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		/* SMTP is request/reply: without this, Nagle holds a small write
		 * (the end of a command batch, the last body piece) until the
		 * peer's delayed ACK, some 40 ms a message. */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (c->local_addr != NULL && c->proxy == NULL &&
		    bind_local(fd, t->family, c->local_addr) < 0) {
			snprintf(c->last_error, sizeof(c->last_error),
				 "451 4.4.0 cannot send from %s: %s", c->local_addr,
				 strerror(errno));
			c->last_code = 451;
			log_msg(LOG_LEVEL_WARN, c->in_txn ? c->msg_id : NULL, "mta_bind",
				"local=%s error=\"%s\"", c->local_addr, strerror(errno));
			close(fd);
			continue;
		}
		c->bev = bufferevent_socket_new(c->m->base, fd, BEV_OPT_CLOSE_ON_FREE);
		/* Bodies go out in writes of up to a chunk, not libevent's 16 KiB. */
		bufferevent_set_max_single_write(c->bev, QUEUE_CHUNK_SIZE);
		bufferevent_setcb(c->bev, mta_on_read, mta_on_write, mta_on_event, c);
		mta_conn_set_write_timeout(c);
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
		c->tls = false;
		c->authed = false;
		mta_enter_state(c, MTA_CONNECTING);
		if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)slen) != 0) {
			bufferevent_free(c->bev);
			c->bev = NULL;
			continue;
		}
		mta_conn_deadline(c, c->zone->timeouts.connect);
		return;
	}
	all_targets_failed(c);
}

/* --- through a SOCKS5 proxy --- */

void mta_socks_start(struct mta_conn *c)
{
	const struct mta_target *t = &c->targets[c->cur];
	c->socks = (struct socks5){
	    .user = c->proxy->user,
	    .password = c->proxy->password,
	    .host = t->addr, /* an address, or the .onion name */
	    .port = (uint16_t)mta_conn_port(c),
	};
	uint8_t out[SOCKS5_OUT_MAX];
	size_t n = socks5_start(&c->socks, out);
	mta_enter_state(c, MTA_SOCKS);
	bufferevent_write(c->bev, out, n);
	/* The proxy connects onwards meanwhile (an onion circuit may take
	 * long): the greeting's time. */
	mta_conn_deadline(c, c->zone->timeouts.greeting);
}

void mta_socks_read(struct mta_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	enum socks5_status st = SOCKS5_MORE;
	for (;;) {
		uint8_t buf[600], out[SOCKS5_OUT_MAX];
		ssize_t n = evbuffer_copyout(in, buf, sizeof(buf));
		size_t used, outlen;
		st = socks5_input(&c->socks, buf, n > 0 ? (size_t)n : 0, &used, out, &outlen);
		evbuffer_drain(in, used);
		if (outlen > 0)
			bufferevent_write(c->bev, out, outlen);
		if (st != SOCKS5_MORE || used == 0)
			break;
	}
	if (st == SOCKS5_MORE)
		return;
	const struct mta_target *t = &c->targets[c->cur];
	if (st == SOCKS5_DONE) {
		log_msg(LOG_LEVEL_DEBUG, c->in_txn ? c->msg_id : NULL, "mta_socks",
			"proxy=%s target=%s port=%d action=connected", c->proxy->url, t->addr,
			mta_conn_port(c));
		mta_conn_deadline_clear(c);
		if (c->zone->secure)
			mta_start_tls(c);
		else
			mta_enter_state(c, MTA_GREETING);
		return;
	}
	log_msg(LOG_LEVEL_INFO, c->in_txn ? c->msg_id : NULL, "mta_socks",
		"proxy=%s target=%s rep=%d error=\"%s\"", c->proxy->url, t->addr, c->socks.rep,
		c->socks.reply);
	if (c->socks.permanent && c->in_txn) {
		mta_log_attempt(c, c->socks.reply);
		for (size_t i = 0; i < c->txn.batch->n; i++)
			if (c->txn.item[i] != MTA_ITEM_DONE)
				mta_item_report(c, i, OUTCOME_PERMFAIL, atoi(c->socks.reply),
						c->socks.reply, "dns");
		mta_txn_clear(c);
		mta_conn_close(c, 0, NULL);
		return;
	}
	mta_conn_next_target(c, c->socks.reply, atoi(c->socks.reply));
}

void mta_conn_next_target(struct mta_conn *c, const char *why, int code)
{
	const struct mta_target *t = &c->targets[c->cur];
	log_msg(LOG_LEVEL_INFO, c->in_txn ? c->msg_id : NULL, "mta_connect",
		"mx=%s remote=%s local=%s state=%s error=\"%s\" action=next_address", t->host,
		t->addr, c->local_addr ? c->local_addr : "any", mta_strstate(c->state), why);
	snprintf(c->last_error, sizeof(c->last_error), "%s", why);
	c->last_code = code;
	mta_conn_deadline_clear(c);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	c->bev = NULL;
	c->cur++;
	c->plain_retry = false;
	mta_conn_connect_next(c);
}

static void add_target(struct mta_conn *c, size_t *cap, const char *host, const char *addr)
{
	c->targets = xreallocarray_grow(c->targets, cap, c->ntargets + 1, sizeof(*c->targets));
	c->targets[c->ntargets].host = xstrdup(host);
	c->targets[c->ntargets].addr = xstrdup(addr);
	c->targets[c->ntargets].family = pool_family(addr);
	c->ntargets++;
}

static void on_resolved(void *arg, const struct dns_mx_result *res)
{
	struct mta_conn *c = arg;
	c->dns_req = 0;
	stats_observe(STATS_DNS_SECONDS, (double)(clock_mono_ms() - c->started_ms) / 1000.0);
	if (res->status != DNS_OK) {
		char text[300];
		const char *domain = c->txn.batch->domain;
		const char *error = res->error ? res->error : "DNS lookup failed";
		if (res->status == DNS_NULLMX)
			/* RFC 7505 3.4: the domain accepts no mail. */
			snprintf(text, sizeof(text), "556 5.1.10 %s: %s", domain, error);
		else
			snprintf(text, sizeof(text), "%s %s: %s",
				 res->status == DNS_RETRY ? "451 4.4.3" : "550 5.1.2", domain,
				 error);
		mta_log_attempt(c, text);
		if (res->status == DNS_RETRY) {
			mta_conn_close(c, 451, text);
			return;
		}
		for (size_t i = 0; i < c->txn.batch->n; i++)
			mta_item_report(c, i, OUTCOME_PERMFAIL, atoi(text), text, "dns");
		mta_txn_clear(c);
		mta_conn_close(c, 0, NULL);
		return;
	}
	size_t cap = 0;
	const struct zone_config *z = c->zone;
	for (size_t h = 0; h < res->nhosts; h++) {
		const struct dns_host *host = &res->hosts[h];
		/* preferIPv6 puts IPv6 first; ignoreIPv6 drops it. */
		for (int pass = 0; pass < 2; pass++) {
			bool want_v6 = (pass == 0) == z->prefer_ipv6;
			for (size_t a = 0; a < host->naddrs; a++) {
				bool v6 = pool_family(host->addrs[a]) == POOL_IPV6;
				if (v6 == want_v6 && !(v6 && z->ignore_ipv6))
					add_target(c, &cap, host->name, host->addrs[a]);
			}
		}
	}
	c->cur = 0;
	mta_conn_connect_next(c);
}

/* A name of the onion network (RFC 7686): never looked up in DNS. */
static bool is_onion(const char *host)
{
	size_t n = strlen(host);
	if (n > 0 && host[n - 1] == '.')
		n--;
	return n >= 6 && strncasecmp(host + n - 6, ".onion", 6) == 0;
}

/* A .onion host goes through onion.proxy, by name, with no MX lookup. */
static void onion_target(struct mta_conn *c, const char *host)
{
	c->proxy = c->m->cfg->onion_proxy;
	if (c->proxy == NULL) {
		char text[300];
		snprintf(text, sizeof(text),
			 "550 5.1.2 %s is an onion address and onion.proxy is not set", host);
		mta_log_attempt(c, text);
		for (size_t i = 0; i < c->txn.batch->n; i++)
			mta_item_report(c, i, OUTCOME_PERMFAIL, 550, text, "dns");
		mta_txn_clear(c);
		mta_conn_close(c, 0, NULL);
		return;
	}
	size_t cap = 0;
	add_target(c, &cap, host, host);
	c->targets[0].family = POOL_IPV4;
	mta_conn_connect_next(c);
}

/* Finds where to deliver: an address literal, a smart host or MX records;
 * a .onion host through the onion proxy. */
static void resolve(struct mta_conn *c)
{
	struct mta *m = c->m;
	struct sched_batch *batch = c->txn.batch;
	mta_enter_state(c, MTA_RESOLVING);
	const char *host = c->next_hop != NULL ? c->next_hop : batch->zone->host;
	const char *domain = host != NULL ? host : batch->domain;
	unsigned char buf[16];
	char literal[64];
	size_t dlen = strlen(domain);
	c->proxy = batch->zone->proxy;
	if (is_onion(domain)) {
		onion_target(c, domain);
		return;
	}
	/* An address literal ([192.0.2.1], [IPv6:2001:db8::1], RFC 5321 4.1.3)
	 * or a smart host given as an address: no lookup. */
	if (dlen > 2 && domain[0] == '[' && domain[dlen - 1] == ']' && dlen - 2 < sizeof(literal)) {
		memcpy(literal, domain + 1, dlen - 2);
		literal[dlen - 2] = '\0';
		const char *a = strncasecmp(literal, "IPv6:", 5) == 0 ? literal + 5 : literal;
		if (inet_pton(AF_INET, a, buf) == 1 || inet_pton(AF_INET6, a, buf) == 1) {
			size_t cap = 0;
			add_target(c, &cap, a, a);
			mta_conn_connect_next(c);
			return;
		}
	}
	if (inet_pton(AF_INET, domain, buf) == 1 || inet_pton(AF_INET6, domain, buf) == 1) {
		size_t cap = 0;
		add_target(c, &cap, domain, domain);
		mta_conn_connect_next(c);
		return;
	}
	/* An internationalised domain is looked up by its A-label (IDNA2008,
	 * RFC 5891); one that has none cannot be delivered. */
	char *alabel = NULL;
	bool ascii = true;
	for (const char *p = domain; *p; p++)
		ascii = ascii && (unsigned char)*p < 0x80;
	if (!ascii) {
		int rc = idn2_lookup_u8((const uint8_t *)domain, (uint8_t **)&alabel,
					IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
		if (rc != IDN2_OK) {
			char text[300];
			snprintf(text, sizeof(text),
				 "553 5.1.2 %s is not a valid internationalised "
				 "domain: %s",
				 domain, idn2_strerror(rc));
			mta_log_attempt(c, text);
			for (size_t i = 0; i < batch->n; i++)
				mta_item_report(c, i, OUTCOME_PERMFAIL, 553, text, "dns");
			mta_txn_clear(c);
			mta_conn_close(c, 0, NULL);
			return;
		}
		domain = alabel;
	}
	c->dns_req = dns_resolve_mx(m->dns, domain, on_resolved, c);
	idn2_free(alabel);
}

void mta_hook_refused(struct mta_conn *c, const struct hook_result *res)
{
	bool reject = res->verdict == HOOK_REJECT;
	const char *text = res->reply != NULL ? res->reply
			   : reject           ? "550 5.7.1 delivery refused by a plugin"
					      : "451 4.7.1 delivery deferred by a plugin";
	mta_log_attempt(c, text);
	/* The plugin decided: the bounce rules do not second-guess it. */
	for (size_t i = 0; i < c->txn.batch->n; i++)
		if (c->txn.item[i] != MTA_ITEM_DONE)
			mta_item_report(c, i, reject ? OUTCOME_PERMFAIL : OUTCOME_TEMPFAIL,
					atoi(text), text, "policy");
}

static void sender_connect_done(void *arg, const struct hook_result *res)
{
	struct mta_conn *c = arg;
	c->hook_id = 0;
	if (res->verdict == HOOK_REJECT || res->verdict == HOOK_TEMPFAIL) {
		mta_hook_refused(c, res);
		mta_txn_clear(c);
		mta_conn_close(c, 0, NULL);
		return;
	}
	if (c->next_hop != NULL || c->next_port > 0)
		log_msg(LOG_LEVEL_INFO, c->msg_id, "next_hop",
			"zone=%s domain=%s host=%s port=%d reason=plugin", c->zone->name,
			c->txn.batch->domain, c->next_hop ? c->next_hop : "(mx)", mta_conn_port(c));
	resolve(c);
}

void mta_start(void *arg, struct sched_slot *slot, struct sched_batch *batch)
{
	struct mta *m = arg;
	struct mta_conn *c = xcalloc(1, sizeof(*c));
	c->m = m;
	c->id = ++m->next_id;
	c->slot = slot;
	c->zone = batch->zone;
	c->pool = sched_zone_pool(m->sched, batch->zone);
	c->ehlo_name = m->cfg->hostname;
	c->deadline_ev = evtimer_new(m->base, on_deadline, c);
	c->idle_ev = evtimer_new(m->base, mta_idle_timeout, c);
	c->started_ms = clock_mono_ms();
	u64map_put(m->conns, c->id, c);
	stats_connection(c->zone->name, 1);
	c->txn.batch = batch;
	c->txn.item = xcalloc(batch->n, sizeof(*c->txn.item));
	c->txn.started_ms = c->started_ms;
	c->in_txn = true;
	memcpy(c->msg_id, batch->items[0]->id, sizeof(c->msg_id));
	if (m->stopping) {
		mta_conn_close(c, 0, NULL);
		return;
	}
	/* sender:connect sees the connection's first delivery. */
	const struct sched_item *first = batch->items[0];
	c->hook_ctx = (struct hook_ctx){
	    .address = first->recipient,
	    .queue_id = first->id,
	    .seq = first->seq,
	    .zone_name = batch->zone->name,
	    .domain = batch->domain,
	    .mx = batch->zone->host,
	    .next_hop = &c->next_hop,
	    .next_port = &c->next_port,
	};
	mta_enter_state(c, MTA_HOOK);
	uint64_t id = hook_run(HOOK_SENDER_CONNECT, &c->hook_ctx, sender_connect_done, c);
	if (id != 0)
		c->hook_id = id; /* else done has run, and c may be gone */
}

/* --- ending --- */

void mta_conn_quit(struct mta_conn *c)
{
	if (c->bev == NULL) {
		mta_conn_close(c, 0, NULL);
		return;
	}
	/* Wait (briefly) for the reply before closing, so that the server has
	 * let go of the session when the slot is given to another connection. */
	mta_enter_state(c, MTA_QUIT);
}

void mta_conn_close(struct mta_conn *c, int code, const char *text)
{
	struct mta *m = c->m;
	hook_cancel(c->hook_id); /* its context points into the transaction */
	c->hook_id = 0;
	header_list_clear(&c->hook_headers);
	/* Ended in the middle of something: an abortive close (RST), so that
	 * bytes still in the socket's send queue (perhaps a final dot) are
	 * dropped rather than delivered after we gave up on them. */
	bool abortive = c->state != MTA_QUIT && c->state != MTA_IDLE;
	if (abortive && c->bev != NULL) {
		struct linger lg = {1, 0};
		evutil_socket_t fd = bufferevent_getfd(c->bev);
		if (fd >= 0)
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	} else if (c->tls && c->bev != NULL) {
		/* A clean end after QUIT: OpenSSL would otherwise take the TLS
		 * session for a broken one and never resume it. */
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
		if (ssl != NULL)
			SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	}
	mta_enter_state(c, MTA_CLOSED);
	if (c->in_txn) {
		struct mta_txn *x = &c->txn;
		for (size_t i = 0; i < x->batch->n; i++) {
			if (x->item[i] == MTA_ITEM_DONE)
				continue;
			if (text != NULL) {
				mta_item_report(c, i, OUTCOME_TEMPFAIL, code, text, NULL);
			} else {
				/* Unfinished: its row stays stored for the next attempt. */
				x->item[i] = MTA_ITEM_DONE;
				outcome_abandon(m->outcome, x->batch->items[i]);
			}
		}
		mta_txn_clear(c);
	}
	if (c->dns_req)
		dns_cancel(m->dns, c->dns_req);
	if (c->bev != NULL)
		bufferevent_free(c->bev); /* a pending QUIT may be lost: harmless */
	event_free(c->deadline_ev);
	event_free(c->idle_ev);
	for (size_t i = 0; i < c->ntargets; i++) {
		free(c->targets[i].host);
		free(c->targets[i].addr);
	}
	free(c->targets);
	u64map_remove(m->conns, c->id);
	stats_connection(c->zone->name, -1);
	struct sched_slot *slot = c->slot;
	free(c);
	sched_release(m->sched, slot);
	mta_check_drained(m);
}
