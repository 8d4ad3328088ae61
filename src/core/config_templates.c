/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * bounces.templates: the texts of DSN mail's human part, read from a
 * folder at configuration time and checked there (unknown placeholders,
 * over-long lines, bad UTF-8 are configuration errors with file and line).
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/config.h"
#include "core/config_internal.h"
#include "core/utf8.h"
#include "core/xmalloc.h"

const char *const dsn_template_placeholders[] = {"hostname", "sender",     "subject", "messageId",
						 "date",     "recipients", NULL};

static const char *const kind_names[] = {"failed", "delayed", "relayed", NULL};

/* Template files above this size are refused: a notice is not a book. */
#define TEMPLATE_MAX (64 * 1024)
/* Lines of a template stay well below the 998 octets of RFC 5322 2.1.1,
 * leaving room for what the placeholders bring. */
#define TEMPLATE_LINE_MAX 500

static void problem_at(struct problems *p, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void problem_at(struct problems *p, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *what = xvasprintf(fmt, ap);
	va_end(ap);
	p->list = xreallocarray_grow(p->list, &p->cap, p->count + 1, sizeof(*p->list));
	p->list[p->count++] = (struct problem){file, line,
					       xasprintf("%s:%d: %s", file, line, what)};
	free(what);
}

/* Checks the placeholders of one line. */
static void check_line(struct problems *found, const char *file, int line, const char *s, size_t n)
{
	if (n > TEMPLATE_LINE_MAX)
		problem_at(found, file, line, "line of %zu characters (at most %d)", n,
			   TEMPLATE_LINE_MAX);
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '{')
			continue;
		const char *close = memchr(s + i, '}', n - i);
		size_t len = close ? (size_t)(close - s - i - 1) : 0;
		bool known = false;
		for (size_t k = 0; close && dsn_template_placeholders[k]; k++)
			known = known ||
				(strlen(dsn_template_placeholders[k]) == len &&
				 memcmp(dsn_template_placeholders[k], s + i + 1, len) == 0);
		if (!known) {
			problem_at(found, file, line,
				   "unknown placeholder %.*s (known: {hostname} {sender} {subject} "
				   "{messageId} {date} {recipients})",
				   close ? (int)(len + 2) : 1, s + i);
			return;
		}
		i += len + 1;
	}
}

/* KIND.txt or KIND.LANG.txt: the kind, and the language into *lang. */
static int parse_name(const char *name, char **lang)
{
	*lang = NULL;
	size_t n = strlen(name);
	if (n < 5 || strcmp(name + n - 4, ".txt") != 0)
		return -1;
	for (int k = 0; kind_names[k]; k++) {
		size_t kl = strlen(kind_names[k]);
		if (strncmp(name, kind_names[k], kl) != 0)
			continue;
		if (n == kl + 4)
			return k;
		if (name[kl] != '.' || n <= kl + 5)
			return -1;
		*lang = xstrndup(name + kl + 1, n - kl - 5);
		for (char *p = *lang; *p; p++)
			*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
		return k;
	}
	return -1;
}

