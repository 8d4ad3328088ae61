/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Asynchronous MX → A/AAAA resolution with libunbound; see dns.h.
 *
 * libunbound resolves in a background thread of its own (ub_ctx_async(ctx,
 * 1)) and hands answers back through a pipe, ub_fd(), which a persistent
 * libevent event watches; ub_process() then runs our unbound callbacks on
 * the loop thread.  Those only record answers: a caller's callback always
 * runs from the request's own event, never from inside ub_process() or
 * dns_resolve_mx(), so it may call dns_cancel(), dns_resolve_mx() or even
 * dns_free().
 *
 * Every unbound answer is normalised (struct answer) and cached under its
 * type and name for its TTL, so a cached MX list still gets a fresh random
 * order within each preference, and MX hosts shared by many domains are
 * looked up once.
 */
#include "mta/dns.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unbound.h>

#include "core/hmap.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/xmalloc.h"

#define DNS_T_A 1
#define DNS_T_MX 15
#define DNS_T_AAAA 28
#define DNS_T_TXT 16
#define DNS_C_IN 1
#define DNS_RCODE_NXDOMAIN 3

#define DNS_CACHE_MAX 10000   /* cached answers; the oldest goes first */
#define DNS_TTL_POS_MAX 86400 /* as unbound's cache-max-ttl */
#define DNS_TTL_NEG_MIN 1     /* NXDOMAIN, NODATA, null MX */
#define DNS_TTL_NEG_MAX 3600
#define DNS_TIMEOUT_MS 30000 /* a whole lookup, MX and addresses */
#define DNS_MAX_HOSTS 16     /* MX hosts resolved per domain (after ordering) */
#define DNS_MAX_ADDRS                                                                              \
	16 /* addresses tried per host and family: a huge RRset
				costs no more than this many connection attempts */
#define DNS_NAME_MAX 253

enum ans_kind {
	ANS_DATA,
	ANS_NODATA, /* the name exists, without records of this type */
	ANS_NXDOMAIN,
	ANS_RETRY, /* no answer: SERVFAIL, timeout, network; never cached */
};

/* One query's outcome, from unbound or from the cache. */
struct answer {
	enum ans_kind kind;
	char **items; /* MX: exchange names; A/AAAA: address literals */
	int *prefs;   /* MX: preferences */
	size_t n;
	bool nullmx; /* MX: only "." exchanges (RFC 7505) */
	char *error; /* ANS_RETRY: why */
};

struct cache_ent {
	char *key; /* "<qtype>:<name>" */
	int64_t expires_ms;
	struct answer ans;
	struct cache_ent *prev, *next; /* insertion order, oldest first */
};

/* One libunbound query in flight; freed by its unbound callback, by a
 * successful ub_cancel(), or by dns_free(). */
struct query {
	struct dns *d;
	struct dns_req *req; /* NULL when the request is gone */
	struct answer *dst;  /* inside req */
	char *name;
	int qtype;
	int async_id;
	struct query *prev, *next; /* d->queries */
	struct query *req_next;    /* req->queries */
};

struct req_host {
	char *name;
	int pref;
	struct answer a4, a6;
};

enum req_stage {
	REQ_MX,
	REQ_ADDR,
	REQ_DONE,
};

struct dns_req {
	struct dns *d;
	uint64_t id;
	char *domain;
	dns_mx_cb cb;
	void *arg;
	struct event *ev; /* timeout; activated when the answer is complete */
	int64_t started_ms;
	enum req_stage stage;
	struct answer mx;
	bool implicit;
	struct req_host *hosts;
	size_t nhosts;
	struct query *queries; /* in flight */
	size_t pending;
	enum dns_status status;
	char *error;
};

struct dns {
	struct event_base *base;
	struct ub_ctx *ctx;
	struct event *ub_ev;
	bool ipv6, prefer_ipv6;
	uint64_t next_id;
	struct u64map *reqs;
	struct query *queries; /* every query in flight, orphans included */
	struct strmap *cache;
	struct cache_ent *oldest, *newest;
	struct u64map *lookups; /* id -> struct lookup (dns_lookup) */
};

static void advance(struct dns_req *r);

static const char *status_name(enum dns_status s)
{
	switch (s) {
	case DNS_OK:
		return "ok";
	case DNS_RETRY:
		return "retry";
	case DNS_NOTFOUND:
		return "notfound";
	case DNS_NULLMX:
		return "nullmx";
	}
	return "?";
}

