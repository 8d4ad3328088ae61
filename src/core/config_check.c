/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Configuration checks across options: listener TLS, AUTH, access lists
 * and the open-relay guard; the API's HTTPS and auth; smart-host
 * credentials.  Key and certificate files and users files are loaded
 * here, so check-config finds what start would.  See config_internal.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cidr.h"
#include "core/config_internal.h"
#include "core/passwd.h"
#include "core/xmalloc.h"
#include "net/tls.h"

/* Where <section>.<name>.<option> is set, or else the entry itself. */
static const struct cfg_node *entry_node(const struct config *cfg, const char *section,
					 const char *name, const char *option)
{
	char *path = xasprintf("%s.%s.%s", section, name, option);
	const struct cfg_node *at = cfg_lookup(cfg->tree, path);
	free(path);
	if (at == NULL) {
		path = xasprintf("%s.%s", section, name);
		at = cfg_lookup(cfg->tree, path);
		free(path);
	}
	return at;
}

static const struct cfg_node *listener_node(const struct config *cfg,
					    const struct smtp_iface_config *s, const char *option)
{
	return entry_node(cfg, "smtpInterfaces", s->name, option);
}

/* Reads a file's first line (without its line end); NULL and *err. */
static char *read_first_line(const char *path, char **err)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		*err = xasprintf("cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, f);
	fclose(f);
	if (n <= 0) {
		free(line);
		*err = xasprintf("%s is empty", path);
		return NULL;
	}
	line[strcspn(line, "\r\n")] = '\0';
	return line;
}

/* A smart host's TLS and credentials: contradictions, and the password
 * read from auth.passFile. */
void fill_zone_auth(struct config *cfg, struct problems *found)
{
	for (size_t i = 0; i < cfg->n_zones; i++) {
		struct zone_config *z = &cfg->zones[i];
		const struct cfg_node *user_at = entry_node(cfg, "zones", z->name, "auth.user");
		const char *pass_file = z->auth_pass_file;
		if (z->auth_pass != NULL && pass_file != NULL)
			problem_add(found, entry_node(cfg, "zones", z->name, "auth.passFile"),
				    "zones.%s.auth: pass and passFile are two places for one "
				    "password: choose one",
				    z->name);
		else if (pass_file != NULL) {
			char *err = NULL;
			z->auth_pass = read_first_line(pass_file, &err);
			if (z->auth_pass == NULL) {
				problem_add(found,
					    entry_node(cfg, "zones", z->name, "auth.passFile"),
					    "zones.%s.auth.passFile: %s", z->name, err);
				free(err);
			}
		}
		if (z->auth_user != NULL && z->auth_pass == NULL && pass_file == NULL)
			problem_add(found, user_at,
				    "zones.%s.auth: user without pass or passFile would "
				    "authenticate with an empty password",
				    z->name);
		if (z->auth_user == NULL && (z->auth_pass != NULL || pass_file != NULL))
			problem_add(found,
				    entry_node(cfg, "zones", z->name,
					       z->auth_pass_file ? "auth.passFile" : "auth.pass"),
				    "zones.%s.auth: a password without user", z->name);
		if (z->auth_user != NULL && z->host == NULL)
			problem_add(found, user_at,
				    "zones.%s.auth: credentials are for a smart host: set "
				    "zones.%s.host (they are never sent to MX hosts)",
				    z->name, z->name);
		if (z->ignore_tls && (z->secure || z->require_tls))
			problem_add(found, entry_node(cfg, "zones", z->name, "ignoreTLS"),
				    "zones.%s: ignoreTLS contradicts %s", z->name,
				    z->secure ? "secure" : "requireTLS");
		else if (z->ignore_tls && z->auth_user != NULL)
			problem_add(found, entry_node(cfg, "zones", z->name, "ignoreTLS"),
				    "zones.%s: with ignoreTLS the credentials would be sent in "
				    "the clear; they are sent only over TLS (STARTTLS or secure)",
				    z->name);
	}
}

/* Each entry of an address range list must parse. */
static void check_cidrs(const struct config *cfg, const struct smtp_iface_config *s,
			const char *option, struct problems *found)
{
	const struct cfg_node *list = listener_node(cfg, s, option);
	if (list == NULL || list->kind != CFG_SEQ)
		return;
	struct cidr c;
	for (size_t i = 0; i < list->nchild; i++)
		if (cidr_parse(list->child[i]->value, &c) != 0)
			problem_add(found, list->child[i],
				    "option smtpInterfaces.%s.%s[%zu]: '%s' is not an address "
				    "or a range such as 10.0.0.0/8 or 2001:db8::/32",
				    s->name, option, i, list->child[i]->value);
}

/* TLS, AUTH and access of the listeners: what would fail at start, and
 * what would silently expose more than was asked. */
