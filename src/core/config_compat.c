/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * ZoneMTA's options that have no place in zone-mta's schema, and what
 * check-config says of each instead of "unknown option": a configuration
 * brought from ZoneMTA loads, with a warning for what is ignored and an
 * error only where ignoring it would weaken what the user asked for (TLS,
 * AUTH, blocking private addresses).  docs/migrating-from-zonemta.md has
 * the same list, option by option.
 */
#include "core/config.h"

#include <string.h>

static const struct config_compat options[] = {
    /* one process, one store */
    {"name", COMPAT_IGNORED, "the greeting and Received header use hostname"},
    {"dbs", COMPAT_IGNORED, "the queue is RocksDB in the app folder: no MongoDB or Redis"},
    {"queueServer", COMPAT_IGNORED, "one process: there is no queue server between processes"},
    {"queue.instanceId", COMPAT_IGNORED, "one process owns its queue"},
    {"queue.gfs", COMPAT_IGNORED, "messages are stored in RocksDB, not GridFS"},
    {"queue.collection", COMPAT_IGNORED, "the queue is RocksDB, not a MongoDB collection"},
    {"queue.disableGC", COMPAT_IGNORED, "rows go as they are done: there is nothing to collect"},
    {"queue.logQueuePolling", COMPAT_IGNORED, "the queue is not polled"},
    {"smtpInterfaces.*.dhparam", COMPAT_IGNORED,
     "key exchange is ECDHE (or OpenSSL's built-in DH groups): no parameters file"},
    {"smtpInterfaces.*.processes", COMPAT_IGNORED,
     "one process with an event loop and worker threads"},
    {"zones.*.processes", COMPAT_IGNORED, "one process with an event loop and worker threads"},
    {"smtpInterfaces.*.logger", COMPAT_IGNORED, "SMTP transcripts are logged at log.level debug"},
    {"zones.*.logger", COMPAT_IGNORED, "SMTP transcripts are logged at log.level debug"},
    {"zones.*.logLevel", COMPAT_IGNORED, "the level is log.level"},
    {"log.queue", COMPAT_IGNORED, "queue events are always logged"},
    {"log.remote", COMPAT_IGNORED, "log to syslog (log.syslog) and ship from there"},
    {"log.gelf", COMPAT_IGNORED, "log to syslog (log.syslog) and ship from there"},
    {"uploads", COMPAT_IGNORED, "nothing is uploaded"},
    {"api.hostname", COMPAT_IGNORED, "the API listens on api.host"},
    {"api.user", COMPAT_IGNORED, "/test-auth checks api.auth.user and api.auth.password"},
    {"api.pass", COMPAT_IGNORED, "/test-auth checks api.auth.user and api.auth.password"},
    {"dns.caching", COMPAT_IGNORED, "unbound caches answers in memory for their TTL"},
    {"dns.cacheTTL", COMPAT_IGNORED, "unbound caches answers in memory for their TTL"},
    {"zones.*.poolHash", COMPAT_IGNORED,
     "each delivery is dealt a pool address by the addresses' ratios"},
    {"zones.*.interface", COMPAT_IGNORED, "local addresses come from the zone's pool"},
    {"plugins", COMPAT_NOT_YET,
     "ZoneMTA's JavaScript plugins do not run here: zone-mta's plugins are Lua, a list "
     "(docs/plugins.md); default-headers and dkim are built in (dkim.keys), core/rspamd is "
     "rspamd.*, core/http-config is httpConfig.url, core/http-bounce is bounces.url"},
    {"mtaSts", COMPAT_NOT_YET, "MTA-STS is not implemented yet"},
    {"blacklist", COMPAT_NOT_YET,
     "there is no blocklist back-off of local address and domain pairs yet"},
    {"domainConfig.*.disabledAddresses", COMPAT_NOT_YET,
     "local addresses are not excluded per domain yet"},
    {"domainConfig.*.dnsOptions", COMPAT_NOT_YET, "per-domain DNS options are not supported yet"},
    {"zones.*.originAddresses", COMPAT_NOT_YET,
     "routing by client address is not supported yet: such mail goes by the other rules"},
    /* asked for, and running without it would weaken what was asked */
    {"dns.blockLocalAddresses", COMPAT_NOT_YET_IF_SET,
     "refusing private and loopback MX addresses is not implemented yet"},
};

/* "zones.*.auth" matches "zones.default.auth": '*' is one segment. */
static bool path_matches(const char *pattern, const char *path)
{
	while (*pattern && *path) {
		if (*pattern == '*') {
			pattern++;
			path += strcspn(path, ".");
			continue;
		}
		if (*pattern++ != *path++)
			return false;
	}
	return *pattern == '\0' && *path == '\0';
}

const struct config_compat *config_compat_lookup(const char *path)
{
	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
		if (path_matches(options[i].path, path))
			return &options[i];
	return NULL;
}
