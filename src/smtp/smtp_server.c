/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * SMTP listeners: accepting, the PROXY header, access control (allow and
 * deny lists, client limits), TLS contexts and AUTH backends, shutdown;
 * see smtp_server.h.
 */
#include "smtp/smtp_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/listener.h>

#include "core/hmap.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "net/proxy.h"
#include "net/tls.h"
#include "smtp/smtp_auth.h"
#include "smtp/smtp_session.h"

struct smtp_server {
	struct event_base *base;
	const struct config *cfg;
	const struct smtp_iface_config *iface;
	struct queue *queue;
	struct evconnlistener *listener;
	struct tls_server *tls;    /* NULL: no TLS */
	struct smtp_auth *auth;    /* NULL: no AUTH */
	struct u64map *sessions;   /* id → session */
	struct strmap *per_client; /* client address → open sessions (as a pointer) */
	struct u64map *proxied;    /* waiting for their PROXY header: id → struct proxy_wait */
	uint64_t next_proxy_id;
	void (*shutdown_done)(void *arg);
	void *shutdown_arg;
};

/* A connection whose PROXY header is still coming. */
struct proxy_wait {
	struct smtp_server *srv;
	uint64_t id;
	evutil_socket_t fd;
	char peer[INET6_ADDRSTRLEN];
	struct event *ev;
	unsigned char buf[PROXY_HEADER_MAX];
	size_t len;
};

static uint64_t session_id_seq; /* ids unique across all listeners */

static void check_shutdown_done(struct smtp_server *srv)
{
	if (srv->shutdown_done != NULL && u64map_count(srv->sessions) == 0 &&
	    u64map_count(srv->proxied) == 0) {
		void (*done)(void *) = srv->shutdown_done;
		srv->shutdown_done = NULL;
		done(srv->shutdown_arg);
	}
}

static uintptr_t client_count(const struct smtp_server *srv, const char *client)
{
	return (uintptr_t)strmap_get(srv->per_client, client);
}

static void client_count_add(struct smtp_server *srv, const char *client, int delta)
{
	uintptr_t n = client_count(srv, client) + (uintptr_t)(intptr_t)delta;
	if (n == 0)
		strmap_remove(srv->per_client, client);
	else
		strmap_put(srv->per_client, client, (void *)n);
}

static void on_session_closed(void *arg, uint64_t id)
{
	struct smtp_server *srv = arg;
	struct smtp_session *s = u64map_remove(srv->sessions, id);
	if (s != NULL)
		client_count_add(srv, smtp_session_client(s), -1);
	check_shutdown_done(srv);
}

/* Refuses a connection with one reply (not on implicit TLS, where the
 * client expects a handshake) and closes it. */
