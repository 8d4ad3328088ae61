/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Queue administration over the API (docs/api.md#queue-administration):
 * GET/POST /pauses, DELETE /pauses/:id (resume), POST /message/:id/hold
 * and /message/:id/release, POST /ops (flush, hold, release or delete what
 * a filter matches, incrementally), GET /ops and /ops/:id (the audit log,
 * with an operation's progress).  Each change is audited with who asked.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/http.h>

#include "api/api_internal.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "msg/header.h"
#include "outcome/outcome.h"
#include "queue/admin.h"
#include "sched/sched.h"

/* Who is asking: the credential that let the request in, and from where. */
static void who_of(struct api *api, struct evhttp_request *req, struct admin_who *who, char *addr,
		   size_t addrlen)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	const char *auth = evhttp_find_header(h, "Authorization");
	who->principal = "anonymous";
	if (api->cfg->api.api_key != NULL &&
	    (evhttp_find_header(h, "X-API-Key") != NULL ||
	     (auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0)))
		who->principal = "apiKey";
	else if (api->cfg->api.user != NULL && auth != NULL && strncasecmp(auth, "Basic ", 6) == 0)
		who->principal = api->cfg->api.user; /* it matched to get here */
	char *host = NULL;
	ev_uint16_t port = 0;
	evhttp_connection_get_peer(evhttp_request_get_connection(req), &host, &port);
	snprintf(addr, addrlen, "%s", host ? host : "");
	who->address = addr;
}

static struct admin *admin_or_reply(struct api *api, struct evhttp_request *req)
{
	struct admin *a = api->queue ? queue_admin(api->queue) : NULL;
	if (a == NULL)
		api_reply_error(req, HTTP_SERVUNAVAIL, "the queue is not open yet");
	return a;
}

/* A change's answer, sent once what it wrote is durable. */
struct written {
	struct api *api;
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	uint64_t queue_req;
	json_t *body;
};

static void written_gone(void *arg)
{
	struct written *w = arg;
	queue_request_cancel(w->api->queue, w->queue_req);
	json_decref(w->body);
	free(w);
}

static void written(void *arg, int rc, const char *error)
{
	struct written *w = arg;
	api_on_gone(w->api, w->conn, NULL, NULL);
	if (rc != 0) {
		api_reply_error(w->req, HTTP_SERVUNAVAIL,
				error ? error : "the store could not record it");
		json_decref(w->body);
	} else {
		api_reply_json(w->req, HTTP_OK, w->body);
	}
	free(w);
}

/* Answers `body` (consumed) after every write submitted so far. */
static void reply_when_written(struct api *api, struct evhttp_request *req, json_t *body)
{
	struct written *w = xcalloc(1, sizeof(*w));
	w->api = api;
	w->req = req;
	w->conn = evhttp_request_get_connection(req);
	w->body = body;
	api_on_gone(api, w->conn, written_gone, w);
	w->queue_req = queue_after_writes(api->queue, written, w);
}

/* `until`: ms since the epoch, an ISO 8601 UTC time ("2026-12-03T10:00:00Z"),
 * or a duration from now ("30 min").  0 and false when it is none of them. */
static bool parse_until(const json_t *v, int64_t *out)
{
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return *out > 0;
	}
	const char *s = json_string_value(v);
	if (s == NULL)
		return false;
	struct tm tm = {0};
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (end != NULL) {
		if (*end == '.')
			for (end++; isdigit((unsigned char)*end); end++)
				;
		if (strcmp(end, "Z") != 0 && strcmp(end, "+00:00") != 0 && *end != '\0')
			return false;
		*out = (int64_t)timegm(&tm) * 1000;
		return true;
	}
	uint64_t ms;
	if (!config_parse_duration(s, &ms) || ms == 0)
		return false;
	*out = clock_wall_ms() + (int64_t)ms;
	return true;
}

