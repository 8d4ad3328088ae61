/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: config scalars, strict validation, file merging, schema coverage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/xmalloc.h"

extern const char zmta_default_config[];
extern const size_t zmta_default_config_len;

static void test_durations(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		bool ok;
		uint64_t ms;
	} cases[] = {
	    {"0", true, 0},
	    {"250", true, 250},
	    {"500 ms", true, 500},
	    {"10 s", true, 10000},
	    {"10s", true, 10000},
	    {"5 min", true, 300000},
	    {"2 h", true, 7200000},
	    {"3 days", true, 259200000},
	    {"1 DAY", true, 86400000},
	    {"", false, 0},
	    {"-5", false, 0},
	    {"5 parsecs", false, 0},
	    {"1.5 s", false, 0},
	    {" 5", false, 0},
	    {"s", false, 0},
	    {"99999999999999999999", false, 0},
	    {"999999999999999 days", false, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t ms = 12345;
		bool ok = config_parse_duration(cases[i].text, &ms);
		if (ok != cases[i].ok)
			fail_msg("\"%s\": ok=%d want %d", cases[i].text, ok, cases[i].ok);
		if (ok && ms != cases[i].ms)
			fail_msg("\"%s\": %llu want %llu", cases[i].text, (unsigned long long)ms,
				 (unsigned long long)cases[i].ms);
	}
}

static void test_sizes(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		bool ok;
		uint64_t bytes;
	} cases[] = {
	    {"1024", true, 1024},     {"512 KB", true, 524288},   {"30 MB", true, 31457280},
	    {"30MB", true, 31457280}, {"1 gb", true, 1073741824}, {"7 B", true, 7},
	    {"30 MiB", false, 0},     {"MB", false, 0},           {"-1", false, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t b = 0;
		bool ok = config_parse_size(cases[i].text, &b);
		if (ok != cases[i].ok || (ok && b != cases[i].bytes))
			fail_msg("\"%s\": ok=%d bytes=%llu", cases[i].text, ok,
				 (unsigned long long)b);
	}
}

static void test_bools_and_ints(void **state)
{
	(void)state;
	bool b;
	long long n;
	assert_true(config_parse_bool("true", &b) && b);
	assert_true(config_parse_bool("False", &b) && !b);
	assert_false(config_parse_bool("yes", &b));
	assert_false(config_parse_bool("1", &b));
	assert_true(config_parse_int("-42", &n) && n == -42);
	assert_false(config_parse_int("42x", &n));
	assert_false(config_parse_int("", &n));
	assert_false(config_parse_int("99999999999999999999", &n));
}

