/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * SMTP server session: connection states, the command table, the mail
 * transaction and DATA streaming.  Replies carry enhanced status codes
 * (RFC 3463).  Commands pipelined in one packet (RFC 2920) are answered in
 * order; a session waiting for the store or for a hook's answer (WAIT)
 * takes no further command until it is answered.  Each command is
 * {verb, name, check, hook, proceed}: check refuses what the state or the
 * syntax does not allow, the hook point's handlers (src/hook/) may refuse
 * or delay it, proceed carries it out.  A session is only ever freed from a libevent callback of its
 * own (close_ev or the bufferevent's event callback), never while one of
 * its functions is still running.
 */
#include "smtp/smtp_session.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>

#include "core/stats.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "hook/hook.h"
#include "msg/ingest.h"
#include "queue/suppress.h"
#include "smtp/smtp_parse.h"
#include "version.h"

/* Errors tolerated before the session is closed with 421. */
#define SMTP_MAX_BAD_COMMANDS 10
/* NOOP, RSET, VRFY and HELP that a client may send between two messages
 * before each further one counts as an error (Postfix's
 * smtpd_junk_command_limit): a session cannot be held open with them. */
#define SMTP_JUNK_LIMIT 100
/* Longest HELO/EHLO name taken. */
#define SMTP_HELO_MAX 255
/* Stop reading while this much output waits for a client that does not read. */
#define SMTP_OUTPUT_HIGH (64 * 1024)
/* Bytes of DATA handled per step. */
#define SMTP_DATA_STEP (64 * 1024)
/* Input buffered while a hook answer is pending (pipelined commands);
 * past it reading stops until the answer. */
#define SMTP_WAIT_INPUT_MAX (64 * 1024)

enum smtp_state {
	SMTP_STATE_GREETED, /* banner sent, waiting for HELO/EHLO */
	SMTP_STATE_READY,   /* HELO/EHLO done, no transaction */
	SMTP_STATE_MAIL,    /* MAIL accepted */
	SMTP_STATE_RCPT,    /* at least one RCPT accepted */
	SMTP_STATE_DATA,    /* reading the message */
	SMTP_STATE_COMMIT,  /* message read, waiting for the store */
	SMTP_STATE_WAIT,    /* a command waits for its hook's (or AUTH's) answer */
	SMTP_STATE_AUTH,    /* AUTH: waiting for the client's next response line */
	SMTP_STATE_TLS,     /* STARTTLS answered: upgrade once the reply is out */
	SMTP_STATE_CLOSING, /* last reply sent or being sent, then close */
};

struct smtp_command_def;

struct smtp_session {
	uint64_t id;
	struct smtp_session_env env;
	struct bufferevent *bev;
	evutil_socket_t fd;
	struct event *close_ev;
	struct event *tls_ev;        /* STARTTLS: the upgrade, after the 220 is out */
	struct event *session_timer; /* maxSessionTime */
	struct event *data_timer;    /* maxDataTime */
	char addr[INET6_ADDRSTRLEN];
	bool tls;           /* this connection is encrypted */
	char tls_info[128]; /* "TLSv1.3 with cipher ...", once negotiated */
	char *user;         /* authenticated user */

	/* AUTH in progress: the mechanism, LOGIN's user name, the check */
	const char *auth_method;
	char *auth_login_user;
	char *auth_hook_user, *auth_hook_password; /* while smtp:auth runs */
	uint64_t auth_id;
	bool auth_sync;
	enum smtp_state state;
	char *helo;
	bool esmtp;
	int bad_commands;
	int junk_commands;       /* since the last message accepted */
	bool skipping_long_line; /* discarding an over-long command line */
	bool shutdown_requested;
	unsigned messages;

	/* the command being carried out: its line stays here while it waits */
	char line[SMTP_LINE_MAX + 2];
	struct smtp_command cmd;
	/* a hook run: its point's context, the command (NULL for smtp:connect)
	 * and the state to go back to */
	struct hook_ctx hook_ctx;
	uint64_t hook_id;
	bool hook_sync; /* inside hook_run(): an answer now is synchronous */
	const struct smtp_command_def *hooked;
	enum smtp_state wait_return;
	/* what check() parsed for proceed() */
	struct smtp_mail pending_mail;
	struct smtp_path pending_rcpt;
	struct smtp_rcpt_dsn pending_dsn;
	struct ingest_dsn_rcpt *rcpt_dsn; /* per recipient, as rcpts */
	size_t rcpt_dsn_cap;
	bool any_rcpt_dsn;

	/* the transaction; RSET and each finished message clear it */
	struct smtp_mail mail;
	char **rcpts;
	size_t nrcpts, rcpts_cap;
	struct smtp_data data;
	struct ingest *ingest;
	bool too_big;
	bool header_too_big;
	char *scratch; /* DATA output buffer, SMTP_DATA_STEP bytes */
};

static void process_input(struct smtp_session *s);

static const char *smtp_strstate(enum smtp_state st)
{
	switch (st) {
	case SMTP_STATE_GREETED:
		return "greeted";
	case SMTP_STATE_READY:
		return "ready";
	case SMTP_STATE_MAIL:
		return "mail";
	case SMTP_STATE_RCPT:
		return "rcpt";
	case SMTP_STATE_DATA:
		return "data";
	case SMTP_STATE_COMMIT:
		return "commit";
	case SMTP_STATE_WAIT:
		return "wait";
	case SMTP_STATE_AUTH:
		return "auth";
	case SMTP_STATE_TLS:
		return "tls";
	case SMTP_STATE_CLOSING:
		return "closing";
	}
	return "?";
}

static void enter_state(struct smtp_session *s, enum smtp_state st)
{
	log_debug("smtp_state", "session=%llu from=%s to=%s", (unsigned long long)s->id,
		  smtp_strstate(s->state), smtp_strstate(st));
	s->state = st;
}

static void reply(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void reply(struct smtp_session *s, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

static const char *hostname(const struct smtp_session *s)
{
	return s->env.iface->hostname;
}

/* Ends the session once the pending replies are written. */
static void close_after_flush(struct smtp_session *s)
{
	enter_state(s, SMTP_STATE_CLOSING);
	bufferevent_disable(s->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		event_active(s->close_ev, EV_WRITE, 0);
}

/* Counts a rejected command; too many end the session.  Returns true when
 * the session is closing. */
static bool bad_command(struct smtp_session *s)
{
	if (++s->bad_commands < SMTP_MAX_BAD_COMMANDS)
		return false;
	reply(s, "421 4.7.0 %s Error: too many errors", hostname(s));
	log_info("smtp_abort", "session=%llu client=%s reason=\"too many errors\"",
		 (unsigned long long)s->id, s->addr);
	close_after_flush(s);
	return true;
}

/* A command that moves no mail on; past SMTP_JUNK_LIMIT each is an error. */
static void junk_command(struct smtp_session *s)
{
	if (++s->junk_commands > SMTP_JUNK_LIMIT)
		bad_command(s);
}

static void txn_clear(struct smtp_session *s)
{
	for (size_t i = 0; i < s->nrcpts; i++) {
		free(s->rcpts[i]);
		free((char *)s->rcpt_dsn[i].notify);
		free((char *)s->rcpt_dsn[i].orcpt);
	}
	s->nrcpts = 0;
	s->any_rcpt_dsn = false;
	memset(&s->mail, 0, sizeof(s->mail));
	ingest_free(s->ingest);
	s->ingest = NULL;
	s->too_big = false;
	s->header_too_big = false;
}

/* --- commands --- */

static bool check_helo(struct smtp_session *s, const struct smtp_command *cmd)
{
	bool ehlo = cmd->verb == SMTP_VERB_EHLO;
	if (cmd->arg[0] == '\0') {
		reply(s, "501 5.5.4 Syntax: %s hostname", ehlo ? "EHLO" : "HELO");
		bad_command(s);
		return false;
	}
	/* A domain is at most 255 octets (RFC 1035 2.3.4), an address literal
	 * less: longer would only bloat our Received: header past 998. */
	if (strlen(cmd->arg) > SMTP_HELO_MAX) {
		reply(s, "501 5.5.4 Error: %s name longer than %d characters",
		      ehlo ? "EHLO" : "HELO", SMTP_HELO_MAX);
		bad_command(s);
		return false;
	}
	return true;
}

/* AUTH is offered on a listener with authentication, over TLS (or
 * anyway with allowInsecureAuth), until a client has authenticated. */
static bool auth_offered(const struct smtp_session *s)
{
	const struct smtp_iface_config *ic = s->env.iface;
	return s->env.auth != NULL && s->user == NULL &&
	       (s->tls || (ic->allow_insecure_auth && !ic->require_tls));
}

static void cmd_helo(struct smtp_session *s, const struct smtp_command *cmd)
{
	bool ehlo = cmd->verb == SMTP_VERB_EHLO;
	/* RFC 5321 4.1.4: HELO/EHLO resets any transaction. */
	txn_clear(s);
	free(s->helo);
	s->helo = xstrdup(cmd->arg);
	s->esmtp = ehlo;
	enter_state(s, SMTP_STATE_READY);
	if (!ehlo) {
		reply(s, "250 %s", hostname(s));
		return;
	}
	reply(s, "250-%s Hello %s [%s]", hostname(s), s->helo, s->addr);
	reply(s, "250-PIPELINING");
	reply(s, "250-SIZE %llu", (unsigned long long)s->env.iface->max_size);
	reply(s, "250-8BITMIME");
	reply(s, "250-SMTPUTF8");
	reply(s, "250-DSN");
	if (s->env.iface->starttls && !s->tls && *s->env.tls != NULL)
		reply(s, "250-STARTTLS");
	if (auth_offered(s))
		reply(s, "250-AUTH PLAIN LOGIN");
	reply(s, "250 ENHANCEDSTATUSCODES");
}

static bool check_mail(struct smtp_session *s, const struct smtp_command *cmd)
{
	if (s->state == SMTP_STATE_GREETED) {
		reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		bad_command(s);
		return false;
	}
	if (s->state != SMTP_STATE_READY) {
		reply(s, "503 5.5.1 Error: nested MAIL command");
		bad_command(s);
		return false;
	}
	if (s->env.iface->require_tls && !s->tls) {
		reply(s, "530 5.7.0 Must issue a STARTTLS command first");
		bad_command(s);
		return false;
	}
	if (s->env.iface->authentication && s->user == NULL) {
		reply(s, "530 5.7.0 Authentication required");
		bad_command(s);
		return false;
	}
	const char *err;
	struct smtp_mail *mail = &s->pending_mail;
	if (smtp_mail_parse(cmd->arg, mail, &err) != 0) {
		reply(s, "%s", err);
		bad_command(s);
		return false;
	}
	if (!s->esmtp &&
	    (mail->size >= 0 || mail->body != SMTP_BODY_UNSPECIFIED || mail->smtputf8)) {
		reply(s, "555 5.5.4 Error: parameters need EHLO");
		bad_command(s);
		return false;
	}
	if (mail->size >= 0 && (uint64_t)mail->size > s->env.iface->max_size) {
		reply(s, "552 5.3.4 Error: message size exceeds fixed limit of %llu bytes",
		      (unsigned long long)s->env.iface->max_size);
		return false;
	}
	s->hook_ctx.address = mail->path.addr;
	return true;
}

static void cmd_mail(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	s->mail = s->pending_mail;
	enter_state(s, SMTP_STATE_MAIL);
	reply(s, "250 2.1.0 Ok");
}

static bool check_rcpt(struct smtp_session *s, const struct smtp_command *cmd)
{
	if (s->state != SMTP_STATE_MAIL && s->state != SMTP_STATE_RCPT) {
		reply(s, "503 5.5.1 Error: need MAIL command");
		bad_command(s);
		return false;
	}
	const char *err;
	if (smtp_rcpt_parse(cmd->arg, s->mail.smtputf8, &s->pending_rcpt, &s->pending_dsn, &err) !=
	    0) {
		reply(s, "%s", err);
		bad_command(s);
		return false;
	}
	if (s->nrcpts >= (size_t)s->env.iface->max_recipients) {
		reply(s, "452 4.5.3 Error: too many recipients");
		return false;
	}
	const struct suppression *sup = s->env.cfg->suppress_at_intake
					    ? suppressions_match(queue_suppressions(s->env.queue),
								 s->pending_rcpt.addr)
					    : NULL;
	if (sup != NULL) {
		log_msg(LOG_LEVEL_INFO, NULL, "rcpt_refused",
			"session=%llu rcpt=<%s> reason=suppressed suppression=%s",
			(unsigned long long)s->id, s->pending_rcpt.addr, sup->id);
		reply(s, "550 5.7.1 <%s>: Recipient is on the suppression list",
		      s->pending_rcpt.addr);
		return false;
	}
	s->hook_ctx.address = s->pending_rcpt.addr;
	return true;
}

/* NOTIFY and ORCPT of a RCPT as the message keeps them (RFC 3461). */
static struct ingest_dsn_rcpt rcpt_dsn_take(const struct smtp_rcpt_dsn *d)
{
	struct ingest_dsn_rcpt r = {NULL, NULL};
	if (d->notify & SMTP_NOTIFY_NEVER) {
		r.notify = xstrdup("NEVER");
	} else if (d->notify != 0) {
		char buf[32] = "";
		if (d->notify & SMTP_NOTIFY_SUCCESS)
			strcat(buf, ",SUCCESS");
		if (d->notify & SMTP_NOTIFY_FAILURE)
			strcat(buf, ",FAILURE");
		if (d->notify & SMTP_NOTIFY_DELAY)
			strcat(buf, ",DELAY");
		r.notify = xstrdup(buf + 1);
	}
	if (d->orcpt[0] != '\0')
		r.orcpt = xstrdup(d->orcpt);
	return r;
}

static void cmd_rcpt(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	s->rcpts = xreallocarray_grow(s->rcpts, &s->rcpts_cap, s->nrcpts + 1, sizeof(char *));
	s->rcpt_dsn = xreallocarray_grow(s->rcpt_dsn, &s->rcpt_dsn_cap, s->nrcpts + 1,
					 sizeof(*s->rcpt_dsn));
	s->rcpt_dsn[s->nrcpts] = rcpt_dsn_take(&s->pending_dsn);
	s->any_rcpt_dsn |= s->rcpt_dsn[s->nrcpts].notify || s->rcpt_dsn[s->nrcpts].orcpt;
	s->rcpts[s->nrcpts++] = xstrdup(s->pending_rcpt.addr);
	enter_state(s, SMTP_STATE_RCPT);
	reply(s, "250 2.1.5 Ok");
}

static void on_ingest_drain(void *arg)
{
	struct smtp_session *s = arg;
	if (s->state == SMTP_STATE_DATA) {
		bufferevent_enable(s->bev, EV_READ);
		process_input(s);
	}
}

static void arm_timer(struct event *ev, uint64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(ev, &tv);
}

static bool check_data(struct smtp_session *s, const struct smtp_command *cmd)
{
	if (cmd->arg[0] != '\0') {
		reply(s, "501 5.5.4 Syntax: DATA");
		bad_command(s);
		return false;
	}
	if (s->state != SMTP_STATE_RCPT) {
		reply(s, "503 5.5.1 Error: need %s command",
		      s->state == SMTP_STATE_MAIL ? "RCPT" : "MAIL");
		bad_command(s);
		return false;
	}
	return true;
}

static void cmd_data(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	s->ingest = ingest_new(s->env.queue, s->env.cfg, on_ingest_drain, s);
	smtp_data_init(&s->data);
	arm_timer(s->data_timer, s->env.iface->max_data_ms);
	enter_state(s, SMTP_STATE_DATA);
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void cmd_rset(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	txn_clear(s);
	if (s->state != SMTP_STATE_GREETED)
		enter_state(s, SMTP_STATE_READY);
	reply(s, "250 2.0.0 Ok");
	junk_command(s);
}

static void cmd_noop(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	reply(s, "250 2.0.0 Ok");
	junk_command(s);
}

static void cmd_quit(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	reply(s, "221 2.0.0 Bye");
	close_after_flush(s);
}

static void cmd_vrfy(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	/* RFC 5321 3.5.3: a relay cannot verify, but says it will try. */
	reply(s, "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
	junk_command(s);
}

static void cmd_help(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP");
	junk_command(s);
}

static void cmd_not_implemented(struct smtp_session *s, const struct smtp_command *cmd)
{
	reply(s, "502 5.5.1 Error: %s not implemented", cmd->name);
	bad_command(s);
}

/* --- STARTTLS (RFC 3207) --- */

static bool check_starttls(struct smtp_session *s, const struct smtp_command *cmd)
{
	if (!s->env.iface->starttls || *s->env.tls == NULL) {
		reply(s, "502 5.5.1 Error: STARTTLS not offered");
		bad_command(s);
		return false;
	}
	if (s->tls) {
		reply(s, "554 5.5.1 Error: TLS already active");
		bad_command(s);
		return false;
	}
	if (cmd->arg[0] != '\0') {
		reply(s, "501 5.5.4 Syntax: STARTTLS");
		bad_command(s);
		return false;
	}
	return true;
}

static void cmd_starttls(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	reply(s, "220 2.0.0 Ready to start TLS");
	/* Nothing more is read in the clear: the upgrade (on_tls_upgrade)
	 * follows once the 220 is written. */
	enter_state(s, SMTP_STATE_TLS);
	bufferevent_disable(s->bev, EV_READ);
}

static void bev_setup(struct smtp_session *s);

/* The handshake starts on the same socket; whatever the client sent after
 * STARTTLS in the clear is dropped, never read as commands of the TLS
 * session (the CVE-2011-0411 class of injection). */
static void on_tls_upgrade(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_session *s = arg;
	size_t dropped = evbuffer_get_length(bufferevent_get_input(s->bev));
	if (dropped > 0)
		log_info("smtp_tls_pipelined", "session=%llu client=%s dropped_bytes=%zu",
			 (unsigned long long)s->id, s->addr, dropped);
	bufferevent_free(s->bev);
	s->bev = bufferevent_openssl_socket_new(event_get_base(s->close_ev), s->fd,
						tls_server_ssl(*s->env.tls),
						BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	s->tls = true;
	bev_setup(s);
	/* RFC 3207 4.2: everything said before is forgotten. */
	txn_clear(s);
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
	enter_state(s, SMTP_STATE_GREETED);
}

/* --- AUTH (RFC 4954) --- */

static bool check_auth(struct smtp_session *s, const struct smtp_command *cmd)
{
	const struct smtp_iface_config *ic = s->env.iface;
	if (s->env.auth == NULL) {
		reply(s, "502 5.5.1 Error: authentication not enabled");
		bad_command(s);
		return false;
	}
	if (ic->require_tls && !s->tls) {
		reply(s, "530 5.7.0 Must issue a STARTTLS command first");
		bad_command(s);
		return false;
	}
	if (!s->tls && !ic->allow_insecure_auth) {
		reply(s, "538 5.7.11 Encryption required for requested authentication mechanism");
		bad_command(s);
		return false;
	}
	if (s->state == SMTP_STATE_GREETED) {
		reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		bad_command(s);
		return false;
	}
	if (s->user != NULL) {
		reply(s, "503 5.5.1 Error: already authenticated");
		bad_command(s);
		return false;
	}
	if (s->state != SMTP_STATE_READY) {
		reply(s, "503 5.5.1 Error: AUTH not permitted during a mail transaction");
		bad_command(s);
		return false;
	}
	if (smtp_auth_blocked(s->env.auth, s->addr)) {
		reply(s, "421 4.7.0 %s Error: too many failed authentications, try again later",
		      hostname(s));
		close_after_flush(s);
		return false;
	}
	(void)cmd;
	return true;
}

static void auth_verify(struct smtp_session *s, const char *user, const char *password);
static void auth_response(struct smtp_session *s, const char *line);

static void wipe(char **secret)
{
	free_secret(*secret);
	*secret = NULL;
}

static void auth_end(struct smtp_session *s)
{
	wipe(&s->auth_login_user);
	wipe(&s->auth_hook_user);
	wipe(&s->auth_hook_password);
	if (s->state == SMTP_STATE_AUTH || s->state == SMTP_STATE_WAIT)
		enter_state(s, SMTP_STATE_READY);
}

static void cmd_auth(struct smtp_session *s, const struct smtp_command *cmd)
{
	char mech[32];
	const char *arg = cmd->arg;
	size_t n = strcspn(arg, " ");
	snprintf(mech, sizeof(mech), "%.*s", (int)(n < sizeof(mech) ? n : sizeof(mech) - 1), arg);
	const char *initial = arg[n] == ' ' ? arg + n + 1 : NULL;
	if (strcasecmp(mech, "PLAIN") == 0) {
		s->auth_method = "PLAIN";
	} else if (strcasecmp(mech, "LOGIN") == 0) {
		s->auth_method = "LOGIN";
	} else {
		reply(s, "504 5.5.4 Error: unrecognized authentication type");
		bad_command(s);
		return;
	}
	if (initial == NULL) {
		/* "334 " asks for PLAIN's message; LOGIN's "Username:". */
		reply(s, "334 %s", s->auth_method[0] == 'P' ? "" : "VXNlcm5hbWU6");
		enter_state(s, SMTP_STATE_AUTH);
		return;
	}
	enter_state(s, SMTP_STATE_AUTH);
	auth_response(s, initial);
}

/* One response line of the SASL exchange. */
static void auth_response(struct smtp_session *s, const char *line)
{
	if (strcmp(line, "*") == 0) {
		reply(s, "501 5.7.0 Authentication aborted");
		auth_end(s);
		return;
	}
	if (strcmp(s->auth_method, "PLAIN") == 0) {
		char *user, *password;
		/* "=" is an empty initial response (RFC 4954 4). */
		if (smtp_auth_plain_decode(strcmp(line, "=") == 0 ? "" : line, &user, &password) !=
		    0) {
			reply(s, "501 5.5.2 Error: cannot decode the PLAIN response");
			auth_end(s);
			bad_command(s);
			return;
		}
		auth_verify(s, user, password);
		free(user);
		free_secret(password);
		return;
	}
	size_t len;
	char *text = smtp_auth_b64_decode(line, &len);
	if (text == NULL || strlen(text) != len) {
		if (text != NULL)
			explicit_bzero(text, len);
		free(text);
		reply(s, "501 5.5.2 Error: cannot decode the LOGIN response");
		auth_end(s);
		bad_command(s);
		return;
	}
	if (s->auth_login_user == NULL) {
		s->auth_login_user = text;
		reply(s, "334 UGFzc3dvcmQ6"); /* "Password:" */
		return;
	}
	auth_verify(s, s->auth_login_user, text);
	explicit_bzero(text, len);
	free(text);
}

static void auth_result(void *arg, enum smtp_auth_result result, const char *user, bool cached)
{
	struct smtp_session *s = arg;
	bool async = !s->auth_sync;
	s->auth_id = 0;
	const char *name = result == SMTP_AUTH_OK       ? "ok"
			   : result == SMTP_AUTH_FAILED ? "failed"
							: "tempfail";
	log_info("smtp_auth",
		 "session=%llu interface=%s client=%s mechanism=%s user=\"%s\" result=%s%s",
		 (unsigned long long)s->id, s->env.iface->name, s->addr, s->auth_method, user, name,
		 cached ? " cached=yes" : "");
	auth_end(s);
	if (result == SMTP_AUTH_OK) {
		free(s->user);
		s->user = xstrdup(user);
		reply(s, "235 2.7.0 Authentication successful");
	} else if (result == SMTP_AUTH_FAILED) {
		if (smtp_auth_failed(s->env.auth, s->addr)) {
			log_warn("smtp_auth_blocked", "interface=%s client=%s failures=%d",
				 s->env.iface->name, s->addr, s->env.iface->auth_max_failures);
			reply(s,
			      "421 4.7.0 %s Error: too many failed authentications, "
			      "try again later",
			      hostname(s));
			close_after_flush(s);
			return;
		}
		reply(s, "535 5.7.8 Error: authentication failed");
	} else {
		reply(s, "454 4.7.0 Temporary authentication failure, try again later");
	}
	if (async && s->state != SMTP_STATE_CLOSING) {
		bufferevent_setwatermark(s->bev, EV_READ, 0, 0);
		bufferevent_enable(s->bev, EV_READ);
		process_input(s);
	}
}

/* The listener's backend (authUrl or authUsersFile) checks.  An answer
 * given inside auth_verify (s->auth_sync) is synchronous: input is read
 * on by the command loop, not by auth_result. */
static void auth_backend(struct smtp_session *s, const char *user, const char *password)
{
	uint64_t id = smtp_auth_check(s->env.auth, user, password, s->auth_method, s->addr,
				      auth_result, s);
	if (id == 0)
		return; /* answered already */
	s->auth_id = id;
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTP_WAIT_INPUT_MAX);
}

/* smtp:auth decided, or had no opinion (CONTINUE): then the backend. */
static void on_auth_hook_done(void *arg, const struct hook_result *res)
{
	struct smtp_session *s = arg;
	s->hook_id = 0;
	if (res->verdict == HOOK_CONTINUE) {
		char *user = s->auth_hook_user, *password = s->auth_hook_password;
		s->auth_hook_user = s->auth_hook_password = NULL;
		auth_backend(s, user, password);
		wipe(&user);
		wipe(&password);
		return;
	}
	char *user = xstrdup(s->auth_hook_user);
	auth_result(s,
		    res->verdict == HOOK_ACCEPT   ? SMTP_AUTH_OK
		    : res->verdict == HOOK_REJECT ? SMTP_AUTH_FAILED
						  : SMTP_AUTH_TEMPFAIL,
		    user, false);
	free(user);
}

/* Plugins first (smtp:auth), then the listener's backend. */
static void auth_verify(struct smtp_session *s, const char *user, const char *password)
{
	enter_state(s, SMTP_STATE_WAIT);
	if (!hook_active(HOOK_SMTP_AUTH)) {
		s->auth_sync = true;
		auth_backend(s, user, password);
		s->auth_sync = false;
		return;
	}
	s->auth_hook_user = xstrdup(user);
	s->auth_hook_password = xstrdup(password);
	struct hook_ctx *ctx = &s->hook_ctx;
	memset(ctx, 0, sizeof(*ctx));
	ctx->session = s->id;
	ctx->interface = s->env.iface->name;
	ctx->client = s->addr;
	ctx->helo = s->helo;
	ctx->user = s->auth_hook_user;
	ctx->password = s->auth_hook_password;
	ctx->mechanism = s->auth_method;
	s->auth_sync = true;
	uint64_t id = hook_run(HOOK_SMTP_AUTH, ctx, on_auth_hook_done, s);
	s->auth_sync = false;
	if (id == 0)
		return; /* answered already */
	s->hook_id = id;
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTP_WAIT_INPUT_MAX);
}

struct smtp_command_def {
	enum smtp_verb verb;
	const char *name;
	/* refuses (replying) what this state or the syntax does not allow;
	 * NULL when anything goes */
	bool (*check)(struct smtp_session *s, const struct smtp_command *cmd);
	enum hook_point hook; /* HOOK_NONE: no hook point */
	void (*proceed)(struct smtp_session *s, const struct smtp_command *cmd);
	/* the replies when the hook refuses: REJECT, TEMPFAIL */
	const char *rejected, *deferred;
};

static const struct smtp_command_def commands[] = {
    {SMTP_VERB_HELO, "HELO", check_helo, HOOK_SMTP_HELO, cmd_helo, "550 5.7.1 Error: HELO rejected",
     "451 4.7.1 Error: HELO deferred, try again later"},
    {SMTP_VERB_EHLO, "EHLO", check_helo, HOOK_SMTP_HELO, cmd_helo, "550 5.7.1 Error: EHLO rejected",
     "451 4.7.1 Error: EHLO deferred, try again later"},
    {SMTP_VERB_MAIL, "MAIL", check_mail, HOOK_SMTP_MAIL_FROM, cmd_mail,
     "550 5.7.1 Error: sender rejected", "451 4.7.1 Error: sender deferred, try again later"},
    {SMTP_VERB_RCPT, "RCPT", check_rcpt, HOOK_SMTP_RCPT_TO, cmd_rcpt,
     "550 5.7.1 Error: recipient rejected", "451 4.7.1 Error: recipient deferred, try again later"},
    {SMTP_VERB_DATA, "DATA", check_data, HOOK_SMTP_DATA, cmd_data,
     "554 5.7.1 Error: message rejected", "451 4.7.1 Error: message deferred, try again later"},
    {SMTP_VERB_RSET, "RSET", NULL, HOOK_NONE, cmd_rset, NULL, NULL},
    {SMTP_VERB_NOOP, "NOOP", NULL, HOOK_NONE, cmd_noop, NULL, NULL},
    {SMTP_VERB_QUIT, "QUIT", NULL, HOOK_NONE, cmd_quit, NULL, NULL},
    {SMTP_VERB_VRFY, "VRFY", NULL, HOOK_NONE, cmd_vrfy, NULL, NULL},
    {SMTP_VERB_HELP, "HELP", NULL, HOOK_NONE, cmd_help, NULL, NULL},
    {SMTP_VERB_EXPN, "EXPN", NULL, HOOK_NONE, cmd_not_implemented, NULL, NULL},
    {SMTP_VERB_STARTTLS, "STARTTLS", check_starttls, HOOK_NONE, cmd_starttls, NULL, NULL},
    {SMTP_VERB_AUTH, "AUTH", check_auth, HOOK_NONE, cmd_auth, NULL, NULL},
    {SMTP_VERB_BDAT, "BDAT", NULL, HOOK_NONE, cmd_not_implemented, NULL, NULL},
};

/* The greeting is the proceed step of smtp:connect. */
static void send_greeting(struct smtp_session *s)
{
	const struct smtp_iface_config *ic = s->env.iface;
	if (ic->banner != NULL)
		reply(s, "220 %s %s", ic->hostname, ic->banner);
	else if (ic->disable_version_string)
		reply(s, "220 %s ESMTP zone-mta", ic->hostname);
	else
		reply(s, "220 %s ESMTP zone-mta %s", ic->hostname, ZMTA_VERSION);
}

/* A refusal's reply: the handler's (the bus checked it), else `fallback`. */
static const char *refusal_reply(const struct hook_result *res, const char *fallback)
{
	return res->reply != NULL ? res->reply : fallback;
}

static void on_hook_done(void *arg, const struct hook_result *res)
{
	struct smtp_session *s = arg;
	const struct smtp_command_def *def = s->hooked;
	bool async = !s->hook_sync;
	if (async) {
		s->hook_id = 0;
		bufferevent_setwatermark(s->bev, EV_READ, 0, 0);
		enter_state(s, s->wait_return);
	}
	bool refused = res->verdict == HOOK_REJECT || res->verdict == HOOK_TEMPFAIL;
	if (def == NULL) {
		/* smtp:connect */
		if (refused) {
			reply(s, "%s",
			      refusal_reply(res, res->verdict == HOOK_REJECT
						     ? "554 5.7.1 Error: connection refused"
						     : "421 4.7.1 Error: try again later"));
			log_info("smtp_refused",
				 "session=%llu client=%s hook=smtp:connect "
				 "handler=%s",
				 (unsigned long long)s->id, s->addr, res->handler);
			close_after_flush(s);
			return;
		}
		send_greeting(s);
	} else if (refused) {
		const char *text = refusal_reply(res, res->verdict == HOOK_REJECT ? def->rejected
										  : def->deferred);
		log_info("smtp_refused",
			 "session=%llu client=%s command=%s hook=%s handler=%s "
			 "reply=\"%s\"",
			 (unsigned long long)s->id, s->addr, def->name, hook_point_name(def->hook),
			 res->handler, text);
		reply(s, "%s", text);
	} else {
		def->proceed(s, &s->cmd);
	}
	if (async && s->state != SMTP_STATE_CLOSING) {
		if (s->shutdown_requested && s->state != SMTP_STATE_DATA) {
			reply(s, "421 4.3.2 %s Service shutting down", hostname(s));
			close_after_flush(s);
			return;
		}
		bufferevent_enable(s->bev, EV_READ);
		process_input(s);
	}
}

/* Runs `point` for the command `def` (NULL: the connection); the command
 * proceeds or is refused in on_hook_done, now or when the answer comes. */
static void run_hook(struct smtp_session *s, enum hook_point point,
		     const struct smtp_command_def *def)
{
	struct hook_ctx *ctx = &s->hook_ctx;
	ctx->session = s->id;
	ctx->interface = s->env.iface->name;
	ctx->client = s->addr;
	ctx->user = s->user;
	/* smtp:helo sees the name being given; the later points the one taken. */
	bool helo = def != NULL && (def->verb == SMTP_VERB_HELO || def->verb == SMTP_VERB_EHLO);
	ctx->helo = helo ? s->cmd.arg : s->helo;
	bool in_txn = s->state == SMTP_STATE_MAIL || s->state == SMTP_STATE_RCPT;
	ctx->from = in_txn ? s->mail.path.addr : NULL;
	ctx->rcpts = s->rcpts;
	ctx->nrcpts = s->nrcpts;
	s->hooked = def;
	s->hook_sync = true;
	s->wait_return = s->state;
	uint64_t id = hook_run(point, ctx, on_hook_done, s);
	s->hook_sync = false;
	if (id == 0)
		return; /* answered already */
	s->hook_id = id;
	enter_state(s, SMTP_STATE_WAIT);
	/* Pipelined commands wait in the input buffer, within a bound. */
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTP_WAIT_INPUT_MAX);
}

static void run_command(struct smtp_session *s, size_t len)
{
	struct smtp_command *cmd = &s->cmd;
	const char *err;
	if (smtp_command_parse(s->line, len, cmd, &err) != 0) {
		reply(s, "%s", err);
		bad_command(s);
		return;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct smtp_command_def *def = &commands[i];
		if (def->verb != cmd->verb)
			continue;
		memset(&s->hook_ctx, 0, sizeof(s->hook_ctx));
		if (def->check != NULL && !def->check(s, cmd))
			return;
		if (def->hook != HOOK_NONE)
			run_hook(s, def->hook, def);
		else
			def->proceed(s, cmd);
		return;
	}
	reply(s, "500 5.5.2 Error: command not recognized");
	bad_command(s);
}

/* --- DATA --- */

static void message_done(void *arg, int rc, const char *error)
{
	struct smtp_session *s = arg;
	if (rc == 0) {
		s->messages++;
		s->junk_commands = 0;
		stats_message_accepted(s->env.iface->name);
		reply(s, "250 2.0.0 Ok: queued as %s", ingest_id(s->ingest));
	} else if (rc == INGEST_REJECTED || rc == INGEST_DEFERRED) {
		stats_message_rejected(s->env.iface->name);
		const char *text = error != NULL ? error
				   : rc == INGEST_REJECTED
				       ? "554 5.7.1 Error: message rejected"
				       : "451 4.7.1 Error: message deferred, try again later";
		log_info("smtp_refused", "session=%llu client=%s reply=\"%s\"",
			 (unsigned long long)s->id, s->addr, text);
		reply(s, "%s", text);
	} else {
		stats_message_rejected(s->env.iface->name);
		/* RFC 3463: 4.3.1 mail system full; 4.3.0 other system trouble. */
		const char *text = rc == QUEUE_ERR_SPACE
				       ? "452 4.3.1 Error: insufficient system storage"
				       : "451 4.3.0 Error: queue file write error";
		log_info("smtp_refused", "session=%llu client=%s reply=\"%s\" error=\"%s\"",
			 (unsigned long long)s->id, s->addr, text, error ? error : "?");
		reply(s, "%s", text);
	}
	txn_clear(s);
	enter_state(s, SMTP_STATE_READY);
	if (s->shutdown_requested) {
		reply(s, "421 4.3.2 %s Service shutting down", hostname(s));
		close_after_flush(s);
		return;
	}
	bufferevent_enable(s->bev, EV_READ);
	process_input(s);
}

/* The end of DATA: refuse, or finish the ingest and wait for the store. */
static void data_end(struct smtp_session *s)
{
	evtimer_del(s->data_timer);
	const char *refusal = NULL;
	if (s->data.bad_newline)
		refusal = "550 5.6.0 Error: bare CR or LF in message; lines must end with CRLF";
	else if (s->data.bad_nul)
		refusal = "550 5.6.0 Error: NUL byte in message";
	else if (s->too_big)
		refusal = "552 5.3.4 Error: message size exceeds fixed limit";
	else if (s->header_too_big)
		refusal = "552 5.3.4 Error: message header exceeds 1 MiB";
	if (refusal != NULL) {
		stats_message_rejected(s->env.iface->name);
		log_info("smtp_refused", "session=%llu client=%s reply=\"%s\"",
			 (unsigned long long)s->id, s->addr, refusal);
		reply(s, "%s", refusal);
		txn_clear(s);
		enter_state(s, SMTP_STATE_READY);
		return;
	}
	/* RFC 3848: ESMTP, plus S for TLS and A for AUTH. */
	char transtype[16];
	snprintf(transtype, sizeof(transtype), "%s%s%s", s->esmtp ? "ESMTP" : "SMTP",
		 s->esmtp && s->tls ? "S" : "", s->esmtp && s->user ? "A" : "");
	struct ingest_envelope env = {
	    .session = s->id,
	    .interface = s->env.iface->name,
	    .origin = s->addr,
	    .transhost = s->helo,
	    .transtype = transtype,
	    .tls = s->tls_info[0] ? s->tls_info : NULL,
	    .user = s->user,
	    .from = s->mail.path.addr,
	    .rcpts = s->rcpts,
	    .nrcpts = s->nrcpts,
	    .dsn_ret = s->mail.ret == SMTP_RET_FULL   ? "FULL"
		       : s->mail.ret == SMTP_RET_HDRS ? "HDRS"
						      : NULL,
	    .dsn_envid = s->mail.envid[0] ? s->mail.envid : NULL,
	    .dsn_rcpts = s->any_rcpt_dsn ? s->rcpt_dsn : NULL,
	    .allow_routing_headers = s->env.iface->allow_routing_headers,
	    .received_by = hostname(s),
	};
	enter_state(s, SMTP_STATE_COMMIT);
	bufferevent_disable(s->bev, EV_READ);
	ingest_finish(s->ingest, &env, message_done, s);
}

/* Feeds buffered DATA bytes; returns false when the loop must stop for now. */
static bool feed_data(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_iovec vec;
	if (evbuffer_peek(in, SMTP_DATA_STEP, NULL, &vec, 1) < 1 || vec.iov_len == 0)
		return false;
	size_t inlen = vec.iov_len < SMTP_DATA_STEP ? vec.iov_len : SMTP_DATA_STEP;
	size_t outlen, consumed;
	enum smtp_data_status st = smtp_data_feed(&s->data, vec.iov_base, inlen, s->scratch,
						  &outlen, &consumed);
	if (outlen > 0 && !s->too_big && !s->header_too_big) {
		if (ingest_size(s->ingest) + outlen > s->env.iface->max_size) {
			/* Keep reading to the end, storing nothing more. */
			s->too_big = true;
		} else if (ingest_write(s->ingest, s->scratch, outlen) != 0) {
			s->header_too_big = true;
		}
	}
	evbuffer_drain(in, consumed);
	if (st == SMTP_DATA_END) {
		data_end(s);
		return s->state == SMTP_STATE_READY;
	}
	if (!s->too_big && !s->header_too_big && ingest_busy(s->ingest)) {
		/* The store is behind: stop reading until on_ingest_drain. */
		bufferevent_disable(s->bev, EV_READ);
		return false;
	}
	return true;
}

/* --- input --- */

/* Takes one command line; false when no complete line is buffered. */
static bool take_line(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
	if (eol.pos < 0) {
		if (evbuffer_get_length(in) > SMTP_LINE_MAX + 1) {
			/* Drop what we have and the rest of the line when it comes. */
			evbuffer_drain(in, evbuffer_get_length(in));
			s->skipping_long_line = true;
		}
		return false;
	}
	size_t len = (size_t)eol.pos;
	if (s->skipping_long_line || len > SMTP_LINE_MAX + 1) {
		evbuffer_drain(in, len + 1);
		s->skipping_long_line = false;
		reply(s, "500 5.5.2 Error: line too long");
		bad_command(s);
		return true;
	}
	char *line = s->line;
	evbuffer_remove(in, line, len + 1);
	if (len > 0 && line[len - 1] == '\r')
		len--;
	line[len] = '\0';
	if (len > SMTP_LINE_MAX) {
		reply(s, "500 5.5.2 Error: line too long");
		bad_command(s);
		return true;
	}
	if (s->state == SMTP_STATE_AUTH)
		auth_response(s, line);
	else
		run_command(s, len);
	return true;
}

static void process_input(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer *out = bufferevent_get_output(s->bev);
	for (;;) {
		if (s->state == SMTP_STATE_COMMIT || s->state == SMTP_STATE_WAIT ||
		    s->state == SMTP_STATE_CLOSING || s->state == SMTP_STATE_TLS)
			return;
		if (evbuffer_get_length(out) > SMTP_OUTPUT_HIGH) {
			/* The client is not reading its replies: wait (see on_write). */
			bufferevent_disable(s->bev, EV_READ);
			return;
		}
		bool more = s->state == SMTP_STATE_DATA ? feed_data(s, in) : take_line(s, in);
		if (!more)
			return;
	}
}

/* --- libevent callbacks --- */

static void on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	process_input(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	if (s->state == SMTP_STATE_CLOSING || s->state == SMTP_STATE_TLS) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			event_active(s->state == SMTP_STATE_TLS ? s->tls_ev : s->close_ev, EV_WRITE,
				     0);
		return;
	}
	if (s->state != SMTP_STATE_COMMIT && s->state != SMTP_STATE_WAIT &&
	    !(s->state == SMTP_STATE_DATA && ingest_busy(s->ingest))) {
		/* Replies drained: resume reading if output pressure stopped it. */
		bufferevent_enable(bev, EV_READ);
		process_input(s);
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;
	if (what & BEV_EVENT_CONNECTED) {
		/* The TLS handshake is done. */
		SSL *ssl = bufferevent_openssl_get_ssl(bev);
		tls_describe(ssl, s->tls_info, sizeof(s->tls_info));
		log_info("smtp_tls", "session=%llu client=%s tls=\"%s\"", (unsigned long long)s->id,
			 s->addr, s->tls_info);
		return;
	}
	if ((what & BEV_EVENT_ERROR) && s->tls && s->tls_info[0] == '\0') {
		unsigned long e = bufferevent_get_openssl_error(bev);
		log_info("smtp_tls_failed", "session=%llu client=%s error=\"%s\"",
			 (unsigned long long)s->id, s->addr,
			 e ? ERR_reason_error_string(e) : "connection closed in the handshake");
		smtp_session_free(s);
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING)) {
		log_info("smtp_timeout", "session=%llu client=%s state=%s",
			 (unsigned long long)s->id, s->addr, smtp_strstate(s->state));
		reply(s, "421 4.4.2 %s Error: timeout exceeded", hostname(s));
		/* The write timeout still bounds how long the 421 may take. */
		close_after_flush(s);
		return;
	}
	/* EOF or error: the client is gone; so is any unfinished message. */
	if (s->state == SMTP_STATE_DATA)
		log_info("smtp_abort", "session=%llu client=%s reason=\"connection lost in DATA\"",
			 (unsigned long long)s->id, s->addr);
	smtp_session_free(s);
}

static void on_close(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_session *s = arg;
	if (s->tls && s->tls_info[0] != '\0')
		SSL_shutdown(bufferevent_openssl_get_ssl(s->bev)); /* close_notify, best effort */
	smtp_session_free(s);
}

/* Callbacks, read size and idle timeouts of the current bufferevent. */
static void bev_setup(struct smtp_session *s)
{
	/* DATA comes in reads of up to one feed step, not libevent's 16 KiB. */
	bufferevent_set_max_single_read(s->bev, SMTP_DATA_STEP);
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	uint64_t ms = s->env.iface->socket_timeout_ms;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

/* maxSessionTime and maxDataTime: a client that trickles bytes keeps the
 * idle timeout at bay, not these. */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_session *s = arg;
	if (s->state == SMTP_STATE_COMMIT || s->state == SMTP_STATE_CLOSING) {
		/* The store has the message: its answer goes out first. */
		arm_timer(s->session_timer, 1000);
		return;
	}
	bool data = s->state == SMTP_STATE_DATA;
	log_info("smtp_timeout", "session=%llu client=%s state=%s limit=%s",
		 (unsigned long long)s->id, s->addr, smtp_strstate(s->state),
		 data ? "maxDataTime" : "maxSessionTime");
	if (s->state == SMTP_STATE_WAIT) {
		hook_cancel(s->hook_id);
		s->hook_id = 0;
		smtp_auth_cancel(s->env.auth, s->auth_id);
		s->auth_id = 0;
	}
	reply(s, "421 4.4.2 %s Error: %s time limit exceeded", hostname(s),
	      data ? "DATA" : "session");
	close_after_flush(s);
}

struct smtp_session *smtp_session_new(struct event_base *base, evutil_socket_t fd,
				      const char *client, const struct smtp_session_env *env,
				      uint64_t id)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	s->id = id;
	s->env = *env;
	s->fd = fd;
	s->scratch = xmalloc(SMTP_DATA_STEP);
	snprintf(s->addr, sizeof(s->addr), "%s", client);
	if (env->iface->secure && *env->tls != NULL) {
		s->bev = bufferevent_openssl_socket_new(base, fd, tls_server_ssl(*env->tls),
							BUFFEREVENT_SSL_ACCEPTING,
							BEV_OPT_CLOSE_ON_FREE);
		s->tls = true;
	} else {
		/* Not closed with it: STARTTLS puts a TLS one on the same socket. */
		s->bev = bufferevent_socket_new(base, fd, 0);
	}
	s->close_ev = event_new(base, -1, 0, on_close, s);
	s->tls_ev = event_new(base, -1, 0, on_tls_upgrade, s);
	s->session_timer = evtimer_new(base, on_deadline, s);
	s->data_timer = evtimer_new(base, on_deadline, s);
	arm_timer(s->session_timer, env->iface->max_session_ms);
	bev_setup(s);

	s->state = SMTP_STATE_GREETED;
	log_info("smtp_connect", "session=%llu interface=%s client=%s%s", (unsigned long long)id,
		 env->iface->name, s->addr, s->tls ? " tls=implicit" : "");
	/* The greeting waits for smtp:connect's handlers, if any; on implicit
	 * TLS it is written once the handshake is done. */
	run_hook(s, HOOK_SMTP_CONNECT, NULL);
	return s;
}

const char *smtp_session_client(const struct smtp_session *s)
{
	return s->addr;
}

void smtp_session_shutdown(struct smtp_session *s)
{
	s->shutdown_requested = true;
	if (s->state == SMTP_STATE_DATA || s->state == SMTP_STATE_COMMIT ||
	    s->state == SMTP_STATE_CLOSING)
		return; /* message_done or the close finishes it */
	if (s->state == SMTP_STATE_WAIT) {
		hook_cancel(s->hook_id);
		s->hook_id = 0;
		smtp_auth_cancel(s->env.auth, s->auth_id);
		s->auth_id = 0;
		bufferevent_setwatermark(s->bev, EV_READ, 0, 0);
	}
	if (s->state == SMTP_STATE_TLS) {
		/* The client waits for a handshake, not for a 421. */
		close_after_flush(s);
		return;
	}
	reply(s, "421 4.3.2 %s Service shutting down", hostname(s));
	close_after_flush(s);
}

void smtp_session_free(struct smtp_session *s)
{
	if (s == NULL)
		return;
	log_info("smtp_disconnect", "session=%llu client=%s messages=%u", (unsigned long long)s->id,
		 s->addr, s->messages);
	/* A hook answer must not find the session gone. */
	hook_cancel(s->hook_id);
	smtp_auth_cancel(s->env.auth, s->auth_id);
	auth_end(s);
	txn_clear(s);
	free(s->rcpts);
	free(s->rcpt_dsn);
	free(s->helo);
	free(s->user);
	free(s->scratch);
	event_free(s->close_ev);
	event_free(s->tls_ev);
	event_free(s->session_timer);
	event_free(s->data_timer);
	bool socket_owned = s->tls; /* the TLS bufferevent closes the socket */
	bufferevent_free(s->bev);
	if (!socket_owned)
		evutil_closesocket(s->fd);
	s->env.closed(s->env.arg, s->id);
	free(s);
}
