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

#include "core/stats.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "hook/hook.h"
#include "msg/ingest.h"
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
	SMTP_STATE_WAIT,    /* a command waits for its hook's answer */
	SMTP_STATE_CLOSING, /* last reply sent or being sent, then close */
};

struct smtp_command_def;

struct smtp_session {
	uint64_t id;
	struct smtp_session_env env;
	struct bufferevent *bev;
	struct event *close_ev;
	char addr[INET6_ADDRSTRLEN];
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
	for (size_t i = 0; i < s->nrcpts; i++)
		free(s->rcpts[i]);
	s->nrcpts = 0;
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
	if (smtp_rcpt_parse(cmd->arg, s->mail.smtputf8, &s->pending_rcpt, &err) != 0) {
		reply(s, "%s", err);
		bad_command(s);
		return false;
	}
	if (s->nrcpts >= (size_t)s->env.iface->max_recipients) {
		reply(s, "452 4.5.3 Error: too many recipients");
		return false;
	}
	s->hook_ctx.address = s->pending_rcpt.addr;
	return true;
}

static void cmd_rcpt(struct smtp_session *s, const struct smtp_command *cmd)
{
	(void)cmd;
	s->rcpts = xreallocarray_grow(s->rcpts, &s->rcpts_cap, s->nrcpts + 1, sizeof(char *));
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
    {SMTP_VERB_STARTTLS, "STARTTLS", NULL, HOOK_NONE, cmd_not_implemented, NULL, NULL},
    {SMTP_VERB_AUTH, "AUTH", NULL, HOOK_NONE, cmd_not_implemented, NULL, NULL},
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
	struct ingest_envelope env = {
	    .interface = s->env.iface->name,
	    .origin = s->addr,
	    .transhost = s->helo,
	    .transtype = s->esmtp ? "ESMTP" : "SMTP",
	    .from = s->mail.path.addr,
	    .rcpts = s->rcpts,
	    .nrcpts = s->nrcpts,
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
	run_command(s, len);
	return true;
}

static void process_input(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer *out = bufferevent_get_output(s->bev);
	for (;;) {
		if (s->state == SMTP_STATE_COMMIT || s->state == SMTP_STATE_WAIT ||
		    s->state == SMTP_STATE_CLOSING)
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
	if (s->state == SMTP_STATE_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			event_active(s->close_ev, EV_WRITE, 0);
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
	(void)bev;
	struct smtp_session *s = arg;
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
	smtp_session_free(arg);
}

struct smtp_session *smtp_session_new(struct event_base *base, evutil_socket_t fd,
				      const struct sockaddr *peer,
				      const struct smtp_session_env *env, uint64_t id)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	s->id = id;
	s->env = *env;
	s->scratch = xmalloc(SMTP_DATA_STEP);
	if (peer->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)peer)->sin6_addr, s->addr,
			  sizeof(s->addr));
	else
		inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, s->addr,
			  sizeof(s->addr));
	s->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	/* DATA comes in reads of up to one feed step, not libevent's 16 KiB. */
	bufferevent_set_max_single_read(s->bev, SMTP_DATA_STEP);
	s->close_ev = event_new(base, -1, 0, on_close, s);
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	uint64_t ms = env->iface->socket_timeout_ms;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);

	s->state = SMTP_STATE_GREETED;
	log_info("smtp_connect", "session=%llu interface=%s client=%s", (unsigned long long)id,
		 env->iface->name, s->addr);
	/* The greeting waits for smtp:connect's handlers, if any. */
	run_hook(s, HOOK_SMTP_CONNECT, NULL);
	return s;
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
		bufferevent_setwatermark(s->bev, EV_READ, 0, 0);
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
	txn_clear(s);
	free(s->rcpts);
	free(s->helo);
	free(s->scratch);
	event_free(s->close_ev);
	bufferevent_free(s->bev);
	s->env.closed(s->env.arg, s->id);
	free(s);
}