static const char *qtype_name(int qtype)
{
	return qtype == DNS_T_MX ? "MX" : qtype == DNS_T_A ? "A" : "AAAA";
}

static const char *rcode_name(int rcode)
{
	static const char *const names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
					    "NOTIMP",  "REFUSED", "YXDOMAIN", "YXRRSET",
					    "NXRRSET", "NOTAUTH", "NOTZONE"};
	if (rcode >= 0 && (size_t)rcode < sizeof(names) / sizeof(names[0]))
		return names[rcode];
	return "unknown rcode";
}

/* --- answers --- */

static void answer_clear(struct answer *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->items[i]);
	free(a->items);
	free(a->prefs);
	free(a->error);
	memset(a, 0, sizeof(*a));
}

static void answer_copy(struct answer *dst, const struct answer *src)
{
	*dst = *src;
	dst->items = src->n ? xcalloc(src->n, sizeof(*dst->items)) : NULL;
	dst->prefs = src->prefs ? xcalloc(src->n ? src->n : 1, sizeof(*dst->prefs)) : NULL;
	for (size_t i = 0; i < src->n; i++) {
		dst->items[i] = xstrdup(src->items[i]);
		if (src->prefs)
			dst->prefs[i] = src->prefs[i];
	}
	dst->error = src->error ? xstrdup(src->error) : NULL;
}

static void answer_retry(struct answer *a, char *error)
{
	answer_clear(a);
	a->kind = ANS_RETRY;
	a->error = error;
}

static bool name_char_ok(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/*
 * Lower-cases `in` into out (DNS_NAME_MAX + 1 bytes) without a trailing
 * dot.  Host names only: letters, digits, '-', '_' (an IDN must come as
 * A-labels); false for anything else.
 */
static bool name_normalise(const char *in, char *out)
{
	size_t len = strlen(in);
	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX)
		return false;
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (!name_char_ok(c) || ++label > 63) {
			return false;
		}
		out[i] = (char)c;
	}
	out[len] = '\0';
	return label > 0;
}

/*
 * MX rdata: a 2-byte preference, then the exchange as an uncompressed wire
 * name (libunbound hands out rdata decompressed).  Writes the name as text
 * ("." for the root); false when malformed or not a usable host name.
 */
static bool mx_parse(const unsigned char *p, size_t len, int *pref, char *out)
{
	if (len < 3)
		return false;
	*pref = p[0] << 8 | p[1];
	size_t off = 2, o = 0;
	for (;;) {
		if (off >= len)
			return false;
		size_t l = p[off++];
		if (l == 0)
			break;
		if (l > 63 || off + l > len || o + l + 1 > DNS_NAME_MAX + 1)
			return false;
		for (size_t i = 0; i < l; i++) {
			unsigned char c = p[off + i];
			if (c >= 'A' && c <= 'Z')
				c = (unsigned char)(c - 'A' + 'a');
			if (!name_char_ok(c))
				return false;
			out[o++] = (char)c;
		}
		out[o++] = '.';
		off += l;
	}
	if (o == 0) {
		strcpy(out, ".");
	} else {
		if (o - 1 > DNS_NAME_MAX)
			return false;
		out[o - 1] = '\0';
	}
	return true;
}

static void answer_push(struct answer *a, size_t *cap, size_t *pcap, char *item, int pref)
{
	a->items = xreallocarray_grow(a->items, cap, a->n + 1, sizeof(*a->items));
	if (pcap != NULL) {
		a->prefs = xreallocarray_grow(a->prefs, pcap, a->n + 1, sizeof(*a->prefs));
		a->prefs[a->n] = pref;
	}
	a->items[a->n++] = item;
}

/* Turns what unbound said into an answer; *ttl gets the TTL to cache it for
 * (0: do not cache). */
