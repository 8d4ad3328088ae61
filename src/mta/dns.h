/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Asynchronous DNS for delivery, on the event loop (libunbound's fd is
 * watched by libevent; nothing blocks).  Resolves where mail for a domain
 * goes: MX records sorted by preference (random order within one
 * preference), each host with its addresses; no MX → the domain itself as
 * an implicit MX (RFC 5321 5.1); a null MX (RFC 7505) or NXDOMAIN is
 * permanent; SERVFAIL, timeouts and network errors are temporary.  Answers
 * are cached for their TTL.  Also single uncached lookups of one record
 * type (dns_lookup), for plugins.
 */
#ifndef ZMTA_DNS_H
#define ZMTA_DNS_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dns_status {
	DNS_OK,
	DNS_RETRY,    /* temporary: SERVFAIL, timeout, network; try later */
	DNS_NOTFOUND, /* permanent: NXDOMAIN, or no MX and no address at all */
	DNS_NULLMX,   /* permanent: the domain accepts no mail (RFC 7505) */
};

struct dns_host {
	char *name; /* the MX host name (the domain itself when implicit) */
	int preference;
	char **addrs;  /* IPv4/IPv6 literals, in the order to try */
	size_t naddrs; /* may be 0: this host had no usable address */
};

struct dns_mx_result {
	enum dns_status status;
	const char *error;            /* for RETRY/NOTFOUND/NULLMX: what happened, for logs */
	const struct dns_host *hosts; /* DNS_OK: in the order to try */
	size_t nhosts;
	bool implicit; /* no MX records: the domain's own addresses */
};

struct dns_config {
	/* Servers to forward to ("127.0.0.1@5353", "192.0.2.1"); none: the
	 * system's resolv.conf.  When servers are given, they also answer the
	 * special-use names unbound would otherwise answer itself (test.,
	 * invalid., ...: RFC 6761), so a private resolver can serve them. */
	char **nameservers;
	size_t n_nameservers;
	bool ipv6;        /* also look up AAAA records */
	bool prefer_ipv6; /* IPv6 addresses before IPv4 for each host */
};

struct dns;

/* NULL and *err (malloc'ed) when unbound cannot be set up. */
struct dns *dns_new(struct event_base *base, const struct dns_config *cfg, char **err);
/* Cancels every pending lookup (their callbacks never run) and frees. */
void dns_free(struct dns *d);

/* The result is borrowed for the duration of the callback. */
typedef void (*dns_mx_cb)(void *arg, const struct dns_mx_result *res);

/*
 * Resolves where mail for `domain` goes; cb runs later on the loop (never
 * from inside this call), unless cancelled.  Returns a request id (never 0).
 */
uint64_t dns_resolve_mx(struct dns *d, const char *domain, dns_mx_cb cb, void *arg);
/* Drops a pending request; unknown ids are ignored. */
void dns_cancel(struct dns *d, uint64_t req);

/* One record type of one name, uncached (plugins: zmta.dns.lookup). */
enum dns_lookup_type {
	DNS_LOOKUP_A,
	DNS_LOOKUP_AAAA,
	DNS_LOOKUP_MX,
	DNS_LOOKUP_TXT
};
/* Parses "A", "AAAA", "MX", "TXT" (any case); -1 otherwise. */
int dns_lookup_type_parse(const char *name, enum dns_lookup_type *out);
/*
 * records: A/AAAA the addresses, MX "preference host", TXT each record's
 * strings joined; status DNS_OK (records may be none: no such data),
 * DNS_NOTFOUND (NXDOMAIN) or DNS_RETRY with error.  Borrowed for the call.
 */
typedef void (*dns_lookup_cb)(void *arg, enum dns_status status, const char *const *records,
			      size_t n, const char *error);
/* cb runs later on the loop unless cancelled (dns_lookup_cancel);
 * returns the lookup's id (never 0). */
uint64_t dns_lookup(struct dns *d, const char *name, enum dns_lookup_type type, dns_lookup_cb cb,
		    void *arg);
void dns_lookup_cancel(struct dns *d, uint64_t id);

#endif
