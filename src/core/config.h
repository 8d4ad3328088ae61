/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Configuration: the built-in defaults (config/default.yaml, compiled in),
 * then an app folder's config/default.yaml and config/<ZONEMTA_ENV>.yaml,
 * then an optional extra file, deep-merged in that order and validated
 * strictly against the schema in config_schema.c.  Every problem is reported
 * as "FILE:LINE: message" naming the option's full path.
 */
#ifndef ZMTA_CONFIG_H
#define ZMTA_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "core/cidr.h"

#include "core/cfgtree.h"
#include "core/log.h"

/* Label used for the compiled-in defaults in messages. */
#define CONFIG_BUILTIN_NAME "(built-in defaults)"

struct log_config {
	enum log_level level;
	char *file; /* NULL: stderr */
	bool syslog;
};

/* What a listener's TLS is made of; paths are absolute. */
struct tls_config {
	char *key, *cert;   /* PEM: private key, certificate chain */
	char *ca;           /* PEM: extra CA certificates sent in the chain; NULL: none */
	int min_version;    /* OpenSSL's TLS1_2_VERSION, ... */
	char *ciphers;      /* TLS 1.2 and older, OpenSSL's syntax; NULL: OpenSSL's default */
	char *ciphersuites; /* TLS 1.3; NULL: OpenSSL's default */
	bool session_tickets;
	struct tls_sni_config *sni;
	size_t n_sni;
};

struct api_config {
	bool enabled;
	char *host;
	int port;
	bool maildrop; /* POST /send and /send-raw */
	uint64_t max_body_size;
	int max_recipients;
	bool allow_routing_headers; /* X-Sending-Zone in API messages */
	bool trust_headers;         /* X-Originating-IP, X-Authenticated-User */
	int max_connections;        /* open API connections at once */
	char *api_key;              /* NULL: no key required */
	char *user, *password;      /* HTTP Basic; NULL: none */
	bool open_access;           /* beyond loopback without auth, on purpose */
	struct tls_config tls;      /* HTTPS when tls.key and tls.cert are set */
};

struct queue_config {
	char *dir;
	char *default_zone;
	bool future_date;             /* delay delivery until a future Date: */
	uint64_t future_date_skew_ms; /* a Date: less far ahead is "now" */
	uint64_t max_delay_ms;        /* no message waits longer than this for its Date: */
	uint64_t min_free_space;      /* refuse new mail when the queue's disk has less */
	uint64_t *defer_ms;           /* wait before each retry; past the last: bounce */
	size_t n_defer;
	uint64_t max_queue_time_ms; /* a delivery older than this bounces */
	bool expire_held;           /* held and paused deliveries expire too */
};

/* Delivery status notifications to senders (bounces.*). */
/* A text for the human part of DSN mail (bounces.templates): KIND.txt or
 * KIND.LANG.txt, KIND failed, delayed or relayed (enum dsn_kind's order). */
struct dsn_template {
	int kind;
	char *lang;    /* lower case ("de", "pt-br"), or NULL: any */
	char *path;    /* the file, for messages */
	char *subject; /* from a first "Subject:" line, or NULL: the usual */
	char *text;    /* the rest, CRLF lines, placeholders as written */
};
/* The placeholders a template may use, NULL-ended: {hostname} {sender}
 * {subject} {messageId} {date} {recipients}. */
extern const char *const dsn_template_placeholders[];

struct bounce_config {
	bool dsn;                    /* send DSN mail */
	char *mailer_daemon_name;    /* From: display name */
	char *mailer_daemon_address; /* From: address, [HOSTNAME] replaced */
	char *sending_zone;          /* the zone DSN mail goes through */
	uint64_t delay_notice_ms;    /* a delay notice this long after arrival; 0: none */
	uint64_t return_size_limit;  /* RET=FULL returns messages up to this size */
	char **skip_precedence;      /* no DSN for these Precedence: values (lower case) */
	size_t n_skip_precedence;
	char **disable_interfaces; /* no DSN for mail that came in on these */
	size_t n_disable_interfaces;
	uint64_t auto_suppress_ms; /* a hard recipient bounce suppresses for this long; 0: off */
	struct dsn_template *templates; /* bounces.templates, read at load */
	size_t n_templates;
};

