/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The options of the integrations with other servers: SOCKS5 proxies
 * (onion.proxy, zones.*.proxy), Rspamd (rspamd.*) and the HTTP config
 * server (httpConfig.*).  Read after the tree is validated; each
 * problem is reported with its file and line.
 */
#include "core/config_internal.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "core/cidr.h"
#include "core/xmalloc.h"

const char *const rspamd_action_names[RSPAMD_ACT_COUNT] = {
    "reject", "soft reject", "greylist", "rewrite subject", "add header", "no action",
};

bool config_interface_listed(char *const *list, size_t n, const char *iface)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], "*") == 0 || (iface != NULL && strcmp(list[i], iface) == 0))
			return true;
	return false;
}

void free_socks_proxy(struct socks_proxy *p)
{
	if (p == NULL)
		return;
	free(p->url);
	free(p->host);
	free(p->user);
	free(p->password);
	free(p);
}

/* socks5://[user[:password]@]address[:port], the address an IP literal
 * (IPv6 in brackets): the daemon never blocks on resolving it.  Percent
 * escapes are not decoded; a user or password needing '@' or ':' cannot
 * be given. */
struct socks_proxy *parse_socks_proxy(const char *url, const char **why)
{
	const char *p = url;
	if (strncmp(p, "socks5://", 9) == 0)
		p += 9;
	else if (strncmp(p, "socks5h://", 10) == 0)
		p += 10;
	else {
		*why = "must start with socks5://";
		return NULL;
	}
	struct socks_proxy *sp = xcalloc(1, sizeof(*sp));
	sp->port = 1080;
	const char *at = strrchr(p, '@');
	if (at != NULL) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		size_t ul = colon ? (size_t)(colon - p) : (size_t)(at - p);
		sp->user = xstrndup(p, ul);
		sp->password = colon ? xstrndup(colon + 1, (size_t)(at - colon - 1)) : xstrdup("");
		if (ul == 0 || ul > 255 || strlen(sp->password) > 255) {
			*why = "user name must be 1 to 255 bytes, password at most 255";
			free_socks_proxy(sp);
			return NULL;
		}
		p = at + 1;
	}
	const char *host_end;
	if (*p == '[') {
		host_end = strchr(p, ']');
		if (host_end == NULL) {
			*why = "has an unclosed [";
			free_socks_proxy(sp);
			return NULL;
		}
		sp->host = xstrndup(p + 1, (size_t)(host_end - p - 1));
		host_end++;
	} else {
		host_end = p + strcspn(p, ":/");
		sp->host = xstrndup(p, (size_t)(host_end - p));
	}
	unsigned char buf[16];
	if (inet_pton(AF_INET, sp->host, buf) != 1 && inet_pton(AF_INET6, sp->host, buf) != 1) {
		*why = "needs an IP address, not a host name";
		free_socks_proxy(sp);
		return NULL;
	}
	if (*host_end == ':') {
		char *end;
		long port = strtol(host_end + 1, &end, 10);
		if (end == host_end + 1 || port < 1 || port > 65535 || (*end && strcmp(end, "/"))) {
			*why = "has a bad port";
			free_socks_proxy(sp);
			return NULL;
		}
		sp->port = (int)port;
	} else if (*host_end != '\0' && strcmp(host_end, "/") != 0) {
		*why = "has something after the address";
		free_socks_proxy(sp);
		return NULL;
	}
	sp->url = sp->user ? xasprintf("socks5://%s@%s%s%s:%d", sp->user,
				       strchr(sp->host, ':') ? "[" : "", sp->host,
				       strchr(sp->host, ':') ? "]" : "", sp->port)
			   : xasprintf("socks5://%s%s%s:%d", strchr(sp->host, ':') ? "[" : "",
				       sp->host, strchr(sp->host, ':') ? "]" : "", sp->port);
	return sp;
}

/* The option at `path`, when set, as a proxy; problems reported there. */
static struct socks_proxy *proxy_option(const struct cfg_node *n, const char *path,
					struct problems *found)
{
	if (n == NULL || n->kind == CFG_NULL || n->value == NULL)
		return NULL;
	const char *why = NULL;
	struct socks_proxy *sp = parse_socks_proxy(n->value, &why);
	if (sp == NULL)
		problem_add(found, n, "option %s: '%s' %s", path, n->value, why);
	return sp;
}

