/* SPDX-License-Identifier: EUPL-1.2 */
/* Config loading, merging, validation and typed access; see config.h. */
#include "core/config.h"
#include "core/config_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/xmalloc.h"
#include "dkim/dkim.h"
#include "net/tls.h"

extern const char zmta_default_config[];
extern const size_t zmta_default_config_len;

/* Stop listing problems after this many: the first ones matter. */
#define CONFIG_MAX_ERRORS 20

void problem_add(struct problems *p, const struct cfg_node *at, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *what = xvasprintf(fmt, ap);
	va_end(ap);
	p->list = xreallocarray_grow(p->list, &p->cap, p->count + 1, sizeof(*p->list));
	p->list[p->count++] = (struct problem){at->file, at->line,
					       xasprintf("%s:%d: %s", at->file, at->line, what)};
	free(what);
}

static int problem_cmp(const void *a, const void *b)
{
	const struct problem *x = a, *y = b;
	int c = strcmp(x->file, y->file);
	return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* Joins the sorted problems, one per line, into a new string: at most
 * `max` of them (0: all). */
static char *problems_join(struct problems *p, size_t max)
{
	qsort(p->list, p->count, sizeof(*p->list), problem_cmp);
	size_t shown = max == 0 || p->count < max ? p->count : max;
	char *out = xstrdup("");
	for (size_t i = 0; i < shown; i++) {
		char *next = xasprintf("%s%s%s", out, i ? "\n" : "", p->list[i].text);
		free(out);
		out = next;
	}
	if (p->count > shown) {
		char *next = xasprintf("%s\n(%zu more problems not shown: zone-mta check-config "
				       "lists them all)",
				       out, p->count - shown);
		free(out);
		out = next;
	}
	for (size_t i = 0; i < p->count; i++)
		free(p->list[i].text);
	free(p->list);
	return out;
}

bool config_parse_bool(const char *s, bool *out)
{
	if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0)
		*out = true;
	else if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0)
		*out = false;
	else
		return false;
	return true;
}

bool config_parse_int(const char *s, long long *out)
{
	char *end;
	if (*s == '\0' || isspace((unsigned char)*s))
		return false;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = v;
	return true;
}

struct unit {
	const char *name;
	uint64_t factor;
};

/* Parses "<digits>[ ]<unit>" with a unit from the table (case-insensitive);
 * a bare number takes `bare` as its factor. */
static bool parse_with_unit(const char *s, const struct unit *units, uint64_t bare, uint64_t *out)
{
	char *end;
	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	unsigned long long n = strtoull(s, &end, 10);
	if (errno != 0)
		return false;
	while (*end == ' ')
		end++;
	uint64_t factor = 0;
	if (*end == '\0') {
		factor = bare;
	} else {
		for (const struct unit *u = units; u->name != NULL; u++) {
			if (strcasecmp(end, u->name) == 0) {
				factor = u->factor;
				break;
			}
		}
	}
	if (factor == 0 || (n != 0 && n > UINT64_MAX / factor))
		return false;
	*out = n * factor;
	return true;
}

bool config_parse_duration(const char *s, uint64_t *ms)
{
	static const struct unit units[] = {
	    {"ms", 1},          {"s", 1000},       {"sec", 1000},      {"second", 1000},
	    {"seconds", 1000},  {"m", 60000},      {"min", 60000},     {"minute", 60000},
	    {"minutes", 60000}, {"h", 3600000},    {"hour", 3600000},  {"hours", 3600000},
	    {"d", 86400000},    {"day", 86400000}, {"days", 86400000}, {NULL, 0},
	};
	return parse_with_unit(s, units, 1, ms);
}

bool config_parse_size(const char *s, uint64_t *bytes)
{
	static const struct unit units[] = {
	    {"b", 1},
	    {"k", 1024},
	    {"kb", 1024},
	    {"m", 1024 * 1024},
	    {"mb", 1024 * 1024},
	    {"g", 1024 * 1024 * 1024},
	    {"gb", 1024 * 1024 * 1024},
	    {NULL, 0},
	};
	return parse_with_unit(s, units, 1, bytes);
}

bool config_parse_rate(const char *s, struct rate *out)
{
	char *end;
	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	unsigned long long n = strtoull(s, &end, 10);
	if (errno != 0 || n == 0)
		return false;
	while (*end == ' ')
		end++;
	if (strncasecmp(end, "messages", 8) == 0)
		end += 8;
	else if (strncasecmp(end, "message", 7) == 0)
		end += 7;
	while (*end == ' ')
		end++;
	if (*end++ != '/')
		return false;
	while (*end == ' ')
		end++;
	static const struct unit periods[] = {
	    {"second", 1000}, {"s", 1000},       {"sec", 1000},  {"minute", 60000}, {"m", 60000},
	    {"min", 60000},   {"hour", 3600000}, {"h", 3600000}, {NULL, 0},
	};
	for (const struct unit *u = periods; u->name != NULL; u++) {
		if (strcasecmp(end, u->name) == 0) {
			out->count = n;
			out->period_ms = u->factor;
			return true;
		}
	}
	return false;
}

static bool parse_ratio(const char *s, double *out)
{
	char *end;
	if (*s == '\0' || isspace((unsigned char)*s))
		return false;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || *end != '\0' || !(v >= 0.0 && v <= 1.0))
		return false;
	*out = v;
	return true;
}

static const char *kind_name(enum cfg_kind kind)
{
	switch (kind) {
	case CFG_NULL:
		return "null";
	case CFG_SCALAR:
		return "a single value";
	case CFG_MAP:
		return "a mapping";
	case CFG_SEQ:
		return "a list";
	}
	return "?";
}

/* What the node holds, for "(got ...)" in messages. */
static void describe(const struct cfg_node *n, char *buf, size_t len)
{
	if (n->kind == CFG_SCALAR)
		snprintf(buf, len, "'%.60s'", n->value);
	else
		snprintf(buf, len, "%s", kind_name(n->kind));
}

static void validate_node(const struct cfg_node *n, const struct cfg_schema *s, const char *path,
			  struct problems *errors);

/* Whether a value asks for nothing: false, null, an empty string, list or mapping. */
static bool unset_value(const struct cfg_node *n)
{
	bool b;
	return n->kind == CFG_NULL ||
	       (n->kind == CFG_SCALAR &&
		(n->value[0] == '\0' || (config_parse_bool(n->value, &b) && !b))) ||
	       (n->kind != CFG_SCALAR && n->nchild == 0);
}

/* Not in the schema: one of ZoneMTA's (a warning, or an error where
 * ignoring it would weaken what was asked), else an error. */
static void unknown_option(const struct cfg_node *c, const char *path, struct problems *errors)
{
	const struct config_compat *z = config_compat_lookup(path);
	if (z == NULL)
		problem_add(errors, c, "unknown option %s", path);
	else if (z->kind == COMPAT_IGNORED)
		problem_add(errors->warnings, c, "ignored: %s is not needed in zone-mta (%s)", path,
			    z->reason);
	else if (unset_value(c))
		; /* asks for nothing: nothing is lost */
	else if (z->kind == COMPAT_NOT_YET)
		problem_add(errors->warnings, c, "ignored: %s is not yet supported (%s)", path,
			    z->reason);
	else
		problem_add(errors, c,
			    "%s is not yet supported (%s): remove it or set it to false to run "
			    "without it",
			    path, z->reason);
}