/* What happens to mail, as events for webhooks (queue/events.h). */
enum event_type {
	EVENT_QUEUED,     /* accepted and stored, one per recipient */
	EVENT_DELIVERED,  /* the next hop took it */
	EVENT_DEFERRED,   /* an attempt failed for now */
	EVENT_BOUNCED,    /* failed for good */
	EVENT_EXPIRED,    /* failed for now until queue.maxQueueTime ran out */
	EVENT_SUPPRESSED, /* not delivered: the recipient is on the suppression list */
	EVENT_DROPPED,    /* removed without delivery (the API) */
	EVENT_REJECTED,   /* refused at intake after the data came */
	EVENT_ADMIN,      /* an operator's change (queue administration), with its audit entry */
	EVENT_TYPES,
};
/* Their names in config and in the events, by enum event_type; NULL-ended. */
extern const char *const config_event_names[];

/* An endpoint the events go to: webhooks.endpoints[], or bounces.url. */
struct webhook_config {
	char *name; /* its backlog's key in the store: `name`, else the url */
	char *url;
	unsigned events;       /* bit (1 << enum event_type) per event it takes */
	bool form;             /* bounces.url: one form POST per event (ZoneMTA's http-bounce) */
	unsigned batch_size;   /* events per POST */
	uint64_t max_delay_ms; /* how long an event may wait for a batch to fill */
	uint64_t timeout_ms;   /* per POST */
	uint64_t retry_max_ms; /* the retry delay doubles from 1 s up to this */
	char *secret;          /* HMAC-SHA256 key of the signature header, or NULL */
};

/* A Lua plugin: plugins[] (src/lua/plugin.h). */
struct plugin_config {
	char *name;
	char *path;             /* the file, resolved (relative paths are in the app's plugins/) */
	bool on_error_continue; /* onError: continue, else tempfail */
	uint64_t timeout_ms;    /* per hook call, waiting included */
	uint64_t memory;        /* bytes the plugin's Lua state may hold */
	uint64_t instructions;  /* Lua instructions per hook call */
	const struct cfg_node *config; /* its `config` (in the tree), or NULL */
};

/* A rate: `count` messages per `period_ms`; count 0 means unlimited. */
struct rate {
	uint64_t count;
	uint64_t period_ms;
};

/* A local address of a pool: pools.<name>[i]. */
struct pool_address {
	char *address; /* IPv4 or IPv6 literal */
	char *name;    /* EHLO name; NULL: the global hostname */
	double ratio;  /* share of traffic, 0..1; negative: not set (equal share) */
};

struct pool_config {
	char *name;
	struct pool_address *addrs; /* empty: the system picks the source address */
	size_t naddrs;
};

/* domainConfig.<domain>: limits per zone for one recipient domain. */
struct domain_config {
	char *domain; /* lower case; "default" for the fallback entry */
	int max_connections;
	struct rate throttle;
};

/* A certificate for the host names in its certificate, chosen by SNI. */
struct tls_sni_config {
	char *name; /* the entry's name, for errors */
	char *key, *cert;
};

struct smtp_iface_config {
	char *name;
	bool enabled;
	char *host;
	int port;
	uint64_t max_size;
	int max_recipients;
	int max_clients;
	char *hostname; /* in the greeting and Received:; the global hostname when unset */
	char *banner;   /* text after the hostname in the greeting */
	bool disable_version_string;
	uint64_t socket_timeout_ms;
	bool allow_routing_headers; /* X-Sending-Zone may pick the zone */

	/* TLS: tls.key == NULL for none */
	struct tls_config tls;
	bool starttls;    /* offer STARTTLS (RFC 3207) */
	bool secure;      /* TLS from the first byte (RFC 8314) */
	bool require_tls; /* MAIL and AUTH only after STARTTLS */

	/* SMTP AUTH (RFC 4954) */
	bool authentication;      /* required before MAIL */
	bool allow_insecure_auth; /* offered without TLS too */
	char *auth_url;           /* HTTP backend (ZoneMTA's http-auth) */
	char *auth_users_file;    /* "user:crypt-hash" lines */
	uint64_t auth_cache_ttl_ms;
	int auth_max_failures; /* per client address within the window */
	uint64_t auth_failure_window_ms;

