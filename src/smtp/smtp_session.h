/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * One SMTP server session (RFC 5321) over a bufferevent: the connection
 * state machine and the transaction.  Internal to the SMTP server.
 */
#ifndef ZMTA_SMTP_SESSION_H
#define ZMTA_SMTP_SESSION_H

#include <event2/bufferevent.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "net/tls.h"
#include "queue/queue.h"
#include "smtp/smtp_auth.h"

struct smtp_session;

/* What a session needs from its server. */
struct smtp_session_env {
	const struct config *cfg;
	const struct smtp_iface_config *iface;
	struct queue *queue;
	/* The server's TLS contexts, *tls NULL without TLS; read at each
	 * handshake, so one after a reload (SIGHUP) gets the new ones. */
	struct tls_server *const *tls;
	struct smtp_auth *auth; /* NULL: no AUTH */
	/* Called with the session's id when it is closing, just before it is freed. */
	void (*closed)(void *arg, uint64_t id);
	void *arg;
};

/* Starts a session on an accepted socket from `client` (an IP address,
 * the PROXY header's when there is one): the TLS handshake on an implicit
 * TLS listener, the greeting.  The session owns fd from here on. */
struct smtp_session *smtp_session_new(struct event_base *base, evutil_socket_t fd,
				      const char *client, const struct smtp_session_env *env,
				      uint64_t id);
/* The client's address. */
const char *smtp_session_client(const struct smtp_session *s);
/* Asks the session to end: at once with 421 when idle, else after the
 * message in progress. */
void smtp_session_shutdown(struct smtp_session *s);
/* Frees the session at once, without a word to the client. */
void smtp_session_free(struct smtp_session *s);

#endif