void route_pauses(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	(void)params;
	struct admin *a = admin_or_reply(api, req);
	if (a != NULL)
		api_reply_json(req, HTTP_OK, json_pack("{s:o}", "pauses", admin_pauses(a)));
}

void route_pause(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	(void)params;
	struct admin *a = admin_or_reply(api, req);
	if (a == NULL)
		return;
	json_t *in = api_request_params(req);
	if (in == NULL) {
		api_reply_error(req, HTTP_BADREQUEST, "the body is not a JSON object or a form");
		return;
	}
	json_t *fields = json_object();
	static const char *const keys[] = {"zone", "domain", "sender", "user", "reason"};
	const char *bad = NULL;
	size_t given = 0;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && bad == NULL; i++) {
		json_t *v = json_object_get(in, keys[i]);
		if (v == NULL || json_is_null(v))
			continue;
		const char *s = json_string_value(v);
		if (s == NULL || *s == '\0' || strlen(s) > 255) {
			bad = keys[i];
			break;
		}
		char *value = xstrdup(s[0] == '@' && strcmp(keys[i], "sender") == 0 ? s + 1 : s);
		if (strcmp(keys[i], "domain") == 0 || strcmp(keys[i], "sender") == 0)
			if (strchr(value, '@') == NULL)
				for (char *p = value; *p; p++)
					*p = (char)tolower((unsigned char)*p);
		json_object_set_new(fields, keys[i], json_string(value));
		free(value);
		given += strcmp(keys[i], "reason") != 0;
	}
	json_t *until = json_object_get(in, "until");
	int64_t until_ms = 0;
	char why[160] = "";
	if (bad != NULL)
		snprintf(why, sizeof(why), "%s must be a string of 1 to 255 bytes", bad);
	else if (given == 0)
		snprintf(why, sizeof(why), "a pause needs zone, domain, sender or user");
	else if (json_object_get(fields, "zone") != NULL &&
		 config_zone(api->cfg, json_string_value(json_object_get(fields, "zone"))) == NULL)
		snprintf(why, sizeof(why), "no such zone: %s",
			 json_string_value(json_object_get(fields, "zone")));
	else if (until != NULL && !json_is_null(until) && !parse_until(until, &until_ms))
		snprintf(why, sizeof(why),
			 "until must be ms since the epoch, an ISO 8601 UTC time or a duration");
	else if (until_ms != 0 && until_ms <= clock_wall_ms())
		snprintf(why, sizeof(why), "until is in the past");
	json_decref(in);
	if (why[0] != '\0') {
		json_decref(fields);
		api_reply_error(req, HTTP_BADREQUEST, why);
		return;
	}
	if (until_ms != 0)
		json_object_set_new(fields, "until", json_integer((json_int_t)until_ms));
	struct admin_who who;
	char addr[64];
	who_of(api, req, &who, addr, sizeof(addr));
	json_t *p = admin_pause(a, fields, &who, NULL, NULL);
	json_decref(fields);
	reply_when_written(api, req, json_pack("{s:b, s:o}", "success", 1, "pause", p));
}

void route_resume(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	struct admin *a = admin_or_reply(api, req);
	if (a == NULL)
		return;
	struct admin_who who;
	char addr[64];
	who_of(api, req, &who, addr, sizeof(addr));
	if (!admin_resume(a, params->value[0], &who, NULL, NULL)) {
		api_reply_error(req, HTTP_NOTFOUND, "no such pause");
		return;
	}
	reply_when_written(api, req,
			   json_pack("{s:b, s:s}", "success", 1, "resumed", params->value[0]));
}

static void rewrite_row(void *arg, const struct sched_item *it)
{
	struct api *api = arg;
	outcome_rewrite(api->outcome, it);
}

