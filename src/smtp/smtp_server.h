/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * SMTP submission listeners (smtpInterfaces.<name>) and their sessions.  A
 * session parses commands with smtp_parse.c, streams DATA into an ingest
 * (msg/ingest.c) and answers 250 only when the ingest's commit is durable.
 */
#ifndef ZMTA_SMTP_SERVER_H
#define ZMTA_SMTP_SERVER_H

#include <event2/event.h>

#include "core/config.h"
#include "core/workpool.h"
#include "net/http_client.h"
#include "queue/queue.h"

struct smtp_server;

/*
 * Binds the interface, not accepting yet.  `cfg` (holding `iface`) must
 * outlive the server.  NULL and *err (malloc'ed) when it cannot listen.
 */
struct smtp_server *smtp_server_new(struct event_base *base, const struct config *cfg,
				    const struct smtp_iface_config *iface, char **err);
/* Starts accepting; messages go to `q`, AUTH asks over `http` or checks
 * password hashes on `cpu`; all three must outlive the server.  Binding
 * and starting are apart so that the queue can be opened after privileges
 * are dropped.  -1 and *err when the users file cannot be read. */
int smtp_server_start(struct smtp_server *srv, struct queue *q, struct http_client *http,
		      struct workpool *cpu, char **err);

/* SIGHUP: reads the certificates and the users file again.  New sessions
 * get them; open ones keep theirs.  On error the running ones stay. */
int smtp_server_reload(struct smtp_server *srv, char **err);

/*
 * Stops accepting.  Idle sessions get 421 and are closed; a session in the
 * middle of a message may finish it first.  `done(arg)` is called (perhaps
 * at once) when no session is left.
 */
void smtp_server_shutdown(struct smtp_server *srv, void (*done)(void *arg), void *arg);

/* Frees the server, closing whatever sessions remain (their unfinished
 * messages leave nothing behind).  Accepts NULL. */
void smtp_server_free(struct smtp_server *srv);

#endif