	/* access */
	struct cidr *allow, *deny; /* allow empty: anyone not denied */
	size_t n_allow, n_deny;
	int max_clients_per_address;
	uint64_t max_session_ms, max_data_ms;
	bool open_relay; /* a public listener without auth or allow list */

	/* PROXY protocol: from any address (no list), or only from these */
	bool use_proxy;
	struct cidr *proxy_from;
	size_t n_proxy_from;
};

struct routing_header {
	char *name; /* lower case */
	char *value;
};

/* A DKIM signing key: dkim.keys[i]. */
struct dkim_key_config {
	char *domain;                 /* d=, lower case */
	char *selector;               /* s= */
	bool subdomains;              /* also sign mail From: subdomains of `domain` */
	int header_canon, body_canon; /* enum dkim_canon */
	struct dkim_key *key;         /* loaded and checked at configuration time */
};

/* A SOCKS5 proxy (onion.proxy, zones.<name>.proxy). */
struct socks_proxy {
	char *url;  /* as given, the password left out: for logs */
	char *host; /* an IP address */
	int port;
	char *user, *password; /* RFC 1929 username/password, or NULL */
};

/* What an Rspamd action does to a message (rspamd.actions). */
enum rspamd_verdict {
	RSPAMD_ACCEPT,
	RSPAMD_REJECT,   /* 550 5.7.1 with Rspamd's message */
	RSPAMD_TEMPFAIL, /* 451 4.7.1 */
	RSPAMD_HEADER,   /* accepted with X-Spam: Yes */
	RSPAMD_SUBJECT,  /* accepted with X-Spam: Yes and the subject rewritten */
};
/* Rspamd's actions, in the order of rspamd_action_names. */
enum rspamd_action {
	RSPAMD_ACT_REJECT,
	RSPAMD_ACT_SOFT_REJECT,
	RSPAMD_ACT_GREYLIST,
	RSPAMD_ACT_REWRITE_SUBJECT,
	RSPAMD_ACT_ADD_HEADER,
	RSPAMD_ACT_NO_ACTION,
	RSPAMD_ACT_COUNT,
};
extern const char *const rspamd_action_names[RSPAMD_ACT_COUNT];

/* rspamd.*: spam checks of arriving mail (docs/rspamd.md). */
struct rspamd_config {
	bool enabled;
	char *url;
	char **interfaces; /* "*": all */
	size_t n_interfaces;
	bool skip_authenticated;
	struct cidr *ignore_origins;
	size_t n_ignore_origins;
	uint64_t max_size; /* larger messages are not scanned */
	uint64_t timeout_ms;
	bool tempfail_on_error; /* else accept unscanned */
	enum rspamd_verdict actions[RSPAMD_ACT_COUNT];
	bool headers; /* X-Zone-Spam-Resolution and X-Zone-Spam-Status */
};

/* httpConfig.*: per-sender settings from a server (docs/http-config.md). */
struct http_config_config {
	char *url;         /* NULL: off */
	char **interfaces; /* "*": all */
	size_t n_interfaces;
	uint64_t ttl_ms; /* answers cached this long; 0: not at all */
	uint64_t timeout_ms;
	bool tempfail_on_error; /* else go on without the settings */
};

/* A sending zone: zones.<name>. */
/* zones.<name>.timeouts, in ms: how long each phase of a delivery
 * connection may take (see config/default.yaml). */
struct zone_timeouts {
	uint64_t connect, greeting, ehlo, starttls, mail, rcpt, data, body, dot, rset, quit;
};

struct zone_config {
	char *name;
	char *pool;
	int connections;      /* parallel outbound connections, whole zone */
	struct rate throttle; /* messages for the whole zone */
	bool prefer_ipv6;
	bool ignore_ipv6;
	char *host; /* next hop instead of MX lookups (smart host), or NULL */
	int port;
	uint64_t cache_ttl_ms; /* an idle connection is kept this long */
	int cache_reuse;       /* messages per connection at most */
	struct zone_timeouts timeouts;
	bool require_tls;
	bool secure;     /* implicit TLS from the connect (port 465) */
	bool ignore_tls; /* never STARTTLS */
	/* AUTH to the smart host (PLAIN or LOGIN, only encrypted), or NULL;
	 * the password is read from auth.passFile when that is given. */
	char *auth_user, *auth_pass, *auth_pass_file;
	bool disabled;             /* no deliveries start; mail waits */
	char *signing_domain;      /* also sign with the dkim.keys entry of this domain */
	struct socks_proxy *proxy; /* all deliveries through this SOCKS5 proxy, or NULL */
	char **sender_domains;     /* lower case */
	size_t n_sender_domains;
	char **authenticated_users; /* as given: user names compare exactly */
	size_t n_authenticated_users;
	char **recipient_domains; /* lower case */
	size_t n_recipient_domains;
	struct routing_header *routing_headers;
	size_t n_routing_headers;
};