void fill_proxies(struct config *cfg, struct problems *found)
{
	cfg->onion_proxy = proxy_option(cfg_lookup(cfg->tree, "onion.proxy"), "onion.proxy", found);
	for (size_t i = 0; i < cfg->n_zones; i++) {
		char *path = xasprintf("zones.%s.proxy", cfg->zones[i].name);
		cfg->zones[i].proxy = proxy_option(cfg_lookup(cfg->tree, path), path, found);
		free(path);
	}
}

void fill_rspamd(struct config *cfg, struct problems *found)
{
	const struct cfg_node *t = cfg->tree;
	struct rspamd_config *r = &cfg->rspamd;
	r->enabled = get_bool(t, "rspamd.enabled");
	r->url = get_str(t, "rspamd.url");
	if (strncmp(r->url, "http://", 7) != 0 && strncmp(r->url, "https://", 8) != 0)
		problem_add(found, cfg_lookup(t, "rspamd.url"),
			    "option rspamd.url must be http:// or https:// (got '%s')", r->url);
	r->interfaces = get_string_list(cfg_lookup(t, "rspamd.interfaces"), &r->n_interfaces,
					false);
	r->skip_authenticated = get_bool(t, "rspamd.skipAuthenticated");
	const struct cfg_node *origins = cfg_lookup(t, "rspamd.ignoreOrigins");
	r->ignore_origins = get_cidrs(origins, &r->n_ignore_origins);
	for (size_t i = 0; origins != NULL && i < origins->nchild; i++) {
		struct cidr c;
		if (cidr_parse(origins->child[i]->value, &c) != 0)
			problem_add(found, origins->child[i],
				    "option rspamd.ignoreOrigins: '%s' is not an address or range",
				    origins->child[i]->value);
	}
	r->max_size = get_size_in(t, "rspamd.maxSize", NULL);
	r->timeout_ms = get_duration(t, "rspamd.timeout");
	r->tempfail_on_error = strcmp(raw_value(t, "rspamd.onError", NULL), "tempfail") == 0;
	static const char *const verdicts[] = {"accept", "reject", "tempfail", "header", "subject"};
	for (size_t a = 0; a < RSPAMD_ACT_COUNT; a++) {
		char *path = xasprintf("rspamd.actions.%s", rspamd_action_names[a]);
		const char *v = raw_value(t, path, NULL);
		free(path);
		for (size_t k = 0; k < sizeof(verdicts) / sizeof(verdicts[0]); k++)
			if (strcmp(v, verdicts[k]) == 0)
				r->actions[a] = (enum rspamd_verdict)k;
	}
	r->headers = get_bool(t, "rspamd.headers");
}

void free_rspamd(struct rspamd_config *r)
{
	free(r->url);
	for (size_t i = 0; i < r->n_interfaces; i++)
		free(r->interfaces[i]);
	free(r->interfaces);
	free(r->ignore_origins);
}

void fill_http_config(struct config *cfg, struct problems *found)
{
	const struct cfg_node *t = cfg->tree;
	struct http_config_config *h = &cfg->http_config;
	h->url = get_str(t, "httpConfig.url");
	if (h->url != NULL && strncmp(h->url, "http://", 7) != 0 &&
	    strncmp(h->url, "https://", 8) != 0)
		problem_add(found, cfg_lookup(t, "httpConfig.url"),
			    "option httpConfig.url must be http:// or https:// (got '%s')", h->url);
	h->interfaces = get_string_list(cfg_lookup(t, "httpConfig.interfaces"), &h->n_interfaces,
					false);
	h->ttl_ms = get_duration(t, "httpConfig.ttl");
	h->timeout_ms = get_duration(t, "httpConfig.timeout");
	h->tempfail_on_error = strcmp(raw_value(t, "httpConfig.onError", NULL), "tempfail") == 0;
}

void free_http_config(struct http_config_config *h)
{
	free(h->url);
	for (size_t i = 0; i < h->n_interfaces; i++)
		free(h->interfaces[i]);
	free(h->interfaces);
}