static void answer_from_ub(struct answer *a, int qtype, const char *name, int err,
			   const struct ub_result *res, int *ttl)
{
	memset(a, 0, sizeof(*a));
	*ttl = 0;
	if (err != 0) {
		answer_retry(a, xasprintf("%s lookup for %s failed: %s", qtype_name(qtype), name,
					  ub_strerror(err)));
		return;
	}
	if (res->bogus) {
		answer_retry(a, xasprintf("%s lookup for %s: DNSSEC validation failed: %s",
					  qtype_name(qtype), name,
					  res->why_bogus ? res->why_bogus : "bogus"));
		return;
	}
	*ttl = res->ttl;
	if (res->rcode == DNS_RCODE_NXDOMAIN) {
		a->kind = ANS_NXDOMAIN;
		return;
	}
	if (res->rcode != 0) {
		answer_retry(a, xasprintf("%s lookup for %s: %s", qtype_name(qtype), name,
					  rcode_name(res->rcode)));
		*ttl = 0;
		return;
	}
	a->kind = ANS_NODATA;
	if (!res->havedata)
		return;
	size_t cap = 0, pcap = 0, records = 0;
	for (size_t i = 0; res->data[i] != NULL; i++) {
		const unsigned char *p = (const unsigned char *)res->data[i];
		size_t len = res->len[i] > 0 ? (size_t)res->len[i] : 0;
		char text[DNS_NAME_MAX + 1 > INET6_ADDRSTRLEN ? DNS_NAME_MAX + 1 : INET6_ADDRSTRLEN];
		records++;
		if (qtype == DNS_T_MX) {
			int pref;
			if (!mx_parse(p, len, &pref, text))
				continue;
			if (strcmp(text, ".") == 0) {
				a->nullmx = true;
				continue;
			}
			answer_push(a, &cap, &pcap, xstrdup(text), pref);
		} else {
			int af = qtype == DNS_T_A ? AF_INET : AF_INET6;
			if (len != (af == AF_INET ? 4u : 16u) ||
			    !inet_ntop(af, p, text, sizeof(text)))
				continue;
			answer_push(a, &cap, NULL, xstrdup(text), 0);
		}
	}
	if (a->n > 0) {
		/* A domain that publishes a null MX must publish no other
		 * MX (RFC 7505 3): if it does, the real ones are used. */
		a->kind = ANS_DATA;
		a->nullmx = false;
	} else if (a->nullmx) {
		a->kind = ANS_DATA;
	} else if (records > 0) {
		answer_retry(a, xasprintf("%s lookup for %s: no usable record in the answer",
					  qtype_name(qtype), name));
		*ttl = 0;
	}
}

/* --- the cache --- */

static char *cache_key(int qtype, const char *name)
{
	return xasprintf("%d:%s", qtype, name);
}

static void cache_unlink(struct dns *d, struct cache_ent *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		d->oldest = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		d->newest = e->prev;
	strmap_remove(d->cache, e->key);
	answer_clear(&e->ans);
	free(e->key);
	free(e);
}

/* Copies a live cached answer into *out; false on a miss. */
static bool cache_get(struct dns *d, int qtype, const char *name, struct answer *out)
{
	char *key = cache_key(qtype, name);
	struct cache_ent *e = strmap_get(d->cache, key);
	free(key);
	if (e == NULL)
		return false;
	if (e->expires_ms <= clock_mono_ms()) {
		cache_unlink(d, e);
		return false;
	}
	answer_copy(out, &e->ans);
	return true;
}

static void cache_put(struct dns *d, int qtype, const char *name, const struct answer *a, int ttl)
{
	if (a->kind == ANS_RETRY)
		return;
	if (a->kind == ANS_DATA && !a->nullmx) {
		if (ttl <= 0)
			return; /* TTL 0: use once, never cache (RFC 1035 3.2.1) */
		if (ttl > DNS_TTL_POS_MAX)
			ttl = DNS_TTL_POS_MAX;
	} else {
		ttl = ttl < DNS_TTL_NEG_MIN ? DNS_TTL_NEG_MIN : ttl;
		ttl = ttl > DNS_TTL_NEG_MAX ? DNS_TTL_NEG_MAX : ttl;
	}
	struct cache_ent *e = xcalloc(1, sizeof(*e));
	e->key = cache_key(qtype, name);
	struct cache_ent *old = strmap_get(d->cache, e->key);
	if (old != NULL)
		cache_unlink(d, old);
	if (strmap_count(d->cache) >= DNS_CACHE_MAX)
		cache_unlink(d, d->oldest);
	e->expires_ms = clock_mono_ms() + (int64_t)ttl * 1000;
	answer_copy(&e->ans, a);
	e->prev = d->newest;
	if (d->newest)
		d->newest->next = e;
	else
		d->oldest = e;
	d->newest = e;
	strmap_put(d->cache, e->key, e);
}

/* --- queries --- */

