/*
 * The configuration schema: every option zone-mta knows, its type and its
 * allowed range.  config/default.yaml documents each one and gives its
 * default; a unit test checks that the two name exactly the same options.
 */
#include "core/config.h"

#include <stddef.h>

#define END {NULL, 0, 0, 0, 0, NULL, NULL}

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

static const struct cfg_schema log_schema[] = {
	{"level", CT_ENUM, 0, 0, 0, log_levels, NULL},
	{"file", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL},
	{"syslog", CT_BOOL, 0, 0, 0, NULL, NULL},
	END,
};

static const struct cfg_schema api_schema[] = {
	{"enabled", CT_BOOL, 0, 0, 0, NULL, NULL},
	{"host", CT_STRING, 0, 0, 0, NULL, NULL},
	{"port", CT_INT, 0, 1, 65535, NULL, NULL},
	END,
};

static const struct cfg_schema queue_schema[] = {
	{"dir", CT_STRING, 0, 0, 0, NULL, NULL},
	END,
};

const struct cfg_schema config_schema[] = {
	{"ident", CT_STRING, 0, 0, 0, NULL, NULL},
	{"user", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL},
	{"group", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL},
	{"pidfile", CT_STRING, CF_NULLABLE, 0, 0, NULL, NULL},
	{"log", CT_MAP, 0, 0, 0, NULL, log_schema},
	{"api", CT_MAP, 0, 0, 0, NULL, api_schema},
	{"queue", CT_MAP, 0, 0, 0, NULL, queue_schema},
	END,
};
