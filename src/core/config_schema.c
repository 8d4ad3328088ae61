/*
 * The configuration schema: every option zone-mta knows, its type and its
 * allowed range.  config/default.yaml documents each one and gives its
 * default; a unit test checks that the two name exactly the same options.
 * Entries of a mapping of named things (smtpInterfaces.<name>, zones.<name>)
 * take the `def` value of each field they leave out.
 */
#include "core/config.h"

#include <stddef.h>

#define END {NULL, 0, 0, 0, 0, NULL, NULL, NULL}
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

static const struct cfg_schema api_schema[] = {
	{"enabled", CT_BOOL, 0, 0, 0, NULL, NULL, NULL},
	{"host", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
	{"port", CT_INT, 0, 1, 65535, NULL, NULL, NULL},
	END,
};

static const struct cfg_schema queue_schema[] = {
	{"dir", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
	{"defaultZone", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
	{"futureDate", CT_BOOL, 0, 0, 0, NULL, NULL, NULL},
	{"futureDateSkew", CT_DURATION, 0, 0, DAY, NULL, NULL, NULL},
	{"maxDelay", CT_DURATION, 0, 0, 3650 * DAY, NULL, NULL, NULL},
	{"minFreeSpace", CT_SIZE, 0, 0, 1024 * GB, NULL, NULL, NULL},
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
	END,
};

static const struct cfg_schema smtp_iface_schema[] = {
	{"<interface>", CT_MAP, 0, 0, 0, NULL, smtp_iface_fields, NULL},
};

static const struct cfg_schema string_item[] = {
	{"<item>", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
};

static const struct cfg_schema zone_fields[] = {
	{"senderDomains", CT_LIST, 0, 0, 0, NULL, string_item, NULL},
	{"recipientDomains", CT_LIST, 0, 0, 0, NULL, string_item, NULL},
	{"routingHeaders", CT_DICT, 0, 0, 0, NULL, string_item, NULL},
	END,
};

static const struct cfg_schema zone_schema[] = {
	{"<zone>", CT_MAP, 0, 0, 0, NULL, zone_fields, NULL},
};

const struct cfg_schema config_schema[] = {
	{"ident", CT_STRING, 0, 0, 0, NULL, NULL, NULL},
	{"hostname", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
	{"user", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
	{"group", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
	{"pidfile", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL, NULL},
	{"shutdownTimeout", CT_DURATION, 0, 0, 3600 * SECOND, NULL, NULL, NULL},
	{"log", CT_MAP, 0, 0, 0, NULL, log_schema, NULL},
	{"api", CT_MAP, 0, 0, 0, NULL, api_schema, NULL},
	{"queue", CT_MAP, 0, 0, 0, NULL, queue_schema, NULL},
	{"smtpInterfaces", CT_DICT, 0, 0, 0, NULL, smtp_iface_schema, NULL},
	{"zones", CT_DICT, 0, 0, 0, NULL, zone_schema, NULL},
	END,
};