/* Reads one template; false (and a problem) when it cannot serve. */
static bool read_template(struct dsn_template *t, struct problems *found)
{
	FILE *f = fopen(t->path, "rb");
	if (f == NULL) {
		problem_at(found, t->path, 0, "cannot read it: %s", strerror(errno));
		return false;
	}
	char *buf = xmalloc(TEMPLATE_MAX + 2);
	size_t len = fread(buf, 1, TEMPLATE_MAX + 1, f);
	fclose(f);
	buf[len] = '\0';
	if (len > TEMPLATE_MAX || memchr(buf, '\0', len) != NULL || !utf8_valid(buf, len)) {
		problem_at(found, t->path, 1, "%s",
			   len > TEMPLATE_MAX ? "larger than 64 KiB"
					      : "not UTF-8 text (a NUL byte or bad UTF-8)");
		free(buf);
		return false;
	}
	/* Lines to CRLF; a first "Subject:" line is the subject. */
	char *text = xmalloc(2 * len + 3), *w = text;
	size_t before = found->count;
	int line = 1;
	const char *p = buf;
	if (strncasecmp(p, "Subject:", 8) == 0) {
		size_t n = strcspn(p, "\r\n");
		const char *v = p + 8;
		while (*v == ' ' || *v == '\t')
			v++;
		t->subject = xstrndup(v, n - (size_t)(v - p));
		check_line(found, t->path, 1, t->subject, strlen(t->subject));
		p += n;
		p += *p == '\r' ? 1 : 0;
		p += *p == '\n' ? 1 : 0;
		line++;
		if (*p == '\r' || *p == '\n') { /* the empty line after it */
			p += *p == '\r' ? 1 : 0;
			p += *p == '\n' ? 1 : 0;
			line++;
		}
	}
	while (*p != '\0') {
		size_t n = strcspn(p, "\r\n");
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)p[i] < 0x20 && p[i] != '\t')
				problem_at(found, t->path, line, "control character 0x%02x",
					   (unsigned char)p[i]);
		check_line(found, t->path, line, p, n);
		memcpy(w, p, n);
		w += n;
		*w++ = '\r';
		*w++ = '\n';
		p += n;
		p += *p == '\r' ? 1 : 0;
		p += *p == '\n' ? 1 : 0;
		line++;
	}
	*w = '\0';
	t->text = text;
	free(buf);
	return found->count == before;
}

void fill_dsn_templates(struct config *cfg, const char *dir, const struct cfg_node *at,
			struct problems *found)
{
	struct bounce_config *b = &cfg->bounces;
	if (dir == NULL)
		return;
	DIR *d = opendir(dir);
	if (d == NULL) {
		problem_add(found, at, "option bounces.templates: cannot open %s: %s", dir,
			    strerror(errno));
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char *lang;
		int kind = parse_name(e->d_name, &lang);
		if (kind < 0) {
			problem_add(found->warnings ? found->warnings : found, at,
				    "bounces.templates: %s/%s is not KIND.txt or KIND.LANG.txt "
				    "(KIND failed, delayed or relayed): ignored",
				    dir, e->d_name);
			continue;
		}
		b->templates = xrealloc(b->templates, (b->n_templates + 1) * sizeof(*b->templates));
		struct dsn_template *t = &b->templates[b->n_templates++];
		*t = (struct dsn_template){kind, lang, xasprintf("%s/%s", dir, e->d_name), NULL,
					   NULL};
		read_template(t, found);
	}
	closedir(d);
}

void free_dsn_templates(struct bounce_config *b)
{
	for (size_t i = 0; i < b->n_templates; i++) {
		free(b->templates[i].lang);
		free(b->templates[i].path);
		free(b->templates[i].subject);
		free(b->templates[i].text);
	}
	free(b->templates);
}

static const struct dsn_template *find(const struct config *cfg, int kind, const char *lang,
				       size_t len)
{
	for (size_t i = 0; i < cfg->bounces.n_templates; i++) {
		const struct dsn_template *t = &cfg->bounces.templates[i];
		if (t->kind != kind || t->text == NULL)
			continue;
		if (lang == NULL ? t->lang == NULL
				 : t->lang != NULL && strlen(t->lang) == len &&
				       strncasecmp(t->lang, lang, len) == 0)
			return t;
	}
	return NULL;
}

const struct dsn_template *config_dsn_template(const struct config *cfg, int kind,
					       const char *content_language)
{
	if (cfg->bounces.n_templates == 0)
		return NULL;
	if (content_language != NULL) {
		/* The first tag of "de-AT, en" (RFC 3282). */
		const char *tag = content_language;
		while (*tag == ' ' || *tag == '\t')
			tag++;
		size_t len = strcspn(tag, " \t,;");
		const struct dsn_template *t = len ? find(cfg, kind, tag, len) : NULL;
		size_t primary = strcspn(tag, "-");
		if (t == NULL && primary < len)
			t = find(cfg, kind, tag, primary);
		if (t != NULL)
			return t;
	}
	return find(cfg, kind, NULL, 0);
}
