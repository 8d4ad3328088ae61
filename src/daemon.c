/* SPDX-License-Identifier: EUPL-1.2 */
/* Process lifecycle: start-up order, signals, reload and stop; see daemon.h. */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "api/api.h"
#include "bounce/rules.h"
#include "core/clock.h"
#include "builtin/http_config.h"
#include "builtin/rspamd.h"
#include "dkim/keyring.h"
#include "queue/admin.h"
#include "hook/hook.h"
#include "net/http_client.h"
#include "mta/dns.h"
#include "mta/mta.h"
#include "outcome/outcome.h"
#include "outcome/webhook.h"
#include "lua/plugin.h"
#include "queue/suppress.h"
#include "queue/queue.h"
#include "sched/sched.h"
#include "smtp/smtp_server.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "version.h"

struct daemon {
	const struct config_source *src;
	/* as started; a reload changes only the log settings, bounce rules,
	 * listener certificates and users, and smart-host password files */
	struct config *cfg;
	struct event_base *base;
	struct event *sig_term, *sig_int, *sig_hup;
	struct event *stop_timer;
	struct api *api;
	struct queue *queue;
	struct dns *dns;
	struct bounce_rules *rules;
	struct outcome *outcome;
	struct mta *mta;
	struct sched *sched;
	struct workpool *cpu; /* DKIM signatures, /send composition */
	struct http_client *http;
	struct webhooks *webhooks;
	struct suppressions *suppressions;
	struct plugin_env plugin;
	struct rspamd *rspamd;
	struct admin *admin;
	struct http_config *http_config;
	struct plugins *plugins; /* Lua */
	struct smtp_server **smtp;
	size_t n_smtp;
	size_t draining; /* SMTP servers still finishing sessions */
	bool stopping;
	char *pidfile; /* as created at start: what to remove at exit */
	int pidfile_fd;
};

static daemon_plugin_fn compiled_plugin;

void daemon_set_plugin(daemon_plugin_fn fn)
{
	compiled_plugin = fn;
}

/* Applies the reloadable log settings; returns -1 with a message on failure. */
static int apply_log_config(const struct log_config *lc, char **err)
{
	log_set_level(lc->level);
	if (log_set_file(lc->file) != 0) {
		*err = xasprintf("cannot open log file %s: %s", lc->file, strerror(errno));
		return -1;
	}
	log_set_syslog(lc->syslog, NULL);
	return 0;
}

/* Creates `path` and its missing parents, like mkdir -p. */
static int mkdir_p(const char *path, mode_t mode)
{
	char *p = xstrdup(path);
	int rc = 0;
	for (char *s = p + 1; rc == 0; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, mode) != 0 && errno != EEXIST)
			rc = -1;
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	return rc;
}

/* Writes our pid into the pid file and keeps it locked while we run, so a
 * second instance with the same pid file refuses to start. */