static void validate_map(const struct cfg_node *n, const struct cfg_schema *fields,
			 const char *path, struct problems *errors)
{
	for (size_t i = 0; i < n->nchild; i++) {
		const struct cfg_node *c = n->child[i];
		char *cpath = *path ? xasprintf("%s.%s", path, c->key) : xstrdup(c->key);
		const struct cfg_schema *f = fields;
		while (f->key != NULL && strcmp(f->key, c->key) != 0)
			f++;
		if (f->key == NULL || (strcmp(cpath, "plugins") == 0 && c->kind == CFG_MAP))
			unknown_option(c, cpath, errors); /* ZoneMTA's plugins: a mapping */
		else
			validate_node(c, f, cpath, errors);
		free(cpath);
	}
}

/*
 * A duration given as a bare number: ZoneMTA's unit for that option (ms,
 * or seconds for CF_BARE_SECONDS), made explicit in the tree, with a
 * warning that a unit is clearer (once per option, not per list item).
 */
static void bare_duration(struct cfg_node *n, const struct cfg_schema *s, const char *path,
			  struct problems *errors)
{
	bool seconds = s->flags & CF_BARE_SECONDS;
	char *value = xasprintf("%s %s", n->value, seconds ? "s" : "ms");
	size_t base = strcspn(path, "[");
	struct problems *w = errors->warnings;
	bool first = path[base] == '\0' || strcmp(path + base, "[0]") == 0;
	if (first)
		problem_add(w, n,
			    "option %.*s: the bare number %s is read as %s (ZoneMTA's unit for "
			    "it); write \"%s\" to say so",
			    (int)base, path, n->value, value, value);
	free(n->value);
	n->value = value;
}

static void validate_scalar(const struct cfg_node *n, const struct cfg_schema *s, const char *path,
			    struct problems *errors)
{
	char got[80];
	describe(n, got, sizeof(got));
	bool b;
	long long i;
	uint64_t u;

	switch (s->type) {
	case CT_BOOL:
		if (n->quoted || !config_parse_bool(n->value, &b))
			problem_add(errors, n, "option %s must be true or false (got %s)", path,
				    got);
		break;
	case CT_INT:
		if (n->quoted || !config_parse_int(n->value, &i) || i < s->min || i > s->max)
			problem_add(errors, n,
				    "option %s must be an integer from %lld to %lld (got %s)", path,
				    s->min, s->max, got);
		break;
	case CT_DURATION:
		if (!n->quoted && n->value[0] != '\0' &&
		    strspn(n->value, "0123456789") == strlen(n->value))
			bare_duration((struct cfg_node *)n, s, path, errors);
		if (!config_parse_duration(n->value, &u))
			problem_add(errors, n,
				    "option %s must be a duration such as 500 ms, 10 s, 5 min, 2 "
				    "h, 3 days (got %s)",
				    path, got);
		else if (u < (uint64_t)s->min || u > (uint64_t)s->max)
			problem_add(errors, n, "option %s must be from %lld ms to %lld ms (got %s)",
				    path, s->min, s->max, got);
		break;
	case CT_SIZE:
		if (!config_parse_size(n->value, &u))
			problem_add(errors, n,
				    "option %s must be a size such as 512 KB, 30 MB, 1 GB (got %s)",
				    path, got);
		else if (u < (uint64_t)s->min || u > (uint64_t)s->max)
			problem_add(errors, n, "option %s must be from %lld to %lld bytes (got %s)",
				    path, s->min, s->max, got);
		break;
	case CT_ENUM: {
		const char *const *c = s->choices;
		while (*c != NULL && strcmp(*c, n->value) != 0)
			c++;
		if (*c == NULL) {
			char list[256] = "";
			for (c = s->choices; *c != NULL; c++)
				snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
					 c == s->choices ? "" : ", ", *c);
			problem_add(errors, n, "option %s must be one of %s (got %s)", path, list,
				    got);
		}
		break;
	}
	case CT_RATE: {
		struct rate r;
		if (!config_parse_rate(n->value, &r))
			problem_add(errors, n,
				    "option %s must be a rate such as 100 messages/second, /minute "
				    "or /hour (got %s)",
				    path, got);
		break;
	}
	case CT_RATIO: {
		double d;
		if (n->quoted || !parse_ratio(n->value, &d))
			problem_add(errors, n, "option %s must be a number from 0 to 1 (got %s)",
				    path, got);
		break;
	}
	case CT_STRING:
		break;
	default:
		fatal("validate_scalar: not a scalar type");
	}
}

static void validate_node(const struct cfg_node *n, const struct cfg_schema *s, const char *path,
			  struct problems *errors)
{
	static const char *const wanted[] = {
	    [CT_BOOL] = "true or false",
	    [CT_INT] = "an integer",
	    [CT_STRING] = "a string",
	    [CT_DURATION] = "a duration",
	    [CT_SIZE] = "a size",
	    [CT_ENUM] = "a single value",
	    [CT_MAP] = "a mapping",
	    [CT_DICT] = "a mapping",
	    [CT_LIST] = "a list",
	    [CT_RATE] = "a rate",
	    [CT_RATIO] = "a number from 0 to 1",
	    [CT_ANY] = "anything",
	};
	if (s->type == CT_ANY)
		return;
	enum cfg_kind want_kind = s->type == CT_MAP || s->type == CT_DICT ? CFG_MAP
				  : s->type == CT_LIST                    ? CFG_SEQ
									  : CFG_SCALAR;
	if (s->type == CT_MAP && (s->flags & CF_SHORTHAND) && n->kind == CFG_SCALAR) {
		/* "1.2.3.4" for {address: 1.2.3.4} */
		validate_scalar(n, &s->sub[0], path, errors);
		return;
	}
	if (n->kind == CFG_NULL) {
		if (!(s->flags & CF_NULLABLE))
			problem_add(errors, n, "option %s must be %s, not null", path,
				    wanted[s->type]);
		return;
	}
	if ((s->flags & CF_OR_BOOL) && n->kind == CFG_SCALAR) {
		bool b;
		if (n->quoted || !config_parse_bool(n->value, &b))
			problem_add(errors, n, "option %s must be true, false or a list (got %s)",
				    path, n->value);
		return;
	}
	if (n->kind != want_kind) {
		problem_add(errors, n, "option %s must be %s (got %s)", path, wanted[s->type],
			    kind_name(n->kind));
		return;
	}
	switch (s->type) {
	case CT_MAP:
		validate_map(n, s->sub, path, errors);
		break;
	case CT_DICT:
		for (size_t i = 0; i < n->nchild; i++) {
			char *cpath = xasprintf("%s.%s", path, n->child[i]->key);
			validate_node(n->child[i], &s->sub[0], cpath, errors);
			free(cpath);
		}
		break;
	case CT_LIST:
		for (size_t i = 0; i < n->nchild; i++) {
			char *cpath = xasprintf("%s[%zu]", path, i);
			validate_node(n->child[i], &s->sub[0], cpath, errors);
			free(cpath);
		}
		break;
	default:
		validate_scalar(n, s, path, errors);
	}
}