static void query_unlink(struct query *q)
{
	struct dns *d = q->d;
	if (q->prev)
		q->prev->next = q->next;
	else
		d->queries = q->next;
	if (q->next)
		q->next->prev = q->prev;
	if (q->req != NULL) {
		for (struct query **pp = &q->req->queries; *pp; pp = &(*pp)->req_next) {
			if (*pp == q) {
				*pp = q->req_next;
				break;
			}
		}
	}
}

static void query_free(struct query *q)
{
	free(q->name);
	free(q);
}

static void on_ub_answer(void *arg, int err, struct ub_result *res)
{
	struct query *q = arg;
	struct answer a;
	int ttl;
	answer_from_ub(&a, q->qtype, q->name, err, res, &ttl);
	ub_resolve_free(res);
	query_unlink(q);
	cache_put(q->d, q->qtype, q->name, &a, ttl);
	struct dns_req *r = q->req;
	if (r != NULL) {
		answer_clear(q->dst);
		*q->dst = a;
		r->pending--;
	} else {
		answer_clear(&a);
	}
	query_free(q);
	if (r != NULL && r->pending == 0)
		advance(r);
}

/* Fills *dst from the cache, or starts an unbound query that will. */
static void start_query(struct dns_req *r, int qtype, const char *name, struct answer *dst)
{
	struct dns *d = r->d;
	answer_clear(dst);
	if (cache_get(d, qtype, name, dst))
		return;
	struct query *q = xcalloc(1, sizeof(*q));
	q->d = d;
	q->req = r;
	q->dst = dst;
	q->name = xstrdup(name);
	q->qtype = qtype;
	int err = ub_resolve_async(d->ctx, name, qtype, DNS_C_IN, q, on_ub_answer, &q->async_id);
	if (err != 0) {
		answer_retry(dst, xasprintf("%s lookup for %s failed: %s", qtype_name(qtype), name,
					    ub_strerror(err)));
		query_free(q);
		return;
	}
	q->next = d->queries;
	if (d->queries)
		d->queries->prev = q;
	d->queries = q;
	q->req_next = r->queries;
	r->queries = q;
	r->pending++;
}

/* Stops the request's queries; their answers, if any arrive, are dropped. */
static void cancel_queries(struct dns_req *r)
{
	while (r->queries != NULL) {
		struct query *q = r->queries;
		query_unlink(q); /* from both lists */
		q->req = NULL;
		if (ub_cancel(r->d->ctx, q->async_id) == 0) {
			query_free(q);
		} else {
			/* Not known to unbound any more: keep it as an orphan
			 * for its callback (or dns_free) to free. */
			struct dns *d = r->d;
			q->prev = NULL;
			q->next = d->queries;
			if (d->queries)
				d->queries->prev = q;
			d->queries = q;
		}
	}
	r->pending = 0;
}

/* --- requests --- */

static void finish(struct dns_req *r, enum dns_status status, char *error)
{
	r->stage = REQ_DONE;
	r->status = status;
	free(r->error);
	r->error = error;
	event_active(r->ev, EV_WRITE, 0);
}

static int host_cmp(const void *a, const void *b)
{
	const struct req_host *x = a, *y = b;
	return (x->pref > y->pref) - (x->pref < y->pref);
}

/* MX answer → hosts: by preference, random within one (RFC 5321 5.1). */
static void hosts_from_mx(struct dns_req *r)
{
	const struct answer *mx = &r->mx;
	r->hosts = xcalloc(mx->n, sizeof(*r->hosts));
	for (size_t i = 0; i < mx->n; i++) {
		bool dup = false;
		for (size_t j = 0; j < r->nhosts; j++) {
			if (strcmp(r->hosts[j].name, mx->items[i]) == 0) {
				if (mx->prefs[i] < r->hosts[j].pref)
					r->hosts[j].pref = mx->prefs[i];
				dup = true;
			}
		}
		if (dup)
			continue;
		r->hosts[r->nhosts].name = xstrdup(mx->items[i]);
		r->hosts[r->nhosts].pref = mx->prefs[i];
		r->nhosts++;
	}
	qsort(r->hosts, r->nhosts, sizeof(*r->hosts), host_cmp);
	for (size_t start = 0; start < r->nhosts;) {
		size_t end = start + 1;
		while (end < r->nhosts && r->hosts[end].pref == r->hosts[start].pref)
			end++;
		for (size_t i = end - 1; i > start; i--) {
			size_t j = start + arc4random_uniform((uint32_t)(i - start + 1));
			struct req_host t = r->hosts[i];
			r->hosts[i] = r->hosts[j];
			r->hosts[j] = t;
		}
		start = end;
	}
	while (r->nhosts > DNS_MAX_HOSTS)
		free(r->hosts[--r->nhosts].name);
}