static int pidfile_create(struct daemon *d, char **err)
{
	const char *path = d->cfg->pidfile;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		*err = xasprintf("cannot open pid file %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		char buf[32] = "";
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		*err = xasprintf("another zone-mta (pid %s) holds %s", buf[0] ? buf : "?", path);
		close(fd);
		return -1;
	}
	char line[32];
	int len = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)len, 0) != len) {
		*err = xasprintf("cannot write pid file %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	d->pidfile = xstrdup(path);
	d->pidfile_fd = fd;
	return 0;
}

static void pidfile_remove(struct daemon *d)
{
	if (d->pidfile == NULL)
		return;
	/* After dropping privileges the folder may not be ours to change:
	 * then the stale file stays, unlocked, and is reused at next start. */
	if (unlink(d->pidfile) != 0)
		log_debug("pidfile", "path=%s action=keep error=\"%s\"", d->pidfile,
			  strerror(errno));
	close(d->pidfile_fd);
	free(d->pidfile);
	d->pidfile = NULL;
}

/* Looks up a user or group given by name or by numeric id. */
static int lookup_ids(const char *user, const char *group, uid_t *uid, gid_t *gid, char **err)
{
	char *end;
	struct passwd *pw = getpwnam(user);
	if (pw == NULL) {
		long n = strtol(user, &end, 10);
		if (*end != '\0' || n < 0 || (pw = getpwuid((uid_t)n)) == NULL) {
			*err = xasprintf("unknown user %s (option user)", user);
			return -1;
		}
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (group != NULL) {
		struct group *gr = getgrnam(group);
		if (gr == NULL) {
			long n = strtol(group, &end, 10);
			if (*end != '\0' || n < 0 || (gr = getgrgid((gid_t)n)) == NULL) {
				*err = xasprintf("unknown group %s (option group)", group);
				return -1;
			}
		}
		*gid = gr->gr_gid;
	}
	return 0;
}

/*
 * Switches to cfg->user/group when running as root.  Files we must keep
 * writing (queue folder, log file) are handed to that user first.
 */
static int drop_privileges(const struct config *cfg, char **err)
{
	if (cfg->user == NULL)
		return 0;
	if (geteuid() != 0) {
		log_warn("privileges", "action=none reason=\"not started as root\" user=%s",
			 cfg->user);
		return 0;
	}
	uid_t uid;
	gid_t gid;
	if (lookup_ids(cfg->user, cfg->group, &uid, &gid, err) != 0)
		return -1;
	const char *owned[] = {cfg->queue.dir, cfg->log.file};
	for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++) {
		if (owned[i] != NULL && chown(owned[i], uid, gid) != 0) {
			*err = xasprintf("cannot hand %s to user %s: %s", owned[i], cfg->user,
					 strerror(errno));
			return -1;
		}
	}
	if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
		*err = xasprintf("cannot switch to user %s: %s", cfg->user, strerror(errno));
		return -1;
	}
	/* Must be irreversible. */
	if (setuid(0) == 0)
		fatal("privileges: regained root after dropping to %s", cfg->user);
	log_info("privileges", "action=dropped user=%s uid=%ld gid=%ld", cfg->user, (long)uid,
		 (long)gid);
	return 0;
}

static void on_stop_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct daemon *d = arg;
	log_warn("stopping", "action=\"cutting remaining sessions\" after_ms=%llu",
		 (unsigned long long)d->cfg->shutdown_timeout_ms);
	event_base_loopexit(d->base, NULL);
}

static void on_server_drained(void *arg)
{
	struct daemon *d = arg;
	if (--d->draining == 0)
		event_base_loopexit(d->base, NULL);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct daemon *d = arg;
	if (d->stopping) {
		log_warn("stopping", "signal=%s action=\"stopping now\"",
			 sig == SIGTERM ? "TERM" : "INT");
		event_base_loopbreak(d->base);
		return;
	}
	d->stopping = true;
	sd_notify(0, "STOPPING=1");
	log_info("stopping", "signal=%s", sig == SIGTERM ? "TERM" : "INT");
	/* Close listeners first so nothing new arrives while we wind down. */
	api_free(d->api);
	d->api = NULL;
	uint64_t ms = d->cfg->shutdown_timeout_ms;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	d->stop_timer = evtimer_new(d->base, on_stop_timeout, d);
	evtimer_add(d->stop_timer, &tv);
	/* No new deliveries; those waiting for the reply to their final dot
	 * get it (within shutdownTimeout), so a stop makes no duplicate. */
	sched_stop(d->sched);
	d->draining = d->n_smtp + 2;
	for (size_t i = 0; i < d->n_smtp; i++)
		smtp_server_shutdown(d->smtp[i], on_server_drained, d);
	mta_shutdown(d->mta, on_server_drained, d);
	on_server_drained(d);
}

/* Logs each top-level option other than `log` whose value changed: those
 * keep their running values until a restart. */