static void hold_or_release(struct api *api, struct evhttp_request *req,
			    const struct api_params *params, bool held)
{
	struct admin *a = admin_or_reply(api, req);
	if (a == NULL)
		return;
	const char *id = params->value[0];
	if (!api_valid_id(id)) {
		api_reply_error(req, HTTP_BADREQUEST, "invalid queue id");
		return;
	}
	size_t n = sched_hold(api->sched, id, 0, held, rewrite_row, api);
	if (n == 0 && !sched_has_message(api->sched, id)) {
		api_reply_error(req, HTTP_NOTFOUND, "no such message in the queue");
		return;
	}
	struct admin_who who;
	char addr[64];
	who_of(api, req, &who, addr, sizeof(addr));
	const char *op = admin_audit(a, held ? "hold" : "release", json_pack("{s:s}", "id", id), n,
				     &who);
	reply_when_written(api, req,
			   json_pack("{s:b, s:s, s:s, s:I, s:s}", "success", 1, "id", id,
				     held ? "held" : "released", held ? "held" : "released",
				     "changed", (json_int_t)n, "op", op));
}

void route_hold(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	hold_or_release(api, req, params, true);
}

void route_release(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	hold_or_release(api, req, params, false);
}

void route_ops(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	(void)params;
	struct admin *a = admin_or_reply(api, req);
	if (a != NULL)
		api_reply_json(req, HTTP_OK, json_pack("{s:o}", "ops", admin_audit_list(a, 1000)));
}

/* --- operations over what a filter matches, running on the loop --- */

enum op_action {
	OP_FLUSH,
	OP_HOLD,
	OP_RELEASE,
	OP_BOUNCE,
	OP_DELETE,
	OP_REBIND
};
static const char *const op_names[] = {"flush",  "hold",   "release", "bounce",
				       "delete", "rebind", NULL};

/* A delivery a walk matched, kept until its message's headers are read. */
struct candidate {
	char id[QUEUE_ID_LEN + 1];
	unsigned seq;
};

struct running_op {
	struct api *api;
	struct running_op *prev, *next; /* api->running */
	enum op_action action;
	char id[32];
	char *zone;   /* rebind: where to */
	char *reason; /* bounce: told in the DSN */
	uint64_t walk;
	/* filters on the message's headers (messageId, header): read per
	 * message once the walk has collected the candidates */
	struct header_filter headers;
	struct candidate *cand;
	size_t ncand, cand_cap, next_cand;
	uint64_t read_req;
	char last_bounced[QUEUE_ID_LEN + 1]; /* its notice goes when the next starts */
	size_t scanned, matched, affected;
	size_t after_attempt; /* in flight: acted on if their attempt defers */
};

static bool needs_headers(const struct running_op *op)
{
	return op->headers.message_id != NULL || op->headers.name != NULL;
}

/* Frees an operation that is in no list. */
static void op_destroy(struct running_op *op)
{
	free(op->zone);
	free(op->reason);
	free(op->headers.message_id);
	free(op->headers.name);
	free(op->headers.value);
	free(op->cand);
	free(op);
}

/* Takes an operation out of api->running and frees it. */
static void op_free(struct running_op *op)
{
	*(op->prev ? &op->prev->next : &op->api->running) = op->next;
	if (op->next)
		op->next->prev = op->prev;
	op_destroy(op);
}

/* A bounced message's notice goes once none of its deliveries is left to
 * visit (they come in queue order). */
static void bounce_batch_end(struct running_op *op, const char *next_id)
{
	if (op->last_bounced[0] == '\0' ||
	    (next_id != NULL && strcmp(op->last_bounced, next_id) == 0))
		return;
	outcome_batch_end(op->api->outcome, op->last_bounced);
	op->last_bounced[0] = '\0';
}

static void count_admin(struct running_op *op, enum outcome_admin done)
{
	op->affected += done == OUTCOME_ADMIN_DONE;
	op->after_attempt += done == OUTCOME_ADMIN_AFTER_ATTEMPT;
}

