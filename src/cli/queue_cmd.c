/* SPDX-License-Identifier: EUPL-1.2 */
/* `zone-mta queue`; see queue_cmd.h and docs/operations.md. */
#include "cli/queue_cmd.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "core/config.h"
#include "core/xmalloc.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2

static const char queue_usage[] =
    "Usage: zone-mta queue [-d DIR] [-c FILE] [--api URL] [--json] [--yes] COMMAND ...\n"
    "\n"
    "  list [FILTER] [--limit N] [--all] [--sort COLUMN [--desc]]\n"
    "                                       deliveries in the queue (sorted over\n"
    "                                       all of them: id, recipient, domain, zone,\n"
    "                                       from, created, state, attempts, next,\n"
    "                                       response)\n"
    "  show ID                              a message: metadata, headers, deliveries\n"
    "  summary [FILTER]                     recipient domains by age, top deferral reasons\n"
    "  flush|hold|release|bounce|delete ID... | FILTER\n"
    "                                       act on messages (ID or ID/SEQ) or a filter\n"
    "  rebind --to ZONE ID... | FILTER      move deliveries to another zone\n"
    "  pause [--zone Z] [--domain D] [--sender S] [--user U] [--until T] [--reason R]\n"
    "  resume PAUSE_ID                      end a pause\n"
    "  pauses                               the pauses in force\n"
    "  ops [OP_ID]                          the audit log, or one operation\n"
    "\n"
    "FILTER: --zone Z --domain D --recipient R --sender S --user U\n"
    "        --status queued|deferred|held --older DURATION\n"
    "        --message-id ID --header 'Name: value' (operations only)\n"
    "bounce: --reason TEXT (told in the DSN).  Bounce and delete of more than one\n"
    "message ask first; --yes does not ask.\n"
    "\n"
    "The daemon's API is found from the app folder's configuration (-d, -c;\n"
    "api.host, api.port, TLS, api.auth), or given with --api URL (then\n"
    "$ZONEMTA_API_KEY is its key).  --json prints the API's JSON.\n"
    "Exit codes: 0 done, 1 the daemon could not do it, 2 usage error.\n";

struct client {
	char *base; /* http://host:port, no trailing slash */
	char *api_key, *user, *password;
	char *ca_file; /* the daemon's own certificate, when it speaks TLS */
	bool json;
	bool yes;
};

/* --- HTTP --- */

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
	struct {
		char *buf;
		size_t len;
	} *out = arg;
	out->buf = xrealloc(out->buf, out->len + size * n + 1);
	memcpy(out->buf + out->len, data, size * n);
	out->len += size * n;
	out->buf[out->len] = '\0';
	return size * n;
}

/* One request; the answer's JSON into *answer (NULL when it was not JSON).
 * Returns the HTTP status, or 0 when the daemon could not be reached (the
 * reason printed). */
static long request(const struct client *c, const char *method, const char *path,
		    const json_t *body, json_t **answer)
{
	*answer = NULL;
	CURL *h = curl_easy_init();
	if (h == NULL)
		return 0;
	char *url = xasprintf("%s%s", c->base, path);
	struct {
		char *buf;
		size_t len;
	} out = {NULL, 0};
	struct curl_slist *hdr = NULL;
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	char *key = NULL;
	if (text != NULL) {
		hdr = curl_slist_append(hdr, "Content-Type: application/json");
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
	}
	if (c->api_key != NULL) {
		key = xasprintf("X-API-Key: %s", c->api_key);
		hdr = curl_slist_append(hdr, key);
	} else if (c->user != NULL) {
		curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(h, CURLOPT_USERNAME, c->user);
		curl_easy_setopt(h, CURLOPT_PASSWORD, c->password ? c->password : "");
	}
	if (c->ca_file != NULL) {
		/* our own certificate, trusted as such, whatever name it has */
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &out);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	long status = 0;
	CURLcode rc = curl_easy_perform(h);
	if (rc != CURLE_OK)
		fprintf(stderr, "zone-mta queue: cannot reach the daemon's API at %s: %s\n",
			c->base, curl_easy_strerror(rc));
	else
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (out.buf != NULL)
		*answer = json_loads(out.buf, 0, NULL);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	free(out.buf);
	free(text);
	free(key);
	free(url);
	return status;
}