static void refuse(struct smtp_server *srv, evutil_socket_t fd, const char *client,
		   const char *code, const char *why)
{
	if (!srv->iface->secure) {
		char msg[400];
		int n = snprintf(msg, sizeof(msg), "%s %s Error: %s\r\n", code,
				 srv->iface->hostname, why);
		/* Best effort on a fresh socket: its buffer has room for this. */
		if (send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_debug("smtp_reject", "error=\"%s\"", strerror(errno));
	}
	evutil_closesocket(fd);
	log_warn("smtp_reject", "interface=%s client=%s reason=\"%s\"", srv->iface->name, client,
		 why);
}

/* The client is known (from the socket or its PROXY header): let it in,
 * or not. */
static void admit(struct smtp_server *srv, evutil_socket_t fd, const char *client)
{
	const struct smtp_iface_config *ic = srv->iface;
	if (cidr_list_match(ic->deny, ic->n_deny, client) ||
	    (ic->n_allow > 0 && !cidr_list_match(ic->allow, ic->n_allow, client))) {
		refuse(srv, fd, client, "554 5.7.1", "access denied");
		return;
	}
	if (u64map_count(srv->sessions) >= (size_t)ic->max_clients) {
		refuse(srv, fd, client, "421 4.7.0", "too many connections");
		return;
	}
	if (client_count(srv, client) >= (uintptr_t)ic->max_clients_per_address) {
		refuse(srv, fd, client, "421 4.7.0", "too many connections from your address");
		return;
	}
	struct smtp_session_env env = {srv->cfg,          ic, srv->queue, &srv->tls, srv->auth,
				       on_session_closed, srv};
	uint64_t id = ++session_id_seq;
	struct smtp_session *s = smtp_session_new(srv->base, fd, client, &env, id);
	u64map_put(srv->sessions, id, s);
	client_count_add(srv, client, +1);
}

static void proxy_wait_free(struct proxy_wait *w, bool close_fd)
{
	u64map_remove(w->srv->proxied, w->id);
	event_free(w->ev);
	if (close_fd)
		evutil_closesocket(w->fd);
	struct smtp_server *srv = w->srv;
	free(w);
	check_shutdown_done(srv);
}

/*
 * Reads the PROXY header and not one byte more: what follows (a TLS
 * ClientHello, say) is the session's.  Bytes are peeked, and taken only as
 * far as they are header: all of them while the header is incomplete (a
 * valid beginning is all header), else exactly its length.
 */
static void on_proxy_readable(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_wait *w = arg;
	struct smtp_server *srv = w->srv;
	if (what & EV_TIMEOUT) {
		log_info("smtp_proxy", "interface=%s peer=%s error=\"no PROXY header in time\"",
			 srv->iface->name, w->peer);
		proxy_wait_free(w, true);
		return;
	}
	unsigned char *at = w->buf + w->len;
	ssize_t n = recv(fd, at, sizeof(w->buf) - w->len, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		proxy_wait_free(w, true);
		return;
	}
	struct proxy_header h;
	const char *why;
	enum proxy_status st = proxy_parse(w->buf, w->len + (size_t)n, &h, &why);
	size_t take = st == PROXY_DONE ? h.length - w->len : (size_t)n;
	if (st != PROXY_INVALID && recv(fd, at, take, 0) != (ssize_t)take)
		st = PROXY_INVALID, why = "short read";
	if (st == PROXY_INVALID) {
		log_info("smtp_proxy", "interface=%s peer=%s error=\"%s\"", srv->iface->name,
			 w->peer, why);
		proxy_wait_free(w, true);
		return;
	}
	w->len += take;
	if (st == PROXY_NEED_MORE)
		return;
	const char *client = h.local ? w->peer : h.client;
	log_debug("smtp_proxy", "interface=%s peer=%s client=%s version=%d", srv->iface->name,
		  w->peer, client, h.version);
	char addr[INET6_ADDRSTRLEN];
	snprintf(addr, sizeof(addr), "%s", client);
	proxy_wait_free(w, false);
	admit(srv, fd, addr);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *peer,
		      int peerlen, void *arg)
{
	(void)l;
	(void)peerlen;
	struct smtp_server *srv = arg;
	const struct smtp_iface_config *ic = srv->iface;
	char addr[INET6_ADDRSTRLEN] = "?";
	if (peer->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)peer)->sin6_addr, addr,
			  sizeof(addr));
	else if (peer->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, addr,
			  sizeof(addr));
	evutil_make_socket_nonblocking(fd);
	int one = 1; /* replies are small writes a client waits for: no Nagle */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!ic->use_proxy) {
		admit(srv, fd, addr);
		return;
	}
	if (ic->n_proxy_from > 0 && !cidr_list_match(ic->proxy_from, ic->n_proxy_from, addr)) {
		log_warn("smtp_proxy", "interface=%s peer=%s error=\"not a trusted proxy\"",
			 ic->name, addr);
		evutil_closesocket(fd);
		return;
	}
	/* Connections still sending their header count toward maxClients. */
	if (u64map_count(srv->sessions) + u64map_count(srv->proxied) >= (size_t)ic->max_clients) {
		log_warn("smtp_reject", "interface=%s peer=%s reason=\"too many connections\"",
			 ic->name, addr);
		evutil_closesocket(fd);
		return;
	}
	struct proxy_wait *w = xcalloc(1, sizeof(*w));
	w->srv = srv;
	w->id = ++srv->next_proxy_id;
	w->fd = fd;
	snprintf(w->peer, sizeof(w->peer), "%s", addr);
	w->ev = event_new(srv->base, fd, EV_READ | EV_PERSIST, on_proxy_readable, w);
	uint64_t ms = ic->socket_timeout_ms < 30000 ? ic->socket_timeout_ms : 30000;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	event_add(w->ev, &tv);
	u64map_put(srv->proxied, w->id, w);
}