static void act(struct running_op *op, struct sched_item *it)
{
	struct api *api = op->api;
	char id[QUEUE_ID_LEN + 1];
	memcpy(id, it->id, sizeof(id)); /* `it` may go */
	switch (op->action) {
	case OP_FLUSH:
		if (it->waiting && sched_retry_now(api->sched, it->id, it->seq))
			op->affected++;
		break;
	case OP_HOLD:
	case OP_RELEASE:
		op->affected += sched_hold(api->sched, it->id, it->seq, op->action == OP_HOLD,
					   rewrite_row, api);
		break;
	case OP_BOUNCE: {
		bounce_batch_end(op, id);
		enum outcome_admin done = outcome_bounce(api->outcome, it, op->reason, op->id);
		count_admin(op, done);
		if (done == OUTCOME_ADMIN_DONE)
			memcpy(op->last_bounced, id, sizeof(id));
		break;
	}
	case OP_DELETE:
		op->affected += outcome_delete(api->outcome, id, it->seq);
		break;
	case OP_REBIND:
		count_admin(op, outcome_rebind(api->outcome, it, op->zone, op->id));
		break;
	}
}

static void op_visit(void *arg, struct sched_item *it)
{
	struct running_op *op = arg;
	if (!needs_headers(op)) {
		op->matched++;
		act(op, it);
		return;
	}
	/* matched when its headers do */
	op->cand = xreallocarray_grow(op->cand, &op->cand_cap, op->ncand + 1, sizeof(*op->cand));
	memcpy(op->cand[op->ncand].id, it->id, sizeof(it->id));
	op->cand[op->ncand++].seq = it->seq;
}

/* How many deliveries it has looked at: the walk's count while it walks. */
static size_t op_scanned(const struct running_op *op)
{
	return op->walk ? sched_walk_scanned(op->api->sched, op->walk) : op->scanned;
}

/* The operation's end in its audit entry: "done", or "interrupted" by
 * the daemon's stop (with how far it got). */
static void op_record_end(struct running_op *op, const char *state)
{
	struct admin *a = queue_admin(op->api->queue);
	size_t scanned = op_scanned(op);
	if (a != NULL)
		admin_audit_update(a, op->id,
				   json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "state", state,
					     "scanned", (json_int_t)scanned, "matched",
					     (json_int_t)op->matched, "affected",
					     (json_int_t)op->affected, "afterAttempt",
					     (json_int_t)op->after_attempt, "finished",
					     (json_int_t)clock_wall_ms()));
}

static void op_finish(struct running_op *op)
{
	bounce_batch_end(op, NULL);
	op_record_end(op, "done");
	op_free(op);
}

/* Whether a stored metadata row (JSON, NUL, the header block) matches
 * the operation's header filters. */
static bool headers_match(const struct running_op *op, const char *data, size_t len)
{
	size_t jlen = strnlen(data, len);
	bool ok = true;
	if (op->headers.message_id != NULL) {
		json_t *meta = json_loadb(data, jlen, 0, NULL);
		const char *mid = json_string_value(json_object_get(meta, "messageId"));
		size_t n = mid ? strlen(mid) : 0;
		if (n >= 2 && mid[0] == '<' && mid[n - 1] == '>')
			mid++, n -= 2;
		ok = mid != NULL && n == strlen(op->headers.message_id) &&
		     strncmp(mid, op->headers.message_id, n) == 0;
		json_decref(meta);
	}
	if (ok && op->headers.name != NULL) {
		struct header_list h = {0};
		if (jlen < len)
			header_list_parse(&h, data + jlen + 1, len - jlen - 1);
		ok = false;
		for (size_t i = 0; i < h.count && !ok; i++)
			ok = strcmp(h.items[i].key, op->headers.name) == 0 &&
			     (op->headers.value == NULL ||
			      strcmp(h.items[i].value, op->headers.value) == 0);
		header_list_clear(&h);
	}
	return ok;
}

static void read_next(struct running_op *op);