/* Appends `lines` (taken) to the newline-separated *warnings. */
static void warnings_append(char **warnings, char *lines)
{
	if (*warnings != NULL) {
		char *all = xasprintf("%s\n%s", *warnings, lines);
		free(lines);
		free(*warnings);
		lines = all;
	}
	*warnings = lines;
}

int config_validate(struct cfg_node *root, size_t max_errors, char **errors, char **warnings)
{
	struct problems found = {0}, warned = {0};
	found.warnings = &warned;
	validate_map(root, config_schema, "", &found);
	int count = (int)found.count;
	if (count > 0) {
		free(*errors);
		*errors = problems_join(&found, max_errors);
	} else {
		free(found.list);
	}
	if (warned.count > 0) {
		warnings_append(warnings, problems_join(&warned, 0));
	} else {
		free(warned.list);
	}
	return count;
}

/* key, cert, ca and tls.* of a listener. */
static void fill_listener_tls(const struct config *cfg, const struct cfg_node *n,
			      const struct cfg_schema *f, struct tls_config *t)
{
	t->key = path_in_app(cfg, get_str_in(n, "key", f));
	t->cert = path_in_app(cfg, get_str_in(n, "cert", f));
	t->ca = path_in_app(cfg, get_str_in(n, "ca", f));
	t->min_version = tls_version_parse(raw_value(n, "tls.minVersion", f));
	t->ciphers = get_str_in(n, "tls.ciphers", f);
	t->ciphersuites = get_str_in(n, "tls.ciphersuites", f);
	t->session_tickets = get_bool_in(n, "tls.sessionTickets", f);
	const struct cfg_node *sni = cfg_lookup(n, "tls.sni");
	t->n_sni = sni != NULL ? sni->nchild : 0;
	t->sni = xcalloc(t->n_sni ? t->n_sni : 1, sizeof(*t->sni));
	for (size_t i = 0; i < t->n_sni; i++) {
		const struct cfg_node *e = sni->child[i];
		t->sni[i].name = xstrdup(e->key);
		/* check_listeners says when one is missing */
		const struct cfg_node *key = cfg_map_get(e, "key"), *cert = cfg_map_get(e, "cert");
		t->sni[i].key = key && key->value ? path_in_app(cfg, xstrdup(key->value)) : NULL;
		t->sni[i].cert = cert && cert->value ? path_in_app(cfg, xstrdup(cert->value))
						     : NULL;
	}
}

static void fill_smtp(struct config *cfg)
{
	const struct cfg_node *ifaces = cfg_lookup(cfg->tree, "smtpInterfaces");
	const struct cfg_schema *f = schema_field(config_schema, "smtpInterfaces")->sub[0].sub;
	cfg->n_smtp = ifaces->nchild;
	cfg->smtp = xcalloc(cfg->n_smtp ? cfg->n_smtp : 1, sizeof(*cfg->smtp));
	for (size_t i = 0; i < cfg->n_smtp; i++) {
		const struct cfg_node *n = ifaces->child[i];
		struct smtp_iface_config *s = &cfg->smtp[i];
		s->name = xstrdup(n->key);
		s->enabled = get_bool_in(n, "enabled", f);
		s->host = get_str_in(n, "host", f);
		s->port = (int)get_int_in(n, "port", f);
		s->max_size = get_size_in(n, "maxSize", f);
		s->max_recipients = (int)get_int_in(n, "maxRecipients", f);
		s->max_clients = (int)get_int_in(n, "maxClients", f);
		s->hostname = get_str_in(n, "name", f);
		if (s->hostname == NULL)
			s->hostname = xstrdup(cfg->hostname);
		s->banner = get_str_in(n, "banner", f);
		s->disable_version_string = get_bool_in(n, "disableVersionString", f);
		s->socket_timeout_ms = get_duration_in(n, "socketTimeout", f);
		s->allow_routing_headers = get_bool_in(n, "allowRoutingHeaders", f);
		fill_listener_tls(cfg, n, f, &s->tls);
		s->starttls = get_bool_in(n, "starttls", f);
		s->secure = get_bool_in(n, "secure", f);
		s->require_tls = get_bool_in(n, "requireTLS", f);
		s->authentication = get_bool_in(n, "authentication", f);
		s->allow_insecure_auth = get_bool_in(n, "allowInsecureAuth", f);
		s->auth_url = get_str_in(n, "authUrl", f);
		s->auth_users_file = path_in_app(cfg, get_str_in(n, "authUsersFile", f));
		s->auth_cache_ttl_ms = get_duration_in(n, "authCacheTTL", f);
		s->auth_max_failures = (int)get_int_in(n, "authMaxFailures", f);
		s->auth_failure_window_ms = get_duration_in(n, "authFailureWindow", f);
		s->allow = get_cidrs(cfg_map_get(n, "allow"), &s->n_allow);
		s->deny = get_cidrs(cfg_map_get(n, "deny"), &s->n_deny);
		s->max_clients_per_address = (int)get_int_in(n, "maxClientsPerAddress", f);
		s->max_session_ms = get_duration_in(n, "maxSessionTime", f);
		s->max_data_ms = get_duration_in(n, "maxDataTime", f);
		s->open_relay = get_bool_in(n, "openRelay", f);
		const struct cfg_node *proxy = cfg_map_get(n, "useProxy");
		if (proxy != NULL && proxy->kind == CFG_SEQ) {
			s->use_proxy = proxy->nchild > 0;
			s->proxy_from = get_cidrs(proxy, &s->n_proxy_from);
		} else {
			s->use_proxy = get_bool_in(n, "useProxy", f);
		}
	}
}

