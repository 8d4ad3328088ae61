/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The configuration schema: every option zone-mta knows, its type and its
 * allowed range.  config/default.yaml documents each one and gives its
 * default; a unit test checks that the two name exactly the same options.
 * Entries of a mapping of named things (smtpInterfaces.<name>, zones.<name>)
 * take the `def` value of each field they leave out.
 */
#include "core/config.h"

#include <stddef.h>

#define END                                                                                        \
	{                                                                                          \
		NULL, 0, 0, 0, 0, NULL, NULL, NULL                                                 \
	}
#define SECOND 1000LL
#define DAY (86400LL * SECOND)
#define GB (1024LL * 1024 * 1024)

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

static const struct cfg_schema log_schema[] = {
    {"level", CT_ENUM, 0, 0, 0, log_levels, NULL, NULL},
    {"file", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
    {"syslog", CT_BOOL, 0, 0, 0, NULL, NULL, NULL},
    END,
};

static const struct cfg_schema duration_item[] = {
    {"<item>", CT_DURATION, 0, 0, 3650 * DAY, NULL, NULL, NULL},
};

static const struct cfg_schema queue_schema[] = {
    {"dir", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
    {"defaultZone", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
    {"futureDate", CT_BOOL, 0, 0, 0, NULL, NULL, NULL},
    {"futureDateSkew", CT_DURATION, 0, 0, DAY, NULL, NULL, NULL},
    {"maxDelay", CT_DURATION, 0, 0, 3650 * DAY, NULL, NULL, NULL},
    {"minFreeSpace", CT_SIZE, 0, 0, 1024 * GB, NULL, NULL, NULL},
    {"deferTimes", CT_LIST, 0, 0, 0, NULL, duration_item, NULL},
    {"maxQueueTime", CT_DURATION, 0, SECOND, 3650 * DAY, NULL, NULL, NULL},
    {"expireHeld", CT_BOOL, 0, 0, 0, NULL, NULL, NULL},
    END,
};

static const struct cfg_schema string_item[] = {
    {"<item>", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
};

static const char *const tls_versions[] = {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", NULL};

static const struct cfg_schema sni_fields[] = {
    {"key", CT_STRING, CF_REQUIRED, 0, 0, NULL, NULL, NULL},
    {"cert", CT_STRING, CF_REQUIRED, 0, 0, NULL, NULL, NULL},
    END,
};

static const struct cfg_schema sni_schema[] = {
    {"<name>", CT_MAP, 0, 0, 0, NULL, sni_fields, NULL},
};

/* A listener's TLS settings besides its key and certificate. */
static const struct cfg_schema listener_tls_fields[] = {
    {"minVersion", CT_ENUM, 0, 0, 0, tls_versions, NULL, "TLSv1.2"},
    {"ciphers", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    {"ciphersuites", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    {"sessionTickets", CT_BOOL, 0, 0, 0, NULL, NULL, "true"},
    {"sni", CT_DICT, 0, 0, 0, NULL, sni_schema, NULL},
    END,
};

static const struct cfg_schema api_auth_schema[] = {
    {"apiKey", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
    {"user", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
    {"password", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
    END,
};

static const struct cfg_schema api_schema[] = {
    {"enabled", CT_BOOL, 0, 0, 0, NULL, NULL, NULL},
    {"host", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
    {"port", CT_INT, 0, 1, 65535, NULL, NULL, NULL},
    {"maildrop", CT_BOOL, 0, 0, 0, NULL, NULL, NULL},
    {"maxBodySize", CT_SIZE, 0, 1024, 16 * GB, NULL, NULL, NULL},
    {"maxRecipients", CT_INT, 0, 1, 4095, NULL, NULL, NULL},
    {"allowRoutingHeaders", CT_BOOL, 0, 0, 0, NULL, NULL, NULL},
    {"trustHeaders", CT_BOOL, 0, 0, 0, NULL, NULL, NULL},
    {"maxConnections", CT_INT, 0, 1, 100000, NULL, NULL, NULL},
    {"auth", CT_MAP, 0, 0, 0, NULL, api_auth_schema, NULL},
    {"openAccess", CT_BOOL, 0, 0, 0, NULL, NULL, NULL},
    {"key", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
    {"cert", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
    {"ca", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
    {"tls", CT_MAP, 0, 0, 0, NULL, listener_tls_fields, NULL},
    END,
};

static const struct cfg_schema smtp_iface_fields[] = {
    {"enabled", CT_BOOL, 0, 0, 0, NULL, NULL, "true"},
    {"host", CT_STRING, 0, 0, 0, NULL, NULL, "127.0.0.1"},
    {"port", CT_INT, 0, 1, 65535, NULL, NULL, "2525"},
    {"maxSize", CT_SIZE, 0, 1024, 16 * GB, NULL, NULL, "30 MB"},
    {"maxRecipients", CT_INT, 0, 1, 4095, NULL, NULL, "1000"},
    {"maxClients", CT_INT, 0, 1, 1000000, NULL, NULL, "1000"},
    {"name", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    {"banner", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    {"disableVersionString", CT_BOOL, 0, 0, 0, NULL, NULL, "false"},
    {"socketTimeout", CT_DURATION, 0, 100, DAY, NULL, NULL, "10 min"},
    {"allowRoutingHeaders", CT_BOOL, 0, 0, 0, NULL, NULL, "false"},
    {"starttls", CT_BOOL, 0, 0, 0, NULL, NULL, "false"},
    {"secure", CT_BOOL, 0, 0, 0, NULL, NULL, "false"},
    {"requireTLS", CT_BOOL, 0, 0, 0, NULL, NULL, "false"},
    {"key", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    {"cert", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    {"ca", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    {"tls", CT_MAP, 0, 0, 0, NULL, listener_tls_fields, NULL},
    {"authentication", CT_BOOL, 0, 0, 0, NULL, NULL, "false"},
    {"allowInsecureAuth", CT_BOOL, 0, 0, 0, NULL, NULL, "false"},
    {"authUrl", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    {"authUsersFile", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    {"authCacheTTL", CT_DURATION, 0, 0, DAY, NULL, NULL, "1 min"},
    {"authMaxFailures", CT_INT, 0, 1, 1000000, NULL, NULL, "5"},
    {"authFailureWindow", CT_DURATION, 0, SECOND, DAY, NULL, NULL, "10 min"},
    {"allow", CT_LIST, 0, 0, 0, NULL, string_item, NULL},
    {"deny", CT_LIST, 0, 0, 0, NULL, string_item, NULL},
    {"maxClientsPerAddress", CT_INT, 0, 1, 1000000, NULL, NULL, "100"},
    {"maxSessionTime", CT_DURATION, 0, SECOND, 30 * DAY, NULL, NULL, "1 h"},
    {"maxDataTime", CT_DURATION, 0, SECOND, DAY, NULL, NULL, "10 min"},
    {"openRelay", CT_BOOL, 0, 0, 0, NULL, NULL, "false"},
    {"useProxy", CT_LIST, CF_OR_BOOL, 0, 0, NULL, string_item, "false"},
    END,
};

static const struct cfg_schema smtp_iface_schema[] = {
    {"<interface>", CT_MAP, 0, 0, 0, NULL, smtp_iface_fields, NULL},
};

static const struct cfg_schema connection_cache_fields[] = {
    {"ttl", CT_DURATION, CF_BARE_SECONDS, 0, DAY, NULL, NULL, "5 s"},
    {"reuseCount", CT_INT, 0, 1, 1000000, NULL, NULL, "100"},
    END,
};

/* Per-phase deadlines of a delivery connection, each counted from the
 * command (or the connect) until its whole reply, never while the peer is
 * still reading what we write; after RFC 5321 4.5.3.2 and Postfix. */
static const struct cfg_schema zone_timeout_fields[] = {
    {"connect", CT_DURATION, 0, 100, DAY, NULL, NULL, "30 s"},
    {"greeting", CT_DURATION, 0, 100, DAY, NULL, NULL, "5 min"},
    {"ehlo", CT_DURATION, 0, 100, DAY, NULL, NULL, "5 min"},
    {"starttls", CT_DURATION, 0, 100, DAY, NULL, NULL, "5 min"},
    {"mail", CT_DURATION, 0, 100, DAY, NULL, NULL, "5 min"},
    {"rcpt", CT_DURATION, 0, 100, DAY, NULL, NULL, "5 min"},
    {"data", CT_DURATION, 0, 100, DAY, NULL, NULL, "2 min"},
    {"body", CT_DURATION, 0, 100, DAY, NULL, NULL, "3 min"},
    {"dot", CT_DURATION, 0, 100, DAY, NULL, NULL, "10 min"},
    {"rset", CT_DURATION, 0, 100, DAY, NULL, NULL, "20 s"},
    {"quit", CT_DURATION, 0, 100, DAY, NULL, NULL, "5 s"},
    END,
};

/* A smart host's credentials (ZoneMTA's auth: {user, pass}); passFile
 * keeps the password out of the configuration. */
static const struct cfg_schema zone_auth_fields[] = {
    {"user", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    {"pass", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    {"passFile", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    END,
};

static const struct cfg_schema zone_fields[] = {
    {"pool", CT_STRING, 0, 0, 0, NULL, NULL, "default"},
    {"connections", CT_INT, 0, 1, 100000, NULL, NULL, "10"},
    {"throttling", CT_RATE, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    {"preferIPv6", CT_BOOL, 0, 0, 0, NULL, NULL, "false"},
    {"ignoreIPv6", CT_BOOL, 0, 0, 0, NULL, NULL, "true"},
    {"host", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    {"port", CT_INT, 0, 1, 65535, NULL, NULL, "25"},
    {"connectionCache", CT_MAP, 0, 0, 0, NULL, connection_cache_fields, NULL},
    {"timeouts", CT_MAP, 0, 0, 0, NULL, zone_timeout_fields, NULL},
    {"requireTLS", CT_BOOL, 0, 0, 0, NULL, NULL, "false"},
    {"secure", CT_BOOL, 0, 0, 0, NULL, NULL, "false"},
    {"ignoreTLS", CT_BOOL, 0, 0, 0, NULL, NULL, "false"},
    {"auth", CT_MAP, 0, 0, 0, NULL, zone_auth_fields, NULL},
    {"disabled", CT_BOOL, 0, 0, 0, NULL, NULL, "false"},
    {"signingDomain", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    {"proxy", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    {"senderDomains", CT_LIST, 0, 0, 0, NULL, string_item, NULL},
    {"authenticatedUsers", CT_LIST, 0, 0, 0, NULL, string_item, NULL},
    {"recipientDomains", CT_LIST, 0, 0, 0, NULL, string_item, NULL},
    {"routingHeaders", CT_DICT, 0, 0, 0, NULL, string_item, NULL},
    END,
};

static const struct cfg_schema zone_schema[] = {
    {"<zone>", CT_MAP, 0, 0, 0, NULL, zone_fields, NULL},
};

static const struct cfg_schema pool_address_fields[] = {
    {"address", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
    {"name", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    {"ratio", CT_RATIO, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    END,
};

static const struct cfg_schema pool_address[] = {
    {"<address>", CT_MAP, CF_SHORTHAND, 0, 0, NULL, pool_address_fields, NULL},
};

static const struct cfg_schema pool_schema[] = {
    {"<pool>", CT_LIST, 0, 0, 0, NULL, pool_address, NULL},
};

static const struct cfg_schema domain_fields[] = {
    {"maxConnections", CT_INT, 0, 1, 100000, NULL, NULL, "5"},
    {"throttling", CT_RATE, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    END,
};

static const struct cfg_schema domain_schema[] = {
    {"<domain>", CT_MAP, 0, 0, 0, NULL, domain_fields, NULL},
};

static const struct cfg_schema string_list[] = {
    {"<item>", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
};

static const struct cfg_schema dns_schema[] = {
    {"nameservers", CT_LIST, 0, 0, 0, NULL, string_list, NULL},
    END,
};

static const char *const canonicalizations[] = {"relaxed/relaxed", "relaxed/simple",
						"simple/relaxed", "simple/simple", NULL};

static const struct cfg_schema dkim_key_fields[] = {
    {"domain", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
    {"selector", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
    {"privateKey", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
    {"canonicalization", CT_ENUM, 0, 0, 0, canonicalizations, NULL, "relaxed/relaxed"},
    {"subdomains", CT_BOOL, 0, 0, 0, NULL, NULL, "false"},
    END,
};

static const struct cfg_schema dkim_key_item[] = {
    {"<key>", CT_MAP, 0, 0, 0, NULL, dkim_key_fields, NULL},
};

static const char *const hash_algos[] = {"sha256", NULL};

static const struct cfg_schema dkim_schema[] = {
    {"enabled", CT_BOOL, 0, 0, 0, NULL, NULL, NULL},
    {"hashAlgo", CT_ENUM, 0, 0, 0, hash_algos, NULL, NULL},
    {"signHeaders", CT_LIST, 0, 0, 0, NULL, string_list, NULL},
    {"oversignHeaders", CT_LIST, 0, 0, 0, NULL, string_list, NULL},
    {"keys", CT_LIST, 0, 0, 0, NULL, dkim_key_item, NULL},
    END,
};

static const struct cfg_schema hooks_schema[] = {
    {"timeout", CT_DURATION, 0, 10, DAY, NULL, NULL, NULL},
    END,
};

static const struct cfg_schema http_client_schema[] = {
    {"timeout", CT_DURATION, 0, 10, DAY, NULL, NULL, NULL},
    {"connectTimeout", CT_DURATION, 0, 10, DAY, NULL, NULL, NULL},
    {"maxPerHost", CT_INT, 0, 1, 10000, NULL, NULL, NULL},
    {"maxResponseSize", CT_SIZE, 0, 1024, GB, NULL, NULL, NULL},
    {"caFile", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
    END,
};

static const struct cfg_schema mailer_daemon_schema[] = {
    {"name", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
    {"address", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
    END,
};

static const struct cfg_schema bounces_schema[] = {
    {"rules", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
    {"dsn", CT_BOOL, 0, 0, 0, NULL, NULL, NULL},
    {"mailerDaemon", CT_MAP, 0, 0, 0, NULL, mailer_daemon_schema, NULL},
    {"sendingZone", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
    {"delayNotice", CT_DURATION, CF_NULLABLE, SECOND, 365 * DAY, NULL, NULL, NULL},
    {"returnSizeLimit", CT_SIZE, 0, 0, 256 * 1024, NULL, NULL, NULL}, /* one stored chunk */
    {"skipPrecedence", CT_LIST, 0, 0, 0, NULL, string_list, NULL},
    {"disableInterfaces", CT_LIST, 0, 0, 0, NULL, string_list, NULL},
    {"url", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
    {"autoSuppress", CT_DURATION, CF_NULLABLE, SECOND, 3650 * DAY, NULL, NULL, NULL},
    {"templates", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
    END,
};

static const char *const intake_modes[] = {"refuse", "accept", NULL};

static const struct cfg_schema suppression_schema[] = {
    {"intake", CT_ENUM, 0, 0, 0, intake_modes, NULL, NULL},
    {"notify", CT_BOOL, 0, 0, 0, NULL, NULL, NULL},
    END,
};

static const struct cfg_schema event_item[] = {
    {"<event>", CT_ENUM, 0, 0, 0, config_event_names, NULL, NULL},
};

static const struct cfg_schema webhook_fields[] = {
    {"name", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    {"url", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
    {"events", CT_LIST, 0, 0, 0, NULL, event_item, NULL},
    {"batchSize", CT_INT, 0, 1, 10000, NULL, NULL, "100"},
    {"maxDelay", CT_DURATION, 0, 0, 3600 * SECOND, NULL, NULL, "1 s"},
    {"timeout", CT_DURATION, 0, 10, 3600 * SECOND, NULL, NULL, "10 s"},
    {"retryMax", CT_DURATION, 0, 10, DAY, NULL, NULL, "5 min"},
    {"secret", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, "~"},
    END,
};

static const struct cfg_schema webhook_item[] = {
    {"<webhook>", CT_MAP, 0, 0, 0, NULL, webhook_fields, NULL},
};

static const struct cfg_schema webhooks_schema[] = {
    {"endpoints", CT_LIST, 0, 0, 0, NULL, webhook_item, NULL},
    {"maxBacklog", CT_INT, 0, 1, 100000000, NULL, NULL, NULL},
    {"headers", CT_LIST, 0, 0, 0, NULL, string_list, NULL},
    END,
};

static const struct cfg_schema onion_schema[] = {
    {"proxy", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
    END,
};

static const char *const rspamd_verdicts[] = {"accept", "reject",  "tempfail",
					      "header", "subject", NULL};
static const char *const rspamd_on_error[] = {"accept", "tempfail", NULL};

/* Rspamd's actions (rspamd.com/doc/configuration/metrics.html) and what
 * each one does here. */
static const struct cfg_schema rspamd_actions_schema[] = {
    {"reject", CT_ENUM, 0, 0, 0, rspamd_verdicts, NULL, NULL},
    {"soft reject", CT_ENUM, 0, 0, 0, rspamd_verdicts, NULL, NULL},
    {"greylist", CT_ENUM, 0, 0, 0, rspamd_verdicts, NULL, NULL},
    {"rewrite subject", CT_ENUM, 0, 0, 0, rspamd_verdicts, NULL, NULL},
    {"add header", CT_ENUM, 0, 0, 0, rspamd_verdicts, NULL, NULL},
    {"no action", CT_ENUM, 0, 0, 0, rspamd_verdicts, NULL, NULL},
    END,
};

static const struct cfg_schema rspamd_schema[] = {
    {"enabled", CT_BOOL, 0, 0, 0, NULL, NULL, NULL},
    {"url", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
    {"interfaces", CT_LIST, 0, 0, 0, NULL, string_list, NULL},
    {"skipAuthenticated", CT_BOOL, 0, 0, 0, NULL, NULL, NULL},
    {"ignoreOrigins", CT_LIST, 0, 0, 0, NULL, string_list, NULL},
    {"maxSize", CT_SIZE, 0, 0, 4 * GB, NULL, NULL, NULL},
    {"timeout", CT_DURATION, 0, 10, 3600 * SECOND, NULL, NULL, NULL},
    {"onError", CT_ENUM, 0, 0, 0, rspamd_on_error, NULL, NULL},
    {"actions", CT_MAP, 0, 0, 0, NULL, rspamd_actions_schema, NULL},
    {"headers", CT_BOOL, 0, 0, 0, NULL, NULL, NULL},
    END,
};

static const struct cfg_schema http_config_schema[] = {
    {"url", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
    {"interfaces", CT_LIST, 0, 0, 0, NULL, string_list, NULL},
    {"ttl", CT_DURATION, 0, 0, DAY, NULL, NULL, NULL},
    {"timeout", CT_DURATION, 0, 10, 3600 * SECOND, NULL, NULL, NULL},
    {"onError", CT_ENUM, 0, 0, 0, rspamd_on_error, NULL, NULL},
    END,
};

static const char *const on_error_modes[] = {"tempfail", "continue", NULL};

static const struct cfg_schema plugin_fields[] = {
    {"name", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
    {"path", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
    {"enabled", CT_BOOL, 0, 0, 0, NULL, NULL, "true"},
    {"config", CT_ANY, 0, 0, 0, NULL, NULL, NULL},
    {"onError", CT_ENUM, 0, 0, 0, on_error_modes, NULL, "tempfail"},
    {"timeout", CT_DURATION, 0, 10, 3600 * SECOND, NULL, NULL, "5 s"},
    {"memory", CT_SIZE, 0, 1024 * 1024, 4 * GB, NULL, NULL, "64 MB"},
    {"instructions", CT_INT, 0, 1000, 1000000000000LL, NULL, NULL, "10000000"},
    END,
};

static const struct cfg_schema plugin_item[] = {
    {"<plugin>", CT_MAP, 0, 0, 0, NULL, plugin_fields, NULL},
};

const struct cfg_schema config_schema[] = {
    {"ident", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
    {"hostname", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
    {"user", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
    {"group", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
    {"pidfile", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
    {"shutdownTimeout", CT_DURATION, 0, 0, 3600 * SECOND, NULL, NULL, NULL},
    {"maxHops", CT_INT, 0, 1, 1000, NULL, NULL, NULL},
    {"log", CT_MAP, 0, 0, 0, NULL, log_schema, NULL},
    {"api", CT_MAP, 0, 0, 0, NULL, api_schema, NULL},
    {"queue", CT_MAP, 0, 0, 0, NULL, queue_schema, NULL},
    {"smtpInterfaces", CT_DICT, 0, 0, 0, NULL, smtp_iface_schema, NULL},
    {"zones", CT_DICT, 0, 0, 0, NULL, zone_schema, NULL},
    {"pools", CT_DICT, 0, 0, 0, NULL, pool_schema, NULL},
    {"domainConfig", CT_DICT, 0, 0, 0, NULL, domain_schema, NULL},
    {"dns", CT_MAP, 0, 0, 0, NULL, dns_schema, NULL},
    {"bounces", CT_MAP, 0, 0, 0, NULL, bounces_schema, NULL},
    {"webhooks", CT_MAP, 0, 0, 0, NULL, webhooks_schema, NULL},
    {"suppression", CT_MAP, 0, 0, 0, NULL, suppression_schema, NULL},
    {"plugins", CT_LIST, 0, 0, 0, NULL, plugin_item, NULL},
    {"onion", CT_MAP, 0, 0, 0, NULL, onion_schema, NULL},
    {"rspamd", CT_MAP, 0, 0, 0, NULL, rspamd_schema, NULL},
    {"httpConfig", CT_MAP, 0, 0, 0, NULL, http_config_schema, NULL},
    {"hooks", CT_MAP, 0, 0, 0, NULL, hooks_schema, NULL},
    {"httpClient", CT_MAP, 0, 0, 0, NULL, http_client_schema, NULL},
    {"dkim", CT_MAP, 0, 0, 0, NULL, dkim_schema, NULL},
    END,
};