/* The request's answer when it is a 2xx, else NULL after saying why
 * (*code set to the exit code). */
static json_t *call(const struct client *c, const char *method, const char *path,
		    const json_t *body, int *code)
{
	json_t *answer;
	long status = request(c, method, path, body, &answer);
	if (status >= 200 && status < 300 && answer != NULL)
		return answer;
	if (status != 0) {
		const char *error = json_string_value(json_object_get(answer, "error"));
		fprintf(stderr, "zone-mta queue: %s %s: %ld %s\n", method, path, status,
			error ? error : "(no reason given)");
	}
	json_decref(answer);
	*code = status == 400 ? EXIT_USAGE : EXIT_FAILED;
	return NULL;
}

static char *escape(const char *s)
{
	char *e = curl_easy_escape(NULL, s, 0);
	char *out = xstrdup(e);
	curl_free(e);
	return out;
}

/* `prefix` (which has a query already) and the filter's fields. */
static char *with_filter(char *prefix, const json_t *filter)
{
	const char *k;
	json_t *v;
	json_object_foreach ((json_t *)filter, k, v) {
		char *e = escape(json_string_value(v));
		char *p = xasprintf("%s&%s=%s", prefix, k, e);
		free(prefix);
		free(e);
		prefix = p;
	}
	return prefix;
}

/* --- output --- */

static void print_json(const json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	printf("%s\n", s);
	free(s);
}

/* A table: rows of cells (owned strings), columns as wide as their widest. */
struct table {
	size_t ncols, nrows, cap;
	char **cells;
	size_t *width;
	int max_width; /* the last column is cut there (0: never) */
};

static void table_init(struct table *t, size_t ncols)
{
	*t = (struct table){.ncols = ncols, .width = xcalloc(ncols, sizeof(size_t))};
}

static void table_row(struct table *t, ...)
{
	va_list ap;
	va_start(ap, t);
	t->cells = xreallocarray_grow(t->cells, &t->cap, (t->nrows + 1) * t->ncols,
				      sizeof(*t->cells));
	for (size_t i = 0; i < t->ncols; i++) {
		const char *v = va_arg(ap, const char *);
		char *cell = xstrdup(v ? v : "-");
		for (char *p = cell; *p; p++)
			if (*p == '\n' || *p == '\r' || *p == '\t')
				*p = ' ';
		if (i == t->ncols - 1 && t->max_width > 0 && strlen(cell) > (size_t)t->max_width)
			strcpy(cell + t->max_width - 3, "...");
		t->cells[t->nrows * t->ncols + i] = cell;
		if (strlen(cell) > t->width[i])
			t->width[i] = strlen(cell);
	}
	t->nrows++;
	va_end(ap);
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t->width);
}

/* Prints the table, then frees it. */
static void table_print(struct table *t)
{
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t i = 0; i < t->ncols; i++) {
			const char *cell = t->cells[r * t->ncols + i];
			if (i + 1 < t->ncols)
				printf("%-*s  ", (int)t->width[i], cell);
			else
				printf("%s\n", cell);
		}
	}
	table_free(t);
}