static void fill_zones(struct config *cfg)
{
	const struct cfg_schema *f = schema_field(config_schema, "zones")->sub[0].sub;
	const struct cfg_node *zones = cfg_lookup(cfg->tree, "zones");
	cfg->n_zones = zones->nchild;
	cfg->zones = xcalloc(cfg->n_zones ? cfg->n_zones : 1, sizeof(*cfg->zones));
	for (size_t i = 0; i < cfg->n_zones; i++) {
		const struct cfg_node *n = zones->child[i];
		struct zone_config *z = &cfg->zones[i];
		z->name = xstrdup(n->key);
		z->pool = get_str_in(n, "pool", f);
		z->connections = (int)get_int_in(n, "connections", f);
		z->throttle = get_rate_in(n, "throttling", f);
		z->prefer_ipv6 = get_bool_in(n, "preferIPv6", f);
		z->ignore_ipv6 = get_bool_in(n, "ignoreIPv6", f);
		z->host = get_str_in(n, "host", f);
		z->port = (int)get_int_in(n, "port", f);
		z->cache_ttl_ms = get_duration_in(n, "connectionCache.ttl", f);
		z->cache_reuse = (int)get_int_in(n, "connectionCache.reuseCount", f);
		struct zone_timeouts *t = &z->timeouts;
		t->connect = get_duration_in(n, "timeouts.connect", f);
		t->greeting = get_duration_in(n, "timeouts.greeting", f);
		t->ehlo = get_duration_in(n, "timeouts.ehlo", f);
		t->starttls = get_duration_in(n, "timeouts.starttls", f);
		t->mail = get_duration_in(n, "timeouts.mail", f);
		t->rcpt = get_duration_in(n, "timeouts.rcpt", f);
		t->data = get_duration_in(n, "timeouts.data", f);
		t->body = get_duration_in(n, "timeouts.body", f);
		t->dot = get_duration_in(n, "timeouts.dot", f);
		t->rset = get_duration_in(n, "timeouts.rset", f);
		t->quit = get_duration_in(n, "timeouts.quit", f);
		z->require_tls = get_bool_in(n, "requireTLS", f);
		z->secure = get_bool_in(n, "secure", f);
		z->ignore_tls = get_bool_in(n, "ignoreTLS", f);
		z->auth_user = get_str_in(n, "auth.user", f);
		z->auth_pass = get_str_in(n, "auth.pass", f);
		z->auth_pass_file = path_in_app(cfg, get_str_in(n, "auth.passFile", f));
		z->disabled = get_bool_in(n, "disabled", f);
		z->signing_domain = get_str_in(n, "signingDomain", f);
		if (z->signing_domain != NULL)
			lowercase(z->signing_domain);
		z->sender_domains = get_domains(cfg_map_get(n, "senderDomains"),
						&z->n_sender_domains);
		z->authenticated_users = get_string_list(cfg_map_get(n, "authenticatedUsers"),
							 &z->n_authenticated_users, false);
		z->recipient_domains = get_domains(cfg_map_get(n, "recipientDomains"),
						   &z->n_recipient_domains);
		const struct cfg_node *rh = cfg_map_get(n, "routingHeaders");
		z->n_routing_headers = rh ? rh->nchild : 0;
		z->routing_headers = xcalloc(z->n_routing_headers ? z->n_routing_headers : 1,
					     sizeof(*z->routing_headers));
		for (size_t j = 0; j < z->n_routing_headers; j++) {
			z->routing_headers[j].name = lowercase(xstrdup(rh->child[j]->key));
			z->routing_headers[j].value = xstrdup(rh->child[j]->value);
		}
	}
}

static void fill_pools(struct config *cfg)
{
	const struct cfg_node *pools = cfg_lookup(cfg->tree, "pools");
	cfg->n_pools = pools->nchild;
	cfg->pools = xcalloc(cfg->n_pools ? cfg->n_pools : 1, sizeof(*cfg->pools));
	for (size_t i = 0; i < cfg->n_pools; i++) {
		const struct cfg_node *list = pools->child[i];
		struct pool_config *p = &cfg->pools[i];
		p->name = xstrdup(list->key);
		p->naddrs = list->kind == CFG_SEQ ? list->nchild : 0;
		p->addrs = xcalloc(p->naddrs ? p->naddrs : 1, sizeof(*p->addrs));
		for (size_t j = 0; j < p->naddrs; j++) {
			const struct cfg_node *e = list->child[j];
			struct pool_address *a = &p->addrs[j];
			a->ratio = -1;
			if (e->kind == CFG_SCALAR) {
				a->address = xstrdup(e->value);
				continue;
			}
			const struct cfg_node *v = cfg_map_get(e, "address");
			a->address = xstrdup(v ? v->value : "");
			v = cfg_map_get(e, "name");
			a->name = v && v->kind == CFG_SCALAR ? xstrdup(v->value) : NULL;
			v = cfg_map_get(e, "ratio");
			if (v != NULL && v->kind == CFG_SCALAR)
				parse_ratio(v->value, &a->ratio);
		}
	}
}

/* Reads a key given inline (PEM text) or as a file (relative to the app
 * folder); NULL and *err when it cannot be read or is no usable key. */
static struct dkim_key *load_dkim_key(const struct config *cfg, const char *value, char **err)
{
	enum dkim_algorithm alg;
	if (strncmp(value, "-----BEGIN", 10) == 0)
		return dkim_key_load(value, strlen(value), &alg, err);
	char *path = value[0] == '/' || cfg->app_dir == NULL
			 ? xstrdup(value)
			 : xasprintf("%s/%s", cfg->app_dir, value);
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		*err = xasprintf("cannot read %s: %s", path, strerror(errno));
		free(path);
		return NULL;
	}
	char buf[65536];
	size_t len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	struct dkim_key *k = dkim_key_load(buf, len, &alg, err);
	if (k == NULL) {
		char *more = xasprintf("%s: %s", path, *err);
		free(*err);
		*err = more;
	}
	free(path);
	return k;
}

/* dkim.*; key problems are reported with the key's file and line. */
static void fill_dkim(struct config *cfg, struct problems *found)
{
	const struct cfg_node *t = cfg->tree;
	cfg->dkim_enabled = get_bool(t, "dkim.enabled");
	cfg->dkim_sign_headers = get_string_list(cfg_lookup(t, "dkim.signHeaders"),
						 &cfg->n_dkim_sign_headers, true);
	cfg->dkim_oversign = get_string_list(cfg_lookup(t, "dkim.oversignHeaders"),
					     &cfg->n_dkim_oversign, true);
	const struct cfg_schema *f =
	    schema_field(schema_field(config_schema, "dkim")->sub, "keys")->sub[0].sub;
	const struct cfg_node *keys = cfg_lookup(t, "dkim.keys");
	cfg->n_dkim_keys = keys->nchild;
	cfg->dkim_keys = xcalloc(cfg->n_dkim_keys ? cfg->n_dkim_keys : 1, sizeof(*cfg->dkim_keys));
	for (size_t i = 0; i < keys->nchild; i++) {
		const struct cfg_node *n = keys->child[i];
		struct dkim_key_config *k = &cfg->dkim_keys[i];
		bool complete = true;
		static const char *const required[] = {"domain", "selector", "privateKey"};
		for (size_t r = 0; r < 3; r++) {
			if (cfg_map_get(n, required[r]) == NULL) {
				problem_add(found, n, "dkim.keys[%zu] needs %s", i, required[r]);
				complete = false;
			}
		}
		if (!complete)
			continue;
		k->domain = lowercase(get_str_in(n, "domain", f));
		k->selector = get_str_in(n, "selector", f);
		k->subdomains = get_bool_in(n, "subdomains", f);
		const char *canon = raw_value(n, "canonicalization", f);
		k->header_canon = strncmp(canon, "simple", 6) == 0 ? DKIM_CANON_SIMPLE
								   : DKIM_CANON_RELAXED;
		k->body_canon = strcmp(strchr(canon, '/') + 1, "simple") == 0 ? DKIM_CANON_SIMPLE
									      : DKIM_CANON_RELAXED;
		for (size_t o = 0; o < i; o++)
			if (cfg->dkim_keys[o].domain != NULL &&
			    strcmp(cfg->dkim_keys[o].domain, k->domain) == 0 &&
			    strcmp(cfg->dkim_keys[o].selector, k->selector) == 0)
				problem_add(
				    found, n,
				    "dkim.keys[%zu]: dkim.keys[%zu] has the same domain and "
				    "selector (%s, %s)",
				    i, o, k->domain, k->selector);
		char *err = NULL;
		k->key = load_dkim_key(cfg, cfg_map_get(n, "privateKey")->value, &err);
		if (k->key == NULL) {
			problem_add(found, cfg_map_get(n, "privateKey"),
				    "option dkim.keys[%zu].privateKey: %s", i, err);
			free(err);
		}
	}
}

