/* SPDX-License-Identifier: EUPL-1.2 */
/* SMTP AUTH backends, cache and failure counting; see smtp_auth.h. */
#include "smtp/smtp_auth.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "core/clock.h"
#include "core/hmap.h"
#include "core/log.h"
#include "core/passwd.h"
#include "core/xmalloc.h"

/* Entries kept in the cache and the failure table before expired ones are
 * swept (and, for the cache, all of them if that is not enough). */
#define AUTH_TABLE_MAX 10000
/* Longest user name and password taken (ZoneMTA's limit). */
#define AUTH_FIELD_MAX 1024

struct smtp_auth {
	const struct smtp_iface_config *iface;
	struct http_client *http;
	struct workpool *cpu;
	struct passwd_file *users;
	struct strmap *cache;    /* key → struct cached */
	struct strmap *failures; /* client → struct failures */
};

struct cached {
	int64_t expires;
	enum smtp_auth_result result;
	char *user;
};

struct failures {
	int count;
	int64_t window_end;
};

/* A check in progress; found by id, so a late answer for a cancelled one
 * (or a freed listener) finds nothing. */
struct pending {
	uint64_t id;
	struct smtp_auth *a;
	smtp_auth_done_fn done;
	void *arg;
	char *user;
	char key[65];
	uint64_t http_id;
};

static struct u64map *pending_checks; /* id → struct pending, all listeners */
static uint64_t pending_seq;

struct verify_job {
	struct workpool_job job;
	uint64_t id;
	char *hash, *password;
	bool known_user, ok;
};

static void cached_free(struct cached *c)
{
	if (c != NULL) {
		free(c->user);
		free(c);
	}
}

struct smtp_auth *smtp_auth_new(const struct smtp_iface_config *iface, struct http_client *http,
				struct workpool *cpu, char **err)
{
	struct smtp_auth *a = xcalloc(1, sizeof(*a));
	a->iface = iface;
	a->http = http;
	a->cpu = cpu;
	a->cache = strmap_new();
	a->failures = strmap_new();
	if (pending_checks == NULL)
		pending_checks = u64map_new();
	if (iface->auth_users_file != NULL && smtp_auth_reload(a, err) != 0) {
		smtp_auth_free(a);
		return NULL;
	}
	return a;
}

int smtp_auth_reload(struct smtp_auth *a, char **err)
{
	if (a->iface->auth_users_file == NULL)
		return 0;
	struct passwd_file *p = passwd_file_load(a->iface->auth_users_file, err);
	if (p == NULL)
		return -1;
	passwd_file_free(a->users);
	a->users = p;
	/* Cached answers may be stale now. */
	size_t pos = 0;
	const char *key;
	void *v;
	while (strmap_next(a->cache, &pos, &key, &v))
		cached_free(v);
	strmap_free(a->cache);
	a->cache = strmap_new();
	return 0;
}

static void pending_free(struct pending *p)
{
	u64map_remove(pending_checks, p->id);
	free(p->user);
	free(p);
}

void smtp_auth_free(struct smtp_auth *a)
{
	if (a == NULL)
		return;
	/* Collect first: the map may not change while it is walked. */
	size_t n = u64map_count(pending_checks), pos = 0, k = 0;
	struct pending **mine = xcalloc(n ? n : 1, sizeof(*mine));
	uint64_t id;
	void *v;
	while (u64map_next(pending_checks, &pos, &id, &v))
		if (((struct pending *)v)->a == a)
			mine[k++] = v;
	for (size_t i = 0; i < k; i++) {
		http_client_cancel(a->http, mine[i]->http_id);
		pending_free(mine[i]);
	}
	free(mine);
	pos = 0;
	const char *key;
	while (strmap_next(a->cache, &pos, &key, &v))
		cached_free(v);
	strmap_free(a->cache);
	pos = 0;
	while (strmap_next(a->failures, &pos, &key, &v))
		free(v);
	strmap_free(a->failures);
	passwd_file_free(a->users);
	free(a);
}

/* Removes the entries whose time is up; all of them when that is not
 * enough and `all_if_full`. */
static void table_sweep(struct strmap *m, bool is_cache, int64_t now)
{
	if (strmap_count(m) < AUTH_TABLE_MAX)
		return;
	for (int pass = 0; pass < 2 && strmap_count(m) >= AUTH_TABLE_MAX; pass++) {
		if (pass == 1 && !is_cache)
			break;
		size_t n = strmap_count(m), pos = 0, k = 0;
		char **gone = xcalloc(n, sizeof(*gone));
		const char *key;
		void *v;
		while (strmap_next(m, &pos, &key, &v)) {
			int64_t end = is_cache ? ((struct cached *)v)->expires
					       : ((struct failures *)v)->window_end;
			if (pass == 1 || end <= now)
				gone[k++] = xstrdup(key);
		}
		for (size_t i = 0; i < k; i++) {
			void *old = strmap_remove(m, gone[i]);
			if (is_cache)
				cached_free(old);
			else
				free(old);
			free(gone[i]);
		}
		free(gone);
	}
}