static void note_restart_needed(const struct config *running, const struct config *loaded)
{
	for (size_t i = 0; i < running->tree->nchild; i++) {
		const struct cfg_node *old = running->tree->child[i];
		if (strcmp(old->key, "log") == 0)
			continue;                                /* reloaded */
		bool bounces = strcmp(old->key, "bounces") == 0; /* its rules are reloaded */
		const struct cfg_node *new = cfg_map_get(loaded->tree, old->key);
		if (old->kind == CFG_MAP && new != NULL &&new->kind == CFG_MAP) {
			for (size_t j = 0; j < old->nchild; j++) {
				const struct cfg_node *o = old->child[j];
				if (bounces && strcmp(o->key, "rules") == 0)
					continue;
				if (!cfg_node_equal(o, cfg_map_get(new, o->key)))
					log_warn("reload",
						 "option=%s.%s action=ignored reason=\"takes "
						 "effect after restart\"",
						 old->key, o->key);
			}
			for (size_t j = 0; j < new->nchild; j++)
				if (cfg_map_get(old, new->child[j]->key) == NULL)
					log_warn("reload",
						 "option=%s.%s action=ignored reason=\"takes "
						 "effect after restart\"",
						 old->key, new->child[j]->key);
		} else if (!cfg_node_equal(old, new)) {
			log_warn("reload",
				 "option=%s action=ignored reason=\"takes effect after "
				 "restart\"",
				 old->key);
		}
	}
}

/* Bounce rules are read again on every reload (the file may have changed
 * under the same name); broken rules keep the running ones. */
/* A smart host's password read again from its auth.passFile (the same
 * file for the same zone): rotated without a restart.  The delivery
 * engine reads it at each login, on this thread. */
static void reload_zone_passwords(struct daemon *d, struct config *loaded)
{
	for (size_t i = 0; i < d->cfg->n_zones; i++) {
		struct zone_config *z = &d->cfg->zones[i];
		for (size_t j = 0; j < loaded->n_zones; j++) {
			struct zone_config *n = &loaded->zones[j];
			if (z->auth_pass_file == NULL || n->auth_pass_file == NULL ||
			    n->auth_pass == NULL || strcmp(z->name, n->name) != 0 ||
			    strcmp(z->auth_pass_file, n->auth_pass_file) != 0)
				continue;
			char *old = z->auth_pass;
			z->auth_pass = n->auth_pass;
			n->auth_pass = old; /* wiped and freed with the loaded config */
		}
	}
}

static void reload_bounce_rules(struct daemon *d, const struct config *cfg)
{
	char *err = NULL;
	struct bounce_rules *rules = cfg->bounce_rules ? bounce_rules_load(cfg->bounce_rules, &err)
						       : bounce_rules_builtin();
	if (rules == NULL) {
		log_error("reload",
			  "status=rejected problem=\"%s\" action=\"keeping the running "
			  "bounce rules\"",
			  err);
		free(err);
		return;
	}
	bounce_rules_free((struct bounce_rules *)outcome_set_rules(d->outcome, rules));
	d->rules = rules;
	log_info("reload", "bounce_rules=%s count=%zu",
		 cfg->bounce_rules ? cfg->bounce_rules : "built-in", bounce_rules_count(rules));
}

/* One log line per configuration warning (ZoneMTA options ignored, units assumed). */
static void log_config_warnings(const char *event, const struct config *cfg)
{
	if (cfg->warnings == NULL)
		return;
	char *copy = xstrdup(cfg->warnings), *save = NULL;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		log_warn(event, "warning=\"%s\"", line);
	free(copy);
}