unsigned config_dkim_canons(const struct config *cfg)
{
	unsigned canons = 0;
	for (size_t i = 0; i < cfg->n_dkim_keys; i++)
		canons |= 1u << cfg->dkim_keys[i].body_canon;
	return canons;
}

const struct dkim_key_config *config_dkim_key(const struct config *cfg, const char *domain)
{
	for (size_t i = 0; i < cfg->n_dkim_keys; i++)
		if (cfg->dkim_keys[i].key != NULL && strcmp(cfg->dkim_keys[i].domain, domain) == 0)
			return &cfg->dkim_keys[i];
	return NULL;
}

const char *const config_event_names[] = {
    [EVENT_QUEUED] = "queued",   [EVENT_DELIVERED] = "delivered", [EVENT_DEFERRED] = "deferred",
    [EVENT_BOUNCED] = "bounced", [EVENT_EXPIRED] = "expired",     [EVENT_SUPPRESSED] = "suppressed",
    [EVENT_DROPPED] = "dropped", [EVENT_REJECTED] = "rejected",   [EVENT_ADMIN] = "admin",
    [EVENT_TYPES] = NULL,
};

static unsigned event_bit(const char *name)
{
	for (unsigned i = 0; i < EVENT_TYPES; i++)
		if (strcmp(config_event_names[i], name) == 0)
			return 1u << i;
	return 0;
}

/* plugins: the enabled entries, paths resolved in the app's plugins/. */
static void fill_plugins(struct config *cfg, struct problems *found)
{
	const struct cfg_node *list = cfg_lookup(cfg->tree, "plugins");
	if (list == NULL || list->kind != CFG_SEQ)
		return; /* absent, or ZoneMTA's mapping (a warning already) */
	const struct cfg_schema *f = schema_field(config_schema, "plugins")->sub[0].sub;
	cfg->plugins = xcalloc(list->nchild + 1, sizeof(*cfg->plugins));
	for (size_t i = 0; i < list->nchild; i++) {
		const struct cfg_node *n = list->child[i];
		if (cfg_map_get(n, "name") == NULL || cfg_map_get(n, "path") == NULL) {
			problem_add(found, n, "plugins[%zu] needs name and path", i);
			continue;
		}
		if (!get_bool_in(n, "enabled", f))
			continue;
		struct plugin_config *p = &cfg->plugins[cfg->n_plugins++];
		p->name = get_str_in(n, "name", f);
		char *path = get_str_in(n, "path", f);
		if (path[0] == '/' || cfg->app_dir == NULL) {
			p->path = path;
		} else {
			p->path = xasprintf("%s/plugins/%s", cfg->app_dir, path);
			free(path);
		}
		const char *on_error = raw_value(n, "onError", f);
		p->on_error_continue = strcmp(on_error, "continue") == 0;
		p->timeout_ms = get_duration_in(n, "timeout", f);
		p->memory = get_size_in(n, "memory", f);
		p->instructions = (uint64_t)get_int_in(n, "instructions", f);
		p->config = cfg_map_get(n, "config");
		if (access(p->path, R_OK) != 0)
			problem_add(found, cfg_map_get(n, "path"),
				    "plugins[%zu] (%s): cannot read %s: %s", i, p->name, p->path,
				    strerror(errno));
		for (size_t k = 0; k + 1 < cfg->n_plugins; k++)
			if (strcmp(cfg->plugins[k].name, p->name) == 0)
				problem_add(found, n, "plugins[%zu]: another plugin is named '%s'",
					    i, p->name);
	}
}

/* webhooks.endpoints, then bounces.url as ZoneMTA's http-bounce. */
static void fill_webhooks(struct config *cfg, struct problems *found)
{
	const struct cfg_node *t = cfg->tree;
	const struct cfg_schema *f =
	    schema_field(schema_field(config_schema, "webhooks")->sub, "endpoints")->sub[0].sub;
	const struct cfg_node *list = cfg_lookup(t, "webhooks.endpoints");
	const char *bounce_url = raw_value(t, "bounces.url", NULL);
	cfg->webhooks = xcalloc(list->nchild + 1, sizeof(*cfg->webhooks));
	for (size_t i = 0; i < list->nchild; i++) {
		const struct cfg_node *n = list->child[i];
		if (cfg_map_get(n, "url") == NULL) {
			problem_add(found, n, "webhooks.endpoints[%zu] needs url", i);
			continue;
		}
		const struct cfg_node *u = cfg_map_get(n, "url");
		if (strncmp(u->value, "http://", 7) != 0 && strncmp(u->value, "https://", 8) != 0)
			problem_add(
			    found, u,
			    "webhooks.endpoints[%zu].url must be http:// or https:// (got '%s')", i,
			    u->value);
		struct webhook_config *w = &cfg->webhooks[cfg->n_webhooks++];
		w->url = get_str_in(n, "url", f);
		w->name = get_str_in(n, "name", f);
		if (w->name == NULL)
			w->name = xstrdup(w->url);
		const struct cfg_node *ev = cfg_map_get(n, "events");
		if (ev == NULL) {
			w->events = (1u << EVENT_TYPES) - 1;
		} else if (ev->nchild == 0) {
			problem_add(found, ev, "webhooks.endpoints[%zu].events lists no event", i);
		}
		for (size_t k = 0; ev != NULL && k < ev->nchild; k++)
			w->events |= event_bit(ev->child[k]->value);
		w->batch_size = (unsigned)get_int_in(n, "batchSize", f);
		w->max_delay_ms = get_duration_in(n, "maxDelay", f);
		w->timeout_ms = get_duration_in(n, "timeout", f);
		w->retry_max_ms = get_duration_in(n, "retryMax", f);
		w->secret = get_str_in(n, "secret", f);
		for (size_t k = 0; k + 1 < cfg->n_webhooks; k++)
			if (strcmp(cfg->webhooks[k].name, w->name) == 0)
				problem_add(
				    found, n,
				    "webhooks.endpoints[%zu]: another endpoint has the name "
				    "'%s' (give each a name of its own)",
				    i, w->name);
	}
	if (bounce_url != NULL && strncmp(bounce_url, "http://", 7) != 0 &&
	    strncmp(bounce_url, "https://", 8) != 0)
		problem_add(found, cfg_lookup(t, "bounces.url"),
			    "option bounces.url must be http:// or https:// (got '%s')",
			    bounce_url);
	if (bounce_url != NULL) {
		struct webhook_config *w = &cfg->webhooks[cfg->n_webhooks++];
		w->name = xstrdup("bounces.url");
		w->url = xstrdup(bounce_url);
		w->events = 1u << EVENT_BOUNCED | 1u << EVENT_EXPIRED;
		w->form = true;
		w->batch_size = 1;
		w->timeout_ms = 10000;
		w->retry_max_ms = 300000;
	}
	cfg->webhook_max_backlog = (uint64_t)get_int_in(t, "webhooks.maxBacklog", NULL);
	cfg->event_headers = get_string_list(cfg_lookup(t, "webhooks.headers"),
					     &cfg->n_event_headers, false);
}