static void start_addresses(struct dns_req *r)
{
	r->stage = REQ_ADDR;
	for (size_t i = 0; i < r->nhosts; i++) {
		start_query(r, DNS_T_A, r->hosts[i].name, &r->hosts[i].a4);
		if (r->d->ipv6)
			start_query(r, DNS_T_AAAA, r->hosts[i].name, &r->hosts[i].a6);
		else
			r->hosts[i].a6.kind = ANS_NODATA;
	}
}

static size_t host_naddrs(const struct req_host *h)
{
	return (h->a4.kind == ANS_DATA ? h->a4.n : 0) + (h->a6.kind == ANS_DATA ? h->a6.n : 0);
}

/* A host without addresses: why, when it is worth retrying; else NULL. */
static const char *host_retry_error(const struct req_host *h)
{
	if (h->a4.kind == ANS_RETRY)
		return h->a4.error;
	if (h->a6.kind == ANS_RETRY)
		return h->a6.error;
	return NULL;
}

static void finish_addresses(struct dns_req *r)
{
	size_t usable = 0, retry = 0;
	const char *why = NULL;
	for (size_t i = 0; i < r->nhosts; i++) {
		if (host_naddrs(&r->hosts[i]) > 0) {
			usable++;
		} else if (host_retry_error(&r->hosts[i]) != NULL) {
			retry++;
			if (why == NULL)
				why = host_retry_error(&r->hosts[i]);
		}
	}
	if (r->implicit) {
		if (usable > 0)
			finish(r, DNS_OK, NULL);
		else if (retry > 0)
			finish(r, DNS_RETRY, xstrdup(why));
		else
			finish(r, DNS_NOTFOUND,
			       xasprintf("%s has no MX records and no address", r->domain));
		return;
	}
	if (retry == r->nhosts)
		finish(r, DNS_RETRY,
		       xasprintf("no MX host of %s could be resolved: %s", r->domain, why));
	else
		finish(r, DNS_OK, NULL);
}

/* Runs when the request's outstanding queries are all answered. */
static void advance(struct dns_req *r)
{
	if (r->stage == REQ_ADDR) {
		finish_addresses(r);
		return;
	}
	switch (r->mx.kind) {
	case ANS_RETRY:
		finish(r, DNS_RETRY, xstrdup(r->mx.error));
		return;
	case ANS_NXDOMAIN:
		finish(r, DNS_NOTFOUND, xasprintf("%s does not exist (NXDOMAIN)", r->domain));
		return;
	case ANS_NODATA: /* no MX: the domain is its own MX (RFC 5321 5.1) */
		r->implicit = true;
		r->hosts = xcalloc(1, sizeof(*r->hosts));
		r->hosts[0].name = xstrdup(r->domain);
		r->nhosts = 1;
		break;
	case ANS_DATA:
		if (r->mx.nullmx) {
			finish(r, DNS_NULLMX,
			       xasprintf("%s accepts no mail (null MX, RFC 7505)", r->domain));
			return;
		}
		hosts_from_mx(r);
		break;
	}
	start_addresses(r);
	if (r->pending == 0)
		finish_addresses(r);
}

static void req_free(struct dns_req *r)
{
	if (r == NULL)
		return;
	event_free(r->ev);
	answer_clear(&r->mx);
	for (size_t i = 0; i < r->nhosts; i++) {
		free(r->hosts[i].name);
		answer_clear(&r->hosts[i].a4);
		answer_clear(&r->hosts[i].a6);
	}
	free(r->hosts);
	free(r->domain);
	free(r->error);
	free(r);
}