/* Ends a check: the cache, the log line, the caller's callback. */
static void finish(struct pending *p, enum smtp_auth_result result, const char *user)
{
	struct smtp_auth *a = p->a;
	if (result != SMTP_AUTH_TEMPFAIL && a->iface->auth_cache_ttl_ms > 0) {
		int64_t now = clock_mono_ms();
		table_sweep(a->cache, true, now);
		struct cached *c = xcalloc(1, sizeof(*c));
		c->expires = now + (int64_t)a->iface->auth_cache_ttl_ms;
		c->result = result;
		c->user = xstrdup(user);
		cached_free(strmap_put(a->cache, p->key, c));
	}
	smtp_auth_done_fn done = p->done;
	void *arg = p->arg;
	char *name = xstrdup(user);
	pending_free(p);
	done(arg, result, name, false);
	free(name);
}

static void on_http_answer(void *arg, const struct http_response *res)
{
	struct pending *p = u64map_get(pending_checks, (uint64_t)(uintptr_t)arg);
	if (p == NULL)
		return;
	p->http_id = 0;
	if (res->error != HTTPC_OK) {
		log_warn("smtp_auth_backend", "interface=%s url=%s error=\"%s\"", p->a->iface->name,
			 p->a->iface->auth_url, res->error_text);
		finish(p, SMTP_AUTH_TEMPFAIL, p->user);
		return;
	}
	if (res->status >= 200 && res->status < 300) {
		/* The service may name the user to record. */
		json_t *body = json_loadb(res->body, res->body_len, 0, NULL);
		const char *named = json_is_object(body)
					? json_string_value(json_object_get(body, "user"))
					: NULL;
		char *user = xstrdup(named != NULL && *named ? named : p->user);
		json_decref(body);
		finish(p, SMTP_AUTH_OK, user);
		free(user);
		return;
	}
	if (res->status == 401 || res->status == 403) {
		finish(p, SMTP_AUTH_FAILED, p->user);
		return;
	}
	log_warn("smtp_auth_backend", "interface=%s url=%s status=%d", p->a->iface->name,
		 p->a->iface->auth_url, res->status);
	finish(p, SMTP_AUTH_TEMPFAIL, p->user);
}

/* Percent-encodes a query value (RFC 3986 unreserved characters pass). */
static void query_append(char **url, const char *name, const char *value)
{
	size_t len = strlen(value);
	char *enc = xmalloc(len * 3 + 1), *o = enc;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)value[i];
		if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			*o++ = (char)ch;
		} else {
			snprintf(o, 4, "%%%02X", ch);
			o += 3;
		}
	}
	*o = '\0';
	char *next = xasprintf("%s%c%s=%s", *url, strchr(*url, '?') ? '&' : '?', name, enc);
	free(enc);
	free(*url);
	*url = next;
}

static void verify_run(struct workpool_job *job)
{
	struct verify_job *j = (struct verify_job *)job;
	/* An unknown user costs the same hash as a known one: no timing
	 * difference tells which names exist. */
	j->ok = passwd_verify(j->hash, j->password) && j->known_user;
}

static void verify_done(struct workpool_job *job)
{
	struct verify_job *j = (struct verify_job *)job;
	struct pending *p = u64map_get(pending_checks, j->id);
	if (p != NULL)
		finish(p, j->ok ? SMTP_AUTH_OK : SMTP_AUTH_FAILED, p->user);
	free(j->hash);
	free_secret(j->password);
	free(j);
}