static void fill_domains(struct config *cfg)
{
	const struct cfg_schema *f = schema_field(config_schema, "domainConfig")->sub[0].sub;
	const struct cfg_node *doms = cfg_lookup(cfg->tree, "domainConfig");
	cfg->n_domains = doms->nchild;
	cfg->domains = xcalloc(cfg->n_domains ? cfg->n_domains : 1, sizeof(*cfg->domains));
	for (size_t i = 0; i < cfg->n_domains; i++) {
		const struct cfg_node *n = doms->child[i];
		struct domain_config *d = &cfg->domains[i];
		d->domain = lowercase(xstrdup(n->key));
		d->max_connections = (int)get_int_in(n, "maxConnections", f);
		d->throttle = get_rate_in(n, "throttling", f);
	}
}

const struct pool_config *config_pool(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_pools; i++)
		if (strcmp(cfg->pools[i].name, name) == 0)
			return &cfg->pools[i];
	return NULL;
}

const struct domain_config *config_domain(const struct config *cfg, const char *domain)
{
	const struct domain_config *fallback = NULL;
	for (size_t i = 0; i < cfg->n_domains; i++) {
		if (strcmp(cfg->domains[i].domain, domain) == 0)
			return &cfg->domains[i];
		if (strcmp(cfg->domains[i].domain, "default") == 0)
			fallback = &cfg->domains[i];
	}
	return fallback;
}

const struct zone_config *config_zone(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_zones; i++)
		if (strcasecmp(cfg->zones[i].name, name) == 0)
			return &cfg->zones[i];
	return NULL;
}

/* Checks that need more than one option at a time. */
static int check_references(struct config *cfg, char **errors)
{
	struct problems found = {0};
	check_listeners(cfg, &found);
	check_api(cfg, &found);
	fill_zone_auth(cfg, &found);
	for (size_t i = 0; i < cfg->n_zones; i++) {
		if (config_pool(cfg, cfg->zones[i].pool) == NULL) {
			char *path = xasprintf("zones.%s.pool", cfg->zones[i].name);
			const struct cfg_node *at = cfg_lookup(cfg->tree, path);
			if (at == NULL)
				at = cfg_lookup(cfg->tree, "zones");
			problem_add(&found, at, "option %s names no pool of `pools` (got '%s')",
				    path, cfg->zones[i].pool);
			free(path);
		}
	}
	for (size_t i = 0; i < cfg->n_pools; i++) {
		double sum = 0;
		for (size_t j = 0; j < cfg->pools[i].naddrs; j++) {
			const struct pool_address *a = &cfg->pools[i].addrs[j];
			unsigned char buf[16];
			if (inet_pton(AF_INET, a->address, buf) != 1 &&
			    inet_pton(AF_INET6, a->address, buf) != 1) {
				char *path = xasprintf("pools.%s", cfg->pools[i].name);
				problem_add(&found, cfg_lookup(cfg->tree, path)->child[j],
					    "%s[%zu]: '%s' is not an IPv4 or IPv6 address", path, j,
					    a->address);
				free(path);
			}
			if (a->ratio > 0)
				sum += a->ratio;
		}
		if (sum > 1.0 + 1e-9) {
			char *path = xasprintf("pools.%s", cfg->pools[i].name);
			problem_add(&found, cfg_lookup(cfg->tree, path),
				    "the ratios of pool %s add up to more than 1",
				    cfg->pools[i].name);
			free(path);
		}
	}
	fill_dkim(cfg, &found);
	fill_webhooks(cfg, &found);
	fill_plugins(cfg, &found);
	fill_proxies(cfg, &found);
	fill_rspamd(cfg, &found);
	fill_http_config(cfg, &found);
	const struct cfg_node *templates = cfg_lookup(cfg->tree, "bounces.templates");
	if (templates != NULL && templates->kind != CFG_NULL) {
		char *dir = get_path(cfg, "bounces.templates");
		fill_dsn_templates(cfg, dir, templates, &found);
		free(dir);
	}
	for (size_t i = 0; i < cfg->n_zones; i++) {
		const char *sd = cfg->zones[i].signing_domain;
		if (sd != NULL && config_dkim_key(cfg, sd) == NULL) {
			char *path = xasprintf("zones.%s.signingDomain", cfg->zones[i].name);
			problem_add(&found, cfg_lookup(cfg->tree, path),
				    "option %s names no domain of dkim.keys (got '%s')", path, sd);
			free(path);
		}
	}
	if (config_domain(cfg, "default") == NULL)
		problem_add(&found, cfg_lookup(cfg->tree, "domainConfig"),
			    "domainConfig needs a default entry");
	const struct cfg_node *bz = cfg_lookup(cfg->tree, "bounces.sendingZone");
	if (config_zone(cfg, bz->value) == NULL)
		problem_add(&found, bz,
			    "option bounces.sendingZone names no zone of `zones` (got '%s')",
			    bz->value);
	const struct cfg_node *dz = cfg_lookup(cfg->tree, "queue.defaultZone");
	if (config_zone(cfg, dz->value) == NULL)
		problem_add(&found, dz,
			    "option queue.defaultZone names no zone of `zones` (got '%s')",
			    dz->value);
	for (size_t i = 0; i < cfg->n_smtp; i++) {
		for (size_t j = 0; j < i; j++) {
			if (cfg->smtp[i].enabled && cfg->smtp[j].enabled &&
			    cfg->smtp[i].port == cfg->smtp[j].port &&
			    strcmp(cfg->smtp[i].host, cfg->smtp[j].host) == 0) {
				char *path = xasprintf("smtpInterfaces.%s.port", cfg->smtp[i].name);
				const struct cfg_node *at = cfg_lookup(cfg->tree, path);
				if (at == NULL)
					at = cfg_lookup(cfg->tree, "smtpInterfaces");
				problem_add(&found, at,
					    "smtpInterfaces %s and %s both listen on %s:%d",
					    cfg->smtp[j].name, cfg->smtp[i].name, cfg->smtp[i].host,
					    cfg->smtp[i].port);
				free(path);
			}
		}
	}
	if (found.count == 0)
		return 0;
	*errors = problems_join(&found, CONFIG_MAX_ERRORS);
	return -1;
}

/* ZoneMTA's "[HOSTNAME]" in an address, replaced by ours. */
static char *replace_hostname(const char *s, const char *hostname)
{
	const char *at = strcasestr(s, "[HOSTNAME]");
	if (at == NULL)
		return xstrdup(s);
	return xasprintf("%.*s%s%s", (int)(at - s), s, hostname, at + strlen("[HOSTNAME]"));
}