static void on_reload_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	struct daemon *d = arg;
	char *errors = NULL;
	/* systemd's Type=notify: reloading until READY=1 again. */
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
		   (unsigned long long)clock_mono_ms() * 1000ULL);
	struct config *cfg = config_load(d->src, &errors);
	if (cfg == NULL) {
		sd_notify(0, "READY=1\nSTATUS=reload rejected: the running configuration is kept");
		/* One line per problem, each naming file:line. */
		for (char *line = strtok(errors, "\n"); line; line = strtok(NULL, "\n"))
			log_error("reload", "status=rejected problem=\"%s\"", line);
		log_error("reload", "status=rejected action=\"keeping the running configuration\"");
		free(errors);
		log_reopen();
		return;
	}
	char *err = NULL;
	if (apply_log_config(&cfg->log, &err) != 0) {
		log_error("reload", "status=partial error=\"%s\"", err);
		free(err);
	}
	log_config_warnings("reload", cfg);
	note_restart_needed(d->cfg, cfg);
	reload_bounce_rules(d, cfg);
	reload_zone_passwords(d, cfg);
	for (size_t i = 0; i < d->n_smtp; i++) {
		if (smtp_server_reload(d->smtp[i], &err) != 0) {
			log_error("reload",
				  "status=partial error=\"%s\" action=\"keeping the "
				  "running certificates and users\"",
				  err);
			free(err);
		}
	}
	if (plugins_reload(d->plugins, &err) != 0) {
		log_error("reload",
			  "status=partial error=\"%s\" action=\"keeping the running plugins\"",
			  err);
		free(err);
	}
	if (d->api != NULL && api_reload(d->api, &err) != 0) {
		log_error("reload",
			  "status=partial error=\"api: %s\" action=\"keeping the running "
			  "certificate\"",
			  err);
		free(err);
	}
	log_info("reload", "status=ok level=%s", log_level_name(cfg->log.level));
	sd_notify(0, "READY=1\nSTATUS=running");
	config_free(cfg);
}

/* The queue tells the scheduler of every stored and every new delivery. */
static void apply_pauses(void *arg, const struct queue_pause *pauses, size_t n)
{
	sched_set_pauses(arg, pauses, n);
}

/* Held or paused deliveries past queue.maxQueueTime bounce as expired,
 * one notice per message. */
static void expire_held(void *arg, struct sched_item **items, size_t n)
{
	struct outcome *o = arg;
	char(*ids)[QUEUE_ID_LEN + 1] = xcalloc(n, sizeof(*ids));
	size_t nids = 0;
	for (size_t i = 0; i < n; i++) {
		char id[QUEUE_ID_LEN + 1];
		memcpy(id, items[i]->id, sizeof(id)); /* the item may go */
		if (outcome_expire(o, items[i]) && (nids == 0 || strcmp(ids[nids - 1], id) != 0))
			memcpy(ids[nids++], id, sizeof(id));
	}
	for (size_t i = 0; i < nids; i++)
		outcome_batch_end(o, ids[i]);
	free(ids);
}

static void on_stored_delivery(void *arg, const struct queue_delivery_row *row)
{
	sched_add(arg, row);
}

/* DNS, bounce rules, the delivery engine and its scheduler. */
static int delivery_setup(struct daemon *d, char **err)
{
	const struct config *cfg = d->cfg;
	struct dns_config dc = {cfg->nameservers, cfg->n_nameservers, false, false};
	for (size_t i = 0; i < cfg->n_zones; i++)
		dc.ipv6 = dc.ipv6 || !cfg->zones[i].ignore_ipv6;
	d->dns = dns_new(d->base, &dc, err);
	if (d->dns == NULL)
		return -1;
	if (cfg->bounce_rules != NULL) {
		d->rules = bounce_rules_load(cfg->bounce_rules, err);
		if (d->rules == NULL)
			return -1;
	} else {
		d->rules = bounce_rules_builtin();
	}
	/* DKIM signatures (~1 ms each, RSA) and /send composition: never on
	 * the loop. */
	d->cpu = workpool_new(d->base, 2);
	d->outcome = outcome_new(cfg, d->rules);
	d->mta = mta_new(d->base, cfg, d->dns, d->outcome, d->cpu);
	d->sched = sched_new(d->base, cfg, mta_start, d->mta);
	sched_on_expiry(d->sched, expire_held, d->outcome);
	return 0;
}

