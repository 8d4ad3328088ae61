/* SPDX-License-Identifier: EUPL-1.2 */
/* GMime's one initialization and the media-types table; see mime.h. */
#include "msg/mime.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#include "core/hmap.h"
#include "core/log.h"
#include "core/xmalloc.h"

#define MIME_TYPES_FILE "/etc/mime.types"

static pthread_once_t once = PTHREAD_ONCE_INIT;
/* Read-only once built: extension → type, type → first extension. */
static struct strmap *type_by_extension, *extension_by_type;

static void lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* "type ext ext ..." lines; '#' starts a comment. */
static void load_types(const char *path)
{
	type_by_extension = strmap_new();
	extension_by_type = strmap_new();
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		log_warn("mime_types_missing",
			 "path=%s attachments named by file go out as "
			 "application/octet-stream (install Debian's media-types package)",
			 path);
		return;
	}
	char line[4096];
	while (fgets(line, sizeof(line), f) != NULL) {
		char *hash = strchr(line, '#');
		if (hash != NULL)
			*hash = '\0';
		char *save = NULL, *type = strtok_r(line, " \t\r\n", &save);
		if (type == NULL || strchr(type, '/') == NULL)
			continue;
		lower(type);
		char *stored_type = NULL;
		for (char *ext = strtok_r(NULL, " \t\r\n", &save); ext != NULL;
		     ext = strtok_r(NULL, " \t\r\n", &save)) {
			lower(ext);
			if (strmap_get(type_by_extension, ext) != NULL)
				continue; /* the first line naming it wins */
			if (stored_type == NULL)
				stored_type = xstrdup(type);
			strmap_put(type_by_extension, ext, stored_type);
			if (strmap_get(extension_by_type, type) == NULL)
				strmap_put(extension_by_type, type, xstrdup(ext));
		}
	}
	fclose(f);
}

static void init(void)
{
	g_mime_init();
	const char *path = getenv("ZMTA_MIME_TYPES"); /* tests only */
	load_types(path != NULL && *path ? path : MIME_TYPES_FILE);
}

void mime_init(void)
{
	pthread_once(&once, init);
}

size_t mime_types_known(void)
{
	mime_init();
	return strmap_count(type_by_extension);
}

const char *mime_type_for_name(const char *filename)
{
	mime_init();
	const char *base = strrchr(filename, '/');
	base = base != NULL ? base + 1 : filename;
	const char *dot = strrchr(base, '.');
	const char *ext = dot != NULL && dot != base ? dot + 1 : base;
	char key[64];
	size_t n = strcspn(ext, "?");
	while (n > 0 && isspace((unsigned char)ext[n - 1]))
		n--;
	while (n > 0 && isspace((unsigned char)*ext)) {
		ext++;
		n--;
	}
	if (n == 0 || n >= sizeof(key))
		return "application/octet-stream";
	memcpy(key, ext, n);
	key[n] = '\0';
	lower(key);
	const char *type = strmap_get(type_by_extension, key);
	return type != NULL ? type : "application/octet-stream";
}

const char *mime_extension_for_type(const char *type)
{
	mime_init();
	char key[256];
	size_t n = strcspn(type, "; \t");
	if (n < sizeof(key)) {
		memcpy(key, type, n);
		key[n] = '\0';
		lower(key);
		const char *ext = strmap_get(extension_by_type, key);
		if (ext != NULL)
			return ext;
	}
	return strncasecmp(type, "text/", 5) == 0 ? "txt" : "bin";
}