static void config_fill(struct config *cfg)
{
	const struct cfg_node *t = cfg->tree;
	cfg->ident = get_str(t, "ident");
	cfg->hostname = get_str(t, "hostname");
	if (cfg->hostname == NULL) {
		char host[256] = "localhost";
		gethostname(host, sizeof(host) - 1);
		cfg->hostname = xstrdup(host);
	}
	cfg->user = get_str(t, "user");
	cfg->group = get_str(t, "group");
	cfg->pidfile = get_path(cfg, "pidfile");
	cfg->shutdown_timeout_ms = get_duration(t, "shutdownTimeout");
	cfg->max_hops = (int)get_int(t, "maxHops");

	char *level = get_str(t, "log.level");
	log_level_parse(level, &cfg->log.level);
	free(level);
	cfg->log.file = get_path(cfg, "log.file");
	cfg->log.syslog = get_bool(t, "log.syslog");

	cfg->api.enabled = get_bool(t, "api.enabled");
	cfg->api.host = get_str(t, "api.host");
	cfg->api.port = (int)get_int(t, "api.port");
	cfg->api.maildrop = get_bool(t, "api.maildrop");
	cfg->api.max_body_size = get_size_in(t, "api.maxBodySize", NULL);
	cfg->api.max_recipients = (int)get_int(t, "api.maxRecipients");
	cfg->api.allow_routing_headers = get_bool(t, "api.allowRoutingHeaders");
	cfg->api.trust_headers = get_bool(t, "api.trustHeaders");
	cfg->api.max_connections = (int)get_int(t, "api.maxConnections");
	cfg->api.api_key = get_str(t, "api.auth.apiKey");
	cfg->api.user = get_str(t, "api.auth.user");
	cfg->api.password = get_str(t, "api.auth.password");
	cfg->api.open_access = get_bool(t, "api.openAccess");
	fill_listener_tls(cfg, cfg_lookup(t, "api"), NULL, &cfg->api.tls);

	cfg->hook_timeout_ms = get_duration(t, "hooks.timeout");
	cfg->http_client.timeout_ms = get_duration(t, "httpClient.timeout");
	cfg->http_client.connect_timeout_ms = get_duration(t, "httpClient.connectTimeout");
	cfg->http_client.max_per_host = (unsigned)get_int(t, "httpClient.maxPerHost");
	cfg->http_client.max_response = get_size_in(t, "httpClient.maxResponseSize", NULL);
	cfg->http_client.ca_file = get_path(cfg, "httpClient.caFile");

	cfg->queue.dir = get_path(cfg, "queue.dir");
	cfg->queue.default_zone = get_str(t, "queue.defaultZone");
	cfg->queue.future_date = get_bool(t, "queue.futureDate");
	cfg->queue.future_date_skew_ms = get_duration(t, "queue.futureDateSkew");
	cfg->queue.max_delay_ms = get_duration(t, "queue.maxDelay");
	cfg->queue.min_free_space = get_size_in(t, "queue.minFreeSpace", NULL);
	cfg->queue.max_queue_time_ms = get_duration(t, "queue.maxQueueTime");
	cfg->queue.expire_held = get_bool(t, "queue.expireHeld");
	const struct cfg_node *dt = cfg_lookup(t, "queue.deferTimes");
	cfg->queue.n_defer = dt->nchild;
	cfg->queue.defer_ms = xcalloc(dt->nchild ? dt->nchild : 1, sizeof(uint64_t));
	for (size_t i = 0; i < dt->nchild; i++)
		config_parse_duration(dt->child[i]->value, &cfg->queue.defer_ms[i]);
	const struct cfg_node *ns = cfg_lookup(t, "dns.nameservers");
	cfg->n_nameservers = ns->nchild;
	cfg->nameservers = xcalloc(ns->nchild ? ns->nchild : 1, sizeof(char *));
	for (size_t i = 0; i < ns->nchild; i++)
		cfg->nameservers[i] = xstrdup(ns->child[i]->value);
	cfg->bounce_rules = get_path(cfg, "bounces.rules");
	struct bounce_config *b = &cfg->bounces;
	b->dsn = get_bool(t, "bounces.dsn");
	b->mailer_daemon_name = get_str(t, "bounces.mailerDaemon.name");
	char *address = get_str(t, "bounces.mailerDaemon.address");
	b->mailer_daemon_address = replace_hostname(address, cfg->hostname);
	free(address);
	b->sending_zone = get_str(t, "bounces.sendingZone");
	b->delay_notice_ms = get_duration(t, "bounces.delayNotice");
	b->return_size_limit = get_size_in(t, "bounces.returnSizeLimit", NULL);
	b->skip_precedence = get_string_list(cfg_lookup(t, "bounces.skipPrecedence"),
					     &b->n_skip_precedence, true);
	b->disable_interfaces = get_string_list(cfg_lookup(t, "bounces.disableInterfaces"),
						&b->n_disable_interfaces, false);
	b->auto_suppress_ms = get_duration(t, "bounces.autoSuppress");
	cfg->suppress_at_intake = strcmp(raw_value(t, "suppression.intake", NULL), "refuse") == 0;
	cfg->suppress_notify = get_bool(t, "suppression.notify");

	fill_smtp(cfg);
	fill_zones(cfg);
	fill_pools(cfg);
	fill_domains(cfg);
}

static bool file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* Parses `path` and merges it into cfg->tree; returns -1 with *errors set. */
static int merge_file(struct config *cfg, const char *path, char **errors)
{
	struct cfg_error err;
	struct cfg_node *n = cfg_parse_file(path, &err);
	if (n == NULL) {
		*errors = xstrdup(err.msg);
		return -1;
	}
	cfg_merge(cfg->tree, n);
	cfg->files = xrealloc(cfg->files, sizeof(*cfg->files) * (size_t)(cfg->nfiles + 1));
	cfg->files[cfg->nfiles++] = xstrdup(path);
	return 0;
}