void check_listeners(const struct config *cfg, struct problems *found)
{
	for (size_t i = 0; i < cfg->n_smtp; i++) {
		const struct smtp_iface_config *s = &cfg->smtp[i];
		check_cidrs(cfg, s, "allow", found);
		check_cidrs(cfg, s, "deny", found);
		check_cidrs(cfg, s, "useProxy", found);
		bool tls = s->starttls || s->secure;
		bool sni_complete = true;
		for (size_t j = 0; j < s->tls.n_sni; j++) {
			if (s->tls.sni[j].key == NULL || s->tls.sni[j].cert == NULL) {
				char *opt = xasprintf("tls.sni.%s", s->tls.sni[j].name);
				problem_add(found, listener_node(cfg, s, opt),
					    "smtpInterfaces.%s.%s needs key and cert", s->name,
					    opt);
				free(opt);
				sni_complete = false;
			}
		}
		if (!sni_complete)
			;
		else if (tls && (s->tls.key == NULL || s->tls.cert == NULL)) {
			problem_add(found, listener_node(cfg, s, s->secure ? "secure" : "starttls"),
				    "smtpInterfaces.%s: TLS needs key and cert (PEM files)",
				    s->name);
		} else if (tls) {
			char *err = NULL;
			struct tls_server *t = tls_server_new(&s->tls, &err);
			if (t == NULL) {
				problem_add(found, listener_node(cfg, s, "cert"),
					    "smtpInterfaces.%s: %s", s->name, err);
				free(err);
			}
			tls_server_unref(t);
		}
		if (s->require_tls && !s->starttls && !s->secure)
			problem_add(found, listener_node(cfg, s, "requireTLS"),
				    "smtpInterfaces.%s: requireTLS needs starttls: true", s->name);
		if (s->authentication) {
			if (!tls && !s->allow_insecure_auth)
				problem_add(found, listener_node(cfg, s, "authentication"),
					    "smtpInterfaces.%s: AUTH is offered only over TLS: set "
					    "starttls or secure (or allowInsecureAuth: true)",
					    s->name);
			if (s->auth_url == NULL && s->auth_users_file == NULL)
				problem_add(found, listener_node(cfg, s, "authentication"),
					    "smtpInterfaces.%s: authentication needs authUrl or "
					    "authUsersFile to check the passwords against",
					    s->name);
		}
		if (s->auth_url != NULL && s->auth_users_file != NULL)
			problem_add(found, listener_node(cfg, s, "authUsersFile"),
				    "smtpInterfaces.%s: authUrl and authUsersFile are two ways to "
				    "check passwords: choose one",
				    s->name);
		if (s->auth_users_file != NULL) {
			char *err = NULL;
			struct passwd_file *pf = passwd_file_load(s->auth_users_file, &err);
			if (pf == NULL) {
				problem_add(found, listener_node(cfg, s, "authUsersFile"),
					    "smtpInterfaces.%s.authUsersFile: %s", s->name, err);
				free(err);
			}
			passwd_file_free(pf);
		}
		if (s->auth_url != NULL && strncmp(s->auth_url, "http://", 7) != 0 &&
		    strncmp(s->auth_url, "https://", 8) != 0)
			problem_add(found, listener_node(cfg, s, "authUrl"),
				    "option smtpInterfaces.%s.authUrl must be an http:// or "
				    "https:// URL (got '%s')",
				    s->name, s->auth_url);
		if (s->enabled && !cidr_is_loopback(s->host) && !s->authentication &&
		    s->n_allow == 0 && !s->open_relay)
			problem_add(
			    found, listener_node(cfg, s, "host"),
			    "smtpInterfaces.%s listens on %s, beyond loopback, with neither "
			    "authentication nor an allow list: anyone who reaches it could "
			    "relay mail.  Set authentication: true, list the clients in "
			    "allow, or set openRelay: true if that is what you want",
			    s->name, s->host);
	}
}

/* The API's HTTPS and access settings: what would fail at start, and
 * what is silently less safe than it looks. */
void check_api(const struct config *cfg, struct problems *found)
{
	const struct api_config *a = &cfg->api;
	const struct tls_config *t = &a->tls;
	if ((t->key == NULL) != (t->cert == NULL))
		problem_add(found, cfg_lookup(cfg->tree, t->key ? "api.key" : "api.cert"),
			    "api: HTTPS needs both key and cert (PEM files)");
	else if (t->key != NULL) {
		char *err = NULL;
		struct tls_server *s = tls_server_new(t, &err);
		if (s == NULL) {
			problem_add(found, cfg_lookup(cfg->tree, "api.cert"), "api: %s", err);
			free(err);
		}
		tls_server_unref(s);
	}
	if (a->api_key != NULL && a->api_key[0] == '\0')
		problem_add(found, cfg_lookup(cfg->tree, "api.auth.apiKey"),
			    "api.auth.apiKey is empty: a request with an empty X-API-Key would "
			    "be let in.  Set a key, or null for none");
	if (a->user != NULL && (a->password == NULL || a->password[0] == '\0'))
		problem_add(found, cfg_lookup(cfg->tree, "api.auth.user"),
			    "api.auth.user without a password would accept an empty password: "
			    "set api.auth.password");
	if (a->user == NULL && a->password != NULL)
		problem_add(found, cfg_lookup(cfg->tree, "api.auth.password"),
			    "api.auth.password without api.auth.user leaves the API open: set "
			    "api.auth.user");
	if (a->user != NULL && a->user[0] == '\0')
		problem_add(found, cfg_lookup(cfg->tree, "api.auth.user"),
			    "api.auth.user is empty");
	if (a->enabled && !cidr_is_loopback(a->host) && a->api_key == NULL && a->user == NULL &&
	    !a->open_access)
		problem_add(found, cfg_lookup(cfg->tree, "api.host"),
			    "api listens on %s, beyond loopback, without api.auth: anyone who "
			    "reaches it could send mail and read or delete the queue.  Set "
			    "api.auth.apiKey (or user and password), or api.openAccess: true if "
			    "that is what you want",
			    a->host);
}