static void meta_read(void *arg, int rc, const char *data, size_t len)
{
	struct running_op *op = arg;
	op->read_req = 0;
	struct candidate *c = &op->cand[op->next_cand];
	bool match = rc == 1 && headers_match(op, data, len);
	while (op->next_cand < op->ncand && strcmp(op->cand[op->next_cand].id, c->id) == 0) {
		struct sched_item *it = sched_item_get(op->api->sched, c->id,
						       op->cand[op->next_cand].seq);
		op->next_cand++;
		if (match && it != NULL) {
			op->matched++;
			act(op, it);
		}
	}
	read_next(op);
}

/* One message's metadata read at a time: the store reader serves the
 * deliveries meanwhile. */
static void read_next(struct running_op *op)
{
	if (op->next_cand >= op->ncand) {
		op_finish(op);
		return;
	}
	char *key = xstrndup(op->cand[op->next_cand].id, QUEUE_ID_LEN);
	op->read_req = queue_row_get(op->api->queue, STORE_CF_META, key, meta_read, op);
	free(key);
}

/* Writes an operation may have waiting in the store before its walk
 * waits for them: a message accepted meanwhile (its commit behind them)
 * waits for at most this many. */
#define OP_WRITES_AHEAD 2048

static bool store_busy(void *arg)
{
	struct api *api = arg;
	return queue_write_backlog(api->queue) > OP_WRITES_AHEAD;
}

static void op_walked(void *arg, size_t scanned, size_t matched)
{
	(void)matched;
	struct running_op *op = arg;
	op->walk = 0;
	op->scanned = scanned;
	if (needs_headers(op))
		read_next(op);
	else
		op_finish(op);
}

/* POST /ops with ids: at most this many. */
#define OP_IDS_MAX 1000

/* "id" (seq 0: all) or "id/seq". */
static bool id_and_seq(const char *s, char *id, unsigned *seq)
{
	size_t n = strlen(s);
	*seq = 0;
	if (n != QUEUE_ID_LEN && (n < QUEUE_ID_LEN + 2 || s[QUEUE_ID_LEN] != '/'))
		return false;
	memcpy(id, s, QUEUE_ID_LEN);
	id[QUEUE_ID_LEN] = '\0';
	*seq = n > QUEUE_ID_LEN ? api_parse_seq(s + QUEUE_ID_LEN + 1) : 0;
	return api_valid_id(id) && (n == QUEUE_ID_LEN || *seq != 0);
}

static bool ids_valid(const json_t *ids)
{
	size_t i;
	json_t *v;
	if (!json_is_array(ids) || json_array_size(ids) == 0 || json_array_size(ids) > OP_IDS_MAX)
		return false;
	json_array_foreach (ids, i, v) {
		char id[QUEUE_ID_LEN + 1];
		unsigned seq;
		if (!json_is_string(v) || !id_and_seq(json_string_value(v), id, &seq))
			return false;
	}
	return true;
}

/* The deliveries named (a message's all, or one), acted on now. */
static void act_on_ids(struct running_op *op, const json_t *ids)
{
	size_t i;
	json_t *v;
	json_array_foreach (ids, i, v) {
		char id[QUEUE_ID_LEN + 1];
		unsigned seq;
		id_and_seq(json_string_value(v), id, &seq);
		for (unsigned q = seq ? seq : 1; q <= (seq ? seq : QUEUE_MAX_RCPTS); q++) {
			struct sched_item *it = sched_item_get(op->api->sched, id, q);
			if (it == NULL)
				continue;
			op->scanned++;
			op->matched++;
			act(op, it);
		}
	}
	op_finish(op);
}

void api_ops_free(struct api *api)
{
	while (api->running != NULL) {
		struct running_op *op = api->running;
		log_warn("op_interrupted", "op=%s action=%s scanned=%zu affected=%zu", op->id,
			 op_names[op->action], op_scanned(op), op->affected);
		/* (bounces still gathering their notice stay queued: the
		 * outcome stage's shutdown leaves their rows for the restart) */
		op_record_end(op, "interrupted");
		sched_walk_cancel(api->sched, op->walk);
		if (op->read_req != 0)
			queue_request_cancel(api->queue, op->read_req);
		op_free(op);
	}
}