static void deliver(struct dns_req *r)
{
	struct dns_host *hosts = NULL;
	size_t nhosts = 0, naddrs = 0;
	if (r->status == DNS_OK) {
		nhosts = r->nhosts;
		hosts = xcalloc(nhosts ? nhosts : 1, sizeof(*hosts));
		for (size_t i = 0; i < nhosts; i++) {
			struct req_host *h = &r->hosts[i];
			const struct answer *first = r->d->prefer_ipv6 ? &h->a6 : &h->a4;
			const struct answer *second = r->d->prefer_ipv6 ? &h->a4 : &h->a6;
			hosts[i].name = h->name;
			hosts[i].preference = h->pref;
			hosts[i].addrs = xcalloc(host_naddrs(h) + 1, sizeof(char *));
			if (first->kind == ANS_DATA)
				for (size_t k = 0; k < first->n && k < DNS_MAX_ADDRS; k++)
					hosts[i].addrs[hosts[i].naddrs++] = first->items[k];
			if (second->kind == ANS_DATA)
				for (size_t k = 0; k < second->n && k < DNS_MAX_ADDRS; k++)
					hosts[i].addrs[hosts[i].naddrs++] = second->items[k];
			naddrs += hosts[i].naddrs;
		}
	}
	struct dns_mx_result res = {
	    .status = r->status,
	    .error = r->error,
	    .hosts = hosts,
	    .nhosts = nhosts,
	    .implicit = r->status == DNS_OK && r->implicit,
	};
	log_debug("dns_mx", "domain=%s status=%s hosts=%zu addrs=%zu implicit=%s ms=%lld%s%s%s",
		  r->domain, status_name(r->status), nhosts, naddrs, res.implicit ? "yes" : "no",
		  (long long)(clock_mono_ms() - r->started_ms), r->error ? " error=\"" : "",
		  r->error ? r->error : "", r->error ? "\"" : "");
	r->cb(r->arg, &res);
	for (size_t i = 0; i < nhosts; i++)
		free(hosts[i].addrs);
	free(hosts);
}

/* The request's event: its answer is complete, or it timed out. */
static void on_req_event(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dns_req *r = arg;
	if (r->stage != REQ_DONE) {
		cancel_queries(r);
		r->stage = REQ_DONE;
		r->status = DNS_RETRY;
		free(r->error);
		r->error = xasprintf("DNS lookup for %s timed out after %d s", r->domain,
				     DNS_TIMEOUT_MS / 1000);
	}
	/* From here on the request is no longer the map's: the callback may
	 * call dns_cancel() on it (ignored) or dns_free(). */
	u64map_remove(r->d->reqs, r->id);
	deliver(r);
	req_free(r);
}

uint64_t dns_resolve_mx(struct dns *d, const char *domain, dns_mx_cb cb, void *arg)
{
	struct dns_req *r = xcalloc(1, sizeof(*r));
	r->d = d;
	r->id = ++d->next_id;
	r->cb = cb;
	r->arg = arg;
	r->started_ms = clock_mono_ms();
	r->stage = REQ_MX;
	r->ev = evtimer_new(d->base, on_req_event, r);
	if (r->ev == NULL)
		fatal("dns: cannot create an event");
	struct timeval tv = {DNS_TIMEOUT_MS / 1000, (DNS_TIMEOUT_MS % 1000) * 1000};
	evtimer_add(r->ev, &tv);
	u64map_put(d->reqs, r->id, r);

	char name[DNS_NAME_MAX + 1];
	if (domain == NULL || !name_normalise(domain, name)) {
		r->domain = xstrdup(domain ? domain : "");
		finish(r, DNS_NOTFOUND, xasprintf("invalid domain name \"%s\"", r->domain));
		return r->id;
	}
	r->domain = xstrdup(name);
	start_query(r, DNS_T_MX, r->domain, &r->mx);
	if (r->pending == 0)
		advance(r);
	return r->id;
}

void dns_cancel(struct dns *d, uint64_t req)
{
	struct dns_req *r = u64map_remove(d->reqs, req);
	if (r == NULL)
		return;
	cancel_queries(r);
	req_free(r);
}

/* --- the context --- */

static void on_ub_readable(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dns *d = arg;
	int err = ub_process(d->ctx);
	if (err != 0) {
		/* The resolver thread is gone: stop watching its pipe (it would
		 * stay readable); pending lookups end in their timeout. */
		log_error("dns_failed", "error=\"%s\"", ub_strerror(err));
		event_del(d->ub_ev);
	}
}