struct smtp_server *smtp_server_new(struct event_base *base, const struct config *cfg,
				    const struct smtp_iface_config *iface, char **err)
{
	struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC,
					.ai_socktype = SOCK_STREAM,
					.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICHOST};
	struct evutil_addrinfo *ai = NULL;
	char port[16];
	snprintf(port, sizeof(port), "%d", iface->port);
	int rc = evutil_getaddrinfo(iface->host, port, &hints, &ai);
	if (rc != 0) {
		*err = xasprintf("smtpInterfaces.%s: bad address %s: %s", iface->name, iface->host,
				 evutil_gai_strerror(rc));
		return NULL;
	}
	struct smtp_server *srv = xcalloc(1, sizeof(*srv));
	srv->base = base;
	srv->cfg = cfg;
	srv->iface = iface;
	srv->sessions = u64map_new();
	srv->per_client = strmap_new();
	srv->proxied = u64map_new();
	if ((iface->starttls || iface->secure) &&
	    (srv->tls = tls_server_new(&iface->tls, err)) == NULL) {
		char *more = xasprintf("smtpInterfaces.%s: %s", iface->name, *err);
		free(*err);
		*err = more;
		evutil_freeaddrinfo(ai);
		smtp_server_free(srv);
		return NULL;
	}
	srv->listener = evconnlistener_new_bind(base, on_accept, srv,
						LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
						    LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED,
						511, ai->ai_addr, (int)ai->ai_addrlen);
	evutil_freeaddrinfo(ai);
	if (srv->listener == NULL) {
		*err = xasprintf("cannot listen on %s:%d (smtpInterfaces.%s): %s", iface->host,
				 iface->port, iface->name, strerror(errno));
		smtp_server_free(srv);
		return NULL;
	}
	return srv;
}

int smtp_server_start(struct smtp_server *srv, struct queue *q, struct http_client *http,
		      struct workpool *cpu, char **err)
{
	srv->queue = q;
	if (srv->iface->authentication) {
		srv->auth = smtp_auth_new(srv->iface, http, cpu, err);
		if (srv->auth == NULL)
			return -1;
	}
	evconnlistener_enable(srv->listener);
	return 0;
}

int smtp_server_reload(struct smtp_server *srv, char **err)
{
	if (srv->tls != NULL) {
		struct tls_server *t = tls_server_new(&srv->iface->tls, err);
		if (t == NULL)
			return -1;
		tls_server_unref(srv->tls); /* open sessions' SSLs hold their own */
		srv->tls = t;
	}
	if (srv->auth != NULL && smtp_auth_reload(srv->auth, err) != 0)
		return -1;
	return 0;
}

/* Every waiting PROXY connection is closed. */
static void proxied_close_all(struct smtp_server *srv)
{
	while (u64map_count(srv->proxied) > 0) {
		size_t pos = 0;
		uint64_t id;
		void *v;
		if (u64map_next(srv->proxied, &pos, &id, &v))
			proxy_wait_free(v, true);
	}
}

void smtp_server_shutdown(struct smtp_server *srv, void (*done)(void *arg), void *arg)
{
	if (srv->listener != NULL) {
		evconnlistener_free(srv->listener);
		srv->listener = NULL;
	}
	proxied_close_all(srv);
	srv->shutdown_done = done;
	srv->shutdown_arg = arg;
	/* Collect first: a session may not leave the map while we walk it. */
	size_t n = u64map_count(srv->sessions), pos = 0, i = 0;
	struct smtp_session **list = xcalloc(n ? n : 1, sizeof(*list));
	uint64_t id;
	void *v;
	while (u64map_next(srv->sessions, &pos, &id, &v))
		list[i++] = v;
	for (i = 0; i < n; i++)
		smtp_session_shutdown(list[i]);
	free(list);
	check_shutdown_done(srv);
}

void smtp_server_free(struct smtp_server *srv)
{
	if (srv == NULL)
		return;
	if (srv->listener != NULL)
		evconnlistener_free(srv->listener);
	srv->shutdown_done = NULL;
	proxied_close_all(srv);
	size_t pos = 0;
	uint64_t id;
	void *v;
	while (u64map_count(srv->sessions) > 0) {
		pos = 0;
		if (u64map_next(srv->sessions, &pos, &id, &v))
			smtp_session_free(v); /* removes itself from the map */
	}
	u64map_free(srv->sessions);
	u64map_free(srv->proxied);
	strmap_free(srv->per_client);
	smtp_auth_free(srv->auth);
	tls_server_unref(srv->tls);
	free(srv);
}
