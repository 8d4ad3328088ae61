/* SPDX-License-Identifier: EUPL-1.2 */
/* SMTP listeners: accepting, client limits, shutdown; see smtp_server.h. */
#include "smtp/smtp_server.h"

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
#include "smtp/smtp_session.h"

struct smtp_server {
	struct event_base *base;
	const struct config *cfg;
	const struct smtp_iface_config *iface;
	struct queue *queue;
	struct evconnlistener *listener;
	struct u64map *sessions; /* id → session */
	uint64_t next_id;
	void (*shutdown_done)(void *arg);
	void *shutdown_arg;
};

static uint64_t session_id_seq; /* ids unique across all listeners */

static void check_shutdown_done(struct smtp_server *srv)
{
	if (srv->shutdown_done != NULL && u64map_count(srv->sessions) == 0) {
		void (*done)(void *) = srv->shutdown_done;
		srv->shutdown_done = NULL;
		done(srv->shutdown_arg);
	}
}

static void on_session_closed(void *arg, uint64_t id)
{
	struct smtp_server *srv = arg;
	u64map_remove(srv->sessions, id);
	check_shutdown_done(srv);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *peer,
		      int peerlen, void *arg)
{
	(void)l;
	(void)peerlen;
	struct smtp_server *srv = arg;
	if (u64map_count(srv->sessions) >= (size_t)srv->iface->max_clients) {
		char msg[300];
		int n = snprintf(msg, sizeof(msg), "421 4.7.0 %s Error: too many connections\r\n",
				 srv->iface->hostname);
		/* Best effort on a fresh socket: its buffer has room for this. */
		if (send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_debug("smtp_reject", "error=\"%s\"", strerror(errno));
		close(fd);
		log_warn("smtp_reject", "interface=%s reason=\"too many connections\" limit=%d",
			 srv->iface->name, srv->iface->max_clients);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	int one = 1; /* replies are small writes a client waits for: no Nagle */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct smtp_session_env env = {srv->cfg, srv->iface, srv->queue, on_session_closed, srv};
	uint64_t id = ++session_id_seq;
	struct smtp_session *s = smtp_session_new(srv->base, fd, peer, &env, id);
	u64map_put(srv->sessions, id, s);
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

void smtp_server_start(struct smtp_server *srv, struct queue *q)
{
	srv->queue = q;
	evconnlistener_enable(srv->listener);
}

void smtp_server_shutdown(struct smtp_server *srv, void (*done)(void *arg), void *arg)
{
	if (srv->listener != NULL) {
		evconnlistener_free(srv->listener);
		srv->listener = NULL;
	}
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
	size_t pos = 0;
	uint64_t id;
	void *v;
	while (u64map_count(srv->sessions) > 0) {
		pos = 0;
		if (u64map_next(srv->sessions, &pos, &id, &v))
			smtp_session_free(v); /* removes itself from the map */
	}
	u64map_free(srv->sessions);
	free(srv);
}