static int ub_setup(struct dns *d, const struct dns_config *cfg, char **err)
{
	int rc;
	/* A thread, not a fork(): a forked resolver would inherit every
	 * descriptor of the daemon and run its atexit handlers on exit. */
	if ((rc = ub_ctx_async(d->ctx, 1)) != 0) {
		*err = xasprintf("libunbound: cannot go asynchronous: %s", ub_strerror(rc));
		return -1;
	}
	if (cfg->n_nameservers == 0) {
		/* resolv.conf's servers (127.0.0.1 when it lists none).  Not
		 * /etc/hosts: mail follows DNS only, as Postfix's default. */
		if ((rc = ub_ctx_resolvconf(d->ctx, NULL)) != 0) {
			*err = xasprintf("libunbound: cannot read /etc/resolv.conf: %s",
					 ub_strerror(rc));
			return -1;
		}
	}
	for (size_t i = 0; i < cfg->n_nameservers; i++) {
		if ((rc = ub_ctx_set_fwd(d->ctx, cfg->nameservers[i])) != 0) {
			*err = xasprintf("libunbound: bad nameserver \"%s\": %s",
					 cfg->nameservers[i], ub_strerror(rc));
			return -1;
		}
	}
	/* We always forward, and a local resolver (127.0.0.53, a dnsmasq) is
	 * a normal forwarder; unbound refuses to query localhost by default. */
	if ((rc = ub_ctx_set_option(d->ctx, "do-not-query-localhost:", "no")) != 0) {
		*err = xasprintf("libunbound: do-not-query-localhost: %s", ub_strerror(rc));
		return -1;
	}
	if (cfg->n_nameservers == 0)
		return 0;
	/* Special-use zones that unbound answers itself (NXDOMAIN) but a
	 * private resolver may serve (RFC 6761, RFC 8375): let them through.
	 * "transparent" works here where "nodefault" does not.  localhost.
	 * and onion. keep unbound's answers. */
	static const char *const zones[] = {"test. transparent", "invalid. transparent",
					    "home.arpa. transparent"};
	for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
		if ((rc = ub_ctx_set_option(d->ctx, "local-zone:", zones[i])) != 0) {
			*err = xasprintf("libunbound: local-zone %s: %s", zones[i],
					 ub_strerror(rc));
			return -1;
		}
	}
	return 0;
}

struct dns *dns_new(struct event_base *base, const struct dns_config *cfg, char **err)
{
	struct dns *d = xcalloc(1, sizeof(*d));
	d->base = base;
	d->ipv6 = cfg->ipv6;
	d->prefer_ipv6 = cfg->prefer_ipv6;
	d->reqs = u64map_new();
	d->lookups = u64map_new();
	d->cache = strmap_new();
	d->ctx = ub_ctx_create();
	if (d->ctx == NULL) {
		*err = xstrdup("libunbound: cannot create a resolver context");
		dns_free(d);
		return NULL;
	}
	if (ub_setup(d, cfg, err) != 0) {
		dns_free(d);
		return NULL;
	}
	d->ub_ev = event_new(base, ub_fd(d->ctx), EV_READ | EV_PERSIST, on_ub_readable, d);
	if (d->ub_ev == NULL || event_add(d->ub_ev, NULL) != 0) {
		*err = xstrdup("libunbound: cannot watch the resolver's descriptor");
		dns_free(d);
		return NULL;
	}
	return d;
}

/* --- single lookups (dns_lookup) --- */

struct lookup {
	struct dns *d;
	uint64_t id;
	int async_id;
	int qtype;
	char *name;
	dns_lookup_cb cb;
	void *arg;
	struct event *failed; /* unbound refused the query: answered from the loop */
};

static void lookup_free(struct lookup *l)
{
	if (l->failed != NULL)
		event_free(l->failed);
	else
		ub_cancel(l->d->ctx, l->async_id);
	free(l->name);
	free(l);
}

int dns_lookup_type_parse(const char *name, enum dns_lookup_type *out)
{
	static const char *const names[] = {"A", "AAAA", "MX", "TXT"};
	for (int i = 0; i < 4; i++)
		if (strcasecmp(name, names[i]) == 0) {
			*out = (enum dns_lookup_type)i;
			return 0;
		}
	return -1;
}

/* TXT rdata: <len><bytes>... joined into one string. */
static char *txt_join(const unsigned char *p, size_t len)
{
	char *out = xmalloc(len + 1);
	size_t o = 0;
	for (size_t off = 0; off < len;) {
		size_t l = p[off++];
		if (off + l > len)
			break;
		memcpy(out + o, p + off, l);
		o += l;
		off += l;
	}
	out[o] = '\0';
	return out;
}