static const char *str(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static json_int_t num(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

/* "3m", "2h", "5d": how long ago `ms` was. */
static void age(json_int_t ms, char *buf, size_t size)
{
	long long s = ((long long)time(NULL) * 1000 - ms) / 1000;
	if (s < 0)
		s = 0;
	if (s < 120)
		snprintf(buf, size, "%llds", s);
	else if (s < 7200)
		snprintf(buf, size, "%lldm", s / 60);
	else if (s < 172800)
		snprintf(buf, size, "%lldh", s / 3600);
	else
		snprintf(buf, size, "%lldd", s / 86400);
}

static void iso(json_int_t ms, char *buf, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *state_of(const json_t *row)
{
	if (json_is_true(json_object_get(row, "held")))
		return "held";
	if (json_is_true(json_object_get(row, "paused")))
		return "paused";
	return json_object_get(row, "deferred") ? "deferred" : "queued";
}

/* --- commands --- */

struct args {
	json_t *filter; /* --zone ... */
	json_int_t limit;
	bool all;
	const char *to, *reason, *until;
	const char *sort; /* list: the API's sort= */
	bool descending;
	char **pos; /* after the command */
	int npos;
};

static int cmd_list(const struct client *c, const struct args *a)
{
	json_t *rows = json_array();
	char *after = NULL;
	int code = 0;
	do {
		char *path = with_filter(
		    xasprintf("/deliveries?limit=%lld", (long long)(a->limit ? a->limit : 100)),
		    a->filter);
		if (a->sort != NULL) {
			char *e = escape(a->sort);
			char *p = xasprintf("%s&sort=%s&order=%s", path, e,
					    a->descending ? "desc" : "asc");
			free(path);
			free(e);
			path = p;
		}
		if (after != NULL) {
			char *e = escape(after);
			char *p = xasprintf("%s&after=%s", path, e);
			free(path);
			free(e);
			path = p;
		}
		json_t *page = call(c, "GET", path, NULL, &code);
		free(path);
		free(after);
		after = NULL;
		if (page == NULL) {
			json_decref(rows);
			return code;
		}
		json_array_extend(rows, json_object_get(page, "deliveries"));
		if (a->all && str(page, "next") != NULL)
			after = xstrdup(str(page, "next"));
		json_decref(page);
	} while (after != NULL);
	if (c->json) {
		print_json(rows);
	} else {
		struct table t;
		table_init(&t, 8);
		t.max_width = 60;
		table_row(&t, "ID/SEQ", "ZONE", "RECIPIENT", "FROM", "AGE", "STATE", "TRIES",
			  "LAST REPLY");
		size_t i;
		json_t *r;
		json_array_foreach (rows, i, r) {
			char id[40], ago[16], tries[16];
			snprintf(id, sizeof(id), "%s/%s", str(r, "id"), str(r, "seq"));
			age(num(r, "created"), ago, sizeof(ago));
			const json_t *d = json_object_get(r, "deferred");
			snprintf(tries, sizeof(tries), "%lld",
				 (long long)(d ? num(d, "count") : 0));
			table_row(&t, id, str(r, "zone"), str(r, "recipient"), str(r, "from"), ago,
				  state_of(r), tries, d ? str(d, "response") : NULL);
		}
		table_print(&t);
		printf("%zu deliveries\n", json_array_size(rows));
	}
	json_decref(rows);
	return 0;
}

static int cmd_show(const struct client *c, const struct args *a)
{
	if (a->npos != 1) {
		fprintf(stderr, "zone-mta queue: show needs one queue id\n");
		return EXIT_USAGE;
	}
	int code = 0;
	char *path = xasprintf("/message/%s", a->pos[0]);
	json_t *m = call(c, "GET", path, NULL, &code);
	free(path);
	if (m == NULL)
		return code;
	if (c->json) {
		print_json(m);
		json_decref(m);
		return 0;
	}
	const json_t *meta = json_object_get(m, "meta");
	char when[32] = "-";
	if (json_is_integer(json_object_get(meta, "time")))
		iso(num(meta, "time"), when, sizeof(when));
	printf("Queue id:   %s\nFrom:       <%s>\nMessage-ID: %s\nQueued:     %s\n"
	       "Interface:  %s\nOrigin:     %s\nBody:       %lld bytes\n",
	       a->pos[0], str(meta, "from") ? str(meta, "from") : "",
	       str(meta, "messageId") ? str(meta, "messageId") : "-", when,
	       str(meta, "interface") ? str(meta, "interface") : "-",
	       str(meta, "origin") ? str(meta, "origin") : "-", (long long)num(meta, "bodySize"));
	const char *user = str(meta, "user");
	if (user != NULL)
		printf("User:       %s\n", user);
	printf("\nHeaders:\n");
	size_t i;
	json_t *h;
	json_array_foreach (json_object_get(meta, "headers"), i, h)
		printf("  %s\n", str(h, "line")); /* folded lines as they came */
	printf("\nDeliveries:\n");
	struct table t;
	table_init(&t, 7);
	t.max_width = 70;
	table_row(&t, "SEQ", "ZONE", "RECIPIENT", "STATE", "TRIES", "NEXT", "LAST REPLY");
	json_array_foreach (json_object_get(m, "messages"), i, h) {
		const json_t *d = json_object_get(h, "deferred");
		char tries[16], next[32] = "-";
		snprintf(tries, sizeof(tries), "%lld", (long long)(d ? num(d, "count") : 0));
		if (d != NULL && json_is_integer(json_object_get(d, "next")))
			iso(num(d, "next"), next, sizeof(next));
		table_row(&t, str(h, "seq"), str(h, "zone"), str(h, "recipient"),
			  json_is_true(json_object_get(h, "held")) ? "held"
			  : d != NULL                              ? "deferred"
								   : "queued",
			  tries, next, d ? str(d, "response") : NULL);
	}
	table_print(&t);
	/* each failed attempt of each delivery, oldest first */
	struct table hist;
	table_init(&hist, 7);
	hist.max_width = 70;
	table_row(&hist, "SEQ", "TIME", "MX", "ADDRESS", "FROM", "TLS", "REPLY");
	json_array_foreach (json_object_get(m, "messages"), i, h) {
		size_t j;
		json_t *try;
		json_array_foreach (json_object_get(h, "history"), j, try) {
			char at[32];
			iso(num(try, "time"), at, sizeof(at));
			table_row(&hist, str(h, "seq"), at, str(try, "mx"),
				  str(try, "remoteAddress"), str(try, "localAddress"),
				  str(try, "tls"), str(try, "response"));
		}
	}
	if (hist.nrows > 1) {
		printf("\nAttempts:\n");
		table_print(&hist);
	} else {
		table_free(&hist);
	}
	json_decref(m);
	return 0;
}

static int cmd_summary(const struct client *c, const struct args *a)
{
	char *path = with_filter(xstrdup("/summary?limit=1000"), a->filter);
	int code = 0;
	json_t *s = call(c, "GET", path, NULL, &code);
	free(path);
	if (s == NULL)
		return code;
	if (c->json) {
		print_json(s);
		json_decref(s);
		return 0;
	}
	/* qshape's layout: a row per domain, its total, then per age bucket */
	const json_t *buckets = json_object_get(s, "buckets");
	size_t nb = json_array_size(buckets);
	printf("%-32s %8s", "DOMAIN", "TOTAL");
	for (size_t b = 0; b < nb; b++)
		printf(" %7s", json_string_value(json_array_get(buckets, b)));
	printf("\n%-32s %8lld", "TOTAL", (long long)num(s, "total"));
	json_t *sums = json_array();
	for (size_t b = 0; b < nb; b++)
		json_array_append_new(sums, json_integer(0));
	size_t i;
	json_t *d;
	json_array_foreach (json_object_get(s, "domains"), i, d)
		for (size_t b = 0; b < nb; b++)
			json_array_set_new(
			    sums, b,
			    json_integer(
				json_integer_value(json_array_get(sums, b)) +
				json_integer_value(json_array_get(json_object_get(d, "ages"), b))));
	for (size_t b = 0; b < nb; b++)
		printf(" %7lld", (long long)json_integer_value(json_array_get(sums, b)));
	printf("\n");
	json_decref(sums);
	json_array_foreach (json_object_get(s, "domains"), i, d) {
		printf("%-32.32s %8lld", str(d, "domain"), (long long)num(d, "total"));
		for (size_t b = 0; b < nb; b++)
			printf(" %7lld", (long long)json_integer_value(
					     json_array_get(json_object_get(d, "ages"), b)));
		printf("\n");
	}
	printf("\nheld %lld, paused %lld, deferred %lld\n", (long long)num(s, "held"),
	       (long long)num(s, "paused"), (long long)num(s, "deferred"));
	const json_t *reasons = json_object_get(s, "reasons");
	if (json_array_size(reasons) > 0) {
		printf("\nTop deferral reasons:\n");
		json_array_foreach (reasons, i, d)
			printf("%8lld  %s\n", (long long)num(d, "count"), str(d, "reason"));
	}
	json_decref(s);
	return 0;
}

/* Asks before an operation on more than one message; true to go on. */
static bool confirmed(const struct client *c, const char *action, const struct args *a)
{
	if (c->yes || (strcmp(action, "bounce") != 0 && strcmp(action, "delete") != 0))
		return true;
	char what[200];
	if (a->npos > 0) {
		if (a->npos == 1)
			return true;
		snprintf(what, sizeof(what), "%d messages", a->npos);
	} else {
		/* how many the filter matches now (header filters: unknown) */
		json_int_t n = -1;
		if (json_object_get(a->filter, "messageId") == NULL &&
		    json_object_get(a->filter, "header") == NULL) {
			int code;
			char *path = with_filter(xstrdup("/summary?limit=1"), a->filter);
			json_t *s = call(c, "GET", path, NULL, &code);
			free(path);
			n = s ? num(s, "total") : -1;
			json_decref(s);
		}
		if (n == 0)
			return true; /* nothing to lose */
		if (n > 0)
			snprintf(what, sizeof(what), "%lld deliveries", (long long)n);
		else
			snprintf(what, sizeof(what), "every delivery the filter matches");
	}
	if (!isatty(STDIN_FILENO)) {
		fprintf(stderr,
			"zone-mta queue: %s would act on %s: not asked without a terminal; "
			"--yes to go ahead\n",
			action, what);
		return false;
	}
	fprintf(stderr, "%s %s? [y/N] ", action, what);
	char line[16];
	return fgets(line, sizeof(line), stdin) != NULL && (line[0] == 'y' || line[0] == 'Y');
}

static int cmd_op(const struct client *c, const char *action, const struct args *a)
{
	if (a->npos == 0 && json_object_size(a->filter) == 0) {
		fprintf(stderr, "zone-mta queue: %s needs queue ids or a filter\n", action);
		return EXIT_USAGE;
	}
	if (a->npos > 0 && json_object_size(a->filter) > 0) {
		fprintf(stderr, "zone-mta queue: %s takes queue ids or a filter, not both\n",
			action);
		return EXIT_USAGE;
	}
	if (strcmp(action, "rebind") == 0 && a->to == NULL) {
		fprintf(stderr, "zone-mta queue: rebind needs --to ZONE\n");
		return EXIT_USAGE;
	}
	if (!confirmed(c, action, a))
		return EXIT_USAGE;
	json_t *body = json_pack("{s:s}", "action", action);
	if (a->npos > 0) {
		json_t *ids = json_array();
		for (int i = 0; i < a->npos; i++)
			json_array_append_new(ids, json_string(a->pos[i]));
		json_object_set_new(body, "ids", ids);
	} else {
		json_object_set(body, "filter", a->filter);
	}
	if (a->to != NULL)
		json_object_set_new(body, "zone", json_string(a->to));
	if (a->reason != NULL)
		json_object_set_new(body, "reason", json_string(a->reason));
	int code = 0;
	json_t *started = call(c, "POST", "/ops", body, &code);
	json_decref(body);
	if (started == NULL)
		return code;
	char *path = xasprintf("/ops/%s", str(json_object_get(started, "op"), "id"));
	json_decref(started);
	json_t *op = NULL;
	for (;;) {
		op = call(c, "GET", path, NULL, &code);
		/* done, or interrupted by a restart of the daemon */
		if (op == NULL ||
		    strcmp(str(op, "state") ? str(op, "state") : "done", "running") != 0)
			break;
		json_decref(op);
		usleep(200 * 1000);
	}
	free(path);
	if (op == NULL)
		return code;
	bool done = strcmp(str(op, "state") ? str(op, "state") : "done", "done") == 0;
	if (c->json)
		print_json(op);
	else {
		printf("%s: %lld affected of %lld matched (%lld looked at); operation %s", action,
		       (long long)num(op, "affected"), (long long)num(op, "matched"),
		       (long long)num(op, "scanned"), str(op, "id"));
		if (num(op, "afterAttempt") > 0)
			printf("; %lld in flight, acted on if their attempt defers",
			       (long long)num(op, "afterAttempt"));
		if (!done)
			printf(" (%s)", str(op, "state"));
		printf("\n");
	}
	json_decref(op);
	return done ? 0 : 1; /* interrupted: the daemon stopped meanwhile */
}

static int cmd_pause(const struct client *c, const struct args *a)
{
	json_t *body = json_deep_copy(a->filter);
	const char *k;
	json_t *v;
	json_object_foreach (body, k, v)
		if (strcmp(k, "zone") && strcmp(k, "domain") && strcmp(k, "sender") &&
		    strcmp(k, "user")) {
			fprintf(stderr,
				"zone-mta queue: pause takes --zone, --domain, --sender, "
				"--user, --until, --reason (not --%s)\n",
				k);
			json_decref(body);
			return EXIT_USAGE;
		}
	if (a->until != NULL)
		json_object_set_new(body, "until", json_string(a->until));
	if (a->reason != NULL)
		json_object_set_new(body, "reason", json_string(a->reason));
	int code = 0;
	json_t *r = call(c, "POST", "/pauses", body, &code);
	json_decref(body);
	if (r == NULL)
		return code;
	if (c->json)
		print_json(json_object_get(r, "pause"));
	else
		printf("paused: %s\n", str(json_object_get(r, "pause"), "id"));
	json_decref(r);
	return 0;
}

static int cmd_resume(const struct client *c, const struct args *a)
{
	if (a->npos != 1) {
		fprintf(stderr, "zone-mta queue: resume needs one pause id (see: queue pauses)\n");
		return EXIT_USAGE;
	}
	int code = 0;
	char *path = xasprintf("/pauses/%s", a->pos[0]);
	json_t *r = call(c, "DELETE", path, NULL, &code);
	free(path);
	if (r == NULL)
		return code;
	if (c->json)
		print_json(r);
	else
		printf("resumed: %s\n", a->pos[0]);
	json_decref(r);
	return 0;
}

/* The target of a pause or an audit entry as "key=value ..." */
static void target_text(const json_t *o, char *buf, size_t size, const char *skip)
{
	size_t n = 0;
	buf[0] = '\0';
	const char *k;
	json_t *v;
	json_object_foreach ((json_t *)o, k, v) {
		if (skip != NULL && strstr(skip, k) != NULL)
			continue;
		char *val = json_is_string(v) ? xstrdup(json_string_value(v))
					      : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		n += (size_t)snprintf(buf + n, n < size ? size - n : 0, "%s%s=%s", n ? " " : "", k,
				      val);
		free(val);
	}
}

static int cmd_pauses(const struct client *c)
{
	int code = 0;
	json_t *r = call(c, "GET", "/pauses", NULL, &code);
	if (r == NULL)
		return code;
	if (c->json) {
		print_json(json_object_get(r, "pauses"));
	} else {
		struct table t;
		table_init(&t, 4);
		table_row(&t, "ID", "SINCE", "UNTIL", "WHAT");
		size_t i;
		json_t *p;
		json_array_foreach (json_object_get(r, "pauses"), i, p) {
			char since[32], until[32] = "-", what[512];
			iso(num(p, "created"), since, sizeof(since));
			if (json_is_integer(json_object_get(p, "until")))
				iso(num(p, "until"), until, sizeof(until));
			target_text(p, what, sizeof(what), "id created until by");
			table_row(&t, str(p, "id"), since, until, what);
		}
		table_print(&t);
	}
	json_decref(r);
	return 0;
}

static int cmd_ops(const struct client *c, const struct args *a)
{
	int code = 0;
	char *path = a->npos > 0 ? xasprintf("/ops/%s", a->pos[0]) : xstrdup("/ops");
	json_t *r = call(c, "GET", path, NULL, &code);
	free(path);
	if (r == NULL)
		return code;
	json_t *ops = a->npos > 0 ? json_pack("[O]", r) : json_incref(json_object_get(r, "ops"));
	if (c->json) {
		print_json(a->npos > 0 ? r : ops);
	} else {
		struct table t;
		table_init(&t, 7);
		t.max_width = 80;
		table_row(&t, "ID", "TIME", "ACTION", "BY", "AFFECTED", "STATE", "TARGET");
		size_t i;
		json_t *o;
		json_array_foreach (ops, i, o) {
			char when[32], by[128], affected[24], what[512];
			iso(num(o, "time"), when, sizeof(when));
			const json_t *who = json_object_get(o, "by");
			snprintf(by, sizeof(by), "%s@%s", str(who, "principal"),
				 str(who, "address") ? str(who, "address") : "-");
			snprintf(affected, sizeof(affected), "%lld", (long long)num(o, "affected"));
			target_text(json_object_get(o, "target"), what, sizeof(what), NULL);
			table_row(&t, str(o, "id"), when, str(o, "action"), by, affected,
				  str(o, "state") ? str(o, "state") : "done", what);
		}
		table_print(&t);
	}
	json_decref(ops);
	json_decref(r);
	return 0;
}

/* --- finding the daemon --- */

/* The API's address and credentials from the configuration. */
static int client_from_config(struct client *c, const struct config_source *src)
{
	char *errors = NULL;
	struct config *cfg = config_load(src, &errors);
	if (cfg == NULL) {
		fprintf(stderr, "%s\nzone-mta queue: configuration is invalid\n", errors);
		free(errors);
		return EXIT_USAGE;
	}
	int rc = 0;
	if (!cfg->api.enabled) {
		fprintf(stderr, "zone-mta queue: the API is disabled (api.enabled: false); "
				"nothing to talk to\n");
		rc = EXIT_USAGE;
	} else {
		const char *host = cfg->api.host;
		bool tls = cfg->api.tls.key != NULL && cfg->api.tls.cert != NULL;
		if (strcmp(host, "0.0.0.0") == 0 || *host == '\0')
			host = "127.0.0.1";
		else if (strcmp(host, "::") == 0)
			host = "::1";
		bool v6 = strchr(host, ':') != NULL;
		c->base = xasprintf("%s://%s%s%s:%d", tls ? "https" : "http", v6 ? "[" : "", host,
				    v6 ? "]" : "", cfg->api.port);
		if (tls)
			c->ca_file = xstrdup(cfg->api.tls.cert);
		if (cfg->api.api_key != NULL)
			c->api_key = xstrdup(cfg->api.api_key);
		if (cfg->api.user != NULL) {
			c->user = xstrdup(cfg->api.user);
			c->password = xstrdup(cfg->api.password ? cfg->api.password : "");
		}
	}
	config_free(cfg);
	return rc;
}

enum {
	OPT_API = 256,
	OPT_JSON,
	OPT_ZONE,
	OPT_DOMAIN,
	OPT_RECIPIENT,
	OPT_SENDER,
	OPT_USER,
	OPT_STATUS,
	OPT_OLDER,
	OPT_MESSAGE_ID,
	OPT_HEADER,
	OPT_LIMIT,
	OPT_ALL,
	OPT_TO,
	OPT_REASON,
	OPT_UNTIL,
	OPT_SORT,
	OPT_DESC,
};

int queue_cmd(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"dir", required_argument, NULL, 'd'},
	    {"config", required_argument, NULL, 'c'},
	    {"api", required_argument, NULL, OPT_API},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"yes", no_argument, NULL, 'y'},
	    {"zone", required_argument, NULL, OPT_ZONE},
	    {"domain", required_argument, NULL, OPT_DOMAIN},
	    {"recipient", required_argument, NULL, OPT_RECIPIENT},
	    {"sender", required_argument, NULL, OPT_SENDER},
	    {"user", required_argument, NULL, OPT_USER},
	    {"status", required_argument, NULL, OPT_STATUS},
	    {"older", required_argument, NULL, OPT_OLDER},
	    {"message-id", required_argument, NULL, OPT_MESSAGE_ID},
	    {"header", required_argument, NULL, OPT_HEADER},
	    {"limit", required_argument, NULL, OPT_LIMIT},
	    {"all", no_argument, NULL, OPT_ALL},
	    {"to", required_argument, NULL, OPT_TO},
	    {"reason", required_argument, NULL, OPT_REASON},
	    {"until", required_argument, NULL, OPT_UNTIL},
	    {"sort", required_argument, NULL, OPT_SORT},
	    {"desc", no_argument, NULL, OPT_DESC},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static const char *const filter_keys[] = {
	    [OPT_ZONE - OPT_ZONE] = "zone",           [OPT_DOMAIN - OPT_ZONE] = "domain",
	    [OPT_RECIPIENT - OPT_ZONE] = "recipient", [OPT_SENDER - OPT_ZONE] = "sender",
	    [OPT_USER - OPT_ZONE] = "user",           [OPT_STATUS - OPT_ZONE] = "status",
	    [OPT_OLDER - OPT_ZONE] = "olderThan",     [OPT_MESSAGE_ID - OPT_ZONE] = "messageId",
	    [OPT_HEADER - OPT_ZONE] = "header",
	};
	struct config_source src = {0};
	struct client c = {0};
	struct args a = {.filter = json_object()};
	const char *api_url = NULL;
	int rc = 0, opt;
	optind = 1;
	opterr = 0;
	while (rc == 0 && (opt = getopt_long(argc, argv, "d:c:yh", longopts, NULL)) != -1) {
		char *end;
		switch (opt) {
		case 'd':
			src.app_dir = optarg;
			break;
		case 'c':
			src.extra_file = optarg;
			break;
		case OPT_API:
			api_url = optarg;
			break;
		case OPT_JSON:
			c.json = true;
			break;
		case 'y':
			c.yes = true;
			break;
		case OPT_LIMIT:
			a.limit = strtol(optarg, &end, 10);
			if (*end != '\0' || a.limit < 1 || a.limit > 1000) {
				fprintf(stderr, "zone-mta queue: --limit must be from 1 to 1000\n");
				rc = EXIT_USAGE;
			}
			break;
		case OPT_ALL:
			a.all = true;
			break;
		case OPT_TO:
			a.to = optarg;
			break;
		case OPT_REASON:
			a.reason = optarg;
			break;
		case OPT_UNTIL:
			a.until = optarg;
			break;
		case OPT_SORT:
			a.sort = optarg;
			break;
		case OPT_DESC:
			a.descending = true;
			break;
		case 'h':
			printf("%s", queue_usage);
			json_decref(a.filter);
			return 0;
		default:
			if (opt >= OPT_ZONE && opt <= OPT_HEADER) {
				json_object_set_new(a.filter, filter_keys[opt - OPT_ZONE],
						    json_string(optarg));
				break;
			}
			fprintf(stderr,
				"zone-mta queue: %s: unknown option or missing argument\n\n%s",
				argv[optind - 1], queue_usage);
			rc = EXIT_USAGE;
		}
	}
	if (rc == 0 && optind >= argc) {
		fprintf(stderr, "zone-mta queue: a command is needed\n\n%s", queue_usage);
		rc = EXIT_USAGE;
	}
	if (rc == 0 && api_url != NULL) {
		c.base = xstrdup(api_url);
		size_t n = strlen(c.base);
		while (n > 0 && c.base[n - 1] == '/')
			c.base[--n] = '\0';
		const char *key = getenv("ZONEMTA_API_KEY");
		c.api_key = key && *key ? xstrdup(key) : NULL;
	} else if (rc == 0) {
		rc = client_from_config(&c, &src);
	}
	if (rc == 0) {
		const char *cmd = argv[optind];
		a.pos = argv + optind + 1;
		a.npos = argc - optind - 1;
		curl_global_init(CURL_GLOBAL_DEFAULT);
		if (strcmp(cmd, "list") == 0)
			rc = cmd_list(&c, &a);
		else if (strcmp(cmd, "show") == 0)
			rc = cmd_show(&c, &a);
		else if (strcmp(cmd, "summary") == 0)
			rc = cmd_summary(&c, &a);
		else if (strcmp(cmd, "flush") == 0 || strcmp(cmd, "hold") == 0 ||
			 strcmp(cmd, "release") == 0 || strcmp(cmd, "bounce") == 0 ||
			 strcmp(cmd, "delete") == 0 || strcmp(cmd, "rebind") == 0)
			rc = cmd_op(&c, cmd, &a);
		else if (strcmp(cmd, "pause") == 0)
			rc = cmd_pause(&c, &a);
		else if (strcmp(cmd, "resume") == 0)
			rc = cmd_resume(&c, &a);
		else if (strcmp(cmd, "pauses") == 0)
			rc = cmd_pauses(&c);
		else if (strcmp(cmd, "ops") == 0)
			rc = cmd_ops(&c, &a);
		else {
			fprintf(stderr, "zone-mta queue: unknown command %s\n\n%s", cmd,
				queue_usage);
			rc = EXIT_USAGE;
		}
		curl_global_cleanup();
	}
	json_decref(a.filter);
	free(c.base);
	free(c.api_key);
	free(c.user);
	free(c.password);
	free(c.ca_file);
	return rc;
}