/* An operation's audit entry, with its progress while it runs. */
static json_t *op_entry(struct api *api, const char *id)
{
	json_t *e = admin_audit_get(queue_admin(api->queue), id);
	for (const struct running_op *op = api->running; op != NULL && e != NULL; op = op->next) {
		if (strcmp(op->id, id) != 0)
			continue;
		json_object_set_new(e, "scanned", json_integer((json_int_t)op_scanned(op)));
		json_object_set_new(e, "matched", json_integer((json_int_t)op->matched));
		json_object_set_new(e, "affected", json_integer((json_int_t)op->affected));
		json_object_set_new(e, "afterAttempt", json_integer((json_int_t)op->after_attempt));
	}
	return e;
}

void route_op(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	if (admin_or_reply(api, req) == NULL)
		return;
	json_t *e = op_entry(api, params->value[0]);
	if (e == NULL)
		api_reply_error(req, HTTP_NOTFOUND, "no such operation");
	else
		api_reply_json(req, HTTP_OK, e);
}

void api_parse_filter(struct api *api, json_t *filter, struct sched_filter *f,
		      struct header_filter *hf, char *why, size_t whylen)
{
	const char *key;
	json_t *v;
	json_object_foreach (filter, key, v) {
		const char *sv = json_string_value(v);
		uint64_t ms;
		bool on_headers = strcmp(key, "messageId") == 0 || strcmp(key, "header") == 0;
		if (sv == NULL || *sv == '\0' || strlen(sv) > 998)
			snprintf(why, whylen, "filter.%.40s must be a string of 1 to 998 bytes",
				 key);
		else if (strcmp(key, "zone") == 0 && config_zone(api->cfg, sv) == NULL)
			snprintf(why, whylen, "no such zone: %.60s", sv);
		else if (strcmp(key, "zone") == 0)
			f->zone = sv;
		else if (strcmp(key, "domain") == 0)
			f->domain = sv;
		else if (strcmp(key, "recipient") == 0)
			f->recipient = sv;
		else if (strcmp(key, "sender") == 0)
			f->sender = sv[0] == '@' ? sv + 1 : sv;
		else if (strcmp(key, "user") == 0)
			f->user = sv;
		else if (strcmp(key, "status") == 0 && strcmp(sv, "queued") == 0)
			f->status = SCHED_QUEUED;
		else if (strcmp(key, "status") == 0 && strcmp(sv, "deferred") == 0)
			f->status = SCHED_DEFERRED;
		else if (strcmp(key, "status") == 0 && strcmp(sv, "held") == 0)
			f->status = SCHED_HELD;
		else if (strcmp(key, "olderThan") == 0 && config_parse_duration(sv, &ms))
			f->created_before = clock_wall_ms() - (int64_t)ms;
		else if (on_headers && hf == NULL)
			snprintf(why, whylen, "filter.%.40s is for operations, not listings", key);
		else if (strcmp(key, "messageId") == 0) {
			size_t n = strlen(sv);
			bool angle = n >= 2 && sv[0] == '<' && sv[n - 1] == '>';
			hf->message_id = xstrndup(sv + angle, n - 2 * angle);
		} else if (strcmp(key, "header") == 0 && strchr(sv, ':') != NULL &&
			   strchr(sv, ':') != sv) {
			/* "Name: value" (the unfolded value, exactly), or "Name:" */
			const char *colon = strchr(sv, ':'), *val = colon + 1;
			hf->name = xstrndup(sv, (size_t)(colon - sv));
			for (char *p = hf->name; *p; p++)
				*p = (char)tolower((unsigned char)*p);
			while (*val == ' ' || *val == '\t')
				val++;
			hf->value = *val ? xstrdup(val) : NULL;
		} else
			snprintf(why, whylen, "filter.%.40s: '%.40s' is not understood", key, sv);
		if (why[0] != '\0')
			return;
	}
}

