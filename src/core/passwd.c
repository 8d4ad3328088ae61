/* SPDX-License-Identifier: EUPL-1.2 */
/* The static users file; see passwd.h. */
#include "core/passwd.h"

#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hmap.h"
#include "core/xmalloc.h"

struct passwd_file {
	struct strmap *users; /* user → hash */
};

void passwd_file_free(struct passwd_file *p)
{
	if (p == NULL)
		return;
	size_t pos = 0;
	const char *key;
	void *v;
	while (strmap_next(p->users, &pos, &key, &v))
		free(v);
	strmap_free(p->users);
	free(p);
}

struct passwd_file *passwd_file_load(const char *path, char **err)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		*err = xasprintf("cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	struct passwd_file *p = xcalloc(1, sizeof(*p));
	p->users = strmap_new();
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int lineno = 0;
	*err = NULL;
	while (*err == NULL && (len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0 || line[0] == '#')
			continue;
		char *colon = strchr(line, ':');
		if (colon == NULL || colon == line) {
			*err = xasprintf("%s:%d: not a \"user:hash\" line", path, lineno);
			break;
		}
		*colon = '\0';
		const char *hash = colon + 1;
		/* The hash ends at a further ':' (an /etc/shadow-style line). */
		char *end = strchr(colon + 1, ':');
		if (end != NULL)
			*end = '\0';
		if (hash[0] != '$' || crypt_checksalt(hash) != CRYPT_SALT_OK) {
			*err = xasprintf("%s:%d: the hash of %s is no crypt(3) hash this system "
					 "can check (make one with mkpasswd -m yescrypt)",
					 path, lineno, line);
		} else if (strmap_get(p->users, line) != NULL) {
			*err = xasprintf("%s:%d: user %s is listed twice", path, lineno, line);
		} else {
			strmap_put(p->users, line, xstrdup(hash));
		}
	}
	free(line);
	fclose(f);
	if (*err != NULL) {
		passwd_file_free(p);
		return NULL;
	}
	return p;
}

const char *passwd_file_hash(const struct passwd_file *p, const char *user)
{
	return strmap_get(p->users, user);
}

const char *passwd_file_any_hash(const struct passwd_file *p)
{
	size_t pos = 0;
	const char *key;
	void *v;
	return strmap_next(p->users, &pos, &key, &v) ? v : NULL;
}

bool passwd_verify(const char *hash, const char *password)
{
	struct crypt_data *data = xcalloc(1, sizeof(*data));
	const char *out = crypt_rn(password, hash, data, sizeof(*data));
	bool ok = out != NULL && out[0] != '*' && strcmp(out, hash) == 0;
	explicit_bzero(data, sizeof(*data));
	free(data);
	return ok;
}