/* ZONEMTA_ENV names a file in config/: keep it a plain name. */
static bool env_name_ok(const char *env)
{
	if (*env == '\0' || *env == '.')
		return false;
	for (const char *p = env; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
			return false;
	return true;
}

struct config *config_load(const struct config_source *src, char **errors)
{
	struct cfg_error err;
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	*errors = NULL;

	cfg->tree = cfg_parse_string(CONFIG_BUILTIN_NAME, zmta_default_config,
				     zmta_default_config_len, &err);
	if (cfg->tree == NULL)
		fatal("built-in configuration does not parse: %s", err.msg);

	if (src->app_dir != NULL) {
		if (!file_exists(src->app_dir)) {
			*errors = xasprintf("%s: app folder does not exist", src->app_dir);
			goto fail;
		}
		cfg->app_dir = xstrdup(src->app_dir);
		const char *env = src->env ? src->env : getenv("ZONEMTA_ENV");
		if (env == NULL || *env == '\0')
			env = getenv("NODE_ENV"); /* as ZoneMTA reads it */
		if (env == NULL || *env == '\0')
			env = "development";
		if (!env_name_ok(env)) {
			*errors = xasprintf(
			    "ZONEMTA_ENV=%s: must be a plain name such as production", env);
			goto fail;
		}
		/* ZoneMTA's app-folder config.json, then each layer as YAML, then
		 * as JSON (a subset of YAML: the same parser, the same lines). */
		char *files[] = {
		    xasprintf("%s/config.json", src->app_dir),
		    xasprintf("%s/config/default.yaml", src->app_dir),
		    xasprintf("%s/config/default.json", src->app_dir),
		    xasprintf("%s/config/%s.yaml", src->app_dir, env),
		    xasprintf("%s/config/%s.json", src->app_dir, env),
		};
		int rc = 0;
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			if (rc == 0 && file_exists(files[i]))
				rc = merge_file(cfg, files[i], errors);
			free(files[i]);
		}
		if (rc != 0)
			goto fail;
		for (int i = 0; i < 2; i++) {
			char *js = xasprintf("%s/config/%s.js", src->app_dir, i ? env : "default");
			if (file_exists(js)) {
				warnings_append(
				    &cfg->warnings,
				    xasprintf(
					"%s: ignored: JavaScript configuration cannot be read; "
					"make it JSON with: node -e "
					"'console.log(JSON.stringify(require(\"%s\"), null, 2))' "
					"> %.*sjson",
					js, js, (int)(strlen(js) - 2), js));
			}
			free(js);
		}
	}
	if (src->extra_file != NULL && merge_file(cfg, src->extra_file, errors) != 0)
		goto fail;

	if (config_validate(cfg->tree, src->all_problems ? 0 : CONFIG_MAX_ERRORS, errors,
			    &cfg->warnings) != 0)
		goto fail;
	config_fill(cfg);
	if (check_references(cfg, errors) != 0)
		goto fail;
	return cfg;
fail:
	config_free(cfg);
	return NULL;
}

static void tls_config_clear(struct tls_config *t)
{
	free(t->key);
	free(t->cert);
	free(t->ca);
	free(t->ciphers);
	free(t->ciphersuites);
	for (size_t i = 0; i < t->n_sni; i++) {
		free(t->sni[i].name);
		free(t->sni[i].key);
		free(t->sni[i].cert);
	}
	free(t->sni);
}

static void free_string_list(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	free(cfg->app_dir);
	free(cfg->warnings);
	free(cfg->ident);
	free(cfg->user);
	free(cfg->group);
	free(cfg->pidfile);
	free(cfg->log.file);
	free(cfg->api.host);
	free(cfg->api.api_key);
	free(cfg->api.user);
	free(cfg->api.password);
	tls_config_clear(&cfg->api.tls);
	free(cfg->queue.dir);
	free(cfg->queue.default_zone);
	free(cfg->hostname);
	for (size_t i = 0; i < cfg->n_smtp; i++) {
		free(cfg->smtp[i].name);
		free(cfg->smtp[i].host);
		free(cfg->smtp[i].hostname);
		free(cfg->smtp[i].banner);
		tls_config_clear(&cfg->smtp[i].tls);
		free(cfg->smtp[i].auth_url);
		free(cfg->smtp[i].auth_users_file);
		free(cfg->smtp[i].allow);
		free(cfg->smtp[i].deny);
		free(cfg->smtp[i].proxy_from);
	}
	free(cfg->smtp);
	for (size_t i = 0; i < cfg->n_zones; i++) {
		struct zone_config *z = &cfg->zones[i];
		free(z->name);
		for (size_t j = 0; j < z->n_sender_domains; j++)
			free(z->sender_domains[j]);
		free(z->sender_domains);
		free(z->auth_user);
		free(z->auth_pass_file);
		free_secret(z->auth_pass);
		for (size_t j = 0; j < z->n_authenticated_users; j++)
			free(z->authenticated_users[j]);
		free(z->authenticated_users);
		for (size_t j = 0; j < z->n_recipient_domains; j++)
			free(z->recipient_domains[j]);
		free(z->recipient_domains);
		for (size_t j = 0; j < z->n_routing_headers; j++) {
			free(z->routing_headers[j].name);
			free(z->routing_headers[j].value);
		}
		free(z->routing_headers);
		free(z->pool);
		free(z->host);
		free(z->signing_domain);
		free_socks_proxy(z->proxy);
	}
	free(cfg->zones);
	for (size_t i = 0; i < cfg->n_pools; i++) {
		for (size_t j = 0; j < cfg->pools[i].naddrs; j++) {
			free(cfg->pools[i].addrs[j].address);
			free(cfg->pools[i].addrs[j].name);
		}
		free(cfg->pools[i].addrs);
		free(cfg->pools[i].name);
	}
	free(cfg->pools);
	for (size_t i = 0; i < cfg->n_domains; i++)
		free(cfg->domains[i].domain);
	free(cfg->domains);
	for (size_t i = 0; i < cfg->n_nameservers; i++)
		free(cfg->nameservers[i]);
	free(cfg->nameservers);
	free(cfg->queue.defer_ms);
	free(cfg->bounce_rules);
	free(cfg->bounces.mailer_daemon_name);
	free(cfg->bounces.mailer_daemon_address);
	free(cfg->bounces.sending_zone);
	free_string_list(cfg->bounces.skip_precedence, cfg->bounces.n_skip_precedence);
	free_string_list(cfg->bounces.disable_interfaces, cfg->bounces.n_disable_interfaces);
	free_dsn_templates(&cfg->bounces);
	for (size_t i = 0; i < cfg->n_plugins; i++) {
		free(cfg->plugins[i].name);
		free(cfg->plugins[i].path);
	}
	free(cfg->plugins);
	for (size_t i = 0; i < cfg->n_webhooks; i++) {
		free(cfg->webhooks[i].name);
		free(cfg->webhooks[i].url);
		free(cfg->webhooks[i].secret);
	}
	free(cfg->webhooks);
	free_socks_proxy(cfg->onion_proxy);
	free_rspamd(&cfg->rspamd);
	free_http_config(&cfg->http_config);
	free_string_list(cfg->event_headers, cfg->n_event_headers);
	free(cfg->http_client.ca_file);
	for (size_t i = 0; i < cfg->n_dkim_keys; i++) {
		free(cfg->dkim_keys[i].domain);
		free(cfg->dkim_keys[i].selector);
		dkim_key_free(cfg->dkim_keys[i].key);
	}
	free(cfg->dkim_keys);
	for (size_t i = 0; i < cfg->n_dkim_sign_headers; i++)
		free(cfg->dkim_sign_headers[i]);
	free(cfg->dkim_sign_headers);
	for (size_t i = 0; i < cfg->n_dkim_oversign; i++)
		free(cfg->dkim_oversign[i]);
	free(cfg->dkim_oversign);
	for (int i = 0; i < cfg->nfiles; i++)
		free(cfg->files[i]);
	free(cfg->files);
	cfg_node_free(cfg->tree);
	free(cfg);
}