static void on_lookup_answer(void *arg, int err, struct ub_result *res)
{
	struct lookup *l = arg;
	u64map_remove(l->d->lookups, l->id);
	char **recs = NULL;
	size_t n = 0;
	enum dns_status status = DNS_OK;
	char *error = NULL;
	if (err != 0 || res == NULL) {
		status = DNS_RETRY;
		error = xasprintf("lookup of %s failed: %s", l->name, ub_strerror(err));
	} else if (res->bogus) {
		status = DNS_RETRY;
		error = xasprintf("lookup of %s: DNSSEC validation failed", l->name);
	} else if (res->rcode == DNS_RCODE_NXDOMAIN) {
		status = DNS_NOTFOUND;
	} else if (res->rcode != 0) {
		status = DNS_RETRY;
		error = xasprintf("lookup of %s: %s", l->name, rcode_name(res->rcode));
	} else {
		for (size_t i = 0; res->havedata && res->data[i] != NULL; i++) {
			const unsigned char *p = (const unsigned char *)res->data[i];
			size_t len = res->len[i] > 0 ? (size_t)res->len[i] : 0;
			char text[DNS_NAME_MAX + 16];
			char *rec = NULL;
			int pref;
			if (l->qtype == DNS_T_TXT) {
				rec = txt_join(p, len);
			} else if (l->qtype == DNS_T_MX) {
				if (mx_parse(p, len, &pref, text))
					rec = xasprintf("%d %s", pref, text);
			} else {
				int af = l->qtype == DNS_T_A ? AF_INET : AF_INET6;
				if (len == (af == AF_INET ? 4u : 16u) &&
				    inet_ntop(af, p, text, sizeof(text)))
					rec = xstrdup(text);
			}
			if (rec != NULL) {
				recs = xrealloc(recs, (n + 1) * sizeof(*recs));
				recs[n++] = rec;
			}
		}
	}
	if (res != NULL)
		ub_resolve_free(res);
	l->cb(l->arg, status, (const char *const *)recs, n, error);
	for (size_t i = 0; i < n; i++)
		free(recs[i]);
	free(recs);
	free(error);
	if (l->failed != NULL)
		event_free(l->failed);
	free(l->name);
	free(l);
}

/* The answer of a lookup unbound could not even start, from the loop. */
static void lookup_failed_now(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	on_lookup_answer(arg, UB_SYNTAX, NULL);
}

uint64_t dns_lookup(struct dns *d, const char *name, enum dns_lookup_type type, dns_lookup_cb cb,
		    void *arg)
{
	static const int qtypes[] = {DNS_T_A, DNS_T_AAAA, DNS_T_MX, DNS_T_TXT};
	struct lookup *l = xcalloc(1, sizeof(*l));
	l->d = d;
	l->id = ++d->next_id;
	l->qtype = qtypes[type];
	l->name = xstrdup(name);
	l->cb = cb;
	l->arg = arg;
	u64map_put(d->lookups, l->id, l);
	if (ub_resolve_async(d->ctx, name, l->qtype, DNS_C_IN, l, on_lookup_answer, &l->async_id) !=
	    0) {
		l->failed = evtimer_new(d->base, lookup_failed_now, l);
		struct timeval now = {0, 0};
		evtimer_add(l->failed, &now);
	}
	return l->id;
}

void dns_lookup_cancel(struct dns *d, uint64_t id)
{
	struct lookup *l = u64map_remove(d->lookups, id);
	if (l != NULL)
		lookup_free(l);
}

void dns_free(struct dns *d)
{
	if (d == NULL)
		return;
	size_t lpos = 0;
	uint64_t lid;
	void *lv;
	while (u64map_next(d->lookups, &lpos, &lid, &lv))
		lookup_free(lv);
	u64map_free(d->lookups);
	size_t n = u64map_count(d->reqs), k = 0, pos = 0;
	struct dns_req **all = xcalloc(n ? n : 1, sizeof(*all));
	uint64_t id;
	void *v;
	while (u64map_next(d->reqs, &pos, &id, &v))
		all[k++] = v;
	for (size_t i = 0; i < k; i++) {
		u64map_remove(d->reqs, all[i]->id);
		cancel_queries(all[i]);
		req_free(all[i]);
	}
	free(all);
	u64map_free(d->reqs);
	if (d->ub_ev != NULL)
		event_free(d->ub_ev);
	if (d->ctx != NULL)
		ub_ctx_delete(d->ctx); /* no callback runs after this */
	while (d->queries != NULL) {
		struct query *q = d->queries;
		d->queries = q->next;
		query_free(q);
	}
	while (d->oldest != NULL)
		cache_unlink(d, d->oldest);
	strmap_free(d->cache);
	free(d);
}