/* Everything that can fail at start, in order; returns -1 with *err. */
static int daemon_start(struct daemon *d, char **err)
{
	const struct config *cfg = d->cfg;
	if (apply_log_config(&cfg->log, err) != 0)
		return -1;
	if (mkdir_p(cfg->queue.dir, 0750) != 0) {
		*err = xasprintf("cannot create queue folder %s: %s", cfg->queue.dir,
				 strerror(errno));
		return -1;
	}
	/* Store workers wake the loop from their threads. */
	if (evthread_use_pthreads() != 0)
		fatal("libevent: no thread support");
	/* epoll changes wait for the next epoll_wait, so a read or write
	 * event switched off and on again within one loop pass (every reply
	 * and every commit does that) costs no system call.  Safe because no
	 * descriptor here is dup()ed, the changelist's one caveat. */
	struct event_config *ec = event_config_new();
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	/* Work done in steps (a filtered operation's walk, a listing, the
	 * store's finished writes) activates its next step itself; libevent
	 * runs events activated meanwhile in the same pass, so without a cap
	 * a million-delivery walk would run to its end before any socket is
	 * read.  Sockets are looked at again after 2 ms of callbacks (or 64
	 * of them), whatever is active. */
	const struct timeval dispatch_max = {0, 2000};
	event_config_set_max_dispatch_interval(ec, &dispatch_max, 64, 0);
	d->base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (d->base == NULL)
		fatal("event_base_new failed");
	hook_init(d->base, cfg->hook_timeout_ms);
	struct http_client_config hcc = {
	    .timeout_ms = cfg->http_client.timeout_ms,
	    .connect_timeout_ms = cfg->http_client.connect_timeout_ms,
	    .max_per_host = cfg->http_client.max_per_host,
	    .max_response = cfg->http_client.max_response,
	    .ca_file = cfg->http_client.ca_file,
	};
	d->http = http_client_new(d->base, &hcc);
	/* Built-in handlers first: on a point they run before the plugins. */
	d->http_config = http_config_new(cfg, d->http);
	d->rspamd = rspamd_new(cfg, d->http);
	d->plugin = (struct plugin_env){d->base, cfg, d->http};
	if (compiled_plugin != NULL && compiled_plugin(&d->plugin, err) != 0)
		return -1;
	d->plugins = plugins_load(cfg, d->base, d->http, err);
	if (d->plugins == NULL)
		return -1;
	/* The pid file first: a second instance stops here with a clear word. */
	if (cfg->pidfile != NULL && pidfile_create(d, err) != 0)
		return -1;
	d->smtp = xcalloc(cfg->n_smtp ? cfg->n_smtp : 1, sizeof(*d->smtp));
	for (size_t i = 0; i < cfg->n_smtp; i++) {
		const struct smtp_iface_config *ic = &cfg->smtp[i];
		if (!ic->enabled)
			continue;
		struct smtp_server *srv = smtp_server_new(d->base, cfg, ic, err);
		if (srv == NULL)
			return -1;
		d->smtp[d->n_smtp++] = srv;
		log_info("listen", "service=smtp interface=%s addr=%s:%d", ic->name, ic->host,
			 ic->port);
	}
	if (cfg->api.enabled) {
		d->api = api_new(d->base, cfg, err);
		if (d->api == NULL)
			return -1;
		log_info("listen", "service=api proto=%s addr=%s:%d",
			 cfg->api.tls.key != NULL ? "https" : "http", cfg->api.host, cfg->api.port);
	}
	/* Listeners are bound (low ports need root); from here on, never root.
	 * The queue is opened after, so its files belong to the running user. */
	if (drop_privileges(cfg, err) != 0)
		return -1;
	if (delivery_setup(d, err) != 0)
		return -1;
	d->queue = queue_open(d->base, cfg->queue.dir, cfg->queue.min_free_space,
			      on_stored_delivery, d->sched, err);
	if (d->queue == NULL)
		return -1;
	d->suppressions = suppressions_open(d->queue, err);
	if (d->suppressions == NULL)
		return -1;
	/* Before the loop runs: stored pauses hold back what they pause. */
	d->admin = admin_open(d->base, d->queue, d->cfg, apply_pauses, d->sched, err);
	if (d->admin == NULL)
		return -1;
	outcome_attach(d->outcome, d->sched, d->queue);
	plugins_attach_queue(d->plugins, d->queue);
	plugins_attach_dns(d->plugins, d->dns);
	d->webhooks = webhooks_new(cfg, d->base, d->queue, d->http, err);
	if (d->webhooks == NULL)
		return -1;
	mta_attach(d->mta, d->sched, d->queue);
	for (size_t i = 0; i < d->n_smtp; i++)
		if (smtp_server_start(d->smtp[i], d->queue, d->http, d->cpu, err) != 0)
			return -1;
	if (d->api != NULL)
		api_set_queue(d->api, d->queue, d->sched, d->outcome, d->cpu);

	d->sig_term = evsignal_new(d->base, SIGTERM, on_stop_signal, d);
	d->sig_int = evsignal_new(d->base, SIGINT, on_stop_signal, d);
	d->sig_hup = evsignal_new(d->base, SIGHUP, on_reload_signal, d);
	event_add(d->sig_term, NULL);
	event_add(d->sig_int, NULL);
	event_add(d->sig_hup, NULL);
	return 0;
}