uint64_t smtp_auth_check(struct smtp_auth *a, const char *user, const char *password,
			 const char *method, const char *client, smtp_auth_done_fn done, void *arg)
{
	if (strlen(user) > AUTH_FIELD_MAX || strlen(password) > AUTH_FIELD_MAX) {
		done(arg, SMTP_AUTH_FAILED, user, false);
		return 0;
	}
	struct pending *p = xcalloc(1, sizeof(*p));
	p->id = ++pending_seq;
	p->a = a;
	p->done = done;
	p->arg = arg;
	p->user = xstrdup(user);

	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, a->iface->name, strlen(a->iface->name) + 1);
	EVP_DigestUpdate(ctx, user, strlen(user) + 1);
	EVP_DigestUpdate(ctx, password, strlen(password));
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	for (unsigned i = 0; i < 32; i++)
		snprintf(p->key + 2 * i, 3, "%02x", md[i]);

	struct cached *c = strmap_get(a->cache, p->key);
	if (c != NULL && c->expires > clock_mono_ms()) {
		enum smtp_auth_result r = c->result;
		char *name = xstrdup(c->user);
		free(p->user);
		free(p);
		done(arg, r, name, true);
		free(name);
		return 0;
	}
	u64map_put(pending_checks, p->id, p);
	if (a->iface->auth_url != NULL) {
		char *url = xstrdup(a->iface->auth_url);
		query_append(&url, "transport", "SMTP");
		query_append(&url, "method", method);
		query_append(&url, "client", client);
		query_append(&url, "interface", a->iface->name);
		struct http_request req = {.method = "GET",
					   .url = url,
					   .user = user,
					   .password = password,
					   .max_response = 64 * 1024};
		p->http_id = http_client_request(a->http, &req, on_http_answer,
						 (void *)(uintptr_t)p->id);
		free(url);
		return p->id;
	}
	struct verify_job *j = xcalloc(1, sizeof(*j));
	j->job.run = verify_run;
	j->job.done = verify_done;
	j->id = p->id;
	const char *hash = a->users != NULL ? passwd_file_hash(a->users, user) : NULL;
	j->known_user = hash != NULL;
	/* An unknown user is checked against another user's hash. */
	if (hash == NULL && a->users != NULL)
		hash = passwd_file_any_hash(a->users);
	j->hash = xstrdup(hash != NULL ? hash : "*");
	j->password = xstrdup(password);
	workpool_submit(a->cpu, &j->job);
	return p->id;
}

void smtp_auth_cancel(struct smtp_auth *a, uint64_t id)
{
	struct pending *p = id ? u64map_get(pending_checks, id) : NULL;
	if (p == NULL)
		return;
	http_client_cancel(a->http, p->http_id);
	pending_free(p);
}

bool smtp_auth_failed(struct smtp_auth *a, const char *client)
{
	int64_t now = clock_mono_ms();
	struct failures *f = strmap_get(a->failures, client);
	if (f == NULL) {
		table_sweep(a->failures, false, now);
		f = xcalloc(1, sizeof(*f));
		strmap_put(a->failures, client, f);
	}
	if (now >= f->window_end) {
		f->count = 0;
		f->window_end = now + (int64_t)a->iface->auth_failure_window_ms;
	}
	f->count++;
	return f->count >= a->iface->auth_max_failures;
}

bool smtp_auth_blocked(struct smtp_auth *a, const char *client)
{
	const struct failures *f = strmap_get(a->failures, client);
	return f != NULL && clock_mono_ms() < f->window_end &&
	       f->count >= a->iface->auth_max_failures;
}

/* Strict base64: the alphabet only, '=' only as padding at the end. */
static bool b64_valid(const char *s, size_t n)
{
	if (n % 4 != 0)
		return false;
	size_t pad = n >= 1 && s[n - 1] == '=' ? (n >= 2 && s[n - 2] == '=' ? 2 : 1) : 0;
	for (size_t i = 0; i < n - pad; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '+' && s[i] != '/')
			return false;
	return true;
}

char *smtp_auth_b64_decode(const char *b64, size_t *len)
{
	size_t n = strlen(b64);
	if (!b64_valid(b64, n))
		return NULL;
	unsigned char *out = xmalloc(n / 4 * 3 + 1);
	int got = n ? EVP_DecodeBlock(out, (const unsigned char *)b64, (int)n) : 0;
	if (got < 0) {
		free(out);
		return NULL;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	if (n >= 1 && b64[n - 1] == '=')
		got--;
	if (n >= 2 && b64[n - 2] == '=')
		got--;
	out[got] = '\0';
	*len = (size_t)got;
	return (char *)out;
}

int smtp_auth_plain_decode(const char *b64, char **user, char **password)
{
	size_t len;
	char *msg = smtp_auth_b64_decode(b64, &len);
	if (msg == NULL)
		return -1;
	/* authzid NUL authcid NUL passwd; the authzid is ignored (no proxy
	 * authorization): the user is who authenticates. */
	char *nul1 = memchr(msg, '\0', len);
	char *nul2 = nul1 ? memchr(nul1 + 1, '\0', len - (size_t)(nul1 + 1 - msg)) : NULL;
	if (nul1 == NULL || nul2 == NULL ||
	    memchr(nul2 + 1, '\0', len - (size_t)(nul2 + 1 - msg))) {
		explicit_bzero(msg, len);
		free(msg);
		return -1;
	}
	bool empty_user = nul1[1] == '\0';
	if (!empty_user) {
		*user = xstrdup(nul1 + 1);
		*password = xstrdup(nul2 + 1);
	}
	explicit_bzero(msg, len);
	free(msg);
	return empty_user ? -1 : 0;
}