struct config {
	char *app_dir;                /* NULL when running on the built-in defaults only */
	char *ident;                  /* name in syslog */
	char *hostname;               /* this host's name in greetings, Received: and Message-ID */
	char *user;                   /* NULL: keep the starting user */
	char *group;                  /* NULL: the user's primary group */
	char *pidfile;                /* NULL: none */
	uint64_t shutdown_timeout_ms; /* how long a stop waits for messages in progress */
	int max_hops;                 /* more Received: headers: a delivery loop */
	uint64_t hook_timeout_ms;     /* how long a plugin may take to answer a hook */
	struct {
		uint64_t timeout_ms, connect_timeout_ms;
		unsigned max_per_host;
		uint64_t max_response;
		char *ca_file; /* NULL: the system's CAs */
	} http_client;
	struct log_config log;
	struct api_config api;
	struct queue_config queue;
	struct smtp_iface_config *smtp;
	size_t n_smtp;
	struct zone_config *zones; /* in configuration order */
	size_t n_zones;
	struct pool_config *pools;
	size_t n_pools;
	struct domain_config *domains; /* includes "default" */
	size_t n_domains;
	char **nameservers;
	size_t n_nameservers;
	char *bounce_rules; /* rules file, or NULL for the shipped rules */
	struct bounce_config bounces;
	struct plugin_config *plugins; /* the enabled ones, in order */
	size_t n_plugins;
	struct socks_proxy *onion_proxy; /* for .onion recipients, or NULL */
	struct rspamd_config rspamd;
	struct http_config_config http_config;
	struct webhook_config *webhooks; /* webhooks.endpoints, then bounces.url */
	size_t n_webhooks;
	uint64_t webhook_max_backlog; /* events kept per endpoint */
	char **event_headers;         /* message headers copied into events */
	size_t n_event_headers;
	/* suppression.intake: refuse suppressed recipients at RCPT and /send,
	 * else accept them and drop them before delivery */
	bool suppress_at_intake;
	bool suppress_notify; /* suppression.notify: a dropped delivery gets a failure DSN */
	bool dkim_enabled;    /* compute body hashes at intake */
	struct dkim_key_config *dkim_keys;
	size_t n_dkim_keys;
	char **dkim_sign_headers; /* lower case */
	size_t n_dkim_sign_headers;
	char **dkim_oversign;
	size_t n_dkim_oversign;

	char **files; /* files merged over the built-in defaults, in order */
	int nfiles;
	char *warnings;        /* "FILE:LINE: ..." lines, or NULL: options ignored, units assumed */
	struct cfg_node *tree; /* the merged, validated tree */
};

/* Where to read configuration from. */
struct config_source {
	const char *app_dir;    /* NULL: built-in defaults only (plus extra_file) */
	const char *env;        /* NULL: $ZONEMTA_ENV, else $NODE_ENV, else "development" */
	const char *extra_file; /* NULL or a file merged last (run -c FILE) */
	bool all_problems;      /* report every problem, not the first 20 */
};

/*
 * Loads, merges and validates.  Returns a config the caller frees with
 * config_free(), or NULL and *errors (caller frees) holding one line per
 * problem.
 */
struct config *config_load(const struct config_source *src, char **errors);
void config_free(struct config *cfg);

/* The zone called `name` (case-insensitive), or NULL. */
const struct zone_config *config_zone(const struct config *cfg, const char *name);
/* True when `iface` is in an option's list of interfaces, or the list
 * has "*" (rspamd.interfaces, httpConfig.interfaces). */
bool config_interface_listed(char *const *list, size_t n, const char *iface);