int daemon_run(const struct config_source *src, struct config *cfg)
{
	struct daemon d = {.src = src, .cfg = cfg, .pidfile_fd = -1};
	char *err = NULL;
	int code = 0;

	/* A peer closing a socket must be an error return, not a death. */
	signal(SIGPIPE, SIG_IGN);

	if (daemon_start(&d, &err) != 0) {
		log_error("start", "status=failed error=\"%s\"", err);
		free(err);
		code = 1;
	} else {
		log_config_warnings("config", cfg);
		log_info("ready", "version=%s pid=%ld config=%s%s", ZMTA_VERSION, (long)getpid(),
			 cfg->app_dir ? cfg->app_dir : CONFIG_BUILTIN_NAME,
			 cfg->app_dir ? "/config" : "");
		/* systemd's Type=notify: listeners bound, the queue open. */
		sd_notifyf(0, "READY=1\nSTATUS=running\nMAINPID=%ld", (long)getpid());
		if (event_base_dispatch(d.base) < 0) {
			log_error("loop", "status=failed");
			code = 1;
		}
		log_info("stopped", "code=%d", code);
	}

	/* The worker pool's last answers first, while the API requests and
	 * delivery connections they belong to still exist; then connections
	 * (they cancel their reads), then the queue (its last answers may
	 * still feed the scheduler), then the rest. */
	workpool_free(d.cpu);
	api_free(d.api);
	for (size_t i = 0; i < d.n_smtp; i++)
		smtp_server_free(d.smtp[i]);
	free(d.smtp);
	mta_free(d.mta);
	outcome_shutdown(d.outcome);
	webhooks_free(d.webhooks); /* its backlog stays stored */
	plugins_attach_queue(d.plugins, NULL);
	suppressions_free(d.suppressions);
	admin_free(d.admin);
	queue_close(d.queue);
	sched_free(d.sched);
	outcome_free(d.outcome);
	plugins_attach_dns(d.plugins, NULL);
	dns_free(d.dns);
	bounce_rules_free(d.rules);
	hook_shutdown();         /* after everything that could have a run pending */
	plugins_free(d.plugins); /* its calls are over */
	rspamd_free(d.rspamd);
	http_config_free(d.http_config);
	keyring_clear();
	http_client_free(d.http); /* after the hooks that could ask it */
	if (d.stop_timer)
		event_free(d.stop_timer);
	if (d.sig_term) {
		event_free(d.sig_term);
		event_free(d.sig_int);
		event_free(d.sig_hup);
	}
	pidfile_remove(&d);
	if (d.base)
		event_base_free(d.base);
	config_free(d.cfg);
	return code;
}