void route_op_start(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	(void)params;
	struct admin *a = admin_or_reply(api, req);
	if (a == NULL)
		return;
	json_t *in = api_request_params(req);
	const char *action = in ? json_string_value(json_object_get(in, "action")) : NULL;
	int act_no = -1;
	for (int i = 0; action != NULL && op_names[i] != NULL; i++)
		if (strcmp(action, op_names[i]) == 0)
			act_no = i;
	json_t *filter = in ? json_object_get(in, "filter") : NULL;
	json_t *ids = in ? json_object_get(in, "ids") : NULL;
	const char *zone = in ? json_string_value(json_object_get(in, "zone")) : NULL;
	const char *reason = in ? json_string_value(json_object_get(in, "reason")) : NULL;
	char why[160] = "";
	struct sched_filter f = {0};
	struct running_op *op = xcalloc(1, sizeof(*op));
	op->api = api;
	if (in == NULL)
		snprintf(why, sizeof(why), "the body is not a JSON object");
	else if (act_no < 0)
		snprintf(why, sizeof(why),
			 "action must be one of flush, hold, release, bounce, delete, rebind");
	else if (ids != NULL && (filter != NULL || !ids_valid(ids)))
		snprintf(why, sizeof(why),
			 "ids must be 1 to %d queue ids (\"id\" or \"id/seq\"), without a filter",
			 OP_IDS_MAX);
	else if (ids == NULL && (!json_is_object(filter) || json_object_size(filter) == 0))
		snprintf(why, sizeof(why),
			 "a filter is needed (zone, domain, recipient, sender, user, status, "
			 "olderThan, messageId, header), or ids");
	else if (act_no == OP_REBIND && (zone == NULL || config_zone(api->cfg, zone) == NULL))
		snprintf(why, sizeof(why), "rebind needs zone, the name of a configured zone");
	else if (reason != NULL && strlen(reason) > 200)
		snprintf(why, sizeof(why), "reason is longer than 200 bytes");
	else if (ids == NULL)
		api_parse_filter(api, filter, &f, &op->headers, why, sizeof(why));
	if (why[0] != '\0') {
		json_decref(in);
		op_destroy(op);
		api_reply_error(req, HTTP_BADREQUEST, why);
		return;
	}
	op->action = (enum op_action)act_no;
	op->zone = zone ? xstrdup(zone) : NULL;
	op->reason = reason ? xstrdup(reason) : NULL;
	struct admin_who who;
	char addr[64];
	who_of(api, req, &who, addr, sizeof(addr));
	json_t *state = json_pack("{s:s}", "state", "running");
	if (op->zone != NULL)
		json_object_set_new(state, "zone", json_string(op->zone));
	if (op->reason != NULL)
		json_object_set_new(state, "reason", json_string(op->reason));
	json_t *target = ids ? json_pack("{s:O}", "ids", ids) : json_deep_copy(filter);
	snprintf(op->id, sizeof(op->id), "%s",
		 admin_audit_start(a, op_names[act_no], target, state, &who));
	op->next = api->running;
	if (op->next)
		op->next->prev = op;
	api->running = op;
	if (ids != NULL) {
		/* Chosen one by one (the web page's selection): at once. */
		char id[32];
		snprintf(id, sizeof(id), "%s", op->id);
		act_on_ids(op, ids);
		json_decref(in);
		api_reply_json(req, 202,
			       json_pack("{s:b, s:o}", "success", 1, "op", admin_audit_get(a, id)));
		return;
	}
	/* The filter's strings are copied by the walk before `in` goes. */
	op->walk = sched_walk(api->sched, &f, op_visit, op_walked, op);
	sched_walk_pace(api->sched, op->walk, store_busy, api);
	json_t *entry = op_entry(api, op->id);
	json_decref(in);
	api_reply_json(req, 202, json_pack("{s:b, s:o}", "success", 1, "op", entry));
}