/* The usable dkim.keys entry for exactly `domain` (lower case), or NULL. */
const struct dkim_key_config *config_dkim_key(const struct config *cfg, const char *domain);
/* The template for kind and the original's Content-Language (NULL: none):
 * the full tag, then its primary subtag, then the one without language;
 * NULL when there is none (the built-in text). */
const struct dsn_template *config_dsn_template(const struct config *cfg, int kind,
					       const char *content_language);
/* The body canonicalizations the DKIM keys use: bit (1 << enum dkim_canon)
 * for each; 0 without keys. */
unsigned config_dkim_canons(const struct config *cfg);
/* The pool called `name`, or NULL. */
const struct pool_config *config_pool(const struct config *cfg, const char *name);
/* Limits for a recipient domain (lower case): its entry, else "default". */
const struct domain_config *config_domain(const struct config *cfg, const char *domain);
/* Parses "100 messages/second" (also "/minute", "/hour", "/s", "/m", "/h"). */
bool config_parse_rate(const char *s, struct rate *out);

/* Scalar parsers shared by validation and tests; each returns true on success. */
bool config_parse_bool(const char *s, bool *out);
bool config_parse_int(const char *s, long long *out);
/* A plain number is milliseconds; else "<n> ms|s|min|h|days" and long forms. */
bool config_parse_duration(const char *s, uint64_t *ms);
/* A plain number is bytes; else "<n> B|KB|MB|GB" (powers of 1024). */
bool config_parse_size(const char *s, uint64_t *bytes);

/* --- schema (config_schema.c) --- */

enum cfg_type {
	CT_BOOL,
	CT_INT,
	CT_STRING,
	CT_DURATION,
	CT_SIZE,
	CT_ENUM,
	CT_MAP,   /* fixed keys: sub is a key==NULL terminated array */
	CT_DICT,  /* any key, each value as sub[0] (zones.<name>) */
	CT_LIST,  /* each item as sub[0] */
	CT_RATE,  /* "100 messages/second" (or minute, hour) */
	CT_RATIO, /* a number from 0 to 1 */
	CT_ANY,   /* anything (a plugin's own config): not checked here */
};

#define CF_NULLABLE 0x1  /* null is a valid value ("not set") */
#define CF_SHORTHAND 0x2 /* CT_MAP: a single value stands for its first field */
#define CF_REQUIRED 0x10 /* a field of a dict entry without a default: the entry must set it */
#define CF_OR_BOOL 0x8   /* CT_LIST: true or false stand for "any" and "none" */
#define CF_BARE_SECONDS                                                                            \
	0x4 /* CT_DURATION: a bare number is seconds (ZoneMTA's unit for it), not ms */

struct cfg_schema {
	const char *key;
	enum cfg_type type;
	unsigned flags;
	long long min, max;         /* CT_INT; CT_DURATION in ms; CT_SIZE in bytes */
	const char *const *choices; /* CT_ENUM, NULL-terminated */
	const struct cfg_schema *sub;
	/* Fields of entries of a CT_DICT (smtpInterfaces.<name>, zones.<name>):
	 * the value an entry takes when it leaves the field out ("~": null).
	 * Lists and mappings left out are empty. */
	const char *def;
};

/* ZoneMTA options zone-mta does not have (config_compat.c). */
enum compat_kind {
	COMPAT_IGNORED,        /* not needed here: a warning */
	COMPAT_NOT_YET,        /* not supported yet, ignored: a warning */
	COMPAT_NOT_YET_IF_SET, /* not supported yet: an error unless false, null or empty */
};

struct config_compat {
	const char *path; /* '*' for a name: "zones.*.auth" */
	enum compat_kind kind;
	const char *reason;
};

/* What to say of ZoneMTA's option at `path`, or NULL when it is not one. */
const struct config_compat *config_compat_lookup(const char *path);

/* The top level of the schema: a key==NULL terminated array. */
extern const struct cfg_schema config_schema[];

/*
 * Validates `root` against the schema; appends one line per problem to
 * *errors (a malloc'ed string, may start NULL), at most `max_errors` of
 * them (0: all), and one per warning to *warnings.  A bare number given for
 * a duration is rewritten with its unit (ms, or s for CF_BARE_SECONDS) and
 * warned about.  Returns the problem count.
 */
int config_validate(struct cfg_node *root, size_t max_errors, char **errors, char **warnings);

#endif
