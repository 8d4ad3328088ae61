/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The zone-mta command line: create, run, check-config, check-bounce,
 * dkim keygen, queue (cli/queue_cmd.c).
 * Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bounce/rules.h"
#include "cli/queue_cmd.h"
#include "dkim/dkim.h"
#include "core/config.h"
#include "core/xmalloc.h"
#include "daemon.h"
#include "lua/plugin.h"
#ifdef ZMTA_TEST_PLUGIN
#include "test_plugin.h"
#endif
#include "version.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

extern const char zmta_default_config[];
extern const size_t zmta_default_config_len;
extern const char zmta_example_plugin[];
extern const size_t zmta_example_plugin_len;

static const char usage_text[] =
    "Usage:\n"
    "  zone-mta create DIR                 make an app folder (config, plugins, queue)\n"
    "  zone-mta run [-d DIR] [-c FILE]     run the relay\n"
    "  zone-mta check-config [-d DIR] [-c FILE]\n"
    "                                      validate the configuration and exit\n"
    "  zone-mta check-bounce [-d DIR] [-c FILE] < REPLY\n"
    "                                      classify an SMTP reply by the bounce rules\n"
    "  zone-mta dkim keygen --domain D --selector S [--type rsa|ed25519] [--bits N]\n"
    "                   [--out FILE]       make a DKIM key; print its DNS record\n"
    "  zone-mta queue [-d DIR] [--api URL] [--json] COMMAND ...\n"
    "                                      administer a running daemon's queue\n"
    "                                      (zone-mta queue --help lists commands)\n"
    "  zone-mta --version | --help\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR     app folder: reads DIR/config/default.yaml, then\n"
    "                    DIR/config/$ZONEMTA_ENV.yaml (ZONEMTA_ENV: development)\n"
    "  -c, --config FILE one more YAML file, merged last\n"
    "\n"
    "Without -d, zone-mta runs on its built-in defaults (config/default.yaml\n"
    "in the source tree documents every option).\n"
    "Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.\n";

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "zone-mta: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n\n%s", usage_text);
	return EXIT_USAGE;
}