/* A temporary app folder with config/. */
static char *make_app(void)
{
	char tmpl[] = "/tmp/zmta-unit-XXXXXX";
	char *dir = xstrdup(mkdtemp(tmpl));
	char *cfgdir = xasprintf("%s/config", dir);
	assert_int_equal(mkdir(cfgdir, 0755), 0);
	free(cfgdir);
	return dir;
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char *path = xasprintf("%s/config/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	free(path);
}

static void remove_app(char *dir)
{
	char *cmd = xasprintf("rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(dir);
}

/* development.yaml contents → the expected error after "<dir>/config/". */
static const struct {
	const char *yaml;
	const char *error;
} invalid[] = {
    {"api:\n  prot: 1\n", "development.yaml:2: unknown option api.prot"},
    {"nosuch: 1\n", "development.yaml:1: unknown option nosuch"},
    {"api:\n  port: eighty\n",
     "development.yaml:2: option api.port must be an integer from 1 to 65535 (got 'eighty')"},
    {"api:\n  port: 70000\n",
     "development.yaml:2: option api.port must be an integer from 1 to 65535 (got '70000')"},
    {"api:\n  port: \"8080\"\n",
     "development.yaml:2: option api.port must be an integer from 1 to 65535 (got '8080')"},
    {"api:\n  port: [1]\n", "development.yaml:2: option api.port must be an integer (got a list)"},
    {"api:\n  port:\n", "development.yaml:2: option api.port must be an integer, not null"},
    {"api:\n  enabled: yes\n",
     "development.yaml:2: option api.enabled must be true or false (got 'yes')"},
    {"api: 8080\n", "development.yaml:1: option api must be a mapping (got a single value)"},
    {"api: ~\n", "development.yaml:1: option api must be a mapping, not null"},
    {"log:\n  level: verbose\n", "development.yaml:2: option log.level must be one of error, warn, "
				 "info, debug (got 'verbose')"},
    {"log:\n  file: {a: 1}\n",
     "development.yaml:2: option log.file must be a string (got a mapping)"},
    {"api:\n  port: 1\n  port: 2\n", "development.yaml:3: duplicate key 'port'"},
    {"api: [\n", "development.yaml:2: YAML syntax error"},
    {"zones:\n  default:\n    throttling: fast\n",
     "development.yaml:3: option zones.default.throttling must be a rate such as 100 "
     "messages/second, /minute or /hour (got 'fast')"},
    {"zones:\n  default:\n    pool: nowhere\n",
     "development.yaml:3: option zones.default.pool names no pool of `pools` (got 'nowhere')"},
    {"pools:\n  default:\n    - {address: 127.0.0.2, ratio: 1.5}\n",
     "development.yaml:3: option pools.default[0].ratio must be a number from 0 to 1 "
     "(got '1.5')"},
    {"pools:\n  default:\n    - 127.0.0.2\n    - not-an-ip\n",
     "development.yaml:4: pools.default[1]: 'not-an-ip' is not an IPv4 or IPv6 address"},
    {"pools:\n  default:\n    - {address: 127.0.0.2, ratio: 0.7}\n"
     "    - {address: 127.0.0.3, ratio: 0.6}\n",
     "development.yaml:3: the ratios of pool default add up to more than 1"},
    {"pools:\n  default:\n    - {address: 127.0.0.2, nmae: x}\n",
     "development.yaml:3: unknown option pools.default[0].nmae"},
    {"queue:\n  deferTimes: [1 s, soon]\n",
     "development.yaml:2: option queue.deferTimes[1] must be a duration"},
    {"domainConfig:\n  example.test:\n    maxConnections: 0\n",
     "development.yaml:3: option domainConfig.example.test.maxConnections must be an "
     "integer from 1 to 100000 (got '0')"},
};

static void test_invalid_configs(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		char *dir = make_app();
		write_file(dir, "development.yaml", invalid[i].yaml);
		struct config_source src = {.app_dir = dir, .env = "development"};
		char *errors = NULL;
		struct config *cfg = config_load(&src, &errors);
		if (cfg != NULL)
			fail_msg("case %zu: accepted", i);
		char *want = xasprintf("%s/config/%s", dir, invalid[i].error);
		if (strncmp(errors, want, strlen(want)) != 0)
			fail_msg("case %zu:\n got: %s\nwant: %s", i, errors, want);
		free(want);
		free(errors);
		remove_app(dir);
	}
}

static void test_every_problem_reported(void **state)
{
	(void)state;
	char *dir = make_app();
	write_file(dir, "default.yaml", "api:\n  prot: 1\n");
	write_file(dir, "development.yaml", "log:\n  level: loud\n  fiel: x\n");
	struct config_source src = {.app_dir = dir, .env = "development"};
	char *errors = NULL;
	assert_null(config_load(&src, &errors));
	assert_non_null(strstr(errors, "config/default.yaml:2: unknown option api.prot"));
	assert_non_null(
	    strstr(errors, "config/development.yaml:2: option log.level must be one of"));
	assert_non_null(strstr(errors, "config/development.yaml:3: unknown option log.fiel"));
	free(errors);
	remove_app(dir);
}

static void test_merge_order_and_paths(void **state)
{
	(void)state;
	char *dir = make_app();
	write_file(dir, "default.yaml",
		   "api:\n  port: 9001\n  host: 127.0.0.2\nlog:\n  level: warn\n");
	write_file(dir, "development.yaml", "api:\n  port: 9002\n");
	write_file(dir, "production.yaml", "api:\n  port: 9003\n");
	char *extra = xasprintf("%s/extra.yaml", dir);
	FILE *f = fopen(extra, "w");
	fputs("log:\n  level: debug\npidfile: run/zmta.pid\n", f);
	fclose(f);

	char *errors = NULL;
	struct config_source dev = {.app_dir = dir, .env = "development"};
	struct config *cfg = config_load(&dev, &errors);
	assert_non_null(cfg);
	assert_int_equal(cfg->api.port, 9002);
	assert_string_equal(cfg->api.host, "127.0.0.2"); /* untouched keys survive */
	assert_int_equal(cfg->log.level, LOG_LEVEL_WARN);
	assert_true(cfg->api.enabled); /* built-in default */
	assert_int_equal(cfg->nfiles, 2);
	char *qdir = xasprintf("%s/data", dir);
	assert_string_equal(cfg->queue.dir, qdir); /* relative to the app folder */
	free(qdir);
	assert_null(cfg->pidfile);
	config_free(cfg);

	struct config_source prod = {.app_dir = dir, .env = "production", .extra_file = extra};
	cfg = config_load(&prod, &errors);
	assert_non_null(cfg);
	assert_int_equal(cfg->api.port, 9003);
	assert_int_equal(cfg->log.level, LOG_LEVEL_DEBUG);
	assert_int_equal(cfg->nfiles, 3);
	char *pid = xasprintf("%s/run/zmta.pid", dir);
	assert_string_equal(cfg->pidfile, pid);
	free(pid);
	config_free(cfg);

	struct config_source bad_env = {.app_dir = dir, .env = "../etc/passwd"};
	assert_null(config_load(&bad_env, &errors));
	assert_non_null(strstr(errors, "ZONEMTA_ENV"));
	free(errors);

	struct config_source missing = {.app_dir = "/nonexistent/zmta"};
	assert_null(config_load(&missing, &errors));
	assert_non_null(strstr(errors, "app folder does not exist"));
	free(errors);

	free(extra);
	remove_app(dir);
}

/* An added interface takes the schema defaults of the fields it omits. */
static void test_dict_entry_defaults(void **state)
{
	(void)state;
	char *dir = make_app();
	write_file(dir, "development.yaml",
		   "smtpInterfaces:\n  submission:\n    port: 2526\n    maxSize: 1 MB\n"
		   "zones:\n  fast:\n    recipientDomains: [Example.TEST, '@other.test']\n"
		   "queue:\n  defaultZone: fast\n");
	struct config_source src = {.app_dir = dir, .env = "development"};
	char *errors = NULL;
	struct config *cfg = config_load(&src, &errors);
	if (cfg == NULL)
		fail_msg("%s", errors);
	assert_int_equal(cfg->n_smtp, 2);
	const struct smtp_iface_config *s = &cfg->smtp[1];
	assert_string_equal(s->name, "submission");
	assert_int_equal(s->port, 2526);
	assert_int_equal(s->max_size, 1024 * 1024);
	assert_string_equal(s->host, "127.0.0.1");
	assert_int_equal(s->max_recipients, 1000);
	assert_int_equal(s->socket_timeout_ms, 600000);
	assert_false(s->allow_routing_headers);
	assert_string_equal(s->hostname, cfg->hostname);
	const struct zone_config *z = config_zone(cfg, "FAST");
	assert_non_null(z);
	assert_int_equal(z->n_recipient_domains, 2);
	assert_string_equal(z->recipient_domains[0], "example.test");
	assert_string_equal(z->recipient_domains[1], "other.test");
	assert_int_equal(z->n_sender_domains, 0);
	config_free(cfg);

	write_file(dir, "development.yaml",
		   "queue:\n  defaultZone: nowhere\n"
		   "smtpInterfaces:\n  second:\n    enabled: true\n");
	assert_null(config_load(&src, &errors));
	assert_non_null(
	    strstr(errors, "development.yaml:2: option queue.defaultZone names no zone"));
	assert_non_null(strstr(errors, "smtpInterfaces feeder and second both listen on "
				       "127.0.0.1:2525"));
	free(errors);
	remove_app(dir);
}

static void test_delivery_options(void **state)
{
	(void)state;
	char *dir = make_app();
	write_file(
	    dir, "development.yaml",
	    "pools:\n  out:\n    - 127.0.0.2\n    - {address: '::1', name: mx.test, ratio: 0.25}\n"
	    "zones:\n  bulk:\n    pool: out\n    throttling: 30 messages/minute\n"
	    "    connectionCache: {reuseCount: 7}\n"
	    "domainConfig:\n  Example.TEST:\n    maxConnections: 2\n    throttling: 5/s\n"
	    "queue:\n  deferTimes: [1 s, 2 s]\n"
	    "dns:\n  nameservers: ['127.0.0.1@5353']\n");
	struct config_source src = {.app_dir = dir, .env = "development"};
	char *errors = NULL;
	struct config *cfg = config_load(&src, &errors);
	if (cfg == NULL)
		fail_msg("%s", errors);
	const struct pool_config *p = config_pool(cfg, "out");
	assert_non_null(p);
	assert_int_equal(p->naddrs, 2);
	assert_string_equal(p->addrs[0].address, "127.0.0.2");
	assert_null(p->addrs[0].name);
	assert_true(p->addrs[0].ratio < 0);
	assert_string_equal(p->addrs[1].address, "::1");
	assert_string_equal(p->addrs[1].name, "mx.test");
	assert_true(p->addrs[1].ratio > 0.24 && p->addrs[1].ratio < 0.26);
	const struct zone_config *z = config_zone(cfg, "bulk");
	assert_string_equal(z->pool, "out");
	assert_int_equal(z->throttle.count, 30);
	assert_int_equal(z->throttle.period_ms, 60000);
	assert_int_equal(z->cache_reuse, 7);
	assert_int_equal(z->cache_ttl_ms, 5000); /* nested default */
	assert_int_equal(z->connections, 10);
	assert_int_equal(z->port, 25);
	assert_int_equal(config_zone(cfg, "bounces")->connections, 1);
	const struct domain_config *d = config_domain(cfg, "example.test");
	assert_int_equal(d->max_connections, 2);
	assert_int_equal(d->throttle.count, 5);
	assert_int_equal(d->throttle.period_ms, 1000);
	assert_int_equal(config_domain(cfg, "other.test")->max_connections, 5);
	assert_int_equal(config_domain(cfg, "other.test")->throttle.count, 0);
	assert_int_equal(cfg->queue.n_defer, 2);
	assert_int_equal(cfg->queue.defer_ms[1], 2000);
	assert_int_equal(cfg->n_nameservers, 1);
	assert_string_equal(cfg->nameservers[0], "127.0.0.1@5353");
	config_free(cfg);
	remove_app(dir);
}

static void test_builtin_defaults(void **state)
{
	(void)state;
	char *errors = NULL;
	struct config_source none = {0};
	struct config *cfg = config_load(&none, &errors);
	assert_non_null(cfg);
	assert_string_equal(cfg->api.host, "127.0.0.1");
	assert_int_equal(cfg->api.port, 8080);
	assert_int_equal(cfg->log.level, LOG_LEVEL_INFO);
	assert_null(cfg->log.file);
	assert_string_equal(cfg->queue.dir, "data");
	assert_int_equal(cfg->nfiles, 0);
	assert_int_equal(cfg->queue.n_defer, 17);
	assert_int_equal(cfg->queue.defer_ms[0], 5 * 60000);
	assert_int_equal(cfg->queue.defer_ms[16], 240 * 60000);
	config_free(cfg);
}

/* Every scalar field of a dict entry (recursively) has a default. */
static void check_defaults(const struct cfg_schema *fields, const char *path)
{
	for (const struct cfg_schema *g = fields; g->key; g++) {
		if (g->type == CT_MAP)
			check_defaults(g->sub, path);
		else if (g->type != CT_LIST && g->type != CT_DICT && g->def == NULL &&
			 !(g->flags & CF_REQUIRED))
			fail_msg("%s.<entry>...%s has no default", path, g->key);
	}
}

/* Every option of the schema is present (and so documented) in default.yaml. */
static void check_covered(const struct cfg_schema *fields, const struct cfg_node *map,
			  const char *path)
{
	for (const struct cfg_schema *f = fields; f->key != NULL; f++) {
		const struct cfg_node *n = cfg_map_get(map, f->key);
		if (n == NULL)
			fail_msg("option %s%s%s is not in config/default.yaml", path,
				 *path ? "." : "", f->key);
		char *sub = xasprintf("%s%s%s", path, *path ? "." : "", f->key);
		if (f->type == CT_MAP) {
			check_covered(f->sub, n, sub);
		} else if (f->type == CT_DICT && f->sub[0].type == CT_MAP) {
			/* Each example entry shows every field, and every scalar
			 * field has the default an added entry takes. */
			/* (An entry with required fields, such as files that
			 * must exist, is shown in a comment instead.) */
			bool required = false;
			for (const struct cfg_schema *g = f->sub[0].sub; g->key; g++)
				required = required || (g->flags & CF_REQUIRED);
			if (n->nchild == 0 && !required)
				fail_msg("%s has no example entry in config/default.yaml", sub);
			for (size_t i = 0; i < n->nchild; i++)
				check_covered(f->sub[0].sub, n->child[i], sub);
			check_defaults(f->sub[0].sub, sub);
		}
		free(sub);
	}
}

/* ZoneMTA's configuration: JSON files, NODE_ENV, its units, its option names. */
static void test_zonemta_config(void **state)
{
	(void)state;
	char *dir = make_app();
	char *root_json = xasprintf("%s/config.json", dir);
	FILE *f = fopen(root_json, "w");
	assert_non_null(f);
	fputs("{\"dbs\": {\"mongo\": \"mongodb://x\"}, \"queue\": {\"maxQueueTime\": 86400000},\n"
	      " \"zones\": {\"default\": {\"processes\": 2, \"connectionCache\": {\"ttl\": 5}}}}\n",
	      f);
	fclose(f);
	write_file(dir, "staging.json",
		   "{\"smtpInterfaces\": {\"feeder\": {\"socketTimeout\": 600000,\n"
		   "  \"starttls\": false, \"secure\": false}},\n"
		   "  \"mtaSts\": {\"enabled\": true}}\n");
	write_file(dir, "staging.js", "module.exports = {};\n");
	setenv("NODE_ENV", "staging", 1);
	unsetenv("ZONEMTA_ENV");
	struct config_source src = {.app_dir = dir};
	char *errors = NULL;
	struct config *cfg = config_load(&src, &errors);
	unsetenv("NODE_ENV");
	if (cfg == NULL)
		fail_msg("ZoneMTA's config refused: %s", errors);
	assert_int_equal(cfg->nfiles, 2); /* config.json, then config/staging.json */
	/* bare numbers in ZoneMTA's units: ttl in seconds, the others in ms */
	assert_int_equal(config_zone(cfg, "default")->cache_ttl_ms, 5000);
	assert_int_equal(cfg->queue.max_queue_time_ms, 86400000);
	assert_int_equal(cfg->smtp[0].socket_timeout_ms, 600000);
	/* each with file:line; false options that are not supported say nothing */
	const char *w = cfg->warnings;
	assert_non_null(w);
	assert_non_null(strstr(w, "config.json:1: ignored: dbs is not needed in zone-mta"));
	assert_non_null(strstr(w, "zones.default.processes is not needed"));
	assert_non_null(strstr(w, "the bare number 5 is read as 5 s"));
	assert_non_null(strstr(w, "staging.json:1: option smtpInterfaces.feeder.socketTimeout: "
				  "the bare number 600000 is read as 600000 ms"));
	assert_non_null(strstr(w, "staging.json:3: ignored: mtaSts is not yet supported"));
	assert_null(strstr(w, "starttls"));
	/* ZoneMTA's JavaScript layer: not read, and the way to convert it said */
	assert_non_null(strstr(w, "staging.js: ignored: JavaScript configuration cannot be read; "
				  "make it JSON with: node -e"));
	assert_non_null(strstr(w, "/config/staging.json"));
	config_free(cfg);

	/* asked for and not there yet: refused, not run without it */
	write_file(dir, "staging.json", "{\"dns\": {\"blockLocalAddresses\": true}}\n");
	src.env = "staging";
	cfg = config_load(&src, &errors);
	assert_null(cfg);
	assert_non_null(strstr(errors, "staging.json:1: dns.blockLocalAddresses is not yet "
				       "supported"));
	free(errors);
	free(root_json);
	remove_app(dir);
}

static void test_schema_matches_default_yaml(void **state)
{
	(void)state;
	struct cfg_error err;
	struct cfg_node *root = cfg_parse_string("default.yaml", zmta_default_config,
						 zmta_default_config_len, &err);
	assert_non_null(root);
	char *errors = NULL, *warnings = NULL;
	if (config_validate(root, 0, &errors, &warnings) != 0)
		fail_msg("default.yaml does not validate: %s", errors);
	/* the shipped file gives every duration a unit and no ZoneMTA-only option */
	if (warnings != NULL)
		fail_msg("default.yaml has warnings: %s", warnings);
	check_covered(config_schema, root, "");
	cfg_node_free(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_durations),
	    cmocka_unit_test(test_sizes),
	    cmocka_unit_test(test_bools_and_ints),
	    cmocka_unit_test(test_invalid_configs),
	    cmocka_unit_test(test_every_problem_reported),
	    cmocka_unit_test(test_merge_order_and_paths),
	    cmocka_unit_test(test_dict_entry_defaults),
	    cmocka_unit_test(test_delivery_options),
	    cmocka_unit_test(test_builtin_defaults),
	    cmocka_unit_test(test_zonemta_config),
	    cmocka_unit_test(test_schema_matches_default_yaml),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