/* Parses -d/-c for run and check-config; returns 0 or an exit code. */
static int parse_source(int argc, char **argv, struct config_source *src)
{
	static const struct option longopts[] = {
	    {"dir", required_argument, NULL, 'd'},
	    {"config", required_argument, NULL, 'c'},
	    {NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "d:c:", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			src->app_dir = optarg;
			break;
		case 'c':
			src->extra_file = optarg;
			break;
		default:
			return usage_error("%s: unknown option or missing argument",
					   argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument %s", argv[optind]);
	return 0;
}

/* The configuration, and the files it names (bounce rules), or NULL after
 * printing every problem. */
static struct config *load_or_report(const struct config_source *src)
{
	char *errors = NULL;
	struct config *cfg = config_load(src, &errors);
	if (cfg != NULL && cfg->bounce_rules != NULL) {
		struct bounce_rules *rules = bounce_rules_load(cfg->bounce_rules, &errors);
		if (rules == NULL) {
			config_free(cfg);
			cfg = NULL;
		}
		bounce_rules_free(rules);
	}
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", errors);
		fprintf(stderr, "zone-mta: configuration is invalid\n");
		free(errors);
	}
	return cfg;
}

/* -d/-c parsed into *src and the configuration loaded into *cfg: 0, or
 * the exit code after the problems were printed. */
static int load_from_args(int argc, char **argv, struct config_source *src, struct config **cfg)
{
	int rc = parse_source(argc, argv, src);
	if (rc != 0)
		return rc;
	*cfg = load_or_report(src);
	return *cfg != NULL ? 0 : EXIT_USAGE;
}

static int cmd_check_config(int argc, char **argv)
{
	struct config_source src = {.all_problems = true};
	struct config *cfg;
	int rc = load_from_args(argc, argv, &src, &cfg);
	if (rc != 0)
		return rc;
	char *err = NULL;
	if (plugins_check(cfg, &err) != 0) {
		fprintf(stderr, "%s\nzone-mta: configuration is invalid\n", err);
		free(err);
		config_free(cfg);
		return EXIT_USAGE;
	}
	size_t nwarnings = 0;
	if (cfg->warnings != NULL) {
		fprintf(stderr, "%s\n", cfg->warnings);
		nwarnings = 1;
		for (const char *p = cfg->warnings; *p; p++)
			nwarnings += *p == '\n';
	}
	printf("configuration ok: %s", CONFIG_BUILTIN_NAME);
	for (int i = 0; i < cfg->nfiles; i++)
		printf(" + %s", cfg->files[i]);
	if (nwarnings > 0)
		printf(" (%zu warning%s)", nwarnings, nwarnings == 1 ? "" : "s");
	printf("\n");
	config_free(cfg);
	return 0;
}

/*
 * A reply's lines as the rules see them: one line, joined by spaces, the
 * continuation lines' "NNN-" / "NNN " prefixes dropped, "NNN-" made "NNN ".
 */
static char *reply_line(const char *text, int *code)
{
	size_t n = strlen(text), o = 0;
	char *out = xmalloc(n + 1);
	bool first = true;
	*code = 0;
	for (const char *p = text; *p;) {
		const char *eol = p + strcspn(p, "\r\n");
		const char *q = p;
		bool coded = eol - p >= 3 && p[0] >= '2' && p[0] <= '5' && p[1] >= '0' &&
			     p[1] <= '9' && p[2] >= '0' && p[2] <= '9' &&
			     (eol - p == 3 || p[3] == ' ' || p[3] == '-');
		if (coded && first)
			*code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
		if (coded && !first)
			q = p + (eol - p > 3 ? 4 : 3);
		if (q < eol) {
			if (o > 0)
				out[o++] = ' ';
			memcpy(out + o, q, (size_t)(eol - q));
			if (coded && first && eol - p > 3)
				out[o + 3] = ' ';
			o += (size_t)(eol - q);
			first = false;
		}
		p = eol + strspn(eol, "\r\n");
	}
	out[o] = '\0';
	return out;
}

/* ZoneMTA's bin/check-bounce: reads a reply on stdin, prints its verdict. */
static int cmd_check_bounce(int argc, char **argv)
{
	struct config_source src = {0};
	struct config *cfg;
	int rc = load_from_args(argc, argv, &src, &cfg);
	if (rc != 0)
		return rc;
	char *err = NULL;
	struct bounce_rules *rules = cfg->bounce_rules != NULL
					 ? bounce_rules_load(cfg->bounce_rules, &err)
					 : bounce_rules_builtin();
	const char *file = cfg->bounce_rules ? cfg->bounce_rules : "config/bounces.txt (built in)";
	size_t len = 0, cap = 0;
	char *in = NULL;
	for (;;) {
		in = xreallocarray_grow(in, &cap, len + 4097, 1);
		size_t got = fread(in + len, 1, cap - len - 1, stdin);
		len += got;
		if (got == 0)
			break;
	}
	in[len] = '\0';
	int code;
	char *line = reply_line(in, &code);
	struct bounce_verdict v;
	bounce_rules_classify(rules, code, line, &v);
	printf("data     : %s\n", line);
	printf("action   : %s\n", v.slowdown                  ? "slowdown"
				  : v.action == BOUNCE_REJECT ? "reject"
							      : "defer");
	printf("category : %s\n", v.category);
	if (v.message != NULL)
		printf("message  : %s\n", v.message);
	printf("code     : %d\n", code);
	if (v.rule_line > 0)
		printf("rule     : %s:%d\n", file, v.rule_line);
	else
		printf("rule     : none matched: the default for %s\n",
		       code == 0 ? "a failure without a reply" : "the reply code");
	free(line);
	free(in);
	free(err);
	bounce_rules_free(rules);
	config_free(cfg);
	return 0;
}

static int cmd_run(int argc, char **argv)
{
	struct config_source src = {0};
	struct config *cfg;
	int rc = load_from_args(argc, argv, &src, &cfg);
	if (rc != 0)
		return rc;
#ifdef ZMTA_TEST_PLUGIN
	daemon_set_plugin(test_plugin_start);
#endif
	return daemon_run(&src, cfg);
}

static int make_dir(const char *path)
{
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "zone-mta: cannot create %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * The app folder's config/default.yaml: every built-in default, commented
 * out, so that a user uncomments exactly what they change.
 */
static int write_override_template(const char *path)
{
	FILE *f = fopen(path, "wx");
	if (f == NULL) {
		fprintf(stderr, "zone-mta: cannot create %s: %s\n", path,
			errno == EEXIST ? "it exists already (not overwritten)" : strerror(errno));
		return -1;
	}
	fprintf(f, "# Settings for this app folder, merged over zone-mta's built-in defaults.\n"
		   "# Uncomment and change only what you need: a key you leave out keeps its\n"
		   "# default.  config/<ZONEMTA_ENV>.yaml (e.g. production.yaml), when present,\n"
		   "# is merged over this file in turn.  Check with: zone-mta check-config -d DIR\n"
		   "#\n"
		   "# Below, lines starting with '##' describe an option and lines starting\n"
		   "# with '# ' give its default, commented out.\n\n");
	const char *p = zmta_default_config, *end = p + zmta_default_config_len;
	/* Skip the defaults' own introduction: its first paragraph. */
	const char *para = strstr(p, "\n\n");
	if (para != NULL)
		p = para + 2;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (len == 0)
			fprintf(f, "\n");
		else if (p[0] == '#')
			fprintf(f, "#%.*s\n", (int)len, p);
		else
			fprintf(f, "# %.*s\n", (int)len, p);
		p += len + 1;
	}
	if (fclose(f) != 0) {
		fprintf(stderr, "zone-mta: cannot write %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* plugins/example.lua: a plugin to start from (not enabled). */
static int write_example_plugin(const char *path)
{
	FILE *f = fopen(path, "wx");
	if (f == NULL ||
	    fwrite(zmta_example_plugin, 1, zmta_example_plugin_len, f) != zmta_example_plugin_len) {
		fprintf(stderr, "zone-mta: cannot create %s: %s\n", path,
			errno == EEXIST ? "it exists already (not overwritten)" : strerror(errno));
		if (f != NULL)
			fclose(f);
		return -1;
	}
	return fclose(f) == 0 ? 0 : -1;
}

static int cmd_create(int argc, char **argv)
{
	if (argc != 2)
		return usage_error("%s needs exactly one argument: the folder to create", "create");
	const char *dir = argv[1];
	char *config_dir = xasprintf("%s/config", dir);
	char *plugins_dir = xasprintf("%s/plugins", dir);
	char *queue_dir = xasprintf("%s/data", dir);
	char *override = xasprintf("%s/config/default.yaml", dir);
	char *example = xasprintf("%s/plugins/example.lua", dir);
	int rc = EXIT_RUNTIME;
	if (make_dir(dir) == 0 && make_dir(config_dir) == 0 && make_dir(plugins_dir) == 0 &&
	    make_dir(queue_dir) == 0 && write_override_template(override) == 0 &&
	    write_example_plugin(example) == 0) {
		printf("created %s: edit %s, then run: zone-mta run -d %s\n", dir, override, dir);
		rc = 0;
	}
	free(config_dir);
	free(plugins_dir);
	free(queue_dir);
	free(override);
	free(example);
	return rc;
}

/* zone-mta dkim keygen: writes the private key (0600) and prints the TXT
 * record to publish. */
static int cmd_dkim(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"domain", required_argument, NULL, 'd'}, {"selector", required_argument, NULL, 's'},
	    {"type", required_argument, NULL, 't'},   {"bits", required_argument, NULL, 'b'},
	    {"out", required_argument, NULL, 'o'},    {NULL, 0, NULL, 0},
	};
	if (argc < 2 || strcmp(argv[1], "keygen") != 0)
		return usage_error("%s", "dkim needs a subcommand: keygen");
	const char *domain = NULL, *selector = NULL, *type = "rsa", *out = NULL;
	int bits = 2048, c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			domain = optarg;
			break;
		case 's':
			selector = optarg;
			break;
		case 't':
			type = optarg;
			break;
		case 'b':
			bits = atoi(optarg);
			break;
		case 'o':
			out = optarg;
			break;
		default:
			return usage_error("%s: unknown option or missing argument",
					   argv[optind]); /* argv + 1 shifted by one */
		}
	}
	if (domain == NULL || selector == NULL)
		return usage_error("%s", "dkim keygen needs --domain and --selector");
	if (strcmp(type, "rsa") != 0 && strcmp(type, "ed25519") != 0)
		return usage_error("--type %s: must be rsa or ed25519", type);
	if (strcmp(type, "rsa") == 0 && (bits < 1024 || bits > 4096))
		return usage_error("%s", "--bits must be from 1024 to 4096");
	char *pem = NULL, *txt = NULL, *err = NULL;
	if (dkim_keygen(type, bits, &pem, &txt, &err) != 0) {
		fprintf(stderr, "zone-mta: %s\n", err);
		free(err);
		return EXIT_RUNTIME;
	}
	char *path = out ? xstrdup(out) : xasprintf("%s.%s.pem", selector, domain);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	int rc = EXIT_RUNTIME;
	if (fd < 0) {
		fprintf(stderr, "zone-mta: cannot create %s: %s\n", path,
			errno == EEXIST ? "it exists already (not overwritten)" : strerror(errno));
	} else if (write(fd, pem, strlen(pem)) != (ssize_t)strlen(pem) || close(fd) != 0) {
		fprintf(stderr, "zone-mta: cannot write %s: %s\n", path, strerror(errno));
	} else {
		/* RFC 1035 3.3.14: a TXT record is strings of at most 255 octets
		 * each; the verifier joins them (RFC 6376 3.6.2.2). */
		printf("private key: %s\n", path);
		printf("DNS record:  %s._domainkey.%s. IN TXT", selector, domain);
		for (size_t off = 0, n = strlen(txt); off < n; off += 255)
			printf(" \"%.*s\"", (int)(n - off < 255 ? n - off : 255), txt + off);
		printf(
		    "\n\nAdd to the configuration:\n"
		    "dkim:\n  keys:\n    - domain: %s\n      selector: %s\n      privateKey: %s\n",
		    domain, selector, path);
		rc = 0;
	}
	free(path);
	free(pem);
	free(txt);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage_error("%s", "a command is required");
	const char *cmd = argv[1];
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
		printf("zone-mta %s\n", ZMTA_VERSION);
		return 0;
	}
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		printf("zone-mta %s: outbound SMTP relay\n\n%s", ZMTA_VERSION, usage_text);
		return 0;
	}
	if (strcmp(cmd, "create") == 0)
		return cmd_create(argc - 1, argv + 1);
	if (strcmp(cmd, "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(cmd, "check-config") == 0)
		return cmd_check_config(argc - 1, argv + 1);
	if (strcmp(cmd, "check-bounce") == 0)
		return cmd_check_bounce(argc - 1, argv + 1);
	if (strcmp(cmd, "dkim") == 0)
		return cmd_dkim(argc - 1, argv + 1);
	if (strcmp(cmd, "queue") == 0)
		return queue_cmd(argc - 1, argv + 1);
	return usage_error("unknown command %s", cmd);
}
